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

/* Below this many elements a parallel region costs more than it saves. */
#define PAR_MIN_ELEMS 32768

/* ---- GELU ----------------------------------------------------------------
 * gelu(x) = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))      (torch.nn.GELU())
 * gelu'(x) = Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi). */
#define GELU_INV_SQRT2 0.70710678118654752440f
#define GELU_INV_SQRT_2PI 0.39894228040143267794f

/* Every kernel's arguments here; each uses the fields it names. */
typedef struct act_job {
    float *out;
    uint8_t *keep;
    const float *inp, *dout;
    const uint8_t *keep_in;
    float s;
    uint64_t seed, threshold;
    int64_t C;
} act_job;

/* `omp simd` keeps the vectorization `omp parallel for simd` gave it. */
static void gelu_forward_range(void *ctx, int64_t i0, int64_t i1, int part) {
    (void)part;
    const act_job *j = ctx;
    float *out = j->out;
    const float *inp = j->inp;
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) {
        out[i] = qb_gelu_fast(inp[i]);
    }
}

void qb_cpu_gelu_forward(const qb_exec *ex, float *out, const float *inp, int64_t n) {
    act_job j = {.out = out, .inp = inp};
    qb_parallel_for(ex, n, n > PAR_MIN_ELEMS, gelu_forward_range, &j);
}

/* The derivative of the forward's function (qb_erf_fast), with the
 * vectorizable qb_exp_neg: glibc's scalar erff and expf made this 13 times
 * slower than the forward (docs/benchmarks.md, "Where a training step
 * goes"). */
static inline float gelu_grad(float x) {
    float cdf = 0.5f * (1.0f + qb_erf_fast(x * GELU_INV_SQRT2));
    float pdf = GELU_INV_SQRT_2PI * qb_exp_neg(-0.5f * x * x);
    return cdf + x * pdf;
}

static void gelu_backward_range(void *ctx, int64_t i0, int64_t i1, int part) {
    (void)part;
    const act_job *j = ctx;
    float *out = j->out;
    const float *inp = j->inp, *dout = j->dout;
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) {
        out[i] += dout[i] * gelu_grad(inp[i]);
    }
}

void qb_cpu_gelu_backward(const qb_exec *ex, float *dinp, const float *inp, const float *dout, int64_t n) {
    act_job j = {.out = dinp, .inp = inp, .dout = dout};
    qb_parallel_for(ex, n, n > PAR_MIN_ELEMS, gelu_backward_range, &j);
}

static void gelu_backward_set_range(void *ctx, int64_t i0, int64_t i1, int part) {
    (void)part;
    const act_job *j = ctx;
    float *out = j->out;
    const float *inp = j->inp, *dout = j->dout;
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) {
        out[i] = dout[i] * gelu_grad(inp[i]);
    }
}

/* Two passes, not one: the GELU over elements, then bias_backward's column
 * sums. A single pass has to split by columns (a thread must own whole
 * columns of dbias and sum them in row order, or the bits would depend on
 * the thread count). Measured at 8192 x 1024 on the 2-vCPU machine, 2
 * threads: with 64-column blocks it took 19.5 ms against 6.5 + 2.1 ms for
 * the two passes; with one 512-column range per thread, 18.5 ms against
 * 13.1 + 3.5 ms (a busier hour). Each row's slice is then part of a page,
 * and the pass lost more than the read of the gradient it saves. What the
 * op keeps is the overwrite: the gradient it writes needs no clearing. */
void qb_cpu_gelu_bias_backward(const qb_exec *ex, float *dinp, float *dbias, const float *inp, const float *dout,
                               int64_t N, int64_t C) {
    if (N <= 0 || C <= 0) return;
    act_job j = {.out = dinp, .inp = inp, .dout = dout};
    qb_parallel_for(ex, N * C, N * C > PAR_MIN_ELEMS, gelu_backward_set_range, &j);
    if (dbias) qb_cpu_bias_backward(ex, dbias, dinp, N, C);
}

/* ---- quick GELU (OpenAI CLIP) ----------------------------------------------
 * q(x) = x s(x), s(x) = sigmoid(1.702 x); q'(x) = s + 1.702 x s (1 - s).
 * s from qb_exp_neg of -1.702 |x| on either side of 0, so no exp overflows. */
#define QUICK_GELU_A 1.702f

static inline float quick_sigmoid(float x) {
    const float e = qb_exp_neg(-QUICK_GELU_A * fabsf(x));
    return x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

static void quick_gelu_forward_range(void *ctx, int64_t i0, int64_t i1, int part) {
    (void)part;
    const act_job *j = ctx;
    float *out = j->out;
    const float *inp = j->inp;
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) {
        out[i] = inp[i] * quick_sigmoid(inp[i]);
    }
}

void qb_cpu_quick_gelu_forward(const qb_exec *ex, float *out, const float *inp, int64_t n) {
    act_job j = {.out = out, .inp = inp};
    qb_parallel_for(ex, n, n > PAR_MIN_ELEMS, quick_gelu_forward_range, &j);
}

static void quick_gelu_backward_set_range(void *ctx, int64_t i0, int64_t i1, int part) {
    (void)part;
    const act_job *j = ctx;
    float *out = j->out;
    const float *inp = j->inp, *dout = j->dout;
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) {
        const float s = quick_sigmoid(inp[i]);
        out[i] = dout[i] * (s + QUICK_GELU_A * inp[i] * s * (1.0f - s));
    }
}

