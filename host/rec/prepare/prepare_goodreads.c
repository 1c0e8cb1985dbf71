// Goodreads in the SPRec reference format (method.md section 5): a folder with
// train.json (an array of {instruction, input, output}), id2name.json,
// name2id.json, name2genre.json and genre_dict.json. The catalogue is
// id2name (ids 0..n-1); the rows keep their own instruction and input text.
//
// History titles are the quoted titles of `input`, separated by `", "`. A title
// may itself contain quotes or that separator, so the text between the first
// and the last quote is cut at separators by a small dynamic program that
// makes as many pieces as possible catalogue titles (then as few pieces as
// possible): a catalogue title wins over a split, and an unknown title
// containing `", "` stays one piece unless splitting it yields catalogue titles.
#include <string.h>
#include <cjson/cJSON.h>
#include "sources.h"
#include "base/fileio.h"
#include "kernels/errors.h"

// Parses a whole JSON file; a syntax error names the file and line.
static cJSON *parse_json_file(const char *dir, const char *name, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", dir, name);
    size_t len;
    char *text = read_file_text(path, &len);
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!j) {
        long line = 1;
        size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        for (size_t i = 0; i < at; i++) line += text[i] == '\n';
        fail("%s:%ld: malformed JSON", path, line);
    }
    free(text);
    return j;
}

static void load_catalogue(const char *dir, RecData *d, NameIndex *ix) {
    char path[CONFIG_PATH_MAX + 64];
    cJSON *id2name = parse_json_file(dir, "id2name.json", path, sizeof path);
    if (!cJSON_IsObject(id2name)) fail("%s: expected an object {\"id\": \"title\", ...}", path);
    int n = cJSON_GetArraySize(id2name);
    if (n < 1) fail("%s: empty catalogue", path);
    d->n_items = n;
    d->titles = xcalloc((size_t)n, sizeof(char *));
    for (cJSON *e = id2name->child; e; e = e->next) {
        char *end;
        long id = strtol(e->string, &end, 10);
        if (!*e->string || *end || id < 0 || id >= n) fail("%s: key \"%s\" is not an item id in [0, %d)", path, e->string, n);
        if (!cJSON_IsString(e) || !*e->valuestring) fail("%s: item %ld: the title is not a non-empty string", path, id);
        if (d->titles[id]) fail("%s: item id %ld appears twice", path, id);
        d->titles[id] = xstrdup(e->valuestring);
    }
    cJSON_Delete(id2name);
    names_build(ix, d->titles, n, path);

    cJSON *name2id = parse_json_file(dir, "name2id.json", path, sizeof path);
    if (!cJSON_IsObject(name2id)) fail("%s: expected an object {\"title\": id, ...}", path);
    for (cJSON *e = name2id->child; e; e = e->next) {
        int id = names_find(ix, e->string, strlen(e->string));
        if (!cJSON_IsNumber(e) || id < 0 || e->valuedouble != id)
            fail("%s: \"%s\" does not match id2name.json", path, e->string);
    }
    cJSON_Delete(name2id);

    cJSON *genres = parse_json_file(dir, "genre_dict.json", path, sizeof path);
    if (!cJSON_IsObject(genres) || cJSON_GetArraySize(genres) < 1) fail("%s: expected a non-empty object of genres", path);
    d->n_genres = cJSON_GetArraySize(genres);
    d->genre_names = xmalloc((size_t)d->n_genres * sizeof(char *));
    int g = 0;
    for (cJSON *e = genres->child; e; e = e->next) d->genre_names[g++] = xstrdup(e->string);
    cJSON_Delete(genres);

    // item genres, filtered to the genre list (unknown genres ignored, repeats once)
    cJSON *n2g = parse_json_file(dir, "name2genre.json", path, sizeof path);
    if (!cJSON_IsObject(n2g)) fail("%s: expected an object {\"title\": [genres], ...}", path);
    d->genre_offsets = xcalloc((size_t)n + 1, sizeof(int));
    int **lists = xcalloc((size_t)n, sizeof(int *)), *counts = xcalloc((size_t)n, sizeof(int)), total = 0;
    for (cJSON *e = n2g->child; e; e = e->next) {
        int id = names_find(ix, e->string, strlen(e->string));
        if (id < 0) continue;   // a genre entry for an item outside the catalogue: irrelevant
        if (!cJSON_IsArray(e)) fail("%s: \"%s\": expected a list of genres", path, e->string);
        lists[id] = xmalloc((size_t)d->n_genres * sizeof(int));
        for (cJSON *v = e->child; v; v = v->next) {
            if (!cJSON_IsString(v)) fail("%s: \"%s\": a genre is not a string", path, e->string);
            for (int k = 0; k < d->n_genres; k++) {
                if (strcmp(v->valuestring, d->genre_names[k]) != 0) continue;
                int dup = 0;
                for (int m = 0; m < counts[id]; m++) dup |= lists[id][m] == k;
                if (!dup) lists[id][counts[id]++] = k;
            }
        }
    }
    cJSON_Delete(n2g);
    for (int i = 0; i < n; i++) d->genre_offsets[i + 1] = (total += counts[i]);
    d->genre_ids = xmalloc((size_t)(total ? total : 1) * sizeof(int));
    for (int i = 0; i < n; i++) {
        if (counts[i]) memcpy(d->genre_ids + d->genre_offsets[i], lists[i], (size_t)counts[i] * sizeof(int));
        free(lists[i]);
    }
    free(lists);
    free(counts);
}

