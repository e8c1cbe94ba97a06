"""A world as programs the running kernel accepts: SCHED_CLS programs over real maps.

The glue does what tcfuzz's executor glue does (model/lower.py), with the kernel's own storage
instead of a ctx the harness owns (a real `struct __sk_buff` cannot hold it):

    r2 = &counts[id]                     ld_imm64 BPF_PSEUDO_MAP_VALUE (ARRAY map `counts`, key 0)
    r0 = *(u64 *)(r2 + 0); r0 += 1; *(u64 *)(r2 + 0) = r0
    *(u64 *)(r10 - D) = r1               ctx spill, when the program needs a stack (below)
    r6..r9 = marker                      one per callee-saved register the world names
    per site:
      r1 = *(u64 *)(r10 - D)             after the first site (a helper call clobbers r1-r5)
      r2 = &array                        ld_imm64 BPF_PSEUDO_MAP_FD; poisoned: chosen at run time,
                                         `r4 = inputs[site].map; r2 = last; if r4 != k goto +2; r2 = map k`
      r3 = key                           constant, or `r3 = inputs[site].key` (ARRAY map `inputs`)
      call bpf_tail_call
    r0 = FALL_THROUGH + id; exit         test_run's retval says which program fell through

`D` is the world's stack depth rounded up to 8 (the JIT rounds it so anyway), or 8 when a
program with several sites has none: the ctx must survive the first call. A `subprog` program's
main function bumps its counter and calls the subprogram, which holds the sites.

Each insn list is written once, as `Insn`s: `encode()` gives the kernel its bytes (map fds in the
ld_imm64s), `bind()` gives jit_old the same insns with the addresses the kernel chose.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass
from pathlib import Path

from tcfuzz.live.bpf import BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE
from tcfuzz.model.bpf import (
    BPF_ADD,
    BPF_ALU64_IMM,
    BPF_CALL_SUBPROG,
    BPF_EMIT_CALL_TAIL_CALL,
    BPF_EXIT_INSN,
    BPF_JMP_IMM,
    BPF_JNE,
    BPF_LD_IMM64,
    BPF_LDX_MEM_DW,
    BPF_MOV64_IMM,
    BPF_PSEUDO_CALL,
    BPF_STX_MEM_DW,
    R0,
    R1,
    R2,
    R3,
    R4,
    R10,
    Insn,
    round_up,
)
from tcfuzz.model.interfaces import VerifierEnv
from tcfuzz.model.layout import MAX_PROGS, MAX_SITES
from tcfuzz.model.lower import FALL_THROUGH, load_key, site_aux
from tcfuzz.model.world import ProgramSpec, World

COUNTS = "counts"  # u64 run_count[MAX_PROGS]
INPUTS = "inputs"  # {u64 key, u64 map choice}[MAX_PROGS][MAX_SITES]
INPUT_SIZE = 16
COUNTS_SIZE = 8 * MAX_PROGS
INPUTS_SIZE = INPUT_SIZE * MAX_PROGS * MAX_SITES


@dataclass(frozen=True)
class MapSymbol:
    """An ld_imm64 operand the kernel resolves: a prog array (`map_id`) or a value of a glue map."""

    map_id: int | None = None  # world map id (BPF_PSEUDO_MAP_FD)
    glue: str | None = None  # COUNTS or INPUTS (BPF_PSEUDO_MAP_VALUE, key 0)
    off: int = 0


def ld_symbol(dst: int, symbol: MapSymbol) -> list[Insn]:
    first, second = BPF_LD_IMM64(dst, 0)
    return [Insn(first.code, dst, 0, 0, 0, symbol), second]


def input_offset(prog: int, site: int) -> int:
    return INPUT_SIZE * (prog * MAX_SITES + site)


@dataclass(frozen=True)
class KFunction:
    """One function as the kernel JITs it: the main program or its one subprogram."""

    prog: int
    insns: list[Insn]
    is_subprog: bool
    stack_depth: int
    exception_boundary: bool
    tail_call_reachable: bool


def stack_slot(prog: ProgramSpec) -> int:
    if prog.stack_depth:
        return round_up(prog.stack_depth, 8)
    return 8 if len(prog.sites) > 1 else 0


def select_map(world: World, prog: ProgramSpec, j: int) -> list[Insn]:
    site = prog.sites[j]
    if len(site.maps) == 1:
        return ld_symbol(R2, MapSymbol(map_id=site.maps[0]))
    insns = ld_symbol(R4, MapSymbol(glue=INPUTS, off=input_offset(prog.id, j) + 8)) + [BPF_LDX_MEM_DW(R4, R4, 0)]
    insns += ld_symbol(R2, MapSymbol(map_id=site.maps[-1]))
    for k, map_id in enumerate(site.maps[:-1]):
        insns += [BPF_JMP_IMM(BPF_JNE, R4, k, 2)] + ld_symbol(R2, MapSymbol(map_id=map_id))
    return insns


def sites_and_fall_through(world: World, prog: ProgramSpec, slot: int) -> list[Insn]:
    insns: list[Insn] = [BPF_STX_MEM_DW(R10, R1, -slot)] if slot else []
    insns += [BPF_MOV64_IMM(reg, 0x1000 * reg) for reg in sorted(prog.callee_regs)]
    for j, site in enumerate(prog.sites):
        if j:
            insns.append(BPF_LDX_MEM_DW(R1, R10, -slot))
        insns += select_map(world, prog, j)
        if site.key is None:
            insns += ld_symbol(R3, MapSymbol(glue=INPUTS, off=input_offset(prog.id, j))) + [BPF_LDX_MEM_DW(R3, R3, 0)]
        else:
            insns += load_key(site.key)
        insns.append(BPF_EMIT_CALL_TAIL_CALL(site_aux(world, site)))
    return insns + [BPF_MOV64_IMM(R0, FALL_THROUGH + prog.id), BPF_EXIT_INSN()]


def run_count_bump(prog: ProgramSpec) -> list[Insn]:
    return ld_symbol(R2, MapSymbol(glue=COUNTS, off=8 * prog.id)) + [
        BPF_LDX_MEM_DW(R0, R2, 0),
        BPF_ALU64_IMM(BPF_ADD, R0, 1),
        BPF_STX_MEM_DW(R2, R0, 0),
    ]


def lower_program(world: World, prog: ProgramSpec) -> list[KFunction]:
    """The functions of a program, main first (the verifier's subprog order)."""
    slot = stack_slot(prog)
    reachable = bool(prog.sites)  # check_max_stack_depth(): a frame with a tail call, and its callers
    if not prog.subprog:
        body = run_count_bump(prog) + sites_and_fall_through(world, prog, slot)
        return [KFunction(prog.id, body, False, slot, prog.exception_boundary, reachable)]
    touch = [BPF_STX_MEM_DW(R10, R1, -slot)] if slot else []
    main = run_count_bump(prog) + touch + [BPF_CALL_SUBPROG(0), BPF_EXIT_INSN()]
    sub = sites_and_fall_through(world, prog, slot)
    return [
        KFunction(prog.id, main, False, slot, prog.exception_boundary, reachable),
        KFunction(prog.id, sub, True, slot, False, reachable),
    ]


def encode_insn(insn: Insn, src: int | None = None, imm: int | None = None) -> bytes:
    """struct bpf_insn: code u8, dst_reg:4 | src_reg:4 << 4, off s16, imm s32."""
    src = insn.src if src is None else src
    imm = insn.imm if imm is None else imm
    return struct.pack("<BBhi", insn.code, (insn.dst & 0xF) | (src & 0xF) << 4, insn.off, imm)


def encode(functions: list[KFunction], fds: dict[MapSymbol, int]) -> bytes:
    """The program as BPF_PROG_LOAD takes it: functions concatenated, the pseudo call's imm relative
    to the next insn, map fds in the ld_imm64s (their offsets in the second half)."""
    out = bytearray()
    main_len = len(functions[0].insns)
    for fn in functions:
        for i, insn in enumerate(fn.insns):
            if isinstance(insn.aux, MapSymbol):
                pseudo = BPF_PSEUDO_MAP_VALUE if insn.aux.glue else BPF_PSEUDO_MAP_FD
                out += encode_insn(insn, pseudo, fds[MapSymbol(insn.aux.map_id, insn.aux.glue)])
                continue
            if i and isinstance(fn.insns[i - 1].aux, MapSymbol):
                out += encode_insn(insn, 0, fn.insns[i - 1].aux.off)
                continue
            if insn.code == BPF_CALL_SUBPROG(0).code and insn.src == BPF_PSEUDO_CALL:
                out += encode_insn(insn, imm=main_len - (i + 1))
                continue
            out += encode_insn(insn)
    return bytes(out)


def bind(insns: list[Insn], addresses: dict[MapSymbol, int]) -> list[Insn]:
    """The insns with every symbolic ld_imm64 resolved to the kernel's address (map + value offset)."""
    out = list(insns)
    for i, insn in enumerate(insns):
        if isinstance(insn.aux, MapSymbol):
            value = addresses[MapSymbol(insn.aux.map_id, insn.aux.glue)] + insn.aux.off
            first, second = BPF_LD_IMM64(insn.dst, value)
            out[i], out[i + 1] = first, second
    return out


LIVE_ENV = VerifierEnv(bpf_capable=True, blinding_requested=False, jit_requested=True)
BPF_JIT_HARDEN = Path("/proc/sys/net/core/bpf_jit_harden")


def live_env() -> VerifierEnv:
    """What the verifier sees here: root (bpf_capable), the JIT on, blinding only if bpf_jit_harden
    asks for it for root (2)."""
    harden = int(BPF_JIT_HARDEN.read_text()) if BPF_JIT_HARDEN.exists() else 0
    return dataclasses.replace(LIVE_ENV, blinding_requested=harden >= 2)


def adapt(world: World) -> tuple[World, list[str]]:
    """The world as this process can hold it in the running kernel, and what had to change:
    the verifier environment is the process's (root, no blinding), and an exception boundary
    needs a program that calls bpf_throw (the glue does not). Unpriv maps are real (created
    without CAP_PERFMON, bpf.map_create_unpriv). Every voter then runs the adapted world."""
    notes: list[str] = []
    env = live_env()
    programs = []
    for prog in world.programs:
        changes: dict = {}
        if prog.env != env:
            notes.append(f"programs[{prog.id}].env: {prog.env} -> the live verifier's {env}")
            changes["env"] = env
        if prog.exception_boundary:
            notes.append(f"programs[{prog.id}].exception_boundary: the glue has no bpf_throw, so no boundary")
            changes["exception_boundary"] = False
        programs.append(dataclasses.replace(prog, **changes) if changes else prog)
    if not notes:
        return world, notes
    return dataclasses.replace(world, programs=tuple(programs)), notes


DRIVER = "driver"  # u64 calls left: the driver's own state (ARRAY map, key 0)
DRIVER_ARRAY = MapSymbol(map_id=-1)  # the driver's prog array: slot 0 the driver, slot 1 the entry
BPF_JEQ = 0x10


def driver_program() -> list[Insn]:
    """A run that enters the entry program as a tail callee with count c: the driver tail-calls
    itself c - 1 times (its `calls left` word counting down), then tail-calls the entry, whose
    counter is then c. r1 (ctx) is untouched until the tail calls. Not compared with jit_old: it
    is not part of the world."""
    left = ld_symbol(R2, MapSymbol(glue=DRIVER))
    return (
        left
        + [BPF_LDX_MEM_DW(R0, R2, 0), BPF_JMP_IMM(BPF_JEQ, R0, 0, 8)]  # no calls left: to the entry
        + [BPF_ALU64_IMM(BPF_ADD, R0, -1), BPF_STX_MEM_DW(R2, R0, 0)]
        + ld_symbol(R2, DRIVER_ARRAY)
        + [BPF_MOV64_IMM(R3, 0), BPF_EMIT_CALL_TAIL_CALL(None), BPF_MOV64_IMM(R0, 0), BPF_EXIT_INSN()]
        + ld_symbol(R2, DRIVER_ARRAY)
        + [BPF_MOV64_IMM(R3, 1), BPF_EMIT_CALL_TAIL_CALL(None), BPF_MOV64_IMM(R0, 0), BPF_EXIT_INSN()]
    )
