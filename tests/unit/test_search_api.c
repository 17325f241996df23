/* The public search index (qiao.h, "Search index"; sdk/api/search*.c),
 * through qiao.h alone: vectors added by key and ranked (order, scores, the
 * tie order, top-k, kinds), removal, files added from folders (kinds found
 * by content, incremental, the rules for what an add covers, mirror,
 * recursion), queries by text, picture and recording, save and reopen
 * (version 1 for files, version 2 with vectors), refusal of another model's
 * index and of vectors of another width or with non-finite values, cancel
 * from the progress callback, and queries on four threads while a writer
 * adds and removes; documents added under keys (qiao_index_add_texts), the
 * model's prompts put before documents and queries, and the embedding
 * space an index records and checks. The models are tiny random ones made here with the
 * committed test tokenizer (tests/model_fixture.h), as test_search's. */
#define _GNU_SOURCE /* mkdtemp, realpath */

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "model_fixture.h"
#include "qiao.h"
#include "testfs.h"
#include "testutil.h"

#define IMG(n) QIAO_TEST_DATA "/image/" n
#define AUD(n) QIAO_TEST_DATA "/audio/" n
#define D 1024

static char g_tmp[512], g_model_a[600], g_model_b[600], g_model_p[600];

/* ---- files ------------------------------------------------------------------ */

static void copy_file(const char *from, const char *dir, const char *name) {
    FILE *in = fopen(from, "rb");
    assert_non_null(in);
    char to[1024];
    snprintf(to, sizeof to, "%s/%s", dir, name);
    FILE *out = fopen(to, "wb");
    assert_non_null(out);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

static void make_dir(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", g_tmp, name);
    qt_rm_rf(out);
    assert_int_equal(mkdir(out, 0755), 0);
}

/* img0.jpg img1.jpg img2.jpg notes.txt sub/a.wav sub/b.ogg: 3 pictures, 2
 * recordings and a text file that is not media. */
static void make_media(char *dir, size_t cap, const char *name) {
    make_dir(dir, cap, name);
    copy_file(IMG("000000126107.jpg"), dir, "img0.jpg");
    copy_file(IMG("000000159269.jpg"), dir, "img1.jpg");
    copy_file(IMG("000000205401.jpg"), dir, "img2.jpg");
    char sub[1024], p[1100];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    copy_file(AUD("fsdd_3_jackson_0.wav"), sub, "a.wav");
    copy_file(AUD("esc10_1-110389-A.ogg"), sub, "b.ogg");
    snprintf(p, sizeof p, "%s/notes.txt", dir);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    fputs("not a picture, not a sound\n", fp);
    fclose(fp);
}

/* The real path of dir/name, as the index keys files. */
static void real_in(char *out, size_t cap, const char *dir, const char *name) {
    char p[1100];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    char *r = realpath(p, NULL);
    assert_non_null(r);
    snprintf(out, cap, "%s", r);
    free(r);
}

/* ---- helpers ------------------------------------------------------------------ */

static qiao_index *create(const char *model, const char *path) {
    qiao_index_params ip = qiao_index_default_params();
    ip.n_threads = 1;
    qiao_index *ix = NULL;
    qiao_status st = qiao_index_create(model, path, &ip, &ix);
    if (st != QIAO_OK) fail_msg("create: %s", qiao_last_error());
    return ix;
}

static int64_t g_progress_calls, g_progress_done, g_progress_total;

static qiao_index_add_stats add_ok(qiao_index *ix, const char *const *paths, size_t n,
                                   const qiao_index_add_params *ap, const char *what) {
    qiao_index_add_stats s;
    g_progress_done = 0; /* progress only grows within a call */
    qiao_status st = qiao_index_add_files(ix, paths, n, ap, &s);
    if (st != QIAO_OK) fail_msg("%s: %s", what, qiao_last_error());
    printf("%s: found %lld embedded %lld kept %lld removed %lld failed %lld known %lld pending %lld\n", what,
           (long long)s.found, (long long)s.embedded, (long long)s.kept, (long long)s.removed, (long long)s.failed,
           (long long)s.skipped_known, (long long)s.pending);
    return s;
}

static qiao_index_hit *query_vec(qiao_index *ix, const float *v, size_t top_k, int kind, size_t *n) {
    qiao_index_query_params qp = qiao_index_query_default_params();
    qp.top_k = top_k;
    qp.kind = kind;
    qiao_index_hit *h = NULL;
    qiao_status st = qiao_index_query_vector(ix, v, D, &qp, &h, n);
    if (st != QIAO_OK) fail_msg("query: %s", qiao_last_error());
    return h;
}

/* Hits are sorted by descending score, equal scores by key. */
static void assert_ranked(const qiao_index_hit *h, size_t n) {
    for (size_t k = 1; k < n; k++) {
        assert_true(h[k - 1].score >= h[k].score);
        if (h[k - 1].score == h[k].score) assert_true(strcmp(h[k - 1].key, h[k].key) < 0);
    }
}

static bool has_key(const qiao_index_hit *h, size_t n, const char *key) {
    for (size_t k = 0; k < n; k++)
        if (!strcmp(h[k].key, key)) return true;
    return false;
}

/* A unit vector along axis a, tilted towards axis b by angle t: its cosine
 * with axis a is cos(t), whatever else is in the index. */
static void tilted(float *v, int a, int b, double t) {
    memset(v, 0, D * sizeof *v);
    v[a] = (float)cos(t);
    v[b] = (float)sin(t);
}

static double cosine_d(const float *x, const float *y) {
    double xy = 0, xx = 0, yy = 0;
    for (int i = 0; i < D; i++) {
        xy += (double)x[i] * y[i];
        xx += (double)x[i] * x[i];
        yy += (double)y[i] * y[i];
    }
    return xy / sqrt(xx * yy);
}

/* The index file's "qiao.index" metadata, read with the public model-file
 * reader (an index is a .safetensors file). */
static cJSON *index_meta(const char *path) {
    qiao_model_file *f = NULL;
    assert_int_equal(qiao_model_file_open(path, &f), QIAO_OK);
    const char *meta = qiao_model_file_metadata(f, "qiao.index");
    assert_non_null(meta);
    cJSON *j = cJSON_Parse(meta);
    assert_non_null(j);
    qiao_model_file_close(f);
    return j;
}

static int64_t meta_version(const char *path) {
    cJSON *j = index_meta(path);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "version");
    assert_true(cJSON_IsNumber(v));
    int64_t version = (int64_t)v->valuedouble;
    cJSON_Delete(j);
    return version;
}

/* ---- cases -------------------------------------------------------------------- */

/* Vectors added by key: ranked by cosine, best first, equal scores in key
 * order; top-k and the kind filter; a key added again replaces its vector;
 * removal; vectors of another width or with NaN or infinity refused. */
