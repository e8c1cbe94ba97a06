"""Compile once: a bounded cache of JIT images, keyed by everything that determines their bytes.

A function's image is a pure function of

    the lowered insns (with the verifier's per-site aux state on each tail-call insn),
    the verifier environment, used_maps, the kernel profile,     (what do_misc_fixups() reads)
    the frame facts (stack depth, subprog, exception boundary),  (what the JIT reads besides)
    the image address,
    and the codegen: its code.

The codegen part of the key is a *fingerprint* of what the codegen runs, never its name: the qualified
name and bytecode of every class in its MRO (and of the `jit_class` it instantiates), the bytecode,
defaults and closure cells of every function they reach, followed through module globals into the
project's and plugins' own modules (not the standard library or third-party packages). So a mutant
built by a closure factory (fuzz/selftest/systematic.py: one class body, a different `edit` per
mutant) or a repaired codegen (jit_new/causes.py: a copy with another `jit_class`) gets its own key,
and a monkeypatched emitter (a test replacing `jit_new.tail_call.emit_count_and_unwind`) changes the
fingerprint of every codegen that reaches it.

The fingerprint is computed once per codegen object and revalidated on every use against the
identities of everything it read (each global, class attribute and instance attribute it followed):
a handful of dict lookups, so a replaced function is seen the next time the codegen compiles.

Images are handed out as copies of the mutable parts (the poke table, the instruction list), so a
codegen's maintenance members cannot change a cached image. Failures (VerifierReject, JitError,
JitFault) are cached too and raised again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import operator
import os
import sys
import sysconfig
import types
from collections import OrderedDict
from typing import Any

from tcfuzz.model.interfaces import Codegen, JitImage
from tcfuzz.model.lower import Function, used_maps
from tcfuzz.model.world import ProgramSpec, World

MAX_ENTRIES = int(os.environ.get("TCFUZZ_JIT_CACHE", "4096"))  # function images; 0 disables the cache

# The standard library and installed packages: code that does not change within a process.
_LIBRARY_DIRS = tuple(
    os.path.realpath(path) + os.sep
    for path in {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    if path
)


def _is_ours(module_name: str | None) -> bool:
    """Code the fingerprint follows: tcfuzz itself and any plugin module; not the standard library
    or an installed third-party package (their code does not change within a process)."""
    if not module_name:
        return False
    top = module_name.partition(".")[0]
    if top == "tcfuzz":
        return True
    if top in sys.stdlib_module_names or top == "builtins":
        return False
    module = sys.modules.get(module_name)
    path = os.path.realpath(getattr(module, "__file__", None) or "")
    if not path:
        return False
    return not path.startswith(_LIBRARY_DIRS)


class _Fingerprint:
    """A hash of the code a codegen runs, and the (namespace, name, identity) facts it rests on."""

    def __init__(self, codegen: Codegen) -> None:
        self.h = hashlib.blake2b(digest_size=16)
        self.deps: list[tuple[Any, str, int]] = []  # (mapping, key, id(value)) to revalidate
        self.seen: set[int] = set()
        self.keep: list[Any] = []  # objects whose id() is recorded stay alive (ids are not reused)
        self.walk(type(codegen))
        if hasattr(codegen, "__dict__"):
            self.namespace(vars(codegen), "instance")
        self.digest = self.h.hexdigest()
        self.freeze()

    def put(self, *parts: object) -> None:
        for part in parts:
            self.h.update(repr(part).encode())
            self.h.update(b"\0")

    def dep(self, mapping, key: str, value) -> None:
        self.deps.append((mapping, key, id(value)))
        self.keep.append(value)

    def namespace(self, mapping, label: str) -> None:
        self.put(label, len(mapping))
        self.deps.append((mapping, "\0len", len(mapping)))
        for key in sorted(k for k in mapping if isinstance(k, str)):
            if key in ("__dict__", "__weakref__", "__doc__", "__module__", "__qualname__", "__annotations__"):
                continue
            value = mapping[key]
            self.dep(mapping, key, value)
            self.put(key)
            self.walk(value)

    def walk(self, obj: Any) -> None:
        if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
            self.put(type(obj).__name__, obj)
            return
        if id(obj) in self.seen:
            self.put("seen", getattr(obj, "__qualname__", type(obj).__qualname__))
            return
        self.seen.add(id(obj))
        self.keep.append(obj)
        if isinstance(obj, type):
            self.put("class", obj.__module__, obj.__qualname__)
            if _is_ours(obj.__module__):
                for base in obj.__mro__[1:]:
                    self.walk(base)
                self.namespace(obj.__dict__, obj.__qualname__)
            return
        if isinstance(obj, (staticmethod, classmethod)):
            self.put(type(obj).__name__)
            self.walk(obj.__func__)
            return
        if isinstance(obj, property):
            for f in (obj.fget, obj.fset, obj.fdel):
                self.walk(f)
            return
        if isinstance(obj, types.MethodType):
            self.put("method")
            self.walk(obj.__func__)
            self.walk(obj.__self__)
            return
        if isinstance(obj, types.FunctionType):
            self.put("function", obj.__module__, obj.__qualname__)
            if not _is_ours(obj.__module__):
                return
            self.code(obj.__code__, obj.__globals__)
            self.walk(obj.__defaults__)
            self.walk(obj.__kwdefaults__)
            for cell in obj.__closure__ or ():
                try:
                    self.walk(cell.cell_contents)
                except ValueError:  # an empty cell
                    self.put("empty cell")
            return
        if isinstance(obj, types.ModuleType):
            self.put("module", obj.__name__)  # its members are followed by name, from the code using them
            return
        if isinstance(obj, (tuple, list, frozenset, set)):
            items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
            self.put(type(obj).__name__, len(items))
            for item in items:
                self.walk(item)
            return
        if isinstance(obj, dict):
            self.put("dict", len(obj))
            for k, v in obj.items():
                self.walk(k)
                self.walk(v)
            return
        if isinstance(obj, (types.BuiltinFunctionType, types.WrapperDescriptorType, types.MethodDescriptorType)):
            self.put("builtin", getattr(obj, "__qualname__", repr(obj)))
            return
        if dataclasses.is_dataclass(obj) or _is_ours(type(obj).__module__):
            self.walk(type(obj))
            if hasattr(obj, "__dict__"):
                self.namespace(vars(obj), "object")
            else:
                self.put(repr(obj))
            return
        self.put("object", type(obj).__module__, type(obj).__qualname__, repr(obj))

    def code(self, code: types.CodeType, globals_: dict) -> None:
        self.put("code", code.co_code, code.co_names, code.co_varnames)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                self.code(const, globals_)
            else:
                self.walk(const)
        for name in code.co_names:  # globals (and attribute names: followed into modules they may belong to)
            if name in globals_:
                value = globals_[name]
                self.dep(globals_, name, value)
                if isinstance(value, types.ModuleType) and _is_ours(value.__name__):
                    self.module_members(value, code)
                else:
                    self.walk(value)

    def module_members(self, module: types.ModuleType, code: types.CodeType) -> None:
        """`module.name` in the code: every name the code mentions that the module defines."""
        self.put("module", module.__name__)
        members = vars(module)
        for name in code.co_names:
            if name in members and not name.startswith("__"):
                value = members[name]
                self.dep(members, name, value)
                self.walk(value)

    def freeze(self) -> None:
        """The facts to revalidate, grouped by namespace: its length, and the identity of each value
        read from it, checked by C-level loops (itemgetter, map(is_))."""
        groups: dict[int, tuple[Any, dict[str, Any]]] = {}
        lengths: dict[int, tuple[Any, int]] = {}
        for mapping, k, ident in self.deps:
            if k == "\0len":
                lengths.setdefault(id(mapping), (mapping, ident))
            else:
                groups.setdefault(id(mapping), (mapping, {}))[1].setdefault(k, mapping[k])
        self.lengths = list(lengths.values())
        self.checks = [(m, operator.itemgetter(*values), tuple(values.values())) for m, values in groups.values()]
        self.deps = []

    def valid(self) -> bool:
        for mapping, n in self.lengths:
            if len(mapping) != n:
                return False
        for mapping, get, expected in self.checks:
            try:
                got = get(mapping)
            except KeyError:
                return False
            if len(expected) == 1:
                if got is not expected[0]:
                    return False
            elif not all(map(operator.is_, got, expected)):
                return False
        return True


_MISSING = object()
_FINGERPRINTS: dict[int, tuple[Codegen, _Fingerprint]] = {}


def fingerprint(codegen: Codegen) -> str:
    """The codegen's identity for the cache: a hash of the code it runs (see the module docstring)."""
    hit = _FINGERPRINTS.get(id(codegen))
    if hit is None or hit[0] is not codegen or not hit[1].valid():
        hit = _FINGERPRINTS[id(codegen)] = (codegen, _Fingerprint(codegen))
    return hit[1].digest


