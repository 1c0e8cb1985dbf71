// The gradient sum overlapped with the backward (dist_sum_begin / ready / end,
// issue 11):
//  - the bucket bookkeeping (host/base/dist/buckets.h): ready ranges out of order,
//    overlapping and empty; every bucket starts exactly once, in the fixed order,
//    and only once all its elements were reported;
//  - under a real `mpirun` on the CPU backend, with buckets of 10 KB (about 100 a
//    sum): SFT (full weights and LoRA) and DPO at -np 2 and 3 give the same logs
//    and checkpoints byte for byte with [dist] overlap on and off (every element is
//    summed in rank order whenever its bucket starts), buckets do start during the
//    backward with overlap on (the `dist:` line counts them) and none without,
//    also when a rank has no micro-batch in a step; -np 1 equals the plain process.
// The mpirun part is skipped (with a message) when build/sprec was built without MPI.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tests.h"
#include "base/dist/buckets.h"

// hand-computed: n = 10 in buckets of 4 is [6, 10), [2, 6), [0, 2), started in that order
static void test_mpi_overlap_buckets_order(void **state) {
    (void)state;
    Buckets b;
    size_t k, lo, hi;
    buckets_init(&b, 10, 4);
    assert_int_equal(b.count, 3);
    buckets_range(&b, 2, &lo, &hi);
    assert_true(lo == 0 && hi == 2);
    buckets_ready(&b, 0, 2);                    // bucket 2 is final, but bucket 0 starts first
    buckets_ready(&b, 4, 4);                    // empty
    assert_false(buckets_next(&b, &k));
    buckets_ready(&b, 7, 10);
    assert_false(buckets_next(&b, &k));         // [6, 10) lacks element 6
    buckets_ready(&b, 5, 8);                    // overlaps
    assert_true(buckets_next(&b, &k) && k == 0);
    assert_false(buckets_next(&b, &k));
    buckets_ready(&b, 2, 5);
    assert_true(buckets_next(&b, &k) && k == 1);
    assert_true(buckets_next(&b, &k) && k == 2);
    assert_false(buckets_next(&b, &k));         // all started: never again
    buckets_ready(&b, 0, 10);
    assert_false(buckets_next(&b, &k));
    buckets_free(&b);
}

// random ranges (out of order, overlapping, empty) until everything is final: the buckets tile
// [0, n) from the end, each starts once, in order, only when wholly reported
static void test_mpi_overlap_buckets_random(void **state) {
    (void)state;
    srand(11);
    for (int trial = 0; trial < 300; trial++) {
        const size_t n = 1 + (size_t)(rand() % 200), size = 1 + (size_t)(rand() % 40);
        Buckets b;
        buckets_init(&b, n, size);
        assert_int_equal(b.count, (n + size - 1) / size);
        for (size_t k = 0, end = n; k < b.count; k++) {   // tiles [0, n) from the end
            size_t lo, hi;
            buckets_range(&b, k, &lo, &hi);
            assert_true(hi == end && lo < hi && hi - lo <= size && (lo == 0 || hi - lo == size));
            end = lo;
            if (k + 1 == b.count) assert_int_equal(lo, 0);
        }
        char *final = calloc(n, 1);
        size_t started = 0, left = n;
        while (started < b.count) {
            size_t lo = (size_t)rand() % (n + 1), hi = lo + (size_t)rand() % (size + 3);
            if (hi > n) hi = n;
            if (rand() % 8 == 0) hi = lo;               // empty
            if (left < n / 4 && rand() % 4 == 0) { lo = 0; hi = n; }   // the end: everything final
            buckets_ready(&b, lo, hi);
            for (size_t i = lo; i < hi; i++) { left -= !final[i]; final[i] = 1; }
            size_t k;
            while (buckets_next(&b, &k)) {
                assert_int_equal(k, started++);          // in order, each once
                size_t a, z;
                buckets_range(&b, k, &a, &z);
                for (size_t i = a; i < z; i++) assert_true(final[i]);   // only when wholly final
            }
            // nothing startable is left behind: the next bucket is not wholly final
            if (started < b.count) {
                size_t a, z, i;
                buckets_range(&b, started, &a, &z);
                for (i = a; i < z && final[i]; i++) {}
                assert_true(i < z);
            }
        }
        assert_int_equal(left, 0);
        free(final);
        buckets_free(&b);
    }
}

#define TMP "build/test-tmp/mpi-overlap"
#define PLAIN "OMP_NUM_THREADS=1 build/sprec "
#define COMMON "configs/demo-sprec.ini --data.dataset=" TMP "/syn.h5 --train.batch_size=4 --train.grad_accum=6 " \
               "--train.log_every=1 --dist.bucket_mb=0.01 "
#define SFT COMMON "--train.max_steps=3 --train.warmup_steps=1"
#define DPO COMMON "--train.method=dpo --train.init=" TMP "/sft-plain/checkpoint.h5 --train.max_steps=2 " \
            "--train.warmup_steps=0 --train.lr=1e-3"


