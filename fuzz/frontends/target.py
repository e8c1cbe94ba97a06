"""The libFuzzer/Atheris target: one input = one world, or one world and a batch of its inputs
(fuzz/gen/worlds.py decode_input: any bytes decode). Batches run through the in-guest driver
(fuzz/machine/batch.py); the cases they flag go through the per-case path for the verdict.

Two modes, chosen by the environment:
  * `tcfuzz fuzz` (TCFUZZ_ARTIFACTS set): never crash. Each input is judged; the first input of every
    new finding (model order, signature, and whether a known cause explains it) is written as an
    artifact (`crash-<sha1>` + sidecar) and the run goes on, so an unattended night collects every
    distinct divergence instead of stopping at the first. Across processes (--jobs, -fork) a
    marker file per finding lets exactly one process write it. Stats go to
    `.tcfuzz-stats-<run>-<pid>.json` in the artifact directory (on a new finding, every half second
    and at exit), for the parent to summarise (fuzz/frontends/progress.py, which is not instrumented).
  * plain libFuzzer / ClusterFuzzLite (TCFUZZ_ARTIFACTS unset): a divergence that counts (the
    policy, fuzz/verdict/policy.py: no proved known cause) raises, so the engine records the crash
    input; that raw input replays to the same case (fuzz/verdict/replay.py).
TCFUZZ_OLD / TCFUZZ_NEW name the codegens (module:object or file.py:object); TCFUZZ_MODEL_ORDER is
jit, interpreter or both; TCFUZZ_SEED and TCFUZZ_RUN are recorded in artifacts and stats.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from tcfuzz.codegens import NEW_DEFAULT, OLD_DEFAULT, load_codegen
from tcfuzz.frontends.kernel_sample import KernelSample
from tcfuzz.frontends.progress import Progress
from tcfuzz.gen.worlds import decode_input
from tcfuzz.machine.batch import case_world
from tcfuzz.model.interfaces import FaultKind, Observation, VerdictKind
from tcfuzz.triage.artifacts import atomic_write, write_artifact
from tcfuzz.verdict.replay import Replay, judge_world, load_details, orders_of, triage_batch


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


def outcome_feedback(runs: int, at_limit: bool, faulted: bool) -> int:
    """Coverage for what a batch's cases reached, one call per distinct outcome: how many programs
    ran (as `feedback` buckets the trace), the count at the limit, a fault. Without it an agreeing
    batch would show the fuzzer nothing of the chains it ran. The buckets repeat `feedback`'s on
    purpose: coverage is per branch site, and a shared helper would make a batch's chain lengths the
    same features as a single world's."""
    score = 0
    if runs == 1:
        score += 1
    elif runs < 8:
        score += 2
    elif runs < 34:
        score += 3
    elif runs == 34:
        score += 4
    else:
        score += 5
    if at_limit:
        score += 10
    if faulted:
        score += 20
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
        self.specs = {"old": os.environ.get("TCFUZZ_OLD", OLD_DEFAULT), "new": os.environ.get("TCFUZZ_NEW", NEW_DEFAULT)}
        self.old, self.new = load_codegen(self.specs["old"]), load_codegen(self.specs["new"])
        self.order_name = os.environ.get("TCFUZZ_MODEL_ORDER", "jit")
        self.orders = orders_of(self.order_name)
        artifacts = os.environ.get("TCFUZZ_ARTIFACTS")
        self.artifacts = Path(artifacts) if artifacts else None
        self.seed = int(os.environ["TCFUZZ_SEED"]) if os.environ.get("TCFUZZ_SEED") else None
        self.run_id = os.environ.get("TCFUZZ_RUN", "0")
        self.arch = os.environ.get("TCFUZZ_ARCH") or None  # fuzz every world's twin on this architecture
        self.inputs = 0
        self.cases = 0
        self.findings: dict[str, dict] = {}
        self.progress = Progress(self.artifacts, self.run_id)
        self.kernel = KernelSample.from_env(self.artifacts, self.old)  # `tcfuzz fuzz --kernel N`

    def __call__(self, data: bytes) -> None:
        self.inputs += 1
        world, cases = decode_input(data)
        if self.arch is not None:
            world = world.for_arch(self.arch)
        if cases is None:
            r = judge_world(world, self.old, self.new, self.orders)
            self.cases += 1
            self.observe(r)
            if r.outcome.verdict.diverges:
                self.finding(data, r)
        elif world.profile.arch != "x86_64":
            # The batch driver is x86-64 code: an arm64 batch goes case by case, each judged in full;
            # the raw input replays to its first diverging case.
            raw: bytes | None = data
            for case in cases:
                r = judge_world(case_world(world, case), self.old, self.new, self.orders)
                self.observe(r)
                if r.outcome.verdict.diverges:
                    self.finding(raw, r)
                    raw = None
            self.cases += len(cases)
        else:
            # With artifacts, the triage stops once every diverging case so far is a finding already
            # recorded (with the stock patch most batches flag a known one again): no raw input is
            # kept for this batch then, so a raw file still replays to its diverging case.
            enough = self.all_recorded if self.artifacts is not None else None
            t = triage_batch(world, cases, self.old, self.new, self.orders, enough)
            self.cases += t.judged  # a batch with many faulted cases stops early (fuzz/verdict/replay.py)
            batch_feedback(t.flagged, t.judged)
            for runs, at_limit, faulted in t.outcomes:
                outcome_feedback(runs, at_limit, faulted)
            # The diverging case `pick` is what the raw input replays to; the others are written as
            # sidecars only (their worlds are exact), so none is lost.
            for k, r in enumerate(t.found):
                self.observe(r)
                self.finding(data if k == t.pick else None, r)
        if self.kernel is not None:
            self.kernel.after(world)
        self.progress.tick(self.stats())

    def observe(self, r: Replay) -> None:
        for obs in r.outcome.judgement.observations["patched"]:
            feedback(obs, r.outcome.verdict.kind)

    def recorded(self, r: Replay) -> bool:
        """This finding's artifact is already written (by this process or another)."""
        assert self.artifacts is not None
        key = finding_key(r)
        entry = self.findings.get(key)
        return (entry is not None and entry["artifact"] is not None) or written(self.artifacts, key)

    def all_recorded(self, found: list[Replay]) -> bool:
        return all(self.recorded(r) for r in found)

    def finding(self, data: bytes | None, r: Replay) -> None:
        outcome, verdict = r.outcome, r.outcome.verdict
        if self.artifacts is None:
            if outcome.counts:
                raise Divergence(f"{verdict.signature} (run {verdict.run}, field {verdict.field_name}; {outcome.attribution})")
            return
        key = finding_key(r)
        entry = self.findings.get(key)
        if entry is None:
            entry = self.findings[key] = {
                "signature": verdict.signature,
                "model_order": r.order.value,
                "status": outcome.status.value,
                "causes": list(outcome.causes),
                "count": 0,
                "artifact": None,
            }
        if entry["artifact"] is None and not written(self.artifacts, key):
            path = write_artifact(
                self.artifacts,
                r.world,
                verdict,
                raw=data,
                seed=self.seed,
                codegens=self.specs,
                model_order=r.order.value,
                case=r.case,
                status=outcome.status.value,
                causes=outcome.causes,
                load_detail=load_details(r.world, self.old, self.new) if verdict.field_name == "load" else None,
            )
            entry["artifact"] = str(path)
            mark_written(self.artifacts, key, path)
        entry["count"] += 1

    def stats(self) -> dict:
        s = {
            "schema": "tcfuzz-fuzz-stats/2",
            "run": self.run_id,
            "pid": os.getpid(),
            "seed": self.seed,
            "inputs": self.inputs,
            "cases": self.cases,
            "elapsed": self.progress.elapsed(),
            "findings": self.findings,
        }
        if self.kernel is not None:
            s["kernel"] = self.kernel.stats()
        return s


