"""The test world: one typed, serializable description shared by every front end.

A world is what a kernel would hold: prog arrays (and filler maps) in the order of each program's
used_maps[], programs made of tcfuzz glue and tail-call sites, and a sequence of runs, each preceded
by map operations (bpf_map_update_elem / bpf_map_delete_elem from user space).

    World
      profile   KernelProfile
      maps      [MapSpec]          used_maps[] order, shared by every program
      programs  [ProgramSpec]      each with [SiteSpec]
      runs      [RunSpec]          ops, then one call of the entry program with its ctx inputs (or
                                   an entry as a tail callee with a given count)

Slots listed in `MapSpec.slots` are filled before the programs are JITed (so direct sites go through
bpf_tail_call_direct_fixup()); `RunSpec.ops` go through the map update path (prog_array_map_poke_run()).

The JSON form is versioned (`schema`) and strict: unknown fields, wrong types and out-of-range
values are rejected with a `WorldError` naming the field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from tcfuzz.model.bpf import CALLEE_SAVED, MAX_BPF_STACK, round_up
from tcfuzz.model.interfaces import VerifierEnv
from tcfuzz.model.layout import MAX_PROGS, MAX_SITES
from tcfuzz.model.profile import KernelProfile, ProfileError, preset, profile_for_arch
from tcfuzz.model.text import MAX_INT_DIGITS, shown

SCHEMA = "tcfuzz-world/1"
MAX_RUNS = 64
MAX_OPS = 256
U32_MAX = 0xFFFFFFFF
U64_MAX = 0xFFFFFFFFFFFFFFFF


class WorldError(ValueError):
    """A world that no kernel could hold, or a malformed world file. The message names the field."""


def index_mask(max_entries: int) -> int:
    """array_map_alloc(): (1ULL << fls_long(max_entries - 1)) - 1, stored in a u32."""
    return ((1 << (max_entries - 1).bit_length()) - 1) & U32_MAX


@dataclass(frozen=True)
class MapSpec:
    id: int
    max_entries: int
    kind: str = "prog_array"  # or "filler": any other map, only takes a used_maps[] slot
    unpriv: bool = False  # created without CAP_PERFMON: !bypass_spec_v1
    slots: dict[int, int] = field(default_factory=dict)  # index -> program id, filled before load

    @property
    def index_mask(self) -> int:
        return index_mask(self.max_entries)

    @property
    def alloc_entries(self) -> int:
        """Entries array_map_alloc() allocates: rounded to index_mask + 1 for unpriv maps."""
        return self.index_mask + 1 if self.unpriv else self.max_entries


@dataclass(frozen=True)
class SiteSpec:
    maps: tuple[int, ...]  # one map: static; several: poisoned, chosen from ctx at run time
    key: int | None = None  # constant key (the u64 R3 holds), or None: read from ctx


@dataclass(frozen=True)
class ProgramSpec:
    id: int
    sites: tuple[SiteSpec, ...] = ()
    stack_depth: int = 0
    callee_regs: tuple[int, ...] = ()  # subset of r6..r9 the glue writes
    exception_boundary: bool = False
    subprog: bool = False  # the sites (and callee_regs) live in a bpf-to-bpf subprogram
    env: VerifierEnv = VerifierEnv()


@dataclass(frozen=True)
class MapOp:
    op: str  # "update" or "delete"
    map: int
    index: int  # u32 key as passed to the syscall
    prog: int | None = None  # update only


@dataclass(frozen=True)
class SiteInput:
    """What ctx holds for one site: its run-time key and, for a poisoned site, which map R2 gets."""

    prog: int
    site: int
    key: int = 0
    map: int | None = None


@dataclass(frozen=True)
class RunSpec:
    entry: int
    ops: tuple[MapOp, ...] = ()
    ctx: tuple[SiteInput, ...] = ()
    tail_call_cnt: int | None = None  # enter as the tail callee of a main program with this count
    # (rax = count, at bpf_func + X86_TAIL_CALL_OFFSET); None: a call

    def input_for(self, prog: int, site: int) -> SiteInput:
        for item in self.ctx:
            if item.prog == prog and item.site == site:
                return item
        return SiteInput(prog, site)


@dataclass(frozen=True)
class World:
    profile: KernelProfile
    maps: tuple[MapSpec, ...]
    programs: tuple[ProgramSpec, ...]
    runs: tuple[RunSpec, ...]

    def __post_init__(self) -> None:
        validate(self)

    def map(self, map_id: int) -> MapSpec:
        return next(m for m in self.maps if m.id == map_id)

    def program(self, prog_id: int) -> ProgramSpec:
        return next(p for p in self.programs if p.id == prog_id)

    def site_map(self, run: RunSpec, prog: int, site: int) -> MapSpec:
        """The map R2 points to at a site in this run."""
        spec = self.program(prog).sites[site]
        chosen = run.input_for(prog, site).map
        return self.map(spec.maps[0] if chosen is None else chosen)

    def to_json(self) -> dict:
        """The world file's form: defaults omitted, a preset by its name, so a finding prints as the
        few lines a person would write (the reader fills the defaults back in)."""
        return {
            "schema": SCHEMA,
            "profile": self.profile.to_world_json(),
            "maps": [_non_default(m, slots={str(k): v for k, v in sorted(m.slots.items())}) for m in self.maps],
            "programs": [
                _non_default(
                    p,
                    callee_regs=list(p.callee_regs),
                    env=_non_default(p.env),
                    sites=[_non_default(s, maps=list(s.maps)) for s in p.sites],
                )
                for p in self.programs
            ],
            "runs": [
                _non_default(r, ops=[_non_default(o) for o in r.ops], ctx=[_non_default(c) for c in r.ctx]) for r in self.runs
            ],
        }

    def for_arch(self, arch: str) -> World:
        """This world's twin on another architecture (profile_for_arch(); maps, programs, runs kept)."""
        try:
            return dataclasses.replace(self, profile=profile_for_arch(self.profile, arch))
        except ProfileError as e:
            raise WorldError(f"profile: {e}") from None

    @classmethod
    def from_json(cls, d: Any) -> World:
        return _Reader().world(d)


