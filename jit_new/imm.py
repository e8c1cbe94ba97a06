"""The tail-call insn's imm as patch 2/4 packs it (verifier) and unpacks it (x86 do_jit).

    bits 0-7   map index in used_maps[]      ("6 bits are enough, 63 max")
    bits 8-15  bpf_map_ptr_poisoned(aux)     (dynamic array)
    bits 16-31 poke index + 1                ("1023 max"), 0 = indirect

No range checks beyond the patch's own: a map index >= 256 spills into the flag byte, a poke
index + 1 >= 2**15 turns the C `int` negative, and >= 2**16 shifts out of it entirely.
"""
from __future__ import annotations

from tcfuzz.model.bpf import s32


def encode_tail_call_imm(map_index: int, poisoned: bool, poke_slot: int | None) -> int:
    """do_misc_fixups(): `imm = map_index; imm |= poisoned << 8; imm |= (ret + 1) << 16` in C int."""
    imm = s32(map_index)
    imm = s32(imm | (int(poisoned) << 8))
    if poke_slot is not None:
        imm = s32(imm | s32((poke_slot + 1) << 16))    # gcc: signed << is two's complement
    return imm


def decode_tail_call_imm(imm32: int) -> tuple[int, bool, int]:
    """do_jit(): `dynamic_array = (imm32 >> 8) & 0xFF; map_index = imm32 & 0xFF; s32 imm16 = imm32 >> 16`.

    Returns (map_index, dynamic_array, imm16); Python's >> on a negative int is the arithmetic shift
    gcc emits for a signed operand.
    """
    imm32 = s32(imm32)
    return imm32 & 0xFF, bool((imm32 >> 8) & 0xFF), imm32 >> 16
