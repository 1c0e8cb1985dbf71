// A full disk under every writer (issue 12): the run folder (or output) on a
// small tmpfs left with a few free pages, so that each writer in turn meets
// ENOSPC: config.ini, train_log.jsonl, the checkpoint (creation and a dataset),
// pairs.h5, a prepared dataset, an export, eval's top-K list and metrics. Each
// must end in one line naming the file and "No space left on device", exit 1
// (no crash: libhdf5's exit handler used to segfault on the half-closed file),
// no temporary left, and the files already there unchanged. Mounting needs
// root: without it these tests are skipped with a message saying so. The
// last test needs no root: a file size limit (ulimit -f, SIGXFSZ ignored)
// stands in for the full disk (EFBIG) in a checkpoint write.
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "tests.h"

#define TMP "build/test-tmp"
#define MNT TMP "/full"

static const char *TINY =
    "[model]\nvocab_size = 50257\ndim = 16\nn_layers = 1\nn_heads = 2\nn_kv_heads = 1\nffn_dim = 32\n"
    "max_seq_len = 128\nseed = 7\n[data]\ndataset = " TMP "/full-d.h5\n[train]\ninit = " TMP "/full-init.h5\n"
    "max_steps = 4\nbatch_size = 4\n";

// A synthetic world (GPT-2 tokenizer fixture), a tiny model's start checkpoint, its config.
static void fixture(void) {
    run_ok("mkdir -p " MNT " && gzip -dc tests/ref/tokenizer/gpt2.tokenizer.json.gz > " TMP "/full-gpt2.json");
    run_ok("build/sprec prepare configs/synthetic-prepare.ini -o " TMP "/full-d.h5 --data.synth_users=60 "
           "--data.valid_rows=10 --data.test_rows=10 --data.history=3 --data.tokenizer=" TMP "/full-gpt2.json >/dev/null");
    write_file(TMP "/full.ini", TINY);
    run_ok("build/sprec init " TMP "/full.ini -o " TMP "/full-init.h5 >/dev/null");
}

// (Re)mounts a 16 MiB tmpfs on MNT holding `keep` (a folder copied in first, or NULL) and a filler that
// leaves exactly `pages` free 4 KiB pages. Returns 0 (after a message) when mounting is not permitted.
static int full_disk(const char *keep, int pages) {
    char cmd[1024], out[1024];
    run_capture("umount " MNT " 2>/dev/null", out, sizeof out);
    if (geteuid() != 0 || run_capture("mount -t tmpfs -o size=16m tmpfs " MNT, out, sizeof out) != 0) {
        print_message("  disk-full tests skipped: mounting a tmpfs needs root (euid %d: %s); the ulimit -f test "
                      "still runs\n", (int)geteuid(), out);
        return 0;
    }
    if (keep) {
        snprintf(cmd, sizeof cmd, "cp -a %s " MNT "/", keep);
        run_ok(cmd);
    }
    snprintf(cmd, sizeof cmd, "dd if=/dev/zero of=" MNT "/.fill bs=4k 2>/dev/null; truncate -s -%d " MNT "/.fill",
             pages * 4096);
    run_ok(cmd);
    return 1;
}

static void unmount(void) {
    char out[256];
    run_capture("umount " MNT, out, sizeof out);
}

// No temporary under MNT.
static void no_tmp(void) {
    char out[4096];
    run_capture("find " MNT " -name '*.tmp'", out, sizeof out);
    assert_string_equal(out, "");
}

// Runs cmd on a disk with `pages` free pages and requires the one-line ENOSPC error naming file.
static int expect_full(const char *keep, int pages, const char *cmd, const char *file) {
    if (!full_disk(keep, pages)) return 0;
    char quiet[2048];   // (stdout, a pipe here, is flushed after the error line at exit)
    snprintf(quiet, sizeof quiet, "(%s >/dev/null)", cmd);
    expect_error(quiet, file, "No space left on device");
    no_tmp();
    return 1;
}

