/* tests/unit/test_train.c - contrastive training (models/train/train.c) on a few
 * generated scenes with spoken long captions and the tiny config:
 *   resume_exact  a run stopped after step 2 and resumed from its
 *                 checkpoint ends with the same model, byte for byte, and
 *                 the same losses, as the run that was never stopped;
 *   threads       1 and 2 compute threads (and 1 or 2 loader threads) give
 *                 the same model bytes: a run is a function of its seed;
 *   learns        on 16 scenes the three losses fall well below chance;
 *   errors        bad inputs fail with clear messages and leave no output;
 *   freeze        towers named in freeze stay as initialized, the others
 *                 learn; a run with every tower frozen is refused; with
 *                 audio_weight 0 the audio tower and its temperatures stay;
 *   restart       a resumed run given --restart's schedule starts a new
 *                 warmup and cosine at the checkpoint's step;
 *   chunks        clips run in chunks of similar length (qmod_batch_select, as
 *                 the trainer does) give the whole batch's embeddings and
 *                 parameter gradients. */
#define _GNU_SOURCE
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model_fixture.h"
#include "models/embed.h"
#include "models/train/train.h"
#include "nn/nn.h"
#include "shapes/shapes.h"

#define TINY_JSON QIAO_SOURCE_DIR "/models/configs/tiny.json"
#define TOK_PATH QIAO_TEST_DATA "/tokenizer/tok-test.safetensors"
#define N_SCENES 16
#define MAX_STEPS 64
#define LEARNED 0.8 /* share of the chance loss a learning run must get under */

static int rm_one(const char *p, const struct stat *s, int f, struct FTW *w) {
    (void)s, (void)f, (void)w;
    return remove(p);
}

static char *g_dir; /* generated scenes, shared by the cases */

