/* tokenizers/wordpiece.h - BERT's WordPiece tokenizer, giving the ids of
 * Hugging Face's slow BertTokenizer (transformers' tokenization_bert.py), for
 * running public BERT-family checkpoints (Chinese BERT, bge-small-zh,
 * Chinese-CLIP's text tower) on the vocab.txt they ship.
 *
 *   tk_wp_options o = tk_wp_default_options();
 *   o.do_lower_case = false;               // as the checkpoint's tokenizer_config.json says
 *   tk_wp *wp;
 *   if (tk_wp_load_file("vocab.txt", &o, &wp) != QIAO_OK) return ...;
 *   tk_wp_encoding e;
 *   if (tk_wp_encode(wp, text, strlen(text), true, 512, &e) == QIAO_OK) {
 *       ... e.ids[0 .. e.count) start with [CLS] and end with [SEP] ...
 *       tk_wp_encoding_free(&e);
 *   }
 *   tk_wp_free(wp);
 *
 * What encode does, in BertTokenizer's order (the file's comments say where
 * each step comes from):
 *   1. with do_lower_case, every character but the special tokens' text is
 *      lowercased on its own (full Unicode mapping, as Python's str.lower);
 *   2. the special tokens' text ([UNK] [CLS] [SEP] [PAD] [MASK]) is cut out
 *      and becomes their ids;
 *   3. the rest: NUL, U+FFFD and every C* character but tab, CR and LF are
 *      dropped, white space becomes a space, spaces go around each CJK
 *      ideograph (BERT's ranges), the text is put in NFC and split at white
 *      space; each word is lowercased and stripped of accents (NFD, Mn
 *      removed) as configured, and split at punctuation (ASCII symbols and
 *      Unicode P*);
 *   4. each piece gets WordPiece's greedy longest-match-first subwords with
 *      "##" continuations; a piece over max_input_chars_per_word characters,
 *      or one that cannot be matched, is one [UNK].
 * Unicode properties, case mappings and normalization come from ICU, so
 * characters whose properties differ between ICU's Unicode version and the
 * Python that ran BertTokenizer can tokenize differently (tests/wordpiece.cmake
 * checks every character assigned in the older of the two).
 *
 * The slow tokenizer is the reference; BertTokenizerFast differs from it on
 * rare texts: it does not put the text in NFC (a CJK compatibility ideograph
 * is [UNK] there, its unified twin here), keeps the unassigned code points
 * that the slow one drops, splits a special token's text broken by a
 * dropped format character, and its Unicode tables are of another version
 * (some recent punctuation and marks). The fixture's header counts them.
 *
 * Known differences from BertTokenizer, which neither real text nor a real
 * BERT vocabulary reaches: a special token whose string is not in the vocabulary is not
 * recognized in text (BertTokenizer would add it with a new id past the
 * vocabulary); overlapping special token strings are matched
 * leftmost-longest; a run of combining marks longer than a normalization
 * segment (SEG_MAX in wordpiece.c) is normalized in pieces, where Python
 * reorders it whole (Unicode's stream-safe text format never has such runs).
 *
 * Invalid UTF-8 in a text or a vocabulary is QIAO_ERR_FORMAT naming the
 * byte offset (the text) or the line (the vocabulary), as Python's strict
 * UTF-8 decoding refuses it. Texts over TK_WP_MAX_TEXT bytes and
 * vocabularies over TK_WP_MAX_VOCAB_BYTES bytes or TK_WP_MAX_VOCAB_TOKENS
 * lines are QIAO_ERR_TOO_LARGE before anything is allocated for them.
 *
 * Threads: a loaded tk_wp is immutable; any number of threads may encode
 * with one at once. An encoding belongs to its caller.
 *
 * Not a public header: prefix tk_wp_. */
#ifndef QIAO_TOKENIZERS_WORDPIECE_H
#define QIAO_TOKENIZERS_WORDPIECE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* A BERT model reads a few hundred tokens: a longer document is cut into
 * passages before it is tokenized. Encoding holds the whole text as code
 * points with their byte ranges at once. */
#define TK_WP_MAX_TEXT ((size_t)1 << 20)
/* Far above the largest public BERT vocabularies (the multilingual ones). */
#define TK_WP_MAX_VOCAB_BYTES ((size_t)32 << 20)
#define TK_WP_MAX_VOCAB_TOKENS ((int32_t)1 << 21)
/* max_input_chars_per_word is at most this. */
#define TK_WP_MAX_WORD_CHARS 65536

/* strip_accents: as BertTokenizer's strip_accents=None, False, True. */
#define TK_WP_ACCENTS_AUTO (-1) /* strip exactly when lowercasing */
#define TK_WP_ACCENTS_KEEP 0
#define TK_WP_ACCENTS_STRIP 1

