/* Spoken digits (FSDD): `qiao dataset fsdd`, image-less data in the loader
 * and the trainer, `qiao train --init`, `qiao eval digits`.
 *
 *   convert_real        the real FSDD (../shared/datasets/fsdd next to the
 *                       repo, or $QIAO_FSDD): 2,250 / 250 / 500 clips, every
 *                       line checked against its file name and the split
 *                       rule; --holdout-speaker none gives 2,700 / 300; the
 *                       tiny model's `eval digits --json` on the test split.
 *   convert_fake        a made-up source tree (3 speakers x 10 digits x 7
 *                       takes, copies of tests/data/audio/fsdd_3_jackson_0.wav):
 *                       exact counts, another held-out speaker, bad names and
 *                       unknown speakers named in the error.
 *   imageless_manifest  has_images, signatures from captions, groups, and a
 *                       manifest mixing scenes with and without images.
 *   distinct_batches    random group sizes: qmod_loader_epoch_batches equals
 *                       the bound computed here, every batch has B distinct
 *                       signatures, no scene twice in an epoch, the threaded
 *                       loader gives the same batches.
 *   audio_batches       the converted fake train split: text and audio only
 *                       (image.B = 0), A = B, every row's text is its digit.
 *   train_init          `qiao train --init` for 3 steps: the model is written,
 *                       the run starts at step 0 with the stored config's
 *                       hyperparameters, audio and text weights move, image
 *                       weights and the unused temperatures do not, the log
 *                       has NaN (empty) for the skipped pairs.
 *   eval_digits         `qiao eval digits --json` on the fake test split,
 *                       whose clips are all the same recording: each language
 *                       predicts one digit for every clip, so accuracy is
 *                       exactly 1/10, and that digit is the argmax this test
 *                       computes with the public API. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "models/data/data.h"
#include "models/model.h"
#include "models/train/train.h"
#include "model_fixture.h"
#include "testfs.h"
#include "testutil.h"

#define CLIP_PATH QIAO_TEST_DATA "/audio/fsdd_3_jackson_0.wav"
#define FSDD_DEFAULT "/work/shared/datasets/fsdd" /* where test_intent finds the shared data too */

static const char *const k_en[10] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"};
static const char *const k_zh[10] = {"零", "一", "二", "三", "四", "五", "六", "七", "八", "九"};

static void check(qiao_status st) {
    if (st != QIAO_OK) fail_msg("%s: %s", qiao_status_str(st), qiao_last_error());
}

/* ---- helpers ------------------------------------------------------------------ */

static void make_tmpdir(char *buf, size_t cap) {
    snprintf(buf, cap, "/tmp/qiao-fsdd-XXXXXX");
    assert_non_null(mkdtemp(buf));
}

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n] = 0;
    return buf;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* Runs the qiao command with `args`; returns its stdout (and stderr when
 * `merge`), the exit code in *rc. */
static char *run_cli(const char *args, int merge, int *rc) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' %s %s", QIAO_CLI, args, merge ? "2>&1" : "2>/dev/null");
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap);
    assert_non_null(buf);
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

/* Runs the command, fails the test (printing its output) unless it exits 0. */
static void run_ok(const char *args) {
    int rc;
    char *out = run_cli(args, 1, &rc);
    if (rc != 0) fail_msg("qiao %s: exit %d:\n%s", args, rc, out);
    free(out);
}

/* A made-up FSDD: recordings/<d>_<speaker>_<take>.wav for the speakers
 * given, digits 0-9, takes 0..takes-1, each a copy of the test clip, plus a
 * README that the converter must ignore. */
