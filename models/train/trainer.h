/* models/train/trainer.h - the one training loop every objective runs on.
 *
 * An objective (contrastive alignment, the selfcheck classifier, a VQA
 * answer head, caption teacher forcing, intent and entity tagging) brings
 * its parameters as a qc_table over an arena it owns, and callbacks: its
 * data (next_batch), its forward and backward on that batch (step), and
 * optionally a validation, its checkpoint file and its own state. The
 * trainer brings the rest:
 *   - the gradient and AdamW m and v arenas, laid out by the objective's
 *     table (tensor i at the same offset in each), the gradients zeroed
 *     before each step (but those of QC_FROZEN tensors);
 *   - the schedule: linear warmup then cosine decay to lr_min, restarted at
 *     `restart` for a run given more steps (nn_lr_warmup_cosine);
 *   - global gradient-norm clipping and AdamW (nn_adamw_update), its
 *     settings from the config, the clip's factor applied inside AdamW;
 *     tensors flagged QC_FROZEN are not updated and their gradients count
 *     in no norm (qtr_freeze_prefix sets the flag by name);
 *   - validation every eval_every steps and at the last step;
 *   - checkpoints: the parameters (f32), the moments as "optim.m.<name>" and
 *     "optim.v.<name>", and the metadata "qiao.train" (step, wall time,
 *     hyperparameters) plus the objective's state, written atomically
 *     (qc_st_write), so a run resumed from one continues to the same bits;
 *   - a CSV log whose header is built from the objective's metric names,
 *     cut back to the checkpoint's step when a run resumes;
 *   - progress (rate and ETA) through a callback: the trainer never prints;
 *   - stopping: a flag (set by a SIGINT handler) or a callback ends the run
 *     after the current step with a checkpoint and QIAO_ERR_CANCELLED.
 *
 * Batches must be a pure function of (seed, step) or of state the objective
 * saves through save_state, or a resumed run will not match.
 *
 * Thread-safety: a run is one thread's; two runs share nothing.
 * Compiled into libqiao (qiao_selfcheck_train uses it); objectives that need
 * the training data loaders live beside it in qiao_training.
 * Not a public header: prefix qtr_. */
#ifndef QIAO_MODELS_TRAINER_H
#define QIAO_MODELS_TRAINER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "core/core.h"
#include "core/profile.h"
#include "core/safetensors.h"

struct cJSON;

/* The metadata key of a checkpoint's training state (JSON object with
 * "step", "seconds" and the hyperparameters) and of the objective's own. */
#define QTR_META_TRAIN "qiao.train"
#define QTR_META_STATE "qiao.train.state"
/* At most this many step or validation metrics per objective. */
#define QTR_MAX_METRICS 32

/* The hyperparameters the trainer reads; an objective keeps its own (batch,
 * seed, loss weights) beside them. */
typedef struct qtr_hparams {
    int64_t steps;        /* total optimizer steps */
    int64_t warmup;       /* linear warmup steps; -1 = steps / 20 */
    int64_t restart;      /* the step the schedule starts from: warmup and cosine run over
                           * [restart, steps); 0 normally, the checkpoint's step for a warm restart */
    float lr;             /* peak learning rate */
    float lr_min;         /* cosine floor; -1 = lr / 20 */
    float beta1, beta2;   /* AdamW moment decays */
    float eps;            /* AdamW denominator floor */
    float weight_decay;   /* AdamW decoupled decay (tensors flagged QC_NO_DECAY skip it) */
    float clip;           /* global gradient-norm clip, 0 = off */
    int64_t eval_every;   /* validation every N steps (and at the last), 0 = only at the last */
    int64_t ckpt_every;   /* checkpoint every N steps (and at the last), 0 = only at the last */
} qtr_hparams;

/* steps 1000, warmup -1, lr 1e-3, lr_min -1, beta1 0.9, beta2 0.999,
 * eps 1e-8, weight_decay 0.01, clip 1, eval_every 100, ckpt_every 100. */
qtr_hparams qtr_hparams_default(void);

/* Resolves the derived defaults (warmup, lr_min) once steps and lr are known. */
void qtr_hparams_finish(qtr_hparams *h);

/* Reads one key of a config's "train" object into h if it is one of the
 * trainer's (steps, warmup, restart, lr, lr_min, beta1, beta2, eps,
 * weight_decay, clip, eval_every, ckpt_every): *known tells whether it was.
 * A bad value is QIAO_ERR_FORMAT naming "train.<key>". */
qiao_status qtr_hparams_key(const struct cJSON *it, qtr_hparams *h, bool *known);

