/* tokenizers/tokenizer.h - internals of the hybrid character+word
 * tokenizer, shared by its files, the tests and the model writers.
 *
 * Pipeline: ICU normalization (normalize.c) -> ICU word segmentation ->
 * SentencePiece BPE pieces inside each word (spm_shim.cpp) -> per piece the
 * ids of its first K characters and a B/M/E/S word-position tag
 * (tokenizer.c). Training is in train.c, the way back from piece ids to
 * text in detokenize.c.
 *
 * Not a public header: prefix tk_. */
#ifndef QIAO_TOKENIZER_INTERNAL_H
#define QIAO_TOKENIZER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "core/safetensors.h"
#include "tokenizers/clip_bpe.h"
#include "tokenizers/spm_shim.h"
#include "tokenizers/wordpiece.h"

#define TK_TENSOR_SPM "tokenizer.spm"
#define TK_TENSOR_CHARS "tokenizer.chars"
#define TK_TENSOR_VOCAB "tokenizer.vocab" /* a wordpiece kind's vocab.txt, a bpe kind's vocab.json */
#define TK_TENSOR_MERGES "tokenizer.merges" /* a bpe kind's merges.txt */
#define TK_META_CONFIG "tokenizer.config"
#define TK_VERSION 1
#define TK_MAX_K 64
/* ICU locale of the word break iterator; its CJK dictionary segments Chinese. */
#define TK_WORD_LOCALE "zh"

/* ---- Normalization (normalize.c) ----------------------------------------- */

typedef struct tk_norm_opts {
    bool case_fold;        /* Unicode default case folding after NFKC */
    bool t2s;              /* ICU "Traditional-Simplified" transliteration */
    bool replace_invalid;  /* invalid UTF-8 -> U+FFFD instead of QIAO_ERR_FORMAT */
} tk_norm_opts;

/* Normalized text: NFKC, optional case folding and T->S, every run of
 * Unicode white space / control characters made one ' ', trimmed. Byte i of
 * `s` came from bytes [ostart[i], oend[i]) of the original text. */
typedef struct tk_normalized {
    char *s;            /* (len + 1), NUL-terminated */
    size_t len;
    int64_t *ostart;    /* (len) */
    int64_t *oend;      /* (len) */
} tk_normalized;

/* Normalizes text[0 .. len). `what` names the text in messages ("text",
 * "corpus.txt line 3"). Invalid UTF-8 is QIAO_ERR_FORMAT naming the byte
 * offset unless opts->replace_invalid. Free with tk_normalized_free(). */
qiao_status tk_normalize(const char *text, size_t len, const tk_norm_opts *opts, const char *what,
                         tk_normalized *out);
void tk_normalized_free(tk_normalized *n);

/* Decodes one UTF-8 code point at s[0 .. len) (len > 0). Returns its length
 * and sets *cp; on an ill-formed sequence returns the length of its maximal
 * invalid prefix (>= 1, as Unicode's U+FFFD substitution practice counts)
 * and sets *cp = -1. */
size_t tk_utf8_decode(const unsigned char *s, size_t len, int32_t *cp);

/* Unicode properties (ICU) for code that splits text without the word
 * iterator, such as the caption metrics' tokenization: punctuation is
 * general category P*, ideographic is the Ideographic property (CJK
 * characters). Both are false for cp < 0. */
bool tk_is_punct(int32_t cp);
bool tk_is_ideographic(int32_t cp);

/* ---- Word units ---------------------------------------------------------- */

/* Calls fn(begin, end, user) for each word unit of normalized text s[0..len):
 * an ICU word segment together with the single space before it, if any.
 * fn returns a status; the first failure stops the walk. */
typedef qiao_status (*tk_unit_fn)(size_t begin, size_t end, void *user);
qiao_status tk_word_units(const char *s, size_t len, tk_unit_fn fn, void *user);

/* ---- The tokenizer ------------------------------------------------------- */

/* Open-addressing map from code point to char id. */
typedef struct tk_charmap {
    uint32_t *keys;     /* code point + 1; 0 = empty slot */
    int32_t *vals;
    size_t cap;         /* power of two */
} tk_charmap;

/* What a tokenizer is (tokenizer.config "kind"). */
typedef enum tk_kind {
    TK_KIND_HYBRID = 0, /* qiao's own: ICU words, SentencePiece pieces, characters and tags */
    TK_KIND_SPM = 1,    /* an imported model's SentencePiece model on the raw text (XLM-R, e5): ids
                           shifted by id_offset, the specials around them; no characters, no tags */
    TK_KIND_WORDPIECE = 2, /* BERT's WordPiece (wordpiece.h) on its vocab.txt: [CLS] pieces [SEP] */
    TK_KIND_BPE = 3        /* OpenAI CLIP's byte-level BPE (clip_bpe.h) on its vocab.json and merges.txt:
                              <|startoftext|> pieces <|endoftext|> */
} tk_kind;

/* The special ids of an imported tokenizer (-1: the model has none). */
typedef struct tk_specials {
    int32_t bos, eos, pad, unk, mask;
    bool add_bos, add_eos;  /* put around every text */
} tk_specials;

