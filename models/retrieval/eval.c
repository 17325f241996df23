/* models/retrieval/eval.c - cross-modal retrieval evaluation (see eval.h).
 *
 * Every item of the pool is embedded once (images once for both languages),
 * then each (language, direction) pair is a query matrix against a candidate
 * matrix, ranked by qmod_recall_at_k. Scores are computed on the host with
 * the CPU kernels whatever backend embedded, since embeddings come back in
 * host memory. */
#include "models/retrieval/eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"

/* Queries scored per GEMM: bounds the score buffer to QCHUNK * nc floats
 * (4 MB for a pool of 4096) whatever the pool size. */
#define QCHUNK 256

static const int k_ks[QMOD_N_KS] = {1, 5, 10};
static const char *const k_dir_names[QMOD_N_DIRS] = {"t2i", "i2t", "a2i", "a2t", "i2a"};

const char *qmod_dir_name(int dir) { return dir >= 0 && dir < QMOD_N_DIRS ? k_dir_names[dir] : "?"; }

qmod_eval_params qmod_eval_default_params(void) {
    qmod_eval_params p;
    memset(&p, 0, sizeof p);
    p.pool = 1000;
    p.batch = 64;
    p.audio = true;
    return p;
}

static int64_t first_nonfinite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return -1;
}

/* Per query: the rank of its best hit (non-hits scoring strictly above it)
 * into rank[], or -1 with no hit in the pool; the best-scoring non-hit into
 * top[] (-1 when there is none) and both scores. The outputs may be NULL. */
typedef struct rank_out {
    int64_t *rank, *top;
    float *hit_score, *top_score;
} rank_out;

static qiao_status rank_queries(const qb_exec *ex, const float *q, int64_t nq, const float *c, int64_t nc, int64_t D,
                                const int64_t *q_group, const int64_t *c_group, const rank_out *o) {
    int64_t chunk = nq < QCHUNK ? nq : QCHUNK;
    float *s = malloc((size_t)chunk * (size_t)nc * sizeof(float));
    if (!s) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qmod_recall_at_k: %lld x %lld scores", (long long)chunk,
                            (long long)nc);
    for (int64_t i0 = 0; i0 < nq; i0 += chunk) {
        int64_t m = nq - i0 < chunk ? nq - i0 : chunk;
        /* s (m, nc) = q[i0:i0+m] c^T */
        ex->ops->gemm(ex, false, true, m, nc, D, 1.0f, q + i0 * D, D, 0, c, D, 0, 0.0f, s, nc, 0, 1);
        qiao_status st = ex->ops->sync(ex);
        if (st != QIAO_OK) {
            free(s);
            return st;
        }
        for (int64_t i = 0; i < m; i++) {
            const float *row = s + i * nc;
            int64_t g = q_group[i0 + i];
            float best = -INFINITY, wrong = -INFINITY;
            int64_t top = -1;
            bool any = false;
            for (int64_t j = 0; j < nc; j++) {
                if (c_group[j] == g) {
                    if (!any || row[j] > best) best = row[j];
                    any = true;
                } else if (top < 0 || row[j] > wrong) {
                    wrong = row[j];
                    top = j;
                }
            }
            int64_t rank = -1; /* no hit in the pool: a miss at every k */
            if (any) {
                rank = 0;
                for (int64_t j = 0; j < nc; j++) rank += c_group[j] != g && row[j] > best;
            }
            if (o->rank) o->rank[i0 + i] = rank;
            if (o->top) o->top[i0 + i] = top;
            if (o->hit_score) o->hit_score[i0 + i] = best;
            if (o->top_score) o->top_score[i0 + i] = wrong;
        }
    }
    free(s);
    return QIAO_OK;
}

