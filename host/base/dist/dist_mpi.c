// The Open MPI implementation of host/base/dist.h (built instead of
// dist_single.c when make finds mpicc; docs/cluster.md). A process that no
// launcher started (no mpirun/srun environment) is rank 0 of 1 and never calls
// MPI, so a plain `build/sprec ...` behaves as the single-process build.
//
// Determinism: every sum is taken in rank order (rank 0's value, then + rank
// 1's, ...), never in the order messages arrive, so a given world size gives
// bit-identical runs. Device buffers go through the backend's download/upload,
// so any backend whose device memory is host memory works; CUDA sums with NCCL
// (built when make finds nccl.h; see SPREC_NCCL below).
//
// Failure: with several ranks, a non-zero exit() on any rank (fail(), check())
// calls MPI_Abort from the exit path, which ends every rank: none is left
// waiting in a collective for a rank that is gone. A rank that never arrives
// (hung, stopped) is the watchdog's: every collective is started non-blocking
// and polled, and one that waits longer than [dist] timeout_s ends the job with
// one line naming it and the ranks that did not arrive (report_stuck). A rank
// that stops or dies without a word is the heartbeat's (heartbeat.c): it ends
// the job within [dist] heartbeat_s whatever the others are doing.
#include <mpi.h>
#include <math.h>
#include <sched.h>
#include <time.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include "dist.h"
#include "heartbeat.h"
#include "buckets.h"
#include "base/filesum.h"
#include "kernels/errors.h"
#ifdef SPREC_NCCL
// --device cuda under a launcher: gradient sums with NCCL (make builds this when it finds nccl.h; NCCL=0: off).
// Each rank uses GPU local_rank % device_count (SPREC_CUDA_DEVICE, unless already set), its communicator comes
// from an ncclUniqueId that rank 0 broadcasts over MPI, and the all-reduce runs on a stream of its own.
#include <cuda_runtime.h>
#include <nccl.h>
static ncclComm_t nccl;             // NULL until a CUDA backend meets the ranks (dist_check_backend)
static cudaStream_t nccl_stream;
static cudaEvent_t nccl_final;      // recorded on the compute stream when gradient buckets become final
// the CUDA backend's compute stream (kernels/cuda/runtime.cu), a cudaStream_t
void *cuda_compute_stream(void);
#endif

static Dist world = {.rank = 0, .world = 1};
static int started, size_all = 1;   // size_all: the ranks the launcher started (world.world is 1 for a rank-0-alone command)
static int mpi_on;                  // a launcher started this process: MPI is initialised
static double timeout_s = 1800;     // [dist] timeout_s (dist_set_options); 0 = wait forever
static size_t bucket_floats = 1 << 20;   // [dist] bucket_mb, in floats
static long collectives;            // collectives started so far: the same count on every rank
static long sums;                   // dist_sum_device calls (gradient sums) ...
static double summed_bytes, waited_s, started_s;   // ... their bytes, the seconds spent in collectives, and since when
static long buckets_all, buckets_early;             // the sums' buckets, and those started before dist_sum_end
static MPI_Comm reports;            // a duplicate of MPI_COMM_WORLD for the watchdog's messages
static MPI_Comm beats;              // another, for the heartbeat's
static MPI_Comm gathers, bcasts;    // duplicates for the gradient sum's two kinds of collectives (dist_sum_begin)

static void mpi_fail(const char *call, int rc) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "MPI error %d", rc);
    fail("rank %d of %d: %s failed: %s", world.rank, size_all, call, msg);
}
#define MPI_CHECK(call) do { const int rc_ = (call); if (rc_ != MPI_SUCCESS) mpi_fail(#call, rc_); } while (0)

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void sleep_s(double s) {
    struct timespec t = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - floor(s)) * 1e9)};
    nanosleep(&t, NULL);
}

void dist_set_heartbeat(double heartbeat_s) { heartbeat_set_limit(heartbeat_s); }

void dist_set_options(double timeout_seconds, double bucket_mb) {
    timeout_s = timeout_seconds;
    bucket_floats = (size_t)(bucket_mb * (1 << 20) / sizeof(float));
    if (bucket_floats < 1) bucket_floats = 1;
}

