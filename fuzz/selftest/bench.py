"""`tcfuzz bench`: throughput measured in one process, each rate as a ratio to its ceiling.

    batched ceiling     the batch driver running the legacy sequence alone (no oracle)
    batched e2e         legacy + patched batches, the numpy model, the comparison
    per-case ceiling    one bare emu_start per case on the loaded legacy world (no hooks, no oracle)
    chains per case     a loaded A -> B -> C world, one differential case per input: both codegens
                        through the in-guest driver and the reference model (ChainModel)
                        (also shown: the same through the per-case executor, hooks and every field)
    worlds              distinct worlds judged (JIT + load + run, three voters), from scratch,
                        through the JIT image cache (a stream of mutated inputs, as a fuzzer makes),
                        and with every compile a hit (the floor besides the JIT)
    atheris             `tcfuzz fuzz` exec/s and cases/s, instrumented as `make fuzz` runs it and not,
                        and the loop's case rate as a share of the batched end-to-end rate
    profile             (--profile N) where an input's time goes, by stage
    limits              the exhaustive imm round trip at the kernel limits

Each figure is min / median / max over the repetitions (the machine is noisy); ratios are of medians
measured in the same run. Nothing here is a test.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
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


def spread(samples: list[float]) -> dict:
    """min / median / max of the repetitions."""
    return {"min": min(samples), "median": statistics.median(samples), "max": max(samples)}


def timed(fn, repeat: int, per: int = 1) -> dict:
    """Seconds per unit (`per` units per call) of each of `repeat` calls, as a spread."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) / per)
    return spread(times)


def scaled(d: dict, k: float) -> dict:
    return {key: v * k for key, v in d.items()}


def batched(n: int, repeat: int) -> dict:
    world = World.from_json(SINGLE_SITE)
    cases = random_cases(world, n, np.random.default_rng(1))
    old, new = Batch(world, jit_old.CODEGEN, batch_engine(0)), Batch(world, jit_new.CODEGEN, batch_engine(1))
    old.run(cases), new.run(cases)
    ceiling = scaled(timed(lambda: old.run(cases), repeat, n), 1e6)

    def e2e():
        a, b, m = old.run(cases), new.run(cases), model_batch(world, cases)
        return differs(a, m) | differs(b, m)

    e2e()
    end_to_end = scaled(timed(e2e, repeat, n), 1e6)
    return {"ceiling_us": ceiling, "e2e_us": end_to_end, "ratio": ceiling["median"] / end_to_end["median"]}


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

    ceiling = scaled(timed(bare, repeat, n), 1e6)

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

    observed = scaled(timed(full_observation, repeat, m), 1e6)

    cases = random_cases(chain, n, np.random.default_rng(3))
    old, new = Batch(chain, jit_old.CODEGEN, batch_engine(0)), Batch(chain, jit_new.CODEGEN, batch_engine(1))
    model = ChainModel(chain)

    def driven():
        expected = model.run(cases)
        return differs(old.run(cases), expected) | differs(new.run(cases), expected)

    driven()
    chain_case = scaled(timed(driven, repeat, n), 1e6)
    return {
        "ceiling_us": ceiling,
        "chains_us": chain_case,
        "ratio": ceiling["median"] / chain_case["median"],
        "chains_full_observation_us": observed,
    }


