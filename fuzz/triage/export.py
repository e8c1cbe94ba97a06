"""`tcfuzz export FINDING --selftest`: a finding as a BPF selftest in the kernel's own shape, the
shape of tools/testing/selftests/bpf/progs/verifier_tailcall_jit.c: naked programs in inline BPF
asm, the prog arrays with their `.values` set-up, and the test_loader annotations of bpf_misc.h:

    __success __retval(N)   the reference's (the interpreter's) return value for the run
    __arch_x86_64           the __jited lines are x86-64 code
    __jited("...")          the legacy JIT's tail-call sequences, as the test_loader prints JITed
                            code (LLVM's AT&T syntax, a tab between mnemonic and operands, branch
                            targets as labels, so they match as the `{{L[0-9]+}}` regex)
    __load_if_JITed()       the finding is a JIT's, so the test means nothing under the interpreter
    __auxiliary             the tail-call targets, loaded with the program under test

A reviewer can send it upstream as the regression test of a fix: a kernel with the series emits
other bytes for the sequence (the __jited lines fail), and the run's __retval pins the behaviour.

How the world maps onto BPF: each program is one `SEC("tc")` naked function. A run-time key, and the
map choice at a poisoned site, come from global variables (.data, so the verifier cannot fold them
to constants and the site stays indirect), set to the diverging run's ctx values; a constant key is
an immediate (a direct, poke-patched site under the verifier's rules). Callee-saved registers are
set to the same markers tcfuzz uses, the stack is touched at -stack_depth, and the fall-through
returns 0x7A110000 + id, exactly as tcfuzz's lowering (model/lower.py) does, so the JIT sees the
same register usage and stack depth and emits the same tail-call sequence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import capstone

from tcfuzz.machine.executor import compile_world
from tcfuzz.model.interfaces import Codegen
from tcfuzz.model.lower import FALL_THROUGH, site_aux
from tcfuzz.model.sample import tail_call_sites
from tcfuzz.model.semantics import is_direct
from tcfuzz.model.world import World

STATIC_SLOT_MAX = 1 << 16  # larger slot indices are set from user space (an ELF initializer that big is GiBs)
BRANCHES = {"jmp", "ja", "jae", "jb", "jbe", "je", "jne", "jg", "jge", "jl", "jle", "call", "callq"}


class ExportError(Exception):
    """The world uses something a selftest cannot express; the message names the field."""


@dataclass
class Selftest:
    name: str
    source: str
    jited: list[str]  # the __jited patterns, in order (`...` included)
    legacy_text: list[str]  # the legacy sequences as the test_loader prints them, for checking


def _att() -> capstone.Cs:
    cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    cs.syntax = capstone.CS_OPT_SYNTAX_ATT
    return cs


def _hex_numbers(op_str: str) -> str:
    """LLVM prints immediates and displacements in hex and memory operands without spaces."""
    op_str = re.sub(r"\$(-?)(\d+)\b(?!x)", lambda m: f"${m[1]}{int(m[2]):#x}", op_str)
    op_str = re.sub(r"(?<![\w$])(-?)(\d+)\(", lambda m: f"{m[1]}{int(m[2]):#x}(", op_str)
    return re.sub(r"\(([^)]*)\)", lambda m: "(" + m[1].replace(", ", ",") + ")", op_str)


def llvm_lines(code: bytes, base: int) -> list[tuple[str, str]]:
    """(mnemonic, operands) per instruction, LLVM-style; a branch's target is left as an address."""
    return [(i.mnemonic, i.op_str if i.mnemonic in BRANCHES else _hex_numbers(i.op_str)) for i in _att().disasm(code, base)]


def jited_pattern(mnemonic: str, operands: str) -> str:
    if mnemonic in BRANCHES and operands.startswith("0x"):
        return f"\t{mnemonic}\t{{{{L[0-9]+}}}}"  # test_loader prints in-program targets as labels
    return f"\t{mnemonic}\t{operands}" if operands else f"\t{mnemonic}"


def matches(pattern: str, line: str) -> bool:
    """test_loader's matching of one __jited line: literal text, `{{regex}}` parts as regexes."""
    parts = re.split(r"\{\{(.*?)\}\}", pattern)
    regex = "".join(re.escape(p) if k % 2 == 0 else f"(?:{p})" for k, p in enumerate(parts))
    return re.fullmatch(regex, line) is not None


