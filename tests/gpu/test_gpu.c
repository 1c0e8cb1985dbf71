// build/test_gpu (`make test-gpu`, tests/gpu/run.sh): the CUDA backend against
// the CPU backend, which is the oracle (itself tested against double-precision
// references and Hugging Face in tests/unit).
//   1. every op of kernels/backend.h, forward and backward, on fresh seeded
//      random inputs at sizes that are not multiples of any tile (N=37, C=77,
//      OC=130, T=67, D=64 and 80, GQA 6/2, lengths with a 0 and a full one);
//      padded rows of inputs hold NaN (the contract says they are never read)
//      and gradient outputs start non-zero (the contract says *_bwd adds);
//   2. whole models through host/ code: the Hugging Face fixtures
//      (tests/ref/fixtures) on the GPU vs the fixture values, a larger random
//      model cuda vs cpu, two forward+backward+AdamW runs bit-identical
//      (memcmp), and KV-cache decoding == full recompute on the GPU.
// Each check prints its relative error ||gpu - ref|| / ||ref||, its max abs
// error, its tolerance and PASS/FAIL; a table at the end; exit 1 if any fails,
// 77 (skipped) when no GPU is usable.
//   build/test_gpu [--quick] [--json FILE]
//   --quick        skip the vocab-49152 log-prob case (for compute-sanitizer)
//   --json FILE    also write one JSON object per check to FILE
//   SPREC_CUDA_TF32=0   the backend runs GEMMs in full fp32; the TF32
//                       tolerances below tighten accordingly
//   SPREC_TEST_GPU_SELFTEST=1   use the CPU backend in place of CUDA: checks
//                       this harness itself on a machine without a GPU
//                       (every error is then 0)
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cuda_runtime_api.h>
#include "../../kernels/backend.h"
#include "../../host/check.h"
#include "../../host/checkpoint.h"
#include "../../host/dataset.h"
#include "../../host/generate.h"
#include "../../host/h5io.h"
#include "../../host/model.h"
#include "../../host/optimizer.h"
#include "../../host/rng.h"

// ---- tolerances (on the relative error ||gpu - ref|| / ||ref||) ---------------
// Copies (embedding lookup, gather_rows) and single IEEE operations (add,
// scale) must be exact.
#define TOL_EXACT 0.0
// Elementwise arithmetic (dropout, rope, AdamW): the same few fp32 operations,
// possibly contracted into FMAs differently by nvcc and gcc: ~1 ulp.
#define TOL_ELEM 1e-6
// Transcendentals (silu's exp) and reductions over a row or column (rmsnorm,
// the embedding gradient's sums over repeated tokens, sum of squares): other
// summation orders and exp implementations, a few ulp times sqrt(length).
#define TOL_REDUCE 1e-5
// One GEMM on tensor cores in TF32 (10-bit mantissa): each operand rounded to
// 2^-11 relative, errors of random sign, so ~5e-4 relative on a product with
// random inputs; 2e-3 leaves a 3-4x margin and still catches any indexing bug
// (which gives O(1)). With SPREC_CUDA_TF32=0 the GEMMs are fp32: 1e-5.
static double TOL_TF32 = 2e-3;
// Results of two or more TF32 products in a row (the log-prob backward
// recomputes the logits, then multiplies again): errors compound, 2.5x.
static double TOL_TF32_CHAIN = 5e-3;
// Attention runs in plain fp32 on CUDA cores (kernels/cuda/attention.cu, flash
// style): only the order of the online-softmax sums and exp differ from the
// CPU. The backward subtracts rowsum(dout*out) and loses a digit to
// cancellation. (If attention moves to tensor cores, these become TF32/bf16-sized.)
#define TOL_ATTN 1e-5
#define TOL_ATTN_BWD 5e-5
// The KV cache is bf16 on the GPU (8-bit mantissa: 2^-9 relative per element
// with round-to-nearest, ~2e-3 in norm); attention over it inherits that.
#define TOL_KV 1e-2
// Whole models (2 layers, every op chained, TF32 GEMMs) vs Hugging Face in
// float64: outputs 5e-3, gradients 1e-2 (the CPU meets 1e-4; with
// SPREC_CUDA_TF32=0 the GPU must too).
static double TOL_MODEL_OUT = 5e-3, TOL_MODEL_GRAD = 1e-2;

// ---- results -------------------------------------------------------------------

typedef struct { char name[200]; double rel, max_abs, tol; int pass; } Result;
static Result results[512];
static int n_results, n_failed;
static FILE *json_out;

static void record(const char *name, double rel, double max_abs, double tol) {
    int pass = rel <= tol;   // NaN fails
    printf("%-58s rel %.2e  max abs %.2e  tol %.0e  %s\n", name, rel, max_abs, tol, pass ? "PASS" : "FAIL");
    fflush(stdout);
    if (n_results < (int)(sizeof results / sizeof results[0])) {
        Result *r = &results[n_results++];
        snprintf(r->name, sizeof r->name, "%s", name);
        r->rel = rel; r->max_abs = max_abs; r->tol = tol; r->pass = pass;
    }
    if (json_out)
        fprintf(json_out, "{\"check\": \"%s\", \"rel_err\": %.6e, \"max_abs_err\": %.6e, \"tol\": %.1e, \"pass\": %s}\n",
                name, isfinite(rel) ? rel : 1e300, isfinite(max_abs) ? max_abs : 1e300, tol, pass ? "true" : "false");
    n_failed += !pass;
}

// ||got - want|| / ||want|| (plain norm when want is 0). A NaN where the
// reference has the same NaN/inf is a match; anywhere else it is an infinite error.
static double rel_err(const float *got, const float *want, size_t n, double *max_abs) {
    double num = 0, den = 0;
    *max_abs = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(want[i]) || !isfinite(got[i])) {
            if (isnan(want[i]) ? isnan(got[i]) : got[i] == want[i]) continue;
            *max_abs = INFINITY;
            return INFINITY;
        }
        double d = (double)got[i] - want[i];
        num += d * d;
        den += (double)want[i] * want[i];
        if (fabs(d) > *max_abs) *max_abs = fabs(d);
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void compare(const char *name, const float *got, const float *want, size_t n, double tol) {
    double max_abs, rel = rel_err(got, want, n, &max_abs);
    record(name, rel, max_abs, tol);
}

// ---- the two backends and buffers on them --------------------------------------

static const Backend *G;                 // under test (CUDA)
static const Backend *H;                 // the oracle (CPU; its pointers are host memory)
static Rng rng;

