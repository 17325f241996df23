/* tests/model_fixture.h - the small random model the model-level tests
 * share: models/configs/tiny.json with the committed test tokenizer's
 * vocabulary sizes (qmod_config_for_tokenizer) and that tokenizer attached. */
#ifndef QIAO_TESTS_MODEL_FIXTURE_H
#define QIAO_TESTS_MODEL_FIXTURE_H

#include <cjson/cJSON.h>

#include "models/model.h"
#include "testutil.h"

#define QT_TINY_JSON QIAO_SOURCE_DIR "/models/configs/tiny.json"
#define QT_TOKENIZER QIAO_TEST_DATA "/tokenizer/tok-test.safetensors"

/* A tiny model with random weights from `seed`, with the tokenizer attached
 * when `with_tokenizer`. Fails the test on any error. */
static inline qmod_model *qt_tiny_model(uint64_t seed, bool with_tokenizer) {
    qiao_tokenizer *tok = NULL;
    qmod_config file, cfg;
    qmod_model *m = NULL;
    qiao_status st = qiao_tokenizer_load(QT_TOKENIZER, &tok);
    if (st == QIAO_OK) st = qmod_config_from_file(QT_TINY_JSON, &file);
    if (st == QIAO_OK) {
        st = qmod_config_for_tokenizer(&file, tok, &cfg);
        qmod_config_free(&file);
    }
    if (st == QIAO_OK) {
        st = qmod_create(&cfg, seed, &m);
        qmod_config_free(&cfg);
    }
    if (st == QIAO_OK && with_tokenizer) {
        m->tok = tok;
        tok = NULL;
    }
    qiao_tokenizer_free(tok);
    if (st != QIAO_OK) fail_msg("tiny model: %s", qiao_last_error());
    return m;
}

/* The same model written to `path` in F32 (what the CLI and the public API load). */
static inline void qt_write_tiny_model(const char *path, uint64_t seed, bool with_tokenizer) {
    qmod_model *m = qt_tiny_model(seed, with_tokenizer);
    qiao_status st = qmod_save(m, path, QIAO_DTYPE_F32);
    qmod_free(m);
    if (st != QIAO_OK) fail_msg("writing %s: %s", path, qiao_last_error());
}

/* The tiny model as a VQA model: a small fuser and an "answer" head of 3
 * labelled classes (yes, no, red; zh texts) and a "lang" head, weights
 * from `seed`, the tokenizer attached. */
#define QT_VQA_FUSION "{\"width\": 16, \"layers\": 1, \"heads\": 2, \"mlp\": 32, \"gate_hidden\": 8}"
#define QT_VQA_HEADS                                                                                                 \
    "{\"answer\": {\"kind\": \"mlp\", \"tower\": \"fusion\", \"hidden\": 12, \"classes\": 3,"                        \
    " \"labels\": [\"yes\", \"no\", \"red\"], \"label_text\": {\"zh\": [\"是\", \"否\", \"红色\"]}},"                \
    " \"lang\": {\"kind\": \"mlp\", \"tower\": \"fusion\", \"classes\": 2}}"

static inline qmod_model *qt_tiny_vqa_model(uint64_t seed) {
    qmod_model *t = qt_tiny_model(1, true);
    cJSON *root = cJSON_Parse(t->cfg.json);
    if (!root) fail_msg("tiny VQA model: config");
    cJSON_AddItemToObject(root, "fusion", cJSON_Parse(QT_VQA_FUSION));
    cJSON_AddItemToObject(root, "heads", cJSON_Parse(QT_VQA_HEADS));
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    qmod_config c;
    qmod_model *m = NULL;
    qiao_status st = qmod_config_from_string(json, "tiny-vqa", &c);
    cJSON_free(json);
    if (st == QIAO_OK) {
        st = qmod_create(&c, seed, &m);
        qmod_config_free(&c);
    }
    if (st != QIAO_OK) fail_msg("tiny VQA model: %s", qiao_last_error());
    m->tok = t->tok;
    t->tok = NULL;
    qmod_free(t);
    return m;
}

/* The tiny model as a caption model: a one-block decoder (weights from
 * `seed`) on the tiny model's towers (weights from 1), the tokenizer
 * attached, as test_caption_train's tiny_caption_model makes it. */
#define QT_CAPTION_DECODER                                                                                           \
    "{\"width\": 32, \"layers\": 1, \"heads\": 2, \"mlp\": 64, \"max_len\": 96, \"tied\": true}"

static inline qmod_model *qt_tiny_caption_model(uint64_t seed) {
    qmod_model *t = qt_tiny_model(1, true);
    cJSON *root = cJSON_Parse(t->cfg.json);
    if (!root) fail_msg("tiny caption model: config");
    cJSON_AddItemToObject(root, "decoder", cJSON_Parse(QT_CAPTION_DECODER));
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    qmod_config c;
    qmod_model *m = NULL;
    qiao_status st = qmod_config_from_string(json, "tiny-caption", &c);
    cJSON_free(json);
    if (st == QIAO_OK) {
        st = qmod_create(&c, seed, &m);
        qmod_config_free(&c);
    }
    if (st == QIAO_OK) st = qmod_copy_shared(m, t, NULL);
    if (st != QIAO_OK) fail_msg("tiny caption model: %s", qiao_last_error());
    m->tok = t->tok;
    t->tok = NULL;
    qmod_free(t);
    return m;
}

/* How many values of a's tensors b holds further than atol + rtol |a| away
 * (every tensor of a must be in b, of the same size); *n counts them all.
 * What a grown model (a recipe that adds parameters) is checked with. */
static inline int64_t qt_shared_far(const qmod_model *a, const qmod_model *b, float rtol, float atol, int64_t *n) {
    int64_t far = 0;
    *n = 0;
    for (size_t i = 0; i < a->tab.n; i++) {
        const int64_t j = qc_table_find(&b->tab, a->tab.t[i].name);
        assert_true(j >= 0);
        assert_int_equal(b->tab.t[j].numel, a->tab.t[i].numel);
        const float *x = a->arena.base + a->tab.t[i].offset, *y = b->arena.base + b->tab.t[j].offset;
        for (int64_t k = 0; k < a->tab.t[i].numel; k++, (*n)++)
            if (fabsf(x[k] - y[k]) > atol + rtol * fabsf(x[k])) far++;
    }
    return far;
}

#endif /* QIAO_TESTS_MODEL_FIXTURE_H */
