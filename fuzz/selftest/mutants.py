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


class _SwappedImmFieldsJit(PatchedX86Jit):
    """Reads the map index from bits 8-15 and the dynamic flag from bits 0-7."""

    def emit_tail_call(self, p, prog, insn, ip, callee_regs_used, stack_depth, ctx):
        flag_byte, map_byte, imm16 = decode_tail_call_imm(insn.imm)
        if imm16:
            return emit_bpf_tail_call_direct(
                p, self.profile, prog, poke_entry(prog, imm16 - 1), ip, callee_regs_used, stack_depth, ctx
            )
        emit_bpf_tail_call_indirect(p, self.profile, prog, int(map_byte), bool(flag_byte), callee_regs_used, stack_depth, ip, ctx)


class IgnoredDynamicFlag(PatchedCodegen):
    name = "ignored-dynamic-flag"
    jit_class = _IgnoredDynamicFlagJit


class SwappedImmFields(PatchedCodegen):
    name = "swapped-imm-fields"
    jit_class = _SwappedImmFieldsJit


class StaleCacheOnDelete(PatchedCodegen):
    """Patch 1/4 forgetting the delete: the cached target keeps pointing at the removed program."""

    name = "stale-cache-on-delete"

    def cached_target(self, bpf_func, old, profile):
        return old if bpf_func is None else bpf_func + profile.tail_call_offset


IGNORED_DYNAMIC_FLAG = IgnoredDynamicFlag()
SWAPPED_IMM_FIELDS = SwappedImmFields()
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
    "legacy-wrong-prologue-offset": (LEGACY_WRONG_PROLOGUE_OFFSET, LEGACY, "X86_TAIL_CALL_OFFSET + 1 in the legacy jump"),
    "legacy-bound-check-jb": (LEGACY_BOUND_CHECK_JB, LEGACY, "jbe -> jb in the legacy bound check"),
}

# --- mutants of the arm64 back end (fuzz/selftest/mutants_arm64.py) ----------------------------------
from tcfuzz.selftest.mutants_arm64 import ARM64_CATALOGUE  # noqa: E402

CATALOGUE.update(ARM64_CATALOGUE)
