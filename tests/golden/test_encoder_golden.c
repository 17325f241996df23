/* tests/golden/test_encoder_golden.c - the three encoders against their
 * PyTorch peer (issue 5 §6).
 *
 * tests/golden/make_encoder_fixture.py (see its docstring to regenerate)
 * draws float32 parameters and padded inputs for a small config, runs the
 * peer bench/peer/qiao_peer.py in float64 on them and stores everything in
 * tests/data/encoder_golden.safetensors, the config JSON in the metadata
 * under "qiao.config". For each encoder this test parses that config with
 * qe_<m>_config_from_json, lays the parameters out with qe_<m>_describe
 * (prefix "<m>."), loads them by name with qc_st_load_table, runs
 * qe_<m>_forward on the fixture's inputs and compares the embeddings.
 *
 * Criteria, per row: cosine >= 0.9999 (the criterion for the peer)
 * and max |got - ref| <= 1e-4. The cosine alone would let a per-row scale or
 * a small systematic error through, so the absolute bound is added. Why 1e-4:
 * the reference is float64 arithmetic on the same float32 values, so what
 * remains is qiao's float32 rounding through a front end, two blocks, the
 * pool, the projection and the L2 norm, sums of at most 48 O(1) terms:
 * ~1e-7 relative per operation, a few 1e-7 on the unit-norm embedding
 * (PyTorch's own float32 run lands within ~1e-7, as the generator prints).
 * 1e-4 leaves a margin of > 100x for a correct implementation while any real
 * difference (a dropped term, a wrong mask, an off-by-one window) moves the
 * embedding by O(0.1). */
#include "testutil.h"

#include <math.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "backend/backend.h"
#include "core/safetensors.h"
#include "modalities/audio/encoder.h"
#include "modalities/image/encoder.h"
#include "modalities/text/encoder.h"
#include "nn/nn.h"

#define FIXTURE QIAO_TEST_DATA "/encoder_golden.safetensors"
#define FIXTURE_VERSION "1"
#define MIN_COSINE 0.9999
#define MAX_ABS_ERR 1e-4

typedef struct golden {
    qc_st_file *f;
    cJSON *config;
    int64_t embed_dim;
    qb_exec ex;
    qc_table pt, at;
    qc_arena params, acts;
} golden;

static int teardown(void **state) {
    golden *G = *state;
    if (!G) return 0;
    qc_st_close(G->f);
    cJSON_Delete(G->config);
    qc_arena_free(&G->params);
    qc_arena_free(&G->acts);
    qc_table_free(&G->pt);
    qc_table_free(&G->at);
    free(G);
    *state = NULL;
    return 0;
}

static int setup(void **state) {
    golden *G = calloc(1, sizeof *G);
    if (!G) return -1;
    *state = G;
    qb_exec_cpu(&G->ex, 1);
    qc_table_init_empty(&G->pt);
    qc_table_init_empty(&G->at);
    if (qc_st_open(FIXTURE, &G->f) != QIAO_OK) {
        printf("cannot open the fixture: %s\n", qiao_last_error());
        goto fail;
    }
    const char *ver = qc_st_metadata_get(G->f, "format_version");
    if (!ver || strcmp(ver, FIXTURE_VERSION) != 0) {
        printf("%s: format_version %s, this test expects %s\n", FIXTURE, ver ? ver : "(absent)", FIXTURE_VERSION);
        goto fail;
    }
    const char *js = qc_st_metadata_get(G->f, "qiao.config");
    G->config = js ? cJSON_Parse(js) : NULL;
    const cJSON *ed = cJSON_GetObjectItemCaseSensitive(G->config, "embed_dim");
    if (!cJSON_IsNumber(ed)) {
        printf("%s: no valid qiao.config with embed_dim in the metadata\n", FIXTURE);
        goto fail;
    }
    G->embed_dim = (int64_t)ed->valuedouble;
    return 0;
fail:
    teardown(state);
    return -1;
}

static const cJSON *section(const golden *G, const char *name) {
    return cJSON_GetObjectItemCaseSensitive(G->config, name);
}

/* The fixture tensor `name`, checked for dtype and element count; NULL (and
 * a message) otherwise. Its data may be unaligned: callers memcpy. */
