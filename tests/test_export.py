"""`tcfuzz export FINDING --selftest`: the patch's findings as kernel selftests whose __jited lines
are the legacy JIT's own bytes, as the kernel's test_loader would print and match them."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tcfuzz import jit_old
from tcfuzz.machine.executor import compile_world
from tcfuzz.model.sample import tail_call_sites
from tcfuzz.triage.artifacts import read_document
from tcfuzz.triage.export import export_selftest, llvm_lines, matches
from tcfuzz.verdict.oracle import judge

ROOT = Path(__file__).resolve().parent.parent
FINDINGS = sorted(p.name for p in (ROOT / "corpus" / "findings").glob("*.json") if p.name.startswith(("shared-label", "disp-")))


def tcfuzz(*argv):
    return subprocess.run([sys.executable, "-m", "tcfuzz.cli.main", *argv], capture_output=True, text=True, cwd=ROOT)


def test_the_patch_findings_are_all_here():
    assert {"shared-label.json", "shared-label-dynamic-first.json", "disp-first-overflow.json"} <= set(FINDINGS)


@pytest.mark.parametrize("name", FINDINGS)
def test_exported_jited_lines_are_the_legacy_bytes(name):
    path = ROOT / "corpus" / "findings" / name
    r = tcfuzz("export", str(path), "--selftest")
    assert r.returncode == 0, r.stderr
    src = r.stdout
    # The kernel's shape: test_loader annotations on the program under test, prog arrays with values.
    for macro in (
        "__arch_x86_64",
        "__success",
        "__retval(",
        "__load_if_JITed()",
        "BPF_MAP_TYPE_PROG_ARRAY",
        '"call %[bpf_tail_call];"',
    ):
        assert macro in src, macro
    patterns = [bytes(m, "utf-8").decode("unicode_escape") for m in re.findall(r'__jited\("(.*)"\)', src)]
    # What tcfuzz's legacy JIT emits for every site of the entry program, printed independently of
    # the exporter's own helper: capstone's AT&T text, hex immediates, no spaces in memory operands.
    world = read_document(path).world
    j = judge(world)
    image = dict(compile_world(world, jit_old.CODEGEN))[f"prog {world.runs[j.verdict.run].entry}"]
    expected = []
    for lo, hi in tail_call_sites(image):
        expected.append("...")
        for m, o in llvm_lines(image.code[lo:hi], image.base + lo):
            if m.startswith("j") and o.startswith("0x") and image.base <= int(o, 16) < image.base + len(image.code):
                o = "L0"  # the test_loader prints a branch into the program as a label
            expected.append(f"\t{m}\t{o}")
    assert len(patterns) == len(expected)
    for pattern, line in zip(patterns, expected, strict=True):
        assert pattern == line or matches(pattern, line), (pattern, line)
    # The run's return value is the reference's (the interpreter's) for the diverging run.
    model = j.observations["model"][j.verdict.run]
    assert f"__retval({model.ret:#x})" in src


def test_jited_lines_spell_llvm_att():
    lines = llvm_lines(bytes.fromhex("4883c1 0c 48830001 488b45f8".replace(" ", "")), 0)
    assert lines == [("addq", "$0xc, %rcx"), ("addq", "$0x1, (%rax)"), ("movq", "-0x8(%rbp), %rax")]
    assert matches("\tjae\t{{L[0-9]+}}", "\tjae\tL3") and not matches("\tjae\t{{L[0-9]+}}", "\tjbe\tL3")


def test_a_world_a_selftest_cannot_express_is_one_line_and_exit_2(tmp_path):
    r = tcfuzz("export", str(ROOT / "corpus" / "findings" / "unpriv-2-pow-31.json"), "--selftest")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "maps[0].unpriv" in r.stderr


def test_export_to_a_file_never_overwrites(tmp_path):
    out = tmp_path / "t.c"
    out.write_text("mine")
    r = tcfuzz("export", str(ROOT / "corpus" / "findings" / "shared-label.json"), "--selftest", "--out", str(out))
    assert r.returncode == 2 and out.read_text() == "mine"


def test_export_uses_the_run_state_after_map_operations():
    w = read_document(ROOT / "corpus" / "kernel" / "tailcall-poke-update-delete.json").world
    test = export_selftest(w, "x", jit_old.CODEGEN, len(w.runs) - 1, None)
    assert 'SEC("tc")' in test.source and "__retval" not in test.source
