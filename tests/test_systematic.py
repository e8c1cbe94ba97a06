"""`tcfuzz mutants --systematic`: the mutation families are complete for the emitted sequences, each
mutation keeps instruction lengths, and a sampled subset (the full run is a command: nightly) is
killed from an empty corpus or proven equivalent."""

import json

import pytest

from tcfuzz.analysis.prove import COUNTER_BOUNDED, Claim, Config, prove, site_sequence
from tcfuzz.cli.main import main
from tcfuzz.model.profile import PRESETS
from tcfuzz.selftest.systematic import (
    CONDITIONS,
    KNOWN_SURVIVORS,
    LEGACY,
    PATCH,
    USED_MAPS_PRECONDITION,
    all_mutations,
    byte_edits,
    emitted_lines,
    equivalence,
)


def test_every_emitted_line_is_mutated_and_lengths_are_kept():
    lines = emitted_lines()
    ids = [m.id for m in all_mutations()]
    assert len(ids) == len(set(ids))
    for data, asm in lines.values():
        edits = byte_edits(data)
        assert any(name == "drop" for name, _ in edits), asm
        for name, edit in edits:
            assert len(edit(data)) == len(data) and edit(data) != data, (asm, name)
        if 0x70 <= data[0] <= 0x7F:
            assert sum(name.startswith("j") for name, _ in edits) == len(CONDITIONS) - 1
    asms = {asm for _, asm in lines.values()}
    assert {"jae <out>", "je <out>", "mov rcx, qword ptr [rsi + rdx*8 + <offset>]", "add qword ptr [rax], 1"} <= asms
    families = {m.id.split("/")[0] for m in all_mutations()}
    assert families == {"emit", "decode", "cache", "poke"}


def test_a_sample_is_killed_or_proven_equivalent(capsys):
    # bounded by inputs, not seconds, so a loaded machine gives the same answer
    argv = ["mutants", "--systematic", "--sample", "6", "--seed", "2", "--budget", "600", "--max-inputs", "60"]
    status = main([*argv, "--json", "--prove-quick"])
    d = json.loads(capsys.readouterr().out)
    assert d["total"] == 6 and {m["id"].split("/")[0] for m in d["mutations"]} == {"emit", "decode", "cache", "poke"}
    for m in d["mutations"]:  # a survivor must be a known one (README: the systematic score), with prove's word
        assert m["killed"] or m["proof"] == "equivalent" or m["id"] in KNOWN_SURVIVORS, m
        assert m["killed"] or m["proof"]
    assert status == (0 if all(m["killed"] or m["proof"] == "equivalent" for m in d["mutations"]) else 1)


def _mutation(mid):
    return next(m for m in all_mutations() if m.id == mid)


@pytest.mark.parametrize("kind", ["dynamic", "direct"])
@pytest.mark.parametrize("cc", ["je", "jge", "jns"])
def test_counter_check_mutants_are_equivalent_under_counter_at_most_max(kind, cc):
    """`jae` -> je/jge/jns differs only for a count above MAX_TAIL_CALL_CNT, which the kernel never
    holds: proven with counter-at-most-max, whose necessity is the counterexample without it."""
    mutant = _mutation(f"emit/jit_old/tail_call.py:29 `jae <out>`/jae->{cc}").codegen
    r = prove(Config("default", kind, 0, "none"), LEGACY, mutant, show_necessary=False)
    assert r.proven and r.preconditions == [COUNTER_BOUNDED]
    assert r.necessary[COUNTER_BOUNDED]["count"] > PRESETS["default"].max_tail_call_cnt
    # the induction step is checked on the reference: a sequence that counts past MAX does not keep it
    limit34 = _mutation("emit/jit_old/tail_call.py:27 `cmp qword ptr [rax], <MAX_TAIL_CALL_CNT>`/imm+1").codegen
    claim = Claim(Config("default", kind, 0, "none"))
    assert claim.keeps_counter_bounded(claim.outcomes(LEGACY), [])
    assert not claim.keeps_counter_bounded(claim.outcomes(limit34), [])
    assert not prove(Config("default", kind, 0, "none"), LEGACY, limit34, show_necessary=False).proven


def test_prove_kills_a_fuzz_survivor_whose_counterexample_replays():
    proof, kill = equivalence(_mutation("poke/delete without the target poke").codegen, quick=True)
    assert kill is not None and "poke_busy" in kill[1], proof  # the next update finds the stale jump: BUG_ON


def test_a_decode_mutant_with_the_patch_bytes_at_every_map_index_is_equivalent(monkeypatch):
    mutant = _mutation("decode/dynamic shifted -1").codegen
    proof, kill = equivalence(mutant, quick=True, family="decode")
    assert kill is None and proof.startswith("equivalent") and USED_MAPS_PRECONDITION in proof
    # beyond MAX_USED_MAPS (a kernel with 256 used maps) the bytes differ at map index 128: the precondition is
    # what the byte-identity argument needs; there it emits the dynamic sequence, which prove proves
    monkeypatch.setitem(PRESETS, "default", PRESETS["default"].replace(max_used_maps=256))
    cfg = Config("default", "static", 0, "none", map_index=128)
    assert site_sequence(mutant, cfg)[0].code != site_sequence(PATCH, cfg)[0].code
    assert prove(cfg, LEGACY, mutant, show_necessary=False).proven
