/* The public VQA API (sdk/api/vqa_api.c) on a tiny VQA model written at test
 * time: typed, spoken and both in Chinese and English; the answer's
 * language, labels, probabilities and weights; every bad input the issue
 * names (no question, an empty or 100 KB question, invalid UTF-8, a file
 * that is not a picture, silent, empty and hour-long audio, bad params, an
 * embedding-only model); sessions on four threads giving the same bits. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model_fixture.h"
#include "testfs.h"
#include "testutil.h"

static char g_dir[64], g_vqa[128], g_base[128], g_png[128], g_txt[128];

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/qiao-vqa-api-XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_vqa, sizeof g_vqa, "%s/vqa.safetensors", g_dir);
    snprintf(g_base, sizeof g_base, "%s/base.safetensors", g_dir);
    snprintf(g_png, sizeof g_png, "%s/q.png", g_dir);
    snprintf(g_txt, sizeof g_txt, "%s/not-a-picture.png", g_dir);
    qmod_model *m = qt_tiny_vqa_model(3);
    if (qmod_save(m, g_vqa, QIAO_DTYPE_F32) != QIAO_OK) return -1;
    qmod_free(m);
    qt_write_tiny_model(g_base, 3, true);
    FILE *f = fopen(g_txt, "wb");
    if (!f) return -1;
    fputs("this is text, not a PNG\n", f);
    fclose(f);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    qt_rm_rf(g_dir);
    return 0;
}

static qiao_image *picture(uint64_t seed) {
    uint8_t px[48 * 40 * 3];
    qc_rng r;
    qc_rng_seed(&r, seed);
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(qc_rng_u64(&r) >> 56);
    qiao_image *img = NULL;
    assert_int_equal(qiao_image_from_rgb(px, 48, 40, 48 * 3, &img), QIAO_OK);
    return img;
}

static qiao_audio *tone(double seconds, int rate, float amp) {
    const int64_t n = (int64_t)(seconds * rate);
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof *x);
    assert_non_null(x);
    for (int64_t i = 0; i < n; i++) x[i] = amp * sinf(2.0f * 3.14159265f * 440.0f * (float)i / (float)rate);
    qiao_audio *a = NULL;
    qiao_audio_params p = qiao_audio_default_params();
    p.target_rate = rate;
    assert_int_equal(qiao_audio_from_pcm(x, n, rate, 1, &p, &a), QIAO_OK);
    free(x);
    return a;
}

typedef struct fixture {
    qiao_model *model;
    qiao_session *s;
} fixture;

static void open_model(fixture *f, const char *path) {
    assert_int_equal(qiao_model_load(path, &f->model), QIAO_OK);
    assert_int_equal(qiao_session_new(f->model, NULL, &f->s), QIAO_OK);
}

static void close_model(fixture *f) {
    qiao_session_free(f->s);
    qiao_model_free(f->model);
}

static void check_answer(const qiao_vqa_answer *a, int top, const char *lang) {
    assert_string_equal(a->lang, lang);
    assert_int_equal(a->n_top, top);
    float sum = 0.0f;
    for (int k = 0; k < a->n_top; k++) {
        assert_true(a->top[k].p > 0.0f && a->top[k].p <= 1.0f);
        if (k) assert_true(a->top[k].p <= a->top[k - 1].p);
        assert_true(!strcmp(a->top[k].key, "yes") || !strcmp(a->top[k].key, "no") || !strcmp(a->top[k].key, "red"));
        sum += a->top[k].p;
    }
    assert_true(sum <= 1.0f + 1e-5f);
    assert_string_equal(a->best.key, a->top[0].key);
    assert_float_equal(a->w_text + a->w_image + a->w_audio, 1.0f, 1e-5);
}

static void test_ask(void **state) {
    (void)state;
    fixture f;
    open_model(&f, g_vqa);
    assert_int_equal(qiao_model_can_answer(f.model), 1);
    qiao_image *img = picture(1);
    qiao_audio *clip = tone(1.5, 16000, 0.3f);
    qiao_vqa_answer en, zh, sp, both;
    assert_int_equal(qiao_vqa_ask(f.s, img, "Is there a red circle?", NULL, NULL, &en), QIAO_OK);
    check_answer(&en, 3, "en");
    assert_true(en.w_audio == 0.0f);
    assert_string_equal(en.best.text, en.best.key); /* no English texts in this model: the key */
    assert_int_equal(qiao_vqa_ask(f.s, img, "有红色的圆形吗？", NULL, NULL, &zh), QIAO_OK);
    check_answer(&zh, 3, "zh");
    const char *zh_text = !strcmp(zh.best.key, "yes") ? "是" : !strcmp(zh.best.key, "no") ? "否" : "红色";
    assert_string_equal(zh.best.text, zh_text);
    assert_int_equal(qiao_vqa_ask(f.s, img, NULL, clip, NULL, &sp), QIAO_OK);
    assert_true(sp.w_text == 0.0f && sp.w_audio > 0.0f);
    assert_int_equal(sp.n_top, 3);
    assert_int_equal(qiao_vqa_ask(f.s, img, "", clip, NULL, &both), QIAO_OK); /* "" is no text */
    assert_memory_equal(&both, &sp, sizeof both);
    assert_int_equal(qiao_vqa_ask(f.s, img, "Is there a red circle?", clip, NULL, &both), QIAO_OK);
    check_answer(&both, 3, "en");
    assert_true(both.w_text > 0.0f && both.w_audio > 0.0f);
    /* params: the language asked for, eight answers (capped at the three
     * classes), equal weighting */
    qiao_vqa_params p = qiao_vqa_default_params();
    p.lang = "zh";
    p.top_k = 8;
    p.weighting = QIAO_WEIGHTING_EQUAL;
    assert_int_equal(qiao_vqa_ask(f.s, img, "Is there a red circle?", clip, &p, &both), QIAO_OK);
    check_answer(&both, 3, "zh");
    assert_float_equal(both.w_text, 1.0f / 3.0f, 1e-6);
    /* the same from files */
    assert_int_equal(qiao_vqa_ask_files(f.s, QIAO_TEST_DATA "/image/000000126107.jpg", "Is it red?", NULL, NULL, &en),
                     QIAO_OK);
    check_answer(&en, 3, "en");
    assert_true(qiao_session_memory(f.s) > 0);
    qiao_audio_free(clip);
    qiao_image_free(img);
    close_model(&f);
}

