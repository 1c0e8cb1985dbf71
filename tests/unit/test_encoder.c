// The sentence encoder (host/model/encoder.c, host/io/encoder/encoder_file.c,
// host/io/encoder/onnx.c) and the paper evaluation's text rule (host/rec/paper_eval.c).
// Oracles: double-precision loops written here for the three forward ops;
// sentence-transformers and onnxruntime embeddings of a tiny random BERT
// (tests/ref/encoder/, made by tests/ref/make_encoder_fixtures.py).
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <cJSON.h>
#include "tests.h"
#include "kernels/backend.h"
#include "model/encoder.h"
#include "io/encoder/encoder_file.h"
#include "rec/paper_eval.h"
#include "rec/grounding.h"
#include "rec/recdata.h"
#include "base/h5io.h"

#define FIX "tests/ref/encoder"
#define TMP "build/test-tmp/encoder"

static uint64_t lcg = 777;
static float frand(void) {   // [-1, 1)
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((lcg >> 11) * 0x1.0p-53) * 2.0f - 1.0f;
}

// ---- the ops against double loops -------------------------------------------------

static void test_encoder_ops(void **state) {
    (void)state;
    // (the cpu-checked wrappers run in a child process, test_encoder_checkpoint_roundtrip: the checked backend
    // installs its SIGSEGV handler once per process, and test_device_check needs it installed there first)
    {
        const Backend *be = backend_cpu();
        // LayerNorm: rows with a large offset and a small spread (the variance must not cancel)
        enum { N = 5, C = 24 };
        float x[N * C], w[C], b[C], y[N * C];
        for (int i = 0; i < N * C; i++) x[i] = 1000.0f * (i / C == 2) + frand();
        for (int c = 0; c < C; c++) { w[c] = 1 + 0.3f * frand(); b[c] = 0.5f * frand(); }
        float *dx = be->alloc(sizeof x), *dw = be->alloc(sizeof w), *db = be->alloc(sizeof b);
        be->upload(dx, x, sizeof x); be->upload(dw, w, sizeof w); be->upload(db, b, sizeof b);
        be->layernorm_fwd(dx, dx, dw, db, 1e-12f, N, C);   // in place, as the encoder calls it
        be->download(y, dx, sizeof y);
        for (int n = 0; n < N; n++) {
            double mean = 0, var = 0;
            for (int c = 0; c < C; c++) mean += x[n * C + c];
            mean /= C;
            for (int c = 0; c < C; c++) var += (x[n * C + c] - mean) * (x[n * C + c] - mean);
            var /= C;
            for (int c = 0; c < C; c++) {
                const double ref = (x[n * C + c] - mean) / sqrt(var + 1e-12) * w[c] + b[c];
                assert_true(fabs(y[n * C + c] - ref) <= 2e-6 * (1 + fabs(ref)));
            }
        }
        be->free(dx); be->free(dw); be->free(db);

        // GELU (erf form): a few hand values and a sweep against erf in double
        float g[9] = {-6, -3, -1, -0.5f, 0, 0.5f, 1, 3, 6}, go[9];
        float *dg = be->alloc(sizeof g);
        be->upload(dg, g, sizeof g);
        be->gelu_fwd(dg, dg, 9);
        be->download(go, dg, sizeof go);
        for (int i = 0; i < 9; i++) {
            const double ref = 0.5 * g[i] * (1 + erf(g[i] / sqrt(2.0)));
            assert_true(fabs(go[i] - ref) <= 1e-6 * (1 + fabs(ref)));
        }
        assert_true(fabs(go[6] - 0.841344746) < 1e-6);   // gelu(1) = Phi(1)
        be->free(dg);

        // bidirectional attention: every key of the sequence, none of the padding
        enum { B = 3, T = 6, NH = 2, D = 4 };
        const int len[B] = {6, 3, 1};
        float q[B * T * NH * D], kk[B * T * NH * D], v[B * T * NH * D], o[B * T * NH * D], o2[B * T * NH * D];
        for (int i = 0; i < B * T * NH * D; i++) { q[i] = 2 * frand(); kk[i] = 2 * frand(); v[i] = frand(); }
        const size_t bytes = sizeof q;
        float *dq = be->alloc(bytes), *dk = be->alloc(bytes), *dv = be->alloc(bytes), *dout = be->alloc(bytes);
        int *dl = be->alloc(sizeof len);
        be->upload(dq, q, bytes); be->upload(dk, kk, bytes); be->upload(dv, v, bytes); be->upload(dl, len, sizeof len);
        be->attention_bidir_fwd(dout, dq, dk, dv, dl, B, T, NH, D);
        be->download(o, dout, bytes);
        for (int bb = 0; bb < B; bb++)
            for (int t = 0; t < T; t++)
                for (int h = 0; h < NH; h++) {
                    const float *orow = o + ((bb * T + t) * NH + h) * D;
                    if (t >= len[bb]) {
                        for (int d = 0; d < D; d++) assert_true(orow[d] == 0.0f);
                        continue;
                    }
                    double s[T], mx = -1e300, z = 0;
                    for (int j = 0; j < len[bb]; j++) {
                        s[j] = 0;
                        for (int d = 0; d < D; d++)
                            s[j] += (double)q[((bb * T + t) * NH + h) * D + d] * kk[((bb * T + j) * NH + h) * D + d];
                        s[j] /= sqrt((double)D);
                        mx = s[j] > mx ? s[j] : mx;
                    }
                    for (int j = 0; j < len[bb]; j++) z += exp(s[j] - mx);
                    for (int d = 0; d < D; d++) {
                        double ref = 0;
                        for (int j = 0; j < len[bb]; j++) ref += exp(s[j] - mx) / z * v[((bb * T + j) * NH + h) * D + d];
                        assert_true(fabs(orow[d] - ref) <= 2e-6);
                    }
                }
        // padding keys and values do not matter
        for (int i = 0; i < B * T * NH * D; i++)
            if ((i / (NH * D)) % T >= len[i / (T * NH * D)]) { kk[i] = 50; v[i] = -50; }
        be->upload(dk, kk, bytes); be->upload(dv, v, bytes);
        be->attention_bidir_fwd(dout, dq, dk, dv, dl, B, T, NH, D);
        be->download(o2, dout, bytes);
        assert_memory_equal(o, o2, bytes);
        be->free(dq); be->free(dk); be->free(dv); be->free(dout); be->free(dl);
    }
}

