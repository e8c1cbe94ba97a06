"""Gather the evidence: run the quick commands through their Python APIs (the regression corpus
replay, `limits`, `prove --quick`, `mutants`) and read what fuzz runs left behind (summary.json,
artifacts). The result is one JSON-serialisable dict, the `tcfuzz-report/1` document.

Every number in it is the one the command itself computes: the same functions, the same
arguments, the same to_json(); tests/test_report.py runs the commands and compares."""

from __future__ import annotations

import datetime
import platform
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

from tcfuzz import SOURCE_TREE
from tcfuzz.model.interfaces import Codegen
from tcfuzz.model.profile import preset
from tcfuzz.triage.artifacts import InputError, read_document, versions
from tcfuzz.triage.inputfile import read_json
from tcfuzz.triage.repro import side_by_side, size
from tcfuzz.verdict.oracle import Judgement, judge

SCHEMA = "tcfuzz-report/1"
CORPUS = SOURCE_TREE / "corpus"
# `tcfuzz limits` at the kernel's limits finds nothing in the packed imm; these raised limits are
# the smallest that show where each field breaks (map index 256, poke index 32767).
RAISED_LIMITS = {"max_used_maps": 257, "poke_tab_max": 32768}
MUTANT_BUDGET = 30.0  # seconds per mutant, `tcfuzz mutants`' default
MUTANT_SEED = 1

CAUSES = {
    "shared-label": "a function holds both a static and a dynamic indirect site: the patched sequences "
    "differ by 5 bytes but share ctx->tail_call_indirect_label, so every `out` jump lands 5 bytes off",
    "disp-wrap": "a static site's max_entries puts offsetof(ptrs) + max_entries * 8 past INT_MAX: the "
    "disp32 computed into an int wraps and the cached target is read from the wrong place",
}

Step = Callable[[Iterable], Iterable]


def all_versions() -> dict[str, str]:
    from importlib import metadata

    out = versions()
    try:
        out["z3"] = metadata.version("z3-solver")
    except metadata.PackageNotFoundError:
        out["z3"] = "unknown"
    out["platform"] = platform.platform()
    return out


def rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(SOURCE_TREE))
    except ValueError:
        return str(path)


def causes_of(j: Judgement, new: Codegen) -> list[str]:
    """The known causes of a divergence, asked of the project's verdict policy: by replay under the
    repaired codegen (tcfuzz.verdict.policy) where that module exists, else by the world's shape
    (tcfuzz.verdict.causes). Imported by name so the report works with either."""
    import importlib

    try:
        policy = importlib.import_module("tcfuzz.verdict.policy")
    except ImportError:
        return sorted(importlib.import_module("tcfuzz.verdict.causes").known_causes(j.world))
    return sorted(policy.classify(j, new).causes)


def fuzz_findings(summary: dict) -> list[dict]:
    """{signature, count, causes} per signature of a fuzz summary, schema 1 (`signatures`) or 2
    (`findings`)."""
    if isinstance(summary.get("findings"), list):
        return [
            {"signature": f["signature"], "count": f.get("count", 0), "causes": list(f.get("causes") or [])}
            for f in summary["findings"]
            if f.get("status") != "agree"
        ]
    return [
        {"signature": sig, "count": e.get("count", 0), "causes": list(e.get("known_causes") or [])}
        for sig, e in (summary.get("signatures") or {}).items()
    ]


def replay_corpus(old: Codegen, new: Codegen, progress: Step = iter) -> dict:
    """Every corpus entry judged as `tcfuzz run` judges it, against its recorded expectation."""
    entries: list[dict[str, Any]] = []
    for path in progress(sorted(CORPUS.rglob("*.json"))):
        try:
            doc = read_document(path)
        except InputError as e:
            entries.append({"file": rel(path), "error": str(e)})
            continue
        j = judge(doc.world, old, new)
        v = j.verdict
        expected = doc.expected
        entries.append(
            {
                "file": rel(path),
                "verdict": v.kind.value,
                "signature": v.signature if v.diverges else None,
                "known_causes": causes_of(j, new) if v.diverges else [],
                "as_expected": expected is None or (expected[0] == v.kind and expected[1] in (None, v.signature)),
                "size": list(size(doc.world)),
            }
        )
    diverging = [e for e in entries if e.get("signature")]
    return {
        "entries": entries,
        "count": len(entries),
        "agree": sum(1 for e in entries if e.get("verdict") == "AGREE"),
        "diverge": len(diverging),
        "unexplained": [e["file"] for e in diverging if not e["known_causes"]],
        "unexpected": [e["file"] for e in entries if not e.get("as_expected", False)],
    }


