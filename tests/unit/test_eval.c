/* Retrieval evaluation (models/retrieval/eval.c) and `qiao eval retrieval`.
 *
 *   recall_core     qmod_recall_at_k on hand-made embeddings with known
 *                   ranks (ties, shared groups, a query with no hit), and on
 *                   random ones against a brute-force sort in double.
 *   invariants      a random tiny model on 12 generated scenes with spoken
 *                   long captions: recalls in [0, 1], r1 <= r5 <= r10, a
 *                   pool of 1 or 5 gives recall 1 where it must, query counts,
 *                   query-weighted means, --no-audio, and t2i equal to the
 *                   core run on embeddings computed here directly.
 *   duplicate_hits  scenes given one signature count as hits of each other.
 *   errors          bad params, a missing image named in the message.
 *   cli_json        the command's --json output, parsed with cJSON, equals
 *                   the library's numbers; nulls for directions not run.
 *
 * Nothing here needs a trained model: the invariants hold for any model. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "backend/backend.h"
#include "models/data/data.h"
#include "models/retrieval/eval.h"
#include "models/model.h"
#include "shapes/shapes.h"
#include "model_fixture.h"
#include "testutil.h"

#define N_SCENES 12

static void check(qiao_status st) {
    if (st != QIAO_OK) fail_msg("%s: %s", qiao_status_str(st), qiao_last_error());
}

/* ---- the core -------------------------------------------------------------- */

static void set_row(float *x, float a, float b) {
    x[0] = a;
    x[1] = b;
}

/* Reference: sort candidates by score (double), hits before non-hits on a
 * tie; the query's rank is the position of the first hit. */
static void brute_recall(const float *q, int64_t nq, const float *c, int64_t nc, int64_t D, const int64_t *qg,
                         const int64_t *cg, double out[3]) {
    int64_t hits[3] = {0};
    double *s = malloc((size_t)nc * sizeof *s);
    int64_t *ord = malloc((size_t)nc * sizeof *ord);
    assert_non_null(s);
    assert_non_null(ord);
    for (int64_t i = 0; i < nq; i++) {
        for (int64_t j = 0; j < nc; j++) {
            double acc = 0;
            for (int64_t d = 0; d < D; d++) acc += (double)q[i * D + d] * (double)c[j * D + d];
            s[j] = acc;
            ord[j] = j;
        }
        /* insertion sort: fine for a few dozen candidates */
        for (int64_t a = 1; a < nc; a++)
            for (int64_t b = a; b > 0; b--) {
                int64_t x = ord[b - 1], y = ord[b];
                bool swap = s[y] > s[x] || (s[y] == s[x] && cg[y] == qg[i] && cg[x] != qg[i]);
                if (!swap) break;
                ord[b - 1] = y;
                ord[b] = x;
            }
        int64_t rank = nc;
        for (int64_t j = 0; j < nc; j++)
            if (cg[ord[j]] == qg[i]) {
                rank = j;
                break;
            }
        hits[0] += rank < 1;
        hits[1] += rank < 5;
        hits[2] += rank < 10;
    }
    for (int k = 0; k < 3; k++) out[k] = (double)hits[k] / (double)nq;
    free(s);
    free(ord);
}

