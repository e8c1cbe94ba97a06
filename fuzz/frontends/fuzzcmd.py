"""`tcfuzz fuzz`: an unattended, bounded libFuzzer run through Atheris, then a summary.

The engine runs in a child process (fuzzers/tailcall_fuzzer.py, executable so that -fork/-jobs can
re-execute it); libFuzzer flags after `--` pass straight through. The child writes artifacts and
per-process stats into the artifact directory; when it ends, this parent merges them into a JSON
summary and a JUnit XML file, prints the table, and exits 1 iff a divergence was found
(`--ignore-known`: iff one without a known cause was).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from tcfuzz import SOURCE_TREE
from tcfuzz.triage.artifacts import atomic_write, versions

FUZZER = SOURCE_TREE / "fuzzers" / "tailcall_fuzzer.py"


def merge_stats(artifacts: Path) -> dict:
    inputs, cases, signatures = 0, 0, {}
    for path in artifacts.glob(".tcfuzz-stats-*.json"):
        try:
            s = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        inputs += s["inputs"]
        cases += s["cases"]
        for sig, e in s["signatures"].items():
            merged = signatures.setdefault(sig, {"count": 0, "known_causes": e["known_causes"], "artifacts": []})
            merged["count"] += e["count"]
            merged["artifacts"].append(e["artifact"])
            if not e["known_causes"]:
                merged["known_causes"] = []
    return {"inputs": inputs, "cases": cases, "signatures": signatures}


def junit(summary: dict) -> str:
    sigs = summary["signatures"]
    cases = [f'  <testcase classname="tcfuzz" name="legacy = patched = model ({summary["cases"]} cases)"/>']
    for sig, e in sorted(sigs.items()):
        message = quoteattr(f"{e['count']} inputs; known cause: {', '.join(e['known_causes']) or 'none'}")
        cases.append(
            f'  <testcase classname="tcfuzz.divergence" name={quoteattr(sig)}>\n'
            f"    <failure message={message}>{escape(' '.join(e['artifacts']))}</failure>\n  </testcase>"
        )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="tcfuzz" tests="{1 + len(sigs)}" '
        f'failures="{len(sigs)}" time="{summary["elapsed"]:.1f}">\n' + "\n".join(cases) + "\n</testsuite>\n"
    )


def run(
    corpus: Path,
    artifacts: Path,
    max_time: int | None,
    runs: int | None,
    seed: int,
    jobs: int | None,
    fork: int | None,
    extra: list[str],
    old: str,
    new: str,
    ignore_known: bool,
    summary_path: Path | None,
    junit_path: Path | None,
    arch: str | None = None,
) -> int:
    corpus, artifacts = corpus.resolve(), artifacts.resolve()
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    for stale in artifacts.glob(".tcfuzz-stats-*.json"):
        stale.unlink()
    argv = [str(FUZZER), str(corpus), f"-artifact_prefix={artifacts}/", f"-seed={seed}", "-print_final_stats=1", "-max_len=512"]
    if max_time is not None:
        argv.append(f"-max_total_time={max_time}")
    if runs is not None:
        argv.append(f"-runs={runs}")
    if jobs:
        argv.append(f"-jobs={jobs}")
    if fork:
        argv.append(f"-fork={fork}")
    argv += extra
    env = dict(
        os.environ,
        TCFUZZ_ARTIFACTS=str(artifacts),
        TCFUZZ_SEED=str(seed),
        TCFUZZ_OLD=old,
        TCFUZZ_NEW=new,
        TCFUZZ_ARCH=arch or "",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    started = time.monotonic()
    engine = subprocess.run(argv, env=env, cwd=artifacts)
    summary = {
        "schema": "tcfuzz-fuzz-summary/1",
        **merge_stats(artifacts),
        "elapsed": time.monotonic() - started,
        "engine_exit": engine.returncode,
        "seed": seed,
        "codegens": {"old": old, "new": new},
        "versions": versions(),
        "argv": argv,
    }
    summary["exec_per_s"] = summary["inputs"] / max(summary["elapsed"], 1e-9)
    summary["cases_per_s"] = summary["cases"] / max(summary["elapsed"], 1e-9)
    summary_path = summary_path or artifacts / "summary.json"
    junit_path = junit_path or artifacts / "junit.xml"
    atomic_write(summary_path, (json.dumps(summary, indent=2) + "\n").encode(), overwrite=True)
    atomic_write(junit_path, junit(summary).encode(), overwrite=True)

    sigs = summary["signatures"]
    print(
        f"tcfuzz fuzz: {summary['inputs']} inputs, {summary['cases']} cases in {summary['elapsed']:.0f} s "
        f"({summary['exec_per_s']:.0f} inputs/s, {summary['cases_per_s']:.0f} cases/s), "
        f"{sum(e['count'] for e in sigs.values())} divergences, "
        f"{len(sigs)} signatures"
    )
    for sig, e in sorted(sigs.items(), key=lambda kv: -kv[1]["count"]):
        known = f"known: {', '.join(e['known_causes'])}" if e["known_causes"] else "NEW"
        print(f"{e['count']:6d}  {sig}  [{known}]  {e['artifacts'][0]}")
    print(f"summary {summary_path}, junit {junit_path}")
    if engine.returncode not in (0,) and not sigs:
        print(f"tcfuzz fuzz: the engine exited with status {engine.returncode}", file=sys.stderr)
        return engine.returncode or 1
    counted = [e for e in sigs.values() if not (ignore_known and e["known_causes"])]
    return 1 if counted else 0
