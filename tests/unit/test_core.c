/* Core: the seeded RNG, f16/bf16 conversions and the tensor table. */
#include <stddef.h>
#include <string.h>

#include "testutil.h"

/* ---- RNG -------------------------------------------------------------------- */

static void test_rng_determinism(void **state) {
    (void)state;
    qc_rng a, b;
    /* Known answers (xoshiro256** seeded by splitmix64, computed independently):
     * the same seed must give the same model bytes on every platform. */
    qc_rng_seed(&a, 0);
    assert_true(qc_rng_u64(&a) == 0x99ec5f36cb75f2b4ull);
    assert_true(qc_rng_u64(&a) == 0xbf6e1f784956452aull);
    assert_true(qc_rng_u64(&a) == 0x1a5f849d4933e6e0ull);
    qc_rng_seed(&a, 42);
    assert_true(qc_rng_u64(&a) == 0x15780b2e0c2ec716ull);
    assert_true(qc_rng_u64(&a) == 0x6104d9866d113a7eull);
    assert_true(qc_rng_u64(&a) == 0xae17533239e499a1ull);

    /* same seed, same stream; different seeds, different streams */
    qc_rng_seed(&a, 1234);
    qc_rng_seed(&b, 1234);
    for (int i = 0; i < 1000; i++) assert_true(qc_rng_u64(&a) == qc_rng_u64(&b));
    qc_rng_seed(&a, 1234);
    qc_rng_seed(&b, 1235);
    int same = 0;
    for (int i = 0; i < 1000; i++) same += qc_rng_u64(&a) == qc_rng_u64(&b);
    assert_int_equal(same, 0);

    /* uniform in [0, 1): range and the first two moments (n = 1e5: the
     * standard errors are 9e-4 for the mean and 2.7e-4 for the variance) */
    enum { NS = 100000 };
    qc_rng_seed(&a, 7);
    double s = 0.0, s2 = 0.0, lo = 1.0, hi = 0.0;
    for (int i = 0; i < NS; i++) {
        float u = qc_rng_uniform(&a);
        assert_true(u >= 0.0f && u < 1.0f);
        s += u, s2 += (double)u * u;
        lo = fmin(lo, u), hi = fmax(hi, u);
    }
    double mean = s / NS, var = s2 / NS - mean * mean;
    assert_true(fabs(mean - 0.5) < 5e-3);
    assert_true(fabs(var - 1.0 / 12.0) < 2e-3);
    assert_true(lo < 1e-3 && hi > 1.0 - 1e-3);

    /* normal: mean 0, variance 1 (standard errors 3e-3 and 4.5e-3) */
    qc_rng_seed(&a, 8);
    s = s2 = 0.0;
    double s4 = 0.0;
    for (int i = 0; i < NS; i++) {
        float z = qc_rng_normal(&a);
        assert_true(isfinite(z));
        s += z, s2 += (double)z * z, s4 += (double)z * z * z * z;
    }
    mean = s / NS, var = s2 / NS - mean * mean;
    assert_true(fabs(mean) < 0.02);
    assert_true(fabs(var - 1.0) < 0.03);
    assert_true(fabs(s4 / NS - 3.0) < 0.15); /* Gaussian kurtosis, not merely unit variance */

    /* below: bounds, and all residues equally likely */
    qc_rng_seed(&a, 9);
    for (int i = 0; i < 100; i++) assert_true(qc_rng_below(&a, 1) == 0);
    int64_t counts[7] = {0};
    for (int i = 0; i < 70000; i++) {
        uint64_t x = qc_rng_below(&a, 7);
        assert_true(x < 7);
        counts[x]++;
    }
    for (int k = 0; k < 7; k++) assert_true(llabs(counts[k] - 10000) < 500); /* 5 sigma */
    const uint64_t big = (1ull << 63) + 1; /* about half of all draws rejected */
    for (int i = 0; i < 1000; i++) assert_true(qc_rng_below(&a, big) < big);
    for (int i = 0; i < 1000; i++) assert_true(qc_rng_below(&a, UINT64_MAX) < UINT64_MAX);
}

/* ---- f16 ---------------------------------------------------------------------- */

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static bool f16_is_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }
static bool bf16_is_nan(uint16_t h) { return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0; }