static float *frand(size_t n, float scale) {
    float *x = xmalloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = scale * (float)(2.0 * rng_uniform(&rng) - 1.0);
    return x;
}
static float *fcopy(const float *x, size_t n) {
    float *y = xmalloc((n ? n : 1) * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}
static void *up_bytes(const void *h, size_t bytes) {
    void *d = G->alloc(bytes ? bytes : 4);
    if (bytes) G->upload(d, h, bytes);
    return d;
}
static float *up(const float *h, size_t n) { return up_bytes(h, n * sizeof(float)); }
static int *upi(const int *h, size_t n) { return up_bytes(h, n * sizeof(int)); }
static float *down(const float *d, size_t n) {
    float *h = xmalloc((n ? n : 1) * sizeof(float));
    G->download(h, d, n * sizeof(float));
    return h;
}
// download d and compare with the CPU result want; frees nothing
static void compare_dev(const char *name, const float *d, const float *want, size_t n, double tol) {
    float *h = down(d, n);
    compare(name, h, want, n, tol);
    free(h);
}
static void rows_nan(float *x, int B, int T, size_t row, const int *len) {
    for (int b = 0; b < B; b++)
        for (int t = len[b]; t < T; t++)
            for (size_t i = 0; i < row; i++) x[((size_t)b * T + t) * row + i] = NAN;
}
static void rope_tables(int D, int P, float **cs, float **sn) {
    ModelConfig c = {.head_dim = D, .rope_theta = 10000.0f};
    *cs = xmalloc((size_t)P * D / 2 * sizeof(float));
    *sn = xmalloc((size_t)P * D / 2 * sizeof(float));
    rope_tables_host(&c, P, *cs, *sn);
}

// ---- dense ops -----------------------------------------------------------------

static void test_matmul(int N, int C, int OC, int bias) {
    char nm[96];
    float *inp = frand((size_t)N * C, 1.0f), *w = frand((size_t)OC * C, 1.0f), *b = bias ? frand(OC, 1.0f) : NULL;
    float *out = frand((size_t)N * OC, 1.0f);
    float *d_inp = up(inp, (size_t)N * C), *d_w = up(w, (size_t)OC * C), *d_b = bias ? up(b, OC) : NULL;
    float *d_out = up(out, (size_t)N * OC);
    H->matmul_fwd(out, inp, w, b, N, C, OC);
    G->matmul_fwd(d_out, d_inp, d_w, d_b, N, C, OC);
    snprintf(nm, sizeof nm, "matmul_fwd N%d C%d OC%d%s", N, C, OC, bias ? " +bias" : "");
    compare_dev(nm, d_out, out, (size_t)N * OC, TOL_TF32);

    // all three gradients, then each one alone (NULL = not needed), adding into non-zero buffers
    float *dout = frand((size_t)N * OC, 1.0f), *d_dout = up(dout, (size_t)N * OC);
    for (int variant = 0; variant < 3; variant++) {
        const int want_inp = variant != 1, want_w = variant != 2, want_b = bias && variant == 0;
        float *dinp = frand((size_t)N * C, 1.0f), *dw = frand((size_t)OC * C, 1.0f), *db = frand(OC, 1.0f);
        float *g_dinp = up(dinp, (size_t)N * C), *g_dw = up(dw, (size_t)OC * C), *g_db = up(db, OC);
        H->matmul_bwd(want_inp ? dinp : NULL, want_w ? dw : NULL, want_b ? db : NULL, dout, inp, w, N, C, OC);
        G->matmul_bwd(want_inp ? g_dinp : NULL, want_w ? g_dw : NULL, want_b ? g_db : NULL, d_dout, d_inp, d_w, N, C, OC);
        const char *tag = variant == 0 ? "" : variant == 1 ? " (dw only)" : " (dinp only)";
        snprintf(nm, sizeof nm, "matmul_bwd dinp N%d C%d OC%d%s", N, C, OC, tag);
        compare_dev(nm, g_dinp, dinp, (size_t)N * C, want_inp ? TOL_TF32 : TOL_EXACT);
        snprintf(nm, sizeof nm, "matmul_bwd dw N%d C%d OC%d%s", N, C, OC, tag);
        compare_dev(nm, g_dw, dw, (size_t)OC * C, want_w ? TOL_TF32 : TOL_EXACT);
        if (bias) {
            snprintf(nm, sizeof nm, "matmul_bwd dbias N%d C%d OC%d%s", N, C, OC, tag);
            compare_dev(nm, g_db, db, OC, want_b ? TOL_TF32 : TOL_EXACT);
        }
        G->free(g_dinp); G->free(g_dw); G->free(g_db);
        free(dinp); free(dw); free(db);
    }
    G->free(d_inp); G->free(d_w); G->free(d_b); G->free(d_out); G->free(d_dout);
    free(inp); free(w); free(b); free(out); free(dout);
}

static void test_embedding(int N, int C, int V) {
    char nm[96];
    int *tok = xmalloc((size_t)N * sizeof(int));
    for (int i = 0; i < N; i++) tok[i] = i % 5 == 0 ? 3 : (int)rng_below(&rng, (uint64_t)V);   // repeats
    tok[N - 1] = V - 1;
    float *wte = frand((size_t)V * C, 1.0f), *out = frand((size_t)N * C, 1.0f);
    int *d_tok = upi(tok, N);
    float *d_wte = up(wte, (size_t)V * C), *d_out = up(out, (size_t)N * C);
    H->embedding_fwd(out, tok, wte, N, C);
    G->embedding_fwd(d_out, d_tok, d_wte, N, C);
    snprintf(nm, sizeof nm, "embedding_fwd N%d C%d V%d", N, C, V);
    compare_dev(nm, d_out, out, (size_t)N * C, TOL_EXACT);
    float *dout = frand((size_t)N * C, 1.0f), *dwte = frand((size_t)V * C, 1.0f);
    float *d_dout = up(dout, (size_t)N * C), *d_dwte = up(dwte, (size_t)V * C);
    H->embedding_bwd(dwte, dout, tok, N, C, V);
    G->embedding_bwd(d_dwte, d_dout, d_tok, N, C, V);
    snprintf(nm, sizeof nm, "embedding_bwd N%d C%d V%d (repeated ids)", N, C, V);
    compare_dev(nm, d_dwte, dwte, (size_t)V * C, TOL_REDUCE);
    G->free(d_tok); G->free(d_wte); G->free(d_out); G->free(d_dout); G->free(d_dwte);
    free(tok); free(wte); free(out); free(dout); free(dwte);
}

static void test_rmsnorm(int N, int C) {
    char nm[96];
    float *inp = frand((size_t)N * C, 2.0f), *w = frand(C, 1.0f), *out = frand((size_t)N * C, 1.0f), *rstd = frand(N, 1.0f);
    float *d_inp = up(inp, (size_t)N * C), *d_w = up(w, C), *d_out = up(out, (size_t)N * C), *d_rstd = up(rstd, N);
    H->rmsnorm_fwd(out, rstd, inp, w, 1e-5f, N, C);
    G->rmsnorm_fwd(d_out, d_rstd, d_inp, d_w, 1e-5f, N, C);
    snprintf(nm, sizeof nm, "rmsnorm_fwd out N%d C%d", N, C);
    compare_dev(nm, d_out, out, (size_t)N * C, TOL_REDUCE);
    snprintf(nm, sizeof nm, "rmsnorm_fwd rstd N%d C%d", N, C);
    compare_dev(nm, d_rstd, rstd, N, TOL_REDUCE);
    float *dout = frand((size_t)N * C, 1.0f), *dinp = frand((size_t)N * C, 1.0f), *dw = frand(C, 1.0f);
    float *d_dout = up(dout, (size_t)N * C), *d_dinp = up(dinp, (size_t)N * C), *d_dw = up(dw, C);
    // both sides from the CPU's rstd, so the backward is tested on its own
    G->upload(d_rstd, rstd, (size_t)N * sizeof(float));
    H->rmsnorm_bwd(dinp, dw, dout, inp, w, rstd, N, C);
    G->rmsnorm_bwd(d_dinp, d_dw, d_dout, d_inp, d_w, d_rstd, N, C);
    snprintf(nm, sizeof nm, "rmsnorm_bwd dinp N%d C%d", N, C);
    compare_dev(nm, d_dinp, dinp, (size_t)N * C, TOL_REDUCE);
    snprintf(nm, sizeof nm, "rmsnorm_bwd dweight N%d C%d", N, C);
    compare_dev(nm, d_dw, dw, C, TOL_REDUCE);
    G->free(d_inp); G->free(d_w); G->free(d_out); G->free(d_rstd); G->free(d_dout); G->free(d_dinp); G->free(d_dw);
    free(inp); free(w); free(out); free(rstd); free(dout); free(dinp); free(dw);
}

static void test_rope(int B, int T, int H_, int D) {
    char nm[96];
    const size_t n = (size_t)B * T * H_ * D;
    float *cs, *sn;
    rope_tables(D, T, &cs, &sn);
    float *x = frand(n, 1.0f), *d_x = up(x, n), *d_cs = up(cs, (size_t)T * D / 2), *d_sn = up(sn, (size_t)T * D / 2);
    H->rope_fwd(x, cs, sn, B, T, H_, D);
    G->rope_fwd(d_x, d_cs, d_sn, B, T, H_, D);
    snprintf(nm, sizeof nm, "rope_fwd B%d T%d H%d D%d", B, T, H_, D);
    compare_dev(nm, d_x, x, n, TOL_ELEM);
    float *dx = frand(n, 1.0f);
    G->upload(d_x, dx, n * sizeof(float));
    H->rope_bwd(dx, cs, sn, B, T, H_, D);
    G->rope_bwd(d_x, d_cs, d_sn, B, T, H_, D);
    snprintf(nm, sizeof nm, "rope_bwd B%d T%d H%d D%d", B, T, H_, D);
    compare_dev(nm, d_x, dx, n, TOL_ELEM);
    // rope_at_fwd: explicit positions, repeats and the last one included
    const int N = 37, P = T;
    int *pos = xmalloc(N * sizeof(int));
    for (int i = 0; i < N; i++) pos[i] = i == 0 ? P - 1 : (int)rng_below(&rng, (uint64_t)P);
    float *y = frand((size_t)N * H_ * D, 1.0f), *d_y = up(y, (size_t)N * H_ * D);
    int *d_pos = upi(pos, N);
    H->rope_at_fwd(y, cs, sn, pos, N, H_, D);
    G->rope_at_fwd(d_y, d_cs, d_sn, d_pos, N, H_, D);
    snprintf(nm, sizeof nm, "rope_at_fwd N%d H%d D%d P%d", N, H_, D, P);
    compare_dev(nm, d_y, y, (size_t)N * H_ * D, TOL_ELEM);
    G->free(d_x); G->free(d_cs); G->free(d_sn); G->free(d_y); G->free(d_pos);
    free(cs); free(sn); free(x); free(dx); free(pos); free(y);
}

static void test_attention(int B, int T, int NH, int NKV, int D, const int *len) {
    char nm[96], shape[64];
    snprintf(shape, sizeof shape, "B%d T%d NH%d NKV%d D%d", B, T, NH, NKV, D);
    const size_t nq = (size_t)B * T * NH * D, nkv = (size_t)B * T * NKV * D, nl = (size_t)B * NH * T;
    float *q = frand(nq, 1.5f), *k = frand(nkv, 1.5f), *v = frand(nkv, 1.0f);
    rows_nan(q, B, T, (size_t)NH * D, len);   // padded rows are never read
    rows_nan(k, B, T, (size_t)NKV * D, len);
    rows_nan(v, B, T, (size_t)NKV * D, len);
    float *out = frand(nq, 7.0f), *lse = frand(nl, 7.0f);   // padded rows must come back as 0
    float *d_q = up(q, nq), *d_k = up(k, nkv), *d_v = up(v, nkv), *d_out = up(out, nq), *d_lse = up(lse, nl);
    int *d_len = upi(len, B);
    H->attention_fwd(out, lse, q, k, v, len, B, T, NH, NKV, D);
    G->attention_fwd(d_out, d_lse, d_q, d_k, d_v, d_len, B, T, NH, NKV, D);
    snprintf(nm, sizeof nm, "attention_fwd out %s", shape);
    compare_dev(nm, d_out, out, nq, TOL_ATTN);
    snprintf(nm, sizeof nm, "attention_fwd lse %s", shape);
    compare_dev(nm, d_lse, lse, nl, TOL_ATTN);

    float *dout = frand(nq, 1.0f);
    rows_nan(dout, B, T, (size_t)NH * D, len);
    float *dq = frand(nq, 1.0f), *dk = frand(nkv, 1.0f), *dv = frand(nkv, 1.0f);
    float *d_dout = up(dout, nq), *d_dq = up(dq, nq), *d_dk = up(dk, nkv), *d_dv = up(dv, nkv);
    // both from the CPU's forward results, so the backward is tested on its own
    G->upload(d_out, out, nq * sizeof(float));
    G->upload(d_lse, lse, nl * sizeof(float));
    H->attention_bwd(dq, dk, dv, dout, out, lse, q, k, v, len, B, T, NH, NKV, D);
    G->attention_bwd(d_dq, d_dk, d_dv, d_dout, d_out, d_lse, d_q, d_k, d_v, d_len, B, T, NH, NKV, D);
    snprintf(nm, sizeof nm, "attention_bwd dq %s", shape);
    compare_dev(nm, d_dq, dq, nq, TOL_ATTN_BWD);
    snprintf(nm, sizeof nm, "attention_bwd dk %s", shape);
    compare_dev(nm, d_dk, dk, nkv, TOL_ATTN_BWD);
    snprintf(nm, sizeof nm, "attention_bwd dv %s", shape);
    compare_dev(nm, d_dv, dv, nkv, TOL_ATTN_BWD);
    G->free(d_q); G->free(d_k); G->free(d_v); G->free(d_out); G->free(d_lse); G->free(d_len);
    G->free(d_dout); G->free(d_dq); G->free(d_dk); G->free(d_dv);
    free(q); free(k); free(v); free(out); free(lse); free(dout); free(dq); free(dk); free(dv);
}

static void test_elementwise(size_t n) {
    char nm[96];
    float *gate = frand(n, 6.0f), *upv = frand(n, 2.0f), *out = frand(n, 1.0f);
    float *d_gate = up(gate, n), *d_up = up(upv, n), *d_out = up(out, n);
    H->swiglu_fwd(out, gate, upv, n);
    G->swiglu_fwd(d_out, d_gate, d_up, n);
    snprintf(nm, sizeof nm, "swiglu_fwd n%zu", n);
    compare_dev(nm, d_out, out, n, TOL_REDUCE);
    float *dout = frand(n, 1.0f), *dg = frand(n, 1.0f), *du = frand(n, 1.0f);
    float *d_dout = up(dout, n), *d_dg = up(dg, n), *d_du = up(du, n);
    H->swiglu_bwd(dg, du, dout, gate, upv, n);
    G->swiglu_bwd(d_dg, d_du, d_dout, d_gate, d_up, n);
    snprintf(nm, sizeof nm, "swiglu_bwd dgate n%zu", n);
    compare_dev(nm, d_dg, dg, n, TOL_REDUCE);
    snprintf(nm, sizeof nm, "swiglu_bwd dup n%zu", n);
    compare_dev(nm, d_du, du, n, TOL_REDUCE);

    // add (also in place: out aliases a), scale
    H->add(out, gate, upv, n);
    G->add(d_out, d_gate, d_up, n);
    snprintf(nm, sizeof nm, "add n%zu", n);
    compare_dev(nm, d_out, out, n, TOL_EXACT);
    H->add(gate, gate, upv, n);
    G->add(d_gate, d_gate, d_up, n);
    snprintf(nm, sizeof nm, "add in place n%zu", n);
    compare_dev(nm, d_gate, gate, n, TOL_EXACT);
    H->scale(upv, -0.37f, n);
    G->scale(d_up, -0.37f, n);
    snprintf(nm, sizeof nm, "scale n%zu", n);
    compare_dev(nm, d_up, upv, n, TOL_EXACT);

    // dropout: the mask is a pure function of (key, i, p): the zeros must match exactly
    const float ps[] = {0.0f, 0.1f, 0.5f};
    for (int i = 0; i < 3; i++) {
        const uint64_t key = 0x1234567ULL + (uint64_t)i;
        H->dropout_fwd(out, gate, n, ps[i], key);
        G->dropout_fwd(d_out, d_gate, n, ps[i], key);
        snprintf(nm, sizeof nm, "dropout_fwd p%.1f n%zu", ps[i], n);
        compare_dev(nm, d_out, out, n, TOL_ELEM);
        H->dropout_bwd(dg, dout, n, ps[i], key);
        G->dropout_bwd(d_dg, d_dout, n, ps[i], key);
        snprintf(nm, sizeof nm, "dropout_bwd p%.1f n%zu", ps[i], n);
        compare_dev(nm, d_dg, dg, n, TOL_ELEM);
    }
    G->free(d_gate); G->free(d_up); G->free(d_out); G->free(d_dout); G->free(d_dg); G->free(d_du);
    free(gate); free(upv); free(out); free(dout); free(dg); free(du);
}

// ---- log-prob head -------------------------------------------------------------

static void test_logprob(int n, int Nh, int C, int V) {
    char nm[96], shape[64];
    snprintf(shape, sizeof shape, "n%d C%d V%d", n, C, V);
    float *h = frand((size_t)Nh * C, 1.0f), *w = frand((size_t)V * C, 3.0f / sqrtf((float)C));   // logits ~ O(1)
    int *perm = xmalloc((size_t)Nh * sizeof(int)), *tgt = xmalloc((size_t)n * sizeof(int));
    for (int i = 0; i < Nh; i++) perm[i] = i;
    for (int i = Nh - 1; i > 0; i--) { int j = (int)rng_below(&rng, (uint64_t)i + 1), t = perm[i]; perm[i] = perm[j]; perm[j] = t; }
    for (int i = 0; i < n; i++) tgt[i] = i == 0 ? 0 : i == 1 ? V - 1 : (int)rng_below(&rng, (uint64_t)V);
    float *lp = frand(n, 1.0f), *lse = frand(n, 1.0f);
    float *d_h = up(h, (size_t)Nh * C), *d_w = up(w, (size_t)V * C), *d_lp = up(lp, n), *d_lse = up(lse, n);
    int *d_rows = upi(perm, n), *d_tgt = upi(tgt, n);
    H->logprob_fwd(lp, lse, h, w, perm, tgt, n, C, V);
    G->logprob_fwd(d_lp, d_lse, d_h, d_w, d_rows, d_tgt, n, C, V);
    snprintf(nm, sizeof nm, "logprob_fwd logprob %s", shape);
    compare_dev(nm, d_lp, lp, n, TOL_TF32);
    snprintf(nm, sizeof nm, "logprob_fwd lse %s", shape);
    compare_dev(nm, d_lse, lse, n, TOL_TF32);

    float *wt = frand(n, 1.0f);
    for (int i = 0; i < n; i++) wt[i] = i % 5 == 4 ? 0.0f : fabsf(wt[i]);   // weight-0 rows are skipped
    float *d_wt = up(wt, n);
    G->upload(d_lse, lse, (size_t)n * sizeof(float));   // the backward on the CPU's lse
    for (int frozen = 0; frozen < 2; frozen++) {
        float *dh = frand((size_t)Nh * C, 1.0f), *dw = frand((size_t)V * C, 1.0f);
        float *d_dh = up(dh, (size_t)Nh * C), *d_dw = up(dw, (size_t)V * C);
        H->logprob_bwd(dh, frozen ? NULL : dw, h, w, perm, tgt, lse, wt, n, C, V);
        G->logprob_bwd(d_dh, frozen ? NULL : d_dw, d_h, d_w, d_rows, d_tgt, d_lse, d_wt, n, C, V);
        snprintf(nm, sizeof nm, "logprob_bwd dh %s%s", shape, frozen ? " (frozen head)" : "");
        compare_dev(nm, d_dh, dh, (size_t)Nh * C, TOL_TF32_CHAIN);
        if (!frozen) {
            snprintf(nm, sizeof nm, "logprob_bwd dw %s", shape);
            compare_dev(nm, d_dw, dw, (size_t)V * C, TOL_TF32_CHAIN);
        }
        G->free(d_dh); G->free(d_dw);
        free(dh); free(dw);
    }
    G->free(d_h); G->free(d_w); G->free(d_lp); G->free(d_lse); G->free(d_rows); G->free(d_tgt); G->free(d_wt);
    free(h); free(w); free(perm); free(tgt); free(lp); free(lse); free(wt);
}

// ---- optimizer -----------------------------------------------------------------

// adamw_multi over a flat buffer of n values carved into tensors of assorted
// sizes (tiny, odd, the bulk), with and without decay, and a gap of 5 values
// that belongs to no tensor and must stay as it was
static void test_adamw(size_t n) {
    char nm[96];
    const AdamwTensor tab[] = {{0, 1, 0}, {1, 577, 1}, {578, 64, 0}, {647, n - 647 - 3, 1}, {n - 3, 3, 0}};
    const int nt = (int)(sizeof tab / sizeof tab[0]);   // [642, 647) is the gap
    float *p = frand(n, 1.0f), *m = frand(n, 0.01f), *v = frand(n, 1.0f);
    for (size_t i = 0; i < n; i++) v[i] = fabsf(v[i]) * 1e-4f;
    float *d_p = up(p, n), *d_m = up(m, n), *d_v = up(v, n);
    AdamwTensor *d_tab = up_bytes(tab, sizeof tab);
    for (int step = 1; step <= 3; step++) {
        float *g = frand(n, 0.1f), *d_g = up(g, n);
        const float bc1 = 1.0f - powf(0.9f, (float)step), bc2 = 1.0f - powf(0.999f, (float)step);
        const float sc = step == 2 ? 0.5f : 1.0f;
        H->adamw_multi(p, g, m, v, n, tab, nt, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, bc1, bc2, sc);
        G->adamw_multi(d_p, d_g, d_m, d_v, n, d_tab, nt, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, bc1, bc2, sc);
        G->free(d_g); free(g);
    }
    snprintf(nm, sizeof nm, "adamw_multi x3 params n%zu", n);
    compare_dev(nm, d_p, p, n, TOL_ELEM);
    snprintf(nm, sizeof nm, "adamw_multi x3 m n%zu", n);
    compare_dev(nm, d_m, m, n, TOL_ELEM);
    snprintf(nm, sizeof nm, "adamw_multi x3 v n%zu", n);
    compare_dev(nm, d_v, v, n, TOL_ELEM);
    const double s_cpu = H->sumsq(p, n), s_gpu = G->sumsq(d_p, n);
    snprintf(nm, sizeof nm, "sumsq n%zu", n);
    record(nm, fabs(s_gpu - s_cpu) / s_cpu, fabs(s_gpu - s_cpu), TOL_REDUCE);
    G->free(d_p); G->free(d_m); G->free(d_v); G->free(d_tab);
    free(p); free(m); free(v);
}

// ---- DPO -----------------------------------------------------------------------

// relative error of double results d (device) against want (host)
static void compare_f64(const char *name, const double *d, const double *want, size_t n, double tol) {
    double *h = xmalloc((n ? n : 1) * sizeof(double)), num = 0, den = 0, mx = 0;
    G->download(h, d, n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        const double e = fabs(h[i] - want[i]);
        num += e * e; den += want[i] * want[i]; mx = e > mx ? e : mx;
    }
    record(name, den > 0 ? sqrt(num / den) : sqrt(num), mx, tol);
    free(h);
}

// seq_logprob and dpo_loss on np pairs and nrows head rows in shuffled order
// (rows of 2*np sequences, any order allowed). The sequence sums are
// sequential double sums of exact products on both sides: bit-identical. The
// loss side differs only by the device's exp/log1p (a few ulp of a double).
static void test_dpo_ops(int np, int nrows, int weighted) {
    char nm[96];
    const int S = 2 * np;
    float *lp = frand((size_t)nrows, 3.0f), *mask = frand((size_t)nrows, 1.0f);
    int *seq = xmalloc((size_t)nrows * sizeof(int));
    for (int i = 0; i < nrows; i++) { seq[i] = (int)rng_below(&rng, (uint64_t)S); mask[i] = fabsf(mask[i]) + 0.5f; }
    double *ref = xmalloc((size_t)S * sizeof(double)), *pw = xmalloc((size_t)np * sizeof(double));
    for (int i = 0; i < np; i++) pw[i] = 0.5 + rng_uniform(&rng);
    double *slp = xmalloc((size_t)S * sizeof(double)), *w = xmalloc((size_t)S * sizeof(double)), out[DPO_OUT_COUNT];
    float *tw = xmalloc((size_t)nrows * sizeof(float));
    H->seq_logprob(slp, lp, mask, seq, nrows, S);
    for (int s = 0; s < S; s++) ref[s] = slp[s] + 20.0 * (rng_uniform(&rng) - 0.5);   // margins of a few units
    const double beta = 0.1;
    H->dpo_loss(out, w, tw, slp, ref, weighted ? pw : NULL, beta, np, seq, mask, nrows);
    float *d_lp = up(lp, (size_t)nrows), *d_mask = up(mask, (size_t)nrows), *d_tw = G->alloc((size_t)nrows * 4 + 4);
    int *d_seq = upi(seq, (size_t)nrows);
    double *d_slp = G->alloc((size_t)S * 8), *d_w = G->alloc((size_t)S * 8), *d_out = G->alloc(DPO_OUT_COUNT * 8);
    double *d_ref = up_bytes(ref, (size_t)S * 8), *d_pw = up_bytes(pw, (size_t)np * 8);
    G->seq_logprob(d_slp, d_lp, d_mask, d_seq, nrows, S);
    G->dpo_loss(d_out, d_w, d_tw, d_slp, d_ref, weighted ? d_pw : NULL, beta, np, d_seq, d_mask, nrows);
    const char *tag = weighted ? " weighted" : "";
    snprintf(nm, sizeof nm, "seq_logprob rows%d seqs%d", nrows, S);
    compare_f64(nm, d_slp, slp, (size_t)S, TOL_EXACT);
    snprintf(nm, sizeof nm, "dpo_loss loss+stats pairs%d%s", np, tag);
    compare_f64(nm, d_out, out, DPO_OUT_COUNT, 1e-14);
    snprintf(nm, sizeof nm, "dpo_loss pair weights pairs%d%s", np, tag);
    compare_f64(nm, d_w, w, (size_t)S, 1e-14);
    snprintf(nm, sizeof nm, "dpo_loss token weights rows%d%s", nrows, tag);
    compare_dev(nm, d_tw, tw, (size_t)nrows, 1e-7);   // a double rounded to float: at most 1 float ulp apart
    G->free(d_lp); G->free(d_mask); G->free(d_tw); G->free(d_seq); G->free(d_slp); G->free(d_w); G->free(d_out);
    G->free(d_ref); G->free(d_pw);
    free(lp); free(mask); free(seq); free(ref); free(pw); free(slp); free(w); free(tw);
}

// ---- KV cache and decode ops ---------------------------------------------------

// The cache as floats: fp32 on the CPU backend, bf16 [R,P,W] on CUDA (the
// layout backend.h fixes; bf16 is the top half of an fp32).
static float *kv_host(const Backend *be, const void *cache, size_t n) {
    float *x = xmalloc(n * sizeof(float));
    if (be == H) { memcpy(x, cache, n * sizeof(float)); return x; }
    uint16_t *raw = xmalloc(n * sizeof(uint16_t));
    be->download(raw, cache, n * sizeof(uint16_t));
    for (size_t i = 0; i < n; i++) { uint32_t u = (uint32_t)raw[i] << 16; memcpy(&x[i], &u, 4); }
    free(raw);
    return x;
}

static void compare_kv(const char *name, const void *gcache, const float *cpu, size_t n) {
    float *x = kv_host(G, gcache, n);
    compare(name, x, cpu, n, TOL_KV);
    free(x);
}

static void test_decode_ops(int NH, int NKV, int D) {
    char nm[96], shape[64];
    enum { R = 3, S = 5, P = 40 };
    const int W = NKV * D, start[R] = {0, 17, 33}, n_new[R] = {5, 0, 3}, zero[R] = {0, 0, 0};
    snprintf(shape, sizeof shape, "R%d S%d P%d NH%d NKV%d D%d", R, S, P, NH, NKV, D);
    const size_t nc = (size_t)R * P * W;
    float *kc = H->kv_alloc(nc), *vc = H->kv_alloc(nc);
    void *g_kc = G->kv_alloc(nc), *g_vc = G->kv_alloc(nc);
    int *d_start = upi(start, R), *d_new = upi(n_new, R), *d_zero = upi(zero, R), *d_pre = upi(start, R);
    // the old positions, written through kv_write too (the GPU cache is opaque)
    float *k0 = frand(nc, 1.5f), *v0 = frand(nc, 1.0f), *d_k0 = up(k0, nc), *d_v0 = up(v0, nc);
    H->kv_write(kc, k0, zero, start, R, P, P, W);
    H->kv_write(vc, v0, zero, start, R, P, P, W);
    G->kv_write(g_kc, d_k0, d_zero, d_pre, R, P, P, W);
    G->kv_write(g_vc, d_v0, d_zero, d_pre, R, P, P, W);
    float *kn = frand((size_t)R * S * W, 1.5f), *vn = frand((size_t)R * S * W, 1.0f);
    float *d_kn = up(kn, (size_t)R * S * W), *d_vn = up(vn, (size_t)R * S * W);
    H->kv_write(kc, kn, start, n_new, R, S, P, W);
    H->kv_write(vc, vn, start, n_new, R, S, P, W);
    G->kv_write(g_kc, d_kn, d_start, d_new, R, S, P, W);
    G->kv_write(g_vc, d_vn, d_start, d_new, R, S, P, W);
    snprintf(nm, sizeof nm, "kv_write K cache %s", shape);
    compare_kv(nm, g_kc, kc, nc);
    snprintf(nm, sizeof nm, "kv_write V cache %s", shape);
    compare_kv(nm, g_vc, vc, nc);

    const size_t nq = (size_t)R * S * NH * D;
    float *q = frand(nq, 1.5f), *out = frand(nq, 7.0f), *d_q = up(q, nq), *d_out = up(out, nq);
    H->attention_cached_fwd(out, q, kc, vc, start, n_new, R, S, P, NH, NKV, D);
    G->attention_cached_fwd(d_out, d_q, g_kc, g_vc, d_start, d_new, R, S, P, NH, NKV, D);
    snprintf(nm, sizeof nm, "attention_cached_fwd %s", shape);
    compare_dev(nm, d_out, out, nq, TOL_KV);

    // beam reorder: a gather from the state before the call, rows repeated;
    // then only the first 20 positions
    const int src[R] = {2, 0, 0}, src2[R] = {1, 1, 0};
    int *d_src = upi(src, R), *d_src2 = upi(src2, R);
    H->kv_gather(kc, src, R, P, P, W);
    G->kv_gather(g_kc, d_src, R, P, P, W);
    H->kv_gather(kc, src2, R, 20, P, W);
    G->kv_gather(g_kc, d_src2, R, 20, P, W);
    snprintf(nm, sizeof nm, "kv_gather x2 %s", shape);
    compare_kv(nm, g_kc, kc, nc);

    // gather_rows: rows repeat
    const int C = 77, N = 9, rows[9] = {5, 0, 5, 36, 1, 2, 3, 36, 4};
    float *inp = frand(37 * C, 1.0f), *g = frand((size_t)N * C, 1.0f), *d_inp = up(inp, 37 * C), *d_g = up(g, (size_t)N * C);
    int *d_rows = upi(rows, N);
    H->gather_rows(g, inp, rows, N, C);
    G->gather_rows(d_g, d_inp, d_rows, N, C);
    compare_dev("gather_rows N9 C77", d_g, g, (size_t)N * C, TOL_EXACT);

    H->free(kc); H->free(vc); G->free(g_kc); G->free(g_vc);
    G->free(d_start); G->free(d_new); G->free(d_zero); G->free(d_pre); G->free(d_k0); G->free(d_v0);
    G->free(d_kn); G->free(d_vn); G->free(d_q); G->free(d_out); G->free(d_src); G->free(d_src2);
    G->free(d_inp); G->free(d_g); G->free(d_rows);
    free(k0); free(v0); free(kn); free(vn); free(q); free(out); free(inp); free(g);
}

// ---- decoding's token selection ----------------------------------------------------

// logits_lse_topk and gather_cols: N rows of V logits on a coarse grid (ties),
// some -inf, one row all -inf, one with fewer finite entries than k. The top
// ids and values and the gathered logits must be exact (they are copies); the
// normaliser is a reduction (double, another order).
static void test_select_ops(int N, int V, int k) {
    char nm[128];
    float *x = xmalloc((size_t)N * V * sizeof(float));
    for (int n = 0; n < N; n++)
        for (int v = 0; v < V; v++) {
            float t = roundf(8.0f * (float)(2.0 * rng_uniform(&rng) - 1.0)) * 0.5f;
            if (n % 4 == 1 && v % 3 == 0) t = -INFINITY;
            if (n == 2) t = -INFINITY;
            if (n == 3) t = v % 997 == 5 ? (float)(v % 7) : -INFINITY;
            x[(size_t)n * V + v] = t;
        }
    double *lse = xmalloc((size_t)N * sizeof(double)), *g_lse = xmalloc((size_t)N * sizeof(double));
    int *ti = xmalloc((size_t)N * k * sizeof(int)), *g_ti = xmalloc((size_t)N * k * sizeof(int));
    float *tv = xmalloc((size_t)N * k * sizeof(float)), *g_tv = xmalloc((size_t)N * k * sizeof(float));
    float *d_x = up(x, (size_t)N * V);
    double *d_lse = G->alloc((size_t)N * sizeof(double));
    int *d_ti = G->alloc((size_t)N * k * sizeof(int));
    float *d_tv = G->alloc((size_t)N * k * sizeof(float));
    H->logits_lse_topk(lse, ti, tv, x, N, V, k);
    G->logits_lse_topk(d_lse, d_ti, d_tv, d_x, N, V, k);
    G->download(g_lse, d_lse, (size_t)N * sizeof(double));
    G->download(g_ti, d_ti, (size_t)N * k * sizeof(int));
    G->download(g_tv, d_tv, (size_t)N * k * sizeof(float));
    float *fl = xmalloc((size_t)N * sizeof(float)), *g_fl = xmalloc((size_t)N * sizeof(float));
    for (int n = 0; n < N; n++) { fl[n] = (float)lse[n]; g_fl[n] = (float)g_lse[n]; }
    snprintf(nm, sizeof nm, "logits_lse_topk lse N%d V%d", N, V);
    compare(nm, g_fl, fl, (size_t)N, TOL_REDUCE);
    int bad = 0;
    for (size_t i = 0; i < (size_t)N * k; i++) bad += g_ti[i] != ti[i];
    snprintf(nm, sizeof nm, "logits_lse_topk ids N%d V%d k%d (share wrong)", N, V, k);
    record(nm, (double)bad / ((double)N * k), bad, TOL_EXACT);
    snprintf(nm, sizeof nm, "logits_lse_topk values N%d V%d k%d", N, V, k);
    compare(nm, g_tv, tv, (size_t)N * k, TOL_EXACT);
    // lse only (k = 0, no top arrays)
    G->logits_lse_topk(d_lse, NULL, NULL, d_x, N, V, 0);
    G->download(g_lse, d_lse, (size_t)N * sizeof(double));
    for (int n = 0; n < N; n++) g_fl[n] = (float)g_lse[n];
    snprintf(nm, sizeof nm, "logits_lse_topk lse only N%d V%d", N, V);
    compare(nm, g_fl, fl, (size_t)N, TOL_REDUCE);

    // gather_cols: row n takes (n * 37) % 50 columns, row 0 none, repeats allowed
    int *off = xmalloc((size_t)(N + 1) * sizeof(int)), total = 0;
    for (int n = 0; n < N; n++) { off[n] = total; total += (n * 37) % 50; }
    off[N] = total;
    int *cols = xmalloc((size_t)(total ? total : 1) * sizeof(int));
    for (int j = 0; j < total; j++) cols[j] = j % 5 == 0 ? V - 1 : (int)rng_below(&rng, (uint64_t)V);
    float *out = frand((size_t)total, 1.0f), *d_out = up(out, (size_t)total);
    int *d_off = upi(off, (size_t)N + 1), *d_cols = upi(cols, (size_t)total);
    H->gather_cols(out, x, off, cols, N, V);
    G->gather_cols(d_out, d_x, d_off, d_cols, N, V);
    snprintf(nm, sizeof nm, "gather_cols N%d V%d (%d columns)", N, V, total);
    compare_dev(nm, d_out, out, (size_t)total, TOL_EXACT);

    G->free(d_x); G->free(d_lse); G->free(d_ti); G->free(d_tv); G->free(d_out); G->free(d_off); G->free(d_cols);
    free(x); free(lse); free(g_lse); free(ti); free(g_ti); free(tv); free(g_tv); free(fl); free(g_fl);
    free(off); free(cols); free(out);
}

static void test_memory(void) {
    // alloc is zero-filled; copy and zero on the device; upload/download round trip
    const size_t n = 1000003;
    float *x = frand(n, 1.0f), *d_a = G->alloc(n * sizeof(float)), *d_b = G->alloc(n * sizeof(float));
    float *zeros = calloc(n, sizeof(float));
    compare_dev("alloc is zero-filled (n 1000003)", d_a, zeros, n, TOL_EXACT);
    G->upload(d_a, x, n * sizeof(float));
    G->copy(d_b, d_a, n * sizeof(float));
    compare_dev("upload + copy + download (n 1000003)", d_b, x, n, TOL_EXACT);
    G->zero(d_b + 1, (n - 2) * sizeof(float));
    float *want = fcopy(x, n);
    for (size_t i = 1; i < n - 1; i++) want[i] = 0;
    compare_dev("zero of an unaligned range", d_b, want, n, TOL_EXACT);
    G->free(d_a); G->free(d_b);
    free(x); free(zeros); free(want);
}

// ---- whole models ----------------------------------------------------------------

typedef struct {
    float *logits, *logprobs, *seq, loss, *grads;   // grads: the flat gradient buffer, host copy
} DumpOut;

// What `sprec dump` computes (host/cmd_dump.c), on model m and batch b.
static void dump(Model *m, const Batch *b, DumpOut *o) {
    const int B = b->B, T = b->T, V = m->cfg.vocab_size;
    const int n = model_forward(m, b, 1);
    o->logprobs = calloc((size_t)B * T, sizeof(float));
    o->seq = calloc((size_t)B, sizeof(float));
    double mask_sum = 0, weighted = 0, *seq = calloc((size_t)B, sizeof(double));
    for (int i = 0; i < n; i++) {
        const int p = m->head_pos[i];
        o->logprobs[p] = m->head_lp[i];
        mask_sum += b->mask[p];
        weighted += (double)b->mask[p] * m->head_lp[i];
        seq[p / T] += (double)b->mask[p] * m->head_lp[i];
    }
    for (int i = 0; i < B; i++) o->seq[i] = (float)seq[i];
    o->loss = (float)(-weighted / (mask_sum > 0 ? mask_sum : 1));
    o->logits = xmalloc((size_t)B * T * V * sizeof(float));
    model_logits(m, b, o->logits);
    float *w = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int i = 0; i < n; i++) w[i] = (float)(b->mask[m->head_pos[i]] / (mask_sum > 0 ? mask_sum : 1));
    model_zero_grad(m);
    model_backward(m, w);
    o->grads = xmalloc(m->numel * sizeof(float));
    m->be->download(o->grads, m->grads, m->numel * sizeof(float));
    free(w); free(seq);
}
static void dump_free(DumpOut *o) { free(o->logits); free(o->logprobs); free(o->seq); free(o->grads); }

