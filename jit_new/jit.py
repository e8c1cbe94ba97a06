"""Patch 2/4, the `case BPF_JMP | BPF_TAIL_CALL:` of do_jit(): decode the packed imm."""
from __future__ import annotations

from tcfuzz.jit_new.imm import decode_tail_call_imm
from tcfuzz.jit_new.tail_call import emit_bpf_tail_call_indirect
from tcfuzz.jit_old.emit import Emitter
from tcfuzz.jit_old.jit import JitContext, X86Jit, poke_entry
from tcfuzz.jit_old.tail_call import emit_bpf_tail_call_direct
from tcfuzz.model.bpf import Insn
from tcfuzz.model.interfaces import VerifiedProgram


class PatchedX86Jit(X86Jit):
    def emit_tail_call(self, p: Emitter, prog: VerifiedProgram, insn: Insn, ip: int,
                       callee_regs_used, stack_depth: int, ctx: JitContext) -> None:
        map_index, dynamic_array, imm16 = decode_tail_call_imm(insn.imm)
        if imm16:
            emit_bpf_tail_call_direct(p, self.profile, prog, poke_entry(prog, imm16 - 1), ip,
                                      callee_regs_used, stack_depth, ctx)
        else:
            emit_bpf_tail_call_indirect(p, self.profile, prog, map_index, dynamic_array,
                                        callee_regs_used, stack_depth, ip, ctx)
