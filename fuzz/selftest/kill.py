"""`tcfuzz mutants`: fuzz every planted bug of fuzz/selftest/mutants.py and time how long the oracle takes
to kill it. A mutant is killed by a world on which it diverges for no known cause while its base
codegen agrees (the verdict policy, fuzz/verdict/policy.py `kills`).

Each mutant first meets the regression corpus (the worlds every run replays), then generated
worlds from a seeded byte stream, until its budget runs out. (`--systematic` feeds fuzzer inputs,
batches included: `fuzz_inputs`.)
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from tcfuzz import SOURCE_TREE
from tcfuzz.codegens import codegen_arch
from tcfuzz.gen.worlds import decode
from tcfuzz.jit_old import CODEGEN as LEGACY
from tcfuzz.selftest.mutants import CATALOGUE
from tcfuzz.triage.artifacts import InputError, read_document
from tcfuzz.verdict.oracle import judge
from tcfuzz.verdict.policy import classify, kills

CORPUS = SOURCE_TREE / "corpus"


@dataclass
class Kill:
    mutant: str
    description: str
    killed: bool
    seconds: float
    cases: int
    signature: str = ""
    by: str = ""  # "corpus/kernel/x.json" or "generated #N"

    def to_json(self) -> dict:
        return dict(self.__dict__)


def corpus_worlds():
    for path in sorted(CORPUS.rglob("*.json")):
        try:
            yield str(path.relative_to(CORPUS.parent)), read_document(path).world
        except InputError:
            continue


def fuzz_inputs(rng: random.Random):
    """Random fuzzer inputs as `tcfuzz fuzz` decodes them (fuzz/gen/worlds.py decode_input): per input,
    the worlds to judge per case. A batch runs through the in-guest driver for both codegens and
    the model, and the cases it flags (a few) are the candidates."""
    from tcfuzz.gen.worlds import decode_input
    from tcfuzz.machine.batch import case_world
    from tcfuzz.verdict.batch_oracle import judge_batch

    def candidates(mutant, base):
        world, cases = decode_input(rng.randbytes(rng.randrange(8, 400)))
        if cases is None:
            return [world]
        try:
            flagged = [int(i) for i in judge_batch(world, cases, LEGACY, mutant).flagged[:3]]
        except ValueError:  # the world does not load under a codegen: the per-case path says why
            flagged = [0]
        return [case_world(world, cases[i]) for i in flagged]

    return candidates


def killing_world(mutant, base, worlds, budget: float, started: float):
    """The first (origin, world, signature) on which `mutant` diverges while `base` agrees, within the
    budget; None when it survives. `worlds` yields (origin, [worlds])."""
    old = LEGACY
    for origin, candidates in worlds:
        if time.monotonic() - started > budget:
            return None
        for world in candidates:
            j = judge(world, old, mutant)
            if j.verdict.diverges and kills(classify(j, mutant), classify(judge(world, old, base), base)):
                return origin, world, j.verdict.signature
    return None


def hunt(name: str, budget: float, seed: int, use_corpus: bool = True, max_worlds: int | None = None) -> Kill:
    """Hunt one mutant for `budget` seconds or `max_worlds` generated worlds, whichever ends first (a
    count is the same answer on a loaded machine: the test suite bounds by worlds, not seconds)."""
    mutant, base, description = CATALOGUE[name]
    arch = codegen_arch(mutant)
    rng = random.Random(seed)
    started = time.monotonic()
    cases = [0]

    def worlds():
        if use_corpus:
            for origin, world in corpus_worlds():
                cases[0] += 1
                yield origin, [world]
        n = 0
        while max_worlds is None or n < max_worlds:
            n += 1
            cases[0] += 1
            yield f"generated #{n}", [decode(rng.randbytes(rng.randrange(8, 400)))]

    twins = ((origin, [w.for_arch(arch) for w in ws]) for origin, ws in worlds())  # an arm64 mutant meets arm64 twins
    found = killing_world(mutant, base, twins, budget, started)
    if found is None:
        return Kill(name, description, False, time.monotonic() - started, cases[0])
    return Kill(name, description, True, time.monotonic() - started, cases[0], found[2], found[0])


def run(names: list[str], budget: float, seed: int, use_corpus: bool = True) -> list[Kill]:
    return [hunt(name, budget, seed, use_corpus) for name in names]


def render(kills: list[Kill]) -> str:
    rows = [f"{'mutant':<38} {'result':<9} {'time':>7} {'cases':>6}  by / signature"]
    for k in kills:
        result = "killed" if k.killed else "SURVIVED"
        rows.append(
            f"{k.mutant:<38} {result:<9} {k.seconds:6.2f}s {k.cases:6d}  "
            + (f"{k.by}: {k.signature}" if k.killed else k.description)
        )
    survived = [k.mutant for k in kills if not k.killed]
    rows.append(f"{len(kills) - len(survived)}/{len(kills)} killed" + (f"; survived: {', '.join(survived)}" if survived else ""))
    return "\n".join(rows)
