/* models/train/trainer.c - the training loop objectives plug into (see trainer.h).
 *
 * A step: the gradient arena is zeroed, the objective runs forward and
 * backward on its batch, the global gradient norm is clipped, the schedule
 * gives the learning rate and AdamW updates every tensor not flagged
 * QC_FROZEN. The norm covers the whole arena, so an objective leaves the
 * gradients of what it does not train at zero (it skips their backward). */
#define _POSIX_C_SOURCE 200809L
#include "models/train/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "nn/nn.h"

/* ---- hyperparameters ---------------------------------------------------------- */

qtr_hparams qtr_hparams_default(void) {
    qtr_hparams h = {.steps = 1000,
                     .warmup = -1,
                     .restart = 0,
                     .lr = 1e-3f,
                     .lr_min = -1.0f,
                     .beta1 = 0.9f,
                     .beta2 = 0.999f,
                     .eps = 1e-8f,
                     .weight_decay = 0.01f,
                     .clip = 1.0f,
                     .eval_every = 100,
                     .ckpt_every = 100};
    return h;
}

void qtr_hparams_finish(qtr_hparams *h) {
    if (h->warmup < 0) h->warmup = h->steps / 20;
    if (h->lr_min < 0) h->lr_min = h->lr / 20.0f;
}

qiao_status qtr_json_number(const cJSON *it, double lo, double hi, bool integer, double *out) {
    if (!cJSON_IsNumber(it) || !(it->valuedouble >= lo && it->valuedouble <= hi) ||
        (integer && it->valuedouble != floor(it->valuedouble)))
        return qc_error(QIAO_ERR_FORMAT, "config: train.%s must be %s in [%g, %g]", it->string,
                        integer ? "an integer" : "a number", lo, hi);
    *out = it->valuedouble;
    return QIAO_OK;
}

qiao_status qtr_hparams_key(const cJSON *it, qtr_hparams *h, bool *known) {
    /* one row per key: where it goes, its range, whether it is a whole number */
    static const struct {
        const char *key;
        size_t off;
        bool integer;
        double lo, hi;
    } keys[] = {
        {"steps", offsetof(qtr_hparams, steps), true, 1, 1e9},
        {"warmup", offsetof(qtr_hparams, warmup), true, 0, 1e9},
        {"restart", offsetof(qtr_hparams, restart), true, 0, 1e9},
        {"lr", offsetof(qtr_hparams, lr), false, 0, 1},
        {"lr_min", offsetof(qtr_hparams, lr_min), false, 0, 1},
        {"beta1", offsetof(qtr_hparams, beta1), false, 0, 0.999999},
        {"beta2", offsetof(qtr_hparams, beta2), false, 0, 0.999999},
        {"eps", offsetof(qtr_hparams, eps), false, 1e-30, 1},
        {"weight_decay", offsetof(qtr_hparams, weight_decay), false, 0, 10},
        {"clip", offsetof(qtr_hparams, clip), false, 0, 1e6},
        {"eval_every", offsetof(qtr_hparams, eval_every), true, 0, 1e9},
        {"ckpt_every", offsetof(qtr_hparams, ckpt_every), true, 0, 1e9},
    };
    *known = false;
    if (!it || !it->string) return QIAO_OK;
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        if (strcmp(it->string, keys[k].key)) continue;
        *known = true;
        double v = 0;
        qiao_status st = qtr_json_number(it, keys[k].lo, keys[k].hi, keys[k].integer, &v);
        if (st != QIAO_OK) return st;
        char *field = (char *)h + keys[k].off;
        if (keys[k].integer) {
            const int64_t x = (int64_t)v;
            memcpy(field, &x, sizeof x);
        } else {
            const float x = (float)v;
            memcpy(field, &x, sizeof x);
        }
        return QIAO_OK;
    }
    return QIAO_OK;
}

