// CPU backend ops. Every forward is checked against a naive double-precision
// version written here (plain loops, independent of the kernels); every
// backward against central finite differences of that double forward, through
// the scalar L = sum(R * out) with R random. Gradient buffers start nonzero, so
// the checks also prove the backward ADDS into them.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tests.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_ops.h"

// ---- helpers -------------------------------------------------------------

static uint64_t rng = 1;
static void seed(uint64_t s) { rng = s * 0x9E3779B97F4A7C15ull + 1; }
// uniform in [-1, 1) (splitmix64)
static double urand(void) {
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) / (double)(1ull << 52) - 1.0;
}
static int irand(int n) { return (int)((urand() + 1.0) * 0.5 * n) % n; }

static float *frand(size_t n, double scale) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = (float)(scale * urand());
    return x;
}
static float *fdup(const float *x, size_t n) {
    float *y = malloc(n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}
static double *to_double(const float *x, size_t n) {
    double *y = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

// ||a - b|| / ||b||, with got = after - before when before != NULL (the amount
// a backward added to a prefilled gradient)
static double rel_err(const float *after, const float *before, const double *want, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double got = (double)after[i] - (before ? (double)before[i] : 0.0);
        num += (got - want[i]) * (got - want[i]);
        den += want[i] * want[i];
    }
    return sqrt(num) / (den > 0.0 ? sqrt(den) : 1.0);
}

#define EXPECT_ERR(what, err, tol) do { double e_ = (err); \
        print_message("  %-34s rel err %.2e\n", what, e_); assert_true(e_ <= (tol)); } while (0)

// dL/dx by central differences; x is perturbed in place and restored.
typedef double (*loss_fn)(void *ctx);
static void fd_grad(double *g, double *x, size_t n, loss_fn loss, void *ctx) {
    const double eps = 1e-6;
    for (size_t i = 0; i < n; i++) {
        double x0 = x[i];
        x[i] = x0 + eps; double lp = loss(ctx);
        x[i] = x0 - eps; double lm = loss(ctx);
        x[i] = x0;
        g[i] = (lp - lm) / (2.0 * eps);
    }
}

