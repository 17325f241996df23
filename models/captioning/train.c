/* models/captioning/train.c - the caption objective on the generic trainer
 * (see captioning.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "models/captioning/captioning.h"
#include "nn/nn.h"

/* ---- the recipe ------------------------------------------------------------------ */

static qmod_cap_hparams hparams_default(void) {
    qmod_cap_hparams h;
    memset(&h, 0, sizeof h);
    h.tr = qtr_hparams_default();
    h.tr.steps = 3000;
    h.tr.lr = 5e-4f;
    h.tr.weight_decay = 0.05f;
    h.tr.beta2 = 0.98f;
    h.tr.eps = 1e-6f;
    h.tr.eval_every = 500;
    h.tr.ckpt_every = 100;
    h.batch = 64;
    h.seed = 1;
    h.freeze_image = true;
    h.smoothing = 0.1f;
    h.eval_scenes = 500;
    return h;
}

qiao_status qmod_cap_hparams_from_json(const char *recipe_json, const char *what, qmod_cap_hparams *out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_cap_hparams_from_json: out is NULL");
    *out = hparams_default();
    if (!what) what = "recipe";
    cJSON *root = recipe_json ? cJSON_Parse(recipe_json) : NULL;
    if (recipe_json && !root) return qc_error(QIAO_ERR_FORMAT, "%s: not valid JSON", what);
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(root, "train");
    qiao_status st = QIAO_OK;
    if (tr && !cJSON_IsObject(tr)) st = qc_error(QIAO_ERR_FORMAT, "%s: key \"train\" must be an object", what);
    qmod_cap_hparams h = *out;
    for (const cJSON *it = tr ? tr->child : NULL; st == QIAO_OK && it; it = it->next) {
        const char *k = it->string;
        double v = 0;
        bool known = false;
        if ((st = qtr_hparams_key(it, &h.tr, &known)) != QIAO_OK || known) continue;
        if (!strcmp(k, "batch")) {
            if ((st = qtr_json_number(it, 1, 65536, true, &v)) == QIAO_OK) h.batch = (int64_t)v;
        } else if (!strcmp(k, "seed")) {
            if ((st = qtr_json_number(it, 0, 9007199254740991.0, true, &v)) == QIAO_OK) h.seed = (uint64_t)v;
        } else if (!strcmp(k, "smoothing")) {
            if ((st = qtr_json_number(it, 0, 0.5, false, &v)) == QIAO_OK) h.smoothing = (float)v;
        } else if (!strcmp(k, "eval_scenes")) {
            if ((st = qtr_json_number(it, 1, 1e7, true, &v)) == QIAO_OK) h.eval_scenes = (int64_t)v;
        } else if (!strcmp(k, "freeze_image")) {
            if (!cJSON_IsBool(it))
                st = qc_error(QIAO_ERR_FORMAT, "recipe: train.freeze_image must be true or false");
            else
                h.freeze_image = cJSON_IsTrue(it);
        } else {
            st = qc_error(QIAO_ERR_FORMAT, "recipe: unknown key train.%s", k);
        }
    }
    cJSON_Delete(root);
    if (st != QIAO_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", qiao_last_error());
        return qc_error(st, "%s: %s", what, msg);
    }
    *out = h;
    return QIAO_OK;
}

void qmod_cap_teacher(const qmod_config *cfg, const qmod_batch *text, const uint8_t *lang, int32_t *in, int32_t *target,
                      int64_t *T_out) {
    const int64_t B = text->B, T = text->T, Tm = cfg->decoder.max_len, To = T + 1 < Tm ? T + 1 : Tm;
    const int32_t eos = qmod_dec_eos(cfg);
    for (int64_t b = 0; b < B; b++) {
        const int64_t n = text->lengths[b];
        int32_t *ib = in + b * To, *tb = target + b * To;
        ib[0] = qmod_dec_bos(cfg, lang[b]);
        for (int64_t t = 1; t < To; t++) ib[t] = t - 1 < n ? text->ids[b * T + t - 1] : eos;
        for (int64_t t = 0; t < To; t++) tb[t] = t < n ? text->ids[b * T + t] : t == n ? eos : -1;
    }
    *T_out = To;
}

/* ---- the model ------------------------------------------------------------------- */