static void vectors(void **state) {
    (void)state;
    qiao_index *ix = create(g_model_a, NULL);
    assert_int_equal(qiao_index_dim(ix), D);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_ANY), 0);
    /* Angles from axis 0: "c" 0.1, "a" 0.3, "d" and "b" 0.5 (a tie), "e" 1.2; "t" text at 0.2. */
    static const struct {
        const char *key;
        double angle;
        qiao_index_kind kind;
    } items[] = {{"d", 0.5, QIAO_INDEX_IMAGE}, {"a", 0.3, QIAO_INDEX_IMAGE}, {"e", 1.2, QIAO_INDEX_AUDIO},
                 {"c", 0.1, QIAO_INDEX_AUDIO}, {"b", 0.5, QIAO_INDEX_IMAGE}, {"t", 0.2, QIAO_INDEX_TEXT}};
    float v[D], q[D];
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
        tilted(v, 0, 1 + (int)i, items[i].angle);
        for (int k = 0; k < D; k++) v[k] *= 3.0f; /* stored as given; the cosine ignores the length */
        assert_int_equal(qiao_index_add_embedding(ix, items[i].key, items[i].kind, v, D), QIAO_OK);
    }
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_ANY), 6);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_IMAGE), 3);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_AUDIO), 2);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_TEXT), 1);
    assert_true(qiao_index_modified(ix));

    tilted(q, 0, 900, 0.0);
    size_t n = 0;
    qiao_index_hit *h = query_vec(ix, q, 0, QIAO_INDEX_ANY, &n);
    static const char *const want[] = {"c", "t", "a", "b", "d", "e"};
    assert_int_equal(n, 6);
    for (size_t k = 0; k < n; k++) {
        printf("  %zu %s %.6f\n", k, h[k].key, (double)h[k].score);
        assert_string_equal(h[k].key, want[k]);
    }
    assert_ranked(h, n);
    assert_float_equal(h[0].score, cos(0.1), 1e-6);
    assert_float_equal(h[5].score, cos(1.2), 1e-6);
    assert_int_equal(h[0].kind, QIAO_INDEX_AUDIO);
    assert_int_equal(h[1].kind, QIAO_INDEX_TEXT);
    assert_true(h[3].score == h[4].score); /* "b" before "d": the tie goes by key, not by insertion */
    qiao_index_hits_free(h);

    /* Top 2 of the pictures. */
    h = query_vec(ix, q, 2, QIAO_INDEX_IMAGE, &n);
    assert_int_equal(n, 2);
    assert_string_equal(h[0].key, "a");
    assert_string_equal(h[1].key, "b");
    qiao_index_hits_free(h);

    /* "e" again, now closest of all: replaced, not added. */
    tilted(v, 0, 7, 0.01);
    assert_int_equal(qiao_index_add_embedding(ix, "e", QIAO_INDEX_IMAGE, v, D), QIAO_OK);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_ANY), 6);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_AUDIO), 1);
    h = query_vec(ix, q, 1, QIAO_INDEX_ANY, &n);
    assert_int_equal(n, 1);
    assert_string_equal(h[0].key, "e");
    assert_int_equal(h[0].kind, QIAO_INDEX_IMAGE);
    qiao_index_hits_free(h);

    /* Removal. */
    assert_int_equal(qiao_index_remove(ix, "e"), QIAO_OK);
    assert_int_equal(qiao_index_remove(ix, "e"), QIAO_ERR_NOT_FOUND);
    assert_non_null(strstr(qiao_last_error(), "no item has the key e"));
    assert_int_equal(qiao_index_remove(ix, "a"), QIAO_OK);
    h = query_vec(ix, q, 0, QIAO_INDEX_ANY, &n);
    assert_int_equal(n, 4);
    static const char *const want2[] = {"c", "t", "b", "d"};
    for (size_t k = 0; k < n; k++) assert_string_equal(h[k].key, want2[k]);
    qiao_index_hits_free(h);

    /* Refused: another width, NaN, infinity, a bad key or kind; the index unchanged. */
    float wide[D + 1];
    memset(wide, 0, sizeof wide);
    wide[0] = 1;
    assert_int_equal(qiao_index_add_embedding(ix, "w", QIAO_INDEX_IMAGE, wide, D + 1), QIAO_ERR_INVALID_ARGUMENT);
    printf("  %s\n", qiao_last_error());
    assert_non_null(strstr(qiao_last_error(), "1025 dimensions"));
    assert_int_equal(qiao_index_add_embedding(ix, "w", QIAO_INDEX_IMAGE, wide, 512), QIAO_ERR_INVALID_ARGUMENT);
    tilted(v, 0, 1, 0.2);
    v[77] = NAN;
    assert_int_equal(qiao_index_add_embedding(ix, "w", QIAO_INDEX_IMAGE, v, D), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "non-finite"));
    assert_non_null(strstr(qiao_last_error(), "at 77"));
    v[77] = -INFINITY;
    assert_int_equal(qiao_index_add_embedding(ix, "w", QIAO_INDEX_IMAGE, v, D), QIAO_ERR_INVALID_ARGUMENT);
    v[77] = 0;
    assert_int_equal(qiao_index_add_embedding(ix, "", QIAO_INDEX_IMAGE, v, D), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_index_add_embedding(ix, "bad\xff", QIAO_INDEX_IMAGE, v, D), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_index_add_embedding(ix, "k", (qiao_index_kind)7, v, D), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_index_add_embedding(ix, NULL, QIAO_INDEX_IMAGE, v, D), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_ANY), 4);

    /* Queries refused the same way. */
    qiao_index_query_params qp = qiao_index_query_default_params();
    h = (qiao_index_hit *)1;
    n = 99;
    assert_int_equal(qiao_index_query_vector(ix, wide, D + 1, &qp, &h, &n), QIAO_ERR_INVALID_ARGUMENT);
    assert_null(h);
    assert_int_equal(n, 0);
    q[3] = NAN;
    assert_int_equal(qiao_index_query_vector(ix, q, D, &qp, &h, &n), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "non-finite"));
    q[3] = 0;
    qp.kind = 5;
    assert_int_equal(qiao_index_query_vector(ix, q, D, &qp, &h, &n), QIAO_ERR_INVALID_ARGUMENT);
    qp = qiao_index_query_default_params();
    qp.struct_size = 3;
    assert_int_equal(qiao_index_query_vector(ix, q, D, &qp, &h, &n), QIAO_ERR_INVALID_ARGUMENT);
    /* A memory-only index needs a path to save. */
    assert_int_equal(qiao_index_save(ix, NULL), QIAO_ERR_INVALID_ARGUMENT);
    qiao_index_free(ix);
}

/* Many keys added, removed, added again and replaced in a scattered order
 * (the rows move as items are removed): each key still names its own
 * vector, before and after a save, and every one can be removed once. */
static void many_keys(void **state) {
    (void)state;
    enum { N = 600 };
    char path[700];
    snprintf(path, sizeof path, "%s/many.idx", g_tmp);
    qiao_index *ix = create(g_model_a, path);
    float v[D];
    char key[32];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "k%d", i);
        tilted(v, i % D, (i + 1) % D, 0.3);
        assert_int_equal(qiao_index_add_embedding(ix, key, QIAO_INDEX_TEXT, v, D), QIAO_OK);
    }
    for (int i = 0; i < N; i += 3) {
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(qiao_index_remove(ix, key), QIAO_OK);
    }
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_ANY), N - N / 3);
    for (int i = 0; i < N; i += 3) {
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(qiao_index_remove(ix, key), QIAO_ERR_NOT_FOUND);
    }
    for (int i = 0; i < N; i += 6) { /* back, as pictures along the next axis */
        snprintf(key, sizeof key, "k%d", i);
        tilted(v, (i + 1) % D, (i + 2) % D, 0.2);
        assert_int_equal(qiao_index_add_embedding(ix, key, QIAO_INDEX_IMAGE, v, D), QIAO_OK);
    }
    for (int i = 1; i < N; i += 2) { /* replaced: the count stays */
        if (i % 3 == 0) continue;    /* removed above */
        snprintf(key, sizeof key, "k%d", i);
        tilted(v, i % D, (i + 2) % D, 0.1);
        assert_int_equal(qiao_index_add_embedding(ix, key, QIAO_INDEX_AUDIO, v, D), QIAO_OK);
    }
    size_t want = N - N / 3 + N / 6;
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_ANY), want);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_IMAGE), N / 6);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_AUDIO), N / 2 - N / 6);
    /* Each kind of key finds its own vector first among its kind. */
    static const int probe[] = {0, 6, 1, 7, 301, 598};
    for (size_t k = 0; k < sizeof probe / sizeof probe[0]; k++) {
        int i = probe[k];
        int kind = i % 6 == 0 ? QIAO_INDEX_IMAGE : QIAO_INDEX_AUDIO;
        if (i % 6 == 0) tilted(v, (i + 1) % D, (i + 2) % D, 0.2);
        else if (i % 2) tilted(v, i % D, (i + 2) % D, 0.1);
        else {
            kind = QIAO_INDEX_TEXT;
            tilted(v, i % D, (i + 1) % D, 0.3);
        }
        size_t n = 0;
        qiao_index_hit *h = query_vec(ix, v, 1, kind, &n);
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(n, 1);
        assert_string_equal(h[0].key, key);
        assert_float_equal(h[0].score, 1.0, 1e-6);
        qiao_index_hits_free(h);
    }
    assert_int_equal(qiao_index_save(ix, NULL), QIAO_OK);
    qiao_index_free(ix);
    assert_int_equal(qiao_index_open(path, NULL, NULL, &ix), QIAO_OK);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_ANY), want);
    for (int i = N - 1; i >= 0; i--) {
        snprintf(key, sizeof key, "k%d", i);
        bool there = i % 3 != 0 || i % 6 == 0;
        assert_int_equal(qiao_index_remove(ix, key), there ? QIAO_OK : QIAO_ERR_NOT_FOUND);
    }
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_ANY), 0);
    qiao_index_free(ix);
    unlink(path);
}

