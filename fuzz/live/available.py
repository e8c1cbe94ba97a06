"""Can this process use the running kernel as a voter? One line saying why not, or None."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

from tcfuzz.live import bpf
from tcfuzz.live.btf import VMLINUX

JIT_ENABLE = Path("/proc/sys/net/core/bpf_jit_enable")


@functools.lru_cache(maxsize=1)
def unavailable() -> str | None:
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return f"the live kernel voter needs Linux on x86-64 (this is {platform.system()} {platform.machine()})"
    try:
        if JIT_ENABLE.read_text().strip() != "1":
            return f"{JIT_ENABLE} is not 1: the x86-64 JIT is off"
    except OSError as e:
        return f"{JIT_ENABLE}: {e.strerror}"
    if not VMLINUX.exists():
        return f"no BTF at {VMLINUX} (CONFIG_DEBUG_INFO_BTF)"
    try:
        with bpf.map_create(bpf.BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 1, "tcfuzz_probe"):
            pass
    except bpf.BpfError as e:
        return f"bpf() refused (root with CAP_BPF needed): {e.strerror}"
    try:
        from tcfuzz.live.detect import kallsyms

        kallsyms()
    except Exception as e:  # any reason is the one-line answer
        return f"/proc/kallsyms: {e}"
    return None
