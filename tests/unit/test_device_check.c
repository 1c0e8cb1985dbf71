// The checked CPU backend (`--device cpu-checked`, kernels/cpu/checked.c):
// it catches a host read/write of device memory (SIGSEGV handler), a host
// pointer or a too-short buffer passed to an op, and host/device mix-ups in
// upload/download/free, each as one line and exit 3 (in forked children: the
// handler and the protected regions stay out of the test runner). Then every
// host path (dump, SFT from scratch, LoRA SFT, DPO with random and self
// negatives, SPRec with spdpo, eval constrained and unconstrained, generate
// greedy / sampling / beam, bench) runs under cpu-checked and gives the same
// bytes as under cpu.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tests.h"
#include "kernels/cpu/checked.h"

#define TMP "build/test-tmp/dc"

// ---- the checker itself -----------------------------------------------------------

static void host_read(void *arg) {
    (void)arg;
    const Backend *be = backend_cpu_checked();
    float *p = be->alloc(100 * sizeof(float));
    float h[100] = {0};
    be->upload(p, h, sizeof h);   // the API works ...
    volatile float x = p[3];      // ... a host read does not
    (void)x;
}
static void host_write(void *arg) {
    (void)arg;
    const Backend *be = backend_cpu_checked();
    int *p = be->alloc(8 * sizeof(int));
    p[7] = 1;
}
static void host_ptr_to_op(void *arg) {
    (void)arg;
    const Backend *be = backend_cpu_checked();
    float *d = be->alloc(16 * sizeof(float)), h[16] = {0};
    be->add(d, d, d, 16);         // fine
    be->add(d, h, d, 16);
}
static void host_int_ptr_to_op(void *arg) {
    (void)arg;
    const Backend *be = backend_cpu_checked();
    float *out = be->alloc(4 * 8 * sizeof(float)), *wte = be->alloc(10 * 8 * sizeof(float));
    int tokens[4] = {1, 2, 3, 4};
    be->embedding_fwd(out, tokens, wte, 4, 8);
}
static void too_short(void *arg) {
    (void)arg;
    const Backend *be = backend_cpu_checked();
    float *a = be->alloc(10 * sizeof(float));
    be->scale(a + 4, 2.0f, 7);    // 7 floats from element 4 of 10
}
// adamw_multi's compute copy pc is a device pointer like the rest
static void host_pc_to_adamw(void *arg) {
    (void)arg;
    const Backend *be = backend_cpu_checked();
    float *d = be->alloc(4 * 8 * sizeof(float)), h[8] = {0};
    const AdamwTensor t = {0, 8, 1};
    AdamwTensor *tab = be->alloc(sizeof t);
    be->upload(tab, &t, sizeof t);
    float *p = d, *g = d + 8, *m = d + 16, *v = d + 24;
    be->adamw_multi(p, p, g, m, v, 8, tab, 1, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.1f, 0.05f, 1.0f);   // fine
    be->adamw_multi(p, h, g, m, v, 8, tab, 1, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.1f, 0.05f, 1.0f);
}
static void upload_from_device(void *arg) {
    (void)arg;
    const Backend *be = backend_cpu_checked();
    float *a = be->alloc(64), *b = be->alloc(64);
    be->upload(a, b, 64);
}
static void download_to_device(void *arg) {
    (void)arg;
    const Backend *be = backend_cpu_checked();
    float *a = be->alloc(64), *b = be->alloc(64);
    be->download(a, b, 64);
}
static void free_host(void *arg) {
    (void)arg;
    static float h[4];
    backend_cpu_checked()->free(h);
}
// everything through the API: exit 0, and the values round-trip
static void api_only(void *arg) {
    (void)arg;
    const Backend *be = backend_cpu_checked();
    float h[5] = {1, 2, 3, 4, 5}, back[5];
    float *a = be->alloc(sizeof h), *b = be->alloc(sizeof h);
    be->upload(a, h, sizeof h);
    be->copy(b, a, sizeof h);
    be->add(b, b, a, 5);
    be->download(back, b, sizeof back);
    for (int i = 0; i < 5; i++) if (back[i] != 2 * h[i]) _exit(9);
    float *c = be->alloc(sizeof h);   // the act ops: c = b / 2 = h
    be->act_from_f32(c, b, 5);
    be->scale_act(c, 0.5f, 5);
    be->download(back, c, sizeof back);
    for (int i = 0; i < 5; i++) if (back[i] != h[i]) _exit(10);
    be->free(a); be->free(b); be->free(c);
}

