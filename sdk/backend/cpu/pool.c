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

/* Every kernel's arguments here; each uses the fields it names: forward
 * kernels write `out` from `in`, backward ones accumulate into `out` from
 * the upstream gradient in `in`. */
typedef struct pool_job {
    float *out;
    const float *in;
    const uint8_t *mask;
    int32_t *argmax;          /* max forward: written */
    const int32_t *argmax_in; /* max backward: read */
    int64_t T, C;
} pool_job;

static void mean_fw_range(void *ctx, int64_t b0, int64_t b1, int part) {
    (void)part;
    const pool_job *j = ctx;
    float *out = j->out;
    const float *inp = j->in;
    const uint8_t *mask = j->mask;
    const int64_t T = j->T, C = j->C;
    for (int64_t b = b0; b < b1; b++) {
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

/* out[b] = sum over real t of inp[b, t] / (number of real t). */
void qb_cpu_pool_mean_forward(const qb_exec *ex, float *out, const float *inp, const uint8_t *mask,
                              int64_t B, int64_t T, int64_t C) {
    pool_job j = {.out = out, .in = inp, .mask = mask, .T = T, .C = C};
    qb_parallel_for(ex, B, B * T * C > PAR_MIN_ELEMS, mean_fw_range, &j);
}

static void mean_bw_range(void *ctx, int64_t b0, int64_t b1, int part) {
    (void)part;
    const pool_job *j = ctx;
    float *dinp = j->out;
    const float *dout = j->in;
    const uint8_t *mask = j->mask;
    const int64_t T = j->T, C = j->C;
    for (int64_t b = b0; b < b1; b++) {
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

/* dinp[b, t] += dout[b] / n for each real t. */
void qb_cpu_pool_mean_backward(const qb_exec *ex, float *dinp, const float *dout, const uint8_t *mask,
                               int64_t B, int64_t T, int64_t C) {
    pool_job j = {.out = dinp, .in = dout, .mask = mask, .T = T, .C = C};
    qb_parallel_for(ex, B, B * T * C > PAR_MIN_ELEMS, mean_bw_range, &j);
}

static void max_fw_range(void *ctx, int64_t b0, int64_t b1, int part) {
    (void)part;
    const pool_job *j = ctx;
    float *out = j->out;
    int32_t *argmax = j->argmax;
    const float *inp = j->in;
    const uint8_t *mask = j->mask;
    const int64_t T = j->T, C = j->C;
    for (int64_t b = b0; b < b1; b++) {
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

/* out[b, c] = max over real t of inp[b, t, c]; argmax[b, c] = the first such
 * t. The first real token always wins the comparison with "none yet", so a
 * row of -inf (or NaN) still selects a real position. */
void qb_cpu_pool_max_forward(const qb_exec *ex, float *out, int32_t *argmax, const float *inp,
                             const uint8_t *mask, int64_t B, int64_t T, int64_t C) {
    pool_job j = {.out = out, .in = inp, .mask = mask, .argmax = argmax, .T = T, .C = C};
    qb_parallel_for(ex, B, B * T * C > PAR_MIN_ELEMS, max_fw_range, &j);
}

static void max_bw_range(void *ctx, int64_t b0, int64_t b1, int part) {
    (void)part;
    const pool_job *j = ctx;
    float *dinp = j->out;
    const float *dout = j->in;
    const int32_t *argmax = j->argmax_in;
    const int64_t T = j->T, C = j->C;
    for (int64_t b = b0; b < b1; b++) {
        for (int64_t c = 0; c < C; c++) {
            int64_t t = argmax[b * C + c];
            if (t < 0 || t >= T) continue;
            dinp[(b * T + t) * C + c] += dout[b * C + c];
        }
    }
}

/* dinp[b, argmax[b, c], c] += dout[b, c]; argmax outside [0, T) passes nothing. */
void qb_cpu_pool_max_backward(const qb_exec *ex, float *dinp, const float *dout, const int32_t *argmax,
                              int64_t B, int64_t T, int64_t C) {
    pool_job j = {.out = dinp, .in = dout, .argmax_in = argmax, .T = T, .C = C};
    qb_parallel_for(ex, B, B * C > PAR_MIN_ELEMS, max_bw_range, &j);
}

/* The last real token of sequence b: -1 when it has none. */
static int64_t last_real(const uint8_t *mask, int64_t b, int64_t T) {
    for (int64_t t = T - 1; t >= 0; t--)
        if (is_real(mask, b, T, t)) return t;
    return -1;
}

static void last_fw_range(void *ctx, int64_t b0, int64_t b1, int part) {
    (void)part;
    const pool_job *j = ctx;
    const int64_t T = j->T, C = j->C;
    for (int64_t b = b0; b < b1; b++) {
        const int64_t t = last_real(j->mask, b, T);
        float *o = j->out + b * C;
        if (t < 0)
            memset(o, 0, (size_t)C * sizeof *o);
        else
            memcpy(o, j->in + (b * T + t) * C, (size_t)C * sizeof *o);
    }
}

/* out[b] = inp[b, t] for the last real t of b (zeros for none). */
void qb_cpu_pool_last_forward(const qb_exec *ex, float *out, const float *inp, const uint8_t *mask, int64_t B,
                              int64_t T, int64_t C) {
    pool_job j = {.out = out, .in = inp, .mask = mask, .T = T, .C = C};
    qb_parallel_for(ex, B, B * C > PAR_MIN_ELEMS, last_fw_range, &j);
}

static void last_bw_range(void *ctx, int64_t b0, int64_t b1, int part) {
    (void)part;
    const pool_job *j = ctx;
    const int64_t T = j->T, C = j->C;
    for (int64_t b = b0; b < b1; b++) {
        const int64_t t = last_real(j->mask, b, T);
        if (t < 0) continue;
        float *d = j->out + (b * T + t) * C;
        const float *g = j->in + b * C;
        for (int64_t c = 0; c < C; c++) d[c] += g[c];
    }
}

/* dinp[b, last real t] += dout[b]. */
void qb_cpu_pool_last_backward(const qb_exec *ex, float *dinp, const float *dout, const uint8_t *mask, int64_t B,
                               int64_t T, int64_t C) {
    pool_job j = {.out = dinp, .in = dout, .mask = mask, .T = T, .C = C};
    qb_parallel_for(ex, B, B * C > PAR_MIN_ELEMS, last_bw_range, &j);
}