static qiao_status check_rank_args(const float *q, int64_t nq, const float *c, int64_t nc, int64_t D,
                                   const int64_t *q_group, const int64_t *c_group) {
    if (!q || !q_group || (nc > 0 && (!c || !c_group)))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_recall_at_k: NULL embeddings or groups");
    /* A NaN score compares false both ways, which would quietly rank a
     * broken query first; refuse instead. */
    int64_t bad = first_nonfinite(q, nq * D);
    if (bad >= 0) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_recall_at_k: query row %lld is not finite",
                                  (long long)(bad / D));
    bad = first_nonfinite(c, nc * D);
    if (bad >= 0) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_recall_at_k: candidate row %lld is not finite",
                                  (long long)(bad / D));
    return QIAO_OK;
}

/* Recall from ranks (-1: no hit, a miss at every k). */
static void recall_from_ranks(const int64_t *rank, int64_t nq, double recall[QMOD_N_KS]) {
    int64_t hits[QMOD_N_KS] = {0};
    for (int64_t i = 0; i < nq; i++)
        for (int k = 0; k < QMOD_N_KS; k++) hits[k] += rank[i] >= 0 && rank[i] < k_ks[k];
    for (int k = 0; k < QMOD_N_KS; k++) recall[k] = (double)hits[k] / (double)nq;
}

qiao_status qmod_recall_at_k(const qb_exec *ex, const float *q, int64_t nq, const float *c, int64_t nc, int64_t D,
                             const int64_t *q_group, const int64_t *c_group, double recall[QMOD_N_KS]) {
    if (!ex || !recall || nq < 0 || nc < 0 || D < 1)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_recall_at_k: NULL context or output, or bad sizes");
    for (int k = 0; k < QMOD_N_KS; k++) recall[k] = NAN;
    if (nq == 0) return QIAO_OK;
    qiao_status st = check_rank_args(q, nq, c, nc, D, q_group, c_group);
    if (st != QIAO_OK) return st;
    int64_t *rank = malloc((size_t)nq * sizeof *rank);
    if (!rank) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qmod_recall_at_k: ranks of %lld queries", (long long)nq);
    for (int64_t i = 0; i < nq; i++) rank[i] = -1;
    rank_out o = {.rank = rank};
    if (nc > 0) st = rank_queries(ex, q, nq, c, nc, D, q_group, c_group, &o);
    if (st == QIAO_OK) recall_from_ranks(rank, nq, recall);
    free(rank);
    return st;
}

/* ---- embedding the pool -------------------------------------------------- */

typedef struct sig_ref {
    const char *sig;
    int64_t i;
} sig_ref;

static int cmp_sig(const void *a, const void *b) {
    const sig_ref *x = a, *y = b;
    int c = strcmp(x->sig, y->sig);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

/* group[i] = the first scene of the pool with scene i's signature, so equal
 * signatures share a group; a scene without one is its own group. */
static qiao_status make_groups(const qmod_dataset *d, int64_t P, int64_t *group) {
    sig_ref *r = malloc((size_t)P * sizeof *r);
    if (!r) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "eval: signature table of %lld scenes", (long long)P);
    int64_t n = 0;
    for (int64_t i = 0; i < P; i++) {
        group[i] = i;
        if (d->scenes[i].signature) r[n++] = (sig_ref){d->scenes[i].signature, i};
    }
    qsort(r, (size_t)n, sizeof *r, cmp_sig);
    for (int64_t k = 1; k < n; k++)
        if (!strcmp(r[k].sig, r[k - 1].sig)) group[r[k].i] = group[r[k - 1].i];
    free(r);
    return QIAO_OK;
}

typedef struct embed_ctx {
    const qb_exec *ex;
    const qmod_model *m;
    const qmod_dataset *d;
    const qmod_eval_params *p;
    int64_t done, total;
    int64_t D;
} embed_ctx;

static void report(embed_ctx *c, int64_t n) {
    c->done += n;
    if (c->p->progress) c->p->progress("embed", c->done, c->total, c->p->progress_user);
}

static qiao_status check_rows(const float *e, int64_t n, int64_t D, const char *const *names) {
    int64_t bad = first_nonfinite(e, n * D);
    if (bad < 0) return QIAO_OK;
    return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                    "eval: the model gives a non-finite embedding for %s (are its weights finite?)",
                    names[bad / D]);
}

