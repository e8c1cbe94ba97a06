"""build_insn(), build_body(), build_plt() and the passes of bpf_int_jit_compile() in
arch/arm64/net/bpf_jit_comp.c (bpf-next before the 2026-01-02 series), for the insns tcfuzz
programs are made of.

The passes, as the kernel runs them:
  1. sizing: prologue, body, epilogue, plt with no image (a bpf-to-bpf call's target is unknown,
     so it is sized as the 5-instruction indirect call);
  2. with the image: prologue written, body computed but not written (`ctx->write = false`) to get
     every offset[] and the epilogue offset;
  3. body written with pass 2's offsets, then epilogue and plt; validate_code() rejects an image
     still holding AARCH64_BREAK_FAULT.
Every `b.cond` of the body is computed from the previous pass's offset[]; the tail-call sequences'
NOPs are patched from their own length in the same pass.

A bpf-to-bpf call is modelled as the kernel's extra pass leaves it (jit_subprogs() re-JITs with
the callee's address known): a direct `bl` when the callee is within +-128 MiB, as it always is
in tcfuzz's layout.
"""

from __future__ import annotations

import dataclasses
import struct

from tcfuzz.jit_old.arm64.a64 import (
    A64_AND,
    A64_AND_I,
    A64_B,
    A64_B_,
    A64_BL,
    A64_BR,
    A64_CMN_I,
    A64_CMP,
    A64_CMP_I,
    A64_LDR64,
    A64_LDR64I,
    A64_MOV,
    A64_MOVK,
    A64_MOVN,
    A64_NOP,
    A64_STR64,
    A64_STR64I,
    AARCH64_BREAK_FAULT,
    BPF2A64,
    COND_CS,
    TMP_REG_1,
)
from tcfuzz.jit_old.arm64.emit import JitCtx, emit_a64_add_i, emit_a64_mov_i, emit_a64_mov_i64, is_addsub_imm, is_lsi_offset
from tcfuzz.jit_old.arm64.prologue import build_epilogue, build_prologue
from tcfuzz.jit_old.arm64.tail_call import emit_bpf_tail_call
from tcfuzz.model.bpf import (
    BPF_ADD,
    BPF_ALU,
    BPF_ALU64,
    BPF_AND,
    BPF_CALL,
    BPF_DW,
    BPF_EXIT,
    BPF_IMM,
    BPF_JGE,
    BPF_JMP,
    BPF_K,
    BPF_LD,
    BPF_LDX,
    BPF_MEM,
    BPF_MOV,
    BPF_PSEUDO_CALL,
    BPF_STX,
    BPF_TAIL_CALL,
    R0,
    Insn,
    s32,
)
from tcfuzz.model.interfaces import JitError, JitImage, VerifiedProgram
from tcfuzz.model.layout import BPF_CALL_BASE, DUMMY_TRAMP
from tcfuzz.model.profile import KernelProfile

SZ_128M = 128 << 20
PLT_TARGET_OFFSET = 8  # offsetof(struct bpf_plt, target)
TMP = TMP_REG_1


def bpf2a64_offset(ctx: JitCtx, bpf_insn: int, off: int) -> int:
    """Mirrors bpf2a64_offset(): a branch's offset in instructions, from the branch itself."""
    bpf_insn += 1
    return ctx.offset[bpf_insn + off] - (ctx.offset[bpf_insn] - 1)


def emit_addr_mov_i64(ctx: JitCtx, reg: int, val: int) -> None:
    """Mirrors emit_addr_mov_i64(): movn + 3 movk, assuming a kernel address (top bits all ones)."""
    tmp = val
    ctx.emit(A64_MOVN(1, reg, ~tmp & 0xFFFF, 0))  # mov <reg>, #<imm>
    for shift in (16, 32):
        tmp >>= 16
        ctx.emit(A64_MOVK(1, reg, tmp & 0xFFFF, shift))  # movk <reg>, #<imm>, lsl #<shift>