@dataclasses.dataclass
class Stats:
    hits: int = 0
    misses: int = 0

    @property
    def rate(self) -> float:
        return self.hits / max(1, self.hits + self.misses)


class _Key:
    """A cache key whose hash is computed once: a lookup and the LRU bump would each rehash the whole
    tuple (every insn and map of the function), which cost about what a hit saves."""

    __slots__ = ("parts", "_hash")

    def __init__(self, parts: tuple) -> None:
        self.parts = parts
        self._hash = hash(parts)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and self._hash == other._hash and self.parts == other.parts


STATS = Stats()
# key -> (the stored key, image or failure): the LRU bump passes the stored key, found by identity.
_IMAGES: OrderedDict[_Key, tuple[_Key, JitImage | BaseException]] = OrderedDict()


def clear() -> None:
    _IMAGES.clear()
    _FINGERPRINTS.clear()
    STATS.hits = STATS.misses = 0


def _copy(image: JitImage) -> JitImage:
    """The image with fresh copies of what a caller could change (pokes, the lists)."""
    return dataclasses.replace(
        image,
        instrs=list(image.instrs),
        addrs=list(image.addrs),
        insns=list(image.insns),
        pokes=[dataclasses.replace(p) for p in image.pokes],
    )


def key(
    world: World, prog: ProgramSpec, fn: Function, codegen: Codegen, digest: str | None = None, maps: tuple | None = None
) -> tuple:
    return (
        digest or fingerprint(codegen),
        tuple(fn.insns),
        prog.env,
        maps if maps is not None else tuple(used_maps(world)),
        world.profile,
        fn.base,
        fn.stack_depth,
        fn.is_subprog,
        fn.exception_boundary,
    )


