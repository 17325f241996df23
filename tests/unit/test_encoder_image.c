/* The image encoder (modalities/image/encoder.c): gradients against central
 * differences, 1-vs-2-thread determinism, config parsing and validation, and
 * real photos through the public decode/patch API into the forward.
 *
 * Gradcheck tolerances (h 1e-3, atol 1e-3, rtol 1e-2) are justified in
 * testutil.h; the weights are drawn N(0, 1/fan_in) (not the 0.02 init) so
 * activations stay O(1) and the finite differences are meaningful. */
#include <string.h>

#include "testutil.h"

#include <cjson/cJSON.h>

#include "backend/backend.h"
#include "modalities/image/encoder.h"
#include "nn/nn.h"
#include "qiao.h"

typedef struct enc {
    const qb_exec *ex;
    qe_image_config cfg;
    qt_model m;
    qe_image_params p, g;
    qe_image_acts a, da;
    qe_image_input in;
} enc;

static qe_image_config parse_cfg(const char *json, int64_t D) {
    cJSON *o = cJSON_Parse(json);
    assert_non_null(o);
    qe_image_config cfg;
    qiao_status st = qe_image_config_from_json(o, D, &cfg);
    if (st != QIAO_OK) printf("%s\n", qiao_last_error());
    assert_int_equal(st, QIAO_OK);
    cJSON_Delete(o);
    return cfg;
}

static void enc_init(enc *e, const qb_exec *ex, const qe_image_config *cfg, int64_t B, uint64_t seed) {
    memset(e, 0, sizeof *e);
    e->ex = ex;
    e->cfg = *cfg;
    qc_table_init_empty(&e->m.pt);
    qc_table_init_empty(&e->m.at);
    assert_int_equal(qe_image_describe(&e->m.pt, "image.", cfg, 0), QIAO_OK);
    assert_int_equal(qe_image_describe_acts(&e->m.at, "image.", cfg, B, cfg->tokens, 0), QIAO_OK);
    qt_model_alloc(&e->m, &e->p, &e->g, &e->a, &e->da);
    qc_table_init(&e->m.pt, e->m.params.base, seed);
    e->in.B = B;
}

static void enc_free(enc *e) {
    qt_model_free(&e->m);
}

static float *tensor(enc *e, const char *name, int64_t *numel) {
    const qc_tensor_desc *t = qt_model_tensor(&e->m, name);
    if (numel) *numel = t->numel;
    return e->m.params.base + t->offset;
}

static float *grad(enc *e, const char *name) { return e->m.grads.base + qt_model_tensor(&e->m, name)->offset; }

/* Weights N(0, 1/fan_in), norm gains 1 + noise, biases and positions noise:
 * every tensor non-trivial, activations O(1). */
static void draw_check_weights(enc *e, uint64_t seed) {
    for (size_t i = 0; i < e->m.pt.n; i++) {
        const qc_tensor_desc *t = &e->m.pt.t[i];
        float *x = e->m.params.base + t->offset;
        if (t->ndim == 2) {
            qt_fill_normal(x, t->numel, 1.0f / sqrtf((float)t->shape[1]), seed + i);
        } else {
            qt_fill_normal(x, t->numel, 0.1f, seed + i);
            if (strstr(t->name, "ln") && strstr(t->name, ".weight"))
                for (int64_t k = 0; k < t->numel; k++) x[k] += 1.0f;
        }
    }
}

static void fwd(void *ctx) {
    enc *e = ctx;
    qe_image_forward(e->ex, &e->a, &e->p, &e->in, &e->cfg);
}

static void fwd_bwd(enc *e, const float *R, bool zero_grads) {
    if (zero_grads) qc_arena_zero(&e->m.grads);
    qc_arena_zero(&e->m.dacts);
    fwd(e);
    qe_image_backward(e->ex, &e->g, &e->da, R, NULL, &e->a, &e->p, &e->in, &e->cfg);
}

/* The named tensors' gradients against finite differences of <R, emb>:
 * how many disagree. Each gradient must be nonzero (a check against an
 * all-zero gradient would prove little). */
