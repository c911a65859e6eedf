/*
 * history.c - tl_history (one row of figures per epoch, CSV output) and the
 * recipe of fit around the epochs: early stopping, the best weights,
 * checkpoints (see tl_fit_options in tl/train.h).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "history.h"
#include "model.h"
#include "options.h"

struct tl_history {
    double *rows; /* rows * TL_HISTORY_KEYS */
    size_t n, cap;
};

static const char *const key_names[TL_HISTORY_KEYS] = {
    "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds", "skipped_batches",
    "improved", "stopped", "top_k", "top_k_accuracy", "val_top_k_accuracy"};

TLI_OPTIONS_TYPE_V1(es_type, tl_early_stopping_options, TL_EARLY_STOPPING_OPTIONS);

tl_status tl_early_stopping_options_init(tl_early_stopping_options *opts, unsigned int version)
{
    const tl_early_stopping_options d = TL_EARLY_STOPPING_OPTIONS_INIT;
    return tli_options_init(opts, version, &d, &es_type, "tl_early_stopping_options_init");
}

tl_status tl_history_create(tl_history **out)
{
    if (out == NULL)
        return tli_error(TL_EINVAL, "tl_history_create: out is NULL");
    *out = tli_calloc(1, sizeof **out);
    if (*out == NULL)
        return tli_error(TL_ENOMEM, "tl_history_create: out of memory");
    return TL_OK;
}

void tl_history_free(tl_history *h)
{
    if (h == NULL)
        return;
    tli_free(h->rows);
    tli_free(h);
}

size_t tl_history_epochs(const tl_history *h)
{
    return h ? h->n : 0;
}

double tl_history_value(const tl_history *h, size_t row, tl_history_key key)
{
    if (h == NULL || row >= h->n || (unsigned)key >= TL_HISTORY_KEYS)
        return NAN;
    return h->rows[row * TL_HISTORY_KEYS + (size_t)key];
}

const char *tl_history_key_name(tl_history_key key)
{
    return (unsigned)key < TL_HISTORY_KEYS ? key_names[key] : NULL;
}

static bool integer_key(size_t k)
{
    return k == TL_HISTORY_EPOCH || k == TL_HISTORY_SKIPPED_BATCHES || k == TL_HISTORY_IMPROVED ||
           k == TL_HISTORY_STOPPED || k == TL_HISTORY_TOP_K;
}

tl_status tl_history_write_csv(const tl_history *h, tl_write_fn write, void *payload)
{
    const char *fn = "tl_history_write_csv";
    if (h == NULL || write == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, h ? "write" : "history");
    char line[TL_HISTORY_KEYS * 32];
    size_t len = 0;
    for (size_t k = 0; k < TL_HISTORY_KEYS; k++)
        len += (size_t)snprintf(line + len, sizeof line - len, "%s%s", k ? "," : "", key_names[k]);
    line[len++] = '\n';
    line[len] = '\0';
    if (write(line, len, payload))
        return tli_error(TL_ECANCELED, "%s: the write callback stopped at the header", fn);
    for (size_t r = 0; r < h->n; r++) {
        len = 0;
        for (size_t k = 0; k < TL_HISTORY_KEYS; k++) {
            const double v = h->rows[r * TL_HISTORY_KEYS + k];
            if (k)
                line[len++] = ',';
            if (isnan(v))
                continue;
            if (integer_key(k)) {
                len += (size_t)snprintf(line + len, sizeof line - len, "%.0f", v);
            } else {
                /* single precision is what the figures carry; '.' in every locale */
                char num[64];
                tli_format_number(num, sizeof num, v, true);
                len += (size_t)snprintf(line + len, sizeof line - len, "%s", num);
            }
        }
        line[len++] = '\n';
        line[len] = '\0';
        if (write(line, len, payload))
            return tli_error(TL_ECANCELED, "%s: the write callback stopped at row %zu", fn, r);
    }
    return TL_OK;
}

tl_status tli_history_reserve(tl_history *h, size_t more)
{
    if (more > SIZE_MAX / (TL_HISTORY_KEYS * sizeof(double)) - h->n)
        return tli_error(TL_ETOOBIG, "the history cannot hold %zu more epochs", more);
    const size_t need = h->n + more;
    if (need <= h->cap)
        return TL_OK;
    double *rows = tli_realloc(h->rows, need * TL_HISTORY_KEYS * sizeof(double));
    if (rows == NULL)
        return tli_error(TL_ENOMEM, "out of memory for %zu history rows", need);
    h->rows = rows;
    h->cap = need;
    return TL_OK;
}

void tli_history_append(tl_history *h, const double *row)
{
    memcpy(h->rows + h->n * TL_HISTORY_KEYS, row, TL_HISTORY_KEYS * sizeof(double));
    h->n++;
}

