#!/usr/bin/env python3
"""GGUF fixtures for the files people download (tests/unit/test_import.c, issue 17). Writes tests/ref/import/:

  quants.gguf          one tensor per ggml block type sprec dequantises (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K,
                       Q4_K, Q5_K, Q6_K): random blocks, the scale fields of the first blocks set to extremes (0, -0,
                       the largest and smallest float16, subnormals, negatives, +-inf, NaN), the others random float16
                       bit patterns of any exponent
  quants_expected.h5   /<TYPE>: gguf.quants.dequantize of each tensor (the reference), float32 [rows, cols]
  llama3_q4km.gguf     a 2-layer Llama-3-style model as llama.cpp's Q4_K_M writes it: Q4_K matrices, Q6_K for
                       attn_v / ffn_down of layer 0 and the tied token_embd, Q5_K for attn_v / ffn_down of layer 1,
                       F32 norms, rope_freqs.weight from the llama3 rope (factor 32, low/high 1/4, original 64,
                       theta 5e5) computed as convert_hf_to_gguf.py does, rope.scaling.factor and
                       original_context_length, a byte-level BPE tokenizer with bos/eos/pad ids and a chat template
  llama3_q4km/hf/config.json   the matching transformers config (what export must reproduce)
  llama3_q4km/batch.h5, expected.h5   tokens / mask / lengths and transformers' float32 logits for the model
                       holding gguf.quants' dequantised weights (Q/K un-permuted): the rope_freqs logits reference
  llama3_q4km/generate.json    prompt ids and transformers' greedy generate() output, which stops at eos_token_id
                       (the 8th new token, one not produced before)
  rope_meta.gguf       metadata and rope_freqs only, with rope.scaling.factor 8 disagreeing with the factors (32):
                       import warns naming the largest difference
  rope_bad.gguf        rope_freqs that follow no llama3 curve: import runs them, export refuses
  iq.gguf              tensors of type IQ4_XS and IQ2_XXS: import refuses naming them
  rope_llama31.gguf, rope_llama32.gguf   metadata and rope_freqs only, as llama.cpp writes Llama 3.1 8B (head_dim
                       128, factor 8) and Llama 3.2 1B/3B (head_dim 64, factor 32): no rope.scaling keys; export
                       must write their config.json's llama3 rope (original 8192, low/high 1/4)
  rope_custom.gguf     a 1-layer F32 Llama whose rope_freqs follow no llama3 curve (random factors in [0.5, 8]), with
                       rope.scaling.factor 8 / original_context_length 64 (import warns and runs the file's factors)
  rope_custom/batch.h5, expected.h5   tokens / mask / lengths and the float32 logits of transformers' Llama whose
                       rotary_emb.inv_freq is divided by those factors (the factors used as given, as llama.cpp does)

  python3 tests/ref/make_gguf_fixtures.py           # regenerate (torch, transformers, gguf, h5py, tokenizers)
  python3 tests/ref/make_gguf_fixtures.py --check   # after `make`: import -> export -> transformers (logits, generate);
                                                    # weights vs transformers' GGUF loader (needs accelerate)
"""
import json
import math
import os
import sys
import tempfile

import h5py
import numpy as np
import torch
import gguf
from gguf.quants import dequantize
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import batch_logits as bl  # noqa: E402
from batch_logits import LIBVER  # noqa: E402
from make_import_fixtures import train_tokenizer, permute, reverse_permute  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "import")
SEED = 1717
Q = gguf.GGMLQuantizationType

# byte offsets of the float16 scale fields in each block (everything else is quantised values and packed scales)
SCALE_FIELDS = {Q.Q4_0: [0], Q.Q4_1: [0, 2], Q.Q5_0: [0], Q.Q5_1: [0, 2], Q.Q8_0: [0], Q.Q2_K: [80, 82],
                Q.Q3_K: [108], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208]}
EXTREMES = np.array([0.0, -0.0, 65504.0, -65504.0, 6.1035156e-05, 5.9604645e-08, -5.9604645e-08, 1.0, np.inf,
                     -np.inf, np.nan], np.float16)


