/* A VQA model (models/vqa.c): the "fusion" config section and fused heads
 * with their labels, every malformed entry refused with a message naming
 * it; a tiny three-tower model answered end to end and gradient-checked
 * through the heads, the fuser and the towers (the token gradients that
 * reach them); frozen towers get no gradient; save and load keep every
 * answer; an embedding-only model is QIAO_ERR_UNSUPPORTED. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "model_fixture.h"
#include "models/vqa.h"
#include "testfs.h"
#include "testutil.h"

#define FUSION_JSON "{\"width\": 16, \"layers\": 1, \"heads\": 2, \"mlp\": 32, \"gate_hidden\": 8}"
#define HEADS_JSON                                                                                                   \
    "{\"answer\": {\"kind\": \"mlp\", \"tower\": \"fusion\", \"hidden\": 12, \"classes\": 3,"                        \
    " \"labels\": [\"yes\", \"no\", \"red\"], \"label_text\": {\"zh\": [\"是\", \"否\", \"红色\"]}},"                \
    " \"lang\": {\"kind\": \"mlp\", \"tower\": \"fusion\", \"classes\": 2}}"

/* tiny.json with the test tokenizer's sizes plus `fusion` and `heads` (JSON
 * text or NULL to leave out), towers removed as named. */
static char *tiny_with(const char *fusion, const char *heads, const char *drop) {
    qmod_model *t = qt_tiny_model(1, false);
    cJSON *root = cJSON_Parse(t->cfg.json);
    qmod_free(t);
    assert_non_null(root);
    if (drop) cJSON_DeleteItemFromObjectCaseSensitive(root, drop);
    if (fusion) cJSON_AddItemToObject(root, "fusion", cJSON_Parse(fusion));
    if (heads) cJSON_AddItemToObject(root, "heads", cJSON_Parse(heads));
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

static void expect_bad(const char *fusion, const char *heads, const char *drop, const char *needle) {
    char *json = tiny_with(fusion, heads, drop);
    qmod_config c;
    qiao_status st = qmod_config_from_string(json, "vqa.json", &c);
    if (st != QIAO_ERR_FORMAT || !strstr(qiao_last_error(), needle))
        fail_msg("config %s: got %s \"%s\", want FORMAT naming %s", json, qiao_status_str(st), qiao_last_error(),
                 needle);
    free(json);
}

static void test_config(void **state) {
    (void)state;
    char *json = tiny_with(FUSION_JSON, HEADS_JSON, NULL);
    qmod_config c;
    assert_int_equal(qmod_config_from_string(json, "vqa.json", &c), QIAO_OK);
    free(json);
    assert_true(c.has_fusion);
    assert_int_equal(c.fusion.width, 16);
    assert_int_equal(c.fusion.weighting, QF_WEIGHT_LEARNED);
    assert_int_equal(c.fusion.in_width[QF_TEXT], 64);
    assert_int_equal(c.fusion.in_width[QF_AUDIO], 64);
    const int a = qmod_head_find(&c, "answer");
    assert_true(a >= 0 && c.heads[a].fused && c.heads[a].mlp.in == 16);
    char buf[64];
    assert_string_equal(qmod_head_label(&c, a, 2, NULL, buf, sizeof buf), "red");
    assert_string_equal(qmod_head_label(&c, a, 2, "zh", buf, sizeof buf), "红色");
    assert_string_equal(qmod_head_label(&c, a, 1, "en", buf, sizeof buf), "no"); /* no "en" texts: the key */
    assert_string_equal(qmod_head_label(&c, a, 7, "zh", buf, sizeof buf), "7");
    qc_table tab;
    qc_table_init_empty(&tab);
    assert_int_equal(qmod_describe(&tab, &c), QIAO_OK);
    assert_true(qc_table_find(&tab, "fusion.question.0.xattn.q.weight") >= 0);
    assert_true(qc_table_find(&tab, "fusion.gate.audio.fc.weight") >= 0);
    assert_true(qc_table_find(&tab, "heads.answer.fc.weight") >= 0);
    assert_true(qc_table_find(&tab, "fusion.image.pos") < 0); /* positions are asked for */
    qc_table_free(&tab);
    qmod_config_free(&c);

    /* "positions": true gives the picture stream one learned vector per picture token */
    json = tiny_with("{\"width\": 16, \"layers\": 1, \"heads\": 2, \"mlp\": 32, \"gate_hidden\": 8, "
                     "\"positions\": true}",
                     HEADS_JSON, NULL);
    assert_int_equal(qmod_config_from_string(json, "vqa.json", &c), QIAO_OK);
    free(json);
    assert_true(c.fusion.positions > 0);
    assert_int_equal(c.fusion.positions, c.image.tokens);
    qc_table_init_empty(&tab);
    assert_int_equal(qmod_describe(&tab, &c), QIAO_OK);
    const int64_t pi = qc_table_find(&tab, "fusion.image.pos");
    assert_true(pi >= 0);
    assert_int_equal(tab.t[pi].numel, c.image.tokens * 16);
    qc_table_free(&tab);
    qmod_config_free(&c);

    /* "places": G pools the picture into G x G place tokens, with a position each */
    json = tiny_with("{\"width\": 16, \"layers\": 1, \"heads\": 2, \"mlp\": 32, \"gate_hidden\": 8, "
                     "\"positions\": true, \"places\": 3}",
                     HEADS_JSON, NULL);
    assert_int_equal(qmod_config_from_string(json, "vqa.json", &c), QIAO_OK);
    free(json);
    assert_int_equal(c.fusion.places, 3);
    assert_int_equal(c.fusion.positions, 9);
    assert_int_equal(c.fusion.qpositions, 0);
    qmod_config_free(&c);

    /* "question_positions": true gives every typed question token a learned vector */
    json = tiny_with("{\"width\": 16, \"layers\": 1, \"heads\": 2, \"mlp\": 32, \"gate_hidden\": 8, "
                     "\"question_positions\": true}",
                     HEADS_JSON, NULL);
    assert_int_equal(qmod_config_from_string(json, "vqa.json", &c), QIAO_OK);
    free(json);
    assert_int_equal(c.fusion.qpositions, c.text.trunk.max_T);
    qc_table_init_empty(&tab);
    assert_int_equal(qmod_describe(&tab, &c), QIAO_OK);
    const int64_t qi = qc_table_find(&tab, "fusion.text.pos");
    assert_true(qi >= 0);
    assert_int_equal(tab.t[qi].numel, c.text.trunk.max_T * 16);
    qc_table_free(&tab);
    qmod_config_free(&c);
    expect_bad("{\"width\": 16, \"layers\": 1, \"heads\": 2, \"mlp\": 32, \"gate_hidden\": 8, \"question_positions\": 1}",
               NULL, NULL, "fusion.question_positions");
    /* "picture_mean": true adds the picture stream's mean to z, scaled per channel */
    json = tiny_with("{\"width\": 16, \"layers\": 1, \"heads\": 2, \"mlp\": 32, \"gate_hidden\": 8, "
                     "\"picture_mean\": true}",
                     HEADS_JSON, NULL);
    assert_int_equal(qmod_config_from_string(json, "vqa.json", &c), QIAO_OK);
    free(json);
    assert_int_equal(c.fusion.picture_mean, 1);
    qc_table_init_empty(&tab);
    assert_int_equal(qmod_describe(&tab, &c), QIAO_OK);
    const int64_t mi = qc_table_find(&tab, "fusion.image.mean_scale");
    assert_true(mi >= 0);
    assert_int_equal(tab.t[mi].numel, 16);
    qc_table_free(&tab);
    qmod_config_free(&c);
    expect_bad("{\"width\": 16, \"layers\": 1, \"heads\": 2, \"mlp\": 32, \"gate_hidden\": 8, \"picture_mean\": \"yes\"}",
               NULL, NULL, "fusion.picture_mean");
    expect_bad("{\"width\": 16, \"layers\": 1, \"heads\": 2, \"mlp\": 32, \"gate_hidden\": 8, "
               "\"question_positions\": true}",
               NULL, "text", "needs a text tower");
    expect_bad("{\"width\": 16, \"layers\": 1, \"heads\": 2, \"mlp\": 32, \"gate_hidden\": 8, \"places\": 0}",
               NULL, NULL, "'places'");
    expect_bad("{\"width\": 16, \"layers\": 1, \"heads\": 2, \"mlp\": 32, \"gate_hidden\": 8, \"places\": 9}",
               NULL, NULL, "fusion.places");
    expect_bad("{\"width\": 16, \"layers\": 1, \"heads\": 2, \"mlp\": 32, \"gate_hidden\": 8}", NULL, "image",
               "image tower");
    expect_bad("{\"width\": 16, \"layers\": 1, \"heads\": 3, \"mlp\": 32, \"gate_hidden\": 8}", NULL, NULL,
               "multiple of \"heads\"");
    expect_bad("{\"width\": 16, \"layers\": 0, \"heads\": 2, \"mlp\": 32, \"gate_hidden\": 8}", NULL, NULL,
               "'layers'");
    expect_bad("{\"width\": 16, \"layers\": 1, \"heads\": 2, \"mlp\": 32, \"gate_hidden\": 8, \"x\": 1}", NULL, NULL,
               "fusion.x");
    expect_bad("{\"width\": 16, \"layers\": 1, \"heads\": 2, \"mlp\": 32, \"gate_hidden\": 8, \"weighting\": \"w\"}",
               NULL, NULL, "fusion.weighting");
    expect_bad("{\"width\": 16, \"layers\": 1, \"heads\": 2, \"mlp\": 32, \"gate_hidden\": 8, \"positions\": 64}",
               NULL, NULL, "fusion.positions");
    expect_bad(NULL, "{\"answer\": {\"kind\": \"mlp\", \"tower\": \"fusion\", \"classes\": 3}}", NULL,
               "no fusion section");
    expect_bad(FUSION_JSON, "{\"answer\": {\"kind\": \"mlp\", \"tower\": \"fusion\", \"classes\": 2, \"labels\": [\"a\"]}}",
               NULL, "heads.answer.labels");
    expect_bad(FUSION_JSON,
               "{\"answer\": {\"kind\": \"mlp\", \"tower\": \"fusion\", \"classes\": 2, \"labels\": [\"a\", \"a\"]}}",
               NULL, "twice");
    expect_bad(FUSION_JSON,
               "{\"answer\": {\"kind\": \"mlp\", \"tower\": \"fusion\", \"classes\": 2, \"label_text\": {\"zh\": [1, 2]}}}",
               NULL, "label_text.zh");
}

/* ---- the model end to end ------------------------------------------------------------ */

typedef struct vqa_case {
    qb_exec ex;
    qmod_model *m;
    qmod_batch b[QF_NMOD];
    float *stats[QF_NMOD];
    uint8_t present[3 * QF_NMOD];
    qmod_vqa_inputs in;
    qmod_vqa_work w;
    qf_weighting mode;
    float *out; /* answer logits then lang logits (the checked output) */
    int64_t n_ans, n_out;
} vqa_case;

static void vqa_fwd(void *ctx) {
    vqa_case *k = ctx;
    const float *ans = NULL, *lang = NULL, *w = NULL;
    assert_int_equal(qmod_vqa_forward(&k->ex, k->m, &k->w, &k->in, k->mode, &ans, &lang, &w), QIAO_OK);
    memcpy(k->out, ans, (size_t)k->n_ans * sizeof(float));
    memcpy(k->out + k->n_ans, lang, (size_t)(k->n_out - k->n_ans) * sizeof(float));
}

static qmod_model *vqa_model(uint64_t seed, const char *fusion) {
    char *json = tiny_with(fusion, HEADS_JSON, NULL);
    qmod_config c;
    qmod_model *m = NULL;
    assert_int_equal(qmod_config_from_string(json, "vqa.json", &c), QIAO_OK);
    free(json);
    assert_int_equal(qmod_create(&c, seed, &m), QIAO_OK);
    qmod_config_free(&c);
    qiao_tokenizer *tok = NULL;
    assert_int_equal(qiao_tokenizer_load(QT_TOKENIZER, &tok), QIAO_OK);
    m->tok = tok;
    return m;
}

static void vqa_setup_with(vqa_case *k, uint64_t seed, bool train, const char *fusion) {
    memset(k, 0, sizeof *k);
    qb_exec_cpu(&k->ex, 2);
    k->m = vqa_model(seed, fusion);
    k->mode = QF_WEIGHT_LEARNED;
    const char *q[3] = {"Is there a red circle?", "左上角是什么颜色？", "How many stars are there?"};
    assert_int_equal(qmod_batch_text(k->m, q, 3, &k->b[QF_TEXT]), QIAO_OK);
    qiao_image *imgs[3];
    uint8_t px[64 * 64 * 3];
    for (int i = 0; i < 3; i++) {
        qc_rng r;
        qc_rng_seed(&r, seed + 10 + (uint64_t)i);
        for (size_t j = 0; j < sizeof px; j++) px[j] = (uint8_t)(qc_rng_u64(&r) >> 56);
        assert_int_equal(qiao_image_from_rgb(px, 64, 64, 64 * 3, &imgs[i]), QIAO_OK);
    }
    assert_int_equal(qmod_batch_images(k->m, (const qiao_image *const *)imgs, 3, &k->b[QF_IMAGE]), QIAO_OK);
    for (int i = 0; i < 3; i++) qiao_image_free(imgs[i]);
    /* log-mel of 40, 24 and 56 frames (the audio tower strides by 16) */
    const int64_t frames[3] = {40, 24, 56};
    float *mels[3];
    for (int i = 0; i < 3; i++) {
        mels[i] = qt_alloc(frames[i] * 80);
        qt_fill_normal(mels[i], frames[i] * 80, 2.0f, seed + 20 + (uint64_t)i);
        for (int64_t j = 0; j < frames[i] * 80; j++) mels[i][j] -= 6.0f;
    }
    assert_int_equal(qmod_batch_mels(k->m, (const float *const *)mels, frames, 3, &k->b[QF_AUDIO]), QIAO_OK);
    for (int i = 0; i < 3; i++) free(mels[i]);
    for (int m = 0; m < QF_NMOD; m++) {
        k->stats[m] = qt_alloc(3 * QF_NSTATS);
        qt_fill_uniform(k->stats[m], 3 * QF_NSTATS, 1.0f, 50.0f, seed + 30 + (uint64_t)m);
        k->in.batch[m] = &k->b[m];
        k->in.stats[m] = k->stats[m];
    }
    /* row 0 all; row 1 spoken only; row 2 typed only */
    const uint8_t pr[9] = {1, 1, 1, 0, 1, 1, 1, 1, 0};
    memcpy(k->present, pr, 9);
    k->in.present = k->present;
    k->in.B = 3;
    assert_int_equal(qmod_vqa_work_init(&k->w, k->m, 3, train), QIAO_OK);
    k->n_ans = 3 * 3;
    k->n_out = k->n_ans + 3 * 2;
    k->out = qt_alloc(k->n_out);
}

static void vqa_setup(vqa_case *k, uint64_t seed, bool train) {
    vqa_setup_with(k, seed, train, FUSION_JSON);
}

static void vqa_free(vqa_case *k) {
    qmod_vqa_work_free(&k->w);
    for (int m = 0; m < QF_NMOD; m++) qmod_batch_free(&k->b[m]), free(k->stats[m]);
    free(k->out);
    qmod_free(k->m);
}

static void check_gradients(const char *fusion) {
    vqa_case k;
    vqa_setup_with(&k, 5, true, fusion);
    /* weights a little larger than the init's 0.02 so every path carries signal */
    qt_fill_normal(k.m->p.fusion.in_w[QF_TEXT], 16 * 64, 0.15f, 77);
    /* token standardization that is not the identity, so the gradient
     * through it (divided by std on the way back) is checked */
    for (int m = 0; m < QF_NMOD; m++) {
        qt_fill_normal(k.m->p.tok_mean[m], 64, 0.5f, 80 + (uint64_t)m);
        qt_fill_uniform(k.m->p.tok_std[m], 64, 0.5f, 2.0f, 90 + (uint64_t)m);
    }
    vqa_fwd(&k);
    float *R = qt_alloc(k.n_out);
    qt_fill_normal(R, k.n_out, 1.0f, 9);
    qc_arena grads;
    assert_int_equal(qc_arena_alloc(&grads, k.m->tab.total), QIAO_OK);
    qmod_params g;
    qc_table_bind(&k.m->tab, grads.base, &g);
    const bool train_all[QF_NMOD] = {true, true, true};
    assert_int_equal(qmod_vqa_backward(&k.ex, k.m, &g, &k.w, &k.in, k.mode, R, R + k.n_ans, train_all, NULL), QIAO_OK);
    /* a spread of tensors from every part: the three towers' first and last
     * layers, the fuser and both heads */
    const char *names[] = {"text.trunk.blocks.0.attn.q.weight", "text.piece_emb.weight", "image.patch_embed.weight",
                           "image.trunk.ln_f.weight", "audio.stem.0.weight", "audio.trunk.blocks.1.mlp.fc2.weight",
                           "fusion.text.proj.weight", "fusion.audio.type", "fusion.gate.image.fc.weight",
                           "fusion.question.0.xattn.k.weight", "fusion.picture.0.attn.v.weight",
                           "fusion.ln_p.bias", "heads.answer.fc.weight", "heads.lang.out.bias"};
    int bad = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const int64_t t = qc_table_find(&k.m->tab, names[i]);
        if (t < 0) fail_msg("no tensor %s", names[i]);
        const qc_tensor_desc *d = &k.m->tab.t[t];
        bad += qt_gradcheck(names[i], vqa_fwd, &k, k.out, R, k.n_out, k.m->arena.base + d->offset,
                            grads.base + d->offset, d->numel, 1e-3f, 1e-3, 1e-2, 24);
    }
    assert_int_equal(bad, 0);
    /* frozen towers: no gradient at all, and the fuser's is unchanged */
    qc_arena grads2;
    assert_int_equal(qc_arena_alloc(&grads2, k.m->tab.total), QIAO_OK);
    qmod_params g2;
    qc_table_bind(&k.m->tab, grads2.base, &g2);
    vqa_fwd(&k);
    const bool frozen[QF_NMOD] = {false, false, false};
    assert_int_equal(qmod_vqa_backward(&k.ex, k.m, &g2, &k.w, &k.in, k.mode, R, R + k.n_ans, frozen, NULL), QIAO_OK);
    for (size_t i = 0; i < k.m->tab.n; i++) {
        const qc_tensor_desc *d = &k.m->tab.t[i];
        const bool tower = !strncmp(d->name, "text.", 5) || !strncmp(d->name, "image.", 6) ||
                           !strncmp(d->name, "audio.", 6);
        for (int64_t j = 0; j < d->numel; j++) {
            const float v = grads2.base[d->offset + j];
            if (tower ? v != 0.0f : v != grads.base[d->offset + j])
                fail_msg("%s[%lld]: frozen-tower gradient %g (with towers training: %g)", d->name, (long long)j, v,
                         grads.base[d->offset + j]);
        }
    }
    qc_arena_free(&grads);
    qc_arena_free(&grads2);
    free(R);
    vqa_free(&k);
}

