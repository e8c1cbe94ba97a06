"""The fuzzer's starting points: the regression corpus as fuzzer inputs, and a dictionary of edge values.

* **Seeds.** A JSON world is not a fuzzer input; `fuzz/gen/encode.py` turns one into the bytes the
  decoder reads back as that world (or the nearest world the generator makes). Every corpus entry gives
  two seeds: the world run as is, and its first run with a batch of 1024 inputs. `tcfuzz fuzz` hands
  them to the engine when the corpus directory is empty (`seed_dirs`), and the ClusterFuzzLite build
  zips them (`write_seeds`, .clusterfuzzlite/build.sh).
* **Dictionary.** `fuzzers/tailcall_fuzzer.dict` holds the edge values as the decoder reads them: a
  max_entries or an index in u32 is four big-endian bytes after its selector byte, so libFuzzer can
  drop 2^28 - 44 (the first disp32 overflow), 2^31, 2^32 - 1 ... into any world. `dictionary()` makes
  it; a test holds the file equal to it. `tcfuzz fuzz` passes it (`-dict=`) unless given one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tcfuzz import SOURCE_TREE

DICT = SOURCE_TREE / "fuzzers" / "tailcall_fuzzer.dict"
CORPUS = SOURCE_TREE / "corpus"

# max_entries that matter: the disp32 overflow (2^28 - 44 first wraps, 2^28 - 45 last fits), the int
# and u32 edges, powers of two around an unpriv index_mask, 33 (MAX_TAIL_CALL_CNT).
EDGE_VALUES = [
    2**28 - 45,
    2**28 - 44,
    2**28 - 43,
    2**28,
    2**29 - 1,
    2**30,
    2**31 - 2,
    2**31 - 1,
    2**31,
    2**31 + 1,
    2**32 - 2,
    2**32 - 1,
    0x7FFF_FFF8,
    0x8000_0008,
    0x1000_0000,
    0xFFFF_FFF8,
    32,
    33,
    34,
    255,
    256,
    1023,
    1024,
]


def seeds() -> list[tuple[str, bytes]]:
    """(name, fuzzer input) for every regression corpus entry: the world, and its batch of 1024."""
    from tcfuzz.gen.encode import encode_input
    from tcfuzz.gen.worlds import single_run
    from tcfuzz.triage.artifacts import InputError, read_document

    out = []
    for path in sorted(CORPUS.rglob("*.json")):
        try:
            world = read_document(path).world
        except InputError:
            continue
        if world.profile.arch != "x86_64":
            world = world.for_arch("x86_64")
        stem = path.stem
        out.append((f"seed-{stem}", encode_input(world)))
        out.append((f"seed-{stem}-batch", encode_input(single_run(world), batch=1024, tail=stem.encode())))
    return out


def write_seeds(directory: Path) -> int:
    """Write the seed inputs into `directory` (created), named by content like libFuzzer's; returns how many."""
    directory.mkdir(parents=True, exist_ok=True)
    n = 0
    for _, data in seeds():
        path = directory / hashlib.sha1(data).hexdigest()
        if not path.exists():
            path.write_bytes(data)
            n += 1
    return n


def seed_dirs(corpus: Path, artifacts: Path) -> list[str]:
    """For an empty corpus directory: the seeds, written to ARTIFACTS/.tcfuzz-seeds/, as a second
    corpus directory for the engine. libFuzzer runs them first and keeps in the corpus (the first
    directory) only what it finds from them, so the corpus stays the run's own."""
    if corpus.is_dir() and any(corpus.iterdir()):
        return []
    seeds_dir = artifacts / ".tcfuzz-seeds"
    write_seeds(seeds_dir)
    return [str(seeds_dir)]


def dictionary() -> str:
    """libFuzzer dictionary text: each edge value as ByteSource reads it (4 bytes big-endian), alone,
    as the generator's 'any max_entries' choice (selector 7, value - 1) and as 'any index' (selector 5)."""

    def esc(data: bytes) -> str:
        return "".join(f"\\x{b:02x}" for b in data)

    lines = ["# tcfuzz edge values as fuzz/gen/worlds.py ByteSource reads them (generated: fuzz/frontends/seeds.py dictionary())"]
    for v in EDGE_VALUES:
        lines.append(f'u32_{v:08x}="{esc(v.to_bytes(4, "big"))}"')
        lines.append(f'max_entries_{v:08x}="{esc(bytes([7]) + (v - 1).to_bytes(4, "big"))}"')
        lines.append(f'index_{v:08x}="{esc(bytes([5]) + v.to_bytes(4, "big"))}"')
    return "\n".join(lines) + "\n"


def dict_argv(extra: list[str]) -> list[str]:
    """`-dict=` for the engine, unless the caller passed one."""
    if any(a.startswith("-dict=") for a in extra) or not DICT.is_file():
        return []
    return [f"-dict={DICT}"]
