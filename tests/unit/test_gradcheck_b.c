/* Gradient checks for conv1d, pooling, gated mix, cross-entropy and
 * InfoNCE: every input and parameter gradient against central differences
 * (qt_gradcheck, h = 1e-3, atol = 1e-3, rtol = 1e-2 as testutil.h explains),
 * each forward against a naive double-precision reference written here, and
 * 1-vs-2-thread bitwise equality for the threaded kernels. */
#include <float.h>
#include <string.h>

#include "testutil.h"

#include "nn/nn.h"

#define GC_H 1e-3f
#define GC_ATOL 1e-3
#define GC_RTOL 1e-2
#define GC_MAX 400

static float *dup_floats(const float *x, int64_t n) {
    float *p = qt_alloc(n);
    memcpy(p, x, (size_t)n * sizeof *p);
    return p;
}

static void assert_same(const float *a, const float *b, int64_t n, const char *what) {
    if (memcmp(a, b, (size_t)n * sizeof *a) != 0) {
        for (int64_t i = 0; i < n; i++)
            if (memcmp(&a[i], &b[i], sizeof *a) != 0) {
                printf("%s: 1 vs 2 threads differ at %lld: %.9g vs %.9g\n", what, (long long)i, a[i], b[i]);
                break;
            }
        fail_msg("%s depends on the thread count", what);
    }
}

/* |got - ref| <= atol + rtol |ref| elementwise. */
static int check_close(const char *what, const float *got, const double *ref, int64_t n, double atol,
                       double rtol) {
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - ref[i]);
        if (!(err <= atol + rtol * fabs(ref[i]))) {
            if (!bad) printf("%s: at %lld got %.9g want %.9g\n", what, (long long)i, got[i], ref[i]);
            bad++;
        }
    }
    return bad;
}

/* ---- conv1d ------------------------------------------------------------------ */

typedef struct conv_case {
    qb_exec ex;
    int64_t B, T, C, OC, K, stride, pad, Tout;
    float *inp, *w, *b, *out, *R, *dinp, *dw, *db;
} conv_case;

static void conv_setup(conv_case *c, int64_t B, int64_t T, int64_t C, int64_t OC, int64_t K, int64_t stride,
                       int64_t pad, uint64_t seed) {
    memset(c, 0, sizeof *c);
    qb_exec_cpu(&c->ex, 2);
    c->B = B, c->T = T, c->C = C, c->OC = OC, c->K = K, c->stride = stride, c->pad = pad;
    c->Tout = nn_conv1d_out_len(T, K, stride, pad);
    int64_t nin = B * T * C, nw = OC * C * K, nout = B * c->Tout * OC;
    c->inp = qt_alloc(nin);
    c->w = qt_alloc(nw);
    c->b = qt_alloc(OC);
    c->out = qt_alloc(nout);
    c->R = qt_alloc(nout);
    c->dinp = qt_alloc(nin);
    c->dw = qt_alloc(nw);
    c->db = qt_alloc(OC);
    /* w ~ N(0, 1/(C K)) as a trained layer's, so outputs are O(1): the
     * gradcheck noise of a weight, which moves every output, grows with
     * their magnitude (testutil.h). */
    qt_fill_normal(c->inp, nin, 1.0f, seed);
    qt_fill_normal(c->w, nw, 1.0f / sqrtf((float)(C * K)), seed + 1);
    qt_fill_normal(c->b, OC, 0.1f, seed + 2);
    qt_fill_normal(c->R, nout, 1.0f, seed + 3);
}

static void conv_free(conv_case *c) {
    free(c->inp), free(c->w), free(c->b), free(c->out), free(c->R), free(c->dinp), free(c->dw), free(c->db);
}

static void conv_fwd(void *p) {
    conv_case *c = p;
    nn_conv1d_forward(&c->ex, c->out, c->inp, c->w, c->b, c->B, c->T, c->C, c->OC, c->K, c->stride, c->pad);
}

static void conv_bwd(conv_case *c) {
    memset(c->dinp, 0, (size_t)(c->B * c->T * c->C) * sizeof(float));
    memset(c->dw, 0, (size_t)(c->OC * c->C * c->K) * sizeof(float));
    memset(c->db, 0, (size_t)c->OC * sizeof(float));
    nn_conv1d_backward(&c->ex, c->dinp, c->dw, c->db, c->R, c->inp, c->w, c->B, c->T, c->C, c->OC, c->K,
                       c->stride, c->pad);
}

/* Direct double-precision loops over the PyTorch definition
 * out[b, t, o] = bias[o] + sum_{c,k} w[o, c, k] inp[b, t*stride - pad + k, c],
 * and its backward with dout = R. mag_* receive the sum of |terms| of each
 * element, which bounds the float rounding error of any summation order. */
