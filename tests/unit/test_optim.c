/* AdamW against a double-precision transcription of torch.optim.AdamW,
 * gradient-norm clipping, the warmup + cosine schedule, and gradient
 * accumulation over micro-batches. */
#include <string.h>

#include "testutil.h"

#include "nn/nn.h"

/* ---- AdamW ------------------------------------------------------------------ */

/* Decay is skipped for QC_NO_DECAY: with zero gradients Adam's step is 0, so
 * a decayed tensor shrinks by exactly (1 - lr wd) and a no-decay one stays. */
static void adamw_no_decay_isolated(void) {
    qb_exec ex;
    qb_exec_cpu(&ex, 1);
    qc_table tab;
    qc_table_init_empty(&tab);
    const int64_t s[1] = {8};
    assert_int_equal(qc_table_add(&tab, "d", 1, s, QC_INIT_CONST, 2.0f, 0, QC_NO_FIELD), QIAO_OK);
    assert_int_equal(qc_table_add(&tab, "nd", 1, s, QC_INIT_CONST, 2.0f, QC_NO_DECAY, QC_NO_FIELD), QIAO_OK);
    qc_arena p, g, m, v;
    assert_int_equal(qc_arena_alloc(&p, tab.total), QIAO_OK);
    assert_int_equal(qc_arena_alloc(&g, tab.total), QIAO_OK);
    assert_int_equal(qc_arena_alloc(&m, tab.total), QIAO_OK);
    assert_int_equal(qc_arena_alloc(&v, tab.total), QIAO_OK);
    qc_table_init(&tab, p.base, 1);
    nn_adamw_config cfg = nn_adamw_default();
    cfg.lr = 0.1f;
    cfg.weight_decay = 0.5f;
    nn_adamw_update(&ex, &tab, p.base, g.base, m.base, v.base, 1, 1.0f, &cfg);
    for (int64_t e = 0; e < 8; e++) {
        assert_float_equal(p.base[tab.t[0].offset + e], 2.0f * (1.0f - 0.05f), 1e-6f);
        assert_true(p.base[tab.t[1].offset + e] == 2.0f);
    }
    qc_arena_free(&p), qc_arena_free(&g), qc_arena_free(&m), qc_arena_free(&v);
    qc_table_free(&tab);
}

