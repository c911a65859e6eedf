/*
 * conv_depthwise_impl.h - the depthwise convolution kernels (groups ==
 * in_c, filters = in_c * m), written once in portable C and compiled twice:
 * conv_depthwise.c for any CPU and conv_depthwise_avx512.c with AVX-512
 * enabled. Include after defining TLI_DW(name), which gives each build its
 * own function names.
 *
 * Why not im2col + GEMM: each group is one channel, so its GEMM has K =
 * k_h*k_w (9) and N = m (1): thousands of tiny GEMMs that do nothing but
 * call overhead. Here the channels are the innermost, contiguous axis of
 * NHWC: for each pixel the kernel taps that land inside the image are
 * listed once (their input and kernel offsets), then each block of
 * channels is summed over that list in a local accumulator, a loop of a
 * constant 16 (or 64) floats that the compiler turns into registers with
 * no loop overhead, and stored once. The last channels of a count that is
 * not a multiple of 16, and multipliers above 1, take plain loops.
 *
 * Results do not depend on the thread count, nor on the build: every value
 * is a sum in a fixed order (floating-point contraction is off in C11 mode,
 * so both builds round every product and every sum the same way; the
 * tests compare the two bit for bit).
 *  - forward: one image per iteration (threads over images); each output is
 *    0 + its taps in (kh, kw) order, then bias and a ReLU when asked (the
 *    caller, tli_conv_forward, applies any other activation);
 *  - input gradient: one image per iteration; each input cell gathers the
 *    outputs that read it, in (kh, kw) order of the taps that read it;
 *  - weight gradient: one image per iteration into its own partial sums
 *    (in the scratch), each summed over the image's pixels in (oh, ow)
 *    order; then the partials are added in image order. (Threads over
 *    blocks of channels would need no scratch, but their strided reads of
 *    the images ran 8x slower.)
 *
 * Output channel o = c*m + j belongs to input channel c; the kernel (k_h,
 * k_w, 1, in_c*m) holds the taps of output o at [(kh*k_w + kw)*F + o].
 */
#include <string.h>

#include "kernels.h"

/* Channels per vector: 16 floats (four SSE registers, one AVX-512 one).
 * The blocking never changes a result: each value is summed in the same
 * order whatever the block. */
#define DW_V 16
/* Taps listed at once; a larger kernel is summed in several rounds, the
 * partial sum going through memory, which does not change a bit. */
#define DW_MAXT 64

/* A tap that lands inside the image: offsets of its source (input or
 * output gradient) pixel and of its kernel row. */
typedef struct dw_tap {
    size_t src, w;
} dw_tap;

/* The taps [t0, t0 + DW_MAXT) of output pixel (oh, ow) that read a real
 * input cell, in (kh, kw) order: src = the cell's offset in the image. */
static size_t dw_fwd_taps(const tli_conv_geom *g, size_t F, uint32_t oh, uint32_t ow, size_t t0, dw_tap *list)
{
    const size_t taps = (size_t)g->k_h * g->k_w, t1 = taps - t0 < DW_MAXT ? taps : t0 + DW_MAXT;
    const long ih0 = (long)oh * g->s_h - (long)g->pad_t, iw0 = (long)ow * g->s_w - (long)g->pad_l;
    size_t n = 0, t = 0;
    for (uint32_t kh = 0; kh < g->k_h && t < t1; kh++) {
        const long ih = ih0 + (long)kh * g->d_h;
        if (ih < 0 || ih >= (long)g->in_h || t + g->k_w <= t0) {
            t += g->k_w;
            continue;
        }
        for (uint32_t kw = 0; kw < g->k_w && t < t1; kw++, t++) {
            const long iw = iw0 + (long)kw * g->d_w;
            if (t < t0 || iw < 0 || iw >= (long)g->in_w)
                continue;
            list[n].src = ((size_t)ih * g->in_w + (size_t)iw) * g->in_c;
            list[n].w = t * F;
            n++;
        }
    }
    return n;
}

/* The taps [t0, t0 + DW_MAXT) that read input cell (ih, iw), in (kh, kw)
 * order: src = the offset of the output pixel whose tap it is. */
