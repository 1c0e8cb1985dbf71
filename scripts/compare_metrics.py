#!/usr/bin/env python3
"""Print one comparison table from sprec metrics.jsonl files (no numpy needed).

usage: scripts/compare_metrics.py METRICS.jsonl [MORE.jsonl ...] [-k 5,10] [--markdown]

Rows: for each label (in order of first appearance) its last line without an iteration
(a standalone `sprec eval`), else the line of its highest iteration (e.g. the last SPRec
iteration). Columns: NDCG, HR, DivRatio, ORRatio, MGU, DGU at each K.
"""
import argparse
import json
import sys

METRICS = ["NDCG", "HR", "DivRatio", "ORRatio", "MGU", "DGU"]
NAMES = {"sft": "SFT", "dpo": "DPO-RN", "sprec": "SPRec"}


def main():
    ap = argparse.ArgumentParser(description="metrics.jsonl -> comparison table")
    ap.add_argument("files", nargs="+")
    ap.add_argument("-k", default="5,10", help="comma-separated K values (default 5,10)")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args()
    ks = [int(k) for k in args.k.split(",")]
    rows, order = {}, []
    for path in args.files:
        try:
            lines = open(path, encoding="utf-8").read().splitlines()
        except OSError as e:
            sys.exit(f"compare_metrics: cannot open {path}: {e.strerror}")
        for line in lines:
            if not line.strip():
                continue
            row = json.loads(line)
            label = str(row.get("label"))
            if label not in rows:
                rows[label] = {}
                order.append(label)
            rows[label][row.get("iteration")] = row
    cols = [f"{m}@{k}" for k in ks for m in METRICS]
    table = []
    for label in order:
        r = rows[label]
        it = None if None in r else max(r)
        name = NAMES.get(label, label) + ("" if it is None else f" (it {it})")
        table.append([name] + [f"{r[it][c]:.4f}" if c in r[it] else "-" for c in cols])
    head = ["model"] + cols
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for t in table:
            print("| " + " | ".join(t) + " |")
        return
    w0 = max(len(h) for h in [head[0]] + [t[0] for t in table])
    for k in ks:
        sub = [f"{m}@{k}" for m in METRICS]
        idx = [cols.index(c) + 1 for c in sub]
        print(f"{'model':<{w0}}  " + "  ".join(f"{c:>11}" for c in sub))
        for t in table:
            print(f"{t[0]:<{w0}}  " + "  ".join(f"{t[i]:>11}" for i in idx))
        print()


if __name__ == "__main__":
    main()
