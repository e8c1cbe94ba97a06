"""Contracts between the stages: verifier state -> fix-up -> JIT -> image.

Data flows one way: a world is lowered to BPF insns carrying `TailCallAux`; a codegen's verifier
fix-up rewrites them (and fills the poke table); the codegen's JIT turns the `VerifiedProgram`
into a `JitImage`. Every codegen (legacy, patched, a developer's own variant) implements `Codegen`.
"""

from __future__ import annotations

import linecache
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from tcfuzz.model.bpf import Insn
from tcfuzz.model.profile import KernelProfile


class VerifierReject(Exception):
    """The verifier refuses the program (the kernel's verbose() message); a world outcome, not a bug."""


class JitError(Exception):
    """The JIT cannot produce an image (the kernel would fall back or fail the load)."""


class JitFault(JitError):
    """The JIT itself would access memory it does not own (e.g. poke_tab[-1]); always a finding."""


@dataclass(frozen=True)
class MapRef:
    """What the verifier and the JIT know of a map in used_maps[]."""

    map_id: int
    max_entries: int  # u32, as created
    index_mask: int = 0xFFFFFFFF  # struct bpf_array.index_mask
    unpriv: bool = False  # !map->bypass_spec_v1 (created without CAP_PERFMON)


@dataclass(frozen=True)
class TailCallAux:
    """The parts of bpf_insn_aux_data that do_misc_fixups() reads at a bpf_tail_call() site."""

    map: MapRef  # map_ptr_state.map_ptr: the last map seen when poisoned
    map_poisoned: bool = False  # map_ptr_state.poison: more than one map reaches the site
    map_unpriv: bool = False  # map_ptr_state.unpriv: OR over every map seen
    key: int | None = None  # bpf_map_key_immediate(); None when the key state is POISON


@dataclass(frozen=True)
class VerifierEnv:
    bpf_capable: bool = True
    blinding_requested: bool = False
    jit_requested: bool = True


@dataclass
class PokeDescriptor:
    """struct bpf_jit_poke_descriptor, tail-call reason. Addresses are filled by the JIT."""

    map: MapRef
    key: int
    insn_idx: int
    tailcall_target: int | None = None
    tailcall_bypass: int | None = None
    bypass_addr: int | None = None
    adj_off: int = 0


@dataclass
class VerifiedProgram:
    """A program (or subprogram) after do_misc_fixups(): what bpf_int_jit_compile() receives."""

    insns: list[Insn]
    stack_depth: int = 0
    tail_call_reachable: bool = True
    is_subprog: bool = False
    exception_boundary: bool = False
    used_maps: list[MapRef] = field(default_factory=list)
    poke_tab: list[PokeDescriptor] = field(default_factory=list)


@dataclass(frozen=True)
class Instr:
    """One emitted x86 instruction and the emitter source line that produced it."""

    offset: int
    data: bytes
    source: tuple[str, int]

    @property
    def asm(self) -> str:
        """The emitter's trailing `# asm` comment on the emitting line."""
        line = linecache.getline(*self.source)
        _, sep, comment = line.partition("  # ")
        return comment.strip() if sep else ""


@dataclass
class JitImage:
    base: int  # address of the image; bpf_func = base (no CFI preamble)
    code: bytes
    instrs: list[Instr]
    addrs: list[int]  # do_jit's addrs[]: addrs[i] = end offset of insn i (1-based)
    insns: list[Insn]  # the BPF insns that were JITed
    pokes: list[PokeDescriptor]  # poke_tab with this image's addresses
    passes: int

    def insn_range(self, i: int) -> tuple[int, int]:
        """Offsets [start, end) of the x86 code for BPF insn index i (0-based)."""
        return self.addrs[i], self.addrs[i + 1]

    def instrs_in(self, start: int, end: int) -> list[Instr]:
        return [ins for ins in self.instrs if start <= ins.offset < end]


TextPoke = Callable[["int | None", "int | None", "int | None"], int]
"""__bpf_arch_text_poke(ip, BPF_MOD_JUMP, BPF_MOD_JUMP, old_addr, new_addr): replaces the 5 bytes at
ip (`jmp old_addr`, or nop5 for None) by `jmp new_addr` (nop5 for None); an unexpected current
instruction, or an ip the JIT never filled in (None), is the kernel's BUG_ON. Supplied by the machine."""


