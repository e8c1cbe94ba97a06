"""Fuzz history plots: cases, inputs/s and signatures over time, one line per fuzz run.

matplotlib (the `report` extra) renders them as inline SVG, so the HTML stays one file with no
script and no network. Without matplotlib the report says so and shows the same series as a table."""

from __future__ import annotations

import io

SERIES = [
    ("cases", "cases judged"),
    ("inputs_per_s", "inputs/s"),
    ("signatures", "signatures"),
]


def history_points(summary: dict) -> list[dict]:
    """The status samples a fuzz run recorded ([] for a summary without history: one point is the
    run's total, which is still worth a row but not a line)."""
    return [p for p in summary.get("history") or [] if isinstance(p, dict) and "t" in p]


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def svg_plots(runs: list[tuple[str, list[dict]]]) -> list[tuple[str, str]]:
    """[(title, svg text)] for each series; [] when matplotlib is missing or there is nothing to draw."""
    if not have_matplotlib() or not any(len(points) > 1 for _, points in runs):
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: searchable, no embedded glyphs
    matplotlib.rcParams["svg.hashsalt"] = "tcfuzz"  # deterministic ids
    out = []
    for key, title in SERIES:
        fig, ax = plt.subplots(figsize=(5.6, 2.6), dpi=96)
        for label, points in runs:
            if len(points) > 1:
                ax.plot([p["t"] for p in points], [p[key] for p in points], label=label, linewidth=1.5)
        if key != "inputs_per_s":
            from matplotlib.ticker import MaxNLocator

            ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts
        ax.set_xlabel("seconds")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        if len(runs) > 1:
            ax.legend(fontsize=7)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
        plt.close(fig)
        svg = buf.getvalue()
        out.append((title, svg[svg.index("<svg") :]))
    return out


def text_table(runs: list[tuple[str, list[dict]]], every: int = 1) -> str:
    rows = [f"{'run':<24} {'t (s)':>7} {'cases':>10} {'inputs/s':>9} {'signatures':>10}"]
    for label, points in runs:
        for p in points[::every]:
            rows.append(f"{label[-24:]:<24} {p['t']:7.0f} {p['cases']:10d} {p['inputs_per_s']:9.1f} {p['signatures']:10d}")
    return "\n".join(rows)