// every parameter's gradient as its own relative error; one line with the worst
static void compare_grads(const char *what, const Model *m, const float *got, float *(*want_of)(void *, const ParamInfo *),
                          void *ctx, double tol) {
    double worst = -1, worst_abs = 0;
    char worst_name[MAX_PARAM_NAME] = "";
    for (int i = 0; i < m->n_params; i++) {
        const ParamInfo *p = &m->table[i];
        float *want = want_of(ctx, p);
        double max_abs, e = rel_err(got + p->offset, want, p->numel, &max_abs);
        if (!(e <= worst)) { worst = e; snprintf(worst_name, sizeof worst_name, "%s", p->name); }
        if (!(max_abs <= worst_abs)) worst_abs = max_abs;
        free(want);
    }
    char nm[256];
    snprintf(nm, sizeof nm, "%.100s every gradient (worst %.95s)", what, worst_name);
    record(nm, worst, worst_abs, tol);
}

typedef struct { hid_t f; const char *path; } H5Ref;
static float *h5_grad(void *ctx, const ParamInfo *p) {
    H5Ref *r = ctx;
    char name[160];
    snprintf(name, sizeof name, "grad/%s", p->name);
    long dims[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
    return h5_read_f32(r->f, r->path, name, p->rank, dims);
}

static void test_fixture(const char *dir) {
    char model[1024], batch[1024], expected[1024], nm[160];
    const char *base = strrchr(dir, '/') + 1;
    snprintf(model, sizeof model, "%.400s/model.h5", dir);
    snprintf(batch, sizeof batch, "%.400s/batch.h5", dir);
    snprintf(expected, sizeof expected, "%.400s/expected.h5", dir);
    ModelConfig mc;
    checkpoint_read_config(model, &mc);
    Model m;
    model_create(&m, &mc, G);
    checkpoint_load(model, &m, NULL, NULL);
    Dataset d;
    dataset_load(&d, batch, mc.vocab_size);
    Batch b = {.B = d.N, .T = d.T, .tokens = d.tokens, .mask = d.mask, .lengths = d.lengths};
    DumpOut o;
    dump(&m, &b, &o);
    hid_t ref = h5_open_read(expected);
    const char *names[] = {"logits", "logprobs", "seq_logprob", "loss"};
    float *got[] = {o.logits, o.logprobs, o.seq, &o.loss};
    for (int i = 0; i < 4; i++) {
        long dims[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
        int rank = h5_shape(ref, expected, names[i], dims);
        float *want = h5_read_f32(ref, expected, names[i], rank, dims);
        size_t n = 1;
        for (int j = 0; j < rank; j++) n *= (size_t)dims[j];
        snprintf(nm, sizeof nm, "HF fixture %s: %s", base, names[i]);
        compare(nm, got[i], want, n, TOL_MODEL_OUT);
        free(want);
    }
    H5Ref r = {ref, expected};
    snprintf(nm, sizeof nm, "HF fixture %s:", base);
    compare_grads(nm, &m, o.grads, h5_grad, &r, TOL_MODEL_GRAD);
    h5_close(ref);
    dump_free(&o);
    dataset_free(&d);
    model_free(&m);
}

static void test_fixtures(void) {
    const char *root = "tests/ref/fixtures";
    DIR *dp = opendir(root);
    if (!dp) { record("HF fixtures present (run from the repository root)", INFINITY, INFINITY, 0); return; }
    char names[64][200];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp)) && n < 64)
        if (e->d_name[0] != '.') snprintf(names[n++], sizeof names[0], "%.199s", e->d_name);
    closedir(dp);
    qsort(names, (size_t)n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    for (int i = 0; i < n; i++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%.199s", root, names[i]);
        test_fixture(dir);
    }
}

