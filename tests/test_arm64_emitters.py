"""arm64 (patch 3/4): golden words traced to arch/arm64/net/bpf_jit_comp.c, capstone agreement with
every emitter comment over the configuration grid, the prologue's tail-call entry, and the imm
decode (bits 16-31 ignored)."""

import itertools
import struct

import capstone
import pytest
from conftest import jit_sample, site_bytes

from tcfuzz.jit_new import arm64 as new_arm64
from tcfuzz.jit_new.arm64.jit import bpf_arch_tail_call_prologue_offset
from tcfuzz.jit_old import arm64 as old_arm64
from tcfuzz.jit_old.arm64.a64 import A64_AND_I
from tcfuzz.jit_old.arm64.emit import asm_matches_a64
from tcfuzz.model.bpf import BPF_JMP, BPF_TAIL_CALL, R6, R7, R8, R9
from tcfuzz.model.profile import preset
from tcfuzz.model.sample import SampleConfig, tail_call_sites, verified_sample

ARM64 = {"legacy": old_arm64.CODEGEN, "patched": new_arm64.CODEGEN}
PROFILES = ("arm64", "arm64-bti", "arm64-pac", "arm64-bti-pac")
CS = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)


def words(code: bytes) -> list[int]:
    return [w for (w,) in struct.iter_unpack("<I", code)]


def w(hexword: str) -> int:
    return int(hexword, 16)


def test_every_comment_agrees_with_capstone_over_the_grid():
    checked = 0
    grid = itertools.product(
        ARM64.values(),
        PROFILES,
        (("static",), ("dynamic",), ("direct",), ("static", "dynamic", "direct")),
        (0, 20, 512),
        ((), (R6,), (R6, R7, R8, R9)),
        (False, True),  # unpriv map (the verifier's bound check + w3 &= index_mask)
        (1, 8, 2**31, 2**32 - 1),
    )
    for codegen, prof, sites, sd, callee, unpriv, me in grid:
        if unpriv and ("dynamic" in sites or me > 2**31):
            continue  # rejected: a poisoned unpriv map pointer; an unpriv size rounding past u32
        image = jit_sample(codegen, preset(prof), sites=sites, stack_depth=sd, callee_regs=callee, unpriv=unpriv, max_entries=me)
        for ins in image.instrs:
            (d,) = CS.disasm(ins.data, image.base + ins.offset)
            assert asm_matches_a64(ins.asm, f"{d.mnemonic} {d.op_str}"), (prof, sites, ins.asm, d.op_str)
            checked += 1
    for codegen, eb, sub in itertools.product(ARM64.values(), (False, True), (False, True)):
        image = jit_sample(codegen, preset("arm64"), exception_boundary=eb, is_subprog=sub)
        for ins in image.instrs:
            (d,) = CS.disasm(ins.data, image.base + ins.offset)
            assert asm_matches_a64(ins.asm, f"{d.mnemonic} {d.op_str}"), (ins.asm, d.mnemonic, d.op_str)
    assert checked > 50_000


