/* fusion/decoder: the caption decoder, gradient-checked (every parameter and
 * the context, tied and untied output, with padded context tokens), its KV
 * cache against the full forward (step by step, with beam reordering),
 * bit-identical for 1 and 2 threads, and its argument checks. */
#include <string.h>

#include "testutil.h"

#include "fusion/decoder.h"

/* Two blocks of two attentions and an MLP under a vocabulary-wide output:
 * f32 rounding leaves about 1.5e-3 in a central difference at h = 1e-3
 * (measured: the key bias of self-attention, whose gradient is exactly 0 by
 * softmax's shift invariance, reads 1.46e-3 there, and a dozen weights miss
 * by as much), so the step is 5e-3, where that noise is 3e-4 and the O(h^2)
 * truncation error of these O(1) activations about 1e-5. */
#define GC_H 5e-3f
#define GC_ATOL 1e-3
#define GC_RTOL 1e-2
#define GC_MAX 150
/* A step sums its attention over the written positions in another order than
 * the whole-sequence GEMM; logits are O(1). */
#define STEP_ATOL 2e-5f

static qb_exec ex1, ex2;

static int setup(void **state) {
    (void)state;
    qb_exec_cpu(&ex1, 1);
    qb_exec_cpu(&ex2, 2);
    return 0;
}

typedef struct dec_case {
    const qb_exec *ex;
    qf_decoder_config cfg;
    int64_t B, T, Ty;
    qt_model m;
    qf_decoder_params p, g;
    qf_decoder_acts a, da;
    int32_t *ids;
    float *y, *dy, *R;
    uint8_t *ym;
} dec_case;

static void dec_fwd(void *ctx) {
    dec_case *c = ctx;
    qf_decoder_forward(c->ex, &c->a, &c->p, c->ids, c->y, c->ym, &c->cfg, c->B, c->T, c->Ty);
}

static void dec_bwd(dec_case *c) {
    memset(c->m.grads.base, 0, (size_t)c->m.pt.total * sizeof(float));
    memset(c->m.dacts.base, 0, (size_t)c->m.at.total * sizeof(float));
    memset(c->dy, 0, (size_t)(c->B * c->Ty * c->cfg.ctx_width) * sizeof(float));
    qf_decoder_backward(c->ex, c->dy, &c->g, &c->da, c->R, &c->a, &c->p, c->ids, c->y, &c->cfg, c->B, c->T, c->Ty);
}

/* Weights N(0, 1/fan_in) keep every output O(1) (testutil.h). */
static void dec_setup(dec_case *c, qf_decoder_config cfg, int64_t B, int64_t T, int64_t Ty, uint64_t seed) {
    memset(c, 0, sizeof *c);
    c->cfg = cfg, c->B = B, c->T = T, c->Ty = Ty;
    assert_int_equal(qf_decoder_describe(&c->m.pt, "dec.", &cfg, 0), QIAO_OK);
    assert_int_equal(qf_decoder_describe_acts(&c->m.at, "dec.", &cfg, B, T, Ty, 0), QIAO_OK);
    qt_model_alloc(&c->m, &c->p, &c->g, &c->a, &c->da);
    for (size_t i = 0; i < c->m.pt.n; i++) {
        const qc_tensor_desc *t = &c->m.pt.t[i];
        float *x = c->m.params.base + t->offset;
        if (strstr(t->name, "ln") && strstr(t->name, ".weight"))
            qt_fill_uniform(x, t->numel, 0.8f, 1.2f, seed + i);
        else if (t->ndim == 2 && !strstr(t->name, "pos") && strcmp(t->name, "dec.tok") != 0)
            qt_fill_normal(x, t->numel, 1.0f / sqrtf((float)t->shape[1]), seed + i);
        else
            qt_fill_normal(x, t->numel, t->ndim == 2 ? 0.5f : 0.1f, seed + i);
    }
    const int64_t ny = B * Ty * cfg.ctx_width;
    c->y = qt_alloc(ny), c->dy = qt_alloc(ny), c->R = qt_alloc(B * T * cfg.vocab);
    qt_fill_normal(c->y, ny, 1.0f, seed + 100);
    qt_fill_normal(c->R, B * T * cfg.vocab, 1.0f, seed + 101);
    c->ids = malloc((size_t)(B * T) * sizeof(int32_t));
    c->ym = malloc((size_t)(B * Ty));
    assert_non_null(c->ids), assert_non_null(c->ym);
    for (int64_t i = 0; i < B * T; i++)
        c->ids[i] = (int32_t)((i * 7 + seed) % (uint64_t)cfg.vocab);
    memset(c->ym, 1, (size_t)(B * Ty));
}