static void test_half_f16(void **state) {
    (void)state;
    /* known patterns */
    assert_int_equal(qc_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(qc_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(qc_f32_to_f16(0.0f), 0x0000);
    assert_int_equal(qc_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(qc_f32_to_f16(65504.0f), 0x7bff);           /* largest finite */
    assert_int_equal(qc_f32_to_f16(65519.996f), 0x7bff);         /* just below the overflow tie */
    assert_int_equal(qc_f32_to_f16(65520.0f), 0x7c00);           /* tie to even rounds up to inf */
    assert_int_equal(qc_f32_to_f16(1e10f), 0x7c00);
    assert_int_equal(qc_f32_to_f16(-INFINITY), 0xfc00);
    assert_int_equal(qc_f32_to_f16(ldexpf(1.0f, -14)), 0x0400);  /* smallest normal */
    assert_int_equal(qc_f32_to_f16(ldexpf(1.0f, -24)), 0x0001);  /* smallest subnormal */
    assert_int_equal(qc_f32_to_f16(ldexpf(1023.0f, -24)), 0x03ff); /* largest subnormal */
    /* round to nearest, ties to even: normal range (ulp of 1 is 2^-10) */
    assert_int_equal(qc_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00);     /* tie, even below */
    assert_int_equal(qc_f32_to_f16(1.0f + ldexpf(3.0f, -11)), 0x3c02);     /* tie, even above */
    assert_int_equal(qc_f32_to_f16(1.0f + ldexpf(1.0f, -11) + ldexpf(1.0f, -20)), 0x3c01); /* past the tie */
    assert_int_equal(qc_f32_to_f16(1.0f + ldexpf(1.0f, -11) - ldexpf(1.0f, -20)), 0x3c00);
    /* ...and subnormal range (ulp 2^-24) */
    assert_int_equal(qc_f32_to_f16(ldexpf(1.0f, -25)), 0x0000); /* tie between 0 and 1 ulp */
    assert_int_equal(qc_f32_to_f16(ldexpf(3.0f, -25)), 0x0002); /* tie between 1 and 2 ulp */
    assert_int_equal(qc_f32_to_f16(ldexpf(5.0f, -25)), 0x0002); /* tie between 2 and 3 ulp */
    assert_int_equal(qc_f32_to_f16(ldexpf(1.0f, -25) * 1.001f), 0x0001);
    assert_int_equal(qc_f32_to_f16(ldexpf(2047.0f, -25)), 0x0400); /* rounds up into the normals */
    /* NaN stays NaN, sign kept */
    assert_true(f16_is_nan(qc_f32_to_f16(NAN)));
    assert_true(f16_is_nan(qc_f32_to_f16(bits_f32(0x7f800001u)))); /* signalling, payload in low bits only */
    assert_true(f16_is_nan(qc_f32_to_f16(bits_f32(0xffc00000u))));
    assert_true(isnan(qc_f16_to_f32(0x7e00)) && isnan(qc_f16_to_f32(0x7c01)));
    assert_true(qc_f16_to_f32(0x7c00) == INFINITY && qc_f16_to_f32(0xfc00) == -INFINITY);
    assert_true(qc_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    assert_true(f32_bits(qc_f16_to_f32(0x8000)) == 0x80000000u);

    /* every f16 pattern: f16 -> f32 -> f16 is exact (NaN stays NaN) */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = qc_f16_to_f32((uint16_t)h);
        uint16_t back = qc_f32_to_f16(f);
        if (f16_is_nan((uint16_t)h))
            assert_true(isnan(f) && f16_is_nan(back));
        else
            assert_int_equal(back, h);
    }

#ifdef __FLT16_MAX__
    /* The compiler's _Float16 (IEEE binary16, round to nearest even) as an
     * independent reference: every f16 value, and a spread of f32 patterns
     * that covers every exponent and many mantissas of each. */
    for (uint32_t h = 0; h < 65536; h++) {
        _Float16 x;
        uint16_t hh = (uint16_t)h;
        memcpy(&x, &hh, 2);
        float want = (float)x, got = qc_f16_to_f32(hh);
        if (isnan(want))
            assert_true(isnan(got));
        else
            assert_true(f32_bits(got) == f32_bits(want));
    }
    for (uint64_t u = 0; u <= 0xffffffffull; u += 4099) {
        float f = bits_f32((uint32_t)u);
        _Float16 x = (_Float16)f;
        uint16_t want;
        memcpy(&want, &x, 2);
        uint16_t got = qc_f32_to_f16(f);
        if (isnan(f))
            assert_true(f16_is_nan(got));
        else if (got != want) {
            printf("f32 0x%08x -> f16 0x%04x, want 0x%04x\n", (unsigned)u, got, want);
            fail();
        }
    }
#endif

    /* the array forms agree with the scalar ones */
    float src[5] = {1.0f, -3.5f, 65520.0f, ldexpf(1.0f, -24), 0.1f};
    uint16_t h5[5];
    float back5[5];
    qc_f32_to_f16_n(h5, src, 5);
    qc_f16_to_f32_n(back5, h5, 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(h5[i], qc_f32_to_f16(src[i]));
        assert_true(f32_bits(back5[i]) == f32_bits(qc_f16_to_f32(h5[i])));
    }
}

/* ---- bf16 ---------------------------------------------------------------------- */

/* Nearest bf16 by brute force: the two candidates that bracket f, ties to
 * the even mantissa. */
static uint16_t bf16_ref(float f) {
    uint32_t u = f32_bits(f);
    uint16_t lo = (uint16_t)(u >> 16); /* truncation: toward zero */
    if ((u & 0xffffu) == 0) return lo;
    uint16_t hi = (uint16_t)(lo + 1);  /* next away from zero (may be inf) */
    double dlo = fabs((double)f - (double)qc_bf16_to_f32(lo));
    double dhi = fabs((double)qc_bf16_to_f32(hi) - (double)f);
    if ((hi & 0x7fffu) == 0x7f80u) dhi = ldexp(1.0, 128) - fabs((double)f); /* inf counts as 2^128 */
    if (dlo < dhi) return lo;
    if (dhi < dlo) return hi;
    return (lo & 1u) ? hi : lo;
}

static void test_half_bf16(void **state) {
    (void)state;
    assert_int_equal(qc_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(qc_f32_to_bf16(-2.0f), 0xc000);
    assert_int_equal(qc_f32_to_bf16(-0.0f), 0x8000);
    assert_int_equal(qc_f32_to_bf16(INFINITY), 0x7f80);
    /* ties to even (ulp of 1 is 2^-7) */
    assert_int_equal(qc_f32_to_bf16(bits_f32(0x3f808000u)), 0x3f80); /* 1 + 2^-8: tie, even below */
    assert_int_equal(qc_f32_to_bf16(bits_f32(0x3f818000u)), 0x3f82); /* tie, even above */
    assert_int_equal(qc_f32_to_bf16(bits_f32(0x3f808001u)), 0x3f81);
    assert_int_equal(qc_f32_to_bf16(bits_f32(0x3f807fffu)), 0x3f80);
    assert_int_equal(qc_f32_to_bf16(bits_f32(0x7f7fffffu)), 0x7f80); /* FLT_MAX rounds to inf */
    assert_int_equal(qc_f32_to_bf16(bits_f32(0x00008000u)), 0x0000); /* subnormal tie */
    assert_int_equal(qc_f32_to_bf16(bits_f32(0x00018000u)), 0x0002);
    /* NaN stays NaN, including payloads that rounding would carry into inf */
    assert_true(bf16_is_nan(qc_f32_to_bf16(NAN)));
    assert_true(bf16_is_nan(qc_f32_to_bf16(bits_f32(0x7f800001u))));
    assert_true(bf16_is_nan(qc_f32_to_bf16(bits_f32(0x7fffffffu))));
    assert_true(bf16_is_nan(qc_f32_to_bf16(bits_f32(0xff800001u))));
    assert_true(qc_f32_to_bf16(bits_f32(0xff800001u)) & 0x8000u);
    assert_true(f32_bits(qc_bf16_to_f32(0x3f80)) == 0x3f800000u);

    /* every bf16 pattern round-trips exactly (NaN stays NaN) */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = qc_bf16_to_f32((uint16_t)h);
        uint16_t back = qc_f32_to_bf16(f);
        if (bf16_is_nan((uint16_t)h))
            assert_true(isnan(f) && bf16_is_nan(back));
        else
            assert_int_equal(back, h);
    }
    /* a spread of f32 patterns against the brute-force nearest */
    for (uint64_t u = 0; u <= 0xffffffffull; u += 4099) {
        float f = bits_f32((uint32_t)u);
        uint16_t got = qc_f32_to_bf16(f);
        if (isnan(f)) {
            assert_true(bf16_is_nan(got));
        } else if (got != bf16_ref(f)) {
            printf("f32 0x%08x -> bf16 0x%04x, want 0x%04x\n", (unsigned)u, got, bf16_ref(f));
            fail();
        }
    }

    float src[3] = {1.0f, 3.14159f, -1e-3f};
    uint16_t h3[3];
    float back3[3];
    qc_f32_to_bf16_n(h3, src, 3);
    qc_bf16_to_f32_n(back3, h3, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(h3[i], qc_f32_to_bf16(src[i]));
        assert_true(f32_bits(back3[i]) == f32_bits(qc_bf16_to_f32(h3[i])));
    }
}

/* ---- tensor table ---------------------------------------------------------------- */

typedef struct toy_model {
    float *w;  /* (3, 5) */
    int other; /* not a tensor: bind must leave it alone */
    float *b;  /* (7) */
    float *s;  /* scalar */
    float *u;  /* (2, 2, 2) */
} toy_model;

static void add_toy(qc_table *tab) {
    const int64_t sw[2] = {3, 5}, sb[1] = {7}, su[3] = {2, 2, 2}, sn[1] = {10000}, sk[1] = {33};
    assert_int_equal(qc_table_add(tab, "w", 2, sw, QC_INIT_NORMAL, 0.02f, 0, offsetof(toy_model, w)), QIAO_OK);
    assert_int_equal(qc_table_add(tab, "b", 1, sb, QC_INIT_ZEROS, 0.0f, QC_NO_DECAY, offsetof(toy_model, b)),
                     QIAO_OK);
    assert_int_equal(qc_table_add(tab, "s", 0, NULL, QC_INIT_CONST, 2.5f, QC_NO_DECAY, offsetof(toy_model, s)),
                     QIAO_OK);
    assert_int_equal(qc_table_add(tab, "u", 3, su, QC_INIT_UNIFORM, 0.1f, 0, offsetof(toy_model, u)), QIAO_OK);
    assert_int_equal(qc_table_add(tab, "n", 1, sn, QC_INIT_NORMAL, 0.5f, 0, QC_NO_FIELD), QIAO_OK);
    assert_int_equal(qc_table_add(tab, "one", 1, sk, QC_INIT_ONES, 0.0f, QC_FROZEN, QC_NO_FIELD), QIAO_OK);
}

static void test_tensor_table(void **state) {
    (void)state;
    qc_table tab;
    qc_table_init_empty(&tab);
    add_toy(&tab);
    assert_int_equal(tab.n, 6);

    /* rejected: duplicate name, bad shapes, over-long name; the table is unchanged */
    const int64_t sh2[1] = {2}, neg[1] = {-1};
    size_t total = tab.total;
    assert_int_equal(qc_table_add(&tab, "w", 1, sh2, QC_INIT_ZEROS, 0.0f, 0, QC_NO_FIELD), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qc_table_add(&tab, "neg", 1, neg, QC_INIT_ZEROS, 0.0f, 0, QC_NO_FIELD),
                     QIAO_ERR_INVALID_ARGUMENT);
    int64_t many[QC_MAX_DIMS + 1];
    for (int i = 0; i <= QC_MAX_DIMS; i++) many[i] = 1;
    assert_int_equal(qc_table_add(&tab, "deep", QC_MAX_DIMS + 1, many, QC_INIT_ZEROS, 0.0f, 0, QC_NO_FIELD),
                     QIAO_ERR_INVALID_ARGUMENT);
    char longname[QC_NAME_MAX + 1];
    memset(longname, 'x', QC_NAME_MAX);
    longname[QC_NAME_MAX] = 0;
    assert_int_equal(qc_table_add(&tab, longname, 1, sh2, QC_INIT_ZEROS, 0.0f, 0, QC_NO_FIELD),
                     QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(tab.n, 6);
    assert_true(tab.total == total);

    /* lookup, sizes, aligned non-overlapping offsets */
    assert_int_equal(qc_table_find(&tab, "u"), 3);
    assert_int_equal(qc_table_find(&tab, "nope"), -1);
    assert_int_equal(tab.t[0].numel, 15);
    assert_int_equal(tab.t[2].numel, 1); /* 0-d scalar */
    assert_int_equal(tab.t[3].numel, 8);
    size_t end = 0;
    for (size_t i = 0; i < tab.n; i++) {
        assert_int_equal(tab.t[i].offset % QC_ALIGN_FLOATS, 0);
        assert_true(tab.t[i].offset >= end);
        end = tab.t[i].offset + (size_t)tab.t[i].numel;
    }
    assert_true(tab.total >= end && tab.total % QC_ALIGN_FLOATS == 0);

    /* arena: 64-byte aligned and zeroed */
    qc_arena ar;
    assert_int_equal(qc_arena_alloc(&ar, tab.total), QIAO_OK);
    assert_int_equal((uintptr_t)ar.base % 64, 0);
    for (size_t i = 0; i < ar.n; i++) assert_true(ar.base[i] == 0.0f);

    /* bind: each bound field points at its tensor in the arena */
    toy_model m;
    memset(&m, 0, sizeof m);
    m.other = 77;
    qc_table_bind(&tab, ar.base, &m);
    assert_ptr_equal(m.w, ar.base + tab.t[0].offset);
    assert_ptr_equal(m.b, ar.base + tab.t[1].offset);
    assert_ptr_equal(m.s, ar.base + tab.t[2].offset);
    assert_ptr_equal(m.u, ar.base + tab.t[3].offset);
    assert_int_equal(m.other, 77);

    /* init: each initializer, deterministic per seed */
    qc_table_init(&tab, ar.base, 123);
    for (int i = 0; i < 7; i++) assert_true(m.b[i] == 0.0f);
    assert_true(*m.s == 2.5f);
    for (int i = 0; i < 8; i++) assert_true(m.u[i] >= -0.1f && m.u[i] <= 0.1f);
    const float *ones = ar.base + tab.t[5].offset;
    for (int i = 0; i < 33; i++) assert_true(ones[i] == 1.0f);
    const float *nrm = ar.base + tab.t[4].offset;
    double s = 0.0, s2 = 0.0;
    for (int i = 0; i < 10000; i++) s += nrm[i], s2 += (double)nrm[i] * nrm[i];
    assert_true(fabs(s / 10000) < 0.02);                 /* 4 sigma of 0.005 */
    assert_true(fabs(sqrt(s2 / 10000) - 0.5) < 0.02);     /* std = init_scale */
    for (size_t i = 0; i < tab.n; i++) /* padding between tensors stays zero */
        for (size_t k = tab.t[i].offset + (size_t)tab.t[i].numel;
             k < (i + 1 < tab.n ? tab.t[i + 1].offset : tab.total); k++)
            assert_true(ar.base[k] == 0.0f);

    qc_arena ar2;
    assert_int_equal(qc_arena_alloc(&ar2, tab.total), QIAO_OK);
    qc_table_init(&tab, ar2.base, 123);
    assert_memory_equal(ar.base, ar2.base, tab.total * sizeof(float));
    qc_table_init(&tab, ar2.base, 124);
    assert_memory_not_equal(ar.base + tab.t[0].offset, ar2.base + tab.t[0].offset, 15 * sizeof(float));

    /* per-tensor streams: two tensors with the same init differ, and adding a
     * tensor to the table does not change the others' initial values */
    assert_memory_not_equal(m.w, nrm, 15 * sizeof(float));
    qc_table tab2;
    qc_table_init_empty(&tab2);
    add_toy(&tab2);
    const int64_t sx[1] = {100};
    assert_int_equal(qc_table_add(&tab2, "extra", 1, sx, QC_INIT_NORMAL, 1.0f, 0, QC_NO_FIELD), QIAO_OK);
    qc_arena ar3;
    assert_int_equal(qc_arena_alloc(&ar3, tab2.total), QIAO_OK);
    qc_table_init(&tab2, ar3.base, 123);
    assert_memory_equal(ar.base, ar3.base, tab.total * sizeof(float));

    /* zero and free */
    qc_arena_zero(&ar);
    for (size_t i = 0; i < ar.n; i++) assert_true(ar.base[i] == 0.0f);
    qc_arena_free(&ar);
    assert_null(ar.base);
    assert_true(ar.n == 0);
    qc_arena_free(&ar); /* twice is harmless */

    /* an impossible size is refused, not wrapped */
    qc_arena huge;
    assert_int_equal(qc_arena_alloc(&huge, SIZE_MAX / 2), QIAO_ERR_TOO_LARGE);
    assert_null(huge.base);

    qc_arena_free(&ar2), qc_arena_free(&ar3);
    qc_table_free(&tab), qc_table_free(&tab2);
    assert_null(tab.t);
}

/* The fixed position code: the values the formula gives, every place told
 * apart, a token's scale, the leftover columns 0, and the table initializer
 * calls it. */
static void test_init_sincos(void **state) {
    (void)state;
    enum { G = 8, N = G * G, D = 256, K = D / 4 };
    static float pe[N * D];
    qc_init_sincos(pe, N, D, 1.0f);
    double s2 = 0.0;
    for (int t = 0; t < N; t++)
        for (int k = 0; k < K; k++) {
            const double om = pow(100.0, -(double)k / K), y = t / G, x = t % G;
            const float *r = pe + t * D;
            assert_true(fabs(r[k] - sin(y * om)) < 1e-6 && fabs(r[K + k] - cos(y * om)) < 1e-6);
            assert_true(fabs(r[2 * K + k] - sin(x * om)) < 1e-6 && fabs(r[3 * K + k] - cos(x * om)) < 1e-6);
        }
    for (int i = 0; i < N * D; i++) s2 += (double)pe[i] * pe[i];
    assert_true(fabs(sqrt(s2 / (N * D)) - sqrt(0.5)) < 1e-3);
    /* places: the nearest two rows are still apart by more than a tenth of a row's norm */
    for (int a = 0; a < N; a++)
        for (int b = a + 1; b < N; b++) {
            double d2 = 0.0;
            for (int c = 0; c < D; c++) d2 += (double)(pe[a * D + c] - pe[b * D + c]) * (pe[a * D + c] - pe[b * D + c]);
            assert_true(sqrt(d2) > 0.1 * sqrt((double)D / 2));
        }

    /* not a square: a line over all columns; d = 7 leaves column 6 at 0 */
    float line[5 * 7];
    for (int i = 0; i < 5 * 7; i++) line[i] = 9.0f;
    qc_init_sincos(line, 5, 7, 2.0f);
    for (int t = 0; t < 5; t++) {
        for (int k = 0; k < 3; k++) {
            const double om = pow(100.0, -(double)k / 3);
            assert_true(fabs(line[t * 7 + k] - 2.0 * sin(t * om)) < 1e-6);
            assert_true(fabs(line[t * 7 + 3 + k] - 2.0 * cos(t * om)) < 1e-6);
        }
        assert_true(line[t * 7 + 6] == 0.0f);
    }

    /* through the table, whatever the seed */
    qc_table tab;
    qc_table_init_empty(&tab);
    const int64_t sp[2] = {N, D};
    assert_int_equal(qc_table_add(&tab, "pos", 2, sp, QC_INIT_SINCOS, 0.5f, 0, QC_NO_FIELD), QIAO_OK);
    qc_arena ar;
    assert_int_equal(qc_arena_alloc(&ar, tab.total), QIAO_OK);
    qc_table_init(&tab, ar.base, 7);
    for (int i = 0; i < N * D; i++) assert_true(ar.base[i] == 0.5f * pe[i]);
    qc_arena_free(&ar);
    qc_table_free(&tab);
}

/* ctest passes these names (tests/core.cmake) as the case filter */
#define CASE(name) {#name, test_##name, NULL, NULL, NULL}
static const struct CMUnitTest tests[] = {
    CASE(rng_determinism),
    CASE(half_f16),
    CASE(half_bf16),
    CASE(tensor_table),
    CASE(init_sincos),
};

QT_MAIN(tests)
