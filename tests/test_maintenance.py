"""Patch 1/4's cache maintenance and the text-poke path are codegen members: plugins inherit today's
behaviour, batches and map operations run the codegen's own maintenance, and `prove` proves it (or
gives a counterexample that replays) instead of assuming it."""

import numpy as np
import pytest

from tcfuzz import jit_new, jit_old
from tcfuzz.analysis.maintenance import prove_cache, prove_pokes, violation_world
from tcfuzz.analysis.prove import Config, prove, run_matrix
from tcfuzz.codegens import with_defaults
from tcfuzz.jit_new import PatchedCodegen
from tcfuzz.jit_new.jit import PatchedX86Jit
from tcfuzz.machine.batch import SCRATCH, case_world, inputs_of
from tcfuzz.model.interfaces import Codegen
from tcfuzz.model.layout import array_base, prog_struct
from tcfuzz.model.profile import PRESETS
from tcfuzz.model.world import World
from tcfuzz.selftest import mutants
from tcfuzz.verdict.batch_oracle import judge_batch
from tcfuzz.verdict.oracle import judge


def static_world(profile="default"):
    return World.from_json(
        {
            "schema": "tcfuzz-world/1",
            "profile": profile,
            "maps": [{"id": 0, "max_entries": 4, "slots": {"1": 1}}],
            "programs": [{"id": 0, "sites": [{"maps": [0]}]}, {"id": 1}],
            "runs": [{"entry": 0, "ctx": [{"prog": 0, "site": 0, "key": 1}]}],
        }
    )


def test_a_plugin_without_optional_members_gets_the_defaults():
    class Bare:  # what a developer's plugin may be: only the required members
        name, cached_targets = "bare", True
        fixup, jit = jit_new.CODEGEN.fixup, jit_new.CODEGEN.jit

    class OwnCache(Bare):
        def cached_target(self, bpf_func, old, profile):
            return 7

    bare, own = with_defaults(Bare()), with_defaults(OwnCache())
    assert isinstance(bare, Codegen) and bare.imm_codec is None and bare.cache_before_pokes
    assert bare.cache_slot(4, 4, 1) == 5 and bare.cached_target(0x1000, 0, PRESETS["ibt"]) == 0x1010
    assert own.cached_target(0x1000, 0, PRESETS["ibt"]) == 7 and own.cache_slot(4, 4, 1) == 5
    assert not judge(static_world(), new=bare).verdict.diverges


def test_batch_slot_writes_go_through_the_codegens_cache_maintenance():
    """A batch case that deletes slot 1 before calling with key 1: the stale cache jumps anyway."""
    w = static_world()
    col = len(inputs_of(w).ctx_offsets)
    ptrs = array_base(0) + w.profile.ptrs_off
    delete = [1, ptrs + 8, 0, 0, 0, 2**64 - 1]
    unchanged = [1, SCRATCH, 0, SCRATCH + 8, 0, 2**64 - 1]
    update = [1, ptrs + 8, prog_struct(1), 0, 0, 2**64 - 1]
    cases = np.array([unchanged, delete, update], dtype=np.uint64)
    assert list(judge_batch(w, cases, jit_old.CODEGEN, jit_new.CODEGEN).flagged) == []
    flagged = judge_batch(w, cases, jit_old.CODEGEN, mutants.STALE_CACHE_ON_DELETE).flagged
    assert list(flagged) == [1]
    replay = case_world(w, cases[1])
    assert replay.runs[0].ops[0].op == "delete" and cases[1][col] == ptrs + 8
    assert judge(replay, new=mutants.STALE_CACHE_ON_DELETE).verdict.kind.value == "NEW_DIVERGES"


def test_a_cache_write_past_the_allocation_is_a_verdict():
    class Overrun(PatchedCodegen):
        name = "overrun"

        def cache_slot(self, max_entries, alloc_entries, key):
            return max_entries + key + 1000

    v = judge(static_world(), new=Overrun()).verdict
    assert v.signature.startswith("NEW_DIVERGES/fault/out_of_allocation")


def test_the_default_maintenance_is_proved_on_every_profile():
    for name, profile in PRESETS.items():
        for codegen in (jit_old.CODEGEN, jit_new.CODEGEN):
            assert prove_cache(codegen, profile) is None, name
            assert prove_pokes(codegen, profile) is None, name


@pytest.mark.parametrize(
    "mutant,profile,direct",
    [
        (mutants.STALE_CACHE_ON_DELETE, "default", False),
        (mutants.CACHE_OFFSET_WITHOUT_ENDBR, "ibt", False),
        (mutants.CACHE_SLOT_ROUNDED, "default", False),
        (mutants.DELETE_KEEPS_BYPASS_NOP, "default", True),
    ],
    ids=lambda x: getattr(x, "name", x),
)
def test_maintenance_mutants_get_a_counterexample_that_replays(mutant, profile, direct):
    violation = (prove_pokes if direct else prove_cache)(mutant, PRESETS[profile])
    assert violation is not None
    verdict = judge(violation_world(violation, profile, direct), new=mutant).verdict
    assert verdict.kind.value == "NEW_DIVERGES"
    r = prove(Config(profile, "direct" if direct else "static", 0, "none"), jit_old.CODEGEN, mutant, show_necessary=False)
    assert not r.proven and r.violation is not None


def test_a_codegen_that_faults_while_jiting_is_a_verdict_in_prove():
    class FaultingJit(PatchedX86Jit):
        def emit_tail_call(self, p, prog, insn, ip, callee_regs_used, stack_depth, ctx):
            return super().emit_tail_call(p, prog, insn.with_imm(insn.imm | 0x7FFF0000), ip, callee_regs_used, stack_depth, ctx)

    faulting = type("Faulting", (PatchedCodegen,), {"name": "faulting", "jit_class": FaultingJit})()
    report = run_matrix([Config("default", "direct", 0, "none")], jit_old.CODEGEN, faulting)
    (r,) = report["results"]
    assert r.verdict == "JIT_FAULT" and "poke_tab" in r.jit_fault
    (replayed,) = report["replays"]
    assert replayed["reproduced"] and replayed["signature"].startswith("NEW_DIVERGES/load")


def test_a_map_index_decode_bug_is_seen_with_several_maps_in_used_maps():
    from tcfuzz.selftest.systematic import decode_mutations

    shifted = next(m.codegen for m in decode_mutations() if m.id == "decode/map_index shifted +1")
    assert prove(Config("default", "static", 0, "none"), jit_old.CODEGEN, shifted, show_necessary=False).proven
    report = run_matrix([Config("default", "static", 0, "none", map_index=2)], jit_old.CODEGEN, shifted)
    assert not report["results"][0].proven
    assert report["replays"] and all(e["reproduced"] for e in report["replays"])
