"""The batched path must see what the per-case path sees: same machine outcomes for every case, and
the vectorized model must equal the reference semantics case by case."""

import numpy as np
import pytest
from conftest import static_world, world
from hypothesis import given, settings
from hypothesis import strategies as st

from tcfuzz import jit_new, jit_old
from tcfuzz.gen.worlds import batch_worlds, worlds
from tcfuzz.machine.batch import Batch, case_world, plain_cases, random_cases
from tcfuzz.machine.executor import counter_home, execute
from tcfuzz.model.layout import ENTRY_RSP
from tcfuzz.model.lower import FALL_THROUGH
from tcfuzz.model.semantics import predict
from tcfuzz.verdict.batch_oracle import ChainModel, batchable, judge_batch, model_batch
from tcfuzz.verdict.oracle import judge
from tcfuzz.verdict.policy import Status, classify


def cases_for(w, n, seed):
    return random_cases(w, n, np.random.default_rng(seed))


def per_case(w, codegen, row):
    (obs,) = execute(case_world(w, row), codegen)
    return obs


def assert_batch_matches_per_case(w, cases):
    for codegen in (jit_old.CODEGEN, jit_new.CODEGEN):
        r = Batch(w, codegen).run(cases)
        columns = sorted(p.id for p in w.programs)
        for i, row in enumerate(cases):
            obs = per_case(w, codegen, row)
            assert (obs.fault is not None) == bool(r.faulted[i]), (codegen.name, row, obs)
            if obs.fault is None:
                assert int(r.regs[i, 0]) == obs.ret and int(r.regs[i, 1]) - ENTRY_RSP == obs.stack_delta
                home = columns.index(counter_home(w, list(obs.trace)).id)
                assert int(r.counters[i, home]) == obs.tail_call_cnt
                assert tuple(int(x) for x in r.runs[i]) == tuple(n for _, n in obs.runs)


def test_batch_equals_per_case_on_a_chain_world():
    w = world(
        [{"id": 0, "max_entries": 5, "slots": {"0": 1, "2": 0, "4": 2}}],
        [
            {"id": 0, "stack_depth": 24, "callee_regs": [6], "sites": [{"maps": [0]}]},
            {"id": 1, "stack_depth": 100},
            {"id": 2, "exception_boundary": True},
        ],
        [{"entry": 0}],
        "ibt",
    )
    assert batchable(w)
    assert_batch_matches_per_case(w, cases_for(w, 60, 1))


def test_faults_mid_batch_are_marked_and_the_batch_goes_on():
    w = world(
        [{"id": 0, "max_entries": 2**32 - 1, "slots": {"0": 1, "1": 1}}],
        [{"id": 0, "sites": [{"maps": [0]}]}, {"id": 1}],
        [{"entry": 0}],
    )
    cases = plain_cases([[k] for k in (5, 1, 6, 1, 5)])  # the patch reads ptrs[k-1]: 0, prog, 0
    legacy = Batch(w, jit_old.CODEGEN).run(cases)
    patched = Batch(w, jit_new.CODEGEN).run(cases)
    assert not legacy.faulted.any()
    assert list(patched.faulted) == [False, True, False, True, False]  # the disp wrap, cases 1 and 3
    assert int(patched.regs[4, 0]) == FALL_THROUGH + 0
    assert list(judge_batch(w, cases, jit_old.CODEGEN, jit_new.CODEGEN).flagged) == [1, 3]


@settings(max_examples=25)
@given(batch_worlds(), st.integers(0, 2**32))
def test_vectorized_model_equals_the_reference(w, seed):
    assert batchable(w)
    assert_model_equals_reference(w, model_batch, cases_for(w, 40, seed))


@settings(max_examples=25)
@given(worlds(), st.integers(0, 2**32))
def test_chain_model_equals_the_reference(w, seed):
    import dataclasses

    w = dataclasses.replace(w, runs=(dataclasses.replace(w.runs[0], ops=()),))
    assert_model_equals_reference(w, lambda w, cases: ChainModel(w).run(cases), cases_for(w, 20, seed))


@settings(max_examples=25)
@given(worlds(), st.integers(0, 2**32))
def test_chain_model_equals_the_reference_in_the_interpreter_order(w, seed):
    import dataclasses

    from tcfuzz.model.semantics import CountOrder

    w = dataclasses.replace(w, runs=(dataclasses.replace(w.runs[0], ops=()),))
    order = CountOrder.INTERPRETER
    assert_model_equals_reference(w, lambda w, cases: ChainModel(w, order).run(cases), cases_for(w, 20, seed), order)


