"""A nightly-style `tcfuzz fuzz` campaign interrupted by SIGINT, SIGTERM and kill -9, restarted each
time: at the end the summary and JUnit list every artifact on disk, every artifact replays to its
sidecar's verdict and signature, and no fuzzing process is left behind."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tcfuzz.cli.main import main

PLANTED = "tcfuzz.selftest.mutants:BOUND_CHECK_JA"  # diverges within seconds: findings to lose


def engine_processes(artifacts: Path) -> list[int]:
    """Live processes (ours or any) fuzzing into `artifacts`."""
    marker = f"TCFUZZ_ARTIFACTS={artifacts}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in environ.split(b"\0") and state != "Z":
            pids.append(int(proc.name))
    return pids


def start(tmp_path: Path, *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "tcfuzz.cli.main", "fuzz", "--corpus", str(tmp_path / "corpus")]
    argv += ["--artifacts", str(tmp_path / "art"), "--new", PLANTED, "--seed", "3", *extra]
    argv += ["--", "-len_control=0", "-print_final_stats=0"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def wait_for_findings(art: Path, n: int, before: set, timeout: float = 60) -> None:
    """Until this run's engine is fuzzing (a stats file not in `before`) and n findings are on disk."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list(art.glob("crash-*.json"))) >= n and set(art.glob(".tcfuzz-stats-*.json")) - before:
            return
        time.sleep(0.2)
    raise AssertionError(f"no {n} findings in {timeout} s")


def no_process_left(art: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while engine_processes(art) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert engine_processes(art) == []


def check_campaign(tmp_path: Path, capsys) -> dict:
    art = tmp_path / "art"
    summary = json.loads((art / "summary.json").read_text())
    listed = sorted(p for f in summary["findings"] for p in f["artifacts"])
    assert listed == sorted(str(p) for p in art.glob("crash-*.json"))
    junit = (art / "junit.xml").read_text()
    for path in listed:
        assert Path(path).name in junit
        data = json.loads(Path(path).read_text())
        status = main(["repro", path, "--json"])
        replay = json.loads(capsys.readouterr().out)
        assert status == 1 and replay["signature"] == data["signature"], path
    return summary


def interrupt(tmp_path: Path, sig: int, findings: int) -> subprocess.Popen:
    before = set((tmp_path / "art").glob(".tcfuzz-stats-*.json"))
    p = start(tmp_path, "--max-time", "120")
    wait_for_findings(tmp_path / "art", findings, before)
    os.kill(p.pid, sig)
    p.communicate(timeout=60)
    return p


def campaign(tmp_path, capsys, rounds: int) -> None:
    art = tmp_path / "art"
    findings = 1
    for _ in range(rounds):
        p = interrupt(tmp_path, signal.SIGINT, findings)
        assert p.returncode == 1  # interrupted, with findings that count
        summary = check_campaign(tmp_path, capsys)
        assert summary["interrupted_by"] == "SIGINT"
        no_process_left(art)

        p = interrupt(tmp_path, signal.SIGTERM, findings)
        summary = check_campaign(tmp_path, capsys)
        assert p.returncode == 1 and summary["interrupted_by"] == "SIGTERM"
        no_process_left(art)

        before = set(art.glob(".tcfuzz-stats-*.json"))
        p = start(tmp_path, "--max-time", "120")
        wait_for_findings(art, findings, before)
        p.kill()  # kill -9: no summary from this one; its engine must still die
        p.communicate(timeout=30)
        no_process_left(art)

    killed_runs = {s.name for s in art.glob(".tcfuzz-stats-*.json")}
    p = start(tmp_path, "--runs", "20")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 1, err.decode()[-2000:]
    assert killed_runs <= {s.name for s in art.glob(".tcfuzz-stats-*.json")}  # the killed run's stats stay
    summary = check_campaign(tmp_path, capsys)
    assert summary["status"] == "findings" and len(summary["runs_on_disk"]) == 3 * rounds + 1
    assert summary["inputs"] > summary["this_run"]["inputs"] == 20
    no_process_left(art)


def test_interrupted_and_killed_runs_lose_nothing_and_leave_nothing(tmp_path, capsys):
    campaign(tmp_path, capsys, rounds=1)


@pytest.mark.nightly
def test_repeatedly_interrupted_campaign(tmp_path, capsys):
    campaign(tmp_path, capsys, rounds=3)
