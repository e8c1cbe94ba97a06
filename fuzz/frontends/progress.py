"""The fuzz target's bookkeeping that must not be coverage: wall-clock progress lines, stats files and
the engine watchdog. fuzzers/tailcall_fuzzer.py excludes this module from Atheris instrumentation,
so no branch taken here (every 5 seconds, on a dead parent) feeds libFuzzer: the same --seed and
--runs give the same inputs on an idle and on a loaded machine.

Every engine process (libFuzzer's main one, -fork jobs, tcfuzz --jobs workers) asks the kernel to
kill it when its parent dies (PR_SET_PDEATHSIG), and also exits when the engine's process-group
leader is gone (a -jobs worker's parent is a shell that outlives it), so killing `tcfuzz fuzz`, even
with kill -9, leaves no fuzzing process behind.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time
from pathlib import Path

from tcfuzz.triage.artifacts import atomic_write

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the leader check below still applies
        pass


SAVE_EVERY = 0.5  # seconds between stats files, unless a finding or an artifact is new


class Progress:
    def __init__(self, artifacts: Path | None, run_id: str) -> None:
        self.artifacts = artifacts
        self.run_id = run_id
        self.every = float(os.environ.get("TCFUZZ_PROGRESS_EVERY", "5"))
        self.started = self.last = time.monotonic()
        self.saved_at = -SAVE_EVERY  # the first input saves
        self.leader = os.getpgid(0) if os.environ.get("TCFUZZ_ENGINE_GROUP") else None
        self.pending: dict | None = None
        self.saved_findings: list[tuple[str, str]] = []
        die_with_parent()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def tick(self, stats: dict) -> None:
        """After every input: save the stats when a finding is new or SAVE_EVERY seconds passed (and
        at exit, `save_at_exit`), print a progress line now and then, and leave if the engine was
        taken down. An engine killed by a signal loses at most SAVE_EVERY seconds of its counts,
        never a finding."""
        if self.leader is not None and self.leader != os.getpid():
            try:
                os.kill(self.leader, 0)
            except ProcessLookupError:
                self.save()
                os._exit(0)
        now = time.monotonic()
        self.pending = stats
        findings = sorted((key, e["artifact"] or "") for key, e in stats["findings"].items())  # not the counts
        if findings != self.saved_findings or now - self.saved_at >= SAVE_EVERY:
            self.saved_findings, self.saved_at = findings, now
            self.save()
        if now - self.last >= self.every:
            self.last = now
            print(progress_line(stats), file=sys.stderr, flush=True)

    def save_at_exit(self) -> None:
        """Save the last stats when the process calls C's exit(), as libFuzzer ends every run, past
        Python's atexit. Only for a process that then never returns to Python's own exit (see
        `at_process_exit`): fuzz/frontends/target.py main() leaves through os._exit if Fuzz() returns."""
        at_process_exit(self.save)

    def save(self) -> None:
        if self.artifacts is None or self.pending is None:
            return
        path = self.artifacts / f".tcfuzz-stats-{self.run_id}-{os.getpid()}.json"
        atomic_write(path, json.dumps(self.pending).encode(), overwrite=True, durable=False)
        self.pending = None


_EXIT_HANDLERS: list = []  # the ctypes callbacks must outlive the process's last moment


def at_process_exit(fn) -> None:
    """Run fn when the process calls C's exit() (libFuzzer ends every run that way, past Python's
    atexit): a handler registered with glibc's __cxa_atexit (`atexit` itself is not exported),
    calling back into the interpreter, which is still alive inside atheris.Fuzz(). The process must
    not end through Python's own exit after this: the handler would then run after the interpreter
    is finalized and crash it. os._exit runs no handler."""
    try:
        libc = ctypes.CDLL(None)
        callback = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda _: fn())
        _EXIT_HANDLERS.append(callback)
        libc.__cxa_atexit(callback, None, None)
    except (OSError, AttributeError):  # not glibc: the periodic saves hold all but the last SAVE_EVERY seconds
        pass


def progress_line(stats: dict) -> str:
    """Formatted here, not in the target: code that runs only when the clock says so must not be
    instrumented, or coverage (and so the run) would depend on the machine's load."""
    elapsed = max(stats["elapsed"], 1e-9)
    findings = stats["findings"].values()
    unexplained = sum(1 for e in findings if e["status"] == "unexplained")
    return (
        f"#{stats['inputs']}\ttcfuzz: {stats['inputs'] / elapsed:.0f} exec/s, {stats['cases'] / elapsed:.0f} cases/s, "
        f"{sum(e['count'] for e in findings)} divergences, {len(stats['findings'])} findings ({unexplained} unexplained)"
    )