/* ---- early stopping, best weights, checkpoints ---------------------------------- */

tl_status tli_recipe_check(const tl_fit_options *o, const tl_dataset *train, const char *fn)
{
    (void)train;
    if (o->early_stopping) {
        tl_early_stopping_options es = TL_EARLY_STOPPING_OPTIONS_INIT;
        tl_status st = tli_options_read(&es, o->early_stopping, &es_type, fn);
        if (st)
            return st;
        if (es.monitor != TL_MONITOR_VAL_LOSS && es.monitor != TL_MONITOR_VAL_ACCURACY)
            return tli_error(TL_EINVAL,
                             "%s: early_stopping monitor %d is not TL_MONITOR_VAL_LOSS or TL_MONITOR_VAL_ACCURACY", fn,
                             (int)es.monitor);
        if (o->validation == NULL)
            return tli_error(TL_EINVAL,
                             "%s: early_stopping monitors %s, which needs a validation set (the validation option "
                             "is NULL)",
                             fn, es.monitor == TL_MONITOR_VAL_LOSS ? "val_loss" : "val_accuracy");
        if (es.patience == 0)
            return tli_error(TL_EINVAL, "%s: early_stopping patience is 0 (it must be at least 1)", fn);
        if (!(es.min_delta >= 0.0 && isfinite(es.min_delta)))
            return tli_error(TL_EINVAL, "%s: early_stopping min_delta %g must be finite and >= 0", fn, es.min_delta);
    }
    if ((o->checkpoint_every || o->checkpoint_on_improvement) && (o->checkpoint_path == NULL || !*o->checkpoint_path))
        return tli_error(TL_EINVAL, "%s: %s is set but checkpoint_path is %s", fn,
                         o->checkpoint_every ? "checkpoint_every" : "checkpoint_on_improvement",
                         o->checkpoint_path ? "empty" : "NULL");
    if (o->checkpoint_on_improvement && o->early_stopping == NULL)
        return tli_error(TL_EINVAL,
                         "%s: checkpoint_on_improvement needs early_stopping (its monitor and min_delta say what an "
                         "improvement is; patience UINT32_MAX never stops)",
                         fn);
    return TL_OK;
}

/* Early stopping's start: continue the model's pending state when it is
 * the same run's (see tl_early_stopping_options), else start afresh. Last
 * in tli_recipe_begin, so that a failure before leaves the model as it was. */
static tl_status early_begin(tli_recipe *r, tl_model *m, const char *fn)
{
    tli_early_state *s = &m->early;
    const size_t count = r->es.restore_best ? tli_model_tensor_values(m) : 0;
    const bool resume = s->pending && r->o->seed == 0 && s->monitor == r->es.monitor && s->count == count &&
                        (count == 0 || s->copy != NULL);
    if (!resume) {
        float *copy = NULL;
        /* Zeroed: the copy may be saved before the first improvement. */
        if (count && (copy = tli_calloc(count, sizeof(float))) == NULL)
            return tli_error(TL_ENOMEM, "%s: out of memory for a copy of the %zu values of the best epoch "
                             "(early_stopping restore_best)", fn, count);
        tli_early_clear(s);
        s->monitor = r->es.monitor;
        s->copy = copy;
        s->count = count;
    }
    s->pending = true;
    return TL_OK;
}

tl_status tli_recipe_begin(tli_recipe *r, tl_model *m, const tl_fit_options *o, const char *fn)
{
    memset(r, 0, sizeof *r);
    r->o = o;
    tl_early_stopping_options es = TL_EARLY_STOPPING_OPTIONS_INIT;
    r->es = es;
    if (o->early_stopping) {
        tli_options_read(&r->es, o->early_stopping, &es_type, fn); /* checked before */
        r->early = true;
    }
    if (o->checkpoint_path && (o->checkpoint_every || o->checkpoint_on_improvement)) {
        r->path_cap = strlen(o->checkpoint_path) * 4 + 16; /* "{epoch}" -> at most 10 digits */
        if ((r->path = tli_malloc(r->path_cap)) == NULL) {
            tli_recipe_end(r, m, TL_ENOMEM);
            return tli_error(TL_ENOMEM, "%s: out of memory for the checkpoint path", fn);
        }
    }
    if (o->history) {
        tl_status st = tli_history_reserve(o->history, o->epochs);
        if (st) {
            tli_recipe_end(r, m, st);
            tli_error_prefix("%s", fn);
            return st;
        }
    }
    if (r->early) {
        tl_status st = early_begin(r, m, fn);
        if (st) {
            r->early = false; /* the model's state is not this fit's */
            tli_recipe_end(r, m, st);
            return st;
        }
    }
    return TL_OK;
}

