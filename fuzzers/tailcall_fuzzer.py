#!/usr/bin/env python3
"""libFuzzer entry point (Atheris): `./fuzzers/tailcall_fuzzer.py [libFuzzer flags] [corpus dirs]`.

Executable with a shebang so that libFuzzer's -fork/-jobs can re-execute it. Only tcfuzz's modules
that steer the search are instrumented for coverage (INSTRUMENTED below); the
emitters, the engine, unicorn and capstone are not (their coverage is noise and costs 2-3x).
Used by `tcfuzz fuzz` and by the ClusterFuzzLite build (.clusterfuzzlite/build.sh).
"""

import contextlib
import os
import sys

import atheris

# TCFUZZ_NO_INSTRUMENT=1 (used by `tcfuzz bench`) measures the cost of the instrumentation.
# Only the modules whose coverage means something to the search are instrumented (INSTRUMENTED): the
# decoder/generator (which structure an input built), the reference's outcome branches, the oracle's
# and the policy's decisions (not the replay plumbing), and the target's outcome branches (fuzz/frontends/target.py feedback()).
# Not the emitters' byte helpers, the engine, the batch driver or the numpy model: their branches are
# the same for every world, and instrumenting them cost about 3x per input.
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
