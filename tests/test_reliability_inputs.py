"""Issue 12, hostile input files: every command that reads a file goes through one bounded,
type-checked reader (fuzz/triage/inputfile.py). A FIFO, a device or a directory is refused without
blocking, a huge file without reading it, hostile JSON (digits, depth, duplicate keys) and
mistyped profile fields with one short line and exit 2; the suffix rule never guesses."""

import json
import os
import signal
import tracemalloc
from pathlib import Path

import pytest

from tcfuzz.cli.main import main
from tcfuzz.model.profile import KernelProfile, ProfileError
from tcfuzz.triage.inputfile import MAX_BYTES, InputError, read_bytes

ROOT = Path(__file__).resolve().parent.parent
SHARED_LABEL = ROOT / "examples" / "shared-label.json"
READERS = [["run"], ["repro"], ["minimize"], ["corpus", "add", "--corpus", "CORPUS"]]


@pytest.fixture(autouse=True)
def never_hang():
    """A probe that blocks fails in 20 s instead of hanging the suite."""

    def hung(*_):
        raise TimeoutError("blocked reading the input")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def cli(capsys, tmp_path, command, path):
    argv = [str(tmp_path / "corpus") if a == "CORPUS" else a for a in command]
    status = main([*argv, str(path)])
    out, err = capsys.readouterr()
    return status, out, err


def one_line(status, err, command, *messages):
    assert status == 2, err[:500]
    assert err.startswith(f"tcfuzz {command[0]}: error: ") and err.count("\n") == 1, err[:500]
    assert len(err) < 400, err[:500]
    for m in messages:
        assert m in err, err[:500]


@pytest.mark.parametrize("command", READERS)
@pytest.mark.parametrize("name", ["pipe.json", "pipe"])
def test_a_fifo_is_refused_without_blocking(capsys, tmp_path, command, name):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    status, _, err = cli(capsys, tmp_path, command, fifo)
    one_line(status, err, command, "is a FIFO, not a regular file")


@pytest.mark.parametrize("command", READERS)
def test_a_device_or_a_json_symlink_to_it_is_refused_unread(capsys, tmp_path, command):
    link = tmp_path / "zero.json"
    link.symlink_to("/dev/zero")
    for path in (Path("/dev/zero"), link):
        status, _, err = cli(capsys, tmp_path, command, path)
        one_line(status, err, command, "is a character device, not a regular file")


def test_triage_of_a_directory_holding_a_fifo_and_a_device_link_returns(capsys, tmp_path):
    (tmp_path / "d").mkdir()
    os.mkfifo(tmp_path / "d" / "crash-fifo")
    os.mkfifo(tmp_path / "d" / "f.json")
    (tmp_path / "d" / "z.json").symlink_to("/dev/zero")
    assert main(["triage", "--no-minimize", str(tmp_path / "d")]) == 0
    assert "0 diverging inputs" in capsys.readouterr().out


def test_a_file_over_the_cap_is_refused_after_reading_at_most_cap_plus_one(tmp_path):
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(MAX_BYTES + 1)
    with pytest.raises(InputError, match=f"larger than {MAX_BYTES} bytes"):
        read_bytes(big)
    tracemalloc.start()
    with pytest.raises(InputError):
        read_bytes(big)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 3 * MAX_BYTES


def world_text(**changes) -> str:
    d = json.loads(SHARED_LABEL.read_text())
    d.update(changes)
    return json.dumps(d)


HOSTILE = {
    "digits": (world_text().replace('"max_entries": 4', '"max_entries": ' + "9" * 5000), "an integer of 5000 digits"),
    "depth": ('{"schema": ' + "[" * 5000 + "]" * 5000 + "}", "JSON nested deeper than"),
    "duplicate": (
        world_text().replace('"schema": "tcfuzz-world/1"', '"schema": "tcfuzz-world/1", "schema": "tcfuzz-world/1"'),
        "duplicate key 'schema'",
    ),
    "nan": (world_text().replace('"max_entries": 4', '"max_entries": NaN'), "NaN is not JSON"),
    "huge-value": (world_text(schema="x" * 1_000_000), "characters) is not"),
    "huge-key": (world_text(**{"k" * 1_000_000: 1}), "unknown field"),
}


