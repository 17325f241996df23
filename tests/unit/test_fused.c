/* The fused training kernels against the unfused sequences they replace
 * (docs/benchmarks.md, "Issue 14: fused training kernels"): the GELU +
 * bias backward, the residual add + LayerNorm forward and backward, the
 * overwriting ("_first") attention and linear backwards, and the optimizer's
 * frozen-tensor skips and clip factor folded into AdamW. Each keeps the
 * order of operations of the path it replaces, so the results must be
 * equal to the bit (compared with ==, so a -0 against a +0 from 0 + -0
 * passes), on 1 and 2 threads. The layers' gradients against finite
 * differences stay with test_gradcheck_a/b, test_golden_block and
 * test_encoder_trunk. */
#include <string.h>

#include "nn/nn.h"
#include "testutil.h"

/* Sizes above the kernels' parallel thresholds, with C not a multiple of
 * the 64-column blocks. */
#define N_ROWS 300
#define N_COLS 200

static void assert_same(const char *what, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!(a[i] == b[i])) fail_msg("%s: element %lld differs: %.9g vs %.9g", what, (long long)i, a[i], b[i]);
}

static float *filled(int64_t n, float scale, uint64_t seed) {
    float *p = qt_alloc(n);
    qt_fill_normal(p, n, scale, seed);
    return p;
}

static void fill_nan(float *p, int64_t n) {
    for (int64_t i = 0; i < n; i++) p[i] = NAN;
}

static void test_gelu_bias_backward(void **state) {
    (void)state;
    const int64_t N = N_ROWS, C = N_COLS, n = N * C;
    float *inp = filled(n, 2.0f, 1), *dout = filled(n, 1.0f, 2);
    for (int threads = 1; threads <= 2; threads++) {
        qb_exec ex;
        qb_exec_cpu(&ex, threads);
        float *d_ref = qt_alloc(n), *db_ref = filled(C, 1.0f, 3);
        float *d_fused = qt_alloc(n), *db_fused = filled(C, 1.0f, 3);
        nn_gelu_backward(&ex, d_ref, inp, dout, n);
        ex.ops->bias_backward(&ex, db_ref, d_ref, N, C);
        fill_nan(d_fused, n); /* overwritten, never read */
        nn_gelu_bias_backward(&ex, d_fused, db_fused, inp, dout, N, C);
        assert_same("gelu_bias dinp", d_ref, d_fused, n);
        assert_same("gelu_bias dbias", db_ref, db_fused, C);
        fill_nan(d_fused, n);
        nn_gelu_bias_backward(&ex, d_fused, NULL, inp, dout, N, C); /* no bias gradient */
        assert_same("gelu_bias dinp, dbias NULL", d_ref, d_fused, n);
        free(d_ref), free(db_ref), free(d_fused), free(db_fused);
    }
    free(inp), free(dout);
}

static void test_residual_layernorm_forward(void **state) {
    (void)state;
    const int64_t N = N_ROWS, C = N_COLS, n = N * C;
    float *x = filled(n, 1.0f, 4), *y = filled(n, 1.0f, 5), *bias = filled(C, 0.5f, 6);
    float *w = filled(C, 0.3f, 7), *b = filled(C, 0.3f, 8);
    for (int64_t c = 0; c < C; c++) w[c] += 1.0f;
    for (int threads = 1; threads <= 2; threads++) {
        qb_exec ex;
        qb_exec_cpu(&ex, threads);
        for (int with_bias = 0; with_bias <= 1; with_bias++) {
            /* reference: the linear's bias, the residual add, the norm */
            float *h_ref = qt_alloc(n), *o_ref = qt_alloc(n), *m_ref = qt_alloc(N), *r_ref = qt_alloc(N);
            memcpy(h_ref, y, (size_t)n * sizeof(float));
            if (with_bias) ex.ops->bias_forward(&ex, h_ref, bias, N, C);
            nn_residual_forward(&ex, h_ref, h_ref, x, n);
            nn_layernorm_forward(&ex, o_ref, m_ref, r_ref, h_ref, w, b, N, C);
            /* fused, with h aliasing y as the block runs it */
            float *h = qt_alloc(n), *o = qt_alloc(n), *m = qt_alloc(N), *r = qt_alloc(N);
            memcpy(h, y, (size_t)n * sizeof(float));
            nn_residual_layernorm_forward(&ex, h, o, m, r, x, h, with_bias ? bias : NULL, w, b, N, C);
            assert_same("residual_layernorm h", h_ref, h, n);
            assert_same("residual_layernorm out", o_ref, o, n);
            assert_same("residual_layernorm mean", m_ref, m, N);
            assert_same("residual_layernorm rstd", r_ref, r, N);
            /* without the norm: bias + residual only */
            fill_nan(h, n);
            nn_bias_residual_forward(&ex, h, x, y, with_bias ? bias : NULL, N, C);
            assert_same("bias_residual h", h_ref, h, n);
            free(h_ref), free(o_ref), free(m_ref), free(r_ref), free(h), free(o), free(m), free(r);
        }
    }
    free(x), free(y), free(bias), free(w), free(b);
}

