/*
 * train.c - fit, evaluate and single steps: gathering batches, the loss,
 * non-finite checks, progress callbacks.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "augment.h"
#include "data/dataset.h"
#include "history.h"
#include "options.h"
#include "train_exchange.h"

TLI_OPTIONS_TYPE_V3(fit_type, tl_fit_options, TL_FIT_OPTIONS, augment, exchange);

tl_status tl_fit_options_init(tl_fit_options *opts, unsigned int version)
{
    const tl_fit_options d = TL_FIT_OPTIONS_INIT;
    return tli_options_init(opts, version, &d, &fit_type, "tl_fit_options_init");
}

/* Where a batch's targets come from: labels, or float rows of width k. */
typedef struct batch_src {
    const float *x;
    const int32_t *labels;
    const float *targets;
    /* Which examples these are, for messages: row r is example idx[r] of
     * `origin` (idx NULL: example base + r). */
    const uint32_t *idx;
    size_t base;
    const char *origin;
    tl_metrics *metrics; /* evaluation: also count this batch's metrics (metrics.c); else NULL */
    uint64_t key_mix;    /* non-zero: mixed into the dropout key (a shard's own masks) */
    bool no_update;      /* training: stop after the gradients (the exchange comes first) */
    const tli_bn_sync *bn_sync; /* synchronized batchnorm, or NULL */
    uint32_t top_k;      /* training: count the top-k hits into *top_k_hits (0: do not) */
    size_t *top_k_hits;
} batch_src;

/* The layer where a non-finite parameter gradient first appeared, or NULL;
 * *affected counts the layers with one. Backward runs from the last layer
 * down and an infinity or NaN spreads to every layer below it, so the
 * highest such layer is where it started: the one worth naming. */
static const tl_layer *nonfinite_grad(const tl_model *m, size_t *affected)
{
    const tl_layer *first = NULL;
    *affected = 0;
    for (size_t i = m->nlayers; i-- > 0;) {
        const tl_layer *l = m->layers[i];
        if (!tli_layer_learns(l))
            continue;
        for (size_t p = 0; p < l->nparams; p++)
            if (l->params[p].role == TLI_ROLE_PARAM && !tli_all_finite(l->params[p].grad, l->params[p].count)) {
                if (first == NULL)
                    first = l;
                ++*affected;
                break;
            }
    }
    return first;
}

/* After a non-finite loss or gradient: when the batch itself holds a NaN or
 * an infinity, that, not the layer it reached, is what the user must fix.
 * Writes ": example E of ORIGIN has ..." into buf, or "" when the batch is
 * finite. Only runs after a fault, so the normal path does not pay for
 * the scan. */
static const char *nonfinite_cause(char *buf, size_t cap, const tl_model *m, const batch_src *src, size_t n)
{
    buf[0] = '\0';
    const size_t width = tli_model_out_size(m);
    for (size_t r = 0; r < n; r++) {
        const float *x = src->x + r * m->in_size;
        const float *t = src->targets ? src->targets + r * width : NULL;
        bool in_bad = !tli_all_finite(x, m->in_size), t_bad = t && !tli_all_finite(t, width);
        if (!in_bad && !t_bad)
            continue;
        const float *v = in_bad ? x : t;
        size_t len = in_bad ? m->in_size : width, at = 0;
        while (at < len && isfinite(v[at]))
            at++;
        snprintf(buf, cap, ": example %zu of %s has a non-finite %s value (%g, value %zu of %zu)",
                 src->idx ? (size_t)src->idx[r] : src->base + r, src->origin, in_bad ? "input" : "target",
                 (double)v[at], at, len);
        break;
    }
    return buf;
}

/* Forward, loss, and - when training - backward and update, for n examples.
 * On TL_ENUMERIC nothing is updated; `where` names the batch for messages. */
