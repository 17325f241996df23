/* fusion/weighting.h - dynamic modality weighting: per sample, how much each
 * present modality (typed text, picture, speech) contributes to a fused
 * representation.
 *
 * Three modes:
 *   learned    a gate per modality scores [its pooled features; its input
 *              statistics] with a small MLP, s_m = u_m gelu(W_m x_m + b_m) + c_m,
 *              and w = softmax(s) over the modalities present;
 *   heuristic  the seed documents' fixed formula on the input statistics
 *              alone, h_text = 0.4 tanh(H / 5), h_image = 0.3 min(1, c / 10),
 *              h_audio = 0.3 (1 - exp(-f / 2000)), normalized over the
 *              modalities present (H: token entropy in bits, c: RMS
 *              contrast in luminance levels 0-255, f: spectral centroid in
 *              Hz; all zero gives equal weights);
 *   equal      1 / (modalities present).
 * An absent modality always gets weight 0 and the others renormalize.
 *
 * The statistics are computed from the raw inputs (token ids, the decoded
 * picture, the log-mel spectrogram) on the host; they are features, not
 * parameters, and receive no gradient. Each modality has QF_NSTATS of them,
 * raw (the units above, what the heuristic reads) and scaled to about unit
 * range for the gate (qf_stats_scaled).
 *
 * The gate's layers follow sdk/nn's conventions (nn.h): backward
 * accumulates, activation gradients must be zero on entry.
 *
 * Not a public header: prefix qf_. */
#ifndef QIAO_FUSION_WEIGHTING_H
#define QIAO_FUSION_WEIGHTING_H

#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"
#include "nn/nn.h"

/* Modalities in weight order (the same order as the models' towers). */
enum { QF_TEXT = 0, QF_IMAGE = 1, QF_AUDIO = 2, QF_NMOD = 3, QF_NSTATS = 3 };

typedef enum qf_weighting { QF_WEIGHT_LEARNED = 0, QF_WEIGHT_HEURISTIC = 1, QF_WEIGHT_EQUAL = 2 } qf_weighting;

/* "learned", "heuristic", "equal"; NULL when out of range. */
const char *qf_weighting_name(qf_weighting w);
/* Parses those names; -1 when unknown. */
int qf_weighting_parse(const char *s);
/* "text", "image", "audio". */
const char *qf_modality_name(int mod);

/* ---- input statistics ---------------------------------------------------- */
/* Text, from its n token ids (padding excluded): [0] the Shannon entropy in
 * bits of the ids' distribution over the text (0 for n <= 1), [1] n, [2] the
 * share of ids equal to unk_id (the tokenizer's unknown piece; -1: none). */
void qf_text_stats(const int32_t *ids, int64_t n, int32_t unk_id, float stats[QF_NSTATS]);
/* A picture, RGB 8-bit, w x h pixels, `stride` bytes per row: [0] RMS
 * contrast, the standard deviation of the luminance (BT.601 weights) in
 * levels 0-255; [1] high-frequency energy, the mean absolute 4-neighbour
 * Laplacian of the luminance in levels (sensor noise raises it, blur and
 * flat occluders lower it); [2] the mean luminance in levels. A picture
 * smaller than 3 x 3 gives the Laplacian 0. */
void qf_image_stats(const uint8_t *rgb, int64_t w, int64_t h, int64_t stride, float stats[QF_NSTATS]);
/* Sound, from its log-mel spectrogram (T frames of n_mels natural-log
 * powers, qiao_mel_compute) and the bands' centre frequencies (Hz,
 * qa_mel_centers_hz): [0] the spectral centroid in Hz (power-weighted mean
 * band frequency over the whole clip), [1] the mean frame energy in dB
 * (10 log10 of the frame's summed band power), [2] the spread between the
 * loud and quiet frames in dB (the 90th minus the 10th percentile of frame
 * energy): speech over a quiet floor spreads widely, noise narrows it. T = 0
 * gives zeros. */
void qf_audio_stats(const float *logmel, int64_t T, int64_t n_mels, const float *center_hz,
                    float stats[QF_NSTATS]);
/* The stats of modality `mod` scaled for the gate's input (fixed affine maps
 * to about [-1, 1] for the shapes world's clean inputs; documented in
 * weighting.c). */
void qf_stats_scaled(int mod, const float raw[QF_NSTATS], float out[QF_NSTATS]);
/* The heuristic's unnormalized score h_m of modality `mod` from its raw
 * stats (formulas above). */
float qf_heuristic_score(int mod, const float raw[QF_NSTATS]);

/* ---- the learned gate ---------------------------------------------------- */
typedef struct qf_gate_dims {
    int64_t B;      /* rows */
    int64_t C;      /* pooled feature width */
    int64_t G;      /* hidden width */
} qf_gate_dims;

/* One modality's gate: input x = [pooled (C); scaled stats (QF_NSTATS)]. */
typedef struct qf_gate_params {
    float *fc_w, *fc_b;   /* (G, C + QF_NSTATS), (G) */
    float *out_w, *out_b; /* (1, G), (1) */
} qf_gate_params;

typedef struct qf_gate_acts {
    float *in;      /* (B, C + QF_NSTATS) */
    float *fc;      /* (B, G) */
    float *fc_gelu; /* (B, G) */
    float *score;   /* (B) */
} qf_gate_acts;

/* "<prefix>fc.weight", "<prefix>fc.bias", "<prefix>out.weight",
 * "<prefix>out.bias" bound at field_base + offsetof(qf_gate_params, …);
 * weights N(0, 0.02), biases 0 (QC_NO_DECAY). */
qiao_status qf_gate_describe(qc_table *tab, const char *prefix, const qf_gate_dims *d, size_t field_base);
qiao_status qf_gate_describe_acts(qc_table *tab, const char *prefix, const qf_gate_dims *d, size_t field_base);
/* pooled (B, C), stats (B, QF_NSTATS) scaled -> a->score (B). */
void qf_gate_forward(const qb_exec *ex, qf_gate_acts *a, const qf_gate_params *p, const float *pooled,
                     const float *stats, const qf_gate_dims *d);
/* dscore (B) -> g accumulates, dpooled (B, C) accumulates unless NULL. */
void qf_gate_backward(const qb_exec *ex, float *dpooled, qf_gate_params *g, qf_gate_acts *da, const float *dscore,
                      const qf_gate_acts *a, const qf_gate_params *p, const qf_gate_dims *d);

/* ---- weights ------------------------------------------------------------- */
/* Row b of w (B, QF_NMOD): zero for modality m where present[b*QF_NMOD+m]
 * is 0, and over the present ones: learned softmax(score[m][b]), heuristic
 * h_m / sum h (equal weights when the sum is 0), equal 1/n. score[m] (B)
 * is read only in the learned mode (and only for present modalities); raw
 * (QF_NMOD arrays of B x QF_NSTATS) only in the heuristic one. A row with
 * nothing present gets all zeros. */
void qf_weights_compute(float *w, qf_weighting mode, const float *const score[QF_NMOD],
                        const float *const raw[QF_NMOD], const uint8_t *present, int64_t B);
/* The learned mode's backward: dscore[m] (B) accumulates the softmax's
 * gradient from dw (B, QF_NMOD), the gradient at w, and from dlogw (B,
 * QF_NMOD) or NULL, the gradient at log w (where the weights enter
 * attention as key biases), for present modalities only. */
void qf_weights_backward(float *const dscore[QF_NMOD], const float *dw, const float *dlogw, const float *w,
                         const uint8_t *present, int64_t B);

#endif /* QIAO_FUSION_WEIGHTING_H */
