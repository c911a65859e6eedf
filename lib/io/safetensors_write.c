/*
 * safetensors_write.c - tl_model_save_safetensors(): every parameter as an
 * F32 tensor in the chosen layout, with libtl's architecture in the
 * header's __metadata__, written atomically like a checkpoint. The PyTorch
 * layout adds each batchnorm's "num_batches_tracked" (I64, shape (), value
 * 0) after its running_var, as BatchNorm2d's state_dict() has it, so that
 * load_state_dict(strict=True) accepts the file.
 */
#include <stdio.h>
#include <string.h>

#include "bytes.h"
#include "file.h"
#include "safetensors.h"

typedef struct entry {
    const tl_layer *layer;
    size_t param;
    bool counter; /* the batchnorm's num_batches_tracked: I64 0, no parameter */
    const char *name;
    char own[TL_MAX_NAME + 32];
    tli_layout L;
    uint64_t begin, end;
} entry;

/* 1 when the layout writes a num_batches_tracked for layer l. */
static size_t has_counter(const tl_layer *l, tl_tensor_layout layout)
{
    return layout == TL_LAYOUT_PYTORCH && l->ops->torch_batch_counter;
}

static const char *entry_what(const entry *e)
{
    return e->counter ? TLI_ST_COUNTER : e->layer->params[e->param].name;
}

static void shape_json(tli_wbuf *b, const tl_shape *s)
{
    tli_wbuf_u8(b, '[');
    for (uint32_t i = 0; i < s->rank; i++)
        tli_wbuf_fmt(b, i ? ",%u" : "%u", s->dims[i]);
    tli_wbuf_u8(b, ']');
}

/* libtl's description of the model, as compact JSON (documented in
 * docs/format-safetensors.md), NUL-terminated. */
static void architecture(tli_wbuf *b, const tl_model *m)
{
    tli_wbuf_fmt(b, "{\"format\":\"libtl\",\"version\":\"%s\",\"input\":", TL_VERSION_STRING);
    shape_json(b, &m->input);
    tli_wbuf_str(b, ",\"layers\":[");
    for (size_t i = 0; i < m->nlayers; i++) {
        const tl_layer *l = m->layers[i];
        tli_wbuf_str(b, i ? ",{\"name\":" : "{\"name\":");
        tli_wbuf_json_str(b, l->name);
        tli_wbuf_fmt(b, ",\"kind\":\"%s\",\"inputs\":[", l->ops->type_name);
        for (size_t k = 0; k < l->ninputs; k++) {
            if (k)
                tli_wbuf_u8(b, ',');
            /* null: the model's input (any string could be a layer's name). */
            if (l->inputs[k] == TLI_INPUT_MODEL)
                tli_wbuf_str(b, "null");
            else
                tli_wbuf_json_str(b, m->layers[l->inputs[k]]->name);
        }
        tli_wbuf_u8(b, ']');
        /* The kind's settings, field by field. */
        char settings[1024];
        size_t len = tli_cfg_describe(l, settings, sizeof settings, true);
        if (len < sizeof settings)
            tli_wbuf_str(b, settings);
        else
            b->failed = true;
        if (l->ops->has_activation)
            tli_wbuf_fmt(b, ",\"activation\":\"%s\"", tl_activation_str(l->act));
        if (l->ops->has_bias)
            tli_wbuf_fmt(b, ",\"use_bias\":%s", l->use_bias ? "true" : "false");
        if (l->nparams)
            tli_wbuf_fmt(b, ",\"trainable\":%s", l->trainable ? "true" : "false");
        tli_wbuf_str(b, ",\"output_shape\":");
        shape_json(b, &l->out_shape);
        tli_wbuf_u8(b, '}');
    }
    tli_wbuf_str(b, "]}");
    tli_wbuf_u8(b, '\0');
}

