/* tests/golden/test_bert_golden.c - the encoder trunk in its post-norm form
 * (sdk/nn/trunk.c with norm post, ln_in, eps 1e-12, no projection), and the
 * whole text encoder with "arch": "bert" (modalities/text/encoder.c: from
 * the token ids), against transformers' own BertModel and XLMRobertaModel
 * (issue 17).
 *
 * tests/golden/make_bert_fixture.py (its docstring says how to regenerate)
 * builds two tiny random models, maps their weights to qiao's names with
 * scripts/qiao_hf.py (the converter's mapping) and stores, in float64
 * rounded to float32: the trunk's input x (word + token-type embeddings),
 * last_hidden_state on the real tokens, the L2-normalized [CLS] vector
 * (bert) or masked mean (xlmr), and the gradients of sum(R_tok hidden) +
 * sum(R_emb emb) with respect to x and every parameter. The trunk cases
 * lay the trunk out with nn_trunk_describe (prefix "<case>.text.trunk.")
 * and start from x; the text cases parse a model config's "text" section,
 * lay the encoder out with qe_text_describe (prefix "<case>.text.") and
 * start from the ids. Both load the parameters by name and compare forward
 * and backward.
 *
 * Tolerance: |got - ref| <= 1e-5 + 1e-4 |ref| per element, as the other
 * golden tests: the reference is float64 on the same float32 values, so
 * the error left is float32 rounding through two layers, a few 1e-7; the
 * generator prints where transformers' own float32 run lands on this
 * scale. A wrong norm placement, position offset or pooling moves values
 * by O(0.01-1); PyTorch's default epsilon in place of BERT's fails the
 * gradients (by a few times the bound). */
#include "testutil.h"

#include <cjson/cJSON.h>

#include "golden.h"
#include "modalities/text/encoder.h"
#include "nn/nn.h"

#define FIXTURE QIAO_TEST_DATA "/bert_golden.safetensors"
#define FIXTURE_VERSION "2"
#define ATOL 1e-5
#define RTOL 1e-4

enum { NB = 3, NT = 7, NC = 16, NF = 32, NH = 2, NL = 2, NV = 60 };

/* Either form: the trunk alone (from x) or the text encoder (from the ids). */
typedef struct bert_case {
    qt_model m;
    nn_trunk_params tp, tg;
    nn_trunk_acts ta, tda;
    qe_text_params xp, xg;
    qe_text_acts xa, xda;
} bert_case;

