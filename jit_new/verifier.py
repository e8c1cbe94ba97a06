"""Patch 2/4, kernel/bpf/verifier.c: tail_call_find_map_index() and the new imm packing in
do_misc_fixups(). The direct-call condition, the poke table and the unpriv bound check are unchanged."""
from __future__ import annotations

from collections.abc import Sequence

from tcfuzz.jit_new.imm import encode_tail_call_imm
from tcfuzz.jit_old.verifier import TAIL_CALL_INSN, bpf_jit_add_poke_descriptor, direct_tail_call_allowed, with_unpriv_bound_check
from tcfuzz.model.bpf import Insn
from tcfuzz.model.interfaces import MapRef, PokeDescriptor, TailCallAux, VerifierEnv, VerifierReject
from tcfuzz.model.profile import KernelProfile

ENOENT = 2


def tail_call_find_map_index(used_maps: Sequence[MapRef], map_: MapRef) -> int:
    for i, candidate in enumerate(used_maps):
        if candidate.map_id == map_.map_id:
            return i
    return -ENOENT


def fixup_tail_call(insn: Insn, idx: int, env: VerifierEnv, used_maps: Sequence[MapRef],
                    poke_tab: list[PokeDescriptor], profile: KernelProfile) -> list[Insn]:
    aux: TailCallAux = insn.aux
    map_index = tail_call_find_map_index(used_maps, aux.map)
    if map_index < 0:
        raise VerifierReject("verifier bug: index not found for prog array map")
    if direct_tail_call_allowed(env, aux):
        assert aux.key is not None  # direct_tail_call_allowed(): the verifier saw one constant key
        slot = bpf_jit_add_poke_descriptor(poke_tab, PokeDescriptor(aux.map, aux.key, idx), profile)
        return [TAIL_CALL_INSN.with_imm(encode_tail_call_imm(map_index, aux.map_poisoned, slot))]
    imm = encode_tail_call_imm(map_index, aux.map_poisoned, None)
    return with_unpriv_bound_check(aux, TAIL_CALL_INSN.with_imm(imm))
