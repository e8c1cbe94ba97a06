"""`tcfuzz mutants --systematic`: every single-instruction mutation of the patched codegen's tail-call
sequences and of its run-time maintenance, each fuzzed from nothing and, when it survives, proved.

Mutations (each a codegen plugin whose base is the patched codegen):

  emitter   per emitter line (an `Instr.source`) that emits into a tail-call sequence, applied to
            every instruction that line emits there: each jcc to every other condition; each
            immediate and displacement (jump offsets included) +-1 and +-8; the instruction
            dropped (its bytes become nops, so lengths and the pass loop are unchanged); the
            operands swapped (the ModRM direction bit of mov/cmp/add).
  decode    each field of patch 2/4's packed imm read one bit off (map index, dynamic flag, poke
            index + 1).
  cache     patch 1/4's cached word +-1, +-8 slots; the cached value +-1, +-8; a delete that
            keeps the old value; no cache write at all.
  poke      each text poke of bpf_tail_call_direct_fixup() and bpf_arch_poke_desc_update() left out.

The order of the cache write relative to the pokes is a member too (`cache_before_pokes`), but a
sequential machine cannot tell the two orders apart, so it is not in the score.

Kill: from an empty corpus, random fuzzer inputs (fuzz/gen/worlds.py decode_input: single worlds and
batches through the in-guest driver, as `tcfuzz fuzz` feeds them); a case the batch flags is re-run
per case, and the mutant is killed by a world on which it diverges while its base agrees.
A survivor of the fuzzer goes to `tcfuzz prove` on the whole matrix. It is killed by prove when a
counterexample (or broken maintenance lemma, or JIT fault) replays under Unicorn: as a world on
which it diverges while its base agrees, or, where no world of the low guest layout can show it, as
its sequence run at the kernel's upper-half addresses with the base agreeing
(fuzz/analysis/kernel_replay.py). It is equivalent only if prove proves it on every configuration
where it differs (preconditions: only the kernel's guarantees, each named and shown necessary).
Score = killed / (total - proven equivalent).
"""

from __future__ import annotations

import functools
import random
import statistics
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import capstone

from tcfuzz.jit_new import PatchedCodegen
from tcfuzz.jit_new.imm import decode_tail_call_imm
from tcfuzz.jit_new.jit import PatchedX86Jit
from tcfuzz.jit_old import LegacyCodegen
from tcfuzz.model.bpf import R6, R7, R8, R9, s32
from tcfuzz.model.layout import image_base
from tcfuzz.model.profile import PRESETS
from tcfuzz.model.sample import SampleConfig, SiteKind, tail_call_sites, verified_sample
from tcfuzz.selftest.mutants import decode_codegen

PATCH = PatchedCodegen()
LEGACY = LegacyCodegen()
_CS = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
_CS.detail = True
CONDITIONS = ("o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g")
SWAPPABLE = {0x89: 0x8B, 0x8B: 0x89, 0x39: 0x3B, 0x3B: 0x39, 0x01: 0x03, 0x03: 0x01}  # direction bit


@dataclass(frozen=True)
class Mutation:
    id: str  # "emit/tail_call.py:47/jcc->ja", "cache/slot+1", ...
    family: str  # emitter, decode, cache, poke
    codegen: object


# --- emitter mutations -----------------------------------------------------------------------------


def emitted_lines() -> dict[tuple[str, int], tuple[bytes, str]]:
    """Every emitter line that emits into a tail-call sequence of the patched codegen, over every site
    kind, profile and frame shape: source -> (one instruction's bytes, its asm comment)."""
    lines: dict[tuple[str, int], tuple[bytes, str]] = {}
    for profile in ("default", "ibt", "retpoline", "lfence", "sls"):
        for kinds in ((SiteKind.STATIC,), (SiteKind.DYNAMIC,), (SiteKind.DIRECT,)):
            for depth, regs, boundary in ((0, (), False), (20, (R6, R7, R8, R9), False), (8, (), True)):
                cfg = SampleConfig(kinds, 4, 1, depth, regs, exception_boundary=boundary)
                image = PATCH.jit(verified_sample(cfg, PATCH, PRESETS[profile]), PRESETS[profile], image_base(0))
                for lo, hi in tail_call_sites(image):
                    for ins in image.instrs_in(lo, hi):
                        lines.setdefault(ins.source, (ins.data, ins.asm))
    return lines


