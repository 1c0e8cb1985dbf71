#!/usr/bin/env python3
"""Independent plain-Python implementation of the SPRec metrics (method.md section 4).

It follows the reference evaluate.py's arithmetic step by step, not sprec's C code:
  - a per-genre dict filled in the order the genres are listed, += 1/len(select_genres);
  - rows whose true item is outside the catalogue are `continue`d past after N is counted;
  - NDCG as the reference writes it: sum of 1/ln(rank + 2), / N, / (1/ln 2);
  - ORRatio from the item counts sorted by count, descending, first three summed;
  - GH from the history titles of every test row (the reference's gh() walks the whole test file).
Where the reference would divide by zero (M = 0, an empty genre histogram) it returns what
docs/metrics.md defines: 0 for the ratio, an all-zero histogram.

Usage: python3 tests/ref/evaluate_ref.py [tests/ref/metrics/cases.json]
recomputes every case of a fixture file and checks it against the stored expected values.
"""
import json
import math
import sys


def genre_histogram(items, item_genres, genre_names):
    """items: item ids (None = a title outside the catalogue); item_genres[i]: genre names of item i."""
    genre_dict = {g: 0 for g in genre_names}
    for item in items:
        if item is None:
            continue
        select_genres = [g for g in item_genres[item] if g in genre_dict]
        if len(select_genres) > 0:
            for g in select_genres:
                genre_dict[g] += 1 / len(select_genres)
    values = [genre_dict[g] for g in genre_dict]
    total = sum(values)
    if total == 0:
        return values
    return [x / total for x in values]


def evaluate(item_genres, genre_names, true_items, ranked, histories, topk):
    """One K. true_items[r]: item id or None; ranked[r]: item ids best first; histories[r]: item ids or None."""
    n = len(true_items)
    total = 0
    S_ndcg = 0.0
    S_hr = 0
    diversity_set = set()
    diversity_dic = {}
    recommended = []
    for i in range(n):
        target_id = true_items[i]
        if target_id is None:
            continue
        total += 1
        ranking = ranked[i]
        rank_id = ranking.index(target_id) if target_id in ranking else len(ranking)
        if rank_id < topk:
            S_ndcg += 1 / math.log(rank_id + 2)
            S_hr += 1
        for j in range(topk):
            item = ranking[j]
            recommended.append(item)
            diversity_set.add(item)
            diversity_dic[item] = diversity_dic.get(item, 0) + 1
    ndcg = S_ndcg / n / (1 / math.log(2))
    hr = S_hr / n
    sorted_dic = dict(sorted(diversity_dic.items(), key=lambda kv: kv[1], reverse=True))
    top3 = sum(list(sorted_dic.values())[:3])
    div_ratio = len(diversity_set) / (total * topk) if total > 0 else 0.0
    or_ratio = top3 / (total * topk) if total > 0 else 0.0

    gh = genre_histogram([t for h in histories for t in h], item_genres, genre_names)
    gp = genre_histogram(recommended, item_genres, genre_names)
    dis = [gp[g] - gh[g] for g in range(len(gh))]
    if len(dis) == 0:
        mgu, dgu = 0.0, 0.0
    else:
        mgu = sum(abs(x) for x in dis) / len(dis)
        dgu = max(dis) - min(dis)
    return {"k": topk, "N": n, "M": total, "NDCG": ndcg, "HR": hr, "DivRatio": div_ratio,
            "ORRatio": or_ratio, "MGU": mgu, "DGU": dgu}


def evaluate_case(case):
    """A fixture case (ids as in the C API: -1 = outside the catalogue) -> a list of metric dicts, one per K."""
    genre_names = ["genre%d" % g for g in range(case["n_genres"])]
    item_genres = [[genre_names[g] for g in gs] for gs in case["item_genres"]]
    true_items = [None if t < 0 else t for t in case["true_item"]]
    histories = [[None if t < 0 else t for t in h] for h in case["history"]]
    return [evaluate(item_genres, genre_names, true_items, case["ranked"], histories, k) for k in case["ks"]]


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/ref/metrics/cases.json"
    with open(path) as f:
        fixture = json.load(f)
    worst = 0.0
    for case in fixture["cases"]:
        for got, want in zip(evaluate_case(case), case["expected"]):
            for key in ("NDCG", "HR", "DivRatio", "ORRatio", "MGU", "DGU"):
                err = abs(got[key] - want[key]) / max(abs(want[key]), 1e-300)
                worst = max(worst, err if want[key] != 0 or got[key] != 0 else 0.0)
    print("%s: %d cases, worst relative difference %.3g" % (path, len(fixture["cases"]), worst))
    sys.exit(0 if worst <= 1e-12 else 1)


if __name__ == "__main__":
    main()
