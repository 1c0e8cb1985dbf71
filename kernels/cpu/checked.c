// The checked CPU backend, `--device cpu-checked`: the CPU backend's ops, but
// its memory behaves like a GPU's. Host code must treat every alloc/kv_alloc
// buffer as device memory (move data only through upload/download/copy/zero,
// pass only device pointers to the ops); on the plain CPU backend a mistake is
// silent, on a GPU it crashes. Here it fails at once with one line, exit 3:
//  - every buffer is its own page-aligned mmap region (plus a guard page),
//    kept PROT_NONE between ops, so a host read or write of device memory
//    faults; a SIGSEGV handler names the address and the region's allocation;
//  - each op first checks that every pointer it takes as a device pointer lies
//    inside a live region with room for the op's extent, then opens (PROT_READ|
//    WRITE) the regions of its arguments only, runs the CPU op and closes them
//    again (an op that strays outside its arguments faults too);
//  - upload/download need exactly one side in device memory, copy/zero both.
// Results are bit-identical to `--device cpu` (same ops, same arithmetic).
// Single-threaded host use only (the ops themselves may use OpenMP).
#include <dlfcn.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "checked.h"
#include "../errors.h"

// ---- the region table ----------------------------------------------------------

typedef struct {
    char *base;
    size_t bytes;            // what alloc was asked for
    size_t open_len;         // pages that hold the bytes (opened during an op)
    size_t map_len;          // open_len + one guard page that stays PROT_NONE
    const char *site_file;   // allocation site: module path + offset (addr2line -e FILE OFFSET)
    uintptr_t site_off;
    unsigned long serial;    // allocation number, 1-based, stable from run to run
} Region;

static Region *regs;
static size_t n_regs, cap_regs;
static unsigned long n_allocs;
static size_t page;
static const Backend *cpu;
static const char *volatile in_op;   // the op running now (for the fault message), or NULL

static Region *region_at(const void *p, int include_guard) {
    const char *c = p;
    for (size_t i = 0; i < n_regs; i++) {
        size_t span = include_guard ? regs[i].map_len : regs[i].bytes;
        if (c >= regs[i].base && (size_t)(c - regs[i].base) < span) return &regs[i];
    }
    return NULL;
}

static void site_str(const Region *r, char *buf, size_t cap) {
    snprintf(buf, cap, "%s+0x%lx, allocation #%lu", r->site_file, (unsigned long)r->site_off, r->serial);
}

__attribute__((format(printf, 1, 2), noreturn))
static void die(const char *fmt, ...) {
    fflush(stdout);
    fprintf(stderr, "sprec: error: device-check: ");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(DEVICE_CHECK_EXIT);
}

static void protect(Region *r, int prot) {
    if (r->open_len && mprotect(r->base, r->open_len, prot) != 0)
        die("mprotect of a %zu-byte region failed", r->bytes);
}

// ---- SIGSEGV: a touch of device memory outside an op's own arguments ----------

static struct sigaction old_segv;

static size_t put_str(char *b, size_t n, size_t cap, const char *s) {
    while (*s && n + 1 < cap) b[n++] = *s++;
    return n;
}
static size_t put_num(char *b, size_t n, size_t cap, uintptr_t v, int hex) {
    char d[32];
    int k = 0;
    do { d[k++] = "0123456789abcdef"[v % (hex ? 16 : 10)]; v /= hex ? 16 : 10; } while (v);
    if (hex) n = put_str(b, n, cap, "0x");
    while (k > 0 && n + 1 < cap) b[n++] = d[--k];
    return n;
}

