/* Heads (fusion/head.c, models/head.c): the MLP head's gradients against
 * finite differences, with and without a hidden layer; a text-only model
 * with a whole-input head on its embedding and a per-token head on its
 * token sequence, gradient-checked end to end through the text tower (the
 * token gradient entering the trunk, qmod_backward_at), saved and loaded;
 * and every malformed "heads" entry refused with a message naming it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "fusion/head.h"
#include "models/head.h"
#include "models/model.h"
#include "testutil.h"

#define TINY_JSON QIAO_SOURCE_DIR "/models/configs/tiny.json"
#define TOK_PATH QIAO_TEST_DATA "/tokenizer/tok-test.safetensors"

/* ---- the MLP head alone -------------------------------------------------------------- */

typedef struct mlp_case {
    qb_exec ex;
    qf_mlp_config cfg;
    int64_t N;
    qt_model m;
    qf_mlp_params p, g;
    qf_mlp_acts a, da;
    float *x, *dx, *R;
} mlp_case;

static void mlp_fwd(void *ctx) {
    mlp_case *k = ctx;
    qf_mlp_forward(&k->ex, &k->a, &k->p, k->x, k->N, &k->cfg);
}

static int mlp_check(int64_t hidden) {
    mlp_case k;
    memset(&k, 0, sizeof k);
    qb_exec_cpu(&k.ex, 1);
    k.cfg = (qf_mlp_config){.in = 6, .hidden = hidden, .classes = 5};
    k.N = 4;
    qc_table_init_empty(&k.m.pt);
    qc_table_init_empty(&k.m.at);
    assert_int_equal(qf_mlp_describe(&k.m.pt, "h.", &k.cfg, 0), QIAO_OK);
    assert_int_equal(qf_mlp_describe_acts(&k.m.at, "h.", &k.cfg, k.N, 0), QIAO_OK);
    assert_int_equal(qc_table_find(&k.m.pt, "h.fc.weight") >= 0, hidden > 0);
    qt_model_alloc(&k.m, &k.p, &k.g, &k.a, &k.da);
    qt_fill_normal(k.m.params.base, (int64_t)k.m.pt.total, 0.5f, 3);
    const int64_t nx = k.N * k.cfg.in, no = k.N * k.cfg.classes;
    k.x = qt_alloc(nx);
    k.dx = qt_alloc(nx);
    k.R = qt_alloc(no);
    qt_fill_normal(k.x, nx, 1.0f, 5);
    qt_fill_normal(k.R, no, 1.0f, 7);
    mlp_fwd(&k);
    qf_mlp_backward(&k.ex, k.dx, &k.g, &k.da, k.R, &k.a, &k.p, k.x, k.N, &k.cfg);
    int bad = qt_gradcheck("x", mlp_fwd, &k, k.a.logits, k.R, no, k.x, k.dx, nx, 1e-3f, 1e-3, 1e-2, 64);
    for (size_t i = 0; i < k.m.pt.n; i++) {
        const qc_tensor_desc *t = &k.m.pt.t[i];
        bad += qt_gradcheck(t->name, mlp_fwd, &k, k.a.logits, k.R, no, k.m.params.base + t->offset,
                            k.m.grads.base + t->offset, t->numel, 1e-3f, 1e-3, 1e-2, 64);
    }
    qt_model_free(&k.m);
    free(k.x), free(k.dx), free(k.R);
    return bad;
}

static void mlp_gradients(void **state) {
    (void)state;
    assert_int_equal(mlp_check(0), 0);
    assert_int_equal(mlp_check(7), 0);
    qf_mlp_config bad = {.in = 4, .hidden = 0, .classes = 0};
    qc_table t;
    qc_table_init_empty(&t);
    assert_int_equal(qf_mlp_describe(&t, "h.", &bad, 0), QIAO_ERR_FORMAT);
    qc_table_free(&t);
}

/* ---- heads in a model ------------------------------------------------------------------ */

