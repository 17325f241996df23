/* 1-D convolution, channels last, by im2col + GEMM (OpenBLAS).
 *
 * Shapes: inp (B, T, C), w (OC, C, K) as PyTorch's Conv1d, out (B, Tout, OC),
 * Tout = (T + 2*pad - K) / stride + 1, zero padding, dilation 1.
 *
 * A row of the im2col matrix is the receptive field of one output position,
 * laid out (C, K) exactly like a row of w viewed as (OC, C*K), so w is used
 * in place:
 *   col[r][c*K + k] = inp[b, t*stride - pad + k, c]   (0 outside [0, T)),
 *   r = b*Tout + t runs over all B*Tout output rows (rows of out and dout), so
 *   out  (rows, OC)  = col w^T
 *   dw   (OC, C*K)  += dout^T col
 *   dcol (rows, C*K) = dout w, scattered back into dinp (col2im).
 *
 * Scratch: rows are processed in chunks, and one buffer of about
 * CONV_SCRATCH_FLOATS floats (at least CONV_MIN_ROWS im2col rows) is
 * malloc'd per call. These kernels return void, so a failed malloc cannot be
 * reported; instead a direct loop that needs no scratch computes the same
 * result (slowly). The direct loop also serves problems too small for GEMM to
 * pay off, which keeps it exercised by the tests.
 *
 * Determinism: chunk boundaries depend only on the shapes; every output
 * element is summed by one thread in a fixed order (col2im gathers per input
 * position instead of scattering), so results do not depend on n_threads.
 *
 * The backward accumulates (+=) into dinp, dw and db; any of them may be NULL
 * to skip it (the first layer of an audio stem needs no dinp). */
#include <stdlib.h>

#include "backend/cpu/cpu.h"

#define CONV_SCRATCH_FLOATS ((int64_t)1 << 18) /* 1 MiB */
#define CONV_MIN_ROWS 32
/* Below this many multiply-adds (B*Tout*OC*C*K) the direct loop is used. */
#define CONV_DIRECT_MAX_MACS ((int64_t)1 << 14)
#define PAR_MIN_ELEMS 32768

typedef struct conv_dims {
    int64_t B, T, C, OC, K, stride, pad, Tout, KC, rows;
} conv_dims;

static bool conv_dims_make(conv_dims *d, int64_t B, int64_t T, int64_t C, int64_t OC, int64_t K,
                           int64_t stride, int64_t pad) {
    if (B <= 0 || T <= 0 || C <= 0 || OC <= 0 || K <= 0 || stride <= 0 || pad < 0) return false;
    if (T + 2 * pad < K) return false;
    d->B = B, d->T = T, d->C = C, d->OC = OC, d->K = K, d->stride = stride, d->pad = pad;
    d->Tout = (T + 2 * pad - K) / stride + 1;
    d->KC = K * C;
    d->rows = B * d->Tout;
    return true;
}

/* Rows per chunk and the scratch it needs, or 0 when the direct loop is used
 * by choice. */
static int64_t conv_chunk_rows(const conv_dims *d) {
    if (d->rows * d->OC * d->KC < CONV_DIRECT_MAX_MACS) return 0;
    int64_t r = CONV_SCRATCH_FLOATS / d->KC;
    if (r < CONV_MIN_ROWS) r = CONV_MIN_ROWS;
    return r < d->rows ? r : d->rows;
}

/* First and one-past-last kernel tap k whose input position t*stride-pad+k
 * lies inside [0, T). */
static inline void conv_taps(const conv_dims *d, int64_t t, int64_t *j0, int64_t *k0, int64_t *k1) {
    *j0 = t * d->stride - d->pad;
    *k0 = *j0 < 0 ? -*j0 : 0;
    *k1 = d->T - *j0 < d->K ? d->T - *j0 : d->K;
}

/* col (r1 - r0, KC) for output rows [r0, r1). */
static void im2col(const qb_exec *ex, float *col, const float *inp, const conv_dims *d, int64_t r0,
                   int64_t r1) {
    const int64_t K = d->K, C = d->C, KC = d->KC;
#pragma omp parallel for num_threads(ex->n_threads) schedule(static) if ((r1 - r0) * KC > PAR_MIN_ELEMS)
    for (int64_t r = r0; r < r1; r++) {
        int64_t b = r / d->Tout, t = r % d->Tout, j0, k0, k1;
        conv_taps(d, t, &j0, &k0, &k1);
        const float *x = inp + b * d->T * C;
        float *row = col + (r - r0) * KC;
        for (int64_t k = 0; k < K; k++) {
            if (k < k0 || k >= k1) {
                for (int64_t c = 0; c < C; c++) row[c * K + k] = 0.0f;
            } else {
                const float *xj = x + (j0 + k) * C;
                for (int64_t c = 0; c < C; c++) row[c * K + k] = xj[c];
            }
        }
    }
}

