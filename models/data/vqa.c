/* models/data/vqa.c - the VQA loader (see vqa.h): the picture cache, one
 * batch as a pure function of (seed, index, params), and the loader, whose
 * threads and ring of prefetched batches are ring.c's (as data.c's are).
 *
 * Every row draws all its random numbers, in a fixed order, whatever the
 * probabilities say: changing p_occlude does not move the noise a row gets,
 * so two conditions differ only in what they change. */
#define _GNU_SOURCE
#include "models/data/vqa.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/data/ring.h"
#include "models/vqa.h"

#define VQA_MSG_MAX 1024
#define VQA_BABBLE_VOICES 4

/* Stream tags, so no two kinds of draw share a seed. */
#define TAG_PERM 0x7671702dULL /* "vqp-": an epoch's question order */
#define TAG_ROW 0x7671722dULL  /* "vqr-": a training row's draws */
#define TAG_EVAL 0x7671652dULL /* "vqe-": an evaluation row's draws */

qmod_vqa_params qmod_vqa_default_params(void) {
    qmod_vqa_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.image_sigma[0] = 4.0f;
    p.image_sigma[1] = 40.0f;
    p.occlude_frac[0] = 0.1f;
    p.occlude_frac[1] = 0.4f;
    p.occlude_fill = QMOD_VQA_FILL_GREY_OR_BLACK;
    p.audio_snr_db[0] = 0.0f;
    p.audio_snr_db[1] = 20.0f;
    p.audio_noise = QMOD_VQA_NOISE_WHITE;
    return p;
}

/* ---- random streams ------------------------------------------------------------ */

/* splitmix64's finalizer (as data.c). */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t hash4(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
    uint64_t h = mix64(a + 0x9E3779B97F4A7C15ull);
    h = mix64(h ^ (b + 0x9E3779B97F4A7C15ull));
    h = mix64(h ^ (c + 0x9E3779B97F4A7C15ull));
    return mix64(h ^ (d + 0x9E3779B97F4A7C15ull));
}

static void epoch_perm(uint64_t seed, int64_t epoch, int64_t n, int64_t *perm) {
    qc_rng rng;
    qc_rng_seed(&rng, hash4(TAG_PERM, seed, (uint64_t)epoch, 0));
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)qc_rng_below(&rng, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* Standard normal draws for noise, two per Box-Muller step in float: the
 * noise is most of a degraded row's random numbers (a 4 s clip takes 64,000),
 * and qc_rng_normal's double log and cos for each one were 18 % of the
 * loader's time. */
typedef struct gauss {
    qc_rng rng;
    float spare;
    bool have;
} gauss;

static void gauss_seed(gauss *g, uint64_t seed) {
    qc_rng_seed(&g->rng, seed);
    g->have = false;
}

static float gauss_next(gauss *g) {
    if (g->have) {
        g->have = false;
        return g->spare;
    }
    /* u1 in (0, 1] so logf is finite; 24 bits, a float's precision */
    const float u1 = (float)((qc_rng_u64(&g->rng) >> 40) + 1) * 0x1p-24f;
    const float u2 = (float)(qc_rng_u64(&g->rng) >> 40) * 0x1p-24f;
    const float r = sqrtf(-2.0f * logf(u1)), a = 6.28318530718f * u2;
    g->spare = r * sinf(a);
    g->have = true;
    return r * cosf(a);
}

static float lerp(const float r[2], float u) {
    return r[0] + (r[1] - r[0]) * u;
}

/* ---- the picture cache --------------------------------------------------------- */

typedef struct picture {
    uint8_t *rgb; /* packed, 3 * w bytes a row; NULL until decoded */
    int64_t w, h;
} picture;

struct qmod_vqa_cache {
    const qmod_vqa_dataset *d;
    pthread_mutex_t mu;
    picture *pics; /* (n_scenes) */
    size_t bytes;
};

qiao_status qmod_vqa_cache_new(const qmod_vqa_dataset *d, qmod_vqa_cache **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_vqa_cache_new: out is NULL");
    *out = NULL;
    if (!d || d->n_scenes < 1) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_vqa_cache_new: no dataset");
    qmod_vqa_cache *c = calloc(1, sizeof *c);
    if (c) c->pics = calloc((size_t)d->n_scenes, sizeof *c->pics);
    if (!c || !c->pics) {
        free(c);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qmod_vqa_cache_new: out of memory for %lld scenes",
                        (long long)d->n_scenes);
    }
    c->d = d;
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return QIAO_OK;
}