static tl_status run_batch(tl_model *m, const batch_src *src, size_t n, bool train, tli_loss_result *res,
                           const char *where)
{
    const bool logits = tli_loss_takes_logits(m);
    tli_exec ex = tli_exec_for(m, n, train);
    ex.bn_sync = train ? src->bn_sync : NULL;
    if (train) {
        tli_exec_draw_key(m, &ex);
        if (ex.rng_key && src->key_mix)
            ex.rng_key = tli_hash64(ex.rng_key, src->key_mix);
    }
    const float *y = tli_forward(m, &ex, src->x, logits);
    const size_t width = tli_model_out_size(m);
    float *grad = train ? tli_output_grad(m) : NULL;
    /* Sparse cross-entropy always reads labels; the others prefer targets. */
    const int32_t *labels = src->targets ? NULL : src->labels;
    size_t bad = 0;
    bool ok;
    if (!logits)
        ok = tli_mse(y, n, width, labels, src->targets, grad, res, &bad);
    else if (m->label_smoothing == 0.0f && m->class_weights == NULL)
        ok = tli_softmax_xent(y, n, width, labels, src->targets, grad, res, &bad);
    else
        ok = tli_softmax_xent_ex(y, n, width, labels, src->targets, m->label_smoothing, m->class_weights, grad,
                                 res, &bad);
    if (!ok)
        return tli_error(TL_ERANGE, "%s: label %d of example %zu is outside the model's %zu outputs", where,
                         labels[bad], bad, width);
    char cause[256];
    if (!isfinite(res->loss_sum))
        return tli_error(TL_ENUMERIC, "%s: the loss is not finite (%g)%s%s", where, res->loss_sum,
                         nonfinite_cause(cause, sizeof cause, m, src, n), train ? "; no update was made" : "");
    if (src->metrics)
        tli_metrics_add(src->metrics, y, n, width, labels, src->targets);
    if (src->top_k)
        *src->top_k_hits = tli_top_k_hits(y, n, width, labels, src->targets, src->top_k);
    if (!train)
        return TL_OK;
    const float lr = tli_optim_rate(m->opt);
    if (!isfinite(lr))
        return tli_error(TL_ENUMERIC, "%s: the %s learning-rate schedule gives a rate of %g (base %g); no update was "
                         "made", where, tli_schedule_kind_str(m->opt->sched.o.kind), (double)lr, (double)m->opt->lr);
    tli_backward(m, &ex, src->x, logits);
    size_t affected;
    const tl_layer *bad_layer = nonfinite_grad(m, &affected);
    if (bad_layer)
        return tli_error(TL_ENUMERIC,
                         "%s: the gradient of layer '%s' (index %zu) is not finite (the first in the backward "
                         "pass; %zu layer%s affected)%s; no update was made",
                         where, bad_layer->name, bad_layer->index, affected, affected == 1 ? "" : "s",
                         nonfinite_cause(cause, sizeof cause, m, src, n));
    if (!src->no_update)
        tli_train_update(m);
    return TL_OK;
}

/* Width of the float targets the loss will read, or 0 for labels. */
static tl_status check_data(const tl_model *m, const tl_dataset *ds, const char *fn, const float **targets)
{
    char a[64], b[64];
    if (ds->h != m->input.dims[0] || ds->w != m->input.dims[1] || ds->c != m->input.dims[2]) {
        tl_shape s = tli_shape3(ds->h, ds->w, ds->c);
        return tli_error(TL_ESHAPE, "%s: the data's examples are %s but the model takes %s", fn,
                         tli_shape_str(&s, a, sizeof a), tli_shape_str(&m->input, b, sizeof b));
    }
    const size_t width = tli_model_out_size(m);
    *targets = NULL;
    if (m->loss != TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY && ds->targets) {
        if (ds->k != width)
            return tli_error(TL_ESHAPE, "%s: the data's targets have %zu values per example but the model outputs %zu",
                             fn, ds->k, width);
        *targets = ds->targets;
        return TL_OK;
    }
    if (ds->num_classes > width)
        return tli_error(TL_ESHAPE, "%s: the data has %u classes but the model's last layer ('%s') has %zu outputs",
                         fn, ds->num_classes, m->layers[m->nlayers - 1]->name, width);
    return TL_OK;
}

