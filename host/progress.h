// Wall-clock timing and human-readable durations for progress lines.
#ifndef SPREC_PROGRESS_H
#define SPREC_PROGRESS_H

#include <stdio.h>
#include <time.h>

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

#endif