void qmod_vqa_cache_free(qmod_vqa_cache *c) {
    if (!c) return;
    for (int64_t i = 0; i < c->d->n_scenes; i++)
        free(c->pics[i].rgb);
    free(c->pics);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

size_t qmod_vqa_cache_bytes(const qmod_vqa_cache *c) {
    if (!c) return 0;
    pthread_mutex_lock((pthread_mutex_t *)&c->mu);
    size_t n = c->bytes;
    pthread_mutex_unlock((pthread_mutex_t *)&c->mu);
    return n;
}

/* A scene's error with its id, keeping the decoder's message and naming the
 * path if that message did not. */
static qiao_status scene_error(qiao_status st, const qmod_vqa_scene *s, const char *path) {
    char msg[VQA_MSG_MAX];
    snprintf(msg, sizeof msg, "%s", qiao_last_error());
    if (strstr(msg, path)) return qc_error(st, "scene %s: %s", s->id, msg);
    return qc_error(st, "scene %s: %s: %s", s->id, path, msg);
}

/* Decodes scene `si`'s picture into *out (packed RGB, malloc'd). */
static qiao_status decode_picture(const qmod_vqa_dataset *d, int64_t si, picture *out) {
    const qmod_vqa_scene *s = &d->scenes[si];
    qiao_image *img = NULL;
    qiao_status st = qiao_image_decode_file(s->image, NULL, &img);
    if (st != QIAO_OK) return scene_error(st, s, s->image);
    const int64_t w = qiao_image_width(img), h = qiao_image_height(img);
    const size_t stride = qiao_image_stride(img), row = (size_t)w * 3;
    size_t bytes;
    uint8_t *rgb = qc_mul_size(row, (size_t)h, &bytes) ? malloc(bytes) : NULL;
    if (!rgb) {
        qiao_image_free(img);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "scene %s: out of memory for a %lld x %lld picture", s->id,
                        (long long)w, (long long)h);
    }
    const uint8_t *px = qiao_image_pixels(img);
    for (int64_t y = 0; y < h; y++)
        memcpy(rgb + (size_t)y * row, px + (size_t)y * stride, row);
    qiao_image_free(img);
    *out = (picture){rgb, w, h};
    return QIAO_OK;
}

/* Scene si's pixels: from the cache (decoding them the first time), or,
 * without a cache, decoded into *own (the caller frees own->rgb). Two
 * threads may decode the same picture at once; the second copy is dropped,
 * and both are the same bytes. */
static qiao_status get_picture(qmod_vqa_cache *c, const qmod_vqa_dataset *d, int64_t si, picture *own,
                               const picture **out) {
    if (!c) {
        qiao_status st = decode_picture(d, si, own);
        *out = own;
        return st;
    }
    pthread_mutex_lock(&c->mu);
    const picture *p = c->pics[si].rgb ? &c->pics[si] : NULL;
    pthread_mutex_unlock(&c->mu);
    if (p) {
        *out = p;
        return QIAO_OK;
    }
    picture fresh;
    qiao_status st = decode_picture(d, si, &fresh);
    if (st != QIAO_OK) return st;
    pthread_mutex_lock(&c->mu);
    if (!c->pics[si].rgb) {
        c->pics[si] = fresh;
        c->bytes += (size_t)(fresh.w * fresh.h * 3);
        fresh.rgb = NULL;
    }
    *out = &c->pics[si];
    pthread_mutex_unlock(&c->mu);
    free(fresh.rgb);
    return QIAO_OK;
}

/* ---- what a row gets ----------------------------------------------------------- */

typedef struct row_draw {
    bool text, image, audio;           /* present */
    float sigma;                       /* picture noise, levels; 0 none */
    float occ;                         /* occluded fraction; 0 none */
    float occ_x, occ_y, occ_aspect;    /* the occluder's place (fractions) and log2 aspect */
    int occ_level;                     /* its grey level; -1: the picture's mean colour */
    float snr;                         /* dB; INFINITY none */
    uint64_t noise_seed;               /* the pixel and sample noise */
    int64_t babble[VQA_BABBLE_VOICES]; /* indices into the spoken questions */
} row_draw;

