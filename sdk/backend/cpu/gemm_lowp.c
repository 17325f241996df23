/* Low-precision inference GEMMs on weights packed once: int8 and bf16.
 *
 * Why: at batch 32 an encoder's forward is mostly GEMMs against immutable
 * weights, and the f32 kernel (gemm_packed.c) is bound by FMA throughput.
 * vpdpbusd does 64 int8 multiply-adds per instruction where vfmadd231ps does
 * 16, and vdpbf16ps does 32 bf16 ones, so a model that tolerates the
 * rounding computes 2-4x fewer instructions per GEMM.
 *
 * int8 (per-channel symmetric weights, per-token dynamic activations):
 *   W_q[n][k] = round(W[n][k] / sw[n]), sw[n] = max_k |W[n][k]| / 127,
 *   A_q[i][k] = round(A[i][k] / sa[i]), sa[i] = max_k |A[i][k]| / 127
 *   (a zero row has scale 0 and codes 0), and
 *   C[i][j] = (float)(sum_k A_q[i][k] W_q[j][k]) * (sw[j] * sa[i]) + bias[j].
 * vpdpbusd multiplies unsigned by signed bytes, so A_q is stored as
 * u8 = A_q + 128 and the sum loses 128 * sum_k W_q[j][k], a per-column
 * constant computed at pack time (corr). Every path computes the same exact
 * int32 sum (|sum| <= 255 * 127 * K < 2^31 for K <= QB_LOWP_MAX_K), and all
 * paths share one scalar epilogue, so their f32 results are bit-identical.
 *
 * bf16: weights and activations rounded to bf16 (round to nearest even),
 * products summed in f32 pairwise along K as vdpbf16ps does (per pair, the
 * odd element's product is added first, then the even one's; Intel SDM).
 * The scalar path repeats that order, so the paths agree bit for bit on
 * normal numbers; vdpbf16ps flushes denormals, which the scalar path does not.
 *
 * Layout (both kinds): ceil(N / 32) panels of 32 output columns; in a
 * panel, K step s holds for each column j the G consecutive K elements of
 * that column (G = 4 bytes for int8, G = 2 bf16 for bf16), i.e. 128 bytes
 * per step: two zmm loads. K is zero-padded to a multiple of G and N to 32.
 *
 * Dispatch: the best path the CPU has (__builtin_cpu_supports), capped by
 * qb_cpu_isa_force() or, at first use, the environment variable QIAO_ISA
 * (same names): generic < avx2 < avxvnni < avx512vnni < avx512bf16. int8
 * uses the best of {generic, avx2, avxvnni, avx512vnni} under the cap, bf16
 * the best of {generic, avx512bf16}. "generic" is portable C (auto-vectorized
 * at the build's baseline).
 *
 * Determinism: threads split whole (panel, row block) tiles, so bits do not
 * depend on the thread count. */
#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "backend/cpu/threads.h"
#include "core/core.h"

#define NR 32 /* output columns per panel */
#define MR 8  /* rows per tile */
#define CB 8  /* row blocks per chunk of A (as gemm_packed.c: A's chunk stays in L2) */
#define LOWP_PARALLEL_OPS 4e6
#define LOWP_PARTS_PER_THREAD 4

typedef struct lowp_weight {
    uintptr_t key; /* (uintptr_t)W */
    int64_t N, K, Kp;
    const void *panels;  /* int8: Kp/4 steps of 128 bytes per panel; bf16: Kp/2 steps */
    const float *scale;  /* int8: (ceil(N/32)*32) per-channel scales, 0 in padding */
    const int32_t *corr; /* int8: 128 * sum_k W_q[n][k] */
} lowp_weight;

struct qb_lowp_set {
    qb_precision prec;
    lowp_weight *w; /* n, sorted by key */
    size_t n;
    void *mem;    /* every panel, scale and corr: one 64-byte aligned block */
    size_t bytes; /* of mem */
};

/* ---- dispatch ------------------------------------------------------------------- */

static const char *const isa_names[QB_ISA_COUNT] = {"generic", "avx2", "avxvnni", "avx512vnni", "avx512bf16"};

static bool cpu_has(qb_isa isa) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    switch (isa) {
    case QB_ISA_GENERIC: return true;
    case QB_ISA_AVX2: return __builtin_cpu_supports("avx2");
    case QB_ISA_AVX_VNNI: {
        /* CPUID leaf 7, subleaf 1, EAX bit 4; clang 14 has no "avxvnni"
         * name for __builtin_cpu_supports. The ymm state it needs is the
         * one AVX2's check already requires the OS to save. */
        unsigned a = 0, b = 0, c = 0, d = 0;
        return __builtin_cpu_supports("avx2") && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a >> 4 & 1u);
    }
    case QB_ISA_AVX512_VNNI:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    case QB_ISA_AVX512_BF16:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512bf16");
    default: return false;
    }
#else
    return isa == QB_ISA_GENERIC;
#endif
}

/* The cap: -1 = not decided yet (QIAO_ISA is read at first use), else a
 * qb_isa. Atomic, so concurrent first uses agree; forcing is meant for tests
 * and benchmarks, before any inference runs. */
static _Atomic int isa_cap = -1;

