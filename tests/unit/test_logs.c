// Training curves where users look for them (issue 13): the PNG that `make
// demo` writes (scripts/plot_metrics.py, decoded here by a small PNG reader
// of our own) and TensorBoard event files (host/train/tensorboard.c).
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include "tests.h"
#include "io/tensorboard.h"

#define TMP "build/test-tmp/logs"

static uint32_t be32(const unsigned char *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

static int paeth(int a, int b, int c) {
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

// A PNG reader for 8-bit RGB / RGBA, not interlaced (what matplotlib's Agg
// writes): the signature, every chunk's CRC, IHDR, the IDAT stream inflated,
// the five scanline filters undone. Returns RGBA pixels (malloc'd), or NULL
// with *why saying what is wrong.
static unsigned char *png_decode(const unsigned char *p, size_t n, int *w, int *h, const char **why) {
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n < 8 || memcmp(p, sig, 8)) { *why = "no PNG signature"; return NULL; }
    unsigned char *idat = NULL;
    size_t idat_n = 0, pos = 8;
    int channels = 0, seen_end = 0;
    *w = *h = 0;
    while (pos + 12 <= n && !seen_end) {
        uint32_t len = be32(p + pos);
        if (len > n - pos - 12) { *why = "chunk runs past the end"; free(idat); return NULL; }
        const unsigned char *type = p + pos + 4, *data = p + pos + 8;
        if ((uint32_t)crc32(crc32(0, NULL, 0), type, len + 4) != be32(data + len)) { *why = "chunk CRC mismatch"; free(idat); return NULL; }
        if (!memcmp(type, "IHDR", 4)) {
            *w = (int)be32(data);
            *h = (int)be32(data + 4);
            channels = data[9] == 6 ? 4 : data[9] == 2 ? 3 : 0;
            if (data[8] != 8 || !channels || data[12] != 0) { *why = "not 8-bit RGB(A) without interlace"; return NULL; }
        } else if (!memcmp(type, "IDAT", 4)) {
            idat = realloc(idat, idat_n + len);
            memcpy(idat + idat_n, data, len);
            idat_n += len;
        } else if (!memcmp(type, "IEND", 4)) seen_end = 1;
        pos += 12 + len;
    }
    if (!seen_end || !*w || !*h || !idat) { *why = "no IHDR, IDAT or IEND"; free(idat); return NULL; }
    const size_t stride = (size_t)*w * (size_t)channels;
    uLongf raw_n = (uLongf)((stride + 1) * (size_t)*h);
    unsigned char *raw = malloc(raw_n), *rgba = malloc((size_t)*w * (size_t)*h * 4);
    int zrc = uncompress(raw, &raw_n, idat, (uLong)idat_n);
    free(idat);
    if (zrc != Z_OK || raw_n != (stride + 1) * (size_t)*h) { *why = "IDAT does not inflate to the image size"; free(raw); free(rgba); return NULL; }
    for (int y = 0; y < *h; y++) {
        unsigned char *row = raw + (size_t)y * (stride + 1), *cur = row + 1;
        const unsigned char *up = y ? raw + (size_t)(y - 1) * (stride + 1) + 1 : NULL;
        for (size_t i = 0; i < stride; i++) {
            int a = i >= (size_t)channels ? cur[i - channels] : 0, b = up ? up[i] : 0;
            int c = up && i >= (size_t)channels ? up[i - channels] : 0;
            switch (row[0]) {
            case 0: break;
            case 1: cur[i] = (unsigned char)(cur[i] + a); break;
            case 2: cur[i] = (unsigned char)(cur[i] + b); break;
            case 3: cur[i] = (unsigned char)(cur[i] + (a + b) / 2); break;
            case 4: cur[i] = (unsigned char)(cur[i] + paeth(a, b, c)); break;
            default: *why = "unknown scanline filter"; free(raw); free(rgba); return NULL;
            }
        }
        for (int x = 0; x < *w; x++) {
            unsigned char *o = rgba + ((size_t)y * (size_t)*w + (size_t)x) * 4;
            memcpy(o, cur + (size_t)x * (size_t)channels, 3);
            o[3] = channels == 4 ? cur[(size_t)x * 4 + 3] : 255;
        }
    }
    free(raw);
    return rgba;
}

// Pixels of exactly this opaque colour.
static long count_color(const unsigned char *rgba, int w, int h, int r, int g, int b) {
    long k = 0;
    for (size_t i = 0; i < (size_t)w * (size_t)h; i++)
        k += rgba[4 * i] == r && rgba[4 * i + 1] == g && rgba[4 * i + 2] == b && rgba[4 * i + 3] == 255;
    return k;
}

// One metrics line as the trainers write it (only the K = 10 keys the plot reads).
static void metrics_line(FILE *f, const char *label, int iteration, double x) {
    char it[16];
    if (iteration < 0) snprintf(it, sizeof it, "null");
    else snprintf(it, sizeof it, "%d", iteration);
    fprintf(f, "{\"label\": \"%s\", \"iteration\": %s, \"N\": 100, \"M\": 90, \"NDCG@10\": %g, \"HR@10\": %g, "
               "\"DivRatio@10\": %g, \"ORRatio@10\": %g, \"MGU@10\": %g, \"DGU@10\": %g}\n",
            label, it, 0.1 + x, 0.2 + x, 0.3 + x, 0.4 - x, 0.05 + x / 10, 0.08 - x / 10);
}

// Plots `files` with scripts/plot_metrics.py; returns the decoded PNG (or fails the test).
static unsigned char *plot(const char *files, int *w, int *h) {
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd, "python3 scripts/plot_metrics.py %s -k 10 -o " TMP "/m.png 2>&1", files);
    remove(TMP "/m.png");
    if (run_capture(cmd, out, sizeof out) != 0)
        fail_msg("%s failed (python3-matplotlib missing? scripts/setup.sh installs it):\n%s", cmd, out);
    size_t n;
    unsigned char *png = (unsigned char *)read_text_file(TMP "/m.png", &n);
    const char *why = "";
    unsigned char *rgba = png_decode(png, n, w, h, &why);
    if (!rgba) fail_msg(TMP "/m.png: %s", why);
    free(png);
    return rgba;
}

