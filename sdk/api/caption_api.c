/* The public captioning API (qiao.h, "Captioning"): argument checks with
 * the public field names, the picture decoded as the embedding API decodes
 * it, and models/captioning/caption.c (qmod_caption) writing the caption on
 * the session's execution context. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/core.h"
#include "models/captioning/captioning.h"

QIAO_API qiao_caption_params qiao_caption_default_params(void) {
    qiao_caption_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.lang = "zh";
    p.strategy = QIAO_CAPTION_GREEDY;
    p.beam_size = 4;
    p.length_alpha = 0.6;
    p.max_len = 64;
    p.temperature = 1.0;
    p.top_p = 1.0;
    p.seed = 0;
    return p;
}

QIAO_API int qiao_model_can_caption(const qiao_model *model) {
    return model && model->m->cfg.has_decoder && model->m->tok;
}

QIAO_API void qiao_caption_result_free(qiao_caption_result *result) {
    if (!result) return;
    free(result->text);
    free(result->pieces);
    memset(result, 0, sizeof *result);
}

/* Every field, whatever the strategy: a value that makes no sense is a
 * mistake even where this strategy would not read it. */
static qiao_status read_params(const char *fn, const qiao_caption_params *in, qiao_caption_params *p, int *lang) {
    *p = qiao_caption_default_params();
    qiao_status st = qc_params_read(p, sizeof *p, in, offsetof(qiao_caption_params, lang) + sizeof(const char *),
                                    "qiao_caption_default_params");
    if (st != QIAO_OK) return st;
    if (!p->lang || (strcmp(p->lang, "zh") != 0 && strcmp(p->lang, "en") != 0))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: lang must be \"zh\" or \"en\"", fn);
    *lang = !strcmp(p->lang, "zh") ? QMOD_LANG_ZH : QMOD_LANG_EN;
    if (p->strategy < QIAO_CAPTION_GREEDY || p->strategy > QIAO_CAPTION_SAMPLE)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "%s: strategy is %d, need QIAO_CAPTION_GREEDY (0), _BEAM (1) or _SAMPLE (2)", fn, p->strategy);
    if (p->beam_size < 1)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: beam_size is %d, need 1..%d", fn, p->beam_size,
                        QIAO_CAPTION_MAX_BEAM);
    if (p->beam_size > QIAO_CAPTION_MAX_BEAM)
        return qc_error(QIAO_ERR_TOO_LARGE, "%s: beam_size is %d, need 1..%d", fn, p->beam_size, QIAO_CAPTION_MAX_BEAM);
    if (p->max_len < 1)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: max_len is %d, need 1..%d (the end piece counts)", fn,
                        p->max_len, QIAO_CAPTION_MAX_LEN);
    if (p->max_len > QIAO_CAPTION_MAX_LEN)
        return qc_error(QIAO_ERR_TOO_LARGE, "%s: max_len is %d, need 1..%d", fn, p->max_len, QIAO_CAPTION_MAX_LEN);
    if (!isfinite(p->length_alpha) || p->length_alpha < 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: length_alpha is %g, need a finite value >= 0", fn,
                        p->length_alpha);
    if (!isfinite(p->temperature) || p->temperature < 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: temperature is %g, need a finite value >= 0", fn,
                        p->temperature);
    if (!(p->top_p > 0 && p->top_p <= 1))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: top_p is %g, need (0, 1]", fn, p->top_p);
    return QIAO_OK;
}

static qiao_status check_model(const char *fn, const qiao_session *s) {
    const qmod_model *m = s->m;
    if (!m->cfg.has_decoder || !m->tok)
        return qc_error(QIAO_ERR_UNSUPPORTED,
                        "%s: model %s writes no captions: it has no decoder (train one with `qiao train caption`)", fn,
                        m->cfg.name);
    return QIAO_OK;
}

