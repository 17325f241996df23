/* The public embedding API (sdk/api/embed_api.c, qiao.h "Models and
 * embeddings"), used as an application would: a tiny model with the test
 * tokenizer is written at test time (the only use of internal headers apart
 * from one cross-check of the long-audio shortcut), then loaded from a path
 * and from memory and used for text, images and audio from every kind of
 * input, concurrently from four threads, and with every kind of bad argument.
 *
 * The binary also serves the CLI tests (tests/embed_cli.cmake):
 *   test_embed_api --write-model PATH       writes the test model
 *   test_embed_api --check-npy NPY MODEL T  checks that NPY is the (1, D)
 *                                           embedding of text T, bit for bit */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "models/embed.h"
#include "models/model.h"
#include "qiao.h"
#include "testutil.h"

#define TINY_JSON QIAO_SOURCE_DIR "/models/configs/tiny.json"
#define TOK_PATH QIAO_TEST_DATA "/tokenizer/tok-test.safetensors"
#define PHOTO QIAO_TEST_DATA "/image/000000126107.jpg"
#define PHOTO2 QIAO_TEST_DATA "/image/000000205401.jpg"
#define SPEECH QIAO_TEST_DATA "/audio/fsdd_3_jackson_0.wav" /* 8 kHz mono */
#define BARK QIAO_TEST_DATA "/audio/esc10_1-110389-A.ogg"

static char g_model[512], g_bare[512]; /* with and without a tokenizer */

static void tmp_path(char *buf, size_t n, const char *tag) {
    const char *dir = getenv("TMPDIR");
    snprintf(buf, n, "%s/qiao_test_embed_api_%d_%s", dir && *dir ? dir : "/tmp", (int)getpid(), tag);
}

static uint8_t *read_bytes(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

/* Writes the test model (with the tokenizer when `with_tok`). Returns 0 on success. */
static int write_model(const char *path, int with_tok) {
    /* (not model_fixture.h: this also runs outside cmocka, as --write-model) */
    qiao_tokenizer *tok = NULL;
    qmod_config file, cfg;
    if (qiao_tokenizer_load(TOK_PATH, &tok) != QIAO_OK) return 1;
    qiao_status st = qmod_config_from_file(TINY_JSON, &file);
    if (st == QIAO_OK) {
        st = qmod_config_for_tokenizer(&file, tok, &cfg);
        qmod_config_free(&file);
    }
    qiao_tokenizer_free(tok);
    if (st != QIAO_OK) return 1;
    qmod_model *m = NULL;
    st = qmod_create(&cfg, 5, &m);
    qmod_config_free(&cfg);
    if (st == QIAO_OK && with_tok) st = qmod_set_tokenizer(m, TOK_PATH);
    if (st == QIAO_OK) st = qmod_save(m, path, QIAO_DTYPE_F32);
    if (st != QIAO_OK) fprintf(stderr, "write_model: %s\n", qiao_last_error());
    qmod_free(m);
    return st == QIAO_OK ? 0 : 1;
}

static int setup(void **state) {
    (void)state;
    tmp_path(g_model, sizeof g_model, "model.safetensors");
    tmp_path(g_bare, sizeof g_bare, "bare.safetensors");
    return write_model(g_model, 1) || write_model(g_bare, 0);
}

static int teardown(void **state) {
    (void)state;
    unlink(g_model);
    unlink(g_bare);
    return 0;
}

static void expect(qiao_status got, qiao_status want, const char *needle) {
    if (got != want || (needle && !strstr(qiao_last_error(), needle)))
        printf("status %s (want %s), message: %s (want \"%s\")\n", qiao_status_str(got), qiao_status_str(want),
               qiao_last_error(), needle ? needle : "");
    else if (got != QIAO_OK)
        printf("  expected error: %s\n", qiao_last_error());
    assert_int_equal(got, want);
    if (needle) assert_non_null(strstr(qiao_last_error(), needle));
}

static void ok(qiao_status st) {
    if (st != QIAO_OK) printf("%s: %s\n", qiao_status_str(st), qiao_last_error());
    assert_int_equal(st, QIAO_OK);
}

static qiao_model *load_model(void) {
    qiao_model *m = NULL;
    ok(qiao_model_load(g_model, &m));
    return m;
}

static qiao_session *new_session(const qiao_model *m, int n_threads) {
    qiao_session_params sp = qiao_session_default_params();
    sp.n_threads = n_threads;
    qiao_session *s = NULL;
    ok(qiao_session_new(m, &sp, &s));
    return s;
}

static double norm(const float *x, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return sqrt(s);
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double d = 0.0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - (double)b[i]));
    return d;
}

static void assert_rows_unit(const float *x, size_t rows, size_t D) {
    for (size_t r = 0; r < rows; r++) {
        double nr = norm(x + r * D, D);
        if (fabs(nr - 1.0) > 1e-5) printf("row %zu norm %.8f\n", r, nr);
        assert_true(fabs(nr - 1.0) <= 1e-5);
    }
}

#define D 1024

/* ---- models ------------------------------------------------------------------ */

