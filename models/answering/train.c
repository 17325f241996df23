/* models/answering/train.c - the VQA objective on the generic trainer (see
 * answering.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "models/answering/answering.h"
#include "nn/nn.h"

/* ---- the recipe ------------------------------------------------------------------ */

static qmod_vqa_hparams hparams_default(void) {
    qmod_vqa_hparams h;
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
    h.freeze = (1u << QF_TEXT) | (1u << QF_IMAGE) | (1u << QF_AUDIO);
    h.lang_weight = 0.1f;
    h.smoothing = 0.05f;
    h.eval_questions = 2000;
    h.data = qmod_vqa_default_params();
    return h;
}

static qiao_status range_from_json(const cJSON *it, double lo, double hi, float out[2]) {
    if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != 2)
        return qc_error(QIAO_ERR_FORMAT, "recipe: train.%s must be [low, high]", it->string);
    double v[2];
    for (int i = 0; i < 2; i++) {
        const cJSON *e = cJSON_GetArrayItem(it, i);
        if (!cJSON_IsNumber(e) || !(e->valuedouble >= lo && e->valuedouble <= hi))
            return qc_error(QIAO_ERR_FORMAT, "recipe: train.%s: each end must be a number in [%g, %g]", it->string, lo,
                            hi);
        v[i] = e->valuedouble;
    }
    if (v[0] > v[1]) return qc_error(QIAO_ERR_FORMAT, "recipe: train.%s: low above high", it->string);
    out[0] = (float)v[0], out[1] = (float)v[1];
    return QIAO_OK;
}

qiao_status qmod_vqa_hparams_from_json(const char *recipe_json, const char *what, qmod_vqa_hparams *out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmod_vqa_hparams_from_json: out is NULL");
    *out = hparams_default();
    if (!what) what = "recipe";
    cJSON *root = recipe_json ? cJSON_Parse(recipe_json) : NULL;
    if (recipe_json && !root) return qc_error(QIAO_ERR_FORMAT, "%s: not valid JSON", what);
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(root, "train");
    qiao_status st = QIAO_OK;
    if (tr && !cJSON_IsObject(tr)) st = qc_error(QIAO_ERR_FORMAT, "%s: key \"train\" must be an object", what);
    qmod_vqa_hparams h = *out;
    static const struct {
        const char *key;
        size_t off;
    } probs[] = {{"p_drop_text", offsetof(qmod_vqa_params, p_drop_text)},
                 {"p_drop_audio", offsetof(qmod_vqa_params, p_drop_audio)},
                 {"p_drop_image", offsetof(qmod_vqa_params, p_drop_image)},
                 {"p_image_noise", offsetof(qmod_vqa_params, p_image_noise)},
                 {"p_occlude", offsetof(qmod_vqa_params, p_occlude)},
                 {"p_audio_noise", offsetof(qmod_vqa_params, p_audio_noise)}};
    for (const cJSON *it = tr ? tr->child : NULL; st == QIAO_OK && it; it = it->next) {
        const char *k = it->string;
        double v = 0;
        bool known = false;
        if ((st = qtr_hparams_key(it, &h.tr, &known)) != QIAO_OK || known) continue;
        for (size_t i = 0; i < sizeof probs / sizeof probs[0]; i++)
            if (!strcmp(k, probs[i].key)) {
                known = true;
                if ((st = qtr_json_number(it, 0, 1, false, &v)) == QIAO_OK)
                    *(float *)((char *)&h.data + probs[i].off) = (float)v;
            }
        if (known) continue;
        if (!strcmp(k, "batch")) {
            if ((st = qtr_json_number(it, 1, 65536, true, &v)) == QIAO_OK) h.batch = (int64_t)v;
        } else if (!strcmp(k, "seed")) {
            if ((st = qtr_json_number(it, 0, 9007199254740991.0, true, &v)) == QIAO_OK) h.seed = (uint64_t)v;
        } else if (!strcmp(k, "lang_weight")) {
            if ((st = qtr_json_number(it, 0, 100, false, &v)) == QIAO_OK) h.lang_weight = (float)v;
        } else if (!strcmp(k, "smoothing")) {
            if ((st = qtr_json_number(it, 0, 0.5, false, &v)) == QIAO_OK) h.smoothing = (float)v;
        } else if (!strcmp(k, "cell_weight")) {
            if ((st = qtr_json_number(it, 0, 100, false, &v)) == QIAO_OK) h.cell_weight = (float)v;
        } else if (!strcmp(k, "eval_questions")) {
            if ((st = qtr_json_number(it, 1, 1e7, true, &v)) == QIAO_OK) h.eval_questions = (int64_t)v;
        } else if (!strcmp(k, "image_sigma")) {
            st = range_from_json(it, 0, 255, h.data.image_sigma);
        } else if (!strcmp(k, "occlude_frac")) {
            st = range_from_json(it, 0, 1, h.data.occlude_frac);
        } else if (!strcmp(k, "audio_snr_db")) {
            st = range_from_json(it, -30, 100, h.data.audio_snr_db);
        } else if (!strcmp(k, "audio_noise")) {
            if (cJSON_IsString(it) && !strcmp(it->valuestring, "white"))
                h.data.audio_noise = QMOD_VQA_NOISE_WHITE;
            else if (cJSON_IsString(it) && !strcmp(it->valuestring, "babble"))
                h.data.audio_noise = QMOD_VQA_NOISE_BABBLE;
            else
                st = qc_error(QIAO_ERR_FORMAT, "recipe: train.audio_noise must be \"white\" or \"babble\"");
        } else if (!strcmp(k, "freeze")) {
            h.freeze = 0;
            if (!cJSON_IsArray(it)) st = qc_error(QIAO_ERR_FORMAT, "recipe: train.freeze must be an array of towers");
            for (const cJSON *e = cJSON_IsArray(it) ? it->child : NULL; st == QIAO_OK && e; e = e->next) {
                int mod = -1;
                for (int m = 0; m < QF_NMOD; m++)
                    if (cJSON_IsString(e) && !strcmp(e->valuestring, qf_modality_name(m))) mod = m;
                if (mod < 0)
                    st = qc_error(QIAO_ERR_FORMAT, "recipe: train.freeze: not a tower (text, image, audio)");
                else
                    h.freeze |= 1u << mod;
            }
        } else {
            st = qc_error(QIAO_ERR_FORMAT, "recipe: unknown key train.%s", k);
        }
    }
    if (st == QIAO_OK && h.data.p_drop_text + h.data.p_drop_audio > 1.0f)
        st = qc_error(QIAO_ERR_FORMAT, "recipe: train.p_drop_text + train.p_drop_audio must be at most 1");
    cJSON_Delete(root);
    if (st != QIAO_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", qiao_last_error());
        return qc_error(st, "%s: %s", what, msg);
    }
    *out = h;
    return QIAO_OK;
}