/* The base model's config with the recipe's decoder section. */
static qiao_status cap_config(const qmod_model *base, const char *recipe_json, qmod_config *out) {
    cJSON *root = cJSON_Parse(base->cfg.json), *recipe = cJSON_Parse(recipe_json);
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(recipe, "decoder");
    qiao_status st = QIAO_OK;
    if (!root || !recipe) st = qc_error(QIAO_ERR_FORMAT, "caption: the model's config or the recipe is not valid JSON");
    if (st == QIAO_OK && !cJSON_IsObject(dec)) st = qc_error(QIAO_ERR_FORMAT, "caption recipe: no \"decoder\" object");
    if (st == QIAO_OK) {
        char name[QMOD_NAME_MAX];
        snprintf(name, sizeof name, "%.*s%s", QMOD_NAME_MAX - 9, base->cfg.name,
                 base->cfg.has_decoder ? "" : "-caption");
        cJSON_ReplaceItemInObjectCaseSensitive(root, "name", cJSON_CreateString(name));
        cJSON_DeleteItemFromObjectCaseSensitive(root, "decoder");
        cJSON_DeleteItemFromObjectCaseSensitive(root, "train");
        cJSON_AddItemToObject(root, "decoder", cJSON_Duplicate(dec, true));
        const cJSON *rtrain = cJSON_GetObjectItemCaseSensitive(recipe, "train");
        if (rtrain) cJSON_AddItemToObject(root, "train", cJSON_Duplicate(rtrain, true));
        char *json = cJSON_PrintUnformatted(root);
        st = json ? qmod_config_from_string(json, "caption config", out)
                  : qc_error(QIAO_ERR_OUT_OF_MEMORY, "caption: out of memory");
        cJSON_free(json);
    }
    cJSON_Delete(root);
    cJSON_Delete(recipe);
    return st;
}

/* ---- the objective ------------------------------------------------------------------ */

enum { M_TOKEN_ACC = 0, N_METRICS };
static const char *const k_metric_names[N_METRICS] = {"train_token_acc"};
enum { V_LOSS = 0, V_TOKEN_ACC, N_VAL };
static const char *const k_val_names[N_VAL] = {"val_loss", "val_token_acc"};

typedef struct cap_obj {
    const qmod_cap_train_params *p;
    qmod_cap_hparams h;
    qmod_model *m;
    qmod_dataset train, val;
    qmod_loader *loader;
    qmod_train_batch *b;
    qmod_work img; /* the image tower's activations */
    qc_table at;   /* the decoder's activations, sized for (batch, max_len) */
    qc_arena acts, dacts;
    qf_decoder_acts a, da;
    qmod_params g;
    float *g_bound;
    int32_t *in, *target;            /* (B, max_len) */
    float *losses, *probs, *dlogits; /* (B*max_len), (B*max_len, V) x2 */
    float *dtok;                     /* (B, P, C) the patches' gradient, when the tower trains through places */
    float *dctx;                     /* (B, Ty, C) the context's gradient, when the tower trains */
    qmod_places pl;                  /* the picture's places (decoder.places) */
    int64_t Ty;                      /* context tokens per picture */
    /* With the tower frozen, each training picture's context is computed
     * once, before the first step, and kept (models/picture.h). */
    bool use_memo;
    qmod_memo memo;
    const qb_exec *ex; /* the run's, for the memo's fill */
} cap_obj;

