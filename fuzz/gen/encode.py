"""World -> fuzzer bytes: the inverse of the decoder (fuzz/gen/worlds.py `build_world`, `decode_input`).

`encode(world)` walks `build_world`'s choices in its order and writes, for each, the bytes
`ByteSource.int(lo, hi)` reads back as that choice. A world the generator can make round-trips
exactly (`decode(encode(w)) == w`); any other world (a hand-written corpus entry with other ids, more
programs, a stack depth outside the generator's list) is encoded as the nearest world the generator
makes: ids renumbered in order, counts clamped to the generator's ranges, a stack depth replaced by
the listed one with the same rounding to 8, a profile by its preset of the same name. So the
regression corpus becomes a seed corpus (fuzz/frontends/seeds.py) of fuzzer inputs that start where the
known bugs live.

If the generator changes, `test_encode_round_trips` fails on the generator's own worlds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from tcfuzz.gen.worlds import BATCH_SIZES, HIGH_BITS, MAX_ENTRIES_EDGES, PROFILES, STACK_DEPTHS
from tcfuzz.model.bpf import CALLEE_SAVED, round_up
from tcfuzz.model.world import U32_MAX, MapSpec, ProgramSpec, SiteSpec, World, index_mask

T = TypeVar("T")
Int = int  # the builtin, for annotations inside Writer (whose `int` is a method)


class Writer:
    """Records choices as ByteSource reads them: big-endian, just enough bytes for the span."""

    def __init__(self) -> None:
        self.out = bytearray()

    def int(self, lo: int, hi: int, value: int) -> int:
        value = min(max(value, lo), hi)
        span = hi - lo
        if span > 0:
            n = (span.bit_length() + 7) // 8
            self.out += (value - lo).to_bytes(n, "big")
        return value

    def pick(self, items: Sequence[T], value: object) -> T:
        return items[self.int(0, len(items) - 1, items.index(value) if value in items else 0)]

    def coin(self, one_in: Int, value: bool) -> bool:
        return self.int(0, one_in - 1, one_in - 1 if value else 0) == one_in - 1


def index_near(w: Writer, max_entries: int, value: int) -> int:
    """Inverse of worlds.index_near: the listed edge when `value` is one, else the ranged choice."""
    edges = [0, max_entries - 1, max_entries, max_entries + 1]
    value &= U32_MAX
    for k, edge in enumerate(edges):
        if edge & U32_MAX == value:
            w.int(0, 5, k)
            return value
    if value <= min(max_entries + 2, U32_MAX):
        w.int(0, 5, 4)
        return w.int(0, min(max_entries + 2, U32_MAX), value)
    w.int(0, 5, 5)
    return w.int(0, U32_MAX, value)


def nearest_stack(depth: int) -> int:
    if depth in STACK_DEPTHS:
        return depth
    same_frame = [d for d in STACK_DEPTHS if round_up(d, 8) == round_up(depth, 8)]
    return same_frame[0] if same_frame else min(STACK_DEPTHS, key=lambda d: (abs(d - depth), d))


def encode_world(w: Writer, world: World) -> None:
    """Write `build_world`'s choices for `world` (or the nearest world it makes)."""
    names = [p.name for p in PROFILES]
    profile = w.pick(
        PROFILES,
        world.profile
        if world.profile in PROFILES
        else PROFILES[names.index(world.profile.name)]
        if world.profile.name in names
        else PROFILES[0],
    )
    arrays_in = [m for m in world.maps if m.kind == "prog_array"][:3] or [MapSpec(0, 4)]
    fillers_in = [m for m in world.maps if m.kind == "filler"]
    progs_in = list(world.programs)[:4]
    n_progs = w.int(1, 4, len(progs_in))
    n_arrays = w.int(1, 3, len(arrays_in))
    filler_choices = [0, 0, 1, 2, profile.max_used_maps - n_arrays]
    n_fillers = w.pick(filler_choices, len(fillers_in) if len(fillers_in) in filler_choices else 0)
    del n_fillers
    map_id = {m.id: k for k, m in enumerate(arrays_in)}  # old id -> generator id
    prog_id = {p.id: k for k, p in enumerate(progs_in)}

    def new_prog(old: int) -> int:
        return prog_id.get(old, 0)

    arrays = []
    for a, spec in enumerate(arrays_in):
        if spec.max_entries in MAX_ENTRIES_EDGES:
            w.coin(8, False)
            max_entries = w.pick(MAX_ENTRIES_EDGES, spec.max_entries)
        else:
            w.coin(8, True)
            max_entries = w.int(1, U32_MAX, spec.max_entries)
        unpriv = w.coin(4, spec.unpriv) and index_mask(max_entries) < U32_MAX
        direct = {s.key for p in progs_in for s in p.sites if s.key is not None and s.maps == (spec.id,)}
        at_load = {k: v for k, v in spec.slots.items() if v in prog_id and k < max_entries}
        listed = [(k, v) for k, v in sorted(at_load.items()) if k not in direct][:3]  # the rest: filled below
        slots = {}
        w.int(0, 3, len(listed))
        for k, v in listed:
            index = index_near(w, max_entries, k)
            if index < max_entries:
                slots[index] = w.int(0, n_progs - 1, new_prog(v))
        arrays.append((spec, MapSpec(a, max_entries, unpriv=unpriv, slots=slots)))
    early = not world.maps or world.maps[0].kind == "prog_array"
    w.coin(2, early)

    programs = []
    for pid, prog in enumerate(progs_in):
        sites_in = list(prog.sites)[:3]
        n_sites = w.int(0, 3, len(sites_in)) if pid else w.int(1, 3, len(sites_in))
        if not sites_in and not pid:
            sites_in = [SiteSpec((arrays_in[0].id,))]
        sites = []
        for site in sites_in[:n_sites]:
            first_old = site.maps[0] if site.maps[0] in map_id else arrays_in[0].id
            first = arrays[w.int(0, n_arrays - 1, map_id[first_old])][1]
            others = [g for _, g in arrays if g is not first and not g.unpriv]
            site_maps: tuple[int, ...] = (first.id,)
            if others and not first.unpriv:
                second = [map_id[m] for m in site.maps[1:] if m in map_id and map_id[m] != first.id]
                if w.coin(3, bool(second)):
                    other_ids = [g.id for g in others]
                    site_maps = (
                        first.id,
                        others[
                            w.int(0, len(others) - 1, other_ids.index(second[0]) if second and second[0] in other_ids else 0)
                        ].id,
                    )
            key = None
            if w.coin(3, site.key is not None):
                key = index_near(w, first.max_entries, site.key or 0)
            sites.append(SiteSpec(site_maps, key))
        subprog = w.coin(6, prog.subprog)
        stack = w.pick(STACK_DEPTHS, nearest_stack(prog.stack_depth))
        regs = tuple(r for r in CALLEE_SAVED if w.coin(3, r in prog.callee_regs))
        w.coin(8, prog.exception_boundary)
        w.coin(8, not prog.env.bpf_capable)
        w.coin(8, prog.env.blinding_requested)
        programs.append(ProgramSpec(pid, tuple(sites), min(stack, 224) if subprog else stack, regs, subprog=subprog))

    for spec, gen in arrays:
        keys = sorted({s.key for p in programs for s in p.sites if s.key is not None and s.maps == (gen.id,)})
        for k in keys:
            if k < gen.max_entries and k not in gen.slots:
                old_key = next(
                    (
                        s.key
                        for p in progs_in
                        for s in p.sites
                        if s.maps == (spec.id,) and s.key is not None and (s.key & U32_MAX) == k
                    ),
                    k,
                )
                fill = spec.slots.get(old_key)
                if w.coin(2, fill is not None and fill in prog_id):
                    w.int(0, n_progs - 1, new_prog(fill or 0))
                    gen.slots[k] = 0  # only membership matters below

    direct_slots = sorted({(m, s.key) for p in programs for s in p.sites if s.key is not None for m in s.maps})
    by_gen = {g.id: g for _, g in arrays}
    runs_in = list(world.runs)[:3]
    w.int(1, 3, len(runs_in))
    for r, run in enumerate(runs_in):
        ops_in = [op for op in run.ops if op.map in map_id][: (2 if r else 1)]
        w.int(0, 2 if r else 1, len(ops_in))
        for op in ops_in:
            target = (map_id[op.map], op.index)
            if direct_slots:
                on_direct = w.coin(2, target in direct_slots)
                if on_direct:
                    w.int(0, len(direct_slots) - 1, direct_slots.index(target))
                    if not w.coin(2, op.op == "delete"):
                        w.int(0, n_progs - 1, new_prog(op.prog or 0))
                    continue
            gen = by_gen[w.int(0, n_arrays - 1, map_id[op.map])]
            index_near(w, gen.max_entries, op.index)
            if not w.coin(3, op.op == "delete"):
                w.int(0, n_progs - 1, new_prog(op.prog or 0))
        for pid, prog in enumerate(programs):
            for j, site in enumerate(prog.sites):
                if site.key is None or len(site.maps) > 1:
                    given = run.input_for(progs_in[pid].id, j)
                    chosen_old = given.map if given.map in map_id else None
                    chosen = w.int(
                        0,
                        len(site.maps) - 1,
                        site.maps.index(map_id[chosen_old]) if chosen_old is not None and map_id[chosen_old] in site.maps else 0,
                    )
                    index_near(w, by_gen[site.maps[chosen]].max_entries, given.key & U32_MAX)
                    high = given.key & ~U32_MAX
                    w.pick(HIGH_BITS, high if high in HIGH_BITS else 0)
        w.int(0, n_progs - 1, new_prog(run.entry))
        counts = [None, None, None, 0, 31, 32, 33]
        w.pick(counts, run.tail_call_cnt if run.tail_call_cnt in counts else None)


def encode(world: World) -> bytes:
    """The fuzzer input that decodes (worlds.decode) to `world`, or to the nearest world the generator makes."""
    w = Writer()
    encode_world(w, world)
    return bytes(w.out)


def encode_input(world: World, batch: int | None = None, tail: bytes = b"") -> bytes:
    """A `decode_input` input: mode 0 (the world, run as is), or with `batch` (one of BATCH_SIZES) a
    batch of that many cases for the world's first run, drawn from a seed that hashes `tail`."""
    w = Writer()
    w.int(0, 3, 0 if batch is None else 1)
    encode_world(w, world)
    if batch is not None:
        w.pick(list(BATCH_SIZES), batch)
    return bytes(w.out) + tail
