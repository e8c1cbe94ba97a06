import pytest

from tcfuzz.model.profile import PRESETS, JumpVariant, KernelProfile, ProfileError, preset


def test_tail_call_offset_and_struct_offsets():
    assert preset("default").tail_call_offset == 12 and preset("ibt").tail_call_offset == 16
    assert preset("default").max_entries_off == 0x44 and preset("no-security").max_entries_off == 0x3C
    assert preset("default").bpf_func_off == 0x48
    assert (preset("default").max_tail_call_cnt, preset("default").max_used_maps, preset("default").poke_tab_max) == (
        33,
        64,
        1024,
    )


def test_presets_cover_the_jump_variants():
    assert {p.jump for p in PRESETS.values()} == set(JumpVariant)


def test_limits_are_overridable():
    raised = preset("default").replace(max_used_maps=70000, poke_tab_max=70000)
    assert raised.max_used_maps == 70000


def test_json_round_trip_and_unknown_field():
    p = preset("retpoline")
    assert KernelProfile.from_json(p.to_json()) == p
    with pytest.raises(ProfileError, match="unknown profile field"):
        KernelProfile.from_json({**p.to_json(), "colour": 1})


@pytest.mark.parametrize(
    "bad",
    [
        dict(max_entries_off=0x80),
        dict(bpf_func_off=-1),
        dict(ptrs_off=0x161),
        dict(ptrs_off=0x20),
        dict(max_tail_call_cnt=200),
        dict(poke_tab_max=0),
        dict(jump="spectre"),
    ],
)
def test_impossible_profiles_are_rejected(bad):
    with pytest.raises((ProfileError, ValueError)):
        KernelProfile(**bad)


def test_unknown_preset():
    with pytest.raises(ProfileError, match="presets:"):
        preset("nope")
