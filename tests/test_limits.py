"""`tcfuzz limits`: the first values at which the patch's packed fields break, derived here by hand
from the bit layout (imm: bits 0-7 map index, 8-15 poisoned, 16-31 poke index + 1 in a C int)."""

import json

from tcfuzz.analysis.limits import first_breaks, first_disp_overflow, hunt
from tcfuzz.cli.main import main
from tcfuzz.model.profile import preset

MAP_FIELD_BITS = 8  # bits 0-7
FIRST_BAD_MAP = 2**MAP_FIELD_BITS  # 256 spills into the poisoned byte
FIRST_BAD_POKE = 2**15 - 1  # (poke + 1) << 16 reaches bit 31: the int goes negative


def test_kernel_limits_round_trip_everywhere():
    first_map, first_poke, checked, exhaustive = first_breaks(64, 1024)
    assert (first_map, first_poke) == (None, None)
    assert exhaustive and checked == 64 * (2 + 1024)


def test_raised_limits_break_where_the_bit_layout_says():
    assert first_breaks(FIRST_BAD_MAP + 44, 2**15 + 100)[:2] == (FIRST_BAD_MAP, FIRST_BAD_POKE)
    assert first_breaks(FIRST_BAD_MAP, FIRST_BAD_POKE)[:2] == (None, None)  # one short of each
    assert first_breaks(FIRST_BAD_MAP + 1, FIRST_BAD_POKE + 1)[:2] == (FIRST_BAD_MAP, FIRST_BAD_POKE)


def test_disp32_first_overflow_by_hand():
    # smallest n with ptrs_off + 8n >= 2**31
    assert first_disp_overflow(0x160) == (2**31 - 0x160 + 7) // 8 == 268435412
    assert first_disp_overflow(0x158) == (2**31 - 0x158 + 7) // 8
    assert 0x160 + 8 * (268435412 - 1) <= 2**31 - 1 < 0x160 + 8 * 268435412


def test_consequences_are_shown():
    r = hunt(preset("default").replace(max_used_maps=FIRST_BAD_MAP + 1, poke_tab_max=FIRST_BAD_POKE + 1))
    by_field = {b.field: b for b in r.breaks}
    m = by_field["map_index"]
    assert m.first == FIRST_BAD_MAP and m.decoded == {"map_index": 0, "dynamic": True, "imm16": 0}
    assert m.demo["verdict"] == "AGREE"  # falls back to the dynamic sequence: benign
    p = by_field["poke_index"]
    assert p.decoded["imm16"] == -(2**15) and p.demo["jit"].startswith("JitFault: poke_tab[-32769]")
    assert r.disp["first_max_entries"] == 268435412 and r.disp["disp32"] == -(2**31)
    assert r.disp["verdict"] == "NEW_DIVERGES"


def test_cli_json(capsys):
    assert main(["limits", "--json", "--no-demo"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["imm"] == [] and d["exhaustive"] and d["disp"]["first_max_entries"] == 268435412
    assert main(["limits", "--profile", "no-security", "--max-used-maps", "300", "--no-demo"]) == 0
    out = capsys.readouterr().out
    assert "map_index: first failure at 256" in out and "leaves int at max_entries = 268435413" in out
