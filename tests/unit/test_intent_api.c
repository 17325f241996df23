/* The public intent API (sdk/api/intent_api.c) on a tiny classifier trained
 * at setup (the tiny random XLM-R of tests/data/hf with an intent head,
 * 30 steps on the e-commerce set): the labels and calibration it exposes,
 * a batch giving what single calls give, the ranking a distribution in
 * order, thresholds, bad arguments and bad text, a model without the
 * head, and four threads with their own sessions giving the same bits;
 * and a second classifier trained with one earlier turn of context, on
 * labels only the context tells apart. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#include "intent_fixture.h"

#define ENCODER QT_XLMR_TINY
#define TRAIN QT_ECOMMERCE_TRAIN

static char g_dir[] = "/tmp/qiao-intent-api-XXXXXX";
static char g_model[512], g_context_model[512];

/* The context classifier's data: a neutral reply after an offer, labelled
 * with what the offer was (the reply alone cannot tell). */
static const char *const k_replies[] = {"好的", "可以", "行", "没问题"};
static const char *const k_offers[] = {"给您推荐北京饭店，要预订吗？", "需要我帮您叫一辆出租车吗？",
                                       "这家餐馆还有位子，帮您订一桌？"};
static const char *const k_offer_labels[] = {"book_hotel", "call_taxi", "book_table"};

static const char *const k_texts[] = {
    "我想退货", "发票抬头开错了能改吗", "你好", "my order hasn't arrived yet", "", "？？？",
    "订单2024112356789012的快递到哪了，等了一个星期了，能不能帮我催一下，谢谢",
    "x", "退款什么时候到账", "谢谢"};
#define N_TEXTS (sizeof k_texts / sizeof k_texts[0])
/* the training file's intents: 33 customer-service ones and six for the
 * dialogue (affirm deny stop help chitchat oos) */
#define N_INTENTS 39

static int setup(void **state) {
    (void)state;
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_model, sizeof g_model, "%s/bot.safetensors", g_dir);
    if (qt_train_tiny_classifier(TRAIN, g_model, 30, 0) != 0) return -1;
    char data[600];
    snprintf(data, sizeof data, "%s/context.jsonl", g_dir);
    snprintf(g_context_model, sizeof g_context_model, "%s/context.safetensors", g_dir);
    FILE *f = fopen(data, "w");
    if (!f) return -1;
    for (int i = 0; i < 40; i++)
        for (int l = 0; l < 3; l++)
            fprintf(f, "{\"text\": \"%s\", \"intent\": \"%s\", \"context\": [\"%s\"]}\n", k_replies[(i + l) % 4],
                    k_offer_labels[l], k_offers[l]);
    fclose(f);
    return qt_train_tiny_classifier(data, g_context_model, 60, 1);
}

