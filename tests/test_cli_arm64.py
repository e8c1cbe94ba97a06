"""`--arch arm64` on disasm, run and repro: the worlds' twins under the arm64 codegens."""

import json
from pathlib import Path

from tcfuzz.cli.main import main

ROOT = Path(__file__).resolve().parent.parent


def cli(capsys, *argv):
    status = main([*map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


def test_disasm_shows_both_arm64_sequences(capsys):
    status, out, err = cli(capsys, "disasm", "--profile", "arm64", "--kind", "static", "--max-entries", "8")
    assert status == 0 and err == ""
    assert "PROLOGUE_OFFSET=6 (bpf_arch_tail_call_prologue_offset() = 24)" in out
    assert "add x11, x11, #0x1a0" in out  # ptrs + 8 * 8, one emit_a64_add_i immediate
    assert "br x11" in out and "br x10" in out


def test_disasm_arch_flag_carries_ibt_over_as_bti(capsys):
    status, out, _ = cli(capsys, "disasm", "--profile", "ibt", "--arch", "arm64", "--whole", "--json")
    doc = json.loads(out)
    assert status == 0 and doc["profile"]["arch"] == "arm64" and doc["profile"]["bti"] is True
    assert doc["old"]["instructions"][0]["insn"] == "bti jc"


def test_run_the_shared_label_finding_on_arm64_agrees(capsys):
    status, out, _ = cli(capsys, "run", ROOT / "examples" / "shared-label.json", "--arch", "arm64")
    assert status == 0 and out.rstrip().endswith("verdict AGREE")


def test_run_the_u32_finding_on_arm64_diverges(capsys):
    status, out, _ = cli(capsys, "run", ROOT / "examples" / "u32-max-entries.json", "--arch", "arm64")
    assert status == 1
    assert "signature NEW_DIVERGES/fault/wild_jump@br x11 -> struct bpf_prog +<addr>" in out


def test_repro_shows_the_sign_extended_offset(capsys):
    status, out, _ = cli(capsys, "repro", ROOT / "corpus" / "findings" / "disp-first-overflow.json", "--arch", "arm64")
    assert status == 1
    assert "mov x10, #-0x7fff0001" in out  # emit_a64_mov_i(1, tmp, (s32)off): sign-extended
    assert "=>" in out and "ldr x11, [x1, x11]" in out


def test_run_json_has_the_arm64_profile(capsys):
    status, out, _ = cli(capsys, "run", ROOT / "examples" / "self-call.json", "--arch", "arm64", "--json")
    doc = json.loads(out)
    assert status == 0 and doc["verdict"] == "AGREE"
    assert doc["observations"]["legacy"][0]["tail_call_cnt"] == 33


def test_an_x86_codegen_on_an_arm64_world_is_a_usage_error(capsys):
    status, _, err = cli(
        capsys, "run", ROOT / "examples" / "self-call.json", "--arch", "arm64", "--new", "tcfuzz.selftest.mutants:BOUND_CHECK_JA"
    )
    assert status == 2
    assert err.strip().endswith("emits x86_64 code; the world's profile is arm64")
    assert len(err.strip().splitlines()) == 1
