/* GEMM through OpenBLAS, bias, and the small elementwise/reduction kernels. */
#include <cblas.h>
#include <omp.h>

#include "backend/cpu/cpu.h"

/* Threading model: OpenBLAS always runs single-threaded and qiao splits each
 * GEMM over its own OpenMP team. Two reasons, both measured on the 2-core
 * build machine:
 *  - speed: with OpenBLAS's pthreads and libgomp's threads both alive, the
 *    OpenMP workers still spinning after a region (bias, layernorm, GELU)
 *    fight OpenBLAS's workers for the cores; linear layers ran at 32-54% of
 *    raw sgemm that way;
 *  - reproducibility: OpenBLAS's own threading changes the summation order
 *    for K > 320, so results depended on the thread count. Splitting along M
 *    or N keeps every element's reduction over K identical, so a model
 *    trains to the same bits with 1 or 16 threads.
 * OpenBLAS's thread count is process-wide; we set it to 1 (an application
 * that also uses OpenBLAS directly gets single-threaded BLAS). */
void qb_cpu_blas_single_threaded(void) {
    if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
}

/* False when OpenBLAS could not get a work buffer (blas_buffer.c). */
static bool sgemm_block(bool ta, bool tb, int64_t m0, int64_t m1, int64_t n0, int64_t n1, int64_t K, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                        int64_t ldc) {
    if (m1 <= m0 || n1 <= n0) return true;
    /* Rows [m0, m1) of op(A): A^T's rows are A's columns. Columns [n0, n1)
     * of op(B): B^T's columns are B's rows. */
    const float *a = ta ? A + m0 : A + m0 * lda;
    const float *b = tb ? B + n0 * ldb : B + n0;
    return qb_cpu_sgemm(ta, tb, m1 - m0, n1 - n0, K, alpha, a, lda, b, ldb, beta, C + m0 * ldc + n0, ldc);
}

/* Below this many flops a GEMM runs on one thread: a fork/join costs more. */
#define GEMM_PARALLEL_FLOPS 4e6
/* OpenBLAS (0.3.21, SMALL_MATRIX_OPT) sends a GEMM with M*N*K <= 1e6 to a
 * small-matrix kernel that sums over K in another order than its blocked
 * kernel. A slab must take the path the whole GEMM takes, or the bits would
 * depend on the thread count (seen for M=100, N=24, K=1024). */
#define BLAS_SMALL_MNK 1000000.0

/* The slab length for splitting `len` rows (or columns) over at most *nt
 * threads, each slab crossing `other` x K; lowers *nt until every non-empty
 * slab stays above OpenBLAS's small-matrix size (1 = do not split). */
static int64_t gemm_slab(int64_t len, int64_t other, int64_t K, int *nt) {
    for (; *nt > 1; (*nt)--) {
        int64_t slab = (len + *nt - 1) / *nt;
        slab = (slab + 15) / 16 * 16;
        const int64_t last = len - (len - 1) / slab * slab; /* the last slab is the smallest */
        if ((double)last * (double)other * (double)K > BLAS_SMALL_MNK) return slab;
    }
    return len;
}

void qb_cpu_gemm(const qb_exec *ex, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t lda, int64_t stride_a, const float *B, int64_t ldb, int64_t stride_b,
                 float beta, float *C, int64_t ldc, int64_t stride_c, int64_t batch) {
    if (M <= 0 || N <= 0 || batch <= 0) return;
    if (K <= 0) {
        /* BLAS leaves C alone when K == 0 only if beta == 1; make it exact. */
        for (int64_t i = 0; i < batch; i++) {
            float *c = C + i * stride_c;
            for (int64_t r = 0; r < M; r++)
                for (int64_t j = 0; j < N; j++) c[r * ldc + j] = beta == 0.0f ? 0.0f : beta * c[r * ldc + j];
        }
        return;
    }
    /* Inference with packed weights (gemm_packed.c): no per-call packing.
     * Above QB_PACK_MAX_M rows (the largest M measured) OpenBLAS keeps the
     * call: its packing is amortized there and it blocks K for the cache,
     * which the packed kernel does not. */
    if (ex->packed && M <= QB_PACK_MAX_M &&
        qb_cpu_gemm_packed(ex, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, batch))
        return;
    qb_cpu_blas_single_threaded();
    int nt = ex->n_threads;
    if (2.0 * (double)M * (double)N * (double)K * (double)batch < GEMM_PARALLEL_FLOPS) nt = 1;
    /* A worker cannot record a fault for the calling thread: the team
     * raises this flag, and the calling thread records it after the region. */
    int failed = 0;
    if (nt > 1 && batch >= nt) {
        /* Many independent GEMMs (attention heads): one per thread at a time. */
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t i = 0; i < batch; i++)
            if (!sgemm_block(trans_a, trans_b, 0, M, 0, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb,
                             beta, C + i * stride_c, ldc)) {
#pragma omp atomic write
                failed = 1;
            }
        if (failed) qb_cpu_fault_oom();
        return;
    }
    for (int64_t i = 0; i < batch && !failed; i++) {
        const float *a = A + i * stride_a, *b = B + i * stride_b;
        float *c = C + i * stride_c;
        if (nt == 1) {
            failed = !sgemm_block(trans_a, trans_b, 0, M, 0, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
            continue;
        }
        /* Split the larger of M and N into equal slabs, rounded to 16 so every
         * slab keeps whole SIMD panels. */
        const bool split_m = M >= N;
        const int64_t len = split_m ? M : N;
        const int64_t slab = gemm_slab(len, split_m ? N : M, K, &nt);
        if (nt == 1) {
            failed = !sgemm_block(trans_a, trans_b, 0, M, 0, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
            continue;
        }
#pragma omp parallel num_threads(nt)
        {
            int64_t t = omp_get_thread_num();
            int64_t lo = t * slab, hi = lo + slab < len ? lo + slab : len;
            bool ok = split_m ? sgemm_block(trans_a, trans_b, lo, hi, 0, N, K, alpha, a, lda, b, ldb, beta, c, ldc)
                              : sgemm_block(trans_a, trans_b, 0, M, lo, hi, K, alpha, a, lda, b, ldb, beta, c, ldc);
            if (!ok) {
#pragma omp atomic write
                failed = 1;
            }
        }
    }
    if (failed) qb_cpu_fault_oom();
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
#pragma omp parallel for simd num_threads(ex->n_threads) schedule(static) if (parallel : n > 65536)
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void qb_cpu_axpy(const qb_exec *ex, float *y, float alpha, const float *x, int64_t n) {
#pragma omp parallel for simd num_threads(ex->n_threads) schedule(static) if (parallel : n > 65536)
    for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

void qb_cpu_scale(const qb_exec *ex, float *x, float s, int64_t n) {
#pragma omp parallel for simd num_threads(ex->n_threads) schedule(static) if (parallel : n > 65536)
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
