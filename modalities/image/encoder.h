/* modalities/image/encoder.h - internal: the image encoder, a ViT over
 * patches. The front end is a linear patch embedding (what a stride-p
 * Conv2d over the image computes, applied to the patch vectors that
 * qiao_image_patches cuts); the shared trunk (sdk/nn, "encoder trunk") adds
 * positions, runs the blocks and pools into the L2-normalized embedding.
 *
 *   x = patches W_patch^T + b_patch      patches (B, P, 3*p*p), x (B, P, C)
 *   emb = trunk(x, mask = NULL)          (B, D)
 *
 * Images have no padding: every one of the P = (S/p)^2 tokens is real, so
 * the trunk runs without a mask and max_T = P.
 *
 * "arch": "clip" is the vision tower of OpenAI CLIP and Chinese-CLIP: a
 * learned class vector goes first (x = [cls ; patches W^T + b], T = P + 1;
 * CLIP's patch convolution has no bias, so its b is 0 when converted), a
 * LayerNorm on x + pos (ln_in, CLIP's pre_layrnorm), pre-norm blocks with
 * quick GELU, ln_f (post_layernorm) read at the class token, a projection
 * without bias.
 *
 * Not a public header (the public embedding API comes with the model
 * container). Names carry the qe_image_ prefix. */
#ifndef QIAO_MODALITIES_IMAGE_ENCODER_H
#define QIAO_MODALITIES_IMAGE_ENCODER_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/core.h"
#include "nn/nn.h"

typedef struct qe_image_config {
    int64_t image_size; /* S: side of the preprocessed square image */
    int64_t patch;      /* p: side of a patch; S % p == 0 */
    int64_t patch_dim;  /* 3 * p * p: floats of one patch vector */
    int64_t tokens;     /* P = (S / p)^2: the patches a batch holds */
    bool class_token;   /* arch "clip": a class vector before the patches */
    nn_trunk_dims trunk; /* C, F, H, L, max_T = P + class_token, D; B and T are set per batch */
} qe_image_config;

/* Parses the "image" object of a model config (models/configs/<name>.json):
 * image_size, patch, width, layers, heads, mlp, every one a positive integer
 * in range, with image_size % patch == 0 and width % heads == 0; pool
 * ("mean" default, "max", "first"); arch ("qiao" default or "clip", which
 * also takes eps (default 1e-5) and act ("quick_gelu" default or "gelu")
 * and pools "first", the class token); an unknown
 * key is refused too (a misspelt key would otherwise fall back silently).
 * embed_dim is the top-level shared-space width. Returns QIAO_OK, or
 * QIAO_ERR_FORMAT naming the offending key (QIAO_ERR_INVALID_ARGUMENT for a
 * NULL argument); *cfg is written only on success. */
qiao_status qe_image_config_from_json(const cJSON *obj, int64_t embed_dim, qe_image_config *cfg);

/* One batch of images as qiao_image_patches produces them. */
typedef struct qe_image_input {
    const float *patches; /* (B, P, 3*p*p), patch vectors in (channel, row, column) order */
    int64_t B;            /* images; must equal the B the activations were described for */
} qe_image_input;

typedef struct qe_image_params {
    float *patch_w;        /* (C, 3*p*p) "image.patch_embed.weight" */
    float *patch_b;        /* (C) "image.patch_embed.bias" */
    float *cls;            /* (C) "image.class_emb" with a class token */
    nn_trunk_params trunk; /* "image.trunk.*" */
} qe_image_params;

typedef struct qe_image_acts {
    float *x;            /* (B*T, C) [class vector ;] patch embeddings (the trunk's input) */
    nn_trunk_acts trunk; /* trunk.emb (B, D) is the result */
} qe_image_acts;

/* Appends the encoder's parameters to `tab` as "<prefix>patch_embed.weight",
 * "<prefix>patch_embed.bias" and "<prefix>trunk.…", bound at field_base +
 * offsetof(qe_image_params, …) in the caller's struct. Returns QIAO_OK or
 * the table's error. */
qiao_status qe_image_describe(qc_table *tab, const char *prefix, const qe_image_config *cfg, size_t field_base);

/* Appends the activations for B images (T must be cfg->tokens: images have
 * no padding) to `tab`, bound at field_base + offsetof(qe_image_acts, …).
 * The same layout serves the activation gradients of qe_image_backward.
 * QIAO_ERR_INVALID_ARGUMENT for B < 1 or T != cfg->tokens. */
qiao_status qe_image_describe_acts(qc_table *tab, const char *prefix, const qe_image_config *cfg, int64_t B,
                                   int64_t T, size_t field_base);

/* in->patches -> a->trunk.emb (in->B, D), L2-normalized rows. */
void qe_image_forward(const qb_exec *ex, qe_image_acts *a, const qe_image_params *p, const qe_image_input *in,
                      const qe_image_config *cfg);

/* Backward from demb (B, D) and/or dtokens (B*T, C), the gradient at
 * a->trunk.lnf (either may be NULL; nn_trunk_backward): parameter gradients
 * accumulate (+=) into g; da has the layout of the activations and must be
 * zero on entry (its contents are scratch). No gradient flows into the
 * patches (they are data). */
void qe_image_backward(const qb_exec *ex, qe_image_params *g, qe_image_acts *da, const float *demb,
                       const float *dtokens, const qe_image_acts *a, const qe_image_params *p, const qe_image_input *in,
                       const qe_image_config *cfg);

#endif
