"""The A64 lifter is validated against Unicorn's arm64 engine, not assumed (as tests/test_lifter.py
does for x86-64): (1) random concrete states run through the lifted z3 semantics and through
Unicorn on the same tail-call sequence bytes must leave the same way with every register, sp and
the counter equal; (2) every lifted form, on random operands, must agree with Unicorn word by word,
flags included; (3) anything else fails closed."""

import random
import struct

import pytest
import z3
from emulate import run_until_it_leaves
from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, UC_PROT_ALL, Uc
from unicorn.arm64_const import UC_ARM64_REG_NZCV, UC_ARM64_REG_PC, UC_ARM64_REG_SP

from tcfuzz import jit_new, jit_old
from tcfuzz.analysis.lifter import JUMP, OUT, LiftError, Sequence
from tcfuzz.analysis.lifter_arm64 import REGS, State, run, step
from tcfuzz.analysis.prove import Config, site_sequence
from tcfuzz.codegens import for_arch
from tcfuzz.machine.executor_arm64 import xreg
from tcfuzz.model.profile import PRESETS

OLD, NEW = for_arch(jit_old.CODEGEN, "arm64"), for_arch(jit_new.CODEGEN, "arm64")
ARRAY, PROG, STACK, LANDING, DATA = 0x10_0000_0000, 0x20_0000, 0x40_0000, 0x7000_0000, 0x80_0000
CELLS = 32  # the DATA cells a single-word test's memory operands reach


def uc_reg(name: str) -> int:
    return UC_ARM64_REG_SP if name == "sp" else xreg(int(name[1:]))


def concrete_state(rng, cfg, profile):
    """Registers and the memory cells an arm64 tail-call sequence can read, with values that take
    every path: x1 the array, x2 the index (sometimes with high bits), x26 the counter slot."""
    idx = rng.choice([0, 1, 3, 4, 5, rng.randrange(0, 300)])
    x2 = idx | (rng.choice([1 << 32, 0xFFFF_0000_0000_0000]) if rng.random() < 0.3 else 0)
    me = rng.choice([4, 5, 300, 1])
    count = rng.choice([0, 0, 31, 32, 33, 34])
    target = LANDING + 16 * rng.randrange(1, 100)
    prog = PROG + 0x100 * rng.randrange(1, 8) if rng.random() < 0.7 else 0
    pushed = {"none": 0, "some": 2, "all": 4, "boundary": 10}[cfg.callee]
    frame = (cfg.stack_depth + 15) // 16 * 16
    regs = {r: rng.getrandbits(64) for r in REGS}
    counter = STACK + 0x100
    regs.update(x1=ARRAY, x2=x2, x26=counter, sp=STACK + 0x8000 - frame - 8 * pushed)
    cells = {
        ARRAY + profile.max_entries_off - 4: me << 32,  # max_entries: the cell's high half
        counter: count,
    }
    for k in range(pushed):
        cells[regs["sp"] + frame + 8 * k] = rng.getrandbits(64)  # the saved callee registers
    for i in {idx, idx + 4, idx + me}:
        cells[ARRAY + profile.ptrs_off + 8 * i] = rng.choice([0, prog, target])
    cells[ARRAY + profile.ptrs_off + 8 * idx] = prog
    if prog:
        cells[prog + profile.bpf_func_off] = target - profile.tail_call_offset
    return regs, cells


def symbolic_memory(cells):
    mem = z3.K(z3.BitVecSort(64), z3.BitVecVal(0, 64))
    for addr, value in cells.items():
        mem = z3.Store(mem, z3.BitVecVal(addr >> 3, 64), z3.BitVecVal(value, 64))
    return mem


def lifted(seq, regs, cells):
    state = State({r: z3.BitVecVal(v, 64) for r, v in regs.items()}, symbolic_memory(cells))
    (exit_,) = [e for e in run(seq, state) if z3.is_true(z3.simplify(e.cond))]
    out = {r: z3.simplify(exit_.state.regs[r]).as_long() for r in REGS}
    out["count"] = z3.simplify(z3.Select(exit_.state.mem, (STACK + 0x100) >> 3)).as_long()
    out["to"] = ("jump", z3.simplify(exit_.target).as_long()) if exit_.kind == JUMP else ("out", exit_.kind - OUT)
    return out


