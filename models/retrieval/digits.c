/* models/retrieval/digits.c - spoken digits as zero-shot retrieval (eval.h).
 * `qiao eval digits` parses its options, hands this the public API's
 * embedding calls and prints the result. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/retrieval/eval.h"

/* Guards the word matrix's size arithmetic (20 rows of dim floats). */
#define DIGITS_DIM_MAX 65536

static const char *const k_words[QMOD_N_LANGS][QMOD_N_DIGITS] = {
    [QMOD_LANG_ZH] = {"零", "一", "二", "三", "四", "五", "六", "七", "八", "九"},
    [QMOD_LANG_EN] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"},
};
/* English first: the language the clips are spoken in. */
static const int k_order[QMOD_N_LANGS] = {QMOD_LANG_EN, QMOD_LANG_ZH};

const char *const *qmod_digit_words(int lang) { return lang >= 0 && lang < QMOD_N_LANGS ? k_words[lang] : NULL; }

double qmod_digits_accuracy(const qmod_digits *r, int lang) {
    if (!r || r->n <= 0 || lang < 0 || lang >= QMOD_N_LANGS) return 0.0;
    return (double)r->correct[lang] / (double)r->n;
}

/* The digit a scene's caption names (English first), or -1. */
static int truth_of(const qmod_scene *s) {
    for (int k = 0; k < QMOD_N_LANGS; k++) {
        const int l = k_order[k];
        if (!s->caption[l]) continue;
        for (int d = 0; d < QMOD_N_DIGITS; d++)
            if (!strcmp(s->caption[l], k_words[l][d])) return d;
    }
    return -1;
}

/* The same arithmetic as the public qiao_cosine (double sums in index
 * order, 0 for a zero vector), so the command's predictions are exactly
 * what an application computing cosines with qiao.h gets; this layer cannot
 * call the API above it. */
static float cosine(const float *a, const float *b, size_t n) {
    double ab = 0.0, aa = 0.0, bb = 0.0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * (double)b[i];
        aa += (double)a[i] * (double)a[i];
        bb += (double)b[i] * (double)b[i];
    }
    if (aa == 0.0 || bb == 0.0) return 0.0f;
    return (float)(ab / (sqrt(aa) * sqrt(bb)));
}

qiao_status qmod_eval_digits(const qmod_digits_embedder *e, const qmod_dataset *d, qiao_progress_fn progress,
                             void *progress_user, qmod_digits *out) {
    if (!e || !d || !out || (d->n > 0 && !d->scenes))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_eval_digits: NULL embedder, data set or result");
    memset(out, 0, sizeof *out);
    if (!e->texts || !e->audio_file || e->dim < 1 || e->dim > DIGITS_DIM_MAX)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "qmod_eval_digits: the embedder needs both functions and a dim in 1..%d (got %lld)",
                        DIGITS_DIM_MAX, (long long)e->dim);
    const char *where = d->dir ? d->dir : "data set"; /* a hand-made set may have no folder */
    const size_t D = (size_t)e->dim, W = QMOD_N_LANGS * QMOD_N_DIGITS;
    float *words = malloc(W * D * sizeof(float)), *clip = malloc(D * sizeof(float));
    qiao_status st = QIAO_OK;
    if (!words || !clip) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "eval digits: out of memory");
    for (int l = 0; l < QMOD_N_LANGS && st == QIAO_OK; l++)
        st = e->texts(e->user, k_words[l], QMOD_N_DIGITS, words + (size_t)l * QMOD_N_DIGITS * D, QMOD_N_DIGITS * D);
    for (int64_t i = 0; i < d->n && st == QIAO_OK; i++) {
        const qmod_scene *sc = &d->scenes[i];
        const char *wav = sc->speech[QMOD_LANG_EN] ? sc->speech[QMOD_LANG_EN] : sc->speech[QMOD_LANG_ZH];
        if (!wav) continue; /* a scene without speech has nothing to ask */
        const int truth = truth_of(sc);
        if (truth < 0) {
            st = qc_error(QIAO_ERR_FORMAT, "%s: scene %s: caption is not a digit word (zero..nine, 零..九)", where,
                          sc->id);
            break;
        }
        if ((st = e->audio_file(e->user, wav, clip, D)) != QIAO_OK) {
            /* the message is rewritten from itself: copy it first */
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", qiao_last_error());
            st = qc_error(st, "scene %s: %s", sc->id, msg);
            break;
        }
        for (int l = 0; l < QMOD_N_LANGS; l++) {
            /* argmax; a tie goes to the lower digit, so a result never
             * depends on anything but the scores */
            int best = 0;
            float best_s = -2.0f;
            for (int w = 0; w < QMOD_N_DIGITS; w++) {
                const float c = cosine(clip, words + ((size_t)l * QMOD_N_DIGITS + (size_t)w) * D, D);
                if (c > best_s) best_s = c, best = w;
            }
            out->confusion[l][truth][best]++;
            out->correct[l] += best == truth;
        }
        out->n++;
        if (progress) progress("clips", i + 1, d->n, progress_user);
    }
    if (st == QIAO_OK && out->n == 0) st = qc_error(QIAO_ERR_FORMAT, "%s: no scene has speech", where);
    free(words);
    free(clip);
    return st;
}
