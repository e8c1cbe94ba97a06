"""Planted bugs in the arm64 back end (patch 3/4 and the legacy arm64 JIT), for `tcfuzz mutants`.

Like the x86-64 mutants, most emit their base's sequence and then rewrite one A64 word of it,
found by the emitter's own asm comment (checked against capstone by the golden tests). A mutant
here is an arm64 codegen: the kill hunt judges each world's arm64 twin (World.for_arch).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from tcfuzz.jit_new.arm64 import PatchedArm64Codegen
from tcfuzz.jit_new.arm64.jit import PatchedArm64Jit
from tcfuzz.jit_new.arm64.tail_call import emit_bpf_tail_call
from tcfuzz.jit_new.imm import decode_tail_call_imm
from tcfuzz.jit_old.arm64 import LegacyArm64Codegen
from tcfuzz.jit_old.arm64.a64 import A64_NOP, COND_HI
from tcfuzz.model.interfaces import Instr

WordRewrite = Callable[[int], int]


def rewrite_word(ctx, first: int, asm: str, change: WordRewrite, nth: int = 0) -> bool:
    """Rewrite the nth word written since index `first` whose asm comment is `asm`."""
    if ctx.image is None or not ctx.write:
        return False
    seen = 0
    for k in range(first, ctx.idx):
        ins = ctx.instrs.get(k)
        if ins is not None and ins.asm == asm:
            if seen == nth:
                data = struct.pack("<I", change(struct.unpack("<I", ins.data)[0]))
                ctx.image[4 * k : 4 * k + 4] = data
                ctx.instrs[k] = Instr(ins.offset, data, ins.source)
                return True
            seen += 1
    return False


def rewriting_arm64_codegen(base, name: str, asm: str, change: WordRewrite, nth: int = 0):
    """A codegen like `base` whose every tail-call sequence has one A64 word rewritten."""

    class Jit(base.jit_class):
        def emit_tail_call(self, ctx, insn):
            first = ctx.idx
            super().emit_tail_call(ctx, insn)
            rewrite_word(ctx, first, asm, change, nth)

    return type(f"Mutant_{name}", (type(base),), {"name": name, "jit_class": Jit})()


def with_cond(cond: int) -> WordRewrite:
    return lambda word: (word & ~0xF) | cond


PATCH_ARM64 = PatchedArm64Codegen()
LEGACY_ARM64 = LegacyArm64Codegen()

ARM64_BOUND_CHECK_HI = rewriting_arm64_codegen(PATCH_ARM64, "arm64-bound-check-hi", "b.hs #<out>", with_cond(COND_HI))
ARM64_NO_ZERO_EXTENSION = rewriting_arm64_codegen(PATCH_ARM64, "arm64-no-zero-extension", "add w2, w2, #0", lambda _w: A64_NOP)
ARM64_LEGACY_WRONG_PROLOGUE_OFFSET = rewriting_arm64_codegen(
    LEGACY_ARM64, "arm64-legacy-wrong-prologue-offset", "add x10, x10, #<prologue_offset>", lambda w: w + (4 << 10)
)


class _CacheIndexWithoutMaxEntriesJit(PatchedArm64Jit):
    """The static path reads ptrs[index] (a struct bpf_prog *) instead of ptrs[max_entries + index]."""

    def emit_tail_call(self, ctx, insn):
        map_index, dynamic_array, _imm16 = decode_tail_call_imm(insn.imm)
        emit_bpf_tail_call(ctx, map_index, dynamic_array, target_offset=lambda ptrs_off, _max_entries: ptrs_off)


class CacheIndexWithoutMaxEntries(PatchedArm64Codegen):
    name = "arm64-cache-index-without-max-entries"
    jit_class = _CacheIndexWithoutMaxEntriesJit


ARM64_CACHE_INDEX_WITHOUT_MAX_ENTRIES = CacheIndexWithoutMaxEntries()

ARM64_CATALOGUE = {
    "arm64-bound-check-hi": (
        ARM64_BOUND_CHECK_HI,
        PATCH_ARM64,
        "b.cs -> b.hi in the arm64 bound check: index == max_entries passes",
    ),
    "arm64-cache-index-without-max-entries": (
        ARM64_CACHE_INDEX_WITHOUT_MAX_ENTRIES,
        PATCH_ARM64,
        "static path reads ptrs[index], a struct bpf_prog *, as the jump target",
    ),
    "arm64-no-zero-extension": (ARM64_NO_ZERO_EXTENSION, PATCH_ARM64, "`mov w3, w3` dropped: lsl uses the index's high 32 bits"),
    "arm64-legacy-wrong-prologue-offset": (
        ARM64_LEGACY_WRONG_PROLOGUE_OFFSET,
        LEGACY_ARM64,
        "PROLOGUE_OFFSET * 4 + 4 in the legacy arm64 jump",
    ),
}
