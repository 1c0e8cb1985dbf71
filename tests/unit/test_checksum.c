// The whole-file checksum of checkpoints (docs/checkpoint.md, Integrity): a flipped
// byte anywhere after the checksum block, one or two of them, or a cut file is a
// one-line error before HDF5 parses anything (libhdf5 1.10 freed a bad pointer in
// H5Lget_name_by_idx on a LoRA checkpoint with two flipped bytes); a file without
// the block (an older checkpoint) still loads.
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "tests.h"
#include "io/checkpoint.h"
#include "model/lora.h"
#include "model/device.h"
#include "base/rng.h"
#include "base/filesum.h"
#include "base/h5io.h"

#define TMP "build/test-tmp/checksum"

static const ModelConfig TINY = {
    .vocab_size = 16, .dim = 16, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 4, .ffn_dim = 24,
    .max_seq_len = 16, .rope_theta = 10000.0f, .rms_eps = 1e-5f, .tie_embeddings = 0,
    .rope_factor = 8.0f, .rope_low_freq_factor = 1.0f, .rope_high_freq_factor = 4.0f, .rope_original_max_pos = 8192,
};

// A small LoRA checkpoint with optimizer state and a training state: every group a resume reads.
static void write_lora_checkpoint(const char *path) {
    Model m;
    model_create(&m, &TINY, backend_cpu());
    model_init_random(&m, 5, 0.2f);
    LoraConfig c = {.rank = 4, .alpha = 8.0f, .dropout = 0.05f, .targets = LORA_TARGETS_ALL, .seed = 11};
    model_enable_lora(&m, &c);
    AdamW opt;
    adamw_create(&opt, &m, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f, 0);
    TrainState st = {.step = 3, .epoch = 0, .epoch_pos = 3, .last_loss = 1.5};
    snprintf(st.stage, sizeof st.stage, "sft");
    checkpoint_save(path, &m, &opt, &st);
    adamw_free(&opt, &m);
    model_free(&m);
}

// What a resume and `sprec info` read: exit 0 when all of it loads.
static void load_child(void *path) {
    ModelConfig c;
    checkpoint_read_config(path, &c);
    Model m;
    model_create(&m, &c, backend_cpu());
    checkpoint_load(path, &m, NULL, NULL);
    FILE *devnull = fopen("/dev/null", "w");
    checkpoint_info(path, devnull);
    fclose(devnull);
    model_free(&m);
    _exit(0);
}

// Loads path in a child: returns its exit status; a crash, a hang or anything but 0 or one error line fails.
static int load_status(const char *path, const char *what) {
    char err[4096];
    int rc = run_forked(load_child, (void *)path, err, sizeof err);
    if (rc == 0) return 0;
    if (rc != 1 || strncmp(err, "sprec: error: ", 14) || strchr(err, '\n') != err + strlen(err) - 1)
        fail_msg("%s: exit %d, stderr:\n%s", what, rc, err);
    return 1;
}

// Every flipped byte after the checksum block is caught (every 587th byte of ~89 KB: a child costs ~20 ms
// on a busy machine; before the checksum, some of these loaded as if intact).
static void test_checksum_flipped_byte_sweep(void **state) {
    (void)state;
    const char *path = TMP "/lora.h5";
    run_ok("mkdir -p " TMP);
    write_lora_checkpoint(path);
    assert_int_equal(load_status(path, "intact"), 0);
    const long size = file_size(path);
    int missed = 0;
    for (long off = 512; off < size; off += 587) {
        char what[64];
        snprintf(what, sizeof what, "byte %ld of %ld flipped", off, size);
        flip_byte(path, off, 0x04);
        if (load_status(path, what) == 0) {
            if (missed++ < 5) print_message("  %s: loaded as if intact\n", what);
        }
        flip_byte(path, off, 0x04);
    }
    assert_int_equal(missed, 0);
}

