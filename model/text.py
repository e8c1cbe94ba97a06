"""How a value read from a file is echoed in an error line: its repr, cut to SHOWN characters, so a
hostile 10 MB value costs one short line."""

from __future__ import annotations

from typing import Any

SHOWN = 60
# The longest integer text tcfuzz parses from a file or a command line: a u64 has 20 decimal digits
# (22 as hex with 0x), and int() of thousands of digits is slow (and refused by Python past 4 300).
MAX_INT_DIGITS = 40


def shown(value: Any, limit: int = SHOWN) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({len(text)} characters)"
