"""The oracle's self-test: every planted bug in the catalogue is killed, each by a world on which its
base codegen agrees. A survivor fails CI."""

import json

import pytest

from tcfuzz.cli.main import main
from tcfuzz.codegens import codegen_arch
from tcfuzz.selftest.kill import hunt
from tcfuzz.selftest.mutants import CATALOGUE
from tcfuzz.verdict.oracle import judge


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_mutant_is_killed(name):
    # Bounded by a count of worlds, not seconds, so a loaded machine gives the same answer. Seed 1
    # kills every mutant within 111 generated worlds (README); 400 leaves room for a changed generator.
    kill = hunt(name, budget=float("inf"), seed=1, use_corpus=False, max_worlds=400)
    assert kill.killed, f"{name} survived {kill.cases} worlds: {kill.description}"


def test_mutants_keep_their_base_intact():
    """A mutant changes only itself: its base still agrees on the whole kernel corpus group."""
    from tcfuzz.selftest.kill import corpus_worlds

    for origin, world in corpus_worlds():
        if origin.startswith("corpus/kernel/"):
            for _, base, _ in CATALOGUE.values():
                assert not judge(world.for_arch(codegen_arch(base)), new=base).verdict.diverges, origin


def test_cli_table_and_json(capsys):
    assert main(["mutants", "--only", "bound-check-ja,legacy-bound-check-jb", "--budget", "20"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "2/2 killed" and "bound-check-ja" in out
    assert main(["mutants", "--only", "null-check-jne", "--json", "--no-corpus", "--seed", "3"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["mutants"][0]["killed"] and d["mutants"][0]["by"].startswith("generated #")
    assert main(["mutants", "--only", "nope"]) == 2