// Two flipped bytes at random places anywhere in the file (the user block included): never a crash; both after
// the block: always caught.
static void test_checksum_two_flipped_bytes(void **state) {
    (void)state;
    const char *path = TMP "/lora2.h5";
    run_ok("mkdir -p " TMP);
    write_lora_checkpoint(path);
    const long size = file_size(path);
    Rng r;
    rng_seed(&r, 2057);
    for (int trial = 0; trial < 100; trial++) {
        long a = (long)rng_below(&r, (uint64_t)size), b = (long)rng_below(&r, (uint64_t)size);
        unsigned char ma = (unsigned char)(1u << rng_below(&r, 8)), mb = (unsigned char)(1u << rng_below(&r, 8));
        char what[96];
        snprintf(what, sizeof what, "bytes %ld and %ld of %ld flipped", a, b, size);
        flip_byte(path, a, ma);
        if (b != a) flip_byte(path, b, mb);
        int caught = load_status(path, what);
        if (a >= 512 && b >= 512 && !caught) fail_msg("%s: loaded as if intact", what);
        if (b != a) flip_byte(path, b, mb);
        flip_byte(path, a, ma);
    }
    assert_int_equal(load_status(path, "restored"), 0);
}

// XXH64 equals the reference implementation's (libxxhash 0.8.1) on every path: < 4, < 8, < 32 bytes, stripes + tail.
static void test_checksum_xxh64(void **state) {
    (void)state;
    static const struct { size_t n; uint64_t h; } want[] = {
        {0, 0xef46db3751d8e999u}, {1, 0x1f25c8d0bc1f4bb6u}, {3, 0x31d2363f52e564c9u}, {4, 0x9bb64b7d66ee9fdau},
        {7, 0x9a7b149959ce60d8u}, {8, 0xdab99d95c6f90092u}, {9, 0x170bb6bf975b4c02u}, {31, 0xa2aa5f33cc4a6119u},
        {32, 0x23c3c17ef790fd97u}, {33, 0x50a7cfc7ba588784u}, {63, 0x5e3e54b431c7493cu}, {64, 0x0eb64b3ef6eeb01fu},
        {100, 0xa61f8d4c170fe531u}, {1000, 0x5f235fa033f1a3fbu}};
    unsigned char data[1000];
    for (int i = 0; i < 1000; i++) data[i] = (unsigned char)(i * 7 + 3);
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (xxh64(data, want[i].n) != want[i].h) fail_msg("xxh64 of %zu bytes", want[i].n);
}

static void verify_child(void *path) { _exit(filesum_verify(path) ? 0 : 4); }

static void expect_verify_error(const char *path, const char *needle) {
    char err[4096];
    int rc = run_forked(verify_child, (void *)path, err, sizeof err);
    if (rc != 1 || !strstr(err, needle) || !strstr(err, path) || strchr(err, '\n') != err + strlen(err) - 1)
        fail_msg("exit %d, stderr:\n%s\nwanted one line with '%s'", rc, err, needle);
}

// The block on a file of several 1 MiB reads: the line's hash is the XXH64 of the bytes after the block; a
// cut, a longer file, a damaged line are errors; a block without the line (an older file) is no check.
static void test_checksum_block(void **state) {
    (void)state;
    const char *path = TMP "/blob";
    run_ok("mkdir -p " TMP);
    const size_t n = (3u << 20) + 5;
    unsigned char *data = calloc(FILESUM_BLOCK + n, 1);
    Rng r;
    rng_seed(&r, 7);
    for (size_t i = 0; i < n; i++) data[FILESUM_BLOCK + i] = (unsigned char)rng_below(&r, 256);
    FILE *f = fopen(path, "wb");
    assert_int_equal(fwrite(data, 1, FILESUM_BLOCK + n, f), FILESUM_BLOCK + n);
    fclose(f);
    assert_int_equal(filesum_verify(path), 0);   // no line yet
    assert_int_equal(filesum_seal(path), 1);
    char want[128];
    snprintf(want, sizeof want, "sprec-checksum v1 xxh64 %016llx %zu\n",
             (unsigned long long)xxh64(data + FILESUM_BLOCK, n), n);
    size_t len;
    char *text = read_text_file(path, &len);
    assert_int_equal(len, FILESUM_BLOCK + n);
    assert_string_equal(text, want);   // (NUL-padded: the string ends with the line)
    free(text);
    assert_int_equal(filesum_verify(path), 1);
    assert_int_equal(filesum_seal(path), 1);   // sealing again: the same line
    assert_int_equal(filesum_verify(path), 1);

    flip_byte(path, FILESUM_BLOCK + n - 1, 0x80);
    expect_verify_error(path, "checksum mismatch");
    flip_byte(path, FILESUM_BLOCK + n - 1, 0x80);
    assert_int_equal(truncate(path, (off_t)(FILESUM_BLOCK + n - 1)), 0);
    expect_verify_error(path, "truncated or corrupt");
    f = fopen(path, "ab");
    fputs("xy", f);
    fclose(f);
    expect_verify_error(path, "truncated or corrupt");
    flip_byte(path, 16, 0x01);   // "v1" -> "w1"
    expect_verify_error(path, "damaged");

    // a block that is neither empty nor a checksum line (someone else's user block) is left alone
    f = fopen(path, "r+b");
    fputs("not ours", f);
    fclose(f);
    assert_int_equal(filesum_seal(path), 0);
    assert_int_equal(filesum_verify(path), 0);
    free(data);
    unlink(path);
}

