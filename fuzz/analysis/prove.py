"""`tcfuzz prove`: the legacy and the patched tail-call sequences end in the same observable state
for every input, per configuration, under explicit, named, minimal preconditions.

From one symbolic initial state (64-bit index in rdx, the prog array at rsi with symbolic
max_entries and contents, the counter behind the frame's tcc_ptr, every register and memory cell)
both sequences are lifted (fuzz/analysis/lifter.py) and their exits merged. The claim: the way out (the
sequence end, or a jump), the jump target, rax (the count handed to the callee), rsp, the
callee-saved registers and all of memory agree. z3 either proves it or gives a counterexample.

Where the patch bakes max_entries in, it is a symbolic 32-bit ME with the kernel's C arithmetic:
`cmp edx, ME` and disp32 = (int)(offsetof(ptrs) + (u64)ME * 8), sign-extended by the CPU. Both
expressions are checked against the emitter's concrete bytes before use.

Preconditions (each shown necessary by dropping it and asking z3 for a counterexample):
    baked-max-entries   the ME baked into the code is the array's max_entries field
    cached-target       ptrs[ME + i] = ptrs[i] ? ptrs[i]->bpf_func + X86_TAIL_CALL_OFFSET : 0, for the i read
    disp-fits-int       offsetof(ptrs) + ME * 8 <= INT_MAX  (a range: its boundary is reported)
    entry-not-null      a program's bpf_func + X86_TAIL_CALL_OFFSET is not 0 (the cache's 0 means empty)
    counter-not-prog    the counter cell is not the target program's bpf_func cell (distinct objects)
Static sites need all five; dynamic and direct sites need none (their sequences do the same loads).
One more is added only where a claim needs it (no built-in pair does), with the counterexample
without it kept as its necessity:
    counter-at-most-max the count behind tcc_ptr is <= MAX_TAIL_CALL_CNT on entry: the prologue starts
                        it at 0 and every increment is guarded by the check. It is used only after z3
                        shows that the reference keeps it (from a count <= MAX, the counter cell after
                        the sequence is <= MAX), so the induction does not rest on the codegen under test.
Modelling assumptions, not preconditions: qword accesses are 8-aligned (8-byte memory cells).

That is the x86-64 claim (`Claim`). An arm64 profile's configuration gets prove_arm64.Arm64Claim
(the A64 lifter, x1/x2/x26, the s32 offset of emit_a64_add_i() as `offset-fits-s32`), through
`claim_for()`; the matrix, necessity, boundary, lemmas and replays here serve both.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass, field

import z3
from capstone.x86 import X86_OP_IMM

from tcfuzz.analysis.lifter import JUMP, LiftError, MachineState, Sequence, State, initial_state, load, merge, run
from tcfuzz.analysis.maintenance import Violation, prove_cache, prove_pokes, violation_worlds
from tcfuzz.model.bpf import R6, R7, R8, R9
from tcfuzz.model.interfaces import Codegen, JitError
from tcfuzz.model.layout import image_base
from tcfuzz.model.profile import PRESETS, KernelProfile
from tcfuzz.model.sample import SampleConfig, SiteKind, tail_call_sites, verified_sample

INT_MAX = 2**31 - 1
COUNTER_BOUNDED = "counter-at-most-max"
CALLEE = ("rbx", "rbp", "r12", "r13", "r14", "r15")
ME0 = 4  # the concrete max_entries the sequences are JITed with


@dataclass(frozen=True)
class Config:
    profile: str
    kind: str  # static, dynamic, direct
    stack_depth: int
    callee: str  # none, some, all, boundary
    map_index: int = 0  # the site's map at used_maps[map_index], other prog arrays around it
    max_entries: int = ME0  # the map's max_entries the sequences are JITed with

    @property
    def name(self) -> str:
        return (
            f"{self.profile}/{self.kind}/sd{self.stack_depth}/{self.callee}"
            + (f"/map{self.map_index}" if self.map_index else "")
            + (f"/me{self.max_entries}" if self.max_entries != ME0 else "")
        )

    @property
    def arch(self) -> str:
        return PRESETS[self.profile].arch

    def sample(self) -> SampleConfig:
        regs = {"none": (), "some": (R6, R8), "all": (R6, R7, R8, R9), "boundary": ()}[self.callee]
        return SampleConfig(
            sites=(SiteKind(self.kind),),
            max_entries=self.max_entries,
            key=1,
            stack_depth=self.stack_depth,
            callee_regs=regs,
            exception_boundary=self.callee == "boundary",
            map_index=self.map_index,
        )


@dataclass
class Result:
    config: Config
    proven: bool
    preconditions: list[str]
    seconds: float
    counterexample: dict | None = None
    necessary: dict[str, dict | None] = field(default_factory=dict)  # precondition -> counterexample without it
    boundary: dict | None = None
    lemmas: dict[str, str] = field(default_factory=dict)  # lemma -> "proven" or what breaks it
    violation: Violation | None = None  # a broken lemma, as map operations
    jit_fault: str | None = None  # the codegen under test failed to JIT the configuration
    not_lifted: str | None = None  # an instruction outside the lifted forms: neither proven nor refuted

    @property
    def verdict(self) -> str:
        if self.proven:
            return "PROVEN"
        return "JIT_FAULT" if self.jit_fault else "NOT_LIFTED" if self.not_lifted else "COUNTEREXAMPLE"

    def to_json(self) -> dict:
        return {
            "config": self.config.name,
            "result": self.verdict,
            "lemmas": self.lemmas,
            "jit_fault": self.jit_fault,
            "preconditions": self.preconditions,
            "seconds": round(self.seconds, 3),
            "counterexample": self.counterexample,
            "necessary": self.necessary,
            "boundary": self.boundary,
        }


def baked_site_preconditions(
    s: MachineState, p: KernelProfile, array, index, me, counter_ptr, range_name: str
) -> dict[str, z3.BoolRef]:
    """The five facts a site with max_entries baked in (x86-64 static, arm64 static and constant-key)
    needs from the rest of the kernel, over the sequence's array and index registers, the symbolic
    baked ME and the counter's address."""
    idx = z3.ZeroExt(32, z3.Extract(31, 0, index))
    prog = load(s, array + p.ptrs_off + idx * 8, 8)
    me64 = z3.ZeroExt(32, me)
    cache = load(s, array + p.ptrs_off + (me64 + idx) * 8, 8)
    bpf_func = load(s, prog + p.bpf_func_off, 8)
    return {
        "baked-max-entries": load(s, array + p.max_entries_off, 4) == me,  # the verifier read the map's own
        "cached-target": z3.Implies(z3.ULT(idx, me64), cache == z3.If(prog != 0, bpf_func + p.tail_call_offset, 0)),
        range_name: z3.ULE(me64 * 8 + p.ptrs_off, INT_MAX),
        "entry-not-null": z3.Implies(prog != 0, bpf_func + p.tail_call_offset != 0),
        "counter-not-prog": z3.LShR(counter_ptr, 3) != z3.LShR(prog + p.bpf_func_off, 3),
    }