static void dec_free(dec_case *c) {
    qt_model_free(&c->m);
    free(c->y), free(c->dy), free(c->R), free(c->ids), free(c->ym);
}

static void gradcheck(bool tied) {
    dec_case c;
    /* untied with context positions (one more than the context's tokens) */
    qf_decoder_config cfg = {11, 8, 2, 2, 16, 6, 5, tied, tied ? 0 : 4, 0};
    dec_setup(&c, cfg, 2, 4, 3, tied ? 1 : 2);
    c.ym[1 * 3 + 2] = 0; /* a padded context token */
    c.ex = &ex2;
    dec_fwd(&c);
    dec_bwd(&c);
    const int64_t nout = c.B * c.T * cfg.vocab;
    int bad = 0;
    for (size_t i = 0; i < c.m.pt.n; i++) {
        const qc_tensor_desc *t = &c.m.pt.t[i];
        char what[200];
        snprintf(what, sizeof what, "%s d%s", tied ? "tied" : "untied", t->name);
        bad += qt_gradcheck(what, dec_fwd, &c, c.a.logits, c.R, nout, c.m.params.base + t->offset,
                            c.m.grads.base + t->offset, t->numel, GC_H, GC_ATOL, GC_RTOL, GC_MAX);
    }
    bad += qt_gradcheck("dy", dec_fwd, &c, c.a.logits, c.R, nout, c.y, c.dy, c.B * c.Ty * cfg.ctx_width, GC_H, GC_ATOL,
                        GC_RTOL, GC_MAX);
    assert_int_equal(bad, 0);
    /* the padded context token gets no gradient; the unused positions of
     * pos (T..max_len) none either */
    for (int64_t k = 0; k < cfg.ctx_width; k++)
        assert_true(c.dy[(1 * 3 + 2) * cfg.ctx_width + k] == 0.0f);
    const qc_tensor_desc *pos = qt_model_tensor(&c.m, "dec.pos");
    for (int64_t i = c.T * cfg.width; i < cfg.max_len * cfg.width; i++)
        assert_true(c.m.grads.base[pos->offset + (size_t)i] == 0.0f);
    /* tied: no separate output weight */
    assert_true((qc_table_find(&c.m.pt, "dec.out.weight") < 0) == tied);
    dec_free(&c);
}

static void test_decoder_gradcheck_tied(void **state) {
    (void)state;
    gradcheck(true);
}

static void test_decoder_gradcheck_untied(void **state) {
    (void)state;
    gradcheck(false);
}

/* Step by step through the cache, each position's logits equal the full
 * forward's at that position (teacher forcing over the same ids). */
static void test_decoder_cache_matches_forward(void **state) {
    (void)state;
    dec_case c;
    qf_decoder_config cfg = {13, 16, 2, 4, 32, 8, 6, true, 5, 0};
    dec_setup(&c, cfg, 3, 7, 5, 7);
    c.ym[2 * 5 + 4] = c.ym[2 * 5 + 3] = 0;
    c.ex = &ex2;
    dec_fwd(&c);
    qf_decoder_cache cache;
    assert_int_equal(qf_decoder_cache_init(&cache, &cfg, c.B, cfg.max_len, c.Ty), QIAO_OK);
    qf_decoder_cache_start(&ex2, &cache, &c.p, c.y, c.ym, &cfg);
    float worst = 0.0f;
    for (int64_t t = 0; t < c.T; t++) {
        int32_t ids[3];
        for (int64_t b = 0; b < c.B; b++)
            ids[b] = c.ids[b * c.T + t];
        const float *lg = NULL;
        assert_int_equal(qf_decoder_step(&ex2, &cache, &c.p, ids, NULL, &cfg, &lg), QIAO_OK);
        for (int64_t b = 0; b < c.B; b++)
            for (int64_t v = 0; v < cfg.vocab; v++) {
                const float d = fabsf(lg[b * cfg.vocab + v] - c.a.logits[(b * c.T + t) * cfg.vocab + v]);
                if (d > worst) worst = d;
            }
    }
    printf("worst |step - forward| logit: %g\n", (double)worst);
    assert_true(worst <= STEP_ATOL);
    qf_decoder_cache_free(&cache);
    dec_free(&c);
}

