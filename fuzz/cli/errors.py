"""The command line's one error type, in its own module so every command module raises the same class
(also when main.py runs as `python -m tcfuzz.cli.main`)."""

from __future__ import annotations

import os
from pathlib import Path


class UsageError(Exception):
    """Bad input: reported on one line, exit status 2."""


def output_dir(path: str | Path, flag: str) -> Path:
    """An output directory checked (and made) before any work, so a bad one is one line and exit 2
    instead of a traceback after the run. Any OSError a later write meets is turned into one line
    by main() as well."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path}: not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{flag} {path}: {e.strerror or e}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: not writable")
    return path