static double dot(const double *a, const double *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

// ---- memory, registry, add ------------------------------------------------

static void test_ops_registry_memory(void **state) {
    (void)state;
    const Backend *be = backend_cpu();
    assert_non_null(be);
    assert_string_equal(be->name, "cpu");
    assert_true(be->alloc && be->free && be->upload && be->download && be->copy && be->zero);
    assert_true(be->act_bytes == sizeof(float) && be->act_from_f32 && be->scale && be->scale_act);
    assert_true(be->matmul_fwd && be->matmul_bwd && be->embedding_fwd && be->embedding_bwd);
    assert_true(be->rmsnorm_fwd && be->rmsnorm_bwd && be->rope_fwd && be->rope_bwd);
    assert_true(be->attention_fwd && be->attention_bwd && be->swiglu_fwd && be->swiglu_bwd);
    assert_true(be->add && be->logprob_fwd && be->logprob_bwd && be->logprob_fwd_bwd && be->adamw_multi && be->sumsq);
    assert_true(be->seq_logprob && be->dpo_loss);

    size_t n = 1001;
    float *d = be->alloc(n * sizeof(float));
    assert_int_equal((uintptr_t)d % 64, 0);
    for (size_t i = 0; i < n; i++) assert_true(d[i] == 0.0f);
    float *src = frand(n, 1.0), *back = malloc(n * sizeof(float));
    float *d2 = be->alloc(n * sizeof(float));
    be->upload(d, src, n * sizeof(float));
    be->copy(d2, d, n * sizeof(float));
    be->download(back, d2, n * sizeof(float));
    assert_memory_equal(back, src, n * sizeof(float));
    be->zero(d2, n * sizeof(float));
    for (size_t i = 0; i < n; i++) assert_true(d2[i] == 0.0f);
    be->free(be->alloc(0));
    be->free(d);
    be->free(d2);
    free(src);
    free(back);
}

static void test_ops_add(void **state) {
    (void)state;
    const Backend *be = backend_cpu();
    size_t n = 40001;   // above the parallel threshold
    float *a = frand(n, 1.0), *b = frand(n, 1.0), *out = malloc(n * sizeof(float));
    be->add(out, a, b, n);
    for (size_t i = 0; i < n; i++) assert_true(out[i] == a[i] + b[i]);
    be->add(a, a, b, n);   // aliased output
    assert_memory_equal(a, out, n * sizeof(float));
    free(a); free(b); free(out);
}

// ---- matmul ---------------------------------------------------------------

typedef struct { int N, C, OC; double *inp, *w, *bias, *out, *R; } MatmulCtx;

static void matmul_ref(MatmulCtx *c) {
    for (int n = 0; n < c->N; n++)
        for (int o = 0; o < c->OC; o++) {
            double s = c->bias ? c->bias[o] : 0.0;
            for (int i = 0; i < c->C; i++) s += c->inp[n * c->C + i] * c->w[o * c->C + i];
            c->out[n * c->OC + o] = s;
        }
}
static double matmul_loss(void *ctx) {
    MatmulCtx *c = ctx;
    matmul_ref(c);
    return dot(c->R, c->out, (size_t)c->N * c->OC);
}

static void matmul_case(int N, int C, int OC, int with_bias, int with_grads) {
    const Backend *be = backend_cpu();
    size_t ni = (size_t)N * C, nw = (size_t)OC * C, no = (size_t)N * OC;
    float *inp = frand(ni, 1.0), *w = frand(nw, 0.5), *bias = with_bias ? frand(OC, 1.0) : NULL;
    float *out = malloc(no * sizeof(float)), *R = frand(no, 1.0);
    for (size_t i = 0; i < no; i++) out[i] = NAN;   // must be overwritten
    be->matmul_fwd(out, inp, w, bias, N, C, OC);

    MatmulCtx c = { N, C, OC, to_double(inp, ni), to_double(w, nw),
                    bias ? to_double(bias, OC) : NULL, malloc(no * sizeof(double)), to_double(R, no) };
    matmul_ref(&c);
    EXPECT_ERR("matmul fwd", rel_err(out, NULL, c.out, no), 1e-5);
    if (with_grads) {
        float *dinp0 = frand(ni, 0.5), *dw0 = frand(nw, 0.5), *db0 = frand(OC, 0.5);
        float *dinp = fdup(dinp0, ni), *dw = fdup(dw0, nw), *db = fdup(db0, OC);
        be->matmul_bwd(dinp, dw, bias ? db : NULL, R, inp, w, N, C, OC);
        double *g = malloc((ni > nw ? ni : nw) * sizeof(double));
        fd_grad(g, c.inp, ni, matmul_loss, &c);
        EXPECT_ERR("matmul dinp", rel_err(dinp, dinp0, g, ni), 1e-4);
        fd_grad(g, c.w, nw, matmul_loss, &c);
        EXPECT_ERR("matmul dw", rel_err(dw, dw0, g, nw), 1e-4);
        if (bias) {
            fd_grad(g, c.bias, OC, matmul_loss, &c);
            EXPECT_ERR("matmul dbias", rel_err(db, db0, g, OC), 1e-4);
        }
        else assert_memory_equal(db, db0, OC * sizeof(float));
        // NULL outputs are skipped; the others are unaffected by that
        float *dw2 = fdup(dw0, nw);
        be->matmul_bwd(NULL, dw2, NULL, R, inp, w, N, C, OC);
        assert_memory_equal(dw2, dw, nw * sizeof(float));
        free(dinp0); free(dw0); free(db0); free(dinp); free(dw); free(db); free(dw2); free(g);
    }
    free(inp); free(w); free(bias); free(out); free(R);
    free(c.inp); free(c.w); free(c.bias); free(c.out); free(c.R);
}

static void test_ops_matmul(void **state) {
    (void)state;
    seed(11);
    matmul_case(7, 13, 5, 1, 1);
    matmul_case(9, 11, 17, 0, 1);
    matmul_case(301, 67, 131, 1, 0);   // big enough for OpenBLAS to thread
    matmul_case(13, 9, 139, 1, 1);     // dbias over several 64-column slices
}

// ---- embedding ------------------------------------------------------------

typedef struct { int N, C; const int *tokens; double *wte, *out, *R; } EmbCtx;

static double embedding_loss(void *ctx) {
    EmbCtx *c = ctx;
    for (int n = 0; n < c->N; n++)
        for (int i = 0; i < c->C; i++) c->out[n * c->C + i] = c->wte[c->tokens[n] * c->C + i];
    return dot(c->R, c->out, (size_t)c->N * c->C);
}

static void test_ops_embedding(void **state) {
    (void)state;
    seed(12);
    const Backend *be = backend_cpu();
    int N = 29, C = 37, V = 11;   // C spans several 16-float thread slices
    int tokens[29];
    for (int n = 0; n < N; n++) tokens[n] = n < 6 ? 3 : irand(V);   // token 3 repeats
    size_t nw = (size_t)V * C, no = (size_t)N * C;
    float *wte = frand(nw, 1.0), *out = malloc(no * sizeof(float)), *R = frand(no, 1.0);
    be->embedding_fwd(out, tokens, wte, N, C);
    EmbCtx c = { N, C, tokens, to_double(wte, nw), malloc(no * sizeof(double)), to_double(R, no) };
    embedding_loss(&c);
    EXPECT_ERR("embedding fwd", rel_err(out, NULL, c.out, no), 0.0);

    float *dw0 = frand(nw, 0.5), *dw = fdup(dw0, nw), *dw2 = fdup(dw0, nw);
    be->embedding_bwd(dw, R, tokens, N, C, V);
    double *g = malloc(nw * sizeof(double));
    fd_grad(g, c.wte, nw, embedding_loss, &c);
    EXPECT_ERR("embedding dwte", rel_err(dw, dw0, g, nw), 1e-5);
    be->embedding_bwd(dw2, R, tokens, N, C, V);
    assert_memory_equal(dw, dw2, nw * sizeof(float));   // deterministic
    free(wte); free(out); free(R); free(dw0); free(dw); free(dw2); free(g);
    free(c.wte); free(c.out); free(c.R);
}

// ---- rmsnorm --------------------------------------------------------------

typedef struct { int N, C; double eps, *inp, *w, *out, *rstd, *R; } NormCtx;

static double rmsnorm_loss(void *ctx) {
    NormCtx *c = ctx;
    for (int n = 0; n < c->N; n++) {
        double ss = 0.0;
        for (int i = 0; i < c->C; i++) ss += c->inp[n * c->C + i] * c->inp[n * c->C + i];
        c->rstd[n] = 1.0 / sqrt(ss / c->C + c->eps);
        for (int i = 0; i < c->C; i++)
            c->out[n * c->C + i] = c->inp[n * c->C + i] * c->rstd[n] * c->w[i];
    }
    return dot(c->R, c->out, (size_t)c->N * c->C);
}

static void test_ops_rmsnorm(void **state) {
    (void)state;
    seed(13);
    const Backend *be = backend_cpu();
    int N = 9, C = 19;
    float eps = 1e-5f;
    size_t ni = (size_t)N * C;
    float *inp = frand(ni, 2.0), *w = frand(C, 1.0), *R = frand(ni, 1.0);
    float *out = malloc(ni * sizeof(float)), *rstd = malloc(N * sizeof(float));
    be->rmsnorm_fwd(out, rstd, inp, w, eps, N, C);
    NormCtx c = { N, C, eps, to_double(inp, ni), to_double(w, C), malloc(ni * sizeof(double)),
                  malloc(N * sizeof(double)), to_double(R, ni) };
    rmsnorm_loss(&c);
    EXPECT_ERR("rmsnorm fwd", rel_err(out, NULL, c.out, ni), 1e-6);
    EXPECT_ERR("rmsnorm rstd", rel_err(rstd, NULL, c.rstd, N), 1e-6);

    float *dinp0 = frand(ni, 0.5), *dw0 = frand(C, 0.5);
    float *dinp = fdup(dinp0, ni), *dw = fdup(dw0, C), *dw2 = fdup(dw0, C);
    be->rmsnorm_bwd(dinp, dw, R, inp, w, rstd, N, C);
    double *g = malloc(ni * sizeof(double));
    fd_grad(g, c.inp, ni, rmsnorm_loss, &c);
    EXPECT_ERR("rmsnorm dinp", rel_err(dinp, dinp0, g, ni), 1e-4);
    fd_grad(g, c.w, C, rmsnorm_loss, &c);
    EXPECT_ERR("rmsnorm dweight", rel_err(dw, dw0, g, C), 1e-4);
    be->rmsnorm_bwd(NULL, dw2, R, inp, w, rstd, N, C);   // NULL dinp skipped
    assert_memory_equal(dw, dw2, C * sizeof(float));
    free(inp); free(w); free(R); free(out); free(rstd);
    free(dinp0); free(dw0); free(dinp); free(dw); free(dw2); free(g);
    free(c.inp); free(c.w); free(c.out); free(c.rstd); free(c.R);
}

// ---- rope -----------------------------------------------------------------

typedef struct { int B, T, H, D; const double *cos, *sin; double *x, *out, *R; } RopeCtx;

static double rope_loss(void *ctx) {
    RopeCtx *c = ctx;
    int half = c->D / 2;
    for (int b = 0; b < c->B; b++)
        for (int t = 0; t < c->T; t++)
            for (int h = 0; h < c->H; h++) {
                size_t o = (((size_t)b * c->T + t) * c->H + h) * c->D;
                for (int i = 0; i < half; i++) {
                    double co = c->cos[t * half + i], si = c->sin[t * half + i];
                    c->out[o + i] = c->x[o + i] * co - c->x[o + i + half] * si;
                    c->out[o + i + half] = c->x[o + i + half] * co + c->x[o + i] * si;
                }
            }
    return dot(c->R, c->out, (size_t)c->B * c->T * c->H * c->D);
}

static void test_ops_rope(void **state) {
    (void)state;
    seed(14);
    const Backend *be = backend_cpu();
    int B = 2, T = 5, H = 3, D = 10, half = D / 2;
    size_t n = (size_t)B * T * H * D;
    float *cs = malloc(T * half * sizeof(float)), *sn = malloc(T * half * sizeof(float));
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            double ang = t * pow(10000.0, -2.0 * i / D);
            cs[t * half + i] = (float)cos(ang);
            sn[t * half + i] = (float)sin(ang);
        }
    float *x = frand(n, 1.0), *y = fdup(x, n), *R = frand(n, 1.0), *dx = fdup(R, n);
    be->rope_fwd(y, cs, sn, B, T, H, D);
    double *dcs = to_double(cs, T * half), *dsn = to_double(sn, T * half);
    RopeCtx c = { B, T, H, D, dcs, dsn, to_double(x, n), malloc(n * sizeof(double)), to_double(R, n) };
    rope_loss(&c);
    EXPECT_ERR("rope fwd", rel_err(y, NULL, c.out, n), 1e-6);
    be->rope_bwd(dx, cs, sn, B, T, H, D);
    double *g = malloc(n * sizeof(double));
    fd_grad(g, c.x, n, rope_loss, &c);
    EXPECT_ERR("rope bwd", rel_err(dx, NULL, g, n), 1e-5);
    free(cs); free(sn); free(x); free(y); free(R); free(dx); free(dcs); free(dsn); free(g);
    free(c.x); free(c.out); free(c.R);
}

