/*
 * safetensors_load.c - tl_model_load_safetensors(): pair each tensor of a
 * checked file with a parameter of the model by name, check dtype and the
 * shape the chosen layout gives, report every tensor and every missing
 * parameter, then read, convert and reorder the values into staging buffers
 * and copy them into the model only when everything succeeded: on any
 * error the model is unchanged. In the PyTorch layout a batchnorm's
 * "num_batches_tracked" is checked (an I64 scalar) and passed over
 * (TL_TRANSFER_NO_PARAMS): libtl's batchnorm has a fixed momentum and no
 * counter.
 */
#include <stdio.h>
#include <string.h>

#include "../transfer/transfer.h"
#include "bytes.h"
#include "safetensors.h"

typedef struct plan {
    tl_layer *layer; /* destination, or NULL */
    size_t param;
    tl_transfer_outcome outcome;
    char reason[512]; /* cut to the report's width when copied there */
    tli_layout L;
} plan;

static const char *file_shape_str(const tli_st_tensor *t, char *buf, size_t cap)
{
    size_t len = (size_t)snprintf(buf, cap, "(");
    for (uint32_t i = 0; i < t->rank && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, i ? ", %llu" : "%llu", (unsigned long long)t->dims[i]);
    if (len < cap)
        snprintf(buf + len, cap - len, t->rank == 1 ? ",)" : ")");
    return buf;
}

static bool same_shape(const tli_st_tensor *t, const tl_shape *s)
{
    if (t->rank != s->rank)
        return false;
    for (uint32_t i = 0; i < t->rank; i++)
        if (t->dims[i] != s->dims[i])
            return false;
    return true;
}

/* Keras' DepthwiseConv2D stores its kernel as (kh, kw, in, multiplier);
 * libtl's depthwise conv2d kernel is (kh, kw, 1, in * multiplier) with
 * output channel ci * multiplier + j, the same values in the same order.
 * In the Keras layout either shape loads. False when `p` is no depthwise
 * kernel (or one input channel, where the two shapes are one). */
static bool keras_depthwise_shape(const tl_layer *l, size_t p, tl_tensor_layout layout, tl_shape *out)
{
    const tl_shape *s = &l->params[p].shape;
    if (layout != TL_LAYOUT_KERAS || l->params[p].torch_layout != TLI_TORCH_CONV_KERNEL || s->rank != 4 ||
        s->dims[2] != 1 || l->in_shape.rank != 3)
        return false;
    const uint32_t in = l->in_shape.dims[2];
    if (in < 2 || s->dims[3] % in != 0)
        return false;
    *out = (tl_shape){4, {s->dims[0], s->dims[1], in, s->dims[3] / in}};
    return true;
}

static const char *layout_name(tl_tensor_layout layout)
{
    return layout == TL_LAYOUT_PYTORCH ? "PyTorch" : "Keras";
}

/* PyTorch's "<bn>.num_batches_tracked" for layer l (true), or another
 * tensor (false). The PyTorch layout accepts an I64 of shape () or (1,)
 * for a batchnorm and passes it over; any other dtype or shape is
 * refused, and the Keras layout and the other kinds do not know it. */