// ---- the model against sentence-transformers and onnxruntime --------------------------

typedef struct { int n, dim; char **texts; int **ids; int *lens; float *st, *ort; } Expected;

static void read_expected(Expected *x) {
    char *text = read_text_file(FIX "/expected.json", NULL);
    cJSON *j = cJSON_Parse(text);
    assert_non_null(j);
    const cJSON *texts = cJSON_GetObjectItem(j, "texts"), *ids = cJSON_GetObjectItem(j, "ids");
    const cJSON *st = cJSON_GetObjectItem(j, "st"), *ort = cJSON_GetObjectItem(j, "ort");
    x->n = cJSON_GetArraySize(texts);
    x->dim = cJSON_GetArraySize(cJSON_GetArrayItem(st, 0));
    x->texts = calloc((size_t)x->n, sizeof(char *));
    x->ids = calloc((size_t)x->n, sizeof(int *));
    x->lens = calloc((size_t)x->n, sizeof(int));
    x->st = calloc((size_t)x->n * x->dim, sizeof(float));
    x->ort = calloc((size_t)x->n * x->dim, sizeof(float));
    for (int i = 0; i < x->n; i++) {
        x->texts[i] = strdup(cJSON_GetArrayItem(texts, i)->valuestring);
        const cJSON *row = cJSON_GetArrayItem(ids, i);
        x->lens[i] = cJSON_GetArraySize(row);
        x->ids[i] = calloc((size_t)x->lens[i], sizeof(int));
        for (int t = 0; t < x->lens[i]; t++) x->ids[i][t] = cJSON_GetArrayItem(row, t)->valueint;
        for (int c = 0; c < x->dim; c++) {
            x->st[i * x->dim + c] = (float)cJSON_GetArrayItem(cJSON_GetArrayItem(st, i), c)->valuedouble;
            x->ort[i * x->dim + c] = (float)cJSON_GetArrayItem(cJSON_GetArrayItem(ort, i), c)->valuedouble;
        }
    }
    cJSON_Delete(j);
    free(text);
}

