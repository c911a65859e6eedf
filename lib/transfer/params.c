/*
 * params.c - parameter transfer: theta_new = theta_old, layer by layer,
 * for the selected layers that match; fine-tuning then adds alpha*dtheta.
 * Everything is decided and reported first, and copied only when the whole
 * transfer is allowed, so a strict failure leaves the destination untouched.
 */
#include <stdio.h>
#include <string.h>

#include "../options.h"
#include "transfer.h"

TLI_OPTIONS_TYPE_V1(transfer_type, tl_transfer_options, TL_TRANSFER_OPTIONS);

tl_status tl_transfer_options_init(tl_transfer_options *opts, unsigned int version)
{
    const tl_transfer_options d = TL_TRANSFER_OPTIONS_INIT;
    return tli_options_init(opts, version, &d, &transfer_type, "tl_transfer_options_init");
}

bool tli_layers_differ(const tl_layer *a, const tl_layer *b, tl_transfer_outcome *outcome, char *why, size_t cap)
{
    char sa[64], sb[64];
    if (a->ops != b->ops) {
        *outcome = TL_TRANSFER_KIND_DIFFERS;
        snprintf(why, cap, "kind %s vs %s", a->ops->type_name, b->ops->type_name);
        return true;
    }
    if (a->nparams != b->nparams) {
        *outcome = TL_TRANSFER_SHAPE_DIFFERS;
        snprintf(why, cap, "%s bias vs %s bias", a->use_bias ? "with" : "without", b->use_bias ? "with" : "without");
        return true;
    }
    for (size_t p = 0; p < a->nparams; p++) {
        if (!tli_shape_eq(&a->params[p].shape, &b->params[p].shape)) {
            *outcome = TL_TRANSFER_SHAPE_DIFFERS;
            snprintf(why, cap, "%s %s vs %s", a->params[p].name, tli_shape_str(&a->params[p].shape, sa, sizeof sa),
                     tli_shape_str(&b->params[p].shape, sb, sizeof sb));
            return true;
        }
    }
    return false;
}

/* Mark the selected source layers; errors for bad options. */
static tl_status select_layers(bool *sel, const tl_model *src, const tl_transfer_options *o, const char *fn)
{
    const size_t n = src->nlayers;
    if (o->layers) {
        for (size_t i = 0; i < o->num_layers; i++) {
            size_t idx = o->layers[i];
            if (idx >= n)
                return tli_error(TL_ERANGE, "%s: selected layer index %zu is past the source's last layer (%zu layers)",
                                 fn, idx, n);
            if (sel[idx])
                return tli_error(TL_ERANGE, "%s: layer index %zu is selected twice", fn, idx);
            sel[idx] = true;
        }
        return TL_OK;
    }
    if (o->first > n || (o->first == n && n > 0) || (o->count && o->count > n - o->first))
        return tli_error(TL_ERANGE, "%s: selected layers [%zu, %zu) pass the source's last layer (%zu layers)", fn,
                         o->first, o->first + (o->count ? o->count : 1), n);
    size_t end = o->count ? o->first + o->count : n;
    for (size_t i = o->first; i < end; i++)
        sel[i] = true;
    return TL_OK;
}

static const tl_layer *find_dst(const tl_model *dst, const tl_layer *s, tl_transfer_match match)
{
    if (match == TL_MATCH_POSITION)
        return s->index < dst->nlayers ? dst->layers[s->index] : NULL;
    for (size_t j = 0; j < dst->nlayers; j++)
        if (strcmp(dst->layers[j]->name, s->name) == 0)
            return dst->layers[j];
    return NULL;
}

/* Was destination layer d matched by some source layer? */
static bool dst_matched(const tl_model *src, const tl_layer *d, tl_transfer_match match)
{
    if (match == TL_MATCH_POSITION)
        return d->index < src->nlayers;
    for (size_t i = 0; i < src->nlayers; i++)
        if (strcmp(src->layers[i]->name, d->name) == 0)
            return true;
    return false;
}

tl_status tl_model_transfer_params(tl_transfer_report **out_report, tl_model *dst, const tl_model *src,
                                   const tl_transfer_options *opts)
{
    return tli_transfer_params(out_report, dst, src, opts, "tl_model_transfer_params");
}

