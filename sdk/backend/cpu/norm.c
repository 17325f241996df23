/* LayerNorm and L2 normalization over the last dim, on the CPU.
 *
 * Every backward here accumulates (+=) into the gradients it writes
 * (backend.h convention). Per-row work is split by row; parameter gradients
 * (sums over rows) are split by column block and summed in row order, so no
 * two threads write the same element and the result does not depend on the
 * thread count. */
#include <math.h>

#include "backend/cpu/cpu.h"

#define PAR_MIN_ELEMS 32768
/* Columns per block in the parameter-gradient pass: 64 floats = 4 cache lines
 * per row, enough to amortize a row's pointer setup, small enough to give a
 * 2+ thread team work at C >= 128. */
#define COL_BLOCK 64

typedef struct ln_fw_job {
    float *out;
    float *mean;
    float *rstd;
    const float *inp;
    const float *w;
    const float *b;
    int64_t C;
    float eps;
} ln_fw_job;

/* One row: out = (x - mean) rstd w + b. Shared by the plain and the
 * residual forward, so both give the same bits. */
static inline void ln_row(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b, int64_t C,
                          float eps) {
    /* The two sums in `omp simd` (partial sums per lane, still in
     * double): the serial double loops were 3-5% of an encoder forward. */
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t c = 0; c < C; c++) s += x[c];
    double m = s / (double)C;
    double v = 0.0;
#pragma omp simd reduction(+ : v)
    for (int64_t c = 0; c < C; c++) {
        double d = x[c] - m;
        v += d * d;
    }
    v /= (double)C;
    float mf = (float)m;
    float rs = (float)(1.0 / sqrt(v + (double)eps));
    for (int64_t c = 0; c < C; c++) y[c] = (x[c] - mf) * rs * w[c] + b[c];
    *mean = mf;
    *rstd = rs;
}

static void ln_fw_range(void *ctx, int64_t n0, int64_t n1, int part) {
    (void)part;
    const ln_fw_job *j = ctx;
    const int64_t C = j->C;
    for (int64_t n = n0; n < n1; n++)
        ln_row(j->out + n * C, j->mean + n, j->rstd + n, j->inp + n * C, j->w, j->b, C, j->eps);
}

typedef struct res_ln_fw_job {
    float *h, *out, *mean, *rstd;
    const float *x, *y, *bias, *w, *b;
    int64_t C;
    float eps;
} res_ln_fw_job;

/* h = (y + bias) + x, the order bias_forward then add gave it, and the
 * row's norm while it is still in L1. */
static void res_ln_fw_range(void *ctx, int64_t n0, int64_t n1, int part) {
    (void)part;
    const res_ln_fw_job *j = ctx;
    const int64_t C = j->C;
    for (int64_t n = n0; n < n1; n++) {
        float *h = j->h + n * C;
        const float *x = j->x + n * C, *y = j->y + n * C, *bias = j->bias;
        if (bias) {
#pragma omp simd
            for (int64_t c = 0; c < C; c++) h[c] = (y[c] + bias[c]) + x[c];
        } else {
#pragma omp simd
            for (int64_t c = 0; c < C; c++) h[c] = y[c] + x[c];
        }
        if (j->out) ln_row(j->out + n * C, j->mean + n, j->rstd + n, h, j->w, j->b, C, j->eps);
    }
}

void qb_cpu_residual_layernorm_forward(const qb_exec *ex, float *h, float *out, float *mean, float *rstd,
                                       const float *x, const float *y, const float *bias, const float *w,
                                       const float *b, int64_t N, int64_t C, float eps) {
    if (C <= 0) return;
    res_ln_fw_job j = {h, out, mean, rstd, x, y, bias, w, b, C, eps};
    qb_parallel_for(ex, N, N * C > PAR_MIN_ELEMS, res_ln_fw_range, &j);
}

/* ---- LayerNorm (Ba et al. 2016), as torch.nn.LayerNorm ---------------------
 * mean = sum x / C, var = sum (x - mean)^2 / C (biased), rstd = 1/sqrt(var + eps),
 * out = (x - mean) rstd w + b. Statistics are accumulated in double and in
 * two passes, so a large common offset in x does not cancel digits. */
