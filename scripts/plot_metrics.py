#!/usr/bin/env python3
"""Plot sprec metrics against iteration: one panel per metric, one line per label.

usage: scripts/plot_metrics.py METRICS.jsonl [MORE.jsonl ...] [-k 10] [-o metrics.png] [--title TEXT]

Each input line is one evaluation as `sprec eval` / the trainers write it (docs/metrics.md):
{"label": "sft", "iteration": 0 or null, "N": ..., "NDCG@10": ..., ...}. Lines are grouped by
label (SFT / DPO / SPRec ...); within a label, points are sorted by iteration. A label whose
lines all have iteration null (a standalone `sprec eval`) is drawn as a horizontal dashed line
(a baseline, e.g. the SFT model). When a label has several lines with the same iteration, the
last one wins (a re-run).
"""
import argparse
import json
import math
import sys

METRICS = ["NDCG", "HR", "DivRatio", "ORRatio", "MGU", "DGU"]
HINT = {"NDCG": "higher is better", "HR": "higher is better", "DivRatio": "higher = more diverse",
        "ORRatio": "lower = less popularity bias", "MGU": "lower = fairer", "DGU": "lower = fairer"}


def read(paths):
    runs = {}   # label -> {iteration (or None): row}
    order = []
    for path in paths:
        try:
            f = open(path, encoding="utf-8")
        except OSError as e:
            sys.exit(f"plot_metrics: cannot open {path}: {e.strerror}")
        with f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    sys.exit(f"plot_metrics: {path}:{n}: not JSON ({e.msg})")
                if not isinstance(row, dict) or "label" not in row:
                    sys.exit(f"plot_metrics: {path}:{n}: no 'label' (is this a metrics.jsonl file?)")
                label = str(row["label"])
                if label not in runs:
                    runs[label] = {}
                    order.append(label)
                runs[label][row.get("iteration")] = row
    if not runs:
        sys.exit("plot_metrics: no evaluations in " + ", ".join(paths))
    return runs, order


def main():
    ap = argparse.ArgumentParser(description="metrics.jsonl -> PNG of metric vs iteration")
    ap.add_argument("files", nargs="+", help="metrics.jsonl files (sprec eval / trainers)")
    ap.add_argument("-k", type=int, default=10, help="the K to plot (default 10)")
    ap.add_argument("-o", "--out", default="metrics.png", help="output PNG (default metrics.png)")
    ap.add_argument("--title", default=None, help="figure title")
    args = ap.parse_args()
    runs, order = read(args.files)
    keys = [f"{m}@{args.k}" for m in METRICS]
    if not any(k in row for r in runs.values() for row in r.values() for k in keys):
        have = sorted({k.split("@")[1] for r in runs.values() for row in r.values() for k in row if "@" in k}, key=int)
        sys.exit(f"plot_metrics: no metric at K = {args.k} in the input (K present: {', '.join(have) or 'none'})")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_metrics: matplotlib is not installed (pip install matplotlib); "
                 "the metrics themselves are in the JSONL files")

    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    iters = [i for r in runs.values() for i in r if i is not None]
    lo, hi = (min(iters), max(iters)) if iters else (0, 1)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    for ax, metric, key in zip(axes.flat, METRICS, keys):
        for j, label in enumerate(order):
            color = f"C{j % 10}"
            pts = sorted((i, row[key]) for i, row in runs[label].items() if i is not None and key in row)
            base = runs[label].get(None)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=color, label=label)
            elif base is not None and key in base:
                ax.hlines(base[key], lo, hi, colors=color, linestyles="dashed", label=label)
        ax.set_title(f"{key}  ({HINT[metric]})", fontsize=10)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        if iters and hi - lo < 20:
            ax.set_xticks(range(math.ceil(lo), math.floor(hi) + 1))
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.955), ncol=max(1, len(labels)), frameon=False)
    fig.suptitle(args.title or f"sprec metrics at K = {args.k}", y=0.99)
    fig.tight_layout(rect=(0, 0, 1, 0.91))
    fig.savefig(args.out, dpi=110)
    print(f"plot_metrics: wrote {args.out} ({len(order)} label(s): {', '.join(order)})")


if __name__ == "__main__":
    main()
