"""Write report.json, report.md and report.html into one directory (each atomically)."""

from __future__ import annotations

import json
from pathlib import Path

from tcfuzz.report import html, markdown, plots
from tcfuzz.triage.artifacts import atomic_write


def fuzz_runs(report: dict) -> list[tuple[str, list[dict]]]:
    return [(r["dir"], plots.history_points(r["summary"] or {})) for r in report["fuzz"]]


def write(report: dict, out: Path) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = fuzz_runs(report)
    svgs = plots.svg_plots(runs)
    fallback = plots.text_table(runs)
    if svgs:
        note = "Plots of cases, inputs/s and signatures over time are in report.html."
    elif not plots.have_matplotlib():
        note = "Fuzz history (install the `report` extra, matplotlib, for plots):\n\n```\n" + fallback + "\n```"
    else:
        note = "Fuzz history (too few status samples to plot):\n\n```\n" + fallback + "\n```"
    if not svgs and not plots.have_matplotlib():
        fallback = "matplotlib is not installed (pip install 'tcfuzz[report]'): the history as a table\n\n" + fallback
    paths = {"json": out / "report.json", "md": out / "report.md", "html": out / "report.html"}
    atomic_write(paths["json"], (json.dumps(report, indent=1) + "\n").encode(), overwrite=True)
    atomic_write(paths["md"], (markdown.render(report, note) + "\n").encode(), overwrite=True)
    atomic_write(paths["html"], html.render(report, svgs, fallback).encode(), overwrite=True)
    return paths
