/* tests/unit/test_trainer.c - the trainer (models/train/trainer.h) with a
 * second objective: a linear probe, a softmax classifier over 4 classes on
 * the output of a frozen linear "encoder", fed synthetic separable vectors.
 * The probe is what a new objective needs and nothing more: its parameter
 * table, its data (next_batch, from an RNG it saves as its state), its
 * forward and backward (step), its metrics and a validation.
 *   learns        held-out accuracy far above chance (1/4) after 60 steps,
 *                 and the logged validation matches a recount;
 *   resume_exact  a run stopped by SIGINT after step 30 (the handler sets the
 *                 flag the trainer polls: a checkpoint, QIAO_ERR_CANCELLED)
 *                 and resumed into a probe initialized
 *                 differently ends with the parameters and AdamW moments of
 *                 the uninterrupted run, bit for bit, and the same log;
 *   csv           the log's header is the objective's metric names, one row
 *                 per step, validation only where it ran; the curves are
 *                 drawn from it (apps/qiao/plot.c) with those columns;
 *   frozen        the frozen encoder stays bit for bit, while weight decay
 *                 alone moves it when it is not frozen;
 *   errors        a bad config key or value, a missing callback, a checkpoint
 *                 of another table: clear statuses, no crash. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "apps/qiao/plot.h"
#include "core/safetensors.h"
#include "models/train/trainer.h"
#include "nn/nn.h"
#include "qiao.h"
#include "testutil.h"

enum { D = 16, K = 4, E = 16, N_TRAIN = 512, N_TEST = 512, B = 32, STEPS = 60, STOP_AT = 30 };

typedef struct probe_params {
    float *proj;  /* (E, D) the frozen encoder */
    float *w;     /* (K, E) */
    float *b;     /* (K) */
} probe_params;

typedef struct probe {
    qb_exec ex;
    qc_table tab;
    qc_arena params;
    probe_params p, g;
    float *g_bound;
    float *x_train, *x_test;         /* (N, D) */
    int32_t *y_train, *y_test;       /* (N) */
    qc_rng order;                    /* which training rows make each batch: the state saved */
    int64_t batch_size;              /* from the config's "batch" */
    float xb[B * D], emb[B * E], logits[B * K], probs[B * K], losses[B], dlogits[B * K];
    int32_t yb[B];
} probe;

/* Vectors around K class means (N(0, 1) each coordinate, so the classes are
 * about 5.6 apart) with unit noise: separable, not trivially. The same for
 * every probe, whatever its parameters' seed. */
static void make_data(float *x, int32_t *y, int64_t n, uint64_t seed) {
    float means[K * D];
    qt_fill_normal(means, K * D, 1.0f, 99);
    qc_rng r;
    qc_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) {
        y[i] = (int32_t)qc_rng_below(&r, K);
        for (int64_t j = 0; j < D; j++) x[i * D + j] = means[y[i] * D + j] + qc_rng_normal(&r);
    }
}

static void probe_free(probe *pr) {
    qc_table_free(&pr->tab);
    qc_arena_free(&pr->params);
    free(pr->x_train);
    free(pr->x_test);
    free(pr->y_train);
    free(pr->y_test);
}

static void probe_init(probe *pr, uint64_t seed, bool freeze) {
    memset(pr, 0, sizeof *pr);
    qb_exec_cpu(&pr->ex, 2);
    qc_table_init_empty(&pr->tab);
    assert_int_equal(qc_table_add_dims(&pr->tab, "", "encoder.proj", 2, E, D, 0, QC_INIT_NORMAL, 0.25f, 0,
                                       offsetof(probe_params, proj)),
                     QIAO_OK);
    assert_int_equal(qc_table_add_dims(&pr->tab, "", "head.weight", 2, K, E, 0, QC_INIT_NORMAL, 0.02f, 0,
                                       offsetof(probe_params, w)),
                     QIAO_OK);
    assert_int_equal(qc_table_add_dims(&pr->tab, "", "head.bias", 1, K, 0, 0, QC_INIT_ZEROS, 0, QC_NO_DECAY,
                                       offsetof(probe_params, b)),
                     QIAO_OK);
    if (freeze) assert_int_equal(qtr_freeze_prefix(&pr->tab, "encoder."), 1);
    assert_int_equal(qc_arena_alloc(&pr->params, pr->tab.total), QIAO_OK);
    qc_table_init(&pr->tab, pr->params.base, seed);
    qc_table_bind(&pr->tab, pr->params.base, &pr->p);
    pr->x_train = malloc(N_TRAIN * D * sizeof(float));
    pr->x_test = malloc(N_TEST * D * sizeof(float));
    pr->y_train = malloc(N_TRAIN * sizeof(int32_t));
    pr->y_test = malloc(N_TEST * sizeof(int32_t));
    assert_true(pr->x_train && pr->x_test && pr->y_train && pr->y_test);
    make_data(pr->x_train, pr->y_train, N_TRAIN, 1);
    make_data(pr->x_test, pr->y_test, N_TEST, 2);
    qc_rng_seed(&pr->order, 7);
    pr->batch_size = B;
}

