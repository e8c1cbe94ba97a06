"""Triage of one finding or a directory of them: repro report, minimization, dedup by signature."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path

from tcfuzz.machine.executor import compile_world
from tcfuzz.model.interfaces import Codegen, Observation
from tcfuzz.model.lower import FALL_THROUGH
from tcfuzz.model.profile import PRESETS
from tcfuzz.model.sample import tail_call_sites
from tcfuzz.model.world import World, WorldError
from tcfuzz.triage.artifacts import InputError, artifact_doc, atomic_write, dump
from tcfuzz.triage.disasm import image_listing, render_side_by_side
from tcfuzz.verdict.oracle import VOTERS, Judgement, judge

# --- repro -------------------------------------------------------------------------------------------


def describe_observation(obs, world) -> str:
    """One line: how the run ended, the programs it went through, the counter, anything unbalanced."""
    if obs.load != "ok":
        return f"not loaded ({obs.load})"
    trace = obs.trace
    if len(trace) > 6 and len(set(trace)) == 1:
        path = f"{trace[0]} x{len(trace)}"
    elif len(trace) > 8:
        path = " > ".join(map(str, trace[:4])) + f" > ... ({len(trace)} entries) > " + " > ".join(map(str, trace[-2:]))
    else:
        path = " > ".join(map(str, trace))
    parts = [f"trace {path}"]
    if obs.fault is not None:
        parts.insert(0, f"FAULT {obs.fault}")
    elif obs.ret is not None and obs.ret - FALL_THROUGH in {p.id for p in world.programs}:
        parts.append(f"fell through in prog {obs.ret - FALL_THROUGH}")
    elif obs.ret is not None:
        parts.append(f"returned {obs.ret:#x}")
    parts.append(f"tail_call_cnt {obs.tail_call_cnt}")
    if obs.callee_saved_clobbered:
        parts.append("clobbered " + ",".join(obs.callee_saved_clobbered))
    if obs.stack_delta not in (0, None):
        parts.append(f"rsp off by {obs.stack_delta:+d}")
    if obs.ctx_preserved is False:
        parts.append("rdi (ctx) lost")
    return "  ".join(parts)


def odd_voter(j: Judgement) -> str:
    """The voter whose run parted from the others (patched unless the legacy JIT is the odd one)."""
    return "legacy" if j.verdict.kind.value in ("OLD_DIVERGES", "JITS_AGREE_MODEL_DIFFERS") else "patched"


def parting_site(j: Judgement, codegens: dict[str, Codegen]) -> tuple[str, int | None, int | None]:
    """(function name, site index, pc offset in that function) where the odd voter's run parted."""
    voter = odd_voter(j)
    obs = j.observations[voter][j.verdict.run]
    functions = compile_world(j.world, codegens[voter])
    pc = obs.fault.pc if obs.fault is not None else None
    for name, image in functions:
        if pc is not None and image.base <= pc < image.base + len(image.code):
            off = pc - image.base
            starts = [k for k, (lo, _hi) in enumerate(tail_call_sites(image)) if lo <= off]
            return name, (starts[-1] if starts else None), off
    last = obs.trace[-1] if obs.trace else j.world.runs[j.verdict.run].entry
    names = [name for name, _ in functions if name.split()[1] == str(last)]
    return names[-1], None, None


def side_by_side(j: Judgement, codegens: dict[str, Codegen], width: int | None = 100) -> str:
    name, site, off = parting_site(j, codegens)
    voter = odd_voter(j)
    listings = []
    for v in ("legacy", "patched"):
        image = dict(compile_world(j.world, codegens[v]))[name]
        sites = tail_call_sites(image)
        ranges = [sites[site]] if site is not None else sites
        if off is not None and v == voter and not any(lo <= off < hi for lo, hi in ranges):
            ranges = ranges + [(off, min(off + 16, len(image.code)))]
        marks = frozenset([off]) if v == voter and off is not None else frozenset()
        listings.append(image_listing(f"{v}", image, ranges, marks, arch=j.world.profile.arch))
    where = f"{name}, site {site}" if site is not None else f"{name}, all sites"
    return f"tail-call sequences of {where} (=> where the {voter} run parted)\n" + render_side_by_side(*listings, width=width)


