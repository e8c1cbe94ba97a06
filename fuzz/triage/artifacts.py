"""Files tcfuzz writes and reads: crash artifacts (raw input + JSON sidecar) and corpus entries.

Three JSON document kinds share one reader, told apart by `schema`:

    tcfuzz-world/1      a bare world (model/world.py)
    tcfuzz-artifact/1   a finding, self-contained: the exact world judged (for a batch input, the
                        diverging case), the verdict, its signature and first differing field, the
                        policy's status and proved causes, the seed, tool versions, the codegen
                        specs, the model order, the profile, and the raw input's name and case
    tcfuzz-corpus/1     a regression entry: purpose, the expected verdict (and signature), the world

Every write is atomic (a temporary file in the same directory, fsync, rename), so a killed run
leaves either the old state or the whole new file, never part of one; and nothing existing is
overwritten unless the caller says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from tcfuzz.codegens import DEFAULT_SPECS
from tcfuzz.model.interfaces import Verdict, VerdictKind
from tcfuzz.model.world import SCHEMA as WORLD_SCHEMA
from tcfuzz.model.world import World, WorldError, field_problem
from tcfuzz.triage import inputfile
from tcfuzz.triage.inputfile import InputError, read_json

__all__ = ["InputError", "read_json"]  # every file is read by fuzz/triage/inputfile.py


ARTIFACT_SCHEMA = "tcfuzz-artifact/1"
CORPUS_SCHEMA = "tcfuzz-corpus/1"


def versions() -> dict[str, str]:
    def dist(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "unknown"

    return {
        "tcfuzz": dist("tcfuzz"),
        "unicorn": dist("unicorn"),
        "capstone": dist("capstone"),
        "python": platform.python_version(),
    }


def atomic_write(path: Path, data: bytes, overwrite: bool = False, durable: bool = True) -> Path:
    """Write `data` to `path` all at once. Refuses to replace an existing file unless `overwrite`;
    `durable` fsyncs before the rename (findings are; progress stats need not be)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists; not overwriting it")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), FILE_MODE & ~_umask())  # mkstemp makes 0600: CI of another uid could not read it
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if `path` appeared meanwhile; never clobbers
            os.unlink(tmp)
        if durable:
            fsync_dir(path.parent)  # the new name itself survives a crash, not only the bytes
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


FILE_MODE = 0o644  # what open() gives under the usual umask 022


def _umask() -> int:
    """The process umask, read without changing it (os.umask() sets it, racing other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


class OutputPathError(Exception):
    """An output directory that cannot be used; the message is one line naming the flag."""


def writable_dir(path: str | Path, flag: str) -> Path:
    """An output directory checked (and made) before any work is done, so a bad one costs one line
    and nothing else, instead of a traceback after the run."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{flag} {path}: not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"{flag} {path}: {e.strerror or e}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputPathError(f"{flag} {path}: not writable")
    return path


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


DUMP_WIDTH = 100


def dump(doc: dict) -> bytes:
    """A document as a person would write it: documents (anything with a `schema`) one key per line,
    every other value on one line where it fits in DUMP_WIDTH characters (indentation not counted),
    else one item per line."""
    return (_layout(doc, 0) + "\n").encode()


