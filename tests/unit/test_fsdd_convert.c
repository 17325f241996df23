/* fsdd_convert (datasets/fsdd/fsdd.h) called directly, on a made-up source
 * tree as test_fsdd's (3 speakers x 10 digits x 7 takes, plus a README the
 * converter must ignore); test_fsdd runs the same conversion through
 * `qiao dataset fsdd`.
 *
 *   manifests  the default split: stats (counts, speakers, the absolute
 *              recordings path), the exact first line of each split, every
 *              split sorted by speaker, digit, take (take 10 after take 9)
 *   progress   the callback sees every line once, in split order, with the
 *              total; a nonzero return cancels: the split being written is
 *              removed (no temporary left), the one before stays complete
 *   holdout    another held-out speaker; none (NULL) removes a speaker/
 *              manifest left by an earlier run
 *   errors     NULL and empty directories, a bad struct_size, an output path
 *              too long, a missing source, an unknown or only speaker, a
 *              badly named clip, no clip: each a status and a message naming
 *              the cause, and nothing written */
#define _XOPEN_SOURCE 700 /* realpath, mkdtemp */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fsdd/fsdd.h"
#include "testfs.h"
#include "testutil.h"

static const char *const k_spk[3] = {"alice", "bob", "theo"};

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void make_tmpdir(char *buf, size_t cap) {
    snprintf(buf, cap, "/tmp/qiao-fsdd-convert-XXXXXX");
    assert_non_null(mkdtemp(buf));
}

