// Config: defaults, a full INI file, overrides, the written form reading back
// identically, and every kind of bad input ending in one "FILE:LINE: ..." line
// and exit 1 (checked in a forked child).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <glob.h>
#include "tests.h"
#include "io/config.h"


// Writes text to a new temporary .ini file; path receives its name.
static void write_ini(char *path, const char *text) {
    strcpy(path, "/tmp/sprec_test_XXXXXX.ini");
    int fd = mkstemps(path, 4);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
}

static void test_config_defaults(void **state) {
    (void)state;
    Config c;
    config_defaults(&c);
    assert_int_equal(c.model.vocab_size, 256);
    assert_int_equal(c.model.dim, 64);
    assert_int_equal(c.model.n_layers, 2);
    assert_int_equal(c.model.n_heads, 4);
    assert_int_equal(c.model.n_kv_heads, 2);
    assert_int_equal(c.model.head_dim, 0);
    assert_int_equal(c.model.ffn_dim, 172);
    assert_int_equal(c.model.max_seq_len, 256);
    assert_true(c.model.rope_theta == 10000.0f && c.model.rms_eps == 1e-5f);
    assert_int_equal(c.model.tie_embeddings, 1);
    assert_int_equal(c.model.qkv_bias, 0);
    assert_int_equal(c.model.rope_scaling, 0);
    assert_true(c.model.rope_factor == 8 && c.model.rope_low_freq_factor == 1 && c.model.rope_high_freq_factor == 4);
    assert_int_equal(c.model.rope_original_max_pos, 8192);
    assert_true(c.init_std == 0.02f);
    assert_int_equal(c.init_seed, 1234);
    assert_string_equal(c.train.init, "");
    assert_true(c.train.lr == 3e-4f && c.train.min_lr == 0);
    assert_string_equal(c.train.schedule, "linear");
    assert_int_equal(c.train.max_steps, 0);
    assert_int_equal(c.train.epochs, 1);
    assert_int_equal(c.train.batch_size, 8);
    assert_int_equal(c.train.grad_accum, 1);
    assert_true(c.train.beta1 == 0.9f && c.train.beta2 == 0.999f && c.train.eps == 1e-8f);
    assert_true(c.train.grad_clip == 1.0f && c.train.weight_decay == 0);
    assert_int_equal(c.train.decay_norms, 0);
    assert_int_equal(c.train.log_every, 10);
    assert_int_equal(c.train.ckpt_every, 0);
    assert_string_equal(c.data.train, "");
    assert_int_equal(c.data.shuffle, 1);
    assert_string_equal(c.run.device, "cpu");
    assert_string_equal(c.run.out_dir, "runs/default");
    assert_int_equal(c.run.threads, 0);
}

