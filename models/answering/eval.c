/* models/answering/eval.c - VQA accuracy over a split (see answering.h). */
#include <math.h>
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
    for (int k = 0; k < QF_NMOD; k++) out->mean_w[k] = out->n ? out->mean_w[k] / (double)out->n : NAN;
    return st;
}
