/* The public embedding API (qiao.h, "Models and embeddings"): argument
 * checking, decoding of files and raw buffers through the public image and
 * audio functions, and batching over models/embed.h, the one path from raw
 * inputs to embeddings that training and evaluation use too.
 *
 * A session owns one qmod_work per modality, created on first use and grown
 * by qmod_embed_* to the largest chunk seen. Calls are cut into chunks of at
 * most EMBED_CHUNK items so a session's memory is bounded whatever n a caller
 * passes; a row does not depend on its chunk beyond float rounding (the
 * padding of a text or audio batch is masked). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "core/core.h"
#include "models/embed.h"
#include "models/model.h"
#include "api/api.h"

/* Items per forward pass: enough to amortize the per-pass costs (OpenMP
 * team start-up, reading every weight once per layer), small enough to bound
 * a session (tiny model: 49 MB of activations for 32 texts plus 32 images).
 * Not tuned: on the loaded 2-core build machine 32 and 128 timed alike
 * within its noise (2-5 ms per item, tiny model). */
#define EMBED_CHUNK 32
/* The rate the audio encoder's log-mel features are computed at. */
#define EMBED_AUDIO_RATE 16000

/* ---- models ---------------------------------------------------------------- */

QIAO_API qiao_model_params qiao_model_default_params(void) {
    qiao_model_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.pack_weights = 1;
    return p;
}

static qiao_status read_model_params(const qiao_model_params *in, qiao_model_params *p) {
    *p = qiao_model_default_params();
    qiao_status st = qc_params_read(p, sizeof *p, in, offsetof(qiao_model_params, pack_weights) + sizeof(int),
                                    "qiao_model_default_params");
    if (st != QIAO_OK) return st;
    if (p->pack_weights != 0 && p->pack_weights != 1)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_model_params: pack_weights is %d, need 0 or 1",
                        p->pack_weights);
    return QIAO_OK;
}

/* Takes ownership of m, whatever happens. */
static qiao_status wrap_model(qmod_model *m, const char *what, const qiao_model_params *p, qiao_model **out) {
    if (!m->tok) {
        qmod_free(m);
        return qc_error(QIAO_ERR_FORMAT,
                        "%s: the model has no tokenizer (tensors tokenizer.spm, tokenizer.chars), so it cannot "
                        "embed text; attach one when training (qiao train --tokenizer)",
                        what);
    }
    qiao_model *h = calloc(1, sizeof *h);
    if (!h) {
        qmod_free(m);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
    }
    h->m = m;
    pthread_mutex_init(&h->lowp_lock, NULL);
    qiao_status st = qapi_intent_model_init(h);
    if (st == QIAO_OK && p->pack_weights) st = qmod_pack_weights(m, &h->packed);
    if (st != QIAO_OK) {
        qiao_model_free(h);
        return st;
    }
    *out = h;
    return QIAO_OK;
}

QIAO_API qiao_status qiao_model_load_with(const char *path, const qiao_model_params *params, qiao_model **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_model_load: out is NULL");
    *out = NULL;
    if (!path) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_model_load: path is NULL");
    qiao_model_params p;
    qiao_status st = read_model_params(params, &p);
    if (st != QIAO_OK) return st;
    qmod_model *m = NULL;
    st = qmod_load(path, &m);
    if (st != QIAO_OK) return st;
    return wrap_model(m, path, &p, out);
}