static qiao_status obj_buffers(cap_obj *o) {
    const qmod_config *c = &o->m->cfg;
    const int64_t B = o->h.batch, T = c->decoder.max_len, V = c->decoder.vocab, P = c->image.tokens,
                  G = c->decoder.places, Ty = G > 0 ? G * G : P, C = c->decoder.ctx_width;
    o->Ty = Ty;
    qc_table_init_empty(&o->at);
    qiao_status st = qf_decoder_describe_acts(&o->at, "decoder.", &c->decoder, B, T, Ty, 0);
    if (st == QIAO_OK) st = qc_arena_alloc(&o->acts, o->at.total);
    if (st == QIAO_OK) st = qc_arena_alloc(&o->dacts, o->at.total);
    if (st != QIAO_OK) return st;
    qc_table_bind(&o->at, o->acts.base, &o->a);
    qc_table_bind(&o->at, o->dacts.base, &o->da);
    const size_t n = (size_t)(B * T);
    if (!(o->in = malloc(n * sizeof(int32_t))) || !(o->target = malloc(n * sizeof(int32_t))) ||
        !(o->losses = malloc(n * sizeof(float))) || !(o->probs = malloc(n * (size_t)V * sizeof(float))) ||
        !(o->dlogits = malloc(n * (size_t)V * sizeof(float))) ||
        (!o->h.freeze_image && ((G > 0 && !(o->dtok = malloc((size_t)(B * P * C) * sizeof(float)))) ||
                                !(o->dctx = malloc((size_t)(B * Ty * C) * sizeof(float))))))
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "caption train: out of memory");
    /* a memo larger than QMOD_MEMO_MAX, or one that cannot be had, is
       skipped: the tower then runs every step, which is slower, not wrong */
    if (o->h.freeze_image && !o->p->no_memo) {
        const qiao_status ms = qmod_memo_init(&o->memo, o->train.n, Ty, C, QMOD_MEMO_MAX);
        if (ms != QIAO_OK && ms != QIAO_ERR_TOO_LARGE && ms != QIAO_ERR_OUT_OF_MEMORY) return ms;
        o->use_memo = ms == QIAO_OK;
    }
    qc_log(QIAO_LOG_INFO, "caption train: %s (%.0f MiB for %lld pictures)",
           o->use_memo ? "the frozen picture tower's context is kept per picture"
                       : "no memo of the pictures' context: the tower runs every step",
           qmod_memo_bytes(o->train.n, Ty, C) / 1048576.0, (long long)o->train.n);
    return qmod_work_init(&o->img, o->m, QMOD_IMAGE, B, 0, !o->h.freeze_image);
}

/* The pictures' context: the image tower, its tokens, their places. */
static qiao_status picture_context(cap_obj *o, const qb_exec *ex, const qmod_batch *pictures, const float **ctx,
                                   int64_t *Ty) {
    const float *emb;
    qmod_token_seq seq;
    qiao_status st = qmod_forward(ex, o->m, &o->img, pictures, &emb);
    if (st == QIAO_OK) st = qmod_tokens(o->m, &o->img, pictures, &seq);
    if (st == QIAO_OK) st = qmod_cap_context(o->m, &seq, &o->pl, ctx, Ty);
    if (st == QIAO_OK) st = ex->ops->sync(ex);
    return st;
}

static const char *memo_path(void *user, int64_t i) {
    const cap_obj *o = user;
    return o->train.scenes[i].image;
}

static qiao_status memo_tokens(void *user, const qmod_batch *pictures, const float **tok) {
    cap_obj *o = user;
    int64_t Ty = 0;
    return picture_context(o, o->ex, pictures, tok, &Ty);
}

/* Teacher-forced loss and token accuracy of the batch's captions; with
 * `train` the gradients too. */