static void expect_caught(void (*fn)(void *), const char *needle1, const char *needle2) {
    char err[4096];
    int rc = run_forked(fn, NULL, err, sizeof err);
    if (rc != DEVICE_CHECK_EXIT || !strstr(err, needle1) || (needle2 && !strstr(err, needle2)))
        print_message("exit %d, stderr: %s(wanted '%s' and '%s')\n", rc, err, needle1, needle2 ? needle2 : "");
    assert_int_equal(rc, DEVICE_CHECK_EXIT);
    assert_true(strncmp(err, "sprec: error: device-check: ", 28) == 0);
    assert_non_null(strstr(err, needle1));
    if (needle2) assert_non_null(strstr(err, needle2));
    const char *nl = strchr(err, '\n');   // one line
    assert_true(nl != NULL && nl[1] == 0);
    if (fn == host_read) print_message("  %s", err);
}

static void test_device_check_catches(void **state) {
    (void)state;
    expect_caught(host_read, "the host touched device memory at 0x", "(region of 400 bytes allocated at ");
    expect_caught(host_write, "the host touched device memory at 0x", "(region of 32 bytes allocated at ");
    expect_caught(host_ptr_to_op, "add argument a is not device memory", NULL);
    expect_caught(host_int_ptr_to_op, "embedding_fwd argument tokens is not device memory", NULL);
    expect_caught(too_short, "scale argument x needs 28 bytes of device memory but only 24 are left", NULL);
    expect_caught(host_pc_to_adamw, "adamw_multi argument pc is not device memory", NULL);
    expect_caught(upload_from_device, "upload argument src is device memory", NULL);
    expect_caught(download_to_device, "download argument dst is device memory", NULL);
    expect_caught(free_host, "free argument p is not device memory", NULL);
    char err[4096];
    assert_int_equal(run_forked(api_only, NULL, err, sizeof err), 0);
    // the CLI accepts the device, and an unknown one names it
    expect_error(SPREC_CHECKED " bench --device gpu", "cpu-checked", NULL);
}

// ---- every host path: cpu-checked == cpu, byte for byte ------------------------------

// Runs tmpl once per device; "%1$s" in it is the device name (use it in output
// paths too); out[0], out[1]: the outputs, compared by the caller. One thread:
// both runs need the same count (sums are split by thread), and the tiny models
// run fastest without OpenMP's spinning on shared cores.
static void run_both(const char *tmpl, char out[2][8192]) {
    const char *dev[2] = {"cpu", "cpu-checked"};
    for (int i = 0; i < 2; i++) {
        char cmd[2048] = "OMP_NUM_THREADS=1 ";
        snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), tmpl, dev[i]);
        int rc = run_capture(cmd, out[i], 8192);
        if (rc != 0) print_message("command failed (exit %d): %s\n%s\n", rc, cmd, out[i]);
        assert_int_equal(rc, 0);
    }
}

// TMP/NAME-cpu/FILE == TMP/NAME-cpu-checked/FILE (text files, byte for byte)
static void same_file(const char *name, const char *file) {
    char a[512], b[512];
    snprintf(a, sizeof a, TMP "/%.100s-cpu/%.100s", name, file);
    snprintf(b, sizeof b, TMP "/%.100s-cpu-checked/%.100s", name, file);
    char *ta = read_text_file(a, NULL), *tb = read_text_file(b, NULL);
    assert_true(strlen(ta) > 0);
    if (strcmp(ta, tb) != 0) print_message("%s and %s differ\n", a, b);
    assert_string_equal(ta, tb);
    free(ta); free(tb);
}

