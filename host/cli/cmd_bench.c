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

// every flag takes a value ("--flag V" or "--flag=V") but the switches in
// SWITCHES, which take none; --help is handled first
static const char *const FLAGS[] = {
    "--name", "--mode", "--device", "--dim", "--layers", "--heads", "--kv-heads", "--ffn", "--vocab", "--seq",
    "--batch", "--steps", "--warmup", "--threads", "--loss-frac", "--tokens", "--prompts", "--beams", "--items",
    "--prompt-len", "--head-dim", "--micro-batch", "--zero", NULL};
static const char *const SWITCHES[] = {"--ragged", NULL};

static int in_list(const char *const *list, const char *a, size_t len) {
    for (int k = 0; list[k]; k++)
        if (strlen(list[k]) == len && !strncmp(list[k], a, len)) return 1;
    return 0;
}

// Validates argv; returns a bit mask of the switches given (bit k: SWITCHES[k]).
static unsigned check_flags(int argc, char **argv) {
    unsigned switches = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) fail("sprec bench: unexpected argument '%s' (see sprec bench --help)", a);
        const size_t len = strcspn(a, "=");
        const int sw = in_list(SWITCHES, a, len);
        if (!sw && !in_list(FLAGS, a, len)) fail("sprec bench: unknown flag '%.*s' (see sprec bench --help)", (int)len, a);
        for (int j = 1; j < i; j++)   // cli_flag_value would read the first one only
            if (!strncmp(argv[j], a, len) && (argv[j][len] == 0 || argv[j][len] == '='))
                fail("sprec bench: %.*s given twice", (int)len, a);
        if (sw) {
            if (a[len] == '=') fail("sprec bench: %.*s takes no value", (int)len, a);
            for (int k = 0; SWITCHES[k]; k++)
                if (!strcmp(SWITCHES[k], a)) switches |= 1u << k;
            continue;
        }
        if (a[len] == '=') continue;
        if (i + 1 >= argc) fail("sprec bench: %s needs a value", a);
        i++;
    }
    return switches;
}

static int opt_int(int argc, char **argv, const char *flag, int dflt) {
    const char *v = cli_flag_value(argc, argv, flag);
    if (!v) return dflt;
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < 1 || x > (1 << 30)) fail("sprec bench: %s must be a positive integer, got '%s'", flag, v);
    return (int)x;
}