static tl_status check_compiled(const tl_model *m, const char *fn)
{
    if (m->opt == NULL || m->loss == 0)
        return tli_error(TL_ESTATE, "%s: the model is not compiled; call tl_model_compile() first", fn);
    tl_status st = tli_check_loss(m, m->loss, fn);
    return st ? st : tli_check_loss_options(m, fn);
}

/* Copy examples idx[0..n) of ds into the workspace batch; `aug` non-NULL:
 * augment the images with the batch's key as they are copied, as
 * positions first.. of the batch. */
static void gather(tl_model *m, const tl_dataset *ds, const float *targets, const uint32_t *idx, size_t n,
                   const tl_augment_options *aug, uint64_t key, size_t first)
{
    const size_t ex = ds->example_size, width = tli_model_out_size(m);
    if (aug)
        tli_augment_gather_at(m->threads ? m->threads : 1, aug, key, first, ds->images, idx, n, ds->h, ds->w, ds->c,
                              m->ws.input);
    for (size_t i = 0; i < n; i++) {
        if (aug == NULL)
            memcpy(m->ws.input + i * ex, ds->images + (size_t)idx[i] * ex, ex * sizeof(float));
        m->ws.labels[i] = ds->labels[idx[i]];
        if (targets)
            memcpy(m->ws.targets + i * width, targets + (size_t)idx[i] * width, width * sizeof(float));
    }
}

/* Evaluate examples [first, first + count) of ds into sums: loss sum,
 * weight, correct, examples. */
static tl_status evaluate_part(double *sums, tl_model *m, const tl_dataset *ds, size_t first, size_t count,
                               size_t batch, tl_metrics *metrics, const char *fn)
{
    const float *targets;
    tl_status st = check_data(m, ds, fn, &targets);
    if (st || count == 0)
        return st;
    if (batch > count)
        batch = count;
    if ((st = tli_workspace_ensure(m, batch, false))) {
        tli_error_prefix("%s", fn);
        return st;
    }
    const size_t width = tli_model_out_size(m);
    char where[128];
    for (size_t done = first; done < first + count; done += batch) {
        size_t b = first + count - done < batch ? first + count - done : batch;
        batch_src src = {ds->images + done * ds->example_size, ds->labels + done,
                         targets ? targets + done * width : NULL, NULL, done, "the data", metrics, 0, false, NULL,
                         0, NULL};
        tli_loss_result r;
        snprintf(where, sizeof where, "%s: examples %zu..%zu", fn, done, done + b - 1);
        if ((st = run_batch(m, &src, b, false, &r, where)))
            return st;
        sums[0] += r.loss_sum;
        sums[1] += r.weight_sum;
        sums[2] += (double)r.correct;
    }
    sums[3] = (double)count;
    return TL_OK;
}

/* The evaluation loop of tl_model_evaluate(), tl_model_evaluate_metrics()
 * (metrics not NULL) and fit's validation; `x` (may be NULL) splits the
 * data over processes and sums their counts. */
