"""The libFuzzer/Atheris target: one input = one world, or one world and a batch of its inputs
(fuzz/gen/worlds.py decode_input: any bytes decode). Batches run through the in-guest driver
(fuzz/machine/batch.py); the cases they flag go through the per-case path for the verdict.

Two modes, chosen by the environment:
  * `tcfuzz fuzz` (TCFUZZ_ARTIFACTS set): never crash. Each input is judged; the first input of every
    new signature is written as an artifact (`crash-<sha1>` + sidecar) and the run goes on, so an
    unattended night collects every distinct divergence instead of stopping at the first. Stats go
    to `.tcfuzz-stats-<pid>.json` in the artifact directory (atomically, every few seconds and on
    every new signature) for the parent to summarise; a progress line goes to stderr.
  * plain libFuzzer / ClusterFuzzLite (TCFUZZ_ARTIFACTS unset): a divergence without a known cause
    raises, so the engine records the crash input itself.
TCFUZZ_OLD / TCFUZZ_NEW name the codegens (module:object); TCFUZZ_SEED is recorded in artifacts.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from tcfuzz.codegens import NEW_DEFAULT, OLD_DEFAULT, load_codegen
from tcfuzz.gen.worlds import decode_input
from tcfuzz.machine.batch import case_world
from tcfuzz.model.interfaces import FaultKind, Observation, VerdictKind
from tcfuzz.triage.artifacts import atomic_write, write_artifact
from tcfuzz.verdict.batch_oracle import judge_batch
from tcfuzz.verdict.causes import known_causes
from tcfuzz.verdict.oracle import judge

PROGRESS_EVERY = 5.0
MAX_TRIAGED_PER_BATCH = 4  # flagged cases re-run per input through the per-case path


class Divergence(Exception):
    """Raised in libFuzzer mode so the engine keeps the input as a crash."""


def feedback(obs: Observation, verdict: VerdictKind) -> int:
    """Python branches on guest outcomes: Atheris sees only Python coverage, so each distinct
    outcome class must be a distinct branch here to count as a new feature."""
    score = 0
    if obs.fault is not None:
        kind = obs.fault.kind
        if kind is FaultKind.OUT_OF_ALLOCATION:
            score += 1
        elif kind is FaultKind.WILD_JUMP:
            score += 2
        elif kind is FaultKind.BAD_ENTRY:
            score += 3
        elif kind is FaultKind.TIMEOUT:
            score += 4
        else:
            score += 5
    n = len(obs.trace)
    if n == 1:
        score += 10
    elif n < 8:
        score += 20
    elif n < 34:
        score += 30
    elif n == 34:
        score += 40
    else:
        score += 50
    if obs.tail_call_cnt == 33:
        score += 100
    if verdict is VerdictKind.NEW_DIVERGES:
        score += 1000
    elif verdict is not VerdictKind.AGREE:
        score += 2000
    return score


def batch_feedback(flagged: int, cases: int) -> int:
    """Coverage for how much of a batch diverged (none, one, some, all)."""
    if flagged == 0:
        return 0
    if flagged == 1:
        return 1
    if flagged < cases:
        return 2
    return 3


class Target:
    def __init__(self) -> None:
        self.old = load_codegen(os.environ.get("TCFUZZ_OLD", OLD_DEFAULT))
        self.new = load_codegen(os.environ.get("TCFUZZ_NEW", NEW_DEFAULT))
        self.specs = {"old": os.environ.get("TCFUZZ_OLD", OLD_DEFAULT), "new": os.environ.get("TCFUZZ_NEW", NEW_DEFAULT)}
        artifacts = os.environ.get("TCFUZZ_ARTIFACTS")
        self.artifacts = Path(artifacts) if artifacts else None
        self.seed = int(os.environ["TCFUZZ_SEED"]) if os.environ.get("TCFUZZ_SEED") else None
        self.arch = os.environ.get("TCFUZZ_ARCH") or None  # fuzz every world's twin on this architecture
        self.inputs = 0
        self.cases = 0
        self.signatures: dict[str, dict] = {}
        self.started = self.last_progress = time.monotonic()

    def __call__(self, data: bytes) -> None:
        self.inputs += 1
        world, cases = decode_input(data)
        if self.arch is not None:
            world = world.for_arch(self.arch)
        if cases is None:
            self.judge_one(data, world, raw=True)
            self.cases += 1
        elif world.profile.arch != "x86_64":
            # The batch driver is x86-64 code: an arm64 batch goes case by case, each judged in full.
            first = True
            for case in cases:
                first &= not self.judge_one(data, case_world(world, case), raw=first)
            self.cases += len(cases)
        else:
            flagged = judge_batch(world, cases, self.old, self.new).flagged
            self.cases += len(cases)
            batch_feedback(len(flagged), len(cases))
            # The first flagged case is what the raw input replays to; the others are written as
            # sidecars only (their worlds are exact), so none is lost.
            for n, i in enumerate(flagged[:MAX_TRIAGED_PER_BATCH]):
                self.judge_one(data, case_world(world, cases[int(i)]), raw=n == 0)
        self.save_stats()  # every case: libFuzzer exits without running Python's atexit
        now = time.monotonic()
        if now - self.last_progress >= PROGRESS_EVERY:
            self.last_progress = now
            self.report()

    def judge_one(self, data: bytes, world, raw: bool) -> bool:
        j = judge(world, self.old, self.new)
        for obs in j.observations["patched"]:
            feedback(obs, j.verdict.kind)
        if j.verdict.diverges:
            self.divergence(data if raw else None, world, j.verdict)
        return j.verdict.diverges

    def divergence(self, data, world, verdict) -> None:
        causes = sorted(known_causes(world))
        if self.artifacts is None:
            if not causes:
                raise Divergence(f"{verdict.signature} (run {verdict.run}, field {verdict.field_name})")
            return
        entry = self.signatures.get(verdict.signature)
        # A signature seen so far only with a known cause, now without one, is a new finding too.
        new = entry is None or (entry["known_causes"] and not causes)
        if new:
            path = write_artifact(self.artifacts, world, verdict, raw=data, seed=self.seed, codegens=self.specs)
            count = entry["count"] if entry else 0
            entry = self.signatures[verdict.signature] = {"count": count, "known_causes": causes, "artifact": str(path)}
        entry["count"] += 1
        if new:
            self.report()

    def stats(self) -> dict:
        elapsed = time.monotonic() - self.started
        return {"pid": os.getpid(), "inputs": self.inputs, "cases": self.cases, "elapsed": elapsed, "signatures": self.signatures}

    def report(self) -> None:
        s = self.stats()
        known = sum(1 for e in self.signatures.values() if e["known_causes"])
        print(
            f"#{self.inputs}\ttcfuzz: {self.inputs / max(s['elapsed'], 1e-9):.0f} exec/s, "
            f"{self.cases / max(s['elapsed'], 1e-9):.0f} cases/s, "
            f"{sum(e['count'] for e in self.signatures.values())} divergences, "
            f"{len(self.signatures)} signatures ({known} with a known cause)",
            file=sys.stderr,
            flush=True,
        )

    def save_stats(self) -> None:
        if self.artifacts is not None:
            atomic_write(
                self.artifacts / f".tcfuzz-stats-{os.getpid()}.json",
                json.dumps(self.stats()).encode(),
                overwrite=True,
                durable=False,
            )


def main(argv: list[str]) -> None:
    import atheris

    target = Target()
    atheris.Setup(argv, target)
    atheris.Fuzz()
