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
 * The 3x3 kernels with multiplier 1 and dilation 1 (MobileNet's; stride
 * 1 or 2 along the rows) take row kernels instead (dw_row3, dw_wrow3 below):
 * no tap lists, 16 channels x up to 8 output pixels per step, each input
 * vector loaded once per step for all the taps that read it. The input
 * gradient at stride 1 is the forward's row kernel on dz with the kernel
 * turned by 180 degrees.
 *
 * Results do not depend on the thread count, nor on the build: every value
 * is a sum in a fixed order (floating-point contraction is off in C11 mode,
 * so both builds round every product and every sum the same way - this is
 * also why the AVX-512 build has no fused multiply-adds: on Zen 5 separate
 * multiplies and adds go to separate pipes and cost the same; the tests
 * compare the two builds bit for bit).
 *  - forward: threads over images (3x3: over output rows, so one image
 *    keeps two threads busy); each output is bias (or 0) + its taps in
 *    (kh, kw) order, then a ReLU or ReLU6 when asked (the caller,
 *    tli_conv_forward, applies any other activation);
 *  - input gradient: threads over images (3x3 stride 1: over rows); each
 *    input cell gathers the outputs that read it, in (kh, kw) order of the
 *    taps that read it (3x3 stride 1: in the reverse order);
 *  - weight gradient: one image per iteration into its own partial sums
 *    (in the scratch), each summed over the image's pixels in (oh, ow)
 *    order; then the partials are added in image order. With fewer images
 *    than threads (3x3), each image's channel blocks are shared out too.
 *    (Threads over blocks of channels of the whole batch would need no
 *    scratch, but their strided reads of the images ran 8x slower.)
 *
 * Output channel o = c*m + j belongs to input channel c; the kernel (k_h,
 * k_w, 1, in_c*m) holds the taps of output o at [(kh*k_w + kw)*F + o].
 */
#include <string.h>

#include "kernels.h"
#include "parallel.h"

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

/* ---- 3x3, dilation 1, multiplier 1: the MobileNet shape ------------------
 * One output row at a time, R (up to 8) output pixels per step, and in a
 * step each block of 16 channels in turn: the block's 9 kernel vectors
 * (and the bias) are loaded into registers once for the R pixels, each
 * input vector loaded serves every tap of those R that reads it (3 at
 * stride 1), and the blocks walk the pixels in memory order (walking the
 * whole row per block, with the kernel kept for the row, strided through
 * the images and was slower on batches that do not fit in cache). The
 * columns whose taps all lie inside the image take that branch-free step;
 * the thin frame around them takes a one-pixel step that skips the taps
 * outside. The rows of taps
 * inside the image are a run [ka, ka + nr) known per output row; nr and
 * the stride are constants in each inlined copy, so the loops unroll into
 * straight code. Each output is still start + its taps in tap order. */
#define DW_RMAX 8 /* output pixels per step at most (registers: 9 + 1 + 8 + a few) */
#define DW_WRMAX 8 /* the same for the weight gradient, <= DW_RMAX (9 sums + 8 + a few; 4 measured slower) */
#if defined(__GNUC__)
#define DW_UNROLL _Pragma("GCC unroll 32")
typedef int32_t dw_ivec __attribute__((vector_size(DW_V * sizeof(float))));
/* v = max(v, 0) (and min(., 6)) keeping NaN, as dw_clamp: lanes where v < 0
 * (v > 6) are replaced, NaN compares false and stays. */
#define DW_CLAMP(v, clamp)                                                                                    \
    do {                                                                                                      \
        if (clamp) {                                                                                          \
            const dw_ivec lt_ = (v) < (dw_vec){0};                                                            \
            (v) = (dw_vec)((dw_ivec)(v) & ~lt_);                                                              \
            if ((clamp) == TLI_CLAMP_RELU6) {                                                                 \
                const dw_vec six_ = (dw_vec){0} + 6.0f;                                                       \
                const dw_ivec gt_ = (v) > six_;                                                               \
                (v) = (dw_vec)(((dw_ivec)(v) & ~gt_) | ((dw_ivec)six_ & gt_));                                \
            }                                                                                                 \
        }                                                                                                     \
    } while (0)