typedef enum tk_wp_special {
    TK_WP_UNK = 0,
    TK_WP_CLS,
    TK_WP_SEP,
    TK_WP_PAD,
    TK_WP_MASK,
    TK_WP_N_SPECIAL
} tk_wp_special;

typedef struct tk_wp_options {
    bool do_lower_case;               /* default true, as BertTokenizer */
    int strip_accents;                /* TK_WP_ACCENTS_*; default AUTO */
    bool tokenize_chinese_chars;      /* default true */
    int32_t max_input_chars_per_word; /* in code points; default 100 */
    /* The special tokens' strings; NULL gives the default ([UNK] [CLS]
     * [SEP] [PAD] [MASK]). Copied at load. */
    const char *unk_token, *cls_token, *sep_token, *pad_token, *mask_token;
} tk_wp_options;

typedef struct tk_wp tk_wp;

/* BertTokenizer's defaults. */
tk_wp_options tk_wp_default_options(void);

/* Loads a vocab.txt held in memory: one token per line, the id of a token
 * its line number from 0. Lines end at "\n", "\r\n" or a lone "\r" (Python's
 * universal newlines), a last line without an end counts, an empty line is
 * the empty token, and a token on several lines keeps its last line number
 * for encoding (BertTokenizer's dict) while tk_wp_token still gives every
 * line's text. The text is copied; opts NULL means the defaults.
 * QIAO_ERR_FORMAT for invalid UTF-8, an empty vocabulary or one without the
 * unknown token; QIAO_ERR_INVALID_ARGUMENT for a bad option (an empty special
 * token string, max_input_chars_per_word outside 1..TK_WP_MAX_WORD_CHARS).
 * Free with tk_wp_free(). */
qiao_status tk_wp_load(const char *vocab, size_t len, const tk_wp_options *opts, tk_wp **out);
/* The same from a file (at most TK_WP_MAX_VOCAB_BYTES). */
qiao_status tk_wp_load_file(const char *path, const tk_wp_options *opts, tk_wp **out);
/* NULL is fine. */
void tk_wp_free(tk_wp *wp);

/* Lines of the vocabulary: every id is in [0, tk_wp_vocab_size). */
int32_t tk_wp_vocab_size(const tk_wp *wp);
/* The id of a special token, or -1 when its string is not in the
 * vocabulary (never for TK_WP_UNK, which loading requires). */
int32_t tk_wp_special_id(const tk_wp *wp, tk_wp_special which);
/* The id of token[0 .. len) as encoding gives it, or -1. */
int32_t tk_wp_token_id(const tk_wp *wp, const char *token, size_t len);
/* The text of line `id` of the vocabulary, NUL-terminated, borrowed from
 * wp; *len (may be NULL) gets its length. NULL for an id out of range. */
const char *tk_wp_token(const tk_wp *wp, int32_t id, size_t *len);

typedef struct tk_wp_encoding {
    int32_t *ids;     /* (count) */
    int64_t *offsets; /* (count, 2): token i came from bytes [offsets[2i], offsets[2i+1]) of the text */
    size_t count;
} tk_wp_encoding;

/* Encodes text[0 .. len) (need not be NUL-terminated). With add_special the
 * ids are BertTokenizer's encode(text): [CLS] pieces [SEP]; without, its
 * tokenize() as ids. max_tokens > 0 keeps at most that many ids, the special
 * tokens included (encode(text, truncation=True, max_length=max_tokens)), and
 * stops tokenizing there; it must be at least 2 with add_special (where
 * transformers, given max_length=2, refuses to remove every token and
 * returns the whole text, this gives [CLS] [SEP]).
 *
 * Offsets are byte ranges of the original text: a piece covers the
 * characters it was made from, including the accents stripped from them and
 * a whole composed or lowercased character; pieces made from one character
 * (a Hangul syllable decomposed when stripping accents) share its range, an
 * [UNK] covers its whole word, [CLS] and [SEP] are [0, 0).
 *
 * QIAO_ERR_FORMAT for invalid UTF-8; QIAO_ERR_TOO_LARGE over TK_WP_MAX_TEXT;
 * QIAO_ERR_INVALID_ARGUMENT for NULL arguments, a bad max_tokens, or
 * add_special with a vocabulary that lacks [CLS] or [SEP]. On success free
 * *out with tk_wp_encoding_free(); on failure *out is empty. */
qiao_status tk_wp_encode(const tk_wp *wp, const char *text, size_t len, bool add_special, size_t max_tokens,
                         tk_wp_encoding *out);
/* Frees the arrays and empties e; NULL and an empty encoding are fine. */
void tk_wp_encoding_free(tk_wp_encoding *e);

#endif
