/* models/data/vqa.h - visual question answering data: a shapes-world split's
 * questions (datasets/shapes, docs/datasets.md) and the background loader
 * that turns them into batches of (typed question, picture, spoken
 * question), with the answer, the input statistics of dynamic modality
 * weighting (fusion/weighting.h) and, for training and robustness
 * evaluation, modality dropout and degraded inputs.
 *
 * A question is one (scene, qa entry) of the manifest: each question of a
 * scene is asked in both languages, so a scene of 5 questions gives 10.
 * Its spoken form is the WAV the manifest names at speech.qa[k] (generated
 * with --speech or --speech-questions), or none.
 *
 * Every batch holds B rows in each of the three modalities, so the fusion
 * model's shapes never depend on what is missing. A row whose modality is
 * absent (dropped, or a question without a WAV) still holds a valid minimal
 * input that the encoders run on without error: text one padding token
 * (mask 0, length 0: the row pools to zeros, as an empty text does), audio
 * one frame of zeros (mask 0, length 0), a picture all-zero patches (the
 * normalized CLIP mean colour). present[b * QF_NMOD + m] tells
 * the model which to use.
 *
 * Not a public header: prefix qmod_. */
#ifndef QIAO_MODELS_DATA_VQA_H
#define QIAO_MODELS_DATA_VQA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fusion/weighting.h"
#include "models/data/data.h"
#include "models/embed.h"

/* ---- the questions of a split -------------------------------------------------- */

typedef struct qmod_vqa_question {
    int64_t scene;  /* index into qmod_vqa_dataset.scenes */
    int32_t answer; /* index into qmod_vqa_dataset.answers (= SHAPES_A_* for shapes-1.x) */
    uint8_t type;   /* index into qmod_vqa_dataset.types (= SHAPES_Q_*) */
    uint8_t lang;   /* QMOD_LANG_ZH or QMOD_LANG_EN */
    char *text;     /* the question, UTF-8 */
    char *speech;   /* path of its WAV (dir joined), NULL when not spoken */
} qmod_vqa_question;

/* An object's attributes, indexing dataset.json's lists of the same names. */
enum { QMOD_VQA_SHAPE = 0, QMOD_VQA_COLOR, QMOD_VQA_SIZE, QMOD_VQA_NATTR };

/* One object of a scene: its centre and circumscribed radius in image units
 * (x right, y down, [0, 1]) when the manifest gives "x", "y" and "r" (else
 * r is 0), and its shape, colour and size as indices into the dataset's
 * attribute lists (-1 where the list or the name is missing). */
typedef struct qmod_vqa_object {
    float x, y, r;
    int16_t attr[QMOD_VQA_NATTR];
} qmod_vqa_object;

typedef struct qmod_vqa_scene {
    char *id;    /* "shapes-val-000123" */
    char *image; /* path (dir joined) */
    int32_t n_objects;
    qmod_vqa_object *objects; /* (n_objects) */
    bool cogent;            /* holds one of dataset.json's "cogent_pairs" (colour and shape) */
    int64_t first_question; /* its questions are questions[first_question .. + n_questions) */
    int64_t n_questions;
} qmod_vqa_scene;

typedef struct qmod_vqa_dataset {
    char *dir;
    qmod_vqa_scene *scenes;
    int64_t n_scenes;
    qmod_vqa_question *questions; /* in manifest order: scene by scene, as its "qa" list */
    int64_t n_questions;
    int64_t n_spoken; /* questions with a WAV */
    char **answers;   /* (n_answers) canonical answer keys, dataset.json "answers"[i].id */
    int32_t n_answers;
    char **types; /* (n_types) question type names, dataset.json "question_types" */
    int32_t n_types;
    char **attr[QMOD_VQA_NATTR]; /* dataset.json "shapes", "colors", "sizes"; NULL when absent */
    int32_t n_attr[QMOD_VQA_NATTR];
} qmod_vqa_dataset;

/* Reads DIR/dataset.json (the answer vocabulary, question types and cogent
 * pairs) and DIR/manifest.jsonl. A line without "id", "image", "objects"
 * (each with "color" and "shape") or "qa" (each with "lang" zh or en,
 * "question", "answer_id" and "type" from dataset.json's lists), or whose
 * "speech"."qa" is not an array of paths parallel to "qa", is
 * QIAO_ERR_FORMAT naming file:line; a missing file QIAO_ERR_IO. A scene
 * without questions is kept (it has none to ask). WAVs and pictures are not
 * opened here: a missing one fails the batch that needs it. */
qiao_status qmod_vqa_dataset_load(const char *dir, qmod_vqa_dataset *out);
/* The same from memory: `desc` is dataset.json's text, `manifest` the
 * manifest's bytes (len of them; NUL bytes are QIAO_ERR_FORMAT), `dir`
 * what relative paths are joined to, `name` the manifest's name in
 * messages. What the fuzz target drives. */
