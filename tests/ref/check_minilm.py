#!/usr/bin/env python3
"""The real sentence encoders against their own runtimes (run by hand after `scripts/get_model.sh minilm` and
`scripts/get_model.sh minilm-l6`; not in CI: the weights are downloads).

For 1,000 titles (Goodreads and MovieLens titles from ../shared/data when present, plus empty, whitespace-only,
very long and non-ASCII ones):
  paraphrase-MiniLM-L3-v2  build/models/minilm.h5     vs onnxruntime on the ONNX file itself (output '461',
                                                       the pooled embedding), one title per run (no padding)
  all-MiniLM-L6-v2         build/models/minilm-l6.h5  vs sentence-transformers (Transformer + mean Pooling, fp32,
                                                       without its Normalize module: sprec returns the pooled vector)
The token ids come from the HF `tokenizers` library with sentence-transformers' truncation and go to
`sprec embed --ids`, so this checks the encoder alone; with --text the titles go to `sprec embed` as text (the
WordPiece tokenizer in C too). Prints the largest relative error ||c - ref|| / ||ref|| over the titles, and the
time per 1,000 titles as `sprec embed` reports it.

  python3 tests/ref/check_minilm.py [--text] [--cache ~/.cache/sprec] [--threads N]
"""
import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")


def titles(n=1000):
    random.seed(13)
    pool = []
    gr = os.path.join(SHARED, "goodreads", "id2name.json")
    if os.path.exists(gr):
        pool += list(json.load(open(gr)).values())
    ml = os.path.join(SHARED, "movielens-small", "movies.csv")
    if os.path.exists(ml):
        pool += [row["title"] for row in csv.DictReader(open(ml, encoding="utf-8"))]
    special = ["", " ", "\t", "Amélie (Le Fabuleux Destin d'Amélie Poulain) (2001)", "東京物語 (Tokyo Story)",
               "Crème brûlée à la carte", "Ｆｕｌｌｗｉｄｔｈ ｌｅｔｔｅｒｓ", "emoji 😀🎬 title", "Ελληνικά και русский",
               "naïve résumé café", "Zoë's Ünïcödé", "\"Quoted\" Title", "a" * 300,
               " ".join(["The Lord of the Rings: The Fellowship of the Ring"] * 30),
               " ".join("word%d" % i for i in range(400))]
    random.shuffle(pool)
    return special + pool[:n - len(special)]


def c_embed(model, lines, threads, ids_mode):
    cmd = [os.path.join(ROOT, "build/sprec"), "embed", "--model", model] + (["--ids"] if ids_mode else [])
    if threads:
        cmd += ["--threads", str(threads)]
    p = subprocess.run(cmd, input="\n".join(lines) + "\n", capture_output=True, text=True)
    if p.returncode:
        sys.exit("sprec embed failed: " + p.stderr)
    return np.array([json.loads(l) for l in p.stdout.splitlines()], dtype=np.float64), p.stderr.strip()


def rel_err(got, ref):
    return (np.linalg.norm(got - ref, axis=1) / np.maximum(np.linalg.norm(ref, axis=1), 1e-30)).max()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--text", action="store_true", help="give sprec embed the texts (C WordPiece) instead of ids")
    ap.add_argument("--cache", default=os.environ.get("SPREC_CACHE", os.path.expanduser("~/.cache/sprec")))
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    from tokenizers import Tokenizer
    t = titles()
    assert all("\n" not in x for x in t)
    print("%d titles (%d empty or blank, longest %d chars)" % (len(t), sum(not x.strip() for x in t), max(map(len, t))))

    # paraphrase-MiniLM-L3-v2 vs onnxruntime
    import onnxruntime as ort
    d3 = os.path.join(a.cache, "minilm")
    tok = Tokenizer.from_file(os.path.join(d3, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(128)
    ids = [tok.encode(x).ids for x in t]
    sess = ort.InferenceSession(os.path.join(d3, "paraphrase-MiniLM-L3-v2.onnx"))
    t0 = time.time()
    ref = np.array([sess.run(["461"], {"input_ids": np.array([i], dtype=np.int64),
                                       "attention_mask": np.ones((1, len(i)), dtype=np.int64)})[0][0] for i in ids])
    t_ort = time.time() - t0
    lines = t if a.text else [" ".join(map(str, i)) for i in ids]
    got, note = c_embed(os.path.join(ROOT, "build/models/minilm.h5"), lines, a.threads, not a.text)
    print("paraphrase-MiniLM-L3-v2: max rel. err. vs onnxruntime %.3g over %d titles | %s | onnxruntime %.0f ms "
          "per 1,000 (one at a time)" % (rel_err(got, ref), len(t), note, 1000 * t_ort * 1000 / len(t)))

    # all-MiniLM-L6-v2 vs sentence-transformers (without Normalize)
    from sentence_transformers import SentenceTransformer, models
    d6 = os.path.join(a.cache, "minilm-l6")
    tr = models.Transformer(d6, max_seq_length=json.load(open(os.path.join(d6, "sentence_bert_config.json")))
                            ["max_seq_length"])
    st = SentenceTransformer(modules=[tr, models.Pooling(tr.get_word_embedding_dimension(), "mean")], device="cpu")
    t0 = time.time()
    ref6 = st.encode(t, batch_size=64, convert_to_numpy=True).astype(np.float64)
    t_st = time.time() - t0
    ids6 = [st.tokenize([x])["input_ids"][0].tolist() for x in t]
    lines = t if a.text else [" ".join(map(str, i)) for i in ids6]
    got6, note6 = c_embed(os.path.join(ROOT, "build/models/minilm-l6.h5"), lines, a.threads, not a.text)
    print("all-MiniLM-L6-v2: max rel. err. vs sentence-transformers %.3g over %d titles | %s | sentence-transformers "
          "%.0f ms per 1,000 (batch 64)" % (rel_err(got6, ref6), len(t), note6, 1000 * t_st * 1000 / len(t)))


if __name__ == "__main__":
    main()
