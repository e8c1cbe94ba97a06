"""Worlds whose outcome is known from the kernel's semantics: every voter must produce it under
Unicorn (or, for the model, by reasoning), and the oracle must say AGREE — or name the divergence."""

import pytest
from conftest import static_world, world

from tcfuzz import jit_new, jit_old
from tcfuzz.machine.engine import Engine
from tcfuzz.machine.executor import execute, load
from tcfuzz.model.interfaces import FaultKind, VerdictKind
from tcfuzz.model.lower import FALL_THROUGH
from tcfuzz.model.profile import PRESETS
from tcfuzz.model.semantics import CountOrder
from tcfuzz.verdict.oracle import judge


def agreed(w, **kw):
    j = judge(w, **kw)
    assert j.verdict.kind is VerdictKind.AGREE, (j.verdict, j.observations)
    return j.observations["legacy"]


@pytest.mark.parametrize("profile", sorted(PRESETS))
def test_self_call_runs_34_times(profile):
    w = world([{"id": 0, "max_entries": 1, "slots": {"0": 0}}], [{"id": 0, "sites": [{"maps": [0]}]}], [{"entry": 0}], profile)
    (obs,) = agreed(w)
    assert obs.trace == (0,) * 34
    assert obs.tail_call_cnt == 33
    assert obs.runs == ((0, 34),)
    assert obs.ret == FALL_THROUGH + 0


def test_null_slot_and_out_of_range_index_fall_through():
    w = static_world(max_entries=4, slots={0: 1}, keys=(1, 4, 0xFFFFFFFF, 0))
    null, at_max, huge, taken = agreed(w)
    for obs in (null, at_max, huge):
        assert obs.trace == (0,) and obs.ret == FALL_THROUGH and obs.tail_call_cnt == 0
    assert taken.trace == (0, 1) and taken.ret == FALL_THROUGH + 1 and taken.tail_call_cnt == 1


@pytest.mark.parametrize("high", [1 << 32, 0xFFFFFFFF_00000000, 1 << 63])
def test_index_bits_above_31_are_ignored(high):
    (obs,) = agreed(static_world(max_entries=4, slots={2: 1}, keys=(high | 2,)))
    assert obs.trace == (0, 1)


@pytest.mark.parametrize("profile", sorted(PRESETS))
def test_chain_with_different_frames_keeps_ctx_and_balances_the_stack(profile):
    maps = [{"id": 0, "max_entries": 8, "slots": {"1": 1, "2": 2}}]
    progs = [
        {"id": 0, "stack_depth": 8, "callee_regs": [6], "sites": [{"maps": [0], "key": 1}]},
        {"id": 1, "stack_depth": 300, "callee_regs": [6, 7, 8, 9], "sites": [{"maps": [0]}]},
        {"id": 2, "stack_depth": 17, "exception_boundary": True},
    ]
    w = world(maps, progs, [{"entry": 0, "ctx": [{"prog": 1, "site": 0, "key": 2}]}], profile)
    (obs,) = agreed(w)
    assert obs.trace == (0, 1, 2) and obs.ret == FALL_THROUGH + 2 and obs.tail_call_cnt == 2
    assert obs.stack_delta == 0 and obs.ctx_preserved and obs.callee_saved_clobbered == ()
    assert obs.runs == ((0, 1), (1, 1), (2, 1))


def test_poisoned_site_over_maps_with_different_max_entries():
    maps = [{"id": 0, "max_entries": 4, "slots": {"1": 1}}, {"id": 1, "max_entries": 16, "slots": {"5": 2}}]
    progs = [{"id": 0, "sites": [{"maps": [0, 1]}]}, {"id": 1}, {"id": 2}]
    inputs = [(0, 1), (0, 5), (1, 5), (1, 1)]  # (map chosen at run time, key)
    w = world(maps, progs, [{"entry": 0, "ctx": [{"prog": 0, "site": 0, "map": m, "key": k}]} for m, k in inputs])
    assert [o.trace for o in agreed(w)] == [(0, 1), (0,), (0, 2), (0,)]


def test_direct_call_follows_update_and_delete():
    maps = [{"id": 0, "max_entries": 4, "slots": {"3": 1}}]
    progs = [{"id": 0, "sites": [{"maps": [0], "key": 3}]}, {"id": 1}, {"id": 2}]
    runs = [
        {"entry": 0},
        {"entry": 0, "ops": [{"op": "delete", "map": 0, "index": 3}]},
        {"entry": 0, "ops": [{"op": "update", "map": 0, "index": 3, "prog": 2}]},
        {"entry": 0, "ops": [{"op": "update", "map": 0, "index": 3, "prog": 1}]},
        {"entry": 0, "ops": [{"op": "update", "map": 0, "index": 4, "prog": 2}]},
    ]  # -E2BIG: no change
    w = world(maps, progs, runs)
    assert [o.trace for o in agreed(w)] == [(0, 1), (0,), (0, 2), (0, 1), (0, 1)]
    for codegen in (jit_old.CODEGEN, jit_new.CODEGEN):
        assert len(load(w, codegen).images[0].pokes) == 1, "the site must be a direct (poke) call"


