/* The intent classifier's objective, evaluation and classification
 * (intent.h). */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "models/embed.h"
#include "models/head.h"
#include "models/intent/intent.h"

qmi_hparams qmi_hparams_default(void) {
    qmi_hparams h;
    memset(&h, 0, sizeof h);
    h.tr = qtr_hparams_default();
    h.tr.steps = 0;
    h.tr.lr = 2e-5f;
    h.tr.eval_every = 0;
    h.batch = 32;
    h.epochs = 3.0;
    h.val_fraction = 0.1;
    h.seed = 1;
    h.head_lr = 1e-3f;
    h.smoothing = 0.0f;
    h.hidden = 0;
    h.scale = 16.0f;
    h.rejection = 0.05;
    h.entity_weight = 1.0f;
    h.kd_alpha = 0.5f;
    h.kd_temperature = 2.0f;
    snprintf(h.oos_label, sizeof h.oos_label, "oos");
    return h;
}

qiao_status qmi_hparams_from_json(const char *json, const char *what, qmi_hparams *out) {
    if (!out)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmi_hparams_from_json: out is NULL");
    *out = qmi_hparams_default();
    if (!json)
        return QIAO_OK;
    if (!what)
        what = "recipe";
    cJSON *root = cJSON_Parse(json);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return qc_error(QIAO_ERR_FORMAT, "%s: not a JSON object", what);
    }
    qmi_hparams h = *out;
    qiao_status st = QIAO_OK;
    double v = 0;
    const cJSON *hid = cJSON_GetObjectItemCaseSensitive(root, "hidden"),
                *sc = cJSON_GetObjectItemCaseSensitive(root, "scale"),
                *ctx = cJSON_GetObjectItemCaseSensitive(root, "context"),
                *lay = cJSON_GetObjectItemCaseSensitive(root, "layers"),
                *tea = cJSON_GetObjectItemCaseSensitive(root, "teacher");
    for (const cJSON *it = root->child; it; it = it->next)
        if (st == QIAO_OK && strcmp(it->string, "hidden") && strcmp(it->string, "scale") &&
            strcmp(it->string, "context") && strcmp(it->string, "layers") && strcmp(it->string, "teacher") &&
            strcmp(it->string, "train"))
            st = qc_error(QIAO_ERR_FORMAT,
                          "%s: unknown key %s (a recipe has hidden, scale, context, layers, teacher, train)", what,
                          it->string);
    if (st == QIAO_OK && hid && (st = qtr_json_number(hid, 0, QF_HEAD_MAX_WIDTH, true, &v)) == QIAO_OK)
        h.hidden = (int64_t)v;
    if (st == QIAO_OK && sc && (st = qtr_json_number(sc, 1e-3, 1e4, false, &v)) == QIAO_OK)
        h.scale = (float)v;
    if (st == QIAO_OK && ctx && (st = qtr_json_number(ctx, 0, QMOD_HEAD_MAX_CONTEXT, true, &v)) == QIAO_OK)
        h.context = (int64_t)v;
    if (st == QIAO_OK && lay && cJSON_IsArray(lay)) {
        /* a list of the init's layers: "layers": [0, 4, 8, 11] */
        const int n = cJSON_GetArraySize(lay);
        if (n < 1 || n > QMI_MAX_LAYERS)
            st = qc_error(QIAO_ERR_FORMAT, "%s: \"layers\" lists 1 to %d layer indices, not %d", what, QMI_MAX_LAYERS,
                          n);
        int i = 0;
        for (const cJSON *it = lay->child; st == QIAO_OK && it; it = it->next, i++) {
            if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 999 ||
                it->valuedouble != floor(it->valuedouble))
                st = qc_error(QIAO_ERR_FORMAT, "%s: \"layers\"[%d] must be a layer index (an integer from 0)", what,
                              i);
            else
                h.layer_from[i] = (int32_t)it->valuedouble;
        }
        if (st == QIAO_OK) {
            h.layers = n;
            h.layer_list = true;
        }
    } else if (st == QIAO_OK && lay && (st = qtr_json_number(lay, 1, 1000, true, &v)) == QIAO_OK) {
        h.layers = (int64_t)v;
    }
    if (st == QIAO_OK && tea && !cJSON_IsObject(tea))
        st = qc_error(QIAO_ERR_FORMAT, "%s: \"teacher\" must be an object {\"model\": path, \"alpha\", \"temperature\"}",
                      what);
    for (const cJSON *it = tea ? tea->child : NULL; st == QIAO_OK && it; it = it->next) {
        const char *k = it->string;
        if (!strcmp(k, "model")) {
            if (!cJSON_IsString(it) || !it->valuestring[0] || strlen(it->valuestring) >= sizeof h.teacher)
                st = qc_error(QIAO_ERR_FORMAT, "%s: teacher.model must be a path of 1 to %zu bytes", what,
                              sizeof h.teacher - 1);
            else
                snprintf(h.teacher, sizeof h.teacher, "%s", it->valuestring);
        } else if (!strcmp(k, "alpha")) {
            if (!cJSON_IsNumber(it) || !(it->valuedouble >= 0 && it->valuedouble <= 1))
                st = qc_error(QIAO_ERR_FORMAT, "%s: teacher.alpha must be a number in [0, 1]", what);
            else
                h.kd_alpha = (float)it->valuedouble;
        } else if (!strcmp(k, "temperature")) {
            if (!cJSON_IsNumber(it) || !(it->valuedouble >= 0.05 && it->valuedouble <= 100))
                st = qc_error(QIAO_ERR_FORMAT, "%s: teacher.temperature must be a number in [0.05, 100]", what);
            else
                h.kd_temperature = (float)it->valuedouble;
        } else {
            st = qc_error(QIAO_ERR_FORMAT, "%s: unknown key teacher.%s (a teacher has model, alpha, temperature)",
                          what, k);
        }
    }
    if (st == QIAO_OK && tea && !h.teacher[0])
        st = qc_error(QIAO_ERR_FORMAT, "%s: \"teacher\" needs \"model\", the teacher classifier's file", what);
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(root, "train");
    if (st == QIAO_OK && tr && !cJSON_IsObject(tr))
        st = qc_error(QIAO_ERR_FORMAT, "%s: \"train\" must be an object", what);
    for (const cJSON *it = tr ? tr->child : NULL; st == QIAO_OK && it; it = it->next) {
        bool known = false;
        if ((st = qtr_hparams_key(it, &h.tr, &known)) != QIAO_OK || known)
            continue;
        const char *k = it->string;
        if (!strcmp(k, "batch")) {
            if ((st = qtr_json_number(it, 1, 4096, true, &v)) == QIAO_OK)
                h.batch = (int64_t)v;
        } else if (!strcmp(k, "epochs")) {
            if ((st = qtr_json_number(it, 1e-3, 1e4, false, &v)) == QIAO_OK)
                h.epochs = v;
        } else if (!strcmp(k, "val_fraction")) {
            if ((st = qtr_json_number(it, 1e-3, 0.9, false, &v)) == QIAO_OK)
                h.val_fraction = v;
        } else if (!strcmp(k, "seed")) {
            if ((st = qtr_json_number(it, 0, 9007199254740991.0, true, &v)) == QIAO_OK)
                h.seed = (uint64_t)v;
        } else if (!strcmp(k, "head_lr")) {
            if ((st = qtr_json_number(it, 0, 10, false, &v)) == QIAO_OK)
                h.head_lr = (float)v;
        } else if (!strcmp(k, "smoothing")) {
            if ((st = qtr_json_number(it, 0, 0.5, false, &v)) == QIAO_OK)
                h.smoothing = (float)v;
        } else if (!strcmp(k, "entity_weight")) {
            if ((st = qtr_json_number(it, 0, 100, false, &v)) == QIAO_OK)
                h.entity_weight = (float)v;
        } else if (!strcmp(k, "rejection")) {
            if ((st = qtr_json_number(it, 0, 0.5, false, &v)) == QIAO_OK)
                h.rejection = v;
        } else if (!strcmp(k, "oos_label")) {
            if (!cJSON_IsString(it) || !it->valuestring[0] || strlen(it->valuestring) >= sizeof h.oos_label)
                st = qc_error(QIAO_ERR_FORMAT, "%s: train.oos_label must be a label name of 1 to %zu bytes", what,
                              sizeof h.oos_label - 1);
            else
                snprintf(h.oos_label, sizeof h.oos_label, "%s", it->valuestring);
        } else {
            st = qc_error(QIAO_ERR_FORMAT, "%s: unknown key train.%s", what, k);
        }
    }
    cJSON_Delete(root);
    if (st != QIAO_OK)
        return st;
    *out = h;
    return QIAO_OK;
}

