// Rotary position embedding, rotate-half convention (Hugging Face Llama):
// pair (i, i + D/2) of every head is rotated by the angle of (t, i).
#include "cpu_ops.h"

// x[B,T,H,D] rotated in place by +angle (dir = 1) or -angle (dir = -1);
// cos_tab, sin_tab [T, D/2].
static void rotate(float *x, const float *cos_tab, const float *sin_tab,
                   int B, int T, int H, int D, float dir) {
    int half = D / 2;
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *c = cos_tab + (size_t)t * half, *s = sin_tab + (size_t)t * half;
            float *row = x + ((size_t)b * T + t) * H * D;
            for (int h = 0; h < H; h++) {
                float *x1 = row + (size_t)h * D, *x2 = x1 + half;
                for (int i = 0; i < half; i++) {
                    float a = x1[i], bb = x2[i], si = dir * s[i];
                    x1[i] = a * c[i] - bb * si;
                    x2[i] = bb * c[i] + a * si;
                }
            }
        }
}

// x[B,T,H,D] in place; cos_tab, sin_tab [T, D/2]
void cpu_rope_fwd(void *x, const float *cos_tab, const float *sin_tab, int B, int T, int H, int D) {
    rotate(x, cos_tab, sin_tab, B, T, H, D, 1.0f);
}

// dx[B,T,H,D] in place: the transpose of a rotation is the rotation by -angle
void cpu_rope_bwd(float *dx, const float *cos_tab, const float *sin_tab, int B, int T, int H, int D) {
    rotate(dx, cos_tab, sin_tab, B, T, H, D, -1.0f);
}
