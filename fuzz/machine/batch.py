"""Batched execution: one loaded world, many inputs per `emu_start` (the hot path of issue 6).

An in-guest driver (emitted per world, at DRIVER in kernel text) walks a case table in guest memory.
Per case it copies the run-time inputs into ctx, puts sentinels in the callee-saved registers,
builds the harness frame (a call, or the caller's half of a tail call with the count in rax),
jumps to the entry program, and from the landing point stores the outcome into a result table:

    case   = [input_0, ..., input_k-1,                 u64 each: ctx keys and map pointers
              slot, slot_value, cache, cache_value,     one prog-array slot set for this case only
              count]                                    NORMAL_CALL for a plain call
    result = [rax, rsp, rbx, rbp, r12, r13, r14, r15, run_count[p] for each program,
              the counter slot of each program's frame]

The slot write stands for a map update or delete made before the case. For a codegen with cached
targets the cache word and its value are the codegen's own (`cache_slot()`, `cached_target()` of
model.interfaces.Codegen, computed per case from the loaded array), so a batch exercises the
codegen's cache maintenance as a map operation would; the driver saves the old words and restores
them after the case. A slot that is a direct call's key is never chosen, since a poke would be due
(generated worlds' map operations cover those).
A fault stops `emu_start`; Python marks that case, restores the slot, advances the driver's state
and restarts it. Each `emu_start` gets an instruction budget of INSNS_PER_CASE per case left, at most
BUDGET_CASES cases' worth: a case that loops burns at most two capped budgets (the rest of the one it
started in, then its own after the re-run), not one sized to the whole chunk
(a shared-label loop at the head of a 1 024-case table used to cost 4 M instructions, ~70 ms). When
the budget runs out after the driver finished a case, the case it stopped in is re-run from its start;
when it ran out within the case it started with, that case loops and is marked faulted. `left` is the
driver's commit point (decremented before the pointers move), and the slot the driver wrote is named
in STATE while it is dirty, so Python can restore and restart from any instruction of the driver.
No code hooks are installed, so a batch sees less than a per-case run (no trace, no entry check):
it is the fast filter, and every case it flags is re-run through the per-case executor, which
gives the verdict, the signature and the artifact.

The reference side and the comparison are in fuzz/verdict/batch_oracle.py.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

import numpy as np
from unicorn import UcError
from unicorn.x86_const import UC_X86_REG_RIP

from tcfuzz.jit_old.emit import Emitter
from tcfuzz.machine.engine import Engine
from tcfuzz.machine.executor import SENTINEL, Loaded, load, maintenance_fault, map_op
from tcfuzz.machine.prog_array import CacheOverrun, PokeBusy
from tcfuzz.model.bpf import round_up
from tcfuzz.model.interfaces import Codegen
from tcfuzz.model.layout import BATCH_BASE, CTX_BASE, ENTRY_RSP, KTEXT_BASE, array_base, ctx_run_count, ctx_site, prog_struct
from tcfuzz.model.world import World

DRIVER = KTEXT_BASE + 0x1000
STATE = BATCH_BASE  # u64 case pointer, result pointer, cases left, saved slot, saved cache, dirty slot, dirty cache
SCRATCH = BATCH_BASE + 0x80  # the "slot" of a case that changes none
CASES = BATCH_BASE + 0x1000
RESULTS = BATCH_BASE + 0x20_0000
TABLE_SIZE = 0x1F_F000
CHUNK = 4096  # cases written to the guest and run at a time (at most 232 bytes each: within TABLE_SIZE)
NORMAL_CALL = 2**64 - 1
INSNS_PER_CASE = 4000  # budget per case; a 34-deep chain of 1-site programs needs ~2000
BUDGET_CASES = 64  # an emu_start's budget covers at most this many cases (what a looping case burns)
REGS = ("rax", "rsp", "rbx", "rbp", "r12", "r13", "r14", "r15")
FAULT = 2**64 - 2  # rax value Python writes for a case that faulted
RANDOM_KEYS = 64  # distinct "anywhere in u32" keys per batch column ...
RANDOM_KEY_PAGES = 8  # ... in this many runs of 512 consecutive indices (a page of ptrs each)


@dataclass(frozen=True)
class Inputs:
    """Where each case's values go: ctx offsets (keys, map pointers), in case-record order."""

    ctx_offsets: tuple[int, ...]
    columns: tuple[tuple[int, int, str], ...]  # (program, site, "key" | "map") of each ctx offset
    programs: tuple[int, ...]  # program ids, sorted
    frames: tuple[int, ...]  # round_up(stack_depth, 8) of each program, same order

    def column(self, prog: int, site: int, what: str) -> int:
        return self.columns.index((prog, site, what))

    @property
    def slot_col(self) -> int:
        """Column of the slot address; slot value, cache address and cache value follow."""
        return len(self.ctx_offsets)

    @property
    def case_size(self) -> int:
        return 8 * (len(self.ctx_offsets) + 5)

    @property
    def result_size(self) -> int:
        return 8 * (len(REGS) + 2 * len(self.programs))