void qtr_hparams_to_json(const qtr_hparams *h, const qtr_hparams *dflt, cJSON *o) {
    const qtr_hparams d = dflt ? *dflt : qtr_hparams_default();
    cJSON_AddNumberToObject(o, "steps", (double)h->steps);
    cJSON_AddNumberToObject(o, "warmup", (double)h->warmup);
    if (h->restart > 0) cJSON_AddNumberToObject(o, "restart", (double)h->restart);
    cJSON_AddNumberToObject(o, "lr", h->lr);
    cJSON_AddNumberToObject(o, "lr_min", h->lr_min);
    if (h->beta1 != d.beta1) cJSON_AddNumberToObject(o, "beta1", h->beta1);
    if (h->beta2 != d.beta2) cJSON_AddNumberToObject(o, "beta2", h->beta2);
    if (h->eps != d.eps) cJSON_AddNumberToObject(o, "eps", h->eps);
    cJSON_AddNumberToObject(o, "weight_decay", h->weight_decay);
    cJSON_AddNumberToObject(o, "clip", h->clip);
    cJSON_AddNumberToObject(o, "eval_every", (double)h->eval_every);
    cJSON_AddNumberToObject(o, "ckpt_every", (double)h->ckpt_every);
}

size_t qtr_freeze_prefix(qc_table *tab, const char *prefix) {
    size_t n = 0;
    const size_t len = strlen(prefix);
    for (size_t i = 0; i < tab->n; i++)
        if (!strncmp(tab->t[i].name, prefix, len)) {
            tab->t[i].flags |= QC_FROZEN;
            n++;
        }
    return n;
}

size_t qtr_lr_scale_prefix(qc_table *tab, const char *prefix, float scale) {
    size_t n = 0;
    const size_t len = strlen(prefix);
    for (size_t i = 0; i < tab->n; i++)
        if (!strncmp(tab->t[i].name, prefix, len)) {
            tab->t[i].lr_scale = scale;
            n++;
        }
    return n;
}

