"""`tcfuzz fuzz --kernel N`: every Nth world the fuzz target judges also runs in the live kernel.

The target (frontends/target.py) asks a `KernelSample` after each world it judges; the sample
runs the fourth voter (verdict/kernel_vote.py) on one world in N and keeps counts for the stats
file. A kernel/model disagreement is written as a bare world `kernel-<sha1>.json` beside the
other artifacts (replay: `tcfuzz kernel run FILE`); in plain libFuzzer mode it raises, so the engine
keeps the input. The parent merges the counts into the summary (merge_kernel_stats).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tcfuzz.triage.artifacts import atomic_write

ENV = "TCFUZZ_KERNEL_EVERY"


class KernelDisagreement(Exception):
    pass


class KernelSample:
    def __init__(self, every: int, artifacts: Path | None, old) -> None:
        self.every, self.artifacts, self.old = every, artifacts, old
        self.seen = self.worlds = self.runs = 0
        self.disagreements: dict[str, str] = {}  # verdict line -> artifact

    @classmethod
    def from_env(cls, artifacts: Path | None, old) -> KernelSample | None:
        every = int(os.environ.get(ENV) or 0)
        return cls(every, artifacts, old) if every > 0 else None

    def after(self, world) -> None:
        self.seen += 1
        if (self.seen - 1) % self.every:
            return
        from tcfuzz.verdict.kernel_vote import judge_with_kernel

        world, _, kv = judge_with_kernel(world, self.old)
        self.worlds += 1
        self.runs += kv.runs_compared
        if not kv.disagrees:
            return
        if self.artifacts is None:
            raise KernelDisagreement(str(kv))
        doc = world.to_json()
        name = f"kernel-{hashlib.sha1(json.dumps(doc, sort_keys=True).encode()).hexdigest()}.json"
        path = self.artifacts / name
        if not path.exists():
            atomic_write(path, (json.dumps(doc, indent=1) + "\n").encode())
        self.disagreements[f"{kv.kind} run {kv.run} {kv.field_name}"] = str(path)

    def stats(self) -> dict:
        return {"worlds": self.worlds, "runs": self.runs, "disagreements": self.disagreements}


def merge_kernel_stats(stats: list[dict]) -> dict:
    out: dict = {"worlds": 0, "runs": 0, "disagreements": {}}
    for s in stats:
        out["worlds"] += s["worlds"]
        out["runs"] += s["runs"]
        out["disagreements"].update(s["disagreements"])
    return out