// The watchdog, on a rank that has waited timeout_s in collective #seq: it tells
// every other rank so and listens for theirs for a grace period; the ranks it
// did not hear from never reached the collective (hung, stopped, or far behind).
// The lowest rank that timed out names them in one line and aborts the job; the
// others wait for that abort (and abort themselves if it does not come).
static _Noreturn void report_stuck(const char *what, long seq) {
    static long msg;   // (an Isend's buffer outlives this call's frame: the job ends first)
    msg = seq;
    char *heard = xmalloc((size_t)size_all);
    memset(heard, 0, (size_t)size_all);
    heard[world.rank] = 1;
    for (int r = 0; r < size_all; r++) {
        if (r == world.rank) continue;
        MPI_Request q;
        if (MPI_Isend(&msg, 1, MPI_LONG, r, 0, reports, &q) == MPI_SUCCESS) MPI_Request_free(&q);
    }
    const double grace = fmin(5, fmax(1, 0.2 * timeout_s)), t0 = now_s();
    while (now_s() - t0 < grace) {
        int flag = 0;
        MPI_Status st;
        if (MPI_Iprobe(MPI_ANY_SOURCE, 0, reports, &flag, &st) != MPI_SUCCESS || !flag) { sleep_s(0.01); continue; }
        long theirs;
        MPI_Recv(&theirs, 1, MPI_LONG, st.MPI_SOURCE, 0, reports, MPI_STATUS_IGNORE);
        heard[st.MPI_SOURCE] = 1;
    }
    int lowest = 0;
    while (!heard[lowest]) lowest++;
    if (world.rank == lowest) {
        char missing[256] = "";
        size_t k = 0;
        int n_missing = 0;
        for (int r = 0; r < size_all && k < sizeof missing; r++)
            if (!heard[r]) k += (size_t)snprintf(missing + k, sizeof missing - k, "%s%d", n_missing++ ? ", " : "", r);
        if (n_missing)
            fprintf(stderr, "sprec: error: rank%s %s did not reach collective #%ld, %s, within [dist] timeout_s = %g s "
                    "(hung, stopped, or far behind the others); ending the job\n", n_missing > 1 ? "s" : "", missing,
                    seq, what, timeout_s);
        else
            fprintf(stderr, "sprec: error: every rank waited more than [dist] timeout_s = %g s in collective #%ld, %s; "
                    "ending the job\n", timeout_s, seq, what);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    sleep_s(3 * grace);
    MPI_Abort(MPI_COMM_WORLD, 1);
    abort();
}

// Waits until done(arg) (what: the collective's name in the watchdog's line).
// Polls, yielding the core (ranks may outnumber the cores), so that a wait
// longer than timeout_s is noticed.
static void wait_until(int (*done)(void *), void *arg, const char *what) {
    const long seq = ++collectives;
    const double t0 = now_s();
    for (;;) {
        if (done(arg)) { waited_s += now_s() - t0; return; }
        const double waited = now_s() - t0;
        if (timeout_s > 0 && waited > timeout_s) report_stuck(what, seq);
        if (waited < 1e-3) sched_yield();
        else sleep_s(waited < 0.1 ? 5e-5 : 1e-3);
    }
}

static int request_done(void *req) {
    int done = 0;
    MPI_CHECK(MPI_Test(req, &done, MPI_STATUS_IGNORE));
    return done;
}

// Completes the non-blocking collective req.
static void wait_for(MPI_Request *req, const char *what) { wait_until(request_done, req, what); }

#ifdef SPREC_NCCL
static void cuda_ok(cudaError_t e, const char *call) {
    if (e != cudaSuccess) fail("rank %d of %d: %s failed: %s", world.rank, size_all, call, cudaGetErrorString(e));
}
static void nccl_ok(ncclResult_t r, const char *call) {
    if (r != ncclSuccess) fail("rank %d of %d: %s failed: %s", world.rank, size_all, call, ncclGetErrorString(r));
}
#define CUDA_OK(call) cuda_ok((call), #call)
#define NCCL_OK(call) nccl_ok((call), #call)

// the all-reduce on nccl_stream has finished; NCCL's own errors (a peer gone) end the job
static int nccl_done(void *arg) {
    (void)arg;
    ncclResult_t async;
    NCCL_OK(ncclCommGetAsyncError(nccl, &async));
    nccl_ok(async, "ncclAllReduce (asynchronous error)");
    const cudaError_t e = cudaStreamQuery(nccl_stream);
    if (e == cudaErrorNotReady) return 0;
    cuda_ok(e, "cudaStreamQuery");
    return 1;
}

// before the backend opens its GPU: this rank's is local_rank % device_count
static void pick_gpu(void) {
    MPI_Comm node;
    int local = 0, count = 0;
    MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world.rank, MPI_INFO_NULL, &node));
    MPI_CHECK(MPI_Comm_rank(node, &local));
    MPI_CHECK(MPI_Comm_free(&node));
    if (getenv("SPREC_CUDA_DEVICE") || cudaGetDeviceCount(&count) != cudaSuccess || count <= 0) return;   // no GPU: CPU runs
    char dev[16];
    snprintf(dev, sizeof dev, "%d", local % count);
    if (setenv("SPREC_CUDA_DEVICE", dev, 1) != 0) fail("rank %d: cannot set SPREC_CUDA_DEVICE", world.rank);
}

