"""`tcfuzz run`, `repro`, `minimize`, `triage` and `corpus add`: every one replays a file with the
settings its sidecar records (fuzz/triage/findings.py), each overridable by a flag, and reports the
policy's attribution (fuzz/verdict/policy.py)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from tcfuzz.cli.errors import UsageError, output_dir
from tcfuzz.cli.terminal import busy, print_result, width_from_args
from tcfuzz.codegens import PluginError, for_arch
from tcfuzz.model.interfaces import VerdictKind
from tcfuzz.model.world import WorldError
from tcfuzz.triage.artifacts import InputError, atomic_write, corpus_doc, dump, verdict_json
from tcfuzz.triage.findings import as_found, open_finding, replay
from tcfuzz.triage.repro import describe_observation, minimize_file, repro_report, size, triage_dir
from tcfuzz.verdict.oracle import VOTERS


class CommandError(Exception):
    """Bad input: one line, exit status 2 (raised as the CLI's UsageError)."""


def _open(args, path: str | None = None):
    try:
        doc, settings = open_finding(Path(path or args.file), args.old, args.new, args.model_order)
        settings.codegens()  # a bad spec is one line, before any work
        if getattr(args, "arch", None):  # `--arch`: the world's twin on that architecture
            doc = dataclasses.replace(doc, world=doc.world.for_arch(args.arch))
            for codegen in settings.codegens():
                for_arch(codegen, args.arch)
    except (InputError, PluginError, WorldError) as e:
        raise CommandError(f"{path or args.file}: {e}" if isinstance(e, WorldError) else str(e)) from None
    return doc, settings


def cmd_run(args) -> int:
    doc, settings = _open(args, args.world)
    r, which = replay(doc, settings)
    j, v = r.outcome.judgement, r.outcome.verdict
    if args.json:
        json.dump(
            {
                "world": args.world,
                **verdict_json(v),
                "model_order": r.order.value,
                "status": r.outcome.status.value,
                "causes": list(r.outcome.causes),
                "codegens": {"old": settings.old, "new": settings.new},
                "observations": {voter: [o.to_json() for o in obs] for voter, obs in j.observations.items()},
            },
            sys.stdout,
            indent=2,
        )
        print()
        return _with_kernel(args, j.world, v)
    if which:
        print(f"raw input: {which}")
    world = j.world
    print(
        f"world {args.world}: profile {world.profile.name}, {len(world.maps)} maps, "
        f"{len(world.programs)} programs, {len(world.runs)} runs; model order {r.order.value}"
    )
    for i, run in enumerate(world.runs):
        print(f"run {i}: entry prog {run.entry}" + (f", after {len(run.ops)} map ops" if run.ops else ""))
        for voter in VOTERS:
            print(f"  {voter:<8} {describe_observation(j.observations[voter][i], world)}")
    if v.diverges:
        print(f"verdict {v.kind.value} at run {v.run}: first difference in `{v.field_name}`")
        for voter, value in v.values.items():
            print(f"  {voter:<8} {json.dumps(value)}")
        print(f"signature {v.signature}")
        print(r.outcome.attribution)
    else:
        print("verdict AGREE")
    return _with_kernel(args, world, v)


def _with_kernel(args, world, v) -> int:
    """`run --kernel`: the running kernel as a fourth voter on the same world."""
    status = 1 if v.diverges else 0
    if not getattr(args, "kernel", False):
        return status
    from tcfuzz.cli.kernel import kernel_vote

    return kernel_vote(world, args.json) or status


def cmd_repro(args) -> int:
    doc, settings = _open(args)
    r, which = replay(doc, settings)
    j = r.outcome.judgement
    found = as_found(settings, r)
    if args.json:
        json.dump(
            {
                "file": args.file,
                **verdict_json(j.verdict),
                "model_order": r.order.value,
                "status": r.outcome.status.value,
                "causes": list(r.outcome.causes),
                "attribution": r.outcome.attribution,
                "codegens": {"old": settings.old, "new": settings.new},
                "case": r.case,
                "as_found": found,
                "observations": {v: [o.to_json() for o in obs] for v, obs in j.observations.items()},
            },
            sys.stdout,
            indent=2,
        )
        print()
        return 1 if j.verdict.diverges else 0
    if which:
        print(f"raw input: {which}")
    old, new = settings.codegens()
    print(repro_report(j, {"legacy": old, "patched": new}, width_from_args(args)))
    if j.verdict.diverges:
        print(r.outcome.attribution + ("" if r.order.value == "jit" else f" ({r.order.value} order)"))
    if found:
        print(found)
    print(f"replayed with {settings.describe()}")
    return 1 if j.verdict.diverges else 0


def cmd_minimize(args) -> int:
    doc, settings = _open(args)
    r, _ = replay(doc, settings)
    if not r.outcome.verdict.diverges:
        raise CommandError(f"{args.file}: the world does not diverge; nothing to minimize ({settings.describe()})")
    try:
        out, final, small, tried = minimize_file(Path(args.file), r, settings)
    except InputError as e:
        raise CommandError(str(e)) from None
    print(f"{out}: {final.verdict.signature}")
    print(f"size {size(r.world)} -> {size(small)} after judging {tried} smaller worlds")
    return 0


def cmd_triage(args) -> int:
    if not Path(args.dir).is_dir():
        raise CommandError(f"{args.dir}: not a directory")
    try:
        with busy(args, "triage"):
            buckets, skipped = triage_dir(Path(args.dir), not args.no_minimize, args.old, args.new, args.model_order)
    except PluginError as e:
        raise CommandError(str(e)) from None
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)

    def text() -> str:
        lines = [f"{sum(len(b.files) for b in buckets)} diverging inputs, {len(buckets)} unique signatures"]
        for b in buckets:
            order = "" if b.order == "jit" else f" ({b.order} order)"
            lines.append(f"{len(b.files):5d}  {b.signature}{order}  [{b.attribution}]")
            lines.append(f"       representative: {b.representative or b.files[0]}")
        return "\n".join(lines)

    print_result(args, [b.to_json() for b in buckets], text)
    return 1 if buckets else 0


