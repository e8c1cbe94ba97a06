"""`tcfuzz fuzz`: an unattended, bounded libFuzzer run through Atheris, then a summary.

The engine runs in child processes (fuzzers/tailcall_fuzzer.py, executable so that -fork can
re-execute it), one per --jobs, each with its own seed (seed, seed + 1, ...) and its own process
group; libFuzzer flags after `--` pass straight through. The children write artifacts and
per-process stats into the artifact directory. The summary (fuzz/frontends/summary.py) is always
rebuilt from what is on disk, so a run killed with -9 and restarted lists every artifact of both.

SIGINT and SIGTERM take the engine down (its whole process group) and still write summary.json and
junit.xml. A restart first kills any engine a killed run left behind. Exit status: 0 nothing that
counts, 1 a divergence that counts (policy: fuzz/verdict/policy.py), 2 bad arguments, 3 the engine
failed (a crash of tcfuzz itself, a timeout, an OOM: never read as green or as a finding), 128+N
interrupted by signal N with nothing that counts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tcfuzz import SOURCE_TREE
from tcfuzz.codegens import resolve_spec
from tcfuzz.frontends import SEED_MAX
from tcfuzz.frontends.kernel_sample import ENV as KERNEL_ENV
from tcfuzz.frontends.kernel_sample import merge_kernel_stats
from tcfuzz.frontends.seeds import dict_argv, seed_dirs
from tcfuzz.frontends.summary import ENGINE_ERROR, build_summary, progress_line, progress_sample, read_stats, write_reports
from tcfuzz.triage.artifacts import OutputPathError, writable_dir

FUZZER = SOURCE_TREE / "fuzzers" / "tailcall_fuzzer.py"
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL of the engine's group


class FuzzUsageError(Exception):
    """Bad arguments found before the run starts; one line, exit status 2."""


def check_output_file(path: Path, what: str) -> None:
    if path.is_dir():
        raise FuzzUsageError(f"{what} {path}: is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FuzzUsageError(f"{what} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise FuzzUsageError(f"{what} {path}: not writable")


def prepare_paths(seed: int, jobs: int | None, corpus: Path, artifacts: Path, summary: Path, junit: Path) -> None:
    """Every argument checked before anything runs (a bad one used to surface as a traceback after
    the whole run, losing its summary)."""
    if not 0 <= seed <= SEED_MAX:
        raise FuzzUsageError(f"--seed {seed}: libFuzzer takes 0..{SEED_MAX}")
    if jobs is not None and jobs < 1:
        raise FuzzUsageError(f"--jobs {jobs}: at least 1")
    outside = [(p, w) for p, w in ((summary, "--summary"), (junit, "--junit")) if p.parent != artifacts]
    for path, what in outside:
        check_output_file(path, what)
    for directory, what in ((corpus, "--corpus"), (artifacts, "--artifacts")):
        try:
            writable_dir(directory, what)
        except OutputPathError as e:
            raise FuzzUsageError(str(e)) from None
    for path, what in ((summary, "--summary"), (junit, "--junit")):
        check_output_file(path, what)


def kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def fuzzing_into(pid: int, artifacts: Path) -> bool:
    """Is `pid` still an engine process of this artifact directory (not a reused pid)?"""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"TCFUZZ_ARTIFACTS={artifacts}".encode() in environ


def reap_stale_engines(artifacts: Path) -> None:
    """Kill the engine groups a killed `tcfuzz fuzz` left in this artifact directory."""
    for pidfile in artifacts.glob(".tcfuzz-engine-*.pids"):
        for line in pidfile.read_text().split():
            if line.isdigit() and fuzzing_into(int(line), artifacts):
                kill_group(int(line), signal.SIGKILL)
        pidfile.unlink(missing_ok=True)


class Interrupt:
    """SIGINT/SIGTERM while the engine runs: remember the signal, stop the engine, finish."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def handle(self, signum, _frame) -> None:
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


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
    model_order: str = "jit",
    kernel_every: int = 0,
    arch: str | None = None,
    verbose: bool = False,
) -> int:
    corpus, artifacts = corpus.resolve(), artifacts.resolve()
    summary_path = (summary_path or artifacts / "summary.json").resolve()
    junit_path = (junit_path or artifacts / "junit.xml").resolve()
    prepare_paths(seed, jobs, corpus, artifacts, summary_path, junit_path)
    reap_stale_engines(artifacts)
    old, new = resolve_spec(old), resolve_spec(new)
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    job_seeds = [(seed + k) % (SEED_MAX + 1) for k in range(jobs or 1)]
    # An empty corpus starts from the regression corpus, encoded (fuzz/frontends/seeds.py); a run
    # bounded by --runs runs exactly that many inputs from the corpus it is given.
    seeds = seed_dirs(corpus, artifacts) if runs is None else []
    base_argv = [str(FUZZER), str(corpus), *seeds, f"-artifact_prefix={artifacts}/", "-print_final_stats=1", "-max_len=512"]
    if max_time is not None:
        base_argv.append(f"-max_total_time={max_time}")
    if runs is not None:
        base_argv.append(f"-runs={runs}")
    if fork:
        base_argv.append(f"-fork={fork}")
    base_argv += dict_argv(extra) + extra
    env = dict(
        os.environ,
        TCFUZZ_ARTIFACTS=str(artifacts),
        TCFUZZ_OLD=old,
        TCFUZZ_NEW=new,
        TCFUZZ_MODEL_ORDER=model_order,
        TCFUZZ_RUN=run_id,
        TCFUZZ_ENGINE_GROUP="1",
        **{KERNEL_ENV: str(kernel_every)},
        TCFUZZ_ARCH=arch or "",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        # a plugin module next to the caller imports in the child, which runs in the artifact directory
        PYTHONPATH=os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH", "")) if p),
    )
    started, started_at = time.monotonic(), time.time()
    argvs = [[*base_argv, f"-seed={s}"] for s in job_seeds]
    procs: list[subprocess.Popen] = []
    pidfile = artifacts / f".tcfuzz-engine-{run_id}.pids"
    logs = []
    with Interrupt() as interrupt:
        for k, (argv, job_seed) in enumerate(zip(argvs, job_seeds, strict=True)):
            out = None  # -v with one job: libFuzzer talks to the terminal
            if len(argvs) > 1 or not verbose:
                out = open(artifacts / f"fuzz-{run_id}-job{k}.log", "wb")
                logs.append(out)
            procs.append(
                subprocess.Popen(
                    argv,
                    env=dict(env, TCFUZZ_SEED=str(job_seed)),
                    cwd=artifacts,
                    start_new_session=True,
                    stdout=out,
                    stderr=subprocess.STDOUT if out else None,
                )
            )
            pidfile.write_text("".join(f"{p.pid}\n" for p in procs))
        stopping_since = None
        history: list[dict] = []  # the status samples: summary.json's `history`, the report's plots
        last_progress = time.monotonic()
        every = float(os.environ.get("TCFUZZ_PROGRESS_EVERY", "5"))
        while any(p.poll() is None for p in procs):
            if interrupt.signum is not None and stopping_since is None:
                stopping_since = time.monotonic()
                for p in procs:
                    kill_group(p.pid, signal.SIGTERM)
            if stopping_since is not None and time.monotonic() - stopping_since > STOP_GRACE:
                for p in procs:
                    kill_group(p.pid, signal.SIGKILL)
            if time.monotonic() - last_progress >= every:
                last_progress = time.monotonic()
                history.append(progress_sample(artifacts, run_id, time.monotonic() - started))
                if logs:  # with -v and one job, libFuzzer's own lines carry tcfuzz's
                    print(progress_line(history[-1]), file=sys.stderr, flush=True)
            time.sleep(0.05)
        for p in procs:  # -fork jobs or anything else left in the groups
            kill_group(p.pid, signal.SIGKILL)
        pidfile.unlink(missing_ok=True)
        for f in logs:
            f.close()
        log_paths = [Path(f.name) for f in logs]
        summary = build_summary(
            artifacts,
            run_id=run_id,
            elapsed=time.monotonic() - started,
            engine_exits=[p.returncode for p in procs],
            interrupted=interrupt.signum,
            started_at=started_at,
            ignore_known=ignore_known,
            settings={
                "seed": seed,
                "job_seeds": job_seeds,
                "model_order": model_order,
                "codegens": {"old": old, "new": new},
                "argv": argvs,
            },
        )
        summary["history"] = [*history, progress_sample(artifacts, run_id, time.monotonic() - started)]
        kernel = [s["kernel"] for s in read_stats(artifacts) if s.get("run") == run_id and "kernel" in s]
        if kernel:  # `--kernel N`: the live kernel as a fourth voter on every Nth world
            summary["kernel"] = merge_kernel_stats(kernel)
            if summary["kernel"]["disagreements"] and summary["exit_status"] == 0:
                summary["exit_status"] = 1
        write_reports(summary, summary_path, junit_path)
    print_table(summary, summary_path, junit_path, log_paths)
    return summary["exit_status"]