// The demo's three runs (SFT and DPO as standalone evaluations, SPRec's
// iterations) give a PNG with each run's series in its colour; the same plot
// without the SPRec file has none of SPRec's colour (so the check can fail).
static void test_plot_png(void **state) {
    (void)state;
    run_ok("rm -rf " TMP " && mkdir -p " TMP);
    FILE *f = fopen(TMP "/sft.jsonl", "w");
    metrics_line(f, "sft", -1, 0.00);
    fclose(f);
    f = fopen(TMP "/dpo.jsonl", "w");
    metrics_line(f, "dpo", -1, 0.02);
    fclose(f);
    f = fopen(TMP "/sprec.jsonl", "w");
    for (int t = 1; t <= 3; t++) metrics_line(f, "sprec", t, 0.01 * t);
    fclose(f);
    // matplotlib's first three cycle colours: C0, C1, C2
    static const int color[3][3] = {{0x1f, 0x77, 0xb4}, {0xff, 0x7f, 0x0e}, {0x2c, 0xa0, 0x2c}};
    int w, h;
    unsigned char *rgba = plot(TMP "/sft.jsonl " TMP "/dpo.jsonl " TMP "/sprec.jsonl", &w, &h);
    long k[3];
    for (int i = 0; i < 3; i++) k[i] = count_color(rgba, w, h, color[i][0], color[i][1], color[i][2]);
    free(rgba);
    print_message("  PNG %d x %d; pixels of the sft / dpo / sprec colours: %ld / %ld / %ld\n", w, h, k[0], k[1], k[2]);
    assert_true(w >= 800 && h >= 500);
    for (int i = 0; i < 3; i++) assert_true(k[i] >= 200);   // six panels of each series
    rgba = plot(TMP "/sft.jsonl " TMP "/dpo.jsonl", &w, &h);
    assert_int_equal(count_color(rgba, w, h, color[2][0], color[2][1], color[2][2]), 0);
    assert_true(count_color(rgba, w, h, color[0][0], color[0][1], color[0][2]) >= 200);
    free(rgba);
}

