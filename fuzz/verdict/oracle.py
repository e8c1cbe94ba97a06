"""The three-voter oracle: legacy codegen, patched codegen, reference semantics.

Each voter produces one Observation per run of the world. The first run where they are not all
equal decides the verdict:

    legacy = model != patched   NEW_DIVERGES            (the patch changed behaviour)
    patched = model != legacy   OLD_DIVERGES            (the legacy JIT is off the reference)
    legacy = patched != model   JITS_AGREE_MODEL_DIFFERS (both JITs differ from the interpreter)
    all three differ            ALL_DIFFER

Faults compare by kind and address; their `where` text is for people. Which differences are
intended, and therefore not observed at all, is written on `Observation`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tcfuzz import jit_new, jit_old
from tcfuzz.machine.engine import Engine
from tcfuzz.machine.executor import execute
from tcfuzz.model.interfaces import Codegen, Observation, Verdict, VerdictKind
from tcfuzz.model.semantics import CountOrder, predict
from tcfuzz.model.world import World

VOTERS = ("legacy", "patched", "model")


@dataclass
class Judgement:
    world: World
    verdict: Verdict
    observations: dict[str, list[Observation]]  # voter -> one Observation per run


def comparable(obs: Observation, name: str):
    value = getattr(obs, name)
    if name == "fault" and value is not None:
        return value.kind, value.address
    return value


def same(a: Observation, b: Observation) -> bool:
    return all(comparable(a, f) == comparable(b, f) for f in Observation.FIELDS)


def first_difference(a: Observation, b: Observation) -> str:
    return next(f for f in Observation.FIELDS if comparable(a, f) != comparable(b, f))


_LOCATION = re.compile(r"prog \d+(?: subprog)? \+0x[0-9a-f]+(?: \(site \d+\))?: ?")


def shape(field: str, odd: Observation, ref: Observation) -> str:
    """The coarse form of a difference, free of addresses and ids, so equal bugs dedup together."""
    if field == "fault":
        if odd.fault is None:
            assert ref.fault is not None  # the fault field differs
            return f"none vs {ref.fault.kind.value}"
        where = _LOCATION.sub("", odd.fault.where)
        where = re.sub(r"0x[0-9a-f]+", "<addr>", re.sub(r"\b(prog|struct bpf_prog|struct bpf_array) \d+", r"\1", where))
        return f"{odd.fault.kind.value}@{where}" if where else odd.fault.kind.value
    a, b = getattr(odd, field), getattr(ref, field)
    if field == "trace":
        if len(a) != len(b):
            return "longer" if len(a) > len(b) else "shorter"
        return "other target"
    if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool):
        return "higher" if a > b else "lower"
    return f"{a!r} vs {b!r}" if field == "load" else "differs"


def value_json(obs: Observation, field: str):
    return obs.to_json()[field]


def decide(obs: dict[str, list[Observation]]) -> Verdict:
    legacy, patched, model = (obs[v] for v in VOTERS)
    for run, (lo, no, mo) in enumerate(zip(legacy, patched, model, strict=True)):
        lm, nm, ln = same(lo, mo), same(no, mo), same(lo, no)
        if lm and nm:
            continue
        if lm:
            kind, odd, ref = VerdictKind.NEW_DIVERGES, no, mo
        elif nm:
            kind, odd, ref = VerdictKind.OLD_DIVERGES, lo, mo
        elif ln:
            kind, odd, ref = VerdictKind.JITS_AGREE_MODEL_DIFFERS, lo, mo
        else:
            kind, odd, ref = VerdictKind.ALL_DIFFER, no, lo
        field = first_difference(odd, ref)
        values = {v: value_json(o, field) for v, o in zip(VOTERS, (lo, no, mo), strict=True)}
        return Verdict(kind, run, field, values, f"{kind.value}/{field}/{shape(field, odd, ref)}")
    return Verdict(VerdictKind.AGREE)


def judge(
    world: World,
    old: Codegen = jit_old.CODEGEN,
    new: Codegen = jit_new.CODEGEN,
    order: CountOrder = CountOrder.JIT,
    engine: Engine | None = None,
) -> Judgement:
    observations = {"legacy": execute(world, old, engine), "patched": execute(world, new, engine), "model": predict(world, order)}
    return Judgement(world, decide(observations), observations)
