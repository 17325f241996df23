/* models/embed.c - from raw inputs to embeddings (see embed.h). */
#include "models/embed.h"

#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "core/profile.h"
#include "models/tower.h"

const char *qmod_modality_name(qmod_modality mod) {
    const qmod_tower *tw = qmod_tower_of(mod);
    return tw ? tw->name : "?";
}

/* QIAO_ERR_UNSUPPORTED unless the model holds the tower of `mod`: the call
 * is valid, this model cannot answer it (a converted text encoder asked
 * for a picture). */
static qiao_status need_tower(const qmod_model *m, qmod_modality mod) {
    if (qmod_has_tower(&m->cfg, mod)) return QIAO_OK;
    return qc_error(QIAO_ERR_UNSUPPORTED, "model %s has no %s tower: it cannot embed %s", m->cfg.name,
                    qmod_modality_name(mod), qmod_tower_of(mod)->items);
}

void qmod_batch_free(qmod_batch *b) {
    if (!b) return;
    free(b->ids);
    free(b->char_ids);
    free(b->tags);
    free(b->mask);
    free(b->patches);
    free(b->mel);
    free(b->lengths);
    free(b->offsets);
    memset(b, 0, sizeof *b);
}

/* calloc of n * size bytes, overflow-checked; NULL on failure. */
static void *alloc_n(size_t n, size_t size) {
    size_t bytes;
    if (!qc_mul_size(n, size, &bytes)) return NULL;
    return calloc(bytes ? bytes : 1, 1);
}

/* ---- preparing batches ---------------------------------------------------- */

qiao_status qmod_batch_text(const qmod_model *m, const char *const *texts, size_t n, qmod_batch *out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_batch_text: out is NULL");
    memset(out, 0, sizeof *out);
    if (!m || !texts || n == 0) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_batch_text: no model or no texts");
    qiao_status st = need_tower(m, QMOD_TEXT);
    if (st != QIAO_OK) return st;
    if (!m->tok) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "model %s has no tokenizer: it cannot embed text", m->cfg.name);
    const qe_text_config *tc = &m->cfg.text;
    qiao_tokenize_params tp = qiao_tokenize_default_params();
    tp.max_tokens = tc->trunk.max_T; /* truncate to what the encoder's positions cover ... */
    qiao_token_batch *tb = NULL;
    /* ... but pad only to the longest text: max_len would pad every batch to max_T */
    st = qiao_tokenize_batch(m->tok, texts, NULL, n, 0, &tp, &tb);
    if (st != QIAO_OK) return st;
    /* An empty text has no tokens; T >= 1 keeps the encoder's shapes valid
     * and the all-padding row pools to zeros (the embedding is then the
     * normalized projection bias, the same for every empty text). */
    const size_t T = tb->t ? tb->t : 1, K = (size_t)tc->k;
    out->mod = QMOD_TEXT;
    out->B = (int64_t)n;
    out->T = (int64_t)T;
    out->ids = alloc_n(n * T, sizeof(int32_t));
    out->char_ids = alloc_n(n * T * K, sizeof(int32_t));
    out->tags = alloc_n(n * T, 1);
    out->mask = alloc_n(n * T, 1);
    out->lengths = alloc_n(n, sizeof(int64_t));
    out->offsets = alloc_n(n * T * 2, sizeof(int64_t));
    if (!out->ids || !out->char_ids || !out->tags || !out->mask || !out->lengths || !out->offsets) {
        qiao_token_batch_free(tb);
        qmod_batch_free(out);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qmod_batch_text: out of memory for %zu texts", n);
    }
    if (tb->t) {
        memcpy(out->ids, tb->ids, n * T * sizeof(int32_t));
        memcpy(out->char_ids, tb->char_ids, n * T * K * sizeof(int32_t));
        memcpy(out->tags, tb->tags, n * T);
        memcpy(out->mask, tb->mask, n * T);
        memcpy(out->offsets, tb->offsets, n * T * 2 * sizeof(int64_t));
    } else {
        for (size_t i = 0; i < n * T * 2; i++) out->offsets[i] = -1;
    }
    for (size_t i = 0; i < n; i++) out->lengths[i] = (int64_t)tb->lengths[i];
    qiao_token_batch_free(tb);
    return QIAO_OK;
}

size_t qmod_image_floats(const qmod_model *m) {
    return m && qmod_has_tower(&m->cfg, QMOD_IMAGE) ? (size_t)(m->cfg.image.tokens * m->cfg.image.patch_dim) : 0;
}

