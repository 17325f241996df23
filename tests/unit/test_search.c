/* qiao search (apps/qiao/cmd_search.c, search_index.c), compiled into this
 * test, over the library's index (sdk/api/search*.c; test_search_api.c
 * tests its public API on its own): indexing a folder of images, audio and junk; queries that find a
 * file by its own content; incremental re-indexing (touch, delete, add,
 * change of model); Ctrl-C (a real SIGINT) stopping a run that the next run
 * continues; corrupt and foreign index files; documents from text files
 * (--texts). The models are tiny random ones made here with the committed
 * test tokenizer. */
#define _GNU_SOURCE /* mkdtemp, realpath, inotify */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "core/safetensors.h"
#include "models/model.h"
#include "qiao.h"
#include "search_index.h"
#include "model_fixture.h"
#include "testfs.h"
#include "testutil.h"

#define TINY_JSON QIAO_SOURCE_DIR "/models/configs/tiny.json"
#define TOK_PATH QIAO_TEST_DATA "/tokenizer/tok-test.safetensors"
#define IMG(n) QIAO_TEST_DATA "/image/" n
#define AUD(n) QIAO_TEST_DATA "/audio/" n

/* Two models of the same config, different weights; made once. */
static char g_tmp[512], g_model_a[600], g_model_b[600];

/* ---- files ---------------------------------------------------------------------- */

static char *read_all(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    buf[n] = 0;
    if (len) *len = (size_t)n;
    return buf;
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

static void copy_file(const char *from, const char *dir, const char *name) {
    size_t n;
    char *b = read_all(from, &n);
    assert_non_null(b);
    char to[1024];
    snprintf(to, sizeof to, "%s/%s", dir, name);
    write_bytes(to, b, n);
    free(b);
}

/* A fresh folder under the test's temporary folder. */
static void make_dir(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", g_tmp, name);
    qt_rm_rf(out);
    assert_int_equal(mkdir(out, 0755), 0);
}

/* The media folder used by most cases:
 *   img0.jpg img1.jpg img2.jpg junk.txt sub/a.wav sub/b.ogg  (+ .hidden.jpg, .git/x.jpg)
 * 3 images, 2 audio, 1 junk; the hidden ones are never looked at. */
static void make_media(char *dir, size_t cap, const char *name) {
    make_dir(dir, cap, name);
    copy_file(IMG("000000126107.jpg"), dir, "img0.jpg");
    copy_file(IMG("000000159269.jpg"), dir, "img1.jpg");
    copy_file(IMG("000000205401.jpg"), dir, "img2.jpg");
    copy_file(IMG("000000205401.jpg"), dir, ".hidden.jpg");
    char sub[1024];
    snprintf(sub, sizeof sub, "%s/.git", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    copy_file(IMG("000000126107.jpg"), sub, "x.jpg");
    snprintf(sub, sizeof sub, "%s/sub", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    copy_file(AUD("fsdd_3_jackson_0.wav"), sub, "a.wav");
    copy_file(AUD("esc10_1-110389-A.ogg"), sub, "b.ogg");
    static const char junk[] = "this is a plain text file, neither an image nor a sound\n";
    char p[1024];
    snprintf(p, sizeof p, "%s/junk.txt", dir);
    write_bytes(p, junk, sizeof junk - 1);
}

/* A JPEG header and then nothing an image or audio decoder can use. */
static void write_broken_jpeg(const char *dir, const char *name) {
    unsigned char b[300] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0};
    for (size_t i = 11; i < sizeof b; i++) b[i] = (unsigned char)(i * 7);
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    write_bytes(p, b, sizeof b);
}

static void path_in(char *out, size_t cap, const char *dir, const char *name) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    char *r = realpath(p, NULL);
    assert_non_null(r);
    snprintf(out, cap, "%s", r);
    free(r);
}

/* ---- running the command ---------------------------------------------------------- */

/* Runs cmd_search with the NULL-terminated arguments after "search";
 * stdout goes to `out_path` when given. Returns the exit code. */
static int run_search(const char *out_path, ...) {
    char *argv[64];
    int argc = 0;
    argv[argc++] = strdup("search");
    va_list ap;
    va_start(ap, out_path);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        assert_true(argc < 63);
        argv[argc++] = strdup(a);
    }
    va_end(ap);
    argv[argc] = NULL;
    int saved = -1;
    if (out_path) {
        fflush(stdout);
        saved = dup(STDOUT_FILENO);
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        assert_true(saved >= 0 && fd >= 0);
        dup2(fd, STDOUT_FILENO);
        close(fd);
    }
    int rc = cmd_search(argc, argv);
    if (out_path) {
        fflush(stdout);
        dup2(saved, STDOUT_FILENO);
        close(saved);
    }
    for (int i = 0; i < argc; i++) free(argv[i]);
    return rc;
}

/* Runs a query with --json and returns the parsed output. */
static cJSON *query_json(const char *index, const char *flag, const char *value, const char *top, const char *kind) {
    char out[600];
    snprintf(out, sizeof out, "%s/query.json", g_tmp);
    int rc = kind ? run_search(out, "query", "--index", index, flag, value, "--top", top, "--kind", kind, "--json",
                               NULL)
                  : run_search(out, "query", "--index", index, flag, value, "--top", top, "--json", NULL);
    assert_int_equal(rc, 0);
    char *text = read_all(out, NULL);
    assert_non_null(text);
    cJSON *j = cJSON_Parse(text);
    if (!j) printf("not JSON: %s\n", text);
    free(text);
    assert_non_null(j);
    return j;
}

static const cJSON *result_at(const cJSON *j, int k) {
    const cJSON *r = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "results"), k);
    assert_non_null(r);
    return r;
}

static const char *result_str(const cJSON *j, int k, const char *key) {
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(result_at(j, k), key));
    assert_non_null(s);
    return s;
}

