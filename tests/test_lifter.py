"""The lifter is validated against the emulator, not assumed: random concrete states run through the
lifted z3 semantics and through Unicorn on the same bytes must leave the sequence the same way, with
the same registers and the same counter."""

import random
import struct

import pytest
import z3
from emulate import run_until_it_leaves
from unicorn import UC_ARCH_X86, UC_MODE_64, UC_PROT_ALL, Uc

from tcfuzz import jit_new, jit_old
from tcfuzz.analysis.kernel_replay import UC_REGS
from tcfuzz.analysis.lifter import JUMP, OUT, LiftError, Sequence, State, run
from tcfuzz.analysis.prove import Config, prove, site_sequence
from tcfuzz.model.layout import indirect_thunk
from tcfuzz.model.profile import PRESETS

ARRAY, PROG, STACK, LANDING = 0x10_0000_0000, 0x20_0000, 0x40_0000, 0x7000_0000


def concrete_state(rng, cfg, profile):
    """Registers and the memory cells a tail-call sequence can read, with values that take every path."""
    rbp = STACK + 0x8000
    frame = (cfg.stack_depth + 7) // 8 * 8
    idx = rng.choice([0, 1, 3, 4, 5, rng.randrange(0, 300)])
    rdx = idx | (rng.choice([0, 1 << 32, 0xFFFF_0000_0000_0000]) if rng.random() < 0.3 else 0)
    me = rng.choice([4, 1, 5, 300])
    count = rng.choice([0, 31, 32, 33, 34])
    target = LANDING + 16 * rng.randrange(1, 100)
    prog = PROG + 0x100 * rng.randrange(1, 8) if rng.random() < 0.7 else 0
    pushed = {"none": 0, "some": 2, "all": 4, "boundary": 5}[cfg.callee]
    regs = {r: rng.getrandbits(64) for r in UC_REGS}
    regs.update(rsi=ARRAY, rdx=rdx, rbp=rbp, rsp=rbp - frame - 16 - 8 * pushed)
    cells = {
        ARRAY + profile.max_entries_off - 4: me << 32,  # max_entries: the cell's high half
        rbp - frame - 16: STACK + 0x100,  # tcc_ptr
        rbp - frame - 8: rng.choice([count, STACK + 0x100]),  # tcc (or a copy of tcc_ptr)
        STACK + 0x100: count,
    }
    for k in range(pushed):
        cells[regs["rsp"] + 8 * k] = rng.getrandbits(64)  # the saved callee registers
    for i in {idx, idx + 4, idx + me}:
        cells[ARRAY + profile.ptrs_off + 8 * i] = rng.choice([0, prog, target])
    cells[ARRAY + profile.ptrs_off + 8 * (idx & 0xFFFFFFFF)] = prog
    if prog:
        cells[prog + profile.bpf_func_off] = target - profile.tail_call_offset
    return regs, cells, rng.random() < 0.5


def lifted(seq, regs, cells):
    mem = z3.K(z3.BitVecSort(64), z3.BitVecVal(0, 64))
    for addr, value in cells.items():
        mem = z3.Store(mem, z3.BitVecVal(addr >> 3, 64), z3.BitVecVal(value, 64))
    state = State({r: z3.BitVecVal(v, 64) for r, v in regs.items()} | {"rdi": z3.BitVecVal(0, 64)}, mem)
    (exit_,) = [e for e in run(seq, state) if z3.is_true(z3.simplify(e.cond))]
    out = {r: z3.simplify(exit_.state.regs[r]).as_long() for r in ("rsp", "rbx", "rbp", "r12", "r13", "r14", "r15")}
    out["count"] = z3.simplify(z3.Select(exit_.state.mem, (STACK + 0x100) >> 3)).as_long()
    if exit_.kind == JUMP:
        out["to"] = ("jump", z3.simplify(exit_.target).as_long())
        out["rax"] = z3.simplify(exit_.state.regs["rax"]).as_long()
    else:
        out["to"] = ("out", exit_.kind - OUT)
    return out