static qb_isa isa_from_name(const char *name, bool *ok) {
    *ok = true;
    if (!name || !*name || strcmp(name, "auto") == 0) return QB_ISA_COUNT;
    for (int i = 0; i < QB_ISA_COUNT; i++)
        if (strcmp(name, isa_names[i]) == 0) return (qb_isa)i;
    *ok = false;
    return QB_ISA_COUNT;
}

static qb_isa best_under(qb_isa cap) {
    for (int i = (int)cap; i > 0; i--)
        if (i < QB_ISA_COUNT && cpu_has((qb_isa)i)) return (qb_isa)i;
    return QB_ISA_GENERIC;
}

static qb_isa cap_now(void) {
    int c = atomic_load(&isa_cap);
    if (c >= 0) return (qb_isa)c;
    bool ok;
    qb_isa want = isa_from_name(getenv("QIAO_ISA"), &ok);
    /* An unknown or unavailable QIAO_ISA means "auto": the library never
     * fails a computation over an environment variable; qiao's benchmarks
     * print the chosen path (qb_cpu_isa_name) so a typo shows. */
    if (!ok || (want != QB_ISA_COUNT && !cpu_has(want))) want = QB_ISA_COUNT;
    int expected = -1;
    atomic_compare_exchange_strong(&isa_cap, &expected, (int)want);
    return (qb_isa)atomic_load(&isa_cap);
}

qiao_status qb_cpu_isa_force(const char *name) {
    bool ok;
    const qb_isa want = isa_from_name(name, &ok);
    if (!ok)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "qb_cpu_isa_force: unknown ISA '%s' (auto, generic, avx2, avxvnni, avx512vnni, avx512bf16)",
                        name);
    if (want != QB_ISA_COUNT && !cpu_has(want))
        return qc_error(QIAO_ERR_UNSUPPORTED, "qb_cpu_isa_force: this CPU lacks %s", isa_names[want]);
    atomic_store(&isa_cap, (int)want);
    return QIAO_OK;
}

bool qb_cpu_isa_available(qb_isa isa) { return isa >= 0 && isa < QB_ISA_COUNT && cpu_has(isa); }

qb_isa qb_cpu_isa_selected(qb_precision prec) {
    const qb_isa cap = cap_now();
    if (prec == QB_PREC_BF16) return cap >= QB_ISA_AVX512_BF16 && cpu_has(QB_ISA_AVX512_BF16) ? QB_ISA_AVX512_BF16
                                                                                          : QB_ISA_GENERIC;
    return best_under(cap > QB_ISA_AVX512_VNNI ? QB_ISA_AVX512_VNNI : cap);
}

const char *qb_cpu_isa_name(qb_isa isa) { return isa >= 0 && isa < QB_ISA_COUNT ? isa_names[isa] : "?"; }

/* ---- quantization (one definition for every path) -------------------------------- */

/* Written branch-free so GCC vectorizes the loops below (the activations
 * of every call pass through them). */
static inline int32_t code(float x, float inv) {
    /* Round half away from zero; |x * inv| <= 127 by construction, clamped
     * anyway so a rounding slip cannot leave the code range. */
    const float v = x * inv;
    int32_t q = (int32_t)(v + (v >= 0.0f ? 0.5f : -0.5f));
    q = q > 127 ? 127 : q;
    return q < -127 ? -127 : q;
}

/* max |x[k]| as the largest bit pattern of |x[k]| (for floats >= 0 the
 * integer order is the numeric one, and a NaN's pattern is above every
 * number's, so a NaN anywhere gives NaN): an integer max reduction, which
 * GCC vectorizes, where a float one it would not (up to 80% of an int8 GEMM
 * at the encoders' shapes went to the scalar loop). */
static inline float absmax(const float *x, int64_t K) {
    uint32_t m = 0;
    for (int64_t k = 0; k < K; k++) {
        uint32_t b;
        memcpy(&b, &x[k], sizeof b);
        b &= 0x7fffffffu;
        m = b > m ? b : m;
    }
    float f;
    memcpy(&f, &m, sizeof f);
    return f;
}

/* The scale of a row with this absmax; 0 (all codes 0) for a zero row or
 * one with an infinity or a NaN: int8 has neither, and the f32 path would
 * give infinities and NaNs there anyway. */
static inline float row_scale(float amax, float *inv) {
    if (!(amax > 0.0f) || !isfinite(amax)) {
        *inv = 0.0f;
        return 0.0f;
    }
    *inv = 127.0f / amax;
    return amax / 127.0f;
}

float qb_lowp_quantize_row(int8_t *q, const float *x, int64_t K) {
    float inv;
    const float scale = row_scale(absmax(x, K), &inv);
    for (int64_t k = 0; k < K; k++) q[k] = (int8_t)code(x[k], inv);
    return scale;
}

/* Rows [r0, r1) of A as u8 = q + 128 with row stride Kp (padding 128,
 * i.e. code 0). Same codes as qb_lowp_quantize_row. */
