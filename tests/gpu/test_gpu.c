// build/test_gpu (`make test-gpu`, tests/gpu/run.sh): the CUDA backend against
// two CPU oracles (kernels/backend.h, "Two element types"):
//   [cpu]       the fp32 CPU backend, itself tested against double-precision
//               references and Hugging Face in tests/unit: CUDA stores act
//               values (activations, the compute copy of the weights) in bf16,
//               so against fp32 the tolerances are bf16-sized;
//   [cpu-bf16]  the CPU's bf16 emulation (backend_cpu_bf16(), the same ops with
//               every act input widened and every act output rounded once):
//               the same storage as CUDA, so only accumulation order and a few
//               documented internal roundings differ and the tolerances are
//               much tighter.
// Act inputs are generated in fp32 and rounded to bf16 on the host first, so
// every backend sees exactly the same values (the fp32 oracle gets the rounded
// values in fp32); act outputs come back through act_download (host/model/act.h).
// The checks form one table (`checks[]`, near the end; `--list` prints it), in
// the order they run, each named by its op (or model test) and shape:
//   ops-real  single ops at the sizes where the first failures would be: the
//             log-prob head over several chunks with a short last one (V
//             128,256 and 49,152), the two-stage bias sum (N 2,500), the
//             embedding sort past 4,096 rows with 17-bit keys, attention at
//             32/8 heads, D 64 and 128, T 512 and 2,048 with ragged lengths,
//             cuBLASLt on 2-byte-aligned views (C 77, OC 7);
//   ops       every op of kernels/backend.h, forward and backward, on fresh
//             seeded random inputs at sizes that are not multiples of any tile
//             (N=37, C=77, OC=130, T=67, D=64 and 80, GQA 6/2, lengths with a
//             0 and a full one); padded rows of inputs hold NaN (the contract
//             says they are never read) and gradient outputs start non-zero
//             (the contract says *_bwd adds; the error of a gradient is
//             measured on what the op added);
//   models    whole models through host/ code: the Hugging Face fixtures
//             (tests/ref/fixtures) vs the fixture values and vs cpu-bf16, a
//             larger random model, its SFT and DPO steps cuda vs cpu and vs
//             cpu-bf16, two forward+backward+AdamW runs bit-identical (memcmp);
//   steps     one SFT and one DPO step of the Llama-3.2-1B shape (random
//             weights, a few rows) vs cpu-bf16;
//   decode    KV-cache decoding == full recompute on the GPU.
// Each result prints its relative error ||gpu - ref|| / ||ref||, its max abs
// error, its tolerance and PASS/FAIL; a table at the end; exit 1 if any fails,
// 77 (skipped) when no GPU is usable. A child process runs the checks; a check
// that ends it (a CUDA error, a fault) or outlasts --check-timeout is failed by
// name and a new child carries on with the next one. `test_gpu --help` lists
// the options (--only, --group, --quick, --sizes, --inline, ...).
//   SPREC_TEST_GPU_SELFTEST=1   the bf16 emulation (backend_cpu_bf16(), the
//                       same act storage as CUDA) stands in for CUDA, at the
//                       ci sizes: checks this harness on a machine without a
//                       GPU (tests/gpu/selftest.sh, in `make test`). The errors
//                       against [cpu-bf16] are then 0 and those against [cpu]
//                       are the pure cost of bf16 storage, which checks that the
//                       bf16 tolerances below are neither too tight nor absurd.
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <poll.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cuda_runtime_api.h>
#include "kernels/backend.h"
#include "model/act.h"
#include "kernels/errors.h"
#include "io/checkpoint.h"
#include "io/dataset.h"
#include "train/dpo.h"
#include "train/sft_step.h"
#include "gen/generate.h"
#include "base/h5io.h"
#include "model/model.h"
#include "model/optimizer.h"
#include "base/rng.h"

// ---- tolerances (on the relative error ||gpu - ref|| / ||ref||) ---------------
// bf16 keeps 8 significant bits; round to nearest even moves a value by at most
// its unit roundoff u = 2^-8 (3.9e-3) relative, |bf16(x) - x| <= u |x|, so
// an array rounded once is within u of the fp32 one in relative norm (random
// data: ~1.5e-3, the rms of the rounding error).
#define BF16_U 0x1p-8

// -- against the fp32 CPU backend [cpu] --
// Copies (embedding lookup, gather_rows, the KV cache, which receives act
// values that are bf16 already) and single IEEE operations on fp32 (scale) must
// be exact.
#define TOL_EXACT 0.0
// An act output rounded once to bf16 (matmul_fwd, rmsnorm, rope, attention,
// swiglu, add, dropout, scale_act, the compute copy of AdamW), or an fp32
// result of which one operand was rounded once to bf16 (matmul_bwd rounds dout
// for its GEMMs; the log-prob head's backward rounds its logit gradients):
// <= u by the bound above, plus the fp32 op's own differences (TOL_GEMM and
// less); measured 1.3e-3 .. 2.0e-3 (the self-test). 2u leaves room for
// cancellation in sums of rounded terms and still catches any indexing bug.
#define TOL_F32_ONCE (2 * BF16_U)
// fp32 outputs computed from the same (bf16-exact) inputs on both sides:
// elementwise arithmetic (dropout's and rope's backward, AdamW), possibly
// contracted into FMAs differently by nvcc and gcc: ~1 ulp.
#define TOL_ELEM 1e-6
// Transcendentals (silu's exp) and reductions over a row or column (rmsnorm,
// the embedding gradient's sums over repeated tokens, sum of squares): other
// summation orders and exp implementations, a few ulp times sqrt(length).
#define TOL_REDUCE 1e-5
// GEMMs on tensor cores with bf16 operands and fp32 accumulation (fp32
// outputs: matmul_bwd against the emulation, which rounds dout as CUDA does;
// the log-prob head's forward): the products of bf16 values are exact in fp32,
// so only the accumulation differs from the CPU's fp32 GEMM: ~1e-6 with IEEE
// adds, but tensor cores align and truncate inside their fp32 accumulator, an
// error that grows ~K * 2^-23 relative (up to ~1e-4 at K = 1536). 5e-4 is
// still 3x below one bf16 rounding of an operand (~1.5e-3), so a stray extra
// rounding shows, and an indexing bug is O(1).
#define TOL_GEMM 5e-4
// Attention is plain fp32 on CUDA cores (kernels/cuda/attention.cu, flash
// style, bf16 tiles widened on load): only the order of the online-softmax
// sums and exp differ from the CPU. The backward subtracts rowsum(dout*out)
// and loses a digit to cancellation.
#define TOL_ATTN 1e-5
#define TOL_ATTN_BWD 5e-5
// Whole models (2 layers, every op chained, ~10 act roundings per layer,
// amplified through the layers, the softmax and, for gradients, sums with
// cancellation such as bias and norm-weight gradients) vs Hugging Face's fp32
// values and vs the fp32 CPU backend. The bf16 emulation in their place
// (SPREC_TEST_GPU_SELFTEST=1) measures the pure storage cost: logits 0.9e-2 ..
// 1.5e-2, log-probs <= 2.6e-3, losses <= 1.5e-3, the worst parameter's
// gradient 2.0e-2 .. 3.9e-2 (a qkv bias); about 2x margin on each, and an indexing
// bug is still O(1).
#define TOL_MODEL_OUT 3e-2
#define TOL_MODEL_GRAD 8e-2
// KV-cache decoding vs the training forward over the whole prefix, both on the
// GPU with bf16 activations and cache: the cache holds exactly the k/v the
// training forward stores, but the two paths differ in GEMM shapes (one row
// vs the batch), attention kernels and hence in which values flip by one bf16
// ulp; random weights of std 0.3 amplify that. 1e-2 as before bf16 storage.
#define TOL_DECODE 1e-2

// -- against the bf16 emulation [cpu-bf16] (same act storage as CUDA) --
// An act output of the same fp32 arithmetic rounded once on both sides: equal
// except where the two fp32 results straddle a bf16 rounding boundary and round
// to neighbours (one ulp, <= 2u). With fp32 results ~1e-6 apart that is ~1e-3
// of the elements, ~1e-4 in relative norm; 1e-3 still fails a truncating or
// double rounding (1.5e-3 .. 4e-3 on random data). Add and scale_act (one IEEE
// operation, then the rounding) use TOL_EXACT.
#define TOL_EMU_ACT 1e-3
// matmul_fwd's act output: its fp32 sums differ by up to TOL_GEMM (above), so
// up to ~1% of the elements flip at K = 576: ~6e-4 in norm; 2e-3 for that,
// still half of what a truncating rounding costs.
#define TOL_EMU_GEMM_ACT 2e-3
// Whole models vs the emulation (0 in the self-test, by construction): the
// forward differs only by the flips above (~1e-4 per stored tensor, amplified
// ~10x as the storage error is, so ~1e-3); the gradients also by flips in the
// log-prob head's bf16 logit gradient (CUDA's expf vs the CPU's exp, both then
// rounded), amplified up to ~5x in the worst parameter's sum: ~1e-2 at most.
// Both still 4-6x below the fp32 tolerances. (Estimates: no GPU has run them.)
#define TOL_EMU_MODEL_OUT 5e-3
#define TOL_EMU_MODEL_GRAD 2e-2

// ---- results -------------------------------------------------------------------

typedef struct { char name[200]; double rel, max_abs, tol; int pass, check; } Result;   // check: table index
static Result results[1024];
static int n_results, n_failed;
static FILE *json_out;
static int cur_check = -1;    // the entry of the check table now running
static int msg_fd = -1;       // in a child of the check runner: the pipe to the parent
static const char *check_name(int i);
static void send_msg(int kind, int check, const Result *r);
enum { MSG_BEGIN, MSG_RESULT, MSG_END };

static void result_add(const Result *r) {
    if (n_results < (int)(sizeof results / sizeof results[0])) results[n_results++] = *r;
    if (json_out)
        fprintf(json_out, "{\"test\": \"%s\", \"check\": \"%s\", \"rel_err\": %.6e, \"max_abs_err\": %.6e, "
                "\"tol\": %.1e, \"pass\": %s}\n", r->check >= 0 ? check_name(r->check) : "-", r->name,
                isfinite(r->rel) ? r->rel : 1e300, isfinite(r->max_abs) ? r->max_abs : 1e300, r->tol,
                r->pass ? "true" : "false");
    if (json_out) fflush(json_out);   // a run killed at its time limit keeps every line so far
    n_failed += !r->pass;
}

static void record(const char *name, double rel, double max_abs, double tol) {
    Result r = {.rel = rel, .max_abs = max_abs, .tol = tol, .pass = rel <= tol, .check = cur_check};   // NaN fails
    snprintf(r.name, sizeof r.name, "%s", name);
    printf("%-70s rel %.2e  max abs %.2e  tol %.1e  %s\n", name, rel, max_abs, tol, r.pass ? "PASS" : "FAIL");
    fflush(stdout);
    if (msg_fd >= 0) send_msg(MSG_RESULT, cur_check, &r);
    else result_add(&r);
}

// ||(got - base) - (want - base)|| / ||want - base|| (plain norm when that is
// 0; base NULL: 0), in double: with base = the initial contents of a gradient
// buffer, the error of what a *_bwd added. A NaN where the reference has the
// same NaN/inf is a match; anywhere else it is an infinite error.
static double rel_err_inc(const float *got, const float *want, const float *base, size_t n, double *max_abs) {
    double num = 0, den = 0;
    *max_abs = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(want[i]) || !isfinite(got[i])) {
            if (isnan(want[i]) ? isnan(got[i]) : got[i] == want[i]) continue;
            *max_abs = INFINITY;
            return INFINITY;
        }
        const double b = base ? base[i] : 0.0, w = (double)want[i] - b;
        const double d = (double)got[i] - want[i];
        num += d * d;
        den += w * w;
        if (fabs(d) > *max_abs) *max_abs = fabs(d);
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
static double rel_err(const float *got, const float *want, size_t n, double *max_abs) {
    return rel_err_inc(got, want, NULL, n, max_abs);
}

static void compare(const char *name, const float *got, const float *want, size_t n, double tol) {
    double max_abs, rel = rel_err(got, want, n, &max_abs);
    record(name, rel, max_abs, tol);
}
// a gradient that was added into buffers starting as base
static void compare_inc(const char *name, const float *got, const float *want, const float *base, size_t n,
                        double tol) {
    double max_abs, rel = rel_err_inc(got, want, base, n, &max_abs);
    record(name, rel, max_abs, tol);
}
// got against both oracles: the fp32 CPU (f32) and the bf16 emulation (emu)
static void compare2(const char *name, const float *got, const float *f32, const float *emu, size_t n,
                     double tol_f32, double tol_emu) {
    char nm[200];
    snprintf(nm, sizeof nm, "%.180s [cpu]", name);
    compare(nm, got, f32, n, tol_f32);
    snprintf(nm, sizeof nm, "%.180s [cpu-bf16]", name);
    compare(nm, got, emu, n, tol_emu);
}
static void compare2_inc(const char *name, const float *got, const float *f32, const float *emu, const float *base,
                         size_t n, double tol_f32, double tol_emu) {
    char nm[200];
    snprintf(nm, sizeof nm, "%.180s [cpu]", name);
    compare_inc(nm, got, f32, base, n, tol_f32);
    snprintf(nm, sizeof nm, "%.180s [cpu-bf16]", name);
    compare_inc(nm, got, emu, base, n, tol_emu);
}