static void free_expected(Expected *x) {
    for (int i = 0; i < x->n; i++) { free(x->texts[i]); free(x->ids[i]); }
    free(x->texts); free(x->ids); free(x->lens); free(x->st); free(x->ort);
}

// max over rows of ||got - want|| / ||want||
static double max_rel_err(const float *got, const float *want, int n, int dim) {
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double num = 0, den = 0;
        for (int c = 0; c < dim; c++) {
            const double d = (double)got[i * dim + c] - want[i * dim + c];
            num += d * d;
            den += (double)want[i * dim + c] * want[i * dim + c];
        }
        const double r = sqrt(num / den);
        worst = r > worst ? r : worst;
    }
    return worst;
}

static void embed_fixture(Encoder *e, const Expected *x, float *out) {
    encoder_to_device(e, backend_cpu());
    encoder_embed_ids(e, (const int *const *)x->ids, x->lens, x->n, out);
}

static void test_encoder_matches_references(void **state) {
    (void)state;
    Expected x;
    read_expected(&x);
    Encoder hf, ox;
    encoder_import_hf(&hf, FIX "/bert", 128);
    encoder_import_onnx(&ox, FIX "/bert.onnx", FIX "/bert/tokenizer.json", 24);
    // the config: from config.json + sentence_bert_config.json, and found in the ONNX graph
    assert_int_equal(hf.cfg.n_heads, 4);
    assert_int_equal(ox.cfg.n_heads, 4);
    assert_int_equal(hf.cfg.max_tokens, 24);
    assert_true(hf.cfg.eps == 1e-12f && ox.cfg.eps == 1e-12f);
    assert_int_equal(ox.cfg.n_layers, 2);
    assert_int_equal(ox.cfg.ffn_dim, 64);
    // the same weights from both files (the ONNX matrices transposed back)
    assert_int_equal(hf.numel, ox.numel);
    assert_memory_equal(hf.host, ox.host, hf.numel * sizeof(float));
    float *got = calloc((size_t)x.n * x.dim, sizeof(float));
    embed_fixture(&hf, &x, got);
    const double e_st = max_rel_err(got, x.st, x.n, x.dim);
    embed_fixture(&ox, &x, got);
    const double e_ort = max_rel_err(got, x.ort, x.n, x.dim);
    print_message("encoder vs sentence-transformers %.2e, vs onnxruntime %.2e (%d texts)\n", e_st, e_ort, x.n);
    assert_true(e_st <= 1e-5);
    assert_true(e_ort <= 1e-5);
    // the texts through the C WordPiece tokenizer: the same ids (truncation included), the same embeddings
    for (int i = 0; i < x.n; i++) {
        int *ids, n = encoder_tokenize(&hf, x.texts[i], strlen(x.texts[i]), &ids);
        assert_int_equal(n, x.lens[i]);
        assert_memory_equal(ids, x.ids[i], (size_t)n * sizeof(int));
        free(ids);
    }
    encoder_embed_texts(&hf, (const char *const *)x.texts, x.n, got);
    assert_true(max_rel_err(got, x.st, x.n, x.dim) <= 1e-5);
    // one sequence alone equals the same sequence in a padded batch
    float one[64];
    const int last = x.n - 1;
    encoder_embed_ids(&ox, (const int *const *)&x.ids[last], &x.lens[last], 1, one);
    for (int c = 0; c < x.dim; c++) assert_true(fabs(one[c] - got[last * x.dim + c]) <= 1e-6 * (1 + fabs(one[c])));
    free(got);
    encoder_free(&hf);
    encoder_free(&ox);
    free_expected(&x);
}