/* ---- the model ------------------------------------------------------------------- */

/* The dense object heads on the picture's tokens, one per attribute
 * (qmod_vqa_cell_labels: class 0 is "none", class 1 + i the list's i-th). */
const char *const qmod_vqa_cell_heads[QMOD_VQA_NATTR] = {"cell_shape", "cell_color", "cell_size"};
static const char *const k_cell_lists[QMOD_VQA_NATTR] = {"shapes", "colors", "sizes"};

static void add_cell_heads(cJSON *heads, const cJSON *desc) {
    for (int a = 0; a < QMOD_VQA_NATTR; a++) {
        const cJSON *names = cJSON_GetObjectItemCaseSensitive(desc, k_cell_lists[a]);
        if (!cJSON_IsArray(names) || cJSON_GetArraySize(names) < 1) continue;
        cJSON *h = cJSON_AddObjectToObject(heads, qmod_vqa_cell_heads[a]);
        cJSON_AddStringToObject(h, "kind", "mlp");
        cJSON_AddStringToObject(h, "tower", "image");
        cJSON_AddStringToObject(h, "input", "tokens");
        cJSON_AddNumberToObject(h, "hidden", 0);
        cJSON_AddNumberToObject(h, "classes", 1 + cJSON_GetArraySize(names));
        cJSON *labels = cJSON_AddArrayToObject(h, "labels");
        cJSON_AddItemToArray(labels, cJSON_CreateString("none"));
        for (const cJSON *n = names->child; n; n = n->next)
            cJSON_AddItemToArray(labels, cJSON_CreateString(cJSON_IsString(n) ? n->valuestring : "?"));
    }
}

/* The VQA config: the embedding model's config plus the recipe's fusion,
 * and the "answer" head labelled from dataset.json's "answers" (id, zh,
 * en) and the "lang" head; with cell_weight > 0 the dense object heads. */
static qiao_status vqa_config(const qmod_model *base, const char *recipe_json, const char *data_dir, bool cells,
                              qmod_config *out) {
    cJSON *root = cJSON_Parse(base->cfg.json), *recipe = cJSON_Parse(recipe_json), *desc = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/dataset.json", data_dir);
    uint8_t *bytes = NULL;
    size_t n = 0;
    qiao_status st = qc_read_file(path, 1 << 20, &bytes, &n);
    if (st == QIAO_OK) {
        desc = cJSON_ParseWithLength((const char *)bytes, n);
        free(bytes);
    }
    const cJSON *answers = cJSON_GetObjectItemCaseSensitive(desc, "answers");
    const cJSON *fusion = cJSON_GetObjectItemCaseSensitive(recipe, "fusion");
    const cJSON *hidden = cJSON_GetObjectItemCaseSensitive(recipe, "answer_hidden");
    if (st == QIAO_OK && (!root || !recipe))
        st = qc_error(QIAO_ERR_FORMAT, "VQA: the model's config or the recipe is not valid JSON");
    if (st == QIAO_OK && (!cJSON_IsArray(answers) || cJSON_GetArraySize(answers) < 2))
        st = qc_error(QIAO_ERR_FORMAT, "%s: no \"answers\" list (a shapes split of version 1.1 or later?)", path);
    if (st == QIAO_OK && !cJSON_IsObject(fusion))
        st = qc_error(QIAO_ERR_FORMAT, "VQA recipe: no \"fusion\" object");
    if (st == QIAO_OK && hidden && (!cJSON_IsNumber(hidden) || hidden->valuedouble < 0 || hidden->valuedouble > 65536))
        st = qc_error(QIAO_ERR_FORMAT, "VQA recipe: \"answer_hidden\" must be a number in [0, 65536]");
    if (st == QIAO_OK) {
        char name[QMOD_NAME_MAX];
        snprintf(name, sizeof name, "%.*s%s", QMOD_NAME_MAX - 5, base->cfg.name, base->cfg.has_fusion ? "" : "-vqa");
        cJSON_ReplaceItemInObjectCaseSensitive(root, "name", cJSON_CreateString(name));
        cJSON_DeleteItemFromObjectCaseSensitive(root, "fusion");
        cJSON_DeleteItemFromObjectCaseSensitive(root, "heads");
        cJSON_DeleteItemFromObjectCaseSensitive(root, "train");
        cJSON_AddItemToObject(root, "fusion", cJSON_Duplicate(fusion, true));
        const cJSON *rtrain = cJSON_GetObjectItemCaseSensitive(recipe, "train");
        if (rtrain) cJSON_AddItemToObject(root, "train", cJSON_Duplicate(rtrain, true));
        cJSON *heads = cJSON_AddObjectToObject(root, "heads");
        cJSON *ans = cJSON_AddObjectToObject(heads, QMOD_VQA_ANSWER_HEAD);
        cJSON_AddStringToObject(ans, "kind", "mlp");
        cJSON_AddStringToObject(ans, "tower", "fusion");
        cJSON_AddNumberToObject(ans, "hidden", hidden ? hidden->valuedouble : 512);
        cJSON_AddNumberToObject(ans, "classes", cJSON_GetArraySize(answers));
        cJSON *labels = cJSON_AddArrayToObject(ans, "labels");
        cJSON *text = cJSON_AddObjectToObject(ans, "label_text");
        cJSON *zh = cJSON_AddArrayToObject(text, "zh"), *en = cJSON_AddArrayToObject(text, "en");
        for (const cJSON *a = answers->child; a && st == QIAO_OK; a = a->next) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
            const cJSON *z = cJSON_GetObjectItemCaseSensitive(a, "zh"), *e = cJSON_GetObjectItemCaseSensitive(a, "en");
            if (!cJSON_IsString(id) || !cJSON_IsString(z) || !cJSON_IsString(e)) {
                st = qc_error(QIAO_ERR_FORMAT, "%s: an answer without \"id\", \"zh\" and \"en\"", path);
                break;
            }
            cJSON_AddItemToArray(labels, cJSON_CreateString(id->valuestring));
            cJSON_AddItemToArray(zh, cJSON_CreateString(z->valuestring));
            cJSON_AddItemToArray(en, cJSON_CreateString(e->valuestring));
        }
        cJSON *lang = cJSON_AddObjectToObject(heads, QMOD_VQA_LANG_HEAD);
        cJSON_AddStringToObject(lang, "kind", "mlp");
        cJSON_AddStringToObject(lang, "tower", "fusion");
        cJSON_AddNumberToObject(lang, "classes", 2);
        cJSON *ll = cJSON_AddArrayToObject(lang, "labels");
        cJSON_AddItemToArray(ll, cJSON_CreateString("zh"));
        cJSON_AddItemToArray(ll, cJSON_CreateString("en"));
        if (cells) add_cell_heads(heads, desc);
    }
    if (st == QIAO_OK) {
        char *json = cJSON_PrintUnformatted(root);
        st = json ? qmod_config_from_string(json, "VQA config", out)
                  : qc_error(QIAO_ERR_OUT_OF_MEMORY, "VQA: out of memory");
        cJSON_free(json);
    }
    cJSON_Delete(root);
    cJSON_Delete(recipe);
    cJSON_Delete(desc);
    return st;
}

