// Reading and writing recommendation dataset files (docs/recdata.md).
// Text lists are stored as one byte array NAME (uint8, no NUL) plus
// NAME_offsets (int32 [n+1]): string i = NAME[offsets[i] .. offsets[i+1]).
#include <limits.h>
#include <string.h>
#include "recdata.h"
#include "base/atomic_write.h"
#include "base/h5io.h"
#include "base/fileio.h"
#include "io/gguf.h"
#include "kernels/errors.h"

const char *const SPLIT_NAMES[N_SPLITS] = {"train", "valid", "test"};

#define RECDATA_FORMAT "sprec-recdata"
#define RECDATA_VERSION 1

// ---- writing --------------------------------------------------------------

static void write_texts(hid_t g, const char *name, char *const *texts, int n) {
    int *off = xmalloc((size_t)(n + 1) * sizeof(int));
    size_t total = 0;
    off[0] = 0;
    for (int i = 0; i < n; i++) {
        total += strlen(texts[i]);
        if (total > INT_MAX) fail("%s: more than 2 GiB of text in one array", name);
        off[i + 1] = (int)total;
    }
    char *buf = xmalloc(total);
    for (int i = 0; i < n; i++) memcpy(buf + off[i], texts[i], (size_t)(off[i + 1] - off[i]));
    h5_write_bytes(g, name, buf, total, 0);
    char oname[128];
    snprintf(oname, sizeof oname, "%s_offsets", name);
    long dims[1] = {n + 1};
    h5_write_i32(g, oname, 1, dims, off);
    free(buf);
    free(off);
}

static void write_split(hid_t f, const RecData *d, int s) {
    const RecSplit *sp = &d->split[s];
    hid_t g = h5_group(f, SPLIT_NAMES[s]);
    long n1[1] = {sp->n + 1}, n[1] = {sp->n}, nh[1] = {sp->hist_offsets[sp->n]};
    h5_write_i32(g, "history_offsets", 1, n1, sp->hist_offsets);
    h5_write_i32(g, "history_items", 1, nh, sp->hist_items);
    h5_write_i32(g, "target", 1, n, sp->target);
    h5_write_i32(g, "source_row", 1, n, sp->source_row);
    write_texts(g, "prompts", sp->prompt, sp->n);
    write_texts(g, "completions", sp->completion, sp->n);
    long out_t = 0, out_h = 0;
    for (int r = 0; r < sp->n; r++) out_t += sp->target[r] < 0;
    for (int i = 0; i < sp->hist_offsets[sp->n]; i++) out_h += sp->hist_items[i] < 0;
    h5_attr_write_i64(g, "n_rows", sp->n);
    h5_attr_write_i64(g, "n_target_outside", out_t);
    h5_attr_write_i64(g, "n_history_outside", out_h);
    if (d->tokenized) {
        long nt[2] = {sp->n, sp->T};
        h5_write_i32(g, "tokens", 2, nt, sp->tokens);
        h5_write_f32(g, "mask", 2, nt, sp->mask);
        h5_write_i32(g, "lengths", 1, n, sp->lengths);
        h5_write_i32(g, "prompt_lengths", 1, n, sp->prompt_len);
    }
    h5_group_close(g);
}

void recdata_save(const RecData *d, const char *path) {
    AtomicFile *out = atomic_begin(path, NULL);
    hid_t f = h5_create_checksummed(out->tmp);
    h5_attr_write_str(f, "format", RECDATA_FORMAT);
    h5_attr_write_i64(f, "version", RECDATA_VERSION);
    h5_attr_write_str(f, "source", d->source);
    h5_attr_write_str(f, "instruction", d->instruction);
    h5_attr_write_i64(f, "tokenized", d->tokenized);
    hid_t g = h5_group(f, "catalogue");
    h5_attr_write_i64(g, "n_items", d->n_items);
    h5_attr_write_i64(g, "n_genres", d->n_genres);
    long ni[1] = {d->n_items}, ni1[1] = {d->n_items + 1}, ng[1] = {d->genre_offsets[d->n_items]};
    write_texts(g, "titles", d->titles, d->n_items);
    write_texts(g, "genre_names", d->genre_names, d->n_genres);
    h5_write_i32(g, "genre_offsets", 1, ni1, d->genre_offsets);
    h5_write_i32(g, "genre_ids", 1, ng, d->genre_ids);
    h5_write_i32(g, "popularity", 1, ni, d->popularity);
    if (d->tokenized) {
        long nt[1] = {d->item_tok_offsets[d->n_items]};
        h5_write_i32(g, "completion_offsets", 1, ni1, d->item_tok_offsets);
        h5_write_i32(g, "completion_tokens", 1, nt, d->item_tok);
    }
    h5_group_close(g);
    for (int s = 0; s < N_SPLITS; s++) write_split(f, d, s);
    h5_close(f);
    atomic_commit(out);
}

