"""The verdict policy (fuzz/verdict/policy.py): causes proved by replay under the repaired codegen,
declared by the codegen under test only; and the findings it leads to, replayed as found."""

import json
import multiprocessing
from pathlib import Path

import pytest
from conftest import world

from tcfuzz import jit_new, jit_old
from tcfuzz.cli.main import main
from tcfuzz.codegens import for_arch, load_codegen
from tcfuzz.frontends.summary import junit
from tcfuzz.selftest.mutants import BOUND_CHECK_JA, LEGACY_BOUND_CHECK_JB
from tcfuzz.triage.artifacts import read_document, write_artifact
from tcfuzz.verdict.oracle import judge
from tcfuzz.verdict.policy import Status, classify, declared_causes, fails_run, repaired

ROOT = Path(__file__).resolve().parent.parent
FINDINGS = sorted((ROOT / "corpus" / "findings").glob("*.json"))
TWO_SITE = world(
    [{"id": 0, "max_entries": 4, "slots": {"0": 1}}, {"id": 1, "max_entries": 4, "slots": {"0": 1}}],
    [{"id": 0, "sites": [{"maps": [0]}, {"maps": [0, 1]}]}, {"id": 1}],
    [{"entry": 0, "tail_call_cnt": 33, "ctx": [{"prog": 0, "site": 0, "key": 0}, {"prog": 0, "site": 1, "key": 0}]}],
)


