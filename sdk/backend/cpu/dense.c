/* GEMM through OpenBLAS, bias, and the small elementwise/reduction kernels. */
#include <cblas.h>

#include "backend/cpu/cpu.h"

/* OpenBLAS keeps one process-wide thread count. We set it to the caller's
 * count before each call; concurrent sessions asking for different counts
 * just share whatever was set last, which is safe (OpenBLAS locks) though
 * not exact. */
static void blas_threads(const qb_exec *ex) {
    if (openblas_get_num_threads() != ex->n_threads) openblas_set_num_threads(ex->n_threads);
}

void qb_cpu_gemm(const qb_exec *ex, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t lda, int64_t stride_a, const float *B, int64_t ldb, int64_t stride_b,
                 float beta, float *C, int64_t ldc, int64_t stride_c, int64_t batch) {
    if (M <= 0 || N <= 0) return;
    blas_threads(ex);
    for (int64_t i = 0; i < batch; i++) {
        if (K <= 0) {
            /* BLAS leaves C alone when K == 0 only if beta == 1; make it exact. */
            float *c = C + i * stride_c;
            for (int64_t r = 0; r < M; r++)
                for (int64_t j = 0; j < N; j++) c[r * ldc + j] = beta == 0.0f ? 0.0f : beta * c[r * ldc + j];
            continue;
        }
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                    (blasint)M, (blasint)N, (blasint)K, alpha, A + i * stride_a, (blasint)lda, B + i * stride_b,
                    (blasint)ldb, beta, C + i * stride_c, (blasint)ldc);
    }
}

void qb_cpu_bias_forward(const qb_exec *ex, float *out, const float *bias, int64_t N, int64_t C) {
#pragma omp parallel for num_threads(ex->n_threads) schedule(static) if (N * C > 32768)
    for (int64_t n = 0; n < N; n++) {
        float *o = out + n * C;
        for (int64_t c = 0; c < C; c++) o[c] += bias[c];
    }
}

void qb_cpu_bias_backward(const qb_exec *ex, float *dbias, const float *dout, int64_t N, int64_t C) {
    /* Split over columns so threads never write the same dbias element, and
     * the result does not depend on the thread count. */
    const int64_t block = 64;
    int64_t nblocks = (C + block - 1) / block;
#pragma omp parallel for num_threads(ex->n_threads) schedule(static) if (N * C > 32768)
    for (int64_t cb = 0; cb < nblocks; cb++) {
        int64_t c0 = cb * block, c1 = c0 + block < C ? c0 + block : C;
        float acc[64] = {0};
        for (int64_t n = 0; n < N; n++) {
            const float *d = dout + n * C;
            for (int64_t c = c0; c < c1; c++) acc[c - c0] += d[c];
        }
        for (int64_t c = c0; c < c1; c++) dbias[c] += acc[c - c0];
    }
}

void qb_cpu_add(const qb_exec *ex, float *out, const float *a, const float *b, int64_t n) {
#pragma omp parallel for simd num_threads(ex->n_threads) schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void qb_cpu_axpy(const qb_exec *ex, float *y, float alpha, const float *x, int64_t n) {
#pragma omp parallel for simd num_threads(ex->n_threads) schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

void qb_cpu_scale(const qb_exec *ex, float *x, float s, int64_t n) {
#pragma omp parallel for simd num_threads(ex->n_threads) schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) x[i] *= s;
}

/* Reductions accumulate in double over fixed-size chunks and combine the
 * chunks in order, so the result is the same for any thread count. */
#define RED_CHUNK 4096
static double chunked_dot(const qb_exec *ex, const float *a, const float *b, int64_t n) {
    int64_t nchunks = (n + RED_CHUNK - 1) / RED_CHUNK;
    double total = 0.0;
    double partial[256];
    for (int64_t base = 0; base < nchunks; base += 256) {
        int64_t cnt = nchunks - base < 256 ? nchunks - base : 256;
#pragma omp parallel for num_threads(ex->n_threads) schedule(static) if (n > 65536)
        for (int64_t c = 0; c < cnt; c++) {
            int64_t i0 = (base + c) * RED_CHUNK, i1 = i0 + RED_CHUNK < n ? i0 + RED_CHUNK : n;
            double s = 0.0;
            for (int64_t i = i0; i < i1; i++) s += (double)a[i] * (double)b[i];
            partial[c] = s;
        }
        for (int64_t c = 0; c < cnt; c++) total += partial[c];
    }
    return total;
}

void qb_cpu_dot(const qb_exec *ex, double *out_host, const float *a, const float *b, int64_t n) {
    *out_host = chunked_dot(ex, a, b, n);
}

void qb_cpu_sumsq(const qb_exec *ex, double *out_host, const float *x, int64_t n) {
    *out_host = chunked_dot(ex, x, x, n);
}
