"""`tcfuzz limits`: where the patched codegen's packed fields stop round-tripping.

1. The tail-call insn's imm (jit_new/imm.py): the verifier packs (map index, poisoned, poke index + 1)
   into a C int and the JIT unpacks it. Over the domain the verifier can produce — indirect sites
   (map index x poisoned) and direct sites (map index x poke index) — every encode -> decode round
   trip is checked; the first value at which each field breaks is reported with what the JIT then
   emits instead, and a world or a JIT run that shows it.
2. The static path's disp32 `offsetof(ptrs) + max_entries * 8`, computed into an int: the smallest
   max_entries that no longer fits, and what the patched code reads there, run under Unicorn.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from tcfuzz.jit_new.imm import decode_tail_call_imm, encode_tail_call_imm
from tcfuzz.model.bpf import BPF_EXIT_INSN, BPF_JMP, BPF_TAIL_CALL, Insn
from tcfuzz.model.interfaces import JitError, MapRef, PokeDescriptor, VerifiedProgram
from tcfuzz.model.layout import image_base
from tcfuzz.model.profile import KernelProfile
from tcfuzz.model.world import SCHEMA, World

EXHAUSTIVE_MAX = 4_000_000  # round trips; past that the product is swept field by field
INT_MAX = 2**31 - 1


@dataclass
class Break:
    field: str  # "map_index", "poke_index"
    first: int  # the first value that does not round-trip
    decoded: dict  # what the JIT decodes for it
    consequence: str  # what the JIT then emits
    demo: dict = dataclasses.field(default_factory=dict)  # how it was shown: world + verdict, or the JIT's error


@dataclass
class Report:
    max_used_maps: int
    poke_tab_max: int
    checked: int
    exhaustive: bool
    breaks: list[Break]
    disp: dict
    seconds: float = 0.0

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["imm"] = out.pop("breaks")
        out["seconds"] = round(self.seconds, 3)
        return out


PATCH_CODEC = (encode_tail_call_imm, decode_tail_call_imm)


def round_trips(map_index: int, poisoned: bool, poke: int | None, codec=PATCH_CODEC) -> bool:
    encode, decode = codec
    m, dyn, imm16 = decode(encode(map_index, poisoned, poke))
    if poke is not None:
        return imm16 == poke + 1  # direct: only the poke index is used
    return imm16 == 0 and dyn == poisoned and m == map_index


def domain(max_maps: int, max_pokes: int):
    """(map index, poisoned, poke) triples the verifier can emit: direct sites are never poisoned."""
    for m in range(max_maps):
        yield m, False, None
        yield m, True, None
        for p in range(max_pokes):
            yield m, False, p


def first_breaks(max_maps: int, max_pokes: int, codec=PATCH_CODEC) -> tuple[int | None, int | None, int, bool]:
    """First failing map index (indirect sites) and poke index (direct sites), the round trips
    checked, and whether the whole product was enumerated."""
    total = max_maps * (2 + max_pokes)
    first_map = first_poke = None
    if total <= EXHAUSTIVE_MAX:
        checked = 0
        for m, poisoned, poke in domain(max_maps, max_pokes):
            checked += 1
            if not round_trips(m, poisoned, poke, codec):
                if poke is None and (first_map is None or m < first_map):
                    first_map = m
                if poke is not None and (first_poke is None or poke < first_poke):
                    first_poke = poke
        return first_map, first_poke, checked, True
    # Field by field, each over its whole range, the other at every value that can matter for it.
    checked = 0
    for m in range(max_maps):
        checked += 2
        if not (round_trips(m, False, None, codec) and round_trips(m, True, None, codec)):
            first_map = m
            break
    for p in range(max_pokes):
        for m in {0, min(255, max_maps - 1), max_maps - 1}:
            checked += 1
            if not round_trips(m, False, p, codec):
                first_poke = p if first_poke is None else min(first_poke, p)
        if first_poke is not None:
            break
    return first_map, first_poke, checked, False


def describe_map_break(m: int, codec=PATCH_CODEC) -> tuple[dict, str]:
    got_map, dyn, imm16 = codec[1](codec[0](m, False, None))
    decoded = {"map_index": got_map, "dynamic": dyn, "imm16": imm16}
    if imm16:
        return decoded, f"a direct call through poke_tab[{imm16 - 1}] instead of an indirect one"
    if dyn:
        return decoded, (
            f"the dynamic sequence (run-time max_entries and bpf_func loads) for a static site: "
            f"used_maps[{got_map}] is read but not used"
        )
    return decoded, f"the static sequence with used_maps[{got_map}]'s max_entries baked in"


def describe_poke_break(p: int, codec=PATCH_CODEC) -> tuple[dict, str]:
    got_map, dyn, imm16 = codec[1](codec[0](0, False, p))
    decoded = {"map_index": got_map, "dynamic": dyn, "imm16": imm16}
    if imm16 == 0:
        return decoded, "an indirect (static) sequence: the direct call silently becomes indirect"
    if imm16 < 0:
        return decoded, f"the direct sequence with &poke_tab[{imm16 - 1}]: a read before the poke table"
    return decoded, f"the direct sequence with the wrong descriptor poke_tab[{imm16 - 1}]"


def demo_map_break(profile: KernelProfile, m: int, voters: dict) -> dict:
    """A world with the prog array at used_maps[m] (fillers before it), a static site calling slot 0."""
    if m + 1 > 2**14:
        return {"world": None, "why": f"used_maps[{m}] needs more maps than tcfuzz's address layout holds (16384)"}
    from tcfuzz.verdict.oracle import judge

    maps = [{"id": 1 + i, "kind": "filler", "max_entries": 1} for i in range(m)]
    maps.append({"id": 0, "max_entries": 2, "slots": {"0": 1}})
    prof = profile.replace(name=f"{profile.name}+maps{m + 1}", max_used_maps=m + 1).to_json()
    world = World.from_json(
        {
            "schema": SCHEMA,
            "profile": prof,
            "maps": maps,
            "programs": [{"id": 0, "sites": [{"maps": [0]}]}, {"id": 1}],
            "runs": [
                {"entry": 0, "ctx": [{"prog": 0, "site": 0, "key": 0}]},
                {"entry": 0, "ctx": [{"prog": 0, "site": 0, "key": 2}]},
            ],
        }
    )
    v = judge(world, **voters).verdict
    return {"world": world.to_json(), "verdict": v.kind.value, "signature": v.signature}


def demo_poke_break(profile: KernelProfile, p: int, new, codec=PATCH_CODEC) -> dict:
    """The JIT itself on one direct site whose descriptor is poke_tab[p] of a table that size: a
    world with p + 1 direct sites would not fit an image slot, and the consequence is at JIT time."""
    target = MapRef(0, 2)
    tab = [PokeDescriptor(target, 0, 0) for _ in range(p + 1)]
    insn = Insn(BPF_JMP | BPF_TAIL_CALL).with_imm(codec[0](0, False, p))
    prog = VerifiedProgram([insn, BPF_EXIT_INSN()], used_maps=[target], poke_tab=tab)
    try:
        new.jit(prog, profile.replace(poke_tab_max=p + 1), image_base(0))
    except JitError as e:
        return {"jit": f"{type(e).__name__}: {e}"}
    return {"jit": "compiled (no fault)"}


def first_disp_overflow(ptrs_off: int) -> int:
    """Smallest max_entries with ptrs_off + max_entries * 8 > INT_MAX (the disp32 leaves int)."""
    return (INT_MAX - ptrs_off) // 8 + 1


def one_site_world(profile: KernelProfile, max_entries: int) -> World:
    """The smallest world that runs a static site over a map of `max_entries` (slot 0 filled): where
    an overflow of the static path's immediates shows under execution."""
    return World.from_json(
        {
            "schema": SCHEMA,
            "profile": profile.to_json(),
            "maps": [{"id": 0, "max_entries": max_entries, "slots": {"0": 1}}],
            "programs": [{"id": 0, "sites": [{"maps": [0]}]}, {"id": 1}],
            "runs": [{"entry": 0, "ctx": [{"prog": 0, "site": 0, "key": 0}]}],
        }
    )


