/*
 * engine_split.c - a prediction on several threads split over the batch:
 * each thread runs every layer on its own slice of the images.
 *
 * Split layer by layer (each kernel's own parallel loop), a batch-64
 * prediction of ResNet-20 opens about 20 parallel regions, and each ends
 * in a barrier where the threads wait for the slowest; with passive
 * OpenMP threads each region also wakes the others. At inference the
 * images are independent, so one region per prediction does: thread t
 * takes images [n t / T, n (t + 1) / T) through the whole model, and
 * nothing waits until the end. Every kernel computes an image the same
 * way whatever batch it comes in (the tests check it against the one-
 * thread prediction, bit for bit), provided no piece is a single image:
 * a one-row product is a matrix-vector product (gemm.c), summed in
 * another order, so pieces hold at least two images.
 *
 * Each thread runs a shadow of the model: a copy of its struct and of
 * every layer's, refreshed from the model before each prediction, with
 * its own workspace (outputs, scratch) and its own derived caches (a
 * convolution's folded kernel), so no two threads write the same memory.
 * The shadows read the model's tensors; nothing of the model is written.
 */
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "engine.h"

/* Each thread runs its slice through the model a piece at a time, of
 * about PIECE_BYTES of the largest layer output: the piece's activations
 * (the inference workspace's few live outputs) then stay in the caches
 * instead of streaming through memory from one layer to the next, on one
 * thread too. MobileNetV2 (384 KiB per image at 32 x 32) went 8 images a
 * piece, with 20% less CPU time than a whole batch of 64 per layer;
 * ResNet-20 (64 KiB) 32, 5% less; pieces of 6 to 32 images measured
 * alike. */
#define PIECE_BYTES (3u << 20)
#define PIECE_MAX 32

static size_t piece_of(const tl_model *m)
{
    size_t most = 1;
    for (size_t i = 0; i < m->nlayers; i++)
        if (m->layers[i]->out_size > most)
            most = m->layers[i]->out_size;
    const size_t p = PIECE_BYTES / (most * sizeof(float));
    return p < 2 ? 2 : p > PIECE_MAX ? PIECE_MAX : p;
}

struct tli_split {
    uint32_t threads;
    tl_model *shadows;  /* threads models */
    tl_layer *layers;   /* threads * nlayers layers */
    tl_layer **ptrs;    /* threads * nlayers: each shadow's layer array */
};

static void free_shadow_parts(tli_split *s, size_t nlayers)
{
    for (uint32_t t = 0; t < s->threads; t++)
        tli_free_aligned(s->shadows[t].ws.arena);
    for (size_t i = 0; i < (size_t)s->threads * nlayers; i++)
        tli_free_aligned(s->layers[i].cache);
}

void tli_split_free(tl_model *m)
{
    tli_split *s = m->ws.split;
    if (s == NULL)
        return;
    free_shadow_parts(s, m->nlayers);
    tli_free(s->shadows);
    tli_free(s->layers);
    tli_free(s->ptrs);
    tli_free(s);
    m->ws.split = NULL;
}

/* Copy the model's layer into its shadow, keeping what the shadow owns:
 * its workspace views and its cache (whose key names the shadow's own
 * layers, so it stays valid across predictions while nothing changed). */
static void refresh_layer(tl_layer *s, const tl_layer *l)
{
    float *out = s->out;
    void *scratch = s->scratch, *cache = s->cache;
    uint64_t key[4];
    memcpy(key, s->cache_key, sizeof key);
    memcpy(s, l, sizeof *s);
    s->out = out;
    s->scratch = scratch;
    s->cache = cache;
    memcpy(s->cache_key, key, sizeof key);
}

/* The shadows for `threads` threads, each with a workspace for `piece`
 * images; made on first use, kept with the workspace (tli_workspace_free
 * drops them with it when the structure or thread count changes). */