static tl_status header(tli_wbuf *h, const tl_model *m, const entry *e, size_t n, tl_tensor_layout layout,
                        const char *fn, const char *path)
{
    tli_wbuf arch = {0};
    architecture(&arch, m);
    tli_wbuf_str(h, "{\"__metadata__\":{\"libtl.architecture\":");
    if (!arch.failed)
        tli_wbuf_json_str(h, (const char *)arch.data);
    tli_wbuf_fmt(h, ",\"libtl.layout\":\"%s\",\"libtl.version\":\"%s\"}",
                 layout == TL_LAYOUT_PYTORCH ? "pytorch" : "keras", TL_VERSION_STRING);
    bool failed = arch.failed;
    tli_wbuf_free(&arch);
    for (size_t i = 0; i < n; i++) {
        tli_wbuf_u8(h, ',');
        tli_wbuf_json_str(h, e[i].name);
        if (e[i].counter) {
            tli_wbuf_str(h, ":{\"dtype\":\"I64\",\"shape\":[]");
        } else {
            tli_wbuf_str(h, ":{\"dtype\":\"F32\",\"shape\":");
            shape_json(h, &e[i].L.file_shape);
        }
        tli_wbuf_fmt(h, ",\"data_offsets\":[%llu,%llu]}", (unsigned long long)e[i].begin,
                     (unsigned long long)e[i].end);
    }
    tli_wbuf_u8(h, '}');
    /* Spaces up to a multiple of 8, as the safetensors project pads, so the
     * data are aligned for readers that map the file. */
    while (!h->failed && h->len % 8 != 0)
        tli_wbuf_u8(h, ' ');
    if (failed || h->failed)
        return tli_error(TL_ENOMEM, "%s: %s: out of memory for the header", fn, path);
    if (h->len > TLI_ST_MAX_HEADER)
        return tli_error(TL_ETOOBIG, "%s: %s: a header of %zu bytes exceeds the format's limit of %u", fn, path, h->len,
                         TLI_ST_MAX_HEADER);
    return TL_OK;
}

static tl_status write_all(tli_afile *f, const tli_wbuf *h, const entry *e, size_t n, size_t max_count)
{
    uint8_t len8[8];
    tli_put_le64(len8, h->len);
    tl_status st = tli_afile_write(f, len8, sizeof len8);
    if (st == TL_OK)
        st = tli_afile_write(f, h->data, h->len);
    float *tmp = tli_malloc((max_count ? max_count : 1) * sizeof *tmp);
    if (tmp == NULL && st == TL_OK)
        st = tli_error(TL_ENOMEM, "%s: %s: out of memory", f->fn, f->path);
    for (size_t i = 0; st == TL_OK && i < n; i++) {
        if (e[i].counter) {
            static const uint8_t zero[8] = {0};
            st = tli_afile_write(f, zero, sizeof zero);
            continue;
        }
        const tli_param *p = &e[i].layer->params[e[i].param];
        tli_layout_apply(&e[i].L, p->value, tmp, false);
        tli_f32_swap_le(tmp, p->count);
        st = tli_afile_write(f, tmp, p->count * sizeof(float));
    }
    tli_free(tmp);
    return st;
}

tl_status tl_model_save_safetensors(const tl_model *m, const char *path, tl_tensor_layout layout,
                                    const tl_safetensors_options *opts)
{
    const char *fn = "tl_model_save_safetensors";
    if (m == NULL || path == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, m ? "path" : "model");
    tl_safetensors_options o;
    tl_status st = tli_st_options(&o, opts, layout, fn);
    if (st)
        return st;
    size_t n = 0, max_count = 0;
    for (size_t i = 0; i < m->nlayers; i++)
        n += m->layers[i]->nparams + has_counter(m->layers[i], layout);
    entry *e = tli_calloc(n ? n : 1, sizeof *e);
    if (e == NULL)
        return tli_error(TL_ENOMEM, "%s: %s: out of memory", fn, path);
    uint64_t at = 0;
    size_t k = 0;
    for (size_t i = 0; i < m->nlayers; i++) {
        const tl_layer *l = m->layers[i];
        const size_t np = l->nparams + has_counter(l, layout);
        for (size_t p = 0; p < np; p++, k++) {
            e[k].layer = l;
            e[k].param = p;
            e[k].begin = at;
            if (p == l->nparams) {
                e[k].counter = true;
                e[k].name = tli_st_counter_to_file(&o, l, e[k].own, sizeof e[k].own);
                at += 8;
            } else {
                e[k].name = tli_st_to_file(&o, l, p, layout, e[k].own, sizeof e[k].own);
                tli_layout_for(&e[k].L, l, p, layout, o.permute_flatten != 0);
                at += (uint64_t)l->params[p].count * sizeof(float);
                max_count = l->params[p].count > max_count ? l->params[p].count : max_count;
            }
            e[k].end = at;
            for (size_t j = 0; j < k; j++)
                if (strcmp(e[j].name, e[k].name) == 0) {
                    st = tli_error(TL_EINVAL, "%s: %s: two tensors would be called '%.200s' (%s of '%s' and %s of '%s'); "
                                   "check the rename map", fn, path, e[k].name, entry_what(&e[j]), e[j].layer->name,
                                   entry_what(&e[k]), l->name);
                    tli_free(e);
                    return st;
                }
        }
    }
    tli_wbuf h = {0};
    tli_afile f = {.fd = -1};
    if ((st = header(&h, m, e, n, layout, fn, path)) == TL_OK && (st = tli_afile_open(&f, path, fn)) == TL_OK) {
        if ((st = write_all(&f, &h, e, n, max_count)) == TL_OK)
            st = tli_afile_commit(&f);
        else
            tli_afile_abort(&f);
    }
    tli_wbuf_free(&h);
    tli_free(e);
    return st;
}
