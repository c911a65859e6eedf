/*
 * engine.c - running a model over a batch: the workspace, the forward and
 * backward passes, and prediction.
 *
 * The workspace is one aligned block sized for (model, batch size) and
 * reused by every step, so a training step never allocates. It holds each
 * layer's output (backward needs them), each layer's scratch (im2col
 * matrices, arg-max indices), the gathered input batch, and two gradient
 * buffers that the backward pass uses in turn.
 */
#include <string.h>

#include "model.h"

void tli_workspace_free(tl_model *m)
{
    tli_free_aligned(m->ws.arena);
    memset(&m->ws, 0, sizeof m->ws);
    for (size_t i = 0; i < m->nlayers; i++) {
        m->layers[i]->out = NULL;
        m->layers[i]->scratch = NULL;
    }
}

/* Carves 64-byte aligned blocks out of the arena. With base NULL it only
 * adds up the sizes (and assigns nothing), so sizing never disturbs a
 * workspace that is still in use. */
typedef struct carver {
    char *base;
    size_t off;
    bool ok;
} carver;

static void *carve(carver *c, size_t count, size_t size)
{
    size_t bytes, next;
    if (!c->ok || !tli_mul_ok(count, size, &bytes) || bytes > SIZE_MAX - 63) {
        c->ok = false;
        return NULL;
    }
    bytes = (bytes + 63) & ~(size_t)63;
    if (!tli_add_ok(c->off, bytes, &next)) {
        c->ok = false;
        return NULL;
    }
    void *p = c->base ? c->base + c->off : NULL;
    c->off = next;
    return p;
}

static size_t mul_or_max(size_t a, size_t b)
{
    size_t r;
    return tli_mul_ok(a, b, &r) ? r : SIZE_MAX;
}

static bool layout(tl_model *m, size_t batch, bool training, char *base, size_t *total)
{
    carver c = {base, 0, true};
    const bool assign = base != NULL;
    size_t max_act = m->in_size;
    float *input = carve(&c, mul_or_max(batch, m->in_size), sizeof(float));
    int32_t *labels = carve(&c, batch, sizeof(int32_t));
    float *targets = carve(&c, mul_or_max(batch, tli_model_out_size(m)), sizeof(float));
    if (assign) {
        m->ws.input = input;
        m->ws.labels = labels;
        m->ws.targets = targets;
    }
    for (size_t i = 0; i < m->nlayers; i++) {
        tl_layer *l = m->layers[i];
        if (l->out_size > max_act)
            max_act = l->out_size;
        float *out = l->ops->is_view ? NULL : carve(&c, mul_or_max(batch, l->out_size), sizeof(float));
        size_t sb = l->ops->scratch_bytes(l, batch, m->threads, training);
        void *scratch = sb ? carve(&c, sb, 1) : NULL;
        if (assign) {
            l->out = out;
            l->scratch = scratch;
        }
    }
    float *g0 = NULL, *g1 = NULL;
    if (training) {
        g0 = carve(&c, mul_or_max(batch, max_act), sizeof(float));
        g1 = carve(&c, mul_or_max(batch, max_act), sizeof(float));
    }
    if (assign) {
        m->ws.grad[0] = g0;
        m->ws.grad[1] = g1;
    }
    *total = c.off;
    return c.ok;
}

tl_status tli_workspace_ensure(tl_model *m, size_t batch, bool training)
{
    if (m->ws.arena && batch <= m->ws.batch && (!training || m->ws.training))
        return TL_OK;
    if (m->ws.arena) {
        /* Grow to cover both the old and the new need. */
        if (batch < m->ws.batch)
            batch = m->ws.batch;
        training = training || m->ws.training;
    }
    size_t bytes;
    if (!layout(m, batch, training, NULL, &bytes))
        return tli_error(TL_ETOOBIG, "the workspace for a batch of %zu examples would not fit in memory", batch);
    void *arena = tli_malloc_aligned(bytes);
    if (arena == NULL)
        return tli_error(TL_ENOMEM, "out of memory allocating a %.1f MiB workspace for a batch of %zu examples",
                         (double)bytes / 1048576.0, batch);
    tli_workspace_free(m);
    m->ws.arena = arena;
    m->ws.bytes = bytes;
    m->ws.batch = batch;
    m->ws.training = training;
    layout(m, batch, training, arena, &bytes);
    return TL_OK;
}

tli_exec tli_exec_for(const tl_model *m, size_t n, bool training)
{
    tli_exec ex = {m->threads ? m->threads : 1, n, training, NULL, false};
    return ex;
}

