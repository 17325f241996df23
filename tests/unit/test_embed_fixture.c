/* tests/unit/test_embed_fixture.c - the shipped model's embeddings of a
 * fixed set of texts, pictures and recordings, against a fixture written
 * before a refactor (tests/data/embed/qiao-base-fixture.safetensors), so a
 * change that is meant to keep behaviour ("one house for many heads") can
 * show it did, to the bit.
 *
 * Bit-identity holds for the same kernels: the fixture records the CPU's
 * AVX-512 features, OpenBLAS's core and the compiler and build kind, and
 * where all match every float must be equal. Elsewhere the sums run in another order
 * (OpenBLAS picks its kernel per CPU; an unoptimized build does not fuse
 * multiply-adds), and the rows must agree to 2e-5. Measured: OpenBLAS's
 * Prescott, Haswell and SkylakeX kernels differ by up to 3.7e-8; the
 * unoptimized (ASan) build by 3e-8 for text and pictures and 3.3e-6 for
 * speech, whose log-mel front end passes rounding differences on. A change
 * of behaviour (another resize, another token) moves rows by 1e-3 or more.
 *
 * Regenerate (only when a change is meant to alter embeddings, and say so):
 *   QIAO_WRITE_FIXTURE=1 build/bin/test_embed_fixture */
#define _GNU_SOURCE

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/safetensors.h"
#include "testutil.h"

#define BASE_MODEL QIAO_SOURCE_DIR "/models/qiao-base.safetensors"
#define FIXTURE QIAO_TEST_DATA "/embed/qiao-base-fixture.safetensors"
#define WAV QIAO_TEST_DATA "/audio/fsdd_3_jackson_0.wav"
#define PHOTO QIAO_TEST_DATA "/image/000000126107.jpg"

static const char *const TEXTS[] = {
    "左上角有一个小的红色圆形", "a large blue square in the bottom right", "两个绿色三角形和一个黄色星形",
    "a small purple cross next to an orange diamond", "", "   ", "中间有什么？ what is in the middle?",
};
#define N_TEXTS (sizeof TEXTS / sizeof TEXTS[0])
#define N_IMAGES 3
#define N_AUDIO 3

/* What decides the bits besides the code: the vector unit, OpenBLAS's
 * kernel, and how qiao was compiled (an optimized build contracts a*b+c
 * into FMAs that a debug build does not: 2.2e-8 apart). */
#ifdef __OPTIMIZE__
#define BUILD_KIND "optimized"
#else
#define BUILD_KIND "unoptimized"
#endif
static void machine_signature(char *buf, size_t cap) {
    __builtin_cpu_init();
    snprintf(buf, cap, "avx512f=%d avx512vnni=%d avx512bf16=%d openblas=%s compiler=%s %s",
             !!__builtin_cpu_supports("avx512f"), !!__builtin_cpu_supports("avx512vnni"),
             !!__builtin_cpu_supports("avx512bf16"), openblas_get_corename(), __VERSION__, BUILD_KIND);
}

/* A picture of coloured bands and a disc, made here so no decoder enters. */
static void synthetic_picture(uint8_t *rgb, int w, int h, int variant) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = rgb + 3 * ((size_t)y * w + x);
            int band = (x * 5 / w + variant) % 3;
            p[0] = band == 0 ? 220 : 30;
            p[1] = band == 1 ? 200 : 40;
            p[2] = band == 2 ? 210 : 50;
            int dx = x - w / 2, dy = y - h / 3;
            if (dx * dx + dy * dy < (w / 6) * (w / 6)) p[0] = p[1] = p[2] = (uint8_t)(255 - 60 * variant);
        }
}

static void embed_all(qiao_session *s, int64_t d, float *text, float *image, float *audio) {
    qiao_status st = qiao_embed_texts(s, TEXTS, N_TEXTS, text, N_TEXTS * (size_t)d);
    if (st != QIAO_OK) fail_msg("texts: %s", qiao_last_error());
    const int w = 96, h = 72;
    uint8_t *rgb = malloc((size_t)w * h * 3);
    assert_non_null(rgb);
    for (int v = 0; v < 2; v++) {
        synthetic_picture(rgb, w, h, v);
        st = qiao_embed_image_rgb(s, rgb, w, h, (size_t)w * 3, image + (size_t)v * d, (size_t)d);
        if (st != QIAO_OK) fail_msg("picture %d: %s", v, qiao_last_error());
    }
    free(rgb);
    st = qiao_embed_image_file(s, PHOTO, image + 2 * (size_t)d, (size_t)d);
    if (st != QIAO_OK) fail_msg("%s: %s", PHOTO, qiao_last_error());
    st = qiao_embed_audio_file(s, WAV, audio, (size_t)d);
    if (st != QIAO_OK) fail_msg("%s: %s", WAV, qiao_last_error());
    /* Two tones at 16 kHz and a chirp at 8 kHz (resampled). */
    for (int k = 0; k < 2; k++) {
        int rate = k ? 8000 : 16000, n = rate * 3 / 2;
        float *pcm = malloc((size_t)n * sizeof *pcm);
        assert_non_null(pcm);
        for (int i = 0; i < n; i++) {
            double t = (double)i / rate;
            pcm[i] = (float)(0.4 * sin(2 * M_PI * (k ? 200.0 + 400.0 * t : 440.0) * t));
        }
        st = qiao_embed_audio_pcm(s, pcm, n, rate, audio + (size_t)(1 + k) * d, (size_t)d);
        free(pcm);
        if (st != QIAO_OK) fail_msg("tone %d: %s", k, qiao_last_error());
    }
}