def machine(cells):
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    for base in (ARRAY, STACK, PROG, LANDING, DATA, 0x100_0000):
        uc.mem_map(base, 0x10000, UC_PROT_ALL)
    for addr, value in cells.items():
        uc.mem_write(addr, struct.pack("<Q", value))
    return uc


def emulated(image, seq, regs, cells):
    uc = machine(cells)
    uc.mem_write(image.base, image.code)
    for r, v in regs.items():
        uc.reg_write(uc_reg(r), v)
    pc = run_until_it_leaves(uc, seq)
    out = {r: uc.reg_read(uc_reg(r)) for r in REGS}
    out["count"] = struct.unpack("<Q", uc.mem_read(STACK + 0x100, 8))[0]
    out["to"] = ("out", pc - seq.end) if image.base <= pc < image.base + 0x10000 else ("jump", pc)
    return out


CONFIGS = [
    Config(p, k, d, c)
    for p in ("arm64", "arm64-bti-pac")
    for k in ("static", "dynamic", "direct")
    for d, c in ((0, "none"), (20, "boundary"))
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
@pytest.mark.parametrize("codegen", [OLD, NEW], ids=lambda c: c.name)
def test_lifter_agrees_with_unicorn_on_the_sequences(cfg, codegen):
    rng = random.Random(f"{cfg.name} {codegen.name}")
    profile = PRESETS[cfg.profile]
    seq, image = site_sequence(codegen, cfg)
    kinds = set()
    for _ in range(20):
        regs, cells = concrete_state(rng, cfg, profile)
        a, b = lifted(seq, regs, cells), emulated(image, seq, regs, cells)
        assert a == b, (cfg.name, codegen.name, regs, cells)
        kinds.add(a["to"][0])
    assert kinds == {"out", "jump"}, "the random states must take both ways out"


# --- every lifted form, word by word ---------------------------------------------------------------


def _r(rng, sp_ok=False):
    return rng.choice(range(32 if sp_ok else 31))


def random_word(rng, form):
    """A random word of a lifted form whose memory operands (if any) land in DATA."""
    sf = rng.randrange(2)
    rd, rn, rm = rng.randrange(32), rng.randrange(32), rng.randrange(32)
    if form == "movewide":
        opc, hw = rng.choice([0, 2, 3]), rng.randrange(4 if sf else 2)
        return (sf << 31) | (opc << 29) | (0b100101 << 23) | (hw << 21) | (rng.getrandbits(16) << 5) | rd, {}
    if form == "addsub_imm":
        op, s, sh = rng.randrange(2), rng.randrange(2), rng.randrange(2)
        word = (sf << 31) | (op << 30) | (s << 29) | (0b100010 << 23) | (sh << 22) | (rng.getrandbits(12) << 10)
        return word | (rn << 5) | rd, {}
    if form == "addsub_reg":
        op, s, kind = rng.randrange(2), rng.randrange(2), rng.randrange(3)
        amount = rng.randrange(64 if sf else 32)
        word = (sf << 31) | (op << 30) | (s << 29) | (0b01011 << 24) | (kind << 22) | (rm << 16) | (amount << 10)
        return word | (rn << 5) | rd, {}
    if form == "ubfm":
        width = 64 if sf else 32
        immr, imms = rng.randrange(width), rng.randrange(width)
        return (sf << 31) | (0b10 << 29) | (0b100110 << 23) | (sf << 22) | (immr << 16) | (imms << 10) | (rn << 5) | rd, {}
    if form in ("ldst_imm", "ldst_reg"):
        size, opc = rng.choice([2, 3]), rng.randrange(2)
        rn = rng.choice([r for r in range(32) if r != rd or opc == 0])
        if form == "ldst_imm":
            imm12 = rng.randrange(8)
            word = (size << 30) | (0b111001 << 24) | (opc << 22) | (imm12 << 10) | (rn << 5) | rd
            return word, {rn: DATA}
        rm = rng.choice([r for r in range(31) if r != rn])
        scaled = rng.randrange(2)
        word = (size << 30) | (0b111000 << 24) | (opc << 22) | (1 << 21) | (rm << 16) | (0b011 << 13) | (scaled << 12)
        return word | (0b10 << 10) | (rn << 5) | rd, {rn: DATA, rm: rng.randrange(16) << (0 if scaled else size)}
    if form == "ldstp":
        mode, load = rng.choice([0b001, 0b010, 0b011]), rng.randrange(2)
        rt, rt2 = rng.sample([r for r in range(32) if r != rn or rn == 31], 2)
        imm7 = rng.randrange(-8, 8) & 0x7F
        word = (0b10 << 30) | (0b101 << 27) | (mode << 23) | (load << 22) | (imm7 << 15) | (rt2 << 10) | (rn << 5) | rt
        return word, {rn: DATA + 0x80}
    raise AssertionError(form)


def run_one(word, regs, nzcv, cells):
    """(registers, NZCV, the DATA cells) after one word, by Unicorn and by the lifter."""
    uc = machine(cells)
    code = 0x100_0000
    uc.mem_write(code, struct.pack("<I", word))
    for r, v in regs.items():
        uc.reg_write(uc_reg(r), v)
    uc.reg_write(UC_ARM64_REG_NZCV, nzcv << 28)
    uc.emu_start(code, code + 4, count=1)
    got = {r: uc.reg_read(uc_reg(r)) for r in REGS}, uc.reg_read(UC_ARM64_REG_NZCV) >> 28, bytes(uc.mem_read(DATA, 8 * CELLS))
    assert uc.reg_read(UC_ARM64_REG_PC) == code + 4

    start = symbolic_memory(cells)
    s = State({r: z3.BitVecVal(v, 64) for r, v in regs.items()}, start)
    s.n, s.z, s.c, s.v = (z3.BoolVal(bool(nzcv >> (3 - k) & 1)) for k in range(4))
    assert step(s, word, code, {}) == ("next", None)
    flags = sum(z3.is_true(z3.simplify(f)) << (3 - k) for k, f in enumerate((s.n, s.z, s.c, s.v)))
    mem = got[2]
    if s.mem is not start:  # a store: read the cells back
        mem = b"".join(struct.pack("<Q", z3.simplify(z3.Select(s.mem, (DATA >> 3) + k)).as_long()) for k in range(CELLS))
    return got, ({r: z3.simplify(s.regs[r]).as_long() for r in REGS}, flags, mem)


@pytest.mark.parametrize("form", ["movewide", "addsub_imm", "addsub_reg", "ubfm", "ldst_imm", "ldst_reg", "ldstp"])
def test_every_lifted_form_agrees_with_unicorn(form):
    rng = random.Random(form)
    for _ in range(40):
        word, fixed = random_word(rng, form)
        regs = {r: rng.choice([rng.getrandbits(64), rng.getrandbits(32), 0, 1, 2**63, 2**64 - 1]) for r in REGS}
        regs["sp"] = DATA + 0x80
        for r, v in fixed.items():
            regs["sp" if r == 31 else f"x{r}"] = v
        cells = {DATA + 8 * k: rng.getrandbits(64) for k in range(CELLS)}
        emu, lift = run_one(word, regs, rng.randrange(16), cells)
        assert emu[0] == lift[0], (hex(word), {r: (hex(emu[0][r]), hex(lift[0][r])) for r in REGS if emu[0][r] != lift[0][r]})
        assert emu[1] == lift[1], (hex(word), "NZCV", emu[1], lift[1])
        assert emu[2] == lift[2], (hex(word), "memory")


def test_every_condition_agrees_with_unicorn():
    """B.cond under each of the 16 NZCV values, and CBZ/CBNZ on W and X: taken or not as Unicorn says."""
    for cond in range(16):
        word = 0x54000000 | (4 << 5) | cond  # b.<cond> +16
        for nzcv in range(16):
            uc = machine({})
            uc.mem_write(0x100_0000, struct.pack("<I", word))
            uc.reg_write(UC_ARM64_REG_NZCV, nzcv << 28)
            uc.emu_start(0x100_0000, 0, count=1)
            s = State({r: z3.BitVecVal(0, 64) for r in REGS}, symbolic_memory({}))
            s.n, s.z, s.c, s.v = (z3.BoolVal(bool(nzcv >> (3 - k) & 1)) for k in range(4))
            what, (taken, target) = step(s, word, 0x100_0000, {})
            assert (what, target) == ("branch", 0x100_0010)
            assert z3.is_true(z3.simplify(taken)) == (uc.reg_read(UC_ARM64_REG_PC) == 0x100_0010), (cond, nzcv)
    for sf, op, value in ((1, 0, 1 << 40), (0, 0, 1 << 40), (1, 1, 0), (0, 1, 5)):
        word = (sf << 31) | 0x34000000 | (op << 24) | (4 << 5) | 3  # cbz/cbnz x3/w3, +16
        uc = machine({})
        uc.mem_write(0x100_0000, struct.pack("<I", word))
        uc.reg_write(xreg(3), value)
        uc.emu_start(0x100_0000, 0, count=1)
        s = State({r: z3.BitVecVal(value if r == "x3" else 0, 64) for r in REGS}, symbolic_memory({}))
        _, (taken, _) = step(s, word, 0x100_0000, {})
        assert z3.is_true(z3.simplify(taken)) == (uc.reg_read(UC_ARM64_REG_PC) == 0x100_0010), (sf, op, value)


@pytest.mark.parametrize(
    "word, text",
    [
        (0xD503233F, "paciasp"),  # in the prologue, never in a sequence
        (0xD65F03C0, "ret"),
        (0x94000000, "bl"),
        (0x8B2A602B, "add x11, x1, x10, uxtx"),  # the extended-register form
        (0xB8AA682A, "ldrsw"),  # a sign-extending load
        (0x386A682A, "ldrb"),
    ],
)
def test_other_words_fail_closed(word, text):
    seq = Sequence(struct.pack("<I", word), 0x1000, 0x1004)
    state = State({r: z3.BitVec(r, 64) for r in REGS}, z3.Array("m", z3.BitVecSort(64), z3.BitVecSort(64)))
    with pytest.raises(LiftError, match=r"is not a lifted form") as e:
        run(seq, state)
    assert text.split()[0] in str(e.value)


@pytest.mark.parametrize("profile", ["arm64", "arm64-bti-pac"])
@pytest.mark.parametrize("callee", ["some", "boundary"])
def test_the_tail_call_entry_lifts_and_agrees_with_unicorn(profile, callee):
    """A tail call enters the callee at bpf_func + PROLOGUE_OFFSET * 4: `bti j` (BTI), the
    callee-saved pushes, `mov x25, sp`, `sub sp, sp, #n`. Those words lift, and leave the registers
    and the stack as Unicorn does. The whole prologue of a PAC kernel does not: `paciasp` fails closed."""
    cfg = Config(profile, "static", 20, callee)
    _, image = site_sequence(NEW, cfg)
    entry, body = PRESETS[profile].tail_call_offset, image.insn_range(0)[0]
    seq = Sequence(image.code[entry:body], image.base + entry, image.base + body)
    rng = random.Random(cfg.name)
    regs = {r: rng.getrandbits(64) for r in REGS} | {"sp": STACK + 0x8000}
    state = State({r: z3.BitVecVal(v, 64) for r, v in regs.items()}, symbolic_memory({}))
    (exit_,) = run(seq, state)
    assert exit_.kind == OUT  # falls through into the body
    got = {r: z3.simplify(exit_.state.regs[r]).as_long() for r in REGS}
    stack = [z3.simplify(z3.Select(exit_.state.mem, ((STACK + 0x8000) >> 3) - k)).as_long() for k in range(1, 20)]
    uc = machine({})
    uc.mem_write(image.base, image.code)
    for r, v in regs.items():
        uc.reg_write(uc_reg(r), v)
    uc.emu_start(seq.base, seq.end)
    assert got == {r: uc.reg_read(uc_reg(r)) for r in REGS}
    assert stack == [struct.unpack("<Q", uc.mem_read(STACK + 0x8000 - 8 * k, 8))[0] for k in range(1, 20)]
    whole = Sequence(image.code[:body], image.base, image.base + body)
    if PRESETS[profile].pac:
        with pytest.raises(LiftError, match=r"`paciasp` \(3f2303d5\) is not a lifted form"):
            run(whole, State({r: z3.BitVec(r, 64) for r in REGS}, symbolic_memory({})))