static double result_score(const cJSON *j, int k) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(result_at(j, k), "score");
    assert_true(cJSON_IsNumber(s));
    return s->valuedouble;
}

static int n_results(const cJSON *j) { return cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "results")); }

static search_update_params update_params(const char *model, const char *index, const char **roots, size_t n,
                                          int batch) {
    return (search_update_params){.model_path = model, .index_path = index, .roots = roots, .n_roots = n,
                                  .n_threads = 2, .batch = batch};
}

static void print_stats(const char *what, const search_update_stats *s) {
    printf("%s: found %lld embedded %lld kept %lld removed %lld failed %lld known %lld pending %lld -> %lld img "
           "%lld aud%s%s\n",
           what, (long long)s->found, (long long)s->embedded, (long long)s->kept, (long long)s->removed,
           (long long)s->failed, (long long)s->skipped_known, (long long)s->pending, (long long)s->images,
           (long long)s->audios, s->model_changed ? " (model changed)" : "", s->written ? "" : " (not written)");
}

static search_update_stats update_ok(const search_update_params *p, const char *what) {
    search_update_stats s;
    qiao_status st = search_update(p, &s);
    if (st != QIAO_OK) printf("%s: %s\n", what, qiao_last_error());
    assert_int_equal(st, QIAO_OK);
    print_stats(what, &s);
    return s;
}

static const search_file *find_item(const search_index *idx, const char *path, size_t *row) {
    for (size_t i = 0; i < idx->n; i++)
        if (!strcmp(idx->items[i].path, path)) {
            if (row) *row = i;
            return &idx->items[i];
        }
    return NULL;
}

/* ---- cases ------------------------------------------------------------------------ */

/* A folder of 3 images, 2 clips and a text file: everything media is
 * indexed with the right kind, hidden files are not, the junk is remembered
 * as skipped; a query by a file's own content finds that file first. */
