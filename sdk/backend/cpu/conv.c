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
 * Threads: on the GEMM path only OpenBLAS runs threaded. im2col, col2im,
 * the bias (folded into the GEMM with beta = 1) and db are cheap next to the
 * GEMMs (one copy per 2*OC flops) and run serially: an OpenMP team between
 * BLAS calls leaves its workers spinning (libgomp's default wait policy)
 * while OpenBLAS's own pthreads need the same cores, which measured 2-5x
 * slower than serial copies on a 2-core machine. The direct path runs on
 * qiao's pool (threads.h).
 *
 * Determinism: chunk boundaries depend only on the shapes; every output
 * element is summed in a fixed order (col2im gathers per input position
 * instead of scattering), and GEMM reductions are cut into fixed blocks
 * (gemm_kblocked), so results do not depend on n_threads.
 *
 * The backward accumulates (+=) into dinp, dw and db; any of them may be NULL
 * to skip it (the first layer of an audio stem needs no dinp). */
#include <stdlib.h>

#include "backend/cpu/cpu.h"

#define CONV_SCRATCH_FLOATS ((int64_t)1 << 18) /* 1 MiB */
#define CONV_MIN_ROWS 32
/* Below this many multiply-adds (B*Tout*OC*C*K) the direct loop is used. */
#define CONV_DIRECT_MAX_MACS ((int64_t)1 << 12)
/* Longest reduction handed to one GEMM call; see gemm_kblocked. */
#define CONV_GEMM_MAX_K 256
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

/* im2col rows per chunk (the scratch is chunk * KC floats), or 0 when the
 * problem is small enough for the direct loop. */
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

/* C = op(A) op(B) + beta C (row-major, as qb_cpu_gemm), with the
 * reduction of length K done as consecutive calls of at most
 * CONV_GEMM_MAX_K, accumulating with beta = 1. OpenBLAS (0.3.21) blocks K
 * differently in its threaded and single-threaded drivers once K exceeds its
 * GEMM_Q (320 for sgemm on Cooperlake), which changes the rounding with the
 * thread count; below that it is bitwise the same for any count. */
static void gemm_kblocked(const qb_exec *ex, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                          const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                          int64_t ldc) {
    for (int64_t k0 = 0; k0 < K; k0 += CONV_GEMM_MAX_K) {
        int64_t kn = K - k0 < CONV_GEMM_MAX_K ? K - k0 : CONV_GEMM_MAX_K;
        /* column k0 of op(A) and row k0 of op(B) */
        const float *a = A + (trans_a ? k0 * lda : k0);
        const float *b = B + (trans_b ? k0 : k0 * ldb);
        qb_cpu_gemm(ex, trans_a, trans_b, M, N, kn, 1.0f, a, lda, 0, b, ldb, 0, k0 ? 1.0f : beta, C, ldc, 0, 1);
    }
}

/* col (r1 - r0, KC) for output rows [r0, r1). */
static void im2col(float *col, const float *inp, const conv_dims *d, int64_t r0, int64_t r1) {
    const int64_t K = d->K, C = d->C, KC = d->KC;
    for (int64_t r = r0; r < r1; r++) {
        int64_t b = r / d->Tout, t = r % d->Tout, j0, k0, k1;
        conv_taps(d, t, &j0, &k0, &k1);
        const float *x = inp + b * d->T * C;
        float *row = col + (r - r0) * KC;
        if (k0 == 0 && k1 == K) {
            /* interior: the window is K whole rows of C, transposed to (C, K) */
            const float *xw = x + j0 * C;
            for (int64_t c = 0; c < C; c++)
                for (int64_t k = 0; k < K; k++) row[c * K + k] = xw[k * C + c];
            continue;
        }
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
static void col2im_add(float *dinp, const float *dcol, const conv_dims *d, int64_t r0, int64_t r1) {
    const int64_t K = d->K, C = d->C, KC = d->KC, s = d->stride, p = d->pad;
    for (int64_t b = r0 / d->Tout; b * d->Tout < r1; b++) {
        int64_t ta = r0 > b * d->Tout ? r0 - b * d->Tout : 0;
        int64_t tb = r1 < (b + 1) * d->Tout ? r1 - b * d->Tout : d->Tout; /* t in [ta, tb) */
        int64_t ja = ta * s - p, jb = (tb - 1) * s - p + K;
        if (ja < 0) ja = 0;
        if (jb > d->T) jb = d->T;
        float *dx = dinp + b * d->T * C;
        const int64_t rb = b * d->Tout - r0; /* dcol row of t is rb + t */
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

typedef struct direct_fw_job {
    float *out;
    const float *inp;
    const float *w;
    const float *bias;
    const conv_dims *d;
} direct_fw_job;

static void direct_fw_range(void *ctx, int64_t r0, int64_t r1, int part) {
    (void)part;
    const direct_fw_job *job = ctx;
    float *out = job->out;
    const float *inp = job->inp, *w = job->w, *bias = job->bias;
    const conv_dims *d = job->d;
    const int64_t K = d->K, C = d->C, KC = d->KC, OC = d->OC;
    for (int64_t r = r0; r < r1; r++) {
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
            out[r * OC + oc] = bias ? bias[oc] + acc : acc;
        }
    }
}

static void conv_direct_forward(const qb_exec *ex, float *out, const float *inp, const float *w,
                                const float *bias, const conv_dims *d) {
    const int64_t KC = d->KC, OC = d->OC;
    direct_fw_job j_direct_fw = {out, inp, w, bias, d};
    qb_parallel_for(ex, d->rows, d->rows * OC * KC > PAR_MIN_ELEMS, direct_fw_range, &j_direct_fw);
}

typedef struct direct_bw_w_job {
    float *dw;
    const float *dout;
    const float *inp;
    const conv_dims *d;
} direct_bw_w_job;

static void direct_bw_w_range(void *ctx, int64_t oc0, int64_t oc1, int part) {
    (void)part;
    const direct_bw_w_job *job = ctx;
    float *dw = job->dw;
    const float *dout = job->dout, *inp = job->inp;
    const conv_dims *d = job->d;
    const int64_t K = d->K, C = d->C, KC = d->KC, OC = d->OC;
    for (int64_t oc = oc0; oc < oc1; oc++) {
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

typedef struct direct_bw_x_job {
    float *dinp;
    const float *dout;
    const float *w;
    const conv_dims *d;
} direct_bw_x_job;

static void direct_bw_x_range(void *ctx, int64_t bj0, int64_t bj1, int part) {
    (void)part;
    const direct_bw_x_job *job = ctx;
    float *dinp = job->dinp;
    const float *dout = job->dout, *w = job->w;
    const conv_dims *d = job->d;
    const int64_t K = d->K, C = d->C, KC = d->KC, OC = d->OC, s = d->stride, p = d->pad;
    for (int64_t bj = bj0; bj < bj1; bj++) {
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

static void conv_direct_backward(const qb_exec *ex, float *dinp, float *dw, const float *dout,
                                 const float *inp, const float *w, const conv_dims *d) {
    const int64_t KC = d->KC, OC = d->OC;
    const bool par = d->rows * OC * KC > PAR_MIN_ELEMS;
    if (dw) {
        /* Each thread owns whole rows dw[oc]. */
        direct_bw_w_job j_direct_bw_w = {dw, dout, inp, d};
        qb_parallel_for(ex, OC, par, direct_bw_w_range, &j_direct_bw_w);
    }
    if (dinp) {
        direct_bw_x_job j_direct_bw_x = {dinp, dout, w, d};
        qb_parallel_for(ex, d->B * d->T, par, direct_bw_x_range, &j_direct_bw_x);
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
        conv_direct_forward(ex, out, inp, w, b, &d);
        return;
    }
    for (int64_t r0 = 0; r0 < d.rows; r0 += chunk) {
        int64_t r1 = r0 + chunk < d.rows ? r0 + chunk : d.rows;
        im2col(col, inp, &d, r0, r1);
        /* out rows (n, OC) = bias + col (n, KC) w^T, w viewed as (OC, KC) */
        if (b)
            for (int64_t r = r0; r < r1; r++)
                for (int64_t o = 0; o < OC; o++) out[r * OC + o] = b[o];
        gemm_kblocked(ex, false, true, r1 - r0, OC, d.KC, col, d.KC, w, d.KC, b ? 1.0f : 0.0f, out + r0 * OC, OC);
    }
    free(col);
}

void qb_cpu_conv1d_backward(const qb_exec *ex, float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, int64_t B, int64_t T, int64_t C, int64_t OC,
                            int64_t K, int64_t stride, int64_t pad) {
    conv_dims d;
    if (!conv_dims_make(&d, B, T, C, OC, K, stride, pad)) return;
    if (db) /* serial for the reason in the header; rows in order, so deterministic */
        for (int64_t r = 0; r < d.rows; r++)
            for (int64_t o = 0; o < OC; o++) db[o] += dout[r * OC + o];
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
            im2col(col, inp, &d, r0, r1);
            /* dw (OC, KC) += g^T (OC, n) col (n, KC) */
            gemm_kblocked(ex, true, false, OC, d.KC, n, g, OC, col, d.KC, 1.0f, dw, d.KC);
        }
        if (dinp) {
            /* dcol (n, KC) = g (n, OC) w (OC, KC) */
            gemm_kblocked(ex, false, false, n, d.KC, OC, g, OC, w, d.KC, 0.0f, col, d.KC);
            col2im_add(dinp, col, &d, r0, r1);
        }
    }
    free(col);
}