static qiao_status run_batch(cap_obj *o, const qb_exec *ex, const qmod_train_batch *b, bool train, float *loss,
                             int64_t *right, int64_t *n_tokens) {
    const qmod_model *m = o->m;
    const qmod_config *c = &m->cfg;
    const int64_t B = b->B, V = c->decoder.vocab;
    if (B > o->h.batch) return qc_error(QIAO_ERR_INTERNAL, "caption: a batch of %lld rows", (long long)B);
    const float *ctx = NULL;
    const int64_t C = c->decoder.ctx_width;
    int64_t Ty = o->Ty;
    qiao_status st = QIAO_OK;
    /* the memo serves training batches only (validation's rows are not the training split's) */
    const qmod_memo_rows rows = {.B = B, .picture = b->scene};
    if (o->use_memo && b->scene) ctx = qmod_memo_read(&o->memo, &rows, &st);
    if (st != QIAO_OK) return st;
    if (!ctx) {
        if ((st = picture_context(o, ex, &b->image, &ctx, &Ty)) != QIAO_OK) return st;
        if (o->use_memo && b->scene) qmod_memo_write(&o->memo, &rows, ctx);
    }
    int64_t T = 0;
    qmod_cap_teacher(c, &b->text, b->text_lang, o->in, o->target, &T);
    qf_decoder_forward(ex, &o->a, &m->p.decoder, o->in, ctx, NULL, &c->decoder, B, T, Ty);
    nn_cross_entropy_forward(ex, loss, o->losses, o->probs, o->a.logits, o->target, B * T, V, o->h.smoothing, -1);
    if ((st = ex->ops->sync(ex)) != QIAO_OK) return st;
    if (!isfinite(*loss)) return qc_error(QIAO_ERR_INTERNAL, "the caption loss is not finite; lower the learning rate");
    *right = 0, *n_tokens = 0;
    for (int64_t i = 0; i < B * T; i++) {
        if (o->target[i] < 0) continue;
        const float *l = o->a.logits + i * V;
        int64_t best = 0;
        for (int64_t k = 1; k < V; k++)
            if (l[k] > l[best]) best = k;
        *right += best == o->target[i];
        (*n_tokens)++;
    }
    if (!train) return QIAO_OK;
    memset(o->dlogits, 0, (size_t)(B * T * V) * sizeof(float));
    nn_cross_entropy_backward(ex, o->dlogits, 1.0f, o->probs, o->target, B * T, V, o->h.smoothing, -1);
    qc_arena_zero(&o->dacts);
    float *dctx = o->h.freeze_image ? NULL : o->dctx;
    if (dctx) memset(dctx, 0, (size_t)(B * Ty * C) * sizeof(float));
    qf_decoder_backward(ex, dctx, &o->g.decoder, &o->da, o->dlogits, &o->a, &m->p.decoder, o->in, ctx, &c->decoder, B,
                        T, Ty);
    if (dctx) {
        if ((st = ex->ops->sync(ex)) != QIAO_OK) return st;
        const int64_t G = c->decoder.places, P = c->image.tokens;
        if (G > 0) { /* from the places back to the patches they were pooled from */
            memset(o->dtok, 0, (size_t)(B * P * C) * sizeof(float));
            qmod_places_backward(&o->pl, dctx, o->dtok, B, P, G, C);
            dctx = o->dtok;
        }
        qmod_backward_at(ex, m, &o->g, &o->img, &b->image, NULL, dctx);
    }
    return QIAO_OK;
}

static qiao_status o_next_batch(void *user, int64_t step) {
    cap_obj *o = user;
    if (!o->loader) {
        qmod_loader_params lp = {.model = o->m,
                                 .data = &o->train,
                                 .batch = o->h.batch,
                                 .seed = o->h.seed,
                                 .threads = o->p->loader_threads > 0 ? o->p->loader_threads : 1,
                                 .prefetch = 4,
                                 .first_batch = step,
                                 .audio = false};
        qiao_status st = qmod_loader_start(&lp, &o->loader);
        if (st != QIAO_OK) return st;
        qc_log(QIAO_LOG_INFO, "caption train: %s, %lld scenes, batch %lld, steps %lld from %lld", o->m->cfg.name,
               (long long)o->train.n, (long long)o->h.batch, (long long)o->h.tr.steps, (long long)step);
    }
    return qmod_loader_next(o->loader, &o->b);
}

static qiao_status o_step(void *user, const qtr_step_ctx *ctx, float *loss, float *metrics) {
    cap_obj *o = user;
    if (o->g_bound != ctx->grads) {
        qc_table_bind(&o->m->tab, ctx->grads, &o->g);
        o->g_bound = ctx->grads;
    }
    int64_t right = 0, n = 0;
    qiao_status st = run_batch(o, ctx->ex, o->b, true, loss, &right, &n);
    metrics[M_TOKEN_ACC] = n ? (float)right / (float)n : NAN;
    qmod_loader_release(o->loader, o->b);
    o->b = NULL;
    return st;
}

