/* models/tower.c - the tower table (see tower.h): one entry per encoder. */
#include "models/tower.h"

#include <stddef.h>
#include <string.h>

/* ---- text ------------------------------------------------------------------------- */

static qiao_status text_parse(const cJSON *sec, int64_t embed_dim, qmod_config *cfg) {
    return qe_text_config_from_json(sec, embed_dim, &cfg->text);
}
static qiao_status text_describe(qc_table *tab, const qmod_config *cfg) {
    return qe_text_describe(tab, "text.", &cfg->text, offsetof(qmod_params, text));
}
static qiao_status text_describe_acts(qc_table *tab, const qmod_config *cfg, int64_t B, int64_t T) {
    return qe_text_describe_acts(tab, "text.", &cfg->text, B, T, 0);
}
static const nn_trunk_dims *text_trunk_dims(const qmod_config *cfg) {
    return &cfg->text.trunk;
}
static int64_t text_max_len(const qmod_config *cfg) {
    return cfg->text.trunk.max_T;
}
static int64_t same_tokens(const qmod_config *cfg, int64_t T) {
    (void)cfg;
    return T;
}
static qiao_status text_prepare(const qmod_model *m, const void *const *items, size_t n, qmod_batch *out) {
    return qmod_batch_text(m, (const char *const *)items, n, out);
}
static qe_text_input text_input(const qmod_model *m, const qmod_batch *b) {
    qe_text_input in = {b->B, b->T, m->cfg.text.k, b->ids, b->char_ids, b->tags, b->mask};
    return in;
}
static qiao_status text_check(const qmod_model *m, const qmod_batch *b) {
    const qe_text_input in = text_input(m, b);
    return qe_text_check_input(&in, &m->cfg.text);
}
static void text_forward(const qb_exec *ex, const qmod_model *m, qmod_work *w, const qmod_batch *b) {
    const qe_text_input in = text_input(m, b);
    qe_text_forward(ex, &w->a.text, &m->p.text, &in, &m->cfg.text);
}
static void text_backward(const qb_exec *ex, const qmod_model *m, qmod_params *g, qmod_work *w, const qmod_batch *b,
                          const float *demb, const float *dtokens) {
    const qe_text_input in = text_input(m, b);
    qe_text_backward(ex, &g->text, &w->da.text, demb, dtokens, &w->a.text, &m->p.text, &in, &m->cfg.text);
}
static const uint8_t *batch_mask(const qmod_work *w, const qmod_batch *b) {
    (void)w;
    return b->mask;
}

/* ---- image ------------------------------------------------------------------------ */

static qiao_status image_parse(const cJSON *sec, int64_t embed_dim, qmod_config *cfg) {
    return qe_image_config_from_json(sec, embed_dim, &cfg->image);
}
static qiao_status image_describe(qc_table *tab, const qmod_config *cfg) {
    return qe_image_describe(tab, "image.", &cfg->image, offsetof(qmod_params, image));
}
static qiao_status image_describe_acts(qc_table *tab, const qmod_config *cfg, int64_t B, int64_t T) {
    return qe_image_describe_acts(tab, "image.", &cfg->image, B, T, 0);
}
static const nn_trunk_dims *image_trunk_dims(const qmod_config *cfg) {
    return &cfg->image.trunk;
}
static int64_t image_max_len(const qmod_config *cfg) {
    return cfg->image.tokens;
}
static qiao_status image_prepare(const qmod_model *m, const void *const *items, size_t n, qmod_batch *out) {
    return qmod_batch_images(m, (const qiao_image *const *)items, n, out);
}
static qiao_status image_check(const qmod_model *m, const qmod_batch *b) {
    if (!b->patches) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "image batch has no patches");
    if (b->T != m->cfg.image.tokens)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "image batch has %lld patches, the model %lld", (long long)b->T,
                        (long long)m->cfg.image.tokens);
    return QIAO_OK;
}
static void image_forward(const qb_exec *ex, const qmod_model *m, qmod_work *w, const qmod_batch *b) {
    const qe_image_input in = {b->patches, b->B};
    qe_image_forward(ex, &w->a.image, &m->p.image, &in, &m->cfg.image);
}
static void image_backward(const qb_exec *ex, const qmod_model *m, qmod_params *g, qmod_work *w, const qmod_batch *b,
                           const float *demb, const float *dtokens) {
    const qe_image_input in = {b->patches, b->B};
    qe_image_backward(ex, &g->image, &w->da.image, demb, dtokens, &w->a.image, &m->p.image, &in, &m->cfg.image);
}
static const uint8_t *no_mask(const qmod_work *w, const qmod_batch *b) {
    (void)w, (void)b;
    return NULL;
}

