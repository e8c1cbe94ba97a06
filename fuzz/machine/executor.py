"""Run a world under one codegen on the shared Unicorn engine and observe each run.

    world --lower--> BPF --codegen.fixup--> VerifiedProgram --codegen.jit--> JitImage
          --load--> guest memory (images, bpf_prog structs, prog arrays, direct-call pokes)
          --per run: map ops (text pokes), ctx, call the entry program--> Observation

The harness calls the entry program like the kernel does (`call bpf_func` with rdi = ctx) with a
return address pointing at a `hlt`. Every instruction that can leave a program for another one —
each `jmp rcx`, the retpoline thunk, each direct-call poke site — carries a code hook recording the
destination, which must be some program's bpf_func + X86_TAIL_CALL_OFFSET.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass, field

import capstone
from capstone.x86_const import X86_OP_MEM
from unicorn import UcError
from unicorn.unicorn_const import (
    UC_ERR_FETCH_PROT,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_READ_PROT,
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_PROT,
    UC_ERR_WRITE_UNMAPPED,
)
from unicorn.x86_const import (
    UC_X86_REG_R12,
    UC_X86_REG_R13,
    UC_X86_REG_R14,
    UC_X86_REG_R15,
    UC_X86_REG_RAX,
    UC_X86_REG_RBP,
    UC_X86_REG_RBX,
    UC_X86_REG_RCX,
    UC_X86_REG_RDI,
    UC_X86_REG_RDX,
    UC_X86_REG_RIP,
    UC_X86_REG_RSI,
    UC_X86_REG_RSP,
)

from tcfuzz.codegens import for_arch
from tcfuzz.machine import jit_cache
from tcfuzz.machine.engine import Engine, shared_engine
from tcfuzz.machine.jit_cache import fingerprint
from tcfuzz.machine.prog_array import CacheOverrun, PokeBusy, ProgArray, bpf_tail_call_direct_fixup, engine_text_poke
from tcfuzz.model.bpf import round_up
from tcfuzz.model.interfaces import (
    Codegen,
    Fault,
    FaultKind,
    JitError,
    JitFault,
    JitImage,
    Observation,
    VerifierReject,
)
from tcfuzz.model.layout import (
    CTX_BASE,
    CTX_SIZE,
    ENTRY_RSP,
    HARNESS_RETURN,
    IMAGE_SLOT,
    MAX_PROGS,
    PROG_BASE,
    PROG_STRUCT_SIZE,
    RETURN_THUNK,
    STACK_BASE,
    STACK_SIZE,
    SUBPROG_OFFSET,
    array_base,
    ctx_run_count,
    ctx_site,
    indirect_thunk,
    prog_struct,
)
from tcfuzz.model.lower import lower_program, used_maps
from tcfuzz.model.sample import tail_call_sites
from tcfuzz.model.world import MapOp, ProgramSpec, RunSpec, World

INSN_BUDGET = 200_000  # a full 33-call chain of 8-site programs runs well under 20k instructions

# __x86_indirect_thunk_rcx (arch/x86/lib/retpoline.S): call 1f; 2: pause; lfence; jmp 2b; 1: mov [rsp], rcx; ret
RETPOLINE_RCX = bytes.fromhex("e807000000f3900faee8ebf948890c24c3")

CALLEE_SAVED = {
    "rbx": UC_X86_REG_RBX,
    "rbp": UC_X86_REG_RBP,
    "r12": UC_X86_REG_R12,
    "r13": UC_X86_REG_R13,
    "r14": UC_X86_REG_R14,
    "r15": UC_X86_REG_R15,
}
SENTINEL = {name: 0x5E5E_0000_0000_0000 | (i << 8) for i, name in enumerate(CALLEE_SAVED)}
SCRATCH_AT_ENTRY = 0xC1C1_C1C1_C1C1_C1C1  # rax/rcx/rdx/rsi at entry: the prologue must not rely on them


@dataclass
class Loaded:
    """One codegen's view of a world once loaded into the engine."""

    world: World
    codegen: Codegen
    engine: Engine
    load: str = "ok"
    load_detail: str = ""
    images: dict[int, JitImage] = field(default_factory=dict)  # program id -> main function's image
    functions: list[tuple[str, JitImage]] = field(default_factory=list)  # ("prog 1" / "prog 1 subprog", image)
    arrays: dict[int, ProgArray] = field(default_factory=dict)
    dead: Fault | None = None  # the kernel hit BUG_ON in a text poke: nothing runs after that

    @property
    def bpf_func(self) -> dict[int, int]:
        return {pid: img.base for pid, img in self.images.items()}

    def describe(self, addr: int) -> str:
        """`prog 1 +0x4a (site 0): mov rcx, ...` for an address in an image, else ''."""
        for name, img in sorted(self.functions, key=lambda f: -f[1].base):
            if img.base <= addr < img.base + IMAGE_SLOT:
                off = addr - img.base
                site = next((f" (site {k})" for k, (lo, hi) in enumerate(tail_call_sites(img)) if lo <= off < hi), "")
                asm = next((ins.asm for ins in img.instrs if ins.offset <= off < ins.offset + len(ins.data)), "")
                exact = any(ins.offset == off for ins in img.instrs)
                return f"{name} +{off:#x}{site}: " + (asm if exact else f"inside `{asm}`" if asm else "past the code")
        if indirect_thunk() <= addr < indirect_thunk() + len(RETPOLINE_RCX):
            return "__x86_indirect_thunk_rcx"
        if PROG_BASE <= addr < prog_struct(MAX_PROGS):
            return f"struct bpf_prog {(addr - PROG_BASE) // PROG_STRUCT_SIZE} +{(addr - PROG_BASE) % PROG_STRUCT_SIZE:#x}"
        for map_id, array in self.arrays.items():
            if array.alloc.start <= addr < array.alloc.end:
                return f"struct bpf_array {map_id} +{addr - array.alloc.start:#x}"
        return ""