static void conv_reference(const conv_case *c, double *out, double *mag_out, double *dinp, double *mag_dinp,
                           double *dw, double *mag_dw) {
    const int64_t B = c->B, T = c->T, C = c->C, OC = c->OC, K = c->K, Tout = c->Tout;
    memset(dinp, 0, (size_t)(B * T * C) * sizeof(double));
    memset(mag_dinp, 0, (size_t)(B * T * C) * sizeof(double));
    memset(dw, 0, (size_t)(OC * C * K) * sizeof(double));
    memset(mag_dw, 0, (size_t)(OC * C * K) * sizeof(double));
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < Tout; t++)
            for (int64_t o = 0; o < OC; o++) {
                double acc = c->b[o], mag = fabs(c->b[o]);
                double g = c->R[(b * Tout + t) * OC + o];
                for (int64_t ch = 0; ch < C; ch++)
                    for (int64_t k = 0; k < K; k++) {
                        int64_t j = t * c->stride - c->pad + k;
                        if (j < 0 || j >= T) continue;
                        double x = c->inp[(b * T + j) * C + ch], wv = c->w[(o * C + ch) * K + k];
                        acc += wv * x;
                        mag += fabs(wv * x);
                        dinp[(b * T + j) * C + ch] += g * wv;
                        mag_dinp[(b * T + j) * C + ch] += fabs(g * wv);
                        dw[(o * C + ch) * K + k] += g * x;
                        mag_dw[(o * C + ch) * K + k] += fabs(g * x);
                    }
                out[(b * Tout + t) * OC + o] = acc;
                mag_out[(b * Tout + t) * OC + o] = mag;
            }
}

/* float results within 1e-5 of the magnitude of their terms: well above
 * f32 rounding of these sums (~sqrt(n) * 6e-8), well below one missing or
 * doubled term. */
static int check_mag(const char *what, const float *got, const double *ref, const double *mag, int64_t n) {
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - ref[i]);
        if (!(err <= 1e-5 * mag[i] + 1e-6)) {
            if (!bad)
                printf("%s: at %lld got %.9g want %.9g (mag %.3g)\n", what, (long long)i, got[i], ref[i], mag[i]);
            bad++;
        }
    }
    return bad;
}

static int conv_check_reference(conv_case *c) {
    const int64_t nin = c->B * c->T * c->C, nw = c->OC * c->C * c->K, nout = c->B * c->Tout * c->OC;
    double *out = calloc((size_t)nout, sizeof(double)), *mo = calloc((size_t)nout, sizeof(double));
    double *di = calloc((size_t)nin, sizeof(double)), *mi = calloc((size_t)nin, sizeof(double));
    double *dw = calloc((size_t)nw, sizeof(double)), *mw = calloc((size_t)nw, sizeof(double));
    double *db = calloc((size_t)c->OC, sizeof(double)), *mb = calloc((size_t)c->OC, sizeof(double));
    assert_true(out && mo && di && mi && dw && mw && db && mb);
    conv_reference(c, out, mo, di, mi, dw, mw);
    for (int64_t r = 0; r < c->B * c->Tout; r++)
        for (int64_t o = 0; o < c->OC; o++) {
            db[o] += c->R[r * c->OC + o];
            mb[o] += fabs(c->R[r * c->OC + o]);
        }
    conv_fwd(c);
    conv_bwd(c);
    int bad = check_mag("conv1d out", c->out, out, mo, nout) + check_mag("conv1d dinp", c->dinp, di, mi, nin) +
              check_mag("conv1d dw", c->dw, dw, mw, nw) + check_mag("conv1d db", c->db, db, mb, c->OC);
    free(out), free(mo), free(di), free(mi), free(dw), free(mw), free(db), free(mb);
    return bad;
}

static int conv_gradcheck(int64_t B, int64_t T, int64_t C, int64_t OC, int64_t K, int64_t stride, int64_t pad,
                          uint64_t seed) {
    conv_case c;
    conv_setup(&c, B, T, C, OC, K, stride, pad, seed);
    int bad = conv_check_reference(&c);
    const int64_t nout = B * c.Tout * OC;
    bad += qt_gradcheck("conv1d dinp", conv_fwd, &c, c.out, c.R, nout, c.inp, c.dinp, B * T * C, GC_H, GC_ATOL,
                        GC_RTOL, GC_MAX);
    bad += qt_gradcheck("conv1d dw", conv_fwd, &c, c.out, c.R, nout, c.w, c.dw, OC * C * K, GC_H, GC_ATOL,
                        GC_RTOL, GC_MAX);
    bad += qt_gradcheck("conv1d db", conv_fwd, &c, c.out, c.R, nout, c.b, c.db, OC, GC_H, GC_ATOL, GC_RTOL,
                        GC_MAX);
    conv_free(&c);
    return bad;
}

/* Large enough for several im2col chunks (chunks cross sequence boundaries)
 * and for OpenMP/OpenBLAS to use both threads: checked against the double
 * reference, then 1 vs 2 threads bitwise. */
