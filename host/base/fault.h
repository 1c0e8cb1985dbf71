// Fault injection, for tests only: SPREC_FAULT="kill@SITE:STEP" makes the
// process kill itself (SIGKILL) when the named site reaches STEP, so a test can
// check that a really interrupted run resumes exactly; "hang@SITE:STEP" stops
// it there instead (SIGSTOP: a rank that hangs, for the dist.timeout_s
// watchdog; host/base/dist/dist_mpi.c); "usr1@SITE:STEP" raises SIGUSR1 there
// (what SLURM sends before a time limit: the trainers checkpoint and stop,
// host/train/train_run.c), so a test needs no timing race; "sleep@SITE:STEP"
// makes the calling thread sleep FAULT_SLEEP_S seconds there and go on (a rank
// busy alone for long, which the heartbeat must not take for a stopped one).
// The sites and what each means: docs/testing.md.
#ifndef SPREC_FAULT_H
#define SPREC_FAULT_H

#include <stddef.h>

// What SPREC_FAULT asks for.
typedef struct {
    char site[32];   // a known site; "" = no fault
    long step;       // >= 1
    int sig;         // what is raised: SIGKILL (kill@), SIGSTOP (hang@), SIGUSR1 (usr1@); 0 with sleep
    int sleep;       // 1: sleep@ (FAULT_SLEEP_S, then on)
} Fault;

#define FAULT_SLEEP_S 6

// Parses a SPREC_FAULT value: "kill@SITE:STEP", "hang@SITE:STEP", "usr1@SITE:STEP" or "sleep@SITE:STEP" with SITE a known site and
// STEP >= 1. Returns 0, or -1 with the reason in err.
int fault_parse(const char *spec, Fault *f, char *err, size_t cap);

// Reads SPREC_FAULT (unset or empty: no fault) once; a malformed value is a
// one-line error. fault_point reads it too; calling this first makes a bad
// value fail before any work is done.
void fault_init(void);

// A fault site: when SPREC_FAULT names this site and step, flushes every stdio
// stream (so the files hold what the process wrote, whatever the buffer sizes)
// and kills the process with SIGKILL (hang@: stops it with SIGSTOP; usr1@:
// raises SIGUSR1, whose handler returns, and the process goes on; sleep@:
// sleeps FAULT_SLEEP_S seconds and returns).
void fault_point(const char *site, long step);

#endif