def demo_disp(profile: KernelProfile, voters: dict) -> dict:
    from tcfuzz.jit_new.tail_call import static_ptrs_disp
    from tcfuzz.verdict.oracle import judge

    me = first_disp_overflow(profile.ptrs_off)
    disp = static_ptrs_disp(profile, me)
    world = one_site_world(profile, me)
    j = judge(world, **voters)
    fault = j.observations["patched"][0].fault
    return {
        "first_max_entries": me,
        "product": profile.ptrs_off + me * 8,
        "disp32": disp,
        "reads": f"[rsi + rdx*8 {'-' if disp < 0 else '+'} {abs(disp):#x}] instead of "
        f"[rsi + rdx*8 + {profile.ptrs_off + me * 8:#x}]",
        "verdict": j.verdict.kind.value,
        "signature": j.verdict.signature,
        "patched_fault": str(fault) if fault else None,
        "world": world.to_json(),
    }


def hunt(profile: KernelProfile, run_demos: bool = True, old=None, new=None) -> Report:
    """The imm codec is `new.imm_codec` (encode, decode) when the codegen has one, else patch 2/4's;
    the demonstrations run `old` and `new`."""
    from tcfuzz import jit_new, jit_old

    old, new = old or jit_old.CODEGEN, new or jit_new.CODEGEN
    codec = new.imm_codec or PATCH_CODEC
    voters = {"old": old, "new": new}
    started = time.perf_counter()
    first_map, first_poke, checked, exhaustive = first_breaks(profile.max_used_maps, profile.poke_tab_max, codec)
    breaks = []
    if first_map is not None:
        decoded, consequence = describe_map_break(first_map, codec)
        breaks.append(
            Break("map_index", first_map, decoded, consequence, demo_map_break(profile, first_map, voters) if run_demos else {})
        )
    if first_poke is not None:
        decoded, consequence = describe_poke_break(first_poke, codec)
        breaks.append(
            Break(
                "poke_index",
                first_poke,
                decoded,
                consequence,
                demo_poke_break(profile, first_poke, new, codec) if run_demos else {},
            )
        )
    disp = demo_disp(profile, voters) if run_demos else {"first_max_entries": first_disp_overflow(profile.ptrs_off)}
    return Report(profile.max_used_maps, profile.poke_tab_max, checked, exhaustive, breaks, disp, time.perf_counter() - started)


