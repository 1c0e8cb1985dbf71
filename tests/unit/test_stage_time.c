// Stage timing (host/train/stage_time.h) and the model's work counter it reads:
// the FLOPs of a forward and a backward counted over valid tokens against the
// formula written out by hand for a tiny model, the decoding floor of a
// hand-built dataset, and the JSON line of an iteration.
#include <stdio.h>
#include <string.h>
#include <cJSON.h>
#include "tests.h"
#include "model/model.h"
#include "train/stage_time.h"

// C 16, 2 layers, 4 heads of 4 (QD 16), 2 kv heads (KVD 8), F 24, V 50
static const ModelConfig TINY = {.vocab_size = 50, .dim = 16, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                                 .head_dim = 4, .ffn_dim = 24, .max_seq_len = 8, .rope_theta = 10000.0f,
                                 .rms_eps = 1e-5f, .tie_embeddings = 1};

static void test_stage_time_model_work(void **state) {
    (void)state;
    Model m;
    model_create(&m, &TINY, backend_cpu());
    model_init_random(&m, 1, 0.1f);
    // two rows of lengths 8 and 3 (padding not counted); 4 scored positions
    int tokens[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    float mask[16] = {0, 0, 0, 0, 0, 0, 1, 1, 0, 1, 1};
    int lengths[2] = {8, 3};
    Batch b = {.B = 2, .T = 8, .tokens = tokens, .mask = mask, .lengths = lengths};
    assert_int_equal(model_forward(&m, &b, 0), 4);
    // per layer: q 16x16, k and v 16x8, o 16x16, gate/up/down 16x24 = 1920 weights
    const double lin = 2.0 * 1920, pairs = 8 * 9 / 2 + 3 * 4 / 2;
    const double fwd = 2 * lin * 11 + 4.0 * 2 * 16 * pairs + 2.0 * 50 * 16 * 4;
    assert_true(m.work_flops == fwd);
    assert_true(m.work_tokens == 11);
    assert_true(model_forward_flops(&TINY, 11, pairs, 4) == fwd);
    float w[4] = {0.25f, 0.25f, 0.25f, 0.25f};
    model_backward(&m, w);
    assert_true(m.work_flops == 3 * fwd);   // a backward counts twice its forward
    assert_true(m.work_tokens == 11);

    // a clock over that work: the stage gets the counters' difference
    StageClock k;
    stage_clock_reset(&k);
    stage_begin(&k, &m);
    model_forward(&m, &b, 0);
    stage_end(&k, STAGE_REFERENCE, &m);
    assert_true(k.flops[STAGE_REFERENCE] == fwd && k.tokens[STAGE_REFERENCE] == 11);
    assert_true(k.ran[STAGE_REFERENCE] && !k.ran[STAGE_SFT]);

    // decoding floor: prompts of 5 and 7 tokens (rows 1 and 2 of the split),
    // output items of 2 and 4 tokens, 3 beams: 2 * (lin/2 * layers + V*C) * (12 + 3 * 6)
    RecData d;
    memset(&d, 0, sizeof d);
    int prompt_len[3] = {9, 5, 7}, rows[2] = {1, 2}, off[4] = {0, 2, 6, 9}, out[2] = {0, 1};
    d.n_items = 3;
    d.item_tok_offsets = off;
    d.split[SPLIT_TRAIN] = (RecSplit){.n = 3, .prompt_len = prompt_len};
    stage_begin(&k, &m);
    stage_add_decode(&k, STAGE_NEGATIVES, &m, &d, SPLIT_TRAIN, rows, 2, out, 2, 3);
    stage_end(&k, STAGE_NEGATIVES, &m);
    const double weights = 1920.0 * 2 + 50 * 16;
    assert_true(k.flops[STAGE_NEGATIVES] == 2 * weights * (12 + 3 * 6));
    assert_true(k.tokens[STAGE_NEGATIVES] == 18);
    // evaluation's rows: the split's first n (n <= 0: all), outputs of the catalogue's mean length (3)
    stage_begin(&k, &m);
    stage_add_decode(&k, STAGE_EVAL, &m, &d, SPLIT_TRAIN, NULL, 0, NULL, 0, 2);
    stage_end(&k, STAGE_EVAL, &m);
    assert_true(k.flops[STAGE_EVAL] == 2 * weights * (21 + 2 * 9));

    // the iteration's line: valid JSON with every stage that ran and the total
    FILE *f = tmpfile();
    assert_non_null(f);
    stage_clock_log(&k, f, 3);
    rewind(f);
    char line[2048] = "";
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    cJSON *j = cJSON_Parse(line);
    assert_non_null(j);
    assert_int_equal(cJSON_GetObjectItem(j, "iteration")->valueint, 3);
    const char *keys[] = {"negatives_s", "negatives_gflops", "reference_tokens_per_s", "eval_tokens", "total_s"};
    for (int i = 0; i < 5; i++) assert_true(cJSON_IsNumber(cJSON_GetObjectItem(j, keys[i])));
    assert_null(cJSON_GetObjectItem(j, "sft_s"));   // did not run
    assert_true(cJSON_GetObjectItem(j, "reference_tokens")->valuedouble == 11);
    cJSON_Delete(j);
    model_free(&m);
}

DEFINE_TEST_GROUP(test_stage_time,
    cmocka_unit_test(test_stage_time_model_work),
)
