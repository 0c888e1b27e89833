#!/usr/bin/env python3
"""Chart a ``compare.py --json`` run: one panel per workload, one bar per contender.

    python benchmarks/plot.py benchmarks/results/full.json benchmarks/results/full.png

Bars are on a log scale where a workload's values span more than two decades (joblib and
cachier are 10-100x slower than memojar on some of them); each bar is labelled with its value.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from compare import fmt, workload_order  # this folder: the table's order and numbers

COLORS = {
    "memojar": "#d62728",
    "memojar-redis": "#ff9896",
    "diskcache": "#1f77b4",
    "joblib": "#2ca02c",
    "cachier": "#9467bd",
    "lru_cache": "#7f7f7f",
    "floor": "#000000",
}
ORDER = list(COLORS)


def plot(data: dict, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = data["results"]
    workloads = workload_order(results)
    cols = 3
    rows = math.ceil(len(workloads) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.4 * rows), squeeze=False)
    for ax, w in zip(axes.flat, workloads, strict=False):
        names = [n for n in ORDER if n in results[w]]
        values = [results[w][n] for n in names]
        bars = ax.barh(names, values, color=[COLORS[n] for n in names])
        ax.invert_yaxis()
        positive = [v for v in values if v > 0]
        if positive and max(positive) / min(positive) > 100:
            ax.set_xscale("log")
        ax.set_title(data.get("labels", {}).get(w, w), fontsize=10)
        ax.set_xlabel(data.get("units", {}).get(w, ""), fontsize=9)
        ax.tick_params(labelsize=8)
        for bar, v in zip(bars, values, strict=True):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + fmt(v),
                    va="center", fontsize=7)
        ax.margins(x=0.25)
    for ax in list(axes.flat)[len(workloads):]:
        ax.axis("off")
    m = data.get("machine", {})
    fig.suptitle(
        f"memojar vs peers ({data.get('command', '')}; {m.get('cpu', '')}, "
        f"{m.get('cores', '?')} cores, Python {m.get('python', '')}); lower is better",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("json", help="a file written by compare.py --json")
    p.add_argument("png", nargs="?", help="output (default: the JSON path with .png)")
    args = p.parse_args(argv)
    with open(args.json) as f:
        data = json.load(f)
    out = args.png or args.json.rsplit(".", 1)[0] + ".png"
    plot(data, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