// Cuts s[0..len) (the text between the first and last quote of `input`) into
// titles; see the top of the file. Returns the count and the ids (malloc'd,
// -1 = not in the catalogue) in *out.
static int split_titles(const NameIndex *ix, const char *s, int len, int **out) {
    int *seps = xmalloc((size_t)(len + 1) * sizeof(int)), ns = 0;
    for (int i = 0; i + 4 <= len; i++) if (memcmp(s + i, "\", \"", 4) == 0) seps[ns++] = i;
    seps[ns] = len;   // the end of the last title
    // starts: 0 and seps[k] + 4; best[k] = best score parsing from start k to the end
    long *best = xmalloc((size_t)(ns + 2) * sizeof(long));
    int *next = xmalloc((size_t)(ns + 2) * sizeof(int));
    for (int k = ns; k >= 0; k--) {
        int a = k == 0 ? 0 : seps[k - 1] + 4;
        best[k] = -(1L << 40);
        for (int j = k; j <= ns; j++) {   // piece [a, seps[j]), then start j + 1
            if (seps[j] < a) continue;
            long score = (names_find(ix, s + a, (size_t)(seps[j] - a)) >= 0 ? 1000 : 0) - 1 + (j < ns ? best[j + 1] : 0);
            if (score > best[k]) { best[k] = score; next[k] = j; }
        }
    }
    int n = 0, *ids = xmalloc((size_t)(ns + 1) * sizeof(int));
    for (int k = 0; k <= ns; ) {
        int a = k == 0 ? 0 : seps[k - 1] + 4, j = next[k];
        ids[n++] = names_find(ix, s + a, (size_t)(seps[j] - a));
        k = j + 1;
    }
    *out = ids;
    free(seps); free(best); free(next);
    return n;
}

void prepare_goodreads(const Config *c, const char *dir, RecData *d, RowList *rows) {
    (void)c;
    NameIndex ix;
    load_catalogue(dir, d, &ix);
    char path[CONFIG_PATH_MAX + 64];
    cJSON *train = parse_json_file(dir, "train.json", path, sizeof path);
    if (!cJSON_IsArray(train)) fail("%s: expected an array of {instruction, input, output} rows", path);
    int r = 0;
    for (cJSON *row = train->child; row; row = row->next, r++) {
        const char *field[3] = {"instruction", "input", "output"}, *v[3];
        if (!cJSON_IsObject(row)) fail("%s: row %d is not an object", path, r);
        for (int k = 0; k < 3; k++) {
            cJSON *f = cJSON_GetObjectItemCaseSensitive(row, field[k]);
            if (!cJSON_IsString(f)) fail("%s: row %d: \"%s\" is missing or not a string", path, r, field[k]);
            v[k] = f->valuestring;
        }
        if (r == 0) snprintf(d->instruction, sizeof d->instruction, "%s", v[0]);
        const char *q0 = strchr(v[1], '"'), *q1 = strrchr(v[1], '"');
        if (!q0 || q1 <= q0 + 1) fail("%s: row %d: \"input\" has no quoted titles", path, r);
        int *ids, n = split_titles(&ix, q0 + 1, (int)(q1 - q0 - 1), &ids);
        // output: "Title" then a newline (trailing whitespace tolerated)
        const char *o = v[2];
        size_t ol = strlen(o);
        while (ol > 0 && (o[ol - 1] == '\n' || o[ol - 1] == ' ' || o[ol - 1] == '\r')) ol--;
        if (ol < 3 || o[0] != '"' || o[ol - 1] != '"')
            fail("%s: row %d: \"output\" is not a quoted title followed by a newline", path, r);
        char *title = xstrndup(o + 1, ol - 2);
        int target = names_find(&ix, title, ol - 2);
        rows_add(rows, -1, r, ids, n, target, prompt_text(v[0], v[1]), completion_text(title));
        free(title);
        free(ids);
    }
    cJSON_Delete(train);
    if (r == 0) fail("%s: no rows", path);
    names_free(&ix);
}
