// The MLP activations: SwiGLU gating of the Llama MLP (out = silu(gate) * up,
// silu(g) = g * sigmoid(g), forward and backward) and BERT's exact GELU
// (forward only: the sentence encoder).
#include <math.h>
#include "cpu_ops.h"

// exp(-g) is +inf for very negative g, giving sigmoid 0: still correct
static inline float sigmoidf(float g) { return 1.0f / (1.0f + cpu_expf(-g)); }

// out, gate, up: [n]
void cpu_swiglu_fwd(void *out_, const void *gate_, const void *up_, size_t n) {
    float *out = out_;
    const float *gate = gate_, *up = up_;
    #pragma omp parallel for simd if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = gate[i] * sigmoidf(gate[i]) * up[i];
}

// dgate[n] += dout * up * silu'(gate);  dup[n] += dout * silu(gate)   (either may be NULL)
// silu'(g) = s (1 + g (1 - s)) with s = sigmoid(g)
void cpu_swiglu_bwd(float *dgate, float *dup, const float *dout, const void *gate_,
                    const void *up_, size_t n) {
    const float *gate = gate_, *up = up_;
    #pragma omp parallel for simd if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float g = gate[i], s = sigmoidf(g);
        if (dgate) dgate[i] += dout[i] * up[i] * s * (1.0f + g * (1.0f - s));
        if (dup) dup[i] += dout[i] * g * s;
    }
}

// out[n] = 0.5 x (1 + erf(x / sqrt 2)): the erf form (torch's gelu with
// approximate='none', BERT's "gelu"), not the tanh approximation. out may alias inp.
void cpu_gelu_fwd(void *out_, const void *inp_, size_t n) {
    float *out = out_;
    const float *inp = inp_;
    #pragma omp parallel for if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = 0.5f * inp[i] * (1.0f + erff(inp[i] * (float)M_SQRT1_2));
}