static void fake_fsdd(const char *root, const char *const *speakers, int n_speakers, int takes) {
    char path[512];
    snprintf(path, sizeof path, "%s/recordings", root);
    assert_int_equal(mkdir(root, 0777) == 0 || exists(root), 1);
    assert_int_equal(mkdir(path, 0777), 0);
    char *wav = NULL;
    FILE *f = fopen(CLIP_PATH, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    wav = malloc((size_t)n);
    assert_non_null(wav);
    assert_int_equal(fread(wav, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    for (int s = 0; s < n_speakers; s++)
        for (int d = 0; d < 10; d++)
            for (int t = 0; t < takes; t++) {
                snprintf(path, sizeof path, "%s/recordings/%d_%s_%d.wav", root, d, speakers[s], t);
                FILE *o = fopen(path, "wb");
                assert_non_null(o);
                assert_int_equal(fwrite(wav, 1, (size_t)n, o), (size_t)n);
                assert_int_equal(fclose(o), 0);
            }
    free(wav);
    snprintf(path, sizeof path, "%s/recordings/README.txt", root);
    write_text(path, "not a recording\n");
}

/* Checks every line of OUT/<split>/manifest.jsonl: fields, captions of its
 * digit, an absolute path to an existing file named after digit, speaker and
 * take, the split rule, unique ids. Returns the line count; per_digit[d]
 * counts digit d. */
static int64_t check_manifest(const char *out, const char *split, const char *holdout, int64_t per_digit[10]) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s/manifest.jsonl", out, split);
    char *text = read_all(path);
    int64_t n = 0;
    memset(per_digit, 0, 10 * sizeof *per_digit);
    char **ids = NULL;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        if (!o) fail_msg("%s: line %lld is not JSON", path, (long long)n + 1);
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
        const cJSON *dg = cJSON_GetObjectItemCaseSensitive(o, "digit");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(o, "speaker");
        const cJSON *tk = cJSON_GetObjectItemCaseSensitive(o, "take");
        const cJSON *caps = cJSON_GetObjectItemCaseSensitive(o, "captions");
        const cJSON *speech = cJSON_GetObjectItemCaseSensitive(o, "speech");
        const cJSON *wavs = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(speech, "captions"), "en");
        assert_true(cJSON_IsString(id) && cJSON_IsNumber(dg) && cJSON_IsString(sp) && cJSON_IsNumber(tk));
        assert_null(cJSON_GetObjectItemCaseSensitive(o, "image"));
        const int d = dg->valueint, take = tk->valueint;
        assert_true(d >= 0 && d <= 9);
        assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(caps, "en"), 0)->valuestring, k_en[d]);
        assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(caps, "zh"), 0)->valuestring, k_zh[d]);
        assert_int_equal(cJSON_GetArraySize(wavs), 1);
        const char *wav = cJSON_GetArrayItem(wavs, 0)->valuestring;
        assert_true(wav[0] == '/');
        assert_true(exists(wav));
        char want[256];
        snprintf(want, sizeof want, "/recordings/%d_%s_%d.wav", d, sp->valuestring, take);
        assert_true(strlen(wav) > strlen(want));
        assert_string_equal(wav + strlen(wav) - strlen(want), want);
        snprintf(want, sizeof want, "fsdd-%d_%s_%d", d, sp->valuestring, take);
        assert_string_equal(id->valuestring, want);
        const int held = holdout && !strcmp(sp->valuestring, holdout);
        if (!strcmp(split, "speaker")) assert_true(held);
        else if (!strcmp(split, "test")) assert_true(!held && take >= 0 && take <= 4);
        else assert_true(!held && take >= 5);
        per_digit[d]++;
        ids = realloc(ids, (size_t)(n + 1) * sizeof *ids);
        assert_non_null(ids);
        ids[n++] = strdup(id->valuestring);
        cJSON_Delete(o);
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n && j < i + 60; j++) /* sorted by speaker, digit: duplicates would be near */
            assert_true(strcmp(ids[i], ids[j]) != 0);
    for (int64_t i = 0; i < n; i++) free(ids[i]);
    free(ids);
    free(text);
    return n;
}

/* The split loads as an image-less data set with speech on every scene. */
static void check_loads(const char *out, const char *split, int64_t n, int64_t groups) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", out, split);
    qmod_dataset d;
    check(qmod_dataset_load(dir, &d));
    assert_int_equal(d.n, n);
    assert_int_equal(d.n_speech, n);
    assert_int_equal(d.n_groups, groups);
    assert_false(d.has_images);
    qmod_dataset_free(&d);
}

/* ---- conversion ----------------------------------------------------------------- */

