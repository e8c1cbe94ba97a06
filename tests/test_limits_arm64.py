"""`tcfuzz limits --arch arm64`: the static path's immediates at the x86-64 overflow edges."""

import json
import random
import struct

import pytest
from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, Uc
from unicorn.arm64_const import UC_ARM64_REG_X10, UC_ARM64_REG_X11

from tcfuzz.analysis import limits_arm64 as L
from tcfuzz.analysis.limits import first_disp_overflow
from tcfuzz.cli.main import main
from tcfuzz.jit_old.arm64.emit import emit_a64_add_i, emit_a64_mov_i64
from tcfuzz.model.bpf import s32
from tcfuzz.model.profile import preset


def unicorn_regs(words, x10, x11):
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    uc.mem_map(0x10000, 0x1000)
    uc.mem_write(0x10000, b"".join(struct.pack("<I", w) for w in words))
    uc.reg_write(UC_ARM64_REG_X10, x10)
    uc.reg_write(UC_ARM64_REG_X11, x11)
    uc.emu_start(0x10000, 0x10000 + 4 * len(words))
    return uc.reg_read(UC_ARM64_REG_X10), uc.reg_read(UC_ARM64_REG_X11)


def test_the_evaluator_agrees_with_unicorn():
    rng = random.Random(7)
    values = [rng.getrandbits(32) for _ in range(150)] + [(hi << 16) | lo for hi in L.HALF_CLASSES for lo in L.HALF_CLASSES]
    for v in values:
        for emit in (lambda ctx, v=v: emit_a64_mov_i64(ctx, 10, v), lambda ctx, v=v: emit_a64_add_i(ctx, True, 11, 11, 10, v)):
            words = L._words(emit)
            x10, x11 = 0xDEAD_BEEF_DEAD_BEEF, 0x1234_5678
            got = L.evaluate(words, {10: x10, 11: x11})
            assert (got[10], got[11]) == unicorn_regs(words, x10, x11), (hex(v), [hex(w) for w in words])


def test_the_helpers_materialise_what_the_c_code_says():
    mov, add = L.check_helpers(full=False)
    assert mov.checked == add.checked == 2 * len(L.HALF_CLASSES) ** 2
    assert not mov.failures and not add.failures
    assert L.mov_u32_value(0x80000000) == 0x80000000  # 32-bit MOVN zero-extends: no sign extension here
    assert L.add_i_addend(0x80000000) == 0xFFFFFFFF80000000  # the s32 parameter is sign-extended


def test_the_evaluator_fails_closed():
    with pytest.raises(L.Unsupported):
        L.evaluate([0xD61F0160], {})  # br x11


@pytest.mark.parametrize("profile", ["arm64", "no-security"])
def test_the_offset_breaks_exactly_at_the_x86_edge(profile):
    ptrs_off = preset(profile).ptrs_off
    first = first_disp_overflow(ptrs_off)
    window = L.sweep_offsets(ptrs_off, chunk=1 << 20, stop=1 << 29)
    assert window["first_wrong"] == first
    # (1 << 29) - first values wrong: those with ptrs_off + 8 * me in [2**31, 2**32) read below the array
    assert window["wrong"] == (1 << 29) - first
    assert window["below_array"] == min(window["wrong"], ((1 << 32) - ptrs_off + 7) // 8 - first)


def test_imm_edges_arm64_reads_no_poke_bits():
    edges = L.imm_edges(300, 1024)
    assert edges == {"first_map_break": 256, "direct_sites_decode_to_their_map": True}


def test_cli_quick_json(capsys):
    assert main(["limits", "--arch", "arm64", "--quick", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["profile"]["arch"] == "arm64" and d["exhaustive"] is False
    assert d["offsets"]["first_wrong"] == 268435412
    assert d["demo"]["signature"] == "NEW_DIVERGES/fault/unmapped@ldr x11, [x1, x11]"


@pytest.mark.nightly
def test_exhaustive_run():
    r = L.hunt(preset("arm64"), run_demos=False)
    assert all(not h.failures for h in r.helpers) and all(h.checked == 2 * 65536 * len(L.HALF_CLASSES) for h in r.helpers)
    assert r.offsets == {
        "first_wrong": 268435412,
        "wrong": 2**32 - 268435412,
        "below_array": 2**31,
        "wrapped_small": 2**32 - 268435412 - 2**31,
    }
    assert s32(0x160 + 8 * 268435412) < 0
