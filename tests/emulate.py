"""Running a lifted sequence's bytes under Unicorn, for the lifter tests of both architectures."""

from unicorn import UC_HOOK_CODE


def run_until_it_leaves(uc, seq, count: int = 200) -> int:
    """Run from the sequence's first byte until control leaves [seq.base, seq.end); where it went."""
    left = {}

    def on_code(uc, address, size, _):
        if not seq.base <= address < seq.end:
            left["pc"] = address
            uc.emu_stop()

    uc.hook_add(UC_HOOK_CODE, on_code)
    uc.emu_start(seq.base, 0, count=count)
    return left["pc"]