qiao_status qmod_image_patches(const qmod_model *m, const qiao_image *img, float *patches) {
    if (!m || !img || !patches) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_image_patches: NULL argument");
    if (need_tower(m, QMOD_IMAGE) != QIAO_OK) return QIAO_ERR_UNSUPPORTED;
    qiao_image_preprocess_params pp = qiao_image_preprocess_default_params();
    pp.size = m->cfg.image.image_size;
    return qiao_image_patches(img, &pp, m->cfg.image.patch, patches, qmod_image_floats(m));
}

qiao_status qmod_batch_images(const qmod_model *m, const qiao_image *const *imgs, size_t n, qmod_batch *out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_batch_images: out is NULL");
    memset(out, 0, sizeof *out);
    if (!m || !imgs || n == 0) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_batch_images: no model or no images");
    if (need_tower(m, QMOD_IMAGE) != QIAO_OK) return QIAO_ERR_UNSUPPORTED;
    const size_t per = qmod_image_floats(m);
    out->mod = QMOD_IMAGE;
    out->B = (int64_t)n;
    out->T = m->cfg.image.tokens;
    out->patches = alloc_n(n, per * sizeof(float));
    out->lengths = alloc_n(n, sizeof(int64_t));
    if (!out->patches || !out->lengths) {
        qmod_batch_free(out);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qmod_batch_images: out of memory for %zu images", n);
    }
    for (size_t i = 0; i < n; i++) {
        qiao_status st = imgs[i] ? qmod_image_patches(m, imgs[i], out->patches + i * per)
                                 : qc_error(QIAO_ERR_INVALID_ARGUMENT, "image %zu is NULL", i);
        if (st != QIAO_OK) {
            qmod_batch_free(out);
            return st;
        }
        out->lengths[i] = out->T;
    }
    return QIAO_OK;
}

qiao_status qmod_batch_mels(const qmod_model *m, const float *const *mels, const int64_t *frames, size_t n,
                            qmod_batch *out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_batch_mels: out is NULL");
    memset(out, 0, sizeof *out);
    if (!m || !mels || !frames || n == 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_batch_mels: no model or no clips");
    if (need_tower(m, QMOD_AUDIO) != QIAO_OK) return QIAO_ERR_UNSUPPORTED;
    const qe_audio_config *ac = &m->cfg.audio;
    int64_t T = 0;
    for (size_t i = 0; i < n; i++) {
        if (!mels[i] || frames[i] < 1)
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "audio clip %zu is empty (no mel frames)", i);
        /* Longer clips keep their beginning: the encoder's positions stop at max_frames. */
        const int64_t f = frames[i] < ac->max_frames ? frames[i] : ac->max_frames;
        if (f > T) T = f;
    }
    const size_t M = (size_t)ac->n_mels;
    out->mod = QMOD_AUDIO;
    out->B = (int64_t)n;
    out->T = T;
    out->mel = alloc_n(n * (size_t)T, M * sizeof(float));
    out->mask = alloc_n(n, (size_t)T);
    out->lengths = alloc_n(n, sizeof(int64_t));
    if (!out->mel || !out->mask || !out->lengths) {
        qmod_batch_free(out);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qmod_batch_mels: out of memory for %zu clips of %lld frames", n,
                        (long long)T);
    }
    for (size_t i = 0; i < n; i++) {
        const int64_t f = frames[i] < ac->max_frames ? frames[i] : ac->max_frames;
        memcpy(out->mel + i * (size_t)T * M, mels[i], (size_t)f * M * sizeof(float));
        memset(out->mask + i * (size_t)T, 1, (size_t)f);
        out->lengths[i] = f;
    }
    return QIAO_OK;
}

