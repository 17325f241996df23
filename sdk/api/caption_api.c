/* The public captioning API (qiao.h, "Captioning"): argument checks with
 * the public field names, the picture decoded as the embedding API decodes
 * it, and models/captioning/caption.c (qmod_caption) writing the caption on
 * the session's execution context. A video's frames stream from the
 * decoder (qi_video_frames_each) through the scene filter to the same
 * caption path. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/core.h"
#include "modalities/image/image.h"
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
static qiao_status check_call(const char *fn, const qiao_session *s, const void *in, const char *in_name,
                              const void *out, const qiao_caption_params *params, qiao_caption_params *p, int *lang) {
    if (!s || !in || !out)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: session, %s and out are required", fn, in_name);
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
    qiao_status st = check_call("qiao_caption_image", session, image, "picture", out, params, &p, &lang);
    if (st == QIAO_OK) st = caption(session, image, &p, lang, out);
    return st;
}

QIAO_API qiao_status qiao_caption_image_file(qiao_session *session, const char *path, const qiao_caption_params *params,
                                             qiao_caption_result *out) {
    if (out) memset(out, 0, sizeof *out);
    qiao_caption_params p;
    int lang = 0;
    qiao_status st = check_call("qiao_caption_image_file", session, path, "picture", out, params, &p, &lang);
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
    qiao_status st = check_call("qiao_caption_image_memory", session, data, "picture", out, params, &p, &lang);
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
    qiao_status st = check_call("qiao_caption_image_rgb", session, pixels, "picture", out, params, &p, &lang);
    qiao_image *img = NULL;
    if (st == QIAO_OK) st = qiao_image_from_rgb(pixels, width, height, stride, &img);
    if (st == QIAO_OK) st = caption(session, img, &p, lang, out);
    qiao_image_free(img);
    return st;
}

/* ---- Video ------------------------------------------------------------------ */

/* The scene measure (qiao.h, "Captioning a video"): a THUMB x THUMB RGB
 * thumbnail, its LAYOUT x LAYOUT block means, and a BINS^3 histogram of the
 * thumbnail's cells. The sizes and the default threshold were chosen on
 * clips made from 51 real photos (docs/captioning.md, "Video"). */
#define THUMB 32
#define LAYOUT 8
#define BINS 4

typedef struct scene_thumb {
    float layout[LAYOUT * LAYOUT * 3]; /* block means, 0..255 */
    float hist[BINS * BINS * BINS];    /* share of the thumbnail's cells per colour bin, sums to 1 */
} scene_thumb;

/* Scratch of scene_thumb_make, kept off the stack (the caller's thread may have a small one). */
typedef struct scene_scratch {
    double sum[THUMB * THUMB * 3];
    int64_t count[THUMB * THUMB];
    float cell[THUMB * THUMB * 3]; /* the thumbnail, 0..255 */
} scene_scratch;

static void scene_thumb_make(const qiao_image *img, scene_thumb *t, scene_scratch *w) {
    const int64_t iw = img->width, ih = img->height;
    memset(w, 0, sizeof *w);
    /* every pixel falls in one cell (x * THUMB / width), so the cells tile the picture whatever its shape */
    for (int64_t y = 0; y < ih; y++) {
        const uint8_t *row = img->pixels + (size_t)y * img->stride;
        const int64_t cy = y * THUMB / ih;
        uint64_t acc[THUMB * 3] = {0}, n[THUMB] = {0};
        for (int64_t x = 0; x < iw; x++) {
            const int64_t cx = x * THUMB / iw;
            acc[cx * 3 + 0] += row[3 * x + 0];
            acc[cx * 3 + 1] += row[3 * x + 1];
            acc[cx * 3 + 2] += row[3 * x + 2];
            n[cx]++;
        }
        for (int cx = 0; cx < THUMB; cx++) {
            for (int c = 0; c < 3; c++) w->sum[(cy * THUMB + cx) * 3 + c] += (double)acc[cx * 3 + c];
            w->count[cy * THUMB + cx] += (int64_t)n[cx];
        }
    }
    for (int cy = 0; cy < THUMB; cy++)
        for (int cx = 0; cx < THUMB; cx++) {
            const int k = cy * THUMB + cx;
            /* a picture narrower or lower than THUMB leaves cells empty: they take the pixel under their centre */
            const int64_t x = ((int64_t)(2 * cx + 1) * iw) / (2 * THUMB);
            const int64_t y = ((int64_t)(2 * cy + 1) * ih) / (2 * THUMB);
            const uint8_t *centre = img->pixels + (size_t)y * img->stride + (size_t)(3 * x);
            for (int c = 0; c < 3; c++)
                w->cell[k * 3 + c] =
                    w->count[k] > 0 ? (float)(w->sum[k * 3 + c] / (double)w->count[k]) : (float)centre[c];
        }
    const int B = THUMB / LAYOUT;
    memset(t, 0, sizeof *t);
    for (int cy = 0; cy < THUMB; cy++)
        for (int cx = 0; cx < THUMB; cx++) {
            const float *v = w->cell + (cy * THUMB + cx) * 3;
            float *l = t->layout + ((cy / B) * LAYOUT + cx / B) * 3;
            int bin = 0;
            for (int c = 0; c < 3; c++) {
                l[c] += v[c] / (float)(B * B);
                const int q = (int)(v[c] * BINS / 256.0f);
                bin = bin * BINS + (q < BINS - 1 ? q : BINS - 1);
            }
            t->hist[bin] += 1.0f / (THUMB * THUMB);
        }
}