#else
#define DW_UNROLL
#define DW_CLAMP(v, clamp)                                                                                    \
    do {                                                                                                      \
        if (clamp)                                                                                            \
            dw_clamp((v).v, DW_V, (clamp));                                                                   \
    } while (0)
#endif

/* Where a row of `n` outputs reads a source row of `src_w` cells, output o
 * reading cells o*s - pad + kw (kw < 3): the outputs [*lo, *hi) read only
 * real cells. */
static void dw_interior3(long n, long s, long pad, long src_w, long *lo, long *hi)
{
    long a = 0, b = n;
    while (a < b && a * s - pad < 0)
        a++;
    while (b > a && (b - 1) * s - pad + 2 >= src_w)
        b--;
    *lo = a;
    *hi = b;
}

/* A 3x3 correlation row, 16 channels: for o < n,
 * y[o*ystep] = clamp(start + the sum over k < nr, kw < 3 of
 *              src[k][(o*s - pad + kw)*xstep] * wts[k*3 + kw]),
 * taps reading a column outside [0, src_w) left out. Pointers are at the
 * block's first channel; start NULL is 0. */
/* R outputs o .. o + R-1 of a row (see dw_row3), all of whose taps lie
 * inside (frame: some may not, and those are left out), for every block of
 * 16 channels in turn: the block's kernel vectors are loaded once per step,
 * the R sums are independent (they hide the adder's latency), each input
 * vector loaded serves every tap of the R outputs that reads it, and the
 * blocks walk the R outputs' pixels in memory order. */
DW_INLINE void dw_step3(float *y, size_t ystep, const float *const *src, size_t xstep, long src_w,
                        const float *const *wts, const float *start, int clamp, long o, long pad, size_t C16,
                        const int nr, const int s, const int R, const bool frame)
{
    const long c0 = o * s - pad;
    for (size_t c = 0; c < C16; c += DW_V) {
        dw_vec wv[3][3], acc[DW_RMAX], b, v;
        DW_UNROLL
        for (int k = 0; k < nr; k++)
            DW_UNROLL
            for (int kw = 0; kw < 3; kw++)
                DW_LD(wv[k][kw], wts[k * 3 + kw] + c);
        if (start)
            DW_LD(b, start + c);
        else
            DW_ZERO(b);
        DW_UNROLL
        for (int r = 0; r < R; r++)
            acc[r] = b;
        DW_UNROLL
        for (int k = 0; k < nr; k++) {
            /* one pointer walked along the row: the columns' addresses
             * would otherwise each take a register */
            const float *p = src[k] + c;
            if (!frame)
                p += (size_t)c0 * xstep;
            DW_UNROLL
            for (int j = 0; j < (R - 1) * s + 3; j++, p += frame ? 0 : xstep) {
                if (frame && (c0 + j < 0 || c0 + j >= src_w))
                    continue;
                if (frame)
                    DW_LD(v, p + (size_t)(c0 + j) * xstep);
                else
                    DW_LD(v, p);
                DW_UNROLL
                for (int r = 0; r < R; r++)
                    if (j - r * s >= 0 && j - r * s < 3)
                        DW_MADD(acc[r], v, wv[k][j - r * s]);
            }
        }
        DW_UNROLL
        for (int r = 0; r < R; r++) {
            DW_CLAMP(acc[r], clamp);
            DW_ST(y + (size_t)(o + r) * ystep + c, acc[r]);
        }
    }
}

/* A 3x3 correlation row, channels [0, C16): for o < n,
 * y[o*ystep] = clamp(start + the sum over k < nr, kw < 3 of
 *              src[k][(o*s - pad + kw)*xstep] * wts[k*3 + kw]),
 * taps reading a column outside [0, src_w) left out; the outputs [lo, hi)
 * read only real columns. start NULL is 0. */
DW_INLINE void dw_row3(float *y, size_t ystep, const float *const *src, size_t xstep, long src_w,
                       const float *const *wts, const float *start, int clamp, long n, long pad, long lo, long hi,
                       size_t C16, const int nr, const int s)
{
#define DW_STEP3(R, FRAME) dw_step3(y, ystep, src, xstep, src_w, wts, start, clamp, o, pad, C16, nr, s, R, FRAME)
    long o = 0;
    while (o < n) {
        if (o < lo || o >= hi) { /* the frame */
            DW_STEP3(1, true);
            o++;
        } else if (o + DW_RMAX <= hi) {
            DW_STEP3(DW_RMAX, false);
            o += DW_RMAX;
        } else if (o + 4 <= hi) {
            DW_STEP3(4, false);
            o += 4;
        } else if (o + 2 <= hi) {
            DW_STEP3(2, false);
            o += 2;
        } else {
            DW_STEP3(1, false);
            o++;
        }
    }
#undef DW_STEP3
}

