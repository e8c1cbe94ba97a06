"""The summary of a fuzz campaign, always rebuilt from the artifact directory: the sidecars on disk
are the findings, the stats files of every run (never deleted, so a run killed with -9 still counts)
give inputs, cases and per-finding counts. Written as summary.json (`tcfuzz-fuzz-summary/2`,
documented in the README) and junit.xml; whether a finding fails the run is the policy's
(fuzz/verdict/policy.py fails_run).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from tcfuzz.triage.artifacts import ARTIFACT_SCHEMA, atomic_write, versions
from tcfuzz.triage.inputfile import InputError, read_json
from tcfuzz.verdict.policy import Status, fails_run

SCHEMA = "tcfuzz-fuzz-summary/2"
GREEN, FINDINGS, KNOWN_ONLY, INTERRUPTED, ENGINE_ERROR = "green", "findings", "known-only", "interrupted", "engine-error"
ENGINE_CRASH_PREFIXES = ("crash-", "timeout-", "oom-", "leak-", "slow-unit-")


def _json_files(artifacts: Path, pattern: str, keep) -> list[tuple[Path, dict]]:
    """(path, document) of every readable JSON object matching `pattern` that `keep` accepts; a
    file a killed run left half-written (impossible with atomic writes, but cheap to allow) is skipped."""
    out = []
    for path in sorted(artifacts.glob(pattern)):
        try:
            data = read_json(path)  # bounded: a FIFO or a device named *.json is skipped, never read
        except InputError:
            continue
        if isinstance(data, dict) and keep(data):
            out.append((path, data))
    return out


def read_stats(artifacts: Path) -> list[dict]:
    return [s for _, s in _json_files(artifacts, ".tcfuzz-stats-*.json", lambda s: isinstance(s.get("findings"), dict))]


def read_sidecars(artifacts: Path) -> list[tuple[Path, dict]]:
    return _json_files(artifacts, "*.json", lambda d: d.get("schema") == ARTIFACT_SCHEMA)


def finding_key(order: str, status: str, signature: str) -> str:
    """The same key the target's stats use (fuzz/frontends/target.py)."""
    return f"{order}|{'known' if status == Status.KNOWN.value else 'unexplained'}|{signature}"


def progress_sample(artifacts: Path, run_id: str, elapsed: float) -> dict:
    """Merged progress of every job of this run: one point of the summary's `history`."""
    stats = [s for s in read_stats(artifacts) if s.get("run") == run_id]
    inputs, cases = sum(s["inputs"] for s in stats), sum(s["cases"] for s in stats)
    findings = {k: e for s in stats for k, e in s["findings"].items()}
    return {
        "t": round(elapsed, 1),
        "processes": len(stats),
        "inputs": inputs,
        "cases": cases,
        "inputs_per_s": round(inputs / max(elapsed, 1e-9), 1),
        "signatures": len(findings),
        "unexplained": sum(1 for e in findings.values() if e.get("status") == "unexplained"),
    }


def progress_line(sample: dict) -> str:
    return (
        f"tcfuzz fuzz: {sample['t']:4.0f} s, {sample['processes']} processes, {sample['inputs']} inputs, "
        f"{sample['cases']} cases, {sample['inputs_per_s']:.0f} inputs/s, "
        f"{sample['signatures']} findings ({sample['unexplained']} unexplained)"
    )


