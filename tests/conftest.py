import capstone
import pytest

from tcfuzz import jit_new, jit_old
from tcfuzz.model.layout import image_base
from tcfuzz.model.profile import preset
from tcfuzz.model.sample import SampleConfig, tail_call_sites, verified_sample

pytest_plugins = ["pytester"]

CODEGENS = {"legacy": jit_old.CODEGEN, "patched": jit_new.CODEGEN}


def jit_sample(codegen, profile=None, **cfg):
    profile = profile or preset("default")
    prog = verified_sample(SampleConfig(**cfg), codegen, profile)
    return codegen.jit(prog, profile, image_base(0))


def site_bytes(image, n=0):
    start, end = tail_call_sites(image)[n]
    return image.code[start:end]


@pytest.fixture(scope="session")
def cs():
    return capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)


def world(maps, programs, runs, profile="default"):
    """A World from the same JSON a world file holds (so every test also exercises the reader)."""
    from tcfuzz.model.world import SCHEMA, World

    return World.from_json({"schema": SCHEMA, "profile": profile, "maps": maps, "programs": programs, "runs": runs})


def static_world(max_entries=4, slots=None, keys=(0,), n_progs=2, unpriv=False, profile="default", **prog0):
    """Program 0 has one static site over map 0 with a run-time key; programs 1.. have no sites.
    One run per key."""
    progs = [{"id": 0, "sites": [{"maps": [0]}], **prog0}] + [{"id": i} for i in range(1, n_progs)]
    return world(
        [{"id": 0, "max_entries": max_entries, "unpriv": unpriv, "slots": {str(k): v for k, v in (slots or {}).items()}}],
        progs,
        [{"entry": 0, "ctx": [{"prog": 0, "site": 0, "key": k}]} for k in keys],
        profile,
    )


def _hypothesis_profiles():
    """`dev` for local exploration, `ci` (the default: derandomized, bounded), `nightly` (long).
    Select with TCFUZZ_HYPOTHESIS=dev|ci|nightly."""
    import os

    from hypothesis import HealthCheck, settings

    common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    settings.register_profile("ci", derandomize=True, max_examples=150, database=None, print_blob=True, **common)
    settings.register_profile("dev", max_examples=500, **common)
    settings.register_profile("nightly", max_examples=50_000, print_blob=True, **common)
    settings.load_profile(os.environ.get("TCFUZZ_HYPOTHESIS", "ci"))


_hypothesis_profiles()


@pytest.fixture(scope="session")
def built_report(tmp_path_factory):
    """`tcfuzz report --from <a short real fuzz run>`, built once per test process: the fuzz run's
    directory, the report's files and its JSON, and the fuzz run's stderr."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from tcfuzz.cli.main import main

    base = tmp_path_factory.mktemp("report")
    fuzz_dir = base / "fuzz-artifacts"
    fuzz = subprocess.run(
        [str(Path(sys.executable).parent / "tcfuzz"), "fuzz", "--corpus", str(base / "fuzz-corpus"), "--artifacts",
         str(fuzz_dir), "--max-time", "4", "--ignore-known", "--", "-len_control=0"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert fuzz.returncode == 0, fuzz.stderr[-2000:]
    out = base / "report"
    assert main(["report", "--from", str(fuzz_dir), "--out", str(out), "-q"]) == 0
    paths = {k: out / f"report.{k}" for k in ("json", "md", "html")}
    return {"paths": paths, "json": json.loads(paths["json"].read_text()), "fuzz_dir": fuzz_dir, "fuzz_stderr": fuzz.stderr}


def pytest_collection_modifyitems(items):
    """TCFUZZ_HYPOTHESIS_SECONDS=S bounds every property test (the nightly profile's 50 000 examples
    would not fit `make nightly`'s budget): the S seconds are shared out between the Hypothesis tests
    this process runs, each counted from its first example. A test whose share is spent stops
    there and is reported as skipped with the number of examples it passed."""
    import os
    import time

    seconds = os.environ.get("TCFUZZ_HYPOTHESIS_SECONDS")
    tests = [item for item in items if hasattr(getattr(item, "obj", None), "hypothesis")]
    if not seconds or not tests:
        return
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    share = float(seconds) * workers / len(tests)
    for item in tests:
        handle = item.obj.hypothesis

        def bounded(*args, _inner=handle.inner_test, _state={"started": None, "examples": 0}, **kwargs):  # noqa: B006
            now = time.monotonic()
            _state["started"] = _state["started"] or now
            if now - _state["started"] > share:
                pytest.skip(f"time budget of {share:.0f} s spent after {_state['examples']} examples, none failing")
            _state["examples"] += 1
            return _inner(*args, **kwargs)

        handle.inner_test = bounded
