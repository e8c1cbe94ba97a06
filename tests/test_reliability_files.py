"""Issue 12, files tcfuzz writes: readable by other users (0644 under umask 022; mkstemp's 0600 kept
CI users of another uid from summary.json, junit.xml and the artifacts), and durable down to the
directory entry (the directory is fsynced after the link/rename, so the name survives a crash too)."""

import os
import stat
from pathlib import Path

import pytest

from tcfuzz.triage import artifacts
from tcfuzz.triage.artifacts import atomic_write, read_document, write_artifact
from tcfuzz.verdict.oracle import judge

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def fsynced(monkeypatch):
    """What os.fsync was called on: 'dir:<path>' or 'file'."""
    calls = []
    real = os.fsync

    def fsync(fd):
        st = os.fstat(fd)
        calls.append(f"dir:{os.readlink(f'/proc/self/fd/{fd}')}" if stat.S_ISDIR(st.st_mode) else "file")
        return real(fd)

    monkeypatch.setattr(artifacts.os, "fsync", fsync)
    return calls


def test_artifacts_are_0644_and_their_directory_is_fsynced(tmp_path, umask_022, fsynced):
    world = read_document(ROOT / "examples" / "shared-label.json").world
    sidecar = write_artifact(tmp_path / "art", world, judge(world).verdict, raw=b"\x01\x02")
    for path in (sidecar, sidecar.with_suffix("")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert fsynced.count(f"dir:{tmp_path / 'art'}") == 2 and fsynced.count("file") == 2


@pytest.mark.parametrize("overwrite", [False, True])
def test_reports_are_0644_and_durable(tmp_path, umask_022, fsynced, overwrite):
    """summary.json and junit.xml are written with overwrite=True, findings with overwrite=False."""
    path = atomic_write(tmp_path / "summary.json", b"{}\n", overwrite=overwrite)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert fsynced == ["file", f"dir:{tmp_path}"]


def test_a_stricter_umask_is_respected(tmp_path):
    old = os.umask(0o077)
    try:
        path = atomic_write(tmp_path / "private.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
