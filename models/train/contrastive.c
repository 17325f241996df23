/* models/train/contrastive.c - the contrastive objective (see train.h) on the
 * trainer (trainer.h).
 *
 * One step on a batch of B scenes (A of them with speech):
 *   e_T = text(captions), e_I = image(pictures), e_A = audio(speech)
 *   loss = InfoNCE(e_T, e_I) + w_a (InfoNCE(e_A, e_T[rows]) + InfoNCE(e_A, e_I[rows]))
 * each InfoNCE symmetric with its own learnable temperature; then the
 * encoders' backward from the accumulated embedding gradients. The trainer
 * clips, schedules and applies AdamW. Without images (an image-less data
 * set) the step is loss = w_a InfoNCE(e_A, e_T[rows]).
 *
 * Checkpoints are model files (f32, tokenizer inside, so `qiao eval` reads
 * them) with the trainer's AdamW moments as extra tensors "optim.m.<name>",
 * "optim.v.<name>" and its metadata "qiao.train" (step, wall time,
 * hyperparameters). Batches are a pure function of (seed, step), so a run
 * resumed from a checkpoint continues exactly as the uninterrupted run. */
#include "models/train/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "backend/cpu/cpu.h"
#include "models/retrieval/eval.h"
#include "models/train/trainer.h"

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
                            .seed = 1,
                            .beta1 = 0.9f,
                            .beta2 = 0.98f, /* CLIP's: steadier second moments for contrastive losses
                                             * with large batches */
                            .eps = 1e-6f};
    return h;
}

/* The trainer's share of the hyperparameters, and back. */
static qtr_hparams to_trainer(const qmod_train_hparams *h) {
    qtr_hparams q = {.steps = h->steps,
                     .warmup = h->warmup,
                     .restart = h->restart,
                     .lr = h->lr,
                     .lr_min = h->lr_min,
                     .beta1 = h->beta1,
                     .beta2 = h->beta2,
                     .eps = h->eps,
                     .weight_decay = h->weight_decay,
                     .clip = h->clip,
                     .eval_every = h->eval_every,
                     .ckpt_every = h->ckpt_every};
    return q;
}