def random_blocks(rng, qtype, n_blocks, extremes=True):
    """Random bytes; scale fields: the extremes in the first blocks, then random finite float16 bit patterns."""
    size = gguf.GGML_QUANT_SIZES[qtype][1]
    b = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
    for k, off in enumerate(SCALE_FIELDS[qtype]):
        bits = rng.integers(0, 0x10000, n_blocks, dtype=np.uint16)
        bits = np.where((bits & 0x7C00) == 0x7C00, bits & 0xBFFF, bits)   # no inf/NaN among the random ones
        if extremes:
            e = EXTREMES.view(np.uint16)
            bits[:len(e)] = np.roll(e, k)   # d and dmin get different extremes in the same block
        b[:, off:off + 2] = bits.view(np.uint8).reshape(n_blocks, 2)
    return b


def make_quants():
    rng = np.random.default_rng(SEED)
    path = os.path.join(OUT, "quants.gguf")
    w = gguf.GGUFWriter(path, "llama")
    expected = {}
    for qt in SCALE_FIELDS:
        block, size = gguf.GGML_QUANT_SIZES[qt]
        rows, per_row = 4, max(1, 1024 // block)   # 4 rows of 1024 values (K types: 4 blocks a row)
        b = random_blocks(rng, qt, rows * per_row).reshape(rows, per_row * size)
        w.add_tensor(qt.name, b, raw_shape=b.shape, raw_dtype=qt)
        with np.errstate(all="ignore"):
            expected[qt.name] = np.asarray(dequantize(b, qt), np.float32).reshape(rows, per_row * block)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with h5py.File(os.path.join(OUT, "quants_expected.h5"), "w", libver=LIBVER) as f:
        for k, v in expected.items():
            f[k] = v
    print(f"quants.gguf: {os.path.getsize(path)} bytes; types {list(expected)}; non-finite reference values: "
          f"{sum(int((~np.isfinite(v)).sum()) for v in expected.values())}")


# ------------------------------------------------------------------------------------------ Llama 3 Q4_K_M

C, NH, NKV, D, F, LAYERS, CTX = 256, 4, 2, 64, 512, 2, 256
ROPE = dict(rope_type="llama3", rope_theta=500000.0, factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
            original_max_position_embeddings=64)
CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def rope_factors(rope, dim):
    """convert_hf_to_gguf.py's LlamaModel rope_freqs for rope_type llama3 (float32 freqs, as it computes them)."""
    freqs = 1.0 / (rope["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    old = rope["original_max_position_embeddings"]
    lo_w, hi_w = old / rope["low_freq_factor"], old / rope["high_freq_factor"]
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < hi_w:
            out.append(1)
        elif wavelen > lo_w:
            out.append(rope["factor"])
        else:
            smooth = (old / wavelen - rope["low_freq_factor"]) / (rope["high_freq_factor"] - rope["low_freq_factor"])
            out.append(1 / ((1 - smooth) / rope["factor"] + smooth))
    return np.array([float(x) for x in out], np.float32)


def scaled_kquant(rng, qtype, rows, cols, std=0.1):
    """Random K-quant blocks whose dequantised values have about `std` (scales d, dmin set so)."""
    size = gguf.GGML_QUANT_SIZES[qtype][1]
    n = rows * cols // 256
    b = random_blocks(rng, qtype, n, extremes=False)
    if qtype == Q.Q6_K:   # int8 sub-block scales of similar size, so no row (token) dominates the tied head
        b[:, 192:208] = (rng.integers(16, 48, (n, 16)) * rng.choice([-1, 1], (n, 16))).astype(np.int8).view(np.uint8)
    # d = 1 and, for Q4_K / Q5_K, dmin = the mean quant (7.5 / 15.5): values of mean ~0, so no matrix adds the same
    # direction to every token (which would make the random model predict one token whatever the input)
    base = [1.0, {Q.Q4_K: 7.5, Q.Q5_K: 15.5}.get(qtype, 1.0)]
    for off, v in zip(SCALE_FIELDS[qtype], base):
        b[:, off:off + 2] = np.full(n, v, np.float16).view(np.uint8).reshape(n, 2)
    s = float(np.asarray(dequantize(b, qtype)).std())
    jitter = rng.uniform(0.95, 1.05, n)
    for off, v in zip(SCALE_FIELDS[qtype], base):
        b[:, off:off + 2] = (v * std / s * jitter).astype(np.float16).view(np.uint8).reshape(n, 2)
    return b.reshape(rows, cols // 256 * size)


def write_llama_meta(w, V, ctx=CTX, rope_factor=None, orig=None, head_dim=D):
    for k, v in dict(block_count=LAYERS, context_length=ctx, embedding_length=C, feed_forward_length=F,
                     head_count=NH, head_count_kv=NKV, vocab_size=V, rope_dimension_count=head_dim).items():
        getattr(w, "add_" + k)(v)
    w.add_rope_freq_base(ROPE["rope_theta"])
    w.add_layer_norm_rms_eps(1e-5)
    if rope_factor is not None:
        w.add_rope_scaling_factor(rope_factor)
        w.add_rope_scaling_orig_ctx_len(orig)


def make_llama3(tok):
    rng = np.random.default_rng(SEED + 1)
    V = len(tok)
    spec = [("token_embd.weight", "model.embed_tokens.weight", V, C, Q.Q6_K)]
    for i in range(LAYERS):
        big = Q.Q6_K if i == 0 else Q.Q5_K   # llama.cpp's Q4_K_M: more bits for some attn_v / ffn_down
        p, h = f"blk.{i}.", f"model.layers.{i}."
        spec += [(p + "attn_norm.weight", h + "input_layernorm.weight", None, C, Q.F32),
                 (p + "attn_q.weight", h + "self_attn.q_proj.weight", NH * D, C, Q.Q4_K),
                 (p + "attn_k.weight", h + "self_attn.k_proj.weight", NKV * D, C, Q.Q4_K),
                 (p + "attn_v.weight", h + "self_attn.v_proj.weight", NKV * D, C, big),
                 (p + "attn_output.weight", h + "self_attn.o_proj.weight", C, NH * D, Q.Q4_K),
                 (p + "ffn_norm.weight", h + "post_attention_layernorm.weight", None, C, Q.F32),
                 (p + "ffn_gate.weight", h + "mlp.gate_proj.weight", F, C, Q.Q4_K),
                 (p + "ffn_up.weight", h + "mlp.up_proj.weight", F, C, Q.Q4_K),
                 (p + "ffn_down.weight", h + "mlp.down_proj.weight", C, F, big)]
    spec.append(("output_norm.weight", "model.norm.weight", None, C, Q.F32))
    stored, state = {}, {}
    for gname, hname, rows, cols, qt in spec:
        if qt == Q.F32:
            x = (1 + 0.1 * rng.standard_normal(cols)).astype(np.float32)
            stored[gname], state[hname] = (x, qt), torch.from_numpy(x.copy())
            continue
        b = scaled_kquant(rng, qt, rows, cols, std=0.02 if gname.startswith("token_embd") else 0.5)
        deq = np.asarray(dequantize(b, qt), np.float32).reshape(rows, cols)
        n_head = NH if "attn_q" in gname else NKV if "attn_k" in gname else None
        if n_head:   # the GGUF holds llama.cpp's permuted rows; transformers wants them back
            deq = reverse_permute(deq, n_head)
            assert np.array_equal(permute(deq, n_head), np.asarray(dequantize(b, qt)).reshape(rows, cols))
        stored[gname], state[hname] = (b, qt), torch.from_numpy(deq.copy())

    cfg = LlamaConfig(vocab_size=V, hidden_size=C, intermediate_size=F, num_hidden_layers=LAYERS,
                      num_attention_heads=NH, num_key_value_heads=NKV, head_dim=D, max_position_embeddings=CTX,
                      rms_norm_eps=1e-5, hidden_act="silu", tie_word_embeddings=True, rope_parameters=dict(ROPE),
                      bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM._from_config(cfg, attn_implementation="eager", dtype=torch.float32).eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    model.tie_weights()

    # eos: the 8th new token of greedy decoding, one it has not produced before (of a few prompts, the one with the
    # longest run of fresh tokens), so generate() must stop there and not at the 16-token limit
    best = None
    for text in ["Toy Story (1995)", "Heat (1995)", "Jumanji (1995)", "Sabrina (1995)", "Casino (1995)", "Babe"]:
        prompt = tok(text)["input_ids"]
        with torch.no_grad():
            free = model.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False, eos_token_id=None,
                                  pad_token_id=tok.pad_token_id)[0, len(prompt):].tolist()
        k = next((i for i in range(len(free)) if free[i] in free[:i]), len(free)) - 1   # last fresh token
        if best is None or k > best[2]:
            best = (prompt, free, k)
    prompt, free, k = best
    k = min(k, 7)   # well before the 16-token limit
    eos = free[k]
    model.generation_config.eos_token_id = eos
    cfg.eos_token_id = eos
    with torch.no_grad():
        stopped = model.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False, eos_token_id=eos,
                                 pad_token_id=tok.pad_token_id)[0, len(prompt):].tolist()
    assert stopped == free[:k + 1], (stopped, free)

    folder = os.path.join(OUT, "llama3_q4km")
    os.makedirs(os.path.join(folder, "hf"), exist_ok=True)
    cfg.save_pretrained(os.path.join(folder, "hf"))
    with open(os.path.join(folder, "generate.json"), "w") as f:
        json.dump(dict(prompt=prompt, generated=stopped, eos=eos, max_new_tokens=16), f)

    # batch: right-padded titles, one long enough for the scaled low frequencies to turn
    tokens, mask, lengths = bl.title_batch(tok, [
        "Toy Story (1995)", "Heat (1995) and 12 Angry Men",
        "Jumanji (1995), Grumpier Old Men (1995), Waiting to Exhale (1995), Father of the Bride Part II (1995)"])
    logits = bl.masked_logits(model, tokens, lengths)
    # how much the rope scaling matters here: the same weights with plain rope
    plain = LlamaForCausalLM._from_config(LlamaConfig(**{**cfg.to_dict(), "rope_parameters": dict(
        rope_type="default", rope_theta=ROPE["rope_theta"])}), attn_implementation="eager", dtype=torch.float32).eval()
    plain.load_state_dict(model.state_dict())
    ref_plain = bl.masked_logits(plain, tokens, lengths)
    bl.write(folder, tokens, mask, lengths, logits)

    # the GGUF, as llama.cpp's converter + llama-quantize lay it out
    path = os.path.join(OUT, "llama3_q4km.gguf")
    w = gguf.GGUFWriter(path, "llama")
    write_llama_meta(w, V, rope_factor=ROPE["factor"], orig=ROPE["original_max_position_embeddings"])
    add_tokenizer(w, tok, eos)
    w.add_tensor("rope_freqs.weight", rope_factors(ROPE, D))
    for gname, (x, qt) in stored.items():
        if qt == Q.F32:
            w.add_tensor(gname, x)
        else:
            w.add_tensor(gname, x, raw_shape=x.shape, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    rel_plain = bl.rel_err(ref_plain, logits)
    print(f"llama3_q4km.gguf: {os.path.getsize(path)} bytes, types {sorted({q.name for _, q in stored.values()})}; "
          f"eos {eos} after {k + 1} new tokens; rope_freqs {rope_factors(ROPE, D).round(3).tolist()}; "
          f"logits without the rope scaling differ by {rel_plain:.2e} relative")


def add_tokenizer(w, tok, eos):
    vocab = json.loads(tok.backend_tokenizer.to_str())["model"]
    toks = sorted(vocab["vocab"], key=vocab["vocab"].get)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(toks)
    w.add_token_types([3 if t.startswith("<|") else 1 for t in toks])
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in vocab["merges"]])
    w.add_bos_token_id(tok.bos_token_id)
    w.add_eos_token_id(eos)
    w.add_pad_token_id(tok.pad_token_id)
    w.add_add_bos_token(True)
    w.add_chat_template(CHAT)


def make_small(name, factors, md_factor=None, iq=False, head_dim=D):
    """Metadata, token_embd and rope_freqs (or IQ tensors) only: enough for the config (gguf_model_config) and for
    import to decide, then stop."""
    rng = np.random.default_rng(SEED + 2)
    w = gguf.GGUFWriter(os.path.join(OUT, name), "llama")
    write_llama_meta(w, 8, rope_factor=md_factor, orig=ROPE["original_max_position_embeddings"], head_dim=head_dim)
    w.add_tensor("token_embd.weight", (0.1 * rng.standard_normal((8, C))).astype(np.float32))
    if factors is not None:
        w.add_tensor("rope_freqs.weight", factors)
    if iq:
        for nm, qt in (("blk.0.attn_q.weight", Q.IQ4_XS), ("blk.0.attn_k.weight", Q.IQ2_XXS),
                       ("blk.0.attn_v.weight", Q.IQ4_XS)):
            b = rng.integers(0, 256, (1, gguf.GGML_QUANT_SIZES[qt][1]), dtype=np.uint8)
            w.add_tensor(nm, b, raw_shape=b.shape, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# ------------------------------------------------------------------------------------------ per-frequency factors

def make_rope_custom(tok):
    """A small F32 Llama whose rope_freqs.weight is no llama3 curve; the oracle divides transformers' inv_freq by
    the factors (float32), which is what running the factors as given means."""
    rng = np.random.default_rng(SEED + 3)
    V, c, nh, nkv, d, f, theta = len(tok), 64, 2, 1, 32, 128, 10000.0
    factors = rng.uniform(0.5, 8.0, d // 2).astype(np.float32)
    cfg = LlamaConfig(vocab_size=V, hidden_size=c, intermediate_size=f, num_hidden_layers=1, num_attention_heads=nh,
                      num_key_value_heads=nkv, head_dim=d, max_position_embeddings=CTX, rms_norm_eps=1e-5,
                      hidden_act="silu", tie_word_embeddings=True,
                      rope_parameters=dict(rope_type="default", rope_theta=theta))
    model = LlamaForCausalLM._from_config(cfg, attn_implementation="eager", dtype=torch.float32).eval()
    state = {}
    for name, p in model.state_dict().items():
        if name == "lm_head.weight":
            continue
        std = 0.0 if "norm" in name else 0.3 if "embed" in name else 1.5 / math.sqrt(p.shape[1])
        x = (1 + 0.1 * rng.standard_normal(p.shape)) if "norm" in name else std * rng.standard_normal(p.shape)
        state[name] = torch.from_numpy(x.astype(np.float32))
    model.load_state_dict(state, strict=False)
    model.tie_weights()
    rot = model.model.rotary_emb
    plain_inv = rot.inv_freq.clone()
    rot.inv_freq = plain_inv / torch.from_numpy(factors)   # float32 division, as sprec's rope tables

    tokens, mask, lengths = bl.title_batch(tok, [
        "Toy Story (1995)",
        "Jumanji (1995), Grumpier Old Men (1995), Waiting to Exhale (1995), Father of the Bride Part II (1995)"])
    logits = bl.masked_logits(model, tokens, lengths)
    rot.inv_freq = plain_inv
    rel_plain = bl.rel_err(bl.masked_logits(model, tokens, lengths), logits)

    folder = os.path.join(OUT, "rope_custom")
    os.makedirs(folder, exist_ok=True)
    bl.write(folder, tokens, mask, lengths, logits)

    path = os.path.join(OUT, "rope_custom.gguf")
    w = gguf.GGUFWriter(path, "llama")
    for k, v in dict(block_count=1, context_length=CTX, embedding_length=c, feed_forward_length=f, head_count=nh,
                     head_count_kv=nkv, vocab_size=V, rope_dimension_count=d, key_length=d, value_length=d).items():
        getattr(w, "add_" + k)(v)
    w.add_rope_freq_base(theta)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_scaling_factor(8.0)
    w.add_rope_scaling_orig_ctx_len(64)
    add_tokenizer(w, tok, tok.eos_token_id if tok.eos_token_id is not None else 2)
    w.add_tensor("rope_freqs.weight", factors)
    names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for name, x in state.items():
        x = x.numpy()
        if name == "model.embed_tokens.weight":
            gname = "token_embd.weight"
        elif name == "model.norm.weight":
            gname = "output_norm.weight"
        else:
            part = name.split(".", 3)[3].rsplit(".", 1)[0]
            gname = f"blk.0.{names[part]}.weight"
            if part in ("self_attn.q_proj", "self_attn.k_proj"):   # llama.cpp's interleaved rows
                x = permute(x, nh if part == "self_attn.q_proj" else nkv)
        w.add_tensor(gname, np.ascontiguousarray(x))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"rope_custom.gguf: {os.path.getsize(path)} bytes; factors {factors.round(3).tolist()}; logits with the "
          f"plain rope differ by {rel_plain:.2e} relative")


# ------------------------------------------------------------------------------------------ check (after make)

def check():
    """import -> export -> transformers: logits vs expected.h5 and generate() stopping where sprec generate stops."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    folder = os.path.join(OUT, "llama3_q4km")
    g = json.load(open(os.path.join(folder, "generate.json")))
    tokens, lengths, ref = bl.read(folder)
    with tempfile.TemporaryDirectory() as tmp:
        bl.sprec("import", f"{OUT}/llama3_q4km.gguf", "-o", f"{tmp}/m.h5")
        bl.sprec("export", f"{tmp}/m.h5", "-o", f"{tmp}/exp")
        ours = bl.sprec("generate", "--model", f"{tmp}/m.h5", "--prompt-ids", " ".join(map(str, g["prompt"])), "--ids",
                        "--max-new-tokens", str(g["max_new_tokens"]), capture=True)
        model = AutoModelForCausalLM.from_pretrained(f"{tmp}/exp", dtype=torch.float32).eval()
        tok = AutoTokenizer.from_pretrained(f"{tmp}/exp")
        rel = bl.rel_err(bl.masked_logits(model, tokens, lengths), ref)
        with torch.no_grad():
            gen = model.generate(torch.tensor([g["prompt"]]), max_new_tokens=g["max_new_tokens"],
                                 do_sample=False)[0, len(g["prompt"]):].tolist()
        exported = json.load(open(f"{tmp}/exp/config.json"))
        print(f"exported llama3_q4km: rope {exported['rope_parameters']}; logits rel err vs transformers on the "
              f"source config {rel:.2e}")
        print(f"generate: transformers on the export {gen}; sprec generate {ours.split()}; reference {g['generated']};"
              f" eos {model.generation_config.eos_token_id} pad {model.generation_config.pad_token_id} "
              f"bos {model.generation_config.bos_token_id}; chat template kept: {tok.chat_template is not None}")
        # a second dequantiser: transformers' own GGUF loader (needs accelerate) on the same file
        hf = AutoModelForCausalLM.from_pretrained(OUT, gguf_file="llama3_q4km.gguf", dtype=torch.float32)
        with h5py.File(f"{tmp}/m.h5") as f:
            ours_w = {k: f["params"][k][()] for k in f["params"]}
        theirs = {k: v.numpy() for k, v in hf.state_dict().items()}
        diff = sum(int((v.view(np.uint32) != theirs[k].view(np.uint32)).sum()) for k, v in ours_w.items())
        print(f"weights vs transformers' GGUF loader: {diff} of {sum(v.size for v in ours_w.values())} values differ; "
              f"its rope: {hf.config.rope_parameters} (it ignores rope_freqs.weight)")


def main():
    if "--check" in sys.argv:
        check()
        return
    torch.manual_seed(SEED)
    os.makedirs(OUT, exist_ok=True)
    make_quants()
    make_llama3(train_tokenizer())
    f32 = rope_factors(ROPE, D)
    make_small("rope_meta.gguf", f32, md_factor=8.0)
    bad = f32.copy()
    bad[1::3] = 2.5   # factors no single llama3 curve gives
    make_small("rope_bad.gguf", bad)
    make_small("iq.gguf", None, iq=True)
    # the real ones, as llama.cpp writes them (rope_freqs, no rope.scaling keys): Llama 3.1 8B and Llama 3.2 1B/3B
    l31 = dict(rope_theta=500000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
               original_max_position_embeddings=8192)
    make_small("rope_llama31.gguf", rope_factors(l31, 128), head_dim=128)
    make_small("rope_llama32.gguf", rope_factors({**l31, "factor": 32.0}, 64))
    for n in ("rope_meta.gguf", "rope_bad.gguf", "iq.gguf", "rope_llama31.gguf", "rope_llama32.gguf"):
        print(f"{n}: {os.path.getsize(os.path.join(OUT, n))} bytes")
    make_rope_custom(train_tokenizer())


if __name__ == "__main__":
    main()
