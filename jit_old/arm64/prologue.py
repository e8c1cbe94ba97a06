"""Program entry and exit of arch/arm64/net/bpf_jit_comp.c (bpf-next before the 2026-01-02
series): prepare_bpf_tail_call_cnt(), find_used_callee_regs(), push_callee_regs(),
pop_callee_regs(), build_prologue(), build_epilogue(). No kCFI hash, private stack or arena.

A main program's entry, in instructions from bpf_func (the kernel's comment above
prepare_bpf_tail_call_cnt()):

    [bti jc]  mov x9, lr  nop  [paciasp]  stp x29, lr, [sp, #-16]!  mov x29, sp
    stp xzr, x26, [sp, #-16]!  mov x26, sp            <- PROLOGUE_OFFSET = BTI + 2 + PAC + 4
    [bti j]  callee-saved pushes  [mov x25, sp]  [sub sp, sp, #stack_size]

The counter is the zero pushed by `stp xzr, x26`, and x26 (TCCNT_PTR) points at it. A tail call
enters the callee at PROLOGUE_OFFSET, so the callee keeps the caller's frame record and counter
slot; a subprogram pushes x26 twice and keeps the pointer it was given.
"""

from __future__ import annotations

from tcfuzz.jit_old.arm64.a64 import (
    A64_ADD_I,
    A64_AUTIASP,
    A64_BTI_J,
    A64_BTI_JC,
    A64_FP,
    A64_LR,
    A64_MOV,
    A64_NOP,
    A64_PACIASP,
    A64_POP,
    A64_PUSH,
    A64_RET,
    A64_SP,
    A64_SUB_I,
    A64_ZR,
    BPF2A64,
    TCCNT_PTR,
)
from tcfuzz.jit_old.arm64.emit import JitCtx
from tcfuzz.model.bpf import R0, R6, R7, R8, R9, R10, round_up
from tcfuzz.model.interfaces import JitError


def prepare_bpf_tail_call_cnt(ctx: JitCtx) -> None:
    """Mirrors prepare_bpf_tail_call_cnt(): a main program owns the counter, a subprogram keeps x26."""
    if not ctx.prog.is_subprog:
        ctx.emit(A64_PUSH(A64_ZR, TCCNT_PTR, A64_SP))  # stp xzr, x26, [sp, #-0x10]!
        ctx.emit(A64_MOV(1, TCCNT_PTR, A64_SP))  # mov x26, sp
    else:
        ctx.emit(A64_PUSH(TCCNT_PTR, TCCNT_PTR, A64_SP))  # stp x26, x26, [sp, #-0x10]!


def find_used_callee_regs(ctx: JitCtx) -> None:
    """Mirrors find_used_callee_regs(): r6..r9 and fp (x19..x22, x25) in that order, by use."""
    insns = ctx.prog.insns
    used = [any(reg in (i.dst, i.src) for i in insns) for reg in (R6, R7, R8, R9, R10)]
    ctx.used_callee_reg = [BPF2A64[reg] for reg, u in zip((R6, R7, R8, R9, R10), used, strict=True) if u]
    ctx.fp_used = used[4]


def push_callee_regs(ctx: JitCtx) -> None:
    """Mirrors push_callee_regs(): an exception boundary saves x19..x28 (and marks fp used)."""
    if ctx.prog.exception_boundary:
        ctx.emit(A64_PUSH(19, 20, A64_SP))  # stp x19, x20, [sp, #-0x10]!
        ctx.emit(A64_PUSH(21, 22, A64_SP))  # stp x21, x22, [sp, #-0x10]!
        ctx.emit(A64_PUSH(23, 24, A64_SP))  # stp x23, x24, [sp, #-0x10]!
        ctx.emit(A64_PUSH(25, 26, A64_SP))  # stp x25, x26, [sp, #-0x10]!
        ctx.emit(A64_PUSH(27, 28, A64_SP))  # stp x27, x28, [sp, #-0x10]!
        ctx.fp_used = True
        return
    find_used_callee_regs(ctx)
    regs = ctx.used_callee_reg
    i = 0
    while i + 1 < len(regs):
        ctx.emit(A64_PUSH(regs[i], regs[i + 1], A64_SP))  # stp <reg1>, <reg2>, [sp, #-0x10]!
        i += 2
    if i < len(regs):
        ctx.emit(A64_PUSH(regs[i], A64_ZR, A64_SP))  # stp <reg1>, xzr, [sp, #-0x10]!