static void from_trainer(qmod_train_hparams *h, const qtr_hparams *q) {
    h->steps = q->steps;
    h->warmup = q->warmup;
    h->restart = q->restart;
    h->lr = q->lr;
    h->lr_min = q->lr_min;
    h->beta1 = q->beta1;
    h->beta2 = q->beta2;
    h->eps = q->eps;
    h->weight_decay = q->weight_decay;
    h->clip = q->clip;
    h->eval_every = q->eval_every;
    h->ckpt_every = q->ckpt_every;
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
        qtr_hparams q = to_trainer(&h);
        bool known = false;
        if ((st = qtr_hparams_key(it, &q, &known)) != QIAO_OK || known) {
            from_trainer(&h, &q);
        } else if (!strcmp(k, "batch")) {
            if ((st = qtr_json_number(it, 2, 65536, true, &v)) == QIAO_OK) h.batch = (int64_t)v;
        } else if (!strcmp(k, "eval_pool")) {
            if ((st = qtr_json_number(it, 1, 1e7, true, &v)) == QIAO_OK) h.eval_pool = (int64_t)v;
        } else if (!strcmp(k, "audio_weight")) {
            if ((st = qtr_json_number(it, 0, 100, false, &v)) == QIAO_OK) h.audio_weight = (float)v;
        } else if (!strcmp(k, "freeze")) {
            st = freeze_from_json(it, &h.freeze);
        } else if (!strcmp(k, "place_groups")) {
            if ((st = qtr_json_number(it, 0, 1024, true, &v)) == QIAO_OK) h.place_groups = (int64_t)v;
        } else if (!strcmp(k, "seed")) {
            if ((st = qtr_json_number(it, 0, 9007199254740991.0, true, &v)) == QIAO_OK) h.seed = (uint64_t)v;
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
    char *cfg = NULL;
    qiao_status st = qtr_checkpoint_info(path, step, NULL);
    /* the config's form, so one parser checks both */
    if (st == QIAO_OK) st = qtr_checkpoint_recipe(path, &cfg);
    if (st == QIAO_OK) st = qmod_train_hparams_from_config(cfg, out);
    free(cfg);
    return st;
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

/* ---- the objective ------------------------------------------------------------------ */

enum { M_LOSS = 0, M_SCALE = QMOD_N_PAIRS, N_METRICS = 2 * QMOD_N_PAIRS };
enum { V_T2I, V_I2T, V_A2I, V_A2T, N_VAL };

/* The CSV's columns, in the order `qiao train` has always written them. */
static const char *const k_metric_names[N_METRICS] = {"loss_text_image",  "loss_audio_text",  "loss_audio_image",
                                                      "scale_text_image", "scale_audio_text", "scale_audio_image"};
static const char *const k_val_names[N_VAL] = {"val_t2i_r1", "val_i2t_r1", "val_a2i_r1", "val_a2t_r1"};
static const char *const k_pair_names[QMOD_N_PAIRS] = {"text-image", "audio-text", "audio-image"};

typedef struct contrastive {
    const qmod_train_params *p;
    qmod_train_hparams h;
    qmod_model *m;
    qmod_dataset train, val;
    bool audio;                          /* speech runs: the data has it and audio_weight > 0 */
    qmod_loader *loader;                 /* started by the first next_batch, at the run's step */
    qmod_train_batch *b;                 /* this step's batch, until the step releases it */
    qmod_work w[QMOD_N_MODALITIES];      /* text and image workspaces (audio runs in chunks) */
    audio_chunks ac;
    step_bufs sb;
    qmod_params g;                       /* bound to the trainer's gradient arena */
    float *g_bound;
    /* the on_step adapter */
    qmod_train_log log;
} contrastive;

static qiao_status c_next_batch(void *user, int64_t step) {
    contrastive *c = user;
    if (!c->loader) {
        qmod_loader_params lp = {.model = c->m,
                                 .data = &c->train,
                                 .batch = c->h.batch,
                                 .seed = c->h.seed,
                                 .threads = c->p->loader_threads > 0 ? c->p->loader_threads : 1,
                                 .prefetch = 4,
                                 .first_batch = step,
                                 .audio = c->audio,
                                 .place_groups = c->h.place_groups};
        qiao_status st = qmod_loader_start(&lp, &c->loader);
        if (st != QIAO_OK) return st;
        qc_log(QIAO_LOG_INFO,
               "train: %s, %lld parameters, %lld scenes (%lld with speech%s), batch %lld, steps %lld from %lld",
               c->m->cfg.name, (long long)qmod_param_count(c->m, NULL), (long long)c->train.n,
               (long long)c->train.n_speech, c->train.has_images ? "" : ", no images: audio-text only",
               (long long)c->h.batch, (long long)c->h.steps, (long long)step);
    }
    return qmod_loader_next(c->loader, &c->b);
}

/* Forward, losses and backward of one batch into the trainer's gradients. */
static qiao_status c_step_batch(contrastive *c, const qtr_step_ctx *ctx, float *total, float *metrics) {
    const qb_exec *ex = ctx->ex;
    qmod_model *m = c->m;
    const qmod_train_batch *b = c->b;
    step_bufs *s = &c->sb;
    audio_chunks *ac = &c->ac;
    qmod_work *w = c->w;
    const int64_t B = b->B, A = b->A, D = m->cfg.embed_dim;
    const bool audio = A >= 2 && c->h.audio_weight > 0;
    const bool images = b->image.B > 0; /* false: an image-less data set, audio-text only */
    if (!images && !audio)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "step %lld: a batch without images needs at least 2 clips and audio_weight > 0 (has %lld, %g)",
                        (long long)(ctx->step + 1), (long long)A, (double)c->h.audio_weight);
    if (c->g_bound != ctx->grads) {
        qc_table_bind(&m->tab, ctx->grads, &c->g);
        c->g_bound = ctx->grads;
    }
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
    const float wa = c->h.audio_weight;
    for (int i = 0; i < QMOD_N_PAIRS; i++)
        if (!isfinite(loss[i]))
            return qc_error(QIAO_ERR_INTERNAL, "step %lld: the %s loss is not finite (%g); lower the learning rate",
                            (long long)(ctx->step + 1), k_pair_names[i], (double)loss[i]);

    if (images)
        nn_infonce_backward(ex, s->demb[QMOD_TEXT], s->demb[QMOD_IMAGE], c->g.logit_scale[QMOD_PAIR_TEXT_IMAGE], 1.0f,
                            &s->nce[QMOD_PAIR_TEXT_IMAGE], e[QMOD_TEXT], e[QMOD_IMAGE],
                            m->p.logit_scale[QMOD_PAIR_TEXT_IMAGE], B, D);
    if (audio) {
        memset(s->dsel_t, 0, (size_t)(A * D) * sizeof(float));
        memset(s->dsel_i, 0, (size_t)(A * D) * sizeof(float));
        nn_infonce_backward(ex, s->demb[QMOD_AUDIO], s->dsel_t, c->g.logit_scale[QMOD_PAIR_AUDIO_TEXT], wa,
                            &s->nce[QMOD_PAIR_AUDIO_TEXT], e[QMOD_AUDIO], s->sel_t,
                            m->p.logit_scale[QMOD_PAIR_AUDIO_TEXT], A, D);
        if (images)
            nn_infonce_backward(ex, s->demb[QMOD_AUDIO], s->dsel_i, c->g.logit_scale[QMOD_PAIR_AUDIO_IMAGE], wa,
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
        if (!run[mod] || (c->h.freeze >> mod) & 1u) continue; /* frozen: its parameter gradients are not used */
        if (mod == QMOD_AUDIO)
            audio_chunks_backward(ex, m, &c->g, ac, s->demb[mod]);
        else
            qmod_backward(ex, m, &c->g, &w[mod], in[mod], s->demb[mod]);
    }

    *total = loss[0] + (audio ? wa * (loss[1] + loss[2]) : 0.0f); /* skipped pairs hold 0 */
    const bool trained[QMOD_N_PAIRS] = {images, audio, audio && images};
    for (int i = 0; i < QMOD_N_PAIRS; i++) metrics[M_LOSS + i] = trained[i] ? loss[i] : NAN;
    return QIAO_OK;
}

static qiao_status c_step(void *user, const qtr_step_ctx *ctx, float *loss, float *metrics) {
    contrastive *c = user;
    qiao_status st = c_step_batch(c, ctx, loss, metrics);
    qmod_loader_release(c->loader, c->b);
    c->b = NULL;
    return st;
}

/* The temperatures the update left, as the scales the losses used (clamped). */
static void c_after_update(void *user, float *metrics) {
    const contrastive *c = user;
    for (int i = 0; i < QMOD_N_PAIRS; i++) {
        if (!c->m->p.logit_scale[i]) continue; /* a pair the model lacks (CLIP: the audio ones) */
        float ls = c->m->p.logit_scale[i][0];
        if (ls > NN_INFONCE_MAX_LOGIT_SCALE) ls = NN_INFONCE_MAX_LOGIT_SCALE;
        if (ls < 0) ls = 0;
        metrics[M_SCALE + i] = expf(ls);
    }
}

static qiao_status c_validate(void *user, const qb_exec *ex, float *val) {
    contrastive *c = user;
    qmod_eval_params ep = qmod_eval_default_params();
    ep.pool = c->h.eval_pool;
    ep.audio = ep.audio && qmod_has_tower(&c->m->cfg, QMOD_AUDIO);
    qmod_retrieval r;
    qiao_status st = qmod_eval_retrieval(ex, c->m, &c->val, &ep, &r);
    if (st != QIAO_OK) return st;
    val[V_T2I] = (float)r.mean[QMOD_T2I][QMOD_R1];
    val[V_I2T] = (float)r.mean[QMOD_I2T][QMOD_R1];
    val[V_A2I] = (float)r.mean[QMOD_A2I][QMOD_R1];
    val[V_A2T] = (float)r.mean[QMOD_A2T][QMOD_R1];
    return QIAO_OK;
}

/* A checkpoint is a model file, so `qiao eval` and --init read it as one. */
static qiao_status c_save(void *user, const char *path, const qc_st_entry *extra, size_t n_extra,
                          const qc_st_kv *meta, size_t n_meta) {
    const contrastive *c = user;
    return qmod_save_ex(c->m, path, QIAO_DTYPE_F32, extra, n_extra, meta, n_meta);
}

/* The objective's keys of the checkpoint's "qiao.train" (the trainer writes its own). */
static void c_hparams_json(void *user, cJSON *o) {
    const qmod_train_hparams *h = &((const contrastive *)user)->h;
    cJSON_AddNumberToObject(o, "batch", (double)h->batch);
    cJSON_AddNumberToObject(o, "eval_pool", (double)h->eval_pool);
    cJSON_AddNumberToObject(o, "audio_weight", h->audio_weight);
    cJSON_AddNumberToObject(o, "seed", (double)h->seed);
    if (h->place_groups > 1) cJSON_AddNumberToObject(o, "place_groups", (double)h->place_groups);
    if (h->freeze) {
        cJSON *f = cJSON_AddArrayToObject(o, "freeze");
        for (int m = 0; m < QMOD_N_MODALITIES; m++)
            if (h->freeze & (1u << m)) cJSON_AddItemToArray(f, cJSON_CreateString(qmod_modality_name((qmod_modality)m)));
    }
}

/* qtr_log -> the qmod_train_log the caller's on_step reads. */
static int c_on_step(const qtr_log *l, void *user) {
    contrastive *c = user;
    qmod_train_log *o = &c->log;
    memset(o, 0, sizeof *o);
    o->step = l->step;
    o->steps = l->steps;
    o->seconds = l->seconds;
    o->lr = l->lr;
    o->loss = l->loss;
    for (int i = 0; i < QMOD_N_PAIRS; i++) {
        o->loss_pair[i] = l->metrics[M_LOSS + i];
        o->scale[i] = l->metrics[M_SCALE + i];
    }
    o->grad_norm = l->grad_norm;
    o->samples_per_s = l->samples_per_s;
    o->val_t2i_r1 = l->val[V_T2I];
    o->val_i2t_r1 = l->val[V_I2T];
    o->val_a2i_r1 = l->val[V_A2I];
    o->val_a2t_r1 = l->val[V_A2T];
    o->eta_s = l->eta_s;
    return c->p->on_step ? c->p->on_step(o, c->p->user) : 0;
}

/* ---- the run ------------------------------------------------------------------------ */

static void contrastive_free(contrastive *c) {
    if (c->b) qmod_loader_release(c->loader, c->b);
    qmod_loader_stop(c->loader);
    free(c->sb.all);
    for (int mod = 0; mod < QMOD_N_MODALITIES; mod++) qmod_work_free(&c->w[mod]);
    audio_chunks_free(&c->ac);
    qmod_dataset_free(&c->train);
    qmod_dataset_free(&c->val);
    qmod_free(c->m);
}

/* Builds the model: fresh from config + tokenizer, from a model to
 * fine-tune, or loaded from a checkpoint (whose moments and step the
 * trainer reads). */
static qiao_status model_init(contrastive *c, const qmod_train_params *p) {
    qiao_status st;
    if (p->resume_path) {
        st = qmod_load(p->resume_path, &c->m);
        if (st == QIAO_OK && !c->m->tok)
            st = qc_error(QIAO_ERR_FORMAT, "%s: checkpoint without a tokenizer", p->resume_path);
    } else if (p->init_path) {
        /* Fine-tuning: the model file is the whole starting point; a second
         * config or tokenizer could only disagree with it. */
        if (p->config_path || p->tokenizer_path)
            return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                            "train: %s brings its own config and tokenizer; give no config or tokenizer with it",
                            p->init_path);
        st = qmod_load(p->init_path, &c->m);
        if (st == QIAO_OK && !c->m->tok)
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
        if (st == QIAO_OK) st = qmod_create(&cfg, c->h.seed, &c->m);
        if (st == QIAO_OK) {
            c->m->tok = tok;
            tok = NULL;
        }
        qiao_tokenizer_free(tok);
        qmod_config_free(&cfg);
    }
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
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++)
        if ((pairs[k].towers & absent) || (pairs[k].towers & ~mask) == 0) qtr_freeze_prefix(&m->tab, pairs[k].name);
    for (int mod = 0; mod < QMOD_N_MODALITIES; mod++) {
        if (!((mask >> mod) & 1u)) continue;
        char prefix[QMOD_NAME_MAX + 2];
        snprintf(prefix, sizeof prefix, "%s.", qmod_modality_name((qmod_modality)mod));
        qtr_freeze_prefix(&m->tab, prefix);
    }
}

