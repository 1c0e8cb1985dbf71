#!/usr/bin/env python3
"""PyTorch reference fixture for the DPO objective (host/train/dpo.c, docs/dpo.md).

Builds a tiny random LlamaForCausalLM (the same builder and float64 treatment as tests/ref/make_fixtures.py), a batch
of preference pairs, and reference log-probs from a DIFFERENT model (a small random perturbation of the policy), then
computes in float64:

  lp          = sum over completion tokens of mask * log p(token | prefix)     (policy, per sequence)
  margin      = (lp_c - ref_c) - (lp_r - ref_r)
  loss        = mean_i pw_i * -log sigmoid(beta * margin_i)                    (pw = 1: plain DPO)
  rewards     = beta * (lp - ref); TRL's rewards/chosen, rejected, margins, accuracies (means over pairs)
  grad/NAME   = d loss / d parameter, for every parameter (plain DPO)
  grad_spdpo/NAME  the same for the SPDPO-weighted loss, pw from pair_groups + gen_logprob:
                pw_i = k * exp(gen_lp_i) / sum_{j in group} exp(gen_lp_j), k = group size

Writes tests/ref/dpo/{model.h5, pairs.h5, expected.h5}:
  model.h5     sprec checkpoint (model only), as make_fixtures.py writes it
  pairs.h5     chosen/{tokens,mask,lengths}, rejected/{tokens,mask,lengths} (right padded, mask on completion tokens
               only), ref_chosen, ref_rejected float64 [n], beta (attribute), pair_groups int32 [G],
               gen_logprob float64 [n]
  expected.h5  lp_chosen, lp_rejected, pair_weight float64 [n]; loss, rewards_chosen, rewards_rejected,
               rewards_margins, rewards_accuracies, loss_spdpo float64 scalars; grad/NAME, grad_spdpo/NAME float32

Run: python3 tests/ref/make_dpo_fixtures.py   (needs torch, transformers 5.x, h5py, numpy; CPU only)
"""
import copy
import os
import sys

import h5py
import numpy as np
import torch
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import (LIBVER, Case, build_model, exact_float64, head_dim_of, randomize,  # noqa: E402
                           rope_inv_freq_f64, write_model)

SEED = 4321
BETA = 0.1
REF_NOISE = 0.4           # reference = policy + REF_NOISE * |p| * N(0,1), elementwise
OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dpo")

CASE = Case("dpo_llama", "llama", vocab=61, dim=32, n_heads=4, n_kv_heads=2, ffn=64, T=0, lengths=(), tied=True)

# (prompt length, chosen completion length, rejected completion length) per pair. Pairs 0 and 1 share a prompt and
# the chosen completion (two negatives of one prompt: an SPDPO group of 2); pairs 2 and 3 are groups of one.
PAIRS = [(5, 3, 4), (5, 3, 2), (7, 2, 3), (4, 4, 4)]
GROUPS = [2, 1, 1]
GEN_LOGPROB = [-1.3, -2.6, -0.4, -3.1]     # pi_t(rejected | prompt) of the generating model (SPDPO weights)