// ---- the backends and buffers on them ------------------------------------------

static const Backend *G;                 // under test (CUDA)
static const Backend *H;                 // oracle: the fp32 CPU backend (act = fp32)
static const Backend *E;                 // oracle: the CPU's bf16 emulation (act = bf16, as CUDA)
static Rng rng;

static float *frand(size_t n, float scale) {
    float *x = xmalloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = scale * (float)(2.0 * rng_uniform(&rng) - 1.0);
    return x;
}
static float bf16_round(float x) { return f32_from_bf16(bf16_from_f32(x)); }
// act input data: fp32 random values rounded to bf16 on the host, so every
// backend (the fp32 one included) computes from exactly the same values
static float *brand(size_t n, float scale) {
    float *x = frand(n, scale);
    for (size_t i = 0; i < n; i++) x[i] = bf16_round(x[i]);
    return x;
}
static float *fcopy(const float *x, size_t n) {
    float *y = xmalloc((n ? n : 1) * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}
static void *put_bytes(const Backend *be, const void *h, size_t bytes) {
    void *d = be->alloc(bytes ? bytes : 4);
    if (bytes) be->upload(d, h, bytes);
    return d;
}
static int *puti(const Backend *be, const int *h, size_t n) { return put_bytes(be, h, n * sizeof(int)); }
// Views: a buffer of off + n elements whose elements [off, off + n) hold h
// (the first off hold zeros the op must not need). off = 0: the whole buffer.
// an act buffer holding h (rounded as the backend stores) from element off
static void *put_act_at(const Backend *be, const float *h, size_t n, size_t off) {
    void *d = act_alloc(be, off + n ? off + n : 1);
    if (n) act_upload(be, act_at(be, d, off), h, n);
    return d;
}
static void *put_act(const Backend *be, const float *h, size_t n) { return put_act_at(be, h, n, 0); }
static float *put_at(const Backend *be, const float *h, size_t n, size_t off) {
    float *d = be->alloc((off + n ? off + n : 1) * sizeof(float));
    if (n) be->upload(d + off, h, n * sizeof(float));
    return d;
}
static float *put(const Backend *be, const float *h, size_t n) { return put_at(be, h, n, 0); }
static float *get(const Backend *be, const float *d, size_t n) {
    float *h = xmalloc((n ? n : 1) * sizeof(float));
    if (n) be->download(h, d, n * sizeof(float));
    return h;
}
static float *get_act_at(const Backend *be, const void *d, size_t n, size_t off) {
    float *h = xmalloc((n ? n : 1) * sizeof(float));
    if (n) act_download(be, h, act_at(be, d, off), n);
    return h;
}
static float *get_act(const Backend *be, const void *d, size_t n) { return get_act_at(be, d, n, 0); }
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
static void free3(float *x[3]) { for (int s = 0; s < 3; s++) free(x[s]); }

// The backends every op test runs on: [0] under test, [1] fp32 CPU, [2] bf16 emulation.
#define NB 3
static const Backend *be_of(int s) { return s == 0 ? G : s == 1 ? H : E; }

// ---- memory and act storage ------------------------------------------------------

static void test_memory(void) {
    // alloc is zero-filled; copy and zero on the device; upload/download round trip
    const size_t n = 1000003;
    float *x = frand(n, 1.0f), *d_a = G->alloc(n * sizeof(float)), *d_b = G->alloc(n * sizeof(float));
    float *zeros = calloc(n, sizeof(float)), *h;
    h = get(G, d_a, n);
    compare("alloc is zero-filled (n 1000003)", h, zeros, n, TOL_EXACT);
    free(h);
    G->upload(d_a, x, n * sizeof(float));
    G->copy(d_b, d_a, n * sizeof(float));
    h = get(G, d_b, n);
    compare("upload + copy + download (n 1000003)", h, x, n, TOL_EXACT);
    free(h);
    G->zero(d_b + 1, (n - 2) * sizeof(float));
    float *want = fcopy(x, n);
    for (size_t i = 1; i < n - 1; i++) want[i] = 0;
    h = get(G, d_b, n);
    compare("zero of an unaligned range", h, want, n, TOL_EXACT);
    free(h);

    // act buffers: zero-filled; act_upload + copy + act_download keeps bf16
    // values exactly and rounds fp32 ones to nearest even (host/model/act.c)
    void *a_a = act_alloc(G, n), *a_b = act_alloc(G, n);
    h = get_act(G, a_a, n);
    compare("act_alloc is zero-filled (n 1000003)", h, zeros, n, TOL_EXACT);
    free(h);
    float *xr = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) xr[i] = G->act_bytes == 2 ? bf16_round(x[i]) : x[i];
    act_upload(G, a_a, x, n);
    G->copy(a_b, a_a, n * G->act_bytes);
    h = get_act(G, a_b, n);
    compare("act_upload (rounds) + copy + act_download (n 1000003)", h, xr, n, TOL_EXACT);
    free(h);

    // act_from_f32 == bf16_from_f32 bit for bit: random fp32 bit patterns (every
    // exponent, NaNs with payloads, infinities, subnormals), exact ties (low
    // half 0x8000, both parities), the overflow edge, signed zeros
    uint32_t *bits = xmalloc(n * sizeof(uint32_t));
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)(rng_u64(&rng) >> 32);
        switch (i % 8) {
        case 0: case 1: case 2: break;                                  // any pattern
        case 3: u = (u & 0xffff0000u) | 0x8000u; break;                 // a tie
        case 4: u = (u & 0x807fffffu) | 0x3f000000u; break;             // around 0.5 .. 1
        case 5: u = (u & 0x8000ffffu) | 0x7f7f0000u; break;             // near FLT_MAX: may round to inf
        case 6: u = u & 0x807fffffu; break;                             // subnormals and zeros
        default: u = (u & 0x803fffffu) | 0x7f800000u; break;            // NaN (or inf when the mantissa is 0)
        }
        bits[i] = u;
    }
    bits[0] = 0; bits[1] = 0x80000000u; bits[2] = 0x7f800000u; bits[3] = 0xff800000u; bits[4] = 0x7fc00000u;
    bits[5] = 0x7f7fffffu; bits[6] = 0x3f808000u; bits[7] = 0x3f818000u; bits[8] = 0x00000001u;
    float *f = xmalloc(n * sizeof(float));
    memcpy(f, bits, n * sizeof(float));
    float *d_f = put(G, f, n);
    void *a_c = act_alloc(G, n);
    G->act_from_f32(a_c, d_f, n);
    size_t bad = 0;
    if (G->act_bytes == 2) {
        uint16_t *raw = xmalloc(n * sizeof(uint16_t));
        G->download(raw, a_c, n * sizeof(uint16_t));
        for (size_t i = 0; i < n; i++) bad += raw[i] != bf16_from_f32(f[i]);
        free(raw);
    } else {
        uint32_t *raw = xmalloc(n * sizeof(uint32_t));
        G->download(raw, a_c, n * sizeof(uint32_t));
        bad = (size_t)(memcmp(raw, bits, n * sizeof(uint32_t)) != 0) * n;
        free(raw);
    }
    record("act_from_f32 == bf16_from_f32 bit for bit (share wrong, n 1000003)", (double)bad / (double)n,
           (double)bad, TOL_EXACT);
    G->free(d_a); G->free(d_b); G->free(a_a); G->free(a_b); G->free(a_c); G->free(d_f);
    free(x); free(zeros); free(want); free(xr); free(bits); free(f);
}

// ---- dense ops -----------------------------------------------------------------

// view = 1: every operand is a view one row (or, for the weight and bias, one
// element) into a larger buffer, as the model's flat weight buffer and row
// views of activations are: with C or OC odd the act pointers are then only
// 2-byte aligned (the cuBLASLt alignment fallback, kernels/cuda/matmul.cu).
static void test_matmul(int N, int C, int OC, int bias, int view) {
    char nm[128], shape[64];
    snprintf(shape, sizeof shape, "N%d C%d OC%d%s%s", N, C, OC, bias ? " +bias" : "", view ? " (views)" : "");
    const size_t ni = (size_t)N * C, nw = (size_t)OC * C, no = (size_t)N * OC;
    // element offsets of the views into their buffers
    const size_t o_in = view ? (size_t)C : 0, o_w = view ? 1 : 0, o_out = view ? (size_t)OC : 0;
    float *inp = brand(ni, 1.0f), *w = brand(nw, 1.0f), *b = bias ? brand(OC, 1.0f) : NULL;
    float *junk = brand(no, 1.0f), *out[NB];
    for (int s = 0; s < NB; s++) {
        const Backend *be = be_of(s);
        void *d_inp = put_act_at(be, inp, ni, o_in), *d_w = put_act_at(be, w, nw, o_w);
        void *d_b = bias ? put_act_at(be, b, OC, o_w) : NULL, *d_out = put_act_at(be, junk, no, o_out);
        be->matmul_fwd(act_at(be, d_out, o_out), act_at(be, d_inp, o_in), act_at(be, d_w, o_w),
                       bias ? act_at(be, d_b, o_w) : NULL, N, C, OC);
        out[s] = get_act_at(be, d_out, no, o_out);
        be->free(d_inp); be->free(d_w); if (d_b) be->free(d_b); be->free(d_out);
    }
    snprintf(nm, sizeof nm, "matmul_fwd %s", shape);
    compare2(nm, out[0], out[1], out[2], no, TOL_F32_ONCE, TOL_EMU_GEMM_ACT);
    free3(out);

    // all three gradients, then each one alone (NULL = not needed), adding into
    // non-zero buffers; dout is fp32 (not bf16-exact): CUDA and cpu-bf16 round
    // it for the GEMMs, the fp32 CPU does not
    float *dout = frand(no, 1.0f);
    for (int variant = 0; variant < 3; variant++) {
        const int want_inp = variant != 1, want_w = variant != 2, want_b = bias && variant == 0;
        float *dinp0 = frand(ni, 1.0f), *dw0 = frand(nw, 1.0f), *db0 = frand(OC, 1.0f);
        float *dinp[NB], *dw[NB], *db[NB];
        for (int s = 0; s < NB; s++) {
            const Backend *be = be_of(s);
            void *d_inp = put_act_at(be, inp, ni, o_in), *d_w = put_act_at(be, w, nw, o_w);
            float *d_dout = put_at(be, dout, no, o_out), *g_dinp = put_at(be, dinp0, ni, o_in);
            float *g_dw = put_at(be, dw0, nw, o_w), *g_db = put_at(be, db0, OC, o_w);
            be->matmul_bwd(want_inp ? g_dinp + o_in : NULL, want_w ? g_dw + o_w : NULL, want_b ? g_db + o_w : NULL,
                           d_dout + o_out, act_at(be, d_inp, o_in), act_at(be, d_w, o_w), N, C, OC);
            dinp[s] = get(be, g_dinp + o_in, ni); dw[s] = get(be, g_dw + o_w, nw); db[s] = get(be, g_db + o_w, OC);
            be->free(d_inp); be->free(d_w); be->free(d_dout); be->free(g_dinp); be->free(g_dw); be->free(g_db);
        }
        const char *tag = variant == 0 ? "" : variant == 1 ? " (dw only)" : " (dinp only)";
        snprintf(nm, sizeof nm, "matmul_bwd dinp %s%s", shape, tag);
        if (want_inp) compare2_inc(nm, dinp[0], dinp[1], dinp[2], dinp0, ni, TOL_F32_ONCE, TOL_GEMM);
        else compare(nm, dinp[0], dinp0, ni, TOL_EXACT);
        snprintf(nm, sizeof nm, "matmul_bwd dw %s%s", shape, tag);
        if (want_w) compare2_inc(nm, dw[0], dw[1], dw[2], dw0, nw, TOL_F32_ONCE, TOL_GEMM);
        else compare(nm, dw[0], dw0, nw, TOL_EXACT);
        if (bias) {   // the column sum of the fp32 dout, unrounded, on every backend
            snprintf(nm, sizeof nm, "matmul_bwd dbias %s%s", shape, tag);
            if (want_b) compare_inc(nm, db[0], db[1], db0, OC, TOL_REDUCE);
            else compare(nm, db[0], db0, OC, TOL_EXACT);
        }
        free3(dinp); free3(dw); free3(db);
        free(dinp0); free(dw0); free(db0);
    }
    free(inp); free(w); free(b); free(junk); free(dout);
}

