#!/usr/bin/env python3
"""Hugging Face PEFT reference fixtures for sprec's LoRA (tests/unit/test_lora.c, test_lora_peft_fixtures).

For every case below this builds a small random Llama/Qwen2 model as tests/ref/make_fixtures.py does, wraps it
with peft.get_peft_model (LoraConfig r, lora_alpha, target_modules, lora_dropout=0, bias="none"), sets every
lora_B to NON-zero random values (with PEFT's B = 0 init the lora_A gradients would all be zero), and writes
tests/ref/lora/<case>/{model.h5, batch.h5, expected.h5}:

  model.h5     a sprec checkpoint: the base model (/config, /params) plus /lora (attrs rank, alpha, dropout,
               targets, seed; /lora/params/<PEFT name> float32, names as in adapter_model.safetensors)
  batch.h5     tokens int32 [B,T], mask float32 [B,T], lengths int32 [B]
  expected.h5  logits, logprobs, seq_logprob, loss and grad/<PEFT name> (the adapter gradients only: the base is
               frozen) of the `sprec dump` contract (loss = -sum(mask * logprob) / sum(mask)), computed in float64
               with the exact-float64 patch of make_fixtures.py, stored as float32

It also checks PEFT's initialisation claim documented in docs/lora.md: lora_A ~ U(-1/sqrt(in), 1/sqrt(in))
(kaiming_uniform_ with a = sqrt(5)) and lora_B = 0.

Run: python3 tests/ref/make_lora_fixtures.py   (needs torch, transformers 5.x, peft, h5py, numpy; CPU only)

Developer check of the export (not part of `make test`, which re-imports the export in C instead):
  python3 tests/ref/make_lora_fixtures.py --check-export
runs `build/sprec export` on every fixture (adapters merged), loads the folder with
transformers.AutoModelForCausalLM and requires its logits to equal the PEFT reference (relative error < 1e-5).
"""
import copy
import math
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402
import peft  # noqa: E402

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lora")
MODULES = dict(q="q_proj", k="k_proj", v="v_proj", o="o_proj", gate="gate_proj", up="up_proj", down="down_proj")
B_STD = 0.2

# (fixture case of make_fixtures.py, rank, alpha, targets)
CASES = [
    ("llama_tied_gqa", 4, 8.0, ["q", "k", "v", "o", "gate", "up", "down"]),
    ("qwen2_bias_gqa", 3, 5.0, ["q", "k", "o", "up"]),
    ("llama_untied_mha", 2, 16.0, ["v", "down"]),
]


def peft_name(name):
    """PEFT's in-memory name -> the saved adapter name (no adapter name 'default')."""
    return name.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B.")