static int conv_large(int64_t B, int64_t T, int64_t C, int64_t OC, int64_t K, int64_t stride, int64_t pad,
                      uint64_t seed) {
    conv_case c;
    conv_setup(&c, B, T, C, OC, K, stride, pad, seed);
    int bad = conv_check_reference(&c);
    const int64_t nin = B * T * C, nw = OC * C * K, nout = B * c.Tout * OC;
    float *out2 = dup_floats(c.out, nout), *di2 = dup_floats(c.dinp, nin), *dw2 = dup_floats(c.dw, nw),
          *db2 = dup_floats(c.db, OC);
    qb_exec_cpu(&c.ex, 1);
    conv_fwd(&c);
    conv_bwd(&c);
    assert_same(c.out, out2, nout, "conv1d out");
    assert_same(c.dinp, di2, nin, "conv1d dinp");
    assert_same(c.dw, dw2, nw, "conv1d dw");
    assert_same(c.db, db2, OC, "conv1d db");
    free(out2), free(di2), free(dw2), free(db2);
    conv_free(&c);
    return bad;
}

static void test_conv1d(void **state) {
    (void)state;
    int bad = 0;
    /* the kernel takes its direct loop below 4096 multiply-adds, im2col + GEMM above */
    bad += conv_gradcheck(2, 7, 3, 4, 3, 1, 0, 11);   /* direct loop */
    bad += conv_gradcheck(1, 12, 16, 6, 5, 1, 2, 12); /* im2col + GEMM */
    bad += conv_gradcheck(1, 4, 2, 3, 4, 1, 0, 13);   /* Tout = 1 */
    bad += conv_large(3, 1500, 16, 24, 5, 1, 2, 14);  /* 2 chunks */
    assert_int_equal(bad, 0);
}

static void test_conv1d_stride2_pad(void **state) {
    (void)state;
    int bad = 0;
    bad += conv_gradcheck(2, 8, 3, 4, 4, 2, 2, 21);    /* direct */
    bad += conv_gradcheck(2, 17, 10, 6, 5, 2, 3, 22);  /* GEMM */
    bad += conv_gradcheck(1, 5, 2, 3, 3, 3, 4, 23);    /* pad > K: whole windows of padding, direct */
    bad += conv_gradcheck(2, 20, 12, 8, 3, 3, 4, 24);  /* the same on the GEMM path */
    bad += conv_gradcheck(2, 9, 1, 6, 4, 4, 0, 25);    /* C = 1, stride = K (audio stem shape) */
    bad += conv_large(2, 4001, 12, 16, 7, 2, 3, 26);   /* 2 chunks */
    bad += conv_large(2, 16000, 1, 32, 10, 5, 3, 27);  /* raw-waveform stem */
    assert_int_equal(bad, 0);
}

/* ---- pooling -------------------------------------------------------------------- */

typedef struct pool_case {
    qb_exec ex;
    int64_t B, T, C;
    bool max;
    const uint8_t *mask;
    float *inp, *out, *R, *dinp;
    int32_t *argmax;
} pool_case;

static void pool_fwd(void *p) {
    pool_case *c = p;
    if (c->max)
        nn_pool_max_forward(&c->ex, c->out, c->argmax, c->inp, c->mask, c->B, c->T, c->C);
    else
        nn_pool_mean_forward(&c->ex, c->out, c->inp, c->mask, c->B, c->T, c->C);
}

static void pool_bwd(pool_case *c) {
    memset(c->dinp, 0, (size_t)(c->B * c->T * c->C) * sizeof(float));
    if (c->max)
        nn_pool_max_backward(&c->ex, c->dinp, c->R, c->argmax, c->B, c->T, c->C);
    else
        nn_pool_mean_backward(&c->ex, c->dinp, c->R, c->mask, c->B, c->T, c->C);
}

static void pool_alloc(pool_case *c, int64_t B, int64_t T, int64_t C, bool max, const uint8_t *mask) {
    memset(c, 0, sizeof *c);
    qb_exec_cpu(&c->ex, 2);
    c->B = B, c->T = T, c->C = C, c->max = max, c->mask = mask;
    c->inp = qt_alloc(B * T * C);
    c->out = qt_alloc(B * C);
    c->R = qt_alloc(B * C);
    c->dinp = qt_alloc(B * T * C);
    c->argmax = calloc((size_t)(B * C), sizeof(int32_t));
    assert_non_null(c->argmax);
    qt_fill_normal(c->R, B * C, 1.0f, 99);
}

static void pool_free(pool_case *c) { free(c->inp), free(c->out), free(c->R), free(c->dinp), free(c->argmax); }

/* Distinct values spaced 0.05 apart in random order: no ties, and no two
 * within 2h of each other, so the argmax is stable under the perturbation. */
static void fill_distinct(float *x, int64_t n, uint64_t seed) {
    qc_rng r;
    qc_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) x[i] = 0.05f * (float)i - 0.025f * (float)n;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)qc_rng_below(&r, (uint64_t)i + 1);
        float t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
}

