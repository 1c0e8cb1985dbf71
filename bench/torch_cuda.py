#!/usr/bin/env python3
"""PyTorch side of the GPU benchmark (scripts/bench.sh with DEVICE=cuda): a random Hugging Face
LlamaForCausalLM (from a config, no download) in bf16 autocast with SDPA attention, timed on one GPU.

Modes (--mode):
  sft      one SFT step: forward of a [batch, seq] batch, loss = masked mean of -log p(target) over the
           completion span (the last half of each sequence; logits -> log_softmax -> gather, as
           bench/torch_cpu.py), backward, torch.optim.AdamW step (fused when available), zero_grad.
  dpo      one DPO step on --batch pairs (2*batch sequences of --seq, rows 0,2,4.. chosen, 1,3,5.. rejected):
           policy forward+backward on both, the sigmoid DPO loss (beta 0.1) on the completion-span sequence
           log-probs, AdamW step. --dpo-ref precomputed (default; what `sprec bench --mode dpo` does, and TRL's
           precompute_ref_log_probs): the reference log-probs are computed once before timing by the initial
           policy; --dpo-ref model: a frozen copy runs its forward under no_grad inside every step (TRL's default).
  logprob  the materialised head alone: logits = h[tokens, dim] @ W[vocab, dim]^T, float32 log_softmax,
           gather, forward + backward into h and W, for --tokens rows: the [tokens x vocab] tensor a fused
           log-prob kernel never builds. Reports its time, peak memory and extra_bytes = the peak minus the
           memory held before the step (h, W, targets): what the head needs beyond its inputs.
  generate catalogue-constrained decoding with transformers' generate(prefix_allowed_tokens_fn=...) over a
           trie of --items random titles (4..12 tokens from 1..vocab-2, then the end token vocab-1, which is
           also the EOS), for --prompts prompts of --prompt-len random tokens, all in one batch: greedy, then
           beam search of width --beams (num_beams, length_penalty 0, early_stopping); one JSON line each,
           named NAME_greedy / NAME_beamW. The titles and prompts come from the same splitmix64 stream
           (seed 12345) as `sprec bench --mode generate`, so both sides decode over the same trie.
           tokens = the output tokens of the returned sequences (up to and including the end token).
  attention  causal grouped-query attention alone, the PyTorch side of `sprec bench --mode attention` (the
           measurement that decides the engine's own flash-style kernel vs cuDNN's fused SDPA): bf16 leaves
           q[batch, seq, heads, head-dim], k, v[batch, seq, kv-heads, head-dim] (requires_grad), transposed to
           [batch, heads, seq, head-dim] views as Hugging Face does, F.scaled_dot_product_attention(is_causal=True,
           enable_gqa=True when kv-heads < heads), then out.backward(a fixed random bf16 dout); grads set to None
           after each step. One line per SDPA backend, forced with torch.nn.attention.sdpa_kernel: impl
           pytorch-sdpa-cudnn, pytorch-sdpa-flash, pytorch-sdpa-efficient. When a backend refuses the native GQA
           call (or the torch has no enable_gqa), k and v are repeat_interleave'd to heads inside the step (as
           HF's repeat_kv; "gqa": "repeat_interleave" in the line). A backend that refuses the shape altogether
           (or runs out of memory) gives a line with "error" and null numbers. Every sequence is full length.
Weights are fp32 masters with bf16 autocast (--precision amp, default) or pure bf16 (--precision bf16).
Warm-up steps are not timed; ms_per_step is the median over the timed steps (CUDA-synchronised), and
tokens_per_s = tokens per step / median step time. Prints one JSON object per line with the fields of
`sprec bench` (name, impl, device, tokens_per_s, ms_per_step, peak_bytes, gflops, mfu, ...).

FLOPs (the formula of bench/torch_cpu.py and host/cli/cmd_bench.c: matmul FLOPs of the model, LM head at every
position, backward = 2 x forward):
    fwd_per_token = 2 * linear_params + 2 * layers * seq * NH*D
    sft:  3 * fwd_per_token * batch * seq
    dpo:  3 * fwd_per_token * 2 * batch * seq            (policy fwd+bwd; --dpo-ref model: 4 *, + reference fwd)
    logprob: 3 * 2 * tokens * vocab * dim
    generate: 2 * linear_params * (prompts * prompt_len + beams * output tokens)   (an estimate: no attention)
    attention: fwd = 2 * 2 * batch * heads * seq^2 * head_dim / 2   (QK^T and PV, half for causality)
               bwd = 2.5 * fwd (FlashAttention's convention), step = 3.5 * fwd
mfu = FLOP/s / the GPU's dense bf16 peak (H100/H200 SXM 989 TFLOP/s, A100 312; --peak-tflops overrides;
null when unknown or on the CPU).

    python3 bench/torch_cuda.py --mode sft --dim 576 --layers 30 --heads 9 --kv-heads 3 --ffn 1536 \
        --vocab 49152 --seq 512 --batch 8 --tied --name smollm2-135m
    python3 bench/torch_cuda.py --mode logprob --dim 576 --vocab 49152 --tokens 8192 --name logprob-v49152
    python3 bench/torch_cuda.py --mode attention --batch 16 --seq 512 --heads 9 --kv-heads 3 --head-dim 64 \
        --name attn-smollm2-135m-t512
(--device cpu runs the same code on the CPU, for a smoke test of the script with tiny shapes.)
"""
import argparse
import json
import statistics
import sys
import time