/* logits of the rows of x (n <= B), through the frozen encoder and the head */
static void probe_forward(probe *pr, const float *x, int64_t n) {
    nn_linear_forward(&pr->ex, pr->emb, x, pr->p.proj, NULL, n, D, E);
    nn_linear_forward(&pr->ex, pr->logits, pr->emb, pr->p.w, pr->p.b, n, E, K);
}

static int64_t count_correct(const probe *pr, const int32_t *y, int64_t n) {
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++) {
        int best = 0;
        for (int k = 1; k < K; k++)
            if (pr->logits[i * K + k] > pr->logits[i * K + best]) best = k;
        c += best == y[i];
    }
    return c;
}

/* ---- the objective's callbacks ---- */

static qiao_status p_next_batch(void *user, int64_t step) {
    (void)step; /* the order comes from pr->order, which a checkpoint keeps */
    probe *pr = user;
    for (int64_t i = 0; i < B; i++) {
        const int64_t row = (int64_t)qc_rng_below(&pr->order, N_TRAIN);
        memcpy(pr->xb + i * D, pr->x_train + row * D, D * sizeof(float));
        pr->yb[i] = pr->y_train[row];
    }
    return QIAO_OK;
}

static qiao_status p_step(void *user, const qtr_step_ctx *c, float *loss, float *metrics) {
    probe *pr = user;
    if (pr->g_bound != c->grads) {
        qc_table_bind(&pr->tab, c->grads, &pr->g);
        pr->g_bound = c->grads;
    }
    probe_forward(pr, pr->xb, B);
    nn_cross_entropy_forward(c->ex, loss, pr->losses, pr->probs, pr->logits, pr->yb, B, K, 0.0f, -1);
    memset(pr->dlogits, 0, sizeof pr->dlogits);
    nn_cross_entropy_backward(c->ex, pr->dlogits, 1.0f, pr->probs, pr->yb, B, K, 0.0f, -1);
    /* the encoder is frozen: no gradient flows into it */
    nn_linear_backward(c->ex, NULL, pr->g.w, pr->g.b, pr->dlogits, pr->emb, pr->p.w, B, E, K);
    metrics[0] = (float)count_correct(pr, pr->yb, B) / (float)B;
    return QIAO_OK;
}

static qiao_status p_validate(void *user, const qb_exec *ex, float *val) {
    (void)ex;
    probe *pr = user;
    int64_t correct = 0;
    for (int64_t r0 = 0; r0 < N_TEST; r0 += B) {
        probe_forward(pr, pr->x_test + r0 * D, B);
        correct += count_correct(pr, pr->y_test + r0, B);
    }
    val[0] = (float)correct / (float)N_TEST;
    return QIAO_OK;
}

static char *p_save_state(void *user) {
    const probe *pr = user;
    char *s = malloc(80);
    if (s)
        snprintf(s, 80, "%016llx%016llx%016llx%016llx", (unsigned long long)pr->order.s[0],
                 (unsigned long long)pr->order.s[1], (unsigned long long)pr->order.s[2],
                 (unsigned long long)pr->order.s[3]);
    return s;
}

