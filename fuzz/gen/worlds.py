"""One world generator, two sources of choices: libFuzzer bytes and Hypothesis draws.

`build_world(src)` makes every decision through a `Source` (an integer in a range, a pick from a
list, a coin). `ByteSource` reads them from any byte string the way libFuzzer's
FuzzedDataProvider does, returning the smallest choice once the bytes run out, so every input
decodes to a valid world and every crash file replays. `DrawSource` asks Hypothesis instead, so
the same generator shrinks well. Choices are ordered simplest first: a short or zero input, and a
shrunk example, are small worlds.

The generator aims at the edges: max_entries near 1, 2^31 and 2^32-1; indices at max_entries-1,
max_entries, max_entries+1 and with high bits set; chains long enough to meet the 33 limit; empty
and filled slots; static, poisoned and direct sites; a prog array late in used_maps; odd stack
depths; callee-saved subsets; unpriv maps; every profile preset; map operations between runs (often on
the slot a direct call targets); runs
entered as a tail callee with a count near 33.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol, TypeVar

from tcfuzz.model.bpf import CALLEE_SAVED
from tcfuzz.model.interfaces import VerifierEnv
from tcfuzz.model.profile import PRESETS
from tcfuzz.model.world import U32_MAX, MapOp, MapSpec, ProgramSpec, RunSpec, SiteInput, SiteSpec, World, index_mask

T = TypeVar("T")

PROFILES = [PRESETS[name] for name in ("default", "ibt", "retpoline", "no-security", "lfence", "sls", "ibt-sls")]
MAX_ENTRIES_EDGES = [4, 1, 2, 3, 5, 8, 33, 2**31 - 1, 2**31, 2**31 + 1, 2**32 - 1, 2**32 - 2, 2**30, 2**29 - 1]
STACK_DEPTHS = [0, 8, 1, 17, 64, 100, 224, 256, 500, 512]
HIGH_BITS = [0, 1 << 32, 0xFFFFFFFF_00000000, 1 << 63, 0x5A5A5A5A_00000000]


class Source(Protocol):
    def int(self, lo: int, hi: int) -> int: ...


def pick(src: Source, items: Sequence[T]) -> T:
    return items[src.int(0, len(items) - 1)]


def coin(src: Source, one_in: int = 2) -> bool:
    """True with probability 1/one_in (False is the simple choice)."""
    return src.int(0, one_in - 1) == one_in - 1


class ByteSource:
    """FuzzedDataProvider-style: each choice takes just enough bytes; exhausted input reads as zeros."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def int(self, lo: int, hi: int) -> int:
        span = hi - lo
        if span <= 0:
            return lo
        value = 0
        for _ in range((span.bit_length() + 7) // 8):
            byte = self.data[self.pos] if self.pos < len(self.data) else 0
            self.pos += 1
            value = (value << 8) | byte
        return lo + value % (span + 1)


class DrawSource:
    def __init__(self, draw) -> None:
        from hypothesis import strategies as st

        self.draw, self.st = draw, st

    def int(self, lo: int, hi: int) -> int:
        return self.draw(self.st.integers(lo, hi))


def index_near(src: Source, max_entries: int) -> int:
    """An index where the bound checks bite: 0, max-1, max, max+1, or anything in u32."""
    choice = src.int(0, 5)
    if choice == 4:
        return src.int(0, min(max_entries + 2, U32_MAX))
    if choice == 5:
        return src.int(0, U32_MAX)
    return [0, max_entries - 1, max_entries, max_entries + 1][choice] & U32_MAX


def build_world(src: Source) -> World:
    profile = pick(src, PROFILES)
    n_progs = src.int(1, 4)
    n_arrays = src.int(1, 3)
    n_fillers = pick(src, [0, 0, 1, 2, profile.max_used_maps - n_arrays])
    maps: list[MapSpec] = [MapSpec(100 + i, 1, kind="filler") for i in range(n_fillers)]
    arrays = []
    for a in range(n_arrays):
        max_entries = src.int(1, U32_MAX) if coin(src, 8) else pick(src, MAX_ENTRIES_EDGES)
        unpriv = coin(src, 4) and index_mask(max_entries) < U32_MAX
        slots = {}
        for _ in range(src.int(0, 3)):
            index = index_near(src, max_entries)
            if index < max_entries:
                slots[index] = src.int(0, n_progs - 1)
        arrays.append(MapSpec(a, max_entries, unpriv=unpriv, slots=slots))
    maps = arrays + maps if coin(src) else maps + arrays  # prog arrays early or late in used_maps

    programs = []
    for pid in range(n_progs):
        sites = []
        for _ in range(src.int(0, 3) if pid else src.int(1, 3)):
            first = pick(src, arrays)
            others = [a for a in arrays if a is not first and not a.unpriv]
            if others and not first.unpriv and coin(src, 3):
                site_maps: tuple[int, ...] = (first.id, pick(src, others).id)  # poisoned
            else:
                site_maps = (first.id,)
            key = index_near(src, first.max_entries) if coin(src, 3) else None
            sites.append(SiteSpec(site_maps, key))
        subprog = coin(src, 6)
        stack = pick(src, STACK_DEPTHS)
        programs.append(
            ProgramSpec(
                pid,
                tuple(sites),
                min(stack, 224) if subprog else stack,
                tuple(r for r in CALLEE_SAVED if coin(src, 3)),
                exception_boundary=coin(src, 8),
                subprog=subprog,
                env=VerifierEnv(bpf_capable=not coin(src, 8), blinding_requested=coin(src, 8)),
            )
        )

    # A constant key's slot is filled at load half the time, so direct calls start poked and the
    # map operations below have a poke to undo.
    for a, array in enumerate(arrays):
        keys = sorted({s.key for p in programs for s in p.sites if s.key is not None and s.maps == (array.id,)})
        filled = {k: src.int(0, n_progs - 1) for k in keys if k < array.max_entries and k not in array.slots and coin(src)}
        if filled:
            arrays[a] = dataclasses.replace(array, slots={**array.slots, **filled})
    maps = [next((a for a in arrays if a.id == m.id), m) if m.kind == "prog_array" else m for m in maps]

    direct_slots = sorted({(m, s.key) for p in programs for s in p.sites if s.key is not None for m in s.maps})
    runs: list[RunSpec] = []
    for _ in range(src.int(1, 3)):
        ops = []
        for _ in range(src.int(0, 2) if runs else src.int(0, 1)):
            # Half the time the slot of a constant key: one a direct call may target, so the update or
            # delete goes through the text pokes as well as the cache.
            if direct_slots and coin(src):
                array_id, index = pick(src, direct_slots)
                delete = coin(src)
            else:
                array = pick(src, arrays)
                array_id, index, delete = array.id, index_near(src, array.max_entries), coin(src, 3)
            ops.append(MapOp("delete", array_id, index) if delete else MapOp("update", array_id, index, src.int(0, n_progs - 1)))
        ctx = []
        for p in programs:
            for j, site in enumerate(p.sites):
                if site.key is None or len(site.maps) > 1:
                    chosen = pick(src, site.maps)
                    base = index_near(src, next(a for a in arrays if a.id == chosen).max_entries)
                    ctx.append(SiteInput(p.id, j, base | pick(src, HIGH_BITS), chosen if len(site.maps) > 1 else None))
        entry = src.int(0, n_progs - 1)
        count = pick(src, [None, None, None, 0, 31, 32, 33])  # as a tail callee, near the limit
        runs.append(RunSpec(entry, tuple(ops), tuple(ctx), count))
    return World(profile, tuple(maps), tuple(programs), tuple(runs))


def decode(data: bytes) -> World:
    """Any byte string -> a valid world (the structure of every fuzzer input; see decode_input)."""
    return build_world(ByteSource(data))


def worlds():
    """The Hypothesis strategy for worlds."""
    from hypothesis import strategies as st

    @st.composite
    def _worlds(draw):
        return build_world(DrawSource(draw))

    return _worlds()


def to_batchable(world: World) -> World:
    """The nearest world the batched path covers (fuzz/machine/batch.py): its first run without map
    operations, the entry program cut to one site, and the slots that site can reach pointing at the
    entry program itself or at programs without sites."""
    import dataclasses

    run = dataclasses.replace(world.runs[0], ops=())
    entry = world.program(run.entry)
    site = entry.sites[0] if entry.sites else SiteSpec((next(m.id for m in world.maps if m.kind == "prog_array"),))
    programs = tuple(dataclasses.replace(p, sites=(site,)) if p.id == entry.id else p for p in world.programs)
    leafy = {p.id for p in programs if not p.sites or p.id == entry.id}
    maps = tuple(
        dataclasses.replace(m, slots={k: (v if v in leafy else entry.id) for k, v in m.slots.items()}) if m.id in site.maps else m
        for m in world.maps
    )
    ctx = tuple(c for c in run.ctx if c.prog != entry.id or c.site == 0)
    return World(world.profile, maps, programs, (dataclasses.replace(run, ctx=ctx),))


def batch_worlds():
    """Hypothesis strategy: worlds the batched path covers."""
    return worlds().map(to_batchable)


def single_run(world: World) -> World:
    """The world's first run, map operations included: what a batch of inputs can vary over (the
    batch makes the operations once, through the codegen's cache and poke paths, then runs its cases)."""
    return dataclasses.replace(world, runs=world.runs[:1])


BATCH_SIZES = (1024, 2048, 4096, 8192)  # inputs per batch: enough to amortize the world (compile, load)


def decode_input(data: bytes):
    """A fuzzer input -> (world, cases or None). The first choice picks the mode: 0 is one world,
    run as is; otherwise the world's first run (with its map operations) and a batch of 1024-8192 inputs
    (BATCH_SIZES) for it, drawn (fuzz/machine/batch.py random_cases) from a seed that hashes the rest
    of the input."""
    import hashlib

    import numpy as np

    from tcfuzz.machine.batch import random_cases

    src = ByteSource(data)
    mode = src.int(0, 3)
    world = build_world(src)
    if mode == 0:
        return world, None
    world = single_run(world)
    n = pick(src, BATCH_SIZES)
    seed = int.from_bytes(hashlib.sha256(data[src.pos :]).digest()[:8], "little")
    return world, random_cases(world, n, np.random.default_rng(seed))