def render(r: Report) -> str:
    out = [
        f"imm round trip: {r.checked} (map index, poisoned, poke index) values for max_used_maps="
        f"{r.max_used_maps}, poke_tab_max={r.poke_tab_max}"
        + ("" if r.exhaustive else " (field by field: the full product is too large)")
        + f", {r.seconds:.2f} s"
    ]
    if not r.breaks:
        out.append("  every value round-trips: no overflow within these limits")
    for b in r.breaks:
        out.append(f"  {b.field}: first failure at {b.first}; the JIT decodes {b.decoded}")
        out.append(f"    and emits {b.consequence}")
        if "verdict" in b.demo:
            out.append(
                f"    world (prog array at used_maps[{b.first}]): {b.demo['verdict']}"
                + (f" {b.demo['signature']}" if b.demo["signature"] else "")
            )
        elif b.demo:
            out.append(f"    {b.demo.get('jit') or b.demo.get('why')}")
    d = r.disp
    out.append(f"static disp32 offsetof(ptrs) + max_entries * 8: leaves int at max_entries = {d['first_max_entries']}")
    if "disp32" in d:
        out.append(f"  the patched code reads {d['reads']}")
        out.append(f"  world (max_entries {d['first_max_entries']}, slot 0 filled, key 0): {d['verdict']} {d['signature']}")
    return "\n".join(out)
