/*
 * engine_split.c - a prediction on several threads split over the batch:
 * each thread runs every layer on its own pieces of the images.
 *
 * Split layer by layer (each kernel's own parallel loop), a batch-64
 * prediction of ResNet-20 opens about 20 parallel regions, and each ends
 * in a barrier where the threads wait for the slowest; with passive
 * OpenMP threads each region also wakes the others. At inference the
 * images are independent, so one region per prediction does: the
 * threads take pieces of the batch as they come free, each piece through
 * the whole model, and nobody waits until the end. Every kernel computes an image the same
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
#include <stdatomic.h>
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

/* Run images [lo, lo + b) through shadow `sh`. */
static void run_piece(tl_model *sh, const float *x, size_t in_size, float *out, size_t width, size_t lo, size_t b)
{
    tli_exec ex = tli_exec_for(sh, b, false);
    const float *y = tli_forward(sh, &ex, x + lo * in_size, false);
    memcpy(out + lo * width, y, sizeof(float) * b * width);
}

/* The size of the next piece when `rest` images are left: a share of
 * them that shrinks as they go (as OpenMP's guided schedule), so a thread
 * slowed down near the end - by another process on its core - holds few
 * images back; at most `piece` (the cache's), else at least eight (each
 * piece repacks a dense head's weights in BLIS: the seed CNN at 2 threads
 * took 0.64 s for 400 batches with at least 8, 0.71 s with 4 and 0.74 s
 * with 32; ResNet-20 and MobileNetV2 the same with 4 and 8), and never
 * leaving a single image behind. */
static size_t next_piece(size_t rest, size_t piece, uint32_t threads)
{
    size_t b = threads == 1 ? piece : rest / (2 * (size_t)threads); /* one thread: nobody to wait for */
    b = b < 8 ? 8 : b;
    b = b > piece ? piece : b; /* the shadows hold piece + 1 */
    return rest <= b + 1 ? rest : b;
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
        for (size_t lo = 0, b; lo < n; lo += b)
            run_piece(&s->shadows[0], x, in_size, out, width, lo, b = next_piece(n - lo, piece, 1));
        return TL_OK;
    }
#ifdef _OPENMP
    /* The threads take pieces as they come free. Where the pieces begin
     * depends on timing; the bits do not (see the top). Nested in a
     * caller's region the team may be smaller than `threads`; each member
     * runs its own shadow. */
    atomic_size_t next = 0;
#pragma omp parallel num_threads(threads)
    {
        tl_model *sh = &s->shadows[omp_get_thread_num()];
        for (;;) {
            size_t lo = atomic_load(&next), b;
            do {
                b = lo < n ? next_piece(n - lo, piece, threads) : 0;
            } while (b && !atomic_compare_exchange_weak(&next, &lo, lo + b));
            if (b == 0)
                break;
            run_piece(sh, x, in_size, out, width, lo, b);
        }
    }
#endif
    return TL_OK;
}
