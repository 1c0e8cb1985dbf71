// Tokenizer against Hugging Face tokenizers on tests/ref/tokenizer/ (made by
// tests/ref/make_tokenizer_fixtures.py): identical ids with and without
// special tokens for every corpus string, identical decode, round trips,
// invalid UTF-8, and one-line errors for malformed tokenizer.json files. The
// dataset titles are read from ../shared/data at run time and checked against
// committed hashes of HF's ids (the fixtures hold no dataset text). BERT's
// WordPiece also on truncation, its character rules and a bare vocab.txt.
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cJSON.h>
#include "tests.h"
#include "tokenizer/tokenizer.h"

#define FIXDIR "tests/ref/tokenizer/"
#define DATADIR "../shared/data/"


// Splits text into lines in place.
static int split_lines(char *text, char ***lines) {
    int n = 0, cap = 1024;
    *lines = malloc(cap * sizeof(char *));
    for (char *s = text; *s;) {
        char *e = strchr(s, '\n');
        if (e) *e = 0;
        if (n == cap) *lines = realloc(*lines, (cap *= 2) * sizeof(char *));
        (*lines)[n++] = s;
        if (!e) break;
        s = e + 1;
    }
    return n;
}

static int parse_ids(const char *s, const char *end, int *out) {
    int n = 0;
    while (s < end) {
        char *e;
        long v = strtol(s, &e, 10);
        if (e == s) break;
        out[n++] = (int)v;
        s = e;
    }
    return n;
}

static Tokenizer *load_fixture(const char *name) {
    char path[256];
    snprintf(path, sizeof path, FIXDIR "%s.tokenizer.json.gz", name);
    size_t len;
    char *json = read_gz(path, &len);
    Tokenizer *t = tokenizer_from_json(json, len, NULL, 0, path);
    free(json);
    return t;
}

static char *print_ids(const int *ids, int n) {
    static char buf[8192];
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < n && k < sizeof buf - 16; i++) k += (size_t)snprintf(buf + k, sizeof buf - k, "%d ", ids[i]);
    return buf;
}

// Every corpus string, with and without special tokens: ids equal HF's, and
// decode equals HF's decode. Where that is the string itself (the fixture says
// null: every string for byte-level BPE unless NFC changes it) this is the
// decode(encode(s)) == s round trip.
static void check_case(const char *name) {
    Tokenizer *t = load_fixture(name);
    char path[256], **corpus, **idl, **decl;
    char *ctext = read_gz(FIXDIR "corpus.jsonl.gz", NULL);
    snprintf(path, sizeof path, FIXDIR "%s.ids.gz", name);
    char *itext = read_gz(path, NULL);
    snprintf(path, sizeof path, FIXDIR "%s.decode.gz", name);
    char *dtext = read_gz(path, NULL);
    int n = split_lines(ctext, &corpus);
    assert_int_equal(split_lines(itext, &idl), n);
    assert_int_equal(split_lines(dtext, &decl), n);
    assert_true(n >= 2000);
    static int want[2][65536];
    int bad = 0;
    for (int i = 0; i < n; i++) {
        cJSON *js = cJSON_Parse(corpus[i]), *dj = cJSON_Parse(decl[i]);
        assert_true(cJSON_IsString(js));
        const char *s = js->valuestring, *bar = strchr(idl[i], '|');
        assert_non_null(bar);
        int nw[2] = {parse_ids(idl[i], bar, want[0]), parse_ids(bar + 1, bar + strlen(bar), want[1])};
        for (int sp = 0; sp < 2; sp++) {
            int *ids, k = tokenizer_encode(t, s, strlen(s), sp, &ids);
            if (k != nw[sp] || memcmp(ids, want[sp], (size_t)k * sizeof(int))) {
                if (bad++ < 5) {
                    fprintf(stderr, "%s: line %d special=%d %s\n  got  %s\n", name, i + 1, sp, corpus[i], print_ids(ids, k));
                    fprintf(stderr, "  want %s\n", print_ids(want[sp], nw[sp]));
                }
            } else {   // decode as HF does (null in the fixture: equal to the string)
                const cJSON *exp = cJSON_GetArrayItem(dj, sp);
                const char *e = cJSON_IsString(exp) ? exp->valuestring : s;
                size_t dl;
                char *d = tokenizer_decode(t, ids, k, sp, &dl);
                if ((dl != strlen(e) || memcmp(d, e, dl)) && bad++ < 5)
                    fprintf(stderr, "%s: line %d decode(special=%d) '%s' != '%s'\n", name, i + 1, sp, d, e);
                free(d);
            }
            free(ids);
        }
        cJSON_Delete(js);
        cJSON_Delete(dj);
    }
    if (bad) fprintf(stderr, "%s: %d mismatches in %d strings\n", name, bad, n);
    assert_int_equal(bad, 0);
    free(corpus); free(idl); free(decl);
    free(ctext); free(itext); free(dtext);
    tokenizer_free(t);
}

