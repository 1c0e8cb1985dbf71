// The atomic writer (host/base/atomic_write.h): the real file holds the old
// content until the commit and the whole new one after; an abandoned write, an
// error exit and a failed commit leave it untouched and no temporary behind.
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tests.h"
#include "base/atomic_write.h"
#include "base/h5io.h"

#define TMP "build/test-tmp/atomic"

static int exists(const char *path) { return access(path, F_OK) == 0; }

// No temporary (NAME.PID-N.tmp, NAME.tmp) left in the test folder.
static void no_tmp(void) {
    char out[4096];
    run_capture("ls -A " TMP " | grep '\\.tmp$'", out, sizeof out);
    assert_string_equal(out, "");
}

static void expect_text(const char *path, const char *text) {
    char *s = read_text_file(path, NULL);
    assert_string_equal(s, text);
    free(s);
}

static void fresh_dir(void) {
    run_ok("rm -rf " TMP " && mkdir -p " TMP);
}

static void test_atomic_commit_and_abandon(void **state) {
    (void)state;
    fresh_dir();
    write_file(TMP "/f.txt", "old\n");
    AtomicFile *a = atomic_begin(TMP "/f.txt", NULL);
    char want[256];   // unique to the process and the write
    unsigned long k;
    snprintf(want, sizeof want, TMP "/f.txt.%ld-", (long)getpid());
    assert_true(strncmp(a->tmp, want, strlen(want)) == 0 && sscanf(a->tmp + strlen(want), "%lu", &k) == 1);
    snprintf(want, sizeof want, TMP "/f.txt.%ld-%lu.tmp", (long)getpid(), k);
    assert_string_equal(a->tmp, want);
    AtomicFile *b = atomic_begin(TMP "/f.txt", NULL);   // a second writer of the same file: its own name
    snprintf(want, sizeof want, TMP "/f.txt.%ld-%lu.tmp", (long)getpid(), k + 1);
    assert_string_equal(b->tmp, want);
    atomic_abandon(b);
    fputs("new\n", atomic_fopen(a, "w"));
    expect_text(TMP "/f.txt", "old\n");               // not yet
    atomic_commit(a);
    expect_text(TMP "/f.txt", "new\n");
    no_tmp();

    a = atomic_begin(TMP "/f.txt", NULL);
    fputs("abandoned\n", atomic_fopen(a, "w"));
    atomic_abandon(a);
    expect_text(TMP "/f.txt", "new\n");
    no_tmp();

    // a new file, an HDF5 writer, a suffix of the caller's
    a = atomic_begin(TMP "/d.h5", ".mine-1.tmp");
    assert_string_equal(a->tmp, TMP "/d.h5.mine-1.tmp");
    hid_t f = h5_create(a->tmp);
    h5_write_i32(f, "x", 1, (long[]){2}, (int[]){4, 5});
    h5_close(f);
    assert_false(exists(TMP "/d.h5"));
    atomic_commit(a);
    assert_false(exists(TMP "/d.h5.mine-1.tmp"));
    f = h5_open_read(TMP "/d.h5");
    long n[1] = {2};
    int *x = h5_read_i32(f, TMP "/d.h5", "x", 1, n);
    assert_true(x[0] == 4 && x[1] == 5);
    free(x);
    h5_close(f);
}

// Children: start two writes (one a folder), then exit as fail() does before committing.
static void exit_midway_child(void *arg) {
    (void)arg;
    AtomicFile *a = atomic_begin(TMP "/f.txt", NULL), *b = atomic_begin_dir(TMP "/dir");
    fputs("half", atomic_fopen(a, "w"));
    write_file(TMP "/dir.tmp/x.json", "{}");
    (void)b;
    fprintf(stderr, "sprec: error: stopped in the middle\n");
    exit(1);
}

static void test_atomic_error_exit(void **state) {
    (void)state;
    fresh_dir();
    write_file(TMP "/f.txt", "old\n");
    char err[4096];
    assert_int_equal(run_forked(exit_midway_child, NULL, err, sizeof err), 1);
    assert_string_equal(err, "sprec: error: stopped in the middle\n");
    expect_text(TMP "/f.txt", "old\n");
    no_tmp();
    assert_false(exists(TMP "/dir"));
}

// A forked child's exit must not remove its parent's pending temporary.
static void just_exit_child(void *arg) { (void)arg; exit(1); }

static void test_atomic_fork_keeps_parent(void **state) {
    (void)state;
    fresh_dir();
    AtomicFile *a = atomic_begin(TMP "/p.txt", NULL);
    FILE *f = atomic_fopen(a, "w");
    fputs("parent\n", f);
    fflush(f);
    char err[256];
    assert_int_equal(run_forked(just_exit_child, NULL, err, sizeof err), 1);
    assert_true(exists(a->tmp));
    atomic_commit(a);
    expect_text(TMP "/p.txt", "parent\n");
}

// The rename target is a non-empty folder: the commit fails with one line
// naming both names; the folder and its file stay, the temporary goes.
static void commit_onto_dir_child(void *arg) {
    (void)arg;
    AtomicFile *a = atomic_begin(TMP "/busy", NULL);
    fputs("new\n", atomic_fopen(a, "w"));
    atomic_commit(a);
}

