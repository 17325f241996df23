/* The encoder trunk every modality shares: gradients against finite
 * differences (input, positions, a block, the final norm, the projection;
 * entering at the embedding and at the token sequence),
 * thread-count independence, padding independence, unit-norm output; with
 * mean and with max pooling, and in the variants an imported BERT needs
 * (post-norm blocks, a LayerNorm on the input, eps 1e-12, the first
 * token's vector, no projection or one without bias). */
#include <string.h>

#include <cjson/cJSON.h>

#include "nn/nn.h"
#include "testutil.h"

typedef struct trunk_case {
    qb_exec ex;
    nn_trunk_dims d;
    qt_model m;
    nn_trunk_params p, g;
    nn_trunk_acts a, da;
    float *x, *dx, *R, *out_copy;
    uint8_t *mask;
} trunk_case;

/* The trunk options the cases run with (pool, norm, eps, ln_in, proj, act, causal). */
typedef struct variant {
    nn_pool pool;
    nn_norm norm;
    float eps;
    bool ln_in;
    nn_proj proj;
    nn_act act;
    bool causal;
} variant;
static variant g_var = {NN_POOL_MEAN, NN_NORM_PRE, 0.0f, false, NN_PROJ_BIAS, NN_ACT_GELU, false};

static void setup(trunk_case *k, int threads, int64_t B, int64_t T) {
    memset(k, 0, sizeof *k);
    qb_exec_cpu(&k->ex, threads);
    k->d = (nn_trunk_dims){.B = B,
                           .T = T,
                           .C = 8,
                           .F = 16,
                           .H = 2,
                           .L = 2,
                           .max_T = 8,
                           .D = g_var.proj == NN_PROJ_NONE ? 8 : 6,
                           .pool = g_var.pool,
                           .norm = g_var.norm,
                           .eps = g_var.eps,
                           .ln_in = g_var.ln_in,
                           .proj = g_var.proj,
                           .act = g_var.act,
                           .causal = g_var.causal};
    qc_table_init_empty(&k->m.pt);
    qc_table_init_empty(&k->m.at);
    assert_int_equal(nn_trunk_describe(&k->m.pt, "enc.", &k->d, 0), QIAO_OK);
    assert_int_equal(nn_trunk_describe_acts(&k->m.at, "enc.", &k->d, 0), QIAO_OK);
    qt_model_alloc(&k->m, &k->p, &k->g, &k->a, &k->da);
    /* O(1) weights (not the 0.02 init) so finite differences see real
     * curvature; norms keep their ones/zeros plus a perturbation. */
    qt_fill_normal(k->m.params.base, (int64_t)k->m.pt.total, 0.3f, 7);
    for (size_t i = 0; i < k->m.pt.n; i++) {
        const qc_tensor_desc *t = &k->m.pt.t[i];
        if (strstr(t->name, "ln") && strstr(t->name, "weight"))
            for (int64_t j = 0; j < t->numel; j++) k->m.params.base[t->offset + j] += 1.0f;
    }
    const int64_t n = B * T * k->d.C;
    k->x = qt_alloc(n);
    k->dx = qt_alloc(n);
    k->R = qt_alloc(B * k->d.D);
    k->out_copy = qt_alloc(B * k->d.D);
    qt_fill_normal(k->x, n, 1.0f, 11);
    qt_fill_normal(k->R, B * k->d.D, 1.0f, 13);
    k->mask = calloc((size_t)(B * T), 1);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) k->mask[b * T + t] = t < T - b; /* sequence b has T - b real tokens */
}

static void teardown(trunk_case *k) {
    qt_model_free(&k->m);
    free(k->x), free(k->dx), free(k->R), free(k->out_copy), free(k->mask);
}

static void fwd(void *ctx) {
    trunk_case *k = ctx;
    nn_trunk_forward(&k->ex, &k->a, &k->p, k->x, k->mask, &k->d);
}

static void backward(trunk_case *k) {
    qc_arena_zero(&k->m.grads);
    qc_arena_zero(&k->m.dacts);
    memset(k->dx, 0, sizeof(float) * (size_t)(k->d.B * k->d.T * k->d.C));
    fwd(k);
    nn_trunk_backward(&k->ex, k->dx, &k->g, &k->da, k->R, NULL, &k->a, &k->p, k->x, k->mask, &k->d);
}