static void nccl_start(void) {
    if (nccl) return;
    ncclUniqueId id;
    if (world.rank == 0) NCCL_OK(ncclGetUniqueId(&id));
    MPI_Request rq;
    MPI_CHECK(MPI_Ibcast(&id, (int)sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD, &rq));
    wait_for(&rq, "the NCCL set-up (dist_check_backend)");
    CUDA_OK(cudaStreamCreateWithFlags(&nccl_stream, cudaStreamNonBlocking));
    CUDA_OK(cudaEventCreateWithFlags(&nccl_final, cudaEventDisableTiming));
    NCCL_OK(ncclCommInitRank(&nccl, world.world, id, world.rank));
}
#endif

// Started by mpirun (Open MPI's variables; PMIX_RANK also under srun --mpi=pmix),
// an MPICH-style launcher (PMI_RANK), or an srun step of several tasks.
static int launched(void) {
    const char *n = getenv("SLURM_STEP_NUM_TASKS");
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK") || (n && atoi(n) > 1);
}

// on_exit handler: finalize on success (unless dist_finish did); abort the job when any rank fails
static void dist_exit(int status, void *arg) {
    (void)arg;
    int done = 0;
    MPI_Finalized(&done);
    if (done) return;
    if (status != 0 && world.world > 1) {   // (a rank-0-alone command: the others already wait at the end, below)
        fflush(stdout);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, status);
    }
    dist_finish();
}

void dist_finish(void) {
    int done = 0;
    if (mpi_on) MPI_Finalized(&done);
    if (!mpi_on || done) return;
#ifdef SPREC_NCCL
    if (nccl) ncclCommDestroy(nccl);
#endif
    if (world.rank == 0 && sums > 0) {   // the communication of the run (docs/SCALING.md)
        const double run_s = now_s() - started_s;
        printf("dist: %d ranks | %ld gradient sums of %.3g MB (buckets of %.3g MB, %ld of %ld started during the "
               "backward) | %.2f s of %.2f s waiting in collectives (%.1f%%)\n", world.world, sums,
               summed_bytes / sums / (1 << 20), (double)bucket_floats * sizeof(float) / (1 << 20), buckets_early,
               buckets_all, waited_s, run_s, 100 * waited_s / run_s);
        fflush(stdout);
    }
    // Every rank reaches its end before any stops its heartbeat: a rank done early (all but rank 0 in a
    // one-process command) keeps beating and watching while the others still work, so it is neither taken
    // for lost nor blind to a rank that stops then. No timeout here: that is the heartbeat's job.
    MPI_Request end;
    if (MPI_Ibarrier(MPI_COMM_WORLD, &end) == MPI_SUCCESS)
        for (int ended = 0; MPI_Test(&end, &ended, MPI_STATUS_IGNORE) == MPI_SUCCESS && !ended;) sleep_s(0.01);
    heartbeat_stop();
    MPI_Finalize();
}

// size and XXH64 of this process's executable: the same binary on every rank
static void check_binary(void) {
    const int fd = open("/proc/self/exe", O_RDONLY);
    if (fd < 0) fail("rank %d: cannot read /proc/self/exe to compare the binary with rank 0's", world.rank);
    uint64_t total, h = xxh64_fd(fd, "/proc/self/exe", 0, &total);
    close(fd);
    char text[96];
    const int n = snprintf(text, sizeof text, "%llu bytes, xxh64 %016llx", (unsigned long long)total,
                           (unsigned long long)h);
    dist_check_same(&world, "sprec binary (/proc/self/exe)", text, (size_t)n);
}

int dist_start(int splits_work) {
    if (!started) {
        started = 1;
        if (launched()) {
            // stderr line-buffered: an error line (several fprintf calls) goes out in one write, so
            // the lines of several ranks never interleave
            static char err_buf[1 << 14];
            setvbuf(stderr, err_buf, _IOLBF, sizeof err_buf);
            int threads = 0;   // the heartbeat thread makes MPI calls of its own
            MPI_CHECK(MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &threads));
            mpi_on = 1;
            MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
            MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world.rank));
            MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size_all));
            MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &reports));
            MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &beats));
            if (size_all > 1 && threads == MPI_THREAD_MULTIPLE) heartbeat_start(beats);
            else if (size_all > 1 && world.rank == 0)
                fprintf(stderr, "sprec: warning: this MPI grants no MPI_THREAD_MULTIPLE (thread level %d), so the "
                        "ranks run without a heartbeat: a stopped or lost rank ends the job only after [dist] "
                        "timeout_s\n", threads);
            MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &gathers));   // the gradient sum's (dist_sum_begin)
            MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &bcasts));
            started_s = now_s();
            world.world = size_all;
            if (on_exit(dist_exit, NULL) != 0) fail("rank %d: cannot register the MPI exit handler", world.rank);
            const char *n = getenv("SLURM_STEP_NUM_TASKS");
            if (n && atoi(n) != size_all)
                fail("rank %d: srun started %s tasks but MPI sees %d: launch with srun --mpi=pmix", world.rank, n,
                     size_all);
            if (world.rank != 0 && !freopen("/dev/null", "w", stdout))
                fail("rank %d: cannot send stdout to /dev/null", world.rank);
            check_binary();