static void load_path_and_memory(void **state) {
    (void)state;
    qiao_model *a = load_model();
    assert_int_equal(qiao_model_dim(a), D);
    assert_string_equal(qiao_model_name(a), "tiny");
    qiao_model_file *f = NULL;
    ok(qiao_model_file_open(g_model, &f));
    printf("tiny model: %lld parameters\n", (long long)qiao_model_param_count(a));
    assert_true(qiao_model_param_count(a) > 100000);
    assert_int_equal(qiao_model_param_count(a), qiao_model_file_param_count(f));
    qiao_model_file_close(f);

    size_t len;
    uint8_t *bytes = read_bytes(g_model, &len);
    assert_non_null(bytes);
    qiao_model *b = NULL;
    ok(qiao_model_load_memory(bytes, len, &b));
    memset(bytes, 0xA5, len); /* the model must not keep pointers into the caller's buffer */
    free(bytes);
    assert_int_equal(qiao_model_dim(b), D);

    const char *texts[] = {"我想订一张去北京的机票", "play some jazz music please"};
    float ea[2 * D], eb[2 * D];
    qiao_session *sa = new_session(a, 1), *sb = new_session(b, 1);
    ok(qiao_embed_texts(sa, texts, 2, ea, 2 * D));
    ok(qiao_embed_texts(sb, texts, 2, eb, 2 * D));
    assert_memory_equal(ea, eb, sizeof ea);
    float ia[D], ib[D];
    ok(qiao_embed_image_file(sa, PHOTO, ia, D));
    ok(qiao_embed_image_file(sb, PHOTO, ib, D));
    assert_memory_equal(ia, ib, sizeof ia);
    qiao_session_free(sa);
    qiao_session_free(sb);
    qiao_model_free(a);
    qiao_model_free(b);

    /* NULL is accepted where documented. */
    qiao_model_free(NULL);
    qiao_session_free(NULL);
    assert_int_equal(qiao_model_dim(NULL), 0);
    assert_string_equal(qiao_model_name(NULL), "");
    assert_int_equal(qiao_session_memory(NULL), 0);
}

/* pack_weights 0 keeps one copy of the weights; rows agree with the packed
 * default to within rounding, and the memory report tells the difference. */
static void model_params(void **state) {
    (void)state;
    qiao_model *packed = load_model();
    qiao_model_params mp = qiao_model_default_params();
    assert_int_equal(mp.pack_weights, 1);
    mp.pack_weights = 0;
    qiao_model *plain = NULL;
    ok(qiao_model_load_with(g_model, &mp, &plain));
    const size_t params_bytes = (size_t)qiao_model_param_count(plain) * sizeof(float);
    const size_t mem_plain = qiao_model_memory(plain), mem_packed = qiao_model_memory(packed);
    printf("model memory: %zu bytes unpacked, %zu packed (%lld parameters)\n", mem_plain, mem_packed,
           (long long)qiao_model_param_count(plain));
    assert_true(mem_plain >= params_bytes && mem_plain < params_bytes + params_bytes / 10);
    if (__builtin_cpu_supports("avx512f"))
        assert_true(mem_packed > mem_plain + params_bytes / 2); /* nearly every weight packed */
    else
        assert_int_equal(mem_packed, mem_plain);
    assert_int_equal(qiao_model_memory(NULL), 0);

    const char *texts[] = {"右下角有一个绿色的小三角形", "a big yellow cross in the middle"};
    float a[4 * D], b[4 * D];
    qiao_session *sa = new_session(packed, 2), *sb = new_session(plain, 2);
    ok(qiao_embed_texts(sa, texts, 2, a, 2 * D));
    ok(qiao_embed_texts(sb, texts, 2, b, 2 * D));
    ok(qiao_embed_image_file(sa, PHOTO, a + 2 * D, D));
    ok(qiao_embed_image_file(sb, PHOTO, b + 2 * D, D));
    ok(qiao_embed_audio_file(sa, SPEECH, a + 3 * D, D));
    ok(qiao_embed_audio_file(sb, SPEECH, b + 3 * D, D));
    const double diff = max_abs_diff(a, b, 4 * D);
    printf("packed vs unpacked rows: max |diff| %.3g\n", diff);
    assert_true(diff <= 1e-5);
    qiao_session_free(sa);
    qiao_session_free(sb);

    /* From memory, with the same params. */
    size_t len;
    uint8_t *bytes = read_bytes(g_model, &len);
    assert_non_null(bytes);
    qiao_model *m = NULL;
    ok(qiao_model_load_memory_with(bytes, len, &mp, &m));
    assert_int_equal(qiao_model_memory(m), mem_plain);
    qiao_model_free(m);
    ok(qiao_model_load_memory_with(bytes, len, NULL, &m)); /* NULL: the defaults */
    assert_int_equal(qiao_model_memory(m), mem_packed);
    qiao_model_free(m);

    /* Bad params leave *out NULL and name the field. */
    m = (qiao_model *)&m;
    mp.pack_weights = 2;
    expect(qiao_model_load_with(g_model, &mp, &m), QIAO_ERR_INVALID_ARGUMENT, "pack_weights");
    assert_null(m);
    mp = qiao_model_default_params();
    mp.struct_size = 3;
    expect(qiao_model_load_memory_with(bytes, len, &mp, &m), QIAO_ERR_INVALID_ARGUMENT, "struct_size");
    free(bytes);
    qiao_model_free(plain);
    qiao_model_free(packed);
}