/* dw_row3 with nr and s as constants (s is 1 or 2). */
static void dw_row3_any(float *y, size_t ystep, const float *const *src, size_t xstep, long src_w,
                        const float *const *wts, const float *start, int clamp, long n, long pad, long lo, long hi,
                        size_t C16, int nr, int s)
{
#define DW_ROW3(NR, S) dw_row3(y, ystep, src, xstep, src_w, wts, start, clamp, n, pad, lo, hi, C16, NR, S)
    if (s == 1) {
        switch (nr) {
        case 3: DW_ROW3(3, 1); break;
        case 2: DW_ROW3(2, 1); break;
        case 1: DW_ROW3(1, 1); break;
        default: DW_ROW3(0, 1); break;
        }
    } else {
        switch (nr) {
        case 3: DW_ROW3(3, 2); break;
        case 2: DW_ROW3(2, 2); break;
        case 1: DW_ROW3(1, 2); break;
        default: DW_ROW3(0, 2); break;
        }
    }
#undef DW_ROW3
}

/* The rows [*ka, *ka + nr) of a 3-row window starting at source row r0 that
 * lie in [0, src_h); returns nr. */
static int dw_rows3(long r0, long src_h, int *ka)
{
    int a = 0, b = 3;
    while (a < b && r0 + a < 0)
        a++;
    while (b > a && r0 + b - 1 >= src_h)
        b--;
    *ka = a;
    return b - a;
}

/* The fast paths' shape. */
static bool dw_is3x3(const tli_conv_geom *g, size_t F)
{
    return F == g->in_c && g->k_h == 3 && g->k_w == 3 && g->d_h == 1 && g->d_w == 1;
}

/* Output row `oh` of image `img`, channels [0, C16) by blocks of 16, for
 * the forward pass (flip = false: y = x correlated with w, stride s) or the
 * input gradient at stride 1 (flip = true: dx = dz correlated with w turned
 * by 180 degrees, padded by 2 - pad). src is src_h x src_w x C. */
static void dw_plane3(const float *img, long src_h, long src_w, size_t C, size_t C16, const float *w,
                      const float *bias, int clamp, float *yr, long n, long oh, long s_h, long s_w, long pad_t,
                      long pad_l, bool flip)
{
    long lo, hi;
    dw_interior3(n, s_w, pad_l, src_w, &lo, &hi);
    int ka;
    const long r0 = oh * s_h - pad_t;
    const int nr = dw_rows3(r0, src_h, &ka);
    const float *src[3], *wts[9];
    for (int k = 0; k < nr; k++) {
        src[k] = img + (size_t)(r0 + ka + k) * (size_t)src_w * C;
        for (int kw = 0; kw < 3; kw++) {
            const int t = (ka + k) * 3 + kw;
            wts[k * 3 + kw] = w + (size_t)(flip ? 8 - t : t) * C;
        }
    }
    dw_row3_any(yr, C, src, C, src_w, wts, bias, clamp, n, pad_l, lo, hi, C16, nr, (int)s_w);
}

/* R outputs o .. o + R-1 of a weight-gradient row (see dw_wrow3), the
 * frame's taps outside left out, for every block of 16 channels in turn:
 * the block's 3*nr sums are loaded, take the R outputs in order and are
 * stored back, so the blocks walk the pixels in memory order. */