#ifdef SPREC_NCCL
            pick_gpu();
#endif
        }
    }
    if (!splits_work && size_all > 1) {   // a one-process command: rank 0 runs it as a world of 1
        if (world.rank != 0) return 0;
        world.world = 1;
    }
    return 1;
}

const Dist *dist_world(void) {
    if (!started) dist_start(1);
    return &world;
}

void dist_check_backend(const Dist *d, const Backend *be) {
    // mem_stats is NULL exactly on the backends whose buffers are host memory (kernels/backend.h)
#ifdef SPREC_NCCL
    // every rank a launcher started sums through NCCL on a GPU, also one alone (mpirun -np 1: tests/gpu/nccl.sh)
    if (be->mem_stats && mpi_on && d->world == size_all) nccl_start();
#else
    if (d->world > 1 && be->mem_stats)
        fail("--device %s with %d ranks: multi-rank CUDA needs NCCL (this sprec was built without it: make found "
             "no nccl.h, or NCCL=0); use --device cpu or one rank", be->name, d->world);
#endif
}

// "[section] line" of text t[0..n) around byte i: the line that holds it and the
// last [section] header above it (a config as config_write writes it)
static void line_at(const char *t, size_t n, size_t i, char *out, size_t cap) {
    size_t s = i, e = i, hs = 0, he = 0;
    while (s > 0 && t[s - 1] != '\n') s--;
    while (e < n && t[e] != '\n') e++;
    for (size_t k = 0; k < s;) {
        size_t ke = k;
        while (ke < s && t[ke] != '\n') ke++;
        if (t[k] == '[') { hs = k; he = ke; }
        k = ke + 1;
    }
    if (he > hs && t[s] != '[') snprintf(out, cap, "%.*s %.*s", (int)(he - hs), t + hs, (int)(e - s), t + s);
    else snprintf(out, cap, "%.*s", (int)(e - s), t + s);
}

void dist_check_same(const Dist *d, const char *what, const char *text, size_t n) {
    if (d->world == 1) return;
    char where[128];
    snprintf(where, sizeof where, "the %s check (dist_check_same)", what);
    MPI_Request rq;
    long long n0 = (long long)n;
    MPI_CHECK(MPI_Ibcast(&n0, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD, &rq));
    wait_for(&rq, where);
    if (n0 > INT_MAX) fail("rank %d: the %s to compare is %lld bytes, more than MPI_Ibcast takes", d->rank, what, n0);
    char *ref = xmalloc((size_t)n0 + 1);
    if (d->rank == 0) memcpy(ref, text, n);
    MPI_CHECK(MPI_Ibcast(ref, (int)n0, MPI_CHAR, 0, MPI_COMM_WORLD, &rq));
    wait_for(&rq, where);
    size_t i = 0;   // the first byte that differs
    while (i < n && i < (size_t)n0 && text[i] == ref[i]) i++;
    int differs = i < n || i < (size_t)n0, *all = xmalloc((size_t)d->world * sizeof(int));
    MPI_CHECK(MPI_Iallgather(&differs, 1, MPI_INT, all, 1, MPI_INT, MPI_COMM_WORLD, &rq));
    wait_for(&rq, where);
    int first = -1;
    for (int r = 0; r < d->world && first < 0; r++) if (all[r]) first = r;
    free(all);
    if (first < 0) { free(ref); return; }
    if (d->rank == first) {   // one line, from the lowest rank that differs; then every rank exits
        char here[256], there[256];
        line_at(text, n, i, here, sizeof here);
        line_at(ref, (size_t)n0, i, there, sizeof there);
        fprintf(stderr, "sprec: error: rank %d runs another %s than rank 0: '%s' here, '%s' on rank 0 (start every "
                "rank with the same binary, config and overrides)\n", d->rank, what, here, there);
        fflush(stderr);
    }
    free(ref);
    MPI_CHECK(MPI_Ibarrier(MPI_COMM_WORLD, &rq));   // the line is out before the job ends
    wait_for(&rq, where);
    if (d->rank == first) exit(1);                  // its MPI_Abort (dist_exit) ends every rank ...
    MPI_CHECK(MPI_Ibarrier(MPI_COMM_WORLD, &rq));   // ... which wait here for it (one abort, one launcher message)
    wait_for(&rq, where);
    exit(1);
}

void dist_sum_host(const Dist *d, double *x, int n) {
    if (d->world == 1 || n <= 0) return;
    double *all = xmalloc((size_t)d->world * (size_t)n * sizeof(double));
    MPI_Request rq;
    MPI_CHECK(MPI_Iallgather(x, n, MPI_DOUBLE, all, n, MPI_DOUBLE, MPI_COMM_WORLD, &rq));
    wait_for(&rq, "a sum of losses or statistics (dist_sum_host)");
    for (int i = 0; i < n; i++) {
        double s = all[i];
        for (int r = 1; r < d->world; r++) s += all[(size_t)r * n + i];
        x[i] = s;
    }
    free(all);
}

