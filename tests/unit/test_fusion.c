/* fusion/: the cross-modal block and the fuser, gradient-checked (every
 * parameter and every input, central differences as testutil.h explains,
 * h = 1e-3, atol = 1e-3, rtol = 1e-2), bit-identical for 1 and 2 threads,
 * and the modality weighting's statistics and modes against hand-computed
 * values. The golden test against the PyTorch peer is test_fusion_golden. */
#include <string.h>

#include "testutil.h"

#include "fusion/cross.h"
#include "fusion/fuser.h"
#include "fusion/weighting.h"

#define GC_H 1e-3f
/* The block's 96 outputs pass through two attentions and an MLP, so f32
 * rounding leaves about 1e-6 in L = sum R out, i.e. 5e-4 in a central
 * difference at h = 1e-3 (at h = 3e-4 a gradient that is exactly 0 by
 * symmetry, the key bias of softmax, reads 1.4e-3): a step of 2e-3 halves
 * that noise while the O(h^2) truncation stays under 1e-5 here. */
#define GC_H_BLOCK 2e-3f
#define GC_ATOL 1e-3
#define GC_RTOL 1e-2
#define GC_MAX 200

static qb_exec ex1, ex2;

static int setup(void **state) {
    (void)state;
    qb_exec_cpu(&ex1, 1);
    qb_exec_cpu(&ex2, 2);
    return 0;
}

/* Parameters drawn so every layer's output stays O(1): weights N(0, 1/fan_in),
 * norms' gains around 1, biases and type vectors small. */
static void fill_params(qt_model *m, uint64_t seed) {
    for (size_t i = 0; i < m->pt.n; i++) {
        const qc_tensor_desc *t = &m->pt.t[i];
        float *x = m->params.base + t->offset;
        const bool ln = strstr(t->name, "ln") && strstr(t->name, ".weight");
        if (t->ndim == 2) {
            qt_fill_normal(x, t->numel, 1.0f / sqrtf((float)t->shape[1]), seed + (uint64_t)i);
        } else if (ln) {
            qt_fill_uniform(x, t->numel, 0.8f, 1.2f, seed + (uint64_t)i);
        } else {
            qt_fill_normal(x, t->numel, 0.1f, seed + (uint64_t)i);
        }
    }
}

/* Gradient-checks every parameter tensor of m (the case's forward must
 * write `out`; its backward, from R, accumulate into m->grads). */
static int check_params(const char *label, qt_model *m, qt_forward_fn fwd, void *ctx, const float *out,
                        const float *R, int64_t nout, float h) {
    int bad = 0;
    for (size_t i = 0; i < m->pt.n; i++) {
        const qc_tensor_desc *t = &m->pt.t[i];
        char what[320];
        snprintf(what, sizeof what, "%s d%s", label, t->name);
        bad += qt_gradcheck(what, fwd, ctx, out, R, nout, m->params.base + t->offset, m->grads.base + t->offset,
                            t->numel, h, GC_ATOL, GC_RTOL, GC_MAX);
    }
    return bad;
}

/* ==== the cross-modal block ===================================================== */

typedef struct xb_case {
    const qb_exec *ex;
    qf_xblock_dims d;
    qt_model m;
    qf_xblock_params p, g;
    qf_xblock_acts a, da;
    float *x, *y, *xb, *yb, *dx, *dy, *dxb, *dyb, *R;
    uint8_t *xm, *ym;
} xb_case;

static void xb_fwd(void *ctx) {
    xb_case *c = ctx;
    qf_xblock_forward(c->ex, &c->a, &c->p, c->x, c->xm, c->xb, c->y, c->ym, c->yb, &c->d);
}

static void xb_bwd(xb_case *c) {
    memset(c->m.grads.base, 0, (size_t)c->m.pt.total * sizeof(float));
    memset(c->m.dacts.base, 0, (size_t)c->m.at.total * sizeof(float));
    const int64_t nx = c->d.B * c->d.Tx * c->d.C, ny = c->d.B * c->d.Ty * c->d.C;
    memset(c->dx, 0, (size_t)nx * sizeof(float)), memset(c->dy, 0, (size_t)ny * sizeof(float));
    memset(c->dxb, 0, (size_t)(c->d.B * c->d.Tx) * sizeof(float));
    memset(c->dyb, 0, (size_t)(c->d.B * c->d.Ty) * sizeof(float));
    qf_xblock_backward(c->ex, c->dx, c->dy, c->dxb, c->dyb, &c->g, &c->da, c->R, &c->a, &c->p, c->x, c->y, &c->d);
}

