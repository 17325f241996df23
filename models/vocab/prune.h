/* models/vocab/prune.h - vocabulary pruning of an imported text encoder
 * (issue 18, section 6): a model file whose SentencePiece vocabulary keeps
 * only the pieces some corpora use and the single characters of Chinese
 * and English, with its word-embedding rows moved to match.
 *
 * Most of an imported multilingual encoder is its word embeddings, most of
 * them for scripts a business's texts never hold. What is kept:
 *   - the specials and every piece SentencePiece does not produce from text
 *     (tk_spm_prune: <unk>, control, byte and user-defined pieces);
 *   - every piece the corpora's texts use, each tokenized as the model reads
 *     it (after its "query" prompt), and the pieces of each of the model's
 *     prompts alone ("passage: " too);
 *   - with `chars`, every piece that is one character of Chinese or English
 *     text, alone or after the word-start mark "▁", and "▁" itself: ASCII,
 *     Latin-1 (¥ £ ° × café), general punctuation (“” … —), currency signs,
 *     CJK ideographs (the unified blocks and their extensions, compatibility
 *     ideographs), radicals, CJK symbols and punctuation, Bopomofo, CJK
 *     compatibility forms, full- and half-width forms.
 *   - with `scripts`, every piece written only in the chosen scripts
 *     (QMV_SCRIPT_*: Chinese, digits, English; a piece may mix them): text
 *     of those characters then tokenizes exactly as before, not just
 *     without <unk>. Chinese and digits keep a Chinese bot's unseen words
 *     and numbers (order ids, phone numbers, amounts) whole; English keeps
 *     every Latin-script piece of plain ASCII, a large share of XLM-R's.
 * A text of the corpora then gives exactly its old pieces (ids renumbered,
 * each keeping its row), and any other Chinese or English text whose
 * characters the model knew is segmented again into finer pieces without
 * <unk>. Text in other scripts may lose pieces to <unk>: that is the trade.
 *
 * The file is rewritten as it is: every other tensor and metadata key bit
 * for bit (bf16, int8 and its scales alike); the tensors with one row per
 * id (the word embeddings, and any tied output or its scales) gathered to
 * the new ids; "qiao.config"'s text.vocab and "tokenizer.config" renumbered;
 * a "qiao.pruned" metadata record says what was kept. Only spm-kind
 * tokenizers (converted XLM-R, e5) and models without a caption decoder.
 *
 * Not a public header: prefix qmv_. */
#ifndef QIAO_MODELS_VOCAB_PRUNE_H
#define QIAO_MODELS_VOCAB_PRUNE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* A corpus file's bytes at most (a larger corpus is refused, not read). */
#define QMV_MAX_FILE ((size_t)1 << 30)

/* Texts read from corpus files, each NUL-terminated. */
typedef struct qmv_texts {
    char *buf;      /* the texts back to back, each followed by a NUL */
    size_t used, cap;
    size_t *off;    /* (n) where text i begins in buf */
    size_t n, ocap;
} qmv_texts;

/* Appends the texts of a corpus held in data[0 .. len) (`name` stands for
 * the file in messages). A corpus is JSON Lines when its first non-blank
 * line is a JSON object: then every non-blank line must be an object with
 * a string "text" (other keys are ignored: an intent file reads as it is),
 * else each non-blank line is a text (its line end and a UTF-8 byte-order
 * mark dropped). A text must be valid UTF-8. Errors name name:line; on an
 * error `out` keeps the texts of earlier corpora only. */
qiao_status qmv_texts_parse(const char *name, const char *data, size_t len, qmv_texts *out);
/* The same from a file (QIAO_ERR_IO when unreadable, QIAO_ERR_TOO_LARGE
 * past QMV_MAX_FILE). */
qiao_status qmv_texts_load(const char *path, qmv_texts *out);
/* Text i and its length in bytes (len may be NULL). */
const char *qmv_text(const qmv_texts *t, size_t i, size_t *len);
/* Accepts NULL and a zeroed set. */
void qmv_texts_free(qmv_texts *t);

/* Whether the code point is one of the characters `chars` keeps. */
bool qmv_kept_char(int32_t cp);

/* Scripts whose every piece is kept (qmv_prune_params.scripts, a mask). */
enum {
    QMV_SCRIPT_ZH = 1,     /* CJK ideographs, radicals, symbols and punctuation, Bopomofo, full-width forms,
                              general punctuation (“” … —) */
    QMV_SCRIPT_DIGITS = 2, /* 0-9 */
    QMV_SCRIPT_EN = 4      /* ASCII */
};
/* Whether the code point belongs to one of the scripts in `mask`. */
bool qmv_script_char(int32_t cp, unsigned mask);
/* The mask a comma-separated list of "zh", "digits" and "en" names;
 * QIAO_ERR_INVALID_ARGUMENT naming what else it holds. */
qiao_status qmv_scripts_parse(const char *list, unsigned *mask);

typedef struct qmv_prune_params {
    const qmv_texts *corpus;   /* may be NULL: no corpus */
    bool chars;                /* keep every single-character piece of Chinese and English */
    unsigned scripts;          /* QMV_SCRIPT_* mask: keep every piece written only in these */
    const char *const *sources; /* (n_sources) the corpora's names, for the "qiao.pruned" record; may be NULL */
    size_t n_sources;
} qmv_prune_params;

typedef struct qmv_prune_stats {
    int64_t pieces_before, pieces_after; /* SentencePiece pieces */
    int64_t rows_before, rows_after;     /* the model's ids: word-embedding rows */
    int64_t by_corpus;                   /* pieces the corpora (and prompts) use */
    int64_t by_chars;                    /* single-character pieces (may overlap by_corpus) */
    int64_t by_scripts;                  /* pieces of the chosen scripts (may overlap both) */
    int64_t texts, tokens, unk;          /* the corpora's texts, their pieces (prompt and specials included), <unk> */
    int64_t tensors;                     /* tensors gathered to the new ids */
    int64_t bytes_before, bytes_after;   /* of those tensors and the tokenizer */
} qmv_prune_stats;

/* Prunes the model file `in` into `out` (written atomically; may be `in`).
 * QIAO_ERR_IO / QIAO_ERR_FORMAT for a file that cannot be read or is not a
 * qiao model, QIAO_ERR_UNSUPPORTED for a tokenizer of another kind or a
 * caption decoder, QIAO_ERR_FORMAT for a corpus text the tokenizer
 * refuses. `stats` may be NULL. */
qiao_status qmv_prune_file(const char *in, const char *out, const qmv_prune_params *p, qmv_prune_stats *stats);

#endif /* QIAO_MODELS_VOCAB_PRUNE_H */