def inputs_of(world: World) -> Inputs:
    offsets, columns = [], []
    for prog in sorted(world.programs, key=lambda p: p.id):
        for j, site in enumerate(prog.sites):
            if site.key is None:
                offsets.append(ctx_site(prog.id, j))
                columns.append((prog.id, j, "key"))
            if len(site.maps) > 1:
                offsets.append(ctx_site(prog.id, j) + 8)
                columns.append((prog.id, j, "map"))
    progs = tuple(sorted(p.id for p in world.programs))
    return Inputs(tuple(offsets), tuple(columns), progs, tuple(round_up(world.program(p).stack_depth, 8) for p in progs))


def random_cases(world: World, n: int, rng: np.random.Generator) -> np.ndarray:
    """n case records for `world`, aimed at the edges: keys at 0, max_entries-1, max_entries,
    max_entries+1 or anywhere in u32 (RANDOM_KEYS distinct values per batch), often with high bits;
    every map of a poisoned site; plain calls and tail-callee entries with counts, half of them near 33."""
    inputs = inputs_of(world)
    cols = []
    for prog, j, what in inputs.columns:
        site = world.program(prog).sites[j]
        if what == "map":
            cols.append(np.array([array_base(m) for m in site.maps], dtype=np.uint64)[rng.integers(0, len(site.maps), n)])
            continue
        me = np.uint64(max(world.map(m).max_entries for m in site.maps))
        edges = np.array([0, me - np.uint64(1), me, me + np.uint64(1)], dtype=np.uint64) & np.uint64(0xFFFFFFFF)
        # The keys "anywhere in u32" are RANDOM_KEYS values per batch, in RANDOM_KEY_PAGES runs of 512
        # consecutive indices: each page of a huge array a key reaches is mapped when first touched,
        # and unicorn's mem_map slows with every region (a few maps cost 100 ms).
        starts = rng.integers(0, 2**32 - 512, RANDOM_KEY_PAGES, dtype=np.uint64)
        values = starts[rng.integers(0, RANDOM_KEY_PAGES, RANDOM_KEYS)] + rng.integers(0, 512, RANDOM_KEYS, dtype=np.uint64)
        anywhere = values[rng.integers(0, RANDOM_KEYS, n)]
        keys = np.where(rng.random(n) < 0.6, edges[rng.integers(0, 4, n)], anywhere)
        high = np.where(rng.random(n) < 0.3, rng.integers(0, 2**32, n, dtype=np.uint64) << np.uint64(32), 0)
        cols.append(keys | high.astype(np.uint64))
    cols += slot_columns(world, n, rng)
    counts = np.where(rng.random(n) < 0.5, rng.integers(28, 34, n), rng.integers(0, 34, n)).astype(np.uint64)
    cols.append(np.where(rng.random(n) < 0.4, np.uint64(NORMAL_CALL), counts))
    return np.stack(cols, axis=1).astype(np.uint64)


def plain_cases(values: list[list[int]], counts: list[int | None] | None = None) -> np.ndarray:
    """Case records from ctx input values (one row per case) that change no slot; count None is a
    plain call."""
    counts = counts or [None] * len(values)
    return np.array(
        [[*row, SCRATCH, 0, SCRATCH + 8, 0, NORMAL_CALL if c is None else c] for row, c in zip(values, counts, strict=True)],
        dtype=np.uint64,
    )


def slot_map(world: World) -> int:
    """The prog array whose slots a batch varies: the first map of the entry program's first site."""
    entry = world.program(world.runs[0].entry)
    return entry.sites[0].maps[0] if entry.sites else next(m.id for m in world.maps if m.kind == "prog_array")