static void convert_real(void **state) {
    (void)state;
    const char *src = getenv("QIAO_FSDD") ? getenv("QIAO_FSDD") : FSDD_DEFAULT;
    char rec[512];
    snprintf(rec, sizeof rec, "%s/recordings", src);
    if (!exists(rec)) fail_msg("FSDD not found at %s (set QIAO_FSDD to its directory)", src);
    char root[64], out[128], args[1024];
    make_tmpdir(root, sizeof root);
    snprintf(out, sizeof out, "%s/fsdd", root);
    snprintf(args, sizeof args, "dataset fsdd --src '%s' --out '%s'", src, out);
    run_ok(args);
    /* 6 speakers x 10 digits x 50 takes; theo held out; takes 0-4 test */
    int64_t per[10];
    assert_int_equal(check_manifest(out, "train", "theo", per), 2250);
    for (int d = 0; d < 10; d++) assert_int_equal(per[d], 225);
    assert_int_equal(check_manifest(out, "test", "theo", per), 250);
    for (int d = 0; d < 10; d++) assert_int_equal(per[d], 25);
    assert_int_equal(check_manifest(out, "speaker", "theo", per), 500);
    for (int d = 0; d < 10; d++) assert_int_equal(per[d], 50);
    check_loads(out, "train", 2250, 10);
    check_loads(out, "test", 250, 10);

    /* A random tiny model on the real test split: a parsable result. */
    char model[128];
    snprintf(model, sizeof model, "%s/tiny.safetensors", root);
    qmod_model *m = qt_tiny_model(3, true);
    check(qmod_save(m, model, QIAO_DTYPE_F32));
    qmod_free(m);
    snprintf(args, sizeof args, "eval digits --model '%s' --data '%s/test' --threads 2 --json", model, out);
    int rc;
    char *js = run_cli(args, 0, &rc);
    assert_int_equal(rc, 0);
    cJSON *r = cJSON_Parse(js);
    assert_non_null(r);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(r, "n")->valueint, 250);
    for (int l = 0; l < 2; l++) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(r, l ? "zh" : "en");
        const double a = cJSON_GetObjectItemCaseSensitive(o, "accuracy")->valuedouble;
        assert_true(a >= 0.0 && a <= 1.0);
        const cJSON *cm = cJSON_GetObjectItemCaseSensitive(o, "confusion");
        int64_t diag = 0;
        for (int t = 0; t < 10; t++) {
            int64_t row = 0;
            for (int p = 0; p < 10; p++) row += cJSON_GetArrayItem(cJSON_GetArrayItem(cm, t), p)->valueint;
            assert_int_equal(row, 25);
            diag += cJSON_GetArrayItem(cJSON_GetArrayItem(cm, t), t)->valueint;
        }
        assert_float_equal(a, (double)diag / 250.0, 1e-12);
        printf("random tiny model, real test split, %s: accuracy %.3f\n", l ? "zh" : "en", a);
    }
    cJSON_Delete(r);
    free(js);

    /* No held-out speaker: the plain upstream split. */
    snprintf(args, sizeof args, "dataset fsdd --src '%s' --out '%s' --holdout-speaker none", src, out);
    run_ok(args);
    assert_int_equal(check_manifest(out, "train", NULL, per), 2700);
    assert_int_equal(check_manifest(out, "test", NULL, per), 300);
    char stale[256];
    snprintf(stale, sizeof stale, "%s/speaker/manifest.jsonl", out);
    assert_false(exists(stale));
    qt_rm_rf(root);
}

static void convert_fake(void **state) {
    (void)state;
    char root[64], src[128], out[128], args[1024];
    make_tmpdir(root, sizeof root);
    snprintf(src, sizeof src, "%s/src", root);
    snprintf(out, sizeof out, "%s/out", root);
    static const char *const spk[3] = {"alice", "bob", "theo"};
    fake_fsdd(src, spk, 3, 7);
    int64_t per[10];

    /* theo held out: train = 2 speakers x 10 x takes 5,6; test = 2 x 10 x 5 */
    snprintf(args, sizeof args, "dataset fsdd --src '%s' --out '%s'", src, out);
    int rc;
    char *msg = run_cli(args, 1, &rc);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(msg, "train 40, test 100, speaker 70 (theo); 3 speakers (alice, bob, theo)"));
    free(msg);
    assert_int_equal(check_manifest(out, "train", "theo", per), 40);
    assert_int_equal(check_manifest(out, "test", "theo", per), 100);
    assert_int_equal(check_manifest(out, "speaker", "theo", per), 70);
    for (int d = 0; d < 10; d++) assert_int_equal(per[d], 7);

    snprintf(args, sizeof args, "dataset fsdd --src '%s' --out '%s' --holdout-speaker bob", src, out);
    run_ok(args);
    assert_int_equal(check_manifest(out, "speaker", "bob", per), 70);
    assert_int_equal(check_manifest(out, "train", "bob", per), 40);

    /* An unknown speaker is named, with the ones there are. */
    snprintf(args, sizeof args, "dataset fsdd --src '%s' --out '%s' --holdout-speaker carol", src, out);
    msg = run_cli(args, 1, &rc);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(msg, "--holdout-speaker carol: no such speaker"));
    assert_non_null(strstr(msg, "(speakers: alice, bob, theo)"));
    free(msg);

    /* A .wav that is not <digit>_<speaker>_<take>.wav is named. */
    char bad[256];
    snprintf(bad, sizeof bad, "%s/recordings/seven_bob_1.wav", src);
    write_text(bad, "x");
    snprintf(args, sizeof args, "dataset fsdd --src '%s' --out '%s/again'", src, root);
    msg = run_cli(args, 1, &rc);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(msg, "recordings/seven_bob_1.wav: not named <digit>_<speaker>_<take>.wav"));
    free(msg);
    /* a take with a leading zero would give 7_bob_3 a second id */
    assert_int_equal(remove(bad), 0);
    snprintf(bad, sizeof bad, "%s/recordings/7_bob_03.wav", src);
    write_text(bad, "x");
    msg = run_cli(args, 1, &rc);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(msg, "recordings/7_bob_03.wav: not named"));
    free(msg);

    /* usage errors */
    msg = run_cli("dataset fsdd --out /tmp/x", 1, &rc);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(msg, "--src and --out are required"));
    free(msg);
    qt_rm_rf(root);
}