static void draw_row(const qmod_vqa_params *v, const qmod_vqa_question *q, int64_t n_spoken, uint64_t seed,
                     row_draw *r) {
    qc_rng rng;
    qc_rng_seed(&rng, seed);
    const float u_q = qc_rng_uniform(&rng), u_img = qc_rng_uniform(&rng);
    const float u_noise = qc_rng_uniform(&rng), u_sigma = qc_rng_uniform(&rng);
    const float u_occ = qc_rng_uniform(&rng), u_frac = qc_rng_uniform(&rng);
    r->occ_x = qc_rng_uniform(&rng);
    r->occ_y = qc_rng_uniform(&rng);
    r->occ_aspect = 2.0f * qc_rng_uniform(&rng) - 1.0f;
    const float u_fill = qc_rng_uniform(&rng);
    const float u_an = qc_rng_uniform(&rng), u_snr = qc_rng_uniform(&rng);
    r->noise_seed = qc_rng_u64(&rng);
    for (int k = 0; k < VQA_BABBLE_VOICES; k++)
        r->babble[k] = n_spoken > 0 ? (int64_t)qc_rng_below(&rng, (uint64_t)n_spoken) : -1;

    const bool spoken = q->speech != NULL && v->p_drop_audio < 1.0f;
    r->text = true;
    r->audio = spoken;
    if (u_q < v->p_drop_text) {
        /* never both question modalities: without speech the text stays */
        if (spoken) r->text = false;
    } else if (u_q < v->p_drop_text + v->p_drop_audio) {
        r->audio = false;
    }
    r->image = !(u_img < v->p_drop_image);
    r->sigma = r->image && u_noise < v->p_image_noise ? lerp(v->image_sigma, u_sigma) : 0.0f;
    r->occ = r->image && u_occ < v->p_occlude ? lerp(v->occlude_frac, u_frac) : 0.0f;
    switch (v->occlude_fill) {
    case QMOD_VQA_FILL_GREY:
        r->occ_level = 128;
        break;
    case QMOD_VQA_FILL_BLACK:
        r->occ_level = 0;
        break;
    case QMOD_VQA_FILL_MEAN:
        r->occ_level = -1;
        break;
    default:
        r->occ_level = u_fill < 0.5f ? 128 : 0;
        break;
    }
    r->snr = r->audio && u_an < v->p_audio_noise ? lerp(v->audio_snr_db, u_snr) : INFINITY;
}

/* ---- pictures ------------------------------------------------------------------ */

/* A rectangle of about `frac` of the picture's area, aspect 2^(±1) at most,
 * at a place drawn from (x, y), filled flat; then Gaussian noise of `sigma`
 * levels on every channel (a sensor adds its noise to whatever is in front
 * of it), rounded and clamped to 0..255. */
static void degrade_picture(uint8_t *rgb, int64_t w, int64_t h, const row_draw *r) {
    if (r->occ > 0.0f) {
        const double area = (double)r->occ * (double)(w * h), aspect = exp2((double)r->occ_aspect);
        int64_t rw = (int64_t)llround(sqrt(area * aspect)), rh;
        rw = rw < 1 ? 1 : rw > w ? w : rw;
        rh = (int64_t)llround(area / (double)rw);
        rh = rh < 1 ? 1 : rh > h ? h : rh;
        const int64_t x0 = (int64_t)((double)r->occ_x * (double)(w - rw + 1) * 0.999999);
        const int64_t y0 = (int64_t)((double)r->occ_y * (double)(h - rh + 1) * 0.999999);
        uint8_t fill[3];
        if (r->occ_level >= 0) {
            memset(fill, r->occ_level, 3);
        } else {
            double sum[3] = {0, 0, 0};
            for (int64_t k = 0; k < w * h; k++)
                for (int ch = 0; ch < 3; ch++)
                    sum[ch] += rgb[k * 3 + ch];
            for (int ch = 0; ch < 3; ch++)
                fill[ch] = (uint8_t)lrint(sum[ch] / (double)(w * h));
        }
        for (int64_t y = y0; y < y0 + rh; y++)
            for (int64_t x = x0; x < x0 + rw; x++)
                memcpy(rgb + ((size_t)y * (size_t)w + (size_t)x) * 3, fill, 3);
    }
    if (r->sigma > 0.0f) {
        gauss g;
        gauss_seed(&g, r->noise_seed);
        const size_t n = (size_t)(w * h * 3);
        for (size_t i = 0; i < n; i++) {
            const float v = rintf((float)rgb[i] + r->sigma * gauss_next(&g));
            rgb[i] = (uint8_t)(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v);
        }
    }
}

/* ---- sound --------------------------------------------------------------------- */

static qiao_status decode_clip(const qmod_vqa_dataset *d, const qmod_vqa_question *q, qiao_audio **out) {
    qiao_audio_params ap = qiao_audio_default_params();
    ap.target_rate = 16000;
    qiao_status st = qiao_audio_decode_file(q->speech, &ap, out);
    if (st == QIAO_OK && (*out)->n_samples < 1) {
        qiao_audio_free(*out);
        *out = NULL;
        st = qc_error(QIAO_ERR_FORMAT, "%s: no samples", q->speech);
    }
    if (st != QIAO_OK) return scene_error(st, &d->scenes[q->scene], q->speech);
    return QIAO_OK;
}