static int setup(void **state) {
    (void)state;
    const char *t = getenv("TMPDIR");
    char buf[512];
    snprintf(buf, sizeof buf, "%s/qiao_train_XXXXXX", t && *t ? t : "/tmp");
    g_dir = strdup(buf);
    if (!mkdtemp(g_dir)) return -1;
    char data[600];
    snprintf(data, sizeof data, "%s/data", g_dir);
    shapes_params p = shapes_default_params();
    p.n = N_SCENES;
    p.seed = 5;
    p.split = SHAPES_TRAIN;
    p.speech = SHAPES_SPEECH_LONG;
    p.jobs = 2;
    if (shapes_generate(&p, data) != QIAO_OK) {
        printf("shapes_generate: %s\n", qiao_last_error());
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(g_dir);
    return 0;
}

typedef struct run {
    int64_t stop_at;             /* cancel after this step (0 = never) */
    int64_t last;                /* last step seen */
    float loss[MAX_STEPS + 1][QMOD_N_PAIRS];
    float lr[MAX_STEPS + 1];
} run;

static int on_step(const qmod_train_log *l, void *user) {
    run *r = user;
    r->last = l->step;
    if (l->step <= MAX_STEPS) {
        for (int i = 0; i < QMOD_N_PAIRS; i++) r->loss[l->step][i] = l->loss_pair[i];
        r->lr[l->step] = l->lr;
    }
    return r->stop_at && l->step >= r->stop_at;
}

static void path(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", g_dir, name); }

/* Trains the tiny config; resume = checkpoint to continue from or NULL. */
static qiao_status train_ex(const char *out, const char *ckpt, const char *resume, int64_t steps, int threads,
                            int loader_threads, float lr, run *r, uint32_t freeze, int64_t restart,
                            float audio_weight) {
    char data[600];
    path(data, sizeof data, "data");
    qmod_train_params p;
    memset(&p, 0, sizeof p);
    p.config_path = TINY_JSON;
    p.tokenizer_path = TOK_PATH;
    p.data_dir = data;
    p.out_path = out;
    p.ckpt_path = ckpt;
    p.resume_path = resume;
    qiao_status st = resume ? qmod_train_hparams_from_checkpoint(resume, &p.hp, NULL)
                            : qmod_train_hparams_from_config("{}", &p.hp);
    assert_int_equal(st, QIAO_OK);
    if (!resume) {
        p.hp.batch = 8;
        p.hp.steps = steps;
        p.hp.warmup = steps > 20 ? 20 : 2;
        p.hp.lr = lr;
        p.hp.eval_every = 0;
        p.hp.ckpt_every = 0;
        p.hp.seed = 7;
        p.hp.freeze = freeze;
        p.hp.audio_weight = audio_weight;
    }
    if (resume && restart > 0) {
        p.hp.steps = steps;
        p.hp.restart = restart;
    }
    p.threads = threads;
    p.loader_threads = loader_threads;
    p.on_step = on_step;
    p.user = r;
    return qmod_train(&p);
}

static qiao_status train(const char *out, const char *ckpt, const char *resume, int64_t steps, int threads,
                         int loader_threads, float lr, run *r) {
    return train_ex(out, ckpt, resume, steps, threads, loader_threads, lr, r, 0, 0, 1.0f);
}

static unsigned char *slurp(const char *file, size_t *len) {
    FILE *f = fopen(file, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    fclose(f);
    return b;
}

static void assert_same_file(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    unsigned char *x = slurp(a, &na), *y = slurp(b, &nb);
    assert_non_null(x);
    assert_non_null(y);
    assert_int_equal(na, nb);
    assert_memory_equal(x, y, na);
    free(x);
    free(y);
}

static void resume_exact(void **state) {
    (void)state;
    char outA[700], ckA[700], outB[700], ckB[700];
    path(outA, sizeof outA, "a.safetensors");
    path(ckA, sizeof ckA, "a.ckpt.safetensors");
    path(outB, sizeof outB, "b.safetensors");
    path(ckB, sizeof ckB, "b.ckpt.safetensors");
    run ra = {0}, rb = {.stop_at = 2}, rc = {0};
    assert_int_equal(train(outA, ckA, NULL, 4, 2, 1, 1e-3f, &ra), QIAO_OK);
    assert_int_equal(ra.last, 4);
    /* stopped after step 2: a checkpoint, no model */
    assert_int_equal(train(outB, ckB, NULL, 4, 2, 1, 1e-3f, &rb), QIAO_ERR_CANCELLED);
    assert_non_null(strstr(qiao_last_error(), "resume from"));
    assert_int_equal(rb.last, 2);
    assert_int_equal(access(outB, F_OK), -1);
    assert_int_equal(access(ckB, F_OK), 0);
    /* resumed: steps 3 and 4 exactly as the uninterrupted run */
    assert_int_equal(train(outB, ckB, ckB, 0, 2, 1, 0, &rc), QIAO_OK);
    assert_int_equal(rc.last, 4);
    for (int s = 1; s <= 2; s++) assert_memory_equal(ra.loss[s], rb.loss[s], sizeof ra.loss[s]);
    for (int s = 3; s <= 4; s++) assert_memory_equal(ra.loss[s], rc.loss[s], sizeof ra.loss[s]);
    /* (the checkpoints differ only in their wall-time metadata) */
    assert_same_file(outA, outB);
}

static void threads(void **state) {
    (void)state;
    char out1[700], ck1[700], out2[700], ck2[700];
    path(out1, sizeof out1, "t1.safetensors");
    path(ck1, sizeof ck1, "t1.ckpt.safetensors");
    path(out2, sizeof out2, "t2.safetensors");
    path(ck2, sizeof ck2, "t2.ckpt.safetensors");
    run r1 = {0}, r2 = {0};
    assert_int_equal(train(out1, ck1, NULL, 3, 1, 1, 1e-3f, &r1), QIAO_OK);
    assert_int_equal(train(out2, ck2, NULL, 3, 2, 2, 1e-3f, &r2), QIAO_OK);
    assert_same_file(out1, out2);
}

static void learns(void **state) {
    (void)state;
    char out[700], ck[700];
    path(out, sizeof out, "l.safetensors");
    path(ck, sizeof ck, "l.ckpt.safetensors");
    run r = {0};
    const int64_t steps = 60;
    assert_int_equal(train(out, ck, NULL, steps, 2, 1, 3e-3f, &r), QIAO_OK);
    /* chance is ln(8) = 2.08 for a batch of 8; the first steps sit there */
    double first[QMOD_N_PAIRS] = {0}, late[QMOD_N_PAIRS] = {0};
    for (int i = 0; i < QMOD_N_PAIRS; i++) {
        for (int s = 1; s <= 3; s++) first[i] += r.loss[s][i] / 3.0;
        for (int64_t s = steps - 4; s <= steps; s++) late[i] += r.loss[s][i] / 5.0;
        printf("pair %d: loss %.3f over steps 1-3, %.3f over steps %lld-%lld (chance %.3f)\n", i, first[i], late[i],
               (long long)(steps - 4), (long long)steps, log(8.0));
    }
    for (int i = 0; i < QMOD_N_PAIRS; i++) {
        assert_true(fabs(first[i] - log(8.0)) < 0.15);
        assert_true(late[i] < LEARNED * log(8.0));
    }
}

static void errors(void **state) {
    (void)state;
    char out[700], ck[700], bad[700];
    path(out, sizeof out, "e.safetensors");
    path(ck, sizeof ck, "e.ckpt.safetensors");
    path(bad, sizeof bad, "bad.ckpt.safetensors");
    qmod_train_params p;
    memset(&p, 0, sizeof p);
    assert_int_equal(qmod_train(&p), QIAO_ERR_INVALID_ARGUMENT);
    /* a missing data directory */
    assert_int_equal(qmod_train_hparams_from_config("{}", &p.hp), QIAO_OK);
    p.config_path = TINY_JSON;
    p.tokenizer_path = TOK_PATH;
    p.data_dir = "/nonexistent/qiao";
    p.out_path = out;
    p.ckpt_path = ck;
    assert_int_equal(qmod_train(&p), QIAO_ERR_IO);
    assert_non_null(strstr(qiao_last_error(), "/nonexistent/qiao"));
    /* a batch larger than the data */
    char data[600];
    path(data, sizeof data, "data");
    p.data_dir = data;
    p.hp.batch = 64;
    assert_int_equal(qmod_train(&p), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "fewer than one batch"));
    /* a config without the text tower every pair of the contrastive
     * objective needs (one without audio trains text-image only: an
     * imported CLIP, tests/golden.cmake clip_finetune) */
    char partial[700];
    path(partial, sizeof partial, "no-text.json");
    FILE *f = fopen(partial, "wb");
    fputs("{\"name\": \"notext\", \"embed_dim\": 64, \"image\": {\"image_size\": 32, \"patch\": 8, "
          "\"width\": 16, \"layers\": 1, \"heads\": 2, \"mlp\": 32}, \"audio\": {\"n_mels\": 80, "
          "\"width\": 16, \"stem_kernels\": [5, 3], \"stem_strides\": [2, 2], \"layers\": 1, \"heads\": 2, "
          "\"mlp\": 32, \"max_frames\": 2560, \"norm_mean\": -4.0, \"norm_std\": 4.0}}",
          f);
    fclose(f);
    p.config_path = partial;
    p.hp.batch = 8;
    assert_int_equal(qmod_train(&p), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "no text tower"));
    unlink(partial);
    p.config_path = TINY_JSON;
    p.hp.batch = 64;
    /* a checkpoint that is not one */
    f = fopen(bad, "wb");
    fputs("not a checkpoint", f);
    fclose(f);
    p.resume_path = bad;
    p.hp.batch = 8;
    assert_int_equal(qmod_train(&p), QIAO_ERR_FORMAT);
    /* bad hyperparameters in a config */
    qmod_train_hparams h;
    assert_int_equal(qmod_train_hparams_from_config("{\"train\": {\"batch\": 1}}", &h), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "train.batch"));
    assert_int_equal(qmod_train_hparams_from_config("{\"train\": {\"lr\": \"fast\"}}", &h), QIAO_ERR_FORMAT);
    assert_int_equal(qmod_train_hparams_from_config("{\"train\": {\"epochs\": 3}}", &h), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "train.epochs"));
    assert_int_equal(access(out, F_OK), -1);
}