// ---- swiglu ---------------------------------------------------------------

typedef struct { size_t n; double *gate, *up, *out, *R; } SwigluCtx;

static double swiglu_loss(void *ctx) {
    SwigluCtx *c = ctx;
    for (size_t i = 0; i < c->n; i++)
        c->out[i] = c->gate[i] / (1.0 + exp(-c->gate[i])) * c->up[i];
    return dot(c->R, c->out, c->n);
}

static void test_ops_swiglu(void **state) {
    (void)state;
    seed(15);
    const Backend *be = backend_cpu();
    size_t n = 37;
    float *gate = frand(n, 4.0), *up = frand(n, 1.0), *R = frand(n, 1.0);
    gate[0] = -100.0f;   // sigmoid underflow must stay finite
    gate[1] = 100.0f;
    float *out = malloc(n * sizeof(float));
    be->swiglu_fwd(out, gate, up, n);
    SwigluCtx c = { n, to_double(gate, n), to_double(up, n), malloc(n * sizeof(double)), to_double(R, n) };
    swiglu_loss(&c);
    EXPECT_ERR("swiglu fwd", rel_err(out, NULL, c.out, n), 1e-6);
    float *dg0 = frand(n, 0.5), *du0 = frand(n, 0.5), *dg = fdup(dg0, n), *du = fdup(du0, n);
    be->swiglu_bwd(dg, du, R, gate, up, n);
    double *g = malloc(n * sizeof(double));
    fd_grad(g, c.gate, n, swiglu_loss, &c);
    EXPECT_ERR("swiglu dgate", rel_err(dg, dg0, g, n), 1e-5);
    fd_grad(g, c.up, n, swiglu_loss, &c);
    EXPECT_ERR("swiglu dup", rel_err(du, du0, g, n), 1e-5);
    free(gate); free(up); free(R); free(out); free(dg0); free(du0); free(dg); free(du); free(g);
    free(c.gate); free(c.up); free(c.out); free(c.R);
}

