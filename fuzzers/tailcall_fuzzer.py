#!/usr/bin/env python3
"""libFuzzer entry point (Atheris): `./fuzzers/tailcall_fuzzer.py [libFuzzer flags] [corpus dirs]`.

Executable with a shebang so that libFuzzer's -fork/-jobs can re-execute it. The tcfuzz modules that
steer the search are instrumented for coverage (INSTRUMENTED); the rest, unicorn and capstone are not,
and tcfuzz.frontends.progress (the clock) never is.
Used by `tcfuzz fuzz` and by the ClusterFuzzLite build (.clusterfuzzlite/build.sh).
"""

import importlib
import os
import sys
import types

# TCFUZZ_NO_INSTRUMENT=1 (used by `tcfuzz bench`) measures the cost of the instrumentation.
# INSTRUMENTED names the modules whose coverage means something to the search: the decoder/generator,
# the reference's outcome branches, the oracle's and the policy's decisions, the target's outcome
# branches. Only their functions are instrumented (atheris's patch_code on each, in place), not the
# emitters, the engine, the batch driver or numpy glue, whose branches say nothing about the world
# and cost every input. (atheris.instrument_imports(include=...) cannot do this: it keeps only the
# top-level package of each name, so it would instrument every tcfuzz module.)
# tcfuzz.frontends.progress (the wall clock, stats files, the watchdog) is never coverage: a branch
# taken every 5 seconds would make the same -seed/-runs explore differently on a loaded machine.
INSTRUMENTED = [
    "tcfuzz.gen.worlds",
    "tcfuzz.model.semantics",
    "tcfuzz.verdict.oracle",
    "tcfuzz.verdict.replay",
    "tcfuzz.verdict.policy",
    "tcfuzz.frontends.target",
]
# Branches only, no comparison tracing: the batch oracle compares numpy arrays, and atheris's
# comparison tracing kept every such result alive (a fuzzing process grew by ~0.5 MB per input and
# hit libFuzzer's 2 GB limit within 90 s). Its branches (which model, which site shapes) still steer
# the search toward batches.
BRANCHES_ONLY = ["tcfuzz.verdict.batch_oracle"]


def instrument_module(module, trace_comparisons: bool = True) -> int:
    """Instrument every function and method defined in `module` in place; returns how many."""
    from atheris.instrument_bytecode import patch_code  # atheris.instrument_func always traces comparisons

    done = 0

    def visit(obj) -> None:
        nonlocal done
        if isinstance(obj, (staticmethod, classmethod)):
            obj = obj.__func__
        if isinstance(obj, property):
            for f in (obj.fget, obj.fset, obj.fdel):
                if f is not None:
                    visit(f)
            return
        if isinstance(obj, types.FunctionType) and obj.__module__ == module.__name__:
            obj.__code__ = patch_code(obj.__code__, trace_dataflow=trace_comparisons, trace_control_flow=True)
            done += 1

    for obj in list(vars(module).values()):
        if isinstance(obj, type) and obj.__module__ == module.__name__:
            for member in list(vars(obj).values()):
                visit(member)
        else:
            visit(obj)
    return done


from tcfuzz.frontends.target import main  # noqa: E402  (imports every module INSTRUMENTED names)

if not os.environ.get("TCFUZZ_NO_INSTRUMENT"):
    for name in INSTRUMENTED:
        instrument_module(importlib.import_module(name))
    for name in BRANCHES_ONLY:
        instrument_module(importlib.import_module(name), trace_comparisons=False)

if __name__ == "__main__":
    main(sys.argv)
