/* models/vqa.c - visual question answering on the fuser (see vqa.h). */
#include "models/vqa.h"

#include <stdlib.h>
#include <string.h>

#include "modalities/audio/audio.h"

static const qmod_modality k_towers[QF_NMOD] = {QMOD_TEXT, QMOD_IMAGE, QMOD_AUDIO};

qmod_modality qmod_vqa_tower(int qf_mod) {
    return k_towers[qf_mod];
}

qiao_status qmod_vqa_check(const qmod_model *m) {
    if (!m) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "VQA: no model");
    const int h = qmod_head_find(&m->cfg, QMOD_VQA_ANSWER_HEAD);
    if (!m->cfg.has_fusion || h < 0 || !m->cfg.heads[h].fused)
        return qc_error(QIAO_ERR_UNSUPPORTED,
                        "model %s cannot answer questions: it has no fusion section with an \"answer\" head "
                        "(an embedding model; use a VQA model such as models/qiao-vqa.safetensors)",
                        m->cfg.name);
    const int l = qmod_head_find(&m->cfg, QMOD_VQA_LANG_HEAD);
    if (l >= 0 && (!m->cfg.heads[l].fused || m->cfg.heads[l].mlp.classes != 2))
        return qc_error(QIAO_ERR_FORMAT, "model %s: head \"lang\" must read the fusion and have 2 classes",
                        m->cfg.name);
    return QIAO_OK;
}

void qmod_vqa_work_free(qmod_vqa_work *w) {
    if (!w) return;
    for (int m = 0; m < QF_NMOD; m++) qmod_work_free(&w->tower[m]), free(w->dtok[m]), free(w->ntok[m]);
    qc_arena_free(&w->acts);
    qc_arena_free(&w->dacts);
    qc_table_free(&w->at);
    qf_fuser_scratch_free(&w->s);
    qmod_head_work_free(&w->answer);
    qmod_head_work_free(&w->lang);
    free(w->present);
    qmod_places_free(&w->places);
    free(w->dpatch);
    memset(w, 0, sizeof *w);
}

qiao_status qmod_vqa_work_init(qmod_vqa_work *w, const qmod_model *m, int64_t B_max, bool train) {
    if (!w) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_vqa_work_init: workspace is NULL");
    memset(w, 0, sizeof *w);
    qiao_status st = qmod_vqa_check(m);
    if (st != QIAO_OK) return st;
    if (B_max < 1 || B_max > (1 << 20))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "VQA: %lld questions per batch", (long long)B_max);
    w->train = train;
    w->B_max = B_max;
    w->answer_head = qmod_head_find(&m->cfg, QMOD_VQA_ANSWER_HEAD);
    w->lang_head = qmod_head_find(&m->cfg, QMOD_VQA_LANG_HEAD);
    qc_table_init_empty(&w->at);
    st = qmod_head_work_init(&w->answer, m, w->answer_head, B_max, train);
    if (st == QIAO_OK && w->lang_head >= 0) st = qmod_head_work_init(&w->lang, m, w->lang_head, B_max, train);
    if (st == QIAO_OK && !(w->present = calloc((size_t)B_max, QF_NMOD)))
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "VQA: out of memory");
    if (st != QIAO_OK) qmod_vqa_work_free(w);
    return st;
}

/* Sizes the fuser's activations for at least d (keeping larger maxima). */
static qiao_status fuser_reserve(qmod_vqa_work *w, const qmod_model *m, const qf_fuser_dims *d) {
    bool fits = w->acts.base && d->B <= w->dims.B;
    for (int k = 0; k < QF_NMOD; k++) fits = fits && d->T[k] <= w->dims.T[k];
    if (fits) return QIAO_OK;
    qf_fuser_dims nd = *d;
    if (w->acts.base) {
        if (w->dims.B > nd.B) nd.B = w->dims.B;
        for (int k = 0; k < QF_NMOD; k++)
            if (w->dims.T[k] > nd.T[k]) nd.T[k] = w->dims.T[k];
    }
    qc_arena_free(&w->acts);
    qc_arena_free(&w->dacts);
    qc_table_free(&w->at);
    qf_fuser_scratch_free(&w->s);
    qc_table_init_empty(&w->at);
    qiao_status st = qf_fuser_describe_acts(&w->at, "fusion.", &m->cfg.fusion, &nd, w->train, 0);
    if (st == QIAO_OK) st = qc_arena_alloc(&w->acts, w->at.total);
    if (st == QIAO_OK && w->train) st = qc_arena_alloc(&w->dacts, w->at.total);
    if (st == QIAO_OK) st = qf_fuser_scratch_init(&w->s, &nd);
    if (st != QIAO_OK) {
        qc_arena_free(&w->acts);
        qc_arena_free(&w->dacts);
        memset(&w->dims, 0, sizeof w->dims);
        return st;
    }
    qc_table_bind(&w->at, w->acts.base, &w->a);
    if (w->train) qc_table_bind(&w->at, w->dacts.base, &w->da);
    w->dims = nd;
    return QIAO_OK;
}

