#!/bin/bash -eu
# ClusterFuzzLite / OSS-Fuzz build (base-builder-python): install tcfuzz, package every
# fuzzers/*_fuzzer.py with compile_python_fuzzer (PyInstaller), and put beside each fuzzer in $OUT
# what the runner picks up by name: <fuzzer>_seed_corpus.zip and <fuzzer>.dict.
# In this mode (no TCFUZZ_ARTIFACTS) a divergence without a known cause raises, so the engine keeps
# the input as a crash; `tcfuzz repro crash-<sha1>` replays it anywhere.
pip3 install .
for fuzzer in $(find "$SRC/tcfuzz/fuzzers" -name '*_fuzzer.py'); do
  name=$(basename "$fuzzer" .py)
  compile_python_fuzzer "$fuzzer" --collect-all unicorn --collect-all capstone \
    --collect-submodules tcfuzz
  if [ -f "$SRC/tcfuzz/fuzzers/$name.dict" ]; then
    cp "$SRC/tcfuzz/fuzzers/$name.dict" "$OUT/"
  fi
done
# The seed corpus: the regression corpus (corpus/**/*.json) encoded as fuzzer inputs, where this
# tcfuzz has the encoder (tcfuzz.frontends.seeds); a JSON world is not itself a fuzzer input.
seeds="$WORK/tailcall_fuzzer_seeds"
if python3 -c 'import tcfuzz.frontends.seeds' 2>/dev/null; then
  python3 -c 'import sys; from pathlib import Path; from tcfuzz.frontends.seeds import write_seeds; write_seeds(Path(sys.argv[1]))' "$seeds"
  (cd "$seeds" && zip -q -r "$OUT/tailcall_fuzzer_seed_corpus.zip" .)
fi
