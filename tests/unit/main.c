// The sprec test runner: all groups in one cmocka run (one summary line).
// SPREC_TEST_FILTER=pattern runs only the matching tests.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include "tests.h"

#define GROUPS(X) X(test_ops) X(test_config) X(test_h5io) X(test_reference) X(test_train) X(test_cli_errors)

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

int main(void) {
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