// ---- the gradient sum (dist_sum_begin / ready / end) ----
// In buckets (buckets.h: fixed by n and [dist] bucket_mb, counted from the end of
// the buffer), each started as soon as it is wholly final, in bucket order, so
// that the sum overlaps the rest of the backward. Host-memory backends: rank 0
// gathers a bucket of every rank (MPI_Igather), sums it in rank order and
// broadcasts the sum (MPI_Ibcast). Gathers and broadcasts run on communicators
// of their own (made by dist_start), so each kind keeps the bucket order on every
// rank whatever the timing that interleaves the two. SLOTS buckets are in flight
// at a time, each with a host slot (rank 0: also world buckets to gather into);
// every ready() moves them on (MPI_Test), rank 0 summing a bucket once its gather
// is complete. MPI moves data only inside MPI calls, so each ready() advances every
// bucket in flight by a step: 8 rather than 3 in flight let ~2/3 of the buckets of
// an 8-layer model start during the backward instead of ~1/4 (docs/cluster.md).
// CUDA: the NCCL stream waits for an event recorded on the compute
// stream when buckets become final, then all-reduces them. The sum of an element
// depends neither on the bucket size nor on when its bucket started.
// out[i] = the sum over ranks r = 0, 1, ... of all[r m + i], in that order: the one place where device
// sums are taken, so the plain sum and ZeRO-1's reduce-scatter agree bit for bit.
static void sum_in_rank_order(float *out, const float *all, int world_size, size_t m) {
    for (size_t i = 0; i < m; i++) {
        float total = all[i];
        for (int r = 1; r < world_size; r++) total += all[(size_t)r * m + i];
        out[i] = total;
    }
}

enum { SLOTS = 8 };
enum { SLOT_FREE, SLOT_GATHER, SLOT_BCAST };
static int overlap = 1;             // [dist] overlap: 0 = every bucket starts in dist_sum_end
static struct {
    int on, skip;                   // between begin and end; skip: nothing to sum (one rank, no NCCL)
    int use_nccl;
    const Dist *d;
    const Backend *be;
    float *x;
    Buckets b;
    size_t done;                    // buckets summed and written back (they finish in bucket order)
    float *h[SLOTS], *all[SLOTS];   // bucket k uses slot k % SLOTS
    int state[SLOTS];
    MPI_Request gather[SLOTS], bcast[SLOTS];
} sum;

void dist_set_overlap(int on) { overlap = on; }

static size_t bucket_len(size_t k) {
    size_t lo, hi;
    buckets_range(&sum.b, k, &lo, &hi);
    return hi - lo;
}

// Moves the buckets in flight on: completed gathers summed (rank 0) and broadcast,
// in bucket order; completed broadcasts written back. Then starts the buckets that
// are final (all of them when finishing, else only with [dist] overlap) while a
// slot is free.
static void sum_progress(int finishing) {
    const int w = sum.d->world;
    for (size_t k = sum.done; k < sum.b.next; k++) {
        const int s = (int)(k % SLOTS);
        if (sum.state[s] != SLOT_GATHER) continue;
        if (!request_done(&sum.gather[s])) break;   // (a later gather waits: the broadcasts keep the order)
        const int m = (int)bucket_len(k);
        if (sum.d->rank == 0) sum_in_rank_order(sum.h[s], sum.all[s], w, (size_t)m);
        MPI_CHECK(MPI_Ibcast(sum.h[s], m, MPI_FLOAT, 0, bcasts, &sum.bcast[s]));
        sum.state[s] = SLOT_BCAST;
    }
    while (sum.done < sum.b.next) {
        const int s = (int)(sum.done % SLOTS);
        if (sum.state[s] != SLOT_BCAST || !request_done(&sum.bcast[s])) break;
        size_t lo, hi;
        buckets_range(&sum.b, sum.done, &lo, &hi);
        sum.be->upload(sum.x + lo, sum.h[s], (hi - lo) * sizeof(float));
        sum.state[s] = SLOT_FREE;
        sum.done++;
    }
    size_t k;
    while ((finishing || overlap) && sum.b.next < sum.done + SLOTS && buckets_next(&sum.b, &k)) {
        const int s = (int)(k % SLOTS), m = (int)bucket_len(k);
        size_t lo, hi;
        buckets_range(&sum.b, k, &lo, &hi);
        sum.be->download(sum.h[s], sum.x + lo, (size_t)m * sizeof(float));
        MPI_CHECK(MPI_Igather(sum.h[s], m, MPI_FLOAT, sum.all[s], m, MPI_FLOAT, 0, gathers, &sum.gather[s]));
        sum.state[s] = SLOT_GATHER;
        buckets_early += !finishing;
    }
}

