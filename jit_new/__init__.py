"""The patched x86-64 tail-call codegen: Leon Hwang's 2026-01-02 series, patches 1/4 and 2/4."""
from __future__ import annotations

from tcfuzz.jit_new import verifier
from tcfuzz.jit_new.causes import CAUSES
from tcfuzz.jit_new.imm import decode_tail_call_imm, encode_tail_call_imm
from tcfuzz.jit_new.jit import PatchedX86Jit
from tcfuzz.jit_old import LegacyCodegen
from tcfuzz.model.interfaces import KnownCause


class PatchedCodegen(LegacyCodegen):
    name = "patched"
    cached_targets = True          # patch 1/4: ptrs[max_entries + i] = bpf_func + X86_TAIL_CALL_OFFSET
    jit_class: type = PatchedX86Jit
    fixup_tail_call = staticmethod(verifier.fixup_tail_call)
    imm_codec = (encode_tail_call_imm, decode_tail_call_imm)    # (encode, decode), read by `tcfuzz limits`
    known_causes: tuple[KnownCause, ...] = CAUSES  # jit_new/causes.py: each with its repair


CODEGEN = PatchedCodegen()