def mutated_stream(n: int, seed: int = 2) -> list[World]:
    """n distinct worlds as a fuzzer meets them: inputs made by libFuzzer-style mutations (a few bytes
    changed, a part copied) of a few parents, so programs recur only where the mutation left them."""
    import random

    rng = random.Random(seed)
    parents = [rng.randbytes(rng.randrange(40, 240)) for _ in range(8)]
    seen: set[str] = set()
    out: list[World] = []
    while len(out) < n:
        data = bytearray(rng.choice(parents))
        for _ in range(rng.randrange(1, 5)):
            if rng.random() < 0.8:
                data[rng.randrange(len(data))] = rng.randrange(256)
            else:
                a, b = sorted(rng.sample(range(len(data)), 2))
                at = rng.randrange(len(data))
                data[at : at + b - a] = data[a:b]
        world = decode(bytes(data))
        key = json.dumps(world.to_json(), sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(world)
            if rng.random() < 0.3:
                parents.append(bytes(data))  # an interesting input joins the corpus
    return out


def worlds(n: int, repeat: int) -> dict:
    """Distinct worlds judged (JIT both codegens + load + run, three voters, the policy's replay),
    from scratch (the JIT image cache off, as TCFUZZ_JIT_CACHE=0 runs: emptying it before each world
    instead would also recompute the codegens' fingerprints, which a fuzzing process does once) and
    through the cache (emptied once per repetition: a hit is a program an earlier world of the
    stream really had). Also the floor: the same stream judged again with every compile a hit (not
    a fuzzing figure: what a world costs besides its JIT)."""
    from tcfuzz.machine import jit_cache

    stream = mutated_stream(n)

    def scratch():
        size = jit_cache.MAX_ENTRIES
        jit_cache.MAX_ENTRIES = 0
        try:
            for w in stream:
                judge(w)
        finally:
            jit_cache.MAX_ENTRIES = size

    def cached():
        jit_cache.clear()
        for w in stream:
            judge(w)

    def all_hits():
        for w in stream:
            judge(w)

    from_scratch = scaled(timed(scratch, repeat, n), 1e3)
    through_cache = scaled(timed(cached, repeat, n), 1e3)
    hit_rate = jit_cache.STATS.rate
    every_compile_a_hit = scaled(timed(all_hits, repeat, n), 1e3)  # the cache holds the stream now
    return {
        "scratch_ms": from_scratch,
        "cached_ms": through_cache,
        "all_hits_ms": every_compile_a_hit,
        "cache_hit_rate": hit_rate,
        "speedup": from_scratch["median"] / through_cache["median"],
        "worlds": n,
    }


def atheris(seconds: int, repeat: int) -> dict:
    """`tcfuzz fuzz` from an empty corpus (seeded from the regression corpus, as `make fuzz` runs it),
    instrumented and not, `repeat` runs each."""
    out: dict = {}
    for label, instrument in (("instrumented", True), ("uninstrumented", False)):
        execs, cases = [], []
        for _ in range(repeat):
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
                    "--ignore-known",
                    "--",
                    "-len_control=0",
                    "-print_final_stats=0",
                ]
                subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=SOURCE_TREE)
                summary = json.loads(Path(f"{tmp}/a/summary.json").read_text())
                execs.append(summary["this_run"]["exec_per_s"])  # tcfuzz-fuzz-summary/2
                cases.append(summary["this_run"]["cases_per_s"])
        out[f"{label}_exec_s"], out[f"{label}_cases_s"] = spread(execs), spread(cases)
    out["instrumentation_cost"] = out["uninstrumented_exec_s"]["median"] / max(out["instrumented_exec_s"]["median"], 1e-9)
    return out


def limits_time(repeat: int) -> dict:
    from tcfuzz.analysis.limits import hunt

    return {"seconds": timed(lambda: hunt(preset("default"), run_demos=False), repeat)}


def input_profile(n: int, seed: int = 1) -> dict:
    """Where a fuzz input's time goes: the target (uninstrumented, in this process) on n random inputs
    under cProfile, cumulative seconds of each stage as a share of the whole."""
    import cProfile
    import pstats
    import random

    os.environ.setdefault("TCFUZZ_ARTIFACTS", tempfile.mkdtemp(prefix="tcfuzz-bench-"))
    from tcfuzz.frontends.target import Target

    target = Target()
    rng = random.Random(seed)
    inputs = [rng.randbytes(rng.randrange(8, 400)) for _ in range(n)]
    profile = cProfile.Profile()
    t = time.perf_counter()
    profile.enable()
    for data in inputs:
        target(data)
    profile.disable()
    total = time.perf_counter() - t
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]

    def cum(path_end: str, name: str) -> float:
        return sum(v[3] for (f, _, fn), v in stats.items() if f.endswith(path_end) and fn == name)

    stages = {
        "decode (world + case table)": cum("gen/worlds.py", "decode_input"),
        "batch: load both codegens (JIT via the cache)": cum("machine/batch.py", "_load"),
        "batch: emulation (both codegens)": cum("machine/batch.py", "run") - cum("machine/batch.py", "_load"),
        "batch: reference model": cum("verdict/batch_oracle.py", "model_batch") + cum("verdict/batch_oracle.py", "run"),
        "per-case triage of flagged cases (3 voters)": cum("verdict/oracle.py", "judge"),
        "attribution (replay under repaired codegens)": cum("verdict/policy.py", "attribute"),
        "JIT compiles (misses), anywhere": cum("jit_old/__init__.py", "jit") + cum("jit_old/arm64/__init__.py", "jit"),
        "artifacts and stats files": cum("triage/artifacts.py", "write_artifact") + cum("frontends/progress.py", "tick"),
    }
    return {
        "inputs": n,
        "seconds": total,
        "inputs_per_s": n / total,
        "cases_per_s": target.cases / total,
        "shares": {k: v / total for k, v in stages.items()},
    }