def log_tail(path: Path, lines: int = 15) -> str:
    """The end of an engine's log: what a failed engine said, without the whole chatter."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def print_table(summary: dict, summary_path: Path, junit_path: Path, log_paths: Sequence[Path] = ()) -> None:
    this = summary["this_run"]
    print(
        f"tcfuzz fuzz: {this['inputs']} inputs, {this['cases']} cases in {this['elapsed']:.0f} s "
        f"({this['exec_per_s']:.0f} inputs/s, {this['cases_per_s']:.0f} cases/s), "
        f"{sum(f['count'] for f in summary['findings'])} divergences, {len(summary['findings'])} findings; "
        f"status {summary['status']}"
    )
    for f in sorted(summary["findings"], key=lambda f: (f["status"] != "unexplained", -f["count"])):
        label = "NEW" if f["status"] == "unexplained" else f"known: {'+'.join(f['causes'])}"
        order = "" if f["model_order"] == "jit" else f" ({f['model_order']} order)"
        print(f"{f['count']:6d}  {f['signature']}{order}  [{label}]  {f['artifacts'][0]}")
    for crash in summary["engine_crashes"]:
        print(f"engine crash input (no verdict): {crash}")
    if summary["status"] == ENGINE_ERROR:
        print(f"tcfuzz fuzz: the engine failed: exit statuses {summary['engine_exits']}", file=sys.stderr)
        for path, status in zip(log_paths, summary["engine_exits"], strict=False):
            if status not in (0, None):
                print(f"--- the end of {path}:\n{log_tail(path)}", file=sys.stderr)
    if summary["interrupted_by"]:
        print(f"tcfuzz fuzz: interrupted by {summary['interrupted_by']}", file=sys.stderr)
    kernel = summary.get("kernel")
    if kernel:
        print(
            f"kernel: {kernel['worlds']} worlds, {kernel['runs']} runs compared, "
            f"{len(kernel['disagreements'])} kernel/model disagreements"
        )
        for line, path in kernel["disagreements"].items():
            print(f"        {line}  {path}")
    print(f"summary {summary_path}, junit {junit_path}")
    if log_paths:
        print(f"libFuzzer's log: {', '.join(map(str, log_paths))} (-v shows it instead)")