static void bad_models(void **state) {
    (void)state;
    qiao_model *m = (qiao_model *)&m; /* must be reset to NULL on failure */
    expect(qiao_model_load(g_bare, &m), QIAO_ERR_FORMAT, "tokenizer");
    assert_null(m);
    assert_non_null(strstr(qiao_last_error(), g_bare));
    size_t len;
    uint8_t *bytes = read_bytes(g_bare, &len);
    assert_non_null(bytes);
    expect(qiao_model_load_memory(bytes, len, &m), QIAO_ERR_FORMAT, "tokenizer");
    free(bytes);
    expect(qiao_model_load(QIAO_TEST_DATA "/no/such/model.safetensors", &m), QIAO_ERR_IO, "model.safetensors");
    expect(qiao_model_load(PHOTO, &m), QIAO_ERR_FORMAT, "000000126107.jpg");
    expect(qiao_model_load_memory("not a model", 11, &m), QIAO_ERR_FORMAT, NULL);
    expect(qiao_model_load(NULL, &m), QIAO_ERR_INVALID_ARGUMENT, NULL);
    expect(qiao_model_load(g_model, NULL), QIAO_ERR_INVALID_ARGUMENT, NULL);
    expect(qiao_model_load_memory(NULL, 10, &m), QIAO_ERR_INVALID_ARGUMENT, NULL);
    expect(qiao_model_load_memory("x", 0, &m), QIAO_ERR_INVALID_ARGUMENT, NULL);
    assert_null(m);

    qiao_model *ok_model = load_model();
    qiao_session *s = (qiao_session *)&s;
    expect(qiao_session_new(NULL, NULL, &s), QIAO_ERR_INVALID_ARGUMENT, NULL);
    assert_null(s);
    expect(qiao_session_new(ok_model, NULL, NULL), QIAO_ERR_INVALID_ARGUMENT, NULL);
    qiao_session_params sp = qiao_session_default_params();
    sp.n_threads = -1;
    expect(qiao_session_new(ok_model, &sp, &s), QIAO_ERR_INVALID_ARGUMENT, "n_threads");
    sp = qiao_session_default_params();
    sp.struct_size = 3;
    expect(qiao_session_new(ok_model, &sp, &s), QIAO_ERR_INVALID_ARGUMENT, "struct_size");
    ok(qiao_session_new(ok_model, NULL, &s)); /* NULL params: the defaults */
    qiao_session_free(s);
    qiao_model_free(ok_model);
}

/* ---- text ---------------------------------------------------------------------- */

static void texts_zh_en(void **state) {
    (void)state;
    qiao_model *m = load_model();
    qiao_session *s = new_session(m, 0);
    const char *texts[] = {"今天天气很好，我们去公园散步吧。", "The quick brown fox jumps over the lazy dog.",
                           "帮我查一下明天上海的天气", "set an alarm for seven am", "Café naïve 123 — mixed 中文 text"};
    enum { N = sizeof texts / sizeof *texts };
    float *batch = qt_alloc(N * D), *one = qt_alloc(D);
    ok(qiao_embed_texts(s, texts, N, batch, N * D));
    assert_rows_unit(batch, N, D);
    double worst = 0.0;
    for (size_t i = 0; i < N; i++) {
        ok(qiao_embed_text(s, texts[i], one, D));
        worst = fmax(worst, max_abs_diff(one, batch + i * D, D));
    }
    printf("texts: batch of %d vs one by one: max |diff| %.3g\n", (int)N, worst);
    assert_true(worst <= 1e-5);
    /* Different texts give different rows; the same text the same row. */
    for (size_t i = 0; i < N; i++)
        for (size_t j = i + 1; j < N; j++) {
            float c = qiao_cosine(batch + i * D, batch + j * D, D);
            assert_true(c < 0.99999f);
        }
    const char *twice[] = {texts[1], texts[0], texts[1]};
    float *t3 = qt_alloc(3 * D);
    ok(qiao_embed_texts(s, twice, 3, t3, 3 * D));
    assert_true(max_abs_diff(t3, t3 + 2 * D, D) <= 1e-6);
    /* Empty and all-space texts have no tokens: they embed alike (the
     * model's empty-text row), and do not disturb the rows beside them. */
    const char *empties[] = {"", texts[0], " \t\n "};
    ok(qiao_embed_texts(s, empties, 3, t3, 3 * D));
    assert_memory_equal(t3, t3 + 2 * D, D * sizeof(float));
    assert_true(max_abs_diff(t3 + D, batch, D) <= 1e-5);
    /* A text over max_tokens (64 in tiny) is truncated: two texts sharing
     * their first 64+ tokens embed alike. */
    char longa[4096], longb[4096];
    longa[0] = 0;
    for (int i = 0; i < 80; i++) strcat(longa, "北京 ");
    strcpy(longb, longa);
    strcat(longb, "and then something completely different");
    strcat(longa, "上海 广州 深圳");
    const char *two[] = {longa, longb};
    float l2[2 * D];
    ok(qiao_embed_texts(s, two, 2, l2, 2 * D));
    assert_true(max_abs_diff(l2, l2 + D, D) <= 1e-6);
    free(t3);
    free(batch);
    free(one);
    qiao_session_free(s);
    qiao_model_free(m);
}

/* ---- images -------------------------------------------------------------------- */