static void xb_setup(xb_case *c, qf_xblock_dims d, uint64_t seed) {
    memset(c, 0, sizeof *c);
    c->d = d;
    assert_int_equal(qf_xblock_describe(&c->m.pt, "x.", &d, 2, 0), QIAO_OK);
    assert_int_equal(qf_xblock_describe_acts(&c->m.at, "x.", &d, 0), QIAO_OK);
    qt_model_alloc(&c->m, &c->p, &c->g, &c->a, &c->da);
    fill_params(&c->m, seed);
    const int64_t nx = d.B * d.Tx * d.C, ny = d.B * d.Ty * d.C;
    c->x = qt_alloc(nx), c->dx = qt_alloc(nx), c->R = qt_alloc(nx);
    c->y = qt_alloc(ny), c->dy = qt_alloc(ny);
    c->xb = qt_alloc(d.B * d.Tx), c->dxb = qt_alloc(d.B * d.Tx);
    c->yb = qt_alloc(d.B * d.Ty), c->dyb = qt_alloc(d.B * d.Ty);
    qt_fill_normal(c->x, nx, 1.0f, seed + 100);
    qt_fill_normal(c->y, ny, 1.0f, seed + 101);
    qt_fill_normal(c->xb, d.B * d.Tx, 1.0f, seed + 102);
    qt_fill_normal(c->yb, d.B * d.Ty, 1.0f, seed + 103);
    qt_fill_normal(c->R, nx, 1.0f, seed + 104);
    c->xm = malloc((size_t)(d.B * d.Tx)), c->ym = malloc((size_t)(d.B * d.Ty));
    assert_non_null(c->xm), assert_non_null(c->ym);
    memset(c->xm, 1, (size_t)(d.B * d.Tx)), memset(c->ym, 1, (size_t)(d.B * d.Ty));
}

static void xb_free(xb_case *c) {
    qt_model_free(&c->m);
    free(c->x), free(c->dx), free(c->R), free(c->y), free(c->dy), free(c->xb), free(c->dxb), free(c->yb);
    free(c->dyb), free(c->xm), free(c->ym);
}

static void xb_gradcheck(xb_case *c, const char *label) {
    c->ex = &ex2;
    xb_fwd(c);
    xb_bwd(c);
    const int64_t nx = c->d.B * c->d.Tx * c->d.C, ny = c->d.B * c->d.Ty * c->d.C;
    int bad = check_params(label, &c->m, xb_fwd, c, c->a.out, c->R, nx, GC_H_BLOCK);
    char w[96];
    snprintf(w, sizeof w, "%s dx", label);
    bad += qt_gradcheck(w, xb_fwd, c, c->a.out, c->R, nx, c->x, c->dx, nx, GC_H_BLOCK, GC_ATOL, GC_RTOL, GC_MAX);
    snprintf(w, sizeof w, "%s dy", label);
    bad += qt_gradcheck(w, xb_fwd, c, c->a.out, c->R, nx, c->y, c->dy, ny, GC_H_BLOCK, GC_ATOL, GC_RTOL, GC_MAX);
    snprintf(w, sizeof w, "%s dx_bias", label);
    bad += qt_gradcheck(w, xb_fwd, c, c->a.out, c->R, nx, c->xb, c->dxb, c->d.B * c->d.Tx, GC_H_BLOCK, GC_ATOL, GC_RTOL,
                        GC_MAX);
    snprintf(w, sizeof w, "%s dy_bias", label);
    bad += qt_gradcheck(w, xb_fwd, c, c->a.out, c->R, nx, c->yb, c->dyb, c->d.B * c->d.Ty, GC_H_BLOCK, GC_ATOL, GC_RTOL,
                        GC_MAX);
    assert_int_equal(bad, 0);
}

