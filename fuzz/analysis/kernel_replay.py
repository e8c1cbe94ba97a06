"""A counterexample of `tcfuzz prove` replayed on one tail-call sequence under Unicorn, with every
kernel object where the kernel puts it: in the upper half of the address space.

The world layout (model/layout.py) keeps the guest low: Unicorn's x86-64 guest has no paging and
drops address bits 52 and up. A sequence that tells pointers apart by bit 63 (`test rcx, rcx;
jle`, `js`, a signed compare) behaves the same on every world, yet differently on every kernel,
whose text, modules, vmalloc area and direct map all lie at 0xffff8000_00000000 and up. Unicorn
executes such addresses when each page is mapped at its 52-bit alias (measured on unicorn 2.1.4:
a page mapped at `addr & (2**52 - 1)` is what a guest access to the canonical `addr` reaches), so
this module runs one sequence from a concrete state built from a counterexample's values:

    prog array     0xffffc900_00000000   (vmalloc: bpf_map_area_alloc())
    struct bpf_prog 0xffff8881_00000000  (the direct map: kzalloc)
    stack          0xffffc900_10000000   (vmalloc'd task stacks)
    target text    0xffffffffa0001000    (the module area the JIT allocates in), bpf_func of the slot

The sequence's own bytes stay at their JIT address (only rel8 jumps and the final indirect jump
leave it); the run stops where control leaves the sequence. What is compared is what the prover
compares: the way out (its `out` + k, or a jump and its target), rax on a jump, rsp, the
callee-saved registers and the counter. Direct sites are not replayed here (their pokes are rel32
from the JIT image to the target).
"""

from __future__ import annotations

import struct

from unicorn import UC_ARCH_X86, UC_HOOK_CODE, UC_HOOK_MEM_UNMAPPED, UC_MODE_64, UC_PROT_ALL, Uc, UcError, x86_const

from tcfuzz.model.layout import indirect_thunk
from tcfuzz.model.profile import PRESETS

ALIAS = (1 << 52) - 1
ARRAY_HI = 0xFFFF_C900_0000_0000
PROG_HI = 0xFFFF_8881_0000_0000
STACK_HI = 0xFFFF_C900_1000_0000
TEXT_HI = 0xFFFF_FFFF_A000_1000
PAGE = 0x1000
# The general registers a tail-call sequence reads or must preserve, by name, as Unicorn numbers them.
SEQUENCE_REGS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "r12", "r13", "r14", "r15")
UC_REGS = {r: getattr(x86_const, f"UC_X86_REG_{r.upper()}") for r in SEQUENCE_REGS}
OBSERVED = ("rsp", "rbx", "rbp", "r12", "r13", "r14", "r15")


def kernel_state(cfg, values: dict) -> tuple[dict[str, int], dict[int, int]]:
    """Registers and 8-byte cells for a counterexample's index, max_entries, slot and count, with the
    kernel's addresses; the cached target is patch 1/4's invariant (the sequence proof's own)."""
    p = PRESETS[cfg.profile]
    frame = (cfg.stack_depth + 7) // 8 * 8
    pushed = {"none": 0, "some": 2, "all": 4, "boundary": 5}[cfg.callee]
    rbp = STACK_HI + 0x8000
    me = values["max_entries_field"] & 0xFFFF_FFFF
    index = values["index"] & 0xFFFF_FFFF_FFFF_FFFF
    idx = index & 0xFFFF_FFFF
    filled = values["slot"] != 0
    regs = {r: 0x5A5A_0000_0000_0000 + k for k, r in enumerate(UC_REGS)}  # distinct, recognisable
    regs.update(rsi=ARRAY_HI, rdx=index, rbp=rbp, rsp=rbp - frame - 16 - 8 * pushed)
    cells = {
        ARRAY_HI + p.max_entries_off - 4: me << 32,  # max_entries: the high half of its cell
        rbp - frame - 16: STACK_HI + 0x100,  # tcc_ptr
        STACK_HI + 0x100: min(values["count"], p.max_tail_call_cnt),
    }
    for k in range(pushed):
        cells[regs["rsp"] + 8 * k] = 0x3C3C_0000_0000_0000 + k  # the saved callee registers
    if filled and idx < me:
        cells[ARRAY_HI + p.ptrs_off + 8 * idx] = PROG_HI
        cells[ARRAY_HI + p.ptrs_off + 8 * (me + idx)] = TEXT_HI + p.tail_call_offset  # the cached target
        cells[PROG_HI + p.bpf_func_off] = TEXT_HI
    return regs, cells