/* Reference pooling in double; returns mismatches. */
static int pool_check_forward(const pool_case *c) {
    int bad = 0;
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t ch = 0; ch < c->C; ch++) {
            double acc = 0.0, best = -INFINITY;
            int64_t n = 0, arg = -1;
            for (int64_t t = 0; t < c->T; t++) {
                if (c->mask && !c->mask[b * c->T + t]) continue;
                double x = c->inp[(b * c->T + t) * c->C + ch];
                acc += x;
                n++;
                if (x > best) best = x, arg = t;
            }
            double want = c->max ? (n ? best : 0.0) : (n ? acc / (double)n : 0.0);
            float got = c->out[b * c->C + ch];
            if (fabs(got - want) > 1e-6 + 1e-6 * fabs(want)) {
                if (!bad) printf("pool b=%lld c=%lld: got %.9g want %.9g\n", (long long)b, (long long)ch, got, want);
                bad++;
            }
            if (c->max && c->argmax[b * c->C + ch] != arg) {
                if (!bad) printf("pool argmax b=%lld c=%lld: got %d want %lld\n", (long long)b, (long long)ch,
                                 c->argmax[b * c->C + ch], (long long)arg);
                bad++;
            }
        }
    return bad;
}

static int pool_run(bool max) {
    /* b0 all real, b1 partial, b2 no real token, b3 only the last, b4 two. */
    enum { PB = 5, PT = 6, PC = 5 };
    static const uint8_t mask[PB * PT] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0,
                                          0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 1, 0};
    int bad = 0;
    for (int m = 0; m < 2; m++) {
        pool_case c;
        pool_alloc(&c, PB, PT, PC, max, m ? mask : NULL);
        if (max)
            fill_distinct(c.inp, PB * PT * PC, 7);
        else
            qt_fill_normal(c.inp, PB * PT * PC, 1.0f, 7);
        pool_fwd(&c);
        bad += pool_check_forward(&c);
        pool_bwd(&c);
        bad += qt_gradcheck(max ? "pool_max dinp" : "pool_mean dinp", pool_fwd, &c, c.out, c.R, PB * PC, c.inp,
                            c.dinp, PB * PT * PC, GC_H, GC_ATOL, GC_RTOL, GC_MAX);
        if (m) {
            /* the empty sequence: zero output, argmax -1, no gradient anywhere in it */
            for (int64_t ch = 0; ch < PC; ch++) {
                assert_true(c.out[2 * PC + ch] == 0.0f);
                if (max) assert_int_equal(c.argmax[2 * PC + ch], -1);
            }
            for (int64_t i = 2 * PT * PC; i < 3 * PT * PC; i++) assert_true(c.dinp[i] == 0.0f);
            /* padded positions get no gradient */
            for (int64_t i = 0; i < PB * PT; i++)
                if (!mask[i])
                    for (int64_t ch = 0; ch < PC; ch++) assert_true(c.dinp[i * PC + ch] == 0.0f);
        }
        pool_free(&c);
    }

    /* threads: large enough for the OpenMP team to run */
    enum { B = 16, T = 200, C = 64 };
    uint8_t *bigmask = malloc(B * T);
    assert_non_null(bigmask);
    for (int64_t i = 0; i < B * T; i++) bigmask[i] = (uint8_t)((i * 7 + i / T) % 5 != 0);
    pool_case c;
    pool_alloc(&c, B, T, C, max, bigmask);
    qt_fill_normal(c.inp, B * T * C, 1.0f, 8);
    pool_fwd(&c);
    pool_bwd(&c);
    bad += pool_check_forward(&c);
    float *out2 = dup_floats(c.out, B * C), *d2 = dup_floats(c.dinp, B * T * C);
    qb_exec_cpu(&c.ex, 1);
    pool_fwd(&c);
    pool_bwd(&c);
    assert_same(c.out, out2, B * C, "pool out");
    assert_same(c.dinp, d2, B * T * C, "pool dinp");
    free(out2), free(d2), free(bigmask);
    pool_free(&c);
    return bad;
}

static void test_pool_mean(void **state) {
    (void)state;
    assert_int_equal(pool_run(false), 0);
}

static void test_pool_max(void **state) {
    (void)state;
    assert_int_equal(pool_run(true), 0);
}

/* ---- gated mix -------------------------------------------------------------- */

typedef struct gate_case {
    qb_exec ex;
    int64_t N, C;
    float *a, *b, *w, *c, *out, *g, *R, *da, *db, *dw, *dc, *scratch;
} gate_case;

static void gate_fwd(void *p) {
    gate_case *k = p;
    nn_gate_forward(&k->ex, k->out, k->g, k->a, k->b, k->w, k->c, k->N, k->C);
}