#ifdef SPREC_NCCL
// every bucket now final (all of them when finishing, else only with [dist] overlap) on the NCCL stream, after
// the compute stream's work queued so far (the ops that wrote them)
static void sum_nccl_start(int finishing) {
    size_t k;
    int waited = 0;
    while ((finishing || overlap) && buckets_next(&sum.b, &k)) {
        if (!waited) {
            CUDA_OK(cudaEventRecord(nccl_final, (cudaStream_t)cuda_compute_stream()));
            CUDA_OK(cudaStreamWaitEvent(nccl_stream, nccl_final, 0));
            waited = 1;
        }
        size_t lo, hi;
        buckets_range(&sum.b, k, &lo, &hi);
        NCCL_OK(ncclAllReduce(sum.x + lo, sum.x + lo, hi - lo, ncclFloat, ncclSum, nccl, nccl_stream));
        buckets_early += !finishing;
    }
}
#endif

void dist_sum_begin(const Dist *d, const Backend *be, float *x, size_t n) {
    check(!sum.on, "dist_sum_begin: the previous gradient sum has not ended");
    sum.on = 1;
    sum.d = d;
    sum.be = be;
    sum.x = x;
    sum.use_nccl = 0;
#ifdef SPREC_NCCL
    sum.use_nccl = nccl && be->mem_stats;
    // (the NCCL set-up is a collective: here, where ranks arrive at different moments, too late to make)
    check(sum.use_nccl || !(be->mem_stats && mpi_on && d->world == size_all),
          "dist_sum_begin on --device %s before dist_check_backend", be->name);
#else
    if (d->world > 1) dist_check_backend(d, be);   // refuses multi-rank CUDA (one line, no collective)
#endif
    sum.skip = n == 0 || (!sum.use_nccl && d->world == 1);
    // (at most INT_MAX elements a bucket: MPI's counts)
    const size_t bucket = bucket_floats < (size_t)INT_MAX ? bucket_floats : (size_t)INT_MAX;
    buckets_init(&sum.b, n, bucket);
    sum.done = 0;
    if (sum.skip || sum.use_nccl) return;
    const size_t len = n < bucket ? n : bucket;
    for (int s = 0; s < SLOTS; s++) {
        sum.h[s] = xmalloc(len * sizeof(float));
        sum.all[s] = d->rank == 0 ? xmalloc(len * (size_t)d->world * sizeof(float)) : NULL;
        sum.state[s] = SLOT_FREE;
    }
}

void dist_sum_ready(size_t lo, size_t hi) {
    check(sum.on, "dist_sum_ready without dist_sum_begin");
    if (sum.skip) return;
    buckets_ready(&sum.b, lo, hi);
#ifdef SPREC_NCCL
    if (sum.use_nccl) { sum_nccl_start(0); return; }
#endif
    sum_progress(0);
}

static int sum_finished(void *arg) {
    (void)arg;
#ifdef SPREC_NCCL
    if (sum.use_nccl) return nccl_done(NULL);
#endif
    sum_progress(1);
    return sum.done == sum.b.count;
}

void dist_sum_end(void) {
    check(sum.on, "dist_sum_end without dist_sum_begin");
    if (!sum.skip) {
        buckets_ready(&sum.b, 0, sum.b.n);   // the backward is over: everything is final
#ifdef SPREC_NCCL
        if (sum.use_nccl) sum_nccl_start(1);
#endif
        wait_until(sum_finished, NULL, "the gradient sum (dist_sum_end)");
        sums++;
        summed_bytes += (double)sum.b.n * sizeof(float);
        buckets_all += (long)sum.b.count;
    }
    for (int s = 0; s < SLOTS; s++) { free(sum.h[s]); free(sum.all[s]); sum.h[s] = sum.all[s] = NULL; }
    buckets_free(&sum.b);
    sum.on = 0;
}

// An item of n bytes as one MPI element (free with MPI_Type_free)
static MPI_Datatype bytes_type(size_t n) {
    MPI_Datatype t;
    MPI_CHECK(MPI_Type_contiguous((int)n, MPI_BYTE, &t));
    MPI_CHECK(MPI_Type_commit(&t));
    return t;
}

