/* models/embed.h - from raw inputs to embeddings: preparing encoder batches
 * (tokenize, image patches, log-mel) and running an encoder on them. The one
 * code path that training, evaluation, the public embedding API and the
 * benchmarks share, so an embedding never depends on who computed it (up to
 * float rounding: the public API multiplies by weights packed once,
 * qmod_pack_weights below, in another summation order than OpenBLAS; the
 * two differ by about 1e-7).
 *
 * Two steps:
 *   1. prepare: qmod_batch_text / _images / _audio turn n raw items into a
 *      qmod_batch (host memory, padded, with masks). Pure functions of the
 *      model's config and tokenizer; safe on any thread (the loader runs them
 *      on its workers).
 *   2. run: a qmod_work holds one modality's activations (and, for training,
 *      their gradients) for up to B_max items of up to T_max tokens or
 *      frames; qmod_forward fills (B, D) L2-normalized embeddings,
 *      qmod_backward accumulates parameter gradients. A qmod_work belongs to
 *      one thread at a time; the model's parameters are only read.
 *
 * Not a public header: prefix qmod_. */
#ifndef QIAO_MODELS_EMBED_H
#define QIAO_MODELS_EMBED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "models/model.h"

/* "text", "image", "audio". */
const char *qmod_modality_name(qmod_modality mod);

/* One modality's encoder input for B items, host memory, owned by the batch.
 *   text:  T = tokens after padding (<= text.max_tokens; longer texts are
 *          truncated): ids (B, T), char_ids (B, T, K), tags (B, T), mask (B, T)
 *   image: T = P patches: patches (B, P, patch_dim)
 *   audio: T = frames after padding (<= audio.max_frames; longer clips keep
 *          their first max_frames): mel (B, T, n_mels), mask (B, T) */
typedef struct qmod_batch {
    qmod_modality mod;
    int64_t B, T;
    int32_t *ids, *char_ids;
    uint8_t *tags;
    uint8_t *mask;
    float *patches;
    float *mel;
    int64_t *lengths;   /* (B) real tokens / frames per item (P for images) */
    int64_t *offsets;   /* text: (B, T, 2) the bytes [start, end) of its text each token came from, -1 at
                           padding (an entity tagger maps tokens back to the text); NULL otherwise */
} qmod_batch;

/* Frees the arrays and clears the struct. Accepts NULL and a cleared batch. */
void qmod_batch_free(qmod_batch *b);

/* Tokenizes n texts (NUL-terminated UTF-8) with the model's tokenizer
 * (QIAO_ERR_INVALID_ARGUMENT when the model has none). Invalid UTF-8 is
 * QIAO_ERR_FORMAT naming the text's index. n >= 1. */
qiao_status qmod_batch_text(const qmod_model *m, const char *const *texts, size_t n, qmod_batch *out);

/* Preprocesses n decoded images (centre crop to image_size, bicubic, CLIP
 * mean/std) and cuts them into patches. */
qiao_status qmod_batch_images(const qmod_model *m, const qiao_image *const *imgs, size_t n, qmod_batch *out);
/* Floats of one image's patches (P * patch_dim), and the same preprocessing
 * for one image into `patches` (so a loader can fill a batch row by row). */
size_t qmod_image_floats(const qmod_model *m);
qiao_status qmod_image_patches(const qmod_model *m, const qiao_image *img, float *patches);

/* Log-mel features of n clips (each at 16 kHz, as qiao_audio_decode_* give
 * by default; another rate is QIAO_ERR_INVALID_ARGUMENT), padded to the
 * longest (at most max_frames). A clip with no samples is
 * QIAO_ERR_INVALID_ARGUMENT naming its index. */
qiao_status qmod_batch_audio(const qmod_model *m, const qiao_audio *const *clips, size_t n, qmod_batch *out);
/* The same from precomputed log-mel matrices: mels[i] is (frames[i], n_mels). */
qiao_status qmod_batch_mels(const qmod_model *m, const float *const *mels, const int64_t *frames, size_t n,
                            qmod_batch *out);

/* Rows `rows[0..n)` of src as a new batch, padded to their own longest
 * (T = the largest of their lengths, at least 1). Training runs a batch's
 * clips in chunks of similar length through it: a chunk of short clips no
 * longer pays for the batch's longest. */
qiao_status qmod_batch_select(const qmod_model *m, const qmod_batch *src, const int64_t *rows, size_t n, qmod_batch *out);

/* Activations of one modality for up to B_max items of up to T_max tokens
 * (text) or frames (audio); images always have P. With `train` the
 * activation-gradient arena exists too. */
typedef struct qmod_work {
    qmod_modality mod;
    int64_t B_max, T_max;
    bool train;
    qc_table at;
    qc_arena acts, dacts;
    union {
        qe_text_acts text;
        qe_image_acts image;
        qe_audio_acts audio;
    } a, da;
} qmod_work;

