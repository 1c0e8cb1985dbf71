#!/usr/bin/env python3
"""PyTorch side of the CPU benchmark: full SFT training steps of a random Llama on the CPU, timed.
(--mode dpo: DPO steps; --mode logprob: the materialised log-prob head alone; see the end of this text.)

One step = forward of a [batch, seq] token batch through LlamaForCausalLM (fp32, SDPA attention), the loss
(masked mean of -log p(target) over the completion span, the last half of each sequence, from the logits by
log_softmax + gather), backward, torch.optim.AdamW step (foreach default), zero_grad. Warm-up steps are not
timed; ms_per_step is the median over the timed steps and tokens_per_s = batch * seq / median step time.
Prints one JSON object per line (see bench/README.md), like `sprec bench`.

FLOP count (shared with the C side; counts matmul FLOPs of the model, as MFU conventions do):
    linear_params   = layers * (dim*NH*D + 2*dim*NKV*D + NH*D*dim + 3*dim*ffn) + vocab*dim
                      (q, k, v, o, gate, up, down, plus the LM head, counted also when tied to the embedding;
                       D = head_dim = dim / heads, NH = heads, NKV = kv_heads; biases, norms, RoPE, softmax,
                       SiLU and the embedding lookup are not counted)
    fwd_per_token   = 2 * linear_params                     (a multiply-add per weight)
                    + 2 * layers * seq * NH*D               (QK^T and PV, 2*seq*NH*D each, halved for causality)
    flops_per_step  = 3 * fwd_per_token * batch * seq       (backward = 2 x forward)
    gflops          = flops_per_step / seconds_per_step / 1e9
The LM head is counted at every position, although an implementation may run it on completion rows only:
the FLOP figure is a model-work rate, comparable across implementations; tokens_per_s is the headline number.

    python3 bench/torch_cpu.py --dim 256 --layers 4 --heads 4 --kv-heads 4 --ffn 688 --vocab 8192 \
        --seq 256 --batch 8 --steps 10 --warmup 2 --threads 2

--mode dpo: one DPO step on --batch pairs (2*batch sequences, rows 0,2,.. chosen, 1,3,.. rejected), the same
completion span, sigmoid loss with beta 0.1 against reference log-probs computed once before timing by the
initial policy (as `sprec bench --mode dpo`), backward, AdamW; tokens = 2 * batch * seq, FLOPs = the formula
above for those tokens. --mode logprob: logits = h[tokens, dim] @ W[vocab, dim]^T in fp32, log_softmax, gather,
mean, backward into h and W (the [tokens x vocab] tensors a fused head never builds); FLOPs 6 * tokens * vocab *
dim. Both in the bench/torch_cuda.py definitions, fp32 on the CPU.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time


def linear_params(a):
    head_dim = a.dim // a.heads
    per_layer = (a.dim * a.heads * head_dim + 2 * a.dim * a.kv_heads * head_dim + a.heads * head_dim * a.dim
                 + 3 * a.dim * a.ffn)
    return a.layers * per_layer + a.vocab * a.dim


def flops_per_step(a):
    if a.mode == "logprob":
        return 6 * a.tokens * a.vocab * a.dim
    fwd_per_token = 2 * linear_params(a) + 2 * a.layers * a.seq * a.dim
    return 3 * fwd_per_token * a.batch * a.seq * (2 if a.mode == "dpo" else 1)


def parse_args():
    ap = argparse.ArgumentParser(description="Time PyTorch CPU SFT training steps of a random Llama.")
    ap.add_argument("--mode", choices=["sft", "dpo", "logprob"], default="sft")
    ap.add_argument("--tokens", type=int, default=8192, help="rows of the logprob mode")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=None, help="default: --heads")
    ap.add_argument("--ffn", type=int, default=688)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--tied", action="store_true", help="tie the LM head to the embedding")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default=None, help="result name (match the engine's for side-by-side rows)")
    ap.add_argument("--json-only", action="store_true", help="print only the JSON line (no progress on stderr)")
    a = ap.parse_args()
    a.kv_heads = a.kv_heads or a.heads
    a.name = a.name or {"sft": "sft_step", "dpo": "dpo_step"}.get(a.mode, a.mode)
    if a.dim % a.heads or a.heads % a.kv_heads or a.seq < 2 or a.steps < 1 or a.warmup < 0 or a.threads < 1:
        ap.error("need dim % heads == 0, heads % kv_heads == 0, seq >= 2, steps >= 1, warmup >= 0, threads >= 1")
    return a


def main():
    a = parse_args()
    log = (lambda *m: None) if a.json_only else (lambda *m: print(*m, file=sys.stderr, flush=True))
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    if a.mode == "logprob":
        return logprob_main(a, log, torch)
    config = LlamaConfig(vocab_size=a.vocab, hidden_size=a.dim, intermediate_size=a.ffn, num_hidden_layers=a.layers,
                         num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
                         max_position_embeddings=max(a.seq, 2048), tie_word_embeddings=a.tied, use_cache=False)
    model = LlamaForCausalLM._from_config(config, attn_implementation="sdpa", dtype=torch.float32).train()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr)
    n_params = sum(p.numel() for p in model.parameters())

    rows = a.batch * (2 if a.mode == "dpo" else 1)
    tokens = torch.randint(0, a.vocab, (rows, a.seq))
    targets = tokens[:, 1:]
    mask = torch.zeros(rows, a.seq - 1)
    mask[:, a.seq // 2 - 1:] = 1.0            # targets tokens[:, seq//2:], the completion span

    def token_logp():
        logits = model(input_ids=tokens, use_cache=False).logits                       # [rows, T, V]
        return torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, targets[..., None]).squeeze(-1)

    if a.mode == "dpo":
        with torch.no_grad():
            ref = (mask * token_logp()).sum(-1)     # the reference pass, once: the initial policy

    def step():
        if a.mode == "dpo":
            lp = (mask * token_logp()).sum(-1)
            margin = (lp[0::2] - ref[0::2]) - (lp[1::2] - ref[1::2])
            loss = -torch.nn.functional.logsigmoid(0.1 * margin).mean()
        else:
            loss = -(mask * token_logp()).sum() / mask.sum()
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss.item()

    log(f"{a.name}: {a.mode}, params {n_params / 1e6:.2f}M, {rows} x seq {a.seq}, {a.threads} threads, "
        f"{a.warmup} warm-up + {a.steps} timed steps")
    times, loss = run_steps(a, log, step)
    flops = flops_per_step(a)
    print(json.dumps({
        "name": a.name, "impl": "pytorch", "device": "cpu", "threads": a.threads,
        **({"mode": a.mode, "pairs": a.batch} if a.mode == "dpo" else {}),
        "dim": a.dim, "layers": a.layers, "heads": a.heads, "kv_heads": a.kv_heads, "ffn": a.ffn,
        "vocab": a.vocab, "seq": a.seq, "batch": a.batch, "tied": int(a.tied), "steps": a.steps,
        "params": n_params, "flops_per_step": flops, "tokens": rows * a.seq,
        **timing_fields(times, rows * a.seq, flops, loss, 2, torch),
    }), flush=True)


def logprob_main(a, log, torch):
    h = torch.randn(a.tokens, a.dim, requires_grad=True)
    w = (torch.randn(a.vocab, a.dim) * a.dim ** -0.5).requires_grad_()
    targets = torch.randint(0, a.vocab, (a.tokens,))

    def step():
        logp = torch.log_softmax(h @ w.t(), dim=-1).gather(-1, targets[:, None]).squeeze(-1)
        loss = -logp.mean()
        loss.backward()
        h.grad = None
        w.grad = None
        return loss.item()

    log(f"{a.name}: logprob, {a.tokens} x {a.dim} against vocab {a.vocab}, {a.threads} threads")
    times, loss = run_steps(a, log, step)
    flops = flops_per_step(a)
    print(json.dumps({
        "name": a.name, "impl": "pytorch", "device": "cpu", "threads": a.threads, "mode": "logprob",
        "dim": a.dim, "vocab": a.vocab, "tokens": a.tokens, "steps": a.steps, "flops_per_step": flops,
        **timing_fields(times, a.tokens, flops, loss, 3, torch),
    }), flush=True)


def timing_fields(times, tokens, flops, loss, digits, torch):
    """The fields every result line ends with: rates from the median step, robust to interference from
    other jobs on a shared machine (ms rounded to `digits`)."""
    sec = statistics.median(times)
    return {
        "tokens_per_s": round(tokens / sec, 1), "ms_per_step": round(1e3 * sec, digits),
        "ms_per_step_mean": round(1e3 * statistics.mean(times), digits),
        "ms_per_step_min": round(1e3 * min(times), digits),
        "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "gflops": round(flops / sec / 1e9, 2), "mfu": None, "final_loss": round(loss, 6),
        "torch_version": str(torch.__version__),
    }


def run_steps(a, log, step):
    for i in range(a.warmup):
        t0 = time.perf_counter()
        loss = step()
        log(f"  warm-up {i}: {1e3 * (time.perf_counter() - t0):.1f} ms, loss {loss:.4f}")
    times = []
    for i in range(a.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
        log(f"  step {i}: {1e3 * times[-1]:.1f} ms, loss {loss:.4f}")

    return times, loss


if __name__ == "__main__":
    main()
