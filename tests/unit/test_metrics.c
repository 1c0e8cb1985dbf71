// Metrics (host/rec/metrics.c, method.md section 4, docs/metrics.md): hand-computed
// cases with the arithmetic written out, agreement with the independent Python
// implementation (tests/ref/evaluate_ref.py) on the committed random fixture
// tests/ref/metrics/cases.json, the JSONL/table output, and bad input.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cJSON.h>
#include "tests.h"
#include "rec/metrics.h"

#define FIXTURE "tests/ref/metrics/cases.json"
#define TOLERANCE 1e-12

// exact hand values: allow only the rounding of a few double operations
static void assert_close(double got, double want, const char *what) {
    if (fabs(got - want) > 1e-15 * fmax(1.0, fabs(want)))
        print_message("%s: got %.17g, want %.17g\n", what, got, want);
    assert_true(fabs(got - want) <= 1e-15 * fmax(1.0, fabs(want)));
}

// ----------------------------------------------------------------------------
// the hand-computed world
//
// 6 items, 3 genres A=0 B=1 C=2:
//   item 0 {A}   item 1 {A,B}   item 2 {B,C}   item 3 {} (no genres)   item 4 {C}   item 5 {A,B,C}
// 4 rows (N = 4), max_k = 4:
//   row 0 true 0  ranked [0 3 2 5]   hit at rank 0
//   row 1 true 4  ranked [1 0 4 2]   hit at rank 2 (= K-1 for K = 3)
//   row 2 true -1 ranked [5 2 4 3]   outside the catalogue: N only, its list is never read
//   row 3 true 3  ranked [1 5 0 3]   rank 3: just outside K = 3
// so M = 3. Histories: row 0 [1 4], row 1 [3 -1 0], row 2 [2 2], row 3 [5].

static const int G_OFF[7] = {0, 1, 3, 5, 5, 6, 9};
static const int G_IDS[9] = {0, 0, 1, 1, 2, 2, 0, 1, 2};
static const int TRUE_ITEM[4] = {0, 4, -1, 3};
static const int RANKED[16] = {0, 3, 2, 5, 1, 0, 4, 2, 5, 2, 4, 3, 1, 5, 0, 3};
static const int H_OFF[5] = {0, 2, 5, 7, 8};
static const int H_ITEMS[8] = {1, 4, 3, -1, 0, 2, 2, 5};

static Catalogue hand_catalogue(void) {
    return (Catalogue){.n_items = 6, .n_genres = 3, .genre_offsets = G_OFF, .genre_ids = G_IDS};
}

// GH over the histories of all 4 rows (row 2 included):
//   item 1: A+1/2 B+1/2; item 4: C+1; item 3 and -1: nothing; item 0: A+1;
//   item 2 twice: B+1 C+1; item 5: A,B,C +1/3
//   A = 3/2+1/3 = 11/6, B = 3/2+1/3 = 11/6, C = 2+1/3 = 14/6; sum 6 -> GH = (11, 11, 14)/36
static void test_metrics_hand_k1(void **state) {
    (void)state;
    Catalogue cat = hand_catalogue();
    int ks[1] = {1};
    Metrics m;
    metrics_compute(&cat, 4, TRUE_ITEM, RANKED, 4, H_OFF, H_ITEMS, ks, 1, &m);
    assert_int_equal(m.k, 1);
    assert_int_equal(m.n_rows, 4);
    assert_int_equal(m.n_in_catalogue, 3);
    // top-1 lists of the M rows: [0] [1] [1]. Only row 0 hits (rank 0): 1/log2(2) = 1
    assert_close(m.ndcg, 1.0 / 4, "NDCG@1");   // 1 / N
    assert_close(m.hr, 1.0 / 4, "HR@1");
    // distinct {0, 1} = 2 over M*K = 3 slots
    assert_close(m.div_ratio, 2.0 / 3, "DivRatio@1");
    // counts item1: 2, item0: 1; fewer than 3 distinct items: top-3 sum = 3 -> 3/3
    assert_close(m.or_ratio, 1.0, "ORRatio@1");
    // GP: item 0 A+1, item 1 twice A+1 B+1 -> (2, 1, 0)/3 = (24, 12, 0)/36
    // D = GP - GH = (13, 1, -14)/36
    // MGU = (13 + 1 + 14)/36/3 = 28/108 = 7/27; DGU = 13/36 + 14/36 = 27/36 = 3/4
    assert_close(m.mgu, 7.0 / 27, "MGU@1");
    assert_close(m.dgu, 3.0 / 4, "DGU@1");
}

