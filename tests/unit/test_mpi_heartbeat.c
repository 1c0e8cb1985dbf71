// The ranks' heartbeat (host/base/dist/heartbeat.c) under a real `mpirun -np 2`, on the
// CPU backend with the small SFT run of test_mpi.c; rank 1 is faulted at the end of SFT
// step 2 (SPREC_FAULT, host/base/fault.c):
//  - stopped (hang@, SIGSTOP) at the DEFAULT settings ([dist] heartbeat_s = 30, timeout_s =
//    1800): the job ends within BOUND_S with a non-zero exit and exactly one error line,
//    the heartbeat's, naming rank 1 (and not before heartbeat_s: the heartbeat ended it);
//  - killed (kill@, SIGKILL) at the default settings: the job ends within BOUND_S;
//  - asleep (sleep@: its main thread sleeps FAULT_SLEEP_S alone while rank 0 waits in the next
//    collective) with heartbeat_s = SHORT_S < FAULT_SLEEP_S: the job is NOT ended (its heartbeat
//    thread beats on) and its log is the plain 2-rank run's, bit for bit.
// The stopped job takes ~30 s of waiting, so it runs in the background while the others run.
// Also: [dist] heartbeat_s must be 0 or >= 1; SPREC_FAULT parses sleep@.
// Skipped (with a message) when build/sprec was built without MPI.
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include "tests.h"
#include "base/fault.h"

#define TMP "build/test-tmp/mpi-heartbeat"
// (its jobs run under MPIRUN_WITHIN(90): a job left hanging ends with exit 124)
#define SFT "configs/demo-sprec.ini --data.dataset=" TMP "/syn.h5 --train.batch_size=4 --train.grad_accum=6 " \
            "--train.max_steps=4 --train.warmup_steps=1 --train.log_every=1"
#define BOUND_S 60.0        // issue 11: a stopped or dead rank ends the job within a minute
#define DEFAULT_HEARTBEAT_S 30
#define SHORT_S 3           // the asleep job's heartbeat_s: half of FAULT_SLEEP_S

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}


// `mpirun -np 1 sprec train ARGS : -np 1 env SPREC_FAULT=fault sprec train ARGS`, run folder TMP/name
static void fault_cmd(char *cmd, size_t cap, const char *name, const char *fault, const char *extra) {
    snprintf(cmd, cap, "rm -rf " TMP "/%s && " MPIRUN_WITHIN(90) "-np 1 build/sprec train " SFT " %s --run.out_dir=" TMP "/%s : "
             "-np 1 env SPREC_FAULT=%s build/sprec train " SFT " %s --run.out_dir=" TMP "/%s 2>&1", name, extra, name,
             fault, extra, name);
}

// the output and exit status of a command started with popen; returns its seconds since t0
static double finish(FILE *p, double t0, char *out, size_t cap, int *rc) {
    size_t n = 0;
    int ch;
    while ((ch = fgetc(p)) != EOF) if (n + 1 < cap) out[n++] = (char)ch;
    out[n] = 0;
    const int st = pclose(p);
    *rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return now_s() - t0;
}

// a job that must end: non-zero exit, not the timeout's 124 (a rank left hanging), within BOUND_S
static void check_ended(const char *what, const char *cmd, const char *out, int rc, double took) {
    print_message("test_mpi_heartbeat: rank 1 of 2 %s at the default settings: the job ended in %.1f s, exit %d\n",
                  what, took, rc);
    if (rc == 0 || rc == 124 || took >= BOUND_S) print_message("command: %s\noutput:\n%s\n", cmd, out);
    assert_true(rc != 0 && rc != 124);
    assert_true(took < BOUND_S);
}

