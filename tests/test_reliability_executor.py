"""Issue 12, the executor's blind spots: emitted code that Unicorn would run differently from a CPU.
`syscall`/`sysenter` ran as no-ops (verdict AGREE), `hlt` read as a timeout, and a data access at a
non-canonical address (#GP on the CPU) read whatever the address's low 52 bits named. Each is now
a fault, hence a verdict, in the per-case path and through the batch path."""

import numpy as np
import pytest
from conftest import static_world

from tcfuzz.jit_new import PatchedCodegen
from tcfuzz.jit_new.jit import PatchedX86Jit
from tcfuzz.machine.batch import Batch, random_cases
from tcfuzz.model.interfaces import FaultKind, VerdictKind
from tcfuzz.model.layout import STACK_BASE
from tcfuzz.verdict.oracle import judge


def prefixed(name: str, prefix: bytes):
    """The patch with `prefix` emitted at the start of every tail-call site."""

    class Jit(PatchedX86Jit):
        def emit_tail_call(self, p, *args, **kw):
            p.emit_bytes(prefix)
            super().emit_tail_call(p, *args, **kw)

    class Codegen(PatchedCodegen):
        jit_class = Jit

    Codegen.name = name
    return Codegen()


NON_CANONICAL = (STACK_BASE | 1 << 63).to_bytes(8, "little")
CODEGENS = {
    "syscall": (prefixed("syscall", b"\x0f\x05"), FaultKind.PRIVILEGED_INSN),
    "sysenter": (prefixed("sysenter", b"\x0f\x34"), FaultKind.PRIVILEGED_INSN),
    "hlt": (prefixed("hlt", b"\xf4"), FaultKind.PRIVILEGED_INSN),
    # movabs rcx, 1 << 63 | STACK_BASE; mov rcx, [rcx]: Unicorn used to read the stack
    "non-canonical": (prefixed("non-canonical", b"\x48\xb9" + NON_CANONICAL + b"\x48\x8b\x09"), FaultKind.NON_CANONICAL),
}


@pytest.mark.parametrize("name", sorted(CODEGENS))
def test_a_privileged_or_non_canonical_instruction_is_a_fault_and_a_finding(name):
    codegen, kind = CODEGENS[name]
    world = static_world(max_entries=4, slots={0: 1}, keys=(0,))
    j = judge(world, new=codegen)
    obs = j.observations["patched"][0]
    assert obs.fault is not None and obs.fault.kind is kind, obs
    assert j.verdict.kind is VerdictKind.NEW_DIVERGES
    assert kind.value in j.verdict.signature
    assert judge(world).verdict.kind is VerdictKind.AGREE  # the patch itself is fine


@pytest.mark.parametrize("name", ["syscall", "sysenter", "hlt"])
def test_the_batch_path_stops_on_them_too(name):
    """(Non-canonical accesses are checked per instruction, in the per-case path only: a Python hook
    on every memory access would cost the batch path most of its speed.)"""
    codegen, _ = CODEGENS[name]
    world = static_world(max_entries=4, slots={0: 1}, keys=(0,))
    batch = Batch(world, codegen)
    result = batch.run(random_cases(world, 16, np.random.default_rng(1)))
    assert result.faulted.all()


def test_a_code_hook_that_raises_stops_the_run_and_emu_start_raises_it():
    """Engine.hook_code's one ctypes callback keeps the binding's rule: an exception in a callback
    stops emulation and comes out of emu_start, never swallowed."""
    from tcfuzz.machine.engine import Engine
    from tcfuzz.model.layout import JIT_BASE

    engine = Engine()
    engine.uc.mem_write(JIT_BASE, b"\x90\x90\xf4")  # nop; nop; hlt
    seen = []

    def fails(uc, address, size, data):
        seen.append((address, data))
        raise LookupError("from the hook")

    engine.hook_code(JIT_BASE + 1, fails, "data")
    with pytest.raises(LookupError, match="from the hook"):
        engine.uc.emu_start(JIT_BASE, 0, count=10)
    assert seen == [(JIT_BASE + 1, "data")]
    engine.reset()  # the hook goes with the world
    engine.uc.emu_start(JIT_BASE, JIT_BASE + 2, count=10)
    assert seen == [(JIT_BASE + 1, "data")] and not engine.code_handlers


def test_the_hooks_register_reads_equal_unicorns_own_zero_extended():
    """Engine.read_reg (the C API, for the hooks' hot path) reads what uc.reg_read reads, a 32-bit or
    16-bit register zero-extended even after a wider value was read."""
    from unicorn.x86_const import UC_X86_REG_DX, UC_X86_REG_ECX, UC_X86_REG_EDX, UC_X86_REG_RCX, UC_X86_REG_RDX

    from tcfuzz.machine.engine import Engine

    engine = Engine()
    engine.uc.reg_write(UC_X86_REG_RDX, 0x1122334455667788)
    engine.uc.reg_write(UC_X86_REG_RCX, 0xFFFFFFFFFFFFFFFF)
    for reg in (UC_X86_REG_RDX, UC_X86_REG_EDX, UC_X86_REG_DX, UC_X86_REG_RCX, UC_X86_REG_ECX):
        engine.read_reg(UC_X86_REG_RCX)  # the buffer holds all ones before each read
        assert engine.read_reg(reg) == engine.uc.reg_read(reg), reg
    assert engine.read_reg(UC_X86_REG_EDX) == 0x55667788


@pytest.mark.parametrize("ip", [STACK_BASE + 0x100, 0x7000_0000_0000])
def test_a_poke_outside_the_text_is_the_kernels_failure_not_the_harness(ip):
    """A codegen's poke descriptor naming an address outside the JIT region and the kernel text (the
    stack, or nothing mapped) is the kernel's BUG_ON/oops: PokeBusy, which a load or a run's map
    operation turns into a fault verdict. Before, an unmapped address raised UcError out of the load."""
    from tcfuzz.machine.engine import Engine
    from tcfuzz.machine.prog_array import PokeBusy, text_poke

    with pytest.raises(PokeBusy, match="not kernel or BPF text"):
        text_poke(Engine(), ip, None, 0x0100_0000)
