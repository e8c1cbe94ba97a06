"""`tcfuzz run WORLD.json`: the three outcomes, the verdict, and the exit status a script relies on."""

import json
from pathlib import Path

import pytest

from tcfuzz.cli.main import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(capsys, *argv):
    status = main(["run", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("name", ["self-call.json", "direct-update-delete.json"])
def test_agreeing_worlds_exit_0(capsys, name):
    status, out, err = run(capsys, EXAMPLES / name)
    assert status == 0 and err == ""
    for voter in ("legacy", "patched", "model"):
        assert out.count(f"  {voter} ") >= 1
    assert out.rstrip().endswith("verdict AGREE")


def test_self_call_output_shows_the_chain(capsys):
    _, out, _ = run(capsys, EXAMPLES / "self-call.json")
    assert "trace 0 x34  fell through in prog 0  tail_call_cnt 33" in out


@pytest.mark.parametrize(
    "name, signature",
    [
        ("shared-label.json", "NEW_DIVERGES/fault/unmapped@inside `mov <dst>, qword ptr [<src> + <off>]`"),
        ("u32-max-entries.json", "NEW_DIVERGES/fault/wild_jump@jmp rcx -> struct bpf_prog +<addr>"),
    ],
)
def test_findings_exit_1_with_verdict_and_signature(capsys, name, signature):
    status, out, _ = run(capsys, EXAMPLES / name)
    assert status == 1
    assert "verdict NEW_DIVERGES at run 0: first difference in `fault`" in out
    cause = "shared-label" if name.startswith("shared") else "disp-wrap"
    assert out.rstrip().endswith(f"signature {signature}\ncause {cause}: repaired codegen agrees")


def test_json_output(capsys):
    status, out, _ = run(capsys, EXAMPLES / "u32-max-entries.json", "--json")
    d = json.loads(out)
    assert status == 1 and d["verdict"] == "NEW_DIVERGES" and d["field"] == "fault"
    assert d["values"]["legacy"] is None and d["values"]["patched"]["kind"] == "wild_jump"
    assert [o["trace"] for o in d["observations"]["model"]] == [[0, 1]]


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "is a directory, not a file"),
        ("", "empty file"),
        ('{"schema": "tcfuzz-world/1",', "invalid JSON at line 1 column 29: Expecting property name enclosed in double quotes"),
        (
            '{"schema": "tcfuzz-world/2", "profile": "default", "maps": [], "programs": [], "runs": []}',
            "schema: 'tcfuzz-world/2' is not one of tcfuzz-world/1, tcfuzz-artifact/1, tcfuzz-corpus/1",
        ),
        ("[]", "expected a JSON object, got list"),
    ],
)
def test_unusable_input_is_one_line_and_exit_2(capsys, tmp_path, content, message):
    path = tmp_path
    if content is not None:
        path = tmp_path / "w.json"
        path.write_text(content)
    before = sorted(tmp_path.iterdir())
    status, out, err = run(capsys, path)
    assert status == 2 and out == ""
    assert err == f"tcfuzz run: error: {path}: {message}\n"
    assert sorted(tmp_path.iterdir()) == before


def test_missing_file(capsys, tmp_path):
    status, _, err = run(capsys, tmp_path / "nope.json")
    assert status == 2 and err == f"tcfuzz run: error: {tmp_path / 'nope.json'}: No such file or directory\n"


def test_interpreter_order_is_selectable(capsys, tmp_path):
    world = json.loads((EXAMPLES / "self-call.json").read_text())
    world["maps"][0] = {"id": 0, "max_entries": 2, "slots": {"0": 0}}
    world["programs"][0]["sites"] = [{"maps": [0], "key": 1}, {"maps": [0], "key": 0}]
    (tmp_path / "w.json").write_text(json.dumps(world))
    assert run(capsys, tmp_path / "w.json")[0] == 0
    status, out, _ = run(capsys, tmp_path / "w.json", "--model-order", "interpreter")
    assert status == 1 and "verdict JITS_AGREE_MODEL_DIFFERS at run 0: first difference in `trace`" in out
