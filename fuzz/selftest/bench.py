"""`tcfuzz bench`: throughput measured in one process, each rate as a ratio to its ceiling.

    batched ceiling     the batch driver running the legacy sequence alone (no oracle)
    batched e2e         legacy + patched batches, the numpy model, the comparison
    per-case ceiling    one bare emu_start per case on the loaded legacy world (no hooks, no oracle)
    chains per case     a loaded A -> B -> C world, one differential case per input: both codegens
                        through the in-guest driver and the reference model case by case
                        (also shown: the same through the per-case executor, hooks and every field)
    worlds              generated worlds judged from scratch (JIT + load + run, three voters)
    atheris             `tcfuzz fuzz` exec/s, with and without instrumentation of tcfuzz's packages
    limits              the exhaustive imm round trip at the kernel limits

Each figure is the best of several repetitions (the machine is noisy); nothing here is a test.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from unicorn.x86_const import UC_X86_REG_RAX, UC_X86_REG_RDI, UC_X86_REG_RSP

from tcfuzz import SOURCE_TREE, jit_new, jit_old
from tcfuzz.gen.worlds import decode
from tcfuzz.machine.batch import Batch, batch_engine, random_cases
from tcfuzz.machine.engine import Engine
from tcfuzz.machine.executor import execute_run, load
from tcfuzz.model.layout import CTX_BASE, ENTRY_RSP, HARNESS_RETURN, ctx_site
from tcfuzz.model.profile import preset
from tcfuzz.model.semantics import predict
from tcfuzz.model.world import SCHEMA, World
from tcfuzz.verdict.batch_oracle import ChainModel, differs, model_batch
from tcfuzz.verdict.oracle import decide, judge

SINGLE_SITE = {
    "schema": SCHEMA,
    "profile": "default",
    "maps": [{"id": 0, "max_entries": 4, "slots": {"0": 1, "2": 0}}],
    "programs": [{"id": 0, "stack_depth": 8, "sites": [{"maps": [0]}]}, {"id": 1}],
    "runs": [{"entry": 0}],
}
CHAIN = {
    "schema": SCHEMA,
    "profile": "default",
    "maps": [{"id": 0, "max_entries": 4, "slots": {"1": 1, "2": 2}}],
    "programs": [
        {"id": 0, "sites": [{"maps": [0], "key": 1}]},
        {"id": 1, "stack_depth": 64, "sites": [{"maps": [0]}]},
        {"id": 2, "stack_depth": 16},
    ],
    "runs": [{"entry": 0}],
}


def best(fn, repeat: int) -> float:
    """Seconds of the fastest of `repeat` calls."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def batched(n: int, repeat: int) -> dict:
    world = World.from_json(SINGLE_SITE)
    cases = random_cases(world, n, np.random.default_rng(1))
    old, new = Batch(world, jit_old.CODEGEN, batch_engine(0)), Batch(world, jit_new.CODEGEN, batch_engine(1))
    old.run(cases), new.run(cases)
    ceiling = best(lambda: old.run(cases), repeat) / n

    def e2e():
        a, b, m = old.run(cases), new.run(cases), model_batch(world, cases)
        return differs(a, m) | differs(b, m)

    e2e()
    end_to_end = best(e2e, repeat) / n
    return {"ceiling_us": ceiling * 1e6, "e2e_us": end_to_end * 1e6, "ratio": ceiling / end_to_end}


