/* The audio encoder (modalities/audio/encoder.c): gradients against central
 * differences (with padded frames, so the masked stem's backward is
 * checked), 1-vs-2-thread determinism, config parsing and validation, the
 * shipped configs, and real clips through the public decode and log-mel API
 * into the forward, alone and padded in a batch.
 *
 * Gradcheck tolerances (h 1e-3, atol 1e-3, rtol 1e-2) are justified in
 * testutil.h; the weights are drawn N(0, 1/fan_in) (not the 0.02 init) so
 * activations stay O(1) and the finite differences are meaningful. */
#include <string.h>

#include "testutil.h"

#include <cjson/cJSON.h>

#include "backend/backend.h"
#include "modalities/audio/encoder.h"
#include "nn/nn.h"
#include "qiao.h"

typedef struct enc {
    const qb_exec *ex;
    qe_audio_config cfg;
    qt_model m;
    qe_audio_params p, g;
    qe_audio_acts a, da;
    qe_audio_input in;
} enc;

static qe_audio_config parse_cfg(const char *json, int64_t D) {
    cJSON *o = cJSON_Parse(json);
    assert_non_null(o);
    qe_audio_config cfg;
    qiao_status st = qe_audio_config_from_json(o, D, &cfg);
    if (st != QIAO_OK) printf("%s\n", qiao_last_error());
    assert_int_equal(st, QIAO_OK);
    cJSON_Delete(o);
    return cfg;
}

