// The sprec test runner: all groups in one cmocka run (one summary line).
// Run from the repository root after `make build/test_sprec` (which also builds the two
// programs the tests run: build/sprec and the sanitized build/asan/sprec).
// SPREC_TEST_FILTER=pattern runs only the tests whose name matches (cmocka's
// filter: '*' and '?' wildcards), e.g. SPREC_TEST_FILTER='test_lora*' build/test_sprec.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tests.h"

#define GROUPS(X) X(test_ops) X(test_config) X(test_h5io) X(test_reference) X(test_train) X(test_cli_errors) X(test_import) X(test_generate) X(test_tokenizer) X(test_dpo) X(test_metrics) X(test_trie) X(test_lora) X(test_prepare) X(test_eval) X(test_grounding) X(test_sft_recdata) X(test_dpo_train) X(test_dist) X(test_device_check) X(test_bench) X(test_bf16) X(test_registry) X(test_atomic_write) X(test_fault) X(test_checksum) X(test_mpi) X(test_mpi_bench) X(test_mpi_zero_master) X(test_logs) X(test_disk_full) X(test_crash) X(test_head_grad) X(test_stage_time) X(test_encoder) X(test_stages) X(test_mpi_heartbeat) X(test_mpi_usr1) X(test_mpi_overlap)

GROUPS(TEST_GROUP)

int run_capture(const char *cmd, char *out, size_t cap) {
    char full[8192];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t n = 0;
    int ch;
    while ((ch = fgetc(p)) != EOF) if (n + 1 < cap) out[n++] = (char)ch;
    if (cap) out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// Runs fn(arg) in a child process with its stderr captured into err; returns
// the child's exit status, or 128 + signal if it crashed (or hung: 10 s alarm).
int run_forked(void (*fn)(void *), void *arg, char *err, size_t cap) {
    int fds[2];
    if (pipe(fds) < 0) return -1;
    fflush(stdout);   // or the child's exit flushes the parent's buffered output again
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        alarm(10);
        fn(arg);
        _exit(0);
    }
    close(fds[1]);
    size_t n = 0;   // read to EOF before waiting, so a chatty child cannot block on a full pipe
    char buf[4096];
    ssize_t r;
    while ((r = read(fds[0], buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < r; i++) if (n + 1 < cap) err[n++] = buf[i];
    err[n] = 0;
    close(fds[0]);
    // -fsanitize=address builds: LeakSanitizer in a child of a multi-threaded
    // parent (OpenMP) notes "==PID==Running thread N was not suspended..."; drop
    // that line so messages can still be checked to be exactly one line
    for (char *hit; (hit = strstr(err, " was not suspended. False leaks are possible.")); ) {
        char *start = hit, *end = strchr(hit, '\n');
        while (start > err && start[-1] != '\n') start--;
        end = end ? end + 1 : hit + strlen(hit);
        memmove(start, end, strlen(end) + 1);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

char *read_text_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return s;
}

char *read_gz(const char *path, size_t *len) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "gzip -dc '%s'", path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = 0, cap = 1 << 20, r;
    char *buf = malloc(cap);
    while ((r = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += r;
        if (n + 1 == cap) buf = realloc(buf, cap *= 2);
    }
    assert_int_equal(pclose(p), 0);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

int read_jsonl_values(const char *path, const char *key, double *out, int cap) {
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024], pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    int n = 0;
    while (fgets(line, sizeof line, f) && n < cap) {
        const char *p = strstr(line, pat);
        assert_non_null(p);
        out[n++] = strtod(p + strlen(pat), NULL);
    }
    fclose(f);
    return n;
}

void run_ok(const char *cmd) {
    char out[16384];
    int rc = run_capture(cmd, out, sizeof out);
    if (rc != 0) print_message("command failed (exit %d): %s\n%s\n", rc, cmd, out);
    assert_int_equal(rc, 0);
}

void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

const char *error_run(const char *cmd, char *buf, size_t cap) {
    snprintf(buf, cap, "%s", cmd);
    for (char *p = buf; (p = strstr(p, "detect_leaks=1")); ) p[strlen("detect_leaks=")] = '0';
    return buf;
}

void expect_error(const char *cmd, const char *needle1, const char *needle2) {
    char out[8192], quiet[4096];   // (run_capture adds " 2>&1" within its 8192)
    int rc = run_capture(error_run(cmd, quiet, sizeof quiet), out, sizeof out);
    const char *err = strstr(out, "sprec: error: ");
    const int sanitizer = strstr(out, "Sanitizer") || strstr(out, "runtime error");
    if (rc != 1 || !err || sanitizer || (needle1 && !strstr(err, needle1)) || (needle2 && !strstr(err, needle2)))
        print_message("command: %s\nexit %d, output:\n%s\n(wanted '%s' and '%s')\n", cmd, rc, out,
                      needle1 ? needle1 : "", needle2 ? needle2 : "");
    assert_false(sanitizer);
    assert_int_equal(rc, 1);
    assert_non_null(err);
    if (needle1) assert_non_null(strstr(err, needle1));
    if (needle2) assert_non_null(strstr(err, needle2));
    // one line: nothing after the error message's newline
    const char *nl = strchr(err, '\n');
    assert_true(nl == NULL || nl[1] == 0);
}

long file_size(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

void flip_byte(const char *path, long off, unsigned char mask) {
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, off, SEEK_SET);
    int c = fgetc(f);
    fseek(f, off, SEEK_SET);
    fputc(c ^ mask, f);
    fclose(f);
}

int main(void) {
    // the end-to-end tests run these programs: say so once instead of failing dozens of tests
    const char *programs[] = {"build/sprec", "build/asan/sprec"};
    for (size_t i = 0; i < sizeof programs / sizeof programs[0]; i++)
        if (access(programs[i], X_OK) != 0) {
            fprintf(stderr, "test_sprec: %s is missing: run from the repository root after "
                            "`make build/test_sprec` (or `make test`)\n", programs[i]);
            return 1;
        }
    // scratch files go under the checkout's build/test-tmp, never a shared /tmp name: two checkouts may test at once
    if (system("mkdir -p build/test-tmp") != 0) { fprintf(stderr, "test_sprec: cannot create build/test-tmp\n"); return 1; }
    size_t total = 0, k = 0;
#define COUNT(g) total += g##_count;
    GROUPS(COUNT)
    struct CMUnitTest *all = calloc(total, sizeof *all);
#define APPEND(g) for (size_t i = 0; i < g##_count; i++) all[k++] = g[i];
    GROUPS(APPEND)
    const char *filter = getenv("SPREC_TEST_FILTER");
    if (filter && *filter) cmocka_set_test_filter(filter);
    int failed = _cmocka_run_group_tests("sprec", all, total, NULL, NULL);
    free(all);
    return failed ? 1 : 0;
}

int have_mpi(void) {
    char out[256];
    return run_capture("ldd build/sprec | grep -q libmpi && command -v mpirun", out, sizeof out) == 0;
}

int count_of(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}
