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
