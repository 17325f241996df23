/* Memory limits (issue 12): for each modality, a child process runs the
 * public API under an address-space limit (RLIMIT_AS) with an input too big
 * for it, and must come back with QIAO_ERR_OUT_OF_MEMORY within seconds. A
 * hang is a failure: the parent kills the child after LIMIT_TIMEOUT_S.
 *
 * Each case runs its child twice: once with room to spare, which must
 * succeed (so the limit, not a broken setup, is what the second run meets),
 * and once with `tight` bytes above what the process has mapped when the
 * limit is set. The limits are relative to the child's own address space at
 * that moment, so they hold whatever the libraries mapped at load.
 *
 *   text_blas_buffer   unpacked weights: every linear layer goes to OpenBLAS,
 *                      whose first GEMM needs a 128 MiB work buffer that does
 *                      not fit (it used to retry malloc forever: defect 2)
 *   image_png          a valid 8192x8192 PNG whose pixels do not fit (stb
 *                      used to call it corrupt: defect 5)
 *   audio_blas_buffer  the longest clip the model reads, on two threads, as
 *                      in `qiao embed --audio` under `ulimit -v` (defect 2)
 *
 * Every child is forked from a parent that has not called OpenBLAS, so no
 * child inherits a buffer that would let it through. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "qiao.h"
#include "testutil.h"

#define BASE_MODEL QIAO_SOURCE_DIR "/models/qiao-base.safetensors"
#define BIG_PNG QIAO_TEST_DATA "/image/black-8192x8192.png"
#define LIMIT_TIMEOUT_S 30
#define MIB ((size_t)1 << 20)

/* RLIMIT_AS cannot work under AddressSanitizer: its shadow memory reserves
 * terabytes of address space at start, so any limit fails every mmap. */
#if defined(__SANITIZE_ADDRESS__)
#define QT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define QT_ASAN 1
#endif
#endif

/* The child's exit codes. */
enum { CHILD_OK = 0, CHILD_OOM = 1, CHILD_OTHER = 2, CHILD_SETUP = 3 };

/* Bytes of address space the calling process has mapped (VmSize). */
static size_t mapped_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    size_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmSize:", 7)) kb = (size_t)strtoull(line + 7, NULL, 10);
    fclose(f);
    return kb * 1024;
}

/* What a case does in the child: prepare() loads and builds everything
 * (with no limit yet), run() is the call that meets the limit. */
typedef struct limit_case {
    int pack_weights;
    int n_threads;
    qiao_status (*prepare)(void **input);
    qiao_status (*run)(qiao_session *s, void *input, float *out, size_t out_len);
} limit_case;

static void child(const limit_case *c, size_t room) {
    qiao_model_params mp = qiao_model_default_params();
    mp.pack_weights = c->pack_weights;
    qiao_model *m = NULL;
    qiao_session *s = NULL;
    qiao_session_params sp = qiao_session_default_params();
    sp.n_threads = c->n_threads;
    void *input = NULL;
    if (qiao_model_load_with(BASE_MODEL, &mp, &m) != QIAO_OK || qiao_session_new(m, &sp, &s) != QIAO_OK ||
        c->prepare(&input) != QIAO_OK) {
        fprintf(stderr, "child setup: %s\n", qiao_last_error());
        _exit(CHILD_SETUP);
    }
    const size_t dim = (size_t)qiao_model_dim(m);
    float *out = malloc(dim * sizeof(float));
    struct rlimit rl = {mapped_bytes() + room, RLIM_INFINITY};
    if (!out || rl.rlim_cur == room || setrlimit(RLIMIT_AS, &rl) != 0) {
        fprintf(stderr, "child: cannot set the limit: %s\n", strerror(errno));
        _exit(CHILD_SETUP);
    }
    qiao_status st = c->run(s, input, out, dim);
    if (st != QIAO_OK) fprintf(stderr, "child (%zu MiB of room): %s: %s\n", room / MIB, qiao_status_str(st),
                               qiao_last_error());
    _exit(st == QIAO_OK ? CHILD_OK : st == QIAO_ERR_OUT_OF_MEMORY ? CHILD_OOM : CHILD_OTHER);
}