// ---- attention ------------------------------------------------------------

typedef struct {
    int B, T, NH, NKV, D;
    const int *len;
    double *q, *k, *v, *out, *lse, *R;
} AttnCtx;

static void attention_ref(AttnCtx *c) {
    int B = c->B, T = c->T, NH = c->NH, NKV = c->NKV, D = c->D;
    double s[64];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < NH; h++) {
                double *o = c->out + (((size_t)b * T + t) * NH + h) * D;
                double *lse = c->lse + ((size_t)b * NH + h) * T + t;
                for (int d = 0; d < D; d++) o[d] = 0.0;
                *lse = 0.0;
                if (t >= c->len[b]) continue;
                int g = h / (NH / NKV);
                const double *qr = c->q + (((size_t)b * T + t) * NH + h) * D;
                double mx = -INFINITY, sum = 0.0;
                for (int j = 0; j <= t; j++) {
                    const double *kr = c->k + (((size_t)b * T + j) * NKV + g) * D;
                    s[j] = 0.0;
                    for (int d = 0; d < D; d++) s[j] += qr[d] * kr[d];
                    s[j] /= sqrt((double)D);
                    if (s[j] > mx) mx = s[j];
                }
                for (int j = 0; j <= t; j++) sum += exp(s[j] - mx);
                *lse = mx + log(sum);
                for (int j = 0; j <= t; j++) {
                    const double *vr = c->v + (((size_t)b * T + j) * NKV + g) * D;
                    double p = exp(s[j] - *lse);
                    for (int d = 0; d < D; d++) o[d] += p * vr[d];
                }
            }
}
static double attention_loss(void *ctx) {
    AttnCtx *c = ctx;
    attention_ref(c);
    return dot(c->R, c->out, (size_t)c->B * c->T * c->NH * c->D);
}

// rows (b, t) of a [B,T,H*D] tensor: 1 where t >= len[b]
static int padded(const int *len, int T, size_t row) { return (int)(row % T) >= len[row / T]; }

// every padded row of x[B*T, W] equals the same row of y
static void expect_padded_rows_equal(const float *x, const float *y, const int *len,
                                     int B, int T, int W) {
    for (size_t r = 0; r < (size_t)B * T; r++)
        if (padded(len, T, r)) assert_memory_equal(x + r * W, y + r * W, W * sizeof(float));
}

