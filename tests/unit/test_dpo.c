// DPO objective (host/train/dpo.c): against a PyTorch float64 reference on a tiny
// Llama (tests/ref/dpo, made by tests/ref/make_dpo_fixtures.py), the
// reference == policy identity (loss log 2), the gradient weights against
// finite differences, the stability of the log-sigmoid at extreme margins, and
// a few AdamW steps that must separate the pairs.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "tests.h"
#include "train/dpo.h"
#include "io/dataset.h"
#include "io/checkpoint.h"
#include "base/h5io.h"
#include "model/optimizer.h"
#include "base/rng.h"

#define DPO_DIR "tests/ref/dpo"
#define TOLERANCE 1e-4

// whole float64 dataset of n elements (any stored float type, converted by HDF5)
static double *read_f64(hid_t f, const char *name, size_t n) {
    long dims[8];
    int rank = h5_shape(f, DPO_DIR, name, dims);
    size_t total = 1;
    for (int i = 0; i < rank; i++) total *= (size_t)dims[i];
    assert_int_equal(total, n);
    double *out = malloc(n * sizeof(double));
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    assert_true(d >= 0);
    assert_true(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0);
    H5Dclose(d);
    return out;
}

static void read_side(hid_t f, const char *side, Batch *b) {
    char name[64];
    long dims[2] = {-1, -1}, ld[1] = {-1};
    snprintf(name, sizeof name, "%s/tokens", side);
    b->tokens = h5_read_i32(f, DPO_DIR, name, 2, dims);
    b->B = (int)dims[0]; b->T = (int)dims[1];
    snprintf(name, sizeof name, "%s/mask", side);
    b->mask = h5_read_f32(f, DPO_DIR, name, 2, dims);
    snprintf(name, sizeof name, "%s/lengths", side);
    ld[0] = b->B;
    b->lengths = h5_read_i32(f, DPO_DIR, name, 1, ld);
}

typedef struct {
    Model m;
    Batch chosen, rejected;
    int n;
    double beta, *ref_c, *ref_r, *gen_lp;
    int n_groups, *groups;
} Fixture;

static void fixture_load(Fixture *fx) {
    ModelConfig mc;
    checkpoint_read_config(DPO_DIR "/model.h5", &mc);
    model_create(&fx->m, &mc, backend_cpu());
    checkpoint_load(DPO_DIR "/model.h5", &fx->m, NULL, NULL);
    hid_t f = h5_open_read(DPO_DIR "/pairs.h5");
    read_side(f, "chosen", &fx->chosen);
    read_side(f, "rejected", &fx->rejected);
    assert_int_equal(fx->chosen.B, fx->rejected.B);
    fx->n = fx->chosen.B;
    fx->beta = h5_attr_read_f64(f, DPO_DIR, "beta");
    fx->ref_c = read_f64(f, "ref_chosen", (size_t)fx->n);
    fx->ref_r = read_f64(f, "ref_rejected", (size_t)fx->n);
    fx->gen_lp = read_f64(f, "gen_logprob", (size_t)fx->n);
    long gd[1] = {-1};
    fx->groups = h5_read_i32(f, DPO_DIR, "pair_groups", 1, gd);
    fx->n_groups = (int)gd[0];
    h5_close(f);
}

static void fixture_free(Fixture *fx) {
    batch_free(&fx->chosen); batch_free(&fx->rejected);
    free(fx->ref_c); free(fx->ref_r); free(fx->gen_lp); free(fx->groups);
    model_free(&fx->m);
}

static double rel(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-12); }