static void test_metrics_hand_k3(void **state) {
    (void)state;
    Catalogue cat = hand_catalogue();
    int ks[1] = {3};
    Metrics m;
    metrics_compute(&cat, 4, TRUE_ITEM, RANKED, 4, H_OFF, H_ITEMS, ks, 1, &m);
    // top-3 lists: [0 3 2] [1 0 4] [1 5 0]
    // row 0 rank 0: 1; row 1 rank 2 = K-1: 1/log2(4) = 1/2; row 3 rank 3 = K: no hit
    assert_close(m.ndcg, 1.5 / 4, "NDCG@3");
    assert_close(m.hr, 2.0 / 4, "HR@3");
    // counts: item0 3, item1 2, items 2,3,4,5 one each -> 6 distinct over 9 slots
    assert_close(m.div_ratio, 6.0 / 9, "DivRatio@3");
    // top three: 3 + 2 + 1, whichever of the four tied items is third -> 6/9
    assert_close(m.or_ratio, 6.0 / 9, "ORRatio@3");
    // GP: item0 x3 A+3; item1 x2 A+1 B+1; item2 B+1/2 C+1/2; item3 nothing; item4 C+1; item5 +1/3 each
    //   A = 4+1/3 = 26/6, B = 3/2+1/3 = 11/6, C = 3/2+1/3 = 11/6; sum 8 -> GP = (26, 11, 11)/48 = (78, 33, 33)/144
    //   GH = (11, 11, 14)/36 = (44, 44, 56)/144 -> D = (34, -11, -23)/144
    // MGU = (34 + 11 + 23)/144/3 = 68/432 = 17/108; DGU = 34/144 + 23/144 = 57/144 = 19/48
    assert_close(m.mgu, 17.0 / 108, "MGU@3");
    assert_close(m.dgu, 19.0 / 48, "DGU@3");
}

// several K in one call give what each K gives alone (nothing leaks between K)
static void test_metrics_hand_several_k(void **state) {
    (void)state;
    Catalogue cat = hand_catalogue();
    int ks[3] = {3, 1, 4};
    Metrics all[3], one;
    metrics_compute(&cat, 4, TRUE_ITEM, RANKED, 4, H_OFF, H_ITEMS, ks, 3, all);
    for (int i = 0; i < 3; i++) {
        metrics_compute(&cat, 4, TRUE_ITEM, RANKED, 4, H_OFF, H_ITEMS, &ks[i], 1, &one);
        assert_int_equal(all[i].k, ks[i]);
        assert_true(all[i].ndcg == one.ndcg && all[i].hr == one.hr && all[i].div_ratio == one.div_ratio &&
                    all[i].or_ratio == one.or_ratio && all[i].mgu == one.mgu && all[i].dgu == one.dgu);
    }
    // K = 4: row 3's rank 3 is now a hit: NDCG = (1 + 1/2 + 1/log2(5)) / 4, HR = 3/4
    assert_close(all[2].ndcg, (1.5 + 1.0 / log2(5.0)) / 4, "NDCG@4");
    assert_close(all[2].hr, 3.0 / 4, "HR@4");
    // lists [0 3 2 5] [1 0 4 2] [1 5 0 3]: counts 0:3 1:2 2:2 3:2 5:2 4:1 -> 6 distinct / 12, top 3+2+2 = 7 / 12
    assert_close(all[2].div_ratio, 6.0 / 12, "DivRatio@4");
    assert_close(all[2].or_ratio, 7.0 / 12, "ORRatio@4");
}

// M = 0: every true item outside the catalogue. NDCG = HR = 0 (N = 2 > 0);
// DivRatio = ORRatio = 0 (0/0 defined as 0); GP is empty, stays all zero, so
// D = -GH. History [0] -> GH = (1, 0, 0): MGU = 1/3, DGU = 0 - (-1) = 1.
static void test_metrics_no_row_in_catalogue(void **state) {
    (void)state;
    Catalogue cat = hand_catalogue();
    int true_item[2] = {-1, -1}, ranked[2] = {-7, 99};   // never read
    int h_off[3] = {0, 1, 1}, h_items[1] = {0}, ks[1] = {1};
    Metrics m;
    metrics_compute(&cat, 2, true_item, ranked, 1, h_off, h_items, ks, 1, &m);
    assert_int_equal(m.n_in_catalogue, 0);
    assert_true(m.ndcg == 0 && m.hr == 0 && m.div_ratio == 0 && m.or_ratio == 0);
    assert_close(m.mgu, 1.0 / 3, "MGU, M = 0");
    assert_close(m.dgu, 1.0, "DGU, M = 0");
}