def emit_call(ctx: JitCtx, target: int) -> None:
    """Mirrors emit_call(): `bl` when the image address is known and the target within +-128 MiB,
    else the indirect `blr` through x10 (only sized: pass 1 never writes)."""
    pc = None if ctx.ro_image is None else ctx.ro_image + 4 * ctx.idx
    if pc is None or not target or not -SZ_128M <= target - pc < SZ_128M:
        if ctx.image is not None:
            raise JitError(f"call to {target:#x}: the indirect form (emit_addr_mov_i64 + blr) is not modelled")
        emit_addr_mov_i64(ctx, TMP, target or 0)
        ctx.emit(0xD63F0000 | (TMP << 5))  # blr x10
        return
    ctx.emit(A64_BL((target - pc) // 4))  # bl #<target>


class Arm64Jit:
    """The legacy arm64 BPF JIT, restricted to what tail-call worlds need."""

    def __init__(self, profile: KernelProfile) -> None:
        self.profile = profile

    def emit_tail_call(self, ctx: JitCtx, insn: Insn) -> None:
        """`case BPF_JMP | BPF_TAIL_CALL:` of build_insn(): the imm (0 or poke index + 1) is not read.
        arm64 has no direct tail calls; a poke descriptor the verifier added stays unused."""
        emit_bpf_tail_call(ctx)

    def build_insn(self, ctx: JitCtx, i: int) -> int:
        """Mirrors build_insn() for the modelled opcodes; returns 1 after a 16-byte insn."""
        insns = ctx.prog.insns
        insn = insns[i]
        code = insn.code
        dst, src, off, imm = BPF2A64[insn.dst], BPF2A64[insn.src], insn.off, insn.imm
        is64 = insn.cls in (BPF_ALU64, BPF_JMP)
        if code in (BPF_ALU | BPF_MOV | BPF_K, BPF_ALU64 | BPF_MOV | BPF_K):
            emit_a64_mov_i(ctx, is64, dst, imm)
        elif code in (BPF_ALU | BPF_ADD | BPF_K, BPF_ALU64 | BPF_ADD | BPF_K):
            emit_a64_add_i(ctx, is64, dst, dst, TMP, imm)
        elif code in (BPF_ALU | BPF_AND | BPF_K, BPF_ALU64 | BPF_AND | BPF_K):
            word = A64_AND_I(is64, dst, dst, imm)
            if word is not None:
                ctx.emit(word)  # and <dst>, <dst>, #<imm>
            else:
                emit_a64_mov_i(ctx, is64, TMP, imm)
                ctx.emit(A64_AND(is64, dst, dst, TMP))  # and <dst>, <dst>, <tmp>
        elif code == BPF_JMP | BPF_JGE | BPF_K:
            if is_addsub_imm(imm):
                ctx.emit(A64_CMP_I(is64, dst, imm & 0xFFFFFFFF))  # cmp <dst>, #<imm>
            elif is_addsub_imm(-imm & 0xFFFFFFFF):
                ctx.emit(A64_CMN_I(is64, dst, s32(-imm) & 0xFFFFFFFF))  # cmn <dst>, #<imm>
            else:
                emit_a64_mov_i(ctx, is64, TMP, imm)
                ctx.emit(A64_CMP(is64, dst, TMP))  # cmp <dst>, <tmp>
            ctx.emit(A64_B_(COND_CS, bpf2a64_offset(ctx, i, off)))  # b.hs #<target>
        elif code == BPF_JMP | BPF_CALL and insn.src == BPF_PSEUDO_CALL:
            if not imm:
                raise JitError("bpf_jit: bpf-to-bpf call with imm 0 (-EINVAL)")
            emit_call(ctx, BPF_CALL_BASE + imm)
            ctx.emit(A64_MOV(1, BPF2A64[R0], 0))  # add x7, x0, #0
        elif code == BPF_JMP | BPF_TAIL_CALL:
            self.emit_tail_call(ctx, insn)
        elif code == BPF_JMP | BPF_EXIT:
            # Optimization: when last instruction is EXIT, simply fallthrough to epilogue.
            if i != len(insns) - 1:
                ctx.emit(A64_B(ctx.epilogue_offset - ctx.idx))  # b #<epilogue>
        elif code == BPF_LD | BPF_IMM | BPF_DW:
            emit_a64_mov_i64(ctx, dst, (insns[i + 1].imm << 32) | (imm & 0xFFFFFFFF))
            return 1
        elif code == BPF_LDX | BPF_MEM | BPF_DW:
            if is_lsi_offset(off, 3):
                ctx.emit(A64_LDR64I(dst, src, off))  # ldr <dst>, [<src>, #<off>]
            else:
                emit_a64_mov_i(ctx, True, TMP, off)
                ctx.emit(A64_LDR64(dst, src, TMP))  # ldr <dst>, [<src>, <tmp>]
        elif code == BPF_STX | BPF_MEM | BPF_DW:
            if is_lsi_offset(off, 3):
                ctx.emit(A64_STR64I(src, dst, off))  # str <src>, [<dst>, #<off>]
            else:
                emit_a64_mov_i(ctx, True, TMP, off)
                ctx.emit(A64_STR64(src, dst, TMP))  # str <src>, [<dst>, <tmp>]
        else:
            raise JitError(f"unknown opcode {code:02x}")
        return 0

    def build_body(self, ctx: JitCtx) -> None:
        """Mirrors build_body(): offset[i] is where insn i starts, offset[len] the body's end."""
        i = 0
        n = len(ctx.prog.insns)
        while i < n:
            ctx.offset[i] = ctx.idx
            if self.build_insn(ctx, i) > 0:
                i += 1
                ctx.offset[i] = ctx.idx
            i += 1
        ctx.offset[i] = ctx.idx

    def build_plt(self, ctx: JitCtx) -> None:
        """Mirrors build_plt(): `ldr x10, target; br x10; target: .quad dummy_tramp`, 8-aligned."""
        if (ctx.idx + PLT_TARGET_OFFSET // 4) % 2:
            ctx.emit(A64_NOP)  # nop
        ctx.emit(0x58000040 | TMP)  # ldr x10, #<plt_target>
        ctx.emit(A64_BR(TMP))  # br x10
        if ctx.image is not None:
            ctx.image[4 * ctx.idx : 4 * ctx.idx + 8] = struct.pack("<Q", DUMMY_TRAMP)

    def bpf_int_jit_compile(self, prog: VerifiedProgram, image_base: int) -> JitImage:
        """Mirrors the three passes of bpf_int_jit_compile()."""
        prog = dataclasses.replace(prog, insns=list(prog.insns))
        ctx = JitCtx(prog, self.profile, offset=[0] * (len(prog.insns) + 1))
        # Pass 1: estimate the maximum image size.
        build_prologue(ctx)
        self.build_body(ctx)
        ctx.epilogue_offset = ctx.idx
        build_epilogue(ctx)
        self.build_plt(ctx)
        prog_size = 4 * ctx.idx + 8  # also allocate space for the plt target
        # Pass 2: determine the jited position of each instruction.
        ctx.image = bytearray(AARCH64_BREAK_FAULT.to_bytes(4, "little") * (prog_size // 4))
        ctx.ro_image = image_base
        ctx.idx = 0
        ctx.write = True
        build_prologue(ctx)
        body_idx = ctx.idx
        ctx.write = False
        self.build_body(ctx)
        ctx.epilogue_offset = ctx.idx
        ctx.idx = body_idx
        ctx.write = True
        # Pass 3: adjust jump offsets and write the final image.
        self.build_body(ctx)
        if ctx.idx != ctx.epilogue_offset:
            raise JitError(f"bpf_jit: body is {ctx.idx} insns in pass 3, {ctx.epilogue_offset} in pass 2")
        build_epilogue(ctx)
        self.build_plt(ctx)
        code = bytes(ctx.image[: 4 * ctx.idx + 8])
        # validate_code(): a hole still holding the fault instruction fails the JIT.
        if any(struct.unpack_from("<I", code, 4 * k)[0] == AARCH64_BREAK_FAULT for k in range(ctx.idx)):
            raise JitError("bpf_jit: image holds AARCH64_BREAK_FAULT (validate_code)")
        instrs = [ctx.instrs[k] for k in sorted(ctx.instrs) if k < ctx.idx]
        return JitImage(
            base=image_base,
            code=code,
            instrs=instrs,
            addrs=[4 * o for o in ctx.offset],
            insns=list(prog.insns),
            pokes=[],  # arm64 never marks a poke descriptor stable: prog_array_map_poke_run() skips them
            passes=3,
        )