static qiao_status p_load_state(void *user, const char *state) {
    probe *pr = user;
    if (strlen(state) != 64) return qc_error(QIAO_ERR_FORMAT, "probe: bad state \"%s\"", state);
    for (int i = 0; i < 4; i++) {
        char word[17];
        memcpy(word, state + 16 * i, 16);
        word[16] = 0;
        char *end;
        pr->order.s[i] = strtoull(word, &end, 16);
        if (*end) return qc_error(QIAO_ERR_FORMAT, "probe: bad state \"%s\"", state);
    }
    return QIAO_OK;
}

static void p_hparams_json(void *user, cJSON *o) {
    cJSON_AddNumberToObject(o, "batch", (double)((const probe *)user)->batch_size);
}

static const char *const k_metrics[1] = {"train_accuracy"};
static const char *const k_val[1] = {"val_accuracy"};

static qtr_objective probe_objective(probe *pr) {
    qtr_objective o = {.name = "probe",
                       .tab = &pr->tab,
                       .params = pr->params.base,
                       .n_metrics = 1,
                       .metric_names = k_metrics,
                       .n_val = 1,
                       .val_names = k_val,
                       .samples_per_step = B,
                       .user = pr,
                       .next_batch = p_next_batch,
                       .step = p_step,
                       .validate = p_validate,
                       .hparams_json = p_hparams_json,
                       .save_state = p_save_state,
                       .load_state = p_load_state};
    return o;
}

/* The probe's config: the trainer's keys and its own "batch". */
static qiao_status probe_config(const char *json, qtr_hparams *h, probe *pr) {
    cJSON *root = cJSON_Parse(json);
    if (!root) return qc_error(QIAO_ERR_FORMAT, "config: not valid JSON");
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(root, "train");
    qiao_status st = QIAO_OK;
    for (const cJSON *it = tr ? tr->child : NULL; st == QIAO_OK && it; it = it->next) {
        bool known = false;
        double v;
        if ((st = qtr_hparams_key(it, h, &known)) != QIAO_OK || known) continue;
        if (!strcmp(it->string, "batch")) {
            if ((st = qtr_json_number(it, B, B, true, &v)) == QIAO_OK) pr->batch_size = (int64_t)v;
        } else {
            st = qc_error(QIAO_ERR_FORMAT, "config: unknown key train.%s", it->string);
        }
    }
    cJSON_Delete(root);
    return st;
}

#define CONFIG                                                                                          \
    "{\"train\": {\"steps\": 60, \"warmup\": 6, \"lr\": 0.05, \"lr_min\": 0.005, \"weight_decay\": 0.05," \
    " \"beta2\": 0.99, \"clip\": 1, \"eval_every\": 20, \"ckpt_every\": 25, \"batch\": 32}}"

/* ---- running it ---- */

/* Set by SIGINT, as `qiao train`'s handler does; the trainer polls it. */
static volatile sig_atomic_t g_stop;
static void on_sigint(int sig) {
    (void)sig;
    g_stop = 1;
}

typedef struct watch {
    int64_t stop_at;                 /* raise SIGINT after this step (0 = never) */
    int64_t last;
    float loss[STEPS + 1], val[STEPS + 1];
} watch;

static int on_step(const qtr_log *l, void *user) {
    watch *w = user;
    w->last = l->step;
    assert_true(l->step >= 1 && l->step <= STEPS);
    w->loss[l->step] = l->loss;
    w->val[l->step] = l->val[0];
    assert_true(l->validated == isfinite(l->val[0]));
    assert_true(l->samples_per_s > 0);
    if (w->stop_at && l->step == w->stop_at) assert_int_equal(raise(SIGINT), 0);
    return 0;
}

static qiao_status run_probe(probe *pr, const char *ckpt, const char *resume, const char *csv, watch *w) {
    qtr_params p;
    memset(&p, 0, sizeof p);
    p.hp = qtr_hparams_default();
    assert_int_equal(probe_config(CONFIG, &p.hp, pr), QIAO_OK);
    p.ex = &pr->ex;
    p.ckpt_path = ckpt;
    p.resume_path = resume;
    p.csv_path = csv;
    p.on_step = on_step;
    p.user = w;
    p.stop = &g_stop;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    g_stop = 0;
    assert_int_equal(sigaction(SIGINT, &sa, &old), 0);
    const qtr_objective o = probe_objective(pr);
    const qiao_status st = qtr_run(&o, &p, NULL);
    sigaction(SIGINT, &old, NULL);
    return st;
}