static void test_xblock_gradcheck(void **state) {
    (void)state;
    xb_case c;
    /* row 0 all real; row 1: its last stream token and two context tokens
     * padded; row 2: no context at all (an absent modality) */
    qf_xblock_dims d = {3, 4, 5, 8, 16, 2, false};
    xb_setup(&c, d, 10);
    c.xm[1 * 4 + 3] = 0;
    c.ym[1 * 5 + 3] = c.ym[1 * 5 + 4] = 0;
    memset(c.ym + 2 * 5, 0, 5);
    xb_gradcheck(&c, "xblock");
    /* a masked context key gets no gradient anywhere */
    for (int64_t k = 0; k < 8; k++) assert_true(c.dy[(1 * 5 + 4) * 8 + k] == 0.0f);
    assert_true(c.dyb[1 * 5 + 4] == 0.0f);
    for (int64_t j = 0; j < 5; j++) assert_true(c.dyb[2 * 5 + j] == 0.0f);
    xb_free(&c);
    /* causal self-attention (the caption decoder's use) */
    qf_xblock_dims dc = {2, 5, 3, 8, 12, 2, true};
    xb_setup(&c, dc, 20);
    xb_gradcheck(&c, "xblock causal");
    xb_free(&c);
}

/* The context's padding must not matter: the outputs of real stream tokens
 * are the same whatever the padded context rows hold. */
static void test_xblock_masks(void **state) {
    (void)state;
    xb_case c;
    qf_xblock_dims d = {2, 3, 6, 8, 16, 2, false};
    xb_setup(&c, d, 30);
    c.ym[0 * 6 + 5] = c.ym[1 * 6 + 4] = c.ym[1 * 6 + 5] = 0;
    c.ex = &ex2;
    xb_fwd(&c);
    float *o1 = qt_alloc(2 * 3 * 8);
    memcpy(o1, c.a.out, sizeof(float) * 2 * 3 * 8);
    qt_fill_normal(c.y + (0 * 6 + 5) * 8, 8, 50.0f, 31);
    qt_fill_normal(c.y + (1 * 6 + 4) * 8, 16, 50.0f, 32);
    c.yb[1 * 6 + 5] = 1e3f;
    xb_fwd(&c);
    assert_memory_equal(o1, c.a.out, sizeof(float) * 2 * 3 * 8);
    free(o1);
    xb_free(&c);
}

static void test_xblock_threads(void **state) {
    (void)state;
    xb_case c;
    qf_xblock_dims d = {4, 12, 20, 32, 64, 4, false};
    xb_setup(&c, d, 40);
    c.ym[20 + 17] = c.ym[20 + 18] = c.ym[20 + 19] = 0;
    const int64_t nx = 4 * 12 * 32, ny = 4 * 20 * 32;
    c.ex = &ex1;
    xb_fwd(&c);
    xb_bwd(&c);
    float *o = qt_alloc(nx), *g = qt_alloc(c.m.pt.total), *dy = qt_alloc(ny), *dyb = qt_alloc(4 * 20);
    memcpy(o, c.a.out, sizeof(float) * (size_t)nx);
    memcpy(g, c.m.grads.base, sizeof(float) * (size_t)c.m.pt.total);
    memcpy(dy, c.dy, sizeof(float) * (size_t)ny);
    memcpy(dyb, c.dyb, sizeof(float) * 80);
    c.ex = &ex2;
    xb_fwd(&c);
    xb_bwd(&c);
    assert_memory_equal(o, c.a.out, sizeof(float) * (size_t)nx);
    assert_memory_equal(g, c.m.grads.base, sizeof(float) * (size_t)c.m.pt.total);
    assert_memory_equal(dy, c.dy, sizeof(float) * (size_t)ny);
    assert_memory_equal(dyb, c.dyb, sizeof(float) * 80);
    free(o), free(g), free(dy), free(dyb);
    xb_free(&c);
}

/* ==== the fuser =================================================================== */

typedef struct fu_case {
    const qb_exec *ex;
    qf_fuser_config cfg;
    qf_fuser_dims d;
    qf_weighting mode;
    qt_model m;
    qf_fuser_params p, g;
    qf_fuser_acts a, da;
    qf_fuser_scratch s;
    float *tok[QF_NMOD], *dtok[QF_NMOD], *stats[QF_NMOD], *R;
    uint8_t *mask[QF_NMOD], *present;
    qf_fuser_input in;
} fu_case;