// worst relative error (norm) over every parameter gradient against group/NAME
static double compare_grads(Model *m, hid_t exp, const char *group) {
    double worst = 0;
    float *ours = malloc(m->numel * sizeof(float));
    m->be->download(ours, m->grads, m->numel * sizeof(float));
    for (int i = 0; i < m->n_params; i++) {
        const ParamInfo *p = &m->table[i];
        char name[192];
        snprintf(name, sizeof name, "%s/%s", group, p->name);
        long dims[2] = {p->shape[0], p->shape[1]};
        float *ref = h5_read_f32(exp, DPO_DIR, name, p->rank, dims);
        double num = 0, den = 0;
        for (size_t k = 0; k < p->numel; k++) {
            const double d = (double)ours[p->offset + k] - ref[k];
            num += d * d; den += (double)ref[k] * ref[k];
        }
        const double e = sqrt(num / fmax(den, 1e-300));
        if (e > TOLERANCE) print_message("  %s: relative error %.3e\n", name, e);
        if (e > worst) worst = e;
        free(ref);
    }
    free(ours);
    return worst;
}

static double read_scalar(hid_t f, const char *name) {
    double *v = read_f64(f, name, 1), x = v[0];
    free(v);
    return x;
}

static void test_dpo_matches_pytorch(void **state) {
    (void)state;
    Fixture fx;
    fixture_load(&fx);
    const int n = fx.n;
    hid_t exp = h5_open_read(DPO_DIR "/expected.h5");
    double *want_c = read_f64(exp, "lp_chosen", (size_t)n), *want_r = read_f64(exp, "lp_rejected", (size_t)n);
    double *want_pw = read_f64(exp, "pair_weight", (size_t)n);

    // policy sequence log-probs
    double lp_c[16], lp_r[16], worst_lp = 0;
    assert_true(n <= 16);
    dpo_pair_logprobs(&fx.m, &fx.chosen, &fx.rejected, lp_c, lp_r);
    for (int i = 0; i < n; i++) {
        worst_lp = fmax(worst_lp, fmax(rel(lp_c[i], want_c[i]), rel(lp_r[i], want_r[i])));
    }

    // plain DPO: loss, TRL statistics, every gradient
    DpoStats st;
    fx.m.be->zero(fx.m.grads, fx.m.numel * sizeof(float));
    const double loss = dpo_step(&fx.m, &fx.chosen, &fx.rejected, fx.ref_c, fx.ref_r, NULL, fx.beta, &st);
    const double e_loss = rel(loss, read_scalar(exp, "loss"));
    assert_true(st.loss == loss);
    assert_int_equal(st.n_pairs, n);
    const double e_rc = rel(st.rewards_chosen, read_scalar(exp, "rewards_chosen"));
    const double e_rr = rel(st.rewards_rejected, read_scalar(exp, "rewards_rejected"));
    const double e_rm = rel(st.rewards_margins, read_scalar(exp, "rewards_margins"));
    const double acc = read_scalar(exp, "rewards_accuracies");
    const double e_grad = compare_grads(&fx.m, exp, "grad");

    // SPDPO weights and the weighted loss
    double pw[16], worst_pw = 0;
    assert_int_equal(dpo_spdpo_weights(fx.n_groups, fx.groups, fx.gen_lp, pw), n);
    for (int i = 0; i < n; i++) worst_pw = fmax(worst_pw, fabs(pw[i] - want_pw[i]));
    fx.m.be->zero(fx.m.grads, fx.m.numel * sizeof(float));
    const double loss_w = dpo_step(&fx.m, &fx.chosen, &fx.rejected, fx.ref_c, fx.ref_r, pw, fx.beta, NULL);
    const double e_loss_w = rel(loss_w, read_scalar(exp, "loss_spdpo"));
    const double e_grad_w = compare_grads(&fx.m, exp, "grad_spdpo");

    print_message("  dpo vs pytorch: seq lp %.1e, loss %.1e, rewards %.1e/%.1e/%.1e, accuracies %.2f (want %.2f), "
                  "grads %.1e | spdpo weights %.1e, loss %.1e, grads %.1e\n", worst_lp, e_loss, e_rc, e_rr, e_rm,
                  st.rewards_accuracies, acc, e_grad, worst_pw, e_loss_w, e_grad_w);
    assert_true(worst_lp < TOLERANCE);
    assert_true(e_loss < TOLERANCE);
    assert_true(e_rc < TOLERANCE && e_rr < TOLERANCE && e_rm < TOLERANCE);
    assert_true(st.rewards_accuracies == acc);
    assert_true(e_grad < TOLERANCE);
    assert_true(worst_pw < 1e-12);
    assert_true(e_loss_w < TOLERANCE);
    assert_true(e_grad_w < TOLERANCE);
    free(want_c); free(want_r); free(want_pw);
    h5_close(exp);
    fixture_free(&fx);
}

