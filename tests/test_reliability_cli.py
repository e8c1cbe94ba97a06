"""Issue 12, the command line: every failure that is not a finding is one line and exit 2 (bad
numbers refused when the command line is parsed, output paths that cannot be written, plugin
modules that fail at import), and a closed stdout is exit 141 without a traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tcfuzz.cli.main import main
from tcfuzz.triage import artifacts
from tcfuzz.triage.artifacts import read_document, write_artifact
from tcfuzz.verdict.oracle import judge

ROOT = Path(__file__).resolve().parent.parent
SHARED_LABEL = ROOT / "examples" / "shared-label.json"


def one_line(capsys, argv, *messages, status=2):
    got = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert got == status, (got, out[-300:], err[-500:])
    assert err.count("\n") == 1 and len(err) < 400 and "Traceback" not in err, err[-500:]
    for m in messages:
        assert m in err, err
    return out, err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "--cases", "0"], "argument --cases: 0: at least 1"),
        (["bench", "--cases", "-1"], "argument --cases: -1: at least 1"),
        (["bench", "--repeat", "0"], "argument --repeat: 0: at least 1"),
        (["bench", "--atheris-seconds", "-1"], "argument --atheris-seconds: -1: at least 0"),
        (["mutants", "--budget", "-1"], "argument --budget: '-1': a finite number of seconds > 0"),
        (["mutants", "--budget", "0"], "a finite number of seconds > 0"),
        (["mutants", "--budget", "nan"], "argument --budget: 'nan'"),
        (["mutants", "--budget", "inf"], "argument --budget: 'inf'"),
        (["mutants", "--only", ""], "argument --only: empty"),
        (["mutants", "--only", " , "], "argument --only: empty"),
        (["fuzz", "--fork", "-1"], "argument --fork: -1: at least 0"),
        (["fuzz", "--jobs", "0"], "argument --jobs: 0: at least 1"),
        (["fuzz", "--runs", "-5"], "argument --runs: -5: at least 0"),
        (["fuzz", "--max-time", "-1"], "argument --max-time: -1: at least 0"),
        (["fuzz", "--seed", str(2**64)], "argument --seed: 18446744073709551616: libFuzzer takes 0..4294967295"),
        (["fuzz", "--seed", "9" * 5000], "argument --seed: not an integer: '99999"),
        (["run", "--no-such-flag", "x.json"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_bad_numbers_are_refused_when_the_command_line_is_parsed(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    _, err = one_line(capsys, argv, message, "--help)")
    assert err.startswith(f"tcfuzz {argv[0]}: error: " if "unrecognized" not in message else "tcfuzz: error: ")
    assert list(tmp_path.iterdir()) == []  # nothing ran, nothing written


def test_max_time_0_is_documented_as_no_limit():
    from tcfuzz.cli.main import build_parser

    fuzz = build_parser()._subparsers._group_actions[0].choices["fuzz"]
    assert "0: no time limit" in fuzz.format_help()


@pytest.fixture
def finding(tmp_path):
    world = read_document(SHARED_LABEL).world
    return write_artifact(tmp_path / "art", world, judge(world).verdict)


def unwritable(monkeypatch, directory: Path):
    """An unwritable directory, also for root (who ignores mode bits): creating a file in it fails
    with EACCES, as it would for anyone else."""
    real = artifacts.tempfile.mkstemp

    def mkstemp(*a, dir=None, **kw):
        if dir is not None and Path(dir).resolve() == directory.resolve():
            raise PermissionError(13, "Permission denied", str(dir))
        return real(*a, dir=dir, **kw)

    monkeypatch.setattr(artifacts.tempfile, "mkstemp", mkstemp)
    if os.geteuid() != 0:
        directory.chmod(0o555)


def test_minimize_into_an_unwritable_directory(capsys, monkeypatch, finding):
    unwritable(monkeypatch, finding.parent)
    one_line(capsys, ["minimize", finding], f"{finding.parent}: Permission denied")


def test_triage_into_an_unwritable_directory(capsys, monkeypatch, finding):
    unwritable(monkeypatch, finding.parent)
    one_line(capsys, ["triage", finding.parent], f"{finding.parent}: Permission denied")


def test_corpus_add_with_a_file_for_the_corpus(capsys, tmp_path, finding):
    (tmp_path / "file").write_text("")
    one_line(capsys, ["corpus", "add", finding, "--corpus", tmp_path / "file"], str(tmp_path / "file"))


@pytest.mark.parametrize("flag", ["--corpus", "--artifacts"])
def test_fuzz_with_a_file_for_a_directory(capsys, tmp_path, flag):
    (tmp_path / "file").write_text("")
    other = "--artifacts" if flag == "--corpus" else "--corpus"
    one_line(capsys, ["fuzz", flag, tmp_path / "file", other, tmp_path / "d", "--runs", "1"], "not a directory")


def test_prove_with_a_file_for_the_artifact_directory(capsys, tmp_path):
    (tmp_path / "file").write_text("")
    one_line(
        capsys,
        ["prove", "--quick", "--kind", "direct", "--profile", "default", "--artifacts", tmp_path / "file"],
        str(tmp_path / "file"),
    )


PLUGINS = {
    "syntax": ("def broken(:\n", "SyntaxError at plug_syntax.py:1"),
    "runtime": ("raise RuntimeError('no JIT for you')\n", "RuntimeError: no JIT for you"),
    "exit": ("import sys\nsys.exit(7)\n", "it called sys.exit(7) at import"),
    "keyerror": ("{}['x']\n", "KeyError: 'x'"),
}


@pytest.mark.parametrize("kind", sorted(PLUGINS))
@pytest.mark.parametrize("by", ["path", "module"])
def test_a_plugin_that_fails_at_import_is_one_line(capsys, tmp_path, monkeypatch, kind, by):
    source, message = PLUGINS[kind]
    (tmp_path / f"plug_{kind}.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    spec = f"{tmp_path}/plug_{kind}.py:CODEGEN" if by == "path" else f"plug_{kind}:CODEGEN"
    for argv in (["run", SHARED_LABEL, "--new", spec], ["fuzz", "--runs", "1", "--old", spec]):
        one_line(capsys, argv, message)
    sys.modules.pop(f"plug_{kind}", None)


def test_a_closed_stdout_is_exit_141_without_a_traceback(tmp_path):
    """`tcfuzz repro X | head -1`, made deterministic: the reader (`true`) is gone before tcfuzz has
    imported, so its first write fails (with head, output smaller than the pipe buffer may fit)."""
    script = f'{sys.executable} -m tcfuzz.cli.main repro {SHARED_LABEL} | true; echo " ${{PIPESTATUS[0]}}"'
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.stdout.split()[-1] == "141", (done.stdout, done.stderr[-800:])
    assert done.stderr == ""
