"""The legacy tail-call sequences: emit_bpf_tail_call_indirect() and emit_bpf_tail_call_direct()
of arch/x86/net/bpf_jit_comp.c (bpf-next before the 2026-01-02 series).

On entry rdi = ctx, rsi = &bpf_array, rdx = index. Every `jcc out` reads `ctx.tail_call_*_label`,
the sequence length recorded by the previous sequence of the same kind (in this pass or the
previous one), exactly as the kernel's multi-pass JIT does.
"""
from __future__ import annotations

from tcfuzz.jit_old.emit import Emitter, rel8
from tcfuzz.jit_old.x86 import X86_JAE, X86_JBE, X86_JE, X86_PATCH_SIZE, emit_indirect_jump, emit_jump, emit_nops, pop_frame_regs
from tcfuzz.model.bpf import round_up
from tcfuzz.model.interfaces import PokeDescriptor, VerifiedProgram
from tcfuzz.model.profile import KernelProfile


def BPF_TAIL_CALL_CNT_PTR_STACK_OFF(stack_depth: int) -> int:
    return -16 - round_up(stack_depth, 8)


def emit_tail_call_cnt_check(p: Emitter, profile: KernelProfile, stack_depth: int, out_label: int,
                             start: int) -> None:
    """if ((*tcc_ptr)++ >= MAX_TAIL_CALL_CNT) goto out; -- the increment itself waits for
    emit_count_and_unwind(), once the call is certain."""
    tcc_ptr_off = BPF_TAIL_CALL_CNT_PTR_STACK_OFF(stack_depth)
    p.emit3_off32(0x48, 0x8B, 0x85, tcc_ptr_off)  # mov rax, qword ptr [rbp + <tcc_ptr_off>]
    p.emit4(0x48, 0x83, 0x38, profile.max_tail_call_cnt)  # cmp qword ptr [rax], <MAX_TAIL_CALL_CNT>
    offset = out_label - (p.pos + 2 - start)
    p.emit2(X86_JAE, rel8(offset))  # jae <out>


def emit_count_and_unwind(p: Emitter, prog: VerifiedProgram, callee_regs_used, stack_depth: int) -> None:
    """The block every tail-call sequence emits once the call is certain: count it, then undo this
    program's frame down to rbp."""
    # Inc tail_call_cnt if the slot is populated.
    p.emit4(0x48, 0x83, 0x00, 0x01)  # add qword ptr [rax], 1
    pop_frame_regs(p, prog.exception_boundary, callee_regs_used)
    p.emit1(0x58)  # pop rax
    p.emit1(0x58)  # pop rax
    if stack_depth:
        p.emit3_off32(0x48, 0x81, 0xC4, round_up(stack_depth, 8))  # add rsp, <R>


def emit_bpf_tail_call_indirect(p: Emitter, profile: KernelProfile, prog: VerifiedProgram,
                                callee_regs_used, stack_depth: int, ip: int, ctx) -> None:
    """Mirrors emit_bpf_tail_call_indirect()."""
    start = p.pos

    # if (index >= array->map.max_entries) goto out;
    p.emit2(0x89, 0xD2)  # mov edx, edx
    p.emit3(0x39, 0x56, profile.max_entries_off)  # cmp dword ptr [rsi + <max_entries_off>], edx
    offset = ctx.tail_call_indirect_label - (p.pos + 2 - start)
    p.emit2(X86_JBE, rel8(offset))  # jbe <out>

    emit_tail_call_cnt_check(p, profile, stack_depth, ctx.tail_call_indirect_label, start)

    # prog = array->ptrs[index]; if (prog == NULL) goto out;
    p.emit4_off32(0x48, 0x8B, 0x8C, 0xD6, profile.ptrs_off)  # mov rcx, qword ptr [rsi + rdx*8 + <ptrs_off>]
    p.emit3(0x48, 0x85, 0xC9)  # test rcx, rcx
    offset = ctx.tail_call_indirect_label - (p.pos + 2 - start)
    p.emit2(X86_JE, rel8(offset))  # je <out>

    emit_count_and_unwind(p, prog, callee_regs_used, stack_depth)

    # goto *(prog->bpf_func + X86_TAIL_CALL_OFFSET);
    p.emit4(0x48, 0x8B, 0x49, profile.bpf_func_off)  # mov rcx, qword ptr [rcx + <bpf_func_off>]
    p.emit4(0x48, 0x83, 0xC1, profile.tail_call_offset)  # add rcx, <X86_TAIL_CALL_OFFSET>
    emit_indirect_jump(p, profile, ip + (p.pos - start), ctx.text)

    # out:
    ctx.tail_call_indirect_label = p.pos - start


def emit_bpf_tail_call_direct(p: Emitter, profile: KernelProfile, prog: VerifiedProgram,
                              poke: PokeDescriptor, ip: int, callee_regs_used, stack_depth: int,
                              ctx) -> None:
    """Mirrors emit_bpf_tail_call_direct(); fills the poke descriptor's addresses."""
    start = p.pos

    emit_tail_call_cnt_check(p, profile, stack_depth, ctx.tail_call_direct_label, start)

    poke.tailcall_bypass = ip + (p.pos - start)
    poke.adj_off = profile.tail_call_offset
    poke.tailcall_target = ip + ctx.tail_call_direct_label - X86_PATCH_SIZE
    poke.bypass_addr = poke.tailcall_target + X86_PATCH_SIZE
    emit_jump(p, poke.tailcall_target + X86_PATCH_SIZE, poke.tailcall_bypass)

    emit_count_and_unwind(p, prog, callee_regs_used, stack_depth)

    emit_nops(p, X86_PATCH_SIZE)

    # out:
    ctx.tail_call_direct_label = p.pos - start