static int check_grads(enc *e, const char *const *names, size_t n_names, const float *R, int64_t nout) {
    int bad = 0;
    for (size_t k = 0; k < n_names; k++) {
        int64_t n;
        float *x = tensor(e, names[k], &n);
        const float *gx = grad(e, names[k]);
        double mag = 0;
        for (int64_t i = 0; i < n; i++) mag += fabs(gx[i]);
        assert_true(mag > 1e-3);
        bad += qt_gradcheck(names[k], fwd, e, e->a.trunk.emb, R, nout, x, gx, n, 1e-3f, 1e-3, 1e-2, 300);
    }
    return bad;
}

static const char *kTiny = "{\"image_size\": 8, \"patch\": 4, \"width\": 8, \"layers\": 1, \"heads\": 2, \"mlp\": 16}";

static void gradcheck(void **state) {
    (void)state;
    qb_exec ex;
    qb_exec_cpu(&ex, 1);
    qe_image_config cfg = parse_cfg(kTiny, 6);
    assert_int_equal(cfg.tokens, 4);
    assert_int_equal(cfg.patch_dim, 48);
    const int64_t B = 2;
    enc e;
    enc_init(&e, &ex, &cfg, B, 1);
    draw_check_weights(&e, 100);
    float *patches = qt_alloc(B * cfg.tokens * cfg.patch_dim);
    qt_fill_normal(patches, B * cfg.tokens * cfg.patch_dim, 1.0f, 7);
    e.in.patches = patches;
    const int64_t nout = B * cfg.trunk.D;
    float *R = qt_alloc(nout);
    qt_fill_normal(R, nout, 1.0f, 9);
    fwd_bwd(&e, R, true);

    const char *names[] = {"image.patch_embed.weight", "image.patch_embed.bias", "image.trunk.pos",
                           "image.trunk.blocks.0.ln1.weight", "image.trunk.blocks.0.attn.q.weight",
                           "image.trunk.blocks.0.attn.k.weight", "image.trunk.blocks.0.mlp.fc.weight",
                           "image.trunk.ln_f.bias", "image.trunk.proj.weight"};
    assert_int_equal(check_grads(&e, names, sizeof names / sizeof names[0], R, nout), 0);

    /* a second backward accumulates: g -> 2 g */
    int64_t n;
    (void)tensor(&e, "image.patch_embed.weight", &n);
    float *g1 = qt_alloc(n);
    memcpy(g1, grad(&e, "image.patch_embed.weight"), (size_t)n * sizeof(float));
    fwd_bwd(&e, R, false);
    const float *g2 = grad(&e, "image.patch_embed.weight");
    for (int64_t i = 0; i < n; i++) assert_float_equal(g2[i], 2.0f * g1[i], 1e-5f + 1e-5f * fabsf(g1[i]));
    free(g1);
    free(R);
    free(patches);
    enc_free(&e);
}

static void threads_bit_identical(void **state) {
    (void)state;
    qb_exec ex1, ex2;
    qb_exec_cpu(&ex1, 1);
    qb_exec_cpu(&ex2, 2);
    /* B*T*C = 40960 and B*T*F = 81920 rows x width: above the CPU kernels'
     * 32768-element parallel threshold, so 2 threads really split work. */
    qe_image_config cfg = parse_cfg(
        "{\"image_size\": 64, \"patch\": 8, \"width\": 128, \"layers\": 2, \"heads\": 4, \"mlp\": 256}", 1024);
    const int64_t B = 5, np = B * cfg.tokens * cfg.patch_dim;
    float *patches = qt_alloc(np);
    qt_fill_normal(patches, np, 1.0f, 3);
    float *R = qt_alloc(B * cfg.trunk.D);
    qt_fill_normal(R, B * cfg.trunk.D, 1.0f, 4);
    enc e1, e2;
    enc_init(&e1, &ex1, &cfg, B, 42);
    enc_init(&e2, &ex2, &cfg, B, 42);
    e1.in.patches = e2.in.patches = patches;
    fwd_bwd(&e1, R, true);
    fwd_bwd(&e2, R, true);
    assert_memory_equal(e1.a.trunk.emb, e2.a.trunk.emb, (size_t)(B * cfg.trunk.D) * sizeof(float));
    assert_memory_equal(e1.m.grads.base, e2.m.grads.base, e1.m.pt.total * sizeof(float));
    enc_free(&e1);
    enc_free(&e2);
    free(R);
    free(patches);
}

