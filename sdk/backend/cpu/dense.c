/* GEMM through OpenBLAS, bias, and the small elementwise/reduction kernels. */
#define _GNU_SOURCE
#include <cblas.h>
#include <string.h>
#include <stdatomic.h>

#include "backend/cpu/cpu.h"
#include "core/core.h"

/* Threading model: OpenBLAS always runs single-threaded and qiao splits each
 * GEMM over its own threads (threads.h). Two reasons, both measured on the
 * 2-core build machine:
 *  - speed: with OpenBLAS's pthreads and libgomp's threads both alive (qiao
 *    used OpenMP then), the OpenMP workers still spinning after a region (bias, layernorm, GELU)
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

/* Whether OpenBLAS's sgemm gives every element of C the same bits whatever
 * part of M or N one call covers, which splitting a GEMM over threads needs.
 * Its AVX-512 kernels do (SkylakeX, Cooperlake: test_backend.gemm_threads);
 * its Haswell and Zen kernels do not (220 of 960 GEMMs differed in the last
 * bits between 1 and 2 threads on an AMD Zen 5 whose environment set
 * OPENBLAS_CORETYPE=Haswell; left alone, OpenBLAS 0.3.21 picks Cooperlake's
 * there). With those kernels a GEMM runs on one thread (many independent
 * ones, as attention's heads, still run on all), so results stay the same
 * for any thread count. */
static atomic_int g_split_exact = -1;

static bool blas_split_exact(void) {
    int v = atomic_load(&g_split_exact);
    if (v < 0) {
        const char *core = openblas_get_corename();
        v = core && (strcasestr(core, "skylakex") || strcasestr(core, "cooperlake") ||
                     strcasestr(core, "sapphirerapids"));
        int unset = -1;
        /* said once: on an AVX-512 CPU this costs a 2-vCPU training run more
           than half its speed (docs/design.md, "Same bits for any thread count") */
        if (atomic_compare_exchange_strong(&g_split_exact, &unset, v) && !v) {
            __builtin_cpu_init();
            const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                                __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
            qc_log(avx512 ? QIAO_LOG_WARN : QIAO_LOG_INFO,
                   "OpenBLAS runs its %s kernels, whose results change when a GEMM is split over threads, so each "
                   "GEMM runs on one thread%s",
                   core ? core : "unknown", avx512 ? "; OPENBLAS_CORETYPE=SkylakeX, set before the program starts, "
                                                     "lets GEMMs use every thread on this AVX-512 CPU" : "");
        }
    }
    return v == 1;
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

/* One GEMM call's arguments, shared by its parts. */
typedef struct gemm_job {
    bool ta, tb;
    int64_t M, N, K;
    float alpha;
    const float *A;
    int64_t lda, stride_a;
    const float *B;
    int64_t ldb, stride_b;
    float beta;
    float *C;
    int64_t ldc, stride_c;
    bool split_m;      /* slabs of rows (else of columns) */
    int64_t len, slab; /* the split dimension and its slab length */
    atomic_int failed; /* a part could not get a BLAS buffer */
} gemm_job;

static void gemm_batch_range(void *ctx, int64_t i0, int64_t i1, int part) {
    (void)part;
    gemm_job *j = ctx;
    for (int64_t i = i0; i < i1; i++)
        if (!sgemm_block(j->ta, j->tb, 0, j->M, 0, j->N, j->K, j->alpha, j->A + i * j->stride_a, j->lda,
                         j->B + i * j->stride_b, j->ldb, j->beta, j->C + i * j->stride_c, j->ldc))
            atomic_store_explicit(&j->failed, 1, memory_order_relaxed);
}

static void gemm_slab_part(void *ctx, int t, int nt) {
    (void)nt;
    gemm_job *j = ctx;
    const int64_t lo = t * j->slab, hi = lo + j->slab < j->len ? lo + j->slab : j->len;
    const bool ok = j->split_m ? sgemm_block(j->ta, j->tb, lo, hi, 0, j->N, j->K, j->alpha, j->A, j->lda, j->B,
                                             j->ldb, j->beta, j->C, j->ldc)
                               : sgemm_block(j->ta, j->tb, 0, j->M, lo, hi, j->K, j->alpha, j->A, j->lda, j->B,
                                             j->ldb, j->beta, j->C, j->ldc);
    if (!ok) atomic_store_explicit(&j->failed, 1, memory_order_relaxed);
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
    /* A worker cannot record a fault for the calling thread: the parts
     * raise this flag, and the calling thread records it after the region. */
    gemm_job j = {.ta = trans_a, .tb = trans_b, .M = M, .N = N, .K = K, .alpha = alpha, .A = A, .lda = lda,
                  .stride_a = stride_a, .B = B, .ldb = ldb, .stride_b = stride_b, .beta = beta, .C = C,
                  .ldc = ldc, .stride_c = stride_c};
    atomic_init(&j.failed, 0);
    if (nt > 1 && batch >= nt) {
        /* Many independent GEMMs (attention heads): one per thread at a time. */
        qb_parallel_for(ex, batch, true, gemm_batch_range, &j);
        if (atomic_load(&j.failed)) qb_cpu_fault_oom();
        return;
    }
    if (nt > 1 && !blas_split_exact()) nt = 1;
    for (int64_t i = 0; i < batch && !atomic_load(&j.failed); i++) {
        const float *a = A + i * stride_a, *b = B + i * stride_b;
        float *c = C + i * stride_c;
        if (nt == 1) {
            if (!sgemm_block(trans_a, trans_b, 0, M, 0, N, K, alpha, a, lda, b, ldb, beta, c, ldc))
                atomic_store(&j.failed, 1);
            continue;
        }
        /* Split the larger of M and N into equal slabs, rounded to 16 so every
         * slab keeps whole SIMD panels. */
        j.split_m = M >= N;
        j.len = j.split_m ? M : N;
        j.slab = gemm_slab(j.len, j.split_m ? N : M, K, &nt);
        if (nt == 1) {
            if (!sgemm_block(trans_a, trans_b, 0, M, 0, N, K, alpha, a, lda, b, ldb, beta, c, ldc))
                atomic_store(&j.failed, 1);
            continue;
        }
        j.A = a;
        j.B = b;
        j.C = c;
        /* One part per slab t (slab t of nt: the last ones may be empty). */
        qb_parallel(ex, nt, gemm_slab_part, &j);
    }
    if (atomic_load(&j.failed)) qb_cpu_fault_oom();
}

/* The small kernels' arguments: out (N, C) rows, or n elements. */
typedef struct vec_job {
    float *out;
    const float *a, *b;
    float s;
    int64_t C;
} vec_job;

static void bias_forward_range(void *ctx, int64_t n0, int64_t n1, int part) {
    (void)part;
    const vec_job *j = ctx;
    const int64_t C = j->C;
    for (int64_t n = n0; n < n1; n++) {
        float *o = j->out + n * C;
        for (int64_t c = 0; c < C; c++) o[c] += j->a[c];
    }
}

void qb_cpu_bias_forward(const qb_exec *ex, float *out, const float *bias, int64_t N, int64_t C) {
    vec_job j = {.out = out, .a = bias, .C = C};
    qb_parallel_for(ex, N, N * C > 32768, bias_forward_range, &j);
}

/* dbias (out) += column sums of dout (a) over N (C): blocks [cb0, cb1) of 64 columns. */
typedef struct bias_bw_job {
    float *dbias;
    const float *dout;
    int64_t N, C;
} bias_bw_job;

static void bias_backward_range(void *ctx, int64_t cb0, int64_t cb1, int part) {
    (void)part;
    const bias_bw_job *j = ctx;
    const int64_t N = j->N, C = j->C, block = 64;
    for (int64_t cb = cb0; cb < cb1; cb++) {
        int64_t c0 = cb * block, c1 = c0 + block < C ? c0 + block : C;
        float acc[64] = {0};
        for (int64_t n = 0; n < N; n++) {
            const float *d = j->dout + n * C;
            for (int64_t c = c0; c < c1; c++) acc[c - c0] += d[c];
        }
        for (int64_t c = c0; c < c1; c++) j->dbias[c] += acc[c - c0];
    }
}

void qb_cpu_bias_backward(const qb_exec *ex, float *dbias, const float *dout, int64_t N, int64_t C) {
    /* Split over columns so threads never write the same dbias element, and
     * the result does not depend on the thread count. */
    const int64_t block = 64;
    int64_t nblocks = (C + block - 1) / block;
    bias_bw_job j = {dbias, dout, N, C};
    qb_parallel_for(ex, nblocks, N * C > 32768, bias_backward_range, &j);
}

/* `omp simd` keeps the vectorization `omp parallel for simd` gave these. */
static void add_range(void *ctx, int64_t i0, int64_t i1, int part) {
    (void)part;
    const vec_job *j = ctx;
    float *out = j->out;
    const float *a = j->a, *b = j->b;
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) out[i] = a[i] + b[i];
}