static void test_config_full_ini(void **state) {
    (void)state;
    char path[64];
    write_ini(path,
              "\xEF\xBB\xBF; a comment\n"
              "# another comment\n"
              "[model]\n"
              "vocab_size = 1000\n"
              "  dim=128\n"                      // indentation is not a continuation
              "n_layers = 3 ; inline comment\n"
              "n_heads = 8\nn_kv_heads = 4\nhead_dim = 32\nffn_dim = 344\nmax_seq_len = 512\n"
              "rope_theta = 500000\nrms_eps = 1e-6\ntie_embeddings = No\nqkv_bias = YES\n"
              "rope_scaling = llama3\nrope_factor = 32\nrope_low_freq_factor = 1.5\n"
              "rope_high_freq_factor = 4\nrope_original_max_pos = 4096\ninit_std = 0.01\nseed = 18446744073709551615\n"
              "\n[train]\n"
              "init = runs/a/ckpt.h5\nlr = 1e-3\nmin_lr = 1e-5\nwarmup_steps = 10\nschedule = cosine\n"
              "max_steps = 100\nepochs = 2\nbatch_size = 4\ngrad_accum = 2\nweight_decay = 0.1\n"
              "beta1 = 0.8\nbeta2 = 0.95\neps = 1e-6\ngrad_clip = 0\ndecay_norms = 1\nseed = 7\n"
              "log_every = 1\nckpt_every = 50\n"
              "[data]\ntrain = data/train.h5\nshuffle = off\n"
              "[run]\ndevice = cuda\nout_dir = \"runs/x y\"\nthreads = 4\n");
    Config c;
    config_defaults(&c);
    config_load(&c, path);
    unlink(path);
    assert_int_equal(c.model.vocab_size, 1000);
    assert_int_equal(c.model.dim, 128);
    assert_int_equal(c.model.n_layers, 3);
    assert_int_equal(c.model.n_heads, 8);
    assert_int_equal(c.model.n_kv_heads, 4);
    assert_int_equal(c.model.head_dim, 32);
    assert_int_equal(c.model.ffn_dim, 344);
    assert_int_equal(c.model.max_seq_len, 512);
    assert_true(c.model.rope_theta == 500000.0f && c.model.rms_eps == 1e-6f);
    assert_int_equal(c.model.tie_embeddings, 0);
    assert_int_equal(c.model.qkv_bias, 1);
    assert_int_equal(c.model.rope_scaling, 1);
    assert_true(c.model.rope_factor == 32 && c.model.rope_low_freq_factor == 1.5f);
    assert_int_equal(c.model.rope_original_max_pos, 4096);
    assert_true(c.init_std == 0.01f);
    assert_true(c.init_seed == UINT64_MAX);
    assert_string_equal(c.train.init, "runs/a/ckpt.h5");
    assert_true(c.train.lr == 1e-3f && c.train.min_lr == 1e-5f);
    assert_int_equal(c.train.warmup_steps, 10);
    assert_string_equal(c.train.schedule, "cosine");
    assert_int_equal(c.train.max_steps, 100);
    assert_int_equal(c.train.epochs, 2);
    assert_int_equal(c.train.batch_size, 4);
    assert_int_equal(c.train.grad_accum, 2);
    assert_true(c.train.weight_decay == 0.1f && c.train.beta1 == 0.8f && c.train.beta2 == 0.95f);
    assert_true(c.train.eps == 1e-6f && c.train.grad_clip == 0);
    assert_int_equal(c.train.decay_norms, 1);
    assert_int_equal(c.train.seed, 7);
    assert_int_equal(c.train.log_every, 1);
    assert_int_equal(c.train.ckpt_every, 50);
    assert_string_equal(c.data.train, "data/train.h5");
    assert_int_equal(c.data.shuffle, 0);
    assert_string_equal(c.run.device, "cuda");
    assert_string_equal(c.run.out_dir, "runs/x y");
    assert_int_equal(c.run.threads, 4);
}

static void test_config_override(void **state) {
    (void)state;
    Config c;
    config_defaults(&c);
    assert_int_equal(config_override(&c, "train.lr=0.001"), 1);
    assert_true(c.train.lr == 0.001f);
    assert_int_equal(config_override(&c, "model.tie_embeddings=no"), 1);
    assert_int_equal(c.model.tie_embeddings, 0);
    assert_int_equal(config_override(&c, "data.train=a.b/c=d.h5"), 1);   // split at the first '=' only
    assert_string_equal(c.data.train, "a.b/c=d.h5");
    assert_int_equal(config_override(&c, "train.init="), 1);
    assert_string_equal(c.train.init, "");
    // not overrides: left to the caller
    assert_int_equal(config_override(&c, "device"), 0);
    assert_int_equal(config_override(&c, "out=x.h5"), 0);
    assert_int_equal(config_override(&c, "ckpt.h5"), 0);
}

// The written form reads back to the identical Config, byte for byte.
static void test_config_write_roundtrip(void **state) {
    (void)state;
    Config a, b;
    config_defaults(&a);
    config_override(&a, "train.lr=0.0007");
    config_override(&a, "model.rms_eps=1e-6");
    config_override(&a, "model.rope_scaling=llama3");
    config_override(&a, "train.schedule=cosine");
    config_override(&a, "run.out_dir=runs/w");
    config_override(&a, "train.seed=18446744073709551615");
    char path[64];
    write_ini(path, "");
    FILE *f = fopen(path, "w");
    config_write(&a, f);
    fclose(f);
    config_defaults(&b);
    config_override(&b, "run.out_dir=something/much/longer/than/the/other");
    config_load(&b, path);
    unlink(path);
    assert_memory_equal(&a, &b, sizeof a);
}