static const qc_st_tensor *need(const golden *G, const char *name, qiao_dtype dtype, int64_t numel) {
    const qc_st_tensor *t = qc_st_find(G->f, name);
    if (!t) {
        printf("%s: no tensor '%s'\n", FIXTURE, name);
        return NULL;
    }
    if (t->dtype != dtype || (numel >= 0 && t->numel != numel)) {
        printf("%s: tensor '%s' has dtype %d and %lld elements, expected %d and %lld\n", FIXTURE, name,
               (int)t->dtype, (long long)t->numel, (int)dtype, (long long)numel);
        return NULL;
    }
    return t;
}

/* A malloc'ed, aligned copy of the tensor (numel elements of `size` bytes). */
static void *copy_of(const golden *G, const char *name, qiao_dtype dtype, int64_t numel, size_t size) {
    const qc_st_tensor *t = need(G, name, dtype, numel);
    if (!t) return NULL;
    void *p = malloc((size_t)numel * size);
    if (p) memcpy(p, t->data, (size_t)numel * size);
    return p;
}

/* Allocates and binds the arenas for the described tables and loads the
 * parameters from the fixture. */
static bool load(golden *G, void *params, void *acts) {
    if (qc_arena_alloc(&G->params, G->pt.total) != QIAO_OK || qc_arena_alloc(&G->acts, G->at.total) != QIAO_OK) {
        printf("alloc: %s\n", qiao_last_error());
        return false;
    }
    qc_table_bind(&G->pt, G->params.base, params);
    qc_table_bind(&G->at, G->acts.base, acts);
    if (qc_st_load_table(G->f, &G->pt, G->params.base) != QIAO_OK) {
        printf("loading the parameters: %s\n", qiao_last_error());
        return false;
    }
    return true;
}

/* Compares emb (B, D) with expected.<mod>.emb: asserts cosine >= MIN_COSINE
 * and max |err| <= MAX_ABS_ERR on every row, and prints the worst of both. */
static void compare(const golden *G, const char *mod, const float *emb, int64_t B) {
    const int64_t D = G->embed_dim;
    char name[64];
    snprintf(name, sizeof name, "expected.%s.emb", mod);
    float *ref = copy_of(G, name, QIAO_DTYPE_F32, B * D, sizeof(float));
    assert_non_null(ref);
    double min_cos = 2.0, max_err = 0.0;
    for (int64_t b = 0; b < B; b++) {
        double dot = 0.0, ng = 0.0, nr = 0.0;
        for (int64_t d = 0; d < D; d++) {
            const double g = emb[b * D + d], r = ref[b * D + d];
            dot += g * r;
            ng += g * g;
            nr += r * r;
            const double e = fabs(g - r);
            if (isnan(e) || e > max_err) max_err = isnan(e) ? INFINITY : e;
        }
        double cos = dot / sqrt(ng * nr);
        if (isnan(cos) || cos < min_cos) min_cos = isnan(cos) ? -2.0 : cos;
    }
    free(ref);
    printf("%-5s B=%lld D=%lld: min cosine %.12f (1 - cos %.2e; need >= %.4f), max |err| %.3e (need <= %.0e)\n",
           mod, (long long)B, (long long)D, min_cos, 1.0 - min_cos, MIN_COSINE, max_err, MAX_ABS_ERR);
    assert_true(min_cos >= MIN_COSINE);
    assert_true(max_err <= MAX_ABS_ERR);
}

/* ---- cases ------------------------------------------------------------------ */

