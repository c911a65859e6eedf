/*
 * conv_algo.c - one convolution interface, two algorithms: im2col + BLIS
 * for any shape on any CPU, and direct AVX-512 kernels for the stride-1
 * convolutions with 16k filters that dominate CNN training. The layer asks
 * tli_conv_choose() once and passes the answer back in every call.
 *
 * The direct input gradient multiplies each output pixel's gradient by the
 * transposed kernel and adds the result straight into the input cells it
 * came from (col2im fused into the kernel).
 */
#include <string.h>

#include "conv_direct.h"

static bool is_pointwise(const tli_conv_geom *g)
{
    return g->k_h == 1 && g->k_w == 1 && g->s_h == 1 && g->s_w == 1 && g->pad_t == 0 && g->pad_l == 0;
}

bool tli_conv_algo_ok(tli_conv_algo algo, const tli_conv_geom *g, uint32_t filters)
{
    if (algo == TLI_CONV_GEMM)
        return true;
#ifdef TLI_HAVE_AVX512
    return algo == TLI_CONV_DIRECT && tli_cpu_has_avx512() && g->s_h == 1 && g->s_w == 1 && filters % 16 == 0;
#else
    (void)g, (void)filters;
    return false;
#endif
}

tli_conv_algo tli_conv_choose(const tli_conv_geom *g, uint32_t filters)
{
    return tli_conv_algo_ok(TLI_CONV_DIRECT, g, filters) ? TLI_CONV_DIRECT : TLI_CONV_GEMM;
}

/* ---- scratch layouts ------------------------------------------------------- */

/* The blocks the forward pass uses come first and their sizes depend only
 * on the geometry, so forward and backward agree on where they are. */
typedef struct conv_scratch {
    float *xpad;     /* DIRECT: padded input (kept for the weight gradient) */
    float *col;      /* GEMM: im2col matrix, reused for dcol; DIRECT: dcol */
    float *partials; /* DIRECT: per-thread weight-gradient sums */
    float *wt;       /* DIRECT: kernel transposed to (filters, k_h*k_w*in_c) */
    float *dxpad;    /* DIRECT: input gradient before cropping the padding */
} conv_scratch;

/* Height and width of the padded input a stride-1 convolution reads. */
static uint32_t padded_h(const tli_conv_geom *g)
{
    return g->out_h + g->k_h - 1;
}
static uint32_t padded_w(const tli_conv_geom *g)
{
    return g->out_w + g->k_w - 1;
}
static bool needs_pad(const tli_conv_geom *g)
{
    return padded_h(g) != g->in_h || padded_w(g) != g->in_w || g->pad_t || g->pad_l;
}

static size_t mul3(size_t a, size_t b, size_t c)
{
    size_t r;
    if (!tli_mul_ok(a, b, &r) || !tli_mul_ok(r, c, &r))
        return SIZE_MAX;
    return r;
}

/* Lay the scratch out (base NULL: only add up); returns the bytes or SIZE_MAX. */
static size_t layout(tli_conv_algo algo, const tli_conv_geom *g, uint32_t filters, size_t batch, uint32_t threads,
                     bool training, bool need_dx, char *base, conv_scratch *out)
{
    size_t sizes[5] = {0}; /* xpad, col, partials, wt, dxpad */
    const size_t pix = (size_t)g->out_h * g->out_w, k = tli_conv_k(g);
    const size_t wsize = k * filters;
    if (algo == TLI_CONV_GEMM) {
        if (!is_pointwise(g))
            sizes[1] = mul3(batch, pix, k);
    } else {
        const size_t padded = mul3(batch, (size_t)padded_h(g) * padded_w(g), g->in_c);
        if (needs_pad(g))
            sizes[0] = padded;
        if (training && threads > 1)
            sizes[2] = mul3(threads - 1, wsize, 1);
        if (training && need_dx) {
            if (g->in_c % 16 == 0) {
                sizes[3] = wsize;
                if (needs_pad(g))
                    sizes[4] = padded;
            } else {
                sizes[1] = mul3(batch, pix, k); /* dcol for col2im */
            }
        }
    }
    size_t off = 0;
    float **slots[5] = {&out->xpad, &out->col, &out->partials, &out->wt, &out->dxpad};
    for (int i = 0; i < 5; i++) {
        *slots[i] = NULL;
        if (sizes[i] == 0)
            continue;
        if (sizes[i] == SIZE_MAX || sizes[i] > (SIZE_MAX - off - 64) / sizeof(float))
            return SIZE_MAX;
        *slots[i] = base ? (float *)(void *)(base + off) : NULL;
        off += (sizes[i] * sizeof(float) + 63) & ~(size_t)63;
    }
    return off;
}

