"""do_jit() and the pass loop of bpf_int_jit_compile() (arch/x86/net/bpf_jit_comp.c).

The pass loop matters for tail calls: every `jcc out` of a tail-call sequence is computed from
`jit_context.tail_call_{indirect,direct}_label`, a length recorded by the *previous* sequence of the
same kind, so the final bytes are whatever the converged passes leave there — which is only the
right offset if every sequence of that kind in the program has the same length.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from tcfuzz.jit_old.emit import Emitter
from tcfuzz.jit_old.insns import (
    emit_alu_imm,
    emit_call,
    emit_cond_jmp_imm,
    emit_jmp,
    emit_ldx_dw,
    emit_mov_imm32,
    emit_mov_imm64,
    emit_stx_dw,
)
from tcfuzz.jit_old.prologue import emit_prologue
from tcfuzz.jit_old.tail_call import BPF_TAIL_CALL_CNT_PTR_STACK_OFF, emit_bpf_tail_call_direct, emit_bpf_tail_call_indirect
from tcfuzz.jit_old.x86 import emit_return, pop_frame_regs, push_frame_regs
from tcfuzz.model.bpf import (
    BPF_ALU,
    BPF_ALU64,
    BPF_CALL,
    BPF_DW,
    BPF_EXIT,
    BPF_IMM,
    BPF_JMP,
    BPF_K,
    BPF_LD,
    BPF_LDX,
    BPF_MEM,
    BPF_MOV,
    BPF_PSEUDO_CALL,
    BPF_STX,
    BPF_TAIL_CALL,
    R6,
    R7,
    R8,
    R9,
    Insn,
)
from tcfuzz.model.interfaces import JitError, JitFault, JitImage, PokeDescriptor, VerifiedProgram
from tcfuzz.model.layout import GUEST_TEXT, KernelText
from tcfuzz.model.profile import KernelProfile

MAX_PASSES = 20
PADDING_PASSES = MAX_PASSES - 5


@dataclass
class JitContext:
    """struct jit_context: zero-initialised, carried across passes."""

    cleanup_addr: int = 0
    tail_call_direct_label: int = 0
    tail_call_indirect_label: int = 0
    text: KernelText = GUEST_TEXT  # where the thunks and __bpf_call_base are (not part of the kernel's struct)


def detect_reg_usage(insns: list[Insn]) -> tuple[bool, bool, bool, bool]:
    """Mirrors detect_reg_usage(): callee_regs_used[] for R6..R9 (rbx, r13, r14, r15)."""
    used = {insn.dst for insn in insns} | {insn.src for insn in insns}
    return R6 in used, R7 in used, R8 in used, R9 in used


class X86Jit:
    """The legacy x86-64 BPF JIT, restricted to what tail-call worlds need."""

    def __init__(self, profile: KernelProfile, text: KernelText = GUEST_TEXT) -> None:
        self.profile = profile
        self.text = text

    def emit_tail_call(self, p: Emitter, prog: VerifiedProgram, insn: Insn, ip: int,
                       callee_regs_used, stack_depth: int, ctx: JitContext) -> None:
        """The `case BPF_JMP | BPF_TAIL_CALL:` of do_jit(): imm is 0 or poke index + 1."""
        imm32 = insn.imm
        if imm32:
            emit_bpf_tail_call_direct(p, self.profile, prog, poke_entry(prog, imm32 - 1), ip,
                                      callee_regs_used, stack_depth, ctx)
        else:
            emit_bpf_tail_call_indirect(p, self.profile, prog, callee_regs_used, stack_depth, ip, ctx)

    def do_jit(self, prog: VerifiedProgram, addrs: list[int], image: int | None, ctx: JitContext) -> Emitter:
        """Mirrors do_jit(): one pass over the program; `image` is None before the image exists."""
        profile = self.profile
        base = image or 0
        insns = prog.insns
        stack_depth = prog.stack_depth
        callee_regs_used = detect_reg_usage(insns)
        p = Emitter(record=image is not None)

        emit_prologue(p, profile, stack_depth, prog.tail_call_reachable, prog.is_subprog)
        push_frame_regs(p, prog.exception_boundary, callee_regs_used)
        addrs[0] = p.pos

        seen_exit = False
        i = 1
        while i <= len(insns):
            insn = insns[i - 1]
            code = insn.code
            ip = base + addrs[i - 1]
            if code in (BPF_ALU64 | BPF_MOV | BPF_K, BPF_ALU | BPF_MOV | BPF_K):
                emit_mov_imm32(p, insn.cls == BPF_ALU64, insn.dst, insn.imm)
            elif code == BPF_LD | BPF_IMM | BPF_DW:
                emit_mov_imm64(p, insn.dst, (insns[i].imm << 32) | (insn.imm & 0xFFFFFFFF))
                # The kernel leaves addrs[] of the first half stale and sets only the second half's;
                # nothing reads the first half's, so tcfuzz keeps it meaningful for insn_range().
                addrs[i] = p.pos
                i += 1
            elif code == BPF_LDX | BPF_MEM | BPF_DW:
                emit_ldx_dw(p, insn.dst, insn.src, insn.off)
            elif code == BPF_STX | BPF_MEM | BPF_DW:
                emit_stx_dw(p, insn.dst, insn.src, insn.off)
            elif insn.cls in (BPF_ALU, BPF_ALU64) and insn.code & 0x08 == BPF_K:
                emit_alu_imm(p, insn)
            elif code == BPF_JMP | BPF_CALL and insn.src == BPF_PSEUDO_CALL:
                # bpf-to-bpf call: hand the callee the tail-call counter pointer in rax
                if prog.tail_call_reachable:
                    p.emit3_off32(0x48, 0x8B, 0x85, BPF_TAIL_CALL_CNT_PTR_STACK_OFF(stack_depth))  # mov rax, qword ptr [rbp + <tcc_ptr_off>]
                    ip += 7
                if not insn.imm:
                    raise JitError("bpf_jit: bpf-to-bpf call with imm 0 (-EINVAL)")
                emit_call(p, ctx.text.call_base + insn.imm, ip)
            elif code == BPF_JMP | BPF_TAIL_CALL:
                self.emit_tail_call(p, prog, insn, ip, callee_regs_used, stack_depth, ctx)
            elif code == BPF_JMP | BPF_EXIT:
                if seen_exit:
                    emit_jmp(p, ctx.cleanup_addr - addrs[i])
                else:
                    seen_exit = True
                    ctx.cleanup_addr = p.pos
                    pop_frame_regs(p, prog.exception_boundary, callee_regs_used)
                    p.emit1(0xC9)  # leave
                    emit_return(p, profile, base + p.pos, ctx.text)
            elif insn.is_cond_jump():
                emit_cond_jmp_imm(p, insn, addrs, i)
            else:
                raise JitError(f"bpf_jit: unknown opcode {code:02x}")
            if image is not None and p.pos != addrs[i]:
                raise JitError("bpf_jit: fatal error (insn size changed in the image pass)")
            addrs[i] = p.pos
            i += 1
        return p

    def bpf_int_jit_compile(self, prog: VerifiedProgram, image_base: int) -> JitImage:
        """Mirrors the pass loop: iterate until proglen is stable, then one more pass into the image."""
        # The JIT writes the poke descriptors' addresses; copy those (and the insn list) so the input
        # stays intact. Insns, maps and aux records are frozen and shared.
        prog = dataclasses.replace(prog, insns=list(prog.insns),
                                   poke_tab=[dataclasses.replace(d) for d in prog.poke_tab])
        addrs = [64 * (i + 1) for i in range(len(prog.insns) + 1)]
        ctx = JitContext(cleanup_addr=addrs[-1], text=self.text)
        oldproglen = 0
        image = None
        for npass in range(1, MAX_PASSES + 2):
            p = self.do_jit(prog, addrs, image, ctx)
            proglen = p.pos
            if image is not None:
                if proglen != oldproglen:
                    raise JitError(f"bpf_jit: proglen={proglen} != oldproglen={oldproglen}")
                return JitImage(base=image, code=bytes(p.code), instrs=p.instrs, addrs=list(addrs),
                                insns=list(prog.insns), pokes=prog.poke_tab, passes=npass)
            if npass > PADDING_PASSES:
                raise JitError("JIT needs padding passes, which tcfuzz does not model")
            if proglen == oldproglen:
                image = image_base
            oldproglen = proglen
        raise JitError("JIT did not converge")


def poke_entry(prog: VerifiedProgram, index: int) -> PokeDescriptor:
    """`&bpf_prog->aux->poke_tab[index]`, where C would read outside the table instead of failing."""
    if not 0 <= index < len(prog.poke_tab):
        raise JitFault(f"poke_tab[{index}] is outside the poke table (size {len(prog.poke_tab)})")
    return prog.poke_tab[index]
