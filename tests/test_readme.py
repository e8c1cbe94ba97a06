"""The README's world example is a real world: it parses and runs."""

import json
import re
from pathlib import Path

from tcfuzz.model.world import World
from tcfuzz.verdict.oracle import judge

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_world_example_runs():
    block = re.search(r"### A world.*?```json\n(.*?)```", README.read_text(), re.S).group(1)
    w = World.from_json(json.loads(block))
    j = judge(w)
    assert j.verdict.diverges is False
    assert [o.trace for o in j.observations["model"]] == [(0, 1), (0,)]


def test_readme_plugin_example_fixes_both_findings(tmp_path, monkeypatch, capsys):
    from tcfuzz.cli.main import main

    code = re.search(r"```python\n# my_patch.py\n(.*?)```", README.read_text(), re.S).group(1)
    (tmp_path / "my_patch.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    root = README.parent
    for finding in ("shared-label.json", "u32-max-entries.json", "disp-first-overflow.json"):
        entry = root / "corpus" / "findings" / finding
        assert main(["run", str(entry), "--new", "my_patch:CODEGEN"]) == 0, capsys.readouterr().out
        assert main(["run", str(entry)]) == 1
    assert main(["run", str(root / "corpus" / "kernel" / "tailcall-2-chain.json"), "--new", "my_patch:CODEGEN"]) == 0


def test_bad_plugin_specs_are_one_line_exit_2(capsys):
    from tcfuzz.cli.main import main

    world = str(README.parent / "examples" / "self-call.json")
    for spec, message in [
        ("jit_new", "expected module:object"),
        ("tcfuzz.jit_new:NOPE", "tcfuzz.jit_new has no NOPE"),
        ("tcfuzz.model.world:World", "not a Codegen (missing name, cached_targets, fixup, jit)"),
    ]:
        assert main(["run", world, "--new", spec]) == 2
        err = capsys.readouterr().err
        assert err == f"tcfuzz run: error: codegen {spec!r}: {message}\n"