/* ---- the model ------------------------------------------------------------------ */

/* The classifier's config: `base`'s, its text tower only, and the head. */
static qiao_status classifier_config(const qmod_model *base, const qmi_set *set, const qmi_hparams *h,
                                     qmod_config *out) {
    cJSON *root = cJSON_Parse(base->cfg.json);
    if (!root)
        return qc_error(QIAO_ERR_FORMAT, "intent: the model's config is not valid JSON");
    static const char *const drop[] = {"image", "audio", "fusion", "decoder", "heads", "train"};
    for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(root, drop[i]);
    cJSON *text = cJSON_GetObjectItemCaseSensitive(root, "text");
    if (h->layers > 0) {
        /* The first `layers` of the init's layers: their tensors keep their
         * names, so copying the shared tensors takes exactly them (a list's
         * layers are copied again from theirs: copy_layers). */
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(text, "layers");
        const double have = cJSON_IsNumber(n) ? n->valuedouble : 0.0;
        if (h->layers > have) {
            cJSON_Delete(root);
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "intent: the recipe keeps %lld layers, the model %s has %g",
                            (long long)h->layers, base->cfg.name, have);
        }
        for (int64_t i = 0; h->layer_list && i < h->layers; i++)
            if (h->layer_from[i] >= have) {
                cJSON_Delete(root);
                return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                                "intent: the recipe's layers[%lld] is layer %d, the model %s has layers 0 to %g",
                                (long long)i, (int)h->layer_from[i], base->cfg.name, have - 1);
            }
        cJSON_ReplaceItemInObjectCaseSensitive(text, "layers", cJSON_CreateNumber((double)h->layers));
    }
    char name[QMOD_NAME_MAX];
    snprintf(name, sizeof name, "%.*s-intent", QMOD_NAME_MAX - 8, base->cfg.name);
    cJSON_ReplaceItemInObjectCaseSensitive(root, "name", cJSON_CreateString(name));
    cJSON *heads = cJSON_AddObjectToObject(root, "heads"), *hd = cJSON_AddObjectToObject(heads, QMI_HEAD);
    cJSON_AddStringToObject(hd, "kind", "mlp");
    cJSON_AddStringToObject(hd, "tower", "text");
    cJSON_AddStringToObject(hd, "input", "embedding");
    cJSON_AddNumberToObject(hd, "hidden", (double)h->hidden);
    cJSON_AddNumberToObject(hd, "classes", set->n_labels);
    cJSON_AddNumberToObject(hd, "scale", h->scale);
    if (h->context > 0)
        cJSON_AddNumberToObject(hd, "context", (double)h->context);
    if (set->multi_label)
        cJSON_AddTrueToObject(hd, "multi_label");
    cJSON *labels = cJSON_AddArrayToObject(hd, "labels");
    for (int32_t i = 0; i < set->n_labels; i++)
        cJSON_AddItemToArray(labels, cJSON_CreateString(set->labels[i]));
    if (set->n_types > 0 && h->entity_weight > 0) {
        cJSON *ed = cJSON_AddObjectToObject(heads, QMI_ENT_HEAD);
        cJSON_AddStringToObject(ed, "kind", "mlp");
        cJSON_AddStringToObject(ed, "tower", "text");
        cJSON_AddStringToObject(ed, "input", "tokens");
        cJSON_AddNumberToObject(ed, "hidden", 0);
        cJSON_AddNumberToObject(ed, "classes", 1 + 2 * set->n_types);
        cJSON *tags = cJSON_AddArrayToObject(ed, "labels");
        cJSON_AddItemToArray(tags, cJSON_CreateString("O"));
        for (int32_t i = 0; i < set->n_types; i++) {
            char tag[QMI_MAX_NAME + 3];
            snprintf(tag, sizeof tag, "B-%s", set->types[i]);
            cJSON_AddItemToArray(tags, cJSON_CreateString(tag));
            tag[0] = 'I';
            cJSON_AddItemToArray(tags, cJSON_CreateString(tag));
        }
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json)
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent: out of memory");
    const qiao_status st = qmod_config_from_string(json, "intent classifier config", out);
    cJSON_free(json);
    return st;
}

