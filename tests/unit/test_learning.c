/* The learning test: the built-in 2-layer transformer classifier must learn
 * the marker task (class = the symbol right after the one marker in the
 * sequence; chance 1/8, and a bag-of-tokens model cannot do it) to at least
 * 90% held-out accuracy within its default budget (600 steps of 64 sequences,
 * well under a minute on two cores), and the model file it writes must be a
 * valid safetensors with the configuration in its metadata. A second case
 * checks training is reproducible: same seed, same bytes. */
#define _POSIX_C_SOURCE 200809L

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#define MIN_ACCURACY 0.90f

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return buf;
}

static void learns_marker_task(void **state) {
    (void)state;
    char dir[] = "/tmp/qiao-learning-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/selfcheck.safetensors", dir);

    qiao_selfcheck_params p = qiao_selfcheck_default_params();
    p.n_threads = 2;
    p.out_path = path;
    qiao_selfcheck_result r;
    qiao_status st = qiao_selfcheck_train(&p, &r);
    if (st != QIAO_OK) fail_msg("%s: %s", qiao_status_str(st), qiao_last_error());
    printf("learning: %lld steps in %.1f s, final loss %.4f, held-out accuracy %.4f (chance %.4f)\n",
           (long long)r.steps, r.seconds, r.final_loss, r.accuracy, r.chance_accuracy);
    assert_true(r.accuracy >= MIN_ACCURACY);
    assert_true(r.final_loss < 0.5f);

    qiao_model_file *f = NULL;
    assert_int_equal(qiao_model_file_open(path, &f), QIAO_OK);
    const char *cfg = qiao_model_file_metadata(f, "qiao.config");
    assert_non_null(cfg);
    assert_non_null(strstr(cfg, "\"layers\":2"));
    qiao_tensor_info ti;
    assert_int_equal(qiao_model_file_find(f, "blocks.1.attn.q.weight", &ti), QIAO_OK);
    assert_int_equal(ti.ndim, 2);
    assert_int_equal(ti.shape[0], 64);
    assert_int_equal(ti.shape[1], 64);
    assert_int_equal(ti.dtype, QIAO_DTYPE_F32);
    /* tok 10x64 + pos 16x64 + 2 blocks x 33472 + ln_f 128 + head 8x64+8 */
    assert_int_equal(qiao_model_file_param_count(f), 69256);
    qiao_model_file_close(f);
    unlink(path);
    rmdir(dir);
}

static void reproducible(void **state) {
    (void)state;
    char dir[] = "/tmp/qiao-repro-XXXXXX";
    assert_non_null(mkdtemp(dir));
    /* Batch 64 makes the weight-gradient GEMMs reduce over 1024 rows, where
     * OpenBLAS's own threading would change the summation order; qiao's GEMM
     * split must not. Same seed, any thread count: the same bytes. */
    const int threads[] = {1, 2, 3};
    char *first = NULL;
    size_t first_n = 0;
    for (int i = 0; i < 3; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/t%d.safetensors", dir, threads[i]);
        qiao_selfcheck_params p = qiao_selfcheck_default_params();
        p.steps = 8;
        p.batch_size = 64;
        p.n_threads = threads[i];
        p.out_path = path;
        qiao_selfcheck_result r;
        assert_int_equal(qiao_selfcheck_train(&p, &r), QIAO_OK);
        size_t n;
        char *bytes = read_all(path, &n);
        if (!first) {
            first = bytes;
            first_n = n;
        } else {
            assert_int_equal(n, first_n);
            assert_memory_equal(bytes, first, n);
            free(bytes);
        }
        unlink(path);
    }
    free(first);
    rmdir(dir);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(learns_marker_task),
    cmocka_unit_test(reproducible),
};
QT_MAIN(tests)
