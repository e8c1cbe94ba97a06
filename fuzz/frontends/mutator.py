"""A structure-aware libFuzzer mutator (Atheris `custom_mutator`), on when TCFUZZ_MUTATOR=structural.

Half the time the input is decoded to its world (fuzz/gen/worlds.py), changed the way the bugs of a
tail-call patch hide — a site added, a site's map poisoned, a stack depth moved across a multiple of
8, a max_entries moved to an edge (2^28 - 44, 2^31, 2^32 - 1, ...), a program added, a map operation
added — and encoded back (fuzz/gen/encode.py, exact for every world the generator makes); the other
half, and whenever the change does not give a valid world, libFuzzer's own mutation (`atheris.Mutate`).
Not instrumented: which mutation ran is not coverage of the target.
"""

from __future__ import annotations

import dataclasses
import random

from tcfuzz.gen.encode import encode_input
from tcfuzz.gen.worlds import BATCH_SIZES, MAX_ENTRIES_EDGES, STACK_DEPTHS, ByteSource, build_world
from tcfuzz.model.bpf import round_up
from tcfuzz.model.world import U32_MAX, MapOp, ProgramSpec, SiteSpec, World, WorldError, index_mask

EDGES = sorted(set(MAX_ENTRIES_EDGES) | {2**28 - 45, 2**28 - 44, 2**28 - 43, 2**31 - 2, 2**32 - 1})


def parse(data: bytes) -> tuple[bool, World, int, bytes]:
    """(batch?, world, batch size index, tail) as decode_input reads them."""
    src = ByteSource(data)
    batch = src.int(0, 3) != 0
    world = build_world(src)
    size = src.int(0, 3) if batch else 0
    return batch, world, size, data[src.pos :]


def arrays(world: World):
    return [m for m in world.maps if m.kind == "prog_array"]


def add_site(world: World, rng: random.Random) -> World:
    progs = [p for p in world.programs if len(p.sites) < 3]
    prog = rng.choice(progs)
    array = rng.choice(arrays(world))
    key = rng.choice([None, None, 0, array.max_entries - 1, array.max_entries]) if array.max_entries <= U32_MAX else None
    site = SiteSpec((array.id,), key if key is None or key <= U32_MAX else None)
    return _with_program(world, dataclasses.replace(prog, sites=(*prog.sites, site)))


def poison(world: World, rng: random.Random) -> World:
    candidates = [
        (p, j, s)
        for p in world.programs
        for j, s in enumerate(p.sites)
        if len(s.maps) == 1 and not world.map(s.maps[0]).unpriv and any(m.id != s.maps[0] and not m.unpriv for m in arrays(world))
    ]
    prog, j, site = rng.choice(candidates)
    other = rng.choice([m.id for m in arrays(world) if m.id != site.maps[0] and not m.unpriv])
    sites = list(prog.sites)
    sites[j] = SiteSpec((site.maps[0], other), site.key)
    return _with_program(world, dataclasses.replace(prog, sites=tuple(sites)))


def bump_stack(world: World, rng: random.Random) -> World:
    prog = rng.choice(world.programs)
    other = [d for d in STACK_DEPTHS if round_up(d, 8) != round_up(prog.stack_depth, 8) and (not prog.subprog or d <= 224)]
    return _with_program(world, dataclasses.replace(prog, stack_depth=rng.choice(other)))


def edge_max_entries(world: World, rng: random.Random) -> World:
    array = rng.choice(arrays(world))
    max_entries = rng.choice([e for e in EDGES if e != array.max_entries])
    slots = {k: v for k, v in array.slots.items() if k < max_entries}
    unpriv = array.unpriv and index_mask(max_entries) < U32_MAX
    new = dataclasses.replace(array, max_entries=max_entries, slots=slots, unpriv=unpriv)
    return dataclasses.replace(world, maps=tuple(new if m.id == array.id else m for m in world.maps))


def add_program(world: World, rng: random.Random) -> World:
    pid = len(world.programs)
    array = rng.choice(arrays(world))
    prog = ProgramSpec(pid, (SiteSpec((array.id,)),) if rng.random() < 0.7 else (), rng.choice(STACK_DEPTHS))
    slot = rng.choice([0, 1, 2, array.max_entries - 1])
    maps = tuple(
        dataclasses.replace(m, slots={**m.slots, slot: pid}) if m.id == array.id and slot < m.max_entries else m
        for m in world.maps
    )
    return dataclasses.replace(world, maps=maps, programs=(*world.programs, prog))


def add_op(world: World, rng: random.Random) -> World:
    r = rng.randrange(len(world.runs))
    run = world.runs[r]
    array = rng.choice(arrays(world))
    index = rng.choice([0, 1, array.max_entries - 1, *array.slots])
    op = (
        MapOp("delete", array.id, index)
        if rng.random() < 0.4
        else MapOp("update", array.id, index, rng.choice(world.programs).id)
    )
    runs = list(world.runs)
    runs[r] = dataclasses.replace(run, ops=(*run.ops, op))
    return dataclasses.replace(world, runs=tuple(runs))


def _with_program(world: World, prog: ProgramSpec) -> World:
    return dataclasses.replace(world, programs=tuple(prog if p.id == prog.id else p for p in world.programs))


MUTATIONS = (add_site, poison, bump_stack, edge_max_entries, add_program, add_op)


def structural(data: bytes, seed: int) -> bytes | None:
    """One structural mutation of the input's world, encoded; None when none applies."""
    rng = random.Random(seed)
    batch, world, size, tail = parse(data)
    for mutation in rng.sample(MUTATIONS, len(MUTATIONS)):
        try:
            changed = mutation(world, rng)
        except (IndexError, ValueError, WorldError):  # nothing to apply it to, or an invalid world
            continue
        return encode_input(changed, BATCH_SIZES[size] if batch else None, tail)
    return None


def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    import atheris

    if seed % 2 == 0:
        out = structural(data, seed)
        if out is not None and len(out) <= max_size:
            return out
    return atheris.Mutate(data, max_size)
