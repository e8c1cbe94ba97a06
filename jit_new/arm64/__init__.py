"""The patched arm64 tail-call codegen: patches 1/4 and 3/4 of the 2026-01-02 series. The verifier
packing is patch 2/4's (architecture-independent); the cache holds bpf_func + PROLOGUE_OFFSET * 4."""

from __future__ import annotations

from tcfuzz.jit_new import PatchedCodegen
from tcfuzz.jit_new.arm64.causes import CAUSES
from tcfuzz.jit_new.arm64.jit import PatchedArm64Jit


class PatchedArm64Codegen(PatchedCodegen):
    name = "patched"
    arch = "arm64"
    jit_class = PatchedArm64Jit
    known_causes = CAUSES  # jit_new/arm64/causes.py: disp-wrap only (no shared label on arm64)


CODEGEN = PatchedArm64Codegen()
