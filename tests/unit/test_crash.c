// The crash-consistency harness (tests/crash/kill_resume.sh, docs/testing.md "Crash consistency"), a CI-sized
// subset: SFT killed inside its second checkpoint write, DPO (LoRA, self negatives) killed inside the pairs
// write (before any checkpoint: a fresh start) and inside its second checkpoint write; each resumed run folder
// must be byte-identical to the uninterrupted run's (checkpoint, log, pairs, no temporary). The full run, 24
// drawn kill points over five scenarios with random-moment kills too, is `tests/crash/kill_resume.sh`.
#include <stdio.h>
#include <string.h>
#include "tests.h"

static void test_crash_kill_resume(void **state) {
    (void)state;
    char out[16384];
    const int rc = run_capture("rm -rf build/test-tmp/crash-ci && CRASH_DIR=build/test-tmp/crash-ci "
                               "CRASH_ONLY='sft|dpo-lora' CRASH_POINTS='sft:kill@ckpt.write:2 "
                               "dpo-lora:kill@pairs.write:1 dpo-lora:kill@ckpt.write:2' tests/crash/kill_resume.sh",
                               out, sizeof out);
    if (rc != 0) print_message("%s", out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "crash: 3 kills, 3 resumed runs identical to the uninterrupted ones, 0 failed"));
    const char *fresh = strstr(out, "dpo-lora kill@pairs.write:1: identical");   // no checkpoint yet: no --resume
    assert_non_null(fresh);
    print_message("  3 SIGKILLs (inside a checkpoint write of SFT and DPO, inside the pairs write) + resume: "
                  "run folders byte-identical to the uninterrupted runs\n");
}

DEFINE_TEST_GROUP(test_crash, cmocka_unit_test(test_crash_kill_resume))
