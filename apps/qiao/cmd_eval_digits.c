/* qiao eval digits: spoken-digit recognition as zero-shot retrieval. The
 * ten digit words are embedded as text in each language ("zero".."nine",
 * "零".."九"), each clip of a manifest (`qiao dataset fsdd`) as audio, and a
 * clip's prediction is the word of highest cosine. Accuracy per language,
 * chance 1/10. Everything goes through the public API (qiao.h), as an
 * application would; only the manifest is read with models/data/data.h. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "models/data/data.h"

int cmd_eval_digits(int argc, char **argv);

#define N_DIGITS 10

static const char *const k_words[QMOD_N_LANGS][N_DIGITS] = {
    [QMOD_LANG_ZH] = {"零", "一", "二", "三", "四", "五", "六", "七", "八", "九"},
    [QMOD_LANG_EN] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"},
};
/* Report order: English first, the language the clips are spoken in. */
static const int k_order[QMOD_N_LANGS] = {QMOD_LANG_EN, QMOD_LANG_ZH};

static void usage(FILE *f) {
    fprintf(f,
            "usage: qiao eval digits --model M.safetensors --data DIR [--threads N] [--json]\n"
            "  DIR is a split of `qiao dataset fsdd` (DIR/manifest.jsonl, or DIR/test/manifest.jsonl).\n"
            "  Each clip is embedded and matched against the ten digit words embedded as text, in\n"
            "  English (zero..nine) and in Chinese (零..九); the prediction is the word of highest\n"
            "  cosine. Prints the accuracy per language (chance 10 %%) and the confusion matrices.\n");
}

/* The digit a scene's caption names (English first), or -1. */
static int truth_of(const qmod_scene *s) {
    for (int k = 0; k < QMOD_N_LANGS; k++) {
        const int l = k_order[k];
        if (!s->caption[l]) continue;
        for (int d = 0; d < N_DIGITS; d++)
            if (!strcmp(s->caption[l], k_words[l][d])) return d;
    }
    return -1;
}

typedef struct result {
    int64_t n;                               /* clips */
    int64_t correct[QMOD_N_LANGS];
    int64_t confusion[QMOD_N_LANGS][N_DIGITS][N_DIGITS]; /* [lang][spoken][predicted] */
} result;

static double accuracy(const result *r, int l) { return r->n ? (double)r->correct[l] / (double)r->n : 0.0; }

static int print_json(const char *model, const char *data, const result *r) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return 0;
    cJSON_AddStringToObject(root, "model", model);
    cJSON_AddStringToObject(root, "data", data);
    cJSON_AddNumberToObject(root, "n", (double)r->n);
    cJSON_AddNumberToObject(root, "chance", 1.0 / N_DIGITS);
    for (int k = 0; k < QMOD_N_LANGS; k++) {
        const int l = k_order[k];
        cJSON *o = cJSON_AddObjectToObject(root, qmod_lang_name(l));
        cJSON_AddNumberToObject(o, "accuracy", accuracy(r, l));
        cJSON_AddNumberToObject(o, "correct", (double)r->correct[l]);
        cJSON *words = cJSON_CreateStringArray(k_words[l], N_DIGITS);
        cJSON_AddItemToObject(o, "words", words);
        cJSON *cm = cJSON_AddArrayToObject(o, "confusion"); /* rows: spoken digit; columns: predicted */
        for (int t = 0; t < N_DIGITS && cm; t++) {
            cJSON *row = cJSON_CreateArray();
            for (int p = 0; p < N_DIGITS && row; p++)
                cJSON_AddItemToArray(row, cJSON_CreateNumber((double)r->confusion[l][t][p]));
            cJSON_AddItemToArray(cm, row);
        }
    }
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    if (!s) return 0;
    printf("%s\n", s);
    cJSON_free(s);
    return 1;
}

static void print_table(const char *model, const char *name, const char *data, const result *r) {
    printf("model %s (%s)\ndata  %s, %lld clips\n\n", model, name, data, (long long)r->n);
    printf("%-4s %10s %9s\n", "lang", "accuracy", "correct");
    for (int k = 0; k < QMOD_N_LANGS; k++) {
        const int l = k_order[k];
        printf("%-4s %8.1f %% %9lld\n", qmod_lang_name(l), 100.0 * accuracy(r, l), (long long)r->correct[l]);
    }
    printf("chance %6.1f %%\n", 100.0 / N_DIGITS);
    for (int k = 0; k < QMOD_N_LANGS; k++) {
        const int l = k_order[k];
        printf("\nconfusion, %s words: rows = spoken digit, columns = predicted\n      ", qmod_lang_name(l));
        for (int p = 0; p < N_DIGITS; p++) printf(" %4d", p);
        putchar('\n');
        for (int t = 0; t < N_DIGITS; t++) {
            printf("%-5s ", k_words[QMOD_LANG_EN][t]);
            for (int p = 0; p < N_DIGITS; p++) printf(" %4lld", (long long)r->confusion[l][t][p]);
            putchar('\n');
        }
    }
}

