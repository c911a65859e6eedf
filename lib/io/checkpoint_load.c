/*
 * checkpoint_load.c - tl_model_load() and tl_model_load_params(): a
 * visitor of the checkpoint parser that builds the model record by record.
 * Layers are rebuilt through tli_model_append, so a file is held to exactly
 * the rules of the add functions; settings the file gets wrong are reported
 * as TL_EFORMAT (it is the file, not the caller, that is at fault). The
 * model is handed out only after the whole file, its CRCs included, checked.
 */
#include <stdio.h>
#include <string.h>

#include "../transfer/transfer.h"
#include "checkpoint.h"

typedef struct loader {
    tl_model *m;
    bool with_optim;
    const char *fn;
} loader;

/* An error of the add functions or compile about file contents is a format
 * error of the file. */
static tl_status as_format(tl_status st)
{
    return st == TL_EINVAL || st == TL_ESHAPE ? TL_EFORMAT : st;
}

static tl_status on_model(void *ctx, const tli_ckpt_model *cm, const char *where)
{
    loader *ld = ctx;
    tl_status st = tl_model_create(&ld->m, cm->input.dims[0], cm->input.dims[1], cm->input.dims[2], cm->seed);
    if (st == TL_OK)
        st = tl_model_set_threads(ld->m, cm->threads_req);
    if (st) {
        tli_error_prefix("%s", where);
        return as_format(st);
    }
    memcpy(ld->m->train_rng.s, cm->train_rng, sizeof ld->m->train_rng.s);
    return TL_OK;
}

static tl_status on_layer(void *ctx, size_t index, const tli_ckpt_layer *cl, const char *where)
{
    loader *ld = ctx;
    tl_layer *l;
    char prefix[600];
    snprintf(prefix, sizeof prefix, "%s: layer %zu", where, index);
    /* The parser built this layer already (as a shell) with the same
     * rules, so this fails only for want of memory. */
    tl_status st = tli_model_append(&l, ld->m, cl->ops, cl->cfg, cl->act, cl->use_bias, cl->inputs, cl->ninputs,
                                    cl->name, prefix);
    if (st)
        return as_format(st);
    l->trainable = cl->trainable;
    l->lr_scale = cl->lr_scale;
    return TL_OK;
}

static tl_status on_optim(void *ctx, const tli_ckpt_optim *co, const char *where)
{
    loader *ld = ctx;
    if (!ld->with_optim)
        return TL_OK;
    tl_optimizer *o = NULL;
    tl_status st;
    if (co->kind == TL_OPT_SGD) {
        tl_sgd_options so = TL_SGD_OPTIONS_INIT;
        so.learning_rate = co->lr;
        so.momentum = co->momentum;
        so.nesterov = co->nesterov;
        so.weight_decay = co->weight_decay;
        st = tl_optimizer_create_sgd(&o, &so);
    } else {
        tl_adam_options ao = TL_ADAM_OPTIONS_INIT;
        ao.learning_rate = co->lr;
        ao.beta1 = co->beta1;
        ao.beta2 = co->beta2;
        ao.epsilon = co->eps;
        ao.weight_decay = co->weight_decay;
        st = co->kind == TL_OPT_ADAM ? tl_optimizer_create_adam(&o, &ao) : tl_optimizer_create_adamw(&o, &ao);
    }
    if (st == TL_OK)
        st = tl_model_compile(ld->m, o, co->loss); /* takes o, even on failure */
    if (st) {
        tli_error_prefix("%s: optimizer", where);
        return as_format(st);
    }
    ld->m->opt->steps = co->steps;
    return TL_OK;
}

static tl_status on_schedule(void *ctx, const tli_schedule *s, const char *where)
{
    loader *ld = ctx;
    (void)where;
    if (ld->with_optim)
        ld->m->opt->sched = *s; /* the parser checked it as tl_optimizer_set_schedule() does */
    return TL_OK;
}

static tl_status on_loss(void *ctx, float smoothing, const float *weights, size_t nweights, const char *where)
{
    loader *ld = ctx;
    if (!ld->with_optim)
        return TL_OK;
    /* Checked by the parser (after OPTM, which compiled the model); this
     * fails only for want of memory. */
    return tli_loss_options_set(ld->m, smoothing, weights, nweights, where);
}

/* ESTP: the model continues the interrupted fit's early stopping (a fit
 * with seed 0 and the same early-stopping settings picks it up). */
static tl_status on_early(float **copy, void *ctx, const tli_ckpt_early *e, const char *where)
{
    loader *ld = ctx;
    *copy = NULL;
    if (!ld->with_optim)
        return TL_OK;
    tli_early_state *s = &ld->m->early;
    tli_early_clear(s);
    if (e->count && (s->copy = tli_malloc(e->count * sizeof(float))) == NULL)
        return tli_error(TL_ENOMEM, "%s: out of memory for early stopping's copy of the best weights (%zu values)",
                         where, e->count);
    s->pending = true;
    s->monitor = e->monitor;
    s->best = e->best;
    s->best_epoch = e->best_epoch;
    s->wait = e->wait;
    s->epochs = e->epochs;
    s->count = e->count;
    *copy = s->copy;
    return TL_OK;
}

static tl_status on_tensor(float **out, void *ctx, size_t layer, size_t param, uint32_t slot, size_t count,
                           const char *where)
{
    loader *ld = ctx;
    tli_param *p = &ld->m->layers[layer]->params[param];
    *out = NULL;
    if (slot == TLI_SLOT_VALUE) {
        *out = p->value;
        return TL_OK;
    }
    if (!ld->with_optim)
        return TL_OK;
    float **state = &p->state[slot - TLI_SLOT_STATE0];
    *state = tli_malloc_aligned(count * sizeof(float));
    if (*state == NULL)
        return tli_error(TL_ENOMEM, "%s: out of memory for the optimizer state of layer '%s' %s", where,
                         ld->m->layers[layer]->name, p->name);
    *out = *state;
    return TL_OK;
}

static tl_status load(tl_model **out, const char *path, bool with_optim, const char *fn)
{
    loader ld = {NULL, with_optim, fn};
    tli_ckpt_visitor v = {&ld, on_model, on_layer, on_optim, on_tensor, on_schedule, on_loss, on_early};
    tl_status st = tli_ckpt_read(path, &v, fn, NULL);
    if (st) {
        tl_model_free(ld.m);
        return st;
    }
    *out = ld.m;
    return TL_OK;
}

tl_status tl_model_load(tl_model **out, const char *path)
{
    const char *fn = "tl_model_load";
    if (out)
        *out = NULL;
    if (out == NULL || path == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, out ? "path" : "out");
    return load(out, path, true, fn);
}

tl_status tl_model_load_params(tl_transfer_report **out_report, tl_model *model, const char *path,
                               const tl_transfer_options *opts)
{
    const char *fn = "tl_model_load_params";
    if (out_report)
        *out_report = NULL;
    if (model == NULL || path == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, model ? "path" : "model");
    /* The file becomes a model of its own, and the transfer's matching,
     * selection and report do the rest: a transfer whose source is a file. */
    tl_model *src = NULL;
    tl_status st = load(&src, path, false, fn);
    if (st)
        return st;
    st = tli_transfer_params(out_report, model, src, opts, fn);
    tl_model_free(src);
    return st;
}
