/*
 * checkpoint_info.c - what a checkpoint holds, without building the model:
 * a visitor of the checkpoint parser that keeps the descriptions and skips
 * every tensor, and the getters and summary over them.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../summary.h"
#include "checkpoint.h"

struct tl_checkpoint_info {
    tli_ckpt_model model;
    tl_model *shell; /* the file's layers: shapes, settings, no values */
    bool has_optim;
    tli_ckpt_optim optim;
    bool has_schedule;
    tli_schedule schedule;
    bool has_early;       /* ESTP: an unfinished fit's early stopping */
    tli_ckpt_early early;
    float smoothing;      /* LOSS: 0 and no weights when the file has none */
    float *class_weights; /* owned; NULL when none */
    size_t nclass_weights;
};

static tl_status on_model(void *ctx, const tli_ckpt_model *m, const char *where)
{
    tl_checkpoint_info *info = ctx;
    (void)where;
    info->model = *m;
    return TL_OK;
}

static tl_status on_optim(void *ctx, const tli_ckpt_optim *o, const char *where)
{
    tl_checkpoint_info *info = ctx;
    (void)where;
    info->optim = *o;
    info->has_optim = true;
    return TL_OK;
}

static tl_status on_schedule(void *ctx, const tli_schedule *s, const char *where)
{
    tl_checkpoint_info *info = ctx;
    (void)where;
    info->schedule = *s;
    info->has_schedule = true;
    return TL_OK;
}

static tl_status on_loss(void *ctx, float smoothing, const float *weights, size_t nweights, const char *where)
{
    tl_checkpoint_info *info = ctx;
    info->smoothing = smoothing;
    if (nweights) {
        /* `weights` lives during the call only; the getter lends a copy. */
        if ((info->class_weights = tli_malloc(nweights * sizeof *weights)) == NULL)
            return tli_error(TL_ENOMEM, "%s: out of memory for %zu class weights", where, nweights);
        memcpy(info->class_weights, weights, nweights * sizeof *weights);
        info->nclass_weights = nweights;
    }
    return TL_OK;
}

static tl_status on_early(float **copy, void *ctx, const tli_ckpt_early *e, const char *where)
{
    tl_checkpoint_info *info = ctx;
    (void)where;
    *copy = NULL; /* the copy is skipped (but its size was checked) */
    info->early = *e;
    info->has_early = true;
    return TL_OK;
}

tl_status tl_checkpoint_info_read(tl_checkpoint_info **out, const char *path)
{
    const char *fn = "tl_checkpoint_info_read";
    if (out)
        *out = NULL;
    if (out == NULL || path == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, out ? "path" : "out");
    tl_checkpoint_info *info = tli_calloc(1, sizeof *info);
    if (info == NULL)
        return tli_error(TL_ENOMEM, "%s: out of memory", fn);
    /* No tensor callback: the parser skips (but still checks) the values. */
    tli_ckpt_visitor v = {info, on_model, NULL, on_optim, NULL, on_schedule, on_loss, on_early};
    tl_status st = tli_ckpt_read(path, &v, fn, &info->shell);
    if (st) {
        tl_checkpoint_info_free(info);
        return st;
    }
    *out = info;
    return TL_OK;
}

void tl_checkpoint_info_free(tl_checkpoint_info *info)
{
    if (info == NULL)
        return;
    tl_model_free(info->shell);
    tli_free(info->class_weights);
    tli_free(info);
}

tl_status tl_checkpoint_info_format_version(uint32_t *out_major, uint32_t *out_minor, const tl_checkpoint_info *info)
{
    if (info == NULL)
        return tli_error(TL_EINVAL, "tl_checkpoint_info_format_version: info is NULL");
    if (out_major)
        *out_major = info->model.major;
    if (out_minor)
        *out_minor = info->model.minor;
    return TL_OK;
}

tl_status tl_checkpoint_info_input_shape(tl_shape *out, const tl_checkpoint_info *info)
{
    if (out == NULL || info == NULL)
        return tli_error(TL_EINVAL, "tl_checkpoint_info_input_shape: %s is NULL", out ? "info" : "out");
    *out = info->model.input;
    return TL_OK;
}

uint64_t tl_checkpoint_info_seed(const tl_checkpoint_info *info)
{
    return info ? info->model.seed : 0;
}

size_t tl_checkpoint_info_num_layers(const tl_checkpoint_info *info)
{
    return info ? info->shell->nlayers : 0;
}

size_t tl_checkpoint_info_param_count(const tl_checkpoint_info *info)
{
    return info ? tl_model_param_count(info->shell) : 0;
}

tl_optimizer_kind tl_checkpoint_info_optimizer(const tl_checkpoint_info *info)
{
    return info && info->has_optim ? info->optim.kind : (tl_optimizer_kind)0;
}