static void attention_case(int B, int T, int NH, int NKV, int D, const int *len, int block) {
    const Backend *be = backend_cpu();
    cpu_attention_block = block;
    size_t nq = (size_t)B * T * NH * D, nk = (size_t)B * T * NKV * D, nl = (size_t)B * NH * T;
    float *q = frand(nq, 1.5), *k = frand(nk, 1.5), *v = frand(nk, 1.0), *R = frand(nq, 1.0);
    float *out = malloc(nq * sizeof(float)), *lse = malloc(nl * sizeof(float));
    for (size_t i = 0; i < nq; i++) out[i] = 7.0f;   // padded rows must be overwritten with 0
    for (size_t i = 0; i < nl; i++) lse[i] = 7.0f;
    be->attention_fwd(out, lse, q, k, v, len, B, T, NH, NKV, D);

    AttnCtx c = { B, T, NH, NKV, D, len, to_double(q, nq), to_double(k, nk), to_double(v, nk),
                  malloc(nq * sizeof(double)), malloc(nl * sizeof(double)), to_double(R, nq) };
    attention_ref(&c);
    EXPECT_ERR("attention fwd out", rel_err(out, NULL, c.out, nq), 1e-5);
    EXPECT_ERR("attention fwd lse", rel_err(lse, NULL, c.lse, nl), 1e-5);
    for (size_t r = 0; r < (size_t)B * T; r++)
        if (padded(len, T, r))
            for (int i = 0; i < NH * D; i++) assert_true(out[r * NH * D + i] == 0.0f);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = len[b]; t < T; t++) assert_true(lse[((size_t)b * NH + h) * T + t] == 0.0f);

    // backward: dout padded rows are NaN, which must never be read
    float *dout = fdup(R, nq);
    for (size_t r = 0; r < (size_t)B * T; r++)
        if (padded(len, T, r))
            for (int i = 0; i < NH * D; i++) dout[r * NH * D + i] = NAN;
    float *dq0 = frand(nq, 0.3), *dk0 = frand(nk, 0.3), *dv0 = frand(nk, 0.3);
    float *dq = fdup(dq0, nq), *dk = fdup(dk0, nk), *dv = fdup(dv0, nk);
    be->attention_bwd(dq, dk, dv, dout, out, lse, q, k, v, len, B, T, NH, NKV, D);
    double *g = malloc(nq * sizeof(double));
    fd_grad(g, c.q, nq, attention_loss, &c);
    EXPECT_ERR("attention dq", rel_err(dq, dq0, g, nq), 1e-4);
    fd_grad(g, c.k, nk, attention_loss, &c);
    EXPECT_ERR("attention dk", rel_err(dk, dk0, g, nk), 1e-4);
    fd_grad(g, c.v, nk, attention_loss, &c);
    EXPECT_ERR("attention dv", rel_err(dv, dv0, g, nk), 1e-4);
    expect_padded_rows_equal(dq, dq0, len, B, T, NH * D);
    expect_padded_rows_equal(dk, dk0, len, B, T, NKV * D);
    expect_padded_rows_equal(dv, dv0, len, B, T, NKV * D);

    // deterministic: a second identical run is bit-identical
    float *dq2 = fdup(dq0, nq), *dk2 = fdup(dk0, nk), *dv2 = fdup(dv0, nk);
    be->attention_bwd(dq2, dk2, dv2, dout, out, lse, q, k, v, len, B, T, NH, NKV, D);
    assert_memory_equal(dq2, dq, nq * sizeof(float));
    assert_memory_equal(dk2, dk, nk * sizeof(float));
    assert_memory_equal(dv2, dv, nk * sizeof(float));

    // padded q/k/v rows never influence anything: NaN there changes no bit
    for (size_t r = 0; r < (size_t)B * T; r++)
        if (padded(len, T, r)) {
            for (int i = 0; i < NH * D; i++) q[r * NH * D + i] = NAN;
            for (int i = 0; i < NKV * D; i++) k[r * NKV * D + i] = v[r * NKV * D + i] = NAN;
        }
    float *out2 = malloc(nq * sizeof(float)), *lse2 = malloc(nl * sizeof(float));
    be->attention_fwd(out2, lse2, q, k, v, len, B, T, NH, NKV, D);
    assert_memory_equal(out2, out, nq * sizeof(float));
    assert_memory_equal(lse2, lse, nl * sizeof(float));
    memcpy(dq2, dq0, nq * sizeof(float));
    memcpy(dk2, dk0, nk * sizeof(float));
    memcpy(dv2, dv0, nk * sizeof(float));
    be->attention_bwd(dq2, dk2, dv2, dout, out, lse, q, k, v, len, B, T, NH, NKV, D);
    assert_memory_equal(dq2, dq, nq * sizeof(float));
    assert_memory_equal(dk2, dk, nk * sizeof(float));
    assert_memory_equal(dv2, dv, nk * sizeof(float));

    // NULL gradients are skipped; the others are unaffected
    memcpy(dk2, dk0, nk * sizeof(float));
    be->attention_bwd(NULL, dk2, NULL, dout, out, lse, q, k, v, len, B, T, NH, NKV, D);
    assert_memory_equal(dk2, dk, nk * sizeof(float));
    memcpy(dv2, dv0, nk * sizeof(float));
    be->attention_bwd(NULL, NULL, dv2, dout, out, lse, q, k, v, len, B, T, NH, NKV, D);
    assert_memory_equal(dv2, dv, nk * sizeof(float));

    cpu_attention_block = 64;
    free(q); free(k); free(v); free(R); free(out); free(lse); free(dout);
    free(dq0); free(dk0); free(dv0); free(dq); free(dk); free(dv);
    free(dq2); free(dk2); free(dv2); free(out2); free(lse2); free(g);
    free(c.q); free(c.k); free(c.v); free(c.out); free(c.lse); free(c.R);
}

static void test_ops_attention_gqa(void **state) {
    (void)state;
    seed(16);
    const int len[3] = { 13, 7, 1 };
    attention_case(3, 13, 6, 2, 8, len, 64);
    attention_case(3, 13, 6, 2, 8, len, 4);    // several causal blocks, partial last one
}

static void test_ops_attention_mha(void **state) {
    (void)state;
    seed(17);
    const int len[3] = { 11, 13, 0 };          // an empty sequence too
    attention_case(3, 13, 3, 3, 16, len, 64);
    attention_case(3, 13, 3, 3, 16, len, 5);
}

// ---- logprob --------------------------------------------------------------

typedef struct {
    int n, C, V;
    const int *rows, *targets;
    const float *weight;
    double *h, *w, *lp, *lse;
} LogprobCtx;

// -sum_i weight[i] * logprob[i], filling lp and lse
static double logprob_loss(void *ctx) {
    LogprobCtx *c = ctx;
    double loss = 0.0, logits[512];
    for (int i = 0; i < c->n; i++) {
        const double *hr = c->h + (size_t)c->rows[i] * c->C;
        double mx = -INFINITY, sum = 0.0;
        for (int j = 0; j < c->V; j++) {
            logits[j] = 0.0;
            for (int d = 0; d < c->C; d++) logits[j] += hr[d] * c->w[(size_t)j * c->C + d];
            if (logits[j] > mx) mx = logits[j];
        }
        for (int j = 0; j < c->V; j++) sum += exp(logits[j] - mx);
        c->lse[i] = mx + log(sum);
        c->lp[i] = logits[c->targets[i]] - c->lse[i];
        loss -= c->weight[i] * c->lp[i];
    }
    return loss;
}