qiao_status qtr_recipe_read(const char *path, char **out) {
    *out = NULL;
    uint8_t *bytes = NULL;
    size_t n = 0;
    qiao_status st = qc_read_file(path, 1 << 20, &bytes, &n);
    if (st != QIAO_OK) return st;
    if (memchr(bytes, 0, n)) {
        free(bytes);
        return qc_error(QIAO_ERR_FORMAT, "%s: contains a NUL byte, not a recipe", path);
    }
    char *json = realloc(bytes, n + 1);
    if (!json) {
        free(bytes);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    json[n] = 0;
    *out = json;
    return QIAO_OK;
}

bool qtr_recipe_changes(const char *model_json, const char *recipe_json, const char *section) {
    cJSON *model = cJSON_Parse(model_json), *recipe = cJSON_Parse(recipe_json);
    const cJSON *want = cJSON_GetObjectItemCaseSensitive(recipe, section);
    const bool changes = model && cJSON_IsObject(want) &&
                         !cJSON_Compare(cJSON_GetObjectItemCaseSensitive(model, section), want, true);
    cJSON_Delete(model);
    cJSON_Delete(recipe);
    return changes;
}

size_t qtr_freeze_all_but(qc_table *tab, const char *const *keep) {
    size_t n = 0;
    for (size_t i = 0; i < tab->n; i++) {
        bool kept = false;
        for (const char *const *k = keep; k && *k && !kept; k++) kept = !strncmp(tab->t[i].name, *k, strlen(*k));
        if (!kept) {
            tab->t[i].flags |= QC_FROZEN;
            n++;
        }
    }
    return n;
}

qiao_status qtr_checkpoint_info(const char *path, int64_t *step, char **hparams_json) {
    if (hparams_json) *hparams_json = NULL;
    if (!path) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qtr_checkpoint_info: path is NULL");
    qc_st_file *f = NULL;
    qiao_status st = qc_st_open(path, &f);
    if (st != QIAO_OK) return st;
    const char *js = qc_st_metadata_get(f, QTR_META_TRAIN);
    cJSON *o = js ? cJSON_Parse(js) : NULL;
    const cJSON *stp = cJSON_GetObjectItemCaseSensitive(o, "step");
    if (!cJSON_IsObject(o) || !cJSON_IsNumber(stp) || stp->valuedouble < 0) {
        st = qc_error(QIAO_ERR_FORMAT, "%s: not a training checkpoint (metadata %s missing or bad)", path,
                      QTR_META_TRAIN);
    } else {
        if (step) *step = (int64_t)stp->valuedouble;
        if (hparams_json) {
            cJSON_DeleteItemFromObjectCaseSensitive(o, "step");
            cJSON_DeleteItemFromObjectCaseSensitive(o, "seconds");
            char *s = cJSON_PrintUnformatted(o);
            *hparams_json = s ? strdup(s) : NULL; /* the caller's free(), whatever cJSON's allocator */
            cJSON_free(s);
            if (!*hparams_json) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        }
    }
    cJSON_Delete(o);
    qc_st_close(f);
    return st;
}

qiao_status qtr_checkpoint_recipe(const char *path, char **json) {
    *json = NULL;
    char *js = NULL;
    qiao_status st = qtr_checkpoint_info(path, NULL, &js);
    if (st != QIAO_OK) return st;
    const size_t len = strlen(js) + 16;
    if ((*json = malloc(len)))
        snprintf(*json, len, "{\"train\":%s}", js);
    else
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    free(js);
    return st;
}

/* ---- the run's state ------------------------------------------------------------ */

typedef struct run {
    const qtr_objective *o;
    const qtr_params *p;
    qtr_hparams h;
    qc_arena grads, m, v;     /* laid out by o->tab */
    char **mnames, **vnames;  /* "optim.m.<name>", "optim.v.<name>" */
    int64_t step;             /* completed steps */
    double seconds_before;    /* wall time of earlier runs (resume) */
    FILE *csv;
} run;

static void run_free(run *r) {
    if (r->mnames)
        for (size_t i = 0; i < r->o->tab->n; i++) free(r->mnames[i]);
    if (r->vnames)
        for (size_t i = 0; i < r->o->tab->n; i++) free(r->vnames[i]);
    free(r->mnames);
    free(r->vnames);
    qc_arena_free(&r->grads);
    qc_arena_free(&r->m);
    qc_arena_free(&r->v);
    if (r->csv) fclose(r->csv);
}

static qiao_status moment_names(run *r) {
    const qc_table *tab = r->o->tab;
    r->mnames = calloc(tab->n ? tab->n : 1, sizeof(char *));
    r->vnames = calloc(tab->n ? tab->n : 1, sizeof(char *));
    if (!r->mnames || !r->vnames) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "trainer: out of memory");
    for (size_t i = 0; i < tab->n; i++) {
        const size_t len = strlen(tab->t[i].name) + 16;
        r->mnames[i] = malloc(len);
        r->vnames[i] = malloc(len);
        if (!r->mnames[i] || !r->vnames[i]) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "trainer: out of memory");
        snprintf(r->mnames[i], len, "optim.m.%s", tab->t[i].name);
        snprintf(r->vnames[i], len, "optim.v.%s", tab->t[i].name);
    }
    return QIAO_OK;
}

/* ---- checkpoints ------------------------------------------------------------------ */

