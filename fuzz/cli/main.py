"""The `tcfuzz` command line."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
from pathlib import Path

from tcfuzz.cli.errors import UsageError, output_dir
from tcfuzz.cli.report_cmd import add_report_commands
from tcfuzz.cli.terminal import (
    FittedStdout,
    add_common_options,
    busy,
    print_result,
    progress,
    prose_width,
    width_from_args,
)
from tcfuzz.frontends import SEED_MAX  # fuzz/frontends/fuzzcmd.py checks it again for API callers
from tcfuzz.model.bpf import R6, R7, R8, R9
from tcfuzz.model.interfaces import VerdictKind
from tcfuzz.model.profile import ARCHES, PRESETS, JumpVariant, ProfileError, preset, profile_for_arch
from tcfuzz.model.sample import SampleConfig, SiteKind
from tcfuzz.model.text import MAX_INT_DIGITS, shown

_REGS = {"r6": R6, "rbx": R6, "r7": R7, "r13": R7, "r8": R8, "r14": R8, "r9": R9, "r15": R9}


def _int(text: str) -> int:
    try:
        if len(text) > MAX_INT_DIGITS:
            raise ValueError
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {shown(text)}") from None


def _int_at_least(low: int, what: str = ""):
    """An integer argument checked when the command line is parsed, before anything runs."""

    def parse(text: str) -> int:
        value = _int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{value}: at least {low}{what}")
        return value

    return parse


def _seed(text: str) -> int:
    """libFuzzer's -seed is an unsigned int (`stoul` into a 32-bit flag; more is a crash in the child)."""
    value = _int(text)
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"{value}: libFuzzer takes 0..{SEED_MAX}")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text) if len(text) <= MAX_INT_DIGITS else math.nan
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {shown(text)}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{shown(text)}: a finite number of seconds > 0")
    return value


def _non_empty(text: str) -> str:
    if not text.strip(" ,"):
        raise argparse.ArgumentTypeError("empty: name at least one")
    return text


class ArgumentError(Exception):
    """A command line argparse refuses: one line, exit status 2 (argparse would print the usage too)."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `tcfuzz fuzz: error: argument --seed: ... (see tcfuzz fuzz --help)`."""

    def error(self, message: str):
        raise ArgumentError(f"{self.prog}: error: {message} (see {self.prog} --help)")


def _callee_regs(text: str) -> tuple[int, ...]:
    if text in ("", "none"):
        return ()
    if text == "all":
        return (R6, R7, R8, R9)
    try:
        return tuple(sorted({_REGS[name.strip().lower()] for name in text.split(",")}))
    except KeyError as e:
        raise argparse.ArgumentTypeError(
            f"unknown callee-saved register {e.args[0]!r} (use r6..r9 or rbx,r13,r14,r15, 'none', 'all')"
        ) from None


def _sites(text: str) -> tuple[SiteKind, ...]:
    try:
        return tuple(SiteKind(kind.strip()) for kind in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--kind {text!r}: use a comma-separated list of {', '.join(k.value for k in SiteKind)}"
        ) from None