/* tiny.json's text tower alone, with `heads` (a JSON object) added. */
static char *config_with_heads(const char *heads) {
    FILE *fp = fopen(TINY_JSON, "rb");
    assert_non_null(fp);
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = 0;
    cJSON *root = cJSON_Parse(buf);
    assert_non_null(root);
    cJSON_DeleteItemFromObjectCaseSensitive(root, "image");
    cJSON_DeleteItemFromObjectCaseSensitive(root, "audio");
    cJSON *h = cJSON_Parse(heads);
    assert_non_null(h);
    cJSON_AddItemToObject(root, "heads", h);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

typedef struct model_case {
    qb_exec ex;
    qmod_model *m;
    qmod_batch b;
    qmod_work w;
    qmod_head_work hw[2];
    int64_t n_out[2];
    float *out; /* both heads' logits, concatenated (the checked output) */
} model_case;

static void model_fwd(void *ctx) {
    model_case *k = ctx;
    const float *emb = NULL, *logits = NULL;
    assert_int_equal(qmod_forward(&k->ex, k->m, &k->w, &k->b, &emb), QIAO_OK);
    qmod_token_seq ts;
    assert_int_equal(qmod_tokens(k->m, &k->w, &k->b, &ts), QIAO_OK);
    assert_int_equal(qmod_head_forward(&k->ex, k->m, &k->hw[0], emb, k->b.B, &logits), QIAO_OK);
    memcpy(k->out, logits, (size_t)k->n_out[0] * sizeof(float));
    assert_int_equal(qmod_head_forward(&k->ex, k->m, &k->hw[1], ts.x, ts.B * ts.T, &logits), QIAO_OK);
    memcpy(k->out + k->n_out[0], logits, (size_t)k->n_out[1] * sizeof(float));
}

static void model_heads(void **state) {
    (void)state;
    char *json = config_with_heads("{\"intent\": {\"kind\": \"mlp\", \"tower\": \"text\", \"hidden\": 16, "
                                   "\"classes\": 5}, \"slots\": {\"kind\": \"mlp\", \"tower\": \"text\", "
                                   "\"input\": \"tokens\", \"classes\": 4}}");
    qmod_config cfg, fitted;
    assert_int_equal(qmod_config_from_string(json, "heads", &cfg), QIAO_OK);
    cJSON_free(json);
    assert_int_equal(cfg.n_heads, 2);
    assert_int_equal(qmod_head_find(&cfg, "slots"), 1);
    assert_int_equal(cfg.heads[0].mlp.in, cfg.embed_dim);
    assert_int_equal(cfg.heads[1].mlp.in, cfg.text.trunk.C);
    qiao_tokenizer *tok = NULL;
    assert_int_equal(qiao_tokenizer_load(TOK_PATH, &tok), QIAO_OK);
    assert_int_equal(qmod_config_for_tokenizer(&cfg, tok, &fitted), QIAO_OK);
    qiao_tokenizer_free(tok);
    assert_int_equal(fitted.n_heads, 2);
    model_case k;
    memset(&k, 0, sizeof k);
    qb_exec_cpu(&k.ex, 1);
    assert_int_equal(qmod_create(&fitted, 9, &k.m), QIAO_OK);
    qmod_config_free(&cfg);
    qmod_config_free(&fitted);
    assert_int_equal(qmod_set_tokenizer(k.m, TOK_PATH), QIAO_OK);
    assert_true(qc_table_find(&k.m->tab, "heads.intent.fc.weight") >= 0);
    assert_true(qc_table_find(&k.m->tab, "heads.slots.out.weight") >= 0);
    assert_true(qc_table_find(&k.m->tab, "heads.slots.fc.weight") < 0);
    assert_true(qmod_param_count(k.m, "heads.intent.") == 16 * 1024 + 16 + 5 * 16 + 5);
    /* O(0.1) weights instead of the 0.02 init, so finite differences see the
     * gradient above float rounding. */
    for (size_t i = 0; i < k.m->tab.n; i++) {
        const qc_tensor_desc *t = &k.m->tab.t[i];
        if (t->init == QC_INIT_NORMAL)
            for (int64_t j = 0; j < t->numel; j++) k.m->arena.base[t->offset + j] *= 5.0f;
    }
    const char *texts[] = {"book a table for two", "明天 的 天气"};
    assert_int_equal(qmod_batch_text(k.m, texts, 2, &k.b), QIAO_OK);
    assert_int_equal(qmod_work_init(&k.w, k.m, QMOD_TEXT, 2, k.b.T, true), QIAO_OK);
    assert_int_equal(qmod_head_work_init(&k.hw[0], k.m, 0, 2, true), QIAO_OK);
    assert_int_equal(qmod_head_work_init(&k.hw[1], k.m, 1, 2 * k.b.T, true), QIAO_OK);
    k.n_out[0] = 2 * 5;
    k.n_out[1] = 2 * k.b.T * 4;
    const int64_t n_out = k.n_out[0] + k.n_out[1];
    k.out = qt_alloc(n_out);
    float *R = qt_alloc(n_out);
    qt_fill_normal(R, n_out, 1.0f, 21);
    /* Padded tokens take no part in a tagging loss. */
    for (int64_t r = 0; r < 2 * k.b.T; r++)
        if (!k.b.mask[r])
            for (int c = 0; c < 4; c++) R[k.n_out[0] + r * 4 + c] = 0.0f;
    model_fwd(&k);
    /* The analytic gradient: heads back to demb and dtokens, then the tower. */
    qc_arena grads;
    qmod_params g;
    assert_int_equal(qc_arena_alloc(&grads, k.m->tab.total), QIAO_OK);
    qc_table_bind(&k.m->tab, grads.base, &g);
    const int64_t D = k.m->cfg.embed_dim, C = k.m->cfg.text.trunk.C;
    float *demb = qt_alloc(2 * D), *dtok = qt_alloc(2 * k.b.T * C);
    const float *emb = NULL;
    assert_int_equal(qmod_forward(&k.ex, k.m, &k.w, &k.b, &emb), QIAO_OK);
    qmod_token_seq ts;
    assert_int_equal(qmod_tokens(k.m, &k.w, &k.b, &ts), QIAO_OK);
    const float *lg;
    assert_int_equal(qmod_head_forward(&k.ex, k.m, &k.hw[0], emb, 2, &lg), QIAO_OK);
    qmod_head_backward(&k.ex, k.m, &g, &k.hw[0], emb, 2, R, demb);
    assert_int_equal(qmod_head_forward(&k.ex, k.m, &k.hw[1], ts.x, 2 * k.b.T, &lg), QIAO_OK);
    qmod_head_backward(&k.ex, k.m, &g, &k.hw[1], ts.x, 2 * k.b.T, R + k.n_out[0], dtok);
    qmod_backward_at(&k.ex, k.m, &g, &k.w, &k.b, demb, dtok);
    const char *names[] = {"heads.intent.fc.weight", "heads.intent.out.bias", "heads.slots.out.weight",
                           "text.trunk.ln_f.weight", "text.trunk.blocks.1.mlp.fc.weight", "text.tag_emb.weight",
                           "text.piece_emb.weight"};
    int bad = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const ptrdiff_t j = qc_table_find(&k.m->tab, names[i]);
        assert_true(j >= 0);
        const qc_tensor_desc *t = &k.m->tab.t[j];
        double norm = 0;
        for (int64_t e = 0; e < t->numel; e++) norm += fabs(grads.base[t->offset + e]);
        assert_true(norm > 0);
        bad += qt_gradcheck(names[i], model_fwd, &k, k.out, R, n_out, k.m->arena.base + t->offset,
                            grads.base + t->offset, t->numel, 3e-3f, 1e-3, 1e-2, 48);
    }
    assert_int_equal(bad, 0);
    /* A save and load keeps the heads and their weights. */
    char path[512];
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/qiao_test_heads_%d.safetensors", dir && *dir ? dir : "/tmp", (int)getpid());
    assert_int_equal(qmod_save(k.m, path, QIAO_DTYPE_F32), QIAO_OK);
    qmod_model *l = NULL;
    assert_int_equal(qmod_load(path, &l), QIAO_OK);
    unlink(path);
    assert_int_equal(l->cfg.n_heads, 2);
    assert_string_equal(l->cfg.heads[1].name, "slots");
    assert_int_equal(l->cfg.heads[1].input, QMOD_HEAD_TOKENS);
    assert_int_equal(l->tab.total, k.m->tab.total);
    assert_memory_equal(l->arena.base, k.m->arena.base, k.m->tab.total * sizeof(float));
    qmod_free(l);
    qc_arena_free(&grads);
    free(demb), free(dtok), free(R), free(k.out);
    qmod_head_work_free(&k.hw[0]);
    qmod_head_work_free(&k.hw[1]);
    qmod_work_free(&k.w);
    qmod_batch_free(&k.b);
    qmod_free(k.m);
}