static void test_residual_layernorm_backward(void **state) {
    (void)state;
    const int64_t N = N_ROWS, C = N_COLS, n = N * C;
    float *inp = filled(n, 1.0f, 9), *dout = filled(n, 1.0f, 10), *dres = filled(n, 1.0f, 11);
    float *w = filled(C, 0.3f, 12), *b = filled(C, 0.3f, 13);
    for (int64_t c = 0; c < C; c++) w[c] += 1.0f;
    float *tmp = qt_alloc(n), *mean = qt_alloc(N), *rstd = qt_alloc(N);
    for (int threads = 1; threads <= 2; threads++) {
        qb_exec ex;
        qb_exec_cpu(&ex, threads);
        nn_layernorm_forward(&ex, tmp, mean, rstd, inp, w, b, N, C);
        for (int with_res = 0; with_res <= 1; with_res++) {
            /* reference: zero, the residual path's gradient, the norm's accumulated */
            float *d_ref = qt_alloc(n), *dw_ref = filled(C, 1.0f, 14), *db_ref = filled(C, 1.0f, 15);
            if (with_res) nn_residual_backward(&ex, d_ref, NULL, dres, n);
            nn_layernorm_backward(&ex, d_ref, dw_ref, db_ref, dout, inp, w, mean, rstd, N, C);
            float *d = qt_alloc(n), *dw = filled(C, 1.0f, 14), *db = filled(C, 1.0f, 15);
            fill_nan(d, n);
            nn_residual_layernorm_backward(&ex, d, dw, db, with_res ? dres : NULL, dout, inp, w, mean, rstd, N, C);
            assert_same("residual_layernorm_backward dinp", d_ref, d, n);
            assert_same("residual_layernorm_backward dw", dw_ref, dw, C);
            assert_same("residual_layernorm_backward db", db_ref, db, C);
            if (with_res) { /* dres may alias dinp */
                memcpy(d, dres, (size_t)n * sizeof(float));
                nn_residual_layernorm_backward(&ex, d, dw, db, d, dout, inp, w, mean, rstd, N, C);
                assert_same("residual_layernorm_backward dinp aliased", d_ref, d, n);
            }
            free(d_ref), free(dw_ref), free(db_ref), free(d), free(dw), free(db);
        }
    }
    free(inp), free(dout), free(dres), free(w), free(b), free(tmp), free(mean), free(rstd);
}

/* Overwriting attention backward against zeroed buffers and accumulating,
 * with padded keys and a sequence with no real key at all (whose gradients
 * the kernel never computes, so overwriting must write its zeros). */
static void test_attention_backward_first(void **state) {
    (void)state;
    const int64_t B = 3, T = 24, C = 32, H = 4, n = B * T * C, na = B * H * T * T;
    float *q = filled(n, 1.0f, 16), *k = filled(n, 1.0f, 17), *v = filled(n, 1.0f, 18), *dout = filled(n, 1.0f, 19);
    uint8_t mask[3 * 24];
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) mask[b * T + t] = b == 2 ? 0 : t < T - 5 * b;
    for (int threads = 1; threads <= 2; threads++) {
        qb_exec ex;
        qb_exec_cpu(&ex, threads);
        float *out = qt_alloc(n), *att = qt_alloc(na), *datt = qt_alloc(na);
        nn_attention_forward(&ex, out, att, q, k, v, mask, NULL, B, T, T, C, H, false);
        float *dq_ref = qt_alloc(n), *dk_ref = qt_alloc(n), *dv_ref = qt_alloc(n);
        nn_attention_backward(&ex, dq_ref, dk_ref, dv_ref, NULL, datt, dout, q, k, v, att, B, T, T, C, H);
        float *dq = qt_alloc(n), *dk = qt_alloc(n), *dv = qt_alloc(n);
        fill_nan(dq, n), fill_nan(dk, n), fill_nan(dv, n), fill_nan(datt, na);
        nn_attention_backward_first(&ex, dq, dk, dv, datt, dout, q, k, v, att, B, T, T, C, H);
        assert_same("attention dq", dq_ref, dq, n);
        assert_same("attention dk", dk_ref, dk, n);
        assert_same("attention dv", dv_ref, dv, n);
        free(out), free(att), free(datt), free(dq_ref), free(dk_ref), free(dv_ref), free(dq), free(dk), free(dv);
    }
    free(q), free(k), free(v), free(dout);
}