struct qiao_tokenizer {
    tk_kind kind;
    int64_t vocab_size;     /* spm kind: the model's ids (pieces + offset + specials after them) */
    int32_t id_offset;      /* spm kind: a piece's id is its SentencePiece id + this */
    tk_specials sp;
    tk_wp *wp;              /* wordpiece kind */
    tk_bpe *bpe;            /* bpe kind (keeps its vocab.json and merges.txt to write them back) */
    tk_wp_options wp_opts;
    char *vocab_text;       /* wordpiece kind: the tokenizer.vocab tensor as stored */
    size_t vocab_len;
    spm_model *spm;         /* hybrid and spm kinds */
    char *spm_bytes;        /* serialized ModelProto, kept to write it back out */
    size_t spm_len;
    char *chars_text;       /* the tokenizer.chars tensor as stored */
    size_t chars_len;
    char **char_strs;       /* (n_chars) pointers into char_buf; id order */
    char *char_buf;
    int32_t n_chars;        /* including <pad> and <unk> */
    tk_charmap charmap;
    char *config_json;      /* the tokenizer.config metadata as stored */
    int k;
    tk_norm_opts norm;      /* replace_invalid unused here: it is per call */
};

/* ---- Detokenizing (detokenize.c) ---------------------------------------- */

/* Piece ids back to UTF-8 text: *out (malloc'd, NUL-terminated, the caller
 * frees it) and *out_len (may be NULL). "▁" is a space; runs of byte pieces
 * are read as UTF-8, each ill-formed part one U+FFFD; <unk> is U+FFFD;
 * <pad>, <s> and </s> give no text. exact_spaces keeps every space where
 * the pieces put it (the normalized text comes back byte for byte);
 * otherwise written-text spacing drops some (qiao.h, qiao_detokenize).
 * `partial` says more ids will follow (streaming): an incomplete UTF-8
 * sequence of byte pieces at the end is left out instead of becoming
 * U+FFFD, so each partial text is a prefix of the text of more ids.
 * An id out of range is QIAO_ERR_INVALID_ARGUMENT, naming `what`. */
qiao_status tk_detokenize(const qiao_tokenizer *tok, const int32_t *ids, size_t count, bool exact_spaces, bool partial,
                          const char *what, char **out, size_t *out_len);

/* ---- Vocabulary pruning (spm_prune.c) ------------------------------------ */

/* The number of pieces of a serialized SentencePiece ModelProto, read from
 * protobuf's wire format; QIAO_ERR_FORMAT naming `what` when the bytes are
 * not a well-formed message. */
qiao_status tk_spm_proto_count(const void *proto, size_t len, const char *what, size_t *n_pieces);

/* A copy of the ModelProto holding only the pieces i with keep[i] (of
 * n_pieces, which must be the model's count: else QIAO_ERR_INVALID_ARGUMENT),
 * in their order, every other field byte for byte but self_test_data
 * (dropped: it may expect pieces that are gone). Pieces that are not NORMAL
 * (<unk>, control, byte, unused, user-defined) are always kept, and keep[]
 * is set for them: on return it says what the copy holds. *out is malloc'd
 * (the caller frees it). */
qiao_status tk_spm_proto_prune(const void *proto, size_t len, bool *keep, size_t n_pieces, const char *what,
                               char **out, size_t *out_len);

/* An spm-kind tokenizer with fewer pieces, as tk_spm_prune gives it. */
typedef struct tk_pruned {
    char *spm;          /* (spm_len) the new tokenizer.spm */
    size_t spm_len;
    char *config;       /* the new tokenizer.config: vocab_size and the special ids renumbered */
    int64_t pieces;     /* SentencePiece pieces kept */
    int64_t vocab_size; /* the model's ids: the old vocab_size less the pieces dropped */
    int64_t *old_id;    /* (vocab_size) each new id's old id: the embedding row it takes */
} tk_pruned;

/* Prunes an spm-kind tokenizer to the SentencePiece pieces i with keep[i]
 * (keep has spm_vocab_size(tok->spm) entries). The pieces the special ids
 * name and those tk_spm_proto_prune always keeps stay too; keep[] says on
 * return which pieces the new model holds. Ids below the pieces (XLM-R's
 * <s> <pad> </s> <unk>) keep their numbers, ids after them (<mask>) move
 * down with the pieces' end, and the kept pieces keep their order, so a
 * text made of kept pieces gets the same pieces and each its old row.
 * The new model is loaded once to check it names the kept pieces as the
 * old one did. QIAO_ERR_UNSUPPORTED for another kind of tokenizer. Free
 * *out with tk_pruned_free (which accepts a zeroed or freed one). */
qiao_status tk_spm_prune(const qiao_tokenizer *tok, bool *keep, tk_pruned *out);
void tk_pruned_free(tk_pruned *p);

/* Builds a tokenizer from a validated file (a model file holding the
 * tokenizer tensors, or a tokenizer file). Everything is copied: the file
 * may be closed afterwards. */
qiao_status tk_tokenizer_from_st(const qc_st_file *f, qiao_tokenizer **out);

/* The tensors (two for the hybrid kind, one for the others) and the metadata pair
 * that store `tok`, for writing a model file that carries its tokenizer;
 * returns how many tensors. Borrowed from tok. */
size_t tk_tokenizer_entries(const qiao_tokenizer *tok, qc_st_entry entries[2], qc_st_kv *meta);

#endif
