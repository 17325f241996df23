/* tests/golden/test_bert_golden.c - the encoder trunk in its post-norm form
 * (sdk/nn/trunk.c with norm post, ln_in, eps 1e-12, no projection) against
 * transformers' own BertModel and XLMRobertaModel (issue 17).
 *
 * tests/golden/make_bert_fixture.py (its docstring says how to regenerate)
 * builds two tiny random models, maps their weights to qiao's names with
 * scripts/qiao_hf.py (the converter's mapping) and stores, in float64
 * rounded to float32: the trunk's input x (word + token-type embeddings),
 * last_hidden_state on the real tokens, the L2-normalized [CLS] vector
 * (bert) or masked mean (xlmr), and the gradients of sum(R_tok hidden) +
 * sum(R_emb emb) with respect to x and every trunk parameter. This test
 * lays the trunk out with nn_trunk_describe (prefix "<case>.enc."), loads
 * the parameters by name, and compares forward and backward.
 *
 * Tolerance: |got - ref| <= 1e-5 + 1e-4 |ref| per element, as the other
 * golden tests: the reference is float64 on the same float32 values, so
 * the error left is float32 rounding through two layers, a few 1e-7; the
 * generator prints where transformers' own float32 run lands on this
 * scale. A wrong norm placement, position offset or pooling moves values
 * by O(0.01-1); PyTorch's default epsilon in place of BERT's fails the
 * gradients (by a few times the bound). */
#include "testutil.h"

#include "golden.h"
#include "nn/nn.h"

#define FIXTURE QIAO_TEST_DATA "/bert_golden.safetensors"
#define FIXTURE_VERSION "1"
#define ATOL 1e-5
#define RTOL 1e-4

enum { NB = 3, NT = 7, NC = 16, NF = 32, NH = 2, NL = 2 };

static void run_case(const char *name, nn_pool pool) {
    qc_st_file *f = NULL;
    if (qc_st_open(FIXTURE, &f) != QIAO_OK) fail_msg("cannot open the fixture: %s", qiao_last_error());
    const char *ver = qc_st_metadata_get(f, "format_version");
    if (!ver || strcmp(ver, FIXTURE_VERSION) != 0)
        fail_msg("%s: format_version %s, this test expects %s", FIXTURE, ver ? ver : "(absent)", FIXTURE_VERSION);
    qb_exec ex;
    qb_exec_cpu(&ex, 2);
    const nn_trunk_dims d = {.B = NB, .T = NT, .C = NC, .F = NF, .H = NH, .L = NL, .max_T = NT, .D = NC,
                             .pool = pool, .norm = NN_NORM_POST, .eps = 1e-12f, .ln_in = true, .proj = NN_PROJ_NONE};
    char prefix[32];
    snprintf(prefix, sizeof prefix, "%s.enc.", name);
    qt_model m;
    nn_trunk_params p, g;
    nn_trunk_acts a, da;
    memset(&m, 0, sizeof m);
    qc_table_init_empty(&m.pt);
    qc_table_init_empty(&m.at);
    assert_int_equal(nn_trunk_describe(&m.pt, prefix, &d, 0), QIAO_OK);
    assert_int_equal(nn_trunk_describe_acts(&m.at, prefix, &d, 0), QIAO_OK);
    qt_model_alloc(&m, &p, &g, &a, &da);
    if (qc_st_load_table(f, &m.pt, m.params.base) != QIAO_OK) fail_msg("%s", qiao_last_error());
    const int64_t n = NB * NT * NC;
    float *x = qt_alloc(n), *dx = qt_alloc(n), *R_tok = qt_alloc(n), *R_emb = qt_alloc(NB * NC), *hid = qt_alloc(n);
    uint8_t mask[NB * NT];
    char key[128];
#define READ(what, dtype, dst, cnt)                                                                                    \
    snprintf(key, sizeof key, "%s.%s", name, what);                                                                    \
    if (!qt_golden_read(f, FIXTURE, key, dtype, dst, cnt)) fail()
    READ("x", QIAO_DTYPE_F32, x, n);
    READ("mask", QIAO_DTYPE_U8, mask, NB * NT);
    READ("R_tok", QIAO_DTYPE_F32, R_tok, n);
    READ("R_emb", QIAO_DTYPE_F32, R_emb, NB * NC);
#undef READ
    nn_trunk_forward(&ex, &a, &p, x, mask, &d);
    /* the hidden states of the real tokens (what a padded position holds is
     * each implementation's own business) */
    memcpy(hid, a.lnf, (size_t)n * sizeof(float));
    for (int64_t i = 0; i < NB * NT; i++)
        if (!mask[i]) memset(hid + i * NC, 0, NC * sizeof(float));
    int bad = 0;
    snprintf(key, sizeof key, "%s.hidden", name);
    bad += qt_golden_compare(f, FIXTURE, key, hid, n, ATOL, RTOL);
    snprintf(key, sizeof key, "%s.emb", name);
    bad += qt_golden_compare(f, FIXTURE, key, a.emb, NB * NC, ATOL, RTOL);
    /* backward: the gradient enters at the tokens and at the embedding */
    qc_arena_zero(&m.grads);
    nn_trunk_backward(&ex, dx, &g, &da, R_emb, R_tok, &a, &p, x, mask, &d);
    snprintf(key, sizeof key, "%s.grad.x", name);
    bad += qt_golden_compare(f, FIXTURE, key, dx, n, ATOL, RTOL);
    for (size_t i = 0; i < m.pt.n; i++) {
        const qc_tensor_desc *t = &m.pt.t[i];
        snprintf(key, sizeof key, "%s.grad.%s", name, t->name + strlen(name) + 1);
        bad += qt_golden_compare(f, FIXTURE, key, m.grads.base + t->offset, t->numel, ATOL, RTOL);
    }
    printf("%s: %zu parameter gradients, hidden states, embedding and input gradient compared, %d over tolerance\n",
           name, m.pt.n, bad);
    assert_int_equal(bad, 0);
    free(x), free(dx), free(R_tok), free(R_emb), free(hid);
    qt_model_free(&m);
    qc_st_close(f);
}

/* BERT read at [CLS] (bge's pooling) */
static void bert(void **state) {
    (void)state;
    run_case("bert", NN_POOL_FIRST);
}

/* XLM-RoBERTa read as the masked mean (e5's), positions from row 2 */
static void xlmr(void **state) {
    (void)state;
    run_case("xlmr", NN_POOL_MEAN);
}

static const struct CMUnitTest tests[] = {cmocka_unit_test(bert), cmocka_unit_test(xlmr)};
QT_MAIN(tests)
