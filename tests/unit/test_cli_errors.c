// Bad input through the real binary: each case must exit 1 with a one-line
// "sprec: error: ..." naming the file and the problem, and never crash.
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "tests.h"
#include "base/h5io.h"
#include "cli/commands.h"

#define TMP "build/test-tmp/err"

static const char *MODEL = "[model]\nvocab_size = 4000\ndim = 64\nn_layers = 1\nn_heads = 4\nn_kv_heads = 2\n"
                           "ffn_dim = 32\nmax_seq_len = 8\n";

static void setup_files(void) {
    static int done = 0;
    if (done) return;
    char out[4096];
    assert_int_equal(run_capture("mkdir -p " TMP, out, sizeof out), 0);
    write_file(TMP "/good.ini", MODEL);
    assert_int_equal(run_capture("build/sprec init " TMP "/good.ini -o " TMP "/good.h5", out, sizeof out), 0);
    assert_int_equal(run_capture("build/sprec toydata -o " TMP "/batch.h5 --rows 2 --seq 8 --vocab 16", out, sizeof out), 0);
    done = 1;
}

static void test_unknown_config_key(void **state) {
    (void)state;
    setup_files();
    write_file(TMP "/badkey.ini", "[model]\ndim = 64\n\n[train]\nlrr = 0.1\n");
    expect_error(SPREC_CHECKED " init " TMP "/badkey.ini -o " TMP "/x.h5", "badkey.ini:5", "lrr");
    write_file(TMP "/badsec.ini", "[trian]\nlr = 0.1\n");
    expect_error(SPREC_CHECKED " init " TMP "/badsec.ini -o " TMP "/x.h5", "badsec.ini:1", "trian");
    expect_error(SPREC_CHECKED " init " TMP "/good.ini -o " TMP "/x.h5 --train.nope=1", "nope", NULL);
}

static void test_malformed_value(void **state) {
    (void)state;
    setup_files();
    write_file(TMP "/badval.ini", "[model]\ndim = sixty-four\n");
    expect_error(SPREC_CHECKED " init " TMP "/badval.ini -o " TMP "/x.h5", "badval.ini:2", "dim");
    write_file(TMP "/badheads.ini", "[model]\nn_heads = 4\nn_kv_heads = 3\n");
    expect_error(SPREC_CHECKED " init " TMP "/badheads.ini -o " TMP "/x.h5", "n_kv_heads", NULL);
    expect_error(SPREC_CHECKED " init " TMP "/good.ini -o " TMP "/x.h5 --train.lr=fast", "lr", NULL);
    expect_error(SPREC_CHECKED " init " TMP "/missing.ini -o " TMP "/x.h5", "missing.ini", NULL);
}

static void test_truncated_checkpoint(void **state) {
    (void)state;
    setup_files();
    char out[4096];
    struct stat st;
    assert_int_equal(stat(TMP "/good.h5", &st), 0);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "head -c %ld " TMP "/good.h5 > " TMP "/trunc.h5", (long)st.st_size / 2);
    assert_int_equal(run_capture(cmd, out, sizeof out), 0);
    expect_error(SPREC_CHECKED " info " TMP "/trunc.h5", "trunc.h5", NULL);
    expect_error(SPREC_CHECKED " dump --model " TMP "/trunc.h5 --batch " TMP "/batch.h5 -o " TMP "/o.h5", "trunc.h5", NULL);
    write_file(TMP "/noth5.h5", "this is not an HDF5 file\n");
    expect_error(SPREC_CHECKED " info " TMP "/noth5.h5", "noth5.h5", NULL);
}

