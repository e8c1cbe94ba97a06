"""Guest address-space layout shared by the emitters (rel32 targets) and the executor.

Unicorn's x86-64 guest has no paging and a 52-bit physical space (Unicorn 2.1 drops address bits 52 and up), so
the kernel's high addresses are relocated low. Every rel32 the JIT emits (retpoline thunk, direct
tail-call pokes, second `exit`) is computed for these addresses, exactly as the kernel computes it
for its own.

    0x0000_0010_0000 +----------------------------+ KTEXT_BASE (r-x)
                     | __x86_indirect_thunk_array | 16 thunks x RETPOLINE_THUNK_SIZE (rcx = [1])
                     | harness return: hlt        | HARNESS_RETURN: the entry program returns here
    0x0000_0020_0000 +----------------------------+ PROG_BASE (rw-)
                     | struct bpf_prog, id 0..15  | PROG_STRUCT_SIZE each; bpf_func at profile.bpf_func_off
    0x0000_0030_0000 +----------------------------+ CTX_BASE (rw-)
                     | u64 run_count[16]          | bumped by each program's glue
                     | {u64 key, u64 map} [16][8] | CTX_SITES: per (program, site) run-time inputs
    0x0000_0040_0000 +----------------------------+ STACK_BASE (rw-)
                     | stack, grows down          | STACK_SIZE; the harness "call" pushes at ENTRY_RSP
    0x0000_0050_0000 +----------------------------+ BATCH_BASE (rw-)
                     | batch driver state, cases, | BATCH_SIZE; the batch driver itself is kernel
                     | results                    | text at KTEXT_BASE + 0x1000
                     +----------------------------+
    0x0000_0100_0000 +----------------------------+ JIT_BASE
                     | JIT image of program 0     | IMAGE_SLOT bytes per program, bpf_func = image
                     |   its subprogram, if any   |   base (no CFI preamble); a subprogram's image
                     | JIT image of program 1     |   at SUBPROG_OFFSET in the same slot
                     | ...                        |
                     +----------------------------+
    0x0010_0000_0000 +----------------------------+ ARRAY_BASE
                     | struct bpf_array, map 0    | ARRAY_SLOT (128 GiB) of address space per map,
                     | struct bpf_array, map 1    | page-aligned base, pages mapped on first touch
                     +----------------------------+            inside the allocation only
"""

from dataclasses import dataclass

KTEXT_BASE = 0x0010_0000
RETPOLINE_THUNK_SIZE = 32  # arch/x86/include/asm/nospec-branch.h
INDIRECT_THUNK_ARRAY = KTEXT_BASE  # &__x86_indirect_thunk_array[0]
RCX = 1  # reg2hex[BPF_REG_4]

HARNESS_RETURN = KTEXT_BASE + 0x800
BPF_CALL_BASE = KTEXT_BASE + 0xC00  # stands for __bpf_call_base: bpf-to-bpf call imm is relative to it
DUMMY_TRAMP = KTEXT_BASE + 0xA00  # stands for arm64's dummy_tramp, the initial target of every image's plt

MAX_PROGS = 16  # programs per world: one image slot and bpf_prog struct each
MAX_SITES = 8  # tail-call sites per program: one ctx input record each

PROG_BASE = 0x0020_0000
PROG_STRUCT_SIZE = 0x100

CTX_BASE = 0x0030_0000
CTX_SIZE = 0x1000
CTX_SITES = 0x100  # after run_count[16]
CTX_SITE_SIZE = 16

STACK_BASE = 0x0040_0000
STACK_SIZE = 0x1_0000
ENTRY_RSP = STACK_BASE + STACK_SIZE - 0x100  # rsp before the harness pushes its return address

PAGE = 0x1000

BATCH_BASE = 0x0050_0000
BATCH_SIZE = 0x40_0000

JIT_BASE = 0x0100_0000
IMAGE_SLOT = 0x1_0000


RETURN_THUNK = KTEXT_BASE + 0xA00  # stands for x86_return_thunk: a bare `ret`


@dataclass(frozen=True)
class KernelText:
    """The kernel text addresses the JIT emits rel32s to: the guest's by default, the running
    kernel's (from its image and /proc/kallsyms) when tcfuzz compares bytes with it."""

    indirect_thunk_array: int = INDIRECT_THUNK_ARRAY  # __x86_indirect_thunk_array
    return_thunk: int = RETURN_THUNK  # x86_return_thunk
    call_base: int = BPF_CALL_BASE  # __bpf_call_base

    def indirect_thunk(self, reg: int = RCX) -> int:
        return self.indirect_thunk_array + RETPOLINE_THUNK_SIZE * reg


GUEST_TEXT = KernelText()


def indirect_thunk(reg: int = RCX) -> int:
    """&__x86_indirect_thunk_array[reg]."""
    return INDIRECT_THUNK_ARRAY + RETPOLINE_THUNK_SIZE * reg


SUBPROG_OFFSET = IMAGE_SLOT // 2


def image_base(slot: int) -> int:
    return JIT_BASE + IMAGE_SLOT * slot


def subprog_base(slot: int) -> int:
    return image_base(slot) + SUBPROG_OFFSET


def prog_struct(prog_id: int) -> int:
    return PROG_BASE + PROG_STRUCT_SIZE * prog_id


def ctx_run_count(prog_id: int) -> int:
    """Offset in ctx of the program's run counter."""
    return 8 * prog_id


def ctx_site(prog_id: int, site: int) -> int:
    """Offset in ctx of a site's inputs: +0 the u64 key, +8 the map pointer (poisoned sites)."""
    return CTX_SITES + CTX_SITE_SIZE * (prog_id * MAX_SITES + site)


# Prog arrays: one ARRAY_SLOT of address space each, so even max_entries = 2**32-1 with the cached
# half (2 * 2**32 * 8 bytes = 64 GiB) fits; pages are mapped lazily inside the allocation.
ARRAY_BASE = 0x0010_0000_0000
ARRAY_SLOT = 1 << 37


def array_base(map_id: int) -> int:
    return ARRAY_BASE + ARRAY_SLOT * map_id
