/* options.c - reading and initialising versioned options structs; see options.h. */
#include <string.h>

#include "options.h"

static tl_status check(unsigned int version, const tli_options_type *t, const char *fn)
{
    if (version == 0 || version > t->current)
        return tli_error(TL_EVERSION, "%s: %s version %u is not supported (this libtl knows 1..%u; start from %s)", fn,
                         t->name, version, t->current, t->init_macro);
    return TL_OK;
}

tl_status tli_options_init(void *opts, unsigned int version, const void *defaults, const tli_options_type *t,
                           const char *fn)
{
    if (opts == NULL)
        return tli_error(TL_EINVAL, "%s: opts is NULL", fn);
    tl_status st = check(version, t, fn);
    if (st)
        return st;
    memcpy(opts, defaults, t->sizes[version]);
    memcpy(opts, &version, sizeof version);
    return TL_OK;
}

tl_status tli_options_read(void *dst, const void *src, const tli_options_type *t, const char *fn)
{
    if (src == NULL)
        return TL_OK;
    unsigned int version;
    memcpy(&version, src, sizeof version);
    tl_status st = check(version, t, fn);
    if (st)
        return st;
    memcpy(dst, src, t->sizes[version]);
    return TL_OK;
}
