/*
 * tl/mpi.h - data-parallel training over MPI (libtl-mpi).
 *
 * libtl-mpi is a library of its own: link it with `pkg-config --cflags
 * --libs tl-mpi` (libtl.so itself never depends on MPI). It is built when
 * meson finds MPI (-Dmpi=auto|enabled|disabled); tl/tl.h does not include
 * this header. docs/mpi.md shows how to run it on one machine and on
 * several, and what it costs.
 *
 * Every process of the communicator runs the same program on the same data
 * (the whole training set, loaded by each process) with the same options:
 *  - at the start, rank 0's parameters and layer state (batchnorm's moving
 *    statistics) are broadcast to the others;
 *  - every global batch of tl_fit_options.batch_size examples comes from
 *    the same seeded shuffle on every process, and rank r of N takes its
 *    part of it (tl_fit_options.shard_rank, shard_count);
 *  - after backward, the gradients - one contiguous buffer of 4 bytes per
 *    trainable parameter - are summed with one
 *    MPI_Allreduce and divided by the global batch weight, so every
 *    process's optimizer makes the same step and the models stay equal;
 *  - batch normalization normalizes with each process's own batch
 *    statistics (as PyTorch's DistributedDataParallel without
 *    SyncBatchNorm), and the moving statistics are averaged over the
 *    processes after every step (in the same allreduce as the gradients),
 *    so they stay equal too;
 *  - validation, the progress figures, the history and early stopping see
 *    the counts of the whole global batch and validation set;
 *  - the progress callbacks (on_batch, on_epoch) run on rank 0 only, and so
 *    do checkpoints (tl_fit_options.checkpoint_path): to resume, every
 *    process loads rank 0's checkpoint and fits with seed 0 and the same
 *    number of processes;
 *  - on_batch_begin runs on every process, on its own part of the batch.
 * N processes at batch b equal one process at batch N b up to the order of
 * floating-point sums; a run with the same N is repeatable bit for bit.
 *
 * Requirements: MPI is initialized (MPI_Init); every process's model has
 * the same structure, optimizer and optimizer state (fresh, or loaded from
 * the same checkpoint) and training random stream (the same model seed, or
 * a non-zero tl_fit_options.seed).
 *
 * Faults: a failure on one process (bad input, ENOMEM, a non-finite
 * gradient, a callback stop, a checkpoint that cannot be written) makes
 * every process return an error within one step: the failing process its
 * own status, the others TL_EPEER with a message naming the rank, its
 * status and its message. No process waits forever on one that failed.
 * MPI errors (the library sets MPI_ERRORS_RETURN on its own duplicate of
 * the communicator) become TL_EPEER with MPI's error string.
 *
 * Thread safety: collective - every process of the communicator makes the
 * same calls in the same order; within a process as tl/train.h (one model
 * per thread) and MPI's thread level.
 */
#ifndef TL_MPI_H
#define TL_MPI_H

#include <mpi.h>

#include "common.h"
#include "data.h"
#include "model.h"
#include "train.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(TL_BUILDING_MPI_LIBRARY) && (defined(__GNUC__) || defined(__clang__))
#define TL_MPI_API __attribute__((visibility("default")))
#else
#define TL_MPI_API
#endif

/** Options of the MPI calls. Fill with TL_MPI_OPTIONS_INIT or tl_mpi_options_init(). */
typedef struct tl_mpi_options {
    unsigned int version;  /**< TL_MPI_OPTIONS_VERSION */
    int broadcast;         /**< non-zero (default): start by broadcasting rank 0's parameters and layer
                                state; 0: trust that every process holds the same */
    uint32_t check_every;  /**< non-zero: every check_every steps and at the end, compare a 64-bit hash of
                                every tensor across the processes; a difference ends the fit with
                                TL_ESTATE on every process. Default 0 (never) */
} tl_mpi_options;
#define TL_MPI_OPTIONS_VERSION 1
#define TL_MPI_OPTIONS_INIT { TL_MPI_OPTIONS_VERSION, 1, 0 }
/** Fill `opts` with the defaults of `version`. Errors: TL_EINVAL, TL_EVERSION. */
TL_MPI_API tl_status tl_mpi_options_init(tl_mpi_options *opts, unsigned int version);

/**
 * tl_model_fit() over the processes of `comm` (see the top of this
 * header). `opts` as tl_model_fit()'s (NULL: the defaults); its exchange,
 * exchange_payload, shard_rank and shard_count must be left at their
 * defaults (libtl-mpi sets them). `mpi_opts` NULL means the defaults.
 * Collective over `comm`. Errors: those of tl_model_fit(); TL_EINVAL
 * (opts sets the exchange or the shard; processes whose models have
 * different parameter counts), TL_ESTATE (MPI not initialized; the
 * parameter hashes differ, check_every), TL_EVERSION, TL_EPEER (another
 * process failed: the message names its rank and says why; an MPI call
 * failed: MPI's error string).
 */
TL_MPI_API tl_status tl_model_fit_mpi(tl_model *model, const tl_dataset *train, const tl_fit_options *opts,
                                      MPI_Comm comm, const tl_mpi_options *mpi_opts);

/**
 * tl_model_evaluate() over the processes of `comm`: each evaluates its
 * part of `data` (every process passes the whole data set) and the loss
 * and accuracy are those of the whole set, on every process. Either out
 * pointer may be NULL. Collective. Errors: those of tl_model_evaluate();
 * TL_EPEER as tl_model_fit_mpi().
 */
TL_MPI_API tl_status tl_model_evaluate_mpi(double *out_loss, double *out_accuracy, tl_model *model,
                                           const tl_dataset *data, uint32_t batch_size, MPI_Comm comm);

/**
 * tl_model_evaluate_metrics() over the processes of `comm`, as
 * tl_model_evaluate_mpi(): every process gets the metrics of the whole
 * set. `opts` must leave its exchange and shard fields at their defaults.
 * Ownership: *out is the caller's (tl_metrics_free()); NULL on error.
 * Collective. Errors: those of tl_model_evaluate_metrics(); TL_EPEER.
 */
TL_MPI_API tl_status tl_model_evaluate_metrics_mpi(tl_metrics **out, tl_model *model, const tl_dataset *data,
                                                   const tl_evaluate_options *opts, MPI_Comm comm);

#ifdef __cplusplus
}
#endif

#endif /* TL_MPI_H */
