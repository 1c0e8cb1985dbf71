#!/usr/bin/env python3
"""PyTorch side of the GPU benchmark (scripts/bench.sh with DEVICE=cuda): a random Hugging Face
LlamaForCausalLM (from a config, no download) in bf16 autocast with SDPA attention, timed on one GPU.

Modes (--mode):
  sft      one SFT step: forward of a [batch, seq] batch, loss = masked mean of -log p(target) over the
           completion span (the last half of each sequence; logits -> log_softmax -> gather, as
           bench/torch_cpu.py), backward, torch.optim.AdamW step (fused when available), zero_grad.
  dpo      one DPO step on --batch pairs (2*batch sequences of --seq): policy forward+backward on chosen and
           rejected, the reference model's forward under no_grad (a frozen copy), the sigmoid DPO loss
           (beta 0.1) on the completion-span sequence log-probs, AdamW step.
  logprob  the materialised head alone: logits = h[tokens, dim] @ W[vocab, dim]^T, float32 log_softmax,
           gather, forward + backward into h and W, for --tokens rows: the [tokens x vocab] tensor a fused
           log-prob kernel never builds. Reports its time and peak memory.
Weights are fp32 masters with bf16 autocast (--precision amp, default) or pure bf16 (--precision bf16).
Warm-up steps are not timed; ms_per_step is the median over the timed steps (CUDA-synchronised), and
tokens_per_s = tokens per step / median step time. Prints one JSON object per line with the fields of
`sprec bench` (name, impl, device, tokens_per_s, ms_per_step, peak_bytes, gflops, mfu, ...).

FLOPs (the formula of bench/torch_cpu.py and host/cmd_bench.c: matmul FLOPs of the model, LM head at every
position, backward = 2 x forward):
    fwd_per_token = 2 * linear_params + 2 * layers * seq * NH*D
    sft:  3 * fwd_per_token * batch * seq
    dpo:  (3 + 1) * fwd_per_token * 2 * batch * seq      (policy fwd+bwd, reference fwd)
    logprob: 3 * 2 * tokens * vocab * dim
mfu = FLOP/s / the GPU's dense bf16 peak (H100/H200 SXM 989 TFLOP/s, A100 312; --peak-tflops overrides;
null when unknown or on the CPU).

    python3 bench/torch_cuda.py --mode sft --dim 576 --layers 30 --heads 9 --kv-heads 3 --ffn 1536 \
        --vocab 49152 --seq 512 --batch 8 --tied --name smollm2-135m
    python3 bench/torch_cuda.py --mode logprob --dim 576 --vocab 49152 --tokens 8192 --name logprob-v49152
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


def flops_per_step(a):
    if a.mode == "logprob":
        return 3 * 2 * a.tokens * a.vocab * a.dim
    fwd_per_token = 2 * linear_params(a) + 2 * a.layers * a.seq * a.dim
    if a.mode == "sft":
        return 3 * fwd_per_token * a.batch * a.seq
    return 4 * fwd_per_token * 2 * a.batch * a.seq


def parse_args():
    ap = argparse.ArgumentParser(description="Time PyTorch GPU SFT / DPO steps of a random Llama, or the "
                                             "materialised log-prob head.")
    ap.add_argument("--mode", choices=["sft", "dpo", "logprob"], default="sft")
    ap.add_argument("--dim", type=int, default=576)
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--heads", type=int, default=9)
    ap.add_argument("--kv-heads", type=int, default=None, help="default: --heads")
    ap.add_argument("--ffn", type=int, default=1536)
    ap.add_argument("--vocab", type=int, default=49152)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8, help="sequences (sft) or pairs (dpo)")
    ap.add_argument("--tokens", type=int, default=8192, help="rows of the logprob mode")
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
    if a.dim % a.heads or a.heads % a.kv_heads or a.seq < 4 or a.steps < 1 or a.warmup < 0:
        ap.error("need dim % heads == 0, heads % kv_heads == 0, seq >= 4, steps >= 1, warmup >= 0")
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


def main():
    a = parse_args()
    log = (lambda *m: None) if a.json_only else (lambda *m: print(*m, file=sys.stderr, flush=True))
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
    else:
        model = build_model(a, torch)
        n_params = sum(p.numel() for p in model.parameters())
        opt = make_optimizer(a, torch, model.parameters())
        ref = None
        if a.mode == "dpo":
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

        def step():
            with autocast:
                if a.mode == "sft":
                    loss = -(mask * token_logp(fwd, tokens)).sum() / mask.sum()
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

    log(f"{a.name}: {a.mode}, params {n_params / 1e6:.1f}M, {tokens_per_step} tokens/step, {a.precision}, "
        f"{a.warmup} warm-up + {a.steps} timed steps on {a.device}")
    try:
        for i in range(a.warmup):
            t0 = time.perf_counter()
            try:
                loss = step()
            except Exception as e:   # noqa: BLE001 - torch.compile fails lazily, at the first call
                if not compiled or i > 0:
                    raise
                log(f"torch.compile failed at the first step ({type(e).__name__}: {e}); timing eager")
                fwd, compiled = model, False
                loss = step()
            sync()
            log(f"  warm-up {i}: {1e3 * (time.perf_counter() - t0):.1f} ms, loss {loss:.4f}")
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        times = []
        for i in range(a.steps):
            sync()
            t0 = time.perf_counter()
            loss = step()
            sync()
            times.append(time.perf_counter() - t0)
            log(f"  step {i}: {1e3 * times[-1]:.1f} ms, loss {loss:.4f}")
    except torch.cuda.OutOfMemoryError as e:   # report it as a row rather than a traceback
        print(json.dumps({"name": a.name, "impl": "pytorch", "device": a.device, "mode": a.mode,
                          "tokens_per_s": None, "ms_per_step": None, "peak_bytes": None, "mfu": None,
                          "error": f"out of memory: {str(e).splitlines()[0]}"}), flush=True)
        return

    sec = statistics.median(times)
    flops = flops_per_step(a)
    peak = peak_flops(a, torch)
    if cuda:
        peak_bytes = torch.cuda.max_memory_allocated()
    else:
        import resource
        peak_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({
        "name": a.name, "impl": "pytorch" + ("-compile" if compiled else ""), "device": a.device, "mode": a.mode,
        "gpu": torch.cuda.get_device_name() if cuda else None, "precision": a.precision,
        "dim": a.dim, "layers": a.layers, "heads": a.heads, "kv_heads": a.kv_heads, "ffn": a.ffn,
        "vocab": a.vocab, "seq": a.seq, "batch": a.batch, "tokens": tokens_per_step, "tied": int(a.tied),
        "steps": a.steps, "params": n_params, "flops_per_step": flops,
        "tokens_per_s": round(tokens_per_step / sec, 1), "ms_per_step": round(1e3 * sec, 3),
        "ms_per_step_mean": round(1e3 * statistics.mean(times), 3), "ms_per_step_min": round(1e3 * min(times), 3),
        "peak_bytes": peak_bytes, "gflops": round(flops / sec / 1e9, 2),
        "mfu": round(flops / sec / peak, 4) if peak else None,
        "torch_version": str(torch.__version__),
    }), flush=True)


if __name__ == "__main__":
    main()