static void gate_bwd(gate_case *k) {
    memset(k->da, 0, (size_t)(k->N * k->C) * sizeof(float));
    memset(k->db, 0, (size_t)(k->N * k->C) * sizeof(float));
    memset(k->dw, 0, (size_t)(2 * k->C * k->C) * sizeof(float));
    memset(k->dc, 0, (size_t)k->C * sizeof(float));
    nn_gate_backward(&k->ex, k->da, k->db, k->dw, k->dc, k->scratch, k->R, k->a, k->b, k->g, k->w, k->N, k->C);
}

static void gate_setup(gate_case *k, int64_t N, int64_t C, uint64_t seed) {
    memset(k, 0, sizeof *k);
    qb_exec_cpu(&k->ex, 2);
    k->N = N, k->C = C;
    int64_t n = N * C;
    k->a = qt_alloc(n), k->b = qt_alloc(n), k->w = qt_alloc(2 * C * C), k->c = qt_alloc(C);
    k->out = qt_alloc(n), k->g = qt_alloc(n), k->R = qt_alloc(n), k->scratch = qt_alloc(n);
    k->da = qt_alloc(n), k->db = qt_alloc(n), k->dw = qt_alloc(2 * C * C), k->dc = qt_alloc(C);
    qt_fill_normal(k->a, n, 1.0f, seed);
    qt_fill_normal(k->b, n, 1.0f, seed + 1);
    qt_fill_normal(k->w, 2 * C * C, 0.5f, seed + 2);
    qt_fill_normal(k->c, C, 0.5f, seed + 3);
    qt_fill_normal(k->R, n, 1.0f, seed + 4);
}

static void gate_free(gate_case *k) {
    free(k->a), free(k->b), free(k->w), free(k->c), free(k->out), free(k->g), free(k->R), free(k->scratch);
    free(k->da), free(k->db), free(k->dw), free(k->dc);
}

static void test_gate(void **state) {
    (void)state;
    gate_case k;
    const int64_t N = 5, C = 4, n = N * C;
    gate_setup(&k, N, C, 31);
    gate_fwd(&k);
    /* reference: g = sigmoid([a; b] W^T + c) with the concatenation done explicitly */
    double *want = calloc((size_t)n, sizeof(double)), *wantg = calloc((size_t)n, sizeof(double));
    assert_true(want && wantg);
    for (int64_t i = 0; i < N; i++)
        for (int64_t o = 0; o < C; o++) {
            double z = k.c[o];
            for (int64_t j = 0; j < 2 * C; j++) {
                double x = j < C ? k.a[i * C + j] : k.b[i * C + j - C];
                z += k.w[o * 2 * C + j] * x;
            }
            double g = 1.0 / (1.0 + exp(-z));
            wantg[i * C + o] = g;
            want[i * C + o] = g * k.a[i * C + o] + (1.0 - g) * k.b[i * C + o];
        }
    int bad = check_close("gate out", k.out, want, n, 1e-6, 1e-5) + check_close("gate g", k.g, wantg, n, 1e-6, 1e-5);
    free(want), free(wantg);
    gate_bwd(&k);
    bad += qt_gradcheck("gate da", gate_fwd, &k, k.out, k.R, n, k.a, k.da, n, GC_H, GC_ATOL, GC_RTOL, GC_MAX);
    bad += qt_gradcheck("gate db", gate_fwd, &k, k.out, k.R, n, k.b, k.db, n, GC_H, GC_ATOL, GC_RTOL, GC_MAX);
    bad += qt_gradcheck("gate dw", gate_fwd, &k, k.out, k.R, n, k.w, k.dw, 2 * C * C, GC_H, GC_ATOL, GC_RTOL,
                        GC_MAX);
    bad += qt_gradcheck("gate dc", gate_fwd, &k, k.out, k.R, n, k.c, k.dc, C, GC_H, GC_ATOL, GC_RTOL, GC_MAX);
    gate_free(&k);
    assert_int_equal(bad, 0);

    /* threads: N * C above the kernels' OpenMP threshold; N and C (the GEMM
     * reductions) within OpenBLAS's thread-invariant range (see conv.c). */
    const int64_t N2 = 300, C2 = 128, n2 = N2 * C2;
    gate_setup(&k, N2, C2, 32);
    gate_fwd(&k);
    gate_bwd(&k);
    float *o2 = dup_floats(k.out, n2), *da2 = dup_floats(k.da, n2), *db2 = dup_floats(k.db, n2),
          *dw2 = dup_floats(k.dw, 2 * C2 * C2), *dc2 = dup_floats(k.dc, C2);
    qb_exec_cpu(&k.ex, 1);
    gate_fwd(&k);
    gate_bwd(&k);
    assert_same(k.out, o2, n2, "gate out");
    assert_same(k.da, da2, n2, "gate da");
    assert_same(k.db, db2, n2, "gate db");
    assert_same(k.dw, dw2, 2 * C2 * C2, "gate dw");
    assert_same(k.dc, dc2, C2, "gate dc");
    free(o2), free(da2), free(db2), free(dw2), free(dc2);
    gate_free(&k);
}