def make_pairs(gen):
    """chosen and rejected batches [n, T] (right padded, T = longest row of the side); mask 1 on completion tokens."""
    n = len(PAIRS)
    rows_c, rows_r, masks_c, masks_r = [], [], [], []
    prompt = chosen = None
    assert PAIRS[1][:2] == PAIRS[0][:2]
    for i, (p, c, r) in enumerate(PAIRS):
        if i != 1:                                  # pair 1 reuses pair 0's prompt and chosen
            prompt = torch.randint(0, CASE.vocab, (p,), generator=gen)
            chosen = torch.randint(0, CASE.vocab, (c,), generator=gen)
        rejected = torch.randint(0, CASE.vocab, (r,), generator=gen)
        while r == c and torch.equal(rejected, chosen):
            rejected = torch.randint(0, CASE.vocab, (r,), generator=gen)
        rows_c.append(torch.cat([prompt, chosen]))
        rows_r.append(torch.cat([prompt, rejected]))
        masks_c.append(torch.cat([torch.zeros(p), torch.ones(c)]))
        masks_r.append(torch.cat([torch.zeros(p), torch.ones(r)]))

    def pad(rows, masks):
        T = max(len(x) for x in rows)
        tokens = torch.zeros(n, T, dtype=torch.int64)
        mask = torch.zeros(n, T, dtype=torch.float64)
        lengths = torch.tensor([len(x) for x in rows], dtype=torch.int64)
        for b, (x, m) in enumerate(zip(rows, masks)):
            tokens[b, :len(x)] = x
            mask[b, :len(x)] = m
        valid = torch.arange(T)[None, :] < lengths[:, None]
        return tokens, mask, lengths, valid

    return pad(rows_c, masks_c), pad(rows_r, masks_r)


def seq_logprobs(model, tokens, mask, valid):
    """Per-row sum of mask * log p(token_t | tokens_<t) over t >= 1 (differentiable)."""
    B, T = tokens.shape
    position_ids = torch.arange(T)[None, :].expand(B, T)
    logits = model(input_ids=tokens, attention_mask=valid.long(), position_ids=position_ids, use_cache=False).logits
    lp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, tokens[:, 1:, None]).squeeze(-1)
    lp = torch.where(valid[:, 1:], lp, 0.0)
    return (mask[:, 1:].to(lp.dtype) * lp).sum(1)


def dpo(lp_c, lp_r, ref_c, ref_r, pw):
    rc, rr = BETA * (lp_c - ref_c), BETA * (lp_r - ref_r)
    losses = -torch.nn.functional.logsigmoid(rc - rr)
    return (pw * losses).mean(), rc.detach(), rr.detach()


def spdpo_weights(gen_lp):
    out, i = [], 0
    for k in GROUPS:
        g = torch.tensor(gen_lp[i:i + k], dtype=torch.float64)
        out.append(k * torch.softmax(g, 0))
        i += k
    assert i == len(gen_lp)
    return torch.cat(out)