static void expect(qiao_status got, qiao_status want, const char *needle) {
    if (got != want || (needle && !strstr(qiao_last_error(), needle)))
        fail_msg("got %s \"%s\", want %s naming \"%s\"", qiao_status_str(got), qiao_last_error(),
                 qiao_status_str(want), needle ? needle : "");
}

static void test_bad_input(void **state) {
    (void)state;
    fixture f;
    open_model(&f, g_vqa);
    qiao_image *img = picture(2);
    qiao_vqa_answer a;
    expect(qiao_vqa_ask(NULL, img, "q?", NULL, NULL, &a), QIAO_ERR_INVALID_ARGUMENT, "required");
    expect(qiao_vqa_ask(f.s, NULL, "q?", NULL, NULL, &a), QIAO_ERR_INVALID_ARGUMENT, "required");
    expect(qiao_vqa_ask(f.s, img, "q?", NULL, NULL, NULL), QIAO_ERR_INVALID_ARGUMENT, "required");
    expect(qiao_vqa_ask(f.s, img, NULL, NULL, NULL, &a), QIAO_ERR_INVALID_ARGUMENT, "no question");
    expect(qiao_vqa_ask(f.s, img, "", NULL, NULL, &a), QIAO_ERR_INVALID_ARGUMENT, "no question");
    expect(qiao_vqa_ask(f.s, img, "red \xff\xfe?", NULL, NULL, &a), QIAO_ERR_FORMAT, NULL);
    /* a 100 KB question: cut to the model's max_tokens, answered */
    char *big = malloc(100 * 1024 + 1);
    assert_non_null(big);
    for (size_t i = 0; i < 100 * 1024; i++) big[i] = "is there a red circle "[i % 22];
    big[100 * 1024] = 0;
    assert_int_equal(qiao_vqa_ask(f.s, img, big, NULL, NULL, &a), QIAO_OK);
    check_answer(&a, 3, "en");
    free(big);
    /* files: not a picture, missing, a missing recording */
    expect(qiao_vqa_ask_files(f.s, g_txt, "q?", NULL, NULL, &a), QIAO_ERR_FORMAT, "not-a-picture");
    expect(qiao_vqa_ask_files(f.s, "/nonexistent/x.png", "q?", NULL, NULL, &a), QIAO_ERR_IO, NULL);
    expect(qiao_vqa_ask_files(f.s, QIAO_TEST_DATA "/image/000000126107.jpg", NULL, "/nonexistent/q.wav", NULL, &a),
           QIAO_ERR_IO, NULL);
    expect(qiao_vqa_ask_files(f.s, QIAO_TEST_DATA "/image/000000126107.jpg", NULL, NULL, NULL, &a),
           QIAO_ERR_INVALID_ARGUMENT, "no question");
    /* silence is a question the model may answer; no samples is none */
    qiao_audio *silent = tone(2.0, 16000, 0.0f);
    assert_int_equal(qiao_vqa_ask(f.s, img, NULL, silent, NULL, &a), QIAO_OK);
    assert_int_equal(a.n_top, 3);
    qiao_audio empty = *silent;
    empty.n_samples = 0;
    expect(qiao_vqa_ask(f.s, img, NULL, &empty, NULL, &a), QIAO_ERR_INVALID_ARGUMENT, "empty");
    qiao_audio_free(silent);
    /* an hour of sound at 1 kHz: only the beginning the model reads is
     * resampled and analysed */
    qiao_audio *hour = tone(3600.0, 1000, 0.2f);
    assert_int_equal(qiao_vqa_ask(f.s, img, NULL, hour, NULL, &a), QIAO_OK);
    qiao_audio_free(hour);
    /* params */
    qiao_vqa_params p = qiao_vqa_default_params();
    p.top_k = 0;
    expect(qiao_vqa_ask(f.s, img, "q?", NULL, &p, &a), QIAO_ERR_INVALID_ARGUMENT, "top_k");
    p = qiao_vqa_default_params();
    p.weighting = 9;
    expect(qiao_vqa_ask(f.s, img, "q?", NULL, &p, &a), QIAO_ERR_INVALID_ARGUMENT, "weighting");
    p = qiao_vqa_default_params();
    p.lang = "fr";
    expect(qiao_vqa_ask(f.s, img, "q?", NULL, &p, &a), QIAO_ERR_INVALID_ARGUMENT, "lang");
    p = qiao_vqa_default_params();
    p.struct_size = 3;
    expect(qiao_vqa_ask(f.s, img, "q?", NULL, &p, &a), QIAO_ERR_INVALID_ARGUMENT, NULL);
    /* after all that, the session still answers */
    assert_int_equal(qiao_vqa_ask(f.s, img, "Is it red?", NULL, NULL, &a), QIAO_OK);
    qiao_image_free(img);
    close_model(&f);
    /* an embedding-only model */
    open_model(&f, g_base);
    assert_int_equal(qiao_model_can_answer(f.model), 0);
    img = picture(3);
    expect(qiao_vqa_ask(f.s, img, "q?", NULL, NULL, &a), QIAO_ERR_UNSUPPORTED, "cannot answer questions");
    qiao_image_free(img);
    close_model(&f);
}