/* A new VQA model: fuser and heads drawn from `seed`, every tensor the
 * embedding model shares with it copied over, its tokenizer moved in. */
static qiao_status vqa_model_from(qmod_model *base, const char *recipe_json, const char *data_dir, uint64_t seed,
                                  bool cells, qmod_model **out) {
    qmod_config cfg;
    qiao_status st = vqa_config(base, recipe_json, data_dir, cells, &cfg);
    if (st != QIAO_OK) return st;
    st = qmod_create(&cfg, seed, out);
    qmod_config_free(&cfg);
    if (st != QIAO_OK) return st;
    qmod_model *m = *out;
    size_t copied = 0;
    if ((st = qmod_copy_shared(m, base, &copied)) != QIAO_OK) {
        qmod_free(m);
        *out = NULL;
        return st;
    }
    m->tok = base->tok;
    base->tok = NULL;
    if (base->cfg.has_fusion)
        qc_log(QIAO_LOG_INFO, "VQA: %zu of %zu tensors from %s, the rest new (the recipe's fuser differs)", copied,
               m->tab.n, base->cfg.name);
    else
        qc_log(QIAO_LOG_INFO, "VQA: %zu tensors from %s, %lld fusion and head parameters new", copied, base->cfg.name,
               (long long)(qmod_param_count(m, "fusion.") + qmod_param_count(m, "heads.")));
    return QIAO_OK;
}

/* ---- the objective ------------------------------------------------------------------ */

enum { M_ANSWER = 0, M_LANG, M_ACC, M_W_TEXT, M_W_IMAGE, M_W_AUDIO, M_CELL, M_CELL_SHAPE, M_CELL_COLOR, N_METRICS };
static const char *const k_metric_names[N_METRICS] = {
    "loss_answer", "loss_lang", "train_acc", "w_text", "w_image", "w_audio", "loss_cell",
    "cell_shape_acc", /* on cells an object covers */
    "cell_color_acc"};
enum { V_ACC = 0, V_ACC_TYPED, V_ACC_SPOKEN, N_VAL };
static const char *const k_val_names[N_VAL] = {"val_acc", "val_acc_typed", "val_acc_spoken"};

typedef struct vqa_obj {
    const qmod_vqa_train_params *p;
    qmod_vqa_hparams h;
    qmod_model *m;
    qmod_vqa_dataset train, val;
    qmod_vqa_cache *cache, *val_cache;
    qmod_vqa_loader *loader;
    qmod_vqa_batch *b;
    qmod_vqa_work w;
    qmod_params g;
    float *g_bound;
    float *losses, *probs, *dlogits, *lprobs, *dlang; /* (B), (B, K), (B, K), (B, 2), (B, 2) */
    int32_t *lang_t;                                    /* (B) */
    bool fresh;                                         /* a new VQA model: its token statistics to measure */
    /* the dense object loss (cell_weight > 0) */
    int cell_head[QMOD_VQA_NATTR];   /* -1 where the model has none */
    qmod_head_work cw[QMOD_VQA_NATTR];
    int64_t cell_T;                  /* picture tokens: grid * grid */
    int32_t *cell_lab, *cell_t;      /* (B, T, NATTR) labels, (B*T) one attribute's */
    float *cell_losses, *cell_probs, *cell_dlog, *cell_dtok; /* (B*T), (B*T, Kmax) twice, (B*T, C) */
    float *cell_place, *cell_dplace; /* with the fuser's places: what the heads read, (B*G*G, C), its gradient */
    int32_t *cell_arg;               /* (B*G*G, C) the patch each place value came from */
    /* the pictures' tokens, kept once computed: a frozen picture tower and
     * no picture noise or occlusion (models/picture.h) */
    bool use_memo;
    qmod_memo memo;
    const qb_exec *ex; /* the run's, for the memo's fill */
} vqa_obj;

