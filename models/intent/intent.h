/* models/intent/intent.h - the intent classifier (issue 18): a text tower,
 * qiao's own or an imported pretrained encoder (multilingual-e5...), with a
 * head "intent" on its embedding, fine-tuned in C through the generic
 * trainer on a business's own examples (data.h), then evaluated.
 *
 * The model is the starting model's text tower (its other towers, fusion
 * and heads dropped) plus
 *   "heads": {"intent": {"kind": "mlp", "tower": "text", "input": "embedding",
 *             "hidden": H, "classes": K, "labels": [...], "scale": S}}
 * whose labels are the training file's intents in sorted order. The head
 * reads the unit-length embedding times S (model.h): with S = 1 a linear
 * head at a fine-tuning learning rate cannot move its logits far enough
 * from 0 in a few hundred steps. The encoder trains at train.lr (2e-5 for
 * an imported encoder, the BERT recipe) and the new head at train.head_lr
 * (1e-3), AdamW's per-tensor factor. Texts get the model's "query" prompt
 * when it has one (e5 is trained to see "query: " before a text to
 * classify).
 *
 * Single-label sets so far: a multi-label set (CrossWOZ's "intents"),
 * entities, calibration and out-of-scope detection come next
 * (QIAO_ERR_UNSUPPORTED names what is missing).
 *
 * Not a public header: prefix qmi_. */
#ifndef QIAO_MODELS_INTENT_H
#define QIAO_MODELS_INTENT_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "models/intent/data.h"
#include "models/model.h"
#include "models/train/trainer.h"

#define QMI_HEAD "intent"

typedef struct qmi_hparams {
    qtr_hparams tr;      /* steps (0: from epochs), lr, warmup, decay, clip, eval/ckpt cadence */
    int64_t batch;       /* texts per step; default 32 */
    double epochs;       /* passes over the training set when tr.steps is 0; default 3 */
    double val_fraction; /* carved off the training file when no validation file is given; default 0.1 */
    uint64_t seed;       /* the head's initial values, the split, the batch order; default 1 */
    float head_lr;       /* the head's learning rate; default 1e-3 */
    float smoothing;     /* label smoothing; default 0 */
    int64_t hidden;      /* the head's hidden layer, 0 (default): linear */
    float scale;         /* the head's input scale; default 16 */
} qmi_hparams;

/* The defaults above; tr.lr 2e-5, tr.steps 0, tr.warmup -1 (a tenth of the
 * steps once known), eval_every 0 (once per epoch once known). */
qmi_hparams qmi_hparams_default(void);
/* Reads a recipe: top-level "hidden" and "scale", and a "train" object with
 * the trainer's keys and batch, epochs, val_fraction, seed, head_lr,
 * smoothing. NULL json: the defaults. Errors name `what` and the key. */
qiao_status qmi_hparams_from_json(const char *json, const char *what, qmi_hparams *out);

typedef struct qmi_train_params {
    const char *init_path;   /* the starting model (an encoder, or a classifier to go on training) */
    const char *data_path;   /* training JSONL */
    const char *val_path;    /* validation JSONL, or NULL: carved off the training file */
    const char *out_path;    /* the classifier, written at the end (bf16 weights) */
    const char *ckpt_path;   /* the checkpoint */
    const char *resume_path; /* a checkpoint to continue, or NULL */
    const char *log_path;    /* the CSV log, or NULL */
    qmi_hparams hp;
    int threads; /* 0: all cores */
    int (*on_step)(const qtr_log *log, void *user);
    void *user;
    const volatile sig_atomic_t *stop;
} qmi_train_params;

/* Step metrics (qtr_log.metrics) and validation metrics (qtr_log.val). */
enum { QMI_M_ACC = 0, QMI_N_METRICS };
enum { QMI_V_ACC = 0, QMI_V_MACRO_F1, QMI_N_VAL };

/* Trains (or goes on training) a classifier. QIAO_ERR_CANCELLED after a
 * stop, with a checkpoint; data errors name file:line. */
qiao_status qmi_train(const qmi_train_params *p);

/* What a classifier does on a labelled set. */
typedef struct qmi_eval {
    int64_t n;
    double accuracy;
    double macro_f1; /* over the labels that occur in the set or are predicted */
    int32_t n_labels;
    int64_t *confusion; /* (n_labels, n_labels): row = the truth, column = the prediction; owned */
    double seconds;
} qmi_eval;

/* Classifies every example of `set` (read against the model's labels) in
 * batches of `batch` on `threads` threads. Free the result with
 * qmi_eval_free. QIAO_ERR_INVALID_ARGUMENT for a model without the intent
 * head. */
qiao_status qmi_evaluate(const qmod_model *m, const qmi_set *set, int threads, int64_t batch, qmi_eval *out);
void qmi_eval_free(qmi_eval *e);

/* The label space of a classifier, as a set with no examples (for reading a
 * test file against it: qmi_set_load's `space`). */
qiao_status qmi_model_space(const qmod_model *m, qmi_set *out);

/* Probabilities (n, K) of n texts, K the head's classes. */
qiao_status qmi_classify(const qmod_model *m, const char *const *texts, size_t n, int threads, float *probs);

#endif /* QIAO_MODELS_INTENT_H */
