/* GEMM against weights packed once, for inference with immutable weights.
 *
 * Why: at batch 1 an encoder's linears are GEMMs of M = 1..~500 rows against
 * a (N, K) weight; OpenBLAS repacks that weight into its panel layout on
 * every call (sgemm_incopy/otcopy), about a quarter of the GEMM time at
 * these shapes. A model loaded through the public API never changes its
 * weights, so they are packed here once, at load, and a small AVX-512
 * kernel streams the packed panels.
 *
 * Layout: a weight W (N, K) row-major (nn.Linear's (out, in); a conv's
 * (OC, C, K) viewed as (OC, C*K)) becomes ceil(N / NR) column panels; panel p
 * holds W[p*NR + j][k] at panel[k*NR + j], so one k step of the micro-kernel
 * reads NR consecutive floats (two zmm loads). The last panel is zero-padded
 * to NR columns. Every panel starts 64-byte aligned (K*NR floats is a
 * multiple of 16). Memory: sum over weights of ceil(N/NR)*NR*K floats, i.e.
 * a second copy of every packed weight (plus the ragged padding); the
 * original stays, because calls the kernel does not take (large M, the
 * backward, a CPU without AVX-512) still go to OpenBLAS with it.
 *
 * A call may use a column range of a packed weight: B = W + k0 with
 * ldb = K_W and k0 + K <= K_W, as conv.c's K-blocked im2col GEMMs and the
 * text encoder's gate and char_proj do. The packed panel then starts at row
 * k0 of the panel, which costs nothing.
 *
 * Determinism: each output element is one accumulator lane summing
 * a[i][k] * b[k][j] over k = 0..K-1 in order with FMA, then alpha and beta
 * applied once. Threads split whole (panel, row block) tiles, so the bits
 * do not depend on the thread count or on which thread ran a tile. */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "core/core.h"

#define NR QB_PACK_NR /* columns per panel: two zmm */
#define MR 8          /* rows per micro-kernel: 16 zmm accumulators */
#define CB 8          /* row blocks per chunk of A (see run_tiles) */
/* Below this many flops a GEMM runs on one thread (as dense.c: a fork/join
 * costs more). */
#define PACKED_PARALLEL_FLOPS 4e6

typedef struct packed_weight {
    uintptr_t key;  /* (uintptr_t)W: sorted on it; compared as integers since
                       pointers into different objects are not ordered in C */
    int64_t N, K;
    const float *panels; /* ceil(N/NR) panels of (K, NR) */
} packed_weight;

struct qb_packed_set {
    packed_weight *w; /* n entries, sorted by key */
    size_t n;
    float *mem;       /* every panel, one 64-byte aligned allocation */
    size_t bytes;     /* of mem */
    qb_lowp_set *lowp; /* owned: int8 or bf16 copies consulted first (gemm_lowp.c), or NULL */
};

static int cmp_key(const void *a, const void *b) {
    const uintptr_t x = ((const packed_weight *)a)->key, y = ((const packed_weight *)b)->key;
    return x < y ? -1 : x > y;
}

static void pack_one(float *dst, const float *w, int64_t N, int64_t K) {
    const int64_t np = (N + NR - 1) / NR;
    for (int64_t p = 0; p < np; p++) {
        float *panel = dst + p * K * NR;
        const int64_t n0 = p * NR, nn = N - n0 < NR ? N - n0 : NR;
        for (int64_t k = 0; k < K; k++) {
            float *row = panel + k * NR;
            for (int64_t j = 0; j < nn; j++) row[j] = w[(n0 + j) * K + k];
            for (int64_t j = nn; j < NR; j++) row[j] = 0.0f;
        }
    }
}

qiao_status qb_packed_set_new(const qb_packed_src *src, size_t n, qb_packed_set **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qb_packed_set_new: out is NULL");
    *out = NULL;
    if (n > 0 && !src) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qb_packed_set_new: src is NULL");
    size_t floats = 0;
    for (size_t i = 0; i < n; i++) {
        if (!src[i].w || src[i].N <= 0 || src[i].K <= 0)
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qb_packed_set_new: weight %zu is empty or NULL", i);
        size_t f;
        const size_t cols = (size_t)((src[i].N + NR - 1) / NR) * NR;
        if (!qc_mul_size(cols, (size_t)src[i].K, &f) || !qc_add_size(floats, f, &floats) ||
            floats > SIZE_MAX / sizeof(float))
            return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qb_packed_set_new: weights too large");
    }
    qb_packed_set *s = calloc(1, sizeof *s);
    if (!s) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qb_packed_set_new: out of memory");
    s->bytes = floats * sizeof(float);
    s->w = calloc(n ? n : 1, sizeof *s->w);
    s->mem = s->bytes ? aligned_alloc(64, s->bytes) : NULL; /* bytes is a multiple of 64 */
    if (!s->w || (s->bytes && !s->mem)) {
        const size_t bytes = s->bytes;
        qb_packed_set_free(s);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qb_packed_set_new: out of memory (%zu bytes)", bytes);
    }
    s->n = n;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const int64_t N = src[i].N, K = src[i].K;
        pack_one(s->mem + off, src[i].w, N, K);
        s->w[i] = (packed_weight){(uintptr_t)src[i].w, N, K, s->mem + off};
        off += (size_t)((N + NR - 1) / NR) * NR * (size_t)K;
    }
    qsort(s->w, n, sizeof *s->w, cmp_key);
    /* Overlapping weights would make a lookup ambiguous. */
    for (size_t i = 1; i < n; i++)
        if (s->w[i - 1].key + (uintptr_t)(s->w[i - 1].N * s->w[i - 1].K) * sizeof(float) > s->w[i].key) {
            qb_packed_set_free(s);
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qb_packed_set_new: two weights overlap");
        }
    *out = s;
    return QIAO_OK;
}

