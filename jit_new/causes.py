"""The patch's two known defects, each as a repair: the codegen it is applied to, with exactly that
defect fixed and nothing else changed. `PatchedCodegen.known_causes` declares them; a divergence is
attributed to one only when the repaired codegen runs the same world without diverging.

    shared-label  emit_bpf_tail_call_indirect() spells a static site (cmp edx, imm32; the cached
                  target at disp32) 5 bytes shorter than a dynamic one, yet both read and record
                  the single `ctx->tail_call_indirect_label`. Repair: one label per sequence kind.
    disp-wrap     the static path's `int offset = offsetof(ptrs) + max_entries * 8` wraps past
                  INT_MAX. Repair: a static site whose displacement does not fit an int is emitted
                  as the dynamic sequence (runtime max_entries load, ptrs[index]->bpf_func).

Each repair subclasses the codegen's own `jit_class`, so a plugin that declares these causes gets
its own emitter repaired (its other defects stay and still diverge).
"""
from __future__ import annotations

import copy
import dataclasses

from tcfuzz.jit_new.imm import decode_tail_call_imm, encode_tail_call_imm
from tcfuzz.jit_new.tail_call import static_ptrs_disp, used_map
from tcfuzz.jit_old.jit import X86Jit
from tcfuzz.model.bpf import s32
from tcfuzz.model.interfaces import KnownCause


class _LabelPerKind(X86Jit):
    """jit_context keeps one `tail_call_indirect_label` per sequence kind (static, dynamic)."""

    def emit_tail_call(self, p, prog, insn, ip, callee_regs_used, stack_depth, ctx):
        _map_index, dynamic, imm16 = decode_tail_call_imm(insn.imm)
        if imm16:
            return super().emit_tail_call(p, prog, insn, ip, callee_regs_used, stack_depth, ctx)
        labels = ctx.__dict__.setdefault("indirect_label_by_kind", {})   # carried across passes with ctx
        ctx.tail_call_indirect_label = labels.get(dynamic, 0)
        super().emit_tail_call(p, prog, insn, ip, callee_regs_used, stack_depth, ctx)
        labels[dynamic] = ctx.tail_call_indirect_label


class _DynamicWhenDispWraps(X86Jit):
    """A static site whose disp32 `offsetof(ptrs) + max_entries * 8` is not that value in an int
    takes the dynamic sequence."""

    def emit_tail_call(self, p, prog, insn, ip, callee_regs_used, stack_depth, ctx):
        map_index, dynamic, imm16 = decode_tail_call_imm(insn.imm)
        if not imm16 and not dynamic:
            max_entries = used_map(prog, map_index).max_entries
            if static_ptrs_disp(self.profile, max_entries) != self.profile.ptrs_off + max_entries * 8:
                insn = dataclasses.replace(insn, imm=s32(encode_tail_call_imm(map_index, True, None)))
        return super().emit_tail_call(p, prog, insn, ip, callee_regs_used, stack_depth, ctx)


def repaired_with(fix: type, cause: str):
    def repair(codegen):
        fixed = copy.copy(codegen)
        fixed.jit_class = type(f"{codegen.jit_class.__name__}_{fix.__name__.strip('_')}", (fix, codegen.jit_class), {})
        fixed.name = f"{codegen.name}+repaired-{cause}"
        fixed.known_causes = ()
        return fixed

    return repair


SHARED_LABEL = KnownCause(
    "shared-label",
    "a function with a static and a dynamic indirect site: the sequences differ by 5 bytes but share "
    "tail_call_indirect_label",
    repaired_with(_LabelPerKind, "shared-label"),
)
DISP_WRAP = KnownCause(
    "disp-wrap",
    "a static site's disp32 offsetof(ptrs) + max_entries * 8 wraps past INT_MAX",
    repaired_with(_DynamicWhenDispWraps, "disp-wrap"),
)
CAUSES = (SHARED_LABEL, DISP_WRAP)
