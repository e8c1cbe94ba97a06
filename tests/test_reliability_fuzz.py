"""Issue 12, the fuzz loop's own probes that need no engine run (the engine-level ones, SIGINT,
SIGTERM, kill -9, restart, engine crashes and determinism, are tests/test_fuzz_interrupts.py and
tests/test_fuzz_loop.py). A codegen that does not load a world, in any of the ways a JIT can refuse
one, is a verdict with a sidecar in the batch path of the target, never an exception that stops
the engine; and its raw input replays to that verdict."""

import json

import pytest

from tcfuzz.cli.main import main
from tcfuzz.frontends.target import Target
from tcfuzz.gen.worlds import decode_input
from tcfuzz.jit_new import PatchedCodegen
from tcfuzz.model.interfaces import JitError, JitFault, VerifierReject


class RefusesToJit(PatchedCodegen):
    name = "refuses-jit-error"

    def jit(self, prog, profile, image_base):
        raise JitError("planted: out of image space")


class FaultsInTheJit(PatchedCodegen):
    name = "refuses-jit-fault"

    def jit(self, prog, profile, image_base):
        raise JitFault("planted: read past poke_tab")


class VerifierRejects(PatchedCodegen):
    name = "refuses-verifier"

    def fixup(self, *args, **kw):
        raise VerifierReject("planted: tail_call with an unknown map")


JIT_ERROR, JIT_FAULT, VERIFIER = RefusesToJit(), FaultsInTheJit(), VerifierRejects()


def batch_inputs(n):
    """The first n fuzzer inputs (of a fixed sequence) that decode to a world and a batch."""
    out, k = [], 0
    while len(out) < n:
        data = bytes([1 + k % 3]) + k.to_bytes(4, "little") * 8
        if decode_input(data)[1] is not None:
            out.append(data)
        k += 1
    return out


@pytest.mark.parametrize("spec", ["JIT_ERROR", "JIT_FAULT", "VERIFIER"])
def test_a_world_the_codegen_does_not_load_is_a_finding_in_the_batch_path(tmp_path, monkeypatch, capsys, spec):
    monkeypatch.setenv("TCFUZZ_ARTIFACTS", str(tmp_path))
    monkeypatch.setenv("TCFUZZ_NEW", f"{__file__}:{spec}")
    monkeypatch.setenv("TCFUZZ_SEED", "1")
    target = Target()
    inputs = batch_inputs(3)
    for data in inputs:
        target(data)  # used to raise ValueError from Batch._load and end the engine
    sidecars = [json.loads(p.read_text()) for p in tmp_path.glob("crash-*.json")]
    assert sidecars and all(s["field"] == "load" and s["load_detail"] for s in sidecars)
    assert target.stats()["cases"] > len(inputs)
    raw = next(p for p in tmp_path.glob("crash-*") if p.suffix != ".json")
    assert main(["repro", str(raw)]) == 1
    out = capsys.readouterr().out
    assert sidecars[0]["signature"] in out


@pytest.mark.parametrize(
    "exits, interrupted, status, exit_status",
    [
        ([77], None, "engine-error", 3),  # libFuzzer's -error_exitcode
        ([1], None, "engine-error", 3),  # a traceback in the child (e.g. a bad flag after --)
        ([0, 77], None, "engine-error", 3),  # one job of two
        ([-15], 15, "interrupted", 143),
        ([0], None, "green", 0),
    ],
)
def test_an_engine_failure_is_never_green_nor_a_finding(tmp_path, exits, interrupted, status, exit_status):
    from tcfuzz.frontends.summary import build_summary, junit

    summary = build_summary(tmp_path, "r", 1.0, exits, interrupted, False, {"seed": 1, "model_order": "jit"})
    assert (summary["status"], summary["exit_status"]) == (status, exit_status)
    xml = junit(summary)
    failed = status == "engine-error"
    assert ('errors="1"' in xml) == failed and (f'failures="{int(failed)}"' in xml)  # never failures="0" when it died


def test_ctrl_c_in_any_other_command_is_one_line_and_130(capsys, monkeypatch):
    import tcfuzz.cli.main as cli

    def interrupted(args):
        raise KeyboardInterrupt

    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser(), "disasm", interrupted))
    assert cli.main(["disasm"]) == 130
    assert capsys.readouterr().err == "tcfuzz disasm: interrupted\n"


def _with_func(ap, command, func):
    ap._subparsers._group_actions[0].choices[command].set_defaults(func=func)
    return ap