static void quantize_rows_u8(uint8_t *aq, float *sa, const float *A, int64_t lda, int64_t r0, int64_t r1, int64_t K,
                             int64_t Kp) {
    for (int64_t i = r0; i < r1; i++) {
        uint8_t *restrict row = aq + i * Kp;
        const float *restrict x = A + i * lda;
        float inv;
        sa[i] = row_scale(absmax(x, K), &inv);
        for (int64_t k = 0; k < K; k++) row[k] = (uint8_t)(code(x[k], inv) + 128);
        for (int64_t k = K; k < Kp; k++) row[k] = 128;
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* quantize_rows_u8 in AVX-512 (16 codes per step; GCC's AVX2 version of
 * the loop above was 20% of an int8 GEMM at N = 256). The same IEEE
 * operations in the same order (x * inv, + 0.5 or - 0.5 as v >= 0,
 * truncation, clamps), so the same codes. */
__attribute__((target("avx512f,avx512bw,avx512vl"))) static void quantize_rows_u8_avx512(uint8_t *aq, float *sa, const float *A,
                                                                                int64_t lda, int64_t r0, int64_t r1,
                                                                                int64_t K, int64_t Kp) {
    const __m512 half = _mm512_set1_ps(0.5f), mhalf = _mm512_set1_ps(-0.5f), zero = _mm512_setzero_ps();
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127), off = _mm512_set1_epi32(128);
    for (int64_t i = r0; i < r1; i++) {
        uint8_t *row = aq + i * Kp;
        const float *x = A + i * lda;
        float inv;
        sa[i] = row_scale(absmax(x, K), &inv);
        const __m512 vinv = _mm512_set1_ps(inv);
        for (int64_t k = 0; k < K; k += 16) {
            const __mmask16 m = K - k >= 16 ? 0xFFFF : (__mmask16)((1u << (K - k)) - 1);
            const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + k), vinv);
            const __m512 h = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, zero, _CMP_GE_OQ), mhalf, half);
            __m512i q = _mm512_cvttps_epi32(_mm512_add_ps(v, h));
            q = _mm512_max_epi32(_mm512_min_epi32(q, hi), lo);
            _mm_mask_storeu_epi8(row + k, m, _mm512_cvtepi32_epi8(_mm512_add_epi32(q, off)));
        }
        for (int64_t k = K; k < Kp; k++) row[k] = 128;
    }
}
#endif

static void bf16_rows(uint16_t *ab, const float *A, int64_t lda, int64_t r0, int64_t r1, int64_t K, int64_t Kp) {
    for (int64_t i = r0; i < r1; i++) {
        uint16_t *restrict row = ab + i * Kp;
        const float *restrict x = A + i * lda;
        for (int64_t k = 0; k < K; k++) row[k] = qb_bf16_from_f32(x[k]);
        for (int64_t k = K; k < Kp; k++) row[k] = 0;
    }
}

/* ---- the set -------------------------------------------------------------------- */

static int cmp_key(const void *a, const void *b) {
    const uintptr_t x = ((const lowp_weight *)a)->key, y = ((const lowp_weight *)b)->key;
    return x < y ? -1 : x > y;
}

static size_t round64(size_t x) { return (x + 63) & ~(size_t)63; }

/* Bytes of one weight's panels, scales and corrections (each 64-aligned). */
static size_t weight_bytes(qb_precision prec, int64_t N, int64_t K) {
    const size_t np = (size_t)((N + NR - 1) / NR), G = prec == QB_PREC_INT8 ? 4 : 2;
    const size_t Kp = ((size_t)K + G - 1) / G * G, elt = prec == QB_PREC_INT8 ? 1 : 2;
    size_t b = round64(np * NR * Kp * elt);
    if (prec == QB_PREC_INT8) b += 2 * round64(np * NR * 4);
    return b;
}

static void pack_int8(lowp_weight *lw, char *base, const float *W, int64_t N, int64_t K) {
    const int64_t np = (N + NR - 1) / NR, Kp = (K + 3) / 4 * 4;
    int8_t *panels = (int8_t *)base;
    float *scale = (float *)(base + round64((size_t)(np * NR * Kp)));
    int32_t *corr = (int32_t *)((char *)scale + round64((size_t)np * NR * 4));
    int8_t *row = malloc((size_t)Kp); /* caller checked K; small */
    for (int64_t n = 0; n < np * NR; n++) {
        if (n < N && row) {
            scale[n] = qb_lowp_quantize_row(row, W + n * K, K);
        } else {
            scale[n] = 0.0f;
            if (row) memset(row, 0, (size_t)Kp);
        }
        int32_t sum = 0;
        const int64_t p = n / NR, j = n % NR;
        int8_t *panel = panels + p * Kp * NR;
        for (int64_t k = 0; k < Kp; k++) {
            const int8_t v = (row && k < K && n < N) ? row[k] : 0;
            panel[(k / 4) * NR * 4 + j * 4 + k % 4] = v;
            sum += v;
        }
        corr[n] = 128 * sum;
    }
    free(row);
    *lw = (lowp_weight){(uintptr_t)W, N, K, Kp, panels, scale, corr};
}