/* A tensor the variant lacks (ln_f of a post-norm trunk...) is skipped. */
static int check_param(trunk_case *k, const char *name) {
    if (qc_table_find(&k->m.pt, name) < 0) return 0;
    const qc_tensor_desc *t = qt_model_tensor(&k->m, name);
    return qt_gradcheck(name, fwd, k, k->a.emb, k->R, k->d.B * k->d.D, k->m.params.base + t->offset,
                        k->m.grads.base + t->offset, t->numel, 1e-3f, 1e-3, 1e-2, 64);
}

static void gradients(void **state) {
    (void)state;
    trunk_case k;
    setup(&k, 1, 3, 5);
    backward(&k);
    int bad = qt_gradcheck("x", fwd, &k, k.a.emb, k.R, k.d.B * k.d.D, k.x, k.dx, k.d.B * k.d.T * k.d.C, 1e-3f,
                           1e-3, 1e-2, 120);
    const char *names[] = {"enc.pos",         "enc.blocks.0.attn.q.weight", "enc.blocks.1.mlp.fc.weight",
                           "enc.blocks.1.ln2.bias", "enc.blocks.0.ln1.weight", "enc.ln_f.weight",
                           "enc.proj.weight", "enc.proj.bias",              "enc.ln_in.weight",
                           "enc.ln_in.bias"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) bad += check_param(&k, names[i]);
    /* Padded tokens get no input gradient. */
    for (int64_t b = 0; b < k.d.B; b++)
        for (int64_t t = 0; t < k.d.T; t++)
            if (!k.mask[b * k.d.T + t])
                for (int64_t c = 0; c < k.d.C; c++) assert_true(k.dx[(b * k.d.T + t) * k.d.C + c] == 0.0f);
    assert_int_equal(bad, 0);
    teardown(&k);
}

/* The gradient entering at the token sequence after the final norm (for
 * heads that read the tokens): L = sum R2 * lnf, against finite differences;
 * and both entries at once give the sum of each alone. */
static void token_gradients(void **state) {
    (void)state;
    trunk_case k;
    setup(&k, 1, 3, 5);
    const int64_t n = k.d.B * k.d.T * k.d.C;
    float *R2 = qt_alloc(n);
    qt_fill_normal(R2, n, 1.0f, 17);
    qc_arena_zero(&k.m.grads);
    qc_arena_zero(&k.m.dacts);
    memset(k.dx, 0, sizeof(float) * (size_t)n);
    fwd(&k);
    nn_trunk_backward(&k.ex, k.dx, &k.g, &k.da, NULL, R2, &k.a, &k.p, k.x, k.mask, &k.d);
    /* h = 3e-3: L sums B*T*C float outputs, whose rounding swamps a 1e-3 step. */
    int bad = qt_gradcheck("x via tokens", fwd, &k, k.a.lnf, R2, n, k.x, k.dx, n, 3e-3f, 1e-3, 1e-2, 120);
    const char *names[] = {"enc.pos",       "enc.blocks.0.attn.q.weight", "enc.blocks.1.mlp.fc.weight",
                           "enc.ln_f.weight", "enc.ln_f.bias",              "enc.ln_in.weight",
                           "enc.blocks.1.ln2.weight"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (qc_table_find(&k.m.pt, names[i]) < 0) continue;
        const qc_tensor_desc *t = qt_model_tensor(&k.m, names[i]);
        bad += qt_gradcheck(names[i], fwd, &k, k.a.lnf, R2, n, k.m.params.base + t->offset, k.m.grads.base + t->offset,
                            t->numel, 3e-3f, 1e-3, 1e-2, 64);
    }
    /* The projection comes after the tokens: no gradient reaches it. */
    if (qc_table_find(&k.m.pt, "enc.proj.weight") >= 0) {
        const qc_tensor_desc *pw = qt_model_tensor(&k.m, "enc.proj.weight");
        for (int64_t j = 0; j < pw->numel; j++) assert_true(k.m.grads.base[pw->offset + j] == 0.0f);
    }
    assert_int_equal(bad, 0);
    /* Linearity: both entries = embedding alone + tokens alone. */
    const size_t np = k.m.pt.total;
    float *g_tok = qt_alloc((int64_t)np), *dx_tok = qt_alloc(n);
    memcpy(g_tok, k.m.grads.base, np * sizeof(float));
    memcpy(dx_tok, k.dx, (size_t)n * sizeof(float));
    backward(&k); /* the embedding alone */
    float *g_emb = qt_alloc((int64_t)np);
    memcpy(g_emb, k.m.grads.base, np * sizeof(float));
    qc_arena_zero(&k.m.grads);
    qc_arena_zero(&k.m.dacts);
    nn_trunk_backward(&k.ex, k.dx, &k.g, &k.da, k.R, R2, &k.a, &k.p, k.x, k.mask, &k.d);
    double worst = 0, scale = 0;
    for (size_t j = 0; j < np; j++) {
        worst = fmax(worst, fabs((double)k.m.grads.base[j] - g_emb[j] - g_tok[j]));
        scale = fmax(scale, fabs((double)k.m.grads.base[j]));
    }
    printf("both entries vs the sum of each: max |diff| %.3g of max |grad| %.3g\n", worst, scale);
    assert_true(worst <= 1e-5 * scale);
    free(R2), free(g_tok), free(dx_tok), free(g_emb);
    teardown(&k);
}

