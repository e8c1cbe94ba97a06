"""do_jit() cases for the non-tail-call BPF insns tcfuzz programs use (glue, verifier-inserted
bound check, exit). Byte-identical in both codegens: the series does not touch them."""
from __future__ import annotations

from tcfuzz.jit_old.emit import Emitter, is_imm8, is_simm32
from tcfuzz.jit_old.x86 import X86_JAE, X86_JNE, X86_PATCH_SIZE, add_1mod, add_1reg, add_2mod, add_2reg, is_ereg
from tcfuzz.model.bpf import BPF_ADD, BPF_ALU64, BPF_AND, BPF_JGE, BPF_JMP, BPF_JNE, R0, Insn, s32
from tcfuzz.model.interfaces import JitError

_ALU_K = {BPF_ADD: (0xC0, 0x05), BPF_AND: (0xE0, 0x25)}     # b3 (modrm base), b2 (rax short form)
_JMP_COND = {BPF_JGE: X86_JAE, BPF_JNE: X86_JNE}  # the live kernel's glue picks a poisoned site's map with JNE


def is_imm8_jmp_offset(value: int) -> bool:
    """Positive rel8 jumps are capped at 123 so the JIT converges (see the kernel's comment)."""
    return -128 <= value <= 123


def emit_mov_imm32(p: Emitter, sign_propagate: bool, dst: int, imm32: int) -> None:
    """Mirrors emit_mov_imm32()."""
    imm32 = s32(imm32)
    if sign_propagate and imm32 < 0:
        p.emit3_off32(add_1mod(0x48, dst), 0xC7, add_1reg(0xC0, dst), imm32)  # mov <dst>, <imm>
    elif imm32 == 0:
        if is_ereg(dst):
            p.emit3(add_2mod(0x40, dst, dst), 0x31, add_2reg(0xC0, dst, dst))  # xor <dst>, <dst>
        else:
            p.emit2(0x31, add_2reg(0xC0, dst, dst))  # xor <dst>, <dst>
    elif is_ereg(dst):
        p.emit2_off32(add_1mod(0x40, dst), add_1reg(0xB8, dst), imm32)  # mov <dst>, <imm>
    else:
        p.emit1_off32(add_1reg(0xB8, dst), imm32)  # mov <dst>, <imm>


def emit_mov_imm64(p: Emitter, dst: int, imm64: int) -> None:
    """Mirrors emit_mov_imm64()."""
    imm64 &= 0xFFFFFFFFFFFFFFFF
    signed = imm64 - (1 << 64) if imm64 >> 63 else imm64
    if imm64 < 2**32:
        emit_mov_imm32(p, False, dst, imm64)
    elif is_simm32(signed):
        emit_mov_imm32(p, True, dst, imm64)
    else:
        p.emit2_off64(add_1mod(0x48, dst), add_1reg(0xB8, dst), imm64)  # movabs <dst>, <imm>


def emit_ldx_dw(p: Emitter, dst: int, src: int, off: int) -> None:
    """Mirrors emit_ldx(BPF_DW) + emit_insn_suffix()."""
    if is_imm8(off):
        p.emit4(add_2mod(0x48, src, dst), 0x8B, add_2reg(0x40, src, dst), off)  # mov <dst>, qword ptr [<src> + <off>]
    else:
        p.emit3_off32(add_2mod(0x48, src, dst), 0x8B, add_2reg(0x80, src, dst), off)  # mov <dst>, qword ptr [<src> + <off>]


def emit_stx_dw(p: Emitter, dst: int, src: int, off: int) -> None:
    """Mirrors emit_stx(BPF_DW) + emit_insn_suffix()."""
    if is_imm8(off):
        p.emit4(add_2mod(0x48, dst, src), 0x89, add_2reg(0x40, dst, src), off)  # mov qword ptr [<dst> + <off>], <src>
    else:
        p.emit3_off32(add_2mod(0x48, dst, src), 0x89, add_2reg(0x80, dst, src), off)  # mov qword ptr [<dst> + <off>], <src>


def emit_alu_imm(p: Emitter, insn: Insn) -> None:
    """Mirrors the BPF_ALU{,64} | {ADD,AND} | BPF_K case."""
    dst, imm32 = insn.dst, insn.imm
    b3, b2 = _ALU_K[insn.op]
    rex = [add_1mod(0x48, dst)] if insn.cls == BPF_ALU64 else ([add_1mod(0x40, dst)] if is_ereg(dst) else [])
    if is_imm8(imm32):
        p.emit_bytes(bytes(rex + [0x83, add_1reg(b3, dst), imm32 & 0xFF]))  # <op> <dst>, <imm>
    elif dst == R0:
        p.emit_bytes(bytes(rex + [b2]) + (imm32 & 0xFFFFFFFF).to_bytes(4, "little"))  # <op> <dst>, <imm>
    else:
        p.emit_bytes(bytes(rex + [0x81, add_1reg(b3, dst)]) + (imm32 & 0xFFFFFFFF).to_bytes(4, "little"))  # <op> <dst>, <imm>


def emit_cond_jmp_imm(p: Emitter, insn: Insn, addrs: list[int], i: int) -> None:
    """Mirrors the BPF_JMP | BPF_J* | BPF_K case (64-bit compare; no padding passes)."""
    dst, imm32 = insn.dst, insn.imm
    if insn.cls != BPF_JMP:
        raise JitError(f"insn code {insn.code:#x}: only 64-bit BPF_JMP compares are modelled")
    if imm32 == 0:
        p.emit3(add_2mod(0x48, dst, dst), 0x85, add_2reg(0xC0, dst, dst))  # test <dst>, <dst>
    elif is_imm8(imm32):
        p.emit4(add_1mod(0x48, dst), 0x83, add_1reg(0xF8, dst), imm32)  # cmp <dst>, <imm>
    else:
        p.emit3_off32(add_1mod(0x48, dst), 0x81, add_1reg(0xF8, dst), imm32)  # cmp <dst>, <imm>
    jmp_cond = _JMP_COND[insn.op]
    jmp_offset = addrs[i + insn.off] - addrs[i]
    if is_imm8_jmp_offset(jmp_offset):
        p.emit2(jmp_cond, jmp_offset)  # <jcc> <target>
    elif is_simm32(jmp_offset):
        p.emit2_off32(0x0F, jmp_cond + 0x10, jmp_offset)  # <jcc> <target>
    else:
        raise JitError(f"cond_jmp gen bug {jmp_offset:#x}")


def emit_jmp(p: Emitter, jmp_offset: int) -> None:
    """The emit_jmp: label of do_jit (an unconditional BPF_JA or a second BPF_EXIT)."""
    if is_imm8_jmp_offset(jmp_offset):
        p.emit2(0xEB, jmp_offset)  # jmp <target>
    elif is_simm32(jmp_offset):
        p.emit1_off32(0xE9, jmp_offset)  # jmp <target>
    else:
        raise JitError(f"jmp gen bug {jmp_offset:#x}")


def emit_call(p: Emitter, func: int, ip: int) -> None:
    """Mirrors emit_call(): emit_patch(..., 0xE8), a rel32 call from ip."""
    offset = func - (ip + X86_PATCH_SIZE)
    if not is_simm32(offset):
        raise JitError(f"Target call {func:#x} is out of range from {ip:#x}")
    p.emit1_off32(0xE8, offset)  # call <func>
