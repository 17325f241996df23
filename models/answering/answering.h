/* models/answering/answering.h - training and evaluating visual question
 * answering (models/vqa.h) on the shapes world's questions
 * (models/data/vqa.h).
 *
 * Training starts from a trained embedding model (its towers and tokenizer)
 * and a recipe (models/configs/vqa.json): the recipe's "fusion" section and
 * "answer_hidden" become the model's fuser and its "answer" and "lang"
 * heads (answer labels and their zh/en texts from the data's dataset.json),
 * the towers are copied in, and the run goes through the generic trainer
 * (models/train/trainer.h): cross-entropy on the answer (label smoothing
 * from the recipe) plus lang_weight times cross-entropy on the question's
 * language, modality dropout and degraded inputs from the recipe, towers
 * frozen or fine-tuned as the recipe says. With train.cell_weight above 0
 * and the picture tower training, a dense auxiliary loss teaches that
 * tower what lies where: three linear heads on its patch tokens
 * ("cell_shape", "cell_color", "cell_size") classify the object under
 * each patch (qmod_vqa_cell_labels), since a tower trained only on
 * whole-picture captions keeps colour in its tokens but not shape. A run can also start from a VQA
 * model (init_path holding a fusion section: fine-tuning) or resume from
 * its checkpoint.
 *
 * Evaluation runs a split's every question once, typed and spoken (and
 * both) as asked, and reports accuracy overall, per question type, per
 * language and per input, with the weights the model gave each modality.
 *
 * Not a public header: prefix qmod_vqa_. */
#ifndef QIAO_MODELS_ANSWERING_H
#define QIAO_MODELS_ANSWERING_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/profile.h"
#include "models/data/vqa.h"
#include "models/train/trainer.h"
#include "models/vqa.h"

/* The recipe's "train" object. */
typedef struct qmod_vqa_hparams {
    qtr_hparams tr;          /* steps, lr, warmup, clip, decay, eval/ckpt cadence */
    int64_t batch;           /* questions per step (default 64) */
    uint64_t seed;           /* fuser initialization and data order (default 1) */
    uint32_t freeze;         /* towers kept as loaded, bit (1 << QF_TEXT/IMAGE/AUDIO); default all three */
    float lang_weight;       /* weight of the language loss (default 0.1) */
    float smoothing;         /* label smoothing of the answer loss (default 0.05) */
    float cell_weight;       /* weight of the dense object loss on the picture's tokens (default 0: none) */
    int64_t eval_questions;  /* validation questions (default 2000) */
    qmod_vqa_params data;    /* dropout and degradations (models/data/vqa.h) */
} qmod_vqa_hparams;

/* Defaults overridden by a recipe's "train" object; unknown keys or bad
 * values are QIAO_ERR_FORMAT naming "train.<key>". Recipe keys beyond the
 * trainer's: batch, seed, freeze (["text", "image", "audio"] or a subset),
 * lang_weight, smoothing, cell_weight, eval_questions, p_drop_text, p_drop_audio,
 * p_drop_image, p_image_noise, image_sigma ([lo, hi]), p_occlude,
 * occlude_frac, p_audio_noise, audio_snr_db, audio_noise ("white" or
 * "babble"). */
qiao_status qmod_vqa_hparams_from_json(const char *recipe_json, const char *what, qmod_vqa_hparams *out);
/* The dense object heads (train.cell_weight) by attribute: "cell_shape",
 * "cell_color", "cell_size" on the picture tower's tokens. */
extern const char *const qmod_vqa_cell_heads[QMOD_VQA_NATTR];
/* The cell labels (qmod_vqa_cell_labels, or with `places` the place labels,
 * qmod_vqa_place_labels, grid being G) of rows [0, rows) of a batch,
 * (rows, grid * grid, QMOD_VQA_NATTR); a row without its picture has no
 * targets (-1). */
void qmod_vqa_batch_cells(const qmod_vqa_dataset *d, const qmod_vqa_batch *b, int64_t rows, int grid, bool places,
                          int32_t *lab);
/* The tokens the cell heads read for the seq->B rows of a picture batch:
 * the tower's patches (*x = seq->x, *T = seq->T), or, for a model whose
 * fuser has places, the places pooled from them (fusion/fuser.h) into
 * place (B*G*G, C) with arg the same size (*x = place, *T = G*G). The
 * labels go with them: *grid is the grid side and *places says which
 * labels (qmod_vqa_batch_cells's `places`). *T = 0 when the patches are
 * not a square grid. */