def _add_profile_args(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("kernel profile")
    g.add_argument("--profile", default="default", help=f"preset ({', '.join(PRESETS)})")
    g.add_argument("--arch", choices=ARCHES, help="the same kernel built for this architecture (default: the preset's)")
    g.add_argument("--ibt", action=argparse.BooleanOptionalAction, default=None, help="CONFIG_X86_KERNEL_IBT")
    g.add_argument("--security", action=argparse.BooleanOptionalAction, default=None, help="CONFIG_SECURITY layout")
    g.add_argument("--jump", choices=[v.value for v in JumpVariant], help="indirect-jump variant")
    g.add_argument("--sls", action=argparse.BooleanOptionalAction, default=None, help="int3 after ret")
    g.add_argument("--ptrs-off", type=_int, help="offsetof(struct bpf_array, ptrs)")


def profile_from_args(args: argparse.Namespace):
    prof = preset(args.profile)
    changes = {}
    if args.ibt is not None:
        changes["ibt"] = args.ibt
    if args.security is not None:
        changes.update(config_security=args.security, max_entries_off=None)
        if args.ptrs_off is None:
            changes["ptrs_off"] = None
    if args.jump is not None:
        changes["jump"] = JumpVariant(args.jump)
    if args.sls is not None:
        changes["sls"] = args.sls
    if args.ptrs_off is not None:
        changes["ptrs_off"] = args.ptrs_off
    if changes:
        prof = prof.replace(name=f"{prof.name}+custom", **changes)
    if args.arch is not None:
        prof = profile_for_arch(prof, args.arch)
    return prof


def cmd_disasm(args: argparse.Namespace) -> int:
    from tcfuzz import jit_new, jit_old
    from tcfuzz.triage.disasm import listing, render_side_by_side

    profile = profile_from_args(args)
    try:
        cfg = SampleConfig(
            sites=args.kind,
            max_entries=args.max_entries,
            key=args.key,
            stack_depth=args.stack_depth,
            callee_regs=args.callee_regs,
            unpriv=args.unpriv,
            exception_boundary=args.exception_boundary,
            is_subprog=args.subprog,
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    old = listing(jit_old.CODEGEN, cfg, profile, whole=args.whole)
    new = listing(jit_new.CODEGEN, cfg, profile, whole=args.whole)
    if args.json:
        json.dump(
            {
                "profile": profile.to_json(),
                "config": {
                    "sites": [k.value for k in cfg.sites],
                    "max_entries": cfg.max_entries,
                    "key": cfg.key,
                    "stack_depth": cfg.stack_depth,
                    "callee_regs": [f"r{r}" for r in cfg.callee_regs],
                    "unpriv": cfg.unpriv,
                    "exception_boundary": cfg.exception_boundary,
                    "subprog": cfg.is_subprog,
                },
                "old": old.to_json(),
                "new": new.to_json(),
            },
            sys.stdout,
            indent=2,
        )
        print()
    elif profile.arch == "arm64":
        print(
            f"profile {profile.name}: arm64 bti={profile.bti} pac={profile.pac} "
            f"max_entries@{profile.max_entries_off:#x} ptrs@{profile.ptrs_off:#x} "
            f"bpf_func@{profile.bpf_func_off:#x} PROLOGUE_OFFSET={profile.prologue_offset} "
            f"(bpf_arch_tail_call_prologue_offset() = {profile.tail_call_offset})"
        )
        print(render_side_by_side(old, new))
    else:
        print(f"profile {profile.name}: ibt={profile.ibt} jump={profile.jump.value} sls={profile.sls}")
        print(
            f"  max_entries@{profile.max_entries_off:#x} ptrs@{profile.ptrs_off:#x} "
            f"bpf_func@{profile.bpf_func_off:#x} X86_TAIL_CALL_OFFSET={profile.tail_call_offset}"
        )
        print(render_side_by_side(old, new, width=width_from_args(args)))
    return 0


def _finding_command(name: str):
    """run/repro/minimize/triage/corpus add live in fuzz/cli/finding_cmds.py."""

    def command(args: argparse.Namespace) -> int:
        from tcfuzz.cli import finding_cmds

        try:
            return getattr(finding_cmds, name)(args)
        except finding_cmds.CommandError as e:
            raise UsageError(str(e)) from None

    return command


cmd_run = _finding_command("cmd_run")
cmd_repro = _finding_command("cmd_repro")
cmd_minimize = _finding_command("cmd_minimize")
cmd_triage = _finding_command("cmd_triage")
cmd_corpus_add = _finding_command("cmd_corpus_add")


def world_for_arch(world, arch: str | None, path: str, voters: dict):
    """`--arch`: the world's twin on that architecture (World.for_arch), or the world itself; the
    codegens must emit code for it (a default codegen's twin is taken)."""
    from tcfuzz.codegens import PluginError, for_arch
    from tcfuzz.model.world import WorldError

    try:
        world = world if arch is None else world.for_arch(arch)
        for codegen in voters.values():
            for_arch(codegen, world.profile.arch)
    except (WorldError, PluginError) as e:
        raise UsageError(f"{path}: {e}") from None
    return world


def _add_arch_arg(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--arch", choices=ARCHES, help="run the world's twin on this architecture (default: its profile's)")


def _add_codegen_args(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("codegens (module:object implementing model.interfaces.Codegen)")
    g.add_argument("--old", help="the reference codegen (default: an artifact's own, else the legacy JIT)")
    g.add_argument("--new", help="the codegen under test (default: an artifact's own, else the 2026 patch)")


def _add_model_order_arg(ap: argparse.ArgumentParser, default: str | None = None) -> None:
    ap.add_argument(
        "--model-order",
        choices=["jit", "interpreter", "both"],
        default=default,
        help="reference counter order: increment after the NULL check (jit) or before it (interpreter "
        "before its 2026 fix), or jit then interpreter (both); default: an artifact's own, else jit",
    )


def _add_replay_args(ap: argparse.ArgumentParser, json_help: str | None = None, arch: bool = False) -> None:
    """What every command that judges a finding again takes: --json, the codegens, the model order
    (and --arch where a world's twin can run)."""
    ap.add_argument("--json", action="store_true", help=json_help)
    if arch:
        _add_arch_arg(ap)
    _add_codegen_args(ap)
    _add_model_order_arg(ap)


def specs_from_args(args: argparse.Namespace) -> dict[str, str]:
    from tcfuzz.codegens import NEW_DEFAULT, OLD_DEFAULT

    return {"old": args.old or OLD_DEFAULT, "new": args.new or NEW_DEFAULT}


def codegens_from_args(args: argparse.Namespace) -> dict:
    """{"old": Codegen, "new": Codegen} for judge()."""
    from tcfuzz.codegens import PluginError, load_codegen

    try:
        return {"old": load_codegen(specs_from_args(args)["old"]), "new": load_codegen(specs_from_args(args)["new"])}
    except PluginError as e:
        raise UsageError(str(e)) from None


def cmd_fuzz(args: argparse.Namespace) -> int:
    from tcfuzz.frontends.fuzzcmd import FuzzUsageError
    from tcfuzz.frontends.fuzzcmd import run as fuzz_run

    codegens_from_args(args)  # fail early, with one line, on a bad spec
    extra = [a for a in args.libfuzzer if a != "--"]
    specs = specs_from_args(args)
    try:
        return fuzz_run(
            Path(args.corpus),
            Path(args.artifacts),
            args.max_time,
            args.runs,
            args.seed,
            args.jobs,
            args.fork,
            extra,
            specs["old"],
            specs["new"],
            args.ignore_known,
            Path(args.summary) if args.summary else None,
            Path(args.junit) if args.junit else None,
            args.model_order,
            kernel_every=_kernel_every(args),
            arch=args.arch,
            verbose=args.verbose,
        )
    except FuzzUsageError as e:
        raise UsageError(str(e)) from None


def _kernel_every(args: argparse.Namespace) -> int:
    """`--kernel N`: checked here, so a machine without bpf() fails in one line before the engine starts."""
    if not args.kernel:
        return 0
    from tcfuzz.live.available import unavailable

    reason = unavailable()
    if reason:
        raise UsageError(f"--kernel: {reason}")
    return args.kernel


def cmd_limits(args: argparse.Namespace) -> int:
    from tcfuzz.analysis.limits import hunt, render

    profile = profile_from_args(args)
    changes = {k: v for k, v in (("max_used_maps", args.max_used_maps), ("poke_tab_max", args.poke_tab_max)) if v is not None}
    if changes:
        profile = profile.replace(name=f"{profile.name}+limits", **changes)
    if profile.arch == "arm64":
        from tcfuzz.analysis import limits_arm64

        arm = limits_arm64.hunt(profile, not args.no_demo, quick=args.quick, **codegens_from_args(args))
        print_result(args, {"profile": profile.to_json(), **arm.to_json()}, lambda: limits_arm64.render(arm))
        return 0
    report = hunt(profile, run_demos=not args.no_demo, **codegens_from_args(args))
    print_result(args, {"profile": profile.to_json(), **report.to_json()}, lambda: render(report))
    return 0


def cmd_mutants(args: argparse.Namespace) -> int:
    from tcfuzz.selftest.kill import render, run
    from tcfuzz.selftest.mutants import CATALOGUE

    if args.systematic:
        from tcfuzz.selftest.systematic_cli import run_systematic

        return run_systematic(args)
    names = list(CATALOGUE) if not args.only else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n not in CATALOGUE]
    if unknown:
        raise UsageError(f"--only: unknown mutant {unknown[0]!r}; the catalogue: {', '.join(CATALOGUE)}")
    kills = run(progress(args)(names, "mutants"), args.budget, args.seed, use_corpus=not args.no_corpus)
    print_result(args, {"budget": args.budget, "seed": args.seed, "mutants": [k.to_json() for k in kills]}, lambda: render(kills))
    return 0 if all(k.killed for k in kills) else 1


def cmd_bench(args: argparse.Namespace) -> int:
    from tcfuzz.selftest.bench import render, run

    with busy(args, "bench"):
        report = run(args.cases, args.repeat, args.atheris_seconds, args.atheris_repeat, args.profile)
    print_result(args, report, lambda: render(report))
    return 0


def cmd_prove(args: argparse.Namespace) -> int:
    from tcfuzz.analysis.prove import matrix, render, run_matrix
    from tcfuzz.codegens import PluginError, for_arch

    voters = codegens_from_args(args)
    arch = args.arch or (preset(args.profile).arch if args.profile else "x86_64")
    if args.profile and preset(args.profile).arch != arch:
        raise UsageError(f"--profile {args.profile} is an {preset(args.profile).arch} profile, not {arch}")
    try:
        for codegen in voters.values():
            for_arch(codegen, arch)
    except PluginError as e:
        raise UsageError(str(e)) from None
    if args.artifacts:
        output_dir(args.artifacts, "--artifacts")
    configs = matrix(quick=args.quick, arch=arch)
    if args.kind:
        kinds = {k.strip() for k in args.kind.split(",")}
        configs = [c for c in configs if c.kind in kinds]
    if args.profile:
        configs = [c for c in configs if c.profile == args.profile]
    if not configs:
        raise UsageError("no configuration left to prove")
    report = run_matrix(
        progress(args)(configs, "prove"),
        voters["old"],
        voters["new"],
        Path(args.artifacts) if args.artifacts else None,
        specs_from_args(args),
    )
    print_result(
        args, {"results": [r.to_json() for r in report["results"]], "replays": report["replays"]}, lambda: render(report)
    )
    failed = any(not r.proven for r in report["results"]) or any(not e["reproduced"] for e in report["replays"])
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    ap = Parser(prog="tcfuzz", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    d = sub.add_parser("disasm", help="legacy and patched tail-call sequences side by side (capstone)")
    _add_profile_args(d)
    g = d.add_argument_group("program")
    g.add_argument(
        "--kind",
        type=_sites,
        default=(SiteKind.STATIC,),
        help="tail-call site(s), in program order: static, dynamic, direct (e.g. static,dynamic)",
    )
    g.add_argument("--max-entries", type=_int, default=4)
    g.add_argument("--key", type=_int, default=0, help="constant key of a direct site")
    g.add_argument("--stack-depth", type=_int, default=0)
    g.add_argument("--callee-regs", type=_callee_regs, default=(), help="r6..r9 / rbx,r13,r14,r15 / none / all")
    g.add_argument("--unpriv", action="store_true", help="map created without CAP_PERFMON")
    g.add_argument("--exception-boundary", action="store_true", help="push/pop r12 and all callee regs")
    g.add_argument("--subprog", action="store_true", help="JIT as a subprogram")
    d.add_argument("--whole", action="store_true", help="the whole image, not just the tail-call sites")
    d.add_argument("--json", action="store_true", help="machine-readable output")
    d.set_defaults(func=cmd_disasm)

    r = sub.add_parser(
        "run",
        help="run a world under legacy, patched and the reference model; print the verdict",
        description="Exit status: 0 the three agree, 1 they diverge, 2 unusable input.",
    )
    r.add_argument("world", help="world JSON file")
    r.add_argument("--kernel", action="store_true", help="also run the world in the running kernel (a fourth voter)")
    _add_replay_args(r, "machine-readable output", arch=True)
    r.set_defaults(func=cmd_run)

    rp = sub.add_parser(
        "repro",
        help="re-run a world, artifact or corpus entry; show where the runs part",
        description="Exit status: 0 it no longer diverges, 1 it still does, 2 unusable input.",
    )
    rp.add_argument("file")
    _add_replay_args(rp, arch=True)
    rp.set_defaults(func=cmd_repro)

    m = sub.add_parser("minimize", help="shrink a diverging world, keeping its signature; writes <name>.min.json")
    m.add_argument("file")
    _add_codegen_args(m)
    _add_model_order_arg(m)
    m.set_defaults(func=cmd_minimize)

    t = sub.add_parser(
        "triage",
        help="unique signatures in a directory of findings, with counts and a "
        "minimized representative each (exit 1 if any diverges)",
    )
    t.add_argument("dir")
    t.add_argument("--no-minimize", action="store_true", help="list only; write nothing")
    _add_replay_args(t)
    t.set_defaults(func=cmd_triage)

    f = sub.add_parser(
        "fuzz",
        help="the nightly run: libFuzzer through Atheris, artifacts, summary, JUnit",
        description="Exit status: 0 nothing that counts, 1 a divergence that counts (with --ignore-known: "
        "one without a proved known cause), 2 bad arguments, 3 the engine failed, 128+N interrupted by "
        "signal N. libFuzzer flags go after `--`.",
    )
    f.add_argument("--corpus", default="fuzz-corpus", help="libFuzzer corpus directory (default: fuzz-corpus)")
    f.add_argument("--artifacts", default="fuzz-artifacts", help="artifact directory (-artifact_prefix)")
    f.add_argument("--max-time", type=_int_at_least(0), help="seconds (-max_total_time); 0: no time limit")
    f.add_argument("--runs", type=_int_at_least(0), help="inputs (-runs)")
    f.add_argument("--seed", type=_seed, default=1, help=f"libFuzzer -seed (0..{SEED_MAX}), recorded in every artifact")
    f.add_argument("--jobs", type=_int_at_least(1), help="engine processes, with seeds SEED, SEED+1, ...")
    f.add_argument("--fork", type=_int_at_least(0, " (0: no fork mode)"), help="libFuzzer -fork (0: off)")
    _add_codegen_args(f)
    _add_model_order_arg(f, "jit")
    f.add_argument("--arch", choices=ARCHES, help="fuzz each generated world's twin on this architecture")
    f.add_argument("--ignore-known", action="store_true", help="exit 0 when every divergence has a known cause")
    f.add_argument(
        "--kernel", type=_int_at_least(0), metavar="N", help="every Nth world also through the running kernel (fourth voter)"
    )
    f.add_argument("--summary", help="JSON summary path (default: ARTIFACTS/summary.json)")
    f.add_argument("--junit", help="JUnit XML path (default: ARTIFACTS/junit.xml)")
    f.add_argument(
        "-v", "--verbose", action="store_true", help="libFuzzer's output on the terminal (default: ARTIFACTS/fuzz-RUN-jobK.log)"
    )
    f.add_argument("libfuzzer", nargs=argparse.REMAINDER, help="-- then libFuzzer flags")
    f.set_defaults(func=cmd_fuzz)

    li = sub.add_parser("limits", help="where the patch's packed imm fields and static disp32 overflow")
    _add_profile_args(li)
    li.add_argument("--max-used-maps", type=_int, help="raise MAX_USED_MAPS (default 64)")
    li.add_argument("--poke-tab-max", type=_int, help="raise the poke table limit (default 1024)")
    li.add_argument("--no-demo", action="store_true", help="skip the worlds run under Unicorn")
    li.add_argument(
        "--quick", action="store_true", help="arm64: helpers on value classes, max_entries < 2**29 (seconds, not minutes)"
    )
    li.add_argument("--json", action="store_true")
    _add_codegen_args(li)
    li.set_defaults(func=cmd_limits)

    mu = sub.add_parser(
        "mutants",
        help="the oracle's self-test: fuzz each planted bug, report time to kill",
        description="Exit status: 0 every mutant killed, 1 one survived its budget.",
    )
    mu.add_argument("--budget", type=_positive_seconds, default=30.0, help="seconds per mutant (default 30)")
    mu.add_argument("--seed", type=_int, default=1)
    mu.add_argument("--only", type=_non_empty, help="comma-separated mutant names")
    mu.add_argument("--no-corpus", action="store_true", help="generated worlds only (no regression corpus first)")
    mu.add_argument("--json", action="store_true")
    mu.add_argument("--systematic", action="store_true", help="every single-instruction mutation, fuzzed then proved")
    mu.add_argument("--sample", type=_int_at_least(1), help="with --systematic: this many mutations, drawn by --seed")
    mu.add_argument("--prove-quick", action="store_true", help="with --systematic: survivors proved on the quick matrix")
    mu.add_argument("--max-inputs", type=_int_at_least(1), help="with --systematic: also stop each hunt after this many inputs")
    mu.set_defaults(func=cmd_mutants)

    b = sub.add_parser("bench", help="throughput of every path, each as a ratio to its ceiling (a benchmark, not a test)")
    b.add_argument("--cases", type=_int_at_least(1), default=2000, help="cases per batch (default 2000)")
    b.add_argument("--repeat", type=_int_at_least(1), default=5, help="repetitions; each figure is min/median/max over them")
    b.add_argument(
        "--atheris-seconds", type=_int_at_least(0, " (0 skips it)"), default=10, help="seconds per Atheris run; 0 to skip"
    )
    b.add_argument("--atheris-repeat", type=_int_at_least(1), default=3, help="Atheris runs of each kind (default 3)")
    b.add_argument(
        "--profile", type=_int_at_least(0), default=0, metavar="N", help="also profile N fuzz inputs: where the time goes"
    )
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench)

    pv = sub.add_parser(
        "prove",
        help="SMT proof that legacy and patched sequences agree for all inputs",
        description="Exit status: 0 every configuration proven and every counterexample reproduced; 1 otherwise.",
    )
    pv.add_argument("--quick", action="store_true", help="a smaller matrix (3 profiles, arm64: 2; 2 depths, 2 register sets)")
    pv.add_argument("--kind", help="comma-separated site kinds: static, dynamic, direct")
    pv.add_argument("--profile", choices=sorted(PRESETS), help="only this profile")
    pv.add_argument("--arch", choices=ARCHES, help="the matrix of this architecture (default: the --profile's, else x86_64)")
    pv.add_argument("--artifacts", help="write replayed counterexamples here (tcfuzz repro accepts them)")
    pv.add_argument("--json", action="store_true")
    _add_codegen_args(pv)
    pv.set_defaults(func=cmd_prove)

    c = sub.add_parser("corpus", help="manage the regression corpus")
    csub = c.add_subparsers(dest="corpus_command", required=True)
    ca = csub.add_parser("add", help="turn a world/artifact into a corpus entry expecting its current verdict")
    ca.add_argument("file")
    ca.add_argument("--group", default="findings", help="subdirectory of the corpus (default: findings)")
    ca.add_argument("--purpose", help="one line: what the entry guards")
    ca.add_argument("--name", help="file name (default: the input's)")
    ca.add_argument("--corpus", default="corpus", help="corpus root (default: ./corpus)")
    ca.add_argument(
        "--expect",
        choices=[k.value for k in VerdictKind],
        help="the verdict the entry expects; required to add a finding that no longer diverges",
    )
    _add_codegen_args(ca)
    _add_model_order_arg(ca)
    ca.set_defaults(func=cmd_corpus_add)

    from tcfuzz.cli import kernel

    kernel.add_parser(sub)
    add_report_commands(sub)
    add_common_options(ap)
    return ap


EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # 141, what a shell reports for a writer killed by SIGPIPE


def main(argv: list[str] | None = None) -> int:
    """Every failure that is not a finding ends here as one line on stderr and exit status 2: bad
    arguments (at parse time), unusable input files, a codegen spec that does not load (whatever the
    module raised at import), an output path that cannot be written (OSError from any write). A
    closed stdout (`tcfuzz repro X | head -1`) is exit 141, silently, like any Unix filter; Ctrl-C
    is one line and 130."""
    ap = build_parser()
    try:
        args = ap.parse_args(argv)
    except ArgumentError as e:
        print(str(e), file=sys.stderr)
        return EXIT_USAGE
    args.invoked = list(argv) if argv is not None else sys.argv[1:]  # recorded by commands that say how to rerun them
    stdout = sys.stdout
    if not getattr(args, "json", False) and not getattr(args, "source_output", False):
        sys.stdout = FittedStdout(sys.stdout, prose_width(args))
    try:
        try:
            return args.func(args)
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        return _broken_pipe(stdout)
    except KeyboardInterrupt:  # `tcfuzz fuzz` handles its own signals (summary, JUnit, the engine's group)
        print(f"tcfuzz {args.command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except (UsageError, ProfileError) as e:
        print(f"tcfuzz {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # an output path: unwritable, a file where a directory should be, a full disk
        where = f"{e.filename}: " if e.filename else ""
        print(f"tcfuzz {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        sys.stdout = stdout


def _broken_pipe(stdout) -> int:
    """The reader went away: nothing more can be written, and the interpreter's final flush must not
    print a traceback either, so stdout is pointed at /dev/null (the Python docs' recipe)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (pytest's capture)
        pass
    return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
