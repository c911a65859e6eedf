/*
 * checkpoint_write.c - tl_model_save(): the model as a sequence of
 * sections (docs/format-checkpoint.md), deflated as it is produced and
 * written to a temporary file; the header, whose sizes and CRCs are only
 * known at the end, is written last, and the file is then renamed over the
 * target. Nothing but a 64 KiB buffer and zlib's state is allocated, however
 * large the model.
 */
#include <string.h>

#include "../options.h"
#include "bytes.h"
#include "checkpoint.h"
#include "file.h"
#include "zalloc.h"

#define OUT_CHUNK 65536

TLI_OPTIONS_TYPE_V1(save_type, tl_save_options, TL_SAVE_OPTIONS);

tl_status tl_save_options_init(tl_save_options *opts, unsigned int version)
{
    const tl_save_options d = TL_SAVE_OPTIONS_INIT;
    return tli_options_init(opts, version, &d, &save_type, "tl_save_options_init");
}

typedef struct writer {
    tli_afile f;
    z_stream z;
    bool z_live;
    uint8_t *out;
    uint64_t raw;
    uint32_t raw_crc, stored_crc;
} writer;

/* Write what deflate produced into w->out. */
static tl_status drain(writer *w)
{
    size_t n = OUT_CHUNK - w->z.avail_out;
    if (n == 0)
        return TL_OK;
    w->stored_crc = (uint32_t)crc32(w->stored_crc, w->out, (uInt)n);
    w->z.next_out = w->out;
    w->z.avail_out = OUT_CHUNK;
    return tli_afile_write(&w->f, w->out, n);
}

static tl_status deflate_step(writer *w, int flush)
{
    int rc = deflate(&w->z, flush);
    if (rc == Z_STREAM_ERROR)
        return tli_error(TL_EIO, "%s: %s: zlib failed while compressing", w->f.fn, w->f.path);
    return drain(w);
}

/* Append raw payload bytes. */
static tl_status put(writer *w, const void *data, size_t n)
{
    const uint8_t *p = data;
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        w->raw_crc = (uint32_t)crc32(w->raw_crc, p, chunk);
        w->raw += chunk;
        w->z.next_in = (Bytef *)(uintptr_t)p;
        w->z.avail_in = chunk;
        while (w->z.avail_in > 0) {
            tl_status st = deflate_step(w, Z_NO_FLUSH);
            if (st)
                return st;
        }
        p += chunk;
        n -= chunk;
    }
    return TL_OK;
}

static tl_status section_head(writer *w, const char *tag, uint64_t len)
{
    uint8_t h[TLI_SECTION_HEAD];
    memcpy(h, tag, 4);
    tli_put_le64(h + 4, len);
    return put(w, h, sizeof h);
}

static tl_status section(writer *w, const char *tag, tli_wbuf *body)
{
    if (body->failed)
        return tli_error(TL_ENOMEM, "%s: %s: out of memory", w->f.fn, w->f.path);
    tl_status st = section_head(w, tag, body->len);
    if (st == TL_OK)
        st = put(w, body->data, body->len);
    body->len = 0;
    return st;
}

static tl_status put_f32s(writer *w, const float *v, size_t count);

static tl_status tensor(writer *w, size_t layer, size_t param, uint32_t slot, const float *v, size_t count)
{
    uint8_t meta[TLI_TENS_META];
    tli_put_le32(meta, (uint32_t)layer);
    tli_put_le32(meta + 4, (uint32_t)param);
    tli_put_le32(meta + 8, slot);
    tli_put_le32(meta + 12, TLI_DTYPE_F32);
    tli_put_le64(meta + 16, count);
    tl_status st = section_head(w, TLI_TAG_TENSOR, TLI_TENS_META + (uint64_t)count * sizeof(float));
    if (st || (st = put(w, meta, sizeof meta)))
        return st;
    return put_f32s(w, v, count);
}

/* ESTP: an unfinished fit's early stopping, then its best-weights copy. */
static tl_status early_section(writer *w, const tli_early_state *s)
{
    uint8_t head[TLI_ESTP_SIZE];
    uint64_t best;
    memcpy(&best, &s->best, sizeof best);
    tli_put_le32(head, (uint32_t)s->monitor);
    tli_put_le32(head + 4, s->wait);
    tli_put_le32(head + 8, s->best_epoch);
    tli_put_le32(head + 12, s->epochs);
    tli_put_le64(head + 16, best);
    tli_put_le64(head + 24, s->copy ? s->count : 0);
    const size_t count = s->copy ? s->count : 0;
    tl_status st = section_head(w, TLI_TAG_EARLY, TLI_ESTP_SIZE + (uint64_t)count * sizeof(float));
    if (st || (st = put(w, head, sizeof head)))
        return st;
    return put_f32s(w, s->copy, count);
}