def cmd_corpus_add(args) -> int:
    from tcfuzz.verdict.oracle import judge

    doc, settings = _open(args)
    try:
        output_dir(Path(args.corpus) / args.group, "--corpus")
    except UsageError as e:
        raise CommandError(str(e)) from None
    r, _ = replay(doc, settings)
    claimed = doc.kind in ("artifact", "raw") or (settings.sidecar is not None)
    if claimed and not r.outcome.verdict.diverges and args.expect is None:
        raise CommandError(
            f"{args.file}: no longer diverges ({settings.describe()}); pass --expect VERDICT to add it as a regression entry"
        )
    # The corpus replays every entry under the default codegens and the JIT order.
    v = judge(r.world).verdict
    if args.expect is not None and v.kind.value != args.expect:
        raise CommandError(f"{args.file}: --expect {args.expect}, but the corpus's codegens give {v.kind.value}")
    purpose = args.purpose or (doc.data.get("purpose") if doc.kind == "corpus" else None) or f"added from {Path(args.file).name}"
    name = args.name or Path(args.file).name.removesuffix(".json").removesuffix(".min") + ".json"
    out = Path(args.corpus) / args.group / name
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(out, dump(corpus_doc(r.world, v, purpose)))
    except FileExistsError as e:
        raise CommandError(str(e)) from None
    print(f"{out}: expects {v.kind.value}" + (f" {v.signature}" if v.diverges else ""))
    if r.outcome.verdict.diverges and v.kind is VerdictKind.AGREE:
        print(f"  (diverges as found, {r.outcome.verdict.signature}, under {settings.describe()})")
    return 0
