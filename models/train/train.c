/* models/train/train.c - contrastive training of the three encoders (see train.h).
 *
 * One step on a batch of B scenes (A of them with speech):
 *   e_T = text(captions), e_I = image(pictures), e_A = audio(speech)
 *   loss = InfoNCE(e_T, e_I) + w_a (InfoNCE(e_A, e_T[rows]) + InfoNCE(e_A, e_I[rows]))
 * each InfoNCE symmetric with its own learnable temperature; then the
 * encoders' backward from the accumulated embedding gradients, gradient
 * clipping, AdamW with warmup and cosine decay. Without images (an
 * image-less data set) the step is loss = w_a InfoNCE(e_A, e_T[rows]).
 *
 * Checkpoints are model files (f32, tokenizer inside, so `qiao eval` reads
 * them) with the AdamW moments as extra tensors "optim.m.<name>",
 * "optim.v.<name>" and the metadata "qiao.train" (step, wall time,
 * hyperparameters). Batches are a pure function of (seed, step), so a run
 * resumed from a checkpoint continues exactly as the uninterrupted run. */
#include "models/train/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "models/retrieval/eval.h"

#define META_TRAIN "qiao.train"

/* ---- hyperparameters ---------------------------------------------------------- */

static qmod_train_hparams hparams_default(void) {
    qmod_train_hparams h = {.batch = 64,
                            .steps = 1000,
                            .warmup = -1,
                            .lr = 1e-3f,
                            .lr_min = -1.0f,
                            .weight_decay = 0.05f,
                            .clip = 1.0f,
                            .eval_every = 100,
                            .ckpt_every = 100,
                            .eval_pool = 500,
                            .audio_weight = 1.0f,
                            .seed = 1};
    return h;
}

static qiao_status num(const cJSON *it, double lo, double hi, bool integer, double *out) {
    if (!cJSON_IsNumber(it) || !(it->valuedouble >= lo && it->valuedouble <= hi) ||
        (integer && it->valuedouble != floor(it->valuedouble)))
        return qc_error(QIAO_ERR_FORMAT, "config: train.%s must be %s in [%g, %g]", it->string,
                        integer ? "an integer" : "a number", lo, hi);
    *out = it->valuedouble;
    return QIAO_OK;
}

/* "freeze": an array of tower names ("text", "image", "audio") -> bit mask. */
static qiao_status freeze_from_json(const cJSON *it, uint32_t *mask) {
    *mask = 0;
    if (!cJSON_IsArray(it)) return qc_error(QIAO_ERR_FORMAT, "config: train.freeze must be an array of tower names");
    for (const cJSON *e = it->child; e; e = e->next) {
        int mod = -1;
        for (int m = 0; m < QMOD_N_MODALITIES; m++)
            if (cJSON_IsString(e) && !strcmp(e->valuestring, qmod_modality_name((qmod_modality)m))) mod = m;
        if (mod < 0)
            return qc_error(QIAO_ERR_FORMAT, "config: train.freeze: %s is not a tower (text, image, audio)",
                            cJSON_IsString(e) ? e->valuestring : "a non-string");
        *mask |= 1u << mod;
    }
    return QIAO_OK;
}

qiao_status qmod_train_hparams_from_config(const char *cfg_json, qmod_train_hparams *out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_train_hparams_from_config: out is NULL");
    qmod_train_hparams h = hparams_default();
    cJSON *root = cfg_json ? cJSON_Parse(cfg_json) : NULL;
    if (cfg_json && !root) return qc_error(QIAO_ERR_FORMAT, "config: not valid JSON");
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(root, "train");
    qiao_status st = QIAO_OK;
    if (tr && !cJSON_IsObject(tr)) st = qc_error(QIAO_ERR_FORMAT, "config: key \"train\" must be an object");
    for (const cJSON *it = tr ? tr->child : NULL; st == QIAO_OK && it; it = it->next) {
        double v = 0;
        const char *k = it->string;
        if (!strcmp(k, "batch")) {
            if ((st = num(it, 2, 65536, true, &v)) == QIAO_OK) h.batch = (int64_t)v;
        } else if (!strcmp(k, "steps")) {
            if ((st = num(it, 1, 1e9, true, &v)) == QIAO_OK) h.steps = (int64_t)v;
        } else if (!strcmp(k, "warmup")) {
            if ((st = num(it, 0, 1e9, true, &v)) == QIAO_OK) h.warmup = (int64_t)v;
        } else if (!strcmp(k, "restart")) {
            if ((st = num(it, 0, 1e9, true, &v)) == QIAO_OK) h.restart = (int64_t)v;
        } else if (!strcmp(k, "lr")) {
            if ((st = num(it, 0, 1, false, &v)) == QIAO_OK) h.lr = (float)v;
        } else if (!strcmp(k, "lr_min")) {
            if ((st = num(it, 0, 1, false, &v)) == QIAO_OK) h.lr_min = (float)v;
        } else if (!strcmp(k, "weight_decay")) {
            if ((st = num(it, 0, 10, false, &v)) == QIAO_OK) h.weight_decay = (float)v;
        } else if (!strcmp(k, "clip")) {
            if ((st = num(it, 0, 1e6, false, &v)) == QIAO_OK) h.clip = (float)v;
        } else if (!strcmp(k, "eval_every")) {
            if ((st = num(it, 0, 1e9, true, &v)) == QIAO_OK) h.eval_every = (int64_t)v;
        } else if (!strcmp(k, "ckpt_every")) {
            if ((st = num(it, 0, 1e9, true, &v)) == QIAO_OK) h.ckpt_every = (int64_t)v;
        } else if (!strcmp(k, "eval_pool")) {
            if ((st = num(it, 1, 1e7, true, &v)) == QIAO_OK) h.eval_pool = (int64_t)v;
        } else if (!strcmp(k, "audio_weight")) {
            if ((st = num(it, 0, 100, false, &v)) == QIAO_OK) h.audio_weight = (float)v;
        } else if (!strcmp(k, "freeze")) {
            st = freeze_from_json(it, &h.freeze);
        } else if (!strcmp(k, "place_groups")) {
            if ((st = num(it, 0, 1024, true, &v)) == QIAO_OK) h.place_groups = (int64_t)v;
        } else if (!strcmp(k, "seed")) {
            if ((st = num(it, 0, 9007199254740991.0, true, &v)) == QIAO_OK) h.seed = (uint64_t)v;
        } else {
            st = qc_error(QIAO_ERR_FORMAT, "config: unknown key train.%s", k);
        }
    }
    cJSON_Delete(root);
    if (st == QIAO_OK) *out = h;
    return st;
}