// The reader itself on a hand-made 2 x 2 RGB image (filters None and Sub) and a corrupted CRC.
static void test_png_reader(void **state) {
    (void)state;
    unsigned char raw[] = {0, 255, 0, 0, 0, 255, 0,   1, 0, 0, 255, 10, 10, 10};   // row 1: Sub-filtered
    unsigned char z[64], png[256];
    uLongf zn = sizeof z;
    assert_int_equal(compress(z, &zn, raw, sizeof raw), Z_OK);
    size_t n = 0;
    const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(png, sig, 8); n = 8;
    const unsigned char ihdr[13] = {0, 0, 0, 2, 0, 0, 0, 2, 8, 2, 0, 0, 0};
    const struct { const char *type; const unsigned char *d; size_t len; } ch[3] = {{"IHDR", ihdr, 13}, {"IDAT", z, zn}, {"IEND", NULL, 0}};
    for (int c = 0; c < 3; c++) {
        unsigned char *q = png + n;
        q[0] = 0; q[1] = 0; q[2] = (unsigned char)(ch[c].len >> 8); q[3] = (unsigned char)ch[c].len;
        memcpy(q + 4, ch[c].type, 4);
        if (ch[c].len) memcpy(q + 8, ch[c].d, ch[c].len);
        uint32_t crc = (uint32_t)crc32(crc32(0, NULL, 0), q + 4, (uInt)ch[c].len + 4);
        for (int b = 0; b < 4; b++) q[8 + ch[c].len + b] = (unsigned char)(crc >> (24 - 8 * b));
        n += 12 + ch[c].len;
    }
    int w, h;
    const char *why = "";
    unsigned char *rgba = png_decode(png, n, &w, &h, &why);
    assert_non_null(rgba);
    assert_int_equal(w, 2);
    assert_int_equal(h, 2);
    assert_int_equal(rgba[0], 255); assert_int_equal(rgba[1], 0); assert_int_equal(rgba[5], 255);
    // row 1 is Sub-filtered: pixel 1 = (10, 10, 10) + pixel 0 (0, 0, 255)
    assert_int_equal(rgba[8], 0); assert_int_equal(rgba[10], 255);
    assert_int_equal(rgba[12], 10); assert_int_equal(rgba[13], 10); assert_int_equal(rgba[14], (10 + 255) & 255);
    free(rgba);
    png[8 + 8 + 3] ^= 1;   // a bit of IHDR's data: its CRC no longer matches
    assert_null(png_decode(png, n, &w, &h, &why));
    assert_string_equal(why, "chunk CRC mismatch");
}

// ---------------------------------------------------------------------------
// TensorBoard

// CRC-32C check values: "123456789" (the catalogue's check value) and RFC 3720's 32 zero / 32 0xFF bytes
static void test_tb_crc32c(void **state) {
    (void)state;
    unsigned char z[32] = {0}, f[32];
    memset(f, 0xFF, sizeof f);
    assert_int_equal(crc32c("123456789", 9), 0xE3069283u);
    assert_int_equal(crc32c(z, 32), 0x8A9136AAu);
    assert_int_equal(crc32c(f, 32), 0x62A8AB43u);
    assert_int_equal(crc32c("", 0), 0);
}