QIAO_API qiao_status qiao_model_load_memory_with(const void *data, size_t size, const qiao_model_params *params,
                                                 qiao_model **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_model_load_memory: out is NULL");
    *out = NULL;
    if (!data || size == 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_model_load_memory: need data and size > 0");
    qiao_model_params p;
    qiao_status st = read_model_params(params, &p);
    if (st != QIAO_OK) return st;
    qmod_model *m = NULL;
    st = qmod_load_memory(data, size, "<memory>", &m);
    if (st != QIAO_OK) return st;
    return wrap_model(m, "<memory>", &p, out);
}

QIAO_API qiao_status qiao_model_load(const char *path, qiao_model **out) {
    return qiao_model_load_with(path, NULL, out);
}

QIAO_API qiao_status qiao_model_load_memory(const void *data, size_t size, qiao_model **out) {
    return qiao_model_load_memory_with(data, size, NULL, out);
}

QIAO_API size_t qiao_model_memory(const qiao_model *model) {
    if (!model) return 0;
    qiao_model *mm = (qiao_model *)model; /* the lock only */
    pthread_mutex_lock(&mm->lowp_lock);
    const size_t lowp = qb_packed_set_bytes(model->lowp[0]) + qb_packed_set_bytes(model->lowp[1]);
    pthread_mutex_unlock(&mm->lowp_lock);
    return model->m->arena.n * sizeof(float) + qb_packed_set_bytes(model->packed) + lowp;
}

QIAO_API void qiao_model_free(qiao_model *model) {
    if (!model) return;
    qb_packed_set_free(model->packed);
    qb_packed_set_free(model->lowp[0]);
    qb_packed_set_free(model->lowp[1]);
    pthread_mutex_destroy(&model->lowp_lock);
    qapi_intent_model_free(model);
    qmod_free(model->m);
    free(model);
}

QIAO_API int64_t qiao_model_dim(const qiao_model *model) { return model ? model->m->cfg.embed_dim : 0; }

QIAO_API const char *qiao_model_name(const qiao_model *model) { return model ? model->m->cfg.name : ""; }

QIAO_API int64_t qiao_model_param_count(const qiao_model *model) {
    return model ? qmod_param_count(model->m, NULL) : 0;
}

QIAO_API const char *qiao_model_space(const qiao_model *model) {
    return model ? qmod_config_space(&model->m->cfg) : "";
}

QIAO_API const char *qiao_model_prompt(const qiao_model *model, const char *name) {
    const char *p = model ? qmod_config_prompt(&model->m->cfg, name) : NULL;
    return p ? p : "";
}

/* ---- sessions -------------------------------------------------------------- */

QIAO_API qiao_session_params qiao_session_default_params(void) {
    qiao_session_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.n_threads = 0;
    return p;
}

QIAO_API qiao_status qiao_session_new(const qiao_model *model, const qiao_session_params *params,
                                      qiao_session **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_session_new: out is NULL");
    *out = NULL;
    if (!model) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_session_new: model is NULL");
    qiao_session_params p = qiao_session_default_params();
    qiao_status st = qc_params_read(&p, sizeof p, params, offsetof(qiao_session_params, n_threads) + sizeof(int),
                                    "qiao_session_default_params");
    if (st != QIAO_OK) return st;
    if (p.precision < QIAO_PRECISION_MODEL || p.precision > QIAO_PRECISION_INT8)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "qiao_session_new: precision is %d, need QIAO_PRECISION_MODEL (0), _F32 (1), _BF16 (2) or "
                        "_INT8 (3)",
                        p.precision);
    qb_precision prec = p.precision == QIAO_PRECISION_F32    ? QB_PREC_F32
                        : p.precision == QIAO_PRECISION_BF16 ? QB_PREC_BF16
                        : p.precision == QIAO_PRECISION_INT8 ? QB_PREC_INT8
                                                             : model->m->precision;
    const qb_packed_set *packed = model->packed;
    if (prec != QB_PREC_F32) {
        const int slot = prec == QB_PREC_BF16 ? 0 : 1;
        qiao_model *mm = (qiao_model *)model; /* the shared cache is built once, under its lock */
        pthread_mutex_lock(&mm->lowp_lock);
        if (!mm->lowp[slot])
            st = qmod_pack_weights_prec(model->m, slot == 0 ? QB_PREC_BF16 : QB_PREC_INT8, &mm->lowp[slot]);
        packed = mm->lowp[slot];
        pthread_mutex_unlock(&mm->lowp_lock);
        if (st != QIAO_OK) return st;
    }
    if (p.n_threads < 0 || p.n_threads > 4096)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_session_new: n_threads is %d, need 0 (all cores) .. 4096",
                        p.n_threads);
    qiao_session *s = calloc(1, sizeof *s);
    if (!s) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qiao_session_new: out of memory");
    s->model = model;
    s->m = model->m;
    qb_exec_cpu(&s->ex, p.n_threads);
    s->ex.packed = packed;
    *out = s;
    return QIAO_OK;
}

QIAO_API void qiao_session_free(qiao_session *session) {
    if (!session) return;
    for (int i = 0; i < QMOD_N_MODALITIES; i++) qmod_work_free(&session->w[i]);
    qapi_vqa_free(session);
    qapi_intent_free(session);
    free(session);
}

QIAO_API size_t qiao_session_memory(const qiao_session *session) {
    if (!session) return 0;
    size_t bytes = 0;
    for (int i = 0; i < QMOD_N_MODALITIES; i++)
        bytes += (session->w[i].acts.n + session->w[i].dacts.n) * sizeof(float);
    return bytes + qapi_vqa_memory(session) + qapi_intent_memory(session);
}