static void touch(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

/* root/recordings/<d>_<speaker>_<take>.wav for digits 0-9 and takes
 * 0..takes-1 (the converter reads names, not audio), and a README. */
static void fake_fsdd(const char *root, const char *const *speakers, int n_speakers, int takes) {
    char path[512];
    snprintf(path, sizeof path, "%s/recordings", root);
    assert_int_equal(mkdir(root, 0777) == 0 || exists(root), 1);
    assert_int_equal(mkdir(path, 0777), 0);
    for (int s = 0; s < n_speakers; s++)
        for (int d = 0; d < 10; d++)
            for (int t = 0; t < takes; t++) {
                snprintf(path, sizeof path, "%s/recordings/%d_%s_%d.wav", root, d, speakers[s], t);
                touch(path, "RIFF");
            }
    snprintf(path, sizeof path, "%s/recordings/README.txt", root);
    touch(path, "not a recording\n");
}

/* The lines of out/<split>/manifest.jsonl (NUL-terminated, in one buffer
 * freed with lines[0] - or NULL with n 0), their number in *n. */
static char **read_lines(const char *out, const char *split, int64_t *n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s/manifest.jsonl", out, split);
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    buf[len] = 0;
    assert_true(len > 0 && buf[len - 1] == '\n'); /* every line ends with a newline */
    char **lines = malloc(((size_t)len + 1) * sizeof *lines);
    assert_non_null(lines);
    *n = 0;
    for (char *p = buf; *p;) {
        char *nl = strchr(p, '\n');
        *nl = 0;
        lines[(*n)++] = p;
        p = nl + 1;
    }
    if (*n == 0) free(buf);
    return lines;
}

static void free_lines(char **lines, int64_t n) {
    if (n) free(lines[0]);
    free(lines);
}

/* Speaker, digit and take of a line's id "fsdd-<d>_<speaker>_<take>". */
static void id_of(const char *line, int *digit, char *speaker, long *take) {
    const char *id = strstr(line, "\"id\":\"fsdd-");
    assert_non_null(id);
    char spk[64];
    assert_int_equal(sscanf(id + 11, "%d_%63[a-z]_%ld", digit, spk, take), 3);
    strcpy(speaker, spk);
}

/* Every line in (speaker, digit, take) order: numeric takes, so 10 follows 9. */
static void check_sorted(char **lines, int64_t n) {
    for (int64_t i = 1; i < n; i++) {
        int d0, d1;
        long t0, t1;
        char s0[64], s1[64];
        id_of(lines[i - 1], &d0, s0, &t0);
        id_of(lines[i], &d1, s1, &t1);
        const int c = strcmp(s0, s1);
        assert_true(c < 0 || (c == 0 && (d0 < d1 || (d0 == d1 && t0 < t1))));
    }
}

static void manifests(void **state) {
    (void)state;
    char root[64], src[128], out[128], want[PATH_MAX + 512];
    make_tmpdir(root, sizeof root);
    snprintf(src, sizeof src, "%s/src", root);
    snprintf(out, sizeof out, "%s/out/deeper", root); /* created with its parents */
    fake_fsdd(src, k_spk, 3, 11);
    fsdd_stats s;
    assert_int_equal(fsdd_convert(src, out, NULL, &s), QIAO_OK);
    /* theo held out: train = 2 speakers x 10 digits x takes 5-10; test = takes 0-4 */
    assert_int_equal(s.clips[FSDD_TRAIN], 120);
    assert_int_equal(s.clips[FSDD_TEST], 100);
    assert_int_equal(s.clips[FSDD_SPEAKER], 110);
    assert_int_equal(s.n_speakers, 3);
    assert_string_equal(s.speakers, "alice, bob, theo");
    char abs_rec[PATH_MAX + 16], abs_src[PATH_MAX];
    assert_non_null(realpath(src, abs_src));
    snprintf(abs_rec, sizeof abs_rec, "%s/recordings", abs_src);
    assert_string_equal(s.recordings, abs_rec);

    static const char *const first[FSDD_N_SPLITS][4] = {
        /* id suffix, digit, speaker, take */
        {"0_alice_5", "0", "alice", "5"},
        {"0_alice_0", "0", "alice", "0"},
        {"0_theo_0", "0", "theo", "0"},
    };
    for (int k = 0; k < FSDD_N_SPLITS; k++) {
        int64_t n;
        char **lines = read_lines(out, fsdd_split_name(k), &n);
        assert_int_equal(n, s.clips[k]);
        snprintf(want, sizeof want,
                 "{\"id\":\"fsdd-%s\",\"digit\":%s,\"speaker\":\"%s\",\"take\":%s,"
                 "\"captions\":{\"zh\":[\"零\"],\"en\":[\"zero\"]},"
                 "\"speech\":{\"captions\":{\"en\":[\"%s/%s.wav\"]}}}",
                 first[k][0], first[k][1], first[k][2], first[k][3], abs_rec, first[k][0]);
        assert_string_equal(lines[0], want);
        check_sorted(lines, n);
        free_lines(lines, n);
    }
    /* stats may be NULL; a rerun overwrites */
    assert_int_equal(fsdd_convert(src, out, NULL, NULL), QIAO_OK);
    assert_null(fsdd_split_name(FSDD_N_SPLITS));
    qt_rm_rf(root);
}

typedef struct seen {
    int64_t calls, last_done, total, cancel_at;
    int split; /* index of the last split reported */
    int bad;   /* a call out of order */
} seen;

static int on_progress(const char *split, int64_t done, int64_t total, void *user) {
    seen *s = user;
    int k = 0;
    while (k < FSDD_N_SPLITS && strcmp(split, fsdd_split_name(k))) k++;
    if (k == FSDD_N_SPLITS || k < s->split || done != s->last_done + 1 || total != s->total) s->bad = 1;
    s->split = k;
    s->last_done = done;
    s->calls++;
    return done == s->cancel_at;
}

static void progress(void **state) {
    (void)state;
    char root[64], src[128], out[128], path[256];
    make_tmpdir(root, sizeof root);
    snprintf(src, sizeof src, "%s/src", root);
    snprintf(out, sizeof out, "%s/out", root);
    fake_fsdd(src, k_spk, 3, 7);
    fsdd_params p = fsdd_default_params();
    seen sn = {.total = 210, .cancel_at = -1};
    p.progress = on_progress;
    p.user_data = &sn;
    assert_int_equal(fsdd_convert(src, out, &p, NULL), QIAO_OK);
    assert_int_equal(sn.calls, 210);
    assert_int_equal(sn.last_done, 210);
    assert_int_equal(sn.split, FSDD_SPEAKER);
    assert_false(sn.bad);

    /* Cancelled in the test split (train has 40 lines, written first). */
    qt_rm_rf(out);
    seen sc = {.total = 210, .cancel_at = 50};
    p.user_data = &sc;
    assert_int_equal(fsdd_convert(src, out, &p, NULL), QIAO_ERR_CANCELLED);
    assert_non_null(strstr(qiao_last_error(), "cancelled"));
    assert_int_equal(sc.calls, 50);
    int64_t n;
    char **lines = read_lines(out, "train", &n);
    assert_int_equal(n, 40);
    free_lines(lines, n);
    snprintf(path, sizeof path, "%s/test/manifest.jsonl", out);
    assert_false(exists(path));
    snprintf(path, sizeof path, "%s/test/manifest.jsonl.tmp", out);
    assert_false(exists(path));
    snprintf(path, sizeof path, "%s/speaker", out);
    assert_false(exists(path));
    qt_rm_rf(root);
}

static void holdout(void **state) {
    (void)state;
    char root[64], src[128], out[128], path[256];
    make_tmpdir(root, sizeof root);
    snprintf(src, sizeof src, "%s/src", root);
    snprintf(out, sizeof out, "%s/out", root);
    fake_fsdd(src, k_spk, 3, 7);
    fsdd_params p = fsdd_default_params();
    p.holdout_speaker = "bob";
    fsdd_stats s;
    assert_int_equal(fsdd_convert(src, out, &p, &s), QIAO_OK);
    assert_int_equal(s.clips[FSDD_SPEAKER], 70);
    int64_t n;
    char **lines = read_lines(out, "speaker", &n);
    for (int64_t i = 0; i < n; i++) assert_non_null(strstr(lines[i], "\"speaker\":\"bob\""));
    free_lines(lines, n);
    lines = read_lines(out, "train", &n);
    for (int64_t i = 0; i < n; i++) assert_null(strstr(lines[i], "\"speaker\":\"bob\""));
    free_lines(lines, n);

    /* None held out: the upstream split, and the earlier speaker/ manifest
     * is gone (it would overlap train and test). */
    p.holdout_speaker = NULL;
    assert_int_equal(fsdd_convert(src, out, &p, &s), QIAO_OK);
    assert_int_equal(s.clips[FSDD_TRAIN], 60);
    assert_int_equal(s.clips[FSDD_TEST], 150);
    assert_int_equal(s.clips[FSDD_SPEAKER], 0);
    snprintf(path, sizeof path, "%s/speaker/manifest.jsonl", out);
    assert_false(exists(path));
    qt_rm_rf(root);
}

/* Converting fails with `want`, a message containing `msg`, and writes no
 * output folder. */
static void expect_fail(const char *src, const char *out, const fsdd_params *p, qiao_status want, const char *msg) {
    assert_int_equal(fsdd_convert(src, out, p, NULL), want);
    if (!strstr(qiao_last_error(), msg)) fail_msg("message '%s' lacks '%s'", qiao_last_error(), msg);
    if (out && out[0] && exists(out)) fail_msg("%s was created", out);
}

static void errors(void **state) {
    (void)state;
    char root[64], src[128], out[128], path[512];
    make_tmpdir(root, sizeof root);
    snprintf(src, sizeof src, "%s/src", root);
    snprintf(out, sizeof out, "%s/out", root);
    fake_fsdd(src, k_spk, 3, 7);

    expect_fail(NULL, out, NULL, QIAO_ERR_INVALID_ARGUMENT, "NULL or empty");
    expect_fail(src, "", NULL, QIAO_ERR_INVALID_ARGUMENT, "NULL or empty");
    fsdd_params p = fsdd_default_params();
    p.struct_size = 0;
    expect_fail(src, out, &p, QIAO_ERR_INVALID_ARGUMENT, "fsdd_default_params");

    /* An output path that cannot hold speaker/manifest.jsonl.tmp. */
    char *longp = malloc(PATH_MAX);
    assert_non_null(longp);
    memset(longp, 'x', PATH_MAX - 10);
    longp[0] = '/';
    longp[PATH_MAX - 10] = 0;
    expect_fail(src, longp, NULL, QIAO_ERR_INVALID_ARGUMENT, "output path too long");
    free(longp);

    snprintf(path, sizeof path, "%s/no-such", root);
    expect_fail(path, out, NULL, QIAO_ERR_IO, "no-such");

    p = fsdd_default_params();
    p.holdout_speaker = "carol";
    expect_fail(src, out, &p, QIAO_ERR_INVALID_ARGUMENT, "carol: no such speaker");
    expect_fail(src, out, &p, QIAO_ERR_INVALID_ARGUMENT, "(speakers: alice, bob, theo)");
    p.holdout_speaker = "";
    expect_fail(src, out, &p, QIAO_ERR_INVALID_ARGUMENT, "no such speaker");

    /* One speaker: holding them out leaves nothing to train on. */
    char one[256];
    snprintf(one, sizeof one, "%s/one", root);
    fake_fsdd(one, k_spk, 1, 2);
    p.holdout_speaker = "alice";
    expect_fail(one, out, &p, QIAO_ERR_INVALID_ARGUMENT, "only speaker alice");

    /* A .wav of another name is named; other files are not read. */
    snprintf(path, sizeof path, "%s/recordings/seven_bob_1.wav", src);
    touch(path, "x");
    expect_fail(src, out, NULL, QIAO_ERR_FORMAT, "seven_bob_1.wav: not named <digit>_<speaker>_<take>.wav");
    assert_int_equal(remove(path), 0);
    snprintf(path, sizeof path, "%s/recordings/7_bob_01.wav", src); /* a leading zero would alias take 1 */
    touch(path, "x");
    expect_fail(src, out, NULL, QIAO_ERR_FORMAT, "7_bob_01.wav");
    assert_int_equal(remove(path), 0);

    char none[256];
    snprintf(none, sizeof none, "%s/none", root);
    snprintf(path, sizeof path, "%s/recordings", none);
    assert_int_equal(mkdir(none, 0777), 0);
    assert_int_equal(mkdir(path, 0777), 0);
    expect_fail(none, out, NULL, QIAO_ERR_FORMAT, "no .wav recordings");

    /* and after all that, the source still converts */
    assert_int_equal(fsdd_convert(src, out, NULL, NULL), QIAO_OK);
    qt_rm_rf(root);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(manifests),
        cmocka_unit_test(progress),
        cmocka_unit_test(holdout),
        cmocka_unit_test(errors),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