static void test_flipped_byte(void **state) {
    (void)state;
    setup_files();
    char out[4096];
    assert_int_equal(run_capture("cp " TMP "/good.h5 " TMP "/flip.h5", out, sizeof out), 0);
    // find the first chunk of the embedding in the file and flip one byte of it
    hid_t f = h5_open_read(TMP "/flip.h5");
    hid_t d = H5Dopen2(f, "params/model.embed_tokens.weight", H5P_DEFAULT);
    assert_true(d >= 0);
    hid_t space = H5Dget_space(d);
    hsize_t offset[2], size;
    unsigned mask;
    haddr_t addr;
    assert_true(H5Dget_chunk_info(d, space, 0, offset, &mask, &addr, &size) >= 0);
    H5Sclose(space); H5Dclose(d); h5_close(f);
    FILE *fp = fopen(TMP "/flip.h5", "r+b");
    assert_non_null(fp);
    fseek(fp, (long)addr + (long)size / 2, SEEK_SET);
    int c = fgetc(fp);
    fseek(fp, (long)addr + (long)size / 2, SEEK_SET);
    fputc(c ^ 0x10, fp);
    fclose(fp);
    // the whole-file checksum catches it before HDF5 reads the file
    expect_error(SPREC_CHECKED " dump --model " TMP "/flip.h5 --batch " TMP "/batch.h5 -o " TMP "/o.h5",
                 "flip.h5", "checksum mismatch");
    // without the checksum line (an older checkpoint) the tensor's Fletcher-32 checksum does, naming it
    assert_int_equal(run_capture("dd if=/dev/zero of=" TMP "/flip.h5 bs=512 count=1 conv=notrunc 2>/dev/null", out,
                                 sizeof out), 0);
    expect_error(SPREC_CHECKED " dump --model " TMP "/flip.h5 --batch " TMP "/batch.h5 -o " TMP "/o.h5",
                 "flip.h5", "model.embed_tokens.weight");
}

static void test_wrong_shape_tensor(void **state) {
    (void)state;
    setup_files();
    char out[4096];
    assert_int_equal(run_capture("cp " TMP "/good.h5 " TMP "/shape.h5", out, sizeof out), 0);
    hid_t f = h5_open_rw(TMP "/shape.h5");   // (h5_close rewrites the whole-file checksum; an H5Fclose would not)
    assert_true(H5Ldelete(f, "params/model.norm.weight", H5P_DEFAULT) >= 0);
    hid_t g = H5Gopen2(f, "params", H5P_DEFAULT);
    float w[63] = {0};
    long dims[1] = {63};
    h5_write_f32(g, "model.norm.weight", 1, dims, w);
    H5Gclose(g); h5_close(f);
    expect_error(SPREC_CHECKED " dump --model " TMP "/shape.h5 --batch " TMP "/batch.h5 -o " TMP "/o.h5",
                 "model.norm.weight", "63");
}

static void test_bad_batch_and_flags(void **state) {
    (void)state;
    setup_files();
    char out[4096];
    // batch longer than the model's context (max_seq_len 8)
    assert_int_equal(run_capture("build/sprec toydata -o " TMP "/long.h5 --rows 2 --seq 12 --vocab 16", out, sizeof out), 0);
    expect_error(SPREC_CHECKED " dump --model " TMP "/good.h5 --batch " TMP "/long.h5 -o " TMP "/o.h5", "max_seq_len", NULL);
    // token ids outside the vocabulary (model vocab 4000 is fine; a 16-vocab model is not)
    write_file(TMP "/small.ini", "[model]\nvocab_size = 8\ndim = 16\nn_layers = 1\nn_heads = 2\nn_kv_heads = 1\nffn_dim = 8\nmax_seq_len = 8\n");
    assert_int_equal(run_capture("build/sprec init " TMP "/small.ini -o " TMP "/small.h5", out, sizeof out), 0);
    expect_error(SPREC_CHECKED " dump --model " TMP "/small.h5 --batch " TMP "/batch.h5 -o " TMP "/o.h5", "outside", "vocab");
    expect_error(SPREC_CHECKED " dump --model " TMP "/good.h5 --batch " TMP "/batch.h5 -o " TMP "/o.h5 --device tpu", "tpu", NULL);
#ifndef SPREC_HAVE_CUDA
    expect_error(SPREC_CHECKED " dump --model " TMP "/good.h5 --batch " TMP "/batch.h5 -o " TMP "/o.h5 --device cuda",
                 "cuda", "without the CUDA backend");
    expect_error(SPREC_CHECKED " init " TMP "/good.ini -o " TMP "/x.h5 --device=cuda", "without the CUDA backend", NULL);
#endif
    expect_error(SPREC_CHECKED " init " TMP "/good.ini -o " TMP "/x.h5 --device=tpu", "command line", "tpu");
    expect_error(SPREC_CHECKED " train " TMP "/good.ini --bogus", "--bogus", NULL);
    // an existing run is never overwritten without --resume
    assert_int_equal(run_capture("rm -rf " TMP "/run && build/sprec toydata -o " TMP "/t.h5 --rows 4 --seq 8 --vocab 16", out, sizeof out), 0);
    assert_int_equal(run_capture("build/sprec train " TMP "/good.ini --data.train=" TMP "/t.h5 --train.max_steps=1 --run.out_dir=" TMP "/run", out, sizeof out), 0);
    expect_error(SPREC_CHECKED " train " TMP "/good.ini --data.train=" TMP "/t.h5 --train.max_steps=1 --run.out_dir=" TMP "/run", "--resume", NULL);
    assert_int_equal(run_capture("build/sprec info " TMP "/run/checkpoint.h5", out, sizeof out), 0);
}

