/* summary.c - the Keras-style model summary, to a callback or a buffer. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "summary.h"

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

void tli_emit(tli_sink *s, const char *fmt, ...)
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

static const char rule[] = "________________________________________________________________________________";
static const char dbl[] = "================================================================================";

/* A model whose layers all take the previous one is a chain: its table
 * needs no "Connected to" column (Keras prints one only for graphs). */
static bool is_graph(const tl_model *m)
{
    for (size_t i = 0; i < m->nlayers; i++) {
        const tl_layer *l = m->layers[i];
        uint32_t prev = i ? (uint32_t)(i - 1) : TLI_INPUT_MODEL;
        if (l->ninputs != 1 || l->inputs[0] != prev)
            return true;
    }
    return false;
}

/* "conv2d_1, add" into buf. */
static const char *connected(const tl_model *m, const tl_layer *l, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t k = 0; k < l->ninputs && len < cap; k++) {
        /* In parentheses: a layer may be called "input". */
        const char *name = l->inputs[k] == TLI_INPUT_MODEL ? "(model input)" : m->layers[l->inputs[k]]->name;
        int n = snprintf(buf + len, cap - len, "%s%s", k ? ", " : "", name);
        len += n > 0 ? (size_t)n : 0;
    }
    return buf;
}

void tli_summary_table(const tl_model *m, tli_sink *s)
{
    char b[32], c[96], conn[256];
    const bool graph = is_graph(m);
    /* The first column fits the longest "name (type)": a long layer name
     * would otherwise push its row out of line. */
    int w = 34;
    for (size_t i = 0; i < m->nlayers; i++) {
        int n = snprintf(c, sizeof c, "%s (%s)", m->layers[i]->name, m->layers[i]->ops->type_name);
        w = n > w ? (n < (int)sizeof c ? n : (int)sizeof c - 1) : w;
    }
    tli_emit(s, "%s\n", rule);
    if (graph)
        tli_emit(s, " %-*s %-22s %11s  %-11s  %s\n", w, "Layer (type)", "Output Shape", "Param #", "Trainable",
                 "Connected to");
    else
        tli_emit(s, " %-*s %-22s %11s  %s\n", w, "Layer (type)", "Output Shape", "Param #", "Trainable");
    tli_emit(s, "%s\n", dbl);
    size_t total = 0, trainable = 0;
    for (size_t i = 0; i < m->nlayers; i++) {
        const tl_layer *l = m->layers[i];
        snprintf(c, sizeof c, "%s (%s)", l->name, l->ops->type_name);
        tl_shape o = l->out_shape;
        /* Keras writes the batch axis as None. */
        char shape[64];
        size_t len = (size_t)snprintf(shape, sizeof shape, "(None");
        for (uint32_t d = 0; d < o.rank && len < sizeof shape; d++)
            len += (size_t)snprintf(shape + len, sizeof shape - len, ", %u", o.dims[d]);
        if (len < sizeof shape)
            snprintf(shape + len, sizeof shape - len, ")");
        size_t n = tl_layer_param_count(l), learn = l->trainable ? tli_layer_count(l, TLI_ROLE_PARAM) : 0;
        total += n;
        trainable += learn;
        const char *tr = l->nparams == 0 ? "-" : l->trainable ? "yes" : "no (frozen)";
        if (graph)
            tli_emit(s, " %-*s %-22s %11s  %-11s  %s\n", w, c, shape, grouped(n, b, sizeof b), tr,
                     connected(m, l, conn, sizeof conn));
        else
            tli_emit(s, " %-*s %-22s %11s  %s\n", w, c, shape, grouped(n, b, sizeof b), tr);
        tli_emit(s, "%s\n", i + 1 < m->nlayers ? "" : dbl);
    }
    if (m->nlayers == 0)
        tli_emit(s, "%s\n", dbl);
    tli_emit(s, "Total params: %s\n", grouped(total, b, sizeof b));
    tli_emit(s, "Trainable params: %s\n", grouped(trainable, b, sizeof b));
    tli_emit(s, "Non-trainable params: %s\n", grouped(total - trainable, b, sizeof b));
}

void tli_summary_end(tli_sink *s)
{
    tli_emit(s, "%s\n", rule);
}

static void render(const tl_model *m, tli_sink *s)
{
    char a[64];
    tli_emit(s, "Model: %zu layers, input %s\n", m->nlayers, tli_shape_str(&m->input, a, sizeof a));
    tli_summary_table(m, s);
    tli_summary_end(s);
}

tl_status tl_model_summary_write(const tl_model *m, tl_write_fn write, void *payload)
{
    if (m == NULL || write == NULL)
        return tli_error(TL_EINVAL, "tl_model_summary_write: %s is NULL", m ? "write" : "model");
    tli_sink s = {write, payload, false};
    render(m, &s);
    if (s.stopped)
        return tli_error(TL_ECANCELED, "tl_model_summary_write: the write callback asked to stop");
    return TL_OK;
}

typedef struct buffer {
    char *buf;
    size_t cap, len;
} buffer;

static int to_buffer(const char *text, size_t len, void *payload)
{
    buffer *b = payload;
    if (b->cap > 0 && b->len + 1 < b->cap) {
        size_t room = b->cap - 1 - b->len;
        memcpy(b->buf + b->len, text, len < room ? len : room);
    }
    b->len += len;
    return 0;
}

tl_status tl_model_summary(char *buf, size_t cap, size_t *needed, const tl_model *m)
{
    if (m == NULL || (buf == NULL && cap > 0))
        return tli_error(TL_EINVAL, "tl_model_summary: %s is NULL", m ? "buf" : "model");
    buffer b = {buf, cap, 0};
    tli_sink s = {to_buffer, &b, false};
    render(m, &s);
    if (cap > 0)
        buf[b.len < cap ? b.len : cap - 1] = '\0';
    if (needed)
        *needed = b.len;
    /* A size query (cap 0 with `needed`) is not a failure. */
    if (cap == 0 && needed)
        return TL_OK;
    if (b.len >= cap)
        return tli_error(TL_ETOOBIG, "tl_model_summary: the summary needs %zu bytes plus the NUL, the buffer has %zu",
                         b.len, cap);
    return TL_OK;
}