static void unit_norm_and_threads(void **state) {
    (void)state;
    trunk_case k1, k2;
    setup(&k1, 1, 3, 5);
    setup(&k2, 2, 3, 5);
    fwd(&k1);
    fwd(&k2);
    for (int64_t b = 0; b < 3; b++) {
        double s = 0;
        for (int64_t j = 0; j < k1.d.D; j++) s += (double)k1.a.emb[b * k1.d.D + j] * k1.a.emb[b * k1.d.D + j];
        assert_true(fabs(s - 1.0) < 1e-5);
    }
    assert_memory_equal(k1.a.emb, k2.a.emb, sizeof(float) * (size_t)(3 * k1.d.D));
    teardown(&k1);
    teardown(&k2);
}

/* Sequence 2 (3 real tokens of 5) must embed the same when it is alone
 * with exactly its real tokens. */
static void padding_independent(void **state) {
    (void)state;
    trunk_case big, one;
    setup(&big, 1, 3, 5);
    fwd(&big);
    setup(&one, 1, 1, 3);
    memcpy(one.m.params.base, big.m.params.base, sizeof(float) * big.m.pt.total);
    for (int64_t t = 0; t < 3; t++) {
        memcpy(one.x + t * 8, big.x + (2 * 5 + t) * 8, sizeof(float) * 8);
        one.mask[t] = 1;
    }
    fwd(&one);
    const int64_t D = big.d.D;
    for (int64_t j = 0; j < D; j++) assert_true(fabsf(one.a.emb[j] - big.a.emb[2 * D + j]) < 1e-5f);
    teardown(&big);
    teardown(&one);
}

/* Max pooling: the same checks (the argmax route of the gradient, no
 * gradient into padding, padding independence). Continuous random inputs
 * have no ties, so the max is differentiable at the checked point. */
static void max_pool(void **state) {
    g_var.pool = NN_POOL_MAX;
    gradients(state);
    token_gradients(state);
    padding_independent(state);
    unit_norm_and_threads(state);
    g_var.pool = NN_POOL_MEAN;
}

/* The activation-gradient scratch's contents on entry change nothing (the
 * trunk writes each gradient before it reads it, so callers stop clearing
 * it): NaN there gives the bits a zeroed scratch gives, for every pooling and
 * both entries (embedding, tokens). */
static void dirty_scratch(void **state) {
    (void)state;
    const nn_pool entry_pool = g_var.pool;
    for (int pool = NN_POOL_MEAN; pool <= NN_POOL_LAST; pool++) {
        g_var.pool = (nn_pool)pool;
        trunk_case k;
        setup(&k, 2, 3, 5);
        const int64_t n = k.d.B * k.d.T * k.d.C, np = (int64_t)k.m.pt.total;
        float *R2 = qt_alloc(n), *g_ref = qt_alloc(np), *dx_ref = qt_alloc(n);
        qt_fill_normal(R2, n, 1.0f, 19);
        fwd(&k);
        for (int entry = 0; entry < 3; entry++) {
            const float *demb = entry != 1 ? k.R : NULL, *dtok = entry != 0 ? R2 : NULL;
            for (int dirty = 0; dirty < 2; dirty++) {
                qc_arena_zero(&k.m.grads);
                memset(k.dx, 0, sizeof(float) * (size_t)n);
                if (dirty)
                    for (size_t i = 0; i < k.m.at.total; i++) k.m.dacts.base[i] = NAN;
                else
                    qc_arena_zero(&k.m.dacts);
                nn_trunk_backward(&k.ex, k.dx, &k.g, &k.da, demb, dtok, &k.a, &k.p, k.x, k.mask, &k.d);
                if (!dirty) {
                    memcpy(g_ref, k.m.grads.base, (size_t)np * sizeof(float));
                    memcpy(dx_ref, k.dx, (size_t)n * sizeof(float));
                    continue;
                }
                for (int64_t i = 0; i < np; i++) assert_true(k.m.grads.base[i] == g_ref[i]);
                for (int64_t i = 0; i < n; i++) assert_true(k.dx[i] == dx_ref[i]);
            }
        }
        free(R2), free(g_ref), free(dx_ref);
        teardown(&k);
    }
    g_var.pool = entry_pool;
}