// async-signal-safe: a linear scan of the table and write(2) only
static void on_segv(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    const Region *r = region_at(si->si_addr, 1);
    if (!r) {   // not ours: let the fault happen again under the previous handler
        sigaction(sig, &old_segv, NULL);
        return;
    }
    char b[1024];
    size_t n = put_str(b, 0, sizeof b, "sprec: error: device-check: ");
    const char *op = in_op;
    if (op) {
        n = put_str(b, n, sizeof b, "op ");
        n = put_str(b, n, sizeof b, op);
        n = put_str(b, n, sizeof b, " touched device memory outside its arguments at ");
    } else {
        n = put_str(b, n, sizeof b, "the host touched device memory at ");
    }
    n = put_num(b, n, sizeof b, (uintptr_t)si->si_addr, 1);
    n = put_str(b, n, sizeof b, " (region of ");
    n = put_num(b, n, sizeof b, r->bytes, 0);
    n = put_str(b, n, sizeof b, " bytes allocated at ");
    n = put_str(b, n, sizeof b, r->site_file);
    n = put_str(b, n, sizeof b, "+");
    n = put_num(b, n, sizeof b, r->site_off, 1);
    n = put_str(b, n, sizeof b, ", allocation #");
    n = put_num(b, n, sizeof b, r->serial, 0);
    if ((size_t)((const char *)si->si_addr - r->base) >= r->bytes) n = put_str(b, n, sizeof b, "; past its end");
    n = put_str(b, n, sizeof b, ")\n");
    ssize_t w = write(2, b, n);
    (void)w;
    _exit(DEVICE_CHECK_EXIT);
}

// ---- memory --------------------------------------------------------------------

static void *region_new(size_t bytes, void *caller) {
    size_t open_len = (bytes + page - 1) / page * page;
    size_t map_len = open_len + page;
    char *p = mmap(NULL, map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);   // zero-filled
    if (p == MAP_FAILED) fail("out of memory allocating %zu bytes (device-check region)", bytes);
    if (n_regs == cap_regs) {
        cap_regs = cap_regs ? cap_regs * 2 : 256;
        Region *grown = realloc(regs, cap_regs * sizeof *regs);   // never during a fault: host code only
        if (!grown) fail("out of memory growing the device-check table");
        regs = grown;
    }
    Dl_info info;
    const char *file = "?";
    uintptr_t off = (uintptr_t)caller;
    if (dladdr(caller, &info) && info.dli_fname) {
        file = info.dli_fname;
        off = (uintptr_t)caller - (uintptr_t)info.dli_fbase - 1;   // inside the call instruction
    }
    regs[n_regs++] = (Region){p, bytes, open_len, map_len, file, off, ++n_allocs};
    return p;
}

static void *chk_alloc(size_t bytes) { return region_new(bytes, __builtin_return_address(0)); }
// the CPU cache dtype is fp32
static void *chk_kv_alloc(size_t n) { return region_new(n * sizeof(float), __builtin_return_address(0)); }

static void chk_free(void *p) {
    if (!p) return;
    for (size_t i = 0; i < n_regs; i++)
        if (regs[i].base == p) {
            munmap(regs[i].base, regs[i].map_len);
            regs[i] = regs[--n_regs];
            return;
        }
    if (region_at(p, 0)) die("free argument p points inside device memory, not at the start of an allocation");
    die("free argument p is not device memory");
}

// ---- argument checks -----------------------------------------------------------

typedef struct { const void *p; size_t need; const char *name; int nullable; } Arg;

#define MAX_ARGS 12
static Region *opened[MAX_ARGS];
static int n_opened;

// checks op's device-pointer arguments, then opens their regions
static void enter(const char *op, const Arg *a, int n) {
    check(n <= MAX_ARGS && n_opened == 0, "device-check: %s with %d arguments", op, n);
    for (int i = 0; i < n; i++) {
        if (!a[i].p) {
            if (a[i].nullable) continue;
            die("%s argument %s is not device memory (NULL)", op, a[i].name);
        }
        const char *c = a[i].p;
        Region *r = region_at(c, 0);
        if (!r && a[i].need == 0)   // an empty extent may start at the very end
            for (size_t k = 0; k < n_regs; k++) if (regs[k].base + regs[k].bytes == c) r = &regs[k];
        if (!r) die("%s argument %s is not device memory", op, a[i].name);
        size_t left = r->bytes - (size_t)(c - r->base);
        if (a[i].need > left) {
            char site[512];
            site_str(r, site, sizeof site);
            die("%s argument %s needs %zu bytes of device memory but only %zu are left in its region "
                "(region of %zu bytes allocated at %s)", op, a[i].name, a[i].need, left, r->bytes, site);
        }
        int seen = 0;
        for (int k = 0; k < n_opened; k++) seen |= opened[k] == r;
        if (!seen) opened[n_opened++] = r;
    }
    for (int k = 0; k < n_opened; k++) protect(opened[k], PROT_READ | PROT_WRITE);
    in_op = op;
}

