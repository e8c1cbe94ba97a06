#!/usr/bin/env python3
"""libFuzzer entry point (Atheris): `./fuzzers/tailcall_fuzzer.py [libFuzzer flags] [corpus dirs]`.

Executable with a shebang so that libFuzzer's -fork/-jobs can re-execute it. tcfuzz's modules are
instrumented for coverage, unicorn and capstone are not; tcfuzz.frontends.progress (the clock) never is.
Used by `tcfuzz fuzz` and by the ClusterFuzzLite build (.clusterfuzzlite/build.sh).
"""

import contextlib
import os
import sys

import atheris

# TCFUZZ_NO_INSTRUMENT=1 (used by `tcfuzz bench`) measures the cost of the instrumentation.
# INSTRUMENTED names the modules whose coverage means something to the search: the decoder/generator,
# the reference's outcome branches, the oracle's and the policy's decisions, the target's outcome
# branches. atheris.instrument_imports(include=...) keeps only the top-level package of each name,
# though, so every tcfuzz module is instrumented (emitters, engine and batch driver too). Excluding
# the others by name doubled inputs/s but not cases/s (README, "A cheaper input"); not done yet.
# tcfuzz.frontends.progress (the wall clock, stats files, the watchdog) is never coverage: a branch
# taken every 5 seconds would make the same -seed/-runs explore differently on a loaded machine.
INSTRUMENTED = [
    "tcfuzz.gen.worlds",
    "tcfuzz.model.semantics",
    "tcfuzz.verdict.oracle",
    "tcfuzz.verdict.policy",
    "tcfuzz.frontends.target",
]
instrumenting = (
    contextlib.nullcontext()
    if os.environ.get("TCFUZZ_NO_INSTRUMENT")
    else atheris.instrument_imports(include=INSTRUMENTED, exclude=["tcfuzz.frontends.progress"])
)
with instrumenting:
    from tcfuzz.frontends.target import main

if __name__ == "__main__":
    main(sys.argv)