// A write that hits the file size limit (a full disk's stand-in): EFBIG at the latest on the commit's flush.
static void commit_too_big_child(void *arg) {
    (void)arg;
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {4096, 4096};
    setrlimit(RLIMIT_FSIZE, &lim);
    AtomicFile *a = atomic_begin(TMP "/f.txt", NULL);
    FILE *f = atomic_fopen(a, "w");
    for (int i = 0; i < 10000; i++) fputs("0123456789", f);
    atomic_commit(a);
}

// The temporary cannot be created (no such folder; a read-only one for non-root).
static void no_folder_child(void *arg) {
    AtomicFile *a = atomic_begin((const char *)arg, NULL);
    atomic_fopen(a, "w");
}

static void one_line(const char *err) {
    const char *nl = strchr(err, '\n');
    assert_true(strncmp(err, "sprec: error: ", 14) == 0 && nl && nl[1] == 0);
}

static void test_atomic_failed_commit(void **state) {
    (void)state;
    fresh_dir();
    char err[4096];
    run_ok("mkdir -p " TMP "/busy && echo keep > " TMP "/busy/inside");
    assert_int_equal(run_forked(commit_onto_dir_child, NULL, err, sizeof err), 1);
    one_line(err);
    assert_non_null(strstr(err, "cannot rename '" TMP "/busy."));
    assert_non_null(strstr(err, ".tmp' to '" TMP "/busy': "));
    expect_text(TMP "/busy/inside", "keep\n");
    no_tmp();

    write_file(TMP "/f.txt", "old\n");
    assert_int_equal(run_forked(commit_too_big_child, NULL, err, sizeof err), 1);
    one_line(err);
    assert_non_null(strstr(err, "cannot write '" TMP "/f.txt."));
    assert_non_null(strstr(err, ".tmp': File too large"));
    expect_text(TMP "/f.txt", "old\n");
    no_tmp();

    assert_int_equal(run_forked(no_folder_child, TMP "/none/f.txt", err, sizeof err), 1);
    one_line(err);
    assert_non_null(strstr(err, "cannot create '" TMP "/none/f.txt."));
    assert_non_null(strstr(err, ".tmp': No such file or directory"));
    if (geteuid() != 0) {   // root writes into read-only folders
        run_ok("mkdir -p " TMP "/ro && echo old > " TMP "/ro/f.txt && chmod a-w " TMP "/ro");
        assert_int_equal(run_forked(no_folder_child, TMP "/ro/f.txt", err, sizeof err), 1);
        one_line(err);
        assert_non_null(strstr(err, ".tmp': Permission denied"));
        expect_text(TMP "/ro/f.txt", "old\n");
        run_ok("chmod u+w " TMP "/ro");
    }
}

static void test_atomic_folder(void **state) {
    (void)state;
    fresh_dir();
    AtomicFile *a = atomic_begin_dir(TMP "/out");
    assert_string_equal(a->tmp, TMP "/out.tmp");
    write_file(TMP "/out.tmp/a.json", "{\"a\": 1}");
    write_file(TMP "/out.tmp/b.txt", "b");
    assert_false(exists(TMP "/out"));
    atomic_commit(a);
    expect_text(TMP "/out/a.json", "{\"a\": 1}");
    expect_text(TMP "/out/b.txt", "b");
    assert_false(exists(TMP "/out.tmp"));

    a = atomic_begin_dir(TMP "/gone");
    write_file(TMP "/gone.tmp/a.json", "{}");
    atomic_abandon(a);
    assert_false(exists(TMP "/gone.tmp"));
    assert_false(exists(TMP "/gone"));
}

// A temporary a killed writer left (its process gone) is removed by the next write of the same file; one of a
// live process (here our parent), another file's and a name of another shape stay.
static void test_atomic_stale(void **state) {
    (void)state;
    fresh_dir();
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    assert_true(dead > 0);
    waitpid(dead, NULL, 0);
    char stale[256], live[256], other[256];
    snprintf(stale, sizeof stale, TMP "/s.txt.%ld-3.tmp", (long)dead);
    snprintf(live, sizeof live, TMP "/s.txt.%ld-0.tmp", (long)getppid());
    snprintf(other, sizeof other, TMP "/t.txt.%ld-0.tmp", (long)dead);
    write_file(stale, "half");
    write_file(live, "busy");
    write_file(other, "half");
    write_file(TMP "/s.txt.tmp", "x");
    AtomicFile *a = atomic_begin(TMP "/s.txt", NULL);
    fputs("new\n", atomic_fopen(a, "w"));
    atomic_commit(a);
    expect_text(TMP "/s.txt", "new\n");
    assert_false(exists(stale));
    assert_true(exists(live) && exists(other) && exists(TMP "/s.txt.tmp"));
}

DEFINE_TEST_GROUP(test_atomic_write, cmocka_unit_test(test_atomic_commit_and_abandon),
                  cmocka_unit_test(test_atomic_error_exit), cmocka_unit_test(test_atomic_fork_keeps_parent),
                  cmocka_unit_test(test_atomic_failed_commit), cmocka_unit_test(test_atomic_folder),
                  cmocka_unit_test(test_atomic_stale))
