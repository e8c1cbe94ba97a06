"""The regression corpus as fuzzer inputs (fuzz/gen/encode.py, fuzz/frontends/seeds.py) and the dictionary."""

import random

from tcfuzz.frontends.seeds import DICT, dictionary, seed_dirs, seeds
from tcfuzz.gen.encode import encode, encode_input
from tcfuzz.gen.worlds import decode, decode_input, single_run
from tcfuzz.selftest.kill import corpus_worlds


def test_encode_round_trips():
    """Every world the generator makes comes back from its encoding, exactly."""
    rng = random.Random(5)
    for _ in range(400):
        world = decode(rng.randbytes(rng.randrange(0, 400)))
        assert decode(encode(world)) == world


def test_encode_input_modes():
    world = decode(random.Random(2).randbytes(100))
    assert decode_input(encode_input(world)) == (world, None)
    batch_world, cases = decode_input(encode_input(world, batch=2048, tail=b"x"))
    assert batch_world == single_run(world) and len(cases) == 2048


def test_the_findings_encode_exactly():
    """The patch's findings are seeds as they are (other entries may be the nearest generated world)."""
    for origin, world in corpus_worlds():
        if origin.startswith("corpus/findings/") and world.profile.arch == "x86_64":
            assert decode(encode(world)) == world, origin


def test_seeds_only_for_an_empty_corpus(tmp_path):
    (tmp_path / "c").mkdir()
    (dirs,) = [seed_dirs(tmp_path / "c", tmp_path / "a")]
    assert len(dirs) == 1 and len(list((tmp_path / "a" / ".tcfuzz-seeds").iterdir())) == len({d for _, d in seeds()}) > 20
    (tmp_path / "c" / "mine").write_bytes(b"\0")
    assert seed_dirs(tmp_path / "c", tmp_path / "a") == []


def test_dictionary_file_is_current():
    assert DICT.read_text() == dictionary()
    assert '"\\x0f\\xff\\xff\\xd4"' in DICT.read_text()  # 2^28 - 44, the first disp32 overflow


def test_structural_mutations_give_the_intended_world():
    """Each structural mutation (fuzz/frontends/mutator.py) applies, and its encoded result decodes
    (to exactly the changed world where no default ctx input is added)."""
    from tcfuzz.frontends import mutator
    from tcfuzz.model.bpf import round_up

    rng = random.Random(4)
    applied = set()
    for _ in range(200):
        data = rng.randbytes(rng.randrange(20, 200))
        batch, world, size, tail = mutator.parse(data)
        for mutation in mutator.MUTATIONS:
            try:
                changed = mutation(world, random.Random(rng.random()))
            except (IndexError, ValueError):
                continue
            applied.add(mutation.__name__)
            if mutation is mutator.bump_stack:
                assert (
                    sorted(round_up(p.stack_depth, 8) for p in changed.programs)
                    != sorted(round_up(p.stack_depth, 8) for p in world.programs)
                    or len(world.programs) > 1
                )
            if mutation in (mutator.bump_stack, mutator.edge_max_entries):  # the others add ctx defaults
                assert decode(encode(changed)) == changed, mutation.__name__
        out = mutator.structural(data, rng.randrange(1000))
        assert out is None or decode_input(out)[0] is not None
    assert applied == {m.__name__ for m in mutator.MUTATIONS}
