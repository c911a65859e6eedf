/*
 * engine.c - running a model over a batch: the workspace, the forward and
 * backward passes over the layer graph, and prediction.
 *
 * The workspace is one aligned block sized for (model, batch size) and
 * reused by every step, so a training step never allocates. It holds each
 * layer's output (backward needs them), each layer's scratch (im2col
 * matrices, arg-max indices), the gathered input batch, and the gradient
 * buffers of the backward pass. An inference workspace keeps no more than
 * the next layers read: outputs share buffers by liveness (plan_outputs)
 * and all layers one scratch block. A layer's output gradient lives in a
 * buffer (slot) from the moment the first layer that takes its output
 * writes it until the layer's own backward has used it; slots are reused
 * by liveness, so a chain needs two, as the ping-pong of a sequential
 * model, and a residual block three. Further writers add into it.
 */
#include <string.h>

#include "engine.h"

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
    /* Buffers of whole pages would all start at the same offset in a
     * page: a pass reading one and writing another (batchnorm's x, dy,
     * y) then stalls on the CPU's 4 KiB aliasing of loads behind stores.
     * Five cache lines after each large block stagger them. */
    if (bytes >= 4096)
        bytes += 320;
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

/* Assign each layer's output gradient a slot (see the top of this file),
 * walking the layers in backward order, and mark the inputs whose
 * gradient is added to one already written. The plan is for a backward
 * pass down to layer 0; a pass that stops higher skips the lower layers'
 * slots, which changes nothing above. Returns the number of slots; *tmp
 * tells whether a layer that cannot add by itself needs a buffer to add
 * from. */
static bool act_foldable(const tl_model *m, size_t i);

static size_t plan_gradients(tl_model *m, bool *tmp)
{
    const size_t n = m->nlayers;
    size_t nslots = 0, nfree = 0;
    int32_t *free_slots = NULL, held = -1;
    *tmp = false;
    for (size_t i = 0; i < n; i++) {
        m->layers[i]->gslot = -1;
        memset(m->layers[i]->in_acc, 0, sizeof m->layers[i]->in_acc);
    }
    if (n == 0)
        return 0;
    /* Freed slots wait on a small stack. Few gradients are live at once
     * (two in a chain, three across a residual block), so it holds a
     * handful; were it ever full, a freed slot would simply not be reused. */
    int32_t small[256];
    free_slots = small;
    size_t cap = sizeof small / sizeof small[0];
#define NEW_SLOT() (nfree ? free_slots[--nfree] : (int32_t)nslots++)
    m->layers[n - 1]->gslot = NEW_SLOT();
    for (size_t i = n; i-- > 0;) {
        tl_layer *l = m->layers[i];
        bool moved = false;
        for (size_t k = 0; k < l->ninputs; k++) {
            if (l->inputs[k] == TLI_INPUT_MODEL)
                continue;
            tl_layer *p = m->layers[l->inputs[k]];
            if (p->gslot < 0) {
                if (l->ops->is_view && !moved) {
                    p->gslot = l->gslot; /* a view's gradient is its input's */
                    moved = true;
                } else {
                    p->gslot = NEW_SLOT();
                }
            } else {
                l->in_acc[k] = true;
                if (!l->ops->accumulates && !l->ops->is_view)
                    *tmp = true;
            }
        }
        /* A ReLU whose backward the layer below may do (act_foldable)
         * keeps its slot until that layer is planned: the layer reads it
         * while writing its own inputs' gradients, so they must not get it. */
        if (held >= 0 && nfree < cap)
            free_slots[nfree++] = held;
        held = -1;
        if (!moved && l->gslot >= 0 && nfree < cap) {
            if (act_foldable(m, i))
                held = l->gslot;
            else
                free_slots[nfree++] = l->gslot;
        }
    }
#undef NEW_SLOT
    return nslots;
}

/* Inference keeps no output for a backward pass: a layer's output needs a
 * buffer only until its last reader has run, so outputs share buffers
 * (slots) by liveness, as the gradients do in training - a chain needs
 * two, a residual block three - and a small batch's activations stay in
 * cache instead of streaming through one buffer per layer. A view's
 * readers read its input's buffer. A layer that may run fused
 * (forward_affine writes the output of up to three layers after it: the
 * affine, a residual join and its activation; forward_act of one) keeps
 * its inputs for that span, so the buffer it writes is never one it
 * reads. (The join's other input, read by the fused layer, is the join's
 * input: kept one layer past the join by the join's own forward_act.) Fills slot[i] for every layer (-1 for a
 * view); `last` (n entries) and `stack` (n entries) are working memory.
 * Returns the number of slots. */