/* Adds noise at r->snr dB below the clip's mean power: white, or the sum of
 * other questions' speech (babble), each looped to the clip's length. The
 * result is clamped to [-1, 1], as a recording would be. */
static qiao_status add_noise(const qmod_vqa_dataset *d, const int64_t *spoken, int64_t n_spoken, int64_t self,
                             qmod_vqa_noise kind, qiao_audio *a, const row_draw *r) {
    const int64_t n = a->n_samples;
    double ps = 0.0;
    for (int64_t i = 0; i < n; i++)
        ps += (double)a->samples[i] * a->samples[i];
    ps /= (double)n;
    const double pn = ps / pow(10.0, (double)r->snr / 10.0);
    float *noise = malloc((size_t)n * sizeof *noise);
    if (!noise) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "audio noise: out of memory for %lld samples", (long long)n);
    qiao_status st = QIAO_OK;
    if (kind == QMOD_VQA_NOISE_BABBLE && r->babble[0] >= 0) {
        memset(noise, 0, (size_t)n * sizeof *noise);
        for (int k = 0; k < VQA_BABBLE_VOICES && st == QIAO_OK; k++) {
            qiao_audio *b = NULL;
            int64_t v = r->babble[k];
            if (spoken[v] == self && n_spoken > 1) v = (v + 1) % n_spoken; /* another question's voice */
            st = decode_clip(d, &d->questions[spoken[v]], &b);
            /* each voice starts at its own offset, so the voices' pauses do not line * up */
            for (int64_t i = 0, j = (int64_t)(r->noise_seed >> (8 * k) & 0xFFFF) % (b ? b->n_samples : 1);
                 st == QIAO_OK && i < n; i++, j = j + 1 < b->n_samples ? j + 1 : 0)
                noise[i] += b->samples[j];
            qiao_audio_free(b);
        }
    } else {
        gauss g;
        gauss_seed(&g, r->noise_seed);
        for (int64_t i = 0; i < n; i++)
            noise[i] = gauss_next(&g);
    }
    if (st == QIAO_OK) {
        double pz = 0.0;
        for (int64_t i = 0; i < n; i++)
            pz += (double)noise[i] * noise[i];
        pz /= (double)n;
        const float g = pz > 0.0 ? (float)sqrt(pn / pz) : 0.0f;
        for (int64_t i = 0; i < n; i++) {
            const float v = a->samples[i] + g * noise[i];
            a->samples[i] = v > 1.0f ? 1.0f : v < -1.0f ? -1.0f : v;
        }
    }
    free(noise);
    return st;
}

/* ---- one batch ----------------------------------------------------------------- */

/* What every batch of a loader shares: read-only once made. */
typedef struct vqa_ctx {
    const qmod_vqa_loader_params *p;
    int64_t *spoken; /* (n_spoken) indices of the questions with a WAV, for babble */
    int64_t bpe;     /* batches per epoch */
} vqa_ctx;

static void ctx_free(vqa_ctx *c) {
    free(c->spoken);
    memset(c, 0, sizeof *c);
}

