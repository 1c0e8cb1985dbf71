"""A tokenized batch and transformers' float32 logits on it, as the import, GGUF and LoRA fixtures store them
(<case>/batch.h5: tokens int32 [B,T], mask float32 [B,T], lengths int32 [B]; <case>/expected.h5: logits float32
[B,T,V], 0 at padded positions), and the `build/sprec` the --check modes run. Shared by make_import_fixtures.py,
make_gguf_fixtures.py and make_lora_fixtures.py."""
import os
import subprocess

import h5py
import numpy as np
import torch

from make_fixtures import LIBVER

SPREC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "build", "sprec")


def title_batch(tok, texts):
    """texts tokenized and right-padded: tokens, mask (1 on every position but the first), lengths."""
    ids = [tok(t)["input_ids"] for t in texts]
    B, T = len(ids), max(len(x) for x in ids)
    tokens = np.zeros((B, T), np.int32)
    mask = np.zeros((B, T), np.float32)
    for b, x in enumerate(ids):
        tokens[b, :len(x)] = x
        mask[b, 1:len(x)] = 1
    lengths = np.array([len(x) for x in ids], np.int32)
    return tokens, mask, lengths


def valid_positions(tokens, lengths):
    """bool [B,T]: the positions before each row's length."""
    return torch.arange(tokens.shape[1])[None, :] < torch.tensor(lengths)[:, None]


def masked_logits(model, tokens, lengths):
    """model's logits on the right-padded batch (numpy, in the model's dtype), 0 at padded positions."""
    B, T = tokens.shape
    valid = valid_positions(tokens, lengths)
    with torch.no_grad():
        out = model(input_ids=torch.tensor(tokens, dtype=torch.long), attention_mask=valid.long(),
                    position_ids=torch.arange(T)[None, :].expand(B, T)).logits
    return torch.where(valid[..., None], out, 0.0).numpy()


def write(folder, tokens, mask, lengths, logits):
    """folder/batch.h5 and folder/expected.h5."""
    with h5py.File(os.path.join(folder, "batch.h5"), "w", libver=LIBVER) as f:
        f["tokens"], f["mask"], f["lengths"] = tokens, mask, lengths
    with h5py.File(os.path.join(folder, "expected.h5"), "w", libver=LIBVER) as f:
        f["logits"] = logits.astype(np.float32)


def read(folder):
    """tokens, lengths and the reference logits of folder/batch.h5 and folder/expected.h5."""
    with h5py.File(os.path.join(folder, "batch.h5")) as f:
        tokens, lengths = f["tokens"][()], f["lengths"][()]
    with h5py.File(os.path.join(folder, "expected.h5")) as f:
        return tokens, lengths, f["logits"][()]


def rel_err(out, ref):
    return np.linalg.norm(out - ref) / np.linalg.norm(ref)


def sprec(*args, capture=False):
    """build/sprec ARGS (after `make`); its stdout when capture, else silenced."""
    r = subprocess.run([SPREC, *args], check=True, text=True,
                       stdout=subprocess.PIPE if capture else subprocess.DEVNULL)
    return r.stdout
