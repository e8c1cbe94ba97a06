"""Reference semantics of a world: what the BPF interpreter (kernel/bpf/core.c, ___bpf_prog_run)
does, with no machine code involved. The third voter of the oracle.

JMP_TAIL_CALL:
    index = (u32) R3                                   (after the verifier's unpriv insns, below)
    if (index >= array->map.max_entries) goto out;
    if (tail_call_cnt >= MAX_TAIL_CALL_CNT) goto out;
    tail_call_cnt++;                                   <- CountOrder.INTERPRETER: before the NULL check
    prog = array->ptrs[index]; if (!prog) goto out;
    tail_call_cnt++;                                   <- CountOrder.JIT: after it (x86 since v6.10,
                                                          the interpreter since its 2026 fix)
For a map created without CAP_PERFMON the verifier prepends, on the 64-bit R3:
    if (r3 >= (s64)(s32)max_entries) goto past the call;  w3 &= index_mask;
One counter per top-level run, shared along the chain. Map operations are syscalls: an update or
delete at index >= max_entries fails with -E2BIG and changes nothing.
"""

from __future__ import annotations

import enum

from tcfuzz.model.bpf import s32, u32, u64
from tcfuzz.model.interfaces import Observation, TailCallAux, VerifierEnv
from tcfuzz.model.lower import FALL_THROUGH, site_aux
from tcfuzz.model.world import MapOp, RunSpec, World


class CountOrder(str, enum.Enum):
    JIT = "jit"  # increment once the target is known to exist
    INTERPRETER = "interpreter"  # core.c before 3733f4be287 (Feb 2026): increment, then NULL check


def is_direct(env: VerifierEnv, aux: TailCallAux) -> bool:
    """do_misc_fixups(): the site gets a poke descriptor (stated here again, independently of the JITs)."""
    return (
        env.bpf_capable
        and not env.blinding_requested
        and env.jit_requested
        and aux.key is not None
        and not aux.map_poisoned
        and not aux.map_unpriv
    )


def load_outcome(world: World) -> str:
    """The only load failure the reference knows: more direct sites than the poke table holds."""
    for prog in world.programs:
        if sum(is_direct(prog.env, site_aux(world, s)) for s in prog.sites) > world.profile.poke_tab_max:
            return "rejected"
    return "ok"


def apply_op(slots: dict[int, dict[int, int]], world: World, op: MapOp) -> None:
    if op.index >= world.map(op.map).max_entries:
        return  # -E2BIG
    if op.op == "update":
        assert op.prog is not None  # an update names its program (World.validate)
        slots[op.map][op.index] = op.prog
    else:
        slots[op.map].pop(op.index, None)


def tail_call_index(world: World, run: RunSpec, prog_id: int, j: int) -> int | None:
    """The u32 index the tail call uses, or None when the verifier's unpriv check skips the call."""
    site = world.program(prog_id).sites[j]
    r3 = site.key if site.key is not None else run.input_for(prog_id, j).key
    aux = site_aux(world, site)
    if aux.map_unpriv:
        if r3 >= u64(s32(aux.map.max_entries)):  # BPF_JGE with a sign-extended imm32
            return None
        r3 = u32(r3 & aux.map.index_mask)  # BPF_ALU32 zero-extends
    return u32(r3)


def run_once(world: World, run: RunSpec, slots: dict[int, dict[int, int]], order: CountOrder) -> Observation:
    limit = world.profile.max_tail_call_cnt
    cnt = run.tail_call_cnt or 0
    prog = run.entry
    trace = [prog]
    while True:
        for j in range(len(world.program(prog).sites)):
            array = world.site_map(run, prog, j)
            index = tail_call_index(world, run, prog, j)
            if index is None or index >= array.max_entries or cnt >= limit:
                continue
            if order is CountOrder.INTERPRETER:
                cnt += 1
            target = slots[array.id].get(index)
            if target is None:
                continue
            if order is CountOrder.JIT:
                cnt += 1
            prog = target
            trace.append(prog)
            break
        else:
            break
    counts = {p.id: 0 for p in world.programs}
    for p in trace:
        counts[p] += 1
    return Observation(trace=tuple(trace), ret=FALL_THROUGH + prog, tail_call_cnt=cnt, runs=tuple(sorted(counts.items())))


def predict(world: World, order: CountOrder = CountOrder.JIT) -> list[Observation]:
    """One Observation per run of the world."""
    load = load_outcome(world)
    if load != "ok":
        return [Observation.not_loaded(load) for _ in world.runs]
    slots = {m.id: dict(m.slots) for m in world.maps}
    out = []
    for run in world.runs:
        for op in run.ops:
            apply_op(slots, world, op)
        out.append(run_once(world, run, slots, order))
    return out