// reference == policy: margin 0 for every pair, so the loss is log 2 and every reward 0
static void test_dpo_reference_is_policy(void **state) {
    (void)state;
    Fixture fx;
    fixture_load(&fx);
    const int n = fx.n;
    double ref_c[16], ref_r[16];
    dpo_pair_logprobs(&fx.m, &fx.chosen, &fx.rejected, ref_c, ref_r);
    DpoStats st;
    fx.m.be->zero(fx.m.grads, fx.m.numel * sizeof(float));
    const double loss = dpo_step(&fx.m, &fx.chosen, &fx.rejected, ref_c, ref_r, NULL, fx.beta, &st);
    print_message("  reference == policy: loss - log 2 = %.1e, rewards %.1e %.1e %.1e, accuracies %.2f\n",
                  loss - log(2.0), st.rewards_chosen, st.rewards_rejected, st.rewards_margins, st.rewards_accuracies);
    assert_true(fabs(loss - log(2.0)) < 1e-6);
    assert_true(fabs(st.rewards_chosen) < 1e-9 && fabs(st.rewards_rejected) < 1e-9 && fabs(st.rewards_margins) < 1e-9);
    assert_true(st.rewards_accuracies == 0.0);
    // the same with the reference pass run per side (other batch shapes): equal up to float32 rounding
    dpo_sequence_logprobs(&fx.m, &fx.chosen, ref_c);
    dpo_sequence_logprobs(&fx.m, &fx.rejected, ref_r);
    const double loss2 = dpo_step(&fx.m, &fx.chosen, &fx.rejected, ref_c, ref_r, NULL, fx.beta, &st);
    print_message("  reference pass per side: loss - log 2 = %.1e\n", loss2 - log(2.0));
    assert_true(fabs(loss2 - log(2.0)) < 1e-6);
    assert_true(n > 0);
    fixture_free(&fx);
}

// w_c, w_r are dL/d lp_c, dL/d lp_r: central differences of the loss (double)
static void test_dpo_weights_finite_differences(void **state) {
    (void)state;
    enum { N = 7 };
    Rng r;
    rng_seed(&r, 77);
    double lp_c[N], lp_r[N], ref_c[N], ref_r[N], pw[N], w_c[N], w_r[N];
    const double betas[] = {0.1, 1.0};
    double worst = 0;
    for (int bi = 0; bi < 2; bi++) {
        for (int use_pw = 0; use_pw < 2; use_pw++) {
            for (int i = 0; i < N; i++) {
                lp_c[i] = -30 * rng_uniform(&r); lp_r[i] = -30 * rng_uniform(&r);
                ref_c[i] = -30 * rng_uniform(&r); ref_r[i] = -30 * rng_uniform(&r);
                pw[i] = 2 * rng_uniform(&r);
            }
            const double *p = use_pw ? pw : NULL, beta = betas[bi];
            dpo_loss_and_weights(N, lp_c, lp_r, ref_c, ref_r, p, beta, NULL, w_c, w_r);
            for (int i = 0; i < N; i++) {
                for (int side = 0; side < 2; side++) {
                    double *x = side ? lp_r : lp_c;
                    const double h = 1e-4, x0 = x[i];
                    x[i] = x0 + h;
                    const double up = dpo_loss_and_weights(N, lp_c, lp_r, ref_c, ref_r, p, beta, NULL, NULL, NULL);
                    x[i] = x0 - h;
                    const double dn = dpo_loss_and_weights(N, lp_c, lp_r, ref_c, ref_r, p, beta, NULL, NULL, NULL);
                    x[i] = x0;
                    const double fd = (up - dn) / (2 * h), w = side ? w_r[i] : w_c[i];
                    // relative, with an absolute floor for weights near 0 (pairs far past the margin)
                    worst = fmax(worst, fabs(fd - w) / (fabs(w) + 1e-4));
                }
                assert_true(w_c[i] <= 0 && w_r[i] == -w_c[i]);
            }
        }
    }
    print_message("  gradient weights vs central differences: worst |fd - w| / (|w| + 1e-4) = %.1e\n", worst);
    assert_true(worst < 1e-6);
}