/* dinp += col2im(dcol) for output rows [r0, r1). Gathers per input position
 * j: the outputs t that read j are those with 0 <= j + pad - t*stride < K. */
static void col2im_add(const qb_exec *ex, float *dinp, const float *dcol, const conv_dims *d, int64_t r0,
                       int64_t r1) {
    const int64_t K = d->K, C = d->C, KC = d->KC, s = d->stride, p = d->pad;
    for (int64_t b = r0 / d->Tout; b * d->Tout < r1; b++) {
        int64_t ta = r0 > b * d->Tout ? r0 - b * d->Tout : 0;
        int64_t tb = r1 < (b + 1) * d->Tout ? r1 - b * d->Tout : d->Tout; /* t in [ta, tb) */
        int64_t ja = ta * s - p, jb = (tb - 1) * s - p + K;
        if (ja < 0) ja = 0;
        if (jb > d->T) jb = d->T;
        float *dx = dinp + b * d->T * C;
        const int64_t rb = b * d->Tout - r0; /* dcol row of t is rb + t */
#pragma omp parallel for num_threads(ex->n_threads) schedule(static) if ((jb - ja) * KC > PAR_MIN_ELEMS)
        for (int64_t j = ja; j < jb; j++) {
            int64_t lo = j + p - K + 1; /* t >= ceil(lo / s) */
            int64_t t0 = lo <= 0 ? 0 : (lo + s - 1) / s;
            int64_t t1 = (j + p) / s; /* inclusive */
            if (t0 < ta) t0 = ta;
            if (t1 > tb - 1) t1 = tb - 1;
            float *dxj = dx + j * C;
            for (int64_t t = t0; t <= t1; t++) {
                int64_t k = j + p - t * s;
                const float *row = dcol + (rb + t) * KC;
                for (int64_t c = 0; c < C; c++) dxj[c] += row[c * K + k];
            }
        }
    }
}

/* ---- direct loops (small problems, or no scratch) ------------------------ */

static void conv_direct_forward(const qb_exec *ex, float *out, const float *inp, const float *w,
                                const conv_dims *d) {
    const int64_t K = d->K, C = d->C, KC = d->KC, OC = d->OC;
#pragma omp parallel for num_threads(ex->n_threads) schedule(static) if (d->rows * OC * KC > PAR_MIN_ELEMS)
    for (int64_t r = 0; r < d->rows; r++) {
        int64_t b = r / d->Tout, t = r % d->Tout, j0, k0, k1;
        conv_taps(d, t, &j0, &k0, &k1);
        const float *x = inp + b * d->T * C;
        for (int64_t oc = 0; oc < OC; oc++) {
            const float *wo = w + oc * KC;
            float acc = 0.0f;
            for (int64_t k = k0; k < k1; k++) {
                const float *xj = x + (j0 + k) * C;
                for (int64_t c = 0; c < C; c++) acc += wo[c * K + k] * xj[c];
            }
            out[r * OC + oc] = acc;
        }
    }
}

