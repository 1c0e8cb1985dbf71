// Dequantisation of ggml's block types, following ggml-quants.c's reference
// dequantize_row_* operation by operation in fp32. No fused multiply-add: the
// build is -std=c11, where GCC does not contract a*b+c, and numpy (gguf.quants)
// rounds each operation too, so all three agree bit for bit.
#include <stdint.h>
#include <string.h>
#include "gguf_quant.h"
#include "safetensors.h"
#include "kernels/errors.h"

#define IQ "an IQ (importance-matrix codebook) type, which sprec does not import; use a Q*_K, Q*_0, Q*_1 or Q8_0 file"
#define ACT "ggml's activation type for dot products, never a weight in llama.cpp's files (no reference dequantiser)"
#define TERN "a ternary/FP4 type, which sprec does not import"
#define INT "an integer or float64 tensor, not a model weight"

static const GgufType TYPES[] = {
    {0, "F32", 1, 4, NULL}, {1, "F16", 1, 2, NULL}, {2, "Q4_0", 32, 18, NULL}, {3, "Q4_1", 32, 20, NULL},
    {6, "Q5_0", 32, 22, NULL}, {7, "Q5_1", 32, 24, NULL}, {8, "Q8_0", 32, 34, NULL}, {9, "Q8_1", 32, 36, ACT},
    {10, "Q2_K", 256, 84, NULL}, {11, "Q3_K", 256, 110, NULL}, {12, "Q4_K", 256, 144, NULL},
    {13, "Q5_K", 256, 176, NULL}, {14, "Q6_K", 256, 210, NULL}, {15, "Q8_K", 256, 292, ACT},
    {16, "IQ2_XXS", 256, 66, IQ}, {17, "IQ2_XS", 256, 74, IQ}, {18, "IQ3_XXS", 256, 98, IQ}, {19, "IQ1_S", 256, 50, IQ},
    {20, "IQ4_NL", 32, 18, IQ}, {21, "IQ3_S", 256, 110, IQ}, {22, "IQ2_S", 256, 82, IQ}, {23, "IQ4_XS", 256, 136, IQ},
    {24, "I8", 1, 1, INT}, {25, "I16", 1, 2, INT}, {26, "I32", 1, 4, INT}, {27, "I64", 1, 8, INT},
    {28, "F64", 1, 8, INT}, {29, "IQ1_M", 256, 56, IQ}, {30, "BF16", 1, 2, NULL}, {34, "TQ1_0", 256, 54, TERN},
    {35, "TQ2_0", 256, 66, TERN}, {39, "MXFP4", 32, 17, TERN},
};

const GgufType *gguf_type(int id) {
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++) if (TYPES[i].id == id) return &TYPES[i];
    return NULL;
}

static float h16(const unsigned char *b) { return half_to_f32((unsigned short)(b[0] | b[1] << 8)); }

// ---- 32-value blocks ----

static void dq_q4_0(const unsigned char *b, float *y) {   // d, 16 bytes of nibbles: low = 0..15, high = 16..31
    const float d = h16(b);
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((b[2 + j] & 0x0F) - 8) * d;
        y[j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
    }
}
static void dq_q4_1(const unsigned char *b, float *y) {   // d, m, nibbles: x = q*d + m
    const float d = h16(b), m = h16(b + 2);
    for (int j = 0; j < 16; j++) {
        y[j] = (float)(b[4 + j] & 0x0F) * d + m;
        y[j + 16] = (float)(b[4 + j] >> 4) * d + m;
    }
}
// Q5_0 / Q5_1: the nibbles of Q4_0 / Q4_1 plus a fifth bit per value, bit j of the u32 qh for value j
static void dq_q5_0(const unsigned char *b, float *y) {   // d, qh[4], nibbles: x = (q - 16)*d
    const float d = h16(b);
    const uint32_t qh = (uint32_t)b[2] | (uint32_t)b[3] << 8 | (uint32_t)b[4] << 16 | (uint32_t)b[5] << 24;
    for (int j = 0; j < 16; j++) {
        const int hi0 = (qh >> j & 1) << 4, hi1 = (qh >> (j + 16) & 1) << 4;
        y[j] = (float)(((b[6 + j] & 0x0F) | hi0) - 16) * d;
        y[j + 16] = (float)(((b[6 + j] >> 4) | hi1) - 16) * d;
    }
}
static void dq_q5_1(const unsigned char *b, float *y) {   // d, m, qh[4], nibbles: x = q*d + m
    const float d = h16(b), m = h16(b + 2);
    const uint32_t qh = (uint32_t)b[4] | (uint32_t)b[5] << 8 | (uint32_t)b[6] << 16 | (uint32_t)b[7] << 24;
    for (int j = 0; j < 16; j++) {
        const int hi0 = (qh >> j & 1) << 4, hi1 = (qh >> (j + 16) & 1) << 4;
        y[j] = (float)((b[8 + j] & 0x0F) | hi0) * d + m;
        y[j + 16] = (float)((b[8 + j] >> 4) | hi1) * d + m;
    }
}
static void dq_q8_0(const unsigned char *b, float *y) {   // d, 32 int8
    const float d = h16(b);
    for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}

// ---- 256-value "K" super-blocks ----

