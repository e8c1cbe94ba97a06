"""The run-time half of the series, proved for a codegen's own maintenance instead of assumed.

`tcfuzz prove` compares sequences from a symbolic state in which (a) a static site's cached target
`ptrs[max_entries + i]` is exact and (b) a direct site's poke state matches its slot. Both hold only
if every update and delete keeps them; this module proves that for the codegen under test, from the
members model.interfaces.Codegen declares:

cache-maintained  (patch 1/4, bpf_tail_call_target_update())
    The array is allocated zeroed (bpf_map_area_alloc()), so the invariant holds at creation; it is
    kept iff every write by update/delete of slot k lands on word `max_entries + k` and stores
    `bpf_func + X86_TAIL_CALL_OFFSET` (update) or 0 (delete). z3 checks `cache_slot()` for every
    u32 max_entries, every key below it and both allocation counts the kernel makes (max_entries, or
    the power of two index_mask + 1 of an unpriv map), and `cached_target()` for every bpf_func and
    every old value. The members are called with z3 terms; one that cannot take them is checked on
    every key of every max_entries up to 40 (priv and unpriv) and on sampled values instead.

poke-state  (bpf_tail_call_direct_fixup(), bpf_arch_poke_desc_update(), __bpf_arch_text_poke())
    The bytes of a direct site's two poke points are a function of the slot: empty -> target nop5,
    bypass `jmp bypass_addr`; program P -> target `jmp P + adj_off`, bypass nop5. Every state
    reachable from the JIT (slot empty or filled at load) by updates and deletes is enumerated to a
    fixed point with two programs, against the codegen's own `direct_fixup()`/`poke_desc_update()`;
    a poke that finds unexpected bytes (the kernel's BUG_ON) is a violation too.

A violation is a sequence of map operations; `cache_world()`/`poke_world()` make it a world that
the executor replays.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass

import z3

from tcfuzz.model.interfaces import Codegen, MapRef, PokeDescriptor
from tcfuzz.model.profile import KernelProfile
from tcfuzz.model.world import index_mask

NOP5 = bytes.fromhex("0f1f440000")
U64 = 0xFFFF_FFFF_FFFF_FFFF


@dataclass
class Violation:
    lemma: str
    detail: str
    max_entries: int = 4
    unpriv: bool = False
    key: int = 1
    ops: tuple[tuple[str, int | None], ...] = ()  # ("update", prog) / ("delete", None), in order
    filled_at_load: bool = False

    def to_json(self) -> dict:
        return dict(self.__dict__)


# --- cache-maintained -------------------------------------------------------------------------------


def _symbolic_cache(codegen: Codegen, profile: KernelProfile) -> Violation | None:
    me, key, alloc = z3.BitVecs("max_entries key alloc", 64)
    func, old = z3.BitVecs("bpf_func old", 64)
    u32 = z3.And(z3.ULE(1, me), z3.ULE(me, 0xFFFFFFFF), z3.ULT(key, me))
    rounded = z3.And(alloc & (alloc - 1) == 0, z3.UGE(alloc, me), z3.ULT(z3.LShR(alloc, 1), me))
    checks = [
        ("slot", u32, codegen.cache_slot(me, me, key) != me + key, False),
        ("slot", z3.And(u32, rounded), codegen.cache_slot(me, alloc, key) != me + key, True),
        ("update", z3.BoolVal(True), codegen.cached_target(func, old, profile) != func + profile.tail_call_offset, False),
        ("delete", z3.BoolVal(True), codegen.cached_target(None, old, profile) != 0, False),
    ]
    for what, pre, bad, unpriv in checks:
        s = z3.Solver()
        s.add(pre, bad)
        if s.check() == z3.sat:
            m = s.model()
            at = [m.eval(e, model_completion=True).as_long() for e in (me, key)]
            return cache_violation(what, at[0], unpriv, at[1])
    return None


def _concrete_cache(codegen: Codegen, profile: KernelProfile) -> Violation | None:
    for me in range(1, 41):
        for unpriv in (False, True):
            alloc = index_mask(me) + 1 if unpriv else me
            for key in range(me):
                if codegen.cache_slot(me, alloc, key) != me + key:
                    return cache_violation("slot", me, unpriv, key)
    for func in (0xFFFF_C900_0000_0000, 0x1000, U64 - 15):
        for old in (0, func + profile.tail_call_offset, 0xDEAD):
            if codegen.cached_target(func, old, profile) & U64 != (func + profile.tail_call_offset) & U64:
                return cache_violation("update", 4, False, 1)
            if codegen.cached_target(None, old, profile) != 0:
                return cache_violation("delete", 4, False, 1)
    return None


def cache_violation(what: str, me: int, unpriv: bool, key: int) -> Violation:
    """The map operations that show a broken cache write: an update read back (slot, update), or a
    delete of a slot filled at load (delete); max_entries kept small where the counterexample allows."""
    if what == "slot" and me > 40:  # any non-power-of-two max_entries shows a rounded index; keep it small
        me, key = (3, 1) if unpriv else (me, key)
    ops = (("delete", None),) if what == "delete" else (("update", 1),)
    detail = {
        "slot": f"slot {key} of a{'n unpriv' if unpriv else ''} map with max_entries {me} is cached outside ptrs[{me} + {key}]",
        "update": "an update caches something other than bpf_func + X86_TAIL_CALL_OFFSET",
        "delete": "a delete leaves the cached target non-NULL",
    }[what]
    return Violation("cache-maintained", detail, me, unpriv, key, ops, what == "delete")


def prove_cache(codegen: Codegen, profile: KernelProfile) -> Violation | None:
    """None when the codegen's cache maintenance keeps patch 1/4's invariant, else how it breaks."""
    if not codegen.cached_targets:
        return None
    try:
        return _symbolic_cache(codegen, profile)
    except (TypeError, AttributeError, z3.Z3Exception):
        return _concrete_cache(codegen, profile)


# --- poke-state -------------------------------------------------------------------------------------

TARGET, BYPASS, BYPASS_ADDR = 0x1000, 0x1010, 0x1020  # poke points of one site (addresses only matter relatively)
PROGS = {1: 0x10_0000, 2: 0x20_0000}  # bpf_func of the two programs a slot can hold


class _Busy(Exception):
    pass


def _jmp(ip: int, target: int | None) -> bytes:
    return NOP5 if target is None else b"\xe9" + struct.pack("<i", target - (ip + 5))


def _expected(slot: int | None, adj: int) -> tuple[bytes, bytes]:
    if slot is None:
        return _jmp(TARGET, None), _jmp(BYPASS, BYPASS_ADDR)
    return _jmp(TARGET, PROGS[slot] + adj), _jmp(BYPASS, None)


def prove_pokes(codegen: Codegen, profile: KernelProfile) -> Violation | None:
    """Every reachable (slot, bytes) state of one direct site, by breadth-first search to a fixed
    point; None when each matches its slot and no poke found unexpected bytes."""
    adj = profile.tail_call_offset
    poke = PokeDescriptor(MapRef(0, 4), 1, 0, TARGET, BYPASS, BYPASS_ADDR, adj)

    def step(code: dict[int, bytes], action) -> dict[int, bytes]:
        code = dict(code)

        def text_poke(ip, old_addr, new_addr):
            if code[ip] != _jmp(ip, old_addr):
                raise _Busy(f"poke at {'target' if ip == TARGET else 'bypass'} found unexpected bytes")
            code[ip] = _jmp(ip, new_addr)
            return 0

        action(text_poke)
        return code

    jitted = {TARGET: NOP5, BYPASS: _jmp(BYPASS, BYPASS_ADDR)}  # emit_bpf_tail_call_direct()
    frontier: list[tuple[int | None, dict[int, bytes], tuple, bool]] = []
    for filled in (False, True):
        slot = 1 if filled else None
        try:
            code = step(jitted, lambda tp, slot=slot: codegen.direct_fixup(poke, PROGS[slot] + adj if slot else None, tp))
        except _Busy as e:
            return Violation("poke-state", f"at load: {e}", filled_at_load=filled)
        frontier.append((slot, code, (), filled))
    seen = set()
    while frontier:
        slot, code, path, filled = frontier.pop(0)
        if (code[TARGET], code[BYPASS]) != _expected(slot, adj):
            return Violation(
                "poke-state",
                f"after {_describe(path, filled)}: the poke points do not match the slot",
                ops=path,
                filled_at_load=filled,
            )
        if (slot, code[TARGET], code[BYPASS]) in seen:
            continue
        seen.add((slot, code[TARGET], code[BYPASS]))
        for new in (1, 2, None):
            op = ("update", new) if new else ("delete", None)
            new_func = PROGS[new] if new else None
            old_func = PROGS[slot] if slot else None
            try:
                after = step(code, lambda tp, nf=new_func, of=old_func: codegen.poke_desc_update(poke, nf, of, tp))
            except _Busy as e:
                return Violation(
                    "poke-state", f"after {_describe(path + (op,), filled)}: {e}", ops=path + (op,), filled_at_load=filled
                )
            frontier.append((new, after, path + (op,), filled))
    return None


def _describe(path, filled: bool) -> str:
    ops = ", ".join(f"{op} {prog}" if prog else op for op, prog in path)
    return ("slot filled at load" if filled else "slot empty at load") + (f", then {ops}" if ops else "")


# --- violations as worlds ---------------------------------------------------------------------------


def violation_worlds(v: Violation, profile: str, direct: bool, stack_depth: int = 0) -> list:
    """violation_world(), then, for poke points left out of step with their slot (which the site
    may not show while the bypass jumps over the stale target), the same operations followed by
    each next one: the next poke then finds unexpected bytes (the kernel's BUG_ON) or the site
    runs through the stale jump."""
    worlds = [violation_world(v, profile, direct, stack_depth)]
    if v.lemma == "poke-state" and "do not match" in v.detail:
        for op in (("update", 2), ("update", 1), ("delete", None)):
            worlds.append(violation_world(dataclasses.replace(v, ops=v.ops + (op,)), profile, direct, stack_depth))
    return worlds


def violation_world(v: Violation, profile: str, direct: bool, stack_depth: int = 0):
    """A world that replays a violation: program 0 has one site on map 0 (direct with key v.key, or
    static with the key from ctx), programs 1 and 2 are leaves; one run per map operation, and a
    run before any, each calling program 0 with the key."""
    from tcfuzz.model.world import SCHEMA, World

    me = max(v.max_entries, v.key + 1)
    slots = {str(v.key): 1} if v.filled_at_load else {}
    site = {"maps": [0], "key": v.key if direct else None}
    ctx = [] if direct else [{"prog": 0, "site": 0, "key": v.key}]
    runs = [{"entry": 0, "ctx": ctx}]
    for op, prog in v.ops:
        o = {"op": op, "map": 0, "index": v.key, **({"prog": prog} if prog else {})}
        runs.append({"entry": 0, "ops": [o], "ctx": ctx})
    return World.from_json(
        {
            "schema": SCHEMA,
            "profile": profile,
            "maps": [{"id": 0, "max_entries": me, "unpriv": v.unpriv, "slots": slots}],
            "programs": [{"id": 0, "stack_depth": stack_depth, "sites": [site]}, {"id": 1}, {"id": 2}],
            "runs": runs,
        }
    )