def compile_world(world: World, codegen: Codegen) -> list[tuple[str, JitImage]]:
    """Every function of every program through `codegen`'s fix-up and JIT: [(name, image)], main
    functions first within a program. Raises VerifierReject / JitError / JitFault."""
    codegen = for_arch(codegen, world.profile.arch)
    functions = []
    digest = fingerprint(codegen) if jit_cache.MAX_ENTRIES > 0 else None
    maps = tuple(used_maps(world))
    for prog in world.programs:
        for fn in lower_program(world, prog):
            image = jit_cache.compile_function(world, prog, fn, codegen, digest, maps)  # fuzz/machine/jit_cache.py: compile once
            if len(image.code) > SUBPROG_OFFSET:
                raise JitError(f"program {prog.id}: image of {len(image.code)} bytes exceeds its slot")
            functions.append((f"prog {prog.id} subprog" if fn.is_subprog else f"prog {prog.id}", image))
    return functions


def load(world: World, codegen: Codegen, engine: Engine | None = None) -> Loaded:
    arch = world.profile.arch
    codegen = for_arch(codegen, arch)
    if engine is None or engine.arch != arch:
        engine = shared_engine(arch)
    engine.reset()
    ld = Loaded(world, codegen, engine)
    profile = world.profile
    try:
        ld.functions = compile_world(world, codegen)
    except JitFault as e:
        ld.load, ld.load_detail = "jit_fault", str(e)
    except JitError as e:
        ld.load, ld.load_detail = "jit_error", str(e)
    except VerifierReject as e:
        ld.load, ld.load_detail = "rejected", str(e)
    if ld.load != "ok":
        engine.settle()
        return ld
    ld.images = {int(name.split()[1]): image for name, image in ld.functions if not name.endswith("subprog")}

    for _, image in ld.functions:
        engine.write_code(image.base, image.code)
    for pid, image in ld.images.items():
        engine.uc.mem_write(prog_struct(pid) + profile.bpf_func_off, struct.pack("<Q", image.base))
    if arch == "x86_64":
        engine.write_code(indirect_thunk(), RETPOLINE_RCX)
        engine.write_code(HARNESS_RETURN, b"\xf4")  # hlt
        engine.write_code(RETURN_THUNK, b"\xc3")  # x86_return_thunk of a rethunk profile: ret

    try:
        for spec in world.maps:  # created, then filled, before any load
            array = ld.arrays[spec.id] = ProgArray(engine, spec, profile, codegen.cached_targets)
            for key, pid in sorted(spec.slots.items()):
                array.xchg(key, pid)
                array.update_cache(key, ld.bpf_func[pid], codegen)
        for _, image in ld.functions:
            bpf_tail_call_direct_fixup(engine, codegen, image.pokes, ld.arrays, ld.bpf_func)
    except (PokeBusy, CacheOverrun) as e:
        ld.dead = maintenance_fault(e)
    engine.settle()  # the allocations exist: the last world's pages none of them claimed go
    return ld


