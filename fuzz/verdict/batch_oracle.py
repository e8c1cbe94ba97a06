"""The batch oracle: the reference model for a whole case table, and the comparison that flags the
cases where a codegen's batch (fuzz/machine/batch.py) parts from it.

`model_batch` evaluates the interpreter's semantics with numpy for single-site worlds (one run, no
map operations, an entry program with one site whose slots hold itself or programs without sites);
`ChainModel` does any single-run world without map operations, advancing every case one tail call
per step (`run`), its rules also written case by case (`case`). Both models follow
model/semantics.py, and tests hold them equal to it (and `ChainModel.run` to `ChainModel.case`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from tcfuzz.machine.batch import (
    NORMAL_CALL,
    REGS,
    SCRATCH,
    Batch,
    BatchResult,
    NotLoaded,
    batch_engine,
    decode_slot,
    inputs_of,
    settled,
    slot_map,
    with_slot,
)
from tcfuzz.machine.engine import Engine
from tcfuzz.machine.executor import SENTINEL
from tcfuzz.model.interfaces import Codegen
from tcfuzz.model.layout import ENTRY_RSP, array_base, prog_struct
from tcfuzz.model.lower import FALL_THROUGH, site_aux
from tcfuzz.model.semantics import CountOrder
from tcfuzz.model.world import World


def batchable(world: World) -> bool:
    """One run, no ops, the entry has one site, and every slot of its maps holds the entry itself or a
    program without sites."""
    if len(world.runs) != 1 or world.runs[0].ops:
        return False
    entry = world.program(world.runs[0].entry)
    if len(entry.sites) != 1:
        return False
    for map_id in entry.sites[0].maps:
        for target in world.map(map_id).slots.values():
            if target != entry.id and world.program(target).sites:
                return False
    return True


def model_batch(world: World, cases: np.ndarray) -> BatchResult:
    """The interpreter's semantics (JIT counter order) for every case at once."""
    entry = world.program(world.runs[0].entry)
    site = entry.sites[0]
    inputs = inputs_of(world)
    n = len(cases)
    keys = np.full(n, site.key if site.key is not None else 0, dtype=np.uint64)
    if site.key is None:
        keys = cases[:, inputs.column(entry.id, 0, "key")].astype(np.uint64)
    if len(site.maps) > 1:
        ptrs = cases[:, inputs.column(entry.id, 0, "map")].astype(np.uint64)
        map_ids = np.select([ptrs == np.uint64(array_base(m)) for m in site.maps], list(site.maps), -1)
    else:
        map_ids = np.full(n, site.maps[0])
    count_in = cases[:, -1]
    count = np.where(count_in == np.uint64(NORMAL_CALL), 0, count_in).astype(np.int64)
    limit = world.profile.max_tail_call_cnt
    aux = site_aux(world, site)
    index = keys & np.uint64(0xFFFFFFFF)
    skip = np.zeros(n, dtype=bool)
    if aux.map_unpriv:
        bound = np.uint64(
            (aux.map.max_entries if aux.map.max_entries < 2**31 else aux.map.max_entries - 2**32) & 0xFFFFFFFFFFFFFFFF
        )
        skip = keys >= bound
        index = keys & np.uint64(aux.map.index_mask)
    max_entries = np.zeros(n, dtype=np.uint64)
    target = np.full(n, -1, dtype=np.int64)
    for m in site.maps:
        spec = world.map(m)
        sel = map_ids == m
        max_entries[sel] = spec.max_entries
        for slot, prog in spec.slots.items():
            target[sel & (index == np.uint64(slot))] = prog
    k = inputs.slot_col
    changed = cases[:, k] != np.uint64(SCRATCH)
    ptrs = np.uint64(array_base(slot_map(world)) + world.profile.ptrs_off)
    slot_index = (cases[:, k] - ptrs) // np.uint64(8)
    slot_prog = np.full(n, -1, dtype=np.int64)
    for p in world.programs:
        slot_prog[cases[:, k + 1] == np.uint64(prog_struct(p.id))] = p.id
    hit = changed & (map_ids == slot_map(world)) & (index == slot_index)
    target = np.where(hit, slot_prog, target)
    calls = ~skip & (index < max_entries) & (count < limit) & (target >= 0)
    self_call = calls & (target == entry.id)
    other = calls & ~self_call
    progs = inputs.programs
    last = np.where(other, target, entry.id)
    final = np.where(self_call, limit, np.where(other, count + 1, count))
    runs = np.zeros((n, len(progs)), dtype=np.uint64)
    for i, p in enumerate(progs):
        if p == entry.id:
            runs[:, i] = np.where(self_call, 1 + limit - count, 1)
        else:
            runs[:, i] = (other & (target == p)).astype(np.uint64)
    regs = np.zeros((n, 8), dtype=np.uint64)
    regs[:, 0] = (FALL_THROUGH + last).astype(np.uint64)
    regs[:, 1] = ENTRY_RSP
    for i, name in enumerate(REGS[2:], start=2):
        regs[:, i] = SENTINEL[name]
    home = np.full(n, entry.id) if entry.subprog else last
    column = np.searchsorted(np.array(progs), home)
    return BatchResult(
        regs, runs, np.zeros((n, len(progs)), dtype=np.uint64), np.zeros(n, dtype=bool), column, final.astype(np.uint64)
    )


