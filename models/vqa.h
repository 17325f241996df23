/* models/vqa.h - visual question answering on a model with a "fusion"
 * section (models/model.h) and two heads on it: "answer" (the answer
 * vocabulary, its "labels" and "label_text") and, optionally, "lang" (the
 * question's language, classes zh and en, for spoken questions).
 *
 * One call runs the towers a batch needs (picture, typed question, spoken
 * question), hands their token sequences to the fuser (fusion/fuser.h)
 * with each modality's presence and input statistics, and the fused z to
 * the heads. Training runs the same path backwards: heads, fuser, and the
 * towers that are not frozen (their token gradient, qmod_backward_at).
 *
 * A qmod_vqa_work belongs to one thread at a time; the model is only read.
 * Not a public header: prefix qmod_. */
#ifndef QIAO_MODELS_VQA_H
#define QIAO_MODELS_VQA_H

#include <stdbool.h>
#include <stdint.h>

#include "fusion/fuser.h"
#include "models/embed.h"
#include "models/head.h"
#include "models/picture.h"

#define QMOD_VQA_ANSWER_HEAD "answer"
#define QMOD_VQA_LANG_HEAD "lang"

/* A memo (models/picture.h) of pictures 0..n-1 as the fuser reads them:
 * the picture tower's standardized tokens, or their places when the fuser
 * has them. QIAO_ERR_TOO_LARGE over max_bytes. */
qiao_status qmod_vqa_memo_init(qmod_memo *mm, const qmod_model *m, int64_t n, double max_bytes);

/* One batch of B questions. Each modality's batch has B rows (a row whose
 * modality is absent holds any valid input and present = 0), or is NULL
 * when no row has that modality (its tower then does not run). */
typedef struct qmod_vqa_inputs {
    int64_t B;
    const qmod_batch *batch[QF_NMOD];  /* indexed QF_TEXT, QF_IMAGE, QF_AUDIO */
    const uint8_t *present;            /* (B, QF_NMOD); NULL = every non-NULL batch's rows */
    const float *stats[QF_NMOD];       /* (B, QF_NSTATS) raw (fusion/weighting.h); NULL reads zeros */
    /* Optional: a memo of the pictures and each row's picture in it (B).
     * When every present picture of the batch is in the memo the picture
     * tower does not run; else it runs and the memo keeps its rows. A
     * backward after a memo's forward must not train the picture tower. */
    qmod_memo *memo;
    const int64_t *picture;
} qmod_vqa_inputs;

typedef struct qmod_vqa_work {
    bool train;
    int answer_head, lang_head;        /* head indices; lang_head -1 when the model has none */
    qmod_work tower[QF_NMOD];
    qf_fuser_dims dims;                /* what the fuser's activations are sized for */
    qf_fuser_input fin;                /* the last forward's fuser input and dims, which its backward reuses */
    qf_fuser_dims fd;
    qc_table at;
    qc_arena acts, dacts;
    qf_fuser_acts a, da;
    qf_fuser_scratch s;
    qmod_head_work answer, lang;
    float *dtok[QF_NMOD];              /* (B*T_m, C_m) token gradients for towers that train */
    int64_t dtok_n[QF_NMOD];
    float *ntok[QF_NMOD];              /* (B*T_m, C_m) the tokens standardized (model.h tok_mean, tok_std) */
    int64_t ntok_n[QF_NMOD];
    uint8_t *present;                  /* (B, QF_NMOD) */
    int64_t B_max;
    /* a fuser with places (fuser.h): the picture's place tokens and the
     * patches' gradient in backward */
    qmod_places places;
    float *dpatch;
    int64_t dpatch_n;
    bool memo_hit; /* the last forward read its pictures from the inputs' memo */
} qmod_vqa_work;

/* The picture tower alone on `pictures`: their (B, T, C) tokens as the
 * fuser reads them and a memo keeps them (qmod_vqa_memo_init), valid until
 * the workspace's next use. What fills a memo before training. */
qiao_status qmod_vqa_picture_tokens(const qb_exec *ex, const qmod_model *m, qmod_vqa_work *w,
                                    const qmod_batch *pictures, const float **tok);

/* QIAO_ERR_UNSUPPORTED with a message when the model has no fusion section
 * or no "answer" head on it (an embedding-only model). */
qiao_status qmod_vqa_check(const qmod_model *m);
/* A workspace for up to B_max questions (it grows with the token counts it
 * meets). */
qiao_status qmod_vqa_work_init(qmod_vqa_work *w, const qmod_model *m, int64_t B_max, bool train);
void qmod_vqa_work_free(qmod_vqa_work *w);

/* Runs the batch with weighting `mode` -> answer logits (B, K), lang logits
 * (B, 2) or NULL without a lang head, weights (B, QF_NMOD), all inside the
 * workspace (valid until its next use). */
qiao_status qmod_vqa_forward(const qb_exec *ex, const qmod_model *m, qmod_vqa_work *w, const qmod_vqa_inputs *in,
                             qf_weighting mode, const float **answer_logits, const float **lang_logits,
                             const float **weights);
/* After qmod_vqa_forward on the same inputs: the gradients at the logits
 * (dlang may be NULL) -> parameter gradients accumulate into `grads`;
 * towers with train_tower[m] false get none (frozen). dtok_add, when not
 * NULL, holds per modality NULL or a gradient at that tower's raw tokens
 * (B, T, C as qmod_tokens gives them) from a loss of the caller's own on
 * them, added before the tower's backward. */
qiao_status qmod_vqa_backward(const qb_exec *ex, const qmod_model *m, qmod_params *grads, qmod_vqa_work *w,
                              const qmod_vqa_inputs *in, qf_weighting mode, const float *danswer, const float *dlang,
                              const bool train_tower[QF_NMOD], const float *const dtok_add[QF_NMOD]);

/* The towers (model.h) behind the fuser's modality order. */
qmod_modality qmod_vqa_tower(int qf_mod);

/* The raw input statistics (fusion/weighting.h) of one input as the model
 * sees it, the one definition training data and the public API share: a
 * text batch's row (its real tokens; the unknown piece is
 * QMOD_VQA_UNK_ID), a picture's decoded pixels, an audio batch's row (its
 * real frames of raw log-mel). */
#define QMOD_VQA_UNK_ID 1 /* SentencePiece's <unk> (tokenizers/spm_shim.h) */
void qmod_vqa_text_stats(const qmod_batch *text, int64_t row, float stats[QF_NSTATS]);
void qmod_vqa_image_stats(const qiao_image *img, float stats[QF_NSTATS]);
qiao_status qmod_vqa_audio_stats(const qmod_model *m, const qmod_batch *audio, int64_t row, float stats[QF_NSTATS]);

#endif /* QIAO_MODELS_VQA_H */
