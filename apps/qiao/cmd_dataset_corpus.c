/* qiao dataset corpus --out FILE INPUT...: one sentence per line for
 * tokenizer training, from shapes manifests (every caption and question)
 * and intent JSONL files (the "text" field). The shipped tokenizer is
 * trained on the shapes world together with the intent corpora, so the
 * default model's vocabulary also covers what a business fine-tunes on. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "core/core.h"

int cmd_dataset_corpus(int argc, char **argv);

/* Writes a string as one line: embedded newlines become spaces. */
static void put_line(FILE *out, const char *s) {
    for (; *s; s++) fputc(*s == '\n' || *s == '\r' ? ' ' : *s, out);
    fputc('\n', out);
}

static void put_strings(FILE *out, const cJSON *arr) {
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) if (cJSON_IsString(it)) put_line(out, it->valuestring);
}

/* One JSONL file: shapes scenes (captions, qa) or intent examples (text). */
static int add_jsonl(FILE *out, const char *path, long long *lines) {
    FILE *f;
    if (qc_fopen_read(path, &f, NULL) != QIAO_OK) {
        fprintf(stderr, "qiao dataset corpus: %s\n", qiao_last_error());
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    long long no = 0;
    int rc = 0;
    while (getline(&line, &cap, f) > 0) {
        no++;
        cJSON *o = cJSON_Parse(line);
        if (!o) {
            fprintf(stderr, "qiao dataset corpus: %s:%lld: not valid JSON\n", path, no);
            rc = 1;
            break;
        }
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(o, "text");
        const cJSON *caps = cJSON_GetObjectItemCaseSensitive(o, "captions");
        const cJSON *qa = cJSON_GetObjectItemCaseSensitive(o, "qa");
        if (cJSON_IsString(text)) put_line(out, text->valuestring), (*lines)++;
        const cJSON *lang;
        cJSON_ArrayForEach(lang, caps) {
            put_strings(out, lang);
            *lines += cJSON_GetArraySize(lang);
        }
        const cJSON *q;
        cJSON_ArrayForEach(q, qa) {
            const cJSON *s = cJSON_GetObjectItemCaseSensitive(q, "question");
            if (cJSON_IsString(s)) put_line(out, s->valuestring), (*lines)++;
        }
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
    return rc;
}

int cmd_dataset_corpus(int argc, char **argv) {
    const char *out_path = NULL;
    int first = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            out_path = argv[++i];
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "qiao dataset corpus: unknown option %s\n", argv[i]);
            return 2;
        } else if (!first) {
            first = i;
        }
    }
    if (!out_path || !first) {
        fprintf(stderr, "usage: qiao dataset corpus --out CORPUS.txt (SHAPES_DIR | FILE.jsonl)...\n");
        return 2;
    }
    FILE *out = fopen(out_path, "w");
    if (!out) {
        fprintf(stderr, "qiao dataset corpus: cannot write %s\n", out_path);
        return 1;
    }
    long long lines = 0;
    int rc = 0;
    for (int i = first; i < argc && !rc; i++) {
        if (!strcmp(argv[i], "--out")) {
            i++;
            continue;
        }
        struct stat st;
        char path[4096];
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            if ((size_t)snprintf(path, sizeof path, "%s/manifest.jsonl", argv[i]) >= sizeof path) {
                fprintf(stderr, "qiao dataset corpus: path too long: %s\n", argv[i]);
                rc = 1;
                break;
            }
            rc = add_jsonl(out, path, &lines);
        } else {
            rc = add_jsonl(out, argv[i], &lines);
        }
    }
    if (fclose(out) != 0 && !rc) {
        fprintf(stderr, "qiao dataset corpus: error writing %s\n", out_path);
        rc = 1;
    }
    if (!rc) fprintf(stderr, "qiao dataset corpus: %lld lines to %s\n", lines, out_path);
    return rc;
}