static void index_and_query(void **state) {
    (void)state;
    char dir[600], index[700];
    make_media(dir, sizeof dir, "iq");
    snprintf(index, sizeof index, "%s/iq.idx", g_tmp);
    unlink(index);
    write_broken_jpeg(dir, "broken.jpg");
    const char *roots[] = {dir};
    search_update_params p = update_params(g_model_a, index, roots, 1, 2);
    search_update_stats s = update_ok(&p, "first");
    assert_int_equal(s.found, 7);
    assert_int_equal(s.embedded, 5);
    assert_int_equal(s.failed, 2);
    assert_int_equal(s.images, 3);
    assert_int_equal(s.audios, 2);
    assert_true(s.written);

    search_index idx;
    assert_int_equal(search_index_read(index, &idx), QIAO_OK);
    assert_int_equal(idx.n, 5);
    assert_int_equal(idx.dim, 1024);
    assert_int_equal(idx.n_skipped, 2);
    assert_non_null(strstr(idx.skipped[0].path, "/broken.jpg"));
    assert_non_null(strstr(idx.skipped[1].path, "/junk.txt"));
    char *model_abs = realpath(g_model_a, NULL);
    assert_string_equal(idx.model, model_abs);
    free(model_abs);
    char want[1024];
    path_in(want, sizeof want, dir, "sub/b.ogg");
    const search_file *b = find_item(&idx, want, NULL);
    assert_non_null(b);
    assert_int_equal(b->kind, SEARCH_AUDIO);
    struct stat sb;
    assert_int_equal(stat(want, &sb), 0);
    assert_int_equal(b->size, (int64_t)sb.st_size);
    assert_true(b->mtime_ns == (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec);
    for (size_t i = 0; i < idx.n; i++) {
        assert_null(strstr(idx.items[i].path, "/."));
        double norm = 0;
        for (int64_t k = 0; k < idx.dim; k++) norm += (double)idx.emb[i * 1024 + k] * idx.emb[i * 1024 + k];
        assert_float_equal(norm, 1.0, 1e-4);
        if (i) assert_true(strcmp(idx.items[i - 1].path, idx.items[i].path) < 0);
    }
    search_index_free(&idx);

    /* An image finds itself, with cosine ~1, then the others in order. */
    cJSON *j = query_json(index, "--image", IMG("000000159269.jpg"), "3", NULL);
    path_in(want, sizeof want, dir, "img1.jpg");
    assert_int_equal(n_results(j), 3);
    assert_string_equal(result_str(j, 0, "path"), want);
    assert_string_equal(result_str(j, 0, "kind"), "image");
    printf("image query: top score %.6f, next %.6f\n", result_score(j, 0), result_score(j, 1));
    assert_true(result_score(j, 0) > 0.9999);
    assert_true(result_score(j, 0) >= result_score(j, 1) && result_score(j, 1) >= result_score(j, 2));
    cJSON_Delete(j);

    /* The same for a clip, through the query's model path stored in the index. */
    j = query_json(index, "--audio", AUD("esc10_1-110389-A.ogg"), "5", NULL);
    path_in(want, sizeof want, dir, "sub/b.ogg");
    assert_int_equal(n_results(j), 5);
    assert_string_equal(result_str(j, 0, "path"), want);
    assert_true(result_score(j, 0) > 0.9999);
    cJSON_Delete(j);

    /* Text against audio only: the two clips, nothing else. */
    j = query_json(index, "--text", "a dog barking in the park", "5", "audio");
    assert_int_equal(n_results(j), 2);
    for (int k = 0; k < 2; k++) assert_string_equal(result_str(j, k, "kind"), "audio");
    assert_true(result_score(j, 0) >= result_score(j, 1));
    cJSON_Delete(j);

    /* The table form. */
    char out[700];
    snprintf(out, sizeof out, "%s/query.txt", g_tmp);
    assert_int_equal(run_search(out, "query", "--index", index, "--model", g_model_a, "--image",
                                IMG("000000205401.jpg"), "--top", "1", NULL),
                     0);
    char *text = read_all(out, NULL);
    printf("%s", text);
    path_in(want, sizeof want, dir, "img2.jpg");
    assert_non_null(strstr(text, want));
    assert_non_null(strstr(text, "   1  "));
    assert_null(strstr(text, "   2  "));
    free(text);
    qt_rm_rf(dir);
    unlink(index);
}

/* Re-indexing keeps what did not change (bit for bit), re-embeds exactly the
 * touched file, drops deleted files, takes new ones, and retries the junk
 * only once it changed. Runs through the command line first. */
static void reindex(void **state) {
    (void)state;
    char dir[600], index[700], out[700];
    make_media(dir, sizeof dir, "re");
    snprintf(index, sizeof index, "%s/re.idx", g_tmp);
    snprintf(out, sizeof out, "%s/re.out", g_tmp);
    unlink(index);
    assert_int_equal(run_search(out, "index", "--model", g_model_a, "--out", index, "--batch", "4", "--threads",
                                "2", dir, NULL),
                     0);
    char *text = read_all(out, NULL);
    printf("%s", text);
    assert_non_null(strstr(text, "5 files (3 images, 2 audio): 5 embedded, 0 unchanged, 0 removed, 1 not indexed"));
    free(text);
    search_index a;
    assert_int_equal(search_index_read(index, &a), QIAO_OK);

    const char *roots[] = {dir};
    search_update_params p = update_params(g_model_a, index, roots, 1, 3);
    search_update_stats s = update_ok(&p, "unchanged");
    assert_int_equal(s.embedded, 0);
    assert_int_equal(s.kept, 5);
    assert_int_equal(s.skipped_known, 1);
    assert_int_equal(s.failed, 0);
    assert_false(s.written);

    /* Touch one file: a new mtime, same bytes. */
    char touched[1024];
    path_in(touched, sizeof touched, dir, "img1.jpg");
    struct timespec ts[2] = {{.tv_sec = 1000000000, .tv_nsec = 123456789},
                             {.tv_sec = 1000000000, .tv_nsec = 123456789}};
    assert_int_equal(utimensat(AT_FDCWD, touched, ts, 0), 0);
    s = update_ok(&p, "touched");
    assert_int_equal(s.embedded, 1);
    assert_int_equal(s.kept, 4);
    assert_int_equal(s.removed, 0);
    assert_true(s.written);
    search_index b;
    assert_int_equal(search_index_read(index, &b), QIAO_OK);
    assert_int_equal(b.n, 5);
    for (size_t i = 0; i < a.n; i++) {
        size_t r;
        const search_file *f = find_item(&b, a.items[i].path, &r);
        assert_non_null(f);
        const float *ra = a.emb + i * 1024, *rb = b.emb + r * 1024;
        if (!strcmp(f->path, touched)) {
            assert_true(f->mtime_ns == 1000000000123456789LL);
            assert_true(qiao_cosine(ra, rb, 1024) > 0.9999f); /* same bytes, embedded again */
        } else {
            assert_memory_equal(ra, rb, 1024 * sizeof(float)); /* kept as stored */
            assert_true(f->mtime_ns == a.items[i].mtime_ns);
        }
    }
    search_index_free(&b);

    /* Delete a clip, add an image. */
    char p2[1024];
    snprintf(p2, sizeof p2, "%s/sub/b.ogg", dir);
    assert_int_equal(unlink(p2), 0);
    copy_file(IMG("000000126107.jpg"), dir, "img3.jpg");
    s = update_ok(&p, "delete+add");
    assert_int_equal(s.removed, 1);
    assert_int_equal(s.embedded, 1);
    assert_int_equal(s.kept, 4);
    assert_int_equal(s.images, 4);
    assert_int_equal(s.audios, 1);
    assert_int_equal(search_index_read(index, &b), QIAO_OK);
    assert_int_equal(b.n, 5);
    assert_null(find_item(&b, p2, NULL));
    search_index_free(&b);

    /* The junk changes: decoded again (and still not media). */
    snprintf(p2, sizeof p2, "%s/junk.txt", dir);
    FILE *fp = fopen(p2, "ab");
    assert_non_null(fp);
    fputs("more text\n", fp);
    fclose(fp);
    s = update_ok(&p, "junk changed");
    assert_int_equal(s.failed, 1);
    assert_int_equal(s.skipped_known, 0);
    assert_int_equal(s.embedded, 0);
    assert_true(s.written);

    search_index_free(&a);
    qt_rm_rf(dir);
    unlink(index);
    unlink(out);
}

/* Another model re-embeds everything; a query must use the index's model. */
static void model_change(void **state) {
    (void)state;
    char dir[600], index[700];
    make_media(dir, sizeof dir, "mc");
    snprintf(index, sizeof index, "%s/mc.idx", g_tmp);
    unlink(index);
    const char *roots[] = {dir};
    search_update_params p = update_params(g_model_a, index, roots, 1, 8);
    update_ok(&p, "model a");
    p.model_path = g_model_b;
    search_update_stats s = update_ok(&p, "model b");
    assert_true(s.model_changed);
    assert_int_equal(s.embedded, 5);
    assert_int_equal(s.kept, 0);
    assert_int_equal(s.failed, 1); /* the skipped list is dropped with the model */
    search_index idx;
    assert_int_equal(search_index_read(index, &idx), QIAO_OK);
    char *b_abs = realpath(g_model_b, NULL);
    assert_string_equal(idx.model, b_abs);
    free(b_abs);
    search_index_free(&idx);
    /* B's index queried with A: refused. With B (stored): fine. */
    assert_int_equal(run_search(NULL, "query", "--index", index, "--model", g_model_a, "--text", "hello", NULL), 1);
    cJSON *j = query_json(index, "--image", IMG("000000126107.jpg"), "1", NULL);
    assert_true(result_score(j, 0) > 0.9999);
    cJSON_Delete(j);
    qt_rm_rf(dir);
    unlink(index);
}

/* Sends SIGINT to this process once the indexer has opened `after` files
 * in the watched folder (inotify), so the signal surely lands mid-run. */
typedef struct sigint_job {
    int fd;
    int after;
    int sent;
} sigint_job;

static void *sigint_after_opens(void *arg) {
    sigint_job *j = arg;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    int opens = 0;
    while (opens < j->after) {
        struct pollfd pfd = {.fd = j->fd, .events = POLLIN};
        if (poll(&pfd, 1, 60000) <= 0) return NULL;
        ssize_t n = read(j->fd, buf, sizeof buf);
        if (n <= 0) return NULL;
        for (char *q = buf; q < buf + n;) {
            const struct inotify_event *e = (const struct inotify_event *)q;
            if (!(e->mask & IN_ISDIR)) opens++;
            q += sizeof *e + e->len;
        }
    }
    j->sent = 1;
    kill(getpid(), SIGINT);
    return NULL;
}

/* Ctrl-C: the run stops after its current batch, writes what it did and
 * exits 130; the same command then finishes the rest, keeping that work. */
static void interrupt_resume(void **state) {
    (void)state;
    enum { N = 40 };
    char dir[600], index[700];
    make_dir(dir, sizeof dir, "int");
    snprintf(index, sizeof index, "%s/int.idx", g_tmp);
    unlink(index);
    static const char *src[] = {IMG("000000126107.jpg"), IMG("000000159269.jpg"), IMG("000000205401.jpg")};
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "f%02d.jpg", i);
        copy_file(src[i % 3], dir, name);
    }
    /* A shell may start tests with SIGINT ignored; the command then (rightly)
     * leaves it ignored, so give it the usual disposition first. */
    struct sigaction sa;
    signal(SIGINT, SIG_DFL);
    sigint_job j = {.fd = inotify_init1(IN_CLOEXEC), .after = 4};
    assert_true(j.fd >= 0);
    assert_true(inotify_add_watch(j.fd, dir, IN_OPEN) >= 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, sigint_after_opens, &j), 0);
    int rc = run_search(NULL, "index", "--model", g_model_a, "--out", index, "--batch", "1", dir, NULL);
    pthread_join(th, NULL);
    close(j.fd);
    assert_true(j.sent);
    assert_int_equal(rc, 130);
    search_index idx;
    assert_int_equal(search_index_read(index, &idx), QIAO_OK);
    size_t done = idx.n;
    printf("interrupted after %zu of %d files\n", done, N);
    assert_true(done >= 1 && done < N);
    search_index_free(&idx);
    /* The handler is gone again: SIGINT is back to its old disposition. */
    assert_int_equal(sigaction(SIGINT, NULL, &sa), 0);
    assert_true(sa.sa_handler == SIG_DFL);

    const char *roots[] = {dir};
    search_update_params p = update_params(g_model_a, index, roots, 1, 8);
    search_update_stats s = update_ok(&p, "resume");
    assert_int_equal(s.kept, (int64_t)done);
    assert_int_equal(s.embedded, N - (int64_t)done);
    assert_int_equal(s.images, N);
    qt_rm_rf(dir);
    unlink(index);
}