static void test_linear_backward_first(void **state) {
    (void)state;
    const int64_t N = N_ROWS, C = 48, OC = 40;
    float *inp = filled(N * C, 1.0f, 20), *w = filled(OC * C, 0.3f, 21), *dout = filled(N * OC, 1.0f, 22);
    for (int threads = 1; threads <= 2; threads++) {
        qb_exec ex;
        qb_exec_cpu(&ex, threads);
        float *dx_ref = qt_alloc(N * C), *dw_ref = filled(OC * C, 1.0f, 23), *db_ref = filled(OC, 1.0f, 24);
        nn_linear_backward(&ex, dx_ref, dw_ref, db_ref, dout, inp, w, N, C, OC);
        float *dx = qt_alloc(N * C), *dw = filled(OC * C, 1.0f, 23), *db = filled(OC, 1.0f, 24);
        fill_nan(dx, N * C);
        nn_linear_backward_first(&ex, dx, dw, db, dout, inp, w, N, C, OC);
        assert_same("linear dinp", dx_ref, dx, N * C);
        assert_same("linear dw", dw_ref, dw, OC * C); /* parameter gradients still accumulate */
        assert_same("linear db", db_ref, db, OC);
        free(dx_ref), free(dw_ref), free(db_ref), free(dx), free(dw), free(db);
    }
    free(inp), free(w), free(dout);
}

/* A block's backward leaves its scratch's contents on entry out of every
 * result: NaN there changes nothing, and dx is overwritten. */
static void test_block_scratch(void **state) {
    (void)state;
    const nn_block_dims d = {.B = 2, .T = 12, .C = 16, .F = 32, .H = 2};
    const int64_t n = d.B * d.T * d.C;
    qt_model m;
    qc_table_init_empty(&m.pt);
    qc_table_init_empty(&m.at);
    nn_block_params p, g;
    nn_block_acts a, da;
    assert_int_equal(nn_block_describe(&m.pt, "b.", &d, 2, 0), QIAO_OK);
    assert_int_equal(nn_block_describe_acts(&m.at, "b.", &d, 0), QIAO_OK);
    qt_model_alloc(&m, &p, &g, &a, &da);
    qt_fill_normal(m.params.base, (int64_t)m.pt.total, 0.3f, 25);
    float *x = filled(n, 1.0f, 26), *dout = filled(n, 1.0f, 27);
    qb_exec ex;
    qb_exec_cpu(&ex, 2);
    nn_block_forward(&ex, &a, &p, x, NULL, &d);
    float *dx_ref = qt_alloc(n), *g_ref = qt_alloc((int64_t)m.pt.total);
    qc_arena_zero(&m.dacts);
    nn_block_backward(&ex, dx_ref, &g, &da, dout, &a, &p, x, &d);
    memcpy(g_ref, m.grads.base, m.pt.total * sizeof(float));
    qc_arena_zero(&m.grads);
    fill_nan(m.dacts.base, (int64_t)m.at.total);
    float *dx = qt_alloc(n);
    fill_nan(dx, n);
    nn_block_backward(&ex, dx, &g, &da, dout, &a, &p, x, &d);
    assert_same("block dx", dx_ref, dx, n);
    assert_same("block parameter gradients", g_ref, m.grads.base, (int64_t)m.pt.total);
    free(x), free(dout), free(dx_ref), free(g_ref), free(dx);
    qt_model_free(&m);
}

/* ---- the optimizer ---------------------------------------------------------- */

static void optim_table(qc_table *tab) {
    qc_table_init_empty(tab);
    const int64_t s1[1] = {70000}, s2[1] = {37}, s3[1] = {90000}, s4[1] = {5};
    assert_int_equal(qc_table_add(tab, "a", 1, s1, QC_INIT_NORMAL, 0.5f, 0, QC_NO_FIELD), QIAO_OK);
    assert_int_equal(qc_table_add(tab, "f", 1, s2, QC_INIT_NORMAL, 0.5f, QC_FROZEN, QC_NO_FIELD), QIAO_OK);
    assert_int_equal(qc_table_add(tab, "b", 1, s3, QC_INIT_NORMAL, 0.5f, QC_NO_DECAY, QC_NO_FIELD), QIAO_OK);
    assert_int_equal(qc_table_add(tab, "f2", 1, s4, QC_INIT_NORMAL, 0.5f, QC_FROZEN, QC_NO_FIELD), QIAO_OK);
}