qiao_status qmod_train_hparams_from_model(const char *path, qmod_train_hparams *out) {
    if (!path || !out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_train_hparams_from_model: NULL argument");
    qc_st_file *f = NULL;
    qiao_status st = qc_st_open(path, &f);
    if (st != QIAO_OK) return st;
    const char *js = qc_st_metadata_get(f, QMOD_META_CONFIG);
    if (!js) st = qc_error(QIAO_ERR_FORMAT, "%s: not a model file (metadata %s missing)", path, QMOD_META_CONFIG);
    if (st == QIAO_OK && (st = qmod_train_hparams_from_config(js, out)) != QIAO_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", qiao_last_error());
        st = qc_error(st, "%s: %s", path, msg);
    }
    qc_st_close(f);
    return st;
}

qiao_status qmod_train_hparams_from_checkpoint(const char *path, qmod_train_hparams *out, int64_t *step) {
    if (!path || !out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_train_hparams_from_checkpoint: NULL argument");
    qc_st_file *f = NULL;
    qiao_status st = qc_st_open(path, &f);
    if (st != QIAO_OK) return st;
    const char *js = qc_st_metadata_get(f, META_TRAIN);
    cJSON *o = js ? cJSON_Parse(js) : NULL;
    const cJSON *stp = cJSON_GetObjectItemCaseSensitive(o, "step");
    if (!cJSON_IsObject(o) || !cJSON_IsNumber(stp)) {
        st = qc_error(QIAO_ERR_FORMAT, "%s: not a training checkpoint (metadata %s missing or bad)", path, META_TRAIN);
    } else {
        if (step) *step = (int64_t)stp->valuedouble;
        cJSON_DeleteItemFromObjectCaseSensitive(o, "step");
        cJSON_DeleteItemFromObjectCaseSensitive(o, "seconds");
        cJSON *root = cJSON_CreateObject();
        cJSON_AddItemToObject(root, "train", o);
        o = NULL;
        char *s = cJSON_PrintUnformatted(root);
        cJSON_Delete(root);
        st = s ? qmod_train_hparams_from_config(s, out) : qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        cJSON_free(s);
    }
    cJSON_Delete(o);
    qc_st_close(f);
    return st;
}

/* Resolves the derived defaults (warmup, lr_min) once the steps are known. */
static void hparams_finish(qmod_train_hparams *h) {
    if (h->warmup < 0) h->warmup = h->steps / 20;
    if (h->lr_min < 0) h->lr_min = h->lr / 20.0f;
}

static char *hparams_json(const qmod_train_hparams *h, int64_t step, double seconds) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", (double)step);
    cJSON_AddNumberToObject(o, "seconds", seconds);
    cJSON_AddNumberToObject(o, "batch", (double)h->batch);
    cJSON_AddNumberToObject(o, "steps", (double)h->steps);
    cJSON_AddNumberToObject(o, "warmup", (double)h->warmup);
    if (h->restart > 0) cJSON_AddNumberToObject(o, "restart", (double)h->restart);
    cJSON_AddNumberToObject(o, "lr", h->lr);
    cJSON_AddNumberToObject(o, "lr_min", h->lr_min);
    cJSON_AddNumberToObject(o, "weight_decay", h->weight_decay);
    cJSON_AddNumberToObject(o, "clip", h->clip);
    cJSON_AddNumberToObject(o, "eval_every", (double)h->eval_every);
    cJSON_AddNumberToObject(o, "ckpt_every", (double)h->ckpt_every);
    cJSON_AddNumberToObject(o, "eval_pool", (double)h->eval_pool);
    cJSON_AddNumberToObject(o, "audio_weight", h->audio_weight);
    cJSON_AddNumberToObject(o, "seed", (double)h->seed);
    if (h->place_groups > 1) cJSON_AddNumberToObject(o, "place_groups", (double)h->place_groups);
    if (h->freeze) {
        cJSON *f = cJSON_AddArrayToObject(o, "freeze");
        for (int m = 0; m < QMOD_N_MODALITIES; m++)
            if (h->freeze & (1u << m)) cJSON_AddItemToArray(f, cJSON_CreateString(qmod_modality_name((qmod_modality)m)));
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* ---- config and tokenizer ------------------------------------------------------- */

/* The config file with the tokenizer's vocabulary sizes (qmod_config_for_tokenizer). */
static qiao_status config_for_tokenizer(const char *path, const qiao_tokenizer *tok, qmod_config *out) {
    qmod_config cfg;
    qiao_status st = qmod_config_from_file(path, &cfg);
    if (st != QIAO_OK) return st;
    st = qmod_config_for_tokenizer(&cfg, tok, out);
    qmod_config_free(&cfg);
    return st;
}

/* ---- checkpoints ------------------------------------------------------------------ */

typedef struct trainer {
    const qmod_train_params *p;
    qmod_train_hparams h;
    qmod_model *m;
    qb_exec ex;
    qc_arena grads, mom1, mom2;
    qmod_params g;
    char **mnames, **vnames; /* "optim.m.<name>", "optim.v.<name>" */
    int64_t step;            /* completed steps */
    double seconds_before;   /* wall time of earlier runs (resume) */
} trainer;

static qiao_status moment_names(trainer *t) {
    const size_t n = t->m->tab.n;
    t->mnames = calloc(n, sizeof(char *));
    t->vnames = calloc(n, sizeof(char *));
    if (!t->mnames || !t->vnames) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "trainer: out of memory");
    for (size_t i = 0; i < n; i++) {
        const size_t len = strlen(t->m->tab.t[i].name) + 16;
        t->mnames[i] = malloc(len);
        t->vnames[i] = malloc(len);
        if (!t->mnames[i] || !t->vnames[i]) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "trainer: out of memory");
        snprintf(t->mnames[i], len, "optim.m.%s", t->m->tab.t[i].name);
        snprintf(t->vnames[i], len, "optim.v.%s", t->m->tab.t[i].name);
    }
    return QIAO_OK;
}

static qiao_status save_checkpoint(trainer *t, double seconds) {
    const qc_table *tab = &t->m->tab;
    const size_t n = tab->n;
    qc_st_entry *e = calloc(2 * n, sizeof *e);
    if (!e) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "checkpoint: out of memory");
    qc_st_table_entries(tab, t->mom1.base, e);
    qc_st_table_entries(tab, t->mom2.base, e + n);
    for (size_t i = 0; i < n; i++) {
        e[i].name = t->mnames[i];
        e[i].dtype = QIAO_DTYPE_F32;
        e[n + i].name = t->vnames[i];
        e[n + i].dtype = QIAO_DTYPE_F32;
    }
    char *js = hparams_json(&t->h, t->step, seconds);
    qc_st_kv meta = {META_TRAIN, js};
    qiao_status st = js ? qmod_save_ex(t->m, t->p->ckpt_path, QIAO_DTYPE_F32, e, 2 * n, &meta, 1)
                        : qc_error(QIAO_ERR_OUT_OF_MEMORY, "checkpoint: out of memory");
    cJSON_free(js);
    free(e);
    return st;
}