static void test_tok_gpt2(void **state) { (void)state; check_case("gpt2"); }
static void test_tok_llama3(void **state) { (void)state; check_case("llama3"); }
static void test_tok_smollm2(void **state) { (void)state; check_case("smollm2"); }
static void test_tok_qwen2(void **state) { (void)state; check_case("qwen2"); }
// SentencePiece: a chunk after a special token gets its own "▁" (as in HF), so
// strings with special tokens do not round-trip exactly; the fixture has HF's decode
static void test_tok_sentencepiece(void **state) { (void)state; check_case("sp"); }
static void test_tok_metaspace(void **state) { (void)state; check_case("sp_metaspace"); }
// BERT uncased WordPiece (MiniLM's tokenizer.json, 30,522 tokens): decode is HF's (lowercased, accents gone)
static void test_tok_bert(void **state) { (void)state; check_case("bert"); }

// variants.jsonl.gz: a base fixture with top-level keys replaced (other
// pre-tokenizers, Split behaviours, Metaspace schemes, Bert post-processor),
// ids and decode from HF on a subset of the corpus
static void test_tok_variants(void **state) {
    (void)state;
    char *ctext = read_gz(FIXDIR "corpus.jsonl.gz", NULL), *vtext = read_gz(FIXDIR "variants.jsonl.gz", NULL);
    char **corpus, **vl;
    int nc = split_lines(ctext, &corpus), nv = split_lines(vtext, &vl), bad = 0;
    assert_true(nv >= 14);
    for (int v = 0; v < nv; v++) {
        if (!*vl[v]) continue;
        cJSON *var = cJSON_Parse(vl[v]), *e;
        assert_non_null(var);
        const char *name = cJSON_GetObjectItem(var, "name")->valuestring;
        char path[256];
        snprintf(path, sizeof path, FIXDIR "%s.tokenizer.json.gz", cJSON_GetObjectItem(var, "base")->valuestring);
        size_t len;
        char *json = read_gz(path, &len);
        cJSON *root = cJSON_ParseWithLength(json, len);
        free(json);
        cJSON_ArrayForEach(e, cJSON_GetObjectItem(var, "override"))
            cJSON_ReplaceItemInObject(root, e->string, cJSON_Duplicate(e, 1));
        char *text = cJSON_PrintUnformatted(root);
        Tokenizer *t = tokenizer_from_json(text, strlen(text), NULL, 0, name);
        const cJSON *idx = cJSON_GetObjectItem(var, "idx"), *ids = cJSON_GetObjectItem(var, "ids"), *dec = cJSON_GetObjectItem(var, "decode");
        for (int k = 0; k < cJSON_GetArraySize(idx); k++) {
            int i = cJSON_GetArrayItem(idx, k)->valueint;
            assert_true(i < nc);
            cJSON *js = cJSON_Parse(corpus[i]);
            const char *str = js->valuestring;
            for (int sp = 0; sp < 2; sp++) {
                const cJSON *want = cJSON_GetArrayItem(cJSON_GetArrayItem(ids, k), sp);
                int *got, n = tokenizer_encode(t, str, strlen(str), sp, &got), ok = n == cJSON_GetArraySize(want);
                for (int j = 0; ok && j < n; j++) ok = got[j] == cJSON_GetArrayItem(want, j)->valueint;
                if (!ok && bad++ < 5) fprintf(stderr, "%s: %s special=%d: got %s\n", name, corpus[i], sp, print_ids(got, n));
                if (ok && sp == 0) {
                    const cJSON *d = cJSON_GetArrayItem(dec, k);
                    const char *exp = cJSON_IsString(d) ? d->valuestring : str;
                    char *out = tokenizer_decode(t, got, n, 0, NULL);
                    if (strcmp(out, exp) && bad++ < 5) fprintf(stderr, "%s: decode '%s' != '%s'\n", name, out, exp);
                    free(out);
                }
                free(got);
            }
            cJSON_Delete(js);
        }
        tokenizer_free(t);
        free(text);
        cJSON_Delete(root);
        cJSON_Delete(var);
    }
    assert_int_equal(bad, 0);
    free(corpus); free(vl); free(ctext); free(vtext);
}

// FNV-1a, 64 bits (as fnv1a64 in make_tokenizer_fixtures.py)
static uint64_t fnv1a64(const unsigned char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

// ids hashed as little-endian int32 bytes, whatever the host's byte order
static uint64_t hash_ids(const int *ids, int n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int i = 0; i < n; i++)
        for (int b = 0; b < 4; b++) h = (h ^ (((uint32_t)ids[i] >> (8 * b)) & 0xff)) * 0x100000001b3ULL;
    return h;
}

// Whole file, NUL-terminated; NULL when it cannot be opened.
static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t n = 0, cap = 1 << 16, r;
    char *buf = malloc(cap);
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0)
        if ((n += r) + 1 == cap) buf = realloc(buf, cap *= 2);
    fclose(f);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