/* A number of a "train" object in [lo, hi] (a whole number if `integer`),
 * else QIAO_ERR_FORMAT naming "train.<key>": what objectives read their own
 * keys with, so every bad value reads the same. */
qiao_status qtr_json_number(const struct cJSON *it, double lo, double hi, bool integer, double *out);

/* Adds h's keys to a JSON object. The optimizer keys (beta1, beta2, eps) and
 * restart are written only where they differ from `dflt` (and restart > 0),
 * so a checkpoint of a run with the defaults reads as before they existed. */
void qtr_hparams_to_json(const qtr_hparams *h, const qtr_hparams *dflt, struct cJSON *obj);

/* Sets QC_FROZEN on every tensor whose name starts with `prefix`; returns
 * how many. */
size_t qtr_freeze_prefix(qc_table *tab, const char *prefix);
/* Sets the AdamW learning-rate factor (qc_tensor_desc.lr_scale) of every
 * tensor whose name starts with `prefix`; returns how many. */
size_t qtr_lr_scale_prefix(qc_table *tab, const char *prefix, float scale);
/* Sets QC_FROZEN on every tensor whose name starts with none of the
 * NULL-terminated prefixes `keep` (a new part of a model trains, whatever
 * else the model holds stays); returns how many. */
size_t qtr_freeze_all_but(qc_table *tab, const char *const *keep);

/* A recipe file's text (at most 1 MiB; NUL bytes are QIAO_ERR_FORMAT), as a
 * NUL-terminated string the caller frees. */
qiao_status qtr_recipe_read(const char *path, char **out);
/* Whether the recipe has an object `section` ("fusion", "decoder") that is
 * not the model config's own (key order aside): the recipe then asks for
 * another architecture, and a trainer builds it, copying each tensor the
 * model holds under the same name (a grown model: new parameters start
 * fresh, the rest where the model left them). Unparsable JSON: false (the
 * config reader reports it). */
bool qtr_recipe_changes(const char *model_json, const char *recipe_json, const char *section);

/* What a step callback gets. */
typedef struct qtr_step_ctx {
    const qb_exec *ex;
    int64_t step;           /* 0-based index of this step */
    float *grads;           /* the gradient arena (tab->total floats, laid out by the table),
                             * zeroed: backward functions accumulate into it. A tensor
                             * flagged QC_FROZEN is the exception: its gradient is
                             * neither cleared nor read, so it may hold anything */
} qtr_step_ctx;

/* An objective: callbacks and the pointer they get. Metric names are column
 * names of the CSV ("loss_text_image", "val_accuracy"), so plain ASCII
 * without commas; step metrics follow the loss, validation metrics close the
 * row. A metric not measured this step is NaN (an empty cell). */
typedef struct qtr_objective {
    const char *name;                      /* for messages: "contrastive", "probe" */
    qc_table *tab;                         /* the parameters, owned by the objective */
    float *params;                         /* tab->total floats */
    int n_metrics;                         /* step metrics, at most QTR_MAX_METRICS */
    const char *const *metric_names;
    int n_val;                             /* validation metrics, at most QTR_MAX_METRICS */
    const char *const *val_names;
    int64_t samples_per_step;              /* for the rate (samples/s) */
    void *user;

    /* Prepares the batch of step `step` (0-based). The first call of a run
     * gets the step it starts from (the checkpoint's when resuming). */
    qiao_status (*next_batch)(void *user, int64_t step);
    /* Forward and backward on that batch: *loss, the gradients accumulated
     * into c->grads, and metrics[0 .. n_metrics) (NaN = not measured). A
     * non-finite *loss stops the run with an error naming the step. */
    qiao_status (*step)(void *user, const qtr_step_ctx *c, float *loss, float *metrics);
    /* Optional: after the update, metrics that read the updated parameters
     * (a learned temperature) may be filled in. */
    void (*after_update)(void *user, float *metrics);
    /* Optional: val[0 .. n_val) on held-out data. A failure is logged and
     * leaves NaN; it does not stop training. */
    qiao_status (*validate)(void *user, const qb_exec *ex, float *val);
    /* Optional: writes the checkpoint file: the parameters (f32) with the
     * trainer's `extra` tensors and `meta` pairs added, atomically. NULL: the
     * trainer writes the table, the extras and the metadata (qc_st_write). A
     * model file that its loader reads as a model goes through here. */
    qiao_status (*save)(void *user, const char *path, const qc_st_entry *extra, size_t n_extra, const qc_st_kv *meta,
                        size_t n_meta);
    /* Optional: the objective's keys for the checkpoint's "qiao.train"
     * object (batch, seed, loss weights), after the trainer's. */
    void (*hparams_json)(void *user, struct cJSON *obj);
    /* Optional: the objective's own state (an RNG, a data cursor) as a
     * string kept in the checkpoint (malloc'd; the trainer frees it), and
     * its restore. NULL from save_state is out of memory. */
    char *(*save_state)(void *user);
    qiao_status (*load_state)(void *user, const char *state);
} qtr_objective;

