import json

from tcfuzz.cli.main import main


def test_disasm_side_by_side_shows_both_sequences(capsys):
    assert main(["disasm", "--kind", "static", "--max-entries", "8"]) == 0
    out = capsys.readouterr().out
    assert "cmp dword ptr [rsi + 0x44], edx" in out and "cmp edx, 8" in out
    assert "jbe" in out and "jae" in out and "<out>" in out


def test_disasm_json_is_machine_readable(capsys):
    assert main(["disasm", "--kind", "static,dynamic", "--profile", "ibt", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["profile"]["ibt"] is True
    assert [s["length"] for s in doc["old"]["sites"]] == [49, 49]
    assert [s["length"] for s in doc["new"]["sites"]] == [44, 49]
    assert doc["new"]["imm"] == ["0x00000001", "0x00000101"]
    first = doc["new"]["instructions"][1]
    assert first["bytes"].startswith("81 fa") and first["emitter"] == "cmp edx, <max_entries>"
    assert any("<out+5>" in ins["insn"] for ins in doc["new"]["instructions"])


def test_disasm_whole_image(capsys):
    assert main(["disasm", "--whole", "--kind", "direct"]) == 0
    out = capsys.readouterr().out
    assert "xor rax, rax" in out and "leave" in out and "ret" in out


def test_disasm_bad_input_is_one_line_and_exit_2(capsys):
    assert main(["disasm", "--kind", "direct", "--key", "9", "--max-entries", "4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "key 9" in err
    assert main(["disasm", "--profile", "nope"]) == 2
    assert "unknown profile" in capsys.readouterr().err


def test_a_sample_the_kernel_would_refuse_is_one_line_exit_2(capsys):
    """A sample is a world: an unpriv map whose rounded size leaves u32 fails map creation (-E2BIG)."""
    from tcfuzz.cli.main import main

    assert main(["disasm", "--kind", "static", "--unpriv", "--max-entries", "0xffffffff"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rounds past u32 for an unpriv map (-E2BIG)" in err