def main():
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, h5py {h5py.__version__}")
    gen = torch.Generator().manual_seed(SEED)
    model32 = build_model(CASE)
    randomize(model32, gen)
    (tc, mc, lc, vc), (tr, mr, lr, vr) = make_pairs(gen)
    inv64 = rope_inv_freq_f64(CASE, head_dim_of(model32.config))

    # reference model: a different (perturbed) model, in float64, no gradients
    ref32 = copy.deepcopy(model32)
    with torch.no_grad():
        for p in ref32.parameters():
            p.add_(REF_NOISE * p.abs() * torch.randn(p.shape, generator=gen))
    ref64 = copy.deepcopy(ref32).double()
    with exact_float64(ref64, inv64), torch.no_grad():
        ref_c = seq_logprobs(ref64, tc, mc, vc)
        ref_r = seq_logprobs(ref64, tr, mr, vr)

    model64 = copy.deepcopy(model32).double()
    n = len(PAIRS)
    pw_spdpo = spdpo_weights(GEN_LOGPROB)
    results = {}
    with exact_float64(model64, inv64):
        for key, pw in (("plain", torch.ones(n, dtype=torch.float64)), ("spdpo", pw_spdpo)):
            model64.zero_grad(set_to_none=True)
            lp_c = seq_logprobs(model64, tc, mc, vc)
            lp_r = seq_logprobs(model64, tr, mr, vr)
            loss, rc, rr = dpo(lp_c, lp_r, ref_c, ref_r, pw)
            loss.backward()
            grads = {name: p.grad.detach().clone() for name, p in model64.named_parameters()}
            results[key] = (loss.item(), lp_c.detach(), lp_r.detach(), rc, rr, grads)

    # float32 transformers run of the same loss, as a sanity check of the float64 reference
    model32.zero_grad(set_to_none=True)
    l32, _, _ = dpo(seq_logprobs(model32, tc, mc, vc), seq_logprobs(model32, tr, mr, vr), ref_c.float(),
                    ref_r.float(), torch.ones(n))
    l32.backward()
    g64 = results["plain"][5]
    g_err = max(((p.grad.double() - g64[name]).norm() / g64[name].norm()).item()
                for name, p in model32.named_parameters())
    assert abs(l32.item() - results["plain"][0]) < 1e-5 and g_err < 1e-4, (l32.item(), g_err)

    loss, lp_c, lp_r, rc, rr, grads = results["plain"]
    os.makedirs(OUT_DIR, exist_ok=True)
    write_model(os.path.join(OUT_DIR, "model.h5"), CASE, model32)
    with h5py.File(os.path.join(OUT_DIR, "pairs.h5"), "w", libver=LIBVER) as f:
        f.attrs["beta"] = np.float64(BETA)
        for side, (t, m, ln) in (("chosen", (tc, mc, lc)), ("rejected", (tr, mr, lr))):
            g = f.create_group(side)
            g.create_dataset("tokens", data=t.numpy().astype(np.int32))
            g.create_dataset("mask", data=m.numpy().astype(np.float32))
            g.create_dataset("lengths", data=ln.numpy().astype(np.int32))
        f.create_dataset("ref_chosen", data=ref_c.numpy())
        f.create_dataset("ref_rejected", data=ref_r.numpy())
        f.create_dataset("pair_groups", data=np.array(GROUPS, dtype=np.int32))
        f.create_dataset("gen_logprob", data=np.array(GEN_LOGPROB, dtype=np.float64))
    with h5py.File(os.path.join(OUT_DIR, "expected.h5"), "w", libver=LIBVER) as f:
        f.attrs["generator"] = "tests/ref/make_dpo_fixtures.py (float64 reference)"
        f.attrs["torch_version"] = str(torch.__version__)
        f.attrs["transformers_version"] = str(transformers.__version__)
        f.create_dataset("lp_chosen", data=lp_c.numpy())
        f.create_dataset("lp_rejected", data=lp_r.numpy())
        f.create_dataset("pair_weight", data=pw_spdpo.numpy())
        f.create_dataset("loss", data=np.float64(loss))
        f.create_dataset("rewards_chosen", data=np.float64(rc.mean().item()))
        f.create_dataset("rewards_rejected", data=np.float64(rr.mean().item()))
        f.create_dataset("rewards_margins", data=np.float64((rc - rr).mean().item()))
        f.create_dataset("rewards_accuracies", data=np.float64((rc > rr).double().mean().item()))
        f.create_dataset("loss_spdpo", data=np.float64(results["spdpo"][0]))
        for key, group in (("plain", "grad"), ("spdpo", "grad_spdpo")):
            g = f.create_group(group)
            for name, t in results[key][5].items():
                g.create_dataset(name, data=t.numpy().astype(np.float32))

    size = sum(os.path.getsize(os.path.join(OUT_DIR, x)) for x in os.listdir(OUT_DIR))
    print(f"lp_chosen {lp_c.tolist()}\nlp_rejected {lp_r.tolist()}\nref_chosen {ref_c.tolist()}\n"
          f"ref_rejected {ref_r.tolist()}")
    print(f"loss {loss:.8f} (spdpo {results['spdpo'][0]:.8f}, pw {pw_spdpo.tolist()}), rewards/chosen "
          f"{rc.mean().item():.6f} rejected {rr.mean().item():.6f} accuracies {(rc > rr).double().mean().item():.2f}")
    print(f"float32 transformers vs float64 reference: loss {abs(l32.item() - loss):.1e}, grads {g_err:.1e}")
    print(f"wrote {OUT_DIR}: {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
