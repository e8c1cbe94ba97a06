"""The regression corpus on arm64: each entry's twin (World.for_arch: same maps, programs, runs and
struct layout; IBT carried over as BTI) judged under the arm64 codegens. An entry's arm64 verdict is
its x86-64 verdict unless listed here, with the reason."""

import os
from pathlib import Path

import pytest

from tcfuzz import jit_old
from tcfuzz.machine.executor import load
from tcfuzz.model.interfaces import VerdictKind
from tcfuzz.triage.artifacts import read_document
from tcfuzz.verdict.oracle import judge

CORPUS = Path(os.environ.get("TCFUZZ_CORPUS", Path(__file__).resolve().parent.parent / "corpus"))
ENTRIES = sorted(CORPUS.rglob("*.json"))

WILD_JUMP_INTO_PROG = "NEW_DIVERGES/fault/wild_jump@br x11 -> struct bpf_prog +<addr>"
ARM64_EXPECTED = {
    # Each arm64 sequence patches its three NOPs from its own length (`if (ctx->image)` at the end
    # of emit_bpf_tail_call()): there is no label shared between a static and a dynamic sequence.
    "findings/shared-label.json": "AGREE",
    "findings/shared-label-dynamic-first.json": "AGREE",
    # The static offset reaches emit_a64_add_i() as an `s32 imm`: the same 32-bit wrap as x86's
    # disp32. The wrapped offset reads below the array (unmapped) or a struct bpf_prog * as target.
    "findings/disp-first-overflow.json": "NEW_DIVERGES/fault/unmapped@ldr x11, [x1, x11]",
    "findings/max-entries-2-pow-31.json": WILD_JUMP_INTO_PROG,
    "findings/static-disp-wraps-at-2-pow-31-minus-1.json": WILD_JUMP_INTO_PROG,
    "findings/u32-max-entries.json": WILD_JUMP_INTO_PROG,
    "findings/unpriv-2-pow-31.json": WILD_JUMP_INTO_PROG,
    # arm64 has no direct tail calls: a constant-key site is on the static path, so it wraps too
    # (its x86-64 twin is a poke-patched jump and agrees: see test_constant_key_site_is_arm64_only).
}


@pytest.mark.parametrize("path", ENTRIES, ids=[str(p.relative_to(CORPUS)) for p in ENTRIES])
def test_corpus_entry_on_arm64(path):
    doc = read_document(path)
    twin = doc.world.for_arch("arm64")
    assert twin.profile.arch == "arm64" and twin.profile.ptrs_off == doc.world.profile.ptrs_off
    v = judge(twin).verdict
    expected = ARM64_EXPECTED.get(str(path.relative_to(CORPUS)), doc.expected[0].value)
    got = v.signature if "/" in expected else v.kind.value
    assert got == expected, f"{doc.data['purpose']}: arm64 expected {expected}, got {got}"


def test_twins_run_the_arm64_code():
    doc = read_document(CORPUS / "kernel" / "tailcall-3-limit-33.json")
    ld = load(doc.world.for_arch("arm64"), jit_old.CODEGEN)
    assert ld.codegen.arch == "arm64" and ld.engine.arch == "arm64"
    assert ld.images[0].code[:4] == bytes.fromhex("c9030091")  # add x9, x30, #0: build_prologue()


def test_constant_key_site_is_arm64_only():
    doc = read_document(CORPUS / "findings" / "arm64-constant-key-site-disp-wrap.json")
    assert doc.world.profile.arch == "arm64"
    assert judge(doc.world).verdict.signature == "NEW_DIVERGES/fault/wild_jump@br x11 -> <addr>"
    assert judge(doc.world.for_arch("x86_64")).verdict.kind is VerdictKind.AGREE