static tl_status put_f32s(writer *w, const float *v, size_t count)
{
    tl_status st;
    if (tli_host_is_le())
        return put(w, v, count * sizeof(float));
    /* Big-endian hosts: through a small buffer in file order. */
    uint8_t buf[4096];
    for (size_t i = 0; i < count;) {
        size_t k = 0;
        for (; k < sizeof buf / 4 && i < count; k++, i++)
            tli_put_le32(buf + 4 * k, tli_f32_bits(v[i]));
        if ((st = put(w, buf, 4 * k)))
            return st;
    }
    return TL_OK;
}

static void shape_to(tli_wbuf *b, const tl_shape *s)
{
    tli_wbuf_u32(b, s->rank);
    for (uint32_t i = 0; i < s->rank; i++)
        tli_wbuf_u32(b, s->dims[i]);
}

/* Whether format 1.0 holds layer l: a kind 1.0 had, taking the previous
 * layer, an activation 1.0 had, every field past 1.0's at its default, no
 * state tensors. */
static bool fits_1_0(const tl_layer *l)
{
    uint32_t prev = l->index ? (uint32_t)(l->index - 1) : TLI_INPUT_MODEL;
    if (l->ops->kind > TL_LAYER_DENSE || l->ninputs != 1 || l->inputs[0] != prev || l->act > TL_ACT_TANH)
        return false;
    for (size_t i = l->ops->nfields_v1_0; i < l->ops->nfields; i++)
        if (tli_field_get(l->cfg, &l->ops->fields[i]) != l->ops->fields[i].def)
            return false;
    for (size_t p = 0; p < l->nparams; p++)
        if (l->params[p].role != TLI_ROLE_PARAM)
            return false;
    return true;
}

/* The oldest minor version that holds the model, so that libtl 1.0 reads
 * the files of every model it could have built itself. A learning-rate
 * schedule (SCHD) came with 1.1. */
static uint32_t minor_for(const tl_model *m, bool with_opt)
{
    if (with_opt && tli_schedule_active(&m->opt->sched))
        return TL_CHECKPOINT_VERSION_MINOR;
    if (with_opt && !tli_loss_options_default(m)) /* LOSS came with 1.1 */
        return TL_CHECKPOINT_VERSION_MINOR;
    if (with_opt && m->early.pending) /* ESTP too */
        return TL_CHECKPOINT_VERSION_MINOR;
    for (size_t i = 0; i < m->nlayers; i++)
        if (!fits_1_0(m->layers[i]))
            return TL_CHECKPOINT_VERSION_MINOR;
    return 0;
}

/* A LAYR record (docs/format-checkpoint.md): the common fields; from 1.1
 * the kind's name and the inputs; the kind's settings as its 32-bit fields
 * (1.1 counts them, 1.0 has the kind's 1.0 fields); the output shape; and
 * each tensor's name, role (1.1) and shape. */
static void layer_body(tli_wbuf *b, const tl_layer *l, uint32_t minor)
{
    size_t name_len = strlen(l->name), kind_len = strlen(l->ops->type_name);
    tli_wbuf_u32(b, (uint32_t)l->ops->kind);
    tli_wbuf_u8(b, (uint8_t)l->act);
    tli_wbuf_u8(b, (uint8_t)(l->use_bias ? 1 : 0));
    tli_wbuf_u8(b, (uint8_t)(l->trainable ? 1 : 0));
    tli_wbuf_u8(b, (uint8_t)name_len);
    tli_wbuf_f32(b, l->lr_scale);
    tli_wbuf_bytes(b, l->name, name_len);
    size_t nfields = l->ops->nfields_v1_0;
    if (minor >= 1) {
        tli_wbuf_u8(b, (uint8_t)kind_len);
        tli_wbuf_bytes(b, l->ops->type_name, kind_len);
        tli_wbuf_u32(b, (uint32_t)l->ninputs);
        for (size_t k = 0; k < l->ninputs; k++)
            tli_wbuf_u32(b, l->inputs[k]);
        nfields = l->ops->nfields;
        tli_wbuf_u32(b, (uint32_t)nfields);
    }
    for (size_t i = 0; i < nfields; i++)
        tli_wbuf_u32(b, tli_field_get(l->cfg, &l->ops->fields[i]));
    shape_to(b, &l->out_shape);
    tli_wbuf_u32(b, (uint32_t)l->nparams);
    for (size_t p = 0; p < l->nparams; p++) {
        size_t n = strlen(l->params[p].name);
        tli_wbuf_u8(b, (uint8_t)n);
        tli_wbuf_bytes(b, l->params[p].name, n);
        if (minor >= 1)
            tli_wbuf_u8(b, (uint8_t)l->params[p].role);
        shape_to(b, &l->params[p].shape);
    }
}

