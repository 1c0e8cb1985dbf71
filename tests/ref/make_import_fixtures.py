#!/usr/bin/env python3
"""Fixtures for `sprec import` / `sprec export` (tests/unit/test_import.c). Writes tests/ref/import/:

  <case>/hf/          a tiny random model saved with save_pretrained (config.json, model.safetensors or shards +
                      model.safetensors.index.json, tokenizer.json, tokenizer_config.json)
  <case>/batch.h5     tokens int32 [B,T], mask float32 [B,T], lengths int32 [B]
  <case>/expected.h5  logits float32 [B,T,V] from transformers in float32 on the weights as stored (bf16 sources:
                      upcast to float32 first, as the import does); 0 at padded positions
  tiny.gguf           a one-layer llama GGUF (written with the `gguf` package) whose tensors use Q8_0, Q4_K, Q6_K,
                      Q4_0, Q4_1, F16, BF16 and F32, plus a byte-level BPE tokenizer in tokenizer.ggml.*
  gguf_expected.h5    /raw/<gguf name>: gguf.quants.dequantize of each tensor, float32, shape [ne1, ne0];
                      /hf/<HF name> (q_proj, k_proj only): the same after undoing llama.cpp's Q/K row
                      permutation (transformers' reverse_permute), i.e. what `sprec import` must store;
                      /meta/a, /meta/b: the tensors of meta.gguf
  spm.gguf            a tiny F32 llama with a SentencePiece (tokenizer.ggml.model "llama") tokenizer, no merges;
  spm_expected.json   transformers' tokenizer for spm.gguf: the merges it derives and ids of a few strings
  meta.gguf           every metadata value type (arrays, nested arrays), general.alignment = 64, two tensors

  python3 tests/ref/make_import_fixtures.py                 # regenerate (torch, transformers, safetensors, gguf, h5py)
  python3 tests/ref/make_import_fixtures.py --check-export  # after `make`: import -> export -> transformers logits

K-quant blocks cannot be made by gguf.quants (no Q4_K/Q6_K quantiser in Python), so their blocks are random bytes
with sane float16 scales; the dequantisation under test is the same either way.
"""
import json
import os
import shutil
import sys
import tempfile

import h5py
import numpy as np
import torch
import gguf
from gguf.quants import dequantize, quantize
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
from transformers import (LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM,
                          PreTrainedTokenizerFast)

import batch_logits as bl
from batch_logits import LIBVER

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "import")
SEED = 4321


def movielens_titles():
    """The titles of MovieLens-small's movies.csv, in file order."""
    with open(os.path.join(ROOT, "..", "shared", "data", "movielens-small", "movies.csv"), encoding="utf-8") as f:
        return [line.split(",", 1)[1].rsplit(",", 1)[0].strip('"') for line in f.readlines()[1:]]


def train_tokenizer(vocab_size=300):
    """A tiny byte-level BPE (SmolLM2-style pre-tokenizer: single digits, then GPT-2 regex) on MovieLens titles."""
    titles = movielens_titles()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(titles, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   unk_token="<|endoftext|>", pad_token="<|endoftext|>")


CASES = [  # name, arch, dtype, shard size, config overrides
    ("llama_fp32", "llama", torch.float32, None, dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                                                       intermediate_size=72, tie_word_embeddings=True)),
    ("qwen2_sharded", "qwen2", torch.float32, "20KB", dict(hidden_size=48, num_attention_heads=6, num_key_value_heads=2,
                                                           intermediate_size=64, tie_word_embeddings=False)),
    ("llama_bf16_rope", "llama", torch.bfloat16, None, dict(
        hidden_size=48, num_attention_heads=4, num_key_value_heads=2, head_dim=16, intermediate_size=64,
        tie_word_embeddings=False,
        rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
                             high_freq_factor=4.0, original_max_position_embeddings=64))),
]