static void recall_core(void **state) {
    (void)state;
    qb_exec ex;
    qb_exec_cpu(&ex, 2);
    double r[QMOD_N_KS];

    /* Two queries along x. Candidates' x: 1.0 (group 0), 1.0 (group 9,
     * tied), 0.9 .. 0.0 (groups 10..19, none a hit), 0.5 (group 1), and
     * 0.95 (group 0, a second hit for query 0).
     * Query 0 (group 0): best hit scores 1.0, nothing strictly above: rank 0.
     * Query 1 (group 1): best hit 0.5; above it 1.0, 1.0, 0.95 (group 0,
     * not its hit), 0.9, 0.8, 0.7, 0.6: rank 7 -> miss at 1 and 5, hit at 10.
     * Query 2 (group 42): no hit among the candidates -> miss everywhere. */
    enum { NC = 14 };
    float c[NC * 2], q[3 * 2];
    int64_t cg[NC], qg[3] = {0, 1, 42};
    set_row(c + 0, 1.0f, 0.0f), cg[0] = 0;
    set_row(c + 2, 1.0f, 0.0f), cg[1] = 9;
    const float xs[10] = {0.9f, 0.8f, 0.7f, 0.6f, 0.5f, 0.4f, 0.3f, 0.2f, 0.1f, 0.0f};
    for (int j = 0; j < 10; j++) set_row(c + 2 * (2 + j), xs[j], 0.0f), cg[2 + j] = 10 + j;
    set_row(c + 2 * 12, 0.5f, 0.01f), cg[12] = 1;   /* 0.5 exactly on query 1 = (1, 0) */
    set_row(c + 2 * 13, 0.95f, 0.0f), cg[13] = 0;
    /* candidate 6 has x = 0.5 too, tied with query 1's hit: not above it */
    for (int i = 0; i < 3; i++) set_row(q + 2 * i, 1.0f, 0.0f);
    check(qmod_recall_at_k(&ex, q, 1, c, NC, 2, qg, cg, r));
    assert_true(r[0] == 1.0 && r[1] == 1.0 && r[2] == 1.0);
    check(qmod_recall_at_k(&ex, q + 2, 1, c, NC, 2, qg + 1, cg, r));
    assert_true(r[QMOD_R1] == 0.0 && r[QMOD_R5] == 0.0 && r[QMOD_R10] == 1.0);
    check(qmod_recall_at_k(&ex, q, 3, c, NC, 2, qg, cg, r));
    assert_float_equal(r[QMOD_R1], 1.0 / 3, 1e-12);
    assert_float_equal(r[QMOD_R5], 1.0 / 3, 1e-12);
    assert_float_equal(r[QMOD_R10], 2.0 / 3, 1e-12);
    /* Making group 9 a hit of query 1 too: now its best hit scores 1.0. */
    int64_t qg9[1] = {9};
    check(qmod_recall_at_k(&ex, q, 1, c, NC, 2, qg9, cg, r));
    assert_true(r[QMOD_R1] == 1.0);

    /* No queries: NaN. No candidates: every query misses. */
    check(qmod_recall_at_k(&ex, q, 0, c, NC, 2, qg, cg, r));
    assert_true(isnan(r[0]) && isnan(r[1]) && isnan(r[2]));
    check(qmod_recall_at_k(&ex, q, 3, c, 0, 2, qg, cg, r));
    assert_true(r[0] == 0.0 && r[2] == 0.0);
    /* A non-finite value is refused, naming the row. */
    float bad[4] = {1, 0, NAN, 0};
    assert_int_equal(qmod_recall_at_k(&ex, bad, 2, c, NC, 2, qg, cg, r), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "query row 1"));
    assert_int_equal(qmod_recall_at_k(&ex, q, 1, bad, 2, 2, qg, cg, r), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "candidate row 1"));

    /* Random embeddings with repeated groups, against the brute force. More
     * queries than one score chunk (256) so the chunking is exercised. */
    enum { RQ = 300, RC = 40, RD = 16 };
    float *rq = qt_alloc(RQ * RD), *rc = qt_alloc(RC * RD);
    qt_fill_normal(rq, RQ * RD, 1.0f, 11);
    qt_fill_normal(rc, RC * RD, 1.0f, 12);
    int64_t rqg[RQ], rcg[RC];
    for (int j = 0; j < RC; j++) rcg[j] = j % 30;            /* groups 0..9 twice */
    for (int i = 0; i < RQ; i++) rqg[i] = (i * 7) % 31;      /* group 30: no hit */
    double ref[3];
    brute_recall(rq, RQ, rc, RC, RD, rqg, rcg, ref);
    check(qmod_recall_at_k(&ex, rq, RQ, rc, RC, RD, rqg, rcg, r));
    printf("random: r1 %.4f r5 %.4f r10 %.4f (brute force %.4f %.4f %.4f)\n", r[0], r[1], r[2], ref[0], ref[1],
           ref[2]);
    for (int k = 0; k < 3; k++) assert_float_equal(r[k], ref[k], 1e-12);
    assert_true(ref[0] > 0.0 && ref[2] < 1.0); /* not a degenerate case */
    free(rq);
    free(rc);
}