static char *train_json(const run *r, double seconds) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "step", (double)r->step);
    cJSON_AddNumberToObject(o, "seconds", seconds);
    qtr_hparams_to_json(&r->h, r->p->hp_default, o);
    if (r->o->hparams_json) r->o->hparams_json(r->o->user, o);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static qiao_status save_checkpoint(run *r, double seconds) {
    const qc_table *tab = r->o->tab;
    const size_t n = tab->n;
    /* parameters first (used only when the trainer writes the file itself), then m and v */
    qc_st_entry *e = calloc(3 * n + 1, sizeof *e);
    char *js = train_json(r, seconds);
    char *state = r->o->save_state ? r->o->save_state(r->o->user) : NULL;
    qiao_status st = QIAO_OK;
    if (!e || !js || (r->o->save_state && !state)) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "checkpoint: out of memory");
    if (st == QIAO_OK) {
        qc_st_table_entries(tab, r->o->params, e);
        qc_st_table_entries(tab, r->m.base, e + n);
        qc_st_table_entries(tab, r->v.base, e + 2 * n);
        for (size_t i = 0; i < n; i++) {
            e[i].dtype = QIAO_DTYPE_F32; /* a checkpoint resumes to the bits: no rounding to storage */
            e[n + i].name = r->mnames[i];
            e[n + i].dtype = QIAO_DTYPE_F32;
            e[2 * n + i].name = r->vnames[i];
            e[2 * n + i].dtype = QIAO_DTYPE_F32;
        }
        const qc_st_kv meta[2] = {{QTR_META_TRAIN, js}, {QTR_META_STATE, state}};
        const size_t n_meta = state ? 2 : 1;
        if (r->o->save)
            st = r->o->save(r->o->user, r->p->ckpt_path, e + n, 2 * n, meta, n_meta);
        else
            st = qc_st_write(r->p->ckpt_path, e, 3 * n, meta, n_meta);
    }
    free(state);
    cJSON_free(js);
    free(e);
    return st;
}

/* Parameters, moments, step, wall time and the objective's state of a checkpoint. */
static qiao_status load_checkpoint(run *r, const char *path) {
    qc_st_file *f = NULL;
    qiao_status st = qc_st_open(path, &f);
    if (st != QIAO_OK) return st;
    const char *js = qc_st_metadata_get(f, QTR_META_TRAIN);
    cJSON *o = js ? cJSON_Parse(js) : NULL;
    const cJSON *stp = cJSON_GetObjectItemCaseSensitive(o, "step"), *sec = cJSON_GetObjectItemCaseSensitive(o, "seconds");
    if (!cJSON_IsNumber(stp) || stp->valuedouble < 0 || stp->valuedouble > 1e12)
        st = qc_error(QIAO_ERR_FORMAT, "%s: not a training checkpoint (metadata %s missing or bad)", path,
                      QTR_META_TRAIN);
    if (st == QIAO_OK) {
        r->step = (int64_t)stp->valuedouble;
        r->seconds_before = cJSON_IsNumber(sec) ? sec->valuedouble : 0.0;
        st = qc_st_load_table(f, r->o->tab, r->o->params);
    }
    const qc_table *tab = r->o->tab;
    for (size_t i = 0; st == QIAO_OK && i < tab->n; i++) {
        for (int w = 0; w < 2 && st == QIAO_OK; w++) {
            const char *name = w ? r->vnames[i] : r->mnames[i];
            const qc_st_tensor *x = qc_st_find(f, name);
            if (!x || x->dtype != QIAO_DTYPE_F32 || x->numel != tab->t[i].numel)
                st = qc_error(QIAO_ERR_FORMAT, "%s: optimizer tensor %s missing or of the wrong shape", path, name);
            else
                memcpy((w ? r->v.base : r->m.base) + tab->t[i].offset, x->data, x->nbytes);
        }
    }
    if (st == QIAO_OK && r->o->load_state) {
        const char *state = qc_st_metadata_get(f, QTR_META_STATE);
        if (!state)
            st = qc_error(QIAO_ERR_FORMAT, "%s: the %s objective's state (metadata %s) is missing", path, r->o->name,
                          QTR_META_STATE);
        else
            st = r->o->load_state(r->o->user, state);
    }
    cJSON_Delete(o);
    qc_st_close(f);
    return st;
}

/* ---- the CSV log ------------------------------------------------------------------ */

