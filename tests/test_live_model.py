"""What the live kernel taught jit_old, checked without a kernel: the return thunk as a profile
feature (golden bytes, comments against capstone, Unicorn execution), the JNE the kernel glue
uses, the BTF reader, the kernel lowering's encoding, and the CLI's one-line refusal."""

import struct

import pytest
from conftest import CODEGENS, jit_sample, static_world
from test_golden_grid import assert_comments_match_capstone

from tcfuzz.jit_old.emit import Emitter
from tcfuzz.jit_old.insns import emit_cond_jmp_imm
from tcfuzz.model.bpf import BPF_JMP_IMM, BPF_JNE, R4
from tcfuzz.model.layout import RETURN_THUNK, KernelText
from tcfuzz.model.profile import JumpVariant, KernelProfile

# This machine's kernel (6.18, retpolines, SRSO Safe RET): the profile `tcfuzz kernel profile` detects.
VM_618 = KernelProfile(name="vm-6.18", jump=JumpVariant.RETPOLINE, rethunk=True, max_entries_off=0x4C, ptrs_off=0x138)


def le32(value: int) -> bytes:
    return struct.pack("<i", value)


@pytest.mark.parametrize("codegen", CODEGENS)
def test_rethunk_epilogue_golden_bytes(codegen, cs):
    """emit_return() under cpu_wants_rethunk(): `leave; jmp x86_return_thunk` instead of `leave; ret`."""
    image = jit_sample(CODEGENS[codegen], VM_618, sites=("static",))
    tail = image.code[-6:]
    ip = image.base + len(image.code) - 5
    assert tail == b"\xc9\xe9" + le32(RETURN_THUNK - (ip + 5))
    assert_comments_match_capstone(image, cs)
    assert b"\x39\x56\x4c" in image.code or codegen == "patched"  # cmp dword ptr [rsi + 0x4c], edx


def test_rethunk_targets_the_kernels_thunk_when_given_its_address():
    from tcfuzz.jit_old.jit import X86Jit
    from tcfuzz.model.sample import SampleConfig, verified_sample

    text = KernelText(return_thunk=-0x7EEFBEF5)  # srso_alias_return_thunk as an s64
    prog = verified_sample(SampleConfig(sites=("static",)), CODEGENS["legacy"], VM_618)
    base = -0x3FFFF9B0  # 0xffffffffc0000650
    image = X86Jit(VM_618, text).bpf_int_jit_compile(prog, base)
    ip = base + len(image.code) - 5
    assert image.code[-5:] == b"\xe9" + le32(text.return_thunk - (ip + 5))


def test_a_rethunk_world_runs_under_unicorn_and_agrees():
    from tcfuzz.verdict.oracle import judge

    w = static_world(max_entries=4, slots={1: 1}, keys=(1, 2, 4), profile=VM_618.to_json())
    j = judge(w)
    assert not j.verdict.diverges
    assert [o.ret for o in j.observations["legacy"]] == [0x7A110001, 0x7A110000, 0x7A110000]


def test_jne_golden_bytes(cs):
    p = Emitter()
    addrs = [0, 10, 20, 30]
    emit_cond_jmp_imm(p, BPF_JMP_IMM(BPF_JNE, R4, 1, 2), addrs, 1)
    assert bytes(p.code) == bytes.fromhex("4883f901") + b"\x75" + bytes([30 - 10])  # cmp rcx, 1; jne +20
    (ins,) = cs.disasm(bytes(p.code[4:]), 0)
    assert ins.mnemonic == "jne"


def test_btf_reader_reads_back_what_the_func_btf_writer_wrote():
    from tcfuzz.live.btf import KIND_FUNC, KIND_FUNC_PROTO, KIND_INT, Btf, func_btf, func_info

    btf = Btf(func_btf(2))
    assert btf.kinds == [0, KIND_INT, KIND_FUNC_PROTO, KIND_FUNC, KIND_FUNC]
    assert btf.names[1] == "int" and btf.names[3] == "f"
    assert func_info([0, 12]) == struct.pack("<IIII", 0, 3, 12, 4)


def test_kernel_lowering_encodes_map_fds_and_subprog_calls():
    from tcfuzz.live.bpf import BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE
    from tcfuzz.live.lower import COUNTS, INPUTS, MapSymbol, encode, lower_program
    from tcfuzz.model.world import World

    w = World.from_json(
        {
            "schema": "tcfuzz-world/1",
            "profile": "default",
            "maps": [{"id": 0, "max_entries": 2}],
            "programs": [{"id": 0, "subprog": True, "sites": [{"maps": [0]}]}],
            "runs": [{"entry": 0}],
        }
    )
    fns = lower_program(w, w.programs[0])
    fds = {MapSymbol(glue=COUNTS): 7, MapSymbol(glue=INPUTS): 8, MapSymbol(map_id=0): 9}
    raw = encode(fns, fds)
    insns = [struct.unpack_from("<BBhi", raw, 8 * i) for i in range(len(raw) // 8)]
    assert insns[0] == (0x18, 0x02 | BPF_PSEUDO_MAP_VALUE << 4, 0, 7) and insns[1][3] == 0  # r2 = &counts[0]
    call = next(i for i, x in enumerate(insns) if x[0] == 0x85 and x[1] >> 4 == 1)
    assert call + 1 + insns[call][3] == len(fns[0].insns)  # the pseudo call reaches the subprogram
    assert (0x18, 0x02 | BPF_PSEUDO_MAP_FD << 4, 0, 9) in insns  # r2 = the prog array's fd


def test_kernel_commands_refuse_in_one_line_without_a_kernel(monkeypatch, capsys):
    from tcfuzz.cli.main import main
    from tcfuzz.live import available

    monkeypatch.setattr(available, "unavailable", lambda: "bpf() refused (root with CAP_BPF needed): Operation not permitted")
    assert main(["kernel", "jit", "examples/self-call.json"]) == 2
    assert capsys.readouterr().err == (
        "tcfuzz kernel: error: bpf() refused (root with CAP_BPF needed): Operation not permitted\n"
    )