static void images_all_inputs(void **state) {
    (void)state;
    qiao_model *m = load_model();
    qiao_session *s = new_session(m, 0);
    float from_file[D], from_mem[D], from_rgb[D], from_img[D];
    ok(qiao_embed_image_file(s, PHOTO, from_file, D));
    assert_rows_unit(from_file, 1, D);
    size_t len;
    uint8_t *bytes = read_bytes(PHOTO, &len);
    assert_non_null(bytes);
    ok(qiao_embed_image_memory(s, bytes, len, from_mem, D));
    assert_memory_equal(from_file, from_mem, sizeof from_file);

    /* The same pixels as raw RGB with padded rows (the padding is junk the
     * embedding must not read). */
    qiao_image *img = NULL;
    ok(qiao_image_decode_file(PHOTO, NULL, &img));
    const int64_t w = qiao_image_width(img), h = qiao_image_height(img);
    const size_t stride = (size_t)w * 3 + 37;
    uint8_t *rgb = malloc(stride * (size_t)h);
    assert_non_null(rgb);
    for (size_t i = 0; i < stride * (size_t)h; i++) rgb[i] = (uint8_t)(i * 131u + 7u);
    for (int64_t y = 0; y < h; y++)
        memcpy(rgb + (size_t)y * stride, qiao_image_pixels(img) + (size_t)y * qiao_image_stride(img), (size_t)w * 3);
    ok(qiao_embed_image_rgb(s, rgb, w, h, stride, from_rgb, D));
    assert_memory_equal(from_file, from_rgb, sizeof from_file);
    ok(qiao_embed_image(s, img, from_img, D));
    assert_memory_equal(from_file, from_img, sizeof from_file);
    expect(qiao_embed_image_rgb(s, rgb, w, h, (size_t)w * 3 - 1, from_rgb, D), QIAO_ERR_INVALID_ARGUMENT, NULL);
    expect(qiao_embed_image_rgb(s, rgb, 0, h, stride, from_rgb, D), QIAO_ERR_INVALID_ARGUMENT, NULL);

    /* A batch of two different photos and the first again. */
    qiao_image *img2 = NULL;
    ok(qiao_image_decode_file(PHOTO2, NULL, &img2));
    const qiao_image *three[] = {img, img2, img};
    float batch[3 * D], second[D];
    ok(qiao_embed_images(s, three, 3, batch, 3 * D));
    ok(qiao_embed_image(s, img2, second, D));
    double d = fmax(max_abs_diff(batch, from_file, D),
                    fmax(max_abs_diff(batch + D, second, D), max_abs_diff(batch + 2 * D, from_file, D)));
    printf("images: batch vs one by one: max |diff| %.3g; cosine of two photos %.4f\n", d,
           qiao_cosine(batch, batch + D, D));
    assert_true(d <= 1e-5);
    assert_true(qiao_cosine(batch, batch + D, D) < 0.9999f);
    qiao_image_free(img);
    qiao_image_free(img2);
    free(rgb);
    free(bytes);
    qiao_session_free(s);
    qiao_model_free(m);
}

/* ---- audio --------------------------------------------------------------------- */

static void audio_all_inputs(void **state) {
    (void)state;
    qiao_model *m = load_model();
    qiao_session *s = new_session(m, 0);
    float from_file[D], from_mem[D], pcm16[D], pcm8[D], aud8[D], aud16[D];
    ok(qiao_embed_audio_file(s, SPEECH, from_file, D));
    assert_rows_unit(from_file, 1, D);
    size_t len;
    uint8_t *bytes = read_bytes(SPEECH, &len);
    assert_non_null(bytes);
    ok(qiao_embed_audio_memory(s, bytes, len, from_mem, D));
    assert_memory_equal(from_file, from_mem, sizeof from_file);

    /* PCM at 16 kHz: the decoder's own output gives the file's row exactly. */
    qiao_audio *a16 = NULL;
    ok(qiao_audio_decode_file(SPEECH, NULL, &a16));
    assert_int_equal(a16->sample_rate, 16000);
    ok(qiao_embed_audio_pcm(s, a16->samples, a16->n_samples, 16000, pcm16, D));
    assert_memory_equal(from_file, pcm16, sizeof from_file);
    ok(qiao_embed_audio(s, a16, aud16, D));
    assert_memory_equal(from_file, aud16, sizeof from_file);

    /* PCM at the file's own 8 kHz is resampled to 16 kHz as the decoder does. */
    qiao_audio_params ap = qiao_audio_default_params();
    ap.target_rate = 0;
    qiao_audio *a8 = NULL;
    ok(qiao_audio_decode_file(SPEECH, &ap, &a8));
    assert_int_equal(a8->sample_rate, 8000);
    ok(qiao_embed_audio_pcm(s, a8->samples, a8->n_samples, 8000, pcm8, D));
    ok(qiao_embed_audio(s, a8, aud8, D));
    assert_memory_equal(pcm8, aud8, sizeof pcm8);
    double d8 = max_abs_diff(pcm8, from_file, D);
    printf("audio: PCM at 8 kHz vs the file decoded to 16 kHz: max |diff| %.3g\n", d8);
    assert_true(d8 <= 1e-5);

    /* A batch of two clips of different lengths and rates (the padding of
     * the shorter one is masked). */
    qiao_audio *bark = NULL;
    ok(qiao_audio_decode_file(BARK, NULL, &bark));
    float bark1[D], batch[3 * D];
    ok(qiao_embed_audio(s, bark, bark1, D));
    const qiao_audio *three[] = {a8, bark, a16};
    ok(qiao_embed_audios(s, three, 3, batch, 3 * D));
    double d = fmax(max_abs_diff(batch, pcm8, D),
                    fmax(max_abs_diff(batch + D, bark1, D), max_abs_diff(batch + 2 * D, from_file, D)));
    printf("audio: batch (%.2f s and %.2f s clips) vs one by one: max |diff| %.3g; cosine speech/bark %.4f\n",
           (double)a16->n_samples / 16000, (double)bark->n_samples / 16000, d, qiao_cosine(batch, batch + D, D));
    assert_true(d <= 1e-5);
    assert_true(qiao_cosine(batch, batch + D, D) < 0.9999f);
    qiao_audio_free(a16);
    qiao_audio_free(a8);
    qiao_audio_free(bark);
    free(bytes);
    qiao_session_free(s);
    qiao_model_free(m);
}

