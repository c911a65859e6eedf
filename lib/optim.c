/*
 * optim.c - optimizer handles and the update over arrays. Which tensors
 * are updated, and where their state lives, is train.c's business
 * (compile.c): a frozen layer never gets state, gradient or update.
 */
#include <math.h>
#include <string.h>

#include "optim.h"
#include "options.h"

TLI_OPTIONS_TYPE_V1(adam_type, tl_adam_options, TL_ADAM_OPTIONS);
TLI_OPTIONS_TYPE_V1(sgd_type, tl_sgd_options, TL_SGD_OPTIONS);
TLI_OPTIONS_TYPE_V1(schedule_type, tl_schedule_options, TL_SCHEDULE_OPTIONS);

static bool finite_pos(float x)
{
    return x > 0.0f && isfinite(x);
}

static tl_status new_optimizer(tl_optimizer **out, tl_optimizer_kind kind, const char *fn)
{
    tl_optimizer *o = tli_calloc(1, sizeof *o);
    if (o == NULL)
        return tli_error(TL_ENOMEM, "%s: out of memory", fn);
    o->kind = kind;
    const tl_schedule_options none = TL_SCHEDULE_OPTIONS_INIT;
    tli_schedule_set(&o->sched, &none, 0);
    *out = o;
    return TL_OK;
}

static tl_status create_adam(tl_optimizer **out, const tl_adam_options *opts, tl_optimizer_kind kind,
                             const char *fn)
{
    if (out == NULL)
        return tli_error(TL_EINVAL, "%s: out is NULL", fn);
    *out = NULL;
    tl_adam_options d = TL_ADAM_OPTIONS_INIT;
    tl_status read = tli_options_read(&d, opts, &adam_type, fn);
    if (read)
        return read;
    if (!finite_pos(d.learning_rate))
        return tli_error(TL_EINVAL, "%s: learning_rate %g must be finite and > 0", fn, (double)d.learning_rate);
    if (!(d.beta1 >= 0.0f && d.beta1 < 1.0f) || !(d.beta2 >= 0.0f && d.beta2 < 1.0f))
        return tli_error(TL_EINVAL, "%s: beta1 %g and beta2 %g must be in [0, 1)", fn, (double)d.beta1,
                         (double)d.beta2);
    if (!finite_pos(d.epsilon))
        return tli_error(TL_EINVAL, "%s: epsilon %g must be finite and > 0", fn, (double)d.epsilon);
    if (!(d.weight_decay >= 0.0f) || isinf(d.weight_decay))
        return tli_error(TL_EINVAL, "%s: weight_decay %g must be finite and >= 0", fn, (double)d.weight_decay);
    tl_status st = new_optimizer(out, kind, fn);
    if (st)
        return st;
    (*out)->lr = d.learning_rate;
    (*out)->beta1 = d.beta1;
    (*out)->beta2 = d.beta2;
    (*out)->eps = d.epsilon;
    (*out)->weight_decay = d.weight_decay;
    return TL_OK;
}

tl_status tl_optimizer_create_adam(tl_optimizer **out, const tl_adam_options *opts)
{
    return create_adam(out, opts, TL_OPT_ADAM, "tl_optimizer_create_adam");
}

tl_status tl_optimizer_create_adamw(tl_optimizer **out, const tl_adam_options *opts)
{
    return create_adam(out, opts, TL_OPT_ADAMW, "tl_optimizer_create_adamw");
}

tl_status tl_optimizer_create_sgd(tl_optimizer **out, const tl_sgd_options *opts)
{
    const char *fn = "tl_optimizer_create_sgd";
    if (out == NULL)
        return tli_error(TL_EINVAL, "%s: out is NULL", fn);
    *out = NULL;
    tl_sgd_options d = TL_SGD_OPTIONS_INIT;
    tl_status read = tli_options_read(&d, opts, &sgd_type, fn);
    if (read)
        return read;
    if (!finite_pos(d.learning_rate))
        return tli_error(TL_EINVAL, "%s: learning_rate %g must be finite and > 0", fn, (double)d.learning_rate);
    if (!(d.momentum >= 0.0f && d.momentum < 1.0f))
        return tli_error(TL_EINVAL, "%s: momentum %g must be in [0, 1)", fn, (double)d.momentum);
    if (!(d.weight_decay >= 0.0f) || isinf(d.weight_decay))
        return tli_error(TL_EINVAL, "%s: weight_decay %g must be finite and >= 0", fn, (double)d.weight_decay);
    tl_status st = new_optimizer(out, TL_OPT_SGD, fn);
    if (st)
        return st;
    (*out)->lr = d.learning_rate;
    (*out)->momentum = d.momentum;
    (*out)->nesterov = d.nesterov ? 1 : 0;
    (*out)->weight_decay = d.weight_decay;
    return TL_OK;
}

tl_status tl_adam_options_init(tl_adam_options *opts, unsigned int version)
{
    const tl_adam_options d = TL_ADAM_OPTIONS_INIT;
    return tli_options_init(opts, version, &d, &adam_type, "tl_adam_options_init");
}

tl_status tl_sgd_options_init(tl_sgd_options *opts, unsigned int version)
{
    const tl_sgd_options d = TL_SGD_OPTIONS_INIT;
    return tli_options_init(opts, version, &d, &sgd_type, "tl_sgd_options_init");
}

void tl_optimizer_free(tl_optimizer *opt)
{
    /* An optimizer taken by a model is freed with the model. */
    if (opt && !opt->owned)
        tli_free(opt);
}

