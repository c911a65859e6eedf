/*
 * comm.c - the status-first collective protocol of libtl-mpi (comm.h).
 *
 * Every operation is: one MPI_Allreduce (SUM) of 16 doubles [failures,
 * sums, zeros] (always 16, whatever the operation); when failures is 0, an
 * MPI_Allreduce (SUM) of the sums if more than 15, and one of the float
 * values. When it
 * is not, every process learns who failed and why with one more
 * MPI_Allreduce (MAX over "rank and status" words: the lowest failing rank
 * wins) and an MPI_Bcast of that rank's message, and stops. A process
 * that fails makes exactly one operation with its failure, which the
 * others are in or will reach (each starts with the same status
 * allreduce), so the sequences stay matched and nobody hangs.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"

/* The length of libtl's messages (tl_set_last_error cuts there). */
#define MSG_CAP 1024

tl_status tlm_mpi_error(const tlm_comm *c, const char *call, int err)
{
    char text[MPI_MAX_ERROR_STRING + 1];
    int len = 0;
    if (MPI_Error_string(err, text, &len) != MPI_SUCCESS)
        len = snprintf(text, sizeof text, "MPI error %d", err);
    text[len < 0 ? 0 : len > MPI_MAX_ERROR_STRING ? MPI_MAX_ERROR_STRING : len] = '\0';
    char msg[MSG_CAP];
    if (c->rank < 0) /* before the communicator could tell */
        snprintf(msg, sizeof msg, "%s: %s failed: %s", c->fn, call, text);
    else
        snprintf(msg, sizeof msg, "%s: rank %d: %s failed: %s", c->fn, c->rank, call, text);
    return tl_set_last_error(TL_EPEER, msg);
}

tl_status tlm_comm_open(tlm_comm *c, MPI_Comm comm, const char *fn)
{
    memset(c, 0, sizeof *c);
    c->comm = MPI_COMM_NULL;
    c->fn = fn;
    c->rank = -1; /* unknown until MPI_Comm_rank */
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (!init || fin) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s: MPI is %s (call MPI_Init first)", fn, fin ? "finalized" : "not initialized");
        return tl_set_last_error(TL_ESTATE, msg);
    }
    int err = MPI_Comm_dup(comm, &c->comm);
    if (err != MPI_SUCCESS) {
        c->comm = MPI_COMM_NULL;
        return tlm_mpi_error(c, "MPI_Comm_dup", err);
    }
    if ((err = MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN)) != MPI_SUCCESS ||
        (err = MPI_Comm_rank(c->comm, &c->rank)) != MPI_SUCCESS ||
        (err = MPI_Comm_size(c->comm, &c->size)) != MPI_SUCCESS) {
        tl_status st = tlm_mpi_error(c, "setting up the communicator", err);
        tlm_comm_close(c);
        return st;
    }
    return TL_OK;
}

void tlm_comm_close(tlm_comm *c)
{
    if (c->comm != MPI_COMM_NULL)
        MPI_Comm_free(&c->comm);
    c->comm = MPI_COMM_NULL;
}

/* Everyone knows some process failed: find the lowest failing rank, its
 * status and its message. */
static tl_status failed(tlm_comm *c, tl_status local, double failures)
{
    c->over = true;
    char mine[MSG_CAP];
    snprintf(mine, sizeof mine, "%s", tl_last_error());
    /* (size - rank) << 8 | -status: the largest word is the lowest rank. */
    int word = local ? ((c->size - c->rank) << 8) | ((-(int)local) & 0xff) : 0;
    int err = MPI_Allreduce(MPI_IN_PLACE, &word, 1, MPI_INT, MPI_MAX, c->comm);
    if (err != MPI_SUCCESS)
        return local ? tl_set_last_error(local, mine) : tlm_mpi_error(c, "MPI_Allreduce (status)", err);
    const int root = c->size - (word >> 8);
    const tl_status why = (tl_status)(-(word & 0xff));
    char text[MSG_CAP];
    if (c->rank == root)
        memcpy(text, mine, sizeof text);
    err = MPI_Bcast(text, (int)sizeof text, MPI_CHAR, root, c->comm);
    if (local)
        return tl_set_last_error(local, mine);
    if (err != MPI_SUCCESS)
        return tlm_mpi_error(c, "MPI_Bcast (message)", err);
    text[sizeof text - 1] = '\0';
    char msg[MSG_CAP];
    const int others = (int)failures - 1;
    char more[64] = "";
    if (others > 0)
        snprintf(more, sizeof more, " (and %d other rank%s)", others, others == 1 ? "" : "s");
    snprintf(msg, sizeof msg, "%s: rank %d of %d failed%s with %s: %s", c->fn, root, c->size, more,
             tl_status_str(why), text);
    return tl_set_last_error(TL_EPEER, msg);
}