def test_direct_call_into_an_empty_slot_skips_the_increment():
    maps = [{"id": 0, "max_entries": 4, "slots": {"1": 0}}]
    progs = [{"id": 0, "sites": [{"maps": [0], "key": 2}, {"maps": [0], "key": 1}]}]
    (obs,) = agreed(world(maps, progs, [{"entry": 0}]))
    assert obs.trace == (0,) * 34 and obs.tail_call_cnt == 33


@pytest.mark.parametrize("key, trace", [(4, (0,)), (5, (0,)), (7, (0,)), ((1 << 32) | 1, (0,)), (1, (0, 1))])
def test_unpriv_bound_check_is_64_bit(key, trace):
    """The verifier's `if r3 >= max_entries` compares all 64 bits: a high bit skips the call, where
    the JIT alone would have used the low 32 bits (see test_index_bits_above_31_are_ignored)."""
    (obs,) = agreed(static_world(max_entries=5, slots={1: 1}, keys=(key,), unpriv=True))
    assert obs.trace == trace


def test_max_entries_u32_max_maps_only_touched_pages():
    engine = Engine()
    w = static_world(max_entries=0xFFFFFFFF, slots={7: 1, 0xFFFFFFFE: 1}, keys=(7, 0xFFFFFFFE, 0xFFFFFFFF))
    legacy = execute(w, jit_old.CODEGEN, engine)
    assert [o.trace for o in legacy] == [(0, 1), (0, 1), (0,)]
    assert len(engine.lazy_pages) <= 4


def test_u32_max_entries_diverges_under_the_patch():
    """Finding: `offsetof(ptrs) + max_entries * 8` wraps in the JIT's int; the patched static site
    reads ptrs[index - 1] of the program half, a struct bpf_prog *, and jumps into it."""
    j = judge(static_world(max_entries=0xFFFFFFFF, slots={0: 1, 1: 1}, keys=(1,)))
    v = j.verdict
    assert (v.kind, v.field_name) == (VerdictKind.NEW_DIVERGES, "fault")
    assert j.observations["patched"][0].fault.kind is FaultKind.WILD_JUMP
    assert v.signature == "NEW_DIVERGES/fault/wild_jump@jmp rcx -> struct bpf_prog +<addr>"


def test_static_and_dynamic_sites_in_one_program_diverge_under_the_patch():
    """Finding: the two indirect spellings have different lengths but share tail_call_indirect_label."""
    maps = [{"id": 0, "max_entries": 4}, {"id": 1, "max_entries": 8}]
    progs = [{"id": 0, "sites": [{"maps": [0]}, {"maps": [0, 1]}]}]
    w = world(maps, progs, [{"entry": 0, "ctx": [{"prog": 0, "site": 0, "key": 9}]}])
    v = judge(w).verdict
    assert (v.kind, v.field_name) == (VerdictKind.NEW_DIVERGES, "fault")


def test_broken_bound_check_is_reported_new_diverges():
    """`jae` -> `ja` in the patched bound check: index == max_entries passes, and the load of
    ptrs[max_entries + index] runs past the end of the array."""
    from tcfuzz.selftest.mutants import BOUND_CHECK_JA

    j = judge(static_world(max_entries=4, slots={0: 1}, keys=(0, 4)), new=BOUND_CHECK_JA)
    v = j.verdict
    assert (v.kind, v.run, v.field_name) == (VerdictKind.NEW_DIVERGES, 1, "fault")
    fault = j.observations["patched"][1].fault
    assert fault.kind is FaultKind.OUT_OF_ALLOCATION
    assert "mov rcx, qword ptr [rsi + rdx*8 + <offset>]" in fault.where


def test_lost_increment_is_a_timeout_not_a_hang(monkeypatch):
    from tcfuzz.jit_old.tail_call import emit_count_and_unwind

    def no_increment(p, prog, callee_regs_used, stack_depth):
        emit_count_and_unwind(p, prog, callee_regs_used, stack_depth)
        p.code[p.code.rindex(b"\x48\x83\x00\x01") + 3] = 0  # add qword ptr [rax], 0

    monkeypatch.setattr(jit_new.tail_call, "emit_count_and_unwind", no_increment)
    j = judge(static_world(max_entries=1, slots={0: 0}, keys=(0,), n_progs=1))
    assert j.verdict.kind is VerdictKind.NEW_DIVERGES
    assert j.observations["patched"][0].fault.kind is FaultKind.TIMEOUT


def test_interpreter_order_counts_null_slots():
    """Site 0 hits an empty slot, site 1 calls the program again: the pre-2026 interpreter spends
    budget on the empty slot, so the chain is half as long. Both JITs agree with each other."""
    maps = [{"id": 0, "max_entries": 4, "slots": {"0": 0}}]
    progs = [{"id": 0, "sites": [{"maps": [0], "key": 1}, {"maps": [0], "key": 0}]}]
    w = world(maps, progs, [{"entry": 0}])
    j = judge(w, order=CountOrder.INTERPRETER)
    assert (j.verdict.kind, j.verdict.field_name) == (VerdictKind.JITS_AGREE_MODEL_DIFFERS, "trace")
    assert len(j.observations["model"][0].trace) == 1 + 16  # 2 increments per call: 16 calls, then 33
    assert agreed(w)[0].trace == (0,) * 34


