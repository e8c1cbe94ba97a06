"""A64 tail-call sequences -> z3 semantics (for `tcfuzz prove --arch arm64`), beside the x86-64
lifter (fuzz/analysis/lifter.py) and read the same way.

The words are decoded from their encodings as the Arm ARM (DDI 0487, chapter C4) defines them, not
from capstone's alias text: a form is lifted only when every field is one this module gives a
meaning to, and anything else fails closed with a `LiftError` naming the word and capstone's
disassembly of it. The lifted forms are exactly what the legacy and patched `emit_bpf_tail_call()`
and the pops they share emit, and the obvious neighbours a planted bug produces (another condition,
CBNZ, the 32-bit register forms):

    MOVZ / MOVN / MOVK                      (W and X; `mov` in the listings)
    ADD / SUB / ADDS / SUBS immediate       (imm12, optionally LSL #12; SP as base, CMP/CMN)
    ADD / SUB / ADDS / SUBS shifted register (LSL/LSR/ASR #0..; CMP)
    UBFM                                    (LSL/LSR/UBFX/UBFIZ by immediate)
    LDR / STR W, X  unsigned immediate offset, and register offset `[xN, xM{, lsl #size}]`
    LDP / STP X     pre-index, post-index, signed offset (the callee-saved pops)
    B.cond, CBZ / CBNZ, B, BR               (BR leaves the sequence: the tail call's jump)
    NOP, BTI                                (hints without effect on the state modelled)

Not lifted, so a proof never silently skips them: PACIASP/AUTIASP (they are in the prologue and
epilogue, never in a tail-call sequence), BL/BLR/RET, the extended-register and sign-extending
forms, byte and half-word accesses, anything else.

The machine state: x0..x30 and sp as 64-bit bitvectors (a W write zero-extends; register 31 is SP
or XZR as each encoding says), NZCV computed exactly, memory as a z3 array of 8-byte cells (every
X access the sequences make is 8-aligned, the one W access -- max_entries -- is half a cell; a
modelling assumption shared with the x86-64 lifter). Execution forks at each conditional branch.
The way out is the observation, as on x86-64:

    Exit.kind   OUT + k   a branch (or fall) to the sequence's end + k (k = 0: its own `out`)
                JUMP      `br xN`, with the target xN
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import capstone
import z3

from tcfuzz.analysis.lifter import JUMP, OUT, Exit, LiftError, MachineState, Sequence, load, store, symbolic_state

REGS = tuple(f"x{n}" for n in range(31)) + ("sp",)
MAX_STEPS = 4096  # a sequence is straight-line code with forward branches: more steps is a loop

_CS = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)

NOP = 0xD503201F
BTI = {0xD503241F, 0xD503245F, 0xD503249F, 0xD50324DF}  # bti, bti c, bti j, bti jc


@dataclass
class State(MachineState):
    # PSTATE.NZCV as the flag-setting forms leave them (C is "no borrow" after a subtraction)
    n: z3.BoolRef = z3.BoolVal(False)
    z: z3.BoolRef = z3.BoolVal(False)
    c: z3.BoolRef = z3.BoolVal(False)
    v: z3.BoolRef = z3.BoolVal(False)


def initial_state(prefix: str = "") -> State:
    return symbolic_state(State, REGS, prefix)


def disassembly(word: int, address: int = 0) -> str:
    insn = next(_CS.disasm(word.to_bytes(4, "little"), address), None)
    return f"{insn.mnemonic} {insn.op_str}".strip() if insn else "(undecodable)"


def _fail(word: int, address: int, why: str = "") -> LiftError:
    return LiftError(
        f"`{disassembly(word, address)}` ({word.to_bytes(4, 'little').hex()}) is not a lifted form" + (f": {why}" if why else "")
    )


# --- registers ----------------------------------------------------------------------------------------


def read(s: State, r: int, sf: int, sp: bool) -> z3.BitVecRef:
    """Register r as an operand of width 64 (sf) or 32; r = 31 is SP where the encoding says so, else XZR."""
    if r == 31:
        value = s.regs["sp"] if sp else z3.BitVecVal(0, 64)
    else:
        value = s.regs[f"x{r}"]
    return value if sf else z3.Extract(31, 0, value)


def write(s: State, r: int, value: z3.BitVecRef, sp: bool) -> None:
    """A W result zero-extends into the X register; r = 31 is SP where the encoding says so, else the
    result is discarded (XZR)."""
    if value.size() == 32:
        value = z3.ZeroExt(32, value)
    if r == 31:
        if sp:
            s.regs["sp"] = value
        return
    s.regs[f"x{r}"] = value


def _flags_sub(s: State, a: z3.BitVecRef, b: z3.BitVecRef) -> z3.BitVecRef:
    r = a - b
    n = a.size() - 1
    s.n, s.z = z3.Extract(n, n, r) == 1, r == 0
    s.c = z3.UGE(a, b)  # no borrow
    s.v = z3.And(z3.Extract(n, n, a) != z3.Extract(n, n, b), z3.Extract(n, n, r) != z3.Extract(n, n, a))
    return r


def _flags_add(s: State, a: z3.BitVecRef, b: z3.BitVecRef) -> z3.BitVecRef:
    r = a + b
    n = a.size() - 1
    s.n, s.z = z3.Extract(n, n, r) == 1, r == 0
    s.c = z3.ULT(r, a)  # carry out
    s.v = z3.And(z3.Extract(n, n, a) == z3.Extract(n, n, b), z3.Extract(n, n, r) != z3.Extract(n, n, a))
    return r


CONDITIONS = {  # ConditionHolds() of the Arm ARM, by cond<3:1>, inverted when cond<0> = 1 (except AL/NV)
    0b000: lambda s: s.z,  # EQ / NE
    0b001: lambda s: s.c,  # CS (HS) / CC (LO)
    0b010: lambda s: s.n,  # MI / PL
    0b011: lambda s: s.v,  # VS / VC
    0b100: lambda s: z3.And(s.c, z3.Not(s.z)),  # HI / LS
    0b101: lambda s: s.n == s.v,  # GE / LT
    0b110: lambda s: z3.And(s.n == s.v, z3.Not(s.z)),  # GT / LE
    0b111: lambda s: z3.BoolVal(True),  # AL / NV
}


def condition(s: State, cond: int) -> z3.BoolRef:
    holds = CONDITIONS[cond >> 1](s)
    return z3.Not(holds) if cond & 1 and cond != 0b1111 else holds


def _sext(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) & 1 else value


def _shifted(value: z3.BitVecRef, kind: int, amount: int) -> z3.BitVecRef:
    amount_bv = z3.BitVecVal(amount, value.size())
    return (value << amount_bv, z3.LShR(value, amount_bv), value >> amount_bv)[kind]


# --- one instruction ----------------------------------------------------------------------------------


def decode(seq: Sequence) -> list[tuple[int, int]]:
    """(address, word) of each instruction of the sequence."""
    if len(seq.code) % 4:
        raise LiftError("a length that is not a multiple of 4 bytes")
    return [(seq.base + k, int.from_bytes(seq.code[k : k + 4], "little")) for k in range(0, len(seq.code), 4)]


def step(s: State, word: int, pc: int, fields: dict) -> tuple[str, Any]:
    """Execute one word on `s` (in place). Returns ("next", None), ("goto", address),
    ("branch", (condition, address)) or ("jump", target). `fields` may replace the value of a
    move-wide (`imm`: the whole register value) or the addend of an ADD immediate (`imm`: 64 bits)."""
    w = word
    sf, rd, rn = w >> 31, w & 0x1F, (w >> 5) & 0x1F
    width = 64 if sf else 32

    if (w >> 23) & 0x3F == 0b100101:  # move wide (immediate)
        opc, hw, imm16 = (w >> 29) & 3, (w >> 21) & 3, (w >> 5) & 0xFFFF
        if opc == 1 or (not sf and hw > 1):
            raise _fail(w, pc, "unallocated move-wide")
        if "imm" in fields:
            write(s, rd, fields["imm"], sp=False)
            return "next", None
        shifted = imm16 << (16 * hw)
        mask = (1 << width) - 1
        if opc == 0:  # MOVN
            value = z3.BitVecVal(~shifted & mask, width)
        elif opc == 2:  # MOVZ
            value = z3.BitVecVal(shifted, width)
        else:  # MOVK: keep the other bits of the register
            keep = z3.BitVecVal(mask & ~(0xFFFF << (16 * hw)), width)
            value = (read(s, rd, sf, sp=False) & keep) | z3.BitVecVal(shifted, width)
        write(s, rd, value, sp=False)
        return "next", None

    if (w >> 23) & 0x3F == 0b100010:  # add/sub (immediate)
        op, setflags, sh, imm12 = (w >> 30) & 1, (w >> 29) & 1, (w >> 22) & 1, (w >> 10) & 0xFFF
        a = read(s, rn, sf, sp=True)
        if "imm" in fields:
            if op or setflags or not sf:
                raise _fail(w, pc, "a symbolic immediate on anything but a 64-bit ADD")
            b = fields["imm"]
        else:
            b = z3.BitVecVal(imm12 << (12 if sh else 0), width)
        if setflags:
            r = _flags_sub(s, a, b) if op else _flags_add(s, a, b)
        else:
            r = a - b if op else a + b
        write(s, rd, r, sp=not setflags)  # ADDS/SUBS write XZR at 31 (CMP/CMN), ADD/SUB write SP
        return "next", None

    if (w >> 24) & 0x1F == 0b01011:  # add/sub (shifted register); bit 21 set = extended register
        op, setflags, kind, rm, imm6 = (w >> 30) & 1, (w >> 29) & 1, (w >> 22) & 3, (w >> 16) & 0x1F, (w >> 10) & 0x3F
        if (w >> 21) & 1:
            raise _fail(w, pc, "extended-register form")
        if kind == 3 or imm6 >= width:
            raise _fail(w, pc, "reserved shift")
        a, b = read(s, rn, sf, sp=False), _shifted(read(s, rm, sf, sp=False), kind, imm6)
        if setflags:
            r = _flags_sub(s, a, b) if op else _flags_add(s, a, b)
        else:
            r = a - b if op else a + b
        write(s, rd, r, sp=False)
        return "next", None

    if (w >> 23) & 0xFF == 0b10100110:  # UBFM (bitfield, opc = 10)
        n, immr, imms = (w >> 22) & 1, (w >> 16) & 0x3F, (w >> 10) & 0x3F
        if n != sf or (not sf and (immr >= 32 or imms >= 32)):
            raise _fail(w, pc, "reserved bitfield")
        src = read(s, rn, sf, sp=False)
        if imms >= immr:  # LSR / UBFX: bits imms..immr of src, at bit 0
            r = z3.LShR(src, z3.BitVecVal(immr, width)) & z3.BitVecVal((1 << (imms - immr + 1)) - 1, width)
        else:  # LSL / UBFIZ: bits imms..0 of src, at bit width - immr
            r = (src & z3.BitVecVal((1 << (imms + 1)) - 1, width)) << z3.BitVecVal(width - immr, width)
        write(s, rd, r, sp=False)
        return "next", None

    if (w >> 27) & 7 == 0b111 and not (w >> 26) & 1:  # load/store register (integer)
        size, opc = w >> 30, (w >> 22) & 3
        if size not in (2, 3) or opc not in (0, 1):
            raise _fail(w, pc, "only W/X LDR and STR are lifted")
        nbytes = 1 << size
        base = read(s, rn, 1, sp=True)
        if (w >> 24) & 3 == 0b01:  # unsigned immediate offset
            addr = base + ((w >> 10) & 0xFFF) * nbytes
        elif (w >> 24) & 3 == 0b00 and (w >> 21) & 1 and (w >> 10) & 3 == 0b10:  # register offset
            option, scaled, rm = (w >> 13) & 7, (w >> 12) & 1, (w >> 16) & 0x1F
            if option != 0b011:
                raise _fail(w, pc, "only the LSL (UXTX) register offset is lifted")
            addr = base + (read(s, rm, 1, sp=False) << (size if scaled else 0))
        else:
            raise _fail(w, pc, "pre/post-indexed or unscaled LDR/STR")
        rt = w & 0x1F
        if opc == 1:
            value = load(s, addr, nbytes)
            write(s, rt, value, sp=False)
        else:
            store(s, addr, read(s, rt, size == 3, sp=False), nbytes)
        return "next", None

    if (w >> 27) & 7 == 0b101 and not (w >> 26) & 1:  # load/store pair
        opc, mode, is_load, imm7 = w >> 30, (w >> 23) & 7, (w >> 22) & 1, (w >> 15) & 0x7F
        rt, rt2 = w & 0x1F, (w >> 10) & 0x1F
        if opc != 0b10 or mode not in (0b001, 0b010, 0b011):
            raise _fail(w, pc, "only X LDP/STP are lifted")
        if (is_load and rt == rt2 and rt != 31) or (mode != 0b010 and rn in (rt, rt2) and rn != 31):
            raise _fail(w, pc, "CONSTRAINED UNPREDICTABLE register choice")
        base = read(s, rn, 1, sp=True)
        offset = _sext(imm7, 7) * 8
        addr = base if mode == 0b001 else base + offset  # post-index uses the base as is
        if is_load:
            first, second = load(s, addr, 8), load(s, addr + 8, 8)
            write(s, rt, first, sp=False)
            write(s, rt2, second, sp=False)
        else:
            first, second = read(s, rt, 1, sp=False), read(s, rt2, 1, sp=False)
            store(s, addr, first, 8)
            store(s, addr + 8, second, 8)
        if mode != 0b010:  # writeback
            write(s, rn, base + offset, sp=True)
        return "next", None

    if w & 0xFF000010 == 0x54000000:  # B.cond
        return "branch", (condition(s, w & 0xF), pc + _sext((w >> 5) & 0x7FFFF, 19) * 4)

    if (w >> 25) & 0x3F == 0b011010:  # CBZ / CBNZ
        value = read(s, w & 0x1F, sf, sp=False)
        zero = value == 0
        return "branch", (z3.Not(zero) if (w >> 24) & 1 else zero, pc + _sext((w >> 5) & 0x7FFFF, 19) * 4)

    if w >> 26 == 0b000101:  # B
        return "goto", pc + _sext(w & 0x3FFFFFF, 26) * 4

    if w & 0xFFFFFC1F == 0xD61F0000:  # BR Xn
        return "jump", read(s, rn, 1, sp=False)

    if w == NOP or w in BTI:
        return "next", None

    raise _fail(w, pc)


def run(seq: Sequence, state: State, cond: z3.BoolRef | None = None) -> list[Exit[State]]:
    """All the ways out of the sequence from `state`, each with its path condition."""
    cond = z3.BoolVal(True) if cond is None else cond
    words = dict(decode(seq))
    exits: list[Exit[State]] = []
    work = [(seq.base, state, cond)]
    steps = 0
    while work:
        pc, s, c = work.pop()
        while True:
            steps += 1
            if steps > MAX_STEPS:
                raise LiftError(f"more than {MAX_STEPS} steps: the sequence loops")
            if pc not in words:  # left the sequence
                exits.append(Exit(c, OUT + (pc - seq.end), s))
                break
            what, arg = step(s, words[pc], pc, seq.fields.get(pc, {}))
            if what == "next":
                pc += 4
            elif what == "goto":
                pc = arg
            elif what == "branch":
                taken, target = arg
                work.append((target, s.copy(), z3.And(c, taken)))
                c, pc = z3.And(c, z3.Not(taken)), pc + 4
            else:  # "jump"
                exits.append(Exit(c, JUMP, s, arg))
                break
    return exits