def field_table(obs: dict[str, Observation], width: int | None = 100) -> str:
    """One row per observed field, one column per voter; a value wider than its column continues on
    the next lines (broken at spaces where it has them), never cut."""
    names = [f"{field:<23}" for field in Observation.FIELDS]
    values = [[json.dumps(o.to_json()[field]) for o in obs.values()] for field in Observation.FIELDS]
    widest = max(len(v) for row in values for v in row)
    col = widest if width is None else max(min(widest, (width - 24) // len(VOTERS) - 2), 12)
    rows = [f"{'field':<24}" + "".join(f"{v:<{col + 2}}" for v in VOTERS).rstrip()]
    for name, vals in zip(names, values, strict=True):
        mark = "*" if len(set(vals)) > 1 else " "
        pieces = [_chunks(v, col) for v in vals]
        for k in range(max(len(p) for p in pieces)):
            head = f"{mark}{name}" if k == 0 else " " * 24
            rows.append((head + "".join(f"{(p[k] if k < len(p) else ''):<{col + 2}}" for p in pieces)).rstrip())
    return "\n".join(rows)


def _chunks(text: str, col: int) -> list[str]:
    """`text` in pieces of at most `col` columns, broken after a space or comma where possible."""
    out = []
    while len(text) > col:
        cut = max(text.rfind(" ", 0, col), text.rfind(",", 0, col))
        cut = cut + 1 if cut > col // 3 else col
        out.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    return out + [text]


def repro_report(j: Judgement, codegens: dict[str, Codegen], width: int | None = 100) -> str:
    v = j.verdict
    out = [f"verdict {v.kind.value}"]
    if not v.diverges:
        out.append("the three voters agree on every run: this input no longer diverges")
        return "\n".join(out)
    out[0] += f" at run {v.run}: first difference in `{v.field_name}`"
    out.append(f"signature {v.signature}")
    out.append("")
    out.append(f"run {v.run}: entry prog {j.world.runs[v.run].entry}")
    run_obs = {voter: j.observations[voter][v.run] for voter in VOTERS}
    for voter, o in run_obs.items():
        out.append(f"  {voter:<8} {describe_observation(o, j.world)}")
    out.append("")
    out.append(field_table(run_obs, width))
    if run_obs["legacy"].load == run_obs["patched"].load == "ok":
        out.append("")
        out.append(side_by_side(j, codegens, width))
    return "\n".join(out)


# --- minimize ----------------------------------------------------------------------------------------


def size(w: World) -> tuple:
    """A well-founded measure: every accepted minimization step makes it strictly smaller."""
    structure = (
        len(w.runs)
        + sum(len(r.ops) + len(r.ctx) for r in w.runs)
        + len(w.programs)
        + sum(len(p.sites) + len(p.callee_regs) for p in w.programs)
        + len(w.maps)
        + sum(len(m.slots) for m in w.maps)
    )
    flags = sum(
        p.exception_boundary + p.subprog + (not p.env.bpf_capable) + p.env.blinding_requested + (not p.env.jit_requested)
        for p in w.programs
    ) + sum(m.unpriv for m in w.maps)
    numbers = (
        sum(m.max_entries for m in w.maps)
        + sum(p.stack_depth for p in w.programs)
        + sum(s.key or 0 for p in w.programs for s in p.sites)
        + sum(c.key for r in w.runs for c in r.ctx)
    )
    return structure, flags, w.profile != PRESETS["default"], numbers


def _smaller_ints(n: int) -> list[int]:
    return sorted({c for c in (0, 1, n & 0xFFFFFFFF, n >> 1, n - 1) if 0 <= c < n})


def _without_program(w: World, pid: int) -> World:
    maps = tuple(dataclasses.replace(m, slots={k: v for k, v in m.slots.items() if v != pid}) for m in w.maps)
    runs = tuple(
        dataclasses.replace(r, ops=tuple(o for o in r.ops if o.prog != pid), ctx=tuple(c for c in r.ctx if c.prog != pid))
        for r in w.runs
    )
    return World(w.profile, maps, tuple(p for p in w.programs if p.id != pid), runs)


def _without_site(w: World, pid: int, j: int) -> World:
    progs = tuple(dataclasses.replace(p, sites=p.sites[:j] + p.sites[j + 1 :]) if p.id == pid else p for p in w.programs)
    runs = tuple(
        dataclasses.replace(
            r,
            ctx=tuple(
                c if c.prog != pid or c.site < j else dataclasses.replace(c, site=c.site - 1)
                for c in r.ctx
                if not (c.prog == pid and c.site == j)
            ),
        )
        for r in w.runs
    )
    return World(w.profile, w.maps, progs, runs)


def _replace_in(items: tuple, i: int, new) -> tuple:
    return items[:i] + (new,) + items[i + 1 :]


def candidates(w: World) -> Iterator[Callable[[], World]]:
    """Smaller variants of `w`, biggest cuts first; each is built lazily (and may be invalid)."""
    R = dataclasses.replace
    for i in range(len(w.runs)):
        if len(w.runs) > 1:
            yield lambda i=i: R(w, runs=w.runs[:i] + w.runs[i + 1 :])
    for p in w.programs:
        if all(r.entry != p.id for r in w.runs):
            yield lambda p=p: _without_program(w, p.id)
    for m in w.maps:
        yield lambda m=m: R(w, maps=tuple(x for x in w.maps if x.id != m.id))
    for p in w.programs:
        for j in range(len(p.sites)):
            yield lambda p=p, j=j: _without_site(w, p.id, j)
    for i, r in enumerate(w.runs):
        for k in range(len(r.ops)):
            yield lambda i=i, r=r, k=k: R(w, runs=_replace_in(w.runs, i, R(r, ops=r.ops[:k] + r.ops[k + 1 :])))
        for k in range(len(r.ctx)):
            yield lambda i=i, r=r, k=k: R(w, runs=_replace_in(w.runs, i, R(r, ctx=r.ctx[:k] + r.ctx[k + 1 :])))
    for i, m in enumerate(w.maps):
        for key in m.slots:
            yield lambda i=i, m=m, key=key: R(
                w, maps=_replace_in(w.maps, i, R(m, slots={k: v for k, v in m.slots.items() if k != key}))
            )
    for i, p in enumerate(w.programs):
        for change in (
            {"callee_regs": ()},
            {"exception_boundary": False},
            {"subprog": False},
            {"env": type(p.env)()},
            {"stack_depth": 0},
        ):
            if any(getattr(p, k) != v for k, v in change.items()):
                yield lambda i=i, p=p, change=change: R(w, programs=_replace_in(w.programs, i, R(p, **change)))
    if w.profile != PRESETS["default"]:
        yield lambda: R(w, profile=PRESETS["default"])
    for i, m in enumerate(w.maps):
        if m.unpriv:
            yield lambda i=i, m=m: R(w, maps=_replace_in(w.maps, i, R(m, unpriv=False)))
        for n in _smaller_ints(m.max_entries):
            yield lambda i=i, m=m, n=n: R(w, maps=_replace_in(w.maps, i, R(m, max_entries=n)))
    for i, p in enumerate(w.programs):
        for n in _smaller_ints(p.stack_depth):
            yield lambda i=i, p=p, n=n: R(w, programs=_replace_in(w.programs, i, R(p, stack_depth=n)))
        for j, s in enumerate(p.sites):
            for n in _smaller_ints(s.key or 0):
                yield lambda i=i, p=p, j=j, s=s, n=n: R(
                    w, programs=_replace_in(w.programs, i, R(p, sites=_replace_in(p.sites, j, R(s, key=n))))
                )
    for i, r in enumerate(w.runs):
        for k, c in enumerate(r.ctx):
            for n in _smaller_ints(c.key):
                yield lambda i=i, r=r, k=k, c=c, n=n: R(
                    w, runs=_replace_in(w.runs, i, R(r, ctx=_replace_in(r.ctx, k, R(c, key=n))))
                )


def minimize(
    world: World,
    signature: str,
    keeps: Callable[[World], bool] | None = None,
    max_steps: int = 5000,
    old: Codegen | None = None,
    new: Codegen | None = None,
) -> tuple[World, int]:
    """Greedy reduction: take the first smaller variant that keeps `signature`, repeat until none
    does. Returns the minimal world and the number of worlds judged."""
    voters = {k: v for k, v in (("old", old), ("new", new)) if v is not None}
    keeps = keeps or (lambda w: judge(w, **voters).verdict.signature == signature)
    tried = 0
    current = world
    progress = True
    while progress and tried < max_steps:
        progress = False
        for make in candidates(current):
            try:
                smaller = make()
            except (WorldError, StopIteration):
                continue
            if size(smaller) >= size(current):
                continue
            tried += 1
            if keeps(smaller):
                current, progress = smaller, True
                break
    return current, tried


def free_path(path: Path) -> Path:
    """`path`, or `stem-1.suffix`, `stem-2.suffix`, ... whichever does not exist yet."""
    n = 0
    candidate = path
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


def minimize_file(path: Path, found, settings) -> tuple[Path, Judgement, World, int]:
    """Minimize the world `found` (a verdict.replay.Replay of the file at `path`) under the file's
    settings (triage/findings.py), keeping its signature; write `<stem>.min.json` beside it."""
    from tcfuzz.verdict.replay import judge_world, orders_of

    old, new = settings.codegens()
    orders = orders_of(found.order.value)
    signature = found.outcome.verdict.signature
    small, tried = minimize(
        found.world, signature, keeps=lambda w: judge_world(w, old, new, orders).outcome.verdict.signature == signature
    )
    final = judge_world(small, old, new, orders)
    doc = settings.sidecar
    seed = doc.data.get("seed") if doc is not None else None
    base = path.name[: -len(".json")] if path.name.endswith(".json") else path.name
    out = free_path(path.with_name(f"{base}.min.json"))
    atomic_write(
        out,
        dump(
            artifact_doc(
                small,
                final.outcome.verdict,
                seed,
                codegens={"old": settings.old, "new": settings.new},
                model_order=final.order.value,
                status=final.outcome.status.value,
                causes=final.outcome.causes,
            )
        ),
    )
    return out, final.outcome.judgement, small, tried


# --- triage of a directory ---------------------------------------------------------------------------


NOT_INPUTS = {".log", ".xml", ".txt", ".md", ".tmp", ".pids"}


@dataclasses.dataclass
class Bucket:
    signature: str
    order: str
    status: str
    attribution: str
    files: list[Path]
    representative: Path | None = None

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["model_order"] = out.pop("order")
        out["count"] = len(self.files)
        out["files"] = [str(f) for f in self.files]
        out["representative"] = str(self.representative) if self.representative else None
        return out


def triage_inputs(directory: Path) -> list[Path]:
    """JSON documents and raw crash files alike; a raw file with its sidecar counts once (as the
    sidecar); minimized outputs, logs and hidden files are not inputs."""
    out = []
    for path in sorted(Path(directory).rglob("*")):
        if not path.is_file() or path.name.startswith(".") or path.suffix in NOT_INPUTS:
            continue
        if path.name.endswith(".min.json") or ".min-" in path.name or path.name == "summary.json":
            continue
        if path.suffix != ".json" and path.with_name(path.name + ".json").exists():
            continue
        out.append(path)
    return out


def triage_dir(
    directory: Path, do_minimize: bool = True, old: str | None = None, new: str | None = None, order: str | None = None
) -> tuple[list[Bucket], list[str]]:
    """Replay every finding under `directory` with its own settings (flags override); group the
    diverging ones by signature, model order and the policy's status."""
    from tcfuzz.triage.findings import open_finding, replay

    buckets: dict[tuple, Bucket] = {}
    found = {}
    skipped = []
    for path in triage_inputs(directory):
        try:
            doc, settings = open_finding(path, old, new, order)
        except InputError as e:
            skipped.append(str(e))
            continue
        r, _ = replay(doc, settings)
        if r.outcome.verdict.diverges:
            key = (r.outcome.verdict.signature, r.order.value, r.outcome.status.value)
            b = buckets.setdefault(key, Bucket(*key, r.outcome.attribution, []))
            b.files.append(path)
            found[path] = (r, settings)
    out = sorted(buckets.values(), key=lambda b: (b.status != "unexplained", -len(b.files), b.signature))
    if do_minimize:
        for b in out:
            smallest = min(b.files, key=lambda p: size(found[p][0].world))
            b.representative = minimize_file(smallest, *found[smallest])[0]
    return out, skipped
