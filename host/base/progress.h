// Wall-clock timing and human-readable durations for progress lines.
#ifndef SPREC_PROGRESS_H
#define SPREC_PROGRESS_H

#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include "dist/dist.h"

static inline double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// "42s", "3m07s", "1h02m"
static inline const char *fmt_duration(double s, char *buf, size_t cap) {
    if (s < 0 || s != s) s = 0;
    long t = (long)(s + 0.5);
    if (t < 60) snprintf(buf, cap, "%lds", t);
    else if (t < 3600) snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, cap, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
    return buf;
}

// "WHAT: done/total UNIT | rate UNIT/s | ETA 1m02s" on stderr: redrawn in place
// on a terminal; elsewhere (logs) one line at most every 10 s, and the last one.
// t0 = start time, *t_last = time of the last line (start it at t0). Rank 0 alone prints (base/dist.h).
static inline void progress_line(const char *what, int done, int total, const char *unit, double t0, double *t_last) {
    if (!dist_is_root(dist_world())) return;
    const int tty = isatty(2), last = done >= total;
    const double t = now_seconds();
    if (!tty && !last && t - *t_last < 10) return;
    *t_last = t;
    const double rate = done / (t - t0 + 1e-9);
    char eta[32], el[32];
    fprintf(stderr, "%s%s: %d/%d %s | %.2f %s/s | %s %s%s", tty ? "\r" : "", what, done, total, unit, rate, unit,
            last ? "took" : "ETA", last ? fmt_duration(t - t0, el, sizeof el)
                                        : fmt_duration((total - done) / (rate + 1e-12), eta, sizeof eta),
            tty && !last ? "   " : "\n");
    fflush(stderr);
}

#endif