void qb_cpu_layernorm_forward(const qb_exec *ex, float *out, float *mean, float *rstd, const float *inp,
                              const float *w, const float *b, int64_t N, int64_t C, float eps) {
    if (C <= 0) return;
    ln_fw_job j_ln_fw = {out, mean, rstd, inp, w, b, C, eps};
    qb_parallel_for(ex, N, N * C > PAR_MIN_ELEMS, ln_fw_range, &j_ln_fw);
}

typedef struct ln_bw_x_job {
    float *dinp;
    const float *dres; /* residual_layernorm_backward: added, and dinp overwritten */
    bool set;          /* overwrite dinp (else accumulate) */
    const float *dout;
    const float *inp;
    const float *w;
    const float *mean;
    const float *rstd;
    int64_t C;
} ln_bw_x_job;

static void ln_bw_x_range(void *ctx, int64_t n0, int64_t n1, int part) {
    (void)part;
    const ln_bw_x_job *j = ctx;
    float *dinp = j->dinp;
    const float *dout = j->dout, *inp = j->inp, *w = j->w, *mean = j->mean, *rstd = j->rstd;
    const int64_t C = j->C;
    for (int64_t n = n0; n < n1; n++) {
        const float *x = inp + n * C;
        const float *dy = dout + n * C;
        float *dx = dinp + n * C;
        float m = mean[n], rs = rstd[n];
        float gsum = 0.0f, gxsum = 0.0f;
        for (int64_t c = 0; c < C; c++) {
            float xh = (x[c] - m) * rs;
            float g = w[c] * dy[c];
            gsum += g;
            gxsum += g * xh;
        }
        float gmean = gsum / (float)C, gxmean = gxsum / (float)C;
        /* The fused forms give the bits of zeroing dx, adding dres to it and
         * then accumulating (0 + r is r; dres + r is the same sum). */
        if (!j->set) {
            for (int64_t c = 0; c < C; c++) {
                float xh = (x[c] - m) * rs;
                dx[c] += rs * (w[c] * dy[c] - gmean - xh * gxmean);
            }
        } else if (j->dres) {
            const float *dr = j->dres + n * C;
            for (int64_t c = 0; c < C; c++) {
                float xh = (x[c] - m) * rs;
                dx[c] = dr[c] + rs * (w[c] * dy[c] - gmean - xh * gxmean);
            }
        } else {
            for (int64_t c = 0; c < C; c++) {
                float xh = (x[c] - m) * rs;
                dx[c] = rs * (w[c] * dy[c] - gmean - xh * gxmean);
            }
        }
    }
}

typedef struct ln_bw_w_job {
    float *dw;
    float *db;
    const float *dout;
    const float *inp;
    const float *mean;
    const float *rstd;
    int64_t N;
    int64_t C;
} ln_bw_w_job;

static void ln_bw_w_range(void *ctx, int64_t cb0, int64_t cb1, int part) {
    (void)part;
    const ln_bw_w_job *j = ctx;
    float *dw = j->dw, *db = j->db;
    const float *dout = j->dout, *inp = j->inp, *mean = j->mean, *rstd = j->rstd;
    const int64_t N = j->N, C = j->C;
    for (int64_t cb = cb0; cb < cb1; cb++) {
        int64_t c0 = cb * COL_BLOCK, c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
        float aw[COL_BLOCK] = {0}, ab[COL_BLOCK] = {0};
        for (int64_t n = 0; n < N; n++) {
            const float *x = inp + n * C;
            const float *dy = dout + n * C;
            float m = mean[n], rs = rstd[n];
            for (int64_t c = c0; c < c1; c++) {
                aw[c - c0] += dy[c] * ((x[c] - m) * rs);
                ab[c - c0] += dy[c];
            }
        }
        for (int64_t c = c0; c < c1; c++) {
            dw[c] += aw[c - c0];
            db[c] += ab[c - c0];
        }
    }
}

/* With xhat = (x - mean) rstd and g = w * dout:
 *   dx = rstd (g - mean(g) - xhat mean(g xhat)),  dw += sum_n dout xhat,  db += sum_n dout. */
static void ln_backward(const qb_exec *ex, float *dinp, float *dw, float *db, const float *dres, bool set,
                        const float *dout, const float *inp, const float *w, const float *mean, const float *rstd,
                        int64_t N, int64_t C) {
    if (C <= 0) return;
    ln_bw_x_job j_ln_bw_x = {dinp, dres, set, dout, inp, w, mean, rstd, C};
    qb_parallel_for(ex, N, N * C > PAR_MIN_ELEMS, ln_bw_x_range, &j_ln_bw_x);

    int64_t nblocks = (C + COL_BLOCK - 1) / COL_BLOCK;
    ln_bw_w_job j_ln_bw_w = {dw, db, dout, inp, mean, rstd, N, C};
    qb_parallel_for(ex, nblocks, N * C > PAR_MIN_ELEMS, ln_bw_w_range, &j_ln_bw_w);
}

