#!/usr/bin/env python3
"""Checks `sprec import` of SmolLM2-135M-Instruct.Q4_1.gguf against transformers loading the same GGUF.

    scripts/get_model.sh smollm2-135m          # fetches the GGUF, imports it to build/models/smollm2-135m.h5
    python3 tests/ref/check_smollm2.py [GGUF] [CKPT]

transformers (gguf_file=..., needs pip `gguf`) dequantises the same file to float32 and un-permutes Q/K the same
way; both sides then run float32 math. Prints, per prompt: relative error of the logits, largest absolute
difference, and whether the argmax (greedy next token) agrees at every position; also whether the tokenizer.json
the import wrote gives the same ids as transformers' GGUF tokenizer. Not run by CI.
"""
import os
import subprocess
import sys

import h5py
import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GGUF = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser(
    "~/.cache/sprec/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf")
CKPT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "build/models/smollm2-135m.h5")
PROMPTS = [
    "The capital of France is",
    "<|im_start|>user\nRecommend a book about space travel.<|im_end|>\n<|im_start|>assistant\n",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "1, 2, 3, 5, 8, 13, 21,",
]


def main():
    d, f = os.path.split(GGUF)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    with h5py.File(CKPT, "r") as h:
        ours_tok = Tokenizer.from_str(bytes(h["tokenizer/tokenizer.json"][()]).decode())
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    same = all(ours_tok.encode(p, add_special_tokens=False).ids == i for p, i in zip(PROMPTS, ids))
    print(f"tokenizer.json from the GGUF metadata gives transformers' ids on all prompts: {same}")
    B, T = len(ids), max(len(i) for i in ids)
    tokens = np.zeros((B, T), np.int32)
    mask = np.zeros((B, T), np.float32)
    for b, i in enumerate(ids):
        tokens[b, :len(i)] = i
        mask[b, 1:len(i)] = 1
    lengths = np.array([len(i) for i in ids], np.int32)
    tmp = os.path.join(ROOT, "build/test-tmp")
    os.makedirs(tmp, exist_ok=True)
    with h5py.File(f"{tmp}/smol_batch.h5", "w") as h:
        h["tokens"], h["mask"], h["lengths"] = tokens, mask, lengths
    subprocess.run([f"{ROOT}/build/sprec", "dump", "--model", CKPT, "--batch", f"{tmp}/smol_batch.h5", "-o",
                    f"{tmp}/smol_out.h5"], check=True)
    with h5py.File(f"{tmp}/smol_out.h5", "r") as h:
        ours = h["logits"][()]
    worst = 0
    for b, i in enumerate(ids):
        with torch.no_grad():
            ref = model(torch.tensor([i])).logits[0].numpy()
        o = ours[b, :len(i)]
        rel = np.linalg.norm(o - ref) / np.linalg.norm(ref)
        worst = max(worst, rel)
        agree = (o.argmax(-1) == ref.argmax(-1)).mean()
        print(f"prompt {b}: {len(i):3d} tokens  logits rel err {rel:.2e}  max abs {np.abs(o - ref).max():.2e}  "
              f"argmax agreement {agree * 100:.0f}%")
    # greedy continuation with transformers, then the same tokens scored by sprec (argmax at each step)
    p = tok(PROMPTS[0], return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        gen = model.generate(p, max_new_tokens=16, do_sample=False)[0].tolist()
    L = len(gen)
    with h5py.File(f"{tmp}/smol_batch2.h5", "w") as h:
        h["tokens"] = np.array([gen], np.int32)
        h["mask"] = np.array([[0] + [1] * (L - 1)], np.float32)
        h["lengths"] = np.array([L], np.int32)
    subprocess.run([f"{ROOT}/build/sprec", "dump", "--model", CKPT, "--batch", f"{tmp}/smol_batch2.h5", "-o",
                    f"{tmp}/smol_out2.h5"], check=True, stdout=subprocess.DEVNULL)
    with h5py.File(f"{tmp}/smol_out2.h5", "r") as h:
        ours_next = h["logits"][0].argmax(-1)
    n0 = p.shape[1]
    same_greedy = all(ours_next[t - 1] == gen[t] for t in range(n0, L))
    print(f"greedy 16 tokens from transformers: {tok.decode(gen[n0:])!r}; sprec's argmax picks the same "
          f"tokens at every step: {same_greedy}")
    print(f"worst logits rel err {worst:.2e}")
    # sprec's own KV-cache greedy generation vs transformers' greedy, per prompt (EOS off on both sides)
    for b, i in enumerate(ids):
        with torch.no_grad():
            ref = model.generate(torch.tensor([i]), max_new_tokens=24, do_sample=False, eos_token_id=None,
                                 pad_token_id=0)[0].tolist()[len(i):]
        out = subprocess.run([f"{ROOT}/build/sprec", "generate", "--model", CKPT, "--prompt-ids",
                              " ".join(map(str, i)), "--ids", "--no-bos", "--max-new-tokens", "24",
                              "--eos-id", "-1"], check=True, capture_output=True, text=True).stdout
        got = [int(x) for x in out.split()]
        print(f"prompt {b}: sprec generate (KV cache, greedy, 24 tokens) == transformers generate: {got == ref}")
    # export -> transformers loads the folder (model + tokenizer) -> same logits as the GGUF load
    import shutil
    exp = f"{tmp}/smol_export"
    shutil.rmtree(exp, ignore_errors=True)
    subprocess.run([f"{ROOT}/build/sprec", "export", CKPT, "-o", exp], check=True, stdout=subprocess.DEVNULL)
    model2 = AutoModelForCausalLM.from_pretrained(exp, dtype=torch.float32).eval()
    tok2 = AutoTokenizer.from_pretrained(exp)
    same_ids = all(tok2(p, add_special_tokens=False)["input_ids"] == i for p, i in zip(PROMPTS, ids))
    worst2 = 0
    for i in ids:
        with torch.no_grad():
            a = model2(torch.tensor([i])).logits[0].numpy()
            b = model(torch.tensor([i])).logits[0].numpy()
        worst2 = max(worst2, np.linalg.norm(a - b) / np.linalg.norm(b))
    print(f"export (fp32) loaded by transformers: {type(model2).__name__}; logits vs the GGUF load: worst rel err "
          f"{worst2:.2e}; AutoTokenizer on the exported folder gives the same ids: {same_ids}")


if __name__ == "__main__":
    main()
