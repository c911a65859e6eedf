/* model.c - a model's structure: creation, adding and removing layers,
 * names, look-up, parameter counts and initialisation. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model.h"

tl_status tl_model_create(tl_model **out, uint32_t height, uint32_t width, uint32_t channels, uint64_t seed)
{
    if (out == NULL)
        return tli_error(TL_EINVAL, "tl_model_create: out is NULL");
    *out = NULL;
    if (height == 0 || width == 0 || channels == 0)
        return tli_error(TL_EINVAL, "tl_model_create: input shape (%u, %u, %u) has a zero dimension", height, width,
                         channels);
    uint64_t in_size = tli_mul_sat(tli_mul_sat(height, width), channels);
    if (in_size > TLI_MAX_ELEMS)
        return tli_error(TL_ETOOBIG, "tl_model_create: input shape (%u, %u, %u) exceeds 2^31 values", height, width,
                         channels);
    tl_model *m = tli_calloc(1, sizeof *m);
    if (m == NULL)
        return tli_error(TL_ENOMEM, "tl_model_create: out of memory");
    m->input = tli_shape3(height, width, channels);
    m->in_size = (size_t)in_size;
    m->seed = seed;
    m->threads_req = 0;
    m->threads = tli_cpu_count();
    tli_rng_seed(&m->train_rng, seed, TLI_STREAM_TRAIN);
    *out = m;
    return TL_OK;
}

void tl_model_free(tl_model *m)
{
    if (m == NULL)
        return;
    tli_workspace_free(m);
    for (size_t i = 0; i < m->nlayers; i++)
        tli_layer_free(m->layers[i]);
    tli_free(m->layers);
    tli_optimizer_release(m->opt);
    tli_free(m->class_weights);
    tli_early_clear(&m->early);
    tli_free(m);
}

void tli_early_clear(tli_early_state *s)
{
    tli_free(s->copy);
    memset(s, 0, sizeof *s);
    s->best = NAN;
}

size_t tli_model_tensor_values(const tl_model *m)
{
    size_t count = 0;
    for (size_t i = 0; i < m->nlayers; i++)
        for (size_t p = 0; p < m->layers[i]->nparams; p++)
            count += m->layers[i]->params[p].count;
    return count;
}

uint64_t tl_model_seed(const tl_model *m)
{
    return m ? m->seed : 0;
}

size_t tli_model_out_size(const tl_model *m)
{
    return m->nlayers ? m->layers[m->nlayers - 1]->out_size : m->in_size;
}

/* ---- names ------------------------------------------------------------- */

static bool name_taken(const tl_model *m, const char *name, const tl_layer *except)
{
    for (size_t i = 0; i < m->nlayers; i++)
        if (m->layers[i] != except && strcmp(m->layers[i]->name, name) == 0)
            return true;
    return false;
}

static tl_status check_name(const tl_model *m, const char *name, const tl_layer *except, const char *fn)
{
    size_t len = strlen(name);
    if (len == 0)
        return tli_error(TL_EINVAL, "%s: a layer name must not be empty", fn);
    if (len > TL_MAX_NAME)
        return tli_error(TL_EINVAL, "%s: layer name '%.20s...' is %zu bytes, longer than TL_MAX_NAME (%d)", fn, name,
                         len, TL_MAX_NAME);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == '"' || name[i] == '\\')
            return tli_error(TL_EINVAL, "%s: layer name contains a control character, quote or backslash at byte %zu",
                             fn, i);
    if (name_taken(m, name, except))
        return tli_error(TL_EINVAL, "%s: the model already has a layer named '%s'", fn, name);
    return TL_OK;
}

/* Keras' automatic names: the first conv2d is "conv2d", the next
 * "conv2d_1", ...; a number already used is skipped. */
