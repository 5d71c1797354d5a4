// Data-parallel training across processes: MPI when lora.c is built with it
// and started by mpirun, else one process (rank 0 of 1) and every call below
// is a no-op. Collectives are called by every rank in the same order.
#ifndef LC_DIST_H
#define LC_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

// Joins the MPI job when started by mpirun (Open MPI, MPICH or PMIx
// environment); a plain start stays one process and never touches MPI.
lc_status lc_dist_init(int *argc, char ***argv);
void lc_dist_finalize(void);
// Ends every rank of the job with `code` (a rank that failed alone: the
// others may be waiting in a collective).
void lc_dist_abort(int code);

bool lc_dist_compiled(void);
int lc_dist_rank(void);
int lc_dist_size(void);
// Ranks on this machine (MPI's shared-memory group); 1 without MPI.
int lc_dist_local_size(void);

// Sums x [n] over the ranks; every rank gets the same bits (reduced on rank
// 0 in rank order, then broadcast), so optimizer steps stay identical.
lc_status lc_dist_sum_f32(float *x, size_t n);
lc_status lc_dist_sum_f64(double *x, size_t n);
// The largest of every rank's *x, on every rank.
lc_status lc_dist_max_int(int *x);
// Rank 0's bytes to every rank.
lc_status lc_dist_bcast(void *buf, size_t bytes);
// Each rank's `bytes` of mine, in rank order, into all [size * bytes].
lc_status lc_dist_allgather(const void *mine, void *all, size_t bytes);

// Every rank learns whether any rank failed: returns the status of the
// lowest-numbered failed rank. That rank keeps its own message and reports it;
// the others return its status silently. No rank is left in a collective.
lc_status lc_dist_agree(lc_status st);
// Marks the error st as one every rank returns alike (a config error): only
// rank 0 reports it.
lc_status lc_dist_error_shared(lc_status st);
// Whether the current error is known to every rank (no abort needed), and
// whether this rank should stay silent about it.
bool lc_dist_error_is_shared(void);
bool lc_dist_error_is_quiet(void);

#endif