static void leave(void) {
    in_op = NULL;
    for (int k = 0; k < n_opened; k++) protect(opened[k], PROT_NONE);
    n_opened = 0;
}

// DEV: must be a device pointer with `bytes` from it; OPT: the same, or NULL
#define DEV(p, bytes) {(p), (bytes), #p, 0}
#define OPT(p, bytes) {(p), (bytes), #p, 1}
#define RUN(op, call, ...) do { const Arg args_[] = {__VA_ARGS__}; \
        enter(op, args_, (int)(sizeof args_ / sizeof args_[0])); call; leave(); } while (0)
#define FL(n) ((size_t)(n) * sizeof(float))
// act elements: this backend wraps the plain CPU ops, whose act type is fp32
#define AC(n) ((size_t)(n) * sizeof(float))
#define IN(n) ((size_t)(n) * sizeof(int))
#define NN(x) ((x) > 0 ? (size_t)(x) : 0)

// Extents that depend on index values (rows addressed through tokens, rows,
// pos, src, off): a host copy of the device int array idx[0..n), read under
// the checks (the array alone opened), so the op's real extents can be checked
// before it runs. Caller frees.
static int *ints_of(const char *op, const char *name, const int *idx, size_t n) {
    int *h = xmalloc(n * sizeof(int) + 1);
    if (n == 0) return h;
    const Arg a = {idx, IN(n), name, 0};
    enter(op, &a, 1);
    memcpy(h, idx, n * sizeof(int));
    leave();
    return h;
}
// rows read through idx[0..n): max(idx) + 1 (0 when n == 0; a negative index is an error)
static size_t rows_of(const char *op, const char *name, const int *idx, size_t n) {
    int *h = ints_of(op, name, idx, n), mx = -1;
    for (size_t i = 0; i < n; i++) {
        if (h[i] < 0) die("%s argument %s holds a negative index (%d at %zu)", op, name, h[i], i);
        if (h[i] > mx) mx = h[i];
    }
    free(h);
    return (size_t)(mx + 1);
}

static void chk_upload(void *dst, const void *src, size_t bytes) {
    if (src && region_at(src, 0)) die("upload argument src is device memory, not host memory (device -> device is copy)");
    RUN("upload", if (bytes) memcpy(dst, src, bytes), DEV(dst, bytes));
}
static void chk_download(void *dst, const void *src, size_t bytes) {
    if (dst && region_at(dst, 0)) die("download argument dst is device memory, not host memory (device -> device is copy)");
    RUN("download", if (bytes) memcpy(dst, src, bytes), DEV(src, bytes));
}
static void chk_copy(void *dst, const void *src, size_t bytes) {
    RUN("copy", cpu->copy(dst, src, bytes), DEV(dst, bytes), DEV(src, bytes));
}
static void chk_zero(void *p, size_t bytes) { RUN("zero", cpu->zero(p, bytes), DEV(p, bytes)); }
static void chk_act_from_f32(void *dst, const float *src, size_t n) {
    RUN("act_from_f32", cpu->act_from_f32(dst, src, n), DEV(dst, AC(n)), DEV(src, FL(n)));
}

// ---- ops: the CPU backend's, behind the checks ------------------------------------