size_t tli_conv_scratch_bytes(tli_conv_algo algo, const tli_conv_geom *g, uint32_t filters, size_t batch,
                              uint32_t threads, bool training, bool need_dx)
{
    conv_scratch s;
    return layout(algo, g, filters, batch, threads, training, need_dx, NULL, &s);
}

/* ---- helpers ------------------------------------------------------------- */

/* dst (batch x (h+top+bottom) x (w+left+right) x c) = src with zero borders. */
static void pad_nhwc(uint32_t threads, const float *src, size_t batch, uint32_t h, uint32_t w, uint32_t c,
                     uint32_t top, uint32_t left, uint32_t ph, uint32_t pw, float *dst)
{
    const size_t row = (size_t)w * c, prow = (size_t)pw * c;
    (void)threads;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (long n = 0; n < (long)batch; n++) {
        float *img = dst + (size_t)n * ph * prow;
        const float *s = src + (size_t)n * h * row;
        for (uint32_t r = 0; r < ph; r++) {
            float *d = img + (size_t)r * prow;
            if (r < top || r >= top + h) {
                memset(d, 0, prow * sizeof(float));
                continue;
            }
            memset(d, 0, (size_t)left * c * sizeof(float));
            memcpy(d + (size_t)left * c, s + (size_t)(r - top) * row, row * sizeof(float));
            memset(d + (size_t)left * c + row, 0, (prow - row - (size_t)left * c) * sizeof(float));
        }
    }
}

/* dx (batch x h x w x c) = the interior of dxpad starting at (top, left). */
static void crop_nhwc(uint32_t threads, const float *src, size_t batch, uint32_t ph, uint32_t pw, uint32_t c,
                      uint32_t top, uint32_t left, uint32_t h, uint32_t w, float *dst)
{
    const size_t row = (size_t)w * c, prow = (size_t)pw * c;
    (void)threads;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (long n = 0; n < (long)batch; n++)
        for (uint32_t r = 0; r < h; r++)
            memcpy(dst + ((size_t)n * h + r) * row, src + ((size_t)n * ph + top + r) * prow + (size_t)left * c,
                   row * sizeof(float));
}

#ifdef TLI_HAVE_AVX512
static tli_direct_geom direct_geom(const tli_conv_geom *g, uint32_t filters)
{
    tli_direct_geom d = {padded_h(g), padded_w(g), g->in_c, g->out_h, g->out_w, g->k_h, g->k_w, filters};
    return d;
}
#endif

/* ---- forward --------------------------------------------------------------- */