/* The towers' token statistics (model.h tok_mean, tok_std): per channel over
 * the real tokens of present inputs in `n` clean training batches. */
static qiao_status measure_token_stats(vqa_obj *o, const qb_exec *ex, int64_t n) {
    qmod_model *m = o->m;
    qmod_vqa_loader_params lp = {.model = m,
                                 .data = &o->train,
                                 .cache = o->cache,
                                 .vqa = qmod_vqa_default_params(),
                                 .batch = 64,
                                 .seed = o->h.seed + 7,
                                 .threads = 1,
                                 .prefetch = 2};
    qmod_vqa_loader *l = NULL;
    qmod_work work[QF_NMOD];
    memset(work, 0, sizeof work);
    double *acc[QF_NMOD] = {NULL, NULL, NULL};
    int64_t cnt[QF_NMOD] = {0, 0, 0};
    qiao_status st = qmod_vqa_loader_start(&lp, &l);
    for (int k = 0; k < QF_NMOD && st == QIAO_OK; k++)
        if (!(acc[k] = calloc((size_t)(2 * m->cfg.fusion.in_width[k] + 1), sizeof(double))))
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "VQA: out of memory");
    for (int64_t i = 0; i < n && st == QIAO_OK; i++) {
        qmod_vqa_batch *b = NULL;
        if ((st = qmod_vqa_loader_next(l, &b)) != QIAO_OK || !b) break;
        const qmod_batch *in[QF_NMOD] = {&b->text, &b->image, &b->audio};
        for (int k = 0; k < QF_NMOD && st == QIAO_OK; k++) {
            const qmod_batch *x = in[k];
            qmod_work *w = &work[k];
            st = w->acts.base ? qmod_work_reserve(w, m, x->B, x->T)
                              : qmod_work_init(w, m, qmod_vqa_tower(k), x->B, x->T, false);
            const float *emb;
            qmod_token_seq seq;
            if (st == QIAO_OK) st = qmod_forward(ex, m, w, x, &emb);
            if (st == QIAO_OK) st = qmod_tokens(m, w, x, &seq);
            for (int64_t r = 0; st == QIAO_OK && r < seq.B; r++) {
                if (!b->present[r * QF_NMOD + k]) continue;
                for (int64_t t = 0; t < seq.T; t++) {
                    if (seq.mask && !seq.mask[r * seq.T + t]) continue;
                    const float *v = seq.x + (r * seq.T + t) * seq.C;
                    for (int64_t c = 0; c < seq.C; c++) {
                        acc[k][c] += v[c];
                        acc[k][seq.C + c] += (double)v[c] * v[c];
                    }
                    cnt[k]++;
                }
            }
        }
        qmod_vqa_loader_release(l, b);
    }
    qmod_vqa_loader_stop(l);
    for (int k = 0; k < QF_NMOD && st == QIAO_OK; k++) {
        const int64_t C = m->cfg.fusion.in_width[k];
        if (!cnt[k]) continue; /* never present: left the identity */
        double common = 0.0, total = 0.0;
        for (int64_t c = 0; c < C; c++) {
            const double mu = acc[k][c] / (double)cnt[k], var = acc[k][C + c] / (double)cnt[k] - mu * mu;
            m->p.tok_mean[k][c] = (float)mu;
            m->p.tok_std[k][c] = (float)sqrt(var > 1e-8 ? var : 1e-8);
            common += mu * mu, total += acc[k][C + c] / (double)cnt[k];
        }
        qc_log(QIAO_LOG_INFO, "VQA: %s tokens standardized over %lld tokens; their mean holds %.0f%% of their energy",
               qf_modality_name(k), (long long)cnt[k], 100.0 * common / (total > 0 ? total : 1));
    }
    for (int k = 0; k < QF_NMOD; k++) qmod_work_free(&work[k]), free(acc[k]);
    return st;
}

static const char *memo_path(void *user, int64_t i) {
    const vqa_obj *o = user;
    return o->train.scenes[i].image;
}

static qiao_status memo_tokens(void *user, const qmod_batch *pictures, const float **tok) {
    vqa_obj *o = user;
    return qmod_vqa_picture_tokens(o->ex, o->m, &o->w, pictures, tok);
}

static qiao_status o_next_batch(void *user, int64_t step) {
    vqa_obj *o = user;
    if (!o->loader) {
        qmod_vqa_loader_params lp = {.model = o->m,
                                     .data = &o->train,
                                     .cache = o->cache,
                                     .vqa = o->h.data,
                                     .batch = o->h.batch,
                                     .seed = o->h.seed,
                                     .threads = o->p->loader_threads > 0 ? o->p->loader_threads : 1,
                                     .prefetch = 4,
                                     .first_batch = step};
        qiao_status st = qmod_vqa_loader_start(&lp, &o->loader);
        if (st != QIAO_OK) return st;
        qc_log(QIAO_LOG_INFO, "VQA train: %s, %lld questions (%lld spoken) of %lld scenes, batch %lld, steps %lld from %lld",
               o->m->cfg.name, (long long)o->train.n_questions, (long long)o->train.n_spoken,
               (long long)o->train.n_scenes, (long long)o->h.batch, (long long)o->h.tr.steps, (long long)step);
    }
    return qmod_vqa_loader_next(o->loader, &o->b);
}