void qb_packed_set_free(qb_packed_set *s) {
    if (!s) return;
    qb_lowp_set_free(s->lowp);
    free(s->mem);
    free(s->w);
    free(s);
}

size_t qb_packed_set_bytes(const qb_packed_set *s) {
    return s ? s->bytes + s->n * sizeof *s->w + sizeof *s + qb_lowp_set_bytes(s->lowp) : 0;
}

qiao_status qb_packed_set_new_prec(const qb_packed_src *src, size_t n, qb_precision prec, qb_packed_set **out) {
    qiao_status st = qb_packed_set_new(src, n, out);
    if (st != QIAO_OK || prec == QB_PREC_F32) return st;
    st = qb_lowp_set_new(src, n, prec, &(*out)->lowp);
    if (st != QIAO_OK) {
        qb_packed_set_free(*out);
        *out = NULL;
    }
    return st;
}

qb_precision qb_packed_set_precision(const qb_packed_set *s) { return s ? qb_lowp_set_precision(s->lowp) : QB_PREC_F32; }

const qb_lowp_set *qb_packed_set_lowp(const qb_packed_set *s) { return s ? s->lowp : NULL; }

/* The packed panels for B (K, N) = W^T restricted to columns [k0, k0 + K)
 * of W, when B points into row 0 of a packed W with N rows and ldb = its K;
 * NULL otherwise. */
static const float *packed_find(const qb_packed_set *s, const float *B, int64_t N, int64_t K, int64_t ldb) {
    const uintptr_t b = (uintptr_t)B;
    size_t lo = 0, hi = s->n; /* the last entry with key <= b */
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (s->w[mid].key <= b) lo = mid + 1;
        else hi = mid;
    }
    if (lo == 0) return NULL;
    const packed_weight *w = &s->w[lo - 1];
    const uintptr_t off = b - w->key;
    if (off % sizeof(float)) return NULL;
    const int64_t k0 = (int64_t)(off / sizeof(float));
    if (w->N != N || ldb != w->K || k0 + K > w->K) return NULL;
    return w->panels + k0 * NR;
}

bool qb_cpu_gemm_packed_supported(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    return __builtin_cpu_supports("avx512f");
#else
    return false;
#endif
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_AVX512_KERNEL 1
#define AVX512 __attribute__((target("avx512f,fma")))

/* The epilogue a linear layer fuses into its GEMM (qb_cpu_linears_packed):
 * C += bias[column], then G = gelu(C). All NULL for a plain GEMM. */
typedef struct epilogue {
    const float *bias; /* (N) */
    float *G;          /* (M, N), row stride ldg */
    int64_t ldg;
} epilogue;

/* C[0..mr)[0..NR) (columns masked by m0, m1) = alpha * A[0..mr) P + beta C,
 * then the epilogue on the tile (bias and G already offset to its first
 * column; nn of its columns are real). `mr` is a constant in every inlined
 * copy, so the accumulator arrays live in registers and the row loops
 * unroll. beta == 0 never reads C (it may hold NaN garbage, as BLAS
 * allows). */
static inline __attribute__((always_inline)) AVX512 void micro(const int mr, int64_t K, const float *A,
                                                               int64_t lda, const float *P, float *C,
                                                               int64_t ldc, __mmask16 m0, __mmask16 m1,
                                                               float alpha, float beta, const float *bias,
                                                               float *G, int64_t ldg, int64_t nn) {
    __m512 c0[MR], c1[MR];
    for (int i = 0; i < mr; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        const __m512 b0 = _mm512_load_ps(P + k * NR), b1 = _mm512_load_ps(P + k * NR + 16);
        for (int i = 0; i < mr; i++) {
            const __m512 a = _mm512_set1_ps(A[i * lda + k]);
            c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    /* The bias is added after alpha and beta are applied, as a separate
     * bias pass would add it to the stored C: the same bits. */
    const __m512 bias0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    const __m512 bias1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
    for (int i = 0; i < mr; i++) {
        float *c = C + i * ldc;
        __m512 r0 = _mm512_mul_ps(c0[i], va), r1 = _mm512_mul_ps(c1[i], va);
        if (beta != 0.0f) {
            r0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0, c), vb, r0);
            r1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1, c + 16), vb, r1);
        }
        if (bias) {
            r0 = _mm512_add_ps(r0, bias0);
            r1 = _mm512_add_ps(r1, bias1);
        }
        _mm512_mask_storeu_ps(c, m0, r0);
        _mm512_mask_storeu_ps(c + 16, m1, r1);
        if (G) {
            float *g = G + i * ldg;
#pragma omp simd
            for (int64_t j = 0; j < nn; j++) g[j] = qb_gelu_fast(c[j]);
        }
    }
}

