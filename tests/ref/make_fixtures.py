#!/usr/bin/env python3
"""Hugging Face reference fixtures for `sprec dump` (see tests/ref/README.md).

For every case below this builds a small random Llama/Qwen2 model with transformers and writes
tests/ref/fixtures/<case>/{model.h5, batch.h5, expected.h5}:

  model.h5     a sprec checkpoint (model only): /config attributes and /params/<HF name> float32
  batch.h5     tokens int32 [B,T], mask float32 [B,T], lengths int32 [B] (right padding)
  expected.h5  what `sprec dump --model model.h5 --batch batch.h5` must produce: logits, logprobs,
               seq_logprob, loss and grad/<HF name>, computed in float64 and stored as float32

The float64 reference is exact float64 math: transformers' Llama/Qwen2 code runs RMSNorm, the attention
softmax and the RoPE angles in float32 even in a float64 model, so for the reference run those three
pieces are replaced by float64 versions of the same formulas (`exact_float64` below). The script checks
that this reference agrees with transformers' own float32 run, that the float64 patch took effect, and
that the outputs at valid positions do not depend on the tokens at padded positions.

Run: python3 tests/ref/make_fixtures.py   (needs torch, transformers 5.x, h5py, numpy; CPU only)
"""
import contextlib
import copy
import dataclasses
import math
import os
import sys
import types

import h5py
import numpy as np
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

SEED = 1234
INIT_STD = 0.15          # matrices and embeddings (0.02 would give near-zero logits at these sizes)
NORM_STD = 0.1           # RMSNorm weights ~ 1 + NORM_STD * N(0,1)
BIAS_STD = 0.1           # q/k/v biases ~ BIAS_STD * N(0,1)
MAX_POS = 128            # max_position_embeddings of every case (checkpoint max_seq_len)
# HDF5 object formats of 1.10 (readable by libhdf5 >= 1.10): a small chunked dataset then costs a few bytes of
# index instead of a 2.5 KiB v1 B-tree node, which keeps the fixtures small.
LIBVER = ("v110", "v110")
OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")

# Defaults written for the rope_* attributes when a model has no rope scaling (Llama 3.1's values).
ROPE_DEFAULTS = dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192)


@dataclasses.dataclass
class Case:
    name: str
    arch: str                 # "llama" | "qwen2"
    vocab: int
    dim: int
    n_heads: int
    n_kv_heads: int
    ffn: int
    T: int
    lengths: tuple            # one per sequence (B = len(lengths)); one of them equals T
    tied: bool
    rope_theta: float = 10000.0
    rms_eps: float = 1e-5
    head_dim: int = None      # None: dim // n_heads
    rope_scaling: dict = None  # llama3 parameters, or None
    weighted: bool = False    # non-binary mask weights
    n_layers: int = 2


# original_max_position_embeddings = 64 in case 3 puts the head_dim-16 frequencies (theta 5e5) into all
# three llama3 regimes: wavelength 6.3 < 16 (kept), 32.3 in (16, 64) (smoothed), the rest > 64 (divided by 8),
# with every wavelength far from a regime boundary.
CASES = [
    Case("llama_tied_gqa", "llama", vocab=97, dim=32, n_heads=4, n_kv_heads=2, ffn=86, T=13,
         lengths=(10, 13, 7), tied=True),
    Case("llama_untied_mha", "llama", vocab=128, dim=40, n_heads=4, n_kv_heads=4, ffn=70, T=11,
         lengths=(11, 8, 6), tied=False, weighted=True),
    Case("llama_rope_scaling", "llama", vocab=112, dim=48, n_heads=4, n_kv_heads=2, ffn=74, T=19,
         lengths=(15, 19, 11), tied=True, rope_theta=500000.0, head_dim=16,
         rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                           original_max_position_embeddings=64)),
    Case("qwen2_bias_gqa", "qwen2", vocab=211, dim=48, n_heads=6, n_kv_heads=2, ffn=66, T=17,
         lengths=(12, 9, 17), tied=True, rope_theta=1e6, rms_eps=1e-6, weighted=True),
    Case("qwen2_untied", "qwen2", vocab=300, dim=32, n_heads=4, n_kv_heads=4, ffn=78, T=15,
         lengths=(15, 11, 13), tied=False, rope_theta=1e6, rms_eps=1e-6),
]


# ---------------------------------------------------------------------------------------------- model