DW_INLINE void dw_wstep3(float *out, size_t ostep, const float *const *src, size_t xstep, long src_w, const float *d,
                         size_t dstep, long o, long pad, size_t C16, const int nr, const int s, const int R,
                         const bool frame)
{
    const long c0 = o * s - pad;
    for (size_t c = 0; c < C16; c += DW_V) {
        dw_vec acc[3][3], v, dv[DW_RMAX];
        DW_UNROLL
        for (int k = 0; k < nr; k++)
            DW_UNROLL
            for (int kw = 0; kw < 3; kw++)
                DW_LD(acc[k][kw], out + (size_t)(k * 3 + kw) * ostep + c);
        DW_UNROLL
        for (int r = 0; r < R; r++)
            DW_LD(dv[r], d + (size_t)(o + r) * dstep + c);
        DW_UNROLL
        for (int k = 0; k < nr; k++) {
            /* one pointer walked along the row: the columns' addresses
             * would otherwise each take a register */
            const float *p = src[k] + c;
            if (!frame)
                p += (size_t)c0 * xstep;
            DW_UNROLL
            for (int j = 0; j < (R - 1) * s + 3; j++, p += frame ? 0 : xstep) {
                if (frame && (c0 + j < 0 || c0 + j >= src_w))
                    continue;
                if (frame)
                    DW_LD(v, p + (size_t)(c0 + j) * xstep);
                else
                    DW_LD(v, p);
                DW_UNROLL
                for (int r = 0; r < R; r++)
                    if (j - r * s >= 0 && j - r * s < 3)
                        DW_MADD(acc[k][j - r * s], v, dv[r]);
            }
        }
        DW_UNROLL
        for (int k = 0; k < nr; k++)
            DW_UNROLL
            for (int kw = 0; kw < 3; kw++)
                DW_ST(out + (size_t)(k * 3 + kw) * ostep + c, acc[k][kw]);
    }
}

/* The weight gradient's row, channels [0, C16): for k < nr, kw < 3 and
 * o < n, out[(k*3 + kw)*ostep] += src[k][(o*s - pad + kw)*xstep] * d[o*dstep]
 * in o order, leaving out the columns outside [0, src_w). */
DW_INLINE void dw_wrow3(float *out, size_t ostep, const float *const *src, size_t xstep, long src_w, const float *d,
                        size_t dstep, long n, long pad, long lo, long hi, size_t C16, const int nr, const int s)
{
#define DW_WSTEP3(R, FRAME) dw_wstep3(out, ostep, src, xstep, src_w, d, dstep, o, pad, C16, nr, s, R, FRAME)
    long o = 0;
    while (o < n) {
        if (o < lo || o >= hi) {
            DW_WSTEP3(1, true);
            o++;
        } else if (o + DW_WRMAX <= hi) {
            DW_WSTEP3(DW_WRMAX, false);
            o += DW_WRMAX;
        } else if (o + 4 <= hi) {
            DW_WSTEP3(4, false);
            o += 4;
        } else if (o + 2 <= hi) {
            DW_WSTEP3(2, false);
            o += 2;
        } else {
            DW_WSTEP3(1, false);
            o++;
        }
    }
#undef DW_WSTEP3
}

static void dw_wrow3_any(float *out, size_t ostep, const float *const *src, size_t xstep, long src_w,
                         const float *d, size_t dstep, long n, long pad, long lo, long hi, size_t C16, int nr, int s)
{
#define DW_WROW3(NR, S) dw_wrow3(out, ostep, src, xstep, src_w, d, dstep, n, pad, lo, hi, C16, NR, S)
    if (s == 1) {
        switch (nr) {
        case 3: DW_WROW3(3, 1); break;
        case 2: DW_WROW3(2, 1); break;
        case 1: DW_WROW3(1, 1); break;
        default: break;
        }
    } else {
        switch (nr) {
        case 3: DW_WROW3(3, 2); break;
        case 2: DW_WROW3(2, 2); break;
        case 1: DW_WROW3(1, 2); break;
        default: break;
        }
    }
#undef DW_WROW3
}

/* out (9 x F) = the weight gradient of one image for the channels
 * [cb, ce) (multiples of 16): each value summed over the output pixels in
 * (oh, ow) order, in one pass over the image's rows. */