// A larger random model than the fixtures: tile-unfriendly sizes, GQA, biases,
// untied head, padding with a 0-length and a full-length sequence.
static const ModelConfig BIG = {.vocab_size = 1000, .dim = 192, .n_layers = 2, .n_heads = 6, .n_kv_heads = 2,
                                .head_dim = 32, .ffn_dim = 520, .max_seq_len = 67, .rope_theta = 10000.0f,
                                .rms_eps = 1e-5f, .tie_embeddings = 0, .qkv_bias = 1};

static void random_model(Model *m, const ModelConfig *c, const Backend *be, uint64_t seed, float std) {
    model_create(m, c, be);
    model_init_random(m, seed, std);
    Rng r;
    rng_seed(&r, seed + 1);
    for (int i = 0; i < m->n_params; i++) {   // init zeroes biases: make them count
        const ParamInfo *p = &m->table[i];
        if (!strstr(p->name, ".bias")) continue;
        float *x = xmalloc(p->numel * sizeof(float));
        for (size_t j = 0; j < p->numel; j++) x[j] = 0.3f * (float)(2.0 * rng_uniform(&r) - 1.0);
        be->upload(m->params + p->offset, x, p->numel * sizeof(float));
        free(x);
    }
}

static Batch random_batch(const ModelConfig *c, int B, int T, const int *len, uint64_t seed) {
    Batch b = {.B = B, .T = T};
    b.tokens = xmalloc((size_t)B * T * sizeof(int));
    b.mask = xcalloc((size_t)B * T, sizeof(float));
    b.lengths = xmalloc((size_t)B * sizeof(int));
    Rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < B; i++) {
        b.lengths[i] = len[i];
        for (int t = 0; t < T; t++) {
            b.tokens[i * T + t] = (int)rng_below(&r, (uint64_t)c->vocab_size);
            b.mask[i * T + t] = t >= 1 && t < len[i] && t >= len[i] / 3 ? 1.0f : 0.0f;
        }
    }
    return b;
}