static void enc_init(enc *e, const qb_exec *ex, const qe_audio_config *cfg, int64_t B, int64_t Tm, uint64_t seed) {
    memset(e, 0, sizeof *e);
    e->ex = ex;
    e->cfg = *cfg;
    qc_table_init_empty(&e->m.pt);
    qc_table_init_empty(&e->m.at);
    assert_int_equal(qe_audio_describe(&e->m.pt, "audio.", cfg, 0), QIAO_OK);
    assert_int_equal(qe_audio_describe_acts(&e->m.at, "audio.", cfg, B, Tm, 0), QIAO_OK);
    qt_model_alloc(&e->m, &e->p, &e->g, &e->a, &e->da);
    qc_table_init(&e->m.pt, e->m.params.base, seed);
    e->in.B = B;
    e->in.Tm = Tm;
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

/* Weights N(0, 1/fan_in) (a conv's fan-in is Cin * k), norm gains 1 + noise,
 * biases and positions noise: every tensor non-trivial, activations O(1). */
static void draw_check_weights(enc *e, uint64_t seed) {
    for (size_t i = 0; i < e->m.pt.n; i++) {
        const qc_tensor_desc *t = &e->m.pt.t[i];
        float *x = e->m.params.base + t->offset;
        if (t->ndim >= 2) {
            const int64_t fan_in = t->ndim == 3 ? t->shape[1] * t->shape[2] : t->shape[1];
            qt_fill_normal(x, t->numel, 1.0f / sqrtf((float)fan_in), seed + i);
        } else {
            qt_fill_normal(x, t->numel, 0.1f, seed + i);
            if (strstr(t->name, "ln") && strstr(t->name, ".weight"))
                for (int64_t k = 0; k < t->numel; k++) x[k] += 1.0f;
        }
    }
}

static void fwd(void *ctx) {
    enc *e = ctx;
    qe_audio_forward(e->ex, &e->a, &e->p, &e->in, &e->cfg);
}

static void fwd_bwd(enc *e, const float *R, bool zero_grads) {
    if (zero_grads) qc_arena_zero(&e->m.grads);
    qc_arena_zero(&e->m.dacts);
    fwd(e);
    qe_audio_backward(e->ex, &e->g, &e->da, R, NULL, &e->a, &e->p, &e->in, &e->cfg);
}

/* Log-mel-like input: N(-4, 4), what the default affine maps to N(0, 1). */
static void fill_mel(float *x, int64_t n, uint64_t seed) {
    qt_fill_normal(x, n, 4.0f, seed);
    for (int64_t i = 0; i < n; i++) x[i] -= 4.0f;
}

static const char *kTiny = "{\"n_mels\": 5, \"width\": 8, \"stem_kernels\": [3, 3], \"stem_strides\": [1, 2], "
                           "\"layers\": 1, \"heads\": 2, \"mlp\": 16, \"max_frames\": 16}";

static void gradcheck(void **state) {
    (void)state;
    qb_exec ex;
    qb_exec_cpu(&ex, 1);
    qe_audio_config cfg = parse_cfg(kTiny, 6);
    assert_int_equal(cfg.n_stem, 2);
    assert_int_equal(cfg.trunk.max_T, 8);
    assert_int_equal(qe_audio_tokens(&cfg, 9), 5);
    const int64_t B = 2, Tm = 9, M = cfg.n_mels;
    enc e;
    enc_init(&e, &ex, &cfg, B, Tm, 1);
    draw_check_weights(&e, 100);
    float *mel = qt_alloc(B * Tm * M);
    fill_mel(mel, B * Tm * M, 7);
    /* Clip 1 has 5 real frames and 4 of padding holding garbage. With
     * strides [1, 2] its last real token (t = 2) reads stem-0 frames 3..5,
     * and frame 5 is padding: the masking of the stem output is on the
     * path of the gradient. */
    uint8_t mask[18];
    for (int t = 0; t < 18; t++) mask[t] = t < 9 || t - 9 < 5;
    for (int t = 5; t < 9; t++)
        for (int64_t c = 0; c < M; c++) mel[(9 + t) * M + c] = 1e4f;
    e.in.mel = mel;
    e.in.mask = mask;
    const int64_t nout = B * cfg.trunk.D;
    float *R = qt_alloc(nout);
    qt_fill_normal(R, nout, 1.0f, 9);
    fwd_bwd(&e, R, true);
    /* the trunk's mask follows the rule: token t real iff frame 2t is */
    const uint8_t *tm = (const uint8_t *)e.a.mask;
    for (int t = 0; t < 5; t++) {
        assert_int_equal(tm[t], 1);
        assert_int_equal(tm[5 + t], t < 3);
    }

    const char *names[] = {"audio.stem.0.weight", "audio.stem.0.bias", "audio.stem.1.weight", "audio.stem.1.bias",
                           "audio.trunk.pos", "audio.trunk.blocks.0.ln1.weight",
                           "audio.trunk.blocks.0.attn.k.weight", "audio.trunk.blocks.0.mlp.fc.weight",
                           "audio.trunk.ln_f.bias", "audio.trunk.proj.weight"};
    int bad = 0;
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        int64_t n;
        float *x = tensor(&e, names[k], &n);
        const float *gx = grad(&e, names[k]);
        /* a gradcheck against an all-zero gradient would prove little */
        double mag = 0;
        for (int64_t i = 0; i < n; i++) mag += fabs(gx[i]);
        assert_true(mag > 1e-3);
        bad += qt_gradcheck(names[k], fwd, &e, e.a.trunk.emb, R, nout, x, gx, n, 1e-3f, 1e-3, 1e-2, 300);
    }
    assert_int_equal(bad, 0);

    /* a second backward accumulates: g -> 2 g */
    int64_t n;
    (void)tensor(&e, "audio.stem.0.weight", &n);
    float *g1 = qt_alloc(n);
    memcpy(g1, grad(&e, "audio.stem.0.weight"), (size_t)n * sizeof(float));
    fwd_bwd(&e, R, false);
    const float *g2 = grad(&e, "audio.stem.0.weight");
    for (int64_t i = 0; i < n; i++) assert_float_equal(g2[i], 2.0f * g1[i], 1e-5f + 1e-5f * fabsf(g1[i]));
    free(g1);
    free(R);
    free(mel);
    enc_free(&e);
}