def maintenance_fault(e: PokeBusy | CacheOverrun) -> Fault:
    """What the run observes once the kernel's own prog-array maintenance went wrong."""
    return Fault(FaultKind.POKE_BUSY if isinstance(e, PokeBusy) else FaultKind.OUT_OF_ALLOCATION, 0, str(e))


def map_op(ld: Loaded, op: MapOp) -> None:
    """bpf_fd_array_map_update_elem() / fd_array_map_delete_elem(): xchg, then prog_array_map_poke_run()."""
    array = ld.arrays[op.map]
    if op.index >= array.spec.max_entries:
        return  # -E2BIG
    old = array.xchg(op.index, op.prog)
    new_func = ld.bpf_func[op.prog] if op.prog is not None else None
    old_func = ld.bpf_func[old] if old is not None else None
    if ld.codegen.cache_before_pokes:  # patch 1/4: the cache first, then prog_array_map_poke_run()
        array.update_cache(op.index, new_func, ld.codegen)
    poke = engine_text_poke(ld.engine)
    for _, image in ld.functions:
        for desc in image.pokes:
            if desc.map.map_id == op.map and desc.key == op.index:
                ld.codegen.poke_desc_update(desc, new_func, old_func, poke)
    if not ld.codegen.cache_before_pokes:
        array.update_cache(op.index, new_func, ld.codegen)


class _Run:
    """Per-run state the code hooks write into."""

    def __init__(self, ld: Loaded, entry: int) -> None:
        self.ld = ld
        self.trace = [entry]
        self.fault: Fault | None = None
        tc_off = ld.world.profile.tail_call_offset
        self.entries = {img.base + tc_off: pid for pid, img in ld.images.items()}

    def landed(self, uc, src: int, dest: int) -> None:
        if dest in self.entries:
            self.trace.append(self.entries[dest])
            return
        where = self.ld.describe(src)
        target = self.ld.describe(dest)
        in_code = target.startswith("prog ") or target.startswith("__x86")
        kind = FaultKind.BAD_ENTRY if in_code else FaultKind.WILD_JUMP
        self.fault = Fault(kind, dest, f"{where} -> {target or hex(dest)}", src)
        uc.emu_stop()

    def on_indirect(self, uc, address, size, user_data) -> None:
        self.landed(uc, address, self.ld.engine.read_reg(UC_X86_REG_RCX))

    def on_direct(self, uc, address, size, user_data) -> None:
        insn = bytes(uc.mem_read(address, 5))
        if insn[0] == 0xE9:
            self.landed(uc, address, address + 5 + struct.unpack("<i", insn[1:])[0])


def install_hooks(ld: Loaded, run: _Run) -> None:
    ld.engine.hook_code(indirect_thunk(), run.on_indirect)
    for _, image in ld.functions:
        for ins in image.instrs:
            if ins.data == b"\xff\xe1":  # jmp rcx
                ld.engine.hook_code(image.base + ins.offset, run.on_indirect)
        for poke in image.pokes:
            if poke.tailcall_target is not None:
                ld.engine.hook_code(poke.tailcall_target, run.on_direct)