def byte_edits(data: bytes) -> list[tuple[str, Callable[[bytes], bytes]]]:
    """The single-instruction mutations of one instruction, as (name, bytes -> bytes of equal length)."""
    insn = next(_CS.disasm(data, 0x1000))
    edits: list[tuple[str, Callable[[bytes], bytes]]] = []
    if 0x70 <= data[0] <= 0x7F:  # jcc rel8
        for cc, name in enumerate(CONDITIONS):
            if cc != data[0] - 0x70:
                edits.append((f"j{CONDITIONS[data[0] - 0x70]}->j{name}", functools.partial(_set_condition, cc)))
    for what, off, size in (("imm", insn.imm_offset, insn.imm_size), ("disp", insn.disp_offset, insn.disp_size)):
        if size and size in (1, 4):
            fmt = "<b" if size == 1 else "<i"
            for delta in (1, -1, 8, -8):

                def edit(d, off=off, size=size, fmt=fmt, delta=delta):
                    value = struct.unpack(fmt, d[off : off + size])[0] + delta
                    bits = 8 * size
                    value = (value + (1 << (bits - 1))) % (1 << bits) - (1 << (bits - 1))  # wraps like the field
                    return d[:off] + struct.pack(fmt, value) + d[off + size :]

                edits.append((f"{what}{delta:+d}", edit))
    edits.append(("drop", lambda d: b"\x90" * len(d)))
    rex = 1 if 0x40 <= data[0] <= 0x4F else 0
    if (
        len(data) > rex + 1
        and data[rex] in SWAPPABLE
        and not (data[rex + 1] >> 6 == 3 and (data[rex + 1] >> 3) & 7 == data[rex + 1] & 7)
    ):
        edits.append(("swap", functools.partial(_swap_direction, rex)))
    return edits


def _set_condition(cc: int, d: bytes) -> bytes:
    return bytes([0x70 | cc]) + d[1:]


def _swap_direction(rex: int, d: bytes) -> bytes:
    return d[:rex] + bytes([SWAPPABLE[d[rex]]]) + d[rex + 1 :]


def _line_name(source: tuple[str, int]) -> str:
    path = source[0].replace("\\", "/").split("/")
    return f"{path[-2]}/{path[-1]}:{source[1]}"


def emitter_codegen(source: tuple[str, int], name: str, edit: Callable[[bytes], bytes]) -> PatchedCodegen:
    """The patched codegen with every instruction emitted by `source` in a tail-call sequence edited."""

    class Jit(PatchedX86Jit):
        def emit_tail_call(self, p, prog, insn, ip, callee_regs_used, stack_depth, ctx):
            first = len(p.instrs)
            super().emit_tail_call(p, prog, insn, ip, callee_regs_used, stack_depth, ctx)
            for k in range(first, len(p.instrs)):
                ins = p.instrs[k]
                if ins.source == source:
                    new = edit(ins.data)
                    p.code[ins.offset : ins.offset + len(new)] = new
                    p.instrs[k] = type(ins)(ins.offset, new, ins.source)

    return type("EmitterMutant", (PatchedCodegen,), {"name": name, "jit_class": Jit})()


def emitter_mutations() -> list[Mutation]:
    out = []
    for source, (data, asm) in sorted(emitted_lines().items()):
        for edit_name, edit in byte_edits(data):
            mid = f"emit/{_line_name(source)} `{asm}`/{edit_name}"
            out.append(Mutation(mid, "emitter", emitter_codegen(source, mid, edit)))
    return out


# --- imm decode mutations --------------------------------------------------------------------------