/* Sizes and allocates a workspace (T_max <= 0 means the config's maximum).
 * QIAO_ERR_OUT_OF_MEMORY when the arenas cannot be allocated. */
qiao_status qmod_work_init(qmod_work *w, const qmod_model *m, qmod_modality mod, int64_t B_max, int64_t T_max,
                           bool train);
/* Grows the workspace if (B, T) does not fit; keeps it otherwise. */
qiao_status qmod_work_reserve(qmod_work *w, const qmod_model *m, int64_t B, int64_t T);
/* Accepts NULL and a cleared workspace. */
void qmod_work_free(qmod_work *w);

/* Runs the tower of b->mod over the batch: checks the batch against the
 * config (ids, sizes; QIAO_ERR_INVALID_ARGUMENT naming what is wrong) and
 * the workspace (b->B <= B_max, b->T <= T_max), then sets *emb to the (B, D)
 * L2-normalized embeddings inside the workspace (valid until its next use). */
qiao_status qmod_forward(const qb_exec *ex, const qmod_model *m, qmod_work *w, const qmod_batch *b,
                         const float **emb);
/* After qmod_forward: the tower's token sequence after its trunk's final
 * norm, for heads that attend over it (cross-modal attention, a caption
 * decoder). x is (B, T, C) inside the workspace (valid until its next use);
 * T is the trunk's token count for the batch (audio: after the stem's
 * strides); mask (B, T) marks real tokens, NULL when all are (images). */
typedef struct qmod_token_seq {
    const float *x;
    const uint8_t *mask;
    int64_t B, T, C;
} qmod_token_seq;
qiao_status qmod_tokens(const qmod_model *m, const qmod_work *w, const qmod_batch *b, qmod_token_seq *out);

/* After qmod_forward on the same batch: demb (B, D) -> parameter gradients
 * accumulate into `grads` (a qmod_params bound to a gradient arena laid out
 * by m->tab). Clears the activation-gradient arena itself first. */
void qmod_backward(const qb_exec *ex, const qmod_model *m, qmod_params *grads, qmod_work *w, const qmod_batch *b,
                   const float *demb);
/* The same with a gradient at the token sequence too: dtokens (B, T, C) as
 * qmod_tokens gives it, or NULL; demb may be NULL when only the tokens are
 * used. */
void qmod_backward_at(const qb_exec *ex, const qmod_model *m, qmod_params *grads, qmod_work *w, const qmod_batch *b,
                      const float *demb, const float *dtokens);

/* Convenience for inference: prepares and embeds n items into out (n, D),
 * growing *w as needed (a cleared qmod_work on first use). qmod_embed takes
 * the items of its tower's kind (const char * texts, const qiao_image *,
 * const qiao_audio *); the typed three call it. */
qiao_status qmod_embed(const qb_exec *ex, const qmod_model *m, qmod_work *w, qmod_modality mod,
                       const void *const *items, size_t n, float *out);
qiao_status qmod_embed_texts(const qb_exec *ex, const qmod_model *m, qmod_work *w, const char *const *texts,
                             size_t n, float *out);
qiao_status qmod_embed_images(const qb_exec *ex, const qmod_model *m, qmod_work *w, const qiao_image *const *imgs,
                              size_t n, float *out);
qiao_status qmod_embed_audio(const qb_exec *ex, const qmod_model *m, qmod_work *w, const qiao_audio *const *clips,
                             size_t n, float *out);

/* Packs the weights every encoder's forward multiplies as inp W^T (each
 * linear's and conv's ".weight", not the embedding tables) for the CPU's
 * packed GEMM (sdk/backend/cpu/gemm_packed.c), so a qb_exec with
 * ex.packed = *out skips OpenBLAS's per-call packing. Only for a model whose
 * parameters no longer change: the set is a copy (about the size of the
 * model's f32 parameters again; qb_packed_set_bytes), and a stale copy
 * would silently compute with the old weights. Sets *out = NULL, with
 * QIAO_OK, on a CPU without AVX-512F, where the set would never be used.
 * Free with qb_packed_set_free(). Embeddings with and without the set differ
 * only by float rounding (another summation order). */
qiao_status qmod_pack_weights(const qmod_model *m, qb_packed_set **out);
/* The same weights for f32 (as qmod_pack_weights), bf16 or int8 inference
 * (qb_packed_set_new_prec, sdk/backend/cpu/cpu.h): a bf16 or int8 set is
 * built on any CPU (its generic path needs no particular ISA) and holds the
 * f32 panels too where the f32 kernel runs, for the calls low precision
 * does not take (a column range of a weight). */
qiao_status qmod_pack_weights_prec(const qmod_model *m, qb_precision prec, qb_packed_set **out);

#endif /* QIAO_MODELS_EMBED_H */