/* Decoded from their files: the pictures (QMOD_IMAGE) or the spoken captions
 * in `lang` (QMOD_AUDIO) of the scenes rows[0..n) (rows NULL: scenes 0..n),
 * into e (n, D). */
static qiao_status embed_files(embed_ctx *c, qmod_modality mod, int lang, const int64_t *rows, int64_t n,
                               qmod_work *w, float *e) {
    const int64_t B = c->p->batch;
    qiao_image **imgs = calloc((size_t)B, sizeof *imgs);
    qiao_audio **clips = calloc((size_t)B, sizeof *clips);
    const char **names = calloc((size_t)B, sizeof *names);
    qiao_status st = QIAO_OK;
    if (!imgs || !clips || !names)
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "eval: %s batch of %lld", qmod_modality_name(mod), (long long)B);
    qiao_image_decode_params dp = qiao_image_decode_default_params();
    qiao_audio_params ap = qiao_audio_default_params();
    for (int64_t i0 = 0; st == QIAO_OK && i0 < n; i0 += B) {
        const int64_t nb = n - i0 < B ? n - i0 : B;
        for (int64_t i = 0; i < nb && st == QIAO_OK; i++) {
            const qmod_scene *s = &c->d->scenes[rows ? rows[i0 + i] : i0 + i];
            names[i] = mod == QMOD_IMAGE ? s->image : s->speech[lang];
            st = mod == QMOD_IMAGE ? qiao_image_decode_file(names[i], &dp, &imgs[i])
                                   : qiao_audio_decode_file(names[i], &ap, &clips[i]);
        }
        if (st == QIAO_OK)
            st = mod == QMOD_IMAGE
                     ? qmod_embed_images(c->ex, c->m, w, (const qiao_image *const *)imgs, (size_t)nb, e + i0 * c->D)
                     : qmod_embed_audio(c->ex, c->m, w, (const qiao_audio *const *)clips, (size_t)nb, e + i0 * c->D);
        for (int64_t i = 0; i < nb; i++) {
            qiao_image_free(imgs[i]);
            qiao_audio_free(clips[i]);
            imgs[i] = NULL;
            clips[i] = NULL;
        }
        if (st == QIAO_OK) st = check_rows(e + i0 * c->D, nb, c->D, names);
        if (st == QIAO_OK) report(c, nb);
    }
    free(imgs);
    free(clips);
    free(names);
    return st;
}

/* Long captions in `lang` of the scenes listed in rows[0..n) into e (n, D). */
static qiao_status embed_texts(embed_ctx *c, int lang, const int64_t *rows, int64_t n, qmod_work *w, float *e) {
    int64_t B = c->p->batch;
    const char **texts = calloc((size_t)B, sizeof *texts);
    const char **names = calloc((size_t)B, sizeof *names);
    char(*name_buf)[160] = calloc((size_t)B, sizeof *name_buf);
    qiao_status st = QIAO_OK;
    if (!texts || !names || !name_buf) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "eval: text batch of %lld", (long long)B);
    for (int64_t i0 = 0; st == QIAO_OK && i0 < n; i0 += B) {
        int64_t nb = n - i0 < B ? n - i0 : B;
        for (int64_t i = 0; i < nb; i++) {
            const qmod_scene *s = &c->d->scenes[rows[i0 + i]];
            texts[i] = s->caption[lang];
            snprintf(name_buf[i], sizeof name_buf[i], "the %s caption of %s", qmod_lang_name(lang),
                     s->id ? s->id : "?");
            names[i] = name_buf[i];
        }
        st = qmod_embed_texts(c->ex, c->m, w, texts, (size_t)nb, e + i0 * c->D);
        if (st == QIAO_OK) st = check_rows(e + i0 * c->D, nb, c->D, names);
        if (st == QIAO_OK) report(c, nb);
    }
    free(texts);
    free(names);
    free(name_buf);
    return st;
}

