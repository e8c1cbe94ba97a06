"""Guest address-space layout shared by the emitters (rel32 targets) and the executor.

Unicorn's x86-64 guest has no paging and a 52-bit physical space (emulator-measurements.md §8), so
the kernel's high addresses are relocated low. Every rel32 the JIT emits (retpoline thunk, direct
tail-call pokes, second `exit`) is computed for these addresses, exactly as the kernel computes it
for its own.

    0x0000_0010_0000 +----------------------------+ KTEXT_BASE
                     | __x86_indirect_thunk_array | 16 thunks x RETPOLINE_THUNK_SIZE (rcx = [1])
                     +----------------------------+
    0x0000_0100_0000 +----------------------------+ JIT_BASE
                     | JIT image of program 0     | IMAGE_SLOT bytes per program,
                     | JIT image of program 1     | bpf_func = image base (no CFI preamble)
                     | ...                        |
                     +----------------------------+
    0x0010_0000_0000 +----------------------------+ ARRAY_BASE
                     | struct bpf_array, map 0    | ARRAY_SLOT (128 GiB) of address space per map
                     | struct bpf_array, map 1    |
                     +----------------------------+
"""
KTEXT_BASE = 0x0010_0000
RETPOLINE_THUNK_SIZE = 32                      # arch/x86/include/asm/nospec-branch.h
INDIRECT_THUNK_ARRAY = KTEXT_BASE              # &__x86_indirect_thunk_array[0]
RCX = 1                                        # reg2hex[BPF_REG_4]

JIT_BASE = 0x0100_0000
IMAGE_SLOT = 0x1_0000


def indirect_thunk(reg: int = RCX) -> int:
    """&__x86_indirect_thunk_array[reg]."""
    return INDIRECT_THUNK_ARRAY + RETPOLINE_THUNK_SIZE * reg


def image_base(slot: int) -> int:
    return JIT_BASE + IMAGE_SLOT * slot

# Prog arrays: one ARRAY_SLOT of address space each, so even max_entries = 2**32-1 with the cached
# half (2 * 2**32 * 8 bytes = 64 GiB) fits; pages are mapped lazily inside the allocation.
ARRAY_BASE = 0x0010_0000_0000
ARRAY_SLOT = 1 << 37


def array_base(map_id: int) -> int:
    return ARRAY_BASE + ARRAY_SLOT * map_id
