"""eBPF instruction encoding: the subset tcfuzz programs are made of (include/uapi/linux/bpf.h, filter.h).

The verifier fix-up and the JIT both work on `Insn`; C integer semantics (s32 imm, u32 max_entries)
are kept explicit with `s32`/`u32` so wrap-around past the kernel's limits stays observable.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

# Instruction classes
BPF_LD, BPF_LDX, BPF_ST, BPF_STX, BPF_ALU, BPF_JMP, BPF_ALU64 = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x07
# Sizes and modes
BPF_W, BPF_DW = 0x00, 0x18
BPF_IMM, BPF_MEM = 0x00, 0x60
# Sources
BPF_K, BPF_X = 0x00, 0x08
# ALU operations
BPF_ADD, BPF_AND, BPF_MOV = 0x00, 0x50, 0xB0
# JMP operations
BPF_JGE, BPF_JNE, BPF_CALL, BPF_EXIT = 0x30, 0x50, 0x80, 0x90
BPF_TAIL_CALL = 0xF0  # include/linux/filter.h: internal opcode set by the verifier
BPF_PSEUDO_CALL = 1  # src_reg of a bpf-to-bpf call
BPF_FUNC_tail_call = 12

R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)
CALLEE_SAVED = (R6, R7, R8, R9)  # x86-64: rbx, r13, r14, r15
MAX_BPF_STACK = 512


def s32(value: int) -> int:
    """C conversion to a 32-bit signed int (gcc: modulo 2**32)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def u32(value: int) -> int:
    return value & 0xFFFFFFFF


def u64(value: int) -> int:
    return value & 0xFFFFFFFFFFFFFFFF


def round_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


@dataclass(frozen=True)
class Insn:
    """struct bpf_insn. `aux` carries the verifier's per-insn state where a fix-up needs it."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0
    aux: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "imm", s32(self.imm))

    def with_imm(self, imm: int) -> Insn:
        return replace(self, imm=s32(imm))

    @property
    def cls(self) -> int:
        return self.code & 0x07

    @property
    def op(self) -> int:
        return self.code & 0xF0

    def is_tail_call_helper(self) -> bool:
        return self.code == BPF_JMP | BPF_CALL and self.src == 0 and self.imm == BPF_FUNC_tail_call

    def is_cond_jump(self) -> bool:
        return self.cls == BPF_JMP and self.op not in (BPF_CALL, BPF_EXIT, BPF_TAIL_CALL)


# Constructors named after the kernel's macros (include/linux/filter.h).
def BPF_MOV64_IMM(dst: int, imm: int) -> Insn:
    return Insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)


def BPF_MOV32_IMM(dst: int, imm: int) -> Insn:
    return Insn(BPF_ALU | BPF_MOV | BPF_K, dst, 0, 0, imm)


def BPF_ALU64_IMM(op: int, dst: int, imm: int) -> Insn:
    return Insn(BPF_ALU64 | op | BPF_K, dst, 0, 0, imm)


def BPF_ALU32_IMM(op: int, dst: int, imm: int) -> Insn:
    return Insn(BPF_ALU | op | BPF_K, dst, 0, 0, imm)


def BPF_LD_IMM64(dst: int, imm64: int) -> tuple[Insn, Insn]:
    return (Insn(BPF_LD | BPF_DW | BPF_IMM, dst, 0, 0, imm64 & 0xFFFFFFFF), Insn(0, 0, 0, 0, (imm64 >> 32) & 0xFFFFFFFF))


def BPF_LDX_MEM_DW(dst: int, src: int, off: int) -> Insn:
    return Insn(BPF_LDX | BPF_MEM | BPF_DW, dst, src, off, 0)


def BPF_STX_MEM_DW(dst: int, src: int, off: int) -> Insn:
    return Insn(BPF_STX | BPF_MEM | BPF_DW, dst, src, off, 0)


def BPF_JMP_IMM(op: int, dst: int, imm: int, off: int) -> Insn:
    return Insn(BPF_JMP | op | BPF_K, dst, 0, off, imm)


def BPF_EMIT_CALL_TAIL_CALL(aux: Any) -> Insn:
    """`call bpf_tail_call` as the verifier sees it, with its insn_aux_data state attached."""
    return Insn(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_tail_call, aux)


def BPF_CALL_SUBPROG(imm: int) -> Insn:
    """A bpf-to-bpf call after jit_subprogs(): __bpf_call_base + imm is the callee's bpf_func."""
    return Insn(BPF_JMP | BPF_CALL, 0, BPF_PSEUDO_CALL, 0, imm)


def BPF_EXIT_INSN() -> Insn:
    return Insn(BPF_JMP | BPF_EXIT)