// import -> checkpoint -> load gives the same encoder, bit for bit, through the (sanitized) CLI
static void test_encoder_checkpoint_roundtrip(void **state) {
    (void)state;
    run_ok("rm -rf " TMP " && mkdir -p " TMP);
    run_ok(SPREC_CHECKED " import " FIX "/bert.onnx --tokenizer " FIX "/bert/tokenizer.json --max-tokens 24 -o "
           TMP "/onnx.h5");
    run_ok(SPREC_CHECKED " import " FIX "/bert -o " TMP "/st.h5");
    Encoder a, b, ref;
    encoder_load(TMP "/onnx.h5", &a);
    encoder_load(TMP "/st.h5", &b);
    encoder_import_hf(&ref, FIX "/bert", 128);
    assert_memory_equal(&a.cfg, &ref.cfg, sizeof a.cfg);
    assert_memory_equal(&b.cfg, &ref.cfg, sizeof b.cfg);
    assert_memory_equal(a.host, ref.host, ref.numel * sizeof(float));
    assert_memory_equal(b.host, ref.host, ref.numel * sizeof(float));
    assert_true(a.tokenizer_json_len == ref.tokenizer_json_len &&
                !memcmp(a.tokenizer_json, ref.tokenizer_json, ref.tokenizer_json_len));
    assert_true(encoder_fingerprint(&a) == encoder_fingerprint(&ref));
    ref.host[3] += 1e-3f;   // any weight changes the fingerprint
    assert_true(encoder_fingerprint(&a) != encoder_fingerprint(&ref));
    assert_true(encoder_file_is(TMP "/onnx.h5"));
    encoder_free(&a); encoder_free(&b); encoder_free(&ref);
    // sprec embed --ids: one JSON array per line, the fixture's values
    Expected x;
    read_expected(&x);
    FILE *f = fopen(TMP "/ids.txt", "w");
    for (int i = 0; i < 3; i++) {
        for (int t = 0; t < x.lens[i]; t++) fprintf(f, t ? " %d" : "%d", x.ids[i][t]);
        fputc('\n', f);
    }
    fclose(f);
    char out[65536];
    assert_int_equal(run_capture(SPREC_CHECKED " embed --model " TMP "/onnx.h5 --ids < " TMP "/ids.txt", out,
                                 sizeof out), 0);
    char *p = out;
    for (int i = 0; i < 3; i++) {
        assert_true(*p == '[');
        p++;
        for (int c = 0; c < x.dim; c++) {
            char *end;
            const double v = strtod(p, &end);
            assert_true(end != p && fabs(v - x.ort[i * x.dim + c]) <= 1e-5 * (1 + fabs(v)));
            p = end + (c + 1 < x.dim ? 2 : 0);   // ", "
        }
        assert_true(p[0] == ']' && p[1] == '\n');
        p += 2;
    }
    assert_non_null(strstr(p, "embed: 3 lines in "));   // and the timing line on stderr
    // the same bytes through the device-checked backend (the encoder's ops behind its device-memory checks)
    char out2[65536];
    assert_int_equal(run_capture(SPREC_CHECKED " embed --model " TMP "/onnx.h5 --ids --device cpu-checked < " TMP
                                 "/ids.txt", out2, sizeof out2), 0);
    assert_true(!strncmp(out, out2, (size_t)(p - out)));
    free_expected(&x);
}