/* ---- image-less data in the loader ------------------------------------------------- */

static void imageless_manifest(void **state) {
    (void)state;
    char root[64], path[256];
    make_tmpdir(root, sizeof root);
    snprintf(path, sizeof path, "%s/manifest.jsonl", root);
    write_text(path,
               "{\"id\":\"a\",\"captions\":{\"zh\":[\"七\"],\"en\":[\"seven\"]}}\n"
               "{\"id\":\"b\",\"captions\":{\"zh\":[\"三\"],\"en\":[\"three\"]}}\n"
               "{\"id\":\"c\",\"captions\":{\"zh\":[\"七\"],\"en\":[\"seven\"]}}\n"
               "{\"id\":\"d\",\"captions\":{\"zh\":[\"九\"]}}\n");
    qmod_dataset d;
    check(qmod_dataset_load(root, &d));
    assert_false(d.has_images);
    assert_int_equal(d.n, 4);
    assert_int_equal(d.n_groups, 3);
    assert_null(d.scenes[0].image);
    /* the en caption is the signature, zh when there is no en */
    assert_string_equal(d.scenes[0].signature, "seven");
    assert_string_equal(d.scenes[3].signature, "九");
    assert_int_equal(d.scenes[0].group, d.scenes[2].group);
    assert_true(d.scenes[0].group != d.scenes[1].group && d.scenes[1].group != d.scenes[3].group);
    /* groups in strcmp order: "seven" < "three" < "九" */
    assert_int_equal(d.scenes[0].group, 0);
    assert_int_equal(d.scenes[1].group, 1);
    assert_int_equal(d.scenes[3].group, 2);
    qmod_dataset_free(&d);

    /* Mixing is refused, naming the line that breaks the pattern. */
    write_text(path,
               "{\"id\":\"a\",\"captions\":{\"en\":[\"seven\"]}}\n"
               "{\"id\":\"b\",\"captions\":{\"en\":[\"three\"]}}\n"
               "{\"id\":\"c\",\"image\":\"x.png\",\"objects\":[],\"captions\":{\"en\":[\"seven\"]}}\n");
    assert_int_equal(qmod_dataset_load(root, &d), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "manifest.jsonl:3: has an \"image\" but line 1 has none"));
    write_text(path,
               "{\"id\":\"c\",\"image\":\"x.png\",\"objects\":[],\"captions\":{\"en\":[\"seven\"]}}\n"
               "{\"id\":\"a\",\"captions\":{\"en\":[\"seven\"]}}\n");
    assert_int_equal(qmod_dataset_load(root, &d), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "manifest.jsonl:2: has no \"image\" but line 1 has one"));
    /* With an image the objects stay required. */
    write_text(path, "{\"id\":\"c\",\"image\":\"x.png\",\"captions\":{\"en\":[\"seven\"]}}\n");
    assert_int_equal(qmod_dataset_load(root, &d), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "manifest.jsonl:1: \"objects\" missing"));
    qt_rm_rf(root);
}

/* An in-memory image-less data set: scene i in group group[i], caption =
 * its group's name. */