static void fu_fwd(void *ctx) {
    fu_case *c = ctx;
    assert_int_equal(qf_fuser_forward(c->ex, &c->a, &c->s, &c->p, &c->in, c->mode, &c->cfg, &c->d), QIAO_OK);
}

static void fu_bwd(fu_case *c) {
    memset(c->m.grads.base, 0, (size_t)c->m.pt.total * sizeof(float));
    memset(c->m.dacts.base, 0, (size_t)c->m.at.total * sizeof(float));
    for (int m = 0; m < QF_NMOD; m++)
        memset(c->dtok[m], 0, (size_t)(c->d.B * c->d.T[m] * c->cfg.in_width[m]) * sizeof(float));
    qf_fuser_backward(c->ex, c->dtok, &c->g, &c->da, &c->s, c->R, &c->a, &c->p, &c->in, c->mode, &c->cfg, &c->d);
}

static void fu_setup_with(fu_case *c, qf_weighting mode, uint64_t seed, int64_t positions, int64_t qpositions,
                          bool mean) {
    memset(c, 0, sizeof *c);
    c->mode = mode;
    c->cfg = (qf_fuser_config){8, 2, 2, 16, 4, mode, {6, 5, 7}, positions, 0, qpositions, mean};
    c->d = (qf_fuser_dims){3, {3, 4, 2}};
    assert_int_equal(qf_fuser_describe(&c->m.pt, "fusion.", &c->cfg, 0), QIAO_OK);
    assert_int_equal(qf_fuser_describe_acts(&c->m.at, "fusion.", &c->cfg, &c->d, true, 0), QIAO_OK);
    qt_model_alloc(&c->m, &c->p, &c->g, &c->a, &c->da);
    assert_int_equal(qf_fuser_scratch_init(&c->s, &c->d), QIAO_OK);
    fill_params(&c->m, seed);
    for (int m = 0; m < QF_NMOD; m++) {
        const int64_t n = c->d.B * c->d.T[m] * c->cfg.in_width[m];
        c->tok[m] = qt_alloc(n), c->dtok[m] = qt_alloc(n);
        qt_fill_normal(c->tok[m], n, 1.0f, seed + 10 + (uint64_t)m);
        c->stats[m] = qt_alloc(c->d.B * QF_NSTATS);
        c->mask[m] = malloc((size_t)(c->d.B * c->d.T[m]));
        assert_non_null(c->mask[m]);
        memset(c->mask[m], 1, (size_t)(c->d.B * c->d.T[m]));
        c->in.tokens[m] = c->tok[m], c->in.mask[m] = c->mask[m], c->in.stats[m] = c->stats[m];
    }
    /* raw stats in their units: entropy bits / tokens / unk share; contrast,
     * Laplacian, luminance; centroid Hz, energy dB, spread dB */
    const float st[3][3][3] = {{{3.0f, 9, 0}, {2.5f, 6, 0.1f}, {3.5f, 12, 0}},
                               {{45, 3, 120}, {8, 30, 100}, {60, 2, 140}},
                               {{1500, -20, 40}, {3500, -10, 8}, {900, -30, 50}}};
    for (int m = 0; m < QF_NMOD; m++)
        for (int b = 0; b < 3; b++) memcpy(c->stats[m] + b * QF_NSTATS, st[m][b], sizeof st[m][b]);
    /* row 0 everything; row 1 spoken question only, its audio's second frame
     * padded; row 2 typed only, one text token padded */
    c->present = malloc(3 * QF_NMOD);
    assert_non_null(c->present);
    const uint8_t pr[9] = {1, 1, 1, 0, 1, 1, 1, 1, 0};
    memcpy(c->present, pr, 9);
    c->mask[QF_AUDIO][1 * 2 + 1] = 0;
    c->mask[QF_TEXT][2 * 3 + 2] = 0;
    c->in.present = c->present;
    c->R = qt_alloc(c->d.B * c->cfg.width);
    qt_fill_normal(c->R, c->d.B * c->cfg.width, 1.0f, seed + 20);
}

static void fu_setup(fu_case *c, qf_weighting mode, uint64_t seed, int64_t positions, int64_t qpositions) {
    fu_setup_with(c, mode, seed, positions, qpositions, false);
}