/* A cancel callback (what SIGINT drives) after the first batch: one batch is
 * written, nothing of the next. */
static int g_batches;
static void count_batch(int64_t done, int64_t total, int64_t embedded, double seconds, void *ud) {
    (void)done, (void)total, (void)embedded, (void)seconds, (void)ud;
    g_batches++;
}
static int cancel_after_one(void *ud) {
    (void)ud;
    return g_batches >= 1;
}

static void cancel_resume(void **state) {
    (void)state;
    char dir[600], index[700];
    make_media(dir, sizeof dir, "cr");
    snprintf(index, sizeof index, "%s/cr.idx", g_tmp);
    unlink(index);
    const char *roots[] = {dir};
    search_update_params p = update_params(g_model_a, index, roots, 1, 2);
    p.progress = count_batch;
    p.cancel = cancel_after_one;
    g_batches = 0;
    search_update_stats s;
    assert_int_equal(search_update(&p, &s), QIAO_ERR_CANCELLED);
    print_stats("cancelled", &s);
    assert_int_equal(s.embedded, 2); /* img0, img1 */
    assert_int_equal(s.pending, 4);
    assert_true(s.written);
    search_index idx;
    assert_int_equal(search_index_read(index, &idx), QIAO_OK);
    assert_int_equal(idx.n, 2);
    search_index_free(&idx);
    p.progress = NULL;
    p.cancel = NULL;
    s = update_ok(&p, "resumed");
    assert_int_equal(s.kept, 2);
    assert_int_equal(s.embedded, 3);
    assert_int_equal(s.failed, 1);
    qt_rm_rf(dir);
    unlink(index);
}

static void expect_read_error(const char *path, qiao_status want, const char *needle) {
    search_index idx;
    qiao_status st = search_index_read(path, &idx);
    printf("  %s -> %s: %s\n", path, qiao_status_str(st), qiao_last_error());
    assert_int_equal(st, want);
    if (needle) assert_non_null(strstr(qiao_last_error(), needle));
    assert_null(idx.items);
    assert_int_equal(run_search(NULL, "query", "--index", path, "--text", "hello", NULL), 1);
}

/* Rewrites the valid index at `src` to `dst` with its JSON changed by
 * replacing `from` by `to`, and the embeddings cut to `rows` rows. */