/* ---- cross-entropy --------------------------------------------------------------- */

typedef struct ce_case {
    qb_exec ex;
    int64_t N, V;
    float smoothing, dloss;
    int32_t ignore;
    float loss;
    float *logits, *losses, *probs, *dlogits;
    int32_t *targets;
} ce_case;

static void ce_fwd(void *p) {
    ce_case *k = p;
    nn_cross_entropy_forward(&k->ex, &k->loss, k->losses, k->probs, k->logits, k->targets, k->N, k->V,
                             k->smoothing, k->ignore);
}

static void ce_bwd(ce_case *k) {
    memset(k->dlogits, 0, (size_t)(k->N * k->V) * sizeof(float));
    nn_cross_entropy_backward(&k->ex, k->dlogits, k->dloss, k->probs, k->targets, k->N, k->V, k->smoothing,
                              k->ignore);
}

static void ce_setup(ce_case *k, int64_t N, int64_t V, float smoothing, int32_t ignore, uint64_t seed) {
    memset(k, 0, sizeof *k);
    qb_exec_cpu(&k->ex, 2);
    k->N = N, k->V = V, k->smoothing = smoothing, k->ignore = ignore, k->dloss = 1.3f;
    k->logits = qt_alloc(N * V), k->probs = qt_alloc(N * V), k->dlogits = qt_alloc(N * V);
    k->losses = qt_alloc(N);
    k->targets = calloc((size_t)N, sizeof(int32_t));
    assert_non_null(k->targets);
    qt_fill_normal(k->logits, N * V, 2.0f, seed);
    qc_rng r;
    qc_rng_seed(&r, seed + 1);
    for (int64_t i = 0; i < N; i++) k->targets[i] = (int32_t)qc_rng_below(&r, (uint64_t)V);
}

static void ce_free(ce_case *k) {
    free(k->logits), free(k->probs), free(k->dlogits), free(k->losses), free(k->targets);
}

/* Per-row loss sum_j q_j (lse - z_j) in double, lse by log-sum-exp. */
static double ce_row_ref(const float *z, int64_t V, int32_t t, float s) {
    double m = z[0];
    for (int64_t j = 1; j < V; j++) m = fmax(m, z[j]);
    double sum = 0.0;
    for (int64_t j = 0; j < V; j++) sum += exp((double)z[j] - m);
    double lse = m + log(sum), loss = 0.0;
    for (int64_t j = 0; j < V; j++) {
        double q = (double)s / (double)V + (j == t ? 1.0 - (double)s : 0.0);
        loss += q * (lse - z[j]);
    }
    return loss;
}

static int ce_check(ce_case *k) {
    int bad = 0;
    ce_fwd(k);
    double sum = 0.0;
    int64_t count = 0;
    for (int64_t i = 0; i < k->N; i++) {
        double want = 0.0;
        if (k->targets[i] != k->ignore) {
            want = ce_row_ref(k->logits + i * k->V, k->V, k->targets[i], k->smoothing);
            sum += want;
            count++;
        }
        bad += check_close("ce row loss", &k->losses[i], &want, 1, 1e-6, 1e-6);
        double ps = 0.0;
        for (int64_t j = 0; j < k->V; j++) ps += k->probs[i * k->V + j];
        double one = 1.0;
        bad += check_close("ce probs sum", (float[]){(float)ps}, &one, 1, 1e-6, 0.0);
    }
    double want = count ? sum / (double)count : 0.0;
    bad += check_close("ce loss", &k->loss, &want, 1, 1e-6, 1e-6);
    ce_bwd(k);
    bad += qt_gradcheck("ce dlogits", ce_fwd, k, &k->loss, &k->dloss, 1, k->logits, k->dlogits, k->N * k->V, GC_H,
                        GC_ATOL, GC_RTOL, GC_MAX);
    for (int64_t i = 0; i < k->N; i++)
        if (k->targets[i] == k->ignore)
            for (int64_t j = 0; j < k->V; j++) bad += k->dlogits[i * k->V + j] != 0.0f;
    return bad;
}

static int ce_threads(int64_t N, int64_t V, float smoothing, int32_t ignore, bool some_ignored) {
    ce_case k;
    ce_setup(&k, N, V, smoothing, ignore, 41);
    if (some_ignored)
        for (int64_t i = 0; i < N; i += 3) k.targets[i] = ignore;
    ce_fwd(&k);
    ce_bwd(&k);
    float loss2 = k.loss, *d2 = dup_floats(k.dlogits, N * V), *p2 = dup_floats(k.probs, N * V);
    qb_exec_cpu(&k.ex, 1);
    ce_fwd(&k);
    ce_bwd(&k);
    assert_same(&k.loss, &loss2, 1, "ce loss");
    assert_same(k.probs, p2, N * V, "ce probs");
    assert_same(k.dlogits, d2, N * V, "ce dlogits");
    free(d2), free(p2);
    ce_free(&k);
    return 0;
}