static size_t plan_outputs(const tl_model *m, int32_t *slot, size_t *last, int32_t *stack)
{
    const size_t n = m->nlayers;
    for (size_t i = 0; i < n; i++)
        last[i] = m->layers[i]->nconsumers ? i : SIZE_MAX; /* no reader: the model's output, kept */
    for (size_t i = 0; i < n; i++) {
        const tl_layer *l = m->layers[i];
        const size_t span = l->ops->forward_affine ? 3 : l->ops->forward_act ? 1 : 0;
        for (size_t k = 0; k < l->ninputs; k++) {
            uint32_t p = l->inputs[k];
            while (p != TLI_INPUT_MODEL && m->layers[p]->ops->is_view)
                p = m->layers[p]->inputs[0];
            if (p != TLI_INPUT_MODEL && last[p] != SIZE_MAX && last[p] < i + span)
                last[p] = i + span;
        }
    }
    size_t nslots = 0, nfree = 0;
    for (size_t i = 0; i < n; i++) {
        slot[i] = m->layers[i]->ops->is_view ? -1 : nfree ? stack[--nfree] : (int32_t)nslots++;
        /* Then free the buffers whose last reader is i: never i's own. */
        for (size_t j = 0; j < i; j++)
            if (slot[j] >= 0 && last[j] == i)
                stack[nfree++] = slot[j];
    }
    return nslots;
}

/* Carve the workspace (sizes only when base is NULL). `oslot`: an
 * inference layout's output slots (plan_outputs), `nout` of them, with
 * `obuf` (nout entries) to hold them; NULL in training, where every layer
 * has its own output buffer for the backward pass. */
static bool layout(tl_model *m, size_t batch, bool training, char *base, size_t *total, const int32_t *oslot,
                   size_t nout, float **obuf)
{
    carver c = {base, 0, true};
    const bool assign = base != NULL;
    size_t max_act = 0;
    float *input = carve(&c, mul_or_max(batch, m->in_size), sizeof(float));
    int32_t *labels = carve(&c, batch, sizeof(int32_t));
    float *targets = carve(&c, mul_or_max(batch, tli_model_out_size(m)), sizeof(float));
    if (assign) {
        m->ws.input = input;
        m->ws.labels = labels;
        m->ws.targets = targets;
    }
    for (size_t i = 0; i < m->nlayers; i++)
        if (m->layers[i]->out_size > max_act)
            max_act = m->layers[i]->out_size;
    for (size_t s = 0; oslot && s < nout; s++)
        obuf[s] = carve(&c, mul_or_max(batch, max_act), sizeof(float));
    /* Inference: one layer runs at a time and keeps nothing in its
     * scratch from one call to the next, so all share one block (the
     * largest need); a folding layer reads the affine of the layer after
     * it (in that layer's scratch) before its own kernels use theirs. */
    char *shared = NULL;
    if (oslot) {
        size_t most = 0;
        for (size_t i = 0; i < m->nlayers; i++) {
            size_t sb = m->layers[i]->ops->scratch_bytes(m->layers[i], batch, m->threads, false);
            most = sb > most ? sb : most;
        }
        shared = most ? carve(&c, most, 1) : NULL;
    }
    for (size_t i = 0; i < m->nlayers; i++) {
        tl_layer *l = m->layers[i];
        float *out = l->ops->is_view ? NULL
                     : oslot         ? obuf[oslot[i]]
                                     : carve(&c, mul_or_max(batch, l->out_size), sizeof(float));
        size_t sb = l->ops->scratch_bytes(l, batch, m->threads, training);
        void *scratch = !sb ? NULL : oslot ? (void *)shared : carve(&c, sb, 1);
        if (assign) {
            l->out = out;
            l->scratch = scratch;
        }
    }
    bool need_tmp = false;
    size_t nslots = training ? plan_gradients(m, &need_tmp) : 0;
    float **slots = nslots ? carve(&c, nslots, sizeof(float *)) : NULL;
    for (size_t s = 0; s < nslots; s++) {
        float *g = carve(&c, mul_or_max(batch, max_act), sizeof(float));
        if (assign)
            slots[s] = g;
    }
    float *tmp = need_tmp ? carve(&c, mul_or_max(batch, max_act), sizeof(float)) : NULL;
    if (assign) {
        m->ws.gslots = slots;
        m->ws.nslots = nslots;
        m->ws.gtmp = tmp;
    }
    *total = c.off;
    return c.ok;
}