static int teardown(void **state) {
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static qiao_model *load(void) {
    qiao_model *m = NULL;
    if (qiao_model_load(g_model, &m) != QIAO_OK) fail_msg("%s", qiao_last_error());
    return m;
}

static qiao_session *session(const qiao_model *m, int threads) {
    qiao_session_params sp = qiao_session_default_params();
    sp.n_threads = threads;
    qiao_session *s = NULL;
    assert_int_equal(qiao_session_new(m, &sp, &s), QIAO_OK);
    return s;
}

/* The model's labels (the training file's 39 intents, sorted), its
 * calibration and out-of-scope label ("oos", one of the intents), and each
 * result's ranking: every intent once, best first, summing to 1, headed by
 * the result's intent; top_k cuts it. A result is out of scope when "oos"
 * comes first or the confidence is under the threshold. */
static void labels_and_ranking(void **state) {
    (void)state;
    qiao_model *m = load();
    assert_true(qiao_model_can_classify(m));
    assert_int_equal(qiao_model_intent_count(m), N_INTENTS);
    assert_string_equal(qiao_model_intent(m, 0), "account_login");
    assert_string_equal(qiao_model_intent(m, 2), "affirm");
    assert_string_equal(qiao_model_intent(m, N_INTENTS - 1), "wrong_item");
    assert_null(qiao_model_intent(m, N_INTENTS));
    const char *oos = qiao_model_intent_oos(m);
    assert_string_equal(oos, "oos");
    /* the training file's entity types, sorted */
    static const char *const types[] = {"amount", "date", "order_id", "phone", "product"};
    assert_int_equal(qiao_model_entity_type_count(m), 5);
    for (size_t t = 0; t < 5; t++) assert_string_equal(qiao_model_entity_type(m, t), types[t]);
    assert_null(qiao_model_entity_type(m, 5));
    const float thr = qiao_model_intent_threshold(m), temp = qiao_model_intent_temperature(m);
    printf("%d intents, temperature %.4f, threshold %.4f\n", N_INTENTS, (double)temp, (double)thr);
    /* 0 when the oos class alone already takes the allowed share of the
     * in-scope validation texts, as it does after 30 steps of the tiny encoder */
    assert_true(thr >= 0.0f && thr < 1.0f && temp > 0.0f);
    qiao_session *s = session(m, 2);
    assert_int_equal(qiao_session_memory(s), 0);
    for (size_t i = 0; i < N_TEXTS; i++) {
        qiao_intent_result r;
        assert_int_equal(qiao_intent_classify(s, k_texts[i], NULL, &r), QIAO_OK);
        assert_int_equal(r.n_ranking, N_INTENTS);
        assert_ptr_equal(r.intent, r.ranking[0].intent);
        assert_true(r.confidence == r.ranking[0].confidence);
        assert_true(fabsf(r.margin - (r.ranking[0].confidence - r.ranking[1].confidence)) < 1e-7f);
        assert_int_equal(r.out_of_scope, r.confidence < thr || !strcmp(r.intent, oos));
        double sum = 0;
        for (size_t k = 0; k < r.n_ranking; k++) {
            sum += r.ranking[k].confidence;
            if (k) assert_true(r.ranking[k].confidence <= r.ranking[k - 1].confidence);
            for (size_t j = 0; j < k; j++) assert_ptr_not_equal(r.ranking[j].intent, r.ranking[k].intent);
        }
        assert_true(fabs(sum - 1.0) < 1e-5);
        /* entities: in order, disjoint, inside the text, of the model's types */
        const size_t len = strlen(k_texts[i]);
        for (size_t k = 0; k < r.n_entities; k++) {
            const qiao_entity *e = &r.entities[k];
            assert_true(e->start < e->end && e->end <= len);
            assert_true(k == 0 || r.entities[k - 1].end <= e->start);
            assert_true(e->confidence > 0.0f && e->confidence <= 1.0f);
            bool known = false;
            for (size_t t = 0; t < 5; t++) known = known || e->type == qiao_model_entity_type(m, t);
            assert_true(known);
        }
        assert_true((r.n_entities == 0) == (r.entities == NULL));
        qiao_intent_result_free(&r);
        assert_null(r.ranking);
    }
    assert_true(qiao_session_memory(s) > 0);
    qiao_intent_params p = qiao_intent_default_params();
    p.top_k = 3;
    p.threshold = 1.0f; /* nothing is that sure: all out of scope */
    qiao_intent_result r;
    assert_int_equal(qiao_intent_classify(s, "我想退货", &p, &r), QIAO_OK);
    assert_int_equal(r.n_ranking, 3);
    assert_true(r.out_of_scope);
    qiao_intent_result_free(&r);
    p.threshold = 0.0f; /* nothing is under it: out of scope only when "oos" comes first */
    assert_int_equal(qiao_intent_classify(s, "我想退货", &p, &r), QIAO_OK);
    assert_int_equal(r.out_of_scope, !strcmp(r.intent, oos));
    qiao_intent_result_free(&r);
    qiao_intent_result_free(NULL);
    qiao_session_free(s);
    qiao_model_free(m);
}

/* A batch gives what one text at a time gives (to float rounding), and
 * the API gives what the library's own classification gives. */
static void batch_equals_single(void **state) {
    (void)state;
    qiao_model *m = load();
    qiao_session *s = session(m, 1);
    qiao_intent_result batch[N_TEXTS];
    assert_int_equal(qiao_intent_classify_batch(s, k_texts, N_TEXTS, NULL, batch), QIAO_OK);
    qmod_model *lib = NULL;
    assert_int_equal(qmod_load(g_model, &lib), QIAO_OK);
    float *probs = qt_alloc((int64_t)N_TEXTS * N_INTENTS);
    assert_int_equal(qmi_classify(lib, k_texts, N_TEXTS, 1, probs), QIAO_OK);
    double worst = 0;
    for (size_t i = 0; i < N_TEXTS; i++) {
        qiao_intent_result one;
        assert_int_equal(qiao_intent_classify(s, k_texts[i], NULL, &one), QIAO_OK);
        assert_string_equal(one.intent, batch[i].intent);
        assert_int_equal(one.out_of_scope, batch[i].out_of_scope);
        assert_int_equal(one.n_entities, batch[i].n_entities);
        for (size_t k = 0; k < one.n_entities; k++) {
            assert_ptr_equal(one.entities[k].type, batch[i].entities[k].type);
            assert_int_equal(one.entities[k].start, batch[i].entities[k].start);
            assert_int_equal(one.entities[k].end, batch[i].entities[k].end);
        }
        for (size_t k = 0; k < N_INTENTS; k++) {
            worst = fmax(worst, fabs(one.ranking[k].confidence - batch[i].ranking[k].confidence));
            assert_string_equal(one.ranking[k].intent, batch[i].ranking[k].intent);
        }
        /* the ranking's first entry is the library's most probable class */
        int best = 0;
        for (int k = 1; k < N_INTENTS; k++) best = probs[i * N_INTENTS + k] > probs[i * N_INTENTS + best] ? k : best;
        assert_string_equal(batch[i].intent, qiao_model_intent(m, (size_t)best));
        assert_true(fabsf(batch[i].confidence - probs[i * N_INTENTS + best]) < 1e-5f);
        qiao_intent_result_free(&one);
        qiao_intent_result_free(&batch[i]);
    }
    printf("batch of %zu against single calls: max |diff| %.3g\n", N_TEXTS, worst);
    assert_true(worst < 1e-5);
    free(probs);
    qmod_free(lib);
    qiao_session_free(s);
    qiao_model_free(m);
}

/* Bad arguments and bad text: clear statuses, results zeroed, nothing to
 * free; a model that is an encoder only has no intents. */
static void bad_input(void **state) {
    (void)state;
    qiao_model *m = load();
    qiao_session *s = session(m, 1);
    qiao_intent_result r[2];
    memset(r, 0x5a, sizeof r);
    assert_int_equal(qiao_intent_classify(NULL, "x", NULL, &r[0]), QIAO_ERR_INVALID_ARGUMENT);
    assert_null(r[0].ranking);
    assert_int_equal(qiao_intent_classify(s, NULL, NULL, &r[0]), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_intent_classify(s, "x", NULL, NULL), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_intent_classify_batch(s, k_texts, 0, NULL, r), QIAO_ERR_INVALID_ARGUMENT);
    const char *with_null[2] = {"我想退货", NULL};
    assert_int_equal(qiao_intent_classify_batch(s, with_null, 2, NULL, r), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "text 1"));
    qiao_intent_params p = qiao_intent_default_params();
    p.top_k = -1;
    assert_int_equal(qiao_intent_classify(s, "x", &p, &r[0]), QIAO_ERR_INVALID_ARGUMENT);
    p = qiao_intent_default_params();
    p.threshold = 1.5f;
    assert_int_equal(qiao_intent_classify(s, "x", &p, &r[0]), QIAO_ERR_INVALID_ARGUMENT);
    p.threshold = NAN;
    assert_int_equal(qiao_intent_classify(s, "x", &p, &r[0]), QIAO_ERR_INVALID_ARGUMENT);
    p = qiao_intent_default_params();
    p.struct_size = 3;
    assert_int_equal(qiao_intent_classify(s, "x", &p, &r[0]), QIAO_ERR_INVALID_ARGUMENT);
    const char *bad_utf8[2] = {"好的", "\xe5\xa5"};
    memset(r, 0x5a, sizeof r);
    assert_int_equal(qiao_intent_classify_batch(s, bad_utf8, 2, NULL, r), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "text 1 is not valid UTF-8 (byte 0)"));
    assert_null(r[0].ranking);
    assert_null(r[1].ranking);
    /* the session still works after the failures */
    assert_int_equal(qiao_intent_classify(s, "好的", NULL, &r[0]), QIAO_OK);
    qiao_intent_result_free(&r[0]);
    qiao_session_free(s);
    qiao_model_free(m);
    qiao_model *enc = NULL;
    assert_int_equal(qiao_model_load(ENCODER, &enc), QIAO_OK);
    assert_false(qiao_model_can_classify(enc));
    assert_int_equal(qiao_model_intent_count(enc), 0);
    assert_null(qiao_model_intent(enc, 0));
    s = session(enc, 1);
    assert_int_equal(qiao_intent_classify(s, "x", NULL, &r[0]), QIAO_ERR_UNSUPPORTED);
    assert_non_null(strstr(qiao_last_error(), "not an intent classifier"));
    qiao_session_free(s);
    qiao_model_free(enc);
}