/* Loads the moments and the training state of a checkpoint into t (whose
 * model was loaded from the same file). */
static qiao_status load_checkpoint_state(trainer *t, const char *path) {
    qc_st_file *f = NULL;
    qiao_status st = qc_st_open(path, &f);
    if (st != QIAO_OK) return st;
    const char *js = qc_st_metadata_get(f, META_TRAIN);
    cJSON *o = js ? cJSON_Parse(js) : NULL;
    const cJSON *stp = cJSON_GetObjectItemCaseSensitive(o, "step"), *sec = cJSON_GetObjectItemCaseSensitive(o, "seconds");
    if (!cJSON_IsNumber(stp) || !cJSON_IsNumber(sec) || stp->valuedouble < 0)
        st = qc_error(QIAO_ERR_FORMAT, "%s: not a training checkpoint (metadata %s missing or bad)", path, META_TRAIN);
    if (st == QIAO_OK) {
        t->step = (int64_t)stp->valuedouble;
        t->seconds_before = sec->valuedouble;
    }
    const qc_table *tab = &t->m->tab;
    for (size_t i = 0; st == QIAO_OK && i < tab->n; i++) {
        for (int w = 0; w < 2 && st == QIAO_OK; w++) {
            const char *name = w ? t->vnames[i] : t->mnames[i];
            const qc_st_tensor *x = qc_st_find(f, name);
            if (!x || x->dtype != QIAO_DTYPE_F32 || x->numel != tab->t[i].numel)
                st = qc_error(QIAO_ERR_FORMAT, "%s: optimizer tensor %s missing or of the wrong shape", path, name);
            else
                memcpy((w ? t->mom2.base : t->mom1.base) + tab->t[i].offset, x->data, x->nbytes);
        }
    }
    cJSON_Delete(o);
    qc_st_close(f);
    return st;
}

/* ---- one step -------------------------------------------------------------------- */

