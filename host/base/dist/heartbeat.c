// The ranks' heartbeat (heartbeat.h). Who watches whom: a ring, rank r beats to
// r + 1 and watches r - 1, so each rank is watched by exactly one other and the
// traffic is one byte per rank per beat at any world size. One stopped rank, or
// a block of neighbours (the ranks of a lost node), is named by the one live
// rank after it: one line. The thread sleeps between beats (a condition
// variable, so heartbeat_stop wakes it at once) and only makes non-blocking MPI
// calls, on a communicator of its own, so it never waits on a peer and never
// touches the main thread's collectives or the watchdog's `reports`.
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include "heartbeat.h"
#include "base/progress.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake;         // signalled by heartbeat_stop (waits on CLOCK_MONOTONIC)
static pthread_t thread;
static int running, stopping;       // (under lock)
static double limit_s = 30;         // [dist] heartbeat_s (heartbeat_set_limit; under lock); 0 = never judge
static MPI_Comm beats;
static int rank, size;

// A failed MPI call in the thread (e.g. the TCP link to a dead peer): one line and the job ends. Never
// fail()/exit() here: exit runs dist_exit, which would wait for this very thread.
static void check_mpi(int rc, const char *call, int peer) {
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "MPI error %d", rc);
    fprintf(stderr, "sprec: error: rank %d: the heartbeat's %s with rank %d failed: %s (rank %d dead or its node "
            "lost?); ending the job\n", rank, call, peer, msg, peer);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

static void *beat_loop(void *arg) {
    (void)arg;
    const int next = (rank + 1) % size, prev = (rank + size - 1) % size;
    static char in, out;   // one byte each way; the content means nothing
    MPI_Request recv, send = MPI_REQUEST_NULL;
    check_mpi(MPI_Irecv(&in, 1, MPI_CHAR, prev, 0, beats, &recv), "receive", prev);
    double heard = now_seconds();
    pthread_mutex_lock(&lock);
    while (!stopping) {
        const double limit = limit_s;
        pthread_mutex_unlock(&lock);
        for (int got = 1; got;) {   // every beat that arrived (after this process was stopped: many)
            check_mpi(MPI_Test(&recv, &got, MPI_STATUS_IGNORE), "receive", prev);
            if (!got) break;
            heard = now_seconds();
            check_mpi(MPI_Irecv(&in, 1, MPI_CHAR, prev, 0, beats, &recv), "receive", prev);
        }
        int sent = 1;   // one beat in flight at most: none pile up at a rank that stopped reading
        if (send != MPI_REQUEST_NULL) check_mpi(MPI_Test(&send, &sent, MPI_STATUS_IGNORE), "send", next);
        if (sent) check_mpi(MPI_Isend(&out, 1, MPI_CHAR, next, 0, beats, &send), "send", next);
        if (limit > 0 && now_seconds() - heard > limit) {
            fprintf(stderr, "sprec: error: rank %d has sent no heartbeat for %g s ([dist] heartbeat_s; stopped, "
                    "dead, or its node lost); ending the job\n", prev, limit);
            fflush(stderr);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        // a beat every second, more often for a short limit: a late beat is never taken for silence
        const double every = limit > 0 ? fmin(1, limit / 5) : 1, t = now_seconds() + every;
        struct timespec until = {.tv_sec = (time_t)t, .tv_nsec = (long)((t - floor(t)) * 1e9)};
        pthread_mutex_lock(&lock);
        if (!stopping) pthread_cond_timedwait(&wake, &lock, &until);
    }
    pthread_mutex_unlock(&lock);
    check_mpi(MPI_Cancel(&recv), "receive", prev);
    check_mpi(MPI_Wait(&recv, MPI_STATUS_IGNORE), "receive", prev);
    if (send != MPI_REQUEST_NULL) check_mpi(MPI_Request_free(&send), "send", next);   // (a small, eager send)
    return NULL;
}

void heartbeat_start(MPI_Comm comm) {
    beats = comm;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&wake, &attr);
    pthread_condattr_destroy(&attr);
    // the thread takes no signals: handlers (SIGUSR1, ...) run on the threads that expect them
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    running = pthread_create(&thread, NULL, beat_loop, NULL) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (running) pthread_setname_np(thread, "sprec-heartbeat");   // (top -H, /proc/PID/task/*/comm)
    if (!running && rank == 0)
        fprintf(stderr, "sprec: warning: cannot start the heartbeat thread: a stopped or lost rank ends the job only "
                "after [dist] timeout_s\n");
}

void heartbeat_set_limit(double seconds) {
    pthread_mutex_lock(&lock);
    limit_s = seconds;
    pthread_mutex_unlock(&lock);
}

void heartbeat_stop(void) {
    if (!running) return;
    pthread_mutex_lock(&lock);
    stopping = 1;
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
    pthread_join(thread, NULL);
    running = 0;
}