static char *csv_header(const qtr_objective *o) {
    size_t len = 128;
    for (int i = 0; i < o->n_metrics; i++) len += strlen(o->metric_names[i]) + 1;
    for (int i = 0; i < o->n_val; i++) len += strlen(o->val_names[i]) + 1;
    char *h = malloc(len);
    if (!h) return NULL;
    size_t k = (size_t)snprintf(h, len, "step,seconds,lr,loss");
    for (int i = 0; i < o->n_metrics; i++) k += (size_t)snprintf(h + k, len - k, ",%s", o->metric_names[i]);
    k += (size_t)snprintf(h + k, len - k, ",grad_norm,samples_per_s");
    for (int i = 0; i < o->n_val; i++) k += (size_t)snprintf(h + k, len - k, ",%s", o->val_names[i]);
    snprintf(h + k, len - k, "\n");
    return h;
}

/* Opens the log: a fresh run starts it with the header; a resumed run keeps
 * the header and the rows up to its checkpoint's step (it rewrites what the
 * stopped run logged after that), or starts afresh where the file is
 * missing or has another header. */
static qiao_status csv_open(run *r, const char *path, bool resumed) {
    char *header = csv_header(r->o);
    if (!header) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "trainer: out of memory");
    char *keep = NULL;
    size_t len = 0;
    FILE *f = NULL;
    if (resumed && qc_fopen_read(path, &f, NULL) == QIAO_OK) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        bool first = true;
        while ((n = getline(&line, &cap, f)) > 0) {
            if (first && strcmp(line, header)) break; /* another objective's log */
            char *end;
            const long long s = strtoll(line, &end, 10);
            if (!first && (end == line || *end != ',' || s > r->step)) break;
            first = false;
            char *k = realloc(keep, len + (size_t)n + 1);
            if (!k) break;
            keep = k;
            memcpy(keep + len, line, (size_t)n);
            len += (size_t)n;
        }
        free(line);
        fclose(f);
    }
    qc_error_clear();
    r->csv = fopen(path, "w");
    qiao_status st = QIAO_OK;
    if (!r->csv)
        st = qc_error(QIAO_ERR_IO, "%s: cannot write the training log", path);
    else if ((len ? fwrite(keep, 1, len, r->csv) != len : fputs(header, r->csv) < 0) || fflush(r->csv) != 0)
        st = qc_error(QIAO_ERR_IO, "%s: cannot write the training log", path);
    free(keep);
    free(header);
    return st;
}

static void csv_cell(FILE *f, double v) {
    if (isfinite(v))
        fprintf(f, ",%.6g", v);
    else
        fputc(',', f);
}

static void csv_row(run *r, const qtr_log *l) {
    FILE *f = r->csv;
    fprintf(f, "%lld,%.3f,%.6g,%.6g", (long long)l->step, l->seconds, (double)l->lr, (double)l->loss);
    for (int i = 0; i < r->o->n_metrics; i++) csv_cell(f, l->metrics[i]);
    csv_cell(f, l->grad_norm);
    csv_cell(f, l->samples_per_s);
    for (int i = 0; i < r->o->n_val; i++) csv_cell(f, l->val[i]);
    fputc('\n', f);
    fflush(f); /* a plot drawn while the run goes on sees whole rows */
}

/* ---- the roofline ------------------------------------------------------------------ */

/* GFLOP/s of ex's gemm on one (M x K)(K x N) product repeated `batch` times,
 * over about `seconds` after one warm-up call. */