tl_status tli_workspace_ensure(tl_model *m, size_t batch, bool training)
{
    tl_status st = tli_model_check_graph(m, NULL);
    if (st)
        return st;
    if (m->ws.arena && batch <= m->ws.batch && (!training || m->ws.training))
        return TL_OK;
    if (m->ws.arena) {
        /* Grow to cover both the old and the new need. */
        if (batch < m->ws.batch)
            batch = m->ws.batch;
        training = training || m->ws.training;
    }
    /* Inference: the output slots (plan_outputs) and their buffers. */
    const size_t n = m->nlayers;
    int32_t *oslot = NULL;
    float **obuf = NULL;
    size_t nout = 0;
    if (!training) {
        void *work = tli_malloc(n * (2 * sizeof(int32_t) + sizeof(size_t) + sizeof(float *)) + 1);
        if (work == NULL)
            return tli_error(TL_ENOMEM, "out of memory planning the workspace of %zu layers", n);
        obuf = work;
        size_t *last = (size_t *)(obuf + n);
        oslot = (int32_t *)(last + n);
        nout = plan_outputs(m, oslot, last, oslot + n);
    }
    size_t bytes;
    if (!layout(m, batch, training, NULL, &bytes, oslot, nout, obuf)) {
        tli_free(obuf);
        return tli_error(TL_ETOOBIG, "the workspace for a batch of %zu examples would not fit in memory", batch);
    }
    void *arena = tli_malloc_aligned(bytes);
    if (arena == NULL) {
        tli_free(obuf);
        return tli_error(TL_ENOMEM, "out of memory allocating a %.1f MiB workspace for a batch of %zu examples",
                         (double)bytes / 1048576.0, batch);
    }
    /* Only the arena goes: the layers' caches stay valid for the new size. */
    tli_free_aligned(m->ws.arena);
    m->ws.arena = arena;
    m->ws.bytes = bytes;
    m->ws.batch = batch;
    m->ws.training = training;
    layout(m, batch, training, arena, &bytes, oslot, nout, obuf);
    tli_free(obuf);
    return TL_OK;
}

tli_exec tli_exec_for(const tl_model *m, size_t n, bool training)
{
    tli_exec ex = {m->threads ? m->threads : 1, n, training, NULL, false, NULL, 0, NULL};
    return ex;
}

void tli_exec_draw_key(tl_model *m, tli_exec *ex)
{
    /* Only a model with such a layer draws: the others' training stream
     * (their shuffles) stays as it always was. */
    for (size_t i = 0; i < m->nlayers; i++)
        if (m->layers[i]->ops->draws_random) {
            ex->rng_key = tli_rng_next(&m->train_rng);
            return;
        }
}

static const float *output_of(const tl_model *m, const float *x, uint32_t i)
{
    return i == TLI_INPUT_MODEL ? x : m->layers[i]->out;
}

/* Layer j takes layer i's output as its only input, and nothing else does.
 * j is tested against end before layers[j] is read: j may be one past the
 * last layer, and a batch split's shadow model has exactly nlayers
 * entries (AddressSanitizer caught the read past them). */
static bool sole_consumer(const tl_model *m, size_t i, size_t j, size_t end)
{
    if (j >= end)
        return false;
    const tl_layer *l = m->layers[i], *c = m->layers[j];
    return l->nconsumers == 1 && c->ninputs == 1 && c->inputs[0] == i && !c->ops->is_view;
}

/* Layer j as a residual join that `from` feeds: a two-input sums_inputs
 * layer (add) taking `from` once, whose other input was computed before
 * layer `before` (or is the model's input). Returns that other output, or
 * NULL when j is no such join. Both fusions into a join ask this. */
static const float *join_other(const tl_model *m, const float *x, size_t j, size_t from, size_t before)
{
    const tl_layer *s = m->layers[j];
    if (!s->ops->sums_inputs || s->ninputs != 2)
        return NULL;
    const int k = s->inputs[0] == from ? 1 : s->inputs[1] == from ? 0 : -1;
    if (k < 0 || (s->inputs[k] != TLI_INPUT_MODEL && s->inputs[k] >= before))
        return NULL;
    return output_of(m, x, s->inputs[k]);
}

/* The residual join after an affine: layer i + 2 sums two inputs, one of
 * them the affine i + 1 (which nothing else reads), the other an earlier
 * output (computed before i: layer i's own output is not written when it
 * fuses). Returns that other output, or NULL when there is no such join
 * in this run. */
