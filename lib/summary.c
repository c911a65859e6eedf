/* summary.c - the Keras-style model summary, to a callback or a buffer. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "model.h"

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

static const char rule[] = "________________________________________________________________________________";
static const char dbl[] = "================================================================================";

static void render(const tl_model *m, sink *s)
{
    char a[64], b[32], c[96];
    emit(s, "Model: %zu layers, input %s\n", m->nlayers, tli_shape_str(&m->input, a, sizeof a));
    emit(s, "%s\n", rule);
    emit(s, " %-34s %-22s %11s  %s\n", "Layer (type)", "Output Shape", "Param #", "Trainable");
    emit(s, "%s\n", dbl);
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
        emit(s, " %-34s %-22s %11s  %s\n", c, shape, grouped(tl_layer_param_count(l), b, sizeof b),
             l->nparams == 0 ? "-" : l->trainable ? "yes" : "no (frozen)");
        emit(s, "%s\n", i + 1 < m->nlayers ? "" : dbl);
    }
    if (m->nlayers == 0)
        emit(s, "%s\n", dbl);
    size_t total = tl_model_param_count(m), train = tl_model_trainable_param_count(m);
    emit(s, "Total params: %s\n", grouped(total, b, sizeof b));
    emit(s, "Trainable params: %s\n", grouped(train, b, sizeof b));
    emit(s, "Non-trainable params: %s\n", grouped(total - train, b, sizeof b));
    emit(s, "%s\n", rule);
}

tl_status tl_model_summary_write(const tl_model *m, tl_write_fn write, void *payload)
{
    if (m == NULL || write == NULL)
        return tli_error(TL_EINVAL, "tl_model_summary_write: %s is NULL", m ? "write" : "model");
    sink s = {write, payload, false};
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
    sink s = {to_buffer, &b, false};
    render(m, &s);
    if (cap > 0)
        buf[b.len < cap ? b.len : cap - 1] = '\0';
    if (needed)
        *needed = b.len;
    if (b.len >= cap)
        return tli_error(TL_ETOOBIG, "tl_model_summary: the summary needs %zu bytes plus the NUL, the buffer has %zu",
                         b.len, cap);
    return TL_OK;
}