def _c_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t")


def _check(world: World, run: int) -> None:
    for m in world.maps:
        if m.unpriv:
            raise ExportError(f"maps[{m.id}].unpriv: an unprivileged prog array needs __caps_unpriv; not exported")
    for i, prog in enumerate(world.programs):
        if prog.subprog:
            raise ExportError(f"programs[{i}].subprog: sites in a bpf-to-bpf subprogram are not exported yet")
        if prog.exception_boundary:
            raise ExportError(f"programs[{i}].exception_boundary: an exception boundary is not exported")
        env = prog.env
        if not env.bpf_capable or env.blinding_requested or not env.jit_requested:
            raise ExportError(f"programs[{i}].env: only the default environment (bpf_capable, JIT, no blinding) is exported")
    r = world.runs[run]
    if r.tail_call_cnt is not None:
        raise ExportError(f"runs[{run}].tail_call_cnt: entering as a tail callee cannot be a selftest run")


def _slots_at(world: World, run: int) -> dict[int, dict[int, int]]:
    """map id -> {index: prog id} once the map operations of runs 0..run have been applied."""
    slots = {m.id: dict(m.slots) for m in world.maps}
    for r in world.runs[: run + 1]:
        for op in r.ops:
            m = world.map(op.map)
            if op.index >= m.max_entries:
                continue  # -E2BIG: nothing changes
            if op.op == "update" and op.prog is not None:
                slots[op.map][op.index] = op.prog
            else:
                slots[op.map].pop(op.index, None)
    return slots


