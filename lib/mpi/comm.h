/*
 * comm.h - libtl-mpi's side of the exchange (tl_exchange in tl/train.h):
 * a duplicate of the caller's communicator that returns MPI errors, and a
 * protocol in which every collective operation starts with one allreduce
 * that carries each process's status, so that a process that fails is
 * heard by every other at its next operation and none waits forever.
 */
#ifndef TLM_COMM_H
#define TLM_COMM_H

#include <stdbool.h>

#include "tl/mpi.h"

typedef struct tlm_comm {
    MPI_Comm comm; /* our duplicate, MPI_ERRORS_RETURN */
    int rank, size;
    bool over;     /* a failure was exchanged: no more collectives */
    double hdr[16]; /* [failures, sums...] when there are at most 15 sums, else [failures, 0...] */
    const char *fn; /* the public function, for messages */
    /* fit: parameter hash check */
    tl_model *model;
    uint32_t check_every;
    uint64_t steps;
} tlm_comm;

/* Duplicate `comm` (collective). Errors: TL_ESTATE (MPI not initialized),
 * TL_EPEER (an MPI call failed). */
tl_status tlm_comm_open(tlm_comm *c, MPI_Comm comm, const char *fn);
void tlm_comm_close(tlm_comm *c);

/* One collective step: sum `sums` (nsums doubles) and `values` (count
 * floats) over the processes, unless some process's `local` is a failure:
 * then every process returns an error - its own `local`, or TL_EPEER
 * naming the lowest failing rank, its status and its message - and no
 * further collective is made. */
tl_status tlm_step(tlm_comm *c, tl_status local, double *sums, size_t nsums, float *values, size_t count);

/* An MPI return code as TL_EPEER with MPI's error string. */
tl_status tlm_mpi_error(const tlm_comm *c, const char *call, int err);

/* The exchange hook (tl_exchange_fn); payload is a tlm_comm. */
tl_status tlm_exchange(tl_exchange *x, void *payload);

/* Every tensor of the model (layer after layer, tensor after tensor):
 * *count floats; copy them out or in. */
size_t tlm_tensor_count(const tl_model *m);
tl_status tlm_tensors_get(const tl_model *m, float *out);
tl_status tlm_tensors_set(tl_model *m, const float *in);

/* Collective: compare a hash of every tensor across the processes. */
tl_status tlm_check_hash(tlm_comm *c);

#endif /* TLM_COMM_H */
