/*
 * tensors.c - every tensor of a model as one float buffer, through the
 * public API (libtl-mpi sees only the public headers): the broadcast from rank 0 at the
 * start of a fit and the cross-process hash check.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"

size_t tlm_tensor_count(const tl_model *m)
{
    size_t total = 0;
    for (size_t i = 0; i < tl_model_num_layers(m); i++) {
        tl_layer *l = NULL;
        if (tl_model_layer(&l, m, i) == TL_OK)
            total += tl_layer_param_count(l);
    }
    return total;
}

/* Visit every tensor: get (out) or set (in). */
static tl_status each(tl_model *m, float *out, const float *in)
{
    size_t at = 0;
    for (size_t i = 0; i < tl_model_num_layers(m); i++) {
        tl_layer *l = NULL;
        tl_status st = tl_model_layer(&l, m, i);
        for (size_t k = 0; st == TL_OK && k < tl_layer_num_params(l); k++) {
            tl_param_info info;
            if ((st = tl_layer_param_info(&info, l, k)))
                break;
            st = out ? tl_layer_get_weights(out + at, info.count, l, k)
                     : tl_layer_set_weights(l, k, in + at, info.count);
            at += info.count;
        }
        if (st)
            return st;
    }
    return TL_OK;
}

tl_status tlm_tensors_get(const tl_model *m, float *out)
{
    return each((tl_model *)m, out, NULL);
}

tl_status tlm_tensors_set(tl_model *m, const float *in)
{
    return each(m, NULL, in);
}

/* FNV-1a over the bytes: not cryptographic, only to see a difference. */
static uint64_t fnv1a(const float *v, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    const unsigned char *p = (const unsigned char *)v;
    for (size_t i = 0; i < n * sizeof(float); i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

tl_status tlm_check_hash(tlm_comm *c)
{
    const size_t n = tlm_tensor_count(c->model);
    float *buf = malloc(n ? n * sizeof *buf : 1);
    tl_status st = buf ? tlm_tensors_get(c->model, buf) : tl_set_last_error(TL_ENOMEM, "libtl-mpi: out of memory "
                                                                                      "for the parameter hash");
    uint64_t mine = st == TL_OK ? fnv1a(buf, n) : 0;
    free(buf);
    /* The status first, as every operation; then max(h) and max(~h): equal
     * everywhere exactly when max(h) == ~max(~h), i.e. max == min. */
    if ((st = tlm_step(c, st, NULL, 0, NULL, 0)))
        return st;
    uint64_t hm[2] = {mine, ~mine};
    int err = MPI_Allreduce(MPI_IN_PLACE, hm, 2, MPI_UINT64_T, MPI_MAX, c->comm);
    if (err != MPI_SUCCESS) {
        c->over = true;
        return tlm_mpi_error(c, "MPI_Allreduce (parameter hash)", err);
    }
    if (hm[0] != ~hm[1]) {
        c->over = true;
        char msg[512];
        snprintf(msg, sizeof msg, "%s: the parameters differ across the %d ranks after step %llu (rank %d's hash "
                 "%016llx; the largest %016llx, the smallest %016llx)", c->fn, c->size, (unsigned long long)c->steps,
                 c->rank, (unsigned long long)mine, (unsigned long long)hm[0], (unsigned long long)~hm[1]);
        return tl_set_last_error(TL_ESTATE, msg);
    }
    return TL_OK;
}
