/*
 * train_exchange.c - the library's side of data-parallel training (see
 * train_exchange.h and tl_exchange in tl/train.h). The hook only ever sums:
 * libtl scales each process's gradient by its share of the batch before the
 * sum and divides by the summed share after it, so that a process with
 * fewer examples (the last batch of an epoch) weighs less, exactly as in
 * one process's mean over the global batch. The state that training moves
 * (batchnorm's moving statistics, from each process's own batch) is
 * averaged the same way in the same buffer, so the models stay equal.
 */
#include <stdio.h>
#include <string.h>

#include "train_exchange.h"

/* Sums of a GRADIENTS call: weight, loss sum, correct, examples, skip. */
#define GRAD_SUMS 5

/* The layer's state tensors move in training (batchnorm's statistics). */
static bool moves_state(const tl_layer *l)
{
    return l->ops->trains_state && l->trainable;
}

tl_status tli_xchg_begin(tli_xchg *x, const tl_model *m, tl_exchange_fn fn, void *payload, uint32_t rank,
                         uint32_t count, bool grads, const char *where)
{
    memset(x, 0, sizeof *x);
    x->fn = fn;
    x->payload = payload;
    x->count = count ? count : 1;
    x->rank = rank;
    if (rank >= x->count)
        return tli_error(TL_EINVAL, "%s: shard_rank %u is not below shard_count %u", where, rank, x->count);
    if (fn == NULL || !grads)
        return TL_OK;
    size_t total = 0;
    for (size_t i = 0; i < m->nlayers; i++) {
        if (tli_layer_learns(m->layers[i]))
            total += tli_layer_count(m->layers[i], TLI_ROLE_PARAM);
        if (moves_state(m->layers[i]))
            total += tli_layer_count(m->layers[i], TLI_ROLE_STATE);
    }
    x->nvalues = total;
    if (total && (x->buf = tli_malloc_aligned(total * sizeof(float))) == NULL)
        return tli_error(TL_ENOMEM, "%s: out of memory for the %zu gradients and state values to exchange", where,
                         total);
    return TL_OK;
}

void tli_xchg_free(tli_xchg *x)
{
    tli_free_aligned(x->buf);
    x->buf = NULL;
}

void tli_xchg_part(const tli_xchg *x, size_t n, size_t *lo, size_t *cnt)
{
    /* n * rank fits: n is a dataset's count (< 2^32 examples) times < 2^32. */
    const uint64_t a = (uint64_t)n * x->rank / x->count, b = (uint64_t)n * (x->rank + 1) / x->count;
    *lo = (size_t)a;
    *cnt = (size_t)(b - a);
}

/* Call the hook once. A local failure is reported to the others and
 * returned as it is; the hook's own failure is returned with its message. */
static tl_status call(tli_xchg *x, tl_exchange *e)
{
    if (x->over)
        return e->status ? e->status : tli_xchg_failure(x);
    e->struct_size = sizeof *e;
    tl_status local = e->status;
    char saved[1024];
    if (local)
        snprintf(saved, sizeof saved, "%s", tl_last_error());
    tl_status st = x->fn(e, x->payload);
    if (local) {
        x->over = true;
        return tli_error(local, "%s", saved); /* the hook may have overwritten the message */
    }
    if (st) {
        x->over = true;
        x->failed = st;
        snprintf(x->message, sizeof x->message, "%s", tl_last_error());
    }
    return st;
}

tl_status tli_xchg_failure(const tli_xchg *x)
{
    return x->failed ? tli_error(x->failed, "%s", x->message) : TL_OK;
}

/* Batchnorm's sums go through the hook; a failure stays in x (fit looks
 * after the pass: tli_xchg_failure), and the pass goes on with whatever v
 * holds, to be thrown away. */
static void bn_sum(void *ctx, double *v, size_t n)
{
    tli_xchg_sums(ctx, TL_OK, v, n);
}

const tli_bn_sync *tli_xchg_bn_sync(tli_xchg *x, double share)
{
    x->bn_sync.sum = bn_sum;
    x->bn_sync.ctx = x;
    x->bn_sync.share = share;
    return &x->bn_sync;
}

/* Visit every gradient of the layers that learn, in layer and tensor order. */
#define FOR_EACH_GRAD(m, p)                                                                            \
    for (size_t li_ = 0; li_ < (m)->nlayers; li_++)                                                    \
        if (tli_layer_learns((m)->layers[li_]))                                                        \
            for (size_t pi_ = 0; pi_ < (m)->layers[li_]->nparams; pi_++)                               \
                for (tli_param *p = &(m)->layers[li_]->params[pi_]; p && p->role == TLI_ROLE_PARAM; p = NULL)