def site_sequence(codegen: Codegen, cfg: Config) -> tuple[Sequence, object]:
    profile = PRESETS[cfg.profile]
    prog = verified_sample(cfg.sample(), codegen, profile)
    image = codegen.jit(prog, profile, image_base(0))
    lo, hi = tail_call_sites(image)[0]
    return Sequence(image.code[lo:hi], image.base + lo, image.base + hi), image


class Claim:
    """The symbolic setting shared by both sequences of one x86-64 configuration (arm64:
    prove_arm64.Arm64Claim, with the same interface)."""

    range_precondition = "disp-fits-int"

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.profile: KernelProfile = PRESETS[cfg.profile]
        self.s0 = initial_state()
        self.me = z3.BitVec("max_entries", 32)
        self.filled = z3.Bool("slot_filled")  # direct: the poke state
        self.direct_target = z3.BitVec("direct_target", 64)  # direct: bpf_func + adj_off of the slot's program
        self.fixed_me = False  # a codegen whose baked fields are not the patch's
        self.me0 = cfg.max_entries

    # -- the patch's symbolic fields ---------------------------------------------------------------
    def disp(self) -> z3.BitVecRef:
        """(int)(offsetof(ptrs) + (u64)ME * 8), sign-extended to 64 bits by the CPU."""
        wide = z3.BitVecVal(self.profile.ptrs_off, 64) + z3.ZeroExt(32, self.me) * 8
        return z3.SignExt(32, z3.Extract(31, 0, wide))

    def patch_fields(self, seq: Sequence) -> bool:
        """Make the baked imm32 and disp32 symbolic, where the concrete bytes are exactly what the
        patch's C arithmetic gives for the JITed max_entries. Returns False (and leaves the bytes concrete) when they are
        not: such a codegen is then proved for that max_entries only."""
        from tcfuzz.analysis.lifter import decode

        concrete_disp = z3.simplify(z3.substitute(self.disp(), (self.me, z3.BitVecVal(self.me0, 32)))).as_signed_long()
        fields = {}
        for insn in decode(seq):
            ops = insn.operands
            is_imm = ops[1].type == X86_OP_IMM if len(ops) > 1 else False
            if insn.mnemonic == "cmp" and insn.op_str.startswith("edx, ") and is_imm and ops[1].imm == self.me0:
                fields[insn.address] = {"imm": self.me}
            if insn.mnemonic == "mov" and "rdx*8" in insn.op_str and ops[1].mem.disp == concrete_disp:
                fields[insn.address] = {"disp": self.disp()}
        if len(fields) != 2:
            return False
        seq.fields.update(fields)
        return True

    def direct_pokes(self, seq: Sequence, image) -> None:
        poke = image.pokes[0]
        seq.pokes[poke.tailcall_bypass] = (z3.Not(self.filled), None)
        seq.pokes[poke.tailcall_target] = (self.filled, self.direct_target)

    # -- the named preconditions -------------------------------------------------------------------
    def preconditions(self) -> dict[str, z3.BoolRef]:
        s, p = self.s0, self.profile
        if self.cfg.kind != "static":
            return {}
        return baked_site_preconditions(s, p, s.regs["rsi"], s.regs["rdx"], self.me, self.tcc_ptr(), "disp-fits-int")

    def tcc_ptr(self) -> z3.BitVecRef:
        s = self.s0
        return load(s, s.regs["rbp"] - 16 - ((self.cfg.stack_depth + 7) // 8 * 8), 8)

    def counter_bounded(self) -> z3.BoolRef:
        """counter-at-most-max: the count on entry is at most MAX_TAIL_CALL_CNT."""
        return z3.ULE(load(self.s0, self.tcc_ptr(), 8), self.profile.max_tail_call_cnt)

    def keeps_counter_bounded(self, outcome: dict, pre: list[z3.BoolRef]) -> bool:
        """The induction step of counter-at-most-max for one codegen's sequence: from a count <= MAX
        (and the other preconditions), the counter cell after it is <= MAX too."""
        after = load(lifter_state(self.s0, outcome["mem"]), self.tcc_ptr(), 8)
        solver = z3.Solver()
        solver.add(*pre, self.counter_bounded(), z3.Not(z3.ULE(after, self.profile.max_tail_call_cnt)))
        return solver.check() == z3.unsat

    # -- the claim ----------------------------------------------------------------------------------
    def outcomes(self, codegen: Codegen) -> dict[str, z3.ExprRef]:
        seq, image = site_sequence(codegen, self.cfg)
        if codegen.cached_targets and self.cfg.kind == "static" and not self.patch_fields(seq):
            self.fixed_me = True
        if self.cfg.kind == "direct":
            self.direct_pokes(seq, image)
        exits = run(seq, self.s0.copy())
        zero = z3.BitVecVal(0, 64)
        out = {
            "exit": merge(exits, lambda e: z3.BitVecVal(e.kind, 32)),
            "target": merge(exits, lambda e: e.target if e.kind == JUMP else zero),
            "rax": merge(exits, lambda e: e.state.regs["rax"] if e.kind == JUMP else zero),
            "rsp": merge(exits, lambda e: e.state.regs["rsp"]),
            "mem": merge(exits, lambda e: e.state.mem),
        }
        for r in CALLEE:
            out[r] = merge(exits, lambda e, r=r: e.state.regs[r])
        return out

    def differences(self, old: Codegen, new: Codegen) -> z3.BoolRef:
        a, b = self.outcomes(old), self.outcomes(new)
        self.reference = a
        return z3.Or([a[k] != b[k] for k in a])

    def model_values(self, m: z3.ModelRef) -> dict:
        s = self.s0
        ev = lambda e: m.eval(e, model_completion=True).as_long()
        p = self.profile
        rdx = ev(s.regs["rdx"])
        idx = rdx & 0xFFFFFFFF
        rsi = s.regs["rsi"]
        prog = load(s, rsi + p.ptrs_off + z3.BitVecVal(idx, 64) * 8, 8)
        tcc_ptr = self.tcc_ptr()
        return {
            "index": rdx,
            "max_entries": ev(self.me) if self.cfg.kind == "static" else ev(load(s, rsi + p.max_entries_off, 4)),
            "max_entries_field": ev(load(s, rsi + p.max_entries_off, 4)),
            "slot": ev(prog),
            "count": ev(load(s, tcc_ptr, 8)),
            "slot_filled": bool(m.eval(self.filled, model_completion=True)),
        }


def lifter_state(s0: State, mem: z3.ArrayRef) -> State:
    return State(s0.regs, mem)


def counterexample_worlds(cfg: Config, values: dict) -> list:
    """Concretisations of a counterexample as worlds for the normal executor, most literal first: the
    configuration's program and site, the array with the counterexample's max_entries field, the key
    and the count; the slot read filled when the counterexample's was, and then also slot 0 (whose
    cached target sits where a read one past the end lands) and the last slot; last, the JITed
    max_entries with slot 1 filled and called (z3's max_entries can hide what a small array shows)."""
    from tcfuzz.model.world import SCHEMA, World, WorldError

    sample = cfg.sample()
    index = values["index"]
    # x86-64: a direct site reads no max_entries and no index (its key is the sample's, 1). arm64 has
    # no direct tail calls: its constant-key site reads both, so the world's constant key is the
    # counterexample's index where the verifier keeps it constant (below max_entries), and else the
    # same static-path bytes are reached by a run-time key.
    poked = cfg.kind == "direct" and cfg.arch == "x86_64"
    me = cfg.max_entries if poked else (values["max_entries_field"] or 1)
    filled = values["slot_filled"] if poked else values["slot"] != 0
    key_slot = 1 if poked else index & 0xFFFFFFFF
    constant_key = cfg.kind == "direct" and (poked or index < me)  # the verifier keeps only such keys constant
    literal = {key_slot} if filled and key_slot < me else set()
    worlds = []
    for slots in (literal, literal | {0}, literal | {0, me - 1}):
        maps: list[dict] = [{"id": 0, "max_entries": me, "slots": {str(k): 1 for k in sorted(slots)}}]
        if cfg.map_index:  # the same used_maps[] as the proof's: other prog arrays around map 0
            others = [{"id": 10 + i, "max_entries": cfg.max_entries + 1 + i} for i in range(cfg.map_index + 1)]
            maps = others[: cfg.map_index] + maps + others[cfg.map_index :]
        site = {"maps": [0], "key": key_slot if constant_key else None}
        if cfg.kind == "dynamic":
            maps.append({"id": 1, "max_entries": 2})
            site = {"maps": [1, 0]}
        prog = {
            "id": 0,
            "stack_depth": cfg.stack_depth,
            "callee_regs": list(sample.callee_regs),
            "exception_boundary": sample.exception_boundary,
            "sites": [site],
        }
        ctx = [] if constant_key else [{"prog": 0, "site": 0, "key": index, **({"map": 0} if cfg.kind == "dynamic" else {})}]
        run = {"entry": 0, "ctx": ctx, "tail_call_cnt": min(values["count"], PRESETS[cfg.profile].max_tail_call_cnt)}
        try:
            worlds.append(
                World.from_json(
                    {"schema": SCHEMA, "profile": cfg.profile, "maps": maps, "programs": [prog, {"id": 1}], "runs": [run]}
                )
            )
        except WorldError:
            continue
    small = {**values, "max_entries_field": cfg.max_entries, "index": 1, "slot": 1, "slot_filled": True}
    if not poked and cfg.max_entries > 1 and values != small:  # last, the configuration's own array: slot 1 filled, called
        worlds += counterexample_worlds(cfg, small)[:1]
    return worlds


JIT_FAULT_VALUES = {"index": 1, "max_entries_field": ME0, "slot": 1, "count": 0, "slot_filled": True}


def replay(cfg: Config, values: dict, old: Codegen, new: Codegen):
    """The first concretisation that diverges under Unicorn: (world, verdict), or None."""
    return replay_worlds(counterexample_worlds(cfg, values), old, new)


def replay_worlds(worlds: list, old: Codegen, new: Codegen):
    """The first of `worlds` that diverges under Unicorn: (world, verdict), or None."""
    from tcfuzz.verdict.oracle import judge

    for world in worlds:
        verdict = judge(world, old=old, new=new).verdict
        if verdict.diverges:
            return world, verdict
    return None


def check(claim, diff: z3.BoolRef, pre: list[z3.BoolRef]) -> z3.ModelRef | None:
    """A model of the difference under `pre`, or None (proven). A claim may name states the kernel
    can reach (`plausible()`, e.g. a counter at most MAX_TAIL_CALL_CNT): a model within them is
    preferred, so that its world replays; without one, any model is a counterexample all the same."""
    solver = z3.Solver()
    solver.add(*pre, diff)
    if solver.check() != z3.sat:
        return None
    model = solver.model()
    extra: list[z3.BoolRef] = getattr(claim, "plausible", list)()
    if extra:
        solver.add(*extra)
        if solver.check() == z3.sat:
            model = solver.model()
    return model


def codegens_for(cfg: Config, old: Codegen, new: Codegen) -> tuple[Codegen, Codegen]:
    """The codegens that JIT the configuration's architecture: a default codegen's arm64 twin for an
    arm64 profile; any other codegen of the wrong architecture is a PluginError (never replaced)."""
    from tcfuzz.codegens import for_arch

    return for_arch(old, cfg.arch), for_arch(new, cfg.arch)


def claim_for(cfg: Config):
    """The configuration's Claim: x86-64 (this module) or arm64 (prove_arm64.Arm64Claim)."""
    if cfg.arch == "arm64":
        from tcfuzz.analysis.prove_arm64 import Arm64Claim

        return Arm64Claim(cfg, PRESETS[cfg.profile], cfg.max_entries, site_sequence)
    return Claim(cfg)


def lemmas(cfg: Config, old: Codegen, new: Codegen) -> tuple[dict[str, str], Violation | None]:
    """The maintenance lemmas the configuration's claim rests on (fuzz/analysis/maintenance.py), for
    both codegens: the cache for static sites, the poke state for direct ones. arm64 has no pokes:
    its constant-key ("direct") sites read the cache like static ones."""
    profile = PRESETS[cfg.profile]
    kinds = {"static": ("cache-maintained", prove_cache), "direct": ("poke-state", prove_pokes)}
    if cfg.arch == "arm64":
        kinds["direct"] = kinds["static"]
    lemma = kinds.get(cfg.kind)
    if lemma is None:
        return {}, None
    name, check_one = lemma
    for codegen in (old, new):
        v = check_one(codegen, profile)
        if v is not None:
            return {name: f"{codegen.name}: {v.detail}"}, v
    return {name: "proven"}, None


def _claim(cfg: Config, old: Codegen, new: Codegen):
    """(claim, difference, named preconditions) of one configuration; JitError/LiftError propagate."""
    claim = claim_for(cfg)
    diff = claim.differences(old, new)
    pre = claim.preconditions()
    if claim.fixed_me:
        pre["max-entries-is-the-jitted-one"] = claim.me == cfg.max_entries
    return claim, diff, pre


def prove(cfg: Config, old: Codegen, new: Codegen, show_necessary: bool = True) -> Result:
    started = time.perf_counter()
    old, new = codegens_for(cfg, old, new)
    try:
        claim, diff, pre = _claim(cfg, old, new)
    except JitError as e:  # a JIT fault of a codegen is a finding: the configuration cannot load
        return Result(cfg, False, [], time.perf_counter() - started, jit_fault=f"{type(e).__name__}: {e}")
    except LiftError as e:  # fail closed: not proven, and no counterexample either
        return Result(cfg, False, [], time.perf_counter() - started, not_lifted=str(e))
    proved, violation = lemmas(cfg, old, new)
    m = check(claim, diff, list(pre.values()))
    unbounded = None  # the counterexample without counter-at-most-max, where the claim needs it
    if isinstance(claim, Claim) and m is not None and claim.model_values(m)["count"] > claim.profile.max_tail_call_cnt:
        bounded = check(claim, diff, [*pre.values(), claim.counter_bounded()])
        if bounded is None and claim.keeps_counter_bounded(claim.reference, list(pre.values())):
            unbounded, m = claim.model_values(m), None
            pre[COUNTER_BOUNDED] = claim.counter_bounded()
    result = Result(cfg, m is None and violation is None, list(pre), 0.0, claim.model_values(m) if m is not None else None)
    result.lemmas, result.violation = proved, violation
    if unbounded is not None:
        result.necessary[COUNTER_BOUNDED] = unbounded
    if result.proven and show_necessary:
        for name in [n for n in pre if n not in result.necessary]:
            others = [v for k, v in pre.items() if k != name]
            cm = check(claim, diff, others)
            result.necessary[name] = claim.model_values(cm) if cm is not None else None
        bound = claim.range_precondition
        if bound in pre:
            limit = (INT_MAX - claim.profile.ptrs_off) // 8
            others = [v for k, v in pre.items() if k != bound]
            over = check(claim, diff, others + [claim.me == limit + 1])
            at = check(claim, diff, others + [claim.me == limit])
            result.boundary = {
                "precondition": bound,
                "max_entries_max": limit,
                "proven_at_max": at is None,
                "counterexample_at_max_plus_1": claim.model_values(over) if over is not None else None,
            }
            if cfg.arch == "arm64":
                result.boundary.update(boundary_from_bytes(cfg, old, new, limit))
    result.seconds = time.perf_counter() - started
    return result


def boundary_from_bytes(cfg: Config, old: Codegen, new: Codegen, limit: int) -> dict:
    """The boundary again, from the words the JIT really emits at max_entries = limit and limit + 1
    (arm64: there the helpers emit other forms than at ME0 -- a MOVZ/MOVK pair for max_entries, a
    MOVZ or MOVN, a MOVK and an ADD (register) for the offset -- and the lifter reads them as they
    are, no symbolic field)."""
    out: dict = {}
    for me, key in ((limit, "bytes_proven_at_max"), (limit + 1, "bytes_counterexample_at_max_plus_1")):
        at = dataclasses.replace(cfg, max_entries=me)
        try:
            claim, diff, pre = _claim(at, old, new)
        except (JitError, LiftError) as e:
            out[key] = f"{type(e).__name__}: {e}"
            continue
        if key == "bytes_proven_at_max":
            out[key] = check(claim, diff, list(pre.values())) is None
        else:
            others = [v for k, v in pre.items() if k != claim.range_precondition]
            m = check(claim, diff, others)
            out[key] = claim.model_values(m) if m is not None else None
    return out


ARM64_PROFILES = ["arm64", "arm64-bti", "arm64-pac", "arm64-bti-pac"]


def matrix(quick: bool = False, arch: str = "x86_64") -> list[Config]:
    """The proof matrix of an architecture. x86-64: 7 profiles; arm64: the 4 presets (BTI and PAC
    each on and off). Both: {static, dynamic, direct} x stack depth x callee-saved set, plus per
    profile a static site at used_maps[2] between prog arrays of other sizes."""
    if arch == "arm64":
        profiles = ARM64_PROFILES
        quick_profiles = ["arm64", "arm64-bti-pac"]
    else:
        profiles = ["default", "no-security", "ibt", "retpoline", "lfence", "sls", "ibt-sls"]
        quick_profiles = ["default", "ibt", "retpoline"]
    depths, callees = [0, 8, 20, 512], ["none", "some", "all", "boundary"]
    if quick:
        profiles, depths, callees = quick_profiles, [0, 20], ["none", "all"]
    configs = [Config(p, k, d, c) for p, k, d, c in itertools.product(profiles, ["static", "dynamic", "direct"], depths, callees)]
    return configs + [Config(p, "static", 0, "none", map_index=2) for p in profiles]  # the decoded map index matters


def replay_candidates(r: Result) -> list[tuple[str, dict, list]]:
    """What of a result can be replayed, as (what, values, worlds): the counterexample, the disp32
    boundary's, a broken lemma's map operations, a JIT fault's configuration."""
    cfg = r.config
    todo = [("counterexample", r.counterexample, counterexample_worlds(cfg, r.counterexample))] if r.counterexample else []
    b = r.boundary or {}
    for key, label in (
        ("counterexample_at_max_plus_1", "boundary + 1"),
        ("bytes_counterexample_at_max_plus_1", "boundary + 1, real bytes"),
    ):
        if isinstance(b.get(key), dict):
            todo.append((f"{b['precondition']} {label}", b[key], counterexample_worlds(cfg, b[key])))
    if r.violation is not None:
        v = r.violation
        todo.append((v.lemma, v.to_json(), violation_worlds(v, cfg.profile, v.lemma == "poke-state", cfg.stack_depth)))
    if r.jit_fault:
        todo.append(("jit fault", {"jit_fault": r.jit_fault}, counterexample_worlds(cfg, JIT_FAULT_VALUES)))
    return todo


def run_matrix(configs: list[Config], old: Codegen, new: Codegen, artifacts=None, specs: dict[str, str] | None = None) -> dict:
    """Prove every configuration. Necessity of each precondition and the offset boundary are shown
    once per profile (on its first static configuration). Every counterexample is replayed as a world
    under Unicorn (an arm64 profile's on Unicorn's arm64 engine) and, with `artifacts`, written as an
    artifact `tcfuzz repro` accepts."""
    from tcfuzz.triage.artifacts import write_artifact

    results, replays, seen_profiles = [], [], set()
    for cfg in configs:
        first_static = cfg.kind == "static" and cfg.profile not in seen_profiles
        if first_static:
            seen_profiles.add(cfg.profile)
        r = prove(cfg, old, new, show_necessary=first_static)
        results.append(r)
        for what, values, worlds in replay_candidates(r):
            got = replay_worlds(worlds, *codegens_for(cfg, old, new))
            entry = {
                "config": cfg.name,
                "what": what,
                "values": values,
                "reproduced": got is not None,
                "signature": got[1].signature if got else None,
                "artifact": None,
            }
            if got and artifacts is not None:
                entry["artifact"] = str(write_artifact(artifacts, got[0], got[1], prefix="prove-", codegens=specs))
            if got is None and what == "counterexample" and cfg.arch == "x86_64":  # the kernel's upper-half addresses may
                from tcfuzz.analysis.kernel_replay import replay_at_kernel_addresses

                entry["kernel_addresses"] = replay_at_kernel_addresses(cfg, values, old, new)
            replays.append(entry)
    return {"results": results, "replays": replays}


def render(report: dict) -> str:
    rows = [f"{'configuration':<34} {'result':<15} {'time':>6}  preconditions"]
    for r in report["results"]:
        rows.append(
            f"{r.config.name:<34} {r.verdict:<15} {r.seconds:5.2f}s  "
            + (", ".join(r.preconditions) or "none")
            + "".join(f"; {name}: {state}" for name, state in r.lemmas.items())
            + (f"; {r.jit_fault}" if r.jit_fault else "")
            + (f"; {r.not_lifted}" if r.not_lifted else "")
        )
    shown = [r for r in report["results"] if r.necessary]
    for r in shown:
        rows.append(f"\nnecessity on {r.config.name} (each precondition dropped in turn):")
        for name, values in r.necessary.items():
            rows.append(f"  without {name:<20} " + (f"counterexample {values}" if values else "still proven"))
        if r.boundary:
            b = r.boundary
            rows.append(
                f"  {b['precondition']} boundary: max_entries <= {b['max_entries_max']} "
                f"({'proven' if b['proven_at_max'] else 'NOT proven'} at {b['max_entries_max']}, "
                + ("counterexample" if b["counterexample_at_max_plus_1"] else "NO counterexample")
                + f" at {b['max_entries_max'] + 1})"
            )
            if "bytes_proven_at_max" in b:
                at, over = b["bytes_proven_at_max"], b["bytes_counterexample_at_max_plus_1"]
                rows.append(
                    "  the same from the bytes the JIT emits at each: "
                    + ("proven" if at is True else f"NOT proven ({at})" if isinstance(at, str) else "NOT proven")
                    + f" at {b['max_entries_max']}, "
                    + ("counterexample" if isinstance(over, dict) else f"NO counterexample ({over})")
                    + f" at {b['max_entries_max'] + 1}"
                )
    if report["replays"]:
        rows.append("\ncounterexamples replayed as worlds under Unicorn:")
        for e in report["replays"]:
            rows.append(
                f"  {e['config']:<34} {e['what']:<28} "
                + (
                    f"{e['signature']}" + (f"  {e['artifact']}" if e["artifact"] else "")
                    if e["reproduced"]
                    else f"no world; at kernel addresses {e['kernel_addresses']}"
                    if e.get("kernel_addresses")
                    else "DID NOT REPRODUCE"
                )
            )
    proven = sum(r.proven for r in report["results"])
    rows.append(f"\n{proven}/{len(report['results'])} configurations proven")
    return "\n".join(rows)