static void make_groups_dataset(qmod_dataset *d, const int64_t *sizes, int64_t G) {
    memset(d, 0, sizeof *d);
    for (int64_t g = 0; g < G; g++) d->n += sizes[g];
    d->scenes = calloc((size_t)d->n, sizeof *d->scenes);
    assert_non_null(d->scenes);
    d->dir = strdup("in-memory");
    d->n_groups = G;
    d->has_images = false;
    int64_t i = 0;
    /* interleaved, so a group's scenes are not contiguous */
    for (int64_t round = 0; i < d->n; round++)
        for (int64_t g = 0; g < G; g++) {
            if (round >= sizes[g]) continue;
            char name[32], id[48];
            snprintf(name, sizeof name, "g%02lld", (long long)g);
            snprintf(id, sizeof id, "s%lld", (long long)i);
            d->scenes[i].id = strdup(id);
            d->scenes[i].caption[QMOD_LANG_EN] = strdup(name);
            d->scenes[i].signature = strdup(name);
            d->scenes[i].group = g;
            i++;
        }
}

/* max t with sum_g min(s_g, t) >= B t, by a plain scan */
static int64_t bound_scan(const int64_t *sizes, int64_t G, int64_t B) {
    int64_t n = 0, best = 0;
    for (int64_t g = 0; g < G; g++) n += sizes[g];
    for (int64_t t = 0; t <= n; t++) {
        int64_t s = 0;
        for (int64_t g = 0; g < G; g++) s += sizes[g] < t ? sizes[g] : t;
        if (s >= B * t) best = t;
    }
    return best;
}

static void distinct_batches(void **state) {
    (void)state;
    qmod_model *m = qt_tiny_model(5, true);
    qc_rng rng;
    qc_rng_seed(&rng, 77);
    for (int it = 0; it < 30; it++) {
        int64_t G = 1 + (int64_t)qc_rng_below(&rng, 8), sizes[8];
        for (int64_t g = 0; g < G; g++) sizes[g] = 1 + (int64_t)qc_rng_below(&rng, 9);
        if (it == 0) G = 4, sizes[0] = 5, sizes[1] = 3, sizes[2] = 1, sizes[3] = 1; /* worked example below */
        qmod_dataset d;
        make_groups_dataset(&d, sizes, G);
        const int64_t B = 1 + (int64_t)qc_rng_below(&rng, (uint64_t)G);
        const int64_t bpe = qmod_loader_epoch_batches(&d, B);
        assert_int_equal(bpe, bound_scan(sizes, G, B));
        if (it == 0) {
            /* {5,3,1,1}: B=2 gives 5 batches (every scene), B=3 only 2 */
            assert_int_equal(qmod_loader_epoch_batches(&d, 2), 5);
            assert_int_equal(qmod_loader_epoch_batches(&d, 3), 2);
            assert_int_equal(qmod_loader_epoch_batches(&d, 5), 0);
        }
        qmod_loader_params p = {.model = m, .data = &d, .batch = B, .seed = (uint64_t)it, .threads = 1,
                                .prefetch = 1, .first_batch = 0, .audio = false};
        int *seen = calloc((size_t)d.n, sizeof *seen);
        assert_non_null(seen);
        for (int64_t k = 0; k < 2 * bpe; k++) {
            if (k % bpe == 0) memset(seen, 0, (size_t)d.n * sizeof *seen);
            qmod_train_batch b;
            check(qmod_train_batch_make(&p, k, &b));
            assert_int_equal(b.B, B);
            assert_int_equal(b.image.B, 0);
            assert_null(b.image.patches);
            assert_int_equal(b.text.B, B);
            assert_int_equal(b.A, 0);
            for (int64_t i = 0; i < B; i++) {
                assert_int_equal(seen[b.scene[i]]++, 0); /* once per epoch */
                for (int64_t j = 0; j < i; j++)
                    assert_true(d.scenes[b.scene[i]].group != d.scenes[b.scene[j]].group);
            }
            qmod_train_batch_free(&b);
        }
        free(seen);
        if (it < 3) {
            /* the threaded loader hands out the same batches */
            qmod_loader_params lp = p;
            lp.threads = 2;
            lp.prefetch = 3;
            qmod_loader *l = NULL;
            check(qmod_loader_start(&lp, &l));
            for (int64_t k = 0; k < 2 * bpe + 1; k++) {
                qmod_train_batch *lb = NULL, ref;
                check(qmod_loader_next(l, &lb));
                check(qmod_train_batch_make(&p, k, &ref));
                assert_memory_equal(lb->scene, ref.scene, (size_t)B * sizeof *ref.scene);
                assert_memory_equal(lb->text_lang, ref.text_lang, (size_t)B);
                qmod_train_batch_free(&ref);
                qmod_loader_release(l, lb);
            }
            qmod_loader_stop(l);
        }
        /* more rows than captions: refused, with the way out */
        if (G + 1 <= d.n) {
            qmod_train_batch b;
            p.batch = G + 1;
            assert_int_equal(qmod_train_batch_make(&p, 0, &b), QIAO_ERR_INVALID_ARGUMENT);
            assert_non_null(strstr(qiao_last_error(), "distinct captions"));
        }
        qmod_dataset_free(&d);
    }
    qmod_free(m);
}