static void test_disk_full_train(void **state) {
    (void)state;
    fixture();
    const char *sft = "build/sprec train " TMP "/full.ini --run.out_dir=" MNT "/run";
    // .lock takes the first free page; then each writer in the order the run writes
    if (!expect_full(NULL, 1, sft, MNT "/run/config.ini.")) skip();
    expect_full(NULL, 2, sft, MNT "/run/train_log.jsonl");
    expect_full(NULL, 3, sft, MNT "/run/checkpoint.h5.");   // the file cannot be created
    // the checkpoint's tensors meet the full disk (the run that segfaulted), under the sanitizers
    expect_full(NULL, 4, SPREC_CHECKED " train " TMP "/full.ini --run.out_dir=" MNT "/run", MNT "/run/checkpoint.h5.");
    expect_full(NULL, 1, "build/sprec train " TMP "/full.ini --train.method=dpo --run.out_dir=" MNT "/run",
                MNT "/run/pairs.h5.");

    // a run folder with a checkpoint (step 2) and config.ini: resuming on a full disk leaves both as they were
    // (a resume only compares config.ini, so the first write to meet the full disk is the log's trim)
    run_ok("rm -rf " TMP "/full-run && build/sprec train " TMP "/full.ini --train.ckpt_every=2 --stop-at 2 "
           "--run.out_dir=" TMP "/full-run >/dev/null");
    full_disk(TMP "/full-run", 0);
    expect_error("(build/sprec train " TMP "/full.ini --train.ckpt_every=2 --resume --run.out_dir=" MNT "/full-run >/dev/null)",
                 MNT "/full-run/train_log.jsonl.", "No space left on device");
    run_ok("cmp " TMP "/full-run/config.ini " MNT "/full-run/config.ini");
    full_disk(TMP "/full-run", 1000);   // room for config.ini and the log, not for a second checkpoint
    expect_error("(build/sprec train " TMP "/full.ini --train.ckpt_every=2 --resume --run.out_dir=" MNT "/full-run >/dev/null)",
                 MNT "/full-run/checkpoint.h5.", "No space left on device");
    no_tmp();
    run_ok("cmp " TMP "/full-run/checkpoint.h5 " MNT "/full-run/checkpoint.h5 && build/sprec info " MNT
           "/full-run/checkpoint.h5 >/dev/null");
    unmount();
}

static void test_disk_full_data(void **state) {
    (void)state;
    fixture();
    if (!expect_full(NULL, 2, "build/sprec prepare configs/synthetic-prepare.ini -o " MNT "/d.h5 --data.synth_users=60 "
                     "--data.valid_rows=10 --data.test_rows=10 --data.history=3 --data.tokenizer=" TMP "/full-gpt2.json", MNT "/d.h5.")) skip();
    expect_full(NULL, 10, "build/sprec export " TMP "/full-init.h5 -o " MNT "/exp", MNT "/exp.tmp/model.safetensors");
    const char *eval = "build/sprec eval " TMP "/full.ini --model " TMP "/full-init.h5 -o " MNT "/ev";
    expect_full(NULL, 1, eval, MNT "/ev/topk-test.jsonl.");
    expect_full(NULL, 2, eval, MNT "/ev/metrics.jsonl");
    run_ok("test ! -e " MNT "/ev/metrics.jsonl");   // not left behind empty
    // an earlier evaluation's metrics.jsonl stays as it was when the next one's line meets the full disk (its
    // other outputs removed, so that the new ones take the two free pages as above: a replaced file frees its own)
    run_ok("rm -rf " TMP "/full-ev && build/sprec eval " TMP "/full.ini --model " TMP "/full-init.h5 -o " TMP
           "/full-ev >/dev/null && rm " TMP "/full-ev/eval-config.ini " TMP "/full-ev/topk-test.jsonl");
    expect_full(TMP "/full-ev", 2, "build/sprec eval " TMP "/full.ini --model " TMP "/full-init.h5 -o " MNT
                "/full-ev", MNT "/full-ev/metrics.jsonl");
    run_ok("cmp " TMP "/full-ev/metrics.jsonl " MNT "/full-ev/metrics.jsonl");
    unmount();
}

// Without root: the file size limit makes the second checkpoint's write fail with EFBIG; one line, exit 1, the
// first checkpoint intact, no temporary.
static void test_file_too_large(void **state) {
    (void)state;
    fixture();
    run_ok("rm -rf " TMP "/fbig && build/sprec train " TMP "/full.ini --train.ckpt_every=2 --stop-at 2 "
           "--run.out_dir=" TMP "/fbig >/dev/null && cp " TMP "/fbig/checkpoint.h5 " TMP "/fbig-step2.h5");
    expect_error("sh -c \"trap '' XFSZ; ulimit -f 4096; exec env " SPREC_CHECKED " train " TMP "/full.ini "
                 "--train.ckpt_every=2 --resume --run.out_dir=" TMP "/fbig >/dev/null\"", TMP "/fbig/checkpoint.h5.", "File too large");
    run_ok("cmp " TMP "/fbig/checkpoint.h5 " TMP "/fbig-step2.h5 && ! ls -A " TMP "/fbig | grep -q 'tmp$'");
}

DEFINE_TEST_GROUP(test_disk_full, cmocka_unit_test(test_disk_full_train), cmocka_unit_test(test_disk_full_data),
                  cmocka_unit_test(test_file_too_large))