void dist_gather(const Dist *d, void *array, size_t item_bytes, int lo, int hi, int n) {
    if (d->world == 1) return;
    int mine[2] = {lo, hi}, *ranges = xmalloc((size_t)d->world * 2 * sizeof(int));
    MPI_Request rq;
    MPI_CHECK(MPI_Iallgather(mine, 2, MPI_INT, ranges, 2, MPI_INT, MPI_COMM_WORLD, &rq));
    wait_for(&rq, "a gather of the ranks' rows (dist_gather)");
    int *counts = xmalloc((size_t)d->world * sizeof(int)), *displs = xmalloc((size_t)d->world * sizeof(int));
    for (int r = 0, next = 0; r < d->world; r++) {
        check(ranges[2 * r] == next && ranges[2 * r + 1] >= next, "dist_gather: rank %d holds [%d, %d), expected "
              "a range from %d (the ranges must tile [0, %d) in rank order)", r, ranges[2 * r], ranges[2 * r + 1], next, n);
        displs[r] = next;
        counts[r] = ranges[2 * r + 1] - next;
        next = ranges[2 * r + 1];
        if (r == d->world - 1) check(next == n, "dist_gather: the ranks' ranges end at %d, not %d", next, n);
    }
    check(item_bytes <= INT_MAX, "dist_gather: items of %zu bytes", item_bytes);
    MPI_Datatype item = bytes_type(item_bytes);
    MPI_CHECK(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, array, counts, displs, item, MPI_COMM_WORLD, &rq));
    wait_for(&rq, "a gather of the ranks' rows (dist_gather)");
    MPI_CHECK(MPI_Type_free(&item));
    free(ranges); free(counts); free(displs);
}

// ---- ZeRO-1's collectives (host/model/optimizer.c): host memory over MPI, GPU memory over NCCL, in place ----

static void host_memory_only(const Backend *be, const char *what) {
    if (be->mem_stats)
        fail("--device %s: %s of ZeRO-1 ([train] zero = 1) needs NCCL on this backend (this sprec was built "
             "without it); use --device cpu or [train] zero = 0", be->name, what);
}

#ifdef SPREC_NCCL
// On GPUs: the shards differ in size by at most one, and ncclReduceScatter / ncclAllGather want equal counts
// (padding would cost a padded copy of the buffer), so each shard is one ncclReduce to its owner or one
// ncclBroadcast from it, all in one group on nccl_stream, after the backend's stream has written the buffer.
// NCCL picks its own reduction order (deterministic for a given world and topology, not rank order).
static int nccl_for(const Backend *be) { return nccl && be->mem_stats; }

enum { SHARDS_REDUCE, SHARDS_BROADCAST };

static void nccl_shards(const Dist *d, int op, void *x, size_t n, size_t elem_bytes, const char *what) {
    CUDA_OK(cudaDeviceSynchronize());
    NCCL_OK(ncclGroupStart());
    for (int r = 0; r < d->world; r++) {
        const Dist owner = {.rank = r, .world = d->world};
        size_t lo, hi;
        dist_shard(&owner, n, &lo, &hi);
        if (hi == lo) continue;
        char *at = (char *)x + lo * elem_bytes;
        if (op == SHARDS_REDUCE) NCCL_OK(ncclReduce(at, at, hi - lo, ncclFloat, ncclSum, r, nccl, nccl_stream));
        else NCCL_OK(ncclBroadcast(at, at, (hi - lo) * elem_bytes, ncclUint8, r, nccl, nccl_stream));
    }
    NCCL_OK(ncclGroupEnd());
    wait_until(nccl_done, NULL, what);
}
#endif

// every rank's shard of n elements (dist_shard) as MPI counts and displacements
static void shard_layout(const Dist *d, size_t n, int *counts, int *displs) {
    check(n <= INT_MAX, "ZeRO-1: a buffer of %zu elements, more than MPI's counts take", n);
    for (int r = 0; r < d->world; r++) {
        const Dist other = {.rank = r, .world = d->world};
        size_t lo, hi;
        dist_shard(&other, n, &lo, &hi);
        displs[r] = (int)lo;
        counts[r] = (int)(hi - lo);
    }
}

// In buckets: bucket k holds elements [k B, (k+1) B) of every shard; each rank sends those of
// shard r to rank r (MPI_Ialltoallv) and sums the world copies of its own in rank order.
void dist_reduce_scatter_device(const Dist *d, const Backend *be, float *x, size_t n) {
#ifdef SPREC_NCCL
    if (nccl_for(be) && n > 0) {   // (also one rank alone: tests/gpu/nccl.sh)
        nccl_shards(d, SHARDS_REDUCE, x, n, sizeof(float), "the gradient reduce-scatter (dist_reduce_scatter_device)");
        sums++;
        summed_bytes += (double)n * sizeof(float);
        return;
    }
#endif
    if (d->world == 1 || n == 0) return;
    host_memory_only(be, "the gradient reduce-scatter");
    const int w = d->world;
    int *start = xmalloc(4 * (size_t)w * sizeof(int)), *len = start + w, *scount = len + w, *sdispl = scount + w;
    int *rcount = xmalloc(2 * (size_t)w * sizeof(int)), *rdispl = rcount + w;
    shard_layout(d, n, len, start);
    const size_t bucket = bucket_floats, mine = (size_t)len[d->rank];
    float *recv = xmalloc(bucket * (size_t)w * sizeof(float));
    for (size_t k0 = 0; k0 < (size_t)len[0]; k0 += bucket) {   // (rank 0's shard is the longest)
        for (int r = 0; r < w; r++) {
            const size_t a = k0 < (size_t)len[r] ? k0 : (size_t)len[r];
            const size_t b = k0 + bucket < (size_t)len[r] ? k0 + bucket : (size_t)len[r];
            scount[r] = (int)(b - a);
            sdispl[r] = start[r] + (int)a;
        }
        const size_t a = k0 < mine ? k0 : mine, m = (k0 + bucket < mine ? k0 + bucket : mine) - a;
        for (int r = 0; r < w; r++) { rcount[r] = (int)m; rdispl[r] = r * (int)m; }
        MPI_Request rq;
        MPI_CHECK(MPI_Ialltoallv(x, scount, sdispl, MPI_FLOAT, recv, rcount, rdispl, MPI_FLOAT, MPI_COMM_WORLD, &rq));
        wait_for(&rq, "the gradient reduce-scatter (dist_reduce_scatter_device)");
        sum_in_rank_order(x + start[d->rank] + a, recv, w, m);   // the very sums of dist_sum_device
    }
    free(recv); free(start); free(rcount);
    sums++;
    summed_bytes += (double)n * sizeof(float);
}

