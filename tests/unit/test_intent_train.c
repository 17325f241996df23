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

/* Trained for 300 steps, the classifier is far above chance (1 in 33) on
 * the held-out test file, its probabilities are distributions, and the
 * confusion matrix accounts for every example. */
static void learns(void **state) {
    (void)state;
    char out[512], ckpt[512];
    path(out, sizeof out, "learn.safetensors");
    path(ckpt, sizeof ckpt, "learn.ckpt.safetensors");
    qmi_train_params p = params(out, ckpt, 300);
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
    printf("tiny random encoder, 300 steps: test accuracy %.4f, macro-F1 %.4f over %lld (%d intents)\n", e.accuracy,
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

/* What it refuses: a multi-label set, a validation file with an intent the
 * training file lacks (naming file:line), a bad line, a model without text,
 * a recipe with an unknown key. */
static void refuses(void **state) {
    (void)state;
    char out[512], ckpt[512], val[512], bad[512];
    path(out, sizeof out, "r.safetensors");
    path(ckpt, sizeof ckpt, "r.ckpt.safetensors");
    path(val, sizeof val, "val.jsonl");
    path(bad, sizeof bad, "bad.jsonl");
    qmi_train_params p = params(out, ckpt, 2);
    p.data_path = QIAO_SOURCE_DIR "/datasets/intent/crosswoz/val.jsonl";
    assert_int_equal(qmi_train(&p), QIAO_ERR_UNSUPPORTED);
    assert_non_null(strstr(qiao_last_error(), "multi-label"));
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

static const struct CMUnitTest tests[] = {cmocka_unit_test(learns), cmocka_unit_test(resumes),
                                          cmocka_unit_test(refuses)};

int main(int argc, char **argv) { /* QT_MAIN with the temporary folder around the cases */
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, setup, teardown);
}