class _MemoryChecks:
    """The non-canonical check, hooked once per loaded world (kept until the engine's next reset, so
    a world's runs share the hooks); each run points `run` at its own state."""

    def __init__(self, ld: Loaded) -> None:
        self.ld = ld
        self.run: _Run | None = None
        for _, image in ld.functions:
            for offset, base, index, scale, disp in _memory_operands(image):
                ld.engine.hook_code(image.base + offset, self.on_memory, (base, index, scale, disp))

    def on_memory(self, uc, address, size, operand) -> None:
        """Before an instruction with a register-based memory operand: its effective address must
        be canonical (Unicorn drops bits 52..63 and would access what the rest names)."""
        base, index, scale, disp = operand
        read = self.ld.engine.read_reg
        ea = disp + (read(base) if base is not None else 0) + (read(index) * scale if index is not None else 0)
        ea &= 0xFFFF_FFFF_FFFF_FFFF
        run = self.run
        if not canonical(ea) and run is not None and run.fault is None:
            run.fault = Fault(FaultKind.NON_CANONICAL, ea, self.ld.describe(address), address)
            uc.emu_stop()


def memory_checks(ld: Loaded) -> _MemoryChecks:
    """Per-case runs only: the batch path (which loads through load() too) never gets these hooks."""
    checks = getattr(ld.engine, "memory_checks", None)
    if checks is None or checks.ld is not ld:
        checks = _MemoryChecks(ld)
        ld.engine.memory_checks = checks  # type: ignore[attr-defined]
    return checks


def write_ctx(ld: Loaded, run: RunSpec) -> None:
    ctx = bytearray(CTX_SIZE)
    for prog in ld.world.programs:
        for j in range(len(prog.sites)):
            struct.pack_into(
                "<QQ", ctx, ctx_site(prog.id, j), run.input_for(prog.id, j).key, array_base(ld.world.site_map(run, prog.id, j).id)
            )
    ld.engine.uc.mem_write(CTX_BASE, bytes(ctx))


def classify_uc_error(ld: Loaded, err: UcError, rip: int) -> Fault:
    mem = ld.engine.fault
    if err.errno in (UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED) and mem is not None:
        return Fault(mem.kind, mem.address, ld.describe(rip), rip)
    if err.errno in (UC_ERR_READ_PROT, UC_ERR_WRITE_PROT):
        return Fault(FaultKind.UNMAPPED, rip, ld.describe(rip), rip)
    if err.errno in (UC_ERR_FETCH_UNMAPPED, UC_ERR_FETCH_PROT):
        return Fault(FaultKind.WILD_JUMP, rip, "", None)
    return Fault(FaultKind.ILLEGAL_INSN, rip, ld.describe(rip) or str(err), rip)


def stopped_early(ld: Loaded, rip: int) -> Fault:
    """The run ended somewhere other than the harness's return: a `hlt` (Unicorn stops right after
    one, as if the budget had run out) or the instruction budget (a loop). A budget that runs out
    just after an f4 byte that is not itself an instruction would be named hlt; loops are tight, so
    that has not been seen."""
    try:
        prev = bytes(ld.engine.uc.mem_read(rip - 1, 1))
    except UcError:
        prev = b""
    if prev == b"\xf4":
        return Fault(FaultKind.PRIVILEGED_INSN, rip - 1, ld.describe(rip - 1), rip - 1)
    return Fault(FaultKind.TIMEOUT, rip, ld.describe(rip), rip)


def canonical(addr: int) -> bool:
    """x86-64 with 4-level paging: bits 63..47 all equal."""
    return (addr >> 47) in (0, 0x1_FFFF)


