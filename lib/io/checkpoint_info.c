/*
 * checkpoint_info.c - what a checkpoint holds, without building the model:
 * a visitor of the checkpoint parser that keeps the descriptions and skips
 * every tensor, and the getters and summary over them.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "checkpoint.h"

struct tl_checkpoint_info {
    tli_ckpt_model model;
    tli_ckpt_layer *layers;
    size_t nlayers;
    bool has_optim;
    tli_ckpt_optim optim;
};

static tl_status on_model(void *ctx, const tli_ckpt_model *m, const char *where)
{
    tl_checkpoint_info *info = ctx;
    info->model = *m;
    info->layers = tli_calloc(m->num_layers ? m->num_layers : 1, sizeof *info->layers);
    if (info->layers == NULL)
        return tli_error(TL_ENOMEM, "%s: out of memory for %u layer descriptions", where, m->num_layers);
    return TL_OK;
}

static tl_status on_layer(void *ctx, size_t index, const tli_ckpt_layer *l, const char *where)
{
    tl_checkpoint_info *info = ctx;
    (void)where;
    info->layers[index] = *l;
    info->nlayers = index + 1;
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
    tli_ckpt_visitor v = {info, on_model, on_layer, on_optim, NULL};
    tl_status st = tli_ckpt_read(path, &v, fn);
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
    tli_free(info->layers);
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
    return info ? info->nlayers : 0;
}

static size_t layer_params(const tli_ckpt_layer *l)
{
    size_t n = 0;
    for (size_t p = 0; p < l->nparams; p++)
        n += l->params[p].count;
    return n;
}

size_t tl_checkpoint_info_param_count(const tl_checkpoint_info *info)
{
    size_t n = 0;
    if (info)
        for (size_t i = 0; i < info->nlayers; i++)
            n += layer_params(&info->layers[i]);
    return n;
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

static const tli_ckpt_layer *layer_at(const tl_checkpoint_info *info, size_t i)
{
    return info && i < info->nlayers ? &info->layers[i] : NULL;
}

tl_layer_kind tl_checkpoint_info_layer_kind(const tl_checkpoint_info *info, size_t i)
{
    const tli_ckpt_layer *l = layer_at(info, i);
    return l ? l->ops->kind : (tl_layer_kind)0;
}

const char *tl_checkpoint_info_layer_name(const tl_checkpoint_info *info, size_t i)
{
    const tli_ckpt_layer *l = layer_at(info, i);
    return l ? l->name : "";
}

/* Common argument checks of the getters that return a status. */
static tl_status get_layer(const tli_ckpt_layer **l, const void *out, const tl_checkpoint_info *info, size_t i,
                           const char *fn)
{
    if (out == NULL || info == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, out ? "info" : "out");
    if (i >= info->nlayers)
        return tli_error(TL_ERANGE, "%s: layer %zu is out of range (the file has %zu layers)", fn, i, info->nlayers);
    *l = &info->layers[i];
    return TL_OK;
}

tl_status tl_checkpoint_info_layer_output_shape(tl_shape *out, const tl_checkpoint_info *info, size_t i)
{
    const tli_ckpt_layer *l = NULL;
    tl_status st = get_layer(&l, out, info, i, "tl_checkpoint_info_layer_output_shape");
    if (st == TL_OK)
        *out = l->out_shape;
    return st;
}

int tl_checkpoint_info_layer_trainable(const tl_checkpoint_info *info, size_t i)
{
    const tli_ckpt_layer *l = layer_at(info, i);
    return l ? l->trainable : 0;
}

float tl_checkpoint_info_layer_lr_scale(const tl_checkpoint_info *info, size_t i)
{
    const tli_ckpt_layer *l = layer_at(info, i);
    return l ? l->lr_scale : 0.0f;
}

size_t tl_checkpoint_info_layer_num_params(const tl_checkpoint_info *info, size_t i)
{
    const tli_ckpt_layer *l = layer_at(info, i);
    return l ? l->nparams : 0;
}

