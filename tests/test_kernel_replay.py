"""A counterexample replayed on one sequence at the kernel's upper-half addresses
(fuzz/analysis/kernel_replay.py): the built-in codegens agree there, and a mutant that tells pointers
apart by bit 63 is shown diverging, which no world of the low guest layout can show."""

import pytest

from tcfuzz import jit_new, jit_old
from tcfuzz.analysis.kernel_replay import TEXT_HI, kernel_state, replay_at_kernel_addresses, run_sequence
from tcfuzz.analysis.prove import Config, prove, replay, site_sequence
from tcfuzz.selftest.systematic import all_mutations

CONFIGS = [
    Config(p, k, d, c)
    for p in ("default", "ibt", "retpoline", "lfence")
    for k in ("static", "dynamic")
    for d, c in ((0, "none"), (20, "boundary"))
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_the_built_in_codegens_agree_at_kernel_addresses(cfg):
    ways = set()
    for count in (0, 32, 33):
        for index, slot in ((1, 1), (1, 0), (3, 1), (4, 1), (1 << 32 | 1, 1)):
            regs, cells = kernel_state(cfg, {"index": index, "max_entries_field": 4, "slot": slot, "count": count})
            a = run_sequence(site_sequence(jit_old.CODEGEN, cfg)[0], regs, cells)
            assert a == run_sequence(site_sequence(jit_new.CODEGEN, cfg)[0], regs, cells), (count, index, slot)
            ways.add(a["to"][0])
            if a["to"][0] == "jump":
                assert a["to"][1] >= 1 << 63  # the target really is an upper-half address
    assert ways == {"out", "jump"}


def test_a_bit_63_mutant_replays_at_kernel_addresses_only():
    jle = next(m for m in all_mutations() if m.id == "emit/jit_new/tail_call.py:53 `je <out>`/je->jle").codegen
    cfg = Config("default", "static", 0, "none")
    r = prove(cfg, jit_old.CODEGEN, jle, show_necessary=False)
    assert r.counterexample is not None
    assert replay(cfg, r.counterexample, jit_old.CODEGEN, jle) is None  # the guest's objects lie below 2**63
    signature = replay_at_kernel_addresses(cfg, r.counterexample, jit_old.CODEGEN, jle, jit_new.CODEGEN)
    assert signature == f"KERNEL_ADDRESSES/to: legacy jump {hex(TEXT_HI + 12)}, {jle.name} out +0"