def _memory_operands(image: JitImage) -> list[tuple[int, int | None, int | None, int, int]]:
    """(offset, base, index, scale, disp), with Unicorn register ids, of every instruction in the
    image's tail-call sites (the code the series changes, where an index scales into an array) that
    accesses memory through a register other than rsp/rbp (those always hold canonical addresses
    here). Decoded once per distinct site bytes."""
    out = []
    for lo, hi in tail_call_sites(image):
        code = bytes(image.code[lo:hi])
        if code not in _OPERANDS:
            if len(_OPERANDS) > 4096:
                _OPERANDS.clear()
            _OPERANDS[code] = _decode_operands(code)
        out += [(lo + off, *rest) for off, *rest in _OPERANDS[code]]
    return out


def _decode_operands(code: bytes) -> list:
    cs = _capstone()
    out = []
    for ins in cs.disasm(code, 0):
        if ins.mnemonic == "lea" or ins.mnemonic.startswith("nop"):
            continue
        for op in ins.operands:
            if op.type != X86_OP_MEM:
                continue
            base, index = op.mem.base, op.mem.index
            names = {cs.reg_name(r) for r in (base, index) if r}
            if not names or "rip" in names or names <= {"rsp", "rbp", "esp", "ebp"}:
                continue
            out.append((ins.address, _uc_reg(cs, base), _uc_reg(cs, index), op.mem.scale, op.mem.disp))
    return out


_OPERANDS: dict[bytes, list] = {}


@functools.cache
def _capstone() -> capstone.Cs:
    cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    cs.detail = True
    return cs


def _uc_reg(cs, reg: int) -> int | None:
    if not reg:
        return None
    import unicorn.x86_const as x86

    return getattr(x86, f"UC_X86_REG_{cs.reg_name(reg).upper()}")


def counter_home(world: World, trace: list[int]) -> ProgramSpec:
    """Whose frame holds the tail-call counter at the end of a chain (emit_prologue_tail_call()).

    A tail callee of a main program gets the count by value in rax and pushes a slot of its own, so
    the count moves along the chain. A subprogram gets a pointer to its main program's slot, and so
    does every tail callee of a subprogram, so once a chain passes through a `subprog` program the
    count stays in that program's slot. Every one of these frames hangs off the entry frame's rbp.
    """
    return next((world.program(p) for p in trace if world.program(p).subprog), world.program(trace[-1]))


def execute_run(ld: Loaded, run: RunSpec) -> Observation:
    uc = ld.engine.uc
    if ld.load != "ok":
        return Observation.not_loaded(ld.load)
    try:
        for op in run.ops:
            if ld.dead is None:
                map_op(ld, op)
    except (PokeBusy, CacheOverrun) as e:
        ld.dead = maintenance_fault(e)
    if ld.dead is not None:
        return Observation(fault=ld.dead, ret=None, stack_delta=None, ctx_preserved=None)

    if ld.world.profile.arch == "arm64":
        from tcfuzz.machine.executor_arm64 import execute_run_arm64  # imports this module

        write_ctx(ld, run)
        return execute_run_arm64(ld, run)
    state = _Run(ld, run.entry)
    checks = memory_checks(ld)
    checks.run = state
    hooks_before = len(ld.engine.world_hooks)
    install_hooks(ld, state)
    write_ctx(ld, run)
    uc.mem_write(STACK_BASE, bytes(STACK_SIZE))
    uc.mem_write(ENTRY_RSP - 8, struct.pack("<Q", HARNESS_RETURN))
    for reg in (UC_X86_REG_RAX, UC_X86_REG_RCX, UC_X86_REG_RDX, UC_X86_REG_RSI):
        uc.reg_write(reg, SCRATCH_AT_ENTRY)
    for name, reg in CALLEE_SAVED.items():
        uc.reg_write(reg, SENTINEL[name])
    uc.reg_write(UC_X86_REG_RDI, CTX_BASE)
    uc.reg_write(UC_X86_REG_RSP, ENTRY_RSP - 8)
    start = ld.images[run.entry].base
    if run.tail_call_cnt is not None:
        # The caller's half of a tail call: its frame (push rbp; mov rbp, rsp) and the count in rax.
        uc.mem_write(ENTRY_RSP - 16, struct.pack("<Q", SENTINEL["rbp"]))
        uc.reg_write(UC_X86_REG_RSP, ENTRY_RSP - 16)
        uc.reg_write(UC_X86_REG_RBP, ENTRY_RSP - 16)
        uc.reg_write(UC_X86_REG_RAX, run.tail_call_cnt)
        start += ld.world.profile.tail_call_offset
    ld.engine.fault = None
    try:
        uc.emu_start(start, 0, count=INSN_BUDGET)
        fault = state.fault
        if fault is None and ld.engine.fault is not None:  # the allocation-tail guard or a syscall stopped it
            mem = ld.engine.fault
            rip = mem.address if mem.kind is FaultKind.PRIVILEGED_INSN else uc.reg_read(UC_X86_REG_RIP)
            fault = Fault(mem.kind, mem.address, ld.describe(rip), rip)
        if fault is None and uc.reg_read(UC_X86_REG_RIP) != HARNESS_RETURN + 1:
            fault = stopped_early(ld, uc.reg_read(UC_X86_REG_RIP))
    except UcError as err:
        fault = state.fault or classify_uc_error(ld, err, uc.reg_read(UC_X86_REG_RIP))
    finally:
        drop_hooks(ld, hooks_before)
        checks.run = None

    counter_addr = ENTRY_RSP - 8 - 8 - round_up(counter_home(ld.world, state.trace).stack_depth, 8) - 8
    return observation(ld, X86_REGS, state.trace, fault, counter_addr, ctx_preserved=uc.reg_read(UC_X86_REG_RDI) == CTX_BASE)