void qb_cpu_add(const qb_exec *ex, float *out, const float *a, const float *b, int64_t n) {
    vec_job j = {.out = out, .a = a, .b = b};
    qb_parallel_for(ex, n, n > 65536, add_range, &j);
}

static void axpy_range(void *ctx, int64_t i0, int64_t i1, int part) {
    (void)part;
    const vec_job *j = ctx;
    float *y = j->out;
    const float *x = j->a;
    const float alpha = j->s;
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) y[i] += alpha * x[i];
}

void qb_cpu_axpy(const qb_exec *ex, float *y, float alpha, const float *x, int64_t n) {
    vec_job j = {.out = y, .a = x, .s = alpha};
    qb_parallel_for(ex, n, n > 65536, axpy_range, &j);
}

static void scale_range(void *ctx, int64_t i0, int64_t i1, int part) {
    (void)part;
    const vec_job *j = ctx;
    float *x = j->out;
    const float s = j->s;
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) x[i] *= s;
}

void qb_cpu_scale(const qb_exec *ex, float *x, float s, int64_t n) {
    vec_job j = {.out = x, .s = s};
    qb_parallel_for(ex, n, n > 65536, scale_range, &j);
}

/* Reductions accumulate in double over fixed-size chunks and combine the
 * chunks in order, so the result is the same for any thread count. */
#define RED_CHUNK 4096
typedef struct dot_job {
    const float *a, *b;
    int64_t n, base;
    double *partial;
} dot_job;

static void dot_range(void *ctx, int64_t c0, int64_t c1, int part) {
    (void)part;
    const dot_job *j = ctx;
    for (int64_t c = c0; c < c1; c++) {
        int64_t i0 = (j->base + c) * RED_CHUNK, i1 = i0 + RED_CHUNK < j->n ? i0 + RED_CHUNK : j->n;
        double s = 0.0;
        for (int64_t i = i0; i < i1; i++) s += (double)j->a[i] * (double)j->b[i];
        j->partial[c] = s;
    }
}

static double chunked_dot(const qb_exec *ex, const float *a, const float *b, int64_t n) {
    int64_t nchunks = (n + RED_CHUNK - 1) / RED_CHUNK;
    double total = 0.0;
    double partial[256];
    dot_job j = {a, b, n, 0, partial};
    for (int64_t base = 0; base < nchunks; base += 256) {
        int64_t cnt = nchunks - base < 256 ? nchunks - base : 256;
        j.base = base;
        qb_parallel_for(ex, cnt, n > 65536, dot_range, &j);
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
