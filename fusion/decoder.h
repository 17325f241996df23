/* fusion/decoder.h - a transformer decoder that writes text about a context
 * (a picture's tokens): the caption decoder.
 *
 *   ctx = y W_ctx^T + b_ctx (+ ctx_pos[0..Ty))     the context to width C
 *   x_0 = tok[ids] + pos[0..T)                     ids[0] is a language token
 * (BOS zh / BOS en) x_l+1 = xblock_l(x_l | ctx), causal fusion/cross.h, l < L
 *   logits = ln_f(x_L) out^T + out_b               out = tok when tied
 *
 * With ctx_positions > 0 each context token t gets a learned vector: where
 * in the picture's grid it lies, so that "on the left" can be read from
 * the keys instead of from whatever the picture tower kept of its own
 * positions (fuser.h says the same of the fuser). They start at the fixed
 * sin-cos code of the place, as the fuser's do.
 *
 * Training runs the whole sequence at once (teacher forcing: the target at
 * position t is ids[t+1]); generation runs one position at a time through a
 * KV cache (qf_decoder_cache): each block's self-attention keys and values
 * of the positions already written are kept, and the context's keys and
 * values are computed once per picture. A step gives the same logits as the
 * full forward over the same prefix, up to float summation order.
 *
 * Backward accumulates (nn.h): parameter gradients, and the context's
 * gradient when the caller passes a buffer (NULL for a frozen tower).
 * Activation gradients must be zero on entry.
 *
 * Not a public header: prefix qf_. */
#ifndef QIAO_FUSION_DECODER_H
#define QIAO_FUSION_DECODER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"
#include "fusion/cross.h"
#include "nn/nn.h"

#define QF_DECODER_MAX_LAYERS 12
#define QF_DECODER_MAX_VOCAB 1000000
#define QF_DECODER_MAX_LEN 4096

typedef struct qf_decoder_config {
    int64_t vocab;     /* V: the output classes (the tokenizer's pieces and the
                          specials) */
    int64_t width;     /* C */
    int64_t layers;    /* L, 1..QF_DECODER_MAX_LAYERS */
    int64_t heads;     /* H, C % H == 0 */
    int64_t mlp;       /* F */
    int64_t max_len;   /* positions, 1..QF_DECODER_MAX_LEN */
    int64_t ctx_width; /* the context tokens' width */
    bool tied;         /* the output projection is the token embedding */
    int64_t ctx_positions; /* learned context positions: 0 = none, else at most this many context tokens */
    int64_t places;        /* the caller's: 0 = the context is the picture's patches, else its G x G places
                              (fuser.h qf_places_forward); the decoder itself only sees ctx tokens */
} qf_decoder_config;

typedef struct qf_decoder_params {
    float *tok;                                  /* (V, C) */
    float *pos;                                  /* (max_len, C) */
    float *ctx_w, *ctx_b;                        /* (C, ctx_width), (C) */
    float *ctx_pos;                              /* (ctx_positions, C); NULL without them */
    qf_xblock_params blk[QF_DECODER_MAX_LAYERS]; /* causal */
    float *lnf_w, *lnf_b;                        /* (C) */
    float *out_w;                                /* (V, C); NULL when tied */
    float *out_b;                                /* (V) */
} qf_decoder_params;

typedef struct qf_decoder_acts {
    float *ctx; /* (B*Ty, C) */
    float *x;   /* (B*T, C) */
    qf_xblock_acts blk[QF_DECODER_MAX_LAYERS];
    float *lnf, *lnf_mean, *lnf_rstd; /* (B*T, C), (B*T), (B*T) */
    float *logits;                    /* (B*T, V) */
    float *dctx;                      /* (B*Ty, C) the blocks' context gradient (backward only) */
    float *flow0, *flow1;             /* (B*T, C) the gradient between blocks (backward only) */
} qf_decoder_acts;

/* QIAO_ERR_INVALID_ARGUMENT (FORMAT when read from a file is the caller's
 * business) naming what is out of range. */
qiao_status qf_decoder_check(const qf_decoder_config *cfg);
/* Parameters "<prefix>tok", "<prefix>pos", "<prefix>ctx.weight",
 * "<prefix>ctx.bias", "<prefix>ctx.pos" (with context positions),
 * "<prefix>blocks.<l>.*" (cross.h), "<prefix>ln_f.*", "<prefix>out.weight"
 * (untied only), "<prefix>out.bias"; bound at field_base +
 * offsetof(qf_decoder_params, ...). */