/* Clips longer than max_frames keep their beginning; the API cuts them
 * before the mel (and before resampling), which must give the rows the full
 * clip gives through the internal path. */
static void long_audio(void **state) {
    (void)state;
    qiao_model *m = load_model();
    qiao_session *s = new_session(m, 1);
    const int64_t n16 = 30 * 16000; /* longer than tiny.json's max_frames (2560 frames, 25.6 s) */
    float *x = qt_alloc(n16), *y = qt_alloc(n16);
    qt_fill_uniform(x, n16, -0.5f, 0.5f, 11);
    for (int64_t i = 0; i < n16; i++) x[i] *= (float)(0.5 + 0.5 * sin(2 * 3.14159265358979 * 3.0 * (double)i / 16000));
    float ex[D], ey[D];
    ok(qiao_embed_audio_pcm(s, x, n16, 16000, ex, D));
    /* Changing what follows the first 25.6 s (2560 frames of 10 ms) changes nothing ... */
    memcpy(y, x, (size_t)n16 * sizeof(float));
    for (int64_t i = (int64_t)(25.7 * 16000); i < n16; i++) y[i] = -y[i];
    ok(qiao_embed_audio_pcm(s, y, n16, 16000, ey, D));
    assert_memory_equal(ex, ey, sizeof ex);
    /* ... changing the beginning does. */
    for (int64_t i = 0; i < 16000; i++) y[i] = 0.0f;
    ok(qiao_embed_audio_pcm(s, y, n16, 16000, ey, D));
    assert_true(max_abs_diff(ex, ey, D) > 1e-4);

    /* Cross-check of the cut against the internal path on the whole clip,
     * at 16 kHz and at 8 kHz (resampled whole there, cut here). */
    qmod_model *im = NULL;
    ok(qmod_load(g_model, &im));
    qb_exec ex1;
    qb_exec_cpu(&ex1, 1);
    /* The API multiplies by weights packed at load (qmod_pack_weights); the
     * same here, or the rows would differ by GEMM rounding, not by the cut. */
    qb_packed_set *packed = NULL;
    ok(qmod_pack_weights(im, &packed));
    ex1.packed = packed;
    qmod_work w;
    memset(&w, 0, sizeof w);
    for (int rate = 16000; rate >= 8000; rate /= 2) {
        const int64_t n = 15 * (int64_t)rate;
        qiao_audio_params ap = qiao_audio_default_params(); /* to 16 kHz */
        qiao_audio *whole = NULL;
        ok(qiao_audio_from_pcm(x, n, rate, 1, &ap, &whole));
        float full[D], api[D];
        const qiao_audio *one = whole;
        ok(qmod_embed_audio(&ex1, im, &w, &one, 1, full));
        ok(qiao_embed_audio_pcm(s, x, n, rate, api, D));
        printf("long audio at %d Hz: API (cut) vs whole clip: max |diff| %.3g\n", rate, max_abs_diff(full, api, D));
        assert_memory_equal(full, api, sizeof full);
        qiao_audio_free(whole);
    }
    qmod_work_free(&w);
    qb_packed_set_free(packed);
    qmod_free(im);
    free(x);
    free(y);
    qiao_session_free(s);
    qiao_model_free(m);
}

/* ---- bad input ------------------------------------------------------------------- */