typedef struct paths {
    char dir[64], a[128], b[128], csv_a[128], csv_b[128], png[128];
} paths;

static void paths_make(paths *p) {
    snprintf(p->dir, sizeof p->dir, "/tmp/qiao-trainer-XXXXXX");
    assert_non_null(mkdtemp(p->dir));
    snprintf(p->a, sizeof p->a, "%s/a.ckpt.safetensors", p->dir);
    snprintf(p->b, sizeof p->b, "%s/b.ckpt.safetensors", p->dir);
    snprintf(p->csv_a, sizeof p->csv_a, "%s/a.csv", p->dir);
    snprintf(p->csv_b, sizeof p->csv_b, "%s/b.csv", p->dir);
    snprintf(p->png, sizeof p->png, "%s/b.png", p->dir);
}

static void paths_free(paths *p) {
    unlink(p->a);
    unlink(p->b);
    unlink(p->csv_a);
    unlink(p->csv_b);
    unlink(p->png);
    rmdir(p->dir);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *s = calloc(1 << 20, 1);
    assert_non_null(s);
    const size_t n = fread(s, 1, (1 << 20) - 1, f);
    fclose(f);
    assert_true(n > 0 && n < (1 << 20) - 1);
    return s;
}

/* The log without its wall-time columns (seconds, samples_per_s), which
 * differ between any two runs. */
static char *deterministic_columns(const char *csv) {
    char *out = calloc(strlen(csv) + 1, 1), *o = out;
    assert_non_null(out);
    int col = 0;
    for (const char *c = csv; *c; c++) {
        if (*c == '\n') {
            col = 0;
            *o++ = '\n';
            continue;
        }
        if (*c == ',') col++;
        if (col != 1 && col != 6) *o++ = *c;
    }
    return out;
}

/* ---- the cases ---- */

static void learns(void **state) {
    (void)state;
    probe pr;
    probe_init(&pr, 3, true);
    watch w = {0};
    assert_int_equal(run_probe(&pr, NULL, NULL, NULL, &w), QIAO_OK);
    assert_int_equal(w.last, STEPS);
    float val[1];
    assert_int_equal(p_validate(&pr, &pr.ex, val), QIAO_OK);
    printf("probe: loss %.3f at step 1, %.3f at step %d; held-out accuracy %.4f (chance %.2f)\n", (double)w.loss[1],
           (double)w.loss[STEPS], STEPS, (double)val[0], 1.0 / K);
    assert_true(fabs(w.loss[1] - log((double)K)) < 0.1); /* a head near zero starts at chance */
    assert_true(w.loss[STEPS] < 0.5 * log((double)K));
    assert_true(val[0] >= 0.9f);
    assert_true(val[0] == w.val[STEPS]); /* the last step's validation is the model's */
    assert_true(isnan(w.val[1]) && isfinite(w.val[20]) && isfinite(w.val[40]) && isnan(w.val[41]));
    probe_free(&pr);
}

static void assert_same_tensors(const char *a, const char *b, const char *prefix, size_t *count) {
    qc_st_file *fa = NULL, *fb = NULL;
    assert_int_equal(qc_st_open(a, &fa), QIAO_OK);
    assert_int_equal(qc_st_open(b, &fb), QIAO_OK);
    assert_int_equal(qc_st_count(fa), qc_st_count(fb));
    for (size_t i = 0; i < qc_st_count(fa); i++) {
        const qc_st_tensor *x = qc_st_at(fa, i), *y = qc_st_find(fb, x->name);
        assert_non_null(y);
        if (strncmp(x->name, prefix, strlen(prefix))) continue;
        assert_int_equal(x->nbytes, y->nbytes);
        assert_memory_equal(x->data, y->data, x->nbytes);
        (*count)++;
    }
    qc_st_close(fa);
    qc_st_close(fb);
}