static void logprob_case(int N, int n, int C, int V, int chunk) {
    const Backend *be = backend_cpu();
    cpu_logprob_chunk_rows = chunk;
    int rows[32], targets[32];
    float weight[32];
    // distinct rows, spread over [0, N): every other row with a random start
    int start = irand(N - 2 * n + 1);
    for (int i = 0; i < n; i++) {
        rows[i] = start + 2 * (n - 1 - i);   // out of order on purpose
        targets[i] = irand(V);
        weight[i] = i % 4 == 1 ? 0.0f : (float)(0.5 + urand());
    }
    size_t nh = (size_t)N * C, nw = (size_t)V * C;
    float *h = frand(nh, 1.0), *w = frand(nw, 1.0);
    float *lp = malloc(n * sizeof(float)), *lse = malloc(n * sizeof(float));
    be->logprob_fwd(lp, lse, h, w, rows, targets, n, C, V);
    LogprobCtx c = { n, C, V, rows, targets, weight, to_double(h, nh), to_double(w, nw),
                     malloc(n * sizeof(double)), malloc(n * sizeof(double)) };
    logprob_loss(&c);
    EXPECT_ERR("logprob fwd", rel_err(lp, NULL, c.lp, n), 1e-5);
    EXPECT_ERR("logprob lse", rel_err(lse, NULL, c.lse, n), 1e-5);

    float *dh0 = frand(nh, 0.5), *dw0 = frand(nw, 0.5), *dh = fdup(dh0, nh), *dw = fdup(dw0, nw);
    be->logprob_bwd(dh, dw, h, w, rows, targets, lse, weight, n, C, V);
    double *g = malloc((nh > nw ? nh : nw) * sizeof(double));
    fd_grad(g, c.h, nh, logprob_loss, &c);
    EXPECT_ERR("logprob dh", rel_err(dh, dh0, g, nh), 1e-4);
    fd_grad(g, c.w, nw, logprob_loss, &c);
    EXPECT_ERR("logprob dw", rel_err(dw, dw0, g, nw), 1e-4);
    // rows not selected, and selected rows of weight 0, are left untouched
    for (int r = 0; r < N; r++) {
        int touched = 0;
        for (int i = 0; i < n; i++) touched |= rows[i] == r && weight[i] != 0.0f;
        if (!touched) assert_memory_equal(dh + (size_t)r * C, dh0 + (size_t)r * C, C * sizeof(float));
    }
    // frozen head: dw == NULL gives the same dh
    float *dh2 = fdup(dh0, nh);
    be->logprob_bwd(dh2, NULL, h, w, rows, targets, lse, weight, n, C, V);
    assert_memory_equal(dh2, dh, nh * sizeof(float));

    // forward and backward in one pass: the forward's log-probs bit for bit,
    // the backward's gradients (its chunks hold the rows of weight 0 too, so
    // the GEMM shapes, and possibly the last bits, differ)
    float *lp2 = malloc(n * sizeof(float)), *lse2 = malloc(n * sizeof(float));
    float *dh3 = fdup(dh0, nh), *dw3 = fdup(dw0, nw);
    be->logprob_fwd_bwd(lp2, lse2, dh3, dw3, h, w, rows, targets, weight, n, C, V);
    assert_memory_equal(lp2, lp, n * sizeof(float));
    assert_memory_equal(lse2, lse, n * sizeof(float));
    double *want = to_double(dh, nh);
    EXPECT_ERR("logprob_fwd_bwd dh vs bwd", rel_err(dh3, NULL, want, nh), 1e-6);
    free(want);
    want = to_double(dw, nw);
    EXPECT_ERR("logprob_fwd_bwd dw vs bwd", rel_err(dw3, NULL, want, nw), 1e-6);
    free(want);
    for (int i = 0; i < n; i++)   // rows of weight 0 leave dh untouched here too
        if (weight[i] == 0.0f)
            assert_memory_equal(dh3 + (size_t)rows[i] * C, dh0 + (size_t)rows[i] * C, C * sizeof(float));
    memcpy(dh2, dh0, nh * sizeof(float));
    be->logprob_fwd_bwd(lp2, lse2, dh2, NULL, h, w, rows, targets, weight, n, C, V);
    assert_memory_equal(dh2, dh3, nh * sizeof(float));

    cpu_logprob_chunk_rows = 0;
    free(h); free(w); free(lp); free(lse); free(dh0); free(dw0); free(dh); free(dw); free(dh2); free(g);
    free(lp2); free(lse2); free(dh3); free(dw3);
    free(c.h); free(c.w); free(c.lp); free(c.lse);
}

static void test_ops_logprob(void **state) {
    (void)state;
    seed(18);
    logprob_case(40, 11, 24, 37, 3);    // 4 chunks, the last one short
    logprob_case(40, 11, 24, 37, 0);    // automatic: one chunk
    logprob_case(30, 5, 16, 300, 2);
}

// ---- optimizer ------------------------------------------------------------

// adamw_multi over a flat buffer of several tensors (a gap between two that
// must stay untouched, decay on some, a tensor above the parallel threshold)
// against a naive double AdamW, and bit for bit against stepping each tensor
// alone (the per-tensor path the optimizer used to take).
static void test_ops_adamw(void **state) {
    (void)state;
    seed(19);
    const Backend *be = backend_cpu();
    const AdamwTensor tab[] = {{0, 20011, 1}, {20011, 7, 0}, {20030, 300, 1}, {20330, 1, 0}};
    const int nt = 4;
    const size_t n = 20331;   // [20018, 20030) belongs to no tensor
    float lr = 1e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, scale = 0.7f;
    float *p = frand(n, 1.0), *m = calloc(n, sizeof(float)), *v = calloc(n, sizeof(float));
    float *p1 = fdup(p, n), *m1 = calloc(n, sizeof(float)), *v1 = calloc(n, sizeof(float));
    double *rp = to_double(p, n), *rm = calloc(n, sizeof(double)), *rv = calloc(n, sizeof(double));
    float *p0 = fdup(p, n);
    double *want = malloc(n * sizeof(double));
    for (int step = 1; step <= 3; step++) {
        float *g = frand(n, 1.0);
        g[0] = 0.0f;   // zero gradient, zero moments: the update is decay only
        float bc1 = 1.0f - powf(b1, step), bc2 = 1.0f - powf(b2, step);
        be->adamw_multi(p, p, g, m, v, n, tab, nt, lr, b1, b2, eps, wd, bc1, bc2, scale);
        for (int t = 0; t < nt; t++)   // one tensor per call: the old per-tensor path
            be->adamw_multi(p1, p1, g, m1, v1, n, &tab[t], 1, lr, b1, b2, eps, wd, bc1, bc2, scale);
        for (int t = 0; t < nt; t++) {
            const double wdt = tab[t].decay ? wd : 0.0;
            for (size_t i = tab[t].offset; i < tab[t].offset + tab[t].numel; i++) {
                double gi = (double)g[i] * scale;
                rm[i] = b1 * rm[i] + (1.0 - b1) * gi;
                rv[i] = b2 * rv[i] + (1.0 - b2) * gi * gi;
                rp[i] = rp[i] * (1.0 - (double)lr * wdt)
                      - lr / bc1 * rm[i] / (sqrt(rv[i]) / sqrt((double)bc2) + eps);
            }
        }
        free(g);
    }
    EXPECT_ERR("adamw m", rel_err(m, NULL, rm, n), 1e-6);
    EXPECT_ERR("adamw v", rel_err(v, NULL, rv, n), 1e-6);
    for (size_t i = 0; i < n; i++) want[i] = rp[i] - p0[i];   // compare the updates
    EXPECT_ERR("adamw p update", rel_err(p, p0, want, n), 1e-4);
    for (size_t i = 20018; i < 20030; i++) assert_true(p[i] == p0[i] && m[i] == 0.0f && v[i] == 0.0f);
    assert_true(p[20011] != p0[20011]);   // undecayed tensors still step
    assert_memory_equal(p, p1, n * sizeof(float));
    assert_memory_equal(m, m1, n * sizeof(float));
    assert_memory_equal(v, v1, n * sizeof(float));
    free(p); free(m); free(v); free(p1); free(m1); free(v1); free(rp); free(rm); free(rv); free(p0); free(want);
}