// runs cmd (its output in out) and fails with the output shown when it fails
static void run_shown(const char *cmd, char *out, size_t cap) {
    const int rc = run_capture(cmd, out, cap);
    if (rc != 0) print_message("%s\nexit %d:\n%s\n", cmd, rc, out);
    assert_int_equal(rc, 0);
}

// `sprec train ARGS` (name: the run folders' prefix) at -np 2 and 3 with overlap on and off (equal, and buckets
// started during the backward only with overlap on); with np1, first as a plain process and at -np 1 (equal)
static void overlap_on_off(const char *name, const char *args, int np1) {
    char cmd[4096], out[65536], dir[256], plain[256];
    snprintf(plain, sizeof plain, TMP "/%s-plain", name);
    if (np1 && strcmp(name, "sft") != 0) {   // (the fixture made the plain SFT run)
        snprintf(cmd, sizeof cmd, "rm -rf %s && " PLAIN "train %s --run.out_dir=%s", plain, args, plain);
        run_shown(cmd, out, sizeof out);
    }
    snprintf(dir, sizeof dir, TMP "/%s-np1", name);
    snprintf(cmd, sizeof cmd, "rm -rf %s && " MPIRUN "-np 1 build/sprec train %s --run.out_dir=%s && cmp %s/train_log.jsonl "
             "%s/train_log.jsonl && h5diff %s/checkpoint.h5 %s/checkpoint.h5", dir, args, dir, plain, dir, plain, dir);
    if (np1) run_shown(cmd, out, sizeof out);
    for (int np = 2; np <= 3; np++) {
        char on[256], off[256];
        snprintf(on, sizeof on, TMP "/%s-np%d-on", name, np);
        snprintf(off, sizeof off, TMP "/%s-np%d-off", name, np);
        snprintf(cmd, sizeof cmd, "rm -rf %s && " MPIRUN "-np %d build/sprec train %s --run.out_dir=%s", on, np, args, on);
        run_shown(cmd, out, sizeof out);
        // "dist: ... (buckets of 0.01 MB, E of B started during the backward) ..."
        const char *counts = strstr(out, "dist: ");
        long early = -1, all = -1;
        assert_non_null(counts);
        assert_non_null(counts = strstr(counts, "MB, "));
        assert_int_equal(sscanf(counts, "MB, %ld of %ld started during the backward", &early, &all), 2);
        print_message("test_mpi_overlap: %s -np %d: %ld of %ld buckets started during the backward\n", name, np,
                      early, all);
        // (the last layer's buckets start at its end whatever the timing: nothing is in flight before)
        assert_true(early > 0 && early <= all);
        snprintf(cmd, sizeof cmd, "rm -rf %s && " MPIRUN "-np %d build/sprec train %s --dist.overlap=false "
                 "--run.out_dir=%s", off, np, args, off);
        run_shown(cmd, out, sizeof out);
        assert_non_null(strstr(out, "MB, 0 of "));
        snprintf(cmd, sizeof cmd, "cmp %s/train_log.jsonl %s/train_log.jsonl && h5diff %s/checkpoint.h5 "
                 "%s/checkpoint.h5", on, off, on, off);
        run_shown(cmd, out, sizeof out);
    }
}

static void fixture(void) {
    static int done;
    if (done) return;
    run_ok("rm -rf " TMP " && mkdir -p " TMP " && gzip -dc tests/ref/tokenizer/smollm2.tokenizer.json.gz > " TMP
           "/tok.json");
    run_ok(PLAIN "prepare configs/demo-sprec.ini --data.tokenizer=" TMP "/tok.json --data.dataset=" TMP "/syn.h5 "
           "--data.synth_users=120 --data.valid_rows=20 --data.test_rows=20 > /dev/null");
    run_ok(PLAIN "train " SFT " --run.out_dir=" TMP "/sft-plain > /dev/null");
    done = 1;
}


static void test_mpi_overlap_sft(void **state) {
    (void)state;
    REQUIRE_MPI("test_mpi_overlap");
    fixture();
    overlap_on_off("sft", SFT, 1);
    overlap_on_off("lora", SFT " --lora.enabled=true", 0);
    // 2 micro-batches a step: at -np 3 rank 2 has none and reports its (zero) gradients all at once, at the step's end
    overlap_on_off("idle", SFT " --train.grad_accum=2", 0);
}

static void test_mpi_overlap_dpo(void **state) {
    (void)state;
    REQUIRE_MPI("test_mpi_overlap");
    fixture();
    overlap_on_off("dpo", DPO, 1);
}

DEFINE_TEST_GROUP(test_mpi_overlap,
    cmocka_unit_test(test_mpi_overlap_buckets_order),
    cmocka_unit_test(test_mpi_overlap_buckets_random),
    cmocka_unit_test(test_mpi_overlap_sft),
    cmocka_unit_test(test_mpi_overlap_dpo),
)