def reference(model, tokens, mask, valid):
    """make_fixtures.reference with the gradients of the trainable (adapter) parameters only."""
    model.zero_grad(set_to_none=True)
    B, T = tokens.shape
    dtype = torch.float64
    position_ids = torch.arange(T)[None, :].expand(B, T)
    logits = model(input_ids=tokens, attention_mask=valid.long(), position_ids=position_ids, use_cache=False).logits
    lp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, tokens[:, 1:, None]).squeeze(-1)
    logprobs = torch.zeros(B, T, dtype=logits.dtype)
    logprobs[:, 1:] = torch.where(valid[:, 1:], lp, 0.0)
    m = mask.to(logits.dtype)
    seq_logprob = (m * logprobs).sum(1)
    loss = -seq_logprob.sum() / m.sum()
    loss.backward()
    out = dict(logits=torch.where(valid[..., None], logits, 0.0), logprobs=logprobs, seq_logprob=seq_logprob,
               loss=loss)
    out = {k: v.detach().to(dtype) for k, v in out.items()}
    grads = {peft_name(n): p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return out, grads


def make_case(index, name, rank, alpha, targets):
    c = next(x for x in mf.CASES if x.name == name)
    i = [x.name for x in mf.CASES].index(name)
    gen = torch.Generator().manual_seed(mf.SEED + 1000 + index)
    base32 = mf.build_model(c)
    mf.randomize(base32, gen)
    tokens, mask, lengths, valid = mf.make_batch(c, gen)
    D = mf.head_dim_of(base32.config)
    inv64 = mf.rope_inv_freq_f64(c, D)

    folder = os.path.join(OUT_DIR, f"{name}_r{rank}")
    os.makedirs(folder, exist_ok=True)
    mf.write_model(os.path.join(folder, "model.h5"), c, base32)     # before PEFT renames the base weights
    mf.write_batch(os.path.join(folder, "batch.h5"), tokens, mask, lengths)

    torch.manual_seed(mf.SEED + i)
    cfg = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, bias="none",
                          target_modules=[MODULES[t] for t in targets], init_lora_weights=True)
    model32 = peft.get_peft_model(base32, cfg)
    lora = {peft_name(n): p for n, p in model32.named_parameters() if p.requires_grad}
    assert len(lora) == 2 * len(targets) * c.n_layers, sorted(lora)
    with torch.no_grad():
        for n, p in lora.items():
            if ".lora_A." in n:      # PEFT init: U(-1/sqrt(in), 1/sqrt(in))
                bound = 1.0 / math.sqrt(p.shape[1])
                amax = p.abs().max().item()
                assert bound * 0.8 < amax <= bound, (n, amax, bound)
            else:
                assert (p == 0).all(), n
                p.copy_(B_STD * torch.randn(p.shape, generator=gen))
    scalings = [m.scaling["default"] for m in model32.modules() if isinstance(m, peft.tuners.lora.LoraLayer)]
    assert len(scalings) == len(targets) * c.n_layers and all(abs(s - alpha / rank) < 1e-12 for s in scalings)

    model64 = copy.deepcopy(model32).double()
    with mf.exact_float64(model64.base_model.model, inv64):
        out, grads = reference(model64, tokens, mask, valid)
    out32, grads32 = reference(model32, tokens, mask, valid)
    o32 = max(mf.rel_err(out32[k], out[k]) for k in out)
    g32 = max(mf.rel_err(grads32[k], grads[k]) for k in grads)
    assert max(o32, g32) < 1e-5, "float32 and float64 disagree"

    with h5py.File(os.path.join(folder, "model.h5"), "a", libver=mf.LIBVER) as f:
        g = f.create_group("lora")
        g.attrs["rank"] = np.int64(rank)
        g.attrs["alpha"] = np.float64(alpha)
        g.attrs["dropout"] = np.float64(0.0)
        g.attrs["targets"] = ",".join(targets)
        g.attrs["seed"] = np.array([0], dtype=np.uint64)
        p = g.create_group("params")
        for n, t in lora.items():
            p.create_dataset(n, data=t.detach().to(torch.float32).numpy(), fletcher32=True, chunks=True)
    with h5py.File(os.path.join(folder, "expected.h5"), "w", libver=mf.LIBVER) as f:
        f.attrs["case"] = name
        f.attrs["generator"] = "tests/ref/make_lora_fixtures.py (PEFT, float64 reference, stored as float32)"
        f.attrs["peft_version"] = str(peft.__version__)
        f.attrs["torch_version"] = str(torch.__version__)
        for k in ("logits", "logprobs", "seq_logprob"):
            f.create_dataset(k, data=out[k].numpy().astype(np.float32))
        f.create_dataset("loss", data=np.float32(out["loss"].item()))
        gg = f.create_group("grad")
        for n, t in grads.items():
            gg.create_dataset(n, data=t.numpy().astype(np.float32))
    print(f"{name}_r{rank}: r={rank} alpha={alpha} targets={','.join(targets)} adapters={len(lora)} "
          f"loss={out['loss'].item():.6f}; float32 vs float64: outputs {o32:.2e}, grads {g32:.2e}")


def check_export():
    import transformers
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for case in sorted(os.listdir(OUT_DIR)):
        d = os.path.join(OUT_DIR, case)
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "hf")
            subprocess.run([os.path.join(root, "build/sprec"), "export", os.path.join(d, "model.h5"), "-o", out],
                           check=True)
            model = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
            with h5py.File(os.path.join(d, "batch.h5")) as f:
                tokens, lengths = f["tokens"][()], f["lengths"][()]
            with h5py.File(os.path.join(d, "expected.h5")) as f:
                ref = f["logits"][()]
            valid = np.arange(tokens.shape[1])[None, :] < lengths[:, None]
            with torch.no_grad():
                logits = model(input_ids=torch.tensor(tokens).long(),
                               attention_mask=torch.tensor(valid).long()).logits.numpy()
            logits[~valid] = 0
            err = np.linalg.norm(logits - ref) / np.linalg.norm(ref)
            print(f"{case}: transformers on the merged export vs the PEFT reference: logits relative error {err:.2e}")
            assert err < 1e-5


def main():
    if "--check-export" in sys.argv[1:]:
        return check_export()
    print(f"torch {torch.__version__}, peft {peft.__version__}")
    for i, (name, rank, alpha, targets) in enumerate(CASES):
        make_case(i, name, rank, alpha, targets)


if __name__ == "__main__":
    main()
