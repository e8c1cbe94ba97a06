"""Codegens named on the command line as `module:object` or `path/to/file.py:object` (the object
implements model.interfaces.Codegen). A module is found from the caller's working directory too; a
file path is relative to it. `resolve_spec` turns either into a spec any other process (the fuzz
engine's child, a later `repro`) loads the same way.

The default specs are here and only here: every command, artifact and environment default reads them.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import zlib
from pathlib import Path

from tcfuzz.model.interfaces import OPTIONAL_MEMBERS, REQUIRED_MEMBERS, Codegen

OLD_DEFAULT = "tcfuzz.jit_old:CODEGEN"
NEW_DEFAULT = "tcfuzz.jit_new:CODEGEN"
DEFAULT_SPECS = {"old": OLD_DEFAULT, "new": NEW_DEFAULT}


class PluginError(Exception):
    """A codegen spec that cannot be loaded; one line naming the spec."""


def with_defaults(obj) -> Codegen:
    """`obj` as a `Codegen`: itself when it subclasses it, else a view that takes the required
    members and any optional member `obj` defines from it, and the rest from `Codegen`'s defaults."""
    if isinstance(obj, Codegen):
        return obj
    members = {name: getattr(obj, name) for name in REQUIRED_MEMBERS + OPTIONAL_MEMBERS if hasattr(obj, name)}
    view = type(f"{type(obj).__name__}AsCodegen", (Codegen,), {})()
    view.__dict__.update(members)  # bound methods and values shadow the class defaults
    return view


def load_codegen(spec: str) -> Codegen:
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise PluginError(f"codegen {spec!r}: expected module:object")
    if _is_path(module_name):
        module = _import_file(spec, Path(module_name))
    else:
        try:
            module = _import_module(module_name)
        except ImportError as e:
            raise PluginError(f"codegen {spec!r}: cannot import {module_name}: {e}") from None
        except (Exception, SystemExit) as e:
            raise PluginError(f"codegen {spec!r}: importing {module_name} failed: {import_failure(e)}") from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise PluginError(f"codegen {spec!r}: {module_name} has no {attr}") from None
    missing = [name for name in REQUIRED_MEMBERS if not hasattr(obj, name)]
    if missing:
        raise PluginError(f"codegen {spec!r}: not a Codegen (missing {', '.join(missing)})")
    return with_defaults(obj)


def _import_module(module_name: str):
    """Import normally; failing that, as a module beside the caller (the working directory), the way
    `python -m` would find it, without leaving the directory on sys.path."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name.partition(".")[0] or os.getcwd() in sys.path:
            raise
    sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    finally:
        sys.path.remove(os.getcwd())


def _is_path(module_name: str) -> bool:
    return module_name.endswith(".py") or os.sep in module_name or "/" in module_name


def _import_file(spec: str, path: Path):
    path = path.resolve()
    if not path.is_file():
        raise PluginError(f"codegen {spec!r}: {path}: no such file")
    name = f"tcfuzz_plugin_{zlib.crc32(str(path).encode()):08x}_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise PluginError(f"codegen {spec!r}: {path}: not a Python module")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    try:
        loader_spec.loader.exec_module(module)
    except ImportError as e:
        del sys.modules[name]
        raise PluginError(f"codegen {spec!r}: cannot import {path}: {e}") from None
    except (Exception, SystemExit) as e:
        del sys.modules[name]
        raise PluginError(f"codegen {spec!r}: importing {path} failed: {import_failure(e)}") from None
    return module


def import_failure(e: BaseException) -> str:
    """One line for whatever a plugin module raised at import: a SyntaxError with its place, an
    exception with its type and first line, `sys.exit(N)` with its status (it used to end tcfuzz
    silently with that status)."""
    if isinstance(e, SystemExit):
        return f"it called sys.exit({e.code!r}) at import"
    if isinstance(e, SyntaxError):
        return f"SyntaxError at {Path(e.filename or '?').name}:{e.lineno}: {e.msg}"
    first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def resolve_spec(spec: str) -> str:
    """The spec with a file path made absolute, so it loads the same from any working directory."""
    module_name, sep, attr = spec.rpartition(":")
    if sep and _is_path(module_name):
        return f"{Path(module_name).resolve()}:{attr}"
    return spec


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
