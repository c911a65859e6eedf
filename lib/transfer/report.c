/* report.c - the per-layer report of a parameter transfer. */
#include <stdio.h>
#include <string.h>

#include "transfer.h"

const char *tl_transfer_outcome_str(tl_transfer_outcome outcome)
{
    switch (outcome) {
    case TL_TRANSFER_COPIED: return "copied";
    case TL_TRANSFER_NOT_SELECTED: return "not selected";
    case TL_TRANSFER_NO_PARAMS: return "no parameters";
    case TL_TRANSFER_KIND_DIFFERS: return "kind differs";
    case TL_TRANSFER_SHAPE_DIFFERS: return "shape differs";
    case TL_TRANSFER_NO_DESTINATION: return "no destination layer";
    case TL_TRANSFER_NOT_IN_SOURCE: return "not in source";
    }
    return "unknown";
}

tl_status tli_report_new(tl_transfer_report **out, size_t capacity)
{
    tl_transfer_report *r = tli_calloc(1, sizeof *r);
    tli_report_entry *e = tli_calloc(capacity ? capacity : 1, sizeof *e);
    if (r == NULL || e == NULL) {
        tli_free(r);
        tli_free(e);
        *out = NULL;
        return tli_error(TL_ENOMEM, "out of memory allocating a transfer report of %zu entries", capacity);
    }
    r->entries = e;
    r->cap = capacity ? capacity : 1;
    *out = r;
    return TL_OK;
}

tli_report_entry *tli_report_add(tl_transfer_report *r, tl_transfer_outcome outcome, const tl_layer *src,
                                 const tl_layer *dst)
{
    if (r->count == r->cap)
        return NULL; /* sized by the caller; never happens */
    tli_report_entry *e = &r->entries[r->count++];
    e->outcome = outcome;
    e->src_index = src ? src->index : SIZE_MAX;
    e->dst_index = dst ? dst->index : SIZE_MAX;
    snprintf(e->src, sizeof e->src, "%s", src ? src->name : "");
    snprintf(e->dst, sizeof e->dst, "%s", dst ? dst->name : "");
    return e;
}

void tl_transfer_report_free(tl_transfer_report *r)
{
    if (r == NULL)
        return;
    tli_free(r->entries);
    tli_free(r);
}

size_t tl_transfer_report_count(const tl_transfer_report *r)
{
    return r ? r->count : 0;
}

size_t tl_transfer_report_params_copied(const tl_transfer_report *r)
{
    size_t n = 0;
    if (r)
        for (size_t i = 0; i < r->count; i++)
            n += r->entries[i].params;
    return n;
}

size_t tl_transfer_report_count_outcome(const tl_transfer_report *r, tl_transfer_outcome outcome)
{
    size_t n = 0;
    if (r)
        for (size_t i = 0; i < r->count; i++)
            n += r->entries[i].outcome == outcome;
    return n;
}

tl_status tl_transfer_report_entry(tl_transfer_outcome *out_outcome, const char **out_src_layer,
                                   size_t *out_src_index, const char **out_dst_layer, size_t *out_dst_index,
                                   size_t *out_params, const char **out_reason, const tl_transfer_report *r,
                                   size_t i)
{
    if (r == NULL)
        return tli_error(TL_EINVAL, "tl_transfer_report_entry: report is NULL");
    if (i >= r->count)
        return tli_error(TL_ERANGE, "tl_transfer_report_entry: entry %zu is out of range (the report has %zu)", i,
                         r->count);
    const tli_report_entry *e = &r->entries[i];
    if (out_outcome)
        *out_outcome = e->outcome;
    if (out_src_layer)
        *out_src_layer = e->src;
    if (out_src_index)
        *out_src_index = e->src_index;
    if (out_dst_layer)
        *out_dst_layer = e->dst;
    if (out_dst_index)
        *out_dst_index = e->dst_index;
    if (out_params)
        *out_params = e->params;
    if (out_reason)
        *out_reason = e->reason;
    return TL_OK;
}

tl_status tl_transfer_report_write(const tl_transfer_report *r, tl_write_fn write, void *payload)
{
    if (r == NULL || write == NULL)
        return tli_error(TL_EINVAL, "tl_transfer_report_write: %s is NULL", r ? "write" : "report");
    char line[512];
    int n = snprintf(line, sizeof line, "%-24s %-24s %-22s %10s  %s\n", "source layer", "destination layer",
                     "outcome", "params", "reason");
    if (write(line, (size_t)n, payload))
        return tli_error(TL_ECANCELED, "tl_transfer_report_write: the write callback asked to stop");
    for (size_t i = 0; i < r->count; i++) {
        const tli_report_entry *e = &r->entries[i];
        n = snprintf(line, sizeof line, "%-24s %-24s %-22s %10zu  %s\n", e->src[0] ? e->src : "-",
                     e->dst[0] ? e->dst : "-", tl_transfer_outcome_str(e->outcome), e->params, e->reason);
        size_t len = n < 0 ? 0 : (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
        if (write(line, len, payload))
            return tli_error(TL_ECANCELED, "tl_transfer_report_write: the write callback asked to stop");
    }
    n = snprintf(line, sizeof line, "%zu parameters copied\n", tl_transfer_report_params_copied(r));
    if (write(line, (size_t)n, payload))
        return tli_error(TL_ECANCELED, "tl_transfer_report_write: the write callback asked to stop");
    return TL_OK;
}