@pytest.mark.parametrize("command", READERS)
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_json_is_one_short_line(capsys, tmp_path, command, case):
    text, message = HOSTILE[case]
    path = tmp_path / f"{case}.json"
    path.write_text(text)
    status, _, err = cli(capsys, tmp_path, command, path)
    one_line(status, err, command, message)


PROFILE_FIELDS = {
    "ibt": ("yes", "ibt must be true or false, got 'yes'"),
    "sls": (1, "sls must be true or false, got 1"),
    "max_used_maps": (64.5, "max_used_maps must be an integer, got 64.5"),
    "bpf_func_off": (True, "bpf_func_off must be an integer, got True"),
    "ptrs_off": (352.0, "ptrs_off must be an integer"),
    "max_tail_call_cnt": ("33", "max_tail_call_cnt must be an integer"),
    "jump": (7, "jump=7 is not one of"),
    "kernel": (["6.8"], "kernel must be a string"),
    "arch": ("x" * 10_000, "characters) is not one of"),
}


@pytest.mark.parametrize("field", sorted(PROFILE_FIELDS))
def test_profile_fields_are_type_checked(capsys, tmp_path, field):
    value, message = PROFILE_FIELDS[field]
    path = tmp_path / "w.json"
    path.write_text(world_text(profile={"name": "p", field: value}))
    status, _, err = cli(capsys, tmp_path, ["run"], path)
    one_line(status, err, ["run"], f"profile: profile 'p': {message}" if field != "arch" else message)


def test_a_profile_is_typed_from_python_too():
    with pytest.raises(ProfileError, match="max_used_maps must be an integer"):
        KernelProfile(max_used_maps=64.5)  # type: ignore[arg-type]
    assert KernelProfile(ptrs_off=None).ptrs_off == 0x160  # JSON null: derived, as before


def test_a_huge_ptrs_off_costs_pages_not_gigabytes(capsys, tmp_path):
    """ptrs_off 2147483640 (8-aligned, fits a disp32: a valid profile) used to build a 2 GB header
    for every page the guest touched (4.1 GB, 18 s)."""
    path = tmp_path / "w.json"
    path.write_text(world_text(profile={"name": "far", "ptrs_off": 2147483640}))
    tracemalloc.start()
    status, out, err = cli(capsys, tmp_path, ["run"], path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert status in (0, 1) and "verdict" in out, err
    assert peak < 256 << 20


@pytest.mark.parametrize("command", READERS)
@pytest.mark.parametrize("name", ["w.JSON", "w.Json"])
def test_the_suffix_rule_refuses_rather_than_guesses(capsys, tmp_path, command, name):
    path = tmp_path / name
    path.write_text(SHARED_LABEL.read_text())
    status, _, err = cli(capsys, tmp_path, command, path)
    one_line(status, err, command, "must end in .json (lowercase)")


@pytest.mark.parametrize("command", READERS)
def test_an_unsuffixed_json_document_is_not_decoded_as_raw_bytes(capsys, tmp_path, command):
    path = tmp_path / "world"
    path.write_text(SHARED_LABEL.read_text())
    status, _, err = cli(capsys, tmp_path, command, path)
    one_line(status, err, command, "holds a 'tcfuzz-world/1' JSON document; name it *.json")


def test_raw_fuzzer_bytes_still_read_as_raw(capsys, tmp_path):
    path = tmp_path / "crash-x"
    path.write_bytes(b'{"not": "a tcfuzz document"}')
    assert main(["run", str(path)]) in (0, 1)
    assert "verdict" in capsys.readouterr().out
