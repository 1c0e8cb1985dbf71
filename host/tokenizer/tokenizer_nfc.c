// Unicode NFC for the "NFC" normalizer (Qwen2): canonical decomposition,
// canonical ordering, canonical composition (UAX #15), over the tables in
// tokenizer_nfc_data.c. Text whose code points are all below U+0300 is
// already NFC, so the common case is one scan and a copy. The first two steps
// are NFD, which BERT's accent stripping uses (nfd_cps).
#include <string.h>
#include "tokenizer_impl.h"

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
static void decompose(int cp, Ints *v) {
    if (cp >= SBASE && cp < SBASE + SCOUNT) {
        int s = cp - SBASE, t = s % TCOUNT;
        ints_put(v, LBASE + s / NCOUNT);
        ints_put(v, VBASE + (s % NCOUNT) / TCOUNT);
        if (t) ints_put(v, TBASE + t);
        return;
    }
    const uint32_t *d = cp >= 0xC0 ? decomp_of(cp) : NULL;
    if (!d) { ints_put(v, cp); return; }
    decompose((int)d[1], v);
    if (d[2]) decompose((int)d[2], v);
}

void nfd_cps(const int *cps, size_t n, Ints *out) {
    out->n = 0;
    for (size_t k = 0; k < n; k++)
        if (cps[k] < 0) ints_put(out, cps[k]);
        else decompose(cps[k], out);
    // canonical ordering: stable insertion sort of each run of non-starters by class
    int *p = out->p;
    for (size_t k = 1; k < out->n; k++) {
        int c = p[k], cc = c >= 0 ? ccc_of(c) : 0;
        if (!cc) continue;
        size_t j = k;
        while (j > 0 && p[j - 1] >= 0 && ccc_of(p[j - 1]) > cc) { p[j] = p[j - 1]; j--; }
        p[j] = c;
    }
}

void nfc_normalize(const char *s, size_t n, Bytes *out) {
    out->n = 0;
    size_t i = 0;
    while (i < n && (unsigned char)s[i] < 0xCC) i++;
    if (i == n) { bytes_put(out, s, n); return; }
    Ints cps = {0}, v = {0};
    for (size_t k = 0; k < n;) {
        int cp, len = utf8_next((const unsigned char *)s + k, n - k, &cp);
        ints_put(&cps, cp < 0 ? -(int)(unsigned char)s[k] - 1 : cp);
        k += (size_t)len;
    }
    nfd_cps(cps.p, cps.n, &v);
    free(cps.p);
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