# The legacy static sequence, word by word, as emit_bpf_tail_call() emits it with
# offsetof(max_entries) = 0x44, offsetof(ptrs) = 0x160, offsetof(bpf_func) = 0x48, no stack, no
# callee-saved registers, PROLOGUE_OFFSET 6 (no BTI, no PAC).
LEGACY_STATIC = [
    ("mov w10, #0x44", "5280088a"),  # emit_a64_mov_i64(tmp, offsetof(struct bpf_array, map.max_entries))
    ("ldr w10, [x1, x10]", "b86a682a"),  # A64_LDR32(tmp, r2, tmp)
    ("add w2, w2, #0", "11000042"),  # A64_MOV(0, r3, r3): an add #0, zero-extends the index
    ("cmp w2, w10", "6b0a005f"),  # A64_CMP(0, r3, tmp)
    ("b.hs out", "54000202"),  # branch1: A64_B_(A64_COND_CS, off), off = 20 - 4 = +16 insns
    ("mov w10, #0x21", "5280042a"),  # emit_a64_mov_i64(tmp, MAX_TAIL_CALL_CNT)
    ("ldr x12, [x26]", "f940034c"),  # A64_LDR64I(tcc, ptr, 0)
    ("cmp x12, x10", "eb0a019f"),  # A64_CMP(1, tcc, tmp)
    ("b.hs out", "54000182"),  # branch2, 20 - 8 = +12
    ("add x12, x12, #1", "9100058c"),  # A64_ADD_I(1, tcc, tcc, 1)
    ("mov w10, #0x160", "52802c0a"),  # emit_a64_mov_i64(tmp, offsetof(struct bpf_array, ptrs))
    ("add x10, x1, x10", "8b0a002a"),  # A64_ADD(1, tmp, r2, tmp)
    ("lsl x11, x2, #3", "d37df04b"),  # A64_LSL(1, prg, r3, 3)
    ("ldr x11, [x10, x11]", "f86b694b"),  # A64_LDR64(prg, tmp, prg)
    ("cbz x11, out", "b40000cb"),  # branch3: A64_CBZ(1, prg, off), 20 - 14 = +6
    ("str x12, [x26]", "f900034c"),  # A64_STR64I(tcc, ptr, 0)
    ("mov w10, #0x48", "5280090a"),  # emit_a64_mov_i64(tmp, offsetof(struct bpf_prog, bpf_func))
    ("ldr x10, [x11, x10]", "f86a696a"),  # A64_LDR64(tmp, prg, tmp)
    ("add x10, x10, #0x18", "9100614a"),  # A64_ADD_I(1, tmp, tmp, sizeof(u32) * PROLOGUE_OFFSET)
    ("br x10", "d61f0140"),  # A64_BR(tmp)
]

# Patch 3/4, static map with max_entries 8: the immediate, the cached target at
# ptrs + 8 * 8 = 0x1a0 (one add #imm12), and `br prg`.
PATCHED_STATIC_8 = [
    ("mov w10, #8", "5280010a"),  # emit_a64_mov_i64(tmp, map->max_entries)
    ("add w2, w2, #0", "11000042"),
    ("cmp w2, w10", "6b0a005f"),
    ("b.hs out", "54000182"),  # 15 - 3 = +12
    ("mov w10, #0x21", "5280042a"),
    ("ldr x12, [x26]", "f940034c"),
    ("cmp x12, x10", "eb0a019f"),
    ("b.hs out", "54000102"),  # 15 - 7 = +8
    ("add x12, x12, #1", "9100058c"),
    ("lsl x11, x2, #3", "d37df04b"),  # A64_LSL(1, prg, r3, 3)
    ("add x11, x11, #0x1a0", "9106816b"),  # emit_a64_add_i(1, prg, prg, tmp, off): is_addsub_imm
    ("ldr x11, [x1, x11]", "f86b682b"),  # A64_LDR64(prg, r2, prg)
    ("cbz x11, out", "b400006b"),  # 15 - 12 = +3
    ("str x12, [x26]", "f900034c"),
    ("br x11", "d61f0160"),  # A64_BR(prg)
]


@pytest.mark.parametrize("name, expected, kind", [("legacy", LEGACY_STATIC, "static"), ("patched", PATCHED_STATIC_8, "static")])
def test_golden_static_sequences(name, expected, kind):
    image = jit_sample(ARM64[name], preset("arm64"), sites=(kind,), max_entries=8)
    seq = words(site_bytes(image))
    assert seq == [w(h) for _, h in expected]
    texts = [f"{d.mnemonic} {d.op_str}" for d in CS.disasm(site_bytes(image), 0)]
    for text, (asm, _) in zip(texts, expected, strict=True):
        assert text.startswith(asm.replace("out", "#")) if asm.endswith("out") else text == asm


def test_patched_dynamic_path_is_the_legacy_code():
    for prof, sd, callee in itertools.product(PROFILES, (0, 20), ((), (R6, R7, R8))):
        old = jit_sample(ARM64["legacy"], preset(prof), sites=("dynamic",), stack_depth=sd, callee_regs=callee)
        new = jit_sample(ARM64["patched"], preset(prof), sites=("dynamic",), stack_depth=sd, callee_regs=callee)
        assert site_bytes(old) == site_bytes(new)