PEAK_BF16_TFLOPS = [("H200", 989.4), ("H100", 989.4), ("GH200", 989.4), ("A100", 312.0), ("L40S", 362.1),
                    ("A10G", 70.0), ("L4", 121.0)]


def linear_params(a):
    head_dim = a.dim // a.heads
    per_layer = (a.dim * a.heads * head_dim + 2 * a.dim * a.kv_heads * head_dim + a.heads * head_dim * a.dim
                 + 3 * a.dim * a.ffn)
    return a.layers * per_layer + a.vocab * a.dim


def attention_fwd_flops(a):
    """QK^T and PV, 2 * seq^2 * head_dim FLOPs each per head, halved for causality."""
    return 2 * 2 * a.batch * a.heads * a.seq * a.seq * a.head_dim // 2


def flops_per_step(a, beams=1, out_tokens=0):
    if a.mode == "attention":
        return 7 * attention_fwd_flops(a) // 2   # forward + backward (2.5 x forward): 3.5 x forward
    if a.mode == "logprob":
        return 3 * 2 * a.tokens * a.vocab * a.dim
    if a.mode == "generate":
        return 2 * linear_params(a) * (a.prompts * a.prompt_len + beams * out_tokens)
    fwd_per_token = 2 * linear_params(a) + 2 * a.layers * a.seq * a.dim
    if a.mode == "sft":
        return 3 * fwd_per_token * a.batch * a.seq
    return (4 if a.dpo_ref == "model" else 3) * fwd_per_token * 2 * a.batch * a.seq


TITLE_MIN, TITLE_MAX, M64 = 4, 12, (1 << 64) - 1
# --mode attention: the SDPA backends timed (one line each) -> SDPBackend member
SDPA_BACKENDS = {"cudnn": "CUDNN_ATTENTION", "flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION",
                 "math": "MATH"}


def splitmix64(state):
    """host/base/rng.h's splitmix64: returns (new state, output)."""
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def catalogue(items, vocab, prompts, prompt_len):
    """The titles (deduplicated, first copy kept) and prompts of `sprec bench --mode generate`."""
    s, titles, seen = 12345, [], set()
    drawn = []
    for _ in range(items):
        s, r = splitmix64(s)
        n = TITLE_MIN + r % (TITLE_MAX - TITLE_MIN + 1)
        toks = []
        for _ in range(n):
            s, r = splitmix64(s)
            toks.append(1 + r % (vocab - 2))
        drawn.append(tuple(toks + [vocab - 1]))
    ps = []
    for _ in range(prompts):
        row = []
        for _ in range(prompt_len):
            s, r = splitmix64(s)
            row.append(1 + r % (vocab - 2))
        ps.append(row)
    for t in drawn:
        if t not in seen:
            seen.add(t)
            titles.append(t)
    return titles, ps