static tl_status evaluate_loop(double *out_loss, double *out_acc, tl_model *m, const tl_dataset *ds, size_t batch,
                               tl_metrics *metrics, tli_xchg *x, const char *fn)
{
    const bool split = x && x->fn;
    size_t first = 0, count = ds->n;
    if (split)
        tli_xchg_part(x, ds->n, &first, &count);
    double local[4] = {0.0, 0.0, 0.0, 0.0};
    tl_status st = evaluate_part(local, m, ds, first, count, batch, metrics, fn);
    if (split) {
        /* One call whatever happened, so that no process waits for this one. */
        size_t extra = metrics ? tli_metrics_nsums(metrics) : 0;
        double *sums = extra ? tli_malloc((4 + extra) * sizeof *sums) : local;
        if (sums == NULL) {
            if (st == TL_OK)
                st = tli_error(TL_ENOMEM, "%s: out of memory for the %zu counts to exchange", fn, 4 + extra);
            sums = local;
            extra = 0;
        } else if (extra) {
            memcpy(sums, local, sizeof local);
            tli_metrics_to_sums(metrics, sums + 4);
        }
        st = tli_xchg_sums(x, st, sums, 4 + extra);
        if (st == TL_OK && extra) {
            memcpy(local, sums, sizeof local);
            tli_metrics_from_sums(metrics, sums + 4);
        }
        if (sums != local)
            tli_free(sums);
    }
    if (st)
        return st;
    /* Without class weights, the weight is the example count exactly. */
    if (out_loss)
        *out_loss = tli_loss_mean(local[0], local[1]);
    if (out_acc)
        *out_acc = local[3] > 0.0 ? local[2] / local[3] : 0.0;
    return TL_OK;
}

tl_status tl_model_evaluate(double *out_loss, double *out_accuracy, tl_model *m, const tl_dataset *data,
                            uint32_t batch_size)
{
    const char *fn = "tl_model_evaluate";
    if (m == NULL || data == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, m ? "data" : "model");
    return tli_model_evaluate(out_loss, out_accuracy, m, data, batch_size, NULL, fn);
}

tl_status tli_model_evaluate(double *out_loss, double *out_accuracy, tl_model *m, const tl_dataset *data,
                             uint32_t batch_size, tl_metrics *metrics, const char *fn)
{
    return tli_model_evaluate_x(out_loss, out_accuracy, m, data, batch_size, metrics, NULL, fn);
}

tl_status tli_model_evaluate_x(double *out_loss, double *out_accuracy, tl_model *m, const tl_dataset *data,
                               uint32_t batch_size, tl_metrics *metrics, tli_xchg *x, const char *fn)
{
    /* Evaluation needs a loss, not an optimizer; a model never compiled
     * is a classifier evaluated with sparse cross-entropy, for this call
     * only. */
    const tl_loss compiled = m->loss;
    if (compiled == 0)
        m->loss = TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY;
    tl_status st = tli_check_loss(m, m->loss, fn);
    if (st == TL_OK)
        st = tli_check_loss_options(m, fn);
    if (st == TL_OK)
        st = evaluate_loop(out_loss, out_accuracy, m, data, batch_size ? batch_size : 64, metrics, x, fn);
    else
        st = tli_xchg_sums(x, st, NULL, 0);
    m->loss = compiled;
    return st;
}

tl_status tl_model_train_step(double *out_loss, tl_model *m, const float *inputs, const int32_t *labels,
                              const float *targets, size_t n)
{
    const char *fn = "tl_model_train_step";
    if (m == NULL || inputs == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, m ? "inputs" : "model");
    if (n == 0)
        return tli_error(TL_EINVAL, "%s: n is 0", fn);
    tl_status st = check_compiled(m, fn);
    if (st)
        return st;
    if (m->loss == TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY)
        targets = NULL;
    if (labels == NULL && targets == NULL)
        return tli_error(TL_EINVAL, "%s: %s", fn,
                         m->loss == TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY ? "labels is NULL"
                                                                            : "labels and targets are both NULL");
    if ((st = tli_schedule_step_check(&m->opt->sched, fn)))
        return st;
    if ((st = tli_workspace_ensure(m, n, true)) || (st = tli_train_prepare(m))) {
        tli_error_prefix("%s", fn);
        return st;
    }
    batch_src src = {inputs, labels, targets, NULL, 0, "the inputs", NULL, 0, false, NULL, 0, NULL};
    tli_loss_result r;
    if ((st = run_batch(m, &src, n, true, &r, fn)))
        return st;
    if (out_loss)
        *out_loss = tli_loss_mean(r.loss_sum, r.weight_sum);
    return TL_OK;
}

/* fit's validation after an epoch: tl_model_evaluate_metrics()'s pass
 * (tli_model_evaluate with metrics, when top-k is measured), so the
 * history's figures are that function's. */
