"""The pass loop and jit_context labels, poke descriptor addresses, and loud JIT failures."""

import pytest
from conftest import CODEGENS, jit_sample

from tcfuzz.jit_old.emit import rel8
from tcfuzz.jit_old.jit import poke_entry
from tcfuzz.model.bpf import BPF_JMP, BPF_TAIL_CALL, Insn
from tcfuzz.model.interfaces import JitError, JitFault, VerifiedProgram
from tcfuzz.model.sample import tail_call_sites


def jcc_targets(image, cs, start, end):
    """Image offsets that the site's conditional jumps go to."""
    return {
        int(insn.op_str, 16) - image.base
        for insn in cs.disasm(image.code[start:end], image.base + start)
        if insn.mnemonic.startswith("j") and insn.mnemonic != "jmp"
    }


@pytest.mark.parametrize("codegen", CODEGENS)
@pytest.mark.parametrize("sites", [("static", "static"), ("dynamic", "dynamic"), ("direct", "direct", "direct")])
def test_sites_of_one_length_jump_to_their_own_end(codegen, sites, cs):
    image = jit_sample(CODEGENS[codegen], sites=sites)
    assert image.passes == 3  # the kernel's pass loop converges after the third pass for these programs
    for start, end in tail_call_sites(image):
        assert jcc_targets(image, cs, start, end) == {end}


def test_legacy_mixed_static_and_dynamic_sites_are_fine(cs):
    image = jit_sample(CODEGENS["legacy"], sites=("static", "dynamic"))
    for start, end in tail_call_sites(image):
        assert jcc_targets(image, cs, start, end) == {end}


@pytest.mark.parametrize("order", [("static", "dynamic"), ("dynamic", "static")])
def test_patched_mixed_sites_share_one_label_of_the_wrong_length(order, cs):
    """Patch 2/4 makes static sequences 5 bytes shorter than dynamic ones but keeps the single
    ctx->tail_call_indirect_label: after convergence each site jumps to start + the other's length."""
    image = jit_sample(CODEGENS["patched"], sites=order)
    (s1, e1), (s2, e2) = tail_call_sites(image)
    lengths = {order[0]: e1 - s1, order[1]: e2 - s2}
    assert lengths["dynamic"] - lengths["static"] == 5
    assert jcc_targets(image, cs, s1, e1) == {s1 + (e2 - s2)}
    assert jcc_targets(image, cs, s2, e2) == {s2 + (e1 - s1)}


@pytest.mark.parametrize("codegen", CODEGENS)
def test_poke_descriptor_addresses(codegen):
    image = jit_sample(CODEGENS[codegen], sites=("direct",))
    [poke] = image.pokes
    [(start, end)] = tail_call_sites(image)
    site = image.base + start
    assert poke.tailcall_bypass == site + 13  # after mov rax,[rbp-x]; cmp; jae
    assert poke.tailcall_target == image.base + end - 5
    assert poke.bypass_addr == image.base + end
    assert poke.adj_off == 12
    assert image.code[start + 13] == 0xE9 and image.code[end - 5 : end] == bytes.fromhex("0f1f440000")


def test_jit_does_not_mutate_its_input():
    from tcfuzz.model.profile import preset
    from tcfuzz.model.sample import SampleConfig, verified_sample

    prog = verified_sample(SampleConfig(sites=("direct",)), CODEGENS["legacy"], preset("default"))
    CODEGENS["legacy"].jit(prog, preset("default"), 0x100_0000)
    assert prog.poke_tab[0].tailcall_target is None


def test_rel8_fails_loudly():
    assert rel8(127) == 127 and rel8(-128) == -128
    with pytest.raises(JitError):
        rel8(128)


def test_out_of_table_poke_index_is_a_jit_fault():
    prog = VerifiedProgram([Insn(BPF_JMP | BPF_TAIL_CALL, imm=5)])
    with pytest.raises(JitFault, match=r"poke_tab\[4\]"):
        poke_entry(prog, 4)
    with pytest.raises(JitFault, match=r"poke_tab\[-32769\]"):
        poke_entry(prog, -32769)