def test_engine_reuse_matches_a_fresh_engine():
    """Worlds run back to back on one engine (different code at the same addresses, pokes, lazy
    pages) observe exactly what a fresh engine observes."""
    worlds = [static_world(max_entries=n, slots={0: 1, n - 1: 0}, keys=(0, n - 1, n)) for n in (1, 3, 70000)]
    shared = Engine()
    for w in worlds + worlds[::-1]:
        for codegen in (jit_old.CODEGEN, jit_new.CODEGEN):
            assert execute(w, codegen, shared) == execute(w, codegen, Engine())


@pytest.mark.parametrize("profile", ["default", "ibt", "retpoline"])
def test_tail_calls_from_subprograms_share_one_counter(profile):
    """The kernel's tailcall_bpf2bpf_hierarchy shape: program 0's subprogram tail-calls program 1,
    whose main body tail-calls program 0 again. Subprograms pass the counter by pointer, so the
    chain still stops after 33 calls, and every frame the subprogram calls leave is unwound."""
    maps = [{"id": 0, "max_entries": 2, "slots": {"0": 1, "1": 0}}]
    progs = [
        {"id": 0, "subprog": True, "stack_depth": 40, "callee_regs": [6, 7], "sites": [{"maps": [0], "key": 0}]},
        {"id": 1, "stack_depth": 200, "callee_regs": [9], "sites": [{"maps": [0]}]},
    ]
    ctx = [{"prog": 1, "site": 0, "key": 1}]
    w = world(maps, progs, [{"entry": 0, "ctx": ctx}, {"entry": 1, "ctx": ctx}], profile)
    from_sub, from_main = agreed(w)
    assert from_sub.trace == (0, 1) * 17 and from_sub.tail_call_cnt == 33 and from_sub.ret == FALL_THROUGH + 1
    assert from_main.trace == (1, 0) * 17 and from_main.tail_call_cnt == 33
    for obs in (from_sub, from_main):
        assert obs.stack_delta == 0 and obs.ctx_preserved and obs.callee_saved_clobbered == ()


def test_subprogram_images_carry_the_counter_pointer_into_the_call(cs):
    from tcfuzz.model.interfaces import asm_matches

    w = world(
        [{"id": 0, "max_entries": 1}],
        [{"id": 0, "subprog": True, "stack_depth": 24, "sites": [{"maps": [0], "key": 0}]}],
        [{"entry": 0}],
    )
    ld = load(w, jit_old.CODEGEN)
    names = [name for name, _ in ld.functions]
    assert names == ["prog 0", "prog 0 subprog"]
    main, sub = (img for _, img in ld.functions)
    listing = [
        (f"{i.mnemonic} {i.op_str}".strip(), ins.asm) for ins in main.instrs for i in cs.disasm(ins.data, main.base + ins.offset)
    ]
    assert ("mov rax, qword ptr [rbp - 0x28]", "mov rax, qword ptr [rbp + <tcc_ptr_off>]") in listing
    assert any(text == f"call {sub.base:#x}" for text, _ in listing)
    for text, comment in listing:
        assert asm_matches(comment, text), (comment, text)
    assert sub.code[:16].hex().startswith("0f1f440000" + "0f1f00" + "55" + "4889e5")  # no xor rax, rax


def test_poke_table_overflow_is_rejected_by_every_voter():
    profile = {"name": "tiny-poke-tab", "poke_tab_max": 1}
    progs = [{"id": 0, "sites": [{"maps": [0], "key": 0}, {"maps": [0], "key": 1}]}]
    w = world([{"id": 0, "max_entries": 2, "slots": {"0": 0}}], progs, [{"entry": 0}], profile)
    j = judge(w)
    assert j.verdict.kind is VerdictKind.AGREE
    assert {obs[0].load for obs in j.observations.values()} == {"rejected"}
    assert load(w, jit_new.CODEGEN).load_detail == "adding tail call poke descriptor failed"


@pytest.mark.parametrize("profile", ["default", "ibt"])
@pytest.mark.parametrize("count, calls", [(0, 33), (1, 32), (32, 1), (33, 0)])
def test_entry_as_a_tail_callee_with_a_count(profile, count, calls):
    """A run may start as the tail callee of a main program that has made `count` calls: the
    self-call chain then makes only 33 - count more, and the stack still balances."""
    w = world(
        [{"id": 0, "max_entries": 1, "slots": {"0": 0}}],
        [{"id": 0, "stack_depth": 40, "callee_regs": [6], "sites": [{"maps": [0], "key": 0}]}],
        [{"entry": 0, "tail_call_cnt": count}],
        profile,
    )
    (obs,) = agreed(w)
    assert obs.trace == (0,) * (1 + calls) and obs.tail_call_cnt == 33
    assert obs.stack_delta == 0 and obs.callee_saved_clobbered == ()