static void test_embedding(int N, int C, int V) {
    char nm[96];
    int *tok = xmalloc((size_t)N * sizeof(int));
    for (int i = 0; i < N; i++) tok[i] = i % 5 == 0 ? 3 : (int)rng_below(&rng, (uint64_t)V);   // repeats
    tok[N - 1] = V - 1;
    const size_t nt = (size_t)V * C, no = (size_t)N * C;
    float *wte = brand(nt, 1.0f), *junk = brand(no, 1.0f), *dout = frand(no, 1.0f), *dwte0 = frand(nt, 1.0f);
    float *out[2], *dwte[2];
    for (int s = 0; s < 2; s++) {   // fp32 outputs / copies: the emulation is the CPU op itself
        const Backend *be = be_of(s);
        int *d_tok = puti(be, tok, N);
        void *d_wte = put_act(be, wte, nt), *d_out = put_act(be, junk, no);
        be->embedding_fwd(d_out, d_tok, d_wte, N, C);
        out[s] = get_act(be, d_out, no);
        float *d_dout = put(be, dout, no), *d_dwte = put(be, dwte0, nt);
        be->embedding_bwd(d_dwte, d_dout, d_tok, N, C, V);
        dwte[s] = get(be, d_dwte, nt);
        be->free(d_tok); be->free(d_wte); be->free(d_out); be->free(d_dout); be->free(d_dwte);
    }
    snprintf(nm, sizeof nm, "embedding_fwd N%d C%d V%d", N, C, V);
    compare(nm, out[0], out[1], no, TOL_EXACT);
    snprintf(nm, sizeof nm, "embedding_bwd N%d C%d V%d (repeated ids)", N, C, V);
    compare_inc(nm, dwte[0], dwte[1], dwte0, nt, TOL_REDUCE);
    for (int s = 0; s < 2; s++) { free(out[s]); free(dwte[s]); }
    free(tok); free(wte); free(junk); free(dout); free(dwte0);
}

static void test_rmsnorm(int N, int C) {
    char nm[96];
    const size_t n = (size_t)N * C;
    float *inp = brand(n, 2.0f), *w = brand(C, 1.0f), *junk = brand(n, 1.0f), *rstd0 = frand(N, 1.0f);
    float *out[NB], *rstd[NB];
    for (int s = 0; s < NB; s++) {
        const Backend *be = be_of(s);
        void *d_inp = put_act(be, inp, n), *d_w = put_act(be, w, C), *d_out = put_act(be, junk, n);
        float *d_rstd = put(be, rstd0, N);
        be->rmsnorm_fwd(d_out, d_rstd, d_inp, d_w, 1e-5f, N, C);
        out[s] = get_act(be, d_out, n); rstd[s] = get(be, d_rstd, N);
        be->free(d_inp); be->free(d_w); be->free(d_out); be->free(d_rstd);
    }
    snprintf(nm, sizeof nm, "rmsnorm_fwd out N%d C%d", N, C);
    compare2(nm, out[0], out[1], out[2], n, TOL_F32_ONCE, TOL_EMU_ACT);
    snprintf(nm, sizeof nm, "rmsnorm_fwd rstd N%d C%d", N, C);
    compare(nm, rstd[0], rstd[1], N, TOL_REDUCE);
    // the backward: fp32 outputs from the same act inputs and (both sides) the
    // CPU's rstd, so it is tested on its own; the emulation is the CPU op itself
    float *dout = frand(n, 1.0f), *dinp0 = frand(n, 1.0f), *dw0 = frand(C, 1.0f), *dinp[2], *dw[2];
    for (int s = 0; s < 2; s++) {
        const Backend *be = be_of(s);
        void *d_inp = put_act(be, inp, n), *d_w = put_act(be, w, C);
        float *d_rstd = put(be, rstd[1], N), *d_dout = put(be, dout, n), *d_dinp = put(be, dinp0, n);
        float *d_dw = put(be, dw0, C);
        be->rmsnorm_bwd(d_dinp, d_dw, d_dout, d_inp, d_w, d_rstd, N, C);
        dinp[s] = get(be, d_dinp, n); dw[s] = get(be, d_dw, C);
        be->free(d_inp); be->free(d_w); be->free(d_rstd); be->free(d_dout); be->free(d_dinp); be->free(d_dw);
    }
    snprintf(nm, sizeof nm, "rmsnorm_bwd dinp N%d C%d", N, C);
    compare_inc(nm, dinp[0], dinp[1], dinp0, n, TOL_REDUCE);
    snprintf(nm, sizeof nm, "rmsnorm_bwd dweight N%d C%d", N, C);
    compare_inc(nm, dw[0], dw[1], dw0, C, TOL_REDUCE);
    free3(out); free3(rstd);
    for (int s = 0; s < 2; s++) { free(dinp[s]); free(dw[s]); }
    free(inp); free(w); free(junk); free(rstd0); free(dout); free(dinp0); free(dw0);
}

// The residual add fused with RMSNorm: res = a + b rounded once, out and rstd
// from the stored res; on the device it must also equal its own add followed
// by rmsnorm_fwd, exactly (the fused kernel keeps rmsnorm_fwd's lane split
// and summation order when both take the same aligned or scalar path), with
// res aliasing a as well.
static void test_residual_rmsnorm(int N, int C) {
    char nm[96];
    const size_t n = (size_t)N * C;
    float *a = brand(n, 2.0f), *b = brand(n, 1.0f), *w = brand(C, 1.0f), *junk = brand(n, 1.0f);
    float *res[NB], *out[NB], *rstd[NB];
    for (int s = 0; s < NB; s++) {
        const Backend *be = be_of(s);
        void *d_a = put_act(be, a, n), *d_b = put_act(be, b, n), *d_w = put_act(be, w, C);
        void *d_res = put_act(be, junk, n), *d_out = put_act(be, junk, n);
        float *d_rstd = put(be, junk, N);
        be->residual_rmsnorm_fwd(d_res, d_out, d_rstd, d_a, d_b, d_w, 1e-5f, N, C);
        res[s] = get_act(be, d_res, n); out[s] = get_act(be, d_out, n); rstd[s] = get(be, d_rstd, N);
        if (s == 0) {   // the device against itself: unfused, then in place into a
            be->add(d_res, d_a, d_b, n);
            be->rmsnorm_fwd(d_out, d_rstd, d_res, d_w, 1e-5f, N, C);
            float *r2 = get_act(be, d_res, n), *o2 = get_act(be, d_out, n);
            snprintf(nm, sizeof nm, "residual_rmsnorm_fwd res == add N%d C%d", N, C);
            compare(nm, res[0], r2, n, TOL_EXACT);
            snprintf(nm, sizeof nm, "residual_rmsnorm_fwd out == add+rmsnorm N%d C%d", N, C);
            compare(nm, out[0], o2, n, TOL_EXACT);   // same lane split and order when both take the same path
            be->residual_rmsnorm_fwd(d_a, d_out, d_rstd, d_a, d_b, d_w, 1e-5f, N, C);
            free(r2); free(o2);
            r2 = get_act(be, d_a, n); o2 = get_act(be, d_out, n);
            snprintf(nm, sizeof nm, "residual_rmsnorm_fwd res aliasing a N%d C%d", N, C);
            compare(nm, r2, res[0], n, TOL_EXACT);
            snprintf(nm, sizeof nm, "residual_rmsnorm_fwd out, res aliasing a N%d C%d", N, C);
            compare(nm, o2, out[0], n, TOL_EXACT);
            free(r2); free(o2);
        }
        be->free(d_a); be->free(d_b); be->free(d_w); be->free(d_res); be->free(d_out); be->free(d_rstd);
    }
    snprintf(nm, sizeof nm, "residual_rmsnorm_fwd res N%d C%d", N, C);
    compare2(nm, res[0], res[1], res[2], n, TOL_F32_ONCE, TOL_EXACT);
    snprintf(nm, sizeof nm, "residual_rmsnorm_fwd out N%d C%d", N, C);
    compare2(nm, out[0], out[1], out[2], n, TOL_F32_ONCE, TOL_EMU_ACT);
    snprintf(nm, sizeof nm, "residual_rmsnorm_fwd rstd N%d C%d", N, C);
    compare(nm, rstd[0], rstd[2], N, TOL_REDUCE);
    free3(res); free3(out); free3(rstd);
    free(a); free(b); free(w); free(junk);
}

static void test_rope(int B, int T, int H_, int D) {
    char nm[96];
    const size_t n = (size_t)B * T * H_ * D, nt = (size_t)T * D / 2;
    float *cs, *sn;
    rope_tables(D, T, &cs, &sn);
    // rope_at_fwd: explicit positions, repeats and the last one included
    const int N = 37, P = T;
    const size_t ny = (size_t)N * H_ * D;
    int *pos = xmalloc(N * sizeof(int));
    for (int i = 0; i < N; i++) pos[i] = i == 0 ? P - 1 : (int)rng_below(&rng, (uint64_t)P);
    float *x = brand(n, 1.0f), *dx0 = frand(n, 1.0f), *y = brand(ny, 1.0f);
    float *xo[NB], *dx[NB], *yo[NB];
    for (int s = 0; s < NB; s++) {
        const Backend *be = be_of(s);
        float *d_cs = put(be, cs, nt), *d_sn = put(be, sn, nt), *d_dx = put(be, dx0, n);
        void *d_x = put_act(be, x, n), *d_y = put_act(be, y, ny);
        int *d_pos = puti(be, pos, N);
        be->rope_fwd(d_x, d_cs, d_sn, B, T, H_, D);
        be->rope_bwd(d_dx, d_cs, d_sn, B, T, H_, D);
        be->rope_at_fwd(d_y, d_cs, d_sn, d_pos, N, H_, D);
        xo[s] = get_act(be, d_x, n); dx[s] = get(be, d_dx, n); yo[s] = get_act(be, d_y, ny);
        be->free(d_cs); be->free(d_sn); be->free(d_dx); be->free(d_x); be->free(d_y); be->free(d_pos);
    }
    snprintf(nm, sizeof nm, "rope_fwd B%d T%d H%d D%d", B, T, H_, D);
    compare2(nm, xo[0], xo[1], xo[2], n, TOL_F32_ONCE, TOL_EMU_ACT);
    snprintf(nm, sizeof nm, "rope_bwd B%d T%d H%d D%d", B, T, H_, D);   // fp32 in place
    compare(nm, dx[0], dx[1], n, TOL_ELEM);
    snprintf(nm, sizeof nm, "rope_at_fwd N%d H%d D%d P%d", N, H_, D, P);
    compare2(nm, yo[0], yo[1], yo[2], ny, TOL_F32_ONCE, TOL_EMU_ACT);
    free3(xo); free3(dx); free3(yo);
    free(cs); free(sn); free(x); free(dx0); free(y); free(pos);
}

static void test_attention(int B, int T, int NH, int NKV, int D, const int *len) {
    char nm[128], shape[64];
    snprintf(shape, sizeof shape, "B%d T%d NH%d NKV%d D%d", B, T, NH, NKV, D);
    const size_t nq = (size_t)B * T * NH * D, nkv = (size_t)B * T * NKV * D, nl = (size_t)B * NH * T;
    float *q = brand(nq, 1.5f), *k = brand(nkv, 1.5f), *v = brand(nkv, 1.0f);
    rows_nan(q, B, T, (size_t)NH * D, len);   // padded rows are never read
    rows_nan(k, B, T, (size_t)NKV * D, len);
    rows_nan(v, B, T, (size_t)NKV * D, len);
    float *out0 = brand(nq, 7.0f), *lse0 = frand(nl, 7.0f);   // padded rows must come back as 0
    float *out[NB], *lse[NB];
    for (int s = 0; s < NB; s++) {
        const Backend *be = be_of(s);
        void *d_q = put_act(be, q, nq), *d_k = put_act(be, k, nkv), *d_v = put_act(be, v, nkv);
        void *d_out = put_act(be, out0, nq);
        float *d_lse = put(be, lse0, nl);
        int *d_len = puti(be, len, B);
        be->attention_fwd(d_out, d_lse, d_q, d_k, d_v, d_len, B, T, NH, NKV, D);
        out[s] = get_act(be, d_out, nq); lse[s] = get(be, d_lse, nl);
        be->free(d_q); be->free(d_k); be->free(d_v); be->free(d_out); be->free(d_lse); be->free(d_len);
    }
    snprintf(nm, sizeof nm, "attention_fwd out %s", shape);
    compare2(nm, out[0], out[1], out[2], nq, TOL_F32_ONCE, TOL_EMU_ACT);
    snprintf(nm, sizeof nm, "attention_fwd lse %s", shape);
    compare(nm, lse[0], lse[1], nl, TOL_ATTN);

    // the backward on both sides from the emulation's forward results (out as
    // stored in bf16, lse), so it is tested on its own; its outputs are fp32
    // from the same inputs, so the emulation is the CPU op itself
    float *dout = frand(nq, 1.0f);
    rows_nan(dout, B, T, (size_t)NH * D, len);
    float *dq0 = frand(nq, 1.0f), *dk0 = frand(nkv, 1.0f), *dv0 = frand(nkv, 1.0f), *dq[2], *dk[2], *dv[2];
    for (int s = 0; s < 2; s++) {
        const Backend *be = be_of(s);
        void *d_q = put_act(be, q, nq), *d_k = put_act(be, k, nkv), *d_v = put_act(be, v, nkv);
        void *d_out = put_act(be, out[2], nq);
        float *d_lse = put(be, lse[2], nl), *d_dout = put(be, dout, nq);
        float *d_dq = put(be, dq0, nq), *d_dk = put(be, dk0, nkv), *d_dv = put(be, dv0, nkv);
        int *d_len = puti(be, len, B);
        be->attention_bwd(d_dq, d_dk, d_dv, d_dout, d_out, d_lse, d_q, d_k, d_v, d_len, B, T, NH, NKV, D);
        dq[s] = get(be, d_dq, nq); dk[s] = get(be, d_dk, nkv); dv[s] = get(be, d_dv, nkv);
        be->free(d_q); be->free(d_k); be->free(d_v); be->free(d_out); be->free(d_lse); be->free(d_dout);
        be->free(d_dq); be->free(d_dk); be->free(d_dv); be->free(d_len);
    }
    snprintf(nm, sizeof nm, "attention_bwd dq %s", shape);
    compare_inc(nm, dq[0], dq[1], dq0, nq, TOL_ATTN_BWD);
    snprintf(nm, sizeof nm, "attention_bwd dk %s", shape);
    compare_inc(nm, dk[0], dk[1], dk0, nkv, TOL_ATTN_BWD);
    snprintf(nm, sizeof nm, "attention_bwd dv %s", shape);
    compare_inc(nm, dv[0], dv[1], dv0, nkv, TOL_ATTN_BWD);
    free3(out); free3(lse);
    for (int s = 0; s < 2; s++) { free(dq[s]); free(dk[s]); free(dv[s]); }
    free(q); free(k); free(v); free(out0); free(lse0); free(dout); free(dq0); free(dk0); free(dv0);
}