int cmd_bench(int argc, char **argv) {
    if (cli_has_flag(argc, argv, "--help")) {
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
    const unsigned switches = check_flags(argc, argv);
    const int ragged = (switches & 1u) != 0;
    Bench bn;
    memset(&bn, 0, sizeof bn);
    const char *mode = cli_flag_value(argc, argv, "--mode");
    bn.mode = mode ? mode : "sft";
    const int attention = !strcmp(bn.mode, "attention");
    if (strcmp(bn.mode, "sft") && strcmp(bn.mode, "dpo") && strcmp(bn.mode, "logprob") && strcmp(bn.mode, "generate") &&
        strcmp(bn.mode, "forward") && strcmp(bn.mode, "iteration") && !attention)
        fail("sprec bench: --mode must be sft, dpo, forward, logprob, generate, attention or iteration, got '%s'",
             bn.mode);
    if (!attention && (ragged || cli_flag_value(argc, argv, "--head-dim")))
        fail("sprec bench: --head-dim and --ragged are for --mode attention");
    const char *name = cli_flag_value(argc, argv, "--name");
    if (name && (strchr(name, '"') || strchr(name, '\\') || strlen(name) > 200))
        fail("sprec bench: --name must be at most 200 characters without quotes or backslashes");
    bn.name = name ? name : !strcmp(bn.mode, "sft") ? "sft_step" : !strcmp(bn.mode, "dpo") ? "dpo_step" : bn.mode;
    const char *device = cli_flag_value(argc, argv, "--device");
    ModelConfig *c = &bn.c;
    c->dim = opt_int(argc, argv, "--dim", 256);
    c->n_layers = opt_int(argc, argv, "--layers", 4);
    c->n_heads = opt_int(argc, argv, "--heads", 4);
    c->n_kv_heads = opt_int(argc, argv, "--kv-heads", c->n_heads);
    c->ffn_dim = opt_int(argc, argv, "--ffn", 688);
    c->vocab_size = opt_int(argc, argv, "--vocab", 8192);
    // attention: the kernels take head dims 1..128 (kernels/cuda/attention.cu); --dim is not used
    const int head_dim = opt_int(argc, argv, "--head-dim", 64);
    if (attention && (c->n_heads % c->n_kv_heads || head_dim > 128))
        fail("sprec bench: --mode attention needs --heads divisible by --kv-heads and --head-dim <= 128");
    if (!attention && (c->dim % c->n_heads || (c->dim / c->n_heads) % 2 || c->n_heads % c->n_kv_heads))
        fail("sprec bench: need --dim divisible by --heads into an even head size, and --heads by --kv-heads");
    c->head_dim = attention ? head_dim : c->dim / c->n_heads;
    bn.T = opt_int(argc, argv, "--seq", 256);
    bn.B = opt_int(argc, argv, "--batch", 8);
    bn.steps = opt_int(argc, argv, "--steps", 5);
    bn.warmup = opt_int(argc, argv, "--warmup", 2);
    // the loss covers the last loss_frac of each sequence (a completion); 1 = every position
    const char *lf = cli_flag_value(argc, argv, "--loss-frac");
    char *lf_end = NULL;
    bn.loss_frac = lf ? strtod(lf, &lf_end) : 0.5;
    if ((lf && (!*lf || *lf_end)) || !(bn.loss_frac > 0 && bn.loss_frac <= 1))
        fail("sprec bench: --loss-frac must be in (0, 1], got '%s'", lf);
    const int tokens = opt_int(argc, argv, "--tokens", 8192), prompts = opt_int(argc, argv, "--prompts", 64);
    const int beams = opt_int(argc, argv, "--beams", 4), items = opt_int(argc, argv, "--items", 1000);
    const int prompt_len = opt_int(argc, argv, "--prompt-len", 64);
    c->max_seq_len = bn.T;
    c->rope_theta = 10000; c->rms_eps = 1e-5f; c->tie_embeddings = 1;
    bn.micro = opt_int(argc, argv, "--micro-batch", bn.B);
    const char *zero = cli_flag_value(argc, argv, "--zero");
    if (zero && strcmp(zero, "0") && strcmp(zero, "1")) fail("sprec bench: --zero must be 0 or 1, got '%s'", zero);
    bn.zero = zero && !strcmp(zero, "1");
    const int sft = !strcmp(bn.mode, "sft"), iteration = !strcmp(bn.mode, "iteration");
    if ((cli_flag_value(argc, argv, "--micro-batch") && !sft) || (zero && !sft && !iteration))
        fail("sprec bench: --micro-batch is for --mode sft, --zero for sft and iteration");
    // main started the ranks for bench; the modes that do not split run on rank 0 alone
    if (!sft && !iteration && strcmp(bn.mode, "generate") && !dist_start(0)) return 0;
    const Dist *dist = dist_world();
    if (sft && (bn.B + bn.micro - 1) / bn.micro < dist->world) {
        if (bn.B < dist->world) fail("sprec bench: --batch %d is fewer rows than the %d ranks", bn.B, dist->world);
        fail("sprec bench: --batch %d in micro-batches of %d rows is %d micro-batch(es) for %d ranks: give "
             "--micro-batch <= %d", bn.B, bn.micro, (bn.B + bn.micro - 1) / bn.micro, dist->world, bn.B / dist->world);
    }
    const int threads = opt_int(argc, argv, "--threads", omp_get_max_threads());
    bn.be = device_open(device ? device : "cpu", threads);
    dist_check_backend(dist, bn.be);
    if (!strcmp(bn.mode, "sft")) bench_sft(&bn);
    else if (!strcmp(bn.mode, "dpo")) bench_dpo(&bn);
    else if (!strcmp(bn.mode, "forward")) bench_forward(&bn);
    else if (!strcmp(bn.mode, "logprob")) bench_logprob(&bn, tokens);
    else if (attention) bench_attention(&bn, c->n_heads, c->n_kv_heads, c->head_dim, ragged);
    else if (!strcmp(bn.mode, "iteration"))
        bench_iteration(&bn, device ? device : "cpu", threads, prompts, beams, items, prompt_len);
    else bench_generate(&bn, prompts, beams, items, prompt_len);
    stdout_aside();   // (the ranks' closing "dist:" line, base/dist/dist_mpi.c) stdout stays JSON lines
    return 0;
}