/* Host buffers for the losses of one step, sized for B rows. */
typedef struct step_bufs {
    int64_t B, D;
    nn_infonce_acts nce[QMOD_N_PAIRS];
    float *demb[QMOD_N_MODALITIES]; /* (B, D) */
    float *sel_t, *sel_i;           /* (B, D) text / image rows of the audio items */
    float *dsel_t, *dsel_i;         /* (B, D) their gradients */
    float *all;
} step_bufs;

static qiao_status step_bufs_init(step_bufs *s, int64_t B, int64_t D) {
    memset(s, 0, sizeof *s);
    s->B = B;
    s->D = D;
    const size_t nn = (size_t)(B * B), bd = (size_t)(B * D);
    const size_t per_pair = 4 * nn + (size_t)B;
    size_t total = QMOD_N_PAIRS * per_pair + 3 * bd + 4 * bd;
    s->all = calloc(total, sizeof(float));
    if (!s->all) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "trainer: out of memory for the loss buffers");
    float *p = s->all;
    for (int i = 0; i < QMOD_N_PAIRS; i++) {
        s->nce[i].logits = p, p += nn;
        s->nce[i].probs_r = p, p += nn;
        s->nce[i].probs_c = p, p += nn;
        s->nce[i].scratch = p, p += nn;
        s->nce[i].losses = p, p += B;
    }
    for (int i = 0; i < QMOD_N_MODALITIES; i++) s->demb[i] = p, p += bd;
    s->sel_t = p, p += bd;
    s->sel_i = p, p += bd;
    s->dsel_t = p, p += bd;
    s->dsel_i = p;
    return QIAO_OK;
}

/* ---- audio in chunks of similar length ----------------------------------------- */

/* A batch's clips last from 3 to 25 s. Padded to the longest, more than half
 * of the audio encoder's work (most of a step) would go into padding. The
 * clips run instead in chunks of AUDIO_CHUNK sorted by length, each padded
 * to its own longest. The encoder treats items independently (masked), so
 * the embeddings are the same as the whole batch's. Each chunk keeps its
 * own workspace: its activations wait there for the backward. */
#define AUDIO_CHUNK 32

typedef struct audio_chunks {
    int64_t cap, n;   /* chunks allocated, in use */
    int64_t *order;   /* (cap * AUDIO_CHUNK) clips, shortest first */
    qmod_batch *sub;  /* (cap) */
    qmod_work *w;     /* (cap) */
    float *emb, *g;   /* (cap * AUDIO_CHUNK, D): embeddings in batch order; one chunk's gradient */
} audio_chunks;

static void audio_chunks_free(audio_chunks *c) {
    for (int64_t i = 0; i < c->cap; i++) {
        if (c->sub) qmod_batch_free(&c->sub[i]);
        if (c->w) qmod_work_free(&c->w[i]);
    }
    free(c->order);
    free(c->sub);
    free(c->w);
    free(c->emb);
    free(c->g);
    memset(c, 0, sizeof *c);
}

static qiao_status audio_chunks_init(audio_chunks *c, const qmod_model *m, int64_t B) {
    memset(c, 0, sizeof *c);
    const int64_t D = m->cfg.embed_dim;
    c->cap = (B + AUDIO_CHUNK - 1) / AUDIO_CHUNK;
    c->order = calloc((size_t)(c->cap * AUDIO_CHUNK), sizeof *c->order);
    c->sub = calloc((size_t)c->cap, sizeof *c->sub);
    c->w = calloc((size_t)c->cap, sizeof *c->w);
    c->emb = calloc((size_t)(c->cap * AUDIO_CHUNK * D), sizeof(float));
    c->g = calloc((size_t)(AUDIO_CHUNK * D), sizeof(float));
    qiao_status st = c->order && c->sub && c->w && c->emb && c->g
                         ? QIAO_OK
                         : qc_error(QIAO_ERR_OUT_OF_MEMORY, "trainer: out of memory for the audio chunks");
    for (int64_t i = 0; i < c->cap && st == QIAO_OK; i++)
        st = qmod_work_init(&c->w[i], m, QMOD_AUDIO, AUDIO_CHUNK, 256, true);
    if (st != QIAO_OK) audio_chunks_free(c);
    return st;
}

/* Embeds the A clips of `a` chunk by chunk into c->emb (A, D), batch order. */
static qiao_status audio_chunks_forward(const qb_exec *ex, const qmod_model *m, audio_chunks *c,
                                        const qmod_batch *a) {
    const int64_t A = a->B, D = m->cfg.embed_dim;
    if (A > c->cap * AUDIO_CHUNK)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "trainer: %lld clips in a batch of at most %lld", (long long)A,
                        (long long)(c->cap * AUDIO_CHUNK));
    /* insertion sort by (length, index): stable, so the chunks are a pure function of the batch */
    for (int64_t i = 0; i < A; i++) {
        int64_t j = i;
        while (j > 0 && a->lengths[c->order[j - 1]] > a->lengths[i]) {
            c->order[j] = c->order[j - 1];
            j--;
        }
        c->order[j] = i;
    }
    c->n = (A + AUDIO_CHUNK - 1) / AUDIO_CHUNK;
    qiao_status st = QIAO_OK;
    for (int64_t k = 0; k < c->n && st == QIAO_OK; k++) {
        const int64_t r0 = k * AUDIO_CHUNK, nr = A - r0 < AUDIO_CHUNK ? A - r0 : AUDIO_CHUNK;
        qmod_batch_free(&c->sub[k]);
        const float *e = NULL;
        st = qmod_batch_select(m, a, c->order + r0, (size_t)nr, &c->sub[k]);
        if (st == QIAO_OK) st = qmod_work_reserve(&c->w[k], m, nr, c->sub[k].T);
        if (st == QIAO_OK) st = qmod_forward(ex, m, &c->w[k], &c->sub[k], &e);
        for (int64_t j = 0; j < nr && st == QIAO_OK; j++)
            memcpy(c->emb + c->order[r0 + j] * D, e + j * D, (size_t)D * sizeof(float));
    }
    return st;
}

