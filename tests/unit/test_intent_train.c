/* models/intent: the intent classifier trained through the generic trainer
 * on the repository's e-commerce set, with the tiny random XLM-R of
 * tests/data/hf as its encoder (the real e5 is docs/intent.md's). It must
 * learn (test accuracy far above chance), stop and resume to the same bits,
 * classify into probabilities, and refuse what it cannot train on. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#include "core/safetensors.h"
#include "models/intent/intent.h"

#define ENCODER QIAO_TEST_DATA "/hf/xlmr/model.safetensors"
#define TRAIN QIAO_SOURCE_DIR "/datasets/intent/ecommerce_zh/train.jsonl"
#define TEST QIAO_SOURCE_DIR "/datasets/intent/ecommerce_zh/test.jsonl"

static char g_dir[] = "/tmp/qiao-intent-XXXXXX";

static int setup(void **state) {
    (void)state;
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void path(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", g_dir, name); }

static qmi_train_params params(const char *out, const char *ckpt, int64_t steps) {
    qmi_train_params p;
    memset(&p, 0, sizeof p);
    p.init_path = ENCODER;
    p.data_path = TRAIN;
    p.out_path = out;
    p.ckpt_path = ckpt;
    p.hp = qmi_hparams_default();
    p.hp.tr.steps = steps;
    p.hp.tr.lr = 3e-3f; /* a random tiny encoder learns from scratch */
    p.hp.tr.eval_every = 100;
    p.threads = 2;
    return p;
}

/* Trained for 450 steps (about five epochs of the training file, as 300
 * were before the set grew to 39 intents with English lines), the
 * classifier is far above chance (1 in 39) on the held-out test file, its
 * probabilities are distributions, and the confusion matrix accounts for
 * every example. */
static void learns(void **state) {
    (void)state;
    char out[512], ckpt[512];
    path(out, sizeof out, "learn.safetensors");
    path(ckpt, sizeof ckpt, "learn.ckpt.safetensors");
    qmi_train_params p = params(out, ckpt, 450);
    qiao_status st = qmi_train(&p);
    if (st != QIAO_OK)
        fail_msg("%s", qiao_last_error());
    qmod_model *m = NULL;
    assert_int_equal(qmod_load(out, &m), QIAO_OK);
    qmi_set space, test;
    assert_int_equal(qmi_model_space(m, &space), QIAO_OK);
    st = qmi_set_load(TEST, &space, &test);
    if (st != QIAO_OK)
        fail_msg("%s", qiao_last_error());
    qmi_eval e;
    assert_int_equal(qmi_evaluate(m, &test, 2, 16, &e), QIAO_OK);
    printf("tiny random encoder, 450 steps: test accuracy %.4f, macro-F1 %.4f over %lld (%d intents)\n", e.accuracy,
           e.macro_f1, (long long)e.n, e.n_labels);
    assert_true(e.accuracy > 0.3 && e.macro_f1 > 0.25); /* chance is 0.03 */
    int64_t total = 0;
    for (int64_t i = 0; i < (int64_t)e.n_labels * e.n_labels; i++)
        total += e.confusion[i];
    assert_int_equal(total, test.n);
    const char *texts[] = {"我想退货", "发票怎么开", "x"};
    const int64_t K = space.n_labels;
    float *probs = qt_alloc(3 * K);
    assert_int_equal(qmi_classify(m, texts, 3, 1, probs), QIAO_OK);
    for (int i = 0; i < 3; i++) {
        double s = 0;
        for (int64_t k = 0; k < K; k++)
            s += probs[i * K + k], assert_true(probs[i * K + k] >= 0);
        assert_true(fabs(s - 1.0) < 1e-5);
    }
    free(probs);
    qmi_eval_free(&e);
    qmi_set_free(&test);
    qmi_set_free(&space);
    qmod_free(m);
}

static int stop_at_20(const qtr_log *l, void *user) {
    (void)user;
    return l->step == 20;
}

/* Stopped after step 20 and resumed, a run ends on the same weights as one
 * that never stopped. */
static void resumes(void **state) {
    (void)state;
    char a[512], ca[512], b[512], cb[512];
    path(a, sizeof a, "a.safetensors");
    path(ca, sizeof ca, "a.ckpt.safetensors");
    path(b, sizeof b, "b.safetensors");
    path(cb, sizeof cb, "b.ckpt.safetensors");
    qmi_train_params p = params(a, ca, 40);
    assert_int_equal(qmi_train(&p), QIAO_OK);
    p = params(b, cb, 40);
    p.on_step = stop_at_20;
    assert_int_equal(qmi_train(&p), QIAO_ERR_CANCELLED);
    p.on_step = NULL;
    p.resume_path = cb;
    qiao_status st = qmi_train(&p);
    if (st != QIAO_OK)
        fail_msg("%s", qiao_last_error());
    qc_st_file *fa = NULL, *fb = NULL;
    assert_int_equal(qc_st_open(a, &fa), QIAO_OK);
    assert_int_equal(qc_st_open(b, &fb), QIAO_OK);
    const char *names[] = {"heads.intent.out.weight", "text.trunk.blocks.1.mlp.fc.weight", "text.piece_emb.weight"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const qc_st_tensor *x = qc_st_find(fa, names[i]), *y = qc_st_find(fb, names[i]);
        if (!x || !y)
            fail_msg("tensor %s missing", names[i]);
        assert_int_equal(x->nbytes, y->nbytes);
        assert_memory_equal(x->data, y->data, x->nbytes);
    }
    qc_st_close(fa), qc_st_close(fb);
}