static qiao_status check_params(const qmod_vqa_loader_params *p, const char *fn) {
    if (!p || !p->model || !p->data)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: model and dataset are required", fn);
    const qmod_vqa_params *v = &p->vqa;
    if (v->struct_size != sizeof *v)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "%s: vqa params from another version (struct_size %zu, want %zu); "
                        "start from qmod_vqa_default_params()",
                        fn, v->struct_size, sizeof *v);
    const float probs[6] = {v->p_drop_text,   v->p_drop_audio, v->p_drop_image,
                            v->p_image_noise, v->p_occlude,    v->p_audio_noise};
    for (int i = 0; i < 6; i++)
        if (!(probs[i] >= 0.0f && probs[i] <= 1.0f))
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: probabilities must be in [0, 1]", fn);
    if (v->p_drop_text + v->p_drop_audio > 1.0f + 1e-6f)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "%s: p_drop_text + p_drop_audio = %g > 1: a question keeps "
                        "at least one of its forms",
                        fn, (double)(v->p_drop_text + v->p_drop_audio));
    if (!(v->image_sigma[0] >= 0.0f && v->image_sigma[0] <= v->image_sigma[1] && v->image_sigma[1] <= 255.0f) ||
        !(v->occlude_frac[0] >= 0.0f && v->occlude_frac[0] <= v->occlude_frac[1] && v->occlude_frac[1] <= 1.0f) ||
        !(v->audio_snr_db[0] >= -60.0f && v->audio_snr_db[0] <= v->audio_snr_db[1] && v->audio_snr_db[1] <= 120.0f))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "%s: ranges must be lo <= hi within image_sigma 0..255, "
                        "occlude_frac 0..1, audio_snr_db "
                        "-60..120",
                        fn);
    if ((int)v->audio_noise < QMOD_VQA_NOISE_WHITE || v->audio_noise > QMOD_VQA_NOISE_BABBLE ||
        (int)v->occlude_fill < QMOD_VQA_FILL_GREY_OR_BLACK || v->occlude_fill > QMOD_VQA_FILL_MEAN)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: unknown audio_noise or occlude_fill", fn);
    const qmod_config *cfg = &p->model->cfg;
    if (!qmod_has_tower(cfg, QMOD_TEXT) || !qmod_has_tower(cfg, QMOD_IMAGE) || !qmod_has_tower(cfg, QMOD_AUDIO) ||
        !p->model->tok)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "%s: model %s needs a text tower with its tokenizer, an "
                        "image and an audio tower",
                        fn, cfg->name);
    if (p->batch < 1 || p->batch > (int64_t)1 << 20)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: batch %lld (1..2^20)", fn, (long long)p->batch);
    if (!p->eval && p->batch > p->data->n_questions)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: batch %lld is larger than the split's %lld questions", fn,
                        (long long)p->batch, (long long)p->data->n_questions);
    if (v->p_drop_text >= 1.0f && p->data->n_spoken < p->data->n_questions)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "%s: spoken-only (p_drop_text 1) needs a WAV for every "
                        "question; %s has %lld of %lld "
                        "(generate it with --speech-questions)",
                        fn, p->data->dir, (long long)p->data->n_spoken, (long long)p->data->n_questions);
    if (v->audio_noise == QMOD_VQA_NOISE_BABBLE && v->p_audio_noise > 0.0f && p->data->n_spoken == 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: babble noise needs spoken questions", fn);
    return QIAO_OK;
}

static qiao_status ctx_init(vqa_ctx *c, const qmod_vqa_loader_params *p, const char *fn) {
    memset(c, 0, sizeof *c);
    qiao_status st = check_params(p, fn);
    if (st != QIAO_OK) return st;
    c->p = p;
    c->bpe = qmod_vqa_epoch_batches(p->data, p->batch, p->eval);
    const qmod_vqa_dataset *d = p->data;
    c->spoken = malloc((size_t)(d->n_spoken > 0 ? d->n_spoken : 1) * sizeof *c->spoken);
    if (!c->spoken) {
        ctx_free(c);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    for (int64_t i = 0, k = 0; i < d->n_questions; i++)
        if (d->questions[i].speech) c->spoken[k++] = i;
    return QIAO_OK;
}

int64_t qmod_vqa_epoch_batches(const qmod_vqa_dataset *d, int64_t batch, bool eval) {
    if (!d || batch < 1) return 0;
    return eval ? (d->n_questions + batch - 1) / batch : d->n_questions / batch;
}

void qmod_vqa_batch_free(qmod_vqa_batch *b) {
    if (!b) return;
    free(b->question);
    free(b->scene);
    free(b->answer);
    free(b->type);
    free(b->lang);
    free(b->present);
    for (int m = 0; m < QF_NMOD; m++)
        free(b->stats[m]);
    free(b->image_sigma);
    free(b->occluded);
    free(b->snr_db);
    qmod_batch_free(&b->text);
    qmod_batch_free(&b->image);
    qmod_batch_free(&b->audio);
    memset(b, 0, sizeof *b);
}

/* Re-raises the current error with the batch named. */
static qiao_status batch_error(qiao_status st, int64_t index, const char *what) {
    char msg[VQA_MSG_MAX];
    snprintf(msg, sizeof msg, "%s", qiao_last_error());
    return qc_error(st, "vqa batch %lld: %s%s", (long long)index, what, msg);
}

static qiao_status load_text(const vqa_ctx *c, const row_draw *r, qmod_vqa_batch *out) {
    const qmod_vqa_dataset *d = c->p->data;
    const int64_t B = out->B;
    const char **texts = malloc((size_t)B * sizeof *texts);
    if (!texts) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "vqa batch %lld: out of memory", (long long)out->index);
    /* an absent row is the empty text: one padding token, mask 0 */
    for (int64_t i = 0; i < B; i++)
        texts[i] = r[i].text ? d->questions[out->question[i]].text : "";
    qiao_status st = qmod_batch_text(c->p->model, texts, (size_t)B, &out->text);
    free((void *)texts);
    if (st != QIAO_OK) return batch_error(st, out->index, "");
    for (int64_t i = 0; i < B; i++)
        if (r[i].text) qmod_vqa_text_stats(&out->text, i, out->stats[QF_TEXT] + i * QF_NSTATS);
    return QIAO_OK;
}

