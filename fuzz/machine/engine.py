"""One reusable Unicorn machine with the guest layout of model/layout.py.

Unicorn 2.1.4 rules this module follows (each measured on unicorn 2.1.4; pyproject.toml pins the minor):
  * fixed regions are mapped once, largest first (the ram_addr ordering bug), lazily mapped pages
    are the smallest size, so the order stays non-increasing;
  * the code regions (the JIT region, kernel text) are host memory mapped with mem_map_ptr, and
    code is written into it directly: uc.mem_write to a region without UC_PROT_WRITE makes it
    writable and read-only again, two memory transactions, 200-400 µs a write;
  * every host write to code is followed by ctl_remove_cache() (stale translations otherwise), and
    code is written only where the bytes differ (a write drops the page's translations);
  * runs stop on a `hlt` at HARNESS_RETURN and are bounded by `count`, never by `timeout`;
  * faults are caught and the engine reused as is;
  * per-world hooks and the hooks' register reads go through the binding's C layer
    (unicorn.unicorn_py3.unicorn: uclib, uc_hook_h, the HOOK_*_CFUNC types, Uc._uch and
    Uc._hook_exception) with one ctypes callback per kind and engine: hook_add builds a ctypes
    closure per hook, ~25 µs of Python. A callback's exception still stops the run and comes out
    of emu_start. Many hooks at once cost every access or instruction they could cover: hooks are
    deleted with their world, never pooled.

Allocations (prog arrays, other maps) are registered with their exact [start, end). A data access
to an unmapped page inside one maps that page on the spot (so a 2**32-1-entry array costs only the
pages touched); an access outside every allocation stops the run with a fault. The tail of an
allocation's last page is guarded one of two ways: exactly, by a memory hook that stops at the read
(per-case runs), or, where a hook would halve the speed (batches), by filling it with POISON: what
can be read there is a pointer, and the poison pointer faults wherever it is used, at an address
that says where it came from.
"""

from __future__ import annotations

import ctypes
import itertools
import mmap
from collections.abc import Callable
from dataclasses import dataclass

from unicorn import (
    UC_ARCH_ARM64,
    UC_ARCH_X86,
    UC_HOOK_CODE,
    UC_HOOK_INSN,
    UC_HOOK_MEM_READ,
    UC_HOOK_MEM_UNMAPPED,
    UC_HOOK_MEM_WRITE,
    UC_MEM_FETCH_UNMAPPED,
    UC_MODE_64,
    UC_MODE_ARM,
    UC_PROT_EXEC,
    UC_PROT_READ,
    UC_PROT_WRITE,
    Uc,
    UcError,
)
from unicorn.unicorn_const import UC_ERR_OK
from unicorn.unicorn_py3 import unicorn as _binding  # the ctypes layer (see above; pinned minor: 2.1)
from unicorn.x86_const import UC_X86_INS_SYSCALL, UC_X86_INS_SYSENTER, UC_X86_REG_RIP

from tcfuzz.model.interfaces import FaultKind
from tcfuzz.model.layout import (
    ARRAY_BASE,
    ARRAY_SLOT,
    BATCH_BASE,
    BATCH_SIZE,
    CTX_BASE,
    CTX_SIZE,
    IMAGE_SLOT,
    JIT_BASE,
    KTEXT_BASE,
    MAX_PROGS,
    PAGE,
    PROG_BASE,
    STACK_BASE,
    STACK_SIZE,
)

JIT_SIZE = IMAGE_SLOT * MAX_PROGS
KTEXT_SIZE = 2 * PAGE  # thunks, harness return; the batch driver in the second page
PROG_SIZE = PAGE
INT3_FILL = b"\xcc"  # the kernel fills JIT image holes with int3 (jit_fill_hole)
# arm64 jit_fill_hole(): AARCH64_BREAK_FAULT (brk #0x100) in every word
BRK_FILL = (0xD4202000).to_bytes(4, "little")
ARCH = {"x86_64": ((UC_ARCH_X86, UC_MODE_64), INT3_FILL), "arm64": ((UC_ARCH_ARM64, UC_MODE_ARM), BRK_FILL)}
KEEP_PAGES = 32  # at most this many of the last world's lazily mapped pages are kept for the next
POISON = 0xF_FFF0_0000_0000  # unmapped, below 2**52, above every array slot
POISON_SPAN = 1 << 32

