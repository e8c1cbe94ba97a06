"""Golden bytes over the configuration grid, from an independent spec of the sequences' byte tables
(the legacy indirect and direct sequences of arch/x86/net/bpf_jit_comp.c, and patch 2/4's static and
dynamic ones), and capstone agreement with every emitter comment."""

import itertools

import pytest
from conftest import CODEGENS, jit_sample

from tcfuzz.model.bpf import R6, R7, R8, R9
from tcfuzz.model.interfaces import asm_matches
from tcfuzz.model.layout import RCX, indirect_thunk
from tcfuzz.model.profile import JumpVariant, preset
from tcfuzz.model.sample import tail_call_sites

IBT = (False, True)
STACK_DEPTHS = (0, 1, 8, 20, 512)
CALLEE_SETS = {"none": (), "some": (R6, R8), "all": (R6, R7, R8, R9)}
JUMPS = tuple(JumpVariant)
KINDS = ("static", "dynamic", "direct")
MAX_ENTRIES = (1, 2**31 - 1, 2**31, 2**32 - 1)

# Hand-derived from the C arithmetic `(int)(0x160 + (u64)max_entries * 8)`, not from the emitter:
#   1 -> 0x168; 2^31-1 -> 2^34-8 = 0xfffffff8 (mod 2^32) + 0x160 wraps to 0x158;
#   2^31 -> 2^34 = 0 (mod 2^32) -> 0x160; 2^32-1 -> 2^35-8 = 0xfffffff8 (mod 2^32) -> 0x158.
STATIC_DISP = {1: 0x168, 2**31 - 1: 0x158, 2**31: 0x160, 2**32 - 1: 0x158}


def le32(value: int) -> bytes:
    return (value & 0xFFFFFFFF).to_bytes(4, "little")


def pops(callee) -> bytes:
    order = [(R9, "415f"), (R8, "415e"), (R7, "415d"), (R6, "5b")]
    return bytes.fromhex("".join(code for reg, code in order if reg in callee))


def indirect_jump(profile, ip: int) -> bytes:
    if profile.jump is JumpVariant.PLAIN:
        return bytes.fromhex("ffe1")
    if profile.jump is JumpVariant.PLAIN_INT3:
        return bytes.fromhex("ffe1cc")
    if profile.jump is JumpVariant.LFENCE:
        return bytes.fromhex("0faee8ffe1")
    return b"\xe9" + le32(indirect_thunk(RCX) - (ip + 5))


def expected_site(codegen: str, kind: str, profile, sd: int, callee, max_entries: int, site_ip: int) -> bytes:
    R = (sd + 7) // 8 * 8
    tcc = le32(-16 - R)
    add_rsp = bytes.fromhex("4881c4") + le32(R) if sd else b""
    tail = bytes.fromhex("48830001") + pops(callee) + bytes.fromhex("5858") + add_rsp
    if kind == "direct":
        body_len = 7 + 4 + 2 + 5 + len(tail) + 5
        return (
            bytes.fromhex("488b85")
            + tcc
            + bytes.fromhex("48833821")
            + bytes([0x73, body_len - 13])
            + b"\xe9"
            + le32(body_len - 18)
            + tail
            + bytes.fromhex("0f1f440000")
        )
    static_new = codegen == "patched" and kind == "static"
    if codegen == "legacy":
        bound = bytes.fromhex("395644"), 0x76
    elif kind == "dynamic":
        bound = bytes.fromhex("3b5644"), 0x73
    else:
        bound = bytes.fromhex("81fa") + le32(max_entries), 0x73
    ptrs = STATIC_DISP[max_entries] if static_new else 0x160
    target = b"" if static_new else bytes.fromhex("488b4948") + bytes([0x48, 0x83, 0xC1, profile.tail_call_offset])
    head = bytes.fromhex("89d2") + bound[0]
    mid = bytes.fromhex("488b85") + tcc + bytes.fromhex("48833821")
    load = bytes.fromhex("488b8cd6") + le32(ptrs) + bytes.fromhex("4885c9")
    prefix_len = len(head) + 2 + len(mid) + 2 + len(load) + 2 + len(tail) + len(target)
    jump = indirect_jump(profile, site_ip + prefix_len)
    L = prefix_len + len(jump)
    j1 = L - (len(head) + 2)
    j2 = j1 - len(mid) - 2
    j3 = j2 - len(load) - 2
    return head + bytes([bound[1], j1]) + mid + bytes([0x73, j2]) + load + bytes([0x74, j3]) + tail + target + jump


GRID = list(itertools.product(IBT, STACK_DEPTHS, CALLEE_SETS, JUMPS, KINDS))


@pytest.mark.parametrize("codegen", CODEGENS)
@pytest.mark.parametrize("ibt,sd,callee,jump,kind", GRID)
def test_golden_site_bytes(codegen, ibt, sd, callee, jump, kind, cs):
    profile = preset("default").replace(ibt=ibt, jump=jump)
    for max_entries in MAX_ENTRIES:
        image = jit_sample(
            CODEGENS[codegen], profile, sites=(kind,), stack_depth=sd, callee_regs=CALLEE_SETS[callee], max_entries=max_entries
        )
        [(start, end)] = tail_call_sites(image)
        expected = expected_site(codegen, kind, profile, sd, CALLEE_SETS[callee], max_entries, image.base + start)
        assert image.code[start:end] == expected, f"max_entries={max_entries:#x}"
    assert_comments_match_capstone(image, cs)


def assert_comments_match_capstone(image, cs):
    """Every emitted instruction decodes to exactly one instruction that its asm comment describes."""
    assert b"".join(ins.data for ins in image.instrs) == image.code
    for ins in image.instrs:
        decoded = list(cs.disasm(ins.data, image.base + ins.offset))
        assert len(decoded) == 1 and decoded[0].size == len(ins.data), f"{ins.data.hex()} is not one instruction"
        text = f"{decoded[0].mnemonic} {decoded[0].op_str}".strip()
        assert ins.asm, f"no asm comment at {ins.source}"
        assert asm_matches(ins.asm, text), f"{ins.source}: comment {ins.asm!r} vs capstone {text!r}"


@pytest.mark.parametrize("codegen", CODEGENS)
@pytest.mark.parametrize("profile_name", ["default", "no-security", "ibt", "retpoline", "lfence", "sls"])
def test_whole_images_match_comments(codegen, profile_name, cs):
    """Prologue, glue, unpriv bound check, every site kind, exit: all comments agree with capstone."""
    profile = preset(profile_name)
    for cfg in (
        dict(sites=("static", "dynamic", "direct"), callee_regs=(R6, R9), stack_depth=300),
        dict(sites=("static",), unpriv=True, max_entries=1000, exception_boundary=True),
        dict(sites=("dynamic",), is_subprog=True, max_entries=2**32 - 1),
    ):
        assert_comments_match_capstone(jit_sample(CODEGENS[codegen], profile, **cfg), cs)


def test_comment_matcher_rejects_wrong_mnemonic_and_operands():
    assert asm_matches("jbe <out>", "jbe 0x2d")
    assert not asm_matches("jbe <out>", "jae 0x2d")
    assert asm_matches("mov rax, qword ptr [rbp + <off>]", "mov rax, qword ptr [rbp - 0x10]")
    assert not asm_matches("cmp dword ptr [rsi + <off>], edx", "cmp edx, dword ptr [rsi + 0x44]")
    assert asm_matches("nop <*>", "nop dword ptr [rax + rax]")