/* Frees a workspace as soon as its modality is done (the audio one is the
 * largest) and leaves it cleared for the final cleanup. */
static void work_release(qmod_work *w) {
    qmod_work_free(w);
    memset(w, 0, sizeof *w);
}

/* ---- the evaluation ------------------------------------------------------ */

/* Per language: which scenes have a caption / speech, their rows in the
 * embedding matrices, and the matrices. */
typedef struct lang_set {
    int64_t n_txt, n_aud;
    int64_t *txt_scene, *aud_scene; /* (n_txt), (n_aud): scene of each row */
    int64_t *txt_row;               /* (P): row of scene i in txt, -1 if none */
    float *txt, *aud;               /* (n_txt, D), (n_aud, D) */
} lang_set;

/* Copies the rows `idx[0..n)` of x (., D) into out (n, D) and their groups. */
static void gather(float *out, int64_t *out_group, const float *x, const int64_t *idx, const int64_t *scene_of_idx,
                   const int64_t *group, int64_t n, int64_t D) {
    for (int64_t i = 0; i < n; i++) {
        memcpy(out + i * D, x + idx[i] * D, (size_t)D * sizeof(float));
        out_group[i] = group[scene_of_idx[i]];
    }
}

/* One direction's recall, with every query that missed at rank 1 reported
 * to p->on_miss. qs/cs map query and candidate rows to scene indices (cs
 * NULL: candidate j is scene j). */
static qiao_status rank_direction(const qb_exec *cpu, const qmod_eval_params *p, int lang, int dir, const float *q,
                                  int64_t nq, const float *c, int64_t nc, int64_t D, const int64_t *qg,
                                  const int64_t *cg, const int64_t *qs, const int64_t *cs, double recall[QMOD_N_KS]) {
    if (!p->on_miss || nq == 0 || nc == 0) return qmod_recall_at_k(cpu, q, nq, c, nc, D, qg, cg, recall);
    qiao_status st = check_rank_args(q, nq, c, nc, D, qg, cg);
    if (st != QIAO_OK) return st;
    rank_out o = {malloc((size_t)nq * sizeof(int64_t)), malloc((size_t)nq * sizeof(int64_t)),
                  malloc((size_t)nq * sizeof(float)), malloc((size_t)nq * sizeof(float))};
    if (!o.rank || !o.top || !o.hit_score || !o.top_score)
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "eval: ranks of %lld queries", (long long)nq);
    if (st == QIAO_OK) st = rank_queries(cpu, q, nq, c, nc, D, qg, cg, &o);
    if (st == QIAO_OK) {
        recall_from_ranks(o.rank, nq, recall);
        for (int64_t i = 0; i < nq; i++) {
            if (o.rank[i] == 0 || o.top[i] < 0) continue;
            qmod_miss miss = {.lang = lang,
                              .dir = dir,
                              .query = qs[i],
                              .top = cs ? cs[o.top[i]] : o.top[i],
                              .rank = o.rank[i],
                              .hit_score = o.hit_score[i],
                              .top_score = o.top_score[i]};
            p->on_miss(&miss, p->miss_user);
        }
    }
    free(o.rank);
    free(o.top);
    free(o.hit_score);
    free(o.top_score);
    return st;
}