static int64_t g_notices_info, g_notices_warn;
static char g_notice_last[1024];
static void count_notice(qiao_log_level level, const char *path, const char *message, void *ud) {
    (void)ud;
    assert_non_null(strstr(message, path)); /* the sentence names its path */
    if (level == QIAO_LOG_INFO) g_notices_info++;
    else g_notices_warn++;
    snprintf(g_notice_last, sizeof g_notice_last, "%s", message);
}

static void record_progress(const qiao_index_progress *p, void *ud) {
    (void)ud;
    assert_true(p->done >= g_progress_done && p->done <= p->total);
    assert_true(p->embedded <= p->done);
    g_progress_calls++;
    g_progress_done = p->done;
    g_progress_total = p->total;
}

/* Files: kinds found by content, each file found by its own content, text
 * against the recordings only; a second add keeps everything; an add covers
 * only its paths unless mirroring; recursion can be turned off. */
static void files(void **state) {
    (void)state;
    char dir[600], other[600], want[1100];
    make_media(dir, sizeof dir, "files");
    make_dir(other, sizeof other, "other");
    copy_file(IMG("000000205401.jpg"), other, "x.jpg");
    qiao_index *ix = create(g_model_a, NULL);
    qiao_index_add_params ap = qiao_index_add_default_params();
    ap.batch = 2;
    ap.notice = count_notice;
    ap.progress = record_progress;
    g_notices_info = g_notices_warn = g_progress_calls = g_progress_done = 0;
    const char *roots[] = {dir};
    qiao_index_add_stats s = add_ok(ix, roots, 1, &ap, "first");
    assert_int_equal(s.found, 6);
    assert_int_equal(s.embedded, 5);
    assert_int_equal(s.failed, 1);
    assert_int_equal(s.pending, 0);
    assert_int_equal(g_notices_info, 1); /* notes.txt: not media, said quietly */
    assert_int_equal(g_notices_warn, 0);
    assert_non_null(strstr(g_notice_last, "notes.txt: not an image or audio file"));
    assert_int_equal(g_progress_total, 6);
    assert_int_equal(g_progress_done, 6);
    assert_int_equal(g_progress_calls, 3); /* batches of 2 */
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_IMAGE), 3);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_AUDIO), 2);

    /* A picture and a recording find themselves first. */
    qiao_index_query_params qp = qiao_index_query_default_params();
    qiao_index_hit *h = NULL;
    size_t n = 0;
    assert_int_equal(qiao_index_query_image(ix, IMG("000000159269.jpg"), &qp, &h, &n), QIAO_OK);
    assert_int_equal(n, 5);
    real_in(want, sizeof want, dir, "img1.jpg");
    assert_string_equal(h[0].key, want);
    assert_int_equal(h[0].kind, QIAO_INDEX_IMAGE);
    assert_true(h[0].score > 0.9999f);
    assert_ranked(h, n);
    qiao_index_hits_free(h);
    assert_int_equal(qiao_index_query_audio(ix, AUD("esc10_1-110389-A.ogg"), &qp, &h, &n), QIAO_OK);
    real_in(want, sizeof want, dir, "sub/b.ogg");
    assert_string_equal(h[0].key, want);
    assert_true(h[0].score > 0.9999f);
    qiao_index_hits_free(h);
    /* A text against the recordings: both, nothing else, and the scores
     * are the cosines with the text's own embedding. */
    qp.kind = QIAO_INDEX_AUDIO;
    assert_int_equal(qiao_index_query_text(ix, "a dog barking", &qp, &h, &n), QIAO_OK);
    assert_int_equal(n, 2);
    assert_ranked(h, n);
    float t[D], a[D];
    qiao_session *ss = NULL;
    assert_int_equal(qiao_session_new(qiao_index_model(ix), NULL, &ss), QIAO_OK);
    assert_int_equal(qiao_embed_text(ss, "a dog barking", t, D), QIAO_OK);
    for (size_t k = 0; k < n; k++) {
        assert_int_equal(h[k].kind, QIAO_INDEX_AUDIO);
        assert_int_equal(qiao_embed_audio_file(ss, h[k].key, a, D), QIAO_OK);
        assert_float_equal(h[k].score, cosine_d(t, a), 1e-5);
    }
    qiao_session_free(ss);
    qiao_index_hits_free(h);
    /* Errors of the query's input are the embedding's. */
    assert_int_equal(qiao_index_query_image(ix, AUD("fsdd_3_jackson_0.wav"), &qp, &h, &n), QIAO_ERR_FORMAT);
    assert_null(h);

    /* Again: nothing embedded, the text file not decoded again. */
    s = add_ok(ix, roots, 1, &ap, "again");
    assert_int_equal(s.embedded, 0);
    assert_int_equal(s.kept, 5);
    assert_int_equal(s.skipped_known, 1);
    assert_int_equal(s.failed, 0);

    /* Another folder, and a vector: an add of the first folder leaves them
     * alone, and a file gone from it is removed. */
    const char *roots2[] = {other};
    s = add_ok(ix, roots2, 1, &ap, "other");
    assert_int_equal(s.embedded, 1);
    assert_int_equal(s.kept, 0);
    float v[D];
    tilted(v, 3, 4, 0.5);
    assert_int_equal(qiao_index_add_embedding(ix, "vector", QIAO_INDEX_TEXT, v, D), QIAO_OK);
    char gone[1100];
    snprintf(gone, sizeof gone, "%s/img2.jpg", dir);
    assert_int_equal(unlink(gone), 0);
    s = add_ok(ix, roots, 1, &ap, "first, one gone");
    assert_int_equal(s.removed, 1);
    assert_int_equal(s.kept, 4);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_IMAGE), 3); /* img0, img1, other/x */
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_TEXT), 1);

    char x[1100];
    real_in(x, sizeof x, other, "x.jpg");
    h = query_vec(ix, v, 0, QIAO_INDEX_ANY, &n);
    assert_int_equal(n, 6);
    assert_true(has_key(h, n, x));
    qiao_index_hits_free(h);
    /* A hidden file given by itself is indexed, and an add of its folder,
     * which does not look at hidden names, leaves it there. */
    char hidden[1100];
    copy_file(IMG("000000126107.jpg"), dir, ".hidden.jpg");
    snprintf(hidden, sizeof hidden, "%s/.hidden.jpg", dir);
    const char *roots3[] = {hidden};
    s = add_ok(ix, roots3, 1, &ap, "hidden");
    assert_int_equal(s.embedded, 1);
    s = add_ok(ix, roots, 1, &ap, "folder of the hidden");
    assert_int_equal(s.removed, 0);
    assert_int_equal(s.embedded, 0);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_IMAGE), 4);
    real_in(hidden, sizeof hidden, dir, ".hidden.jpg");
    assert_int_equal(qiao_index_remove(ix, hidden), QIAO_OK);
    /* Mirroring the first folder drops the other folder's file, not the vector. */
    ap.mirror = 1;
    s = add_ok(ix, roots, 1, &ap, "mirror");
    assert_int_equal(s.removed, 1);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_IMAGE), 2);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_TEXT), 1);
    h = query_vec(ix, v, 0, QIAO_INDEX_ANY, &n);
    assert_int_equal(n, 5);
    assert_string_equal(h[0].key, "vector");
    assert_false(has_key(h, n, x));
    qiao_index_hits_free(h);
    qiao_index_free(ix);

    /* Without recursion, sub/ is not entered. */
    ix = create(g_model_a, NULL);
    ap = qiao_index_add_default_params();
    ap.recurse = 0;
    s = add_ok(ix, roots, 1, &ap, "no recursion");
    assert_int_equal(s.found, 3); /* img0, img1, notes.txt */
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_AUDIO), 0);
    /* A path that does not exist: refused, the index as it was. */
    char missing[700];
    snprintf(missing, sizeof missing, "%s/no-such-folder", g_tmp);
    const char *bad[] = {dir, missing};
    qiao_index_add_stats s2;
    assert_int_equal(qiao_index_add_files(ix, bad, 2, NULL, &s2), QIAO_ERR_IO);
    assert_non_null(strstr(qiao_last_error(), "no-such-folder"));
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_ANY), 2);
    ap.batch = 0;
    assert_int_equal(qiao_index_add_files(ix, roots, 1, &ap, NULL), QIAO_ERR_INVALID_ARGUMENT);
    qiao_index_free(ix);
    qt_rm_rf(dir);
    qt_rm_rf(other);
}

