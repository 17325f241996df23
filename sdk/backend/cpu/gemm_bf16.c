/* bf16 GEMM with f32 sums on operands that change every call: the linear
 * layers' forward and both backward products in mixed-precision training
 * (qb_exec.linear_prec, nn_linear_forward / nn_linear_backward).
 *
 * C = alpha op(A) op(B) + beta C, where op(A) (M x K) and op(B) (K x N) are
 * rounded to bf16 (nearest even, qb_bf16_from_f32) as they are packed, and
 * each product pair is summed in f32 as vdpbf16ps does: per K pair, the odd
 * element's product is added first, then the even one's (Intel SDM). The
 * portable path repeats that order, so both paths agree bit for bit on
 * normal numbers (vdpbf16ps flushes denormals). Parameters, gradients and
 * the optimizer stay f32: only the GEMMs' inputs are rounded.
 *
 * Packing (K rounded up to even, Kp): op(A) becomes blocks of 8 rows in
 * which K pair s holds each row's two values (32 bytes: the kernel's 8
 * broadcasts), op(B) ceil(N / 32) panels of 32 columns in which K pair s
 * holds each column's two values (128 bytes, two zmm loads). Both are
 * written in the order the kernel reads them. A transposed op(A) (dW's
 * dY^T) is read a row of A at a time, 16 values (one cache line) per K
 * index: an earlier layout with K contiguous per row of op(A) needed
 * scattered 2-byte stores there, and packing took 40 % of dW's time.
 *
 * Kernel: 8 rows x 32 columns, 16 zmm accumulators, each K pair one
 * broadcast of A's pair per row and two loads of B. vdpbf16ps's latency is
 * about 8 cycles on the build machine, so 16 independent sums keep it
 * issuing every cycle it can. Each tile sums the whole K in registers
 * (no K blocks): the instruction's rate, not memory, bounds this kernel on
 * the CPUs it targets (docs/benchmarks.md "Issue 14: bf16 GEMM"), and one
 * unbroken sum per element keeps the order fixed.
 *
 * Tiles run in chunks of 8 row blocks (64 rows of packed A, which stay in
 * L2) crossed with every panel. Threads claim runs of whole tiles, so the
 * bits do not depend on the thread count. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_X86_KERNELS 1
#endif

#include "backend/cpu/cpu.h"
#include "backend/cpu/threads.h"

#define NR 32 /* columns per panel */
#define MR 8  /* rows per tile */
#define CB 8  /* row blocks per chunk */
#define TB 16 /* rows of op(A) per packing unit (two row blocks) */
#define BF16_PARALLEL_FLOPS 4e6
#define PARTS_PER_THREAD 8

/* acc (mr, NR) = the sums over `steps` K pairs of a row block's packed A
 * (steps, MR, 2) and a panel (steps, NR, 2). */
typedef void (*bf_kernel)(int mr, int64_t steps, const uint16_t *a, const uint16_t *P, float *acc);