static void chk_matmul_fwd(void *out, const void *inp, const void *w, const void *bias, int N, int C, int OC) {
    RUN("matmul_fwd", cpu->matmul_fwd(out, inp, w, bias, N, C, OC),
        DEV(out, AC(NN(N) * OC)), DEV(inp, AC(NN(N) * C)), DEV(w, AC((size_t)OC * C)), OPT(bias, AC(OC)));
}
static void chk_matmul_bwd(float *dinp, float *dw, float *dbias, const float *dout, const void *inp,
                           const void *w, int N, int C, int OC) {
    RUN("matmul_bwd", cpu->matmul_bwd(dinp, dw, dbias, dout, inp, w, N, C, OC),
        OPT(dinp, FL(NN(N) * C)), OPT(dw, FL((size_t)OC * C)), OPT(dbias, FL(OC)), DEV(dout, FL(NN(N) * OC)),
        // inp is read only for dw, w only for dinp (model_merge_lora passes a stand-in inp)
        {inp, dw ? AC(NN(N) * C) : 0, "inp", !dw}, {w, dinp ? AC((size_t)OC * C) : 0, "w", !dinp});
}
static void chk_embedding_fwd(void *out, const int *tokens, const void *wte, int N, int C) {
    const size_t rows = rows_of("embedding_fwd", "tokens", tokens, NN(N));
    RUN("embedding_fwd", cpu->embedding_fwd(out, tokens, wte, N, C),
        DEV(out, AC(NN(N) * C)), DEV(tokens, IN(NN(N))), DEV(wte, AC(rows * C)));
}
static void chk_embedding_bwd(float *dwte, const float *dout, const int *tokens, int N, int C, int V) {
    RUN("embedding_bwd", cpu->embedding_bwd(dwte, dout, tokens, N, C, V),
        OPT(dwte, FL((size_t)V * C)), DEV(dout, FL(NN(N) * C)), DEV(tokens, IN(NN(N))));
}
static void chk_rmsnorm_fwd(void *out, float *rstd, const void *inp, const void *weight, float eps, int N, int C) {
    RUN("rmsnorm_fwd", cpu->rmsnorm_fwd(out, rstd, inp, weight, eps, N, C),
        DEV(out, AC(NN(N) * C)), DEV(rstd, FL(NN(N))), DEV(inp, AC(NN(N) * C)), DEV(weight, AC(C)));
}
static void chk_rmsnorm_bwd(float *dinp, float *dweight, const float *dout, const void *inp, const void *weight,
                            const float *rstd, int N, int C) {
    RUN("rmsnorm_bwd", cpu->rmsnorm_bwd(dinp, dweight, dout, inp, weight, rstd, N, C),
        OPT(dinp, FL(NN(N) * C)), OPT(dweight, FL(C)), DEV(dout, FL(NN(N) * C)), DEV(inp, AC(NN(N) * C)),
        DEV(weight, AC(C)), DEV(rstd, FL(NN(N))));
}
static void chk_residual_rmsnorm_fwd(void *res, void *out, float *rstd, const void *a, const void *b,
                                     const void *weight, float eps, int N, int C) {
    const size_t n = NN(N) * C;
    RUN("residual_rmsnorm_fwd", cpu->residual_rmsnorm_fwd(res, out, rstd, a, b, weight, eps, N, C),
        DEV(res, AC(n)), DEV(out, AC(n)), DEV(rstd, FL(NN(N))), DEV(a, AC(n)), DEV(b, AC(n)), DEV(weight, AC(C)));
}
static void chk_rope_fwd(void *x, const float *cos, const float *sin, int B, int T, int H, int D) {
    RUN("rope_fwd", cpu->rope_fwd(x, cos, sin, B, T, H, D),
        DEV(x, AC(NN(B) * T * H * D)), DEV(cos, FL((size_t)T * (D / 2))), DEV(sin, FL((size_t)T * (D / 2))));
}
static void chk_rope_bwd(float *dx, const float *cos, const float *sin, int B, int T, int H, int D) {
    RUN("rope_bwd", cpu->rope_bwd(dx, cos, sin, B, T, H, D),
        DEV(dx, FL(NN(B) * T * H * D)), DEV(cos, FL((size_t)T * (D / 2))), DEV(sin, FL((size_t)T * (D / 2))));
}
static void chk_attention_fwd(void *out, float *lse, const void *q, const void *k, const void *v,
                              const int *lengths, int B, int T, int NH, int NKV, int D) {
    const size_t nq = NN(B) * T * NH * D, nk = NN(B) * T * NKV * D;
    RUN("attention_fwd", cpu->attention_fwd(out, lse, q, k, v, lengths, B, T, NH, NKV, D),
        DEV(out, AC(nq)), DEV(lse, FL(NN(B) * NH * T)), DEV(q, AC(nq)), DEV(k, AC(nk)), DEV(v, AC(nk)),
        DEV(lengths, IN(NN(B))));
}
static void chk_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const void *out, const float *lse,
                              const void *q, const void *k, const void *v, const int *lengths,
                              int B, int T, int NH, int NKV, int D) {
    const size_t nq = NN(B) * T * NH * D, nk = NN(B) * T * NKV * D;
    RUN("attention_bwd", cpu->attention_bwd(dq, dk, dv, dout, out, lse, q, k, v, lengths, B, T, NH, NKV, D),
        OPT(dq, FL(nq)), OPT(dk, FL(nk)), OPT(dv, FL(nk)), DEV(dout, FL(nq)), DEV(out, AC(nq)),
        DEV(lse, FL(NN(B) * NH * T)), DEV(q, AC(nq)), DEV(k, AC(nk)), DEV(v, AC(nk)), DEV(lengths, IN(NN(B))));
}
static void chk_swiglu_fwd(void *out, const void *gate, const void *up, size_t n) {
    RUN("swiglu_fwd", cpu->swiglu_fwd(out, gate, up, n), DEV(out, AC(n)), DEV(gate, AC(n)), DEV(up, AC(n)));
}
static void chk_swiglu_bwd(float *dgate, float *dup, const float *dout, const void *gate, const void *up, size_t n) {
    RUN("swiglu_bwd", cpu->swiglu_bwd(dgate, dup, dout, gate, up, n),
        OPT(dgate, FL(n)), OPT(dup, FL(n)), DEV(dout, FL(n)), DEV(gate, AC(n)), DEV(up, AC(n)));
}
static void chk_layernorm_fwd(void *out, const void *inp, const void *weight, const void *bias, float eps,
                              int N, int C) {
    RUN("layernorm_fwd", cpu->layernorm_fwd(out, inp, weight, bias, eps, N, C),
        DEV(out, AC(NN(N) * C)), DEV(inp, AC(NN(N) * C)), DEV(weight, AC(C)), DEV(bias, AC(C)));
}
static void chk_attention_bidir_fwd(void *out, const void *q, const void *k, const void *v, const int *lengths,
                                    int B, int T, int NH, int D) {
    const size_t n = NN(B) * T * NH * D;
    RUN("attention_bidir_fwd", cpu->attention_bidir_fwd(out, q, k, v, lengths, B, T, NH, D),
        DEV(out, AC(n)), DEV(q, AC(n)), DEV(k, AC(n)), DEV(v, AC(n)), DEV(lengths, IN(NN(B))));
}
static void chk_gelu_fwd(void *out, const void *inp, size_t n) {
    RUN("gelu_fwd", cpu->gelu_fwd(out, inp, n), DEV(out, AC(n)), DEV(inp, AC(n)));
}
static void chk_add(void *out, const void *a, const void *b, size_t n) {
    RUN("add", cpu->add(out, a, b, n), DEV(out, AC(n)), DEV(a, AC(n)), DEV(b, AC(n)));
}
static void chk_scale(float *x, float s, size_t n) { RUN("scale", cpu->scale(x, s, n), DEV(x, FL(n))); }
static void chk_scale_act(void *x, float s, size_t n) { RUN("scale_act", cpu->scale_act(x, s, n), DEV(x, AC(n))); }
static void chk_dropout_fwd(void *out, const void *inp, size_t n, float p, uint64_t key) {
    RUN("dropout_fwd", cpu->dropout_fwd(out, inp, n, p, key), DEV(out, AC(n)), DEV(inp, AC(n)));
}
static void chk_dropout_bwd(float *dinp, const float *dout, size_t n, float p, uint64_t key) {
    RUN("dropout_bwd", cpu->dropout_bwd(dinp, dout, n, p, key), OPT(dinp, FL(n)), DEV(dout, FL(n)));
}
static void chk_logprob_fwd(float *logprob, float *lse, const void *h, const void *w, const int *rows,
                            const int *targets, int n, int C, int V) {
    const size_t hr = rows_of("logprob_fwd", "rows", rows, NN(n));
    RUN("logprob_fwd", cpu->logprob_fwd(logprob, lse, h, w, rows, targets, n, C, V),
        DEV(logprob, FL(NN(n))), DEV(lse, FL(NN(n))), DEV(h, AC(hr * C)), DEV(w, AC((size_t)V * C)),
        DEV(rows, IN(NN(n))), DEV(targets, IN(NN(n))));
}
static void chk_logprob_bwd(float *dh, float *dw, const void *h, const void *w, const int *rows, const int *targets,
                            const float *lse, const float *weight, int n, int C, int V) {
    const size_t hr = rows_of("logprob_bwd", "rows", rows, NN(n));
    RUN("logprob_bwd", cpu->logprob_bwd(dh, dw, h, w, rows, targets, lse, weight, n, C, V),
        OPT(dh, FL(hr * C)), OPT(dw, FL((size_t)V * C)), DEV(h, AC(hr * C)), DEV(w, AC((size_t)V * C)),
        DEV(rows, IN(NN(n))), DEV(targets, IN(NN(n))), DEV(lse, FL(NN(n))), DEV(weight, FL(NN(n))));
}
static void chk_logprob_fwd_bwd(float *logprob, float *lse, float *dh, float *dw, const void *h, const void *w,
                                const int *rows, const int *targets, const float *weight, int n, int C, int V) {
    const size_t hr = rows_of("logprob_fwd_bwd", "rows", rows, NN(n));
    RUN("logprob_fwd_bwd", cpu->logprob_fwd_bwd(logprob, lse, dh, dw, h, w, rows, targets, weight, n, C, V),
        DEV(logprob, FL(NN(n))), DEV(lse, FL(NN(n))), OPT(dh, FL(hr * C)), OPT(dw, FL((size_t)V * C)),
        DEV(h, AC(hr * C)), DEV(w, AC((size_t)V * C)), DEV(rows, IN(NN(n))), DEV(targets, IN(NN(n))),
        DEV(weight, FL(NN(n))));
}
static void chk_adamw_multi(float *p, void *pc, const float *g, float *m, float *v, size_t n,
                            const AdamwTensor *table, int n_tensors, float lr, float beta1, float beta2, float eps,
                            float wd, float bc1, float bc2, float grad_scale) {
    RUN("adamw_multi",
        cpu->adamw_multi(p, pc, g, m, v, n, table, n_tensors, lr, beta1, beta2, eps, wd, bc1, bc2, grad_scale),
        DEV(p, FL(n)), DEV(pc, AC(n)), DEV(g, FL(n)), DEV(m, FL(n)), DEV(v, FL(n)),
        DEV(table, (size_t)NN(n_tensors) * sizeof(AdamwTensor)));
}
static double chk_sumsq(const float *x, size_t n) {
    double s = 0;
    RUN("sumsq", s = cpu->sumsq(x, n), DEV(x, FL(n)));
    return s;
}
static void chk_seq_logprob(double *seq_lp, const float *lp, const float *mask, const int *seq, int n, int S) {
    RUN("seq_logprob", cpu->seq_logprob(seq_lp, lp, mask, seq, n, S),
        DEV(seq_lp, NN(S) * sizeof(double)), DEV(lp, FL(NN(n))), DEV(mask, FL(NN(n))), DEV(seq, IN(NN(n))));
}
static void chk_dpo_loss(double *out, double *w, float *tw, const double *lp, const double *ref,
                         const double *pair_weight, double beta, int n, const int *seq, const float *mask, int n_rows) {
    const size_t d2n = 2 * NN(n) * sizeof(double);
    const Arg rows[] = {DEV(tw, FL(NN(n_rows))), DEV(seq, IN(NN(n_rows))), DEV(mask, FL(NN(n_rows)))};
    RUN("dpo_loss", cpu->dpo_loss(out, w, tw, lp, ref, pair_weight, beta, n, seq, mask, n_rows),
        DEV(out, DPO_OUT_COUNT * sizeof(double)), DEV(w, d2n), DEV(lp, d2n), DEV(ref, d2n),
        OPT(pair_weight, NN(n) * sizeof(double)),   // tw, seq, mask are unused (may be NULL) without rows
        {rows[0].p, rows[0].need, rows[0].name, n_rows <= 0}, {rows[1].p, rows[1].need, rows[1].name, n_rows <= 0},
        {rows[2].p, rows[2].need, rows[2].name, n_rows <= 0});
}
static void chk_rope_at_fwd(void *x, const float *cos, const float *sin, const int *pos, int N, int H, int D) {
    const size_t tab = rows_of("rope_at_fwd", "pos", pos, NN(N)) * (size_t)(D / 2);   // [max pos + 1, D/2]
    RUN("rope_at_fwd", cpu->rope_at_fwd(x, cos, sin, pos, N, H, D),
        DEV(x, AC(NN(N) * H * D)), DEV(cos, FL(tab)), DEV(sin, FL(tab)), DEV(pos, IN(NN(N))));
}
static void chk_kv_write(void *cache, const void *x, const int *start, const int *n_new, int R, int S, int P, int W) {
    RUN("kv_write", cpu->kv_write(cache, x, start, n_new, R, S, P, W),
        DEV(cache, FL(NN(R) * P * W)), DEV(x, AC(NN(R) * S * W)), DEV(start, IN(NN(R))), DEV(n_new, IN(NN(R))));
}
static void chk_attention_cached_fwd(void *out, const void *q, const void *kc, const void *vc, const int *start,
                                     const int *n_new, int R, int S, int P, int NH, int NKV, int D) {
    const size_t nq = NN(R) * S * NH * D, nc = NN(R) * P * NKV * D;
    RUN("attention_cached_fwd", cpu->attention_cached_fwd(out, q, kc, vc, start, n_new, R, S, P, NH, NKV, D),
        DEV(out, AC(nq)), DEV(q, AC(nq)), DEV(kc, FL(nc)), DEV(vc, FL(nc)), DEV(start, IN(NN(R))),
        DEV(n_new, IN(NN(R))));
}
static void chk_kv_gather(void *cache, const int *src, int R, int len, int P, int W) {
    if (len > P) die("kv_gather: len %d exceeds the cache's %d positions", len, P);
    size_t rows = rows_of("kv_gather", "src", src, NN(R));
    if (rows < NN(R)) rows = NN(R);
    RUN("kv_gather", cpu->kv_gather(cache, src, R, len, P, W), DEV(cache, FL(rows * P * W)), DEV(src, IN(NN(R))));
}
static void chk_gather_rows(void *out, const void *inp, const int *rows, int N, int C) {
    const size_t ir = rows_of("gather_rows", "rows", rows, NN(N));
    RUN("gather_rows", cpu->gather_rows(out, inp, rows, N, C),
        DEV(out, AC(NN(N) * C)), DEV(inp, AC(ir * C)), DEV(rows, IN(NN(N))));
}

