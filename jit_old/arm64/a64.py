"""A64 instruction encoders: the A64_* macros of arch/arm64/net/bpf_jit.h over the
aarch64_insn_gen_*() generators of arch/arm64/lib/insn.c, for the instructions the BPF JIT emits
in tail-call programs.

Each function returns one 32-bit instruction word. Where the kernel's generator rejects an operand
it returns AARCH64_BREAK_FAULT, and validate_code() then fails the whole JIT; tcfuzz raises
JitError at the same place instead of carrying the fault word around.
"""

from __future__ import annotations

from functools import cache

from tcfuzz.model.interfaces import JitError

# arch/arm64/net/bpf_jit_comp.c: bpf2a64[]
A64_FP, A64_LR, A64_ZR, A64_SP = 29, 30, 31, 31
BPF2A64 = {0: 7, 1: 0, 2: 1, 3: 2, 4: 3, 5: 4, 6: 19, 7: 20, 8: 21, 9: 22, 10: 25}
TMP_REG_1, TMP_REG_2, TMP_REG_3 = 10, 11, 12  # x10, x11, x12
TCCNT_PTR = 26  # x26: the tail-call counter pointer
PRIVATE_SP, ARENA_VM_START = 27, 28

# AARCH64_INSN_COND_*
COND_EQ, COND_NE, COND_CS, COND_CC, COND_HI, COND_LS, COND_GE = 0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA

# AARCH64_INSN_HINT_* as full hint instructions
A64_NOP = 0xD503201F
A64_PACIASP = 0xD503233F
A64_AUTIASP = 0xD50323BF
A64_BTI_C = 0xD503245F
A64_BTI_J = 0xD503249F
A64_BTI_JC = 0xD50324DF
# arch/arm64/include/asm/debug-monitors.h: AARCH64_BREAK_MON | (FAULT_BRK_IMM << 5) = brk #0x100,
# what jit_fill_hole() writes into the unused parts of an image.
AARCH64_BREAK_FAULT = 0xD4202000


def _sf(sf: bool | int) -> int:
    return 1 if sf else 0


def _reg(r: int) -> int:
    if not 0 <= r <= 31:
        raise JitError(f"A64 register {r} out of range")
    return r