// beta * margin = +-1000: finite loss and weights (a naive log(sigmoid) gives -inf)
static void test_dpo_extreme_margins(void **state) {
    (void)state;
    const double lp_c[2] = {0, -10000}, lp_r[2] = {-10000, 0}, ref[2] = {0, 0};
    double w_c[2], w_r[2];
    DpoStats st;
    const double loss = dpo_loss_and_weights(2, lp_c, lp_r, ref, ref, NULL, 0.1, &st, w_c, w_r);
    print_message("  margins +-1000: loss %.6g, w_c %.3g %.3g\n", loss, w_c[0], w_c[1]);
    assert_true(isfinite(loss) && isfinite(w_c[0]) && isfinite(w_c[1]) && isfinite(w_r[0]) && isfinite(w_r[1]));
    assert_true(fabs(loss - 500.0) < 1e-9);         // (0 + 1000) / 2
    assert_true(fabs(w_c[0]) < 1e-300);              // satisfied pair: no gradient
    assert_true(fabs(w_c[1] + 0.05) < 1e-12);        // -beta * sigmoid(1000) / 2
    assert_true(st.rewards_accuracies == 0.5);
    assert_true(fabs(st.rewards_margins) < 1e-9);
    const double xs[] = {1000, -1000, 1e6, -1e6, 0, 30, -30};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
        const double ls = dpo_log_sigmoid(xs[i]), s = dpo_sigmoid(xs[i]);
        assert_true(isfinite(ls) && ls <= 0 && s >= 0 && s <= 1);
        if (fabs(xs[i]) <= 30) assert_true(fabs(ls - log(1 / (1 + exp(-xs[i])))) < 1e-14);
    }
    assert_true(dpo_log_sigmoid(-1000) == -1000.0);
    assert_true(fabs(dpo_log_sigmoid(0) + log(2.0)) < 1e-15);
}

