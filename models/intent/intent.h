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
 * After training the classifier is calibrated on the validation set
 * (evaluate.c): the head's "temperature" (temperature scaling: the one
 * that minimizes the validation NLL) and "threshold" (the calibrated top
 * probability below which a text is out of scope, the largest that rejects
 * at most hp.rejection of the in-scope validation examples), and
 * "oos_label" when the labels hold hp.oos_label (CLINC150's "oos" class).
 *
 * A multi-label set (CrossWOZ's "intents" lists) makes a multi-label head
 * (a sigmoid per intent, binary cross-entropy); a set with entities adds
 * the tagger QMI_ENT_HEAD, trained jointly.
 *
 * Context (hp.context = N > 0, kept as the intent head's "context"): the
 * text tower reads the text, then the last N earlier turns of the
 * conversation (qmi_batch), so a "yes" after "shall I book it?" and after
 * "anything else?" can mean different things. The tagger tags the text
 * only.
 *
 * Not a public header: prefix qmi_. */
#ifndef QIAO_MODELS_INTENT_H
#define QIAO_MODELS_INTENT_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "models/head.h"
#include "models/intent/data.h"
#include "models/model.h"
#include "models/train/trainer.h"

#define QMI_HEAD "intent"
/* The entity tagger: a head on the text tower's tokens with classes "O",
 * then "B-<type>" and "I-<type>" for each entity type in sorted order (BIO
 * tags), trained jointly with the intent head when the training file has
 * entities. */
#define QMI_ENT_HEAD "entities"
/* At most this many layers in a recipe's "layers" list, and this many
 * bytes in its teacher's path. */
#define QMI_MAX_LAYERS 64
#define QMI_MAX_PATH 1024

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
    double rejection;    /* in-scope validation examples the out-of-scope threshold may reject; default 0.05 */
    char oos_label[64];  /* the label that means out of scope when the data has it; default "oos" */
    float entity_weight; /* the entity tagger's loss weight; 0: no tagger; default 1 */
    int64_t context;     /* earlier turns read after the text (a new head's "context"); default 0 */
    int64_t layers;      /* a new classifier keeps `layers` of the init's text layers (a smaller,
                          * faster model): its first ones, or with layer_list those layer_from names;
                          * 0 (default): all of them */
    bool layer_list;     /* the recipe's "layers" is a list: the new layer i starts from the init's
                          * layer layer_from[i] */
    int32_t layer_from[QMI_MAX_LAYERS];
    /* knowledge distillation ("teacher"): the intent head's loss becomes
     * (1 - kd_alpha) CE(labels) + kd_alpha T^2 KL(teacher_T || student_T),
     * T = kd_temperature, teacher_T = softmax(teacher logits / T) of each
     * training text, computed once before training (the teacher is frozen;
     * it must have the same intents). The tagger's loss is unchanged. */
    char teacher[QMI_MAX_PATH]; /* the teacher classifier's file; "" (default): none */
    float kd_alpha;             /* default 0.5 */
    float kd_temperature;       /* default 2 */
} qmi_hparams;

/* The defaults above; tr.lr 2e-5, tr.steps 0, tr.warmup -1 (a tenth of the
 * steps once known), eval_every 0 (once per epoch once known). */
qmi_hparams qmi_hparams_default(void);
/* Reads a recipe: top-level "hidden", "scale", "context", "layers" (a
 * count, or a list of the init's layer indices), "teacher" ({"model":
 * path, "alpha": a, "temperature": T}; the path as given, relative to the
 * working directory), and a "train" object with the trainer's keys and
 * batch, epochs, val_fraction, seed, head_lr, smoothing, rejection,
 * oos_label, entity_weight. NULL json: the defaults. Errors name `what` and
 * the key. */
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
enum { QMI_M_ACC = 0, QMI_M_ENT_LOSS, QMI_N_METRICS };
enum { QMI_V_ACC = 0, QMI_V_MACRO_F1, QMI_V_ENT_F1, QMI_N_VAL };

/* The tagger's training targets for one example: the BIO tag of each of
 * its T tokens (offsets (T, 2) in the prompted text, the prompt prompt_len
 * bytes; -1 where there is no token): a token overlapping a span is its B
 * tag when it is the span's first such token, else its I tag (the first
 * span by start wins a token that overlaps two); other tokens are O (0). */
void qmi_bio_targets(const qmi_example *e, const int64_t *offsets, int64_t T, int64_t prompt_len, int32_t *tags);

/* The distillation term of n rows of K student logits against the
 * teacher's probabilities at temperature T (n, K; each row sums to 1): the
 * mean over the rows of T^2 KL(teacher || softmax(logits / T)), returned;
 * adds `weight` times its gradient, weight T (softmax(logits / T) -
 * teacher) / n, to dlogits. */
float qmi_distill_loss(const float *logits, const float *teacher, int64_t n, int64_t K, float T, float weight,
                       float *dlogits);

/* Trains (or goes on training) a classifier. QIAO_ERR_CANCELLED after a
 * stop, with a checkpoint; data errors name file:line. */
qiao_status qmi_train(const qmi_train_params *p);

/* What a classifier does on a labelled set. The prediction is the top
 * class; a text is rejected (out of scope) when that class is the head's
 * oos class or its calibrated probability is below the head's threshold. */
typedef struct qmi_eval {
    int64_t n;
    double accuracy;    /* the top class is the truth (rejection aside); multi-label: the classes at 0.5 or
                           more are exactly the example's */
    double macro_f1;    /* over the labels that occur in the set or are predicted */
    double micro_f1;    /* multi-label: over (example, class) pairs; 0 otherwise */
    int32_t n_labels;
    int64_t *confusion; /* (n_labels, n_labels): row = the truth, column = the top class; owned; NULL for
                           a multi-label head */
    int64_t n_in, n_oos;      /* examples in scope, and labelled with the oos class */
    double in_scope_accuracy; /* in-scope examples neither rejected nor wrong (CLINC150's in-scope accuracy) */
    double false_rejection;   /* in-scope examples rejected */
    double oos_recall;        /* oos examples rejected; NAN without any */
    double oos_precision;     /* rejected examples that are oos; NAN when none is rejected or the set has no oos */
    double ece_raw, ece;      /* expected calibration error (15 bins) at temperature 1 and the model's */
    /* entities (a model with a tagger): spans found against the file's,
     * equal when type, start and end are */
    int64_t ent_gold, ent_found, ent_right;
    double ent_precision, ent_recall, ent_f1; /* 0 without a tagger */
    double nll_raw, nll;      /* mean negative log-likelihood, the same two ways */
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

/* The same on one context with the caller's workspaces (training
 * validates with its own). */
qiao_status qmi_evaluate_with(const qb_exec *ex, const qmod_model *m, qmod_work *w, qmod_head_work *hw,
                              qmod_head_work *ehw, int head, const qmi_set *set, int64_t batch, qmi_eval *out);

/* What calibration found on a validation set. */
typedef struct qmi_calibration {
    int64_t n;
    float temperature, threshold;
    double nll_before, nll_after, ece_before, ece_after;
} qmi_calibration;

/* Calibrates m's intent head on `val` (read against the model's labels):
 * the temperature, the threshold that rejects at most `rejection` of the
 * in-scope examples (0: none), and the oos label when `oos_label` is one of
 * the labels (NULL: none). m's config is rewritten (the next save carries
 * it). */
qiao_status qmi_calibrate(qmod_model *m, const qmi_set *val, int threads, double rejection, const char *oos_label,
                          qmi_calibration *out);
qiao_status qmi_calibrate_with(const qb_exec *ex, qmod_model *m, qmod_work *w, qmod_head_work *hw, int head,
                               const qmi_set *val, int64_t batch, double rejection, const char *oos_label,
                               qmi_calibration *out);

/* ---- classifying (classify.c, in libqiao) ---- */

/* The classifier's intents (its intent head's labels, in class order) and
 * its tagger's entity types (the names of its B tags; none without a
 * tagger), owned by the caller (free each and the array). Checks that the
 * intent head reads the text embedding and the tagger the text's tokens
 * with 1 + 2 classes per type: QIAO_ERR_FORMAT naming the model otherwise,
 * QIAO_ERR_INVALID_ARGUMENT for a model without the intent head. */
qiao_status qmi_model_names(const qmod_model *m, char ***intents, int32_t *n_intents, char ***types,
                            int32_t *n_types);

/* The classifier's decision on one text's calibrated probabilities. */
typedef struct qmi_decision {
    int32_t best;      /* the top class */
    float confidence;  /* its probability */
    float margin;      /* its probability minus the second's: small when the text is ambiguous */
    bool out_of_scope; /* the top class is the oos class, or confidence < threshold (multi-label: < 0.5
                          at least, no class is the text's) */
} qmi_decision;

/* The head's calibrated probabilities of one text's K logits: softmax(l /
 * T), or for a multi-label head sigmoid(l / T) per class. */
void qmi_probs(const qmod_head_config *h, const float *logits, float *probs);
/* softmax(logits / temperature) of K logits into probs. */
void qmi_softmax(const float *logits, int64_t K, float temperature, float *probs);
/* The decision on probs (the head's K classes) with `threshold` (the
 * head's, or a caller's own). */
void qmi_decide(const qmod_head_config *h, const float *probs, float threshold, qmi_decision *d);

/* The earlier turns of a conversation before a text, oldest first (each
 * NUL-terminated UTF-8; borrowed). */
typedef struct qmi_context {
    const char *const *turns;
    size_t n;
} qmi_context;

/* The text tower's batch of n texts, each with the model's "query" prompt
 * in front. When the intent head reads context ("context" N > 0) and
 * contexts is not NULL, each text's row goes on with the last N of its
 * turns, oldest first, each after a separator (the tokenizer's end of
 * sequence: [CLS] text [SEP] turn [SEP] ... for BERT's WordPiece, <s> text
 * </s> turn </s> ... for XLM-R's pieces). The text is tokenized as it is
 * without context (truncated only by max_tokens), and the turns fill what
 * is left of max_tokens from the newest back: an older turn is dropped
 * before a newer one is cut. Context tokens have offsets -1, so the
 * tagger's targets and spans never reach them; a row without turns is what
 * qmod_batch_text gives. Invalid UTF-8 in a turn is QIAO_ERR_FORMAT naming
 * the text's index and the turn's. */
qiao_status qmi_batch(const qmod_model *m, const char *const *texts, const qmi_context *contexts, size_t n,
                      qmod_batch *b);

/* Inference workspaces of the text tower and the head for `rows` texts at
 * a time (the tower's grows with longer texts); free with qmi_close_work. */
qiao_status qmi_open_work(const qmod_model *m, int head, int64_t rows, qmod_work *w, qmod_head_work *hw);
void qmi_close_work(qmod_work *w, qmod_head_work *hw);
/* The text tower's embeddings and the head's logits of n texts (n at most
 * what the workspaces hold) with their contexts (n, or NULL: none) as
 * qmi_batch reads them into b; both valid until the workspaces' next use. */
qiao_status qmi_logits(const qb_exec *ex, const qmod_model *m, qmod_work *w, qmod_head_work *hw,
                       const char *const *texts, const qmi_context *contexts, size_t n, qmod_batch *b,
                       const float **emb, const float **logits);

/* The entity tagger's workspace for `rows` token rows (B * T; grown when
 * smaller). */
qiao_status qmi_entity_reserve(const qmod_model *m, int head, qmod_head_work *hw, int64_t rows, bool train);
/* After qmi_logits on batch b (same workspace w): the tagger's logits
 * (B * T, classes) and the token sequence they were read from. */
qiao_status qmi_entity_logits(const qb_exec *ex, const qmod_model *m, int head, const qmod_work *w,
                              qmod_head_work *hw, const qmod_batch *b, bool train, const float **logits,
                              qmod_token_seq *tokens);

/* An entity found in a text. */
typedef struct qmi_found {
    int32_t type;         /* the entity type's index (class 1 + 2 type is its B tag) */
    int64_t start, end;   /* bytes of the text, [start, end) */
    float confidence;     /* the mean probability of its tokens' tags */
} qmi_found;

/* Decodes one text's T token rows of tagger logits into at most `max`
 * entities, in order: a B tag opens a span, I tags of its type extend it,
 * anything else closes it (an I tag without its B opens one). offsets (T,
 * 2) are the tokens' bytes in the prompted text (qmod_batch.offsets), the
 * prompt prompt_len bytes long; a span is its tokens' bytes less the
 * spaces at its ends. Returns the count, or -1 out of memory. */
int qmi_entity_decode(const qmod_head_config *h, const float *logits, const int64_t *offsets, int64_t T,
                      int64_t prompt_len, const char *text, size_t len, qmi_found *out, int max);
/* qmi_entity_decode on row `row` of batch b as qmi_entity_logits gave it
 * (logits (B * T, classes), T the token sequence's length) for that row's
 * text (without the prompt); out holds T entries. */
int qmi_entity_row(const qmod_model *m, int ent, const qmod_batch *b, int64_t T, const float *logits, int64_t row,
                   const char *text, size_t len, qmi_found *out);

/* Calibrated probabilities (n, K) of n texts without context, K the head's
 * classes. */
qiao_status qmi_classify(const qmod_model *m, const char *const *texts, size_t n, int threads, float *probs);

#endif /* QIAO_MODELS_INTENT_H */