qiao_status qmi_model_space(const qmod_model *m, qmi_set *out) {
    if (!out || !m)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qmi_model_space: NULL argument");
    memset(out, 0, sizeof *out);
    qiao_status st = qmi_model_names(m, &out->labels, &out->n_labels, &out->types, &out->n_types);
    if (st == QIAO_OK && !out->types && !(out->types = calloc(1, sizeof *out->types)))
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent: out of memory");
    if (st == QIAO_OK && !(out->path = strdup(m->cfg.name)))
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent: out of memory");
    for (int32_t i = 1; st == QIAO_OK && i < out->n_labels; i++)
        if (strcmp(out->labels[i - 1], out->labels[i]) >= 0)
            st = qc_error(QIAO_ERR_FORMAT, "model %s: the intent head's labels are not sorted and distinct",
                          m->cfg.name);
    if (st != QIAO_OK)
        qmi_set_free(out);
    return st;
}

/* ---- the objective ------------------------------------------------------------------ */

static const char *const k_metric_names[QMI_N_METRICS] = {"train_acc", "loss_entities"};
static const char *const k_val_names[QMI_N_VAL] = {"val_acc", "val_macro_f1", "val_entity_f1"};

typedef struct intent_obj {
    const qmi_train_params *p;
    qmi_hparams h;
    qmod_model *m;
    int head;
    qmi_set train, val;
    int64_t *order;                         /* (train.n) this epoch's permutation */
    int64_t order_epoch;                    /* the epoch `order` is for, -1 none */
    const char **texts;                     /* (batch) */
    qmi_context *contexts;                  /* (batch) each text's earlier turns */
    int32_t *targets;                       /* (batch) */
    float *mtargets;                        /* (batch, K) a multi-label head's 0/1 targets */
    float *losses, *probs, *dlogits, *demb; /* (B), (B, K), (B, K), (B, D) */
    qmod_batch b;
    qmod_work w;
    qmod_head_work hw;
    qmod_params g;
    float *g_bound;
    int64_t B;  /* this step's rows */
    bool fresh; /* the head is new: its labels are the training file's */
    /* the entity tagger, when the model has one (ent >= 0) */
    int ent;
    qmod_head_work ehw;
    const qmi_example **exs;                     /* (batch) this step's examples */
    int32_t *etargets;                           /* (ecap) a tag per token, -1 at padding */
    float *elosses, *eprobs, *edlogits, *dtok;   /* (ecap), (ecap, E2) twice, (ecap, C) */
    int64_t ecap;                                /* token rows the buffers hold */
    int64_t prompt_len;                          /* bytes of the "query" prompt before each text */
    /* distillation, with a teacher */
    float *tprobs;  /* (train.n, K) the teacher's probabilities at kd_temperature; NULL: no teacher */
    float *tbatch;  /* (batch, K) this step's rows of tprobs */
    int64_t *rows;  /* (batch) this step's examples' indices in train */
} intent_obj;