qiao_status qmod_vqa_dataset_parse(const char *dir, const char *name, const char *desc, const char *manifest,
                                   size_t len, qmod_vqa_dataset *out);
/* Accepts NULL and a cleared dataset. */
void qmod_vqa_dataset_free(qmod_vqa_dataset *d);

/* What lies under each cell of a grid x grid partition of scene `scene`'s
 * picture (row-major from the top left), the target of the dense
 * auxiliary loss on the picture tower's patch tokens: labels[cell *
 * QMOD_VQA_NATTR + a] is 1 + attribute a of the object covering the
 * largest share of the cell, 0 when no object covers a quarter of it, and
 * -1 (no target) when attribute a is unknown or the scene's objects have no
 * places. Coverage is sampled on 4 x 4 points per cell against a disc of
 * 0.8 r (a shape fills most of its circumscribed circle's inner part). */
void qmod_vqa_cell_labels(const qmod_vqa_dataset *d, int64_t scene, int grid, int32_t *labels);
/* The same labels for the G x G places of a fuser with places (fusion/
 * fuser.h): place (i, j) is labelled with the object whose centre lies in
 * it (the shapes world puts each object inside one cell of its 3 x 3 grid,
 * so at G = 3 a place holds one object at most; where two centres share a
 * place, the larger object), 0 where none does. */
void qmod_vqa_place_labels(const qmod_vqa_dataset *d, int64_t scene, int G, int32_t *labels);

/* ---- what a batch looks like --------------------------------------------------- */

/* How the audio is degraded: white noise, or babble (the sum of four other
 * questions of the split, spoken by other voices, looped to length). */
typedef enum qmod_vqa_noise { QMOD_VQA_NOISE_WHITE = 0, QMOD_VQA_NOISE_BABBLE = 1 } qmod_vqa_noise;

/* What an occluder is filled with: grey (128) or black, drawn per row, or
 * always one of them, or the picture's mean colour. On the shapes world's
 * light backgrounds a grey or black occluder is a dark object with sharp
 * edges: it raises the picture's contrast and Laplacian statistics (at
 * 40% cover, contrast 6 -> 55 levels on a sparse scene, 35 -> 58 on a busy
 * one; Laplacian about 1.3-2x); a mean-coloured one hides what it covers
 * and lowers both, as weighting.h's "flat occluder" means. */
typedef enum qmod_vqa_fill {
    QMOD_VQA_FILL_GREY_OR_BLACK = 0,
    QMOD_VQA_FILL_GREY = 1,
    QMOD_VQA_FILL_BLACK = 2,
    QMOD_VQA_FILL_MEAN = 3
} qmod_vqa_fill;

/* What each row of a batch gets. Probabilities are per row and independent
 * across rows; a range [lo, hi] is drawn uniformly (lo == hi: fixed). A
 * fixed evaluation condition is probabilities of 0 or 1 and ranges with
 * lo == hi: e.g. spoken-only with the picture at noise sigma 20 is
 * p_drop_text = 1, p_image_noise = 1, image_sigma = {20, 20}. The
 * occluder's place and the noise samples are still drawn, from (seed,
 * question), so an evaluation gives the same inputs every run and for any
 * batch size.
 *
 * Question modalities: text is dropped with p_drop_text, else audio with
 * p_drop_audio (never both: p_drop_text + p_drop_audio <= 1). A question
 * without a WAV has no audio and keeps its text whatever p_drop_text says,
 * except when p_drop_text is 1 (spoken-only), which needs a WAV for every
 * question (else QIAO_ERR_INVALID_ARGUMENT when the loader starts). */
typedef struct qmod_vqa_params {
    size_t struct_size;         /* set by qmod_vqa_default_params() */
    float p_drop_text;          /* typed question absent; default 0 */
    float p_drop_audio;         /* spoken question absent; default 0 (1: typed-only, no WAV is read) */
    float p_drop_image;         /* picture absent; default 0 */
    float p_image_noise;        /* Gaussian pixel noise, sigma in levels 0-255 drawn from image_sigma */
    float image_sigma[2];       /* default {4, 40} */
    float p_occlude;            /* a grey or black rectangle covering a fraction of the picture's area */
    float occlude_frac[2];      /* drawn from this range; default {0.1, 0.4} */
    qmod_vqa_fill occlude_fill; /* default grey or black */
    float p_audio_noise;        /* additive noise at an SNR (dB) drawn from audio_snr_db */
    float audio_snr_db[2];      /* default {0, 20} */
    qmod_vqa_noise audio_noise; /* default white */
} qmod_vqa_params;

qmod_vqa_params qmod_vqa_default_params(void);