// A checkpoint without the line (zeroed block: as sprec wrote them before the checksum) loads as before.
static void test_checksum_older_checkpoint(void **state) {
    (void)state;
    const char *path = TMP "/old.h5";
    run_ok("mkdir -p " TMP);
    write_lora_checkpoint(path);
    run_ok("dd if=/dev/zero of=" TMP "/old.h5 bs=512 count=1 conv=notrunc 2>/dev/null");
    assert_int_equal(filesum_verify(path), 0);
    assert_int_equal(load_status(path, "older checkpoint"), 0);
}

// A flipped byte in the line's prefix must not switch the check off: a checkpoint (HDF5 data after the
// block) whose block is neither the line nor empty is refused before HDF5 parses it (make fuzz-ci found one
// that crashed libhdf5 this way: tests/fuzz/corpus/checkpoint/damaged-prefix).
static void test_checksum_damaged_prefix(void **state) {
    (void)state;
    const char *path = TMP "/prefix.h5";
    run_ok("mkdir -p " TMP);
    write_lora_checkpoint(path);
    assert_int_equal(filesum_verify(path), 1);
    flip_byte(path, 2, 0x80);   // "sprec-" -> "sp\xf2ec-"
    expect_verify_error(path, "damaged");
    flip_byte(path, 2, 0x80);
    assert_int_equal(filesum_verify(path), 1);
}

// H5Ovisit callback: every object of the file carries no times (H5Pset_obj_track_times off).
static herr_t no_times(hid_t obj, const char *name, const H5O_info_t *info, void *count) {
    (void)obj;
    if (info->atime || info->mtime || info->ctime || info->btime) print_message("  %s has object times\n", name);
    assert_true(info->atime == 0 && info->mtime == 0 && info->ctime == 0 && info->btime == 0);
    ++*(int *)count;
    return 0;
}

// The same model saved twice, more than a second apart (HDF5's times have 1 s resolution): byte-identical
// files (two runs used to differ in their object headers' times), and no object of them has times.
static void test_checkpoint_byte_identical(void **state) {
    (void)state;
    run_ok("rm -rf " TMP " && mkdir -p " TMP);
    write_lora_checkpoint(TMP "/a.h5");
    sleep(1);
    usleep(100000);
    write_lora_checkpoint(TMP "/b.h5");
    run_ok("cmp " TMP "/a.h5 " TMP "/b.h5");
    hid_t f = h5_open_read(TMP "/a.h5");
    int count = 0;
    assert_true(H5Ovisit(f, H5_INDEX_NAME, H5_ITER_INC, no_times, &count) >= 0);
    h5_close(f);
    assert_true(count > 20);   // root, config, params, lora, optim, state and the tensors
}

DEFINE_TEST_GROUP(test_checksum,
    cmocka_unit_test(test_checksum_xxh64),
    cmocka_unit_test(test_checkpoint_byte_identical),
    cmocka_unit_test(test_checksum_block),
    cmocka_unit_test(test_checksum_older_checkpoint),
    cmocka_unit_test(test_checksum_damaged_prefix),
    cmocka_unit_test(test_checksum_flipped_byte_sweep),
    cmocka_unit_test(test_checksum_two_flipped_bytes))