// One CSV field from *pp, as Python's csv module reads it: a field starting
// with '"' is quoted, where "" is a quote and commas and line breaks are data;
// characters after the closing quote are kept as they are. Leaves *pp after the
// comma or line break; *eol is set when the record ends with this field.
static char *csv_field(const char **pp, const char *end, int *eol) {
    const char *p = *pp;
    size_t n = 0, cap = 64;
    char *f = malloc(cap);
    int quoted = p < end && *p == '"';
    if (quoted) p++;
    *eol = 0;
    while (1) {
        if (p >= end) { *eol = 1; break; }
        char c = *p++;
        if (quoted && c == '"') {
            if (p < end && *p == '"') p++;   // doubled quote: a literal one
            else { quoted = 0; continue; }
        } else if (!quoted && c == ',') {
            break;
        } else if (!quoted && (c == '\n' || c == '\r')) {
            if (c == '\r' && p < end && *p == '\n') p++;
            *eol = 1;
            break;
        }
        if (n + 2 > cap) f = realloc(f, cap *= 2);
        f[n++] = c;
    }
    f[n] = 0;
    *pp = p;
    return f;
}

// One record: its fields (malloc'd) in out[0..max), returns how many (0 at the end of the text).
static int csv_record(const char **pp, const char *end, char **out, int max) {
    while (*pp < end && (**pp == '\n' || **pp == '\r')) (*pp)++;   // blank lines are no records
    if (*pp >= end) return 0;
    int n = 0, eol = 0;
    while (!eol) {
        char *f = csv_field(pp, end, &eol);
        if (n < max) out[n++] = f;
        else free(f);
    }
    return n;
}

typedef struct { long key; char *title; } KeyedTitle;
static int by_key(const void *a, const void *b) {
    long x = ((const KeyedTitle *)a)->key, y = ((const KeyedTitle *)b)->key;
    return (x > y) - (x < y);
}

// Every dataset title in the fixture script's order (dataset_titles()): the
// Goodreads id2name.json values by ascending integer key, then the MovieLens
// movies.csv "title" column in file order. Returns the count, -1 without the data.
static int dataset_titles(char ***out) {
    size_t len;
    char *json = slurp(DATADIR "goodreads/id2name.json", &len), *csv = slurp(DATADIR "movielens-small/movies.csv", &len);
    if (!json || !csv) { free(json); free(csv); return -1; }
    cJSON *root = cJSON_Parse(json), *e;
    assert_true(cJSON_IsObject(root));
    int ng = cJSON_GetArraySize(root), n = 0, cap = ng + 16384;
    KeyedTitle *kt = malloc((size_t)ng * sizeof *kt);
    cJSON_ArrayForEach(e, root) {
        char *ke;
        assert_true(cJSON_IsString(e));
        kt[n].key = strtol(e->string, &ke, 10);
        assert_true(ke != e->string && !*ke);
        kt[n++].title = strdup(e->valuestring);
    }
    qsort(kt, (size_t)n, sizeof *kt, by_key);
    char **t = malloc((size_t)cap * sizeof *t);
    for (int i = 0; i < n; i++) t[i] = kt[i].title;
    free(kt);
    cJSON_Delete(root);
    free(json);

    const char *p = csv, *end = csv + len;
    char *f[64];
    int nf = csv_record(&p, end, f, 64), col = -1;
    for (int i = 0; i < nf; i++) {
        if (!strcmp(f[i], "title")) col = i;
        free(f[i]);
    }
    assert_true(col >= 0);
    while ((nf = csv_record(&p, end, f, 64)) > 0) {
        assert_true(nf > col);
        if (n == cap) t = realloc(t, (size_t)(cap *= 2) * sizeof *t);
        t[n++] = f[col];
        for (int i = 0; i < nf; i++) if (i != col) free(f[i]);
    }
    free(csv);
    *out = t;
    return n;
}

// The CSV reader on the cases movies.csv has and a few more.
static void test_tok_csv_reader(void **state) {
    (void)state;
    const char *text = "id,title,genres\r\n1,Toy Story (1995),Comedy\n"
                       "2,\"American President, The (1995)\",Drama\n\n"
                       "3,\"11'09\"\"01 - September 11 (2002)\",Drama\n"
                       "4,\"two\nlines, \"\"quoted\"\"\",\n5,,\"\"\n6,a\"b,x";
    static const char *want[][3] = {{"id", "title", "genres"}, {"1", "Toy Story (1995)", "Comedy"},
                                    {"2", "American President, The (1995)", "Drama"},
                                    {"3", "11'09\"01 - September 11 (2002)", "Drama"},
                                    {"4", "two\nlines, \"quoted\"", ""}, {"5", "", ""}, {"6", "a\"b", "x"}};
    const char *p = text, *end = text + strlen(text);
    char *f[8];
    for (int r = 0; r < 7; r++) {
        assert_int_equal(csv_record(&p, end, f, 8), 3);
        for (int i = 0; i < 3; i++) {
            assert_string_equal(f[i], want[r][i]);
            free(f[i]);
        }
    }
    assert_int_equal(csv_record(&p, end, f, 8), 0);
}