void qmod_vqa_batch_inputs(const qmod_vqa_batch *b, bool audio, qmod_vqa_inputs *in) {
    memset(in, 0, sizeof *in);
    in->B = b->B;
    in->batch[QF_TEXT] = &b->text;
    in->batch[QF_IMAGE] = &b->image;
    in->batch[QF_AUDIO] = audio && b->audio.B > 0 ? &b->audio : NULL;
    in->present = b->present;
    for (int m = 0; m < QF_NMOD; m++) in->stats[m] = b->stats[m];
}

/* The dense object loss on the picture tower's tokens of the batch just run
 * forward: each attribute head's cross-entropy against the cells' labels
 * (rows without a picture have none), weighted by cell_weight; its
 * gradient at the tokens goes to o->cell_dtok when `into_tower`. */
static qiao_status cell_loss(vqa_obj *o, const qb_exec *ex, bool into_tower, float *loss, float *metrics) {
    const qmod_model *m = o->m;
    const qmod_vqa_batch *b = o->b;
    qmod_token_seq seq;
    qiao_status st = qmod_tokens(m, &o->w.tower[QF_IMAGE], &b->image, &seq);
    if (st != QIAO_OK) return st;
    if (seq.T != o->cell_T || seq.B != b->B)
        return qc_error(QIAO_ERR_INTERNAL, "VQA: %lld picture tokens, the cell grid has %lld", (long long)seq.T,
                        (long long)o->cell_T);
    const int64_t C = seq.C, P = seq.B * seq.T;
    const float *x;
    int64_t T;
    int grid;
    bool places;
    qmod_vqa_cell_tokens(m, &seq, o->cell_place, o->cell_arg, &x, &T, &grid, &places);
    if (T == 0) return qc_error(QIAO_ERR_INTERNAL, "VQA: %lld picture tokens are not a square grid", (long long)seq.T);
    const int64_t N = seq.B * T;
    qmod_vqa_batch_cells(&o->train, b, b->B, grid, places, o->cell_lab);
    /* the heads' gradient at what they read: the patches, or the places first */
    float *dx = places ? o->cell_dplace : o->cell_dtok;
    if (into_tower) memset(dx, 0, (size_t)(N * C) * sizeof(float));
    *loss = 0.0f;
    metrics[M_CELL_SHAPE] = metrics[M_CELL_COLOR] = NAN;
    for (int a = 0; a < QMOD_VQA_NATTR; a++) {
        if (o->cell_head[a] < 0) continue;
        const int64_t K = m->cfg.heads[o->cell_head[a]].mlp.classes;
        for (int64_t i = 0; i < N; i++) o->cell_t[i] = o->cell_lab[i * QMOD_VQA_NATTR + a];
        const float *lg = NULL;
        float l = 0.0f;
        if ((st = qmod_head_forward(ex, m, &o->cw[a], x, N, &lg)) != QIAO_OK) return st;
        nn_cross_entropy_forward(ex, &l, o->cell_losses, o->cell_probs, lg, o->cell_t, N, K, 0.0f, -1);
        if ((st = ex->ops->sync(ex)) != QIAO_OK) return st;
        if (!isfinite(l)) return qc_error(QIAO_ERR_INTERNAL, "VQA: the cell loss is not finite (%g)", (double)l);
        int64_t right = 0, objects = 0;
        qmod_vqa_cell_hits(lg, o->cell_lab, a, N, K, &objects, &right);
        if (a == QMOD_VQA_SHAPE || a == QMOD_VQA_COLOR)
            metrics[a == QMOD_VQA_SHAPE ? M_CELL_SHAPE : M_CELL_COLOR] =
                objects ? (float)right / (float)objects : NAN;
        memset(o->cell_dlog, 0, (size_t)(N * K) * sizeof(float));
        nn_cross_entropy_backward(ex, o->cell_dlog, o->h.cell_weight, o->cell_probs, o->cell_t, N, K, 0.0f, -1);
        qmod_head_backward(ex, m, &o->g, &o->cw[a], x, N, o->cell_dlog, into_tower ? dx : NULL);
        *loss += l;
    }
    if (into_tower && places) {
        if ((st = ex->ops->sync(ex)) != QIAO_OK) return st;
        memset(o->cell_dtok, 0, (size_t)(P * C) * sizeof(float));
        qf_places_backward(o->cell_dtok, dx, o->cell_arg, seq.B, qf_patch_side(seq.T), grid, C);
    }
    metrics[M_CELL] = *loss;
    return ex->ops->sync(ex);
}