static void chk_logits_lse_topk(double *lse, int *top_id, float *top_val, const void *logits, int N, int V, int k) {
    const size_t nk = NN(N) * NN(k);
    const Arg top[] = {DEV(top_id, IN(nk)), DEV(top_val, FL(nk))};
    RUN("logits_lse_topk", cpu->logits_lse_topk(lse, top_id, top_val, logits, N, V, k),
        DEV(lse, NN(N) * sizeof(double)), DEV(logits, AC(NN(N) * V)),   // top_*: unused (may be NULL) when k = 0
        {top[0].p, top[0].need, top[0].name, k <= 0}, {top[1].p, top[1].need, top[1].name, k <= 0});
}
// out holds off[N] entries; cols must hold every row's slice, src[n] .. src[n] + off[n+1] - off[n]
static void chk_gather_cols(float *out, const void *logits, const int *off, const int *src, const int *cols,
                            int N, int V) {
    int *ho = ints_of("gather_cols", "off", off, NN(N) + 1), *hs = ints_of("gather_cols", "src", src, NN(N));
    size_t ncols = 0;
    for (int n = 0; n < N; n++) {
        if (ho[n + 1] < ho[n] || hs[n] < 0) die("gather_cols: row %d has off %d..%d, src %d", n, ho[n], ho[n + 1], hs[n]);
        const size_t end = (size_t)hs[n] + (size_t)(ho[n + 1] - ho[n]);
        if (end > ncols) ncols = end;
    }
    const size_t nout = NN(N) ? (size_t)ho[N] : 0;
    free(ho); free(hs);
    RUN("gather_cols", cpu->gather_cols(out, logits, off, src, cols, N, V),
        DEV(out, FL(nout)), DEV(logits, AC(NN(N) * V)), DEV(off, IN(NN(N) + 1)), DEV(src, IN(NN(N))),
        DEV(cols, IN(ncols)));
}