// Every Goodreads and MovieLens title in ../shared/data against
// <name>.titles.hash.gz: the title's hash (same data as the fixture was made
// from), the hashes of HF's ids with and without special tokens, and
// decode(encode(title)) == title both ways (HF's decode gives the title back for
// all of them; the script checks that), or, where a fourth hash is given (BERT
// lowercases), decode equal to HF's decode. Skipped where ../shared/data is absent.
static void test_tok_dataset_titles(void **state) {
    (void)state;
    char **titles;
    int n = dataset_titles(&titles);
    if (n < 0) {
        print_message("  skipped: ../shared/data not present\n");
        return;
    }
    static const char *names[] = {"gpt2", "llama3", "smollm2", "qwen2", "sp", "sp_metaspace", "bert"};
    const int n_names = (int)(sizeof names / sizeof *names);
    int bad = 0;
    for (int c = 0; c < n_names; c++) {
        char path[256], **hl;
        snprintf(path, sizeof path, FIXDIR "%s.titles.hash.gz", names[c]);
        char *htext = read_gz(path, NULL);
        int nh = split_lines(htext, &hl);
        if (nh > 0 && !*hl[nh - 1]) nh--;
        if (nh != n) fail_msg("%s: %d titles in " DATADIR " but %d lines in %s (rerun make_tokenizer_fixtures.py)", names[c], n, nh, path);
        Tokenizer *t = load_fixture(names[c]);
        for (int i = 0; i < n; i++) {
            const char *s = titles[i];
            size_t sl = strlen(s);
            char *e, *e4;
            uint64_t want[4];
            want[0] = strtoull(hl[i], &e, 16);
            want[1] = strtoull(e, &e, 16);
            want[2] = strtoull(e, &e, 16);
            want[3] = strtoull(e, &e4, 16);
            const int has_decode = e4 != e;   // HF's decode differs from the title: its hash
            if (want[0] != fnv1a64((const unsigned char *)s, sl)) {
                if (bad++ < 5) fprintf(stderr, "%s: title %d '%s' is not the one the fixture was made from\n", names[c], i + 1, s);
                continue;
            }
            for (int sp = 0; sp < 2; sp++) {
                int *ids, k = tokenizer_encode(t, s, sl, sp, &ids);
                if (hash_ids(ids, k) != want[1 + sp]) {
                    if (bad++ < 5) fprintf(stderr, "%s: title %d special=%d '%s': ids %s differ from HF's\n", names[c], i + 1, sp, s, print_ids(ids, k));
                } else {
                    size_t dl;
                    char *d = tokenizer_decode(t, ids, k, sp, &dl);
                    if ((has_decode ? fnv1a64((const unsigned char *)d, dl) != want[3] : dl != sl || memcmp(d, s, sl)) && bad++ < 5)
                        fprintf(stderr, "%s: title %d decode(special=%d) '%s' differs from HF's ('%s')\n", names[c], i + 1, sp, d, s);
                    free(d);
                }
                free(ids);
            }
        }
        tokenizer_free(t);
        free(hl);
        free(htext);
    }
    print_message("  %d dataset titles (Goodreads + MovieLens) x %d tokenizers: ids and decode checked\n", n, n_names);
    if (bad) fprintf(stderr, "dataset titles: %d mismatches\n", bad);
    assert_int_equal(bad, 0);
    assert_true(n >= 4000);
    for (int i = 0; i < n; i++) free(titles[i]);
    free(titles);
}

