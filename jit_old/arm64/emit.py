"""struct jit_ctx and emit() of arch/arm64/net/bpf_jit_comp.c, plus the immediate helpers every
emitter shares: emit_a64_mov_i(), emit_a64_mov_i64(), is_addsub_imm(), emit_a64_add_i(),
is_lsi_offset().

One call of `ctx.emit(word)` is one A64 instruction, and the call site's trailing `# asm` comment
documents it: the context records the source line of each call (as the x86 Emitter does), and the
tests check every comment against capstone's decoding. `ctx.patch()` is the kernel's
`*branch = cpu_to_le32(...)` of a NOP emitted earlier; the patched word takes the patch line's
comment.
"""

from __future__ import annotations

import re
import struct
import sys
from dataclasses import dataclass, field

from tcfuzz.jit_old.arm64.a64 import A64_ADD, A64_ADD_I, A64_MOVK, A64_MOVN, A64_MOVZ, A64_SUB_I
from tcfuzz.model.bpf import s32
from tcfuzz.model.interfaces import Instr, VerifiedProgram, asm_matches
from tcfuzz.model.profile import KernelProfile

U64 = 0xFFFFFFFFFFFFFFFF


@dataclass
class JitCtx:
    """struct jit_ctx: `image` is None in the sizing pass; `write` is false in pass 2, whose words
    the kernel computes but does not store (the NOP patches are stored even then, harmlessly)."""

    prog: VerifiedProgram
    profile: KernelProfile
    image: bytearray | None = None
    ro_image: int | None = None  # the address the image will run at (ctx->ro_image)
    idx: int = 0
    epilogue_offset: int = 0
    offset: list[int] = field(default_factory=list)
    stack_size: int = 0
    fp_used: bool = False
    used_callee_reg: list[int] = field(default_factory=list)
    write: bool = True
    instrs: dict[int, Instr] = field(default_factory=dict)  # idx -> the instruction written there

    def emit(self, word: int) -> int:
        """emit(): store the word at ctx->idx (in a writing pass) and advance; returns its index."""
        caller = sys._getframe(1)
        return self._store(word, (caller.f_code.co_filename, caller.f_lineno), advance=True)

    def patch(self, index: int, word: int) -> None:
        """`*branchN = cpu_to_le32(insn)`: overwrite the NOP at `index`, only once an image exists."""
        if self.image is None:
            return
        caller = sys._getframe(1)
        saved, self.idx = self.idx, index
        self._store(word, (caller.f_code.co_filename, caller.f_lineno), advance=False, force=True)
        self.idx = saved

    def _store(self, word: int, source: tuple[str, int], advance: bool, force: bool = False) -> int:
        index = self.idx
        if self.image is not None and (self.write or force):
            data = struct.pack("<I", word & 0xFFFFFFFF)
            self.image[4 * index : 4 * index + 4] = data
            self.instrs[index] = Instr(4 * index, data, source)
        if advance:
            self.idx += 1
        return index


def emit_a64_mov_i(ctx: JitCtx, is64: bool, reg: int, val: int) -> None:
    """Mirrors emit_a64_mov_i(): `u16 hi = val >> 16; u16 lo = val & 0xffff` of an s32."""
    val = s32(val)
    hi = (val >> 16) & 0xFFFF
    lo = val & 0xFFFF
    if hi & 0x8000:
        if hi == 0xFFFF:
            ctx.emit(A64_MOVN(is64, reg, ~lo & 0xFFFF, 0))  # mov <reg>, #<imm>
        else:
            ctx.emit(A64_MOVN(is64, reg, ~hi & 0xFFFF, 16))  # mov <reg>, #<imm>
            if lo != 0xFFFF:
                ctx.emit(A64_MOVK(is64, reg, lo, 0))  # movk <reg>, #<imm>
    else:
        ctx.emit(A64_MOVZ(is64, reg, lo, 0))  # mov <reg>, #<imm>
        if hi:
            ctx.emit(A64_MOVK(is64, reg, hi, 16))  # movk <reg>, #<imm>, lsl #16


def i64_i16_blocks(val: int, inverse: bool) -> int:
    block = 0xFFFF if inverse else 0
    return sum(((val >> shift) & 0xFFFF) != block for shift in (0, 16, 32, 48))


def emit_a64_mov_i64(ctx: JitCtx, reg: int, val: int) -> None:
    """Mirrors emit_a64_mov_i64(): a value below 2**32 goes through emit_a64_mov_i(0, ...), so a
    u32 >= 2**31 is written with a 32-bit MOVN (which zero-extends), not sign-extended."""
    nrm = val & U64
    rev = ~val & U64
    if not nrm >> 32:
        emit_a64_mov_i(ctx, False, reg, nrm)
        return
    inverse = i64_i16_blocks(nrm, True) < i64_i16_blocks(nrm, False)
    shift = max(((rev if inverse else nrm).bit_length() - 1) // 16 * 16, 0)
    if inverse:
        ctx.emit(A64_MOVN(1, reg, (rev >> shift) & 0xFFFF, shift))  # mov <reg>, #<imm>
    else:
        ctx.emit(A64_MOVZ(1, reg, (nrm >> shift) & 0xFFFF, shift))  # mov <reg>, #<imm>
    shift -= 16
    while shift >= 0:
        if ((nrm >> shift) & 0xFFFF) != (0xFFFF if inverse else 0):
            ctx.emit(A64_MOVK(1, reg, (nrm >> shift) & 0xFFFF, shift))  # movk <reg>, #<imm>, lsl #<shift>
        shift -= 16


def is_addsub_imm(imm: int) -> bool:
    """Mirrors is_addsub_imm(u32 imm): imm12 or imm12 << 12."""
    imm &= 0xFFFFFFFF
    return not (imm & ~0xFFF) or not (imm & ~0xFFF000)


def emit_a64_add_i(ctx: JitCtx, is64: bool, dst: int, src: int, tmp: int, imm: int) -> None:
    """Mirrors emit_a64_add_i(const bool is64, dst, src, tmp, const s32 imm): the immediate is an
    s32 parameter, so a wider value (patch 3/4 passes a size_t) is truncated to 32 bits at the
    call, and the mov of the fallback sign-extends it to 64 bits."""
    imm = s32(imm)
    if is_addsub_imm(imm):
        ctx.emit(A64_ADD_I(is64, dst, src, imm & 0xFFFFFFFF))  # add <dst>, <src>, #<imm>
    elif is_addsub_imm(-imm & 0xFFFFFFFF):
        ctx.emit(A64_SUB_I(is64, dst, src, s32(-imm) & 0xFFFFFFFF))  # sub <dst>, <src>, #<imm>
    else:
        emit_a64_mov_i(ctx, is64, tmp, imm)
        ctx.emit(A64_ADD(is64, dst, src, tmp))  # add <dst>, <src>, <tmp>


def is_lsi_offset(offset: int, scale: int) -> bool:
    """Mirrors is_lsi_offset(): an unsigned, scaled imm12 load/store offset."""
    return 0 <= offset <= (0xFFF << scale) and not offset & ((1 << scale) - 1)


def _zero_offset(text: str) -> str:
    """capstone writes `[x0, #0]` as `[x0]`; comments may use either."""
    return re.sub(r"\[(\w+)\](?!!)", r"[\1, #0]", text)


def asm_matches_a64(comment: str, disassembly: str) -> bool:
    """model.interfaces.asm_matches() for A64 text: a bare `[xN]` reads as `[xN, #0]`."""
    return asm_matches(_zero_offset(comment), _zero_offset(disassembly))