static bool plan_counter(plan *pl, const tli_st_tensor *t, tl_layer *l, tl_tensor_layout layout)
{
    char a[96];
    if (l == NULL)
        return false;
    pl->layer = NULL;
    if (!l->ops->torch_batch_counter) {
        pl->outcome = TL_TRANSFER_NO_DESTINATION;
        snprintf(pl->reason, sizeof pl->reason, "unexpected: layer '%s' is a %s; only a batchnorm has "
                 TLI_ST_COUNTER, l->name, l->ops->type_name);
        return true;
    }
    if (layout != TL_LAYOUT_PYTORCH) {
        pl->outcome = TL_TRANSFER_NO_DESTINATION;
        snprintf(pl->reason, sizeof pl->reason, "unexpected: PyTorch's batch counter; the Keras layout has none "
                 "(load a PyTorch state dict with TL_LAYOUT_PYTORCH)");
        return true;
    }
    pl->layer = l;
    pl->param = l->nparams; /* the counter's own slot in `claimed` (a batchnorm has at most 4 tensors) */
    if (strcmp(t->dtype, "I64") != 0 || !(t->rank == 0 || (t->rank == 1 && t->dims[0] == 1))) {
        pl->outcome = TL_TRANSFER_SHAPE_DIFFERS;
        snprintf(pl->reason, sizeof pl->reason, "%s %s: batchnorm '%s' " TLI_ST_COUNTER " must be I64 of shape () "
                 "or (1,)", t->dtype, file_shape_str(t, a, sizeof a), l->name);
        return true;
    }
    pl->outcome = TL_TRANSFER_NO_PARAMS;
    snprintf(pl->reason, sizeof pl->reason, "I64 %s: PyTorch's batch counter, checked and not loaded (libtl's "
             "batchnorm has a fixed momentum)", t->rank ? "(1,)" : "()");
    return true;
}

/* Decide what to do with tensor t. */
static void plan_tensor(plan *pl, const tli_st_tensor *t, const tl_model *m, const tl_safetensors_options *o,
                        tl_tensor_layout layout)
{
    const char *target = tli_st_to_libtl(o, t->name);
    char a[96], b[96];
    if (!tli_st_resolve(m, target, &pl->layer, &pl->param)) {
        if (plan_counter(pl, t, tli_st_resolve_counter(m, target), layout))
            return;
        pl->layer = NULL;
        pl->outcome = TL_TRANSFER_NO_DESTINATION;
        if (target != t->name)
            snprintf(pl->reason, sizeof pl->reason, "renamed to '%.80s', which names no parameter of the model",
                     target);
        else
            snprintf(pl->reason, sizeof pl->reason, "unexpected: no parameter of the model is called so");
        return;
    }
    tl_layer *l = pl->layer;
    tli_layout_for(&pl->L, l, pl->param, layout, o->permute_flatten != 0);
    if (t->kind == TLI_ST_OTHER) {
        pl->outcome = TL_TRANSFER_SHAPE_DIFFERS;
        snprintf(pl->reason, sizeof pl->reason, "dtype %.20s cannot be loaded (F32, F16 or BF16)", t->dtype);
        return;
    }
    tl_shape depthwise;
    if (!same_shape(t, &pl->L.file_shape) &&
        !(keras_depthwise_shape(l, pl->param, layout, &depthwise) && same_shape(t, &depthwise))) {
        pl->outcome = TL_TRANSFER_SHAPE_DIFFERS;
        /* Say so when the tensor is in the other layout: the usual mistake. */
        tli_layout other;
        tli_layout_for(&other, l, pl->param, layout == TL_LAYOUT_KERAS ? TL_LAYOUT_PYTORCH : TL_LAYOUT_KERAS, false);
        bool is_other = !tli_shape_eq(&other.file_shape, &pl->L.file_shape) && same_shape(t, &other.file_shape);
        snprintf(pl->reason, sizeof pl->reason, "%s %s fits neither: the %s layout needs %s for %s '%s' %s%s",
                 t->dtype, file_shape_str(t, a, sizeof a), layout_name(layout),
                 tli_shape_str(&pl->L.file_shape, b, sizeof b), l->ops->type_name, l->name, l->params[pl->param].name,
                 is_other ? " (the tensor is in the other layout)" : "");
        return;
    }
    pl->outcome = TL_TRANSFER_COPIED;
    snprintf(pl->reason, sizeof pl->reason, "%s %s -> %s %s", t->dtype, file_shape_str(t, a, sizeof a),
             l->params[pl->param].name, tli_shape_str(&l->params[pl->param].shape, b, sizeof b));
}

