/* tests/unit/test_special_files.c - every function that reads a path,
 * given something that is not a regular file: a named pipe with no writer
 * (open() for reading used to block forever), a folder, /dev/zero (reads
 * forever), /dev/null, a symbolic link to a pipe. Each call runs in a forked
 * child under an alarm, so a hang fails the test instead of stalling it;
 * the child also checks the status and that the message says what the path
 * is. */
#define _GNU_SOURCE

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "datasets/intent/intent.h"
#include "model_fixture.h"
#include "models/data/data.h"
#include "models/data/vqa.h"

#define BASE_MODEL QIAO_SOURCE_DIR "/models/qiao-base.safetensors"

static char dir[64];
static char fifo[128], link_to_fifo[128], subdir[128], fifo_dir[128], vqa_dir[128];

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/qiao_special_XXXXXX");
    if (!mkdtemp(dir)) return -1;
    snprintf(fifo, sizeof fifo, "%s/pipe", dir);
    snprintf(link_to_fifo, sizeof link_to_fifo, "%s/link", dir);
    snprintf(subdir, sizeof subdir, "%s/folder", dir);
    /* A dataset folder whose manifest is a pipe. */
    snprintf(fifo_dir, sizeof fifo_dir, "%s/data", dir);
    char manifest[192];
    snprintf(manifest, sizeof manifest, "%s/manifest.jsonl", fifo_dir);
    if (mkfifo(fifo, 0600) != 0 || symlink(fifo, link_to_fifo) != 0 || mkdir(subdir, 0700) != 0 ||
        mkdir(fifo_dir, 0700) != 0 || mkfifo(manifest, 0600) != 0)
        return -1;
    /* The VQA reader reads dataset.json first: fifo_dir's is a file (so its
     * manifest pipe is reached), vqa_dir's a pipe. */
    char desc[192];
    snprintf(desc, sizeof desc, "%s/dataset.json", fifo_dir);
    FILE *f = fopen(desc, "wb");
    if (!f || fputs("{\"answers\": [{\"id\": \"yes\"}], \"question_types\": [\"exist\"]}", f) < 0 || fclose(f) != 0)
        return -1;
    snprintf(vqa_dir, sizeof vqa_dir, "%s/vqa", dir);
    snprintf(desc, sizeof desc, "%s/dataset.json", vqa_dir);
    if (mkdir(vqa_dir, 0700) != 0 || mkfifo(desc, 0600) != 0) return -1;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

typedef enum { PIPE, FOLDER, ZERO, NUL, LINK, N_KINDS } kind;
static const char *kind_name[N_KINDS] = {"pipe", "folder", "/dev/zero", "/dev/null", "link to a pipe"};

static const char *path_of(kind k) {
    switch (k) {
    case PIPE: return fifo;
    case FOLDER: return subdir;
    case ZERO: return "/dev/zero";
    case NUL: return "/dev/null";
    default: return link_to_fifo;
    }
}

/* What the message must say for each kind. */
static const char *expected_words(kind k) {
    switch (k) {
    case PIPE:
    case LINK: return "named pipe";
    case FOLDER: return "folder";
    default: return "character device";
    }
}

typedef qiao_status (*reader_fn)(const char *path);

/* Runs fn(path) in a child with a 20 s alarm; the child exits 0 when the
 * call failed with `want` and a message naming the path and its kind. */
static void expect_refused(const char *what, reader_fn fn, kind k, qiao_status want) {
    const char *path = path_of(k);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(20);
        qiao_status st = fn(path);
        const char *msg = qiao_last_error();
        int ok = st == want && strstr(msg, path) && strstr(msg, expected_words(k));
        if (!ok)
            fprintf(stderr, "%s(%s): %s (want %s): %s\n", what, kind_name[k], qiao_status_str(st),
                    qiao_status_str(want), msg);
        _exit(ok ? 0 : 1);
    }
    int ws = 0;
    assert_true(waitpid(pid, &ws, 0) == pid);
    if (WIFSIGNALED(ws))
        fail_msg("%s(%s): %s", what, kind_name[k],
                 WTERMSIG(ws) == SIGALRM ? "hung (still blocked after 20 s)" : strsignal(WTERMSIG(ws)));
    if (WEXITSTATUS(ws) != 0) fail_msg("%s(%s): wrong status or message (see above)", what, kind_name[k]);
}

static void expect_all_refused(const char *what, reader_fn fn) {
    for (int k = 0; k < N_KINDS; k++) expect_refused(what, fn, (kind)k, QIAO_ERR_IO);
}

/* ---- the readers -------------------------------------------------------------------- */

static qiao_status image_file(const char *p) {
    qiao_image *img = NULL;
    qiao_status st = qiao_image_decode_file(p, NULL, &img);
    qiao_image_free(img);
    return st;
}

static qiao_status video_file(const char *p) {
    qiao_image **frames = NULL;
    size_t n = 0;
    qiao_status st = qiao_image_decode_video_frames(p, NULL, &frames, &n);
    qiao_image_frames_free(frames, n);
    return st;
}