/* Then every state tensor that training moves, of every layer. */
#define FOR_EACH_STATE(m, p)                                                                           \
    for (size_t li_ = 0; li_ < (m)->nlayers; li_++)                                                    \
        if (moves_state((m)->layers[li_]))                                                             \
            for (size_t pi_ = 0; pi_ < (m)->layers[li_]->nparams; pi_++)                               \
                for (tli_param *p = &(m)->layers[li_]->params[pi_]; p && p->role == TLI_ROLE_STATE; p = NULL)

tl_status tli_xchg_gradients(tli_xchg *x, tl_model *m, tl_status local, bool *skip, tli_loss_result *r,
                             size_t *examples, size_t batch)
{
    if (x->fn == NULL)
        return local;
    const double w = *examples ? r->weight_sum : 0.0;
    double sums[GRAD_SUMS] = {w, *examples ? r->loss_sum : 0.0, *examples ? (double)r->correct : 0.0,
                              (double)*examples, *skip ? 1.0 : 0.0};
    if (local == TL_OK) {
        size_t at = 0;
        const float fw = (float)w;
        FOR_EACH_GRAD(m, p) {
            float *dst = x->buf + at;
            if (*examples == 0 || *skip)
                memset(dst, 0, p->count * sizeof(float)); /* no gradient, or a non-finite one */
            else
                for (size_t i = 0; i < p->count; i++)
                    dst[i] = p->grad[i] * fw;
            at += p->count;
        }
        FOR_EACH_STATE(m, p) {
            float *dst = x->buf + at;
            for (size_t i = 0; i < p->count; i++)
                dst[i] = p->value[i] * fw;
            at += p->count;
        }
    }
    tl_exchange e;
    memset(&e, 0, sizeof e);
    e.kind = TL_EXCHANGE_GRADIENTS;
    e.status = local;
    e.values = x->buf;
    e.count = x->nvalues;
    e.sums = sums;
    e.nsums = GRAD_SUMS;
    e.epoch = x->epoch;
    e.batch = batch;
    tl_status st = call(x, &e);
    if (st)
        return st;
    *skip = sums[4] != 0.0;
    r->weight_sum = sums[0];
    r->loss_sum = sums[1];
    r->correct = (size_t)sums[2];
    *examples = (size_t)sums[3];
    if (sums[0] <= 0.0)
        return TL_OK;
    const float inv = (float)(1.0 / sums[0]);
    size_t at = 0;
    FOR_EACH_GRAD(m, p) {
        const float *src = x->buf + at;
        if (!*skip)
            for (size_t i = 0; i < p->count; i++)
                p->grad[i] = src[i] * inv;
        at += p->count;
    }
    /* The state is averaged even on a skipped batch: every process moved
     * its own, and they must stay equal. */
    FOR_EACH_STATE(m, p) {
        const float *src = x->buf + at;
        for (size_t i = 0; i < p->count; i++)
            p->value[i] = src[i] * inv;
        at += p->count;
    }
    tli_model_touch(m);
    return TL_OK;
}

tl_status tli_xchg_sums(tli_xchg *x, tl_status local, double *sums, size_t nsums)
{
    if (x == NULL || x->fn == NULL)
        return local;
    tl_exchange e;
    memset(&e, 0, sizeof e);
    e.kind = TL_EXCHANGE_SUMS;
    e.status = local;
    e.sums = sums;
    e.nsums = nsums;
    e.epoch = x->epoch;
    return call(x, &e);
}

tl_status tli_xchg_updated(tli_xchg *x, size_t batch)
{
    if (x->fn == NULL)
        return TL_OK;
    tl_exchange e;
    memset(&e, 0, sizeof e);
    e.kind = TL_EXCHANGE_UPDATED;
    e.epoch = x->epoch;
    e.batch = batch;
    return call(x, &e);
}

tl_status tli_xchg_end(tli_xchg *x, tl_status st)
{
    if (x->fn == NULL || x->over)
        return st;
    tl_exchange e;
    memset(&e, 0, sizeof e);
    e.kind = TL_EXCHANGE_END;
    e.status = st;
    e.epoch = x->epoch;
    tl_status end = call(x, &e);
    return st ? st : end;
}