def read_fuzz_dir(directory: Path, old: Codegen, new: Codegen) -> dict:
    """What a `tcfuzz fuzz` run left: its summary (with the status history when present) and the
    sidecars of its artifacts."""
    directory = Path(directory)
    out: dict = {"dir": str(directory), "summary": None, "artifacts": []}
    summary = directory / "summary.json"
    if summary.is_file():
        out["summary"] = read_json(summary)  # the bounded reader: one line for anything unusable
    for path in sorted(directory.glob("*.json")):
        if path.name == "summary.json":
            continue
        try:
            doc = read_document(path)
        except InputError:
            continue
        if doc.kind != "artifact":
            continue
        j = judge(doc.world, old, new)
        out["artifacts"].append(
            {
                "file": str(path),
                "replays": j.verdict.diverges,  # a finding fixed since is listed, not counted
                "signature": doc.data.get("signature"),
                "verdict": doc.data.get("verdict"),
                "seed": doc.data.get("seed"),
                "known_causes": causes_of(j, new) if j.verdict.diverges else [],
                "size": list(size(doc.world)),
            }
        )
    if out["summary"] is None and not out["artifacts"]:
        raise InputError(f"{directory}: no summary.json and no artifact sidecars (is it a `tcfuzz fuzz` directory?)")
    return out


def findings(corpus: dict, fuzz: list[dict], old: Codegen, new: Codegen) -> list[dict]:
    """One finding per known cause (or per signature when none explains it), with the smallest world
    that shows it, where its runs part, and how to replay and export it."""
    groups: dict[str, list[dict]] = {}
    for e in corpus["entries"]:
        if e.get("signature"):
            groups.setdefault(" + ".join(e["known_causes"]) or e["signature"], []).append(e)
    for run in fuzz:
        for a in (a for a in run["artifacts"] if a["replays"]):
            groups.setdefault(" + ".join(a["known_causes"]) or a["signature"], []).append(a)
    out = []
    for cause, members in sorted(groups.items()):
        smallest = min(members, key=lambda e: tuple(e["size"]))
        path = SOURCE_TREE / smallest["file"] if not Path(smallest["file"]).is_absolute() else Path(smallest["file"])
        world = read_document(path).world
        j = judge(world, old, new)
        causes = cause.split(" + ")
        out.append(
            {
                "cause": cause,
                "explained": all(c in CAUSES for c in causes),
                "description": "; ".join(CAUSES.get(c, "no known cause: an unexplained divergence") for c in causes),
                "files": [e["file"] for e in members],
                "signatures": sorted({e["signature"] for e in members}),
                "representative": smallest["file"],
                "verdict": j.verdict.kind.value,
                "run": j.verdict.run,
                "field": j.verdict.field_name,
                "values": j.verdict.values,
                "signature": j.verdict.signature,
                "world": world.to_json(),
                "parting": side_by_side(j, {"legacy": old, "patched": new}, width=200),
                "replay": f"tcfuzz repro {smallest['file']}",
                "export": f"tcfuzz export {smallest['file']} --selftest",
            }
        )
    return out


def run_limits(old: Codegen, new: Codegen) -> dict:
    from tcfuzz.analysis.limits import hunt

    profile = preset("default")
    raised = profile.replace(name=f"{profile.name}+limits", **RAISED_LIMITS)
    return {
        "kernel": {"profile": profile.to_json(), **hunt(profile, old=old, new=new).to_json()},
        "raised": {"profile": raised.to_json(), **hunt(raised, old=old, new=new).to_json()},
        "commands": [
            "tcfuzz limits",
            "tcfuzz limits " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in RAISED_LIMITS.items()),
        ],
    }