/* One batch of B questions. Row b of text, image and audio is question
 * question[b]; all three hold B rows (absent rows as the file comment
 * says). */
typedef struct qmod_vqa_batch {
    int64_t index;         /* batch number, from 0 */
    int64_t B;             /* rows (an evaluation's last batch may hold fewer than asked) */
    int64_t *question;     /* (B) index into the dataset's questions */
    int64_t *scene;        /* (B) */
    int32_t *answer;       /* (B) */
    uint8_t *type;         /* (B) */
    uint8_t *lang;         /* (B) */
    uint8_t *present;      /* (B, QF_NMOD): 1 where row b has modality m (QF_TEXT, QF_IMAGE, QF_AUDIO) */
    float *stats[QF_NMOD]; /* each (B, QF_NSTATS): raw input statistics of the
                            * input as the model sees it (after degradation),
                            * qf_text_stats / qf_image_stats / qf_audio_stats;
                            * zeros where absent */
    qmod_batch text, image, audio;
    /* What each row got (for analysis): 0 where clean; snr_db is +INFINITY
     * where no noise was added. */
    float *image_sigma; /* (B) levels */
    float *occluded;    /* (B) fraction of the area covered */
    float *snr_db;      /* (B) */
} qmod_vqa_batch;

void qmod_vqa_batch_free(qmod_vqa_batch *b);

/* ---- the picture cache --------------------------------------------------------- */

/* Decoded pictures, one per scene, each decoded once on first use and kept
 * (64 x 64 RGB is 12 KB; 10,000 scenes about 120 MB). Thread-safe: loaders
 * on several threads, a training loader and an evaluation one, may share
 * it. It reads the dataset, which must outlive it. */
typedef struct qmod_vqa_cache qmod_vqa_cache;

qiao_status qmod_vqa_cache_new(const qmod_vqa_dataset *d, qmod_vqa_cache **out);
/* Accepts NULL. No loader may still use it. */
void qmod_vqa_cache_free(qmod_vqa_cache *c);
/* Bytes of decoded pixels held now. */
size_t qmod_vqa_cache_bytes(const qmod_vqa_cache *c);

/* ---- the loader ---------------------------------------------------------------- */

typedef struct qmod_vqa_loader_params {
    const qmod_model *model;      /* tokenizer and config; only read; needs the text (with its
                                   * tokenizer), image and audio towers */
    const qmod_vqa_dataset *data; /* only read; outlives the loader */
    qmod_vqa_cache *cache;        /* optional, shared; NULL: the loader keeps its own */
    qmod_vqa_params vqa;          /* dropout and degradations */
    int64_t batch;                /* B */
    uint64_t seed;
    int threads;         /* worker threads, >= 1 */
    int prefetch;        /* batches ready ahead, >= 1 */
    int64_t first_batch; /* resume: the first batch index to produce */
    bool eval;           /* walk every question once in order (below) */
} qmod_vqa_loader_params;

typedef struct qmod_vqa_loader qmod_vqa_loader;

/* Batches in one training epoch: floor(n_questions / B) (the rest dropped);
 * in evaluation ceil(n_questions / B). */
int64_t qmod_vqa_epoch_batches(const qmod_vqa_dataset *d, int64_t batch, bool eval);

/* Starts the workers. Training: batch k is a pure function of (seed, k,
 * params, dataset): epoch e = k / batches_per_epoch visits the questions in
 * an order drawn from (seed, e), and each row's dropout and degradations
 * come from (seed, k, row), so a resumed run (first_batch) sees exactly
 * the batches the interrupted one would have, for any thread count. The
 * batches never end. Evaluation (eval): batch k holds questions k B ..
 * min((k + 1) B, n) - 1 in manifest order, each row's draws from (seed,
 * question), and qmod_vqa_loader_next gives NULL after the last. */
qiao_status qmod_vqa_loader_start(const qmod_vqa_loader_params *p, qmod_vqa_loader **out);
/* The next batch in index order (blocks until ready); *out NULL, with
 * QIAO_OK, past an evaluation's last batch. A file that fails to decode
 * fails the call with its error (path and scene named) and stops the
 * loader. */
qiao_status qmod_vqa_loader_next(qmod_vqa_loader *l, qmod_vqa_batch **out);
/* Gives a batch back for reuse. */
void qmod_vqa_loader_release(qmod_vqa_loader *l, qmod_vqa_batch *b);
/* Stops and joins the workers, frees everything. Accepts NULL. */
void qmod_vqa_loader_stop(qmod_vqa_loader *l);

/* Building one batch synchronously (what the workers run); p->cache may be
 * NULL (the pictures are then decoded for this batch alone). */
qiao_status qmod_vqa_batch_make(const qmod_vqa_loader_params *p, int64_t index, qmod_vqa_batch *out);

#endif /* QIAO_MODELS_DATA_VQA_H */