tl_status tl_checkpoint_info_layer_param(tl_param_info *out, const tl_checkpoint_info *info, size_t layer,
                                         size_t index)
{
    const char *fn = "tl_checkpoint_info_layer_param";
    const tli_ckpt_layer *l = NULL;
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

static tl_status layer_of_kind(const tli_ckpt_layer **l, const void *out, unsigned int version,
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

tl_status tl_checkpoint_info_layer_conv2d(tl_conv2d_options *out, const tl_checkpoint_info *info, size_t i)
{
    const tli_ckpt_layer *l = NULL;
    tl_status st = layer_of_kind(&l, out, out ? out->version : 0, TL_CONV2D_OPTIONS_VERSION, info, i,
                                 TL_LAYER_CONV2D, "tl_checkpoint_info_layer_conv2d");
    if (st)
        return st;
    const tli_conv_cfg *c = &l->cfg.conv;
    out->filters = c->filters;
    out->kernel_h = c->k_h;
    out->kernel_w = c->k_w;
    out->stride_h = c->s_h;
    out->stride_w = c->s_w;
    out->padding = c->padding;
    out->activation = l->act;
    out->use_bias = l->use_bias;
    out->name = l->name;
    return TL_OK;
}

tl_status tl_checkpoint_info_layer_maxpool2d(tl_maxpool2d_options *out, const tl_checkpoint_info *info, size_t i)
{
    const tli_ckpt_layer *l = NULL;
    tl_status st = layer_of_kind(&l, out, out ? out->version : 0, TL_MAXPOOL2D_OPTIONS_VERSION, info, i,
                                 TL_LAYER_MAXPOOL2D, "tl_checkpoint_info_layer_maxpool2d");
    if (st)
        return st;
    const tli_pool_cfg *c = &l->cfg.pool;
    out->pool_h = c->p_h;
    out->pool_w = c->p_w;
    out->stride_h = c->s_h;
    out->stride_w = c->s_w;
    out->padding = c->padding;
    out->name = l->name;
    return TL_OK;
}

tl_status tl_checkpoint_info_layer_dense(tl_dense_options *out, const tl_checkpoint_info *info, size_t i)
{
    const tli_ckpt_layer *l = NULL;
    tl_status st = layer_of_kind(&l, out, out ? out->version : 0, TL_DENSE_OPTIONS_VERSION, info, i,
                                 TL_LAYER_DENSE, "tl_checkpoint_info_layer_dense");
    if (st)
        return st;
    out->units = l->cfg.dense.units;
    out->activation = l->act;
    out->use_bias = l->use_bias;
    out->name = l->name;
    return TL_OK;
}

/* ---- summary ---------------------------------------------------------------- */

/* "1,234,567" */
static const char *grouped(size_t v, char *buf, size_t cap)
{
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%zu", v);
    size_t o = 0;
    for (int i = 0; i < n && o + 2 < cap; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

typedef struct sink {
    tl_write_fn write;
    void *payload;
    bool stopped;
} sink;

static void emit(sink *s, const char *fmt, ...) TLI_PRINTF(2, 3);
static void emit(sink *s, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    if (s->stopped)
        return;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    if (s->write(line, len, s->payload))
        s->stopped = true;
}

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
    static const char rule[] = "________________________________________________________________________________";
    static const char dbl[] = "================================================================================";
    if (info == NULL || write == NULL)
        return tli_error(TL_EINVAL, "tl_checkpoint_info_summary_write: %s is NULL", info ? "write" : "info");
    sink s = {write, payload, false};
    char a[64], b[32], c[96];
    emit(&s, "Checkpoint (format %u.%u): %zu layers, input %s, seed %llu\n", info->model.major, info->model.minor,
         info->nlayers, tli_shape_str(&info->model.input, a, sizeof a), (unsigned long long)info->model.seed);
    emit(&s, "%s\n", rule);
    emit(&s, " %-34s %-22s %11s  %s\n", "Layer (type)", "Output Shape", "Param #", "Trainable");
    emit(&s, "%s\n", dbl);
    size_t total = 0, trainable = 0;
    for (size_t i = 0; i < info->nlayers; i++) {
        const tli_ckpt_layer *l = &info->layers[i];
        snprintf(c, sizeof c, "%s (%s)", l->name, l->ops->type_name);
        char shape[64];
        size_t len = (size_t)snprintf(shape, sizeof shape, "(None");
        for (uint32_t d = 0; d < l->out_shape.rank && len < sizeof shape; d++)
            len += (size_t)snprintf(shape + len, sizeof shape - len, ", %u", l->out_shape.dims[d]);
        if (len < sizeof shape)
            snprintf(shape + len, sizeof shape - len, ")");
        size_t n = layer_params(l);
        total += n;
        trainable += l->trainable ? n : 0;
        emit(&s, " %-34s %-22s %11s  %s\n", c, shape, grouped(n, b, sizeof b),
             l->nparams == 0 ? "-" : l->trainable ? "yes" : "no (frozen)");
        emit(&s, "%s\n", i + 1 < info->nlayers ? "" : dbl);
    }
    if (info->nlayers == 0)
        emit(&s, "%s\n", dbl);
    emit(&s, "Total params: %s\n", grouped(total, b, sizeof b));
    emit(&s, "Trainable params: %s\n", grouped(trainable, b, sizeof b));
    emit(&s, "Non-trainable params: %s\n", grouped(total - trainable, b, sizeof b));
    if (info->has_optim)
        emit(&s, "Optimizer: %s, %llu steps, loss %s\n", optimizer_name(info->optim.kind),
             (unsigned long long)info->optim.steps, tl_loss_str(info->optim.loss));
    else
        emit(&s, "Optimizer: none saved\n");
    emit(&s, "%s\n", rule);
    if (s.stopped)
        return tli_error(TL_ECANCELED, "tl_checkpoint_info_summary_write: the write callback asked to stop");
    return TL_OK;
}
