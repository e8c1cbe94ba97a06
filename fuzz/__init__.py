"""tcfuzz: a differential fuzzing harness for the Linux BPF JITs' tail-call code generation.

The package is laid out by stage (see ARCHITECTURE.md): gen -> machine -> verdict -> triage ->
analysis -> frontends -> selftest -> cli, over the kernel model (tcfuzz.model) and the two codegens
(tcfuzz.jit_old, tcfuzz.jit_new).
"""

from pathlib import Path

__version__ = "0.2.0"

# The source checkout this package was installed from (editable installs, which `make` uses). The
# regression corpus and the libFuzzer entry script live there, outside the importable package.
SOURCE_TREE = Path(__file__).resolve().parent.parent