class ChainModel:
    """The reference for any single-run world without map operations, with the world's lookups done
    once: `run` for a whole table, `case` for one record (model/semantics.py's rules; tests hold
    `run` equal to them and to `case`)."""

    def __init__(self, world: World, order: CountOrder = CountOrder.JIT) -> None:
        self.world = world
        self.interpreter = order is CountOrder.INTERPRETER  # count the attempt before the NULL check
        self.inputs = inputs_of(world)
        self.limit = world.profile.max_tail_call_cnt
        self.column = {p: i for i, p in enumerate(self.inputs.programs)}
        self.subprog = {p.id: p.subprog for p in world.programs}
        self.slots = {m.id: dict(m.slots) for m in world.maps}
        self.slot_map = slot_map(world)
        self.slot_col = self.inputs.slot_col
        self.slot_ptrs = array_base(self.slot_map) + world.profile.ptrs_off
        self.prog_at = {prog_struct(p.id): p.id for p in world.programs}
        self.max_entries = {m.id: m.max_entries for m in world.maps}
        self.by_ptr = {array_base(m.id): m.id for m in world.maps}
        self.sites = {}
        for p in world.programs:
            rules = []
            for j, site in enumerate(p.sites):
                aux = site_aux(world, site)
                key_col = self.inputs.columns.index((p.id, j, "key")) if site.key is None else None
                map_col = self.inputs.columns.index((p.id, j, "map")) if len(site.maps) > 1 else None
                bound = (aux.map.max_entries - (2**32 if aux.map.max_entries >= 2**31 else 0)) & (2**64 - 1)
                rules.append((site.key, key_col, map_col, site.maps[0], aux.map_unpriv, bound, aux.map.index_mask))
            self.sites[p.id] = rules

    def case(self, row) -> tuple[int, list[int], int, int]:
        """(last program, runs per column, final count, home column) for one case record."""
        slots = self.slots
        override = decode_slot(row, self.slot_col, self.slot_ptrs, self.prog_at)
        if override is not None:
            slots = dict(self.slots)
            slots[self.slot_map] = with_slot(slots[self.slot_map], *override)
        prog = self.world.runs[0].entry
        cnt = 0 if int(row[-1]) == NORMAL_CALL else int(row[-1])
        runs = [0] * len(self.column)
        runs[self.column[prog]] += 1
        home = prog if self.subprog[prog] else None
        while True:
            for key, key_col, map_col, static_map, unpriv, bound, mask in self.sites[prog]:
                r3 = key if key_col is None else int(row[key_col])
                map_id = static_map if map_col is None else self.by_ptr.get(int(row[map_col]), -1)
                if unpriv:
                    if r3 >= bound:
                        continue
                    r3 &= mask
                index = r3 & 0xFFFFFFFF
                if map_id < 0 or index >= self.max_entries[map_id] or cnt >= self.limit:
                    continue
                target = slots[map_id].get(index)
                if self.interpreter:
                    cnt += 1
                if target is None:
                    continue
                if not self.interpreter:
                    cnt += 1
                prog = target
                runs[self.column[prog]] += 1
                if home is None and self.subprog[prog]:
                    home = prog
                break
            else:
                break
        return prog, runs, cnt, self.column[home if home is not None else prog]

    def run(self, cases: np.ndarray) -> BatchResult:
        """`case` for every row at once: the chain advances one tail call per step for all the cases
        still moving, each program's sites tried in order as `case` tries them."""
        n = len(cases)
        progs = self.inputs.programs
        column_of = np.zeros(max(progs) + 1, dtype=np.int64)
        column_of[list(progs)] = np.arange(len(progs))
        subprog = np.zeros(max(progs) + 1, dtype=bool)
        subprog[[p for p in progs if self.subprog[p]]] = True
        # The slot each case sets in `slot_map` (index, program or -1 for a delete), as decode_slot reads it.
        k = self.slot_col
        sets = cases[:, k] != np.uint64(SCRATCH)
        set_index = np.where(sets, cases[:, k] - np.uint64(self.slot_ptrs), 0) // np.uint64(8)
        set_prog = np.full(n, -1, dtype=np.int64)
        for ptr, pid in self.prog_at.items():
            set_prog[cases[:, k + 1] == np.uint64(ptr)] = pid
        count_in = cases[:, -1]
        cnt = np.where(count_in == np.uint64(NORMAL_CALL), 0, count_in).astype(np.int64)
        entry = self.world.runs[0].entry
        prog = np.full(n, entry, dtype=np.int64)
        runs = np.zeros((n, len(progs)), dtype=np.uint64)
        runs[:, column_of[entry]] = 1
        home = np.full(n, entry if self.subprog[entry] else -1, dtype=np.int64)
        # What a site does with a case depends on the case's row only, not on the step: whether the
        # index passes the checks before the count's, and the target it finds (-1: an empty slot).
        site_rows: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        for p, rules in self.sites.items():
            site_rows[p] = []
            for key, key_col, map_col, static_map, unpriv, bound, mask in rules:
                r3 = np.full(n, key, dtype=np.uint64) if key_col is None else cases[:, key_col]
                if map_col is None:
                    map_id = np.full(n, static_map, dtype=np.int64)
                else:
                    ptr = cases[:, map_col]
                    map_id = np.select([ptr == np.uint64(a) for a in self.by_ptr], list(self.by_ptr.values()), -1)
                passes = np.ones(n, dtype=bool)
                if unpriv:
                    passes = r3 < np.uint64(bound)
                    r3 = r3 & np.uint64(mask)
                index = r3 & np.uint64(0xFFFFFFFF)
                target = np.full(n, -1, dtype=np.int64)
                in_bounds = np.zeros(n, dtype=bool)
                for m in [static_map] if map_col is None else [int(m) for m in np.unique(map_id) if m >= 0]:
                    on_map = map_id == m
                    in_bounds |= on_map & (index < np.uint64(self.max_entries[m]))
                    for slot, target_prog in self.slots[m].items():
                        target[on_map & (index == np.uint64(slot))] = target_prog
                overridden = sets & (map_id == self.slot_map) & (index == set_index)
                site_rows[p].append((passes & in_bounds, np.where(overridden, set_prog, target)))
        moving = np.ones(n, dtype=bool)
        while moving.any():
            at = prog.copy()
            jumped = np.zeros(n, dtype=bool)
            for p, rows_of_sites in site_rows.items():
                pending = moving & (at == p)
                for passes, target in rows_of_sites:
                    tries = pending & passes & (cnt < self.limit)
                    jump = tries & (target >= 0)
                    cnt += tries if self.interpreter else jump
                    prog = np.where(jump, target, prog)
                    rows = np.nonzero(jump)[0]
                    runs[rows, column_of[target[rows]]] += np.uint64(1)
                    home = np.where(jump & (home < 0) & subprog[np.maximum(target, 0)], target, home)
                    pending &= ~jump
                    jumped |= jump
            moving = jumped
        regs = np.zeros((n, 8), dtype=np.uint64)
        regs[:, 0] = (FALL_THROUGH + prog).astype(np.uint64)
        regs[:, 1] = ENTRY_RSP
        for i, name in enumerate(REGS[2:], start=2):
            regs[:, i] = SENTINEL[name]
        column = column_of[np.where(home >= 0, home, prog)]
        return BatchResult(regs, runs, np.zeros_like(runs), np.zeros(n, dtype=bool), column, cnt.astype(np.uint64))