uint64_t tl_checkpoint_info_optimizer_steps(const tl_checkpoint_info *info)
{
    return info && info->has_optim ? info->optim.steps : 0;
}

tl_loss tl_checkpoint_info_loss(const tl_checkpoint_info *info)
{
    return info && info->has_optim ? info->optim.loss : (tl_loss)0;
}

tl_status tl_checkpoint_info_schedule(tl_schedule_options *out, const tl_checkpoint_info *info)
{
    const char *fn = "tl_checkpoint_info_schedule";
    if (info == NULL)
        return tli_error(TL_EINVAL, "%s: info is NULL", fn);
    /* No SCHD: the constant rate, i.e. the defaults. */
    const tl_schedule_options none = TL_SCHEDULE_OPTIONS_INIT;
    return tli_schedule_options_get(out, info->has_schedule ? &info->schedule.o : &none, fn);
}

tl_status tl_checkpoint_info_loss_options(tl_loss_options *out, const tl_checkpoint_info *info)
{
    const char *fn = "tl_checkpoint_info_loss_options";
    if (info == NULL)
        return tli_error(TL_EINVAL, "%s: info is NULL", fn);
    return tli_loss_options_get(out, info->smoothing, info->class_weights, info->nclass_weights, fn);
}

static const tl_layer *layer_at(const tl_checkpoint_info *info, size_t i)
{
    return info && i < info->shell->nlayers ? info->shell->layers[i] : NULL;
}

tl_layer_kind tl_checkpoint_info_layer_kind(const tl_checkpoint_info *info, size_t i)
{
    const tl_layer *l = layer_at(info, i);
    return l ? l->ops->kind : (tl_layer_kind)0;
}

const char *tl_checkpoint_info_layer_name(const tl_checkpoint_info *info, size_t i)
{
    const tl_layer *l = layer_at(info, i);
    return l ? l->name : "";
}

/* Common argument checks of the getters that return a status. */
static tl_status get_layer(const tl_layer **l, const void *out, const tl_checkpoint_info *info, size_t i,
                           const char *fn)
{
    if (out == NULL || info == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, out ? "info" : "out");
    if (i >= info->shell->nlayers)
        return tli_error(TL_ERANGE, "%s: layer %zu is out of range (the file has %zu layers)", fn, i,
                         info->shell->nlayers);
    *l = info->shell->layers[i];
    return TL_OK;
}

tl_status tl_checkpoint_info_layer_output_shape(tl_shape *out, const tl_checkpoint_info *info, size_t i)
{
    const tl_layer *l = NULL;
    tl_status st = get_layer(&l, out, info, i, "tl_checkpoint_info_layer_output_shape");
    if (st == TL_OK)
        *out = l->out_shape;
    return st;
}

int tl_checkpoint_info_layer_trainable(const tl_checkpoint_info *info, size_t i)
{
    const tl_layer *l = layer_at(info, i);
    return l ? l->trainable : 0;
}

float tl_checkpoint_info_layer_lr_scale(const tl_checkpoint_info *info, size_t i)
{
    const tl_layer *l = layer_at(info, i);
    return l ? l->lr_scale : 0.0f;
}

size_t tl_checkpoint_info_layer_num_params(const tl_checkpoint_info *info, size_t i)
{
    const tl_layer *l = layer_at(info, i);
    return l ? l->nparams : 0;
}

tl_status tl_checkpoint_info_layer_param(tl_param_info *out, const tl_checkpoint_info *info, size_t layer,
                                         size_t index)
{
    const char *fn = "tl_checkpoint_info_layer_param";
    const tl_layer *l = NULL;
    tl_status st = get_layer(&l, out, info, layer, fn);
    if (st)
        return st;
    if (index >= l->nparams)
        return tli_error(TL_ERANGE, "%s: layer %zu ('%s') has %zu parameter tensors, not %zu", fn, layer, l->name,
                         l->nparams, index + 1);
    out->name = l->params[index].name;
    out->shape = l->params[index].shape;
    out->count = l->params[index].count;
    return TL_OK;
}

static tl_status layer_of_kind(const tl_layer **l, const void *out, unsigned int version,
                               unsigned int current, const tl_checkpoint_info *info, size_t i, tl_layer_kind kind,
                               const char *fn)
{
    tl_status st = get_layer(l, out, info, i, fn);
    if (st)
        return st;
    if (version == 0 || version > current)
        return tli_error(TL_EVERSION, "%s: options version %u is not supported (this libtl knows 1..%u)", fn, version,
                         current);
    if ((*l)->ops->kind != kind)
        return tli_error(TL_EINVAL, "%s: layer %zu ('%s') is a %s layer, not %s", fn, i, (*l)->name,
                         (*l)->ops->type_name, tl_layer_kind_str(kind));
    return TL_OK;
}

/* The settings of a layer of `kind` into its public options struct (the
 * kind copies them: see get_options in lib/layers/). */