static void test_encoder_bad_input(void **state) {
    (void)state;
    run_ok("mkdir -p " TMP);
    // a truncated ONNX file, a file that is not ONNX, no tokenizer for an ONNX file
    run_ok("head -c 60000 " FIX "/bert.onnx > " TMP "/cut.onnx && printf 'hello' > " TMP "/text.onnx");
    expect_error(SPREC_CHECKED " import " TMP "/cut.onnx --tokenizer " FIX "/bert/tokenizer.json -o " TMP "/x.h5",
                 "cut.onnx", "malformed ONNX");
    expect_error(SPREC_CHECKED " import " TMP "/text.onnx --tokenizer " FIX "/bert/tokenizer.json -o " TMP "/x.h5",
                 "text.onnx", NULL);
    expect_error(SPREC_CHECKED " import " FIX "/bert.onnx -o " TMP "/x.h5", "--tokenizer", NULL);
    expect_error(SPREC_CHECKED " import " FIX "/bert.onnx --tokenizer " FIX "/bert/tokenizer.json --max-tokens 1 -o "
                 TMP "/x.h5", "--max-tokens", NULL);
    // a folder whose safetensors lacks a tensor
    run_ok("rm -rf " TMP "/bad && mkdir -p " TMP "/bad && cp " FIX "/bert/* " TMP "/bad/");
    run_ok("sed -i 's/\"num_hidden_layers\": 2/\"num_hidden_layers\": 3/' " TMP "/bad/config.json");
    expect_error(SPREC_CHECKED " import " TMP "/bad -o " TMP "/x.h5", "encoder.layer.2", "missing");
    // a Llama checkpoint is not an encoder; an id outside the vocabulary
    run_ok(SPREC_CHECKED " import " FIX "/bert -o " TMP "/st.h5");
    run_ok("printf 'x' > " TMP "/notenc.h5");
    expect_error(SPREC_CHECKED " embed --model " TMP "/notenc.h5 < /dev/null", "notenc.h5", NULL);
    expect_error("printf '2 100000 3\\n' | " SPREC_CHECKED " embed --model " TMP "/st.h5 --ids", "100000",
                 "outside the vocabulary");
    expect_error("printf '2 x 3\\n' | " SPREC_CHECKED " embed --model " TMP "/st.h5 --ids", "line 1", NULL);
    // the encoder refuses a backend without its ops or with bf16 activations
    expect_error("printf '2 3\\n' | " SPREC_CHECKED " embed --model " TMP "/st.h5 --ids --device cpu-bf16", "fp32",
                 NULL);
    // eval.mode = paper without an encoder: a config error before anything runs
    write_file(TMP "/p.ini", "[eval]\nmode = paper\n");
    expect_error(SPREC_CHECKED " eval " TMP "/p.ini --model x.h5", "[eval] encoder", NULL);
}

// ---- the reference's text rule --------------------------------------------------------

static void check_title(const char *text, const char *want) {
    char *t = paper_title(text, strlen(text));
    if (strcmp(t, want)) print_message("paper_title(\"%s\") = \"%s\", want \"%s\"\n", text, t, want);
    assert_string_equal(t, want);
    free(t);
}

static void test_paper_title_rule(void **state) {
    (void)state;
    check_title("\"The Silver River\"\n", "The Silver River");
    check_title("\"The Silver River\" and \"Other\"", "The Silver River");   // the first match
    check_title("I recommend \"Dune\", a classic", "Dune");
    check_title("\"Unclosed title\nsecond line", "Unclosed title\nsecond line");   // closing quote optional
    check_title("No quotes here\nsecond line", "No quotes here");                   // else the first line
    check_title("no newline at all", "no newline at all");
    check_title("", "NAN");
    check_title("\n\"late\"", "late");
    check_title("\"\"", "NAN");            // an empty match
    check_title("\nsecond", "NAN");        // an empty first line
}

