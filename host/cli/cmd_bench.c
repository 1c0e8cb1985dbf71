// sprec bench: throughput of the engine's hot paths on random weights and
// tokens, as JSON lines (bench/README.md has the exact definitions; the
// PyTorch twins are bench/torch_cpu.py and bench/torch_cuda.py).
//   --mode sft       full SFT training steps (forward, backward, AdamW) and the
//                    machine's own sgemm rate measured in the same process
//   --mode forward   the forward alone (a reference pass or prefill), then the sgemm rate
//   --mode dpo       full DPO steps (host/train/dpo.h dpo_step on --batch pairs with
//                    precomputed reference log-probs, then AdamW)
//   --mode logprob   the fused linear log-prob head alone: logprob_fwd_bwd (SFT), then
//                    logprob_fwd + logprob_bwd (DPO, NAME-twopass)
//   --mode generate  catalogue-constrained greedy and beam decoding (recommend_topk)
//   --mode attention causal GQA attention alone (attention_fwd + _bwd): the backend's
//                    own kernel, against PyTorch's SDPA backends (cuDNN, flash, efficient)
//   --mode iteration one whole SPRec iteration (the trainer's own, host/train/train_sprec.c)
//                    on a random recommendation world, timed stage by stage (stage_time.h)
// tokens_per_s and ms_per_step come from the median step (as the PyTorch side).
// Model FLOPs per token (the same formula as bench/torch_cpu.py):
//   6 * (linear weights per layer * layers + V*C)   matmuls, forward + backward
// + 6 * layers * T * NH*D                            causal attention (QK^T, PV)
// The LM head is counted for every token, as a plain PyTorch step computes it;
// sprec evaluates it only on completion positions, which is part of its speed.
// On CUDA, mfu = model FLOP/s / the GPU's dense bf16 tensor-core peak (the
// precision of the backend's GEMMs, and what PyTorch's bf16 runs are measured
// against in bench/torch_cuda.py).
// This file parses the flags; the modes are host/cli/bench/ (bench.h). Under
// mpirun / srun, sft, generate and iteration run on every rank (docs/PERFORMANCE.md).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "commands.h"
#include "bench/bench.h"
#include "model/device.h"
#include "kernels/errors.h"