/* Max |a - b| over the tensors whose name starts with `prefix`. */
static double tower_change(const qmod_model *a, const qmod_model *b, const char *prefix) {
    double d = 0;
    for (size_t i = 0; i < a->tab.n; i++) {
        const qc_tensor_desc *t = &a->tab.t[i];
        if (strncmp(t->name, prefix, strlen(prefix))) continue;
        const float *x = a->arena.base + t->offset, *y = b->arena.base + b->tab.t[i].offset;
        for (int64_t j = 0; j < t->numel; j++) d = fmax(d, fabs((double)x[j] - y[j]));
    }
    return d;
}

static void freeze(void **state) {
    (void)state;
    char out[700], ck[700];
    path(out, sizeof out, "f.safetensors");
    path(ck, sizeof ck, "f.ckpt.safetensors");
    run r = {0};
    const uint32_t locked = (1u << QMOD_TEXT) | (1u << QMOD_IMAGE);
    assert_int_equal(train_ex(out, ck, NULL, 3, 2, 1, 1e-3f, &r, locked, 0, 1.0f), QIAO_OK);
    qmod_model *init = qt_tiny_model(7, true), *done = NULL; /* the run's start: tiny config, seed 7 */
    assert_int_equal(qmod_load(ck, &done), QIAO_OK);         /* the checkpoint keeps f32 weights */
    assert_int_equal(init->tab.n, done->tab.n);
    assert_true(tower_change(init, done, "text.") == 0.0);
    assert_true(tower_change(init, done, "image.") == 0.0);
    assert_true(tower_change(init, done, "audio.") > 1e-4);
    /* the text-image temperature trains nothing when both towers are locked */
    assert_true(tower_change(init, done, "logit_scale.text_image") == 0.0);
    assert_true(tower_change(init, done, "logit_scale.audio_text") > 0.0);
    qmod_free(init);
    qmod_free(done);
    /* the setting is kept in the checkpoint */
    qmod_train_hparams h;
    assert_int_equal(qmod_train_hparams_from_checkpoint(ck, &h, NULL), QIAO_OK);
    assert_int_equal(h.freeze, locked);
    /* nothing left to train */
    assert_int_equal(train_ex(out, ck, NULL, 3, 2, 1, 1e-3f, &r, locked | (1u << QMOD_AUDIO), 0, 1.0f),
                     QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "frozen"));
    assert_int_equal(qmod_train_hparams_from_config("{\"train\": {\"freeze\": [\"text\", \"video\"]}}", &h),
                     QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "video"));
    assert_int_equal(qmod_train_hparams_from_config("{\"train\": {\"freeze\": [\"image\"]}}", &h), QIAO_OK);
    assert_int_equal(h.freeze, 1u << QMOD_IMAGE);

    /* audio_weight 0: text-image only. The audio tower and the temperatures
     * of its pairs do not run and must not decay either. */
    assert_int_equal(train_ex(out, ck, NULL, 3, 2, 1, 1e-3f, &r, 0, 0, 0.0f), QIAO_OK);
    init = qt_tiny_model(7, true);
    assert_int_equal(qmod_load(ck, &done), QIAO_OK);
    assert_true(tower_change(init, done, "text.") > 1e-4);
    assert_true(tower_change(init, done, "image.") > 1e-4);
    assert_true(tower_change(init, done, "audio.") == 0.0);
    assert_true(tower_change(init, done, "logit_scale.audio") == 0.0);
    assert_true(tower_change(init, done, "logit_scale.text_image") > 0.0);
    qmod_free(init);
    qmod_free(done);
}