// swiglu, add, scale, scale_act, dropout
static void test_elementwise(size_t n) {
    char nm[96];
    float *gate = brand(n, 6.0f), *upv = brand(n, 2.0f), *junk = brand(n, 1.0f), *dout = frand(n, 1.0f);
    float *dg0 = frand(n, 1.0f), *du0 = frand(n, 1.0f), *x = frand(n, 1.0f);
    const float ps[] = {0.0f, 0.1f, 0.5f};
    float *sw[NB], *dg[NB], *du[NB], *ad[NB], *adi[NB], *sc[NB], *sca[NB], *dr[3][NB], *drb[3][NB];
    for (int s = 0; s < NB; s++) {
        const Backend *be = be_of(s);
        void *d_gate = put_act(be, gate, n), *d_up = put_act(be, upv, n), *d_out = put_act(be, junk, n);
        float *d_dout = put(be, dout, n), *d_dg = put(be, dg0, n), *d_du = put(be, du0, n), *d_x = put(be, x, n);
        be->swiglu_fwd(d_out, d_gate, d_up, n);
        sw[s] = get_act(be, d_out, n);
        be->swiglu_bwd(d_dg, d_du, d_dout, d_gate, d_up, n);
        dg[s] = get(be, d_dg, n); du[s] = get(be, d_du, n);
        // add (also in place: out aliases a), scale (fp32), scale_act
        be->add(d_out, d_gate, d_up, n);
        ad[s] = get_act(be, d_out, n);
        void *d_a = put_act(be, gate, n);
        be->add(d_a, d_a, d_up, n);
        adi[s] = get_act(be, d_a, n);
        be->scale(d_x, -0.37f, n);
        sc[s] = get(be, d_x, n);
        be->scale_act(d_up, -0.37f, n);
        sca[s] = get_act(be, d_up, n);
        // dropout: the mask is a pure function of (key, i, p)
        for (int i = 0; i < 3; i++) {
            const uint64_t key = 0x1234567ULL + (uint64_t)i;
            be->upload(d_dg, dg0, n * sizeof(float));
            be->dropout_fwd(d_out, d_gate, n, ps[i], key);
            be->dropout_bwd(d_dg, d_dout, n, ps[i], key);
            dr[i][s] = get_act(be, d_out, n); drb[i][s] = get(be, d_dg, n);
        }
        be->free(d_gate); be->free(d_up); be->free(d_out); be->free(d_dout); be->free(d_dg); be->free(d_du);
        be->free(d_x); be->free(d_a);
    }
    snprintf(nm, sizeof nm, "swiglu_fwd n%zu", n);
    compare2(nm, sw[0], sw[1], sw[2], n, TOL_F32_ONCE, TOL_EMU_ACT);
    // fp32 gradients from the same act inputs: the emulation is the CPU op itself
    snprintf(nm, sizeof nm, "swiglu_bwd dgate n%zu", n);
    compare_inc(nm, dg[0], dg[1], dg0, n, TOL_REDUCE);
    snprintf(nm, sizeof nm, "swiglu_bwd dup n%zu", n);
    compare_inc(nm, du[0], du[1], du0, n, TOL_REDUCE);
    snprintf(nm, sizeof nm, "add n%zu", n);
    compare2(nm, ad[0], ad[1], ad[2], n, TOL_F32_ONCE, TOL_EXACT);
    snprintf(nm, sizeof nm, "add in place n%zu", n);
    compare2(nm, adi[0], adi[1], adi[2], n, TOL_F32_ONCE, TOL_EXACT);
    snprintf(nm, sizeof nm, "scale n%zu", n);
    compare(nm, sc[0], sc[1], n, TOL_EXACT);
    snprintf(nm, sizeof nm, "scale_act n%zu", n);
    compare2(nm, sca[0], sca[1], sca[2], n, TOL_F32_ONCE, TOL_EXACT);
    for (int i = 0; i < 3; i++) {
        snprintf(nm, sizeof nm, "dropout_fwd p%.1f n%zu", ps[i], n);
        compare2(nm, dr[i][0], dr[i][1], dr[i][2], n, TOL_F32_ONCE, TOL_EMU_ACT);
        // the zeros must match exactly (one wrong mask bit is ~1/sqrt(n) in norm)
        size_t bad = 0;
        for (size_t j = 0; j < n; j++) bad += (dr[i][0][j] == 0.0f) != (dr[i][1][j] == 0.0f);
        snprintf(nm, sizeof nm, "dropout_fwd p%.1f n%zu mask (share wrong)", ps[i], n);
        record(nm, (double)bad / (double)n, (double)bad, TOL_EXACT);
        snprintf(nm, sizeof nm, "dropout_bwd p%.1f n%zu", ps[i], n);
        compare_inc(nm, drb[i][0], drb[i][1], dg0, n, TOL_ELEM);
        free3(dr[i]); free3(drb[i]);
    }
    free3(sw); free3(dg); free3(du); free3(ad); free3(adi); free3(sc); free3(sca);
    free(gate); free(upv); free(junk); free(dout); free(dg0); free(du0); free(x);
}

// ---- log-prob head -------------------------------------------------------------

static void test_logprob(int n, int Nh, int C, int V) {
    char nm[96], shape[64];
    snprintf(shape, sizeof shape, "n%d C%d V%d", n, C, V);
    const size_t nh = (size_t)Nh * C, nw = (size_t)V * C;
    float *h = brand(nh, 1.0f), *w = brand(nw, 3.0f / sqrtf((float)C));   // logits ~ O(1)
    int *perm = xmalloc((size_t)Nh * sizeof(int)), *tgt = xmalloc((size_t)n * sizeof(int));
    for (int i = 0; i < Nh; i++) perm[i] = i;
    for (int i = Nh - 1; i > 0; i--) { int j = (int)rng_below(&rng, (uint64_t)i + 1), t = perm[i]; perm[i] = perm[j]; perm[j] = t; }
    for (int i = 0; i < n; i++) tgt[i] = i == 0 ? 0 : i == 1 ? V - 1 : (int)rng_below(&rng, (uint64_t)V);
    float *lp0 = frand(n, 1.0f), *lse0 = frand(n, 1.0f), *wt = frand(n, 1.0f);
    for (int i = 0; i < n; i++) wt[i] = i % 5 == 4 ? 0.0f : fabsf(wt[i]);   // weight-0 rows are skipped
    float *dh0 = frand(nh, 1.0f), *dw0 = frand(nw, 1.0f);
    // the forward: fp32 outputs from the same act inputs, the emulation's is the
    // CPU's. The backward rounds its logit gradient to bf16 before the products
    // on CUDA and on the emulation (not on the fp32 CPU): both oracles
    float *lp[NB], *lse[NB], *dh[NB][2], *dw[NB];
    const int order[NB] = {1, 2, 0};   // the CPU first: every backward runs on the CPU's lse
    for (int k = 0; k < NB; k++) {
        const int s = order[k];
        const Backend *be = be_of(s);
        void *d_h = put_act(be, h, nh), *d_w = put_act(be, w, nw);
        float *d_lp = put(be, lp0, n), *d_lse = put(be, lse0, n), *d_wt = put(be, wt, n);
        int *d_rows = puti(be, perm, n), *d_tgt = puti(be, tgt, n);
        be->logprob_fwd(d_lp, d_lse, d_h, d_w, d_rows, d_tgt, n, C, V);
        lp[s] = get(be, d_lp, n); lse[s] = get(be, d_lse, n);
        be->upload(d_lse, lse[1], (size_t)n * sizeof(float));
        for (int frozen = 0; frozen < 2; frozen++) {
            float *d_dh = put(be, dh0, nh), *d_dw = put(be, dw0, nw);
            be->logprob_bwd(d_dh, frozen ? NULL : d_dw, d_h, d_w, d_rows, d_tgt, d_lse, d_wt, n, C, V);
            dh[s][frozen] = get(be, d_dh, nh);
            if (!frozen) dw[s] = get(be, d_dw, nw);
            be->free(d_dh); be->free(d_dw);
        }
        be->free(d_h); be->free(d_w); be->free(d_lp); be->free(d_lse); be->free(d_wt); be->free(d_rows);
        be->free(d_tgt);
    }
    snprintf(nm, sizeof nm, "logprob_fwd logprob %s", shape);
    compare(nm, lp[0], lp[1], n, TOL_GEMM);
    snprintf(nm, sizeof nm, "logprob_fwd lse %s", shape);
    compare(nm, lse[0], lse[1], n, TOL_GEMM);
    for (int frozen = 0; frozen < 2; frozen++) {
        snprintf(nm, sizeof nm, "logprob_bwd dh %s%s", shape, frozen ? " (frozen head)" : "");
        compare2_inc(nm, dh[0][frozen], dh[1][frozen], dh[2][frozen], dh0, nh, TOL_F32_ONCE, TOL_EMU_GEMM_ACT);
    }
    snprintf(nm, sizeof nm, "logprob_bwd dw %s", shape);
    compare2_inc(nm, dw[0], dw[1], dw[2], dw0, nw, TOL_F32_ONCE, TOL_EMU_GEMM_ACT);
    for (int s = 0; s < NB; s++) { free(lp[s]); free(lse[s]); free(dh[s][0]); free(dh[s][1]); free(dw[s]); }
    free(h); free(w); free(perm); free(tgt); free(lp0); free(lse0); free(wt); free(dh0); free(dw0);
}

// ---- optimizer -----------------------------------------------------------------

