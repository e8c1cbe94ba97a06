"""`tcfuzz mutants --systematic`: the command's table and JSON (the mutations and the run are in
systematic.py)."""

from __future__ import annotations

import argparse
import json
import sys

from tcfuzz.selftest.systematic import all_mutations, render, run, sample, score


def run_systematic(args: argparse.Namespace) -> int:
    """Exit status 0 when every mutation is killed or proven equivalent, else 1."""
    mutations = all_mutations()
    if args.sample:
        mutations = sample(mutations, args.sample, args.seed)

    def progress(o) -> None:
        state = f"killed in {o.seconds:.2f} s" if o.killed else f"survived: {o.proof}"
        print(f"tcfuzz mutants: {o.id}: {state}", file=sys.stderr, flush=True)

    outcomes = run(mutations, args.budget, args.seed, prove_quick=args.prove_quick, progress=progress, max_inputs=args.max_inputs)
    s = score(outcomes)
    if args.json:
        report = {
            "budget": args.budget,
            "seed": args.seed,
            "total": s.total,
            "killed": s.killed,
            "proven_equivalent": s.equivalent,
            "score": s.value,
            "median_seconds_to_kill": s.median_kill,
            "mutations": [o.to_json() for o in outcomes],
        }
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print(render(outcomes))
    return 0 if s.killed + s.equivalent == s.total else 1