static void f64_to(tli_wbuf *b, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    tli_wbuf_u64(b, bits);
}

/* A SCHD record (docs/format-checkpoint.md): the settings as
 * tl_schedule_options has them, then the counters. */
static void schedule_body(tli_wbuf *b, const tli_schedule *s)
{
    const tl_schedule_options *o = &s->o;
    tli_wbuf_u32(b, (uint32_t)o->kind);
    tli_wbuf_u32(b, (uint32_t)o->monitor);
    tli_wbuf_f32(b, o->gamma);
    tli_wbuf_u32(b, o->step_size);
    tli_wbuf_u32(b, o->num_milestones);
    for (int i = 0; i < TL_SCHEDULE_MAX_MILESTONES; i++)
        tli_wbuf_u32(b, o->milestones[i]);
    tli_wbuf_u64(b, o->total_steps);
    tli_wbuf_u64(b, o->warmup_steps);
    const float f[6] = {o->warmup_start_factor, o->min_lr, o->pct_start, o->div_factor, o->final_div_factor,
                        o->factor};
    for (int i = 0; i < 6; i++)
        tli_wbuf_f32(b, f[i]);
    tli_wbuf_u32(b, o->patience);
    tli_wbuf_f32(b, o->min_delta);
    tli_wbuf_u32(b, o->cooldown);
    tli_wbuf_u64(b, s->origin);
    tli_wbuf_u64(b, s->total);
    tli_wbuf_u32(b, s->epoch);
    tli_wbuf_u32(b, s->bad);
    tli_wbuf_u32(b, s->cooldown_left);
    tli_wbuf_u32(b, 0);
    f64_to(b, s->best);
    f64_to(b, s->scale);
}

static tl_status write_payload(writer *w, const tl_model *m, bool with_opt, uint32_t minor, tli_wbuf *b)
{
    /* MODL */
    for (uint32_t d = 0; d < 3; d++)
        tli_wbuf_u32(b, m->input.dims[d]);
    tli_wbuf_u64(b, m->seed);
    tli_wbuf_u32(b, m->threads_req);
    tli_wbuf_u32(b, (uint32_t)m->nlayers);
    for (int i = 0; i < 4; i++)
        tli_wbuf_u64(b, m->train_rng.s[i]);
    tl_status st = section(w, TLI_TAG_MODEL, b);
    for (size_t i = 0; st == TL_OK && i < m->nlayers; i++) {
        const tl_layer *l = m->layers[i];
        layer_body(b, l, minor);
        st = section(w, TLI_TAG_LAYER, b);
        for (size_t p = 0; st == TL_OK && p < l->nparams; p++)
            st = tensor(w, i, p, TLI_SLOT_VALUE, l->params[p].value, l->params[p].count);
    }
    if (st == TL_OK && with_opt) {
        const tl_optimizer *o = m->opt;
        tli_wbuf_u32(b, (uint32_t)o->kind);
        tli_wbuf_u32(b, (uint32_t)m->loss);
        tli_wbuf_u64(b, o->steps);
        float f[6] = {o->lr, o->beta1, o->beta2, o->eps, o->momentum, o->weight_decay};
        for (int i = 0; i < 6; i++)
            tli_wbuf_f32(b, f[i]);
        tli_wbuf_u8(b, (uint8_t)(o->nesterov ? 1 : 0));
        tli_wbuf_bytes(b, "\0\0\0", 3);
        st = section(w, TLI_TAG_OPTIM, b);
        if (st == TL_OK && tli_schedule_active(&o->sched)) {
            schedule_body(b, &o->sched);
            st = section(w, TLI_TAG_SCHEDULE, b);
        }
        if (st == TL_OK && !tli_loss_options_default(m)) {
            /* LOSS: the cross-entropy loss's options; absent at the defaults. */
            tli_wbuf_u32(b, (uint32_t)m->nclass_weights);
            tli_wbuf_f32(b, m->label_smoothing);
            for (size_t c = 0; c < m->nclass_weights; c++)
                tli_wbuf_f32(b, m->class_weights[c]);
            st = section(w, TLI_TAG_LOSS, b);
        }
        /* ESTP: the early stopping of a fit under way (a checkpoint fit
         * writes) or interrupted; absent otherwise. */
        if (st == TL_OK && m->early.pending)
            st = early_section(w, &m->early);
        uint32_t slots = tli_optim_kind_slots(o->kind);
        for (size_t i = 0; st == TL_OK && i < m->nlayers; i++) {
            const tl_layer *l = m->layers[i];
            for (size_t p = 0; st == TL_OK && p < l->nparams; p++)
                for (uint32_t k = 0; st == TL_OK && k < slots; k++)
                    if (l->params[p].state[k])
                        st = tensor(w, i, p, TLI_SLOT_STATE0 + k, l->params[p].state[k], l->params[p].count);
        }
    }
    if (st == TL_OK)
        st = section(w, TLI_TAG_END, b);
    return st;
}