qiao_status qmod_batch_select(const qmod_model *m, const qmod_batch *src, const int64_t *rows, size_t n,
                              qmod_batch *out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_batch_select: out is NULL");
    memset(out, 0, sizeof *out);
    if (!m || !src || !rows || n == 0 || !src->lengths)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_batch_select: no model, batch or rows");
    int64_t T = 1;
    for (size_t i = 0; i < n; i++) {
        if (rows[i] < 0 || rows[i] >= src->B)
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_batch_select: row %lld of a batch of %lld",
                            (long long)rows[i], (long long)src->B);
        if (src->lengths[rows[i]] > T) T = src->lengths[rows[i]];
    }
    const qmod_tower *tw = qmod_tower_of(src->mod);
    if (!tw || !qmod_has_tower(&m->cfg, src->mod))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_batch_select: the batch's tower is not the model's");
    if (tw->fixed_len) T = src->T; /* every image has all its patches */
    /* Values per token in each of the modality's arrays. */
    const size_t K = (size_t)m->cfg.text.k, M = (size_t)m->cfg.audio.n_mels,
                 PD = (size_t)m->cfg.image.patch_dim;
    const size_t sT = (size_t)src->T, dT = (size_t)T;
    out->mod = src->mod;
    out->B = (int64_t)n;
    out->T = T;
    out->lengths = alloc_n(n, sizeof(int64_t));
    bool ok = out->lengths != NULL;
    if (src->ids) ok = ok && (out->ids = alloc_n(n * dT, sizeof(int32_t)));
    if (src->char_ids) ok = ok && (out->char_ids = alloc_n(n * dT * K, sizeof(int32_t)));
    if (src->tags) ok = ok && (out->tags = alloc_n(n * dT, 1));
    if (src->mask) ok = ok && (out->mask = alloc_n(n * dT, 1));
    if (src->mel) ok = ok && (out->mel = alloc_n(n * dT, M * sizeof(float)));
    if (src->patches) ok = ok && (out->patches = alloc_n(n * dT, PD * sizeof(float)));
    if (!ok) {
        qmod_batch_free(out);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qmod_batch_select: out of memory for %zu rows of %lld", n,
                        (long long)T);
    }
    /* Each row keeps its first min(T, src->T) positions; the rest stays zero (padding). */
    const size_t c = dT < sT ? dT : sT;
    for (size_t i = 0; i < n; i++) {
        const size_t r = (size_t)rows[i];
        out->lengths[i] = src->lengths[r];
        if (out->ids) memcpy(out->ids + i * dT, src->ids + r * sT, c * sizeof(int32_t));
        if (out->char_ids) memcpy(out->char_ids + i * dT * K, src->char_ids + r * sT * K, c * K * sizeof(int32_t));
        if (out->tags) memcpy(out->tags + i * dT, src->tags + r * sT, c);
        if (out->mask) memcpy(out->mask + i * dT, src->mask + r * sT, c);
        if (out->mel) memcpy(out->mel + i * dT * M, src->mel + r * sT * M, c * M * sizeof(float));
        if (out->patches) memcpy(out->patches + i * dT * PD, src->patches + r * sT * PD, c * PD * sizeof(float));
    }
    return QIAO_OK;
}

qiao_status qmod_batch_audio(const qmod_model *m, const qiao_audio *const *clips, size_t n, qmod_batch *out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_batch_audio: out is NULL");
    memset(out, 0, sizeof *out);
    if (!m || !clips || n == 0) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_batch_audio: no model or no clips");
    if (need_tower(m, QMOD_AUDIO) != QIAO_OK) return QIAO_ERR_UNSUPPORTED;
    float **mels = alloc_n(n, sizeof(float *));
    int64_t *frames = alloc_n(n, sizeof(int64_t));
    qiao_status st = mels && frames ? QIAO_OK : qc_error(QIAO_ERR_OUT_OF_MEMORY, "qmod_batch_audio: out of memory");
    qiao_mel_params mp = qiao_mel_default_params();
    mp.n_mels = (int)m->cfg.audio.n_mels;
    for (size_t i = 0; st == QIAO_OK && i < n; i++) {
        if (!clips[i] || clips[i]->n_samples < 1)
            st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "audio clip %zu is empty", i);
        else if (clips[i]->sample_rate != mp.sample_rate)
            st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "audio clip %zu is at %d Hz; the model reads %d Hz", i,
                          clips[i]->sample_rate, mp.sample_rate);
        else
            st = qiao_mel_compute(clips[i], &mp, &mels[i], &frames[i]);
    }
    if (st == QIAO_OK) st = qmod_batch_mels(m, (const float *const *)mels, frames, n, out);
    if (mels)
        for (size_t i = 0; i < n; i++) qiao_mel_free(mels[i]);
    free(mels);
    free(frames);
    return st;
}

/* ---- workspaces --------------------------------------------------------------- */

void qmod_work_free(qmod_work *w) {
    if (!w) return;
    qc_arena_free(&w->acts);
    qc_arena_free(&w->dacts);
    qc_table_free(&w->at);
    memset(w, 0, sizeof *w);
}