// a new Backend op needs its wrapper here: this count fails the build until then
// (mem_stats, optional and NULL on the CPU, has none: it touches no device buffer)
_Static_assert(sizeof(Backend) == sizeof(const char *) + sizeof(size_t) + 44 * sizeof(void (*)(void)),
               "kernels/backend.h changed: wrap the new op in kernels/cpu/checked.c and update this count");

const Backend *backend_cpu_checked(void) {
    static const Backend checked = {
        .name = "cpu-checked",
        .act_bytes = sizeof(float),   // the CPU ops' act type (AC above)
        .alloc = chk_alloc, .free = chk_free, .upload = chk_upload, .download = chk_download,
        .copy = chk_copy, .zero = chk_zero, .act_from_f32 = chk_act_from_f32,
        .matmul_fwd = chk_matmul_fwd, .matmul_bwd = chk_matmul_bwd,
        .embedding_fwd = chk_embedding_fwd, .embedding_bwd = chk_embedding_bwd,
        .rmsnorm_fwd = chk_rmsnorm_fwd, .rmsnorm_bwd = chk_rmsnorm_bwd,
        .residual_rmsnorm_fwd = chk_residual_rmsnorm_fwd, .layernorm_fwd = chk_layernorm_fwd,
        .rope_fwd = chk_rope_fwd, .rope_bwd = chk_rope_bwd,
        .attention_fwd = chk_attention_fwd, .attention_bwd = chk_attention_bwd,
        .attention_bidir_fwd = chk_attention_bidir_fwd,
        .swiglu_fwd = chk_swiglu_fwd, .swiglu_bwd = chk_swiglu_bwd, .gelu_fwd = chk_gelu_fwd,
        .add = chk_add, .scale = chk_scale, .scale_act = chk_scale_act, .dropout_fwd = chk_dropout_fwd, .dropout_bwd = chk_dropout_bwd,
        .logprob_fwd = chk_logprob_fwd, .logprob_bwd = chk_logprob_bwd, .logprob_fwd_bwd = chk_logprob_fwd_bwd,
        .adamw_multi = chk_adamw_multi, .sumsq = chk_sumsq, .seq_logprob = chk_seq_logprob, .dpo_loss = chk_dpo_loss,
        .kv_alloc = chk_kv_alloc, .rope_at_fwd = chk_rope_at_fwd, .kv_write = chk_kv_write,
        .attention_cached_fwd = chk_attention_cached_fwd, .kv_gather = chk_kv_gather,
        .gather_rows = chk_gather_rows, .logits_lse_topk = chk_logits_lse_topk, .gather_cols = chk_gather_cols,
        .mem_stats = NULL,   // as the CPU backend's: host memory, measured by the process RSS
    };
    if (!cpu) {
        cpu = backend_cpu();
        page = (size_t)sysconf(_SC_PAGESIZE);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_segv;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGSEGV, &sa, &old_segv) != 0) fail("cannot install the device-check SIGSEGV handler");
    }
    return &checked;
}
