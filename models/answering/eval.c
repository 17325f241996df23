/* models/answering/eval.c - VQA accuracy over a split (see answering.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/answering/answering.h"

static const char *const k_inputs[QMOD_VQA_N_INPUTS] = {"typed", "spoken", "both"};

const char *qmod_vqa_input_name(int input) {
    return input >= 0 && input < QMOD_VQA_N_INPUTS ? k_inputs[input] : NULL;
}

qmod_vqa_eval_params qmod_vqa_eval_default_params(void) {
    qmod_vqa_eval_params p;
    memset(&p, 0, sizeof p);
    p.input = QMOD_VQA_TYPED;
    p.cond = qmod_vqa_default_params();
    p.mode = QF_WEIGHT_LEARNED;
    p.batch = 64;
    p.seed = 12345;
    p.threads = 1;
    return p;
}

void qmod_vqa_batch_cells(const qmod_vqa_dataset *d, const qmod_vqa_batch *b, int64_t rows, int grid, bool places,
                          int32_t *lab) {
    const int64_t per_row = (int64_t)grid * grid * QMOD_VQA_NATTR;
    for (int64_t r = 0; r < rows; r++) {
        if (!b->present[r * QF_NMOD + QF_IMAGE])
            for (int64_t i = 0; i < per_row; i++) lab[r * per_row + i] = -1;
        else if (places)
            qmod_vqa_place_labels(d, b->scene[r], grid, lab + r * per_row);
        else
            qmod_vqa_cell_labels(d, b->scene[r], grid, lab + r * per_row);
    }
}

void qmod_vqa_cell_tokens(const qmod_model *m, const qmod_token_seq *seq, float *place, int32_t *arg,
                          const float **x, int64_t *T, int *grid, bool *places) {
    const int g = (int)lround(sqrt((double)seq->T));
    const int64_t G = m->cfg.has_fusion ? m->cfg.fusion.places : 0;
    *x = seq->x, *T = seq->T, *grid = g, *places = false;
    if ((int64_t)g * g != seq->T) {
        *T = 0;
        return;
    }
    if (G <= 0 || G > g) return;
    qf_places_forward(place, arg, seq->x, seq->B, g, G, seq->C);
    *x = place, *T = G * G, *grid = (int)G, *places = true;
}

void qmod_vqa_cell_hits(const float *logits, const int32_t *lab, int a, int64_t N, int64_t K, int64_t *n,
                        int64_t *right) {
    for (int64_t i = 0; i < N; i++) {
        const int32_t y = lab[i * QMOD_VQA_NATTR + a];
        if (y <= 0 || y >= K) continue;
        int64_t best = 0;
        for (int64_t k = 1; k < K; k++)
            if (logits[i * K + k] > logits[i * K + best]) best = k;
        (*n)++, *right += best == y;
    }
}

/* The cell heads' calls on one batch just run forward (rows [0, rows)). */
static qiao_status count_cells(const qb_exec *ex, const qmod_model *m, qmod_vqa_work *w, const int *heads,
                               qmod_head_work *hw, int32_t *lab, float *place, int32_t *arg,
                               const qmod_vqa_dataset *d, const qmod_vqa_batch *b, int64_t rows,
                               qmod_vqa_result *out) {
    qmod_token_seq seq;
    qiao_status st = qmod_tokens(m, &w->tower[QF_IMAGE], &b->image, &seq);
    if (st != QIAO_OK) return st;
    const float *x;
    int64_t T;
    int grid;
    bool places;
    qmod_vqa_cell_tokens(m, &seq, place, arg, &x, &T, &grid, &places);
    if (T == 0) return QIAO_OK; /* not a square grid of patches: nothing to label */
    qmod_vqa_batch_cells(d, b, rows, grid, places, lab);
    for (int a = 0; a < QMOD_VQA_NATTR; a++) {
        if (heads[a] < 0) continue;
        const int64_t K = m->cfg.heads[heads[a]].mlp.classes;
        const float *lg = NULL;
        if ((st = qmod_head_forward(ex, m, &hw[a], x, rows * T, &lg)) != QIAO_OK) return st;
        if ((st = ex->ops->sync(ex)) != QIAO_OK) return st;
        qmod_vqa_cell_hits(lg, lab, a, rows * T, K, &out->cell_n[a], &out->cell_correct[a]);
    }
    return QIAO_OK;
}

