// Rotary cos/sin tables, shared by the training forward and the KV-cache
// decoder so both compute exactly the same function.
#include <math.h>
#include "model.h"

// Inverse frequencies as Hugging Face computes them (in float32), with the
// Llama-3.1 wavelength-dependent scaling when configured; angles formed in float32.
void rope_tables_host(const ModelConfig *c, int P, float *cs, float *sn) {
    const int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        float f = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_dim);
        double inv = f;
        if (c->rope_scaling == 1) {
            const double old_len = c->rope_original_max_pos;
            const double low_wavelen = old_len / c->rope_low_freq_factor;
            const double high_wavelen = old_len / c->rope_high_freq_factor;
            const double wavelen = 2.0 * M_PI / f;
            if (wavelen > low_wavelen) {
                inv = f / c->rope_factor;
            } else if (wavelen >= high_wavelen) {
                double smooth = (old_len / wavelen - c->rope_low_freq_factor) /
                                (c->rope_high_freq_factor - c->rope_low_freq_factor);
                inv = (1.0 - smooth) * f / c->rope_factor + smooth * f;
            }
            inv = (float)inv;
        }
        for (int t = 0; t < P; t++) {
            float angle = (float)t * (float)inv;   // HF forms the angle in float32
            cs[t * half + i] = (float)cos((double)angle);
            sn[t * half + i] = (float)sin((double)angle);
        }
    }
}