def build_trie(titles):
    """Nested dicts token -> subtree; returns (root, node count including the root)."""
    root, nodes = {}, 1
    for t in titles:
        node = root
        for tok in t:
            if tok not in node:
                node[tok] = {}
                nodes += 1
            node = node[tok]
    return root, nodes


def parse_args():
    ap = argparse.ArgumentParser(description="Time PyTorch GPU SFT / DPO steps of a random Llama, or the "
                                             "materialised log-prob head.")
    ap.add_argument("--mode", choices=["sft", "dpo", "logprob", "generate", "attention"], default="sft")
    ap.add_argument("--dim", type=int, default=576)
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--heads", type=int, default=9)
    ap.add_argument("--kv-heads", type=int, default=None, help="default: --heads")
    ap.add_argument("--ffn", type=int, default=1536)
    ap.add_argument("--vocab", type=int, default=49152)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8, help="sequences (sft) or pairs (dpo)")
    ap.add_argument("--tokens", type=int, default=8192, help="rows of the logprob mode")
    ap.add_argument("--head-dim", type=int, default=64, help="attention: head size (--dim is not used)")
    ap.add_argument("--sdpa-backends", default="cudnn,flash,efficient",
                    help="attention: comma-separated SDPA backends to time, of cudnn, flash, efficient, math")
    ap.add_argument("--dpo-ref", choices=["precomputed", "model"], default="precomputed",
                    help="dpo: reference log-probs computed once before timing, or a reference forward per step")
    ap.add_argument("--prompts", type=int, default=64, help="generate: prompts (one batch)")
    ap.add_argument("--beams", type=int, default=4, help="generate: beam width of the beam line (1: greedy only)")
    ap.add_argument("--items", type=int, default=1000, help="generate: catalogue titles")
    ap.add_argument("--prompt-len", type=int, default=64, help="generate: tokens per prompt")
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--tied", action="store_true", help="tie the LM head to the embedding")
    ap.add_argument("--precision", choices=["amp", "bf16"], default="amp",
                    help="amp: fp32 weights + bf16 autocast; bf16: bf16 weights and optimizer")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (falls back to eager on error)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak for the MFU")
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default=None, help="result name (match the engine's for side-by-side rows)")
    ap.add_argument("--json-only", action="store_true", help="print only the JSON line (no progress on stderr)")
    a = ap.parse_args()
    a.kv_heads = a.kv_heads or a.heads
    a.name = a.name or a.mode
    if a.mode == "attention":
        if a.heads % a.kv_heads or not 1 <= a.head_dim <= 256 or a.seq < 1 or a.batch < 1:
            ap.error("attention needs heads % kv_heads == 0, 1 <= head_dim <= 256, seq >= 1, batch >= 1")
        a.sdpa_backends = [b.strip() for b in a.sdpa_backends.split(",") if b.strip()]
        bad = [b for b in a.sdpa_backends if b not in SDPA_BACKENDS]
        if bad or not a.sdpa_backends:
            ap.error(f"--sdpa-backends: unknown {bad}; choose from {', '.join(SDPA_BACKENDS)}")
    elif a.dim % a.heads:
        ap.error("need dim % heads == 0")
    if a.heads % a.kv_heads or a.seq < 1 or a.steps < 1 or a.warmup < 0:
        ap.error("need heads % kv_heads == 0, seq >= 1, steps >= 1, warmup >= 0")
    if a.mode != "attention" and a.seq < 4:
        ap.error("need seq >= 4")
    if min(a.prompts, a.beams, a.items, a.prompt_len) < 1 or a.vocab < 3:
        ap.error("need --prompts, --beams, --items, --prompt-len >= 1 and --vocab >= 3")
    if a.mode == "generate":
        a.seq = max(a.seq, a.prompt_len + TITLE_MAX + 2)   # the model's context (max_position_embeddings)
    return a