/* Grows the tagger's buffers to `rows` token rows. */
static qiao_status ent_buffers(intent_obj *o, int64_t rows) {
    if (rows <= o->ecap)
        return QIAO_OK;
    const int64_t E2 = o->m->cfg.heads[o->ent].mlp.classes, C = o->m->cfg.text.trunk.C;
    free(o->etargets), free(o->elosses), free(o->eprobs), free(o->edlogits), free(o->dtok);
    o->etargets = malloc((size_t)rows * sizeof *o->etargets);
    o->elosses = malloc((size_t)rows * sizeof *o->elosses);
    o->eprobs = malloc((size_t)(rows * E2) * sizeof *o->eprobs);
    o->edlogits = malloc((size_t)(rows * E2) * sizeof *o->edlogits);
    o->dtok = malloc((size_t)(rows * C) * sizeof *o->dtok);
    o->ecap = o->etargets && o->elosses && o->eprobs && o->edlogits && o->dtok ? rows : 0;
    return o->ecap ? QIAO_OK : qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent: out of memory for %lld tokens", (long long)rows);
}

void qmi_bio_targets(const qmi_example *e, const int64_t *offsets, int64_t T, int64_t prompt_len, int32_t *tags) {
    int64_t opened = -1; /* the last span given its B tag */
    for (int64_t t = 0; t < T; t++) {
        const int64_t s = offsets[2 * t], end = offsets[2 * t + 1];
        if (s < 0) {
            tags[t] = -1;
            continue;
        }
        tags[t] = 0;
        const int64_t a = s - prompt_len, z = end - prompt_len;
        if (z <= a || z <= 0)
            continue;
        for (int k = 0; k < e->n_spans; k++) {
            const qmi_span *sp = &e->spans[k];
            if (a < sp->end && z > sp->start) {
                tags[t] = 1 + 2 * sp->type + (opened == k ? 1 : 0);
                opened = k;
                break;
            }
        }
    }
}

/* The epoch's order: a Fisher-Yates shuffle seeded by (seed, epoch), so a
 * resumed run sees the same batches. */
static void epoch_order(intent_obj *o, int64_t epoch) {
    if (o->order_epoch == epoch)
        return;
    const int64_t n = o->train.n;
    for (int64_t i = 0; i < n; i++)
        o->order[i] = i;
    qc_rng rng;
    qc_rng_seed(&rng, o->h.seed * 0x9E3779B97F4A7C15ull + (uint64_t)epoch + 1);
    for (int64_t i = n - 1; i > 0; i--) {
        const int64_t j = (int64_t)(qc_rng_u64(&rng) % (uint64_t)(i + 1)), t = o->order[i];
        o->order[i] = o->order[j], o->order[j] = t;
    }
    o->order_epoch = epoch;
}

static qiao_status i_next_batch(void *user, int64_t step) {
    intent_obj *o = user;
    const int64_t n = o->train.n, B = o->h.batch < n ? o->h.batch : n;
    /* batch b of the run covers positions [b*B, (b+1)*B) of the epochs laid end to end */
    for (int64_t j = 0; j < B; j++) {
        const int64_t pos = step * B + j, epoch = pos / n;
        epoch_order(o, epoch);
        const qmi_example *e = &o->train.ex[o->order[pos % n]];
        o->texts[j] = e->text;
        o->contexts[j] = (qmi_context){e->context, (size_t)e->n_context};
        o->targets[j] = e->n_labels ? e->labels[0] : 0;
        o->exs[j] = e;
        o->rows[j] = o->order[pos % n];
        if (o->mtargets) {
            const int64_t K = o->m->cfg.heads[o->head].mlp.classes;
            memset(o->mtargets + j * K, 0, (size_t)K * sizeof(float));
            for (int l = 0; l < e->n_labels; l++)
                o->mtargets[j * K + e->labels[l]] = 1.0f;
        }
    }
    o->B = B;
    return QIAO_OK;
}

float qmi_distill_loss(const float *logits, const float *teacher, int64_t n, int64_t K, float T, float weight,
                       float *dlogits) {
    if (n <= 0 || K <= 0)
        return 0.0f;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *z = logits + i * K, *p = teacher + i * K;
        float mx = z[0];
        for (int64_t k = 1; k < K; k++)
            mx = fmaxf(mx, z[k]);
        double zs = 0;
        for (int64_t k = 0; k < K; k++)
            zs += exp((double)(z[k] - mx) / T);
        const double lse = log(zs);
        for (int64_t k = 0; k < K; k++) {
            const double lq = (double)(z[k] - mx) / T - lse; /* log softmax(z / T)_k */
            if (p[k] > 0)
                sum += (double)p[k] * (log((double)p[k]) - lq);
            dlogits[i * K + k] += (float)((double)weight * T * (exp(lq) - (double)p[k]) / (double)n);
        }
    }
    return (float)((double)T * T * sum / (double)n);
}

/* A multi-label head's loss: binary cross-entropy of each class's logit
 * against its 0/1 target, summed over the classes and averaged over the
 * batch; dlogits its gradient; *exact the share of rows whose classes at
 * 0.5 or more are exactly their targets. */
static void multi_label_loss(const float *logits, const float *y, int64_t B, int64_t K, float *loss, float *dlogits,
                             float *exact) {
    double sum = 0;
    int64_t right = 0;
    for (int64_t i = 0; i < B; i++) {
        bool all = true;
        for (int64_t k = 0; k < K; k++) {
            const float l = logits[i * K + k], t = y[i * K + k];
            /* log(1 + e^l) - t l, stable for either sign of l */
            sum += (double)(fmaxf(l, 0.0f) - l * t + log1pf(expf(-fabsf(l))));
            const float p = 1.0f / (1.0f + expf(-l));
            dlogits[i * K + k] = (p - t) / (float)B;
            all = all && ((l >= 0.0f) == (t > 0.5f));
        }
        right += all;
    }
    *loss = (float)(sum / (double)B);
    *exact = (float)right / (float)B;
}