static void restart(void **state) {
    (void)state;
    char out[700], ck[700];
    path(out, sizeof out, "r.safetensors");
    path(ck, sizeof ck, "r.ckpt.safetensors");
    run a = {0}, b = {0};
    const float lr = 1e-3f;
    assert_int_equal(train(out, ck, NULL, 4, 2, 1, lr, &a), QIAO_OK); /* warmup 2, cosine to step 4 */
    /* four more steps: the schedule starts again at step 4 (warmup 2 from 0) */
    assert_int_equal(train_ex(out, ck, ck, 8, 2, 1, 0, &b, 0, 4, 1.0f), QIAO_OK);
    assert_int_equal(b.last, 8);
    for (int s = 1; s <= 4; s++) {
        const float want = nn_lr_warmup_cosine(s - 1, 2, 4, lr, lr / 20.0f);
        assert_float_equal(b.lr[4 + s], want, 1e-9);
        assert_float_equal(a.lr[s], want, 1e-9);
    }
    assert_true(b.lr[7] > b.lr[8]); /* peak after the warmup, then it decays again */
}

/* Embeddings and parameter gradients of `rows` of the clip batch `all`, run
 * as one batch of their own; gradients accumulate into g. */
static void run_rows(const qb_exec *ex, const qmod_model *m, qmod_params *g, const qmod_batch *all,
                     const int64_t *rows, size_t n, const float *demb_all, float *emb_all) {
    const int64_t D = m->cfg.embed_dim;
    qmod_batch sub;
    assert_int_equal(qmod_batch_select(m, all, rows, n, &sub), QIAO_OK);
    int64_t T = 1;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(sub.lengths[i], all->lengths[rows[i]]);
        if (all->lengths[rows[i]] > T) T = all->lengths[rows[i]];
    }
    assert_int_equal(sub.T, T); /* padded to its own longest */
    qmod_work w;
    memset(&w, 0, sizeof w);
    assert_int_equal(qmod_work_init(&w, m, QMOD_AUDIO, (int64_t)n, T, true), QIAO_OK);
    const float *e = NULL;
    assert_int_equal(qmod_forward(ex, m, &w, &sub, &e), QIAO_OK);
    float *demb = calloc(n * (size_t)D, sizeof(float));
    assert_non_null(demb);
    for (size_t i = 0; i < n; i++) {
        memcpy(emb_all + rows[i] * D, e + i * (size_t)D, (size_t)D * sizeof(float));
        memcpy(demb + i * (size_t)D, demb_all + rows[i] * D, (size_t)D * sizeof(float));
    }
    qmod_backward(ex, m, g, &w, &sub, demb);
    free(demb);
    qmod_work_free(&w);
    qmod_batch_free(&sub);
}