// bert.extra.jsonl.gz: HF's ids for long texts truncated as sentence-transformers
// does (tokenizer_encode_max), and for BERT's character rules (random code points
// from every plane, over-long words, control characters, casing, CJK).
static void test_tok_bert_extra(void **state) {
    (void)state;
    char *ctext = read_gz(FIXDIR "corpus.jsonl.gz", NULL), *xtext = read_gz(FIXDIR "bert.extra.jsonl.gz", NULL);
    char **corpus, **xl;
    int nc = split_lines(ctext, &corpus), nx = split_lines(xtext, &xl), bad = 0, checked = 0, truncated = 0;
    Tokenizer *t = load_fixture("bert");
    for (int i = 0; i < nx; i++) {
        if (!*xl[i]) continue;
        cJSON *x = cJSON_Parse(xl[i]);
        assert_non_null(x);
        const cJSON *txt = cJSON_GetObjectItem(x, "text"), *want = cJSON_GetObjectItem(x, "ids");
        char *text;
        if (cJSON_IsString(txt)) text = strdup(txt->valuestring);
        else {   // corpus lines idx .. idx+n-1 joined by spaces
            int a = cJSON_GetObjectItem(x, "idx")->valueint, b = a + cJSON_GetObjectItem(x, "n")->valueint;
            size_t cap = 1, k = 0;
            for (int j = a; j < b && j < nc; j++) cap += strlen(corpus[j]) + 1;
            text = malloc(cap);
            text[0] = 0;
            for (int j = a; j < b && j < nc; j++) {
                cJSON *js = cJSON_Parse(corpus[j]);
                k += (size_t)sprintf(text + k, "%s%s", j > a ? " " : "", js->valuestring);
                cJSON_Delete(js);
            }
        }
        int max_len = cJSON_GetObjectItem(x, "max_len")->valueint, sp = cJSON_IsTrue(cJSON_GetObjectItem(x, "special"));
        int *ids, n = tokenizer_encode_max(t, text, strlen(text), sp, max_len, &ids), ok = n == cJSON_GetArraySize(want);
        for (int j = 0; ok && j < n; j++) ok = ids[j] == cJSON_GetArrayItem(want, j)->valueint;
        if (!ok && bad++ < 5) fprintf(stderr, "bert extra line %d (max_len %d): got %s\n", i + 1, max_len, print_ids(ids, n));
        if (max_len > 0) {
            int *full, nf = tokenizer_encode(t, text, strlen(text), sp, &full);
            truncated += nf > max_len;
            free(full);
        }
        checked++;
        free(ids); free(text);
        cJSON_Delete(x);
    }
    // NUL (which the JSON strings above cannot hold) is dropped like the other control characters
    int *ids, *want, n = tokenizer_encode(t, "a\0b\001c", 5, 1, &ids), nw = tokenizer_encode(t, "abc", 3, 1, &want);
    assert_int_equal(n, nw);
    assert_memory_equal(ids, want, (size_t)n * sizeof(int));
    free(ids); free(want);
    tokenizer_free(t);
    print_message("  %d strings against HF (%d cut by truncation)\n", checked, truncated);
    assert_int_equal(bad, 0);
    assert_true(checked >= 800 && truncated >= 100);
    free(corpus); free(xl); free(ctext); free(xtext);
}

// The vocab as vocab.txt (one token a line, by id), as a bare BERT checkpoint
// ships it: the tokenizer built from it gives the ids the tokenizer.json gives
// (the fixture script checks the same of HF's BertWordPieceTokenizer).
static char *bert_vocab_txt(const Tokenizer *t, size_t *len) {
    size_t cap = 1, k = 0;
    int n = tokenizer_vocab_size(t);
    char **tok = calloc((size_t)n, sizeof *tok);
    size_t jl;
    char *json = read_gz(FIXDIR "bert.tokenizer.json.gz", &jl);
    cJSON *root = cJSON_ParseWithLength(json, jl), *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(cJSON_GetObjectItem(root, "model"), "vocab")) {
        tok[e->valueint] = e->string;
        cap += strlen(e->string) + 1;
    }
    char *txt = malloc(cap);
    for (int i = 0; i < n; i++) {
        assert_non_null(tok[i]);
        k += (size_t)sprintf(txt + k, "%s\n", tok[i]);
    }
    cJSON_Delete(root);
    free(json);
    free(tok);
    *len = k;
    return txt;
}

static void test_tok_vocab_txt(void **state) {
    (void)state;
    Tokenizer *tj = load_fixture("bert");
    size_t len, jl;
    char *txt = bert_vocab_txt(tj, &len), *json = tokenizer_json_from_vocab_txt(txt, len, NULL, 0, "vocab.txt", &jl);
    Tokenizer *tv = tokenizer_from_json(json, jl, NULL, 0, "vocab.txt");
    assert_int_equal(tokenizer_vocab_size(tv), 30522);
    assert_int_equal(tokenizer_bos_id(tv), 101);
    assert_int_equal(tokenizer_eos_id(tv), 102);
    char *ctext = read_gz(FIXDIR "corpus.jsonl.gz", NULL), **corpus;
    int nc = split_lines(ctext, &corpus), bad = 0;
    for (int i = 0; i < nc; i++) {
        if (!*corpus[i]) continue;
        cJSON *js = cJSON_Parse(corpus[i]);
        const char *s = js->valuestring;
        for (int sp = 0; sp < 2; sp++) {
            int *a, *b, na = tokenizer_encode(tj, s, strlen(s), sp, &a), nb = tokenizer_encode(tv, s, strlen(s), sp, &b);
            if ((na != nb || memcmp(a, b, (size_t)na * sizeof(int))) && bad++ < 5) fprintf(stderr, "vocab.txt: '%s' differs\n", s);
            char *da = tokenizer_decode(tj, a, na, sp, NULL), *db = tokenizer_decode(tv, b, nb, sp, NULL);
            if (strcmp(da, db) && bad++ < 5) fprintf(stderr, "vocab.txt: decode of '%s' differs\n", s);
            free(a); free(b); free(da); free(db);
        }
        cJSON_Delete(js);
    }
    assert_int_equal(bad, 0);
    // tokenizer_config.json with do_lower_case false: a cased tokenizer (accents kept too, as transformers does)
    const char *cfg = "{\"do_lower_case\": false}";
    char *cased = tokenizer_json_from_vocab_txt(txt, len, cfg, strlen(cfg), "vocab.txt", &jl);
    Tokenizer *tc = tokenizer_from_json(cased, jl, NULL, 0, "cased");
    int *a, *b, na = tokenizer_encode(tc, "Hello", 5, 0, &a), nb = tokenizer_encode(tv, "Hello", 5, 0, &b);
    assert_int_equal(nb, 1);
    assert_int_equal(b[0], tokenizer_token_id(tv, "hello"));
    assert_true(na != 1 || a[0] != b[0]);
    free(a); free(b);
    tokenizer_free(tc);
    free(cased);
    // and through the command
    write_file("build/test-tmp/tok_vocab.txt", txt);
    char out[4096], want[4096];
    assert_int_equal(run_capture("printf 'Caf\\303\\251 Society, the (1995)\\n' | build/sprec tokenize --special --model build/test-tmp/tok_vocab.txt",
                                 out, sizeof out), 0);
    int *ids, n = tokenizer_encode(tj, "Caf\xc3\xa9 Society, the (1995)", 25, 1, &ids);
    want[0] = 0;
    for (int i = 0; i < n; i++) sprintf(want + strlen(want), "%s%d", i ? " " : "", ids[i]);
    strcat(want, "\n");
    assert_string_equal(out, want);
    free(ids);
    remove("build/test-tmp/tok_vocab.txt");
    free(corpus); free(ctext); free(txt); free(json);
    tokenizer_free(tv);
    tokenizer_free(tj);
}

