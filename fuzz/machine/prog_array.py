"""The kernel's run-time side of a world, in guest memory: prog arrays (kernel/bpf/arraymap.c, plus
patch 1/4's cached-target half), bpf_prog structs, and the text poking of direct tail calls
(bpf_tail_call_direct_fixup(), bpf_arch_poke_desc_update(), __bpf_arch_text_poke() of
arch/x86/net/bpf_jit_comp.c).

struct bpf_array as the JIT sees it (offsets from the profile):

    +0                      struct bpf_map ... u32 max_entries at max_entries_off ...
    +ptrs_off - 16          u32 elem_size (8), u32 index_mask
    +ptrs_off - 8           struct bpf_array_aux *aux        (points at nothing mapped)
    +ptrs_off               struct bpf_prog *ptrs[alloc_entries]
    +ptrs_off + 8*alloc     void *cached[alloc_entries]      patched codegen only (patch 1/4): the
                                                              cache of slot i is ptrs[map.max_entries + i]
"""

from __future__ import annotations

import struct

from tcfuzz.machine.engine import Allocation, Engine
from tcfuzz.model.interfaces import Codegen, PokeDescriptor, TextPoke
from tcfuzz.model.layout import PAGE, array_base, prog_struct
from tcfuzz.model.profile import KernelProfile
from tcfuzz.model.world import MapSpec

NOP5 = bytes.fromhex("0f1f440000")  # x86_nops[5]
ARRAY_AUX_POISON = 0xA0A0_0000_0000  # array->aux: never dereferenced by a tail call


class CacheOverrun(Exception):
    """A codegen's cache maintenance writes outside the prog array's allocation (memory corruption)."""


class PokeBusy(Exception):
    """__bpf_arch_text_poke() found neither the old nor the new instruction: BUG_ON(ret < 0)."""


class ProgArray:
    """One map's struct bpf_array in guest memory, with slots as the JIT reads them."""

    def __init__(self, engine: Engine, spec: MapSpec, profile: KernelProfile, cached_targets: bool) -> None:
        self.engine, self.spec, self.profile = engine, spec, profile
        self.cached_targets = cached_targets and spec.kind == "prog_array"
        self.base = array_base(spec.id)
        if spec.kind == "prog_array":
            size = profile.ptrs_off + 8 * spec.alloc_entries * (2 if self.cached_targets else 1)
        else:
            size = PAGE  # some other map type: one page, so no tail guard is needed
        self.words: dict[int, int] = {}  # byte offset -> u64, the non-zero ptrs[] words
        self.progs: dict[int, int] = {}  # slot -> program id
        self.alloc = Allocation(f"map {spec.id}", self.base, self.base + size, self.page_bytes)
        engine.add_allocation(self.alloc)

    def header_fields(self) -> list[tuple[int, bytes]]:
        """(offset, bytes) of the header's non-zero fields; the rest of the ptrs_off bytes is zero.
        Kept as fields, never as a ptrs_off-sized buffer: a profile may put ptrs up to 2 GB in."""
        fields = [(self.profile.max_entries_off, struct.pack("<I", self.spec.max_entries))]
        if self.spec.kind == "prog_array":
            fields.append((self.profile.ptrs_off - 16, struct.pack("<IIQ", 8, self.spec.index_mask, ARRAY_AUX_POISON)))
        return fields

    def header(self) -> bytes:
        h = bytearray(self.profile.ptrs_off)
        for off, data in self.header_fields():
            h[off : off + len(data)] = data
        return bytes(h)

    def page_bytes(self, page: int) -> bytes:
        out = bytearray(PAGE)
        lo = page - self.base
        for off, data in self.header_fields():
            for i, byte in enumerate(data):  # a field may straddle two pages
                if lo <= off + i < lo + PAGE:
                    out[off + i - lo] = byte
        for off, value in self.words.items():
            if lo <= off < lo + PAGE:
                struct.pack_into("<Q", out, off - lo, value)
        return bytes(out[: self.alloc.end - page] if self.alloc.end - page < PAGE else out)

    def _set_word(self, index: int, value: int) -> None:
        off = self.profile.ptrs_off + 8 * index
        if value:
            self.words[off] = value
        else:
            self.words.pop(off, None)
        self.engine.write_data(self.base + off, struct.pack("<Q", value))

    def xchg(self, key: int, prog: int | None) -> int | None:
        """xchg(array->ptrs + key, new) and, patched, bpf_tail_call_target_update() of patch 1/4."""
        old = self.progs.pop(key, None)
        if prog is not None:
            self.progs[key] = prog
        self._set_word(key, prog_struct(prog) if prog is not None else 0)
        return old

    def update_cache(self, key: int, bpf_func: int | None, codegen: Codegen) -> None:
        """bpf_tail_call_target_update() of patch 1/4, as the codegen does it (model.interfaces.Codegen:
        `cache_slot()` picks the word, `cached_target()` the value; the defaults are
        xchg(array->ptrs + array->map.max_entries + key, new ? new->bpf_func + offset : NULL)).
        A word outside the allocation is a write the kernel would make past its object: CacheOverrun."""
        if not self.cached_targets:
            return
        index = codegen.cache_slot(self.spec.max_entries, self.spec.alloc_entries, key)
        if not 0 <= index < 2 * self.spec.alloc_entries:
            raise CacheOverrun(f"map {self.spec.id}: the cache of slot {key} is ptrs[{index}], past the allocation")
        old = self.words.get(self.profile.ptrs_off + 8 * index, 0)
        self._set_word(index, codegen.cached_target(bpf_func, old, self.profile) & 0xFFFF_FFFF_FFFF_FFFF)