static const float *join_after(const tl_model *m, const float *x, size_t i, size_t end, size_t stop)
{
    if (i + 2 >= end || i + 2 >= stop || m->layers[i + 1]->nconsumers != 1)
        return NULL;
    return join_other(m, x, i + 2, i + 1, i);
}

/* Fusion where no backward pass follows: a layer that can fold a
 * per-channel affine into its own arithmetic (forward_affine: conv2d),
 * followed by its sole consumer when that is such an affine in this pass
 * (batchnorm in inference mode), optionally followed by an activation
 * layer, runs as one layer writing the last one's output: two passes over
 * memory fewer per layer folded, three with the activation. When the
 * affine feeds a residual join instead (conv -> batchnorm -> add, as in
 * ResNet's and MobileNetV2's blocks), the layer adds the join's other
 * input too, and applies the ReLU / ReLU6 after the join: the join's pass
 * and its buffer's traffic go. The skipped layers' outputs are not
 * written; nothing reads them: they are sole consumers, and a training
 * pass fuses only layers below `stop`, the backward stop (a frozen base),
 * whose backward never runs. Returns how many layers after i it ran, 0
 * when it did not fuse. */
static size_t run_fused(tl_model *m, const tli_exec *ex, const float *x, const float *const *xs, size_t i,
                        size_t end, bool logits, size_t stop)
{
    tl_layer *l = m->layers[i];
    if (i + 1 >= stop || l->ops->forward_affine == NULL || !sole_consumer(m, i, i + 1, end))
        return 0;
    tl_layer *b = m->layers[i + 1];
    if (b->ops->affine == NULL || (logits && i + 2 == m->nlayers))
        return 0;
    tl_layer *target = b;
    tl_activation act = TL_ACT_LINEAR;
    size_t ran = 1;
    const float *residual = NULL;
    if (sole_consumer(m, i + 1, i + 2, end)) {
        tl_layer *a = m->layers[i + 2];
        /* leaky_relu's slope is the layer's own setting: not passed on */
        if (a->ops->is_activation && !(logits && i + 3 == m->nlayers) && a->act != TL_ACT_LEAKY_RELU &&
            i + 2 < stop) {
            target = a;
            act = a->act;
            ran = 2;
        }
    } else if ((residual = join_after(m, x, i, end, stop)) != NULL) {
        target = m->layers[i + 2];
        ran = 2;
        if (sole_consumer(m, i + 2, i + 3, end) && i + 3 < stop && !(logits && i + 4 == m->nlayers)) {
            tl_layer *a = m->layers[i + 3];
            if (a->ops->is_activation && (a->act == TL_ACT_RELU || a->act == TL_ACT_RELU6)) {
                target = a;
                act = a->act;
                ran = 3;
            }
        }
    }
    if (!l->ops->forward_affine(l, ex, xs, target->out, b, residual, act))
        return 0;
    return ran;
}

/* A layer with forward_act (batchnorm, add) whose sole consumer is a
 * ReLU or ReLU6 activation layer applies it in its own pass, writing the
 * activation layer's output, in training too: its own output is read by
 * nobody (the activation's backward reads its output for these two, and
 * batchnorm's and add's backward read no y). One pass over memory fewer,
 * and a buffer's worth of traffic. Returns whether it did. */
static bool run_with_act(tl_model *m, const tli_exec *ex, const float *const *xs, size_t i, size_t end, bool logits)
{
    tl_layer *l = m->layers[i];
    if (l->ops->forward_act == NULL || !sole_consumer(m, i, i + 1, end))
        return false;
    tl_layer *a = m->layers[i + 1];
    if (!a->ops->is_activation || (a->act != TL_ACT_RELU && a->act != TL_ACT_RELU6) ||
        (logits && i + 2 == m->nlayers))
        return false;
    l->ops->forward_act(l, ex, xs, a->out, a->act);
    return true;
}

/* In a training pass, a layer with forward_residual (batchnorm) whose
 * sole consumer is the next layer, a two-input sums_inputs layer (add; the
 * residual join of a ResNet block, the other input computed earlier),
 * adds that other input while it writes, together with the ReLU / ReLU6
 * activation layer after the sum when it is the sum's sole consumer: the
 * sum's pass over memory and the write of the layer's own output fewer.
 * The skipped outputs are read by nobody (the sum's and batchnorm's
 * backward read no y; the activation's reads its own output). Inference
 * folds batchnorm into the convolution instead (run_fused). Returns how
 * many layers after i it ran, 0 when it did not fuse. */