/* The checks every embed call makes before any work: a session, n >= 1
 * items, and room for n rows in `out`. */
static qiao_status check_call(const char *fn, const qiao_session *s, const void *items, size_t n, const float *out,
                              size_t out_len) {
    if (!s) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: session is NULL", fn);
    if (!items) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: input is NULL", fn);
    if (n == 0) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: n is 0", fn);
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: out is NULL", fn);
    size_t need;
    if (!qc_mul_size(n, (size_t)s->m->cfg.embed_dim, &need) || out_len < need)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: out_len is %zu floats, %zu items x %lld dims need more", fn,
                        out_len, n, (long long)s->m->cfg.embed_dim);
    return QIAO_OK;
}

/* ---- text and images ----------------------------------------------------------- */

/* After check_call: refuses a NULL item before any work, then embeds the
 * items (texts or pictures, as qmod_embed takes them) EMBED_CHUNK at a time
 * into out (n, D). */
static qiao_status embed_in_chunks(const char *fn, qiao_session *s, qmod_modality mod, const void *const *items,
                                   size_t n, float *out) {
    for (size_t i = 0; i < n; i++)
        if (!items[i]) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: %s %zu is NULL", fn, qmod_modality_name(mod), i);
    const size_t D = (size_t)s->m->cfg.embed_dim;
    for (size_t i = 0; i < n; i += EMBED_CHUNK) {
        const size_t k = n - i < EMBED_CHUNK ? n - i : EMBED_CHUNK;
        qiao_status st = qmod_embed(&s->ex, s->m, &s->w[mod], mod, items + i, k, out + i * D);
        if (st != QIAO_OK) return st;
    }
    return QIAO_OK;
}

QIAO_API qiao_status qiao_embed_texts(qiao_session *session, const char *const *texts, size_t n, float *out,
                                      size_t out_len) {
    qiao_status st = check_call("qiao_embed_texts", session, texts, n, out, out_len);
    if (st != QIAO_OK) return st;
    return embed_in_chunks("qiao_embed_texts", session, QMOD_TEXT, (const void *const *)texts, n, out);
}

QIAO_API qiao_status qiao_embed_text(qiao_session *session, const char *text, float *out, size_t out_len) {
    if (!text) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_embed_text: text is NULL");
    return qiao_embed_texts(session, &text, 1, out, out_len);
}

QIAO_API qiao_status qiao_embed_images(qiao_session *session, const qiao_image *const *images, size_t n, float *out,
                                       size_t out_len) {
    qiao_status st = check_call("qiao_embed_images", session, images, n, out, out_len);
    if (st != QIAO_OK) return st;
    return embed_in_chunks("qiao_embed_images", session, QMOD_IMAGE, (const void *const *)images, n, out);
}

QIAO_API qiao_status qiao_embed_image(qiao_session *session, const qiao_image *image, float *out, size_t out_len) {
    if (!image) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_embed_image: image is NULL");
    return qiao_embed_images(session, &image, 1, out, out_len);
}

/* The decoded variants check the call before decoding, so a bad argument
 * never costs a decode, then embed the one image and free it. */
static qiao_status embed_decoded_image(qiao_session *session, qiao_status decoded, qiao_image *img, float *out,
                                       size_t out_len) {
    if (decoded != QIAO_OK) return decoded;
    const qiao_image *one = img;
    qiao_status st = qiao_embed_images(session, &one, 1, out, out_len);
    qiao_image_free(img);
    return st;
}

QIAO_API qiao_status qiao_embed_image_file(qiao_session *session, const char *path, float *out, size_t out_len) {
    qiao_status st = check_call("qiao_embed_image_file", session, path, 1, out, out_len);
    if (st != QIAO_OK) return st;
    qiao_image *img = NULL;
    st = qiao_image_decode_file(path, NULL, &img);
    return embed_decoded_image(session, st, img, out, out_len);
}

QIAO_API qiao_status qiao_embed_image_memory(qiao_session *session, const void *data, size_t size, float *out,
                                             size_t out_len) {
    qiao_status st = check_call("qiao_embed_image_memory", session, data, 1, out, out_len);
    if (st != QIAO_OK) return st;
    if (size == 0) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_embed_image_memory: size is 0");
    qiao_image *img = NULL;
    st = qiao_image_decode_memory(data, size, NULL, &img);
    return embed_decoded_image(session, st, img, out, out_len);
}