void dist_allgather_device(const Dist *d, const Backend *be, void *x, size_t n, size_t elem_bytes) {
#ifdef SPREC_NCCL
    if (nccl_for(be) && n > 0) {
        nccl_shards(d, SHARDS_BROADCAST, x, n, elem_bytes, "the all-gather of the updated weights (dist_allgather_device)");
        return;
    }
#endif
    if (d->world == 1 || n == 0) return;
    host_memory_only(be, "the all-gather of the updated weights");
    int *counts = xmalloc(2 * (size_t)d->world * sizeof(int)), *displs = counts + d->world;
    shard_layout(d, n, counts, displs);
    MPI_Datatype item = bytes_type(elem_bytes);
    MPI_Request rq;
    MPI_CHECK(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x, counts, displs, item, MPI_COMM_WORLD, &rq));
    wait_for(&rq, "the all-gather of the updated weights (dist_allgather_device)");
    MPI_CHECK(MPI_Type_free(&item));
    free(counts);
}

void dist_gather_shards(const Dist *d, const Backend *be, const float *shard, size_t n, size_t a, size_t b,
                        float *out) {
    size_t lo, hi;
    dist_shard(d, n, &lo, &hi);
#ifdef SPREC_NCCL
    const int on_gpu = nccl_for(be);
#else
    const int on_gpu = 0;
#endif
    if (d->world == 1 && !on_gpu) { be->download(out, shard + a - lo, (b - a) * sizeof(float)); return; }
    if (!on_gpu) host_memory_only(be, "the gather of the sharded state for a checkpoint");
    // every rank's part of [a, b): its shard's overlap with the range, in rank order
    int *counts = xmalloc(2 * (size_t)d->world * sizeof(int)), *displs = counts + d->world;
    shard_layout(d, n, counts, displs);
    for (int r = 0; r < d->world; r++) {
        const size_t s = (size_t)displs[r], e = s + (size_t)counts[r];
        const size_t x = s > a ? s : a, y = e < b ? e : b;
        displs[r] = x < y ? (int)(x - a) : 0;
        counts[r] = x < y ? (int)(y - x) : 0;
    }
    const size_t from = lo > a ? lo : a;
    const float *send = counts[d->rank] ? shard + (from - lo) : shard;
#ifdef SPREC_NCCL
    if (on_gpu) {   // the other ranks' parts into a device buffer of the range on rank 0, then one download
        float *range = d->rank == 0 ? be->alloc((b - a) * sizeof(float)) : NULL;
        CUDA_OK(cudaDeviceSynchronize());
        NCCL_OK(ncclGroupStart());
        if (d->rank != 0 && counts[d->rank])
            NCCL_OK(ncclSend(send, (size_t)counts[d->rank], ncclFloat, 0, nccl, nccl_stream));
        for (int r = 1; d->rank == 0 && r < d->world; r++)
            if (counts[r]) NCCL_OK(ncclRecv(range + displs[r], (size_t)counts[r], ncclFloat, r, nccl, nccl_stream));
        NCCL_OK(ncclGroupEnd());
        wait_until(nccl_done, NULL, "the gather of sharded state to rank 0 for a checkpoint (dist_gather_shards)");
        if (d->rank == 0) {
            be->copy(range + displs[0], send, (size_t)counts[0] * sizeof(float));
            be->download(out, range, (b - a) * sizeof(float));
            be->free(range);
        }
        free(counts);
        return;
    }
#endif
    MPI_Request rq;
    MPI_CHECK(MPI_Igatherv(send, counts[d->rank], MPI_FLOAT, out, counts, displs, MPI_FLOAT, 0,
                           MPI_COMM_WORLD, &rq));
    wait_for(&rq, "the gather of sharded state to rank 0 for a checkpoint (dist_gather_shards)");
    free(counts);
}

DistCounters dist_counters(void) { return (DistCounters){sums, summed_bytes, waited_s}; }