def emulated(image, seq, regs, cells, filled, direct_target):
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    for base, size in (
        (ARRAY, 0x10000),
        (STACK, 0x10000),
        (PROG, 0x10000),
        (LANDING, 0x10000),
        (image.base, 0x10000),
        (indirect_thunk() & ~0xFFF, 0x1000),
    ):
        uc.mem_map(base, size, UC_PROT_ALL)
    uc.mem_write(image.base, image.code)
    for poke in image.pokes:
        bypass = b"\x0f\x1f\x44\x00\x00" if filled else bytes(image.code[poke.tailcall_bypass - image.base :][:5])
        jmp = b"\xe9" + struct.pack("<i", direct_target - (poke.tailcall_target + 5))
        uc.mem_write(poke.tailcall_bypass, bypass)
        uc.mem_write(poke.tailcall_target, jmp if filled else b"\x0f\x1f\x44\x00\x00")
    for addr, value in cells.items():
        uc.mem_write(addr, struct.pack("<Q", value))
    for r, v in regs.items():
        uc.reg_write(UC_REGS[r], v)
    pc = run_until_it_leaves(uc, seq)
    out = {r: uc.reg_read(UC_REGS[r]) for r in ("rsp", "rbx", "rbp", "r12", "r13", "r14", "r15")}
    out["count"] = struct.unpack("<Q", uc.mem_read(STACK + 0x100, 8))[0]
    if pc == indirect_thunk():
        out["to"] = ("jump", uc.reg_read(UC_REGS["rcx"]))
    elif image.base <= pc < image.base + 0x10000:
        out["to"] = ("out", pc - seq.end)
    else:
        out["to"] = ("jump", pc)
    if out["to"][0] == "jump":
        out["rax"] = uc.reg_read(UC_REGS["rax"])
    return out


CONFIGS = [
    Config(p, k, d, c)
    for p in ("default", "ibt", "retpoline", "lfence", "sls")
    for k in ("static", "dynamic", "direct")
    for d, c in ((0, "none"), (20, "all"))
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
@pytest.mark.parametrize("codegen", [jit_old.CODEGEN, jit_new.CODEGEN], ids=lambda c: c.name)
def test_lifter_agrees_with_unicorn(cfg, codegen):
    rng = random.Random(hash((cfg.name, codegen.name)) & 0xFFFF)
    profile = PRESETS[cfg.profile]
    kinds = set()
    for _ in range(40):
        seq, image = site_sequence(codegen, cfg)
        regs, cells, filled = concrete_state(rng, cfg, profile)
        target = LANDING + 0x800
        for poke in image.pokes:  # the two poke sites in the state `filled` says
            seq.pokes[poke.tailcall_bypass] = (z3.BoolVal(not filled), None)
            seq.pokes[poke.tailcall_target] = (z3.BoolVal(filled), z3.BitVecVal(target, 64))
        a = lifted(seq, regs, cells)  # the poke states are already in seq.pokes
        b = emulated(image, seq, regs, cells, filled, target)
        assert a == b, (cfg.name, codegen.name, regs, cells, filled)
        kinds.add(a["to"][0])
    assert kinds == {"out", "jump"}, "the random states must take both ways out"


def test_unknown_instructions_fail_closed():
    seq = Sequence(bytes.fromhex("4889d00fa2"), 0x1000, 0x1005)  # mov rax, rdx; cpuid
    state = State(
        {r: z3.BitVec(r, 64) for r in UC_REGS} | {"rdi": z3.BitVec("rdi", 64)},
        z3.Array("m", z3.BitVecSort(64), z3.BitVecSort(64)),
    )
    with pytest.raises(LiftError, match=r"`cpuid ` \(0fa2\) is not a lifted form"):
        run(seq, state)


def test_planted_bug_gives_a_counterexample_that_replays():
    from tcfuzz.analysis.prove import replay
    from tcfuzz.selftest.mutants import BOUND_CHECK_JA

    r = prove(Config("default", "static", 8, "some"), jit_old.CODEGEN, BOUND_CHECK_JA, show_necessary=False)
    assert not r.proven
    world, verdict = replay(r.config, r.counterexample, jit_old.CODEGEN, BOUND_CHECK_JA)
    assert verdict.kind.value == "NEW_DIVERGES"
    assert r.counterexample["index"] & 0xFFFFFFFF == r.counterexample["max_entries"]  # index == max_entries
