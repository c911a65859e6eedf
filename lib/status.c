/* status.c - status names and the thread-local last-error sentence. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core.h"

/* Long enough for two file names and two shapes; longer text is cut. */
#define TLI_ERROR_CAP 1024

static _Thread_local char last_error[TLI_ERROR_CAP];

const char *tl_status_str(tl_status status)
{
    switch (status) {
    case TL_OK: return "TL_OK: success";
    case TL_EINVAL: return "TL_EINVAL: invalid argument";
    case TL_ENOMEM: return "TL_ENOMEM: out of memory";
    case TL_ESHAPE: return "TL_ESHAPE: shapes do not match";
    case TL_ESTATE: return "TL_ESTATE: call not valid in the object's state";
    case TL_ENOTFOUND: return "TL_ENOTFOUND: not found";
    case TL_EIO: return "TL_EIO: input/output error";
    case TL_EFORMAT: return "TL_EFORMAT: malformed data";
    case TL_ETRUNCATED: return "TL_ETRUNCATED: input ends early";
    case TL_ECHECKSUM: return "TL_ECHECKSUM: checksum mismatch";
    case TL_EVERSION: return "TL_EVERSION: unsupported version";
    case TL_ERANGE: return "TL_ERANGE: value out of range";
    case TL_ENUMERIC: return "TL_ENUMERIC: non-finite value";
    case TL_ECANCELED: return "TL_ECANCELED: canceled by a callback";
    case TL_ETOOBIG: return "TL_ETOOBIG: size too large";
    case TL_EUNSUPPORTED: return "TL_EUNSUPPORTED: valid input libtl cannot represent";
    case TL_EPEER: return "TL_EPEER: another process of the run failed";
    }
    return "unknown status";
}

const char *tl_last_error(void)
{
    return last_error;
}

void tl_clear_error(void)
{
    last_error[0] = '\0';
}

tl_status tl_set_last_error(tl_status status, const char *message)
{
    return tli_error(status, "%s", message ? message : "");
}

tl_status tli_error(tl_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

void tli_error_prefix(const char *fmt, ...)
{
    char text[TLI_ERROR_CAP];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof text ? (size_t)n : sizeof text - 1;
    /* Append ": " and the old message, cut to fit. */
    size_t old_len = strlen(last_error);
    if (len + 2 < sizeof text) {
        memcpy(text + len, ": ", 2);
        len += 2;
        size_t room = sizeof text - 1 - len;
        size_t take = old_len < room ? old_len : room;
        memcpy(text + len, last_error, take);
        len += take;
    }
    text[len] = '\0';
    memcpy(last_error, text, len + 1);
}