def run_sequence(seq, regs: dict[str, int], cells: dict[int, int]) -> dict:
    """Run `seq` (its bytes at seq.base) from the state until control leaves it."""
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    mapped: set[int] = set()

    def map_page(addr: int) -> None:
        page = addr & ALIAS & ~(PAGE - 1)
        if page not in mapped:
            uc.mem_map(page, PAGE, UC_PROT_ALL)
            mapped.add(page)

    lo, hi = seq.base & ~(PAGE - 1), (seq.end + PAGE) & ~(PAGE - 1)
    for page in range(lo, hi + PAGE, PAGE):
        map_page(page)
    map_page(indirect_thunk())
    uc.mem_write(seq.base, bytes(seq.code))
    for addr, value in cells.items():
        map_page(addr)
        uc.mem_write(addr & ALIAS, struct.pack("<Q", value & 0xFFFF_FFFF_FFFF_FFFF))
    for r, v in regs.items():
        uc.reg_write(UC_REGS[r], v)

    def on_unmapped(uc, access, addr, size, value, _):  # a data cell nobody wrote: zero, as the prover's
        map_page(addr)  # cells are free; only a fetch (leaving the sequence) ends the run
        return True

    left: dict[str, int] = {}

    def on_code(uc, address, size, _):
        if not seq.base <= address < seq.end:
            left["pc"] = address
            uc.emu_stop()

    uc.hook_add(UC_HOOK_CODE, on_code)
    uc.hook_add(UC_HOOK_MEM_UNMAPPED, on_unmapped)
    try:
        uc.emu_start(seq.base, 0, count=200)
    except UcError:
        left.setdefault("pc", uc.reg_read(x86_const.UC_X86_REG_RIP))
    pc = left.get("pc", uc.reg_read(x86_const.UC_X86_REG_RIP))
    out: dict = {r: uc.reg_read(UC_REGS[r]) for r in OBSERVED}
    out["count"] = struct.unpack("<Q", uc.mem_read((STACK_HI + 0x100) & ALIAS, 8))[0]
    if pc == indirect_thunk():
        out["to"] = ("jump", uc.reg_read(x86_const.UC_X86_REG_RCX))
    elif seq.end <= pc < seq.end + 0x1000:
        out["to"] = ("out", pc - seq.end)
    else:
        out["to"] = ("jump", pc)
    if out["to"][0] == "jump":
        out["rax"] = uc.reg_read(x86_const.UC_X86_REG_RAX)
    return out


def replay_at_kernel_addresses(cfg, values: dict, old, new, base=None) -> str | None:
    """A signature when `new`'s sequence leaves the counterexample's kernel-address state otherwise
    than `old`'s (and, given, `base`'s agrees with `old`'s), else None. Static and dynamic sites."""
    from tcfuzz.analysis.prove import site_sequence

    if cfg.kind == "direct" or cfg.arch != "x86_64":
        return None
    for state in concretisations(cfg, values):
        regs, cells = kernel_state(cfg, state)
        a = run_sequence(site_sequence(old, cfg)[0], regs, cells)
        b = run_sequence(site_sequence(new, cfg)[0], regs, cells)
        if a == b or (base is not None and run_sequence(site_sequence(base, cfg)[0], regs, cells) != a):
            continue
        field = next(k for k in ("to", "rax", "count", *OBSERVED) if a.get(k) != b.get(k))
        show = _show_to if field == "to" else _show
        return f"KERNEL_ADDRESSES/{field}: {old.name} {show(a.get(field))}, {new.name} {show(b.get(field))}"
    return None


def _show_to(v) -> str:
    return f"{v[0]} {hex(v[1]) if v[0] == 'jump' else f'+{v[1]}'}"


def _show(v):
    return hex(v) if isinstance(v, int) else v


def concretisations(cfg, values: dict) -> list[dict]:
    """The counterexample's values, most literal first; a static site's bytes bake the max_entries it
    was JITed with (the configuration's: the `baked-max-entries` precondition), so there it is that one, with the
    index kept where it is below it; then slot 1 filled, and slot 1 empty, with the same count."""
    me = cfg.max_entries
    literal = dict(values)
    if cfg.kind == "static":
        literal["max_entries_field"] = me
        if literal["index"] & 0xFFFF_FFFF >= me:
            literal["index"] = 1
    filled = {"index": 1, "max_entries_field": me, "slot": 1, "count": values["count"], "slot_filled": True}
    return [literal, filled, {**filled, "slot": 0, "slot_filled": False}]