// The act ops on the CPU backend, whose act type is fp32: act_from_f32 is a
// copy (nothing in place), scale_act is scale; adamw_multi with a separate
// compute copy pc gives p's bits and leaves pc alone outside the table.
static void test_ops_act(void **state) {
    (void)state;
    seed(23);
    const Backend *be = backend_cpu();
    const size_t n = 40001;   // above the parallel threshold
    float *x = frand(n, 2.0), *y = malloc(n * sizeof(float)), *x0 = fdup(x, n);
    be->act_from_f32(y, x, n);
    assert_memory_equal(y, x, n * sizeof(float));
    be->act_from_f32(x, x, n);   // in place: nothing to do
    assert_memory_equal(x, x0, n * sizeof(float));
    be->scale(x, 0.37f, n);
    be->scale_act(y, 0.37f, n);
    assert_memory_equal(y, x, n * sizeof(float));

    const AdamwTensor tab[] = {{0, 20011, 1}, {20030, 300, 0}};   // [20011, 20030) and the tail in no tensor
    const size_t np = 20400;
    float *p = frand(np, 1.0), *p1 = fdup(p, np), *g = frand(np, 1.0);
    float *m = calloc(np, sizeof(float)), *v = calloc(np, sizeof(float));
    float *m1 = calloc(np, sizeof(float)), *v1 = calloc(np, sizeof(float)), *pc = malloc(np * sizeof(float));
    for (size_t i = 0; i < np; i++) pc[i] = 7.0f;   // untouched outside the table
    be->adamw_multi(p, pc, g, m, v, np, tab, 2, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.1f, 0.05f, 0.7f);
    be->adamw_multi(p1, p1, g, m1, v1, np, tab, 2, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.1f, 0.05f, 0.7f);
    assert_memory_equal(p, p1, np * sizeof(float));   // pc changes nothing of the step
    assert_memory_equal(m, m1, np * sizeof(float));
    assert_memory_equal(v, v1, np * sizeof(float));
    for (int t = 0; t < 2; t++)
        assert_memory_equal(pc + tab[t].offset, p + tab[t].offset, tab[t].numel * sizeof(float));
    for (size_t i = 20011; i < 20030; i++) assert_true(pc[i] == 7.0f);
    for (size_t i = 20330; i < np; i++) assert_true(pc[i] == 7.0f);
    free(x); free(y); free(x0); free(p); free(p1); free(g); free(m); free(v); free(m1); free(v1); free(pc);
}

// residual_rmsnorm_fwd == add then rmsnorm_fwd, bit for bit, on fp32 and on
// bf16 storage (where the norm must read the rounded sum), res aliasing a too.
static void test_ops_residual_rmsnorm(void **state) {
    (void)state;
    seed(29);
    const int N = 37, C = 200;
    const size_t n = (size_t)N * C;
    float *a = frand(n, 3.0), *b = frand(n, 1.0), *w = frand((size_t)C, 1.0);
    const Backend *bes[] = {backend_cpu(), backend_cpu_bf16()};
    for (int k = 0; k < 2; k++) {
        const Backend *be = bes[k];
        const size_t ab = be->act_bytes;
        void *da = be->alloc(n * ab), *db = be->alloc(n * ab), *dw = be->alloc(C * ab);
        void *res1 = be->alloc(n * ab), *out1 = be->alloc(n * ab), *res2 = be->alloc(n * ab), *out2 = be->alloc(n * ab);
        float *r1 = malloc(N * sizeof(float)), *r2 = malloc(N * sizeof(float));
        be->act_from_f32(da, a, n); be->act_from_f32(db, b, n); be->act_from_f32(dw, w, (size_t)C);
        be->add(res1, da, db, n);
        be->rmsnorm_fwd(out1, r1, res1, dw, 1e-5f, N, C);
        be->residual_rmsnorm_fwd(res2, out2, r2, da, db, dw, 1e-5f, N, C);
        assert_memory_equal(res1, res2, n * ab);
        assert_memory_equal(out1, out2, n * ab);
        assert_memory_equal(r1, r2, N * sizeof(float));
        be->act_from_f32(da, a, n);
        be->residual_rmsnorm_fwd(db, out2, r2, da, db, dw, 1e-5f, N, C);   // in place into b
        assert_memory_equal(db, res1, n * ab);
        assert_memory_equal(out1, out2, n * ab);
        be->act_from_f32(db, b, n);
        be->residual_rmsnorm_fwd(da, out2, r2, da, db, dw, 1e-5f, N, C);   // in place into a
        assert_memory_equal(da, res1, n * ab);
        assert_memory_equal(out1, out2, n * ab);
        void *bufs[] = {da, db, dw, res1, out1, res2, out2};
        for (int i = 0; i < 7; i++) be->free(bufs[i]);
        free(r1); free(r2);
    }
    free(a); free(b); free(w);
}