/* Saved and opened again: the same items and the same answers, bit for
 * bit; an index of files is written as version 1 (what qiao 0.1's search
 * reads), one with vectors as version 2. Another model's index is refused
 * by open and by load, naming both models. */
static void save_and_open(void **state) {
    (void)state;
    char dir[600], path[700], path2[700];
    make_media(dir, sizeof dir, "save");
    snprintf(path, sizeof path, "%s/save.idx", g_tmp);
    snprintf(path2, sizeof path2, "%s/save2.idx", g_tmp);
    unlink(path);
    qiao_index *ix = create(g_model_a, path);
    const char *roots[] = {dir};
    add_ok(ix, roots, 1, NULL, "save");
    assert_true(qiao_index_modified(ix));
    assert_int_equal(qiao_index_save(ix, NULL), QIAO_OK);
    assert_false(qiao_index_modified(ix));
    assert_int_equal(meta_version(path), 1);

    qiao_index *re = NULL;
    assert_int_equal(qiao_index_open(path, NULL, NULL, &re), QIAO_OK); /* the model the file names */
    assert_false(qiao_index_modified(re));
    char *model_abs = realpath(g_model_a, NULL);
    assert_string_equal(qiao_index_model_path(re), model_abs);
    free(model_abs);
    assert_int_equal(qiao_index_count(re, QIAO_INDEX_ANY), 5);
    qiao_index_query_params qp = qiao_index_query_default_params();
    qp.top_k = 0;
    qiao_index_hit *h1 = NULL, *h2 = NULL;
    size_t n1 = 0, n2 = 0;
    assert_int_equal(qiao_index_query_text(ix, "a red circle", &qp, &h1, &n1), QIAO_OK);
    assert_int_equal(qiao_index_query_text(re, "a red circle", &qp, &h2, &n2), QIAO_OK);
    assert_int_equal(n1, 5);
    assert_int_equal(n2, 5);
    for (size_t k = 0; k < n1; k++) {
        assert_string_equal(h1[k].key, h2[k].key);
        assert_int_equal(h1[k].kind, h2[k].kind);
        assert_true(h1[k].score == h2[k].score);
    }
    qiao_index_hits_free(h1);
    qiao_index_hits_free(h2);

    /* With vectors (one of them text) and one file removed: version 2, read back whole. */
    float v[D];
    tilted(v, 10, 11, 0.25);
    assert_int_equal(qiao_index_add_embedding(re, "faq/42", QIAO_INDEX_TEXT, v, D), QIAO_OK);
    char img0[1100];
    real_in(img0, sizeof img0, dir, "img0.jpg");
    assert_int_equal(qiao_index_remove(re, img0), QIAO_OK);
    assert_true(qiao_index_modified(re));
    assert_int_equal(qiao_index_save(re, path2), QIAO_OK); /* elsewhere: still differs from its own file */
    assert_true(qiao_index_modified(re));
    assert_int_equal(meta_version(path2), 2);
    qiao_index *v2 = NULL;
    assert_int_equal(qiao_index_open(path2, g_model_a, NULL, &v2), QIAO_OK);
    assert_int_equal(qiao_index_count(v2, QIAO_INDEX_ANY), 5);
    assert_int_equal(qiao_index_count(v2, QIAO_INDEX_TEXT), 1);
    size_t n = 0;
    qiao_index_hit *h = query_vec(v2, v, 1, QIAO_INDEX_ANY, &n);
    assert_string_equal(h[0].key, "faq/42");
    assert_int_equal(h[0].kind, QIAO_INDEX_TEXT);
    assert_float_equal(h[0].score, 1.0, 1e-6);
    qiao_index_hits_free(h);
    /* The item removed stays removed; a file add of the folder brings it back. */
    qiao_index_add_stats s = add_ok(v2, roots, 1, NULL, "reopened");
    assert_int_equal(s.embedded, 1);
    assert_int_equal(s.kept, 4);
    assert_int_equal(qiao_index_count(v2, QIAO_INDEX_ANY), 6);
    qiao_index_free(v2);

    /* Another model: refused by open (naming both) and by load (the index as it was). */
    qiao_index *other = NULL;
    assert_int_equal(qiao_index_open(path, g_model_b, NULL, &other), QIAO_ERR_INVALID_ARGUMENT);
    printf("  %s\n", qiao_last_error());
    assert_null(other);
    assert_non_null(strstr(qiao_last_error(), "built with another model"));
    assert_non_null(strstr(qiao_last_error(), "model_b.safetensors"));
    assert_non_null(strstr(qiao_last_error(), "save.idx"));
    other = create(g_model_b, NULL);
    tilted(v, 1, 2, 0.1);
    assert_int_equal(qiao_index_add_embedding(other, "mine", QIAO_INDEX_IMAGE, v, D), QIAO_OK);
    assert_int_equal(qiao_index_load(other, path), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_index_count(other, QIAO_INDEX_ANY), 1);
    /* ...and the same model's file loads into an index of that model. */
    assert_int_equal(qiao_index_load(re, path), QIAO_OK);
    assert_int_equal(qiao_index_count(re, QIAO_INDEX_ANY), 5);
    assert_int_equal(qiao_index_count(re, QIAO_INDEX_TEXT), 0);
    qiao_index_free(other);
    qiao_index_free(re);
    qiao_index_free(ix);

    /* Files that are not indexes. */
    assert_int_equal(qiao_index_open(g_model_a, g_model_a, NULL, &other), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "not a qiao search index"));
    char missing[700];
    snprintf(missing, sizeof missing, "%s/missing.idx", g_tmp);
    assert_int_equal(qiao_index_open(missing, g_model_a, NULL, &other), QIAO_ERR_IO);
    assert_int_equal(qiao_index_create(NULL, NULL, NULL, &other), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_index_create(missing, NULL, NULL, &other), QIAO_ERR_IO);
    qiao_index_params ip = qiao_index_default_params();
    ip.n_threads = -1;
    assert_int_equal(qiao_index_create(g_model_a, NULL, &ip, &other), QIAO_ERR_INVALID_ARGUMENT);
    qiao_index_free(NULL);
    qiao_index_hits_free(NULL);
    unlink(path);
    unlink(path2);
    qt_rm_rf(dir);
}

/* A cancel asked by the progress callback after the first batch: the call
 * returns QIAO_ERR_CANCELLED with that batch in the index, every vector
 * whole (each picture finds itself), the rest pending; the next call
 * embeds just those. A cancel while listing leaves the index as it was. */
static int64_t g_batches;
static int g_cancel;
static void count_batches(const qiao_index_progress *p, void *ud) {
    (void)p, (void)ud;
    if (++g_batches >= 1) g_cancel = 1;
}
static int cancel_flag(void *ud) {
    (void)ud;
    return g_cancel;
}

