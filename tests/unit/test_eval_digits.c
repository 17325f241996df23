/* qmod_eval_digits (models/retrieval/eval.h) with a made-up embedder, so
 * every prediction is known in advance; test_fsdd.eval_digits runs the same
 * evaluation through `qiao eval digits` on a real (tiny) model.
 *
 * The embedder maps digit word d of English to the unit vector e_d and of
 * Chinese to e_((d+1) mod 10); a clip "<k>.wav" is e_k, so English predicts
 * k and Chinese k-1. "tie.wav" is (e_4 + e_7) / sqrt 2, equally close to
 * "four" and "seven".
 *
 *   confusion   predictions, correct counts, accuracy, the words embedded,
 *               scenes without speech skipped, a zh-only scene's recording
 *               and caption used, a tie going to the lower digit, progress
 *   errors      a caption that is no digit word, a split without speech, an
 *               embedding failure (status kept, scene named), NULL arguments
 *               and a bad embedder: a status and a message, never a crash */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/retrieval/eval.h"
#include "testutil.h"

#define DIM 16 /* wider than the ten directions used, as a real space is */

typedef struct fake {
    int text_calls, audio_calls;
    int bad_words; /* texts were not the ten words of a language, or out_len was wrong */
    qiao_status audio_status; /* returned for "fail.wav" */
} fake;

static qiao_status fake_texts(void *user, const char *const *texts, size_t n, float *out, size_t out_len) {
    fake *f = user;
    f->text_calls++;
    int lang = -1;
    for (int l = 0; l < QMOD_N_LANGS; l++)
        if (n == QMOD_N_DIGITS && !strcmp(texts[0], qmod_digit_words(l)[0])) lang = l;
    if (lang < 0 || out_len != n * DIM) {
        f->bad_words = 1;
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "fake_texts: unexpected call");
    }
    memset(out, 0, out_len * sizeof *out);
    for (size_t d = 0; d < n; d++) {
        if (strcmp(texts[d], qmod_digit_words(lang)[d])) f->bad_words = 1;
        out[d * DIM + (lang == QMOD_LANG_EN ? d : (d + 1) % QMOD_N_DIGITS)] = 1.0f;
    }
    return QIAO_OK;
}

static qiao_status fake_audio(void *user, const char *path, float *out, size_t out_len) {
    fake *f = user;
    f->audio_calls++;
    if (out_len != DIM) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "fake_audio: out_len %zu", out_len);
    memset(out, 0, out_len * sizeof *out);
    if (!strcmp(path, "fail.wav")) return qc_error(f->audio_status, "fail.wav: not a recognised audio format");
    if (!strcmp(path, "tie.wav")) {
        out[4] = out[7] = (float)(1.0 / sqrt(2.0));
        return QIAO_OK;
    }
    int k = path[0] - '0';
    assert_true(k >= 0 && k < QMOD_N_DIGITS && !strcmp(path + 1, ".wav"));
    out[k] = 1.0f;
    return QIAO_OK;
}

typedef struct prog {
    int64_t calls, last_done, total;
    int bad;
} prog;

static void on_progress(const char *phase, int64_t done, int64_t total, void *user) {
    prog *p = user;
    if (strcmp(phase, "clips") || done <= p->last_done || total != p->total) p->bad = 1;
    p->last_done = done;
    p->calls++;
}

/* A scene: id, captions (en, zh; NULL = absent), speech (en, zh). The
 * strings are literals the evaluation only reads. */
static qmod_scene scene(const char *id, const char *en, const char *zh, const char *wav_en, const char *wav_zh) {
    qmod_scene s;
    memset(&s, 0, sizeof s);
    s.id = (char *)id;
    s.caption[QMOD_LANG_EN] = (char *)en;
    s.caption[QMOD_LANG_ZH] = (char *)zh;
    s.speech[QMOD_LANG_EN] = (char *)wav_en;
    s.speech[QMOD_LANG_ZH] = (char *)wav_zh;
    return s;
}