static size_t dw_back_taps(const tli_conv_geom *g, size_t F, uint32_t ih, uint32_t iw, size_t t0, dw_tap *list)
{
    const size_t taps = (size_t)g->k_h * g->k_w, t1 = taps - t0 < DW_MAXT ? taps : t0 + DW_MAXT;
    size_t n = 0;
    for (size_t t = t0; t < t1; t++) {
        const uint32_t kh = (uint32_t)(t / g->k_w), kw = (uint32_t)(t % g->k_w);
        /* oh * s_h = ih + pad_t - kh * d_h, exactly */
        const long nh = (long)ih + (long)g->pad_t - (long)kh * g->d_h;
        const long nw = (long)iw + (long)g->pad_l - (long)kw * g->d_w;
        if (nh < 0 || nw < 0 || nh % (long)g->s_h != 0 || nw % (long)g->s_w != 0)
            continue;
        const long oh = nh / (long)g->s_h, ow = nw / (long)g->s_w;
        if (oh >= (long)g->out_h || ow >= (long)g->out_w)
            continue;
        list[n].src = ((size_t)oh * g->out_w + (size_t)ow) * F;
        list[n].w = t * F;
        n++;
    }
    return n;
}

/* A vector of DW_V floats. GCC and Clang lower it to what the build has
 * (one AVX-512 register, four SSE ones), lane by lane with the same IEEE
 * operations as scalar code; other compilers get plain loops. */
#if defined(__GNUC__)
typedef float dw_vec __attribute__((vector_size(DW_V * sizeof(float))));
#define DW_ZERO(v) ((v) = (dw_vec){0})
#define DW_MADD(acc, a, b) ((acc) += (a) * (b))
#else
typedef struct dw_vec {
    float v[DW_V];
} dw_vec;
#define DW_ZERO(r) memset(&(r), 0, sizeof(r))
#define DW_MADD(acc, a, b)                                                                                    \
    do {                                                                                                      \
        for (int i_ = 0; i_ < DW_V; i_++)                                                                     \
            (acc).v[i_] += (a).v[i_] * (b).v[i_];                                                             \
    } while (0)
#endif
/* The block functions are inlined where nb is a constant. */
#if defined(__GNUC__)
#define DW_INLINE static inline __attribute__((always_inline))
#else
#define DW_INLINE static inline
#endif
/* Unaligned loads and stores (macros: a vector passed by value would
 * depend on the build's ABI). */
#define DW_LD(v, p) memcpy(&(v), (p), sizeof(dw_vec))
#define DW_ST(p, v) memcpy((p), &(v), sizeof(dw_vec))

/* Vectors summed at once: independent sums that hide the adder's latency,
 * as many as the build's registers hold (TLI_DW_WIDE: four AVX-512
 * registers; otherwise two vectors, eight SSE registers). */
#ifdef TLI_DW_WIDE
#define DW_NB 4
#else
#define DW_NB 2
#endif

/* out[0 .. nb*DW_V) = start (NULL: 0) + the sum over the taps of
 * a[tap.src] * w[tap.w] in list order; out, start, a and w already offset
 * to the block's first channel; nb <= DW_NB is a constant at each call. */
DW_INLINE void dw_block(float *out, const float *start, const float *a, const float *w, const dw_tap *list, size_t n,
                        const int nb)
{
    dw_vec acc[DW_NB], va, vw;
    for (int k = 0; k < nb; k++) {
        if (start == NULL)
            DW_ZERO(acc[k]);
        else
            DW_LD(acc[k], start + k * DW_V);
    }
    for (size_t t = 0; t < n; t++) {
        const float *as = a + list[t].src, *ws = w + list[t].w;
        for (int k = 0; k < nb; k++) {
            DW_LD(va, as + k * DW_V);
            DW_LD(vw, ws + k * DW_V);
            DW_MADD(acc[k], va, vw);
        }
    }
    for (int k = 0; k < nb; k++)
        DW_ST(out + k * DW_V, acc[k]);
}