static void cancel(void **state) {
    (void)state;
    enum { N = 12 };
    char dir[600];
    make_dir(dir, sizeof dir, "cancel");
    static const char *src[] = {IMG("000000126107.jpg"), IMG("000000159269.jpg"), IMG("000000205401.jpg")};
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "f%02d.jpg", i);
        copy_file(src[i % 3], dir, name);
    }
    qiao_index *ix = create(g_model_a, NULL);
    float keep[D];
    tilted(keep, 5, 6, 0.3);
    assert_int_equal(qiao_index_add_embedding(ix, "kept", QIAO_INDEX_TEXT, keep, D), QIAO_OK);

    /* Cancelled while listing: nothing changes. */
    qiao_index_add_params ap = qiao_index_add_default_params();
    ap.batch = 3;
    ap.cancel = cancel_flag;
    ap.progress = count_batches;
    g_cancel = 1;
    const char *roots[] = {dir};
    qiao_index_add_stats s;
    assert_int_equal(qiao_index_add_files(ix, roots, 1, &ap, &s), QIAO_ERR_CANCELLED);
    assert_int_equal(s.found, 0);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_ANY), 1);

    /* Cancelled after the first batch. */
    g_cancel = 0;
    g_batches = 0;
    assert_int_equal(qiao_index_add_files(ix, roots, 1, &ap, &s), QIAO_ERR_CANCELLED);
    printf("cancelled: %s; embedded %lld pending %lld\n", qiao_last_error(), (long long)s.embedded,
           (long long)s.pending);
    assert_int_equal(g_batches, 1);
    assert_int_equal(s.found, N);
    assert_int_equal(s.embedded, 3);
    assert_int_equal(s.pending, N - 3);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_IMAGE), 3);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_TEXT), 1);
    qiao_index_query_params qp = qiao_index_query_default_params();
    qp.kind = QIAO_INDEX_IMAGE;
    for (int i = 0; i < 3; i++) {
        char name[32], key[1100];
        snprintf(name, sizeof name, "f%02d.jpg", i);
        real_in(key, sizeof key, dir, name);
        qiao_index_hit *h = NULL;
        size_t n = 0;
        assert_int_equal(qiao_index_query_image(ix, key, &qp, &h, &n), QIAO_OK);
        assert_int_equal(n, 3);
        assert_string_equal(h[0].key, key); /* f00, f01, f02 are three different pictures */
        assert_true(h[0].score > 0.9999f);
        qiao_index_hits_free(h);
    }
    size_t n = 0;
    qiao_index_hit *h = query_vec(ix, keep, 1, QIAO_INDEX_ANY, &n);
    assert_string_equal(h[0].key, "kept");
    qiao_index_hits_free(h);

    /* The rest, without a cancel. */
    ap.cancel = NULL;
    s = add_ok(ix, roots, 1, &ap, "resumed");
    assert_int_equal(s.kept, 3);
    assert_int_equal(s.embedded, N - 3);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_IMAGE), N);
    qiao_index_free(ix);
    qt_rm_rf(dir);
}

/* Four threads query (by text and by vector, pictures only) while a fifth
 * adds recordings, vectors of text and documents and removes them again:
 * every answer equals the one computed alone, and the writer's items never
 * show up. */
typedef struct reader {
    qiao_index *ix;
    const qiao_index_hit *ref_text, *ref_vec;
    size_t n_text, n_vec;
    const float *q;
    int rounds, bad;
} reader;

static bool same_hits(const qiao_index_hit *a, size_t na, const qiao_index_hit *b, size_t nb) {
    if (na != nb) return false;
    for (size_t k = 0; k < na; k++)
        if (strcmp(a[k].key, b[k].key) || a[k].kind != b[k].kind || a[k].score != b[k].score) return false;
    return true;
}

static void *read_loop(void *arg) {
    reader *r = arg;
    qiao_index_query_params qp = qiao_index_query_default_params();
    qp.kind = QIAO_INDEX_IMAGE;
    for (int i = 0; i < r->rounds; i++) {
        qiao_index_hit *h = NULL;
        size_t n = 0;
        if (qiao_index_query_text(r->ix, "a small red star", &qp, &h, &n) != QIAO_OK ||
            !same_hits(h, n, r->ref_text, r->n_text))
            r->bad++;
        qiao_index_hits_free(h);
        if (qiao_index_query_vector(r->ix, r->q, D, &qp, &h, &n) != QIAO_OK || !same_hits(h, n, r->ref_vec, r->n_vec))
            r->bad++;
        qiao_index_hits_free(h);
    }
    return NULL;
}

typedef struct writer {
    qiao_index *ix;
    const char *audio_dir;
    int rounds, bad;
} writer;

static void *write_loop(void *arg) {
    writer *w = arg;
    float v[D];
    const char *roots[] = {w->audio_dir};
    for (int i = 0; i < w->rounds; i++) {
        char key[32];
        for (int k = 0; k < 40; k++) { /* enough to make the arrays grow */
            snprintf(key, sizeof key, "w%d-%d", i, k);
            tilted(v, k, k + 1, 0.1);
            if (qiao_index_add_embedding(w->ix, key, QIAO_INDEX_TEXT, v, D) != QIAO_OK) w->bad++;
        }
        if (i == 0 && qiao_index_add_files(w->ix, roots, 1, NULL, NULL) != QIAO_OK) w->bad++;
        if (i == 1) { /* documents, embedded beside the queries, then gone again */
            const char *keys[] = {"wtext/0", "wtext/1"}, *docs[] = {"a small red star", "a large blue star"};
            if (qiao_index_add_texts(w->ix, keys, docs, 2, NULL, NULL) != QIAO_OK) w->bad++;
            for (int k = 0; k < 2; k++)
                if (qiao_index_remove(w->ix, keys[k]) != QIAO_OK) w->bad++;
        }
        for (int k = 0; k < 40; k += 2) {
            snprintf(key, sizeof key, "w%d-%d", i, k);
            if (qiao_index_remove(w->ix, key) != QIAO_OK) w->bad++;
        }
    }
    return NULL;
}

static void threads(void **state) {
    (void)state;
    char dir[600], audio[600];
    make_dir(dir, sizeof dir, "threads");
    copy_file(IMG("000000126107.jpg"), dir, "a.jpg");
    copy_file(IMG("000000159269.jpg"), dir, "b.jpg");
    copy_file(IMG("000000205401.jpg"), dir, "c.jpg");
    make_dir(audio, sizeof audio, "threads-audio");
    copy_file(AUD("fsdd_3_jackson_0.wav"), audio, "a.wav");
    copy_file(AUD("esc10_1-110389-A.ogg"), audio, "b.ogg");
    qiao_index *ix = create(g_model_a, NULL);
    const char *roots[] = {dir};
    add_ok(ix, roots, 1, NULL, "pictures");
    float q[D];
    tilted(q, 2, 3, 0.7);
    qiao_index_query_params qp = qiao_index_query_default_params();
    qp.kind = QIAO_INDEX_IMAGE;
    qiao_index_hit *ref_text = NULL, *ref_vec = NULL;
    size_t n_text = 0, n_vec = 0;
    assert_int_equal(qiao_index_query_text(ix, "a small red star", &qp, &ref_text, &n_text), QIAO_OK);
    assert_int_equal(qiao_index_query_vector(ix, q, D, &qp, &ref_vec, &n_vec), QIAO_OK);
    assert_int_equal(n_text, 3);

    enum { R = 4 };
    reader rs[R];
    pthread_t th[R + 1];
    writer w = {.ix = ix, .audio_dir = audio, .rounds = 10};
    for (int i = 0; i < R; i++) {
        rs[i] = (reader){.ix = ix, .ref_text = ref_text, .ref_vec = ref_vec, .n_text = n_text, .n_vec = n_vec,
                         .q = q, .rounds = 30};
        assert_int_equal(pthread_create(&th[i], NULL, read_loop, &rs[i]), 0);
    }
    assert_int_equal(pthread_create(&th[R], NULL, write_loop, &w), 0);
    for (int i = 0; i <= R; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < R; i++) assert_int_equal(rs[i].bad, 0);
    assert_int_equal(w.bad, 0);
    /* The writer's work is all there: 10 rounds of 20 vectors kept, 2 recordings. */
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_TEXT), 10 * 20);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_AUDIO), 2);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_IMAGE), 3);
    qiao_index_hits_free(ref_text);
    qiao_index_hits_free(ref_vec);
    qiao_index_free(ix);
    qt_rm_rf(dir);
    qt_rm_rf(audio);
}

