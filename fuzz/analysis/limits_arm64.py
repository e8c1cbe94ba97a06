"""`tcfuzz limits --arch arm64`: what the arm64 back end (patch 3/4) does at the edges where the
x86-64 one overflows.

1. The static path's two immediates, through the kernel's helpers:
   * max_entries through `emit_a64_mov_i64(tmp, map->max_entries)` (a u32, so emit_a64_mov_i(0, ...));
   * `off = offsetof(ptrs) + max_entries * 8` (a size_t) through `emit_a64_add_i(1, prg, prg, tmp,
     off)`, whose parameter is `const s32 imm`.
   Each helper is run (the real emitter) for every value of one 16-bit half against every value
   class of the other half its branches distinguish, and the words it emits are evaluated by a
   small A64 evaluator written from the architecture's definition of MOVZ/MOVN/MOVK/ADD/SUB
   (independent of the encoders). Then the offset arithmetic is swept over all 2**32 max_entries.
2. The packed imm: arm64 decodes only bits 0-15 (map index, dynamic flag), so the poke-index
   overflow of x86-64 cannot happen; the map-index edge is the same.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from tcfuzz.jit_new.imm import decode_tail_call_imm, encode_tail_call_imm
from tcfuzz.jit_old.arm64.emit import JitCtx, emit_a64_add_i, emit_a64_mov_i64
from tcfuzz.model.bpf import s32
from tcfuzz.model.interfaces import VerifiedProgram
from tcfuzz.model.profile import KernelProfile, preset

U64 = (1 << 64) - 1
U32 = (1 << 32) - 1
TMP, PRG = 10, 11
# Values of one half the helpers' branches tell apart: zero, all ones, the sign bit, and others.
HALF_CLASSES = (0x0000, 0x0001, 0x1234, 0x7FFF, 0x8000, 0x8001, 0xFFFE, 0xFFFF)


class Unsupported(Exception):
    """A word the evaluator does not know: the check fails closed."""


def evaluate(words: list[int], regs: dict[int, int]) -> dict[int, int]:
    """Run MOVZ/MOVN/MOVK (wide immediate), ADD/SUB (immediate, optionally LSL #12) and ADD
    (shifted register, LSL #0) on 64-bit registers, per the Arm ARM; a W destination zero-extends."""
    regs = dict(regs)
    for w in words:
        sf, rd = w >> 31, w & 0x1F
        width_mask = U64 if sf else U32
        if (w >> 23) & 0x3F == 0b100101:  # move wide
            opc, hw, imm16 = (w >> 29) & 3, (w >> 21) & 3, (w >> 5) & 0xFFFF
            shifted = imm16 << (16 * hw)
            if opc == 0:
                value = ~shifted & width_mask
            elif opc == 2:
                value = shifted
            elif opc == 3:
                value = (regs.get(rd, 0) & ~(0xFFFF << (16 * hw))) | shifted
            else:
                raise Unsupported(f"{w:#010x}")
            regs[rd] = value & width_mask
        elif (w >> 23) & 0x3F == 0b100010 and not (w >> 29) & 1:  # add/sub immediate, no flags
            op, sh, imm12, rn = (w >> 30) & 1, (w >> 22) & 1, (w >> 10) & 0xFFF, (w >> 5) & 0x1F
            imm = imm12 << (12 if sh else 0)
            a = regs.get(rn, 0)
            regs[rd] = ((a - imm) if op else (a + imm)) & width_mask
        elif (w >> 24) & 0x1F == 0b01011 and not (w >> 29) & 3 and not (w >> 21) & 1 and not (w >> 10) & 0x3F:
            rm, rn = (w >> 16) & 0x1F, (w >> 5) & 0x1F  # add (shifted register), LSL #0
            regs[rd] = (regs.get(rn, 0) + regs.get(rm, 0)) & width_mask
        else:
            raise Unsupported(f"{w:#010x}")
    return regs


def _words(emit) -> list[int]:
    image = bytearray(64)
    ctx = JitCtx(prog=VerifiedProgram([]), profile=preset("arm64"), image=image, ro_image=0)
    emit(ctx)
    return [int.from_bytes(image[4 * k : 4 * k + 4], "little") for k in range(ctx.idx)]


def mov_u32_value(value: int) -> int:
    """What `emit_a64_mov_i64(tmp, (u32)value)` leaves in x10."""
    return evaluate(_words(lambda ctx: emit_a64_mov_i64(ctx, TMP, value)), {TMP: 0xDEAD_BEEF_DEAD_BEEF})[TMP]


def add_i_addend(imm: int) -> int:
    """What `emit_a64_add_i(1, prg, prg, tmp, imm)` adds to x11 (mod 2**64)."""
    return evaluate(_words(lambda ctx: emit_a64_add_i(ctx, True, PRG, PRG, TMP, imm)), {PRG: 0, TMP: 0})[PRG]


def halves(full: bool = True):
    """Every (hi, lo) with one half over all 2**16 values (or only HALF_CLASSES when not `full`)
    and the other over HALF_CLASSES."""
    for a in range(1 << 16) if full else HALF_CLASSES:
        for b in HALF_CLASSES:
            yield a, b
            yield b, a


@dataclass
class HelperCheck:
    helper: str
    expected: str
    checked: int
    failures: list[int] = field(default_factory=list)


def check_helpers(full: bool = True) -> list[HelperCheck]:
    mov = HelperCheck("emit_a64_mov_i64(tmp, u32 max_entries)", "x10 == max_entries (zero-extended)", 0)
    add = HelperCheck("emit_a64_add_i(1, prg, prg, tmp, s32 imm)", "x11 += (s64)imm (sign-extended)", 0)
    for hi, lo in halves(full):
        value = (hi << 16) | lo
        mov.checked += 1
        if mov_u32_value(value) != value:
            mov.failures.append(value)
        add.checked += 1
        if add_i_addend(value) != s32(value) & U64:
            add.failures.append(value)
    return [mov, add]


def sweep_offsets(ptrs_off: int, chunk: int = 1 << 24, stop: int = 1 << 32) -> dict:
    """All 2**32 max_entries: the byte offset the static load uses, `(s64)(s32)(ptrs_off + 8 * me)`
    (what check_helpers() establishes emit_a64_add_i adds), against the size_t the C code meant."""
    first_wrong, wrong, below = None, 0, 0
    base = np.arange(chunk, dtype=np.uint64)
    for start in range(0, stop, chunk):
        meant = (base + np.uint64(start)) * np.uint64(8) + np.uint64(ptrs_off)  # exact: < 2**36
        used = meant.astype(np.uint32).view(np.int32)  # the s32 parameter (C conversion: modulo 2**32)
        bad = meant != used.astype(np.int64).view(np.uint64)
        n = int(np.count_nonzero(bad))
        if n:
            if first_wrong is None:
                first_wrong = start + int(np.argmax(bad))
            wrong += n
            below += int(np.count_nonzero(used < 0))
    return {"first_wrong": first_wrong, "wrong": wrong, "below_array": below, "wrapped_small": wrong - below}


def imm_edges(max_maps: int, max_pokes: int) -> dict:
    """arm64's decode of every (map index, poisoned, poke index) the verifier can emit."""
    first_map = None
    for m in range(max_maps):
        for poisoned in (False, True):
            got_m, dyn, _ = decode_tail_call_imm(encode_tail_call_imm(m, poisoned, None))
            if (got_m, dyn) != (m, poisoned) and first_map is None:
                first_map = m
    poke_ok = all(
        decode_tail_call_imm(encode_tail_call_imm(m, False, p))[:2] == (m, False)
        for m in range(min(max_maps, 256))
        for p in range(max_pokes)
    )
    return {"first_map_break": first_map, "direct_sites_decode_to_their_map": poke_ok}


@dataclass
class Arm64Report:
    profile: KernelProfile
    helpers: list[HelperCheck]
    offsets: dict
    imm: dict
    demo: dict
    seconds: float
    exhaustive: bool = True

    def to_json(self) -> dict:
        return {
            "helpers": [h.__dict__ for h in self.helpers],
            "offsets": self.offsets,
            "imm": self.imm,
            "demo": self.demo,
            "seconds": round(self.seconds, 3),
            "exhaustive": self.exhaustive,
        }


def demo(profile: KernelProfile, first_wrong: int, voters: dict) -> dict:
    from tcfuzz.analysis.limits import one_site_world
    from tcfuzz.verdict.oracle import judge

    j = judge(one_site_world(profile, first_wrong), **voters)
    return {"max_entries": first_wrong, "verdict": j.verdict.kind.value, "signature": j.verdict.signature}


def hunt(profile: KernelProfile, run_demos: bool = True, old=None, new=None, quick: bool = False) -> Arm64Report:
    """`quick`: the helpers over the half classes only and max_entries below 2**29 (covers the edge)."""
    from tcfuzz import jit_new, jit_old

    started = time.perf_counter()
    helpers = check_helpers(full=not quick)
    offsets = sweep_offsets(profile.ptrs_off, stop=1 << 29 if quick else 1 << 32)
    imm = imm_edges(profile.max_used_maps, profile.poke_tab_max)
    d = demo(profile, offsets["first_wrong"], {"old": old or jit_old.CODEGEN, "new": new or jit_new.CODEGEN}) if run_demos else {}
    return Arm64Report(profile, helpers, offsets, imm, d, time.perf_counter() - started, exhaustive=not quick)


def render(r: Arm64Report) -> str:
    scope = "exhaustive" if r.exhaustive else "QUICK: helpers on half classes, max_entries < 2**29"
    out = [f"arm64 (profile {r.profile.name}, ptrs@{r.profile.ptrs_off:#x}), {scope}, {r.seconds:.1f} s"]
    for h in r.helpers:
        verdict = "holds" if not h.failures else f"FAILS for {len(h.failures)} values, first {h.failures[0]:#x}"
        scope = "each 16-bit half over all values" if r.exhaustive else "half classes"
        out.append(f"  {h.helper}: {h.expected} {verdict} ({h.checked} values: {scope})")
    o = r.offsets
    domain = "all 2**32" if r.exhaustive else "the first 2**29"
    out.append(
        f"  static offset ptrs + max_entries * 8 over {domain} max_entries: wrong from max_entries = "
        f"{o['first_wrong']} on ({o['wrong']} values): {o['below_array']} read below the array, "
        f"{o['wrapped_small']} wrap to a small offset (the header or ptrs[], a struct bpf_prog * used as the target)"
    )
    out.append("  = the x86-64 disp32 edge: emit_a64_add_i() takes `s32 imm`, and its mov sign-extends it")
    i = r.imm
    out.append(
        (
            f"  packed imm: map index breaks at {i['first_map_break']} (as x86-64: the site goes dynamic); "
            if i["first_map_break"] is not None
            else f"  packed imm: every map index below max_used_maps={r.profile.max_used_maps} round-trips; "
        )
        + (
            "every direct site decodes to its own map: bits 16-31 are not read, no poke-index overflow"
            if i["direct_sites_decode_to_their_map"]
            else "a direct site decodes to another map"
        )
    )
    if r.demo:
        out.append(
            f"  world (max_entries {r.demo['max_entries']}, slot 0 filled, key 0): {r.demo['verdict']} {r.demo['signature']}"
        )
    return "\n".join(out)