typedef struct fake {
    char root[64], src[128], out[128], model[160];
} fake;

/* The fake source converted (theo held out) and a tiny model file. */
static void fake_open(fake *f) {
    memset(f, 0, sizeof *f);
    make_tmpdir(f->root, sizeof f->root);
    snprintf(f->src, sizeof f->src, "%s/src", f->root);
    snprintf(f->out, sizeof f->out, "%s/out", f->root);
    snprintf(f->model, sizeof f->model, "%s/tiny.safetensors", f->root);
    static const char *const spk[3] = {"alice", "bob", "theo"};
    fake_fsdd(f->src, spk, 3, 7);
    char args[512];
    snprintf(args, sizeof args, "dataset fsdd --src '%s' --out '%s'", f->src, f->out);
    run_ok(args);
    qmod_model *m = qt_tiny_model(11, true);
    check(qmod_save(m, f->model, QIAO_DTYPE_F32));
    qmod_free(m);
}

static int digit_of(const qmod_scene *s) {
    for (int d = 0; d < 10; d++)
        if (!strcmp(s->caption[QMOD_LANG_EN], k_en[d])) return d;
    fail_msg("scene %s: not a digit", s->id);
    return -1;
}

static void audio_batches(void **state) {
    (void)state;
    fake f;
    fake_open(&f);
    char dir[256];
    snprintf(dir, sizeof dir, "%s/train", f.out);
    qmod_dataset d;
    check(qmod_dataset_load(dir, &d));
    assert_int_equal(d.n, 40);
    qmod_model *m = NULL;
    check(qmod_load(f.model, &m));
    qmod_loader_params p = {.model = m, .data = &d, .batch = 10, .seed = 3, .threads = 1, .prefetch = 1,
                            .audio = true};
    assert_int_equal(qmod_loader_epoch_batches(&d, 10), 4);
    int seen[40] = {0};
    int lang_count[QMOD_N_LANGS] = {0, 0};
    for (int64_t k = 0; k < 4; k++) {
        qmod_train_batch b;
        check(qmod_train_batch_make(&p, k, &b));
        assert_int_equal(b.image.B, 0);
        assert_int_equal(b.text.B, 10);
        assert_int_equal(b.A, 10);
        assert_int_equal(b.audio.B, 10);
        assert_true(b.audio.T > 0);
        int digits[10] = {0};
        for (int64_t i = 0; i < 10; i++) {
            const qmod_scene *s = &d.scenes[b.scene[i]];
            seen[b.scene[i]]++;
            digits[digit_of(s)]++;
            assert_int_equal(b.audio_rows[i], i);
            assert_int_equal(b.audio_lang[i], QMOD_LANG_EN); /* the only recording */
            lang_count[b.text_lang[i]]++;
            /* the text row is the digit word in its language */
            qmod_batch one;
            const char *word = s->caption[b.text_lang[i]];
            check(qmod_batch_text(m, &word, 1, &one));
            assert_int_equal(b.text.lengths[i], one.lengths[0]);
            assert_memory_equal(b.text.ids + i * b.text.T, one.ids, (size_t)one.lengths[0] * sizeof *one.ids);
            qmod_batch_free(&one);
        }
        for (int dg = 0; dg < 10; dg++) assert_int_equal(digits[dg], 1); /* one clip of each digit */
        qmod_train_batch_free(&b);
    }
    for (int i = 0; i < 40; i++) assert_int_equal(seen[i], 1); /* the epoch covers the split */
    assert_true(lang_count[0] > 0 && lang_count[1] > 0);
    qmod_free(m);
    qmod_dataset_free(&d);
    qt_rm_rf(f.root);
}

/* ---- training and evaluation ---------------------------------------------------- */