/* ---- documents ------------------------------------------------------------------ */

static const char *const k_docs[] = {"a red circle in the top left corner", "two blue squares side by side",
                                     "一只黄色的三角形在右下角", "the sound of rain on a window",
                                     "a green star next to a red circle"};
static const char *const k_doc_keys[] = {"doc/0", "doc/1", "doc/2", "doc/3", "doc/4"};
#define N_DOCS 5

static int64_t g_text_calls, g_text_last_done, g_text_total;
static void count_texts(const qiao_index_progress *p, void *ud) {
    (void)ud;
    assert_true(p->done > g_text_last_done); /* only grows */
    assert_int_equal(p->embedded, p->done);
    g_text_calls++;
    g_text_last_done = p->done;
    g_text_total = p->total;
}

static qiao_index_add_stats add_texts_ok(qiao_index *ix, const char *const *keys, const char *const *texts, size_t n,
                                         const qiao_index_add_params *ap, const char *what) {
    qiao_index_add_stats s;
    qiao_status st = qiao_index_add_texts(ix, keys, texts, n, ap, &s);
    if (st != QIAO_OK) fail_msg("%s: %s", what, qiao_last_error());
    printf("%s: found %lld embedded %lld removed %lld pending %lld\n", what, (long long)s.found,
           (long long)s.embedded, (long long)s.removed, (long long)s.pending);
    return s;
}

/* The index's own embedding of `text` (no prompt added), with a session of its model. */
static void embed_with(qiao_index *ix, const char *text, float *out) {
    qiao_session *s = NULL;
    assert_int_equal(qiao_session_new(qiao_index_model(ix), NULL, &s), QIAO_OK);
    assert_int_equal(qiao_embed_text(s, text, out, D), QIAO_OK);
    qiao_session_free(s);
}

/* A call that must fail, leaving the index as it was: `n_before` items,
 * "img" still first for its own vector. */
static void expect_refused(qiao_index *ix, const char *const *keys, const char *const *texts, size_t n,
                           const qiao_index_add_params *ap, qiao_status want, const char *needle, size_t n_before,
                           const float *img) {
    qiao_index_add_stats s;
    qiao_status st = qiao_index_add_texts(ix, keys, texts, n, ap, &s);
    printf("  refused: %s: %s\n", qiao_status_str(st), qiao_last_error());
    assert_int_equal(st, want);
    if (needle) assert_non_null(strstr(qiao_last_error(), needle));
    assert_int_equal(s.embedded, 0);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_ANY), n_before);
    size_t nh = 0;
    qiao_index_hit *h = query_vec(ix, img, 1, QIAO_INDEX_ANY, &nh);
    assert_string_equal(h[0].key, "img");
    qiao_index_hits_free(h);
}

/* Documents added under keys: each found first by its own text (a model
 * without prompts embeds query and document alike), with the vector
 * qiao_embed_text gives; progress per batch; a key added again replaced,
 * whatever its kind was; mirror; every malformed call refused naming the
 * text, with nothing added; a save and reopen keeps them bit for bit. */
static void texts(void **state) {
    (void)state;
    char path[700];
    snprintf(path, sizeof path, "%s/texts.idx", g_tmp);
    qiao_index *ix = create(g_model_a, path);
    float img[D], v[D];
    tilted(img, 3, 4, 0.2);
    assert_int_equal(qiao_index_add_embedding(ix, "img", QIAO_INDEX_IMAGE, img, D), QIAO_OK);
    tilted(v, 5, 6, 0.2);
    assert_int_equal(qiao_index_add_embedding(ix, "doc/4", QIAO_INDEX_AUDIO, v, D), QIAO_OK); /* to be replaced */

    qiao_index_add_params ap = qiao_index_add_default_params();
    ap.batch = 2;
    ap.progress = count_texts;
    g_text_calls = g_text_last_done = 0;
    qiao_index_add_stats s = add_texts_ok(ix, k_doc_keys, k_docs, N_DOCS, &ap, "documents");
    assert_int_equal(s.found, N_DOCS);
    assert_int_equal(s.embedded, N_DOCS);
    assert_int_equal(s.removed, 0);
    assert_int_equal(s.pending, 0);
    assert_int_equal(g_text_calls, 3); /* batches of 2, 2, 1 */
    assert_int_equal(g_text_last_done, N_DOCS);
    assert_int_equal(g_text_total, N_DOCS);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_TEXT), N_DOCS);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_AUDIO), 0);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_ANY), N_DOCS + 1);
    assert_true(qiao_index_modified(ix));

    /* Each document ranks first for a query equal to it. */
    qiao_index_query_params qp = qiao_index_query_default_params();
    qp.top_k = 0;
    qp.kind = QIAO_INDEX_TEXT;
    for (size_t i = 0; i < N_DOCS; i++) {
        qiao_index_hit *h = NULL;
        size_t n = 0;
        assert_int_equal(qiao_index_query_text(ix, k_docs[i], &qp, &h, &n), QIAO_OK);
        assert_int_equal(n, N_DOCS);
        printf("  %s: %s %.7f, then %s %.7f\n", k_docs[i], h[0].key, (double)h[0].score, h[1].key,
               (double)h[1].score);
        assert_string_equal(h[0].key, k_doc_keys[i]);
        assert_int_equal(h[0].kind, QIAO_INDEX_TEXT);
        assert_true(h[0].score > 0.99999f);
        assert_true(h[1].score < h[0].score);
        assert_ranked(h, n);
        qiao_index_hits_free(h);
    }
    /* The stored vector is qiao_embed_text's (batched, so to float rounding). */
    embed_with(ix, k_docs[2], v);
    size_t n = 0;
    qiao_index_hit *h = query_vec(ix, v, 1, QIAO_INDEX_ANY, &n);
    assert_string_equal(h[0].key, "doc/2");
    assert_true(h[0].score > 0.99999f);
    qiao_index_hits_free(h);

    /* Again under doc/1 (now rain, as doc/3) and a new key; "img" becomes a text. */
    const char *k2[] = {"doc/1", "doc/9", "img"}, *t2[] = {k_docs[3], "a purple hexagon", "a photo caption"};
    s = add_texts_ok(ix, k2, t2, 3, NULL, "replace");
    assert_int_equal(s.embedded, 3);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_TEXT), N_DOCS + 2);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_IMAGE), 0);
    qp.top_k = 2;
    assert_int_equal(qiao_index_query_text(ix, k_docs[3], &qp, &h, &n), QIAO_OK);
    assert_int_equal(n, 2);
    assert_true(has_key(h, n, "doc/1") && has_key(h, n, "doc/3"));
    assert_true(h[1].score > 0.99999f);
    qiao_index_hits_free(h);

    /* Saved and opened: version 2, the same answers bit for bit. */
    assert_int_equal(qiao_index_save(ix, NULL), QIAO_OK);
    assert_int_equal(meta_version(path), 2);
    qiao_index *re = NULL;
    assert_int_equal(qiao_index_open(path, NULL, NULL, &re), QIAO_OK);
    assert_int_equal(qiao_index_count(re, QIAO_INDEX_TEXT), N_DOCS + 2);
    qp.top_k = 0;
    qp.kind = QIAO_INDEX_ANY;
    qiao_index_hit *h1 = NULL, *h2 = NULL;
    size_t n1 = 0, n2 = 0;
    assert_int_equal(qiao_index_query_text(ix, "a circle", &qp, &h1, &n1), QIAO_OK);
    assert_int_equal(qiao_index_query_text(re, "a circle", &qp, &h2, &n2), QIAO_OK);
    assert_int_equal(n1, N_DOCS + 2);
    assert_true(same_hits(h1, n1, h2, n2));
    qiao_index_hits_free(h1);
    qiao_index_hits_free(h2);
    qiao_index_free(re);

    /* Mirror: the texts are exactly these; other kinds stay. */
    tilted(img, 3, 4, 0.2);
    assert_int_equal(qiao_index_add_embedding(ix, "img", QIAO_INDEX_IMAGE, img, D), QIAO_OK);
    ap = qiao_index_add_default_params();
    ap.mirror = 1;
    const char *k3[] = {"doc/0", "doc/7"}, *t3[] = {k_docs[0], "a small white dot"};
    s = add_texts_ok(ix, k3, t3, 2, &ap, "mirror");
    assert_int_equal(s.embedded, 2);
    assert_int_equal(s.removed, N_DOCS + 1 - 1); /* doc/1..4, doc/9; "img" is an image again */
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_TEXT), 2);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_IMAGE), 1);

    /* Refused, the index as it was (3 items), each message naming the text. */
    qiao_index_add_params bad = qiao_index_add_default_params();
    const char *ok_keys[] = {"x/0", "x/1", "x/2", "x/3"};
    const char *utf[] = {"fine", "also fine", "ok", "ab\xff" "c"};
    expect_refused(ix, ok_keys, utf, 4, NULL, QIAO_ERR_FORMAT, "texts[3] (key x/3): invalid UTF-8 at byte 2", 3, img);
    const char *empty[] = {"fine", ""};
    expect_refused(ix, ok_keys, empty, 2, NULL, QIAO_ERR_INVALID_ARGUMENT, "texts[1] (key x/1) is empty", 3, img);
    const char *blank[] = {"fine", "ok", " \t\xe3\x80\x80\n"}; /* U+3000, the ideographic space */
    expect_refused(ix, ok_keys, blank, 3, NULL, QIAO_ERR_INVALID_ARGUMENT, "texts[2] (key x/2) is only white space",
                   3, img);
    const char *null_text[] = {"fine", NULL};
    expect_refused(ix, ok_keys, null_text, 2, NULL, QIAO_ERR_INVALID_ARGUMENT, "texts[1]", 3, img);
    const char *dup_keys[] = {"d", "e", "d"};
    expect_refused(ix, dup_keys, utf, 3, NULL, QIAO_ERR_INVALID_ARGUMENT, "keys[0] and keys[2] are the same (d)", 3,
                   img);
    const char *bad_keys[] = {"k", ""};
    expect_refused(ix, bad_keys, utf, 2, NULL, QIAO_ERR_INVALID_ARGUMENT, "keys[1]", 3, img);
    const char *bad_utf_key[] = {"k\xc0"};
    expect_refused(ix, bad_utf_key, utf, 1, NULL, QIAO_ERR_INVALID_ARGUMENT, "keys[0]", 3, img);
    expect_refused(ix, NULL, utf, 1, NULL, QIAO_ERR_INVALID_ARGUMENT, NULL, 3, img);
    expect_refused(ix, ok_keys, NULL, 1, NULL, QIAO_ERR_INVALID_ARGUMENT, NULL, 3, img);
    bad.batch = 0;
    expect_refused(ix, ok_keys, utf, 1, &bad, QIAO_ERR_INVALID_ARGUMENT, "batch", 3, img);
    bad = qiao_index_add_default_params();
    bad.struct_size = 3;
    expect_refused(ix, ok_keys, utf, 1, &bad, QIAO_ERR_INVALID_ARGUMENT, NULL, 3, img);
    assert_int_equal(qiao_index_add_texts(NULL, ok_keys, utf, 1, NULL, NULL), QIAO_ERR_INVALID_ARGUMENT);

    /* Nothing to add: nothing happens; with mirror, the texts go. */
    s = add_texts_ok(ix, NULL, NULL, 0, NULL, "none");
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_TEXT), 2);
    s = add_texts_ok(ix, NULL, NULL, 0, &ap, "none, mirrored");
    assert_int_equal(s.removed, 2);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_TEXT), 0);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_ANY), 1);
    qiao_index_free(ix);
    unlink(path);
}

