"""Terminal habits: output fitted to the width without cutting an operand, --version, progress only
on a TTY, and every README command's output within 100 columns."""

import json
import re
import shlex
from pathlib import Path

import pytest

from tcfuzz.cli import terminal
from tcfuzz.cli.main import main

ROOT = Path(__file__).resolve().parent.parent


def run(capsys, argv):
    capsys.readouterr()
    status = main(argv)
    return status, capsys.readouterr().out


def instructions(capsys, argv):
    """Every instruction text of both listings, from --json (what the text must show whole)."""
    _, out = run(capsys, [*argv, "--json"])
    doc = json.loads(out)
    return [i["insn"] for side in ("old", "new") for i in doc[side]["instructions"]]


@pytest.mark.parametrize("width", [100, 80, 60, None])
def test_disasm_shows_the_full_displacement_at_any_width(capsys, width):
    argv = ["disasm", "--kind", "static", "--max-entries", "0x80000000"]
    _, out = run(capsys, [*argv, *(["--width", str(width)] if width else ["--wide"])])
    assert "[rsi + rdx*8 + 0x160]" in out  # the operand the issue saw cut to `+ 0x16`
    for insn in instructions(capsys, argv):
        assert insn.replace("<", "<") in out, insn
    if width:
        assert max(map(len, out.splitlines())) <= width


def test_wide_shows_every_byte(capsys):
    _, out = run(capsys, ["disasm", "--kind", "static", "--wide"])
    assert "48 8b 8c d6 60 01 00 00" in out  # mov rcx, [rsi + rdx*8 + 0x160], all eight bytes


def test_fit_line_never_breaks_a_word():
    line = "  without cached-target        counterexample " + ", ".join(f"'k{i}': {i * 7919}" for i in range(30))
    pieces = terminal.fit_line(line, 60)
    assert all(len(p) <= 60 for p in pieces) and len(pieces) > 1
    assert " ".join(p.strip() for p in pieces).split() == line.split()
    assert terminal.fit_line("x" * 120, 60) == ["x" * 120]  # unbreakable: printed whole, not cut


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for name in ("tcfuzz", "unicorn", "capstone", "z3", "Python"):
        assert re.search(rf"^{name} \d", out, re.M), name


def test_progress_only_on_a_tty(monkeypatch):
    class Args:
        quiet = False
        command = "prove"

    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    items = [1, 2, 3]
    assert list(terminal.progress(Args())(items, "x")) == items and not terminal.progress_enabled(Args())
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert terminal.progress_enabled(Args())
    Args.quiet = True
    assert not terminal.progress_enabled(Args())


def readme_commands():
    """`tcfuzz ...` lines of the README's sh blocks that finish in seconds (not fuzz, bench, a full
    prove or the unbounded mutants), with placeholders and comments removed."""
    text = (ROOT / "README.md").read_text()
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if not line.startswith("tcfuzz ") or re.search(r"[A-Z]{2,}|\[|\.\.\.", line):
                continue
            words = shlex.split(line)[1:]
            if words[0] in ("fuzz", "bench", "minimize", "triage", "corpus", "report", "mutants", "prove"):
                continue
            out.append(words)
    return out


def test_the_readme_has_commands_to_check():
    assert len(readme_commands()) >= 5


@pytest.mark.parametrize("argv", readme_commands(), ids=" ".join)
def test_every_readme_command_fits_100_columns(capsys, argv, monkeypatch):
    monkeypatch.chdir(ROOT)
    _, out = run(capsys, [*argv, "--width", "100"])
    assert out and max(map(len, out.splitlines())) <= 100
    if argv[0] == "disasm" and "--json" not in argv:
        for insn in instructions(capsys, argv):
            assert insn in out, insn


@pytest.mark.parametrize(
    "argv",
    [
        ["prove", "--quick", "--kind", "direct", "--profile", "default"],
        ["mutants", "--only", "bound-check-ja,wrong-displacement"],
        ["repro", "corpus/findings/shared-label.json"],
        ["limits", "--max-used-maps", "257"],
    ],
    ids=" ".join,
)
def test_long_outputs_fit_100_columns_without_losing_a_word(capsys, argv, monkeypatch):
    monkeypatch.chdir(ROOT)
    _, wide = run(capsys, [*argv, "--wide"])
    _, fitted = run(capsys, [*argv, "--width", "100"])
    assert max(map(len, fitted.splitlines())) <= 100
    if argv[0] != "repro":  # repro's tables and listings lay out anew; the others only wrap
        strip = lambda s: re.sub(r"\d+", "N", s)
        assert strip(fitted).split() == strip(wide).split()