def slot_columns(world: World, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Half the cases set one slot of `slot_map` (emptied, or pointing at a program the batch's model
    covers) before they run; the rest change nothing (their slot is SCRATCH). The cache columns
    are patch 1/4's default here; `Batch` recomputes them through the codegen under test."""
    from tcfuzz.model.layout import image_base

    spec = world.map(slot_map(world))
    direct_keys = {s.key for p in world.programs for s in p.sites if s.key is not None}
    entry = world.runs[0].entry
    targets = [None, entry] + sorted(p.id for p in world.programs if not p.sites and p.id != entry)
    me = spec.max_entries
    wanted = np.array([0, me - 1, min(2, me - 1)] + sorted(spec.slots)[:3], dtype=np.uint64)
    index = wanted[rng.integers(0, len(wanted), n)]
    choice = rng.integers(0, len(targets), n)
    use = (rng.random(n) < 0.5) & ~np.isin(index, np.array(sorted(direct_keys), dtype=np.uint64))
    ptrs = np.uint64(array_base(spec.id) + world.profile.ptrs_off)
    slot = np.where(use, ptrs + index * np.uint64(8), np.uint64(SCRATCH))
    cache = np.where(use, ptrs + (index + np.uint64(me)) * np.uint64(8), np.uint64(SCRATCH + 8))
    value = np.array([0 if t is None else prog_struct(t) for t in targets], dtype=np.uint64)[choice]
    cached = np.array([0 if t is None else image_base(t) + world.profile.tail_call_offset for t in targets], dtype=np.uint64)[
        choice
    ]
    return [slot, np.where(use, value, 0), cache, np.where(use, cached, 0)]


def settled(world: World) -> World:
    """The world with its run's map operations applied to the slots (as the reference sees them: a
    slot is a slot, however it got there), and no operations left."""
    import dataclasses

    slots = {m.id: dict(m.slots) for m in world.maps}
    for op in world.runs[0].ops:
        if op.index < world.map(op.map).max_entries:  # else -E2BIG, nothing changes
            slots[op.map] = with_slot(slots[op.map], op.index, op.prog if op.op == "update" else None)
    maps = tuple(dataclasses.replace(m, slots=slots[m.id]) for m in world.maps)
    return dataclasses.replace(world, maps=maps, runs=(dataclasses.replace(world.runs[0], ops=()),))


def decode_slot(row, col: int, slot_ptrs: int, prog_at: dict[int, int]) -> tuple[int, int | None] | None:
    """(index, program or None) a case record sets, given its slot column, &ptrs[0] of `slot_map`
    and struct bpf_prog address -> program id; None when it sets nothing."""
    addr = int(row[col])
    if addr == SCRATCH:
        return None
    return (addr - slot_ptrs) // 8, prog_at.get(int(row[col + 1]))


def with_slot(slots: dict[int, int], index: int, prog: int | None) -> dict[int, int]:
    """A copy of `slots` after the update (prog) or delete (None) of `index`."""
    changed = {k: v for k, v in slots.items() if k != index}
    if prog is not None:
        changed[index] = prog
    return changed


def slot_override(world: World, row) -> tuple[int, int | None] | None:
    """(index, program or None) a case sets in `slot_map`, or None when it sets nothing."""
    return decode_slot(
        row,
        len(inputs_of(world).ctx_offsets),
        array_base(slot_map(world)) + world.profile.ptrs_off,
        {prog_struct(p.id): p.id for p in world.programs},
    )


def rip_disp(p: Emitter, target: int, insn_len: int) -> int:
    return target - (DRIVER + p.pos + insn_len)


@functools.lru_cache(maxsize=1024)
def emit_driver(inputs: Inputs, entry_base: int, tail_call_offset: int, cached: bool) -> bytes:
    """The driver loop for one world; `cached`: the codegen keeps patch 1/4's cached half, so the
    case's slot write covers it too."""
    p = Emitter()
    frame_top = ENTRY_RSP - 16  # rbp of the entry frame
    results = {name: 8 * i for i, name in enumerate(REGS)}
    next_case = p.pos
    p.emit3_off32(0x48, 0x8B, 0x05, rip_disp(p, STATE + 16, 7))  # mov rax, qword ptr [rip + <left>]
    p.emit3(0x48, 0x85, 0xC0)  # test rax, rax
    je_done = p.pos
    p.emit2_off32(0x0F, 0x84, 0)  # je <done>
    p.emit3_off32(0x48, 0x8B, 0x35, rip_disp(p, STATE, 7))  # mov rsi, qword ptr [rip + <case>]
    for k, off in enumerate(inputs.ctx_offsets):
        p.emit3_off32(0x48, 0x8B, 0x86, 8 * k)  # mov rax, qword ptr [rsi + <k>]
        p.emit4_off32(0x48, 0x89, 0x04, 0x25, CTX_BASE + off)  # mov qword ptr [<ctx_off>], rax
    col = 8 * inputs.slot_col
    words = ((STATE + 24, STATE + 40, (col, col + 8)), (STATE + 32, STATE + 48, (col + 16, col + 24)))  # slot, cache
    for save, dirty, (addr, value) in words[: 1 + cached]:
        p.emit3_off32(0x48, 0x8B, 0x96, addr)  # mov rdx, qword ptr [rsi + <slot>]
        p.emit3(0x48, 0x8B, 0x02)  # mov rax, qword ptr [rdx]
        p.emit3_off32(0x48, 0x89, 0x05, rip_disp(p, save, 7))  # mov qword ptr [rip + <save>], rax
        p.emit3_off32(0x48, 0x89, 0x15, rip_disp(p, dirty, 7))  # mov qword ptr [rip + <dirty>], rdx
        p.emit3_off32(0x48, 0x8B, 0x86, value)  # mov rax, qword ptr [rsi + <value>]
        p.emit3(0x48, 0x89, 0x02)  # mov qword ptr [rdx], rax
    for name, (rex, op) in {
        "rbx": (0x48, 0xBB),
        "rbp": (0x48, 0xBD),
        "r12": (0x49, 0xBC),
        "r13": (0x49, 0xBD),
        "r14": (0x49, 0xBE),
        "r15": (0x49, 0xBF),
    }.items():
        p.emit2_off64(rex, op, SENTINEL[name])  # movabs <reg>, <sentinel>
    p.emit3_off32(0x48, 0xC7, 0xC4, ENTRY_RSP - 8)  # mov rsp, <entry_rsp>
    p.emit4_off32(0x48, 0xC7, 0x04, 0x24, DRIVER + 0x200)  # mov qword ptr [rsp], <landing>
    p.emit3_off32(0x48, 0xC7, 0xC7, CTX_BASE)  # mov rdi, <ctx>
    p.emit3_off32(0x48, 0xC7, 0xC1, entry_base)  # mov rcx, <bpf_func>
    p.emit3_off32(0x48, 0x8B, 0x86, inputs.case_size - 8)  # mov rax, qword ptr [rsi + <count>]
    p.emit4(0x48, 0x83, 0xF8, 0xFF)  # cmp rax, -1
    je_call = p.pos
    p.emit2(0x74, 0)  # je <call>
    p.emit1(0x55)  # push rbp
    p.emit3(0x48, 0x89, 0xE5)  # mov rbp, rsp
    p.emit4(0x48, 0x83, 0xC1, tail_call_offset)  # add rcx, <X86_TAIL_CALL_OFFSET>
    p.code[je_call + 1] = p.pos - (je_call + 2)
    p.emit2(0xFF, 0xE1)  # jmp rcx
    if p.pos > 0x200:
        raise ValueError("too many run-time inputs for the batch driver")
    p.emit_bytes(b"\xcc" * (0x200 - p.pos))  # int3 <*>
    # landing: the entry program returned here
    p.emit3_off32(0x48, 0x8B, 0x35, rip_disp(p, STATE + 8, 7))  # mov rsi, qword ptr [rip + <result>]
    p.emit3_off32(0x48, 0x89, 0x86, results["rax"])  # mov qword ptr [rsi + <rax>], rax
    p.emit3_off32(0x48, 0x89, 0xA6, results["rsp"])  # mov qword ptr [rsi + <rsp>], rsp
    p.emit3_off32(0x48, 0x89, 0x9E, results["rbx"])  # mov qword ptr [rsi + <rbx>], rbx
    p.emit3_off32(0x48, 0x89, 0xAE, results["rbp"])  # mov qword ptr [rsi + <rbp>], rbp
    p.emit3_off32(0x4C, 0x89, 0xA6, results["r12"])  # mov qword ptr [rsi + <r12>], r12
    p.emit3_off32(0x4C, 0x89, 0xAE, results["r13"])  # mov qword ptr [rsi + <r13>], r13
    p.emit3_off32(0x4C, 0x89, 0xB6, results["r14"])  # mov qword ptr [rsi + <r14>], r14
    p.emit3_off32(0x4C, 0x89, 0xBE, results["r15"])  # mov qword ptr [rsi + <r15>], r15
    base = 8 * len(REGS)
    for i, prog in enumerate(inputs.programs):
        p.emit4_off32(0x48, 0x8B, 0x04, 0x25, CTX_BASE + ctx_run_count(prog))  # mov rax, qword ptr [<run_count>]
        p.emit3_off32(0x48, 0x89, 0x86, base + 8 * i)  # mov qword ptr [rsi + <runs>], rax
        p.emit_bytes(
            b"\x48\xc7\x04\x25" + struct.pack("<I", CTX_BASE + ctx_run_count(prog)) + bytes(4)
        )  # mov qword ptr [<run_count>], 0
        p.emit4_off32(0x48, 0x8B, 0x04, 0x25, frame_top - frames_slot(inputs.frames[i]))  # mov rax, qword ptr [<tcc_slot>]
        p.emit3_off32(0x48, 0x89, 0x86, base + 8 * (len(inputs.programs) + i))  # mov qword ptr [rsi + <cnt>], rax
    p.emit3_off32(0x48, 0x8B, 0x35, rip_disp(p, STATE, 7))  # mov rsi, qword ptr [rip + <case>]
    for save, dirty, (addr, _) in words[: 1 + cached]:
        p.emit3_off32(0x48, 0x8B, 0x96, addr)  # mov rdx, qword ptr [rsi + <slot>]
        p.emit3_off32(0x48, 0x8B, 0x05, rip_disp(p, save, 7))  # mov rax, qword ptr [rip + <save>]
        p.emit3(0x48, 0x89, 0x02)  # mov qword ptr [rdx], rax
        p.emit_bytes(b"\x48\xc7\x05" + struct.pack("<i", rip_disp(p, dirty, 11)) + bytes(4))  # mov qword ptr [rip + <dirty>], 0
    # the commit point: a stop before it re-runs this case, a stop after it the next (Python moves the pointers)
    p.emit_bytes(b"\x48\x83\x2d" + struct.pack("<i", rip_disp(p, STATE + 16, 8)) + b"\x01")  # sub qword ptr [rip + <left>], 1
    p.emit_bytes(
        b"\x48\x81\x05" + struct.pack("<i", rip_disp(p, STATE, 11)) + struct.pack("<I", inputs.case_size)
    )  # add qword ptr [rip + <case>], <size>
    p.emit_bytes(
        b"\x48\x81\x05" + struct.pack("<i", rip_disp(p, STATE + 8, 11)) + struct.pack("<I", inputs.result_size)
    )  # add qword ptr [rip + <result>], <size>
    p.emit1_off32(0xE9, next_case - (p.pos + 5))  # jmp <next>
    done = p.pos
    p.code[je_done + 2 : je_done + 6] = struct.pack("<i", done - (je_done + 6))
    p.emit1(0xF4)  # hlt
    return bytes(p.code)


def frames_slot(frame: int) -> int:
    """Distance below the entry frame's rbp of a program's tail-call counter slot: rbp - R - 8."""
    return frame + 8


_ENGINES: dict[int, Engine] = {}


def batch_engine(role: int) -> Engine:
    """Engines for batches, one per role (0: old, 1: new), so both codegens stay loaded between
    batches of the same world. They guard allocation tails with poison instead of a memory hook."""
    if role not in _ENGINES:
        _ENGINES[role] = Engine(exact_tails=False)
    return _ENGINES[role]


@dataclass
class BatchResult:
    regs: np.ndarray  # (n, 8) u64: rax rsp rbx rbp r12 r13 r14 r15; rax = FAULT when faulted
    runs: np.ndarray  # (n, programs) u64
    counters: np.ndarray  # (n, programs) u64: each program's frame counter slot (machine)
    faulted: np.ndarray  # (n,) bool
    home: np.ndarray | None = None  # (n,) column of the frame that holds the count (model only)
    count: np.ndarray | None = None  # (n,) the final count (model only)


class NotLoaded(ValueError):
    """The codegen does not load the world (verifier rejection, JIT error or fault, a poke that hit
    BUG_ON): no batch can run; the per-case path turns it into a verdict."""


class Batch:
    """One world loaded under one codegen, ready to run case tables."""

    def __init__(self, world: World, codegen: Codegen, engine: Engine | None = None) -> None:
        if len(world.runs) != 1:
            raise ValueError("a batch needs a world with one run")
        self.world, self.codegen = world, codegen
        self.engine = engine or batch_engine(0)
        self.inputs = inputs_of(world)

    def _load(self) -> Loaded:
        """Load the world and the driver, unless this batch is what the engine already holds."""
        ld = self.ld = load(self.world, self.codegen, self.engine)
        if ld.load != "ok":
            raise NotLoaded(f"the world does not load under {self.codegen.name}: {ld.load} {ld.load_detail}")
        run = self.world.runs[0]
        try:  # the run's map operations, once, through the codegen's cache and poke paths
            for op in run.ops:
                if ld.dead is None:
                    map_op(ld, op)
        except (PokeBusy, CacheOverrun) as e:
            ld.dead = maintenance_fault(e)
        driver = emit_driver(
            self.inputs, ld.images[run.entry].base, self.world.profile.tail_call_offset, self.codegen.cached_targets
        )
        self.hlt = DRIVER + len(driver) - 1
        self.engine.write_code(DRIVER, driver)
        self.engine.owner = self
        return ld

    def through_cache_maintenance(self, cases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The case table with each slot write's cache word and value as this codegen's maintenance
        makes them, and the cases whose cache word lies outside the allocation (the per-case path
        reports those as the fault they are; here the write is dropped and the case marked)."""
        overrun = np.zeros(len(cases), dtype=bool)
        if not self.codegen.cached_targets:
            return cases, overrun
        col = self.inputs.slot_col
        array = self.ld.arrays[slot_map(self.world)]
        ptrs = array.base + self.world.profile.ptrs_off
        func_of = {prog_struct(pid): base for pid, base in self.ld.bpf_func.items()}
        out = cases.copy()
        writes = cases[:, col] != np.uint64(SCRATCH)
        for addr, value in np.unique(cases[writes][:, col : col + 2], axis=0).tolist():
            rows = writes & (cases[:, col] == np.uint64(addr)) & (cases[:, col + 1] == np.uint64(value))
            index = self.codegen.cache_slot(array.spec.max_entries, array.spec.alloc_entries, (addr - ptrs) // 8)
            if not 0 <= index < 2 * array.spec.alloc_entries:
                out[rows, col + 2], out[rows, col + 3], overrun[rows] = SCRATCH + 8, 0, True
                continue
            old = array.words.get(self.world.profile.ptrs_off + 8 * index, 0)
            cached = self.codegen.cached_target(func_of.get(value), old, self.world.profile) & 0xFFFF_FFFF_FFFF_FFFF
            out[rows, col + 2], out[rows, col + 3] = ptrs + 8 * index, cached
        return out, overrun

    def run(self, cases: np.ndarray, max_faults: int | None = None) -> BatchResult:
        """cases: (n, k + 1) u64 in case-record order. With `max_faults`, the batch stops after the
        case that makes that many faults: the result covers the cases run, a prefix of `cases`.
        The table goes to the guest CHUNK cases at a time, so a batch that stops early pays only
        for the chunks it reached."""
        if getattr(self.engine, "owner", None) is not self:
            self._load()
        n = len(cases)
        if self.ld.dead is not None:  # the kernel hit BUG_ON in the run's map operations: every case faults
            m = len(self.inputs.programs)
            zeros = np.zeros((n, m), dtype=np.uint64)
            return BatchResult(np.zeros((n, 8), dtype=np.uint64), zeros, zeros.copy(), np.ones(n, dtype=bool))
        parts: list[BatchResult] = []
        faults = 0
        for start in range(0, n, CHUNK):
            chunk = cases[start : start + CHUNK]
            part = self._run_chunk(chunk, None if max_faults is None else max_faults - faults)
            parts.append(part)
            faults += int(part.faulted.sum())
            if max_faults is not None and faults >= max_faults:
                break
        if len(parts) == 1:
            return parts[0]
        return BatchResult(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("regs", "runs", "counters", "faulted")))

    def _run_chunk(self, cases: np.ndarray, max_faults: int | None) -> BatchResult:
        uc = self.engine.uc
        n = len(cases)
        cases, overrun = self.through_cache_maintenance(np.ascontiguousarray(cases, dtype=np.uint64))
        if cases.nbytes > TABLE_SIZE or n * self.inputs.result_size > TABLE_SIZE:
            raise ValueError("batch too large for the case/result tables")
        uc.mem_write(CTX_BASE, bytes(0x1000))
        uc.mem_write(CASES, cases.tobytes())
        uc.mem_write(STATE, struct.pack("<QQQQQQQ", CASES, RESULTS, n, 0, 0, 0, 0))
        faulted = overrun.copy()
        left = n
        while left:
            self.engine.fault = None
            crashed = False
            try:
                uc.emu_start(DRIVER, 0, count=INSNS_PER_CASE * min(left, BUDGET_CASES))
            except UcError:
                crashed = True
            crashed = crashed or self.engine.fault is not None
            started_with, left = left, struct.unpack("<Q", uc.mem_read(STATE + 16, 8))[0]
            if left == 0:
                break
            if uc.reg_read(UC_X86_REG_RIP) == self.hlt + 1:
                crashed = True  # the case jumped to the driver's hlt
            # Stopped in case i: a fault, or the budget ran out. Undo the case's slot write and run
            # counts, then re-run it (the budget ran out after other cases finished) or mark it.
            i = n - left
            self._restore_dirty_slots()
            uc.mem_write(CTX_BASE, bytes(0x1000))
            if not crashed and left < started_with:
                self._point_driver_at(i, left)
                continue
            faulted[i] = True
            uc.mem_write(RESULTS + i * self.inputs.result_size, struct.pack("<Q", FAULT) + bytes(self.inputs.result_size - 8))
            left -= 1
            self._point_driver_at(i + 1, left)
            if max_faults is not None and int(faulted[: i + 1].sum()) >= max_faults:
                n = i + 1  # the cases after it are not run
                faulted = faulted[:n]
                break
        raw = np.frombuffer(bytes(uc.mem_read(RESULTS, n * self.inputs.result_size)), dtype=np.uint64)
        table = raw.reshape(n, -1)
        m = len(self.inputs.programs)
        return BatchResult(table[:, :8], table[:, 8 : 8 + m], table[:, 8 + m : 8 + 2 * m], faulted)

    def _restore_dirty_slots(self) -> None:
        """Put back the words the driver's case write changed, if it had not restored them yet."""
        uc = self.engine.uc
        saved_slot, saved_cache, dirty_slot, dirty_cache = struct.unpack("<QQQQ", uc.mem_read(STATE + 24, 32))
        for addr, value in ((dirty_slot, saved_slot), (dirty_cache, saved_cache)):
            if addr:
                uc.mem_write(addr, struct.pack("<Q", value))
        uc.mem_write(STATE + 40, bytes(16))

    def _point_driver_at(self, i: int, left: int) -> None:
        """The driver's state for case i with `left` cases to go (the pointers may lag the commit)."""
        self.engine.uc.mem_write(
            STATE, struct.pack("<QQQ", CASES + i * self.inputs.case_size, RESULTS + i * self.inputs.result_size, left)
        )


def case_world(world: World, row: np.ndarray) -> World:
    """The single-run world that replays one case of a batch through the per-case executor."""
    import dataclasses

    from tcfuzz.model.world import MapOp, SiteInput

    run = world.runs[0]
    override = slot_override(world, row)
    if override is not None:  # the case's slot write is a map operation before the run
        index, prog = override
        op = MapOp("delete", slot_map(world), index) if prog is None else MapOp("update", slot_map(world), index, prog)
        run = dataclasses.replace(run, ops=(*run.ops, op))
    values = iter(int(v) for v in row[: len(inputs_of(world).ctx_offsets)])
    ctx = []
    for prog in sorted(world.programs, key=lambda p: p.id):
        for j, site in enumerate(prog.sites):
            key = next(values) if site.key is None else 0
            chosen = None
            if len(site.maps) > 1:
                ptr = next(values)
                chosen = next((m for m in site.maps if array_base(m) == ptr), site.maps[0])
            ctx.append(SiteInput(prog.id, j, key, chosen))
    count = None if int(row[-1]) == NORMAL_CALL else int(row[-1])
    return dataclasses.replace(world, runs=(dataclasses.replace(run, ctx=tuple(ctx), tail_call_cnt=count),))