static void test_mpi_heartbeat_faults(void **state) {
    (void)state;
    char out[65536];
    if (run_capture("ldd build/sprec | grep -q libmpi && command -v mpirun", out, sizeof out) != 0) {
        print_message("test_mpi_heartbeat: skipped: build/sprec was built without MPI (MPI=0 or no mpicc)\n");
        skip();
    }
    run_ok("rm -rf " TMP " && mkdir -p " TMP " && gzip -dc tests/ref/tokenizer/smollm2.tokenizer.json.gz > " TMP
           "/tok.json && OMP_NUM_THREADS=1 build/sprec prepare configs/demo-sprec.ini --data.tokenizer=" TMP "/tok.json "
           "--data.dataset=" TMP "/syn.h5 --data.synth_users=400 --data.valid_rows=20 --data.test_rows=60 > /dev/null");

    // stopped, default settings (no override): in the background
    char hang_cmd[4096], cmd[4096];
    fault_cmd(hang_cmd, sizeof hang_cmd, "hang", "hang@sft:2", "");
    const double t_hang = now_s();
    FILE *hang = popen(hang_cmd, "r");
    assert_non_null(hang);

    // killed, default settings
    fault_cmd(cmd, sizeof cmd, "kill", "kill@sft:2", "");
    double t0 = now_s();
    int rc = run_capture(cmd, out, sizeof out);
    double took = now_s() - t0;
    check_ended("killed (SIGKILL)", cmd, out, rc, took);
    assert_non_null(strstr(out, "rank 1"));   // Open MPI's line: "process rank 1 ... exited on signal 9"
    assert_non_null(strstr(out, "signal 9"));

    // asleep alone for FAULT_SLEEP_S > heartbeat_s, rank 0 waiting in a collective: the run goes on to its end
    char extra[64];
    snprintf(extra, sizeof extra, "--dist.heartbeat_s=%d", SHORT_S);
    fault_cmd(cmd, sizeof cmd, "sleep", "sleep@sft:2", extra);
    t0 = now_s();
    rc = run_capture(cmd, out, sizeof out);
    took = now_s() - t0;
    print_message("test_mpi_heartbeat: rank 1 of 2 asleep %d s with [dist] heartbeat_s = %d: exit %d after %.1f s\n",
                  FAULT_SLEEP_S, SHORT_S, rc, took);
    if (rc != 0 || strstr(out, "sprec: ")) print_message("command: %s\noutput:\n%s\n", cmd, out);
    assert_int_equal(rc, 0);
    assert_true(took >= FAULT_SLEEP_S);          // the sleep happened (else this proves nothing)
    assert_null(strstr(out, "sprec: "));         // no error, and no warning (MPI_THREAD_MULTIPLE granted)
    run_ok("rm -rf " TMP "/plain && " MPIRUN_WITHIN(90) "-np 2 build/sprec train " SFT " --run.out_dir=" TMP "/plain > /dev/null "
           "&& cmp " TMP "/plain/train_log.jsonl " TMP "/sleep/train_log.jsonl");

    // the stopped job's end
    took = finish(hang, t_hang, out, sizeof out, &rc);
    check_ended("stopped (SIGSTOP)", hang_cmd, out, rc, took);
    char line[160];
    snprintf(line, sizeof line, "sprec: error: rank 1 has sent no heartbeat for %d s ([dist] heartbeat_s",
             DEFAULT_HEARTBEAT_S);
    if (count_of(out, "sprec: error: ") != 1 || !strstr(out, line)) print_message("output:\n%s\n(wanted one '%s')\n", out, line);
    assert_int_equal(count_of(out, "sprec: error: "), 1);
    assert_non_null(strstr(out, line));
    assert_true(took >= DEFAULT_HEARTBEAT_S);    // the heartbeat ended it, at its default
}

// [dist] heartbeat_s: 0 or at least 1; SPREC_FAULT=sleep@SITE:STEP parses (and is neither hang nor kill)
static void test_mpi_heartbeat_settings(void **state) {
    (void)state;
    expect_error(SPREC_CHECKED " train configs/demo.ini --dist.heartbeat_s=0.5 --run.out_dir=" TMP "/refused",
                 "[dist] heartbeat_s = 0.5: must be 0 (off) or at least 1", NULL);
    expect_error(SPREC_CHECKED " train configs/demo.ini --dist.heartbeat_s=-1 --run.out_dir=" TMP "/refused",
                 "heartbeat_s", NULL);
    Fault f;
    char err[256];
    assert_int_equal(fault_parse("sleep@sprec.dpo:3", &f, err, sizeof err), 0);
    assert_string_equal(f.site, "sprec.dpo");
    assert_int_equal(f.step, 3);
    assert_true(f.sleep && f.sig == 0);
    assert_int_equal(fault_parse("hang@sft:1", &f, err, sizeof err), 0);
    assert_true(f.sig == SIGSTOP && !f.sleep);
    assert_int_equal(fault_parse("sleep@", &f, err, sizeof err), -1);
    assert_non_null(strstr(err, "sleep@SITE:STEP"));
}

DEFINE_TEST_GROUP(test_mpi_heartbeat,
    cmocka_unit_test(test_mpi_heartbeat_settings),
    cmocka_unit_test(test_mpi_heartbeat_faults),
)
