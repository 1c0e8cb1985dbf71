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
import sys
import tempfile

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import batch_logits as bl  # noqa: E402
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
        out, grads = mf.reference(model64, tokens, mask, valid, peft_name)
    out32, grads32 = mf.reference(model32, tokens, mask, valid, peft_name)
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
    mf.write_expected(os.path.join(folder, "expected.h5"), name,
                      "tests/ref/make_lora_fixtures.py (PEFT, float64 reference, stored as float32)",
                      dict(peft_version=peft.__version__, torch_version=torch.__version__), out, grads)
    print(f"{name}_r{rank}: r={rank} alpha={alpha} targets={','.join(targets)} adapters={len(lora)} "
          f"loss={out['loss'].item():.6f}; float32 vs float64: outputs {o32:.2e}, grads {g32:.2e}")


def check_export():
    import transformers
    for case in sorted(os.listdir(OUT_DIR)):
        d = os.path.join(OUT_DIR, case)
        tokens, lengths, ref = bl.read(d)
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "hf")
            bl.sprec("export", os.path.join(d, "model.h5"), "-o", out)
            model = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
            err = bl.rel_err(bl.masked_logits(model, tokens, lengths), ref)
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