static void test_cross_entropy(void **state) {
    (void)state;
    ce_case k;
    ce_setup(&k, 6, 7, 0.0f, -100, 51);
    int bad = ce_check(&k);
    ce_free(&k);

    /* stability: logits of +-1000 give finite, exact losses */
    ce_setup(&k, 2, 3, 0.0f, -100, 52);
    const float z[6] = {1000.0f, 0.0f, -1000.0f, 1000.0f, 0.0f, -1000.0f};
    memcpy(k.logits, z, sizeof z);
    k.targets[0] = 0;
    k.targets[1] = 2;
    ce_fwd(&k);
    assert_true(isfinite(k.losses[0]) && isfinite(k.losses[1]));
    assert_true(fabs(k.losses[0]) < 1e-6);
    assert_true(fabs(k.losses[1] - 2000.0) < 1e-3);
    ce_free(&k);

    bad += ce_threads(64, 1000, 0.0f, -100, false);
    assert_int_equal(bad, 0);
}

static void test_cross_entropy_smoothing_ignore(void **state) {
    (void)state;
    ce_case k;
    ce_setup(&k, 7, 5, 0.1f, -100, 61);
    k.targets[1] = -100;
    k.targets[4] = -100;
    int bad = ce_check(&k);
    ce_free(&k);

    /* a non-default ignore index that is also a valid class */
    ce_setup(&k, 6, 4, 0.2f, 0, 62);
    k.targets[2] = 0;
    k.targets[3] = 1;
    bad += ce_check(&k);

    /* every row ignored: loss 0 and no gradient */
    for (int64_t i = 0; i < k.N; i++) k.targets[i] = 0;
    ce_fwd(&k);
    assert_true(k.loss == 0.0f);
    ce_bwd(&k);
    for (int64_t i = 0; i < k.N * k.V; i++) assert_true(k.dlogits[i] == 0.0f);
    ce_free(&k);

    bad += ce_threads(64, 1000, 0.1f, -100, true);
    assert_int_equal(bad, 0);
}

/* ---- InfoNCE --------------------------------------------------------------------- */

typedef struct nce_case {
    qb_exec ex;
    int64_t N, D;
    float logit_scale, loss, dloss, dlogit_scale;
    float *a, *b, *da, *db;
    nn_infonce_acts acts;
} nce_case;

static void nce_fwd(void *p) {
    nce_case *k = p;
    nn_infonce_forward(&k->ex, &k->loss, &k->acts, k->a, k->b, &k->logit_scale, k->N, k->D);
}

static void nce_bwd(nce_case *k) {
    memset(k->da, 0, (size_t)(k->N * k->D) * sizeof(float));
    memset(k->db, 0, (size_t)(k->N * k->D) * sizeof(float));
    k->dlogit_scale = 0.0f;
    nn_infonce_backward(&k->ex, k->da, k->db, &k->dlogit_scale, k->dloss, &k->acts, k->a, k->b, &k->logit_scale,
                        k->N, k->D);
}

static void normalize_rows(float *x, int64_t N, int64_t D, float norm) {
    for (int64_t i = 0; i < N; i++) {
        double s = 0.0;
        for (int64_t j = 0; j < D; j++) s += (double)x[i * D + j] * x[i * D + j];
        for (int64_t j = 0; j < D; j++) x[i * D + j] = (float)(x[i * D + j] * norm / sqrt(s));
    }
}

static void nce_setup(nce_case *k, int64_t N, int64_t D, float logit_scale, float norm, uint64_t seed) {
    memset(k, 0, sizeof *k);
    qb_exec_cpu(&k->ex, 2);
    k->N = N, k->D = D, k->logit_scale = logit_scale, k->dloss = 0.8f;
    k->a = qt_alloc(N * D), k->b = qt_alloc(N * D), k->da = qt_alloc(N * D), k->db = qt_alloc(N * D);
    k->acts.logits = qt_alloc(N * N);
    k->acts.probs_r = qt_alloc(N * N);
    k->acts.probs_c = qt_alloc(N * N);
    k->acts.scratch = qt_alloc(N * N);
    k->acts.losses = qt_alloc(N);
    qt_fill_normal(k->a, N * D, 1.0f, seed);
    qt_fill_normal(k->b, N * D, 1.0f, seed + 1);
    /* positives correlated with their anchors, as after some training */
    for (int64_t i = 0; i < N * D; i++) k->b[i] = 0.6f * k->a[i] + 0.8f * k->b[i];
    normalize_rows(k->a, N, D, norm);
    normalize_rows(k->b, N, D, norm);
}

static void nce_free(nce_case *k) {
    free(k->a), free(k->b), free(k->da), free(k->db);
    free(k->acts.logits), free(k->acts.probs_r), free(k->acts.probs_c), free(k->acts.scratch), free(k->acts.losses);
}