/* The "pool" key of a modality config. */
static void pool_config(void **state) {
    (void)state;
    const char *cases[] = {"{}", "{\"pool\":\"mean\"}", "{\"pool\":\"max\"}", "{\"pool\":\"cls\"}", "{\"pool\":1}",
                           "{\"pool\":\"first\"}"};
    const qiao_status want[] = {QIAO_OK, QIAO_OK, QIAO_OK, QIAO_ERR_FORMAT, QIAO_ERR_FORMAT, QIAO_OK};
    const nn_pool got_pool[] = {NN_POOL_MAX, NN_POOL_MEAN, NN_POOL_MAX, 0, 0, NN_POOL_FIRST};
    for (int i = 0; i < 6; i++) {
        cJSON *o = cJSON_Parse(cases[i]);
        nn_pool p = NN_POOL_MEAN;
        assert_int_equal(nn_pool_from_json(o, "image", NN_POOL_MAX, &p), want[i]);
        if (want[i] == QIAO_OK) assert_int_equal(p, got_pool[i]);
        else assert_non_null(strstr(qiao_last_error(), "image.pool"));
        cJSON_Delete(o);
    }
    qc_table t;
    qc_table_init_empty(&t);
    nn_trunk_dims d = {.B = 1, .T = 4, .C = 8, .F = 16, .H = 2, .L = 1, .max_T = 8, .D = 4, .pool = (nn_pool)7};
    assert_int_equal(nn_trunk_describe(&t, "x.", &d, 0), QIAO_ERR_INVALID_ARGUMENT);
    qc_table_free(&t);
}

/* The variants an imported encoder needs, through the same checks: a BERT
 * read at its [CLS] token without a projection (e5 and bge read the mean or
 * [CLS]; Chinese-CLIP's text tower projects without bias). */
/* Causal attention: a token's output does not move when a later token
 * changes, and does without it; the last-token pooling reads each row's
 * last real token; quick GELU is x sigmoid(1.702 x). */
static void causal_and_last(void **state) {
    (void)state;
    for (int causal = 0; causal < 2; causal++) {
        g_var = (variant){NN_POOL_LAST, NN_NORM_PRE, 1e-5f, false, NN_PROJ_NONE, NN_ACT_QUICK_GELU, causal};
        trunk_case k;
        setup(&k, 1, 3, 5);
        const int64_t T = k.d.T, C = k.d.C, n = k.d.B * T * C;
        fwd(&k);
        float *before = qt_alloc(n), *pooled = qt_alloc(k.d.B * C);
        memcpy(before, k.a.lnf, (size_t)n * sizeof(float));
        memcpy(pooled, k.a.pooled, (size_t)(k.d.B * C) * sizeof(float));
        for (int64_t b = 0; b < k.d.B; b++) /* row b's last real token is T - 1 - b */
            assert_memory_equal(pooled + b * C, before + (b * T + T - 1 - b) * C, (size_t)C * sizeof(float));
        for (int64_t c = 0; c < C; c++) k.x[(T - 1) * C + c] += 1.0f; /* row 0's last token */
        fwd(&k);
        bool earlier_moved = false;
        for (int64_t i = 0; i < (T - 1) * C; i++) earlier_moved |= k.a.lnf[i] != before[i];
        assert_true(earlier_moved == !causal);
        free(before), free(pooled);
        teardown(&k);
    }
    qb_exec ex;
    qb_exec_cpu(&ex, 1);
    const float xs[] = {-30.0f, -2.5f, -0.3f, 0.0f, 0.7f, 3.0f, 40.0f};
    float ys[7];
    nn_quick_gelu_forward(&ex, ys, xs, 7);
    for (int i = 0; i < 7; i++) {
        const double want = xs[i] / (1.0 + exp(-1.702 * xs[i]));
        assert_true(fabs(ys[i] - want) <= 1e-6 * (1.0 + fabs(want)));
    }
    g_var = (variant){NN_POOL_MEAN, NN_NORM_PRE, 0.0f, false, NN_PROJ_BIAS, NN_ACT_GELU, false};
}