static float *flat_grad(void *ctx, const ParamInfo *p) { return fcopy((const float *)ctx + p->offset, p->numel); }

// cuda vs cpu on the same random model and batch: logits, log-probs, gradients
static void test_model_vs_cpu(void) {
    const int B = 4, T = 67, len[4] = {67, 45, 0, 1};
    Batch b = random_batch(&BIG, B, T, len, 21);
    Model mc, mg;
    random_model(&mc, &BIG, H, 5, 0.05f);
    random_model(&mg, &BIG, G, 5, 0.05f);
    DumpOut oc, og;
    dump(&mc, &b, &oc);
    dump(&mg, &b, &og);
    compare("model V1000 C192 GQA B4 T67 cuda vs cpu: logits", og.logits, oc.logits, (size_t)B * T * BIG.vocab_size, TOL_MODEL_OUT);
    compare("model V1000 C192 GQA B4 T67 cuda vs cpu: logprobs", og.logprobs, oc.logprobs, (size_t)B * T, TOL_MODEL_OUT);
    compare("model V1000 C192 GQA B4 T67 cuda vs cpu: loss", &og.loss, &oc.loss, 1, TOL_MODEL_OUT);
    compare_grads("model V1000 C192 GQA B4 T67 cuda vs cpu:", &mg, og.grads, flat_grad, oc.grads, TOL_MODEL_GRAD);
    dump_free(&oc); dump_free(&og);
    model_free(&mc); model_free(&mg);
    batch_free(&b);
}