static void bad_input(void **state) {
    (void)state;
    qiao_model *m = load_model();
    qiao_session *s = new_session(m, 0);
    float *out = qt_alloc(2 * D);
    const float sentinel = 12345.0f;
    for (size_t i = 0; i < 2 * D; i++) out[i] = sentinel;
    const char *texts[] = {"你好", "hello"};
    const char *with_null[] = {"你好", NULL};
    float pcm[1600] = {0};
    uint8_t junk[4096];
    qc_rng r;
    qc_rng_seed(&r, 3);
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)qc_rng_u64(&r);
    qiao_image *img = NULL;
    ok(qiao_image_decode_file(PHOTO, NULL, &img));
    qiao_audio *aud = NULL;
    ok(qiao_audio_decode_file(SPEECH, NULL, &aud));
    const qiao_image *imgs[] = {img, NULL};
    const qiao_audio *auds[] = {aud, NULL};

    /* Argument errors: nothing is computed, nothing is written. */
    expect(qiao_embed_text(NULL, "x", out, D), QIAO_ERR_INVALID_ARGUMENT, "session");
    expect(qiao_embed_text(s, NULL, out, D), QIAO_ERR_INVALID_ARGUMENT, NULL);
    expect(qiao_embed_text(s, "x", NULL, D), QIAO_ERR_INVALID_ARGUMENT, "out");
    expect(qiao_embed_text(s, "x", out, D - 1), QIAO_ERR_INVALID_ARGUMENT, "out_len");
    expect(qiao_embed_texts(s, texts, 0, out, 2 * D), QIAO_ERR_INVALID_ARGUMENT, "n is 0");
    expect(qiao_embed_texts(s, NULL, 2, out, 2 * D), QIAO_ERR_INVALID_ARGUMENT, NULL);
    expect(qiao_embed_texts(s, texts, 2, out, 2 * D - 1), QIAO_ERR_INVALID_ARGUMENT, "out_len");
    expect(qiao_embed_texts(s, texts, SIZE_MAX / 2, out, 2 * D), QIAO_ERR_INVALID_ARGUMENT, "out_len");
    expect(qiao_embed_texts(s, with_null, 2, out, 2 * D), QIAO_ERR_INVALID_ARGUMENT, "text 1");
    expect(qiao_embed_image(s, NULL, out, D), QIAO_ERR_INVALID_ARGUMENT, NULL);
    expect(qiao_embed_image(s, img, out, D - 1), QIAO_ERR_INVALID_ARGUMENT, "out_len");
    expect(qiao_embed_images(s, imgs, 2, out, 2 * D), QIAO_ERR_INVALID_ARGUMENT, "image 1");
    expect(qiao_embed_images(s, imgs, 0, out, 2 * D), QIAO_ERR_INVALID_ARGUMENT, NULL);
    expect(qiao_embed_image_file(s, NULL, out, D), QIAO_ERR_INVALID_ARGUMENT, NULL);
    expect(qiao_embed_image_file(s, PHOTO, out, 10), QIAO_ERR_INVALID_ARGUMENT, "out_len");
    expect(qiao_embed_image_memory(s, junk, 0, out, D), QIAO_ERR_INVALID_ARGUMENT, NULL);
    expect(qiao_embed_image_memory(s, NULL, 10, out, D), QIAO_ERR_INVALID_ARGUMENT, NULL);
    expect(qiao_embed_image_rgb(s, NULL, 4, 4, 12, out, D), QIAO_ERR_INVALID_ARGUMENT, NULL);
    expect(qiao_embed_audio(s, NULL, out, D), QIAO_ERR_INVALID_ARGUMENT, NULL);
    expect(qiao_embed_audio(s, aud, out, 0), QIAO_ERR_INVALID_ARGUMENT, "out_len");
    expect(qiao_embed_audios(s, auds, 2, out, 2 * D), QIAO_ERR_INVALID_ARGUMENT, "clip 1");
    expect(qiao_embed_audio_file(s, SPEECH, out, D - 1), QIAO_ERR_INVALID_ARGUMENT, "out_len");
    expect(qiao_embed_audio_memory(s, NULL, 10, out, D), QIAO_ERR_INVALID_ARGUMENT, NULL);
    expect(qiao_embed_audio_pcm(s, pcm, 0, 16000, out, D), QIAO_ERR_INVALID_ARGUMENT, "n_samples");
    expect(qiao_embed_audio_pcm(s, NULL, 100, 16000, out, D), QIAO_ERR_INVALID_ARGUMENT, NULL);
    for (size_t i = 0; i < 2 * D; i++) assert_true(out[i] == sentinel);
    assert_int_equal(qiao_session_memory(s), 0); /* no workspace was ever made */

    /* Empty audio is an argument error too. */
    qiao_audio *empty = NULL;
    ok(qiao_audio_from_pcm(pcm, 0, 16000, 1, NULL, &empty));
    expect(qiao_embed_audio(s, empty, out, D), QIAO_ERR_INVALID_ARGUMENT, "empty");
    qiao_audio_free(empty);

    /* Content errors name what is wrong. */
    const char bad_utf8[] = {'o', 'k', ' ', (char)0xC3, (char)0x28, 0};
    expect(qiao_embed_text(s, bad_utf8, out, D), QIAO_ERR_FORMAT, NULL);
    const char *bad_batch[] = {"fine", bad_utf8};
    expect(qiao_embed_texts(s, bad_batch, 2, out, 2 * D), QIAO_ERR_FORMAT, "text 1");
    expect(qiao_embed_image_memory(s, junk, sizeof junk, out, D), QIAO_ERR_FORMAT, NULL);
    size_t len;
    uint8_t *jpg = read_bytes(PHOTO, &len);
    assert_non_null(jpg);
    expect(qiao_embed_image_memory(s, jpg, len / 2, out, D), QIAO_ERR_FORMAT, NULL);
    expect(qiao_embed_image_file(s, QIAO_TEST_DATA "/no/such.jpg", out, D), QIAO_ERR_IO, "such.jpg");
    expect(qiao_embed_image_file(s, SPEECH, out, D), QIAO_ERR_FORMAT, "fsdd_3_jackson_0.wav");
    uint8_t *wav = read_bytes(SPEECH, &len);
    assert_non_null(wav);
    expect(qiao_embed_audio_memory(s, wav, 30, out, D), QIAO_ERR_FORMAT, NULL);
    expect(qiao_embed_audio_memory(s, junk, sizeof junk, out, D), QIAO_ERR_FORMAT, NULL);
    expect(qiao_embed_audio_file(s, QIAO_TEST_DATA "/no/such.wav", out, D), QIAO_ERR_IO, "such.wav");
    expect(qiao_embed_audio_file(s, PHOTO, out, D), QIAO_ERR_FORMAT, "000000126107.jpg");
    expect(qiao_embed_audio_pcm(s, pcm, 1600, 10, out, D), QIAO_ERR_FORMAT, NULL); /* 10 Hz */

    /* The session still works after all of that. */
    ok(qiao_embed_texts(s, texts, 2, out, 2 * D));
    assert_rows_unit(out, 2, D);
    free(jpg);
    free(wav);
    qiao_image_free(img);
    qiao_audio_free(aud);
    free(out);
    qiao_session_free(s);
    qiao_model_free(m);
}