/* The same for a block of `len` < DW_V channels. */
static void dw_block_tail(float *out, const float *start, const float *a, const float *w, const dw_tap *list,
                          size_t n, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        float acc = start ? start[i] : 0.0f;
        for (size_t t = 0; t < n; t++)
            acc += a[list[t].src + i] * w[list[t].w + i];
        out[i] = acc;
    }
}

/* All `cn` channels of one pixel: out[c] = start[c] (NULL: 0) + the sum
 * of a[tap.src + c] * w[tap.w + c] over the taps. start may be out. */
static void dw_channels(float *out, const float *start, const float *a, const float *w, const dw_tap *list, size_t n,
                        size_t cn)
{
    size_t c = 0;
    for (; c + DW_NB * DW_V <= cn; c += DW_NB * DW_V)
        dw_block(out + c, start ? start + c : NULL, a + c, w + c, list, n, DW_NB);
    for (; c + DW_V <= cn; c += DW_V)
        dw_block(out + c, start ? start + c : NULL, a + c, w + c, list, n, 1);
    if (c < cn)
        dw_block_tail(out + c, start ? start + c : NULL, a + c, w + c, list, n, cn - c);
}

/* The output columns [*lo, *hi) whose taps all lie inside the image's
 * columns: there the taps of column ow + 1 are those of ow moved one
 * stride to the right. */
static void dw_inner_cols(const tli_conv_geom *g, uint32_t *lo, uint32_t *hi)
{
    const long span = (long)g->d_w * (long)(g->k_w - 1);
    long a = 0, b = (long)g->out_w;
    while (a < b && a * (long)g->s_w - (long)g->pad_l < 0)
        a++;
    while (b > a && (b - 1) * (long)g->s_w - (long)g->pad_l + span >= (long)g->in_w)
        b--;
    *lo = (uint32_t)a;
    *hi = (uint32_t)b;
}

/* Input column iw is read by taps whose output columns all lie inside the
 * output: there the taps of iw + s_w are those of iw one output pixel on. */
static bool dw_back_inner(const tli_conv_geom *g, uint32_t iw)
{
    const long top = (long)iw + (long)g->pad_l; /* kw = 0: the largest */
    return top - (long)g->d_w * (long)(g->k_w - 1) >= 0 && top / (long)g->s_w < (long)g->out_w;
}

/* y = max(y, 0), and min(., 6) for ReLU6, keeping NaN, as the activations do. */
static void dw_clamp(float *y, size_t n, int clamp)
{
    for (size_t i = 0; i < n; i++)
        y[i] = y[i] < 0.0f ? 0.0f : y[i];
    if (clamp == TLI_CLAMP_RELU6)
        for (size_t i = 0; i < n; i++)
            y[i] = y[i] > 6.0f ? 6.0f : y[i];
}

/* dw[c*m + j] += x[c] * d[c*m + j] for c < cn: any multiplier, any count. */
static void dw_grad_any(float *restrict dw, const float *restrict x, const float *restrict d, size_t cn, size_t m)
{
    for (size_t c = 0; c < cn; c++)
        for (size_t j = 0; j < m; j++)
            dw[c * m + j] += x[c] * d[c * m + j];
}

