/* models/retrieval/eval.h - cross-modal retrieval evaluation on a shapes split,
 * and spoken-digit recognition as retrieval (below, digits.c).
 *
 * The first `pool` scenes of the split (or all when fewer) form one pool per
 * language. For each language and each direction:
 *   t2i  long caption      -> the pool's images
 *   i2t  image             -> the pool's long captions (that language)
 *   a2i  spoken caption    -> the pool's images
 *   a2t  spoken caption    -> the pool's long captions (same language)
 *   i2a  image             -> the pool's spoken captions (that language)
 * recall@k is the share of queries whose top k candidates contain a hit: the
 * query's own scene, or any scene whose signature equals it (the same long
 * caption describes both exactly). Audio directions only use scenes that have
 * speech in that language (counted in n_queries; 0 = not evaluated, recalls
 * NaN).
 *
 * Not a public header: prefix qmod_. */
#ifndef QIAO_MODELS_EVAL_H
#define QIAO_MODELS_EVAL_H

#include <stdint.h>

#include "models/data/data.h"
#include "models/embed.h"

enum { QMOD_T2I = 0, QMOD_I2T = 1, QMOD_A2I = 2, QMOD_A2T = 3, QMOD_I2A = 4, QMOD_N_DIRS = 5 };
enum { QMOD_R1 = 0, QMOD_R5 = 1, QMOD_R10 = 2, QMOD_N_KS = 3 };

/* "t2i", "i2t", "a2i", "a2t", "i2a". */
const char *qmod_dir_name(int dir);

typedef struct qmod_retrieval {
    int64_t pool;                                    /* scenes in the pool */
    int64_t n_queries[QMOD_N_LANGS][QMOD_N_DIRS];
    double recall[QMOD_N_LANGS][QMOD_N_DIRS][QMOD_N_KS];
    double mean[QMOD_N_DIRS][QMOD_N_KS];             /* query-weighted over the languages */
} qmod_retrieval;

/* One query whose hit did not rank first: scene indices into the data set.
 * `top` is the best-scoring candidate that is not a hit, `rank` the number of
 * non-hits above the best hit (>= 1), the scores their dot products. */
typedef struct qmod_miss {
    int lang, dir;
    int64_t query, top, rank;
    float hit_score, top_score;
} qmod_miss;
typedef void (*qmod_miss_fn)(const qmod_miss *miss, void *user);

typedef struct qmod_eval_params {
    int64_t pool;          /* default 1000 */
    int64_t batch;         /* embedding batch (default 64) */
    bool audio;            /* evaluate the audio directions (default true) */
    qiao_progress_fn progress; /* phase "embed", done/total items; may be NULL */
    void *progress_user;
    qmod_miss_fn on_miss;      /* called for every query that missed at rank 1; may be NULL */
    void *miss_user;
} qmod_eval_params;

qmod_eval_params qmod_eval_default_params(void);

/* Embeds the pool with `ex` and fills *out. Decoding errors name the file. */
qiao_status qmod_eval_retrieval(const qb_exec *ex, const qmod_model *m, const qmod_dataset *d,
                                const qmod_eval_params *p, qmod_retrieval *out);

/* The ranking core, exposed so it can be tested on hand-made embeddings.
 * q (nq, D) queries and c (nc, D) candidates, host memory, scored by dot
 * product (cosine for L2-normalized rows). Candidate j is a hit for query i
 * when c_group[j] == q_group[i]. A query's rank is the number of non-hit
 * candidates scoring strictly above its best-scoring hit, so a tie with the
 * target counts in the query's favour; recall[QMOD_R1/R5/R10] is the share
 * of queries with rank < 1, 5, 10. A query with no hit among the candidates
 * is a miss. `ex` must be a CPU context (it runs the score GEMM). nq == 0
 * gives NaN recalls; a non-finite value in q or c is
 * QIAO_ERR_INVALID_ARGUMENT naming the row. */
qiao_status qmod_recall_at_k(const qb_exec *ex, const float *q, int64_t nq, const float *c, int64_t nc, int64_t D,
                             const int64_t *q_group, const int64_t *c_group, double recall[QMOD_N_KS]);

/* ---- Spoken digits as zero-shot retrieval (digits.c) ------------------------
 *
 * The ten digit words are embedded as text in each language ("zero".."nine",
 * "零".."九"), each clip of a split with speech (`qiao dataset fsdd`) as
 * audio, and a clip's prediction is the word of highest cosine; a tie goes
 * to the lower digit, so a result depends on nothing but the scores.
 * Accuracy per language, chance 1/10. */

enum { QMOD_N_DIGITS = 10 };

/* The ten words of language `lang` (QMOD_LANG_*), digit order; NULL for
 * another value. Static strings. */
const char *const *qmod_digit_words(int lang);

/* How the evaluation embeds, so it runs on whatever path the caller picks:
 * the `qiao eval digits` command passes the public API's
 * qiao_embed_texts / qiao_embed_audio_file on its session (this layer sits
 * below that API and does not call it), a test may pass made-up vectors.
 * Both functions fill `out` (out_len floats: n rows of `dim`, one for a
 * file), return a status and leave the detail in qiao_last_error(). */
typedef struct qmod_digits_embedder {
    int64_t dim; /* embedding width, 1..65536 */
    qiao_status (*texts)(void *user, const char *const *texts, size_t n, float *out, size_t out_len);
    qiao_status (*audio_file)(void *user, const char *path, float *out, size_t out_len);
    void *user;
} qmod_digits_embedder;

typedef struct qmod_digits {
    int64_t n;                                                    /* clips scored */
    int64_t correct[QMOD_N_LANGS];                                /* per language of the words */
    int64_t confusion[QMOD_N_LANGS][QMOD_N_DIGITS][QMOD_N_DIGITS]; /* [lang][spoken][predicted] */
} qmod_digits;

/* correct[lang] / n; 0 when nothing was scored or lang is out of range. */
double qmod_digits_accuracy(const qmod_digits *r, int lang);

/* Scores every scene of `d` that has speech (its "en" recording, else its
 * "zh" one; scenes without speech are skipped) against the digit words of
 * both languages and fills *out. The spoken digit is the one the scene's
 * caption names ("en" first, then "zh"). `progress` (may be NULL) gets phase
 * "clips", done = scenes passed, total = d->n, after each scored clip.
 * Errors: QIAO_ERR_INVALID_ARGUMENT for a NULL argument or a bad embedder;
 * QIAO_ERR_FORMAT for a caption that is not a digit word or a split with no
 * speech (both naming the scene or the folder); an embedding failure keeps
 * its status, the message prefixed with the scene id. */
QIAO_MUST_CHECK qiao_status qmod_eval_digits(const qmod_digits_embedder *e, const qmod_dataset *d,
                                             qiao_progress_fn progress, void *progress_user, qmod_digits *out);

#endif /* QIAO_MODELS_EVAL_H */