/* ---- a model and a split --------------------------------------------------- */

typedef struct fixture {
    char root[64];          /* temporary directory */
    char split[128];        /* root/test: the generated split */
    char model_path[128];   /* root/model.safetensors */
    qmod_model *m;
    qmod_dataset d;
} fixture;

static void fixture_open(fixture *f) {
    memset(f, 0, sizeof *f);
    snprintf(f->root, sizeof f->root, "/tmp/qiao-eval-XXXXXX");
    assert_non_null(mkdtemp(f->root));
    snprintf(f->split, sizeof f->split, "%s/test", f->root);
    snprintf(f->model_path, sizeof f->model_path, "%s/model.safetensors", f->root);
    shapes_params sp = shapes_default_params();
    sp.n = N_SCENES;
    sp.seed = 5;
    sp.split = SHAPES_TEST;
    sp.size = 64;
    sp.speech = SHAPES_SPEECH_LONG;
    sp.jobs = 2;
    check(shapes_generate(&sp, f->split));
    f->m = qt_tiny_model(21, true);
    check(qmod_save(f->m, f->model_path, QIAO_DTYPE_F32));
    check(qmod_dataset_load(f->split, &f->d));
    assert_int_equal(f->d.n, N_SCENES);
}

static void fixture_close(fixture *f) {
    qmod_dataset_free(&f->d);
    qmod_free(f->m);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->root);
    assert_int_equal(system(cmd), 0);
}

static void eval(const fixture *f, int64_t pool, bool audio, qmod_retrieval *r) {
    qb_exec ex;
    qb_exec_cpu(&ex, 2);
    qmod_eval_params p = qmod_eval_default_params();
    p.pool = pool;
    p.batch = 5; /* several batches, a ragged last one */
    p.audio = audio;
    check(qmod_eval_retrieval(&ex, f->m, &f->d, &p, r));
}

static bool is_audio_dir(int dir) { return dir == QMOD_A2I || dir == QMOD_A2T || dir == QMOD_I2A; }

static void check_shape(const qmod_retrieval *r, int64_t pool, bool audio) {
    assert_int_equal(r->pool, pool);
    for (int dir = 0; dir < QMOD_N_DIRS; dir++) {
        int64_t n = 0;
        double wsum[QMOD_N_KS] = {0};
        for (int l = 0; l < QMOD_N_LANGS; l++) {
            int64_t nq = r->n_queries[l][dir];
            /* Every generated scene has both captions and (long) speech. */
            assert_int_equal(nq, is_audio_dir(dir) && !audio ? 0 : pool);
            const double *x = r->recall[l][dir];
            if (!nq) {
                assert_true(isnan(x[0]) && isnan(x[1]) && isnan(x[2]));
                continue;
            }
            for (int k = 0; k < QMOD_N_KS; k++) {
                assert_true(x[k] >= 0.0 && x[k] <= 1.0);
                /* a share of nq queries */
                assert_float_equal(x[k] * (double)nq, round(x[k] * (double)nq), 1e-9);
                wsum[k] += (double)nq * x[k];
            }
            assert_true(x[QMOD_R1] <= x[QMOD_R5] && x[QMOD_R5] <= x[QMOD_R10]);
            /* The hit is among the pool, so k >= pool always finds it. */
            if (pool <= 1) assert_true(x[QMOD_R1] == 1.0);
            if (pool <= 5) assert_true(x[QMOD_R5] == 1.0);
            if (pool <= 10) assert_true(x[QMOD_R10] == 1.0);
            n += nq;
        }
        for (int k = 0; k < QMOD_N_KS; k++) {
            if (n) assert_float_equal(r->mean[dir][k], wsum[k] / (double)n, 1e-12);
            else assert_true(isnan(r->mean[dir][k]));
        }
    }
}

