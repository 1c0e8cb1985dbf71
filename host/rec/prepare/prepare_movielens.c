// MovieLens (ml-latest-small: ratings.csv + movies.csv), built the BIGRec way
// (method.md section 5): per user, ratings sorted by timestamp (ties keep the
// file order); every window of `history` consecutive movies and the movie
// after it is a row; the user's last target goes to test, the one before to
// valid, earlier windows to train. Every rating counts as an interaction.
// Genres are those of movies.csv mapped to the 9 reference genres. Titles that
// appear under several movieIds (ml-latest-small has 5) are one catalogue item
// (the first movieId's genres), so titles stay unique for the trie.
#include <string.h>
#include "sources.h"
#include "base/fileio.h"
#include "kernels/errors.h"

static const char *REF_GENRES[] = {"Action", "Adventure", "Sci-Fi", "Thriller", "Drama", "Comedy", "Fantasy",
                                   "Crime", "Romance"};
#define N_REF ((int)(sizeof REF_GENRES / sizeof REF_GENRES[0]))
#define MAX_MOVIE_ID 100000000

// Splits one CSV line in place (RFC 4180 quotes, "" inside quotes); returns
// the number of fields (at most cap), -1 on a broken quote.
static int csv_fields(char *line, char **f, int cap) {
    int n = 0;
    char *p = line;
    for (;;) {
        if (n == cap) return cap + 1;
        if (*p == '"') {
            char *w = ++p;
            f[n++] = w;
            for (;;) {
                if (!*p) return -1;
                if (*p == '"' && p[1] == '"') { *w++ = '"'; p += 2; continue; }
                if (*p == '"') { p++; break; }
                *w++ = *p++;
            }
            *w = 0;   // w <= p - 1, so this never overwrites the next separator
            if (*p && *p != ',') return -1;
        } else {
            f[n++] = p;
            while (*p && *p != ',') p++;
        }
        if (!*p) return n;
        *p++ = 0;
    }
}

// Next line of a whole-file buffer (NUL-terminated, "\r\n" tolerated); NULL at the end.
static char *next_line(char **cursor) {
    char *s = *cursor;
    if (!*s) return NULL;
    char *e = strchr(s, '\n');
    if (e) { *e = 0; *cursor = e + 1; } else *cursor = s + strlen(s);
    size_t n = strlen(s);
    if (n && s[n - 1] == '\r') s[n - 1] = 0;
    return s;
}

static long parse_int(const char *s, const char *path, long line, const char *what, long lo, long hi) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) fail("%s:%ld: %s '%s' is not an integer in [%ld, %ld]", path, line, what, s, lo, hi);
    return v;
}