static qiao_status i_step(void *user, const qtr_step_ctx *ctx, float *loss, float *metrics) {
    intent_obj *o = user;
    qmod_model *m = o->m;
    const qb_exec *ex = ctx->ex;
    if (o->g_bound != ctx->grads) {
        qc_table_bind(&m->tab, ctx->grads, &o->g);
        o->g_bound = ctx->grads;
    }
    const int64_t B = o->B, K = m->cfg.heads[o->head].mlp.classes, D = m->cfg.embed_dim;
    const float *emb, *logits;
    qiao_status st = qmi_logits(ex, m, &o->w, &o->hw, o->texts, o->contexts, (size_t)B, &o->b, &emb, &logits);
    if (st != QIAO_OK)
        return st;
    if (o->mtargets) {
        multi_label_loss(logits, o->mtargets, B, K, loss, o->dlogits, &metrics[QMI_M_ACC]);
    } else {
        /* with a teacher: (1 - alpha) CE + alpha T^2 KL(teacher_T || student_T) */
        const float a = o->tprobs ? o->h.kd_alpha : 0.0f;
        nn_cross_entropy_forward(ex, loss, o->losses, o->probs, logits, o->targets, B, K, o->h.smoothing, -1);
        memset(o->dlogits, 0, (size_t)(B * K) * sizeof(float));
        nn_cross_entropy_backward(ex, o->dlogits, 1.0f - a, o->probs, o->targets, B, K, o->h.smoothing, -1);
        if (o->tprobs) {
            for (int64_t i = 0; i < B; i++)
                memcpy(o->tbatch + i * K, o->tprobs + o->rows[i] * K, (size_t)K * sizeof(float));
            const float kd = qmi_distill_loss(logits, o->tbatch, B, K, o->h.kd_temperature, a, o->dlogits);
            *loss = (1.0f - a) * *loss + a * kd;
        }
        int64_t right = 0;
        for (int64_t i = 0; i < B; i++) {
            const float *l = logits + i * K;
            int64_t best = 0;
            for (int64_t k = 1; k < K; k++)
                best = l[k] > l[best] ? k : best;
            right += best == o->targets[i];
        }
        metrics[QMI_M_ACC] = (float)right / (float)B;
    }
    memset(o->demb, 0, (size_t)(B * D) * sizeof(float));
    qmod_head_backward(ex, m, &o->g, &o->hw, emb, B, o->dlogits, o->demb);
    const float *dtokens = NULL;
    metrics[QMI_M_ENT_LOSS] = 0.0f;
    if (o->ent >= 0) {
        /* the tagger on every token, its loss added with entity_weight */
        const float *elog;
        qmod_token_seq ts;
        st = qmi_entity_logits(ex, m, o->ent, &o->w, &o->ehw, &o->b, true, &elog, &ts);
        const int64_t N = ts.B * ts.T, E2 = m->cfg.heads[o->ent].mlp.classes;
        if (st == QIAO_OK)
            st = ent_buffers(o, N);
        if (st != QIAO_OK)
            return st;
        for (int64_t i = 0; i < B; i++)
            qmi_bio_targets(o->exs[i], o->b.offsets + i * o->b.T * 2, ts.T, o->prompt_len, o->etargets + i * ts.T);
        float eloss = 0;
        nn_cross_entropy_forward(ex, &eloss, o->elosses, o->eprobs, elog, o->etargets, N, E2, 0.0f, -1);
        memset(o->edlogits, 0, (size_t)(N * E2) * sizeof(float));
        nn_cross_entropy_backward(ex, o->edlogits, o->h.entity_weight, o->eprobs, o->etargets, N, E2, 0.0f, -1);
        memset(o->dtok, 0, (size_t)(N * ts.C) * sizeof(float));
        qmod_head_backward(ex, m, &o->g, &o->ehw, ts.x, N, o->edlogits, o->dtok);
        dtokens = o->dtok;
        *loss += o->h.entity_weight * eloss;
        metrics[QMI_M_ENT_LOSS] = eloss;
    }
    qmod_backward_at(ex, m, &o->g, &o->w, &o->b, o->demb, dtokens);
    return ex->ops->sync(ex);
}

static qiao_status i_validate(void *user, const qb_exec *ex, float *val) {
    intent_obj *o = user;
    qmi_eval e;
    /* in batches the training workspaces hold (a training set smaller than a batch makes them smaller) */
    qiao_status st = qmi_evaluate_with(ex, o->m, &o->w, &o->hw, o->ent >= 0 ? &o->ehw : NULL, o->head, &o->val, o->hw.N_max, &e);
    if (st != QIAO_OK)
        return st;
    val[QMI_V_ACC] = (float)e.accuracy;
    val[QMI_V_MACRO_F1] = (float)e.macro_f1;
    val[QMI_V_ENT_F1] = (float)e.ent_f1;
    qmi_eval_free(&e);
    return QIAO_OK;
}

/* A checkpoint is a model file, so --init, `qiao intent eval` and --resume read it. */
static qiao_status i_save(void *user, const char *path, const qc_st_entry *extra, size_t n_extra, const qc_st_kv *meta,
                          size_t n_meta) {
    const intent_obj *o = user;
    return qmod_save_ex(o->m, path, QIAO_DTYPE_F32, extra, n_extra, meta, n_meta);
}