void tli_conv_forward(uint32_t threads, tli_conv_algo algo, const tli_conv_geom *g, uint32_t filters,
                      const float *x, const float *w, const float *bias, tl_activation act, float *y, size_t batch,
                      void *scratch)
{
    conv_scratch s;
    const size_t m = batch * g->out_h * g->out_w, k = tli_conv_k(g);
    /* Only the leading blocks are used here; see conv_scratch. */
    layout(algo, g, filters, batch, 1, false, false, scratch, &s);
#ifdef TLI_HAVE_AVX512
    if (algo == TLI_CONV_DIRECT) {
        const float *src = x;
        if (needs_pad(g)) {
            pad_nhwc(threads, x, batch, g->in_h, g->in_w, g->in_c, g->pad_t, g->pad_l, padded_h(g), padded_w(g),
                     s.xpad);
            src = s.xpad;
        }
        tli_direct_geom d = direct_geom(g, filters);
        tli_direct_forward_avx512(threads, &d, src, w, bias, act == TL_ACT_RELU, y, batch);
        if (act != TL_ACT_RELU && act != TL_ACT_LINEAR)
            tli_bias_act_forward(threads, y, NULL, m, filters, act);
        return;
    }
#endif
    const float *col = x;
    if (!is_pointwise(g)) {
        tli_im2col(threads, g, x, batch, s.col);
        col = s.col;
    }
    tli_gemm(threads, m, filters, k, 1.0f, col, (ptrdiff_t)k, 1, w, (ptrdiff_t)filters, 1, 0.0f, y,
             (ptrdiff_t)filters, 1);
    tli_bias_act_forward(threads, y, bias, m, filters, act);
}

/* ---- backward -------------------------------------------------------------- */

static void gemm_dx(uint32_t threads, const tli_conv_geom *g, uint32_t filters, const float *dz, const float *w,
                    float *dx, size_t batch, float *col)
{
    const size_t m = batch * g->out_h * g->out_w, k = tli_conv_k(g);
    /* dcol (m x k) = dz (m x n) * W^T (n x k) */
    float *dcol = is_pointwise(g) ? dx : col;
    tli_gemm(threads, m, k, filters, 1.0f, dz, (ptrdiff_t)filters, 1, w, 1, (ptrdiff_t)filters, 0.0f, dcol,
             (ptrdiff_t)k, 1);
    if (!is_pointwise(g))
        tli_col2im(threads, g, dcol, batch, dx);
}

void tli_conv_backward(uint32_t threads, tli_conv_algo algo, const tli_conv_geom *g, uint32_t filters,
                       const float *x, const float *dz, const float *w, float *dw, float *dx, size_t batch,
                       void *scratch)
{
    conv_scratch s;
    const size_t m = batch * g->out_h * g->out_w, k = tli_conv_k(g);
    layout(algo, g, filters, batch, threads, true, dx != NULL, scratch, &s);
#ifdef TLI_HAVE_AVX512
    if (algo == TLI_CONV_DIRECT) {
        tli_direct_geom d = direct_geom(g, filters);
        if (dw)
            tli_direct_weight_grad_avx512(threads, &d, needs_pad(g) ? s.xpad : x, dz, dw, s.partials, batch);
        if (dx == NULL)
            return;
        if (g->in_c % 16 != 0) {
            gemm_dx(threads, g, filters, dz, w, dx, batch, s.col);
            return;
        }
        /* (k, filters) -> (filters, k): the kernel reads one row per filter. */
        const size_t kk = tli_conv_k(g), n = filters;
        for (size_t j = 0; j < kk; j++)
            for (size_t f = 0; f < n; f++)
                s.wt[f * kk + j] = w[j * n + f];
        float *target = needs_pad(g) ? s.dxpad : dx;
        tli_direct_input_grad_avx512(threads, &d, dz, s.wt, target, batch);
        if (needs_pad(g))
            crop_nhwc(threads, s.dxpad, batch, padded_h(g), padded_w(g), g->in_c, g->pad_t, g->pad_l, g->in_h,
                      g->in_w, dx);
        return;
    }
#endif
    (void)m;
    const float *col = is_pointwise(g) ? x : s.col;
    if (dw) /* dW (k x n) = col^T (k x m) * dz (m x n) */
        tli_gemm(threads, k, filters, m, 1.0f, col, 1, (ptrdiff_t)k, dz, (ptrdiff_t)filters, 1, 0.0f, dw,
                 (ptrdiff_t)filters, 1);
    if (dx)
        gemm_dx(threads, g, filters, dz, w, dx, batch, s.col);
}
