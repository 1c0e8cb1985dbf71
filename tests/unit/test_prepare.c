// sprec prepare: the synthetic world, Goodreads (a hand-written fixture, and
// the real sample when ../shared/data/goodreads exists), MovieLens (a fixture,
// and the real ml-latest-small when present), tokenized output and bad input.
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "tests.h"
#include "rec/recdata.h"
#include "tokenizer/tokenizer.h"

#define TMP "build/test-tmp/prep"
#define REAL_GOODREADS "../shared/data/goodreads"
#define REAL_MOVIELENS "../shared/data/movielens-small"

static void setup_dir(void) {
    char out[4096];
    assert_int_equal(run_capture("mkdir -p " TMP, out, sizeof out), 0);
    write_file(TMP "/synth.ini", "[data]\nsource = synthetic\nsynth_items = 200\nsynth_users = 2000\nseed = 7\n");
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void assert_same_ints(const int *a, const int *b, long n) {
    for (long i = 0; i < n; i++) assert_int_equal(a[i], b[i]);
}

static void assert_same_texts(char **a, char **b, int n) {
    for (int i = 0; i < n; i++) assert_string_equal(a[i], b[i]);
}

// Every row: ids in range, and the prompt / completion say the same as the ids.
static void check_rows_consistent(const RecData *d) {
    for (int s = 0; s < N_SPLITS; s++) {
        const RecSplit *sp = &d->split[s];
        assert_true(sp->n > 0);
        for (int r = 0; r < sp->n; r++) {
            assert_true(sp->target[r] >= -1 && sp->target[r] < d->n_items);
            if (sp->target[r] >= 0) {
                char want[1024];
                snprintf(want, sizeof want, "\"%s\"\n", d->titles[sp->target[r]]);
                assert_string_equal(sp->completion[r], want);
            }
            assert_non_null(strstr(sp->prompt[r], "### Response:\n"));
            for (int k = sp->hist_offsets[r]; k < sp->hist_offsets[r + 1]; k++) {
                const int id = sp->hist_items[k];
                assert_true(id >= -1 && id < d->n_items);
                if (id < 0) continue;
                char quoted[1024];
                snprintf(quoted, sizeof quoted, "\"%s\"", d->titles[id]);
                assert_non_null(strstr(sp->prompt[r], quoted));
            }
        }
    }
}

static void test_prepare_synthetic_deterministic(void **state) {
    (void)state;
    setup_dir();
    run_ok("build/sprec prepare " TMP "/synth.ini -o " TMP "/s1.h5");
    run_ok("build/sprec prepare " TMP "/synth.ini -o " TMP "/s2.h5");
    run_ok("build/sprec prepare " TMP "/synth.ini -o " TMP "/s3.h5 --data.seed=8");
    RecData a, b, c;
    recdata_load(&a, TMP "/s1.h5");
    recdata_load(&b, TMP "/s2.h5");
    recdata_load(&c, TMP "/s3.h5");
    assert_string_equal(a.source, "synthetic");
    assert_int_equal(a.n_items, b.n_items);
    assert_int_equal(a.n_genres, b.n_genres);
    assert_same_texts(a.titles, b.titles, a.n_items);
    assert_same_texts(a.genre_names, b.genre_names, a.n_genres);
    assert_same_ints(a.genre_offsets, b.genre_offsets, a.n_items + 1);
    assert_same_ints(a.genre_ids, b.genre_ids, a.genre_offsets[a.n_items]);
    assert_same_ints(a.popularity, b.popularity, a.n_items);
    int differs = 0;
    for (int s = 0; s < N_SPLITS; s++) {
        RecSplit *x = &a.split[s], *y = &b.split[s];
        assert_int_equal(x->n, y->n);
        assert_same_ints(x->hist_offsets, y->hist_offsets, x->n + 1);
        assert_same_ints(x->hist_items, y->hist_items, x->hist_offsets[x->n]);
        assert_same_ints(x->target, y->target, x->n);
        assert_same_ints(x->source_row, y->source_row, x->n);
        assert_same_texts(x->prompt, y->prompt, x->n);
        assert_same_texts(x->completion, y->completion, x->n);
        for (int r = 0; r < x->n && r < c.split[s].n; r++) differs |= x->target[r] != c.split[s].target[r];
    }
    assert_true(differs);   // another seed, another world
    assert_int_equal(a.split[SPLIT_TRAIN].n, 1000);
    assert_int_equal(a.split[SPLIT_VALID].n, 500);
    assert_int_equal(a.split[SPLIT_TEST].n, 500);
    recdata_free(&a); recdata_free(&b); recdata_free(&c);
}

static int cmp_desc(const void *x, const void *y) { return *(const int *)y - *(const int *)x; }

static void test_prepare_synthetic_popularity(void **state) {
    (void)state;
    setup_dir();
    run_ok("build/sprec prepare " TMP "/synth.ini -o " TMP "/pop.h5");
    RecData d;
    recdata_load(&d, TMP "/pop.h5");
    check_rows_consistent(&d);
    for (int s = 0; s < N_SPLITS; s++)   // synthetic: every id is a catalogue item, 10 history items each
        for (int r = 0; r < d.split[s].n; r++) {
            assert_true(d.split[s].target[r] >= 0);
            assert_int_equal(d.split[s].hist_offsets[r + 1] - d.split[s].hist_offsets[r], 10);
            for (int k = d.split[s].hist_offsets[r]; k < d.split[s].hist_offsets[r + 1]; k++)
                assert_true(d.split[s].hist_items[k] >= 0);
        }
    int *pop = malloc((size_t)d.n_items * sizeof(int)), total = 0, top = 0;
    memcpy(pop, d.popularity, (size_t)d.n_items * sizeof(int));
    qsort(pop, (size_t)d.n_items, sizeof(int), cmp_desc);
    for (int i = 0; i < d.n_items; i++) total += pop[i];
    for (int i = 0; i < d.n_items / 10; i++) top += pop[i];
    assert_int_equal(total, d.split[SPLIT_TRAIN].n);
    // Zipf-like: the top 10% of items are far more than 10% of the targets,
    // and the most popular item is far above the median one
    print_message("synthetic popularity: top 10%% of items = %d of %d targets, max %d, median %d\n", top, total,
                  pop[0], pop[d.n_items / 2]);
    assert_true(top * 10 > total * 3);
    assert_true(pop[0] >= 5 * (pop[d.n_items / 2] + 1));
    free(pop);
    recdata_free(&d);
}

// A goodreads-format folder written by the test. Titles with a comma, with
// quotes, and one containing the separator `", "`, whose first part is a
// catalogue title too.
static void write_goodreads_fixture(const char *dir, int with_id2name) {
    char cmd[512], out[1024], path[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    assert_int_equal(run_capture(cmd, out, sizeof out), 0);
    snprintf(path, sizeof path, "%s/id2name.json", dir);
    if (with_id2name)
        write_file(path, "{\"0\": \"Tom Sawyer, Detective\", \"1\": \"Say \\\"Yes\", \"2\": \"Say \\\"Yes\\\", \\\"No\\\"\","
                         " \"3\": \"The \\\"Best\\\" Book, Vol. 1\", \"4\": \"Plain\"}");
    snprintf(path, sizeof path, "%s/name2id.json", dir);
    write_file(path, "{\"Tom Sawyer, Detective\": 0, \"Say \\\"Yes\": 1, \"Say \\\"Yes\\\", \\\"No\\\"\": 2,"
                     " \"The \\\"Best\\\" Book, Vol. 1\": 3, \"Plain\": 4}");
    snprintf(path, sizeof path, "%s/genre_dict.json", dir);
    write_file(path, "{\"fiction\": 0, \"romance\": 0}");
    snprintf(path, sizeof path, "%s/name2genre.json", dir);
    write_file(path, "{\"Tom Sawyer, Detective\": [\"fiction\", \"mystery\", \"fiction\"], \"Plain\": [\"romance\", \"fiction\"]}");
    snprintf(path, sizeof path, "%s/train.json", dir);
    write_file(path,
        "[\n"
        " {\"instruction\": \"I\", \"input\": \"The user has played the following books before: \\\"Tom Sawyer, Detective\\\", "
        "\\\"Say \\\"Yes\\\", \\\"No\\\"\\\", \\\"The \\\"Best\\\" Book, Vol. 1\\\", please write a new books that the user may bought\","
        " \"output\": \"\\\"Say \\\"Yes\\\"\\n\"},\n"
        " {\"instruction\": \"I\", \"input\": \"The user has played the following books before: \\\"Unknown, Book\\\", "
        "\\\"Say \\\"Yes\\\", please write a new books that the user may bought\", \"output\": \"\\\"Not Here\\\"\\n\"},\n"
        " {\"instruction\": \"I\", \"input\": \"x \\\"Plain\\\", \\\"Plain\\\" y\", \"output\": \"\\\"Plain\\\"\\n\"},\n"
        " {\"instruction\": \"I\", \"input\": \"x \\\"Plain\\\" y\", \"output\": \"\\\"Tom Sawyer, Detective\\\"\\n\"}\n"
        "]\n");
}

static const RecSplit *find_row(const RecData *d, int source_row, int *r_out) {
    for (int s = 0; s < N_SPLITS; s++)
        for (int r = 0; r < d->split[s].n; r++)
            if (d->split[s].source_row[r] == source_row) { *r_out = r; return &d->split[s]; }
    fail_msg("row %d not found", source_row);
    return NULL;
}

static void test_prepare_goodreads_fixture(void **state) {
    (void)state;
    setup_dir();
    write_goodreads_fixture(TMP "/gr", 1);
    write_file(TMP "/gr.ini", "[data]\nsource = goodreads\ndir = " TMP "/gr\nvalid_rows = 1\ntest_rows = 1\n");
    run_ok("build/sprec prepare " TMP "/gr.ini -o " TMP "/gr.h5");
    RecData d;
    recdata_load(&d, TMP "/gr.h5");
    assert_int_equal(d.n_items, 5);
    assert_string_equal(d.titles[2], "Say \"Yes\", \"No\"");
    assert_int_equal(d.n_genres, 2);
    assert_int_equal(d.genre_offsets[1] - d.genre_offsets[0], 1);   // "mystery" is not a dataset genre, "fiction" once
    assert_int_equal(d.genre_ids[d.genre_offsets[0]], 0);
    assert_int_equal(d.genre_offsets[4] - d.genre_offsets[1], 0);   // no genres listed
    assert_int_equal(d.genre_offsets[5] - d.genre_offsets[4], 2);
    check_rows_consistent(&d);
    int r = -1;
    const RecSplit *sp = find_row(&d, 0, &r);
    int want0[] = {0, 2, 3};   // the separator inside title 2 does not split it
    assert_int_equal(sp->hist_offsets[r + 1] - sp->hist_offsets[r], 3);
    assert_same_ints(sp->hist_items + sp->hist_offsets[r], want0, 3);
    assert_int_equal(sp->target[r], 1);
    assert_string_equal(sp->completion[r], "\"Say \"Yes\"\n");
    sp = find_row(&d, 1, &r);
    int want1[] = {-1, 1};
    assert_int_equal(sp->hist_offsets[r + 1] - sp->hist_offsets[r], 2);
    assert_same_ints(sp->hist_items + sp->hist_offsets[r], want1, 2);
    assert_int_equal(sp->target[r], -1);
    assert_string_equal(sp->completion[r], "\"Not Here\"\n");
    assert_non_null(strstr(sp->prompt[r], "### Instruction:\nI\n\n### Input:\nThe user has played"));
    sp = find_row(&d, 2, &r);
    int want2[] = {4, 4};
    assert_same_ints(sp->hist_items + sp->hist_offsets[r], want2, 2);
    recdata_free(&d);
}

static void test_prepare_goodreads_real(void **state) {
    (void)state;
    if (!is_dir(REAL_GOODREADS)) { print_message("skipped: %s not present\n", REAL_GOODREADS); return; }
    setup_dir();
    write_file(TMP "/real_gr.ini", "[data]\nsource = goodreads\ndir = " REAL_GOODREADS "\n");
    char out[8192];
    assert_int_equal(run_capture("build/sprec prepare " TMP "/real_gr.ini -o " TMP "/real_gr.h5", out, sizeof out), 0);
    RecData d;
    recdata_load(&d, TMP "/real_gr.h5");
    assert_int_equal(d.n_items, 4058);
    assert_int_equal(d.n_genres, 7);
    assert_int_equal(d.split[SPLIT_TRAIN].n, 4000);
    assert_int_equal(d.split[SPLIT_VALID].n, 500);
    assert_int_equal(d.split[SPLIT_TEST].n, 500);
    check_rows_consistent(&d);
    for (int s = 0; s < N_SPLITS; s++) {   // the counts on the summary lines are the file's
        const RecSplit *sp = &d.split[s];
        int out_t = 0, out_h = 0;
        for (int r = 0; r < sp->n; r++) out_t += sp->target[r] < 0;
        for (int i = 0; i < sp->hist_offsets[sp->n]; i++) out_h += sp->hist_items[i] < 0;
        char line[256];
        snprintf(line, sizeof line, "%d rows; outside the catalogue: %d targets, %d of %d history titles", sp->n, out_t,
                 out_h, sp->hist_offsets[sp->n]);
        if (!strstr(out, line)) print_message("missing '%s' in:\n%s\n", line, out);
        assert_non_null(strstr(out, line));
    }
    recdata_free(&d);
}

static void test_prepare_movielens_fixture(void **state) {
    (void)state;
    setup_dir();
    char out[1024];
    assert_int_equal(run_capture("rm -rf " TMP "/ml && mkdir -p " TMP "/ml", out, sizeof out), 0);
    write_file(TMP "/ml/movies.csv", "movieId,title,genres\n"
               "1,Toy Story (1995),Adventure|Animation|Comedy\n"
               "2,\"American President, The (1995)\",Comedy|Drama|Romance\n"
               "3,\"Say \"\"Hi\"\" (2000)\",(no genres listed)\n"
               "4,Twin (1990),Drama\n"
               "5,Twin (1990),Action\n");
    // user 7: 13 ratings (item sequence by time: 1 2 3 4 5 1 2 3 4 1 2 3 4; ties keep file order);
    // user 9: 10 ratings (too few for one window of 10 + 1)
    char ratings[4096] = "userId,movieId,rating,timestamp\r\n";
    const int seq7[13] = {1, 2, 3, 4, 5, 1, 2, 3, 4, 1, 2, 3, 4};
    for (int k = 12; k >= 0; k--) {   // written in reverse time order, with two equal timestamps
        char line[64];
        snprintf(line, sizeof line, "7,%d,4.0,%d\r\n", seq7[k], k == 1 ? 100 : 100 + k);
        strcat(ratings, line);
    }
    for (int k = 0; k < 10; k++) {
        char line[64];
        snprintf(line, sizeof line, "9,%d,3.5,%d\r\n", 1 + k % 4, 500 + k);
        strcat(ratings, line);
    }
    write_file(TMP "/ml/ratings.csv", ratings);
    write_file(TMP "/ml.ini", "[data]\nsource = movielens\ndir = " TMP "/ml\n");
    run_ok("build/sprec prepare " TMP "/ml.ini -o " TMP "/ml.h5");
    RecData d;
    recdata_load(&d, TMP "/ml.h5");
    assert_int_equal(d.n_items, 4);   // the two "Twin (1990)" are one item
    assert_string_equal(d.titles[1], "American President, The (1995)");
    assert_string_equal(d.titles[2], "Say \"Hi\" (2000)");
    assert_int_equal(d.n_genres, 9);
    assert_int_equal(d.split[SPLIT_TRAIN].n, 1);
    assert_int_equal(d.split[SPLIT_VALID].n, 1);
    assert_int_equal(d.split[SPLIT_TEST].n, 1);
    check_rows_consistent(&d);
    // k = 0 and k = 1 share a timestamp and k = 1 comes first in the file, so by time the movies are
    // 2 1 3 4 5 1 2 3 4 1 2 3 4; as items (movieId - 1, movie 5 merged into item 3):
    const int want_train[10] = {1, 0, 2, 3, 3, 0, 1, 2, 3, 0};
    assert_same_ints(d.split[SPLIT_TRAIN].hist_items, want_train, 10);
    assert_int_equal(d.split[SPLIT_TRAIN].target[0], 1);
    assert_int_equal(d.split[SPLIT_VALID].target[0], 2);
    assert_int_equal(d.split[SPLIT_TEST].target[0], 3);
    assert_int_equal(d.split[SPLIT_TEST].source_row[0], 7);
    assert_non_null(strstr(d.split[SPLIT_TEST].prompt[0], "The user has watched the following movies before: \""));
    assert_int_equal(d.popularity[1], 1);
    recdata_free(&d);
}

static void test_prepare_movielens_real(void **state) {
    (void)state;
    if (!is_dir(REAL_MOVIELENS)) { print_message("skipped: %s not present\n", REAL_MOVIELENS); return; }
    setup_dir();
    write_file(TMP "/real_ml.ini", "[data]\nsource = movielens\ndir = " REAL_MOVIELENS "\n");
    run_ok("build/sprec prepare " TMP "/real_ml.ini -o " TMP "/real_ml.h5");
    RecData d;
    recdata_load(&d, TMP "/real_ml.h5");
    assert_int_equal(d.n_items, 9737);   // 9742 movies, 5 repeated titles
    assert_int_equal(d.split[SPLIT_VALID].n, 610);
    assert_int_equal(d.split[SPLIT_TEST].n, 610);
    assert_int_equal(d.split[SPLIT_TRAIN].n + 1220, 100836 - 610 * 10);
    recdata_free(&d);
    remove(TMP "/real_ml.h5");
}

// Mask = 1 exactly on the completion tokens, which equal the target item's
// catalogue tokens; the prompt tokens are the prompt text's own.
static void test_prepare_tokenized_mask(void **state) {
    (void)state;
    setup_dir();
    char out[4096];
    assert_int_equal(run_capture("gzip -dc tests/ref/tokenizer/gpt2.tokenizer.json.gz > " TMP "/gpt2.json", out, sizeof out), 0);
    run_ok("build/sprec prepare " TMP "/synth.ini -o " TMP "/tok.h5 --data.synth_users=60 --data.valid_rows=10 "
           "--data.test_rows=10 --data.tokenizer=" TMP "/gpt2.json");
    RecData d;
    recdata_load(&d, TMP "/tok.h5");
    assert_true(d.tokenized);
    size_t len;
    char *json = read_text_file(TMP "/gpt2.json", &len);
    Tokenizer *tok = tokenizer_from_json(json, len, NULL, 0, "gpt2.json");
    free(json);
    for (int i = 0; i < d.n_items; i++) {   // catalogue tokens = the completion text alone
        char text[512];
        snprintf(text, sizeof text, "\"%s\"\n", d.titles[i]);
        int *ids, n = tokenizer_encode(tok, text, strlen(text), 0, &ids);
        assert_int_equal(n, d.item_tok_offsets[i + 1] - d.item_tok_offsets[i]);
        assert_same_ints(ids, d.item_tok + d.item_tok_offsets[i], n);
        free(ids);
    }
    for (int s = 0; s < N_SPLITS; s++) {
        const RecSplit *sp = &d.split[s];
        for (int r = 0; r < sp->n; r++) {
            const int *row = sp->tokens + (size_t)r * sp->T, it = sp->target[r];
            const float *mask = sp->mask + (size_t)r * sp->T;
            int *ids, n = tokenizer_encode(tok, sp->prompt[r], strlen(sp->prompt[r]), 1, &ids);
            assert_int_equal(n, sp->prompt_len[r]);
            assert_same_ints(ids, row, n);
            free(ids);
            const int c0 = d.item_tok_offsets[it], cn = d.item_tok_offsets[it + 1] - c0;
            assert_int_equal(sp->lengths[r], sp->prompt_len[r] + cn);
            assert_same_ints(row + sp->prompt_len[r], d.item_tok + c0, cn);
            for (int t = 0; t < sp->T; t++)
                assert_true(mask[t] == ((t >= sp->prompt_len[r] && t < sp->lengths[r]) ? 1.0f : 0.0f));
        }
    }
    tokenizer_free(tok);
    recdata_free(&d);
}

static void test_prepare_help(void **state) {
    (void)state;
    char out[16384];
    assert_int_equal(run_capture("build/sprec prepare --help", out, sizeof out), 0);
    assert_non_null(strstr(out, "[data] source = synthetic"));
    assert_non_null(strstr(out, "[data] synth_zipf"));
    assert_non_null(strstr(out, "[data] tokenizer"));
}

static void test_prepare_bad_input(void **state) {
    (void)state;
    setup_dir();
    char cmd[1024];
    // missing catalogue file
    write_goodreads_fixture(TMP "/bad_nocat", 0);
    write_file(TMP "/bad_nocat.ini", "[data]\nsource = goodreads\ndir = " TMP "/bad_nocat\nvalid_rows = 1\ntest_rows = 1\n");
    expect_error(SPREC_CHECKED " prepare " TMP "/bad_nocat.ini -o " TMP "/x.h5", "id2name.json", NULL);
    // malformed JSON: a syntax error (line named), a row without "output"
    write_goodreads_fixture(TMP "/bad_json", 1);
    write_file(TMP "/bad_json/train.json", "[\n {\"instruction\": \"I\", \"input\": \"\\\"Plain\\\"\", \"output\": \"\\\"Plain\\\"\\n\"},\n"
                                          " {\"instruction\": \"I\", \"input\": \"\\\"Plain\\\"\" \"output\": 3}\n]\n");
    write_file(TMP "/bad_json.ini", "[data]\nsource = goodreads\ndir = " TMP "/bad_json\nvalid_rows = 1\ntest_rows = 1\n");
    expect_error(SPREC_CHECKED " prepare " TMP "/bad_json.ini -o " TMP "/x.h5", "train.json:3", "malformed JSON");
    write_file(TMP "/bad_json/train.json", "[{\"instruction\": \"I\", \"input\": \"\\\"Plain\\\"\", \"output\": \"\\\"Plain\\\"\\n\"},"
                                          " {\"instruction\": \"I\", \"input\": \"\\\"Plain\\\"\"}]");
    expect_error(SPREC_CHECKED " prepare " TMP "/bad_json.ini -o " TMP "/x.h5", "row 1", "output");
    write_file(TMP "/bad_json/train.json", "[{\"instruction\": \"I\", \"input\": \"no titles\", \"output\": \"\\\"Plain\\\"\\n\"}]");
    expect_error(SPREC_CHECKED " prepare " TMP "/bad_json.ini -o " TMP "/x.h5", "row 0", "no quoted titles");
    // malformed CSV rows
    char out[256];
    assert_int_equal(run_capture("rm -rf " TMP "/bad_ml && mkdir -p " TMP "/bad_ml", out, sizeof out), 0);
    write_file(TMP "/bad_ml/movies.csv", "movieId,title,genres\n1,A (1990),Drama\n2,B (1991)\n");
    write_file(TMP "/bad_ml/ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,5\n");
    write_file(TMP "/bad_ml.ini", "[data]\nsource = movielens\ndir = " TMP "/bad_ml\n");
    expect_error(SPREC_CHECKED " prepare " TMP "/bad_ml.ini -o " TMP "/x.h5", "movies.csv:3", "3 fields");
    write_file(TMP "/bad_ml/movies.csv", "movieId,title,genres\n1,\"A (1990),Drama\n");
    expect_error(SPREC_CHECKED " prepare " TMP "/bad_ml.ini -o " TMP "/x.h5", "movies.csv:2", NULL);
    write_file(TMP "/bad_ml/movies.csv", "movieId,title,genres\n1,A (1990),Drama\n");
    write_file(TMP "/bad_ml/ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,5\n1,x,4.0,6\n");
    expect_error(SPREC_CHECKED " prepare " TMP "/bad_ml.ini -o " TMP "/x.h5", "ratings.csv:3", "movieId");
    write_file(TMP "/bad_ml/ratings.csv", "userId,movieId,rating,timestamp\n1,7,4.0,5\n");
    expect_error(SPREC_CHECKED " prepare " TMP "/bad_ml.ini -o " TMP "/x.h5", "ratings.csv:2", "not in movies.csv");
    // empty splits
    snprintf(cmd, sizeof cmd, SPREC_CHECKED " prepare " TMP "/synth.ini -o " TMP "/x.h5 --data.synth_users=50 --data.valid_rows=0 --data.test_rows=10");
    expect_error(cmd, "split 'valid' is empty", NULL);
    snprintf(cmd, sizeof cmd, SPREC_CHECKED " prepare " TMP "/synth.ini -o " TMP "/x.h5 --data.synth_users=50 --data.valid_rows=25 --data.test_rows=25");
    expect_error(cmd, "split 'train' is empty", NULL);
    write_goodreads_fixture(TMP "/bad_split", 1);
    write_file(TMP "/bad_split.ini", "[data]\nsource = goodreads\ndir = " TMP "/bad_split\nvalid_rows = 2\ntest_rows = 2\n");
    expect_error(SPREC_CHECKED " prepare " TMP "/bad_split.ini -o " TMP "/x.h5", "split 'train' is empty", NULL);
    // a missing source folder, a bad key value
    snprintf(cmd, sizeof cmd, SPREC_CHECKED " prepare " TMP "/synth.ini -o " TMP "/x.h5 --data.source=goodreads --data.dir=" TMP "/nowhere");
    expect_error(cmd, "nowhere", NULL);
    expect_error(SPREC_CHECKED " prepare " TMP "/synth.ini -o " TMP "/x.h5 --data.source=netflix", "source", NULL);
    expect_error(SPREC_CHECKED " prepare " TMP "/synth.ini -o " TMP "/x.h5 --data.tokenizer=" TMP "/no-tokenizer.json",
                 "no-tokenizer.json", NULL);
    struct stat st;
    assert_true(stat(TMP "/x.h5", &st) != 0);   // nothing written on failure
}

DEFINE_TEST_GROUP(test_prepare,
    cmocka_unit_test(test_prepare_synthetic_deterministic),
    cmocka_unit_test(test_prepare_synthetic_popularity),
    cmocka_unit_test(test_prepare_goodreads_fixture),
    cmocka_unit_test(test_prepare_goodreads_real),
    cmocka_unit_test(test_prepare_movielens_fixture),
    cmocka_unit_test(test_prepare_movielens_real),
    cmocka_unit_test(test_prepare_tokenized_mask),
    cmocka_unit_test(test_prepare_help),
    cmocka_unit_test(test_prepare_bad_input),
)