static void test_tok_special(void **state) {
    (void)state;
    Tokenizer *t = load_fixture("gpt2");
    assert_int_equal(tokenizer_vocab_size(t), 50257);
    assert_int_equal(tokenizer_token_id(t, "<|endoftext|>"), 50256);
    assert_int_equal(tokenizer_token_id(t, "Ġthe"), 262);
    assert_int_equal(tokenizer_token_id(t, "no such token"), -1);
    assert_int_equal(tokenizer_eos_id(t), 50256);
    assert_int_equal(tokenizer_bos_id(t), -1);
    int *ids, n = tokenizer_encode(t, "a<|endoftext|>b", 15, 1, &ids);
    assert_int_equal(n, 3);
    assert_int_equal(ids[1], 50256);
    char *d = tokenizer_decode(t, ids, n, 1, NULL);
    assert_string_equal(d, "ab");
    free(d);
    d = tokenizer_decode(t, ids, n, 0, NULL);
    assert_string_equal(d, "a<|endoftext|>b");
    free(d); free(ids);
    tokenizer_free(t);

    t = load_fixture("llama3");
    assert_int_equal(tokenizer_bos_id(t), tokenizer_token_id(t, "<|begin_of_text|>"));
    n = tokenizer_encode(t, "", 0, 1, &ids);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], tokenizer_bos_id(t));
    free(ids);
    n = tokenizer_encode(t, "", 0, 0, &ids);
    assert_int_equal(n, 0);
    free(ids);
    tokenizer_free(t);

    // tokenizer_config.json: {content: ...} objects and add_bos/add_eos flags
    t = load_fixture("sp");
    size_t len;
    char *json = read_gz(FIXDIR "sp.tokenizer.json.gz", &len);
    const char *cfg = "{\"bos_token\": {\"content\": \"<s>\"}, \"eos_token\": \"</s>\", \"add_bos_token\": true, \"add_eos_token\": true}";
    Tokenizer *tc = tokenizer_from_json(json, len, cfg, strlen(cfg), "cfg");
    free(json);
    assert_int_equal(tokenizer_bos_id(tc), 1);
    assert_int_equal(tokenizer_eos_id(tc), 2);
    n = tokenizer_encode(tc, "hi", 2, 1, &ids);
    assert_true(n >= 3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[n - 1], 2);
    free(ids);
    tokenizer_free(tc);
    tokenizer_free(t);
}

// lstrip/rstrip added tokens swallow the whitespace around them (ids from HF
// tokenizers with AddedToken("<mask>", lstrip=True, rstrip=True) added to GPT-2)
static void test_tok_added_strip(void **state) {
    (void)state;
    size_t len;
    char *json = read_gz(FIXDIR "gpt2.tokenizer.json.gz", &len);
    cJSON *root = cJSON_ParseWithLength(json, len);
    free(json);
    cJSON *tok = cJSON_Parse("{\"id\": 50257, \"content\": \"<mask>\", \"single_word\": false, \"lstrip\": true, "
                             "\"rstrip\": true, \"normalized\": false, \"special\": true}");
    cJSON_AddItemToArray(cJSON_GetObjectItem(root, "added_tokens"), tok);
    char *text = cJSON_PrintUnformatted(root);
    Tokenizer *t = tokenizer_from_json(text, strlen(text), NULL, 0, "gpt2+mask");
    static const struct { const char *s; int n, ids[3]; } cases[] = {
        {"a <mask> b", 3, {64, 50257, 65}}, {"x  <mask>  y", 3, {87, 50257, 88}}, {" <mask> ", 1, {50257}}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int *ids, n = tokenizer_encode(t, cases[c].s, strlen(cases[c].s), 0, &ids);
        assert_int_equal(n, cases[c].n);
        assert_memory_equal(ids, cases[c].ids, (size_t)n * sizeof(int));
        free(ids);
    }
    tokenizer_free(t);
    free(text);
    cJSON_Delete(root);
}

