/*
 * st_names.c - tensor names in safetensors files: libtl's own
 * ("<layer>.kernel", "<layer>.weight", "<layer>.bias"; a batchnorm's
 * PyTorch counter "<layer>.num_batches_tracked"), and the caller's rename
 * map of {file name, libtl name} pairs.
 */
#include <stdio.h>
#include <string.h>

#include "../options.h"
#include "safetensors.h"

TLI_OPTIONS_TYPE_V1(safetensors_type, tl_safetensors_options, TL_SAFETENSORS_OPTIONS);

tl_status tl_safetensors_options_init(tl_safetensors_options *opts, unsigned int version)
{
    const tl_safetensors_options d = TL_SAFETENSORS_OPTIONS_INIT;
    return tli_options_init(opts, version, &d, &safetensors_type, "tl_safetensors_options_init");
}

tl_status tli_st_options(tl_safetensors_options *o, const tl_safetensors_options *opts, tl_tensor_layout layout,
                         const char *fn)
{
    tl_safetensors_options d = TL_SAFETENSORS_OPTIONS_INIT;
    tl_status read = tli_options_read(&d, opts, &safetensors_type, fn);
    if (read)
        return read;
    if (layout != TL_LAYOUT_KERAS && layout != TL_LAYOUT_PYTORCH)
        return tli_error(TL_EINVAL, "%s: unknown layout %d (TL_LAYOUT_KERAS or TL_LAYOUT_PYTORCH; there is no default)",
                         fn, (int)layout);
    if (d.policy != TL_TRANSFER_STRICT && d.policy != TL_TRANSFER_LENIENT)
        return tli_error(TL_EINVAL, "%s: unknown policy %d", fn, (int)d.policy);
    if (d.rename_count && d.rename == NULL)
        return tli_error(TL_EINVAL, "%s: rename is NULL but rename_count is %zu", fn, d.rename_count);
    for (size_t i = 0; i < 2 * d.rename_count; i++)
        if (d.rename[i] == NULL)
            return tli_error(TL_EINVAL, "%s: rename entry %zu (%s name of pair %zu) is NULL", fn, i,
                             i % 2 ? "libtl" : "file", i / 2);
    *o = d;
    return TL_OK;
}

const char *tli_st_to_libtl(const tl_safetensors_options *o, const char *file_name)
{
    for (size_t i = 0; i < o->rename_count; i++)
        if (strcmp(o->rename[2 * i], file_name) == 0)
            return o->rename[2 * i + 1];
    return file_name;
}

/* Does `name` equal "<layer>.<suffix>"? */
static bool is_name(const char *name, const char *layer, const char *suffix)
{
    size_t n = strlen(layer);
    return strncmp(name, layer, n) == 0 && name[n] == '.' && strcmp(name + n + 1, suffix) == 0;
}

const char *tli_st_to_file(const tl_safetensors_options *o, const tl_layer *l, size_t p, tl_tensor_layout layout,
                           char *buf, size_t cap)
{
    const tli_param *t = &l->params[p];
    for (size_t i = 0; i < o->rename_count; i++) {
        const char *lib = o->rename[2 * i + 1];
        if (is_name(lib, l->name, t->name) || is_name(lib, l->name, t->torch_name))
            return o->rename[2 * i];
    }
    snprintf(buf, cap, "%s.%s", l->name, layout == TL_LAYOUT_PYTORCH ? t->torch_name : t->name);
    return buf;
}

bool tli_st_resolve(const tl_model *m, const char *name, tl_layer **layer, size_t *param)
{
    const char *dot = strrchr(name, '.');
    if (dot == NULL || (size_t)(dot - name) > TL_MAX_NAME)
        return false;
    for (size_t i = 0; i < m->nlayers; i++) {
        tl_layer *l = m->layers[i];
        if (strncmp(l->name, name, (size_t)(dot - name)) != 0 || l->name[dot - name] != '\0')
            continue;
        /* A tensor by its Keras or its PyTorch name ("kernel" or "weight"). */
        for (size_t p = 0; p < l->nparams; p++)
            if (strcmp(dot + 1, l->params[p].name) == 0 || strcmp(dot + 1, l->params[p].torch_name) == 0) {
                *layer = l;
                *param = p;
                return true;
            }
        return false;
    }
    return false;
}

tl_layer *tli_st_resolve_counter(const tl_model *m, const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot == NULL || strcmp(dot + 1, TLI_ST_COUNTER) != 0 || (size_t)(dot - name) > TL_MAX_NAME)
        return NULL;
    for (size_t i = 0; i < m->nlayers; i++) {
        tl_layer *l = m->layers[i];
        if (strncmp(l->name, name, (size_t)(dot - name)) == 0 && l->name[dot - name] == '\0')
            return l;
    }
    return NULL;
}

const char *tli_st_counter_to_file(const tl_safetensors_options *o, const tl_layer *l, char *buf, size_t cap)
{
    for (size_t i = 0; i < o->rename_count; i++)
        if (is_name(o->rename[2 * i + 1], l->name, TLI_ST_COUNTER))
            return o->rename[2 * i];
    snprintf(buf, cap, "%s.%s", l->name, TLI_ST_COUNTER);
    return buf;
}