/* Read tensor t and turn it into libtl's order in `dst` (count floats);
 * raw and tmp are scratch of the tensor's byte and float sizes. */
static tl_status fetch(tli_st_file *f, const tli_st_tensor *t, const tli_layout *L, uint8_t *raw, float *tmp,
                       float *dst)
{
    const size_t bytes = (size_t)(t->end - t->begin), n = (size_t)t->count;
    tl_status st = tli_rfile_read(&f->file, raw, bytes, f->data_start + t->begin);
    if (st)
        return st;
    for (size_t i = 0; i < n; i++) {
        if (t->kind == TLI_ST_F32)
            tmp[i] = tli_bits_f32(tli_le32(raw + 4 * i));
        else if (t->kind == TLI_ST_F16)
            tmp[i] = tli_f16_to_f32(tli_le16(raw + 2 * i));
        else
            tmp[i] = tli_bf16_to_f32(tli_le16(raw + 2 * i));
    }
    tli_layout_apply(L, tmp, dst, true);
    return TL_OK;
}

/* Read every planned tensor into staging, then copy into the model. */
static tl_status copy_all(tli_st_file *f, const plan *plans, const char *fn, const char *path)
{
    size_t max_bytes = 1, max_count = 1;
    for (size_t i = 0; i < f->count; i++)
        if (plans[i].outcome == TL_TRANSFER_COPIED) {
            size_t b = (size_t)(f->tensors[i].end - f->tensors[i].begin), n = (size_t)f->tensors[i].count;
            max_bytes = b > max_bytes ? b : max_bytes;
            max_count = n > max_count ? n : max_count;
        }
    float **stage = tli_calloc(f->count ? f->count : 1, sizeof *stage);
    uint8_t *raw = tli_malloc(max_bytes);
    float *tmp = tli_malloc(max_count * sizeof *tmp);
    tl_status st = TL_OK;
    if (stage == NULL || raw == NULL || tmp == NULL)
        st = tli_error(TL_ENOMEM, "%s: %s: out of memory", fn, path);
    for (size_t i = 0; st == TL_OK && i < f->count; i++) {
        if (plans[i].outcome != TL_TRANSFER_COPIED)
            continue;
        stage[i] = tli_malloc((size_t)f->tensors[i].count * sizeof(float));
        if (stage[i] == NULL)
            st = tli_error(TL_ENOMEM, "%s: %s: out of memory for tensor '%.200s'", fn, path, f->tensors[i].name);
        else
            st = fetch(f, &f->tensors[i], &plans[i].L, raw, tmp, stage[i]);
    }
    for (size_t i = 0; st == TL_OK && i < f->count; i++)
        if (plans[i].outcome == TL_TRANSFER_COPIED) {
            tli_param *p = &plans[i].layer->params[plans[i].param];
            memcpy(p->value, stage[i], p->count * sizeof(float));
            tli_layer_touch(plans[i].layer);
        }
    for (size_t i = 0; stage && i < f->count; i++)
        tli_free(stage[i]);
    tli_free(stage);
    tli_free(raw);
    tli_free(tmp);
    return st;
}