static qiao_status gemm_rate(const qb_exec *one, int64_t M, int64_t N, int64_t K, int64_t batch, bool ta, bool tb,
                             double seconds, double *gflops) {
    const size_t na = (size_t)(M * K * batch), nb = (size_t)(K * N * batch), nc = (size_t)(M * N * batch);
    float *A = one->ops->alloc(one, na * sizeof(float)), *B = one->ops->alloc(one, nb * sizeof(float));
    float *C = one->ops->alloc(one, nc * sizeof(float));
    qiao_status st = QIAO_OK;
    if (!A || !B || !C) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "profile: no memory for a %lldx%lldx%lld GEMM", (long long)M,
                      (long long)N, (long long)K);
    } else {
        /* the layers' leading dimensions: op(A) is M x K, op(B) is K x N, both row-major */
        const int64_t lda = ta ? M : K, ldb = tb ? K : N;
        int64_t calls = 0;
        double t0 = 0, dt = 0;
        for (int64_t i = -1; dt < seconds || calls < 3; i++) {
            one->ops->gemm(one, ta, tb, M, N, K, 1.0f, A, lda, M * K, B, ldb, K * N, 0.0f, C, N, M * N, batch);
            if (i < 0) {
                t0 = qc_now(); /* after the warm-up call */
                continue;
            }
            calls++;
            dt = qc_now() - t0;
        }
        *gflops = 2.0 * (double)M * (double)N * (double)K * (double)batch * (double)calls / dt * 1e-9;
        st = one->ops->sync(one);
    }
    one->ops->free(one, A);
    one->ops->free(one, B);
    one->ops->free(one, C);
    return st;
}

qiao_status qtr_profile_roofline(const qb_exec *ex, qc_prof *prof, double seconds) {
    qb_exec one = *ex;
    one.n_threads = 1;
    one.prof = NULL;
    one.packed = NULL;
    const int threads = ex->n_threads > 0 ? ex->n_threads : 1;
    qc_prof_summary sm;
    qc_prof_summary_get(prof, &sm);
    /* half on the big square, half over the shapes */
    double g = 0;
    qiao_status st = gemm_rate(&one, 1024, 1024, 1024, 1, false, false, seconds / 2, &g);
    if (st != QIAO_OK) return st;
    char label[96];
    snprintf(label, sizeof label, "%d x raw 1-thread sgemm on 1024x1024x1024: %.1f", threads, g);
    qc_prof_set_peak(prof, g * threads, label);
    for (int i = 0; i < sm.n_shapes; i++) {
        qc_prof_shape s;
        if (!qc_prof_shape_get(prof, i, &s)) break;
        double gs = 0;
        if ((st = gemm_rate(&one, s.M, s.N, s.K, s.batch, s.trans_a, s.trans_b,
                            seconds / 2 / (sm.n_shapes > 0 ? sm.n_shapes : 1), &gs)) != QIAO_OK)
            return st;
        qc_prof_set_shape_raw(prof, i, gs * threads);
    }
    return QIAO_OK;
}

/* ---- the loop -------------------------------------------------------------------- */

static qiao_status check_objective(const qtr_objective *o, const qtr_params *p) {
    if (!o || !p || !p->ex) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "trainer: objective, params and ex are required");
    const char *name = o->name ? o->name : "an";
    if (!o->tab || !o->params || !o->next_batch || !o->step)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "trainer: %s objective needs a table, parameters, next_batch and step",
                        name);
    if (o->n_metrics < 0 || o->n_metrics > QTR_MAX_METRICS || o->n_val < 0 || o->n_val > QTR_MAX_METRICS ||
        (o->n_metrics && !o->metric_names) || (o->n_val && !o->val_names))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "trainer: %s objective: 0..%d metric names of each kind", name,
                        QTR_MAX_METRICS);
    for (int i = 0; i < o->n_metrics + o->n_val; i++) {
        const char *m = i < o->n_metrics ? o->metric_names[i] : o->val_names[i - o->n_metrics];
        if (!m || !*m || strpbrk(m, ",\n\r\""))
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "trainer: %s objective: metric %d has no usable CSV name", name,
                            i);
    }
    if (p->hp.steps < 1) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "trainer: steps must be at least 1");
    if (!(p->hp.beta1 >= 0 && p->hp.beta1 < 1) || !(p->hp.beta2 >= 0 && p->hp.beta2 < 1) || !(p->hp.eps > 0))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "trainer: need 0 <= beta1, beta2 < 1 and eps > 0");
    return QIAO_OK;
}