static void forge(const char *src, const char *dst, const char *from, const char *to, int64_t rows) {
    qc_st_file *f = NULL;
    assert_int_equal(qc_st_open(src, &f), QIAO_OK);
    const char *meta = qc_st_metadata_get(f, SEARCH_INDEX_META);
    assert_non_null(meta);
    const char *hit = from ? strstr(meta, from) : NULL;
    if (from) assert_non_null(hit);
    size_t n = strlen(meta) + (to ? strlen(to) : 0) + 1;
    char *json = malloc(n);
    assert_non_null(json);
    if (hit) snprintf(json, n, "%.*s%s%s", (int)(hit - meta), meta, to, hit + strlen(from));
    else snprintf(json, n, "%s", meta);
    const qc_st_tensor *t = qc_st_find(f, SEARCH_INDEX_TENSOR);
    assert_non_null(t);
    qc_st_entry e = {.name = SEARCH_INDEX_TENSOR, .dtype = QIAO_DTYPE_F32, .ndim = 2, .shape = {rows, t->shape[1]},
                     .data = t->data, .from_f32 = false};
    qc_st_kv kv = {SEARCH_INDEX_META, json};
    assert_int_equal(qc_st_write(dst, &e, 1, &kv, 1), QIAO_OK);
    free(json);
    qc_st_close(f);
}

/* Damaged, inconsistent and foreign index files are clear errors (exit 1),
 * and `index` refuses to overwrite a file that is not an index. */
static void corrupt_index(void **state) {
    (void)state;
    char dir[600], index[700], bad[700];
    make_media(dir, sizeof dir, "ci");
    snprintf(index, sizeof index, "%s/ci.idx", g_tmp);
    snprintf(bad, sizeof bad, "%s/bad.idx", g_tmp);
    unlink(index);
    const char *roots[] = {dir};
    search_update_params p = update_params(g_model_a, index, roots, 1, 8);
    update_ok(&p, "ci");
    assert_int_equal(run_search(NULL, "query", "--index", index, "--text", "hello", NULL), 0);

    static const char garbage[] = "this is not a safetensors file at all, just some bytes";
    write_bytes(bad, garbage, sizeof garbage - 1);
    expect_read_error(bad, QIAO_ERR_FORMAT, "bad.idx");

    size_t n;
    char *img = read_all(index, &n);
    write_bytes(bad, img, n - 100); /* truncated */
    expect_read_error(bad, QIAO_ERR_FORMAT, "bad.idx");
    free(img);

    forge(index, bad, NULL, NULL, 4); /* 5 items, 4 rows */
    expect_read_error(bad, QIAO_ERR_FORMAT, "lists 5 items");
    forge(index, bad, "\"kind\":\"audio\"", "\"kind\":\"video\"", 5);
    expect_read_error(bad, QIAO_ERR_FORMAT, "\"kind\"");
    forge(index, bad, "\"mtime_ns\":\"", "\"mtime_ns\":\"x", 5);
    expect_read_error(bad, QIAO_ERR_FORMAT, "mtime_ns");
    forge(index, bad, "\"version\":1", "\"version\":7", 5);
    expect_read_error(bad, QIAO_ERR_UNSUPPORTED, "version 7");
    forge(index, bad, "\"dim\":1024", "\"dim\":1000", 5);
    expect_read_error(bad, QIAO_ERR_FORMAT, "1024");
    forge(index, bad, "img1.jpg\"", "img0.jpg\"", 5); /* two items, one path */
    expect_read_error(bad, QIAO_ERR_FORMAT, "have the same path");
    expect_read_error(g_model_a, QIAO_ERR_FORMAT, "not a qiao search index");
    snprintf(bad, sizeof bad, "%s/does-not-exist.idx", g_tmp);
    expect_read_error(bad, QIAO_ERR_IO, "does-not-exist");

    /* --out naming the model: refused, the model left as it was. */
    size_t before_n, after_n;
    char *before = read_all(g_model_a, &before_n);
    assert_int_equal(run_search(NULL, "index", "--model", g_model_a, "--out", g_model_a, dir, NULL), 1);
    char *after = read_all(g_model_a, &after_n);
    assert_int_equal(before_n, after_n);
    assert_memory_equal(before, after, before_n);
    free(before);
    free(after);
    /* A root that does not exist is an error, not an empty index. */
    snprintf(bad, sizeof bad, "%s/no-such-folder", g_tmp);
    assert_int_equal(run_search(NULL, "index", "--model", g_model_a, "--out", index, bad, NULL), 1);
    qt_rm_rf(dir);
    unlink(index);
}

/* Rewrites the valid index at `src` to `dst` with one value of its
 * embeddings replaced. */
static void forge_value(const char *src, const char *dst, int64_t row, int64_t col, float value) {
    qc_st_file *f = NULL;
    assert_int_equal(qc_st_open(src, &f), QIAO_OK);
    const qc_st_tensor *t = qc_st_find(f, SEARCH_INDEX_TENSOR);
    assert_non_null(t);
    assert_true(row < t->shape[0] && col < t->shape[1]);
    float *rows = malloc(t->nbytes);
    assert_non_null(rows);
    memcpy(rows, t->data, t->nbytes);
    rows[row * t->shape[1] + col] = value;
    qc_st_entry e = {.name = SEARCH_INDEX_TENSOR, .dtype = QIAO_DTYPE_F32, .ndim = 2,
                     .shape = {t->shape[0], t->shape[1]}, .data = rows, .from_f32 = false};
    qc_st_kv kv = {SEARCH_INDEX_META, qc_st_metadata_get(f, SEARCH_INDEX_META)};
    assert_int_equal(qc_st_write(dst, &e, 1, &kv, 1), QIAO_OK);
    free(rows);
    qc_st_close(f);
}

/* A model whose every weight is scaled far up: its activations overflow, so
 * its embeddings are not finite (the loader accepts it: the weights are). */
static void write_overflowing_model(const char *path) {
    qmod_model *m = qt_tiny_model(3, true);
    for (size_t i = 0; i < m->arena.n; i++) m->arena.base[i] *= 1e30f;
    assert_int_equal(qmod_save(m, path, QIAO_DTYPE_F32), QIAO_OK);
    qmod_free(m);
}

/* Non-finite vectors never enter an index: a file holding one is refused
 * naming the file, the row and the item's path; the writer refuses to write
 * one; a query embedding with one is refused; and a model that embeds a file
 * as NaN gets that file reported and left out, the rest indexed. */