def decode_mutations() -> list[Mutation]:
    def shifted(field_: str, by: int):
        def decode(imm32):
            imm = s32(imm32)
            m, d, i = decode_tail_call_imm(imm)
            if field_ == "map_index":
                m = (imm >> by) & 0xFF
            elif field_ == "dynamic":
                d = bool((imm >> (8 + by)) & 0xFF)
            else:
                i = imm >> (16 + by)
            return m, d, i

        return decode

    specs = [("map_index", 1), ("dynamic", -1), ("dynamic", 1), ("imm16", -1), ("imm16", 1)]
    return [
        Mutation(f"decode/{f} shifted {b:+d}", "decode", decode_codegen(f"decode-{f}{b:+d}", shifted(f, b))) for f, b in specs
    ]


# --- cache and poke maintenance mutations ----------------------------------------------------------


def _member_mutant(name: str, **members) -> PatchedCodegen:
    return type("MaintenanceMutant", (PatchedCodegen,), {"name": name, **members})()


def maintenance_mutations() -> list[Mutation]:
    base = PatchedCodegen
    out = []
    for d in (1, -1, 8, -8):
        out.append(
            Mutation(
                f"cache/slot{d:+d}",
                "cache",
                _member_mutant(f"cache-slot{d:+d}", cache_slot=lambda self, me, alloc, key, d=d: me + key + d),
            )
        )
        out.append(
            Mutation(
                f"cache/value{d:+d}",
                "cache",
                _member_mutant(
                    f"cache-value{d:+d}",
                    cached_target=lambda self, f, old, pr, d=d: f + pr.tail_call_offset + d if f is not None else 0,
                ),
            )
        )
    out.append(
        Mutation(
            "cache/delete keeps old",
            "cache",
            _member_mutant(
                "cache-delete-keeps",
                cached_target=lambda self, f, old, pr: old if f is None else base.cached_target(self, f, old, pr),
            ),
        )
    )
    out.append(
        Mutation("cache/never written", "cache", _member_mutant("cache-never", cached_target=lambda self, f, old, pr: old))
    )

    def drop_poke(which: str, n: int):
        """poke_desc_update()/direct_fixup() with their n-th text poke (0-based) left out."""

        def skipping(text_poke):
            count = [0]

            def tp(ip, old, new):
                count[0] += 1
                return 0 if count[0] - 1 == n else text_poke(ip, old, new)

            return tp

        if which == "fixup":
            return {
                "direct_fixup": lambda self, poke, target, text_poke: base.direct_fixup(self, poke, target, skipping(text_poke))
            }
        return {
            "poke_desc_update": lambda self, poke, new, old, text_poke: base.poke_desc_update(
                self, poke, new, old, skipping(text_poke) if (new is None) == (which == "delete") else text_poke
            )
        }

    for which, pokes in (("fixup", ("target", "bypass")), ("update", ("target", "bypass")), ("delete", ("bypass", "target"))):
        for n, what in enumerate(pokes):
            out.append(
                Mutation(
                    f"poke/{which} without the {what} poke",
                    "poke",
                    _member_mutant(f"poke-{which}-no-{what}", **drop_poke(which, n)),
                )
            )
    return out


def all_mutations() -> list[Mutation]:
    return emitter_mutations() + decode_mutations() + maintenance_mutations()


# The survivors of the last full run (README: the systematic score) that are neither killed (by the
# fuzzer or by a replaying counterexample of prove) nor proven equivalent. None since the full run of
# 2026-12-02 afternoon; a survivor outside this set is a regression.
KNOWN_SURVIVORS: frozenset[str] = frozenset()


# --- running ---------------------------------------------------------------------------------------


@dataclass
class Outcome:
    id: str
    family: str
    killed: bool
    seconds: float
    inputs: int
    signature: str = ""
    proof: str = ""  # for fuzz survivors: "equivalent" (proved on the matrix) or what prove found
    by: str = ""  # "fuzz", or "prove <configuration>" (its counterexample replayed as a killing world)

    def to_json(self) -> dict:
        return dict(self.__dict__)


