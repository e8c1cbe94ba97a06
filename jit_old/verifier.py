"""The verifier's tail-call rewrite: the BPF_FUNC_tail_call case of do_misc_fixups()
(kernel/bpf/verifier.c, bpf-next before the series) and bpf_jit_add_poke_descriptor()
(kernel/bpf/core.c)."""
from __future__ import annotations

from collections.abc import Callable, Sequence

from tcfuzz.model.bpf import BPF_ALU32_IMM, BPF_AND, BPF_JGE, BPF_JMP, BPF_JMP_IMM, BPF_TAIL_CALL, R3, Insn
from tcfuzz.model.interfaces import MapRef, PokeDescriptor, TailCallAux, VerifierEnv, VerifierReject
from tcfuzz.model.profile import KernelProfile

TailCallFixup = Callable[[Insn, int, VerifierEnv, Sequence[MapRef], list, KernelProfile], list[Insn]]

TAIL_CALL_INSN = Insn(BPF_JMP | BPF_TAIL_CALL)


def direct_tail_call_allowed(env: VerifierEnv, aux: TailCallAux) -> bool:
    """The condition under which the site becomes a direct (poke) tail call."""
    return (env.bpf_capable and not env.blinding_requested and env.jit_requested
            and aux.key is not None and not aux.map_poisoned and not aux.map_unpriv)


def bpf_jit_add_poke_descriptor(poke_tab: list[PokeDescriptor], desc: PokeDescriptor,
                                profile: KernelProfile) -> int:
    """Mirrors bpf_jit_add_poke_descriptor(): append, return the 0-based slot, -ENOSPC past the max."""
    if len(poke_tab) + 1 > profile.poke_tab_max:
        raise VerifierReject("adding tail call poke descriptor failed")
    poke_tab.append(desc)
    return len(poke_tab) - 1


def with_unpriv_bound_check(aux: TailCallAux, tail_call: Insn) -> list[Insn]:
    """For maps created without CAP_PERFMON: `if r3 >= max_entries goto +2; w3 &= index_mask`."""
    if not aux.map_unpriv:
        return [tail_call]
    if aux.map_poisoned:
        raise VerifierReject("tail_call abusing map_ptr")
    return [BPF_JMP_IMM(BPF_JGE, R3, aux.map.max_entries, 2),
            BPF_ALU32_IMM(BPF_AND, R3, aux.map.index_mask),
            tail_call]


def fixup_tail_call(insn: Insn, idx: int, env: VerifierEnv, used_maps: Sequence[MapRef],
                    poke_tab: list[PokeDescriptor], profile: KernelProfile) -> list[Insn]:
    """Legacy encoding: imm = 0 (indirect) or poke index + 1 (direct)."""
    aux: TailCallAux = insn.aux
    if direct_tail_call_allowed(env, aux):
        assert aux.key is not None  # direct_tail_call_allowed(): the verifier saw one constant key
        slot = bpf_jit_add_poke_descriptor(poke_tab, PokeDescriptor(aux.map, aux.key, idx), profile)
        return [TAIL_CALL_INSN.with_imm(slot + 1)]
    return with_unpriv_bound_check(aux, TAIL_CALL_INSN)


def bpf_patch_insn(insns: list[Insn], pos: int, patch: list[Insn]) -> list[Insn]:
    """Replace insns[pos] by `patch`, moving branches that cross it (bpf_adj_branches())."""
    delta = len(patch) - 1
    out = []
    for j, insn in enumerate(insns):
        if j == pos:
            out.extend(patch)
            continue
        if insn.is_cond_jump():
            target = j + 1 + insn.off
            if j < pos < target:
                insn = Insn(insn.code, insn.dst, insn.src, insn.off + delta, insn.imm, insn.aux)
            elif target <= pos < j:
                insn = Insn(insn.code, insn.dst, insn.src, insn.off - delta, insn.imm, insn.aux)
        out.append(insn)
    return out


def do_misc_fixups(insns: Sequence[Insn], env: VerifierEnv, used_maps: Sequence[MapRef],
                   profile: KernelProfile, fixup: TailCallFixup = fixup_tail_call
                   ) -> tuple[list[Insn], list[PokeDescriptor]]:
    """Rewrite every `call bpf_tail_call` with `fixup`; returns the new insns and the poke table."""
    out = list(insns)
    poke_tab: list[PokeDescriptor] = []
    i = 0
    while i < len(out):
        if out[i].is_tail_call_helper():
            patch = fixup(out[i], i, env, used_maps, poke_tab, profile)
            out = bpf_patch_insn(out, i, patch)
            i += len(patch)
        else:
            i += 1
    return out, poke_tab
