// `sprec bench` under a real `mpirun` (CPU backend): the SFT step runs the
// trainer's step on every rank and rank 0 prints one line for the job:
//  - at -np 2: ranks 2, the bytes all-reduced per step = 4 x the trainable
//    parameters (counted here from the model's shape) x 1 gradient sum per step,
//    with ZeRO-1 too (a reduce-scatter of the same bytes); a peak for each rank;
//    tokens_per_s over the global batch (batch x seq per step, not a rank's share);
//    the loss of the plain run within rounding (another summation order);
//  - at -np 1: the plain process's loss bit for bit, ranks 1, nothing all-reduced;
//  - generate at -np 2 (prompts shared by cost) decodes the plain run's items
//    (the same output tokens);
//  - a step with fewer micro-batches than ranks is a one-line error; a mode that
//    does not split (logprob) runs on rank 0 alone and prints its lines once.
// Skipped (with a message) when build/sprec was built without MPI.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <cJSON.h>
#include "tests.h"

#define PLAIN "OMP_NUM_THREADS=1 "
// every tensor a multiple of 16 floats: the trainable buffer has no alignment padding (model_param_table)
enum { DIM = 64, LAYERS = 2, HEADS = 4, KV_HEADS = 2, FFN = 176, VOCAB = 512, SEQ = 32, BATCH = 4 };
#define SHAPE "build/sprec bench --threads 1 --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 176 --vocab 512 "
#define SFT SHAPE "--mode sft --seq 32 --batch 4 --micro-batch 1 --steps 2 --warmup 1"
#define GEN SHAPE "--mode generate --prompts 12 --items 60 --prompt-len 8 --beams 2 --steps 1 --warmup 1"

// The result line called name from cmd's stdout (parsed; the caller frees it).
static cJSON *line_of(const char *cmd, const char *name) {
    static char out[1 << 15];
    char full[1024], key[96];
    snprintf(full, sizeof full, "%s 2>/dev/null", cmd);
    const int rc = run_capture(full, out, sizeof out);
    if (rc) print_message("%s: exit %d\n%s\n", cmd, rc, out);
    assert_int_equal(rc, 0);
    snprintf(key, sizeof key, "{\"name\": \"%s\"", name);
    const char *at = strstr(out, key);
    if (!at) print_message("%s: no line %s in\n%s\n", cmd, name, out);
    assert_non_null(at);
    cJSON *j = cJSON_ParseWithOpts(at, NULL, 0);
    assert_non_null(j);
    return j;
}