int cmd_bench(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        printf("usage: sprec bench [--mode sft|dpo|forward|logprob|generate|attention|iteration] [--name NAME] [--device cpu|cpu-bf16|cuda]\n"
               "                   [--threads N]\n"
               "                   [--dim 256] [--layers 4] [--heads 4] [--kv-heads 4] [--ffn 688] [--vocab 8192]\n"
               "                   [--seq 256] [--batch 8] [--steps 5] [--warmup 2] [--loss-frac 0.5]\n"
               "                   [--micro-batch BATCH] [--zero 0|1] (sft; --zero also iteration)\n"
               "                   [--tokens 8192] (logprob)\n"
               "                   [--prompts 64] [--beams 4] [--items 1000] [--prompt-len 64] (generate, iteration)\n"
               "                   [--head-dim 64] [--ragged] (attention: --batch, --seq, --heads, --kv-heads)\n"
               "Times the engine on random weights and tokens; prints one JSON object per result line.\n"
               "  sft       full SFT steps (forward, backward, AdamW) on --batch sequences of --seq, the loss on\n"
               "            the last --loss-frac of each; then the machine's sgemm rate\n"
               "  forward   the forward alone (a reference pass): --batch sequences of --seq, the head on the last\n"
               "            --loss-frac of each; then the machine's sgemm rate\n"
               "  dpo       full DPO steps on --batch pairs (2 x batch sequences of --seq, completion = the last\n"
               "            --loss-frac), reference log-probs precomputed, beta 0.1, AdamW\n"
               "  logprob   the fused log-prob head alone: --tokens rows of --dim against --vocab, fwd + bwd in\n"
               "            one pass (SFT), then as two passes (DPO; the line NAME-twopass)\n"
               "  generate  catalogue-constrained greedy and --beams beam decoding of --prompts prompts of\n"
               "            --prompt-len tokens over a random trie of --items titles (one line each)\n"
               "  attention causal GQA attention alone: attention_fwd + attention_bwd on q[batch, seq, heads,\n"
               "            head-dim], k, v[batch, seq, kv-heads, head-dim]; --ragged: lengths seq, 3seq/4, seq/2,\n"
               "            seq/4, seq, ... instead of all seq\n"
               "  iteration one whole SPRec iteration (the trainer's: negatives, SFT, reference pass, DPO, eval)\n"
               "            on random weights and a random world of --items titles, --prompts train and test\n"
               "            rows of --prompt-len tokens, micro-batches of --batch, eval beam width max(--beams, 10);\n"
               "            one line per stage and one for the whole (the trainer's progress on stderr)\n"
               "Under mpirun / srun, sft, generate and iteration run on every rank: an SFT step's micro-batches of\n"
               "--micro-batch rows (the step has --batch rows whatever the rank count: give at least one\n"
               "micro-batch per rank), the prompts, an iteration's stages, each split as the trainers split them;\n"
               "rank 0 prints the lines with ranks, comm_s, comm_share, allreduce_bytes_per_step and\n"
               "peak_bytes_per_rank (docs/PERFORMANCE.md). The other modes run on rank 0 alone.\n"
               "See bench/README.md for the exact definitions of every field.\n");
        return 0;
    }
    Bench bn;
    memset(&bn, 0, sizeof bn);
    ModelConfig *c = &bn.c;
    const char *name = NULL, *device = "cpu";
    int ragged = 0, head_dim = 0, tokens = 8192, prompts = 64, beams = 4, items = 1000, prompt_len = 64;
    int threads = omp_get_max_threads(), zero = -1;   // zero -1: not given
    bn.mode = "sft";
    *c = (ModelConfig){.dim = 256, .n_layers = 4, .n_heads = 4, .ffn_dim = 688, .vocab_size = 8192};   // kv-heads: --heads
    // the loss covers the last loss_frac of each sequence (a completion); 1 = every position
    bn.T = 256, bn.B = 8, bn.steps = 5, bn.warmup = 2, bn.loss_frac = 0.5;   // bn.micro 0: --batch
    const CliFlag flags[] = {
        ARG_STR("--name", &name), ARG_STR("--mode", &bn.mode), ARG_STR("--device", &device),
        ARG_INT("--dim", &c->dim, 1, CLI_BIG), ARG_INT("--layers", &c->n_layers, 1, CLI_BIG),
        ARG_INT("--heads", &c->n_heads, 1, CLI_BIG), ARG_INT("--kv-heads", &c->n_kv_heads, 1, CLI_BIG),
        ARG_INT("--ffn", &c->ffn_dim, 1, CLI_BIG), ARG_INT("--vocab", &c->vocab_size, 1, CLI_BIG),
        ARG_INT("--seq", &bn.T, 1, CLI_BIG), ARG_INT("--batch", &bn.B, 1, CLI_BIG),
        ARG_INT("--steps", &bn.steps, 1, CLI_BIG), ARG_INT("--warmup", &bn.warmup, 1, CLI_BIG),
        ARG_INT("--threads", &threads, 1, CLI_BIG), ARG_FRACTION("--loss-frac", &bn.loss_frac),
        ARG_INT("--tokens", &tokens, 1, CLI_BIG), ARG_INT("--prompts", &prompts, 1, CLI_BIG),
        ARG_INT("--beams", &beams, 1, CLI_BIG), ARG_INT("--items", &items, 1, CLI_BIG),
        ARG_INT("--prompt-len", &prompt_len, 1, CLI_BIG), ARG_INT("--head-dim", &head_dim, 1, CLI_BIG),
        ARG_SWITCH("--ragged", &ragged), ARG_INT("--micro-batch", &bn.micro, 1, CLI_BIG),
        ARG_INT("--zero", &zero, 0, 1), ARG_END};
    cli_parse("bench", argc, argv, flags);
    const int attention = !strcmp(bn.mode, "attention");
    if (strcmp(bn.mode, "sft") && strcmp(bn.mode, "dpo") && strcmp(bn.mode, "logprob") && strcmp(bn.mode, "generate") &&
        strcmp(bn.mode, "forward") && strcmp(bn.mode, "iteration") && !attention)
        fail("sprec bench: --mode must be sft, dpo, forward, logprob, generate, attention or iteration, got '%s'",
             bn.mode);
    if (!attention && (ragged || head_dim))
        fail("sprec bench: --head-dim and --ragged are for --mode attention");
    if (name && (strchr(name, '"') || strchr(name, '\\') || strlen(name) > 200))
        fail("sprec bench: --name must be at most 200 characters without quotes or backslashes");
    bn.name = name ? name : !strcmp(bn.mode, "sft") ? "sft_step" : !strcmp(bn.mode, "dpo") ? "dpo_step" : bn.mode;
    if (!c->n_kv_heads) c->n_kv_heads = c->n_heads;
    // attention: the kernels take head dims 1..128 (kernels/cuda/attention.cu); --dim is not used
    if (!head_dim) head_dim = 64;
    if (attention && (c->n_heads % c->n_kv_heads || head_dim > 128))
        fail("sprec bench: --mode attention needs --heads divisible by --kv-heads and --head-dim <= 128");
    if (!attention && (c->dim % c->n_heads || (c->dim / c->n_heads) % 2 || c->n_heads % c->n_kv_heads))
        fail("sprec bench: need --dim divisible by --heads into an even head size, and --heads by --kv-heads");
    c->head_dim = attention ? head_dim : c->dim / c->n_heads;
    c->max_seq_len = bn.T;
    c->rope_theta = 10000; c->rms_eps = 1e-5f; c->tie_embeddings = 1;
    const int sft = !strcmp(bn.mode, "sft"), iteration = !strcmp(bn.mode, "iteration");
    if ((bn.micro && !sft) || (zero >= 0 && !sft && !iteration))
        fail("sprec bench: --micro-batch is for --mode sft, --zero for sft and iteration");
    if (!bn.micro) bn.micro = bn.B;
    bn.zero = zero == 1;
    // main started the ranks for bench; the modes that do not split run on rank 0 alone
    if (!sft && !iteration && strcmp(bn.mode, "generate") && !dist_start(0)) return 0;
    const Dist *dist = dist_world();
    if (sft && (bn.B + bn.micro - 1) / bn.micro < dist->world) {
        if (bn.B < dist->world) fail("sprec bench: --batch %d is fewer rows than the %d ranks", bn.B, dist->world);
        fail("sprec bench: --batch %d in micro-batches of %d rows is %d micro-batch(es) for %d ranks: give "
             "--micro-batch <= %d", bn.B, bn.micro, (bn.B + bn.micro - 1) / bn.micro, dist->world, bn.B / dist->world);
    }
    bn.be = device_open(device, threads);
    dist_check_backend(dist, bn.be);
    if (!strcmp(bn.mode, "sft")) bench_sft(&bn);
    else if (!strcmp(bn.mode, "dpo")) bench_dpo(&bn);
    else if (!strcmp(bn.mode, "forward")) bench_forward(&bn);
    else if (!strcmp(bn.mode, "logprob")) bench_logprob(&bn, tokens);
    else if (attention) bench_attention(&bn, c->n_heads, c->n_kv_heads, c->head_dim, ragged);
    else if (!strcmp(bn.mode, "iteration"))
        bench_iteration(&bn, device, threads, prompts, beams, items, prompt_len);
    else bench_generate(&bn, prompts, beams, items, prompt_len);
    stdout_aside();   // (the ranks' closing "dist:" line, base/dist/dist_mpi.c) stdout stays JSON lines
    return 0;
}