/* A cancel asked after the first batch: that batch is in, the texts not
 * reached (the last stats.pending) are not, and an item already under one
 * of their keys stays as it was; a call with just those finishes the job.
 * A cancel before the first batch adds nothing (with mirror it still
 * removes the other texts). */
static int g_text_cancel;
static void cancel_after_batch(const qiao_index_progress *p, void *ud) {
    (void)p, (void)ud;
    g_text_cancel = 1;
}
static int text_cancel_flag(void *ud) {
    (void)ud;
    return g_text_cancel;
}

static void texts_cancel(void **state) {
    (void)state;
    enum { N = 7 };
    const char *keys[N] = {"t/0", "t/1", "t/2", "t/3", "t/4", "t/5", "t/6"};
    const char *docs[N] = {"one red circle", "two red circles", "three blue squares", "a yellow triangle",
                           "the wind in the trees", "a dog barking", "rain on a roof"};
    qiao_index *ix = create(g_model_a, NULL);
    float old[D];
    tilted(old, 7, 8, 0.1);
    assert_int_equal(qiao_index_add_embedding(ix, "t/5", QIAO_INDEX_TEXT, old, D), QIAO_OK);
    assert_int_equal(qiao_index_add_embedding(ix, "other", QIAO_INDEX_TEXT, old, D), QIAO_OK);

    qiao_index_add_params ap = qiao_index_add_default_params();
    ap.batch = 3;
    ap.progress = cancel_after_batch;
    ap.cancel = text_cancel_flag;
    g_text_cancel = 0;
    qiao_index_add_stats s;
    assert_int_equal(qiao_index_add_texts(ix, keys, docs, N, &ap, &s), QIAO_ERR_CANCELLED);
    printf("cancelled: %s; embedded %lld pending %lld\n", qiao_last_error(), (long long)s.embedded,
           (long long)s.pending);
    assert_non_null(strstr(qiao_last_error(), "4 of 7 texts left"));
    assert_int_equal(s.embedded, 3);
    assert_int_equal(s.pending, N - 3);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_TEXT), 3 + 2);
    size_t n = 0;
    qiao_index_hit *h = query_vec(ix, old, 0, QIAO_INDEX_ANY, &n);
    assert_int_equal(n, 5);
    assert_true(has_key(h, n, "t/0") && has_key(h, n, "t/2") && !has_key(h, n, "t/3") && !has_key(h, n, "t/6"));
    assert_true(!strcmp(h[0].key, "other") || !strcmp(h[0].key, "t/5")); /* both still `old` */
    assert_float_equal(h[1].score, 1.0, 1e-6);
    qiao_index_hits_free(h);

    /* The rest, without a cancel. */
    ap.progress = NULL;
    ap.cancel = NULL;
    size_t done = (size_t)(N - s.pending);
    s = add_texts_ok(ix, keys + done, docs + done, N - done, &ap, "resumed");
    assert_int_equal(s.embedded, N - 3);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_TEXT), N + 1);
    qiao_index_query_params qp = qiao_index_query_default_params();
    qp.top_k = 1;
    assert_int_equal(qiao_index_query_text(ix, docs[5], &qp, &h, &n), QIAO_OK);
    assert_string_equal(h[0].key, "t/5"); /* replaced now */
    qiao_index_hits_free(h);

    /* Cancelled before the first batch: nothing added; mirror still applies. */
    g_text_cancel = 1;
    ap.cancel = text_cancel_flag;
    const char *k2[] = {"new"}, *t2[] = {"a new text"};
    assert_int_equal(qiao_index_add_texts(ix, k2, t2, 1, &ap, &s), QIAO_ERR_CANCELLED);
    assert_int_equal(s.embedded, 0);
    assert_int_equal(s.pending, 1);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_TEXT), N + 1);
    ap.mirror = 1;
    assert_int_equal(qiao_index_add_texts(ix, k2, t2, 1, &ap, &s), QIAO_ERR_CANCELLED);
    assert_int_equal(s.removed, N + 1);
    assert_int_equal(qiao_index_count(ix, QIAO_INDEX_ANY), 0);
    qiao_index_free(ix);
}

/* A model trained with prompts (e5's): the index puts "passage: " before a
 * document and "query: " before a query, so an item's vector is
 * qiao_embed_text's of "passage: <text>" and a query's that of
 * "query: <text>"; an invalid query names its own byte. */