static void dw_wgrad3_image(const tli_conv_geom *g, const float *img, const float *dzi, float *out, size_t cb,
                            size_t ce)
{
    const size_t C = g->in_c;
    long lo, hi;
    dw_interior3(g->out_w, g->s_w, g->pad_l, g->in_w, &lo, &hi);
    for (int t = 0; t < 9; t++)
        memset(out + (size_t)t * C + cb, 0, sizeof(float) * (ce - cb));
    for (long oh = 0; oh < (long)g->out_h; oh++) {
        int ka;
        const long r0 = oh * (long)g->s_h - (long)g->pad_t;
        const int nr = dw_rows3(r0, g->in_h, &ka);
        const float *d = dzi + (size_t)oh * g->out_w * C + cb, *src[3];
        for (int k = 0; k < nr; k++)
            src[k] = img + (size_t)(r0 + ka + k) * g->in_w * C + cb;
        dw_wrow3_any(out + (size_t)ka * 3 * C + cb, C, src, C, g->in_w, d, C, g->out_w, g->pad_l, lo, hi, ce - cb,
                     nr, (int)g->s_w);
    }
}

/* Threads for one pass of a depthwise convolution over the batch: taps x
 * outputs multiply-adds, and its input and output read or written once. */
static uint32_t dw_threads(uint32_t threads, const tli_conv_geom *g, size_t F, size_t batch)
{
    const double outs = (double)batch * g->out_h * g->out_w * F;
    const double ins = (double)batch * g->in_h * g->in_w * g->in_c;
    return tli_par_threads(threads, outs * g->k_h * g->k_w, (outs + ins) * sizeof(float));
}

void TLI_DW(forward)(uint32_t threads, const tli_conv_geom *g, uint32_t filters, const float *x, const float *w,
                     const float *bias, int clamp, float *y, size_t batch)
{
    const size_t C = g->in_c, F = filters, m = F / C, taps = (size_t)g->k_h * g->k_w;
    const size_t in_img = (size_t)g->in_h * g->in_w * C, out_row = (size_t)g->out_w * F;
    const size_t step = (size_t)g->s_w * C;
    threads = dw_threads(threads, g, F, batch);
    if (dw_is3x3(g, F) && (g->s_w == 1 || g->s_w == 2)) {
        /* Threads over output rows, so that one image keeps two busy. */
        const size_t C16 = C / DW_V * DW_V;
        const long rows = (long)batch * (long)g->out_h;
        /* (no OpenMP region for one thread: parallel.h) */
        TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)",
                    (long r = 0; r < rows; r++), {
            const size_t n = (size_t)r / g->out_h;
            const uint32_t oh = (uint32_t)((size_t)r % g->out_h);
            const float *img = x + n * in_img;
            float *yr = y + (size_t)r * out_row;
            dw_plane3(img, g->in_h, g->in_w, C, C16, w, bias, clamp, yr, g->out_w, oh, g->s_h, g->s_w, g->pad_t,
                      g->pad_l, false);
            for (uint32_t ow = 0; C16 < C && ow < g->out_w; ow++) { /* the last C % 16 channels */
                dw_tap list[DW_MAXT];
                const size_t nt = dw_fwd_taps(g, F, oh, ow, 0, list);
                float *yp = yr + (size_t)ow * F + C16;
                dw_block_tail(yp, bias ? bias + C16 : NULL, img + C16, w + C16, list, nt, C - C16);
                if (clamp)
                    dw_clamp(yp, C - C16, clamp);
            }
        });
        return;
    }
    uint32_t lo, hi;
    dw_inner_cols(g, &lo, &hi);
    TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)",
                (long n = 0; n < (long)batch; n++), {
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
    });
}

