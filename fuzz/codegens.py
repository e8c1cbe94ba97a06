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


# The default codegens' arm64 back ends: a world whose profile names arm64 runs them instead.
ARCH_TWINS = {
    OLD_DEFAULT: {"arm64": "tcfuzz.jit_old.arm64:CODEGEN"},
    NEW_DEFAULT: {"arm64": "tcfuzz.jit_new.arm64:CODEGEN"},
}


def codegen_arch(codegen: Codegen) -> str:
    return getattr(codegen, "arch", "x86_64")


def for_arch(codegen: Codegen, arch: str) -> Codegen:
    """The codegen that runs a world of `arch`: itself, or a default codegen's twin. Any other
    codegen of the wrong architecture (a developer's variant, a planted mutant) is an error, never
    silently replaced by the unmodified twin."""
    if codegen_arch(codegen) == arch:
        return codegen
    for spec, twins in ARCH_TWINS.items():
        if arch in twins and codegen is load_codegen(spec):
            return load_codegen(twins[arch])
    raise PluginError(f"codegen {codegen.name!r} emits {codegen_arch(codegen)} code; the world's profile is {arch}")