def emit_patch_insn(ip: int, target: int | None) -> bytes:
    """The 5 bytes __bpf_arch_text_poke() compares and writes: `jmp target` or nop5 for NULL."""
    if target is None:
        return NOP5
    return b"\xe9" + struct.pack("<i", target - (ip + 5))


def text_poke(engine: Engine, ip: int | None, old_addr: int | None, new_addr: int | None) -> int:
    """__bpf_arch_text_poke(ip, BPF_MOD_JUMP, BPF_MOD_JUMP, old_addr, new_addr): -EBUSY is raised."""
    if ip is None:  # a descriptor the JIT never filled: is_kernel_text(NULL) fails, -EINVAL, BUG_ON
        raise PokeBusy("text poke at NULL: the JIT left this poke descriptor's address unset")
    if not engine.holds_code(ip, 5):  # no text there: the kernel would compare and patch whatever it is (an oops)
        raise PokeBusy(f"text poke at {ip:#x}: not kernel or BPF text")
    old_insn, new_insn = emit_patch_insn(ip, old_addr), emit_patch_insn(ip, new_addr)
    current = bytes(engine.uc.mem_read(ip, 5))
    if current != old_insn:
        raise PokeBusy(f"text poke at {ip:#x}: found {current.hex()}, expected {old_insn.hex()}")
    if current != new_insn:
        engine.write_code(ip, new_insn)
        return 0
    return 1


def engine_text_poke(engine: Engine) -> TextPoke:
    """The machine's `TextPoke` (model.interfaces) for a codegen's poke path."""
    return lambda ip, old_addr, new_addr: text_poke(engine, ip, old_addr, new_addr)


def bpf_tail_call_direct_fixup(
    engine: Engine, codegen: Codegen, pokes: list[PokeDescriptor], arrays: dict[int, ProgArray], bpf_func: dict[int, int]
) -> None:
    """bpf_tail_call_direct_fixup(): at the end of the JIT, the codegen patches the sites whose slot is filled."""
    for poke in pokes:
        target = arrays[poke.map.map_id].progs.get(poke.key)
        codegen.direct_fixup(poke, bpf_func[target] + poke.adj_off if target is not None else None, engine_text_poke(engine))