static void resume_exact(void **state) {
    (void)state;
    paths d;
    paths_make(&d);
    probe a, b, c;
    probe_init(&a, 3, true);
    probe_init(&b, 3, true);
    probe_init(&c, 11, true); /* another start: what it resumes to must come from the checkpoint */
    watch wa = {0}, wb = {.stop_at = STOP_AT}, wc = {0};
    assert_int_equal(run_probe(&a, d.a, NULL, d.csv_a, &wa), QIAO_OK);
    assert_int_equal(run_probe(&b, d.b, NULL, d.csv_b, &wb), QIAO_ERR_CANCELLED);
    assert_non_null(strstr(qiao_last_error(), "resume from"));
    assert_int_equal(wb.last, STOP_AT);
    int64_t step = 0;
    char *js = NULL;
    assert_int_equal(qtr_checkpoint_info(d.b, &step, &js), QIAO_OK);
    assert_int_equal(step, STOP_AT);
    assert_non_null(strstr(js, "\"beta2\":0.99"));
    assert_non_null(strstr(js, "\"batch\":32"));
    free(js);
    assert_true(memcmp(a.params.base, c.params.base, a.tab.total * sizeof(float)) != 0);

    assert_int_equal(run_probe(&c, d.b, d.b, d.csv_b, &wc), QIAO_OK);
    assert_int_equal(wc.last, STEPS);
    for (int s = STOP_AT + 1; s <= STEPS; s++) assert_memory_equal(&wa.loss[s], &wc.loss[s], sizeof(float));
    /* the parameters in memory, then parameters and both moments in the last checkpoints */
    assert_memory_equal(a.params.base, c.params.base, a.tab.total * sizeof(float));
    size_t n = 0;
    assert_same_tensors(d.a, d.b, "", &n);
    assert_int_equal(n, 3 * a.tab.n);
    n = 0;
    assert_same_tensors(d.a, d.b, "optim.m.", &n);
    assert_same_tensors(d.a, d.b, "optim.v.", &n);
    assert_int_equal(n, 2 * a.tab.n);
    printf("resume: stopped at step %d, resumed to %d: %zu parameter and moment tensors bit-identical\n", STOP_AT,
           STEPS, 3 * a.tab.n);
    /* the resumed log: the stopped run's rows up to the checkpoint, then the rest, as the whole run's */
    char *la = slurp(d.csv_a), *lb = slurp(d.csv_b);
    char *da = deterministic_columns(la), *db = deterministic_columns(lb);
    assert_string_equal(da, db);
    free(la);
    free(lb);
    free(da);
    free(db);
    probe_free(&a);
    probe_free(&b);
    probe_free(&c);
    paths_free(&d);
}

static void csv(void **state) {
    (void)state;
    paths d;
    paths_make(&d);
    probe pr;
    probe_init(&pr, 3, true);
    watch w = {0};
    assert_int_equal(run_probe(&pr, NULL, NULL, d.csv_b, &w), QIAO_OK);
    char *log = slurp(d.csv_b);
    const char *header = "step,seconds,lr,loss,train_accuracy,grad_norm,samples_per_s,val_accuracy\n";
    assert_true(!strncmp(log, header, strlen(header)));
    int rows = 0, validated = 0;
    for (const char *line = strchr(log, '\n') + 1; *line; line = strchr(line, '\n') + 1) {
        rows++;
        char *end;
        assert_int_equal(strtoll(line, &end, 10), rows);
        const char *nl = strchr(line, '\n'), *last = nl;
        while (last[-1] != ',') last--;
        validated += last != nl; /* a value in the last column */
    }
    assert_int_equal(rows, STEPS);
    assert_int_equal(validated, STEPS / 20);
    /* the curves, drawn from whatever loss and metric columns the log has */
    char err[256];
    if (plot_training_csv(d.csv_b, d.png, err, sizeof err) != 0) fail_msg("%s", err);
    qiao_image *img = NULL;
    assert_int_equal(qiao_image_decode_file(d.png, NULL, &img), QIAO_OK);
    assert_int_equal(qiao_image_width(img), 1200);
    int64_t coloured = 0;
    const uint8_t *px = qiao_image_pixels(img);
    const size_t stride = qiao_image_stride(img);
    for (size_t y = 0; y < 800; y++)
        for (size_t x = 0; x < 1200; x++) {
            const uint8_t *q = px + y * stride + 3 * x;
            coloured += abs(q[0] - q[1]) > 40 || abs(q[1] - q[2]) > 40 || abs(q[0] - q[2]) > 40;
        }
    qiao_image_free(img);
    printf("csv: %d rows, %d with validation; the curves have %lld coloured pixels\n", rows, validated,
           (long long)coloured);
    assert_true(coloured > 2000);
    free(log);
    probe_free(&pr);
    paths_free(&d);
}

