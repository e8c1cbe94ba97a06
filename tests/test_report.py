"""`tcfuzz report`: the numbers in it are the numbers of the commands it summarizes, each run here
as a user would run it (`--json`), and the three files say the same thing."""

import json
import re

import pytest

from tcfuzz.cli.main import main
from tcfuzz.report import plots
from tcfuzz.report.write import write


def command_json(capsys, *argv):
    capsys.readouterr()
    status = main([*argv, "--json"])
    return status, json.loads(capsys.readouterr().out)


def without_time(value):
    """Timings differ between two runs; everything else must not."""
    if isinstance(value, dict):
        return {k: without_time(v) for k, v in value.items() if k not in ("seconds",)}
    if isinstance(value, list):
        return [without_time(v) for v in value]
    return value


def verdicts(result: dict) -> tuple:
    """What a proof result claims; z3's counterexample values may differ from one solve to the next."""
    b = result["boundary"]
    return (
        result["config"],
        result["result"],
        result["preconditions"],
        {name: values is not None for name, values in result["necessary"].items()},
        (b["max_entries_max"], b["proven_at_max"], b["counterexample_at_max_plus_1"] is not None) if b else None,
    )


def test_versioned_schema_and_three_files(built_report):
    r = built_report["json"]
    assert r["schema"] == "tcfuzz-report/1"
    assert set(r["versions"]) >= {"tcfuzz", "unicorn", "capstone", "z3", "python"}
    for path in built_report["paths"].values():
        assert path.stat().st_size > 1000


def test_proof_numbers_are_prove_quick(built_report, capsys):
    status, out = command_json(capsys, "prove", "--quick")
    assert status == 0
    proof = built_report["json"]["proof"]
    assert [verdicts(r) for r in proof["results"]] == [verdicts(r) for r in out["results"]]
    stable = [(e["config"], e["what"], e["reproduced"], e["signature"]) for e in out["replays"]]
    assert [(e["config"], e["what"], e["reproduced"], e["signature"]) for e in proof["replays"]] == stable
    assert proof["proven"] == sum(r["result"] == "PROVEN" for r in out["results"]) == proof["total"] == len(out["results"])
    static = {p for r in out["results"] if "/static/" in r["config"] for p in r["preconditions"]}
    assert proof["static_preconditions"] == sorted(static) and len(static) == 5


def test_limits_numbers_are_limits(built_report, capsys):
    lim = built_report["json"]["limits"]
    _, kernel = command_json(capsys, "limits")
    _, raised = command_json(capsys, "limits", "--max-used-maps", "257", "--poke-tab-max", "32768")
    assert without_time(lim["kernel"]) == without_time(kernel)
    assert without_time(lim["raised"]) == without_time(raised)
    assert kernel["imm"] == [] and {b["field"]: b["first"] for b in raised["imm"]} == {"map_index": 256, "poke_index": 32767}
    assert lim["kernel"]["disp"]["first_max_entries"] == 268435412


def test_mutant_numbers_are_mutants(built_report, capsys):
    status, out = command_json(capsys, "mutants")
    m = built_report["json"]["mutants"]
    assert (m["budget"], m["seed"]) == (out["budget"], out["seed"])
    assert without_time(m["mutants"]) == without_time(out["mutants"])
    assert m["killed"] == sum(k["killed"] for k in out["mutants"]) and status == (0 if m["killed"] == len(m["mutants"]) else 1)


def test_corpus_numbers_are_run(built_report, capsys):
    corpus = built_report["json"]["corpus"]
    for e in corpus["entries"]:
        _, out = command_json(capsys, "run", e["file"])
        assert (e["verdict"], e["signature"]) == (out["verdict"], out["signature"] or None), e["file"]
    assert corpus["count"] == len(corpus["entries"]) == corpus["agree"] + corpus["diverge"]


def test_fuzz_numbers_are_the_summary(built_report):
    r = built_report["json"]
    summary = json.loads((built_report["fuzz_dir"] / "summary.json").read_text())
    assert r["fuzz"][0]["summary"] == summary
    h = r["headline"]
    assert h["cases"] == r["corpus"]["count"] + summary["cases"]
    assert any(c.startswith("tcfuzz fuzz") for c in r["commands"])


def test_headline_and_findings(built_report):
    r = built_report["json"]
    h = r["headline"]
    causes = {f["cause"] for f in r["findings"]}
    assert causes == {"shared-label", "disp-wrap"} and h["findings"] == 2 and h["unexplained"] == 0
    assert h["sentence"].startswith("2 findings, proven equivalent under 5 preconditions")
    for f in r["findings"]:
        assert "=>" in f["parting"]  # the instruction where the runs part
        assert f["replay"] == f"tcfuzz repro {f['representative']}"
    md, html = (built_report["paths"][k].read_text() for k in ("md", "html"))
    for text in (md, html):
        assert h["sentence"] in text
        for f in r["findings"]:
            assert f["signature"].replace("<", "&lt;").replace(">", "&gt;") in text or f["signature"] in text


def test_html_is_one_file_with_no_script_and_no_network(built_report):
    html = built_report["paths"]["html"].read_text()
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert html.index('id="verdict"') < html.index("<h2>")  # the verdict comes first
    if plots.have_matplotlib() and any(len(plots.history_points(r["summary"] or {})) > 1 for r in built_report["json"]["fuzz"]):
        assert html.count("<svg") == 3  # cases, inputs/s, signatures over time


def test_without_matplotlib_the_history_is_a_table(built_report, tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "have_matplotlib", lambda: False)
    paths = write(built_report["json"], tmp_path)
    html = paths["html"].read_text()
    assert "<svg" not in html and "matplotlib is not installed" in html and "inputs/s" in html
    assert "install the `report` extra" in paths["md"].read_text()


@pytest.mark.parametrize("bad", [["--from", "/nonexistent"], ["--from", "corpus"]])
def test_bad_from_is_one_line_exit_2(bad, capsys, tmp_path):
    assert main(["report", *bad, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and not (tmp_path / "r").exists()


def test_fuzz_summaries_of_both_schemas_are_read():
    from tcfuzz.report.collect import fuzz_findings

    v1 = {"signatures": {"S": {"count": 3, "known_causes": ["disp-wrap"], "artifacts": ["a"]}}}
    v2 = {"findings": [{"signature": "S", "count": 3, "status": "known", "causes": ["disp-wrap"]}]}
    assert fuzz_findings(v1) == fuzz_findings(v2) == [{"signature": "S", "count": 3, "causes": ["disp-wrap"]}]