static void print_retrieval(const char *what, const qmod_retrieval *r) {
    printf("%s (pool %lld):", what, (long long)r->pool);
    for (int dir = 0; dir < QMOD_N_DIRS; dir++)
        printf(" %s %.2f/%.2f/%.2f", qmod_dir_name(dir), r->mean[dir][0], r->mean[dir][1], r->mean[dir][2]);
    printf("\n");
}

/* Every miss reported, for the checks in `invariants`. */
typedef struct miss_set {
    qmod_miss m[8 * N_SCENES * QMOD_N_DIRS];
    int n;
} miss_set;

static void collect_miss(const qmod_miss *m, void *user) {
    miss_set *s = user;
    assert_true(s->n < (int)(sizeof s->m / sizeof s->m[0]));
    s->m[s->n++] = *m;
}

static float dot(const float *a, const float *b, int64_t D) {
    double s = 0;
    for (int64_t k = 0; k < D; k++) s += (double)a[k] * b[k];
    return (float)s;
}

static void invariants(void **state) {
    (void)state;
    fixture f;
    fixture_open(&f);
    qmod_retrieval r;
    const int64_t pools[] = {1, 5, N_SCENES, 1000};
    for (size_t i = 0; i < sizeof pools / sizeof *pools; i++) {
        eval(&f, pools[i], true, &r);
        print_retrieval("audio", &r);
        check_shape(&r, pools[i] < N_SCENES ? pools[i] : N_SCENES, true);
    }
    /* The full pool does not find every hit at 1 for a random model (else
     * the checks above would prove nothing about ranking). */
    assert_true(r.mean[QMOD_T2I][QMOD_R1] < 1.0);
    qmod_retrieval na;
    eval(&f, N_SCENES, false, &na);
    check_shape(&na, N_SCENES, false);
    /* Text and image directions do not depend on whether audio ran. */
    for (int l = 0; l < QMOD_N_LANGS; l++)
        for (int k = 0; k < QMOD_N_KS; k++) {
            assert_true(na.recall[l][QMOD_T2I][k] == r.recall[l][QMOD_T2I][k]);
            assert_true(na.recall[l][QMOD_I2T][k] == r.recall[l][QMOD_I2T][k]);
        }

    /* t2i in English from embeddings computed here, through the core. */
    qb_exec ex;
    qb_exec_cpu(&ex, 2);
    const int64_t D = f.m->cfg.embed_dim;
    float *te = qt_alloc(N_SCENES * D), *ie = qt_alloc(N_SCENES * D);
    const char *texts[N_SCENES];
    qiao_image *imgs[N_SCENES];
    int64_t groups[N_SCENES];
    for (int i = 0; i < N_SCENES; i++) {
        texts[i] = f.d.scenes[i].caption[QMOD_LANG_EN];
        check(qiao_image_decode_file(f.d.scenes[i].image, NULL, &imgs[i]));
        groups[i] = i;
        for (int j = 0; j < i; j++)
            if (!strcmp(f.d.scenes[i].signature, f.d.scenes[j].signature)) {
                groups[i] = groups[j];
                break;
            }
    }
    qmod_work wt, wi;
    memset(&wt, 0, sizeof wt);
    memset(&wi, 0, sizeof wi);
    check(qmod_embed_texts(&ex, f.m, &wt, texts, N_SCENES, te));
    check(qmod_embed_images(&ex, f.m, &wi, (const qiao_image *const *)imgs, N_SCENES, ie));
    double core[QMOD_N_KS];
    check(qmod_recall_at_k(&ex, te, N_SCENES, ie, N_SCENES, D, groups, groups, core));
    for (int k = 0; k < QMOD_N_KS; k++) assert_float_equal(core[k], r.recall[QMOD_LANG_EN][QMOD_T2I][k], 1e-12);
    check(qmod_recall_at_k(&ex, ie, N_SCENES, te, N_SCENES, D, groups, groups, core));
    for (int k = 0; k < QMOD_N_KS; k++) assert_float_equal(core[k], r.recall[QMOD_LANG_EN][QMOD_I2T][k], 1e-12);

    /* The misses: one per query that missed at 1, with the scene that beat
     * it; the same recalls as without the callback. */
    static miss_set ms;
    ms.n = 0;
    qmod_eval_params mp = qmod_eval_default_params();
    mp.pool = N_SCENES;
    mp.batch = 5;
    mp.on_miss = collect_miss;
    mp.miss_user = &ms;
    qmod_retrieval rm;
    check(qmod_eval_retrieval(&ex, f.m, &f.d, &mp, &rm));
    assert_memory_equal(rm.recall, r.recall, sizeof r.recall);
    int per[QMOD_N_LANGS][QMOD_N_DIRS] = {{0}};
    for (int i = 0; i < ms.n; i++) {
        const qmod_miss *m = &ms.m[i];
        assert_true(m->lang >= 0 && m->lang < QMOD_N_LANGS && m->dir >= 0 && m->dir < QMOD_N_DIRS);
        assert_true(m->query >= 0 && m->query < N_SCENES && m->top >= 0 && m->top < N_SCENES);
        assert_true(m->rank >= 1 && m->top_score > m->hit_score);
        assert_int_not_equal(groups[m->top], groups[m->query]);
        per[m->lang][m->dir]++;
        if (m->lang == QMOD_LANG_EN && m->dir == QMOD_T2I) { /* the scores are those of the scenes named */
            assert_float_equal(m->top_score, dot(te + m->query * D, ie + m->top * D, D), 1e-4);
            assert_true(m->hit_score >= dot(te + m->query * D, ie + m->query * D, D) - 1e-4f);
        }
    }
    for (int l = 0; l < QMOD_N_LANGS; l++)
        for (int dir = 0; dir < QMOD_N_DIRS; dir++)
            assert_int_equal(per[l][dir], (int)llround((1.0 - r.recall[l][dir][QMOD_R1]) * (double)r.n_queries[l][dir]));
    assert_true(per[QMOD_LANG_EN][QMOD_T2I] > 0);
    for (int i = 0; i < N_SCENES; i++) qiao_image_free(imgs[i]);
    qmod_work_free(&wt);
    qmod_work_free(&wi);
    free(te);
    free(ie);
    fixture_close(&f);
}