static void pack_bf16(lowp_weight *lw, char *base, const float *W, int64_t N, int64_t K) {
    const int64_t np = (N + NR - 1) / NR, Kp = (K + 1) / 2 * 2;
    uint16_t *panels = (uint16_t *)base;
    for (int64_t n = 0; n < np * NR; n++) {
        const int64_t p = n / NR, j = n % NR;
        uint16_t *panel = panels + p * Kp * NR;
        for (int64_t k = 0; k < Kp; k++)
            panel[(k / 2) * NR * 2 + j * 2 + k % 2] = (n < N && k < K) ? qb_bf16_from_f32(W[n * K + k]) : 0;
    }
    *lw = (lowp_weight){(uintptr_t)W, N, K, Kp, panels, NULL, NULL};
}

qiao_status qb_lowp_set_new(const qb_packed_src *src, size_t n, qb_precision prec, qb_lowp_set **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qb_lowp_set_new: out is NULL");
    *out = NULL;
    if (prec != QB_PREC_INT8 && prec != QB_PREC_BF16)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qb_lowp_set_new: precision %d is not int8 or bf16", (int)prec);
    if (n > 0 && !src) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qb_lowp_set_new: src is NULL");
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        if (!src[i].w || src[i].N <= 0 || src[i].K <= 0)
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qb_lowp_set_new: weight %zu is empty or NULL", i);
        if (src[i].K > QB_LOWP_MAX_K || src[i].N > ((int64_t)1 << 30))
            return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                            "qb_lowp_set_new: weight %zu is (%lld, %lld); K is limited to %d (int32 sums)", i,
                            (long long)src[i].N, (long long)src[i].K, QB_LOWP_MAX_K);
        if (!qc_add_size(bytes, weight_bytes(prec, src[i].N, src[i].K), &bytes))
            return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qb_lowp_set_new: weights too large");
    }
    qb_lowp_set *s = calloc(1, sizeof *s);
    if (!s) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qb_lowp_set_new: out of memory");
    s->prec = prec;
    s->bytes = bytes;
    s->w = calloc(n ? n : 1, sizeof *s->w);
    s->mem = bytes ? aligned_alloc(64, bytes) : NULL;
    if (!s->w || (bytes && !s->mem)) {
        qb_lowp_set_free(s);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qb_lowp_set_new: out of memory (%zu bytes)", bytes);
    }
    s->n = n;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        char *base = (char *)s->mem + off;
        if (prec == QB_PREC_INT8) pack_int8(&s->w[i], base, src[i].w, src[i].N, src[i].K);
        else pack_bf16(&s->w[i], base, src[i].w, src[i].N, src[i].K);
        off += weight_bytes(prec, src[i].N, src[i].K);
    }
    qsort(s->w, n, sizeof *s->w, cmp_key);
    for (size_t i = 1; i < n; i++)
        if (s->w[i - 1].key == s->w[i].key) {
            qb_lowp_set_free(s);
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qb_lowp_set_new: a weight is listed twice");
        }
    *out = s;
    return QIAO_OK;
}

void qb_lowp_set_free(qb_lowp_set *s) {
    if (!s) return;
    free(s->mem);
    free(s->w);
    free(s);
}

size_t qb_lowp_set_bytes(const qb_lowp_set *s) { return s ? s->bytes + s->n * sizeof *s->w + sizeof *s : 0; }

qb_precision qb_lowp_set_precision(const qb_lowp_set *s) { return s ? s->prec : QB_PREC_F32; }

/* Only whole weights: B == W, N and K its own, ldb == K. (A column range
 * of W, as conv.c's K blocks use, would need its own correction sums; such
 * calls stay f32.) */
static const lowp_weight *lowp_find(const qb_lowp_set *s, const float *B, int64_t N, int64_t K, int64_t ldb) {
    const uintptr_t b = (uintptr_t)B;
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (s->w[mid].key < b) lo = mid + 1;
        else hi = mid;
    }
    if (lo == s->n || s->w[lo].key != b) return NULL;
    const lowp_weight *w = &s->w[lo];
    return w->N == N && w->K == K && ldb == K ? w : NULL;
}

/* ---- the shared epilogue ------------------------------------------------------------ */

typedef struct epilogue {
    const float *bias; /* (N) or NULL */
    float *G;          /* gelu(C), row stride ldg, or NULL */
    int64_t ldg;
} epilogue;

/* One tile's (mr, nn) int32 sums (row stride NR) to C. Plain C compiled
 * for the baseline, called by every path: the f32 operations and their
 * order are the same whichever kernel produced the sums. */
/* Both finish a row in v[NR] then store nn columns: fixed-length loops
 * over local arrays, which GCC vectorizes. alpha == 1 skips a multiply by
 * 1, which changes no bit. */
static void finish_row(float *restrict v, int64_t nn, float alpha, float beta, float *restrict c,
                       const float *restrict bias, float *restrict g) {
    if (alpha != 1.0f)
        for (int j = 0; j < NR; j++) v[j] = v[j] * alpha;
    if (beta != 0.0f)
        for (int64_t j = 0; j < nn; j++) v[j] = v[j] + beta * c[j];
    if (bias)
        for (int64_t j = 0; j < nn; j++) v[j] = v[j] + bias[j];
    for (int64_t j = 0; j < nn; j++) c[j] = v[j] * 1.0f; /* x * 1 == x; keeps GCC from calling memcpy per row */
    if (g)
        for (int64_t j = 0; j < nn; j++) g[j] = qb_gelu_fast(v[j]);
}

