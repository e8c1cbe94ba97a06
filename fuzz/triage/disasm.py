"""Side-by-side capstone listings of the legacy and patched tail-call sequences (`tcfuzz disasm`)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import capstone

from tcfuzz.codegens import for_arch
from tcfuzz.model.bpf import BPF_JMP, BPF_TAIL_CALL
from tcfuzz.model.interfaces import Codegen, JitError, JitImage, VerifierReject
from tcfuzz.model.layout import RCX, image_base, indirect_thunk
from tcfuzz.model.profile import KernelProfile
from tcfuzz.model.sample import SampleConfig, tail_call_sites, verified_sample

_CS = {
    "x86_64": capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64),
    "arm64": capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM),
}
_JUMPS = {"jmp", "ja", "jae", "jb", "jbe", "je", "jne", "call", "b", "bl", "b.hs", "b.hi", "cbz"}
_SYMBOLS = {indirect_thunk(RCX): "__x86_indirect_thunk_rcx"}


@dataclass
class Line:
    offset: int  # image offset
    data: bytes
    text: str  # capstone `mnemonic op_str`, jump targets symbolised
    asm: str  # the emitter's comment for this instruction
    marked: bool = False  # where the execution under this codegen parted from the reference

    def to_json(self) -> dict:
        return {"offset": self.offset, "bytes": self.data.hex(" "), "insn": self.text, "emitter": self.asm}


@dataclass
class Listing:
    codegen: str
    imms: list[int]  # the tail-call insns' imm after the verifier fix-up
    sites: list[tuple[int, int]]  # [start, end) image offsets of each site
    lines: list[Line]
    error: str | None = None
    ranges: list[tuple[int, int]] | None = None  # what was listed: the sites, or the whole image

    def lines_in(self, start: int, end: int) -> list[Line]:
        return [line for line in self.lines if start <= line.offset < end]

    def to_json(self) -> dict:
        return {
            "codegen": self.codegen,
            "imm": [f"{imm & 0xFFFFFFFF:#010x}" for imm in self.imms],
            "sites": [{"start": s, "end": e, "length": e - s} for s, e in self.sites],
            "error": self.error,
            "instructions": [line.to_json() for line in self.lines],
        }


def _symbolise(image: JitImage, sites: list[tuple[int, int]], target: int) -> str:
    off = target - image.base
    for start, end in sites:
        if start <= off <= end + 16:
            delta = off - end
            return f"{off:#x} <out{delta:+d}>" if delta else f"{off:#x} <out>"
    if 0 <= off <= len(image.code):
        return f"{off:#x}"
    return f"{target:#x} <{_SYMBOLS.get(target, '?')}>"


def listing(codegen: Codegen, cfg: SampleConfig, profile: KernelProfile, whole: bool = False) -> Listing:
    codegen = for_arch(codegen, profile.arch)
    try:
        prog = verified_sample(cfg, codegen, profile)
        image = codegen.jit(prog, profile, image_base(0))
    except (VerifierReject, JitError) as e:
        return Listing(codegen.name, [], [], [], error=f"{type(e).__name__}: {e}")
    return image_listing(codegen.name, image, [(0, len(image.code))] if whole else None, arch=profile.arch)


def image_listing(
    name: str,
    image: JitImage,
    ranges: list[tuple[int, int]] | None = None,
    marks: frozenset[int] = frozenset(),
    arch: str = "x86_64",
) -> Listing:
    """Capstone listing of `ranges` of an image (default: its tail-call sites); instructions at the
    image offsets in `marks` are flagged `=>`."""
    sites = tail_call_sites(image)
    imms = [insn.imm for insn in image.insns if insn.code == BPF_JMP | BPF_TAIL_CALL]
    ranges = sites if ranges is None else ranges
    asm_at = {ins.offset: ins.asm for ins in image.instrs}
    lines = []
    for start, end in ranges:
        for insn in _CS[arch].disasm(image.code[start:end], image.base + start):
            text = f"{insn.mnemonic} {insn.op_str}".strip()
            target = insn.op_str.rpartition(" ")[2].lstrip("#")
            if insn.mnemonic in _JUMPS and target.startswith("0x"):
                prefix = insn.op_str.rpartition(" ")[0]
                text = f"{insn.mnemonic} {prefix + ' ' if prefix else ''}{_symbolise(image, sites, int(target, 16))}"
            off = insn.address - image.base
            lines.append(Line(off, bytes(insn.bytes), text, asm_at.get(off, ""), off in marks))
    return Listing(name, imms, sites, lines, ranges=ranges)


MIN_BYTES = 5  # narrower than this, the bytes column is dropped rather than shown as a stub


def _hex(data: bytes, room: int | None) -> str:
    """The bytes in `room` columns: whole bytes only, `…` when some are left out."""
    full = data.hex(" ")
    if room is None or len(full) <= room:
        return full
    keep = max((room - 2 + 1) // 3, 0)
    return (data[:keep].hex(" ") + " …") if keep else "…"


def _cell(line: Line | None, bytes_room: int | None, marks: bool = True) -> str:
    """`=> off: bytes  insn` (the `=>` column only where that side has a mark); the instruction text
    is never cut."""
    if line is None:
        return ""
    head = (f"{'=>' if line.marked else '  '}" if marks else "") + f"{line.offset:4x}: "
    if bytes_room == 0:
        return head + line.text
    return f"{head}{_hex(line.data, bytes_room):<{bytes_room or 0}} {line.text}"


def _rows(old: Listing, new: Listing) -> list[tuple[Line | None, Line | None, str] | None]:
    """Range by range, aligned on the emitters' asm comments: (legacy, patched, mark) or None
    between ranges. Marks as `diff -y`: | the instruction differs, < only legacy, > only patched."""
    rows: list[tuple[Line | None, Line | None, str] | None] = []
    old_ranges, new_ranges = old.ranges or [], new.ranges or []
    for k in range(max(len(old_ranges), len(new_ranges))):
        left = old.lines_in(*old_ranges[k]) if k < len(old_ranges) else []
        right = new.lines_in(*new_ranges[k]) if k < len(new_ranges) else []
        if k:
            rows.append(None)
        matcher = difflib.SequenceMatcher(None, [line.asm for line in left], [line.asm for line in right], autojunk=False)
        for _tag, i1, i2, j1, j2 in matcher.get_opcodes():
            for n in range(max(i2 - i1, j2 - j1)):
                a = left[i1 + n] if i1 + n < i2 else None
                b = right[j1 + n] if j1 + n < j2 else None
                same = a is not None and b is not None and a.data == b.data
                rows.append((a, b, " " if same else ("|" if a and b else ("<" if a else ">"))))
    return rows


def _marked(rows, side: int) -> bool:
    return any(r and r[side] is not None and r[side].marked for r in rows)


def _layout(rows, width: int | None) -> tuple[int, int] | None:
    """(bytes column, left column) widths that fit `width`; None if two columns cannot fit even
    without the bytes. Bytes shrink first; instruction text never does."""
    lines = [line for row in rows if row for line in row[:2] if line is not None]
    full = max((len(line.data.hex(" ")) for line in lines), default=0)
    marks = _marked(rows, 0), _marked(rows, 1)
    for room in [full, *range(full - 1, MIN_BYTES - 1, -1), 0]:
        left = max((len(_cell(r[0], room, marks[0])) for r in rows if r and r[0]), default=0)
        right = max((len(_cell(r[1], room, marks[1])) for r in rows if r and r[1]), default=0)
        if width is None or left + 3 + right <= width:
            return room, left
    return None


def render_side_by_side(old: Listing, new: Listing, width: int | None = 100) -> str:
    """Range by range (each site, or the whole image), aligned on the emitters' asm comments, fitted
    into `width` columns (None: unlimited). The bytes column narrows first; if two columns still do
    not fit, the listings are printed one above the other. An operand is never cut."""
    out = []
    for listing_ in (old, new):
        sites = ", ".join(f"[{s:#x},{e:#x}) {e - s} bytes" for s, e in listing_.sites)
        imms = ", ".join(f"{imm & 0xFFFFFFFF:#x}" for imm in listing_.imms)
        out.append(
            f"{listing_.codegen:>8}: imm {imms or '-'}; sites {sites or '-'}" + (f"; {listing_.error}" if listing_.error else "")
        )
    rows = _rows(old, new)
    layout = _layout(rows, width)
    if layout is None:  # too narrow for two columns: one listing after the other, marks kept
        for side, listing_ in enumerate((old, new)):
            out.append(f"{listing_.codegen}:")
            for row in rows:
                if row is None:
                    out.append("")
                else:
                    line, mark = (row[0] if side == 0 else row[1]), row[2]
                    if line is not None:
                        out.append(f"{_cell(line, 0, _marked(rows, side))}  {mark if mark != ' ' else ''}".rstrip())
        return "\n".join(out)
    room, left = layout
    marks = _marked(rows, 0), _marked(rows, 1)
    left = max(left, len(old.codegen))
    out.append(f"{old.codegen:<{left}} | {new.codegen}")
    for row in rows:
        if row is None:
            out.append("")
            continue
        a, b, mark = row
        out.append(f"{_cell(a, room, marks[0]):<{left}} {mark} {_cell(b, room, marks[1])}".rstrip())
    return "\n".join(out)