static uint64_t le(const unsigned char *p, int bytes) {
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static uint32_t masked(const unsigned char *p, size_t n) {
    const uint32_t c = crc32c(p, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

static uint64_t varint(const unsigned char **p, const unsigned char *end) {
    uint64_t v = 0;
    for (int s = 0; *p < end && s < 64; s += 7) {
        const unsigned char c = *(*p)++;
        v |= (uint64_t)(c & 0x7F) << s;
        if (!(c & 0x80)) break;
    }
    return v;
}

typedef struct { char tag[64]; long step; float value; } Scalar;
typedef struct { int records, has_version; size_t offset[16]; Scalar s[512]; int n; } Events;

// The fields of one protobuf message: calls back with (field, wire type, value or bytes).
typedef void (*FieldFn)(int field, int wire, uint64_t v, const unsigned char *b, size_t len, void *arg);
static int proto_fields(const unsigned char *p, size_t n, FieldFn fn, void *arg) {
    const unsigned char *end = p + n;
    while (p < end) {
        const uint64_t key = varint(&p, end);
        const int wire = (int)(key & 7), field = (int)(key >> 3);
        uint64_t v = 0, len = 0;
        if (wire == 0) v = varint(&p, end);
        else if (wire == 1 || wire == 5) { len = wire == 1 ? 8 : 4; if ((size_t)(end - p) < len) return -1; v = le(p, (int)len); }
        else if (wire == 2) { len = varint(&p, end); if ((size_t)(end - p) < len) return -1; }
        else return -1;
        fn(field, wire, v, p, (size_t)len, arg);
        p += wire == 0 ? 0 : len;
    }
    return 0;
}

typedef struct { Events *ev; long step; Scalar cur; } EventCtx;
static void value_field(int field, int wire, uint64_t v, const unsigned char *b, size_t len, void *arg) {
    EventCtx *c = arg;
    if (field == 1 && wire == 2) snprintf(c->cur.tag, sizeof c->cur.tag, "%.*s", (int)len, (const char *)b);
    if (field == 2 && wire == 5) { uint32_t u = (uint32_t)v; memcpy(&c->cur.value, &u, 4); }
}
static void summary_field(int field, int wire, uint64_t v, const unsigned char *b, size_t len, void *arg) {
    (void)v;
    EventCtx *c = arg;
    if (field != 1 || wire != 2) return;
    memset(&c->cur, 0, sizeof c->cur);
    assert_int_equal(proto_fields(b, len, value_field, c), 0);
    c->cur.step = c->step;
    if (c->ev->n < 512) c->ev->s[c->ev->n++] = c->cur;
}
static void event_field(int field, int wire, uint64_t v, const unsigned char *b, size_t len, void *arg) {
    EventCtx *c = arg;
    if (field == 2 && wire == 0) c->step = (long)v;   // before the summary: fields come in number order
    if (field == 3 && wire == 2) c->ev->has_version = len == 13 && !memcmp(b, "brain.Event:2", 13);
    if (field == 5 && wire == 2) assert_int_equal(proto_fields(b, len, summary_field, c), 0);
}

// Every TFRecord of an event file: the framing and both masked CRCs (fails
// the test naming the record), then each event's scalars.
static void read_events(const unsigned char *p, size_t n, Events *ev) {
    memset(ev, 0, sizeof *ev);
    for (size_t pos = 0; pos < n; ev->records++) {
        if (n - pos < 12) fail_msg("record %d: %zu bytes left, not a record", ev->records, n - pos);
        const uint64_t len = le(p + pos, 8);
        if ((uint32_t)le(p + pos + 8, 4) != masked(p + pos, 8)) fail_msg("record %d: length CRC mismatch", ev->records);
        if (len > n - pos - 16) fail_msg("record %d: length %llu runs past the end", ev->records, (unsigned long long)len);
        const unsigned char *data = p + pos + 12;
        if ((uint32_t)le(data + len, 4) != masked(data, len)) fail_msg("record %d: data CRC mismatch", ev->records);
        if (ev->records < 16) ev->offset[ev->records] = pos;
        EventCtx c = {.ev = ev};
        assert_int_equal(proto_fields(data, len, event_field, &c), 0);
        pos += 16 + len;
    }
}

// tests/ref/tensorboard/tf.tfevents, written by TensorBoard's own writer
// (tests/ref/make_tensorboard_fixture.py): our reader accepts its framing and
// CRCs, and our encoder gives the same bytes for each of its events.
static void test_tb_tf_fixture(void **state) {
    (void)state;
    size_t n;
    unsigned char *tf = (unsigned char *)read_text_file("tests/ref/tensorboard/tf.tfevents", &n);
    Events ev;
    read_events(tf, n, &ev);
    assert_int_equal(ev.records, 6);
    assert_true(ev.has_version);
    assert_int_equal(ev.n, 11);
    static const struct { double wall; long step; int n; const char *tags[4]; double v[4]; } cases[5] = {
        {1700000000.25, 1, 4, {"sft/loss", "sft/lr", "sft/grad_norm", "sft/tokens_per_s"}, {2.7725887, 1e-3, 0.5, 12345.5}},
        {1700000001.5, 2, 2, {"dpo/rewards/margins", "dpo/rewards/accuracies"}, {-0.125, 1.0}},
        {1700000002.0, 300, 2, {"sprec/test/NDCG@10", "sprec/test/HR@10"}, {0.0625, 0.0}},
        {1700000003.75, 0, 1, {"zero/step"}, {3.0}},
        {1700000004.0, 1099511627776L, 2, {"big/step", "tiny"}, {-1e30, 1e-40}},
    };
    for (int i = 0; i < 5; i++) {
        unsigned char *mine = NULL;
        size_t len = 0;
        tb_encode_event(&mine, &len, cases[i].wall, cases[i].step, cases[i].tags, cases[i].v, cases[i].n);
        const size_t end = i + 2 < ev.records ? ev.offset[i + 2] : n;
        assert_int_equal(len, end - ev.offset[i + 1]);
        assert_memory_equal(mine, tf + ev.offset[i + 1], len);
        free(mine);
    }
    assert_string_equal(ev.s[4].tag, "dpo/rewards/margins");
    assert_int_equal(ev.s[4].step, 2);
    assert_true(ev.s[4].value == -0.125f);
    free(tf);
}

// A run with run.tensorboard = true: every number of every train_log.jsonl
// line is the scalar sft/KEY at its step (as float), with sft/steps_per_s and
// sft/tokens_per_s for every step but the first; off by default.
static void test_tb_training_run(void **state) {
    (void)state;
    run_ok("rm -rf " TMP "/tb && mkdir -p " TMP "/tb && build/sprec toydata -o " TMP "/tb/d.h5 --rows 16 --seq 16 --vocab 16 --seed 3 >/dev/null");
    write_file(TMP "/tb/t.ini", "[model]\nvocab_size = 16\ndim = 16\nn_layers = 1\nn_heads = 2\nn_kv_heads = 1\nffn_dim = 32\n"
               "max_seq_len = 16\n[train]\nmax_steps = 12\nbatch_size = 4\n[data]\ntrain = " TMP "/tb/d.h5\n");
    run_ok("build/sprec train " TMP "/tb/t.ini --run.out_dir=" TMP "/tb/on --run.tensorboard=true >/dev/null");
    run_ok("build/sprec train " TMP "/tb/t.ini --run.out_dir=" TMP "/tb/off >/dev/null");
    assert_int_not_equal(access(TMP "/tb/off/tensorboard", F_OK), 0);
    char path[1024];
    assert_int_equal(run_capture("ls " TMP "/tb/on/tensorboard/events.out.tfevents.* | head -1 | tr -d '\\n'", path, sizeof path), 0);
    size_t n;
    unsigned char *p = (unsigned char *)read_text_file(path, &n);
    Events ev;
    read_events(p, n, &ev);
    free(p);
    assert_true(ev.has_version);
    int lines = 0, matched = 0, rates = 0;
    char *log = read_text_file(TMP "/tb/on/train_log.jsonl", NULL);
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n"), lines++) {
        long step = atol(strstr(line, "\"step\": ") + 8);
        static const char *keys[] = {"loss", "lr", "grad_norm", "scored"};
        for (int k = 0; k < 4; k++) {
            char pat[32], tag[32];
            snprintf(pat, sizeof pat, "\"%s\": ", keys[k]);
            snprintf(tag, sizeof tag, "sft/%s", keys[k]);
            const float want = (float)strtod(strstr(line, pat) + strlen(pat), NULL);
            for (int i = 0; i < ev.n; i++)
                if (ev.s[i].step == step && !strcmp(ev.s[i].tag, tag)) { matched += ev.s[i].value == want; break; }
        }
    }
    for (int i = 0; i < ev.n; i++)
        rates += (!strcmp(ev.s[i].tag, "sft/steps_per_s") || !strcmp(ev.s[i].tag, "sft/tokens_per_s")) && ev.s[i].value > 0;
    free(log);
    print_message("  %d log lines: %d of %d values equal in the events; %d positive rates\n", lines, matched, 4 * lines, rates);
    assert_int_equal(lines, 12);
    assert_int_equal(matched, 4 * lines);
    assert_int_equal(rates, 2 * (lines - 1));
}

DEFINE_TEST_GROUP(test_logs,
    cmocka_unit_test(test_png_reader),
    cmocka_unit_test(test_plot_png),
    cmocka_unit_test(test_tb_crc32c),
    cmocka_unit_test(test_tb_tf_fixture),
    cmocka_unit_test(test_tb_training_run),
)