def peak_flops(a, torch):
    if a.peak_tflops:
        return a.peak_tflops * 1e12
    if a.device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    for key, tf in PEAK_BF16_TFLOPS:
        if key in name:
            return tf * 1e12
    return None


def build_model(a, torch):
    from transformers import LlamaConfig, LlamaForCausalLM
    config = LlamaConfig(vocab_size=a.vocab, hidden_size=a.dim, intermediate_size=a.ffn, num_hidden_layers=a.layers,
                         num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
                         max_position_embeddings=max(a.seq, 2048), tie_word_embeddings=a.tied, use_cache=False)
    dtype = torch.bfloat16 if a.precision == "bf16" else torch.float32
    model = LlamaForCausalLM._from_config(config, attn_implementation="sdpa", dtype=dtype).to(a.device).train()
    return model


def make_optimizer(a, torch, params):
    try:
        return torch.optim.AdamW(params, lr=a.lr, fused=a.device == "cuda")
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, lr=a.lr)


def attention_main(a, log):
    """--mode attention: one JSON line per SDPA backend (see the module docstring)."""
    import resource
    import warnings
    import torch
    import torch.nn.functional as F
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:   # torch < 2.3: no backend selection; every line is an error row
        SDPBackend = sdpa_kernel = None

    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    B, T, NH, NKV, D = a.batch, a.seq, a.heads, a.kv_heads, a.head_dim
    dt = torch.bfloat16

    def uniform(*shape):   # U(-1, 1), as `sprec bench --mode attention` draws its inputs
        return (torch.rand(*shape, device=dev) * 2 - 1).to(dt)
    q = uniform(B, T, NH, D).requires_grad_()   # the engine's layout [B, T, heads, D]
    k = uniform(B, T, NKV, D).requires_grad_()
    v = uniform(B, T, NKV, D).requires_grad_()
    dout = uniform(B, T, NH, D).transpose(1, 2)   # the gradient of out [B, NH, T, D], as HF's layout gives it
    try:   # enable_gqa exists from torch 2.5
        F.scaled_dot_product_attention(*(torch.zeros(1, n, 2, 4) for n in (2, 1, 1)), enable_gqa=True)
        native_gqa = True
    except TypeError:
        native_gqa = False

    def sdpa(gqa):
        qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if gqa == "native":
            return F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, enable_gqa=True)
        if gqa == "repeat_interleave":   # head h reads kv head h // (NH / NKV), as HF's repeat_kv
            kt, vt = (x.repeat_interleave(NH // NKV, dim=2).transpose(1, 2) for x in (k, v))
        return F.scaled_dot_product_attention(qt, kt, vt, is_causal=True)

    def step(backend, gqa, keep=None):
        with sdpa_kernel([backend]):
            out = sdpa(gqa)
            out.backward(dout)
        q.grad = k.grad = v.grad = None   # fresh gradients every step
        if keep is not None:
            keep.append(out.detach())

    peak = peak_flops(a, torch)
    fwd = attention_fwd_flops(a)
    flops = flops_per_step(a)
    tokens = B * T
    gqa_modes = ["none"] if NKV == NH else (["native"] if native_gqa else []) + ["repeat_interleave"]
    for name in a.sdpa_backends:
        impl = "pytorch-sdpa-" + name
        line = {"name": a.name, "impl": impl, "device": a.device, "mode": "attention",
                "gpu": torch.cuda.get_device_name() if cuda else None, "precision": "bf16",
                "batch": B, "seq": T, "heads": NH, "kv_heads": NKV, "head_dim": D, "causal": 1, "ragged": 0,
                "sdpa_backend": name, "gqa": None, "tokens": tokens, "steps": a.steps, "flops_fwd": fwd,
                "flops_per_step": flops, "tokens_per_s": None, "ms_per_step": None, "ms_per_step_mean": None,
                "ms_per_step_min": None, "peak_bytes": None, "extra_bytes": None, "gflops": None, "mfu": None,
                "final_loss": None, "torch_version": str(torch.__version__)}
        backend = getattr(SDPBackend, SDPA_BACKENDS[name], None) if SDPBackend is not None else None
        if backend is None:
            line["error"] = f"this torch has no SDPBackend.{SDPA_BACKENDS[name]} / sdpa_kernel"
            print(json.dumps(line), flush=True)
            continue
        # the first GQA form the backend accepts, forward and backward (one untimed step)
        gqa, errors = None, []
        for mode in gqa_modes:
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    step(backend, mode)
                    sync()
                gqa = mode
                break
            except Exception as e:   # noqa: BLE001 - a backend refusing the shape is a result, not a crash
                q.grad = k.grad = v.grad = None
                why = "; ".join(str(w.message).splitlines()[0] for w in caught[:3])
                errors.append(f"{mode}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                              + (f" ({why})" if why else ""))
                if cuda:
                    torch.cuda.empty_cache()
                if isinstance(e, torch.cuda.OutOfMemoryError):
                    break   # the repeated k, v would need more
        if gqa is None:
            line["error"] = " | ".join(errors)
            log(f"{a.name} {impl}: refused: {line['error']}")
            print(json.dumps(line), flush=True)
            continue
        line["gqa"] = gqa
        log(f"{a.name} {impl}: B {B} T {T} NH {NH} NKV {NKV} D {D}, gqa {gqa}, "
            f"{a.warmup} warm-up + {a.steps} timed steps on {a.device}")
        try:
            for _ in range(max(a.warmup - 1, 0)):   # the trial step above was the first warm-up
                step(backend, gqa)
            sync()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            held = torch.cuda.memory_allocated() if cuda else None
            times, keep = [], []
            for i in range(a.steps):
                sync()
                t0 = time.perf_counter()
                step(backend, gqa, keep if i == a.steps - 1 else None)
                sync()
                times.append(time.perf_counter() - t0)
                log(f"  step {i}: {1e3 * times[-1]:.3f} ms")
        except Exception as e:   # noqa: BLE001 - e.g. out of memory after the trial
            line["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            q.grad = k.grad = v.grad = None
            print(json.dumps(line), flush=True)
            continue
        sec = statistics.median(times)
        if cuda:
            peak_bytes = torch.cuda.max_memory_allocated()
            line["extra_bytes"] = peak_bytes - held
        else:
            peak_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        line.update({
            "tokens_per_s": round(tokens / sec, 1), "ms_per_step": round(1e3 * sec, 3),
            "ms_per_step_mean": round(1e3 * statistics.mean(times), 3), "ms_per_step_min": round(1e3 * min(times), 3),
            "peak_bytes": peak_bytes, "gflops": round(flops / sec / 1e9, 2),
            "mfu": round(flops / sec / peak, 4) if peak else None,
            "final_loss": round(keep[0].float().mean().item(), 6)})
        del keep
        print(json.dumps(line), flush=True)
        if cuda:
            torch.cuda.empty_cache()


def main():
    a = parse_args()
    log = (lambda *m: None) if a.json_only else (lambda *m: print(*m, file=sys.stderr, flush=True))
    if a.mode == "attention":
        return attention_main(a, log)
    import torch
    import torch.nn.functional as F

    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    autocast = torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=a.precision == "amp")
    n_params, compiled, model = 0, False, None
    runs = []   # (name suffix, step, extra JSON fields); a step returns its loss (generate: its output tokens)

    if a.mode == "logprob":
        dtype = torch.bfloat16
        h = torch.randn(a.tokens, a.dim, device=dev, dtype=dtype, requires_grad=True)
        w = (torch.randn(a.vocab, a.dim, device=dev, dtype=dtype) * a.dim ** -0.5).requires_grad_()
        targets = torch.randint(0, a.vocab, (a.tokens,), device=dev)
        n_params = w.numel()

        def step():
            logits = h @ w.t()                                                  # [tokens, vocab], bf16
            logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[:, None]).squeeze(-1)
            loss = -logp.mean()
            loss.backward()
            h.grad = None
            w.grad = None
            return loss.item()
        tokens_per_step = a.tokens
        runs.append(("", step, {}))
    elif a.mode == "generate":
        model = build_model(a, torch).eval()
        n_params = sum(p.numel() for p in model.parameters())
        titles, prompts = catalogue(a.items, a.vocab, a.prompts, a.prompt_len)
        trie, trie_nodes = build_trie(titles)
        end = a.vocab - 1
        ids = torch.tensor(prompts, device=dev)
        L = a.prompt_len

        def allowed(batch_id, input_ids):   # the children of the trie node the generated tokens reach
            node = trie
            for tok in input_ids[L:].tolist():
                node = node.get(tok)
                if node is None:
                    return [end]
            return list(node.keys()) or [end]

        def make_step(beams):
            def step():
                # beams: score = the plain log-prob sum (length_penalty 0), as the engine's recommend_topk
                beam_opts = dict(length_penalty=0.0, early_stopping=True) if beams > 1 else {}
                with torch.inference_mode(), autocast:
                    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                         max_new_tokens=TITLE_MAX + 1, num_beams=beams, do_sample=False,
                                         num_return_sequences=1, prefix_allowed_tokens_fn=allowed,
                                         eos_token_id=end, pad_token_id=0, use_cache=True, **beam_opts)
                n = 0
                for row in out[:, L:].tolist():   # output tokens up to and including the end token
                    n += row.index(end) + 1 if end in row else len(row)
                return n
            return step
        for beams in dict.fromkeys([1, a.beams]):
            runs.append(("_greedy" if beams == 1 else f"_beam{beams}", make_step(beams),
                         {"prompts": a.prompts, "prompt_len": a.prompt_len, "beams": beams,
                          "items": len(titles), "trie_nodes": trie_nodes}))
        tokens_per_step = None   # the output tokens: counted by the step
    else:
        model = build_model(a, torch)
        n_params = sum(p.numel() for p in model.parameters())
        opt = make_optimizer(a, torch, model.parameters())
        ref = None
        if a.mode == "dpo" and a.dpo_ref == "model":
            import copy
            ref = copy.deepcopy(model).eval().requires_grad_(False)
        fwd = model
        if a.compile:
            try:
                fwd = torch.compile(model)
                compiled = True
            except Exception as e:   # noqa: BLE001 - any failure means: time the eager model
                log(f"torch.compile failed ({type(e).__name__}: {e}); timing eager")
        rows = a.batch * (2 if a.mode == "dpo" else 1)
        tokens = torch.randint(0, a.vocab, (rows, a.seq), device=dev)
        targets = tokens[:, 1:]
        mask = torch.zeros(rows, a.seq - 1, device=dev)
        mask[:, a.seq // 2 - 1:] = 1.0            # targets tokens[:, seq//2:], the completion span

        def token_logp(m, ids):
            logits = m(input_ids=ids, use_cache=False).logits                    # [rows, T, V]
            return torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, targets[..., None]).squeeze(-1)

        ref_pre = None
        if a.mode == "dpo" and ref is None:   # the reference pass before the epoch: the initial policy
            with torch.no_grad(), autocast:
                ref_pre = (mask * token_logp(model, tokens)).sum(-1)

        def step():
            with autocast:
                if a.mode == "sft":
                    loss = -(mask * token_logp(fwd, tokens)).sum() / mask.sum()
                else:
                    if ref_pre is not None:
                        ref_seq = ref_pre
                    else:
                        with torch.no_grad():
                            ref_seq = (mask * token_logp(ref, tokens)).sum(-1)
                    pol_seq = (mask * token_logp(fwd, tokens)).sum(-1)
                    margin = (pol_seq[0::2] - ref_seq[0::2]) - (pol_seq[1::2] - ref_seq[1::2])
                    loss = -F.logsigmoid(0.1 * margin).mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss.item()
        tokens_per_step = rows * a.seq
        runs.append(("", step, {"pairs": a.batch, "beta": 0.1, "ref": a.dpo_ref} if a.mode == "dpo" else {}))

    peak = peak_flops(a, torch)
    for suffix, step, extra in runs:
        name = a.name + suffix
        log(f"{name}: {a.mode}, params {n_params / 1e6:.1f}M, {tokens_per_step or 'output'} tokens/step, "
            f"{a.precision}, {a.warmup} warm-up + {a.steps} timed steps on {a.device}")
        try:
            for i in range(a.warmup):
                t0 = time.perf_counter()
                try:
                    loss = step()
                except Exception as e:   # noqa: BLE001 - torch.compile fails lazily, at the first call
                    if not compiled or i > 0:
                        raise
                    log(f"torch.compile failed at the first step ({type(e).__name__}: {e}); timing eager")
                    fwd, compiled = model, False   # step() reads fwd from this scope
                    loss = step()
                sync()
                log(f"  warm-up {i}: {1e3 * (time.perf_counter() - t0):.1f} ms, loss {loss:.4f}")
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            held = torch.cuda.memory_allocated() if cuda else None
            times = []
            for i in range(a.steps):
                sync()
                t0 = time.perf_counter()
                loss = step()
                sync()
                times.append(time.perf_counter() - t0)
                log(f"  step {i}: {1e3 * times[-1]:.1f} ms, loss {loss:.4f}")
        except torch.cuda.OutOfMemoryError as e:   # report it as a row rather than a traceback
            print(json.dumps({"name": name, "impl": "pytorch", "device": a.device, "mode": a.mode,
                              "tokens_per_s": None, "ms_per_step": None, "peak_bytes": None, "mfu": None,
                              "error": f"out of memory: {str(e).splitlines()[0]}"}), flush=True)
            continue

        sec = statistics.median(times)
        if a.mode == "generate":
            tokens_run = loss   # output tokens of the last step
            flops = flops_per_step(a, extra["beams"], tokens_run)
            extra = dict(extra, prompts_per_s=round(a.prompts / sec, 2))
        else:
            tokens_run = tokens_per_step
            flops = flops_per_step(a)
            extra = dict(extra, final_loss=round(loss, 6))
        if cuda:
            peak_bytes = torch.cuda.max_memory_allocated()
            extra = dict(extra, extra_bytes=peak_bytes - held)
        else:
            import resource
            peak_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({
            "name": name, "impl": "pytorch" + ("-compile" if compiled else ""), "device": a.device, "mode": a.mode,
            "gpu": torch.cuda.get_device_name() if cuda else None, "precision": a.precision,
            "dim": a.dim, "layers": a.layers, "heads": a.heads, "kv_heads": a.kv_heads, "ffn": a.ffn,
            "vocab": a.vocab, "seq": a.seq, "batch": a.batch, **extra, "tokens": tokens_run, "tied": int(a.tied),
            "steps": a.steps, "params": n_params, "flops_per_step": flops,
            "tokens_per_s": round(tokens_run / sec, 1), "ms_per_step": round(1e3 * sec, 3),
            "ms_per_step_mean": round(1e3 * statistics.mean(times), 3), "ms_per_step_min": round(1e3 * min(times), 3),
            "peak_bytes": peak_bytes, "gflops": round(flops / sec / 1e9, 2),
            "mfu": round(flops / sec / peak, 4) if peak else None,
            "torch_version": str(torch.__version__),
        }), flush=True)


if __name__ == "__main__":
    main()
