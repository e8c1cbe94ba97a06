"""The world file format: a strict, versioned JSON form with one-line errors naming the field."""

import json

import pytest
from conftest import world

from tcfuzz.model.world import SCHEMA, World, WorldError, index_mask

GOOD = {
    "schema": SCHEMA,
    "profile": "ibt",
    "maps": [
        {"id": 3, "kind": "filler", "max_entries": 1},
        {"id": 0, "max_entries": 0xFFFFFFFF, "unpriv": False, "slots": {"5": 1}},
    ],
    "programs": [
        {
            "id": 0,
            "stack_depth": 13,
            "callee_regs": [6, 9],
            "exception_boundary": True,
            "env": {"bpf_capable": False},
            "sites": [{"maps": [0], "key": 5}, {"maps": [0]}],
        },
        {"id": 1},
    ],
    "runs": [{"entry": 0, "ops": [{"op": "delete", "map": 0, "index": 5}], "ctx": [{"prog": 0, "site": 1, "key": 2**64 - 1}]}],
}


def test_round_trip_is_exact():
    w = World.from_json(GOOD)
    again = World.from_json(json.loads(json.dumps(w.to_json())))
    assert again == w
    assert again.to_json() == w.to_json()
    assert w.profile.ibt and w.maps[1].slots == {5: 1} and w.programs[0].env.bpf_capable is False


def mutate(path, value):
    d = json.loads(json.dumps(GOOD))
    *parents, last = path
    node = d
    for key in parents:
        node = node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return d


@pytest.mark.parametrize(
    "path, value, message",
    [
        (["schema"], "tcfuzz-world/0", "schema: 'tcfuzz-world/0' is not 'tcfuzz-world/1'"),
        (["colour"], 1, "world: unknown field 'colour'"),
        (["runs"], KeyError, "world: missing field 'runs'"),
        (["maps", 1, "max_entries"], 0, "maps[1].max_entries: 0 is not a u32 >= 1"),
        (["maps", 1, "max_entries"], 2**32, "maps[1].max_entries: 4294967296 is not a u32 >= 1"),
        (["maps", 1, "max_entries"], "4", "maps[1].max_entries: expected an integer, got '4'"),
        (["maps", 1, "unpriv"], True, "maps[1].max_entries: 4294967295 rounds past u32 for an unpriv map"),
        (["maps", 1, "slots"], {"7": 9}, "maps[1].slots[7]: no program with id 9"),
        (["maps", 0, "slots"], {"0": 0}, "maps[0].slots: a filler map has no program slots"),
        (["programs", 0, "stack_depth"], 513, "programs[0].stack_depth: 513 outside 0..512"),
        (["programs", 0, "callee_regs"], [5], "programs[0].callee_regs: [5] is not a subset of r6..r9"),
        (["programs", 0, "sites", 0, "maps"], [3], "programs[0].sites[0].maps: map 3 is not a prog array"),
        (["programs", 0, "env", "jit"], True, "programs[0].env: unknown field 'jit'"),
        (["runs", 0, "ops", 0, "op"], "clear", "runs[0].ops[0].op: 'clear' is not 'update' or 'delete'"),
        (["runs", 0, "ops", 0, "prog"], 1, "runs[0].ops[0].prog: an update names a program, a delete does not"),
        (["runs", 0, "ctx", 0, "key"], 2**64, "runs[0].ctx[0].key: 18446744073709551616 is not a u64"),
        (["runs", 0, "ctx", 0, "site"], 2, "runs[0].ctx[0]: program 0 has no site 2"),
        (["runs", 0, "entry"], 7, "runs[0].entry: no program with id 7"),
        (["runs", 0, "tail_call_cnt"], 34, "runs[0].tail_call_cnt: 34 outside 0..33"),
        (["profile"], "riscv64", "profile: unknown profile 'riscv64'"),
        (["profile"], {"ptrs_off": 0x161}, "profile: profile 'default': ptrs_off=0x161 must be 8-aligned"),
    ],
)
def test_errors_name_the_field(path, value, message):
    with pytest.raises(WorldError) as e:
        World.from_json(mutate(path, value))
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)


def test_poisoned_site_over_unpriv_map_is_refused_like_the_verifier():
    with pytest.raises(WorldError, match="tail_call abusing map_ptr"):
        world(
            [{"id": 0, "max_entries": 2, "unpriv": True}, {"id": 1, "max_entries": 2}],
            [{"id": 0, "sites": [{"maps": [0, 1]}]}],
            [{"entry": 0}],
        )


def test_too_many_maps_for_used_maps():
    maps = [{"id": i, "kind": "filler", "max_entries": 1} for i in range(65)]
    with pytest.raises(WorldError, match=r"maps: 65 maps; used_maps holds 1..64"):
        world(maps, [{"id": 0}], [{"entry": 0}])


@pytest.mark.parametrize(
    "max_entries, mask", [(1, 0), (2, 1), (3, 3), (5, 7), (2**31, 2**31 - 1), (2**31 + 1, 2**32 - 1), (2**32 - 1, 2**32 - 1)]
)
def test_index_mask_is_the_kernels(max_entries, mask):
    assert index_mask(max_entries) == mask


def test_subprogram_frame_limit_is_the_verifiers():
    ok = world([{"id": 0, "max_entries": 1}], [{"id": 0, "subprog": True, "stack_depth": 224}], [{"entry": 0}])
    assert ok.programs[0].subprog
    with pytest.raises(
        WorldError,
        match="programs.0..stack_depth: 225: tail_calls are not allowed when call "
        "stack of previous frames is 256 bytes. Too large",
    ):
        world([{"id": 0, "max_entries": 1}], [{"id": 0, "subprog": True, "stack_depth": 225}], [{"entry": 0}])


def test_a_world_file_omits_defaults_and_names_its_preset():
    """What tcfuzz writes is what a person would: no `unpriv: false`, no empty lists, `"ibt"` not
    its expansion; the reader fills the defaults back in."""
    doc = World.from_json(GOOD).to_json()
    assert doc["profile"] == "ibt"
    assert doc["maps"][1] == {"id": 0, "max_entries": 0xFFFFFFFF, "slots": {"5": 1}}
    assert doc["programs"][1] == {"id": 1}
    assert doc["programs"][0]["env"] == {"bpf_capable": False}
    assert doc["runs"][0]["ctx"] == [{"prog": 0, "site": 1, "key": 2**64 - 1}]


@pytest.mark.parametrize(
    "changes", [{}, {"ibt": True}, {"config_security": False}, {"ptrs_off": 0x138, "max_entries_off": 0x4C}, {"name": "x"}]
)
def test_a_profile_is_written_as_its_difference_from_the_default(changes):
    from tcfuzz.model.profile import KernelProfile

    profile = KernelProfile(**changes)
    written = profile.to_world_json()
    if not changes:
        assert written == "default"
    else:
        assert set(written) == {"name", *changes} and KernelProfile.from_json(written) == profile
