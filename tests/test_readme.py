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


def test_readme_mutant_plugins_of_each_kind_are_killed(tmp_path, monkeypatch):
    """The README's four mutant plugins (emitter, imm decode, cache, poke) each diverge on a world
    on which the patch agrees."""
    import importlib

    from tcfuzz.analysis.maintenance import Violation, violation_world
    from tcfuzz.codegens import load_codegen

    code = re.search(r"```python\n# my_mutants.py\n(.*?)```", README.read_text(), re.S).group(1)
    (tmp_path / "my_mutants.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    static = Violation("x", "", 4, False, 1, (("update", 1),))
    direct_delete = Violation("x", "", 4, False, 1, (("delete", None),), filled_at_load=True)
    several_maps = {
        "schema": "tcfuzz-world/1",
        "profile": "default",
        "maps": [{"id": 5, "max_entries": 9}, {"id": 6, "max_entries": 9}, {"id": 0, "max_entries": 4, "slots": {"1": 1}}],
        "programs": [{"id": 0, "sites": [{"maps": [0]}]}, {"id": 1}],
        "runs": [{"entry": 0, "ctx": [{"prog": 0, "site": 0, "key": 5}]}],
    }
    cases = {
        "EMITTER": violation_world(static, "default", False),
        "DECODE": World.from_json(several_maps),
        "CACHE": violation_world(static, "ibt", False),
        "POKE": violation_world(direct_delete, "default", True),
    }
    for name, world in cases.items():
        assert not judge(world).verdict.diverges, name
        assert judge(world, new=load_codegen(f"my_mutants:{name}")).verdict.kind.value == "NEW_DIVERGES", name
