"""`tcfuzz mutants --systematic`: the mutation families are complete for the emitted sequences, each
mutation keeps instruction lengths, and a sampled subset (the full run is a command: nightly) is
killed from an empty corpus or proven equivalent."""

import json

from tcfuzz.cli.main import main
from tcfuzz.selftest.systematic import CONDITIONS, KNOWN_SURVIVORS, all_mutations, byte_edits, emitted_lines


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
