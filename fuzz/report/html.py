"""report.html: one self-contained page, no script and no network (inline CSS, inline SVG). The
verdict is the first thing on it; then each finding, the proof matrix, the limits, the mutant
kill times, the fuzz history, and how to reproduce all of it."""

from __future__ import annotations

import json
import re
from html import escape

from tcfuzz.report import tables

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 0 24px 48px; color: #1d1d1f; background: #fff; }
h1 { font-size: 26px; margin: 28px 0 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ddd; }
h3 { margin-bottom: 6px; }
.verdict { font-size: 20px; padding: 14px 18px; border-radius: 8px; margin: 16px 0; background: #fff4e5;
           border-left: 6px solid #e8890c; }
.verdict.clean { background: #eaf7ee; border-left-color: #2e9b4f; }
.verdict.bad { background: #fdecec; border-left-color: #c62828; }
.meta { color: #555; font-size: 13px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f6; } tr:nth-child(even) td { background: #fafafa; }
td.ok { color: #2e7d32; font-weight: 600; } td.no { color: #c62828; font-weight: 600; }
pre { background: #f6f8fa; padding: 10px 12px; overflow-x: auto; font-size: 12.5px; line-height: 1.35;
      border-radius: 6px; }
pre .part { background: #ffe3a3; display: inline-block; min-width: 100%; }
code { background: #f2f2f4; padding: 1px 4px; border-radius: 3px; }
.finding { border: 1px solid #e2e2e2; border-radius: 8px; padding: 4px 16px 8px; margin: 14px 0; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; } .plots figure { margin: 0; }
.plots svg { max-width: 100%; height: auto; }
details summary { cursor: pointer; color: #444; }
"""

PARTING = re.compile(r"=>\s*[0-9a-f]+:")  # the marked instruction of a listing
GOOD = {"PROVEN", "killed", "AGREE", "yes"}
BAD = {"COUNTEREXAMPLE", "SURVIVED", "NO", "NONE"}


def _table(table: tables.Table) -> str:
    headers, rows = table
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)

    def td(cell: str) -> str:
        cls = ' class="ok"' if cell in GOOD else (' class="no"' if cell in BAD else "")
        return f"<td{cls}>{escape(cell)}</td>"

    body = "\n".join("<tr>" + "".join(td(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def _listing(text: str) -> str:
    """The side-by-side listing with the instruction where the runs part highlighted."""
    lines = []
    for line in text.splitlines():
        esc = escape(line)
        lines.append(f'<span class="part">{esc}</span>' if PARTING.search(line) else esc)
    return "<pre>" + "\n".join(lines) + "</pre>"


def render(report: dict, plots: list[tuple[str, str]], plots_fallback: str) -> str:
    h = report["headline"]
    tone = "bad" if h["unexplained"] else ("clean" if not h["findings"] else "")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # No network: nothing on this page may load from anywhere but the page itself.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">",
        f"<title>tcfuzz report: {escape(h['sentence'])}</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>tcfuzz report</h1>",
        f'<p class="meta">legacy <code>{escape(report["codegens"]["old"])}</code> vs patched '
        f"<code>{escape(report['codegens']['new'])}</code> · generated {escape(report['generated'])} · "
        f"tcfuzz {escape(report['versions']['tcfuzz'])}</p>",
        f'<div class="verdict {tone}" id="verdict">{escape(h["sentence"])}</div>',
        f"<p>{h['mutants_killed']}/{h['mutants']} planted bugs killed; "
        f"{report['corpus']['count']} regression entries replayed.</p>",
        "<h2>Findings</h2>",
    ]
    for n, f in enumerate(report["findings"], 1):
        parts += [
            '<div class="finding">',
            f"<h3>{n}. {escape(f['cause'])}{'' if f['explained'] else ' — UNEXPLAINED'}</h3>",
            f"<p>{escape(f['description'])}.</p>",
            "<ul>",
            f"<li>verdict <code>{escape(f['verdict'])}</code> at run {f['run']}, first difference in "
            f"<code>{escape(str(f['field']))}</code></li>",
            f"<li>signature <code>{escape(f['signature'])}</code></li>",
            f"<li>minimal world <code>{escape(f['representative'])}</code> ({len(f['files'])} files show this cause)</li>",
            f"<li>replay: <code>{escape(f['replay'])}</code> · as a kernel selftest: <code>{escape(f['export'])}</code></li>",
            "</ul>",
            "<p>Where the runs part (<code>=&gt;</code>):</p>",
            _listing(f["parting"]),
            "<details><summary>minimal world (JSON)</summary>",
            f"<pre>{escape(json.dumps(f['world'], indent=1))}</pre></details>",
            "</div>",
        ]
    p = report["proof"]
    parts += [
        "<h2>Proof matrix (<code>tcfuzz prove --quick</code>)</h2>",
        f"<p>{p['proven']}/{p['total']} configurations proven ({p['seconds']:.1f} s of solver time). Static sites need "
        + ", ".join(f"<code>{escape(x)}</code>" for x in p["static_preconditions"])
        + ".</p>",
        _table(tables.proof_table(report)),
        "<details><summary>each precondition dropped in turn</summary>",
        _table(tables.necessity_table(report)),
        "</details>",
        "<h2>Limits of the packed imm and the static disp32 (<code>tcfuzz limits</code>)</h2>",
        _table(tables.limits_table(report)),
        "<h2>Planted bugs: time to kill (<code>tcfuzz mutants</code>)</h2>",
        f"<p>{report['mutants']['killed']}/{len(report['mutants']['mutants'])} killed, budget "
        f"{report['mutants']['budget']:g} s each, seed {report['mutants']['seed']}.</p>",
        _table(tables.mutants_table(report)),
        "<h2>Fuzz history</h2>",
    ]
    if not report["fuzz"]:
        parts.append(
            "<p>No fuzz directory given (<code>tcfuzz report --from fuzz-artifacts</code> after <code>make fuzz</code>).</p>"
        )
    else:
        parts.append(_table(tables.fuzz_table(report)))
        if plots:
            parts.append('<div class="plots">')
            parts += [f'<figure aria-label="{escape(title)}">{svg}</figure>' for title, svg in plots]
            parts.append("</div>")
        else:
            parts.append(f"<pre>{escape(plots_fallback)}</pre>")
    c = report["corpus"]
    parts += [
        "<h2>Regression corpus</h2>",
        f"<p>{c['count']} entries: {c['agree']} agree, {c['diverge']} diverge, {len(c['unexplained'])} without a known "
        f"cause, {len(c['unexpected'])} not as recorded.</p>",
        "<details><summary>every entry</summary>",
        _table(tables.corpus_table(report)),
        "</details>",
        "<h2>Reproduce</h2>",
        "<pre>" + escape("\n".join(report["commands"])) + "</pre>",
        _table(tables.versions_table(report)),
        f'<p class="meta">schema {escape(report["schema"])}; seeds {escape(json.dumps(report["seeds"]))}</p>',
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