static void auto_name(const tl_model *m, const tli_layer_ops *ops, char *buf, size_t cap)
{
    size_t same_kind = 0;
    for (size_t i = 0; i < m->nlayers; i++)
        if (m->layers[i]->ops == ops)
            same_kind++;
    for (size_t k = same_kind;; k++) {
        if (k == 0)
            snprintf(buf, cap, "%s", ops->auto_name);
        else
            snprintf(buf, cap, "%s_%zu", ops->auto_name, k);
        if (!name_taken(m, buf, NULL))
            return;
    }
}

tl_status tl_layer_set_name(tl_layer *layer, const char *name)
{
    if (layer == NULL || name == NULL)
        return tli_error(TL_EINVAL, "tl_layer_set_name: %s is NULL", layer ? "name" : "layer");
    tl_status st = check_name(layer->model, name, layer, "tl_layer_set_name");
    if (st)
        return st;
    snprintf(layer->name, sizeof layer->name, "%s", name);
    return TL_OK;
}

/* ---- adding layers ----------------------------------------------------- */

static bool act_valid(tl_activation a)
{
    return (unsigned)a <= (unsigned)TL_ACT_HARD_SIGMOID;
}

const tl_shape *tli_model_shape_of(const tl_model *m, uint32_t i)
{
    return i == TLI_INPUT_MODEL ? &m->input : &m->layers[i]->out_shape;
}

tl_status tli_model_input_index(uint32_t *out, const tl_model *m, const tl_layer *input, const char *fn)
{
    if (input == NULL) {
        *out = m->nlayers ? (uint32_t)(m->nlayers - 1) : TLI_INPUT_MODEL;
        return TL_OK;
    }
    if (input->model != m || input->index >= m->nlayers || m->layers[input->index] != input)
        return tli_error(TL_EINVAL, "%s: input layer '%s' belongs to another model; a layer's inputs must be "
                         "earlier layers of its own model", fn, input->name);
    *out = (uint32_t)input->index;
    return TL_OK;
}

tl_status tli_model_append(tl_layer **out, tl_model *m, const tli_layer_ops *ops, const void *cfg,
                           tl_activation act, int use_bias, const uint32_t *inputs, size_t ninputs,
                           const char *name, const char *fn)
{
    if (!act_valid(act))
        return tli_error(TL_EINVAL, "%s: unknown activation %d", fn, (int)act);
    if (m->nlayers >= UINT32_MAX - 1)
        return tli_error(TL_ETOOBIG, "%s: the model has too many layers", fn);
    char autoname[TL_MAX_NAME + 1];
    if (name) {
        tl_status st = check_name(m, name, NULL, fn);
        if (st)
            return st;
    } else {
        auto_name(m, ops, autoname, sizeof autoname);
        name = autoname;
    }
    uint32_t prev = m->nlayers ? (uint32_t)(m->nlayers - 1) : TLI_INPUT_MODEL;
    if (inputs == NULL) {
        inputs = &prev;
        ninputs = 1;
    }
    if (ninputs > TLI_MAX_INPUTS)
        return tli_error(TL_EINVAL, "%s: layer '%s' has %zu inputs, more than the limit of %d", fn, name, ninputs,
                         TLI_MAX_INPUTS);
    tl_shape shapes[TLI_MAX_INPUTS];
    for (size_t k = 0; k < ninputs; k++) {
        /* Only earlier layers: a model can never hold a cycle. */
        if (inputs[k] != TLI_INPUT_MODEL && inputs[k] >= m->nlayers)
            return tli_error(TL_EINVAL, "%s: input %zu of layer '%s' is layer %u, which is not an earlier layer of "
                             "the model (it has %zu)", fn, k, name, inputs[k], m->nlayers);
        shapes[k] = *tli_model_shape_of(m, inputs[k]);
    }
    if (m->nlayers == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        tl_layer **grown = tli_realloc(m->layers, cap * sizeof *grown);
        if (grown == NULL)
            return tli_error(TL_ENOMEM, "%s: out of memory growing the layer list", fn);
        m->layers = grown;
        m->cap = cap;
    }
    tli_layer_spec spec = {ops, cfg, act, use_bias, ninputs, inputs, shapes};
    tl_layer *l;
    tl_status st = tli_layer_new(&l, &spec, name, m->nlayers, m->shell);
    if (st) {
        tli_error_prefix("%s", fn);
        return st;
    }
    l->model = m;
    tli_layer_init_params(l, m->seed, l->index, false);
    for (size_t k = 0; k < l->ninputs; k++)
        if (l->inputs[k] != TLI_INPUT_MODEL)
            m->layers[l->inputs[k]]->nconsumers++;
    m->layers[m->nlayers++] = l;
    tli_workspace_free(m);
    if (out)
        *out = l;
    return TL_OK;
}