class Codegen:
    """A tail-call code generator: verifier fix-up + JIT + the run-time maintenance the series changes.

    Required: `name`, `cached_targets`, `fixup()` and `jit()`. Everything else has today's kernel
    behaviour as its default, so a plugin overrides exactly the piece it changes (a mutant, a
    variant of the series):

    * `imm_codec`: (encode, decode) of the tail-call insn's imm when it is packed (patch 2/4), read by
      `tcfuzz limits`; None when the imm is the legacy poke index + 1.
    * patch 1/4's cache maintenance, run by every prog-array update and delete
      (bpf_fd_array_map_update_elem(), fd_array_map_delete_elem() -> bpf_tail_call_target_update()):
      `cache_slot()` is which ptrs[] word holds a slot's cached target, `cached_target()` the value
      written there, `cache_before_pokes` whether it is written before the direct-call pokes.
    * the text-poke path of direct tail calls: `direct_fixup()` at the end of the JIT
      (bpf_tail_call_direct_fixup()) and `poke_desc_update()` on every update/delete of the slot
      (bpf_arch_poke_desc_update()), both of arch/x86/net/bpf_jit_comp.c, through a `TextPoke`.
    """

    name: str = "codegen"
    cached_targets: bool = False  # keeps ptrs[max_entries + i] = bpf_func + X86_TAIL_CALL_OFFSET (patch 1/4)
    imm_codec: tuple[Callable, Callable] | None = None
    cache_before_pokes: bool = True  # patch 1/4 updates the cache, then prog_array_map_poke_run() pokes

    def fixup(
        self, insns: Sequence[Insn], env: VerifierEnv, used_maps: Sequence[MapRef], profile: KernelProfile
    ) -> tuple[list[Insn], list[PokeDescriptor]]:
        raise NotImplementedError

    def jit(self, prog: VerifiedProgram, profile: KernelProfile, image_base: int) -> JitImage:
        raise NotImplementedError

    def cache_slot(self, max_entries: int, alloc_entries: int, key: int) -> int:
        """The ptrs[] index of slot `key`'s cached target: `array->map.max_entries + key` (patch 1/4);
        `alloc_entries` is the allocated count (rounded to index_mask + 1 for an unpriv map)."""
        return max_entries + key

    def cached_target(self, bpf_func: int | None, old: int, profile: KernelProfile) -> int:
        """The cached value after an update to a program whose bpf_func is `bpf_func` (None: a delete);
        `old` is the value there before. Patch 1/4: `new ? new->bpf_func + X86_TAIL_CALL_OFFSET : NULL`."""
        return bpf_func + profile.tail_call_offset if bpf_func is not None else 0

    def direct_fixup(self, poke: PokeDescriptor, target: int | None, text_poke: TextPoke) -> None:
        """bpf_tail_call_direct_fixup() for one descriptor: `target` is the slot's program's
        bpf_func + adj_off at JIT time, None for an empty slot (nothing to patch)."""
        if target is not None:
            text_poke(poke.tailcall_target, None, target)
            text_poke(poke.tailcall_bypass, poke.bypass_addr, None)

    def poke_desc_update(self, poke: PokeDescriptor, new_func: int | None, old_func: int | None, text_poke: TextPoke) -> None:
        """bpf_arch_poke_desc_update(poke, new, old) with the programs' bpf_func (None: no program)."""
        old_addr = old_func + poke.adj_off if old_func is not None else None
        new_addr = new_func + poke.adj_off if new_func is not None else None
        if new_func is not None:
            text_poke(poke.tailcall_target, old_addr, new_addr)
            if old_func is None:
                text_poke(poke.tailcall_bypass, poke.bypass_addr, None)
        else:
            text_poke(poke.tailcall_bypass, None if old_func is not None else poke.bypass_addr, poke.bypass_addr)
            text_poke(poke.tailcall_target, old_addr, None)


REQUIRED_MEMBERS = ("name", "cached_targets", "fixup", "jit")
OPTIONAL_MEMBERS = ("imm_codec", "cache_before_pokes", "cache_slot", "cached_target", "direct_fixup", "poke_desc_update")

# Optional: `known_causes: tuple[KnownCause, ...]`, declared on the codegen's own class (a
# subclass does not inherit its base's causes: a mutant of the patch has none of the patch's).


@dataclass(frozen=True)
class KnownCause:
    """A defect a codegen declares as understood, as an executable counterfactual: `repair(codegen)`
    is that codegen with exactly this defect repaired. A divergence is attributed to the cause only
    if the same world replayed under the repaired codegen agrees (fuzz/verdict/policy.py)."""

    name: str
    description: str
    repair: Callable[[Codegen], Codegen]


_PLACEHOLDER = re.compile(r"<[^<>]+>")


def asm_matches(comment: str, disassembly: str) -> bool:
    """Does capstone's `mnemonic op_str` match an emitter comment?

    Literal text must match exactly (whitespace-insensitive); `<name>` placeholders stand for one
    operand value (an immediate, a displacement, a jump target, or a register name); `<*>` stands
    for the whole operand list (multi-byte nops). Capstone's `[rbp - 0x10]` is read
    as `[rbp + -0x10]` so a comment can say `[rbp + <tcc_ptr_off>]` for either sign, and `[rdi]`
    as `[rdi + 0]`.
    """

    def norm(text: str) -> str:
        text = re.sub(r"\[(\w+)\]", r"[\1 + 0]", text.replace(" - ", " + -"))  # capstone omits a zero disp8
        return " ".join(text.split())

    pattern = ""
    pos = 0
    comment = norm(comment)
    for m in _PLACEHOLDER.finditer(comment):
        literal = comment[pos : m.start()]
        if m.group() == "<*>":
            pattern += re.escape(literal.rstrip()) + r"(?: (.*))?"
        else:
            pattern += re.escape(literal) + r"(-?(?:0x[0-9a-f]+|\d+)|[a-z][a-z0-9]*)"
        pos = m.end()
    pattern += re.escape(comment[pos:])
    return re.fullmatch(pattern, norm(disassembly)) is not None