static void set_signature(qmod_scene *s, const char *sig) {
    free(s->signature);
    s->signature = strdup(sig);
    assert_non_null(s->signature);
}

static void duplicate_hits(void **state) {
    (void)state;
    fixture f;
    fixture_open(&f);
    qmod_retrieval base, dup, all;
    eval(&f, N_SCENES, true, &base);
    /* Scenes 1..5 take scene 0's signature: each of the six now has six hits,
     * so no recall can drop, and those queries' ranks can only improve. */
    for (int i = 1; i < 6; i++) set_signature(&f.d.scenes[i], f.d.scenes[0].signature);
    eval(&f, N_SCENES, true, &dup);
    check_shape(&dup, N_SCENES, true);
    double gain = 0;
    for (int l = 0; l < QMOD_N_LANGS; l++)
        for (int dir = 0; dir < QMOD_N_DIRS; dir++)
            for (int k = 0; k < QMOD_N_KS; k++) {
                assert_true(dup.recall[l][dir][k] >= base.recall[l][dir][k]);
                gain += dup.recall[l][dir][k] - base.recall[l][dir][k];
            }
    print_retrieval("distinct", &base);
    print_retrieval("6 share", &dup);
    assert_true(gain > 0);
    /* One signature for every scene: every candidate is a hit. */
    for (int i = 1; i < N_SCENES; i++) set_signature(&f.d.scenes[i], f.d.scenes[0].signature);
    eval(&f, N_SCENES, true, &all);
    for (int l = 0; l < QMOD_N_LANGS; l++)
        for (int dir = 0; dir < QMOD_N_DIRS; dir++) assert_true(all.recall[l][dir][QMOD_R1] == 1.0);
    fixture_close(&f);
}