/* After audio_chunks_forward: demb (A, D) in batch order -> parameter gradients. */
static void audio_chunks_backward(const qb_exec *ex, const qmod_model *m, qmod_params *grads, audio_chunks *c,
                                  const float *demb) {
    const int64_t D = m->cfg.embed_dim;
    for (int64_t k = 0; k < c->n; k++) {
        const int64_t r0 = k * AUDIO_CHUNK, nr = c->sub[k].B;
        for (int64_t j = 0; j < nr; j++)
            memcpy(c->g + j * D, demb + c->order[r0 + j] * D, (size_t)D * sizeof(float));
        qmod_backward(ex, m, grads, &c->w[k], &c->sub[k], c->g);
    }
}

/* Forward, losses, backward and update of one batch. */
static qiao_status train_step(trainer *t, qmod_work *w, audio_chunks *ac, step_bufs *s,
                              const qmod_train_batch *b, qmod_train_log *log) {
    const qb_exec *ex = &t->ex;
    qmod_model *m = t->m;
    const int64_t B = b->B, A = b->A, D = m->cfg.embed_dim;
    const bool audio = A >= 2 && t->h.audio_weight > 0;
    const bool images = b->image.B > 0; /* false: an image-less data set, audio-text only */
    if (!images && !audio)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "step %lld: a batch without images needs at least 2 clips and audio_weight > 0 (has %lld, %g)",
                        (long long)(t->step + 1), (long long)A, (double)t->h.audio_weight);
    const qmod_batch *in[QMOD_N_MODALITIES] = {&b->text, &b->image, &b->audio};
    const bool run[QMOD_N_MODALITIES] = {true, images, audio};
    const float *e[QMOD_N_MODALITIES] = {NULL, NULL, NULL};
    qiao_status st = QIAO_OK;
    for (int mod = 0; mod < QMOD_N_MODALITIES && st == QIAO_OK; mod++) {
        if (!run[mod]) continue;
        if (mod == QMOD_AUDIO) {
            st = audio_chunks_forward(ex, m, ac, in[mod]);
            e[mod] = ac->emb;
            continue;
        }
        st = qmod_work_reserve(&w[mod], m, in[mod]->B, in[mod]->T);
        if (st == QIAO_OK) st = qmod_forward(ex, m, &w[mod], in[mod], &e[mod]);
    }
    if (st != QIAO_OK) return st;

    float loss[QMOD_N_PAIRS] = {0, 0, 0};
    for (int i = 0; i < QMOD_N_MODALITIES; i++) memset(s->demb[i], 0, (size_t)(B * D) * sizeof(float));
    if (images)
        nn_infonce_forward(ex, &loss[QMOD_PAIR_TEXT_IMAGE], &s->nce[QMOD_PAIR_TEXT_IMAGE], e[QMOD_TEXT], e[QMOD_IMAGE],
                           m->p.logit_scale[QMOD_PAIR_TEXT_IMAGE], B, D);
    if (audio) {
        for (int64_t j = 0; j < A; j++) {
            memcpy(s->sel_t + j * D, e[QMOD_TEXT] + b->audio_rows[j] * D, (size_t)D * sizeof(float));
            if (images) memcpy(s->sel_i + j * D, e[QMOD_IMAGE] + b->audio_rows[j] * D, (size_t)D * sizeof(float));
        }
        nn_infonce_forward(ex, &loss[QMOD_PAIR_AUDIO_TEXT], &s->nce[QMOD_PAIR_AUDIO_TEXT], e[QMOD_AUDIO], s->sel_t,
                           m->p.logit_scale[QMOD_PAIR_AUDIO_TEXT], A, D);
        if (images)
            nn_infonce_forward(ex, &loss[QMOD_PAIR_AUDIO_IMAGE], &s->nce[QMOD_PAIR_AUDIO_IMAGE], e[QMOD_AUDIO],
                               s->sel_i, m->p.logit_scale[QMOD_PAIR_AUDIO_IMAGE], A, D);
    }
    /* the kernels' own failures, before their outputs are judged */
    if ((st = ex->ops->sync(ex)) != QIAO_OK) return st;
    const float wa = t->h.audio_weight;
    for (int i = 0; i < QMOD_N_PAIRS; i++)
        if (!isfinite(loss[i]))
            return qc_error(QIAO_ERR_INTERNAL, "step %lld: the %s loss is not finite (%g); lower the learning rate",
                            (long long)(t->step + 1), i == 0 ? "text-image" : i == 1 ? "audio-text" : "audio-image",
                            (double)loss[i]);

    qc_arena_zero(&t->grads);
    if (images)
        nn_infonce_backward(ex, s->demb[QMOD_TEXT], s->demb[QMOD_IMAGE], t->g.logit_scale[QMOD_PAIR_TEXT_IMAGE], 1.0f,
                            &s->nce[QMOD_PAIR_TEXT_IMAGE], e[QMOD_TEXT], e[QMOD_IMAGE],
                            m->p.logit_scale[QMOD_PAIR_TEXT_IMAGE], B, D);
    if (audio) {
        memset(s->dsel_t, 0, (size_t)(A * D) * sizeof(float));
        memset(s->dsel_i, 0, (size_t)(A * D) * sizeof(float));
        nn_infonce_backward(ex, s->demb[QMOD_AUDIO], s->dsel_t, t->g.logit_scale[QMOD_PAIR_AUDIO_TEXT], wa,
                            &s->nce[QMOD_PAIR_AUDIO_TEXT], e[QMOD_AUDIO], s->sel_t,
                            m->p.logit_scale[QMOD_PAIR_AUDIO_TEXT], A, D);
        if (images)
            nn_infonce_backward(ex, s->demb[QMOD_AUDIO], s->dsel_i, t->g.logit_scale[QMOD_PAIR_AUDIO_IMAGE], wa,
                                &s->nce[QMOD_PAIR_AUDIO_IMAGE], e[QMOD_AUDIO], s->sel_i,
                                m->p.logit_scale[QMOD_PAIR_AUDIO_IMAGE], A, D);
        /* the selected rows' gradients go back to the text and image rows they were copied from */
        for (int64_t j = 0; j < A; j++) {
            float *dt = s->demb[QMOD_TEXT] + b->audio_rows[j] * D, *di = s->demb[QMOD_IMAGE] + b->audio_rows[j] * D;
            for (int64_t k = 0; k < D; k++) {
                dt[k] += s->dsel_t[j * D + k];
                di[k] += s->dsel_i[j * D + k];
            }
        }
    }
    for (int mod = 0; mod < QMOD_N_MODALITIES; mod++) {
        if (!run[mod] || (t->h.freeze >> mod) & 1u) continue; /* frozen: its parameter gradients are not used */
        if (mod == QMOD_AUDIO)
            audio_chunks_backward(ex, m, &t->g, ac, s->demb[mod]);
        else
            qmod_backward(ex, m, &t->g, &w[mod], in[mod], s->demb[mod]);
    }
    if ((st = ex->ops->sync(ex)) != QIAO_OK) return st; /* before gradients that may be unfinished are applied */

    const int64_t step = t->step; /* 0-based index of this step */
    const float lr = nn_lr_warmup_cosine(step - t->h.restart, t->h.warmup, t->h.steps - t->h.restart, t->h.lr,
                                         t->h.lr_min);
    const float gnorm = nn_clip_grad_norm(ex, t->grads.base, (int64_t)t->grads.n, t->h.clip);
    if (!isfinite(gnorm))
        return qc_error(QIAO_ERR_INTERNAL, "step %lld: the gradient norm is not finite", (long long)(step + 1));
    nn_adamw_config oc = nn_adamw_default();
    oc.lr = lr;
    oc.weight_decay = t->h.weight_decay;
    oc.beta2 = 0.98f; /* CLIP's: steadier second moments for contrastive losses with large batches */
    oc.eps = 1e-6f;
    nn_adamw_update(ex, &m->tab, m->arena.base, t->grads.base, t->mom1.base, t->mom2.base, step + 1, &oc);
    t->step++;

    log->step = t->step;
    log->lr = lr;
    log->grad_norm = gnorm;
    log->loss = loss[0] + (audio ? wa * (loss[1] + loss[2]) : 0.0f); /* skipped pairs hold 0 */
    const bool trained[QMOD_N_PAIRS] = {images, audio, audio && images};
    for (int i = 0; i < QMOD_N_PAIRS; i++) {
        log->loss_pair[i] = trained[i] ? loss[i] : NAN;
        float ls = m->p.logit_scale[i][0];
        if (ls > NN_INFONCE_MAX_LOGIT_SCALE) ls = NN_INFONCE_MAX_LOGIT_SCALE;
        if (ls < 0) ls = 0;
        log->scale[i] = expf(ls);
    }
    return QIAO_OK;
}