/* (x - mean) / std per channel into the workspace's buffer for modality k:
 * the towers' final tokens share a large common vector (about a third of an
 * image token's energy in qiao-base), which the fuser's LayerNorms keep, so
 * unstandardized inputs all look alike to it. */
static qiao_status standardize(const qmod_model *m, qmod_vqa_work *w, int k, const qmod_token_seq *seq) {
    const int64_t C = seq->C, n = seq->B * seq->T * C;
    qiao_status st = qmod_grow((void **)&w->ntok[k], &w->ntok_n[k], n, sizeof(float), "VQA");
    if (st != QIAO_OK) return st;
    const float *mean = m->p.tok_mean[k], *sd = m->p.tok_std[k];
    for (int64_t r = 0; r < seq->B * seq->T; r++)
        for (int64_t c = 0; c < C; c++) w->ntok[k][r * C + c] = (seq->x[r * C + c] - mean[c]) / sd[c];
    return QIAO_OK;
}

/* With places, the picture's standardized patches pooled into G x G place
 * tokens (fuser.h qf_places_forward), which the fuser reads instead. */
static qiao_status picture_places(const qmod_model *m, qmod_vqa_work *w, qf_fuser_input *fin, qf_fuser_dims *d) {
    const int64_t G = m->cfg.fusion.places;
    if (G == 0) return QIAO_OK;
    qiao_status st = qmod_places_pool(&w->places, fin->tokens[QF_IMAGE], d->B, d->T[QF_IMAGE], G,
                                      m->cfg.fusion.in_width[QF_IMAGE], "VQA");
    if (st != QIAO_OK) return st;
    fin->tokens[QF_IMAGE] = w->places.x;
    fin->mask[QF_IMAGE] = NULL;
    d->T[QF_IMAGE] = G * G;
    return QIAO_OK;
}

qiao_status qmod_vqa_memo_init(qmod_memo *mm, const qmod_model *m, int64_t n, double max_bytes) {
    memset(mm, 0, sizeof *mm);
    qiao_status st = qmod_vqa_check(m);
    if (st != QIAO_OK) return st;
    const int64_t G = m->cfg.fusion.places;
    return qmod_memo_init(mm, n, G > 0 ? G * G : m->cfg.image.tokens, m->cfg.fusion.in_width[QF_IMAGE], max_bytes);
}

/* The memo's view of the batch's rows. */
static qmod_memo_rows memo_rows(const qmod_vqa_inputs *in) {
    const qmod_memo_rows r = {.B = in->B,
                              .picture = in->picture,
                              .present = in->present ? in->present + QF_IMAGE : NULL,
                              .stride = QF_NMOD};
    return r;
}

/* The batch's pictures from the memo when it holds every present one (the
 * rest read zeros: masked by their absence). */
static qiao_status memo_read(const qmod_vqa_inputs *in, qf_fuser_input *fin, qf_fuser_dims *d, bool *hit) {
    *hit = false;
    if (!in->memo || !in->picture || !in->batch[QF_IMAGE]) return QIAO_OK;
    const qmod_memo_rows r = memo_rows(in);
    qiao_status st = QIAO_OK;
    const float *tok = qmod_memo_read(in->memo, &r, &st);
    if (!tok) return st;
    fin->tokens[QF_IMAGE] = tok;
    fin->mask[QF_IMAGE] = NULL;
    fin->stats[QF_IMAGE] = in->stats[QF_IMAGE];
    d->T[QF_IMAGE] = in->memo->T;
    *hit = true;
    return QIAO_OK;
}

static void memo_write(const qmod_vqa_inputs *in, const qf_fuser_input *fin, const qf_fuser_dims *d) {
    if (!in->memo || !in->picture || !in->batch[QF_IMAGE] || d->T[QF_IMAGE] != in->memo->T) return;
    const qmod_memo_rows r = memo_rows(in);
    qmod_memo_write(in->memo, &r, fin->tokens[QF_IMAGE]);
}

