// Unicode NFC for the "NFC" normalizer (Qwen2): canonical decomposition,
// canonical ordering, canonical composition (UAX #15), over the tables in
// tokenizer_nfc_data.c. Text whose code points are all below U+0300 is
// already NFC, so the common case is one scan and a copy.
#include <string.h>
#include "tokenizer_impl.h"
#include "kernels/errors.h"

enum { SBASE = 0xAC00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11A7, LCOUNT = 19, VCOUNT = 21, TCOUNT = 28,
       NCOUNT = VCOUNT * TCOUNT, SCOUNT = LCOUNT * NCOUNT };

static int ccc_of(int cp) {
    if (cp < 0x300) return 0;
    int lo = 0, hi = nfc_ccc_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = (int)(nfc_ccc[mid] >> 8);
        if (c == cp) return (int)(nfc_ccc[mid] & 0xFF);
        if (c < cp) lo = mid + 1; else hi = mid - 1;
    }
    return 0;
}

static const uint32_t *decomp_of(int cp) {
    int lo = 0, hi = nfc_decomp_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if ((int)nfc_decomp[mid][0] == cp) return nfc_decomp[mid];
        if ((int)nfc_decomp[mid][0] < cp) lo = mid + 1; else hi = mid - 1;
    }
    return NULL;
}

static int compose(int a, int b) {
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE && b < TBASE + TCOUNT)
        return a + (b - TBASE);
    int lo = 0, hi = nfc_comp_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, x = (int)nfc_comp[mid][0], y = (int)nfc_comp[mid][1];
        if (x == a && y == b) return (int)nfc_comp[mid][2];
        if (x < a || (x == a && y < b)) lo = mid + 1; else hi = mid - 1;
    }
    return -1;
}

// Code points, invalid bytes as -(byte + 1): they have class 0 and compose with nothing.
typedef struct { int *p; size_t n, cap; } Cps;
static void cps_put(Cps *v, int x) {
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 256;
        v->p = realloc(v->p, v->cap * sizeof(int));
        if (!v->p) fail("out of memory (tokenizer)");
    }
    v->p[v->n++] = x;
}

static void decompose(int cp, Cps *v) {
    if (cp >= SBASE && cp < SBASE + SCOUNT) {
        int s = cp - SBASE, t = s % TCOUNT;
        cps_put(v, LBASE + s / NCOUNT);
        cps_put(v, VBASE + (s % NCOUNT) / TCOUNT);
        if (t) cps_put(v, TBASE + t);
        return;
    }
    const uint32_t *d = cp >= 0xC0 ? decomp_of(cp) : NULL;
    if (!d) { cps_put(v, cp); return; }
    decompose((int)d[1], v);
    if (d[2]) decompose((int)d[2], v);
}

void nfc_normalize(const char *s, size_t n, Bytes *out) {
    out->n = 0;
    size_t i = 0;
    while (i < n && (unsigned char)s[i] < 0xCC) i++;
    if (i == n) { bytes_put(out, s, n); return; }
    Cps v = {0};
    for (size_t k = 0; k < n;) {
        int cp, len = utf8_next((const unsigned char *)s + k, n - k, &cp);
        if (cp < 0) cps_put(&v, -(int)(unsigned char)s[k] - 1);
        else decompose(cp, &v);
        k += (size_t)len;
    }
    // canonical ordering: stable insertion sort of each run of non-starters by class
    for (size_t k = 1; k < v.n; k++) {
        int c = v.p[k], cc = c >= 0 ? ccc_of(c) : 0;
        if (!cc) continue;
        size_t j = k;
        while (j > 0 && v.p[j - 1] >= 0 && ccc_of(v.p[j - 1]) > cc) { v.p[j] = v.p[j - 1]; j--; }
        v.p[j] = c;
    }
    // composition: C joins the last starter unless something between blocks it
    size_t m = 0;
    long starter = -1;
    int last_cc = 0;
    for (size_t k = 0; k < v.n; k++) {
        int c = v.p[k], cc = c >= 0 ? ccc_of(c) : 0;
        if (starter >= 0 && c >= 0) {
            int blocked = (long)m - 1 > starter && (last_cc == 0 || last_cc >= cc);
            int p = blocked ? -1 : compose(v.p[starter], c);
            if (p >= 0) { v.p[starter] = p; continue; }
        }
        if (cc == 0) starter = c >= 0 ? (long)m : -1;
        last_cc = cc;
        v.p[m++] = c;
    }
    for (size_t k = 0; k < m; k++) {
        char u[4];
        if (v.p[k] < 0) { u[0] = (char)(-v.p[k] - 1); bytes_put(out, u, 1); }
        else bytes_put(out, u, (size_t)utf8_encode(v.p[k], u));
    }
    free(v.p);
}