void tli_optimizer_release(tl_optimizer *opt)
{
    if (opt) {
        opt->owned = false;
        tl_optimizer_free(opt);
    }
}

tl_optimizer_kind tl_optimizer_get_kind(const tl_optimizer *opt)
{
    return opt ? opt->kind : (tl_optimizer_kind)0;
}

tl_status tl_optimizer_set_learning_rate(tl_optimizer *opt, float lr)
{
    if (opt == NULL)
        return tli_error(TL_EINVAL, "tl_optimizer_set_learning_rate: optimizer is NULL");
    if (!finite_pos(lr))
        return tli_error(TL_EINVAL, "tl_optimizer_set_learning_rate: learning rate %g must be finite and > 0",
                         (double)lr);
    opt->lr = lr;
    return TL_OK;
}

float tl_optimizer_learning_rate(const tl_optimizer *opt)
{
    return opt ? opt->lr : 0.0f;
}

uint64_t tl_optimizer_steps(const tl_optimizer *opt)
{
    return opt ? opt->steps : 0;
}

/* ---- learning-rate schedules (the formulas are schedule.c's) ------------- */

tl_status tli_schedule_options_get(tl_schedule_options *out, const tl_schedule_options *cur, const char *fn)
{
    if (out == NULL)
        return tli_error(TL_EINVAL, "%s: out is NULL", fn);
    return tli_options_init(out, out->version, cur, &schedule_type, fn);
}

tl_status tl_schedule_options_init(tl_schedule_options *opts, unsigned int version)
{
    const tl_schedule_options d = TL_SCHEDULE_OPTIONS_INIT;
    return tli_options_init(opts, version, &d, &schedule_type, "tl_schedule_options_init");
}

tl_status tl_optimizer_set_schedule(tl_optimizer *opt, const tl_schedule_options *s)
{
    const char *fn = "tl_optimizer_set_schedule";
    if (opt == NULL)
        return tli_error(TL_EINVAL, "%s: optimizer is NULL", fn);
    tl_schedule_options d = TL_SCHEDULE_OPTIONS_INIT;
    tl_status st = tli_options_read(&d, s, &schedule_type, fn);
    if (st || (st = tli_schedule_check(&d, fn)))
        return st;
    tli_schedule_set(&opt->sched, &d, opt->steps);
    return TL_OK;
}

float tli_optim_rate(const tl_optimizer *o)
{
    if (!tli_schedule_active(&o->sched))
        return o->lr;
    return (float)tli_schedule_rate(&o->sched, o->lr, o->steps);
}

float tl_optimizer_current_learning_rate(const tl_optimizer *opt)
{
    return opt ? tli_optim_rate(opt) : 0.0f;
}

void tli_optim_restart_schedule(tl_optimizer *o)
{
    tli_schedule_restart(&o->sched, o->steps);
}

const char *tl_loss_str(tl_loss loss)
{
    switch (loss) {
    case TL_LOSS_SPARSE_CATEGORICAL_CROSSENTROPY: return "sparse_categorical_crossentropy";
    case TL_LOSS_CATEGORICAL_CROSSENTROPY: return "categorical_crossentropy";
    case TL_LOSS_MEAN_SQUARED_ERROR: return "mean_squared_error";
    }
    return "unknown";
}

/* ---- the update ---------------------------------------------------------- */

size_t tli_optim_slots(const tl_optimizer *o)
{
    if (o->kind == TL_OPT_SGD)
        return o->momentum > 0.0f ? 1 : 0;
    return 2;
}

static void sgd_update(const tl_optimizer *o, float lr, float *w, const float *g, float *v, size_t n)
{
    const float wd = o->weight_decay, mu = o->momentum;
    if (v == NULL) {
        for (size_t i = 0; i < n; i++)
            w[i] -= lr * (g[i] + wd * w[i]);
        return;
    }
    if (o->nesterov) {
        for (size_t i = 0; i < n; i++) {
            float gi = g[i] + wd * w[i];
            v[i] = mu * v[i] - lr * gi;
            w[i] += mu * v[i] - lr * gi;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            v[i] = mu * v[i] - lr * (g[i] + wd * w[i]);
            w[i] += v[i];
        }
    }
}

static void adam_update(const tl_optimizer *o, float lr, float *w, const float *g, float *mo, float *ve, size_t n)
{
    const float b1 = o->beta1, b2 = o->beta2, eps = o->eps;
    const double t = (double)o->steps;
    /* Keras folds both bias corrections into the step size. */
    const float lr_t = (float)((double)lr * sqrt(1.0 - pow((double)b2, t)) / (1.0 - pow((double)b1, t)));
    const float l2 = o->kind == TL_OPT_ADAM ? o->weight_decay : 0.0f;
    const float decoupled = o->kind == TL_OPT_ADAMW ? lr * o->weight_decay : 0.0f;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + l2 * w[i];
        mo[i] = b1 * mo[i] + (1.0f - b1) * gi;
        ve[i] = b2 * ve[i] + (1.0f - b2) * gi * gi;
        w[i] -= lr_t * mo[i] / (sqrtf(ve[i]) + eps) + decoupled * w[i];
    }
}

float tli_optim_begin_step(tl_optimizer *o)
{
    const float lr = tli_optim_rate(o);
    o->steps++;
    return lr;
}

void tli_optim_update(const tl_optimizer *o, float lr, float *w, const float *g, float *s0, float *s1, size_t n)
{
    if (o->kind == TL_OPT_SGD)
        sgd_update(o, lr, w, g, s0, n);
    else
        adam_update(o, lr, w, g, s0, s1, n);
}