/* Four threads, a session each on one model, ask the same questions:
 * every answer equals the single-thread one bit for bit. */
typedef struct job {
    const qiao_model *model;
    const qiao_image *img;
    const qiao_audio *clip;
    qiao_vqa_answer out[3];
    qiao_status st;
} job;

static void *ask_all(void *arg) {
    job *j = arg;
    qiao_session *s = NULL;
    qiao_session_params sp = qiao_session_default_params();
    sp.n_threads = 1;
    j->st = qiao_session_new(j->model, &sp, &s);
    const char *q[3] = {"Is there a red circle?", "有红色的吗？", NULL};
    for (int k = 0; k < 3 && j->st == QIAO_OK; k++)
        j->st = qiao_vqa_ask(s, j->img, q[k], k == 2 ? j->clip : NULL, NULL, &j->out[k]);
    qiao_session_free(s);
    return NULL;
}

static void test_threads(void **state) {
    (void)state;
    qiao_model *model = NULL;
    assert_int_equal(qiao_model_load(g_vqa, &model), QIAO_OK);
    qiao_image *img = picture(4);
    qiao_audio *clip = tone(1.0, 22050, 0.3f);
    job ref;
    memset(&ref, 0, sizeof ref);
    ref.model = model, ref.img = img, ref.clip = clip;
    ask_all(&ref);
    assert_int_equal(ref.st, QIAO_OK);
    job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = ref;
        memset(jobs[i].out, 0, sizeof jobs[i].out);
        assert_int_equal(pthread_create(&th[i], NULL, ask_all, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(jobs[i].st, QIAO_OK);
        assert_memory_equal(jobs[i].out, ref.out, sizeof ref.out);
    }
    qiao_audio_free(clip);
    qiao_image_free(img);
    qiao_model_free(model);
}

#define CASE(name) {#name, test_##name, NULL, NULL, NULL}
static const struct CMUnitTest tests[] = {
    CASE(ask),
    CASE(bad_input),
    CASE(threads),
};

int main(int argc, char **argv) {
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, setup, teardown);
}
