"""report.md: GitHub-flavoured Markdown that renders on a code-review site. The verdict and the
findings come first, so the top of it, trimmed, fits a mailing-list reply."""

from __future__ import annotations

import json

from tcfuzz.report import tables


def _table(table: tables.Table) -> list[str]:
    headers, rows = table

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return out + [""]


def render(report: dict, plots_note: str) -> str:
    h = report["headline"]
    out = [
        "# tcfuzz report",
        "",
        f"**{h['sentence']}.**",
        "",
        f"Codegens: legacy `{report['codegens']['old']}`, patched `{report['codegens']['new']}`. "
        f"Generated {report['generated']} by tcfuzz {report['versions']['tcfuzz']}.",
        "",
        "## Findings",
        "",
    ]
    for n, f in enumerate(report["findings"], 1):
        out += [
            f"### {n}. {f['cause']}{'' if f['explained'] else ' (UNEXPLAINED)'}",
            "",
            f["description"] + ".",
            "",
            f"- verdict `{f['verdict']}` at run {f['run']}, first difference in `{f['field']}`",
            f"- signature `{f['signature']}`",
            f"- minimal world: `{f['representative']}` ({len(f['files'])} files show this cause)",
            f"- replay: `{f['replay']}`",
            f"- as a kernel selftest: `{f['export']}`",
            "",
            "<details><summary>minimal world</summary>",
            "",
            "```json",
            json.dumps(f["world"], indent=1),
            "```",
            "</details>",
            "",
            "Where the runs part:",
            "",
            "```",
            f["parting"],
            "```",
            "",
        ]
    p = report["proof"]
    out += [
        "## Proof (`tcfuzz prove --quick`)",
        "",
        f"{p['proven']}/{p['total']} configurations proven in {p['seconds']:.1f} s of solver time. Static sites need "
        f"{len(p['static_preconditions'])} preconditions: " + ", ".join(f"`{x}`" for x in p["static_preconditions"]) + ".",
        "",
        *_table(tables.proof_table(report)),
        "Each precondition dropped in turn:",
        "",
        *_table(tables.necessity_table(report)),
        "## Limits (`tcfuzz limits`)",
        "",
        *_table(tables.limits_table(report)),
        "## Planted bugs (`tcfuzz mutants`)",
        "",
        f"{report['mutants']['killed']}/{len(report['mutants']['mutants'])} killed "
        f"(budget {report['mutants']['budget']:g} s each, seed {report['mutants']['seed']}).",
        "",
        *_table(tables.mutants_table(report)),
        "## Regression corpus",
        "",
        f"{report['corpus']['count']} entries: {report['corpus']['agree']} agree, {report['corpus']['diverge']} diverge, "
        f"{len(report['corpus']['unexplained'])} without a known cause, {len(report['corpus']['unexpected'])} not as recorded.",
        "",
        *_table(tables.corpus_table(report)),
        "## Fuzz runs",
        "",
    ]
    if report["fuzz"]:
        out += [*_table(tables.fuzz_table(report)), plots_note, ""]
    else:
        out += ["No fuzz directory given (`tcfuzz report --from fuzz-artifacts` after `make fuzz`).", ""]
    out += [
        "## Reproduce",
        "",
        "```sh",
        *report["commands"],
        "```",
        "",
        *_table(tables.versions_table(report)),
    ]
    return "\n".join(out)