QIAO_API qiao_status qiao_embed_image_rgb(qiao_session *session, const uint8_t *pixels, int64_t width,
                                          int64_t height, size_t stride, float *out, size_t out_len) {
    qiao_status st = check_call("qiao_embed_image_rgb", session, pixels, 1, out, out_len);
    if (st != QIAO_OK) return st;
    /* qiao_image_from_rgb checks sizes and stride (and copies: the
     * preprocessing reads a qiao_image). */
    qiao_image *img = NULL;
    st = qiao_image_from_rgb(pixels, width, height, stride, &img);
    return embed_decoded_image(session, st, img, out, out_len);
}

/* ---- audio ------------------------------------------------------------------- */

static qiao_status resample_16k(const float *samples, int64_t n, int rate, qiao_audio **out) {
    qiao_audio_params p = qiao_audio_default_params();
    p.target_rate = EMBED_AUDIO_RATE;
    return qiao_audio_from_pcm(samples, n, rate, 1, &p, out);
}

/* Samples at 16 kHz that the first max_frames log-mel frames read: frame t
 * is centred on sample t * hop and spans n_fft / 2 either side, so samples
 * past (max_frames - 1) * hop + n_fft / 2 never reach the encoder. Cutting a
 * long clip there before the mel (and before resampling, with a margin for
 * the resampler's filter) gives the same frames, bit for bit, without
 * computing features of an hour of audio to keep ten seconds. */
static int64_t audio_samples_used(const qmod_model *m) {
    qiao_mel_params mp = qiao_mel_default_params();
    return (m->cfg.audio.max_frames - 1) * (int64_t)mp.hop + mp.n_fft / 2 + 1;
}

qiao_status qapi_check_clip(const char *fn, const qiao_audio *a, size_t i) {
    if (!a) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: clip %zu is NULL", fn, i);
    if (a->n_samples <= 0 || !a->samples)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: clip %zu is empty (no samples)", fn, i);
    if (a->sample_rate <= 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: clip %zu has sample rate %d Hz", fn, i, a->sample_rate);
    return QIAO_OK;
}

QIAO_API qiao_status qiao_embed_audios(qiao_session *session, const qiao_audio *const *clips, size_t n, float *out,
                                       size_t out_len) {
    qiao_status st = check_call("qiao_embed_audios", session, clips, n, out, out_len);
    if (st != QIAO_OK) return st;
    if (!qmod_has_tower(&session->m->cfg, QMOD_AUDIO))
        return qc_error(QIAO_ERR_UNSUPPORTED, "qiao_embed_audios: model %s has no audio tower: it cannot embed sound",
                        session->m->cfg.name);
    for (size_t i = 0; i < n; i++) {
        st = qapi_check_clip("qiao_embed_audios", clips[i], i);
        if (st != QIAO_OK) return st;
    }
    const size_t D = (size_t)session->m->cfg.embed_dim;
    /* Clips at another rate are resampled one chunk at a time, so at most
     * EMBED_CHUNK resampled copies exist at once; `view` holds each clip as
     * the encoder reads it (qapi_clip_view). */
    qiao_audio view[EMBED_CHUNK];
    const qiao_audio *batch[EMBED_CHUNK];
    qiao_audio *owned[EMBED_CHUNK];
    for (size_t i = 0; i < n && st == QIAO_OK; i += EMBED_CHUNK) {
        size_t k = n - i < EMBED_CHUNK ? n - i : EMBED_CHUNK;
        memset(owned, 0, sizeof owned);
        for (size_t j = 0; j < k && st == QIAO_OK; j++) {
            st = qapi_clip_view(session->m, clips[i + j], &view[j], &owned[j]);
            if (st != QIAO_OK) {
                /* Name the clip: the resampler's message does not know it.
                 * (Copied first: qc_error rewrites the buffer it lives in.) */
                char why[512];
                snprintf(why, sizeof why, "%s", qiao_last_error());
                st = qc_error(st, "qiao_embed_audios: clip %zu: %s", i + j, why);
                break;
            }
            batch[j] = &view[j];
        }
        if (st == QIAO_OK)
            st = qmod_embed_audio(&session->ex, session->m, &session->w[QMOD_AUDIO], batch, k, out + i * D);
        for (size_t j = 0; j < k; j++) qiao_audio_free(owned[j]);
    }
    return st;
}

qiao_status qapi_clip_view(const qmod_model *m, const qiao_audio *a, qiao_audio *view, qiao_audio **owned) {
    *owned = NULL;
    const int64_t used = audio_samples_used(m);
    if (a->sample_rate != EMBED_AUDIO_RATE) {
        /* Input samples behind `used` output samples, plus 100 ms for the
         * resampler's filter to settle past the cut. */
        double in_used = (double)used * a->sample_rate / EMBED_AUDIO_RATE + a->sample_rate / 10.0 + 64.0;
        int64_t n_in = (double)a->n_samples < in_used ? a->n_samples : (int64_t)in_used;
        qiao_status st = resample_16k(a->samples, n_in, a->sample_rate, owned);
        if (st == QIAO_OK && (*owned)->n_samples <= 0)
            st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "clip of %lld samples at %d Hz is empty at %d Hz",
                          (long long)a->n_samples, a->sample_rate, EMBED_AUDIO_RATE);
        if (st != QIAO_OK) {
            qiao_audio_free(*owned);
            *owned = NULL;
            return st;
        }
        a = *owned;
    }
    *view = *a;
    if (view->n_samples > used) view->n_samples = used;
    return QIAO_OK;
}

