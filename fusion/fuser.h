/* fusion/fuser.h - the cross-modal fuser: the towers' token sequences in,
 * one fused vector per sample and the modalities' weights out. What a VQA
 * head (and any head that needs a picture and a question together) reads.
 *
 *   x_m   = tokens_m W_m^T + b_m + type_m           each modality to width d
 *   x_image[t] += pos[t]                             with positions: where picture token t lies
 *   w     = weights(gate_m(mean x_m, stats_m))       weighting.h: learned, heuristic or equal
 *   Q_0   = [x_text ; x_audio]                       the question stream (typed and spoken)
 *   P_0   = x_image                                  the picture stream
 *   Q_l+1 = xblock_q,l(Q_l | P_l),  P_l+1 = xblock_p,l(P_l | Q_l)     l < L (cross.h)
 *   z     = sum_m w_m pool_m(ln(final stream of m))
 *   z    += w_image s . mean(ln(final picture stream))   with picture_mean
 * where pool is the masked mean over a question modality's tokens and the
 * masked max over the picture's: a picture's tokens are mostly background,
 * so their mean makes every picture alike and no gradient reaches what the
 * question asks about (the image tower's max pooling answers the same
 * problem, nn.h "nn_pool"); the max lets the patch that matches win.
 *
 * Both streams read the other's previous layer (ViLBERT's co-attention).
 * In every attention whose keys are question tokens (the question's
 * self-attention, the picture's cross-attention) the key of modality m
 * carries the score bias log max(w_m, QF_MIN_KEY_WEIGHT), so a degraded
 * modality is read less as well as weighed less in z; with equal or
 * heuristic weights that bias is the same formula, and without gradient.
 * The floor keeps a present modality whose weight is exactly 0 (the
 * heuristic on silence, or on a question of one repeated token) all but
 * masked; a bias of 0 there, as log 1, would read it at full strength.
 * An absent modality (present = 0 for that row) has w = 0 and every one
 * of its tokens masked; padding is masked by the per-modality masks. The
 * picture stream is always the context of the question stream: a row
 * without a picture (present 0) reads zeros from it.
 *
 * Picture mean: the max says whether something the question asks about
 * is in the picture, not how many: a place that has read the question can
 * mark itself as matching its first or its second phrase, and only a sum
 * over the places counts the marks. "Are there more red shapes than blue
 * ones?" needs two such counts side by side; with the max alone the fuser
 * answered compare questions 69 % right (47 % on the question alone) while
 * count questions, which one softmax over the places can learn, reached
 * 96 % (docs/vqa.md, run 19). A config with picture_mean adds the masked
 * mean of the final picture stream (with places, a fixed number of them,
 * so the count over that number) scaled per channel by a learned s,
 * "<prefix>image.mean_scale", started at 1. Started at 0, so that a model
 * grown with it would answer as before until s moved, s stayed below 0.04
 * through 2,000 steps (run 19a): the places learn to mark what they match
 * only through s, and s grows only once they do.
 *
 * Positions: the picture tower's tokens say what lies in a patch, and
 * where only as far as the tower's training kept its own position vectors
 * (docs/vqa.md, the position probe), while "left of", "above" and "the
 * biggest" ask exactly where. A config with `positions` > 0 adds a learned vector
 * per picture token (token t of the tower's row-major grid) to x_image, so
 * every key and value the question reads carries its place. The vectors
 * start at the fixed 2-D sin-cos code of the place (qc_init_sincos), at a
 * token's scale: started small and random they stayed far smaller
 * than the tokens through a whole run (docs/vqa.md, run 10) and said
 * nothing.
 *
 * Question positions: a config with `qpositions` > 0 adds a learned vector
 * per typed question token (token t of the text tower's sequence) to
 * x_text, started at the 1-D sin-cos code of t at a token's scale. The
 * text tower has positions of its own, but a frozen tower trained for
 * retrieval keeps little of the order in its final tokens: "more red than
 * blue" and "more blue than red" read nearly alike, and a fuser without
 * these answered the symmetric "as many" 88 % right and "more" and "fewer"
 * 60-66 % (docs/vqa.md, run 18). Spoken questions get none yet.
 *
 * A model need not hold all three towers: a modality whose in_width is 0 has
 * no tokens (T = 0) and weight 0. The question stream needs text or audio,
 * the picture stream the image.
 *
 * Backward accumulates (nn.h): parameter gradients, and the gradient at each
 * modality's tokens when the caller passes a buffer (NULL for a frozen
 * tower). Activation gradients must be zero on entry.
 *
 * Not a public header: prefix qf_. */