static void fu_free(fu_case *c) {
    qt_model_free(&c->m);
    qf_fuser_scratch_free(&c->s);
    for (int m = 0; m < QF_NMOD; m++) free(c->tok[m]), free(c->dtok[m]), free(c->stats[m]), free(c->mask[m]);
    free(c->present), free(c->R);
}

static void fu_gradcheck(qf_weighting mode, uint64_t seed, int64_t positions, int64_t qpositions, bool mean) {
    fu_case c;
    fu_setup_with(&c, mode, seed, positions, qpositions, mean);
    c.ex = &ex2;
    fu_fwd(&c);
    fu_bwd(&c);
    char label[64];
    snprintf(label, sizeof label, "fuser %s", qf_weighting_name(mode));
    const int64_t nz = c.d.B * c.cfg.width;
    int bad = check_params(label, &c.m, fu_fwd, &c, c.a.z, c.R, nz, GC_H);
    for (int m = 0; m < QF_NMOD; m++) {
        char w[96];
        snprintf(w, sizeof w, "%s d%s tokens", label, qf_modality_name(m));
        bad += qt_gradcheck(w, fu_fwd, &c, c.a.z, c.R, nz, c.tok[m], c.dtok[m],
                            c.d.B * c.d.T[m] * c.cfg.in_width[m], GC_H, GC_ATOL, GC_RTOL, GC_MAX);
    }
    assert_int_equal(bad, 0);
    /* absent modalities: weight 0, and their tokens get no gradient */
    assert_true(c.a.w[1 * QF_NMOD + QF_TEXT] == 0.0f);
    assert_true(c.a.w[2 * QF_NMOD + QF_AUDIO] == 0.0f);
    for (int64_t i = 0; i < 3 * 6; i++) assert_true(c.dtok[QF_TEXT][3 * 6 + i] == 0.0f);
    for (int64_t i = 0; i < 2 * 7; i++) assert_true(c.dtok[QF_AUDIO][2 * 2 * 7 + i] == 0.0f);
    for (int64_t b = 0; b < 3; b++) {
        float sum = 0.0f;
        for (int m = 0; m < QF_NMOD; m++) sum += c.a.w[b * QF_NMOD + m];
        assert_float_equal(sum, 1.0f, 1e-6);
    }
    fu_free(&c);
}

static void test_fuser_gradcheck_learned(void **state) {
    (void)state;
    fu_gradcheck(QF_WEIGHT_LEARNED, 100, 0, 0, false);
    fu_gradcheck(QF_WEIGHT_LEARNED, 110, 5, 0, false); /* picture positions, one more than its 4 tokens */
    fu_gradcheck(QF_WEIGHT_LEARNED, 121, 4, 3, false); /* and question positions, as many as its 3 text tokens */
    fu_gradcheck(QF_WEIGHT_LEARNED, 130, 0, 0, true);  /* the picture's mean beside its max */
}

static void test_fuser_gradcheck_fixed(void **state) {
    (void)state;
    fu_gradcheck(QF_WEIGHT_HEURISTIC, 200, 0, 5, true);
    fu_gradcheck(QF_WEIGHT_EQUAL, 300, 4, 0, false);
}

/* The heuristic mode's weights are the seeds' formula, renormalized over
 * what is present; equal is 1/n; an absent modality is 0 in every mode. */