static void test_gradients(void **state) {
    (void)state;
    check_gradients(FUSION_JSON);
}

/* The picture read as 3 x 3 places (fuser.h) with their positions: the
 * gradient reaches the image tower through the places' max. */
static void test_gradients_places(void **state) {
    (void)state;
    check_gradients("{\"width\": 16, \"layers\": 1, \"heads\": 2, \"mlp\": 32, \"gate_hidden\": 8, "
                    "\"places\": 3, \"positions\": true}");
}

/* A row's answer does not depend on what an absent modality's row holds,
 * and the saved model answers the same after loading. */
static void test_absent_and_save(void **state) {
    (void)state;
    vqa_case k;
    vqa_setup(&k, 6, false);
    vqa_fwd(&k);
    float *before = qt_alloc(k.n_out);
    memcpy(before, k.out, (size_t)k.n_out * sizeof(float));
    /* scramble the absent rows: text row 1, audio row 2 */
    qmod_batch *t = &k.b[QF_TEXT], *a = &k.b[QF_AUDIO];
    for (int64_t j = 0; j < t->T; j++) t->ids[1 * t->T + j] = (int32_t)(j % 50) + 4;
    for (int64_t j = 0; j < a->T * 80; j++) a->mel[2 * a->T * 80 + j] = 3.0f;
    vqa_fwd(&k);
    for (int64_t r = 0; r < 3; r++)
        for (int64_t c = 0; c < 3; c++)
            assert_float_equal(k.out[r * 3 + c], before[r * 3 + c], 1e-5);
    /* save, load, same answers */
    char dir[] = "/tmp/qiao-vqa-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/vqa.safetensors", dir);
    assert_int_equal(qmod_save(k.m, path, QIAO_DTYPE_F32), QIAO_OK);
    qmod_model *loaded = NULL;
    assert_int_equal(qmod_load(path, &loaded), QIAO_OK);
    assert_int_equal(qmod_vqa_check(loaded), QIAO_OK);
    qmod_model *orig = k.m;
    qmod_vqa_work_free(&k.w);
    k.m = loaded;
    assert_int_equal(qmod_vqa_work_init(&k.w, k.m, 3, false), QIAO_OK);
    vqa_fwd(&k);
    for (int64_t i = 0; i < k.n_out; i++) assert_float_equal(k.out[i], before[i], 1e-5);
    qmod_free(orig);
    qt_rm_rf(dir);
    free(before);
    vqa_free(&k);
}

