"""Reading world files: every way a file can be unusable becomes one line naming the file and field."""
from __future__ import annotations

import json
from pathlib import Path

from model.world import World, WorldError


class InputError(Exception):
    """An unusable input file; the message starts with the path."""


def read_world(path: str | Path) -> World:
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a world file")
    try:
        text = path.read_text()
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    if not text.strip():
        raise InputError(f"{path}: empty file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    try:
        return World.from_json(data)
    except WorldError as e:
        raise InputError(f"{path}: {e}") from None
