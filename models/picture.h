/* models/picture.h - the picture as the fuser and the caption decoder read
 * it, shared by VQA (models/vqa.h) and captioning
 * (models/captioning/captioning.h): the image tower's patches pooled into
 * places, and a memo that keeps a frozen tower's output per training
 * picture.
 *
 * Not a public header: prefix qmod_. */
#ifndef QIAO_MODELS_PICTURE_H
#define QIAO_MODELS_PICTURE_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "models/embed.h"

/* Grows *buf to at least n elements of `size` bytes (its contents lost);
 * `what` names the caller in the out-of-memory message. */
qiao_status qmod_grow(void **buf, int64_t *have, int64_t n, size_t size, const char *what);

/* ---- places ---------------------------------------------------------------------- */

/* A picture's g x g patch tokens pooled into G x G places (fusion/fuser.h
 * qf_places_forward). The buffers grow as needed and are kept for the
 * backward, which needs the argmax. */
typedef struct qmod_places {
    float *x;      /* (B, G*G, C) */
    int32_t *arg;  /* (B, G*G, C) the patch each value came from */
    int64_t x_n, arg_n;
} qmod_places;

/* tok (B, P, C) -> pl->x (B, G*G, C). QIAO_ERR_INVALID_ARGUMENT when P is
 * not a square g x g or G > g. */
qiao_status qmod_places_pool(qmod_places *pl, const float *tok, int64_t B, int64_t P, int64_t G, int64_t C,
                             const char *what);
/* The places' gradient dx (B, G*G, C) added into the patches' dtok (B, P, C). */
void qmod_places_backward(const qmod_places *pl, const float *dx, float *dtok, int64_t B, int64_t P, int64_t G,
                          int64_t C);
void qmod_places_free(qmod_places *pl);

/* ---- the memo of a frozen picture tower --------------------------------------- */

/* What a picture becomes before the fuser or the decoder reads it (T
 * tokens of C), kept per training picture so the tower sees a picture
 * once: training a head on a frozen tower is then cheap (the tower's
 * forward costs about as much as the step it feeds, and a picture serves
 * several questions or captions an epoch). Only for pictures that are
 * always the same input: a frozen tower and no picture noise or occlusion.
 * One thread at a time. */
typedef struct qmod_memo {
    int64_t n, T, C;      /* pictures; tokens per picture and their width */
    float *tok;           /* (n, T, C) */
    uint8_t *have;        /* (n) */
    float *rows;          /* (B, T, C) a batch read from the memo */
    int64_t rows_n;
    int64_t hits, misses; /* batches served whole, batches the tower ran for */
} qmod_memo;

/* A memo of n pictures. QIAO_ERR_TOO_LARGE when it would take more than
 * max_bytes, QIAO_ERR_OUT_OF_MEMORY when it cannot be had: a trainer goes
 * on without (slower, not wrong). n, T and C are set either way. */
#define QMOD_MEMO_MAX (4.0 * 1024 * 1024 * 1024)
qiao_status qmod_memo_init(qmod_memo *mm, int64_t n, int64_t T, int64_t C, double max_bytes);
void qmod_memo_free(qmod_memo *mm);
double qmod_memo_bytes(int64_t n, int64_t T, int64_t C);

/* A batch's rows: row r is picture picture[r] and has a picture when
 * present is NULL or present[r * stride] != 0. */
typedef struct qmod_memo_rows {
    int64_t B;
    const int64_t *picture;
    const uint8_t *present;
    int64_t stride;
} qmod_memo_rows;

/* The batch's (B, T, C) tokens when the memo holds every present picture
 * (rows without one read zeros), counted as a hit; NULL otherwise. *st is
 * set on an allocation failure only. */
const float *qmod_memo_read(qmod_memo *mm, const qmod_memo_rows *r, qiao_status *st);
/* Keeps each present row of tok (B, T, C) that the memo does not hold yet;
 * counted as a miss. */
void qmod_memo_write(qmod_memo *mm, const qmod_memo_rows *r, const float *tok);

/* Where the fill pass gets pictures and what it keeps of them. */
typedef struct qmod_memo_source {
    const char *(*path)(void *user, int64_t i); /* picture i's file */
    /* the pictures' (B, T, C) tokens as the memo keeps them, valid until the next call */
    qiao_status (*tokens)(void *user, const qmod_batch *pictures, const float **tok);
    void *user;
} qmod_memo_source;

/* Every picture 0..n-1 through src, `batch` at a time, into the memo: a
 * batch of rows drawn at random finds all its pictures kept only after
 * several epochs without this. Logs progress every tenth as `what`;
 * returns early, QIAO_OK, when *stop becomes nonzero (the rest is filled
 * as training meets it). */
qiao_status qmod_memo_fill(qmod_memo *mm, const qmod_model *m, int64_t batch, const qmod_memo_source *src,
                           const volatile sig_atomic_t *stop, const char *what);

#endif /* QIAO_MODELS_PICTURE_H */