static void threads_bit_identical(void **state) {
    (void)state;
    qb_exec ex1, ex2;
    qb_exec_cpu(&ex1, 1);
    qb_exec_cpu(&ex2, 2);
    /* B*Tm*n_mels = 128000 and B*T'*F = 51200 elements: above the CPU
     * kernels' 32768-element parallel threshold, so 2 threads split work. */
    qe_audio_config cfg = parse_cfg("{\"n_mels\": 80, \"width\": 64, \"stem_kernels\": [3, 3], \"stem_strides\": "
                                    "[2, 2], \"layers\": 2, \"heads\": 4, \"mlp\": 128, \"max_frames\": 512}",
                                    1024);
    const int64_t B = 4, Tm = 400, nm = B * Tm * cfg.n_mels;
    float *mel = qt_alloc(nm);
    fill_mel(mel, nm, 3);
    uint8_t *mask = malloc((size_t)(B * Tm));
    assert_non_null(mask);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < Tm; t++) mask[b * Tm + t] = t < Tm - 37 * b;
    float *R = qt_alloc(B * cfg.trunk.D);
    qt_fill_normal(R, B * cfg.trunk.D, 1.0f, 4);
    enc e1, e2;
    enc_init(&e1, &ex1, &cfg, B, Tm, 42);
    enc_init(&e2, &ex2, &cfg, B, Tm, 42);
    e1.in.mel = e2.in.mel = mel;
    e1.in.mask = e2.in.mask = mask;
    fwd_bwd(&e1, R, true);
    fwd_bwd(&e2, R, true);
    assert_memory_equal(e1.a.trunk.emb, e2.a.trunk.emb, (size_t)(B * cfg.trunk.D) * sizeof(float));
    assert_memory_equal(e1.m.grads.base, e2.m.grads.base, e1.m.pt.total * sizeof(float));
    enc_free(&e1);
    enc_free(&e2);
    free(R);
    free(mask);
    free(mel);
}

/* Expects QIAO_ERR_FORMAT with `key` in the message. */
static void expect_bad(const char *json, int64_t D, const char *key) {
    cJSON *o = cJSON_Parse(json);
    assert_non_null(o);
    qe_audio_config cfg;
    memset(&cfg, 0x5a, sizeof cfg);
    qiao_status st = qe_audio_config_from_json(o, D, &cfg);
    cJSON_Delete(o);
    if (st != QIAO_ERR_FORMAT || !strstr(qiao_last_error(), key))
        printf("config %s: status %d, message '%s' (wanted key '%s')\n", json, (int)st, qiao_last_error(), key);
    assert_int_equal(st, QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), key));
}

#define CFG(...) "{" __VA_ARGS__ "}"
#define BASEKEYS "\"n_mels\": 80, \"width\": 64, \"layers\": 2, \"heads\": 4, \"mlp\": 128"