/* ---- the run ------------------------------------------------------------------------ */

static void trainer_free(trainer *t) {
    if (t->m && t->mnames)
        for (size_t i = 0; i < t->m->tab.n; i++) {
            free(t->mnames[i]);
            free(t->vnames[i]);
        }
    free(t->mnames);
    free(t->vnames);
    qc_arena_free(&t->grads);
    qc_arena_free(&t->mom1);
    qc_arena_free(&t->mom2);
    qmod_free(t->m);
}

/* Builds the model: fresh from config + tokenizer, or loaded from a checkpoint. */
static qiao_status trainer_init(trainer *t, const qmod_train_params *p) {
    memset(t, 0, sizeof *t);
    t->p = p;
    t->h = p->hp;
    hparams_finish(&t->h);
    qb_exec_cpu(&t->ex, p->threads);
    qiao_status st;
    if (p->resume_path) {
        st = qmod_load(p->resume_path, &t->m);
        if (st == QIAO_OK && !t->m->tok)
            st = qc_error(QIAO_ERR_FORMAT, "%s: checkpoint without a tokenizer", p->resume_path);
    } else if (p->init_path) {
        /* Fine-tuning: the model file is the whole starting point; a second
         * config or tokenizer could only disagree with it. */
        if (p->config_path || p->tokenizer_path)
            return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                            "train: %s brings its own config and tokenizer; give no config or tokenizer with it",
                            p->init_path);
        st = qmod_load(p->init_path, &t->m);
        if (st == QIAO_OK && !t->m->tok)
            st = qc_error(QIAO_ERR_FORMAT, "%s: model without a tokenizer: text cannot be trained", p->init_path);
    } else {
        if (!p->config_path || !p->tokenizer_path)
            return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                            "train: a config and a tokenizer are needed (or a model to fine-tune, or --resume)");
        qiao_tokenizer *tok = NULL;
        st = qiao_tokenizer_load(p->tokenizer_path, &tok);
        qmod_config cfg;
        memset(&cfg, 0, sizeof cfg);
        if (st == QIAO_OK) st = config_for_tokenizer(p->config_path, tok, &cfg);
        if (st == QIAO_OK) st = qmod_create(&cfg, t->h.seed, &t->m);
        if (st == QIAO_OK) {
            t->m->tok = tok;
            tok = NULL;
        }
        qiao_tokenizer_free(tok);
        qmod_config_free(&cfg);
    }
    if (st != QIAO_OK) return st;
    const size_t n = t->m->tab.total;
    if ((st = qc_arena_alloc(&t->grads, n)) != QIAO_OK || (st = qc_arena_alloc(&t->mom1, n)) != QIAO_OK ||
        (st = qc_arena_alloc(&t->mom2, n)) != QIAO_OK || (st = moment_names(t)) != QIAO_OK)
        return st;
    qc_table_bind(&t->m->tab, t->grads.base, &t->g);
    if (p->resume_path) st = load_checkpoint_state(t, p->resume_path);
    return st;
}