static qmod_dataset dataset(qmod_scene *scenes, int64_t n) {
    qmod_dataset d;
    memset(&d, 0, sizeof d);
    d.dir = (char *)"digits-split";
    d.scenes = scenes;
    d.n = n;
    return d;
}

static void confusion(void **state) {
    (void)state;
    qmod_scene sc[] = {
        scene("a", "three", "三", "3.wav", NULL),   /* en right (3), zh says 2 */
        scene("b", "three", "三", "4.wav", NULL),   /* en 4, zh 3: zh right */
        scene("c", "seven", "七", NULL, NULL),      /* no speech: skipped */
        scene("d", NULL, "九", NULL, "9.wav"),      /* zh only: truth 9 from 九 */
        scene("e", "four", "四", "tie.wav", NULL),  /* 4 and 7 tie in en: 4 */
        scene("f", "zero", "零", "0.wav", "5.wav"), /* the en recording is the one used */
    };
    qmod_dataset d = dataset(sc, 6);
    fake f = {0};
    const qmod_digits_embedder e = {.dim = DIM, .texts = fake_texts, .audio_file = fake_audio, .user = &f};
    prog p = {.total = 6};
    qmod_digits r;
    assert_int_equal(qmod_eval_digits(&e, &d, on_progress, &p, &r), QIAO_OK);
    assert_int_equal(f.text_calls, 2);
    assert_false(f.bad_words);
    assert_int_equal(f.audio_calls, 5);
    assert_int_equal(r.n, 5);

    /* (spoken, predicted) per language; every other cell is 0 */
    static const int want[QMOD_N_LANGS][5][2] = {
        [QMOD_LANG_EN] = {{3, 3}, {3, 4}, {9, 9}, {4, 4}, {0, 0}},
        /* zh: a clip e_k is nearest to the word whose vector is e_k, digit k-1;
         * the tie e_4 + e_7 is words 3 and 6: the lower wins */
        [QMOD_LANG_ZH] = {{3, 2}, {3, 3}, {9, 8}, {4, 3}, {0, 9}},
    };
    for (int l = 0; l < QMOD_N_LANGS; l++) {
        int64_t cm[QMOD_N_DIGITS][QMOD_N_DIGITS] = {{0}};
        int64_t correct = 0;
        for (int i = 0; i < 5; i++) {
            cm[want[l][i][0]][want[l][i][1]]++;
            correct += want[l][i][0] == want[l][i][1];
        }
        assert_memory_equal(r.confusion[l], cm, sizeof cm);
        assert_int_equal(r.correct[l], correct);
        assert_float_equal(qmod_digits_accuracy(&r, l), (double)correct / 5.0, 1e-12);
    }
    assert_int_equal(r.correct[QMOD_LANG_EN], 4);
    assert_int_equal(r.correct[QMOD_LANG_ZH], 1);

    /* progress after each scored clip: done is the scene index + 1 */
    assert_int_equal(p.calls, 5);
    assert_int_equal(p.last_done, 6);
    assert_false(p.bad);

    /* no progress callback is fine; the result is the same */
    qmod_digits r2;
    assert_int_equal(qmod_eval_digits(&e, &d, NULL, NULL, &r2), QIAO_OK);
    assert_memory_equal(&r, &r2, sizeof r);

    assert_string_equal(qmod_digit_words(QMOD_LANG_EN)[7], "seven");
    assert_string_equal(qmod_digit_words(QMOD_LANG_ZH)[7], "七");
    assert_null(qmod_digit_words(QMOD_N_LANGS));
    assert_null(qmod_digit_words(-1));
    assert_float_equal(qmod_digits_accuracy(&r, QMOD_N_LANGS), 0.0, 0.0);
    qmod_digits empty = {0};
    assert_float_equal(qmod_digits_accuracy(&empty, QMOD_LANG_EN), 0.0, 0.0);
}

