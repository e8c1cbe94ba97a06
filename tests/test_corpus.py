"""Replay of the regression corpus: one test id per entry, each against its expected verdict.

TCFUZZ_CORPUS points elsewhere (used by the self-test below)."""

import os
from pathlib import Path

import pytest

from tcfuzz.triage.artifacts import read_document
from tcfuzz.verdict.oracle import judge

CORPUS = Path(os.environ.get("TCFUZZ_CORPUS", Path(__file__).resolve().parent.parent / "corpus"))
ENTRIES = sorted(CORPUS.rglob("*.json"))


@pytest.mark.parametrize("path", ENTRIES, ids=[str(p.relative_to(CORPUS)) for p in ENTRIES])
def test_corpus_entry(path):
    doc = read_document(path)
    assert doc.kind == "corpus", f"{path} is a {doc.kind}, not a corpus entry (use `tcfuzz corpus add`)"
    expected_kind, expected_signature = doc.expected
    v = judge(doc.world).verdict
    assert v.kind is expected_kind, f"{doc.data['purpose']}: expected {expected_kind.value}, got {v.signature or v.kind.value}"
    if expected_signature is not None:
        assert v.signature == expected_signature


def test_the_corpus_is_not_empty():
    if "TCFUZZ_CORPUS" not in os.environ:
        groups = {p.parent.name for p in ENTRIES}
        assert {"kernel", "edges", "findings"} <= groups and len(ENTRIES) >= 20


def test_a_stale_expectation_fails_its_own_id(pytester, tmp_path):
    corpus = tmp_path / "corpus" / "g"
    corpus.mkdir(parents=True)
    good = (CORPUS / "kernel" / "tailcall-3-limit-33.json").read_text()
    (corpus / "still-agrees.json").write_text(good)
    (corpus / "stale.json").write_text(good.replace('"verdict": "AGREE"', '"verdict": "NEW_DIVERGES"'))
    pytester.makepyfile(test_replay=Path(__file__).read_text())
    os.environ["TCFUZZ_CORPUS"] = str(tmp_path / "corpus")
    try:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "test_corpus_entry")
    finally:
        del os.environ["TCFUZZ_CORPUS"]
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*expected NEW_DIVERGES, got AGREE*", "FAILED test_replay.py::test_corpus_entry?g/stale.json? - *"]
    )
