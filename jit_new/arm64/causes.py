"""The known defect of patch 3/4, as a repair (the arm64 side of jit_new/causes.py).

    disp-wrap   the static path adds `offsetof(ptrs) + max_entries * 8` (a size_t) through
                emit_a64_add_i(), whose immediate is an `s32`: from max_entries 268435412 it is
                truncated. Repair: a static site whose offset does not fit an s32 is emitted as
                the dynamic sequence (runtime max_entries load, ptrs[index]->bpf_func).

arm64 has no shared label (each sequence patches its own branches) and no direct tail calls, so a
constant-key site takes the static path too and can wrap.
"""

from __future__ import annotations

from tcfuzz.jit_new.arm64.jit import PatchedArm64Jit
from tcfuzz.jit_new.arm64.tail_call import emit_bpf_tail_call, static_target_offset
from tcfuzz.jit_new.causes import repaired_with
from tcfuzz.jit_new.imm import decode_tail_call_imm
from tcfuzz.jit_new.tail_call import used_map
from tcfuzz.model.bpf import s32
from tcfuzz.model.interfaces import KnownCause


class _DynamicWhenOffsetWraps(PatchedArm64Jit):
    def emit_tail_call(self, ctx, insn) -> None:
        map_index, dynamic_array, _imm16 = decode_tail_call_imm(insn.imm)
        offset = static_target_offset(ctx.profile.ptrs_off, used_map(ctx.prog, map_index).max_entries)
        emit_bpf_tail_call(ctx, map_index, dynamic_array or s32(offset) != offset)


DISP_WRAP = KnownCause(
    "disp-wrap",
    "a static site's offset offsetof(ptrs) + max_entries * 8 does not fit emit_a64_add_i()'s s32",
    repaired_with(_DynamicWhenOffsetWraps, "disp-wrap"),
)
CAUSES = (DISP_WRAP,)