void TLI_DW(forward)(uint32_t threads, const tli_conv_geom *g, uint32_t filters, const float *x, const float *w,
                     const float *bias, int clamp, float *y, size_t batch)
{
    const size_t C = g->in_c, F = filters, m = F / C, taps = (size_t)g->k_h * g->k_w;
    const size_t in_img = (size_t)g->in_h * g->in_w * C, out_row = (size_t)g->out_w * F;
    const size_t step = (size_t)g->s_w * C;
    uint32_t lo, hi;
    dw_inner_cols(g, &lo, &hi);
    (void)threads;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (threads > 1)
    for (long n = 0; n < (long)batch; n++) {
        const float *img = x + (size_t)n * in_img;
        dw_tap list[DW_MAXT];
        for (uint32_t oh = 0; oh < g->out_h; oh++) {
            float *yr = y + ((size_t)n * g->out_h + oh) * out_row;
            size_t nt = 0;
            for (uint32_t ow = 0; ow < g->out_w; ow++) {
                float *yp = yr + (size_t)ow * F;
                /* Each value: bias (or 0), then its taps in (kh, kw) order. */
                for (size_t t0 = 0; t0 < taps; t0 += DW_MAXT) {
                    if (taps <= DW_MAXT && ow > lo && ow < hi) {
                        for (size_t t = 0; t < nt; t++)
                            list[t].src += step;
                    } else {
                        nt = dw_fwd_taps(g, F, oh, ow, t0, list);
                    }
                    const float *start = t0 ? yp : bias;
                    if (m == 1) {
                        dw_channels(yp, start, img, w, list, nt, F);
                        continue;
                    }
                    for (size_t o = 0; o < F; o++) { /* input channel o / m */
                        float acc = start ? start[o] : 0.0f;
                        for (size_t t = 0; t < nt; t++)
                            acc += img[list[t].src + o / m] * w[list[t].w + o];
                        yp[o] = acc;
                    }
                }
            }
            if (clamp) /* while the row is in cache */
                dw_clamp(yr, out_row, clamp);
        }
    }
}

void TLI_DW(input_grad)(uint32_t threads, const tli_conv_geom *g, uint32_t filters, const float *dz, const float *w,
                        float *dx, size_t batch)
{
    const size_t C = g->in_c, F = filters, m = F / C, taps = (size_t)g->k_h * g->k_w;
    const size_t in_img = (size_t)g->in_h * g->in_w * C;
    const size_t out_img = (size_t)g->out_h * g->out_w * F;
    (void)threads;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (threads > 1)
    for (long n = 0; n < (long)batch; n++) {
        const float *dzi = dz + (size_t)n * out_img;
        dw_tap list[DW_MAXT];
        for (uint32_t ih = 0; ih < g->in_h; ih++)
            /* Columns a stride apart share their taps' pattern: walk them
             * so, moving the list along inside the image. */
            for (uint32_t r = 0; r < g->s_w && r < g->in_w; r++) {
                bool prev_inner = false;
                size_t nt = 0;
                for (uint32_t iw = r; iw < g->in_w; iw += g->s_w) {
                    float *dp = dx + (size_t)n * in_img + ((size_t)ih * g->in_w + iw) * C;
                    const bool inner = dw_back_inner(g, iw);
                    for (size_t t0 = 0; t0 < taps; t0 += DW_MAXT) {
                        if (taps <= DW_MAXT && inner && prev_inner) {
                            for (size_t t = 0; t < nt; t++)
                                list[t].src += F;
                        } else {
                            nt = dw_back_taps(g, F, ih, iw, t0, list);
                        }
                        if (m == 1) {
                            dw_channels(dp, t0 ? dp : NULL, dzi, w, list, nt, C);
                            continue;
                        }
                        for (size_t c = 0; c < C; c++) { /* outputs c*m .. c*m + m-1 */
                            float acc = t0 ? dp[c] : 0.0f;
                            for (size_t t = 0; t < nt; t++)
                                for (size_t j = 0; j < m; j++)
                                    acc += dzi[list[t].src + c * m + j] * w[list[t].w + c * m + j];
                            dp[c] = acc;
                        }
                    }
                    prev_inner = inner;
                }
            }
    }
}

/* dw[0 .. nb*DW_V) += the sum over `count` pixels of x * d, x and d moving
 * by xstep and dstep floats per pixel, in pixel order; nb <= DW_NB is a
 * constant at each call. The partial sum stays in registers along the row. */
DW_INLINE void dw_grad_row(float *dw, const float *x, size_t xstep, const float *d, size_t dstep, size_t count,
                           const int nb)
{
    dw_vec acc[DW_NB], vx, vd;
    for (int k = 0; k < nb; k++)
        DW_LD(acc[k], dw + k * DW_V);
    for (size_t p = 0; p < count; p++, x += xstep, d += dstep)
        for (int k = 0; k < nb; k++) {
            DW_LD(vx, x + k * DW_V);
            DW_LD(vd, d + k * DW_V);
            DW_MADD(acc[k], vx, vd);
        }
    for (int k = 0; k < nb; k++)
        DW_ST(dw + k * DW_V, acc[k]);
}

