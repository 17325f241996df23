/* models/picture.c - places and the picture memo (see picture.h). */
#include "models/picture.h"

#include <stdlib.h>
#include <string.h>

#include "fusion/fuser.h"

qiao_status qmod_grow(void **buf, int64_t *have, int64_t n, size_t size, const char *what) {
    if (n <= *have) return QIAO_OK;
    free(*buf);
    *have = 0;
    if (!(*buf = malloc((size_t)n * size)))
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory for %lld values", what, (long long)n);
    *have = n;
    return QIAO_OK;
}

qiao_status qmod_places_pool(qmod_places *pl, const float *tok, int64_t B, int64_t P, int64_t G, int64_t C,
                             const char *what) {
    const int64_t g = qf_patch_side(P), n = B * G * G * C;
    if (G < 1 || g * g != P || G > g)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: %lld picture tokens cannot be pooled into %lld x %lld places",
                        what, (long long)P, (long long)G, (long long)G);
    qiao_status st = qmod_grow((void **)&pl->x, &pl->x_n, n, sizeof(float), what);
    if (st == QIAO_OK) st = qmod_grow((void **)&pl->arg, &pl->arg_n, n, sizeof(int32_t), what);
    if (st != QIAO_OK) return st;
    qf_places_forward(pl->x, pl->arg, tok, B, g, G, C);
    return QIAO_OK;
}

void qmod_places_backward(const qmod_places *pl, const float *dx, float *dtok, int64_t B, int64_t P, int64_t G,
                          int64_t C) {
    qf_places_backward(dtok, dx, pl->arg, B, qf_patch_side(P), G, C);
}

void qmod_places_free(qmod_places *pl) {
    if (!pl) return;
    free(pl->x), free(pl->arg);
    memset(pl, 0, sizeof *pl);
}

double qmod_memo_bytes(int64_t n, int64_t T, int64_t C) {
    return (double)n * (double)T * (double)C * sizeof(float);
}

qiao_status qmod_memo_init(qmod_memo *mm, int64_t n, int64_t T, int64_t C, double max_bytes) {
    memset(mm, 0, sizeof *mm);
    if (n < 1 || T < 1 || C < 1)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "picture memo: %lld pictures of %lld x %lld", (long long)n,
                        (long long)T, (long long)C);
    /* the sizes stay on failure, for the caller's message */
    mm->n = n, mm->T = T, mm->C = C;
    const double bytes = qmod_memo_bytes(n, T, C);
    if (bytes > max_bytes)
        return qc_error(QIAO_ERR_TOO_LARGE, "picture memo: %.0f MiB for %lld pictures is over the %.0f MiB allowed",
                        bytes / 1048576.0, (long long)n, max_bytes / 1048576.0);
    if (!(mm->tok = malloc((size_t)bytes)) || !(mm->have = calloc((size_t)n, 1))) {
        free(mm->tok), free(mm->have);
        mm->tok = NULL, mm->have = NULL;
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "picture memo: out of memory for the tokens of %lld pictures",
                        (long long)n);
    }
    return QIAO_OK;
}

void qmod_memo_free(qmod_memo *mm) {
    if (!mm) return;
    free(mm->tok), free(mm->have), free(mm->rows);
    memset(mm, 0, sizeof *mm);
}

static bool has_picture(const qmod_memo_rows *r, int64_t i) {
    return !r->present || r->present[i * r->stride];
}

static bool in_range(const qmod_memo *mm, const qmod_memo_rows *r, int64_t i) {
    return r->picture[i] >= 0 && r->picture[i] < mm->n;
}

const float *qmod_memo_read(qmod_memo *mm, const qmod_memo_rows *r, qiao_status *st) {
    if (!mm || !mm->tok || !r->picture) return NULL;
    for (int64_t i = 0; i < r->B; i++)
        if (has_picture(r, i) && (!in_range(mm, r, i) || !mm->have[r->picture[i]])) return NULL;
    const int64_t per = mm->T * mm->C;
    if ((*st = qmod_grow((void **)&mm->rows, &mm->rows_n, r->B * per, sizeof(float), "picture memo")) != QIAO_OK)
        return NULL;
    for (int64_t i = 0; i < r->B; i++) {
        if (has_picture(r, i))
            memcpy(mm->rows + i * per, mm->tok + r->picture[i] * per, (size_t)per * sizeof(float));
        else
            memset(mm->rows + i * per, 0, (size_t)per * sizeof(float));
    }
    mm->hits++;
    return mm->rows;
}

void qmod_memo_write(qmod_memo *mm, const qmod_memo_rows *r, const float *tok) {
    if (!mm || !mm->tok || !r->picture) return;
    const int64_t per = mm->T * mm->C;
    for (int64_t i = 0; i < r->B; i++) {
        if (!has_picture(r, i) || !in_range(mm, r, i) || mm->have[r->picture[i]]) continue;
        memcpy(mm->tok + r->picture[i] * per, tok + i * per, (size_t)per * sizeof(float));
        mm->have[r->picture[i]] = 1;
    }
    mm->misses++;
}

qiao_status qmod_memo_fill(qmod_memo *mm, const qmod_model *m, int64_t batch, const qmod_memo_source *src,
                           const volatile sig_atomic_t *stop, const char *what) {
    if (!mm || !mm->tok || !m || batch < 1 || !src || !src->path || !src->tokens)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_memo_fill: needs a memo, a model and a source");
    const int64_t n = mm->n;
    qiao_image **imgs = calloc((size_t)batch, sizeof *imgs);
    int64_t *idx = malloc((size_t)batch * sizeof(int64_t));
    qiao_status st = imgs && idx ? QIAO_OK : qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
    int64_t last_tenth = 0;
    const int64_t misses = mm->misses; /* the fill is not training's misses */
    for (int64_t s0 = 0; s0 < n && st == QIAO_OK && !(stop && *stop); s0 += batch) {
        const int64_t nb = n - s0 < batch ? n - s0 : batch;
        for (int64_t i = 0; i < nb && st == QIAO_OK; i++) {
            idx[i] = s0 + i;
            const char *path = src->path(src->user, s0 + i);
            st = path ? qiao_image_decode_file(path, NULL, &imgs[i])
                      : qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: picture %lld has no file", what, (long long)(s0 + i));
        }
        qmod_batch b;
        memset(&b, 0, sizeof b);
        const float *tok = NULL;
        if (st == QIAO_OK) st = qmod_batch_images(m, (const qiao_image *const *)imgs, (size_t)nb, &b);
        if (st == QIAO_OK) st = src->tokens(src->user, &b, &tok);
        if (st == QIAO_OK) {
            const qmod_memo_rows rows = {.B = nb, .picture = idx};
            qmod_memo_write(mm, &rows, tok);
        }
        qmod_batch_free(&b);
        for (int64_t i = 0; i < nb; i++) qiao_image_free(imgs[i]), imgs[i] = NULL;
        if ((s0 + nb) * 10 / n > last_tenth) {
            last_tenth = (s0 + nb) * 10 / n;
            qc_log(QIAO_LOG_INFO, "%s: %lld of %lld pictures in the memo", what, (long long)(s0 + nb), (long long)n);
        }
    }
    mm->misses = misses;
    free(imgs), free(idx);
    return st;
}
