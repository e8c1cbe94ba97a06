"""Bytes: the running kernel's JIT against jit_old, instruction by instruction.

For each program of a world: load it (session.LiveWorld), dump its JITed functions, and JIT the
same insns (lower.py) with jit_old under the detected profile, at the kernel's addresses:

- the image base is the function's own address (jited_ksyms), the subprogram call's imm is
  relative to the kernel's __bpf_call_base, the thunks are the kernel's (detect.py);
- map and map-value addresses (ld_imm64) are not known in advance: jit_old first runs with
  placeholders, each placeholder's movabs is aligned with the kernel's instruction at the same
  index, its imm is read back as the symbol's address (one address per symbol, or it is a
  difference), and jit_old runs again with those addresses. Nothing is masked: every byte of the
  second image is compared;
- direct tail calls: the model's image goes through tcfuzz's text-poke state machine
  (machine/prog_array.py) for the slots the world fills, then for every map operation of every run;
  the kernel's image is dumped again after each operation and compared whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import capstone

from tcfuzz import jit_old
from tcfuzz.live.detect import Detected, s64
from tcfuzz.live.lower import KFunction, MapSymbol, bind, lower_program
from tcfuzz.live.session import LiveWorld
from tcfuzz.machine.engine import Engine
from tcfuzz.machine.prog_array import PokeBusy, engine_text_poke
from tcfuzz.model.bpf import BPF_CALL_SUBPROG, BPF_PSEUDO_CALL, Insn
from tcfuzz.model.interfaces import JitImage, PokeDescriptor, VerifiedProgram
from tcfuzz.model.lower import used_maps
from tcfuzz.model.world import World

PLACEHOLDER_BASE = 0xFFFF_8880_0000_0000  # movabs-sized, like the kernel's direct-map addresses
CS = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)


@dataclass
class FunctionBytes:
    prog: int
    subprog: bool
    when: str  # "load", or "run 2 op 0" after a map operation
    kernel: bytes
    model: bytes
    difference: str = ""  # "" when equal: else `+off: kernel <asm> | jit_old <asm>`

    @property
    def equal(self) -> bool:
        return not self.difference


@dataclass
class WorldBytes:
    functions: list[FunctionBytes] = field(default_factory=list)
    refused: str = ""  # the verifier's reason, when the kernel refused the world

    @property
    def equal(self) -> bool:
        return not self.refused and all(f.equal for f in self.functions)


class ImageText:
    """A bytearray with the calls machine/prog_array.text_poke() makes on an Engine, so the model's
    own state machine patches the model's image at the kernel's addresses."""

    def __init__(self, images: dict[int, bytearray]) -> None:
        self.images = images  # base address -> code
        self.uc = self

    def _locate(self, ip: int) -> tuple[bytearray, int]:
        for base, code in self.images.items():
            if base <= ip < base + len(code):
                return code, ip - base
        raise KeyError(f"{ip:#x} is in no image")

    def holds_code(self, ip: int, size: int) -> bool:
        return any(base <= ip and ip + size <= base + len(code) for base, code in self.images.items())

    def mem_read(self, ip: int, size: int) -> bytes:
        code, off = self._locate(ip)
        return bytes(code[off : off + size])

    def write_code(self, ip: int, data: bytes) -> None:
        code, off = self._locate(ip)
        code[off : off + len(data)] = data


def first_difference(kernel: bytes, model: bytes, base: int) -> str:
    """The first instruction where the two images part, both decoded at the same offset."""
    base &= (1 << 64) - 1  # capstone addresses are unsigned
    ki = list(CS.disasm(kernel, base))
    mi = list(CS.disasm(model, base))
    for k, m in zip(ki, mi, strict=False):  # a length difference is reported below
        if k.bytes != m.bytes:
            kernel_asm = f"`{k.mnemonic} {k.op_str}` ({k.bytes.hex()})"
            return f"+{k.address - base:#x}: kernel {kernel_asm} | jit_old `{m.mnemonic} {m.op_str}` ({m.bytes.hex()})"
    if len(kernel) != len(model):
        return f"lengths differ: kernel {len(kernel)} bytes, jit_old {len(model)}"
    return "" if kernel == model else "bytes differ outside decoded instructions"


def symbols_of(functions: list[KFunction]) -> list[MapSymbol]:
    seen: list[MapSymbol] = []
    for fn in functions:
        for insn in fn.insns:
            if isinstance(insn.aux, MapSymbol):
                key = MapSymbol(insn.aux.map_id, insn.aux.glue)
                if key not in seen:
                    seen.append(key)
    return seen


class ModelProgram:
    """jit_old's images of one world program at the kernel's addresses."""

    def __init__(self, world: World, detected: Detected, functions: list[KFunction], bases: list[int], codegen=None) -> None:
        self.world, self.detected, self.functions, self.bases = world, detected, functions, bases
        self.codegen = codegen or jit_old.CODEGEN

    def jit(self, addresses: dict[MapSymbol, int]) -> list[JitImage]:
        jit = self.codegen.jit_class(self.detected.profile, self.detected.text)
        images = []
        for fn, base in zip(self.functions, self.bases, strict=True):
            insns = [self._call(insn) for insn in bind(fn.insns, addresses)]
            env = self.world.program(fn.prog).env
            fixed, poke_tab = self.codegen.fixup(insns, env, used_maps(self.world), self.detected.profile)
            vp = VerifiedProgram(
                fixed,
                fn.stack_depth,
                tail_call_reachable=fn.tail_call_reachable,
                is_subprog=fn.is_subprog,
                exception_boundary=fn.exception_boundary,
                used_maps=used_maps(self.world),
                poke_tab=poke_tab,
            )
            images.append(jit.bpf_int_jit_compile(vp, base))
        return images

    def _call(self, insn: Insn) -> Insn:
        """jit_subprogs(): a pseudo call's imm becomes the callee's address minus __bpf_call_base."""
        if insn.src == BPF_PSEUDO_CALL and insn.code == BPF_CALL_SUBPROG(0).code:
            return BPF_CALL_SUBPROG(self.bases[1] - self.detected.text.call_base)
        return insn

    def read_back(self, kernel: list[bytes]) -> dict[MapSymbol, int]:
        """Each symbol's address, from the kernel's movabs at the placeholder's instruction."""
        symbols = symbols_of(self.functions)
        placeholders = {s: PLACEHOLDER_BASE + 0x1000 * i for i, s in enumerate(symbols)}
        found: dict[MapSymbol, int] = {}
        for image, code in zip(self.jit(placeholders), kernel, strict=True):
            for m, k in zip(CS.disasm(image.code, image.base), CS.disasm(code, image.base), strict=False):
                if m.mnemonic != "movabs" or k.mnemonic != "movabs":
                    continue
                mimm, kimm = int(m.op_str.split(", ")[1], 16), int(k.op_str.split(", ")[1], 16)
                for s, value in placeholders.items():
                    if mimm in (value, value + s.off) or (mimm - value) in self._offsets(s):
                        found.setdefault(s, kimm - (mimm - value))
        return {s: found.get(s, placeholders[s]) for s in symbols}

    def _offsets(self, symbol: MapSymbol) -> set[int]:
        return {
            insn.aux.off
            for fn in self.functions
            for insn in fn.insns
            if isinstance(insn.aux, MapSymbol) and MapSymbol(insn.aux.map_id, insn.aux.glue) == symbol
        }