/* Tower k on its batch: standardized tokens into the fuser's input. */
static qiao_status run_tower(const qb_exec *ex, const qmod_model *m, qmod_vqa_work *w, const qmod_vqa_inputs *in, int k,
                             qf_fuser_input *fin, qf_fuser_dims *d) {
    const qmod_batch *b = in->batch[k];
    if (!qmod_has_tower(&m->cfg, k_towers[k]))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "VQA: model %s has no %s tower for this input", m->cfg.name,
                        qmod_modality_name(k_towers[k]));
    if (b->B != in->B || b->mod != k_towers[k])
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "VQA: the %s batch has %lld rows for %lld questions",
                        qmod_modality_name(k_towers[k]), (long long)b->B, (long long)in->B);
    qmod_work *tw = &w->tower[k];
    qiao_status st = tw->acts.base ? qmod_work_reserve(tw, m, b->B, b->T)
                                   : qmod_work_init(tw, m, k_towers[k], w->B_max, b->T, w->train);
    const float *emb;
    if (st == QIAO_OK) st = qmod_forward(ex, m, tw, b, &emb);
    qmod_token_seq seq;
    if (st == QIAO_OK) st = qmod_tokens(m, tw, b, &seq);
    if (st == QIAO_OK) st = standardize(m, w, k, &seq);
    if (st != QIAO_OK) return st;
    fin->tokens[k] = w->ntok[k];
    fin->mask[k] = seq.mask;
    fin->stats[k] = in->stats[k];
    d->T[k] = seq.T;
    return QIAO_OK;
}

qiao_status qmod_vqa_picture_tokens(const qb_exec *ex, const qmod_model *m, qmod_vqa_work *w,
                                    const qmod_batch *pictures, const float **tok) {
    if (!ex || !m || !w || !pictures || !tok)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_vqa_picture_tokens: NULL argument");
    if (pictures->B < 1 || pictures->B > w->B_max)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "VQA: %lld pictures for a workspace of %lld",
                        (long long)pictures->B, (long long)w->B_max);
    qmod_vqa_inputs in;
    qf_fuser_input fin;
    qf_fuser_dims d;
    memset(&in, 0, sizeof in), memset(&fin, 0, sizeof fin), memset(&d, 0, sizeof d);
    in.B = d.B = pictures->B;
    in.batch[QF_IMAGE] = pictures;
    qiao_status st = run_tower(ex, m, w, &in, QF_IMAGE, &fin, &d);
    if (st == QIAO_OK) st = picture_places(m, w, &fin, &d);
    if (st == QIAO_OK) st = ex->ops->sync(ex);
    *tok = st == QIAO_OK ? fin.tokens[QF_IMAGE] : NULL;
    return st;
}

/* Runs the towers and fills the fuser's input. */
static qiao_status run_towers(const qb_exec *ex, const qmod_model *m, qmod_vqa_work *w, const qmod_vqa_inputs *in,
                              qf_fuser_input *fin, qf_fuser_dims *d) {
    memset(fin, 0, sizeof *fin);
    d->B = in->B;
    if (in->B < 1 || in->B > w->B_max)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "VQA: %lld questions for a workspace of %lld", (long long)in->B,
                        (long long)w->B_max);
    bool memo_hit = false;
    qiao_status st = memo_read(in, fin, d, &memo_hit);
    if (st != QIAO_OK) return st;
    w->memo_hit = memo_hit;
    for (int k = 0; k < QF_NMOD; k++) {
        if (k == QF_IMAGE && memo_hit) continue;
        d->T[k] = 0;
        if (in->batch[k] && (st = run_tower(ex, m, w, in, k, fin, d)) != QIAO_OK) return st;
    }
    for (int64_t r = 0; r < in->B; r++)
        for (int k = 0; k < QF_NMOD; k++)
            w->present[r * QF_NMOD + k] =
                in->batch[k] && (!in->present || in->present[r * QF_NMOD + k] != 0) ? 1 : 0;
    fin->present = w->present;
    if (d->T[QF_IMAGE] == 0) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "VQA: no picture in the batch");
    if (d->T[QF_TEXT] + d->T[QF_AUDIO] == 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "VQA: no question in the batch (neither text nor audio)");
    if (!memo_hit) {
        if ((st = picture_places(m, w, fin, d)) != QIAO_OK) return st;
        memo_write(in, fin, d);
    }
    return fuser_reserve(w, m, d);
}

qiao_status qmod_vqa_forward(const qb_exec *ex, const qmod_model *m, qmod_vqa_work *w, const qmod_vqa_inputs *in,
                             qf_weighting mode, const float **answer_logits, const float **lang_logits,
                             const float **weights) {
    if (!ex || !m || !w || !in || !answer_logits)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_vqa_forward: NULL argument");
    if (!qf_weighting_name(mode)) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "VQA: unknown weighting %d", (int)mode);
    qiao_status st = run_towers(ex, m, w, in, &w->fin, &w->fd);
    if (st == QIAO_OK) st = qf_fuser_forward(ex, &w->a, &w->s, &m->p.fusion, &w->fin, mode, &m->cfg.fusion, &w->fd);
    if (st == QIAO_OK) st = qmod_head_forward(ex, m, &w->answer, w->a.z, in->B, answer_logits);
    if (lang_logits) *lang_logits = NULL;
    if (st == QIAO_OK && w->lang_head >= 0 && lang_logits)
        st = qmod_head_forward(ex, m, &w->lang, w->a.z, in->B, lang_logits);
    if (weights) *weights = w->a.w;
    return st;
}

