"""The legacy x86-64 tail-call codegen: bpf-next as it stood before the 2026-01-02 series."""
from __future__ import annotations

from collections.abc import Sequence

from tcfuzz.jit_old import verifier
from tcfuzz.jit_old.jit import X86Jit
from tcfuzz.model.bpf import Insn
from tcfuzz.model.interfaces import Codegen, JitImage, MapRef, PokeDescriptor, VerifiedProgram, VerifierEnv
from tcfuzz.model.profile import KernelProfile


class LegacyCodegen(Codegen):
    """The legacy JIT as a model.interfaces.Codegen (no cache, the imm is the poke index + 1)."""

    name = "legacy"
    arch = "x86_64"
    cached_targets = False
    jit_class: type = X86Jit
    fixup_tail_call = staticmethod(verifier.fixup_tail_call)

    def fixup(self, insns: Sequence[Insn], env: VerifierEnv, used_maps: Sequence[MapRef],
              profile: KernelProfile) -> tuple[list[Insn], list[PokeDescriptor]]:
        return verifier.do_misc_fixups(insns, env, used_maps, profile, self.fixup_tail_call)

    def jit(self, prog: VerifiedProgram, profile: KernelProfile, image_base: int) -> JitImage:
        return self.jit_class(profile).bpf_int_jit_compile(prog, image_base)


CODEGEN = LegacyCodegen()
