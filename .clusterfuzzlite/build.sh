#!/bin/bash -eu
# ClusterFuzzLite / OSS-Fuzz build: install tcfuzz, then package every *_fuzzer.py with PyInstaller.
# In this mode (no TCFUZZ_ARTIFACTS) a divergence without a known cause raises, so the engine keeps
# the input as a crash; `tcfuzz repro crash-<sha1>` replays it anywhere.
pip3 install .
for fuzzer in $(find "$SRC/tcfuzz/fuzzers" -name '*_fuzzer.py'); do
  compile_python_fuzzer "$fuzzer" --collect-all unicorn --collect-all capstone \
    --collect-submodules tcfuzz
done