tl_status tli_model_check_graph(const tl_model *m, const char *fn)
{
    for (size_t i = 0; i + 1 < m->nlayers; i++) {
        const tl_layer *l = m->layers[i];
        if (l->nconsumers == 0)
            return tli_error(TL_EINVAL, "%s%slayer '%s' (%s, index %zu) has an output that no layer uses; only the "
                             "last layer (%s) is the model's output: use it as an input or remove it", fn ? fn : "",
                             fn ? ": " : "", l->name, l->ops->type_name, i, m->layers[m->nlayers - 1]->name);
    }
    /* Values the kinds refuse (a normalization's std <= 0), which a file or
     * the caller's memory may have brought in. */
    for (size_t i = 0; i < m->nlayers; i++) {
        tl_status st = tli_layer_check_values(m->layers[i]);
        if (st) {
            if (fn)
                tli_error_prefix("%s", fn);
            return st;
        }
    }
    return TL_OK;
}

void tli_workspace_free(tl_model *m)
{
    tli_split_free(m);
    tli_free_aligned(m->ws.arena);
    memset(&m->ws, 0, sizeof m->ws);
    for (size_t i = 0; i < m->nlayers; i++) {
        tl_layer *l = m->layers[i];
        l->out = NULL;
        l->scratch = NULL;
        /* A structure change may re-pair a layer with the one it folded. */
        tli_free_aligned(l->cache);
        l->cache = NULL;
        memset(l->cache_key, 0, sizeof l->cache_key);
    }
}

void tli_model_touch(tl_model *m)
{
    for (size_t i = 0; i < m->nlayers; i++)
        tli_layer_touch(m->layers[i]);
}

tl_status tli_model_pop(tl_model *m, size_t count, const char *fn)
{
    if (count > m->nlayers)
        return tli_error(TL_ERANGE, "%s: cannot remove %zu layers from a model with %zu", fn, count, m->nlayers);
    /* Layers only take earlier layers, so the kept ones never lose an
     * input; but one of them may lose every consumer (a branch whose join
     * is removed), which would leave it dangling: refuse that. */
    const size_t keep = m->nlayers - count;
    for (size_t i = 0; i + 1 < keep; i++) {
        const tl_layer *l = m->layers[i];
        size_t kept_uses = 0;
        for (size_t j = i + 1; j < keep; j++)
            for (size_t k = 0; k < m->layers[j]->ninputs; k++)
                kept_uses += m->layers[j]->inputs[k] == i;
        if (l->nconsumers > 0 && kept_uses == 0)
            return tli_error(TL_EINVAL, "%s: removing %zu layer%s would leave layer '%s' (index %zu) with an output "
                             "that no layer uses; remove it too or keep the layer%s that take%s it", fn, count,
                             count == 1 ? "" : "s", l->name, i, l->nconsumers == 1 ? "" : "s",
                             l->nconsumers == 1 ? "s" : "");
    }
    for (size_t i = 0; i < count; i++) {
        tl_layer *l = m->layers[--m->nlayers];
        for (size_t k = 0; k < l->ninputs; k++)
            if (l->inputs[k] != TLI_INPUT_MODEL)
                m->layers[l->inputs[k]]->nconsumers--;
        tli_layer_free(l);
    }
    tli_workspace_free(m);
    return TL_OK;
}

/* ---- look-up and counts ------------------------------------------------ */

size_t tl_model_num_layers(const tl_model *m)
{
    return m ? m->nlayers : 0;
}