def test_stack_and_callee_saved_unwind_before_the_jump():
    image = jit_sample(ARM64["legacy"], preset("arm64"), sites=("static",), stack_depth=20, callee_regs=(R6, R8, R9))
    text = [f"{d.mnemonic} {d.op_str}" for d in CS.disasm(site_bytes(image), 0)]
    at = text.index("str x12, [x26]")
    # restore SP (round_up(20, 16) = 32), then pop_callee_regs(): odd count pops (x22, xzr) first
    assert text[at + 1 : at + 4] == ["add sp, sp, #0x20", "ldp x22, xzr, [sp], #0x10", "ldp x19, x21, [sp], #0x10"]


@pytest.mark.parametrize("prof, insns", [("arm64", 6), ("arm64-bti", 7), ("arm64-pac", 7), ("arm64-bti-pac", 8)])
def test_prologue_offset_and_tail_call_entry(prof, insns):
    profile = preset(prof)
    assert profile.prologue_offset == insns  # BTI_INSNS + 2 + PAC_INSNS + 4
    assert bpf_arch_tail_call_prologue_offset(profile) == profile.tail_call_offset == 4 * insns
    image = jit_sample(ARM64["legacy"], profile, sites=("static",), callee_regs=(R6,))
    text = [f"{d.mnemonic} {d.op_str}".strip() for d in CS.disasm(image.code[:64], 0)]
    # the instruction before the entry initialises the counter pointer; a tail call lands after it
    assert text[insns - 1] == "mov x26, sp"
    assert text[insns] == ("bti j" if profile.bti else "stp x19, xzr, [sp, #-0x10]!")
    assert text[0] == ("bti jc" if profile.bti else "add x9, x30, #0")
    assert ("paciasp" in text) == profile.pac


def test_subprogram_keeps_the_counter_pointer():
    image = jit_sample(ARM64["legacy"], preset("arm64"), sites=("static",), is_subprog=True)
    text = [f"{d.mnemonic} {d.op_str}" for d in CS.disasm(image.code[:24], 0)]
    assert text[4] == "stp x26, x26, [sp, #-0x10]!"
    assert "mov x26, sp" not in text


def test_imm_bits_16_to_31_are_not_read():
    """A direct site (imm = poke index + 1 in bits 16-31) is emitted like a static indirect one."""
    profile = preset("arm64")
    for name, codegen in ARM64.items():
        prog = verified_sample(SampleConfig(sites=("direct",), key=1, max_entries=8), codegen, profile)
        (tc,) = [i for i in prog.insns if i.code == BPF_JMP | BPF_TAIL_CALL]
        assert tc.imm != 0  # the verifier did make it direct
        plain = [i.with_imm(tc.imm & 0xFFFF) if i is tc else i for i in prog.insns]
        again = type(prog)(**{**prog.__dict__, "insns": plain})
        assert codegen.jit(prog, profile, 0x100_0000).code == codegen.jit(again, profile, 0x100_0000).code, name
        assert codegen.jit(prog, profile, 0x100_0000).pokes == []


def test_branches_are_patched_to_their_own_sequence_end():
    """Each sequence patches its NOPs from its own length: no shared label, whatever the mix."""
    for name in ARM64:
        image = jit_sample(ARM64[name], preset("arm64"), sites=("static", "dynamic", "static"), max_entries=8)
        for start, end in tail_call_sites(image):
            for d in CS.disasm(image.code[start:end], image.base + start):
                if d.mnemonic in ("b.hs", "cbz"):
                    assert int(d.op_str.split("#")[-1], 16) == image.base + end, (name, d.op_str)


@pytest.mark.parametrize("k", range(1, 32))
def test_index_mask_is_a_logical_immediate(k):
    word = A64_AND_I(False, 2, 2, (1 << k) - 1)
    (d,) = CS.disasm(struct.pack("<I", word), 0)
    assert d.mnemonic == "and" and d.op_str.startswith("w2, w2, #")
    assert int(d.op_str.split("#")[1], 0) == (1 << k) - 1


def test_all_ones_and_zero_masks_take_the_register_form():
    assert A64_AND_I(False, 2, 2, 0xFFFFFFFF) is None
    assert A64_AND_I(False, 2, 2, 0) is None
    image = jit_sample(ARM64["legacy"], preset("arm64"), sites=("static",), unpriv=True, max_entries=1)
    text = [f"{d.mnemonic} {d.op_str}" for d in CS.disasm(image.code, 0)]
    at = text.index("and w2, w2, w10")  # index_mask 0 (max_entries 1): mov w10, #0; and w2, w2, w10
    assert text[at - 1] == "mov w10, #0"
