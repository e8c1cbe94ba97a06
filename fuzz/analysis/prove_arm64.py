"""The claim of `tcfuzz prove` for an arm64 configuration (patch 3/4 against the legacy arm64 JIT):
fuzz/analysis/prove.py's Claim, with the A64 lifter (fuzz/analysis/lifter_arm64.py) and the arm64
calling convention of emit_bpf_tail_call() (arch/arm64/net/bpf_jit_comp.c):

    x0 = ctx, x1 = &bpf_array (BPF r2), x2 = index (r3), x26 = TCCNT_PTR (points at the counter)

From one symbolic initial state (every register, all of memory, a symbolic 32-bit ME where the
patch bakes max_entries in) both sequences are lifted and their exits merged. The claim: the way
out (the sequence's end, or `br`), the `br` target, sp, all of memory (which holds the count handed
on, at [x26]) and every register but two kinds agree. Not compared: the JIT's scratch registers
x10-x12 (TMP_REG_1..3: the callee enters at PROLOGUE_OFFSET and writes each before reading it, as
does the code after `out`), and BPF R0 and R2-R5 (x7, x1-x4), which the verifier marks unreadable
after the helper call (check_helper_call() resets the caller-saved R0-R5). R1 (x0, ctx) is compared:
the callee reads it. (The x86-64 claim compares fewer: rax, rsp and the callee-saved registers.)

The patch's baked fields, with the kernel's C arithmetic:
    `emit_a64_mov_i64(tmp, map->max_entries)`  x10 = (u64)ME              (a u32: zero-extended)
    `emit_a64_add_i(1, prg, prg, tmp, off)`    x11 += (s64)(s32)(offsetof(ptrs) + (u64)ME * 8)
The first is the emitter's word for word at ME0 (a MOVZ), the second its ADD immediate; for the
other values of ME, `tcfuzz limits --arch arm64` runs both helpers over each 16-bit half and shows
the same two formulas. The boundary is also proved from the real bytes the JIT emits at the largest
good ME and the first bad one (prove.py, `boundary_from_bytes`).

Preconditions of a static site (each shown necessary, as on x86-64):
    baked-max-entries   the ME in `mov w10, #ME` is the array's max_entries field
    cached-target       ptrs[ME + i] = ptrs[i] ? ptrs[i]->bpf_func + PROLOGUE_OFFSET * 4 : 0, for the i read
    offset-fits-s32     offsetof(ptrs) + ME * 8 <= S32_MAX (emit_a64_add_i()'s `const s32 imm`)
    entry-not-null      a program's bpf_func + PROLOGUE_OFFSET * 4 is not 0 (the cache's 0 means empty)
    counter-not-prog    the counter cell [x26] is not the target program's bpf_func cell
A constant-key ("direct") site needs the same five: arm64 has no direct tail calls, and patch 3/4
emits such a site on the static path. A dynamic site needs none (the same bytes).
"""

from __future__ import annotations

import z3

from tcfuzz.analysis.lifter import JUMP, Sequence
from tcfuzz.analysis.lifter_arm64 import decode, initial_state, load, run
from tcfuzz.analysis.prove import baked_site_preconditions

NOT_OBSERVED = {10, 11, 12} | {7, 1, 2, 3, 4}  # TMP_REG_1..3; BPF R0, R2..R5 (caller-saved, not R1 = ctx)
OBSERVED = tuple(f"x{n}" for n in range(31) if n not in NOT_OBSERVED) + ("sp",)
RANGE_PRECONDITION = "offset-fits-s32"
MOVZ_W10 = 0x52800000 | 10  # movz w10, #imm16 (shift 0): `emit_a64_mov_i64(tmp, max_entries)` below 2**16
ADD_X11_X11 = 0x91000000 | (11 << 5) | 11  # add x11, x11, #imm12 (no LSL #12)


