/* qiao tokenizer train ... and qiao tokenize ...: train a tokenizer from a
 * corpus and show how a text is tokenized, through the public API only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void train_usage(FILE *f) {
    fprintf(f, "usage: qiao tokenizer train --input CORPUS.txt --vocab-size N [--char-vocab N] [--k K] [--t2s]\n"
               "                            [--no-case-fold] --out TOK.safetensors\n");
}

static void tokenize_usage(FILE *f) {
    fprintf(f, "usage: qiao tokenize --tokenizer FILE.safetensors [--json] [--replace-invalid] TEXT\n");
}

static void on_progress(const char *phase, int64_t done, int64_t total, void *user) {
    (void)user;
    if (total > 0)
        fprintf(stderr, "\r%-6s %5.1f%%", phase, 100.0 * (double)done / (double)total);
    else
        fprintf(stderr, "\r%-6s %lld", phase, (long long)done);
    if (total > 0 && done >= total) fputc('\n', stderr);
}

static int tokenizer_train(int argc, char **argv) {
    qiao_tokenizer_train_params p = qiao_tokenizer_train_default_params();
    int have_vocab = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t x;
        if (!strcmp(a, "--input") && v) {
            p.corpus_path = v;
            i++;
        } else if (!strcmp(a, "--out") && v) {
            p.out_path = v;
            i++;
        } else if (!strcmp(a, "--vocab-size")) {
            if (!cli_int_arg("tokenizer train", a, v, 300, 1 << 20, &x)) return 2;
            p.vocab_size = x;
            have_vocab = 1;
            i++;
        } else if (!strcmp(a, "--char-vocab")) {
            if (!cli_int_arg("tokenizer train", a, v, 3, 0x110000, &x)) return 2;
            p.char_vocab_size = x;
            i++;
        } else if (!strcmp(a, "--k")) {
            if (!cli_int_arg("tokenizer train", a, v, 1, 64, &x)) return 2;
            p.k = (int)x;
            i++;
        } else if (!strcmp(a, "--t2s")) {
            p.traditional_to_simplified = 1;
        } else if (!strcmp(a, "--no-case-fold")) {
            p.case_fold = 0;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            train_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "qiao tokenizer train: unknown or incomplete option '%s'\n", a);
            train_usage(stderr);
            return 2;
        }
    }
    if (!p.corpus_path || !p.out_path || !have_vocab) {
        train_usage(stderr);
        return 2;
    }
    p.progress = on_progress;
    qiao_status st = qiao_tokenizer_train(&p);
    if (st != QIAO_OK) return cli_fail(st);
    qiao_tokenizer *tok = NULL;
    if ((st = qiao_tokenizer_load(p.out_path, &tok)) != QIAO_OK) return cli_fail(st);
    printf("%s: %lld pieces, %lld characters, K = %d\n", p.out_path, (long long)qiao_tokenizer_vocab_size(tok),
           (long long)qiao_tokenizer_char_vocab_size(tok), qiao_tokenizer_k(tok));
    qiao_tokenizer_free(tok);
    return 0;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "train")) return tokenizer_train(argc - 1, argv + 1);
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        train_usage(stdout);
        return 0;
    }
    train_usage(stderr);
    return 2;
}

/* Writes s[0 .. n) as the inside of a JSON string literal. */
static void json_chars(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"') fputs("\\\"", stdout);
        else if (c == '\\') fputs("\\\\", stdout);
        else if (c < 0x20 || c == 0x7F) printf("\\u%04x", c);
        else putchar(c);
    }
}

/* Original text is shown as is when valid UTF-8 with no control bytes,
 * else with each byte outside printable ASCII escaped. */
static void show_span(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7F) printf("\\x%02x", c);
        else putchar(c);
    }
}

static const char *tag_name(uint8_t t) {
    switch (t) {
    case QIAO_TAG_B: return "B";
    case QIAO_TAG_M: return "M";
    case QIAO_TAG_E: return "E";
    case QIAO_TAG_S: return "S";
    default: return "-";
    }
}

int cmd_tokenize(int argc, char **argv) {
    const char *path = NULL, *text = NULL;
    int json = 0;
    qiao_tokenize_params tp = qiao_tokenize_default_params();
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) {
            path = argv[++i];
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "--replace-invalid")) {
            tp.replace_invalid = 1;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            tokenize_usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            fprintf(stderr, "qiao tokenize: unknown or incomplete option '%s'\n", argv[i]);
            tokenize_usage(stderr);
            return 2;
        } else if (text) {
            fprintf(stderr, "qiao tokenize: one TEXT at a time (quote it)\n");
            return 2;
        } else {
            text = argv[i];
        }
    }
    if (!path || !text) {
        tokenize_usage(stderr);
        return 2;
    }
    qiao_tokenizer *tok = NULL;
    qiao_status st = qiao_tokenizer_load(path, &tok);
    if (st != QIAO_OK) return cli_fail(st);
    qiao_tokens *t = NULL;
    st = qiao_tokenize(tok, text, strlen(text), &tp, &t);
    if (st != QIAO_OK) {
        qiao_tokenizer_free(tok);
        return cli_fail(st);
    }
    if (json) putchar('[');
    for (size_t i = 0; i < t->count; i++) {
        const char *piece = qiao_tokenizer_piece(tok, t->ids[i]);
        int64_t b = t->offsets[2 * i], e = t->offsets[2 * i + 1];
        if (json) {
            printf("%s\n  {\"piece\": \"", i ? "," : "");
            json_chars(piece, strlen(piece));
            printf("\", \"id\": %d, \"chars\": [", t->ids[i]);
            for (int k = 0; k < t->k; k++) printf("%s%d", k ? ", " : "", t->char_ids[i * (size_t)t->k + k]);
            printf("], \"tag\": \"%s\", \"start\": %lld, \"end\": %lld, \"text\": \"", tag_name(t->tags[i]),
                   (long long)b, (long long)e);
            json_chars(text + b, (size_t)(e - b));
            printf("\"}");
        } else {
            printf("%-12s %6d  [", piece, t->ids[i]);
            for (int k = 0; k < t->k; k++) printf("%s%d", k ? " " : "", t->char_ids[i * (size_t)t->k + k]);
            printf("]  %s  [%lld, %lld)  '", tag_name(t->tags[i]), (long long)b, (long long)e);
            show_span(text + b, (size_t)(e - b));
            printf("'\n");
        }
    }
    if (json) printf("%s]\n", t->count ? "\n" : "");
    qiao_tokens_free(t);
    qiao_tokenizer_free(tok);
    if (fflush(stdout) != 0) {
        perror("qiao tokenize: stdout");
        return 1;
    }
    return 0;
}
