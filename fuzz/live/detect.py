"""The running kernel's profile, detected rather than assumed.

    struct offsets      BTF: offsetof(struct bpf_array, map.max_entries), (…, ptrs),
                        offsetof(struct bpf_prog, bpf_func)
    IBT                 the probe program's image starts with endbr64
    jump variant        what follows `add rcx, X86_TAIL_CALL_OFFSET` in the probe's indirect tail
                        call: `jmp __x86_indirect_thunk_rcx` (retpoline), `lfence; jmp rcx`,
                        `jmp rcx; int3`, `jmp rcx`
    return              the last instruction: `jmp <return thunk>` (rethunk), `ret; int3` (SLS), `ret`
    addresses           __x86_indirect_thunk_array and __bpf_call_base from /proc/kallsyms; the
                        return thunk is the probe's jump target (x86_return_thunk is a variable)

/sys/devices/system/cpu/vulnerabilities says why (spectre_v2 "Retpolines", spec_rstack_overflow
"Safe RET"); it is reported beside the detection, never used instead of it.
"""

from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import capstone

from tcfuzz.live.btf import Btf
from tcfuzz.live.session import LiveWorld
from tcfuzz.model.layout import KernelText
from tcfuzz.model.profile import JumpVariant, KernelProfile
from tcfuzz.model.world import SCHEMA, World

VULNERABILITIES = Path("/sys/devices/system/cpu/vulnerabilities")
KALLSYMS = Path("/proc/kallsyms")
ENDBR64 = bytes.fromhex("f30f1efa")

# One program, one indirect site (key from the inputs map): the probe every detection reads.
PROBE = {
    "schema": SCHEMA,
    "profile": "default",
    "maps": [{"id": 0, "max_entries": 1}],
    "programs": [{"id": 0, "sites": [{"maps": [0]}]}],
    "runs": [{"entry": 0}],
}


class DetectError(RuntimeError):
    pass


def s64(address: int) -> int:
    """A kernel address as the JIT's pointer arithmetic sees it: `func - (ip + 5)` is an s64
    difference, so in the passes before the image exists (ip near 0) a target in the top 2 GiB
    (kernel text, the module area where BPF images live) is still a rel32."""
    address &= (1 << 64) - 1
    return address - (1 << 64) if address >> 63 else address


@functools.lru_cache(maxsize=1)
def kallsyms() -> dict[str, int]:
    """name -> address of vmlinux text symbols (root with kptr_restrict 0, or every address is 0)."""
    out: dict[str, int] = {}
    with KALLSYMS.open() as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[1] in "tT":
                out.setdefault(parts[2], int(parts[0], 16))
    if not any(out.values()):
        raise DetectError("/proc/kallsyms shows no addresses (kptr_restrict)")
    return out


def symbol(name: str) -> int:
    try:
        return kallsyms()[name]
    except KeyError:
        raise DetectError(f"{name} not in /proc/kallsyms") from None


def symbol_at(address: int, suffix: str) -> str:
    """A name at this address ending in `suffix` (aliases share addresses), or ""."""
    return next((name for name, a in kallsyms().items() if a == address and name.endswith(suffix)), "")


@dataclass(frozen=True)
class Detected:
    profile: KernelProfile
    text: KernelText
    return_thunk_name: str
    evidence: dict[str, str] = field(default_factory=dict)


def _jump_variant(code: bytes, base: int, thunk_rcx: int) -> JumpVariant:
    cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    insns = list(cs.disasm(code, base))
    for i, ins in enumerate(insns):
        if ins.mnemonic == "add" and ins.op_str.startswith("rcx, "):
            after = insns[i + 1]
            if after.mnemonic == "jmp" and after.op_str == hex(thunk_rcx):
                return JumpVariant.RETPOLINE
            if after.mnemonic == "lfence":
                return JumpVariant.LFENCE
            if after.bytes == b"\xff\xe1":
                return JumpVariant.PLAIN_INT3 if insns[i + 2].bytes == b"\xcc" else JumpVariant.PLAIN
    raise DetectError("probe image: no indirect tail call found")


@functools.lru_cache(maxsize=1)
def detect() -> Detected:
    btf = Btf.vmlinux()
    with LiveWorld(World.from_json(PROBE)) as live:
        info = live.info(0)
    base, code = info.functions()[0]
    thunk_array = symbol("__x86_indirect_thunk_array")
    jump = _jump_variant(code, base, thunk_array + 32 * 1)
    rethunk, sls, return_thunk, thunk_name = False, False, 0, ""
    if code[-5] == 0xE9:
        return_thunk = base + len(code) + struct.unpack_from("<i", code, len(code) - 4)[0]
        thunk_name = symbol_at(return_thunk, "return_thunk")
        if not thunk_name:
            raise DetectError(f"probe image ends in jmp {return_thunk:#x}, not a return thunk")
        rethunk = True
    elif code[-2:] == b"\xc3\xcc":
        sls = True
    elif code[-1:] != b"\xc3":
        raise DetectError(f"probe image ends in {code[-5:].hex()}: no return found")
    profile = KernelProfile(
        name="live",
        ibt=code.startswith(ENDBR64),
        jump=jump,
        sls=sls,
        rethunk=rethunk,
        max_entries_off=btf.offsetof("bpf_array", "map.max_entries"),
        ptrs_off=btf.offsetof("bpf_array", "ptrs"),
        bpf_func_off=btf.offsetof("bpf_prog", "bpf_func"),
        kernel=os.uname().release,
    )
    text = KernelText(
        indirect_thunk_array=s64(thunk_array), return_thunk=s64(return_thunk), call_base=s64(symbol("__bpf_call_base"))
    )
    evidence = {
        p.name: p.read_text().strip()
        for p in (VULNERABILITIES / "spectre_v2", VULNERABILITIES / "spec_rstack_overflow")
        if p.exists()
    }
    return Detected(profile, text, thunk_name, evidence)