class Arm64Claim:
    """The symbolic setting shared by both sequences of one arm64 configuration; the interface of
    prove.Claim."""

    range_precondition = RANGE_PRECONDITION

    def __init__(self, cfg, profile, me0: int, site_sequence) -> None:
        self.cfg = cfg
        self.profile = profile
        self.me0 = me0  # the max_entries the sequences are JITed with
        self.site_sequence = site_sequence  # prove.site_sequence: (codegen, cfg) -> (Sequence, image)
        self.s0 = initial_state()
        self.me = z3.BitVec("max_entries", 32)
        self.filled = z3.BoolVal(False)  # no poke sites on arm64
        self.fixed_me = False

    @property
    def baked(self) -> bool:
        """Does the patched sequence bake max_entries in? Static sites, and constant-key ones."""
        return self.cfg.kind in ("static", "direct")

    # -- the patch's symbolic fields ---------------------------------------------------------------
    def offset(self) -> z3.BitVecRef:
        """(s64)(s32)(offsetof(ptrs) + (u64)ME * 8): the size_t truncated to emit_a64_add_i()'s s32."""
        wide = z3.BitVecVal(self.profile.ptrs_off, 64) + z3.ZeroExt(32, self.me) * 8
        return z3.SignExt(32, z3.Extract(31, 0, wide))

    def patch_fields(self, seq: Sequence) -> bool:
        """Make the baked max_entries and offset symbolic where the words are exactly what the patch
        emits for me0: `movz w10, #me0` and `add x11, x11, #(ptrs_off + me0 * 8)`. Returns False (the
        words stay concrete; the codegen is proved at me0 only) when they are not."""
        off0 = self.profile.ptrs_off + self.me0 * 8
        fields = {}
        for address, word in decode(seq):
            if self.me0 < 1 << 16 and word == MOVZ_W10 | (self.me0 << 5):
                fields[address] = {"imm": z3.ZeroExt(32, self.me)}
            if off0 < 1 << 12 and word == ADD_X11_X11 | (off0 << 10):
                fields[address] = {"imm": self.offset()}
        if len(fields) != 2:
            return False
        seq.fields.update(fields)
        return True

    # -- the named preconditions -------------------------------------------------------------------
    def preconditions(self) -> dict[str, z3.BoolRef]:
        s, p = self.s0, self.profile
        if not self.baked:
            return {}
        return baked_site_preconditions(s, p, s.regs["x1"], s.regs["x2"], self.me, s.regs["x26"], RANGE_PRECONDITION)

    # -- the claim ----------------------------------------------------------------------------------
    def outcomes(self, codegen) -> dict[str, z3.ExprRef]:
        seq, _image = self.site_sequence(codegen, self.cfg)
        if codegen.cached_targets and self.baked and not self.patch_fields(seq):
            self.fixed_me = True
        exits = run(seq, self.s0.copy())
        zero = z3.BitVecVal(0, 64)
        value = lambda pick: _merge(exits, pick)
        out = {
            "exit": value(lambda e: z3.BitVecVal(e.kind, 32)),
            "target": value(lambda e: e.target if e.kind == JUMP else zero),
            "mem": value(lambda e: e.state.mem),
        }
        for r in OBSERVED:
            out[r] = value(lambda e, r=r: e.state.regs[r])
        return out

    def plausible(self) -> list[z3.BoolRef]:
        """What a counterexample should preferably satisfy to replay as a world: a counter the kernel
        can reach (a world starts a run with at most MAX_TAIL_CALL_CNT)."""
        return [z3.ULE(load(self.s0, self.s0.regs["x26"], 8), self.profile.max_tail_call_cnt)]

    def differences(self, old, new) -> z3.BoolRef:
        a, b = self.outcomes(old), self.outcomes(new)
        return z3.Or([a[k] != b[k] for k in a])

    def model_values(self, m: z3.ModelRef) -> dict:
        s, p = self.s0, self.profile
        ev = lambda e: m.eval(e, model_completion=True).as_long()
        x2 = ev(s.regs["x2"])
        idx = x2 & 0xFFFFFFFF
        x1 = s.regs["x1"]
        prog = load(s, x1 + p.ptrs_off + z3.BitVecVal(idx, 64) * 8, 8)
        field = ev(load(s, x1 + p.max_entries_off, 4))
        return {
            "index": x2,
            "max_entries": ev(self.me) if self.baked else field,
            "max_entries_field": field,
            "slot": ev(prog),
            "count": ev(load(s, s.regs["x26"], 8)),
            "slot_filled": False,
        }


def _merge(exits, pick) -> z3.ExprRef:
    value = pick(exits[-1])
    for e in reversed(exits[:-1]):
        value = z3.If(e.cond, pick(e), value)
    return value