void qb_cpu_layernorm_backward(const qb_exec *ex, float *dinp, float *dw, float *db, const float *dout,
                               const float *inp, const float *w, const float *mean, const float *rstd, int64_t N,
                               int64_t C) {
    ln_backward(ex, dinp, dw, db, NULL, false, dout, inp, w, mean, rstd, N, C);
}

void qb_cpu_residual_layernorm_backward(const qb_exec *ex, float *dinp, float *dw, float *db, const float *dres,
                                        const float *dout, const float *inp, const float *w, const float *mean,
                                        const float *rstd, int64_t N, int64_t C) {
    ln_backward(ex, dinp, dw, db, dres, true, dout, inp, w, mean, rstd, N, C);
}

typedef struct l2_fw_job {
    float *out;
    float *norm;
    const float *inp;
    int64_t C;
    float eps;
} l2_fw_job;

static void l2_fw_range(void *ctx, int64_t n0, int64_t n1, int part) {
    (void)part;
    const l2_fw_job *j = ctx;
    float *out = j->out, *norm = j->norm;
    const float *inp = j->inp;
    const int64_t C = j->C;
    const float eps = j->eps;
    for (int64_t n = n0; n < n1; n++) {
        const float *x = inp + n * C;
        float *y = out + n * C;
        double ss = 0.0;
        for (int64_t c = 0; c < C; c++) ss += (double)x[c] * (double)x[c];
        float nrm = (float)sqrt(ss);
        float d = nrm > eps ? nrm : eps;
        float inv = 1.0f / d;
        for (int64_t c = 0; c < C; c++) y[c] = x[c] * inv;
        norm[n] = d;
    }
}

/* ---- L2 normalization, as torch.nn.functional.normalize ---------------------
 * out = x / d with d = max(||x||_2, eps); norm[n] = d.
 * Unclamped (||x|| > eps): dx = (dout - out (out . dout)) / ||x||.
 * Clamped (d = eps, a constant): out = x / eps, so dx = dout / eps, a scaling
 * that does not depend on x. The backward tells the two apart by norm > eps;
 * at an exact tie PyTorch's clamp_min passes the gradient through the norm,
 * which norm > eps treats as clamped: a measure-zero difference. */
void qb_cpu_l2norm_forward(const qb_exec *ex, float *out, float *norm, const float *inp, int64_t N, int64_t C,
                           float eps) {
    l2_fw_job j_l2_fw = {out, norm, inp, C, eps};
    qb_parallel_for(ex, N, N * C > PAR_MIN_ELEMS, l2_fw_range, &j_l2_fw);
}

typedef struct l2_bw_job {
    float *dinp;
    const float *dout;
    const float *out;
    const float *norm;
    int64_t C;
    float eps;
} l2_bw_job;

static void l2_bw_range(void *ctx, int64_t n0, int64_t n1, int part) {
    (void)part;
    const l2_bw_job *j = ctx;
    float *dinp = j->dinp;
    const float *dout = j->dout, *out = j->out, *norm = j->norm;
    const int64_t C = j->C;
    const float eps = j->eps;
    for (int64_t n = n0; n < n1; n++) {
        const float *y = out + n * C;
        const float *dy = dout + n * C;
        float *dx = dinp + n * C;
        float inv = 1.0f / norm[n];
        if (norm[n] > eps) {
            float dot = 0.0f;
            for (int64_t c = 0; c < C; c++) dot += y[c] * dy[c];
            for (int64_t c = 0; c < C; c++) dx[c] += (dy[c] - y[c] * dot) * inv;
        } else {
            for (int64_t c = 0; c < C; c++) dx[c] += dy[c] * inv;
        }
    }
}

void qb_cpu_l2norm_backward(const qb_exec *ex, float *dinp, const float *dout, const float *out,
                            const float *norm, int64_t N, int64_t C, float eps) {
    l2_bw_job j_l2_bw = {dinp, dout, out, norm, C, eps};
    qb_parallel_for(ex, N, N * C > PAR_MIN_ELEMS, l2_bw_range, &j_l2_bw);
}