/* Context through the API: a classifier trained with one earlier turn
 * tells the same reply apart by the turn before it, and reads only its
 * last turn; its entities stay in the text; a classifier trained
 * without context gives the same bits with or without turns; a bad turn is
 * a clear error; params from before the context fields mean none. */
static void context(void **state) {
    (void)state;
    qiao_model *m = NULL;
    if (qiao_model_load(g_context_model, &m) != QIAO_OK) fail_msg("%s", qiao_last_error());
    assert_int_equal(qiao_model_intent_context(m), 1);
    qiao_session *s = session(m, 1);
    qiao_intent_params p = qiao_intent_default_params();
    assert_null(p.context);
    assert_int_equal(p.n_context, 0);
    for (int r = 0; r < 4; r++) {
        for (int l = 0; l < 3; l++) {
            /* the turn the model reads is the last one: an older one before it changes nothing it reads */
            const char *turns[2] = {"你好", k_offers[l]};
            p.context = turns;
            p.n_context = 2;
            qiao_intent_result with, last;
            assert_int_equal(qiao_intent_classify(s, k_replies[r], &p, &with), QIAO_OK);
            assert_string_equal(with.intent, k_offer_labels[l]);
            p.context = turns + 1;
            p.n_context = 1;
            assert_int_equal(qiao_intent_classify(s, k_replies[r], &p, &last), QIAO_OK);
            assert_true(fabsf(with.confidence - last.confidence) < 1e-6f);
            for (size_t e = 0; e < with.n_entities; e++) assert_true(with.entities[e].end <= strlen(k_replies[r]));
            qiao_intent_result_free(&with);
            qiao_intent_result_free(&last);
        }
    }
    /* a batch continues one conversation: each text read after the same turn */
    const char *turn[1] = {k_offers[1]};
    p.context = turn;
    p.n_context = 1;
    qiao_intent_result batch[4];
    assert_int_equal(qiao_intent_classify_batch(s, k_replies, 4, &p, batch), QIAO_OK);
    for (int r = 0; r < 4; r++) {
        assert_string_equal(batch[r].intent, k_offer_labels[1]);
        qiao_intent_result_free(&batch[r]);
    }
    /* bad turns */
    qiao_intent_result r;
    const char *bad[2] = {"你好", "\xe5\xa5"};
    p.context = bad;
    p.n_context = 2;
    assert_int_equal(qiao_intent_classify(s, "好的", &p, &r), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "context turn 1 is not valid UTF-8 (byte 0)"));
    assert_null(r.ranking);
    const char *with_null[2] = {"你好", NULL};
    p.context = with_null;
    assert_int_equal(qiao_intent_classify(s, "好的", &p, &r), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "context turn 1 is NULL"));
    p.context = NULL;
    assert_int_equal(qiao_intent_classify(s, "好的", &p, &r), QIAO_ERR_INVALID_ARGUMENT);
    /* an application built before the context fields passes a smaller struct: no context */
    p = qiao_intent_default_params();
    p.struct_size = offsetof(qiao_intent_params, context);
    qiao_intent_result old, none;
    assert_int_equal(qiao_intent_classify(s, "好的", &p, &old), QIAO_OK);
    assert_int_equal(qiao_intent_classify(s, "好的", NULL, &none), QIAO_OK);
    assert_string_equal(old.intent, none.intent);
    assert_true(old.confidence == none.confidence);
    qiao_intent_result_free(&old);
    qiao_intent_result_free(&none);
    qiao_session_free(s);
    qiao_model_free(m);
    /* the e-commerce classifier was trained without context: turns change nothing, entities included */
    m = load();
    assert_int_equal(qiao_model_intent_context(m), 0);
    s = session(m, 1);
    const char *turns[2] = {"订单2024112356789012怎么还没到", "您好，请问有什么可以帮您？"};
    p = qiao_intent_default_params();
    p.context = turns;
    p.n_context = 2;
    for (size_t i = 0; i < N_TEXTS; i++) {
        qiao_intent_result a, b;
        assert_int_equal(qiao_intent_classify(s, k_texts[i], NULL, &a), QIAO_OK);
        assert_int_equal(qiao_intent_classify(s, k_texts[i], &p, &b), QIAO_OK);
        assert_string_equal(a.intent, b.intent);
        assert_true(a.confidence == b.confidence);
        assert_int_equal(a.n_entities, b.n_entities);
        for (size_t e = 0; e < a.n_entities; e++)
            assert_true(a.entities[e].start == b.entities[e].start && a.entities[e].end == b.entities[e].end);
        qiao_intent_result_free(&a);
        qiao_intent_result_free(&b);
    }
    qiao_session_free(s);
    qiao_model_free(m);
}

