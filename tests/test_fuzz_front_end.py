"""`tcfuzz fuzz` through the real path: the executable Atheris target under libFuzzer, a bounded run."""

import json
from pathlib import Path

from tcfuzz.cli.main import main, resolve_world
from tcfuzz.codegens import load_codegen
from tcfuzz.triage.artifacts import read_document
from tcfuzz.verdict.oracle import judge

TESTS = Path(__file__).resolve().parent


def test_bounded_run_with_a_planted_bug_leaves_well_formed_artifacts(tmp_path, capsys):
    art = tmp_path / "art"
    status = main(
        [
            "fuzz",
            "--corpus",
            str(tmp_path / "corpus"),
            "--artifacts",
            str(art),
            "--runs",
            "150",
            "--seed",
            "7",
            "--new",
            "tcfuzz.selftest.mutants:BOUND_CHECK_JA",
            "--ignore-known",
            "--",
            "-len_control=0",
            "-print_final_stats=0",
        ]
    )
    out = capsys.readouterr().out
    assert status == 1, out
    summary = json.loads((art / "summary.json").read_text())
    assert (
        summary["inputs"] == 150
        and summary["cases"] >= 150
        and summary["seed"] == 7
        and summary["codegens"]["new"] == "tcfuzz.selftest.mutants:BOUND_CHECK_JA"
    )
    unexplained = {s: e for s, e in summary["signatures"].items() if not e["known_causes"]}
    assert unexplained, summary["signatures"]
    voters = {"old": load_codegen("tcfuzz.jit_old:CODEGEN"), "new": load_codegen("tcfuzz.selftest.mutants:BOUND_CHECK_JA")}
    raws = 0
    for sig, e in summary["signatures"].items():
        sidecar = Path(e["artifacts"][0])
        doc = read_document(sidecar)
        assert doc.kind == "artifact" and doc.data["signature"] == sig and doc.data["seed"] == 7
        assert doc.data["codegens"]["new"] == "tcfuzz.selftest.mutants:BOUND_CHECK_JA"
        assert judge(doc.world, **voters).verdict.signature == sig  # the sidecar replays
        if doc.data["input"] is not None:  # the raw input replays
            raws += 1
            raw = sidecar.with_name(doc.data["input"])
            world, _ = resolve_world(read_document(raw), voters)
            assert judge(world, **voters).verdict.signature == sig
    assert raws
    assert not list(art.glob("*.tmp")) and not list(art.glob(".*.tmp"))
    junit = (art / "junit.xml").read_text()
    assert junit.startswith("<?xml") and f'failures="{len(summary["signatures"])}"' in junit
    assert "NEW" in out and "summary " in out


def test_bad_codegen_spec_is_a_usage_error(capsys, tmp_path):
    status = main(["fuzz", "--artifacts", str(tmp_path), "--new", "nowhere:THING", "--runs", "1"])
    assert status == 2 and "codegen 'nowhere:THING': cannot import nowhere" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_target_script_is_executable_for_fork_and_jobs():
    script = TESTS.parent / "fuzzers" / "tailcall_fuzzer.py"
    assert script.stat().st_mode & 0o111 and script.read_text().startswith("#!/usr/bin/env python3\n")


def test_bounded_arm64_run_finds_an_arm64_planted_bug(tmp_path, capsys):
    """`--arch arm64`: every generated world's arm64 twin, batches case by case (the batch driver is
    x86-64 code); an arm64 mutant is found and its sidecar replays."""
    art = tmp_path / "art"
    mutant = "tcfuzz.selftest.mutants_arm64:ARM64_BOUND_CHECK_HI"
    argv = ["fuzz", "--corpus", str(tmp_path / "c"), "--artifacts", str(art), "--runs", "12", "--seed", "3"]
    status = main([*argv, "--arch", "arm64", "--new", mutant, "--", "-len_control=0", "-print_final_stats=0"])
    out = capsys.readouterr().out
    assert status == 1, out
    summary = json.loads((art / "summary.json").read_text())
    assert summary["inputs"] == 12 and summary["cases"] >= 12
    voters = {"old": load_codegen("tcfuzz.jit_old:CODEGEN"), "new": load_codegen(mutant)}
    for sig, e in summary["signatures"].items():
        doc = read_document(Path(e["artifacts"][0]))
        assert doc.world.profile.arch == "arm64"
        assert judge(doc.world, **voters).verdict.signature == sig