static void imported_variants(void **state) {
    const variant vs[] = {{NN_POOL_FIRST, NN_NORM_POST, 1e-12f, true, NN_PROJ_NONE, NN_ACT_GELU, false},
                          {NN_POOL_MEAN, NN_NORM_POST, 1e-12f, true, NN_PROJ_NOBIAS, NN_ACT_GELU, false},
                          {NN_POOL_FIRST, NN_NORM_PRE, 1e-5f, true, NN_PROJ_NOBIAS, NN_ACT_GELU, false},
                          /* CLIP's vision tower, then its text tower; then quick GELU and causal post-norm */
                          {NN_POOL_FIRST, NN_NORM_PRE, 1e-5f, true, NN_PROJ_NOBIAS, NN_ACT_QUICK_GELU, false},
                          {NN_POOL_LAST, NN_NORM_PRE, 1e-5f, false, NN_PROJ_NOBIAS, NN_ACT_QUICK_GELU, true},
                          {NN_POOL_MEAN, NN_NORM_POST, 1e-12f, true, NN_PROJ_NONE, NN_ACT_QUICK_GELU, true}};
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        g_var = vs[i];
        gradients(state);
        token_gradients(state);
        padding_independent(state);
        unit_norm_and_threads(state);
        dirty_scratch(state);
    }
    g_var = (variant){NN_POOL_MEAN, NN_NORM_PRE, 0.0f, false, NN_PROJ_BIAS, NN_ACT_GELU, false};
    causal_and_last(state);
    /* what a variant holds */
    qc_table t;
    qc_table_init_empty(&t);
    nn_trunk_dims d = {.B = 1, .T = 4, .C = 8, .F = 16, .H = 2, .L = 1, .max_T = 8, .D = 8, .norm = NN_NORM_POST,
                       .ln_in = true, .proj = NN_PROJ_NONE, .pool = NN_POOL_FIRST};
    assert_int_equal(nn_trunk_describe(&t, "x.", &d, 0), QIAO_OK);
    assert_true(qc_table_find(&t, "x.ln_in.weight") >= 0 && qc_table_find(&t, "x.ln_f.weight") < 0 &&
                qc_table_find(&t, "x.proj.weight") < 0);
    qc_table_free(&t);
    qc_table_init_empty(&t);
    d.D = 4; /* no projection, yet another width */
    assert_int_equal(nn_trunk_describe(&t, "x.", &d, 0), QIAO_ERR_INVALID_ARGUMENT);
    d.D = 8, d.norm = (nn_norm)3;
    assert_int_equal(nn_trunk_describe(&t, "x.", &d, 0), QIAO_ERR_INVALID_ARGUMENT);
    d.norm = NN_NORM_POST, d.eps = -1.0f;
    assert_int_equal(nn_trunk_describe(&t, "x.", &d, 0), QIAO_ERR_INVALID_ARGUMENT);
    d.eps = NAN;
    assert_int_equal(nn_trunk_describe(&t, "x.", &d, 0), QIAO_ERR_INVALID_ARGUMENT);
    qc_table_free(&t);
}

static void bad_dims(void **state) {
    (void)state;
    qc_table t;
    qc_table_init_empty(&t);
    nn_trunk_dims d = {.B = 1, .T = 9, .C = 8, .F = 16, .H = 3, .L = 1, .max_T = 8, .D = 4};
    assert_int_equal(nn_trunk_describe(&t, "x.", &d, 0), QIAO_ERR_INVALID_ARGUMENT); /* C % H, T > max_T */
    d.H = 2;
    assert_int_equal(nn_trunk_describe_acts(&t, "x.", &d, 0), QIAO_ERR_INVALID_ARGUMENT); /* T > max_T */
    d.T = 8;
    d.L = NN_MAX_LAYERS + 1;
    assert_int_equal(nn_trunk_describe(&t, "x.", &d, 0), QIAO_ERR_INVALID_ARGUMENT);
    qc_table_free(&t);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(gradients),           cmocka_unit_test(token_gradients), cmocka_unit_test(unit_norm_and_threads),
    cmocka_unit_test(padding_independent), cmocka_unit_test(bad_dims),        cmocka_unit_test(max_pool),
    cmocka_unit_test(pool_config),         cmocka_unit_test(dirty_scratch),   cmocka_unit_test(imported_variants),
};
QT_MAIN(tests)