/* What it refuses: a validation file with an intent the
 * training file lacks (naming file:line), a bad line, a model without text,
 * a recipe with an unknown key. */
static void refuses(void **state) {
    (void)state;
    char out[512], ckpt[512], val[512], bad[512];
    path(out, sizeof out, "r.safetensors");
    path(ckpt, sizeof ckpt, "r.ckpt.safetensors");
    path(val, sizeof val, "val.jsonl");
    path(bad, sizeof bad, "bad.jsonl");
    qmi_train_params p;
    FILE *f = fopen(val, "w");
    assert_non_null(f);
    fputs("{\"text\": \"我想退货\", \"intent\": \"return_request\"}\n{\"text\": \"hi\", \"intent\": "
          "\"greet_in_klingon\"}\n",
          f);
    fclose(f);
    p = params(out, ckpt, 2);
    p.val_path = val;
    assert_int_equal(qmi_train(&p), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "val.jsonl:2"));
    f = fopen(bad, "w");
    assert_non_null(f);
    fputs("{\"text\": \"我想退货\", \"intent\": \"return_request\"}\n{\"text\": \"\", \"intent\": \"x\"}\n", f);
    fclose(f);
    p = params(out, ckpt, 2);
    p.data_path = bad;
    assert_int_equal(qmi_train(&p), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "bad.jsonl:2"));
    assert_int_equal(access(out, F_OK), -1); /* nothing written */
    qmi_hparams h;
    assert_int_equal(qmi_hparams_from_json("{\"train\": {\"epocs\": 3}}", "r.json", &h), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "train.epocs"));
    assert_int_equal(qmi_hparams_from_json("{\"scale\": 0}", "r.json", &h), QIAO_ERR_FORMAT);
    assert_int_equal(
        qmi_hparams_from_json("{\"hidden\": 64, \"train\": {\"epochs\": 2, \"head_lr\": 0.01}}", "r.json", &h),
        QIAO_OK);
    assert_true(h.hidden == 64 && h.epochs == 2.0 && fabsf(h.head_lr - 0.01f) < 1e-9f);
}

/* softmax(log(p) * a) of K probabilities: a calibrated distribution at
 * another temperature (T / T'). */
static double nll_scaled(const float *probs, const qmi_set *set, int64_t K, double a) {
    double sum = 0;
    for (int64_t i = 0; i < set->n; i++) {
        const float *p = probs + i * K;
        double z = 0;
        for (int64_t k = 0; k < K; k++)
            z += exp(a * log(fmax(p[k], 1e-30)));
        sum += log(z) - a * log(fmax(p[set->ex[i].labels[0]], 1e-30));
    }
    return sum / (double)set->n;
}

/* Training ends with calibration on the held-out split: the temperature is
 * the validation NLL's minimum, the threshold rejects at most the asked
 * share of the in-scope validation texts, the "oos" label (the e-commerce
 * set's own out-of-scope class, as CLINC150 has one) is the head's
 * out-of-scope class; evaluation's out-of-scope figures are what the
 * probabilities and the threshold give when counted by hand. 300 steps:
 * about three and a half epochs, as 200 were on the set before it grew. */
