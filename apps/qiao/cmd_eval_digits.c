/* qiao eval digits: spoken-digit recognition as zero-shot retrieval. The
 * evaluation is qmod_eval_digits (models/retrieval/eval.h, which says how a
 * clip is scored); this file reads the options, embeds through the public
 * API (qiao.h), as an application would, and prints. Only the manifest is
 * read with models/data/data.h. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "models/data/data.h"
#include "models/retrieval/eval.h"

int cmd_eval_digits(int argc, char **argv);

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

static int print_json(const char *model, const char *data, const qmod_digits *r) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return 0;
    cJSON_AddStringToObject(root, "model", model);
    cJSON_AddStringToObject(root, "data", data);
    cJSON_AddNumberToObject(root, "n", (double)r->n);
    cJSON_AddNumberToObject(root, "chance", 1.0 / QMOD_N_DIGITS);
    for (int k = 0; k < QMOD_N_LANGS; k++) {
        const int l = k_order[k];
        cJSON *o = cJSON_AddObjectToObject(root, qmod_lang_name(l));
        cJSON_AddNumberToObject(o, "accuracy", qmod_digits_accuracy(r, l));
        cJSON_AddNumberToObject(o, "correct", (double)r->correct[l]);
        cJSON *words = cJSON_CreateStringArray(qmod_digit_words(l), QMOD_N_DIGITS);
        cJSON_AddItemToObject(o, "words", words);
        cJSON *cm = cJSON_AddArrayToObject(o, "confusion"); /* rows: spoken digit; columns: predicted */
        for (int t = 0; t < QMOD_N_DIGITS && cm; t++) {
            cJSON *row = cJSON_CreateArray();
            for (int p = 0; p < QMOD_N_DIGITS && row; p++)
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

static void print_table(const char *model, const char *name, const char *data, const qmod_digits *r) {
    const char *const *en = qmod_digit_words(QMOD_LANG_EN);
    printf("model %s (%s)\ndata  %s, %lld clips\n\n", model, name, data, (long long)r->n);
    printf("%-4s %10s %9s\n", "lang", "accuracy", "correct");
    for (int k = 0; k < QMOD_N_LANGS; k++) {
        const int l = k_order[k];
        printf("%-4s %8.1f %% %9lld\n", qmod_lang_name(l), 100.0 * qmod_digits_accuracy(r, l),
               (long long)r->correct[l]);
    }
    printf("chance %6.1f %%\n", 100.0 / QMOD_N_DIGITS);
    for (int k = 0; k < QMOD_N_LANGS; k++) {
        const int l = k_order[k];
        printf("\nconfusion, %s words: rows = spoken digit, columns = predicted\n      ", qmod_lang_name(l));
        for (int p = 0; p < QMOD_N_DIGITS; p++) printf(" %4d", p);
        putchar('\n');
        for (int t = 0; t < QMOD_N_DIGITS; t++) {
            printf("%-5s ", en[t]);
            for (int p = 0; p < QMOD_N_DIGITS; p++) printf(" %4lld", (long long)r->confusion[l][t][p]);
            putchar('\n');
        }
    }
}

/* The evaluation's embedder on a session of the public API. */
static qiao_status embed_texts(void *user, const char *const *texts, size_t n, float *out, size_t out_len) {
    return qiao_embed_texts(user, texts, n, out, out_len);
}
static qiao_status embed_audio_file(void *user, const char *path, float *out, size_t out_len) {
    return qiao_embed_audio_file(user, path, out, out_len);
}
static void show_progress(const char *phase, int64_t done, int64_t total, void *user) {
    cli_progress_show(user, "eval digits", "clips", done, total);
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
    qmod_digits r;
    cli_progress pr;
    cli_progress_start(&pr);
    if (st == QIAO_OK) {
        const qmod_digits_embedder e = {
            .dim = qiao_model_dim(m), .texts = embed_texts, .audio_file = embed_audio_file, .user = s};
        st = qmod_eval_digits(&e, &d, show_progress, &pr, &r);
    }
    if (st == QIAO_OK)
        fprintf(stderr, "\reval digits: %lld clips in %.1f s          \n", (long long)r.n, qc_now() - pr.t0);
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