def cli(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("path", FINDINGS, ids=[p.stem for p in FINDINGS])
def test_the_patchs_findings_are_attributed_by_a_replay_under_the_repaired_codegen(path):
    w = read_document(path).world
    j = judge(w)
    outcome = classify(j, jit_new.CODEGEN)
    expected = "shared-label" if path.stem.startswith("shared-label") else "disp-wrap"
    assert outcome.status is Status.KNOWN and outcome.causes == (expected,)
    patched = for_arch(jit_new.CODEGEN, w.profile.arch)  # arm64 worlds run the patch's arm64 back end
    cause = next(c for c in declared_causes(patched) if c.name == expected)
    assert not judge(w, new=repaired(patched, (cause,))).verdict.diverges  # the proof itself
    for other in (c for c in declared_causes(patched) if c.name != expected):
        assert judge(w, new=repaired(patched, (other,))).verdict.diverges  # another repair does not do it
    assert outcome.attribution == f"cause {expected}: repaired codegen agrees"


def test_causes_belong_to_the_codegen_that_declares_them():
    assert [c.name for c in declared_causes(jit_new.CODEGEN)] == ["shared-label", "disp-wrap"]
    assert declared_causes(jit_old.CODEGEN) == () and declared_causes(BOUND_CHECK_JA) == ()  # a subclass inherits none
    assert declared_causes(load_codegen("tests/planted.py:TWO_SITE_OFF_BY_ONE"))  # a plugin declares its own
    shared = read_document(ROOT / "corpus" / "findings" / "shared-label.json").world
    assert classify(judge(shared, new=BOUND_CHECK_JA), BOUND_CHECK_JA).status is Status.UNEXPLAINED


def test_old_diverges_never_has_a_cause():
    shared = read_document(ROOT / "corpus" / "findings" / "shared-label.json").world
    for w in (shared, TWO_SITE):
        j = judge(w, old=LEGACY_BOUND_CHECK_JB)
        if j.verdict.kind.value == "OLD_DIVERGES":
            assert classify(j, jit_new.CODEGEN).status is Status.UNEXPLAINED
    j = judge(read_document(ROOT / "corpus" / "kernel" / "tailcall-out-of-range.json").world, old=LEGACY_BOUND_CHECK_JB)
    assert j.verdict.kind.value == "OLD_DIVERGES" and classify(j, jit_new.CODEGEN).causes == ()


def test_what_fails_a_run():
    assert not fails_run([], False) and not fails_run(["agree"], False)
    assert fails_run(["known"], False) and not fails_run(["known"], True)
    assert fails_run(["unexplained"], True) and fails_run(["known", "unexplained"], True)


def test_junit_lists_known_causes_as_skipped_when_they_do_not_fail_the_run():
    finding = {
        "signature": "NEW_DIVERGES/fault/x",
        "model_order": "jit",
        "status": "known",
        "causes": ["shared-label"],
        "attribution": "cause shared-label: repaired codegen agrees",
        "count": 3,
        "artifacts": ["crash-1.json"],
    }
    summary = {
        "cases": 10,
        "findings": [finding],
        "engine_crashes": [],
        "status": "known-only",
        "interrupted_by": None,
        "this_run": {"elapsed": 1.0},
        "engine_exits": [0],
    }
    xml = junit({**summary, "ignore_known": True})
    assert 'failures="0"' in xml and 'skipped="1"' in xml and "cause shared-label: repaired codegen agrees" in xml
    assert 'failures="1"' in junit({**summary, "ignore_known": False})


def test_triage_reports_planted_bugs_as_unexplained_and_the_patchs_findings_as_known(capsys, tmp_path):
    d = tmp_path / "findings"
    for name, codegen in (("planted", "tests/planted.py:TWO_SITE_OFF_BY_ONE"), ("patch", "tcfuzz.jit_new:CODEGEN")):
        cg = load_codegen(codegen)
        j = judge(TWO_SITE if name == "planted" else read_document(FINDINGS[-1]).world, new=cg)
        write_artifact(d, j.world, j.verdict, prefix=f"{name}-", codegens={"old": "tcfuzz.jit_old:CODEGEN", "new": codegen})
    status, out, _ = cli(capsys, "triage", d, "--no-minimize", "--json")
    buckets = {b["status"]: b for b in json.loads(out)}
    assert status == 1 and set(buckets) == {"known", "unexplained"}
    assert buckets["unexplained"]["files"][0].endswith(".json") and "planted-" in buckets["unexplained"]["files"][0]
    assert buckets["known"]["attribution"] == "cause disp-wrap: repaired codegen agrees"


def test_an_artifact_replays_with_its_own_codegens_and_a_flag_overrides_them(capsys, tmp_path):
    w = read_document(ROOT / "corpus" / "kernel" / "tailcall-out-of-range.json").world
    j = judge(w, new=BOUND_CHECK_JA)
    assert j.verdict.diverges and not judge(w).verdict.diverges
    art = write_artifact(
        tmp_path, w, j.verdict, codegens={"old": "tcfuzz.jit_old:CODEGEN", "new": "tcfuzz.selftest.mutants:BOUND_CHECK_JA"}
    )
    for command in ("repro", "run"):
        status, out, _ = cli(capsys, command, art)
        assert status == 1 and j.verdict.signature in out
    status, out, _ = cli(capsys, "repro", art, "--new", "tcfuzz.jit_new:CODEGEN")
    assert status == 0 and "NOT as found" in out and "overridden by --new" in out
    status, out, _ = cli(capsys, "minimize", art)
    assert status == 0 and j.verdict.signature in out
    # corpus add: still diverging under its own codegens -> the entry expects what the corpus's give
    status, out, err = cli(capsys, "corpus", "add", art, "--corpus", tmp_path / "c", "--name", "a.json")
    assert status == 0 and "expects AGREE" in out and "diverges as found" in out
    # no longer diverging -> refused, unless told the expected verdict
    status, _, err = cli(
        capsys, "corpus", "add", art, "--corpus", tmp_path / "c", "--name", "b.json", "--new", "tcfuzz.jit_new:CODEGEN"
    )
    assert status == 2 and "no longer diverges" in err and not (tmp_path / "c" / "findings" / "b.json").exists()
    status, out, _ = cli(
        capsys,
        "corpus",
        "add",
        art,
        "--corpus",
        tmp_path / "c",
        "--name",
        "b.json",
        "--new",
        "tcfuzz.jit_new:CODEGEN",
        "--expect",
        "AGREE",
    )
    assert status == 0 and (tmp_path / "c" / "findings" / "b.json").exists()


def _write_many(directory: str, n: int) -> int:
    w = read_document(ROOT / "examples" / "shared-label.json").world
    v = judge(w).verdict
    for _ in range(n):
        write_artifact(Path(directory), w, v, raw=b"same finding")
    return n


def test_two_processes_writing_the_same_finding_300_times_see_no_error(tmp_path):
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        assert pool.starmap(_write_many, [(str(tmp_path), 300)] * 2) == [300, 300]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and names[1] == names[0] + ".json"
    assert json.loads((tmp_path / names[1]).read_text())["input"] == names[0]


def test_an_attribution_is_replayed_once_per_world_and_code(monkeypatch):
    """A cached attribution is a real replay's result for the same world under codegens running the
    same code: the second classification of a world replays nothing; same cause names with a repair
    that repairs nothing are another key, replayed, and attribute nothing."""
    import copy
    import dataclasses

    from tcfuzz.verdict import policy

    w = read_document(ROOT / "corpus" / "findings" / "shared-label.json").world
    monkeypatch.setattr(policy, "_ATTRIBUTIONS", type(policy._ATTRIBUTIONS)())
    replays = []
    real = policy.execute
    monkeypatch.setattr(policy, "execute", lambda *a: replays.append(1) or real(*a))
    first = classify(judge(w), jit_new.CODEGEN)
    assert first.causes == ("shared-label",) and replays
    n = len(replays)
    again = classify(judge(w), jit_new.CODEGEN)
    assert again.causes == first.causes and again.status is Status.KNOWN and len(replays) == n
    fake = copy.copy(jit_new.CODEGEN)
    fake.known_causes = tuple(dataclasses.replace(c, repair=lambda cg: copy.copy(cg)) for c in declared_causes(jit_new.CODEGEN))
    assert classify(judge(w, new=fake), fake).status is Status.UNEXPLAINED
    monkeypatch.setattr(policy, "ATTRIBUTION_CACHE", 0)
    assert classify(judge(w), jit_new.CODEGEN).causes == first.causes and len(replays) > n
