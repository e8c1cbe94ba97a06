#!/usr/bin/env python3
"""libFuzzer entry point (Atheris): `./fuzzers/tailcall_fuzzer.py [libFuzzer flags] [corpus dirs]`.

Executable with a shebang so that libFuzzer's -fork/-jobs can re-execute it. tcfuzz's own packages
are instrumented for coverage; unicorn and capstone are not (their coverage is noise and costs 2x).
Used by `tcfuzz fuzz` and by the ClusterFuzzLite build (.clusterfuzzlite/build.sh).
"""

import contextlib
import os
import sys

import atheris

# TCFUZZ_NO_INSTRUMENT=1 (used by `tcfuzz bench`) measures the cost of the instrumentation.
# tcfuzz.frontends.progress (the wall clock, stats files, the watchdog) is never coverage: a branch
# taken every 5 seconds would make the same -seed/-runs explore differently on a loaded machine.
instrumenting = (
    contextlib.nullcontext()
    if os.environ.get("TCFUZZ_NO_INSTRUMENT")
    else atheris.instrument_imports(include=["tcfuzz"], exclude=["tcfuzz.frontends.progress"])
)
with instrumenting:
    from tcfuzz.frontends.target import main

if __name__ == "__main__":
    main(sys.argv)
