/* tests/golden/test_hf_models.c - converted Hugging Face models through
 * the public API (issue 17): scripts/convert-hf.py's files of a tiny random
 * XLMRobertaModel (f32, SentencePiece, mean pooling from its
 * sentence-transformers config) and BertModel (f16, bert-base-chinese's
 * WordPiece vocab, the [CLS] token), written by
 * tests/golden/make_hf_model_fixture.py, load with qiao_model_load; their
 * tokenizers give transformers' ids (for XLM-R up to two ties that
 * SentencePiece's versions break differently, which test_tokenizer_spm
 * checks by score), and qiao_embed_texts gives transformers' embeddings
 * (the pooled last hidden states, L2-normalized, float64) at cosine >=
 * 0.99999 on 241 real utterances, Chinese and English, two of them longer
 * than the models' 64 positions (truncated keeping the end token, as
 * transformers does). A picture asked of these text-only models is
 * QIAO_ERR_UNSUPPORTED.
 * CLIPModel and ChineseCLIPModel (f16; CLIP's byte-level BPE, Chinese-CLIP's
 * WordPiece) the same way through both towers: get_text_features of the
 * texts and get_image_features of 24 pictures given at the model's 32x32
 * size as RGB bytes, at cosine >= 0.99999. */
#include "testutil.h"

#include "core/safetensors.h"
#include "golden.h"

#define MAX_WIDTH 64

/* A two-tower family's pictures: qiao_embed_image_rgb of each against
 * get_image_features. */
static void check_pictures(qiao_session *session, qc_st_file *f, const char *path, int64_t WIDTH) {
    const qc_st_tensor *tr = qc_st_find(f, "rgb");
    assert_non_null(tr);
    assert_int_equal(tr->ndim, 4);
    const int64_t m = tr->shape[0], H = tr->shape[1], W = tr->shape[2];
    float *want = qt_alloc(m * WIDTH), *got = qt_alloc(m * WIDTH);
    assert_true(qt_golden_read(f, path, "img_emb", QIAO_DTYPE_F32, want, m * WIDTH));
    const uint8_t *rgb = tr->data;
    for (int64_t i = 0; i < m; i++) {
        qiao_status st = qiao_embed_image_rgb(session, rgb + i * H * W * 3, (int)W, (int)H, (size_t)(W * 3),
                                              got + i * WIDTH, (size_t)WIDTH);
        if (st != QIAO_OK) fail_msg("%s", qiao_last_error());
    }
    int64_t worst_i = 0;
    double mean = 0, worst_err = 0;
    const double worst_cos = qt_golden_cosines(got, want, m, WIDTH, &worst_i, &mean, &worst_err);
    printf("  %lld pictures: worst cosine %.8f (picture %lld), max |err| %.2e\n", (long long)m, worst_cos,
           (long long)worst_i, worst_err);
    assert_true(worst_cos >= 0.99999);
    free(want), free(got);
}

static void run_family(const char *family, int64_t WIDTH, int64_t max_ties) {
    char MODEL[512], EXPECTED[512], name[64];
    snprintf(MODEL, sizeof MODEL, "%s/hf/%s/model.safetensors", QIAO_TEST_DATA, family);
    snprintf(EXPECTED, sizeof EXPECTED, "%s/hf/%s/expected.safetensors", QIAO_TEST_DATA, family);
    snprintf(name, sizeof name, "%s-tiny-random", family);
    qc_st_file *f = NULL;
    assert_int_equal(qc_st_open(EXPECTED, &f), QIAO_OK);
    const qc_st_tensor *tt = qc_st_find(f, "texts"), *tl = qc_st_find(f, "lengths"), *ti = qc_st_find(f, "ids");
    assert_true(tt && tl && ti);
    const int64_t n = tl->numel;
    int32_t *lengths = malloc((size_t)tl->nbytes), *ids = malloc((size_t)ti->nbytes);
    float *want = qt_alloc(n * WIDTH), *got = qt_alloc(n * WIDTH);
    assert_true(lengths && ids);
    memcpy(lengths, tl->data, tl->nbytes);
    memcpy(ids, ti->data, ti->nbytes);
    assert_true(qt_golden_read(f, EXPECTED, "emb", QIAO_DTYPE_F32, want, n * WIDTH));
    const char **texts = qt_golden_texts(tt, n);
    assert_non_null(texts);

    qiao_model *model = NULL;
    qiao_status st = qiao_model_load(MODEL, &model);
    if (st != QIAO_OK) fail_msg("%s", qiao_last_error());
    qiao_session *session = NULL;
    assert_int_equal(qiao_session_new(model, NULL, &session), QIAO_OK);
    assert_int_equal(qiao_model_dim(model), WIDTH);
    assert_string_equal(qiao_model_name(model), name);

    /* ids: the model's own tokenizer, truncated to its 64 positions */
    qiao_tokenizer *tok = NULL;
    assert_int_equal(qiao_tokenizer_load(MODEL, &tok), QIAO_OK);
    qiao_tokenize_params tp = qiao_tokenize_default_params();
    tp.max_tokens = 64;
    int64_t at = 0, same = 0;
    for (int64_t i = 0; i < n; i++) {
        qiao_tokens *t = NULL;
        assert_int_equal(qiao_tokenize(tok, texts[i], strlen(texts[i]), &tp, &t), QIAO_OK);
        same += t->count == (size_t)lengths[i] && !memcmp(t->ids, ids + at, t->count * sizeof(int32_t));
        at += lengths[i];
        qiao_tokens_free(t);
    }
    qiao_tokenizer_free(tok);

    assert_int_equal(qiao_embed_texts(session, texts, (size_t)n, got, (size_t)(n * WIDTH)), QIAO_OK);
    int64_t worst_i = 0;
    double mean = 0, worst_err = 0;
    const double worst_cos = qt_golden_cosines(got, want, n, WIDTH, &worst_i, &mean, &worst_err);
    printf("%s, %lld texts: ids as transformers' for %lld; embeddings: worst cosine %.8f (text %lld), max |err| "
           "%.2e\n",
           family, (long long)n, (long long)same, worst_cos, (long long)worst_i, worst_err);
    assert_true(worst_cos >= 0.99999);
    assert_true(same >= n - max_ties); /* ties (test_tokenizer_spm), whose embeddings still agree */

    if (qc_st_find(f, "rgb")) {
        check_pictures(session, f, EXPECTED, WIDTH);
    } else { /* a modality the model lacks */
        const uint8_t rgb[3 * 4] = {0};
        float e[MAX_WIDTH];
        st = qiao_embed_image_rgb(session, rgb, 2, 2, 6, e, WIDTH);
        assert_int_equal(st, QIAO_ERR_UNSUPPORTED);
        printf("a picture: %s\n", qiao_last_error());
    }
    qiao_session_free(session);
    qiao_model_free(model);
    free(lengths), free(ids), free(want), free(got), free(texts);
    qc_st_close(f);
}

static void xlmr(void **state) {
    (void)state;
    run_family("xlmr", 32, 2);
}

static void bert(void **state) {
    (void)state;
    run_family("bert", 16, 0);
}

static void clip(void **state) {
    (void)state;
    run_family("clip", 24, 0);
}

static void cnclip(void **state) {
    (void)state;
    run_family("cnclip", 24, 0);
}

static const struct CMUnitTest tests[] = {cmocka_unit_test(xlmr), cmocka_unit_test(bert), cmocka_unit_test(clip),
                                          cmocka_unit_test(cnclip)};
QT_MAIN(tests)