def build_summary(
    artifacts: Path,
    run_id: str,
    elapsed: float,
    engine_exits: list[int | None],
    interrupted: int | None,
    ignore_known: bool,
    settings: dict,
    started_at: float = 0.0,
) -> dict:
    stats = read_stats(artifacts)
    counts: dict[str, int] = {}
    for s in stats:
        for key, e in s["findings"].items():
            counts[key] = counts.get(key, 0) + e["count"]
    findings: dict[str, dict] = {}
    raws_with_sidecar = set()
    for path, data in read_sidecars(artifacts):
        order = data.get("model_order") or "jit"
        status = data.get("status") or Status.UNEXPLAINED.value
        key = finding_key(order, status, data["signature"])
        f = findings.setdefault(
            key,
            {
                "signature": data["signature"],
                "verdict": data["verdict"],
                "model_order": order,
                "status": status,
                "causes": data.get("causes") or [],
                "attribution": attribution_line(status, data.get("causes") or []),
                "count": 0,
                "artifacts": [],
                "inputs": [],
            },
        )
        f["artifacts"].append(str(path))
        if data.get("input") and path.with_name(data["input"]).exists():
            f["inputs"].append(str(path.with_name(data["input"])))
            raws_with_sidecar.add(data["input"])
    for key, f in findings.items():
        f["count"] = max(counts.get(key, 0), len(f["artifacts"]))
    engine_crashes = sorted(
        str(p)
        for p in artifacts.iterdir()
        if p.name.startswith(ENGINE_CRASH_PREFIXES) and p.suffix != ".json" and p.name not in raws_with_sidecar
    )
    this = [s for s in stats if s.get("run") == run_id]
    this_run = {
        "inputs": sum(s["inputs"] for s in this),
        "cases": sum(s["cases"] for s in this),
        "elapsed": elapsed,
    }
    this_run["exec_per_s"] = this_run["inputs"] / max(elapsed, 1e-9)
    this_run["cases_per_s"] = this_run["cases"] / max(elapsed, 1e-9)
    failed = fails_run([f["status"] for f in findings.values()], ignore_known)
    # An engine crash input left by an earlier run is listed, but fails only the run that made it.
    new_crashes = [c for c in engine_crashes if Path(c).stat().st_mtime >= started_at]
    engine_failed = interrupted is None and (any(code != 0 for code in engine_exits) or bool(new_crashes))
    if engine_failed:
        status, exit_status = ENGINE_ERROR, 3
    elif failed:
        status, exit_status = FINDINGS, 1
    elif interrupted is not None:
        status, exit_status = INTERRUPTED, 128 + interrupted
    else:
        status, exit_status = (KNOWN_ONLY if findings else GREEN), 0
    return {
        "schema": SCHEMA,
        "status": status,
        "exit_status": exit_status,
        "ignore_known": ignore_known,
        "interrupted_by": signal.Signals(interrupted).name if interrupted is not None else None,
        "engine_exits": engine_exits,
        "run": run_id,
        **settings,
        "this_run": this_run,
        "inputs": sum(s["inputs"] for s in stats),
        "cases": sum(s["cases"] for s in stats),
        "runs_on_disk": sorted({s.get("run", "?") for s in stats}),
        "findings": sorted(findings.values(), key=lambda f: (f["model_order"], f["status"], f["signature"])),
        "engine_crashes": engine_crashes,
        "versions": versions(),
    }


def attribution_line(status: str, causes: list[str]) -> str:
    if status == Status.KNOWN.value:
        return f"cause {'+'.join(causes)}: repaired codegen agrees"
    return "no known cause"


def junit(summary: dict) -> str:
    """Unexplained findings are failures; known ones are failures only when they fail the run
    (without --ignore-known), otherwise skipped with their cause; an engine failure is an error, and
    the whole run's test case fails with it (a reader that checks only `failures="0"` must not see
    a dead engine as green)."""
    whole = f'  <testcase classname="tcfuzz" name="legacy = patched = model ({summary["cases"]} cases)"'
    failures = errors = skipped = 0
    if summary["status"] == ENGINE_ERROR:
        failures += 1
        message = quoteattr(f"the engine failed (exit statuses {summary['engine_exits']}): the run is incomplete")
        cases = [f"{whole}>\n    <failure message={message}/>\n  </testcase>"]
    else:
        cases = [f"{whole}/>"]
    for f in summary["findings"]:
        name = f["signature"] + ("" if f["model_order"] == "jit" else f" ({f['model_order']} order)")
        body = escape(" ".join(f["artifacts"]))
        message = quoteattr(f"{f['count']} divergences; {f['attribution']}")
        if f["status"] == Status.KNOWN.value and summary["ignore_known"]:
            skipped += 1
            element = f"    <skipped message={message}>{body}</skipped>"
        else:
            failures += 1
            element = f"    <failure message={message}>{body}</failure>"
        cases.append(f'  <testcase classname="tcfuzz.divergence" name={quoteattr(name)}>\n{element}\n  </testcase>')
    for crash in summary["engine_crashes"]:
        errors += 1
        cases.append(
            f'  <testcase classname="tcfuzz.engine" name={quoteattr(Path(crash).name)}>\n'
            f'    <error message="the engine recorded an input without a verdict (a crash of tcfuzz)">{escape(crash)}</error>\n'
            "  </testcase>"
        )
    if summary["status"] == ENGINE_ERROR and not summary["engine_crashes"]:
        errors += 1
        message = quoteattr(f"engine exit statuses {summary['engine_exits']}")
        cases.append(f'  <testcase classname="tcfuzz.engine" name="engine">\n    <error message={message}/>\n  </testcase>')
    props = [("status", summary["status"]), ("seed", summary.get("seed")), ("model_order", summary.get("model_order"))]
    if summary["interrupted_by"]:
        props.append(("interrupted_by", summary["interrupted_by"]))
    properties = "".join(f"    <property name={quoteattr(k)} value={quoteattr(str(v))}/>\n" for k, v in props)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="tcfuzz" tests="{len(cases)}" failures="{failures}" '
        f'errors="{errors}" skipped="{skipped}" time="{summary["this_run"]["elapsed"]:.1f}">\n'
        f"  <properties>\n{properties}  </properties>\n" + "\n".join(cases) + "\n</testsuite>\n"
    )


def write_reports(summary: dict, summary_path: Path, junit_path: Path) -> None:
    atomic_write(summary_path, (json.dumps(summary, indent=2) + "\n").encode(), overwrite=True)
    atomic_write(junit_path, junit(summary).encode(), overwrite=True)
