"""The command line's one error type, in its own module so every command module raises the same class
(also when main.py runs as `python -m tcfuzz.cli.main`)."""

from __future__ import annotations

from pathlib import Path

from tcfuzz.triage.artifacts import OutputPathError, writable_dir


class UsageError(Exception):
    """Bad input: reported on one line, exit status 2."""


def output_dir(path: str | Path, flag: str) -> Path:
    """An output directory checked (and made) before any work; any OSError a later write meets is
    turned into one line by main() as well."""
    try:
        return writable_dir(path, flag)
    except OutputPathError as e:
        raise UsageError(str(e)) from None