/* Naive formula: L_ij = s a_i . b_j, s = exp(clamp(ls, 0, ln 100));
 * loss = (1/2N) sum_i [(lse_j L_ij - L_ii) + (lse_j L_ji - L_ii)]. */
static double nce_ref(const nce_case *k) {
    const int64_t N = k->N, D = k->D;
    double ls = fmin(fmax(k->logit_scale, 0.0), log(100.0)), s = exp(ls);
    double *L = calloc((size_t)(N * N), sizeof(double));
    assert_non_null(L);
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < N; j++) {
            double d = 0.0;
            for (int64_t e = 0; e < D; e++) d += (double)k->a[i * D + e] * k->b[j * D + e];
            L[i * N + j] = s * d;
        }
    double total = 0.0;
    for (int64_t i = 0; i < N; i++) {
        double mr = -INFINITY, mc = -INFINITY, sr = 0.0, sc = 0.0;
        for (int64_t j = 0; j < N; j++) mr = fmax(mr, L[i * N + j]), mc = fmax(mc, L[j * N + i]);
        for (int64_t j = 0; j < N; j++) sr += exp(L[i * N + j] - mr), sc += exp(L[j * N + i] - mc);
        total += (mr + log(sr) - L[i * N + i]) + (mc + log(sc) - L[i * N + i]);
    }
    free(L);
    return total / (2.0 * (double)N);
}

static int nce_check(nce_case *k, bool expect_clamped) {
    int bad = 0;
    nce_fwd(k);
    double want = nce_ref(k);
    bad += check_close("infonce loss", &k->loss, &want, 1, 1e-5, 1e-5);
    nce_bwd(k);
    bad += qt_gradcheck("infonce da", nce_fwd, k, &k->loss, &k->dloss, 1, k->a, k->da, k->N * k->D, GC_H, GC_ATOL,
                        GC_RTOL, GC_MAX);
    bad += qt_gradcheck("infonce db", nce_fwd, k, &k->loss, &k->dloss, 1, k->b, k->db, k->N * k->D, GC_H, GC_ATOL,
                        GC_RTOL, GC_MAX);
    if (expect_clamped) {
        /* clamp passes no gradient: exactly zero, not merely small */
        assert_true(k->dlogit_scale == 0.0f);
    } else {
        bad += qt_gradcheck("infonce dlogit_scale", nce_fwd, k, &k->loss, &k->dloss, 1, &k->logit_scale,
                            &k->dlogit_scale, 1, GC_H, GC_ATOL, GC_RTOL, 1);
        assert_true(k->dlogit_scale != 0.0f);
    }
    return bad;
}

static void test_infonce(void **state) {
    (void)state;
    nce_case k;
    int bad = 0;
    /* CLIP's initial temperature 0.07: logit_scale = ln(1/0.07) */
    nce_setup(&k, 5, 6, 2.6592600f, 1.0f, 71);
    bad += nce_check(&k, false);
    nce_free(&k);

    nce_setup(&k, 4, 3, 0.5f, 1.0f, 72);
    bad += nce_check(&k, false);
    nce_free(&k);

    /* clamped above (scale 100): rows of norm 0.1 keep logits O(1), so the
     * finite differences of a and b stay in their accurate regime */
    nce_setup(&k, 5, 6, 5.0f, 0.1f, 73);
    bad += nce_check(&k, true);
    nce_free(&k);

    /* clamped below (scale 1) */
    nce_setup(&k, 5, 6, -0.7f, 1.0f, 74);
    bad += nce_check(&k, true);
    nce_free(&k);

    /* threads */
    const int64_t N = 200, D = 32;
    nce_setup(&k, N, D, 2.6592600f, 1.0f, 75);
    nce_fwd(&k);
    nce_bwd(&k);
    float loss2 = k.loss, dls2 = k.dlogit_scale, *da2 = dup_floats(k.da, N * D), *db2 = dup_floats(k.db, N * D);
    qb_exec_cpu(&k.ex, 1);
    nce_fwd(&k);
    nce_bwd(&k);
    assert_same(&k.loss, &loss2, 1, "infonce loss");
    assert_same(&k.dlogit_scale, &dls2, 1, "infonce dlogit_scale");
    assert_same(k.da, da2, N * D, "infonce da");
    assert_same(k.db, db2, N * D, "infonce db");
    double want = nce_ref(&k);
    bad += check_close("infonce loss N=200", &k.loss, &want, 1, 1e-5, 1e-5);
    free(da2), free(db2);
    nce_free(&k);
    assert_int_equal(bad, 0);
}

/* ctest passes these names (tests/gradcheck_b.cmake) as the case filter */
#define CASE(name) {#name, test_##name, NULL, NULL, NULL}
static const struct CMUnitTest tests[] = {
    CASE(conv1d),    CASE(conv1d_stride2_pad), CASE(pool_mean),
    CASE(pool_max),  CASE(gate),               CASE(cross_entropy),
    CASE(cross_entropy_smoothing_ignore),      CASE(infonce),
};

QT_MAIN(tests)
