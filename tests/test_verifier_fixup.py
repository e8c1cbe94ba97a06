"""do_misc_fixups() for bpf_tail_call: direct vs indirect conditions, unpriv insertion, rejections."""

import dataclasses

import pytest
from conftest import CODEGENS, jit_sample

from tcfuzz.model.bpf import BPF_ALU, BPF_AND, BPF_EMIT_CALL_TAIL_CALL, BPF_JGE, BPF_JMP, BPF_K, BPF_TAIL_CALL, R3
from tcfuzz.model.interfaces import MapRef, TailCallAux, VerifierEnv, VerifierReject
from tcfuzz.model.profile import preset
from tcfuzz.model.sample import SampleConfig, sample_program
from tcfuzz.model.world import index_mask

MAP = MapRef(0, 10, index_mask(10))
PRIV_CONST = TailCallAux(MAP, key=3)


def fixup(codegen, aux, env=None, used_maps=(MAP,)):
    return CODEGENS[codegen].fixup([BPF_EMIT_CALL_TAIL_CALL(aux)], env or VerifierEnv(), list(used_maps), preset("default"))


@pytest.mark.parametrize("codegen", CODEGENS)
def test_constant_key_privileged_becomes_direct(codegen):
    insns, poke_tab = fixup(codegen, PRIV_CONST)
    assert [i.code for i in insns] == [BPF_JMP | BPF_TAIL_CALL]
    assert len(poke_tab) == 1 and poke_tab[0].key == 3 and poke_tab[0].insn_idx == 0
    assert insns[0].imm == (1 if codegen == "legacy" else 1 << 16)


@pytest.mark.parametrize("codegen", CODEGENS)
@pytest.mark.parametrize(
    "change",
    [
        dict(env=VerifierEnv(bpf_capable=False)),
        dict(env=VerifierEnv(blinding_requested=True)),
        dict(env=VerifierEnv(jit_requested=False)),
        dict(aux=dataclasses.replace(PRIV_CONST, key=None)),
        dict(aux=dataclasses.replace(PRIV_CONST, map_poisoned=True)),
    ],
)
def test_each_condition_is_needed_for_a_direct_call(codegen, change):
    insns, poke_tab = fixup(codegen, **{"aux": PRIV_CONST, **change})
    assert poke_tab == [] and [i.code for i in insns] == [BPF_JMP | BPF_TAIL_CALL]
    poisoned = change.get("aux", PRIV_CONST).map_poisoned
    assert insns[0].imm == (0 if codegen == "legacy" else (0x100 if poisoned else 0))


@pytest.mark.parametrize("codegen", CODEGENS)
def test_unpriv_map_gets_the_bound_check_and_mask(codegen):
    aux = dataclasses.replace(PRIV_CONST, map_unpriv=True)
    insns, poke_tab = fixup(codegen, aux)
    assert poke_tab == []
    jge, and_, tc = insns
    assert (jge.code, jge.dst, jge.imm, jge.off) == (BPF_JMP | BPF_JGE | BPF_K, R3, 10, 2)
    assert (and_.code, and_.dst, and_.imm) == (BPF_ALU | BPF_AND | BPF_K, R3, 15)
    assert tc.code == BPF_JMP | BPF_TAIL_CALL


@pytest.mark.parametrize("codegen", CODEGENS)
def test_unpriv_poisoned_map_is_rejected(codegen):
    with pytest.raises(VerifierReject, match="tail_call abusing map_ptr"):
        fixup(codegen, dataclasses.replace(PRIV_CONST, map_unpriv=True, map_poisoned=True, key=None))


@pytest.mark.parametrize("codegen", CODEGENS)
def test_poke_table_limit(codegen):
    insns, _, env = sample_program(SampleConfig(sites=("direct",) * 3))
    with pytest.raises(VerifierReject, match="poke descriptor"):
        CODEGENS[codegen].fixup(insns, env, [MapRef(0, 4, 3)], preset("default").replace(poke_tab_max=2))


def test_patched_verifier_needs_the_map_in_used_maps():
    with pytest.raises(VerifierReject, match="index not found"):
        fixup("patched", PRIV_CONST, used_maps=(MapRef(9, 10),))


def test_patched_imm_carries_the_map_index():
    other = MapRef(7, 2)
    insns, _ = fixup("patched", TailCallAux(MAP, key=None), used_maps=(other, other, MAP))
    assert insns[0].imm == 2


@pytest.mark.parametrize("codegen", CODEGENS)
def test_unpriv_insns_are_jited_as_the_x86_jit_emits_them(codegen):
    # if r3 >= 5 goto +2: cmp rdx, 5 (imm8 form); jae over the and + tail call; and edx, 7
    code = jit_sample(CODEGENS[codegen], sites=("static",), unpriv=True, max_entries=5).code
    assert bytes.fromhex("4883fa05 73") in code and bytes.fromhex("83e207 89d2") in code
    # max_entries 2**31: imm is (s32)0x80000000, so the 64-bit compare is against a sign-extended value
    code = jit_sample(CODEGENS[codegen], sites=("static",), unpriv=True, max_entries=2**31).code
    assert bytes.fromhex("4881fa00000080 73") in code and bytes.fromhex("81e2ffffff7f 89d2") in code


def test_several_sites_keep_their_indices_after_insertion():
    insns, used_maps, env = sample_program(SampleConfig(sites=("static", "direct"), unpriv=False))
    fixed, poke_tab = CODEGENS["legacy"].fixup(insns, env, used_maps, preset("default"))
    assert fixed[poke_tab[0].insn_idx].code == BPF_JMP | BPF_TAIL_CALL and fixed[poke_tab[0].insn_idx].imm == 1