tl_status tl_model_layer(tl_layer **out, const tl_model *m, size_t index)
{
    if (out == NULL || m == NULL)
        return tli_error(TL_EINVAL, "tl_model_layer: %s is NULL", out ? "model" : "out");
    if (index >= m->nlayers)
        return tli_error(TL_ERANGE, "tl_model_layer: index %zu is out of range (the model has %zu layers)", index,
                         m->nlayers);
    *out = m->layers[index];
    return TL_OK;
}

tl_status tl_model_layer_by_name(tl_layer **out, const tl_model *m, const char *name)
{
    if (out == NULL || m == NULL || name == NULL)
        return tli_error(TL_EINVAL, "tl_model_layer_by_name: %s is NULL", out == NULL ? "out" : m ? "name" : "model");
    for (size_t i = 0; i < m->nlayers; i++)
        if (strcmp(m->layers[i]->name, name) == 0) {
            *out = m->layers[i];
            return TL_OK;
        }
    return tli_error(TL_ENOTFOUND, "tl_model_layer_by_name: the model has no layer named '%s'", name);
}

tl_status tl_model_input_shape(tl_shape *out, const tl_model *m)
{
    if (out == NULL || m == NULL)
        return tli_error(TL_EINVAL, "tl_model_input_shape: %s is NULL", out ? "model" : "out");
    *out = m->input;
    return TL_OK;
}

tl_status tl_model_output_shape(tl_shape *out, const tl_model *m)
{
    if (out == NULL || m == NULL)
        return tli_error(TL_EINVAL, "tl_model_output_shape: %s is NULL", out ? "model" : "out");
    *out = m->nlayers ? m->layers[m->nlayers - 1]->out_shape : m->input;
    return TL_OK;
}

size_t tl_model_param_count(const tl_model *m)
{
    size_t n = 0;
    if (m)
        for (size_t i = 0; i < m->nlayers; i++)
            n += tl_layer_param_count(m->layers[i]);
    return n;
}

size_t tl_model_trainable_param_count(const tl_model *m)
{
    size_t n = 0;
    if (m)
        for (size_t i = 0; i < m->nlayers; i++)
            if (m->layers[i]->trainable)
                n += tli_layer_count(m->layers[i], TLI_ROLE_PARAM);
    return n;
}

void tli_model_redraw(tl_model *m, uint64_t seed)
{
    m->seed = seed;
    for (size_t i = 0; i < m->nlayers; i++)
        tli_layer_init_params(m->layers[i], seed, i, true);
}

size_t tl_layer_num_inputs(const tl_layer *layer)
{
    return layer ? layer->ninputs : 0;
}

tl_status tl_layer_input(tl_layer **out, const tl_layer *layer, size_t k)
{
    if (out == NULL || layer == NULL)
        return tli_error(TL_EINVAL, "tl_layer_input: %s is NULL", out ? "layer" : "out");
    if (k >= layer->ninputs)
        return tli_error(TL_ERANGE, "tl_layer_input: layer '%s' has %zu input%s, not index %zu", layer->name,
                         layer->ninputs, layer->ninputs == 1 ? "" : "s", k);
    uint32_t i = layer->inputs[k];
    *out = i == TLI_INPUT_MODEL ? NULL : layer->model->layers[i];
    return TL_OK;
}

tl_status tl_model_set_threads(tl_model *m, uint32_t threads)
{
    if (m == NULL)
        return tli_error(TL_EINVAL, "tl_model_set_threads: model is NULL");
    if (threads > 1024)
        return tli_error(TL_EINVAL, "tl_model_set_threads: %u threads is more than the limit of 1024", threads);
    uint32_t resolved = threads ? threads : tli_cpu_count();
    /* Per-thread scratch (weight-gradient partial sums) is sized by it. */
    if (resolved != m->threads)
        tli_workspace_free(m);
    m->threads_req = threads;
    m->threads = resolved;
    return TL_OK;
}

uint32_t tl_model_threads(const tl_model *m)
{
    return m ? m->threads : 0;
}