// Two fresh runs of forward + backward + AdamW + forward on the GPU give the
// same bytes (DESIGN.md: no float atomics in weight-gradient reductions).
static void test_determinism(void) {
    const int B = 4, T = 67, len[4] = {67, 45, 0, 1};
    Batch b = random_batch(&BIG, B, T, len, 22);
    float *lp[2], *grads[2], *params[2];
    size_t numel = 0;
    int n = 0;
    for (int run = 0; run < 2; run++) {
        Model m;
        random_model(&m, &BIG, G, 9, 0.05f);
        AdamW opt;
        adamw_create(&opt, &m, 0.9f, 0.999f, 1e-8f, 0.1f, 1.0f, 0);
        n = model_forward(&m, &b, 0);
        float *w = xmalloc((size_t)n * sizeof(float));
        for (int i = 0; i < n; i++) w[i] = 1.0f / (float)n;
        model_zero_grad(&m);
        model_backward(&m, w);
        numel = m.numel;
        grads[run] = xmalloc(numel * sizeof(float));
        G->download(grads[run], m.grads, numel * sizeof(float));
        adamw_step(&opt, &m, 1e-3f);
        params[run] = xmalloc(numel * sizeof(float));
        G->download(params[run], m.params, numel * sizeof(float));
        model_forward(&m, &b, 0);    // and the forward after the update
        lp[run] = fcopy(m.head_lp, (size_t)n);
        free(w);
        adamw_free(&opt, &m);
        model_free(&m);
    }
    const int same_g = !memcmp(grads[0], grads[1], numel * sizeof(float));
    const int same_p = !memcmp(params[0], params[1], numel * sizeof(float));
    const int same_l = !memcmp(lp[0], lp[1], (size_t)n * sizeof(float));
    double max_abs;
    double e = rel_err(grads[1], grads[0], numel, &max_abs);
    record("determinism: 2 runs fwd+bwd, gradients bit-identical", same_g ? 0 : fmax(e, 1e-30), same_g ? 0 : max_abs, TOL_EXACT);
    e = rel_err(params[1], params[0], numel, &max_abs);
    record("determinism: 2 runs + AdamW, params bit-identical", same_p ? 0 : fmax(e, 1e-30), same_p ? 0 : max_abs, TOL_EXACT);
    e = rel_err(lp[1], lp[0], (size_t)n, &max_abs);
    record("determinism: 2 runs, next forward log-probs bit-identical", same_l ? 0 : fmax(e, 1e-30), same_l ? 0 : max_abs, TOL_EXACT);
    for (int i = 0; i < 2; i++) { free(lp[i]); free(grads[i]); free(params[i]); }
    batch_free(&b);
}