def movewide(sf, rd: int, imm16: int, shift: int, opc: int) -> int:
    """aarch64_insn_gen_movewide(): opc 0 = MOVN, 2 = MOVZ, 3 = MOVK."""
    if imm16 & ~0xFFFF or shift not in ((0, 16) if not sf else (0, 16, 32, 48)):
        raise JitError(f"movewide: imm16={imm16:#x} shift={shift} is not encodable")
    return (_sf(sf) << 31) | (opc << 29) | (0b100101 << 23) | ((shift // 16) << 21) | (imm16 << 5) | _reg(rd)


def A64_MOVN(sf, rd: int, imm16: int, shift: int) -> int:
    return movewide(sf, rd, imm16, shift, 0)


def A64_MOVZ(sf, rd: int, imm16: int, shift: int) -> int:
    return movewide(sf, rd, imm16, shift, 2)


def A64_MOVK(sf, rd: int, imm16: int, shift: int) -> int:
    return movewide(sf, rd, imm16, shift, 3)


def add_sub_imm(sf, rd: int, rn: int, imm: int, op: int, setflags: int) -> int:
    """aarch64_insn_gen_add_sub_imm(): imm12, or imm12 << 12 when the low 12 bits are zero; any
    other value (including a negative one) is AARCH64_BREAK_FAULT."""
    if imm < 0 or imm & ~((1 << 24) - 1):
        raise JitError(f"add/sub immediate {imm:#x} is not encodable")
    sh = 0
    if imm & ~0xFFF:
        if imm & 0xFFF:
            raise JitError(f"add/sub immediate {imm:#x} is not encodable")
        imm >>= 12
        sh = 1
    return (_sf(sf) << 31) | (op << 30) | (setflags << 29) | (0b100010 << 23) | (sh << 22) | (imm << 10) | (_reg(rn) << 5) | _reg(rd)


def A64_ADD_I(sf, rd: int, rn: int, imm12: int) -> int:
    return add_sub_imm(sf, rd, rn, imm12, 0, 0)


def A64_SUB_I(sf, rd: int, rn: int, imm12: int) -> int:
    return add_sub_imm(sf, rd, rn, imm12, 1, 0)


def A64_CMP_I(sf, rn: int, imm12: int) -> int:
    """SUBS zr, Rn, #imm."""
    return add_sub_imm(sf, A64_ZR, rn, imm12, 1, 1)


def A64_CMN_I(sf, rn: int, imm12: int) -> int:
    """ADDS zr, Rn, #imm."""
    return add_sub_imm(sf, A64_ZR, rn, imm12, 0, 1)


def A64_MOV(sf, rd: int, rn: int) -> int:
    """bpf_jit.h: `#define A64_MOV(sf, Rd, Rn) A64_ADD_I(sf, Rd, Rn, 0)` (an add, so it can name sp)."""
    return A64_ADD_I(sf, rd, rn, 0)


def add_sub_sreg(sf, rd: int, rn: int, rm: int, op: int, setflags: int) -> int:
    """aarch64_insn_gen_add_sub_shifted_reg() with shift 0."""
    return (_sf(sf) << 31) | (op << 30) | (setflags << 29) | (0b01011 << 24) | (_reg(rm) << 16) | (_reg(rn) << 5) | _reg(rd)


def A64_ADD(sf, rd: int, rn: int, rm: int) -> int:
    return add_sub_sreg(sf, rd, rn, rm, 0, 0)


def A64_CMP(sf, rn: int, rm: int) -> int:
    """SUBS zr, Rn, Rm."""
    return add_sub_sreg(sf, A64_ZR, rn, rm, 1, 1)


def logical_sreg(sf, rd: int, rn: int, rm: int, opc: int) -> int:
    """aarch64_insn_gen_logical_shifted_reg() with shift 0: opc 0 = AND."""
    return (_sf(sf) << 31) | (opc << 29) | (0b01010 << 24) | (_reg(rm) << 16) | (_reg(rn) << 5) | _reg(rd)


def A64_AND(sf, rd: int, rn: int, rm: int) -> int:
    return logical_sreg(sf, rd, rn, rm, 0)


def A64_UBFM(sf, rd: int, rn: int, immr: int, imms: int) -> int:
    """aarch64_insn_gen_bitfield(..., AARCH64_INSN_BITFIELD_MOVE_UNSIGNED)."""
    n = _sf(sf)
    return (n << 31) | (0b10 << 29) | (0b100110 << 23) | (n << 22) | (immr << 16) | (imms << 10) | (_reg(rn) << 5) | _reg(rd)


def A64_LSL(sf, rd: int, rn: int, shift: int) -> int:
    """bpf_jit.h: UBFM(sf, Rd, Rn, (unsigned)-(shift) % sz, sz - 1 - shift)."""
    sz = 64 if sf else 32
    return A64_UBFM(sf, rd, rn, (-shift) % sz, sz - 1 - shift)


@cache
def _logic_imm_fields(sf: int, imm: int) -> tuple[int, int, int] | None:
    """aarch64_encode_immediate(): (N, immr, imms) of a bitmask immediate, or None. The kernel
    picks the smallest repeating element; so does this search (element sizes ascending)."""
    width = 64 if sf else 32
    mask = (1 << width) - 1
    imm &= mask
    if imm in (0, mask):
        return None
    for esize in (2, 4, 8, 16, 32, 64):
        if esize > width:
            break
        emask = (1 << esize) - 1
        elem = imm & emask
        if any((imm >> k) & emask != elem for k in range(0, width, esize)):
            continue
        ones = bin(elem).count("1")
        for rot in range(esize):
            # rotating `ones` low ones right by `rot` gives the element
            pattern = (1 << ones) - 1
            rotated = ((pattern >> rot) | (pattern << (esize - rot))) & emask
            if rotated == elem:
                n = 1 if esize == 64 else 0
                imms = ((~(esize * 2 - 1)) & 0x3F) | (ones - 1) if esize < 64 else ones - 1
                return n, rot, imms & 0x3F
        return None
    return None


def A64_AND_I(sf, rd: int, rn: int, imm: int) -> int | None:
    """A64_LOGIC_IMM(..., AND): None where the kernel gets AARCH64_BREAK_FAULT (not a bitmask
    immediate), so the caller takes the mov + register form as build_insn() does."""
    fields = _logic_imm_fields(_sf(sf), imm & (0xFFFFFFFFFFFFFFFF if sf else 0xFFFFFFFF))
    if fields is None:
        return None
    n, immr, imms = fields
    return (_sf(sf) << 31) | (0b00 << 29) | (0b100100 << 23) | (n << 22) | (immr << 16) | (imms << 10) | (_reg(rn) << 5) | _reg(rd)


def load_store_reg(size: int, load: bool, rt: int, rn: int, rm: int) -> int:
    """aarch64_insn_gen_load_store_reg(): [Xn, Xm] with LSL #0; size 2 = 32-bit, 3 = 64-bit."""
    return (size << 30) | (0b111000 << 24) | ((1 if load else 0) << 22) | (1 << 21) | (_reg(rm) << 16) | (0b011010 << 10) | (_reg(rn) << 5) | _reg(rt)


def A64_LDR32(rt: int, rn: int, rm: int) -> int:
    return load_store_reg(2, True, rt, rn, rm)


def A64_LDR64(rt: int, rn: int, rm: int) -> int:
    return load_store_reg(3, True, rt, rn, rm)


def A64_STR64(rt: int, rn: int, rm: int) -> int:
    return load_store_reg(3, False, rt, rn, rm)


def load_store_imm(size: int, load: bool, rt: int, rn: int, imm: int) -> int:
    """aarch64_insn_gen_load_store_imm(), unsigned offset: imm must be a multiple of the size."""
    scale = size
    if imm < 0 or imm & ((1 << scale) - 1) or (imm >> scale) > 0xFFF:
        raise JitError(f"load/store offset {imm} is not encodable")
    return (size << 30) | (0b111001 << 24) | ((1 if load else 0) << 22) | ((imm >> scale) << 10) | (_reg(rn) << 5) | _reg(rt)


def A64_LDR64I(rt: int, rn: int, imm: int) -> int:
    return load_store_imm(3, True, rt, rn, imm)


def A64_STR64I(rt: int, rn: int, imm: int) -> int:
    return load_store_imm(3, False, rt, rn, imm)


def load_store_pair(rt: int, rt2: int, rn: int, offset: int, load: bool, pre_index: bool) -> int:
    """aarch64_insn_gen_load_store_pair(), 64-bit variant: offset is a multiple of 8 in [-512, 504]."""
    if offset % 8 or not -512 <= offset <= 504:
        raise JitError(f"ldp/stp offset {offset} is not encodable")
    opc = 0b1010011 if pre_index else 0b1010001
    return (0b10 << 30) | (opc << 23) | ((1 if load else 0) << 22) | (((offset // 8) & 0x7F) << 15) | (_reg(rt2) << 10) | (_reg(rn) << 5) | _reg(rt)


def A64_PUSH(rt: int, rt2: int, rn: int) -> int:
    """stp rt, rt2, [rn, #-16]!"""
    return load_store_pair(rt, rt2, rn, -16, False, True)


def A64_POP(rt: int, rt2: int, rn: int) -> int:
    """ldp rt, rt2, [rn], #16"""
    return load_store_pair(rt, rt2, rn, 16, True, False)


def _imm_fits(value: int, bits: int) -> bool:
    return -(1 << (bits - 1)) <= value < (1 << (bits - 1))


def A64_B_(cond: int, imm19: int) -> int:
    """aarch64_insn_gen_cond_branch_imm(): offset in instructions (bpf_jit.h shifts it by 2)."""
    if not _imm_fits(imm19, 19):
        raise JitError(f"b.cond offset {imm19} does not fit imm19")
    return 0x54000000 | ((imm19 & 0x7FFFF) << 5) | cond


def A64_CBZ(sf, rt: int, imm19: int) -> int:
    """aarch64_insn_gen_comp_branch_imm(..., AARCH64_INSN_BRANCH_COMP_ZERO)."""
    if not _imm_fits(imm19, 19):
        raise JitError(f"cbz offset {imm19} does not fit imm19")
    return (_sf(sf) << 31) | 0x34000000 | ((imm19 & 0x7FFFF) << 5) | _reg(rt)


def A64_B(imm26: int) -> int:
    if not _imm_fits(imm26, 26):
        raise JitError(f"b offset {imm26} does not fit imm26")
    return 0x14000000 | (imm26 & 0x3FFFFFF)


def A64_BL(imm26: int) -> int:
    if not _imm_fits(imm26, 26):
        raise JitError(f"bl offset {imm26} does not fit imm26")
    return 0x94000000 | (imm26 & 0x3FFFFFF)


def A64_BR(rn: int) -> int:
    return 0xD61F0000 | (_reg(rn) << 5)


def A64_RET(rn: int) -> int:
    return 0xD65F0000 | (_reg(rn) << 5)


def br_target_reg(word: int) -> int | None:
    """The Xn of a `br Xn`, or None: how the executor finds every indirect jump in an image."""
    return (word >> 5) & 0x1F if word & 0xFFFFFC1F == 0xD61F0000 else None
