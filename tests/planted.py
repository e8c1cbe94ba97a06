"""Planted bugs placed where the old shape-based labelling hid them: plugin codegens that declare the
patch's two known causes (so their repairs apply to them) and add an off-by-one of their own,
MAX_TAIL_CALL_CNT read as 34, only in functions the patch's known causes also touch:

    TWO_SITE_OFF_BY_ONE   functions holding both a static and a dynamic indirect site
    WRAP_OFF_BY_ONE       functions holding a static site whose disp32 wraps

Repairing shared-label or disp-wrap leaves the off-by-one in place, so its divergences must stay
unexplained. Loaded by file path (`tests/planted.py:TWO_SITE_OFF_BY_ONE`) like any plugin.
"""

from tcfuzz.jit_new import PatchedCodegen
from tcfuzz.jit_new.causes import CAUSES
from tcfuzz.jit_new.imm import decode_tail_call_imm
from tcfuzz.jit_new.jit import PatchedX86Jit
from tcfuzz.jit_new.tail_call import static_ptrs_disp, used_map
from tcfuzz.model.bpf import BPF_JMP, BPF_TAIL_CALL
from tcfuzz.selftest.mutants import rewrite_instr, set_byte


def indirect_sites(prog):
    """(map_index, dynamic) of every indirect tail call in the function."""
    sites = []
    for insn in prog.insns:
        if insn.code == BPF_JMP | BPF_TAIL_CALL:
            map_index, dynamic, imm16 = decode_tail_call_imm(insn.imm)
            if not imm16:
                sites.append((map_index, dynamic))
    return sites


def off_by_one_jit(placed):
    class Jit(PatchedX86Jit):
        def emit_tail_call(self, p, prog, insn, ip, callee_regs_used, stack_depth, ctx):
            first = len(p.instrs)
            super().emit_tail_call(p, prog, insn, ip, callee_regs_used, stack_depth, ctx)
            if placed(self.profile, prog):
                rewrite_instr(p, first, "cmp qword ptr [rax], <MAX_TAIL_CALL_CNT>", set_byte(3, 34))

    return Jit


def two_kinds(profile, prog):
    return {dynamic for _, dynamic in indirect_sites(prog)} == {False, True}


def wrapping_static(profile, prog):
    return any(
        not dynamic
        and static_ptrs_disp(profile, used_map(prog, m).max_entries) != profile.ptrs_off + used_map(prog, m).max_entries * 8
        for m, dynamic in indirect_sites(prog)
    )


class TwoSiteOffByOne(PatchedCodegen):
    name = "planted-two-site-off-by-one"
    jit_class = off_by_one_jit(two_kinds)
    known_causes = CAUSES


class WrapOffByOne(PatchedCodegen):
    name = "planted-wrap-off-by-one"
    jit_class = off_by_one_jit(wrapping_static)
    known_causes = CAUSES


TWO_SITE_OFF_BY_ONE = TwoSiteOffByOne()
WRAP_OFF_BY_ONE = WrapOffByOne()


class FaultsOnDynamicSites(PatchedCodegen):
    """A JIT that faults (reads outside its own tables) on any function with a dynamic site: the
    codegen under test does not load such worlds, which is a finding, never a crash of the tool."""

    name = "planted-jit-fault"

    def jit(self, prog, profile, image_base):
        from tcfuzz.model.interfaces import JitFault

        if any(dynamic for _, dynamic in indirect_sites(prog)):
            raise JitFault("planted: poke_tab[-32769] read while emitting a dynamic site")
        return super().jit(prog, profile, image_base)


FAULTS_ON_DYNAMIC_SITES = FaultsOnDynamicSites()


class AbortsTheProcess(PatchedCodegen):
    """Not a codegen defect but a dying engine process (os.abort() in the JIT): the run must read as
    an engine error, never as green and never as a divergence."""

    name = "planted-abort"

    def jit(self, prog, profile, image_base):
        import os

        os.abort()


ABORTS_THE_PROCESS = AbortsTheProcess()