static void frozen(void **state) {
    (void)state;
    probe pr, init, loose;
    probe_init(&init, 3, true);
    probe_init(&pr, 3, true);
    probe_init(&loose, 3, false);
    watch w = {0}, wl = {0};
    assert_int_equal(run_probe(&pr, NULL, NULL, NULL, &w), QIAO_OK);
    assert_int_equal(run_probe(&loose, NULL, NULL, NULL, &wl), QIAO_OK);
    const size_t proj = (size_t)(E * D) * sizeof(float);
    assert_memory_equal(pr.p.proj, init.p.proj, proj);
    assert_true(memcmp(pr.p.w, init.p.w, (size_t)(K * E) * sizeof(float)) != 0);
    /* not frozen, the encoder gets no gradient but decays */
    assert_true(memcmp(loose.p.proj, init.p.proj, proj) != 0);
    probe_free(&pr);
    probe_free(&init);
    probe_free(&loose);
}

static void errors(void **state) {
    (void)state;
    probe pr;
    probe_init(&pr, 3, true);
    qtr_hparams h = qtr_hparams_default();
    assert_int_equal(probe_config("{\"train\": {\"epochs\": 3}}", &h, &pr), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "train.epochs"));
    assert_int_equal(probe_config("{\"train\": {\"beta2\": 1.5}}", &h, &pr), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "train.beta2"));
    assert_int_equal(probe_config("{\"train\": {\"steps\": 2.5}}", &h, &pr), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "train.steps must be an integer"));
    assert_int_equal(probe_config("{\"train\": {\"batch\": 7}}", &h, &pr), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "train.batch"));

    /* an objective without its step */
    qtr_objective o = probe_objective(&pr);
    o.step = NULL;
    qtr_params p;
    memset(&p, 0, sizeof p);
    p.hp = qtr_hparams_default();
    p.hp.steps = 2;
    p.ex = &pr.ex;
    assert_int_equal(qtr_run(&o, &p, NULL), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "probe"));
    /* a metric name that would break the CSV */
    o = probe_objective(&pr);
    static const char *const bad[1] = {"acc,uracy"};
    o.metric_names = bad;
    assert_int_equal(qtr_run(&o, &p, NULL), QIAO_ERR_INVALID_ARGUMENT);

    /* a checkpoint of another table, and a file that is none */
    paths d;
    paths_make(&d);
    qc_table other;
    qc_table_init_empty(&other);
    assert_int_equal(qc_table_add_dims(&other, "", "head.weight", 2, K + 1, E, 0, QC_INIT_ZEROS, 0, 0, QC_NO_FIELD),
                     QIAO_OK);
    qc_arena oa;
    assert_int_equal(qc_arena_alloc(&oa, other.total), QIAO_OK);
    const qc_st_kv meta = {QTR_META_TRAIN, "{\"step\": 3}"};
    assert_int_equal(qc_st_write_table(d.a, &other, oa.base, &meta, 1), QIAO_OK);
    o = probe_objective(&pr);
    p.resume_path = d.a;
    assert_int_equal(qtr_run(&o, &p, NULL), QIAO_ERR_FORMAT);
    FILE *f = fopen(d.b, "wb");
    assert_non_null(f);
    fputs("not a checkpoint", f);
    fclose(f);
    p.resume_path = d.b;
    assert_int_equal(qtr_run(&o, &p, NULL), QIAO_ERR_FORMAT);
    qc_arena_free(&oa);
    qc_table_free(&other);
    paths_free(&d);
    probe_free(&pr);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(learns), cmocka_unit_test(resume_exact), cmocka_unit_test(csv),
    cmocka_unit_test(frozen), cmocka_unit_test(errors),
};
QT_MAIN(tests)