static size_t run_with_residual(tl_model *m, const tli_exec *ex, const float *x, const float *const *xs, size_t i,
                                size_t end, bool logits)
{
    tl_layer *l = m->layers[i];
    if (!ex->training || l->ops->forward_residual == NULL || l->nconsumers != 1 || i + 1 >= end)
        return 0;
    tl_layer *s = m->layers[i + 1];
    const float *res = logits && i + 2 == m->nlayers ? NULL : join_other(m, x, i + 1, i, i);
    if (res == NULL)
        return 0;
    tl_layer *target = s;
    tl_activation act = TL_ACT_LINEAR;
    if (sole_consumer(m, i + 1, i + 2, end)) {
        tl_layer *a = m->layers[i + 2];
        if (a->ops->is_activation && (a->act == TL_ACT_RELU || a->act == TL_ACT_RELU6) &&
            !(logits && i + 3 == m->nlayers)) {
            target = a;
            act = a->act;
        }
    }
    l->ops->forward_residual(l, ex, xs, res, target->out, act);
    return target == s ? 1 : 2;
}

static const float *run(tl_model *m, const tli_exec *ex, const float *x, size_t end, bool logits)
{
    const float *xs[TLI_MAX_INPUTS];
    const size_t stop = ex->training ? tli_backward_stop(m) : SIZE_MAX;
    for (size_t i = 0; i < end; i++) {
        tl_layer *l = m->layers[i];
        for (size_t k = 0; k < l->ninputs; k++)
            xs[k] = output_of(m, x, l->inputs[k]);
        if (l->ops->is_view) {
            l->out = (float *)xs[0];
            continue;
        }
        /* batchnorm's moving statistics move in this pass */
        if (ex->training && l->trainable && l->ops->trains_state)
            tli_layer_touch(l);
        size_t fused = run_fused(m, ex, x, xs, i, end, logits, stop);
        if (fused) {
            i += fused;
            continue;
        }
        fused = run_with_residual(m, ex, x, xs, i, end, logits);
        if (fused) {
            i += fused;
            continue;
        }
        if (run_with_act(m, ex, xs, i, end, logits)) {
            i++;
            continue;
        }
        tl_activation act = (logits && i + 1 == m->nlayers) ? TL_ACT_LINEAR : l->act;
        l->ops->forward(l, ex, xs, l->out, act);
    }
    return end ? m->layers[end - 1]->out : x;
}

const float *tli_forward(tl_model *m, const tli_exec *ex, const float *x, bool logits)
{
    return run(m, ex, x, m->nlayers, logits);
}

const float *tli_forward_to(tl_model *m, const tli_exec *ex, const float *x, size_t last)
{
    return run(m, ex, x, last + 1, false);
}

float *tli_output_grad(tl_model *m)
{
    return m->ws.gslots[m->layers[m->nlayers - 1]->gslot];
}

size_t tli_backward_stop(const tl_model *m)
{
    for (size_t i = 0; i < m->nlayers; i++)
        if (tli_layer_learns(m->layers[i]))
            return i;
    return m->nlayers;
}

/* Max-pooling over a ReLU's output (conv -> relu -> maxpool, as in the
 * seed CNN) applies the ReLU's derivative while it writes dx and sums the
 * layer's bias gradient from its own 4x smaller gradient: this saves two
 * passes over the largest activation, the masking and the bias sum (see
 * tli_maxpool_backward). Only when the pool is the sole consumer of that
 * output, so no other gradient would miss the mask. Returns the `act` to
 * pass to the pool's backward. */
static tl_activation fold_relu(tl_model *m, tl_layer *l, tli_exec *call, float *const *dx)
{
    if (!l->ops->folds_input_relu || dx[0] == NULL || l->in_acc[0])
        return TL_ACT_LINEAR;
    tl_layer *below = m->layers[l->inputs[0]];
    if (below->nconsumers != 1 || below->act != TL_ACT_RELU || below->ops->is_view)
        return TL_ACT_LINEAR;
    below->relu_folded = true;
    below->bias_folded = tli_layer_learns(below) && below->bias_index >= 0;
    call->fold_bias_grad = below->bias_folded ? below->params[below->bias_index].grad : NULL;
    return TL_ACT_RELU;
}

