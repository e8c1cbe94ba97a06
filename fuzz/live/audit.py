"""`tcfuzz kernel audit`: which known, fixed tail-call bugs the running kernel still has.

Each bug is a corpus scenario plus the behaviour the bug would give: its own prediction by the
reference semantics with the bug put back (the counting order, the old limit), or, where the bug
has no closed form (the counter lost through the call hierarchy), any departure from the
reference. The kernel runs the scenario (live/execute.py) and the verdict comes from the run
counts and the retval it shows, never from the version string:

    FIXED        the kernel does what the fixed reference predicts
    PRESENT      the kernel does what the bug predicts (or departs from the reference)
    UNCHECKED    the scenario cannot run here (its reason given)
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tcfuzz.live.execute import KERNEL_FIELDS, KernelRunner
from tcfuzz.live.lower import adapt
from tcfuzz.model.interfaces import Observation
from tcfuzz.model.semantics import CountOrder, predict
from tcfuzz.model.world import World

Predict = Callable[[World], list[Observation]]


def counts_empty_slots(world: World) -> list[Observation]:
    return predict(world, CountOrder.INTERPRETER)


def no_unpriv_check(world: World) -> list[Observation]:
    """The index as a privileged map gets it: u32 truncation only, no 64-bit bound check, no mask."""
    maps = tuple(dataclasses.replace(m, unpriv=False) for m in world.maps)
    return predict(dataclasses.replace(world, maps=maps))


def limit_32(world: World) -> list[Observation]:
    return predict(dataclasses.replace(world, profile=world.profile.replace(max_tail_call_cnt=32)))


@dataclass(frozen=True)
class Bug:
    name: str
    scenario: str  # corpus path, relative to the corpus root
    fix: str
    with_bug: Predict | None  # None: any departure from the reference is the bug


AUDIT = (
    Bug(
        "a tail call into an empty slot uses up the 33-call budget (x86 JIT counted before the NULL check)",
        "kernel/tailcall-null-slot-budget.json",
        '"bpf, x64: Fix tailcall hierarchy" (Leon Hwang, v6.10; increment after the NULL check)',
        counts_empty_slots,
    ),
    Bug(
        "the counter is lost between a subprogram and main programs tail-calling each other (unbounded chain)",
        "kernel/tailcall-bpf2bpf-hierarchy.json",
        '"bpf, x64: Fix tailcall hierarchy" (Leon Hwang, v6.10; the counter pointer tcc_ptr)',
        None,
    ),
    Bug(
        "a direct self tail call from a subprogram with a large caller frame loses the counter",
        "kernel/tailcall-bpf2bpf-direct.json",
        '"bpf, x64: Fix tailcall hierarchy" (Leon Hwang, v6.10)',
        None,
    ),
    Bug(
        "the chain stops after 32 tail calls instead of 33",
        "kernel/tailcall-3-limit-33.json",
        '"bpf: Change value of MAX_TAIL_CALL_CNT from 32 to 33" (Tiezhu Yang, v5.17)',
        limit_32,
    ),
    Bug(
        "an unpriv map's index is not bounded on all 64 bits and masked before the tail call",
        "edges/unpriv-64-bit-bound-check.json",
        '"bpf: prevent out-of-bounds speculation" (Alexei Starovoitov, v4.15; index_mask and the tail-call fix-up)',
        no_unpriv_check,
    ),
    Bug(
        "index bits above 32 select a slot (the index is not truncated to u32)",
        "edges/index-high-bits.json",
        "the x86 JIT's `mov edx, edx` before the bound check (since the x86-64 eBPF JIT's tail calls)",
        None,
    ),
)


@dataclass
class AuditResult:
    bug: Bug
    status: str
    detail: str

    def to_json(self) -> dict:
        return {
            "bug": self.bug.name,
            "scenario": self.bug.scenario,
            "fix": self.bug.fix,
            "status": self.status,
            "detail": self.detail,
        }


def visible(observations: Sequence[Observation | None]) -> list[dict | None]:
    return [None if o is None else {f: o.to_json()[f] for f in KERNEL_FIELDS} for o in observations]


def audit(bug: Bug, corpus: Path) -> AuditResult:
    path = corpus / bug.scenario
    try:
        doc = json.loads(path.read_text())
    except OSError as e:
        return AuditResult(bug, "UNCHECKED", f"{path}: {e.strerror}")
    world, _ = adapt(World.from_json(doc["world"]))
    runner = KernelRunner(world).run()
    kernel = visible(runner.observations)
    if runner.reason or all(k is None for k in kernel):
        return AuditResult(bug, "UNCHECKED", runner.reason or "no run of the scenario is expressible in the kernel")
    fixed = visible(predict(world))
    ran = [i for i, k in enumerate(kernel) if k is not None]
    buggy = visible(bug.with_bug(world)) if bug.with_bug is not None else None
    if buggy is not None and all(fixed[i] == buggy[i] for i in ran):
        return AuditResult(bug, "UNCHECKED", "the scenario does not tell the fixed kernel from the buggy one")
    runs = ", ".join(f"run {i}: ret {k['ret']:#x} runs {k['runs']}" for i, k in enumerate(kernel) if k is not None)
    if all(kernel[i] == fixed[i] for i in ran):
        return AuditResult(bug, "FIXED", f"as the fixed reference predicts ({runs})")
    if buggy is not None:
        if all(kernel[i] == buggy[i] for i in ran):
            return AuditResult(bug, "PRESENT", f"as the bug predicts ({runs})")
        return AuditResult(bug, "UNKNOWN", f"neither the fixed nor the buggy prediction ({runs})")
    return AuditResult(bug, "PRESENT", f"departs from the reference ({runs})")