// Q2_K: scales[16] (low nibble: scale, high: min, per 16 values), qs[64] (2 bits), d, dmin.
static void dq_q2_k(const unsigned char *b, float *y) {
    const unsigned char *scales = b, *q = b + 16;
    const float d = h16(b + 80), dmin = h16(b + 82);
    int is = 0;
    for (int n = 0; n < 256; n += 128, q += 32)
        for (int shift = 0; shift < 8; shift += 2)
            for (int half = 0; half < 2; half++) {   // values l and l + 16 of the 32 bytes
                const int sc = scales[is++];
                const float dl = d * (float)(sc & 0xF), ml = dmin * (float)(sc >> 4);
                for (int l = 0; l < 16; l++) *y++ = dl * (float)(q[l + 16 * half] >> shift & 3) - ml;
            }
}
// Q3_K: hmask[32] (third bit, 0 means -4), qs[64] (2 bits), 16 6-bit signed scales in 12 bytes, d.
static void dq_q3_k(const unsigned char *b, float *y) {
    const unsigned char *hm = b, *q = b + 32, *s = b + 96;
    const float d = h16(b + 108);
    int scale[16];   // low 4 bits: nibbles of bytes 0..7; high 2 bits: 2-bit fields of bytes 8..11
    for (int i = 0; i < 16; i++) scale[i] = ((s[i % 8] >> (4 * (i / 8)) & 0xF) | (s[8 + i % 4] >> (2 * (i / 4)) & 3) << 4) - 32;
    int is = 0, m = 1;
    for (int n = 0; n < 256; n += 128, q += 32)
        for (int shift = 0; shift < 8; shift += 2, m <<= 1)
            for (int half = 0; half < 2; half++) {
                const float dl = d * (float)scale[is++];
                for (int l = 16 * half; l < 16 * half + 16; l++)
                    *y++ = dl * (float)((q[l] >> shift & 3) - ((hm[l] & m) ? 0 : 4));
            }
}
// Q4_K / Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins packed into 12 bytes.
static void scale_min_k4(int j, const unsigned char *q, int *sc, int *m) {
    if (j < 4) { *sc = q[j] & 63; *m = q[j + 4] & 63; }
    else { *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4); *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4); }
}
// qh == NULL: Q4_K; else Q5_K, whose fifth bit of value l of sub-block k is bit k of qh[l].
static void dq_q4_5_k(const unsigned char *b, const unsigned char *qh, const unsigned char *q, float *y) {
    const float d = h16(b), dmin = h16(b + 2);
    const unsigned char *scales = b + 4;
    for (int is = 0; is < 8; is += 2, q += 32) {
        int sc, m;
        scale_min_k4(is, scales, &sc, &m);
        const float d1 = d * (float)sc, m1 = dmin * (float)m;
        scale_min_k4(is + 1, scales, &sc, &m);
        const float d2 = d * (float)sc, m2 = dmin * (float)m;
        for (int l = 0; l < 32; l++) *y++ = d1 * (float)((q[l] & 0xF) | (qh ? (qh[l] >> is & 1) << 4 : 0)) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (float)((q[l] >> 4) | (qh ? (qh[l] >> (is + 1) & 1) << 4 : 0)) - m2;
    }
}
static void dq_q6_k(const unsigned char *b, float *y) {   // ql[128], qh[64], int8 scales[16], d
    const unsigned char *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    const float d = h16(b + 208);
    for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
        for (int l = 0; l < 32; l++) {
            const int is = l / 16;
            const int q1 = (int)((ql[l] & 0xF) | ((qh[l] >> 0 & 3) << 4)) - 32;
            const int q2 = (int)((ql[l + 32] & 0xF) | ((qh[l] >> 2 & 3) << 4)) - 32;
            const int q3 = (int)((ql[l] >> 4) | ((qh[l] >> 4 & 3) << 4)) - 32;
            const int q4 = (int)((ql[l + 32] >> 4) | ((qh[l] >> 6 & 3) << 4)) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
    }
}

void gguf_dequantize_blocks(int type, const unsigned char *src, size_t nblocks, float *dst) {
    const GgufType *ti = gguf_type(type);
    check(ti && !ti->refused, "gguf_dequantize_blocks: type %d is not dequantisable", type);
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < nblocks; i++) {
        const unsigned char *blk = src + i * (size_t)ti->bytes;
        float *y = dst + i * (size_t)ti->block;
        switch (type) {
        case GGML_F32: memcpy(y, blk, 4); break;
        case GGML_F16: *y = h16(blk); break;
        case GGML_BF16: *y = bf16_to_f32((unsigned short)(blk[0] | blk[1] << 8)); break;
        case GGML_Q4_0: dq_q4_0(blk, y); break;
        case GGML_Q4_1: dq_q4_1(blk, y); break;
        case GGML_Q5_0: dq_q5_0(blk, y); break;
        case GGML_Q5_1: dq_q5_1(blk, y); break;
        case GGML_Q8_0: dq_q8_0(blk, y); break;
        case GGML_Q2_K: dq_q2_k(blk, y); break;
        case GGML_Q3_K: dq_q3_k(blk, y); break;
        case GGML_Q4_K: dq_q4_5_k(blk, NULL, blk + 16, y); break;
        case GGML_Q5_K: dq_q4_5_k(blk, blk + 16, blk + 48, y); break;
        case GGML_Q6_K: dq_q6_k(blk, y); break;
        }
    }
}