static void test_adamw_reference(void **state) {
    (void)state;
    qb_exec ex;
    qb_exec_cpu(&ex, 2);
    qc_table tab;
    qc_table_init_empty(&tab);
    const int64_t sw[2] = {3, 5}, sb[1] = {5}, sf[1] = {4}, sbig[1] = {70000};
    assert_int_equal(qc_table_add(&tab, "w", 2, sw, QC_INIT_NORMAL, 0.5f, 0, QC_NO_FIELD), QIAO_OK);
    assert_int_equal(qc_table_add(&tab, "b", 1, sb, QC_INIT_NORMAL, 0.5f, QC_NO_DECAY, QC_NO_FIELD), QIAO_OK);
    assert_int_equal(qc_table_add(&tab, "f", 1, sf, QC_INIT_NORMAL, 0.5f, QC_FROZEN, QC_NO_FIELD), QIAO_OK);
    /* above the kernel's OpenMP threshold */
    assert_int_equal(qc_table_add(&tab, "big", 1, sbig, QC_INIT_NORMAL, 0.5f, 0, QC_NO_FIELD), QIAO_OK);
    const size_t n = tab.total;

    qc_arena p, g, m, v;
    assert_int_equal(qc_arena_alloc(&p, n), QIAO_OK);
    assert_int_equal(qc_arena_alloc(&g, n), QIAO_OK);
    assert_int_equal(qc_arena_alloc(&m, n), QIAO_OK);
    assert_int_equal(qc_arena_alloc(&v, n), QIAO_OK);
    qc_table_init(&tab, p.base, 5);
    float *p0 = malloc(n * sizeof(float));
    double *pd = calloc(n, sizeof(double)), *md = calloc(n, sizeof(double)), *vd = calloc(n, sizeof(double));
    assert_true(p0 && pd && md && vd);
    memcpy(p0, p.base, n * sizeof(float));
    for (size_t i = 0; i < n; i++) pd[i] = p.base[i];

    /* lr * wd = 0.025 per step: decay errors show up far above tolerance */
    nn_adamw_config cfg = nn_adamw_default();
    cfg.lr = 0.05f;
    cfg.weight_decay = 0.5f;
    for (int64_t t = 1; t <= 6; t++) {
        qt_fill_normal(g.base, (int64_t)n, 1.0f, 100 + (uint64_t)t);
        nn_adamw_update(&ex, &tab, p.base, g.base, m.base, v.base, t, 1.0f, &cfg);
        /* torch.optim.AdamW, in double */
        const double b1 = cfg.beta1, b2 = cfg.beta2, lr = cfg.lr, eps = cfg.eps;
        const double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
        for (size_t k = 0; k < tab.n; k++) {
            const qc_tensor_desc *d = &tab.t[k];
            if (d->flags & QC_FROZEN) continue;
            const double wd = (d->flags & QC_NO_DECAY) ? 0.0 : cfg.weight_decay;
            for (int64_t e = 0; e < d->numel; e++) {
                size_t i = d->offset + (size_t)e;
                double gi = g.base[i];
                pd[i] *= 1.0 - lr * wd;
                md[i] = b1 * md[i] + (1.0 - b1) * gi;
                vd[i] = b2 * vd[i] + (1.0 - b2) * gi * gi;
                pd[i] -= (lr / bc1) * md[i] / (sqrt(vd[i]) / sqrt(bc2) + eps);
            }
        }
    }
    int bad = 0;
    for (size_t k = 0; k < tab.n; k++) {
        const qc_tensor_desc *d = &tab.t[k];
        for (int64_t e = 0; e < d->numel; e++) {
            size_t i = d->offset + (size_t)e;
            /* f32 vs f64 over 6 steps of size ~lr: differences ~1e-7 */
            if (fabs(p.base[i] - pd[i]) > 2e-6 + 1e-5 * fabs(pd[i]) || fabs(m.base[i] - md[i]) > 1e-6 ||
                fabs(v.base[i] - vd[i]) > 1e-6) {
                if (!bad) printf("%s[%lld]: p %.9g want %.9g\n", d->name, (long long)e, p.base[i], pd[i]);
                bad++;
            }
        }
    }
    assert_int_equal(bad, 0);
    /* frozen: parameters and moments untouched */
    const qc_tensor_desc *f = &tab.t[qc_table_find(&tab, "f")];
    assert_memory_equal(p.base + f->offset, p0 + f->offset, (size_t)f->numel * sizeof(float));
    for (int64_t e = 0; e < f->numel; e++) assert_true(m.base[f->offset + e] == 0.0f && v.base[f->offset + e] == 0.0f);
    /* thread count: same bytes with 1 and 2 threads */
    qc_arena p2, m2, v2;
    assert_int_equal(qc_arena_alloc(&p2, n), QIAO_OK);
    assert_int_equal(qc_arena_alloc(&m2, n), QIAO_OK);
    assert_int_equal(qc_arena_alloc(&v2, n), QIAO_OK);
    memcpy(p2.base, p0, n * sizeof(float));
    memcpy(p.base, p0, n * sizeof(float));
    qc_arena_zero(&m), qc_arena_zero(&v);
    qb_exec ex1;
    qb_exec_cpu(&ex1, 1);
    for (int64_t t = 1; t <= 3; t++) {
        qt_fill_normal(g.base, (int64_t)n, 1.0f, 200 + (uint64_t)t);
        nn_adamw_update(&ex, &tab, p.base, g.base, m.base, v.base, t, 1.0f, &cfg);
        nn_adamw_update(&ex1, &tab, p2.base, g.base, m2.base, v2.base, t, 1.0f, &cfg);
    }
    assert_memory_equal(p.base, p2.base, n * sizeof(float));
    assert_memory_equal(m.base, m2.base, n * sizeof(float));
    assert_memory_equal(v.base, v2.base, n * sizeof(float));

    qc_arena_free(&p2), qc_arena_free(&m2), qc_arena_free(&v2);
    qc_arena_free(&p), qc_arena_free(&g), qc_arena_free(&m), qc_arena_free(&v);
    free(p0), free(pd), free(md), free(vd);
    qc_table_free(&tab);

    adamw_no_decay_isolated();
}

/* ---- clipping -------------------------------------------------------------------- */