static void errors(void **state) {
    (void)state;
    fixture f;
    fixture_open(&f);
    qb_exec ex;
    qb_exec_cpu(&ex, 2);
    qmod_retrieval r;
    qmod_eval_params p = qmod_eval_default_params();
    assert_int_equal(p.pool, 1000);
    assert_int_equal(p.batch, 64);
    assert_true(p.audio);
    p.pool = 0;
    assert_int_equal(qmod_eval_retrieval(&ex, f.m, &f.d, &p, &r), QIAO_ERR_INVALID_ARGUMENT);
    p = qmod_eval_default_params();
    p.batch = 0;
    assert_int_equal(qmod_eval_retrieval(&ex, f.m, &f.d, &p, &r), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qmod_eval_retrieval(&ex, f.m, NULL, NULL, &r), QIAO_ERR_INVALID_ARGUMENT);
    /* A set without pictures (spoken digits) is refused with a pointer to its own evaluation. */
    f.d.has_images = false;
    assert_int_equal(qmod_eval_retrieval(&ex, f.m, &f.d, NULL, &r), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "qiao eval digits"));
    f.d.has_images = true;
    /* A missing image fails the call, naming the file. */
    assert_int_equal(unlink(f.d.scenes[7].image), 0);
    qiao_status st = qmod_eval_retrieval(&ex, f.m, &f.d, NULL, &r);
    printf("expected error: %s\n", qiao_last_error());
    assert_int_equal(st, QIAO_ERR_IO);
    assert_non_null(strstr(qiao_last_error(), f.d.scenes[7].image));
    /* ...unless it lies outside the pool. */
    qmod_eval_params small = qmod_eval_default_params();
    small.pool = 7;
    small.audio = false;
    check(qmod_eval_retrieval(&ex, f.m, &f.d, &small, &r));
    assert_int_equal(r.pool, 7);
    /* A missing clip likewise. */
    assert_int_equal(unlink(f.d.scenes[2].speech[QMOD_LANG_ZH]), 0);
    small.audio = true;
    assert_int_equal(qmod_eval_retrieval(&ex, f.m, &f.d, &small, &r), QIAO_ERR_IO);
    assert_non_null(strstr(qiao_last_error(), f.d.scenes[2].speech[QMOD_LANG_ZH]));
    fixture_close(&f);
}

/* ---- the command ------------------------------------------------------------ */

static char *run_cli(const char *args, int *rc) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>/dev/null", QIAO_CLI, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (n + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    buf[n] = 0;
    int status = pclose(p);
    *rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return buf;
}

static void expect_recalls(const cJSON *o, const double r[QMOD_N_KS], int64_t n) {
    static const char *const keys[QMOD_N_KS] = {"r1", "r5", "r10"};
    assert_non_null(o);
    assert_int_equal(cJSON_GetArraySize(o) - (cJSON_GetObjectItemCaseSensitive(o, "zh") ? 2 : 0), 4);
    const cJSON *jn = cJSON_GetObjectItemCaseSensitive(o, "n");
    assert_true(cJSON_IsNumber(jn));
    assert_int_equal((int64_t)jn->valuedouble, n);
    for (int k = 0; k < QMOD_N_KS; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, keys[k]);
        assert_non_null(v);
        if (n == 0) {
            assert_true(cJSON_IsNull(v));
        } else {
            assert_true(cJSON_IsNumber(v));
            assert_float_equal(v->valuedouble, r[k], 1e-9);
        }
    }
}

static void check_json(const char *out, const fixture *f, const qmod_retrieval *r) {
    cJSON *root = cJSON_Parse(out);
    if (!root) fail_msg("not JSON:\n%s", out);
    assert_int_equal(cJSON_GetArraySize(root), 3 + QMOD_N_DIRS);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    assert_true(cJSON_IsString(model));
    assert_string_equal(model->valuestring, f->model_path);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    assert_true(cJSON_IsString(data));
    assert_string_equal(data->valuestring, f->split);
    const cJSON *pool = cJSON_GetObjectItemCaseSensitive(root, "pool");
    assert_true(cJSON_IsNumber(pool));
    assert_int_equal((int64_t)pool->valuedouble, r->pool);
    for (int dir = 0; dir < QMOD_N_DIRS; dir++) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, qmod_dir_name(dir));
        int64_t n = 0;
        for (int l = 0; l < QMOD_N_LANGS; l++) {
            expect_recalls(cJSON_GetObjectItemCaseSensitive(d, qmod_lang_name(l)), r->recall[l][dir],
                           r->n_queries[l][dir]);
            n += r->n_queries[l][dir];
        }
        expect_recalls(d, r->mean[dir], n);
    }
    cJSON_Delete(root);
}