def make_case(i, name, arch, dtype, shard, over, tok):
    gen = torch.Generator().manual_seed(SEED + i)
    V = len(tok)
    common = dict(vocab_size=V, num_hidden_layers=2, max_position_embeddings=128, rms_norm_eps=1e-5,
                  hidden_act="silu", bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    if "rope_parameters" not in over:
        common["rope_parameters"] = dict(rope_type="default", rope_theta=10000.0 if arch == "llama" else 1e6)
    common.update(over)
    cfg, cls = (LlamaConfig, LlamaForCausalLM) if arch == "llama" else (Qwen2Config, Qwen2ForCausalLM)
    model = cls._from_config(cfg(**common), attn_implementation="eager", dtype=torch.float32).eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            r = torch.randn(p.shape, generator=gen)
            p.copy_(1 + 0.1 * r if pname.endswith("norm.weight") else 0.1 * r if pname.endswith("bias") else 0.15 * r)
    model = model.to(dtype)
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    hf = os.path.join(folder, "hf")
    model.save_pretrained(hf, **({"max_shard_size": shard} if shard else {}))
    tok.save_pretrained(hf)
    for extra in ("generation_config.json", "special_tokens_map.json", "chat_template.jinja"):
        if os.path.exists(os.path.join(hf, extra)):
            os.remove(os.path.join(hf, extra))
    # batch: three right-padded tokenized titles
    tokens, mask, lengths = bl.title_batch(tok, ["Toy Story (1995)", "Heat (1995) and 12 Angry Men", "Jumanji"])
    # bf16 source: transformers on the same weights upcast to fp32, in a fresh fp32 model (model.float() would
    # keep the RoPE inv_freq buffer rounded to bf16 by model.to(bfloat16))
    model32 = cls._from_config(cfg(**common), attn_implementation="eager", dtype=torch.float32).eval()
    model32.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
    logits = bl.masked_logits(model32, tokens, lengths)
    bl.write(folder, tokens, mask, lengths, logits)
    files = sorted(os.listdir(hf))
    print(f"{name}: {arch} {dtype} V={V} files={files} "
          f"logits std {logits[bl.valid_positions(tokens, lengths).numpy()].std():.3f}")


# ------------------------------------------------------------------------------------------------- GGUF

def permute(w, n_head):
    """llama.cpp's convert_hf_to_gguf.py LlamaModel.permute (HF rotate-half rows -> interleaved pairs)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def reverse_permute(w, n_head):
    """transformers' integrations/ggml.py reverse_permute (what `sprec import` must undo)."""
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, dim, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)


def random_kquant_blocks(rng, qtype, n_blocks):
    """Random Q4_K / Q6_K blocks with small finite float16 scales."""
    size = gguf.GGML_QUANT_SIZES[qtype][1]
    b = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
    if qtype == gguf.GGMLQuantizationType.Q4_K:   # d, dmin first
        b[:, 0:2] = np.float16(rng.uniform(0.001, 0.01, n_blocks)).view(np.uint8).reshape(n_blocks, 2)
        b[:, 2:4] = np.float16(rng.uniform(0.001, 0.01, n_blocks)).view(np.uint8).reshape(n_blocks, 2)
    else:                                          # Q6_K: d last
        b[:, -2:] = np.float16(rng.uniform(0.0005, 0.002, n_blocks)).view(np.uint8).reshape(n_blocks, 2)
    return b