def differs(machine: BatchResult, model: BatchResult) -> np.ndarray:
    """Cases where the machine's outcome differs from the model's: a fault, the registers, the run
    counts, or the count in the frame the model says holds it."""
    counter = machine.counters[np.arange(len(model.home)), model.home]
    return (
        machine.faulted
        | (machine.regs != model.regs).any(axis=1)
        | (machine.runs != model.runs).any(axis=1)
        | (counter != model.count)
    )


@dataclass
class BatchJudgement:
    cases: int
    flagged: np.ndarray  # indices where legacy, patched and model are not all equal
    # The distinct (programs run, count at the limit, patched faulted) of the batch's cases under the
    # reference (first order): what the batch reached, for the fuzzer's feedback (fuzz/frontends/target.py).
    outcomes: tuple[tuple[int, bool, bool], ...] = ()


def outcome_classes(model: BatchResult, patched: BatchResult, limit: int) -> tuple[tuple[int, bool, bool], ...]:
    runs = model.runs.sum(axis=1).astype(np.int64)
    at_limit = (model.count == np.uint64(limit)).astype(np.int64)
    codes = np.unique(runs * 4 + at_limit * 2 + patched.faulted.astype(np.int64))
    return tuple((int(c) >> 2, bool(c & 2), bool(c & 1)) for c in codes.tolist())