qiao_status qmod_work_init(qmod_work *w, const qmod_model *m, qmod_modality mod, int64_t B_max, int64_t T_max,
                           bool train) {
    if (!w) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_work_init: workspace is NULL");
    memset(w, 0, sizeof *w);
    const qmod_tower *tw = qmod_tower_of(mod);
    if (!m || !tw || B_max < 1)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_work_init: bad model, modality or batch size");
    if (need_tower(m, mod) != QIAO_OK) return QIAO_ERR_UNSUPPORTED;
    const int64_t lim = tw->max_len(&m->cfg);
    if (T_max <= 0 || T_max > lim || tw->fixed_len) T_max = lim;
    w->mod = mod;
    w->B_max = B_max;
    w->T_max = T_max;
    w->train = train;
    qc_table_init_empty(&w->at);
    qiao_status st = tw->describe_acts(&w->at, &m->cfg, B_max, T_max);
    if (st == QIAO_OK) st = qc_arena_alloc(&w->acts, w->at.total);
    if (st == QIAO_OK && train) st = qc_arena_alloc(&w->dacts, w->at.total);
    if (st != QIAO_OK) {
        qmod_work_free(w);
        return st;
    }
    qc_table_bind(&w->at, w->acts.base, &w->a);
    if (train) qc_table_bind(&w->at, w->dacts.base, &w->da);
    return QIAO_OK;
}

qiao_status qmod_work_reserve(qmod_work *w, const qmod_model *m, int64_t B, int64_t T) {
    if (!w || !m) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_work_reserve: NULL argument");
    if (w->acts.base && B <= w->B_max && (T <= w->T_max || qmod_tower_of(w->mod)->fixed_len)) return QIAO_OK;
    const qmod_modality mod = w->mod;
    const bool train = w->train;
    const int64_t nb = B > w->B_max ? B : w->B_max, nt = T > w->T_max ? T : w->T_max;
    qmod_work_free(w);
    return qmod_work_init(w, m, mod, nb, nt, train);
}

/* ---- running the encoders ------------------------------------------------------- */

static qiao_status check_batch(const qmod_model *m, const qmod_work *w, const qmod_batch *b) {
    if (b->mod != w->mod)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "a %s batch given to a %s workspace", qmod_modality_name(b->mod),
                        qmod_modality_name(w->mod));
    const qmod_tower *tw = qmod_tower_of(b->mod);
    if (b->B < 1 || b->B > w->B_max || b->T < 1 || (!tw->fixed_len && b->T > w->T_max))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "%s batch of %lld x %lld does not fit the workspace (%lld x %lld); reserve it first",
                        qmod_modality_name(b->mod), (long long)b->B, (long long)b->T, (long long)w->B_max,
                        (long long)w->T_max);
    return tw->check(m, b);
}

qiao_status qmod_forward(const qb_exec *ex, const qmod_model *m, qmod_work *w, const qmod_batch *b,
                         const float **emb) {
    if (!ex || !m || !w || !b || !emb) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_forward: NULL argument");
    qiao_status st = check_batch(m, w, b);
    if (st != QIAO_OK) return st;
    const qmod_tower *tw = qmod_tower_of(b->mod);
    tw->forward(ex, m, w, b);
    *emb = ((const nn_trunk_acts *)((const char *)&w->a + tw->trunk_offset))->emb;
    /* The kernels return void: a failure on any of their threads (OpenBLAS
     * without a work buffer) surfaces here, and *emb is then not valid. */
    return ex->ops->sync(ex);
}