/* The checks every entry point makes before it decodes anything. */
static qiao_status check_call(const char *fn, const qiao_session *s, const void *in, const qiao_caption_result *out,
                              const qiao_caption_params *params, qiao_caption_params *p, int *lang) {
    if (!s || !in || !out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: session, picture and out are required", fn);
    qiao_status st = read_params(fn, params, p, lang);
    if (st == QIAO_OK) st = check_model(fn, s);
    return st;
}

typedef struct token_relay {
    qiao_caption_token_fn fn;
    void *user_data;
} token_relay;

static void relay_token(const qmod_gen_token *t, void *user) {
    const token_relay *r = user;
    qiao_caption_token k = {t->id, t->index, t->text ? t->text : "", t->text ? t->text_len : 0,
                            t->text ? t->new_from : 0};
    r->fn(&k, r->user_data);
}

static qiao_status caption(qiao_session *s, const qiao_image *image, const qiao_caption_params *p, int lang,
                           qiao_caption_result *out) {
    const qmod_model *m = s->m;
    qmod_gen_params gp = qmod_gen_default_params();
    gp.strategy = p->strategy == QIAO_CAPTION_BEAM     ? QMOD_GEN_BEAM
                  : p->strategy == QIAO_CAPTION_SAMPLE ? QMOD_GEN_SAMPLE
                                                       : QMOD_GEN_GREEDY;
    /* max_len is a bound: the decoder's positions are another */
    gp.max_len = p->max_len < m->cfg.decoder.max_len ? p->max_len : (int)m->cfg.decoder.max_len;
    gp.beam_size = p->beam_size;
    gp.length_alpha = p->length_alpha;
    gp.temperature = p->temperature;
    gp.top_p = p->top_p;
    gp.seed = p->seed;
    token_relay relay = {p->on_token, p->on_token_user_data};
    if (p->on_token) gp.on_token = relay_token, gp.on_token_user_data = &relay;
    gp.cancel = p->cancel, gp.cancel_user_data = p->cancel_user_data;
    qmod_gen_result r;
    qiao_status st = qmod_caption(&s->ex, m, image, lang, &gp, &r);
    if (st != QIAO_OK) return st;
    if (!r.text && !(r.text = calloc(1, 1))) {
        qmod_gen_result_free(&r);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qiao_caption_image: out of memory");
    }
    out->text = r.text;
    out->text_len = strlen(r.text);
    out->pieces = r.n ? r.tokens : NULL;
    if (!r.n) free(r.tokens);
    out->n_pieces = r.n;
    out->logprob = r.logprob;
    out->score = r.score;
    out->ended = r.eos ? 1 : 0;
    snprintf(out->lang, sizeof out->lang, "%s", lang == QMOD_LANG_ZH ? "zh" : "en");
    return QIAO_OK;
}

QIAO_API qiao_status qiao_caption_image(qiao_session *session, const qiao_image *image,
                                        const qiao_caption_params *params, qiao_caption_result *out) {
    if (out) memset(out, 0, sizeof *out);
    qiao_caption_params p;
    int lang = 0;
    qiao_status st = check_call("qiao_caption_image", session, image, out, params, &p, &lang);
    if (st == QIAO_OK) st = caption(session, image, &p, lang, out);
    return st;
}

QIAO_API qiao_status qiao_caption_image_file(qiao_session *session, const char *path, const qiao_caption_params *params,
                                             qiao_caption_result *out) {
    if (out) memset(out, 0, sizeof *out);
    qiao_caption_params p;
    int lang = 0;
    qiao_status st = check_call("qiao_caption_image_file", session, path, out, params, &p, &lang);
    qiao_image *img = NULL;
    if (st == QIAO_OK) st = qiao_image_decode_file(path, NULL, &img);
    if (st == QIAO_OK) st = caption(session, img, &p, lang, out);
    qiao_image_free(img);
    return st;
}

QIAO_API qiao_status qiao_caption_image_memory(qiao_session *session, const void *data, size_t size,
                                               const qiao_caption_params *params, qiao_caption_result *out) {
    if (out) memset(out, 0, sizeof *out);
    qiao_caption_params p;
    int lang = 0;
    qiao_status st = check_call("qiao_caption_image_memory", session, data, out, params, &p, &lang);
    qiao_image *img = NULL;
    if (st == QIAO_OK) st = qiao_image_decode_memory(data, size, NULL, &img);
    if (st == QIAO_OK) st = caption(session, img, &p, lang, out);
    qiao_image_free(img);
    return st;
}

QIAO_API qiao_status qiao_caption_image_rgb(qiao_session *session, const uint8_t *pixels, int64_t width, int64_t height,
                                            size_t stride, const qiao_caption_params *params,
                                            qiao_caption_result *out) {
    if (out) memset(out, 0, sizeof *out);
    qiao_caption_params p;
    int lang = 0;
    qiao_status st = check_call("qiao_caption_image_rgb", session, pixels, out, params, &p, &lang);
    qiao_image *img = NULL;
    if (st == QIAO_OK) st = qiao_image_from_rgb(pixels, width, height, stride, &img);
    if (st == QIAO_OK) st = caption(session, img, &p, lang, out);
    qiao_image_free(img);
    return st;
}
