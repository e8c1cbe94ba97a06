"""The one bounded, type-checked way tcfuzz reads a file it is given (world, artifact, corpus entry,
raw fuzzer input, sidecar, stats file).

What it refuses, each as one line naming the file (InputError), before any of it can hang or
blow up the process:
- anything but a regular file: a FIFO, a socket, a character or block device (`/dev/zero`), a
  directory. The file is opened with O_NONBLOCK, so opening a FIFO with no writer returns at once,
  and `fstat` of the open descriptor decides (a `.json` symlink to `/dev/zero` is a device);
- more than MAX_BYTES (at most MAX_BYTES + 1 are ever read);
- JSON nested deeper than MAX_DEPTH (checked on the text before parsing: the stdlib parser recurses),
  an integer literal longer than MAX_INT_DIGITS digits (before `int()` sees it), NaN/Infinity,
  duplicate keys in an object (never "last one wins"), text that is not UTF-8.
Types are the typed readers' business (model/world.py `_Reader`, model/profile.py): a float or a
bool where an integer belongs is refused there, naming the field. Values echoed in an error are cut
to model/text.py's SHOWN characters (`shown()`). The suffix rule (`check_suffix`) is the caller's:
`.json` exactly is JSON, another spelling of it is refused, any other name is raw fuzzer bytes.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from tcfuzz.model.text import MAX_INT_DIGITS, shown

__all__ = ["InputError", "shown", "read_bytes", "read_json", "parse_json"]

MAX_BYTES = 4 << 20  # a sidecar is a few kB; a fuzzer input at most -max_len (512)
MAX_DEPTH = 64  # a world file nests 6 deep


class InputError(Exception):
    """An unusable input file; the message starts with the path."""


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def read_bytes(path: Path, limit: int = MAX_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; never blocks, never reads more than
    limit + 1 bytes."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "something")
            raise InputError(
                f"{path}: is {kind}, not a file" if kind == "a directory" else f"{path}: is {kind}, not a regular file"
            )
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise InputError(f"{path}: larger than {limit} bytes")
        return b"".join(chunks)
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}") from None
    finally:
        os.close(fd)


class _Refused(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"duplicate key {shown(key)}")
        out[key] = value
    return out


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"an integer of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not JSON")


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(r"[\[\]{}]")


def depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON text (strings skipped)."""
    deepest = level = 0
    for m in _BRACKETS.finditer(_STRINGS.sub("", text)):
        level += 1 if m.group() in "[{" else -1
        deepest = max(deepest, level)
    return deepest


def parse_json(raw: bytes, path: Path) -> Any:
    """Strict, bounded JSON (see the module docstring); any problem is one InputError line."""
    if not raw.strip():
        raise InputError(f"{path}: empty file")
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 JSON") from None
    if depth(text) > MAX_DEPTH:
        raise InputError(f"{path}: JSON nested deeper than {MAX_DEPTH}")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_int=_int, parse_constant=_constant)
    except _Refused as e:
        raise InputError(f"{path}: {e}") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except (ValueError, RecursionError) as e:  # belt and braces: nothing the parser raises escapes as a traceback
        raise InputError(f"{path}: unreadable JSON ({type(e).__name__})") from None


def read_json(path: Path, limit: int = MAX_BYTES) -> Any:
    return parse_json(read_bytes(path, limit), Path(path))


JSON_SUFFIX = ".json"


def is_json_name(path: Path) -> bool:
    """The suffix rule: `.json`, exactly, is JSON; any other spelling of it (`.JSON`, `.Json`) is
    refused by `check_suffix`, never guessed at."""
    return Path(path).suffix == JSON_SUFFIX


def check_suffix(path: Path) -> None:
    suffix = Path(path).suffix
    if suffix != JSON_SUFFIX and suffix.lower() == JSON_SUFFIX:
        raise InputError(
            f"{path}: a JSON file must end in {JSON_SUFFIX} (lowercase); any other file is read as a raw fuzzer input"
        )
