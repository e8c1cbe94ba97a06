"""Divergences already understood, by cause rather than by signature (a cause shows up under many
signatures: a fault here, a shorter trace there). The property suite and the fuzzer's summary set
these apart so that anything else stands out; `tcfuzz run/repro` still report them in full.

    shared-label    a function of the patched codegen holds both a static and a dynamic indirect
                    site: their lengths differ by 5 bytes but they share tail_call_indirect_label.
    disp-wrap       a static site's map has max_entries with offsetof(ptrs) + max_entries * 8 past
                    INT_MAX: the disp32 computed into an int wraps (arm64: emit_a64_add_i()'s
                    s32 immediate wraps at the same max_entries).
"""

from __future__ import annotations

from tcfuzz.model.lower import site_aux
from tcfuzz.model.semantics import is_direct
from tcfuzz.model.world import World

INT_MAX = 2**31 - 1


def static_disp_wraps(ptrs_off: int, max_entries: int) -> bool:
    return ptrs_off + max_entries * 8 > INT_MAX


def known_causes(world: World) -> set[str]:
    causes = set()
    for prog in world.programs:
        kinds = set()
        for site in prog.sites:
            aux = site_aux(world, site)
            # x86-64 emits a direct site as a poke-patched jump; arm64 has no direct tail calls and
            # emits it on the static path, max_entries and all
            if is_direct(prog.env, aux) and world.profile.arch == "x86_64":
                continue
            kinds.add("dynamic" if aux.map_poisoned else "static")
            if not aux.map_poisoned and static_disp_wraps(world.profile.ptrs_off, aux.map.max_entries):
                causes.add("disp-wrap")
        # x86-64 only: each arm64 sequence patches its branches to its own end
        if kinds == {"static", "dynamic"} and world.profile.arch == "x86_64":
            causes.add("shared-label")
    return causes
