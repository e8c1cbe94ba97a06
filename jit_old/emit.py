"""The `u8 *prog` of arch/x86/net/bpf_jit_comp.c: EMIT* byte helpers over one growing buffer.

Unlike the kernel's macros, one helper call emits one whole x86 instruction, and the call site's
trailing `# asm` comment is that instruction's documentation: the buffer records the source line of
every call, and the test suite checks each comment against capstone's decoding of the bytes.
Bytes are truncated as the kernel's `emit_code()` truncates them (u8 / u32 little-endian).
"""
from __future__ import annotations

import struct
import sys

from tcfuzz.model.interfaces import Instr, JitError


def rel8(offset: int) -> int:
    """A Jcc/JMP rel8 operand. The kernel's EMIT2 would silently truncate; tcfuzz fails loudly."""
    if not -128 <= offset <= 127:
        raise JitError(f"rel8 jump offset {offset} does not fit in a signed byte")
    return offset


def is_imm8(value: int) -> bool:
    return -128 <= value <= 127


def is_simm32(value: int) -> bool:
    return -(2**31) <= value < 2**31


class Emitter:
    """`record`: keep an Instr (offset, bytes, source line) per instruction. The JIT's sizing passes
    only need lengths, and recording is most of an emit's cost, so only the image pass records."""

    def __init__(self, record: bool = True) -> None:
        self.code = bytearray()
        self.instrs: list[Instr] = []
        self.record = record

    @property
    def pos(self) -> int:
        return len(self.code)

    def _emit(self, data: bytes) -> None:
        if self.record:
            caller = sys._getframe(2)
            self.instrs.append(Instr(len(self.code), data, (caller.f_code.co_filename, caller.f_lineno)))
        self.code += data

    @staticmethod
    def _u8(*values: int) -> bytes:
        return bytes([v & 0xFF for v in values])

    @staticmethod
    def _off32(off: int) -> bytes:
        return struct.pack("<I", off & 0xFFFFFFFF)

    # emit1..emit4 build their bytes inline: they are most of the JIT's calls.
    def emit1(self, b1: int) -> None:
        self._emit(bytes((b1 & 0xFF,)))

    def emit2(self, b1: int, b2: int) -> None:
        self._emit(bytes((b1 & 0xFF, b2 & 0xFF)))

    def emit3(self, b1: int, b2: int, b3: int) -> None:
        self._emit(bytes((b1 & 0xFF, b2 & 0xFF, b3 & 0xFF)))

    def emit4(self, b1: int, b2: int, b3: int, b4: int) -> None:
        self._emit(bytes((b1 & 0xFF, b2 & 0xFF, b3 & 0xFF, b4 & 0xFF)))

    def emit_bytes(self, data: bytes) -> None:
        """A multi-byte constant instruction (x86_nops[n], endbr64)."""
        self._emit(bytes(data))

    def emit1_off32(self, b1: int, off: int) -> None:
        self._emit(self._u8(b1) + self._off32(off))

    def emit2_off32(self, b1: int, b2: int, off: int) -> None:
        self._emit(self._u8(b1, b2) + self._off32(off))

    def emit3_off32(self, b1: int, b2: int, b3: int, off: int) -> None:
        self._emit(self._u8(b1, b2, b3) + self._off32(off))

    def emit4_off32(self, b1: int, b2: int, b3: int, b4: int, off: int) -> None:
        self._emit(self._u8(b1, b2, b3, b4) + self._off32(off))

    def emit2_off64(self, b1: int, b2: int, imm64: int) -> None:
        self._emit(self._u8(b1, b2) + struct.pack("<Q", imm64 & 0xFFFFFFFFFFFFFFFF))