static void i_hparams_json(void *user, cJSON *obj) {
    const qmi_hparams *h = &((const intent_obj *)user)->h;
    cJSON_AddNumberToObject(obj, "batch", (double)h->batch);
    cJSON_AddNumberToObject(obj, "epochs", h->epochs);
    cJSON_AddNumberToObject(obj, "val_fraction", h->val_fraction);
    cJSON_AddNumberToObject(obj, "seed", (double)h->seed);
    cJSON_AddNumberToObject(obj, "head_lr", h->head_lr);
    cJSON_AddNumberToObject(obj, "smoothing", h->smoothing);
    cJSON_AddNumberToObject(obj, "rejection", h->rejection);
    cJSON_AddNumberToObject(obj, "entity_weight", h->entity_weight);
    cJSON_AddStringToObject(obj, "oos_label", h->oos_label);
    if (h->teacher[0]) {
        cJSON *t = cJSON_AddObjectToObject(obj, "teacher");
        cJSON_AddStringToObject(t, "model", h->teacher);
        cJSON_AddNumberToObject(t, "alpha", h->kd_alpha);
        cJSON_AddNumberToObject(t, "temperature", h->kd_temperature);
    }
}

static void obj_free(intent_obj *o) {
    qmod_batch_free(&o->b);
    qmod_work_free(&o->w);
    qmod_head_work_free(&o->hw);
    qmod_head_work_free(&o->ehw);
    free(o->exs), free(o->etargets), free(o->elosses), free(o->eprobs), free(o->edlogits), free(o->dtok);
    qmi_set_free(&o->train);
    qmi_set_free(&o->val);
    free(o->order), free(o->texts), free(o->contexts), free(o->targets), free(o->mtargets);
    free(o->losses), free(o->probs), free(o->dlogits), free(o->demb);
    free(o->tprobs), free(o->tbatch), free(o->rows);
    qmod_free(o->m);
}

static void free_names(char **names, int32_t n) {
    for (int32_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

/* The teacher's probabilities at kd_temperature of every training text
 * (with its context, as the teacher reads it) into o->tprobs: the teacher
 * is loaded, run once in batches and freed. Its intents must be the
 * student's, in the same order. */
static qiao_status teacher_probs(intent_obj *o, int threads) {
    const qmi_hparams *h = &o->h;
    const int64_t n = o->train.n, K = o->m->cfg.heads[o->head].mlp.classes, batch = 32;
    if (o->m->cfg.heads[o->head].multi_label)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "intent: distillation (\"teacher\") needs a single-label head");
    qmod_model *t = NULL;
    qiao_status st = qmod_load(h->teacher, &t);
    if (st != QIAO_OK)
        return st;
    const int head = qmod_head_find(&t->cfg, QMI_HEAD);
    char **tl = NULL, **sl = NULL, **tt = NULL, **stypes = NULL;
    int32_t ntl = 0, nsl = 0, ntt = 0, nst = 0;
    if (head < 0 || t->cfg.heads[head].multi_label)
        st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "intent: the teacher %s is not a single-label intent classifier",
                      h->teacher);
    if (st == QIAO_OK)
        st = qmi_model_names(t, &tl, &ntl, &tt, &ntt);
    if (st == QIAO_OK)
        st = qmi_model_names(o->m, &sl, &nsl, &stypes, &nst);
    if (st == QIAO_OK && ntl != nsl)
        st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "intent: the teacher %s has %d intents, the student %d: they must be the same",
                      h->teacher, (int)ntl, (int)nsl);
    for (int32_t i = 0; st == QIAO_OK && i < nsl; i++)
        if (strcmp(tl[i], sl[i]))
            st = qc_error(QIAO_ERR_INVALID_ARGUMENT,
                          "intent: the teacher %s's intent %d is %s, the student's %s: the intents must be the same",
                          h->teacher, (int)i, tl[i], sl[i]);
    free_names(tl, ntl), free_names(tt, ntt), free_names(sl, nsl), free_names(stypes, nst);
    qmod_work w;
    qmod_head_work hw;
    qmod_batch b;
    memset(&w, 0, sizeof w), memset(&hw, 0, sizeof hw), memset(&b, 0, sizeof b);
    const char **texts = malloc((size_t)batch * sizeof *texts);
    qmi_context *contexts = malloc((size_t)batch * sizeof *contexts);
    if (st == QIAO_OK && (!texts || !contexts || !(o->tprobs = malloc((size_t)(n * K) * sizeof *o->tprobs))))
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent: out of memory for the teacher's probabilities");
    if (st == QIAO_OK)
        st = qmi_open_work(t, head, batch, &w, &hw);
    qb_exec ex;
    qb_exec_cpu(&ex, threads);
    for (int64_t i = 0; st == QIAO_OK && i < n; i += batch) {
        const int64_t k = n - i < batch ? n - i : batch;
        for (int64_t j = 0; j < k; j++) {
            const qmi_example *e = &o->train.ex[i + j];
            texts[j] = e->text;
            contexts[j] = (qmi_context){e->context, (size_t)e->n_context};
        }
        const float *emb, *logits;
        st = qmi_logits(&ex, t, &w, &hw, texts, contexts, (size_t)k, &b, &emb, &logits);
        for (int64_t j = 0; st == QIAO_OK && j < k; j++)
            qmi_softmax(logits + j * K, K, h->kd_temperature, o->tprobs + (i + j) * K);
    }
    qmi_close_work(&w, &hw); /* safe after a failed or no open: the workspaces are zeroed */
    qmod_batch_free(&b);
    free(texts), free(contexts);
    qmod_free(t);
    if (st == QIAO_OK)
        qc_log(QIAO_LOG_INFO, "intent: distilling from %s (alpha %g, temperature %g) on %lld training texts",
               h->teacher, (double)h->kd_alpha, (double)h->kd_temperature, (long long)n);
    return st;
}