static void calibrates(void **state) {
    (void)state;
    char out[512], ckpt[512];
    path(out, sizeof out, "cal.safetensors");
    path(ckpt, sizeof ckpt, "cal.ckpt.safetensors");
    qmi_train_params p = params(out, ckpt, 300);
    p.hp.rejection = 0.2; /* the tiny encoder's oos class alone takes a few in-scope texts */
    qiao_status st = qmi_train(&p);
    if (st != QIAO_OK)
        fail_msg("%s", qiao_last_error());
    qmod_model *m = NULL;
    assert_int_equal(qmod_load(out, &m), QIAO_OK);
    const int head = qmod_head_find(&m->cfg, QMI_HEAD);
    const qmod_head_config *h = &m->cfg.heads[head];
    qmi_set space, all, tr, val, te;
    assert_int_equal(qmi_model_space(m, &space), QIAO_OK);
    const int64_t K = space.n_labels;
    assert_int_equal(h->oos_class, qmi_find(space.labels, space.n_labels, "oos"));
    assert_true(h->temperature > 0.05f && h->temperature < 20.0f && h->temperature != 1.0f);
    assert_true(h->threshold > 0.0f && h->threshold < 1.0f);
    /* the validation split training carved off, again */
    assert_int_equal(qmi_set_load(TRAIN, &space, &all), QIAO_OK);
    assert_int_equal(qmi_set_split(&all, p.hp.val_fraction, p.hp.seed, &tr, &val), QIAO_OK);
    const char **texts = malloc((size_t)val.n * sizeof *texts);
    float *probs = qt_alloc(val.n * K);
    for (int64_t i = 0; i < val.n; i++)
        texts[i] = val.ex[i].text;
    assert_int_equal(qmi_classify(m, texts, (size_t)val.n, 2, probs), QIAO_OK);
    const double at = nll_scaled(probs, &val, K, 1.0);
    printf("calibrated: temperature %.4f, threshold %.4f, validation NLL %.4f (at 0.9T %.4f, 1.1T %.4f)\n",
           (double)h->temperature, (double)h->threshold, at, nll_scaled(probs, &val, K, 1.0 / 0.9),
           nll_scaled(probs, &val, K, 1.0 / 1.1));
    assert_true(at <= nll_scaled(probs, &val, K, 1.0 / 0.9) + 1e-6);
    assert_true(at <= nll_scaled(probs, &val, K, 1.0 / 1.1) + 1e-6);
    int64_t n_in = 0, rejected = 0;
    for (int64_t i = 0; i < val.n; i++) {
        qmi_decision d;
        qmi_decide(h, probs + i * K, h->threshold, &d);
        if (val.ex[i].labels[0] != h->oos_class)
            n_in++, rejected += d.out_of_scope;
    }
    printf("validation: %lld of %lld in-scope texts rejected\n", (long long)rejected, (long long)n_in);
    assert_true(rejected > 0 && (double)rejected <= 0.2 * (double)n_in + 1e-9);
    free(texts), free(probs);
    /* the test file's figures, counted by hand */
    assert_int_equal(qmi_set_load(TEST, &space, &te), QIAO_OK);
    texts = malloc((size_t)te.n * sizeof *texts);
    probs = qt_alloc(te.n * K);
    for (int64_t i = 0; i < te.n; i++)
        texts[i] = te.ex[i].text;
    assert_int_equal(qmi_classify(m, texts, (size_t)te.n, 2, probs), QIAO_OK);
    int64_t in = 0, in_right = 0, in_rej = 0, oos = 0, oos_rej = 0, top_right = 0;
    for (int64_t i = 0; i < te.n; i++) {
        qmi_decision d;
        qmi_decide(h, probs + i * K, h->threshold, &d);
        const int32_t y = te.ex[i].labels[0];
        top_right += d.best == y;
        if (y == h->oos_class) {
            oos++, oos_rej += d.out_of_scope;
        } else {
            in++, in_rej += d.out_of_scope;
            in_right += !d.out_of_scope && d.best == y;
        }
    }
    qmi_eval e;
    assert_int_equal(qmi_evaluate(m, &te, 2, 16, &e), QIAO_OK);
    printf("test: accuracy %.4f, in-scope accuracy %.4f, false rejection %.4f, OOS recall %.4f of %lld, "
           "ECE %.4f -> %.4f\n",
           e.accuracy, e.in_scope_accuracy, e.false_rejection, e.oos_recall, (long long)e.n_oos, e.ece_raw, e.ece);
    assert_int_equal(e.n_oos, oos);
    assert_int_equal(e.n_in, in);
    assert_true(oos >= 10); /* the test file's oos lines */
    assert_true(fabs(e.accuracy - (double)top_right / (double)te.n) < 1e-12);
    assert_true(fabs(e.in_scope_accuracy - (double)in_right / (double)in) < 1e-12);
    assert_true(fabs(e.false_rejection - (double)in_rej / (double)in) < 1e-12);
    assert_true(fabs(e.oos_recall - (double)oos_rej / (double)oos) < 1e-12);
    assert_true(e.nll <= e.nll_raw + 0.05); /* fitted on validation, it must not hurt the test much */
    /* qmi_calibrate on the same split with no rejection keeps the
     * temperature and turns the threshold off */
    qmi_calibration c;
    assert_int_equal(qmi_calibrate(m, &val, 2, 0.0, "oos", &c), QIAO_OK);
    assert_true(fabsf(c.temperature - h->temperature) < 1e-3f * h->temperature);
    assert_true(m->cfg.heads[head].threshold == 0.0f && c.threshold == 0.0f);
    assert_int_equal(qmi_calibrate(m, &val, 2, 1.5, "oos", &c), QIAO_ERR_INVALID_ARGUMENT);
    free(texts), free(probs);
    qmi_eval_free(&e);
    qmi_set_free(&te), qmi_set_free(&val), qmi_set_free(&tr), qmi_set_free(&all), qmi_set_free(&space);
    qmod_free(m);
}

/* The tagger's targets decode back to the file's spans: one-hot logits of
 * qmi_bio_targets through qmi_entity_decode give every span of the
 * e-commerce set that starts and ends on token boundaries (less the spaces
 * a piece carries) exactly, and a span cutting a token as the tokens that
 * cover it. */
