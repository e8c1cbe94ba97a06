"""Self-contained findings: how `run`, `repro`, `minimize`, `triage` and `corpus add` replay a file.

An artifact sidecar records the codegen specs, the model order, the profile and the exact world it
judged; a raw crash file next to its sidecar (`crash-X` + `crash-X.json`) replays the case the
sidecar names. Those settings are the default; `--old`, `--new` and `--model-order` override them.
A raw file without a sidecar replays to its diverging case (fuzz/verdict/replay.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tcfuzz.codegens import NEW_DEFAULT, OLD_DEFAULT, load_codegen
from tcfuzz.machine.batch import case_world
from tcfuzz.model.interfaces import Codegen
from tcfuzz.triage.artifacts import Document, read_document, sidecar_of
from tcfuzz.verdict.replay import Replay, judge_world, orders_of, replay_input


@dataclass(frozen=True)
class Settings:
    old: str
    new: str
    order: str  # jit, interpreter or both
    source: str  # where they came from, for one line of output
    sidecar: Document | None = None

    def codegens(self) -> tuple[Codegen, Codegen]:
        return load_codegen(self.old), load_codegen(self.new)

    def describe(self) -> str:
        return f"codegens old={self.old} new={self.new}, model order {self.order} ({self.source})"


def sidecar_for(doc: Document) -> Document | None:
    if doc.kind == "artifact":
        return doc
    if doc.kind == "raw":
        path = sidecar_of(doc.path)
        return read_document(path) if path is not None else None
    return None


def settings_for(doc: Document, old: str | None = None, new: str | None = None, order: str | None = None) -> Settings:
    """The sidecar's settings, each overridden by the flag given."""
    side = sidecar_for(doc)
    recorded = side.data.get("codegens") or {} if side is not None else {}
    given = [name for name, v in (("--old", old), ("--new", new), ("--model-order", order)) if v is not None]
    if side is None:
        source = "flags" if given else "defaults"
    else:
        source = f"from {side.path.name}" + (f", overridden by {', '.join(given)}" if given else "")
    return Settings(
        old or recorded.get("old") or OLD_DEFAULT,
        new or recorded.get("new") or NEW_DEFAULT,
        order or (side.data.get("model_order") if side is not None else None) or "jit",
        source,
        side,
    )


def replay(doc: Document, settings: Settings) -> tuple[Replay, str | None]:
    """The document's world judged under `settings`; for a raw input, one line saying which case."""
    old, new = settings.codegens()
    orders = orders_of(settings.order)
    if doc.cases is None:
        return judge_world(doc.world, old, new, orders), None
    case = settings.sidecar.data.get("case") if settings.sidecar is not None else None
    if isinstance(case, int) and 0 <= case < len(doc.cases):
        r = judge_world(case_world(doc.world, doc.cases[case]), old, new, orders)
        return Replay(r.outcome, r.order, case), f"a batch of {len(doc.cases)} inputs; case #{case} (from the sidecar)"
    return replay_input(doc.world, doc.cases, old, new, orders)


def as_found(settings: Settings, r: Replay) -> str | None:
    """How the replay compares with the sidecar's record, if there is one."""
    if settings.sidecar is None:
        return None
    data = settings.sidecar.data
    if r.outcome.verdict.signature == data["signature"]:
        return f"as found: {data['verdict']} {data['signature']}"
    return f"NOT as found: the sidecar recorded {data['verdict']} {data['signature']}"


def open_finding(path: Path, old=None, new=None, order=None) -> tuple[Document, Settings]:
    doc = read_document(path)
    return doc, settings_for(doc, old, new, order)