qiao_status qmod_vqa_backward(const qb_exec *ex, const qmod_model *m, qmod_params *grads, qmod_vqa_work *w,
                              const qmod_vqa_inputs *in, qf_weighting mode, const float *danswer, const float *dlang,
                              const bool train_tower[QF_NMOD], const float *const dtok_add[QF_NMOD]) {
    if (!w->train || !w->dacts.base)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_vqa_backward: the workspace was made for inference");
    const qf_fuser_input fin = w->fin;
    const qf_fuser_dims d = w->fd;
    if (d.B != in->B)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_vqa_backward: %lld rows after a forward of %lld",
                        (long long)in->B, (long long)d.B);
    if (w->memo_hit && train_tower && train_tower[QF_IMAGE])
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "qmod_vqa_backward: the pictures came from the memo; the picture tower cannot train");
    qc_arena_zero(&w->dacts);
    qmod_head_backward(ex, m, grads, &w->answer, w->a.z, in->B, danswer, w->da.z);
    if (dlang && w->lang_head >= 0) qmod_head_backward(ex, m, grads, &w->lang, w->a.z, in->B, dlang, w->da.z);
    float *dtok[QF_NMOD] = {NULL, NULL, NULL};
    for (int k = 0; k < QF_NMOD; k++) {
        if (!in->batch[k] || !train_tower || !train_tower[k]) continue;
        const int64_t n = in->B * d.T[k] * m->cfg.fusion.in_width[k];
        qiao_status st = qmod_grow((void **)&w->dtok[k], &w->dtok_n[k], n, sizeof(float), "VQA");
        if (st != QIAO_OK) return st;
        memset(w->dtok[k], 0, (size_t)n * sizeof(float));
        dtok[k] = w->dtok[k];
    }
    qf_fuser_backward(ex, dtok, &grads->fusion, &w->da, &w->s, w->da.z, &w->a, &m->p.fusion, &fin, mode,
                      &m->cfg.fusion, &d);
    for (int k = 0; k < QF_NMOD; k++) {
        if (!dtok[k]) continue;
        int64_t T = d.T[k];
        if (k == QF_IMAGE && m->cfg.fusion.places > 0) {
            /* from the places back to the patches they were pooled from */
            const int64_t C = m->cfg.fusion.in_width[k], P = m->cfg.image.tokens, n = in->B * P * C;
            qiao_status st = qmod_grow((void **)&w->dpatch, &w->dpatch_n, n, sizeof(float), "VQA");
            if (st != QIAO_OK) return st;
            memset(w->dpatch, 0, (size_t)n * sizeof(float));
            qmod_places_backward(&w->places, dtok[k], w->dpatch, in->B, P, m->cfg.fusion.places, C);
            dtok[k] = w->dpatch;
            T = P;
        }
        /* through the standardization: d tokens = d standardized / std */
        const int64_t C = m->cfg.fusion.in_width[k], rows = in->B * T;
        const float *sd = m->p.tok_std[k];
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < C; c++) dtok[k][r * C + c] /= sd[c];
        if (dtok_add && dtok_add[k])
            for (int64_t i = 0; i < rows * C; i++) dtok[k][i] += dtok_add[k][i];
        qmod_backward_at(ex, m, grads, &w->tower[k], in->batch[k], NULL, dtok[k]);
    }
    return ex->ops->sync(ex);
}

void qmod_vqa_text_stats(const qmod_batch *text, int64_t row, float stats[QF_NSTATS]) {
    qf_text_stats(text->ids + row * text->T, text->lengths[row], QMOD_VQA_UNK_ID, stats);
}

void qmod_vqa_image_stats(const qiao_image *img, float stats[QF_NSTATS]) {
    qf_image_stats(qiao_image_pixels(img), qiao_image_width(img), qiao_image_height(img),
                   (int64_t)qiao_image_stride(img), stats);
}

qiao_status qmod_vqa_audio_stats(const qmod_model *m, const qmod_batch *audio, int64_t row,
                                 float stats[QF_NSTATS]) {
    const int64_t M = m->cfg.audio.n_mels;
    qiao_mel_params mp = qiao_mel_default_params();
    mp.n_mels = (int)M;
    float centers[512];
    if (M < 1 || M > 512) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "VQA: %lld mel bands", (long long)M);
    qiao_status st = qa_mel_centers_hz(&mp, centers);
    if (st != QIAO_OK) return st;
    qf_audio_stats(audio->mel + row * audio->T * M, audio->lengths[row], M, centers, stats);
    return QIAO_OK;
}