static void test_config_validate(void **state) {
    (void)state;
    Config c;
    config_defaults(&c);
    config_validate(&c, "defaults");
    assert_int_equal(c.model.head_dim, 16);   // resolved: dim / n_heads
    config_validate(&c, "again");             // idempotent
    assert_int_equal(c.model.head_dim, 16);
}

static void test_config_help(void **state) {
    (void)state;
    char buf[16384];
    FILE *f = fmemopen(buf, sizeof buf, "w");
    config_print_help(f);
    fclose(f);
    assert_non_null(strstr(buf, "[train] lr = 3e-4"));
    assert_non_null(strstr(buf, "[model] rope_scaling = none"));
    assert_non_null(strstr(buf, "none|llama3"));
    assert_non_null(strstr(buf, "[run] device = cpu"));
}

// ---- bad input ----------------------------------------------------------------

static void load_child(void *path) {
    Config c;
    config_defaults(&c);
    config_load(&c, path);
}

// INI text -> the message expected after "sprec: error: PATH".
static const struct { const char *ini, *msg; } BAD_INI[] = {
    {"[train]\nlr = 1e-3\n\n\n\n\nlrr = 3\n", ":7: unknown key 'lrr' in [train] (did you mean 'lr'?)"},
    {"[model]\nlr = 1e-3\n", ":2: unknown key 'lr' in [model] (it belongs in [train])"},
    {"[model]\ndim = 64\n[trian]\n", ":3: unknown section [trian] (did you mean [train]?)"},
    {"[model]\n[bogus]\nx = 1\n", ":2: unknown section [bogus]"},
    {"; c\n[train]\nlr = 1\nwarmup_steps=2\n\n\n\n\n\n\n\nbatch_size = eight\n",
     ":12: [train] batch_size = 'eight': not an integer"},
    {"[train]\nbatch_size = 8x\n", ":2: [train] batch_size = '8x': not an integer"},
    {"[train]\nbatch_size = 99999999999\n", ":2: [train] batch_size = '99999999999': integer out of range"},
    {"[train]\nbatch_size = 0\n", ":2: [train] batch_size = '0': must be >= 1"},
    {"[train]\nlr = 3e-4x\n", ":2: [train] lr = '3e-4x': not a number"},
    {"[train]\nlr = nan\n", ":2: [train] lr = 'nan': not a finite float32 number"},
    {"[train]\nlr = 1e39\n", ":2: [train] lr = '1e39': not a finite float32 number"},
    {"[train]\nbeta1 = 1.5\n", ":2: [train] beta1 = '1.5': must be between 0 and 1"},
    {"[train]\nschedule = exp\n", ":2: [train] schedule = 'exp': must be one of linear|constant|cosine"},
    {"[model]\nrope_scaling = yarn\n", ":2: [model] rope_scaling = 'yarn': must be one of none|llama3"},
    {"[model]\ntie_embeddings = maybe\n", ":2: [model] tie_embeddings = 'maybe': not a boolean"},
    {"[model]\nseed = -1\n", ":2: [model] seed = '-1': not an unsigned integer"},
    {"dim = 64\n", ":1: key 'dim' outside any section"},
    {"[model]\ndim 64\n", ":2: syntax error"},
    {"[model\ndim = 64\n", ":1: syntax error"},
    {"[model]\ndim 64\n[trian]\n", ":2: syntax error"},   // the first problem wins
    {"[data]\ntrain = aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
     ":2: line longer than"},
};

static void test_config_bad_ini(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof BAD_INI / sizeof BAD_INI[0]; i++) {
        char path[64], err[4096], want[1024];
        write_ini(path, BAD_INI[i].ini);
        int rc = run_forked(load_child, path, err, sizeof err);
        unlink(path);
        snprintf(want, sizeof want, "sprec: error: %s%s", path, BAD_INI[i].msg);
        if (rc != 1 || !strstr(err, want) || strchr(err, '\n') != err + strlen(err) - 1)
            fail_msg("case %zu: exit %d, stderr:\n%s\nwanted one line containing: %s", i, rc, err, want);
    }
}