static void copy_tensors(tl_model *m, float *copy, bool restore)
{
    for (size_t i = 0; i < m->nlayers; i++)
        for (size_t p = 0; p < m->layers[i]->nparams; p++) {
            tli_param *t = &m->layers[i]->params[p];
            if (restore)
                memcpy(t->value, copy, t->count * sizeof(float));
            else
                memcpy(copy, t->value, t->count * sizeof(float));
            copy += t->count;
        }
    if (restore)
        tli_model_touch(m);
}

static tl_status checkpoint(tli_recipe *r, tl_model *m, uint32_t e, const char *why, const char *fn)
{
    const char *s = r->o->checkpoint_path;
    size_t len = 0;
    while (*s) {
        if (strncmp(s, "{epoch}", 7) == 0) {
            len += (size_t)snprintf(r->path + len, r->path_cap - len, "%u", e + 1);
            s += 7;
        } else {
            r->path[len++] = *s++;
        }
    }
    r->path[len] = '\0';
    tl_status st = tl_model_save(m, r->path, NULL);
    if (st)
        tli_error_prefix("%s: the checkpoint after epoch %u (%s) was not written", fn, e + 1, why);
    return st;
}

tl_status tli_recipe_epoch_end(tli_recipe *r, tl_model *m, uint32_t e, const tl_progress *p, bool *stop,
                               const char *fn)
{
    const tl_fit_options *o = r->o;
    bool improved = false;
    *stop = false;
    if (r->early) {
        tli_early_state *s = &m->early;
        const bool max_mode = r->es.monitor == TL_MONITOR_VAL_ACCURACY;
        const double v = max_mode ? p->val_accuracy : p->val_loss, d = r->es.min_delta;
        improved = !isnan(v) && (isnan(s->best) || (max_mode ? v > s->best + d : v < s->best - d));
        if (s->epochs < UINT32_MAX)
            s->epochs++;
        if (improved) {
            s->best = v;
            s->wait = 0;
            s->best_epoch = s->epochs;
            if (s->copy)
                copy_tensors(m, s->copy, false);
        } else {
            if (s->wait < UINT32_MAX)
                s->wait++;
            /* Only a stop before the last epoch is early. */
            *stop = s->wait >= r->es.patience && e + 1 < o->epochs;
        }
        /* After the fit's last epoch the run is over: a checkpoint written
         * now holds no state to continue (a fit from it starts afresh). */
        if (*stop || e + 1 == o->epochs)
            s->pending = false;
    }
    if (o->history) {
        double row[TL_HISTORY_KEYS];
        row[TL_HISTORY_EPOCH] = e + 1;
        row[TL_HISTORY_LOSS] = p->loss;
        row[TL_HISTORY_ACCURACY] = p->accuracy;
        row[TL_HISTORY_VAL_LOSS] = p->has_validation ? p->val_loss : NAN;
        row[TL_HISTORY_VAL_ACCURACY] = p->has_validation ? p->val_accuracy : NAN;
        row[TL_HISTORY_LEARNING_RATE] = p->learning_rate;
        row[TL_HISTORY_SECONDS] = p->seconds;
        row[TL_HISTORY_SKIPPED_BATCHES] = (double)p->skipped_batches;
        row[TL_HISTORY_IMPROVED] = r->early ? (improved ? 1.0 : 0.0) : NAN;
        row[TL_HISTORY_STOPPED] = *stop ? 1.0 : 0.0;
        row[TL_HISTORY_TOP_K] = p->top_k ? (double)p->top_k : NAN;
        row[TL_HISTORY_TOP_K_ACCURACY] = p->top_k ? p->top_k_accuracy : NAN;
        row[TL_HISTORY_VAL_TOP_K_ACCURACY] = p->top_k && p->has_validation ? p->val_top_k_accuracy : NAN;
        tli_history_append(o->history, row);
    }
    tl_status st = TL_OK;
    if (o->checkpoint_every && (e + 1) % o->checkpoint_every == 0)
        st = checkpoint(r, m, e, "checkpoint_every", fn);
    else if (o->checkpoint_on_improvement && improved)
        st = checkpoint(r, m, e, "checkpoint_on_improvement", fn);
    return st;
}

void tli_recipe_end(tli_recipe *r, tl_model *m, tl_status st)
{
    if (r->early && st == TL_OK) {
        if (m->early.copy && m->early.best_epoch)
            copy_tensors(m, m->early.copy, true);
        tli_early_clear(&m->early);
    } else if (r->early && !m->early.pending) {
        /* Cancelled after the last epoch: nothing to continue. */
        tli_early_clear(&m->early);
    }
    tli_free(r->path);
    r->path = NULL;
}