// Invalid UTF-8 is encoded byte-wise: no crash, no rejection, exact round trip.
// (No literal U+2581 here: SentencePiece decodes it as a space, as HF does.)
static void test_tok_invalid_utf8(void **state) {
    (void)state;
    static const char *bad[] = {"\xff", "abc\xff\xfe def", "\xc3", "caf\xc3 x", "\xe2\x82", "\xed\xa0\x80 surrogate",
                                "\xf4\x90\x80\x80 too big", "\xc0\xaf overlong", "ok \x80\x80\x80 cont", "\xf0\x9f\x98",
                                "mixed \xe2\x96 x\xffy 12\xff" "34 \xe2\x82\xac\xff"};
    const char *names[] = {"gpt2", "llama3", "smollm2", "qwen2", "sp", "sp_metaspace"};
    for (int c = 0; c < 6; c++) {
        Tokenizer *t = load_fixture(names[c]);
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            int *ids, n = tokenizer_encode(t, bad[i], strlen(bad[i]), 0, &ids);
            assert_true(n > 0);
            size_t dl;
            char *d = tokenizer_decode(t, ids, n, 0, &dl);
            if (dl != strlen(bad[i]) || memcmp(d, bad[i], dl)) fail_msg("%s: invalid UTF-8 case %zu does not round-trip", names[c], i);
            free(d);
            free(ids);
        }
        tokenizer_free(t);
    }
}

static void load_text(void *arg) {
    const char *s = arg;
    tokenizer_from_json(s, strlen(s), NULL, 0, "bad.json");
}

static void expect_tokenizer_error(const char *json, const char *needle) {
    char err[4096];
    int rc = run_forked(load_text, (void *)json, err, sizeof err);
    if (rc != 1 || strncmp(err, "sprec: error: ", 14) || strchr(err, '\n') != err + strlen(err) - 1 || !strstr(err, needle))
        fail_msg("tokenizer_from_json(%s): rc %d, stderr '%s' (want one line with '%s')", json, rc, err, needle);
}

static void load_vocab_txt(void *arg) {
    const char *s = arg;
    free(tokenizer_json_from_vocab_txt(s, strlen(s), NULL, 0, "bad/vocab.txt", NULL));
}

static void test_tok_malformed(void **state) {
    (void)state;
    expect_tokenizer_error("this is not json", "not a tokenizer.json");
    expect_tokenizer_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0", "not a tokenizer.json");
    expect_tokenizer_error("{\"version\": \"1.0\"}", "no \"model\"");
    expect_tokenizer_error("{\"model\": {\"type\": \"BPE\", \"merges\": []}}", "model.vocab");
    expect_tokenizer_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}", "model.merges");
    expect_tokenizer_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a\"]}}", "merges entry 0");
    expect_tokenizer_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [[\"a\", 3]]}}", "merges entry 0");
    expect_tokenizer_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}", "not in the vocab");
    expect_tokenizer_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}, \"merges\": []}}", "valid id");
    expect_tokenizer_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "Unigram");
    expect_tokenizer_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}", "unk_token '[UNK]' is not in the vocab");
    expect_tokenizer_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0}, \"max_input_chars_per_word\": 0}}",
                           "max_input_chars_per_word");
    expect_tokenizer_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Split\", "
                 "\"pattern\": {\"Regex\": \"(unclosed\"}, \"behavior\": \"Isolated\"}}", "regex");
    expect_tokenizer_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"normalizer\": {\"type\": \"NFKD\"}}", "NFKD");
    expect_tokenizer_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"added_tokens\": [{\"content\": \"x\"}]}", "added_tokens");
    char err[4096];
    assert_int_equal(run_forked(load_vocab_txt, "[PAD]\n[UNK]\n[SEP]\nhello\n", err, sizeof err), 1);
    assert_non_null(strstr(err, "bad/vocab.txt: vocab.txt has no '[CLS]' or no '[SEP]' token"));
    // an id far beyond the tokens the file holds: refused (it would size the tables), naming the token and the id
    expect_tokenizer_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": []}, \"added_tokens\": "
                           "[{\"id\": 2, \"content\": \"<s>\"}, {\"id\": 1073741000, \"content\": \"<huge>\"}]}", "'<huge>' has id 1073741000");
    expect_tokenizer_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1073741000}, \"merges\": []}}",
                           "'b' has id 1073741000");
    // the last id the entries can reach is fine: two vocab entries and one added token, ids 0..2
    const char *dense = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": []}, \"added_tokens\": "
                        "[{\"id\": 2, \"content\": \"<s>\"}]}";
    Tokenizer *t = tokenizer_from_json(dense, strlen(dense), NULL, 0, "dense.json");
    assert_int_equal(tokenizer_vocab_size(t), 3);
    tokenizer_free(t);
    // and through the command: one line naming the file
    write_file("build/test-tmp/tok_huge_id.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, "
               "\"added_tokens\": [{\"id\": 1073741000, \"content\": \"<huge>\"}]}");
    expect_error("echo a | " SPREC_CHECKED " tokenize --model build/test-tmp/tok_huge_id.json", "build/test-tmp/tok_huge_id.json",
                 "'<huge>' has id 1073741000");
    remove("build/test-tmp/tok_huge_id.json");
}

