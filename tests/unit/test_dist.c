// host/base/dist.h: the shares of every rank tile [0, n) contiguously in rank order
// with sizes differing by at most one, for any world size (including more ranks
// than items); the single-process world is rank 0 of 1 and its combines are the
// identity.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "tests.h"
#include "base/dist/dist.h"

static void test_dist_shares(void **state) {
    (void)state;
    const int worlds[] = {1, 2, 3, 7, 8, 64};
    const int ns[] = {0, 1, 5, 8, 63, 64, 65, 1000};
    for (size_t w = 0; w < sizeof worlds / sizeof *worlds; w++)
        for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
            const int n = ns[k];
            int next = 0, smallest = n + 1, largest = -1;
            for (int r = 0; r < worlds[w]; r++) {
                const Dist d = {.rank = r, .world = worlds[w]};
                int lo, hi;
                dist_share(&d, n, &lo, &hi);
                assert_int_equal(lo, next);
                assert_true(hi >= lo);
                if (hi - lo < smallest) smallest = hi - lo;
                if (hi - lo > largest) largest = hi - lo;
                next = hi;
            }
            assert_int_equal(next, n);
            assert_true(largest - smallest <= 1);
        }
}

// dist_share_cost: the shares tile [0, n) in rank order and each rank's cost is within one item's cost of
// total / world (random costs, and costs 0 = dist_share's shares)
static void test_dist_share_cost(void **state) {
    (void)state;
    srand(7);
    double cost[300];
    const int worlds[] = {1, 2, 3, 5, 8, 400};
    for (size_t w = 0; w < sizeof worlds / sizeof *worlds; w++)
        for (int n = 0; n <= 300; n += 37) {
            double total = 0, largest = 0;
            for (int i = 0; i < n; i++) {
                cost[i] = (i % 5 == 0) ? 0 : 1 + rand() % 400;   // some free items, some 400x another
                total += cost[i];
                if (cost[i] > largest) largest = cost[i];
            }
            int next = 0;
            for (int r = 0; r < worlds[w]; r++) {
                const Dist d = {.rank = r, .world = worlds[w]};
                int lo, hi;
                dist_share_cost(&d, cost, n, &lo, &hi);
                assert_int_equal(lo, next);
                assert_true(hi >= lo);
                double mine = 0;
                for (int i = lo; i < hi; i++) mine += cost[i];
                assert_true(fabs(mine - total / worlds[w]) <= largest + 1e-9);
                next = hi;
            }
            assert_int_equal(next, n);
        }
    memset(cost, 0, sizeof cost);
    for (int r = 0; r < 3; r++) {
        const Dist d = {.rank = r, .world = 3};
        int lo, hi, lo0, hi0;
        dist_share_cost(&d, cost, 10, &lo, &hi);
        dist_share(&d, 10, &lo0, &hi0);
        assert_true(lo == lo0 && hi == hi0);
    }
}

static void test_dist_single(void **state) {
    (void)state;
    const Dist *d = dist_world();
    assert_int_equal(d->rank, 0);
    assert_int_equal(d->world, 1);
    assert_true(dist_is_root(d));
    int lo, hi;
    dist_share(d, 17, &lo, &hi);
    assert_int_equal(lo, 0);
    assert_int_equal(hi, 17);
    double x[3] = {1.5, -2, 3};
    dist_sum_host(d, x, 3);
    assert_true(x[0] == 1.5 && x[1] == -2 && x[2] == 3);
    int a[4] = {4, 3, 2, 1};
    dist_gather(d, a, sizeof(int), 0, 4, 4);
    assert_true(a[0] == 4 && a[3] == 1);
    assert_true(dist_log_balance(d, "stage", 1.5) == 0);
}

DEFINE_TEST_GROUP(test_dist,
    cmocka_unit_test(test_dist_shares),
    cmocka_unit_test(test_dist_share_cost),
    cmocka_unit_test(test_dist_single),
)
