/*
 * loss.c - losses fused with their gradient. Cross-entropy works on logits
 * through log-sum-exp, so huge or tiny logits neither overflow nor give
 * log(0); per-example sums are accumulated in double.
 */
#include <math.h>

#include "kernels.h"

size_t tli_argmax(const float *v, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return best;
}

size_t tli_rank(const float *v, size_t n, size_t i)
{
    const float x = v[i];
    size_t ahead = 0;
    for (size_t c = 0; c < n; c++)
        ahead += v[c] > x || (c < i && v[c] == x);
    return ahead;
}

double tli_loss_mean(double loss_sum, double weight_sum)
{
    return weight_sum > 0.0 ? loss_sum / weight_sum : 0.0;
}

bool tli_all_finite(const float *v, size_t n)
{
    /* Summing x*0 is NaN exactly when some x is NaN or infinite, and lets
     * the compiler vectorise without a branch per element. */
    float acc = 0.0f;
    for (size_t i = 0; i < n; i++)
        acc += v[i] * 0.0f;
    return acc == 0.0f;
}

bool tli_softmax_xent(const float *z, size_t rows, size_t cols, const int32_t *labels, const float *t,
                      float *dz, tli_loss_result *res, size_t *bad_row)
{
    res->loss_sum = 0.0;
    res->correct = 0;
    res->weight_sum = (double)rows;
    const float inv_rows = 1.0f / (float)rows;
    for (size_t r = 0; r < rows; r++) {
        const float *zr = z + r * cols;
        size_t label = 0;
        if (labels) {
            if (labels[r] < 0 || (size_t)labels[r] >= cols) {
                *bad_row = r;
                return false;
            }
            label = (size_t)labels[r];
        } else {
            label = tli_argmax(t + r * cols, cols);
        }
        size_t pred = tli_argmax(zr, cols);
        const double mx = zr[pred];
        double sum = 0.0;
        for (size_t c = 0; c < cols; c++)
            sum += exp((double)zr[c] - mx);
        /* log-sum-exp is mx + log(sum), but adding log(sum) to a logit of
         * 1e30 would round it away: keep the two apart. */
        const double log_sum = log(sum);
        if (pred == label)
            res->correct++;
        if (labels) {
            res->loss_sum += log_sum + (mx - (double)zr[label]);
        } else {
            const float *tr = t + r * cols;
            double l = 0.0;
            for (size_t c = 0; c < cols; c++)
                if (tr[c] != 0.0f)
                    l += (double)tr[c] * (log_sum + (mx - (double)zr[c]));
            res->loss_sum += l;
        }
        if (dz) {
            float *dr = dz + r * cols;
            float tsum = 1.0f;
            if (!labels) {
                tsum = 0.0f;
                for (size_t c = 0; c < cols; c++)
                    tsum += t[r * cols + c];
            }
            for (size_t c = 0; c < cols; c++) {
                float p = (float)(exp((double)zr[c] - mx) / sum);
                float tc = labels ? (c == label ? 1.0f : 0.0f) : t[r * cols + c];
                dr[c] = (p * tsum - tc) * inv_rows;
            }
        }
    }
    return true;
}

bool tli_softmax_xent_ex(const float *z, size_t rows, size_t cols, const int32_t *labels, const float *t,
                         float smoothing, const float *weights, float *dz, tli_loss_result *res, size_t *bad_row)
{
    res->loss_sum = 0.0;
    res->correct = 0;
    /* The denominator first: the gradient of every row needs it. */
    double wsum = 0.0;
    for (size_t r = 0; r < rows; r++) {
        if (labels) {
            if (labels[r] < 0 || (size_t)labels[r] >= cols) {
                *bad_row = r;
                return false;
            }
            wsum += weights ? (double)weights[labels[r]] : 1.0;
        } else if (weights) {
            const float *tr = t + r * cols;
            double ts = 0.0, tw = 0.0;
            for (size_t c = 0; c < cols; c++) {
                ts += (double)tr[c];
                tw += (double)weights[c] * (double)tr[c];
            }
            wsum += ts != 0.0 ? tw / ts : 0.0;
        } else {
            wsum += 1.0;
        }
    }
    res->weight_sum = wsum;
    const double keep = 1.0 - (double)smoothing, spread = (double)smoothing / (double)cols;
    const double inv_w = wsum > 0.0 ? 1.0 / wsum : 0.0;
    for (size_t r = 0; r < rows; r++) {
        const float *zr = z + r * cols;
        const float *tr = labels ? NULL : t + r * cols;
        const size_t label = labels ? (size_t)labels[r] : tli_argmax(tr, cols);
        const size_t pred = tli_argmax(zr, cols);
        if (pred == label)
            res->correct++;
        const double mx = zr[pred];
        double sum = 0.0;
        for (size_t c = 0; c < cols; c++)
            sum += exp((double)zr[c] - mx);
        const double log_sum = log(sum);
        /* a_c = w_c q_c: the weight of class c's term in this row. */
        double l = 0.0, a_sum = 0.0;
        for (size_t c = 0; c < cols; c++) {
            double tc = labels ? (c == label ? 1.0 : 0.0) : (double)tr[c];
            double a = (keep * tc + spread) * (weights ? (double)weights[c] : 1.0);
            if (a != 0.0) {
                a_sum += a;
                l += a * (log_sum + (mx - (double)zr[c]));
            }
        }
        res->loss_sum += l;
        if (dz) {
            float *dr = dz + r * cols;
            for (size_t c = 0; c < cols; c++) {
                double tc = labels ? (c == label ? 1.0 : 0.0) : (double)tr[c];
                double a = (keep * tc + spread) * (weights ? (double)weights[c] : 1.0);
                double p = exp((double)zr[c] - mx) / sum;
                dr[c] = (float)((p * a_sum - a) * inv_w);
            }
        }
    }
    return true;
}

bool tli_mse(const float *y, size_t rows, size_t cols, const int32_t *labels, const float *t, float *dy,
             tli_loss_result *res, size_t *bad_row)
{
    res->loss_sum = 0.0;
    res->correct = 0;
    res->weight_sum = (double)rows;
    const float scale = 2.0f / ((float)rows * (float)cols);
    for (size_t r = 0; r < rows; r++) {
        const float *yr = y + r * cols;
        size_t label = 0;
        if (labels) {
            if (labels[r] < 0 || (size_t)labels[r] >= cols) {
                *bad_row = r;
                return false;
            }
            label = (size_t)labels[r];
        } else {
            label = tli_argmax(t + r * cols, cols);
        }
        if (tli_argmax(yr, cols) == label)
            res->correct++;
        double l = 0.0;
        for (size_t c = 0; c < cols; c++) {
            float tc = labels ? (c == label ? 1.0f : 0.0f) : t[r * cols + c];
            float d = yr[c] - tc;
            l += (double)d * d;
            if (dy)
                dy[r * cols + c] = scale * d;
        }
        res->loss_sum += l / (double)cols;
    }
    return true;
}