/* sw and corr hold NR entries (the panel's padding included). */
static void finish_int8(const int32_t *restrict acc, int mr, int64_t nn, const float *restrict sa,
                        const float *restrict sw, const int32_t *restrict corr, float alpha, float beta, float *C,
                        int64_t ldc, const float *bias, float *G, int64_t ldg) {
    for (int i = 0; i < mr; i++) {
        float v[NR];
        const float s = sa[i];
        const int32_t *restrict a = acc + i * NR;
        if (alpha == 1.0f && beta == 0.0f) {
            /* What a linear layer asks: straight to C, the same operations
             * as the general case below. */
            float *restrict c = C + i * ldc;
            if (bias)
                for (int64_t j = 0; j < nn; j++) c[j] = (float)(a[j] - corr[j]) * (sw[j] * s) + bias[j];
            else
                for (int64_t j = 0; j < nn; j++) c[j] = (float)(a[j] - corr[j]) * (sw[j] * s);
            if (G)
                for (int64_t j = 0; j < nn; j++) G[i * ldg + j] = qb_gelu_fast(c[j]);
            continue;
        }
        for (int j = 0; j < NR; j++) v[j] = (float)(a[j] - corr[j]) * (sw[j] * s);
        finish_row(v, nn, alpha, beta, C + i * ldc, bias, G ? G + i * ldg : NULL);
    }
}

static void finish_f32(const float *restrict acc, int mr, int64_t nn, float alpha, float beta, float *C, int64_t ldc,
                       const float *bias, float *G, int64_t ldg) {
    for (int i = 0; i < mr; i++) {
        float v[NR];
        memcpy(v, acc + i * NR, sizeof v);
        finish_row(v, nn, alpha, beta, C + i * ldc, bias, G ? G + i * ldg : NULL);
    }
}

/* ---- int8 kernels: acc[mr][NR] = sum over steps of u8 quads x s8 quads ---------------- */

