"""`tcfuzz report` and `tcfuzz export`: their arguments and glue (the work is in tcfuzz.report and
tcfuzz.triage.export)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path


def _usage(message: str) -> Exception:
    from tcfuzz.cli.errors import UsageError

    return UsageError(message)


def cmd_report(args: argparse.Namespace) -> int:
    from tcfuzz.cli.main import codegens_from_args, specs_from_args
    from tcfuzz.cli.terminal import progress
    from tcfuzz.report.collect import collect
    from tcfuzz.report.write import write
    from tcfuzz.triage.artifacts import InputError

    voters = codegens_from_args(args)
    for d in args.from_dirs:
        if not Path(d).is_dir():
            raise _usage(f"--from {d}: not a directory")
    try:
        report = collect([Path(d) for d in args.from_dirs], voters["old"], voters["new"], specs_from_args(args), progress(args))
    except InputError as e:
        raise _usage(str(e)) from None
    paths = write(report, Path(args.out))
    print(report["headline"]["sentence"])
    for kind, path in paths.items():
        print(f"  {kind:<4} {path}")
    return 1 if report["headline"]["unexplained"] else 0


def cmd_export(args: argparse.Namespace) -> int:
    from tcfuzz.codegens import PluginError
    from tcfuzz.triage.artifacts import InputError, atomic_write
    from tcfuzz.triage.export import ExportError, export_selftest
    from tcfuzz.triage.findings import open_finding, replay

    if not args.selftest:
        raise _usage("choose a format: --selftest (a BPF selftest in the style of verifier_tailcall_jit.c)")
    try:
        doc, settings = open_finding(Path(args.finding), args.old, args.new, None)
        old = settings.codegens()[0]
        r, _which = replay(doc, settings)  # a raw input: its diverging case
    except (InputError, PluginError) as e:
        raise _usage(str(e)) from None
    j = r.outcome.judgement
    world = j.world
    run = j.verdict.run if j.verdict.diverges and j.verdict.run is not None else 0
    model = j.observations["model"][run]
    name = re.sub(r"[^A-Za-z0-9_]", "_", Path(args.finding).name.removesuffix(".json"))
    try:
        test = export_selftest(world, name, old, run, model.ret if model.fault is None else None)
    except ExportError as e:
        raise _usage(f"{args.finding}: {e}") from None
    if args.out:
        try:
            atomic_write(Path(args.out), test.source.encode())
        except FileExistsError as e:
            raise _usage(str(e)) from None
        print(f"{args.out}: {sum(p != '...' for p in test.jited)} __jited lines, run {run}, {j.verdict.kind.value}")
    else:
        sys.stdout.write(test.source)
    return 0


def add_report_commands(sub) -> None:
    from tcfuzz.cli.main import _add_codegen_args

    rp = sub.add_parser(
        "report",
        help="the evidence in one page: report.json, report.md, report.html",
        description="Runs the corpus replay, limits, prove --quick and mutants, reads fuzz runs given "
        "with --from, and writes the three files. Exit status: 1 if any divergence has no known cause.",
    )
    rp.add_argument(
        "--from",
        dest="from_dirs",
        action="append",
        default=[],
        metavar="DIR",
        help="a `tcfuzz fuzz` artifact directory (repeatable)",
    )
    rp.add_argument("--out", default="report", help="output directory (default: report/)")
    _add_codegen_args(rp)
    rp.set_defaults(func=cmd_report)

    ex = sub.add_parser("export", help="a finding as a BPF selftest (tools/testing/selftests/bpf/progs style)")
    ex.add_argument("finding", help="a world, artifact or corpus entry")
    ex.add_argument("--selftest", action="store_true", help="write it as a test_loader selftest (__jited, __retval)")
    ex.add_argument("--out", help="write to this file (never overwritten) instead of stdout")
    _add_codegen_args(ex)
    ex.set_defaults(func=cmd_export, source_output=True)  # C source: never re-wrapped