static void bio_round_trip(void **state) {
    (void)state;
    qmod_model *m = NULL;
    assert_int_equal(qmod_load(ENCODER, &m), QIAO_OK);
    qmi_set set;
    assert_int_equal(qmi_set_load(TRAIN, NULL, &set), QIAO_OK);
    const int64_t E2 = 1 + 2 * set.n_types;
    qmod_head_config h;
    memset(&h, 0, sizeof h);
    h.mlp.classes = E2;
    h.oos_class = -1;
    int64_t spans = 0, exact = 0, covering = 0, truncated = 0;
    for (int64_t i = 0; i < set.n; i++) {
        const qmi_example *e = &set.ex[i];
        if (!e->n_spans)
            continue;
        const char *t = e->text;
        qmod_batch b;
        assert_int_equal(qmod_batch_text(m, &t, 1, &b), QIAO_OK);
        int32_t *tags = malloc((size_t)b.T * sizeof *tags);
        float *logits = calloc((size_t)(b.T * E2), sizeof *logits);
        qmi_found *found = malloc((size_t)b.T * sizeof *found);
        qmi_bio_targets(e, b.offsets, b.T, 0, tags);
        for (int64_t k = 0; k < b.T; k++)
            if (tags[k] >= 0)
                logits[k * E2 + tags[k]] = 30.0f;
        const int n = qmi_entity_decode(&h, logits, b.offsets, b.T, 0, e->text, e->len, found, (int)b.T);
        assert_true(n >= 0);
        for (int g = 0; g < e->n_spans; g++) {
            const qmi_span *sp = &e->spans[g];
            /* the tokens covering the span, and whether they start and end on it */
            int64_t a = -1, z = -1;
            for (int64_t k = 0; k < b.T; k++) {
                const int64_t s0 = b.offsets[2 * k], s1 = b.offsets[2 * k + 1];
                if (s0 >= 0 && s1 > s0 && s0 < sp->end && s1 > sp->start) {
                    if (a < 0)
                        a = s0;
                    z = s1;
                }
            }
            if (a < 0) { /* past the encoder's max_tokens: cut off before the tagger sees it */
                truncated++;
                continue;
            }
            while (a < z && e->text[a] == ' ')
                a++;
            bool hit = false;
            for (int f = 0; f < n && !hit; f++)
                hit = found[f].type == sp->type && found[f].start == a && found[f].end == z;
            /* overlapping spans (one token for two) may give the first one only */
            bool overlapped = false;
            for (int o = 0; o < e->n_spans; o++)
                overlapped = overlapped || (o != g && e->spans[o].start < sp->end && e->spans[o].end > sp->start);
            if (!hit && !overlapped)
                fail_msg("%s line %lld: span %d [%lld, %lld) not decoded as [%lld, %lld)", set.path,
                         (long long)e->line, g, (long long)sp->start, (long long)sp->end, (long long)a, (long long)z);
            spans++;
            exact += hit && a == sp->start && z == sp->end;
            covering += hit;
        }
        free(tags), free(logits), free(found);
        qmod_batch_free(&b);
    }
    printf("%lld spans: %lld decoded exactly, %lld as the tokens covering them; %lld past max_tokens\n",
           (long long)spans, (long long)exact, (long long)(covering - exact), (long long)truncated);
    assert_true(spans > 100);
    qmi_set_free(&set);
    qmod_free(m);
}

/* A multi-label set (CrossWOZ's dialogue acts: a turn may inform and
 * request at once, or do neither): a sigmoid per intent, learned far above
 * predicting nothing, and evaluation's exact-match rate and micro-F1 are
 * what the probabilities give when counted by hand. */
static void multi_label(void **state) {
    (void)state;
    char out[512], ckpt[512];
    path(out, sizeof out, "multi.safetensors");
    path(ckpt, sizeof ckpt, "multi.ckpt.safetensors");
    qmi_train_params p = params(out, ckpt, 400);
    p.data_path = QIAO_SOURCE_DIR "/datasets/intent/crosswoz/val.jsonl";
    p.hp.head_lr = 1e-2f; /* 81 biases must fall far below 0 (most acts are rare): 1e-3 takes thousands of steps */
    qiao_status st = qmi_train(&p);
    if (st != QIAO_OK)
        fail_msg("%s", qiao_last_error());
    qmod_model *m = NULL;
    assert_int_equal(qmod_load(out, &m), QIAO_OK);
    const qmod_head_config *h = &m->cfg.heads[qmod_head_find(&m->cfg, QMI_HEAD)];
    assert_true(h->multi_label);
    qmi_set space, test;
    assert_int_equal(qmi_model_space(m, &space), QIAO_OK);
    assert_int_equal(qmi_set_load(QIAO_SOURCE_DIR "/datasets/intent/crosswoz/test.jsonl", &space, &test), QIAO_OK);
    const int64_t K = space.n_labels;
    qmi_eval e;
    assert_int_equal(qmi_evaluate(m, &test, 2, 32, &e), QIAO_OK);
    const char **texts = malloc((size_t)test.n * sizeof *texts);
    float *probs = qt_alloc(test.n * K);
    for (int64_t i = 0; i < test.n; i++)
        texts[i] = test.ex[i].text;
    assert_int_equal(qmi_classify(m, texts, (size_t)test.n, 2, probs), QIAO_OK);
    int64_t exact = 0, tp = 0, fp = 0, fn = 0, empty = 0;
    for (int64_t i = 0; i < test.n; i++) {
        bool all = true;
        for (int64_t k = 0; k < K; k++) {
            bool y = false;
            for (int j = 0; j < test.ex[i].n_labels; j++)
                y = y || test.ex[i].labels[j] == k;
            const bool pr = probs[i * K + k] >= 0.5f;
            assert_true(probs[i * K + k] >= 0.0f && probs[i * K + k] <= 1.0f);
            tp += pr && y, fp += pr && !y, fn += !pr && y;
            all = all && pr == y;
        }
        exact += all;
        empty += test.ex[i].n_labels == 0;
    }
    const double micro = 2.0 * (double)tp / (double)(2 * tp + fp + fn);
    printf("multi-label, tiny encoder, 400 steps: exact match %.4f (predicting nothing: %.4f), micro-F1 %.4f, "
           "entity F1 %.4f\n",
           e.accuracy, (double)empty / (double)test.n, e.micro_f1, e.ent_f1);
    assert_true(fabs(e.accuracy - (double)exact / (double)test.n) < 1e-12);
    assert_true(fabs(e.micro_f1 - micro) < 1e-12);
    assert_true(e.accuracy > 10.0 * (double)empty / (double)test.n && e.micro_f1 > 0.6);
    assert_null(e.confusion);
    free(texts), free(probs);
    qmi_eval_free(&e);
    qmi_set_free(&test), qmi_set_free(&space);
    qmod_free(m);
}

