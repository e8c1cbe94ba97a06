"""Patch 3/4, the `case BPF_JMP | BPF_TAIL_CALL:` of build_insn():

    bool dynamic_array = (insn->imm >> 8) & 0xFF;
    u32 map_index = insn->imm & 0xFF;

Bits 16-31 (the poke index + 1 of a direct site) are not read: arm64 has no direct tail calls, so
a site the verifier made direct is emitted on the static path.
"""

from __future__ import annotations

from tcfuzz.jit_new.arm64.tail_call import emit_bpf_tail_call
from tcfuzz.jit_new.imm import decode_tail_call_imm
from tcfuzz.jit_old.arm64.emit import JitCtx
from tcfuzz.jit_old.arm64.jit import Arm64Jit
from tcfuzz.model.bpf import Insn


class PatchedArm64Jit(Arm64Jit):
    def emit_tail_call(self, ctx: JitCtx, insn: Insn) -> None:
        map_index, dynamic_array, _imm16 = decode_tail_call_imm(insn.imm)
        emit_bpf_tail_call(ctx, map_index, dynamic_array)


def bpf_arch_tail_call_prologue_offset(profile) -> int:
    """Patch 3/4: `return PROLOGUE_OFFSET * 4;` (instructions to bytes)."""
    return profile.prologue_offset * 4
