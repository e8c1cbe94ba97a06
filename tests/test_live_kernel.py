"""The running kernel as ground truth (tests marked `kernel`): the bpf() layer, the detected
profile, byte equality of every corpus world with jit_old, the fourth voter, the planted
`jbe -> jb`, the audit, and that nothing is left loaded, even by an interrupted run.

They run wherever bpf() works (root, x86-64 JIT on, BTF) and are skipped with one line elsewhere."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import capstone
import pytest

from tcfuzz.live.available import unavailable

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(unavailable() is not None, reason=f"live kernel: {unavailable()}")]

ROOT = Path(__file__).resolve().parent.parent
WORLDS = sorted((ROOT / "corpus").rglob("*.json")) + sorted((ROOT / "examples").glob("*.json"))
JB = "tcfuzz.selftest.mutants:LEGACY_BOUND_CHECK_JB"


def world_of(path):
    from tcfuzz.live.lower import adapt
    from tcfuzz.triage.artifacts import read_document

    return adapt(read_document(path).world)[0]


def gone(progs, maps, timeout=10.0):
    """Prog arrays are cleared by a work item and programs freed after an RCU grace period: poll."""
    from tcfuzz.live.bpf import loaded_ids

    deadline = time.monotonic() + timeout
    while True:
        live_progs, live_maps = loaded_ids()
        if not (set(progs) & live_progs or set(maps) & live_maps):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_bpf_layer_maps_and_a_refused_load_with_the_verifiers_reason():
    from tcfuzz.live import bpf

    with bpf.map_create(bpf.BPF_MAP_TYPE_ARRAY, 4, 8, 2, "t_array") as m:
        bpf.map_update(m, (1).to_bytes(4, "little"), (0xDEAD).to_bytes(8, "little"))
        assert bpf.map_lookup(m, (1).to_bytes(4, "little"), 8) == (0xDEAD).to_bytes(8, "little")
    # r0 = r2; exit: r2 is not initialised at entry
    insns = bytes([0xBF, 0x20, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0])
    with pytest.raises(bpf.BpfError) as e:
        bpf.prog_load(bpf.BPF_PROG_TYPE_SCHED_CLS, insns, "t_refused")
    assert "R2 !read_ok" in e.value.reason


def test_detected_profile_comes_from_btf_and_the_image():
    from tcfuzz.live.btf import Btf
    from tcfuzz.live.detect import detect

    d = detect()
    btf = Btf.vmlinux()
    assert d.profile.max_entries_off == btf.offsetof("bpf_array", "map.max_entries")
    assert d.profile.ptrs_off == btf.offsetof("bpf_array", "ptrs")
    assert d.profile.kernel == os.uname().release
    # the spectre_v2 line agrees with the jump variant read from the image
    if "Retpolines" in d.evidence.get("spectre_v2", ""):
        assert d.profile.jump.value == "retpoline"


@pytest.mark.parametrize("path", WORLDS, ids=[str(p.relative_to(ROOT)) for p in WORLDS])
def test_kernel_bytes_equal_jit_old(path):
    from tcfuzz.live.detect import detect
    from tcfuzz.live.jitcmp import compare_world
    from tcfuzz.live.session import MapTooLarge

    try:
        r = compare_world(world_of(path), detect())
    except MapTooLarge as e:
        pytest.skip(str(e))
    assert r.functions and r.equal, [f.difference for f in r.functions if not f.equal] or r.refused


@pytest.mark.parametrize("path", WORLDS, ids=[str(p.relative_to(ROOT)) for p in WORLDS])
def test_kernel_voter_agrees(path):
    from tcfuzz.triage.artifacts import read_document
    from tcfuzz.verdict.kernel_vote import judge_with_kernel

    _, _, kv = judge_with_kernel(read_document(path).world)
    assert not kv.disagrees, str(kv)


def test_planted_jb_is_caught_by_bytes_and_by_execution():
    from tcfuzz.codegens import load_codegen
    from tcfuzz.live.detect import detect
    from tcfuzz.live.jitcmp import compare_world
    from tcfuzz.verdict.kernel_vote import judge_with_kernel

    path = ROOT / "corpus" / "kernel" / "tailcall-out-of-range.json"
    mutant = load_codegen(JB)
    r = compare_world(world_of(path), detect(), mutant)
    assert not r.equal
    assert any("kernel `jbe" in f.difference and "jit_old `jb " in f.difference for f in r.functions)
    _, _, kv = judge_with_kernel(world_of(path), mutant)
    assert kv.kind == "KERNEL_LEGACY_DIFFERS"


def test_direct_sites_are_compared_after_every_map_operation():
    from tcfuzz.live.detect import detect
    from tcfuzz.live.jitcmp import compare_world

    r = compare_world(world_of(ROOT / "examples" / "direct-update-delete.json"), detect())
    assert r.equal and {f.when for f in r.functions} > {"load"}


def test_audit_says_fixed_from_execution():
    from tcfuzz.live.audit import AUDIT, audit

    results = {r.bug.scenario: r.status for r in (audit(bug, ROOT / "corpus") for bug in AUDIT)}
    # this kernel (>= v6.10 on the CI VMs) has every fix; a scenario that cannot tell is not FIXED
    assert set(results.values()) <= {"FIXED", "UNCHECKED"} and "FIXED" in results.values()
    assert results["kernel/tailcall-null-slot-budget.json"] == "FIXED"


def test_nothing_is_left_loaded():
    from tcfuzz.live.bpf import prog_info
    from tcfuzz.live.session import LiveWorld

    world = world_of(ROOT / "corpus" / "kernel" / "tailcall-poke-update-delete.json")
    with LiveWorld(world) as live:
        progs = [prog_info(fd).id for fd in live.progs.values()]
        for run in world.runs:
            live.run(run)
    assert progs and gone(progs, [])


CHILD = """
import sys, time
from tcfuzz.live.bpf import prog_info
from tcfuzz.live.lower import adapt
from tcfuzz.live.session import LiveWorld
from tcfuzz.triage.artifacts import read_document
world = adapt(read_document(sys.argv[1]).world)[0]
with LiveWorld(world) as live:
    print(" ".join(str(prog_info(fd).id) for fd in live.progs.values()), flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_run_leaves_nothing_behind(sig):
    path = ROOT / "examples" / "self-call.json"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        progs = [int(x) for x in child.stdout.readline().split()]
        assert progs and not gone(progs, [], timeout=0.2)  # loaded while the child lives
        child.send_signal(sig)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert gone(progs, [])


def test_cli_kernel_jit_counts_and_the_mutant_exit_status(capsys):
    from tcfuzz.cli.main import main

    assert main(["kernel", "jit", str(ROOT / "examples" / "self-call.json")]) == 0
    assert "1/1 images equal" in capsys.readouterr().out
    assert main(["kernel", "jit", "--old", JB, str(ROOT / "corpus" / "kernel" / "tailcall-out-of-range.json")]) == 1
    assert main(["run", "--kernel", str(ROOT / "examples" / "self-call.json")]) == 0
    assert "KERNEL_AGREES" in capsys.readouterr().out


def test_an_unpriv_map_gets_the_masked_sequence():
    from tcfuzz.live.detect import detect
    from tcfuzz.live.jitcmp import compare_world

    r = compare_world(world_of(ROOT / "corpus" / "edges" / "unpriv-64-bit-bound-check.json"), detect())
    cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    asm = [f"{i.mnemonic} {i.op_str}" for f in r.functions for i in cs.disasm(f.kernel, 0)]
    assert r.equal and any(a.startswith("and edx, ") for a in asm)