/* The validation split's first eval_scenes scenes, each in both languages. */
static qiao_status o_validate(void *user, const qb_exec *ex, float *val) {
    cap_obj *o = user;
    const int64_t n = o->val.n < o->h.eval_scenes ? o->val.n : o->h.eval_scenes;
    double loss_sum = 0.0;
    int64_t right = 0, tokens = 0;
    qiao_status st = QIAO_OK;
    for (int lang = 0; lang < QMOD_N_LANGS && st == QIAO_OK; lang++)
        for (int64_t s0 = 0; s0 < n && st == QIAO_OK; s0 += o->h.batch) {
            const int64_t B = n - s0 < o->h.batch ? n - s0 : o->h.batch;
            qmod_train_batch b;
            memset(&b, 0, sizeof b);
            const char **caps = malloc((size_t)B * sizeof *caps);
            qiao_image **imgs = calloc((size_t)B, sizeof *imgs);
            uint8_t *langs = malloc((size_t)B);
            if (!caps || !imgs || !langs) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "caption validation: out of memory");
            for (int64_t i = 0; i < B && st == QIAO_OK; i++) {
                const qmod_scene *sc = &o->val.scenes[s0 + i];
                caps[i] = sc->caption[lang] ? sc->caption[lang] : "";
                langs[i] = (uint8_t)lang;
                st = qiao_image_decode_file(sc->image, NULL, &imgs[i]);
            }
            if (st == QIAO_OK) st = qmod_batch_text(o->m, caps, (size_t)B, &b.text);
            if (st == QIAO_OK) st = qmod_batch_images(o->m, (const qiao_image *const *)imgs, (size_t)B, &b.image);
            b.B = B, b.text_lang = langs;
            float loss = 0.0f;
            int64_t r = 0, t = 0;
            if (st == QIAO_OK) st = run_batch(o, ex, &b, false, &loss, &r, &t);
            if (st == QIAO_OK) loss_sum += (double)loss * (double)t, right += r, tokens += t;
            for (int64_t i = 0; imgs && i < B; i++) qiao_image_free(imgs[i]);
            qmod_batch_free(&b.text), qmod_batch_free(&b.image);
            free(caps), free(imgs), free(langs);
        }
    val[V_LOSS] = tokens ? (float)(loss_sum / (double)tokens) : NAN;
    val[V_TOKEN_ACC] = tokens ? (float)right / (float)tokens : NAN;
    return st;
}

static qiao_status o_save(void *user, const char *path, const qc_st_entry *extra, size_t n_extra, const qc_st_kv *meta,
                          size_t n_meta) {
    const cap_obj *o = user;
    return qmod_save_ex(o->m, path, QIAO_DTYPE_F32, extra, n_extra, meta, n_meta);
}

static void o_hparams_json(void *user, cJSON *obj) {
    const qmod_cap_hparams *h = &((const cap_obj *)user)->h;
    cJSON_AddNumberToObject(obj, "batch", (double)h->batch);
    cJSON_AddNumberToObject(obj, "seed", (double)h->seed);
    cJSON_AddNumberToObject(obj, "smoothing", h->smoothing);
    cJSON_AddBoolToObject(obj, "freeze_image", h->freeze_image);
    cJSON_AddNumberToObject(obj, "eval_scenes", (double)h->eval_scenes);
}

static void obj_free(cap_obj *o) {
    if (o->b) qmod_loader_release(o->loader, o->b);
    qmod_loader_stop(o->loader);
    qmod_work_free(&o->img);
    qc_arena_free(&o->acts), qc_arena_free(&o->dacts);
    qc_table_free(&o->at);
    qmod_dataset_free(&o->train), qmod_dataset_free(&o->val);
    free(o->in), free(o->target), free(o->losses), free(o->probs), free(o->dlogits), free(o->dtok), free(o->dctx);
    qmod_memo_free(&o->memo);
    qmod_places_free(&o->pl);
    qmod_free(o->m);
}

static qiao_status model_init(cap_obj *o, const qmod_cap_train_params *p) {
    if (p->resume_path) return qmod_load(p->resume_path, &o->m);
    if (!p->init_path)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "caption train: give the model to start from (--init)");
    qmod_model *base = NULL;
    char *recipe = NULL;
    qiao_status st = qmod_load(p->init_path, &base);
    if (st == QIAO_OK && !base->tok)
        st = qc_error(QIAO_ERR_FORMAT, "%s: a model without a tokenizer cannot write captions", p->init_path);
    if (st == QIAO_OK && p->recipe_path) st = qtr_recipe_read(p->recipe_path, &recipe);
    /* a caption model fine-tunes as it is, unless the recipe asks for another decoder */
    if (st == QIAO_OK && base->cfg.has_decoder &&
        !(recipe && qtr_recipe_changes(base->cfg.json, recipe, "decoder"))) {
        free(recipe);
        o->m = base;
        return QIAO_OK;
    }
    qmod_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (st == QIAO_OK && !recipe)
        st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "caption train: %s has no decoder; give a recipe (--config)",
                      p->init_path);
    if (st == QIAO_OK) st = cap_config(base, recipe, &cfg);
    if (st == QIAO_OK) st = qmod_create(&cfg, o->h.seed, &o->m);
    if (st == QIAO_OK) st = qmod_copy_shared(o->m, base, NULL);
    if (st == QIAO_OK) {
        o->m->tok = base->tok;
        base->tok = NULL;
        qc_log(QIAO_LOG_INFO, "caption: decoder of %lld parameters on %s",
               (long long)qmod_param_count(o->m, "decoder."), base->cfg.name);
    }
    qmod_config_free(&cfg);
    free(recipe);
    qmod_free(base);
    return st;
}

