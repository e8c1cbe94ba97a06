"""Planted bugs: mutant codegens standing for realistic mistakes in a tail-call patch.

The catalogue is the oracle's self-test (`tcfuzz mutants`): each mutant is plugged in as the codegen
under test, and it is killed by a world on which it diverges while the codegen it was derived from
does not. A harness that cannot kill a planted bug cannot be trusted on a real one.

Most mutants emit their base's sequence and then rewrite one instruction of it, found by the
emitter's own asm comment (the same comments the golden tests check against capstone), keeping
its length so the pass loop still converges. Each is importable as `tcfuzz.selftest.mutants:NAME`.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable

from tcfuzz.jit_new import PatchedCodegen
from tcfuzz.jit_new.imm import decode_tail_call_imm
from tcfuzz.jit_new.jit import PatchedX86Jit
from tcfuzz.jit_new.tail_call import emit_bpf_tail_call_indirect
from tcfuzz.jit_old import LegacyCodegen
from tcfuzz.jit_old.jit import poke_entry
from tcfuzz.jit_old.tail_call import emit_bpf_tail_call_direct

Rewrite = Callable[[bytes], bytes]


def rewrite_instr(p, first: int, asm: str, change: Rewrite, nth: int = 0) -> bool:
    """Rewrite the nth instruction emitted since instrs[first] whose asm comment is `asm`."""
    seen = 0
    for k in range(first, len(p.instrs)):
        ins = p.instrs[k]
        if ins.asm == asm:
            if seen == nth:
                new = change(ins.data)
                assert len(new) == len(ins.data), "a mutant must keep instruction lengths"
                p.code[ins.offset : ins.offset + len(new)] = new
                p.instrs[k] = dataclasses.replace(ins, data=new)
                return True
            seen += 1
    return False


def swap_with_next(p, first: int, asm: str) -> bool:
    """Swap the first instruction since instrs[first] whose asm comment is `asm` with the one after it
    (both position-independent, so their bytes just trade places)."""
    for k in range(first, len(p.instrs) - 1):
        a, b = p.instrs[k], p.instrs[k + 1]
        if a.asm == asm:
            p.code[a.offset : b.offset + len(b.data)] = b.data + a.data
            p.instrs[k] = dataclasses.replace(b, offset=a.offset)
            p.instrs[k + 1] = dataclasses.replace(a, offset=a.offset + len(b.data))
            return True
    return False


def move_before(p, first: int, asm: str, before: str) -> bool:
    """Move the instruction whose asm comment is `asm` to just before the one whose comment is `before`
    (earlier in the sequence), fixing the rel8 of every jcc that moves past it so its target stays."""
    idx = {ins.asm: k for k, ins in reversed(list(enumerate(p.instrs[first:], first)))}
    if asm not in idx or before not in idx or idx[before] > idx[asm]:
        return False
    lo, hi = idx[before], idx[asm]
    moved = p.instrs[hi]
    size = len(moved.data)
    shifted = []
    for ins in p.instrs[lo:hi]:
        data = ins.data
        if len(data) == 2 and 0x70 <= data[0] <= 0x7F:  # jcc rel8: the target is fixed, the jcc moves
            data = bytes([data[0], (data[1] - size) & 0xFF])
        shifted.append(dataclasses.replace(ins, offset=ins.offset + size, data=data))
    start = p.instrs[lo].offset
    p.instrs[lo : hi + 1] = [dataclasses.replace(moved, offset=start), *shifted]
    p.code[start : start + sum(len(i.data) for i in p.instrs[lo : hi + 1])] = b"".join(i.data for i in p.instrs[lo : hi + 1])
    return True


def set_byte(index: int, value: int) -> Rewrite:
    return lambda data: data[:index] + bytes([value]) + data[index + 1 :]


def add_disp32(delta: int) -> Rewrite:
    """Adjust the trailing disp32 of an instruction."""
    return lambda data: data[:-4] + struct.pack("<i", struct.unpack("<i", data[-4:])[0] + delta)


def rewriting_codegen(base, name: str, asm: str, change: Rewrite, nth: int = 0, indirect_only: bool = True):
    """A codegen like `base` whose every (indirect) tail-call sequence has one instruction rewritten."""

    class Jit(base.jit_class):
        def emit_tail_call(self, p, prog, insn, ip, callee_regs_used, stack_depth, ctx):
            first = len(p.instrs)
            super().emit_tail_call(p, prog, insn, ip, callee_regs_used, stack_depth, ctx)
            direct = (decode_tail_call_imm(insn.imm)[2] if isinstance(base, PatchedCodegen) else insn.imm) != 0
            if not (indirect_only and direct):
                rewrite_instr(p, first, asm, change, nth)

    codegen_cls = type(f"Mutant_{name}", (type(base),), {"name": name, "jit_class": Jit})
    return codegen_cls()


# --- mutants of the patch (jit_new) ------------------------------------------------------------------
PATCH = PatchedCodegen()
LEGACY = LegacyCodegen()

BOUND_CHECK_JA = rewriting_codegen(PATCH, "bound-check-ja", "jae <out>", set_byte(0, 0x77))
NULL_CHECK_JNE = rewriting_codegen(PATCH, "null-check-jne", "je <out>", set_byte(0, 0x75))
SWAPPED_CMP_OPERANDS = rewriting_codegen(
    PATCH, "swapped-cmp-operands", "cmp edx, dword ptr [rsi + <max_entries_off>]", set_byte(0, 0x39)
)
COUNTER_LIMIT_34 = rewriting_codegen(
    PATCH, "counter-limit-34", "cmp qword ptr [rax], <MAX_TAIL_CALL_CNT>", set_byte(3, 34), indirect_only=False
)
NO_ZERO_EXTENSION = rewriting_codegen(PATCH, "no-zero-extension", "mov edx, edx", lambda d: b"\x66\x90")
WRONG_DISPLACEMENT = rewriting_codegen(PATCH, "wrong-displacement", "mov rcx, qword ptr [rsi + rdx*8 + <offset>]", add_disp32(-8))
COUNTER_SLOT_OFFSET = rewriting_codegen(
    PATCH, "counter-slot-offset", "mov rax, qword ptr [rbp + <tcc_ptr_off>]", add_disp32(+8), indirect_only=False
)


class _IgnoredDynamicFlagJit(PatchedX86Jit):
    def emit_tail_call(self, p, prog, insn, ip, callee_regs_used, stack_depth, ctx):
        map_index, _dynamic, imm16 = decode_tail_call_imm(insn.imm)
        if imm16:
            return super().emit_tail_call(p, prog, insn, ip, callee_regs_used, stack_depth, ctx)
        emit_bpf_tail_call_indirect(p, self.profile, prog, map_index, False, callee_regs_used, stack_depth, ip, ctx)


def decode_codegen(name: str, decode: Callable[[int], tuple[int, bool, int]]) -> PatchedCodegen:
    """The patched codegen with its own decode of the packed imm: imm -> (map index, dynamic, imm16)."""

    class Jit(PatchedX86Jit):
        def emit_tail_call(self, p, prog, insn, ip, callee_regs_used, stack_depth, ctx):
            map_index, dynamic, imm16 = decode(insn.imm)
            if imm16:
                return emit_bpf_tail_call_direct(
                    p, self.profile, prog, poke_entry(prog, imm16 - 1), ip, callee_regs_used, stack_depth, ctx
                )
            emit_bpf_tail_call_indirect(p, self.profile, prog, map_index, dynamic, callee_regs_used, stack_depth, ip, ctx)

    return type(f"Mutant_{name}", (PatchedCodegen,), {"name": name, "jit_class": Jit})()


def _swapped_fields(imm32: int) -> tuple[int, bool, int]:
    """The map index read from bits 8-15 and the dynamic flag from bits 0-7."""
    map_index, dynamic, imm16 = decode_tail_call_imm(imm32)
    return int(dynamic), bool(map_index), imm16


class IgnoredDynamicFlag(PatchedCodegen):
    name = "ignored-dynamic-flag"
    jit_class = _IgnoredDynamicFlagJit


class StaleCacheOnDelete(PatchedCodegen):
    """Patch 1/4 forgetting the delete: the cached target keeps pointing at the removed program."""

    name = "stale-cache-on-delete"

    def cached_target(self, bpf_func, old, profile):
        return old if bpf_func is None else bpf_func + profile.tail_call_offset


class _SequenceEditJit(PatchedX86Jit):
    """The patched JIT with one edit `edit(p, first, stack_depth)` applied to every tail-call sequence."""

    edit: Callable = staticmethod(lambda p, first, stack_depth: None)

    def emit_tail_call(self, p, prog, insn, ip, callee_regs_used, stack_depth, ctx):
        first = len(p.instrs)
        super().emit_tail_call(p, prog, insn, ip, callee_regs_used, stack_depth, ctx)
        self.edit(p, first, stack_depth)


def editing_codegen(name: str, edit: Callable) -> PatchedCodegen:
    jit = type(f"Jit_{name}", (_SequenceEditJit,), {"edit": staticmethod(edit)})
    return type(f"Mutant_{name}", (PatchedCodegen,), {"name": name, "jit_class": jit})()


# The count before the NULL check (the order before v6.10): an empty slot costs budget.
INCREMENT_BEFORE_NULL_CHECK = editing_codegen(
    "increment-before-null-check",
    lambda p, first, sd: move_before(p, first, "add qword ptr [rax], 1", "mov rcx, qword ptr [rsi + rdx*8 + <offset>]"),
)
# One `pop rax` of the two: the tail_call_cnt_ptr slot is not released, the callee's frame sits 8 low.
STACK_RELEASE_ONE_POP = rewriting_codegen(
    PATCH, "stack-release-one-pop", "pop rax", lambda d: b"\x90", nth=1, indirect_only=False
)
# The frame released unrounded: `add rsp, stack_depth` instead of round_up(stack_depth, 8).
STACK_DEPTH_UNROUNDED = editing_codegen(
    "stack-depth-unrounded",
    lambda p, first, sd: rewrite_instr(p, first, "add rsp, <R>", lambda d: d[:3] + struct.pack("<i", sd)),
)
# Callee-saved registers restored in the wrong order before the jump: the last two pops trade places.
POP_ORDER_SWAPPED = editing_codegen("pop-order-swapped", lambda p, first, sd: swap_with_next(p, first, "pop r13"))


class CacheOffsetWithoutEndbr(PatchedCodegen):
    """Patch 1/4 caching bpf_func + 12, forgetting ENDBR_INSN_SIZE: wrong only under IBT."""

    name = "cache-offset-without-endbr"

    def cached_target(self, bpf_func, old, profile):
        return bpf_func + 12 if bpf_func is not None else 0


class CacheSlotRounded(PatchedCodegen):
    """Patch 1/4 indexing the cache by the allocated (rounded) count: wrong only for an unpriv map whose
    max_entries is not a power of two."""

    name = "cache-slot-rounded"

    def cache_slot(self, max_entries, alloc_entries, key):
        return alloc_entries + key


class DeleteKeepsBypassNop(PatchedCodegen):
    """bpf_arch_poke_desc_update() on delete un-patches the target but leaves the bypass a nop5: the
    next run of the site falls through the unwind block into the program's own code."""

    name = "delete-keeps-bypass-nop"

    def poke_desc_update(self, poke, new_func, old_func, text_poke):
        if new_func is None:
            text_poke(poke.tailcall_target, old_func + poke.adj_off if old_func is not None else None, None)
            return
        super().poke_desc_update(poke, new_func, old_func, text_poke)