/* The text layers of a recipe's "layers" list: each tensor of dst's layer
 * i ("text.<...>blocks.<i>.<rest>") from src's layer layer_from[i], the
 * names otherwise the same. */
static qiao_status copy_layers(qmod_model *dst, const qmod_model *src, const qmi_hparams *h) {
    static const char key[] = "blocks.";
    for (size_t t = 0; t < dst->tab.n; t++) {
        const char *name = dst->tab.t[t].name, *at = strstr(name, key);
        if (strncmp(name, "text.", 5) || !at)
            continue;
        char *end = NULL;
        const long i = strtol(at + strlen(key), &end, 10);
        if (end == at + strlen(key) || *end != '.' || i < 0 || i >= h->layers)
            continue;
        char from[QC_NAME_MAX];
        snprintf(from, sizeof from, "%.*s%d%s", (int)(at + strlen(key) - name), name, (int)h->layer_from[i], end);
        const int64_t j = qc_table_find(&src->tab, from);
        if (j < 0)
            return qc_error(QIAO_ERR_FORMAT, "intent: %s has no %s for the recipe's layers[%ld]", src->cfg.name, from, i);
        if (src->tab.t[j].numel != dst->tab.t[t].numel)
            return qc_error(QIAO_ERR_FORMAT, "intent: %s's %s differs in size from %s", src->cfg.name, from, name);
        memcpy(dst->arena.base + dst->tab.t[t].offset, src->arena.base + src->tab.t[j].offset,
               (size_t)dst->tab.t[t].numel * sizeof(float));
    }
    return QIAO_OK;
}

/* The model to train: the checkpoint's when resuming, `init` when it is
 * already a classifier for these labels, else a new classifier on init's
 * text tower (its tensors copied, the head drawn from the seed). */
static qiao_status model_for(intent_obj *o, const qmi_set *all) {
    const qmi_train_params *p = o->p;
    qmod_model *base = NULL;
    qiao_status st = qmod_load(p->resume_path ? p->resume_path : p->init_path, &base);
    if (st != QIAO_OK)
        return st;
    if (qmod_head_find(&base->cfg, QMI_HEAD) >= 0) {
        o->m = base;
        return QIAO_OK;
    }
    o->fresh = true;
    if (!qmod_has_tower(&base->cfg, QMOD_TEXT) || !base->tok) {
        const qiao_status e =
            qc_error(QIAO_ERR_INVALID_ARGUMENT, "intent: model %s has no text tower with a tokenizer", base->cfg.name);
        qmod_free(base);
        return e;
    }
    qmod_config cfg;
    st = classifier_config(base, all, &o->h, &cfg);
    if (st == QIAO_OK) {
        st = qmod_create(&cfg, o->h.seed, &o->m);
        qmod_config_free(&cfg);
    }
    size_t copied = 0;
    if (st == QIAO_OK)
        st = qmod_copy_shared(o->m, base, &copied);
    if (st == QIAO_OK && o->h.layer_list)
        st = copy_layers(o->m, base, &o->h);
    if (st == QIAO_OK) {
        o->m->tok = base->tok;
        base->tok = NULL;
        qc_log(QIAO_LOG_INFO, "intent: %zu tensors from %s, a head of %d intents new", copied, base->cfg.name,
               all->n_labels);
    }
    qmod_free(base);
    return st;
}