static qiao_status audio_file(const char *p) {
    qiao_audio *a = NULL;
    qiao_status st = qiao_audio_decode_file(p, NULL, &a);
    qiao_audio_free(a);
    return st;
}

static qiao_status model_load(const char *p) {
    qiao_model *m = NULL;
    qiao_status st = qiao_model_load(p, &m);
    qiao_model_free(m);
    return st;
}

static qiao_status model_file_open(const char *p) {
    qiao_model_file *f = NULL;
    qiao_status st = qiao_model_file_open(p, &f);
    qiao_model_file_close(f);
    return st;
}

static qiao_status tokenizer_load(const char *p) {
    qiao_tokenizer *t = NULL;
    qiao_status st = qiao_tokenizer_load(p, &t);
    qiao_tokenizer_free(t);
    return st;
}

static qiao_status tokenizer_train(const char *p) {
    qiao_tokenizer_train_params tp = qiao_tokenizer_train_default_params();
    char out[192];
    snprintf(out, sizeof out, "%s/never-written.safetensors", dir);
    tp.corpus_path = p;
    tp.out_path = out;
    return qiao_tokenizer_train(&tp);
}

static qiao_status model_config(const char *p) {
    qmod_config c;
    qiao_status st = qmod_config_from_file(p, &c);
    if (st == QIAO_OK) qmod_config_free(&c);
    return st;
}

static qiao_status intent_file(const char *p) {
    char *data = NULL;
    size_t len = 0;
    qiao_status st = qint_read_file(p, &data, &len);
    free(data);
    return st;
}

/* The embedding calls read through a session of the shipped model. */
static qiao_session *session;

static qiao_status embed_image_file(const char *p) {
    float v[1024];
    return qiao_embed_image_file(session, p, v, 1024);
}

static qiao_status embed_audio_file(const char *p) {
    float v[1024];
    return qiao_embed_audio_file(session, p, v, 1024);
}

/* ---- tests ---------------------------------------------------------------------------- */

static void media_files(void **state) {
    (void)state;
    expect_all_refused("qiao_image_decode_file", image_file);
    expect_all_refused("qiao_image_decode_video_frames", video_file);
    expect_all_refused("qiao_audio_decode_file", audio_file);
}

static void model_and_tokenizer_files(void **state) {
    (void)state;
    expect_all_refused("qiao_model_load", model_load);
    expect_all_refused("qiao_model_file_open", model_file_open);
    expect_all_refused("qiao_tokenizer_load", tokenizer_load);
    expect_all_refused("qiao_tokenizer_train", tokenizer_train);
    expect_all_refused("qmod_config_from_file", model_config);
    expect_all_refused("qint_read_file", intent_file);
}

static void embedding_files(void **state) {
    (void)state;
    qiao_model *m = NULL;
    if (qiao_model_load(BASE_MODEL, &m) != QIAO_OK) fail_msg("%s: %s", BASE_MODEL, qiao_last_error());
    assert_int_equal(qiao_session_new(m, NULL, &session), QIAO_OK);
    expect_all_refused("qiao_embed_image_file", embed_image_file);
    expect_all_refused("qiao_embed_audio_file", embed_audio_file);
    qiao_session_free(session);
    session = NULL;
    qiao_model_free(m);
}

static qiao_status retrieval_data(const char *d) {
    qmod_dataset x;
    qiao_status st = qmod_dataset_load(d, &x);
    if (st == QIAO_OK) qmod_dataset_free(&x);
    return st;
}

static qiao_status vqa_data(const char *d) {
    qmod_vqa_dataset x;
    qiao_status st = qmod_vqa_dataset_load(d, &x);
    if (st == QIAO_OK) qmod_vqa_dataset_free(&x);
    return st;
}

/* fn(d) in a child under an alarm must fail with QIAO_ERR_IO saying
 * "named pipe". */
static void expect_pipe_refused(reader_fn fn, const char *d) {
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(20);
        qiao_status st = fn(d);
        _exit(st == QIAO_ERR_IO && strstr(qiao_last_error(), "named pipe") ? 0 : 1);
    }
    int ws = 0;
    assert_true(waitpid(pid, &ws, 0) == pid);
    assert_true(WIFEXITED(ws));
    assert_int_equal(WEXITSTATUS(ws), 0);
}

/* A training data folder whose manifest.jsonl is a pipe (the retrieval and
 * the VQA readers), and one whose dataset.json is (the VQA reader). */
static void dataset_manifest(void **state) {
    (void)state;
    expect_pipe_refused(retrieval_data, fifo_dir);
    expect_pipe_refused(vqa_data, fifo_dir);
    expect_pipe_refused(vqa_data, vqa_dir);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

static const struct CMUnitTest tests[] = {
    T(media_files),
    T(model_and_tokenizer_files),
    T(embedding_files),
    T(dataset_manifest),
};

QT_MAIN(tests)
