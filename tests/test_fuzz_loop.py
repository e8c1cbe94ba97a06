"""The fuzz loop under `tcfuzz fuzz`: parallel jobs, plugin specs, determinism, engine failures, a
codegen that does not load, both model orders, raw crash files, -fork."""

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from tcfuzz.cli.main import main

TESTS = Path(__file__).resolve().parent
MUTANT = "tcfuzz.selftest.mutants:BOUND_CHECK_JA"


def fuzz(capsys, art: Path, *extra, runs=30, seed=5, new=None):
    argv = ["fuzz", "--corpus", str(art.parent / (art.name + "-corpus")), "--artifacts", str(art), "--seed", str(seed)]
    argv += (["--runs", str(runs)] if runs else []) + (["--new", new] if new else []) + list(extra)
    if "--" not in extra:
        argv += ["--"]
    argv += ["-len_control=0", "-print_final_stats=0"]
    status = main(argv)
    out, err = capsys.readouterr()
    summary = json.loads((art / "summary.json").read_text()) if (art / "summary.json").exists() else None
    return status, summary, out, err


def test_jobs_run_with_distinct_seeds_and_a_plugin_module_beside_the_caller(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(TESTS)  # `planted` imports from here only, not from the artifact directory
    status, summary, _, _ = fuzz(capsys, tmp_path / "art", "--jobs", "2", seed=11, new="planted:TWO_SITE_OFF_BY_ONE")
    assert summary["job_seeds"] == [11, 12] and status in (0, 1)
    stats = [json.loads(p.read_text()) for p in (tmp_path / "art").glob(".tcfuzz-stats-*.json")]
    assert sorted(s["seed"] for s in stats) == [11, 12]
    # each job runs its 30 inputs; one may also run what the other added to the shared corpus
    assert summary["this_run"]["inputs"] >= 60 and summary["engine_exits"] == [0, 0]


def test_the_same_seed_and_runs_give_the_same_summary_whatever_the_clock(capsys, tmp_path, monkeypatch):
    """With a plugin codegen given as a file path; the progress line every input vs every 5 s."""

    def essence(summary):
        keep = ("signature", "model_order", "status", "count", "causes")
        return summary["this_run"]["inputs"], summary["this_run"]["cases"], [{k: f[k] for k in keep} for f in summary["findings"]]

    runs = []
    for progress in ("0", "5"):
        monkeypatch.setenv("TCFUZZ_PROGRESS_EVERY", progress)
        _, summary, _, _ = fuzz(capsys, tmp_path / f"art{progress}", runs=30, new=str(TESTS / "planted.py") + ":WRAP_OFF_BY_ONE")
        runs.append(essence(summary))
    assert runs[0] == runs[1] and runs[0][0] == 30


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seed", str(2**64)], "argument --seed: 18446744073709551616: libFuzzer takes 0..4294967295"),
        (["--seed", "-1"], "argument --seed: -1: libFuzzer takes"),
        (
            ["--summary", "/nonexistent-dir/s.json"],
            "--summary /nonexistent-dir/s.json: directory /nonexistent-dir does not exist",
        ),
        (["--junit", "{tmp}"], "is a directory"),
    ],
)
def test_bad_arguments_are_refused_before_the_run(capsys, tmp_path, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    status = main(["fuzz", "--artifacts", str(tmp_path / "art"), "--corpus", str(tmp_path / "c"), "--runs", "5", *args])
    err = capsys.readouterr().err
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("art/.tcfuzz-stats-*"))


def test_an_engine_crash_reads_as_an_engine_error_never_green_nor_a_finding(capsys, tmp_path):
    status, summary, out, err = fuzz(capsys, tmp_path / "art", new=str(TESTS / "planted.py") + ":ABORTS_THE_PROCESS")
    assert status == 3 and summary["status"] == "engine-error" and summary["findings"] == []
    assert summary["engine_crashes"] and "the engine failed" in err
    junit = (tmp_path / "art" / "junit.xml").read_text()
    assert 'failures="1"' in junit and 'errors="1"' in junit  # the whole run's case fails too


def test_a_codegen_that_does_not_load_is_a_finding_with_the_jits_message(capsys, tmp_path):
    art = tmp_path / "art"
    spec = str(TESTS / "planted.py") + ":FAULTS_ON_DYNAMIC_SITES"
    status, summary, _, _ = fuzz(capsys, art, runs=100, new=spec)
    assert status == 1 and summary["this_run"]["inputs"] == 100 and summary["engine_exits"] == [0]
    loads = [f for f in summary["findings"] if "/load/" in f["signature"]]
    assert loads, summary["findings"]
    sidecar = json.loads(Path(loads[0]["artifacts"][0]).read_text())
    assert "planted: poke_tab[-32769] read" in sidecar["load_detail"]["patched"]
    raws = [Path(i) for f in summary["findings"] for i in f["inputs"]]
    assert raws
    for raw in raws:  # run and repro of the raw input: a verdict, never a traceback
        for command in ("run", "repro"):
            assert main([command, str(raw)]) == 1
            assert "Traceback" not in capsys.readouterr().err
    # triage of a directory of raw crash files (no sidecars): grouped, each replaying to its diverging case
    crashes = tmp_path / "raw"
    crashes.mkdir()
    for raw in raws:
        shutil.copy(raw, crashes)
    assert main(["triage", str(crashes), "--no-minimize", "--json", "--new", spec]) == 1
    buckets = json.loads(capsys.readouterr().out)
    assert sum(b["count"] for b in buckets) == len(raws)


def test_both_model_orders_find_the_pre_2026_interpreter_bug_from_an_empty_corpus(capsys, tmp_path):
    status, summary, out, _ = fuzz(capsys, tmp_path / "art", "--model-order", "both", runs=80, seed=1)
    found = [f for f in summary["findings"] if f["verdict"] == "JITS_AGREE_MODEL_DIFFERS"]
    assert status == 1 and found and all(f["model_order"] == "interpreter" and f["status"] == "unexplained" for f in found)
    assert "(interpreter order)" in out
    data = json.loads(Path(found[0]["artifacts"][0]).read_text())
    assert data["model_order"] == "interpreter"
    assert main(["repro", found[0]["artifacts"][0]]) == 1  # replays in its own order, no flag
    assert "as found" in capsys.readouterr().out


def test_fork_writes_one_artifact_per_finding_not_one_per_job(capsys, tmp_path):
    art = tmp_path / "art"
    status, summary, _, _ = fuzz(
        capsys,
        art,
        "--fork",
        "2",
        "--",
        "-max_total_time=8",
        "-ignore_crashes=1",
        runs=None,
        new="tcfuzz.selftest.mutants:BOUND_CHECK_JA",
    )
    assert status == 1, summary
    per_finding = Counter(
        (d["model_order"], d["status"], d["signature"]) for d in (json.loads(p.read_text()) for p in art.glob("crash-*.json"))
    )
    assert per_finding and max(per_finding.values()) <= 2, per_finding  # two jobs may race once, never dozens


@pytest.mark.nightly
def test_a_long_run_stays_within_a_gigabyte(capsys, tmp_path):
    """Two minutes of the instrumented loop under libFuzzer's -rss_limit_mb=1024: no out-of-memory
    exit. Comparison tracing of the numpy batch oracle once grew a process by ~0.5 MB per input."""
    art = tmp_path / "art"
    status, summary, _, _ = fuzz(capsys, art, "--max-time", "120", "--ignore-known", "--", "-rss_limit_mb=1024", runs=None)
    assert status in (0, 1) and summary["engine_exits"] == [0], summary
    assert not list(art.glob("oom-*")), "a fuzzing process passed 1 GiB"