def poke_run(text: ImageText, pokes: list[PokeDescriptor], map_id: int, key: int, new: int | None, old: int | None) -> None:
    """prog_array_map_poke_run(): every poke of (map, key) moves from `old` to `new` (bpf_func values)."""
    for poke in pokes:
        if poke.map.map_id == map_id and poke.key == key:
            jit_old.CODEGEN.poke_desc_update(poke, new, old, engine_text_poke(cast(Engine, text)))  # duck-typed text


def compare_world(world: World, detected: Detected, codegen=None) -> WorldBytes:
    """`world` as adapt() leaves it (the caller reports the adaptations); `codegen` is jit_old's
    (or a mutant of it: same jit_class/fixup interface)."""
    out = WorldBytes()
    with LiveWorld(world) as live:
        infos = {p.id: live.info(p.id) for p in world.programs}
        bpf_func = {pid: s64(info.ksyms[0]) for pid, info in infos.items()}
        models, images, pokes = {}, {}, []
        for prog in world.programs:
            functions = lower_program(world, prog)
            kernel = infos[prog.id].functions()
            model = ModelProgram(world, detected, functions, [s64(base) for base, _ in kernel], codegen)
            jitted = model.jit(model.read_back([code for _, code in kernel]))
            models[prog.id] = (functions, jitted)
            for image in jitted:
                images[image.base] = bytearray(image.code)
                pokes += image.pokes
        text = ImageText(images)
        slots: dict[int, dict[int, int]] = {m.id: {} for m in world.maps}
        try:
            for spec in world.maps:  # filled after every program loaded: prog_array_map_poke_run()
                for key, target in sorted(spec.slots.items()):
                    poke_run(text, pokes, spec.id, key, bpf_func[target], None)
                    slots[spec.id][key] = target
            _compare(out, world, live, models, images, "load")
            for r, run in enumerate(world.runs):
                for o, op in enumerate(run.ops):
                    if not live.map_op(op):
                        continue
                    old = slots[op.map].pop(op.index, None)
                    new = op.prog if op.op == "update" else None
                    if new is not None:
                        slots[op.map][op.index] = new
                    new_func = bpf_func[new] if new is not None else None
                    old_func = bpf_func[old] if old is not None else None
                    poke_run(text, pokes, op.map, op.index, new_func, old_func)
                    if any(p.map.map_id == op.map for p in pokes):
                        _compare(out, world, live, models, images, f"run {r} op {o}")
        except PokeBusy as e:
            out.refused = f"model: {e}"
    return out


def _compare(out: WorldBytes, world: World, live: LiveWorld, models, images, when: str) -> None:
    for prog in world.programs:
        kernel = live.info(prog.id).functions()
        _, jitted = models[prog.id]
        for (_, code), image in zip(kernel, jitted, strict=True):
            model = bytes(images[image.base])
            base = image.base
            fb = FunctionBytes(prog.id, image is not jitted[0], when, code, model, first_difference(code, model, base))
            out.functions.append(fb)