tl_status tli_transfer_params(tl_transfer_report **out_report, tl_model *dst, const tl_model *src,
                              const tl_transfer_options *opts, const char *fn)
{
    if (out_report)
        *out_report = NULL;
    if (dst == NULL || src == NULL)
        return tli_error(TL_EINVAL, "%s: %s model is NULL", fn, dst ? "source" : "destination");
    if (dst == src)
        return tli_error(TL_EINVAL, "%s: source and destination are the same model", fn);
    tl_transfer_options o = TL_TRANSFER_OPTIONS_INIT;
    tl_status read = tli_options_read(&o, opts, &transfer_type, fn);
    if (read)
        return read;
    if (o.match != TL_MATCH_POSITION && o.match != TL_MATCH_NAME)
        return tli_error(TL_EINVAL, "%s: unknown match mode %d", fn, (int)o.match);
    if (o.policy != TL_TRANSFER_STRICT && o.policy != TL_TRANSFER_LENIENT)
        return tli_error(TL_EINVAL, "%s: unknown policy %d", fn, (int)o.policy);

    bool *sel = tli_calloc(src->nlayers ? src->nlayers : 1, sizeof *sel);
    tl_transfer_report *r = NULL;
    tl_status st;
    if (sel == NULL) {
        st = tli_error(TL_ENOMEM, "%s: out of memory", fn);
        goto done;
    }
    if ((st = select_layers(sel, src, &o, fn)) || (st = tli_report_new(&r, src->nlayers + dst->nlayers)))
        goto done;

    /* Decide every layer first. The first blocking problem under the strict
     * policy becomes the error; the report still lists them all. */
    tl_status blocking = TL_OK;
    char first_problem[768] = "";
    for (size_t i = 0; i < src->nlayers; i++) {
        const tl_layer *s = src->layers[i];
        const tl_layer *d = find_dst(dst, s, o.match);
        tli_report_entry *e;
        if (s->nparams == 0) {
            e = tli_report_add(r, TL_TRANSFER_NO_PARAMS, s, d);
            snprintf(e->reason, sizeof e->reason, "%s has no parameters", s->ops->type_name);
            continue;
        }
        if (!sel[i]) {
            e = tli_report_add(r, TL_TRANSFER_NOT_SELECTED, s, d);
            snprintf(e->reason, sizeof e->reason, "outside the selection");
            continue;
        }
        if (d == NULL) {
            e = tli_report_add(r, TL_TRANSFER_NO_DESTINATION, s, NULL);
            if (o.match == TL_MATCH_POSITION)
                snprintf(e->reason, sizeof e->reason, "the destination has only %zu layers", dst->nlayers);
            else
                snprintf(e->reason, sizeof e->reason, "the destination has no layer named '%s'", s->name);
            if (blocking == TL_OK) {
                blocking = TL_ENOTFOUND;
                snprintf(first_problem, sizeof first_problem, "source layer '%s' (index %zu): %s", s->name, s->index,
                         e->reason);
            }
            continue;
        }
        tl_transfer_outcome why;
        char reason[192];
        if (tli_layers_differ(s, d, &why, reason, sizeof reason)) {
            e = tli_report_add(r, why, s, d);
            snprintf(e->reason, sizeof e->reason, "%s", reason);
            if (blocking == TL_OK) {
                blocking = TL_ESHAPE;
                snprintf(first_problem, sizeof first_problem,
                         "source layer '%s' (%s, index %zu) does not fit destination layer '%s' (%s, index %zu): %s",
                         s->name, s->ops->type_name, s->index, d->name, d->ops->type_name, d->index, reason);
            }
            continue;
        }
        e = tli_report_add(r, TL_TRANSFER_COPIED, s, d);
        e->params = tl_layer_param_count(s);
        snprintf(e->reason, sizeof e->reason, "%zu parameters", e->params);
    }
    for (size_t j = 0; j < dst->nlayers; j++) {
        const tl_layer *d = dst->layers[j];
        if (d->nparams == 0 || dst_matched(src, d, o.match))
            continue;
        tli_report_entry *e = tli_report_add(r, TL_TRANSFER_NOT_IN_SOURCE, NULL, d);
        snprintf(e->reason, sizeof e->reason, "no source layer %s; it keeps its weights",
                 o.match == TL_MATCH_POSITION ? "at this position" : "of this name");
    }
    if (blocking != TL_OK && o.policy == TL_TRANSFER_STRICT) {
        size_t problems = r->count - tl_transfer_report_count_outcome(r, TL_TRANSFER_COPIED) -
                          tl_transfer_report_count_outcome(r, TL_TRANSFER_NOT_SELECTED) -
                          tl_transfer_report_count_outcome(r, TL_TRANSFER_NO_PARAMS) -
                          tl_transfer_report_count_outcome(r, TL_TRANSFER_NOT_IN_SOURCE);
        st = tli_error(blocking, "%s (strict): %s%s; the destination was not changed", fn, first_problem,
                       problems > 1 ? " (and more: see the report)" : "");
        goto done;
    }
    for (size_t k = 0; k < r->count; k++) {
        const tli_report_entry *e = &r->entries[k];
        if (e->outcome != TL_TRANSFER_COPIED)
            continue;
        const tl_layer *s = src->layers[e->src_index];
        tl_layer *d = dst->layers[e->dst_index];
        for (size_t p = 0; p < s->nparams; p++)
            memcpy(d->params[p].value, s->params[p].value, s->params[p].count * sizeof(float));
        tli_layer_touch(d);
    }
    st = TL_OK;
done:
    tli_free(sel);
    if (r && (st == TL_OK || st == TL_ESHAPE || st == TL_ENOTFOUND) && out_report)
        *out_report = r;
    else
        tl_transfer_report_free(r);
    return st;
}