static void test_optim_frozen(void **state) {
    (void)state;
    qb_exec ex;
    qb_exec_cpu(&ex, 2);
    qc_table tab;
    optim_table(&tab);
    const int64_t n = (int64_t)tab.total;
    float *g = filled(n, 1.0f, 28);
    /* the norm counts the tensors that are not frozen, in double */
    double ss = 0.0;
    for (size_t i = 0; i < tab.n; i++)
        if (!(tab.t[i].flags & QC_FROZEN))
            for (int64_t e = 0; e < tab.t[i].numel; e++)
                ss += (double)g[tab.t[i].offset + e] * (double)g[tab.t[i].offset + e];
    assert_true(fabs(nn_grad_norm(&ex, &tab, g) - sqrt(ss)) <= 1e-12 * sqrt(ss));
    /* zeroing leaves frozen gradients alone */
    float *g0 = qt_alloc(n);
    memcpy(g0, g, (size_t)n * sizeof(float));
    nn_zero_grads(&ex, &tab, g);
    for (size_t i = 0; i < tab.n; i++) {
        const qc_tensor_desc *t = &tab.t[i];
        for (int64_t e = 0; e < t->numel; e++)
            assert_true(g[t->offset + e] == ((t->flags & QC_FROZEN) ? g0[t->offset + e] : 0.0f));
    }
    /* with nothing frozen, the same norm as the whole-arena clip, to the bit */
    for (size_t i = 0; i < tab.n; i++) tab.t[i].flags &= ~(uint32_t)QC_FROZEN;
    qt_fill_normal(g, n, 1.0f, 29);
    const double norm = nn_grad_norm(&ex, &tab, g);
    assert_true((float)norm == nn_clip_grad_norm(&ex, g, n, 0.0f));
    free(g), free(g0);
    qc_table_free(&tab);
}

/* Clipping by AdamW's grad_scale gives the bits of scaling the gradients
 * first (nn_clip_grad_norm) and updating with scale 1. */
static void test_clip_folded_into_adamw(void **state) {
    (void)state;
    qc_table tab;
    optim_table(&tab);
    /* nothing frozen: nn_clip_grad_norm has no table to skip by */
    for (size_t i = 0; i < tab.n; i++) tab.t[i].flags &= ~(uint32_t)QC_FROZEN;
    const int64_t n = (int64_t)tab.total;
    nn_adamw_config cfg = nn_adamw_default();
    cfg.lr = 0.05f;
    cfg.weight_decay = 0.5f;
    for (int threads = 1; threads <= 2; threads++) {
        qb_exec ex;
        qb_exec_cpu(&ex, threads);
        float *p1 = filled(n, 1.0f, 30), *p2 = filled(n, 1.0f, 30);
        float *m1 = qt_alloc(n), *v1 = qt_alloc(n), *m2 = qt_alloc(n), *v2 = qt_alloc(n);
        float *g1 = qt_alloc(n), *g2 = qt_alloc(n);
        for (int64_t t = 1; t <= 3; t++) {
            qt_fill_normal(g1, n, 1.0f, 40 + (uint64_t)t);
            memcpy(g2, g1, (size_t)n * sizeof(float));
            const float max_norm = t == 2 ? 1e9f : 1.0f; /* step 2 does not clip */
            nn_clip_grad_norm(&ex, g1, n, max_norm);
            nn_adamw_update(&ex, &tab, p1, g1, m1, v1, t, 1.0f, &cfg);
            const float s = nn_clip_scale(nn_grad_norm(&ex, &tab, g2), max_norm);
            assert_true(t == 2 ? s == 1.0f : s < 1.0f);
            nn_adamw_update(&ex, &tab, p2, g2, m2, v2, t, s, &cfg);
        }
        assert_same("adamw params", p1, p2, n);
        assert_same("adamw m", m1, m2, n);
        assert_same("adamw v", v1, v2, n);
        free(p1), free(p2), free(m1), free(v1), free(m2), free(v2), free(g1), free(g2);
    }
    qc_table_free(&tab);
}

static const struct CMUnitTest tests[] = {
    {"gelu_bias_backward", test_gelu_bias_backward, NULL, NULL, NULL},
    {"residual_layernorm_forward", test_residual_layernorm_forward, NULL, NULL, NULL},
    {"residual_layernorm_backward", test_residual_layernorm_backward, NULL, NULL, NULL},
    {"attention_backward_first", test_attention_backward_first, NULL, NULL, NULL},
    {"linear_backward_first", test_linear_backward_first, NULL, NULL, NULL},
    {"block_scratch", test_block_scratch, NULL, NULL, NULL},
    {"optim_frozen", test_optim_frozen, NULL, NULL, NULL},
    {"clip_folded_into_adamw", test_clip_folded_into_adamw, NULL, NULL, NULL},
};

QT_MAIN(tests)