static bool stop_requested(const qtr_params *p) {
    return (p->stop && *p->stop) || (p->cancel && p->cancel(p->cancel_user));
}

qiao_status qtr_run(const qtr_objective *o, const qtr_params *p, qtr_result *res) {
    if (res) memset(res, 0, sizeof *res);
    qiao_status st = check_objective(o, p);
    if (st != QIAO_OK) return st;
    run r;
    memset(&r, 0, sizeof r);
    r.o = o;
    r.p = p;
    r.h = p->hp;
    qtr_hparams_finish(&r.h);
    const size_t n = o->tab->total;
    if ((st = qc_arena_alloc(&r.grads, n)) == QIAO_OK && (st = qc_arena_alloc(&r.m, n)) == QIAO_OK &&
        (st = qc_arena_alloc(&r.v, n)) == QIAO_OK)
        st = moment_names(&r);
    if (st == QIAO_OK && p->resume_path) st = load_checkpoint(&r, p->resume_path);
    if (st == QIAO_OK && p->csv_path) st = csv_open(&r, p->csv_path, p->resume_path != NULL);
    const int64_t step0 = r.step;
    /* the profiled steps run on a copy of the context that carries the profiler */
    qb_exec pex = *p->ex;
    pex.prof = NULL;
    if (st == QIAO_OK && p->prof) st = qc_prof_names(p->prof, o->tab, o->params);
    float metrics[QTR_MAX_METRICS], val[QTR_MAX_METRICS];
    const double t0 = qc_now();
    double seconds = r.seconds_before;
    int64_t saved = p->resume_path ? r.step : -1; /* the step the checkpoint on disk holds */
    bool stopped = false;
    while (st == QIAO_OK && r.step < r.h.steps) {
        if (stop_requested(p)) {
            stopped = true;
            break;
        }
        const int64_t step = r.step; /* 0-based index of this step */
        qc_prof *const prof = p->prof && step - step0 >= p->prof_skip ? p->prof : NULL;
        pex.prof = prof;
        const double step_t0 = prof ? qc_now() : 0.0;
        int pt = QC_PROF_BEGIN(prof, QC_PROF_LOADER, NULL, 0, "loader.wait");
        st = o->next_batch(o->user, step);
        QC_PROF_END(prof, pt, 0);
        if (st != QIAO_OK) break;
        /* frozen tensors' gradients are never read: not cleared either */
        nn_zero_grads(&pex, o->tab, r.grads.base);
        for (int i = 0; i < QTR_MAX_METRICS; i++) metrics[i] = val[i] = NAN;
        float loss = NAN;
        const qtr_step_ctx c = {&pex, step, r.grads.base};
        pt = QC_PROF_BEGIN(prof, QC_PROF_GROUP, NULL, 0, "forward_backward");
        st = o->step(o->user, &c, &loss, metrics);
        QC_PROF_END(prof, pt, 0);
        if (st != QIAO_OK) break;
        /* the kernels' own failures, before gradients that may be unfinished are applied */
        pt = QC_PROF_BEGIN(prof, QC_PROF_OTHER, NULL, 0, "sync");
        st = p->ex->ops->sync(p->ex);
        QC_PROF_END(prof, pt, 0);
        if (st != QIAO_OK) break;
        if (!isfinite(loss)) {
            st = qc_error(QIAO_ERR_INTERNAL, "step %lld: the %s loss is not finite (%g); lower the learning rate",
                          (long long)(step + 1), o->name ? o->name : "objective's", (double)loss);
            break;
        }
        pt = QC_PROF_BEGIN(prof, QC_PROF_OPTIMIZER, NULL, 0, "schedule");
        const float lr = nn_lr_warmup_cosine(step - r.h.restart, r.h.warmup, r.h.steps - r.h.restart, r.h.lr,
                                             r.h.lr_min);
        QC_PROF_END(prof, pt, 0);
        /* The clip's factor goes to AdamW, which scales each gradient as it
         * reads it: one pass over the gradients fewer than scaling them here. */
        const double gnorm_d = nn_grad_norm(&pex, o->tab, r.grads.base);
        const float gnorm = (float)gnorm_d;
        if (!isfinite(gnorm_d)) {
            st = qc_error(QIAO_ERR_INTERNAL, "step %lld: the gradient norm is not finite", (long long)(step + 1));
            break;
        }
        nn_adamw_config oc = nn_adamw_default();
        oc.lr = lr;
        oc.beta1 = r.h.beta1;
        oc.beta2 = r.h.beta2;
        oc.eps = r.h.eps;
        oc.weight_decay = r.h.weight_decay;
        nn_adamw_update(&pex, o->tab, o->params, r.grads.base, r.m.base, r.v.base, step + 1,
                        nn_clip_scale(gnorm_d, r.h.clip), &oc);
        r.step++;
        if (o->after_update) {
            pt = QC_PROF_BEGIN(prof, QC_PROF_OTHER, NULL, 0, "after_update");
            o->after_update(o->user, metrics);
            QC_PROF_END(prof, pt, 0);
        }
        if (prof) qc_prof_add_steps(prof, 1, qc_now() - step_t0);
        pex.prof = NULL;

        const bool last = r.step == r.h.steps;
        qtr_log l;
        memset(&l, 0, sizeof l);
        if (o->validate && ((r.h.eval_every > 0 && r.step % r.h.eval_every == 0) || last)) {
            if (o->validate(o->user, p->ex, val) != QIAO_OK) {
                qc_log(QIAO_LOG_WARN, "validation failed: %s", qiao_last_error());
                for (int i = 0; i < o->n_val; i++) val[i] = NAN;
            } else {
                l.validated = true;
            }
        }
        const double elapsed = qc_now() - t0;
        seconds = r.seconds_before + elapsed;
        l.step = r.step;
        l.steps = r.h.steps;
        l.seconds = seconds;
        l.samples_per_s = elapsed > 0 ? (double)((r.step - step0) * o->samples_per_step) / elapsed : NAN;
        l.eta_s = l.samples_per_s > 0 ? (double)((r.h.steps - r.step) * o->samples_per_step) / l.samples_per_s : NAN;
        l.lr = lr;
        l.loss = loss;
        l.grad_norm = gnorm;
        l.metrics = metrics;
        l.val = val;
        l.checkpointed = p->ckpt_path && (last || (r.h.ckpt_every > 0 && r.step % r.h.ckpt_every == 0));
        if (r.csv) csv_row(&r, &l);
        if (p->on_step && p->on_step(&l, p->user)) stopped = true;
        if (p->ckpt_path && (stopped || l.checkpointed)) {
            if ((st = save_checkpoint(&r, seconds)) == QIAO_OK) saved = r.step;
        }
        if (stopped) break;
    }
    if (st == QIAO_OK && stopped && p->ckpt_path && saved != r.step &&
        (st = save_checkpoint(&r, r.seconds_before + (qc_now() - t0))) == QIAO_OK)
        saved = r.step;
    if (st == QIAO_OK && p->prof && p->prof_roofline_s > 0)
        st = qtr_profile_roofline(p->ex, p->prof, p->prof_roofline_s);
    if (r.csv && fclose(r.csv) != 0 && st == QIAO_OK) st = qc_error(QIAO_ERR_IO, "%s: cannot write", p->csv_path);
    r.csv = NULL;
    if (st == QIAO_OK && stopped) {
        if (p->ckpt_path)
            st = qc_error(QIAO_ERR_CANCELLED, "training stopped at step %lld; resume from %s", (long long)r.step,
                          p->ckpt_path);
        else
            st = qc_error(QIAO_ERR_CANCELLED, "training cancelled at step %lld (no checkpoint kept)",
                          (long long)r.step);
    }
    if (res) {
        res->step0 = step0;
        res->step = r.step;
        res->seconds = seconds;
    }
    run_free(&r);
    return st;
}