QIAO_API qiao_status qiao_embed_audio(qiao_session *session, const qiao_audio *audio, float *out, size_t out_len) {
    if (!audio) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_embed_audio: audio is NULL");
    return qiao_embed_audios(session, &audio, 1, out, out_len);
}

static qiao_status embed_decoded_audio(qiao_session *session, qiao_status decoded, qiao_audio *a, const char *what,
                                       float *out, size_t out_len) {
    if (decoded != QIAO_OK) return decoded;
    qiao_status st = QIAO_OK;
    if (a->n_samples <= 0)
        st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: the audio is empty (no samples)", what);
    const qiao_audio *one = a;
    if (st == QIAO_OK) st = qiao_embed_audios(session, &one, 1, out, out_len);
    qiao_audio_free(a);
    return st;
}

QIAO_API qiao_status qiao_embed_audio_file(qiao_session *session, const char *path, float *out, size_t out_len) {
    qiao_status st = check_call("qiao_embed_audio_file", session, path, 1, out, out_len);
    if (st != QIAO_OK) return st;
    qiao_audio *a = NULL;
    st = qiao_audio_decode_file(path, NULL, &a); /* the defaults decode to 16 kHz */
    return embed_decoded_audio(session, st, a, path, out, out_len);
}

QIAO_API qiao_status qiao_embed_audio_memory(qiao_session *session, const void *data, size_t size, float *out,
                                             size_t out_len) {
    qiao_status st = check_call("qiao_embed_audio_memory", session, data, 1, out, out_len);
    if (st != QIAO_OK) return st;
    if (size == 0) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_embed_audio_memory: size is 0");
    qiao_audio *a = NULL;
    st = qiao_audio_decode_memory(data, size, NULL, &a);
    return embed_decoded_audio(session, st, a, "<memory>", out, out_len);
}

QIAO_API qiao_status qiao_embed_audio_pcm(qiao_session *session, const float *samples, int64_t n_samples,
                                          int sample_rate, float *out, size_t out_len) {
    qiao_status st = check_call("qiao_embed_audio_pcm", session, samples, 1, out, out_len);
    if (st != QIAO_OK) return st;
    if (n_samples <= 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_embed_audio_pcm: n_samples is %lld, need > 0",
                        (long long)n_samples);
    /* Always through qiao_audio_from_pcm, even at 16 kHz: it clamps to
     * [-1, 1] as a decoded file is, so PCM and file give the same row. */
    qiao_audio *a = NULL;
    st = resample_16k(samples, n_samples, sample_rate, &a);
    return embed_decoded_audio(session, st, a, "qiao_embed_audio_pcm", out, out_len);
}

/* ---- similarity -------------------------------------------------------------- */

QIAO_API float qiao_cosine(const float *a, const float *b, size_t n) {
    if (!a || !b || n == 0) return 0.0f;
    double ab = 0.0, aa = 0.0, bb = 0.0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * (double)b[i];
        aa += (double)a[i] * (double)a[i];
        bb += (double)b[i] * (double)b[i];
    }
    if (aa == 0.0 || bb == 0.0) return 0.0f;
    return (float)(ab / (sqrt(aa) * sqrt(bb)));
}