// Empty GH (no history, or only genre-less / outside titles) stays all zero:
// D = GP. One row, true 2, ranked [2 5]; K = 2: hit at rank 0 -> NDCG = HR = 1.
// GP: item 2 B+1/2 C+1/2, item 5 +1/3 each -> (1/3, 5/6, 5/6), sum 2 -> (2, 5, 5)/12.
// MGU = (2 + 5 + 5)/12/3 = 1/3; DGU = 5/12 - 2/12 = 1/4. DivRatio = 2/2, ORRatio = 2/2.
static void test_metrics_empty_history(void **state) {
    (void)state;
    Catalogue cat = hand_catalogue();
    int true_item[1] = {2}, ranked[2] = {2, 5}, h_off[2] = {0, 2}, h_items[2] = {3, -1}, ks[1] = {2};
    Metrics m;
    metrics_compute(&cat, 1, true_item, ranked, 2, h_off, h_items, ks, 1, &m);
    assert_close(m.ndcg, 1.0, "NDCG");
    assert_close(m.hr, 1.0, "HR");
    assert_close(m.div_ratio, 1.0, "DivRatio");
    assert_close(m.or_ratio, 1.0, "ORRatio");
    assert_close(m.mgu, 1.0 / 3, "MGU, empty GH");
    assert_close(m.dgu, 1.0 / 4, "DGU, empty GH");
}

// ----------------------------------------------------------------------------
// agreement with tests/ref/evaluate_ref.py

// the fixture, with a hint when it is missing
static char *read_fixture(const char *path) {
    if (access(path, R_OK) != 0) fail_msg("cannot open %s (run python3 tests/ref/make_metrics_fixtures.py)", path);
    return read_text_file(path, NULL);
}

// a JSON array of int arrays -> offsets [n + 1] and the concatenation (either may be NULL)
static int *flatten(const cJSON *rows, int **offsets_out) {
    int n = cJSON_GetArraySize(rows), total = 0;
    for (int r = 0; r < n; r++) total += cJSON_GetArraySize(cJSON_GetArrayItem(rows, r));
    int *flat = malloc(sizeof(int) * (size_t)(total + 1)), *off = malloc(sizeof(int) * (size_t)(n + 1));
    off[0] = 0;
    for (int r = 0; r < n; r++) {
        const cJSON *row = cJSON_GetArrayItem(rows, r), *v;
        int j = off[r];
        cJSON_ArrayForEach(v, row) flat[j++] = v->valueint;
        off[r + 1] = j;
    }
    if (offsets_out) *offsets_out = off;
    else free(off);
    return flat;
}

static double rel_diff(double got, double want) {
    if (got == want) return 0;
    return fabs(got - want) / fmax(fabs(want), 1e-300);
}