static tl_status finish(writer *w, uint32_t minor, uint8_t header[TLI_CKPT_HEADER_SIZE])
{
    int rc;
    do {
        rc = deflate(&w->z, Z_FINISH);
        if (rc == Z_STREAM_ERROR)
            return tli_error(TL_EIO, "%s: %s: zlib failed while compressing", w->f.fn, w->f.path);
        tl_status st = drain(w);
        if (st)
            return st;
    } while (rc != Z_STREAM_END);
    memset(header, 0, TLI_CKPT_HEADER_SIZE);
    memcpy(header, TLI_CKPT_MAGIC, 8);
    tli_put_le16(header + 8, TL_CHECKPOINT_VERSION_MAJOR);
    tli_put_le16(header + 10, (uint16_t)minor);
    header[12] = TLI_CKPT_COMPRESSION_ZLIB;
    tli_put_le64(header + 16, w->raw);
    tli_put_le64(header + 24, w->f.written - TLI_CKPT_HEADER_SIZE);
    tli_put_le32(header + 32, w->raw_crc);
    tli_put_le32(header + 36, w->stored_crc);
    tli_put_le32(header + 44, (uint32_t)crc32(0L, header, 44));
    return tli_afile_pwrite(&w->f, header, TLI_CKPT_HEADER_SIZE, 0);
}

tl_status tl_model_save(const tl_model *m, const char *path, const tl_save_options *opts)
{
    const char *fn = "tl_model_save";
    if (m == NULL || path == NULL)
        return tli_error(TL_EINVAL, "%s: %s is NULL", fn, m ? "path" : "model");
    tl_save_options o = TL_SAVE_OPTIONS_INIT;
    tl_status read = tli_options_read(&o, opts, &save_type, fn);
    if (read)
        return read;
    if (o.compression_level < 0 || o.compression_level > 9)
        return tli_error(TL_EINVAL, "%s: compression level %d is outside 0..9", fn, o.compression_level);
    tl_status graph = tli_model_check_graph(m, fn);
    if (graph)
        return graph;
    if (m->nlayers > TLI_CKPT_MAX_LAYERS)
        return tli_error(TL_ETOOBIG, "%s: %s: %zu layers exceed the format's limit of %u", fn, path, m->nlayers,
                         TLI_CKPT_MAX_LAYERS);
    const bool with_opt = o.include_optimizer && m->opt != NULL && m->loss != 0;
    const uint32_t minor = minor_for(m, with_opt);

    writer w;
    memset(&w, 0, sizeof w);
    tl_status st = tli_afile_open(&w.f, path, fn);
    if (st)
        return st;
    tli_wbuf b = {0};
    uint8_t header[TLI_CKPT_HEADER_SIZE] = {0};
    w.out = tli_malloc(OUT_CHUNK);
    w.z.zalloc = tli_zalloc;
    w.z.zfree = tli_zfree;
    w.z.opaque = Z_NULL;
    if (w.out == NULL) {
        st = tli_error(TL_ENOMEM, "%s: %s: out of memory", fn, path);
        goto fail;
    }
    /* Float data hardly ever repeat, so LZ77's match search costs much and
     * finds little: up to level 6, run-length matches plus Huffman coding
     * give nearly the same size several times faster. 7..9 search fully. */
    int strategy = o.compression_level <= 6 ? Z_RLE : Z_DEFAULT_STRATEGY;
    int rc = deflateInit2(&w.z, o.compression_level, Z_DEFLATED, 15, 8, strategy);
    if (rc != Z_OK) {
        st = tli_error(rc == Z_MEM_ERROR ? TL_ENOMEM : TL_EIO, "%s: %s: cannot start zlib (%d)", fn, path, rc);
        goto fail;
    }
    w.z_live = true;
    w.z.next_out = w.out;
    w.z.avail_out = OUT_CHUNK;
    w.raw_crc = w.stored_crc = (uint32_t)crc32(0L, Z_NULL, 0);
    /* Room for the header, written last. */
    if ((st = tli_afile_write(&w.f, header, sizeof header)) || (st = write_payload(&w, m, with_opt, minor, &b)) ||
        (st = finish(&w, minor, header)))
        goto fail;
    deflateEnd(&w.z);
    tli_free(w.out);
    tli_wbuf_free(&b);
    return tli_afile_commit(&w.f);
fail:
    if (w.z_live)
        deflateEnd(&w.z);
    tli_free(w.out);
    tli_wbuf_free(&b);
    tli_afile_abort(&w.f);
    return st;
}
