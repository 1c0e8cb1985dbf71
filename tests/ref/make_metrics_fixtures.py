#!/usr/bin/env python3
"""Writes tests/ref/metrics/cases.json: random evaluation inputs and the metrics that
tests/ref/evaluate_ref.py (plain Python, the reference evaluate.py arithmetic) computes for them.
tests/unit/test_metrics.c feeds the same inputs to metrics_compute() and requires agreement to
1e-12 relative. Plain Python only, seeded: rerunning gives a byte-identical file.

    python3 tests/ref/make_metrics_fixtures.py
"""
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evaluate_ref import evaluate_case  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "metrics", "cases.json")


def make_case(name, seed, n_items, n_genres, n_rows, max_k, p_outside, p_hit, p_no_genre, zipf):
    rng = random.Random(seed)
    # genres: 0..3 distinct per item, a few items with none (they must add nothing)
    item_genres = []
    for _ in range(n_items):
        n = 0 if rng.random() < p_no_genre else rng.randint(1, min(3, n_genres))
        item_genres.append(sorted(rng.sample(range(n_genres), n)))
    # Zipf-like popularity so the top-3 counts of ORRatio are dominated by a few items (and tie often)
    weights = [1.0 / (i + 1) ** zipf for i in range(n_items)]
    order = list(range(n_items))
    rng.shuffle(order)   # popularity unrelated to the id
    pop = [0.0] * n_items
    for rank, item in enumerate(order):
        pop[item] = weights[rank]

    def ranked_list():
        chosen = []
        while len(chosen) < max_k:
            item = rng.choices(range(n_items), weights=pop)[0]
            if item not in chosen:
                chosen.append(item)
        return chosen

    true_item, ranked, history = [], [], []
    for _ in range(n_rows):
        ranking = ranked_list()
        if rng.random() < p_outside:
            target = -1
        elif rng.random() < p_hit:
            target = ranking[rng.randrange(max_k)]        # a hit at a random rank
        else:
            target = rng.randrange(n_items)               # usually a miss
        hist = [rng.randrange(n_items) if rng.random() > 0.1 else -1 for _ in range(rng.randint(0, 10))]
        true_item.append(target)
        ranked.append(ranking)
        history.append(hist)
    case = {"name": name, "n_items": n_items, "n_genres": n_genres, "item_genres": item_genres,
            "max_k": max_k, "ks": [k for k in (1, 5, 10) if k <= max_k],
            "true_item": true_item, "ranked": ranked, "history": history}
    case["expected"] = evaluate_case(case)
    return case


def main():
    cases = [
        make_case("zipf_200", 1, n_items=200, n_genres=12, n_rows=300, max_k=10,
                  p_outside=0.1, p_hit=0.4, p_no_genre=0.05, zipf=1.0),
        make_case("steep_small", 2, n_items=30, n_genres=5, n_rows=150, max_k=10,
                  p_outside=0.2, p_hit=0.5, p_no_genre=0.2, zipf=1.5),
        make_case("mostly_outside", 3, n_items=120, n_genres=20, n_rows=200, max_k=10,
                  p_outside=0.9, p_hit=0.3, p_no_genre=0.1, zipf=0.8),
    ]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"generator": "tests/ref/make_metrics_fixtures.py", "cases": cases}, f, separators=(",", ":"))
        f.write("\n")
    print("wrote %s (%d bytes)" % (OUT, os.path.getsize(OUT)))
    for c in cases:
        for e in c["expected"]:
            print("  %-14s K=%-2d N=%d M=%d NDCG=%.4f HR=%.4f Div=%.4f OR=%.4f MGU=%.4f DGU=%.4f" % (
                c["name"], e["k"], e["N"], e["M"], e["NDCG"], e["HR"], e["DivRatio"], e["ORRatio"],
                e["MGU"], e["DGU"]))


if __name__ == "__main__":
    main()