static void expect(qiao_status got, qiao_status want, const char *msg) {
    assert_int_equal(got, want);
    if (!strstr(qiao_last_error(), msg)) fail_msg("message '%s' lacks '%s'", qiao_last_error(), msg);
}

static void errors(void **state) {
    (void)state;
    fake f = {.audio_status = QIAO_ERR_FORMAT};
    qmod_digits_embedder e = {.dim = DIM, .texts = fake_texts, .audio_file = fake_audio, .user = &f};
    qmod_digits r;

    qmod_scene words[] = {scene("w1", "seven", NULL, "7.wav", NULL), scene("w2", "eleven", NULL, "1.wav", NULL)};
    qmod_dataset d = dataset(words, 2);
    expect(qmod_eval_digits(&e, &d, NULL, NULL, &r), QIAO_ERR_FORMAT,
           "digits-split: scene w2: caption is not a digit word");

    qmod_scene silent[] = {scene("s1", "seven", "七", NULL, NULL)};
    d = dataset(silent, 1);
    expect(qmod_eval_digits(&e, &d, NULL, NULL, &r), QIAO_ERR_FORMAT, "digits-split: no scene has speech");
    d = dataset(NULL, 0);
    expect(qmod_eval_digits(&e, &d, NULL, NULL, &r), QIAO_ERR_FORMAT, "no scene has speech");

    /* the embedder's status survives; the message gains the scene */
    qmod_scene bad[] = {scene("b1", "one", NULL, "1.wav", NULL), scene("b2", "two", NULL, "fail.wav", NULL)};
    d = dataset(bad, 2);
    expect(qmod_eval_digits(&e, &d, NULL, NULL, &r), QIAO_ERR_FORMAT,
           "scene b2: fail.wav: not a recognised audio format");
    f.audio_status = QIAO_ERR_IO;
    expect(qmod_eval_digits(&e, &d, NULL, NULL, &r), QIAO_ERR_IO, "scene b2: fail.wav");

    /* a failing text embedding stops before any clip */
    d = dataset(words, 1);
    qmod_digits_embedder narrow = e;
    narrow.dim = DIM - 1; /* fake_texts refuses an out_len that is not 10 x DIM */
    f.audio_calls = 0;
    expect(qmod_eval_digits(&narrow, &d, NULL, NULL, &r), QIAO_ERR_INVALID_ARGUMENT, "fake_texts: unexpected call");
    assert_int_equal(f.audio_calls, 0);

    expect(qmod_eval_digits(NULL, &d, NULL, NULL, &r), QIAO_ERR_INVALID_ARGUMENT, "NULL");
    expect(qmod_eval_digits(&e, NULL, NULL, NULL, &r), QIAO_ERR_INVALID_ARGUMENT, "NULL");
    expect(qmod_eval_digits(&e, &d, NULL, NULL, NULL), QIAO_ERR_INVALID_ARGUMENT, "NULL");
    qmod_dataset lost = dataset(NULL, 3); /* n scenes but no array */
    expect(qmod_eval_digits(&e, &lost, NULL, NULL, &r), QIAO_ERR_INVALID_ARGUMENT, "NULL");
    qmod_digits_embedder x = e;
    x.texts = NULL;
    expect(qmod_eval_digits(&x, &d, NULL, NULL, &r), QIAO_ERR_INVALID_ARGUMENT, "both functions");
    x = e;
    x.audio_file = NULL;
    expect(qmod_eval_digits(&x, &d, NULL, NULL, &r), QIAO_ERR_INVALID_ARGUMENT, "both functions");
    x = e;
    x.dim = 0;
    expect(qmod_eval_digits(&x, &d, NULL, NULL, &r), QIAO_ERR_INVALID_ARGUMENT, "got 0");
    x.dim = INT64_MAX; /* would overflow the word matrix's size */
    expect(qmod_eval_digits(&x, &d, NULL, NULL, &r), QIAO_ERR_INVALID_ARGUMENT, "dim in 1..65536");
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(confusion),
        cmocka_unit_test(errors),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