#ifndef QIAO_FUSION_FUSER_H
#define QIAO_FUSION_FUSER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"
#include "fusion/cross.h"
#include "fusion/weighting.h"
#include "nn/nn.h"

#define QF_FUSER_MAX_LAYERS 8
/* The smallest weight a key bias log w reads (below it the bias is
 * constant, log 1e-6 = -13.8, and passes no gradient). */
#define QF_MIN_KEY_WEIGHT 1e-6f

typedef struct qf_fuser_config {
    int64_t width;              /* d */
    int64_t layers;             /* L, 1..QF_FUSER_MAX_LAYERS */
    int64_t heads;              /* d % heads == 0 */
    int64_t mlp;                /* the blocks' MLP width */
    int64_t gate_hidden;        /* the learned gates' hidden width */
    qf_weighting weighting;     /* the mode the model was trained with (a caller may override per call) */
    int64_t in_width[QF_NMOD];  /* each tower's token width; 0 = the model has no such tower */
    int64_t positions;          /* learned picture positions: 0 = none, else at most this many picture tokens */
    int64_t places;             /* 0: the picture stream is the tower's patches; G: their G x G places (below) */
    int64_t qpositions;         /* learned question positions: 0 = none, else at most this many text tokens */
    int64_t picture_mean;       /* 1: z also reads the picture stream's mean (below); 0: its max alone */
} qf_fuser_config;

typedef struct qf_fuser_dims {
    int64_t B;
    int64_t T[QF_NMOD]; /* tokens per modality (0 for a modality the config lacks) */
} qf_fuser_dims;

typedef struct qf_fuser_params {
    float *in_w[QF_NMOD], *in_b[QF_NMOD]; /* (d, in_width[m]), (d) */
    float *type[QF_NMOD];                 /* (d) */
    float *pos;                           /* (positions, d) the picture's; NULL without positions */
    float *qpos;                          /* (qpositions, d) the typed question's; NULL without them */
    qf_gate_params gate[QF_NMOD];
    qf_xblock_params qblk[QF_FUSER_MAX_LAYERS], pblk[QF_FUSER_MAX_LAYERS];
    float *lnq_w, *lnq_b, *lnp_w, *lnp_b; /* (d) */
    float *pmean_scale;                   /* (d) with picture_mean; NULL without */
} qf_fuser_params;

typedef struct qf_fuser_acts {
    float *x[QF_NMOD];        /* (B*T_m, d) */
    float *pin[QF_NMOD];      /* (B, d) masked mean of x_m: the gate's input */
    float *sscaled[QF_NMOD];  /* (B, QF_NSTATS) the stats as the gate reads them */
    qf_gate_acts gate[QF_NMOD];
    float *w;                 /* (B, QF_NMOD) */
    float *logw_q;            /* (B, Tq) key bias of the question stream, Tq = T_text + T_audio */
    float *q0;                /* (B*Tq, d) */
    qf_xblock_acts qblk[QF_FUSER_MAX_LAYERS], pblk[QF_FUSER_MAX_LAYERS];
    float *lnq, *lnq_mean, *lnq_rstd; /* (B*Tq, d), (B*Tq), (B*Tq) */
    float *lnp, *lnp_mean, *lnp_rstd; /* (B*T_image, d), ... */
    float *pool[QF_NMOD];     /* (B, d) */
    float *pool_arg;          /* (B, d) int32: the picture's max pooling's argmax */
    float *pmean;             /* (B, d) with picture_mean: the masked mean of ln(final picture stream) */
    float *z;                 /* (B, d) */
    float *flow[4];           /* backward only: two (B*Tq, d) and two (B*T_image, d) gradient buffers */
} qf_fuser_acts;

/* One call's inputs (host arrays for masks, stats and presence; the
 * backend's memory for tokens). */
typedef struct qf_fuser_input {
    const float *tokens[QF_NMOD];  /* (B*T_m, in_width[m]) or NULL when T_m = 0 */
    const uint8_t *mask[QF_NMOD];  /* (B, T_m) 1 = a real token; NULL = all real */
    const float *stats[QF_NMOD];   /* (B, QF_NSTATS) raw (weighting.h); NULL reads zeros */
    const uint8_t *present;        /* (B, QF_NMOD); NULL = every modality the config holds */
} qf_fuser_input;

/* QIAO_ERR_FORMAT naming the field unless the config is usable. */
qiao_status qf_fuser_check(const qf_fuser_config *cfg);