qiao_status qmod_tokens(const qmod_model *m, const qmod_work *w, const qmod_batch *b, qmod_token_seq *out) {
    if (!m || !w || !b || !out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_tokens: NULL argument");
    if (b->mod != w->mod || !w->acts.base)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_tokens: the batch is not the workspace's");
    const qmod_tower *tw = qmod_tower_of(b->mod);
    const nn_trunk_acts *ta = (const nn_trunk_acts *)((const char *)&w->a + tw->trunk_offset);
    out->x = ta->lnf;
    out->mask = tw->token_mask(w, b);
    out->B = b->B;
    out->T = tw->trunk_tokens(&m->cfg, b->T);
    out->C = tw->trunk_dims(&m->cfg)->C;
    return QIAO_OK;
}

void qmod_backward(const qb_exec *ex, const qmod_model *m, qmod_params *grads, qmod_work *w, const qmod_batch *b,
                   const float *demb) {
    qmod_backward_at(ex, m, grads, w, b, demb, NULL);
}

/* Clears the activation gradients of the tower's front end (its own layers
 * accumulate into them) and leaves the trunk's alone: nn_trunk_backward
 * writes each of those before it reads it. Clearing the whole arena was
 * about 1.1 GB of memset a step at base.json's batch 128, 8 % of the step
 * (docs/benchmarks.md, "Where a training step goes"). */
static void zero_front_end_grads(const qb_exec *ex, qmod_work *w, const qmod_tower *tw) {
    const size_t t0 = tw->trunk_offset, t1 = t0 + sizeof(nn_trunk_acts);
    for (size_t i = 0; i < w->at.n; i++) {
        const qc_tensor_desc *d = &w->at.t[i];
        if (d->field != QC_NO_FIELD && d->field >= t0 && d->field < t1) continue;
        ex->ops->zero(ex, w->dacts.base + d->offset, (size_t)d->numel * sizeof(float));
    }
}

void qmod_backward_at(const qb_exec *ex, const qmod_model *m, qmod_params *grads, qmod_work *w, const qmod_batch *b,
                      const float *demb, const float *dtokens) {
    const qmod_tower *tw = qmod_tower_of(b->mod);
    const int t = QC_PROF_BEGIN(ex->prof, QC_PROF_ELEMENTWISE, NULL, 0, "zero.dacts");
    zero_front_end_grads(ex, w, tw);
    QC_PROF_END(ex->prof, t, 0);
    tw->backward(ex, m, grads, w, b, demb, dtokens);
}

/* Runs a prepared batch through a (grown) workspace and copies the rows out. */
static qiao_status embed_batch(const qb_exec *ex, const qmod_model *m, qmod_work *w, qmod_modality mod,
                               qmod_batch *b, float *out) {
    qiao_status st = QIAO_OK;
    if (!w->acts.base) st = qmod_work_init(w, m, mod, b->B, b->T, false);
    if (st == QIAO_OK) st = qmod_work_reserve(w, m, b->B, b->T);
    const float *emb = NULL;
    if (st == QIAO_OK) st = qmod_forward(ex, m, w, b, &emb);
    if (st == QIAO_OK) ex->ops->to_host(ex, out, emb, (size_t)(b->B * m->cfg.embed_dim) * sizeof(float));
    qmod_batch_free(b);
    return st;
}

qiao_status qmod_embed(const qb_exec *ex, const qmod_model *m, qmod_work *w, qmod_modality mod,
                       const void *const *items, size_t n, float *out) {
    const qmod_tower *tw = qmod_tower_of(mod);
    if (!ex || !m || !w || !out || !tw) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_embed: bad argument");
    qmod_batch b;
    qiao_status st = tw->prepare(m, items, n, &b);
    return st == QIAO_OK ? embed_batch(ex, m, w, mod, &b, out) : st;
}

qiao_status qmod_embed_texts(const qb_exec *ex, const qmod_model *m, qmod_work *w, const char *const *texts,
                             size_t n, float *out) {
    return qmod_embed(ex, m, w, QMOD_TEXT, (const void *const *)texts, n, out);
}

qiao_status qmod_embed_images(const qb_exec *ex, const qmod_model *m, qmod_work *w, const qiao_image *const *imgs,
                              size_t n, float *out) {
    return qmod_embed(ex, m, w, QMOD_IMAGE, (const void *const *)imgs, n, out);
}

qiao_status qmod_embed_audio(const qb_exec *ex, const qmod_model *m, qmod_work *w, const qiao_audio *const *clips,
                             size_t n, float *out) {
    return qmod_embed(ex, m, w, QMOD_AUDIO, (const void *const *)clips, n, out);
}

/* ---- packed weights for inference ---------------------------------------------- */

/* A weight the forward passes as B with trans_b to the GEMM: nn.Linear's
 * (out, in), a conv's (OC, C, K) as (OC, C*K) (conv.c's im2col GEMM), the
 * gate's and char_proj's (C, 2C) and (C, n*Cc) used a column range at a time.
 * The "_emb.weight" tables are lookups, never multiplied. */
static bool is_gemm_weight(const qc_tensor_desc *t) {
    const size_t n = strlen(t->name), suf = strlen(".weight");
    if (t->ndim < 2 || n < suf || strcmp(t->name + n - suf, ".weight") != 0) return false;
    return strstr(t->name, "_emb.weight") == NULL;
}

qiao_status qmod_pack_weights(const qmod_model *m, qb_packed_set **out) {
    return qmod_pack_weights_prec(m, QB_PREC_F32, out);
}

qiao_status qmod_pack_weights_prec(const qmod_model *m, qb_precision prec, qb_packed_set **out) {
    *out = NULL;
    if (prec == QB_PREC_F32 && !qb_cpu_gemm_packed_supported()) return QIAO_OK;
    qb_packed_src *src = calloc(m->tab.n ? m->tab.n : 1, sizeof *src);
    if (!src) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qmod_pack_weights: out of memory");
    size_t n = 0;
    for (size_t i = 0; i < m->tab.n; i++) {
        const qc_tensor_desc *t = &m->tab.t[i];
        if (!is_gemm_weight(t)) continue;
        src[n++] = (qb_packed_src){m->arena.base + t->offset, t->shape[0], t->numel / t->shape[0]};
    }
    qiao_status st = qb_packed_set_new_prec(src, n, prec, out);
    free(src);
    return st;
}
