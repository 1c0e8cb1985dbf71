// SPREC_FAULT, the test-only fault switch (fault.h, docs/testing.md).
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "fault.h"
#include "kernels/errors.h"

// Every site a fault_point call names; docs/testing.md says what each means.
static const char *const SITES[] = {"sft", "dpo", "sprec.sft", "sprec.dpo", "ckpt.write", "pairs.write"};
#define N_SITES (int)(sizeof SITES / sizeof SITES[0])

static int known_site(const char *site) {
    for (int i = 0; i < N_SITES; i++) if (!strcmp(site, SITES[i])) return 1;
    return 0;
}

// "sft, dpo, ..." for the error messages
static void site_list(char *out, size_t cap) {
    size_t k = 0;
    out[0] = 0;
    for (int i = 0; i < N_SITES && k < cap; i++) k += (size_t)snprintf(out + k, cap - k, "%s%s", i ? ", " : "", SITES[i]);
}

int fault_parse(const char *spec, Fault *f, char *err, size_t cap) {
    memset(f, 0, sizeof *f);
    char sites[128];
    site_list(sites, sizeof sites);
    // the action, and where SITE starts; sleep@ raises nothing (sig 0): the thread sleeps
    static const struct { const char *prefix; int sig; } actions[] = {
        {"kill@", SIGKILL}, {"hang@", SIGSTOP}, {"usr1@", SIGUSR1}, {"sleep@", 0}};
    const char *site = NULL;
    for (int i = 0; i < 4; i++) {
        const size_t len = strlen(actions[i].prefix);
        if (!strncmp(spec, actions[i].prefix, len)) { f->sig = actions[i].sig; f->sleep = !f->sig; site = spec + len; }
    }
    const char *colon = site ? strrchr(site, ':') : NULL;
    if (!site || !colon || colon == site) {
        snprintf(err, cap, "expected kill@SITE:STEP, hang@SITE:STEP, usr1@SITE:STEP or sleep@SITE:STEP (sites: %s)", sites);
        return -1;
    }
    const size_t n = (size_t)(colon - site);
    if (n >= sizeof f->site) {
        snprintf(err, cap, "unknown site '%.*s' (sites: %s)", (int)n, site, sites);
        return -1;
    }
    memcpy(f->site, site, n);
    if (!known_site(f->site)) {
        snprintf(err, cap, "unknown site '%s' (sites: %s)", f->site, sites);
        f->site[0] = 0;
        return -1;
    }
    char *end;
    errno = 0;
    const long step = strtol(colon + 1, &end, 10);
    if (colon[1] < '0' || colon[1] > '9' || *end || errno || step < 1) {
        snprintf(err, cap, "STEP must be a whole number >= 1, got '%s'", colon + 1);
        f->site[0] = 0;
        return -1;
    }
    f->step = step;
    return 0;
}

static Fault fault;
static int fault_read;

void fault_init(void) {
    if (fault_read) return;
    fault_read = 1;
    const char *spec = getenv("SPREC_FAULT");
    char err[256];
    if (spec && *spec && fault_parse(spec, &fault, err, sizeof err) != 0)
        fail("SPREC_FAULT=%s: %s (a test-only switch: docs/testing.md)", spec, err);
}

void fault_point(const char *site, long step) {
    if (!known_site(site)) fail("fault_point: site '%s' is not in host/base/fault.c's list", site);
    fault_init();
    if (step != fault.step || strcmp(site, fault.site) != 0) return;
    fflush(NULL);
    if (fault.sleep) {   // this thread only: the process lives on (its heartbeat thread beats meanwhile)
        for (unsigned left = FAULT_SLEEP_S; left > 0;) left = sleep(left);
        return;
    }
    raise(fault.sig);
}