static qiao_status o_step_batch(vqa_obj *o, const qtr_step_ctx *ctx, float *loss, float *metrics) {
    const qb_exec *ex = ctx->ex;
    const qmod_vqa_batch *b = o->b;
    const qmod_model *m = o->m;
    if (o->g_bound != ctx->grads) {
        qc_table_bind(&o->m->tab, ctx->grads, &o->g);
        o->g_bound = ctx->grads;
    }
    qmod_vqa_inputs in;
    qmod_vqa_batch_inputs(b, true, &in);
    if (o->use_memo) in.memo = &o->memo, in.picture = b->scene;
    const qf_weighting mode = m->cfg.fusion.weighting;
    const float *logits = NULL, *lang = NULL, *w = NULL;
    qiao_status st = qmod_vqa_forward(ex, m, &o->w, &in, mode, &logits, &lang, &w);
    if (st != QIAO_OK) return st;
    const int64_t B = b->B, K = m->cfg.heads[o->w.answer_head].mlp.classes;
    float la = 0.0f, ll = 0.0f;
    nn_cross_entropy_forward(ex, &la, o->losses, o->probs, logits, b->answer, B, K, o->h.smoothing, -1);
    for (int64_t r = 0; r < B; r++) o->lang_t[r] = b->lang[r];
    if (lang) nn_cross_entropy_forward(ex, &ll, o->losses, o->lprobs, lang, o->lang_t, B, 2, 0.0f, -1);
    if ((st = ex->ops->sync(ex)) != QIAO_OK) return st;
    if (!isfinite(la) || !isfinite(ll))
        return qc_error(QIAO_ERR_INTERNAL, "step %lld: the VQA loss is not finite (%g, %g); lower the learning rate",
                        (long long)(ctx->step + 1), (double)la, (double)ll);
    memset(o->dlogits, 0, (size_t)(B * K) * sizeof(float));
    memset(o->dlang, 0, (size_t)(B * 2) * sizeof(float));
    nn_cross_entropy_backward(ex, o->dlogits, 1.0f, o->probs, b->answer, B, K, o->h.smoothing, -1);
    if (lang) nn_cross_entropy_backward(ex, o->dlang, o->h.lang_weight, o->lprobs, o->lang_t, B, 2, 0.0f, -1);
    bool train_tower[QF_NMOD];
    for (int k = 0; k < QF_NMOD; k++) train_tower[k] = !((o->h.freeze >> k) & 1u);
    const float *dtok_add[QF_NMOD] = {NULL, NULL, NULL};
    float lc = 0.0f;
    metrics[M_CELL] = metrics[M_CELL_SHAPE] = metrics[M_CELL_COLOR] = NAN;
    if (o->h.cell_weight > 0 && !o->use_memo) {
        if ((st = cell_loss(o, ex, train_tower[QF_IMAGE], &lc, metrics)) != QIAO_OK) return st;
        if (train_tower[QF_IMAGE]) dtok_add[QF_IMAGE] = o->cell_dtok;
    }
    st = qmod_vqa_backward(ex, m, &o->g, &o->w, &in, mode, o->dlogits, lang ? o->dlang : NULL, train_tower,
                           dtok_add);
    if (st != QIAO_OK) return st;
    int64_t right = 0;
    double wsum[QF_NMOD] = {0, 0, 0};
    for (int64_t r = 0; r < B; r++) {
        int64_t best = 0;
        for (int64_t k = 1; k < K; k++)
            if (logits[r * K + k] > logits[r * K + best]) best = k;
        right += best == b->answer[r];
        for (int k = 0; k < QF_NMOD; k++) wsum[k] += w[r * QF_NMOD + k];
    }
    *loss = la + o->h.lang_weight * ll + o->h.cell_weight * lc;
    metrics[M_ANSWER] = la;
    metrics[M_LANG] = lang ? ll : NAN;
    metrics[M_ACC] = (float)right / (float)B;
    for (int k = 0; k < QF_NMOD; k++) metrics[M_W_TEXT + k] = (float)(wsum[k] / (double)B);
    return QIAO_OK;
}

static qiao_status o_step(void *user, const qtr_step_ctx *ctx, float *loss, float *metrics) {
    vqa_obj *o = user;
    qiao_status st = o_step_batch(o, ctx, loss, metrics);
    qmod_vqa_loader_release(o->loader, o->b);
    o->b = NULL;
    return st;
}

static qiao_status o_validate(void *user, const qb_exec *ex, float *val) {
    vqa_obj *o = user;
    qmod_vqa_eval_params ep = qmod_vqa_eval_default_params();
    ep.max_questions = o->h.eval_questions;
    ep.mode = o->m->cfg.fusion.weighting;
    qmod_vqa_result r[2];
    const int inputs[2] = {QMOD_VQA_TYPED, QMOD_VQA_SPOKEN};
    for (int i = 0; i < 2; i++) {
        ep.input = inputs[i];
        if (inputs[i] == QMOD_VQA_SPOKEN && o->val.n_spoken < o->val.n_questions) {
            memset(&r[i], 0, sizeof r[i]);
            continue;
        }
        qiao_status st = qmod_vqa_eval(ex, o->m, &o->val, o->val_cache, &ep, &r[i]);
        if (st != QIAO_OK) return st;
    }
    val[V_ACC_TYPED] = (float)qmod_vqa_acc(r[0].correct, r[0].n);
    val[V_ACC_SPOKEN] = r[1].n ? (float)qmod_vqa_acc(r[1].correct, r[1].n) : NAN;
    val[V_ACC] = (float)qmod_vqa_acc(r[0].correct + r[1].correct, r[0].n + r[1].n);
    return QIAO_OK;
}

static qiao_status o_save(void *user, const char *path, const qc_st_entry *extra, size_t n_extra, const qc_st_kv *meta,
                          size_t n_meta) {
    const vqa_obj *o = user;
    return qmod_save_ex(o->m, path, QIAO_DTYPE_F32, extra, n_extra, meta, n_meta);
}

static void o_hparams_json(void *user, cJSON *obj) {
    const qmod_vqa_hparams *h = &((const vqa_obj *)user)->h;
    cJSON_AddNumberToObject(obj, "batch", (double)h->batch);
    cJSON_AddNumberToObject(obj, "seed", (double)h->seed);
    cJSON_AddNumberToObject(obj, "lang_weight", h->lang_weight);
    cJSON_AddNumberToObject(obj, "smoothing", h->smoothing);
    cJSON_AddNumberToObject(obj, "cell_weight", h->cell_weight);
    cJSON *f = cJSON_AddArrayToObject(obj, "freeze");
    for (int m = 0; m < QF_NMOD; m++)
        if (h->freeze & (1u << m)) cJSON_AddItemToArray(f, cJSON_CreateString(qf_modality_name(m)));
    cJSON_AddNumberToObject(obj, "p_drop_text", h->data.p_drop_text);
    cJSON_AddNumberToObject(obj, "p_drop_audio", h->data.p_drop_audio);
    cJSON_AddNumberToObject(obj, "p_drop_image", h->data.p_drop_image);
    cJSON_AddNumberToObject(obj, "p_image_noise", h->data.p_image_noise);
    cJSON_AddNumberToObject(obj, "p_occlude", h->data.p_occlude);
    cJSON_AddNumberToObject(obj, "p_audio_noise", h->data.p_audio_noise);
    cJSON_AddNumberToObject(obj, "eval_questions", (double)h->eval_questions);
    const float *const ranges[3] = {h->data.image_sigma, h->data.occlude_frac, h->data.audio_snr_db};
    static const char *const range_keys[3] = {"image_sigma", "occlude_frac", "audio_snr_db"};
    for (int i = 0; i < 3; i++) {
        cJSON *r = cJSON_AddArrayToObject(obj, range_keys[i]);
        for (int k = 0; k < 2; k++) cJSON_AddItemToArray(r, cJSON_CreateNumber(ranges[i][k]));
    }
    cJSON_AddStringToObject(obj, "audio_noise", h->data.audio_noise == QMOD_VQA_NOISE_BABBLE ? "babble" : "white");
}