static tl_status layer_options(void *out, unsigned int version, unsigned int current, const tl_checkpoint_info *info,
                               size_t i, tl_layer_kind kind, const char *fn)
{
    const tl_layer *l = NULL;
    tl_status st = layer_of_kind(&l, out, version, current, info, i, kind, fn);
    if (st == TL_OK)
        l->ops->get_options(l, out, version);
    return st;
}

tl_status tl_checkpoint_info_layer_conv2d(tl_conv2d_options *out, const tl_checkpoint_info *info, size_t i)
{
    return layer_options(out, out ? out->version : 0, TL_CONV2D_OPTIONS_VERSION, info, i, TL_LAYER_CONV2D,
                         "tl_checkpoint_info_layer_conv2d");
}

tl_status tl_checkpoint_info_layer_maxpool2d(tl_maxpool2d_options *out, const tl_checkpoint_info *info, size_t i)
{
    return layer_options(out, out ? out->version : 0, TL_MAXPOOL2D_OPTIONS_VERSION, info, i, TL_LAYER_MAXPOOL2D,
                         "tl_checkpoint_info_layer_maxpool2d");
}

tl_status tl_checkpoint_info_layer_dense(tl_dense_options *out, const tl_checkpoint_info *info, size_t i)
{
    return layer_options(out, out ? out->version : 0, TL_DENSE_OPTIONS_VERSION, info, i, TL_LAYER_DENSE,
                         "tl_checkpoint_info_layer_dense");
}

tl_status tl_checkpoint_info_layer_settings(char *buf, size_t cap, size_t *needed, const tl_checkpoint_info *info,
                                            size_t i)
{
    const char *fn = "tl_checkpoint_info_layer_settings";
    const tl_layer *l = NULL;
    if (info == NULL || (buf == NULL && cap > 0))
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, info ? "buf" : "info");
    if (i >= info->shell->nlayers)
        return tli_error(TL_ERANGE, "%s: layer %zu is out of range (the file has %zu layers)", fn, i,
                         info->shell->nlayers);
    l = info->shell->layers[i];
    size_t len = tli_cfg_describe(l, buf, cap, false);
    if (needed)
        *needed = len;
    if (cap == 0 && needed)
        return TL_OK;
    if (len >= cap)
        return tli_error(TL_ETOOBIG, "%s: the settings need %zu bytes plus the NUL, the buffer has %zu", fn, len, cap);
    return TL_OK;
}

/* ---- summary ---------------------------------------------------------------- */

static const char *optimizer_name(tl_optimizer_kind k)
{
    switch (k) {
    case TL_OPT_SGD: return "sgd";
    case TL_OPT_ADAM: return "adam";
    case TL_OPT_ADAMW: return "adamw";
    }
    return "unknown";
}

tl_status tl_checkpoint_info_summary_write(const tl_checkpoint_info *info, tl_write_fn write, void *payload)
{
    if (info == NULL || write == NULL)
        return tli_error(TL_EINVAL, "tl_checkpoint_info_summary_write: %s is NULL", info ? "write" : "info");
    tli_sink s = {write, payload, false};
    char a[64];
    tli_emit(&s, "Checkpoint (format %u.%u): %zu layers, input %s, seed %llu\n", info->model.major, info->model.minor,
             info->shell->nlayers, tli_shape_str(&info->model.input, a, sizeof a),
             (unsigned long long)info->model.seed);
    tli_summary_table(info->shell, &s);
    if (info->has_optim)
        tli_emit(&s, "Optimizer: %s, %llu steps, loss %s\n", optimizer_name(info->optim.kind),
                 (unsigned long long)info->optim.steps, tl_loss_str(info->optim.loss));
    else
        tli_emit(&s, "Optimizer: none saved\n");
    if (info->has_schedule) {
        const tli_schedule *h = &info->schedule;
        tli_emit(&s, "Learning-rate schedule: %s, epoch %u, step %llu, next rate %g\n",
                 tli_schedule_kind_str(h->o.kind), h->epoch, (unsigned long long)(info->optim.steps - h->origin),
                 (double)(float)tli_schedule_rate(h, info->optim.lr, info->optim.steps));
    }
    if (info->has_early) {
        const tli_ckpt_early *e = &info->early;
        tli_emit(&s, "Early stopping (a fit under way): %s, %u epochs, ", tli_schedule_monitor_str(e->monitor),
                 e->epochs);
        if (e->best_epoch)
            tli_emit(&s, "best %g at epoch %u, %u since", e->best, e->best_epoch, e->wait);
        else
            tli_emit(&s, "no best yet");
        tli_emit(&s, "%s\n", e->count ? ", best weights saved" : "");
    }
    tli_summary_end(&s);
    if (s.stopped)
        return tli_error(TL_ECANCELED, "tl_checkpoint_info_summary_write: the write callback asked to stop");
    return TL_OK;
}
