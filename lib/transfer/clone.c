/*
 * clone.c - new models from old ones: full copies, structure clones with
 * fresh weights, feature extractors, heads, and joined base + head. All of
 * them rebuild layers from their settings through tli_model_append, so
 * shape checks and naming rules are the ones of the add functions.
 */
#include <string.h>

#include "../options.h"
#include "transfer.h"

tl_status tli_model_append_like(tl_model *dst, const tl_layer *src, const uint32_t *inputs, const char *name,
                                bool weights, const char *fn)
{
    tl_layer *l;
    tl_status st = tli_model_append(&l, dst, src->ops, src->cfg, src->act, src->use_bias, inputs, src->ninputs,
                                    name, fn);
    if (st)
        return st;
    /* Without weights (a structure clone) the preset tensors - a
     * normalization's statistics, the data's and not learned - still come
     * along. */
    for (size_t p = 0; p < l->nparams; p++)
        if (weights || src->params[p].preset)
            memcpy(l->params[p].value, src->params[p].value, l->params[p].count * sizeof(float));
    l->trainable = src->trainable;
    tli_layer_touch(l);
    l->lr_scale = src->lr_scale;
    return TL_OK;
}

static tl_status new_like(tl_model **out, const tl_model *src, const tl_shape *input, uint64_t seed, const char *fn)
{
    tl_status st = tl_model_create(out, input->dims[0], input->dims[1], input->dims[2], seed);
    if (st) {
        tli_error_prefix("%s", fn);
        return st;
    }
    (*out)->threads_req = src->threads_req;
    (*out)->threads = src->threads;
    return TL_OK;
}

/* Copy src's layers [0, end) that `keep` marks (NULL: all) into dst, each
 * taking the copies of its inputs; src's model input becomes `model_in`
 * (an index of dst, or TLI_INPUT_MODEL). `rename_clashes`: a name dst
 * already has gets an automatic one. */
static tl_status copy_layers(tl_model *dst, const tl_model *src, size_t end, const bool *keep, uint32_t model_in,
                             bool weights, bool rename_clashes, const char *fn)
{
    uint32_t *map = tli_malloc((src->nlayers ? src->nlayers : 1) * sizeof *map);
    if (map == NULL)
        return tli_error(TL_ENOMEM, "%s: out of memory", fn);
    tl_status st = TL_OK;
    for (size_t i = 0; st == TL_OK && i < end; i++) {
        const tl_layer *l = src->layers[i];
        if (keep && !keep[i])
            continue;
        uint32_t in[TLI_MAX_INPUTS];
        for (size_t k = 0; k < l->ninputs; k++)
            in[k] = l->inputs[k] == TLI_INPUT_MODEL ? model_in : map[l->inputs[k]];
        const char *name = l->name;
        tl_layer *clash;
        if (rename_clashes && tl_model_layer_by_name(&clash, dst, name) == TL_OK)
            name = NULL; /* a fresh automatic one, as the add functions give */
        st = tli_model_append_like(dst, l, in, name, weights, fn);
        map[i] = (uint32_t)(dst->nlayers - 1);
    }
    tli_free(map);
    return st;
}

/* keep[i]: layer i is `last` or one of the layers its output depends on. */
static bool *ancestors(const tl_model *m, size_t last, const char *fn)
{
    bool *keep = tli_calloc(m->nlayers, sizeof *keep);
    if (keep == NULL) {
        tli_error(TL_ENOMEM, "%s: out of memory", fn);
        return NULL;
    }
    keep[last] = true;
    for (size_t i = last + 1; i-- > 0;) {
        if (!keep[i])
            continue;
        const tl_layer *l = m->layers[i];
        for (size_t k = 0; k < l->ninputs; k++)
            if (l->inputs[k] != TLI_INPUT_MODEL)
                keep[l->inputs[k]] = true;
    }
    return keep;
}