/* ---- memory ---------------------------------------------------------------------- */

static void session_memory(void **state) {
    (void)state;
    qiao_model *m = load_model();
    qiao_session *s = new_session(m, 0);
    assert_int_equal(qiao_session_memory(s), 0);
    const char *texts[] = {"明天早上八点叫我起床", "what is the weather like in berlin"};
    float out[2 * D];
    ok(qiao_embed_texts(s, texts, 2, out, 2 * D));
    const size_t m1 = qiao_session_memory(s);
    assert_true(m1 > 0);
    for (int i = 0; i < 5; i++) {
        ok(qiao_embed_texts(s, texts, 2, out, 2 * D));
        assert_int_equal(qiao_session_memory(s), m1);
        ok(qiao_embed_text(s, texts[i % 2], out, D)); /* smaller fits */
        assert_int_equal(qiao_session_memory(s), m1);
    }
    /* Another modality adds its own workspace. */
    ok(qiao_embed_image_file(s, PHOTO, out, D));
    const size_t m2 = qiao_session_memory(s);
    assert_true(m2 > m1);
    ok(qiao_embed_image_file(s, PHOTO2, out, D));
    assert_int_equal(qiao_session_memory(s), m2);

    /* Big batches run in bounded chunks: 200 texts need no more memory
     * than 32, and every row matches the text embedded alone. */
    enum { N = 200 };
    const char *many[N];
    for (int i = 0; i < N; i++) many[i] = texts[i % 2];
    float *big = qt_alloc((int64_t)N * D);
    ok(qiao_embed_texts(s, many, 32, big, (size_t)N * D));
    const size_t m3 = qiao_session_memory(s);
    ok(qiao_embed_texts(s, many, N, big, (size_t)N * D));
    printf("session memory: 2 texts %zu bytes, + image %zu, 32 texts %zu, 200 texts %zu\n", m1, m2, m3,
           qiao_session_memory(s));
    assert_int_equal(qiao_session_memory(s), m3);
    float one[2 * D];
    ok(qiao_embed_texts(s, texts, 2, one, 2 * D));
    double worst = 0.0;
    for (int i = 0; i < N; i++) worst = fmax(worst, max_abs_diff(big + (size_t)i * D, one + (size_t)(i % 2) * D, D));
    assert_true(worst <= 1e-5);
    free(big);
    qiao_session_free(s);
    qiao_model_free(m);
}

/* ---- threads --------------------------------------------------------------------- */

enum { N_WORKERS = 4, ROUNDS = 3, N_TEXTS = 3 };
static const char *const g_texts[N_TEXTS] = {"附近有什么好吃的川菜馆", "turn the volume down a bit",
                                             "下周三提醒我交房租"};

/* Everything one worker embeds: N_TEXTS texts, one image, one audio clip. */
typedef struct job {
    const qiao_model *m;
    int n_threads;
    float out[(N_TEXTS + 2) * D];
    qiao_status st;
} job;

static qiao_status run_job(job *j) {
    qiao_session_params sp = qiao_session_default_params();
    sp.n_threads = j->n_threads;
    qiao_session *s = NULL;
    qiao_status st = qiao_session_new(j->m, &sp, &s);
    for (int r = 0; r < ROUNDS && st == QIAO_OK; r++) {
        st = qiao_embed_texts(s, g_texts, N_TEXTS, j->out, N_TEXTS * D);
        if (st == QIAO_OK) st = qiao_embed_image_file(s, PHOTO, j->out + N_TEXTS * D, D);
        if (st == QIAO_OK) st = qiao_embed_audio_file(s, SPEECH, j->out + (N_TEXTS + 1) * D, D);
    }
    qiao_session_free(s);
    return st;
}

static void *worker(void *arg) {
    job *j = arg;
    j->st = run_job(j);
    return NULL;
}