// decoding: special tokens skipped, bytes outside valid UTF-8 replaced by U+FFFD (the GPT-2 byte tokens)
static void test_paper_text_decoding(void **state) {
    (void)state;
    size_t len;
    char *json = read_gz("tests/ref/tokenizer/gpt2.tokenizer.json.gz", &len);
    Tokenizer *tok = tokenizer_from_json(json, len, NULL, 0, "gpt2");
    int ids[4], n = 0;
    ids[n++] = tokenizer_token_id(tok, "\"");
    ids[n++] = tokenizer_token_id(tok, "\xc3\xa2");   // the byte 0xE2: a 3-byte sequence cut short
    ids[n++] = tokenizer_token_id(tok, "<|endoftext|>");
    ids[n++] = tokenizer_token_id(tok, "A");
    for (int i = 0; i < n; i++) assert_true(ids[i] >= 0);
    char *t = paper_text(tok, ids, n);
    assert_string_equal(t, "\"\xef\xbf\xbd" "A");
    free(t);
    tokenizer_free(tok);
    free(json);
}

// ---- sprec eval --eval.mode=paper on a synthetic world ---------------------------------

// the demo's tokenizer (the SmolLM2 stand-in) and a smaller world; the model is random (sprec init, no tokenizer
// of its own: the generations are decoded with [data] tokenizer; init_std 1 so that they vary from row to row),
// the encoder the fixture BERT
static const char *const PAPER_INI =
    "[model]\nvocab_size = 2504\ndim = 16\nn_layers = 1\nn_heads = 2\nn_kv_heads = 1\nffn_dim = 32\n"
    "max_seq_len = 512\nseed = 5\ninit_std = 1.0\n"
    "[data]\nsource = synthetic\nsynth_items = 30\nsynth_users = 100\nvalid_rows = 10\ntest_rows = 40\nseed = 3\n"
    "dataset = " TMP "/ds.h5\ntokenizer = " TMP "/smollm2.json\n"
    "[run]\nout_dir = " TMP "/run\n"
    "[eval]\nmodel = " TMP "/model.h5\nks = 1,5,10\nbatch = 4\nmax_rows = 6\nmode = paper\nencoder = " TMP "/enc.h5\n";

static char *paper_eval_run(const char *needle) {
    char out[16384];
    const char *cmd = "build/sprec eval " TMP "/p.ini -o " TMP "/run";
    const int rc = run_capture(cmd, out, sizeof out);
    if (rc != 0 || !strstr(out, needle)) print_message("%s\nexit %d:\n%s\n(wanted '%s')\n", cmd, rc, out, needle);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, needle));
    return read_text_file(TMP "/run/topk-test.jsonl", NULL);
}

