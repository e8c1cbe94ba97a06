"""Judging a fuzzer input the same way everywhere: the target, `repro`/`run`/`minimize`/`triage`/
`corpus add` of a raw crash file, and the property suite.

Model orders: `jit` (the default reference), `interpreter` (core.c before its 2026 fix: NULL-slot
attempts consume the budget) or `both` (jit first; a world the JITs run alike under the jit order is
judged again against the interpreter order). Both orders run the codegens once; only the model is
re-evaluated.

A raw input that carries a batch replays to its *diverging case*: the first case the batch flags
(at most MAX_TRIAGED of them, in order) whose per-case verdict diverges, preferring one that counts
(no known cause) over one that does not. The target writes the raw file next to exactly that case,
so a raw crash file always replays to the case that diverged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tcfuzz.machine.batch import case_world
from tcfuzz.machine.engine import Engine
from tcfuzz.model.interfaces import Codegen
from tcfuzz.model.semantics import CountOrder, predict
from tcfuzz.model.world import World
from tcfuzz.verdict.batch_oracle import BatchJudgement, judge_batch
from tcfuzz.verdict.oracle import Judgement, decide, judge
from tcfuzz.verdict.policy import Outcome, classify

ORDERS = {"jit": (CountOrder.JIT,), "interpreter": (CountOrder.INTERPRETER,), "both": (CountOrder.JIT, CountOrder.INTERPRETER)}
MAX_TRIAGED = 4  # flagged cases of one batch re-run through the per-case path
MAX_FAULTS = 128  # a batch stops after this many faulted cases of one codegen (>= MAX_TRIAGED: same triage)


def orders_of(name: str) -> tuple[CountOrder, ...]:
    return ORDERS[name]


@dataclass(frozen=True)
class Replay:
    outcome: Outcome
    order: CountOrder
    case: int | None = None  # index in the raw input's batch, if it has one

    @property
    def world(self) -> World:
        return self.outcome.judgement.world


def judge_world(world: World, old: Codegen, new: Codegen, orders: tuple[CountOrder, ...], engine: Engine | None = None) -> Replay:
    """The first order (in `orders`) under which the world diverges, classified; else AGREE."""
    j = judge(world, old, new, orders[0], engine)
    order = orders[0]
    for other in orders[1:]:
        if j.verdict.diverges:
            break
        obs = dict(j.observations, model=predict(world, other))
        v = decide(obs)
        if v.diverges:
            j, order = Judgement(world, v, obs), other
    return Replay(classify(j, new, engine), order)


@dataclass(frozen=True)
class BatchTriage:
    found: list[Replay]  # per-case replays of flagged cases that diverge
    pick: int | None  # position in `found` of the diverging case (what a raw input replays to)
    flagged: int  # cases the batch comparison flagged
    judged: int  # cases run: a batch stops after MAX_FAULTS faulted cases of one codegen
    outcomes: tuple[tuple[int, bool, bool], ...]  # batch_oracle.BatchJudgement.outcomes


def flagged_cases(
    world: World, cases: np.ndarray, old: Codegen, new: Codegen, orders: tuple[CountOrder, ...], engine=None
) -> BatchJudgement:
    """The batch comparison (batch_oracle.BatchJudgement) under `orders`. It stops after MAX_FAULTS
    faulted cases of one codegen; every faulted case is flagged, so the first MAX_TRIAGED flagged
    cases are the same as in the whole batch's."""
    return judge_batch(world, cases, old, new, orders=orders, max_faults=MAX_FAULTS)


def triage_batch(
    world: World,
    cases: np.ndarray,
    old: Codegen,
    new: Codegen,
    orders: tuple[CountOrder, ...],
    enough: Callable[[list[Replay]], bool] | None = None,
) -> BatchTriage:
    """Per-case replays of the first MAX_TRIAGED flagged cases that diverge, the position in that
    list of the diverging case (the one a raw input replays to) or None, how many were flagged, how
    many cases were judged, and the batch's outcome classes.

    `enough(found)`, asked after each diverging case, stops the triage early: the fuzz target stops
    once every diverging case so far is a finding it already recorded. The diverging case is then
    chosen among those, so it may differ from a full triage's; the caller must not keep the raw input
    for it (the target does not: its finding is already recorded), and `replay_input` never stops."""
    found: list[Replay] = []
    j = flagged_cases(world, cases, old, new, orders)
    flagged = [int(i) for i in j.flagged]
    for i in flagged[:MAX_TRIAGED]:
        r = judge_world(case_world(world, cases[i]), old, new, orders)
        if r.outcome.verdict.diverges:
            found.append(Replay(r.outcome, r.order, i))
            if enough is not None and enough(found):
                break
    counting = [k for k, r in enumerate(found) if r.outcome.counts]
    pick = (counting[0] if counting else 0) if found else None
    return BatchTriage(found, pick, len(flagged), j.cases, j.outcomes)


def replay_input(world: World, cases, old: Codegen, new: Codegen, orders: tuple[CountOrder, ...]) -> tuple[Replay, str | None]:
    """What a decoded fuzzer input replays to, and for a batch one line saying which case."""
    if cases is None:
        return judge_world(world, old, new, orders), None
    t = triage_batch(world, cases, old, new, orders)
    found, pick = t.found, t.pick
    if pick is None:
        return judge_world(case_world(world, cases[0]), old, new, orders), f"a batch of {len(cases)} inputs; none diverges"
    r = found[pick]
    return r, f"a batch of {len(cases)} inputs; case #{r.case} is the diverging case"


def load_details(world: World, old: Codegen, new: Codegen) -> dict[str, str]:
    """Why each codegen did or did not load the world: the JIT's or the verifier's own message."""
    from tcfuzz.machine.executor import load

    out = {}
    for voter, codegen in (("legacy", old), ("patched", new)):
        ld = load(world, codegen)
        out[voter] = ld.load_detail or (str(ld.dead) if ld.dead is not None else ld.load)
    return out