/* Tiles [t0, t1) of the (panel, row block) grid. Tile order: row chunks of
 * CB row blocks (CB * MR rows of A, at most 256 KiB at K = 1024: they stay
 * in L2 while every panel passes), then panels, then the row blocks of the
 * chunk (one panel reused CB times from L1/L2). Panels are KW * NR floats
 * apart, KW the packed weight's K (a call may use K < KW of its rows). */
static AVX512 void run_tiles(int64_t t0, int64_t t1, int64_t row_blocks, int64_t M, int64_t N, int64_t K,
                             int64_t KW, float alpha, const float *A, int64_t lda, const float *P, float beta,
                             float *C, int64_t ldc, const epilogue *ep) {
    const int64_t np = (N + NR - 1) / NR;
    for (int64_t t = t0; t < t1; t++) {
        /* Only the last chunk can be short; its tiles still start at
         * chunk * np * CB, so the same division finds them. */
        const int64_t chunk = t / (np * CB), in = t % (np * CB);
        const int64_t cb = row_blocks - chunk * CB < CB ? row_blocks - chunk * CB : CB;
        const int64_t p = in / cb, r0 = (chunk * CB + in % cb) * MR;
        const int64_t n0 = p * NR, nn = N - n0 < NR ? N - n0 : NR;
        const __mmask16 m0 = nn >= 16 ? 0xFFFF : (__mmask16)((1u << nn) - 1);
        const __mmask16 m1 = nn <= 16 ? 0 : nn >= 32 ? 0xFFFF : (__mmask16)((1u << (nn - 16)) - 1);
        const float *a = A + r0 * lda, *panel = P + p * KW * NR;
        float *c = C + r0 * ldc + n0;
        const float *bias = ep->bias ? ep->bias + n0 : NULL;
        float *G = ep->G ? ep->G + r0 * ep->ldg + n0 : NULL;
        const int64_t ldg = ep->ldg;
        switch (M - r0 < MR ? M - r0 : MR) {
        case 8: micro(8, K, a, lda, panel, c, ldc, m0, m1, alpha, beta, bias, G, ldg, nn); break;
        case 7: micro(7, K, a, lda, panel, c, ldc, m0, m1, alpha, beta, bias, G, ldg, nn); break;
        case 6: micro(6, K, a, lda, panel, c, ldc, m0, m1, alpha, beta, bias, G, ldg, nn); break;
        case 5: micro(5, K, a, lda, panel, c, ldc, m0, m1, alpha, beta, bias, G, ldg, nn); break;
        case 4: micro(4, K, a, lda, panel, c, ldc, m0, m1, alpha, beta, bias, G, ldg, nn); break;
        case 3: micro(3, K, a, lda, panel, c, ldc, m0, m1, alpha, beta, bias, G, ldg, nn); break;
        case 2: micro(2, K, a, lda, panel, c, ldc, m0, m1, alpha, beta, bias, G, ldg, nn); break;
        default: micro(1, K, a, lda, panel, c, ldc, m0, m1, alpha, beta, bias, G, ldg, nn); break;
        }
    }
}
#endif

#ifdef HAVE_AVX512_KERNEL
/* One of the GEMMs run_packed does together: the same A, M, N and K. */
typedef struct packed_job {
    const float *P; /* the weight's panels */
    float *C;
    epilogue ep;
} packed_job;

/* Tiles [g0, g1) of the jobs' tiles laid end to end (job j owns
 * [j * tiles, (j + 1) * tiles)). */
static void run_jobs(int64_t g0, int64_t g1, const packed_job *jobs, int64_t tiles, int64_t row_blocks, int64_t M,
                     int64_t N, int64_t K, int64_t KW, float alpha, const float *A, int64_t lda, float beta,
                     int64_t ldc) {
    for (int64_t j = g0 / tiles; j * tiles < g1; j++) {
        const int64_t lo = g0 > j * tiles ? g0 - j * tiles : 0, hi = g1 < (j + 1) * tiles ? g1 - j * tiles : tiles;
        run_tiles(lo, hi, row_blocks, M, N, K, KW, alpha, A, lda, jobs[j].P, beta, jobs[j].C, ldc, &jobs[j].ep);
    }
}