def run(n: int = 2000, repeat: int = 5, atheris_seconds: int = 10, atheris_repeat: int = 3, profile_inputs: int = 0) -> dict:
    report: dict = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_average": list(os.getloadavg()),
        },
        "repeat": repeat,
        "batched": batched(n, repeat),
        "per_case": per_case(n // 4, repeat),
        "worlds": worlds(100, repeat),
        "limits": limits_time(repeat),
    }
    if atheris_seconds:
        a = report["atheris"] = atheris(atheris_seconds, atheris_repeat)
        e2e_rate = 1e6 / report["batched"]["e2e_us"]["median"]
        a["loop_ratio"] = a["instrumented_cases_s"]["median"] / e2e_rate
        a["loop_ratio_uninstrumented"] = a["uninstrumented_cases_s"]["median"] / e2e_rate
    if profile_inputs:
        report["profile"] = input_profile(profile_inputs)
    report["machine"]["load_average_after"] = list(os.getloadavg())
    return report


def fmt(d: dict, unit: str, digits: int = 2) -> str:
    """median [min-max] unit"""
    return f"{d['median']:.{digits}f} [{d['min']:.{digits}f}-{d['max']:.{digits}f}] {unit}"


def rate(d: dict, scale: float = 1e6) -> str:
    """cases/s of a us/case spread: median [slowest-fastest]"""
    return f"{scale / d['median']:,.0f} [{scale / d['max']:,.0f}-{scale / d['min']:,.0f}]/s"


def render(r: dict) -> str:
    b, p, w, li = r["batched"], r["per_case"], r["worlds"], r["limits"]
    m = r["machine"]
    lines = [
        f"machine: {m['cpus']} cpus, {m['processor']}, Python {m['python']}; load average "
        f"{m['load_average'][0]:.1f} before, {m['load_average_after'][0]:.1f} after",
        f"each figure: median [min-max] over {r['repeat']} repetitions",
        f"batched ceiling (legacy alone)    {fmt(b['ceiling_us'], 'us/case')}  {rate(b['ceiling_us'])}",
        f"batched end to end (2 JITs+model) {fmt(b['e2e_us'], 'us/case')}  {rate(b['e2e_us'])}  "
        f"{b['ratio']:.0%} of the ceiling (two emulations per case: at most ~50%)",
        f"per-case ceiling (bare emu_start) {fmt(p['ceiling_us'], 'us/case')}  {rate(p['ceiling_us'])}",
        f"chains per case (2 JITs+model)    {fmt(p['chains_us'], 'us/case')}  {rate(p['chains_us'])}  "
        f"{p['ratio']:.0%} of the ceiling",
        f"chains, full observation          {fmt(p['chains_full_observation_us'], 'us/case')}  (hooks, every field)",
        f"distinct worlds from scratch      {fmt(w['scratch_ms'], 'ms/world')}  {rate(w['scratch_ms'], 1e3)}",
        f"distinct worlds via the JIT cache {fmt(w['cached_ms'], 'ms/world')}  {rate(w['cached_ms'], 1e3)}  "
        f"{w['speedup']:.1f}x ({w['cache_hit_rate']:.0%} of compiles hit; {w['worlds']} mutated-input worlds)",
        f"  the same, every compile a hit   {fmt(w['all_hits_ms'], 'ms/world')}  "
        f"{w['scratch_ms']['median'] / w['all_hits_ms']['median']:.1f}x (the floor: loads and runs, no JIT)",
        f"limits (kernel domain)            {fmt(li['seconds'], 's', 3)}",
    ]
    if "atheris" in r:
        a = r["atheris"]
        lines += [
            f"fuzz loop, instrumented (make fuzz) {fmt(a['instrumented_exec_s'], 'inputs/s', 1)}, "
            f"{fmt(a['instrumented_cases_s'], 'cases/s', 0)}",
            f"fuzz loop, uninstrumented           {fmt(a['uninstrumented_exec_s'], 'inputs/s', 1)}, "
            f"{fmt(a['uninstrumented_cases_s'], 'cases/s', 0)}  (instrumentation {a['instrumentation_cost']:.2f}x)",
            f"fuzz loop / batched end to end      {a['loop_ratio']:.1%} instrumented, "
            f"{a['loop_ratio_uninstrumented']:.1%} uninstrumented (medians)",
        ]
    if "profile" in r:
        pr = r["profile"]
        lines.append(
            f"where an input's time goes ({pr['inputs']} random inputs, uninstrumented, cProfile; "
            f"{pr['inputs_per_s']:.1f} inputs/s, {pr['cases_per_s']:.0f} cases/s under the profiler):"
        )
        lines += [f"  {share:6.1%}  {stage}" for stage, share in pr["shares"].items()]
    return "\n".join(lines)