static void threads_deterministic(void **state) {
    (void)state;
    qiao_model *m = load_model();
    job *ref = calloc(1, sizeof *ref);
    job *jobs = calloc(N_WORKERS, sizeof *jobs);
    assert_non_null(ref);
    assert_non_null(jobs);
    ref->m = m;
    ref->n_threads = 1;
    ok(run_job(ref));
    pthread_t th[N_WORKERS];
    for (int i = 0; i < N_WORKERS; i++) {
        jobs[i].m = m;
        jobs[i].n_threads = 1 + i % 2; /* and the kernels' team size must not matter either */
        assert_int_equal(pthread_create(&th[i], NULL, worker, &jobs[i]), 0);
    }
    for (int i = 0; i < N_WORKERS; i++) assert_int_equal(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < N_WORKERS; i++) {
        if (jobs[i].st != QIAO_OK) printf("worker %d: %s\n", i, qiao_status_str(jobs[i].st));
        assert_int_equal(jobs[i].st, QIAO_OK);
        if (memcmp(jobs[i].out, ref->out, sizeof ref->out) != 0) {
            printf("worker %d (%d threads) differs from the single-threaded run: max |diff| %.3g\n", i,
                   jobs[i].n_threads, max_abs_diff(jobs[i].out, ref->out, (N_TEXTS + 2) * D));
            fail();
        }
    }
    printf("%d threads x %d rounds: bit-identical to the single-threaded run\n", N_WORKERS, ROUNDS);
    free(ref);
    free(jobs);
    qiao_model_free(m);
}

/* ---- cosine ---------------------------------------------------------------------- */

static void cosine(void **state) {
    (void)state;
    float a[4] = {1, 2, 3, 4}, b[4] = {-4, 3, -2, 1}, z[4] = {0}, a2[4] = {2, 4, 6, 8};
    assert_float_equal(qiao_cosine(a, a2, 4), 1.0f, 1e-7);
    assert_float_equal(qiao_cosine(a, b, 4), 0.0f, 1e-7);
    assert_float_equal(qiao_cosine(a, z, 4), 0.0f, 0.0);
    assert_float_equal(qiao_cosine(a, a, 0), 0.0f, 0.0);
    assert_float_equal(qiao_cosine(NULL, a, 4), 0.0f, 0.0);
    float na[4] = {-1, -2, -3, -4};
    assert_float_equal(qiao_cosine(a, na, 4), -1.0f, 1e-7);
    /* In double: these squares (1e40) overflow a float accumulator, which
     * would give inf / inf = NaN. */
    float big[2] = {3e20f, 4e20f}, big2[2] = {4e20f, -3e20f};
    assert_float_equal(qiao_cosine(big, big, 2), 1.0f, 1e-7);
    assert_float_equal(qiao_cosine(big, big2, 2), 0.0f, 1e-7);
}

/* ---- helpers for the CLI tests ------------------------------------------------- */

/* Reads a (1, D) float32 .npy and compares it with the text's embedding. */
static int check_npy(const char *npy, const char *model_path, const char *text) {
    size_t len;
    uint8_t *b = read_bytes(npy, &len);
    if (!b || len < 10 || memcmp(b, "\x93NUMPY", 6) != 0) {
        fprintf(stderr, "%s: not a .npy file\n", npy);
        free(b);
        return 1;
    }
    size_t hlen = (size_t)b[8] | (size_t)b[9] << 8;
    char header[512] = {0};
    memcpy(header, b + 10, hlen < sizeof header - 1 ? hlen : sizeof header - 1);
    qiao_model *m = NULL;
    qiao_session *s = NULL;
    if (qiao_model_load(model_path, &m) != QIAO_OK || qiao_session_new(m, NULL, &s) != QIAO_OK) {
        fprintf(stderr, "%s\n", qiao_last_error());
        free(b);
        return 1;
    }
    const size_t dim = (size_t)qiao_model_dim(m);
    char shape[64];
    snprintf(shape, sizeof shape, "'shape': (1, %zu)", dim);
    float *e = malloc(dim * sizeof(float));
    int bad = !e || qiao_embed_text(s, text, e, dim) != QIAO_OK;
    if (!bad && (!strstr(header, "'descr': '<f4'") || !strstr(header, shape) || len != 10 + hlen + dim * 4)) {
        fprintf(stderr, "%s: header %s, %zu bytes: not (1, %zu) float32\n", npy, header, len, dim);
        bad = 1;
    }
    if (!bad && memcmp(b + 10 + hlen, e, dim * 4) != 0) {
        fprintf(stderr, "%s: values differ from qiao_embed_text\n", npy);
        bad = 1;
    }
    if (!bad) printf("%s: (1, %zu) float32, equal to qiao_embed_text(\"%s\")\n", npy, dim, text);
    free(e);
    free(b);
    qiao_session_free(s);
    qiao_model_free(m);
    return bad;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--write-model")) return write_model(argv[2], 1);
    if (argc == 5 && !strcmp(argv[1], "--check-npy")) return check_npy(argv[2], argv[3], argv[4]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(load_path_and_memory), cmocka_unit_test(model_params), cmocka_unit_test(bad_models),
        cmocka_unit_test(texts_zh_en),          cmocka_unit_test(images_all_inputs),
        cmocka_unit_test(audio_all_inputs),     cmocka_unit_test(long_audio),
        cmocka_unit_test(bad_input),            cmocka_unit_test(session_memory),
        cmocka_unit_test(threads_deterministic), cmocka_unit_test(cosine),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, setup, teardown);
}
