// Rotary frequencies: the cos/sin tables shared by the training forward and the
// KV-cache decoder (so both compute exactly the same function), and the
// transformers "llama3" curve, which can also be fitted to per-frequency factors
// (an export to config.json, which has no per-frequency form, needs the curve).
#include <math.h>
#include <string.h>
#include "model.h"

float rope_base_freq(const ModelConfig *c, int i) {
    return 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_dim);
}

// Inverse frequency f under the llama3 curve of c (transformers' _compute_llama3_parameters).
static double llama3_freq(const ModelConfig *c, float f) {
    const double old_len = c->rope_original_max_pos;
    const double low_wavelen = old_len / c->rope_low_freq_factor;
    const double high_wavelen = old_len / c->rope_high_freq_factor;
    const double wavelen = 2.0 * M_PI / f;
    if (wavelen > low_wavelen) return f / c->rope_factor;
    if (wavelen < high_wavelen) return f;
    const double smooth = (old_len / wavelen - c->rope_low_freq_factor) /
                          (c->rope_high_freq_factor - c->rope_low_freq_factor);
    return (1.0 - smooth) * f / c->rope_factor + smooth * f;
}

// The inverse frequency pair i turns at, float32 as Hugging Face forms it.
static float pair_freq(const ModelConfig *c, int i) {
    const float f = rope_base_freq(c, i);
    if (c->rope_scaling == ROPE_LLAMA3) return (float)llama3_freq(c, f);
    if (c->rope_scaling == ROPE_FREQS) return f / c->rope_freqs[i];   // inv_freq / factors, in float32
    return f;
}

void rope_tables_host(const ModelConfig *c, int P, float *cs, float *sn) {
    const int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        const float inv = pair_freq(c, i);
        for (int t = 0; t < P; t++) {
            float angle = (float)t * inv;   // HF forms the angle in float32
            cs[t * half + i] = (float)cos((double)angle);
            sn[t * half + i] = (float)sin((double)angle);
        }
    }
}

double rope_llama3_divisor(const ModelConfig *c, int i) {
    const float f = rope_base_freq(c, i);
    return f / llama3_freq(c, f);
}

double rope_llama3_worst(const ModelConfig *c, const float *factors, int *at) {
    double worst = -1;
    for (int i = 0; i < c->head_dim / 2; i++) {
        const double d = fabs(rope_llama3_divisor(c, i) - factors[i]) / factors[i];
        if (!(d <= worst)) { worst = d; *at = i; }   // NaN counts as worst
    }
    return worst;
}

// ---- fitting the llama3 curve to per-frequency factors -----------------------------
// The curve divides the slow pairs by `factor`, leaves the fast ones alone and, in
// between, interpolates 1/divisor linearly in 1/wavelength between the bounds
// original_max_pos / low_freq_factor and original_max_pos / high_freq_factor. So
// factor is the largest factor, and two interpolated pairs fix the line, hence
// both bounds (only their ratio to original_max_pos matters, which is kept).

typedef struct { double factor, low, high; } Curve;

static ModelConfig with_curve(const ModelConfig *c, Curve k) {
    ModelConfig r = *c;
    r.rope_scaling = ROPE_LLAMA3;
    r.rope_factor = (float)k.factor;
    r.rope_low_freq_factor = (float)k.low;
    r.rope_high_freq_factor = (float)k.high;
    memset(r.rope_freqs, 0, sizeof r.rope_freqs);
    return r;
}

// Relative difference of the curve k from c's factors (HUGE_VAL for an invalid curve).
static double curve_worst(const ModelConfig *c, Curve k, int *at) {
    if (!(k.high > k.low && k.low > 0 && k.factor > 0)) return HUGE_VAL;
    const ModelConfig r = with_curve(c, k);
    return rope_llama3_worst(&r, c->rope_freqs, at);
}

// A fitted value as the short decimal it most likely was (1.0, not 0.99999994), when that fits as well.
static double tidy(double x) { double t = round(x * 1000) / 1000; return fabs(t - x) <= 1e-5 * fabs(x) ? t : x; }

int rope_fit_llama3(const ModelConfig *c, ModelConfig *out, int *at, double *worst) {
    const int n = c->head_dim / 2;
    const float *ff = c->rope_freqs;
    const double tol = 1e-5, orig = c->rope_original_max_pos;
    double factor = 1;
    int all_one = 1;
    for (int i = 0; i < n; i++) {
        if (ff[i] > factor) factor = ff[i];
        all_one &= ff[i] == 1.0f;
    }
    if (all_one) {   // no scaling at all
        *out = *c;
        out->rope_scaling = ROPE_NONE;
        memset(out->rope_freqs, 0, sizeof out->rope_freqs);
        *at = 0, *worst = 0;
        return 1;
    }
    // smooth points: s = (1/ff - 1/factor) / (1 - 1/factor) is linear in u = 1/wavelength = f/2pi
    int lo = -1, hi = -1;
    double gap_lo = 0, gap_hi = HUGE_VAL, u_lo = 0, u_hi = 0;   // gap: u of the last factor-scaled pair, of the first unscaled one
    for (int i = 0; i < n; i++) {
        const double u = rope_base_freq(c, i) / (2 * M_PI);
        if (fabs(ff[i] - 1) <= tol) { if (u < gap_hi) gap_hi = u; }
        else if (fabs(ff[i] - factor) <= tol * factor) { if (u > gap_lo) gap_lo = u; }
        else {
            if (lo < 0 || u < u_lo) lo = i, u_lo = u;
            if (hi < 0 || u > u_hi) hi = i, u_hi = u;
        }
    }
    Curve cand[2] = {{factor, 1, 4}};   // Llama 3.x's low/high_freq_factor first
    int n_cand = 1;
    if (lo >= 0 && hi != lo) {   // two smooth points fix the line
        const double sa = (1 / ff[lo] - 1 / factor) / (1 - 1 / factor), sb = (1 / ff[hi] - 1 / factor) / (1 - 1 / factor);
        const double k = (sb - sa) / (u_hi - u_lo), u0 = u_lo - sa / k;
        cand[n_cand++] = (Curve){factor, u0 * orig, (u0 + 1 / k) * orig};
    } else if (lo < 0 && gap_hi < HUGE_VAL && gap_hi > gap_lo) {   // no smooth point: any bounds in the gap
        cand[n_cand++] = (Curve){factor, (gap_lo + (gap_hi - gap_lo) / 3) * orig, (gap_lo + 2 * (gap_hi - gap_lo) / 3) * orig};
    }
    *worst = HUGE_VAL, *at = 0;
    for (int k = 0; k < n_cand; k++) {
        const Curve tidied = {tidy(cand[k].factor), tidy(cand[k].low), tidy(cand[k].high)};
        int a = 0;
        const Curve best = curve_worst(c, tidied, &a) <= tol ? tidied : cand[k];
        const double w = curve_worst(c, best, &a);
        if (w <= tol) {
            *out = with_curve(c, best);
            *at = a, *worst = w;
            return 1;
        }
        if (w < *worst) *worst = w, *at = a;
    }
    return 0;
}
