/* The public VQA API (qiao.h, "Visual question answering"): argument
 * checks, the question's inputs prepared as the training data prepares them
 * (models/embed.h batches, models/vqa.h statistics), one pass through
 * models/vqa.c, and the answer labelled in the question's language. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/core.h"
#include "models/vqa.h"

QIAO_API qiao_vqa_params qiao_vqa_default_params(void) {
    qiao_vqa_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.top_k = 3;
    p.weighting = QIAO_WEIGHTING_MODEL;
    p.lang = NULL;
    return p;
}

QIAO_API int qiao_model_can_answer(const qiao_model *model) {
    if (!model) return 0;
    const int h = qmod_head_find(&model->m->cfg, QMOD_VQA_ANSWER_HEAD);
    return model->m->cfg.has_fusion && h >= 0 && model->m->cfg.heads[h].fused;
}

void qapi_vqa_free(qiao_session *s) {
    if (!s || !s->vqa) return;
    qmod_vqa_work_free(s->vqa);
    free(s->vqa);
    s->vqa = NULL;
}

size_t qapi_vqa_memory(const qiao_session *s) {
    if (!s || !s->vqa) return 0;
    size_t bytes = (s->vqa->acts.n + s->vqa->dacts.n) * sizeof(float);
    for (int k = 0; k < QF_NMOD; k++) bytes += (s->vqa->tower[k].acts.n + s->vqa->tower[k].dacts.n) * sizeof(float);
    bytes += (s->vqa->answer.acts.n + s->vqa->lang.acts.n) * sizeof(float);
    return bytes;
}

/* "zh" when the text holds a CJK ideograph or CJK punctuation, else "en":
 * the shapes world's two languages, told apart by script. */
static const char *script_lang(const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        /* U+3000..U+9FFF are E3 80 80 .. E9 BF BF in UTF-8 (CJK symbols, kana, ideographs);
         * U+FF00..U+FFEF (full-width forms) EF BC 80 .. EF BF AF */
        if (*p >= 0xE3 && *p <= 0xE9) return "zh";
        if (*p == 0xEF && (p[1] == 0xBC || p[1] == 0xBD)) return "zh";
    }
    return "en";
}

static qiao_status read_params(const qiao_vqa_params *in, qiao_vqa_params *p) {
    *p = qiao_vqa_default_params();
    qiao_status st = qc_params_read(p, sizeof *p, in, offsetof(qiao_vqa_params, lang) + sizeof(const char *),
                                    "qiao_vqa_default_params");
    if (st != QIAO_OK) return st;
    if (p->top_k < 1 || p->top_k > QIAO_VQA_MAX_TOP)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_vqa_ask: top_k is %d, need 1..%d", p->top_k,
                        QIAO_VQA_MAX_TOP);
    if (p->weighting < QIAO_WEIGHTING_MODEL || p->weighting > QIAO_WEIGHTING_EQUAL)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "qiao_vqa_ask: weighting is %d, need QIAO_WEIGHTING_MODEL (0), _LEARNED, _HEURISTIC or "
                        "_EQUAL (3)",
                        p->weighting);
    if (p->lang && strcmp(p->lang, "zh") != 0 && strcmp(p->lang, "en") != 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_vqa_ask: lang must be \"zh\", \"en\" or NULL");
    return QIAO_OK;
}