/* One row of the log, handed to on_step after every step. */
typedef struct qtr_log {
    int64_t step;            /* 1-based, after the update */
    int64_t steps;
    double seconds;          /* wall time of the run so far, earlier runs included when resumed */
    double samples_per_s;    /* this run's rate */
    double eta_s;            /* seconds left at this run's rate (NaN before the rate is known) */
    float lr;
    float loss;
    float grad_norm;         /* before clipping */
    const float *metrics;    /* (n_metrics) */
    const float *val;        /* (n_val), NaN when validation did not run this step */
    bool validated;
    bool checkpointed;       /* a checkpoint is written after this step (the last, or every
                              * ckpt_every); a stop writes one too */
} qtr_log;

typedef struct qtr_params {
    qtr_hparams hp;                    /* after qtr_hparams_finish, or it is done here */
    const qb_exec *ex;                 /* the compute context */
    const char *ckpt_path;             /* checkpoint, written atomically; NULL = none */
    const char *resume_path;           /* checkpoint to start from; NULL = fresh (step 0) */
    const char *csv_path;              /* CSV log; NULL = none */
    const qtr_hparams *hp_default;     /* what qtr_hparams_to_json leaves out (NULL: qtr_hparams_default()) */
    /* Called after every step from the training thread; a nonzero return
     * stops the run after that step, with a checkpoint. */
    int (*on_step)(const qtr_log *log, void *user);
    void *user;
    /* Polled before every step: nonzero stops the run as above. A flag a
     * signal handler sets (the CLI's SIGINT), and a callback for an API
     * whose caller cancels that way; either may be NULL. */
    const volatile sig_atomic_t *stop;
    int (*cancel)(void *user);
    void *cancel_user;
    /* The per-layer profile (core/profile.h), or NULL. The run's first
     * prof_skip steps warm up unrecorded (the loader starting, first-touch
     * page faults); every later step reports to `prof` through a copy of
     * `ex` that carries it: the loader's wait, gradient zeroing, the
     * objective's forward and backward layer by layer, the schedule,
     * clipping and AdamW, and the step's wall time (validation, logging
     * and checkpoints are outside it). With prof_roofline_s > 0 the run
     * then spends about that long measuring the roofline: raw single-thread
     * sgemm (ex's gemm on one thread) on a 1024^3 product and on every GEMM
     * shape the steps recorded, times ex's threads (qc_prof_set_peak,
     * qc_prof_set_shape_raw). */
    struct qc_prof *prof;
    int64_t prof_skip;
    double prof_roofline_s;
} qtr_params;

/* What a run did. */
typedef struct qtr_result {
    int64_t step0;           /* the step the run started from */
    int64_t step;            /* completed steps */
    double seconds;          /* wall time, earlier runs included */
} qtr_result;

/* Runs `obj` from step 0 or the checkpoint p->resume_path to p->hp.steps.
 * Returns QIAO_OK (the last step's checkpoint written where ckpt_path is
 * set), QIAO_ERR_CANCELLED when stopped (after a checkpoint where ckpt_path
 * is set; the message names the step and the file to resume from), or the
 * error. *res (may be NULL) is filled in every case. */
qiao_status qtr_run(const qtr_objective *obj, const qtr_params *p, qtr_result *res);

/* The roofline measurement qtr_run does after a profiled run, on its own:
 * about `seconds` of GEMMs on ex's backend with one thread. */
qiao_status qtr_profile_roofline(const qb_exec *ex, struct qc_prof *prof, double seconds);

/* A checkpoint's step and its "qiao.train" object without "step" and
 * "seconds" (malloc'd JSON text, the caller frees it; may be NULL). */
qiao_status qtr_checkpoint_info(const char *path, int64_t *step, char **hparams_json);
/* The recipe a checkpoint's run was started with, {"train": <that object>}:
 * what the objectives' recipe parsers read, so a resumed run goes on with
 * the hyperparameters it began with (the model config's own "train"
 * section says how the model it started from was made, not this run). */
qiao_status qtr_checkpoint_recipe(const char *path, char **json);

#endif /* QIAO_MODELS_TRAINER_H */