// the datasets of HDF5 objects (h5diff: exact, no tolerance) of two files
static void same_h5(const char *a, const char *b, const char *object) {
    char cmd[1024], out[8192];
    snprintf(cmd, sizeof cmd, "h5diff -q %.300s %.300s %.100s %.100s", a, b, object, object);
    int rc = run_capture(cmd, out, sizeof out);
    if (rc != 0) print_message("%s: exit %d\n%s\n", cmd, rc, out);
    assert_int_equal(rc, 0);
}
static void same_ckpt(const char *name, const char *object) {
    char a[512], b[512];
    snprintf(a, sizeof a, TMP "/%s-cpu/checkpoint.h5", name);
    snprintf(b, sizeof b, TMP "/%s-cpu-checked/checkpoint.h5", name);
    same_h5(a, b, object);
}

static const char *WORLD =
    "[model]\nvocab_size = 50257\ndim = 16\nn_layers = 1\nn_heads = 2\nn_kv_heads = 1\nffn_dim = 32\n"
    "max_seq_len = 128\nseed = 7\n"
    "[data]\ndataset = " TMP "/w.h5\n[train]\ninit = " TMP "/init.h5\nbatch_size = 4\nmax_steps = 2\n"
    "[eval]\nks = 1,3\nbeams = 3\n[sprec]\niterations = 2\nn = 4\neval_rows = 3\neval_valid = false\n";

static void test_device_check_dump_sft_bench(void **state) {
    (void)state;
    char out[2][8192];
    run_ok("rm -rf " TMP " && mkdir -p " TMP);
    // dump on a Hugging Face fixture (logits, log-probs, loss, every gradient)
    run_both("build/sprec dump --model tests/ref/fixtures/llama_tied_gqa/model.h5 --batch "
             "tests/ref/fixtures/llama_tied_gqa/batch.h5 -o " TMP "/dump-%1$s.h5 --device %1$s", out);
    same_h5(TMP "/dump-cpu.h5", TMP "/dump-cpu-checked.h5", "/");
    // SFT from scratch on a token file
    run_ok("build/sprec toydata -o " TMP "/toy.h5 --rows 8 --seq 16 --vocab 16 --seed 3");
    write_file(TMP "/toy.ini", "[model]\nvocab_size = 16\ndim = 32\nn_layers = 2\nn_heads = 4\nn_kv_heads = 2\n"
               "ffn_dim = 60\nmax_seq_len = 16\nseed = 7\n[train]\nmax_steps = 3\nbatch_size = 4\nweight_decay = 0.1\n"
               "[data]\ntrain = " TMP "/toy.h5\n");
    run_both("build/sprec train " TMP "/toy.ini --device %1$s --run.out_dir=" TMP "/sft-%1$s", out);
    same_file("sft", "train_log.jsonl");
    same_ckpt("sft", "/params");
    same_ckpt("sft", "/optim");
    // bench: the timings differ, the loss may not
    run_both("build/sprec bench --device %1$s --dim 32 --layers 1 --heads 2 --kv-heads 1 --ffn 64 --vocab 256 "
             "--seq 16 --batch 2 --steps 2 --warmup 1", out);
    const char *la = strstr(out[0], "\"final_loss\""), *lb = strstr(out[1], "\"final_loss\"");
    assert_non_null(la);
    assert_non_null(lb);
    assert_int_equal(strcspn(la, ",}"), strcspn(lb, ",}"));
    assert_memory_equal(la, lb, strcspn(la, ",}"));
    assert_non_null(strstr(out[1], "\"device\": \"cpu-checked\""));
    // the other bench modes: same loss (dpo, logprob) and the same decoded tokens (generate)
    const char *modes[][2] = {{"dpo", "\"final_loss\""}, {"logprob --tokens 40", "\"final_loss\""},
                              {"generate --prompts 3 --beams 2 --items 20 --prompt-len 5", "\"tokens\""}};
    for (int i = 0; i < 3; i++) {
        char tmpl[1024];
        snprintf(tmpl, sizeof tmpl, "build/sprec bench --device %%1$s --dim 32 --layers 1 --heads 2 --kv-heads 1 "
                 "--ffn 64 --vocab 256 --seq 16 --batch 2 --steps 2 --warmup 1 --mode %s", modes[i][0]);
        run_both(tmpl, out);
        for (const char *a = strstr(out[0], modes[i][1]), *b = strstr(out[1], modes[i][1]); a || b;
             a = strstr(a + 1, modes[i][1]), b = strstr(b + 1, modes[i][1])) {
            assert_non_null(a);
            assert_non_null(b);
            assert_int_equal(strcspn(a, ","), strcspn(b, ","));
            assert_memory_equal(a, b, strcspn(a, ","));
        }
    }
}