static void cli_json(void **state) {
    (void)state;
    fixture f;
    fixture_open(&f);
    /* The model as the command loads it (F32: the same weights). */
    qmod_model *loaded = NULL;
    check(qmod_load(f.model_path, &loaded));
    qmod_free(f.m);
    f.m = loaded;

    qmod_retrieval r;
    eval(&f, 10, true, &r);
    char args[512];
    int rc;
    /* --data names the root; the split directory is found under it. */
    snprintf(args, sizeof args,
             "eval retrieval --model %s --data %s --split test --pool 10 --batch 5 --threads 2 --json", f.model_path,
             f.root);
    char *out = run_cli(args, &rc);
    assert_int_equal(rc, 0);
    check_json(out, &f, &r);
    free(out);

    eval(&f, N_SCENES, false, &r);
    char misses[96];
    snprintf(misses, sizeof misses, "%s/misses.jsonl", f.root);
    snprintf(args, sizeof args,
             "eval retrieval --json --no-audio --batch 5 --threads 2 --model %s --data %s --misses %s", f.model_path,
             f.split, misses);
    out = run_cli(args, &rc);
    assert_int_equal(rc, 0);
    check_json(out, &f, &r);
    free(out);
    /* --misses: one JSON line per query that missed at 1, naming both scenes */
    FILE *mf = fopen(misses, "r");
    assert_non_null(mf);
    char line[1024];
    int lines = 0, want = 0;
    while (fgets(line, sizeof line, mf)) {
        cJSON *o = cJSON_Parse(line);
        assert_non_null(o);
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(o, "query");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "top");
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(o, "rank");
        assert_true(cJSON_IsString(q) && cJSON_IsString(t) && cJSON_IsNumber(k) && k->valuedouble >= 1);
        assert_non_null(strstr(q->valuestring, "shapes-test-"));
        assert_string_not_equal(q->valuestring, t->valuestring);
        cJSON_Delete(o);
        lines++;
    }
    fclose(mf);
    for (int l = 0; l < QMOD_N_LANGS; l++)
        for (int dir = 0; dir < QMOD_N_DIRS; dir++)
            if (r.n_queries[l][dir])
                want += (int)llround((1.0 - r.recall[l][dir][QMOD_R1]) * (double)r.n_queries[l][dir]);
    assert_int_equal(lines, want);
    assert_true(lines > 0);

    /* The table names every direction and language. */
    snprintf(args, sizeof args, "eval retrieval --model %s --data %s --pool 4", f.model_path, f.split);
    out = run_cli(args, &rc);
    assert_int_equal(rc, 0);
    printf("%s", out);
    for (int dir = 0; dir < QMOD_N_DIRS; dir++) assert_non_null(strstr(out, qmod_dir_name(dir)));
    assert_non_null(strstr(out, "zh"));
    assert_non_null(strstr(out, "100.0"));
    free(out);

    /* Failures: a usage error is 2, a missing image 1. */
    snprintf(args, sizeof args, "eval retrieval --model %s --data %s --pool 0", f.model_path, f.split);
    free(run_cli(args, &rc));
    assert_int_equal(rc, 2);
    assert_int_equal(unlink(f.d.scenes[0].image), 0);
    snprintf(args, sizeof args, "eval retrieval --model %s --data %s --json", f.model_path, f.split);
    out = run_cli(args, &rc);
    assert_int_equal(rc, 1);
    assert_string_equal(out, "");
    free(out);
    fixture_close(&f);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(recall_core),    cmocka_unit_test(invariants), cmocka_unit_test(duplicate_hits),
        cmocka_unit_test(errors),         cmocka_unit_test(cli_json),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