qiao_status qmod_eval_retrieval(const qb_exec *ex, const qmod_model *m, const qmod_dataset *d,
                                const qmod_eval_params *p, qmod_retrieval *out) {
    if (!ex || !m || !d || !out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_eval_retrieval: NULL argument");
    memset(out, 0, sizeof *out);
    qmod_eval_params defaults = qmod_eval_default_params();
    if (!p) p = &defaults;
    if (p->pool < 1 || p->batch < 1)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "eval: pool (%lld) and batch (%lld) must be >= 1",
                        (long long)p->pool, (long long)p->batch);
    if (d->n < 1 || !d->scenes)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "eval: data set %s has no scenes", d->dir ? d->dir : "?");
    /* every direction here involves pictures; image-less sets (spoken digits)
     * have their own evaluation, `qiao eval digits` */
    if (!d->has_images)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "eval: data set %s has no pictures; retrieval needs them (for spoken digits use qiao eval digits)",
                        d->dir ? d->dir : "?");
    const int64_t P = d->n < p->pool ? d->n : p->pool;
    const int64_t D = m->cfg.embed_dim;
    out->pool = P;

    qiao_status st = QIAO_OK;
    lang_set L[QMOD_N_LANGS];
    memset(L, 0, sizeof L);
    qmod_work wi, wt, wa;
    memset(&wi, 0, sizeof wi);
    memset(&wt, 0, sizeof wt);
    memset(&wa, 0, sizeof wa);
    int64_t *group = malloc((size_t)P * sizeof *group);
    int64_t *qg = malloc((size_t)P * sizeof *qg), *cg = malloc((size_t)P * sizeof *cg);
    int64_t *idx = malloc((size_t)P * sizeof *idx), *idx_scene = malloc((size_t)P * sizeof *idx_scene);
    float *img = malloc((size_t)P * (size_t)D * sizeof(float));
    float *qbuf = malloc((size_t)P * (size_t)D * sizeof(float));
    if (!group || !qg || !cg || !idx || !idx_scene || !img || !qbuf) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "eval: embeddings of a pool of %lld scenes", (long long)P);
        goto done;
    }
    if ((st = make_groups(d, P, group)) != QIAO_OK) goto done;

    embed_ctx c = {.ex = ex, .m = m, .d = d, .p = p, .total = P, .D = D};
    for (int l = 0; l < QMOD_N_LANGS; l++) {
        lang_set *s = &L[l];
        s->txt_scene = malloc((size_t)P * sizeof(int64_t));
        s->aud_scene = malloc((size_t)P * sizeof(int64_t));
        s->txt_row = malloc((size_t)P * sizeof(int64_t));
        if (!s->txt_scene || !s->aud_scene || !s->txt_row) {
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "eval: index of %lld scenes", (long long)P);
            goto done;
        }
        for (int64_t i = 0; i < P; i++) {
            const qmod_scene *sc = &d->scenes[i];
            s->txt_row[i] = -1;
            if (sc->caption[l]) {
                s->txt_row[i] = s->n_txt;
                s->txt_scene[s->n_txt++] = i;
            }
            if (p->audio && sc->speech[l]) s->aud_scene[s->n_aud++] = i;
        }
        s->txt = malloc((size_t)(s->n_txt ? s->n_txt : 1) * (size_t)D * sizeof(float));
        s->aud = malloc((size_t)(s->n_aud ? s->n_aud : 1) * (size_t)D * sizeof(float));
        if (!s->txt || !s->aud) {
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "eval: embeddings of a pool of %lld scenes", (long long)P);
            goto done;
        }
        c.total += s->n_txt + s->n_aud;
    }

    if ((st = embed_files(&c, QMOD_IMAGE, 0, NULL, P, &wi, img)) != QIAO_OK) goto done;
    work_release(&wi);
    for (int l = 0; l < QMOD_N_LANGS && st == QIAO_OK; l++)
        if (L[l].n_txt) st = embed_texts(&c, l, L[l].txt_scene, L[l].n_txt, &wt, L[l].txt);
    if (st != QIAO_OK) goto done;
    work_release(&wt);
    for (int l = 0; l < QMOD_N_LANGS && st == QIAO_OK; l++)
        if (L[l].n_aud) st = embed_files(&c, QMOD_AUDIO, l, L[l].aud_scene, L[l].n_aud, &wa, L[l].aud);
    if (st != QIAO_OK) goto done;
    work_release(&wa);

    /* Ranking runs on the host: a CPU context with the caller's threads. */
    qb_exec cpu;
    qb_exec_cpu(&cpu, ex->kind == QB_CPU ? ex->n_threads : 0);
    for (int l = 0; l < QMOD_N_LANGS && st == QIAO_OK; l++) {
        lang_set *s = &L[l];
        for (int dir = 0; dir < QMOD_N_DIRS && st == QIAO_OK; dir++) {
            const float *q = NULL, *cand = NULL;
            const int64_t *qs = NULL, *cs = NULL; /* row -> scene, for the misses */
            int64_t nq = 0, nc = 0;
            switch (dir) {
            case QMOD_T2I: /* every caption -> every image */
                q = s->txt, nq = s->n_txt, qs = s->txt_scene;
                for (int64_t i = 0; i < nq; i++) qg[i] = group[s->txt_scene[i]];
                cand = img, nc = P;
                memcpy(cg, group, (size_t)P * sizeof *cg);
                break;
            case QMOD_I2T: /* images of scenes with a caption -> the captions */
                nq = s->n_txt;
                gather(qbuf, qg, img, s->txt_scene, s->txt_scene, group, nq, D), q = qbuf;
                cand = s->txt, nc = s->n_txt, qs = s->txt_scene, cs = s->txt_scene;
                for (int64_t j = 0; j < nc; j++) cg[j] = group[s->txt_scene[j]];
                break;
            case QMOD_A2I: /* every clip -> every image */
                q = s->aud, nq = s->n_aud, qs = s->aud_scene;
                for (int64_t i = 0; i < nq; i++) qg[i] = group[s->aud_scene[i]];
                cand = img, nc = P;
                memcpy(cg, group, (size_t)P * sizeof *cg);
                break;
            case QMOD_A2T: /* clips of scenes with a caption -> the captions */
                nq = 0;
                for (int64_t i = 0; i < s->n_aud; i++)
                    if (s->txt_row[s->aud_scene[i]] >= 0) {
                        idx[nq] = i;
                        idx_scene[nq++] = s->aud_scene[i];
                    }
                gather(qbuf, qg, s->aud, idx, idx_scene, group, nq, D), q = qbuf;
                cand = s->txt, nc = s->n_txt, qs = idx_scene, cs = s->txt_scene;
                for (int64_t j = 0; j < nc; j++) cg[j] = group[s->txt_scene[j]];
                break;
            case QMOD_I2A: /* images of scenes with speech -> the clips */
                nq = s->n_aud;
                gather(qbuf, qg, img, s->aud_scene, s->aud_scene, group, nq, D), q = qbuf;
                cand = s->aud, nc = s->n_aud, qs = cs = s->aud_scene;
                for (int64_t j = 0; j < nc; j++) cg[j] = group[s->aud_scene[j]];
                break;
            }
            out->n_queries[l][dir] = nq;
            st = rank_direction(&cpu, p, l, dir, q, nq, cand, nc, D, qg, cg, qs, cs, out->recall[l][dir]);
        }
    }
    if (st != QIAO_OK) goto done;
    for (int dir = 0; dir < QMOD_N_DIRS; dir++) {
        int64_t n = 0;
        for (int l = 0; l < QMOD_N_LANGS; l++) n += out->n_queries[l][dir];
        for (int k = 0; k < QMOD_N_KS; k++) {
            double sum = 0;
            for (int l = 0; l < QMOD_N_LANGS; l++)
                if (out->n_queries[l][dir]) sum += (double)out->n_queries[l][dir] * out->recall[l][dir][k];
            out->mean[dir][k] = n ? sum / (double)n : NAN;
        }
    }

done:
    qmod_work_free(&wi);
    qmod_work_free(&wt);
    qmod_work_free(&wa);
    for (int l = 0; l < QMOD_N_LANGS; l++) {
        free(L[l].txt_scene);
        free(L[l].aud_scene);
        free(L[l].txt_row);
        free(L[l].txt);
        free(L[l].aud);
    }
    free(group);
    free(qg);
    free(cg);
    free(idx);
    free(idx_scene);
    free(img);
    free(qbuf);
    if (st != QIAO_OK) memset(out, 0, sizeof *out);
    return st;
}