// adamw_multi over a flat buffer of n values carved into tensors of assorted
// sizes (tiny, odd, the bulk), with and without decay, and a gap of 5 values
// that belongs to no tensor and must stay as it was, in p, m, v and the
// compute copy pc (act: pc[i] = act(p[i]) for every stepped element)
static void test_adamw(size_t n) {
    char nm[128];
    const AdamwTensor tab[] = {{0, 1, 0}, {1, 577, 1}, {578, 64, 0}, {647, n - 647 - 3, 1}, {n - 3, 3, 0}};
    const int nt = (int)(sizeof tab / sizeof tab[0]);   // [642, 647) is the gap
    float *p0 = frand(n, 1.0f), *m0 = frand(n, 0.01f), *v0 = frand(n, 1.0f), *pc0 = brand(n, 1.0f);
    for (size_t i = 0; i < n; i++) v0[i] = fabsf(v0[i]) * 1e-4f;
    float *g[3];
    for (int step = 0; step < 3; step++) g[step] = frand(n, 0.1f);
    float *p[NB], *m[NB], *v[NB], *pc[NB];
    double ss[NB];
    for (int s = 0; s < NB; s++) {
        const Backend *be = be_of(s);
        float *d_p = put(be, p0, n), *d_m = put(be, m0, n), *d_v = put(be, v0, n);
        void *d_pc = be->act_bytes == sizeof(float) ? (void *)d_p : put_act(be, pc0, n);   // pc == p: fp32
        AdamwTensor *d_tab = put_bytes(be, tab, sizeof tab);
        for (int step = 1; step <= 3; step++) {
            float *d_g = put(be, g[step - 1], n);
            const float bc1 = 1.0f - powf(0.9f, (float)step), bc2 = 1.0f - powf(0.999f, (float)step);
            const float sc = step == 2 ? 0.5f : 1.0f;
            be->adamw_multi(d_p, d_pc, d_g, d_m, d_v, n, d_tab, nt, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, bc1, bc2, sc);
            be->free(d_g);
        }
        p[s] = get(be, d_p, n); m[s] = get(be, d_m, n); v[s] = get(be, d_v, n); pc[s] = get_act(be, d_pc, n);
        ss[s] = be->sumsq(d_p, n);
        if (d_pc != (void *)d_p) be->free(d_pc);
        be->free(d_p); be->free(d_m); be->free(d_v); be->free(d_tab);
    }
    snprintf(nm, sizeof nm, "adamw_multi x3 params n%zu", n);
    compare(nm, p[0], p[1], n, TOL_ELEM);
    snprintf(nm, sizeof nm, "adamw_multi x3 m n%zu", n);
    compare(nm, m[0], m[1], n, TOL_ELEM);
    snprintf(nm, sizeof nm, "adamw_multi x3 v n%zu", n);
    compare(nm, v[0], v[1], n, TOL_ELEM);
    // the compute copy: exactly the act rounding of the device's own new
    // params where stepped, untouched (pc0) in the gap
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        const int gap = i >= 642 && i < 647;
        const float want = gap ? pc0[i] : G->act_bytes == 2 ? bf16_round(p[0][i]) : p[0][i];
        bad += memcmp(&pc[0][i], &want, sizeof(float)) != 0;
    }
    snprintf(nm, sizeof nm, "adamw_multi x3 compute copy == act(params), gap kept (share wrong) n%zu", n);
    record(nm, (double)bad / (double)n, (double)bad, TOL_EXACT);
    float *want = fcopy(p[1], n);   // the fp32 oracle's params, the gap as it was in pc
    for (size_t i = 642; i < 647; i++) want[i] = pc0[i];
    snprintf(nm, sizeof nm, "adamw_multi x3 compute copy n%zu", n);
    compare2(nm, pc[0], want, pc[2], n, TOL_F32_ONCE, TOL_EMU_ACT);
    free(want);
    snprintf(nm, sizeof nm, "sumsq n%zu", n);
    record(nm, fabs(ss[0] - ss[1]) / ss[1], fabs(ss[0] - ss[1]), TOL_REDUCE);
    free3(p); free3(m); free3(v); free3(pc);
    for (int step = 0; step < 3; step++) free(g[step]);
    free(p0); free(m0); free(v0); free(pc0);
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
// fp32 / double only: no act storage involved.
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
    float *d_lp = put(G, lp, (size_t)nrows), *d_mask = put(G, mask, (size_t)nrows), *d_tw = G->alloc((size_t)nrows * 4 + 4);
    int *d_seq = puti(G, seq, (size_t)nrows);
    double *d_slp = G->alloc((size_t)S * 8), *d_w = G->alloc((size_t)S * 8), *d_out = G->alloc(DPO_OUT_COUNT * 8);
    double *d_ref = put_bytes(G, ref, (size_t)S * 8), *d_pw = put_bytes(G, pw, (size_t)np * 8);
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
    float *g_tw = get(G, d_tw, (size_t)nrows);
    compare(nm, g_tw, tw, (size_t)nrows, 1e-7);   // a double rounded to float: at most 1 float ulp apart
    G->free(d_lp); G->free(d_mask); G->free(d_tw); G->free(d_seq); G->free(d_slp); G->free(d_w); G->free(d_out);
    G->free(d_ref); G->free(d_pw);
    free(lp); free(mask); free(seq); free(ref); free(pw); free(slp); free(w); free(tw); free(g_tw);
}

// ---- KV cache and decode ops ---------------------------------------------------

// The cache as floats: fp32 on the CPU backends (cpu-bf16 keeps the CPU's fp32
// cache, which only ever receives bf16 values), bf16 [R,P,W] on CUDA (the
// layout backend.h fixes; bf16 is the top half of an fp32).
static float *kv_host(const Backend *be, const void *cache, size_t n) {
    float *x = xmalloc(n * sizeof(float));
    if (be == H || be == E) { be->download(x, cache, n * sizeof(float)); return x; }
    uint16_t *raw = xmalloc(n * sizeof(uint16_t));
    be->download(raw, cache, n * sizeof(uint16_t));
    for (size_t i = 0; i < n; i++) x[i] = f32_from_bf16(raw[i]);
    free(raw);
    return x;
}

static void test_decode_ops(int NH, int NKV, int D) {
    char nm[128], shape[64];
    enum { R = 3, S = 5, P = 40 };
    const int W = NKV * D, start[R] = {0, 17, 33}, n_new[R] = {5, 0, 3}, zero[R] = {0, 0, 0};
    snprintf(shape, sizeof shape, "R%d S%d P%d NH%d NKV%d D%d", R, S, P, NH, NKV, D);
    const size_t nc = (size_t)R * P * W, nn = (size_t)R * S * W, nq = (size_t)R * S * NH * D;
    // act inputs (bf16 values): the cache stores them exactly on every backend
    float *k0 = brand(nc, 1.5f), *v0 = brand(nc, 1.0f), *kn = brand(nn, 1.5f), *vn = brand(nn, 1.0f);
    float *q = brand(nq, 1.5f), *out0 = brand(nq, 7.0f);
    const int src[R] = {2, 0, 0}, src2[R] = {1, 1, 0};
    // gather_rows: rows repeat
    const int C = 77, N = 9, rows[9] = {5, 0, 5, 36, 1, 2, 3, 36, 4};
    float *inp = brand(37 * C, 1.0f), *g0 = brand((size_t)N * C, 1.0f);
    float *kc[NB], *vc[NB], *kg[NB], *out[NB], *gr[NB];
    for (int s = 0; s < NB; s++) {
        const Backend *be = be_of(s);
        void *c_k = be->kv_alloc(nc), *c_v = be->kv_alloc(nc);
        int *d_start = puti(be, start, R), *d_new = puti(be, n_new, R), *d_zero = puti(be, zero, R);
        int *d_pre = puti(be, start, R), *d_src = puti(be, src, R), *d_src2 = puti(be, src2, R);
        // the old positions, written through kv_write too (the GPU cache is opaque)
        void *d_k0 = put_act(be, k0, nc), *d_v0 = put_act(be, v0, nc), *d_kn = put_act(be, kn, nn);
        void *d_vn = put_act(be, vn, nn), *d_q = put_act(be, q, nq), *d_out = put_act(be, out0, nq);
        be->kv_write(c_k, d_k0, d_zero, d_pre, R, P, P, W);
        be->kv_write(c_v, d_v0, d_zero, d_pre, R, P, P, W);
        be->kv_write(c_k, d_kn, d_start, d_new, R, S, P, W);
        be->kv_write(c_v, d_vn, d_start, d_new, R, S, P, W);
        kc[s] = kv_host(be, c_k, nc); vc[s] = kv_host(be, c_v, nc);
        be->attention_cached_fwd(d_out, d_q, c_k, c_v, d_start, d_new, R, S, P, NH, NKV, D);
        out[s] = get_act(be, d_out, nq);
        // beam reorder: a gather from the state before the call, rows
        // repeated; then only the first 20 positions
        be->kv_gather(c_k, d_src, R, P, P, W);
        be->kv_gather(c_k, d_src2, R, 20, P, W);
        kg[s] = kv_host(be, c_k, nc);
        void *d_inp = put_act(be, inp, 37 * C), *d_g = put_act(be, g0, (size_t)N * C);
        int *d_rows = puti(be, rows, N);
        be->gather_rows(d_g, d_inp, d_rows, N, C);
        gr[s] = get_act(be, d_g, (size_t)N * C);
        be->free(c_k); be->free(c_v); be->free(d_start); be->free(d_new); be->free(d_zero); be->free(d_pre);
        be->free(d_src); be->free(d_src2); be->free(d_k0); be->free(d_v0); be->free(d_kn); be->free(d_vn);
        be->free(d_q); be->free(d_out); be->free(d_inp); be->free(d_g); be->free(d_rows);
    }
    snprintf(nm, sizeof nm, "kv_write K cache %s", shape);
    compare(nm, kc[0], kc[1], nc, TOL_EXACT);
    snprintf(nm, sizeof nm, "kv_write V cache %s", shape);
    compare(nm, vc[0], vc[1], nc, TOL_EXACT);
    snprintf(nm, sizeof nm, "attention_cached_fwd %s", shape);
    compare2(nm, out[0], out[1], out[2], nq, TOL_F32_ONCE, TOL_EMU_ACT);
    snprintf(nm, sizeof nm, "kv_gather x2 %s", shape);
    compare(nm, kg[0], kg[1], nc, TOL_EXACT);
    snprintf(nm, sizeof nm, "gather_rows N9 C77 (%s)", shape);
    compare(nm, gr[0], gr[1], (size_t)N * C, TOL_EXACT);
    free3(kc); free3(vc); free3(kg); free3(out); free3(gr);
    free(k0); free(v0); free(kn); free(vn); free(q); free(out0); free(inp); free(g0);
}

// ---- decoding's token selection ----------------------------------------------------

// logits_lse_topk and gather_cols: N rows of V logits (act) on a coarse grid
// (ties; every value bf16-exact), some -inf, one row all -inf, one with fewer
// finite entries than k. The top ids and values and the gathered logits must
// be exact (they are copies); the normaliser is a reduction (double, another
// order).
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
    // gather_cols: row n takes (n * 37) % 50 columns, row 0 none, repeats allowed
    int *off = xmalloc((size_t)(N + 1) * sizeof(int)), total = 0;
    for (int n = 0; n < N; n++) { off[n] = total; total += (n * 37) % 50; }
    off[N] = total;
    int *cols = xmalloc((size_t)(total ? total : 1) * sizeof(int));
    for (int j = 0; j < total; j++) cols[j] = j % 5 == 0 ? V - 1 : (int)rng_below(&rng, (uint64_t)V);
    // and the same lengths read from anywhere in cols: row n from src[n]
    int *src = xmalloc((size_t)N * sizeof(int));
    for (int n = 0; n < N; n++) src[n] = (int)rng_below(&rng, (uint64_t)(total - (off[n + 1] - off[n]) + 1));
    float *out0 = frand((size_t)total, 1.0f);
    double *lse[2], *lse0[2];
    int *ti[2];
    float *tv[2], *gc[2], *gs[2];
    for (int s = 0; s < 2; s++) {   // copies and a double reduction: the emulation is the CPU op itself
        const Backend *be = be_of(s);
        void *d_x = put_act(be, x, (size_t)N * V);
        double *d_lse = be->alloc((size_t)N * sizeof(double));
        int *d_ti = be->alloc((size_t)N * k * sizeof(int) + 4);
        float *d_tv = be->alloc((size_t)N * k * sizeof(float) + 4);
        be->logits_lse_topk(d_lse, d_ti, d_tv, d_x, N, V, k);
        lse[s] = xmalloc((size_t)N * sizeof(double)); lse0[s] = xmalloc((size_t)N * sizeof(double));
        ti[s] = xmalloc((size_t)N * k * sizeof(int) + 4); tv[s] = xmalloc((size_t)N * k * sizeof(float) + 4);
        be->download(lse[s], d_lse, (size_t)N * sizeof(double));
        be->download(ti[s], d_ti, (size_t)N * k * sizeof(int));
        be->download(tv[s], d_tv, (size_t)N * k * sizeof(float));
        be->logits_lse_topk(d_lse, NULL, NULL, d_x, N, V, 0);   // lse only (k = 0, no top arrays)
        be->download(lse0[s], d_lse, (size_t)N * sizeof(double));
        float *d_out = put(be, out0, (size_t)total);
        int *d_off = puti(be, off, (size_t)N + 1), *d_cols = puti(be, cols, (size_t)total);
        be->gather_cols(d_out, d_x, d_off, d_off, d_cols, N, V);
        gc[s] = get(be, d_out, (size_t)total);
        int *d_src = puti(be, src, (size_t)N);   // slices anywhere in the table (the device trie's use)
        be->gather_cols(d_out, d_x, d_off, d_src, d_cols, N, V);
        gs[s] = get(be, d_out, (size_t)total);
        be->free(d_x); be->free(d_lse); be->free(d_ti); be->free(d_tv); be->free(d_out); be->free(d_off);
        be->free(d_cols); be->free(d_src);
    }
    float *fl = xmalloc((size_t)N * sizeof(float)), *g_fl = xmalloc((size_t)N * sizeof(float));
    for (int n = 0; n < N; n++) { fl[n] = (float)lse[1][n]; g_fl[n] = (float)lse[0][n]; }
    snprintf(nm, sizeof nm, "logits_lse_topk lse N%d V%d", N, V);
    compare(nm, g_fl, fl, (size_t)N, TOL_REDUCE);
    int bad = 0;
    for (size_t i = 0; i < (size_t)N * k; i++) bad += ti[0][i] != ti[1][i];
    snprintf(nm, sizeof nm, "logits_lse_topk ids N%d V%d k%d (share wrong)", N, V, k);
    record(nm, (double)bad / ((double)N * k), bad, TOL_EXACT);
    snprintf(nm, sizeof nm, "logits_lse_topk values N%d V%d k%d", N, V, k);
    compare(nm, tv[0], tv[1], (size_t)N * k, TOL_EXACT);
    for (int n = 0; n < N; n++) g_fl[n] = (float)lse0[0][n];
    snprintf(nm, sizeof nm, "logits_lse_topk lse only N%d V%d", N, V);
    compare(nm, g_fl, fl, (size_t)N, TOL_REDUCE);
    snprintf(nm, sizeof nm, "gather_cols N%d V%d (%d columns)", N, V, total);
    compare(nm, gc[0], gc[1], (size_t)total, TOL_EXACT);
    snprintf(nm, sizeof nm, "gather_cols N%d V%d slices of a table", N, V);
    compare(nm, gs[0], gs[1], (size_t)total, TOL_EXACT);
    for (int s = 0; s < 2; s++) { free(lse[s]); free(lse0[s]); free(ti[s]); free(tv[s]); free(gc[s]); free(gs[s]); }
    free(x); free(fl); free(g_fl); free(off); free(cols); free(out0); free(src);
}
// ---- whole models ----------------------------------------------------------------