static void test_paper_eval_end_to_end(void **state) {
    (void)state;
    char out[4096];
    run_ok("rm -rf " TMP " && mkdir -p " TMP " && gzip -dc tests/ref/tokenizer/smollm2.tokenizer.json.gz > " TMP
           "/smollm2.json");
    write_file(TMP "/p.ini", PAPER_INI);
    run_ok("build/sprec prepare " TMP "/p.ini");
    run_ok("build/sprec init " TMP "/p.ini -o " TMP "/model.h5");
    run_ok("build/sprec import " FIX "/bert -o " TMP "/enc.h5");
    char *first = paper_eval_run("and cached in");
    char *second = paper_eval_run("reused from the cache");
    assert_string_equal(first, second);   // the cached catalogue embeddings give the same lists

    // every line: title = the text rule on the decoded generation; ranked = a brute-force float64 L2 ranking of
    // the encoder's embeddings of that title and of every catalogue title (ties to the lower id)
    RecData d;
    recdata_load(&d, TMP "/ds.h5");
    Encoder e;
    encoder_load(TMP "/enc.h5", &e);
    encoder_to_device(&e, backend_cpu());
    const int C = e.cfg.dim, n = d.n_items;
    float *cat = malloc((size_t)n * C * sizeof(float)), q[64];
    encoder_embed_texts(&e, (const char *const *)d.titles, n, cat);
    size_t tl;
    char *tj = read_text_file(TMP "/smollm2.json", &tl);
    Tokenizer *tok = tokenizer_from_json(tj, tl, NULL, 0, "smollm2");
    int lines = 0, distinct = 0;
    char prev[256] = "";
    for (char *line = first, *nl; (nl = strchr(line, '\n')); line = nl + 1, lines++) {
        *nl = '\0';
        cJSON *j = cJSON_Parse(line);
        assert_non_null(j);
        const cJSON *gi = cJSON_GetObjectItem(j, "generated_ids"), *ranked = cJSON_GetObjectItem(j, "ranked");
        const char *title = cJSON_GetObjectItem(j, "title")->valuestring;
        int ids[64], k = cJSON_GetArraySize(gi);
        assert_true(k >= 1 && k <= PAPER_MAX_NEW_TOKENS);
        for (int i = 0; i < k; i++) ids[i] = cJSON_GetArrayItem(gi, i)->valueint;
        char *text = paper_text(tok, ids, k), *want = paper_title(text, strlen(text));
        assert_string_equal(title, want);
        distinct += strcmp(prev, title) != 0;
        snprintf(prev, sizeof prev, "%s", title);
        encoder_embed_texts(&e, &title, 1, q);
        double dist[64];
        int order[64];
        for (int i = 0; i < n; i++) {
            dist[i] = 0;
            for (int c = 0; c < C; c++) dist[i] += ((double)cat[i * C + c] - q[c]) * ((double)cat[i * C + c] - q[c]);
            order[i] = i;
        }
        for (int a = 1; a < n; a++)   // insertion sort: distance, then id
            for (int b = a; b > 0 && (dist[order[b]] < dist[order[b - 1]] ||
                                      (dist[order[b]] == dist[order[b - 1]] && order[b] < order[b - 1])); b--) {
                const int t = order[b]; order[b] = order[b - 1]; order[b - 1] = t;
            }
        assert_int_equal(cJSON_GetArraySize(ranked), 10);
        for (int r = 0; r < 10; r++) assert_int_equal(cJSON_GetArrayItem(ranked, r)->valueint, order[r]);
        free(text); free(want);
        cJSON_Delete(j);
    }
    assert_int_equal(lines, 6);
    assert_true(distinct >= 4);   // real texts, not one repeated title
    // the cache group: [30, 32] under /grounding/paper-FP, its fingerprint in its name
    hid_t f = h5_open_read(TMP "/ds.h5");
    int ng;
    char **names = h5_list(f, TMP "/ds.h5", "grounding", &ng);
    assert_int_equal(ng, 1);
    assert_true(!strncmp(names[0], "paper-", 6));
    char ds[128];
    long dims[8];
    snprintf(ds, sizeof ds, "grounding/%s/embeddings", names[0]);
    assert_int_equal(h5_shape(f, TMP "/ds.h5", ds, dims), 2);
    assert_true(dims[0] == n && dims[1] == C);
    h5_list_free(names, ng);
    h5_close(f);
    assert_int_equal(run_capture("grep -c '\"label\"' " TMP "/run/metrics.jsonl", out, sizeof out), 0);
    assert_int_equal(atoi(out), 2);
    tokenizer_free(tok);
    free(tj); free(cat); free(first); free(second);
    encoder_free(&e);
    recdata_free(&d);
}

DEFINE_TEST_GROUP(test_encoder,
    cmocka_unit_test(test_encoder_ops),
    cmocka_unit_test(test_encoder_matches_references),
    cmocka_unit_test(test_encoder_checkpoint_roundtrip),
    cmocka_unit_test(test_encoder_bad_input),
    cmocka_unit_test(test_paper_title_rule),
    cmocka_unit_test(test_paper_text_decoding),
    cmocka_unit_test(test_paper_eval_end_to_end),
)