// a handful of AdamW steps on random pairs: the policy moves away from the
// reference in the preferred direction (margins up, every pair ranked right)
static void test_dpo_training_separates_pairs(void **state) {
    (void)state;
    enum { NP = 6, TP = 4, TC = 3, T = TP + TC };
    ModelConfig mc = {.vocab_size = 40, .dim = 32, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 8,
                      .ffn_dim = 64, .max_seq_len = 16, .rope_theta = 1e4f, .rms_eps = 1e-5f, .tie_embeddings = 1};
    Model m;
    model_create(&m, &mc, backend_cpu());
    model_init_random(&m, 5, 0.1f);
    int tc[NP * T], tr[NP * T], len[NP];
    float mask[NP * T];
    Rng r;
    rng_seed(&r, 9);
    for (int b = 0; b < NP; b++) {
        len[b] = T;
        for (int t = 0; t < T; t++) {
            tc[b * T + t] = (int)rng_below(&r, 40);
            tr[b * T + t] = t < TP ? tc[b * T + t] : (int)rng_below(&r, 40);
            mask[b * T + t] = t >= TP;
        }
    }
    Batch chosen = {.B = NP, .T = T, .tokens = tc, .mask = mask, .lengths = len};
    Batch rejected = {.B = NP, .T = T, .tokens = tr, .mask = mask, .lengths = len};
    double ref_c[NP], ref_r[NP];
    dpo_pair_logprobs(&m, &chosen, &rejected, ref_c, ref_r);   // frozen reference = the initial model
    AdamW opt;
    adamw_create(&opt, &m, 0.9f, 0.999f, 1e-8f, 0.0f, 1.0f, 0);
    DpoStats first = {0}, st = {0};
    for (int step = 0; step < 15; step++) {
        m.be->zero(m.grads, m.numel * sizeof(float));
        dpo_step(&m, &chosen, &rejected, ref_c, ref_r, NULL, 0.1, &st);
        if (step == 0) first = st;
        adamw_step(&opt, &m, 3e-3f);
    }
    double lp_c[NP], lp_r[NP];
    dpo_pair_logprobs(&m, &chosen, &rejected, lp_c, lp_r);
    DpoStats last;
    dpo_loss_and_weights(NP, lp_c, lp_r, ref_c, ref_r, NULL, 0.1, &last, NULL, NULL);
    print_message("  15 DPO steps: loss %.4f -> %.4f, margins %.4f -> %.4f, accuracies %.2f -> %.2f\n", first.loss,
                  last.loss, first.rewards_margins, last.rewards_margins, first.rewards_accuracies,
                  last.rewards_accuracies);
    assert_true(fabs(first.loss - log(2.0)) < 1e-6);
    assert_true(last.loss < first.loss - 0.1);
    assert_true(last.rewards_margins > first.rewards_margins + 0.5);
    assert_true(last.rewards_accuracies == 1.0);
    adamw_free(&opt, &m);
    model_free(&m);
}

// dpo_step (sequence sums, loss and token weights on the backend: seq_logprob,
// dpo_loss) against the host path it replaced (sums of the downloaded head
// log-probs, dpo_loss_and_weights, token weights built on the host, uploaded
// by model_backward): the same loss, statistics and gradients, bit for bit
static void test_dpo_step_matches_host_path(void **state) {
    (void)state;
    enum { NP = 4, T = 9 };
    ModelConfig mc = {.vocab_size = 40, .dim = 32, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 8,
                      .ffn_dim = 64, .max_seq_len = 16, .rope_theta = 1e4f, .rms_eps = 1e-5f, .tie_embeddings = 1};
    Model m;
    model_create(&m, &mc, backend_cpu());
    model_init_random(&m, 6, 0.1f);
    int tc[NP * T], tr[NP * T], lc_[NP], lr_[NP];
    float mkc[NP * T], mkr[NP * T];
    Rng r;
    rng_seed(&r, 10);
    for (int b = 0; b < NP; b++) {
        lc_[b] = 5 + b; lr_[b] = T - b;   // different lengths, so rows are padded differently
        for (int t = 0; t < T; t++) {
            tc[b * T + t] = (int)rng_below(&r, 40);
            tr[b * T + t] = (int)rng_below(&r, 40);
            mkc[b * T + t] = t >= 3 ? 1.0f + 0.25f * (float)(t % 3) : 0.0f;   // non-binary mask weights
            mkr[b * T + t] = t >= 2 ? 1.0f : 0.0f;
        }
    }
    Batch chosen = {.B = NP, .T = T, .tokens = tc, .mask = mkc, .lengths = lc_};
    Batch rejected = {.B = NP, .T = T, .tokens = tr, .mask = mkr, .lengths = lr_};
    double ref_c[NP], ref_r[NP], pw[NP] = {0.5, 1.5, 1.0, 1.0};
    for (int i = 0; i < NP; i++) { ref_c[i] = -40.0 + i; ref_r[i] = -38.0 - i; }
    const double beta = 0.3;
    float *g_new = malloc(m.numel * sizeof(float)), *g_old = malloc(m.numel * sizeof(float));
    DpoStats st_new, st_old;
    memset(&st_new, 0, sizeof st_new); memset(&st_old, 0, sizeof st_old);   // padding compared too
    m.be->zero(m.grads, m.numel * sizeof(float));
    const double loss_new = dpo_step(&m, &chosen, &rejected, ref_c, ref_r, pw, beta, &st_new);
    m.be->download(g_new, m.grads, m.numel * sizeof(float));
    // the host path
    Batch both;
    dpo_concat_pairs(&chosen, &rejected, &both);
    const int nh = model_forward(&m, &both, 0);
    double lp[2 * NP] = {0}, w[2 * NP];
    for (int i = 0; i < nh; i++)
        lp[m.head_pos[i] / both.T] += (double)both.mask[m.head_pos[i]] * (double)m.head_lp[i];
    const double loss_old = dpo_loss_and_weights(NP, lp, lp + NP, ref_c, ref_r, pw, beta, &st_old, w, w + NP);
    float *tw = malloc((size_t)nh * sizeof(float));
    for (int i = 0; i < nh; i++) tw[i] = (float)(-w[m.head_pos[i] / both.T] * (double)both.mask[m.head_pos[i]]);
    m.be->zero(m.grads, m.numel * sizeof(float));
    model_backward(&m, tw);
    m.be->download(g_old, m.grads, m.numel * sizeof(float));
    print_message("  dpo_step vs host path: loss %.17g vs %.17g\n", loss_new, loss_old);
    assert_true(loss_new == loss_old);
    assert_memory_equal(&st_new, &st_old, sizeof st_new);
    assert_memory_equal(g_new, g_old, m.numel * sizeof(float));
    double lp_c[NP], lp_r[NP];   // the reference pass gives the same sums as well
    dpo_pair_logprobs(&m, &chosen, &rejected, lp_c, lp_r);
    assert_memory_equal(lp_c, lp, sizeof lp_c);
    assert_memory_equal(lp_r, lp + NP, sizeof lp_r);
    free(tw); free(g_new); free(g_old);
    batch_free(&both);
    model_free(&m);
}

