/* bench_tokenizer: tokenization speed (MB/s of original UTF-8) of the
 * hybrid tokenizer, and how the time splits between ICU normalization, ICU
 * word segmentation and the whole pipeline (with SentencePiece).
 *
 *   bench_tokenizer [TOKENIZER.safetensors [TEXT_FILE]]
 *
 * Defaults (run from the repository root): tests/data/tokenizer/
 * tok-test.safetensors and the Chinese user
 * utterances of CrossWOZ (/work/shared/datasets/crosswoz/
 * usr_utterances_val_test.jsonl, the "text" fields joined by newlines), or
 * any UTF-8 text file given. Single thread, best of 3 runs. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizers/tokenizer.h"

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(b);
        return NULL;
    }
    fclose(f);
    b[n] = '\0';
    *len = (size_t)n;
    return b;
}

/* The "text" values of a JSON-lines file, joined by newlines (the values
 * hold no escaped quotes in CrossWOZ; a value with a backslash is skipped). */
static char *jsonl_texts(char *raw, size_t *len) {
    char *out = malloc(*len + 1), *o = out;
    if (!out) return NULL;
    for (char *p = raw; (p = strstr(p, "\"text\": \"")) != NULL;) {
        p += 9;
        char *e = strchr(p, '"');
        if (!e) break;
        if (!memchr(p, '\\', (size_t)(e - p))) {
            memcpy(o, p, (size_t)(e - p));
            o += e - p;
            *o++ = '\n';
        }
        p = e + 1;
    }
    *o = '\0';
    *len = (size_t)(o - out);
    return out;
}

static qiao_status count_unit(size_t b, size_t e, void *user) {
    (void)b;
    (void)e;
    (*(size_t *)user)++;
    return QIAO_OK;
}

int main(int argc, char **argv) {
    const char *tok_path = argc > 1 ? argv[1] : "tests/data/tokenizer/tok-test.safetensors";
    const char *text_path = argc > 2 ? argv[2] : "/work/shared/datasets/crosswoz/usr_utterances_val_test.jsonl";
    size_t len = 0;
    char *raw = slurp(text_path, &len);
    if (!raw) {
        fprintf(stderr, "bench_tokenizer: cannot read %s\n", text_path);
        return 1;
    }
    char *text = raw;
    if (strstr(text_path, ".jsonl")) {
        text = jsonl_texts(raw, &len);
        free(raw);
        if (!text) return 1;
    }
    qiao_tokenizer *tok = NULL;
    if (qiao_tokenizer_load(tok_path, &tok) != QIAO_OK) {
        fprintf(stderr, "bench_tokenizer: %s\n", qiao_last_error());
        return 1;
    }
    double best_norm = 1e9, best_seg = 1e9, best_all = 1e9;
    size_t tokens = 0, units = 0;
    for (int rep = 0; rep < 3; rep++) {
        tk_normalized nt;
        double t0 = qc_now();
        if (tk_normalize(text, len, &tok->norm, "bench", &nt) != QIAO_OK) return 1;
        double t1 = qc_now();
        units = 0;
        if (tk_word_units(nt.s, nt.len, count_unit, &units) != QIAO_OK) return 1;
        double t2 = qc_now();
        tk_normalized_free(&nt);
        qiao_tokens *t = NULL;
        double t3 = qc_now();
        if (qiao_tokenize(tok, text, len, NULL, &t) != QIAO_OK) return 1;
        double t4 = qc_now();
        tokens = t->count;
        qiao_tokens_free(t);
        if (t1 - t0 < best_norm) best_norm = t1 - t0;
        if (t2 - t1 < best_seg) best_seg = t2 - t1;
        if (t4 - t3 < best_all) best_all = t4 - t3;
    }
    double mb = (double)len / 1e6;
    printf("text: %s (%.2f MB), tokenizer: %s\n", text_path, mb, tok_path);
    printf("%-28s %8s %8s\n", "stage", "seconds", "MB/s");
    printf("%-28s %8.3f %8.2f\n", "ICU normalize", best_norm, mb / best_norm);
    printf("%-28s %8.3f %8.2f\n", "ICU word segmentation", best_seg, mb / best_seg);
    printf("%-28s %8.3f %8.2f\n", "whole qiao_tokenize", best_all, mb / best_all);
    printf("%zu word units, %zu tokens (%.2f tokens per word)\n", units, tokens, (double)tokens / (double)units);
    qiao_tokenizer_free(tok);
    free(text);
    return 0;
}