def per_case(n: int, repeat: int) -> dict:
    world = World.from_json(SINGLE_SITE)
    engine = Engine()
    ld = load(world, jit_old.CODEGEN, engine)
    uc = engine.uc
    entry = ld.images[0].base
    keys = [struct.pack("<Q", k % 5) for k in range(n)]
    ret = struct.pack("<Q", HARNESS_RETURN)

    def bare():
        for key in keys:
            uc.mem_write(CTX_BASE + ctx_site(0, 0), key)
            uc.mem_write(ENTRY_RSP - 8, ret)
            uc.reg_write(UC_X86_REG_RSP, ENTRY_RSP - 8)
            uc.reg_write(UC_X86_REG_RDI, CTX_BASE)
            uc.emu_start(entry, 0, count=10_000)
            uc.reg_read(UC_X86_REG_RAX)

    ceiling = best(bare, repeat) / n

    chain = World.from_json(CHAIN)
    runs = [
        dataclasses.replace(chain.runs[0], ctx=(dataclasses.replace(chain.runs[0].input_for(1, 0), key=k),))
        for k in (2, 3, 2 | (1 << 40), 0)
    ]
    engines = (Engine(), Engine())
    loaded = (load(chain, jit_old.CODEGEN, engines[0]), load(chain, jit_new.CODEGEN, engines[1]))
    m = max(1, n // 8)

    def full_observation():
        for i in range(m):
            run = runs[i % len(runs)]
            decide(
                {
                    "legacy": [execute_run(loaded[0], run)],
                    "patched": [execute_run(loaded[1], run)],
                    "model": predict(dataclasses.replace(chain, runs=(run,))),
                }
            )

    observed = best(full_observation, repeat) / m

    cases = random_cases(chain, n, np.random.default_rng(3))
    old, new = Batch(chain, jit_old.CODEGEN, batch_engine(0)), Batch(chain, jit_new.CODEGEN, batch_engine(1))
    model = ChainModel(chain)

    def driven():
        expected = model.run(cases)
        return differs(old.run(cases), expected) | differs(new.run(cases), expected)

    driven()
    chain_case = best(driven, repeat) / n
    return {
        "ceiling_us": ceiling * 1e6,
        "chains_us": chain_case * 1e6,
        "ratio": ceiling / chain_case,
        "chains_full_observation_us": observed * 1e6,
    }


def worlds(n: int) -> dict:
    rng = np.random.default_rng(2)
    ws = [decode(rng.bytes(200)) for _ in range(n)]
    t = time.perf_counter()
    for w in ws:
        judge(w)
    return {"world_ms": (time.perf_counter() - t) / n * 1e3}


def atheris(seconds: int) -> dict:
    out = {}
    for label, instrument in (("instrumented", True), ("uninstrumented", False)):
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, **({} if instrument else {"TCFUZZ_NO_INSTRUMENT": "1"}))
            cmd = [
                sys.executable,
                "-m",
                "tcfuzz.cli.main",
                "fuzz",
                "--corpus",
                f"{tmp}/c",
                "--artifacts",
                f"{tmp}/a",
                "--max-time",
                str(seconds),
                "--",
                "-len_control=0",
                "-print_final_stats=0",
            ]
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=SOURCE_TREE)
            summary = json.loads(Path(f"{tmp}/a/summary.json").read_text())
            out[f"{label}_exec_s"] = summary["this_run"]["exec_per_s"]  # tcfuzz-fuzz-summary/2
            out[f"{label}_cases_s"] = summary["this_run"]["cases_per_s"]
    out["instrumentation_cost"] = out["uninstrumented_exec_s"] / max(out["instrumented_exec_s"], 1e-9)
    return out


def limits_time() -> dict:
    from tcfuzz.analysis.limits import hunt

    return {"seconds": best(lambda: hunt(preset("default"), run_demos=False), 3)}


def run(n: int = 2000, repeat: int = 5, atheris_seconds: int = 10) -> dict:
    report = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
        },
        "batched": batched(n, repeat),
        "per_case": per_case(n // 4, repeat),
        "worlds": worlds(100),
        "limits": limits_time(),
    }
    if atheris_seconds:
        report["atheris"] = atheris(atheris_seconds)
    return report


def render(r: dict) -> str:
    b, p, w, li = r["batched"], r["per_case"], r["worlds"], r["limits"]
    lines = [
        f"machine: {r['machine']['cpus']} cpus, {r['machine']['processor']}, Python {r['machine']['python']}",
        f"batched ceiling (legacy alone)   {b['ceiling_us']:7.2f} us/case  {1e6 / b['ceiling_us']:10.0f} cases/s",
        f"batched end to end (2 JITs+model){b['e2e_us']:7.2f} us/case  {1e6 / b['e2e_us']:10.0f} cases/s  "
        f"{b['ratio']:.0%} of the ceiling (two emulations per case: at most ~50%)",
        f"per-case ceiling (bare emu_start) {p['ceiling_us']:7.2f} us/case  {1e6 / p['ceiling_us']:10.0f} cases/s",
        f"chains per case (2 JITs+model)   {p['chains_us']:7.2f} us/case  {1e6 / p['chains_us']:10.0f} cases/s  "
        f"{p['ratio']:.0%} of the ceiling (driver, no hooks; flagged cases get the full observation)",
        f"chains, full observation         {p['chains_full_observation_us']:7.2f} us/case  (hooks, every field)",
        f"worlds from scratch (JIT+load+run) {w['world_ms']:5.2f} ms/world",
        f"limits (kernel domain)           {li['seconds']:7.3f} s",
    ]
    if "atheris" in r:
        a = r["atheris"]
        lines.append(
            f"atheris: {a['instrumented_exec_s']:.0f} exec/s ({a['instrumented_cases_s']:.0f} cases/s) "
            f"instrumented, {a['uninstrumented_exec_s']:.0f} exec/s ({a['uninstrumented_cases_s']:.0f} "
            f"cases/s) uninstrumented ({a['instrumentation_cost']:.2f}x)"
        )
    return "\n".join(lines)