def _non_default(record: Any, **json_values: Any) -> dict:
    """A dataclass record as JSON: its fields in declaration order (values from `json_values` where
    given), leaving out every field that equals its default or is empty (no field's non-default
    value is an empty container)."""
    out = {}
    for f in fields(record):
        value = json_values.get(f.name, getattr(record, f.name))
        if value in ({}, []) or (f.default is not MISSING and value == f.default):
            continue
        out[f.name] = value
    return out


def at_most(where: str, items, limit: int) -> None:
    if len(items) > limit:
        raise WorldError(f"{where}: {len(items)} entries; at most {limit}")


def validate(w: World) -> None:
    """Reject worlds the kernel would refuse to create (map/prog creation), naming the field."""
    prof = w.profile
    if not 1 <= len(w.maps) <= prof.max_used_maps:
        raise WorldError(f"maps: {len(w.maps)} maps; used_maps holds 1..{prof.max_used_maps} (MAX_USED_MAPS)")
    map_ids = [m.id for m in w.maps]
    if len(set(map_ids)) != len(map_ids):
        raise WorldError("maps: duplicate map id")
    prog_ids = {p.id for p in w.programs}
    if len(prog_ids) != len(w.programs) or not 1 <= len(w.programs) <= MAX_PROGS:
        raise WorldError(f"programs: 1..{MAX_PROGS} programs with distinct ids")
    for i, m in enumerate(w.maps):
        where = f"maps[{i}]"
        if not 0 <= m.id < 2**14:
            raise WorldError(f"{where}.id: {m.id} outside 0..16383")
        if m.kind not in ("prog_array", "filler"):
            raise WorldError(f"{where}.kind: {shown(m.kind)} is not 'prog_array' or 'filler'")
        if not 1 <= m.max_entries <= U32_MAX:
            raise WorldError(f"{where}.max_entries: {m.max_entries} is not a u32 >= 1 (array_map_alloc_check)")
        if m.unpriv and m.index_mask + 1 > U32_MAX:
            raise WorldError(f"{where}.max_entries: {m.max_entries} rounds past u32 for an unpriv map (-E2BIG)")
        if m.kind == "filler" and m.slots:
            raise WorldError(f"{where}.slots: a filler map has no program slots")
        for index, prog in m.slots.items():
            if not 0 <= index < m.max_entries:
                raise WorldError(f"{where}.slots: index {index} >= max_entries {m.max_entries} (-E2BIG)")
            if prog not in prog_ids:
                raise WorldError(f"{where}.slots[{index}]: no program with id {prog}")
    for i, p in enumerate(w.programs):
        where = f"programs[{i}]"
        if not 0 <= p.id < MAX_PROGS:
            raise WorldError(f"{where}.id: {p.id} outside 0..{MAX_PROGS - 1}")
        if not 0 <= p.stack_depth <= MAX_BPF_STACK:
            raise WorldError(f"{where}.stack_depth: {p.stack_depth} outside 0..{MAX_BPF_STACK}")
        if not set(p.callee_regs) <= set(CALLEE_SAVED) or len(set(p.callee_regs)) != len(p.callee_regs):
            raise WorldError(f"{where}.callee_regs: {list(p.callee_regs)} is not a subset of r6..r9")
        frames_before = round_up(max(p.stack_depth, 1), 32)  # check_max_stack_depth_subprog()
        if p.subprog and frames_before >= 256:
            raise WorldError(
                f"{where}.stack_depth: {p.stack_depth}: tail_calls are not allowed when call stack "
                f"of previous frames is {frames_before} bytes. Too large"
            )
        at_most(f"{where}.sites", p.sites, MAX_SITES)
        for j, s in enumerate(p.sites):
            if not s.maps or len(set(s.maps)) != len(s.maps):
                raise WorldError(f"{where}.sites[{j}].maps: one or more distinct map ids")
            for map_id in s.maps:
                if map_id not in map_ids:
                    raise WorldError(f"{where}.sites[{j}].maps: no map with id {map_id}")
                if w.map(map_id).kind != "prog_array":
                    raise WorldError(f"{where}.sites[{j}].maps: map {map_id} is not a prog array")
            if len(s.maps) > 1 and any(w.map(mid).unpriv for mid in s.maps):
                raise WorldError(
                    f"{where}.sites[{j}]: a poisoned site over an unpriv map is rejected "
                    f"by the verifier (tail_call abusing map_ptr)"
                )
            if s.key is not None and not 0 <= s.key <= U64_MAX:
                raise WorldError(f"{where}.sites[{j}].key: {s.key} is not a u64")
    if not 1 <= len(w.runs) <= MAX_RUNS:
        raise WorldError(f"runs: 1..{MAX_RUNS} runs")
    for i, r in enumerate(w.runs):
        where = f"runs[{i}]"
        if r.entry not in prog_ids:
            raise WorldError(f"{where}.entry: no program with id {r.entry}")
        if r.tail_call_cnt is not None and not 0 <= r.tail_call_cnt <= prof.max_tail_call_cnt:
            raise WorldError(
                f"{where}.tail_call_cnt: {r.tail_call_cnt} outside 0..{prof.max_tail_call_cnt} "
                f"(a count passed by value never exceeds MAX_TAIL_CALL_CNT)"
            )
        at_most(f"{where}.ops", r.ops, MAX_OPS)
        for j, o in enumerate(r.ops):
            if o.op not in ("update", "delete"):
                raise WorldError(f"{where}.ops[{j}].op: {shown(o.op)} is not 'update' or 'delete'")
            if o.map not in map_ids or w.map(o.map).kind != "prog_array":
                raise WorldError(f"{where}.ops[{j}].map: no prog array with id {o.map}")
            if not 0 <= o.index <= U32_MAX:
                raise WorldError(f"{where}.ops[{j}].index: {o.index} is not a u32")
            if (o.op == "update") != (o.prog is not None):
                raise WorldError(f"{where}.ops[{j}].prog: an update names a program, a delete does not")
            if o.prog is not None and o.prog not in prog_ids:
                raise WorldError(f"{where}.ops[{j}].prog: no program with id {o.prog}")
        for j, c in enumerate(r.ctx):
            if c.prog not in prog_ids or not 0 <= c.site < len(w.program(c.prog).sites):
                raise WorldError(f"{where}.ctx[{j}]: program {c.prog} has no site {c.site}")
            if not 0 <= c.key <= U64_MAX:
                raise WorldError(f"{where}.ctx[{j}].key: {c.key} is not a u64")
            if c.map is not None and c.map not in w.program(c.prog).sites[c.site].maps:
                raise WorldError(f"{where}.ctx[{j}].map: map {c.map} does not reach that site")