@settings(max_examples=40)
@given(worlds(), st.integers(0, 2**32), st.sampled_from(["jit", "interpreter"]))
def test_chain_model_vectorized_equals_its_case_by_case_rules(w, seed, order_name):
    """`ChainModel.run` (all cases at once) gives what `ChainModel.case` gives row by row."""
    import dataclasses

    from tcfuzz.model.semantics import CountOrder

    w = dataclasses.replace(w, runs=(dataclasses.replace(w.runs[0], ops=()),))
    model = ChainModel(w, CountOrder(order_name))
    cases = cases_for(w, 300, seed)
    r = model.run(cases)
    for i, row in enumerate(cases.tolist()):
        last, runs, count, home = model.case(row)
        assert int(r.regs[i, 0]) == FALL_THROUGH + last, row
        assert [int(x) for x in r.runs[i]] == runs, row
        assert (int(r.count[i]), int(r.home[i])) == (count, home), row


def test_a_world_a_codegen_does_not_load_flags_a_case_instead_of_raising():
    class Faulting(type(jit_new.CODEGEN)):
        name = "faults-at-jit"

        def jit(self, prog, profile, image_base):
            from tcfuzz.model.interfaces import JitFault

            raise JitFault("poke_tab[-32769] read")

    w = static_world(max_entries=3, slots={1: 1}, keys=(0,))
    assert list(judge_batch(w, plain_cases([[0], [1]]), jit_old.CODEGEN, Faulting()).flagged) == [0]


def assert_model_equals_reference(w, model, cases, order=None):
    from tcfuzz.model.semantics import CountOrder

    m = model(w, cases)
    columns = sorted(p.id for p in w.programs)
    for i, row in enumerate(cases):
        (obs,) = predict(case_world(w, row), order or CountOrder.JIT)
        if obs.load != "ok":
            return
        assert int(m.regs[i, 0]) == obs.ret and int(m.count[i]) == obs.tail_call_cnt
        assert columns[int(m.home[i])] == counter_home(w, list(obs.trace)).id
        assert tuple(int(x) for x in m.runs[i]) == tuple(n for _, n in obs.runs)


@settings(max_examples=10)
@given(
    st.one_of(
        batch_worlds(),
        worlds().map(
            lambda w: w.__class__(
                w.profile, w.maps, w.programs, (w.runs[0].__class__(w.runs[0].entry, (), w.runs[0].ctx, w.runs[0].tail_call_cnt),)
            )
        ),
    ),
    st.integers(0, 2**32),
)
def test_batch_flags_exactly_the_cases_the_oracle_calls_divergent(w, seed):
    cases = cases_for(w, 12, seed)
    if predict(w)[0].load != "ok":
        return
    flagged = set(judge_batch(w, cases, jit_old.CODEGEN, jit_new.CODEGEN).flagged.tolist())
    for i, row in enumerate(cases):
        j = judge(case_world(w, row))
        assert j.verdict.diverges == (i in flagged), (i, row)
        if j.verdict.diverges:
            assert classify(j, jit_new.CODEGEN).status is Status.KNOWN, j.verdict


@pytest.mark.parametrize("n", [1, 1000])
def test_batch_sizes(n):
    w = static_world(max_entries=3, slots={1: 1}, keys=(0,))
    cases = plain_cases([[i % 5] for i in range(n)])
    r = Batch(w, jit_new.CODEGEN).run(cases)
    expected = [FALL_THROUGH + (1 if i % 5 == 1 else 0) for i in range(n)]
    assert [int(x) for x in r.regs[:, 0]] == expected


def test_the_targets_early_stop_of_a_triage_keeps_the_first_diverging_case():
    """`enough` (the fuzz target: every diverging case so far is a finding already recorded) stops the
    per-case triage; what it returns is the full triage's first diverging case."""
    from pathlib import Path

    from tcfuzz.triage.artifacts import read_document
    from tcfuzz.verdict.replay import orders_of, triage_batch

    w = read_document(Path(__file__).resolve().parent.parent / "corpus" / "findings" / "shared-label.json").world
    cases = random_cases(w, 512, np.random.default_rng(1))
    full = triage_batch(w, cases, jit_old.CODEGEN, jit_new.CODEGEN, orders_of("jit"))
    asked = []
    short = triage_batch(
        w, cases, jit_old.CODEGEN, jit_new.CODEGEN, orders_of("jit"), lambda found: asked.append(len(found)) or True
    )
    assert len(full.found) > 1 and asked == [1] and len(short.found) == 1
    first, short_first = full.found[0], short.found[0]
    assert (short_first.case, short_first.outcome.verdict.signature) == (first.case, first.outcome.verdict.signature)
    assert (short.pick, short.flagged, short.judged) == (0, full.flagged, full.judged) and full.pick == 0


