// MPI behind the few collectives data-parallel training needs. Built without
// MPI (LC_HAVE_MPI undefined), every function is the one-process case.

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/dist.h"

#ifdef LC_HAVE_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1, g_local_size = 1, g_active = 0;
static int g_shared = 0, g_quiet = 0;

bool lc_dist_compiled(void) {
#ifdef LC_HAVE_MPI
    return true;
#else
    return false;
#endif
}

int lc_dist_rank(void) { return g_rank; }
int lc_dist_size(void) { return g_size; }
int lc_dist_local_size(void) { return g_local_size; }
bool lc_dist_error_is_shared(void) { return g_shared; }
bool lc_dist_error_is_quiet(void) { return g_quiet; }

lc_status lc_dist_error_shared(lc_status st) {
    g_shared = 1;
    g_quiet = g_rank != 0;
    return st;
}

#ifdef LC_HAVE_MPI

// Started by a launcher: Open MPI's mpirun, MPICH's hydra or a PMIx server.
static int launched_by_mpi(void) {
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

static lc_status mpi_failed(int rc, const char *what) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "error %d", rc);
    return lc_error(LC_STATUS_RUNTIME, "MPI %s failed: %s", what, msg);
}

lc_status lc_dist_init(int *argc, char ***argv) {
    if (!launched_by_mpi()) return LC_STATUS_OK;
    int rc = MPI_Init(argc, argv);
    if (rc != MPI_SUCCESS) return lc_error(LC_STATUS_RUNTIME, "MPI_Init failed (error %d)", rc);
    g_active = 1;
    // Errors come back as codes so they end the job with a message, not a hang.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    MPI_Comm local;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local) == MPI_SUCCESS) {
        MPI_Comm_size(local, &g_local_size);
        MPI_Comm_free(&local);
    }
    return LC_STATUS_OK;
}

void lc_dist_finalize(void) {
    if (g_active) MPI_Finalize();
    g_active = 0;
}

void lc_dist_abort(int code) {
    if (g_active && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

// MPI counts are int: large buffers go in pieces.
#define CHUNK ((size_t)1 << 28)

static lc_status sum_typed(void *x, size_t n, size_t elem, MPI_Datatype type) {
    if (g_size == 1) return LC_STATUS_OK;
    char *p = x;
    for (size_t off = 0; off < n; off += CHUNK) {
        int count = (int)(n - off < CHUNK ? n - off : CHUNK);
        void *buf = p + off * elem;
        int rc = MPI_Reduce(g_rank == 0 ? MPI_IN_PLACE : buf, g_rank == 0 ? buf : NULL, count, type, MPI_SUM, 0,
                            MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_failed(rc, "reduce");
        if ((rc = MPI_Bcast(buf, count, type, 0, MPI_COMM_WORLD)) != MPI_SUCCESS) return mpi_failed(rc, "broadcast");
    }
    return LC_STATUS_OK;
}

lc_status lc_dist_sum_f32(float *x, size_t n) { return sum_typed(x, n, sizeof *x, MPI_FLOAT); }
lc_status lc_dist_sum_f64(double *x, size_t n) { return sum_typed(x, n, sizeof *x, MPI_DOUBLE); }

lc_status lc_dist_max_int(int *x) {
    if (g_size == 1) return LC_STATUS_OK;
    int rc = MPI_Allreduce(MPI_IN_PLACE, x, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? LC_STATUS_OK : mpi_failed(rc, "allreduce");
}

lc_status lc_dist_bcast(void *buf, size_t bytes) {
    if (g_size == 1) return LC_STATUS_OK;
    char *p = buf;
    for (size_t off = 0; off < bytes; off += CHUNK) {
        int count = (int)(bytes - off < CHUNK ? bytes - off : CHUNK);
        int rc = MPI_Bcast(p + off, count, MPI_BYTE, 0, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_failed(rc, "broadcast");
    }
    return LC_STATUS_OK;
}

lc_status lc_dist_allgather(const void *mine, void *all, size_t bytes) {
    if (g_size == 1) {
        memcpy(all, mine, bytes);
        return LC_STATUS_OK;
    }
    if (bytes > INT_MAX) return lc_error(LC_STATUS_RUNTIME, "MPI allgather of %zu bytes", bytes);
    int rc = MPI_Allgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? LC_STATUS_OK : mpi_failed(rc, "allgather");
}

lc_status lc_dist_agree(lc_status st) {
    if (g_size == 1) return st;
    int mine[2] = {st ? g_rank : g_size, (int)st}, first = g_size;
    int rc = MPI_Allreduce(&mine[0], &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_failed(rc, "allreduce");
    if (first == g_size) return LC_STATUS_OK;
    int code = (int)st;
    if ((rc = MPI_Bcast(&code, 1, MPI_INT, first, MPI_COMM_WORLD)) != MPI_SUCCESS) return mpi_failed(rc, "broadcast");
    g_shared = 1;
    g_quiet = first != g_rank;
    if (first == g_rank) return st;
    return lc_error((lc_status)code, "rank %d failed", first);
}

#else // one process

lc_status lc_dist_init(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    (void)g_active;
    return LC_STATUS_OK;
}
void lc_dist_finalize(void) {}
void lc_dist_abort(int code) { exit(code); }
lc_status lc_dist_sum_f32(float *x, size_t n) {
    (void)x;
    (void)n;
    return LC_STATUS_OK;
}
lc_status lc_dist_sum_f64(double *x, size_t n) {
    (void)x;
    (void)n;
    return LC_STATUS_OK;
}
lc_status lc_dist_max_int(int *x) {
    (void)x;
    return LC_STATUS_OK;
}
lc_status lc_dist_bcast(void *buf, size_t bytes) {
    (void)buf;
    (void)bytes;
    return LC_STATUS_OK;
}
lc_status lc_dist_allgather(const void *mine, void *all, size_t bytes) {
    memcpy(all, mine, bytes);
    return LC_STATUS_OK;
}
lc_status lc_dist_agree(lc_status st) { return st; }

#endif