qiao_status qmi_train(const qmi_train_params *p) {
    if (!p || !p->init_path || !p->data_path || !p->out_path)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "intent train: the model, the data and the output are required");
    intent_obj o;
    memset(&o, 0, sizeof o);
    o.p = p;
    o.h = p->hp;
    o.order_epoch = -1;
    /* the labels: the training file's, or the classifier's when going on */
    qmi_set all;
    qiao_status st = qmi_set_load(p->data_path, NULL, &all);
    if (st == QIAO_OK)
        st = model_for(&o, &all);
    if (st == QIAO_OK) {
        o.head = qmod_head_find(&o.m->cfg, QMI_HEAD);
        o.ent = qmod_head_find(&o.m->cfg, QMI_ENT_HEAD);
        const char *prompt = qmod_config_prompt(&o.m->cfg, "query");
        o.prompt_len = prompt ? (int64_t)strlen(prompt) : 0;
    }
    /* read against the model's labels, so a classifier trained on more keeps
     * them (a new head's are the file's: nothing to read again) */
    qmi_set space;
    memset(&space, 0, sizeof space);
    if (st == QIAO_OK)
        st = qmi_model_space(o.m, &space);
    if (st == QIAO_OK && !o.fresh) {
        qmi_set_free(&all);
        st = qmi_set_load(p->data_path, &space, &all);
    }
    if (st == QIAO_OK && p->val_path) {
        o.train = all;
        memset(&all, 0, sizeof all);
        st = qmi_set_load(p->val_path, &space, &o.val);
    } else if (st == QIAO_OK) {
        st = qmi_set_split(&all, o.h.val_fraction, o.h.seed, &o.train, &o.val);
    }
    qmi_set_free(&all);
    qmi_set_free(&space);
    if (st == QIAO_OK && o.train.n < 1)
        st = qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: nothing to train on", p->data_path);
    const int64_t B = st == QIAO_OK ? (o.h.batch < o.train.n ? o.h.batch : o.train.n) : 1;
    const int64_t per_epoch = st == QIAO_OK ? (o.train.n + B - 1) / B : 1;
    if (o.h.tr.steps <= 0)
        o.h.tr.steps = (int64_t)ceil(o.h.epochs * (double)per_epoch);
    if (o.h.tr.warmup < 0)
        o.h.tr.warmup = o.h.tr.steps / 10;
    if (o.h.tr.eval_every <= 0)
        o.h.tr.eval_every = per_epoch;
    qtr_hparams_finish(&o.h.tr);
    const int64_t K = st == QIAO_OK ? o.m->cfg.heads[o.head].mlp.classes : 1,
                  D = st == QIAO_OK ? o.m->cfg.embed_dim : 1;
    if (st == QIAO_OK) {
        o.order = malloc((size_t)o.train.n * sizeof *o.order);
        o.texts = malloc((size_t)B * sizeof *o.texts);
        o.contexts = malloc((size_t)B * sizeof *o.contexts);
        o.targets = malloc((size_t)B * sizeof *o.targets);
        o.exs = malloc((size_t)B * sizeof *o.exs);
        o.rows = malloc((size_t)B * sizeof *o.rows);
        if (o.h.teacher[0] && !(o.tbatch = malloc((size_t)(B * K) * sizeof *o.tbatch)))
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent: out of memory");
        if (o.m->cfg.heads[o.head].multi_label && !(o.mtargets = malloc((size_t)(B * K) * sizeof *o.mtargets)))
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent: out of memory");
        o.losses = malloc((size_t)B * sizeof *o.losses);
        o.probs = malloc((size_t)(B * K) * sizeof *o.probs);
        o.dlogits = malloc((size_t)(B * K) * sizeof *o.dlogits);
        o.demb = malloc((size_t)(B * D) * sizeof *o.demb);
        if (!o.order || !o.texts || !o.contexts || !o.targets || !o.exs || !o.rows || !o.losses || !o.probs ||
            !o.dlogits || !o.demb)
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "intent: out of memory for batches of %lld", (long long)B);
    }
    if (st == QIAO_OK && o.h.teacher[0])
        st = teacher_probs(&o, p->threads);
    if (st == QIAO_OK)
        st = qmod_work_init(&o.w, o.m, QMOD_TEXT, B, 64, true); /* grows with longer texts */
    if (st == QIAO_OK)
        st = qmod_head_work_init(&o.hw, o.m, o.head, B, true);
    if (st == QIAO_OK && o.h.head_lr > 0 && o.h.tr.lr > 0)
        qtr_lr_scale_prefix(&o.m->tab, "heads.", o.h.head_lr / o.h.tr.lr);
    if (st == QIAO_OK) {
        qc_log(QIAO_LOG_INFO,
               "intent: %s, %lld training and %lld validation examples, %lld intents, %lld steps of %lld",
               o.m->cfg.name, (long long)o.train.n, (long long)o.val.n, (long long)K, (long long)o.h.tr.steps,
               (long long)B);
        qb_exec ex;
        qb_exec_cpu(&ex, p->threads);
        const qtr_objective obj = {.name = "intent",
                                   .tab = &o.m->tab,
                                   .params = o.m->arena.base,
                                   .n_metrics = QMI_N_METRICS,
                                   .metric_names = k_metric_names,
                                   .n_val = QMI_N_VAL,
                                   .val_names = k_val_names,
                                   .samples_per_step = B,
                                   .user = &o,
                                   .next_batch = i_next_batch,
                                   .step = i_step,
                                   .validate = o.val.n > 0 ? i_validate : NULL,
                                   .save = i_save,
                                   .hparams_json = i_hparams_json};
        const qmi_hparams dh = qmi_hparams_default();
        qtr_params tp = {.hp = o.h.tr,
                         .ex = &ex,
                         .ckpt_path = p->ckpt_path,
                         .resume_path = p->resume_path,
                         .csv_path = p->log_path,
                         .hp_default = &dh.tr,
                         .on_step = p->on_step,
                         .user = p->user,
                         .stop = p->stop};
        st = qtr_run(&obj, &tp, NULL);
    }
    /* the classifier is written in bf16: calibrate what will be served */
    if (st == QIAO_OK)
        for (size_t i = 0; i < o.m->arena.n; i++)
            o.m->arena.base[i] = qc_bf16_to_f32(qc_f32_to_bf16(o.m->arena.base[i]));
    if (st == QIAO_OK && o.val.n > 0) {
        qb_exec ex;
        qb_exec_cpu(&ex, p->threads);
        qmi_calibration c;
        st = qmi_calibrate_with(&ex, o.m, &o.w, &o.hw, o.head, &o.val, o.hw.N_max, o.h.rejection, o.h.oos_label, &c);
        if (st == QIAO_OK)
            qc_log(QIAO_LOG_INFO,
                   "intent: calibrated on %lld validation examples: temperature %.3f (NLL %.4f -> %.4f, ECE %.4f -> "
                   "%.4f), out-of-scope threshold %.4f",
                   (long long)c.n, (double)c.temperature, c.nll_before, c.nll_after, c.ece_before, c.ece_after,
                   (double)c.threshold);
    }
    if (st == QIAO_OK)
        st = qmod_save(o.m, p->out_path, QIAO_DTYPE_BF16);
    obj_free(&o);
    return st;
}