tl_status tl_model_load_safetensors(tl_transfer_report **out_report, tl_model *m, const char *path,
                                    tl_tensor_layout layout, const tl_safetensors_options *opts)
{
    const char *fn = "tl_model_load_safetensors";
    if (out_report)
        *out_report = NULL;
    if (m == NULL || path == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, m ? "path" : "model");
    tl_safetensors_options o;
    tl_status st = tli_st_options(&o, opts, layout, fn);
    if (st)
        return st;
    tli_st_file f;
    if ((st = tli_st_open(&f, path, fn)))
        return st;
    plan *plans = tli_calloc(f.count ? f.count : 1, sizeof *plans);
    size_t *claimed = tli_malloc((m->nlayers ? m->nlayers : 1) * TLI_MAX_TENSORS * sizeof *claimed);
    tl_transfer_report *r = NULL;
    if (plans == NULL || claimed == NULL) {
        st = tli_error(TL_ENOMEM, "%s: %s: out of memory", fn, path);
        goto done;
    }
    if ((st = tli_report_new(&r, f.count + m->nlayers * TLI_MAX_TENSORS))) {
        tli_error_prefix("%s: %s", fn, path);
        goto done;
    }
    for (size_t i = 0; i < m->nlayers * TLI_MAX_TENSORS; i++)
        claimed[i] = SIZE_MAX;

    tl_status blocking = TL_OK;
    char first[640] = "";
    size_t problems = 0;
    for (size_t i = 0; i < f.count; i++) {
        const tli_st_tensor *t = &f.tensors[i];
        plan *pl = &plans[i];
        plan_tensor(pl, t, m, &o, layout);
        if (pl->layer) {
            size_t *c = &claimed[pl->layer->index * TLI_MAX_TENSORS + pl->param];
            if (*c != SIZE_MAX) {
                st = tli_error(TL_EINVAL, "%s: %s: byte %zu: tensors '%.200s' and '%.200s' both name parameter %s of "
                               "layer '%s'", fn, path, t->offset, f.tensors[*c].name, t->name,
                               pl->param < pl->layer->nparams ? pl->layer->params[pl->param].name : TLI_ST_COUNTER,
                               pl->layer->name);
                goto done;
            }
            *c = i;
        }
        tli_report_entry *e = tli_report_add(r, pl->outcome, NULL, pl->layer);
        snprintf(e->src, sizeof e->src, "%s", t->name);
        e->src_index = i;
        e->params = pl->outcome == TL_TRANSFER_COPIED ? (size_t)t->count : 0;
        snprintf(e->reason, sizeof e->reason, "%s", pl->reason);
        if (pl->outcome != TL_TRANSFER_COPIED && pl->outcome != TL_TRANSFER_NO_PARAMS) {
            problems++;
            if (blocking == TL_OK) {
                blocking = pl->outcome == TL_TRANSFER_SHAPE_DIFFERS ? TL_ESHAPE : TL_ENOTFOUND;
                snprintf(first, sizeof first, "tensor '%.200s' (byte %zu): %s", t->name, t->offset, pl->reason);
            }
        }
    }
    /* Parameters no tensor fills: PyTorch's "missing keys". */
    for (size_t li = 0; li < m->nlayers; li++) {
        const tl_layer *l = m->layers[li];
        for (size_t p = 0; p < l->nparams; p++) {
            if (claimed[li * TLI_MAX_TENSORS + p] != SIZE_MAX)
                continue;
            char want[TL_MAX_NAME + 16];
            const char *name = tli_st_to_file(&o, l, p, layout, want, sizeof want);
            tli_report_entry *e = tli_report_add(r, TL_TRANSFER_NOT_IN_SOURCE, NULL, l);
            snprintf(e->reason, sizeof e->reason, "missing: no tensor '%.120s' for %s; it keeps its values", name,
                     l->params[p].name);
            problems++;
            if (blocking == TL_OK) {
                blocking = TL_ENOTFOUND;
                snprintf(first, sizeof first, "layer '%s' %s: %s", l->name, l->params[p].name, e->reason);
            }
        }
    }
    if (blocking != TL_OK && o.policy == TL_TRANSFER_STRICT) {
        st = tli_error(blocking, "%s (strict): %s: %s%s; the model was not changed", fn, path, first,
                       problems > 1 ? " (and more: see the report)" : "");
        goto done;
    }
    st = copy_all(&f, plans, fn, path);
done:
    tli_free(plans);
    tli_free(claimed);
    tli_st_close(&f);
    if (r && (st == TL_OK || st == TL_ESHAPE || st == TL_ENOTFOUND) && out_report)
        *out_report = r;
    else
        tl_transfer_report_free(r);
    return st;
}
