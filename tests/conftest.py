import capstone
import pytest

import jit_new
import jit_old
from model.layout import image_base
from model.profile import preset
from model.sample import SampleConfig, tail_call_sites, verified_sample

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