static tl_status validate(tl_progress *p, tl_model *m, const tl_dataset *val, size_t bs, tl_metrics *vm,
                          tli_xchg *x, const char *fn)
{
    if (vm)
        tli_metrics_reset(vm);
    tl_status st = tli_model_evaluate_x(&p->val_loss, &p->val_accuracy, m, val, (uint32_t)bs, vm, x, fn);
    if (st)
        return st;
    p->has_validation = 1;
    if (vm)
        p->val_top_k_accuracy = tl_metrics_top_k_accuracy(vm);
    return TL_OK;
}

static tl_status fit_epochs(tl_model *m, const tl_dataset *ds, const tl_fit_options *o, const float *targets,
                            uint32_t *idx, const tl_augment_options *aug, uint32_t top_k, tl_metrics *vm,
                            tli_recipe *rc, tli_xchg *x)
{
    const char *fn = "tl_model_fit";
    const size_t n = ds->n, bs = o->batch_size < n ? o->batch_size : n;
    const size_t batches = (n + bs - 1) / bs;
    char where[160];
    for (uint32_t e = 0; e < o->epochs; e++) {
        /* Each epoch's order depends only on the random stream, not on the
         * previous order, so a run resumed from a checkpoint repeats it. */
        for (size_t i = 0; i < n; i++)
            idx[i] = (uint32_t)i;
        if (o->shuffle)
            tli_rng_shuffle(&m->train_rng, idx, n);
        tl_progress p;
        memset(&p, 0, sizeof p);
        p.struct_size = sizeof p;
        p.epoch = e;
        p.epochs = o->epochs;
        p.batches = batches;
        p.top_k = top_k;
        p.top_k_accuracy = p.val_top_k_accuracy = NAN;
        double loss = 0.0, weight = 0.0, t0 = tli_now();
        /* Top-k is counted over this process's part of each batch. */
        size_t correct = 0, counted = 0, top_hits = 0, batch_hits = 0, top_counted = 0;
        x->epoch = e;
        for (size_t b = 0; b < batches; b++) {
            size_t lo = b * bs, cnt = n - lo < bs ? n - lo : bs;
            /* This process's part of the batch (all of it without an exchange). */
            size_t plo = 0, pcnt = cnt;
            if (x->fn)
                tli_xchg_part(x, cnt, &plo, &pcnt);
            /* The batch's augmentation key comes before its dropout key. */
            const uint64_t key = aug ? tli_rng_next(&m->train_rng) : 0;
            if (pcnt)
                gather(m, ds, targets, idx + lo + plo, pcnt, aug, key, plo);
            tl_status st = TL_OK;
            if (o->on_batch_begin && pcnt) {
                tl_batch tb;
                memset(&tb, 0, sizeof tb);
                tb.struct_size = sizeof tb;
                tb.epoch = e;
                tb.batch = b;
                tb.n = pcnt;
                tb.height = ds->h;
                tb.width = ds->w;
                tb.channels = ds->c;
                tb.inputs = m->ws.input;
                tb.labels = m->ws.labels;
                tb.targets = targets ? m->ws.targets : NULL;
                tb.target_width = targets ? tli_model_out_size(m) : 0;
                tb.index = idx + lo + plo;
                if (o->on_batch_begin(&tb, o->payload))
                    st = tli_error(TL_ECANCELED, "%s: stopped by the batch-begin callback at epoch %u, batch %zu", fn,
                                   e + 1, b + 1);
            }
            batch_src src = {m->ws.input, m->ws.labels, targets ? m->ws.targets : NULL, idx + lo + plo, 0,
                             "the training data", NULL, x->count > 1 ? (uint64_t)x->rank + 1 : 0, x->fn != NULL, NULL,
                             top_k, &batch_hits};
            tli_loss_result r = {0.0, 0, 0.0};
            batch_hits = 0;
            p.learning_rate = tli_optim_rate(m->opt);
            snprintf(where, sizeof where, "%s: epoch %u, batch %zu of %zu", fn, e + 1, b + 1, batches);
            if (o->sync_batchnorm && x->fn && x->count > 1)
                src.bn_sync = tli_xchg_bn_sync(x, (double)pcnt / (double)cnt);
            if (st == TL_OK && pcnt) {
                st = run_batch(m, &src, pcnt, true, &r, where);
                /* Another process failed during a batchnorm sum: that, not
                 * what this pass made of it, is the error. */
                if (x->over && x->failed)
                    return tli_xchg_failure(x);
            } else if (st == TL_OK) {
                /* No example here: draw what the others draw, to stay in step. */
                tli_exec ex = tli_exec_for(m, 1, true);
                tli_exec_draw_key(m, &ex);
            }
            bool skip = st == TL_ENUMERIC && o->on_nonfinite == TL_NONFINITE_SKIP;
            if (skip)
                st = TL_OK;
            size_t examples = pcnt;
            if (x->fn) {
                /* Every process's gradient summed; one update, the same everywhere. */
                if ((st = tli_xchg_gradients(x, m, st, &skip, &r, &examples, b)))
                    return st;
                if (!skip)
                    tli_train_update(m);
                if ((st = tli_xchg_updated(x, b)))
                    return st;
            } else if (st) {
                return st;
            }
            if (skip) {
                p.skipped_batches++;
            } else {
                loss += r.loss_sum;
                weight += r.weight_sum; /* examples without class weights */
                correct += r.correct;
                counted += examples;
                top_hits += batch_hits;
                top_counted += pcnt;
            }
            p.batch = b + 1;
            p.samples = lo + cnt;
            p.loss = counted ? tli_loss_mean(loss, weight) : NAN;
            p.accuracy = counted ? (double)correct / (double)counted : 0.0;
            if (top_k)
                p.top_k_accuracy = top_counted ? (double)top_hits / (double)top_counted : 0.0;
            p.seconds = tli_now() - t0;
            p.samples_per_second = p.seconds > 0 ? (double)p.samples / p.seconds : 0.0;
            if (o->on_batch && o->on_batch(&p, o->payload))
                return tli_error(TL_ECANCELED, "%s: stopped by the batch callback at epoch %u, batch %zu", fn, e + 1,
                                 b + 1);
        }
        if (o->validation) {
            tl_status st = validate(&p, m, o->validation, bs, vm, x, fn);
            if (st) {
                tli_error_prefix("validation after epoch %u", e + 1);
                return st;
            }
        }
        /* Before the callback, so that a checkpoint written there resumes
         * the schedule at the next epoch. */
        tli_schedule_epoch_end(&m->opt->sched, m->opt->lr, p.val_loss, p.val_accuracy);
        p.seconds = tli_now() - t0;
        bool stop;
        tl_status st = tli_recipe_epoch_end(rc, m, e, &p, &stop, fn);
        if (st)
            return st;
        if (o->on_epoch && o->on_epoch(&p, o->payload))
            return tli_error(TL_ECANCELED, "%s: stopped by the epoch callback after epoch %u", fn, e + 1);
        if (stop)
            break;
    }
    return TL_OK;
}