#define N_WORKERS 4
#define ROUNDS 3

typedef struct job {
    const qiao_model *m;
    int n_threads;
    qiao_status st;
    float conf[N_TEXTS][N_INTENTS];
    const char *intent[N_TEXTS];
} job;

/* ROUNDS batches on a session of its own; every round must give the
 * first round's bits (else j->st is QIAO_ERR_INTERNAL). */
static void *worker(void *arg) {
    job *j = arg;
    qiao_session_params sp = qiao_session_default_params();
    sp.n_threads = j->n_threads;
    qiao_session *s = NULL;
    j->st = qiao_session_new(j->m, &sp, &s);
    for (int round = 0; round < ROUNDS && j->st == QIAO_OK; round++) {
        qiao_intent_result r[N_TEXTS];
        j->st = qiao_intent_classify_batch(s, k_texts, N_TEXTS, NULL, r);
        for (size_t i = 0; i < N_TEXTS && j->st == QIAO_OK; i++) {
            if (round == 0) j->intent[i] = r[i].intent;
            for (size_t k = 0; k < N_INTENTS; k++) {
                if (round == 0) j->conf[i][k] = r[i].ranking[k].confidence;
                else if (j->conf[i][k] != r[i].ranking[k].confidence || j->intent[i] != r[i].intent)
                    j->st = QIAO_ERR_INTERNAL;
            }
        }
        for (size_t i = 0; i < N_TEXTS; i++) qiao_intent_result_free(&r[i]); /* zeroed after a failure */
    }
    qiao_session_free(s);
    return NULL;
}