/* Places: a config with `places` G > 0 reads the picture as G x G place
 * tokens instead of its g x g patches. Place (i, j) is the channel-wise
 * max over the patches that overlap its share of the picture, rows
 * [floor(i g / G), ceil((i + 1) g / G)) and the same columns, so a patch
 * on a border belongs to both places. Why: the shapes world puts at most
 * one object in each cell of a 3 x 3 grid, and a question is about
 * objects, counted, compared and placed; with 64 patches, an object is
 * spread over a few of them among many of background, and the question
 * stream has to learn to find, group and count them. Nine place tokens, one
 * object each at most, are what the answer is about, and the picture
 * stream costs a seventh of the patches'. The max, not the mean, for the
 * reason the picture's pool is a max (above): a small object covers one
 * patch of a place's nine or sixteen.
 *
 * out (B, G*G, C) and arg (B, G*G, C) the patch each maximum came from,
 * from tok (B, g*g, C). */
void qf_places_forward(float *out, int32_t *arg, const float *tok, int64_t B, int64_t g, int64_t G, int64_t C);
/* The side g of the smallest g x g grid holding P patches (g * g == P for a
 * square grid, which places need). */
int64_t qf_patch_side(int64_t P);
/* dtok (B, g*g, C) += the place gradients dout (B, G*G, C) at their argmax. */
void qf_places_backward(float *dtok, const float *dout, const int32_t *arg, int64_t B, int64_t g, int64_t G,
                        int64_t C);
/* "<prefix>text.proj.weight", "<prefix>text.type", "<prefix>image.pos" (with
 * positions), "<prefix>text.pos" (with qpositions), "<prefix>image.mean_scale"
 * (with picture_mean), "<prefix>gate.text.*",
 * "<prefix>question.<l>.*", "<prefix>picture.<l>.*", "<prefix>ln_q.*",
 * "<prefix>ln_p.*", bound at field_base + offsetof(qf_fuser_params, …). */
qiao_status qf_fuser_describe(qc_table *tab, const char *prefix, const qf_fuser_config *cfg, size_t field_base);
/* Activations for up to d->B rows and d->T[m] tokens (gradient flows with
 * `train`). A forward may then run with fewer rows or tokens. */
qiao_status qf_fuser_describe_acts(qc_table *tab, const char *prefix, const qf_fuser_config *cfg,
                                   const qf_fuser_dims *d, bool train, size_t field_base);

/* Scratch the forward and backward need beyond the activations (host
 * masks); sized for the dims the activations were described with. */
typedef struct qf_fuser_scratch {
    uint8_t *qmask;  /* (B, Tq) */
    uint8_t *pmask;  /* (B, T_image) */
    uint8_t *present;/* (B, QF_NMOD) */
    float *raw[QF_NMOD]; /* (B, QF_NSTATS) copies of the raw stats */
    float *score[QF_NMOD], *dscore[QF_NMOD]; /* (B) */
    float *dw, *dlogw;   /* (B, QF_NMOD) */
    int64_t B, Tq, Ti;
} qf_fuser_scratch;
qiao_status qf_fuser_scratch_init(qf_fuser_scratch *s, const qf_fuser_dims *d);
void qf_fuser_scratch_free(qf_fuser_scratch *s);

/* Runs the fuser for d (within the described maxima) -> a->z (B, d) and a->w
 * (B, QF_NMOD) with the weighting `mode`. QIAO_ERR_INVALID_ARGUMENT when a
 * row has neither question modality or no picture is held at all. */
qiao_status qf_fuser_forward(const qb_exec *ex, qf_fuser_acts *a, qf_fuser_scratch *s, const qf_fuser_params *p,
                             const qf_fuser_input *in, qf_weighting mode, const qf_fuser_config *cfg,
                             const qf_fuser_dims *d);
/* dz (B, d) -> g accumulates; dtokens[m] (B*T_m, in_width[m]) accumulates
 * where not NULL. After qf_fuser_forward on the same input and mode. */
void qf_fuser_backward(const qb_exec *ex, float *const dtokens[QF_NMOD], qf_fuser_params *g, qf_fuser_acts *da,
                       qf_fuser_scratch *s, const float *dz, const qf_fuser_acts *a, const qf_fuser_params *p,
                       const qf_fuser_input *in, qf_weighting mode, const qf_fuser_config *cfg,
                       const qf_fuser_dims *d);

#endif /* QIAO_FUSION_FUSER_H */