/* Embeds the words and the clips of d and fills r. */
static qiao_status run_eval(qiao_session *s, int64_t D, const qmod_dataset *d, result *r) {
    memset(r, 0, sizeof *r);
    const size_t W = QMOD_N_LANGS * N_DIGITS;
    float *words = malloc(W * (size_t)D * sizeof(float)), *clip = malloc((size_t)D * sizeof(float));
    qiao_status st = QIAO_OK;
    if (!words || !clip) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "eval digits: out of memory");
    for (int l = 0; l < QMOD_N_LANGS && st == QIAO_OK; l++)
        st = qiao_embed_texts(s, k_words[l], N_DIGITS, words + (size_t)l * N_DIGITS * (size_t)D,
                              N_DIGITS * (size_t)D);
    cli_progress pr;
    cli_progress_start(&pr);
    for (int64_t i = 0; i < d->n && st == QIAO_OK; i++) {
        const qmod_scene *sc = &d->scenes[i];
        const char *wav = sc->speech[QMOD_LANG_EN] ? sc->speech[QMOD_LANG_EN] : sc->speech[QMOD_LANG_ZH];
        if (!wav) continue; /* a scene without speech has nothing to ask */
        const int truth = truth_of(sc);
        if (truth < 0) {
            st = qc_error(QIAO_ERR_FORMAT, "%s: scene %s: caption is not a digit word (zero..nine, 零..九)", d->dir,
                          sc->id);
            break;
        }
        if ((st = qiao_embed_audio_file(s, wav, clip, (size_t)D)) != QIAO_OK) {
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
            for (int w = 0; w < N_DIGITS; w++) {
                const float c = qiao_cosine(clip, words + ((size_t)l * N_DIGITS + (size_t)w) * (size_t)D, (size_t)D);
                if (c > best_s) best_s = c, best = w;
            }
            r->confusion[l][truth][best]++;
            r->correct[l] += best == truth;
        }
        r->n++;
        cli_progress_show(&pr, "eval digits", "clips", i + 1, d->n);
    }
    if (st == QIAO_OK && r->n == 0) st = qc_error(QIAO_ERR_FORMAT, "%s: no scene has speech", d->dir);
    if (st == QIAO_OK) fprintf(stderr, "\reval digits: %lld clips in %.1f s          \n", (long long)r->n, qc_now() - pr.t0);
    free(words);
    free(clip);
    return st;
}

int cmd_eval_digits(int argc, char **argv) {
    const char *model_path = NULL, *data = NULL;
    int threads = 0, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strncmp(a, "--", 2) != 0 || !v) {
            fprintf(stderr, "qiao eval digits: %s: unknown option or missing value\n", a);
            usage(stderr);
            return 2;
        }
        i++;
        if (!strcmp(a, "--model")) {
            model_path = v;
        } else if (!strcmp(a, "--data")) {
            data = v;
        } else if (!strcmp(a, "--threads")) {
            int64_t x;
            if (!cli_int(v, 0, 1024, &x)) {
                fprintf(stderr, "qiao eval digits: bad option or value: %s %s\n", a, v);
                return 2;
            }
            threads = (int)x;
        } else {
            fprintf(stderr, "qiao eval digits: bad option or value: %s %s\n", a, v);
            usage(stderr);
            return 2;
        }
    }
    if (!model_path || !data) {
        fprintf(stderr, "qiao eval digits: --model and --data are required\n");
        usage(stderr);
        return 2;
    }
    char dir[4096];
    cli_split_dir(data, "test", dir, sizeof dir);

    qmod_dataset d;
    memset(&d, 0, sizeof d);
    qiao_model *m = NULL;
    qiao_session *s = NULL;
    qiao_status st = qmod_dataset_load(dir, &d);
    if (st == QIAO_OK) st = qiao_model_load(model_path, &m);
    qiao_session_params sp = qiao_session_default_params();
    sp.n_threads = threads;
    if (st == QIAO_OK) st = qiao_session_new(m, &sp, &s);
    result r;
    if (st == QIAO_OK) st = run_eval(s, qiao_model_dim(m), &d, &r);
    int rc = 0;
    if (st != QIAO_OK) {
        rc = cli_fail(st);
    } else if (json) {
        if (!print_json(model_path, dir, &r)) {
            fprintf(stderr, "qiao: out of memory writing JSON\n");
            rc = 1;
        }
    } else {
        print_table(model_path, qiao_model_name(m), dir, &r);
    }
    qiao_session_free(s);
    qiao_model_free(m);
    qmod_dataset_free(&d);
    return rc;
}