def test_a_world_loaded_after_others_leaves_the_machine_as_a_fresh_engine_does():
    """Guest memory is laid once: code a later world does not write again is filled, identical code
    is kept, and the bytes of the JIT region and kernel text equal a fresh engine's. The code is
    written into host memory behind unicorn, so the runs must also see it: no stale translation of
    an earlier world's code, and the same observations as on a fresh engine."""
    import random

    from tcfuzz.gen.worlds import decode
    from tcfuzz.machine.engine import JIT_SIZE, KTEXT_SIZE, Engine
    from tcfuzz.model.layout import JIT_BASE, KTEXT_BASE

    rng = random.Random(5)
    used = Engine()
    stream = [decode(rng.randbytes(rng.randrange(20, 200))) for _ in range(12)]
    for w in stream:
        for codegen in (jit_old.CODEGEN, jit_new.CODEGEN):
            seen = execute(w, codegen, used)
            fresh = Engine()
            assert seen == execute(w, codegen, fresh), (w, codegen.name)
            for base, size in ((JIT_BASE, JIT_SIZE), (KTEXT_BASE, KTEXT_SIZE)):
                assert used.uc.mem_read(base, size) == fresh.uc.mem_read(base, size), (w, codegen.name)


def test_subtract_keeps_what_the_cuts_leave():
    from tcfuzz.machine.engine import _subtract

    assert _subtract([(0, 10), (20, 30)], [(2, 4), (8, 22), (29, 40)]) == [(0, 2), (4, 8), (22, 29)]
    assert _subtract([(0, 10)], []) == [(0, 10)]
    assert _subtract([(0, 10)], [(0, 10)]) == []


def test_a_batch_reports_the_outcome_classes_its_cases_reached():
    """What the fuzzer's feedback sees of an agreeing batch: programs run, count at the limit, a fault."""
    w = world(
        [{"id": 0, "max_entries": 4, "slots": {"0": 0, "1": 1}}], [{"id": 0, "sites": [{"maps": [0]}]}, {"id": 1}], [{"entry": 0}]
    )
    j = judge_batch(w, plain_cases([[0], [5], [1], [1]]), jit_old.CODEGEN, jit_new.CODEGEN)
    assert list(j.flagged) == []
    assert j.outcomes == ((1, False, False), (2, False, False), (34, True, False))  # out of range, one call, self to the limit


def test_a_batch_run_in_chunks_gives_what_one_table_gives(monkeypatch):
    """Batch.run sends the table CHUNK cases at a time: same results, and `max_faults` stops at the
    same case across chunk boundaries."""
    from tcfuzz.machine import batch

    w = world(
        [{"id": 0, "max_entries": 2**32 - 1, "slots": {"0": 1, "1": 1}}],
        [{"id": 0, "sites": [{"maps": [0]}]}, {"id": 1}],
        [{"entry": 0}],
    )
    cases = plain_cases([[k] for k in (5, 1, 6, 1, 5, 0, 1)])
    whole = [Batch(w, jit_new.CODEGEN).run(cases, limit) for limit in (None, 2)]
    monkeypatch.setattr(batch, "CHUNK", 2)
    chunked = [Batch(w, jit_new.CODEGEN).run(cases, limit) for limit in (None, 2)]
    assert [len(r.faulted) for r in chunked] == [7, 4]  # the second fault is case 3, in the second chunk
    for a, b in zip(whole, chunked, strict=True):
        for field in ("regs", "runs", "counters", "faulted"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), field


class NeverLimited(jit_new.PatchedCodegen):
    """The patch with MAX_TAIL_CALL_CNT read as -1 (imm8 0xff, sign-extended): `jae` never stops a
    tail call, so a program that tail-calls itself loops until the instruction budget runs out."""

    name = "never-limited"

    class jit_class(jit_new.PatchedCodegen.jit_class):  # type: ignore[name-defined]
        def emit_tail_call(self, p, prog, insn, ip, callee_regs_used, stack_depth, ctx):
            from tcfuzz.selftest.mutants import rewrite_instr, set_byte

            first = len(p.instrs)
            super().emit_tail_call(p, prog, insn, ip, callee_regs_used, stack_depth, ctx)
            rewrite_instr(p, first, "cmp qword ptr [rax], <MAX_TAIL_CALL_CNT>", set_byte(3, 0xFF))