static void write_fixture(int64_t d, const float *text, const float *image, const float *audio, const char *sig) {
    const char *names[3] = {"text", "image", "audio"};
    const float *data[3] = {text, image, audio};
    const int64_t rows[3] = {N_TEXTS, N_IMAGES, N_AUDIO};
    qc_st_entry e[3];
    memset(e, 0, sizeof e);
    for (int i = 0; i < 3; i++) {
        e[i].name = names[i];
        e[i].dtype = QIAO_DTYPE_F32;
        e[i].ndim = 2;
        e[i].shape[0] = rows[i];
        e[i].shape[1] = d;
        e[i].data = data[i];
        e[i].from_f32 = true;
    }
    qc_st_kv meta[1] = {{"machine", sig}};
    if (qc_mkdir_p(QIAO_TEST_DATA "/embed") != QIAO_OK || qc_st_write(FIXTURE, e, 3, meta, 1) != QIAO_OK)
        fail_msg("writing the fixture: %s", qiao_last_error());
    print_message("wrote %s (%s)\n", FIXTURE, sig);
}

static void compare(const qc_st_file *f, const char *name, const float *got, int64_t rows, int64_t d, int exact) {
    const qc_st_tensor *t = qc_st_find(f, name);
    if (!t) fail_msg("fixture has no %s", name);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], rows);
    assert_int_equal(t->shape[1], d);
    const float *want = (const float *)t->data;
    double worst = 0;
    size_t differ = 0;
    for (int64_t i = 0; i < rows * d; i++) {
        double diff = fabs((double)got[i] - (double)want[i]);
        if (got[i] != want[i]) differ++;
        if (diff > worst) worst = diff;
    }
    print_message("%s: %zu of %lld floats differ, max |diff| %.3g (%s)\n", name, differ, (long long)(rows * d), worst,
                  exact ? "same machine: must be 0" : "other machine or build: tolerance 2e-5");
    if (exact) assert_int_equal(differ, 0);
    else assert_true(worst <= 2e-5);
}

static void shipped_model_unchanged(void **state) {
    (void)state;
    qiao_model *m = NULL;
    if (qiao_model_load(BASE_MODEL, &m) != QIAO_OK) fail_msg("%s: %s", BASE_MODEL, qiao_last_error());
    const int64_t d = qiao_model_dim(m);
    float *text = qt_alloc(N_TEXTS * d), *image = qt_alloc(N_IMAGES * d), *audio = qt_alloc(N_AUDIO * d);
    char sig[256];
    /* One thread and two: the same bits either way (tested elsewhere too). */
    for (int threads = 1; threads <= 2; threads++) {
        qiao_session_params sp = qiao_session_default_params();
        sp.n_threads = threads;
        qiao_session *s = NULL;
        assert_int_equal(qiao_session_new(m, &sp, &s), QIAO_OK);
        /* After the first session: qiao may have had OpenBLAS choose its
         * kernels again then (sdk/backend/cpu/blas_core.c). */
        machine_signature(sig, sizeof sig);
        embed_all(s, d, text, image, audio);
        qiao_session_free(s);
        const char *w = getenv("QIAO_WRITE_FIXTURE");
        if (w && w[0] == '1') {
            write_fixture(d, text, image, audio, sig);
            break;
        }
        qc_st_file *f = NULL;
        if (qc_st_open(FIXTURE, &f) != QIAO_OK) fail_msg("%s", qiao_last_error());
        const char *fsig = qc_st_metadata_get(f, "machine");
        int exact = fsig && !strcmp(fsig, sig);
        if (threads == 1) print_message("fixture made on: %s\nthis machine:    %s\n", fsig ? fsig : "?", sig);
        compare(f, "text", text, N_TEXTS, d, exact);
        compare(f, "image", image, N_IMAGES, d, exact);
        compare(f, "audio", audio, N_AUDIO, d, exact);
        qc_st_close(f);
    }
    free(text);
    free(image);
    free(audio);
    qiao_model_free(m);
}

static const struct CMUnitTest tests[] = {cmocka_unit_test(shipped_model_unchanged)};

QT_MAIN(tests)