static void conv_direct_backward(const qb_exec *ex, float *dinp, float *dw, const float *dout,
                                 const float *inp, const float *w, const conv_dims *d) {
    const int64_t K = d->K, C = d->C, KC = d->KC, OC = d->OC, s = d->stride, p = d->pad;
    const bool par = d->rows * OC * KC > PAR_MIN_ELEMS;
    if (dw) {
        /* Each thread owns whole rows dw[oc]. */
#pragma omp parallel for num_threads(ex->n_threads) schedule(static) if (par)
        for (int64_t oc = 0; oc < OC; oc++) {
            float *dwo = dw + oc * KC;
            for (int64_t r = 0; r < d->rows; r++) {
                int64_t b = r / d->Tout, t = r % d->Tout, j0, k0, k1;
                conv_taps(d, t, &j0, &k0, &k1);
                const float g = dout[r * OC + oc];
                const float *x = inp + b * d->T * C;
                for (int64_t k = k0; k < k1; k++) {
                    const float *xj = x + (j0 + k) * C;
                    for (int64_t c = 0; c < C; c++) dwo[c * K + k] += g * xj[c];
                }
            }
        }
    }
    if (dinp) {
#pragma omp parallel for num_threads(ex->n_threads) schedule(static) if (par)
        for (int64_t bj = 0; bj < d->B * d->T; bj++) {
            int64_t b = bj / d->T, j = bj % d->T;
            int64_t lo = j + p - K + 1;
            int64_t t0 = lo <= 0 ? 0 : (lo + s - 1) / s;
            int64_t t1 = (j + p) / s;
            if (t1 > d->Tout - 1) t1 = d->Tout - 1;
            float *dxj = dinp + bj * C;
            for (int64_t c = 0; c < C; c++) {
                float acc = 0.0f;
                for (int64_t t = t0; t <= t1; t++) {
                    int64_t k = j + p - t * s;
                    const float *g = dout + (b * d->Tout + t) * OC;
                    for (int64_t oc = 0; oc < OC; oc++) acc += g[oc] * w[oc * KC + c * K + k];
                }
                dxj[c] += acc;
            }
        }
    }
}

/* ---- entry points ------------------------------------------------------- */

void qb_cpu_conv1d_forward(const qb_exec *ex, float *out, const float *inp, const float *w, const float *b,
                           int64_t B, int64_t T, int64_t C, int64_t OC, int64_t K, int64_t stride,
                           int64_t pad) {
    conv_dims d;
    if (!conv_dims_make(&d, B, T, C, OC, K, stride, pad)) return;
    int64_t chunk = conv_chunk_rows(&d);
    float *col = chunk ? malloc((size_t)(chunk * d.KC) * sizeof(float)) : NULL;
    if (!col) {
        conv_direct_forward(ex, out, inp, w, &d);
    } else {
        for (int64_t r0 = 0; r0 < d.rows; r0 += chunk) {
            int64_t r1 = r0 + chunk < d.rows ? r0 + chunk : d.rows;
            im2col(ex, col, inp, &d, r0, r1);
            /* out rows (n, OC) = col (n, KC) w^T, w viewed as (OC, KC). */
            qb_cpu_gemm(ex, false, true, r1 - r0, OC, d.KC, 1.0f, col, d.KC, 0, w, d.KC, 0, 0.0f,
                        out + r0 * OC, OC, 0, 1);
        }
        free(col);
    }
    if (b) qb_cpu_bias_forward(ex, out, b, d.rows, OC);
}

void qb_cpu_conv1d_backward(const qb_exec *ex, float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, int64_t B, int64_t T, int64_t C, int64_t OC,
                            int64_t K, int64_t stride, int64_t pad) {
    conv_dims d;
    if (!conv_dims_make(&d, B, T, C, OC, K, stride, pad)) return;
    if (db) qb_cpu_bias_backward(ex, db, dout, d.rows, OC);
    if (!dinp && !dw) return;
    int64_t chunk = conv_chunk_rows(&d);
    /* One buffer serves as col (for dw) and then as dcol (for dinp). */
    float *col = chunk ? malloc((size_t)(chunk * d.KC) * sizeof(float)) : NULL;
    if (!col) {
        conv_direct_backward(ex, dinp, dw, dout, inp, w, &d);
        return;
    }
    for (int64_t r0 = 0; r0 < d.rows; r0 += chunk) {
        int64_t r1 = r0 + chunk < d.rows ? r0 + chunk : d.rows, n = r1 - r0;
        const float *g = dout + r0 * OC;
        if (dw) {
            im2col(ex, col, inp, &d, r0, r1);
            /* dw (OC, KC) += g^T (OC, n) col (n, KC) */
            qb_cpu_gemm(ex, true, false, OC, d.KC, n, 1.0f, g, OC, 0, col, d.KC, 0, 1.0f, dw, d.KC, 0, 1);
        }
        if (dinp) {
            /* dcol (n, KC) = g (n, OC) w (OC, KC) */
            qb_cpu_gemm(ex, false, false, n, d.KC, OC, 1.0f, g, OC, 0, w, d.KC, 0, 0.0f, col, d.KC, 0, 1);
            col2im_add(ex, dinp, col, &d, r0, r1);
        }
    }
    free(col);
}