void TLI_DW(input_grad)(uint32_t threads, const tli_conv_geom *g, uint32_t filters, const float *dz, const float *w,
                        float *dx, size_t batch)
{
    const size_t C = g->in_c, F = filters, m = F / C, taps = (size_t)g->k_h * g->k_w;
    const size_t in_img = (size_t)g->in_h * g->in_w * C;
    const size_t out_img = (size_t)g->out_h * g->out_w * F;
    threads = dw_threads(threads, g, F, batch);
    if (dw_is3x3(g, F) && g->s_h == 1 && g->s_w == 1) {
        /* At stride 1 the input gradient is dz correlated with the kernel
         * turned by 180 degrees, padded by 2 - pad: the forward's rows. */
        const size_t C16 = C / DW_V * DW_V;
        const long rows = (long)batch * (long)g->in_h;
        TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)",
                    (long r = 0; r < rows; r++), {
            const size_t n = (size_t)r / g->in_h;
            const uint32_t ih = (uint32_t)((size_t)r % g->in_h);
            const float *dzi = dz + n * out_img;
            float *dr = dx + (size_t)r * g->in_w * C;
            dw_plane3(dzi, g->out_h, g->out_w, C, C16, w, NULL, TLI_CLAMP_NONE, dr, g->in_w, ih, 1, 1,
                      2 - (long)g->pad_t, 2 - (long)g->pad_l, true);
            for (uint32_t iw = 0; C16 < C && iw < g->in_w; iw++) { /* the last C % 16 channels */
                dw_tap list[DW_MAXT];
                const size_t nt = dw_back_taps(g, F, ih, iw, 0, list);
                dw_block_tail(dr + (size_t)iw * C + C16, NULL, dzi + C16, w + C16, list, nt, C - C16);
            }
        });
        return;
    }
    TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)",
                (long n = 0; n < (long)batch; n++), {
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
    });
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
static void dw_grad_image(const tli_conv_geom *g, size_t F, const float *img, const float *dzi, float *out,
                          size_t cb, size_t ce)
{
    const size_t C = g->in_c, m = F / C, taps = (size_t)g->k_h * g->k_w;
    const size_t xstep = (size_t)g->s_w * C;
    if (m != 1)
        memset(out, 0, sizeof(float) * taps * F);
    else
        for (size_t t = 0; t < taps; t++)
            memset(out + t * F + cb, 0, sizeof(float) * (ce - cb));
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
                size_t c = cb;
                for (; c + DW_NB * DW_V <= ce; c += DW_NB * DW_V)
                    dw_grad_row(dwt + c, x0 + c, xstep, d0 + c, F, count, DW_NB);
                for (; c + DW_V <= ce; c += DW_V)
                    dw_grad_row(dwt + c, x0 + c, xstep, d0 + c, F, count, 1);
                for (; c < ce; c++) {
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
    if (batch == 0) {
        memset(dw, 0, sizeof(float) * wsize);
        return;
    }
    threads = dw_threads(threads, g, F, batch);
    /* Image i's sums into partials[i] (image 0's straight into dw), each
     * image's channels in `parts` runs of whole blocks of 16 (more than
     * one where there are fewer images than threads; a value's sum does
     * not depend on the run it is in)... */
    const bool fast = dw_is3x3(g, F) && (g->s_w == 1 || g->s_w == 2);
    const size_t C = g->in_c, blocks = fast ? C / DW_V : 0;
    size_t parts = 1;
    if (blocks > 1 && batch < threads)
        parts = blocks < threads ? blocks : threads;
    const long tasks = (long)(batch * parts);
    TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)",
                (long t = 0; t < tasks; t++), {
        const size_t n = (size_t)t / parts, q = (size_t)t % parts;
        const float *img = x + n * in_img, *dzi = dz + n * out_img;
        float *out = n == 0 ? dw : partials + (n - 1) * wsize;
        if (!fast) {
            dw_grad_image(g, F, img, dzi, out, 0, C);
            continue;
        }
        const size_t cb = blocks * q / parts * DW_V, ce = blocks * (q + 1) / parts * DW_V;
        /* The row kernel pays 9 loads and stores of its sums per step, and
         * rows narrower than 16 outputs have few steps: there the per-tap
         * runs below were faster (measured on MobileNetV2's shapes). */
        if (g->out_w >= 16) {
            dw_wgrad3_image(g, img, dzi, out, cb, ce);
            if (q + 1 == parts && ce < C) /* the last C % 16 channels */
                dw_grad_image(g, F, img, dzi, out, ce, C);
        } else {
            dw_grad_image(g, F, img, dzi, out, cb, q + 1 == parts ? C : ce);
        }
    });
    if (batch == 1)
        return;
    /* ... then added in image order, each value by one thread. */
    const long chunks = (long)((wsize + 255) / 256);
    TLI_OMP_FOR(threads > 1, "omp parallel for num_threads(threads) schedule(static)", (long k = 0; k < chunks; k++), {
        const size_t lo = (size_t)k * 256, hi = wsize - lo < 256 ? wsize : lo + 256;
        for (size_t n = 1; n < batch; n++) {
            const float *p = partials + (n - 1) * wsize;
            for (size_t i = lo; i < hi; i++)
                dw[i] += p[i];
        }
    });
}