// ---- reading --------------------------------------------------------------

// Offsets must start at 0, never decrease and end at total.
static void check_offsets(const char *path, const char *what, const int *off, int n, long total) {
    if (off[0] != 0) fail("%s: %s[0] = %d, must be 0", path, what, off[0]);
    for (int i = 0; i < n; i++)
        if (off[i + 1] < off[i]) fail("%s: %s decreases at %d", path, what, i);
    if (off[n] != total) fail("%s: %s ends at %d but the data has %ld entries", path, what, off[n], total);
}

static char **read_texts(hid_t g, const char *path, const char *name, int n) {
    char label[160], oname[128];
    snprintf(oname, sizeof oname, "%s_offsets", name);
    long dims[1] = {n + 1};
    size_t len;
    char *buf = h5_read_bytes(g, path, name, &len);
    if (!buf) fail("%s: dataset '%s' not found", path, name);
    int *off = h5_read_i32(g, path, oname, 1, dims);
    snprintf(label, sizeof label, "'%s'", oname);
    check_offsets(path, label, off, n, (long)len);
    char **out = xmalloc((size_t)(n ? n : 1) * sizeof(char *));
    for (int i = 0; i < n; i++) {
        size_t k = (size_t)(off[i + 1] - off[i]);
        out[i] = xmalloc(k + 1);
        memcpy(out[i], buf + off[i], k);
        out[i][k] = 0;
    }
    free(buf);
    free(off);
    return out;
}

static void check_ids(const char *path, const char *what, const int *ids, long n, int lo, int hi) {
    for (long i = 0; i < n; i++)
        if (ids[i] < lo || ids[i] >= hi) fail("%s: %s[%ld] = %d outside [%d, %d)", path, what, i, ids[i], lo, hi);
}

static void read_split(hid_t f, const char *path, RecData *d, int s) {
    RecSplit *sp = &d->split[s];
    const char *sn = SPLIT_NAMES[s];
    if (!h5_exists(f, sn)) fail("%s: split '%s' not found (not a sprec prepare file?)", path, sn);
    hid_t g = h5_group_open(f, path, sn);
    long dn[1] = {-1};
    sp->target = h5_read_i32(g, path, "target", 1, dn);
    sp->n = (int)dn[0];
    long n1[1] = {sp->n + 1}, n[1] = {sp->n}, any[1] = {-1};
    sp->hist_offsets = h5_read_i32(g, path, "history_offsets", 1, n1);
    sp->hist_items = h5_read_i32(g, path, "history_items", 1, any);
    sp->source_row = h5_read_i32(g, path, "source_row", 1, n);
    char what[64];
    snprintf(what, sizeof what, "%s/history_offsets", sn);
    check_offsets(path, what, sp->hist_offsets, sp->n, any[0]);
    snprintf(what, sizeof what, "%s/history_items", sn);
    check_ids(path, what, sp->hist_items, any[0], -1, d->n_items);
    snprintf(what, sizeof what, "%s/target", sn);
    check_ids(path, what, sp->target, sp->n, -1, d->n_items);
    sp->prompt = read_texts(g, path, "prompts", sp->n);
    sp->completion = read_texts(g, path, "completions", sp->n);
    if (d->tokenized) {
        long nt[2] = {sp->n, -1};
        sp->tokens = h5_read_i32(g, path, "tokens", 2, nt);
        sp->T = (int)nt[1];
        sp->mask = h5_read_f32(g, path, "mask", 2, nt);
        sp->lengths = h5_read_i32(g, path, "lengths", 1, n);
        sp->prompt_len = h5_read_i32(g, path, "prompt_lengths", 1, n);
        for (int r = 0; r < sp->n; r++)
            if (sp->prompt_len[r] < 1 || sp->prompt_len[r] > sp->lengths[r] || sp->lengths[r] > sp->T)
                fail("%s: %s row %d: prompt length %d, length %d, T %d are inconsistent", path, sn, r,
                     sp->prompt_len[r], sp->lengths[r], sp->T);
    }
    h5_group_close(g);
}