qiao_status qmod_cap_train(const qmod_cap_train_params *p) {
    if (!p || !p->data_dir || !p->out_path || !p->ckpt_path)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "caption train: data directory, output and checkpoint paths are required");
    cap_obj o;
    memset(&o, 0, sizeof o);
    o.p = p;
    o.h = p->hp;
    qtr_hparams_finish(&o.h.tr);
    qb_exec ex;
    qb_exec_cpu(&ex, p->threads);
    qiao_status st = model_init(&o, p);
    if (st == QIAO_OK && !o.m->cfg.has_decoder)
        st = qc_error(QIAO_ERR_UNSUPPORTED, "caption train: model %s has no decoder", o.m->cfg.name);
    if (st == QIAO_OK) st = qmod_dataset_load(p->data_dir, &o.train);
    if (st == QIAO_OK && !o.train.has_images)
        st = qc_error(QIAO_ERR_FORMAT, "%s: a data set without pictures has nothing to caption", p->data_dir);
    if (st == QIAO_OK && p->val_dir) st = qmod_dataset_load(p->val_dir, &o.val);
    if (st == QIAO_OK && p->val_dir && !o.val.has_images)
        st = qc_error(QIAO_ERR_FORMAT, "%s: a data set without pictures has nothing to caption", p->val_dir);
    if (st == QIAO_OK) {
        /* only the decoder (and the image tower, if asked) trains */
        static const char *const decoder_only[] = {"decoder.", NULL}, *const with_image[] = {"decoder.", "image.", NULL};
        qtr_freeze_all_but(&o.m->tab, o.h.freeze_image ? decoder_only : with_image);
        st = obj_buffers(&o);
    }
    o.ex = &ex;
    const qmod_memo_source src = {.path = memo_path, .tokens = memo_tokens, .user = &o};
    if (st == QIAO_OK && o.use_memo) st = qmod_memo_fill(&o.memo, o.m, o.h.batch, &src, p->stop, "caption train");
    if (st == QIAO_OK) {
        const qtr_objective obj = {.name = "caption",
                                   .tab = &o.m->tab,
                                   .params = o.m->arena.base,
                                   .n_metrics = N_METRICS,
                                   .metric_names = k_metric_names,
                                   .n_val = N_VAL,
                                   .val_names = k_val_names,
                                   .samples_per_step = o.h.batch,
                                   .user = &o,
                                   .next_batch = o_next_batch,
                                   .step = o_step,
                                   .validate = p->val_dir ? o_validate : NULL,
                                   .save = o_save,
                                   .hparams_json = o_hparams_json};
        const qmod_cap_hparams dh = hparams_default();
        qtr_params tp = {.hp = o.h.tr,
                         .ex = &ex,
                         .ckpt_path = p->ckpt_path,
                         .resume_path = p->resume_path,
                         .csv_path = p->log_path,
                         .hp_default = &dh.tr,
                         .on_step = p->on_step,
                         .user = p->user,
                         .stop = p->stop,
                         .prof = p->prof,
                         .prof_skip = p->prof_skip};
        st = qtr_run(&obj, &tp, NULL);
    }
    qmod_loader_stop(o.loader);
    o.loader = NULL;
    if (o.use_memo)
        qc_log(QIAO_LOG_INFO, "caption train: %lld batches read their pictures' context from the memo, %lld ran the tower",
               (long long)o.memo.hits, (long long)o.memo.misses);
    if (st == QIAO_OK) st = qmod_save(o.m, p->out_path, QIAO_DTYPE_BF16);
    obj_free(&o);
    return st;
}