# --- What one run of a world shows, and what the oracle makes of three of them --------------------


class FaultKind(str, Enum):
    OUT_OF_ALLOCATION = "out_of_allocation"  # a data access inside a prog array's address slot, past its allocation
    UNMAPPED = "unmapped"  # a data access outside every allocation
    WILD_JUMP = "wild_jump"  # an instruction fetch outside every JIT image / kernel text
    BAD_ENTRY = "bad_entry"  # a tail call jumped to something other than bpf_func + X86_TAIL_CALL_OFFSET
    ILLEGAL_INSN = "illegal_insn"  # ud2, int3, an undecodable byte
    TIMEOUT = "timeout"  # the instruction budget ran out (a loop)
    POKE_BUSY = "poke_busy"  # text poke found unexpected bytes: the kernel's BUG_ON(ret < 0)
    # syscall, sysenter, hlt: a JIT image never holds one; on the CPU they leave the program or stop
    # it (Unicorn would run syscall/sysenter as no-ops and stop at hlt as if the budget ran out)
    PRIVILEGED_INSN = "privileged_insn"
    # a data access at an address whose bits 63..47 are not all equal: #GP, an oops (Unicorn would
    # drop the bits from 52 up and access whatever the rest names)
    NON_CANONICAL = "non_canonical"


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    address: int  # the data address, jump target or faulting rip
    where: str = ""  # "prog 1 +0x1a (site 0): mov rcx, ..." when it is in emitted code
    pc: int | None = None  # the instruction that faulted or jumped (not compared)

    def __str__(self) -> str:
        return f"{self.kind.value} at {self.address:#x}" + (f" ({self.where})" if self.where else "")


@dataclass(frozen=True)
class Observation:
    """The observable outcome of one run, as the oracle compares it (field order = comparison order).

    Deliberately absent (intended differences): scratch registers other than rax (rcx holds the
    target either way but computed differently), the prog array's memory (the patched codegen's is
    twice as large, carrying the cached targets), and which fields of struct bpf_array/bpf_prog were
    read (the patched static path reads neither max_entries nor bpf_func).
    """

    load: str = "ok"  # "ok", or why the program set was not loaded (verifier/JIT)
    fault: Fault | None = None
    trace: tuple[int, ...] = ()  # programs entered, in order, the entry program first
    ret: int | None = None  # rax at return to the caller: FALL_THROUGH + id of the program that fell through
    tail_call_cnt: int | None = None  # the tail-call counter slot of the last program's frame
    runs: tuple[tuple[int, int], ...] = ()  # (program id, times its glue ran) from ctx memory
    callee_saved_clobbered: tuple[str, ...] = ()  # rbx, rbp, r12-r15 that differ after return
    stack_delta: int | None = 0  # rsp after return minus rsp before the call (0 = balanced)
    ctx_preserved: bool | None = True  # rdi still points to ctx when the program returns

    @classmethod
    def not_loaded(cls, load: str) -> Observation:
        return cls(load=load, stack_delta=None, ctx_preserved=None)

    FIELDS = ("load", "fault", "trace", "ret", "tail_call_cnt", "runs", "callee_saved_clobbered", "stack_delta", "ctx_preserved")

    def to_json(self) -> dict:
        d = {name: getattr(self, name) for name in self.FIELDS}
        d["fault"] = (
            None
            if self.fault is None
            else {"kind": self.fault.kind.value, "address": self.fault.address, "where": self.fault.where, "pc": self.fault.pc}
        )
        d["trace"] = list(self.trace)
        d["runs"] = {str(p): n for p, n in self.runs}
        d["callee_saved_clobbered"] = list(self.callee_saved_clobbered)
        return d


class VerdictKind(str, Enum):
    AGREE = "AGREE"
    NEW_DIVERGES = "NEW_DIVERGES"  # legacy = model != patched
    OLD_DIVERGES = "OLD_DIVERGES"  # patched = model != legacy
    JITS_AGREE_MODEL_DIFFERS = "JITS_AGREE_MODEL_DIFFERS"
    ALL_DIFFER = "ALL_DIFFER"


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    run: int | None = None  # index of the first run where the voters part
    field_name: str | None = None  # the first Observation field that differs
    values: dict = field(default_factory=dict)  # voter name -> that field's value, as JSON
    signature: str = ""  # stable dedup key: verdict, field, coarse shape of the difference

    @property
    def diverges(self) -> bool:
        return self.kind is not VerdictKind.AGREE