static void nonfinite_vectors(void **state) {
    (void)state;
    char dir[600], index[700], bad[700];
    make_media(dir, sizeof dir, "nf");
    snprintf(index, sizeof index, "%s/nf.idx", g_tmp);
    snprintf(bad, sizeof bad, "%s/nf-bad.idx", g_tmp);
    unlink(index);
    const char *roots[] = {dir};
    search_update_params p = update_params(g_model_a, index, roots, 1, 8);
    update_ok(&p, "nf");
    search_index good;
    assert_int_equal(search_index_read(index, &good), QIAO_OK);
    assert_int_equal(good.n, 5);

    char want[1100];
    forge_value(index, bad, 2, 5, NAN);
    snprintf(want, sizeof want, "row 2 (items[2], %s) holds a non-finite value (nan) at column 5", good.items[2].path);
    expect_read_error(bad, QIAO_ERR_FORMAT, want);
    assert_non_null(strstr(qiao_last_error(), "nf-bad.idx"));
    forge_value(index, bad, 0, 1023, INFINITY);
    expect_read_error(bad, QIAO_ERR_FORMAT, "row 0 (items[0]");
    forge_value(index, bad, 4, 0, -INFINITY);
    expect_read_error(bad, QIAO_ERR_FORMAT, "(-inf) at column 0");
    /* `index` refuses to build on it (and leaves it as it was). */
    search_update_params pb = update_params(g_model_a, bad, roots, 1, 8);
    search_update_stats s;
    assert_int_equal(search_update(&pb, &s), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "non-finite"));

    /* The reader from memory is the file reader's parser: same result. */
    size_t n;
    char *bytes = read_all(index, &n);
    search_index mem;
    assert_int_equal(search_index_read_memory(bytes, n, "mem.idx", &mem), QIAO_OK);
    assert_int_equal(mem.n, good.n);
    assert_memory_equal(mem.emb, good.emb, good.n * 1024 * sizeof(float));
    for (size_t i = 0; i < mem.n; i++) assert_string_equal(mem.items[i].path, good.items[i].path);
    search_index_free(&mem);
    free(bytes);
    bytes = read_all(bad, &n);
    assert_int_equal(search_index_read_memory(bytes, n, "mem.idx", &mem), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "mem.idx: tensor \"embeddings\" row 4"));
    assert_null(mem.items);
    free(bytes);

    /* Writing a NaN row: refused, nothing written. */
    good.emb[3 * 1024 + 7] = NAN;
    unlink(bad);
    assert_int_equal(search_index_write(bad, &good), QIAO_ERR_INVALID_ARGUMENT);
    printf("  write: %s\n", qiao_last_error());
    assert_non_null(strstr(qiao_last_error(), good.items[3].path));
    assert_non_null(strstr(qiao_last_error(), "row 3"));
    assert_int_equal(access(bad, F_OK), -1);

    /* A query embedding with a NaN: refused rather than ranked. */
    float q[1024];
    memcpy(q, good.emb, sizeof q);
    search_hit *hits = NULL;
    size_t nh = 0;
    assert_int_equal(search_rank(&good, q, -1, &hits, &nh), QIAO_OK);
    assert_int_equal(nh, 5);
    free(hits);
    q[100] = NAN;
    assert_int_equal(search_rank(&good, q, -1, &hits, &nh), QIAO_ERR_INVALID_ARGUMENT);
    assert_null(hits);
    search_index_free(&good);

    /* Adding: a model whose embeddings overflow. Every media file is
     * reported and left out; the index written is valid and empty. */
    char model[700];
    snprintf(model, sizeof model, "%s/overflow.safetensors", g_tmp);
    write_overflowing_model(model);
    unlink(bad);
    search_update_params po = update_params(model, bad, roots, 1, 8);
    s = update_ok(&po, "overflowing model");
    assert_int_equal(s.embedded, 0);
    assert_int_equal(s.failed, 6);
    assert_int_equal(s.images + s.audios, 0);
    search_index idx;
    assert_int_equal(search_index_read(bad, &idx), QIAO_OK);
    assert_int_equal(idx.n, 0);
    search_index_free(&idx);
    /* The same with the query: its embedding is not finite either. */
    assert_int_equal(run_search(NULL, "query", "--index", bad, "--text", "hello", NULL), 1);
    assert_non_null(strstr(qiao_last_error(), "non-finite"));
    unlink(model);
    unlink(bad);
    unlink(index);
    qt_rm_rf(dir);
}

/* Runs f(arg) with stderr going to `path`. */
static void with_stderr_to(const char *path, void (*f)(void *), void *arg) {
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, STDERR_FILENO);
    close(fd);
    f(arg);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
}

/* A FIFO, /dev/zero and a folder where the index or the model belongs: each
 * fails at once with QIAO_ERR_IO saying what the path is. Before the shared
 * reader, the model path opened a FIFO with fopen() and waited for a writer
 * forever, and /dev/zero was read until memory ran out: the alarm turns
 * such a hang into a failure. */
