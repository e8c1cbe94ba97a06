"""A world's program as the verifier hands it to do_misc_fixups(): BPF glue + the per-site
insn_aux_data the verifier would have recorded (record_func_map(), record_func_key()).

Glue (identical bytes under every codegen, since the series does not touch these insns):

    r0 = ctx->run_count[id]; r0 += 1; ctx->run_count[id] = r0
    r6..r9 = marker                      one per callee-saved register the program uses
    per site:
      r2 = &array                        ld_imm64 (static); ctx->site[id][j].map (poisoned)
      r3 = key                           constant; ctx->site[id][j].key (run-time, all 64 bits)
      call bpf_tail_call
    r0 = FALL_THROUGH + id
    exit

A program marked `subprog` is two functions, JITed separately as jit_subprogs() does: the main one
bumps the run counter, calls the subprogram and returns its r0; the subprogram holds the marker
registers, the sites and the fall-through.

r1 (ctx) is read again after a tail call falls through. The verifier would not allow that (a helper
call clobbers r1-r5); the x86 sequences leave rdi alone, and the executor checks that they do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tcfuzz.model.bpf import (
    BPF_ADD,
    BPF_ALU64_IMM,
    BPF_CALL_SUBPROG,
    BPF_EMIT_CALL_TAIL_CALL,
    BPF_EXIT_INSN,
    BPF_LD_IMM64,
    BPF_LDX_MEM_DW,
    BPF_MOV64_IMM,
    BPF_STX_MEM_DW,
    R0,
    R1,
    R2,
    R3,
    Insn,
)
from tcfuzz.model.interfaces import Codegen, MapRef, TailCallAux, VerifiedProgram
from tcfuzz.model.layout import BPF_CALL_BASE, array_base, ctx_run_count, ctx_site, image_base, subprog_base
from tcfuzz.model.world import MapSpec, ProgramSpec, SiteSpec, World

FALL_THROUGH = 0x7A110000  # + program id: the value a program returns when every site fell through


def map_ref(m: MapSpec) -> MapRef:
    return MapRef(m.id, m.max_entries, m.index_mask, m.unpriv)


def used_maps(world: World) -> list[MapRef]:
    return [map_ref(m) for m in world.maps]


def site_aux(world: World, site: SiteSpec) -> TailCallAux:
    """bpf_map_ptr_store()/record_func_key() after the verifier has walked every path to the site:
    the last map seen (the site's last listed map), poisoned if more than one, unpriv if any is;
    the key immediate only if it is a constant below every map's max_entries."""
    maps = [world.map(map_id) for map_id in site.maps]
    key = site.key
    if key is not None and any(key >= m.max_entries for m in maps):
        key = None
    return TailCallAux(map_ref(maps[-1]), map_poisoned=len(maps) > 1, map_unpriv=any(m.unpriv for m in maps), key=key)


def load_key(key: int) -> list[Insn]:
    """r3 = key, as a 64-bit value: mov sign-extends its imm32, so large keys need ld_imm64."""
    if 0 <= key <= 0x7FFFFFFF:
        return [BPF_MOV64_IMM(R3, key)]
    return list(BPF_LD_IMM64(R3, key))


@dataclass(frozen=True)
class Function:
    """One bpf_prog the JIT compiles: a program, or the subprogram of a `subprog` program."""

    prog: int
    insns: list[Insn]
    base: int  # image address
    is_subprog: bool
    stack_depth: int
    exception_boundary: bool


def run_count_bump(prog: ProgramSpec) -> list[Insn]:
    count = ctx_run_count(prog.id)
    return [BPF_LDX_MEM_DW(R0, R1, count), BPF_ALU64_IMM(BPF_ADD, R0, 1), BPF_STX_MEM_DW(R1, R0, count)]


def sites_and_fall_through(world: World, prog: ProgramSpec) -> list[Insn]:
    insns: list[Insn] = [BPF_MOV64_IMM(reg, 0x1000 * reg) for reg in sorted(prog.callee_regs)]
    for j, site in enumerate(prog.sites):
        inputs = ctx_site(prog.id, j)
        if len(site.maps) > 1:
            insns.append(BPF_LDX_MEM_DW(R2, R1, inputs + 8))
        else:
            insns.extend(BPF_LD_IMM64(R2, array_base(site.maps[0])))
        if site.key is None:
            insns.append(BPF_LDX_MEM_DW(R3, R1, inputs))
        else:
            insns.extend(load_key(site.key))
        insns.append(BPF_EMIT_CALL_TAIL_CALL(site_aux(world, site)))
    return insns + [BPF_MOV64_IMM(R0, FALL_THROUGH + prog.id), BPF_EXIT_INSN()]


def lower_program(world: World, prog: ProgramSpec) -> list[Function]:
    """The functions of a program, main first."""
    base = image_base(prog.id)
    if not prog.subprog:
        return [
            Function(
                prog.id,
                run_count_bump(prog) + sites_and_fall_through(world, prog),
                base,
                False,
                prog.stack_depth,
                prog.exception_boundary,
            )
        ]
    main = run_count_bump(prog) + [BPF_CALL_SUBPROG(subprog_base(prog.id) - BPF_CALL_BASE), BPF_EXIT_INSN()]
    return [
        Function(prog.id, main, base, False, prog.stack_depth, prog.exception_boundary),
        Function(prog.id, sites_and_fall_through(world, prog), subprog_base(prog.id), True, prog.stack_depth, False),
    ]


def verify(
    world: World, prog: ProgramSpec, fn: Function, codegen: Codegen, maps: Sequence[MapRef] | None = None
) -> VerifiedProgram:
    """One function as the verifier hands it to the JIT: `codegen`'s do_misc_fixups() over the
    world's used_maps (`maps`, when the caller has them already), with the frame facts of the function."""
    maps = list(maps) if maps is not None else used_maps(world)
    fixed, poke_tab = codegen.fixup(fn.insns, prog.env, maps, world.profile)
    return VerifiedProgram(
        fixed,
        fn.stack_depth,
        tail_call_reachable=True,
        is_subprog=fn.is_subprog,
        exception_boundary=fn.exception_boundary,
        used_maps=maps,
        poke_tab=poke_tab,
    )