def field_problem(d: dict, required: set[str], optional: set[str]) -> str | None:
    """'unknown field ...' or 'missing field ...' for a JSON object checked against its schema."""
    unknown = sorted(set(d) - required - optional)
    if unknown:
        return f"unknown field {shown(unknown[0])}"
    missing = sorted(required - set(d))
    if missing:
        return f"missing field {shown(missing[0])}"
    return None


class _Reader:
    """Strict JSON -> World, with the path of the offending field in every error."""

    def obj(self, d: Any, where: str, required: set[str], optional: set[str]) -> dict:
        if not isinstance(d, dict):
            raise WorldError(f"{where}: expected an object, got {type(d).__name__}")
        problem = field_problem(d, required, optional)
        if problem:
            raise WorldError(f"{where}: {problem}")
        return d

    def int_(self, v: Any, where: str) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise WorldError(f"{where}: expected an integer, got {shown(v)}")
        return v

    def bool_(self, v: Any, where: str) -> bool:
        if not isinstance(v, bool):
            raise WorldError(f"{where}: expected true/false, got {shown(v)}")
        return v

    def list_(self, v: Any, where: str) -> list:
        if not isinstance(v, list):
            raise WorldError(f"{where}: expected a list, got {type(v).__name__}")
        return v

    def opt_int(self, v: Any, where: str) -> int | None:
        return None if v is None else self.int_(v, where)

    def world(self, d: Any) -> World:
        d = self.obj(d, "world", {"schema", "profile", "maps", "programs", "runs"}, set())
        if d["schema"] != SCHEMA:
            raise WorldError(f"schema: {shown(d['schema'])} is not {SCHEMA!r}")
        try:
            prof = (
                preset(d["profile"])
                if isinstance(d["profile"], str)
                else KernelProfile.from_json(
                    self.obj(d["profile"], "profile", set(), {f for f in KernelProfile.__dataclass_fields__})
                )
            )
        except ProfileError as e:
            raise WorldError(f"profile: {e}") from None
        maps = tuple(self.map_(m, f"maps[{i}]") for i, m in enumerate(self.list_(d["maps"], "maps")))
        progs = tuple(self.program(p, f"programs[{i}]") for i, p in enumerate(self.list_(d["programs"], "programs")))
        runs = tuple(self.run(r, f"runs[{i}]") for i, r in enumerate(self.list_(d["runs"], "runs")))
        return World(prof, maps, progs, runs)

    def map_(self, d: Any, where: str) -> MapSpec:
        d = self.obj(d, where, {"id", "max_entries"}, {"kind", "unpriv", "slots"})
        slots_in = self.obj(d.get("slots", {}), f"{where}.slots", set(), set(d.get("slots", {}) or {}))
        slots = {}
        for k, v in slots_in.items():
            try:
                if len(k) > MAX_INT_DIGITS:
                    raise ValueError
                index = int(k, 0)
            except ValueError:
                raise WorldError(f"{where}.slots: key {shown(k)} is not an integer") from None
            slots[index] = self.int_(v, f"{where}.slots[{k}]")
        kind = d.get("kind", "prog_array")
        if not isinstance(kind, str):
            raise WorldError(f"{where}.kind: expected a string")
        return MapSpec(
            self.int_(d["id"], f"{where}.id"),
            self.int_(d["max_entries"], f"{where}.max_entries"),
            kind,
            self.bool_(d.get("unpriv", False), f"{where}.unpriv"),
            slots,
        )

    def program(self, d: Any, where: str) -> ProgramSpec:
        d = self.obj(d, where, {"id"}, {"sites", "stack_depth", "callee_regs", "exception_boundary", "subprog", "env"})
        env_d = self.obj(d.get("env", {}), f"{where}.env", set(), {"bpf_capable", "blinding_requested", "jit_requested"})
        env = VerifierEnv(**{k: self.bool_(v, f"{where}.env.{k}") for k, v in env_d.items()})
        sites = []
        for j, s in enumerate(self.list_(d.get("sites", []), f"{where}.sites")):
            s = self.obj(s, f"{where}.sites[{j}]", {"maps"}, {"key"})
            maps = tuple(self.int_(m, f"{where}.sites[{j}].maps") for m in self.list_(s["maps"], f"{where}.sites[{j}].maps"))
            sites.append(SiteSpec(maps, self.opt_int(s.get("key"), f"{where}.sites[{j}].key")))
        regs = tuple(self.int_(r, f"{where}.callee_regs") for r in self.list_(d.get("callee_regs", []), f"{where}.callee_regs"))
        return ProgramSpec(
            self.int_(d["id"], f"{where}.id"),
            tuple(sites),
            self.int_(d.get("stack_depth", 0), f"{where}.stack_depth"),
            regs,
            self.bool_(d.get("exception_boundary", False), f"{where}.exception_boundary"),
            self.bool_(d.get("subprog", False), f"{where}.subprog"),
            env,
        )

    def run(self, d: Any, where: str) -> RunSpec:
        d = self.obj(d, where, {"entry"}, {"ops", "ctx", "tail_call_cnt"})
        ops = []
        for j, o in enumerate(self.list_(d.get("ops", []), f"{where}.ops")):
            o = self.obj(o, f"{where}.ops[{j}]", {"op", "map", "index"}, {"prog"})
            if not isinstance(o["op"], str):
                raise WorldError(f"{where}.ops[{j}].op: expected a string")
            ops.append(
                MapOp(
                    o["op"],
                    self.int_(o["map"], f"{where}.ops[{j}].map"),
                    self.int_(o["index"], f"{where}.ops[{j}].index"),
                    self.opt_int(o.get("prog"), f"{where}.ops[{j}].prog"),
                )
            )
        ctx = []
        for j, c in enumerate(self.list_(d.get("ctx", []), f"{where}.ctx")):
            c = self.obj(c, f"{where}.ctx[{j}]", {"prog", "site"}, {"key", "map"})
            ctx.append(
                SiteInput(
                    self.int_(c["prog"], f"{where}.ctx[{j}].prog"),
                    self.int_(c["site"], f"{where}.ctx[{j}].site"),
                    self.int_(c.get("key", 0), f"{where}.ctx[{j}].key"),
                    self.opt_int(c.get("map"), f"{where}.ctx[{j}].map"),
                )
            )
        return RunSpec(
            self.int_(d["entry"], f"{where}.entry"),
            tuple(ops),
            tuple(ctx),
            self.opt_int(d.get("tail_call_cnt"), f"{where}.tail_call_cnt"),
        )
