/* modalities/audio/encoder.h - internal: the audio encoder, a strided conv1d
 * stem over log-mel frames followed by the shared encoder trunk.
 *
 *   x_0 = mask_0 * (mel - norm_mean) / norm_std         (B, Tm, n_mels)
 *   x_i = mask_i * gelu(conv1d_i(x_{i-1}))              (B, T_i, C), i = 1..S
 *         kernel k_i (odd), stride s_i, pad k_i / 2, so T_i = ceil(T_{i-1} / s_i)
 *   emb = trunk(x_S, mask_S)                            (B, D)
 *
 * Mask rule: frame t of stem layer i is real iff the frame at its window's
 * centre, t * s_i, is real in layer i-1; hence iff input frame
 * t * (s_1 ... s_i) is real. For a clip of n real frames followed by padding
 * the real outputs are exactly the first ceil(n / s_1...s_i).
 *
 * Why the masks multiply every stem layer: a conv window near the end of the
 * real frames reaches past them. A clip alone sees the conv's zero padding
 * there; in a padded batch it sees padding frames (and, after the first layer,
 * the bias and GELU of windows over padding). Zeroing the padded positions of
 * the input and of every stem output makes both cases read the same zeros,
 * so an embedding does not depend on what it was batched with (the test
 * checks this on real clips).
 *
 * The fixed affine (norm_mean, norm_std; default -4 and 4) brings natural-log
 * mel values of speech (about -20..+5) to O(1) before the first conv; it is
 * applied before the masking so padded frames are exact zeros.
 *
 * Not a public header (the public embedding API comes with the model
 * container). Names carry the qe_audio_ prefix. */
#ifndef QIAO_MODALITIES_AUDIO_ENCODER_H
#define QIAO_MODALITIES_AUDIO_ENCODER_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/core.h"
#include "nn/nn.h"

#define QE_AUDIO_MAX_STEM 4   /* stem conv layers */
#define QE_AUDIO_MAX_MELS 512 /* as qiao_mel_params.n_mels */

typedef struct qe_audio_config {
    int64_t n_mels;                        /* input features per frame */
    int64_t max_frames;                    /* Tm: most input frames a batch may have */
    int64_t n_stem;                        /* S: stem conv layers, 1..QE_AUDIO_MAX_STEM */
    int64_t stem_kernels[QE_AUDIO_MAX_STEM]; /* odd kernel widths */
    int64_t stem_strides[QE_AUDIO_MAX_STEM]; /* strides >= 1 */
    float norm_mean, norm_std;             /* input affine: (mel - mean) / std */
    nn_trunk_dims trunk;                   /* C (= stem channels), F, H, L, max_T = tokens(max_frames), D */
} qe_audio_config;

/* Parses the "audio" object of a model config (models/configs/<name>.json):
 * n_mels, width (the stem's channels and the trunk's width C), stem_kernels
 * and stem_strides (lists of equal length 1..4: odd kernels, strides >= 1),
 * layers, heads, mlp, max_frames (all required integers) and norm_mean,
 * norm_std (optional numbers, default -4 and 4; std > 0). Unknown keys are
 * refused (a misspelt optional key would otherwise fall back silently).
 * embed_dim is the top-level shared-space width. Returns QIAO_OK, or
 * QIAO_ERR_FORMAT naming the offending key (QIAO_ERR_INVALID_ARGUMENT for a
 * NULL argument); *cfg is written only on success. */
qiao_status qe_audio_config_from_json(const cJSON *obj, int64_t embed_dim, qe_audio_config *cfg);

/* Trunk tokens for `frames` input frames: T_S after the stem (0 for 0). */
int64_t qe_audio_tokens(const qe_audio_config *cfg, int64_t frames);

/* One batch of log-mel clips as qiao_mel_compute produces them, each padded
 * at the end to Tm frames. */
typedef struct qe_audio_input {
    const float *mel;    /* (B, Tm, n_mels), backend memory; padded frames may hold anything */
    const uint8_t *mask; /* (B, Tm), HOST memory: 1 = real frame, 0 = padding; NULL = all real.
                          * Host because the stem zeroes padded rows with the backend's
                          * memory ops and derives the trunk's mask from it. */
    int64_t B, Tm;       /* must equal the B, T the activations were described for */
} qe_audio_input;

typedef struct qe_audio_params {
    float *stem_w[QE_AUDIO_MAX_STEM]; /* (C, Cin, k_i), Cin = n_mels then C: "audio.stem.<i>.weight" */
    float *stem_b[QE_AUDIO_MAX_STEM]; /* (C) "audio.stem.<i>.bias" */
    nn_trunk_params trunk;            /* "audio.trunk.*" */
} qe_audio_params;

/* The mask lives in the float arena; the field is float* because the tensor
 * table binds float* fields, and is reinterpreted as uint8 where used. */
typedef struct qe_audio_acts {
    float *shift;                    /* (n_mels) -norm_mean / norm_std (scratch) */
    float *xn;                       /* (B*Tm, n_mels) normalized, masked input */
    float *conv[QE_AUDIO_MAX_STEM];  /* (B*T_i, C) before GELU */
    float *act[QE_AUDIO_MAX_STEM];   /* (B*T_i, C) after GELU, padded rows zero; act[S-1] feeds the trunk */
    float *mask;                     /* uint8 (B, T_S): the trunk's mask */
    nn_trunk_acts trunk;             /* trunk.emb (B, D) is the result */
} qe_audio_acts;

/* Appends the parameters to `tab` as "<prefix>stem.<i>.weight|bias" and
 * "<prefix>trunk.…", bound at field_base + offsetof(qe_audio_params, …).
 * Stem weights start as N(0, 1/(Cin k)) (fan-in scaled, so each stem layer
 * keeps unit-scale activations), biases 0. Returns QIAO_OK or the table's
 * error. */
qiao_status qe_audio_describe(qc_table *tab, const char *prefix, const qe_audio_config *cfg, size_t field_base);

/* Appends the activations for B clips of T input frames (1 <= T <=
 * max_frames) to `tab`, bound at field_base + offsetof(qe_audio_acts, …); the
 * trunk runs on qe_audio_tokens(cfg, T) tokens. The same layout serves the
 * activation gradients of qe_audio_backward. QIAO_ERR_INVALID_ARGUMENT for
 * B < 1 or T out of range. */
qiao_status qe_audio_describe_acts(qc_table *tab, const char *prefix, const qe_audio_config *cfg, int64_t B,
                                   int64_t T, size_t field_base);

/* in->mel, in->mask -> a->trunk.emb (in->B, D), L2-normalized rows. A clip
 * with no real frame embeds as the projection bias, normalized. */
void qe_audio_forward(const qb_exec *ex, qe_audio_acts *a, const qe_audio_params *p, const qe_audio_input *in,
                      const qe_audio_config *cfg);

/* Backward from demb (B, D) and/or dtokens (B*T, C), the gradient at
 * a->trunk.lnf (either may be NULL; nn_trunk_backward): parameter gradients
 * accumulate (+=) into g; da has the layout of the activations and must be
 * zero on entry (its contents are scratch). No gradient flows into the
 * mel (it is data). */
void qe_audio_backward(const qb_exec *ex, qe_audio_params *g, qe_audio_acts *da, const float *demb,
                       const float *dtokens, const qe_audio_acts *a, const qe_audio_params *p, const qe_audio_input *in,
                       const qe_audio_config *cfg);

#endif
