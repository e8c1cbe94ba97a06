"""Codegens named on the command line as `module:object` (the object implements model.interfaces.Codegen)."""

from __future__ import annotations

import importlib

from tcfuzz.model.interfaces import Codegen

OLD_DEFAULT = "tcfuzz.jit_old:CODEGEN"
NEW_DEFAULT = "tcfuzz.jit_new:CODEGEN"


class PluginError(Exception):
    """A codegen spec that cannot be loaded; one line naming the spec."""


def load_codegen(spec: str) -> Codegen:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise PluginError(f"codegen {spec!r}: expected module:object")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise PluginError(f"codegen {spec!r}: cannot import {module_name}: {e}") from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise PluginError(f"codegen {spec!r}: {module_name} has no {attr}") from None
    missing = [name for name in ("name", "cached_targets", "fixup", "jit") if not hasattr(obj, name)]
    if missing:
        raise PluginError(f"codegen {spec!r}: not a Codegen (missing {', '.join(missing)})")
    return obj
