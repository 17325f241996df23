/* tests/unit/test_ring.c - the loaders' ring of prefetched batches
 * (models/data/ring.c) on its own, with a batch that is one allocation: the
 * batches in index order for any thread count and prefetch, from
 * first_batch to end; the lowest failing index stopping the ring after
 * the batches before it; the batch still held; stopping while workers
 * wait; and bad params. Leaks show under ASan (every batch owns memory). */
#include <string.h>

#include "models/data/ring.h"
#include "testutil.h"

typedef struct tbatch {
    int64_t index;
    int64_t *payload; /* (1) index * 7; owned */
} tbatch;

typedef struct tctx {
    int64_t fail_at; /* make fails for this index and every later one; -1: never */
} tctx;

static qiao_status tmake(void *ctx, int64_t index, void *batch, int worker) {
    (void)worker;
    const tctx *c = ctx;
    tbatch *b = batch;
    if (b->payload) return qc_error(QIAO_ERR_INTERNAL, "slot not freed before make");
    if (c->fail_at >= 0 && index >= c->fail_at) return qc_error(QIAO_ERR_IO, "batch %lld failed", (long long)index);
    b->index = index;
    b->payload = malloc(sizeof *b->payload);
    if (!b->payload) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    *b->payload = index * 7;
    return QIAO_OK;
}

static void tfree(void *ctx, void *batch) {
    (void)ctx;
    tbatch *b = batch;
    free(b->payload);
    memset(b, 0, sizeof *b);
}

static qmod_ring_params tparams(tctx *c, int threads, int prefetch, int64_t first, int64_t end) {
    qmod_ring_params p = {.name = "test_ring",
                          .batch_size = sizeof(tbatch),
                          .threads = threads,
                          .prefetch = prefetch,
                          .first_batch = first,
                          .end = end,
                          .make = tmake,
                          .free_batch = tfree,
                          .ctx = c};
    return p;
}

static void test_order(void **state) {
    (void)state;
    tctx c = {.fail_at = -1};
    for (int threads = 1; threads <= 4; threads++) {
        for (int prefetch = 1; prefetch <= 3; prefetch++) {
            qmod_ring_params p = tparams(&c, threads, prefetch, 5, 5 + 20);
            qmod_ring *r = NULL;
            assert_int_equal(qmod_ring_start(&p, &r), QIAO_OK);
            for (int64_t k = 5; k < 25; k++) {
                void *v = NULL;
                assert_int_equal(qmod_ring_next(r, &v), QIAO_OK);
                assert_non_null(v);
                const tbatch *b = v;
                assert_int_equal(b->index, k);
                assert_int_equal(*b->payload, k * 7);
                qmod_ring_release(r, v);
            }
            void *v = &c;
            assert_int_equal(qmod_ring_next(r, &v), QIAO_OK);
            assert_null(v);
            qmod_ring_stop(r);
        }
    }
    /* first_batch at or past end: nothing at all. */
    qmod_ring_params p = tparams(&c, 2, 2, 9, 4);
    qmod_ring *r = NULL;
    assert_int_equal(qmod_ring_start(&p, &r), QIAO_OK);
    void *v = &c;
    assert_int_equal(qmod_ring_next(r, &v), QIAO_OK);
    assert_null(v);
    qmod_ring_stop(r);
}

static void test_error(void **state) {
    (void)state;
    tctx c = {.fail_at = 9};
    for (int threads = 1; threads <= 4; threads++) {
        qmod_ring_params p = tparams(&c, threads, 2, 0, INT64_MAX);
        qmod_ring *r = NULL;
        assert_int_equal(qmod_ring_start(&p, &r), QIAO_OK);
        for (int64_t k = 0; k < 9; k++) {
            void *v = NULL;
            assert_int_equal(qmod_ring_next(r, &v), QIAO_OK);
            assert_int_equal(((const tbatch *)v)->index, k);
            qmod_ring_release(r, v);
        }
        /* The lowest failing index, whichever worker failed first, and again. */
        for (int i = 0; i < 2; i++) {
            void *v = &c;
            qc_error_clear();
            assert_int_equal(qmod_ring_next(r, &v), QIAO_ERR_IO);
            assert_null(v);
            assert_string_equal(qiao_last_error(), "batch 9 failed");
        }
        qmod_ring_stop(r);
    }
}