/* Four threads, each with its own session on one shared model, give the
 * single-threaded run's bits. */
static void threads(void **state) {
    (void)state;
    qiao_model *m = load();
    job *ref = calloc(1, sizeof *ref), *jobs = calloc(N_WORKERS, sizeof *jobs);
    assert_non_null(ref);
    assert_non_null(jobs);
    ref->m = m;
    ref->n_threads = 1;
    worker(ref);
    assert_int_equal(ref->st, QIAO_OK);
    pthread_t th[N_WORKERS];
    for (int i = 0; i < N_WORKERS; i++) {
        jobs[i].m = m;
        jobs[i].n_threads = 1 + i % 2;
        assert_int_equal(pthread_create(&th[i], NULL, worker, &jobs[i]), 0);
    }
    for (int i = 0; i < N_WORKERS; i++) assert_int_equal(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < N_WORKERS; i++) {
        assert_int_equal(jobs[i].st, QIAO_OK);
        assert_memory_equal(jobs[i].conf, ref->conf, sizeof ref->conf);
        for (size_t t = 0; t < N_TEXTS; t++) assert_ptr_equal(jobs[i].intent[t], ref->intent[t]);
    }
    printf("%d threads: the single-threaded run's bits\n", N_WORKERS);
    free(ref), free(jobs);
    qiao_model_free(m);
}

static const struct CMUnitTest tests[] = {cmocka_unit_test(labels_and_ranking), cmocka_unit_test(batch_equals_single),
                                          cmocka_unit_test(bad_input), cmocka_unit_test(threads),
                                          cmocka_unit_test(context)};

int main(int argc, char **argv) {
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, setup, teardown);
}
