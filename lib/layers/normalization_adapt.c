/*
 * normalization_adapt.c - a normalization layer's statistics from a dataset
 * (tl_layer_normalization_adapt, Keras' Normalization.adapt()): the
 * dataset's per-channel moments in double (the ones
 * tl_dataset_channel_stats rounds), moved through the layer's scale and
 * offset analytically - mean * scale + offset, sqrt(var) * |scale| - and
 * rounded to float once.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "../data/dataset.h"
#include "../model.h"

/* Below this fraction of its mean's magnitude a channel's deviation is
 * rounding, not data: the channel is constant. */
#define CONSTANT_REL 1e-6

tl_status tl_layer_normalization_adapt(tl_layer *layer, const tl_dataset *ds, uint32_t *out_constant)
{
    const char *fn = "tl_layer_normalization_adapt";
    if (layer == NULL || ds == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, layer ? "dataset" : "layer");
    if (layer->ops->kind != TL_LAYER_NORMALIZATION)
        return tli_error(TL_EINVAL, "%s: layer '%s' (%s, index %zu) is not a normalization layer", fn, layer->name,
                         layer->ops->type_name, layer->index);
    tli_param *mp = &layer->params[0], *sp = &layer->params[1];
    const size_t c = mp->count;
    if (mp->value == NULL || sp->value == NULL)
        return tli_error(TL_EINVAL, "%s: layer '%s' describes a file's layer and holds no values", fn, layer->name);
    if (ds->c != c)
        return tli_error(TL_ESHAPE, "%s: layer '%s' normalizes %zu channels, but the dataset's images are (%u, %u, %u)",
                         fn, layer->name, c, ds->h, ds->w, ds->c);
    double *acc = tli_malloc(2 * c * sizeof(double));
    float *out = tli_malloc(2 * c * sizeof(float));
    if (acc == NULL || out == NULL) {
        tli_free(acc);
        tli_free(out);
        return tli_error(TL_ENOMEM, "%s: out of memory", fn);
    }
    double *mean = acc, *var = acc + c;
    tli_dataset_channel_moments(ds, mean, var);
    /* The layer's settings: its first two fields (normalization.c). */
    float scale, offset;
    const uint32_t sw = tli_field_get(layer->cfg, &layer->ops->fields[0]),
                   ow = tli_field_get(layer->cfg, &layer->ops->fields[1]);
    memcpy(&scale, &sw, sizeof scale);
    memcpy(&offset, &ow, sizeof offset);
    uint32_t constant = 0;
    tl_status st = TL_OK;
    for (size_t k = 0; k < c && st == TL_OK; k++) {
        const double m = mean[k] * scale + offset, sd = sqrt(var[k]) * fabs((double)scale);
        if (!isfinite(m) || !isfinite(sd) || fabs(m) > FLT_MAX || sd > FLT_MAX) {
            st = tli_error(TL_ERANGE, "%s: layer '%s': channel %zu of the dataset has mean %g and standard deviation "
                           "%g after scale %g and offset %g (values that are not finite, or too large for a float)",
                           fn, layer->name, k, m, sd, (double)scale, (double)offset);
            break;
        }
        out[k] = (float)m;
        out[c + k] = (float)sd;
        if (sd == 0.0 || sd <= CONSTANT_REL * fabs(m) || !(out[c + k] >= FLT_MIN)) {
            out[c + k] = 1.0f;
            constant++;
        }
    }
    if (st == TL_OK) {
        memcpy(mp->value, out, c * sizeof(float));
        memcpy(sp->value, out + c, c * sizeof(float));
        tli_layer_touch(layer);
        if (out_constant)
            *out_constant = constant;
    }
    tli_free(acc);
    tli_free(out);
    return st;
}