static void run_case(const char *name, nn_pool pool, bool text) {
    qc_st_file *f = NULL;
    if (qc_st_open(FIXTURE, &f) != QIAO_OK) fail_msg("cannot open the fixture: %s", qiao_last_error());
    const char *ver = qc_st_metadata_get(f, "format_version");
    if (!ver || strcmp(ver, FIXTURE_VERSION) != 0)
        fail_msg("%s: format_version %s, this test expects %s", FIXTURE, ver ? ver : "(absent)", FIXTURE_VERSION);
    qb_exec ex;
    qb_exec_cpu(&ex, 2);
    bert_case *k = calloc(1, sizeof *k);
    assert_non_null(k);
    qc_table_init_empty(&k->m.pt);
    qc_table_init_empty(&k->m.at);
    char prefix[48], key[160];
    /* the text section a converted model's config holds */
    char json[320];
    snprintf(json, sizeof json,
             "{\"arch\": \"bert\", \"vocab\": %d, \"type_vocab\": 2, \"width\": %d, \"layers\": %d, \"heads\": %d, "
             "\"mlp\": %d, \"max_tokens\": %d, \"pool\": \"%s\"}",
             NV, NC, NL, NH, NF, NT, pool == NN_POOL_FIRST ? "first" : "mean");
    cJSON *sec = cJSON_Parse(json);
    qe_text_config cfg;
    assert_int_equal(qe_text_config_from_json(sec, NC, &cfg), QIAO_OK);
    cJSON_Delete(sec);
    nn_trunk_dims d = cfg.trunk;
    d.B = NB, d.T = NT;
    if (text) {
        snprintf(prefix, sizeof prefix, "%s.text.", name);
        assert_int_equal(qe_text_describe(&k->m.pt, prefix, &cfg, 0), QIAO_OK);
        assert_int_equal(qe_text_describe_acts(&k->m.at, prefix, &cfg, NB, NT, 0), QIAO_OK);
        qt_model_alloc(&k->m, &k->xp, &k->xg, &k->xa, &k->xda);
    } else {
        snprintf(prefix, sizeof prefix, "%s.text.trunk.", name);
        assert_int_equal(nn_trunk_describe(&k->m.pt, prefix, &d, 0), QIAO_OK);
        assert_int_equal(nn_trunk_describe_acts(&k->m.at, prefix, &d, 0), QIAO_OK);
        qt_model_alloc(&k->m, &k->tp, &k->tg, &k->ta, &k->tda);
    }
    if (qc_st_load_table(f, &k->m.pt, k->m.params.base) != QIAO_OK) fail_msg("%s", qiao_last_error());
    const int64_t n = NB * NT * NC;
    float *x = qt_alloc(n), *dx = qt_alloc(n), *R_tok = qt_alloc(n), *R_emb = qt_alloc(NB * NC), *hid = qt_alloc(n);
    uint8_t mask[NB * NT];
    int32_t ids[NB * NT];
#define READ(what, dtype, dst, cnt)                                                                                    \
    snprintf(key, sizeof key, "%s.%s", name, what);                                                                    \
    if (!qt_golden_read(f, FIXTURE, key, dtype, dst, cnt)) fail()
    READ("x", QIAO_DTYPE_F32, x, n);
    READ("ids", QIAO_DTYPE_I32, ids, NB * NT);
    READ("mask", QIAO_DTYPE_U8, mask, NB * NT);
    READ("R_tok", QIAO_DTYPE_F32, R_tok, n);
    READ("R_emb", QIAO_DTYPE_F32, R_emb, NB * NC);
#undef READ
    const qe_text_input in = {NB, NT, 0, ids, NULL, NULL, mask};
    if (text) {
        assert_int_equal(qe_text_check_input(&in, &cfg), QIAO_OK);
        qe_text_forward(&ex, &k->xa, &k->xp, &in, &cfg);
    } else {
        nn_trunk_forward(&ex, &k->ta, &k->tp, x, mask, &d);
    }
    const nn_trunk_acts *ta = text ? &k->xa.trunk : &k->ta;
    /* the hidden states of the real tokens (what a padded position holds is
     * each implementation's own business) */
    memcpy(hid, ta->lnf, (size_t)n * sizeof(float));
    for (int64_t i = 0; i < NB * NT; i++)
        if (!mask[i]) memset(hid + i * NC, 0, NC * sizeof(float));
    int bad = 0;
    snprintf(key, sizeof key, "%s.hidden", name);
    bad += qt_golden_compare(f, FIXTURE, key, hid, n, ATOL, RTOL);
    snprintf(key, sizeof key, "%s.emb", name);
    bad += qt_golden_compare(f, FIXTURE, key, ta->emb, NB * NC, ATOL, RTOL);
    /* backward: the gradient enters at the tokens and at the embedding */
    qc_arena_zero(&k->m.grads);
    qc_arena_zero(&k->m.dacts);
    if (text) {
        qe_text_backward(&ex, &k->xg, &k->xda, R_emb, R_tok, &k->xa, &k->xp, &in, &cfg);
    } else {
        nn_trunk_backward(&ex, dx, &k->tg, &k->tda, R_emb, R_tok, &k->ta, &k->tp, x, mask, &d);
        snprintf(key, sizeof key, "%s.grad.x", name);
        bad += qt_golden_compare(f, FIXTURE, key, dx, n, ATOL, RTOL);
    }
    for (size_t i = 0; i < k->m.pt.n; i++) {
        const qc_tensor_desc *t = &k->m.pt.t[i];
        snprintf(key, sizeof key, "%s.grad.%s", name, t->name + strlen(name) + 1);
        bad += qt_golden_compare(f, FIXTURE, key, k->m.grads.base + t->offset, t->numel, ATOL, RTOL);
    }
    printf("%s %s: %zu parameter gradients, hidden states and embedding compared, %d over tolerance\n", name,
           text ? "text encoder" : "trunk", k->m.pt.n, bad);
    assert_int_equal(bad, 0);
    free(x), free(dx), free(R_tok), free(R_emb), free(hid);
    qt_model_free(&k->m);
    free(k);
    qc_st_close(f);
}

/* BERT read at [CLS] (bge's pooling) */
static void bert(void **state) {
    (void)state;
    run_case("bert", NN_POOL_FIRST, false);
}

/* XLM-RoBERTa read as the masked mean (e5's), positions from row 2 */
static void xlmr(void **state) {
    (void)state;
    run_case("xlmr", NN_POOL_MEAN, false);
}

/* The same two from the token ids: word and type embeddings and their gradients too */
static void bert_text(void **state) {
    (void)state;
    run_case("bert", NN_POOL_FIRST, true);
}

static void xlmr_text(void **state) {
    (void)state;
    run_case("xlmr", NN_POOL_MEAN, true);
}

static const struct CMUnitTest tests[] = {cmocka_unit_test(bert), cmocka_unit_test(xlmr), cmocka_unit_test(bert_text),
                                          cmocka_unit_test(xlmr_text)};
QT_MAIN(tests)