def drop_hooks(ld: Loaded, hooks_before: int) -> None:
    """Remove the hooks one run installed."""
    for h in ld.engine.world_hooks[hooks_before:]:
        ld.engine.unhook(h)
    del ld.engine.world_hooks[hooks_before:]


@dataclass(frozen=True)
class ArchRegs:
    """Where an architecture's run leaves what is observed: the return register, the stack pointer,
    and the callee-saved registers with the sentinels the harness put in them."""

    ret: int
    sp: int
    callee_saved: dict[str, int]
    sentinel: dict[str, int]


X86_REGS = ArchRegs(UC_X86_REG_RAX, UC_X86_REG_RSP, CALLEE_SAVED, SENTINEL)


def observation(
    ld: Loaded, regs: ArchRegs, trace: list[int], fault: Fault | None, counter_addr: int, ctx_preserved: bool
) -> Observation:
    """What a finished run shows: run counters from ctx and the counter slot always; the return,
    registers and stack only when it returned (a fault leaves them meaningless)."""
    uc = ld.engine.uc
    counts = tuple(
        (p.id, struct.unpack("<Q", uc.mem_read(CTX_BASE + ctx_run_count(p.id), 8))[0])
        for p in sorted(ld.world.programs, key=lambda p: p.id)
    )
    tail_call_cnt = struct.unpack("<Q", uc.mem_read(counter_addr, 8))[0]
    if fault is not None:
        return Observation(
            fault=fault,
            trace=tuple(trace),
            ret=None,
            tail_call_cnt=tail_call_cnt,
            runs=counts,
            callee_saved_clobbered=(),
            stack_delta=None,
            ctx_preserved=None,
        )
    return Observation(
        trace=tuple(trace),
        ret=uc.reg_read(regs.ret),
        tail_call_cnt=tail_call_cnt,
        runs=counts,
        callee_saved_clobbered=tuple(n for n, r in regs.callee_saved.items() if uc.reg_read(r) != regs.sentinel[n]),
        stack_delta=uc.reg_read(regs.sp) - ENTRY_RSP,
        ctx_preserved=ctx_preserved,
    )


def execute(world: World, codegen: Codegen, engine: Engine | None = None) -> list[Observation]:
    """Load the world under `codegen` and observe every run, in order."""
    ld = load(world, codegen, engine)
    return [execute_run(ld, run) for run in world.runs]