/* out (taps x F) = the weight gradient of one image: each value summed over
 * the image's pixels in (oh, ow) order. For each output row and tap, the
 * columns that read real cells are one run [a, b). */
static void dw_grad_image(const tli_conv_geom *g, size_t F, const float *img, const float *dzi, float *out)
{
    const size_t C = g->in_c, m = F / C, taps = (size_t)g->k_h * g->k_w;
    const size_t xstep = (size_t)g->s_w * C;
    memset(out, 0, sizeof(float) * taps * F);
    for (uint32_t oh = 0; oh < g->out_h; oh++)
        for (uint32_t kh = 0; kh < g->k_h; kh++) {
            const long ih = (long)oh * g->s_h - (long)g->pad_t + (long)kh * g->d_h;
            if (ih < 0 || ih >= (long)g->in_h)
                continue;
            for (uint32_t kw = 0; kw < g->k_w; kw++) {
                /* iw = ow*s_w - pad_l + kw*d_w in [0, in_w) */
                const long off = (long)kw * g->d_w - (long)g->pad_l, s = (long)g->s_w;
                long a = off >= 0 ? 0 : (-off + s - 1) / s;
                long b = (long)g->in_w - off <= 0 ? 0 : ((long)g->in_w - off + s - 1) / s;
                if (b > (long)g->out_w)
                    b = (long)g->out_w;
                if (a >= b)
                    continue;
                float *dwt = out + ((size_t)kh * g->k_w + kw) * F;
                const float *x0 = img + ((size_t)ih * g->in_w + (size_t)(a * s + off)) * C;
                const float *d0 = dzi + ((size_t)oh * g->out_w + (size_t)a) * F;
                const size_t count = (size_t)(b - a);
                if (m != 1) {
                    for (size_t p = 0; p < count; p++)
                        dw_grad_any(dwt, x0 + p * xstep, d0 + p * F, C, m);
                    continue;
                }
                size_t c = 0;
                for (; c + DW_NB * DW_V <= C; c += DW_NB * DW_V)
                    dw_grad_row(dwt + c, x0 + c, xstep, d0 + c, F, count, DW_NB);
                for (; c + DW_V <= C; c += DW_V)
                    dw_grad_row(dwt + c, x0 + c, xstep, d0 + c, F, count, 1);
                for (; c < C; c++) {
                    float acc = dwt[c];
                    for (size_t p = 0; p < count; p++)
                        acc += x0[p * xstep + c] * d0[p * F + c];
                    dwt[c] = acc;
                }
            }
        }
}

void TLI_DW(weight_grad)(uint32_t threads, const tli_conv_geom *g, uint32_t filters, const float *x, const float *dz,
                         float *dw, float *partials, size_t batch)
{
    const size_t F = filters, taps = (size_t)g->k_h * g->k_w, wsize = taps * F;
    const size_t in_img = (size_t)g->in_h * g->in_w * g->in_c;
    const size_t out_img = (size_t)g->out_h * g->out_w * F;
    if (batch <= 1) {
        if (batch == 1)
            dw_grad_image(g, F, x, dz, dw);
        else
            memset(dw, 0, sizeof(float) * wsize);
        return;
    }
    (void)threads;
    /* Image i's sums into partials[i] (image 0's straight into dw)... */
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (threads > 1)
    for (long n = 0; n < (long)batch; n++)
        dw_grad_image(g, F, x + (size_t)n * in_img, dz + (size_t)n * out_img,
                      n == 0 ? dw : partials + (size_t)(n - 1) * wsize);
    /* ... then added in image order, each value by one thread. */
    const long chunks = (long)((wsize + 255) / 256);
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (long k = 0; k < chunks; k++) {
        const size_t lo = (size_t)k * 256, hi = wsize - lo < 256 ? wsize : lo + 256;
        for (size_t n = 1; n < batch; n++) {
            const float *p = partials + (n - 1) * wsize;
            for (size_t i = lo; i < hi; i++)
                dw[i] += p[i];
        }
    }
}
