"""The legacy arm64 tail-call codegen: arch/arm64/net/bpf_jit_comp.c as bpf-next stood before the
2026-01-02 series. The verifier fix-up is the architecture-independent one of jit_old."""

from __future__ import annotations

from tcfuzz.jit_old import LegacyCodegen
from tcfuzz.jit_old.arm64.jit import Arm64Jit


class LegacyArm64Codegen(LegacyCodegen):
    name = "legacy"
    arch = "arm64"
    jit_class = Arm64Jit


CODEGEN = LegacyArm64Codegen()
