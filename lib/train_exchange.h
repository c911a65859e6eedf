/*
 * train_exchange.h - data-parallel training through the exchange hook of
 * tl_fit_options and tl_evaluate_options (tl_exchange in tl/train.h): a
 * process's part of each batch, the gradients packed into one buffer and
 * summed over the processes, the counts of validation and evaluation.
 * Used by train.c and metrics.c; the transport (libtl-mpi) is the hook.
 */
#ifndef TLI_TRAIN_EXCHANGE_H
#define TLI_TRAIN_EXCHANGE_H

#include "train.h"

typedef struct tli_xchg {
    tl_exchange_fn fn; /* NULL: one process, nothing exchanged */
    void *payload;
    uint32_t rank, count; /* count >= 1 */
    float *buf;           /* fit: every trainable gradient, packed */
    size_t nvalues;
    bool over;            /* a failure was exchanged or the hook failed: no further calls */
    uint32_t epoch;       /* fit's current epoch, for the hook */
    tl_status failed;     /* the hook's failure once over (TL_OK: a local one) */
    char message[512];    /* its message */
    tli_bn_sync bn_sync;  /* synchronized batchnorm: sums through the hook */
} tli_xchg;

/* Set up from the options' fields (fn NULL: off). `grads`: allocate the
 * gradient buffer for the model's layers that learn. TL_EINVAL when rank
 * >= count (count 0 means 1), TL_ENOMEM; nothing is called here. */
tl_status tli_xchg_begin(tli_xchg *x, const tl_model *m, tl_exchange_fn fn, void *payload, uint32_t rank,
                         uint32_t count, bool grads, const char *where);

void tli_xchg_free(tli_xchg *x);

/* This process's part [*lo, *lo + *cnt) of n items. */
void tli_xchg_part(const tli_xchg *x, size_t n, size_t *lo, size_t *cnt);

/* After a step's backward (or its failure `local`): when the hook is set,
 * pack the gradients times the batch weight r->weight_sum, sum them and
 * the counts over the processes, and unpack the global gradient; r and
 * *examples become the global figures and *skip true when any process
 * skips. A process without examples this batch passes n 0 (its
 * gradients count as zeros). Returns `local` when it is an error, else
 * the hook's status (its message kept). */
tl_status tli_xchg_gradients(tli_xchg *x, tl_model *m, tl_status local, bool *skip, tli_loss_result *r,
                             size_t *examples, size_t batch);

/* After the hook failed: its status with its message set again (it may
 * have been overwritten since); TL_OK when it has not failed. */
tl_status tli_xchg_failure(const tli_xchg *x);

/* The sync that batchnorm calls in a synchronized step whose process part
 * is `share` of the global batch. */
const tli_bn_sync *tli_xchg_bn_sync(tli_xchg *x, double share);

/* After a step's update (TL_EXCHANGE_UPDATED). */
tl_status tli_xchg_updated(tli_xchg *x, size_t batch);

/* Sum `nsums` counts over the processes (TL_EXCHANGE_SUMS); `local` as
 * above. Without a hook: returns `local`. */
tl_status tli_xchg_sums(tli_xchg *x, tl_status local, double *sums, size_t nsums);

/* The last call of a fit (TL_EXCHANGE_END) with what it returns, unless a
 * failure was already exchanged. Returns st, or the hook's failure when st
 * is TL_OK. */
tl_status tli_xchg_end(tli_xchg *x, tl_status st);

/* ---- the metrics' counts as sums (metrics.c) ---------------------------- */

/* Counts of a tl_metrics beyond evaluate's four (examples, top-k hits,
 * per-class counts and hits, the confusion matrix). */
size_t tli_metrics_nsums(const tl_metrics *mt);
void tli_metrics_to_sums(const tl_metrics *mt, double *out);
void tli_metrics_from_sums(tl_metrics *mt, const double *in);

/* tli_model_evaluate() with its data split over processes by `x` (NULL:
 * not split). */
tl_status tli_model_evaluate_x(double *out_loss, double *out_accuracy, tl_model *m, const tl_dataset *data,
                               uint32_t batch_size, tl_metrics *metrics, tli_xchg *x, const char *fn);

#endif /* TLI_TRAIN_EXCHANGE_H */