/* ---- audio ------------------------------------------------------------------------ */

static qiao_status audio_parse(const cJSON *sec, int64_t embed_dim, qmod_config *cfg) {
    return qe_audio_config_from_json(sec, embed_dim, &cfg->audio);
}
static qiao_status audio_describe(qc_table *tab, const qmod_config *cfg) {
    return qe_audio_describe(tab, "audio.", &cfg->audio, offsetof(qmod_params, audio));
}
static qiao_status audio_describe_acts(qc_table *tab, const qmod_config *cfg, int64_t B, int64_t T) {
    return qe_audio_describe_acts(tab, "audio.", &cfg->audio, B, T, 0);
}
static const nn_trunk_dims *audio_trunk_dims(const qmod_config *cfg) {
    return &cfg->audio.trunk;
}
static int64_t audio_max_len(const qmod_config *cfg) {
    return cfg->audio.max_frames;
}
static int64_t audio_tokens(const qmod_config *cfg, int64_t T) {
    return qe_audio_tokens(&cfg->audio, T);
}
static qiao_status audio_prepare(const qmod_model *m, const void *const *items, size_t n, qmod_batch *out) {
    return qmod_batch_audio(m, (const qiao_audio *const *)items, n, out);
}
static qiao_status audio_check(const qmod_model *m, const qmod_batch *b) {
    (void)m;
    if (!b->mel) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "audio batch has no mel features");
    return QIAO_OK;
}
static void audio_forward(const qb_exec *ex, const qmod_model *m, qmod_work *w, const qmod_batch *b) {
    const qe_audio_input in = {b->mel, b->mask, b->B, b->T};
    qe_audio_forward(ex, &w->a.audio, &m->p.audio, &in, &m->cfg.audio);
}
static void audio_backward(const qb_exec *ex, const qmod_model *m, qmod_params *g, qmod_work *w, const qmod_batch *b,
                           const float *demb, const float *dtokens) {
    const qe_audio_input in = {b->mel, b->mask, b->B, b->T};
    qe_audio_backward(ex, &g->audio, &w->da.audio, demb, dtokens, &w->a.audio, &m->p.audio, &in, &m->cfg.audio);
}
/* The stem derives the trunk's mask from the frames' (qe_audio_forward). */
static const uint8_t *audio_mask(const qmod_work *w, const qmod_batch *b) {
    return b->mask ? (const uint8_t *)w->a.audio.mask : NULL;
}

/* ---- the table -------------------------------------------------------------------- */

static const qmod_tower k_towers[QMOD_N_MODALITIES] = {
    [QMOD_TEXT] = {.mod = QMOD_TEXT, .name = "text", .items = "text", .parse = text_parse,
                  .describe = text_describe, .describe_acts = text_describe_acts, .max_len = text_max_len,
                  .fixed_len = false, .trunk_dims = text_trunk_dims, .trunk_tokens = same_tokens,
                  .prepare = text_prepare, .check = text_check, .forward = text_forward,
                  .backward = text_backward, .trunk_offset = offsetof(qe_text_acts, trunk), .token_mask = batch_mask},
    [QMOD_IMAGE] = {.mod = QMOD_IMAGE, .name = "image", .items = "pictures", .parse = image_parse,
                  .describe = image_describe, .describe_acts = image_describe_acts, .max_len = image_max_len,
                  .fixed_len = true, .trunk_dims = image_trunk_dims, .trunk_tokens = same_tokens,
                  .prepare = image_prepare, .check = image_check, .forward = image_forward,
                  .backward = image_backward, .trunk_offset = offsetof(qe_image_acts, trunk), .token_mask = no_mask},
    [QMOD_AUDIO] = {.mod = QMOD_AUDIO, .name = "audio", .items = "sound", .parse = audio_parse,
                  .describe = audio_describe, .describe_acts = audio_describe_acts, .max_len = audio_max_len,
                  .fixed_len = false, .trunk_dims = audio_trunk_dims, .trunk_tokens = audio_tokens,
                  .prepare = audio_prepare, .check = audio_check, .forward = audio_forward,
                  .backward = audio_backward, .trunk_offset = offsetof(qe_audio_acts, trunk), .token_mask = audio_mask},
};

const qmod_tower *qmod_tower_of(qmod_modality mod) {
    return (int)mod >= 0 && mod < QMOD_N_MODALITIES ? &k_towers[mod] : NULL;
}

int qmod_tower_find(const char *name) {
    for (int i = 0; name && i < QMOD_N_MODALITIES; i++)
        if (strcmp(k_towers[i].name, name) == 0) return i;
    return -1;
}