static void test_clip_grad_norm(void **state) {
    (void)state;
    qb_exec ex, ex1;
    qb_exec_cpu(&ex, 2);
    qb_exec_cpu(&ex1, 1);
    const int64_t n = 100003; /* several reduction chunks, above the OpenMP threshold */
    float *g = qt_alloc(n), *g0 = qt_alloc(n);
    qt_fill_normal(g0, n, 0.01f, 9);
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)g0[i] * g0[i];
    const double norm = sqrt(ss);

    /* above max_norm: scaled onto the sphere of radius max_norm */
    memcpy(g, g0, (size_t)n * sizeof(float));
    float r = nn_clip_grad_norm(&ex, g, n, (float)(norm / 4.0));
    assert_true(fabs(r - norm) <= 1e-6 * norm);
    double ss2 = 0.0;
    for (int64_t i = 0; i < n; i++) ss2 += (double)g[i] * g[i];
    assert_true(fabs(sqrt(ss2) - norm / 4.0) <= 1e-5 * norm);
    for (int64_t i = 0; i < n; i += 997) /* direction kept: every element scaled by the same 1/4 */
        assert_true(fabs(g[i] - g0[i] * 0.25) <= 1e-6 * fabs(g0[i]) + 1e-12);

    /* below max_norm, or max_norm <= 0: untouched, norm still returned */
    memcpy(g, g0, (size_t)n * sizeof(float));
    r = nn_clip_grad_norm(&ex, g, n, (float)(norm * 2.0));
    assert_true(fabs(r - norm) <= 1e-6 * norm);
    assert_memory_equal(g, g0, (size_t)n * sizeof(float));
    r = nn_clip_grad_norm(&ex, g, n, 0.0f);
    assert_true(fabs(r - norm) <= 1e-6 * norm);
    assert_memory_equal(g, g0, (size_t)n * sizeof(float));

    /* same norm for 1 and 2 threads */
    float r1 = nn_clip_grad_norm(&ex1, g, n, 0.0f), r2 = nn_clip_grad_norm(&ex, g, n, 0.0f);
    assert_memory_equal(&r1, &r2, sizeof r1);

    /* a non-finite gradient is reported, not hidden by scaling */
    g[5] = INFINITY;
    r = nn_clip_grad_norm(&ex, g, n, 1.0f);
    assert_true(isinf(r));
    assert_true(g[6] == g0[6]);
    free(g), free(g0);
}

/* ---- schedule -------------------------------------------------------------------- */

static void test_lr_schedule(void **state) {
    (void)state;
    const float lmax = 1e-3f, lmin = 1e-5f;
    const int64_t W = 10, T = 110;
    /* warmup: 0 at step 0, linear, lr_max at step W */
    assert_true(nn_lr_warmup_cosine(0, W, T, lmax, lmin) == 0.0f);
    assert_float_equal(nn_lr_warmup_cosine(5, W, T, lmax, lmin), 0.5f * lmax, 1e-9f);
    assert_float_equal(nn_lr_warmup_cosine(W - 1, W, T, lmax, lmin), 0.9f * lmax, 1e-9f);
    assert_float_equal(nn_lr_warmup_cosine(W, W, T, lmax, lmin), lmax, 1e-9f);
    /* cosine midpoint is the mean of the ends; a quarter in is (1 + cos(pi/4))/2 */
    assert_float_equal(nn_lr_warmup_cosine(W + (T - W) / 2, W, T, lmax, lmin), 0.5f * (lmax + lmin), 1e-9f);
    assert_float_equal(nn_lr_warmup_cosine(W + (T - W) / 4, W, T, lmax, lmin),
                       lmin + (lmax - lmin) * 0.5f * (1.0f + 0.70710678f), 1e-9f);
    /* end and after */
    assert_true(nn_lr_warmup_cosine(T - 1, W, T, lmax, lmin) > lmin);
    assert_true(nn_lr_warmup_cosine(T, W, T, lmax, lmin) == lmin);
    assert_true(nn_lr_warmup_cosine(T + 1000, W, T, lmax, lmin) == lmin);
    /* monotone: up during warmup, down after */
    for (int64_t s = 1; s <= W; s++)
        assert_true(nn_lr_warmup_cosine(s, W, T, lmax, lmin) > nn_lr_warmup_cosine(s - 1, W, T, lmax, lmin));
    for (int64_t s = W + 1; s <= T; s++)
        assert_true(nn_lr_warmup_cosine(s, W, T, lmax, lmin) < nn_lr_warmup_cosine(s - 1, W, T, lmax, lmin));
    /* no warmup: starts at lr_max */
    assert_float_equal(nn_lr_warmup_cosine(0, 0, T, lmax, lmin), lmax, 1e-9f);
}