/* Flags QC_FROZEN the tensors of the towers in `frozen` and of the towers in
 * `absent` (ones that do not run: no images in the data, or audio_weight 0),
 * with the temperature of every pair that has an absent tower or only frozen
 * ones: its loss then trains nothing, and AdamW's decoupled weight decay
 * would otherwise still shrink what nothing trains. */
static void freeze_towers(qmod_model *m, uint32_t frozen, uint32_t absent) {
    static const struct {
        const char *name;
        uint32_t towers;
    } pairs[] = {{"logit_scale.text_image", (1u << QMOD_TEXT) | (1u << QMOD_IMAGE)},
                 {"logit_scale.audio_text", (1u << QMOD_AUDIO) | (1u << QMOD_TEXT)},
                 {"logit_scale.audio_image", (1u << QMOD_AUDIO) | (1u << QMOD_IMAGE)}};
    const uint32_t mask = frozen | absent;
    for (size_t i = 0; i < m->tab.n; i++) {
        qc_tensor_desc *d = &m->tab.t[i];
        bool f = false;
        for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++)
            if (!strcmp(d->name, pairs[k].name) && ((pairs[k].towers & absent) || (pairs[k].towers & ~mask) == 0))
                f = true;
        for (int mod = 0; mod < QMOD_N_MODALITIES; mod++) {
            const char *tower = qmod_modality_name((qmod_modality)mod);
            const size_t n = strlen(tower);
            if (((mask >> mod) & 1u) && !strncmp(d->name, tower, n) && d->name[n] == '.') f = true;
        }
        if (f) d->flags |= QC_FROZEN;
    }
}

static void validate(trainer *t, const qmod_dataset *val, qmod_train_log *log) {
    qmod_eval_params ep = qmod_eval_default_params();
    ep.pool = t->h.eval_pool;
    qmod_retrieval r;
    if (qmod_eval_retrieval(&t->ex, t->m, val, &ep, &r) != QIAO_OK) {
        qc_log(QIAO_LOG_WARN, "validation failed: %s", qiao_last_error());
        return;
    }
    log->val_t2i_r1 = (float)r.mean[QMOD_T2I][QMOD_R1];
    log->val_i2t_r1 = (float)r.mean[QMOD_I2T][QMOD_R1];
    log->val_a2i_r1 = (float)r.mean[QMOD_A2I][QMOD_R1];
    log->val_a2t_r1 = (float)r.mean[QMOD_A2T][QMOD_R1];
}

