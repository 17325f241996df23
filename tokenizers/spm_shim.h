/* tokenizers/spm_shim.h - a thin C interface to SentencePiece (C++).
 *
 * spm_shim.cpp is the only C++ in qiao. Every entry point catches every
 * exception at the boundary and turns it into a return code plus a message
 * written into the caller's buffer, so no exception ever crosses into C.
 *
 * A loaded model is immutable: spm_encode() may run on many threads at once
 * with one model (SentencePieceProcessor::Encode is const and keeps no state
 * between calls). Not a public header. */
#ifndef QIAO_SPM_SHIM_H
#define QIAO_SPM_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum spm_rc {
    SPM_OK = 0,
    SPM_ERR_FORMAT = 1,   /* the model bytes or the training data are rejected */
    SPM_ERR_NOMEM = 2,
    SPM_ERR_INVALID = 3,  /* bad argument */
    SPM_ERR_INTERNAL = 4  /* anything else SentencePiece threw */
} spm_rc;

typedef struct spm_model spm_model;

/* One piece of an encoded text: its id and its byte span [begin, end) in the
 * text given to spm_encode(). Byte-fallback pieces after the first of a
 * character may have an empty span. */
typedef struct spm_piece {
    int32_t id;
    uint32_t begin, end;
} spm_piece;

/* Parses a serialized ModelProto (the bytes are copied). */
spm_rc spm_load(const void *data, size_t size, spm_model **out, char *err, size_t errcap);
void spm_free(spm_model *m);
int32_t spm_vocab_size(const spm_model *m);
/* The piece string of `id` ("▁the", "<0xE4>"...), owned by the model; NULL when
 * out of range. */
const char *spm_piece_str(const spm_model *m, int32_t id);

/* What a piece is, as SentencePiece's model says (not guessed from its
 * spelling: a normal piece may be spelled "<0x41>" too). */
typedef enum spm_kind {
    SPM_PIECE_NORMAL = 0,   /* text; "\u2581" stands for a space */
    SPM_PIECE_UNKNOWN = 1,  /* <unk> */
    SPM_PIECE_CONTROL = 2,  /* <pad>, <s>, </s>: no text */
    SPM_PIECE_BYTE = 3,     /* byte fallback "<0xE4>": one raw byte of UTF-8 */
    SPM_PIECE_UNUSED = 4,   /* in the vocabulary but never produced by encoding */
    SPM_PIECE_INVALID = -1  /* id out of range (or no model) */
} spm_kind;
spm_kind spm_piece_kind(const spm_model *m, int32_t id);

/* Reusable working memory for spm_encode(): keeping SentencePiece's result
 * message between calls saves re-allocating it for every word. One scratch
 * per thread at a time (it is mutable); spm_scratch_new() returns NULL when
 * out of memory; spm_scratch_free() accepts NULL. */
typedef struct spm_scratch spm_scratch;
spm_scratch *spm_scratch_new(void);
void spm_scratch_free(spm_scratch *s);

/* Encodes text[0 .. len) into pieces appended to *buf (grown with realloc;
 * *cap is its capacity in pieces, *n the count written so far, updated).
 * `scratch` may be NULL (a temporary one is used). The caller frees *buf
 * with free(). */
spm_rc spm_encode(const spm_model *m, spm_scratch *scratch, const char *text, size_t len, spm_piece **buf,
                  size_t *cap, size_t *n, char *err, size_t errcap);

typedef struct spm_train_opts {
    int64_t vocab_size;
    double character_coverage;
    int n_threads;
} spm_train_opts;

/* Trains a BPE model with SentencePiece's own normalization off (identity:
 * the caller normalized already), no dummy prefix, whitespace kept as is,
 * byte fallback on, and ids <pad>=0 <unk>=1 <s>=2 </s>=3. The sentences are
 * text[off[i] .. off[i+1]) for i < n. On success *model (malloc'd, caller
 * frees) holds the serialized ModelProto. */
spm_rc spm_train(const char *text, const size_t *off, size_t n, const spm_train_opts *opts,
                 char **model, size_t *model_len, char *err, size_t errcap);

#ifdef __cplusplus
}
#endif

#endif
