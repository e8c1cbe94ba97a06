"""Patch 2/4, arch/x86/net/bpf_jit_comp.c: emit_bpf_tail_call_indirect() with map_index/dyn_array.

Static map (dyn_array false): `cmp edx, imm32` with the verifier-time max_entries, and the jump
target is the cached `ptrs[max_entries + index]`, read at disp32 `offsetof(ptrs) + max_entries * 8`
computed into a C `int`. Dynamic map: `cmp edx, [rsi + max_entries_off]` and the legacy loads.
Both spellings share the single `ctx->tail_call_indirect_label` with sequences of the other length.
"""
from __future__ import annotations

from tcfuzz.jit_old.emit import Emitter, rel8
from tcfuzz.jit_old.tail_call import emit_count_and_unwind, emit_tail_call_cnt_check
from tcfuzz.jit_old.x86 import X86_JAE, X86_JE, emit_indirect_jump
from tcfuzz.model.bpf import s32
from tcfuzz.model.interfaces import JitFault, MapRef, VerifiedProgram
from tcfuzz.model.profile import KernelProfile


def used_map(prog: VerifiedProgram, map_index: int) -> MapRef:
    """`bpf_prog->aux->used_maps[map_index]`, read unconditionally at the top of the function."""
    if not 0 <= map_index < len(prog.used_maps):
        raise JitFault(f"used_maps[{map_index}] is past used_map_cnt={len(prog.used_maps)}")
    return prog.used_maps[map_index]


def static_ptrs_disp(profile: KernelProfile, max_entries: int) -> int:
    """`int offset = offsetof(ptrs); offset += map->max_entries * sizeof(void *);` (u64 product, int result)."""
    return s32(profile.ptrs_off + max_entries * 8)


def emit_bpf_tail_call_indirect(p: Emitter, profile: KernelProfile, prog: VerifiedProgram,
                                map_index: int, dyn_array: bool, callee_regs_used, stack_depth: int,
                                ip: int, ctx) -> None:
    """Mirrors the patched emit_bpf_tail_call_indirect()."""
    map_ = used_map(prog, map_index)
    start = p.pos

    # if (index >= max_entries) goto out;
    p.emit2(0x89, 0xD2)  # mov edx, edx
    if dyn_array:
        p.emit3(0x3B, 0x56, profile.max_entries_off)  # cmp edx, dword ptr [rsi + <max_entries_off>]
    else:
        p.emit2_off32(0x81, 0xFA, map_.max_entries)  # cmp edx, <max_entries>
    offset = ctx.tail_call_indirect_label - (p.pos + 2 - start)
    p.emit2(X86_JAE, rel8(offset))  # jae <out>

    emit_tail_call_cnt_check(p, profile, stack_depth, ctx.tail_call_indirect_label, start)

    # dyn_array ? prog = array->ptrs[index] : tgt = array->ptrs[max_entries + index];
    offset = profile.ptrs_off if dyn_array else static_ptrs_disp(profile, map_.max_entries)
    p.emit4_off32(0x48, 0x8B, 0x8C, 0xD6, offset)  # mov rcx, qword ptr [rsi + rdx*8 + <offset>]
    p.emit3(0x48, 0x85, 0xC9)  # test rcx, rcx
    offset = ctx.tail_call_indirect_label - (p.pos + 2 - start)
    p.emit2(X86_JE, rel8(offset))  # je <out>

    emit_count_and_unwind(p, prog, callee_regs_used, stack_depth)

    if dyn_array:
        p.emit4(0x48, 0x8B, 0x49, profile.bpf_func_off)  # mov rcx, qword ptr [rcx + <bpf_func_off>]
        p.emit4(0x48, 0x83, 0xC1, profile.tail_call_offset)  # add rcx, <X86_TAIL_CALL_OFFSET>
    emit_indirect_jump(p, profile, ip + (p.pos - start), ctx.text)

    # out:
    ctx.tail_call_indirect_label = p.pos - start