/* Two passes, as qb_cpu_gelu_bias_backward (same reasons). */
void qb_cpu_quick_gelu_bias_backward(const qb_exec *ex, float *dinp, float *dbias, const float *inp, const float *dout,
                                     int64_t N, int64_t C) {
    if (N <= 0 || C <= 0) return;
    act_job j = {.out = dinp, .inp = inp, .dout = dout};
    qb_parallel_for(ex, N * C, N * C > PAR_MIN_ELEMS, quick_gelu_backward_set_range, &j);
    if (dbias) qb_cpu_bias_backward(ex, dbias, dinp, N, C);
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

static void dropout_copy_range(void *ctx, int64_t i0, int64_t i1, int part) {
    (void)part;
    const act_job *j = ctx;
    for (int64_t i = i0; i < i1; i++) {
        j->out[i] = j->inp[i];
        j->keep[i] = 1;
    }
}

static void dropout_all_range(void *ctx, int64_t i0, int64_t i1, int part) {
    (void)part;
    const act_job *j = ctx;
    for (int64_t i = i0; i < i1; i++) {
        j->out[i] = 0.0f;
        j->keep[i] = 0;
    }
}

static void dropout_forward_range(void *ctx, int64_t i0, int64_t i1, int part) {
    (void)part;
    const act_job *j = ctx;
    for (int64_t i = i0; i < i1; i++) {
        uint8_t k = (dropout_hash(j->seed, (uint64_t)i) >> 40) >= j->threshold;
        j->keep[i] = k;
        j->out[i] = k ? j->inp[i] * j->s : 0.0f;
    }
}

void qb_cpu_dropout_forward(const qb_exec *ex, float *out, uint8_t *keep, const float *inp, int64_t n,
                            float p, uint64_t seed) {
    act_job j = {.out = out, .keep = keep, .inp = inp, .seed = seed};
    if (!(p > 0.0f)) {
        /* p = 0 (inference): identity, bit-exact, every element kept. */
        qb_parallel_for(ex, n, n > PAR_MIN_ELEMS, dropout_copy_range, &j);
        return;
    }
    if (p >= 1.0f) {
        /* Everything dropped; 1/(1-p) would be inf, so write exact zeros. */
        qb_parallel_for(ex, n, n > PAR_MIN_ELEMS, dropout_all_range, &j);
        return;
    }
    /* u >= p  <=>  (hash >> 40) >= ceil(p * 2^24) for u = (hash >> 40) / 2^24. */
    j.threshold = (uint64_t)ceil((double)p * 16777216.0);
    j.s = 1.0f / (1.0f - p);
    qb_parallel_for(ex, n, n > PAR_MIN_ELEMS, dropout_forward_range, &j);
}

static void dropout_backward_range(void *ctx, int64_t i0, int64_t i1, int part) {
    (void)part;
    const act_job *j = ctx;
    for (int64_t i = i0; i < i1; i++)
        if (j->keep_in[i]) j->out[i] += j->dout[i] * j->s;
}

void qb_cpu_dropout_backward(const qb_exec *ex, float *dinp, const float *dout, const uint8_t *keep,
                             int64_t n, float p) {
    if (p >= 1.0f) return; /* nothing was kept: no gradient flows */
    act_job j = {.out = dinp, .dout = dout, .keep_in = keep, .s = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f};
    qb_parallel_for(ex, n, n > PAR_MIN_ELEMS, dropout_backward_range, &j);
}

/* ---- row softmax ---------------------------------------------------------
 * out = exp(x - max x) / sum exp(x - max x): subtracting the row max keeps
 * every exponent <= 0, so nothing overflows. Backward of y = softmax(x):
 * dx = y * (dy - sum_j dy_j y_j). */
static void softmax_forward_range(void *ctx, int64_t n0, int64_t n1, int part) {
    (void)part;
    const act_job *j = ctx;
    const int64_t C = j->C;
    for (int64_t n = n0; n < n1; n++) {
        const float *x = j->inp + n * C;
        float *y = j->out + n * C;
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

void qb_cpu_softmax_forward(const qb_exec *ex, float *out, const float *inp, int64_t N, int64_t C) {
    if (C <= 0) return;
    act_job j = {.out = out, .inp = inp, .C = C};
    qb_parallel_for(ex, N, N * C > PAR_MIN_ELEMS, softmax_forward_range, &j);
}

/* out: dinp; inp: the forward's output y. */
static void softmax_backward_range(void *ctx, int64_t n0, int64_t n1, int part) {
    (void)part;
    const act_job *j = ctx;
    const int64_t C = j->C;
    for (int64_t n = n0; n < n1; n++) {
        const float *dy = j->dout + n * C;
        const float *y = j->inp + n * C;
        float *dx = j->out + n * C;
        float dot = 0.0f;
        for (int64_t c = 0; c < C; c++) dot += dy[c] * y[c];
        for (int64_t c = 0; c < C; c++) dx[c] += y[c] * (dy[c] - dot);
    }
}

void qb_cpu_softmax_backward(const qb_exec *ex, float *dinp, const float *dout, const float *out, int64_t N,
                             int64_t C) {
    act_job j = {.out = dinp, .inp = out, .dout = dout, .C = C};
    qb_parallel_for(ex, N, N * C > PAR_MIN_ELEMS, softmax_backward_range, &j);
}