/* tl_model_fit() after reading the options; every return goes back
 * through it, so that the exchange's last call is made. */
static tl_status fit_checked(tl_model *m, const tl_dataset *train, const tl_fit_options *opts, tli_xchg *x)
{
    const char *fn = "tl_model_fit";
    const tl_fit_options o = *opts;
    if (o.epochs == 0 || o.batch_size == 0)
        return tli_error(TL_EINVAL, "%s: epochs (%u) and batch_size (%u) must be > 0", fn, o.epochs, o.batch_size);
    if (o.on_nonfinite != TL_NONFINITE_STOP && o.on_nonfinite != TL_NONFINITE_SKIP)
        return tli_error(TL_EINVAL, "%s: unknown on_nonfinite policy %d", fn, (int)o.on_nonfinite);
    tl_augment_options aug;
    tl_status st = tli_augment_read(&aug, o.augment, fn);
    if (st || (st = tli_augment_check(&aug, train->h, train->w, fn)) || (st = tli_recipe_check(&o, train, fn)))
        return st;
    st = check_compiled(m, fn);
    const float *targets = NULL;
    if (st || (st = check_data(m, train, fn, &targets)))
        return st;
    if (o.validation) {
        const float *vt;
        if ((st = check_data(m, o.validation, fn, &vt))) {
            tli_error_prefix("validation data");
            return st;
        }
    }
    const size_t outputs = tli_model_out_size(m);
    if (o.top_k > outputs)
        return tli_error(TL_EINVAL, "%s: top_k %u is larger than the model's %zu outputs (classes)", fn, o.top_k,
                         outputs);
    const uint32_t top_k = tli_fit_top_k(o.top_k, outputs);
    size_t bs = o.batch_size < train->n ? o.batch_size : train->n;
    const uint64_t batches = (train->n + bs - 1) / bs;
    /* The workspace holds one process's part of a batch. */
    const size_t part = (bs + x->count - 1) / x->count;
    const size_t last = train->n % bs ? train->n % bs : bs;
    if (o.sync_batchnorm && x->fn && x->count > 1 && last < x->count)
        return tli_error(TL_EINVAL, "%s: sync_batchnorm needs every process's part of every batch to be non-empty, "
                         "but a batch of %zu examples (batch_size %u, %zu examples) is split over %u processes", fn,
                         last, o.batch_size, train->n, x->count);
    if ((st = tli_schedule_fit_check(&m->opt->sched, o.epochs, batches, o.validation != NULL, fn)))
        return st;
    uint32_t *idx = tli_malloc(train->n * sizeof *idx);
    if (idx == NULL)
        return tli_error(TL_ENOMEM, "%s: out of memory for %zu example indices", fn, train->n);
    if ((st = tli_workspace_ensure(m, part, true)) || (st = tli_train_prepare(m))) {
        tli_free(idx);
        tli_error_prefix("%s", fn);
        return st;
    }
    tl_metrics *vm = NULL; /* validation's top-k */
    if (top_k && o.validation && (st = tli_metrics_create(&vm, outputs, top_k, false, fn))) {
        tli_free(idx);
        return st;
    }
    tli_recipe rc;
    if ((st = tli_recipe_begin(&rc, m, &o, fn))) {
        tl_metrics_free(vm);
        tli_free(idx);
        return st;
    }
    if (o.seed)
        tli_rng_seed(&m->train_rng, o.seed, TLI_STREAM_TRAIN);
    tli_schedule_fit_begin(&m->opt->sched, o.epochs, batches);
    st = fit_epochs(m, train, &o, targets, idx, tli_augment_active(&aug) ? &aug : NULL, top_k, vm, &rc, x);
    tli_recipe_end(&rc, m, st);
    tl_metrics_free(vm);
    tli_free(idx);
    return st;
}

tl_status tl_model_fit(tl_model *m, const tl_dataset *train, const tl_fit_options *opts)
{
    const char *fn = "tl_model_fit";
    tl_fit_options o = TL_FIT_OPTIONS_INIT;
    tl_status st = tli_options_read(&o, opts, &fit_type, fn);
    if (st)
        return st;
    if (m == NULL || train == NULL)
        st = tli_error(TL_EINVAL, "%s: %s is NULL", fn, m ? "training data" : "model");
    tli_xchg x;
    if (st == TL_OK)
        st = tli_xchg_begin(&x, m, o.exchange, o.exchange_payload, o.shard_rank, o.shard_count, true, fn);
    else
        tli_xchg_begin(&x, NULL, o.exchange, o.exchange_payload, 0, 0, false, fn);
    if (st == TL_OK)
        st = fit_checked(m, train, &o, &x);
    st = tli_xchg_end(&x, st);
    tli_xchg_free(&x);
    return st;
}