typedef struct {
    float *logits, *logprobs, *seq, loss, *grads;   // grads: the flat gradient buffer, host copy
} DumpOut;

// What `sprec dump` computes (host/cli/cmd_dump.c), on model m and batch b.
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

static float *flat_grad(void *ctx, const ParamInfo *p) { return fcopy((const float *)ctx + p->offset, p->numel); }

typedef struct { hid_t f; const char *path; } H5Ref;
static float *h5_grad(void *ctx, const ParamInfo *p) {
    H5Ref *r = ctx;
    char name[160];
    snprintf(name, sizeof name, "grad/%s", p->name);
    long dims[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
    return h5_read_f32(r->f, r->path, name, p->rank, dims);
}

// `sprec dump` of a fixture's model and batch on backend be
static void fixture_dump(const char *model, const char *batch, const Backend *be, Model *m, DumpOut *o) {
    ModelConfig mc;
    checkpoint_read_config(model, &mc);
    model_create(m, &mc, be);
    checkpoint_load(model, m, NULL, NULL);
    Dataset d;
    dataset_load(&d, batch, mc.vocab_size);
    Batch b = {.B = d.N, .T = d.T, .tokens = d.tokens, .mask = d.mask, .lengths = d.lengths};
    dump(m, &b, o);
    dataset_free(&d);
}

// the GPU vs the fixture's values (fp32 transformers: bf16-sized tolerances)
// and vs the bf16 emulation on the same model and batch
static void test_fixture(const char *dir) {
    char model[1024], batch[1024], expected[1024], nm[160];
    const char *base = strrchr(dir, '/') + 1;
    snprintf(model, sizeof model, "%.400s/model.h5", dir);
    snprintf(batch, sizeof batch, "%.400s/batch.h5", dir);
    snprintf(expected, sizeof expected, "%.400s/expected.h5", dir);
    Model m, me;
    DumpOut o, oe;
    fixture_dump(model, batch, G, &m, &o);
    fixture_dump(model, batch, E, &me, &oe);
    hid_t ref = h5_open_read(expected);
    const char *names[] = {"logits", "logprobs", "seq_logprob", "loss"};
    float *got[] = {o.logits, o.logprobs, o.seq, &o.loss}, *emu[] = {oe.logits, oe.logprobs, oe.seq, &oe.loss};
    for (int i = 0; i < 4; i++) {
        long dims[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
        int rank = h5_shape(ref, expected, names[i], dims);
        float *want = h5_read_f32(ref, expected, names[i], rank, dims);
        size_t n = 1;
        for (int j = 0; j < rank; j++) n *= (size_t)dims[j];
        snprintf(nm, sizeof nm, "HF fixture %s: %s", base, names[i]);
        compare2(nm, got[i], want, emu[i], n, TOL_MODEL_OUT, TOL_EMU_MODEL_OUT);
        free(want);
    }
    H5Ref r = {ref, expected};
    snprintf(nm, sizeof nm, "HF fixture %s: [cpu]", base);
    compare_grads(nm, &m, o.grads, h5_grad, &r, TOL_MODEL_GRAD);
    snprintf(nm, sizeof nm, "HF fixture %s: [cpu-bf16]", base);
    compare_grads(nm, &m, o.grads, flat_grad, oe.grads, TOL_EMU_MODEL_GRAD);
    h5_close(ref);
    dump_free(&o); dump_free(&oe);
    model_free(&m); model_free(&me);
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

// Every weight uniform with standard deviation std (norm weights 1, biases
// uniform in [-0.3, 0.3] so that they count), the same values on every
// backend; filled in parallel blocks, each with its own stream, so that a
// Llama-3.2-1B-sized model takes seconds, not minutes.
static void random_model(Model *m, const ModelConfig *c, const Backend *be, uint64_t seed, float std) {
    enum { BLOCK = 1 << 20 };
    model_create(m, c, be);
    const float a = std * sqrtf(3.0f);
    for (int i = 0; i < m->n_params; i++) {
        const ParamInfo *p = &m->table[i];
        const int is_norm = strstr(p->name, "norm.weight") != NULL, is_bias = strstr(p->name, ".bias") != NULL;
        const float half = is_bias ? 0.3f : a;
        float *x = xmalloc(p->numel * sizeof(float));
        const long blocks = (long)((p->numel + BLOCK - 1) / BLOCK);
        #pragma omp parallel for
        for (long k = 0; k < blocks; k++) {
            Rng r;
            rng_seed(&r, seed * 1000003u + (uint64_t)i * 65537u + (uint64_t)k);
            const size_t j1 = (size_t)(k + 1) * BLOCK < p->numel ? (size_t)(k + 1) * BLOCK : p->numel;
            for (size_t j = (size_t)k * BLOCK; j < j1; j++)
                x[j] = is_norm ? 1.0f : half * (float)(2.0 * rng_uniform(&r) - 1.0);
        }
        be->upload(m->params + p->offset, x, p->numel * sizeof(float));
        free(x);
    }
    model_sync_compute(m);   // the compute copy follows the master weights
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

// cuda vs cpu (fp32) and vs cpu-bf16 on the same random model and batch:
// logits, log-probs, loss, gradients
static void test_model_vs_cpu(void) {
    const int B = 4, T = 67, len[4] = {67, 45, 0, 1};
    Batch b = random_batch(&BIG, B, T, len, 21);
    Model mc, me, mg;
    random_model(&mc, &BIG, H, 5, 0.05f);
    random_model(&me, &BIG, E, 5, 0.05f);
    random_model(&mg, &BIG, G, 5, 0.05f);
    DumpOut oc, oe, og;
    dump(&mc, &b, &oc);
    dump(&me, &b, &oe);
    dump(&mg, &b, &og);
    const char *what = "model V1000 C192 GQA B4 T67";
    char nm[160];
    snprintf(nm, sizeof nm, "%s: logits", what);
    compare2(nm, og.logits, oc.logits, oe.logits, (size_t)B * T * BIG.vocab_size, TOL_MODEL_OUT, TOL_EMU_MODEL_OUT);
    snprintf(nm, sizeof nm, "%s: logprobs", what);
    compare2(nm, og.logprobs, oc.logprobs, oe.logprobs, (size_t)B * T, TOL_MODEL_OUT, TOL_EMU_MODEL_OUT);
    snprintf(nm, sizeof nm, "%s: loss", what);
    compare2(nm, &og.loss, &oc.loss, &oe.loss, 1, TOL_MODEL_OUT, TOL_EMU_MODEL_OUT);
    snprintf(nm, sizeof nm, "%s: [cpu]", what);
    compare_grads(nm, &mg, og.grads, flat_grad, oc.grads, TOL_MODEL_GRAD);
    snprintf(nm, sizeof nm, "%s: [cpu-bf16]", what);
    compare_grads(nm, &mg, og.grads, flat_grad, oe.grads, TOL_EMU_MODEL_GRAD);
    dump_free(&oc); dump_free(&oe); dump_free(&og);
    model_free(&mc); model_free(&me); model_free(&mg);
    batch_free(&b);
}

// One whole training step on a fresh random model of config c on backend be:
// SFT (sft_step: forward, backward with the mask weights, AdamW) or DPO
// (dpo_step: chosen and rejected rows as one batch, the loss and its SPDPO
// reweighting on the device, the weighted backward). The gradients and (SFT)
// the stepped parameters come back to the host; m stays for its table.
typedef struct { double loss, x, y; float *grads, *params; } StepOut;   // x, y: SFT grad norm; DPO rewards

static void run_step(Model *m, const Backend *be, const ModelConfig *c, float std, int dpo, const Batch *ch,
                     const Batch *rj, const double *ref_c, const double *ref_r, const double *pw, StepOut *o) {
    random_model(m, c, be, 6, std);
    memset(o, 0, sizeof *o);
    if (dpo) {
        DpoStats st;
        model_zero_grad(m);
        o->loss = dpo_step(m, ch, rj, ref_c, ref_r, pw, 0.1, &st);
        o->x = st.rewards_chosen;
        o->y = st.rewards_rejected;
    } else {
        Dataset d = {.N = ch->B, .T = ch->T, .tokens = ch->tokens, .mask = ch->mask, .lengths = ch->lengths};
        int *ids = xmalloc((size_t)ch->B * sizeof(int));
        for (int i = 0; i < ch->B; i++) ids[i] = i;
        AdamW opt;
        adamw_create(&opt, m, 0.9f, 0.999f, 1e-8f, 0.1f, 1.0f, 0);
        double mask_sum;
        o->loss = sft_step(m, &opt, &d, ids, ch->B, ch->B, 0, 1e-3f, &o->x, &mask_sum, NULL);
        adamw_free(&opt, m);
        o->params = get(be, m->params, m->numel);
        free(ids);
    }
    o->grads = get(be, m->grads, m->numel);
}

// The step on the GPU vs cpu-bf16 and (with_f32) the fp32 CPU: loss, grad norm
// or reward statistics, every gradient, (SFT) the stepped parameters. The
// oracles run first, each model freed before the next one is made (a
// Llama-3.2-1B-sized model with its AdamW moments is ~22 GB).
static void test_step(const ModelConfig *c, int dpo, int rows, int T, float std, int with_f32) {
    char what[160], nm[256];
    snprintf(what, sizeof what, "%s step V%d C%d L%d NH%d NKV%d D%d F%d, %d %s T%d", dpo ? "DPO" : "SFT",
             c->vocab_size, c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->ffn_dim, rows,
             dpo ? "pairs" : "rows", T);
    int *lc = xmalloc((size_t)rows * sizeof(int)), *lr = xmalloc((size_t)rows * sizeof(int));
    double *ref_c = xmalloc((size_t)rows * sizeof(double)), *ref_r = xmalloc((size_t)rows * sizeof(double));
    double *pw = xmalloc((size_t)rows * sizeof(double));
    // references near the policy's own sums (random_batch scores t in [max(1, len/3), len)), so
    // that the margins are a few units, not a saturated sigmoid
    const double per_token = -log((double)c->vocab_size);
    for (int i = 0; i < rows; i++) {   // ragged, one full row on each side
        lc[i] = i == 0 ? T : T - (i * T) / (rows + 1);
        lr[i] = i == 1 % rows ? T : T - ((i + 2) * T) / (rows + 3);
        ref_c[i] = per_token * (lc[i] - (lc[i] / 3 > 1 ? lc[i] / 3 : 1)) + 2.0 * (i % 3) - 1.5;
        ref_r[i] = per_token * (lr[i] - (lr[i] / 3 > 1 ? lr[i] / 3 : 1)) - 1.0 * (i % 2) + 0.5;
        pw[i] = 0.5 + 0.625 * (i % 3);
    }
    Batch ch = random_batch(c, rows, T, lc, 31), rj = random_batch(c, rows, T, lr, 32);
    const Backend *bes[3] = {E, H, G};   // the device last: its model is kept for the table
    const int used[3] = {1, with_f32, 1};
    StepOut o[3];
    Model m;
    for (int k = 0; k < 3; k++) {
        if (!used[k]) continue;
        run_step(&m, bes[k], c, std, dpo, &ch, &rj, ref_c, ref_r, pw, &o[k]);
        if (k < 2) model_free(&m);
    }
    for (int k = 0; k < 2; k++) {
        if (!used[k]) continue;
        const char *tag = k == 0 ? "[cpu-bf16]" : "[cpu]";
        const double t_out = k == 0 ? TOL_EMU_MODEL_OUT : TOL_MODEL_OUT, t_grad = k == 0 ? TOL_EMU_MODEL_GRAD : TOL_MODEL_GRAD;
        const float sg[3] = {(float)o[2].loss, (float)o[2].x, (float)o[2].y}, sr[3] = {(float)o[k].loss, (float)o[k].x, (float)o[k].y};
        const char *names[3] = {"loss", dpo ? "rewards chosen" : "grad norm", "rewards rejected"};
        for (int j = 0; j < (dpo ? 3 : 2); j++) {
            snprintf(nm, sizeof nm, "%s: %s %s", what, names[j], tag);
            compare(nm, &sg[j], &sr[j], 1, j == 1 && !dpo ? t_grad : t_out);
        }
        snprintf(nm, sizeof nm, "%s: %s", what, tag);
        compare_grads(nm, &m, o[2].grads, flat_grad, o[k].grads, t_grad);
        if (!dpo) {   // the first AdamW step moves each weight by ~lr: the parameters stay close
            snprintf(nm, sizeof nm, "%s: params after AdamW %s", what, tag);
            compare(nm, o[2].params, o[k].params, m.numel, t_out);
        }
    }
    for (int k = 0; k < 3; k++) if (used[k]) { free(o[k].grads); free(o[k].params); }
    model_free(&m);
    batch_free(&ch); batch_free(&rj);
    free(lc); free(lr); free(ref_c); free(ref_r); free(pw);
}

// Two fresh runs of forward + backward + AdamW + forward on the GPU give the
// same bytes (DESIGN.md: no float atomics in weight-gradient reductions).
static void test_determinism(void) {
    const int B = 4, T = 67, len[4] = {67, 45, 0, 1};
    Batch b = random_batch(&BIG, B, T, len, 22);
    float *lp[2], *grads[2], *params[2];
    void *wc[2];
    size_t numel = 0, wc_bytes = 0;
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
        wc_bytes = numel * G->act_bytes;   // the compute copy the next forward reads, raw
        wc[run] = xmalloc(wc_bytes);
        G->download(wc[run], m.wc, wc_bytes);
        model_forward(&m, &b, 0);    // and the forward after the update
        lp[run] = fcopy(m.head_lp, (size_t)n);
        free(w);
        adamw_free(&opt, &m);
        model_free(&m);
    }
    const int same_g = !memcmp(grads[0], grads[1], numel * sizeof(float));
    const int same_p = !memcmp(params[0], params[1], numel * sizeof(float));
    const int same_l = !memcmp(lp[0], lp[1], (size_t)n * sizeof(float));
    const int same_c = !memcmp(wc[0], wc[1], wc_bytes);
    double max_abs;
    double e = rel_err(grads[1], grads[0], numel, &max_abs);
    record("determinism: 2 runs fwd+bwd, gradients bit-identical", same_g ? 0 : fmax(e, 1e-30), same_g ? 0 : max_abs, TOL_EXACT);
    e = rel_err(params[1], params[0], numel, &max_abs);
    record("determinism: 2 runs + AdamW, params bit-identical", same_p ? 0 : fmax(e, 1e-30), same_p ? 0 : max_abs, TOL_EXACT);
    record("determinism: 2 runs + AdamW, compute copy bit-identical", same_c ? 0 : 1, 0, TOL_EXACT);
    e = rel_err(lp[1], lp[0], (size_t)n, &max_abs);
    record("determinism: 2 runs, next forward log-probs bit-identical", same_l ? 0 : fmax(e, 1e-30), same_l ? 0 : max_abs, TOL_EXACT);
    for (int i = 0; i < 2; i++) { free(lp[i]); free(grads[i]); free(params[i]); free(wc[i]); }
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
    compare(nm, got_all, want_all, k * V, TOL_DECODE);
    decoder_free(&d);
    free(lg); free(want); free(got_all); free(want_all);
    model_free(&m);
}

// ---- the check table ---------------------------------------------------------------
// Every check in the order it runs: single ops at the sizes where the first
// failures would be (several log-prob chunks with a short last one, the
// two-stage bias sum, the embedding sort past 4,096 rows with 17-bit keys,
// attention at Llama's head counts and lengths, cuBLASLt on 2-byte-aligned
// views), then the small tile-unfriendly shapes, whole models, a
// Llama-3.2-1B-shaped SFT and DPO step, and decoding. `full` are a GPU run's
// sizes, `ci` the self-test's (make test: the same harness code on a 2-core
// machine); the numbers are the run function's arguments, in its order.

static void run_memory(const int *a) { (void)a; test_memory(); }
static void run_matmul(const int *a) { test_matmul(a[0], a[1], a[2], a[3], a[4]); }            // N C OC bias view
static void run_embedding(const int *a) { test_embedding(a[0], a[1], a[2]); }                 // N C V
static void run_rmsnorm(const int *a) { test_rmsnorm(a[0], a[1]); test_residual_rmsnorm(a[0], a[1]); }   // N C
static void run_rope(const int *a) { test_rope(a[0], a[1], a[2], a[3]); }                     // B T H D
static void run_attention(const int *a) { test_attention(a[0], a[1], a[2], a[3], a[4], a + 5); }   // B T NH NKV D lengths[B]
static void run_elementwise(const int *a) { test_elementwise((size_t)a[0]); }                 // n
static void run_logprob(const int *a) { test_logprob(a[0], a[1], a[2], a[3]); }               // n rows-of-h C V
static void run_adamw(const int *a) { test_adamw((size_t)a[0]); }                             // n
static void run_dpo_ops(const int *a) { test_dpo_ops(a[0], a[1], a[2]); }                     // pairs rows weighted
static void run_decode_ops(const int *a) { test_decode_ops(a[0], a[1], a[2]); }               // NH NKV D
static void run_select(const int *a) { test_select_ops(a[0], a[1], a[2]); }                   // N V k
static void run_fixtures(const int *a) { (void)a; test_fixtures(); }
static void run_model(const int *a) { (void)a; test_model_vs_cpu(); }
static void run_determinism(const int *a) { (void)a; test_determinism(); }
// dpo rows T on BIG, against both oracles
static void run_step_big(const int *a) { test_step(&BIG, a[0], a[1], a[2], 0.05f, 1); }
// dpo V C layers NH NKV D F rows T: Llama-3.2-1B's architecture (tied head,
// no biases, llama3 rope scaling), random weights, against cpu-bf16
static void run_step_llama(const int *a) {
    const ModelConfig c = {.vocab_size = a[1], .dim = a[2], .n_layers = a[3], .n_heads = a[4], .n_kv_heads = a[5],
                           .head_dim = a[6], .ffn_dim = a[7], .max_seq_len = a[9], .rope_theta = 500000.0f,
                           .rms_eps = 1e-5f, .tie_embeddings = 1, .qkv_bias = 0, .rope_scaling = 1,
                           .rope_factor = 32.0f, .rope_low_freq_factor = 1.0f, .rope_high_freq_factor = 4.0f,
                           .rope_original_max_pos = 8192};
    test_step(&c, a[0], a[8], a[9], 0.02f, 0);
}
static void run_decode_model(const int *a) {   // 0: tiny (tied, D 8), 1: BIG
    const ModelConfig tiny = {.vocab_size = 40, .dim = 32, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                              .head_dim = 8, .ffn_dim = 48, .max_seq_len = 24, .rope_theta = 10000.0f,
                              .rms_eps = 1e-5f, .tie_embeddings = 1, .qkv_bias = 0};
    if (a[0]) test_decode_vs_full(&BIG, "V1000 C192 GQA bias D32");
    else test_decode_vs_full(&tiny, "tiny GQA tied D8");
}

enum { MAX_ARGS = 10 };
typedef struct {
    const char *group;           // ops-real, ops, models, steps, decode
    const char *name;            // unique: --only takes these (shell patterns)
    void (*run)(const int *a);
    int full[MAX_ARGS], ci[MAX_ARGS];
    int quick;                   // in --quick (compute-sanitizer's list: small and fast)
} Check;

#define SAME(...) {__VA_ARGS__}, {__VA_ARGS__}
#define LLAMA_1B 128256, 2048, 16, 32, 8, 64, 8192       // V C layers NH NKV D F
#define LLAMA_CI 1000, 256, 2, 32, 8, 8, 384             // its head counts, small dims
static const Check checks[] = {
    {"ops-real", "memory",                   run_memory,    SAME(0), 1},
    {"ops-real", "matmul_bias_two_stage",    run_matmul,    SAME(2500, 77, 130, 1, 0), 0},       // N > 1024: chunks > 1
    {"ops-real", "matmul_views_c77_oc7",     run_matmul,    SAME(37, 77, 7, 1, 1), 1},           // 2-byte-aligned views
    {"ops-real", "matmul_views_nobias",      run_matmul,    SAME(300, 77, 7, 0, 1), 1},
    {"ops-real", "embedding_9000_v128256",   run_embedding, {9000, 136, 128256}, {9000, 24, 128256}, 0},
    {"ops-real", "attention_llama_d64_t512", run_attention, {4, 512, 32, 8, 64, 512, 0, 1, 317},
                                                            {4, 96, 32, 8, 64, 96, 0, 1, 59}, 0},
    {"ops-real", "attention_llama_d128_t512", run_attention, {4, 512, 32, 8, 128, 389, 0, 1, 512},
                                                             {4, 96, 32, 8, 128, 71, 0, 1, 96}, 0},
    {"ops-real", "attention_llama_d64_t2048", run_attention, {2, 2048, 32, 8, 64, 2048, 1357},
                                                             {2, 130, 32, 8, 64, 130, 87}, 0},
    {"ops-real", "attention_llama_d128_t2048", run_attention, {2, 2048, 32, 8, 128, 1531, 2048},
                                                              {2, 130, 32, 8, 128, 97, 130}, 0},
    // chunk rows = 32M floats / V: 261 at V 128256 (600 = 261 + 261 + 78), 682 at V 49152 (1500 = 682 + 682 + 136)
    {"ops-real", "logprob_v128256_chunks",   run_logprob,   {600, 700, 640, 128256}, {150, 200, 16, 128256}, 0},
    {"ops-real", "logprob_v49152_chunks",    run_logprob,   {1500, 1600, 576, 49152}, {300, 320, 24, 4099}, 0},
    {"ops-real", "adamw_1000003",            run_adamw,     SAME(1000003), 1},

    {"ops", "matmul_n37_c77_oc130",          run_matmul,    SAME(37, 77, 130, 1, 0), 1},
    {"ops", "matmul_n37_nobias",             run_matmul,    SAME(37, 77, 130, 0, 0), 1},
    {"ops", "matmul_n300_c576_oc1536",       run_matmul,    SAME(300, 576, 1536, 1, 0), 1},   // a SmolLM2 projection
    {"ops", "matmul_n1_c64_oc7",             run_matmul,    SAME(1, 64, 7, 1, 0), 1},
    {"ops", "embedding_n37",                 run_embedding, SAME(37, 77, 1000), 1},
    {"ops", "rmsnorm_n37_c77",               run_rmsnorm,   SAME(37, 77), 1},
    {"ops", "rmsnorm_n67_c576",              run_rmsnorm,   SAME(67, 576), 1},
    {"ops", "rope_d64",                      run_rope,      SAME(2, 67, 6, 64), 1},
    {"ops", "rope_d80",                      run_rope,      SAME(2, 67, 2, 80), 1},
    {"ops", "attention_d64",                 run_attention, SAME(4, 67, 6, 2, 64, 67, 0, 1, 40), 1},
    {"ops", "attention_d80",                 run_attention, SAME(4, 67, 6, 2, 80, 67, 0, 1, 40), 1},
    {"ops", "attention_d128",                run_attention, SAME(2, 67, 4, 2, 128, 0, 67), 1},   // > 48 KB shared memory
    {"ops", "attention_mha",                 run_attention, SAME(4, 67, 4, 4, 64, 67, 0, 1, 40), 1},
    {"ops", "attention_key_tiles",           run_attention, SAME(2, 200, 6, 2, 64, 200, 131), 1},
    {"ops", "attention_d8",                  run_attention, SAME(3, 13, 4, 2, 8, 13, 5, 9), 1},   // the fixtures' heads
    {"ops", "elementwise_4811",              run_elementwise, SAME(37 * 130 + 1), 1},
    {"ops", "elementwise_1m",                run_elementwise, SAME(1 << 20), 1},
    {"ops", "logprob_v1000",                 run_logprob,   SAME(300, 320, 77, 1000), 1},
    {"ops", "logprob_v49152",                run_logprob,   SAME(300, 320, 576, 49152), 0},
    {"ops", "adamw_10007",                   run_adamw,     SAME(10007), 1},
    {"ops", "dpo_ops",                       run_dpo_ops,   SAME(8, 700, 0), 1},
    {"ops", "dpo_ops_weighted",              run_dpo_ops,   SAME(37, 5000, 1), 1},   // several tiles, > 32 pairs
    {"ops", "decode_ops_d64",                run_decode_ops, SAME(6, 2, 64), 1},
    {"ops", "decode_ops_d80",                run_decode_ops, SAME(6, 2, 80), 1},
    {"ops", "decode_ops_d128",               run_decode_ops, SAME(4, 2, 128), 1},
    {"ops", "select_beam20_v49152",          run_select,    SAME(40, 49152, 40), 0},   // a 20-beam step, SmolLM2's vocabulary
    {"ops", "select_v1009",                  run_select,    SAME(7, 1009, 64), 1},
    {"ops", "select_k_over_v",               run_select,    SAME(3, 5, 8), 1},         // k > V: padding

    {"models", "hf_fixtures",                run_fixtures,  SAME(0), 0},
    {"models", "model_v1000",                run_model,     SAME(0), 0},
    {"models", "dpo_step_v1000",             run_step_big,  SAME(1, 3, 41), 0},
    {"models", "sft_step_v1000",             run_step_big,  SAME(0, 4, 67), 0},
    {"models", "determinism",                run_determinism, SAME(0), 0},
    {"steps", "sft_step_llama32_1b",         run_step_llama, {0, LLAMA_1B, 2, 24}, {0, LLAMA_CI, 2, 24}, 0},
    {"steps", "dpo_step_llama32_1b",         run_step_llama, {1, LLAMA_1B, 2, 24}, {1, LLAMA_CI, 2, 24}, 0},
    {"decode", "decode_tiny",                run_decode_model, SAME(0), 0},
    {"decode", "decode_v1000",               run_decode_model, SAME(1), 0},
};
enum { N_CHECKS = (int)(sizeof checks / sizeof checks[0]) };
static int full_sizes;   // 1: `full` (a GPU run), 0: `ci` (the self-test)

static const char *check_name(int i) { return checks[i].name; }
static const int *check_args(int i) { return full_sizes ? checks[i].full : checks[i].ci; }
static void check_args_str(int i, char *buf, size_t cap) {
    const int *a = check_args(i);
    int last = MAX_ARGS - 1;
    while (last > 0 && a[last] == 0) last--;
    size_t at = 0;
    buf[0] = 0;
    for (int j = 0; j <= last && at < cap; j++) at += (size_t)snprintf(buf + at, cap - at, "%s%d", j ? " " : "", a[j]);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// Runs check i: a fresh input stream per check (seeded by its name), so its
// inputs do not depend on which checks ran before it in the same process.
// SPREC_TEST_GPU_INJECT=NAME:exit|hang makes check NAME die as a CUDA error
// does (exit 1) or hang: tests the runner's fault handling (tests/gpu/selftest.sh).
static void run_check(int i) {
    char args[96];
    check_args_str(i, args, sizeof args);
    printf("\n-- check %s (%s; %s sizes: %s)\n", checks[i].name, checks[i].group, full_sizes ? "full" : "ci", args);
    fflush(stdout);
    uint64_t h = 1469598103934665603ULL;   // FNV-1a of the name
    for (const char *c = checks[i].name; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ULL;
    rng_seed(&rng, 20240611ULL ^ h);
    const char *inj = getenv("SPREC_TEST_GPU_INJECT");
    const size_t nl = strlen(checks[i].name);
    if (inj && !strncmp(inj, checks[i].name, nl) && inj[nl] == ':') {
        if (!strcmp(inj + nl + 1, "hang")) for (;;) pause();
        fprintf(stderr, "sprec: error: cuda: injected fault in check %s (SPREC_TEST_GPU_INJECT)\n", checks[i].name);
        exit(1);
    }
    cur_check = i;
    const double t0 = now_s();
    checks[i].run(check_args(i));
    cur_check = -1;
    printf("-- check %s: %.1f s\n", checks[i].name, now_s() - t0);
    fflush(stdout);
}

// ---- the device under test -------------------------------------------------------

// 0 when G is set up, 77 when no GPU is usable, 1 on a setup error
static int setup_device(int self_test) {
    H = backend_cpu();
    E = backend_cpu_bf16();
    if (self_test) {
        G = backend_cpu_bf16();
        printf("test_gpu: SELF-TEST: the CPU's bf16 emulation stands in for CUDA (checks this harness only: "
               "[cpu-bf16] errors are 0, [cpu] ones the cost of bf16 storage)\n");
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
    fflush(stdout);
    if (G->act_bytes != 2 || E->act_bytes != 2 || H->act_bytes != sizeof(float)) {
        printf("test_gpu: expected bf16 act storage under test and in the emulation, fp32 on the CPU "
               "('%s' %zu bytes, '%s' %zu, '%s' %zu)\n", G->name, G->act_bytes, E->name, E->act_bytes, H->name,
               H->act_bytes);
        return 1;
    }
    h5_quiet();
    return 0;
}

// ---- the runner: a fault in one check does not end the others ----------------------
// A child process sets up the device and runs the selected checks in order,
// sending BEGIN/RESULT/END messages up a pipe. When it dies inside a check (a
// CUDA error exits 1 after printing the failing call's file:line; a fault is a
// signal) or the check outlasts its time limit, the parent records that check
// as failed, naming it, and starts a new child at the next check: a sticky
// CUDA error ends only the process it happened in.

typedef struct { int kind, check; Result r; } Msg;   // < PIPE_BUF: written atomically

static void send_msg(int kind, int check, const Result *r) {
    Msg m = {.kind = kind, .check = check};
    if (r) m.r = *r;
    if (write(msg_fd, &m, sizeof m) != (ssize_t)sizeof m) _exit(3);   // the parent is gone
}


static void record_fault(int i, const char *what) {
    Result r = {.rel = INFINITY, .max_abs = INFINITY, .tol = 0, .pass = 0, .check = i};
    snprintf(r.name, sizeof r.name, "%.60s: %.130s", checks[i].name, what);
    printf("%-70s FAIL\n", r.name);
    fflush(stdout);
    result_add(&r);
}

// Returns 77 when the first child finds no GPU, else 0.
static int run_isolated(const int *sel, int n_sel, int self_test, double timeout_s) {
    int next = 0;
    while (next < n_sel) {
        int fd[2];
        if (pipe(fd)) { perror("test_gpu: pipe"); exit(2); }
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) { perror("test_gpu: fork"); exit(2); }
        if (pid == 0) {
            close(fd[0]);
            msg_fd = fd[1];
            int rc = setup_device(self_test);
            fflush(stdout);
            if (rc) _exit(rc);
            for (int k = next; k < n_sel; k++) {
                send_msg(MSG_BEGIN, sel[k], NULL);
                run_check(sel[k]);
                send_msg(MSG_END, sel[k], NULL);
            }
            fflush(stdout);
            _exit(0);
        }
        close(fd[1]);
        int current = -1, timed_out = 0, started = 0;
        double t0 = now_s();
        for (;;) {
            struct pollfd p = {.fd = fd[0], .events = POLLIN};
            const double left = current >= 0 ? t0 + timeout_s - now_s() : 3600.0;
            int pr = left > 0 ? poll(&p, 1, (int)(left * 1000) + 1) : 0;
            if (pr < 0 && errno == EINTR) continue;
            if (pr == 0) { timed_out = 1; kill(pid, SIGKILL); break; }
            Msg m;
            ssize_t got = read(fd[0], &m, sizeof m);
            if (got < 0 && errno == EINTR) continue;
            if (got != (ssize_t)sizeof m) break;   // the child ended (or died)
            if (m.kind == MSG_BEGIN) { current = m.check; started = 1; t0 = now_s(); }
            else if (m.kind == MSG_RESULT) result_add(&m.r);
            else { current = -1; while (next < n_sel && sel[next] != m.check) next++; next++; }
        }
        close(fd[0]);
        int st = 0;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
        if (!started && WIFEXITED(st) && WEXITSTATUS(st) == 77) return 77;
        if (current < 0) {
            if (WIFEXITED(st) && WEXITSTATUS(st) == 0) break;   // all done
            // died outside any check: in the device setup (it would fail again: stop), or between two
            char what[96];
            snprintf(what, sizeof what, "%s (exit %d)", started ? "the process ended before this check" :
                     "device setup failed", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
            record_fault(sel[next < n_sel ? next : n_sel - 1], what);
            if (!started) return 0;
            next++;
            continue;
        }
        char what[160];
        if (timed_out)
            snprintf(what, sizeof what, "timed out after %.0f s (--check-timeout); later checks run in a new process",
                     timeout_s);
        else if (WIFSIGNALED(st))
            snprintf(what, sizeof what, "crashed (signal %d); later checks run in a new process", WTERMSIG(st));
        else
            snprintf(what, sizeof what, "ended the process (exit %d; the error above names the failing call); "
                     "later checks run in a new process", WEXITSTATUS(st));
        printf("\ntest_gpu: check %s: %s\n", checks[current].name, what);
        record_fault(current, what);
        while (next < n_sel && sel[next] != current) next++;
        next++;
    }
    return 0;
}

static int selected(int i, int quick, const char *only, const char *groups) {
    if (quick && !checks[i].quick) return 0;
    for (int pass = 0; pass < 2; pass++) {   // a comma-separated list of shell patterns
        const char *list = pass ? only : groups, *key = pass ? checks[i].name : checks[i].group;
        if (!list) continue;
        int hit = 0;
        char buf[512];
        snprintf(buf, sizeof buf, "%s", list);
        for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
            hit |= !fnmatch(t, key, 0);
        if (!hit) return 0;
    }
    return 1;
}

static const char *usage =
    "usage: test_gpu [--list] [--quick] [--only PATTERNS] [--group GROUPS] [--sizes full|ci] [--inline]\n"
    "                [--check-timeout S] [--json FILE]\n"
    "  --list           print the checks (group, name, arguments at the chosen sizes, trailing zeros\n"
    "                   left out) and exit\n"
    "  --quick          only the small checks marked quick (compute-sanitizer's list)\n"
    "  --only P1,P2     only the checks whose names match one of the shell patterns\n"
    "  --group G1,G2    only these groups: ops-real, ops, models, steps, decode\n"
    "  --sizes          full (default on a GPU) or ci (default in the self-test)\n"
    "  --inline         run the checks in this process (no restart after a fault; for compute-sanitizer)\n"
    "  --check-timeout  seconds one check may take before it is killed and failed (default 600)\n"
    "  --json FILE      also write one JSON object per result to FILE\n"
    "  SPREC_TEST_GPU_SELFTEST=1: the bf16 emulation stands in for CUDA (no GPU needed)\n"
    "  SPREC_CUDA_SYNC=1: synchronise after every kernel, so a device fault names its launch (file:line)\n";

int main(int argc, char **argv) {
    int quick = 0, list = 0, isolate = 1, sizes = -1;
    double timeout_s = 600;
    const char *json_path = NULL, *only = NULL, *groups = NULL;
    for (int i = 1; i < argc; i++) {
        const int more = i + 1 < argc;
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--list")) list = 1;
        else if (!strcmp(argv[i], "--inline")) isolate = 0;
        else if (!strcmp(argv[i], "--json") && more) json_path = argv[++i];
        else if (!strcmp(argv[i], "--only") && more) only = argv[++i];
        else if (!strcmp(argv[i], "--group") && more) groups = argv[++i];
        else if (!strcmp(argv[i], "--check-timeout") && more && (timeout_s = atof(argv[++i])) > 0) {}
        else if (!strcmp(argv[i], "--sizes") && more && (!strcmp(argv[i + 1], "full") || !strcmp(argv[i + 1], "ci")))
            sizes = !strcmp(argv[++i], "full");
        else if (!strcmp(argv[i], "--help")) { fputs(usage, stdout); return 0; }
        else { fprintf(stderr, "test_gpu: bad argument '%s'\n%s", argv[i], usage); return 2; }
    }
    const char *self = getenv("SPREC_TEST_GPU_SELFTEST");
    const int self_test = self && *self == '1';
    full_sizes = sizes >= 0 ? sizes : !self_test;
    int sel[N_CHECKS], n_sel = 0;
    for (int i = 0; i < N_CHECKS; i++)
        if (selected(i, quick, only, groups)) sel[n_sel++] = i;
    if (list) {
        for (int k = 0; k < n_sel; k++) {
            char args[96];
            check_args_str(sel[k], args, sizeof args);
            printf("%-9s %-30s %s%s\n", checks[sel[k]].group, checks[sel[k]].name, args, checks[sel[k]].quick ? "  (quick)" : "");
        }
        return 0;
    }
    if (!n_sel) { fprintf(stderr, "test_gpu: no check matches --only/--group/--quick\n"); return 2; }
    if (json_path && !(json_out = fopen(json_path, "w"))) { perror(json_path); return 2; }
    printf("test_gpu: %d of %d checks, %s sizes, %s%s\n", n_sel, N_CHECKS, full_sizes ? "full" : "ci",
           isolate ? "each fault ends only its check (a new process carries on)" : "inline",
           getenv("SPREC_CUDA_SYNC") ? ", SPREC_CUDA_SYNC set (sync after every kernel)" : "");
    int rc;
    if (isolate) rc = run_isolated(sel, n_sel, self_test, timeout_s);
    else if (!(rc = setup_device(self_test)))
        for (int k = 0; k < n_sel; k++) run_check(sel[k]);
    if (rc) { if (json_out) fclose(json_out); return rc; }

    printf("\n| check | rel error | max abs error | tolerance | result |\n|---|---|---|---|---|\n");
    for (int i = 0; i < n_results; i++) {
        const Result *r = &results[i];
        printf("| %s | %.2e | %.2e | %.1e | %s |\n", r->name, r->rel, r->max_abs, r->tol, r->pass ? "pass" : "FAIL");
    }
    printf("\ntest_gpu: %d checks, %d failed\n", n_results, n_failed);
    if (n_failed) {
        printf("test_gpu: failed:\n");
        for (int i = 0; i < n_results; i++)
            if (!results[i].pass) printf("  %s (test %s)\n", results[i].name, results[i].check >= 0 ? checks[results[i].check].name : "-");
    }
    if (json_out) fclose(json_out);
    return n_failed ? 1 : 0;
}