/* Beam reordering: after two steps, rows swap histories (parents {1, 0, 0});
 * the third step's logits equal a fresh run over the reordered prefixes. */
static void test_decoder_cache_reorder(void **state) {
    (void)state;
    dec_case c;
    qf_decoder_config cfg = {13, 16, 2, 4, 32, 8, 6, false, 0, 0};
    dec_setup(&c, cfg, 3, 3, 4, 9);
    c.ex = &ex1;
    const int32_t seq[3][3] = {{1, 2, 3}, {4, 5, 6}, {7, 8, 9}};
    const int64_t parents[3] = {1, 0, 0};
    qf_decoder_cache cache;
    assert_int_equal(qf_decoder_cache_init(&cache, &cfg, 3, 4, c.Ty), QIAO_OK);
    qf_decoder_cache_start(&ex1, &cache, &c.p, c.y, NULL, &cfg);
    const float *lg = NULL;
    for (int t = 0; t < 2; t++) {
        int32_t ids[3] = {seq[0][t], seq[1][t], seq[2][t]};
        assert_int_equal(qf_decoder_step(&ex1, &cache, &c.p, ids, NULL, &cfg, &lg), QIAO_OK);
    }
    const int32_t last[3] = {10, 11, 12};
    assert_int_equal(qf_decoder_step(&ex1, &cache, &c.p, last, parents, &cfg, &lg), QIAO_OK);
    /* reference: the full forward over each row's reordered prefix and context */
    for (int64_t b = 0; b < 3; b++) {
        const int64_t pb = parents[b];
        for (int t = 0; t < 2; t++)
            c.ids[b * 3 + t] = seq[pb][t];
        c.ids[b * 3 + 2] = last[b];
    }
    float *y2 = qt_alloc(3 * c.Ty * cfg.ctx_width);
    for (int64_t b = 0; b < 3; b++)
        memcpy(y2 + b * c.Ty * cfg.ctx_width, c.y + parents[b] * c.Ty * cfg.ctx_width,
               (size_t)(c.Ty * cfg.ctx_width) * sizeof(float));
    qf_decoder_forward(&ex1, &c.a, &c.p, c.ids, y2, NULL, &cfg, 3, 3, c.Ty);
    for (int64_t b = 0; b < 3; b++)
        for (int64_t v = 0; v < cfg.vocab; v++)
            assert_float_equal(lg[b * cfg.vocab + v], c.a.logits[(b * 3 + 2) * cfg.vocab + v], STEP_ATOL);
    free(y2);
    qf_decoder_cache_free(&cache);
    dec_free(&c);
}

static void test_decoder_threads(void **state) {
    (void)state;
    dec_case c;
    qf_decoder_config cfg = {50, 32, 2, 4, 64, 16, 24, true, 0, 0};
    dec_setup(&c, cfg, 4, 12, 20, 11);
    c.ym[20 + 19] = 0;
    const int64_t nl = 4 * 12 * 50, ny = 4 * 20 * 24;
    c.ex = &ex1;
    dec_fwd(&c);
    dec_bwd(&c);
    float *o = qt_alloc(nl), *g = qt_alloc((int64_t)c.m.pt.total), *dy = qt_alloc(ny);
    memcpy(o, c.a.logits, sizeof(float) * (size_t)nl);
    memcpy(g, c.m.grads.base, sizeof(float) * c.m.pt.total);
    memcpy(dy, c.dy, sizeof(float) * (size_t)ny);
    c.ex = &ex2;
    dec_fwd(&c);
    dec_bwd(&c);
    assert_memory_equal(o, c.a.logits, sizeof(float) * (size_t)nl);
    assert_memory_equal(g, c.m.grads.base, sizeof(float) * c.m.pt.total);
    assert_memory_equal(dy, c.dy, sizeof(float) * (size_t)ny);
    free(o), free(g), free(dy);
    dec_free(&c);
}