qiao_status qmod_train(const qmod_train_params *p) {
    if (!p || !p->data_dir || !p->out_path || !p->ckpt_path)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "train: data directory, output and checkpoint paths are required");
    contrastive c;
    memset(&c, 0, sizeof c);
    c.p = p;
    c.h = p->hp;
    qtr_hparams q = to_trainer(&c.h);
    qtr_hparams_finish(&q);
    from_trainer(&c.h, &q);
    qb_exec ex;
    qb_exec_cpu(&ex, p->threads);
    if (p->bf16) {
        /* The portable bf16 path is exact but scalar (tens of times slower
         * than f32): refuse rather than crawl. */
        if (!qb_cpu_gemm_bf16_supported())
            return qc_error(QIAO_ERR_UNSUPPORTED,
                            "train: bf16 precision needs AVX512-BF16 (vdpbf16ps): %s; train in f32 (the default)",
                            qb_cpu_isa_available(QB_ISA_AVX512_BF16) ? "QIAO_ISA or qb_cpu_isa_force caps it"
                                                                     : "this CPU lacks it");
        ex.linear_prec = QB_PREC_BF16;
    }
    qiao_status st = model_init(&c, p);
    /* Every pair of towers the model and the data have trains: all three for
     * qiao's own models; text and image for an imported CLIP, whose
     * missing audio tower is then as a tower the data gives nothing to
     * (its losses and retrieval figures read nan: not measured). */
    bool has[QMOD_N_MODALITIES] = {false, false, false};
    for (int mod = 0; mod < QMOD_N_MODALITIES && st == QIAO_OK; mod++)
        has[mod] = qmod_has_tower(&c.m->cfg, (qmod_modality)mod);
    if (st == QIAO_OK && !has[QMOD_TEXT])
        st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "train: model %s has no text tower; the contrastive objective pairs "
                      "captions with pictures and speech", c.m->cfg.name);
    if (st == QIAO_OK) st = qmod_dataset_load(p->data_dir, &c.train);
    if (st == QIAO_OK && c.train.has_images && !has[QMOD_IMAGE])
        st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "train: %s has pictures and model %s no image tower", p->data_dir,
                      c.m->cfg.name);
    if (st == QIAO_OK && p->val_dir) st = qmod_dataset_load(p->val_dir, &c.val);
    if (st == QIAO_OK && c.train.n < c.h.batch)
        st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: %lld scenes, fewer than one batch of %lld", p->data_dir,
                      (long long)c.train.n, (long long)c.h.batch);
    c.audio = has[QMOD_AUDIO] && c.train.n_speech > 0 && c.h.audio_weight > 0;
    if (st == QIAO_OK && !c.train.has_images && !c.audio)
        st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: no images and %s: nothing to train", p->data_dir,
                      !has[QMOD_AUDIO] ? "the model has no audio tower"
                      : c.train.n_speech ? "audio_weight is 0"
                                         : "no speech");
    if (st == QIAO_OK && c.val.n > 0 && !c.val.has_images)
        st = qc_error(QIAO_ERR_INVALID_ARGUMENT,
                      "%s: validation ranks images and this split has none (evaluate speech-only data after training, "
                      "e.g. with `qiao eval digits`)",
                      p->val_dir);
    const uint32_t absent = (c.train.has_images ? 0u : 1u << QMOD_IMAGE) | (c.audio ? 0u : 1u << QMOD_AUDIO);
    const uint32_t towers = ((1u << QMOD_N_MODALITIES) - 1u) & ~absent;
    if (st == QIAO_OK && (towers & ~c.h.freeze) == 0)
        st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "train: every tower that runs is frozen: nothing to train");
    if (st == QIAO_OK) freeze_towers(c.m, c.h.freeze, absent);
    for (int mod = 0; mod < QMOD_N_MODALITIES && st == QIAO_OK; mod++) {
        if (mod == QMOD_IMAGE && !c.train.has_images) continue;
        if (mod == QMOD_AUDIO)
            st = c.audio ? audio_chunks_init(&c.ac, c.m, c.h.batch) : QIAO_OK;
        else
            st = qmod_work_init(&c.w[mod], c.m, (qmod_modality)mod, c.h.batch, 16, true);
    }
    if (st == QIAO_OK) st = step_bufs_init(&c.sb, c.h.batch, c.m->cfg.embed_dim);
    if (st == QIAO_OK) {
        const qtr_objective obj = {.name = "contrastive",
                                   .tab = &c.m->tab,
                                   .params = c.m->arena.base,
                                   .n_metrics = N_METRICS,
                                   .metric_names = k_metric_names,
                                   .n_val = N_VAL,
                                   .val_names = k_val_names,
                                   .samples_per_step = c.h.batch,
                                   .user = &c,
                                   .next_batch = c_next_batch,
                                   .step = c_step,
                                   .after_update = c_after_update,
                                   .validate = c.val.n > 0 ? c_validate : NULL,
                                   .save = c_save,
                                   .hparams_json = c_hparams_json};
        const qmod_train_hparams dh = hparams_default();
        const qtr_hparams dflt = to_trainer(&dh);
        qtr_params tp = {.hp = q,
                         .ex = &ex,
                         .ckpt_path = p->ckpt_path,
                         .resume_path = p->resume_path,
                         .csv_path = p->log_path,
                         .hp_default = &dflt,
                         .on_step = c_on_step,
                         .user = &c,
                         .stop = p->stop,
                         .prof = p->prof,
                         .prof_skip = p->prof_skip,
                         .prof_roofline_s = p->prof_roofline_s};
        st = qtr_run(&obj, &tp, NULL);
    }
    qmod_loader_stop(c.loader); /* its workers would otherwise keep preparing batches while the model is saved */
    c.loader = NULL;
    if (st == QIAO_OK) st = qmod_save(c.m, p->out_path, QIAO_DTYPE_BF16);
    contrastive_free(&c);
    return st;
}