/* ---- gradient accumulation ----------------------------------------------------------- */

/* linear (C -> V) + mean cross-entropy over rows [r0, r0 + n) of a batch;
 * backward with upstream dloss, accumulating into dw, db, dinp. */
static float linear_ce_step(const qb_exec *ex, const float *inp, const int32_t *targets, const float *w,
                            const float *b, float *dw, float *db, float *dinp, int64_t r0, int64_t n, int64_t C,
                            int64_t V, float dloss) {
    float *logits = qt_alloc(n * V), *probs = qt_alloc(n * V), *losses = qt_alloc(n), *dlogits = qt_alloc(n * V);
    float loss;
    nn_linear_forward(ex, logits, inp + r0 * C, w, b, n, C, V);
    nn_cross_entropy_forward(ex, &loss, losses, probs, logits, targets + r0, n, V, 0.1f, -100);
    nn_cross_entropy_backward(ex, dlogits, dloss, probs, targets + r0, n, V, 0.1f, -100);
    nn_linear_backward(ex, dinp + r0 * C, dw, db, dlogits, inp + r0 * C, w, n, C, V);
    free(logits), free(probs), free(losses), free(dlogits);
    return loss;
}

static void test_grad_accumulation(void **state) {
    (void)state;
    qb_exec ex;
    qb_exec_cpu(&ex, 2);
    const int64_t N = 8, C = 5, V = 4;
    float *inp = qt_alloc(N * C), *w = qt_alloc(V * C), *b = qt_alloc(V);
    int32_t targets[8];
    qt_fill_normal(inp, N * C, 1.0f, 1);
    qt_fill_normal(w, V * C, 0.5f, 2);
    qt_fill_normal(b, V, 0.5f, 3);
    qc_rng r;
    qc_rng_seed(&r, 4);
    for (int64_t i = 0; i < N; i++) targets[i] = (int32_t)qc_rng_below(&r, (uint64_t)V);

    float *dw1 = qt_alloc(V * C), *db1 = qt_alloc(V), *dx1 = qt_alloc(N * C);
    float *dw2 = qt_alloc(V * C), *db2 = qt_alloc(V), *dx2 = qt_alloc(N * C);
    float full = linear_ce_step(&ex, inp, targets, w, b, dw1, db1, dx1, 0, N, C, V, 1.0f);
    /* two micro-batches of N/2, each loss weighted 1/2, gradients accumulated */
    float h0 = linear_ce_step(&ex, inp, targets, w, b, dw2, db2, dx2, 0, N / 2, C, V, 0.5f);
    float h1 = linear_ce_step(&ex, inp, targets, w, b, dw2, db2, dx2, N / 2, N / 2, C, V, 0.5f);

    assert_float_equal(0.5f * (h0 + h1), full, 1e-6f);
    for (int64_t i = 0; i < V * C; i++) assert_float_equal(dw1[i], dw2[i], 1e-6f);
    for (int64_t i = 0; i < V; i++) assert_float_equal(db1[i], db2[i], 1e-6f);
    for (int64_t i = 0; i < N * C; i++) assert_float_equal(dx1[i], dx2[i], 1e-6f);
    /* and the gradient is not trivially zero */
    double s = 0.0;
    for (int64_t i = 0; i < V * C; i++) s += fabs(dw1[i]);
    assert_true(s > 1e-2);
    free(inp), free(w), free(b), free(dw1), free(db1), free(dx1), free(dw2), free(db2), free(dx2);
}

/* ctest passes these names (tests/optim.cmake) as the case filter */
#define CASE(name) {#name, test_##name, NULL, NULL, NULL}
static const struct CMUnitTest tests[] = {
    CASE(adamw_reference),
    CASE(clip_grad_norm),
    CASE(lr_schedule),
    CASE(grad_accumulation),
};

QT_MAIN(tests)
