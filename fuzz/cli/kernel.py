"""`tcfuzz kernel`: the running kernel as ground truth.

    tcfuzz kernel profile                 the profile detected from the live kernel
    tcfuzz kernel jit PATH...             bytes: every program's JITed image against jit_old
    tcfuzz kernel run PATH...             execution: the kernel as a fourth voter
    tcfuzz kernel fuzz --worlds N         generated worlds through all four voters
    tcfuzz kernel audit                   which known tail-call bugs this kernel has, from execution

PATH is a world/artifact/corpus file or a directory (every *.json below it). Exit status: 0 all
equal/agreeing, 1 a difference, 2 unusable input or no usable kernel (one line saying why).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tcfuzz.cli.main import UsageError, _int
from tcfuzz.cli.terminal import print_result


def _document(path: str):
    from tcfuzz.triage.artifacts import InputError, read_document

    try:
        return read_document(Path(path))
    except InputError as e:
        raise UsageError(str(e)) from None


def _need_kernel() -> None:
    from tcfuzz.live.available import unavailable

    reason = unavailable()
    if reason:
        raise UsageError(reason)


def world_paths(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(p.rglob("*.json"))
        elif p.exists():
            out.append(p)
        else:
            raise UsageError(f"{p}: no such file or directory")
    return out


def _codegen(name: str | None):
    if not name:
        return None
    from tcfuzz.codegens import load_codegen

    return load_codegen(name)


def cmd_profile(args: argparse.Namespace) -> int:
    _need_kernel()
    from tcfuzz.live.detect import detect

    d = detect()
    doc = {"profile": d.profile.to_json(), "return_thunk": d.return_thunk_name, "evidence": d.evidence}
    print(json.dumps(doc, indent=2))
    return 0


def cmd_jit(args: argparse.Namespace) -> int:
    _need_kernel()
    from tcfuzz.live.detect import detect
    from tcfuzz.live.jitcmp import compare_world
    from tcfuzz.live.lower import adapt
    from tcfuzz.live.session import MapTooLarge

    detected = detect()
    codegen = _codegen(args.old)
    totals = {"worlds": 0, "skipped": 0, "programs": 0, "dumps": 0, "dumps_equal": 0, "bytes": 0, "bytes_equal": 0}
    results: list[dict] = []
    for path in world_paths(args.paths):
        world, notes = adapt(_document(str(path)).world)
        totals["worlds"] += 1
        try:
            r = compare_world(world, detected, codegen)
        except MapTooLarge as e:
            totals["skipped"] += 1
            results.append({"world": str(path), "skipped": str(e)})
            if not args.json:
                print(f"{path}: SKIPPED ({e})")
            continue
        totals["programs"] += len(world.programs)
        totals["dumps"] += len(r.functions)
        totals["dumps_equal"] += sum(f.equal for f in r.functions)
        totals["bytes"] += sum(len(f.kernel) for f in r.functions)
        totals["bytes_equal"] += sum(len(f.kernel) for f in r.functions if f.equal)
        diffs = [f"prog {f.prog}{' subprog' if f.subprog else ''} ({f.when}) {f.difference}" for f in r.functions if not f.equal]
        results.append(
            {"world": str(path), "equal": r.equal, "functions": len(r.functions), "differences": diffs, "adapted": notes}
        )
        if not args.json:
            print(
                f"{path}: {'EQUAL' if r.equal else 'DIFFERENT'} ({len(r.functions)} images){' ' + r.refused if r.refused else ''}"
            )
            for line in diffs:
                print(f"  {line}")
            for note in notes if args.verbose else []:
                print(f"  adapted: {note}")
    p = detected.profile
    print_result(
        args,
        {"profile": p.to_json(), "totals": totals, "results": results},
        lambda: (
            f"kernel {p.kernel}: profile jump={p.jump.value} rethunk={p.rethunk} ({detected.return_thunk_name}) ibt={p.ibt} "
            f"max_entries@{p.max_entries_off:#x} ptrs@{p.ptrs_off:#x} bpf_func@{p.bpf_func_off:#x}\n"
            f"{totals['worlds']} worlds ({totals['skipped']} skipped), {totals['programs']} programs, "
            f"{totals['dumps_equal']}/{totals['dumps']} images equal, "
            f"{totals['bytes_equal']}/{totals['bytes']} bytes in equal images"
        ),
    )
    return 0 if totals["dumps_equal"] == totals["dumps"] else 1


def kernel_vote(world, as_json: bool) -> int:
    """`tcfuzz run --kernel`: the fourth voter's verdict on one world; 1 when it disagrees."""
    _need_kernel()
    from tcfuzz.verdict.kernel_vote import judge_with_kernel

    _, _, kv = judge_with_kernel(world)
    print(json.dumps({"kernel": kv.to_json()}) if as_json else f"kernel   {kv}")
    return 1 if kv.disagrees else 0