/* ---- context ------------------------------------------------------------------------- */

/* A classifier of `data` (the tiny encoder) reading `context` earlier
 * turns, trained for `steps` steps. */
static void train_context(const char *data, const char *out, const char *ckpt, int64_t context, int64_t steps) {
    qmi_train_params p = params(out, ckpt, steps);
    p.data_path = data;
    p.hp.context = context;
    p.hp.head_lr = 1e-2f;
    qiao_status st = qmi_train(&p);
    if (st != QIAO_OK)
        fail_msg("%s", qiao_last_error());
}

/* The rows a context classifier reads: each text's tokens exactly as
 * without context (ids and offsets), then its turns, oldest first, each
 * ending with </s> and with offsets -1, never past max_tokens, an older
 * turn dropped before a newer one is cut; the tagger's targets and the
 * spans they decode to are the text's alone, as without context. */
static void context_rows(void **state) {
    (void)state;
    char out[512], ckpt[512];
    path(out, sizeof out, "ctx-rows.safetensors");
    path(ckpt, sizeof ckpt, "ctx-rows.ckpt.safetensors");
    train_context(QIAO_SOURCE_DIR "/datasets/intent/crosswoz/val.jsonl", out, ckpt, 3, 1);
    qmod_model *m = NULL;
    assert_int_equal(qmod_load(out, &m), QIAO_OK);
    const int head = qmod_head_find(&m->cfg, QMI_HEAD), ent = qmod_head_find(&m->cfg, QMI_ENT_HEAD);
    assert_int_equal(m->cfg.heads[head].context, 3);
    assert_true(ent >= 0);
    qmi_set space, set;
    assert_int_equal(qmi_model_space(m, &space), QIAO_OK);
    assert_int_equal(qmi_set_load(QIAO_SOURCE_DIR "/datasets/intent/crosswoz/test.jsonl", &space, &set), QIAO_OK);
    const int64_t max_T = m->cfg.text.trunk.max_T, E2 = m->cfg.heads[ent].mlp.classes;
    int64_t rows = 0, with_turns = 0, cut = 0, dropped = 0, spans = 0;
    for (int64_t i = 0; i < set.n && i < 400; i++) {
        const qmi_example *e = &set.ex[i];
        const qmi_context c = {e->context, (size_t)e->n_context};
        qmod_batch a, b;
        assert_int_equal(qmod_batch_text(m, &e->text, 1, &a), QIAO_OK);
        assert_int_equal(qmi_batch(m, &e->text, &c, 1, &b), QIAO_OK);
        const int64_t n0 = a.lengths[0], n1 = b.lengths[0];
        assert_true(n1 >= n0 && n1 <= max_T);
        assert_memory_equal(a.ids, b.ids, (size_t)n0 * sizeof *a.ids);
        assert_memory_equal(a.offsets, b.offsets, (size_t)n0 * 2 * sizeof *a.offsets);
        for (int64_t t = n0; t < n1; t++)
            assert_true(b.offsets[2 * t] == -1 && b.offsets[2 * t + 1] == -1 && b.mask[t] == 1);
        for (int64_t t = n1; t < b.T; t++)
            assert_true(b.mask[t] == 0);
        /* the turns after the text, oldest first: the newest whole, older ones while they fit, the
         * oldest that does not fit cut to its first pieces and its </s> (the encoder's own truncation) */
        int32_t want[256];
        int64_t room = max_T - n0, w = 0, kept = 0;
        bool was_cut = false;
        int32_t *taken[8];
        int64_t taken_n[8];
        for (int j = e->n_context - 1; j >= 0 && room >= 2; j--) {
            qmod_batch tb;
            assert_int_equal(qmod_batch_text(m, &e->context[j], 1, &tb), QIAO_OK);
            int64_t k = tb.lengths[0] - 1; /* less its <s> */
            taken[kept] = malloc((size_t)k * sizeof *taken[kept]);
            memcpy(taken[kept], tb.ids + 1, (size_t)k * sizeof *taken[kept]);
            if (k > room) {
                taken[kept][room - 1] = taken[kept][k - 1]; /* </s> */
                k = room;
                was_cut = true;
            }
            taken_n[kept++] = k;
            room -= k;
            qmod_batch_free(&tb);
            if (was_cut)
                break;
        }
        for (int64_t j = kept; j-- > 0;) {
            memcpy(want + w, taken[j], (size_t)taken_n[j] * sizeof *want);
            w += taken_n[j];
            free(taken[j]);
        }
        assert_int_equal(n1, n0 + w);
        assert_memory_equal(b.ids + n0, want, (size_t)w * sizeof *want);
        rows++;
        with_turns += n1 > n0;
        cut += was_cut;
        dropped += kept < e->n_context && !was_cut;
        /* the tagger's targets: the text's, then none */
        int32_t *ta = malloc((size_t)a.T * sizeof *ta), *tb = malloc((size_t)b.T * sizeof *tb);
        qmi_bio_targets(e, a.offsets, a.T, 0, ta);
        qmi_bio_targets(e, b.offsets, b.T, 0, tb);
        assert_memory_equal(ta, tb, (size_t)n0 * sizeof *ta);
        for (int64_t t = n0; t < b.T; t++)
            assert_int_equal(tb[t], -1);
        /* one-hot logits of the targets decode to the same spans with and without the turns */
        float *la = calloc((size_t)(a.T * E2), sizeof *la), *lb = calloc((size_t)(b.T * E2), sizeof *lb);
        for (int64_t t = 0; t < a.T; t++)
            la[t * E2 + (ta[t] > 0 ? ta[t] : 0)] = 30.0f;
        for (int64_t t = 0; t < b.T; t++)
            lb[t * E2 + (tb[t] >= 0 ? tb[t] : 1)] = 30.0f; /* context tokens and padding tagged B: never a span */
        qmi_found *fa = malloc((size_t)a.T * sizeof *fa), *fb = malloc((size_t)b.T * sizeof *fb);
        const int na = qmi_entity_decode(&m->cfg.heads[ent], la, a.offsets, a.T, 0, e->text, e->len, fa, (int)a.T);
        const int nb2 = qmi_entity_decode(&m->cfg.heads[ent], lb, b.offsets, b.T, 0, e->text, e->len, fb, (int)b.T);
        assert_int_equal(na, nb2);
        for (int f = 0; f < na; f++)
            assert_true(fa[f].type == fb[f].type && fa[f].start == fb[f].start && fa[f].end == fb[f].end &&
                        fb[f].end <= (int64_t)e->len);
        spans += na;
        free(ta), free(tb), free(la), free(lb), free(fa), free(fb);
        qmod_batch_free(&a);
        qmod_batch_free(&b);
    }
    printf("%lld rows: %lld with turns, %lld with an older turn dropped, %lld with the oldest kept turn cut; "
           "%lld spans the same\n",
           (long long)rows, (long long)with_turns, (long long)dropped, (long long)cut, (long long)spans);
    assert_true(with_turns > rows / 2 && spans > 100);
    assert_true(dropped > 0); /* max_tokens 64 holds three CrossWOZ turns rarely */
    /* a bad turn is an error naming it; a NULL list of contexts is the text alone */
    const char *bad_turns[] = {"好的", "\xff\xfe"};
    const qmi_context bc = {bad_turns, 2};
    const char *text = "可以";
    qmod_batch b;
    assert_int_equal(qmi_batch(m, &text, &bc, 1, &b), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "context turn 1"));
    assert_int_equal(qmi_batch(m, &text, NULL, 1, &b), QIAO_OK);
    qmod_batch_free(&b);
    qmi_set_free(&set), qmi_set_free(&space);
    qmod_free(m);
}