static inline float bf16_to_f32(uint16_t h) {
    const uint32_t b = (uint32_t)h << 16;
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static void bf_generic(int mr, int64_t steps, const uint16_t *a, const uint16_t *P, float *acc) {
    for (int i = 0; i < mr; i++) {
        float c[NR] = {0};
        for (int64_t s = 0; s < steps; s++) {
            const uint16_t *p = P + s * NR * 2;
            const float a0 = bf16_to_f32(a[s * MR * 2 + 2 * i]), a1 = bf16_to_f32(a[s * MR * 2 + 2 * i + 1]);
            for (int j = 0; j < NR; j++) {
                /* A product of two bf16 is exact in f32: two roundings per
                 * pair, odd first, as vdpbf16ps. */
                c[j] = c[j] + a1 * bf16_to_f32(p[2 * j + 1]);
                c[j] = c[j] + a0 * bf16_to_f32(p[2 * j]);
            }
        }
        memcpy(acc + i * NR, c, sizeof c);
    }
}

#ifdef HAVE_X86_KERNELS
#define AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))

static inline __attribute__((always_inline)) int32_t load_pair(const uint16_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline __attribute__((always_inline)) AVX512BF16 void bf_rows(const int mr, int64_t steps, const uint16_t *a,
                                                                     const uint16_t *P, float *acc) {
    __m512 c0[MR], c1[MR];
    for (int i = 0; i < mr; i++)
        c0[i] = c1[i] = _mm512_setzero_ps();
    for (int64_t s = 0; s < steps; s++) {
        const __m512i b0 = _mm512_load_si512((const void *)(P + s * 64));
        const __m512i b1 = _mm512_load_si512((const void *)(P + s * 64 + 32));
        for (int i = 0; i < mr; i++) {
            const __m512i av = _mm512_set1_epi32(load_pair(a + s * MR * 2 + 2 * i));
            c0[i] = _mm512_dpbf16_ps(c0[i], (__m512bh)av, (__m512bh)b0);
            c1[i] = _mm512_dpbf16_ps(c1[i], (__m512bh)av, (__m512bh)b1);
        }
    }
    for (int i = 0; i < mr; i++) {
        _mm512_store_ps(acc + i * NR, c0[i]);
        _mm512_store_ps(acc + i * NR + 16, c1[i]);
    }
}

static AVX512BF16 void bf_avx512(int mr, int64_t steps, const uint16_t *a, const uint16_t *P, float *acc) {
    switch (mr) {
    case 8:
        bf_rows(8, steps, a, P, acc);
        break;
    case 7:
        bf_rows(7, steps, a, P, acc);
        break;
    case 6:
        bf_rows(6, steps, a, P, acc);
        break;
    case 5:
        bf_rows(5, steps, a, P, acc);
        break;
    case 4:
        bf_rows(4, steps, a, P, acc);
        break;
    case 3:
        bf_rows(3, steps, a, P, acc);
        break;
    case 2:
        bf_rows(2, steps, a, P, acc);
        break;
    default:
        bf_rows(1, steps, a, P, acc);
        break;
    }
}
#endif

typedef struct bf_call {
    bool ta, tb;
    int64_t M, N, K, Kp, np, row_blocks, tiles;
    float alpha, beta;
    const float *A, *B;
    int64_t lda, ldb, ldc;
    float *C;
    uint16_t *ap; /* row_blocks blocks of (Kp / 2, MR, 2) */
    uint16_t *bp; /* np panels of (Kp / 2, NR, 2) */
    bf_kernel kernel;
} bf_call;

/* d[2t], d[2t + 1] = bf16(x0[t]), bf16(x1[t]) (x1 NULL: 0) for t < n <= NR:
 * whole pairs assembled in registers and stored contiguously, which GCC
 * vectorizes (two-byte stores at a stride of 4 it did not). */
static inline void put_pairs(uint16_t *d, const float *x0, const float *x1, int n) {
    uint32_t tmp[NR];
    if (x1)
        for (int t = 0; t < n; t++)
            tmp[t] = (uint32_t)qb_bf16_from_f32(x0[t]) | (uint32_t)qb_bf16_from_f32(x1[t]) << 16;
    else
        for (int t = 0; t < n; t++)
            tmp[t] = qb_bf16_from_f32(x0[t]);
    memcpy(d, tmp, sizeof(uint32_t) * (size_t)n);
}

/* Row blocks [2 b0, 2 b1) of op(A) (TB = 2 MR rows per unit): block r,
 * K pair s, row i holds op(A)[8r + i][2s] and op(A)[8r + i][2s + 1]; zeros
 * past M and K. */
static void pack_a(void *ctx, int64_t b0, int64_t b1, int part) {
    (void)part;
    const bf_call *c = ctx;
    const int64_t K = c->K, Kp = c->Kp, lda = c->lda, M = c->M;
    for (int64_t i0 = b0 * TB; i0 < b1 * TB && i0 < M; i0 += TB) {
        const int64_t n = M - i0 < TB ? M - i0 : TB;
        uint16_t *blk = c->ap + (i0 / MR) * Kp * MR; /* the unit's two row blocks, one after the other */
        if (n < TB || K < Kp) memset(blk, 0, sizeof(uint16_t) * (size_t)((n + MR - 1) / MR * MR * Kp));
        if (c->ta) {
            /* op(A)[i][k] = A[k][i]: rows k and k + 1 of A give the unit's
             * TB pairs of K pair k / 2 (one cache line from each). */
            for (int64_t k = 0; k < K; k += 2) {
                const float *x0 = c->A + k * lda + i0, *x1 = k + 1 < K ? x0 + lda : NULL;
                for (int64_t h = 0; h * MR < n; h++)
                    put_pairs(blk + h * Kp * MR + k * MR, x0 + h * MR, x1 ? x1 + h * MR : NULL,
                              n - h * MR < MR ? n - h * MR : MR);
            }
        } else {
            for (int64_t t = 0; t < n; t++) {
                const float *restrict x = c->A + (i0 + t) * lda;
                uint16_t *restrict d = blk + (t / MR) * Kp * MR + (t % MR) * 2;
                for (int64_t k = 0; k < K; k++)
                    d[(k / 2) * MR * 2 + (k & 1)] = qb_bf16_from_f32(x[k]);
            }
        }
    }
}

/* Panels [p0, p1) of op(B): panel p, K pair s, column j holds op(B)[2s][32p +
 * j] and op(B)[2s + 1][32p + j]; zeros past K and N. */
static void pack_b(void *ctx, int64_t p0, int64_t p1, int part) {
    (void)part;
    const bf_call *c = ctx;
    const int64_t K = c->K, Kp = c->Kp, N = c->N, ldb = c->ldb;
    for (int64_t p = p0; p < p1; p++) {
        uint16_t *panel = c->bp + p * Kp * NR;
        const int64_t n0 = p * NR, nn = N - n0 < NR ? N - n0 : NR;
        if (nn < NR || K < Kp) memset(panel, 0, sizeof(uint16_t) * (size_t)(Kp * NR));
        if (!c->tb) {
            /* op(B)[k][n] = B[k][n]: rows k and k + 1 give the panel's 32 pairs of K
             * pair k / 2. */
            for (int64_t k = 0; k < K; k += 2) {
                const float *x0 = c->B + k * ldb + n0, *x1 = k + 1 < K ? x0 + ldb : NULL;
                put_pairs(panel + k * NR, x0, x1, (int)nn);
            }
        } else {
            /* op(B)[k][n] = B[n][k]: column n of op(B) is row n of B. */
            for (int64_t j = 0; j < nn; j++) {
                const float *restrict x = c->B + (n0 + j) * ldb;
                uint16_t *restrict d = panel + 2 * j;
                for (int64_t k = 0; k < K; k++)
                    d[(k / 2) * NR * 2 + (k & 1)] = qb_bf16_from_f32(x[k]);
            }
        }
    }
}

/* Tiles [g0, g1) in chunk order: chunk of CB row blocks, then panel, then
 * row block, so a panel is reused by the chunk's rows while it is in L1/L2. */
static void run_tiles(void *ctx, int64_t g0, int64_t g1, int part) {
    (void)part;
    const bf_call *c = ctx;
    _Alignas(64) float acc[MR * NR];
    for (int64_t g = g0; g < g1; g++) {
        const int64_t chunk = g / (c->np * CB), in = g % (c->np * CB);
        const int64_t cb = c->row_blocks - chunk * CB < CB ? c->row_blocks - chunk * CB : CB;
        const int64_t p = in / cb, r0 = (chunk * CB + in % cb) * MR;
        const int64_t n0 = p * NR, nn = c->N - n0 < NR ? c->N - n0 : NR;
        const int mr = (int)(c->M - r0 < MR ? c->M - r0 : MR);
        c->kernel(mr, c->Kp / 2, c->ap + r0 * c->Kp, c->bp + p * c->Kp * NR, acc);
        for (int i = 0; i < mr; i++) {
            float *restrict crow = c->C + (r0 + i) * c->ldc + n0;
            const float *restrict v = acc + i * NR;
            /* beta == 0 never reads C, as BLAS (C may hold NaNs). */
            if (c->beta == 0.0f)
                for (int64_t j = 0; j < nn; j++)
                    crow[j] = c->alpha * v[j];
            else
                for (int64_t j = 0; j < nn; j++)
                    crow[j] = c->alpha * v[j] + c->beta * crow[j];
        }
    }
}

/* fn over [0, n) in PARTS_PER_THREAD parts per thread, claimed as threads
 * come free (qb_parallel): on a shared machine a helper that is
 * descheduled for a while leaves its parts to the others instead of
 * holding back the region by a whole half. What a part computes depends
 * only on (part, n_parts), never on who runs it, so the bits stay fixed. */
typedef struct split_job {
    qb_range_fn fn;
    void *ctx;
    int64_t n;
} split_job;

static void split_part(void *ctx, int part, int n_parts) {
    const split_job *j = ctx;
    j->fn(j->ctx, part * j->n / n_parts, (part + 1) * j->n / n_parts, part);
}

static void split(const qb_exec *ex, bool par, int64_t n, qb_range_fn fn, void *ctx) {
    int64_t parts = par ? (int64_t)ex->n_threads * PARTS_PER_THREAD : 1;
    if (parts > n) parts = n;
    if (parts <= 1) {
        fn(ctx, 0, n, 0);
        return;
    }
    split_job j = {fn, ctx, n};
    qb_parallel(ex, (int)parts, split_part, &j);
}

bool qb_cpu_gemm_bf16(const qb_exec *ex, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0 || K <= 0) return false;
    const int64_t Kp = (K + 1) / 2 * 2, np = (N + NR - 1) / NR, row_blocks = (M + MR - 1) / MR;
    /* One block: packed A, then the panels (64-aligned for the kernel's loads).
     */
    const size_t a_bytes = ((size_t)row_blocks * MR * (size_t)Kp * 2 + 63) & ~(size_t)63;
    const size_t b_bytes = (size_t)np * NR * (size_t)Kp * 2;
    uint16_t *mem = aligned_alloc(64, (a_bytes + b_bytes + 63) & ~(size_t)63);
    if (!mem) return false;
    const qb_isa isa = qb_cpu_isa_selected(QB_PREC_BF16);
    bf_kernel kernel = bf_generic;
#ifdef HAVE_X86_KERNELS
    if (isa == QB_ISA_AVX512_BF16) kernel = bf_avx512;
#else
    (void)isa;
#endif
    bf_call c = {.ta = trans_a,
                 .tb = trans_b,
                 .M = M,
                 .N = N,
                 .K = K,
                 .Kp = Kp,
                 .np = np,
                 .row_blocks = row_blocks,
                 .tiles = np * row_blocks,
                 .alpha = alpha,
                 .beta = beta,
                 .A = A,
                 .B = B,
                 .lda = lda,
                 .ldb = ldb,
                 .ldc = ldc,
                 .C = C,
                 .ap = mem,
                 .bp = (uint16_t *)((char *)mem + a_bytes),
                 .kernel = kernel};
    const bool par = 2.0 * (double)M * (double)N * (double)K >= BF16_PARALLEL_FLOPS;
    split(ex, par, (M + TB - 1) / TB, pack_a, &c);
    split(ex, par, np, pack_b, &c);
    split(ex, par, c.tiles, run_tiles, &c);
    free(mem);
    return true;
}

bool qb_cpu_gemm_bf16_supported(void) {
    return qb_cpu_isa_selected(QB_PREC_BF16) == QB_ISA_AVX512_BF16;
}