// logits after the last token of seq[0..n) by the training forward on the whole prefix
static void full_logits(Model *m, const int *seq, int n, float *out) {
    const int V = m->cfg.vocab_size;
    float *mask = calloc((size_t)n, sizeof(float)), *all = xmalloc((size_t)n * V * sizeof(float));
    Batch b = {.B = 1, .T = n, .tokens = (int *)seq, .mask = mask, .lengths = &n};
    model_forward(m, &b, 1);
    model_logits(m, &b, all);
    memcpy(out, all + (size_t)(n - 1) * V, (size_t)V * sizeof(float));
    free(mask); free(all);
}

// As tests/unit/test_generate.c on the CPU: prefill three prompts of different
// lengths in 2-column chunks, then decode steps where rows sometimes sit out;
// every logits row vs the training forward on the row's whole prefix.
static void test_decode_vs_full(const ModelConfig *c, const char *what) {
    enum { R = 3, PMAX = 24, STEPS = 6 };
    static const int P0[] = {3, 1, 4, 1, 5, 9, 2}, P1[] = {9}, P2[] = {2, 6, 5};
    const int *const prompts[R] = {P0, P1, P2};
    const int lens[R] = {7, 1, 3};
    Model m;
    random_model(&m, c, G, 42, 0.3f);
    const int V = c->vocab_size;
    Decoder d;
    decoder_create(&d, &m, R, PMAX, R * 2);
    float *lg = xmalloc((size_t)R * V * sizeof(float)), *want = xmalloc((size_t)R * V * sizeof(float));
    float *got_all = xmalloc((size_t)R * V * (STEPS + 1) * sizeof(float)), *want_all = xmalloc((size_t)R * V * (STEPS + 1) * sizeof(float));
    size_t k = 0;
    int seq[R][PMAX], len[R];
    for (int r = 0; r < R; r++) { memcpy(seq[r], prompts[r], sizeof(int) * (size_t)lens[r]); len[r] = lens[r]; }
    decoder_prefill(&d, prompts, lens, R, lg);
    Rng tr;
    rng_seed(&tr, 5);
    for (int step = 0; step <= STEPS; step++) {
        for (int r = 0; r < R; r++) {
            if (step > 0 && (step + r) % 3 == 0) continue;   // this row sat out the step
            full_logits(&m, seq[r], len[r], want);
            memcpy(got_all + k * V, lg + (size_t)r * V, (size_t)V * sizeof(float));
            memcpy(want_all + k * V, want, (size_t)V * sizeof(float));
            k++;
        }
        if (step == STEPS) break;
        int tok[R], n_new[R];
        for (int r = 0; r < R; r++) {
            n_new[r] = (step + 1 + r) % 3 != 0;
            tok[r] = (int)rng_below(&tr, (uint64_t)V);
            if (n_new[r]) seq[r][len[r]++] = tok[r];
        }
        decoder_step(&d, tok, n_new, R, 1, lg);
    }
    char nm[160];
    snprintf(nm, sizeof nm, "decode (KV cache) vs full recompute: %s", what);
    compare(nm, got_all, want_all, k * V, TOL_KV);
    decoder_free(&d);
    free(lg); free(want); free(got_all); free(want_all);
    model_free(&m);
}