// a pair whose completion is empty (mask 0 everywhere) is a data error, not a silent zero
static void empty_completion(void *arg) {
    (void)arg;
    ModelConfig mc = {.vocab_size = 16, .dim = 8, .n_layers = 1, .n_heads = 2, .n_kv_heads = 1, .head_dim = 4,
                      .ffn_dim = 16, .max_seq_len = 8, .rope_theta = 1e4f, .rms_eps = 1e-5f, .tie_embeddings = 1};
    Model m;
    model_create(&m, &mc, backend_cpu());
    int tok[2 * 4] = {1, 2, 3, 4, 1, 2, 5, 6}, len[2] = {4, 4};
    float mc_[2 * 4] = {0, 0, 1, 1, 0, 0, 1, 1}, mr[2 * 4] = {0, 0, 1, 1, 0, 0, 0, 0};
    Batch c = {.B = 2, .T = 4, .tokens = tok, .mask = mc_, .lengths = len};
    Batch r = {.B = 2, .T = 4, .tokens = tok, .mask = mr, .lengths = len};
    double lc[2], lr[2];
    dpo_pair_logprobs(&m, &c, &r, lc, lr);
}

static void test_dpo_rejects_empty_completion(void **state) {
    (void)state;
    char err[4096];
    const int rc = run_forked(empty_completion, NULL, err, sizeof err);
    print_message("  empty completion: exit %d: %s", rc, err);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "sprec: error: dpo: pair 1: the rejected sequence has no completion tokens"));
}

DEFINE_TEST_GROUP(test_dpo,
    cmocka_unit_test(test_dpo_matches_pytorch),
    cmocka_unit_test(test_dpo_reference_is_policy),
    cmocka_unit_test(test_dpo_weights_finite_differences),
    cmocka_unit_test(test_dpo_extreme_margins),
    cmocka_unit_test(test_dpo_training_separates_pairs),
    cmocka_unit_test(test_dpo_step_matches_host_path),
    cmocka_unit_test(test_dpo_rejects_empty_completion))
