"""The fourth voter: the running kernel.

The kernel is ground truth for the legacy codegen (it is what this kernel runs) and for the
semantics (it is what programs get). Its observations (live/execute.py: load, retval, run counts)
are compared with the legacy codegen under Unicorn and with the reference, run by run:

    KERNEL_AGREES               kernel = legacy = reference on every field the kernel shows
    KERNEL_LEGACY_DIFFERS       kernel = reference != legacy: tcfuzz's model of the legacy JIT or of
                                the machine (executor, prog arrays, pokes) is wrong
    KERNEL_REFERENCE_DIFFERS    kernel = legacy != reference: tcfuzz's reference semantics is not what
                                this kernel does (a model defect, or a kernel bug the reference has
                                as fixed: `tcfuzz kernel audit`)
    KERNEL_DIFFERS              the kernel differs from both
    KERNEL_REFUSED              the kernel's verifier refused a world tcfuzz loads (its reason given)

A run the kernel cannot express (entry as a tail callee with a count, a prog array too large to
allocate here) is counted as skipped, not as agreement.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from tcfuzz import jit_old
from tcfuzz.live.execute import KERNEL_FIELDS, KernelRunner
from tcfuzz.live.lower import adapt
from tcfuzz.model.interfaces import Observation
from tcfuzz.model.world import World
from tcfuzz.verdict.oracle import Judgement, judge


@dataclass
class KernelVerdict:
    kind: str
    run: int | None = None
    field_name: str | None = None
    values: dict = field(default_factory=dict)
    reason: str = ""  # the verifier's words, or why the world could not be run here
    runs_compared: int = 0
    runs_skipped: int = 0
    notes: list[str] = field(default_factory=list)  # how the world was adapted to this process

    @property
    def disagrees(self) -> bool:
        return self.kind not in ("KERNEL_AGREES", "KERNEL_SKIPPED")

    def to_json(self) -> dict:
        out = asdict(self)
        out["field"] = out.pop("field_name")
        out["adapted"] = out.pop("notes")
        return out

    def __str__(self) -> str:
        where = f" run {self.run} {self.field_name}: {self.values}" if self.run is not None else ""
        why = f" ({self.reason})" if self.reason else ""
        return f"{self.kind}{where}{why} [{self.runs_compared} runs compared, {self.runs_skipped} skipped]"


def visible(obs: Observation) -> dict:
    j = obs.to_json()
    return {f: j[f] for f in KERNEL_FIELDS}


def judge_kernel(judgement: Judgement, runner: KernelRunner, notes: list[str] | None = None) -> KernelVerdict:
    legacy, model = judgement.observations["legacy"], judgement.observations["model"]
    compared = skipped = 0
    for run, (ko, lo, mo) in enumerate(zip(runner.observations, legacy, model, strict=True)):
        if ko is None:
            skipped += 1
            continue
        compared += 1
        k, l, m = visible(ko), visible(lo), visible(mo)
        if k == l == m:
            continue
        name = next(f for f in KERNEL_FIELDS if not (k[f] == l[f] == m[f]))
        if k["load"] == "rejected" and l["load"] == "ok":
            kind = "KERNEL_REFUSED"
        elif k == m:
            kind = "KERNEL_LEGACY_DIFFERS"
        elif k == l:
            kind = "KERNEL_REFERENCE_DIFFERS"
        else:
            kind = "KERNEL_DIFFERS"
        values = {"kernel": k[name], "legacy": l[name], "model": m[name]}
        return KernelVerdict(kind, run, name, values, runner.reason, compared, skipped, notes or [])
    kind = "KERNEL_AGREES" if compared else "KERNEL_SKIPPED"
    return KernelVerdict(kind, reason=runner.reason, runs_compared=compared, runs_skipped=skipped, notes=notes or [])


def judge_with_kernel(world: World, old=None) -> tuple[World, Judgement, KernelVerdict]:
    """The world as the kernel can hold it (live.lower.adapt), the three voters on it, and the
    kernel's verdict against them. `old`: the legacy codegen (a mutant of it, to test the test)."""
    world, notes = adapt(world)
    j = judge(world, old=old or jit_old.CODEGEN)
    return world, j, judge_kernel(j, KernelRunner(world).run(), notes)