qiao_status qmod_train(const qmod_train_params *p) {
    if (!p || !p->data_dir || !p->out_path || !p->ckpt_path)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "train: data directory, output and checkpoint paths are required");
    trainer t;
    qmod_dataset train, val;
    memset(&train, 0, sizeof train);
    memset(&val, 0, sizeof val);
    qmod_loader *loader = NULL;
    qmod_work w[QMOD_N_MODALITIES];
    memset(w, 0, sizeof w);
    audio_chunks ac;
    memset(&ac, 0, sizeof ac);
    step_bufs sb;
    memset(&sb, 0, sizeof sb);
    qiao_status st = trainer_init(&t, p);
    if (st == QIAO_OK) st = qmod_dataset_load(p->data_dir, &train);
    if (st == QIAO_OK && p->val_dir) st = qmod_dataset_load(p->val_dir, &val);
    if (st == QIAO_OK && train.n < t.h.batch)
        st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: %lld scenes, fewer than one batch of %lld", p->data_dir,
                      (long long)train.n, (long long)t.h.batch);
    const bool audio = train.n_speech > 0 && t.h.audio_weight > 0;
    if (st == QIAO_OK && !train.has_images && !audio)
        st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: no images and %s: nothing to train", p->data_dir,
                      train.n_speech ? "audio_weight is 0" : "no speech");
    if (st == QIAO_OK && val.n > 0 && !val.has_images)
        st = qc_error(QIAO_ERR_INVALID_ARGUMENT,
                      "%s: validation ranks images and this split has none (evaluate speech-only data after training, "
                      "e.g. with `qiao eval digits`)",
                      p->val_dir);
    const uint32_t absent = (train.has_images ? 0u : 1u << QMOD_IMAGE) | (audio ? 0u : 1u << QMOD_AUDIO);
    const uint32_t towers = ((1u << QMOD_N_MODALITIES) - 1u) & ~absent;
    if (st == QIAO_OK && (towers & ~t.h.freeze) == 0)
        st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "train: every tower that runs is frozen: nothing to train");
    if (st == QIAO_OK) freeze_towers(t.m, t.h.freeze, absent);
    for (int mod = 0; mod < QMOD_N_MODALITIES && st == QIAO_OK; mod++) {
        if (mod == QMOD_IMAGE && !train.has_images) continue;
        if (mod == QMOD_AUDIO)
            st = audio ? audio_chunks_init(&ac, t.m, t.h.batch) : QIAO_OK;
        else
            st = qmod_work_init(&w[mod], t.m, (qmod_modality)mod, t.h.batch, 16, true);
    }
    if (st == QIAO_OK) st = step_bufs_init(&sb, t.h.batch, t.m->cfg.embed_dim);
    if (st == QIAO_OK) {
        qmod_loader_params lp = {.model = t.m,
                                 .data = &train,
                                 .batch = t.h.batch,
                                 .seed = t.h.seed,
                                 .threads = p->loader_threads > 0 ? p->loader_threads : 1,
                                 .prefetch = 4,
                                 .first_batch = t.step,
                                 .audio = audio,
                                 .place_groups = t.h.place_groups};
        st = qmod_loader_start(&lp, &loader);
    }
    if (st == QIAO_OK)
        qc_log(QIAO_LOG_INFO,
               "train: %s, %lld parameters, %lld scenes (%lld with speech%s), batch %lld, steps %lld from %lld",
               t.m->cfg.name, (long long)qmod_param_count(t.m, NULL), (long long)train.n, (long long)train.n_speech,
               train.has_images ? "" : ", no images: audio-text only", (long long)t.h.batch, (long long)t.h.steps,
               (long long)t.step);
    const double t0 = qc_now();
    const int64_t step0 = t.step;
    bool cancelled = false;
    while (st == QIAO_OK && t.step < t.h.steps && !cancelled) {
        qmod_train_batch *b = NULL;
        st = qmod_loader_next(loader, &b);
        if (st != QIAO_OK) break;
        qmod_train_log log;
        memset(&log, 0, sizeof log);
        log.val_t2i_r1 = log.val_i2t_r1 = log.val_a2i_r1 = log.val_a2t_r1 = NAN;
        st = train_step(&t, w, &ac, &sb, b, &log);
        qmod_loader_release(loader, b);
        if (st != QIAO_OK) break;
        const bool last = t.step == t.h.steps;
        if (val.n > 0 && ((t.h.eval_every > 0 && t.step % t.h.eval_every == 0) || last)) validate(&t, &val, &log);
        const double elapsed = qc_now() - t0;
        log.steps = t.h.steps;
        log.seconds = t.seconds_before + elapsed;
        log.samples_per_s = (double)((t.step - step0) * t.h.batch) / elapsed;
        if (p->on_step && p->on_step(&log, p->user)) cancelled = true;
        if (cancelled || last || (t.h.ckpt_every > 0 && t.step % t.h.ckpt_every == 0))
            st = save_checkpoint(&t, log.seconds);
    }
    qmod_loader_stop(loader);
    if (st == QIAO_OK && cancelled)
        st = qc_error(QIAO_ERR_CANCELLED, "training stopped at step %lld; resume from %s", (long long)t.step,
                      p->ckpt_path);
    if (st == QIAO_OK) st = qmod_save(t.m, p->out_path, QIAO_DTYPE_BF16);
    free(sb.all);
    for (int mod = 0; mod < QMOD_N_MODALITIES; mod++) qmod_work_free(&w[mod]);
    audio_chunks_free(&ac);
    qmod_dataset_free(&train);
    qmod_dataset_free(&val);
    trainer_free(&t);
    return st;
}
