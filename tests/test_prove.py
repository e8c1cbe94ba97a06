"""`tcfuzz prove`: the matrix is proven for the built-in codegens, every precondition is necessary,
the disp32 boundary is exact, and planted bugs give counterexamples that replay as artifacts."""

import json

import pytest

from tcfuzz import jit_new, jit_old
from tcfuzz.analysis.prove import INT_MAX, Config, matrix, prove, replay
from tcfuzz.cli.main import main
from tcfuzz.model.profile import PRESETS
from tcfuzz.triage.artifacts import read_document


@pytest.mark.parametrize("cfg", matrix(quick=True), ids=lambda c: c.name)
def test_quick_matrix_is_proven(cfg):
    r = prove(cfg, jit_old.CODEGEN, jit_new.CODEGEN, show_necessary=False)
    assert r.proven, r.counterexample
    expected = ["baked-max-entries", "cached-target", "disp-fits-int", "entry-not-null", "counter-not-prog"]
    assert r.preconditions == (expected if cfg.kind == "static" else [])


@pytest.mark.parametrize("profile", ["default", "no-security"])
def test_every_precondition_is_necessary_and_the_boundary_is_exact(profile):
    r = prove(Config(profile, "static", 8, "some"), jit_old.CODEGEN, jit_new.CODEGEN)
    assert r.proven
    assert all(values is not None for values in r.necessary.values()), r.necessary
    limit = (INT_MAX - PRESETS[profile].ptrs_off) // 8  # largest ME with ptrs_off + 8 ME <= INT_MAX
    assert r.boundary["max_entries_max"] == limit and r.boundary["proven_at_max"]
    over = r.boundary["counterexample_at_max_plus_1"]
    assert over["max_entries"] == limit + 1
    world, verdict = replay(r.config, over, jit_old.CODEGEN, jit_new.CODEGEN)
    assert verdict.kind.value == "NEW_DIVERGES" and world.maps[0].max_entries == limit + 1


def test_cli_proves_and_reports(capsys):
    assert main(["prove", "--quick", "--profile", "default", "--kind", "dynamic,direct", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert {r["result"] for r in d["results"]} == {"PROVEN"} and len(d["results"]) == 8


def test_planted_bug_counterexamples_become_artifacts(capsys, tmp_path):
    status = main(
        [
            "prove",
            "--profile",
            "default",
            "--kind",
            "static",
            "--quick",
            "--new",
            "tcfuzz.selftest.mutants:BOUND_CHECK_JA",
            "--artifacts",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert status == 1 and "COUNTEREXAMPLE" in out and "DID NOT REPRODUCE" not in out
    artifacts = sorted(tmp_path.glob("prove-*.json"))
    assert artifacts
    for path in artifacts:
        doc = read_document(path)
        assert doc.kind == "artifact" and doc.data["verdict"] == "NEW_DIVERGES"
        assert doc.data["codegens"]["new"] == "tcfuzz.selftest.mutants:BOUND_CHECK_JA"
        assert main(["repro", str(path), "--new", "tcfuzz.selftest.mutants:BOUND_CHECK_JA"]) == 1
    capsys.readouterr()