tl_status tl_model_copy(tl_model **out, const tl_model *src)
{
    const char *fn = "tl_model_copy";
    if (out == NULL || src == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, out ? "source model" : "out");
    *out = NULL;
    tl_model *m;
    tl_status st = new_like(&m, src, &src->input, src->seed, fn);
    if (st)
        return st;
    if ((st = copy_layers(m, src, src->nlayers, NULL, TLI_INPUT_MODEL, true, false, fn))) {
        tl_model_free(m);
        return st;
    }
    m->train_rng = src->train_rng;
    *out = m;
    return TL_OK;
}

TLI_OPTIONS_TYPE_V1(clone_type, tl_clone_options, TL_CLONE_OPTIONS);

tl_status tl_clone_options_init(tl_clone_options *opts, unsigned int version)
{
    const tl_clone_options d = TL_CLONE_OPTIONS_INIT;
    return tli_options_init(opts, version, &d, &clone_type, "tl_clone_options_init");
}

tl_status tl_model_clone_structure(tl_model **out, const tl_model *src, const tl_clone_options *opts)
{
    const char *fn = "tl_model_clone_structure";
    if (out == NULL || src == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, out ? "source model" : "out");
    *out = NULL;
    tl_clone_options o = TL_CLONE_OPTIONS_INIT;
    tl_status read = tli_options_read(&o, opts, &clone_type, fn);
    if (read)
        return read;
    if (o.drop_last > src->nlayers)
        return tli_error(TL_ERANGE, "%s: cannot drop %zu layers from a model with %zu", fn, o.drop_last,
                         src->nlayers);
    size_t keep = src->nlayers - o.drop_last;
    const tl_layer *last = keep ? src->layers[keep - 1] : NULL;
    if (o.head_units && (last == NULL || last->ops->set_units == NULL))
        return tli_error(TL_ESTATE, "%s: head_units %u needs a dense last layer, but the last kept layer is %s", fn,
                         o.head_units, last ? last->ops->type_name : "none (no layers left)");
    tl_model *m;
    tl_status st = new_like(&m, src, &src->input, o.seed, fn);
    if (st)
        return st;
    size_t plain = o.head_units ? keep - 1 : keep;
    st = copy_layers(m, src, plain, NULL, TLI_INPUT_MODEL, false, false, fn);
    if (st == TL_OK && o.head_units) {
        /* The head: the same layer with another output width. */
        _Alignas(8) unsigned char cfg[TLI_CFG_BYTES];
        memcpy(cfg, last->cfg, sizeof cfg);
        last->ops->set_units(cfg, o.head_units);
        tl_layer *l;
        st = tli_model_append(&l, m, last->ops, cfg, last->act, last->use_bias, last->inputs, last->ninputs,
                              last->name, fn);
        if (st == TL_OK) {
            l->trainable = last->trainable;
            l->lr_scale = last->lr_scale;
        }
    }
    if (st == TL_OK)
        st = tli_model_check_graph(m, fn);
    if (st) {
        tl_model_free(m);
        return st;
    }
    *out = m;
    return TL_OK;
}

/* The extractor ending at layer `last`: it and what it depends on. */
static tl_status extractor(tl_model **out, const tl_model *src, size_t last, const char *fn)
{
    bool *keep = ancestors(src, last, fn);
    if (keep == NULL)
        return TL_ENOMEM;
    tl_model *m;
    tl_status st = new_like(&m, src, &src->input, src->seed, fn);
    if (st == TL_OK && (st = copy_layers(m, src, last + 1, keep, TLI_INPUT_MODEL, true, false, fn)))
        tl_model_free(m);
    tli_free(keep);
    if (st)
        return st;
    for (size_t i = 0; i < m->nlayers; i++)
        m->layers[i]->trainable = 0;
    *out = m;
    return TL_OK;
}

tl_status tl_model_extractor_create(tl_model **out, const tl_model *src, size_t k)
{
    const char *fn = "tl_model_extractor_create";
    if (out == NULL || src == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, out ? "source model" : "out");
    *out = NULL;
    if (k == 0 || k > src->nlayers)
        return tli_error(TL_ERANGE, "%s: k = %zu must be in [1, %zu] (the source's layers)", fn, k, src->nlayers);
    return extractor(out, src, k - 1, fn);
}

