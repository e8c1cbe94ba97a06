"""One run of a loaded arm64 world on Unicorn's arm64 engine, observed as the x86-64 runs are.

The harness calls the entry program as the kernel does (`blr` to bpf_func with x0 = ctx), with
lr = HARNESS_RETURN, and stops when the pc reaches it. Every `br xN` of every image (the tail-call
jumps of both sequences) carries a code hook: its destination must be some program's
bpf_func + PROLOGUE_OFFSET * 4, and x0 must still be ctx there (the callee's glue reads it).

The counter lives in the entry program's frame: build_prologue() pushes `stp xzr, x26` right below
the frame record and points x26 at it, tail callees enter after that push and keep using it, and
subprograms receive x26. So it is always at ENTRY_SP - 32.

Entering as a tail callee (`RunSpec.tail_call_cnt`): the harness builds the caller's half (frame
record with lr = HARNESS_RETURN, the counter slot holding the count, x26 pointing at it) and starts
at bpf_func + PROLOGUE_OFFSET * 4.
"""

from __future__ import annotations

import struct

from unicorn import UcError
from unicorn.arm64_const import (
    UC_ARM64_REG_PC,
    UC_ARM64_REG_SP,
    UC_ARM64_REG_X0,
    UC_ARM64_REG_X19,
    UC_ARM64_REG_X29,
    UC_ARM64_REG_X30,
)

from tcfuzz.jit_old.arm64.a64 import br_target_reg
from tcfuzz.machine.executor import ArchRegs, classify_uc_error, drop_hooks, observation
from tcfuzz.model.interfaces import Fault, FaultKind, Observation
from tcfuzz.model.layout import CTX_BASE, ENTRY_RSP, HARNESS_RETURN, STACK_BASE, STACK_SIZE

INSN_BUDGET = 200_000
# x19..x28 and x29 (the frame pointer): AAPCS64 callee-saved registers a BPF program must restore
CALLEE_SAVED = {f"x{n}": UC_ARM64_REG_X19 + (n - 19) for n in range(19, 29)} | {"x29": UC_ARM64_REG_X29}
SENTINEL = {name: 0x5E5E_0000_0000_0000 | (i << 8) for i, name in enumerate(CALLEE_SAVED)}
SCRATCH_AT_ENTRY = 0xC1C1_C1C1_C1C1_C1C1
ARM64_REGS = ArchRegs(UC_ARM64_REG_X0, UC_ARM64_REG_SP, CALLEE_SAVED, SENTINEL)
COUNTER_ADDR = ENTRY_RSP - 32  # the `stp xzr, x26, [sp, #-16]!` slot of the entry frame


def xreg(n: int) -> int:
    """Unicorn's id of Xn (X0..X28 are consecutive; X29, X30 are separate)."""
    return {29: UC_ARM64_REG_X29, 30: UC_ARM64_REG_X30}.get(n, UC_ARM64_REG_X0 + n)


class Arm64Run:
    """Per-run state the code hooks write into."""

    def __init__(self, ld, entry: int) -> None:
        self.ld = ld
        self.trace = [entry]
        self.fault: Fault | None = None
        self.ctx_preserved = True
        tc_off = ld.world.profile.tail_call_offset
        self.entries = {img.base + tc_off: pid for pid, img in ld.images.items()}

    def on_br(self, uc, address, size, reg) -> None:
        dest = uc.reg_read(xreg(reg))
        if uc.reg_read(UC_ARM64_REG_X0) != CTX_BASE:
            self.ctx_preserved = False
        if dest in self.entries:
            self.trace.append(self.entries[dest])
            return
        where, target = self.ld.describe(address), self.ld.describe(dest)
        kind = FaultKind.BAD_ENTRY if target.startswith("prog ") else FaultKind.WILD_JUMP
        self.fault = Fault(kind, dest, f"{where} -> {target or hex(dest)}", address)
        uc.emu_stop()


def install_hooks(ld, run: Arm64Run) -> None:
    for _, image in ld.functions:
        for ins in image.instrs:
            reg = br_target_reg(struct.unpack("<I", ins.data)[0])
            if reg is not None:
                addr = image.base + ins.offset
                ld.engine.hook_code(addr, run.on_br, reg)


def execute_run_arm64(ld, run) -> Observation:
    """The arm64 body of executor.execute_run(), after the map operations."""
    uc = ld.engine.uc
    state = Arm64Run(ld, run.entry)
    hooks_before = len(ld.engine.world_hooks)
    install_hooks(ld, state)
    uc.mem_write(STACK_BASE, bytes(STACK_SIZE))
    for n in range(1, 19):
        uc.reg_write(xreg(n), SCRATCH_AT_ENTRY)
    for name, reg in CALLEE_SAVED.items():
        uc.reg_write(reg, SENTINEL[name])
    uc.reg_write(UC_ARM64_REG_X0, CTX_BASE)
    uc.reg_write(UC_ARM64_REG_X30, HARNESS_RETURN)
    uc.reg_write(UC_ARM64_REG_SP, ENTRY_RSP)
    start = ld.images[run.entry].base
    if run.tail_call_cnt is not None:
        # The caller's half of a tail call: frame record, counter slot, x26 pointing at it.
        uc.mem_write(ENTRY_RSP - 16, struct.pack("<QQ", SENTINEL["x29"], HARNESS_RETURN))
        uc.mem_write(COUNTER_ADDR, struct.pack("<QQ", run.tail_call_cnt, SENTINEL["x26"]))
        uc.reg_write(UC_ARM64_REG_X29, ENTRY_RSP - 16)
        uc.reg_write(xreg(26), COUNTER_ADDR)
        uc.reg_write(UC_ARM64_REG_SP, COUNTER_ADDR)
        start += ld.world.profile.tail_call_offset
    ld.engine.fault = None
    try:
        uc.emu_start(start, HARNESS_RETURN, count=INSN_BUDGET)
        fault = state.fault
        pc = uc.reg_read(UC_ARM64_REG_PC)
        if fault is None and ld.engine.fault is not None:  # the allocation-tail guard stopped it
            fault = Fault(ld.engine.fault.kind, ld.engine.fault.address, ld.describe(pc), pc)
        if fault is None and pc != HARNESS_RETURN:
            fault = Fault(FaultKind.TIMEOUT, pc, ld.describe(pc), pc)
    except UcError as err:
        fault = state.fault or classify_uc_error(ld, err, uc.reg_read(UC_ARM64_REG_PC))
    finally:
        drop_hooks(ld, hooks_before)

    return observation(ld, ARM64_REGS, state.trace, fault, COUNTER_ADDR, ctx_preserved=state.ctx_preserved)