// The command: tokenizer.json from the fixture, ids for stdin lines, and back.
static void test_tok_command(void **state) {
    (void)state;
    size_t len;
    char *json = read_gz(FIXDIR "gpt2.tokenizer.json.gz", &len);
    FILE *f = fopen("build/test-tmp/tok_gpt2_tokenizer.json", "w");
    assert_non_null(f);
    fwrite(json, 1, len, f);
    fclose(f);
    free(json);
    char out[4096];
    int rc = run_capture("printf 'Hello world\\nit'\"'\"'s<|endoftext|>\\n' | build/sprec tokenize --model build/test-tmp/tok_gpt2_tokenizer.json", out, sizeof out);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "15496 995\n270 338 50256\n");
    rc = run_capture("printf '15496 995\\n270 338 50256\\n' | build/sprec tokenize --decode --model build/test-tmp/tok_gpt2_tokenizer.json", out, sizeof out);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "Hello world\nit's<|endoftext|>\n");
    rc = run_capture("echo 99999999 | build/sprec tokenize --decode --model build/test-tmp/tok_gpt2_tokenizer.json", out, sizeof out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "sprec: error: "));
    rc = run_capture("echo x | build/sprec tokenize --model /nonexistent/tokenizer.json", out, sizeof out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "sprec: error: "));
    remove("build/test-tmp/tok_gpt2_tokenizer.json");

    // a checkpoint without a tokenizer (sprec init) is a one-line error
    write_file("build/test-tmp/tok_tok.ini", "[model]\nvocab_size = 64\ndim = 16\nn_layers = 1\nn_heads = 2\n"
               "n_kv_heads = 1\nffn_dim = 16\nmax_seq_len = 8\n");
    assert_int_equal(run_capture("build/sprec init build/test-tmp/tok_tok.ini -o build/test-tmp/tok_tok.h5", out, sizeof out), 0);
    rc = run_capture("echo x | build/sprec tokenize --model build/test-tmp/tok_tok.h5", out, sizeof out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "sprec: error: build/test-tmp/tok_tok.h5: the checkpoint has no tokenizer"));
    // an imported checkpoint carries the tokenizer: same ids as from the GGUF it came from
    if (access("tests/ref/import/tiny.gguf", R_OK) == 0) {
        char a[4096], b[4096];
        assert_int_equal(run_capture(SPREC_CHECKED " import tests/ref/import/tiny.gguf -o build/test-tmp/tok_tok.h5 >/dev/null", out, sizeof out), 0);
        assert_int_equal(run_capture("printf 'hello world 123\\n' | build/sprec tokenize --model build/test-tmp/tok_tok.h5", a, sizeof a), 0);
        assert_int_equal(run_capture("printf 'hello world 123\\n' | " SPREC_CHECKED " tokenize --model tests/ref/import/tiny.gguf", b, sizeof b), 0);
        assert_string_equal(a, b);
        assert_true(strlen(a) > 2);
    }
    remove("build/test-tmp/tok_tok.ini");
    remove("build/test-tmp/tok_tok.h5");
}

DEFINE_TEST_GROUP(test_tokenizer,
    cmocka_unit_test(test_tok_gpt2),
    cmocka_unit_test(test_tok_llama3),
    cmocka_unit_test(test_tok_smollm2),
    cmocka_unit_test(test_tok_qwen2),
    cmocka_unit_test(test_tok_sentencepiece),
    cmocka_unit_test(test_tok_metaspace),
    cmocka_unit_test(test_tok_bert),
    cmocka_unit_test(test_tok_bert_extra),
    cmocka_unit_test(test_tok_vocab_txt),
    cmocka_unit_test(test_tok_variants),
    cmocka_unit_test(test_tok_csv_reader),
    cmocka_unit_test(test_tok_dataset_titles),
    cmocka_unit_test(test_tok_special),
    cmocka_unit_test(test_tok_added_strip),
    cmocka_unit_test(test_tok_invalid_utf8),
    cmocka_unit_test(test_tok_malformed),
    cmocka_unit_test(test_tok_command),
)