static void special_files(void **state) {
    (void)state;
    char dir[600], index[700], fifo[700];
    make_media(dir, sizeof dir, "sf");
    snprintf(index, sizeof index, "%s/sf.idx", g_tmp);
    snprintf(fifo, sizeof fifo, "%s/sf.fifo", g_tmp);
    unlink(index);
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0644), 0);
    const char *roots[] = {dir};
    search_update_params p = update_params(g_model_a, index, roots, 1, 8);
    update_ok(&p, "sf");
    alarm(60);
    const struct {
        const char *path, *what;
    } specials[] = {{fifo, "is a named pipe (FIFO)"}, {"/dev/zero", "is a character device"}, {dir, "is a folder"}};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) {
        const char *sp = specials[i].path, *what = specials[i].what;
        double t0 = qc_now();
        /* As an index: read, queried, updated (refused, not overwritten). */
        expect_read_error(sp, QIAO_ERR_IO, what);
        assert_non_null(strstr(qiao_last_error(), sp));
        search_update_params pi = update_params(g_model_a, sp, roots, 1, 8);
        search_update_stats s;
        assert_int_equal(search_update(&pi, &s), QIAO_ERR_IO);
        printf("  --out %s: %s\n", sp, qiao_last_error());
        assert_non_null(strstr(qiao_last_error(), what));
        assert_false(s.written);
        /* As the model: indexing, and a query's --model. */
        search_update_params pm = update_params(sp, index, roots, 1, 8);
        assert_int_equal(search_update(&pm, &s), QIAO_ERR_IO);
        printf("  --model %s: %s\n", sp, qiao_last_error());
        assert_non_null(strstr(qiao_last_error(), what));
        assert_non_null(strstr(qiao_last_error(), sp));
        assert_int_equal(run_search(NULL, "index", "--model", sp, "--out", index, dir, NULL), 1);
        assert_int_equal(run_search(NULL, "query", "--index", index, "--model", sp, "--text", "hello", NULL), 1);
        assert_non_null(strstr(qiao_last_error(), what));
        /* As a root: only a folder is a valid one. */
        if (strcmp(sp, dir) != 0) {
            const char *r[] = {sp};
            search_update_params pr = update_params(g_model_a, index, r, 1, 8);
            assert_int_equal(search_update(&pr, &s), QIAO_ERR_IO);
            printf("  root %s: %s\n", sp, qiao_last_error());
            assert_non_null(strstr(qiao_last_error(), what));
        }
        double dt = qc_now() - t0;
        printf("  %s: refused in %.2f s\n", sp, dt);
        assert_true(dt < 20);
    }
    alarm(0);
    /* The index was left as it was. */
    search_index idx;
    assert_int_equal(search_index_read(index, &idx), QIAO_OK);
    assert_int_equal(idx.n, 5);
    search_index_free(&idx);
    unlink(fifo);
    unlink(index);
    qt_rm_rf(dir);
}

static void update_verbose(void *arg) {
    search_update_stats s;
    assert_int_equal(search_update(arg, &s), QIAO_OK);
    print_stats("walk", &s);
    assert_int_equal(s.found, 2); /* the photo, and the photo through its link */
    assert_int_equal(s.embedded, 2);
}

/* `index -v` names what it passes by: a link to a character device is not
 * a link to a folder, a link loop is not a broken link. */