# (base, size, perms), mapped in this order: largest first.
FIXED_REGIONS = sorted(
    [
        (JIT_BASE, JIT_SIZE, UC_PROT_READ | UC_PROT_EXEC),
        (STACK_BASE, STACK_SIZE, UC_PROT_READ | UC_PROT_WRITE),
        (BATCH_BASE, BATCH_SIZE, UC_PROT_READ | UC_PROT_WRITE),
        (KTEXT_BASE, KTEXT_SIZE, UC_PROT_READ | UC_PROT_EXEC),
        (PROG_BASE, PROG_SIZE, UC_PROT_READ | UC_PROT_WRITE),
        (CTX_BASE, CTX_SIZE, UC_PROT_READ | UC_PROT_WRITE),
    ],
    key=lambda r: -r[1],
)


@dataclass
class Allocation:
    """A kernel object's memory [start, end); `page(addr)` supplies a page's initial bytes."""

    name: str
    start: int
    end: int
    page: Callable[[int], bytes]

    def __contains__(self, addr: int) -> bool:
        return self.start <= addr < self.end


@dataclass
class MemFault:
    kind: FaultKind
    address: int


class Engine:
    """A Unicorn instance plus the bookkeeping for lazily mapped allocations and per-world hooks."""

    def __init__(self, exact_tails: bool = True, arch: str = "x86_64") -> None:
        self.exact_tails = exact_tails
        self.arch = arch
        (uc_arch, uc_mode), self.fill = ARCH[arch]
        self.uc = Uc(uc_arch, uc_mode)
        self.uc.ctl_set_tcg_buffer_size(32 << 20)  # type: ignore[attr-defined]  # unicorn >= 2.1, not in its stubs
        self.host_code: list[tuple[int, int, mmap.mmap]] = []  # (base, size, host memory) of the code regions
        for base, size, perms in FIXED_REGIONS:
            if perms & UC_PROT_EXEC:
                host = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # private, as unicorn's own RAM
                self.uc.mem_map_ptr(base, size, perms, ctypes.addressof(ctypes.c_char.from_buffer(host)))
                host[:] = self.fill * (size // len(self.fill))
                self.host_code.append((base, size, host))
            else:
                self.uc.mem_map(base, size, perms)
        self.allocations: list[Allocation] = []
        self.lazy_pages: set[int] = set()
        self.stale_pages: set[int] = set()  # the last world's lazy pages, until the next one claims them
        self.dirty: list[tuple[int, int]] = []  # [addr, end) of code written since the last reset
        self.stale_code: list[tuple[int, int]] = []  # the last world's code, filled by settle() unless rewritten
        self.world_hooks: list[tuple[int, int]] = []  # (handle, token) of this world's hooks; token 0: a tail guard
        self.code_handlers: dict[int, tuple] = {}  # token -> (callback, data) of hook_code's hooks
        self.tokens = itertools.count(1)
        self.code_callback = _binding.HOOK_CODE_CFUNC(self._dispatch_code)  # one ctypes callback for all
        self.tail_callback = _binding.HOOK_MEM_ACCESS_CFUNC(self._dispatch_tail)
        self.reg_value = ctypes.c_uint64()
        self.reg_ref = ctypes.byref(self.reg_value)
        self.fault: MemFault | None = None
        self.owner = None  # the batch whose world is loaded (fuzz/machine/batch.py)
        self.uc.hook_add(UC_HOOK_MEM_UNMAPPED, self._on_unmapped)
        if arch == "x86_64":  # costs nothing until one runs: UC_HOOK_INSN fires on these two only
            for insn in (UC_X86_INS_SYSCALL, UC_X86_INS_SYSENTER):
                self.uc.hook_add(UC_HOOK_INSN, self._on_privileged, None, 1, 0, insn)

    # --- per world -------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the previous world: its code, allocations, lazy pages and hooks. Guest memory is laid
        once: the last world's code and lazily mapped pages stay until the next world is written, so
        what it writes again costs nothing (`write_code` skips identical bytes, `add_allocation`
        claims pages); `settle()` fills or unmaps the rest before anything runs."""
        self.owner = None
        for h in self.world_hooks:
            self.unhook(h)
        self.world_hooks.clear()
        self.stale_pages |= self.lazy_pages
        self.lazy_pages.clear()
        self.allocations.clear()
        self.stale_code += self.dirty
        self.dirty.clear()
        self.uc.mem_write(PROG_BASE, bytes(PROG_SIZE))

    def settle(self) -> None:
        """Fill the previous world's code this one did not write again, and unmap its pages no
        allocation of this one claimed (called once the world's code and allocations exist, before
        it runs): the machine is then as if laid afresh."""
        word = len(self.fill)
        aligned = [(a - a % word, b + (-b) % word) for a, b in _merged(self.stale_code)]
        written = [(a - a % word, b + (-b) % word) for a, b in _merged(self.dirty)]
        for start, end in _subtract(aligned, written):
            host, offset = self._host_code(start, end - start)
            host[offset : offset + end - start] = self.fill * ((end - start) // word)
            self.uc.ctl_remove_cache(start, end)
        self.stale_code.clear()
        for page in sorted(self.stale_pages):
            self.uc.mem_unmap(page, PAGE)
        self.stale_pages.clear()

    def write_code(self, addr: int, code: bytes) -> None:
        """Code bytes at addr. Bytes already there (the same image at the same place as in the last
        world, the harness's own text) are not written again: a write drops every translation of its
        page, and retranslating costs more than the compare."""
        host, offset = self._host_code(addr, len(code))
        end = offset + len(code)
        if host[offset:end] != code:
            host[offset:end] = code
            self.uc.ctl_remove_cache(addr, addr + len(code))
        self.dirty.append((addr, addr + len(code)))

    def holds_code(self, addr: int, size: int) -> bool:
        """[addr, addr + size) lies in the JIT region or the kernel text."""
        return self._code_region(addr, size) is not None

    def _host_code(self, addr: int, size: int) -> tuple[mmap.mmap, int]:
        """The host memory of the code region holding [addr, addr + size), and the offset in it."""
        found = self._code_region(addr, size)
        if found is None:
            raise ValueError(f"code at {addr:#x}+{size:#x} is outside the JIT region and the kernel text")
        return found

    def _code_region(self, addr: int, size: int) -> tuple[mmap.mmap, int] | None:
        for base, region_size, host in self.host_code:
            if base <= addr and addr + size <= base + region_size:
                return host, addr - base
        return None

    def add_allocation(self, alloc: Allocation) -> None:
        """Register an allocation; the bytes past its end in its last page are guarded by a hook."""
        if not ARRAY_BASE <= alloc.start < alloc.end:
            raise ValueError(f"{alloc.name}: allocations live above ARRAY_BASE")
        self.allocations.append(alloc)
        for page in sorted(p for p in self.stale_pages if alloc.start - PAGE < p < alloc.end):
            if len(self.lazy_pages) >= KEEP_PAGES:
                break  # the rest go at settle(): every mapped region makes the next mem_map slower
            if page + PAGE > alloc.start:  # the last world's page, inside this allocation: rewritten
                self.stale_pages.discard(page)
                self.uc.mem_write(page, self._page_data(alloc, page))
                self.lazy_pages.add(page)
        tail_end = -(-alloc.end // PAGE) * PAGE
        if tail_end > alloc.end and self.exact_tails:
            self._add_raw(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, self.tail_callback, alloc.end, tail_end - 1)

    def write_data(self, addr: int, data: bytes) -> None:
        """Write into an allocation, through its page only if that page is already mapped (an
        unmapped page gets its bytes from the allocation's `page` callback when first touched)."""
        pos = 0
        while pos < len(data):
            page = (addr + pos) & ~(PAGE - 1)
            chunk = min(len(data) - pos, page + PAGE - (addr + pos))
            if page in self.lazy_pages:
                self.uc.mem_write(addr + pos, data[pos : pos + chunk])
            pos += chunk

    def hook_code(self, addr: int, callback, data=None) -> None:
        """callback(uc, address, size, data) before the instruction at addr, until the next reset.
        A callback's exception stops the run and is raised by emu_start, as the binding's own hooks do."""
        token = next(self.tokens)
        self.code_handlers[token] = (callback, data)
        self._add_raw(UC_HOOK_CODE, self.code_callback, addr, addr, token)

    def _add_raw(self, kind: int, callback, begin: int, end: int, token: int = 0) -> None:
        """A hook of this world, added through the C API with one of the engine's ctypes callbacks
        (unicorn's hook_add builds a ctypes closure per hook: ~25 µs of Python, and a per-case world
        needs dozens: each tail-call site, each memory operand, each allocation's tail)."""
        handle = _binding.uc_hook_h()
        status = _binding.uclib.uc_hook_add(
            self.uc._uch,
            ctypes.byref(handle),
            kind,
            callback,
            ctypes.c_void_p(token),
            ctypes.c_uint64(begin),
            ctypes.c_uint64(end),
        )
        if status != UC_ERR_OK:
            self.code_handlers.pop(token, None)
            raise UcError(status)
        self.world_hooks.append((handle.value, token))

    def read_reg(self, reg: int) -> int:
        """A general-purpose register (or rip), read straight through the C API: the hooks of a
        per-case run read one or two registers at every hooked instruction, and uc.reg_read's
        Python layer costs a few microseconds each. The buffer is zeroed first, so a 32-bit
        register reads zero-extended."""
        self.reg_value.value = 0
        status = _binding.uclib.uc_reg_read(self.uc._uch, reg, self.reg_ref)
        if status != UC_ERR_OK:
            raise UcError(status)
        return self.reg_value.value

    def unhook(self, hook: tuple[int, int]) -> None:
        """Delete one of `world_hooks` (the caller removes it from the list)."""
        handle, token = hook
        self.code_handlers.pop(token, None)
        status = _binding.uclib.uc_hook_del(self.uc._uch, _binding.uc_hook_h(handle))
        if status != UC_ERR_OK:
            raise UcError(status)

    def _dispatch_code(self, _uch, address: int, size: int, token: int) -> None:
        try:
            callback, data = self.code_handlers[token]
            callback(self.uc, address, size, data)
        except BaseException as e:  # as unicorn's own callback wrapper: stop, and emu_start raises it
            if self.uc._hook_exception is None:
                self.uc._hook_exception = e
            self.uc.emu_stop()

    # --- faults ----------------------------------------------------------------------------------

    def classify(self, addr: int) -> FaultKind:
        if POISON <= addr < POISON + POISON_SPAN:
            return FaultKind.OUT_OF_ALLOCATION  # a pointer read past an allocation's end, used
        if ARRAY_BASE <= addr and any(
            a.start - a.start % ARRAY_SLOT <= addr < a.start - a.start % ARRAY_SLOT + ARRAY_SLOT for a in self.allocations
        ):
            return FaultKind.OUT_OF_ALLOCATION
        return FaultKind.UNMAPPED

    def _on_unmapped(self, uc, access, addr, size, value, user_data) -> bool:
        if access == UC_MEM_FETCH_UNMAPPED:
            return False  # a wild jump: classified from the UcError
        for alloc in self.allocations:
            if addr in alloc:
                page = addr & ~(PAGE - 1)
                uc.mem_map(page, PAGE, UC_PROT_READ | UC_PROT_WRITE)
                uc.mem_write(page, self._page_data(alloc, page))
                self.lazy_pages.add(page)
                return True
        if self.fault is None:
            self.fault = MemFault(self.classify(addr), addr)
        return False

    def _on_privileged(self, uc, user_data) -> None:
        """syscall/sysenter: a fault, not a no-op (rip is the instruction's own address in the hook)."""
        if self.fault is None:
            self.fault = MemFault(FaultKind.PRIVILEGED_INSN, uc.reg_read(UC_X86_REG_RIP))
        uc.emu_stop()

    def _page_data(self, alloc: Allocation, page: int) -> bytes:
        """A page's bytes as mapped: the allocation's, then (batches) poison past its end, else zeros."""
        data = alloc.page(page)
        if len(data) < PAGE:
            fill = POISON.to_bytes(8, "little") if not self.exact_tails and page + len(data) == alloc.end else bytes(8)
            data += fill * ((PAGE - len(data)) // 8)
        return data

    def _dispatch_tail(self, _uch, access: int, addr: int, size: int, value: int, _token) -> None:
        """An access to the bytes past an allocation's end, in its last page: a fault."""
        if self.fault is None:
            self.fault = MemFault(FaultKind.OUT_OF_ALLOCATION, addr)
        self.uc.emu_stop()


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(a, b) for a, b in out]


def _subtract(ranges: list[tuple[int, int]], minus: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of `ranges` outside every range of `minus` (both sorted, non-overlapping)."""
    out = []
    for start, end in ranges:
        for cut_start, cut_end in minus:
            if cut_end <= start or cut_start >= end:
                continue
            if cut_start > start:
                out.append((start, cut_start))
            start = max(start, cut_end)
            if start >= end:
                break
        if start < end:
            out.append((start, end))
    return out


_ENGINES: dict[str, Engine] = {}


def shared_engine(arch: str = "x86_64") -> Engine:
    """The process's engine for an architecture: created once, reset per world (never one per case)."""
    if arch not in _ENGINES:
        _ENGINES[arch] = Engine(arch=arch)
    return _ENGINES[arch]