static qiao_status load_images(const vqa_ctx *c, const row_draw *r, qmod_vqa_batch *out) {
    const qmod_model *m = c->p->model;
    const qmod_vqa_dataset *d = c->p->data;
    const int64_t B = out->B, P = m->cfg.image.tokens;
    const size_t per = qmod_image_floats(m);
    size_t nf;
    /* calloc: an absent row's patches are zeros, the CLIP mean after
     * normalization */
    if (!qc_mul_size(per, (size_t)B, &nf) || !(out->image.patches = calloc(nf, sizeof(float))) ||
        !(out->image.lengths = malloc((size_t)B * sizeof(int64_t))))
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "vqa batch %lld: out of memory for %lld pictures",
                        (long long)out->index, (long long)B);
    out->image.mod = QMOD_IMAGE;
    out->image.B = B;
    out->image.T = P;
    qiao_status st = QIAO_OK;
    uint8_t *work = NULL;
    size_t work_cap = 0;
    for (int64_t i = 0; i < B && st == QIAO_OK; i++) {
        out->image.lengths[i] = P;
        if (!r[i].image) continue;
        picture own = {0};
        const picture *pic = NULL;
        st = get_picture(c->p->cache, d, out->scene[i], &own, &pic);
        const size_t bytes = st == QIAO_OK ? (size_t)(pic->w * pic->h * 3) : 0;
        if (st == QIAO_OK && bytes > work_cap) {
            uint8_t *nw = realloc(work, bytes);
            if (!nw)
                st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "vqa batch %lld: out of memory", (long long)out->index);
            else
                work = nw, work_cap = bytes;
        }
        const bool decoded = st == QIAO_OK; /* get_picture's errors already name the scene */
        qiao_image *img = NULL;
        if (st == QIAO_OK) {
            /* degrade a copy: the cached pixels are shared */
            memcpy(work, pic->rgb, bytes);
            degrade_picture(work, pic->w, pic->h, &r[i]);
            st = qiao_image_from_rgb(work, pic->w, pic->h, (size_t)pic->w * 3, &img);
            if (st == QIAO_OK) qmod_vqa_image_stats(img, out->stats[QF_IMAGE] + i * QF_NSTATS);
        }
        if (st == QIAO_OK) st = qmod_image_patches(m, img, out->image.patches + (size_t)i * per);
        if (st != QIAO_OK && decoded) st = scene_error(st, &d->scenes[out->scene[i]], d->scenes[out->scene[i]].image);
        qiao_image_free(img);
        free(own.rgb);
    }
    free(work);
    return st;
}

static qiao_status load_audio(const vqa_ctx *c, const row_draw *r, qmod_vqa_batch *out) {
    const qmod_model *m = c->p->model;
    const qmod_vqa_dataset *d = c->p->data;
    const int64_t B = out->B, M = m->cfg.audio.n_mels;
    qiao_status st = QIAO_OK;
    qmod_batch *mels = calloc((size_t)B, sizeof *mels);
    const float **mel_ptr = calloc((size_t)B, sizeof *mel_ptr);
    int64_t *frames = calloc((size_t)B, sizeof *frames);
    float *silence = calloc((size_t)M, sizeof *silence); /* an absent row's one frame */
    if (!mels || !mel_ptr || !frames || !silence) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "vqa batch %lld: out of memory", (long long)out->index);
        goto done;
    }
    /* Clip by clip through qmod_batch_audio (the path inference takes),
     * keeping only each clip's log-mel: the decoded clip is several times
     * larger. */
    for (int64_t i = 0; i < B && st == QIAO_OK; i++) {
        mel_ptr[i] = silence;
        frames[i] = 1;
        if (!r[i].audio) continue;
        const qmod_vqa_question *q = &d->questions[out->question[i]];
        qiao_audio *a = NULL;
        st = decode_clip(d, q, &a);
        if (st == QIAO_OK && isfinite(r[i].snr))
            st = add_noise(d, c->spoken, d->n_spoken, out->question[i], c->p->vqa.audio_noise, a, &r[i]);
        if (st == QIAO_OK) {
            st = qmod_batch_audio(m, (const qiao_audio *const *)&a, 1, &mels[i]);
            if (st != QIAO_OK) st = scene_error(st, &d->scenes[q->scene], q->speech);
        }
        qiao_audio_free(a);
        if (st != QIAO_OK) break;
        mel_ptr[i] = mels[i].mel;
        frames[i] = mels[i].lengths[0];
        st = qmod_vqa_audio_stats(m, &mels[i], 0, out->stats[QF_AUDIO] + i * QF_NSTATS);
    }
    if (st == QIAO_OK) {
        st = qmod_batch_mels(m, mel_ptr, frames, (size_t)B, &out->audio);
        if (st != QIAO_OK) st = batch_error(st, out->index, "audio: ");
    }
    if (st == QIAO_OK)
        for (int64_t i = 0; i < B; i++)
            if (!r[i].audio) {
                memset(out->audio.mask + i * out->audio.T, 0, (size_t)out->audio.T);
                out->audio.lengths[i] = 0;
            }
