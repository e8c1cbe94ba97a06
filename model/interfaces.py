"""Contracts between the stages: verifier state -> fix-up -> JIT -> image.

Data flows one way: a world is lowered to BPF insns carrying `TailCallAux`; a codegen's verifier
fix-up rewrites them (and fills the poke table); the codegen's JIT turns the `VerifiedProgram`
into a `JitImage`. Every codegen (legacy, patched, a developer's own variant) implements `Codegen`.
"""
from __future__ import annotations

import linecache
import re
from dataclasses import dataclass, field
from typing import Protocol, Sequence

from model.bpf import Insn
from model.profile import KernelProfile


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
    max_entries: int               # u32, as created
    index_mask: int = 0xFFFFFFFF   # struct bpf_array.index_mask
    unpriv: bool = False           # !map->bypass_spec_v1 (created without CAP_PERFMON)


@dataclass(frozen=True)
class TailCallAux:
    """The parts of bpf_insn_aux_data that do_misc_fixups() reads at a bpf_tail_call() site."""

    map: MapRef                    # map_ptr_state.map_ptr: the last map seen when poisoned
    map_poisoned: bool = False     # map_ptr_state.poison: more than one map reaches the site
    map_unpriv: bool = False       # map_ptr_state.unpriv: OR over every map seen
    key: int | None = None         # bpf_map_key_immediate(); None when the key state is POISON


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
    base: int                          # address of the image; bpf_func = base (no CFI preamble)
    code: bytes
    instrs: list[Instr]
    addrs: list[int]                   # do_jit's addrs[]: addrs[i] = end offset of insn i (1-based)
    insns: list[Insn]                  # the BPF insns that were JITed
    pokes: list[PokeDescriptor]        # poke_tab with this image's addresses
    passes: int

    def insn_range(self, i: int) -> tuple[int, int]:
        """Offsets [start, end) of the x86 code for BPF insn index i (0-based)."""
        return self.addrs[i], self.addrs[i + 1]

    def instrs_in(self, start: int, end: int) -> list[Instr]:
        return [ins for ins in self.instrs if start <= ins.offset < end]


class Codegen(Protocol):
    """A tail-call code generator: verifier fix-up + JIT + the prog-array layout it expects."""

    name: str
    cached_targets: bool   # expects ptrs[max_entries + i] = bpf_func + X86_TAIL_CALL_OFFSET (patch 1/4)

    def fixup(self, insns: Sequence[Insn], env: VerifierEnv, used_maps: Sequence[MapRef],
              profile: KernelProfile) -> tuple[list[Insn], list[PokeDescriptor]]: ...

    def jit(self, prog: VerifiedProgram, profile: KernelProfile, image_base: int) -> JitImage: ...


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
        text = re.sub(r"\[(\w+)\]", r"[\1 + 0]", text.replace(" - ", " + -"))   # capstone omits a zero disp8
        return " ".join(text.split())

    pattern = ""
    pos = 0
    comment = norm(comment)
    for m in _PLACEHOLDER.finditer(comment):
        literal = comment[pos:m.start()]
        if m.group() == "<*>":
            pattern += re.escape(literal.rstrip()) + r"(?: (.*))?"
        else:
            pattern += re.escape(literal) + r"(-?(?:0x[0-9a-f]+|\d+)|[a-z][a-z0-9]*)"
        pos = m.end()
    pattern += re.escape(comment[pos:])
    return re.fullmatch(pattern, norm(disassembly)) is not None
