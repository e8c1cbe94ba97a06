"""Program entry: emit_prologue() and emit_prologue_tail_call() of arch/x86/net/bpf_jit_comp.c.

Offsets from bpf_func (no CFI preamble, cfi_mode default):
    [endbr64]  nop5  xor rax,rax | nop3  push rbp  mov rbp,rsp   <- X86_TAIL_CALL_OFFSET (12, or 16 with IBT)
    [endbr64]  [sub rsp, R]  tail-call counter slots
"""
from __future__ import annotations

from tcfuzz.jit_old.emit import Emitter
from tcfuzz.jit_old.x86 import X86_JA, X86_PATCH_SIZE, emit_endbr, emit_nops
from tcfuzz.model.bpf import round_up
from tcfuzz.model.profile import KernelProfile


def emit_prologue_tail_call(p: Emitter, profile: KernelProfile, is_subprog: bool) -> None:
    """Mirrors emit_prologue_tail_call(): [rbp-R-8] = tcc (or tcc_ptr), [rbp-R-16] = tcc_ptr."""
    if not is_subprog:
        p.emit4(0x48, 0x83, 0xF8, profile.max_tail_call_cnt)  # cmp rax, <MAX_TAIL_CALL_CNT>
        p.emit2(X86_JA, 6)  # ja <+6>
        p.emit1(0x50)  # push rax
        p.emit3(0x48, 0x89, 0xE0)  # mov rax, rsp
        p.emit2(0xEB, 1)  # jmp <+1>
        p.emit1(0x50)  # push rax
        p.emit1(0x50)  # push rax
    else:
        p.emit1(0x50)  # push rax
        p.emit1(0x50)  # push rax


def emit_prologue(p: Emitter, profile: KernelProfile, stack_depth: int, tail_call_reachable: bool,
                  is_subprog: bool) -> None:
    """Mirrors emit_prologue() for an eBPF (not classic) program that is not the exception callback."""
    emit_endbr(p, profile)
    emit_nops(p, X86_PATCH_SIZE)
    if tail_call_reachable and not is_subprog:
        p.emit3(0x48, 0x31, 0xC0)  # xor rax, rax
    else:
        emit_nops(p, 3)
    p.emit1(0x55)  # push rbp
    p.emit3(0x48, 0x89, 0xE5)  # mov rbp, rsp
    # X86_TAIL_CALL_OFFSET is here
    emit_endbr(p, profile)
    if stack_depth:
        p.emit3_off32(0x48, 0x81, 0xEC, round_up(stack_depth, 8))  # sub rsp, <R>
    if tail_call_reachable:
        emit_prologue_tail_call(p, profile, is_subprog)