/* run_jobs' arguments, for the parts of one region. */
typedef struct packed_region {
    const packed_job *jobs;
    int64_t tiles, row_blocks, all, M, N, K, KW;
    float alpha;
    const float *A;
    int64_t lda;
    float beta;
    int64_t ldc;
} packed_region;

/* Part t of n: tiles [t * all / n, (t + 1) * all / n). */
static void packed_part(void *ctx, int t, int n) {
    const packed_region *r = ctx;
    run_jobs((int64_t)t * r->all / n, ((int64_t)t + 1) * r->all / n, r->jobs, r->tiles, r->row_blocks, r->M, r->N,
             r->K, r->KW, r->alpha, r->A, r->lda, r->beta, r->ldc);
}

/* n GEMMs C_j = alpha A W_j^T + beta C_j (+ epilogue) in one parallel
 * region: the tiles of all n split evenly between the threads, so GEMMs
 * that share their input (attention's Q, K and V) cost one fork and join,
 * not n. Which thread runs a tile does not change its bits. */
static void run_packed(const qb_exec *ex, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                       int64_t ldb, float beta, int64_t ldc, const packed_job *jobs, int n_jobs) {
    const int64_t row_blocks = (M + MR - 1) / MR, tiles = (N + NR - 1) / NR * row_blocks, all = tiles * n_jobs;
    const int64_t KW = ldb; /* == the packed weights' K (checked by packed_find) */
    int nt = ex->n_threads;
    if (2.0 * (double)M * (double)N * (double)K * n_jobs < PACKED_PARALLEL_FLOPS || all < 2) nt = 1;
    if (nt > all) nt = (int)all;
    if (nt == 1) {
        run_jobs(0, all, jobs, tiles, row_blocks, M, N, K, KW, alpha, A, lda, beta, ldc);
        return;
    }
    packed_region r = {jobs, tiles, row_blocks, all, M, N, K, KW, alpha, A, lda, beta, ldc};
    qb_parallel(ex, nt, packed_part, &r);
}
#endif

bool qb_cpu_gemm_packed(const qb_exec *ex, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                        int64_t batch) {
    if (ex->packed && ex->packed->lowp && !trans_a && trans_b && batch == 1 &&
        qb_lowp_gemm(ex, ex->packed->lowp, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
        return true;
#ifdef HAVE_AVX512_KERNEL
    if (!ex->packed || trans_a || !trans_b || batch != 1 || M <= 0 || N <= 0 || K <= 0)
        return false;
    if (!qb_cpu_gemm_packed_supported()) return false;
    const float *P = packed_find(ex->packed, B, N, K, ldb);
    if (!P) return false;
    const packed_job job = {P, C, {NULL, NULL, 0}};
    run_packed(ex, M, N, K, alpha, A, lda, ldb, beta, ldc, &job, 1);
    return true;
#else
    (void)ex, (void)trans_a, (void)trans_b, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda, (void)B;
    (void)ldb, (void)beta, (void)C, (void)ldc, (void)batch;
    return false;
#endif
}

bool qb_cpu_linears_packed(const qb_exec *ex, int n, float *const *outs, float *const *gelu_outs, const float *inp,
                           const float *const *ws, const float *const *bs, int64_t N, int64_t C, int64_t OC) {
    /* Low precision takes any number of rows: its A is a compact copy. */
    if (ex->packed && ex->packed->lowp && qb_lowp_linears(ex, ex->packed->lowp, n, outs, gelu_outs, inp, ws, bs, N, C, OC))
        return true;
#ifdef HAVE_AVX512_KERNEL
    enum { MAX_JOBS = 8 };
    if (!ex->packed || n < 1 || n > MAX_JOBS || N <= 0 || N > QB_PACK_MAX_M || C <= 0 || OC <= 0 ||
        !qb_cpu_gemm_packed_supported())
        return false;
    packed_job jobs[MAX_JOBS];
    for (int j = 0; j < n; j++) {
        const float *P = packed_find(ex->packed, ws[j], OC, C, C);
        if (!P) return false;
        jobs[j] = (packed_job){P, outs[j], {bs ? bs[j] : NULL, gelu_outs ? gelu_outs[j] : NULL, OC}};
    }
    run_packed(ex, N, OC, C, 1.0f, inp, C, C, 0.0f, OC, jobs, n);
    return true;
#else
    (void)ex, (void)n, (void)outs, (void)gelu_outs, (void)inp, (void)ws, (void)bs, (void)N, (void)C, (void)OC;
    return false;
#endif
}
