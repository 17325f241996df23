/* The public API's contract: version, status strings, per-thread errors, the
 * log callback, params structs that can grow, and argument checking. */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <string.h>

#include "testutil.h"

static void version(void **state) {
    (void)state;
    assert_string_equal(qiao_version(), QIAO_VERSION_STRING);
    assert_int_equal(qiao_version_number(), QIAO_VERSION_NUMBER);
}

static void status_strings(void **state) {
    (void)state;
    /* Every status has its own, non-empty name; unknown values do not crash. */
    for (int a = QIAO_OK; a <= QIAO_ERR_CONFLICT; a++) {
        const char *s = qiao_status_str((qiao_status)a);
        assert_non_null(s);
        assert_true(strlen(s) > 0);
        for (int b = QIAO_OK; b < a; b++) assert_string_not_equal(s, qiao_status_str((qiao_status)b));
    }
    assert_string_equal(qiao_status_str((qiao_status)999), "unknown status");
    assert_int_equal(QIAO_ERR_FORMAT, 4); /* numbers are part of the ABI */
}

static void *fail_in_thread(void *arg) {
    qiao_model_file *f = NULL;
    qiao_status st = qiao_model_file_open((const char *)arg, &f);
    char *copy = strdup(qiao_last_error());
    return st == QIAO_OK ? NULL : copy;
}

static void thread_local_errors(void **state) {
    (void)state;
    qiao_model_file *f = NULL;
    assert_int_equal(qiao_model_file_open("/nonexistent/main-thread.safetensors", &f), QIAO_ERR_IO);
    assert_null(f);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, fail_in_thread, "/nonexistent/other-thread.safetensors"), 0);
    char *other = NULL;
    pthread_join(t, (void **)&other);
    assert_non_null(other);
    /* Each thread sees its own failure's message. */
    assert_non_null(strstr(other, "other-thread"));
    assert_non_null(strstr(qiao_last_error(), "main-thread"));
    free(other);
}

typedef struct log_capture {
    int count;
    qiao_log_level last_level;
    char last[256];
} log_capture;

static void capture(qiao_log_level level, const char *msg, void *user_data) {
    log_capture *c = user_data;
    c->count++;
    c->last_level = level;
    snprintf(c->last, sizeof c->last, "%s", msg);
}

static void log_callback(void **state) {
    (void)state;
    log_capture c = {0};
    qiao_set_log_callback(capture, QIAO_LOG_DEBUG, &c);
    qiao_model_file *f = NULL;
    assert_int_not_equal(qiao_model_file_open("/nonexistent/logged.safetensors", &f), QIAO_OK);
    assert_true(c.count >= 1);
    assert_non_null(strstr(c.last, "logged.safetensors"));
    /* Above the level: nothing delivered. */
    int before = c.count;
    qiao_set_log_callback(capture, QIAO_LOG_ERROR, &c);
    assert_int_not_equal(qiao_model_file_open("/nonexistent/quiet.safetensors", &f), QIAO_OK);
    assert_int_equal(c.count, before);
    qiao_set_log_callback(NULL, QIAO_LOG_ERROR, NULL);
}

static void params_struct_size(void **state) {
    (void)state;
    qiao_selfcheck_params p = qiao_selfcheck_default_params();
    assert_int_equal(p.struct_size, sizeof p);
    assert_true(p.steps > 0 && p.batch_size > 0 && p.learning_rate > 0);
    /* A program built against an older, shorter struct: the library must use
     * defaults for the fields it did not know. Simulated by a struct_size
     * that ends before `out_path`. */
    p.struct_size = offsetof(qiao_selfcheck_params, out_path);
    p.steps = 2;
    p.batch_size = 4;
    p.out_path = "/nonexistent/dir/never-written.safetensors"; /* beyond struct_size: ignored */
    qiao_selfcheck_result r;
    assert_int_equal(qiao_selfcheck_train(&p, &r), QIAO_OK);
    assert_int_equal(r.steps, 2);
}

static void selfcheck_bad_args(void **state) {
    (void)state;
    qiao_selfcheck_result r;
    assert_int_equal(qiao_selfcheck_train(NULL, &r), QIAO_ERR_INVALID_ARGUMENT);
    qiao_selfcheck_params p = qiao_selfcheck_default_params();
    assert_int_equal(qiao_selfcheck_train(&p, NULL), QIAO_ERR_INVALID_ARGUMENT);
    p.steps = 0;
    assert_int_equal(qiao_selfcheck_train(&p, &r), QIAO_ERR_INVALID_ARGUMENT);
    assert_true(strlen(qiao_last_error()) > 0);
    p = qiao_selfcheck_default_params();
    p.batch_size = (int64_t)1 << 40; /* absurd: refused before allocating */
    assert_int_equal(qiao_selfcheck_train(&p, &r), QIAO_ERR_INVALID_ARGUMENT);
    p = qiao_selfcheck_default_params();
    p.struct_size = 3;
    assert_int_equal(qiao_selfcheck_train(&p, &r), QIAO_ERR_INVALID_ARGUMENT);
}

typedef struct cancel_state {
    int polls;
    int64_t last_done;
} cancel_state;

static int cancel_after_some(void *user_data) {
    cancel_state *c = user_data;
    return ++c->polls > 5;
}

static void on_progress(const char *phase, int64_t done, int64_t total, void *user_data) {
    cancel_state *c = user_data;
    assert_string_equal(phase, "train");
    assert_true(done > c->last_done && done <= total);
    c->last_done = done;
}

static void selfcheck_cancel(void **state) {
    (void)state;
    cancel_state c = {0, 0};
    qiao_selfcheck_params p = qiao_selfcheck_default_params();
    p.steps = 1000;
    p.batch_size = 8;
    p.n_threads = 1;
    p.cancel = cancel_after_some;
    p.cancel_user_data = &c;
    p.progress = on_progress;
    p.progress_user_data = &c;
    qiao_selfcheck_result r;
    assert_int_equal(qiao_selfcheck_train(&p, &r), QIAO_ERR_CANCELLED);
    assert_int_equal(c.polls, 6);
    assert_non_null(strstr(qiao_last_error(), "cancel"));
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(version),           cmocka_unit_test(status_strings),
    cmocka_unit_test(thread_local_errors), cmocka_unit_test(log_callback),
    cmocka_unit_test(params_struct_size), cmocka_unit_test(selfcheck_bad_args),
    cmocka_unit_test(selfcheck_cancel),
};
QT_MAIN(tests)