static void test_held(void **state) {
    (void)state;
    tctx c = {.fail_at = -1};
    qmod_ring_params p = tparams(&c, 2, 2, 0, INT64_MAX);
    qmod_ring *r = NULL;
    assert_int_equal(qmod_ring_start(&p, &r), QIAO_OK);
    void *b0 = NULL, *b1 = NULL, *b2 = NULL;
    assert_int_equal(qmod_ring_next(r, &b0), QIAO_OK);
    assert_int_equal(qmod_ring_next(r, &b1), QIAO_OK);
    assert_int_equal(qmod_ring_next(r, &b2), QIAO_ERR_INVALID_ARGUMENT);
    assert_null(b2);
    assert_string_equal(qiao_last_error(),
                        "test_ring_next: batch 0 is still held; with prefetch 2, release it before asking for batch 2");
    qmod_ring_release(r, &c); /* not a batch of this ring: ignored */
    qmod_ring_release(r, b0);
    assert_int_equal(qmod_ring_next(r, &b2), QIAO_OK);
    assert_int_equal(((const tbatch *)b2)->index, 2);
    /* Stopped with two batches out: stop frees them. */
    qmod_ring_stop(r);
}

static void test_stop(void **state) {
    (void)state;
    tctx c = {.fail_at = -1};
    for (int i = 0; i < 20; i++) {
        /* Workers block on full slots at once; stop must wake and join them. */
        qmod_ring_params p = tparams(&c, 4, 1 + i % 3, i, INT64_MAX);
        qmod_ring *r = NULL;
        assert_int_equal(qmod_ring_start(&p, &r), QIAO_OK);
        if (i % 2) {
            void *v = NULL;
            assert_int_equal(qmod_ring_next(r, &v), QIAO_OK);
        }
        qmod_ring_stop(r);
    }
    qmod_ring_stop(NULL);
}

static void test_bad_params(void **state) {
    (void)state;
    tctx c = {.fail_at = -1};
    qmod_ring *r = (qmod_ring *)&c; /* start must clear it */
    qmod_ring_params p = tparams(&c, 0, 2, 0, INT64_MAX);
    assert_int_equal(qmod_ring_start(&p, &r), QIAO_ERR_INVALID_ARGUMENT);
    assert_null(r);
    assert_string_equal(qiao_last_error(),
                        "test_ring_start: threads 0 (1..256), prefetch 2 (1..4096), first_batch 0 (>= 0)");
    p = tparams(&c, 1, QMOD_RING_MAX_PREFETCH + 1, 0, INT64_MAX);
    assert_int_equal(qmod_ring_check(&p), QIAO_ERR_INVALID_ARGUMENT);
    p = tparams(&c, 1, 1, -1, INT64_MAX);
    assert_int_equal(qmod_ring_check(&p), QIAO_ERR_INVALID_ARGUMENT);
    p = tparams(&c, 1, 1, 0, INT64_MAX);
    p.make = NULL;
    assert_int_equal(qmod_ring_check(&p), QIAO_ERR_INVALID_ARGUMENT);
    p = tparams(&c, 1, 2, 0, INT64_MAX);
    p.batch_size = SIZE_MAX - 1;
    assert_int_equal(qmod_ring_check(&p), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qmod_ring_start(&p, NULL), QIAO_ERR_INVALID_ARGUMENT);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order), cmocka_unit_test(test_error),      cmocka_unit_test(test_held),
        cmocka_unit_test(test_stop),  cmocka_unit_test(test_bad_params),
    };
    if (argc > 1) {
        char filter[128];
        snprintf(filter, sizeof filter, "test_%s", argv[1]);
        cmocka_set_test_filter(filter);
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