QIAO_API qiao_status qiao_vqa_ask(qiao_session *session, const qiao_image *image, const char *question,
                                  const qiao_audio *question_audio, const qiao_vqa_params *params,
                                  qiao_vqa_answer *out) {
    if (out) memset(out, 0, sizeof *out);
    if (!session || !image || !out)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_vqa_ask: session, image and out are required");
    qiao_vqa_params p;
    qiao_status st = read_params(params, &p);
    if (st != QIAO_OK) return st;
    const qmod_model *m = session->m;
    if ((st = qmod_vqa_check(m)) != QIAO_OK) return st;
    const bool typed = question && question[0];
    if (!typed && !question_audio)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_vqa_ask: no question: give its text, its audio or both");
    if (question_audio && (st = qapi_check_clip("qiao_vqa_ask", question_audio, 0)) != QIAO_OK) return st;
    if (question_audio && !qmod_has_tower(&m->cfg, QMOD_AUDIO))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_vqa_ask: model %s has no audio tower for a spoken question",
                        m->cfg.name);
    if (typed && !qmod_has_tower(&m->cfg, QMOD_TEXT))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_vqa_ask: model %s has no text tower for a typed question",
                        m->cfg.name);
    if (!session->vqa) {
        session->vqa = calloc(1, sizeof *session->vqa);
        if (!session->vqa) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qiao_vqa_ask: out of memory");
        if ((st = qmod_vqa_work_init(session->vqa, m, 1, false)) != QIAO_OK) {
            free(session->vqa);
            session->vqa = NULL;
            return st;
        }
    }
    /* the inputs, as one-row batches with their statistics */
    qmod_batch b[QF_NMOD];
    memset(b, 0, sizeof b);
    float stats[QF_NMOD][QF_NSTATS];
    memset(stats, 0, sizeof stats);
    qiao_audio view, *owned = NULL;
    st = qmod_batch_images(m, &image, 1, &b[QF_IMAGE]);
    if (st == QIAO_OK) qmod_vqa_image_stats(image, stats[QF_IMAGE]);
    if (st == QIAO_OK && typed && (st = qmod_batch_text(m, &question, 1, &b[QF_TEXT])) == QIAO_OK)
        qmod_vqa_text_stats(&b[QF_TEXT], 0, stats[QF_TEXT]);
    if (st == QIAO_OK && question_audio) {
        st = qapi_clip_view(m, question_audio, &view, &owned);
        const qiao_audio *clip = &view;
        if (st == QIAO_OK) st = qmod_batch_audio(m, &clip, 1, &b[QF_AUDIO]);
        if (st == QIAO_OK) st = qmod_vqa_audio_stats(m, &b[QF_AUDIO], 0, stats[QF_AUDIO]);
        qiao_audio_free(owned);
    }
    qmod_vqa_inputs in;
    memset(&in, 0, sizeof in);
    in.B = 1;
    for (int k = 0; k < QF_NMOD; k++) {
        in.batch[k] = b[k].B ? &b[k] : NULL;
        in.stats[k] = stats[k];
    }
    const qf_weighting mode = p.weighting == QIAO_WEIGHTING_MODEL ? m->cfg.fusion.weighting
                                                                  : (qf_weighting)(p.weighting - 1);
    const float *logits = NULL, *lang = NULL, *w = NULL;
    if (st == QIAO_OK) st = qmod_vqa_forward(&session->ex, m, session->vqa, &in, mode, &logits, &lang, &w);
    if (st == QIAO_OK) {
        /* the question's language: asked for, else the typed text's script, else the language head */
        const char *lg = p.lang ? p.lang : typed ? script_lang(question) : lang && lang[1] > lang[0] ? "en" : "zh";
        snprintf(out->lang, sizeof out->lang, "%s", lg);
        const int head = session->vqa->answer_head;
        const int64_t K = m->cfg.heads[head].mlp.classes;
        double mx = -INFINITY, sum = 0.0;
        for (int64_t k = 0; k < K; k++) mx = fmax(mx, logits[k]);
        for (int64_t k = 0; k < K; k++) sum += exp((double)logits[k] - mx);
        /* top-k by selection: K is a few dozen answers */
        int64_t taken[QIAO_VQA_MAX_TOP];
        const int n = (int)(p.top_k < K ? p.top_k : K);
        for (int t = 0; t < n; t++) {
            int64_t best = -1;
            for (int64_t k = 0; k < K; k++) {
                bool used = false;
                for (int u = 0; u < t; u++) used = used || taken[u] == k;
                if (!used && (best < 0 || logits[k] > logits[best])) best = k;
            }
            taken[t] = best;
            out->top[t].p = (float)(exp((double)logits[best] - mx) / sum);
        }
        /* one parse of the config for all 2n labels; zeroed, so the bytes
         * after each label's NUL are the same in every answer */
        char keys[QIAO_VQA_MAX_TOP][QIAO_VQA_TEXT_MAX] = {{0}}, texts[QIAO_VQA_MAX_TOP][QIAO_VQA_TEXT_MAX] = {{0}};
        qmod_head_labels(&m->cfg, head, taken, n, lg, keys[0], texts[0], QIAO_VQA_TEXT_MAX);
        for (int t = 0; t < n; t++) {
            memcpy(out->top[t].key, keys[t], sizeof out->top[t].key);
            memcpy(out->top[t].text, texts[t], sizeof out->top[t].text);
        }
        out->n_top = n;
        out->best = out->top[0];
        out->w_text = w[QF_TEXT], out->w_image = w[QF_IMAGE], out->w_audio = w[QF_AUDIO];
    }
    for (int k = 0; k < QF_NMOD; k++) qmod_batch_free(&b[k]);
    if (st != QIAO_OK) memset(out, 0, sizeof *out);
    return st;
}

QIAO_API qiao_status qiao_vqa_ask_files(qiao_session *session, const char *image_path, const char *question,
                                        const char *audio_path, const qiao_vqa_params *params, qiao_vqa_answer *out) {
    if (out) memset(out, 0, sizeof *out);
    if (!session || !image_path || !out)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_vqa_ask_files: session, image path and out are required");
    qiao_status st = qmod_vqa_check(session->m);
    if (st != QIAO_OK) return st;
    if (!(question && question[0]) && !audio_path)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_vqa_ask_files: no question: give its text, its audio or both");
    qiao_image *img = NULL;
    qiao_audio *audio = NULL;
    st = qiao_image_decode_file(image_path, NULL, &img);
    if (st == QIAO_OK && audio_path) st = qiao_audio_decode_file(audio_path, NULL, &audio);
    if (st == QIAO_OK) st = qiao_vqa_ask(session, img, question, audio, params, out);
    qiao_image_free(img);
    qiao_audio_free(audio);
    return st;
}