static double check_case(const cJSON *c) {
    const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
    int n_items = cJSON_GetObjectItem(c, "n_items")->valueint, max_k = cJSON_GetObjectItem(c, "max_k")->valueint;
    const cJSON *true_json = cJSON_GetObjectItem(c, "true_item"), *ks_json = cJSON_GetObjectItem(c, "ks");
    int n_rows = cJSON_GetArraySize(true_json), n_ks = cJSON_GetArraySize(ks_json);
    int *g_off, *h_off;
    int *g_ids = flatten(cJSON_GetObjectItem(c, "item_genres"), &g_off);
    int *h_items = flatten(cJSON_GetObjectItem(c, "history"), &h_off);
    int *ranked = flatten(cJSON_GetObjectItem(c, "ranked"), NULL);
    int *true_item = malloc(sizeof(int) * (size_t)n_rows), ks[8];
    for (int r = 0; r < n_rows; r++) true_item[r] = cJSON_GetArrayItem(true_json, r)->valueint;
    assert_true(n_ks <= 8);
    for (int i = 0; i < n_ks; i++) ks[i] = cJSON_GetArrayItem(ks_json, i)->valueint;
    Catalogue cat = {.n_items = n_items, .n_genres = cJSON_GetObjectItem(c, "n_genres")->valueint,
                     .genre_offsets = g_off, .genre_ids = g_ids};
    Metrics m[8];
    metrics_compute(&cat, n_rows, true_item, ranked, max_k, h_off, h_items, ks, n_ks, m);

    double worst = 0;
    const char *keys[6] = {"NDCG", "HR", "DivRatio", "ORRatio", "MGU", "DGU"};
    for (int i = 0; i < n_ks; i++) {
        const cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "expected"), i);
        assert_int_equal(cJSON_GetObjectItem(e, "k")->valueint, m[i].k);
        assert_int_equal(cJSON_GetObjectItem(e, "N")->valueint, m[i].n_rows);
        assert_int_equal(cJSON_GetObjectItem(e, "M")->valueint, m[i].n_in_catalogue);
        const double got[6] = {m[i].ndcg, m[i].hr, m[i].div_ratio, m[i].or_ratio, m[i].mgu, m[i].dgu};
        for (int q = 0; q < 6; q++) {
            double want = cJSON_GetObjectItem(e, keys[q])->valuedouble, d = rel_diff(got[q], want);
            if (d > TOLERANCE) print_message("  %s %s@%d: C %.17g, Python %.17g\n", name, keys[q], m[i].k, got[q], want);
            if (d > worst) worst = d;
        }
    }
    free(g_off); free(g_ids); free(h_off); free(h_items); free(ranked); free(true_item);
    return worst;
}

static void test_metrics_python_reference(void **state) {
    (void)state;
    char *text = read_fixture(FIXTURE);
    cJSON *root = cJSON_Parse(text);
    assert_non_null(root);
    const cJSON *cases = cJSON_GetObjectItem(root, "cases"), *c;
    assert_true(cJSON_GetArraySize(cases) >= 3);
    double worst = 0;
    cJSON_ArrayForEach(c, cases) worst = fmax(worst, check_case(c));
    if (worst > TOLERANCE) print_message("worst relative difference %.3e > %.0e\n", worst, TOLERANCE);
    assert_true(worst <= TOLERANCE);
    cJSON_Delete(root);
    free(text);
}

// ----------------------------------------------------------------------------
// output

static void test_metrics_jsonl(void **state) {
    (void)state;
    Catalogue cat = hand_catalogue();
    int ks[2] = {1, 3};
    Metrics m[2];
    metrics_compute(&cat, 4, TRUE_ITEM, RANKED, 4, H_OFF, H_ITEMS, ks, 2, m);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    metrics_write_jsonl(f, "sp\"rec\n", 2, m, 2);
    metrics_write_jsonl(f, "eval", -1, m, 1);
    fclose(f);
    // two lines, each one JSON object
    char *nl = strchr(buf, '\n');
    assert_non_null(nl);
    assert_int_equal(nl[1 + strcspn(nl + 1, "\n")], '\n');
    *nl = 0;
    cJSON *a = cJSON_Parse(buf), *b = cJSON_Parse(nl + 1);
    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(cJSON_GetObjectItem(a, "label")->valuestring, "sp\"rec\n");
    assert_int_equal(cJSON_GetObjectItem(a, "iteration")->valueint, 2);
    assert_int_equal(cJSON_GetObjectItem(a, "N")->valueint, 4);
    assert_int_equal(cJSON_GetObjectItem(a, "M")->valueint, 3);
    // %.17g round-trips exactly
    assert_true(cJSON_GetObjectItem(a, "NDCG@3")->valuedouble == m[1].ndcg);
    assert_true(cJSON_GetObjectItem(a, "HR@1")->valuedouble == m[0].hr);
    assert_true(cJSON_GetObjectItem(a, "DivRatio@3")->valuedouble == m[1].div_ratio);
    assert_true(cJSON_GetObjectItem(a, "ORRatio@1")->valuedouble == m[0].or_ratio);
    assert_true(cJSON_GetObjectItem(a, "MGU@3")->valuedouble == m[1].mgu);
    assert_true(cJSON_GetObjectItem(a, "DGU@1")->valuedouble == m[0].dgu);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(b, "iteration")));
    assert_null(cJSON_GetObjectItem(b, "NDCG@3"));
    cJSON_Delete(a);
    cJSON_Delete(b);
    free(buf);

    // the table: a header, one line per K, the N/M line
    f = open_memstream(&buf, &len);
    metrics_print_table(f, "sft", m, 2);
    fclose(f);
    assert_non_null(strstr(buf, "DivRatio"));
    assert_non_null(strstr(buf, "0.2500"));   // NDCG@1
    assert_non_null(strstr(buf, "N = 4 rows, M = 3"));
    free(buf);
}

