"""Capstone-decoded tail-call sequences -> z3 semantics (for `tcfuzz prove`).

Exactly the instruction forms the emitters produce are lifted; anything else fails closed with a
`LiftError` naming the instruction. The machine state is 64-bit register bitvectors (32-bit writes
zero-extend), CF/ZF/SF/OF computed exactly for cmp/test/add, and memory as a z3 array of 8-byte
cells: every qword the sequences touch is 8-aligned (kernel objects and stack slots are), and the
one dword (`max_entries`) is half of a cell. Execution forks at each conditional jump; a sequence
ends when control leaves it, and the way out is the observation:

    Exit.kind   OUT + k   a jump (or fall) to the sequence's end + k (k = 0: its own `out`)
                JUMP      an indirect jump (`jmp rcx`, the retpoline thunk, a direct poke) to `target`
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

import capstone
import z3
from capstone import x86

from tcfuzz.model.layout import indirect_thunk

JUMP = 1 << 20  # Exit.kind of an indirect/direct jump out of the sequence
OUT = 0  # Exit.kind base for leaving to sequence end + k

REG64 = {
    x86.X86_REG_RAX: "rax",
    x86.X86_REG_RCX: "rcx",
    x86.X86_REG_RDX: "rdx",
    x86.X86_REG_RBX: "rbx",
    x86.X86_REG_RSP: "rsp",
    x86.X86_REG_RBP: "rbp",
    x86.X86_REG_RSI: "rsi",
    x86.X86_REG_RDI: "rdi",
    x86.X86_REG_R12: "r12",
    x86.X86_REG_R13: "r13",
    x86.X86_REG_R14: "r14",
    x86.X86_REG_R15: "r15",
}
REG32 = {x86.X86_REG_EAX: "rax", x86.X86_REG_ECX: "rcx", x86.X86_REG_EDX: "rdx", x86.X86_REG_EBX: "rbx"}
REGS = tuple(REG64.values())

_CS = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
_CS.detail = True


class LiftError(Exception):
    """An instruction outside the lifted forms (fail closed)."""


@dataclass
class MachineState:
    """What a lifted path carries, on either architecture: 64-bit registers by name and memory as
    8-byte cells. Each lifter's `State` adds its architecture's condition flags."""

    regs: dict[str, z3.BitVecRef]
    mem: z3.ArrayRef  # cell index (addr >> 3) -> u64

    def copy(self: S) -> S:
        return replace(self, regs=dict(self.regs))  # z3 terms are immutable: sharing them is safe


S = TypeVar("S", bound=MachineState)


def symbolic_state(cls: type[S], regs: tuple[str, ...], prefix: str = "") -> S:
    """Every register and all of memory unconstrained."""
    return cls({r: z3.BitVec(f"{prefix}{r}", 64) for r in regs}, z3.Array(f"{prefix}mem", z3.BitVecSort(64), z3.BitVecSort(64)))


@dataclass
class State(MachineState):
    # rflags as cmp, test, add and sub leave them (the jcc forms read no other bit)
    cf: z3.BoolRef = z3.BoolVal(False)
    zf: z3.BoolRef = z3.BoolVal(False)
    sf: z3.BoolRef = z3.BoolVal(False)
    of: z3.BoolRef = z3.BoolVal(False)


@dataclass
class Exit(Generic[S]):
    """One way out of a sequence: taken under `cond`, leaving `state`."""

    cond: z3.BoolRef  # the path condition
    kind: int
    state: S
    target: z3.BitVecRef | None = None


@dataclass
class Sequence:
    """One tail-call sequence to lift: its bytes at `base`, and the overrides the prover supplies."""

    code: bytes
    base: int  # address of code[0]
    end: int  # the sequence's own end (its `out`), as an address
    fields: dict[int, dict[str, z3.BitVecRef]] = field(default_factory=dict)  # address -> {"imm"/"disp": expr}
    pokes: dict[int, tuple[z3.BoolRef, z3.BitVecRef | None]] = field(default_factory=dict)
    # address -> (taken, target): a poke site; taken true = `jmp target` (target None: to the bypass
    # address in the bytes), false = nop5


def initial_state(prefix: str = "") -> State:
    return symbolic_state(State, REGS, prefix)


# --- memory: 8-byte cells, shared by both lifters (accesses are naturally aligned) ---------------


def cell(addr: z3.BitVecRef) -> z3.BitVecRef:
    return z3.LShR(addr, 3)


def load(s: MachineState, addr: z3.BitVecRef, size: int) -> z3.BitVecRef:
    word = z3.Select(s.mem, cell(addr))
    if size == 8:
        return word
    if size == 4:
        high = z3.Extract(2, 2, addr) == 1
        return z3.If(high, z3.Extract(63, 32, word), z3.Extract(31, 0, word))
    raise LiftError(f"a {size}-byte memory access")


def store(s: MachineState, addr: z3.BitVecRef, value: z3.BitVecRef, size: int) -> None:
    if size == 8:
        s.mem = z3.Store(s.mem, cell(addr), value)
        return
    if size != 4:
        raise LiftError(f"a {size}-byte memory access")
    old = z3.Select(s.mem, cell(addr))
    high = z3.Extract(2, 2, addr) == 1
    merged = z3.If(high, z3.Concat(value, z3.Extract(31, 0, old)), z3.Concat(z3.Extract(63, 32, old), value))
    s.mem = z3.Store(s.mem, cell(addr), merged)


def _reg(s: State, reg: int) -> z3.BitVecRef:
    if reg in REG64:
        return s.regs[REG64[reg]]
    if reg in REG32:
        return z3.Extract(31, 0, s.regs[REG32[reg]])
    raise LiftError(f"register {_CS.reg_name(reg)}")


def _set_reg(s: State, reg: int, value: z3.BitVecRef) -> None:
    if reg in REG64:
        s.regs[REG64[reg]] = value
    elif reg in REG32:
        s.regs[REG32[reg]] = z3.ZeroExt(32, value)  # 32-bit writes zero-extend
    else:
        raise LiftError(f"register {_CS.reg_name(reg)}")


def _addr(s: State, insn, op, fields: dict) -> z3.BitVecRef:
    mem = op.mem
    if mem.segment != 0:
        raise LiftError(f"segment override in `{insn.mnemonic} {insn.op_str}`")
    disp = fields.get("disp", z3.BitVecVal(mem.disp, 64))
    if mem.base == x86.X86_REG_RIP:
        raise LiftError(f"rip-relative operand in `{insn.mnemonic} {insn.op_str}`")
    addr = disp
    if mem.base:
        addr = addr + _reg(s, mem.base)
    if mem.index:
        addr = addr + _reg(s, mem.index) * mem.scale
    return addr


def _operand(s: State, insn, op, fields: dict) -> z3.BitVecRef:
    if op.type == x86.X86_OP_REG:
        return _reg(s, op.reg)
    if op.type == x86.X86_OP_IMM:
        return fields.get("imm", z3.BitVecVal(op.imm & ((1 << (8 * op.size)) - 1), 8 * op.size))
    if op.type == x86.X86_OP_MEM:
        return load(s, _addr(s, insn, op, fields), op.size)
    raise LiftError(f"operand of `{insn.mnemonic} {insn.op_str}`")


def _flags_sub(s: State, a: z3.BitVecRef, b: z3.BitVecRef) -> None:
    r = a - b
    n = a.size() - 1
    s.cf, s.zf = z3.ULT(a, b), r == 0
    s.sf = z3.Extract(n, n, r) == 1
    s.of = z3.And(z3.Extract(n, n, a) != z3.Extract(n, n, b), z3.Extract(n, n, r) != z3.Extract(n, n, a))


def _flags_add(s: State, a: z3.BitVecRef, b: z3.BitVecRef, r: z3.BitVecRef) -> None:
    n = a.size() - 1
    s.cf = z3.ULT(r, a)
    s.zf, s.sf = r == 0, z3.Extract(n, n, r) == 1
    s.of = z3.And(z3.Extract(n, n, a) == z3.Extract(n, n, b), z3.Extract(n, n, r) != z3.Extract(n, n, a))


def _widen(value: z3.BitVecRef, size: int) -> z3.BitVecRef:
    """An imm operand as the instruction uses it: sign-extended to the operand size."""
    return z3.SignExt(size - value.size(), value) if value.size() < size else value


CONDITIONS = {
    "jbe": lambda s: z3.Or(s.cf, s.zf),
    "ja": lambda s: z3.And(z3.Not(s.cf), z3.Not(s.zf)),
    "jae": lambda s: z3.Not(s.cf),
    "jb": lambda s: s.cf,
    "je": lambda s: s.zf,
    "jne": lambda s: z3.Not(s.zf),
    # the signed and overflow conditions: not emitted, but a mutant's jcc may be any of them (PF is not
    # modelled, so jp/jnp fail closed)
    "jo": lambda s: s.of,
    "jno": lambda s: z3.Not(s.of),
    "js": lambda s: s.sf,
    "jns": lambda s: z3.Not(s.sf),
    "jl": lambda s: s.sf != s.of,
    "jge": lambda s: s.sf == s.of,
    "jle": lambda s: z3.Or(s.zf, s.sf != s.of),
    "jg": lambda s: z3.And(z3.Not(s.zf), s.sf == s.of),
}


def decode(seq: Sequence) -> list:
    insns = list(_CS.disasm(seq.code, seq.base))
    if sum(len(i.bytes) for i in insns) != len(seq.code):
        raise LiftError("bytes that do not decode")
    return insns


def run(seq: Sequence, state: State, cond: z3.BoolRef | None = None) -> list[Exit[State]]:
    """All the ways out of the sequence from `state`, each with its path condition."""
    cond = z3.BoolVal(True) if cond is None else cond
    insns = {i.address: i for i in decode(seq)}
    exits: list[Exit[State]] = []
    work = [(seq.base, state, cond)]
    while work:
        pc, s, c = work.pop()
        while True:
            if pc not in insns:  # left the sequence
                exits.append(Exit(c, OUT + (pc - seq.end), s))
                break
            insn = insns[pc]
            fields = seq.fields.get(pc, {})
            nxt = pc + insn.size
            if pc in seq.pokes:  # a text-poke site: two states
                taken, target = seq.pokes[pc]
                if target is None:  # the bypass: its bytes say where to
                    target_pc = insn.operands[0].imm if insn.mnemonic == "jmp" else seq.end
                    work.append((target_pc, s.copy(), z3.And(c, taken)))
                    c, pc = z3.And(c, z3.Not(taken)), nxt
                else:
                    exits.append(Exit(z3.And(c, taken), JUMP, s.copy(), target))
                    c, pc = z3.And(c, z3.Not(taken)), nxt
                continue
            m, ops = insn.mnemonic, insn.operands
            if m == "mov":
                if ops[0].type != x86.X86_OP_REG:
                    _fail(insn)
                _set_reg(s, ops[0].reg, _operand(s, insn, ops[1], fields))
            elif m == "cmp":
                a, b = _operand(s, insn, ops[0], fields), _operand(s, insn, ops[1], fields)
                size = max(a.size(), b.size())
                _flags_sub(s, _widen(a, size), _widen(b, size))
            elif m == "test":
                a, b = _operand(s, insn, ops[0], fields), _operand(s, insn, ops[1], fields)
                r = a & b
                n = r.size() - 1
                s.cf, s.of, s.zf, s.sf = z3.BoolVal(False), z3.BoolVal(False), r == 0, z3.Extract(n, n, r) == 1
            elif m == "add":
                b = _operand(s, insn, ops[1], fields)
                if ops[0].type == x86.X86_OP_MEM and ops[0].size == 8:
                    addr = _addr(s, insn, ops[0], fields)
                    a = load(s, addr, 8)
                    b = _widen(b, 64)
                    r = a + b
                    store(s, addr, r, 8)
                elif ops[0].type == x86.X86_OP_REG and ops[0].size == 8:
                    a = _reg(s, ops[0].reg)
                    b = _widen(b, 64)
                    r = a + b
                    _set_reg(s, ops[0].reg, r)
                else:
                    _fail(insn)
                _flags_add(s, a, b, r)
            elif m == "pop":
                _set_reg(s, ops[0].reg, load(s, s.regs["rsp"], 8))
                s.regs["rsp"] = s.regs["rsp"] + 8
            elif m in CONDITIONS:
                taken = CONDITIONS[m](s)
                work.append((ops[0].imm, s.copy(), z3.And(c, taken)))
                c = z3.And(c, z3.Not(taken))
            elif m == "jmp" and ops[0].type == x86.X86_OP_REG and ops[0].reg == x86.X86_REG_RCX:
                exits.append(Exit(c, JUMP, s, s.regs["rcx"]))
                break
            elif m == "jmp" and ops[0].type == x86.X86_OP_IMM:
                if ops[0].imm == indirect_thunk():  # __x86_indirect_thunk_rcx: jmp *%rcx
                    exits.append(Exit(c, JUMP, s, s.regs["rcx"]))
                    break
                nxt = ops[0].imm
            elif m in ("lfence", "nop"):
                pass
            elif m == "int3":
                raise LiftError(f"execution reaches `int3` at {pc:#x}")
            else:
                _fail(insn)
            pc = nxt
    return exits


def _fail(insn) -> None:
    raise LiftError(f"`{insn.mnemonic} {insn.op_str}` ({bytes(insn.bytes).hex()}) is not a lifted form")


def merge(exits: list[Exit], pick) -> z3.ExprRef:
    """ite over the exits' path conditions (which partition the inputs) of pick(exit)."""
    value = pick(exits[-1])
    for e in reversed(exits[:-1]):
        value = z3.If(e.cond, pick(e), value)
    return value