static void test_decoder_bad_args(void **state) {
    (void)state;
    qf_decoder_config ok = {13, 16, 2, 4, 32, 3, 6, true, 0, 0};
    qf_decoder_config bad = ok;
    bad.vocab = 1;
    assert_int_equal(qf_decoder_check(&bad), QIAO_ERR_INVALID_ARGUMENT);
    bad = ok, bad.heads = 3;
    assert_int_equal(qf_decoder_check(&bad), QIAO_ERR_INVALID_ARGUMENT);
    bad = ok, bad.layers = QF_DECODER_MAX_LAYERS + 1;
    assert_int_equal(qf_decoder_check(&bad), QIAO_ERR_INVALID_ARGUMENT);
    bad = ok, bad.max_len = 0;
    assert_int_equal(qf_decoder_check(&bad), QIAO_ERR_INVALID_ARGUMENT);
    bad = ok, bad.ctx_positions = -1;
    assert_int_equal(qf_decoder_check(&bad), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qf_decoder_check(NULL), QIAO_ERR_INVALID_ARGUMENT);
    qf_decoder_cache cache;
    /* more context tokens than the model has positions for */
    bad = ok, bad.ctx_positions = 4;
    assert_int_equal(qf_decoder_cache_init(&cache, &bad, 2, 3, 5), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "positions for 4"));
    qc_table tab;
    qc_table_init_empty(&tab);
    assert_int_equal(qf_decoder_describe_acts(&tab, "", &bad, 2, 3, 5, 0), QIAO_ERR_INVALID_ARGUMENT);
    qc_table_free(&tab);
    assert_int_equal(qf_decoder_cache_init(&cache, &ok, 2, 4, 5), QIAO_ERR_INVALID_ARGUMENT); /* T_max > max_len */
    assert_int_equal(qf_decoder_cache_init(&cache, &ok, 0, 2, 5), QIAO_ERR_INVALID_ARGUMENT);
    dec_case c;
    dec_setup(&c, ok, 2, 3, 5, 3);
    assert_int_equal(qf_decoder_cache_init(&cache, &ok, 2, 3, 5), QIAO_OK);
    qf_decoder_cache_start(&ex1, &cache, &c.p, c.y, NULL, &ok);
    const float *lg = NULL;
    const int32_t out_of_range[2] = {0, 13}, fine[2] = {1, 2};
    assert_int_equal(qf_decoder_step(&ex1, &cache, &c.p, out_of_range, NULL, &ok, &lg), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "outside the vocabulary"));
    const int64_t stray[2] = {0, 2};
    assert_int_equal(qf_decoder_step(&ex1, &cache, &c.p, fine, stray, &ok, &lg), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(cache.len, 0); /* a refused step writes nothing */
    for (int t = 0; t < 3; t++)
        assert_int_equal(qf_decoder_step(&ex1, &cache, &c.p, fine, NULL, &ok, &lg), QIAO_OK);
    assert_int_equal(qf_decoder_step(&ex1, &cache, &c.p, fine, NULL, &ok, &lg), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "all are written"));
    qf_decoder_cache_free(&cache);
    qf_decoder_cache_free(&cache); /* a cleared cache frees again */
    dec_free(&c);
}

#define CASE(name)                                                                                                     \
    { #name, test_##name, setup, NULL, NULL }
static const struct CMUnitTest tests[] = {
    CASE(decoder_gradcheck_tied), CASE(decoder_gradcheck_untied), CASE(decoder_cache_matches_forward),
    CASE(decoder_cache_reorder),  CASE(decoder_threads),          CASE(decoder_bad_args),
};

QT_MAIN(tests)
