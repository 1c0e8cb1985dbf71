// Liveness of the ranks (docs/cluster.md, "A rank that stops or dies"): every
// rank runs a small thread that beats to the next rank in a ring and watches
// the previous one; a rank not heard from for [dist] heartbeat_s is named in one
// line and the job ends (MPI_Abort). The thread beats whatever the main thread
// does, so a rank computing or writing alone for long is never taken for a
// stopped one; SIGSTOP stops every thread of a process, so a stopped rank is
// caught. Used by dist_mpi.c only (needs MPI_THREAD_MULTIPLE).
#ifndef SPREC_HEARTBEAT_H
#define SPREC_HEARTBEAT_H

#include <mpi.h>

// Starts the thread on this rank of comm (a communicator of its own: the beats
// never match another message). Several ranks only; call on every rank.
void heartbeat_start(MPI_Comm comm);
// The silence after which the watched rank is declared lost; 0 = never (the
// thread still beats, so ranks whose settings differ never accuse each other).
void heartbeat_set_limit(double seconds);
// Ends the thread (waits for it); call once every rank has reached its end
// (dist_exit's barrier), before MPI_Finalize. Nothing to do if not started.
void heartbeat_stop(void);

#endif