static void walk_messages(void **state) {
    (void)state;
    char dir[600], index[700], log[700], p[1200], sub[1100];
    make_dir(dir, sizeof dir, "wm");
    snprintf(index, sizeof index, "%s/wm.idx", g_tmp);
    snprintf(log, sizeof log, "%s/wm.log", g_tmp);
    unlink(index);
    copy_file(IMG("000000126107.jpg"), dir, "photo.jpg");
    snprintf(sub, sizeof sub, "%s/folder", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
#define LINK(target, name)                                                                                  \
    do {                                                                                                    \
        snprintf(p, sizeof p, "%s/%s", dir, name);                                                          \
        assert_int_equal(symlink(target, p), 0);                                                            \
    } while (0)
    LINK("/dev/zero", "zero");
    LINK("loop-b", "loop-a");
    LINK("loop-a", "loop-b");
    LINK("self", "self");
    LINK("no-such-file.jpg", "dangling");
    LINK("folder", "folder-link");
    LINK("photo.jpg", "photo-link.jpg");
#undef LINK
    snprintf(p, sizeof p, "%s/pipe", dir);
    assert_int_equal(mkfifo(p, 0644), 0);

    const char *roots[] = {dir};
    search_update_params up = update_params(g_model_a, index, roots, 1, 8);
    up.verbose = 1;
    alarm(60); /* a FIFO under the root must not be opened */
    with_stderr_to(log, update_verbose, &up);
    alarm(0);
    char *text = read_all(log, NULL);
    assert_non_null(text);
    printf("%s", text);
    char *rdir = realpath(dir, NULL); /* the walk names what it finds under the root's real path */
    assert_non_null(rdir);
    static const char *const want[][2] = {
        {"/zero", ": symbolic link to a character device, not followed"},
        {"/loop-a", ": symbolic link loop (ELOOP; -> loop-b), skipped"},
        {"/loop-b", ": symbolic link loop (ELOOP; -> loop-a), skipped"},
        {"/self", ": symbolic link loop (ELOOP; -> self), skipped"},
        {"/dangling", ": dangling symbolic link (-> no-such-file.jpg: No such file or directory), skipped"},
        {"/folder-link", ": symbolic link to a folder, not followed"},
        {"/pipe", ": a named pipe (FIFO), skipped"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char line[1400];
        snprintf(line, sizeof line, "qiao search: %s%s%s\n", rdir, want[i][0], want[i][1]);
        if (!strstr(text, line)) fail_msg("missing: %s", line);
    }
    assert_null(strstr(text, "broken"));
    free(rdir);
    free(text);
    unlink(log);
    unlink(index);
    qt_rm_rf(dir);
}

static void usage_errors(void **state) {
    (void)state;
    assert_int_equal(run_search(NULL, NULL), 2);
    assert_int_equal(run_search(NULL, "frobnicate", NULL), 2);
    assert_int_equal(run_search(NULL, "index", "--model", g_model_a, "some/dir", NULL), 2);
    assert_int_equal(run_search(NULL, "index", "--model", g_model_a, "--out", "x.idx", NULL), 2);
    assert_int_equal(run_search(NULL, "index", "--model", g_model_a, "--out", "x.idx", "--batch", "0", ".", NULL), 2);
    assert_int_equal(run_search(NULL, "query", "--index", "x.idx", NULL), 2);
    assert_int_equal(run_search(NULL, "query", "--index", "x.idx", "--text", "a", "--image", "b.jpg", NULL), 2);
    assert_int_equal(run_search(NULL, "query", "--index", "x.idx", "--text", "a", "--top", "0", NULL), 2);
    assert_int_equal(run_search(NULL, "query", "--index", "x.idx", "--text", "a", "--kind", "video", NULL), 2);
    assert_int_equal(run_search(NULL, "--help", NULL), 0);
}

/* Documents from text files (--texts): one per line, keyed FILE:LINE, blank
 * lines skipped, a line that is not UTF-8 reported and skipped, a file
 * named twice read once; a query equal to a line finds it first among the
 * texts (--kind text); a rerun makes the index hold exactly what it names
 * (lines gone, files not named any more, removed); a missing text file is
 * an error before any work. */
static void texts(void **state) {
    (void)state;
    char dir[600], index[700], docs[700], out[700], key[1100];
    make_media(dir, sizeof dir, "tx");
    snprintf(index, sizeof index, "%s/tx.idx", g_tmp);
    snprintf(docs, sizeof docs, "%s/docs.txt", g_tmp);
    snprintf(out, sizeof out, "%s/tx.out", g_tmp);
    unlink(index);
    static const char lines[] = "a red circle in the top left corner\n"
                                "\n"
                                "two blue squares side by side\r\n"
                                "ab\xff" "cd\n"
                                "一只黄色的三角形在右下角"; /* no end of line */
    write_bytes(docs, lines, sizeof lines - 1);
    assert_int_equal(run_search(out, "index", "--model", g_model_a, "--out", index, "--texts", docs, "--texts", docs,
                                "--batch", "2", dir, NULL),
                     0);
    char *text = read_all(out, NULL);
    printf("%s", text);
    assert_non_null(strstr(text, "5 files (3 images, 2 audio): 5 embedded"));
    assert_non_null(strstr(text, "; 3 texts: 3 embedded, 0 removed, 1 lines not indexed"));
    free(text);

    cJSON *j = query_json(index, "--text", "two blue squares side by side", "5", "text");
    assert_int_equal(n_results(j), 3);
    char *abs = realpath(docs, NULL);
    assert_non_null(abs);
    snprintf(key, sizeof key, "%s:3", abs);
    assert_string_equal(result_str(j, 0, "path"), key);
    assert_string_equal(result_str(j, 0, "kind"), "text");
    assert_true(result_score(j, 0) > 0.9999);
    cJSON_Delete(j);
    j = query_json(index, "--text", "一只黄色的三角形在右下角", "1", NULL); /* every kind: the line still first */
    snprintf(key, sizeof key, "%s:5", abs);
    assert_string_equal(result_str(j, 0, "path"), key);
    cJSON_Delete(j);

    /* The file shrinks and the folder is no longer named. */
    static const char fewer[] = "two blue squares side by side\n一只黄色的三角形在右下角\n";
    write_bytes(docs, fewer, sizeof fewer - 1);
    assert_int_equal(run_search(out, "index", "--model", g_model_a, "--out", index, "--texts", docs, NULL), 0);
    text = read_all(out, NULL);
    printf("%s", text);
    assert_non_null(strstr(text, "0 files (0 images, 0 audio): 0 embedded, 0 unchanged, 5 removed"));
    assert_non_null(strstr(text, "; 2 texts: 2 embedded, 2 removed"));
    free(text);
    search_index idx;
    assert_int_equal(search_index_read(index, &idx), QIAO_OK);
    assert_int_equal(idx.n, 2);
    snprintf(key, sizeof key, "%s:1", abs);
    assert_string_equal(idx.items[0].path, key);
    assert_int_equal(idx.items[0].kind, SEARCH_TEXT);
    assert_false(idx.items[0].is_file);
    assert_string_equal(idx.fp.space, "tiny");
    search_index_free(&idx);

    /* A text file that is not there: nothing is done. */
    char missing[700];
    snprintf(missing, sizeof missing, "%s/no-such-docs.txt", g_tmp);
    assert_int_equal(run_search(NULL, "index", "--model", g_model_a, "--out", index, "--texts", missing, NULL), 1);
    assert_non_null(strstr(qiao_last_error(), "no-such-docs.txt"));
    assert_int_equal(search_index_read(index, &idx), QIAO_OK);
    assert_int_equal(idx.n, 2);
    search_index_free(&idx);
    /* Usage: --texts needs its file; texts alone need no PATH; --kind text is known. */
    assert_int_equal(run_search(NULL, "index", "--model", g_model_a, "--out", index, "--texts", NULL), 2);
    j = query_json(index, "--text", "squares", "5", "text");
    assert_int_equal(n_results(j), 2);
    cJSON_Delete(j);
    free(abs);
    unlink(docs);
    unlink(index);
    qt_rm_rf(dir);
}

/* ---- setup ------------------------------------------------------------------------ */

static int group_setup(void **state) {
    (void)state;
    const char *dir = getenv("TMPDIR");
    snprintf(g_tmp, sizeof g_tmp, "%s/qiao_test_search_XXXXXX", dir && *dir ? dir : "/tmp");
    if (!mkdtemp(g_tmp)) return -1;
    snprintf(g_model_a, sizeof g_model_a, "%s/model_a.safetensors", g_tmp);
    snprintf(g_model_b, sizeof g_model_b, "%s/model_b.safetensors", g_tmp);
    qt_write_tiny_model(g_model_a, 1, true);
    qt_write_tiny_model(g_model_b, 2, true);
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    qt_rm_rf(g_tmp);
    return 0;
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(index_and_query), cmocka_unit_test(reindex),       cmocka_unit_test(model_change),
        cmocka_unit_test(interrupt_resume), cmocka_unit_test(cancel_resume), cmocka_unit_test(corrupt_index),
        cmocka_unit_test(nonfinite_vectors), cmocka_unit_test(special_files), cmocka_unit_test(walk_messages),
        cmocka_unit_test(usage_errors), cmocka_unit_test(texts),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
