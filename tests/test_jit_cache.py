"""The JIT image cache (fuzz/machine/jit_cache.py): a cached image is the image a fresh compile gives,
byte for byte, and a codegen never gets another codegen's image."""

import random

import pytest

from tcfuzz import jit_new, jit_old
from tcfuzz.gen.worlds import decode
from tcfuzz.machine import jit_cache
from tcfuzz.machine.executor import compile_world
from tcfuzz.model.interfaces import JitError, VerifierReject
from tcfuzz.selftest.mutants import CATALOGUE


def compiled(world, codegen):
    """[(name, code, asm of each instr, pokes)] or the exception type."""
    try:
        return [
            (name, img.base, img.code, [(i.offset, i.data, i.source) for i in img.instrs], [vars(p) for p in img.pokes])
            for name, img in compile_world(world, codegen)
        ]
    except (JitError, VerifierReject) as e:
        return type(e).__name__


def fresh(world, codegen, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(jit_cache, "MAX_ENTRIES", 0)
        return compiled(world, codegen)


@pytest.fixture(autouse=True)
def empty_cache():
    jit_cache.clear()
    yield
    jit_cache.clear()


def test_cached_and_fresh_images_are_identical(monkeypatch):
    rng = random.Random(7)
    codegens = [jit_old.CODEGEN, jit_new.CODEGEN, CATALOGUE["wrong-displacement"][0], CATALOGUE["counter-slot-offset"][0]]
    worlds = [decode(rng.randbytes(rng.randrange(8, 300))) for _ in range(25)]
    for world in worlds:
        for codegen in codegens:
            first = compiled(world, codegen)  # a miss (or a hit from an earlier world's equal program)
            assert compiled(world, codegen) == first == fresh(world, codegen, monkeypatch), (world.to_json(), codegen.name)
    assert jit_cache.STATS.hits > 0


def test_a_mutant_never_gets_another_codegens_image(monkeypatch):
    """Same name, same class body, different closure: distinct fingerprints and distinct images."""
    from tcfuzz.selftest.systematic import emitted_lines, emitter_codegen

    (source, (_, _)), *_ = emitted_lines().items()
    a = emitter_codegen(source, "same-name", lambda d: d)
    b = emitter_codegen(source, "same-name", lambda d: bytes([0x90] * len(d)))
    assert type(a).__qualname__ == type(b).__qualname__ and a.name == b.name
    assert len({jit_cache.fingerprint(c) for c in (a, b, jit_new.CODEGEN, jit_old.CODEGEN)}) == 4
    rng = random.Random(3)
    differ = 0
    for _ in range(30):
        world = decode(rng.randbytes(200))
        for codegen in (jit_new.CODEGEN, a, b, CATALOGUE["bound-check-ja"][0]):
            assert compiled(world, codegen) == fresh(world, codegen, monkeypatch)
        differ += compiled(world, b) != compiled(world, a)
    assert differ > 0


def test_a_replaced_emitter_is_seen(monkeypatch):
    """A function the codegen reaches through a module global, replaced (as a test's monkeypatch
    does): the next compile is not served from the cache."""
    world = decode(bytes([0, 0, 0, 1, 0, 1]))
    before = compiled(world, jit_new.CODEGEN)
    original = jit_new.tail_call.emit_count_and_unwind

    def no_increment(p, *args, **kw):
        original(p, *args, **kw)
        p.emit1(0x90)  # nop

    monkeypatch.setattr(jit_new.tail_call, "emit_count_and_unwind", no_increment)
    assert compiled(world, jit_new.CODEGEN) != before
    monkeypatch.undo()
    assert compiled(world, jit_new.CODEGEN) == before


def test_bounded(monkeypatch):
    monkeypatch.setattr(jit_cache, "MAX_ENTRIES", 5)
    rng = random.Random(1)
    for _ in range(20):
        compiled(decode(rng.randbytes(120)), jit_new.CODEGEN)
    assert len(jit_cache._IMAGES) <= 5


class AlwaysFails(jit_new.PatchedCodegen):
    name = "always-fails"

    def jit(self, prog, profile, image_base):
        raise JitError("bpf_jit: this codegen fails every compile")


def test_a_cached_failure_raised_again_does_not_grow():
    """A cached failure is one exception object raised on every hit: its traceback (and the frames,
    with their worlds, that it keeps alive) must start afresh each time, or memory grows per hit."""
    import traceback

    w = decode(random.Random(3).randbytes(120))
    depths = []
    for _ in range(3):
        with pytest.raises(JitError) as raised:
            compile_world(w, AlwaysFails())
        depths.append(len(traceback.extract_tb(raised.value.__traceback__)))
    assert jit_cache.STATS.hits == 2
    assert depths[1] == depths[2]
