"""Crash triage: artifacts, repro, minimize, triage, corpus add — and bad input handled without loss."""

import json
import os
from pathlib import Path

import pytest

from tcfuzz.cli.main import main
from tcfuzz.triage.artifacts import ARTIFACT_SCHEMA, atomic_write, read_document, write_artifact
from tcfuzz.triage.repro import size
from tcfuzz.verdict.oracle import judge

ROOT = Path(__file__).resolve().parent.parent
SHARED_LABEL = ROOT / "examples" / "shared-label.json"


def cli(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def snapshot(directory):
    return {p: p.read_bytes() for p in sorted(Path(directory).rglob("*")) if p.is_file()}


@pytest.fixture
def artifact(tmp_path):
    world = read_document(SHARED_LABEL).world
    return write_artifact(tmp_path / "out", world, judge(world).verdict, raw=b"\x01\x02", seed=1234)


def test_artifact_sidecar_carries_what_a_reproduction_needs(artifact):
    d = json.loads(artifact.read_text())
    assert d["schema"] == ARTIFACT_SCHEMA and d["seed"] == 1234
    assert d["verdict"] == "NEW_DIVERGES" and d["field"] == "fault" and d["signature"].startswith("NEW_DIVERGES/")
    assert set(d["versions"]) == {"tcfuzz", "unicorn", "capstone", "python"}
    assert d["versions"]["unicorn"].startswith("2.1.")
    assert d["profile"]["name"] == "default" and d["world"]["schema"] == "tcfuzz-world/1"
    assert (artifact.parent / d["input"]).read_bytes() == b"\x01\x02"
    assert artifact.name == d["input"] + ".json" and d["input"].startswith("crash-")


def test_atomic_write_leaves_nothing_behind_when_interrupted(tmp_path, monkeypatch):
    def killed(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "crash-x.json", b"{}")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_never_overwrites(tmp_path):
    atomic_write(tmp_path / "a", b"first")
    with pytest.raises(FileExistsError):
        atomic_write(tmp_path / "a", b"second")
    assert (tmp_path / "a").read_bytes() == b"first" and len(list(tmp_path.iterdir())) == 1


def test_repro_of_a_divergent_artifact(capsys, artifact):
    status, out, err = cli(capsys, "repro", artifact)
    assert status == 1 and err == ""
    assert out.startswith("verdict NEW_DIVERGES at run 0: first difference in `fault`\n")
    assert "signature NEW_DIVERGES/fault/unmapped@inside `mov <dst>, qword ptr [<src> + <off>]`" in out
    assert "  patched  FAULT unmapped at 0x1" in out and "  legacy   trace 0  fell through in prog 0" in out
    assert "*fault" in out and "*ret" in out and " tail_call_cnt" in out
    marked = [line for line in out.splitlines() if " =>  " in line]
    assert len(marked) == 1 and "add byte ptr [rax], al" in marked[0]
    assert "cmp dword ptr [rsi + 0x44], edx" in out and "cmp edx, 4" in out


def test_repro_json_and_exit_0_when_it_agrees(capsys):
    status, out, _ = cli(capsys, "repro", ROOT / "corpus" / "kernel" / "tailcall-3-limit-33.json", "--json")
    d = json.loads(out)
    assert status == 0 and d["verdict"] == "AGREE" and d["observations"]["patched"][0]["tail_call_cnt"] == 33


BAD = {
    "truncated.json": ('{"schema": "tcfuzz-artifact/1", "world": {', "invalid JSON at line 1 column 43"),
    "version.json": ('{"schema": "tcfuzz-artifact/2"}', "schema: 'tcfuzz-artifact/2' is not one of"),
    "unknown.json": (None, "artifact: unknown field 'colour'"),
    "range.json": (None, "world.maps[0].max_entries: 0 is not a u32 >= 1"),
    "empty.json": ("", "empty file"),
}


def bad_files(tmp_path, artifact):
    good = json.loads(artifact.read_text())
    paths = {}
    for name, (text, message) in BAD.items():
        if name == "unknown.json":
            text = json.dumps({**good, "colour": "red"})
        if name == "range.json":
            good["world"]["maps"][0]["max_entries"] = 0
            text = json.dumps(good)
        paths[tmp_path / "bad" / name] = (text, message)
    (tmp_path / "bad").mkdir()
    for path, (text, _) in paths.items():
        path.write_text(text)
    paths[tmp_path / "bad"] = (None, "is a directory, not a file")
    return paths


@pytest.mark.parametrize("command", [["repro"], ["minimize"], ["corpus", "add", "--corpus", "CORPUS"], ["run"]])
def test_unusable_input_exits_2_with_one_line_and_writes_nothing(capsys, tmp_path, artifact, command):
    for path, (_, message) in bad_files(tmp_path, artifact).items():
        before = snapshot(tmp_path)
        argv = [str(tmp_path / "corpus") if a == "CORPUS" else a for a in command]
        status, out, err = cli(capsys, *argv, path)
        assert status == 2, (path, out, err)
        assert err.startswith(f"tcfuzz {command[0]}: error: {path}: ") and message in err and err.count("\n") == 1
        assert snapshot(tmp_path) == before


def bloated_shared_label(tmp_path):
    d = json.loads(SHARED_LABEL.read_text())
    d["profile"] = "ibt"
    d["maps"] += [{"id": 5, "kind": "filler", "max_entries": 9}, {"id": 6, "max_entries": 300, "slots": {"7": 1}}]
    d["programs"][0].update(stack_depth=100, callee_regs=[6, 8])
    d["programs"] += [{"id": 1, "sites": [{"maps": [6], "key": 7}]}, {"id": 2}]
    d["runs"] = [{"entry": 1}, {"entry": 2, "ops": [{"op": "delete", "map": 6, "index": 7}]}] + d["runs"]
    path = tmp_path / "bloated.json"
    path.write_text(json.dumps(d))
    return path


def test_minimize_keeps_the_signature_and_strictly_shrinks(capsys, tmp_path):
    path = bloated_shared_label(tmp_path)
    original = path.read_bytes()
    world = read_document(path).world
    signature = judge(world).verdict.signature
    status, out, _ = cli(capsys, "minimize", path)
    assert status == 0
    out_path = tmp_path / "bloated.min.json"
    assert out.startswith(f"{out_path}: {signature}")
    small = read_document(out_path)
    assert small.kind == "artifact" and small.data["signature"] == signature
    assert judge(small.world).verdict.signature == signature
    assert size(small.world) < size(world)
    assert len(small.world.programs) == 1 and len(small.world.runs) == 1 and len(small.world.maps) <= 2
    assert path.read_bytes() == original
    cli(capsys, "minimize", path)
    assert (tmp_path / "bloated.min-1.json").exists() and read_document(out_path).data == small.data


def test_minimize_refuses_an_agreeing_world(capsys, tmp_path):
    status, _, err = cli(capsys, "minimize", ROOT / "examples" / "self-call.json")
    assert status == 2 and "does not diverge; nothing to minimize" in err


def test_triage_groups_by_signature(capsys, tmp_path):
    findings = tmp_path / "findings"
    for name in ("shared-label.json", "u32-max-entries.json", "self-call.json"):
        world = read_document(ROOT / "examples" / name).world
        write_artifact(findings, world, judge(world).verdict)
    bloated = read_document(bloated_shared_label(tmp_path)).world
    write_artifact(findings, bloated, judge(bloated).verdict)
    status, out, _ = cli(capsys, "triage", findings)
    assert status == 1
    lines = out.splitlines()
    assert lines[0] == "3 diverging inputs, 2 unique signatures"
    assert lines[1].startswith("    2  NEW_DIVERGES/fault/unmapped@") and lines[3].startswith(
        "    1  NEW_DIVERGES/fault/wild_jump@"
    )
    assert lines[2].strip().startswith("representative: ") and lines[2].strip().endswith(".min.json")


def test_corpus_add_expects_the_current_verdict_and_never_overwrites(capsys, tmp_path):
    args = ["corpus", "add", SHARED_LABEL, "--corpus", tmp_path, "--group", "findings", "--purpose", "p"]
    status, out, _ = cli(capsys, *args)
    entry = tmp_path / "findings" / "shared-label.json"
    assert status == 0 and out.startswith(f"{entry}: expects NEW_DIVERGES NEW_DIVERGES/fault/")
    doc = read_document(entry)
    assert doc.kind == "corpus" and doc.data["purpose"] == "p" and doc.expected[0].value == "NEW_DIVERGES"
    before = entry.read_bytes()
    status, _, err = cli(capsys, *args)
    assert status == 2 and "exists; not overwriting it" in err and entry.read_bytes() == before


def test_a_corpus_entry_from_a_finding_is_about_as_short_as_the_hand_written_world(capsys, tmp_path):
    """corpus add writes the world as a person would (defaults omitted, preset by name, one record
    per line): the entry is the hand-written world's lines under a header (purpose, expectation)."""
    hand_written = Path(SHARED_LABEL).read_text().splitlines()
    cli(capsys, "corpus", "add", SHARED_LABEL, "--corpus", tmp_path, "--group", "findings", "--purpose", "p")
    entry = (tmp_path / "findings" / "shared-label.json").read_text().splitlines()
    world_part = entry[entry.index('  "world": {') :]
    # The hand-written runs line is 124 characters; tcfuzz wraps at 100 (two more lines), plus the
    # document's closing brace.
    assert len(world_part) <= len(hand_written) + 3
    assert len(entry) <= len(hand_written) + 10  # the header: schema, purpose, expectation


def test_repro_of_a_raw_fuzzer_input_decodes_it(capsys, tmp_path):
    from tcfuzz.gen.worlds import decode_input

    single, batch = tmp_path / "crash-single", tmp_path / "crash-batch"
    single.write_bytes(b"\x00" + bytes(range(1, 60)))  # mode 0: one world
    batch.write_bytes(b"\x01" + bytes(range(1, 60)))  # otherwise: a world and a batch
    for raw in (single, batch):
        status, out, _ = cli(capsys, "repro", raw, "--json")
        d = json.loads(out)
        assert status == (1 if d["verdict"] != "AGREE" else 0)
        world, cases = decode_input(raw.read_bytes())
        doc = read_document(raw)
        assert doc.kind == "raw" and doc.world == world
        assert (doc.cases is None) == (raw is single) and (cases is None) == (raw is single)
    status, out, _ = cli(capsys, "repro", batch)
    assert out.startswith("raw input: a batch of ")
    assert cli(capsys, "repro", tmp_path / "crash-missing")[0] == 2
