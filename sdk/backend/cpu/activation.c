/* GELU, inverted dropout and row softmax on the CPU.
 *
 * Every backward here accumulates (+=) into dinp (backend.h convention).
 * Elementwise kernels split by element and softmax by row, so each output
 * element is computed by exactly one thread with the same arithmetic for any
 * thread count: results do not depend on ex->n_threads. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "backend/cpu/cpu.h"

/* Below this many elements an OpenMP team costs more than it saves. */
#define PAR_MIN_ELEMS 32768

/* ---- GELU ----------------------------------------------------------------
 * gelu(x) = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))      (torch.nn.GELU())
 * gelu'(x) = Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi). */
#define GELU_INV_SQRT2 0.70710678118654752440f
#define GELU_INV_SQRT_2PI 0.39894228040143267794f

void qb_cpu_gelu_forward(const qb_exec *ex, float *out, const float *inp, int64_t n) {
#pragma omp parallel for simd num_threads(ex->n_threads) schedule(static) if (parallel : n > PAR_MIN_ELEMS)
    for (int64_t i = 0; i < n; i++) {
        out[i] = qb_gelu_fast(inp[i]);
    }
}

void qb_cpu_gelu_backward(const qb_exec *ex, float *dinp, const float *inp, const float *dout, int64_t n) {
#pragma omp parallel for num_threads(ex->n_threads) schedule(static) if (n > PAR_MIN_ELEMS)
    for (int64_t i = 0; i < n; i++) {
        float x = inp[i];
        float cdf = 0.5f * (1.0f + erff(x * GELU_INV_SQRT2));
        float pdf = GELU_INV_SQRT_2PI * expf(-0.5f * x * x);
        dinp[i] += dout[i] * (cdf + x * pdf);
    }
}

/* ---- dropout -------------------------------------------------------------
 * The keep bit of element i is a pure function of (seed, i): the splitmix64
 * finalizer of seed + (i + 1) * golden-ratio increment, i.e. element i draws
 * the (i+1)-th output of a splitmix64 stream seeded with `seed`. Being
 * counter-based, it needs no shared state and gives the same mask for any
 * thread count or split. The top 24 bits form u in [0, 1) with 2^-24
 * resolution; the element is kept when u >= p, so P(keep) = 1 - p up to that
 * resolution. */
static inline uint64_t dropout_hash(uint64_t seed, uint64_t i) {
    uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void qb_cpu_dropout_forward(const qb_exec *ex, float *out, uint8_t *keep, const float *inp, int64_t n,
                            float p, uint64_t seed) {
    if (!(p > 0.0f)) {
        /* p = 0 (inference): identity, bit-exact, every element kept. */
#pragma omp parallel for num_threads(ex->n_threads) schedule(static) if (n > PAR_MIN_ELEMS)
        for (int64_t i = 0; i < n; i++) {
            out[i] = inp[i];
            keep[i] = 1;
        }
        return;
    }
    if (p >= 1.0f) {
        /* Everything dropped; 1/(1-p) would be inf, so write exact zeros. */
#pragma omp parallel for num_threads(ex->n_threads) schedule(static) if (n > PAR_MIN_ELEMS)
        for (int64_t i = 0; i < n; i++) {
            out[i] = 0.0f;
            keep[i] = 0;
        }
        return;
    }
    /* u >= p  <=>  (hash >> 40) >= ceil(p * 2^24) for u = (hash >> 40) / 2^24. */
    const uint64_t threshold = (uint64_t)ceil((double)p * 16777216.0);
    const float s = 1.0f / (1.0f - p);
#pragma omp parallel for num_threads(ex->n_threads) schedule(static) if (n > PAR_MIN_ELEMS)
    for (int64_t i = 0; i < n; i++) {
        uint8_t k = (dropout_hash(seed, (uint64_t)i) >> 40) >= threshold;
        keep[i] = k;
        out[i] = k ? inp[i] * s : 0.0f;
    }
}

void qb_cpu_dropout_backward(const qb_exec *ex, float *dinp, const float *dout, const uint8_t *keep,
                             int64_t n, float p) {
    if (p >= 1.0f) return; /* nothing was kept: no gradient flows */
    const float s = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
#pragma omp parallel for num_threads(ex->n_threads) schedule(static) if (n > PAR_MIN_ELEMS)
    for (int64_t i = 0; i < n; i++)
        if (keep[i]) dinp[i] += dout[i] * s;
}

/* ---- row softmax ---------------------------------------------------------
 * out = exp(x - max x) / sum exp(x - max x): subtracting the row max keeps
 * every exponent <= 0, so nothing overflows. Backward of y = softmax(x):
 * dx = y * (dy - sum_j dy_j y_j). */
void qb_cpu_softmax_forward(const qb_exec *ex, float *out, const float *inp, int64_t N, int64_t C) {
    if (C <= 0) return;
#pragma omp parallel for num_threads(ex->n_threads) schedule(static) if (N * C > PAR_MIN_ELEMS)
    for (int64_t n = 0; n < N; n++) {
        const float *x = inp + n * C;
        float *y = out + n * C;
        float mx = x[0];
        for (int64_t c = 1; c < C; c++) mx = x[c] > mx ? x[c] : mx;
        float sum = 0.0f;
        for (int64_t c = 0; c < C; c++) {
            y[c] = expf(x[c] - mx);
            sum += y[c];
        }
        /* sum >= 1 (the max contributes exp(0)), so the division is safe. */
        float inv = 1.0f / sum;
        for (int64_t c = 0; c < C; c++) y[c] *= inv;
    }
}

void qb_cpu_softmax_backward(const qb_exec *ex, float *dinp, const float *dout, const float *out, int64_t N,
                             int64_t C) {
#pragma omp parallel for num_threads(ex->n_threads) schedule(static) if (N * C > PAR_MIN_ELEMS)
    for (int64_t n = 0; n < N; n++) {
        const float *dy = dout + n * C;
        const float *y = out + n * C;
        float *dx = dinp + n * C;
        float dot = 0.0f;
        for (int64_t c = 0; c < C; c++) dot += dy[c] * y[c];
        for (int64_t c = 0; c < C; c++) dx[c] += y[c] * (dy[c] - dot);
    }
}