def compile_function(
    world: World, prog: ProgramSpec, fn: Function, codegen: Codegen, digest: str | None = None, maps: tuple | None = None
) -> JitImage:
    """`codegen`'s fix-up and JIT of one lowered function, from the cache when these inputs were seen;
    `digest` (`fingerprint(codegen)`) and `maps` (`tuple(used_maps(world))`), when the caller compiles
    several functions of one world in a row."""
    from tcfuzz.model.lower import verify

    if MAX_ENTRIES <= 0:
        return codegen.jit(verify(world, prog, fn, codegen, maps), world.profile, fn.base)
    k = _Key(key(world, prog, fn, codegen, digest, maps))
    entry = _IMAGES.get(k)
    if entry is not None:
        stored, hit = entry
        _IMAGES.move_to_end(stored)
        STATS.hits += 1
        if isinstance(hit, BaseException):
            raise hit.with_traceback(None)  # the same object each time: its traceback must not grow
        return _copy(hit)
    STATS.misses += 1
    try:
        image = codegen.jit(verify(world, prog, fn, codegen, maps), world.profile, fn.base)
    except Exception as e:  # VerifierReject, JitError, JitFault: the same inputs fail the same way
        from tcfuzz.model.interfaces import JitError, VerifierReject

        if isinstance(e, (JitError, VerifierReject)):
            _store(k, e.with_traceback(None))
        raise
    _store(k, _copy(image))
    return image


def _store(k: _Key, value: JitImage | BaseException) -> None:
    _IMAGES[k] = (k, value)
    while len(_IMAGES) > MAX_ENTRIES:
        _IMAGES.popitem(last=False)


__all__ = ["MAX_ENTRIES", "STATS", "clear", "compile_function", "fingerprint", "key"]
