/* models/train/train.h - contrastive training of the three encoders:
 * symmetric InfoNCE over text-image, audio-text and audio-image pairs (one
 * learnable temperature each), validation recall. The objective
 * (contrastive.c) runs on the trainer (trainer.h): AdamW with warmup and
 * cosine decay, clipping, atomic resumable checkpoints, the CSV log.
 *
 * On an image-less data set (qmod_dataset.has_images false, e.g. FSDD's
 * spoken digits) only the audio-text pair trains: the image encoder is not
 * run, and it and the text-image and audio-image temperatures are frozen
 * (QC_FROZEN), so weight decay does not shrink what nothing trains. The log
 * then has NaN for the two skipped pair losses. Such a run needs speech, B
 * <= the number of distinct captions (see qmod_loader_start), and no
 * validation split (retrieval validation ranks images).
 *
 * Towers named in hp.freeze are run forward only and not updated (their
 * temperatures still learn). At least one tower must train.
 *
 * Fine-tuning: init_path starts from a trained model (its weights, config
 * and tokenizer) with fresh AdamW moments at step 0.
 *
 * Not a public header: prefix qmod_. */
#ifndef QIAO_MODELS_TRAIN_H
#define QIAO_MODELS_TRAIN_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "models/data/data.h"
#include "models/embed.h"
#include "models/model.h"

/* Hyperparameters: the "train" object of a model config, overridable from
 * the command line. */
typedef struct qmod_train_hparams {
    int64_t batch;          /* scenes per step (default 64) */
    int64_t steps;          /* total optimizer steps (default 1000) */
    int64_t warmup;         /* linear warmup steps (default 5% of steps) */
    int64_t restart;        /* the step the schedule starts from: warmup and cosine run over
                             * [restart, steps). 0 normally; a resumed run that gets more steps
                             * can restart its schedule at the checkpoint (a warm restart). */
    float lr;               /* peak learning rate (default 1e-3) */
    float lr_min;           /* cosine floor (default lr / 20) */
    float weight_decay;     /* AdamW (default 0.05) */
    float clip;             /* global gradient-norm clip, 0 = off (default 1) */
    int64_t eval_every;     /* validation every N steps, 0 = only at the end (default 100) */
    int64_t ckpt_every;     /* checkpoint every N steps (default 100) */
    int64_t eval_pool;      /* validation scenes used for recall (default 500) */
    float audio_weight;     /* weight of the audio-text and audio-image losses (default 1) */
    uint64_t seed;          /* initialization and data order (default 1) */
    int64_t place_groups;   /* > 1: batches hold scenes with the same objects in different
                             * places side by side, in groups of up to this many (data.h,
                             * qmod_loader_start); 0 = a plain shuffle (default) */
    uint32_t freeze;        /* towers kept as loaded, bit (1 << QMOD_TEXT/IMAGE/AUDIO) (default 0):
                             * e.g. audio bound to a trained, locked text-image space. A frozen
                             * tower runs forward only. Config: "freeze": ["text", "image"]. */
    float beta1, beta2;     /* AdamW moment decays (default 0.9, 0.98: CLIP's steadier second moments) */
    float eps;              /* AdamW denominator floor (default 1e-6) */
} qmod_train_hparams;

/* Defaults overridden by cfg_json's "train" object (if any). Unknown keys
 * or bad values are QIAO_ERR_FORMAT naming the key. */
qiao_status qmod_train_hparams_from_config(const char *cfg_json, qmod_train_hparams *out);

/* The "train" object of the config stored in a model file (what init_path
 * fine-tunes from): the defaults of a fine-tuning run. */
qiao_status qmod_train_hparams_from_model(const char *path, qmod_train_hparams *out);

/* The hyperparameters a checkpoint was trained with, and its step. */
qiao_status qmod_train_hparams_from_checkpoint(const char *path, qmod_train_hparams *out, int64_t *step);

/* One line of the training log (the CSV the CLI writes). Validation fields
 * are NaN on steps without validation. */
typedef struct qmod_train_log {
    int64_t step;           /* 1-based, after the update */
    int64_t steps;
    double seconds;         /* wall time of the run so far (including earlier runs when resumed) */
    float lr;
    float loss;             /* total weighted loss of the step */
    float loss_pair[QMOD_N_PAIRS]; /* per pair, QMOD_PAIR_*; NaN for a pair not trained this step */
    float scale[QMOD_N_PAIRS];     /* exp(logit_scale) */
    float grad_norm;
    double samples_per_s;   /* scenes per second, this run */
    /* validation (NaN when not run this step) */
    float val_t2i_r1, val_i2t_r1, val_a2i_r1, val_a2t_r1;
    double eta_s;           /* seconds left at this run's rate (NaN before it is known) */
} qmod_train_log;

typedef struct qmod_train_params {
    const char *config_path;      /* models/configs/NAME.json (ignored when resuming) */
    const char *tokenizer_path;   /* tokenizer file; its vocab sizes replace the config's */
    const char *init_path;        /* model file to fine-tune from (weights, config, tokenizer; fresh
                                   * AdamW state, step 0); then config_path and tokenizer_path must
                                   * be NULL. Ignored when resuming. */
    const char *data_dir;         /* train split */
    const char *val_dir;          /* validation split, NULL = none */
    const char *out_path;         /* final model (bf16), written atomically */
    const char *ckpt_path;        /* checkpoint (f32 params + AdamW moments + step), written atomically */
    const char *resume_path;      /* checkpoint to resume from, NULL = fresh */
    qmod_train_hparams hp;        /* after qmod_train_hparams_from_config and overrides */
    int threads;                  /* compute threads (default: all cores) */
    int loader_threads;           /* default 1 */
    /* Called after every step (from the training thread); a nonzero return
     * stops the run after writing a checkpoint (QIAO_ERR_CANCELLED). */
    int (*on_step)(const qmod_train_log *log, void *user);
    void *user;
    const char *log_path;         /* CSV log, one row per step (trainer.h); NULL = none. A resumed run
                                   * keeps the rows up to its checkpoint's step. */
    const volatile sig_atomic_t *stop; /* polled before each step (a SIGINT handler sets it): nonzero
                                        * stops as on_step's return does; may be NULL */
    /* The per-layer profile, or NULL: qtr_params' prof, prof_skip and
     * prof_roofline_s (models/train/trainer.h). */
    struct qc_prof *prof;
    int64_t prof_skip;
    double prof_roofline_s;
    /* Mixed precision: the linear layers' forward, dX and dW GEMMs take
     * bf16 operands with f32 sums (qb_exec.linear_prec); parameters,
     * gradients, AdamW and everything else stay f32. Needs AVX512-BF16
     * (and no QIAO_ISA / qb_cpu_isa_force cap below it): QIAO_ERR_UNSUPPORTED
     * otherwise, before anything is loaded. Not stored in the checkpoint. */
    bool bf16;
} qmod_train_params;

/* Runs training to hp.steps (or until cancelled). Returns QIAO_OK with the
 * model written, QIAO_ERR_CANCELLED after a checkpoint, or the error. */
qiao_status qmod_train(const qmod_train_params *p);

#endif /* QIAO_MODELS_TRAIN_H */