static double num(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(j, key);
    if (!cJSON_IsNumber(v)) print_message("no number %s\n", key);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

// The model's trainable values, from its shape: the tied embedding, per layer two
// norms and q, k, v, o, gate, up, down, and the final norm.
static double trainable(void) {
    const double C = DIM, QD = DIM, KVD = DIM / HEADS * KV_HEADS;
    return VOCAB * C + LAYERS * (2 * C + C * QD + 2 * C * KVD + QD * C + 3 * C * FFN) + C;
}

// the fields every line that ran over `ranks` ranks has
static void check_ranks(const cJSON *j, int ranks, double allreduce_bytes) {
    assert_int_equal((int)num(j, "ranks"), ranks);
    assert_int_equal((int)num(j, "threads"), 1);
    assert_true(num(j, "allreduce_bytes_per_step") == allreduce_bytes);
    const double comm = num(j, "comm_s"), share = num(j, "comm_share");
    assert_true(comm >= 0 && share >= 0 && share <= 1);
    if (ranks == 1) assert_true(comm == 0);
    const cJSON *peaks = cJSON_GetObjectItem(j, "peak_bytes_per_rank"), *kind = cJSON_GetObjectItem(j, "peak_kind");
    assert_true(cJSON_IsArray(peaks));
    assert_int_equal(cJSON_GetArraySize(peaks), ranks);
    for (int r = 0; r < ranks; r++) assert_true(cJSON_GetArrayItem(peaks, r)->valuedouble > 1e6);
    assert_true(cJSON_IsString(kind) && !strcmp(kind->valuestring, "rss"));
}

static void test_mpi_bench_sft(void **state) {
    (void)state;
    if (!have_mpi()) {
        print_message("test_mpi_bench: skipped: build/sprec was built without MPI\n");
        skip();
    }
    cJSON *plain = line_of(PLAIN SFT, "sft_step"), *one = line_of(MPIRUN "-np 1 " SFT, "sft_step");
    cJSON *two = line_of(MPIRUN "-np 2 " SFT, "sft_step"), *two_zero = line_of(MPIRUN "-np 2 " SFT " --zero 1", "sft_step");
    const double bytes = 4 * trainable();   // one gradient sum per step, fp32
    print_message("sft at -np 2: %.0f bytes all-reduced per step (4 x %.0f parameters), comm %.1f%% of the step\n",
                  num(two, "allreduce_bytes_per_step"), trainable(), 100 * num(two, "comm_share"));
    check_ranks(plain, 1, 0);
    check_ranks(one, 1, 0);
    check_ranks(two, 2, bytes);
    check_ranks(two_zero, 2, bytes);
    assert_int_equal((int)num(two, "zero"), 0);
    assert_int_equal((int)num(two_zero, "zero"), 1);
    // -np 1 is the plain process; 2 ranks sum the micro-batches' gradients in another order
    assert_true(num(one, "final_loss") == num(plain, "final_loss"));
    assert_true(fabs(num(two, "final_loss") - num(plain, "final_loss")) < 1e-5);
    assert_true(num(two_zero, "final_loss") == num(two, "final_loss"));   // ZeRO-1: the same sums
    // tokens per second of the global batch: BATCH x SEQ tokens per (median) step, on 2 ranks as on 1
    const cJSON *both[2] = {two, plain};
    for (int k = 0; k < 2; k++) {
        const double tokens = num(both[k], "tokens_per_s") * num(both[k], "ms_per_step") / 1e3;
        assert_true(fabs(tokens - BATCH * SEQ) < 0.01 * BATCH * SEQ);
        assert_int_equal((int)num(both[k], "batch"), BATCH);
    }
    cJSON_Delete(plain); cJSON_Delete(one); cJSON_Delete(two); cJSON_Delete(two_zero);
}

static void test_mpi_bench_generate(void **state) {
    (void)state;
    if (!have_mpi()) skip();
    cJSON *plain = line_of(PLAIN GEN, "generate_beam2"), *two = line_of(MPIRUN "-np 2 " GEN, "generate_beam2");
    check_ranks(plain, 1, 0);
    check_ranks(two, 2, 0);   // generation sums no gradients
    assert_true(num(two, "tokens") == num(plain, "tokens"));   // every prompt decoded to the same item
    assert_true(num(two, "prompts") == 12);
    cJSON_Delete(plain); cJSON_Delete(two);
}

static void test_mpi_bench_errors(void **state) {
    (void)state;
    if (!have_mpi()) skip();
    char out[8192];
    // 4 rows in one micro-batch cannot be shared by 2 ranks
    assert_int_not_equal(run_capture(MPIRUN "-np 2 " SHAPE "--mode sft --seq 16 --batch 4 --micro-batch 4", out,
                                     sizeof out), 0);
    assert_non_null(strstr(out, "sprec: error: sprec bench: --batch 4 in micro-batches of 4 rows is 1 micro-batch(es) for 2 ranks"));
    // logprob does not split: rank 0 alone prints its two lines, without the ranks' fields
    assert_int_equal(run_capture(MPIRUN "-np 2 " SHAPE "--mode logprob --tokens 64 --steps 1 --warmup 1 2>/dev/null",
                                 out, sizeof out), 0);
    int lines = 0;
    for (const char *p = out; (p = strstr(p, "{\"name\": \"logprob")); p++) lines++;
    assert_int_equal(lines, 2);
    assert_null(strstr(out, "\"ranks\""));
}

DEFINE_TEST_GROUP(test_mpi_bench, cmocka_unit_test(test_mpi_bench_sft), cmocka_unit_test(test_mpi_bench_generate),
                  cmocka_unit_test(test_mpi_bench_errors))
