"""`tcfuzz bench` runs every measurement path (a smoke test: the figures themselves are not asserted)."""

import json

from tcfuzz.cli.main import main


def test_bench_reports_every_path(capsys):
    assert main(["bench", "--cases", "200", "--repeat", "1", "--atheris-seconds", "0", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert set(r) == {"machine", "repeat", "batched", "per_case", "worlds", "limits"}
    assert r["batched"]["ceiling_us"]["min"] > 0 and 0 < r["batched"]["ratio"] and 0 < r["per_case"]["ratio"]
    assert r["worlds"]["scratch_ms"]["median"] > 0 and r["worlds"]["cache_hit_rate"] > 0
    assert r["worlds"]["all_hits_ms"]["median"] > 0
