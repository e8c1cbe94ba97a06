"""A program with one or more tail-call sites, lowered to BPF: the unit of `tcfuzz disasm` and of the
golden tests.

The body is the glue every tcfuzz program uses (identical bytes under every codegen):
    r6..r9 = marker          (one per callee-saved register the program uses)
    per site:
      r2 = &array            (ld_imm64; loaded from ctx+8 when the site is poisoned)
      r3 = key               (mov; loaded from ctx+0 when the key is a run-time value)
      call bpf_tail_call
    r0 = FALL_THROUGH
    exit
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tcfuzz.model.bpf import (
    BPF_EMIT_CALL_TAIL_CALL,
    BPF_EXIT_INSN,
    BPF_JGE,
    BPF_JMP,
    BPF_K,
    BPF_LD_IMM64,
    BPF_LDX_MEM_DW,
    BPF_MOV64_IMM,
    BPF_TAIL_CALL,
    CALLEE_SAVED,
    R0,
    R1,
    R2,
    R3,
    Insn,
)
from tcfuzz.model.interfaces import MapRef, TailCallAux, VerifiedProgram, VerifierEnv
from tcfuzz.model.layout import array_base
from tcfuzz.model.profile import KernelProfile
from tcfuzz.model.world import index_mask

FALL_THROUGH = 0x7A11
CTX_KEY_OFF = 0
CTX_MAP_OFF = 8


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


def sample_program(cfg: SampleConfig) -> tuple[list[Insn], list[MapRef], VerifierEnv]:
    """The unverified program, its used_maps (filler map 1 first, then the target map 0) and env."""
    target = MapRef(0, cfg.max_entries, index_mask(cfg.max_entries), cfg.unpriv)
    filler = MapRef(1, 2, index_mask(2), cfg.unpriv)
    used_maps = [filler, target] if SiteKind.DYNAMIC in cfg.sites else [target]
    insns: list[Insn] = [BPF_MOV64_IMM(reg, 0x1000 * reg) for reg in sorted(cfg.callee_regs)]
    for kind in cfg.sites:
        if kind is SiteKind.DYNAMIC:
            aux = TailCallAux(target, map_poisoned=True, map_unpriv=cfg.unpriv, key=None)
            insns.append(BPF_LDX_MEM_DW(R2, R1, CTX_MAP_OFF))
        else:
            key = cfg.key if kind is SiteKind.DIRECT else None
            aux = TailCallAux(target, map_poisoned=False, map_unpriv=cfg.unpriv, key=key)
            insns.extend(BPF_LD_IMM64(R2, array_base(target.map_id)))
        if kind is SiteKind.DIRECT:
            insns.append(BPF_MOV64_IMM(R3, cfg.key))
        else:
            insns.append(BPF_LDX_MEM_DW(R3, R1, CTX_KEY_OFF))
        insns.append(BPF_EMIT_CALL_TAIL_CALL(aux))
    insns += [BPF_MOV64_IMM(R0, FALL_THROUGH), BPF_EXIT_INSN()]
    return insns, used_maps, VerifierEnv()


def verified_sample(cfg: SampleConfig, codegen, profile: KernelProfile) -> VerifiedProgram:
    insns, used_maps, env = sample_program(cfg)
    fixed, poke_tab = codegen.fixup(insns, env, used_maps, profile)
    return VerifiedProgram(
        fixed,
        cfg.stack_depth,
        tail_call_reachable=True,
        is_subprog=cfg.is_subprog,
        exception_boundary=cfg.exception_boundary,
        used_maps=used_maps,
        poke_tab=poke_tab,
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