static void prompts(void **state) {
    (void)state;
    qiao_index *ix = create(g_model_p, NULL);
    const qiao_model *m = qiao_index_model(ix);
    assert_string_equal(qiao_model_space(m), "test/prompted");
    assert_string_equal(qiao_model_prompt(m, "query"), "query: ");
    assert_string_equal(qiao_model_prompt(m, "document"), "passage: ");
    qiao_index *plain = create(g_model_a, NULL);
    assert_string_equal(qiao_model_space(qiao_index_model(plain)), "tiny");
    assert_string_equal(qiao_model_prompt(qiao_index_model(plain), "query"), "");
    qiao_index_free(plain);

    const char *keys[] = {"d"}, *docs[] = {"a red circle"};
    add_texts_ok(ix, keys, docs, 1, NULL, "prompted");
    float with[D], without[D], q[D];
    embed_with(ix, "passage: a red circle", with);
    embed_with(ix, "a red circle", without);
    printf("  cosine(passage: x, x) = %.6f\n", cosine_d(with, without));
    assert_true(cosine_d(with, without) < 0.9999); /* the prompt makes a difference to test */
    size_t n = 0;
    qiao_index_hit *h = query_vec(ix, with, 1, QIAO_INDEX_ANY, &n);
    assert_string_equal(h[0].key, "d");
    assert_true(h[0].score > 0.99999f);
    qiao_index_hits_free(h);

    embed_with(ix, "query: two blue squares", q);
    assert_int_equal(qiao_index_add_embedding(ix, "q", QIAO_INDEX_TEXT, q, D), QIAO_OK);
    qiao_index_query_params qp = qiao_index_query_default_params();
    qp.top_k = 0;
    assert_int_equal(qiao_index_query_text(ix, "two blue squares", &qp, &h, &n), QIAO_OK);
    assert_int_equal(n, 2);
    assert_string_equal(h[0].key, "q");
    assert_true(h[0].score > 0.99999f);
    qiao_index_hits_free(h);
    assert_int_equal(qiao_index_query_text(ix, "abc\xff", &qp, &h, &n), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "byte 3"));
    qiao_index_free(ix);
}

/* Rewrites the index file at `path` in place with `from` cut out of its JSON. */
static void cut_meta(const char *path, const char *from) {
    qc_st_file *f = NULL;
    assert_int_equal(qc_st_open(path, &f), QIAO_OK);
    const char *meta = qc_st_metadata_get(f, "qiao.index");
    const char *hit = strstr(meta, from);
    assert_non_null(hit);
    char *json = malloc(strlen(meta) + 1);
    assert_non_null(json);
    snprintf(json, strlen(meta) + 1, "%.*s%s", (int)(hit - meta), meta, hit + strlen(from));
    const qc_st_tensor *t = qc_st_find(f, "embeddings");
    float *rows = malloc(t->nbytes ? t->nbytes : 1);
    assert_non_null(rows);
    memcpy(rows, t->data, t->nbytes);
    qc_st_entry e = {.name = "embeddings", .dtype = QIAO_DTYPE_F32, .ndim = 2, .shape = {t->shape[0], t->shape[1]},
                     .data = rows, .from_f32 = false};
    qc_st_close(f);
    qc_st_kv kv = {"qiao.index", json};
    assert_int_equal(qc_st_write(path, &e, 1, &kv, 1), QIAO_OK);
    free(rows);
    free(json);
}

/* An index records its model's space; a model of another space is refused
 * by open and load naming both spaces, before the fingerprint (whose
 * message stays for a model of the same space: another file). An index
 * written before spaces were recorded is in its model's name's space. */
static void space(void **state) {
    (void)state;
    char path[700], path_p[700];
    snprintf(path, sizeof path, "%s/space.idx", g_tmp);
    snprintf(path_p, sizeof path_p, "%s/space_p.idx", g_tmp);
    qiao_index *ix = create(g_model_a, path);
    const char *keys[] = {"k"}, *docs[] = {"a red circle"};
    add_texts_ok(ix, keys, docs, 1, NULL, "space");
    assert_int_equal(qiao_index_save(ix, NULL), QIAO_OK);
    qiao_index_free(ix);
    cJSON *j = index_meta(path);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "space")), "tiny");
    cJSON_Delete(j);

    qiao_index *other = NULL;
    assert_int_equal(qiao_index_open(path, g_model_p, NULL, &other), QIAO_ERR_INVALID_ARGUMENT);
    printf("  %s\n", qiao_last_error());
    assert_null(other);
    assert_non_null(strstr(qiao_last_error(), "embedding space \"tiny\""));
    assert_non_null(strstr(qiao_last_error(), "\"test/prompted\""));
    assert_null(strstr(qiao_last_error(), "built with another model"));
    other = create(g_model_p, path_p);
    add_texts_ok(other, keys, docs, 1, NULL, "prompted space");
    assert_int_equal(qiao_index_load(other, path), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "\"tiny\""));
    assert_int_equal(qiao_index_count(other, QIAO_INDEX_TEXT), 1);
    assert_int_equal(qiao_index_save(other, NULL), QIAO_OK);
    qiao_index_free(other);
    j = index_meta(path_p);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "space")), "test/prompted");
    cJSON_Delete(j);
    assert_int_equal(qiao_index_open(path_p, NULL, NULL, &other), QIAO_OK);
    assert_int_equal(qiao_index_count(other, QIAO_INDEX_TEXT), 1);
    qiao_index_free(other);
    /* Same space, another file: the fingerprint's message. */
    assert_int_equal(qiao_index_open(path, g_model_b, NULL, &other), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "built with another model"));

    /* Without "space": the fingerprint's name, "tiny". */
    cut_meta(path, "\"space\":\"tiny\",");
    j = index_meta(path);
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "space"));
    cJSON_Delete(j);
    assert_int_equal(qiao_index_open(path, g_model_a, NULL, &other), QIAO_OK);
    assert_int_equal(qiao_index_count(other, QIAO_INDEX_TEXT), 1);
    qiao_index_free(other);
    assert_int_equal(qiao_index_open(path, g_model_p, NULL, &other), QIAO_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(qiao_last_error(), "embedding space \"tiny\""));
    unlink(path);
    unlink(path_p);
}

/* ---- setup ------------------------------------------------------------------ */

/* The tiny model with a "space" of its own and e5's prompts. */
static void write_prompted_model(const char *path, uint64_t seed) {
    qmod_model *m = qt_tiny_model(seed, true);
    cJSON *root = cJSON_Parse(m->cfg.json);
    assert_non_null(root);
    cJSON_AddStringToObject(root, "space", "test/prompted");
    cJSON_AddItemToObject(root, "prompts", cJSON_Parse("{\"query\": \"query: \", \"document\": \"passage: \"}"));
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    qmod_config c;
    if (qmod_config_from_string(json, "prompted", &c) != QIAO_OK) fail_msg("%s", qiao_last_error());
    cJSON_free(json);
    qmod_config_free(&m->cfg);
    m->cfg = c;
    assert_int_equal(qmod_save(m, path, QIAO_DTYPE_F32), QIAO_OK);
    qmod_free(m);
}

static int group_setup(void **state) {
    (void)state;
    const char *dir = getenv("TMPDIR");
    snprintf(g_tmp, sizeof g_tmp, "%s/qiao_test_search_api_XXXXXX", dir && *dir ? dir : "/tmp");
    if (!mkdtemp(g_tmp)) return -1;
    snprintf(g_model_a, sizeof g_model_a, "%s/model_a.safetensors", g_tmp);
    snprintf(g_model_b, sizeof g_model_b, "%s/model_b.safetensors", g_tmp);
    snprintf(g_model_p, sizeof g_model_p, "%s/model_p.safetensors", g_tmp);
    qt_write_tiny_model(g_model_a, 1, true);
    qt_write_tiny_model(g_model_b, 2, true);
    write_prompted_model(g_model_p, 3);
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    qt_rm_rf(g_tmp);
    return 0;
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(vectors), cmocka_unit_test(many_keys), cmocka_unit_test(files),
        cmocka_unit_test(save_and_open), cmocka_unit_test(cancel), cmocka_unit_test(threads),
        cmocka_unit_test(texts), cmocka_unit_test(texts_cancel), cmocka_unit_test(prompts), cmocka_unit_test(space),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
