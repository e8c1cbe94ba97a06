"""A program with one or more tail-call sites: the unit of `tcfuzz disasm`, `tcfuzz prove` and the
golden tests.

A sample is a one-program world (map 0 the target prog array; map 1, listed first in used_maps, the
second array that poisons a dynamic site; with `map_index`, prog arrays 10, 11, ... around them)
lowered by model/lower.py like every other world, so the
glue and the fall-through marker are the same ones the executor runs.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

from tcfuzz.model.bpf import BPF_JGE, BPF_JMP, BPF_K, BPF_TAIL_CALL, CALLEE_SAVED, Insn
from tcfuzz.model.interfaces import Codegen, MapRef, VerifiedProgram, VerifierEnv
from tcfuzz.model.lower import lower_program, used_maps, verify
from tcfuzz.model.profile import KernelProfile, preset
from tcfuzz.model.world import MapSpec, ProgramSpec, RunSpec, SiteSpec, World

TARGET_MAP, SECOND_MAP = 0, 1


class SiteKind(str, enum.Enum):
    STATIC = "static"  # one map, run-time key: indirect, new codegen bakes max_entries in
    DYNAMIC = "dynamic"  # two maps reach the site (poisoned map pointer): indirect, run-time loads
    DIRECT = "direct"  # one map, constant key, privileged: poke-patched direct jump


@dataclass(frozen=True)
class SampleConfig:
    sites: tuple[SiteKind, ...] = (SiteKind.STATIC,)
    max_entries: int = 4
    key: int = 0  # used by DIRECT
    stack_depth: int = 0
    callee_regs: tuple[int, ...] = ()  # subset of R6..R9
    unpriv: bool = False  # the map was created without CAP_PERFMON
    exception_boundary: bool = False  # pushes r12 and every callee-saved register
    is_subprog: bool = False
    map_index: int = 0  # other prog arrays (of other max_entries) before the target in used_maps

    def __post_init__(self) -> None:
        object.__setattr__(self, "sites", tuple(SiteKind(kind) for kind in self.sites))
        if not self.sites:
            raise ValueError("a sample program needs at least one tail-call site")
        if not 1 <= self.max_entries <= 0xFFFFFFFF:
            raise ValueError(f"max_entries={self.max_entries} is not a u32 >= 1")
        if not 0 <= self.stack_depth <= 512:
            raise ValueError(f"stack_depth={self.stack_depth} is outside 0..512")
        if not set(self.callee_regs) <= set(CALLEE_SAVED):
            raise ValueError(f"callee_regs={self.callee_regs} must be a subset of r6..r9")
        if SiteKind.DIRECT in self.sites and not 0 <= self.key < self.max_entries:
            raise ValueError(f"direct key {self.key} must be < max_entries {self.max_entries}")
        sample_world(self)  # WorldError (a ValueError) where the kernel would refuse the maps or program


def sample_world(cfg: SampleConfig, profile: KernelProfile | None = None) -> World:
    """The one-program world a sample is. Raises WorldError where the kernel would refuse it."""
    target = MapSpec(TARGET_MAP, cfg.max_entries, unpriv=cfg.unpriv)
    dynamic = SiteKind.DYNAMIC in cfg.sites
    maps: tuple[MapSpec, ...] = (MapSpec(SECOND_MAP, 2, unpriv=cfg.unpriv), target) if dynamic else (target,)
    if cfg.map_index:  # the target at used_maps[map_index], between arrays a wrong decode would pick
        others = tuple(MapSpec(10 + i, cfg.max_entries + 1 + i, unpriv=cfg.unpriv) for i in range(cfg.map_index + 1))
        maps = others[: cfg.map_index] + maps + others[cfg.map_index :]
    sites = tuple(
        SiteSpec((SECOND_MAP, TARGET_MAP))
        if kind is SiteKind.DYNAMIC  # the verifier keeps the last map seen
        else SiteSpec((TARGET_MAP,), cfg.key if kind is SiteKind.DIRECT else None)
        for kind in cfg.sites
    )
    prog = ProgramSpec(0, sites, cfg.stack_depth, tuple(sorted(cfg.callee_regs)), cfg.exception_boundary, cfg.is_subprog)
    return World(profile or preset("default"), maps, (prog,), (RunSpec(0),))


def _sample_function(world: World):
    """The function holding the sites: the program, or its subprogram."""
    prog = world.programs[0]
    return prog, lower_program(world, prog)[-1]


def sample_program(cfg: SampleConfig) -> tuple[list[Insn], list[MapRef], VerifierEnv]:
    """The unverified function holding the sites, its used_maps and the verifier env."""
    world = sample_world(cfg)
    prog, fn = _sample_function(world)
    return fn.insns, used_maps(world), prog.env


def verified_sample(cfg: SampleConfig, codegen: Codegen, profile: KernelProfile) -> VerifiedProgram:
    world = sample_world(cfg, profile)
    prog, fn = _sample_function(world)
    vp = verify(world, prog, fn, codegen)
    # A sample's subprogram stands alone: the exception-boundary frame is asked of it directly.
    return (
        vp
        if vp.exception_boundary == cfg.exception_boundary
        else dataclasses.replace(vp, exception_boundary=cfg.exception_boundary)
    )


def tail_call_sites(image) -> list[tuple[int, int]]:
    """[start, end) image offsets of each site: the verifier-inserted bound check (if any) through
    the tail-call sequence."""
    sites = []
    for i, insn in enumerate(image.insns):
        if insn.code == BPF_JMP | BPF_TAIL_CALL:
            first = i
            if i >= 2 and image.insns[i - 2].code == BPF_JMP | BPF_JGE | BPF_K and image.insns[i - 2].off == 2:
                first = i - 2
            sites.append((image.insn_range(first)[0], image.insn_range(i)[1]))
    return sites
