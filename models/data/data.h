/* models/data/data.h - paired training and evaluation data: a shapes-world split
 * (datasets/shapes, docs/datasets.md) or an image-less speech set (FSDD,
 * `qiao dataset fsdd`) read from its manifest, and the background loader
 * that turns it into encoder batches for training.
 *
 * A scene gives one image, its long caption in each language (the caption
 * that names every object) and, when the split was generated with speech,
 * that caption spoken in each language. Retrieval trains and evaluates on
 * these triples.
 *
 * Image-less data sets: every scene of a data set has an image, or none
 * does (a manifest mixing both is QIAO_ERR_FORMAT). Without images a scene
 * is a caption and its recordings (FSDD: the word "seven"/"七" and one
 * spoken take), and only the audio-text pair trains. Many scenes then share
 * a caption, so batches are built differently (see qmod_loader_start).
 *
 * Not a public header: prefix qmod_. */
#ifndef QIAO_MODELS_DATA_H
#define QIAO_MODELS_DATA_H

#include <stdbool.h>
#include <stdint.h>

#include "models/embed.h"

enum { QMOD_LANG_ZH = 0, QMOD_LANG_EN = 1, QMOD_N_LANGS = 2 };

/* "zh", "en". */
const char *qmod_lang_name(int lang);

typedef struct qmod_scene {
    char *id;                      /* "shapes-test-000123" */
    char *image;                   /* path (dir joined); NULL in an image-less data set */
    char *caption[QMOD_N_LANGS];   /* the long caption; NULL when the language is absent */
    char *speech[QMOD_N_LANGS];    /* path of the spoken long caption; NULL when absent */
    char *signature;               /* the scene's objects as a canonical string (each object's
                                    * colour, size, shape and grid place, sorted): two scenes
                                    * with equal signatures are described by the same long
                                    * caption, so retrieval counts either as a hit. A scene
                                    * without "objects" (image-less data) uses its "en" long
                                    * caption, else its "zh" one: every "seven" is one target */
    int64_t group;                 /* index of the signature among the data set's distinct
                                    * ones, 0..n_groups-1 (numbered in strcmp order) */
} qmod_scene;

typedef struct qmod_dataset {
    char *dir;
    qmod_scene *scenes;
    int64_t n;
    int64_t n_speech;              /* scenes with speech in at least one language */
    int64_t n_groups;              /* distinct signatures */
    bool has_images;               /* every scene has an image (false: none has) */
} qmod_dataset;

/* Reads DIR/manifest.jsonl. Every line must parse; "image" and "objects"
 * are either on every line (the objects give the signature) or on none
 * ("objects" may still give the signature there). A malformed line, or one
 * that has an image when an earlier one had none (or the reverse), is
 * QIAO_ERR_FORMAT naming file:line; a missing manifest QIAO_ERR_IO. Files
 * themselves are not opened here. */
qiao_status qmod_dataset_load(const char *dir, qmod_dataset *out);
/* Accepts a cleared dataset. */
void qmod_dataset_free(qmod_dataset *d);

/* One training batch: B scenes; row i of `text` is scene i's long caption in
 * language text_lang[i], row i of `image` its picture (`image` is empty,
 * image.B = 0, in an image-less data set). `audio` holds the
 * A <= B scenes that have speech (A may be 0): audio row j is the spoken
 * long caption of scene audio_rows[j] in language audio_lang[j] (drawn
 * independently of text_lang, so audio-text pairs cross languages too). */
typedef struct qmod_train_batch {
    int64_t index;                 /* global batch number, from 0 */
    int64_t B, A;
    int64_t *scene;                /* (B) dataset index of each row */
    uint8_t *text_lang;            /* (B) */
    qmod_batch text, image, audio;
    int64_t *audio_rows;           /* (A) row in text/image of each audio item */
    uint8_t *audio_lang;           /* (A) */
} qmod_train_batch;

typedef struct qmod_loader_params {
    const qmod_model *model;       /* tokenizer and config; only read */
    const qmod_dataset *data;      /* only read; outlives the loader */
    int64_t batch;                 /* B; an epoch is qmod_loader_epoch_batches() batches, the rest
                                    * dropped */
    uint64_t seed;
    int threads;                   /* worker threads, >= 1 */
    int prefetch;                  /* batches ready ahead, >= 1 */
    int64_t first_batch;           /* resume: the first batch index to produce */
    bool audio;                    /* load speech (false: A = 0 always) */
    int64_t place_groups;          /* > 1: place-group batches of up to this many scenes (below);
                                    * 0 or 1: a plain shuffle */
} qmod_loader_params;

typedef struct qmod_loader qmod_loader;

/* Batches in one epoch of `d` at batch size B: floor(n / B) with images.
 * Image-less: the most batches of B scenes with B distinct signatures that
 * the signature groups (sizes s_g) allow, the largest t with
 * sum_g min(s_g, t) >= B t (floor(n / B) when the groups are of equal
 * size); 0 when B > n_groups. */
int64_t qmod_loader_epoch_batches(const qmod_dataset *d, int64_t batch);

/* Starts the workers. Batch k is a pure function of (seed, k, dataset):
 * epoch e = k / batches_per_epoch visits the scenes in an order drawn from
 * (seed, e), and the languages of row i come from (seed, k, i), so a run is
 * reproducible and a resumed run sees exactly the batches the interrupted
 * one would have. Each scene appears at most once per epoch.
 *
 * With images the order is a permutation of the scenes, cut into batches.
 * With place_groups G > 1 it is drawn so that scenes holding the same
 * objects in different places sit side by side: a random batch rarely
 * holds two such scenes, so the loss seldom asks where things are, and a
 * model trained on plain shuffles confuses "a red star top left" with "a
 * red star bottom right". Scenes sharing their place-free signature are
 * dealt into groups of at most G with distinct signatures, and the groups
 * and the remaining scenes are shuffled as units.
 * Image-less, no two rows of a batch share a signature: B clips of 10
 * spoken digits drawn at random would put several "seven"s in one batch,
 * and InfoNCE would push each clip away from a caption that describes it
 * (false negatives). So B must be <= n_groups (else
 * QIAO_ERR_INVALID_ARGUMENT; FSDD: B <= 10), each group's scenes are
 * shuffled per epoch, and batch b of the epoch takes the next scene of the
 * B groups with the most scenes left (ties broken at random per batch).
 * That greedy rule reaches the bound of qmod_loader_epoch_batches, so with
 * groups of equal size an epoch drops no more than the n mod B scenes a
 * data set with images would. */
qiao_status qmod_loader_start(const qmod_loader_params *p, qmod_loader **out);
/* The next batch in index order (blocks until ready). A file that fails to
 * decode fails the call with its error (path named) and stops the loader:
 * training data is expected to be complete. */
qiao_status qmod_loader_next(qmod_loader *l, qmod_train_batch **out);
/* Gives a batch back for reuse. */
void qmod_loader_release(qmod_loader *l, qmod_train_batch *b);
/* Stops and joins the workers, frees everything. Accepts NULL. */
void qmod_loader_stop(qmod_loader *l);

/* Building one batch synchronously (what the workers run). */
qiao_status qmod_train_batch_make(const qmod_loader_params *p, int64_t index, qmod_train_batch *out);
void qmod_train_batch_free(qmod_train_batch *b);

#endif /* QIAO_MODELS_DATA_H */