static void test_text(void **state) {
    golden *G = *state;
    qe_text_config cfg;
    qe_text_params p;
    qe_text_acts a;
    assert_int_equal(qe_text_config_from_json(section(G, "text"), G->embed_dim, &cfg), QIAO_OK);
    const qc_st_tensor *tid = need(G, "input.text.ids", QIAO_DTYPE_I32, -1);
    assert_non_null(tid);
    assert_int_equal(tid->ndim, 2);
    const int64_t B = tid->shape[0], T = tid->shape[1], K = cfg.k;
    int32_t *ids = copy_of(G, "input.text.ids", QIAO_DTYPE_I32, B * T, sizeof(int32_t));
    int32_t *chars = copy_of(G, "input.text.char_ids", QIAO_DTYPE_I32, B * T * K, sizeof(int32_t));
    uint8_t *tags = copy_of(G, "input.text.tags", QIAO_DTYPE_U8, B * T, 1);
    uint8_t *mask = copy_of(G, "input.text.mask", QIAO_DTYPE_U8, B * T, 1);
    assert_true(ids && chars && tags && mask);
    assert_int_equal(qe_text_describe(&G->pt, "text.", &cfg, 0), QIAO_OK);
    assert_int_equal(qe_text_describe_acts(&G->at, "text.", &cfg, B, T, 0), QIAO_OK);
    assert_true(load(G, &p, &a));
    const qe_text_input in = {.B = B, .T = T, .K = K, .ids = ids, .char_ids = chars, .tags = tags, .mask = mask};
    assert_int_equal(qe_text_check_input(&in, &cfg), QIAO_OK);
    qe_text_forward(&G->ex, &a, &p, &in, &cfg);
    compare(G, "text", a.trunk.emb, B);
    free(ids);
    free(chars);
    free(tags);
    free(mask);
}

static void test_image(void **state) {
    golden *G = *state;
    qe_image_config cfg;
    qe_image_params p;
    qe_image_acts a;
    assert_int_equal(qe_image_config_from_json(section(G, "image"), G->embed_dim, &cfg), QIAO_OK);
    const qc_st_tensor *t = need(G, "input.image.patches", QIAO_DTYPE_F32, -1);
    assert_non_null(t);
    assert_int_equal(t->ndim, 3);
    assert_int_equal(t->shape[1], cfg.tokens);
    assert_int_equal(t->shape[2], cfg.patch_dim);
    const int64_t B = t->shape[0];
    float *patches = copy_of(G, "input.image.patches", QIAO_DTYPE_F32, t->numel, sizeof(float));
    assert_non_null(patches);
    assert_int_equal(qe_image_describe(&G->pt, "image.", &cfg, 0), QIAO_OK);
    assert_int_equal(qe_image_describe_acts(&G->at, "image.", &cfg, B, cfg.tokens, 0), QIAO_OK);
    assert_true(load(G, &p, &a));
    const qe_image_input in = {.patches = patches, .B = B};
    qe_image_forward(&G->ex, &a, &p, &in, &cfg);
    compare(G, "image", a.trunk.emb, B);
    free(patches);
}

static void test_audio(void **state) {
    golden *G = *state;
    qe_audio_config cfg;
    qe_audio_params p;
    qe_audio_acts a;
    assert_int_equal(qe_audio_config_from_json(section(G, "audio"), G->embed_dim, &cfg), QIAO_OK);
    const qc_st_tensor *t = need(G, "input.audio.mel", QIAO_DTYPE_F32, -1);
    assert_non_null(t);
    assert_int_equal(t->ndim, 3);
    assert_int_equal(t->shape[2], cfg.n_mels);
    const int64_t B = t->shape[0], Tm = t->shape[1];
    float *mel = copy_of(G, "input.audio.mel", QIAO_DTYPE_F32, t->numel, sizeof(float));
    uint8_t *mask = copy_of(G, "input.audio.mask", QIAO_DTYPE_U8, B * Tm, 1);
    assert_true(mel && mask);
    assert_int_equal(qe_audio_describe(&G->pt, "audio.", &cfg, 0), QIAO_OK);
    assert_int_equal(qe_audio_describe_acts(&G->at, "audio.", &cfg, B, Tm, 0), QIAO_OK);
    assert_true(load(G, &p, &a));
    const qe_audio_input in = {.mel = mel, .mask = mask, .B = B, .Tm = Tm};
    qe_audio_forward(&G->ex, &a, &p, &in, &cfg);
    compare(G, "audio", a.trunk.emb, B);
    free(mel);
    free(mask);
}

static const struct CMUnitTest tests[] = {
    {"text", test_text, setup, teardown, NULL},
    {"image", test_image, setup, teardown, NULL},
    {"audio", test_audio, setup, teardown, NULL},
};

QT_MAIN(tests)