static void obj_free(vqa_obj *o) {
    if (o->b) qmod_vqa_loader_release(o->loader, o->b);
    qmod_vqa_loader_stop(o->loader);
    qmod_vqa_work_free(&o->w);
    qmod_vqa_cache_free(o->cache);
    qmod_vqa_cache_free(o->val_cache);
    qmod_vqa_dataset_free(&o->train);
    qmod_vqa_dataset_free(&o->val);
    free(o->losses), free(o->probs), free(o->dlogits), free(o->lprobs), free(o->dlang), free(o->lang_t);
    for (int a = 0; a < QMOD_VQA_NATTR; a++) qmod_head_work_free(&o->cw[a]);
    free(o->cell_lab), free(o->cell_t), free(o->cell_losses), free(o->cell_probs), free(o->cell_dlog);
    free(o->cell_dtok), free(o->cell_place), free(o->cell_dplace), free(o->cell_arg);
    if (o->use_memo)
        qc_log(QIAO_LOG_INFO, "VQA train: %lld batches read their pictures from the memo, %lld ran the picture tower",
               (long long)o->memo.hits, (long long)o->memo.misses);
    qmod_memo_free(&o->memo);
    qmod_free(o->m);
}

/* The dense object heads' workspaces and buffers, for a model that has
 * them (a VQA model made with cell_weight > 0). */
static qiao_status cells_init(vqa_obj *o) {
    const qmod_model *m = o->m;
    int64_t Kmax = 0;
    bool any = false;
    for (int a = 0; a < QMOD_VQA_NATTR; a++) {
        o->cell_head[a] = qmod_head_find(&m->cfg, qmod_vqa_cell_heads[a]);
        if (o->cell_head[a] >= 0) {
            const int64_t K = m->cfg.heads[o->cell_head[a]].mlp.classes;
            Kmax = K > Kmax ? K : Kmax;
            any = true;
        }
    }
    if (!any)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "VQA train: train.cell_weight needs the cell heads, which a VQA model gets when it is first "
                        "made from an embedding model with cell_weight above 0 (and dataset.json lists \"shapes\", "
                        "\"colors\", \"sizes\")");
    o->cell_T = m->cfg.image.tokens;
    const int64_t N = o->h.batch * o->cell_T, C = m->cfg.image.trunk.C;
    for (int a = 0; a < QMOD_VQA_NATTR; a++)
        if (o->cell_head[a] >= 0) {
            qiao_status st = qmod_head_work_init(&o->cw[a], m, o->cell_head[a], N, true);
            if (st != QIAO_OK) return st;
        }
    if (!(o->cell_lab = malloc((size_t)(N * QMOD_VQA_NATTR) * sizeof(int32_t))) ||
        !(o->cell_t = malloc((size_t)N * sizeof(int32_t))) || !(o->cell_losses = malloc((size_t)N * sizeof(float))) ||
        !(o->cell_probs = malloc((size_t)(N * Kmax) * sizeof(float))) ||
        !(o->cell_dlog = malloc((size_t)(N * Kmax) * sizeof(float))) ||
        !(o->cell_dtok = malloc((size_t)(N * C) * sizeof(float))) ||
        !(o->cell_place = malloc((size_t)(N * C) * sizeof(float))) ||
        !(o->cell_dplace = malloc((size_t)(N * C) * sizeof(float))) ||
        !(o->cell_arg = malloc((size_t)(N * C) * sizeof(int32_t))))
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "VQA train: out of memory");
    return QIAO_OK;
}

static qiao_status model_init(vqa_obj *o, const qmod_vqa_train_params *p) {
    if (p->resume_path) return qmod_load(p->resume_path, &o->m);
    if (!p->init_path) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "VQA train: give the model to start from (--init)");
    qmod_model *base = NULL;
    char *recipe = NULL;
    qiao_status st = qmod_load(p->init_path, &base);
    if (st == QIAO_OK && !base->tok)
        st = qc_error(QIAO_ERR_FORMAT, "%s: a model without a tokenizer cannot read questions", p->init_path);
    if (st == QIAO_OK && p->recipe_path) st = qtr_recipe_read(p->recipe_path, &recipe);
    /* a VQA model fine-tunes as it is, unless the recipe asks for another fuser */
    if (st == QIAO_OK && base->cfg.has_fusion && !(recipe && qtr_recipe_changes(base->cfg.json, recipe, "fusion"))) {
        free(recipe);
        o->m = base;
        return QIAO_OK;
    }
    if (st == QIAO_OK && !recipe)
        st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "VQA train: %s has no fuser; give a recipe (--config)", p->init_path);
    if (st == QIAO_OK) {
        st = vqa_model_from(base, recipe, p->data_dir, o->h.seed, o->h.cell_weight > 0, &o->m);
        /* a grown VQA model keeps the token statistics its fuser learned on */
        o->fresh = st == QIAO_OK && !base->cfg.has_fusion;
    }
    free(recipe);
    qmod_free(base);
    return st;
}