const float *tli_forward_range(tl_model *m, const tli_exec *ex, const float *x, size_t from, size_t to,
                               bool logits)
{
    const float *cur = x;
    for (size_t i = from; i < to; i++) {
        tl_layer *l = m->layers[i];
        if (l->ops->is_view) {
            l->out = (float *)cur;
            continue;
        }
        tl_activation act = (logits && i + 1 == m->nlayers) ? TL_ACT_LINEAR : l->act;
        l->ops->forward(l, ex, cur, l->out, act);
        cur = l->out;
    }
    return cur;
}

const float *tli_forward(tl_model *m, const tli_exec *ex, const float *x, bool logits)
{
    return tli_forward_range(m, ex, x, 0, m->nlayers, logits);
}

size_t tli_backward_stop(const tl_model *m)
{
    for (size_t i = 0; i < m->nlayers; i++)
        if (tli_layer_learns(m->layers[i]))
            return i;
    return m->nlayers;
}

void tli_backward(tl_model *m, const tli_exec *ex, const float *x, bool logits)
{
    size_t stop = tli_backward_stop(m);
    if (stop == m->nlayers)
        return;
    float *dy = m->ws.grad[0];
    bool relu_folded = false; /* the layer above applied this layer's ReLU derivative */
    bool bias_folded = false; /* ... and wrote its bias gradient */
    for (size_t i = m->nlayers; i-- > stop;) {
        tl_layer *l = m->layers[i];
        if (l->ops->is_view)
            continue; /* the gradient passes through unchanged */
        const float *in = i ? m->layers[i - 1]->out : x;
        float *dx = NULL;
        if (i > stop)
            dx = dy == m->ws.grad[0] ? m->ws.grad[1] : m->ws.grad[0];
        tl_activation act = (logits && i + 1 == m->nlayers) ? TL_ACT_LINEAR : l->act;
        tli_exec call = *ex;
        if (relu_folded)
            act = TL_ACT_LINEAR;
        call.bias_grad_done = bias_folded;
        /* Max-pooling over a ReLU's output (conv -> relu -> maxpool, as in
         * the seed CNN) applies the ReLU's derivative while it writes dx and
         * sums the layer's bias gradient from its own 4x smaller gradient:
         * this saves two passes over the largest activation, the masking
         * and the bias sum (see tli_maxpool_backward). */
        relu_folded = bias_folded = false;
        if (l->ops->kind == TL_LAYER_MAXPOOL2D) {
            tl_layer *below = dx != NULL ? m->layers[i - 1] : NULL;
            relu_folded = below && below->act == TL_ACT_RELU && !below->ops->is_view;
            bias_folded = relu_folded && tli_layer_learns(below) && below->use_bias;
            call.fold_bias_grad = bias_folded ? below->params[1].grad : NULL;
            act = relu_folded ? TL_ACT_RELU : TL_ACT_LINEAR;
        }
        l->ops->backward(l, &call, in, l->out, dy, dx, act, tli_layer_learns(l));
        dy = dx;
    }
}

tl_status tl_model_predict(float *out, size_t out_count, tl_model *m, const float *inputs, size_t n,
                           uint32_t batch_size)
{
    const char *fn = "tl_model_predict";
    if (out == NULL || m == NULL || inputs == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, out == NULL ? "out" : m == NULL ? "model" : "inputs");
    if (n == 0)
        return tli_error(TL_EINVAL, "%s: n is 0", fn);
    if (m->nlayers == 0)
        return tli_error(TL_ESTATE, "%s: the model has no layers", fn);
    size_t width = tli_model_out_size(m), need;
    if (!tli_mul_ok(n, width, &need) || need != out_count)
        return tli_error(TL_ESHAPE, "%s: %zu examples x %zu outputs do not fit out_count %zu", fn, n, width,
                         out_count);
    size_t chunk = batch_size ? batch_size : 64;
    if (chunk > n)
        chunk = n;
    tl_status st = tli_workspace_ensure(m, chunk, false);
    if (st) {
        tli_error_prefix("%s", fn);
        return st;
    }
    for (size_t done = 0; done < n; done += chunk) {
        size_t b = n - done < chunk ? n - done : chunk;
        tli_exec ex = tli_exec_for(m, b, false);
        const float *y = tli_forward(m, &ex, inputs + done * m->in_size, false);
        memcpy(out + done * width, y, sizeof(float) * b * width);
    }
    return TL_OK;
}
