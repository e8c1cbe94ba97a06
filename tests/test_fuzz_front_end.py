"""`tcfuzz fuzz` through the real path: the executable Atheris target under libFuzzer, bounded runs."""

import json
from pathlib import Path

from tcfuzz.cli.main import main

TESTS = Path(__file__).resolve().parent


def fuzz(tmp_path, *extra, runs=150, seed=7, new="tcfuzz.selftest.mutants:BOUND_CHECK_JA", art="art"):
    argv = ["fuzz", "--corpus", str(tmp_path / "corpus"), "--artifacts", str(tmp_path / art), "--runs", str(runs)]
    argv += ["--seed", str(seed), "--new", new, *extra, "--", "-len_control=0", "-print_final_stats=0"]
    return main(argv)


def repro_json(capsys, path):
    status = main(["repro", str(path), "--json"])
    return status, json.loads(capsys.readouterr().out)


def test_bounded_run_with_a_planted_bug_leaves_artifacts_that_replay_as_found(tmp_path, capsys):
    status = fuzz(tmp_path, "--ignore-known")
    out = capsys.readouterr().out
    assert status == 1, out
    art = tmp_path / "art"
    summary = json.loads((art / "summary.json").read_text())
    assert summary["schema"] == "tcfuzz-fuzz-summary/2" and summary["status"] == "findings" and summary["exit_status"] == 1
    assert summary["this_run"]["inputs"] == 150 and summary["this_run"]["cases"] >= 150
    assert summary["seed"] == 7 and summary["job_seeds"] == [7]
    assert summary["codegens"]["new"] == "tcfuzz.selftest.mutants:BOUND_CHECK_JA"
    findings = summary["findings"]
    assert findings and all(f["status"] == "unexplained" for f in findings)  # a mutant declares no cause
    sidecars = sorted(art.glob("crash-*.json"))
    assert sorted(str(p) for f in findings for p in f["artifacts"]) == [str(p) for p in sidecars]
    raws = 0
    for sidecar in sidecars:  # every artifact replays to its sidecar's verdict and signature, no flags
        data = json.loads(sidecar.read_text())
        assert data["codegens"]["new"] == "tcfuzz.selftest.mutants:BOUND_CHECK_JA" and data["seed"] == 7
        status, rep = repro_json(capsys, sidecar)
        assert status == 1 and rep["signature"] == data["signature"] and rep["as_found"].startswith("as found")
        if data["input"] is not None:
            raws += 1
            status, rep = repro_json(capsys, art / data["input"])
            assert status == 1 and rep["signature"] == data["signature"] and rep["case"] == data["case"]
    assert raws
    assert not list(art.glob("*.tmp")) and not list(art.glob(".*.tmp"))
    junit = (art / "junit.xml").read_text()
    assert junit.startswith("<?xml") and f'failures="{len(findings)}"' in junit
    assert "NEW" in out and "summary " in out


def test_bad_codegen_spec_is_a_usage_error(capsys, tmp_path):
    status = main(["fuzz", "--artifacts", str(tmp_path), "--new", "nowhere:THING", "--runs", "1"])
    assert status == 2 and "codegen 'nowhere:THING': cannot import nowhere" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_target_script_is_executable_for_fork_and_jobs():
    script = TESTS.parent / "fuzzers" / "tailcall_fuzzer.py"
    assert script.stat().st_mode & 0o111 and script.read_text().startswith("#!/usr/bin/env python3\n")


def test_bounded_arm64_run_finds_an_arm64_planted_bug(tmp_path, capsys):
    """`--arch arm64`: every generated world's arm64 twin, batches case by case (the batch driver is
    x86-64 code); an arm64 mutant is found and its sidecar replays."""
    art = tmp_path / "art"
    mutant = "tcfuzz.selftest.mutants_arm64:ARM64_BOUND_CHECK_HI"
    argv = ["fuzz", "--corpus", str(tmp_path / "c"), "--artifacts", str(art), "--runs", "12", "--seed", "3"]
    status = main([*argv, "--arch", "arm64", "--new", mutant, "--", "-len_control=0", "-print_final_stats=0"])
    out = capsys.readouterr().out
    assert status == 1, out
    summary = json.loads((art / "summary.json").read_text())
    assert summary["inputs"] == 12 and summary["cases"] >= 12
    assert summary["findings"]
    for finding in summary["findings"]:
        status, report = repro_json(capsys, finding["artifacts"][0])  # the sidecar's codegens, no flags
        assert status == 1 and report["signature"] == finding["signature"]
        assert json.loads(Path(finding["artifacts"][0]).read_text())["world"]["profile"]["arch"] == "arm64"


def test_libfuzzer_talks_to_a_log_and_tcfuzz_to_the_terminal(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("TCFUZZ_PROGRESS_EVERY", "0")
    assert fuzz(tmp_path, "--ignore-known", runs=40, new="tcfuzz.jit_new:CODEGEN") == 0
    out, err = capfd.readouterr()
    assert "tcfuzz fuzz: " in err and " inputs/s, " in err and "INITED" not in err  # our status line, not libFuzzer's
    (log,) = (tmp_path / "art").glob("fuzz-*-job0.log")
    assert "Done 40 runs" in log.read_text() and f"libFuzzer's log: {log}" in out
    history = json.loads((tmp_path / "art" / "summary.json").read_text())["history"]
    assert len(history) >= 2 and history[-1]["inputs"] == 40  # samples for the report's plots, the last at the end
    assert [p["t"] for p in history] == sorted(p["t"] for p in history)


def test_verbose_shows_libfuzzer_on_the_terminal(tmp_path, capfd):
    assert fuzz(tmp_path, "-v", "--ignore-known", runs=20, new="tcfuzz.jit_new:CODEGEN") == 0
    assert "Done 20 runs" in capfd.readouterr().err
    assert not list((tmp_path / "art").glob("fuzz-*.log"))


def test_the_exit_save_runs_on_c_exit_and_never_after_os_exit(tmp_path):
    """at_process_exit's handler runs when the process calls C's exit() (as libFuzzer ends a run) and
    a process that leaves through os._exit (main() if Fuzz() returns) runs none and does not crash."""
    import subprocess
    import sys

    script = (
        "import ctypes, os, sys\n"
        "from tcfuzz.frontends.progress import at_process_exit\n"
        "at_process_exit(lambda: open(sys.argv[1], 'w').write('saved'))\n"
        "ctypes.CDLL(None).exit(7) if sys.argv[2] == 'c' else os._exit(5)\n"
    )
    marker = tmp_path / "saved"
    c_exit = subprocess.run([sys.executable, "-c", script, str(marker), "c"], capture_output=True)
    assert (c_exit.returncode, marker.read_text()) == (7, "saved"), c_exit.stderr
    marker.unlink()
    os_exit = subprocess.run([sys.executable, "-c", script, str(marker), "os"], capture_output=True)
    assert os_exit.returncode == 5 and not marker.exists(), os_exit.stderr