qiao_status qmod_vqa_train(const qmod_vqa_train_params *p) {
    if (!p || !p->data_dir || !p->out_path || !p->ckpt_path)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "VQA train: data directory, output and checkpoint paths are required");
    vqa_obj o;
    memset(&o, 0, sizeof o);
    o.p = p;
    o.h = p->hp;
    qtr_hparams_finish(&o.h.tr);
    qb_exec ex;
    qb_exec_cpu(&ex, p->threads);
    qiao_status st = model_init(&o, p);
    if (st == QIAO_OK) st = qmod_vqa_check(o.m);
    for (int k = 0; k < QF_NMOD && st == QIAO_OK; k++)
        if (!qmod_has_tower(&o.m->cfg, qmod_vqa_tower(k)))
            st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "VQA train: model %s has no %s tower", o.m->cfg.name,
                          qf_modality_name(k));
    if (st == QIAO_OK) st = qmod_vqa_dataset_load(p->data_dir, &o.train);
    if (st == QIAO_OK && p->val_dir) st = qmod_vqa_dataset_load(p->val_dir, &o.val);
    if (st == QIAO_OK && o.train.n_answers != o.m->cfg.heads[qmod_head_find(&o.m->cfg, QMOD_VQA_ANSWER_HEAD)].mlp.classes)
        st = qc_error(QIAO_ERR_FORMAT, "%s: %d answers, the model's answer head has other classes", p->data_dir,
                      (int)o.train.n_answers);
    if (st == QIAO_OK) st = qmod_vqa_cache_new(&o.train, &o.cache);
    if (st == QIAO_OK && p->val_dir) st = qmod_vqa_cache_new(&o.val, &o.val_cache);
    if (st == QIAO_OK && o.fresh) st = measure_token_stats(&o, &ex, 8);
    if (st == QIAO_OK) {
        qtr_freeze_prefix(&o.m->tab, "logit_scale.");
        for (int k = 0; k < QF_NMOD; k++)
            if ((o.h.freeze >> k) & 1u) {
                char prefix[16];
                snprintf(prefix, sizeof prefix, "%s.", qf_modality_name(k));
                qtr_freeze_prefix(&o.m->tab, prefix);
            }
        st = qmod_vqa_work_init(&o.w, o.m, o.h.batch, true);
    }
    const int64_t B = o.h.batch, K = st == QIAO_OK ? o.m->cfg.heads[o.w.answer_head].mlp.classes : 1;
    if (st == QIAO_OK &&
        (!(o.losses = malloc((size_t)B * sizeof(float))) || !(o.probs = malloc((size_t)(B * K) * sizeof(float))) ||
         !(o.dlogits = malloc((size_t)(B * K) * sizeof(float))) || !(o.lprobs = malloc((size_t)B * 2 * sizeof(float))) ||
         !(o.dlang = malloc((size_t)B * 2 * sizeof(float))) || !(o.lang_t = malloc((size_t)B * sizeof(int32_t)))))
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "VQA train: out of memory");
    /* The picture tower's tokens never change when it is frozen and its
     * pictures are not degraded: each is computed once (the cell heads,
     * which teach the tower, are then left alone). */
    o.use_memo = (o.h.freeze >> QF_IMAGE & 1u) && o.h.data.p_image_noise == 0.0f && o.h.data.p_occlude == 0.0f;
    if (st == QIAO_OK && o.use_memo) {
        /* a memo too large, or one that cannot be had, is skipped: the
           tower then runs every step, which is slower, not wrong */
        const qiao_status ms = qmod_vqa_memo_init(&o.memo, o.m, o.train.n_scenes, QMOD_MEMO_MAX);
        o.use_memo = ms == QIAO_OK;
        if (ms != QIAO_OK && ms != QIAO_ERR_TOO_LARGE && ms != QIAO_ERR_OUT_OF_MEMORY) st = ms;
        qc_log(QIAO_LOG_INFO, "VQA train: %s (%.0f MiB for %lld pictures)",
               o.use_memo ? "the picture tower is frozen and its pictures clean: each picture's tokens are computed once"
                          : "no memo of the pictures' tokens: the tower runs every step",
               qmod_memo_bytes(o.memo.n, o.memo.T, o.memo.C) / 1048576.0, (long long)o.train.n_scenes);
        o.ex = &ex;
        const qmod_memo_source src = {.path = memo_path, .tokens = memo_tokens, .user = &o};
        if (st == QIAO_OK && o.use_memo) st = qmod_memo_fill(&o.memo, o.m, o.h.batch, &src, o.p->stop, "VQA train");
    }
    if (st == QIAO_OK && o.h.cell_weight > 0) st = cells_init(&o);
    if (st == QIAO_OK) {
        const qtr_objective obj = {.name = "vqa",
                                   .tab = &o.m->tab,
                                   .params = o.m->arena.base,
                                   .n_metrics = N_METRICS,
                                   .metric_names = k_metric_names,
                                   .n_val = N_VAL,
                                   .val_names = k_val_names,
                                   .samples_per_step = B,
                                   .user = &o,
                                   .next_batch = o_next_batch,
                                   .step = o_step,
                                   .validate = p->val_dir ? o_validate : NULL,
                                   .save = o_save,
                                   .hparams_json = o_hparams_json};
        const qmod_vqa_hparams dh = hparams_default();
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
    qmod_vqa_loader_stop(o.loader);
    o.loader = NULL;
    if (st == QIAO_OK) st = qmod_save(o.m, p->out_path, QIAO_DTYPE_BF16);
    obj_free(&o);
    return st;
}
