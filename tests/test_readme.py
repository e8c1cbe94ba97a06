"""The README's world example is a real world: it parses and runs."""
import json
import re
from pathlib import Path

from model.world import World
from fuzz.oracle import judge

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_world_example_runs():
    block = re.search(r"### A world.*?```json\n(.*?)```", README.read_text(), re.S).group(1)
    w = World.from_json(json.loads(block))
    j = judge(w)
    assert j.verdict.diverges is False
    assert [o.trace for o in j.observations["model"]] == [(0, 1), (0,)]