CACHE_OFFSET_WITHOUT_ENDBR = CacheOffsetWithoutEndbr()
CACHE_SLOT_ROUNDED = CacheSlotRounded()
DELETE_KEEPS_BYPASS_NOP = DeleteKeepsBypassNop()
IGNORED_DYNAMIC_FLAG = IgnoredDynamicFlag()
SWAPPED_IMM_FIELDS = decode_codegen("swapped-imm-fields", _swapped_fields)
STALE_CACHE_ON_DELETE = StaleCacheOnDelete()

# --- mutants of the legacy JIT (jit_old) -------------------------------------------------------------
LEGACY_WRONG_PROLOGUE_OFFSET = rewriting_codegen(
    LEGACY, "legacy-wrong-prologue-offset", "add rcx, <X86_TAIL_CALL_OFFSET>", lambda d: d[:3] + bytes([d[3] + 1])
)
LEGACY_BOUND_CHECK_JB = rewriting_codegen(LEGACY, "legacy-bound-check-jb", "jbe <out>", set_byte(0, 0x72))

CATALOGUE = {
    "bound-check-ja": (BOUND_CHECK_JA, PATCH, "jae -> ja in the bound check: index == max_entries passes"),
    "null-check-jne": (NULL_CHECK_JNE, PATCH, "je -> jne in the NULL check: condition flipped"),
    "swapped-cmp-operands": (SWAPPED_CMP_OPERANDS, PATCH, "dynamic bound check compares max_entries with the index"),
    "counter-limit-34": (COUNTER_LIMIT_34, PATCH, "off by one in MAX_TAIL_CALL_CNT"),
    "no-zero-extension": (NO_ZERO_EXTENSION, PATCH, "`mov edx, edx` dropped: the index keeps its high 32 bits"),
    "wrong-displacement": (WRONG_DISPLACEMENT, PATCH, "static disp32 8 bytes short: the neighbouring cached target"),
    "counter-slot-offset": (COUNTER_SLOT_OFFSET, PATCH, "tcc_ptr read 8 bytes off: the count used as a pointer"),
    "ignored-dynamic-flag": (IGNORED_DYNAMIC_FLAG, PATCH, "the JIT ignores the dynamic flag: poisoned sites go static"),
    "swapped-imm-fields": (SWAPPED_IMM_FIELDS, PATCH, "map index and dynamic flag decoded from each other's byte"),
    "stale-cache-on-delete": (STALE_CACHE_ON_DELETE, PATCH, "patch 1/4 leaves the cached target after a delete"),
    "increment-before-null-check": (INCREMENT_BEFORE_NULL_CHECK, PATCH, "the count taken before the NULL check"),
    "stack-release-one-pop": (STACK_RELEASE_ONE_POP, PATCH, "one `pop rax` of two: the tcc_ptr slot stays on the stack"),
    "stack-depth-unrounded": (STACK_DEPTH_UNROUNDED, PATCH, "`add rsp, stack_depth` without round_up(.., 8)"),
    "pop-order-swapped": (POP_ORDER_SWAPPED, PATCH, "pop r13 / pop rbx in the wrong order before the jump"),
    "cache-offset-without-endbr": (CACHE_OFFSET_WITHOUT_ENDBR, PATCH, "cached bpf_func + 12: ENDBR forgotten under IBT"),
    "cache-slot-rounded": (CACHE_SLOT_ROUNDED, PATCH, "the cache indexed by the rounded (unpriv) allocation count"),
    "delete-keeps-bypass-nop": (DELETE_KEEPS_BYPASS_NOP, PATCH, "a delete un-pokes the target but not the bypass"),
    "legacy-wrong-prologue-offset": (LEGACY_WRONG_PROLOGUE_OFFSET, LEGACY, "X86_TAIL_CALL_OFFSET + 1 in the legacy jump"),
    "legacy-bound-check-jb": (LEGACY_BOUND_CHECK_JB, LEGACY, "jbe -> jb in the legacy bound check"),
}

# --- mutants of the arm64 back end (fuzz/selftest/mutants_arm64.py) ----------------------------------
from tcfuzz.selftest.mutants_arm64 import ARM64_CATALOGUE  # noqa: E402

CATALOGUE.update(ARM64_CATALOGUE)