/* A set whose label is in the context only: every text is one of a few
 * neutral replies ("好的", "可以"...), and the turn before it says what it
 * agrees to (a hotel, a taxi, a restaurant). */
static void write_context_set(const char *file, int per_label, uint64_t seed) {
    static const char *const replies[] = {"好的", "可以", "行", "嗯嗯", "没问题", "那就这样吧"};
    static const char *const labels[] = {"book_hotel", "call_taxi", "book_table"};
    static const char *const offers[3][4] = {
        {"给您推荐北京饭店，要预订吗？", "这家酒店有空房，需要帮您订房间吗？", "王府井的酒店还有大床房，订吗？",
         "酒店含早餐，帮您预订两晚？"},
        {"需要我帮您叫一辆出租车吗？", "出租车十分钟后到，要叫车吗？", "去机场可以打车，帮您叫一辆？",
         "司机可以在门口接您，叫车吗？"},
        {"这家餐馆还有位子，帮您订一桌？", "晚上七点的餐位可以吗？", "烤鸭店要提前订座，帮您订吗？",
         "餐厅有包间，需要预订吗？"}};
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    qc_rng rng;
    qc_rng_seed(&rng, seed);
    for (int i = 0; i < per_label; i++)
        for (int l = 0; l < 3; l++) {
            const char *r = replies[qc_rng_u64(&rng) % 6], *o = offers[l][qc_rng_u64(&rng) % 4];
            fprintf(f, "{\"text\": \"%s\", \"intent\": \"%s\", \"context\": [\"你好\", \"%s\"]}\n", r, labels[l], o);
        }
    fclose(f);
}

/* A label that only the context tells apart: a classifier reading one
 * earlier turn learns it, the same recipe without context cannot do
 * better than the replies' own share. */