void recdata_load(RecData *d, const char *path) {
    memset(d, 0, sizeof *d);
    hid_t f = h5_open_read(path);
    char fmt[64];
    if (!h5_attr_has(f, "format")) fail("%s: not a sprec recommendation dataset (no 'format' attribute)", path);
    h5_attr_read_str(f, path, "format", fmt, sizeof fmt);
    if (strcmp(fmt, RECDATA_FORMAT) != 0) fail("%s: format '%s', expected '%s'", path, fmt, RECDATA_FORMAT);
    long version = (long)h5_attr_read_i64(f, path, "version");
    if (version != RECDATA_VERSION) fail("%s: recdata version %ld, this build reads %d", path, version, RECDATA_VERSION);
    h5_attr_read_str(f, path, "source", d->source, sizeof d->source);
    h5_attr_read_str(f, path, "instruction", d->instruction, sizeof d->instruction);
    d->tokenized = h5_attr_read_i64(f, path, "tokenized") != 0;
    hid_t g = h5_group_open(f, path, "catalogue");
    long ni[1] = {-1};
    d->popularity = h5_read_i32(g, path, "popularity", 1, ni);
    d->n_items = (int)ni[0];
    if (d->n_items < 1) fail("%s: empty catalogue", path);
    long ni1[1] = {d->n_items + 1}, any[1] = {-1}, gn[8];
    d->titles = read_texts(g, path, "titles", d->n_items);
    d->genre_offsets = h5_read_i32(g, path, "genre_offsets", 1, ni1);
    d->genre_ids = h5_read_i32(g, path, "genre_ids", 1, any);
    if (h5_shape(g, path, "genre_names_offsets", gn) != 1) fail("%s: catalogue/genre_names_offsets is not 1-D", path);
    d->n_genres = (int)gn[0] - 1;
    if (d->n_genres < 0) fail("%s: catalogue/genre_names_offsets is empty", path);
    d->genre_names = read_texts(g, path, "genre_names", d->n_genres);
    check_offsets(path, "catalogue/genre_offsets", d->genre_offsets, d->n_items, any[0]);
    check_ids(path, "catalogue/genre_ids", d->genre_ids, any[0], 0, d->n_genres);
    if (d->tokenized) {
        long nt[1] = {-1};
        d->item_tok_offsets = h5_read_i32(g, path, "completion_offsets", 1, ni1);
        d->item_tok = h5_read_i32(g, path, "completion_tokens", 1, nt);
        check_offsets(path, "catalogue/completion_offsets", d->item_tok_offsets, d->n_items, nt[0]);
    }
    h5_group_close(g);
    for (int s = 0; s < N_SPLITS; s++) read_split(f, path, d, s);
    h5_close(f);
}

static void free_texts(char **t, int n) {
    if (!t) return;
    for (int i = 0; i < n; i++) free(t[i]);
    free(t);
}

void recdata_free(RecData *d) {
    free_texts(d->titles, d->n_items);
    free_texts(d->genre_names, d->n_genres);
    free(d->genre_offsets); free(d->genre_ids); free(d->popularity);
    free(d->item_tok_offsets); free(d->item_tok);
    for (int s = 0; s < N_SPLITS; s++) {
        RecSplit *sp = &d->split[s];
        free(sp->hist_offsets); free(sp->hist_items); free(sp->target); free(sp->source_row);
        free_texts(sp->prompt, sp->n);
        free_texts(sp->completion, sp->n);
        free(sp->tokens); free(sp->mask); free(sp->lengths); free(sp->prompt_len);
    }
    memset(d, 0, sizeof *d);
}

// ---- the tokenizer a dataset is prepared with (and sprec tokenize's) -------------

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

Tokenizer *recdata_tokenizer(const char *path) {
    char *json = NULL, *cfg = NULL;
    size_t len = 0, clen = 0;
    if (ends_with(path, ".h5")) {
        hid_t f = h5_open_read(path);
        json = h5_read_bytes(f, path, "tokenizer/tokenizer.json", &len);
        if (!json) fail("%s: the checkpoint has no tokenizer (import a model, or give a tokenizer.json)", path);
        cfg = h5_read_bytes(f, path, "tokenizer/tokenizer_config.json", &clen);
        h5_close(f);
    } else if (ends_with(path, ".gguf")) {
        Gguf g;
        gguf_open(&g, path);
        json = gguf_tokenizer_json_of(&g, &len);
        cfg = gguf_tokenizer_config_json_of(&g, &clen);
        gguf_close(&g);
    } else {
        json = read_file_text(path, &len);
        char cpath[4096];
        const char *slash = strrchr(path, '/');
        snprintf(cpath, sizeof cpath, "%.*stokenizer_config.json", slash ? (int)(slash - path + 1) : 0, path);
        cfg = read_file_text_if_exists(cpath, &clen);
        if (ends_with(path, ".txt")) {   // a BERT vocab.txt: the tokenizer.json transformers would make of it
            char *vj = tokenizer_json_from_vocab_txt(json, len, cfg, clen, path, &len);
            free(json);
            json = vj;
        }
    }
    Tokenizer *t = tokenizer_from_json(json, len, cfg, clen, path);
    free(json);
    free(cfg);
    return t;
}
