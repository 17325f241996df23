/* Masked mean and max pooling over the time axis: inp (B, T, C), mask (B, T)
 * (1 = real token, NULL = all real), out (B, C).
 *
 * A sequence with no real token pools to zeros (argmax -1) and passes no
 * gradient. Work is split by sequence b, so every output element is summed by
 * one thread in t order: results do not depend on n_threads. Backwards
 * accumulate (+=) into dinp. */
#include "backend/cpu/cpu.h"

#define PAR_MIN_ELEMS 32768

static inline bool is_real(const uint8_t *mask, int64_t b, int64_t T, int64_t t) {
    return !mask || mask[b * T + t];
}

/* out[b] = sum over real t of inp[b, t] / (number of real t). */
void qb_cpu_pool_mean_forward(const qb_exec *ex, float *out, const float *inp, const uint8_t *mask,
                              int64_t B, int64_t T, int64_t C) {
#pragma omp parallel for num_threads(ex->n_threads) schedule(static) if (B * T * C > PAR_MIN_ELEMS)
    for (int64_t b = 0; b < B; b++) {
        float *o = out + b * C;
        for (int64_t c = 0; c < C; c++) o[c] = 0.0f;
        int64_t n = 0;
        for (int64_t t = 0; t < T; t++) {
            if (!is_real(mask, b, T, t)) continue;
            const float *x = inp + (b * T + t) * C;
            for (int64_t c = 0; c < C; c++) o[c] += x[c];
            n++;
        }
        if (n > 1) {
            const float inv = 1.0f / (float)n;
            for (int64_t c = 0; c < C; c++) o[c] *= inv;
        }
    }
}

/* dinp[b, t] += dout[b] / n for each real t. */
void qb_cpu_pool_mean_backward(const qb_exec *ex, float *dinp, const float *dout, const uint8_t *mask,
                               int64_t B, int64_t T, int64_t C) {
#pragma omp parallel for num_threads(ex->n_threads) schedule(static) if (B * T * C > PAR_MIN_ELEMS)
    for (int64_t b = 0; b < B; b++) {
        int64_t n = 0;
        for (int64_t t = 0; t < T; t++) n += is_real(mask, b, T, t);
        if (n == 0) continue;
        const float inv = 1.0f / (float)n;
        const float *g = dout + b * C;
        for (int64_t t = 0; t < T; t++) {
            if (!is_real(mask, b, T, t)) continue;
            float *dx = dinp + (b * T + t) * C;
            for (int64_t c = 0; c < C; c++) dx[c] += g[c] * inv;
        }
    }
}

/* out[b, c] = max over real t of inp[b, t, c]; argmax[b, c] = the first such
 * t. The first real token always wins the comparison with "none yet", so a
 * row of -inf (or NaN) still selects a real position. */
void qb_cpu_pool_max_forward(const qb_exec *ex, float *out, int32_t *argmax, const float *inp,
                             const uint8_t *mask, int64_t B, int64_t T, int64_t C) {
#pragma omp parallel for num_threads(ex->n_threads) schedule(static) if (B * T * C > PAR_MIN_ELEMS)
    for (int64_t b = 0; b < B; b++) {
        float *o = out + b * C;
        int32_t *am = argmax + b * C;
        for (int64_t c = 0; c < C; c++) {
            o[c] = 0.0f;
            am[c] = -1;
        }
        for (int64_t t = 0; t < T; t++) {
            if (!is_real(mask, b, T, t)) continue;
            const float *x = inp + (b * T + t) * C;
            for (int64_t c = 0; c < C; c++) {
                if (am[c] < 0 || x[c] > o[c]) {
                    o[c] = x[c];
                    am[c] = (int32_t)t;
                }
            }
        }
    }
}

/* dinp[b, argmax[b, c], c] += dout[b, c]; argmax outside [0, T) passes nothing. */
void qb_cpu_pool_max_backward(const qb_exec *ex, float *dinp, const float *dout, const int32_t *argmax,
                              int64_t B, int64_t T, int64_t C) {
#pragma omp parallel for num_threads(ex->n_threads) schedule(static) if (B * C > PAR_MIN_ELEMS)
    for (int64_t b = 0; b < B; b++) {
        for (int64_t c = 0; c < C; c++) {
            int64_t t = argmax[b * C + c];
            if (t < 0 || t >= T) continue;
            dinp[(b * T + t) * C + c] += dout[b * C + c];
        }
    }
}