def pop_callee_regs(ctx: JitCtx) -> None:
    """Mirrors pop_callee_regs() (the exception callback case is not modelled)."""
    if ctx.prog.exception_boundary:
        ctx.emit(A64_POP(27, 28, A64_SP))  # ldp x27, x28, [sp], #0x10
        ctx.emit(A64_POP(25, 26, A64_SP))  # ldp x25, x26, [sp], #0x10
        ctx.emit(A64_POP(23, 24, A64_SP))  # ldp x23, x24, [sp], #0x10
        ctx.emit(A64_POP(21, 22, A64_SP))  # ldp x21, x22, [sp], #0x10
        ctx.emit(A64_POP(19, 20, A64_SP))  # ldp x19, x20, [sp], #0x10
        return
    regs = ctx.used_callee_reg
    i = len(regs) - 1
    if len(regs) % 2:
        ctx.emit(A64_POP(regs[i], A64_ZR, A64_SP))  # ldp <reg1>, xzr, [sp], #0x10
        i -= 1
    while i > 0:
        ctx.emit(A64_POP(regs[i - 1], regs[i], A64_SP))  # ldp <reg1>, <reg2>, [sp], #0x10
        i -= 2


def build_prologue(ctx: JitCtx) -> None:
    """Mirrors build_prologue() for an eBPF (not classic) program that is not the exception callback."""
    profile = ctx.profile
    is_main_prog = not ctx.prog.is_subprog
    idx0 = ctx.idx
    if profile.bti:
        ctx.emit(A64_BTI_JC)  # bti jc
    ctx.emit(A64_MOV(1, 9, A64_LR))  # add x9, x30, #0
    ctx.emit(A64_NOP)  # nop
    if profile.pac:
        ctx.emit(A64_PACIASP)  # paciasp
    ctx.emit(A64_PUSH(A64_FP, A64_LR, A64_SP))  # stp x29, x30, [sp, #-0x10]!
    ctx.emit(A64_MOV(1, A64_FP, A64_SP))  # mov x29, sp
    prepare_bpf_tail_call_cnt(ctx)
    if is_main_prog:
        cur_offset = ctx.idx - idx0
        if cur_offset != profile.prologue_offset:
            raise JitError(f"PROLOGUE_OFFSET = {cur_offset}, expected {profile.prologue_offset}!")
        # BTI landing pad for the tail call, done with a BR
        if profile.bti:
            ctx.emit(A64_BTI_J)  # bti j
    push_callee_regs(ctx)
    ctx.stack_size = round_up(ctx.prog.stack_depth, 16)
    if ctx.fp_used:
        ctx.emit(A64_MOV(1, BPF2A64[R10], A64_SP))  # mov x25, sp
    if ctx.stack_size:
        ctx.emit(A64_SUB_I(1, A64_SP, A64_SP, ctx.stack_size))  # sub sp, sp, #<stack_size>


def build_epilogue(ctx: JitCtx) -> None:
    """Mirrors build_epilogue() for an eBPF program (no BHB mitigation: that is for classic BPF)."""
    if ctx.stack_size:
        ctx.emit(A64_ADD_I(1, A64_SP, A64_SP, ctx.stack_size))  # add sp, sp, #<stack_size>
    pop_callee_regs(ctx)
    ctx.emit(A64_POP(A64_ZR, TCCNT_PTR, A64_SP))  # ldp xzr, x26, [sp], #0x10
    ctx.emit(A64_POP(A64_FP, A64_LR, A64_SP))  # ldp x29, x30, [sp], #0x10
    ctx.emit(A64_MOV(1, 0, BPF2A64[R0]))  # add x0, x7, #0
    if ctx.profile.pac:
        ctx.emit(A64_AUTIASP)  # autiasp
    ctx.emit(A64_RET(A64_LR))  # ret
