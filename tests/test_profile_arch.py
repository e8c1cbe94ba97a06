"""The profile names the architecture: strict JSON, arch-specific options refused on the other one,
and World.for_arch() twins."""

import pytest

from tcfuzz.model.profile import KernelProfile, ProfileError, preset, profile_for_arch
from tcfuzz.model.world import SCHEMA, World, WorldError


def world_with(profile):
    return {
        "schema": SCHEMA,
        "profile": profile,
        "maps": [{"id": 0, "max_entries": 2}],
        "programs": [{"id": 0}],
        "runs": [{"entry": 0}],
    }


@pytest.mark.parametrize(
    "profile, message",
    [
        ({"arch": "riscv64"}, "arch='riscv64' is not one of x86_64, arm64"),
        ({"arch": 64}, "arch must be a string, got 64"),
        ({"arch": "arm64", "bti": "yes"}, "bti must be true or false"),
        ({"arch": "arm64", "ibt": True}, "ibt, sls and jump are x86-64 options"),
        ({"pac": True}, "bti and pac are arm64 options"),
    ],
)
def test_bad_arch_fields_are_one_line_errors(profile, message):
    with pytest.raises(WorldError, match="^profile: ") as e:
        World.from_json(world_with(profile))
    assert message in str(e.value)


def test_default_is_x86_64_and_arm64_round_trips():
    assert World.from_json(world_with("default")).profile.arch == "x86_64"
    w = World.from_json(world_with({"name": "mine", "arch": "arm64", "pac": True, "ptrs_off": 0x200}))
    assert w.profile.tail_call_offset == 28 and World.from_json(w.to_json()) == w


def test_twins_keep_the_layout_and_carry_the_landing_pads():
    x86 = preset("ibt").replace(ptrs_off=0x1F8)
    arm = profile_for_arch(x86, "arm64")
    assert (arm.arch, arm.bti, arm.pac, arm.ibt, arm.ptrs_off) == ("arm64", True, False, False, 0x1F8)
    back = profile_for_arch(arm, "x86_64")
    assert (back.arch, back.ibt, back.bti) == ("x86_64", True, False)
    with pytest.raises(ProfileError):
        profile_for_arch(KernelProfile(), "mips")