static void learns_context(void **state) {
    (void)state;
    char train[512], test[512], with[512], without[512], ckpt[512];
    path(train, sizeof train, "ctx-train.jsonl");
    path(test, sizeof test, "ctx-test.jsonl");
    path(with, sizeof with, "ctx-with.safetensors");
    path(without, sizeof without, "ctx-without.safetensors");
    path(ckpt, sizeof ckpt, "ctx.ckpt.safetensors");
    write_context_set(train, 60, 1);
    write_context_set(test, 30, 2);
    double acc[2];
    for (int k = 0; k < 2; k++) {
        train_context(train, k ? without : with, ckpt, k ? 0 : 1, 120);
        qmod_model *m = NULL;
        assert_int_equal(qmod_load(k ? without : with, &m), QIAO_OK);
        assert_int_equal(m->cfg.heads[qmod_head_find(&m->cfg, QMI_HEAD)].context, k ? 0 : 1);
        qmi_set space, te;
        assert_int_equal(qmi_model_space(m, &space), QIAO_OK);
        assert_int_equal(qmi_set_load(test, &space, &te), QIAO_OK);
        qmi_eval e;
        assert_int_equal(qmi_evaluate(m, &te, 2, 16, &e), QIAO_OK);
        acc[k] = e.accuracy;
        qmi_eval_free(&e);
        qmi_set_free(&te), qmi_set_free(&space);
        qmod_free(m);
    }
    printf("label in the context only: test accuracy %.4f reading one earlier turn, %.4f without (chance 0.33)\n",
           acc[0], acc[1]);
    assert_true(acc[0] > 0.95);
    assert_true(acc[1] < 0.6);
}

/* Distillation's term: its gradient against central differences, zero
 * when the student's softened distribution is the teacher's; the recipe's
 * "teacher" and "layers" list read and refused. */
static float kd_at(const float *z, const float *t, int64_t n, int64_t K, float T) {
    float *dummy = qt_alloc(n * K);
    const float l = qmi_distill_loss(z, t, n, K, T, 0.0f, dummy);
    free(dummy);
    return l;
}