qiao_status qmod_vqa_eval(const qb_exec *ex, const qmod_model *m, const qmod_vqa_dataset *d, qmod_vqa_cache *cache,
                          const qmod_vqa_eval_params *p, qmod_vqa_result *out) {
    if (!ex || !m || !d || !p || !out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_vqa_eval: NULL argument");
    memset(out, 0, sizeof *out);
    if (!qmod_vqa_input_name(p->input))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "VQA eval: unknown input %d", p->input);
    if (d->n_types > 8) return qc_error(QIAO_ERR_FORMAT, "VQA eval: %d question types (at most 8)", (int)d->n_types);
    qiao_status st = qmod_vqa_check(m);
    if (st != QIAO_OK) return st;
    const int head = qmod_head_find(&m->cfg, QMOD_VQA_ANSWER_HEAD);
    const int64_t K = m->cfg.heads[head].mlp.classes;
    if (d->n_answers != K)
        return qc_error(QIAO_ERR_FORMAT, "VQA eval: the split has %d answers, model %s answers %lld", (int)d->n_answers,
                        m->cfg.name, (long long)K);
    if (p->input != QMOD_VQA_TYPED && d->n_spoken < d->n_questions)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "VQA eval: %lld of %lld questions are spoken; generate the split with --speech-questions",
                        (long long)d->n_spoken, (long long)d->n_questions);
    qmod_vqa_loader_params lp;
    memset(&lp, 0, sizeof lp);
    lp.model = m;
    lp.data = d;
    lp.cache = cache;
    lp.vqa = p->cond;
    lp.vqa.p_drop_text = p->input == QMOD_VQA_SPOKEN ? 1.0f : p->cond.p_drop_text;
    lp.vqa.p_drop_audio = p->input == QMOD_VQA_TYPED ? 1.0f : p->cond.p_drop_audio;
    lp.batch = p->batch > 0 ? p->batch : 64;
    lp.seed = p->seed;
    lp.threads = p->threads > 0 ? p->threads : 1;
    lp.prefetch = 2;
    lp.eval = true;
    qmod_vqa_work w;
    st = qmod_vqa_work_init(&w, m, lp.batch, false);
    int cell_head[QMOD_VQA_NATTR];
    qmod_head_work hw[QMOD_VQA_NATTR];
    memset(hw, 0, sizeof hw);
    int32_t *lab = NULL;
    bool cells = false;
    for (int a = 0; a < QMOD_VQA_NATTR; a++) {
        cell_head[a] = qmod_head_find(&m->cfg, qmod_vqa_cell_heads[a]);
        if (cell_head[a] < 0 || st != QIAO_OK) continue;
        cells = true;
        st = qmod_head_work_init(&hw[a], m, cell_head[a], lp.batch * m->cfg.image.tokens, false);
    }
    /* places (G <= the patch grid's side) are never more than the patches */
    const size_t cells_n = (size_t)(lp.batch * m->cfg.image.tokens);
    float *place = NULL;
    int32_t *arg = NULL;
    if (st == QIAO_OK && cells &&
        (!(lab = malloc(cells_n * QMOD_VQA_NATTR * sizeof *lab)) ||
         !(place = malloc(cells_n * (size_t)m->cfg.image.trunk.C * sizeof *place)) ||
         !(arg = malloc(cells_n * (size_t)m->cfg.image.trunk.C * sizeof *arg))))
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "VQA eval: out of memory");
    qmod_vqa_loader *l = NULL;
    if (st == QIAO_OK) st = qmod_vqa_loader_start(&lp, &l);
    const int64_t total = p->max_questions > 0 && p->max_questions < d->n_questions ? p->max_questions : d->n_questions;
    while (st == QIAO_OK && out->n < total) {
        qmod_vqa_batch *b = NULL;
        st = qmod_vqa_loader_next(l, &b);
        if (st != QIAO_OK || !b) break;
        qmod_vqa_inputs in;
        qmod_vqa_batch_inputs(b, p->input != QMOD_VQA_TYPED, &in);
        const float *logits = NULL, *lang = NULL, *wts = NULL;
        st = qmod_vqa_forward(ex, m, &w, &in, p->mode, &logits, &lang, &wts);
        const int64_t rows = b->B < total - out->n ? b->B : total - out->n;
        if (st == QIAO_OK && cells) st = count_cells(ex, m, &w, cell_head, hw, lab, place, arg, d, b, rows, out);
        for (int64_t r = 0; st == QIAO_OK && r < b->B && out->n < total; r++) {
            int64_t best = 0;
            for (int64_t k = 1; k < K; k++)
                if (logits[r * K + k] > logits[r * K + best]) best = k;
            const int ok = best == b->answer[r];
            out->n++, out->correct += ok;
            if (b->type[r] < 8) out->n_type[b->type[r]]++, out->correct_type[b->type[r]] += ok;
            if (b->lang[r] < 2) out->n_lang[b->lang[r]]++, out->correct_lang[b->lang[r]] += ok;
            if (lang) out->lang_correct += (lang[r * 2 + 1] > lang[r * 2]) == (b->lang[r] == 1);
            for (int k = 0; k < QF_NMOD; k++) out->mean_w[k] += wts[r * QF_NMOD + k];
        }
        qmod_vqa_loader_release(l, b);
        if (st == QIAO_OK && p->progress) p->progress("vqa", out->n, total, p->progress_user);
    }
    qmod_vqa_loader_stop(l);
    qmod_vqa_work_free(&w);
    for (int a = 0; a < QMOD_VQA_NATTR; a++) qmod_head_work_free(&hw[a]);
    free(lab), free(place), free(arg);
    for (int k = 0; k < QF_NMOD; k++) out->mean_w[k] = out->n ? out->mean_w[k] / (double)out->n : NAN;
    return st;
}