static void chunks(void **state) {
    (void)state;
    qmod_model *m = qt_tiny_model(3, false);
    const int64_t D = m->cfg.embed_dim, M = m->cfg.audio.n_mels;
    enum { N = 5 };
    const int64_t frames[N] = {40, 200, 90, 17, 130};
    float *mels[N];
    uint32_t r = 12345;
    for (int i = 0; i < N; i++) {
        mels[i] = malloc((size_t)(frames[i] * M) * sizeof(float));
        assert_non_null(mels[i]);
        for (int64_t j = 0; j < frames[i] * M; j++) {
            r = r * 1664525u + 1013904223u;
            mels[i][j] = -8.0f + 8.0f * (float)(r >> 8) / 16777216.0f;
        }
    }
    qmod_batch all;
    assert_int_equal(qmod_batch_mels(m, (const float *const *)mels, frames, N, &all), QIAO_OK);
    float *demb = malloc((size_t)(N * D) * sizeof(float)), *e1 = calloc((size_t)(N * D), sizeof(float)),
          *e2 = calloc((size_t)(N * D), sizeof(float));
    assert_non_null(demb);
    assert_non_null(e1);
    assert_non_null(e2);
    for (int64_t j = 0; j < N * D; j++) {
        r = r * 1664525u + 1013904223u;
        demb[j] = (float)(r >> 8) / 16777216.0f - 0.5f;
    }
    qb_exec ex;
    qb_exec_cpu(&ex, 1);
    qc_arena g1, g2;
    assert_int_equal(qc_arena_alloc(&g1, m->tab.total), QIAO_OK);
    assert_int_equal(qc_arena_alloc(&g2, m->tab.total), QIAO_OK);
    qc_arena_zero(&g1);
    qc_arena_zero(&g2);
    qmod_params p1, p2;
    qc_table_bind(&m->tab, g1.base, &p1);
    qc_table_bind(&m->tab, g2.base, &p2);

    const int64_t whole[N] = {0, 1, 2, 3, 4}, short3[3] = {3, 0, 2}, long2[2] = {4, 1};
    run_rows(&ex, m, &p1, &all, whole, N, demb, e1);
    run_rows(&ex, m, &p2, &all, short3, 3, demb, e2);
    run_rows(&ex, m, &p2, &all, long2, 2, demb, e2);
    double max_e = 0, max_g = 0, scale = 0;
    for (int64_t j = 0; j < N * D; j++) max_e = fmax(max_e, fabs((double)e1[j] - e2[j]));
    const float *a = g1.base, *b = g2.base;
    for (size_t j = 0; j < m->tab.total; j++) {
        max_g = fmax(max_g, fabs((double)a[j] - b[j]));
        scale = fmax(scale, fabs((double)a[j]));
    }
    assert_true(scale > 0);
    if (max_e > 1e-5 || max_g > 1e-4 * scale)
        fail_msg("chunked audio differs from the whole batch: embeddings by %g, gradients by %g (max %g)", max_e,
                 max_g, scale);

    /* rows outside the batch are an error, not a read out of bounds */
    qmod_batch bad;
    const int64_t out_of_range[1] = {N};
    assert_int_equal(qmod_batch_select(m, &all, out_of_range, 1, &bad), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qmod_batch_select(m, &all, whole, 0, &bad), QIAO_ERR_INVALID_ARGUMENT);

    qc_arena_free(&g1);
    qc_arena_free(&g2);
    free(demb);
    free(e1);
    free(e2);
    qmod_batch_free(&all);
    for (int i = 0; i < N; i++) free(mels[i]);
    qmod_free(m);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(resume_exact),
        cmocka_unit_test(threads),
        cmocka_unit_test(learns),
        cmocka_unit_test(errors),
        cmocka_unit_test(freeze),
        cmocka_unit_test(restart),
        cmocka_unit_test(chunks),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    /* the scenes are generated once for the cases that run */
    return cmocka_run_group_tests(tests, setup, teardown);
}