def make_gguf(tok):
    Q = gguf.GGMLQuantizationType
    rng = np.random.default_rng(SEED)
    V, C, NH, NKV, D, F = len(tok), 256, 2, 1, 32, 32   # K-quant rows need multiples of 256
    spec = [  # gguf name, HF name, [rows, cols], type
        ("token_embd.weight", "model.embed_tokens.weight", [V, C], Q.Q8_0),
        ("blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight", [C], Q.F32),
        ("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight", [NH * D, C], Q.Q4_K),
        ("blk.0.attn_k.weight", "model.layers.0.self_attn.k_proj.weight", [NKV * D, C], Q.Q6_K),
        ("blk.0.attn_v.weight", "model.layers.0.self_attn.v_proj.weight", [NKV * D, C], Q.Q4_0),
        ("blk.0.attn_output.weight", "model.layers.0.self_attn.o_proj.weight", [C, NH * D], Q.Q4_1),
        ("blk.0.ffn_norm.weight", "model.layers.0.post_attention_layernorm.weight", [C], Q.F32),
        ("blk.0.ffn_gate.weight", "model.layers.0.mlp.gate_proj.weight", [F, C], Q.F16),
        ("blk.0.ffn_up.weight", "model.layers.0.mlp.up_proj.weight", [F, C], Q.BF16),
        ("blk.0.ffn_down.weight", "model.layers.0.mlp.down_proj.weight", [C, F], Q.Q8_0),
        ("output_norm.weight", "model.norm.weight", [C], Q.F32),
        ("output.weight", "lm_head.weight", [V, C], Q.Q6_K),
    ]
    path = os.path.join(OUT, "tiny.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(C)
    w.add_feed_forward_length(F)
    w.add_head_count(NH)
    w.add_head_count_kv(NKV)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(V)
    w.add_rope_dimension_count(D)
    # tokenizer.ggml.*: the tiny BPE, as llama.cpp's converter writes a SmolLM2 tokenizer
    vocab = json.loads(tok.backend_tokenizer.to_str())["model"]
    toks = sorted(vocab["vocab"], key=vocab["vocab"].get)
    merges = [m if isinstance(m, str) else " ".join(m) for m in vocab["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(toks)
    w.add_token_types([3 if t.startswith("<|") else 1 for t in toks])
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    expected_raw, expected_hf = {}, {}
    for gname, hname, shape, qt in spec:
        if qt == Q.F32:
            x = (1 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
            raw, stored = x, x
        elif qt in (Q.Q4_K, Q.Q6_K):
            nb = int(np.prod(shape)) // 256
            stored = random_kquant_blocks(rng, qt, nb).reshape(shape[0], -1)
        else:
            x = (0.15 * rng.standard_normal(shape)).astype(np.float32)
            if qt == Q.F16:
                stored = x.astype(np.float16)
            else:
                stored = quantize(x, qt)
        if qt == Q.F16:
            w.add_tensor(gname, stored)
        elif qt != Q.F32:
            w.add_tensor(gname, stored, raw_shape=stored.shape, raw_dtype=qt)
        else:
            w.add_tensor(gname, stored)
        deq = stored.astype(np.float32) if qt in (Q.F32, Q.F16) else dequantize(stored, qt)
        deq = np.asarray(deq, np.float32).reshape(shape)
        expected_raw[gname] = deq
        n_head = NH if "attn_q" in gname else NKV if "attn_k" in gname else None
        if n_head:
            expected_hf[hname] = reverse_permute(deq, n_head)
            assert np.array_equal(permute(expected_hf[hname], n_head), deq)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with h5py.File(os.path.join(OUT, "gguf_expected.h5"), "w", libver=LIBVER) as f:
        for k, v in expected_raw.items():
            f[f"raw/{k}"] = v
        for k, v in expected_hf.items():
            f[f"hf/{k}"] = v
    # transformers' own GGUF loader must agree on the tensor values (it also reverse-permutes Q/K)
    print(f"tiny.gguf: {os.path.getsize(path)} bytes, {len(spec)} tensors, types "
          f"{sorted(set(q.name for *_, q in spec))}, {len(toks)} tokens, {len(merges)} merges")


def make_meta_gguf():
    """meta.gguf: every metadata value type (nested arrays too), general.alignment = 64, two small tensors whose
    sizes are not multiples of the alignment (so the padding between them matters)."""
    w = gguf.GGUFWriter(os.path.join(OUT, "meta.gguf"), "llama")
    w.add_custom_alignment(64)
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -5)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2000000000)
    w.add_float32("t.f32", 0.25)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "h\u00e9llo")
    w.add_uint64("t.u64", 2 ** 40 + 1)
    w.add_int64("t.i64", -(2 ** 40))
    w.add_float64("t.f64", 2.5)
    w.add_array("t.arr_i32", [1, 2, 3])
    w.add_array("t.arr_str", ["a", "bc"])
    w.add_array("t.arr_nested", [[1, 2], [3]])
    a = np.arange(5, dtype=np.float32)
    b = np.linspace(-1, 1, 128, dtype=np.float32).reshape(2, 64)
    qb = quantize(b, gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("a", a)
    w.add_tensor("b", qb, raw_shape=qb.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with h5py.File(os.path.join(OUT, "gguf_expected.h5"), "a", libver=LIBVER) as f:
        f["meta/a"] = a
        f["meta/b"] = np.asarray(dequantize(qb, gguf.GGMLQuantizationType.Q8_0), np.float32).reshape(2, 64)


def make_spm_gguf():
    """spm.gguf: a tiny llama (all F32) whose tokenizer is SentencePiece BPE with byte fallback (tokenizer.ggml.model
    "llama": tokens, scores, token types, no merges), trained with sentencepiece on the MovieLens titles and written
    the way llama.cpp's converter writes one. spm_expected.json: transformers' tokenizer for the same file
    (AutoTokenizer.from_pretrained(gguf_file=...)): its merges, and ids of a few strings."""
    import sentencepiece as spm
    from transformers import AutoTokenizer
    titles = movielens_titles()
    with tempfile.TemporaryDirectory() as tmp:
        with open(f"{tmp}/titles.txt", "w", encoding="utf-8") as f:
            f.write("\n".join(titles))
        spm.SentencePieceTrainer.train(input=f"{tmp}/titles.txt", model_prefix=f"{tmp}/sp", vocab_size=400,
                                       model_type="bpe", byte_fallback=True, character_coverage=1.0,
                                       minloglevel=2, num_threads=1)
        sp = spm.SentencePieceProcessor(model_file=f"{tmp}/sp.model")
    V, C, F = sp.get_piece_size(), 32, 64
    rng = np.random.default_rng(SEED + 7)
    path = os.path.join(OUT, "spm.gguf")
    w = gguf.GGUFWriter(path, "llama")
    for k, v in dict(block_count=1, context_length=64, embedding_length=C, feed_forward_length=F, head_count=2,
                     head_count_kv=2, vocab_size=V).items():
        getattr(w, "add_" + k)(v)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    types = []
    for i in range(V):   # llama.cpp's SentencePiece vocab: NORMAL 1, UNKNOWN 2, CONTROL 3, UNUSED 5, BYTE 6
        types.append(2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 5 if sp.is_unused(i) else 6 if sp.is_byte(i) else 1)
    w.add_token_list([sp.id_to_piece(i) for i in range(V)])
    w.add_token_scores([sp.get_score(i) for i in range(V)])
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    for name, shape in [("token_embd.weight", [V, C]), ("blk.0.attn_norm.weight", [C]), ("blk.0.attn_q.weight", [C, C]),
                        ("blk.0.attn_k.weight", [C, C]), ("blk.0.attn_v.weight", [C, C]),
                        ("blk.0.attn_output.weight", [C, C]), ("blk.0.ffn_norm.weight", [C]),
                        ("blk.0.ffn_gate.weight", [F, C]), ("blk.0.ffn_up.weight", [F, C]),
                        ("blk.0.ffn_down.weight", [C, F]), ("output_norm.weight", [C])]:
        w.add_tensor(name, (0.1 * rng.standard_normal(shape)).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    hf = AutoTokenizer.from_pretrained(OUT, gguf_file="spm.gguf")
    model = json.loads(hf.backend_tokenizer.to_str())["model"]
    merges = [m if isinstance(m, list) else m.split(" ") for m in model["merges"]]
    texts = SPM_TEXTS
    ids = [hf(t)["input_ids"] for t in texts]
    ref = [[sp.bos_id()] + sp.encode(t) for t in texts]
    print(f"spm.gguf: {V} pieces, {len(merges)} merges derived by transformers; transformers ids == sentencepiece "
          f"ids: {ids == ref}")
    with open(os.path.join(OUT, "spm_expected.json"), "w", encoding="utf-8") as f:
        json.dump(dict(merges=merges, texts=texts, ids=ids), f, ensure_ascii=False)


SPM_TEXTS = ["Toy Story (1995)", "Heat 12345 and  spaces", "Am\u00e9lie \u2713 \u6771\u4eac", " leading space"]


def check_export():
    """import -> export (fp32 and bf16) -> transformers loads the folder -> logits vs expected.h5."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    for name, *_ in CASES:
        folder = os.path.join(OUT, name)
        tokens, lengths, ref = bl.read(folder)
        with tempfile.TemporaryDirectory() as tmp:
            bl.sprec("import", f"{folder}/hf", "-o", f"{tmp}/m.h5")
            for dt in ("fp32", "bf16"):
                bl.sprec("export", f"{tmp}/m.h5", "-o", f"{tmp}/{dt}", "--dtype", dt)
                model = AutoModelForCausalLM.from_pretrained(f"{tmp}/{dt}", dtype=torch.float32).eval()
                tok = AutoTokenizer.from_pretrained(f"{tmp}/{dt}")
                orig_tok = AutoTokenizer.from_pretrained(f"{folder}/hf")
                out = bl.masked_logits(model, tokens, lengths)
                rel = bl.rel_err(out, ref)
                same_tok = tok("Toy Story 1995 ✓")["input_ids"] == orig_tok("Toy Story 1995 ✓")["input_ids"]
                print(f"export {name} --dtype {dt}: {type(model).__name__}, logits rel err vs source {rel:.2e} "
                      f"(max abs {np.abs(out - ref).max():.2e}), tokenizer ids equal: {same_tok}")


def check_spm_tokenizer():
    """tokenizer.json that `sprec import spm.gguf` built vs transformers' tokenizer for the same GGUF."""
    from transformers import AutoTokenizer
    with tempfile.TemporaryDirectory() as tmp:
        bl.sprec("import", f"{OUT}/spm.gguf", "-o", f"{tmp}/s.h5")
        with h5py.File(f"{tmp}/s.h5") as f:
            ours = Tokenizer.from_str(bytes(f["tokenizer/tokenizer.json"][()]).decode())
    hf = AutoTokenizer.from_pretrained(OUT, gguf_file="spm.gguf")
    texts = SPM_TEXTS + ["<s>hello</s> world", "tabs\tand\nnewlines", "\U0001F600 emoji", ""]
    same = all(ours.encode(t).ids == hf(t)["input_ids"] for t in texts)
    dec = all(ours.decode(ours.encode(t).ids) == hf.decode(hf(t)["input_ids"], skip_special_tokens=True) for t in texts)
    print(f"spm.gguf tokenizer rebuilt by sprec vs transformers' GGUF tokenizer: same ids {same}, same decode {dec}")


def check_gguf_tokenizer():
    """tokenizer.json that `sprec import tiny.gguf` rebuilt from tokenizer.ggml.* vs the original tiny BPE."""
    with tempfile.TemporaryDirectory() as tmp:
        bl.sprec("import", f"{OUT}/tiny.gguf", "-o", f"{tmp}/g.h5")
        with h5py.File(f"{tmp}/g.h5") as f:
            ours = Tokenizer.from_str(bytes(f["tokenizer/tokenizer.json"][()]).decode())
    ref = Tokenizer.from_str(open(f"{OUT}/llama_fp32/hf/tokenizer.json").read())
    texts = ["Toy Story (1995)", "Heat 12345 and  spaces\n", "Amélie ✓ 東京", "<|im_start|>user hi<|im_end|>"]
    same = all(ours.encode(t).ids == ref.encode(t).ids and ours.decode(ours.encode(t).ids, skip_special_tokens=False) == t
               for t in texts)
    print(f"tiny.gguf tokenizer rebuilt from metadata: same ids and round trip as the original: {same}")


def main():
    if "--check-export" in sys.argv:
        check_gguf_tokenizer()
        check_spm_tokenizer()
        check_export()
        return
    torch.manual_seed(SEED)
    os.makedirs(OUT, exist_ok=True)
    tok = train_tokenizer()
    for i, c in enumerate(CASES):
        make_case(i, *c, tok)
    make_gguf(tok)
    make_meta_gguf()
    make_spm_gguf()
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {OUT}: {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
