// The crash-consistency harness (tests/crash/kill_resume.sh, docs/testing.md "Crash consistency") as CI runs it:
// 20 seeded fault-site kills over its five scenarios (SFT full and LoRA, DPO LoRA and full, a two-iteration
// SPRec loop), each run killed with SIGKILL at the end of a training step, inside a checkpoint write or inside
// the pairs write, then resumed; every resumed run folder must be byte-identical to its scenario's uninterrupted
// run (checkpoint, logs, metrics, pairs, no temporary). No random-moment kills here (CRASH_TIMING=0): seed 1
// draws the same kills every time, so the test cannot flake. Longer runs: `tests/crash/kill_resume.sh 200 SEED`.
#include <stdio.h>
#include <string.h>
#include "tests.h"

static void test_crash_kill_resume(void **state) {
    (void)state;
    char out[32768];
    const int rc = run_capture("rm -rf build/test-tmp/crash-ci && CRASH_DIR=build/test-tmp/crash-ci CRASH_TIMING=0 "
                               "tests/crash/kill_resume.sh 20 1", out, sizeof out);
    if (rc != 0) print_message("%s", out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "crash: 20 kills, 20 resumed runs identical to the uninterrupted ones, 0 failed"));
    // the drawn kills reach every kind of site and every scenario (seed 1)
    const char *must[] = {"sft kill@ckpt.write", "sft-lora kill@", "dpo-lora kill@pairs.write",
                          "dpo-full kill@ckpt.write", "dpo-full kill@pairs.write", "sprec kill@ckpt.write",
                          "sprec kill@pairs.write", "sprec kill@sprec.", "kill@dpo:", "kill@sft:"};
    for (size_t i = 0; i < sizeof must / sizeof *must; i++) {
        if (!strstr(out, must[i])) print_message("no kill point '%s' drawn:\n%s", must[i], out);
        assert_non_null(strstr(out, must[i]));
    }
    print_message("  20 SIGKILLs (training steps, checkpoint writes, pairs writes; SFT, DPO, SPRec) + resume: "
                  "20 run folders byte-identical to the uninterrupted runs\n");
}

DEFINE_TEST_GROUP(test_crash, cmocka_unit_test(test_crash_kill_resume))