/* Expects QIAO_ERR_FORMAT with `key` in the message. */
static void expect_bad(const char *json, int64_t D, const char *key) {
    cJSON *o = cJSON_Parse(json);
    assert_non_null(o);
    qe_image_config cfg;
    memset(&cfg, 0x5a, sizeof cfg);
    qiao_status st = qe_image_config_from_json(o, D, &cfg);
    cJSON_Delete(o);
    if (st != QIAO_ERR_FORMAT || !strstr(qiao_last_error(), key))
        printf("config %s: status %d, message '%s' (wanted key '%s')\n", json, (int)st, qiao_last_error(), key);
    assert_int_equal(st, QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), key));
}

/* "arch": "clip": the class vector is token 0 (the pooled one), every
 * parameter's gradient checks, and its keys are validated. */
static void clip_class_token(void **state) {
    (void)state;
    qb_exec ex;
    qb_exec_cpu(&ex, 1);
    qe_image_config cfg = parse_cfg("{\"arch\": \"clip\", \"image_size\": 8, \"patch\": 4, \"width\": 8, "
                                    "\"layers\": 1, \"heads\": 2, \"mlp\": 16}",
                                    6);
    assert_true(cfg.class_token && cfg.trunk.ln_in);
    assert_int_equal(cfg.tokens, 4);
    assert_int_equal(cfg.trunk.max_T, 5);
    assert_int_equal(cfg.trunk.pool, NN_POOL_FIRST);
    assert_int_equal(cfg.trunk.act, NN_ACT_QUICK_GELU);
    assert_int_equal(cfg.trunk.proj, NN_PROJ_NOBIAS);
    assert_true(fabsf(cfg.trunk.eps - 1e-5f) < 1e-12f);
    const int64_t B = 2, T = 5, C = 8;
    enc e;
    enc_init(&e, &ex, &cfg, B, 1);
    draw_check_weights(&e, 200);
    float *patches = qt_alloc(B * cfg.tokens * cfg.patch_dim);
    qt_fill_normal(patches, B * cfg.tokens * cfg.patch_dim, 1.0f, 17);
    e.in.patches = patches;
    const int64_t nout = B * cfg.trunk.D;
    float *R = qt_alloc(nout);
    qt_fill_normal(R, nout, 1.0f, 19);
    fwd_bwd(&e, R, true);
    const float *cls = tensor(&e, "image.class_emb", NULL);
    for (int64_t b = 0; b < B; b++) assert_memory_equal(e.a.x + b * T * C, cls, (size_t)C * sizeof(float));
    const char *names[] = {"image.class_emb",          "image.patch_embed.weight",
                           "image.patch_embed.bias",   "image.trunk.pos",
                           "image.trunk.ln_in.weight", "image.trunk.blocks.0.mlp.fc.bias",
                           "image.trunk.ln_f.weight",  "image.trunk.proj.weight"};
    assert_int_equal(check_grads(&e, names, sizeof names / sizeof names[0], R, nout), 0);
    free(R);
    free(patches);
    enc_free(&e);
    expect_bad("{\"arch\": \"clip\", \"image_size\": 8, \"patch\": 4, \"width\": 8, \"layers\": 1, \"heads\": 2, "
               "\"mlp\": 16, \"pool\": \"mean\"}",
               6, "first");
    expect_bad("{\"image_size\": 8, \"patch\": 4, \"width\": 8, \"layers\": 1, \"heads\": 2, \"mlp\": 16, "
               "\"act\": \"quick_gelu\"}",
               6, "clip");
    expect_bad("{\"arch\": \"vit\", \"image_size\": 8, \"patch\": 4, \"width\": 8, \"layers\": 1, \"heads\": 2, "
               "\"mlp\": 16}",
               6, "arch");
}