done:
    if (mels)
        for (int64_t i = 0; i < B; i++)
            qmod_batch_free(&mels[i]);
    free(mels);
    free((void *)mel_ptr);
    free(frames);
    free(silence);
    return st;
}

/* Batch `index`; training rows come from perm (the epoch's order). */
static qiao_status make_batch(const vqa_ctx *c, int64_t index, const int64_t *perm, qmod_vqa_batch *out) {
    const qmod_vqa_loader_params *p = c->p;
    const qmod_vqa_dataset *d = p->data;
    const int64_t nq = d->n_questions;
    const int64_t base = p->eval ? index * p->batch : (index % c->bpe) * p->batch;
    const int64_t B = p->eval ? (nq - base < p->batch ? nq - base : p->batch) : p->batch;
    memset(out, 0, sizeof *out);
    out->index = index;
    out->B = B;
    out->text.mod = QMOD_TEXT;
    out->image.mod = QMOD_IMAGE;
    out->audio.mod = QMOD_AUDIO;
    const size_t nB = (size_t)B;
    row_draw *r = calloc(nB, sizeof *r);
    out->question = malloc(nB * sizeof *out->question);
    out->scene = malloc(nB * sizeof *out->scene);
    out->answer = malloc(nB * sizeof *out->answer);
    out->type = malloc(nB);
    out->lang = malloc(nB);
    out->present = malloc(nB * QF_NMOD);
    bool ok = r && out->question && out->scene && out->answer && out->type && out->lang && out->present;
    for (int m = 0; m < QF_NMOD; m++)
        ok = ok && (out->stats[m] = calloc(nB * QF_NSTATS, sizeof(float)));
    ok = ok && (out->image_sigma = malloc(nB * sizeof(float))) && (out->occluded = malloc(nB * sizeof(float))) &&
         (out->snr_db = malloc(nB * sizeof(float)));
    qiao_status st = ok ? QIAO_OK : qc_error(QIAO_ERR_OUT_OF_MEMORY, "vqa batch %lld: out of memory", (long long)index);
    for (int64_t i = 0; i < B && st == QIAO_OK; i++) {
        const int64_t qi = p->eval ? base + i : perm[base + i];
        const qmod_vqa_question *q = &d->questions[qi];
        const uint64_t seed =
            p->eval ? hash4(TAG_EVAL, p->seed, (uint64_t)qi, 0) : hash4(TAG_ROW, p->seed, (uint64_t)index, (uint64_t)i);
        draw_row(&p->vqa, q, d->n_spoken, seed, &r[i]);
        out->question[i] = qi;
        out->scene[i] = q->scene;
        out->answer[i] = q->answer;
        out->type[i] = q->type;
        out->lang[i] = q->lang;
        out->present[i * QF_NMOD + QF_TEXT] = r[i].text;
        out->present[i * QF_NMOD + QF_IMAGE] = r[i].image;
        out->present[i * QF_NMOD + QF_AUDIO] = r[i].audio;
        out->image_sigma[i] = r[i].sigma;
        out->occluded[i] = r[i].occ;
        out->snr_db[i] = r[i].snr;
    }
    if (st == QIAO_OK) st = load_text(c, r, out);
    if (st == QIAO_OK) st = load_images(c, r, out);
    if (st == QIAO_OK) st = load_audio(c, r, out);
    free(r);
    if (st != QIAO_OK) qmod_vqa_batch_free(out);
    return st;
}

qiao_status qmod_vqa_batch_make(const qmod_vqa_loader_params *p, int64_t index, qmod_vqa_batch *out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_vqa_batch_make: out is NULL");
    memset(out, 0, sizeof *out);
    vqa_ctx c;
    qiao_status st = ctx_init(&c, p, "qmod_vqa_batch_make");
    if (st != QIAO_OK) return st;
    if (index < 0 || (p->eval && index >= c.bpe)) {
        ctx_free(&c);
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_vqa_batch_make: batch %lld out of range%s", (long long)index,
                        p->eval ? " (evaluation)" : "");
    }
    int64_t *perm = NULL;
    if (!p->eval) {
        perm = malloc((size_t)p->data->n_questions * sizeof *perm);
        if (!perm)
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "qmod_vqa_batch_make: out of memory");
        else
            epoch_perm(p->seed, index / c.bpe, p->data->n_questions, perm);
    }
    if (st == QIAO_OK) st = make_batch(&c, index, perm, out);
    free(perm);
    ctx_free(&c);
    return st;
}

