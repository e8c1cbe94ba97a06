"""Patch 3/4, arch/arm64/net/bpf_jit_comp.c: emit_bpf_tail_call(ctx, map_index, dyn_array).

Static map (dyn_array false): max_entries is an immediate (`emit_a64_mov_i64(tmp,
map->max_entries)`), and the jump target is the cached `ptrs[max_entries + index]` of patch 1/4,
read through `emit_a64_add_i(1, prg, prg, tmp, off)` with the size_t
`off = offsetof(ptrs) + max_entries * sizeof(void *)` passed to that helper's `s32 imm`, then
`br prg` with no bpf_func load and no PROLOGUE_OFFSET add. Dynamic map: the legacy code.
"""

from __future__ import annotations

from tcfuzz.jit_new.tail_call import used_map
from tcfuzz.jit_old.arm64.a64 import A64_ADD, A64_ADD_I, A64_BR, A64_LDR32, A64_LDR64, A64_LSL, A64_NOP
from tcfuzz.jit_old.arm64.emit import JitCtx, emit_a64_add_i, emit_a64_mov_i64
from tcfuzz.jit_old.arm64.tail_call import (
    PRG,
    R2,
    R3,
    TMP,
    emit_count_and_unwind,
    emit_index_check_tail,
    emit_tail_call_cnt_check,
    patch_out_branches,
)


def static_target_offset(ptrs_off: int, max_entries: int) -> int:
    """`off = offsetof(struct bpf_array, ptrs) + map->max_entries * sizeof(void *)`: a size_t, exact."""
    return ptrs_off + max_entries * 8


def emit_bpf_tail_call(ctx: JitCtx, map_index: int, dyn_array: bool, target_offset=static_target_offset) -> None:
    """Mirrors the patched emit_bpf_tail_call(). `target_offset` is the kernel's expression unless a
    planted bug replaces it."""
    profile = ctx.profile
    map_ = used_map(ctx.prog, map_index)  # read unconditionally, even on the dynamic path

    # if (index >= max_entries) goto out;
    if dyn_array:
        emit_a64_mov_i64(ctx, TMP, profile.max_entries_off)
        ctx.emit(A64_LDR32(TMP, R2, TMP))  # ldr w10, [x1, x10]
    else:
        emit_a64_mov_i64(ctx, TMP, map_.max_entries)
    branch1 = emit_index_check_tail(ctx)

    branch2 = emit_tail_call_cnt_check(ctx, profile.max_tail_call_cnt)

    if dyn_array:
        # prog = array->ptrs[index]; if (prog == NULL) goto out;
        emit_a64_mov_i64(ctx, TMP, profile.ptrs_off)
        ctx.emit(A64_ADD(1, TMP, R2, TMP))  # add x10, x1, x10
        ctx.emit(A64_LSL(1, PRG, R3, 3))  # lsl x11, x2, #3
        ctx.emit(A64_LDR64(PRG, TMP, PRG))  # ldr x11, [x10, x11]
    else:
        # tgt = array->ptrs[max_entries + index]; if (tgt == 0) goto out;
        ctx.emit(A64_LSL(1, PRG, R3, 3))  # lsl x11, x2, #3
        emit_a64_add_i(ctx, True, PRG, PRG, TMP, target_offset(profile.ptrs_off, map_.max_entries))
        ctx.emit(A64_LDR64(PRG, R2, PRG))  # ldr x11, [x1, x11]
    branch3 = ctx.emit(A64_NOP)  # nop

    emit_count_and_unwind(ctx)

    if dyn_array:
        # goto *(prog->bpf_func + prologue_offset);
        emit_a64_mov_i64(ctx, TMP, profile.bpf_func_off)
        ctx.emit(A64_LDR64(TMP, PRG, TMP))  # ldr x10, [x11, x10]
        ctx.emit(A64_ADD_I(1, TMP, TMP, 4 * profile.prologue_offset))  # add x10, x10, #<prologue_offset>
        ctx.emit(A64_BR(TMP))  # br x10
    else:
        # goto *tgt;
        ctx.emit(A64_BR(PRG))  # br x11

    patch_out_branches(ctx, branch1, branch2, branch3, PRG)