// tokenizer.json with fields missing or broken, through the sanitized binary
static void test_bad_tokenizer_json(void **state) {
    (void)state;
    setup_files();
    const struct { const char *json, *needle; } cases[] = {
        {"{\"model\": {\"type\": \"BPE\", \"merges\": []}}", "vocab"},
        {"{\"added_tokens\": []}", "model"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a\"]}}", "merge"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0", "JSON"},
        {"not json at all", "JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file(TMP "/tok.json", cases[i].json);
        expect_error("echo hello | " SPREC_CHECKED " tokenize --model " TMP "/tok.json", "tok.json", cases[i].needle);
    }
}

// Runs cmd (one error expected) and requires no control character in its output but the final newline.
static void expect_no_control_chars(const char *cmd) {
    char out[4096], quiet[4096];
    assert_int_equal(run_capture(error_run(cmd, quiet, sizeof quiet), out, sizeof out), 1);
    for (const char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 && !(*p == '\n' && p[1] == 0))
            fail_msg("byte 0x%02x at %td of the error of '%s': %s", (unsigned char)*p, p - out, cmd, out);
}

// Control characters from a config value or a file name are escaped (\r, \x1c, ...): the error stays one line.
static void test_control_chars_escaped(void **state) {
    (void)state;
    setup_files();
    write_file(TMP "/ctl.ini", "[model]\ndim = 6\x1c\r\v4\n");
    expect_error(SPREC_CHECKED " init " TMP "/ctl.ini -o " TMP "/x.h5", "ctl.ini:2", "'6\\x1c\\r\\v4'");
    expect_no_control_chars(SPREC_CHECKED " init " TMP "/ctl.ini -o " TMP "/x.h5");
    const char *missing = SPREC_CHECKED " init '" TMP "/ct\rl\x1c\n\t.ini' -o " TMP "/x.h5";
    expect_error(missing, "ct\\rl\\x1c\\n\\t.ini", "No such file");
    expect_no_control_chars(missing);
}

// ---- the argument parser (host/cli/cli.c) ----

typedef struct {
    const char *config, *name, *out;
    int sw, n;
    uint64_t seed;
    double x, frac;
} ParsedArgs;

// The table every parser test uses: one row of each kind, defaults in the variables.
static void parse_into(ParsedArgs *p, int argc, char **argv) {
    *p = (ParsedArgs){.name = "default", .n = 7, .seed = 1, .x = 0.5, .frac = 1};
    const CliFlag flags[] = {ARG_OPERAND("CONFIG.ini", &p->config), ARG_STR("--name", &p->name),
                             ARG_PATH("-o OUT.h5", &p->out, CLI_REQUIRED), ARG_SWITCH("--sw", &p->sw),
                             ARG_INT("--n", &p->n, -1, 100), ARG_U64("--seed", &p->seed, 0, 0x1p62),
                             ARG_DOUBLE("--x", &p->x, -2, 2), ARG_FRACTION("--frac", &p->frac), ARG_END};
    cli_parse("t", argc, argv, flags);
}

static void test_cli_parse_forms(void **state) {
    (void)state;
    ParsedArgs p;
    // "--x v" and "--x=v", flags before and after the operand, a value that starts with '-'
    char *a1[] = {"t", "--n", "-1", "-o=o.h5", "c.ini", "--seed=4611686018427387904", "--x", "-1.5", "--sw",
                  "--name", "--frac", "--frac=0.25"};
    parse_into(&p, 12, a1);
    assert_string_equal(p.config, "c.ini");
    assert_string_equal(p.out, "o.h5");
    assert_string_equal(p.name, "--frac");
    assert_int_equal(p.n, -1);
    assert_true(p.seed == 4611686018427387904ull);
    assert_true(p.x == -1.5 && p.frac == 0.25 && p.sw == 1);
    // the same flags in another order give the same values; absent ones keep their defaults
    char *a2[] = {"t", "-o", "o.h5", "--n=100", "c.ini"};
    parse_into(&p, 5, a2);
    assert_string_equal(p.config, "c.ini");
    assert_string_equal(p.out, "o.h5");
    assert_string_equal(p.name, "default");
    assert_int_equal(p.n, 100);
    assert_true(p.seed == 1 && p.x == 0.5 && p.frac == 1 && p.sw == 0);
    // "--help" is found anywhere, but not as a part of another argument
    char *h1[] = {"t", "--n", "3", "--help"}, *h2[] = {"t", "--helpful", "--help=1"};
    assert_int_equal(cli_wants_help(4, h1), 1);
    assert_int_equal(cli_wants_help(3, h2), 0);
}

typedef struct { int argc; char *argv[6]; } Argv;
static void parse_child(void *arg) {
    Argv *a = arg;
    ParsedArgs p;
    parse_into(&p, a->argc, a->argv);
}

// Each bad command line: exit 1 and exactly one line "sprec: error: sprec t: ..." with the expected text.
static void test_cli_parse_errors(void **state) {
    (void)state;
    const struct { Argv a; const char *msg; } cases[] = {
        {{3, {"t", "c.ini", "--bogus"}}, "unknown flag '--bogus' (see sprec t --help)"},
        {{3, {"t", "c.ini", "--bogus=1"}}, "unknown flag '--bogus'"},
        {{4, {"t", "c.ini", "-o", "x"}}, NULL},   // the good line the others break
        {{5, {"t", "c.ini", "-o", "x", "--a.b=1"}}, "unknown flag '--a.b'"},   // overrides are for config commands
        {{5, {"t", "c.ini", "-o", "x", "--n"}}, "--n needs a value"},
        {{6, {"t", "c.ini", "-o", "x", "--n", "abc"}}, "--n must be an integer in [-1, 100], got 'abc'"},
        {{5, {"t", "c.ini", "-o", "x", "--n=3x"}}, "--n must be an integer in [-1, 100], got '3x'"},
        {{5, {"t", "c.ini", "-o", "x", "--n="}}, "--n must be an integer in [-1, 100], got ''"},
        {{5, {"t", "c.ini", "-o", "x", "--n=101"}}, "--n must be an integer in [-1, 100], got '101'"},
        {{5, {"t", "c.ini", "-o", "x", "--seed=-1"}}, "--seed must be an integer >= 0, got '-1'"},
        {{5, {"t", "c.ini", "-o", "x", "--seed=4611686018427387905"}}, "--seed must be at most 4611686018427387904"},
        {{5, {"t", "c.ini", "-o", "x", "--seed=99999999999999999999"}}, "--seed must be at most"},
        {{5, {"t", "c.ini", "-o", "x", "--x=nan"}}, "--x must be a number in [-2, 2], got 'nan'"},
        {{5, {"t", "c.ini", "-o", "x", "--x=1e400"}}, "--x must be a number in [-2, 2], got '1e400'"},
        {{5, {"t", "c.ini", "-o", "x", "--frac=0"}}, "--frac must be in (0, 1], got '0'"},
        {{5, {"t", "c.ini", "-o", "x", "--sw=1"}}, "--sw takes no value"},
        {{6, {"t", "c.ini", "-o", "x", "--sw", "--sw"}}, "--sw given twice"},
        {{6, {"t", "c.ini", "-o", "x", "-o=y"}}, "-o given twice"},
        {{5, {"t", "c.ini", "-o", "x", "d.ini"}}, "unexpected argument 'd.ini' (CONFIG.ini is 'c.ini')"},
        {{4, {"t", "c.ini", "-o", ""}}, "-o is empty"},
        {{2, {"t", "c.ini"}}, "missing -o OUT.h5 (see sprec t --help)"},
        {{3, {"t", "-o", "x"}}, "missing CONFIG.ini"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[4096];
        const int rc = run_forked(parse_child, (void *)&cases[i].a, err, sizeof err);
        if (!cases[i].msg) {
            assert_int_equal(rc, 0);
            continue;
        }
        char want[512];
        snprintf(want, sizeof want, "sprec: error: sprec t: %s", cases[i].msg);
        if (rc != 1 || strncmp(err, want, strlen(want)) || strchr(err, '\n') != err + strlen(err) - 1)
            fail_msg("case %zu: exit %d, stderr '%s', expected one line starting '%s'", i, rc, err, want);
    }
}

// Every command refuses an unknown flag, a flag without its value and a malformed number, in one line.
static void test_cli_every_command(void **state) {
    (void)state;
    static const char *const cmds[][3] = {   // the command, a flag that takes a value, a number flag
        {"init c.ini", "-o", NULL},          {"train c.ini", "--device", "--stop-at"},
        {"eval c.ini", "--split", "--iteration"}, {"prepare c.ini", "-o", NULL},
        {"dump", "--batch", "--threads"},    {"embed", "--model", "--threads"},
        {"export c.h5", "--dtype", NULL},    {"import src", "--tokenizer", "--max-tokens"},
        {"generate", "--prompt", "--max-new-tokens"}, {"generate", "--stop", "--temperature"},
        {"tokenize", "--model", NULL},       {"toydata", "-o", "--rows"},
        {"bench", "--mode", "--steps"},      {"info c.h5", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char cmd[256], msg[128];
        const char *name = cmds[i][0];
        const int n = (int)strcspn(name, " ");
        snprintf(cmd, sizeof cmd, SPREC_CHECKED " %s --bogus 1", name);
        snprintf(msg, sizeof msg, "sprec %.*s: unknown flag '--bogus' (see sprec %.*s --help)", n, name, n, name);
        expect_error(cmd, msg, NULL);
        if (cmds[i][1]) {
            snprintf(cmd, sizeof cmd, SPREC_CHECKED " %s %s", name, cmds[i][1]);
            snprintf(msg, sizeof msg, "sprec %.*s: %s needs a value", n, name, cmds[i][1]);
            expect_error(cmd, msg, NULL);
        }
        if (cmds[i][2]) {
            snprintf(cmd, sizeof cmd, SPREC_CHECKED " %s %s abc", name, cmds[i][2]);
            snprintf(msg, sizeof msg, "sprec %.*s: %s must be", n, name, cmds[i][2]);
            expect_error(cmd, msg, "got 'abc'");
        }
    }
    // a config command leaves --section.key=value to the config code, and says how to write one
    expect_error(SPREC_CHECKED " train c.ini --train.lr 0.1", "'--train.lr': a config override takes its value after '='",
                 NULL);
}

DEFINE_TEST_GROUP(test_cli_errors,
    cmocka_unit_test(test_cli_parse_forms),
    cmocka_unit_test(test_cli_parse_errors),
    cmocka_unit_test(test_cli_every_command),
    cmocka_unit_test(test_bad_tokenizer_json),
    cmocka_unit_test(test_unknown_config_key),
    cmocka_unit_test(test_malformed_value),
    cmocka_unit_test(test_truncated_checkpoint),
    cmocka_unit_test(test_flipped_byte),
    cmocka_unit_test(test_wrong_shape_tensor),
    cmocka_unit_test(test_bad_batch_and_flags),
    cmocka_unit_test(test_control_chars_escaped))
