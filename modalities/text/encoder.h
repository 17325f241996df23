/* modalities/text/encoder.h - the text encoder: the hybrid character + word
 * (piece) embedding front end followed by the shared encoder trunk.
 *
 * Per token n of a tokenizer batch (N = B*T tokens):
 *   e_piece = piece_emb[id]                                   (C)
 *   e_char  = char_proj(concat_w maxpool_t gelu(conv_w(char_emb[chars])))
 *             conv_w: width-w conv1d over the K character slots (no padding),
 *             maxpool over the windows that start on a real character;
 *             a token with no real character pools to zeros      (C)
 *   e       = g e_piece + (1 - g) e_char,  g = sigmoid(W [e_piece; e_char] + c)
 *   x       = e + tag_emb[tag]
 * then nn_trunk (mask) -> emb (B, D).
 *
 * With mix = "piece" (the ablation of issue 5) e = e_piece and the char
 * embedding, convolutions, projection and gate are not in the table at all,
 * so a model file of that kind has no char tensors.
 *
 * With arch = "bert" the encoder is an imported BERT-family one (BERT,
 * XLM-RoBERTa, Chinese-CLIP's text tower; issue 17): x = piece_emb[id] +
 * type_emb[0] (one segment), then the trunk in its post-norm form (a
 * LayerNorm on x + pos, post-norm blocks, no ln_f, eps from the config,
 * the [CLS] vector or the mean, a projection or none; nn.h). With arch =
 * "clip" it is OpenAI CLIP's text tower: x = piece_emb[id], causal
 * pre-norm blocks with quick GELU and ln_f, read at the last real token
 * (the end of text), projected without bias. No characters, no tags: the
 * tokenizer's own pieces are all they read. */
#ifndef QIAO_MODALITIES_TEXT_ENCODER_H
#define QIAO_MODALITIES_TEXT_ENCODER_H

#include <cjson/cJSON.h>

#include "core/core.h"
#include "nn/nn.h"

#define QE_TEXT_MAX_KERNELS 8
#define QE_TEXT_N_TAGS 5 /* QIAO_TAG_PAD, B, M, E, S */

/* How a token's piece and character embeddings combine (config "mix"; its
 * old name "fusion" is still read). */
typedef enum qe_text_mix {
    QE_TEXT_MIX_GATE = 0, /* gated mix of piece and char embeddings (the model) */
    QE_TEXT_MIX_PIECE = 1 /* pieces only (ablation) */
} qe_text_mix;

/* The front end and trunk form (config "arch"). */
typedef enum qe_text_arch {
    QE_TEXT_ARCH_HYBRID = 0, /* qiao's own: characters, pieces, tags, pre-norm trunk */
    QE_TEXT_ARCH_BERT = 1,   /* an imported BERT-family encoder */
    QE_TEXT_ARCH_CLIP = 2    /* OpenAI CLIP's text tower */
} qe_text_arch;

typedef struct qe_text_config {
    qe_text_arch arch;
    int64_t type_vocab;                      /* bert: token-type rows (only row 0 is read) */
    int64_t vocab;                           /* V: piece vocabulary, equal to the tokenizer's */
    int64_t char_vocab;                      /* CV: characters incl. pad (0) and unknown (1) */
    int64_t k;                               /* K: character slots per token, equal to the tokenizer's */
    int64_t char_dim;                        /* Dc: character embedding width */
    int64_t n_kernels;                       /* nk: number of conv widths */
    int64_t char_kernels[QE_TEXT_MAX_KERNELS]; /* conv widths, each in [1, K] */
    int64_t char_channels;                   /* Cc: conv output channels per width */
    qe_text_mix mix;
    nn_trunk_dims trunk;                     /* C, F, H, L, max_T, D; B and T are set per batch */
} qe_text_config;

/* Parses the "text" object of a model config (models/configs/tiny.json, base.json):
 * vocab, char_vocab, k, char_dim, char_kernels (list), char_channels, width,
 * layers, heads, mlp, max_tokens (all required integers) and mix
 * ("gate" or "piece"; optional, default "gate"; the old key "fusion" is
 * read too, and must agree when both are given). embed_dim is the top-level
 * output width. Returns QIAO_OK and fills *cfg, or QIAO_ERR_FORMAT naming
 * the key that is missing, of the wrong type or out of range.
 * "arch": "bert" takes instead vocab, type_vocab, width, layers, heads, mlp,
 * max_tokens (required), eps (default 1e-12), pool ("mean" default or
 * "first") and proj ("none" default, then embed_dim must be the width;
 * "bias" or "nobias"), act ("gelu" default or "quick_gelu").
 * "arch": "clip" takes vocab, width, layers, heads, mlp, max_tokens
 * (required), eps (default 1e-5), pool ("last", the only one), proj
 * ("nobias" default, "bias" or "none") and act ("quick_gelu" default or
 * "gelu"). */