def hunt(mutant, budget: float, seed: int, max_inputs: int | None = None) -> tuple[bool, float, int, str]:
    """Fuzz one mutant from nothing (no corpus) for `budget` seconds or `max_inputs` inputs, whichever
    ends first: (killed, seconds, inputs, signature)."""
    from tcfuzz.selftest.kill import fuzz_inputs, killing_world

    rng = random.Random(seed)
    started = time.monotonic()
    generated = fuzz_inputs(rng)
    inputs = [0]

    def worlds():
        while max_inputs is None or inputs[0] < max_inputs:
            inputs[0] += 1
            yield inputs[0], generated(mutant, PATCH)

    found = killing_world(mutant, PATCH, worlds(), budget, started)
    return found is not None, time.monotonic() - started, inputs[0], found[2] if found else ""


def equivalence(mutant, quick: bool = False, family: str = "") -> tuple[str, tuple[str, str] | None]:
    """Prove a survivor against the legacy codegen on every configuration of the matrix (`quick`: the
    quick one) where it makes a difference: ('equivalent', None) when every one is proven; else, when a
    counterexample, broken lemma or JIT fault of some configuration replays under Unicorn as a world
    on which the mutant diverges while its base agrees, or, where no world shows it, the
    counterexample's sequence run with the kernel's upper-half addresses does
    (fuzz/analysis/kernel_replay.py), (what prove found, (configuration, signature)): a kill; else
    (the first configuration not proven, None). A configuration where the mutant emits the patch's
    very bytes and keeps the maintenance lemma is skipped. A mutant no configuration exercises is
    equivalent only if it decodes the imm and emits the patch's bytes over the verifier's whole
    domain (decode_domain, proved where they differ: decode mutants only, the map index being the
    imm's); otherwise it is not called equivalent."""
    from tcfuzz.analysis.kernel_replay import replay_at_kernel_addresses
    from tcfuzz.analysis.prove import lemmas, matrix, prove, replay_candidates, site_sequence
    from tcfuzz.selftest.kill import killing_world

    exercised, refuted, first = 0, 0, None
    configs = matrix(quick=quick) + (decode_domain(mutant) if family == "decode" else [])
    for cfg in configs:
        try:
            same = site_sequence(mutant, cfg)[0].code == site_sequence(PATCH, cfg)[0].code
        except Exception:  # the mutant does not JIT here: prove says how
            same = False
        if same and lemmas(cfg, LEGACY, mutant)[1] is None:
            continue
        exercised += 1
        r = prove(cfg, LEGACY, mutant, show_necessary=False)
        if r.proven:
            continue
        first = first or f"{r.verdict} on {cfg.name}"
        refuted += 1
        if refuted > REPLAY_TRIES:  # not equivalent; its counterexamples do not replay: stop looking
            break
        for what, _values, worlds in replay_candidates(r):
            found = killing_world(mutant, PATCH, [(cfg.name, worlds)], float("inf"), time.monotonic())
            if found is not None:
                return f"{r.verdict} on {cfg.name} ({what}), replayed", (cfg.name, found[2])
        if r.counterexample is not None:  # no world shows it: the kernel's own (upper-half) addresses may
            signature = replay_at_kernel_addresses(cfg, r.counterexample, LEGACY, mutant, PATCH)
            if signature is not None:
                return f"{r.verdict} on {cfg.name}, replayed at kernel addresses", (cfg.name, signature)
    if first:
        return first, None
    if exercised:
        return "equivalent", None
    if family == "decode":  # the patch's very bytes for every imm the verifier produces
        return f"equivalent ({USED_MAPS_PRECONDITION}: the patch's bytes at every map index)", None
    return "not exercised by the proved matrix", None


USED_MAPS_PRECONDITION = "used-maps-at-most-64"
REPLAY_TRIES = 8  # configurations whose counterexample is tried as a killing world, per survivor


