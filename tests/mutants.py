"""A planted bug for the fuzzing self-tests: the patched codegen with `jae` -> `ja` in the bound check
of every indirect sequence (index == max_entries passes). Loadable as `mutants:BOUND_CHECK_JA`."""
import dataclasses

from jit_new import PatchedCodegen
from jit_new.imm import decode_tail_call_imm
from jit_new.jit import PatchedX86Jit
from jit_old.x86 import X86_JA, X86_JAE


class BoundCheckJaJit(PatchedX86Jit):
    def emit_tail_call(self, p, prog, insn, ip, callee_regs_used, stack_depth, ctx):
        first = len(p.instrs)
        super().emit_tail_call(p, prog, insn, ip, callee_regs_used, stack_depth, ctx)
        if decode_tail_call_imm(insn.imm)[2]:
            return                                              # direct: no bound check
        for k in range(first, len(p.instrs)):
            ins = p.instrs[k]
            if ins.data[0] == X86_JAE:
                p.code[ins.offset] = X86_JA
                p.instrs[k] = dataclasses.replace(ins, data=bytes([X86_JA]) + ins.data[1:])
                return


class BoundCheckJa(PatchedCodegen):
    name = "patched-jae-to-ja"
    jit_class = BoundCheckJaJit


BOUND_CHECK_JA = BoundCheckJa()
