"""`tcfuzz mutants`: fuzz every planted bug of fuzz/selftest/mutants.py and time how long the oracle takes
to kill it. A mutant is killed by a world on which it diverges for no known cause while its base
codegen agrees (the verdict policy, fuzz/verdict/policy.py `kills`).

Each mutant first meets the regression corpus (the worlds every run replays), then generated
worlds from a seeded byte stream, until its budget runs out.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from tcfuzz import SOURCE_TREE
from tcfuzz.codegens import codegen_arch
from tcfuzz.gen.worlds import decode
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


def hunt(name: str, budget: float, seed: int, use_corpus: bool = True) -> Kill:
    mutant, base, description = CATALOGUE[name]
    arch = codegen_arch(mutant)
    rng = random.Random(seed)
    started = time.monotonic()
    cases = 0

    def worlds():
        if use_corpus:
            yield from corpus_worlds()
        n = 0
        while True:
            n += 1
            yield f"generated #{n}", decode(rng.randbytes(rng.randrange(8, 400)))

    for origin, world in worlds():
        if time.monotonic() - started > budget:
            break
        cases += 1
        world = world.for_arch(arch)  # an arm64 mutant meets each world's arm64 twin
        j = judge(world, new=mutant)
        if j.verdict.diverges and kills(classify(j, mutant), classify(judge(world, new=base), base)):
            return Kill(name, description, True, time.monotonic() - started, cases, j.verdict.signature, origin)
    return Kill(name, description, False, time.monotonic() - started, cases)


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
