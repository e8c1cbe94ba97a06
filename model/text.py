"""How a value read from a file is echoed in an error line: its repr, cut to SHOWN characters, so a
hostile 10 MB value costs one short line."""

from __future__ import annotations

from typing import Any

SHOWN = 60


def shown(value: Any, limit: int = SHOWN) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({len(text)} characters)"