static void config_validation(void **state) {
    (void)state;
    qe_image_config cfg = parse_cfg(
        "{\"image_size\": 64, \"patch\": 8, \"width\": 96, \"layers\": 3, \"heads\": 6, \"mlp\": 384}", 512);
    assert_int_equal(cfg.image_size, 64);
    assert_int_equal(cfg.patch, 8);
    assert_int_equal(cfg.patch_dim, 192);
    assert_int_equal(cfg.tokens, 64);
    assert_int_equal(cfg.trunk.C, 96);
    assert_int_equal(cfg.trunk.L, 3);
    assert_int_equal(cfg.trunk.H, 6);
    assert_int_equal(cfg.trunk.F, 384);
    assert_int_equal(cfg.trunk.max_T, 64);
    assert_int_equal(cfg.trunk.D, 512);

    expect_bad("{\"patch\": 8, \"width\": 64, \"layers\": 2, \"heads\": 4, \"mlp\": 128}", 1024, "'image_size'");
    expect_bad("{\"image_size\": 64, \"width\": 64, \"layers\": 2, \"heads\": 4, \"mlp\": 128}", 1024, "'patch'");
    expect_bad("{\"image_size\": 64, \"patch\": 8, \"width\": \"64\", \"layers\": 2, \"heads\": 4, \"mlp\": 128}",
               1024, "'width'");
    expect_bad("{\"image_size\": 64, \"patch\": 8, \"width\": 64, \"layers\": 2.5, \"heads\": 4, \"mlp\": 128}", 1024,
               "'layers'");
    expect_bad("{\"image_size\": 64, \"patch\": 8, \"width\": 64, \"layers\": 2, \"heads\": 5, \"mlp\": 128}", 1024,
               "'heads'");
    expect_bad("{\"image_size\": 64, \"patch\": 7, \"width\": 64, \"layers\": 2, \"heads\": 4, \"mlp\": 128}", 1024,
               "'patch'");
    expect_bad("{\"image_size\": 64, \"patch\": 8, \"width\": 64, \"layers\": 2, \"heads\": 4, \"mlp\": -1}", 1024,
               "'mlp'");
    expect_bad("{\"image_size\": 1e12, \"patch\": 8, \"width\": 64, \"layers\": 2, \"heads\": 4, \"mlp\": 128}", 1024,
               "'image_size'");
    expect_bad("{\"image_size\": 64, \"patch\": 8, \"width\": 64, \"layers\": 99, \"heads\": 4, \"mlp\": 128}", 1024,
               "'layers'");
    /* 4096 / 1 -> 16.7M tokens: an attention matrix nobody can hold */
    expect_bad("{\"image_size\": 4096, \"patch\": 1, \"width\": 64, \"layers\": 2, \"heads\": 4, \"mlp\": 128}", 1024,
               "'patch'");
    expect_bad("{\"image_size\": 64, \"patch\": 8, \"width\": 64, \"layers\": 2, \"heads\": 4, \"mlp\": 128, "
               "\"hedas\": 4}",
               1024, "'hedas'");
    expect_bad("{\"image_size\": 64, \"patch\": 8, \"width\": 64, \"layers\": 2, \"heads\": 4, \"mlp\": 128}", 0,
               "'embed_dim'");
    expect_bad("[1, 2]", 1024, "'image'");

    /* describe_acts refuses a token count other than the patch count */
    qc_table t;
    qc_table_init_empty(&t);
    assert_int_equal(qe_image_describe_acts(&t, "image.", &cfg, 2, cfg.tokens - 1, 0), QIAO_ERR_INVALID_ARGUMENT);
    qc_table_free(&t);
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    fclose(f);
    return s;
}

static int64_t param_count(const char *file, qe_image_config *cfg_out) {
    char path[1024];
    snprintf(path, sizeof path, "%s/models/configs/%s", QIAO_SOURCE_DIR, file);
    char *text = read_text(path);
    cJSON *root = cJSON_Parse(text);
    free(text);
    assert_non_null(root);
    const cJSON *D = cJSON_GetObjectItemCaseSensitive(root, "embed_dim");
    assert_true(cJSON_IsNumber(D));
    qe_image_config cfg;
    qiao_status st = qe_image_config_from_json(cJSON_GetObjectItemCaseSensitive(root, "image"),
                                               (int64_t)D->valuedouble, &cfg);
    if (st != QIAO_OK) printf("%s: %s\n", file, qiao_last_error());
    assert_int_equal(st, QIAO_OK);
    cJSON_Delete(root);
    qc_table t;
    qc_table_init_empty(&t);
    assert_int_equal(qe_image_describe(&t, "image.", &cfg, 0), QIAO_OK);
    int64_t n = 0;
    for (size_t i = 0; i < t.n; i++) n += t.t[i].numel;
    qc_table_free(&t);
    *cfg_out = cfg;
    return n;
}