def run_proof(old: Codegen, new: Codegen, progress: Step = iter) -> dict:
    from tcfuzz.analysis.prove import matrix, run_matrix

    configs = matrix(quick=True)
    report = run_matrix(cast(list, progress(configs)), old, new)  # iterated once: a progress bar fits
    results = [r.to_json() for r in report["results"]]
    static = [r for r in report["results"] if r.config.kind == "static"]
    return {
        "quick": True,
        "results": results,
        "replays": report["replays"],
        "proven": sum(r.proven for r in report["results"]),
        "total": len(results),
        "static_preconditions": sorted({p for r in static for p in r.preconditions}),
        "seconds": round(sum(r.seconds for r in report["results"]), 3),
        "command": "tcfuzz prove --quick",
    }


def run_mutants(progress: Step = iter, budget: float = MUTANT_BUDGET, seed: int = MUTANT_SEED) -> dict:
    from tcfuzz.selftest.kill import run
    from tcfuzz.selftest.mutants import CATALOGUE

    kills = run(cast(list, progress(list(CATALOGUE))), budget, seed)
    return {
        "budget": budget,
        "seed": seed,
        "mutants": [k.to_json() for k in kills],
        "killed": sum(k.killed for k in kills),
        "command": f"tcfuzz mutants --budget {budget:g} --seed {seed}",
    }


def headline(report: dict) -> dict:
    fuzz_cases = sum((r["summary"] or {}).get("cases", 0) for r in report["fuzz"])
    found = report["findings"]
    proof = report["proof"]
    h = {
        "findings": sum(f["explained"] for f in found),
        # distinct divergences (by signature) that no known cause explains, from the corpus and
        # every fuzz artifact that still diverges
        "unexplained": sum(not f["explained"] for f in found),
        "cases": report["corpus"]["count"] + fuzz_cases,
        "proven": proof["proven"],
        "configurations": proof["total"],
        "preconditions": len(proof["static_preconditions"]),
        "mutants_killed": report["mutants"]["killed"],
        "mutants": len(report["mutants"]["mutants"]),
    }
    h["sentence"] = (
        f"{h['findings']} finding{'s' * (h['findings'] != 1)}, "
        f"proven equivalent under {h['preconditions']} preconditions "
        f"({h['proven']}/{h['configurations']} configurations), "
        f"{h['unexplained']} unexplained divergence{'s' * (h['unexplained'] != 1)} in {h['cases']} cases"
    )
    return h


def collect(fuzz_dirs: list[Path], old: Codegen, new: Codegen, specs: dict[str, str], progress=None) -> dict:
    """The whole report. `progress(iterable, what)` wraps each step's loop (a progress bar)."""
    wrap = (lambda what: lambda it: progress(it, what)) if progress else (lambda what: iter)
    started = datetime.datetime.now(datetime.timezone.utc)
    fuzz = [read_fuzz_dir(d, old, new) for d in fuzz_dirs]
    corpus = replay_corpus(old, new, wrap("corpus"))
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "generated": started.isoformat(timespec="seconds"),
        "versions": all_versions(),
        "codegens": specs,
        "corpus": corpus,
        "fuzz": fuzz,
        "limits": run_limits(old, new),
        "proof": run_proof(old, new, wrap("prove --quick")),
        "mutants": run_mutants(wrap("mutants")),
    }
    report["findings"] = findings(corpus, fuzz, old, new)
    report["headline"] = headline(report)
    seeds = sorted(s for s in {(r["summary"] or {}).get("seed") for r in fuzz} if s is not None)
    report["seeds"] = {"fuzz": seeds, "mutants": report["mutants"]["seed"]}
    codegen_args = (
        ""
        if specs == {"old": "tcfuzz.jit_old:CODEGEN", "new": "tcfuzz.jit_new:CODEGEN"}
        else (f" --old {specs['old']} --new {specs['new']}")
    )
    report["commands"] = [
        "tcfuzz report" + "".join(f" --from {d}" for d in fuzz_dirs) + codegen_args,
        "pytest tests/test_corpus.py   # the corpus replay, entry by entry",
        *report["limits"]["commands"],
        report["proof"]["command"],
        report["mutants"]["command"],
        *[_fuzz_command(r["summary"]) for r in fuzz if r["summary"]],
        *[f["replay"] for f in report["findings"]],
    ]
    return report


def _fuzz_command(summary: dict) -> str:
    """The fuzz run's own command line, as its summary recorded it (older summaries: the seed)."""
    import shlex

    argv = summary.get("command") or []
    return shlex.join(argv) if argv else f"tcfuzz fuzz --seed {summary.get('seed')}"
