/*
 * fit_mpi.c - tl_model_fit_mpi() and the evaluations over MPI (tl/mpi.h):
 * the options handed to libtl's fit and evaluate with libtl-mpi's exchange
 * hook, the start of a fit (models compared, rank 0's tensors broadcast).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"

tl_status tl_mpi_options_init(tl_mpi_options *opts, unsigned int version)
{
    if (opts == NULL)
        return tl_set_last_error(TL_EINVAL, "tl_mpi_options_init: opts is NULL");
    if (version != TL_MPI_OPTIONS_VERSION) {
        char msg[160];
        snprintf(msg, sizeof msg, "tl_mpi_options_init: tl_mpi_options version %u is not supported (this libtl-mpi "
                 "knows 1..%d)", version, TL_MPI_OPTIONS_VERSION);
        return tl_set_last_error(TL_EVERSION, msg);
    }
    const tl_mpi_options d = TL_MPI_OPTIONS_INIT;
    *opts = d;
    return TL_OK;
}

/* Copy the caller's options struct of any known version over the defaults
 * in dst: only the bytes its version has (see libtl's lib/options.h). */
static tl_status read_versioned(void *dst, const void *src, const size_t *sizes, unsigned int current,
                                const char *type, const char *fn)
{
    if (src == NULL)
        return TL_OK;
    unsigned int v = *(const unsigned int *)src;
    if (v == 0 || v > current) {
        char msg[200];
        snprintf(msg, sizeof msg, "%s: %s version %u is not supported (this libtl-mpi knows 1..%u; fill it with "
                 "its _INIT macro or _init function)", fn, type, v, current);
        return tl_set_last_error(TL_EVERSION, msg);
    }
    memcpy(dst, src, sizes[v]);
    *(unsigned int *)dst = current;
    return TL_OK;
}

static const size_t fit_sizes[] = {0, offsetof(tl_fit_options, augment), offsetof(tl_fit_options, exchange),
                                   sizeof(tl_fit_options)};
_Static_assert(TL_FIT_OPTIONS_VERSION == 3, "list the sizes of every tl_fit_options version");
static const size_t eval_sizes[] = {0, offsetof(tl_evaluate_options, exchange), sizeof(tl_evaluate_options)};
_Static_assert(TL_EVALUATE_OPTIONS_VERSION == 2, "list the sizes of every tl_evaluate_options version");
static const size_t mpi_sizes[] = {0, sizeof(tl_mpi_options)};

static tl_status error(tl_status st, const char *fn, const char *what)
{
    char msg[400];
    snprintf(msg, sizeof msg, "%s: %s", fn, what);
    return tl_set_last_error(st, msg);
}

/* Every process's model has the same number of tensor values. Collective. */
static tl_status same_models(tlm_comm *c, tl_status local, const tl_model *m, size_t *count)
{
    *count = local == TL_OK ? tlm_tensor_count(m) : 0;
    const double n = (double)*count;
    double s[2] = {n, n * n};
    tl_status st = tlm_step(c, local, s, 2, NULL, 0);
    if (st)
        return st;
    /* Sum n = N n and sum n^2 = N n^2 only when every n is equal. */
    if (s[0] != c->size * n || s[1] != c->size * n * n) {
        c->over = true;
        char msg[300];
        snprintf(msg, sizeof msg, "the processes' models differ: rank %d's has %zu tensor values, the mean over the "
                 "%d ranks is %.1f", c->rank, *count, c->size, s[0] / c->size);
        return error(TL_EINVAL, c->fn, msg);
    }
    return TL_OK;
}

/* Rank 0's tensors to every process. Collective. */
static tl_status broadcast(tlm_comm *c, tl_model *m, size_t count)
{
    float *buf = malloc(count ? count * sizeof *buf : 1);
    tl_status st = buf ? TL_OK : error(TL_ENOMEM, c->fn, "out of memory for the parameters to broadcast");
    if (st == TL_OK && c->rank == 0)
        st = tlm_tensors_get(m, buf);
    if ((st = tlm_step(c, st, NULL, 0, NULL, 0))) {
        free(buf);
        return st;
    }
    for (size_t at = 0; at < count;) {
        size_t n = count - at < (size_t)INT32_MAX ? count - at : (size_t)INT32_MAX;
        int err = MPI_Bcast(buf + at, (int)n, MPI_FLOAT, 0, c->comm);
        if (err != MPI_SUCCESS) {
            free(buf);
            c->over = true;
            return tlm_mpi_error(c, "MPI_Bcast (parameters)", err);
        }
        at += n;
    }
    if (c->rank != 0)
        st = tlm_tensors_set(m, buf);
    free(buf);
    /* Whether every process took them, before fit's own sequence starts. */
    return tlm_step(c, st, NULL, 0, NULL, 0);
}