static void expect_bad_heads(const char *heads, const char *needle) {
    char *json = config_with_heads(heads);
    qmod_config cfg;
    qiao_status st = qmod_config_from_string(json, "c.json", &cfg);
    cJSON_free(json);
    if (st != QIAO_ERR_FORMAT || !strstr(qiao_last_error(), needle))
        printf("heads %s: status %d, message '%s' (expected to name '%s')\n", heads, (int)st, qiao_last_error(),
               needle);
    assert_int_equal(st, QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), needle));
}

static void head_config_errors(void **state) {
    (void)state;
    expect_bad_heads("{\"a\": {\"kind\": \"attention\", \"tower\": \"text\", \"classes\": 3}}", "heads.a.kind");
    expect_bad_heads("{\"a\": {\"kind\": \"mlp\", \"tower\": \"image\", \"classes\": 3}}", "heads.a.tower");
    expect_bad_heads("{\"a\": {\"kind\": \"mlp\", \"tower\": \"text\", \"input\": \"pooled\", \"classes\": 3}}",
                     "heads.a.input");
    expect_bad_heads("{\"a\": {\"kind\": \"mlp\", \"tower\": \"text\", \"classes\": 0}}", "classes");
    expect_bad_heads("{\"a\": {\"kind\": \"mlp\", \"tower\": \"text\"}}", "classes");
    expect_bad_heads("{\"a\": {\"kind\": \"mlp\", \"tower\": \"text\", \"classes\": 3, \"hidden\": -1}}", "hidden");
    expect_bad_heads("{\"a\": {\"kind\": \"mlp\", \"tower\": \"text\", \"classes\": 3, \"dropout\": 0.1}}",
                     "heads.a.dropout");
    expect_bad_heads("{\"Bad-Name\": {\"kind\": \"mlp\", \"tower\": \"text\", \"classes\": 3}}", "Bad-Name");
    expect_bad_heads("{\"a\": {\"kind\": \"mlp\", \"tower\": \"text\", \"classes\": 3}, "
                     "\"a\": {\"kind\": \"mlp\", \"tower\": \"text\", \"classes\": 2}}",
                     "twice");
    expect_bad_heads("{\"a\": {\"kind\": \"mlp\", \"tower\": \"text\", \"classes\": 3, \"context\": -1}}",
                     "'context' must be an integer in [0, 64]");
    expect_bad_heads("{\"a\": {\"kind\": \"mlp\", \"tower\": \"text\", \"classes\": 3, \"context\": 65}}",
                     "'context' must be an integer in [0, 64]");
    expect_bad_heads("{\"a\": {\"kind\": \"mlp\", \"tower\": \"text\", \"input\": \"tokens\", \"classes\": 3, "
                     "\"context\": 1}}",
                     "for a head on the text embedding");
    expect_bad_heads("{\"a\": 3}", "heads.a must be an object");
    expect_bad_heads("[1]", "\"heads\" must be an object");
    char many[2048] = "{";
    for (int i = 0; i <= QMOD_MAX_HEADS; i++) {
        char one[96];
        snprintf(one, sizeof one, "%s\"h%d\": {\"kind\": \"mlp\", \"tower\": \"text\", \"classes\": 2}", i ? ", " : "",
                 i);
        strcat(many, one);
    }
    strcat(many, "}");
    expect_bad_heads(many, "more than");
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(mlp_gradients),
    cmocka_unit_test(model_heads),
    cmocka_unit_test(head_config_errors),
};
QT_MAIN(tests)