static void config_validation(void **state) {
    (void)state;
    qe_audio_config cfg = parse_cfg(CFG("\"n_mels\": 40, \"width\": 96, \"stem_kernels\": [5, 3, 3], "
                                        "\"stem_strides\": [1, 2, 3], \"layers\": 3, \"heads\": 6, \"mlp\": 384, "
                                        "\"max_frames\": 1000, \"norm_mean\": -5.5, \"norm_std\": 3"),
                                    512);
    assert_int_equal(cfg.n_mels, 40);
    assert_int_equal(cfg.n_stem, 3);
    assert_int_equal(cfg.stem_kernels[0], 5);
    assert_int_equal(cfg.stem_strides[2], 3);
    assert_int_equal(cfg.max_frames, 1000);
    assert_float_equal(cfg.norm_mean, -5.5f, 0);
    assert_float_equal(cfg.norm_std, 3.0f, 0);
    assert_int_equal(cfg.trunk.C, 96);
    assert_int_equal(cfg.trunk.L, 3);
    assert_int_equal(cfg.trunk.H, 6);
    assert_int_equal(cfg.trunk.F, 384);
    assert_int_equal(cfg.trunk.max_T, 167); /* ceil(ceil(1000 / 2) / 3) */
    assert_int_equal(cfg.trunk.D, 512);
    assert_int_equal(qe_audio_tokens(&cfg, 1), 1);
    assert_int_equal(qe_audio_tokens(&cfg, 6), 1);
    assert_int_equal(qe_audio_tokens(&cfg, 7), 2);
    assert_int_equal(qe_audio_tokens(&cfg, 0), 0);
    /* the affine is optional */
    cfg = parse_cfg(CFG(BASEKEYS ", \"stem_kernels\": [3], \"stem_strides\": [4], \"max_frames\": 1024"), 1024);
    assert_float_equal(cfg.norm_mean, -4.0f, 0);
    assert_float_equal(cfg.norm_std, 4.0f, 0);
    assert_int_equal(cfg.trunk.max_T, 256);

    expect_bad(CFG("\"width\": 64, \"layers\": 2, \"heads\": 4, \"mlp\": 128, \"stem_kernels\": [3], "
                   "\"stem_strides\": [2], \"max_frames\": 100"),
               1024, "'n_mels'");
    expect_bad(CFG(BASEKEYS ", \"stem_kernels\": [3], \"stem_strides\": [2]"), 1024, "'max_frames'");
    expect_bad(CFG(BASEKEYS ", \"stem_strides\": [2], \"max_frames\": 100"), 1024, "'stem_kernels'");
    expect_bad(CFG(BASEKEYS ", \"stem_kernels\": [3], \"stem_strides\": [2], \"max_frames\": \"100\""), 1024,
               "'max_frames'");
    expect_bad(CFG(BASEKEYS ", \"stem_kernels\": 3, \"stem_strides\": [2], \"max_frames\": 100"), 1024,
               "'stem_kernels'");
    expect_bad(CFG(BASEKEYS ", \"stem_kernels\": [3, \"3\"], \"stem_strides\": [2, 2], \"max_frames\": 100"), 1024,
               "'stem_kernels'");
    expect_bad(CFG(BASEKEYS ", \"stem_kernels\": [], \"stem_strides\": [], \"max_frames\": 100"), 1024,
               "'stem_kernels'");
    expect_bad(CFG(BASEKEYS ", \"stem_kernels\": [3, 3, 3, 3, 3], \"stem_strides\": [1, 1, 1, 1, 1], "
                            "\"max_frames\": 100"),
               1024, "'stem_kernels'");
    expect_bad(CFG(BASEKEYS ", \"stem_kernels\": [4], \"stem_strides\": [2], \"max_frames\": 100"), 1024,
               "'stem_kernels'");
    expect_bad(CFG(BASEKEYS ", \"stem_kernels\": [3, 3], \"stem_strides\": [2], \"max_frames\": 100"), 1024,
               "'stem_strides'");
    expect_bad(CFG(BASEKEYS ", \"stem_kernels\": [3], \"stem_strides\": [0], \"max_frames\": 100"), 1024,
               "'stem_strides'");
    expect_bad(CFG("\"n_mels\": 80, \"width\": 64, \"layers\": 2, \"heads\": 5, \"mlp\": 128, \"stem_kernels\": "
                   "[3], \"stem_strides\": [2], \"max_frames\": 100"),
               1024, "'heads'");
    expect_bad(CFG("\"n_mels\": 80, \"width\": 64, \"layers\": 2.5, \"heads\": 4, \"mlp\": 128, \"stem_kernels\": "
                   "[3], \"stem_strides\": [2], \"max_frames\": 100"),
               1024, "'layers'");
    expect_bad(CFG("\"n_mels\": 1e9, \"width\": 64, \"layers\": 2, \"heads\": 4, \"mlp\": 128, \"stem_kernels\": "
                   "[3], \"stem_strides\": [2], \"max_frames\": 100"),
               1024, "'n_mels'");
    expect_bad(CFG(BASEKEYS ", \"stem_kernels\": [3], \"stem_strides\": [2], \"max_frames\": 1e12"), 1024,
               "'max_frames'");
    /* 60000 frames at stride 2: 30000 tokens, an attention matrix nobody holds */
    expect_bad(CFG(BASEKEYS ", \"stem_kernels\": [3], \"stem_strides\": [2], \"max_frames\": 60000"), 1024,
               "'max_frames'");
    expect_bad(CFG(BASEKEYS ", \"stem_kernels\": [3], \"stem_strides\": [2], \"max_frames\": 100, "
                            "\"norm_std\": 0"),
               1024, "'norm_std'");
    expect_bad(CFG(BASEKEYS ", \"stem_kernels\": [3], \"stem_strides\": [2], \"max_frames\": 100, "
                            "\"norm_mean\": \"-4\""),
               1024, "'norm_mean'");
    expect_bad(CFG(BASEKEYS ", \"stem_kernels\": [3], \"stem_strides\": [2], \"max_frames\": 100, "
                            "\"n_mel\": 80"),
               1024, "'n_mel'");
    expect_bad(CFG(BASEKEYS ", \"stem_kernels\": [3], \"stem_strides\": [2], \"max_frames\": 100"), 0,
               "'embed_dim'");
    expect_bad("[1, 2]", 1024, "'audio'");

    /* describe_acts refuses more frames than max_frames, and no frames */
    qc_table t;
    qc_table_init_empty(&t);
    assert_int_equal(qe_audio_describe_acts(&t, "audio.", &cfg, 2, cfg.max_frames + 1, 0), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qe_audio_describe_acts(&t, "audio.", &cfg, 2, 0, 0), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qe_audio_describe_acts(&t, "audio.", &cfg, 0, 10, 0), QIAO_ERR_INVALID_ARGUMENT);
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

static qe_audio_config shipped(const char *file) {
    char path[1024];
    snprintf(path, sizeof path, "%s/models/configs/%s", QIAO_SOURCE_DIR, file);
    char *text = read_text(path);
    cJSON *root = cJSON_Parse(text);
    free(text);
    assert_non_null(root);
    const cJSON *D = cJSON_GetObjectItemCaseSensitive(root, "embed_dim");
    assert_true(cJSON_IsNumber(D));
    qe_audio_config cfg;
    qiao_status st = qe_audio_config_from_json(cJSON_GetObjectItemCaseSensitive(root, "audio"),
                                               (int64_t)D->valuedouble, &cfg);
    if (st != QIAO_OK) printf("%s: %s\n", file, qiao_last_error());
    assert_int_equal(st, QIAO_OK);
    cJSON_Delete(root);
    return cfg;
}

static int64_t param_count(const qe_audio_config *cfg) {
    qc_table t;
    qc_table_init_empty(&t);
    assert_int_equal(qe_audio_describe(&t, "audio.", cfg, 0), QIAO_OK);
    int64_t n = 0;
    for (size_t i = 0; i < t.n; i++) n += t.t[i].numel;
    qc_table_free(&t);
    return n;
}

static void shipped_configs(void **state) {
    (void)state;
    qe_audio_config tiny = shipped("tiny.json"), base = shipped("base.json");
    int64_t nt = param_count(&tiny), nb = param_count(&base);
    printf("audio encoder parameters: tiny %lld, base %lld\n", (long long)nt, (long long)nb);
    assert_int_equal(tiny.trunk.D, 1024);
    assert_int_equal(base.trunk.D, 1024);
    /* what qiao_mel_compute produces by default */
    assert_int_equal(base.n_mels, qiao_mel_default_params().n_mels);
    assert_int_equal(tiny.n_mels, qiao_mel_default_params().n_mels);
    /* a 25 s spoken caption (100 frames per second, plus the centre frame) fits: the
     * longest Chinese long captions of shapes-1.1 run about 24 s */
    assert_true(base.max_frames >= 2501);
    assert_true(tiny.max_frames >= 2501);
    assert_true(nt < nb);
    /* the base model's budget: about 3-4.5M parameters per encoder (25 MB in bf16 for all three) */
    assert_true(nb <= 4500000);
}

/* A decoded, log-mel'd clip from tests/data/audio through the public API. */
static float *clip_mel(const char *file, int64_t *frames) {
    char path[1024];
    snprintf(path, sizeof path, "%s/audio/%s", QIAO_TEST_DATA, file);
    qiao_audio *au = NULL;
    qiao_status st = qiao_audio_decode_file(path, NULL, &au);
    if (st != QIAO_OK) printf("%s: %s\n", path, qiao_last_error());
    assert_int_equal(st, QIAO_OK);
    float *mel = NULL;
    assert_int_equal(qiao_mel_compute(au, NULL, &mel, frames), QIAO_OK);
    qiao_audio_free(au);
    assert_non_null(mel);
    return mel;
}

static void check_unit_rows(const float *E, int64_t B, int64_t D) {
    for (int64_t b = 0; b < B; b++) {
        double n2 = 0;
        for (int64_t j = 0; j < D; j++) {
            assert_true(isfinite(E[b * D + j]));
            n2 += (double)E[b * D + j] * E[b * D + j];
        }
        assert_float_equal(sqrt(n2), 1.0, 1e-5);
    }
}

static void clips_end_to_end(void **state) {
    (void)state;
    qb_exec ex;
    qb_exec_cpu(&ex, 2);
    qe_audio_config cfg = shipped("tiny.json");
    const int64_t M = cfg.n_mels, D = cfg.trunk.D;
    int64_t nf = 0, ne = 0;
    float *fsdd = clip_mel("fsdd_3_jackson_0.wav", &nf);
    float *esc = clip_mel("esc10_1-110389-A.ogg", &ne);
    printf("frames: fsdd %lld, esc %lld\n", (long long)nf, (long long)ne);
    assert_true(nf > 10 && ne > nf && ne <= cfg.max_frames);
    /* the default affine keeps real log-mels O(1) */
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < nf * M; i++) {
        double v = (fsdd[i] - cfg.norm_mean) / cfg.norm_std;
        s += v;
        s2 += v * v;
    }
    const double mean = s / (double)(nf * M), sd = sqrt(s2 / (double)(nf * M) - mean * mean);
    printf("fsdd normalized log-mel: mean %.3f std %.3f\n", mean, sd);
    assert_true(fabs(mean) < 3.0 && sd > 0.2 && sd < 3.0);

    /* batch: [fsdd padded with garbage to the esc length, esc] */
    const int64_t Tm = ne;
    float *mel = qt_alloc(2 * Tm * M);
    uint8_t *mask = malloc((size_t)(2 * Tm));
    assert_non_null(mask);
    memcpy(mel, fsdd, (size_t)(nf * M) * sizeof(float));
    for (int64_t i = nf * M; i < Tm * M; i++) mel[i] = NAN; /* never read as a value */
    memcpy(mel + Tm * M, esc, (size_t)(ne * M) * sizeof(float));
    for (int64_t t = 0; t < Tm; t++) {
        mask[t] = t < nf;
        mask[Tm + t] = 1;
    }
    /* Weights drawn with non-zero biases (the init's are zero, a trained
     * model's are not): a stem window over padding then yields gelu(bias) != 0
     * unless the stem masks it, so the comparison below can fail. */
    enc batch;
    enc_init(&batch, &ex, &cfg, 2, Tm, 2024);
    draw_check_weights(&batch, 77);
    batch.in.mel = mel;
    batch.in.mask = mask;
    fwd(&batch);
    const float *E = batch.a.trunk.emb;
    check_unit_rows(E, 2, D);
    double diff = 0;
    for (int64_t j = 0; j < D; j++) diff = fmax(diff, fabs(E[j] - E[D + j]));
    assert_true(diff > 1e-4); /* different clips, different embeddings */

    /* each clip alone (no padding, mask NULL and all-ones) gives the embedding
     * it has in the batch */
    const float *alone_mel[2] = {fsdd, esc};
    const int64_t alone_T[2] = {nf, ne};
    for (int b = 0; b < 2; b++) {
        for (int with_mask = 0; with_mask < 2; with_mask++) {
            enc one;
            enc_init(&one, &ex, &cfg, 1, alone_T[b], 2024);
            draw_check_weights(&one, 77);
            uint8_t *ones = malloc((size_t)alone_T[b]);
            assert_non_null(ones);
            memset(ones, 1, (size_t)alone_T[b]);
            one.in.mel = alone_mel[b];
            one.in.mask = with_mask ? ones : NULL;
            fwd(&one);
            check_unit_rows(one.a.trunk.emb, 1, D);
            double worst = 0;
            for (int64_t j = 0; j < D; j++) worst = fmax(worst, fabs(one.a.trunk.emb[j] - E[b * D + j]));
            if (worst > 1e-5) printf("clip %d alone vs batched: max diff %g\n", b, worst);
            assert_true(worst <= 1e-5);
            free(ones);
            enc_free(&one);
        }
    }
    /* Without the stem's masking the padded clip's embedding would differ:
     * with padding frames of silence-level log-mel (not zeros after the
     * affine) and no mask, the result moves. This guards that the test
     * above exercises windows that reach into the padding. */
    for (int64_t i = nf * M; i < Tm * M; i++) mel[i] = -23.0f;
    batch.in.mask = NULL;
    fwd(&batch);
    diff = 0;
    enc one;
    enc_init(&one, &ex, &cfg, 1, nf, 2024);
    draw_check_weights(&one, 77);
    one.in.mel = fsdd;
    fwd(&one);
    for (int64_t j = 0; j < D; j++) diff = fmax(diff, fabs(one.a.trunk.emb[j] - batch.a.trunk.emb[j]));
    assert_true(diff > 1e-4);
    enc_free(&one);

    enc_free(&batch);
    free(mask);
    free(mel);
    qiao_mel_free(fsdd);
    qiao_mel_free(esc);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gradcheck),         cmocka_unit_test(threads_bit_identical),
        cmocka_unit_test(config_validation), cmocka_unit_test(shipped_configs),
        cmocka_unit_test(clips_end_to_end),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