tl_status tl_model_fit_mpi(tl_model *model, const tl_dataset *train, const tl_fit_options *opts, MPI_Comm comm,
                           const tl_mpi_options *mpi_opts)
{
    const char *fn = "tl_model_fit_mpi";
    tlm_comm c;
    tl_status st = tlm_comm_open(&c, comm, fn);
    if (st)
        return st;
    tl_fit_options fo = TL_FIT_OPTIONS_INIT;
    tl_mpi_options mo = TL_MPI_OPTIONS_INIT;
    tl_status local = read_versioned(&fo, opts, fit_sizes, TL_FIT_OPTIONS_VERSION, "tl_fit_options", fn);
    if (local == TL_OK)
        local = read_versioned(&mo, mpi_opts, mpi_sizes, TL_MPI_OPTIONS_VERSION, "tl_mpi_options", fn);
    if (local == TL_OK && (model == NULL || train == NULL))
        local = error(TL_EINVAL, fn, model ? "training data is NULL" : "model is NULL");
    if (local == TL_OK && (fo.exchange || fo.exchange_payload || fo.shard_rank || fo.shard_count > 1))
        local = error(TL_EINVAL, fn, "opts sets exchange, exchange_payload, shard_rank or shard_count: libtl-mpi "
                      "sets them itself");
    size_t count = 0;
    st = same_models(&c, local, model, &count);
    if (st == TL_OK && mo.broadcast)
        st = broadcast(&c, model, count);
    if (st == TL_OK) {
        c.model = model;
        c.check_every = mo.check_every;
        fo.exchange = tlm_exchange;
        fo.exchange_payload = &c;
        fo.shard_rank = (uint32_t)c.rank;
        fo.shard_count = (uint32_t)c.size;
        if (c.rank != 0) {
            /* Progress and checkpoints on rank 0 only. */
            fo.on_batch = NULL;
            fo.on_epoch = NULL;
            fo.checkpoint_path = NULL;
            fo.checkpoint_every = 0;
            fo.checkpoint_on_improvement = 0;
        }
        st = tl_model_fit(model, train, &fo);
    }
    tlm_comm_close(&c);
    return st;
}

tl_status tl_model_evaluate_metrics_mpi(tl_metrics **out, tl_model *model, const tl_dataset *data,
                                        const tl_evaluate_options *opts, MPI_Comm comm)
{
    const char *fn = "tl_model_evaluate_metrics_mpi";
    if (out)
        *out = NULL;
    tlm_comm c;
    tl_status st = tlm_comm_open(&c, comm, fn);
    if (st)
        return st;
    tl_evaluate_options eo = TL_EVALUATE_OPTIONS_INIT;
    tl_status local = read_versioned(&eo, opts, eval_sizes, TL_EVALUATE_OPTIONS_VERSION, "tl_evaluate_options", fn);
    if (local == TL_OK && (out == NULL || model == NULL || data == NULL))
        local = error(TL_EINVAL, fn, out == NULL ? "out is NULL" : model == NULL ? "model is NULL" : "data is NULL");
    if (local == TL_OK && (eo.exchange || eo.exchange_payload || eo.shard_rank || eo.shard_count > 1))
        local = error(TL_EINVAL, fn, "opts sets exchange, exchange_payload, shard_rank or shard_count: libtl-mpi "
                      "sets them itself");
    /* The arguments' checks are heard by all before the evaluation's own call. */
    if ((st = tlm_step(&c, local, NULL, 0, NULL, 0)) == TL_OK) {
        eo.exchange = tlm_exchange;
        eo.exchange_payload = &c;
        eo.shard_rank = (uint32_t)c.rank;
        eo.shard_count = (uint32_t)c.size;
        st = tl_model_evaluate_metrics(out, model, data, &eo);
    }
    tlm_comm_close(&c);
    return st;
}

tl_status tl_model_evaluate_mpi(double *out_loss, double *out_accuracy, tl_model *model, const tl_dataset *data,
                                uint32_t batch_size, MPI_Comm comm)
{
    tl_evaluate_options eo = TL_EVALUATE_OPTIONS_INIT;
    eo.batch_size = batch_size;
    eo.confusion_matrix = 0;
    eo.top_k = 1;
    tl_metrics *mt = NULL;
    tl_status st = tl_model_evaluate_metrics_mpi(&mt, model, data, &eo, comm);
    if (st) {
        /* Name this function, not the one it went through. */
        const char *m = tl_last_error();
        const char *prefix = "tl_model_evaluate_metrics_mpi";
        if (strncmp(m, prefix, strlen(prefix)) == 0) {
            char msg[1100];
            snprintf(msg, sizeof msg, "tl_model_evaluate_mpi%s", m + strlen(prefix));
            tl_set_last_error(st, msg);
        }
        return st;
    }
    if (out_loss)
        *out_loss = tl_metrics_loss(mt);
    if (out_accuracy)
        *out_accuracy = tl_metrics_accuracy(mt);
    tl_metrics_free(mt);
    return TL_OK;
}
