"""x86-64 encoding helpers of arch/x86/net/bpf_jit_comp.c: registers, nops, push/pop, jumps, return."""
from __future__ import annotations

from tcfuzz.jit_old.emit import Emitter, is_simm32
from tcfuzz.model.bpf import R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10
from tcfuzz.model.interfaces import JitError
from tcfuzz.model.layout import GUEST_TEXT, KernelText
from tcfuzz.model.profile import JumpVariant, KernelProfile

X86_JB, X86_JAE, X86_JE, X86_JNE, X86_JBE, X86_JA = 0x72, 0x73, 0x74, 0x75, 0x76, 0x77
X86_PATCH_SIZE = 5

AUX_REG, X86_REG_R9, X86_REG_R12 = 13, 14, 15
REG2HEX = {R0: 0, R1: 7, R2: 6, R3: 2, R4: 1, R5: 0, R6: 3, R7: 5, R8: 6, R9: 7, R10: 5,
           11: 2, AUX_REG: 3, X86_REG_R9: 1, X86_REG_R12: 4}
_EREGS = {R5, AUX_REG, R7, R8, R9, X86_REG_R9, X86_REG_R12, 11}

# asm/nops.h: BYTES_NOP1..BYTES_NOP8 (x86_nops[len]); ASM_NOP_MAX is 8 or more in every tree.
X86_NOPS = {
    1: b"\x90", 2: b"\x66\x90", 3: b"\x0f\x1f\x00", 4: b"\x0f\x1f\x40\x00",
    5: b"\x0f\x1f\x44\x00\x00", 6: b"\x66\x0f\x1f\x44\x00\x00",
    7: b"\x0f\x1f\x80\x00\x00\x00\x00", 8: b"\x0f\x1f\x84\x00\x00\x00\x00\x00",
}
ASM_NOP_MAX = 8
ENDBR64 = b"\xf3\x0f\x1e\xfa"                   # gen_endbr() = 0xfa1e0ff3

ALL_CALLEE_REGS_USED = (True, True, True, True)


def is_ereg(reg: int) -> bool:
    return reg in _EREGS


def add_1mod(byte: int, reg: int) -> int:
    return byte | 1 if is_ereg(reg) else byte


def add_2mod(byte: int, r1: int, r2: int) -> int:
    return byte | (1 if is_ereg(r1) else 0) | (4 if is_ereg(r2) else 0)


def add_1reg(byte: int, dst_reg: int) -> int:
    return byte + REG2HEX[dst_reg]


def add_2reg(byte: int, dst_reg: int, src_reg: int) -> int:
    return byte + REG2HEX[dst_reg] + (REG2HEX[src_reg] << 3)


def emit_nops(p: Emitter, length: int) -> None:
    """Mirrors emit_nops()."""
    while length > 0:
        noplen = min(length, ASM_NOP_MAX)
        p.emit_bytes(X86_NOPS[noplen])  # nop <*>
        length -= noplen


def emit_endbr(p: Emitter, profile: KernelProfile) -> None:
    """EMIT_ENDBR(): endbr64 under CONFIG_X86_KERNEL_IBT, nothing otherwise."""
    if profile.ibt:
        p.emit_bytes(ENDBR64)  # endbr64


def push_r12(p: Emitter) -> None:
    p.emit2(0x41, 0x54)  # push r12


def pop_r12(p: Emitter) -> None:
    p.emit2(0x41, 0x5C)  # pop r12


def push_callee_regs(p: Emitter, callee_regs_used) -> None:
    """Mirrors push_callee_regs()."""
    if callee_regs_used[0]:
        p.emit1(0x53)  # push rbx
    if callee_regs_used[1]:
        p.emit2(0x41, 0x55)  # push r13
    if callee_regs_used[2]:
        p.emit2(0x41, 0x56)  # push r14
    if callee_regs_used[3]:
        p.emit2(0x41, 0x57)  # push r15


def pop_callee_regs(p: Emitter, callee_regs_used) -> None:
    """Mirrors pop_callee_regs()."""
    if callee_regs_used[3]:
        p.emit2(0x41, 0x5F)  # pop r15
    if callee_regs_used[2]:
        p.emit2(0x41, 0x5E)  # pop r14
    if callee_regs_used[1]:
        p.emit2(0x41, 0x5D)  # pop r13
    if callee_regs_used[0]:
        p.emit1(0x5B)  # pop rbx


def push_frame_regs(p: Emitter, exception_boundary: bool, callee_regs_used) -> None:
    """do_jit()'s saves after the prologue: an exception boundary saves r12 and every callee-saved
    register (the exception callback restores them); otherwise only the used ones (no arena)."""
    if exception_boundary:
        push_r12(p)
        push_callee_regs(p, ALL_CALLEE_REGS_USED)
    else:
        push_callee_regs(p, callee_regs_used)


def pop_frame_regs(p: Emitter, exception_boundary: bool, callee_regs_used) -> None:
    """The matching restores, emitted by BPF_EXIT and before every tail call."""
    if exception_boundary:
        pop_callee_regs(p, ALL_CALLEE_REGS_USED)
        pop_r12(p)
    else:
        pop_callee_regs(p, callee_regs_used)


def emit_patch(p: Emitter, func: int, ip: int, opcode: int) -> None:
    """Mirrors emit_patch(): a 5-byte call/jmp rel32 from ip to func."""
    offset = func - (ip + X86_PATCH_SIZE)
    if not is_simm32(offset):
        raise JitError(f"Target call {func:#x} is out of range from {ip:#x}")
    p.emit1_off32(opcode, offset)  # jmp <func>


def emit_jump(p: Emitter, func: int, ip: int) -> None:
    emit_patch(p, func, ip, 0xE9)


def emit_indirect_jump(p: Emitter, profile: KernelProfile, ip: int, text: KernelText = GUEST_TEXT) -> None:
    """Mirrors emit_indirect_jump(&prog, BPF_REG_4 /* rcx */, ip); ITS/call-depth thunks not modelled."""
    if profile.jump is JumpVariant.LFENCE:
        p.emit3(0x0F, 0xAE, 0xE8)  # lfence
        p.emit2(0xFF, 0xE1)  # jmp rcx
    elif profile.jump is JumpVariant.RETPOLINE:
        emit_jump(p, text.indirect_thunk(REG2HEX[R4]), ip)
    else:
        p.emit2(0xFF, 0xE1)  # jmp rcx
        if profile.jump is JumpVariant.PLAIN_INT3:
            p.emit1(0xCC)  # int3


def emit_return(p: Emitter, profile: KernelProfile, ip: int, text: KernelText = GUEST_TEXT) -> None:
    """Mirrors emit_return(): `jmp x86_return_thunk` when cpu_wants_rethunk(), else ret [int3]."""
    if profile.rethunk:
        emit_jump(p, text.return_thunk, ip)
    else:
        p.emit1(0xC3)  # ret
        if profile.sls:
            p.emit1(0xCC)  # int3
