"""Terminal habits shared by every command: output sized to the terminal and never cut inside an
operand (`--width N`, `--wide`), progress bars on a TTY only (`-q` silences them), `--version`.

Listings fit themselves (tcfuzz.triage.disasm); everything else a command prints to a terminal (or
with --width) goes through `FittedStdout`, which breaks a line longer than the width at a space,
with a hanging indent, and never inside a word: a line that cannot be broken is printed whole."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
from collections.abc import Iterable, Iterator
from importlib import metadata

DEFAULT_WIDTH = 100  # when stdout is not a terminal (CI logs, pipes, files)
HANGING_INDENT = 6


def version_text() -> str:
    def dist(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    import platform

    parts = [f"tcfuzz {dist('tcfuzz')}"]
    parts += [f"{name} {dist(pkg)}" for name, pkg in (("unicorn", "unicorn"), ("capstone", "capstone"), ("z3", "z3-solver"))]
    parts.append(f"Python {platform.python_version()} ({platform.python_implementation()})")
    return "\n".join(parts)


class _Version(argparse.Action):
    """argparse's own version action reflows the text into one paragraph; this prints it as is."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def add_common_options(ap: argparse.ArgumentParser) -> None:
    """--version on the top level; --width/--wide/-q on every subcommand (added after the fact, so
    the commands' own definitions stay as they are)."""
    ap.add_argument("--version", action=_Version, nargs=0, help="tcfuzz, unicorn, capstone, z3 and Python versions")
    for action in ap._subparsers._group_actions if ap._subparsers else []:
        for sp in {id(p): p for p in getattr(action, "choices", {}).values()}.values():
            _add_to(sp)


def _add_to(sp: argparse.ArgumentParser) -> None:
    if any(a.dest == "width" for a in sp._actions):
        return
    g = sp.add_argument_group("terminal")
    g.add_argument("--width", type=int, help="columns to fit the output into (default: the terminal's, 100 when not a TTY)")
    g.add_argument("--wide", action="store_true", help="never fit: full lines, every byte shown")
    if not any("-q" in a.option_strings for a in sp._actions):
        g.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    for action in sp._actions:
        if isinstance(action, argparse._SubParsersAction):
            for nested in action.choices.values():
                _add_to(nested)


def width_from_args(args: argparse.Namespace) -> int | None:
    """The width to fit into; None means unlimited (--wide)."""
    if getattr(args, "wide", False):
        return None
    if getattr(args, "width", None):
        return max(args.width, 40)
    if sys.stdout.isatty():
        return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
    return DEFAULT_WIDTH  # not a terminal: the same layout everywhere (COLUMNS is a terminal's setting)


def prose_width(args: argparse.Namespace) -> int | None:
    """The width lines of text are re-wrapped to: on a terminal, or with an explicit --width. Piped
    or logged output keeps its lines whole (a signature stays one greppable line); listings still
    lay themselves out in `width_from_args` columns."""
    if getattr(args, "wide", False):
        return None
    if getattr(args, "width", None) or sys.stdout.isatty():
        return width_from_args(args)
    return None


def fit_line(line: str, width: int | None) -> list[str]:
    if width is None or len(line) <= width:
        return [line]
    indent = len(line) - len(line.lstrip(" "))
    wrapped = textwrap.wrap(
        line,
        width=width,
        initial_indent="",
        subsequent_indent=" " * min(indent + HANGING_INDENT, width // 2),
        break_long_words=False,
        break_on_hyphens=False,
        drop_whitespace=True,
    )
    return wrapped or [line]


class FittedStdout:
    """A text stream that fits each complete line into `width` columns (see fit_line)."""

    def __init__(self, stream, width: int | None) -> None:
        self.stream, self.width, self.pending = stream, width, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.stream.write("\n".join(fit_line(line, self.width)) + "\n")
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.stream.write("\n".join(fit_line(self.pending, self.width)))
            self.pending = ""
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def __getattr__(self, name):
        return getattr(self.stream, name)


def progress_enabled(args: argparse.Namespace) -> bool:
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def progress(args: argparse.Namespace):
    """A function (iterable, what) -> iterable that shows a tqdm bar on stderr when it is a TTY and
    -q was not given, and is the identity otherwise (nothing in CI logs)."""
    enabled = progress_enabled(args)

    def wrap(items: Iterable, what: str = "") -> Iterator:
        if not enabled:
            return iter(items)
        from tqdm import tqdm

        return iter(tqdm(items, desc=what or args.command, leave=False, dynamic_ncols=True, file=sys.stderr))

    return wrap


class busy:
    """For a step with no loop to count (bench, triage): a bar that shows the elapsed time, ticking
    once a second, on a TTY only."""

    def __init__(self, args: argparse.Namespace, what: str) -> None:
        self.enabled, self.what = progress_enabled(args), what

    def __enter__(self):
        if self.enabled:
            import threading

            from tqdm import tqdm

            self.bar = tqdm(desc=self.what, bar_format="{desc}: {elapsed}", leave=False, file=sys.stderr)
            self.stop = threading.Event()
            self.thread = threading.Thread(target=self._tick, daemon=True)
            self.thread.start()
        return self

    def _tick(self) -> None:
        while not self.stop.wait(1.0):
            self.bar.refresh()

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.stop.set()
            self.thread.join()
            self.bar.close()


def print_result(args: argparse.Namespace, data, text) -> None:
    """A command's result: `data` as JSON with --json, else `text()` (called only then: rendering
    can be costly)."""
    if getattr(args, "json", False):
        json.dump(data, sys.stdout, indent=2)
        print()
    else:
        print(text())
