// host/base/fault.h, the test-only fault switch SPREC_FAULT (docs/testing.md):
// "kill@SITE:STEP" parses for every known site (hang@ and usr1@ too, each to its signal); anything else is refused with a
// reason, and `sprec train` turns a bad value into a one-line error before any
// work. The kills themselves are exercised by the resume tests (test_train.c,
// test_dpo_train.c).
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "tests.h"
#include "base/fault.h"

#define TMP "build/test-tmp"

static void test_fault_parse(void **state) {
    (void)state;
    const char *sites[] = {"sft", "dpo", "sprec.sft", "sprec.dpo", "ckpt.write", "pairs.write"};
    char spec[64], err[256];
    Fault f;
    for (int i = 0; i < 6; i++) {
        snprintf(spec, sizeof spec, "kill@%s:%d", sites[i], 7 + i);
        assert_int_equal(fault_parse(spec, &f, err, sizeof err), 0);
        assert_string_equal(f.site, sites[i]);
        assert_int_equal(f.step, 7 + i);
    }
    // the four actions: what each raises (sleep@ nothing: it sleeps)
    const struct { const char *spec; int sig; } actions[] = {{"kill@sft:2", SIGKILL}, {"hang@dpo:3", SIGSTOP},
                                                              {"usr1@sprec.sft:4", SIGUSR1}, {"sleep@sft:5", 0}};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(fault_parse(actions[i].spec, &f, err, sizeof err), 0);
        assert_int_equal(f.sig, actions[i].sig);
        assert_int_equal(f.sleep, i == 3);
    }
    // each malformed value, with a word its reason must contain
    const char *bad[][2] = {
        {"", "kill@SITE:STEP"},            {"kill", "kill@SITE:STEP"},      {"kill@", "kill@SITE:STEP"},
        {"kill@sft", "kill@SITE:STEP"},    {"kill@:3", "kill@SITE:STEP"},   {"stop@sft:3", "kill@SITE:STEP"},
        {"KILL@sft:3", "kill@SITE:STEP"},  {"kill@sft:", "STEP"},           {"kill@sft:0", "STEP"},
        {"kill@sft:-1", "STEP"},           {"kill@sft:+2", "STEP"},         {"kill@sft:3x", "STEP"},
        {"kill@sft:99999999999999999999", "STEP"},                          {"kill@sprec:3", "unknown site 'sprec'"},
        {"kill@sft.step:3", "unknown site"},                                {"kill@sft:3:4", "unknown site 'sft:3'"},
        {"kill@a-site-name-longer-than-the-buffer-holds:1", "unknown site"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        assert_int_equal(fault_parse(bad[i][0], &f, err, sizeof err), -1);
        if (!strstr(err, bad[i][1])) fail_msg("'%s': reason '%s' lacks '%s'", bad[i][0], err, bad[i][1]);
        assert_string_equal(f.site, "");   // nothing half-parsed is left to fire
    }
    // the list of sites is in the message, so the fix is at hand
    assert_int_equal(fault_parse("kill@nowhere:1", &f, err, sizeof err), -1);
    assert_non_null(strstr(err, "sft, dpo, sprec.sft, sprec.dpo"));
}

// every trainer reads the switch first: a bad value stops it before it writes anything
static void test_fault_bad_value_is_an_error(void **state) {
    (void)state;
    run_ok("mkdir -p " TMP " && rm -rf " TMP "/fault-x");
    const char *methods[] = {"sft", "dpo", "sprec"};
    for (int i = 0; i < 3; i++) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "SPREC_FAULT=kill@nowhere:3 " SPREC_CHECKED " train configs/demo.ini --train.method=%s "
                 "--run.out_dir=" TMP "/fault-x", methods[i]);
        expect_error(cmd, "SPREC_FAULT=kill@nowhere:3: unknown site 'nowhere'", "docs/testing.md");
        snprintf(cmd, sizeof cmd, "SPREC_FAULT=kill@sft:0 " SPREC_CHECKED " train configs/demo.ini --train.method=%s "
                 "--run.out_dir=" TMP "/fault-x", methods[i]);
        expect_error(cmd, "SPREC_FAULT=kill@sft:0: STEP must be a whole number >= 1", NULL);
    }
    assert_int_not_equal(access(TMP "/fault-x", F_OK), 0);
}

DEFINE_TEST_GROUP(test_fault,
    cmocka_unit_test(test_fault_parse),
    cmocka_unit_test(test_fault_bad_value_is_an_error),
)