tl_status tl_model_extractor_create_at(tl_model **out, const tl_model *src, const char *layer)
{
    const char *fn = "tl_model_extractor_create_at";
    if (out == NULL || src == NULL || layer == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, out == NULL ? "out" : src ? "layer" : "source model");
    *out = NULL;
    tl_layer *l;
    if (tl_model_layer_by_name(&l, src, layer) != TL_OK)
        return tli_error(TL_ENOTFOUND, "%s: the model has no layer named '%s'", fn, layer);
    return extractor(out, src, l->index, fn);
}

/* The input shape of a model that takes `base`'s output. */
static tl_shape head_input(const tl_model *base)
{
    const tl_shape *o = &base->layers[base->nlayers - 1]->out_shape;
    return o->rank == 3 ? *o : tli_shape3(1, 1, o->dims[0]);
}

tl_status tl_model_head_create(tl_model **out, const tl_model *base, uint64_t seed)
{
    const char *fn = "tl_model_head_create";
    if (out == NULL || base == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, out ? "base model" : "out");
    *out = NULL;
    if (base->nlayers == 0)
        return tli_error(TL_ESTATE, "%s: the base model has no layers", fn);
    tl_shape in = head_input(base);
    return new_like(out, base, &in, seed, fn);
}

tl_status tl_model_join(tl_model **out, const tl_model *base, const tl_model *head)
{
    const char *fn = "tl_model_join";
    if (out == NULL || base == NULL || head == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, out == NULL ? "out" : base ? "head" : "base");
    *out = NULL;
    if (base->nlayers == 0)
        return tli_error(TL_ESTATE, "%s: the base model has no layers", fn);
    tl_shape want = head_input(base);
    if (!tli_shape_eq(&want, &head->input)) {
        char a[64], b[64];
        return tli_error(TL_ESHAPE, "%s: the head takes %s but the base outputs %s", fn,
                         tli_shape_str(&head->input, a, sizeof a),
                         tli_shape_str(&base->layers[base->nlayers - 1]->out_shape, b, sizeof b));
    }
    tl_model *m;
    tl_status st = new_like(&m, base, &base->input, base->seed, fn);
    if (st)
        return st;
    st = copy_layers(m, base, base->nlayers, NULL, TLI_INPUT_MODEL, true, false, fn);
    /* The head's input is the base's output. */
    if (st == TL_OK)
        st = copy_layers(m, head, head->nlayers, NULL, (uint32_t)(base->nlayers - 1), true, true, fn);
    if (st) {
        tl_model_free(m);
        return st;
    }
    *out = m;
    return TL_OK;
}

tl_status tl_model_set_trainable(tl_model *m, size_t first, size_t count, int trainable)
{
    const char *fn = "tl_model_set_trainable";
    if (m == NULL)
        return tli_error(TL_EINVAL, "%s: model is NULL", fn);
    if (first > m->nlayers || (count && count > m->nlayers - first) || (count == 0 && first == m->nlayers && first))
        return tli_error(TL_ERANGE, "%s: layers [%zu, %zu) pass the model's last layer (%zu layers)", fn, first,
                         first + (count ? count : 1), m->nlayers);
    size_t end = count ? first + count : m->nlayers;
    for (size_t i = first; i < end; i++) {
        m->layers[i]->trainable = trainable ? 1 : 0;
        tli_layer_touch(m->layers[i]); /* batchnorm's pass mode follows it */
    }
    return TL_OK;
}

tl_status tl_model_freeze_upto(tl_model *m, size_t k)
{
    const char *fn = "tl_model_freeze_upto";
    if (m == NULL)
        return tli_error(TL_EINVAL, "%s: model is NULL", fn);
    if (k > m->nlayers)
        return tli_error(TL_ERANGE, "%s: k = %zu is past the model's %zu layers", fn, k, m->nlayers);
    for (size_t i = 0; i < m->nlayers; i++) {
        m->layers[i]->trainable = i >= k;
        tli_layer_touch(m->layers[i]); /* batchnorm's pass mode follows it */
    }
    return TL_OK;
}