static tl_status ensure_shadows(tl_model *m, uint32_t threads, size_t piece)
{
    tli_split *s = m->ws.split;
    const size_t n = m->nlayers;
    if (s && s->threads != threads)
        tli_split_free(m), s = NULL;
    if (s == NULL) {
        s = tli_calloc(1, sizeof *s);
        if (s == NULL)
            return tli_error(TL_ENOMEM, "out of memory for the batch split of %u threads", threads);
        s->threads = threads;
        s->shadows = tli_calloc(threads, sizeof *s->shadows);
        s->layers = tli_calloc((size_t)threads * n, sizeof *s->layers);
        s->ptrs = tli_calloc((size_t)threads * n, sizeof *s->ptrs);
        if (!s->shadows || !s->layers || !s->ptrs) {
            tli_free(s->shadows), tli_free(s->layers), tli_free(s->ptrs), tli_free(s);
            return tli_error(TL_ENOMEM, "out of memory for the batch split of %u threads", threads);
        }
        for (uint32_t t = 0; t < threads; t++) {
            tl_model *sh = &s->shadows[t];
            memcpy(sh, m, sizeof *sh);
            memset(&sh->ws, 0, sizeof sh->ws);
            sh->threads = sh->threads_req = 1;
            sh->layers = s->ptrs + (size_t)t * n;
            for (size_t i = 0; i < n; i++) {
                sh->layers[i] = &s->layers[(size_t)t * n + i];
                memcpy(sh->layers[i], m->layers[i], sizeof(tl_layer));
                sh->layers[i]->out = NULL;
                sh->layers[i]->scratch = NULL;
                sh->layers[i]->cache = NULL;
                memset(sh->layers[i]->cache_key, 0, sizeof sh->layers[i]->cache_key);
            }
        }
        m->ws.split = s;
    }
    for (uint32_t t = 0; t < threads; t++) {
        tl_model *sh = &s->shadows[t];
        for (size_t i = 0; i < n; i++)
            refresh_layer(sh->layers[i], m->layers[i]);
        tl_status st = tli_workspace_ensure(sh, piece, false);
        if (st)
            return st;
    }
    return TL_OK;
}

bool tli_split_worth(const tl_model *m, size_t n)
{
    /* One thread: worth it when the batch is more than one piece. */
    if (m->threads <= 1)
        return n > piece_of(m) + 1;
#ifdef _OPENMP
    return n >= 2 * (size_t)m->threads;
#else
    return false; /* no threads of our own: BLIS threads each product */
#endif
}

/* Run images [lo, hi) (at least two) through shadow `sh` in pieces of
 * `piece` images, the last one of up to piece + 1: none is a single
 * image. */
static void run_slice(tl_model *sh, size_t piece, const float *x, size_t in_size, float *out, size_t width,
                      size_t lo, size_t hi)
{
    while (lo < hi) {
        const size_t b = hi - lo <= piece + 1 ? hi - lo : piece;
        tli_exec ex = tli_exec_for(sh, b, false);
        const float *y = tli_forward(sh, &ex, x + lo * in_size, false);
        memcpy(out + lo * width, y, sizeof(float) * b * width);
        lo += b;
    }
}

tl_status tli_split_predict(tl_model *m, const float *x, size_t n, float *out)
{
    const uint32_t threads = m->threads;
    const size_t piece = piece_of(m);
    tl_status st = ensure_shadows(m, threads, piece + 1);
    if (st)
        return st;
    tli_split *s = m->ws.split;
    const size_t width = tli_model_out_size(m), in_size = m->in_size;
    if (threads == 1) {
        run_slice(&s->shadows[0], piece, x, in_size, out, width, 0, n);
        return TL_OK;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
    {
        /* Nested in a caller's region the team may be smaller: the
         * threads there are take the slices in turn. */
        const uint32_t nt = (uint32_t)omp_get_num_threads();
        for (uint32_t t = (uint32_t)omp_get_thread_num(); t < threads; t += nt)
            run_slice(&s->shadows[t], piece, x, in_size, out, width, n * t / threads, n * (t + 1) / threads);
    }
#endif
    return TL_OK;
}