qiao_status qe_text_config_from_json(const cJSON *obj, int64_t embed_dim, qe_text_config *cfg);

typedef struct qe_text_params {
    float *piece_emb;                        /* (V, C) */
    float *char_emb;                         /* (CV, Dc) */
    float *conv_w[QE_TEXT_MAX_KERNELS];      /* (Cc, Dc, w) */
    float *conv_b[QE_TEXT_MAX_KERNELS];      /* (Cc) */
    float *char_proj_w, *char_proj_b;        /* (C, nk*Cc), (C) */
    float *gate_w, *gate_b;                  /* (C, 2C), (C) */
    float *tag_emb;                          /* (5, C) hybrid */
    float *type_emb;                         /* (type_vocab, C) bert */
    nn_trunk_params trunk;
} qe_text_params;

/* Integer buffers (argmax, masks, tag ids) live in the float arena; the
 * fields are float* because the tensor table binds float* fields, and are
 * reinterpreted where used (same size and alignment). */
typedef struct qe_text_acts {
    float *piece;                            /* (N, C) e_piece */
    float *chars;                            /* (N, K, Dc) character embeddings */
    float *conv[QE_TEXT_MAX_KERNELS];        /* (N, K-w+1, Cc) before GELU */
    float *conv_gelu[QE_TEXT_MAX_KERNELS];   /* (N, K-w+1, Cc) */
    float *pool[QE_TEXT_MAX_KERNELS];        /* (N, Cc) masked max */
    float *pool_arg[QE_TEXT_MAX_KERNELS];    /* (N, Cc) int32 argmax */
    float *char_mask;                        /* uint8 (N, sum_w (K-w+1)): window starts on a real char */
    float *char_out;                         /* (N, C) e_char */
    float *gate;                             /* (N, C) g; the backward's scratch in the gradient buffer */
    float *fused;                            /* (N, C) e */
    float *tag_ids;                          /* (N) int32 */
    float *x;                                /* (N, C) trunk input */
    nn_trunk_acts trunk;
} qe_text_acts;

/* One batch as the tokenizer gives it (qiao_token_batch): ids (B, T),
 * char_ids (B, T, K), tags (B, T), mask (B, T). A bert encoder reads ids
 * and mask only (K = 0; char_ids and tags may be NULL). */
typedef struct qe_text_input {
    int64_t B, T, K;
    const int32_t *ids;
    const int32_t *char_ids;
    const uint8_t *tags;
    const uint8_t *mask;
} qe_text_input;

/* Checks an input against the config before forward: K equal to cfg->k,
 * 1 <= T <= max_tokens, every id in [0, V), char id in [0, CV), tag in
 * [0, 5). Returns QIAO_OK or QIAO_ERR_INVALID_ARGUMENT naming the first bad
 * item. forward itself does not check (it is void). */
qiao_status qe_text_check_input(const qe_text_input *in, const qe_text_config *cfg);

/* Appends the parameters as "<prefix>piece_emb.weight", "<prefix>char_emb.weight",
 * "<prefix>char_conv.<i>.weight|bias", "<prefix>char_proj.weight|bias",
 * "<prefix>gate.weight|bias", "<prefix>tag_emb.weight", "<prefix>trunk.…",
 * bound at field_base + offsetof(qe_text_params, …). */
qiao_status qe_text_describe(qc_table *tab, const char *prefix, const qe_text_config *cfg, size_t field_base);
/* Appends the activations for a batch of B x T tokens. */
qiao_status qe_text_describe_acts(qc_table *tab, const char *prefix, const qe_text_config *cfg, int64_t B,
                                  int64_t T, size_t field_base);

/* in -> a->trunk.emb (B, D). The window masks and tag ids are derived from
 * `in` with host loops, so for now this needs host-addressable memory (the
 * CPU backend); a device backend needs a small kernel for them. */
void qe_text_forward(const qb_exec *ex, qe_text_acts *a, const qe_text_params *p, const qe_text_input *in,
                     const qe_text_config *cfg);
/* demb (B, D) and/or dtokens (B*T, C), gradients at the embedding and at
 * a->trunk.lnf (either may be NULL; nn_trunk_backward) -> parameter gradients
 * g (accumulated); da has the layout of the activations and must be zero on
 * entry. */
void qe_text_backward(const qb_exec *ex, qe_text_params *g, qe_text_acts *da, const float *demb, const float *dtokens,
                      const qe_text_acts *a, const qe_text_params *p, const qe_text_input *in,
                      const qe_text_config *cfg);

#endif /* QIAO_MODALITIES_TEXT_ENCODER_H */