/* The picture memo (models/vqa.h): the first forward runs the picture tower
 * and keeps each picture's tokens, the second reads them instead (pictures
 * scrambled in between answer as before), with places and without; a
 * picture not in the memo runs the tower again; the picture tower cannot
 * train after a forward from the memo. */
static void check_memo(const char *fusion) {
    vqa_case k;
    vqa_setup_with(&k, 8, true, fusion);
    qmod_memo memo;
    assert_int_equal(qmod_vqa_memo_init(&memo, k.m, 5, QMOD_MEMO_MAX), QIAO_OK);
    const int64_t picture[3] = {4, 0, 2};
    k.in.memo = &memo;
    k.in.picture = picture;
    vqa_fwd(&k);
    assert_true(memo.misses == 1 && memo.hits == 0 && !k.w.memo_hit);
    assert_true(memo.have[4] && memo.have[0] && memo.have[2] && !memo.have[1] && !memo.have[3]);
    float *before = qt_alloc(k.n_out);
    memcpy(before, k.out, (size_t)k.n_out * sizeof(float));
    qmod_batch *im = &k.b[QF_IMAGE];
    const int64_t n = im->B * im->T * k.m->cfg.image.patch * k.m->cfg.image.patch * 3;
    float *saved = qt_alloc(n);
    memcpy(saved, im->patches, (size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) im->patches[i] = 0.5f;
    vqa_fwd(&k);
    assert_true(memo.hits == 1 && k.w.memo_hit);
    for (int64_t i = 0; i < k.n_out; i++) assert_float_equal(k.out[i], before[i], 0.0);
    /* the picture tower cannot train on what it did not compute */
    qc_arena grads;
    assert_int_equal(qc_arena_alloc(&grads, k.m->tab.total), QIAO_OK);
    qmod_params g;
    qc_table_bind(&k.m->tab, grads.base, &g);
    const bool all[QF_NMOD] = {true, true, true}, no_picture[QF_NMOD] = {true, false, true};
    assert_int_equal(qmod_vqa_backward(&k.ex, k.m, &g, &k.w, &k.in, k.mode, before, before + k.n_ans, all, NULL),
                     QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qmod_vqa_backward(&k.ex, k.m, &g, &k.w, &k.in, k.mode, before, before + k.n_ans, no_picture, NULL),
                     QIAO_OK);
    /* a picture the memo lacks: the tower runs (on the scrambled pixels) */
    const int64_t other[3] = {4, 1, 2};
    k.in.picture = other;
    vqa_fwd(&k);
    assert_true(memo.misses == 2 && !k.w.memo_hit && memo.have[1]);
    bool differs = false;
    for (int64_t i = 0; i < k.n_out; i++) differs = differs || k.out[i] != before[i];
    assert_true(differs);
    memcpy(im->patches, saved, (size_t)n * sizeof(float));
    qc_arena_free(&grads);
    free(saved), free(before);
    qmod_memo_free(&memo);
    vqa_free(&k);
}

static void test_memo(void **state) {
    (void)state;
    check_memo(FUSION_JSON);
    check_memo("{\"width\": 16, \"layers\": 1, \"heads\": 2, \"mlp\": 32, \"gate_hidden\": 8, \"places\": 3, "
               "\"question_positions\": true, \"picture_mean\": true}");
}

/* qmod_vqa_picture_tokens into qmod_memo_write: the picture tower alone
 * fills the memo (the rows it already holds stay as they are), and a
 * forward then reads every picture from it and answers exactly as the
 * towers run in full. A memo over its byte limit is QIAO_ERR_TOO_LARGE. */
static void check_memo_fill(const char *fusion) {
    vqa_case k;
    vqa_setup_with(&k, 9, true, fusion);
    vqa_fwd(&k);
    float *want = qt_alloc(k.n_out);
    memcpy(want, k.out, (size_t)k.n_out * sizeof(float));
    qmod_memo memo;
    assert_int_equal(qmod_vqa_memo_init(&memo, k.m, 4, 1.0), QIAO_ERR_TOO_LARGE);
    assert_true(memo.n == 4 && memo.T > 0 && memo.C > 0 && !memo.tok);
    assert_int_equal(qmod_vqa_memo_init(&memo, k.m, 4, QMOD_MEMO_MAX), QIAO_OK);
    const int64_t picture[3] = {3, 1, 0};
    const qmod_memo_rows rows = {.B = 3, .picture = picture};
    memo.have[0] = 1; /* held already: left alone */
    memset(memo.tok, 0, (size_t)(memo.T * memo.C) * sizeof(float));
    const float *tok = NULL;
    assert_int_equal(qmod_vqa_picture_tokens(&k.ex, k.m, &k.w, &k.b[QF_IMAGE], &tok), QIAO_OK);
    qmod_memo_write(&memo, &rows, tok);
    assert_true(memo.have[3] && memo.have[1] && !memo.have[2] && memo.misses == 1);
    for (int64_t i = 0; i < memo.T * memo.C; i++) assert_true(memo.tok[i] == 0.0f);
    /* a batch with a picture the memo lacks is not read */
    qiao_status st = QIAO_OK;
    const int64_t lacking[2] = {3, 2};
    const qmod_memo_rows some = {.B = 2, .picture = lacking};
    assert_null(qmod_memo_read(&memo, &some, &st));
    assert_int_equal(st, QIAO_OK);
    /* picture 0 again, now computed */
    memo.have[0] = 0;
    assert_int_equal(qmod_vqa_picture_tokens(&k.ex, k.m, &k.w, &k.b[QF_IMAGE], &tok), QIAO_OK);
    qmod_memo_write(&memo, &rows, tok);
    k.in.memo = &memo, k.in.picture = picture;
    vqa_fwd(&k);
    assert_true(k.w.memo_hit && memo.hits == 1);
    for (int64_t i = 0; i < k.n_out; i++) assert_float_equal(k.out[i], want[i], 0.0);
    assert_int_equal(qmod_vqa_picture_tokens(&k.ex, k.m, &k.w, NULL, &tok), QIAO_ERR_INVALID_ARGUMENT);
    free(want);
    qmod_memo_free(&memo);
    vqa_free(&k);
}

static void test_memo_fill(void **state) {
    (void)state;
    check_memo_fill(FUSION_JSON);
    check_memo_fill("{\"width\": 16, \"layers\": 1, \"heads\": 2, \"mlp\": 32, \"gate_hidden\": 8, \"places\": 3}");
}

static void test_unsupported(void **state) {
    (void)state;
    qmod_model *m = qt_tiny_model(1, false);
    qmod_vqa_work w;
    assert_int_equal(qmod_vqa_work_init(&w, m, 4, false), QIAO_ERR_UNSUPPORTED);
    assert_non_null(strstr(qiao_last_error(), "cannot answer questions"));
    qmod_free(m);
}

#define CASE(name) {#name, test_##name, NULL, NULL, NULL}
static const struct CMUnitTest tests[] = {
    CASE(config),
    CASE(gradients),
    CASE(gradients_places),
    CASE(memo),
    CASE(memo_fill),
    CASE(absent_and_save),
    CASE(unsupported),
};

QT_MAIN(tests)