def cmd_run(args: argparse.Namespace) -> int:
    _need_kernel()
    from tcfuzz.verdict.kernel_vote import judge_with_kernel

    old = _codegen(args.old)
    totals = {"worlds": 0, "runs_compared": 0, "runs_skipped": 0, "disagreements": 0}
    results = []
    for path in world_paths(args.paths):
        _, j, kv = judge_with_kernel(_document(str(path)).world, old)
        totals["worlds"] += 1
        totals["runs_compared"] += kv.runs_compared
        totals["runs_skipped"] += kv.runs_skipped
        totals["disagreements"] += kv.disagrees
        results.append({"world": str(path), "oracle": j.verdict.kind.value, "kernel": kv.to_json()})
        if not args.json:
            print(f"{path}: {kv}")
    print_result(
        args,
        {"totals": totals, "results": results},
        lambda: (
            f"{totals['worlds']} worlds, {totals['runs_compared']} runs compared with the kernel "
            f"({totals['runs_skipped']} not expressible), {totals['disagreements']} kernel/model disagreements"
        ),
    )
    return 1 if totals["disagreements"] else 0


def cmd_fuzz(args: argparse.Namespace) -> int:
    """Generated worlds (the fuzzer's world builder over seeded random bytes, as a libFuzzer input
    in its single-world mode decodes); every `--every`th one also goes through the kernel, byte
    comparison included."""
    _need_kernel()
    import random

    from tcfuzz.gen.worlds import ByteSource, build_world
    from tcfuzz.live.detect import detect
    from tcfuzz.live.jitcmp import compare_world
    from tcfuzz.live.session import MapTooLarge
    from tcfuzz.verdict.kernel_vote import judge_with_kernel

    rng = random.Random(args.seed)
    detected = detect()
    totals = {"worlds": 0, "kernel_worlds": 0, "runs_compared": 0, "runs_skipped": 0, "images": 0, "images_equal": 0}
    totals["disagreements"] = 0
    for n in range(args.worlds):
        world = build_world(ByteSource(rng.randbytes(rng.randrange(8, 512))))
        totals["worlds"] += 1
        if n % args.every:
            continue
        world, j, kv = judge_with_kernel(world)
        totals["kernel_worlds"] += 1
        totals["runs_compared"] += kv.runs_compared
        totals["runs_skipped"] += kv.runs_skipped
        try:
            r = compare_world(world, detected)
            totals["images"] += len(r.functions)
            totals["images_equal"] += sum(f.equal for f in r.functions)
            bytes_ok = r.equal
        except MapTooLarge:
            bytes_ok = True
        if kv.disagrees or not bytes_ok:
            totals["disagreements"] += 1
            print(f"world #{n} (seed {args.seed}): {kv}; bytes {'equal' if bytes_ok else 'DIFFERENT'}")
            print(json.dumps(world.to_json()))
    print(
        f"seed {args.seed}: {totals['worlds']} worlds, {totals['kernel_worlds']} through the kernel, "
        f"{totals['runs_compared']} runs compared ({totals['runs_skipped']} not expressible here), "
        f"{totals['images_equal']}/{totals['images']} images equal, "
        f"{totals['disagreements']} kernel/model disagreements"
    )
    return 1 if totals["disagreements"] else 0


def cmd_audit(args: argparse.Namespace) -> int:
    _need_kernel()
    from tcfuzz.live.audit import AUDIT, audit

    results = [audit(bug, Path(args.corpus)) for bug in AUDIT]
    print_result(
        args,
        [r.to_json() for r in results],
        lambda: "\n".join(f"{r.status:<11} {r.bug.name}: {r.detail}\n{'':<11} fixed by {r.bug.fix}" for r in results),
    )
    return 1 if any(r.status == "PRESENT" for r in results) else 0


def add_parser(sub) -> None:
    k = sub.add_parser("kernel", help="the running kernel as ground truth: JIT bytes, execution voter, audit")
    ks = k.add_subparsers(dest="kernel_command", required=True)
    p = ks.add_parser("profile", help="the profile detected from the running kernel")
    p.set_defaults(func=cmd_profile)
    j = ks.add_parser("jit", help="compare the kernel's JITed images with jit_old, instruction by instruction")
    j.add_argument("paths", nargs="+", help="world files or directories (e.g. corpus examples)")
    j.add_argument("--old", help="a legacy codegen as module:object (e.g. a planted mutant)")
    j.add_argument("--json", action="store_true")
    j.add_argument("--verbose", action="store_true", help="also say how each world was adapted")
    j.set_defaults(func=cmd_jit)
    r = ks.add_parser("run", help="run worlds in the kernel: the fourth voter")
    r.add_argument("paths", nargs="+", help="world files or directories (e.g. corpus examples)")
    r.add_argument("--old", help="a legacy codegen as module:object (e.g. a planted mutant)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_run)
    f = ks.add_parser("fuzz", help="generated worlds through the four voters and the byte comparison")
    f.add_argument("--worlds", type=_int, default=200)
    f.add_argument("--every", type=_int, default=1, help="every Nth world also through the kernel")
    f.add_argument("--seed", type=_int, default=1)
    f.set_defaults(func=cmd_fuzz)
    a = ks.add_parser("audit", help="known, fixed tail-call bugs: present or fixed on this kernel")
    a.add_argument("--corpus", default="corpus", help="corpus root (default: ./corpus)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_audit)


def main() -> None:  # pragma: no cover - `python -m tcfuzz.cli.kernel` for debugging
    from tcfuzz.cli.main import main as tcfuzz_main

    sys.exit(tcfuzz_main(["kernel", *sys.argv[1:]]))