// movies.csv -> catalogue; returns item_of[movieId] = item (-1: no such movie).
static int *load_movies(const char *dir, RecData *d, long *max_id) {
    char path[CONFIG_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/movies.csv", dir);
    char *text = read_file_text(path, NULL), *cur = text, *line, *f[4];
    line = next_line(&cur);
    if (!line || csv_fields(line, f, 4) != 3 || strcmp(f[0], "movieId") || strcmp(f[1], "title") || strcmp(f[2], "genres"))
        fail("%s:1: expected the header 'movieId,title,genres'", path);
    int cap = 1024, n = 0;
    long *ids = xmalloc((size_t)cap * sizeof(long)), ln = 1;
    d->titles = xmalloc((size_t)cap * sizeof(char *));
    d->genre_offsets = xmalloc((size_t)(cap + 1) * sizeof(int));
    d->genre_ids = xmalloc((size_t)cap * N_REF * sizeof(int));
    d->genre_offsets[0] = 0;
    *max_id = 0;
    while ((line = next_line(&cur))) {
        ln++;
        if (!*line) continue;
        if (csv_fields(line, f, 4) != 3) fail("%s:%ld: expected 3 fields movieId,title,genres", path, ln);
        if (!*f[1]) fail("%s:%ld: empty title", path, ln);
        if (n == cap) {
            cap *= 2;
            ids = realloc(ids, (size_t)cap * sizeof(long));
            d->titles = realloc(d->titles, (size_t)cap * sizeof(char *));
            d->genre_offsets = realloc(d->genre_offsets, (size_t)(cap + 1) * sizeof(int));
            d->genre_ids = realloc(d->genre_ids, (size_t)cap * N_REF * sizeof(int));
            if (!ids || !d->titles || !d->genre_offsets || !d->genre_ids) fail("out of memory (movies)");
        }
        ids[n] = parse_int(f[0], path, ln, "movieId", 0, MAX_MOVIE_ID);
        if (ids[n] > *max_id) *max_id = ids[n];
        d->titles[n] = xstrdup(f[1]);
        int k = d->genre_offsets[n];
        for (char *g = f[2], *e; g; g = e) {   // "Adventure|Animation|Children"
            e = strchr(g, '|');
            if (e) *e++ = 0;
            for (int r = 0; r < N_REF; r++) {
                int dup = 0;
                for (int m = d->genre_offsets[n]; m < k; m++) dup |= d->genre_ids[m] == r;
                if (!dup && strcmp(g, REF_GENRES[r]) == 0) d->genre_ids[k++] = r;
            }
        }
        d->genre_offsets[++n] = k;
    }
    free(text);
    if (n == 0) fail("%s: no movies", path);
    // merge repeated titles: keep the first, map the later movieIds to it
    int *item_of = xmalloc((size_t)(*max_id + 1) * sizeof(int)), kept = 0, merged = 0;
    for (long i = 0; i <= *max_id; i++) item_of[i] = -1;
    char **uniq = xmalloc((size_t)n * sizeof(char *));
    int *goff = xmalloc((size_t)(n + 1) * sizeof(int)), *gids = xmalloc((size_t)(d->genre_offsets[n] + 1) * sizeof(int));
    goff[0] = 0;
    for (int i = 0; i < n; i++) {
        if (item_of[ids[i]] >= 0) fail("%s: movieId %ld appears twice", path, ids[i]);
        int first = -1;
        for (int j = 0; j < kept && first < 0; j++) if (strcmp(uniq[j], d->titles[i]) == 0) first = j;
        if (first >= 0) { item_of[ids[i]] = first; free(d->titles[i]); merged++; continue; }
        item_of[ids[i]] = kept;
        uniq[kept] = d->titles[i];
        int g0 = d->genre_offsets[i], g1 = d->genre_offsets[i + 1];
        memcpy(gids + goff[kept], d->genre_ids + g0, (size_t)(g1 - g0) * sizeof(int));
        goff[kept + 1] = goff[kept] + g1 - g0;
        kept++;
    }
    if (merged) say("prepare: movielens: %d movieIds repeat an earlier title; merged into its item\n", merged);
    free(ids);
    free(d->titles); free(d->genre_offsets); free(d->genre_ids);
    d->titles = uniq; d->genre_offsets = goff; d->genre_ids = gids;
    d->n_items = kept;
    return item_of;
}

typedef struct { int user, line, item; long ts; } Rating;

static int by_user_time(const void *a, const void *b) {
    const Rating *x = a, *y = b;
    if (x->user != y->user) return x->user < y->user ? -1 : 1;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return x->line < y->line ? -1 : x->line > y->line;
}

void prepare_movielens(const Config *c, const char *dir, RecData *d, RowList *rows) {
    long max_id;
    int *item_of = load_movies(dir, d, &max_id);
    d->n_genres = N_REF;
    d->genre_names = xmalloc(N_REF * sizeof(char *));
    for (int g = 0; g < N_REF; g++) d->genre_names[g] = xstrdup(REF_GENRES[g]);
    snprintf(d->instruction, sizeof d->instruction, "%s", WORDING_MOVIES.instruction);

    char path[CONFIG_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/ratings.csv", dir);
    char *text = read_file_text(path, NULL), *cur = text, *line, *f[5];
    line = next_line(&cur);
    if (!line || csv_fields(line, f, 5) != 4 || strcmp(f[0], "userId") || strcmp(f[1], "movieId") ||
        strcmp(f[2], "rating") || strcmp(f[3], "timestamp"))
        fail("%s:1: expected the header 'userId,movieId,rating,timestamp'", path);
    int cap = 1 << 16, n = 0;
    Rating *rt = xmalloc((size_t)cap * sizeof(Rating));
    long ln = 1;
    while ((line = next_line(&cur))) {
        ln++;
        if (!*line) continue;
        if (csv_fields(line, f, 5) != 4) fail("%s:%ld: expected 4 fields userId,movieId,rating,timestamp", path, ln);
        if (n == cap) {
            rt = realloc(rt, (size_t)(cap *= 2) * sizeof(Rating));
            if (!rt) fail("out of memory (ratings)");
        }
        rt[n].user = (int)parse_int(f[0], path, ln, "userId", 0, 2000000000L);
        long mid = parse_int(f[1], path, ln, "movieId", 0, MAX_MOVIE_ID);
        if (mid > max_id || item_of[mid] < 0) fail("%s:%ld: movieId %ld is not in movies.csv", path, ln, mid);
        char *end;
        (void)strtod(f[2], &end);
        if (!*f[2] || *end) fail("%s:%ld: rating '%s' is not a number", path, ln, f[2]);
        rt[n].ts = parse_int(f[3], path, ln, "timestamp", -(1L << 62), 1L << 62);
        rt[n].item = item_of[mid];
        rt[n].line = (int)ln;
        n++;
    }
    free(text);
    free(item_of);
    if (n == 0) fail("%s: no ratings", path);
    qsort(rt, (size_t)n, sizeof(Rating), by_user_time);

    const int H = c->data.history;
    int *seq = xmalloc((size_t)n * sizeof(int)), short_users = 0;
    char **titles = xmalloc((size_t)H * sizeof(char *));
    for (int a = 0, b; a < n; a = b) {
        for (b = a; b < n && rt[b].user == rt[a].user; b++) seq[b - a] = rt[b].item;
        const int len = b - a;
        if (len < H + 1) { short_users++; continue; }
        for (int t = H; t < len; t++) {
            int split = t == len - 1 ? SPLIT_TEST : t == len - 2 ? SPLIT_VALID : SPLIT_TRAIN;
            for (int k = 0; k < H; k++) titles[k] = d->titles[seq[t - H + k]];
            char *input = input_text(&WORDING_MOVIES, titles, H);
            rows_add(rows, split, rt[a].user, seq + t - H, H, seq[t], prompt_text(WORDING_MOVIES.instruction, input),
                     completion_text(d->titles[seq[t]]));
            free(input);
        }
    }
    if (short_users) say("prepare: movielens: %d users with fewer than %d ratings give no rows\n", short_users, H + 1);
    free(seq); free(titles); free(rt);
}