/* Runs the case in a child with `room` bytes of address space to spare and
 * returns its exit code, or fails the test if it does not end in time. */
static int run_child(const limit_case *c, size_t room, double *seconds) {
    fflush(NULL);
    const double t0 = qc_now();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) child(c, room);
    int status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        assert_true(w >= 0);
        if (w == pid) break;
        if (qc_now() - t0 > LIMIT_TIMEOUT_S) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("the child with %zu MiB of room did not end in %d s (a hang)", room / MIB, LIMIT_TIMEOUT_S);
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    *seconds = qc_now() - t0;
    if (!WIFEXITED(status)) fail_msg("the child with %zu MiB of room died (signal %d)", room / MIB, WTERMSIG(status));
    return WEXITSTATUS(status);
}

static void check_case(const limit_case *c, size_t tight) {
#ifdef QT_ASAN
    (void)c;
    (void)tight;
    (void)run_child; /* kept compiled, so the sanitizer build still checks it */
    skip();
#else
    double secs = 0.0;
    int code = run_child(c, (size_t)4096 * MIB, &secs);
    assert_int_equal(code, CHILD_OK);
    code = run_child(c, tight, &secs);
    printf("  %zu MiB of room: exit %d after %.2f s\n", tight / MIB, code, secs);
    assert_int_equal(code, CHILD_OOM);
#endif
}

/* ---- text ------------------------------------------------------------------ */

static qiao_status text_prepare(void **input) {
    /* More words than the model reads: the work is bounded by its tokens. */
    const char *word = "the quick brown fox jumps over the lazy dog ";
    const size_t n = 4096, len = strlen(word);
    char *t = malloc(n * len + 1);
    if (!t) return QIAO_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; i < n; i++) memcpy(t + i * len, word, len);
    t[n * len] = '\0';
    *input = t;
    return QIAO_OK;
}

static qiao_status text_run(qiao_session *s, void *input, float *out, size_t out_len) {
    return qiao_embed_text(s, input, out, out_len);
}

static void text_blas_buffer(void **state) {
    (void)state;
    const limit_case c = {0, 2, text_prepare, text_run};
    check_case(&c, 64 * MIB);
}

/* ---- images ---------------------------------------------------------------- */

static qiao_status no_prepare(void **input) {
    *input = NULL;
    return QIAO_OK;
}

static qiao_status png_run(qiao_session *s, void *input, float *out, size_t out_len) {
    (void)input;
    return qiao_embed_image_file(s, BIG_PNG, out, out_len);
}

static void image_png(void **state) {
    (void)state;
    const limit_case c = {1, 2, no_prepare, png_run};
    /* the pixels alone are 192 MiB as RGB */
    check_case(&c, 128 * MIB);
}

/* ---- audio ----------------------------------------------------------------- */

static qiao_status audio_prepare(void **input) {
    /* 30 s at 16 kHz: past the base model's 2560 frames, so its attention
     * runs at its full 160 tokens (GEMMs above OpenBLAS's small size). */
    const int64_t n = 30 * 16000;
    float *pcm = malloc((size_t)n * sizeof(float));
    if (!pcm) return QIAO_ERR_OUT_OF_MEMORY;
    for (int64_t i = 0; i < n; i++) pcm[i] = 0.3f * sinf(2.0f * 3.14159265f * 440.0f * (float)i / 16000.0f);
    qiao_audio *a = NULL;
    qiao_status st = qiao_audio_from_pcm(pcm, n, 16000, 1, NULL, &a);
    free(pcm);
    *input = a;
    return st;
}

static qiao_status audio_run(qiao_session *s, void *input, float *out, size_t out_len) {
    return qiao_embed_audio(s, input, out, out_len);
}

static void audio_blas_buffer(void **state) {
    (void)state;
    const limit_case c = {1, 2, audio_prepare, audio_run};
    check_case(&c, 64 * MIB);
}

QT_MAIN(((const struct CMUnitTest[]){
    cmocka_unit_test(text_blas_buffer),
    cmocka_unit_test(image_png),
    cmocka_unit_test(audio_blas_buffer),
}))
