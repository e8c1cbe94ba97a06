"""Worked examples of the x86-64 tail-call sequences, byte for byte: sequences assembled by hand from
arch/x86/net/bpf_jit_comp.c and checked with objdump when they were written."""

from conftest import CODEGENS, jit_sample, site_bytes

from tcfuzz.model.bpf import R6, R7, R8, R9
from tcfuzz.model.profile import JumpVariant, preset

LEGACY = CODEGENS["legacy"]


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace("|", " "))


def test_indirect_example_no_ibt_rbx_only():
    # indirect: no IBT, sd=0, only rbx, plain jmp, max_entries@0x44, ptrs@0x160, bpf_func@0x48; 50 bytes
    expected = h(
        "89 d2 | 39 56 44 | 76 2b | 48 8b 85 f0 ff ff ff | 48 83 38 21 | 73 1e | 48 8b 8c d6 60 01 00 00 |"
        "48 85 c9 | 74 11 | 48 83 00 01 | 5b | 58 | 58 | 48 8b 49 48 | 48 83 c1 0c | ff e1"
    )
    assert site_bytes(jit_sample(LEGACY, sites=("static",), callee_regs=(R6,))) == expected


def test_indirect_example_ibt_sd20_all_regs_r12_int3():
    # indirect: IBT, sd=20 (R=24), all callee regs plus r12, SLS int3; length 66
    profile = preset("ibt").replace(jump=JumpVariant.PLAIN_INT3)
    code = site_bytes(
        jit_sample(LEGACY, profile, sites=("static",), stack_depth=20, exception_boundary=True, callee_regs=(R6, R7, R8, R9))
    )
    assert len(code) == 66
    assert code[:5] == h("89 d2 39 56 44")
    assert code[5:7] == h("76 3b")
    assert code[7:14] == h("48 8b 85 d8 ff ff ff")
    assert code[18:20] == h("73 2e")
    assert code[31:33] == h("74 21")
    assert code[37:] == h("41 5f 41 5e 41 5d 5b 41 5c 58 58 48 81 c4 18 00 00 00 48 8b 49 48 48 83 c1 10 ff e1 cc")


def test_direct_example_no_ibt_rbx_only():
    # direct: no IBT, sd=0, rbx only; L=30; bypass rel32 = L - 18
    expected = h("48 8b 85 f0 ff ff ff 48 83 38 21 73 11 e9 0c 00 00 00 48 83 00 01 5b 58 58 0f 1f 44 00 00")
    for codegen in CODEGENS.values():  # patch 2/4 leaves the direct path's bytes unchanged
        assert site_bytes(jit_sample(codegen, sites=("direct",), callee_regs=(R6,))) == expected


def test_main_prologue_no_ibt():
    # decode check of the no-IBT, sd=0 main prologue
    expected = h("0f1f440000 4831c0 55 4889e5 4883f821 7706 50 4889e0 eb01 50 50")
    assert jit_sample(LEGACY).code[: len(expected)] == expected


def test_main_prologue_ibt_matches_s10_dump():
    # S10's dump: endbr64 at 0 and at 0x10 (= X86_TAIL_CALL_OFFSET with IBT)
    image = jit_sample(LEGACY, preset("ibt"))
    expected = h("f30f1efa 0f1f440000 4831c0 55 4889e5 f30f1efa 4883f821 7706 50 4889e0 eb01 50 50")
    assert image.code[: len(expected)] == expected
    assert preset("ibt").tail_call_offset == 0x10 and image.code[0x10:0x14] == h("f30f1efa")


def test_subprog_prologue_keeps_layout_and_pushes_tcc_ptr_twice():
    expected = h("0f1f440000 0f1f00 55 4889e5 4881ec08000000 50 50")
    assert jit_sample(LEGACY, is_subprog=True, stack_depth=8).code[: len(expected)] == expected