static void distill_gradient(void **state) {
    (void)state;
    enum { N = 3, K = 5 };
    const float T = 2.0f, weight = 0.7f;
    float z[N * K], t[N * K], d[N * K];
    qt_fill_normal(z, N * K, 3.0f, 7);
    qt_fill_uniform(t, N * K, 0.01f, 1.0f, 8);
    for (int i = 0; i < N; i++) {
        float s = 0;
        for (int k = 0; k < K; k++)
            s += t[i * K + k];
        for (int k = 0; k < K; k++)
            t[i * K + k] /= s;
    }
    memset(d, 0, sizeof d);
    const float loss = qmi_distill_loss(z, t, N, K, T, weight, d);
    assert_true(loss > 0.0f);
    double worst = 0;
    for (int j = 0; j < N * K; j++) {
        const float h = 1e-2f, z0 = z[j];
        z[j] = z0 + h;
        const double up = kd_at(z, t, N, K, T);
        z[j] = z0 - h;
        const double down = kd_at(z, t, N, K, T);
        z[j] = z0;
        const double num = weight * (up - down) / (2.0 * h);
        worst = fmax(worst, fabs(num - d[j]));
    }
    printf("distillation gradient: worst difference %.2e from central differences\n", worst);
    assert_true(worst < 1e-4);
    /* the teacher's distribution is the student's own at T: no loss, no gradient */
    for (int i = 0; i < N; i++)
        qmi_softmax(z + i * K, K, T, t + i * K);
    memset(d, 0, sizeof d);
    assert_true(fabsf(qmi_distill_loss(z, t, N, K, T, 1.0f, d)) < 1e-5f);
    for (int j = 0; j < N * K; j++)
        assert_true(fabsf(d[j]) < 1e-6f);
    qmi_hparams h;
    static const char *const bad[][2] = {
        {"{\"teacher\": \"t.safetensors\"}", "must be an object"},
        {"{\"teacher\": {\"alpha\": 0.5}}", "needs \"model\""},
        {"{\"teacher\": {\"model\": \"\"}}", "teacher.model"},
        {"{\"teacher\": {\"model\": \"t\", \"alpha\": 1.5}}", "teacher.alpha"},
        {"{\"teacher\": {\"model\": \"t\", \"temperature\": 0}}", "teacher.temperature"},
        {"{\"teacher\": {\"model\": \"t\", \"temprature\": 2}}", "unknown key teacher.temprature"},
        {"{\"layers\": []}", "\"layers\" lists 1 to"},
        {"{\"layers\": [0, -1]}", "\"layers\"[1]"},
        {"{\"layers\": [0, 2.5]}", "\"layers\"[1]"},
        {"{\"layers\": [\"0\"]}", "\"layers\"[0]"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(qmi_hparams_from_json(bad[i][0], "r.json", &h), QIAO_ERR_FORMAT);
        if (!strstr(qiao_last_error(), bad[i][1]))
            fail_msg("%s: %s, not %s", bad[i][0], qiao_last_error(), bad[i][1]);
    }
    assert_int_equal(qmi_hparams_from_json("{\"layers\": [0, 4, 11], \"teacher\": {\"model\": \"t.safetensors\"}}",
                                           "r.json", &h),
                     QIAO_OK);
    assert_true(h.layers == 3 && h.layer_list && h.layer_from[0] == 0 && h.layer_from[1] == 4 &&
                h.layer_from[2] == 11);
    assert_string_equal(h.teacher, "t.safetensors");
    assert_true(h.kd_alpha == 0.5f && h.kd_temperature == 2.0f);
    assert_int_equal(qmi_hparams_from_json("{\"layers\": 2, \"teacher\": {\"model\": \"t\", \"alpha\": 0.9, "
                                           "\"temperature\": 4}}",
                                           "r.json", &h),
                     QIAO_OK);
    assert_true(h.layers == 2 && !h.layer_list && fabsf(h.kd_alpha - 0.9f) < 1e-7f && h.kd_temperature == 4.0f);
}

/* Distillation end to end on the tiny encoder: a student of one layer
 * (the init's second) learns from a teacher trained a few steps; a teacher
 * with other intents, or a layer the init lacks, is refused; the list's
 * layer is the init's layer it names. */
static void distills(void **state) {
    (void)state;
    char teacher[512], student[512], copy[512], ckpt[512], two[512], other[512];
    path(teacher, sizeof teacher, "kd-teacher.safetensors");
    path(student, sizeof student, "kd-student.safetensors");
    path(copy, sizeof copy, "kd-copy.safetensors");
    path(ckpt, sizeof ckpt, "kd.ckpt.safetensors");
    path(two, sizeof two, "kd-two.jsonl");
    path(other, sizeof other, "kd-other.safetensors");
    qmi_train_params p = params(teacher, ckpt, 40);
    qiao_status st = qmi_train(&p);
    if (st != QIAO_OK)
        fail_msg("%s", qiao_last_error());
    p = params(student, ckpt, 40);
    p.hp.layers = 1;
    p.hp.layer_list = true;
    p.hp.layer_from[0] = 1;
    snprintf(p.hp.teacher, sizeof p.hp.teacher, "%s", teacher);
    p.hp.kd_alpha = 0.7f;
    if ((st = qmi_train(&p)) != QIAO_OK)
        fail_msg("%s", qiao_last_error());
    qmod_model *m = NULL;
    assert_int_equal(qmod_load(student, &m), QIAO_OK);
    assert_int_equal(m->cfg.text.trunk.L, 1);
    qmod_free(m);
    /* a teacher of two intents */
    FILE *f = fopen(two, "w");
    assert_non_null(f);
    for (int i = 0; i < 8; i++)
        fprintf(f, "{\"text\": \"我想退货 %d\", \"intent\": \"a\"}\n{\"text\": \"发票 %d\", \"intent\": \"b\"}\n", i, i);
    fclose(f);
    p = params(other, ckpt, 2);
    p.data_path = two;
    assert_int_equal(qmi_train(&p), QIAO_OK);
    p = params(student, ckpt, 2);
    snprintf(p.hp.teacher, sizeof p.hp.teacher, "%s", other);
    assert_int_equal(qmi_train(&p), QIAO_ERR_INVALID_ARGUMENT);
    if (!strstr(qiao_last_error(), "intents"))
        fail_msg("%s", qiao_last_error());
    /* a layer the init lacks */
    p = params(student, ckpt, 2);
    p.hp.layers = 2;
    p.hp.layer_list = true;
    p.hp.layer_from[0] = 0, p.hp.layer_from[1] = 2;
    assert_int_equal(qmi_train(&p), QIAO_ERR_INVALID_ARGUMENT);
    if (!strstr(qiao_last_error(), "layers[1] is layer 2"))
        fail_msg("%s", qiao_last_error());
    /* layers [1, 0]: the init's two layers swapped (a step too small to move them) */
    p = params(copy, ckpt, 1);
    p.hp.tr.lr = 1e-30f;
    p.hp.layers = 2;
    p.hp.layer_list = true;
    p.hp.layer_from[0] = 1, p.hp.layer_from[1] = 0;
    if ((st = qmi_train(&p)) != QIAO_OK)
        fail_msg("%s", qiao_last_error());
    qmod_model *init = NULL;
    assert_int_equal(qmod_load(copy, &m), QIAO_OK);
    assert_int_equal(qmod_load(ENCODER, &init), QIAO_OK);
    static const char *const pairs[][2] = {
        {"text.trunk.blocks.0.mlp.fc.weight", "text.trunk.blocks.1.mlp.fc.weight"},
        {"text.trunk.blocks.1.attn.q.weight", "text.trunk.blocks.0.attn.q.weight"},
        {"text.trunk.blocks.0.ln1.bias", "text.trunk.blocks.1.ln1.bias"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        const int64_t a = qc_table_find(&m->tab, pairs[i][0]), b = qc_table_find(&init->tab, pairs[i][1]);
        assert_true(a >= 0 && b >= 0);
        const float *x = m->arena.base + m->tab.t[a].offset, *y = init->arena.base + init->tab.t[b].offset;
        for (int64_t k = 0; k < m->tab.t[a].numel; k++)
            if (x[k] != qc_bf16_to_f32(qc_f32_to_bf16(y[k])))
                fail_msg("%s[%lld] %g is not %s's %g", pairs[i][0], (long long)k, (double)x[k], pairs[i][1],
                         (double)y[k]);
    }
    qmod_free(init), qmod_free(m);
}

static const struct CMUnitTest tests[] = {cmocka_unit_test(bio_round_trip), cmocka_unit_test(multi_label), cmocka_unit_test(learns), cmocka_unit_test(resumes),
                                          cmocka_unit_test(refuses), cmocka_unit_test(calibrates),
                                          cmocka_unit_test(context_rows), cmocka_unit_test(learns_context),
                                          cmocka_unit_test(distill_gradient), cmocka_unit_test(distills)};

int main(int argc, char **argv) { /* QT_MAIN with the temporary folder around the cases */
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, setup, teardown);
}
