"""Patch 2/4's imm packing: exhaustive round trip at the kernel limits, hand-derived overflow points."""

from tcfuzz.jit_new.imm import decode_tail_call_imm, encode_tail_call_imm
from tcfuzz.model.profile import MAX_USED_MAPS, POKE_TAB_MAX


def test_round_trip_every_field_combination_at_kernel_limits():
    count = 0
    for map_index in range(MAX_USED_MAPS):
        for poisoned in (False, True):
            for slot in [None, *range(POKE_TAB_MAX)]:
                imm = encode_tail_call_imm(map_index, poisoned, slot)
                assert decode_tail_call_imm(imm) == (map_index, poisoned, 0 if slot is None else slot + 1)
                count += 1
    assert count == 64 * 2 * 1025


def test_fields_sit_where_the_patch_says():
    assert encode_tail_call_imm(5, False, None) == 0x00000005
    assert encode_tail_call_imm(5, True, None) == 0x00000105
    assert encode_tail_call_imm(63, True, 1023) == 0x04000000 | 0x100 | 63


def test_overflow_past_the_limits_is_kept_not_checked():
    # map index 256 = bit 8: it reads back as map 0 of a *dynamic* site
    assert decode_tail_call_imm(encode_tail_call_imm(256, False, None)) == (0, True, 0)
    # poke slot 32767: (32767 + 1) << 16 = 0x80000000, a negative int; imm16 = -32768
    imm = encode_tail_call_imm(0, False, 32767)
    assert imm == -(2**31) and decode_tail_call_imm(imm) == (0, False, -32768)
    # poke slot 65535: 65536 << 16 = 2**32 shifts out of the int; the direct call decodes as indirect
    assert decode_tail_call_imm(encode_tail_call_imm(7, False, 65535)) == (7, False, 0)
