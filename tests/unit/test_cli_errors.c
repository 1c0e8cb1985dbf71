// Bad input through the real binary: each case must exit 1 with a one-line
// "sprec: error: ..." naming the file and the problem, and never crash.
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "tests.h"
#include "base/h5io.h"

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

DEFINE_TEST_GROUP(test_cli_errors,
    cmocka_unit_test(test_bad_tokenizer_json),
    cmocka_unit_test(test_unknown_config_key),
    cmocka_unit_test(test_malformed_value),
    cmocka_unit_test(test_truncated_checkpoint),
    cmocka_unit_test(test_flipped_byte),
    cmocka_unit_test(test_wrong_shape_tensor),
    cmocka_unit_test(test_bad_batch_and_flags),
    cmocka_unit_test(test_control_chars_escaped))