void qmod_vqa_cell_tokens(const qmod_model *m, const qmod_token_seq *seq, float *place, int32_t *arg,
                          const float **x, int64_t *T, int *grid, bool *places);
/* Over N cells, logits (N, K) of attribute a's head against labels laid out
 * as qmod_vqa_batch_cells writes them: *n += the cells an object covers,
 * *right += those whose argmax is the label. */
void qmod_vqa_cell_hits(const float *logits, const int32_t *lab, int a, int64_t N, int64_t K, int64_t *n,
                        int64_t *right);

/* A loader batch as the model's inputs: every modality's rows, the spoken
 * question's only when `audio` (a typed-only pass reads no audio tower). */
void qmod_vqa_batch_inputs(const qmod_vqa_batch *b, bool audio, qmod_vqa_inputs *in);

typedef struct qmod_vqa_train_params {
    const char *recipe_path;   /* models/configs/vqa.json: "fusion", "answer_hidden", "train" */
    const char *init_path;     /* the embedding model whose towers start the run, or a VQA model */
    const char *data_dir;      /* train split (generated with --speech-questions for spoken questions) */
    const char *val_dir;       /* validation split or NULL */
    const char *out_path;      /* the final model (bf16), written atomically */
    const char *ckpt_path;     /* checkpoint (a model file plus the optimizer state) */
    const char *resume_path;   /* checkpoint to resume from, or NULL */
    const char *log_path;      /* CSV log or NULL */
    qmod_vqa_hparams hp;       /* after qmod_vqa_hparams_from_json and overrides */
    int threads, loader_threads;
    int (*on_step)(const qtr_log *log, void *user); /* after every step; nonzero stops with a checkpoint */
    void *user;
    const volatile sig_atomic_t *stop;
    struct qc_prof *prof;
    int64_t prof_skip;
} qmod_vqa_train_params;

qiao_status qmod_vqa_train(const qmod_vqa_train_params *p);

/* ---- evaluation ------------------------------------------------------------------- */

/* Which question inputs a pass gives the model. */
enum { QMOD_VQA_TYPED = 0, QMOD_VQA_SPOKEN = 1, QMOD_VQA_BOTH = 2, QMOD_VQA_N_INPUTS = 3 };
const char *qmod_vqa_input_name(int input);

/* One pass over a split: every question once under a fixed condition. */
typedef struct qmod_vqa_result {
    int64_t n, correct;
    int64_t n_type[8], correct_type[8];       /* by question type (dataset's order) */
    int64_t n_lang[2], correct_lang[2];       /* zh, en */
    int64_t lang_correct;                     /* language head right (spoken or typed) */
    double mean_w[QF_NMOD];                   /* mean modality weights */
    /* a model with the cell heads: how often each names the attribute of the
     * object under a cell an object covers (qmod_vqa_cell_labels), over the
     * pictures of the rows evaluated */
    int64_t cell_n[QMOD_VQA_NATTR], cell_correct[QMOD_VQA_NATTR];
} qmod_vqa_result;

static inline double qmod_vqa_acc(int64_t c, int64_t n) {
    return n > 0 ? (double)c / (double)n : 0.0 / 0.0;
}

typedef struct qmod_vqa_eval_params {
    int input;                 /* QMOD_VQA_TYPED, _SPOKEN or _BOTH */
    qmod_vqa_params cond;      /* the fixed condition (probabilities 0 or 1, fixed ranges) */
    qf_weighting mode;         /* weighting to answer with */
    int64_t batch;             /* default 64 */
    int64_t max_questions;     /* 0 = all */
    uint64_t seed;             /* the condition's draws */
    int threads;               /* loader threads */
    qiao_progress_fn progress; /* may be NULL */
    void *progress_user;
} qmod_vqa_eval_params;

qmod_vqa_eval_params qmod_vqa_eval_default_params(void);

/* Runs `m` over every question of `d` (sharing `cache` when not NULL). */
qiao_status qmod_vqa_eval(const qb_exec *ex, const qmod_model *m, const qmod_vqa_dataset *d, qmod_vqa_cache *cache,
                          const qmod_vqa_eval_params *p, qmod_vqa_result *out);

#endif /* QIAO_MODELS_ANSWERING_H */
