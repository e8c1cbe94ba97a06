"""The report's tables as (headers, rows) of strings, rendered by both report.md and report.html."""

from __future__ import annotations

from tcfuzz.report.collect import fuzz_findings

Table = tuple[list[str], list[list[str]]]


def proof_table(report: dict) -> Table:
    rows = [
        [r["config"], r["result"], f"{r['seconds']:.2f} s", ", ".join(r["preconditions"]) or "none"]
        for r in report["proof"]["results"]
    ]
    return ["configuration", "result", "time", "preconditions"], rows


def necessity_table(report: dict) -> Table:
    rows = []
    for r in report["proof"]["results"]:
        for name, values in (r["necessary"] or {}).items():
            rows.append([r["config"], name, "counterexample without it" if values else "still proven without it"])
        if r["boundary"]:
            b = r["boundary"]
            rows.append(
                [
                    r["config"],
                    "disp-fits-int boundary",
                    f"max_entries <= {b['max_entries_max']} ({'proven' if b['proven_at_max'] else 'NOT proven'} at it, "
                    f"counterexample at {b['max_entries_max'] + 1})",
                ]
            )
    return ["configuration", "precondition", "dropped"], rows


def limits_table(report: dict) -> Table:
    rows = []
    for which in ("kernel", "raised"):
        lim = report["limits"][which]
        where = f"{lim['max_used_maps']} maps, {lim['poke_tab_max']} pokes"
        scope = "exhaustive" if lim["exhaustive"] else "field by field"
        if not lim["imm"]:
            rows.append([where, "packed imm", f"all {lim['checked']} values round-trip ({scope})", ""])
        for b in lim["imm"]:
            demo = b["demo"].get("verdict") or b["demo"].get("jit") or b["demo"].get("why") or ""
            rows.append([where, b["field"], f"first failure at {b['first']}: {b['consequence']}", str(demo)])
    d = report["limits"]["kernel"]["disp"]
    rows.append(
        [
            "any",
            "static disp32",
            f"leaves int at max_entries = {d['first_max_entries']}; reads {d.get('reads', '?')}",
            f"{d.get('verdict', '')} {d.get('signature', '')}".strip(),
        ]
    )
    return ["limits", "field", "first failure", "shown by"], rows


def mutants_table(report: dict) -> Table:
    rows = [
        [
            k["mutant"],
            "killed" if k["killed"] else "SURVIVED",
            f"{k['seconds']:.2f} s",
            str(k["cases"]),
            k["by"] or "-",
            k["signature"] or k["description"],
        ]
        for k in report["mutants"]["mutants"]
    ]
    return ["mutant", "result", "time", "cases", "killed by", "signature"], rows


def corpus_table(report: dict) -> Table:
    rows = [
        [
            e["file"],
            e.get("verdict", "unreadable"),
            ", ".join(e.get("known_causes") or []) or ("-" if e.get("verdict") == "AGREE" else "NONE"),
            "yes" if e.get("as_expected") else "NO",
        ]
        for e in report["corpus"]["entries"]
    ]
    return ["entry", "verdict", "known cause", "as expected"], rows


def fuzz_table(report: dict) -> Table:
    rows = []
    for r in report["fuzz"]:
        s = r["summary"] or {}
        sigs = fuzz_findings(s)
        rows.append(
            [
                r["dir"],
                str(s.get("seed", "?")),
                f"{s.get('elapsed', 0):.0f} s",
                str(s.get("inputs", "?")),
                str(s.get("cases", "?")),
                f"{s.get('exec_per_s', 0):.0f}",
                str(len(sigs)),
                str(sum(1 for f in sigs if not f["causes"])),
            ]
        )
    return ["directory", "seed", "time", "inputs", "cases", "inputs/s", "signatures", "unexplained"], rows


def versions_table(report: dict) -> Table:
    return ["component", "version"], [[k, v] for k, v in report["versions"].items()]