def export_selftest(world: World, name: str, legacy: Codegen, run: int, retval: int | None) -> Selftest:
    """The selftest for `run` of `world` (the run where the finding shows), pinning the legacy
    codegen's tail-call sequences of the entry program and the reference's return value."""
    _check(world, run)
    entry = world.runs[run].entry
    ctx = {(c.prog, c.site): c for c in world.runs[run].ctx}
    images = dict(compile_world(world, legacy))
    image = images[f"prog {entry}"]
    sequences = []
    for lo, hi in tail_call_sites(image):
        sequences.append(llvm_lines(image.code[lo:hi], image.base + lo))
    jited, legacy_text = [], []
    for seq in sequences:
        jited.append("...")
        jited += [jited_pattern(m, o) for m, o in seq]
        legacy_text += [f"\t{m}\t{o}" if o else f"\t{m}" for m, o in seq]

    out = [
        "// SPDX-License-Identifier: GPL-2.0",
        f"/* Exported by tcfuzz from a finding ({name}): the legacy x86-64 JIT's tail-call sequences",
        " * and the interpreter's result for the run where the patched codegen parts from both.",
        f" * Kernel profile assumed by the __jited lines: {world.profile.name} (IBT {'on' if world.profile.ibt else 'off'},",
        f" * indirect jump {world.profile.jump.value}, offsetof(bpf_array, map.max_entries)={world.profile.max_entries_off:#x},",
        f" * offsetof(bpf_array, ptrs)={world.profile.ptrs_off:#x}).",
        " */",
        "#include <linux/bpf.h>",
        "#include <bpf/bpf_helpers.h>",
        '#include "bpf_misc.h"',
        "",
    ]
    out += [f"int prog_{p.id}(void);" for p in world.programs]
    out.append("")
    slots = _slots_at(world, run)
    late = []
    for m in world.maps:
        if m.kind != "prog_array":
            out.append(f"/* used_maps[{m.id}]: a filler map in tcfuzz's world; it only takes an index */")
            continue
        big = m.max_entries > 2**24
        out += [
            "struct {",
            "\t__uint(type, BPF_MAP_TYPE_PROG_ARRAY);",
            f"\t__uint(max_entries, {m.max_entries});" + ("\t/* the size is the finding: GiBs of ptrs[] */" if big else ""),
            "\t__uint(key_size, sizeof(__u32));",
            "\t__array(values, void (void));",
            f'}} map_{m.id} SEC(".maps")' + (" = {" if any(k < STATIC_SLOT_MAX for k in slots[m.id]) else ";"),
        ]
        small = {k: v for k, v in sorted(slots[m.id].items()) if k < STATIC_SLOT_MAX}
        late += [(m.id, k, v) for k, v in sorted(slots[m.id].items()) if k >= STATIC_SLOT_MAX]
        if small:
            out.append("\t.values = {")
            out += [f"\t\t[{k}] = (void *) &prog_{v}," for k, v in small.items()]
            out += ["\t},", "};"]
        out.append("")
    if late:
        out.append("/* Set from user space before the run (an initializer this far out would be GiBs of ELF):")
        out += [
            f" *   bpf_map_update_elem(bpf_map__fd(skel->maps.map_{m}), &(__u32){{{k}}}, &prog_{v}_fd, BPF_ANY);"
            for m, k, v in late
        ]
        out += [" */", ""]

    for prog in world.programs:
        for j, site in enumerate(prog.sites):
            c = ctx.get((prog.id, j))
            if site.key is None:
                out.append(f"__u64 key_{prog.id}_{j} = {c.key if c else 0:#x};\t/* run-time key: .data, not a constant */")
            if len(site.maps) > 1:
                choice = c.map if c and c.map is not None else site.maps[0]
                out.append(f"__u64 map_choice_{prog.id}_{j} = {choice};\t/* which map reaches the poisoned site */")
    out.append("")

    for prog in world.programs:
        body, imms = [], set()
        body += [f'\t"r{reg} = {0x1000 * reg:#x};"' for reg in sorted(prog.callee_regs)]
        if prog.stack_depth:
            body += ['\t"r0 = 0;"', f'\t"*(u8 *)(r10 - {prog.stack_depth}) = r0;"\t/* stack_depth {prog.stack_depth} */']
        for j, site in enumerate(prog.sites):
            aux = site_aux(world, site)
            kind = "direct" if is_direct(prog.env, aux) else ("dynamic" if aux.map_poisoned else "static")
            body.append(f"\t/* site {j}: {kind} */")
            body.append(f'\t"r2 = %[map_{site.maps[0]}] ll;"')
            imms.add(f"map_{site.maps[0]}")
            if len(site.maps) > 1:
                body += [f'\t"r1 = %[map_choice_{prog.id}_{j}] ll;"', '\t"r1 = *(u64 *)(r1 + 0);"']
                imms.add(f"map_choice_{prog.id}_{j}")
                for other in site.maps[1:]:
                    body += [
                        f'\t"if r1 != {other} goto l{j}_{other}_%=;"',
                        f'\t"r2 = %[map_{other}] ll;"',
                        f'"l{j}_{other}_%=:"',
                    ]
                    imms.add(f"map_{other}")
            if site.key is None:
                body += [f'\t"r3 = %[key_{prog.id}_{j}] ll;"', '\t"r3 = *(u64 *)(r3 + 0);"']
                imms.add(f"key_{prog.id}_{j}")
            else:
                body.append(f'\t"r3 = {site.key} ll;"' if site.key > 0x7FFFFFFF else f'\t"r3 = {site.key};"')
            body.append('\t"call %[bpf_tail_call];"')
        body += [f'\t"r0 = {FALL_THROUGH + prog.id:#x};"\t/* fell through */', '\t"exit;"']
        out.append('SEC("tc")')
        if prog.id == entry:
            out += [f'__description("tcfuzz: {_c_escape(name)}")', "__success"]
            if retval is not None:
                out.append(f"__retval({retval:#x})")
            out += ["__load_if_JITed()", "__arch_x86_64"]
            out += [f'__jited("{_c_escape(p)}")' for p in jited]
        else:
            out.append("__auxiliary")
        operands = ", ".join(["__imm(bpf_tail_call)"] + [f"__imm_addr({n})" for n in sorted(imms)]) if prog.sites else ""
        out += [
            f"__naked int prog_{prog.id}(void)",
            "{",
            "\tasm volatile (",
            *body,
            "\t:",
            f"\t: {operands}".rstrip(),
            "\t: __clobber_all);",
            "}",
            "",
        ]
    out.append('char __license[] SEC("license") = "GPL";')
    return Selftest(name, "\n".join(out) + "\n", jited, legacy_text)
