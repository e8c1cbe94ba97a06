"""`tcfuzz prove --arch arm64`: patch 3/4 against the legacy arm64 JIT. A few configurations are
proven here (the whole matrix is the command's: `tcfuzz prove --arch arm64`), every precondition is
necessary, the s32 offset boundary is exact symbolically and from the real bytes, and each planted
arm64 bug gives a counterexample that replays under Unicorn's arm64 engine."""

import json

import pytest

from tcfuzz import jit_new, jit_old
from tcfuzz.analysis.prove import INT_MAX, Config, matrix, prove, replay
from tcfuzz.cli.main import main
from tcfuzz.codegens import for_arch
from tcfuzz.model.profile import PRESETS
from tcfuzz.selftest import mutants_arm64

OLD, NEW = jit_old.CODEGEN, jit_new.CODEGEN  # prove takes each default codegen's arm64 twin
STATIC = ["baked-max-entries", "cached-target", "offset-fits-s32", "entry-not-null", "counter-not-prog"]


@pytest.mark.parametrize(
    "cfg",
    [
        Config("arm64", "dynamic", 0, "none"),
        Config("arm64-bti-pac", "direct", 0, "all"),
        Config("arm64-pac", "static", 8, "some"),
        Config("arm64-bti", "static", 0, "none", map_index=2),
    ],
    ids=lambda c: c.name,
)
def test_arm64_configurations_are_proven(cfg):
    r = prove(cfg, OLD, NEW, show_necessary=False)
    assert r.proven, (r.counterexample, r.not_lifted, r.jit_fault)
    # arm64 has no direct tail calls: a constant-key site is on the static path and needs the same five
    assert r.preconditions == ([] if cfg.kind == "dynamic" else STATIC)
    assert r.lemmas == ({} if cfg.kind == "dynamic" else {"cache-maintained": "proven"})


def test_the_matrix_covers_every_arm64_preset():
    full, quick = matrix(arch="arm64"), matrix(quick=True, arch="arm64")
    assert {c.profile for c in full} == {name for name, p in PRESETS.items() if p.arch == "arm64"}
    assert len(full) == 4 * 3 * 4 * 4 + 4 and len(quick) == 2 * 3 * 2 * 2 + 2
    assert all(PRESETS[c.profile].arch == "x86_64" for c in matrix())


def test_every_precondition_is_necessary_and_the_boundary_is_exact():
    r = prove(Config("arm64", "static", 0, "none"), OLD, NEW)
    assert r.proven
    assert set(r.necessary) == set(STATIC) and all(v is not None for v in r.necessary.values()), r.necessary
    b = r.boundary
    limit = (INT_MAX - PRESETS["arm64"].ptrs_off) // 8
    assert b["precondition"] == "offset-fits-s32" and b["max_entries_max"] == limit == 268_435_411
    assert b["proven_at_max"] and b["bytes_proven_at_max"] is True  # the MOVZ/MOVK + MOV/MOVK/ADD words
    for key in ("counterexample_at_max_plus_1", "bytes_counterexample_at_max_plus_1"):
        over = b[key]
        assert over["max_entries"] == limit + 1
        world, verdict = replay(r.config, over, OLD, NEW)
        assert world.profile.arch == "arm64" and world.maps[0].max_entries == limit + 1
        assert verdict.kind.value == "NEW_DIVERGES", verdict.signature  # (s64)(s32) of 2**31: below the array


@pytest.mark.parametrize(
    "mutant, cfg",
    [
        (mutants_arm64.ARM64_BOUND_CHECK_HI, Config("arm64", "static", 0, "none")),
        (mutants_arm64.ARM64_NO_ZERO_EXTENSION, Config("arm64-bti", "direct", 0, "none")),
        (mutants_arm64.ARM64_CACHE_INDEX_WITHOUT_MAX_ENTRIES, Config("arm64-pac", "static", 20, "all")),
        (mutants_arm64.ARM64_LEGACY_WRONG_PROLOGUE_OFFSET, Config("arm64-bti-pac", "dynamic", 0, "none")),
    ],
    ids=lambda x: x.name,
)
def test_planted_arm64_bugs_give_counterexamples_that_replay(mutant, cfg):
    legacy_mutant = mutant is mutants_arm64.ARM64_LEGACY_WRONG_PROLOGUE_OFFSET
    old, new = (mutant, NEW) if legacy_mutant else (OLD, mutant)
    r = prove(cfg, old, new, show_necessary=False)
    assert r.verdict == "COUNTEREXAMPLE"
    world, verdict = replay(cfg, r.counterexample, for_arch(old, "arm64"), for_arch(new, "arm64"))
    assert world.profile.arch == "arm64"
    assert verdict.kind.value == ("OLD_DIVERGES" if legacy_mutant else "NEW_DIVERGES"), verdict.signature


def test_cli_proves_arm64_and_refuses_mismatches(capsys):
    assert main(["prove", "--quick", "--profile", "arm64-bti-pac", "--kind", "dynamic", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert {r["result"] for r in d["results"]} == {"PROVEN"} and len(d["results"]) == 4
    for argv in (
        ["prove", "--arch", "arm64", "--profile", "default"],
        ["prove", "--arch", "arm64", "--new", "tcfuzz.selftest.mutants:BOUND_CHECK_JA"],
    ):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and len(err.strip().splitlines()) == 1