static void test_device_check_world(void **state) {
    (void)state;
    char out[2][8192];
    run_ok("mkdir -p " TMP " && gzip -dc tests/ref/tokenizer/gpt2.tokenizer.json.gz > " TMP "/gpt2.json");
    run_ok("build/sprec prepare configs/synthetic-prepare.ini -o " TMP "/w.h5 --data.synth_users=40 "
           "--data.valid_rows=5 --data.test_rows=5 --data.history=3 --data.tokenizer=" TMP "/gpt2.json");
    write_file(TMP "/w.ini", WORLD);
    run_ok("build/sprec init " TMP "/w.ini -o " TMP "/init.h5");
    // LoRA SFT (dropout: the masks are drawn on the device)
    run_both("build/sprec train " TMP "/w.ini --device %1$s --run.out_dir=" TMP "/lora-%1$s --train.method=sft "
             "--lora.enabled=true --lora.rank=4 --lora.dropout=0.1", out);
    same_file("lora", "train_log.jsonl");
    same_ckpt("lora", "/lora");
    // DPO, random and self negatives
    run_both("build/sprec train " TMP "/w.ini --device %1$s --run.out_dir=" TMP "/rn-%1$s --train.method=dpo "
             "--dpo.negatives=random --dpo.n_pairs=8", out);
    same_file("rn", "train_log.jsonl");
    same_ckpt("rn", "/params");
    run_both("build/sprec train " TMP "/w.ini --device %1$s --run.out_dir=" TMP "/self-%1$s --train.method=dpo "
             "--dpo.negatives=self --dpo.n_pairs=8", out);
    same_file("self", "train_log.jsonl");
    same_ckpt("self", "/params");
    // SPRec, 2 iterations, SPDPO weights, LoRA
    run_both("build/sprec train " TMP "/w.ini --device %1$s --run.out_dir=" TMP "/sp-%1$s --train.method=sprec "
             "--dpo.weighting=spdpo --lora.enabled=true --lora.rank=4 --lora.dropout=0.1", out);
    same_file("sp", "train_log.jsonl");
    same_file("sp", "metrics.jsonl");
    same_ckpt("sp", "/lora");
    // eval, constrained (catalogue trie) and unconstrained (generation + grounding)
    run_both("build/sprec eval " TMP "/w.ini --device %1$s --model " TMP "/init.h5 -o " TMP "/ev-%1$s", out);
    same_file("ev", "topk-test.jsonl");
    same_file("ev", "metrics.jsonl");
    run_both("build/sprec eval " TMP "/w.ini --device %1$s --model " TMP "/init.h5 -o " TMP "/evu-%1$s "
             "--eval.mode=unconstrained", out);
    same_file("evu", "topk-test.jsonl");
    same_file("evu", "metrics.jsonl");
}

static void test_device_check_generate(void **state) {
    (void)state;
    char out[2][8192];
    run_ok("mkdir -p " TMP " && build/sprec import tests/ref/import/llama_fp32/hf -o " TMP "/tok.h5");
    const char *modes[] = {"", "--temperature 0.8 --top-k 20 --seed 3", "--beams 3"};
    for (int i = 0; i < 3; i++) {
        char tmpl[1024];
        snprintf(tmpl, sizeof tmpl, "build/sprec generate --model " TMP "/tok.h5 --device %%1$s --prompt 'hello world' "
                 "--max-new-tokens 6 %s", modes[i]);
        run_both(tmpl, out);
        assert_true(strlen(out[0]) > 0);
        assert_string_equal(out[0], out[1]);
    }
}

DEFINE_TEST_GROUP(test_device_check,
    cmocka_unit_test(test_device_check_catches),
    cmocka_unit_test(test_device_check_dump_sft_bench),
    cmocka_unit_test(test_device_check_world),
    cmocka_unit_test(test_device_check_generate))