/* A ReLU / ReLU6 activation layer i whose input is the layer just below
 * it, with backward_act (batchnorm, add), and of which it is the sole
 * consumer: its backward is left to that layer's backward_act, which
 * reads the activation's gradient and output and applies the derivative
 * in its own passes - one pass over memory fewer (read y and dy, write
 * dx). Nothing else reads the activation's dx (the layer's gradient
 * slot), and nothing runs between the two. Returns whether it did. */
static bool act_foldable(const tl_model *m, size_t i)
{
    const tl_layer *a = m->layers[i];
    if (i == 0 || !a->ops->is_activation || (a->act != TL_ACT_RELU && a->act != TL_ACT_RELU6) ||
        a->ninputs != 1 || a->inputs[0] != i - 1)
        return false;
    return m->layers[i - 1]->ops->backward_act != NULL && sole_consumer(m, i - 1, i, m->nlayers);
}

static bool fold_act_backward(tl_model *m, size_t i, size_t stop, bool logits)
{
    tl_layer *a = m->layers[i];
    if (i <= stop || (logits && i + 1 == m->nlayers) || a->in_acc[0] || !act_foldable(m, i) ||
        m->layers[i - 1]->relu_folded)
        return false;
    m->layers[i - 1]->act_folded = a;
    return true;
}

void tli_backward(tl_model *m, const tli_exec *ex, const float *x, bool logits)
{
    const size_t stop = tli_backward_stop(m);
    const size_t n = ex->batch;
    const float *xs[TLI_MAX_INPUTS];
    float *dxs[TLI_MAX_INPUTS];
    for (size_t i = m->nlayers; i-- > stop;) {
        tl_layer *l = m->layers[i];
        float *dy = m->ws.gslots[l->gslot];
        for (size_t k = 0; k < l->ninputs; k++) {
            uint32_t p = l->inputs[k];
            xs[k] = output_of(m, x, p);
            dxs[k] = NULL;
            if (p == TLI_INPUT_MODEL || p < stop)
                continue;
            float *target = m->ws.gslots[m->layers[p]->gslot];
            bool via_tmp = l->in_acc[k] && !l->ops->accumulates && !l->ops->is_view;
            dxs[k] = via_tmp ? m->ws.gtmp : target;
        }
        if (fold_act_backward(m, i, stop, logits))
            continue;
        if (l->ops->is_view) {
            /* The gradient passes through: nothing to do when it already
             * lives in the input's slot, else it is added there. */
            if (dxs[0] && dxs[0] != dy)
                tli_accumulate(ex->threads, dxs[0], dy, n * l->out_size, l->in_acc[0]);
            continue;
        }
        tli_exec call = *ex;
        call.dx_acc = l->in_acc;
        call.bias_grad_done = l->bias_folded;
        tl_activation act = (logits && i + 1 == m->nlayers) ? TL_ACT_LINEAR : l->act;
        if (l->relu_folded)
            act = TL_ACT_LINEAR;
        if (l->ops->folds_input_relu)
            act = fold_relu(m, l, &call, dxs);
        l->relu_folded = l->bias_folded = false;
        tl_layer *a = l->act_folded;
        l->act_folded = NULL;
        if (a)
            l->ops->backward_act(l, &call, xs, a->out, m->ws.gslots[a->gslot], dxs, a->act, tli_layer_learns(l));
        else
            l->ops->backward(l, &call, xs, l->out, dy, dxs, act, tli_layer_learns(l));
        for (size_t k = 0; k < l->ninputs; k++)
            if (dxs[k] == m->ws.gtmp && dxs[k] != NULL)
                tli_accumulate(ex->threads, m->ws.gslots[m->layers[l->inputs[k]]->gslot], m->ws.gtmp,
                               n * m->layers[l->inputs[k]]->out_size, true);
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
    tl_status st = tli_model_check_graph(m, NULL);
    for (size_t done = 0; done < n && !st; done += chunk) {
        size_t b = n - done < chunk ? n - done : chunk;
        /* Several threads and enough examples: one parallel region, each
         * thread the whole model on its share (engine_split.c). */
        if (tli_split_worth(m, b)) {
            st = tli_split_predict(m, inputs + done * m->in_size, b, out + done * width);
            continue;
        }
        st = tli_workspace_ensure(m, b, false);
        if (st)
            break;
        tli_exec ex = tli_exec_for(m, b, false);
        const float *y = tli_forward(m, &ex, inputs + done * m->in_size, false);
        memcpy(out + done * width, y, sizeof(float) * b * width);
    }
    if (st)
        tli_error_prefix("%s", fn);
    return st;
}