/* 0 for the same thumbnail, 1 for black against white. */
static double scene_change(const scene_thumb *a, const scene_thumb *b) {
    double layout = 0.0, hist = 0.0;
    for (int i = 0; i < LAYOUT * LAYOUT * 3; i++) layout += fabs((double)a->layout[i] - b->layout[i]);
    for (int i = 0; i < BINS * BINS * BINS; i++) hist += fabs((double)a->hist[i] - b->hist[i]);
    layout /= 255.0 * LAYOUT * LAYOUT * 3;
    hist /= 2.0;
    const double d = (layout + hist) / 2.0;
    return d < 0 ? 0 : d > 1 ? 1 : d;
}

QIAO_API qiao_caption_video_params qiao_caption_video_default_params(void) {
    qiao_caption_video_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.fps = 1.0;
    p.scenes = 0;
    p.scene_threshold = 0.15;
    p.max_frames = 3600;
    p.max_pixels = (int64_t)64 * 1024 * 1024;
    return p;
}

QIAO_API void qiao_video_captions_free(qiao_video_captions *captions) {
    if (!captions) return;
    for (size_t i = 0; i < captions->n; i++) qiao_caption_result_free(&captions->items[i].caption);
    free(captions->items);
    memset(captions, 0, sizeof *captions);
}

typedef struct video_run {
    qiao_session *s;
    const qiao_caption_params *p;
    const qiao_caption_video_params *vp;
    int lang;
    qiao_video_captions *out;
    size_t cap;
    scene_thumb last, cur; /* the last kept frame's, the frame at hand's */
    scene_scratch scratch;
} video_run;

static void video_done(const qiao_caption_video_params *vp, const qiao_video_captions *out, size_t i) {
    if (vp->on_caption) vp->on_caption(&out->items[i], i, vp->on_caption_user_data);
}

static qiao_status video_frame(const qiao_image *frame, void *user) {
    video_run *r = user;
    qiao_video_captions *out = r->out;
    if (r->p->cancel && r->p->cancel(r->p->cancel_user_data))
        return qc_error(QIAO_ERR_CANCELLED, "qiao_caption_video: cancelled");
    out->frames_sampled++;
    scene_thumb_make(frame, &r->cur, &r->scratch);
    const double change = out->n ? scene_change(&r->last, &r->cur) : 0.0;
    if (r->vp->scenes && out->n > 0 && !(change > r->vp->scene_threshold)) return QIAO_OK;
    if (out->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 16;
        qiao_video_caption *grown = realloc(out->items, cap * sizeof *grown);
        if (!grown) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qiao_caption_video: out of memory");
        out->items = grown;
        r->cap = cap;
    }
    qiao_video_caption *c = &out->items[out->n];
    memset(c, 0, sizeof *c);
    c->time = c->end = frame->timestamp;
    c->change = change;
    qiao_status st = caption(r->s, frame, r->p, r->lang, &c->caption);
    if (st != QIAO_OK) return st;
    out->n++;
    r->last = r->cur;
    if (out->n > 1) {
        out->items[out->n - 2].end = c->time;
        video_done(r->vp, out, out->n - 2);
    }
    return QIAO_OK;
}

QIAO_API qiao_status qiao_caption_video(qiao_session *session, const char *path,
                                        const qiao_caption_video_params *vparams, const qiao_caption_params *params,
                                        qiao_video_captions *out) {
    const char *fn = "qiao_caption_video";
    if (out) memset(out, 0, sizeof *out);
    qiao_caption_params p;
    int lang = 0;
    qiao_status st = check_call(fn, session, path, "path", out, params, &p, &lang);
    if (st != QIAO_OK) return st;
    qiao_caption_video_params vp = qiao_caption_video_default_params();
    st = qc_params_read(&vp, sizeof vp, vparams, offsetof(qiao_caption_video_params, fps) + sizeof vp.fps,
                        "qiao_caption_video_default_params");
    if (st != QIAO_OK) return st;
    if (!(vp.fps > 0 && vp.fps <= QIAO_CAPTION_VIDEO_MAX_FPS))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: fps is %g, need (0, %g] frames a second", fn, vp.fps,
                        QIAO_CAPTION_VIDEO_MAX_FPS);
    if (!(vp.scene_threshold >= 0 && vp.scene_threshold <= 1))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: scene_threshold is %g, need [0, 1]", fn, vp.scene_threshold);
    if (vp.max_frames < 1 || vp.max_pixels < 1)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: max_frames is %lld and max_pixels %lld, need both >= 1", fn,
                        (long long)vp.max_frames, (long long)vp.max_pixels);
    video_run *r = calloc(1, sizeof *r); /* thumbnails and scratch: off the caller's stack */
    if (!r) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    r->s = session, r->p = &p, r->vp = &vp, r->lang = lang, r->out = out;
    snprintf(out->lang, sizeof out->lang, "%s", lang == QMOD_LANG_ZH ? "zh" : "en");
    qiao_video_params dp = qiao_video_default_params();
    dp.fps = vp.fps;
    dp.max_frames = vp.max_frames;
    dp.max_pixels = vp.max_pixels;
    qi_video_info info;
    st = qi_video_frames_each(path, &dp, video_frame, r, &info);
    free(r);
    if (st == QIAO_OK && out->n == 0) /* the decoder says so first: the first frame is always kept */
        st = qc_error(QIAO_ERR_INTERNAL, "%s: %s: no frame captioned", fn, path);
    if (st != QIAO_OK) {
        qiao_video_captions_free(out);
        return st;
    }
    qiao_video_caption *last = &out->items[out->n - 1];
    last->end = info.end > last->time ? info.end : last->time + 1.0 / vp.fps;
    out->end = info.end;
    out->damaged = info.damaged;
    video_done(&vp, out, out->n - 1);
    return QIAO_OK;
}