static void test_fuser_weights(void **state) {
    (void)state;
    fu_case c;
    fu_setup(&c, QF_WEIGHT_HEURISTIC, 400, 0, 0);
    c.ex = &ex2;
    fu_fwd(&c);
    const float *st[QF_NMOD] = {c.stats[0], c.stats[1], c.stats[2]};
    for (int b = 0; b < 3; b++) {
        double h[QF_NMOD], sum = 0.0;
        for (int m = 0; m < QF_NMOD; m++) {
            const float *r = st[m] + b * QF_NSTATS;
            h[m] = m == QF_TEXT ? 0.4 * tanh(r[0] / 5.0)
                   : m == QF_IMAGE ? 0.3 * fmin(1.0, r[0] / 10.0)
                                   : 0.3 * (1.0 - exp(-r[0] / 2000.0));
            h[m] *= c.present[b * QF_NMOD + m];
            sum += h[m];
        }
        for (int m = 0; m < QF_NMOD; m++) assert_float_equal(c.a.w[b * QF_NMOD + m], h[m] / sum, 1e-6);
    }
    c.mode = QF_WEIGHT_EQUAL;
    fu_fwd(&c);
    assert_float_equal(c.a.w[0], 1.0f / 3.0f, 1e-7);
    assert_float_equal(c.a.w[1 * QF_NMOD + QF_IMAGE], 0.5f, 1e-7);
    assert_float_equal(c.a.w[2 * QF_NMOD + QF_TEXT], 0.5f, 1e-7);
    /* a row with no question is refused, with a message naming it */
    c.present[1 * QF_NMOD + QF_AUDIO] = 0;
    assert_int_equal(qf_fuser_forward(c.ex, &c.a, &c.s, &c.p, &c.in, c.mode, &c.cfg, &c.d),
                     QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "row 1 has no question"));
    /* more picture tokens than the model has positions for; a negative count */
    qf_fuser_config pc = c.cfg;
    pc.positions = 3;
    qc_table tab;
    qc_table_init_empty(&tab);
    assert_int_equal(qf_fuser_describe_acts(&tab, "", &pc, &c.d, false, 0), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "positions for 3"));
    assert_int_equal(qf_fuser_forward(c.ex, &c.a, &c.s, &c.p, &c.in, c.mode, &pc, &c.d), QIAO_ERR_INVALID_ARGUMENT);
    pc.positions = -1;
    assert_int_equal(qf_fuser_check(&pc), QIAO_ERR_FORMAT);
    qc_table_free(&tab);
    fu_free(&c);
}

static void test_fuser_threads(void **state) {
    (void)state;
    fu_case c;
    fu_setup(&c, QF_WEIGHT_LEARNED, 500, 0, 4);
    c.ex = &ex1;
    fu_fwd(&c);
    fu_bwd(&c);
    float *z = qt_alloc(3 * 8), *g = qt_alloc(c.m.pt.total);
    memcpy(z, c.a.z, sizeof(float) * 24);
    memcpy(g, c.m.grads.base, sizeof(float) * (size_t)c.m.pt.total);
    c.ex = &ex2;
    fu_fwd(&c);
    fu_bwd(&c);
    assert_memory_equal(z, c.a.z, sizeof(float) * 24);
    assert_memory_equal(g, c.m.grads.base, sizeof(float) * (size_t)c.m.pt.total);
    free(z), free(g);
    fu_free(&c);
}

/* ==== statistics ================================================================== */

/* Places (fuser.h): a 3 x 3 grid over 8 x 8 patches reads rows and columns
 * [0, 3), [2, 6), [5, 8), so a patch on a border belongs to every place
 * that shares it, and the gradient goes back to the patch each maximum came
 * from, once per place that took it. */
static void test_places(void **state) {
    (void)state;
    enum { B = 2, g = 8, G = 3, C = 2 };
    float tok[B * g * g * C], out[B * G * G * C], dtok[B * g * g * C], dout[B * G * G * C];
    int32_t arg[B * G * G * C];
    for (int i = 0; i < B * g * g * C; i++) tok[i] = (float)((i * 37) % 101) / 101.0f;
    tok[(1 * g * g + 2 * g + 2) * C + 1] = 5.0f; /* row 1, patch (2, 2): places 0, 1, 3 and 4 */
    tok[(0 * g * g + 7 * g + 7) * C + 0] = -9.0f;  /* the corner of place 8 never wins */
    qf_places_forward(out, arg, tok, B, g, G, C);
    for (int b = 0; b < B; b++)
        for (int q = 0; q < G * G; q++)
            for (int c = 0; c < C; c++) {
                const int r0 = (q / G) * g / G, r1 = ((q / G + 1) * g + G - 1) / G;
                const int c0 = (q % G) * g / G, c1 = ((q % G + 1) * g + G - 1) / G;
                float want = -1e30f;
                for (int r = r0; r < r1; r++)
                    for (int k = c0; k < c1; k++) want = fmaxf(want, tok[((b * g + r) * g + k) * C + c]);
                assert_float_equal(out[(b * G * G + q) * C + c], want, 0.0);
            }
    for (int q = 0; q < G * G; q++) {
        const bool shares = q == 0 || q == 1 || q == 3 || q == 4;
        assert_int_equal(out[(G * G + q) * C + 1] == 5.0f, shares);
        if (shares) assert_int_equal(arg[(G * G + q) * C + 1], 2 * g + 2);
    }
    for (int i = 0; i < B * G * G * C; i++) dout[i] = 1.0f;
    memset(dtok, 0, sizeof dtok);
    qf_places_backward(dtok, dout, arg, B, g, G, C);
    assert_float_equal(dtok[(1 * g * g + 2 * g + 2) * C + 1], 4.0f, 0.0);
    assert_float_equal(dtok[(0 * g * g + 7 * g + 7) * C + 0], 0.0f, 0.0);
    float total = 0.0f;
    for (int i = 0; i < B * g * g * C; i++) total += dtok[i];
    assert_float_equal(total, (float)(B * G * G * C), 0.0); /* every place's gradient lands once */
}