/* Whether tensor `name` of the f32 file equals the model's. */
static bool same_tensor(const qc_st_file *file, const qmod_model *m, size_t i) {
    const qc_tensor_desc *t = &m->tab.t[i];
    const qc_st_tensor *x = qc_st_find(file, t->name);
    if (!x) fail_msg("%s missing", t->name);
    assert_int_equal(x->dtype, QIAO_DTYPE_F32);
    assert_int_equal(x->numel, t->numel);
    return memcmp(x->data, m->arena.base + t->offset, (size_t)t->numel * sizeof(float)) == 0;
}

static void train_init(void **state) {
    (void)state;
    fake f;
    fake_open(&f);
    char args[1024], out[256], ckpt[256], csv[256];
    snprintf(out, sizeof out, "%s/ft.safetensors", f.root);
    snprintf(ckpt, sizeof ckpt, "%s/ft.ckpt.safetensors", f.root);
    snprintf(csv, sizeof csv, "%s/ft.csv", f.root);
    snprintf(args, sizeof args,
             "train --init '%s' --data '%s/train' --out '%s' --steps 3 --batch 10 --threads 2 --quiet", f.model,
             f.out, out);
    run_ok(args);
    assert_true(exists(out));

    /* Step 3 of 3: the run started at 0; lr and the rest come from the
     * stored tiny config's "train" object (lr 0.002, warmup 20). */
    qmod_train_hparams h;
    int64_t step = -1;
    check(qmod_train_hparams_from_checkpoint(ckpt, &h, &step));
    assert_int_equal(step, 3);
    assert_int_equal(h.steps, 3);
    assert_int_equal(h.batch, 10);
    assert_float_equal(h.lr, 0.002, 1e-9);
    assert_int_equal(h.warmup, 20);
    qmod_train_hparams hm;
    check(qmod_train_hparams_from_model(f.model, &hm));
    assert_float_equal(hm.lr, 0.002, 1e-9);

    /* What trained moved; the image encoder and the temperatures of the
     * image pairs are exactly as loaded. */
    qmod_model *init = NULL, *ft = NULL;
    check(qmod_load(f.model, &init));
    check(qmod_load(out, &ft));
    assert_non_null(ft->tok);
    assert_string_equal(ft->cfg.name, init->cfg.name);
    qc_st_file *file = NULL;
    check(qc_st_open(ckpt, &file));
    int64_t moved_text = 0, moved_audio = 0, n_image = 0;
    for (size_t i = 0; i < init->tab.n; i++) {
        const char *name = init->tab.t[i].name;
        const bool same = same_tensor(file, init, i);
        if (!strncmp(name, "image.", 6) || !strcmp(name, "logit_scale.text_image") ||
            !strcmp(name, "logit_scale.audio_image")) {
            if (!same) fail_msg("%s changed although nothing trains it", name);
            n_image++;
        } else if (!strncmp(name, "text.", 5)) {
            moved_text += !same;
        } else if (!strncmp(name, "audio.", 6)) {
            moved_audio += !same;
        }
    }
    printf("moved tensors: text %lld, audio %lld; unchanged image-side tensors %lld\n", (long long)moved_text,
           (long long)moved_audio, (long long)n_image);
    assert_true(moved_text > 0 && moved_audio > 0 && n_image > 2);
    qc_st_close(file);
    qmod_free(init);
    qmod_free(ft);

    /* The log: 3 rows, the text-image and audio-image losses empty (NaN). */
    char *log = read_all(csv);
    int rows = 0;
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "step,", 5)) continue;
        long long s;
        double sec, lr, loss, lat;
        int used = 0;
        assert_int_equal(sscanf(line, "%lld,%lf,%lf,%lf,%n", &s, &sec, &lr, &loss, &used), 4);
        assert_true(used > 0 && line[used] == ','); /* loss_text_image empty */
        assert_int_equal(sscanf(line + used + 1, "%lf,", &lat), 1);
        assert_true(isfinite(lat) && lat > 0);
        assert_float_equal(loss, lat, 1e-4); /* audio_weight 1: the whole loss */
        const char *after = strchr(line + used + 1, ',');
        assert_non_null(after);
        assert_true(after[1] == ','); /* loss_audio_image empty */
        rows++;
        assert_int_equal(s, rows);
    }
    assert_int_equal(rows, 3);
    free(log);

    /* usage: --init brings its own config */
    int rc;
    snprintf(args, sizeof args, "train --init '%s' --config x.json --data '%s/train' --out '%s'", f.model, f.out,
             out);
    char *msg = run_cli(args, 1, &rc);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(msg, "--init takes the config and tokenizer from the model"));
    free(msg);
    /* 11 rows cannot be 11 different digits */
    snprintf(args, sizeof args, "train --init '%s' --data '%s/train' --out '%s' --steps 1 --batch 11 --quiet",
             f.model, f.out, out);
    msg = run_cli(args, 1, &rc);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(msg, "batch 11 is more than the 10 distinct captions"));
    free(msg);
    qt_rm_rf(f.root);
}