def build_model(c: Case):
    rope = dict(c.rope_scaling) if c.rope_scaling else {"rope_type": "default"}
    rope["rope_theta"] = c.rope_theta
    common = dict(vocab_size=c.vocab, hidden_size=c.dim, intermediate_size=c.ffn, num_hidden_layers=c.n_layers,
                  num_attention_heads=c.n_heads, num_key_value_heads=c.n_kv_heads, rms_norm_eps=c.rms_eps,
                  max_position_embeddings=MAX_POS, tie_word_embeddings=c.tied, rope_parameters=rope,
                  use_cache=False, hidden_act="silu")
    if c.arch == "llama":
        config = LlamaConfig(head_dim=c.head_dim, **common)
        cls = LlamaForCausalLM
    else:
        assert c.head_dim is None, "Qwen2Config has no head_dim"
        config = Qwen2Config(**common)
        cls = Qwen2ForCausalLM
    model = cls._from_config(config, attn_implementation="eager", dtype=torch.float32)
    assert model.config._attn_implementation == "eager"
    return model.eval()


def randomize(model, gen):
    """Scaled random init: nonzero biases, RMSNorm weights around 1."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + NORM_STD * r)
            elif name.endswith(".bias"):
                p.copy_(BIAS_STD * r)
            else:
                p.copy_(INIT_STD * r)


def head_dim_of(config):
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def rope_inv_freq_f64(c: Case, head_dim: int) -> np.ndarray:
    """RoPE inverse frequencies in float64: theta^(-2i/D), then, for llama3 scaling, the formula of
    transformers' _compute_llama3_parameters (wavelength < orig/high: kept; > orig/low: / factor;
    in between: (1-s) * f / factor + s * f with s = (orig / wavelength - low) / (high - low))."""
    inv = 1.0 / c.rope_theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    if not c.rope_scaling:
        return inv
    r = c.rope_scaling
    factor, low, high = r["factor"], r["low_freq_factor"], r["high_freq_factor"]
    orig = r["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    smooth = (orig / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * inv / factor + smooth * inv
    return np.where(wavelen < orig / high, inv, np.where(wavelen > orig / low, inv / factor, smoothed))


@contextlib.contextmanager
def exact_float64(model, inv_freq64):
    """Within the block a float64 model computes RMSNorm, the attention softmax and the RoPE angles in float64
    (transformers upcasts them to float32 only, which is a downcast for float64). Same formulas otherwise."""
    modeling = sys.modules[type(model).__module__]
    repeat_kv = modeling.repeat_kv

    def rmsnorm_forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.variance_epsilon))

    def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        k, v = repeat_kv(key, module.num_key_value_groups), repeat_kv(value, module.num_key_value_groups)
        w = torch.matmul(query, k.transpose(2, 3)) * scaling
        if attention_mask is not None:
            w = w + attention_mask
        w = torch.softmax(w, dim=-1)
        return torch.matmul(w, v).transpose(1, 2).contiguous(), w

    def rope_forward(self, x, position_ids):
        freqs = position_ids[..., None].to(torch.float64) * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return ((emb.cos() * self.attention_scaling).to(x.dtype), (emb.sin() * self.attention_scaling).to(x.dtype))

    inv_freq = torch.from_numpy(inv_freq64)
    rotary = model.model.rotary_emb
    assert rotary.attention_scaling == 1.0 and rotary.rope_type in ("default", "llama3")
    norms = [m for m in model.modules() if type(m).__name__.endswith("RMSNorm")]
    assert len(norms) == 2 * model.config.num_hidden_layers + 1
    saved_attention = modeling.eager_attention_forward
    try:
        modeling.eager_attention_forward = eager_attention_forward
        rotary.forward = types.MethodType(rope_forward, rotary)
        for m in norms:
            m.forward = types.MethodType(rmsnorm_forward, m)
        yield
    finally:
        modeling.eager_attention_forward = saved_attention
        del rotary.forward
        for m in norms:
            del m.forward


# ---------------------------------------------------------------------------------------------- batch

def make_batch(c: Case, gen):
    """Right-padded batch. Sequence 0: mask on its last 4 valid targets; sequence 1: on every valid target
    (t >= 1); sequence 2: on its last 3. Weighted cases use 0.5 on sequence 0 and 2.0 on sequence 2."""
    B, T = len(c.lengths), c.T
    assert B == 3 and max(c.lengths) == T and len(set(c.lengths)) == B
    lengths = torch.tensor(c.lengths, dtype=torch.int64)
    valid = torch.arange(T)[None, :] < lengths[:, None]
    tokens = torch.randint(0, c.vocab, (B, T), generator=gen)
    tokens[~valid] = 0
    mask = torch.zeros(B, T, dtype=torch.float64)
    n = c.lengths
    mask[0, n[0] - 4:n[0]] = 0.5 if c.weighted else 1.0
    mask[1, 1:n[1]] = 1.0
    mask[2, n[2] - 3:n[2]] = 2.0 if c.weighted else 1.0
    assert (mask[:, 0] == 0).all() and (mask[~valid] == 0).all()
    return tokens, mask, lengths, valid


# ---------------------------------------------------------------------------------------------- reference

def reference(model, tokens, mask, valid, grad_name=lambda name: name):
    """logits, logprobs, seq_logprob, loss and the grads of the trainable parameters (named grad_name(name)) as
    the `sprec dump` contract defines them, computed in the model's dtype."""
    model.zero_grad(set_to_none=True)
    B, T = tokens.shape
    dtype = next(model.parameters()).dtype
    position_ids = torch.arange(T)[None, :].expand(B, T)
    logits = model(input_ids=tokens, attention_mask=valid.long(), position_ids=position_ids, use_cache=False).logits
    lp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, tokens[:, 1:, None]).squeeze(-1)
    logprobs = torch.zeros(B, T, dtype=dtype)
    logprobs[:, 1:] = torch.where(valid[:, 1:], lp, 0.0)
    m = mask.to(dtype)
    seq_logprob = (m * logprobs).sum(1)
    loss = -seq_logprob.sum() / m.sum()
    loss.backward()
    out = dict(logits=torch.where(valid[..., None], logits, 0.0), logprobs=logprobs, seq_logprob=seq_logprob,
               loss=loss)
    out = {k: v.detach() for k, v in out.items()}
    grads = {grad_name(name): p.grad.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    return out, grads


def rel_err(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def max_rel(out_a, grads_a, out_b, grads_b):
    """Largest relative error over outputs and over grads."""
    o = max(rel_err(out_a[k], out_b[k]) for k in out_b)
    g = max(rel_err(grads_a[k], grads_b[k]) for k in grads_b)
    return o, g


# ---------------------------------------------------------------------------------------------- files

def write_model(path, c: Case, model):
    cfg = model.config
    params = dict(model.named_parameters())
    assert ("lm_head.weight" in params) == (not c.tied)
    r = dict(ROPE_DEFAULTS, **(c.rope_scaling or {}))
    qkv_bias = "model.layers.0.self_attn.q_proj.bias" in params
    assert qkv_bias == (c.arch == "qwen2")
    with h5py.File(path, "w", libver=LIBVER) as f:
        f.attrs["format"] = "sprec-checkpoint"
        f.attrs["version"] = np.int64(1)
        g = f.create_group("config")
        ints = dict(vocab_size=cfg.vocab_size, dim=cfg.hidden_size, n_layers=cfg.num_hidden_layers,
                    n_heads=cfg.num_attention_heads, n_kv_heads=cfg.num_key_value_heads, head_dim=head_dim_of(cfg),
                    ffn_dim=cfg.intermediate_size, max_seq_len=cfg.max_position_embeddings,
                    tie_embeddings=int(c.tied), qkv_bias=int(qkv_bias),
                    rope_original_max_pos=r["original_max_position_embeddings"])
        floats = dict(rope_theta=c.rope_theta, rms_eps=cfg.rms_norm_eps, rope_factor=r["factor"],
                      rope_low_freq_factor=r["low_freq_factor"], rope_high_freq_factor=r["high_freq_factor"])
        for k, v in ints.items():
            g.attrs[k] = np.int64(v)
        for k, v in floats.items():
            g.attrs[k] = np.float64(v)
        g.attrs["rope_scaling"] = "llama3" if c.rope_scaling else "none"
        p = f.create_group("params")
        for name, t in params.items():
            p.create_dataset(name, data=t.detach().to(torch.float32).numpy(), fletcher32=True, chunks=True)


def write_batch(path, tokens, mask, lengths):
    with h5py.File(path, "w", libver=LIBVER) as f:
        f.create_dataset("tokens", data=tokens.numpy().astype(np.int32))
        f.create_dataset("mask", data=mask.numpy().astype(np.float32))
        f.create_dataset("lengths", data=lengths.numpy().astype(np.int32))


def write_expected(path, case, generator, versions, out, grads):
    """reference()'s outputs and grads as float32; attributes case, generator, then versions (name -> version)."""
    with h5py.File(path, "w", libver=LIBVER) as f:
        f.attrs["case"] = case
        f.attrs["generator"] = generator
        for k, v in versions.items():
            f.attrs[k] = str(v)
        for k in ("logits", "logprobs", "seq_logprob"):
            f.create_dataset(k, data=out[k].numpy().astype(np.float32))
        f.create_dataset("loss", data=np.float32(out["loss"].item()))      # scalar, shape ()
        g = f.create_group("grad")
        for name, t in grads.items():
            g.create_dataset(name, data=t.numpy().astype(np.float32))


# ---------------------------------------------------------------------------------------------- main

def make_case(index, c: Case):
    gen = torch.Generator().manual_seed(SEED + index)
    model32 = build_model(c)
    randomize(model32, gen)
    tokens, mask, lengths, valid = make_batch(c, gen)
    D = head_dim_of(model32.config)
    assert D == (c.head_dim or c.dim // c.n_heads)

    # RoPE: transformers' float32 inv_freq against the float64 formula used for the reference.
    inv64 = rope_inv_freq_f64(c, D)
    hf_inv = model32.model.rotary_emb.inv_freq.double().numpy()
    rope_err = np.max(np.abs(hf_inv - inv64) / inv64)
    assert rope_err < 1e-6, f"inv_freq mismatch {rope_err}"

    model64 = copy.deepcopy(model32).double()
    with exact_float64(model64, inv64):
        out, grads = reference(model64, tokens, mask, valid)
        # Padding is ignored: other tokens at padded positions change nothing at valid positions.
        tokens2 = torch.where(valid, tokens, torch.randint(0, c.vocab, tokens.shape, generator=gen))
        out2, grads2 = reference(model64, tokens2, mask, valid)
    pad_diff = max((out2[k] - out[k]).abs().max().item() for k in out)
    pad_diff = max(pad_diff, max((grads2[k] - grads[k]).abs().max().item() for k in grads))
    assert pad_diff < 1e-12, f"padded tokens leak into valid outputs: {pad_diff}"

    out32, grads32 = reference(model32, tokens, mask, valid)
    o32, g32 = max_rel(out32, grads32, out, grads)
    out_hf64, grads_hf64 = reference(model64, tokens, mask, valid)    # transformers' own float64 path
    o_hf, g_hf = max_rel(out_hf64, grads_hf64, out, grads)
    assert max(o32, g32) < 1e-5, "float32 and float64 disagree"

    folder = os.path.join(OUT_DIR, c.name)
    os.makedirs(folder, exist_ok=True)
    write_model(os.path.join(folder, "model.h5"), c, model32)
    write_batch(os.path.join(folder, "batch.h5"), tokens, mask, lengths)
    write_expected(os.path.join(folder, "expected.h5"), c.name,
                   "tests/ref/make_fixtures.py (float64 reference, stored as float32)",
                   dict(torch_version=torch.__version__, transformers_version=transformers.__version__), out, grads)

    n_params = sum(p.numel() for p in model32.parameters())
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    print(f"{c.name}: {c.arch} V={c.vocab} C={c.dim} L={c.n_layers} H={c.n_heads} KV={c.n_kv_heads} D={D} "
          f"F={c.ffn} tied={int(c.tied)} B={len(c.lengths)} T={c.T} lengths={list(c.lengths)} "
          f"params={n_params} files={size / 1024:.0f} KiB")
    print(f"  loss={out['loss'].item():.6f} seq_logprob={[round(x, 4) for x in out['seq_logprob'].tolist()]} "
          f"logits std={out['logits'][valid].std().item():.3f}")
    print(f"  float32 vs float64 rel err: outputs {o32:.2e}, grads {g32:.2e}; "
          f"transformers' float64 path vs exact float64: outputs {o_hf:.2e}, grads {g_hf:.2e}; "
          f"padding leak {pad_diff:.1e}; inv_freq f32 vs f64 {rope_err:.1e}")
    if c.rope_scaling:
        np.set_printoptions(precision=10, linewidth=140)
        print(f"  inv_freq unscaled        {1.0 / c.rope_theta ** (np.arange(0, D, 2) / D)}")
        print(f"  inv_freq llama3 (f64)    {inv64}")
        print(f"  inv_freq transformers    {hf_inv}")
    return size


def main():
    torch.manual_seed(SEED)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, h5py {h5py.__version__}, "
          f"numpy {np.__version__}")
    total = sum(make_case(i, c) for i, c in enumerate(CASES))
    print(f"wrote {len(CASES)} cases to {OUT_DIR}: {total / 1024:.0f} KiB in all")


if __name__ == "__main__":
    main()
