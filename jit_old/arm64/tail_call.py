"""emit_bpf_tail_call() of arch/arm64/net/bpf_jit_comp.c, bpf-next before the 2026-01-02 series.

On entry x1 = &bpf_array (BPF r2), x2 = index (r3). tmp = x10, prg = x11, tcc = x12 (TMP_REG_3),
ptr = x26 (TCCNT_PTR, pointing at the counter in the main program's frame). The three `goto out`
branches are emitted as NOPs and patched once the sequence's end is known (`if (ctx->image)`), so
each sequence jumps to its own end: unlike x86-64 there is no label shared between sequences.

    mov w10, #max_entries_off; ldr w10, [x1, x10]; add w2, w2, #0; cmp w2, w10; b.hs out
    mov w10, #33; ldr x12, [x26]; cmp x12, x10; b.hs out; add x12, x12, #1
    mov w10, #ptrs_off; add x10, x1, x10; lsl x11, x2, #3; ldr x11, [x10, x11]; cbz x11, out
    str x12, [x26]; [add sp, sp, #stack_size]; callee-saved pops
    mov w10, #bpf_func_off; ldr x10, [x11, x10]; add x10, x10, #(4 * PROLOGUE_OFFSET); br x10
out:
"""

from __future__ import annotations

from tcfuzz.jit_old.arm64.a64 import (
    A64_ADD,
    A64_ADD_I,
    A64_B_,
    A64_BR,
    A64_CBZ,
    A64_CMP,
    A64_LDR32,
    A64_LDR64,
    A64_LDR64I,
    A64_LSL,
    A64_MOV,
    A64_NOP,
    A64_SP,
    A64_STR64I,
    BPF2A64,
    COND_CS,
    TCCNT_PTR,
    TMP_REG_1,
    TMP_REG_2,
    TMP_REG_3,
)
from tcfuzz.jit_old.arm64.emit import JitCtx, emit_a64_mov_i64
from tcfuzz.jit_old.arm64.prologue import pop_callee_regs

R2, R3 = BPF2A64[2], BPF2A64[3]  # x1, x2
TMP, PRG, TCC, PTR = TMP_REG_1, TMP_REG_2, TMP_REG_3, TCCNT_PTR


def emit_index_check_tail(ctx: JitCtx) -> int:
    """`mov w3, w3; cmp w3, w_tmp` and the NOP of branch1 (returns its index). The 32-bit add
    zero-extends the index, the 32-bit compare is unsigned via b.hs (= b.cs)."""
    ctx.emit(A64_MOV(0, R3, R3))  # add w2, w2, #0
    ctx.emit(A64_CMP(0, R3, TMP))  # cmp w2, w10
    return ctx.emit(A64_NOP)  # nop


def emit_tail_call_cnt_check(ctx: JitCtx, max_tail_call_cnt: int) -> int:
    """if ((*tail_call_cnt_ptr) >= MAX_TAIL_CALL_CNT) goto out; (*tail_call_cnt_ptr)++ into tcc
    only: the store waits for emit_count_and_unwind(). Returns branch2's index."""
    emit_a64_mov_i64(ctx, TMP, max_tail_call_cnt)
    ctx.emit(A64_LDR64I(TCC, PTR, 0))  # ldr x12, [x26]
    ctx.emit(A64_CMP(1, TCC, TMP))  # cmp x12, x10
    branch2 = ctx.emit(A64_NOP)  # nop
    ctx.emit(A64_ADD_I(1, TCC, TCC, 1))  # add x12, x12, #1
    return branch2


def emit_count_and_unwind(ctx: JitCtx) -> None:
    """Once the slot is known populated: store the count, drop the stack, pop callee-saved regs."""
    ctx.emit(A64_STR64I(TCC, PTR, 0))  # str x12, [x26]
    if ctx.stack_size:
        ctx.emit(A64_ADD_I(1, A64_SP, A64_SP, ctx.stack_size))  # add sp, sp, #<stack_size>
    pop_callee_regs(ctx)


def patch_out_branches(ctx: JitCtx, branch1: int, branch2: int, branch3: int, target_reg: int) -> None:
    """The `if (ctx->image)` block: every NOP becomes a branch to this sequence's end."""
    ctx.patch(branch1, A64_B_(COND_CS, ctx.idx - branch1))  # b.hs #<out>
    ctx.patch(branch2, A64_B_(COND_CS, ctx.idx - branch2))  # b.hs #<out>
    ctx.patch(branch3, A64_CBZ(1, target_reg, ctx.idx - branch3))  # cbz x11, #<out>


def emit_bpf_tail_call(ctx: JitCtx) -> None:
    """Mirrors emit_bpf_tail_call(struct jit_ctx *ctx)."""
    profile = ctx.profile

    # if (index >= array->map.max_entries) goto out;
    emit_a64_mov_i64(ctx, TMP, profile.max_entries_off)
    ctx.emit(A64_LDR32(TMP, R2, TMP))  # ldr w10, [x1, x10]
    branch1 = emit_index_check_tail(ctx)

    branch2 = emit_tail_call_cnt_check(ctx, profile.max_tail_call_cnt)

    # prog = array->ptrs[index]; if (prog == NULL) goto out;
    emit_a64_mov_i64(ctx, TMP, profile.ptrs_off)
    ctx.emit(A64_ADD(1, TMP, R2, TMP))  # add x10, x1, x10
    ctx.emit(A64_LSL(1, PRG, R3, 3))  # lsl x11, x2, #3
    ctx.emit(A64_LDR64(PRG, TMP, PRG))  # ldr x11, [x10, x11]
    branch3 = ctx.emit(A64_NOP)  # nop

    emit_count_and_unwind(ctx)

    # goto *(prog->bpf_func + prologue_offset);
    emit_a64_mov_i64(ctx, TMP, profile.bpf_func_off)
    ctx.emit(A64_LDR64(TMP, PRG, TMP))  # ldr x10, [x11, x10]
    ctx.emit(A64_ADD_I(1, TMP, TMP, 4 * profile.prologue_offset))  # add x10, x10, #<prologue_offset>
    ctx.emit(A64_BR(TMP))  # br x10

    patch_out_branches(ctx, branch1, branch2, branch3, PRG)