static void test_config_missing_file(void **state) {
    (void)state;
    char err[1024];
    int rc = run_forked(load_child, "/nonexistent/x.ini", err, sizeof err);
    assert_int_equal(rc, 1);
    assert_string_equal(err, "sprec: error: cannot open config '/nonexistent/x.ini': No such file or directory\n");
}

static void override_child(void *arg) {
    Config c;
    config_defaults(&c);
    config_override(&c, arg);
}

static void test_config_bad_override(void **state) {
    (void)state;
    static const struct { const char *arg, *msg; } cases[] = {
        {"train.lr=abc", "command line: --train.lr=abc: not a number"},
        {"train.lrr=1", "command line: --train.lrr=1: unknown key 'lrr' in [train] (did you mean 'lr'?)"},
        {"trian.lr=1", "command line: --trian.lr=1: unknown section [trian] (did you mean [train]?)"},
        {"run.device=tpu", "command line: --run.device=tpu: must be one of cpu|cpu-checked|cpu-bf16|cuda"},
        {"train.lr", "command line: --train.lr: expected --train.lr=VALUE"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[1024];
        int rc = run_forked(override_child, (void *)cases[i].arg, err, sizeof err);
        if (rc != 1 || !strstr(err, cases[i].msg))
            fail_msg("case %s: exit %d, stderr: %s", cases[i].arg, rc, err);
    }
}

// arg: space-separated overrides
static void validate_child(void *arg) {
    Config c;
    char buf[256];
    config_defaults(&c);
    snprintf(buf, sizeof buf, "%s", (const char *)arg);
    for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " ")) config_override(&c, tok);
    config_validate(&c, "cfg.ini");
}

static void test_config_validate_errors(void **state) {
    (void)state;
    static const struct { const char *arg, *msg; } cases[] = {
        {"train.min_lr=0.1", "sprec: error: cfg.ini: [train] min_lr = 0.1 is above lr = 0.0003"},
        {"train.beta2=1", "cfg.ini: [train] beta1 = 0.9, beta2 = 1: both must be below 1"},
        {"train.eps=0", "cfg.ini: [train] eps = 0: must be above 0"},
        {"model.dim=66", "cfg.ini: [model] dim = 66 is not divisible by n_heads = 4"},
        {"train.max_steps=3 train.warmup_steps=5", "cfg.ini: [train] warmup_steps = 5 is longer than max_steps = 3"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[1024];
        int rc = run_forked(validate_child, (void *)cases[i].arg, err, sizeof err);
        if (rc != 1 || !strstr(err, cases[i].msg)) fail_msg("case %s: exit %d, stderr: %s", cases[i].arg, rc, err);
    }
    char err[1024];   // max_steps = 0 is derived later from the data, so any warm-up passes here
    assert_int_equal(run_forked(validate_child, "train.warmup_steps=5", err, sizeof err), 0);
}

// every shipped experiment file loads and validates (a stale key in configs/
// would otherwise only show when a user runs it); a load error exits the test
static void test_config_shipped(void **state) {
    (void)state;
    glob_t g;
    assert_int_equal(glob("configs/*.ini", 0, NULL, &g), 0);
    assert_true(g.gl_pathc >= 9);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        Config c;
        config_defaults(&c);
        config_load(&c, g.gl_pathv[i]);
        config_resolve(&c);
        config_validate(&c, g.gl_pathv[i]);
    }
    print_message("  %zu files in configs/ load and validate\n", g.gl_pathc);
    globfree(&g);
}

DEFINE_TEST_GROUP(test_config,
    cmocka_unit_test(test_config_shipped),
    cmocka_unit_test(test_config_defaults),
    cmocka_unit_test(test_config_full_ini),
    cmocka_unit_test(test_config_override),
    cmocka_unit_test(test_config_write_roundtrip),
    cmocka_unit_test(test_config_validate),
    cmocka_unit_test(test_config_help),
    cmocka_unit_test(test_config_bad_ini),
    cmocka_unit_test(test_config_missing_file),
    cmocka_unit_test(test_config_bad_override),
    cmocka_unit_test(test_config_validate_errors),
)