static void eval_digits(void **state) {
    (void)state;
    fake f;
    fake_open(&f);
    char args[1024];
    snprintf(args, sizeof args, "eval digits --model '%s' --data '%s/test' --threads 2 --json", f.model, f.out);
    int rc;
    char *js = run_cli(args, 0, &rc);
    assert_int_equal(rc, 0);
    cJSON *r = cJSON_Parse(js);
    if (!r) fail_msg("not JSON: %s", js);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(r, "n")->valueint, 100);
    assert_float_equal(cJSON_GetObjectItemCaseSensitive(r, "chance")->valuedouble, 0.1, 1e-12);

    /* The prediction for the (one) recording, with the public API. */
    qiao_model *m = NULL;
    qiao_session *s = NULL;
    check(qiao_model_load(f.model, &m));
    check(qiao_session_new(m, NULL, &s));
    const size_t D = (size_t)qiao_model_dim(m);
    float *words = malloc(10 * D * sizeof(float)), *clip = malloc(D * sizeof(float));
    assert_non_null(words);
    assert_non_null(clip);
    check(qiao_embed_audio_file(s, CLIP_PATH, clip, D));
    for (int l = 0; l < 2; l++) {
        check(qiao_embed_texts(s, l ? k_zh : k_en, 10, words, 10 * D));
        int best = 0;
        float bs = -2;
        for (int w = 0; w < 10; w++) {
            float c = qiao_cosine(clip, words + (size_t)w * D, D);
            if (c > bs) bs = c, best = w;
        }
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(r, l ? "zh" : "en");
        assert_non_null(o);
        /* one recording, ten clips of each digit: exactly one digit in ten right */
        assert_float_equal(cJSON_GetObjectItemCaseSensitive(o, "accuracy")->valuedouble, 0.1, 1e-12);
        assert_int_equal(cJSON_GetObjectItemCaseSensitive(o, "correct")->valueint, 10);
        const cJSON *cm = cJSON_GetObjectItemCaseSensitive(o, "confusion");
        for (int t = 0; t < 10; t++)
            for (int p = 0; p < 10; p++)
                assert_int_equal(cJSON_GetArrayItem(cJSON_GetArrayItem(cm, t), p)->valueint, p == best ? 10 : 0);
        printf("%s: every clip predicted as %s\n", l ? "zh" : "en", l ? k_zh[best] : k_en[best]);
    }
    free(words);
    free(clip);
    qiao_session_free(s);
    qiao_model_free(m);
    cJSON_Delete(r);
    free(js);

    /* the table names both languages and chance */
    snprintf(args, sizeof args, "eval digits --model '%s' --data '%s' --threads 1", f.model, f.out);
    char *table = run_cli(args, 0, &rc);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(table, "/test, 100 clips")); /* DIR/test found under the root */
    assert_non_null(strstr(table, "en       10.0 %"));
    assert_non_null(strstr(table, "chance   10.0 %"));
    assert_non_null(strstr(table, "confusion, zh words"));
    free(table);

    /* a split whose captions are not digit words */
    char dir[256], path[300];
    snprintf(dir, sizeof dir, "%s/words", f.root);
    assert_int_equal(mkdir(dir, 0777), 0);
    snprintf(path, sizeof path, "%s/manifest.jsonl", dir);
    char line[512];
    snprintf(line, sizeof line,
             "{\"id\":\"x\",\"captions\":{\"en\":[\"eleven\"]},\"speech\":{\"captions\":{\"en\":[\"%s\"]}}}\n",
             CLIP_PATH);
    write_text(path, line);
    snprintf(args, sizeof args, "eval digits --model '%s' --data '%s'", f.model, dir);
    char *msg = run_cli(args, 1, &rc);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(msg, "scene x: caption is not a digit word"));
    free(msg);
    qt_rm_rf(f.root);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(convert_real),     cmocka_unit_test(convert_fake), cmocka_unit_test(imageless_manifest),
        cmocka_unit_test(distinct_batches), cmocka_unit_test(audio_batches), cmocka_unit_test(train_init),
        cmocka_unit_test(eval_digits),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