static void shipped_configs(void **state) {
    (void)state;
    qe_image_config tiny, base;
    int64_t nt = param_count("tiny.json", &tiny), nb = param_count("base.json", &base);
    printf("image encoder parameters: tiny %lld, base %lld\n", (long long)nt, (long long)nb);
    assert_int_equal(tiny.trunk.D, 1024);
    assert_int_equal(base.trunk.D, 1024);
    assert_true(nt < nb);
    /* the base model's budget: about 3-4M parameters per encoder */
    assert_true(nb <= 4500000);
}

/* Three real photos through the public decode and patch API. */
static const char *kPhotos[3] = {"000000126107.jpg", "000000159269.jpg", "000000205401.jpg"};

static float *photo_patches(const qe_image_config *cfg) {
    qiao_image_preprocess_params pp = qiao_image_preprocess_default_params();
    pp.size = cfg->image_size;
    size_t len = qiao_image_patches_len(&pp, cfg->patch);
    assert_int_equal(len, (size_t)(cfg->tokens * cfg->patch_dim));
    float *all = qt_alloc(3 * (int64_t)len);
    for (int i = 0; i < 3; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/image/%s", QIAO_TEST_DATA, kPhotos[i]);
        qiao_image *img = NULL;
        assert_int_equal(qiao_image_decode_file(path, NULL, &img), QIAO_OK);
        assert_int_equal(qiao_image_patches(img, &pp, cfg->patch, all + (size_t)i * len, len), QIAO_OK);
        qiao_image_free(img);
    }
    return all;
}

static void photos_end_to_end(void **state) {
    (void)state;
    qb_exec ex;
    qb_exec_cpu(&ex, 2);
    qe_image_config cfg = parse_cfg(
        "{\"image_size\": 32, \"patch\": 8, \"width\": 64, \"layers\": 2, \"heads\": 4, \"mlp\": 128}", 1024);
    assert_int_equal(cfg.tokens, 16);
    float *patches = photo_patches(&cfg);
    const int64_t D = cfg.trunk.D, per = cfg.tokens * cfg.patch_dim;

    enc batch;
    enc_init(&batch, &ex, &cfg, 3, 2024);
    batch.in.patches = patches;
    fwd(&batch);
    const float *E = batch.a.trunk.emb;
    for (int b = 0; b < 3; b++) {
        double n2 = 0;
        for (int64_t j = 0; j < D; j++) {
            assert_true(isfinite(E[b * D + j]));
            n2 += (double)E[b * D + j] * E[b * D + j];
        }
        assert_float_equal(sqrt(n2), 1.0, 1e-5);
    }
    /* different photos must not collapse onto one embedding */
    for (int b = 1; b < 3; b++) {
        double diff = 0;
        for (int64_t j = 0; j < D; j++) diff = fmax(diff, fabs(E[j] - E[b * D + j]));
        assert_true(diff > 1e-4);
    }

    /* Images have no padding, so the contract's "masking does not change the
     * embedding" becomes batch independence: each photo alone gives the
     * embedding it has inside the batch of three. */
    for (int b = 0; b < 3; b++) {
        enc one;
        enc_init(&one, &ex, &cfg, 1, 2024);
        one.in.patches = patches + b * per;
        fwd(&one);
        for (int64_t j = 0; j < D; j++) assert_float_equal(one.a.trunk.emb[j], E[b * D + j], 1e-5);
        enc_free(&one);
    }
    enc_free(&batch);
    free(patches);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gradcheck),         cmocka_unit_test(threads_bit_identical),
        cmocka_unit_test(config_validation), cmocka_unit_test(shipped_configs),
        cmocka_unit_test(photos_end_to_end), cmocka_unit_test(clip_class_token),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