def _layout(value: Any, depth: int) -> str:
    inline = json.dumps(value)
    is_document = isinstance(value, dict) and "schema" in value
    if not isinstance(value, dict | list) or not value or (not is_document and len(inline) <= DUMP_WIDTH):
        return inline
    pad, end = "  " * (depth + 1), "  " * depth
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(k)}: {_layout(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + end + "}"
    return "[\n" + ",\n".join(pad + _layout(v, depth + 1) for v in value) + "\n" + end + "]"


def verdict_json(v: Verdict) -> dict:
    return {"verdict": v.kind.value, "run": v.run, "field": v.field_name, "values": v.values, "signature": v.signature}


def artifact_doc(
    world: World,
    verdict: Verdict,
    seed: int | None = None,
    raw_name: str | None = None,
    codegens: dict[str, str] | None = None,
    model_order: str = "jit",
    case: int | None = None,
    status: str | None = None,
    causes: tuple[str, ...] = (),
    load_detail: dict[str, str] | None = None,
) -> dict:
    extra = {"load_detail": load_detail} if load_detail else {}
    return {
        "schema": ARTIFACT_SCHEMA,
        **verdict_json(verdict),
        "status": status,
        "causes": list(causes),
        "case": case,
        "seed": seed,
        "input": raw_name,
        "versions": versions(),
        "profile": world.profile.to_json(),
        "codegens": codegens or dict(DEFAULT_SPECS),
        "model_order": model_order,
        **extra,
        "world": world.to_json(),
    }


def write_artifact(
    directory: Path,
    world: World,
    verdict: Verdict,
    raw: bytes | None = None,
    seed: int | None = None,
    prefix: str = "crash-",
    **kw,
) -> Path:
    """`<prefix><sha1>` (the raw input, if any) and `<prefix><sha1>.json` (the sidecar). The sha1 is
    of the raw input, or of the world's canonical JSON. An existing artifact with the same name is the
    same finding and is left as it is: two processes writing it at once give one file, never an
    error (each write is a link that fails if the name exists; that failure means "already there")."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = raw if raw is not None else json.dumps(world.to_json(), sort_keys=True).encode()
    name = f"{prefix}{hashlib.sha1(key).hexdigest()}"
    sidecar = directory / f"{name}.json"
    # The sidecar first: it is self-contained, so a kill between the two writes loses nothing.
    _write_once(sidecar, lambda: dump(artifact_doc(world, verdict, seed, name if raw is not None else None, **kw)))
    if raw is not None:
        _write_once(directory / name, lambda: raw)
    return sidecar


def _write_once(path: Path, data) -> None:
    """Write `path` unless it exists; losing a race to another writer of the same file is fine."""
    try:
        if not path.exists():
            atomic_write(path, data())
    except FileExistsError:
        pass


def sidecar_of(raw: Path) -> Path | None:
    """The artifact sidecar written next to a raw crash file (`crash-X` -> `crash-X.json` naming it)."""
    sidecar = Path(raw).with_name(Path(raw).name + ".json")
    try:
        data = inputfile.read_json(sidecar) if sidecar.is_file() else None
    except InputError:
        return None
    if isinstance(data, dict) and data.get("schema") == ARTIFACT_SCHEMA and data.get("input") == Path(raw).name:
        return sidecar
    return None


@dataclass
class Document:
    """Any JSON file tcfuzz reads, with the world it holds."""

    path: Path
    kind: str  # "world", "artifact", "corpus", or "raw" (a fuzzer input)
    world: World
    data: dict[str, Any]
    cases: Any = None  # a raw input's batch of inputs for `world` (numpy rows), if it has one

    @property
    def expected(self) -> tuple[VerdictKind, str | None] | None:
        if self.kind != "corpus":
            return None
        exp = self.data["expect"]
        return VerdictKind(exp["verdict"]), exp.get("signature")


def _not_a_document(raw: bytes, path: Path) -> None:
    """The suffix rule never guesses: a file that is not `.json` but holds a tcfuzz JSON document is
    refused (it used to be decoded as raw fuzzer bytes, an unrelated world)."""
    if not raw.lstrip().startswith(b"{"):
        return
    try:
        data = inputfile.parse_json(raw, path)
    except InputError:
        return
    if isinstance(data, dict) and str(data.get("schema", "")).startswith("tcfuzz-"):
        raise InputError(f"{path}: holds a {inputfile.shown(data['schema'])} JSON document; name it *.json to read it as one")


def _fields(data: dict, path: Path, kind: str, required: set[str], optional: set[str]) -> None:
    problem = field_problem(data, required, optional)
    if problem:
        raise InputError(f"{path}: {kind}: {problem}")


def read_document(path: Path) -> Document:
    """A `.json` file is one of the three JSON kinds (strict); any other file is a raw fuzzer input,
    which every byte string is: it decodes to a world (fuzz/gen/worlds.py)."""
    path = Path(path)
    inputfile.check_suffix(path)
    if not inputfile.is_json_name(path):
        from tcfuzz.gen.worlds import decode_input

        raw = inputfile.read_bytes(path)
        _not_a_document(raw, path)
        world, cases = decode_input(raw)
        return Document(path, "raw", world, {"input": path.name, "bytes": len(raw)}, cases)
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(data).__name__}")
    schema = data.get("schema")
    try:
        if schema == WORLD_SCHEMA:
            return Document(path, "world", World.from_json(data), data)
        if schema == ARTIFACT_SCHEMA:
            _fields(
                data,
                path,
                "artifact",
                {"schema", "world", "verdict", "signature"},
                {
                    "run",
                    "field",
                    "values",
                    "seed",
                    "input",
                    "versions",
                    "profile",
                    "codegens",
                    "model_order",
                    "case",
                    "status",
                    "causes",
                    "load_detail",
                },
            )
            return Document(path, "artifact", World.from_json(data["world"]), data)
        if schema == CORPUS_SCHEMA:
            _fields(data, path, "corpus entry", {"schema", "purpose", "expect", "world"}, set())
            exp = data["expect"]
            if not isinstance(exp, dict) or exp.get("verdict") not in {k.value for k in VerdictKind}:
                raise InputError(f"{path}: expect.verdict: one of {', '.join(k.value for k in VerdictKind)}")
            _fields(exp, path, "expect", {"verdict"}, {"signature"})
            return Document(path, "corpus", World.from_json(data["world"]), data)
    except WorldError as e:
        msg = str(e)
        if schema != WORLD_SCHEMA:
            msg = msg if msg.startswith("world:") else f"world.{msg}"
        raise InputError(f"{path}: {msg}") from None
    known = ", ".join((WORLD_SCHEMA, ARTIFACT_SCHEMA, CORPUS_SCHEMA))
    raise InputError(f"{path}: schema: {inputfile.shown(schema)} is not one of {known}")


def corpus_doc(world: World, verdict: Verdict, purpose: str) -> dict:
    expect = {"verdict": verdict.kind.value}
    if verdict.diverges:
        expect["signature"] = verdict.signature
    return {"schema": CORPUS_SCHEMA, "purpose": purpose, "expect": expect, "world": world.to_json()}