@settings(max_examples=15, deadline=None)
@given(batch_worlds(), st.integers(0, 2**32))
def test_an_instruction_budget_that_runs_out_mid_case_changes_no_result(w, seed):
    """Each emu_start's budget covers at most BUDGET_CASES cases; where it runs out after other cases
    finished, the case it stopped in re-runs from its start. One case per budget gives what a budget
    for the whole table gives, for the real codegens and for one whose cases loop."""
    from tcfuzz.machine import batch

    cases = cases_for(w, 40, seed)
    home = model_batch(w, cases).home  # the one counter slot a case's outcome includes (the others hold
    rows = np.arange(len(cases))  # whatever the engine's last writer left there)
    for codegen in (jit_old.CODEGEN, jit_new.CODEGEN, NeverLimited()):
        results = []
        for budget_cases in (1, 10**9):
            with pytest.MonkeyPatch.context() as m:
                m.setattr(batch, "BUDGET_CASES", budget_cases)
                results.append(Batch(w, codegen).run(cases))
        for field in ("regs", "runs", "faulted"):
            assert np.array_equal(getattr(results[0], field), getattr(results[1], field)), (codegen.name, field)
        a, b = (r.counters[rows, home] for r in results)
        assert np.array_equal(a, b), codegen.name


def test_a_case_that_loops_is_marked_and_the_cases_after_it_run():
    w = static_world(max_entries=4, slots={0: 0}, keys=(0,))  # program 0 tail-calls itself at key 0
    keys, counts = [0, 1, 0, 5, 0, 2] * 50, [None, None, 33, None, 0, 32] * 50
    cases = plain_cases([[k] for k in keys], counts)
    legacy = Batch(w, jit_old.CODEGEN).run(cases)
    looping = Batch(w, NeverLimited()).run(cases)
    loops = np.array([k == 0 for k in keys])  # even entered at the limit: NeverLimited has none
    assert not legacy.faulted.any()
    assert np.array_equal(looping.faulted, loops)
    assert np.array_equal(looping.regs[~loops], legacy.regs[~loops])


@pytest.mark.parametrize("codegen", [jit_old.CODEGEN, jit_new.CODEGEN], ids=["legacy", "patched"])
def test_a_budget_that_stops_the_driver_anywhere_restarts_the_case_cleanly(codegen, monkeypatch):
    """Budgets of k instructions, for every k from the longest case's length to three times it: each
    emu_start finishes a case and stops k - (its length) instructions into the next one, so the sweep
    stops the driver at every instruction of a case (its slot and cache writes, the landing, the
    restore, the commit). Every table gives what one uninterrupted run gives."""
    from tcfuzz.machine import batch
    from tcfuzz.machine.batch import SCRATCH, inputs_of

    w = world(
        [{"id": 0, "max_entries": 5, "slots": {"0": 1, "2": 0, "4": 2}}],
        [{"id": 0, "stack_depth": 24, "sites": [{"maps": [0]}]}, {"id": 1, "sites": [{"maps": [0]}]}, {"id": 2}],
        [{"entry": 0}],
    )
    cases = cases_for(w, 8, 2)
    assert (cases[:, inputs_of(w).slot_col] != SCRATCH).any()  # some cases write a slot (and its cache)
    b = Batch(w, codegen)
    whole = b.run(cases)
    monkeypatch.setattr(batch, "BUDGET_CASES", 1)

    def run(k, table):
        monkeypatch.setattr(batch, "INSNS_PER_CASE", k)
        return b.run(table)

    def same(a, r, rows=slice(None)):
        return all(np.array_equal(getattr(a, f)[rows], getattr(r, f)) for f in ("regs", "runs", "faulted"))

    # the longest case: the least budget each case needs to give, alone, what it gives in the whole run
    longest = max(
        next(k for k in range(1, 5000) if same(whole, run(k, cases[i : i + 1]), slice(i, i + 1))) for i in range(len(cases))
    )
    assert longest > 40
    assert run(longest - 1, cases).faulted.any()  # below it, a case is taken for a loop
    for k in range(longest, 3 * longest):
        assert same(whole, run(k, cases)), k