qiao_status qf_decoder_describe(qc_table *tab, const char *prefix, const qf_decoder_config *cfg, size_t field_base);
/* Activations for B sequences of T positions reading Ty context tokens. */
qiao_status qf_decoder_describe_acts(qc_table *tab, const char *prefix, const qf_decoder_config *cfg, int64_t B,
                                     int64_t T, int64_t Ty, size_t field_base);

/* ids (B, T) in [0, V), T <= max_len; y (B, Ty, ctx_width); y_mask (B, Ty)
 * or NULL -> a->logits (B, T, V). The caller checks the ids
 * (qf_decoder_ids_check). */
void qf_decoder_forward(const qb_exec *ex, qf_decoder_acts *a, const qf_decoder_params *p, const int32_t *ids,
                        const float *y, const uint8_t *y_mask, const qf_decoder_config *cfg, int64_t B, int64_t T,
                        int64_t Ty);
/* dlogits (B, T, V) -> g accumulates, dy (B, Ty, ctx_width) accumulates
 * unless NULL; da zero on entry. */
void qf_decoder_backward(const qb_exec *ex, float *dy, qf_decoder_params *g, qf_decoder_acts *da, const float *dlogits,
                         const qf_decoder_acts *a, const qf_decoder_params *p, const int32_t *ids, const float *y,
                         const qf_decoder_config *cfg, int64_t B, int64_t T, int64_t Ty);
/* QIAO_ERR_INVALID_ARGUMENT naming the first id outside [0, V). */
qiao_status qf_decoder_ids_check(const qf_decoder_config *cfg, const int32_t *ids, int64_t n);

/* ---- generation: the KV cache ------------------------------------------- */

typedef struct qf_decoder_cache {
    int64_t B, T_max, Ty, len;        /* rows, positions it holds, context tokens, positions written */
    float *k[QF_DECODER_MAX_LAYERS];  /* (B, T_max, C) self-attention keys */
    float *v[QF_DECODER_MAX_LAYERS];  /* (B, T_max, C) */
    float *ck[QF_DECODER_MAX_LAYERS]; /* (B, Ty, C) the context's keys, per block */
    float *cv[QF_DECODER_MAX_LAYERS]; /* (B, Ty, C) */
    uint8_t *ctx_mask;                /* (B, Ty) 1 = a real context token */
    /* one position's scratch */
    float *x, *ln, *q, *kn, *vn, *atty, *tmp; /* (B, C) each */
    float *ctx, *lnc;                         /* (B*Ty, C) */
    float *fc, *fc_gelu;                      /* (B, F) */
    float *logits;                            /* (B, V) */
    float *att;                               /* (B, H, max(T_max, Ty)) attention probabilities */
    uint8_t *self_mask;                       /* (B, T_max) 1 for the positions written */
    float *gather;                            /* (B, max(T_max, Ty), C) reorder scratch */
    float *mean, *rstd;                       /* (B*max(1, Ty)) */
} qf_decoder_cache;

/* A cache for B rows of up to T_max positions reading Ty context tokens. */
qiao_status qf_decoder_cache_init(qf_decoder_cache *c, const qf_decoder_config *cfg, int64_t B, int64_t T_max,
                                  int64_t Ty);
void qf_decoder_cache_free(qf_decoder_cache *c);
/* Starts B sequences: y (B, Ty, ctx_width) and y_mask (B, Ty) or NULL give
 * each block's context keys and values; len = 0. */
void qf_decoder_cache_start(const qb_exec *ex, qf_decoder_cache *c, const qf_decoder_params *p, const float *y,
                            const uint8_t *y_mask, const qf_decoder_config *cfg);
/* Writes position c->len for every row: row b continues the sequence that
 * row parents[b] held before this step (beam search reorders; NULL keeps
 * each row's own), reads token ids[b], and returns the next position's
 * logits (B, V) in *logits (inside the cache). QIAO_ERR_INVALID_ARGUMENT
 * when the cache is full, an id is out of range or a parent is not a row. */
qiao_status qf_decoder_step(const qb_exec *ex, qf_decoder_cache *c, const qf_decoder_params *p, const int32_t *ids,
                            const int64_t *parents, const qf_decoder_config *cfg, const float **logits);

#endif /* QIAO_FUSION_DECODER_H */
