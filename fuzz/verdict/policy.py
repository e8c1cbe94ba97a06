"""The one verdict policy: whether a judged world agrees, diverges for a known cause, or diverges
unexplained, and what that means for a run. The fuzz target, `tcfuzz fuzz` (summary, JUnit, exit
status), `tcfuzz mutants`, the property suite and triage all ask here; nothing else decides.

A known cause is proved, never guessed from the world's shape: the codegen under test declares its
causes (`known_causes` on its own class, each a `KnownCause` with a repair), and a divergence is
attributed to cause X only if the same world, replayed under the X-repaired codegen, agrees. A single
cause is tried first, then all the declared causes together (a world can hold both of the patch's
defects). Only NEW_DIVERGES can have a cause: the legacy JIT and the reference declare none, so
OLD_DIVERGES, JITS_AGREE_MODEL_DIFFERS and ALL_DIFFER are always unexplained.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

from tcfuzz.codegens import for_arch
from tcfuzz.machine.engine import Engine
from tcfuzz.machine.executor import execute
from tcfuzz.model.interfaces import Codegen, KnownCause, VerdictKind
from tcfuzz.verdict.oracle import Judgement, decide


class Status(str, Enum):
    AGREE = "agree"  # legacy = patched = model on every run
    KNOWN = "known"  # diverges, and a declared cause's repaired codegen agrees
    UNEXPLAINED = "unexplained"  # diverges for no proved cause: a finding


@dataclass(frozen=True)
class Outcome:
    judgement: Judgement
    status: Status
    causes: tuple[str, ...] = ()

    @property
    def verdict(self):
        return self.judgement.verdict

    @property
    def counts(self) -> bool:
        """Fails a run even when known causes are ignored."""
        return self.status is Status.UNEXPLAINED

    @property
    def attribution(self) -> str:
        """One line for repro, triage and the summary."""
        if self.status is Status.AGREE:
            return "agree"
        if self.status is Status.KNOWN:
            return f"cause {'+'.join(self.causes)}: repaired codegen agrees"
        return "no known cause: " + _why_unexplained(self.verdict.kind)


def _why_unexplained(kind: VerdictKind) -> str:
    if kind is VerdictKind.NEW_DIVERGES:
        return "no declared cause's repaired codegen agrees"
    return f"{kind.value} has no cause (causes belong to the codegen under test)"


def declared_causes(codegen: Codegen) -> tuple[KnownCause, ...]:
    """The causes the codegen's own class (or the instance) declares; never a base class's."""
    causes = vars(codegen).get("known_causes") if hasattr(codegen, "__dict__") else None
    if causes is None:
        causes = vars(type(codegen)).get("known_causes", ())
    return tuple(causes)


_REPAIRED: dict[tuple[int, tuple[str, ...]], tuple[Codegen, Codegen]] = {}


def repaired(codegen: Codegen, causes: tuple[KnownCause, ...]) -> Codegen:
    """`codegen` with every defect in `causes` repaired (applied in declaration order); cached."""
    key = (id(codegen), tuple(c.name for c in causes))
    hit = _REPAIRED.get(key)
    if hit is None or hit[0] is not codegen:
        fixed = codegen
        for cause in causes:
            fixed = cause.repair(fixed)
        hit = _REPAIRED[key] = (codegen, fixed)
    return hit[1]


# Attributions already proved, by what determines them (attribution_key): a world judged again (the
# same case in another input of the fuzz loop, or twice in one batch) is not replayed again. Bounded
# LRU; TCFUZZ_ATTRIBUTION_CACHE=0 disables it.
ATTRIBUTION_CACHE = int(os.environ.get("TCFUZZ_ATTRIBUTION_CACHE", "4096"))
_ATTRIBUTIONS: OrderedDict[tuple, tuple[str, ...]] = OrderedDict()


def attribution_key(j: Judgement, new: Codegen, trials: list[tuple[KnownCause, ...]]) -> tuple:
    """Everything an attribution depends on: the world (its JSON, which includes the case), the
    observations the replay is compared with (legacy and model: the world's, under the order that
    produced them), and the code of the codegen under test and of every repaired codegen tried (their
    fingerprints, fuzz/machine/jit_cache.py: the code they run, never their names)."""
    from tcfuzz.machine.jit_cache import fingerprint

    world = json.dumps(j.world.to_json(), sort_keys=True, separators=(",", ":"))
    seen = (tuple(j.observations["legacy"]), tuple(j.observations["model"]))  # frozen dataclasses: compared by value
    fixed = tuple(fingerprint(repaired(new, t)) for t in trials)  # first: a repair may import what `new` reaches
    return (world, seen, fingerprint(new), fixed)


def attribute(j: Judgement, new: Codegen, engine: Engine | None = None) -> tuple[str, ...]:
    """The declared causes whose repair makes `j.world` agree (empty if none does). A cached result
    is that of a real replay of the same world under codegens running the same code."""
    if j.verdict.kind is not VerdictKind.NEW_DIVERGES:
        return ()
    new = for_arch(new, j.world.profile.arch)  # the codegen that ran: a default codegen's arm64 twin
    causes = declared_causes(new)
    trials = [(c,) for c in causes] + ([causes] if len(causes) > 1 else [])
    if not trials:
        return ()
    if ATTRIBUTION_CACHE <= 0:
        return _attribute(j, new, trials, engine)
    key = attribution_key(j, new, trials)
    hit = _ATTRIBUTIONS.get(key)
    if hit is not None:
        _ATTRIBUTIONS.move_to_end(key)
        return hit
    result = _ATTRIBUTIONS[key] = _attribute(j, new, trials, engine)
    while len(_ATTRIBUTIONS) > ATTRIBUTION_CACHE:
        _ATTRIBUTIONS.popitem(last=False)
    return result


def _attribute(j: Judgement, new: Codegen, trials, engine: Engine | None) -> tuple[str, ...]:
    for trial in trials:
        fixed = repaired(new, trial)
        if same_code(j.world, new, fixed):
            continue  # the repair changes no byte of this world and no maintenance: the divergence stays
        obs = dict(j.observations, patched=execute(j.world, fixed, engine))
        if not decide(obs).diverges:
            return tuple(c.name for c in trial)
    return ()


def same_code(world, codegen: Codegen, fixed: Codegen) -> bool:
    """`fixed` emits the same images as `codegen` for `world` (both through the JIT image cache) and
    keeps its run-time maintenance members, so it runs the world exactly as `codegen` did."""
    from tcfuzz.machine.executor import compile_world
    from tcfuzz.model.interfaces import OPTIONAL_MEMBERS

    def member(c: Codegen, name: str):
        value = getattr(c, name, None)
        return getattr(value, "__func__", value)

    if type(fixed) is not type(codegen) or any(member(fixed, n) is not member(codegen, n) for n in OPTIONAL_MEMBERS):
        return False
    try:
        a, b = compile_world(world, codegen), compile_world(world, fixed)
    except Exception:  # a load failure: let the replay say what happens
        return False
    return [(n, i.base, i.code, [vars(p) for p in i.pokes]) for n, i in a] == [
        (n, i.base, i.code, [vars(p) for p in i.pokes]) for n, i in b
    ]


def classify(j: Judgement, new: Codegen, engine: Engine | None = None) -> Outcome:
    """The policy's answer for one judged world, `new` being the codegen under test."""
    if not j.verdict.diverges:
        return Outcome(j, Status.AGREE)
    causes = attribute(j, new, engine)
    return Outcome(j, Status.KNOWN if causes else Status.UNEXPLAINED, causes)


def fails_run(statuses, ignore_known: bool) -> bool:
    """A run fails on any divergence, or with `ignore_known` on any unexplained one."""
    return any(s is Status.UNEXPLAINED or (s is Status.KNOWN and not ignore_known) for s in map(Status, statuses))


def kills(mutant: Outcome, base: Outcome) -> bool:
    """A planted bug is killed by a world where it diverges unexplained while its base agrees."""
    return mutant.counts and base.status is Status.AGREE
