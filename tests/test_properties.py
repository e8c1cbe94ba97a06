"""The property the whole tool exists for: legacy = patched = model, on generated worlds.

The legacy JIT must always agree with the reference. The patched one may diverge only for a known
cause (fuzz/verdict/causes.py); any other divergence fails the test with a shrunk world. Corpus entries are
explicit examples, so every regression scenario is tried first on each run."""

from pathlib import Path

from hypothesis import example, given, target
from hypothesis import strategies as st

from tcfuzz import jit_new, jit_old
from tcfuzz.gen.worlds import decode, single_run, worlds
from tcfuzz.machine.batch import case_world, random_cases
from tcfuzz.triage.artifacts import read_document
from tcfuzz.verdict.batch_oracle import judge_batch
from tcfuzz.verdict.causes import known_causes
from tcfuzz.verdict.oracle import judge, same

CORPUS = Path(__file__).resolve().parent.parent / "corpus"


def with_corpus_examples(test):
    for path in sorted(CORPUS.rglob("*.json")):
        test = example(read_document(path).world)(test)
    return test


@given(worlds())
@with_corpus_examples
def test_legacy_patched_and_model_agree_except_known_causes(world):
    j = judge(world)
    legacy, patched, model = (j.observations[v] for v in ("legacy", "patched", "model"))
    target(float(max(len(o.trace) for o in model)), label="longest chain")
    target(
        -float(
            min(
                (abs(c.key % 2**32 - world.site_map(r, c.prog, c.site).max_entries) for r in world.runs for c in r.ctx),
                default=2**32,
            )
        ),
        label="index next to max_entries",
    )
    for run, (lo, mo) in enumerate(zip(legacy, model, strict=True)):
        assert same(lo, mo), f"legacy JIT differs from the reference in run {run}: {lo} vs {mo}"
    if j.verdict.diverges:
        assert known_causes(world), f"unexplained divergence: {j.verdict}"
    else:
        assert all(same(p, m) for p, m in zip(patched, model, strict=True))


@given(st.binary(max_size=4096))
def test_decoder_never_raises_and_is_deterministic(data):
    world = decode(data)
    assert decode(data) == world
    assert type(world).from_json(world.to_json()) == world


def test_short_inputs_decode_to_the_smallest_world():
    w = decode(b"")
    assert len(w.maps) == 1 and len(w.programs) == 1 and len(w.runs) == 1 and w.maps[0].max_entries == 4


@given(worlds().map(single_run), st.integers(0, 2**64 - 1))
def test_batches_agree_except_known_causes(world, seed):
    """The same property fed as a fuzzer input is: one world and a batch of its inputs, through the
    in-guest driver; a flagged case must have a known cause, and the per-case oracle must agree."""
    import numpy as np

    cases = random_cases(world, 32, np.random.default_rng(seed))
    flagged = judge_batch(world, cases, jit_old.CODEGEN, jit_new.CODEGEN).flagged
    if len(flagged):
        assert known_causes(world), "unexplained divergence in a batch"
        assert judge(case_world(world, cases[int(flagged[0])])).verdict.diverges