// ----------------------------------------------------------------------------
// bad input: one-line user errors

enum { BAD_K_OVER_CATALOGUE, BAD_K_OVER_LIST, BAD_K_ZERO, BAD_DUPLICATE, BAD_RANKED_ID, BAD_TRUE_ID,
       BAD_HISTORY_ID, BAD_GENRE_ID, BAD_NO_ROWS };

static void bad_child(void *arg) {
    int which = *(int *)arg;
    Catalogue cat = hand_catalogue();
    int ranked[16], true_item[4], h_items[8], g_ids[9], ks[1] = {3};
    memcpy(ranked, RANKED, sizeof ranked);
    memcpy(true_item, TRUE_ITEM, sizeof true_item);
    memcpy(h_items, H_ITEMS, sizeof h_items);
    memcpy(g_ids, G_IDS, sizeof g_ids);
    cat.genre_ids = g_ids;
    int n_rows = 4;
    Metrics m;
    switch (which) {
    case BAD_K_OVER_CATALOGUE: metrics_check_k(7, cat.n_items); break;
    case BAD_K_OVER_LIST: ks[0] = 5; break;
    case BAD_K_ZERO: ks[0] = 0; break;
    case BAD_DUPLICATE: ranked[3 * 4 + 3] = 1; break;   // row 3: [1 5 0 1]
    case BAD_RANKED_ID: ranked[1 * 4 + 2] = 6; break;
    case BAD_TRUE_ID: true_item[1] = 6; break;
    case BAD_HISTORY_ID: h_items[3] = -2; break;
    case BAD_GENRE_ID: g_ids[4] = 3; break;
    case BAD_NO_ROWS: n_rows = 0; break;
    }
    metrics_compute(&cat, n_rows, true_item, ranked, 4, H_OFF, h_items, ks, 1, &m);
}

static void test_metrics_bad_input(void **state) {
    (void)state;
    struct { int which; const char *needle; } cases[] = {
        {BAD_K_OVER_CATALOGUE, "K = 7 is larger than the catalogue (6 items)"},
        {BAD_K_OVER_LIST, "K = 5 is larger than the ranked lists (4 items each)"},
        {BAD_K_ZERO, "K must be at least 1"},
        {BAD_DUPLICATE, "test row 3: item 1 appears twice"},
        {BAD_RANKED_ID, "test row 1: ranked item id 6 at position 2"},
        {BAD_TRUE_ID, "test row 1: true item id 6"},
        {BAD_HISTORY_ID, "test row 1: history item id -2"},
        {BAD_GENRE_ID, "item 2 has genre id 3"},
        {BAD_NO_ROWS, "no test rows"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[4096];
        int rc = run_forked(bad_child, &cases[i].which, err, sizeof err);
        const char *msg = strstr(err, "sprec: error: ");
        if (rc != 1 || !msg || !strstr(msg, cases[i].needle))
            print_message("case %zu: exit %d, stderr:\n%s(wanted '%s')\n", i, rc, err, cases[i].needle);
        assert_int_equal(rc, 1);
        assert_non_null(msg);
        assert_non_null(strstr(msg, cases[i].needle));
        const char *nl = strchr(msg, '\n');   // exactly one line
        assert_true(nl && nl[1] == 0);
    }
}

DEFINE_TEST_GROUP(test_metrics,
    cmocka_unit_test(test_metrics_hand_k1),
    cmocka_unit_test(test_metrics_hand_k3),
    cmocka_unit_test(test_metrics_hand_several_k),
    cmocka_unit_test(test_metrics_no_row_in_catalogue),
    cmocka_unit_test(test_metrics_empty_history),
    cmocka_unit_test(test_metrics_python_reference),
    cmocka_unit_test(test_metrics_jsonl),
    cmocka_unit_test(test_metrics_bad_input))