// ---- main ------------------------------------------------------------------------

int main(int argc, char **argv) {
    int quick = 0;
    const char *json_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[++i];
        else { fprintf(stderr, "usage: %s [--quick] [--json FILE]\n", argv[0]); return 2; }
    }
    const char *self = getenv("SPREC_TEST_GPU_SELFTEST");
    H = backend_cpu();
    if (self && *self == '1') {
        G = backend_cpu();
        printf("test_gpu: SELF-TEST: the CPU backend stands in for CUDA (checks this harness only)\n");
    } else {
        int count = 0;
        cudaError_t err = cudaGetDeviceCount(&count);
        if (err != cudaSuccess || count == 0) {
            printf("test_gpu: skipped: no usable GPU (%s)\n", err != cudaSuccess ? cudaGetErrorString(err) : "0 devices");
            return 77;
        }
        G = backend_cuda();
        if (!G) { printf("test_gpu: skipped: this build has no CUDA backend\n"); return 77; }
        struct cudaDeviceProp prop;
        if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
            printf("test_gpu: %s (sm_%d%d, %.0f GiB), backend '%s'\n", prop.name, prop.major, prop.minor,
                   (double)prop.totalGlobalMem / (1 << 30), G->name);
    }
    const char *tf32 = getenv("SPREC_CUDA_TF32");
    if (tf32 && !strcmp(tf32, "0")) {   // full fp32 GEMMs: only summation order differs
        TOL_TF32 = 1e-5; TOL_TF32_CHAIN = 2e-5; TOL_MODEL_OUT = 1e-4; TOL_MODEL_GRAD = 1e-4;
        printf("test_gpu: SPREC_CUDA_TF32=0: fp32 GEMM tolerances\n");
    }
    if (json_path && !(json_out = fopen(json_path, "w"))) { perror(json_path); return 2; }
    h5_quiet();
    rng_seed(&rng, 20240611);

    printf("\n== ops: CUDA vs CPU ==\n");
    test_memory();
    test_matmul(37, 77, 130, 1);
    test_matmul(37, 77, 130, 0);
    test_matmul(300, 576, 1536, 1);       // a SmolLM2-sized projection
    test_matmul(1, 64, 7, 1);
    test_embedding(37, 77, 1000);
    test_rmsnorm(37, 77);
    test_rmsnorm(67, 576);
    test_rope(2, 67, 6, 64);
    test_rope(2, 67, 2, 80);
    const int len4[4] = {67, 0, 1, 40}, len2[2] = {200, 131}, len3[3] = {13, 5, 9};
    test_attention(4, 67, 6, 2, 64, len4);
    test_attention(4, 67, 6, 2, 80, len4);
    test_attention(4, 67, 4, 4, 64, len4);   // MHA
    test_attention(2, 200, 6, 2, 64, len2);  // several key tiles
    test_attention(3, 13, 4, 2, 8, len3);    // the fixtures' tiny heads
    test_elementwise(37 * 130 + 1);
    test_elementwise(1 << 20);
    test_logprob(300, 320, 77, 1000);
    if (!quick) test_logprob(300, 320, 576, 49152);
    test_adamw(10007);
    test_adamw(1000003);
    test_dpo_ops(8, 700, 0);
    test_dpo_ops(37, 5000, 1);     // several shared-memory tiles, more pairs than a warp
    test_decode_ops(6, 2, 64);
    test_decode_ops(6, 2, 80);
    test_select_ops(40, 49152, 40);   // a 20-beam step over SmolLM2's vocabulary
    test_select_ops(7, 1009, 64);
    test_select_ops(3, 5, 8);         // k > V: padding

    printf("\n== whole models ==\n");
    test_fixtures();
    test_model_vs_cpu();
    test_determinism();
    ModelConfig tiny = {.vocab_size = 40, .dim = 32, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 8,
                        .ffn_dim = 48, .max_seq_len = 24, .rope_theta = 10000.0f, .rms_eps = 1e-5f,
                        .tie_embeddings = 1, .qkv_bias = 0};
    test_decode_vs_full(&tiny, "tiny GQA tied D8");
    ModelConfig big = BIG;
    test_decode_vs_full(&big, "V1000 C192 GQA bias D32");

    printf("\n| check | rel error | max abs error | tolerance | result |\n|---|---|---|---|---|\n");
    for (int i = 0; i < n_results; i++) {
        const Result *r = &results[i];
        printf("| %s | %.2e | %.2e | %.0e | %s |\n", r->name, r->rel, r->max_abs, r->tol, r->pass ? "pass" : "FAIL");
    }
    printf("\ntest_gpu: %d checks, %d failed\n", n_results, n_failed);
    if (json_out) fclose(json_out);
    return n_failed ? 1 : 0;
}