static void test_stats(void **state) {
    (void)state;
    float s[QF_NSTATS];
    /* text: ids {5, 5, 7, 9}: p = 1/2, 1/4, 1/4 -> 1.5 bits */
    const int32_t ids[4] = {5, 5, 7, 9};
    qf_text_stats(ids, 4, 9, s);
    assert_float_equal(s[0], 1.5f, 1e-6);
    assert_float_equal(s[1], 4.0f, 0);
    assert_float_equal(s[2], 0.25f, 0);
    qf_text_stats(ids, 1, -1, s);
    assert_true(s[0] == 0.0f && s[1] == 1.0f && s[2] == 0.0f);
    /* a picture: left half black, right half white (4 x 4): contrast 127.5,
     * mean 127.5; the Laplacian over the 2 x 2 interior is 255 at each */
    uint8_t px[4 * 4 * 3];
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) memset(px + (y * 4 + x) * 3, x < 2 ? 0 : 255, 3);
    qf_image_stats(px, 4, 4, 12, s);
    assert_float_equal(s[0], 127.5f, 1e-3);
    assert_float_equal(s[1], 255.0f, 1e-3);
    assert_float_equal(s[2], 127.5f, 1e-3);
    /* noise raises the Laplacian of a flat picture from 0 */
    memset(px, 100, sizeof px);
    qf_image_stats(px, 4, 4, 12, s);
    assert_true(s[0] < 1e-3f && s[1] == 0.0f);
    px[5 * 3] = px[5 * 3 + 1] = px[5 * 3 + 2] = 140;
    qf_image_stats(px, 4, 4, 12, s);
    assert_true(s[1] > 10.0f);
    /* audio: all power in the band at 1000 Hz -> centroid 1000; frame
     * energies 10 dB and 30 dB, ten frames each: spread 20 dB, mean 20 dB */
    const float hz[3] = {500.0f, 1000.0f, 4000.0f};
    float mel[20 * 3];
    for (int t = 0; t < 20; t++) {
        mel[t * 3 + 0] = mel[t * 3 + 2] = -80.0f;
        mel[t * 3 + 1] = logf(t < 10 ? 10.0f : 1000.0f);
    }
    qf_audio_stats(mel, 20, 3, hz, s);
    assert_float_equal(s[0], 1000.0f, 1e-2);
    assert_float_equal(s[1], 20.0f, 1e-3);
    assert_float_equal(s[2], 20.0f, 1e-3);
    qf_audio_stats(mel, 0, 3, hz, s);
    assert_true(s[0] == 0.0f && s[1] == 0.0f && s[2] == 0.0f);
    /* names */
    assert_int_equal(qf_weighting_parse("heuristic"), QF_WEIGHT_HEURISTIC);
    assert_int_equal(qf_weighting_parse("bogus"), -1);
    assert_null(qf_weighting_name((qf_weighting)7));
}

#define CASE(name) {#name, test_##name, setup, NULL, NULL}
static const struct CMUnitTest tests[] = {
    CASE(xblock_gradcheck), CASE(xblock_masks),   CASE(xblock_threads),       CASE(fuser_gradcheck_learned),
    CASE(fuser_gradcheck_fixed), CASE(fuser_weights), CASE(fuser_threads), CASE(stats), CASE(places),
};

QT_MAIN(tests)