/* ---- the loader ---------------------------------------------------------------- */

/* One worker's cached training order: consecutive batches of a worker share
 * an epoch, and drawing the order (n_questions) per batch would be wasted
 * work. */
typedef struct worker_order {
    int64_t *perm;      /* (n_questions) the order of perm_epoch */
    int64_t perm_epoch; /* -1: none yet */
} worker_order;

struct qmod_vqa_loader {
    qmod_vqa_loader_params p;
    vqa_ctx ctx;
    qmod_vqa_cache *own_cache; /* when the caller gave none */
    worker_order *orders;      /* (threads) each touched by its worker's thread alone */
    qmod_ring *ring;           /* the workers and the prefetched batches (ring.h) */
};

static qiao_status ring_make(void *ctx, int64_t index, void *batch, int worker) {
    qmod_vqa_loader *l = ctx;
    worker_order *o = &l->orders[worker];
    const int64_t n = l->p.data->n_questions;
    if (!l->p.eval && o->perm_epoch != index / l->ctx.bpe) {
        if (!o->perm) o->perm = malloc((size_t)n * sizeof *o->perm);
        if (!o->perm)
            return qc_error(QIAO_ERR_OUT_OF_MEMORY, "vqa loader: out of memory for an order of %lld questions",
                            (long long)n);
        o->perm_epoch = index / l->ctx.bpe;
        epoch_perm(l->p.seed, o->perm_epoch, n, o->perm);
    }
    return make_batch(&l->ctx, index, o->perm, batch);
}

static void ring_free(void *ctx, void *batch) {
    (void)ctx;
    qmod_vqa_batch_free(batch);
}

/* Frees what start made, in any state it reached. */
static void loader_free(qmod_vqa_loader *l) {
    if (!l) return;
    if (l->orders)
        for (int i = 0; i < l->p.threads; i++)
            free(l->orders[i].perm);
    free(l->orders);
    qmod_vqa_cache_free(l->own_cache);
    ctx_free(&l->ctx);
    free(l);
}

qiao_status qmod_vqa_loader_start(const qmod_vqa_loader_params *p, qmod_vqa_loader **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_vqa_loader_start: out is NULL");
    *out = NULL;
    qiao_status st = check_params(p, "qmod_vqa_loader_start");
    if (st != QIAO_OK) return st;
    qmod_ring_params rp = {.name = "qmod_vqa_loader",
                           .batch_size = sizeof(qmod_vqa_batch),
                           .threads = p->threads,
                           .prefetch = p->prefetch,
                           .first_batch = p->first_batch,
                           .make = ring_make,
                           .free_batch = ring_free};
    if ((st = qmod_ring_check(&rp)) != QIAO_OK) return st;
    qmod_vqa_loader *l = calloc(1, sizeof *l);
    if (!l) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qmod_vqa_loader_start: out of memory");
    l->p = *p;
    /* the context points at the loader's own copy of the params */
    if ((st = ctx_init(&l->ctx, &l->p, "qmod_vqa_loader_start")) != QIAO_OK ||
        (!l->p.cache && (st = qmod_vqa_cache_new(p->data, &l->own_cache)) != QIAO_OK)) {
        loader_free(l);
        return st;
    }
    if (!l->p.cache) l->p.cache = l->own_cache;
    if (!(l->orders = calloc((size_t)p->threads, sizeof *l->orders))) {
        loader_free(l);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qmod_vqa_loader_start: out of memory");
    }
    for (int i = 0; i < p->threads; i++)
        l->orders[i].perm_epoch = -1;
    rp.end = p->eval ? l->ctx.bpe : INT64_MAX;
    rp.ctx = l;
    if ((st = qmod_ring_start(&rp, &l->ring)) != QIAO_OK) {
        loader_free(l);
        return st;
    }
    *out = l;
    return QIAO_OK;
}

qiao_status qmod_vqa_loader_next(qmod_vqa_loader *l, qmod_vqa_batch **out) {
    if (!l || !out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_vqa_loader_next: loader and out are required");
    void *b = NULL;
    qiao_status st = qmod_ring_next(l->ring, &b);
    *out = b;
    return st;
}

void qmod_vqa_loader_release(qmod_vqa_loader *l, qmod_vqa_batch *b) {
    if (l) qmod_ring_release(l->ring, b);
}

void qmod_vqa_loader_stop(qmod_vqa_loader *l) {
    if (!l) return;
    qmod_ring_stop(l->ring);
    loader_free(l);
}