def finding_key(r: Replay) -> str:
    """One finding: the model order, whether it is explained, the signature."""
    return f"{r.order.value}|{'known' if not r.outcome.counts else 'unexplained'}|{r.outcome.verdict.signature}"


def _marker(artifacts: Path, key: str) -> Path:
    return artifacts / f".tcfuzz-finding-{hashlib.sha1(key.encode()).hexdigest()[:20]}"


def written(artifacts: Path, key: str) -> bool:
    """Some process (this run, a -fork job, a killed earlier run) already wrote this finding."""
    return _marker(artifacts, key).exists()


def mark_written(artifacts: Path, key: str, artifact: Path) -> None:
    """After the artifact is on disk (so a kill in between loses nothing: the next process writes
    it again, under the same name if the input is the same)."""
    try:
        atomic_write(_marker(artifacts, key), f"{artifact.name}\n".encode(), durable=False)
    except FileExistsError:
        pass


def main(argv: list[str]) -> None:
    import atheris

    target = Target()
    if os.environ.get("TCFUZZ_MUTATOR") == "structural":  # fuzz/frontends/mutator.py
        from tcfuzz.frontends.mutator import custom_mutator

        atheris.Setup(argv, target, custom_mutator=custom_mutator)
    else:
        atheris.Setup(argv, target)
    # libFuzzer ends every run with C's exit(), which runs this handler while the interpreter is alive.
    # Fuzz() must therefore never hand back to Python's own exit (the handler would call into a
    # finalized interpreter): if it returns or raises, the process leaves through os._exit.
    target.progress.save_at_exit()
    try:
        atheris.Fuzz()
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    os._exit(0)
