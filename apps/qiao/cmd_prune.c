/* qiao prune-vocab: a model file whose imported SentencePiece vocabulary
 * keeps only the pieces some corpora use and the single characters of
 * Chinese and English, its word embeddings cut to match
 * (models/vocab/prune.h); scripts/make-intent-bot.sh makes the sample
 * bot's classifier small enough to commit with it. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "models/vocab/prune.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: qiao prune-vocab --model M.safetensors --keep CORPUS [--keep CORPUS ...] --out OUT.safetensors\n"
            "                        [--script zh,digits,en] [--no-chars]\n"
            "  Cuts an imported SentencePiece vocabulary (converted e5 or XLM-R; tokenizer kind \"spm\") to\n"
            "  the pieces the CORPUS files use, each text read as the model reads it (after its \"query\"\n"
            "  prompt), the pieces of the model's prompts, the specials, and every piece that is one\n"
            "  Chinese or English character (CJK ideographs and punctuation, full-width forms, ASCII,\n"
            "  Latin-1, general punctuation; with or without the word-start mark), so that any Chinese or\n"
            "  English text still tokenizes without <unk>. The word embeddings keep the rows of the kept\n"
            "  pieces. A text made of kept pieces gets the same pieces and the same vectors as before;\n"
            "  another is split into finer pieces. Every other tensor is copied as stored (bf16, or int8\n"
            "  from `qiao quantize`, before or after).\n"
            "  CORPUS: JSON Lines with a string \"text\" on every line (an intent file as it is), or plain\n"
            "  text, one text a line.\n"
            "  --script also keeps every piece written only in the listed scripts (a piece may mix them):\n"
            "  zh (CJK ideographs, radicals, punctuation and symbols, Bopomofo, full-width forms, general\n"
            "  punctuation), digits (0-9), en (ASCII). Text of those characters then tokenizes exactly\n"
            "  as before, unseen words and numbers included (en keeps every ASCII piece: a large share\n"
            "  of a multilingual vocabulary). --no-chars drops the single-character rule (text outside\n"
            "  the corpora and scripts may then lose characters to <unk>).\n");
}

static double mib(int64_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

/* A corpus as the file's record names it: its folder and name
 * ("ecommerce_zh/train.jsonl"), so the same recipe run from another
 * checkout writes the same file. */
static const char *short_name(const char *path) {
    const char *last = strrchr(path, '/');
    if (!last) return path;
    const char *p = last;
    while (p > path && p[-1] != '/') p--;
    return p;
}

static int64_t file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : -1;
}

int cmd_prune(int argc, char **argv) {
    const char *model = NULL, *out = NULL;
    const char **keep = calloc((size_t)argc + 1, sizeof *keep);
    size_t n_keep = 0;
    bool chars = true;
    unsigned scripts = 0;
    if (!keep) return cli_fail(QIAO_ERR_OUT_OF_MEMORY);
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        const bool has = i + 1 < argc;
        if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
            usage(stdout);
            free(keep);
            return 0;
        } else if (!strcmp(s, "--model") && has) {
            model = argv[++i];
        } else if (!strcmp(s, "--out") && has) {
            out = argv[++i];
        } else if (!strcmp(s, "--keep") && has) {
            keep[n_keep++] = argv[++i];
        } else if (!strcmp(s, "--script") && has) {
            const qiao_status st = qmv_scripts_parse(argv[++i], &scripts);
            if (st != QIAO_OK) {
                fprintf(stderr, "qiao prune-vocab: --script: %s\n", qiao_last_error());
                free(keep);
                return 2;
            }
        } else if (!strcmp(s, "--no-chars")) {
            chars = false;
        } else {
            fprintf(stderr, "qiao prune-vocab: unknown option or missing value: %s\n", s);
            usage(stderr);
            free(keep);
            return 2;
        }
    }
    if (!model || !out || !n_keep) {
        fprintf(stderr, "qiao prune-vocab: --model, --out and at least one --keep are required\n");
        usage(stderr);
        free(keep);
        return 2;
    }
    qmv_texts corpus;
    memset(&corpus, 0, sizeof corpus);
    qiao_status st = QIAO_OK;
    for (size_t i = 0; st == QIAO_OK && i < n_keep; i++) st = qmv_texts_load(keep[i], &corpus);
    const char **names = calloc(n_keep, sizeof *names);
    if (!names) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    for (size_t i = 0; names && i < n_keep; i++) names[i] = short_name(keep[i]);
    qmv_prune_params p = {.corpus = &corpus, .chars = chars, .scripts = scripts, .sources = names, .n_sources = n_keep};
    qmv_prune_stats s;
    const int64_t before = file_size(model);
    if (st == QIAO_OK) st = qmv_prune_file(model, out, &p, &s);
    qmv_texts_free(&corpus);
    free(names);
    free(keep);
    /* the new file through the public API, as an application would open it */
    qiao_model *m = NULL;
    if (st == QIAO_OK) st = qiao_model_load(out, &m);
    qiao_model_free(m);
    if (st != QIAO_OK) return cli_fail(st);
    printf("%s: %lld -> %lld rows (%lld -> %lld SentencePiece pieces): %lld used by %lld texts (%lld <unk> of %lld "
           "tokens), %lld single characters, %lld of the scripts\n",
           out, (long long)s.rows_before, (long long)s.rows_after, (long long)s.pieces_before,
           (long long)s.pieces_after, (long long)s.by_corpus, (long long)s.texts, (long long)s.unk,
           (long long)s.tokens, (long long)s.by_chars, (long long)s.by_scripts);
    printf("  %lld tensor%s gathered; they and the tokenizer %.1f -> %.1f MiB; file %.1f -> %.1f MiB\n",
           (long long)s.tensors, s.tensors == 1 ? "" : "s", mib(s.bytes_before), mib(s.bytes_after), mib(before),
           mib(file_size(out)));
    return 0;
}