tl_status tlm_step(tlm_comm *c, tl_status local, double *sums, size_t nsums, float *values, size_t count)
{
    if (c->over)
        return local ? local : TL_EPEER; /* the message of the failure is still set */
    /* The status allreduce has one length for every operation: a failing
     * process does not know which operation the others are in (it may be
     * at fit's end while they are at the next step). Few sums ride in it;
     * many (a confusion matrix) get their own allreduce after it. */
    const size_t slots = sizeof c->hdr / sizeof c->hdr[0];
    const size_t inhdr = nsums < slots ? nsums : 0;
    memset(c->hdr, 0, sizeof c->hdr);
    c->hdr[0] = local ? 1.0 : 0.0;
    for (size_t i = 0; i < inhdr && !local; i++)
        c->hdr[1 + i] = sums[i];
    int err = MPI_Allreduce(MPI_IN_PLACE, c->hdr, (int)slots, MPI_DOUBLE, MPI_SUM, c->comm);
    if (err != MPI_SUCCESS) {
        c->over = true;
        return local ? local : tlm_mpi_error(c, "MPI_Allreduce (status)", err);
    }
    if (c->hdr[0] != 0.0)
        return failed(c, local, c->hdr[0]);
    for (size_t i = 0; i < inhdr; i++)
        sums[i] = c->hdr[1 + i];
    if (inhdr < nsums && (err = MPI_Allreduce(MPI_IN_PLACE, sums, (int)nsums, MPI_DOUBLE, MPI_SUM, c->comm)) != 0) {
        c->over = true;
        return tlm_mpi_error(c, "MPI_Allreduce (sums)", err);
    }
    /* Large buffers go in pieces of at most INT32_MAX floats. */
    for (size_t at = 0; at < count;) {
        size_t n = count - at < (size_t)INT32_MAX ? count - at : (size_t)INT32_MAX;
        if ((err = MPI_Allreduce(MPI_IN_PLACE, values + at, (int)n, MPI_FLOAT, MPI_SUM, c->comm)) != MPI_SUCCESS) {
            c->over = true;
            return tlm_mpi_error(c, "MPI_Allreduce (gradients)", err);
        }
        at += n;
    }
    return TL_OK;
}

tl_status tlm_exchange(tl_exchange *x, void *payload)
{
    tlm_comm *c = payload;
    tl_status st;
    switch (x->kind) {
    case TL_EXCHANGE_GRADIENTS:
        return tlm_step(c, x->status, x->sums, x->nsums, x->values, x->count);
    case TL_EXCHANGE_UPDATED:
        /* Nothing to exchange unless it is time to compare the parameters
         * (the same step count on every process). */
        return c->check_every && ++c->steps % c->check_every == 0 ? tlm_check_hash(c) : TL_OK;
    case TL_EXCHANGE_SUMS:
        return tlm_step(c, x->status, x->sums, x->nsums, NULL, 0);
    case TL_EXCHANGE_END:
        st = tlm_step(c, x->status, NULL, 0, NULL, 0);
        if (st == TL_OK && c->check_every)
            st = tlm_check_hash(c);
        return st;
    }
    return tlm_step(c, x->status ? x->status : tl_set_last_error(TL_EINVAL, "libtl-mpi: unknown exchange kind"),
                    NULL, 0, NULL, 0);
}