def judge_batch(
    world: World,
    cases: np.ndarray,
    old: Codegen,
    new: Codegen,
    engine: Engine | None = None,
    orders: tuple[CountOrder, ...] = (CountOrder.JIT,),
    max_faults: int | None = None,
) -> BatchJudgement:
    """Both codegens over the whole batch, the model (vectorized for single-site worlds in the JIT
    order, per case otherwise) in each of `orders`, compared with numpy. The flagged cases are the
    ones to re-run through `case_world` + `judge` for a verdict. A world one codegen does not load
    flags its first case: the per-case path gives the load failure as a verdict. `max_faults` stops
    each codegen's batch after that many faulted cases; `cases` of the judgement is how many ran."""
    try:
        legacy = Batch(world, old, engine or batch_engine(0)).run(cases, max_faults)
        patched = Batch(world, new, engine or batch_engine(1)).run(cases[: len(legacy.faulted)], max_faults)
    except NotLoaded:
        return BatchJudgement(len(cases), np.zeros(1, dtype=np.int64))
    if len(patched.faulted) < len(cases):  # `max_faults` cut the batch: judge the prefix both ran
        cases = cases[: len(patched.faulted)]
        legacy = BatchResult(*(None if a is None else a[: len(cases)] for a in dataclasses.astuple(legacy, tuple_factory=list)))
    reference = settled(world)  # the run's map operations, as slots
    flagged = np.zeros(len(cases), dtype=bool)
    outcomes = None
    for order in orders:
        if order is CountOrder.JIT and batchable(reference):
            model = model_batch(reference, cases)
        else:
            model = ChainModel(reference, order).run(cases)
        flagged |= differs(legacy, model) | differs(patched, model)
        if outcomes is None:
            outcomes = outcome_classes(model, patched, world.profile.max_tail_call_cnt)
    return BatchJudgement(len(cases), np.nonzero(flagged)[0], outcomes or ())