static void test_ops_sumsq(void **state) {
    (void)state;
    seed(20);
    const Backend *be = backend_cpu();
    size_t n = 100003;
    float *x = frand(n, 3.0);
    long double want = 0.0L;
    for (size_t i = 0; i < n; i++) want += (long double)x[i] * x[i];
    double got = be->sumsq(x, n);
    EXPECT_ERR("sumsq", fabs(got - (double)want) / (double)want, 1e-11);
    assert_true(be->sumsq(x, n) == got);   // deterministic
    assert_true(be->sumsq(x, 0) == 0.0);
    free(x);
}

// ---- DPO --------------------------------------------------------------------

// seq_logprob: rows in shuffled order (the contract allows any), sums in
// increasing row order, against a naive loop; a sequence with no rows is 0
static void test_ops_seq_logprob(void **state) {
    (void)state;
    seed(21);
    const Backend *be = backend_cpu();
    enum { N = 3001, S = 9 };
    float *lp = frand(N, 5.0), *mask = frand(N, 1.0);
    int seq[N];
    for (int i = 0; i < N; i++) seq[i] = irand(S - 1);   // sequence S-1 gets no row
    double got[S], want[S] = {0};
    for (int i = 0; i < N; i++) want[seq[i]] += (double)mask[i] * (double)lp[i];
    be->seq_logprob(got, lp, mask, seq, N, S);
    assert_memory_equal(got, want, sizeof got);
    assert_true(got[S - 1] == 0.0);
    free(lp); free(mask);
}

// dpo_loss against a naive double evaluation of docs/dpo.md (log(1 + exp(-z))
// directly: fine for the moderate margins used here), with and without pair
// weights, and the token weights against -w[seq] * mask
static void test_ops_dpo_loss(void **state) {
    (void)state;
    seed(22);
    const Backend *be = backend_cpu();
    enum { NP = 5, R = 40 };
    double lp[2 * NP], ref[2 * NP], pw[NP];
    for (int i = 0; i < 2 * NP; i++) { lp[i] = -20 + 10 * urand(); ref[i] = lp[i] + 3 * urand(); }
    for (int i = 0; i < NP; i++) pw[i] = 1 + urand();
    int seq[R];
    float mask[R];
    for (int r = 0; r < R; r++) { seq[r] = irand(2 * NP); mask[r] = (float)(urand() + 1.0); }
    for (int weighted = 0; weighted < 2; weighted++) {
        const double beta = weighted ? 0.5 : 0.1;
        double out[DPO_OUT_COUNT], w[2 * NP];
        float tw[R];
        be->dpo_loss(out, w, tw, lp, ref, weighted ? pw : NULL, beta, NP, seq, mask, R);
        double loss = 0, rc = 0, rr = 0, acc = 0, lc = 0, lr = 0, err = 0;
        for (int i = 0; i < NP; i++) {
            const double c = beta * (lp[i] - ref[i]), r = beta * (lp[NP + i] - ref[NP + i]), z = c - r;
            const double wi = weighted ? pw[i] : 1.0;
            loss += wi * log(1 + exp(-z)) / NP;
            const double g = -beta * wi / (1 + exp(z)) / NP;
            err = fmax(err, fabs(w[i] - g) / fabs(g));
            assert_true(w[NP + i] == -w[i]);
            rc += c / NP; rr += r / NP; acc += (c > r) / (double)NP; lc += lp[i] / NP; lr += lp[NP + i] / NP;
        }
        const double want[DPO_OUT_COUNT] = {loss, rc, rr, rc - rr, acc, lc, lr};
        for (int k = 0; k < DPO_OUT_COUNT; k++) err = fmax(err, fabs(out[k] - want[k]) / fmax(fabs(want[k]), 1e-3));
        EXPECT_ERR(weighted ? "dpo_loss weighted" : "dpo_loss", err, 1e-13);
        for (int r = 0; r < R; r++) assert_true(tw[r] == (float)(-w[seq[r]] * (double)mask[r]));
    }
}

DEFINE_TEST_GROUP(test_ops,
    cmocka_unit_test(test_ops_registry_memory),
    cmocka_unit_test(test_ops_add),
    cmocka_unit_test(test_ops_matmul),
    cmocka_unit_test(test_ops_embedding),
    cmocka_unit_test(test_ops_rmsnorm),
    cmocka_unit_test(test_ops_residual_rmsnorm),
    cmocka_unit_test(test_ops_rope),
    cmocka_unit_test(test_ops_swiglu),
    cmocka_unit_test(test_ops_attention_gqa),
    cmocka_unit_test(test_ops_attention_mha),
    cmocka_unit_test(test_ops_logprob),
    cmocka_unit_test(test_ops_adamw),
    cmocka_unit_test(test_ops_act),
    cmocka_unit_test(test_ops_sumsq),
    cmocka_unit_test(test_ops_seq_logprob),
    cmocka_unit_test(test_ops_dpo_loss),
)