static void i8_generic(int mr, int64_t steps, const uint8_t *a, int64_t lda, const int8_t *P, int32_t *acc) {
    for (int i = 0; i < mr; i++) {
        int32_t c[NR] = {0};
        const uint8_t *ar = a + i * lda;
        for (int64_t s = 0; s < steps; s++) {
            const int8_t *p = P + s * NR * 4;
            const int32_t a0 = ar[4 * s], a1 = ar[4 * s + 1], a2 = ar[4 * s + 2], a3 = ar[4 * s + 3];
            for (int j = 0; j < NR; j++)
                c[j] += a0 * p[4 * j] + a1 * p[4 * j + 1] + a2 * p[4 * j + 2] + a3 * p[4 * j + 3];
        }
        memcpy(acc + i * NR, c, sizeof c);
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_X86_KERNELS 1

static inline int32_t load_quad(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

#define AVX512VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))
static inline __attribute__((always_inline)) AVX512VNNI void i8_512_rows(const int mr, int64_t steps, const uint8_t *a,
                                                                        int64_t lda, const int8_t *P, int32_t *acc) {
    __m512i c0[MR], c1[MR];
    for (int i = 0; i < mr; i++) c0[i] = c1[i] = _mm512_setzero_si512();
    for (int64_t s = 0; s < steps; s++) {
        const __m512i b0 = _mm512_load_si512((const void *)(P + s * 128));
        const __m512i b1 = _mm512_load_si512((const void *)(P + s * 128 + 64));
        for (int i = 0; i < mr; i++) {
            const __m512i av = _mm512_set1_epi32(load_quad(a + i * lda + 4 * s));
            c0[i] = _mm512_dpbusd_epi32(c0[i], av, b0);
            c1[i] = _mm512_dpbusd_epi32(c1[i], av, b1);
        }
    }
    for (int i = 0; i < mr; i++) {
        _mm512_storeu_si512((void *)(acc + i * NR), c0[i]);
        _mm512_storeu_si512((void *)(acc + i * NR + 16), c1[i]);
    }
}

static AVX512VNNI void i8_avx512vnni(int mr, int64_t steps, const uint8_t *a, int64_t lda, const int8_t *P,
                                     int32_t *acc) {
    switch (mr) {
    case 8: i8_512_rows(8, steps, a, lda, P, acc); break;
    case 7: i8_512_rows(7, steps, a, lda, P, acc); break;
    case 6: i8_512_rows(6, steps, a, lda, P, acc); break;
    case 5: i8_512_rows(5, steps, a, lda, P, acc); break;
    case 4: i8_512_rows(4, steps, a, lda, P, acc); break;
    case 3: i8_512_rows(3, steps, a, lda, P, acc); break;
    case 2: i8_512_rows(2, steps, a, lda, P, acc); break;
    default: i8_512_rows(1, steps, a, lda, P, acc); break;
    }
}

/* 256-bit: 4 rows x 4 ymm of accumulators at a time. The AVX-VNNI path
 * uses vpdpbusd (VEX); the AVX2 path emulates it exactly with vpmaddwd on
 * bytes widened to 16 bits (vpmaddubsw would saturate at 16 bits). */
#define AVXVNNI __attribute__((target("avx2,avxvnni")))
#define AVX2 __attribute__((target("avx2")))

static inline __attribute__((always_inline)) AVX2 __m256i dp_avx2(__m256i c, __m256i a, __m256i b) {
    const __m256i lo8 = _mm256_set1_epi16(0x00FF);
    const __m256i a_even = _mm256_and_si256(a, lo8), a_odd = _mm256_srli_epi16(a, 8);
    const __m256i b_even = _mm256_srai_epi16(_mm256_slli_epi16(b, 8), 8), b_odd = _mm256_srai_epi16(b, 8);
    const __m256i s = _mm256_add_epi32(_mm256_madd_epi16(a_even, b_even), _mm256_madd_epi16(a_odd, b_odd));
    return _mm256_add_epi32(c, s);
}

#define I8_256_ROWS(NAME, ATTR, DP)                                                                              \
    static inline __attribute__((always_inline)) ATTR void NAME##_rows(const int mr, int64_t steps,              \
                                                                       const uint8_t *a, int64_t lda,            \
                                                                       const int8_t *P, int32_t *acc) {          \
        __m256i c[4][4];                                                                                         \
        for (int i = 0; i < mr; i++)                                                                             \
            for (int q = 0; q < 4; q++) c[i][q] = _mm256_setzero_si256();                                        \
        for (int64_t s = 0; s < steps; s++) {                                                                    \
            __m256i b[4];                                                                                        \
            for (int q = 0; q < 4; q++) b[q] = _mm256_load_si256((const __m256i *)(P + s * 128 + 32 * q));       \
            for (int i = 0; i < mr; i++) {                                                                       \
                const __m256i av = _mm256_set1_epi32(load_quad(a + i * lda + 4 * s));                           \
                for (int q = 0; q < 4; q++) c[i][q] = DP(c[i][q], av, b[q]);                                     \
            }                                                                                                    \
        }                                                                                                        \
        for (int i = 0; i < mr; i++)                                                                             \
            for (int q = 0; q < 4; q++) _mm256_storeu_si256((__m256i *)(acc + i * NR + 8 * q), c[i][q]);        \
    }                                                                                                            \
    static ATTR void NAME(int mr, int64_t steps, const uint8_t *a, int64_t lda, const int8_t *P, int32_t *acc) { \
        for (int r = 0; r < mr; r += 4) {                                                                        \
            const int m = mr - r < 4 ? mr - r : 4;                                                               \
            switch (m) {                                                                                         \
            case 4: NAME##_rows(4, steps, a + r * lda, lda, P, acc + r * NR); break;                             \
            case 3: NAME##_rows(3, steps, a + r * lda, lda, P, acc + r * NR); break;                             \
            case 2: NAME##_rows(2, steps, a + r * lda, lda, P, acc + r * NR); break;                             \
            default: NAME##_rows(1, steps, a + r * lda, lda, P, acc + r * NR); break;                            \
            }                                                                                                    \
        }                                                                                                        \
    }

#define DP_VNNI(c, a, b) _mm256_dpbusd_avx_epi32((c), (a), (b))
I8_256_ROWS(i8_avxvnni, AVXVNNI, DP_VNNI)
I8_256_ROWS(i8_avx2, AVX2, dp_avx2)
#endif

typedef void (*i8_kernel)(int mr, int64_t steps, const uint8_t *a, int64_t lda, const int8_t *P, int32_t *acc);

static i8_kernel i8_pick(qb_isa isa) {
#ifdef HAVE_X86_KERNELS
    switch (isa) {
    case QB_ISA_AVX512_VNNI: return i8_avx512vnni;
    case QB_ISA_AVX_VNNI: return i8_avxvnni;
    case QB_ISA_AVX2: return i8_avx2;
    default: break;
    }
#else
    (void)isa;
#endif
    return i8_generic;
}

/* ---- bf16 kernels: acc[mr][NR] f32, pairs added odd product first ------------------- */

static inline float bf16_to_f32(uint16_t h) {
    const uint32_t b = (uint32_t)h << 16;
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static void bf_generic(int mr, int64_t steps, const uint16_t *a, int64_t lda, const uint16_t *P, float *acc) {
    for (int i = 0; i < mr; i++) {
        float c[NR] = {0};
        const uint16_t *ar = a + i * lda;
        for (int64_t s = 0; s < steps; s++) {
            const uint16_t *p = P + s * NR * 2;
            const float a0 = bf16_to_f32(ar[2 * s]), a1 = bf16_to_f32(ar[2 * s + 1]);
            for (int j = 0; j < NR; j++) {
                /* Products of two bf16 are exact in f32; two roundings per
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
static inline __attribute__((always_inline)) AVX512BF16 void bf_512_rows(const int mr, int64_t steps,
                                                                        const uint16_t *a, int64_t lda,
                                                                        const uint16_t *P, float *acc) {
    __m512 c0[MR], c1[MR];
    for (int i = 0; i < mr; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    for (int64_t s = 0; s < steps; s++) {
        const __m512i b0 = _mm512_load_si512((const void *)(P + s * 64));
        const __m512i b1 = _mm512_load_si512((const void *)(P + s * 64 + 32));
        for (int i = 0; i < mr; i++) {
            const __m512i av = _mm512_set1_epi32(load_quad((const uint8_t *)(a + i * lda + 2 * s)));
            c0[i] = _mm512_dpbf16_ps(c0[i], (__m512bh)av, (__m512bh)b0);
            c1[i] = _mm512_dpbf16_ps(c1[i], (__m512bh)av, (__m512bh)b1);
        }
    }
    for (int i = 0; i < mr; i++) {
        _mm512_storeu_ps(acc + i * NR, c0[i]);
        _mm512_storeu_ps(acc + i * NR + 16, c1[i]);
    }
}

static AVX512BF16 void bf_avx512(int mr, int64_t steps, const uint16_t *a, int64_t lda, const uint16_t *P,
                                 float *acc) {
    switch (mr) {
    case 8: bf_512_rows(8, steps, a, lda, P, acc); break;
    case 7: bf_512_rows(7, steps, a, lda, P, acc); break;
    case 6: bf_512_rows(6, steps, a, lda, P, acc); break;
    case 5: bf_512_rows(5, steps, a, lda, P, acc); break;
    case 4: bf_512_rows(4, steps, a, lda, P, acc); break;
    case 3: bf_512_rows(3, steps, a, lda, P, acc); break;
    case 2: bf_512_rows(2, steps, a, lda, P, acc); break;
    default: bf_512_rows(1, steps, a, lda, P, acc); break;
    }
}
#endif

typedef void (*bf_kernel)(int mr, int64_t steps, const uint16_t *a, int64_t lda, const uint16_t *P, float *acc);

static bf_kernel bf_pick(qb_isa isa) {
#ifdef HAVE_X86_KERNELS
    if (isa == QB_ISA_AVX512_BF16) return bf_avx512;
#else
    (void)isa;
#endif
    return bf_generic;
}

/* ---- driver ---------------------------------------------------------------------- */

typedef struct lowp_job {
    const lowp_weight *w;
    float *C;
    epilogue ep;
} lowp_job;

typedef struct lowp_call {
    qb_precision prec;
    qb_isa isa;
    i8_kernel k8;
    bf_kernel k16;
    int64_t M, N, Kp, row_blocks, tiles; /* tiles per job */
    void *aq;                            /* u8 or bf16 rows, stride Kp */
    float *sa;                           /* int8 row scales */
    float alpha, beta;
    int64_t ldc;
    const lowp_job *jobs;
} lowp_call;

static void run_tiles(const lowp_call *c, int64_t g0, int64_t g1) {
    const int64_t np = (c->N + NR - 1) / NR;
    _Alignas(64) int32_t acc8[MR * NR];
    _Alignas(64) float accf[MR * NR];
    for (int64_t g = g0; g < g1; g++) {
        const lowp_job *job = &c->jobs[g / c->tiles];
        const int64_t t = g % c->tiles;
        const int64_t chunk = t / (np * CB), in = t % (np * CB);
        const int64_t cb = c->row_blocks - chunk * CB < CB ? c->row_blocks - chunk * CB : CB;
        const int64_t p = in / cb, r0 = (chunk * CB + in % cb) * MR;
        const int64_t n0 = p * NR, nn = c->N - n0 < NR ? c->N - n0 : NR;
        const int mr = (int)(c->M - r0 < MR ? c->M - r0 : MR);
        float *C = job->C + r0 * c->ldc + n0;
        const float *bias = job->ep.bias ? job->ep.bias + n0 : NULL;
        float *G = job->ep.G ? job->ep.G + r0 * job->ep.ldg + n0 : NULL;
        if (c->prec == QB_PREC_INT8) {
            const int8_t *P = (const int8_t *)job->w->panels + p * c->Kp * NR;
            c->k8(mr, c->Kp / 4, (const uint8_t *)c->aq + r0 * c->Kp, c->Kp, P, acc8);
            finish_int8(acc8, mr, nn, c->sa + r0, job->w->scale + n0, job->w->corr + n0, c->alpha, c->beta, C,
                        c->ldc, bias, G, job->ep.ldg);
        } else {
            const uint16_t *P = (const uint16_t *)job->w->panels + p * c->Kp * NR;
            c->k16(mr, c->Kp / 2, (const uint16_t *)c->aq + r0 * c->Kp, c->Kp, P, accf);
            finish_f32(accf, mr, nn, c->alpha, c->beta, C, c->ldc, bias, G, job->ep.ldg);
        }
    }
}

/* Rows [r0, r1) of the call's compact copy of A. */
static void prepare_rows(const lowp_call *c, const float *A, int64_t lda, int64_t K, int64_t r0, int64_t r1) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (c->prec == QB_PREC_INT8 && c->isa >= QB_ISA_AVX512_VNNI) {
        quantize_rows_u8_avx512(c->aq, c->sa, A, lda, r0, r1, K, c->Kp);
        return;
    }
#endif
    if (c->prec == QB_PREC_INT8) quantize_rows_u8((uint8_t *)c->aq, c->sa, A, lda, r0, r1, K, c->Kp);
    else bf16_rows((uint16_t *)c->aq, A, lda, r0, r1, K, c->Kp);
}

/* A region's share of the call: part p of n converts rows [p M / n,
 * (p + 1) M / n) of A, or runs tiles [p all / n, (p + 1) all / n). */
typedef struct lowp_region {
    const lowp_call *c;
    const float *A;
    int64_t lda, K, M, all;
} lowp_region;

static void prepare_part(void *ctx, int part, int n_parts) {
    const lowp_region *r = ctx;
    prepare_rows(r->c, r->A, r->lda, r->K, part * r->M / n_parts, (part + 1) * r->M / n_parts);
}

static void tiles_part(void *ctx, int part, int n_parts) {
    const lowp_region *r = ctx;
    run_tiles(r->c, part * r->all / n_parts, (part + 1) * r->all / n_parts);
}

/* n GEMMs on the same A through one quantized (or bf16) copy of A and two
 * parallel regions (the copy, then the tiles that read all of it). False, touching nothing, when the scratch copy of A
 * cannot be allocated: the caller's f32 path then computes the call. */
static bool run_lowp(const qb_exec *ex, const qb_lowp_set *s, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, float beta, int64_t ldc, const lowp_job *jobs, int n_jobs) {
    const int64_t Kp = jobs[0].w->Kp;
    const size_t elt = s->prec == QB_PREC_INT8 ? 1 : 2;
    void *aq = malloc((size_t)M * (size_t)Kp * elt + 64);
    float *sa = s->prec == QB_PREC_INT8 ? malloc((size_t)M * sizeof(float)) : NULL;
    if (!aq || (s->prec == QB_PREC_INT8 && !sa)) {
        free(aq);
        free(sa);
        return false;
    }
    const qb_isa isa = qb_cpu_isa_selected(s->prec);
    const int64_t row_blocks = (M + MR - 1) / MR, tiles = (N + NR - 1) / NR * row_blocks, all = tiles * n_jobs;
    const lowp_call c = {s->prec, isa, i8_pick(isa), bf_pick(isa), M, N, Kp, row_blocks, tiles, aq, sa,
                         alpha, beta, ldc, jobs};
    int nt = ex->n_threads;
    if (2.0 * (double)M * (double)N * (double)K * n_jobs < LOWP_PARALLEL_OPS || all < 2) nt = 1;
    if (nt > all) nt = (int)all;
    if (nt <= 1) {
        prepare_rows(&c, A, lda, K, 0, M);
        run_tiles(&c, 0, all);
    } else {
        /* Parts convert a share of A's rows each; the tiles, which read
         * every row, start once the whole copy is done (a second region
         * where an OpenMP team had a barrier). */
        const lowp_region r = {&c, A, lda, K, M, all};
        qb_exec one = *ex;
        one.n_threads = nt;
        qb_parallel(&one, nt, prepare_part, (void *)&r);
        /* Several runs of tiles per thread, claimed as threads come free: a
         * helper descheduled on a shared machine leaves its share to the
         * others (gemm_bf16.c does the same). Each tile's bits are its own. */
        const int64_t parts = all < (int64_t)nt * LOWP_PARTS_PER_THREAD ? all : (int64_t)nt * LOWP_PARTS_PER_THREAD;
        qb_parallel(&one, (int)parts, tiles_part, (void *)&r);
    }
    free(aq);
    free(sa);
    return true;
}

bool qb_lowp_gemm(const qb_exec *ex, const qb_lowp_set *s, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (!s || M <= 0 || N <= 0 || K <= 0) return false;
    const lowp_weight *w = lowp_find(s, B, N, K, ldb);
    if (!w) return false;
    const lowp_job job = {w, C, {NULL, NULL, 0}};
    return run_lowp(ex, s, M, N, K, alpha, A, lda, beta, ldc, &job, 1);
}

bool qb_lowp_linears(const qb_exec *ex, const qb_lowp_set *s, int n, float *const *outs, float *const *gelu_outs,
                     const float *inp, const float *const *ws, const float *const *bs, int64_t N, int64_t C,
                     int64_t OC) {
    enum { MAX_JOBS = 8 };
    if (!s || n < 1 || n > MAX_JOBS || N <= 0 || C <= 0 || OC <= 0) return false;
    lowp_job jobs[MAX_JOBS];
    for (int j = 0; j < n; j++) {
        const lowp_weight *w = lowp_find(s, ws[j], OC, C, C);
        if (!w) return false;
        jobs[j] = (lowp_job){w, outs[j], {bs ? bs[j] : NULL, gelu_outs ? gelu_outs[j] : NULL, OC}};
    }
    return run_lowp(ex, s, N, OC, C, 1.0f, inp, C, 0.0f, OC, jobs, n);
}

bool qb_lowp_weight_codes(const qb_lowp_set *s, const float *W, int8_t *codes, float *scales) {
    if (!s || s->prec != QB_PREC_INT8) return false;
    const uintptr_t b = (uintptr_t)W;
    for (size_t i = 0; i < s->n; i++) {
        const lowp_weight *w = &s->w[i];
        if (w->key != b) continue;
        const int8_t *panels = w->panels;
        for (int64_t n = 0; n < w->N; n++) {
            const int64_t p = n / NR, j = n % NR;
            for (int64_t k = 0; k < w->K; k++)
                codes[n * w->K + k] = panels[p * w->Kp * NR + (k / 4) * NR * 4 + j * 4 + k % 4];
            scales[n] = w->scale[n];
        }
        return true;
    }
    return false;
}