def decode_domain(mutant) -> list:
    """Configurations for the imm-decode domain the verifier produces: a static and a dynamic site at
    every map index `used_maps` can hold in this sample shape (1..MAX_USED_MAPS - 2: the target has
    a prog array on each side), in the default profile, wherever the mutant's bytes there differ from
    the patch's (one JIT each: cheap)."""
    from tcfuzz.analysis.prove import Config, site_sequence

    out = []
    for index in range(1, PRESETS["default"].max_used_maps - 1):
        for kind in ("static", "dynamic"):
            cfg = Config("default", kind, 0, "none", map_index=index)
            try:
                cfg.sample()
            except ValueError:  # more maps than used_maps holds (a dynamic site's poison array is one more)
                continue
            try:
                if site_sequence(mutant, cfg)[0].code == site_sequence(PATCH, cfg)[0].code:
                    continue
            except Exception:
                pass
            out.append(cfg)
    return out


def run(
    mutations: list[Mutation], budget: float, seed: int, prove_quick: bool = False, progress=None, max_inputs: int | None = None
) -> list[Outcome]:
    """Fuzz each mutation, prove each survivor (a counterexample that replays kills it);
    `progress(outcome)` after each (a long run shows its way)."""
    out = []
    for m in mutations:
        killed, seconds, inputs, signature = hunt(m.codegen, budget, seed, max_inputs)
        o = Outcome(m.id, m.family, killed, seconds, inputs, signature, by="fuzz" if killed else "")
        if not killed:
            started = time.monotonic()
            o.proof, kill = equivalence(m.codegen, quick=prove_quick, family=m.family)
            if kill is not None:
                o.killed, o.by, o.signature = True, f"prove {kill[0]}", kill[1]
                o.seconds += time.monotonic() - started
        out.append(o)
        if progress is not None:
            progress(o)
    return out


def sample(mutations: list[Mutation], k: int, seed: int) -> list[Mutation]:
    """k mutations drawn reproducibly, at least one of each family."""
    rng = random.Random(seed)
    families = sorted({m.family for m in mutations})
    picked = [rng.choice([m for m in mutations if m.family == f]) for f in families]
    rest = [m for m in mutations if m not in picked]
    return picked + rng.sample(rest, max(0, min(k - len(picked), len(rest))))


@dataclass
class Score:
    total: int
    killed: int
    equivalent: int
    median_kill: float
    survivors: list[Outcome] = field(default_factory=list)

    @property
    def value(self) -> float:
        return self.killed / max(1, self.total - self.equivalent)


def score(outcomes: list[Outcome]) -> Score:
    killed = [o for o in outcomes if o.killed]
    equivalent = [o for o in outcomes if not o.killed and o.proof.startswith("equivalent")]
    return Score(
        len(outcomes),
        len(killed),
        len(equivalent),
        statistics.median(o.seconds for o in killed) if killed else 0.0,
        [o for o in outcomes if not o.killed],
    )


def render(outcomes: list[Outcome]) -> str:
    s = score(outcomes)
    by_family: dict[str, tuple[int, int]] = {}
    for o in outcomes:
        k, t = by_family.get(o.family, (0, 0))
        by_family[o.family] = (k + o.killed, t + 1)
    rows = [f"{'family':<10} killed/total"]
    rows += [f"{f:<10} {k}/{t}" for f, (k, t) in sorted(by_family.items())]
    by_prove = [o for o in outcomes if o.by.startswith("prove")]
    if by_prove:
        rows.append("\nkilled by prove (the fuzzer's survivors whose counterexample replays as a killing world):")
        rows += [f"  {o.id:<70} {o.by}: {o.signature}" for o in by_prove]
    if s.survivors:
        rows.append("\nsurvivors (the prover's word on each):")
        rows += [f"  {o.id:<70} {o.proof}" for o in s.survivors]
    rows.append(
        f"\nscore: {s.killed} killed / ({s.total} total - {s.equivalent} proven equivalent) = {100 * s.value:.1f} %; "
        f"median time to kill {s.median_kill:.2f} s ({len(outcomes) - len(s.survivors) - len(by_prove)} by the fuzzer, "
        f"{len(by_prove)} by prove)"
    )
    return "\n".join(rows)
