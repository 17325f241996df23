/* tests/unit/test_data.c - the shapes manifest reader and the training
 * loader (models/data/data.c), on a few scenes generated with spoken long
 * captions: the manifest against the generator's own scenes, malformed
 * lines naming file:line, batches as pure functions of (seed, index), an
 * epoch visiting every scene once, each row holding what its scene says,
 * the threaded loader giving the synchronous batches in order for any
 * thread count, stopping cleanly while blocked, and a missing file failing
 * with its path. */
#define _GNU_SOURCE
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "models/data/data.h"
#include "shapes/shapes.h"
#include "model_fixture.h"
#include "testfs.h"
#include "testutil.h"

#define N_SCENES 24
#define GEN_SEED 3

/* ---- files -------------------------------------------------------------- */

static char *tmpdir(void) {
    const char *t = getenv("TMPDIR");
    char buf[512];
    snprintf(buf, sizeof buf, "%s/qiao_data_XXXXXX", t && *t ? t : "/tmp");
    char *d = strdup(buf);
    assert_non_null(mkdtemp(d));
    return d;
}

static bool exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0;
}

static void write_file(const char *dir, const char *name, const char *text) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    fclose(f);
}

static void expect(qiao_status got, qiao_status want, const char *needle) {
    if (got != want || (needle && !strstr(qiao_last_error(), needle)))
        printf("status %d (want %d), message: %s (want \"%s\")\n", (int)got, (int)want, qiao_last_error(),
               needle ? needle : "");
    else if (got != QIAO_OK)
        printf("  expected error: %s\n", qiao_last_error());
    assert_int_equal(got, want);
    if (needle) assert_non_null(strstr(qiao_last_error(), needle));
}

/* ---- the fixture: generated scenes and a tiny model with the test tokenizer */

typedef struct fixture {
    char *dir;
    qmod_dataset d;
    qmod_model *m;
} fixture;

static void generate(const char *dir) {
    shapes_params p = shapes_default_params();
    p.n = N_SCENES;
    p.seed = GEN_SEED;
    p.split = SHAPES_TRAIN;
    p.size = 48;
    p.speech = SHAPES_SPEECH_LONG;
    p.langs = 3;
    p.jobs = 2;
    qiao_status st = shapes_generate(&p, dir);
    if (st != QIAO_OK) fail_msg("shapes_generate: %s", qiao_last_error());
}

/* cmocka setup and teardown, so the generated files go even when a case fails. */
static int fixture_setup(void **state) {
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx) return -1;
    *state = fx;
    fx->dir = tmpdir();
    generate(fx->dir);
    qiao_status st = qmod_dataset_load(fx->dir, &fx->d);
    if (st != QIAO_OK) fail_msg("qmod_dataset_load: %s", qiao_last_error());
    fx->m = qt_tiny_model(1, true);
    return 0;
}

static int fixture_teardown(void **state) {
    fixture *fx = *state;
    if (!fx) return 0;
    qmod_dataset_free(&fx->d);
    qmod_free(fx->m);
    if (fx->dir) qt_rm_rf(fx->dir);
    free(fx->dir);
    free(fx);
    return 0;
}

static qmod_loader_params params(const fixture *fx, int64_t B, uint64_t seed, bool audio) {
    qmod_loader_params p = {0};
    p.model = fx->m;
    p.data = &fx->d;
    p.batch = B;
    p.seed = seed;
    p.threads = 1;
    p.prefetch = 2;
    p.audio = audio;
    return p;
}

static qmod_train_batch make(const qmod_loader_params *p, int64_t index) {
    qmod_train_batch b;
    qiao_status st = qmod_train_batch_make(p, index, &b);
    if (st != QIAO_OK) fail_msg("qmod_train_batch_make(%lld): %s", (long long)index, qiao_last_error());
    assert_int_equal(b.index, index);
    return b;
}

/* ---- comparing batches ---------------------------------------------------- */

/* Equal contents, or both absent. */
static bool same_bytes(const void *a, const void *b, size_t n) {
    if (!a || !b) return a == b;
    return n == 0 || memcmp(a, b, n) == 0;
}

static bool same_modality(const qmod_batch *a, const qmod_batch *b, int64_t K, int64_t per_item) {
    if (a->mod != b->mod || a->B != b->B || a->T != b->T) return false;
    const size_t BT = (size_t)(a->B * a->T);
    return same_bytes(a->ids, b->ids, BT * sizeof(int32_t)) &&
           same_bytes(a->char_ids, b->char_ids, BT * (size_t)K * sizeof(int32_t)) &&
           same_bytes(a->tags, b->tags, BT) && same_bytes(a->mask, b->mask, BT) &&
           same_bytes(a->patches, b->patches, (size_t)(a->B * per_item) * sizeof(float)) &&
           same_bytes(a->mel, b->mel, BT * (size_t)per_item * sizeof(float)) &&
           same_bytes(a->lengths, b->lengths, (size_t)a->B * sizeof(int64_t));
}

static bool same_batch(const qmod_model *m, const qmod_train_batch *a, const qmod_train_batch *b) {
    return a->index == b->index && a->B == b->B && a->A == b->A &&
           same_bytes(a->scene, b->scene, (size_t)a->B * sizeof(int64_t)) &&
           same_bytes(a->text_lang, b->text_lang, (size_t)a->B) &&
           same_bytes(a->audio_rows, b->audio_rows, (size_t)a->A * sizeof(int64_t)) &&
           same_bytes(a->audio_lang, b->audio_lang, (size_t)a->A) &&
           same_modality(&a->text, &b->text, m->cfg.text.k, 0) &&
           same_modality(&a->image, &b->image, 0, (int64_t)qmod_image_floats(m)) &&
           same_modality(&a->audio, &b->audio, 0, m->cfg.audio.n_mels);
}

/* ---- manifest ------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The signature rebuilt from the generator's own scene, not the manifest. */
static void expected_signature(const shapes_scene *sc, char *out, size_t n) {
    char parts[SHAPES_MAX_OBJECTS][128];
    char *ptr[SHAPES_MAX_OBJECTS];
    for (int i = 0; i < sc->n; i++) {
        const shapes_object *o = &sc->obj[i];
        snprintf(parts[i], sizeof parts[i], "%s %s %s@%s", shapes_name(SHAPES_K_COLOR, o->color),
                 shapes_name(SHAPES_K_SIZE, o->size), shapes_name(SHAPES_K_SHAPE, o->shape),
                 shapes_name(SHAPES_K_PLACE, o->cell));
        ptr[i] = parts[i];
    }
    qsort(ptr, (size_t)sc->n, sizeof *ptr, cmp_str);
    out[0] = 0;
    for (int i = 0; i < sc->n; i++) {
        if (i) strncat(out, ";", n - strlen(out) - 1);
        strncat(out, ptr[i], n - strlen(out) - 1);
    }
}

static void test_manifest(void **state) {
    const fixture *fx = *state;
    const char *dir = fx->dir;
    qmod_dataset d;
    qiao_status st = qmod_dataset_load(dir, &d);
    if (st != QIAO_OK) fail_msg("%s", qiao_last_error());
    assert_int_equal(d.n, N_SCENES);
    assert_int_equal(d.n_speech, N_SCENES);
    assert_string_equal(d.dir, dir);
    for (int64_t i = 0; i < d.n; i++) {
        const qmod_scene *s = &d.scenes[i];
        shapes_scene sc;
        assert_int_equal(shapes_scene_make(GEN_SEED, SHAPES_TRAIN, i, &sc), QIAO_OK);
        char want[64];
        snprintf(want, sizeof want, "shapes-train-%06lld", (long long)i);
        assert_string_equal(s->id, want);
        /* Paths are joined with the directory and name real files. */
        assert_true(strncmp(s->image, dir, strlen(dir)) == 0);
        assert_true(exists(s->image));
        for (int l = 0; l < QMOD_N_LANGS; l++) {
            assert_non_null(s->caption[l]);
            assert_string_equal(s->caption[l], sc.cap[l][0]);
            assert_non_null(s->speech[l]);
            assert_true(strncmp(s->speech[l], dir, strlen(dir)) == 0);
            assert_non_null(strstr(s->speech[l], qmod_lang_name(l)));
            if (!exists(s->speech[l])) fail_msg("%s missing", s->speech[l]);
        }
        char sig[1024];
        expected_signature(&sc, sig, sizeof sig);
        assert_string_equal(s->signature, sig);
    }
    qmod_dataset_free(&d);
    qmod_dataset_free(&d); /* cleared: a second free is harmless */

    /* Hand-written scenes: the same objects in another order give the same
     * signature; a language or speech may be absent; a line far longer than
     * any buffer a reader might assume (40 KB) is read whole. */
    char *long_cap = malloc(40001);
    assert_non_null(long_cap);
    for (int i = 0; i < 40000; i++) long_cap[i] = (char)('a' + i % 26);
    long_cap[40000] = 0;
    size_t mlen = 60000;
    char *man = malloc(mlen);
    assert_non_null(man);
    snprintf(man, mlen,
             "{\"id\":\"a\",\"image\":\"images/a.png\",\"captions\":{\"zh\":[\"z-a\",\"short\"],\"en\":[\"e-a\"]},"
             "\"objects\":[{\"shape\":\"star\",\"color\":\"red\",\"size\":\"small\",\"grid\":\"top\"},"
             "{\"shape\":\"circle\",\"color\":\"blue\",\"size\":\"large\",\"grid\":\"center\"}],"
             "\"speech\":{\"captions\":{\"zh\":[\"speech/a_zh.wav\"],\"en\":[]}}}\n"
             "\n"
             "{\"id\":\"b\",\"image\":\"/abs/b.png\",\"captions\":{\"en\":[\"%s\"]},"
             "\"objects\":[{\"shape\":\"circle\",\"color\":\"blue\",\"size\":\"large\",\"grid\":\"center\",\"x\":0.5},"
             "{\"shape\":\"star\",\"color\":\"red\",\"size\":\"small\",\"grid\":\"top\"}]}\r\n"
             "{\"id\":\"c\",\"image\":\"c.png\",\"captions\":{\"zh\":[\"z-c\"]},"
             "\"objects\":[{\"shape\":\"circle\",\"color\":\"blue\",\"size\":\"large\",\"grid\":\"left\"},"
             "{\"shape\":\"star\",\"color\":\"red\",\"size\":\"small\",\"grid\":\"top\"}]}",
             long_cap);
    char *hand = tmpdir();
    write_file(hand, "manifest.jsonl", man);
    st = qmod_dataset_load(hand, &d);
    if (st != QIAO_OK) fail_msg("%s", qiao_last_error());
    assert_int_equal(d.n, 3);
    assert_int_equal(d.n_speech, 1);
    assert_string_equal(d.scenes[0].signature, "blue large circle@center;red small star@top");
    assert_string_equal(d.scenes[0].signature, d.scenes[1].signature);
    assert_string_not_equal(d.scenes[0].signature, d.scenes[2].signature);
    assert_string_equal(d.scenes[0].caption[QMOD_LANG_ZH], "z-a");
    assert_string_equal(d.scenes[0].caption[QMOD_LANG_EN], "e-a");
    char want[1024];
    snprintf(want, sizeof want, "%s/speech/a_zh.wav", hand);
    assert_string_equal(d.scenes[0].speech[QMOD_LANG_ZH], want);
    assert_null(d.scenes[0].speech[QMOD_LANG_EN]);
    assert_null(d.scenes[1].caption[QMOD_LANG_ZH]);
    assert_string_equal(d.scenes[1].caption[QMOD_LANG_EN], long_cap);
    assert_string_equal(d.scenes[1].image, "/abs/b.png");
    assert_null(d.scenes[1].speech[QMOD_LANG_ZH]);
    assert_null(d.scenes[2].caption[QMOD_LANG_EN]);
    snprintf(want, sizeof want, "%s/c.png", hand);
    assert_string_equal(d.scenes[2].image, want);
    qmod_dataset_free(&d);

    /* No manifest at all. */
    char missing[1024];
    snprintf(missing, sizeof missing, "%s/nope", hand);
    expect(qmod_dataset_load(missing, &d), QIAO_ERR_IO, "nope/manifest.jsonl");
    assert_int_equal(d.n, 0);
    assert_null(d.scenes);

    free(long_cap);
    free(man);
    qt_rm_rf(hand);
    free(hand);
}

static void test_malformed(void **state) {
    (void)state;
    const char *good = "{\"id\":\"g\",\"image\":\"g.png\",\"captions\":{\"en\":[\"a caption\"]},\"objects\":[]}\n";
    static const struct {
        const char *line, *needle;
    } bad[] = {
        {"{\"id\":\"x\",\"image\":", "not valid JSON"},
        {"[1, 2]", "not a JSON object"},
        {"{\"id\":\"x\",\"captions\":{\"en\":[\"c\"]},\"objects\":[]}", "\"image\""},
        {"{\"id\":7,\"image\":\"x.png\",\"captions\":{\"en\":[\"c\"]},\"objects\":[]}", "\"id\""},
        {"{\"id\":\"x\",\"image\":\"x.png\",\"captions\":[\"c\"],\"objects\":[]}", "\"captions\""},
        {"{\"id\":\"x\",\"image\":\"x.png\",\"captions\":{\"en\":\"c\"},\"objects\":[]}", "captions.en"},
        {"{\"id\":\"x\",\"image\":\"x.png\",\"captions\":{\"en\":[3]},\"objects\":[]}", "captions.en[0]"},
        {"{\"id\":\"x\",\"image\":\"x.png\",\"captions\":{},\"objects\":[]}", "no long caption"},
        {"{\"id\":\"x\",\"image\":\"x.png\",\"captions\":{\"en\":[\"c\"]}}", "\"objects\""},
        {"{\"id\":\"x\",\"image\":\"x.png\",\"captions\":{\"en\":[\"c\"]},"
         "\"objects\":[{\"shape\":\"star\",\"size\":\"small\",\"grid\":\"top\"}]}",
         "objects[0].color"},
        {"{\"id\":\"x\",\"image\":\"x.png\",\"captions\":{\"en\":[\"c\"]},\"objects\":[],"
         "\"speech\":{\"captions\":{\"zh\":[false]}}}",
         "speech.captions.zh[0]"},
    };
    char *dir = tmpdir();
    char want_loc[1100];
    snprintf(want_loc, sizeof want_loc, "%s/manifest.jsonl:3:", dir);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        /* The bad line is line 3: the message must count the blank line 2. */
        char text[4096];
        snprintf(text, sizeof text, "%s\n%s\n%s", good, bad[i].line, good);
        write_file(dir, "manifest.jsonl", text);
        qmod_dataset d;
        expect(qmod_dataset_load(dir, &d), QIAO_ERR_FORMAT, want_loc);
        assert_non_null(strstr(qiao_last_error(), bad[i].needle));
        assert_int_equal(d.n, 0);
        assert_null(d.scenes);
        assert_null(d.dir);
    }
    /* An empty manifest holds no data set either. */
    write_file(dir, "manifest.jsonl", "\n");
    qmod_dataset d;
    expect(qmod_dataset_load(dir, &d), QIAO_ERR_FORMAT, "no scenes");
    qt_rm_rf(dir);
    free(dir);
}

/* ---- batches -------------------------------------------------------------- */

static void test_batch_determinism(void **state) {
    fixture *fx = *state;
    qmod_loader_params p = params(fx, 5, 11, true);
    qmod_train_batch a = make(&p, 3), b = make(&p, 3), c = make(&p, 4);
    assert_true(same_batch(fx->m, &a, &b));
    c.index = a.index; /* so only the content can differ */
    assert_false(same_batch(fx->m, &a, &c));
    assert_int_not_equal(memcmp(a.scene, c.scene, 5 * sizeof(int64_t)), 0);
    /* Another seed gives another batch 3. */
    qmod_loader_params q = params(fx, 5, 12, true);
    qmod_train_batch e = make(&q, 3);
    assert_false(same_batch(fx->m, &a, &e));
    /* Sizes: B rows of everything; all scenes have speech so A == B. */
    assert_int_equal(a.B, 5);
    assert_int_equal(a.A, 5);
    assert_int_equal(a.text.B, 5);
    assert_int_equal(a.image.B, 5);
    assert_int_equal(a.image.T, fx->m->cfg.image.tokens);
    assert_int_equal(a.audio.B, 5);
    assert_true(a.audio.T >= 1 && a.audio.T <= fx->m->cfg.audio.max_frames);
    /* Without audio nothing is spoken. */
    qmod_loader_params r = params(fx, 5, 11, false);
    qmod_train_batch f = make(&r, 3);
    assert_int_equal(f.A, 0);
    assert_int_equal(f.audio.B, 0);
    assert_null(f.audio.mel);
    assert_memory_equal(f.scene, a.scene, 5 * sizeof(int64_t));
    assert_memory_equal(f.text_lang, a.text_lang, 5);
    qmod_train_batch_free(&a);
    qmod_train_batch_free(&b);
    qmod_train_batch_free(&c);
    qmod_train_batch_free(&e);
    qmod_train_batch_free(&f);
    qmod_train_batch_free(&f); /* cleared */

    /* Bad arguments. */
    qmod_train_batch g;
    p.batch = N_SCENES + 1;
    expect(qmod_train_batch_make(&p, 0, &g), QIAO_ERR_INVALID_ARGUMENT, "batch 25");
    p.batch = 4;
    expect(qmod_train_batch_make(&p, -1, &g), QIAO_ERR_INVALID_ARGUMENT, "index -1");
}

static void test_epoch_cover(void **state) {
    fixture *fx = *state;
    /* B = 4 divides 24: each epoch (6 batches) is a permutation of all scenes. */
    qmod_loader_params p = params(fx, 4, 21, false);
    int64_t order[2][N_SCENES];
    for (int e = 0; e < 2; e++) {
        int seen[N_SCENES] = {0};
        for (int k = 0; k < 6; k++) {
            qmod_train_batch b = make(&p, e * 6 + k);
            for (int i = 0; i < 4; i++) {
                assert_true(b.scene[i] >= 0 && b.scene[i] < N_SCENES);
                seen[b.scene[i]]++;
                order[e][k * 4 + i] = b.scene[i];
            }
            qmod_train_batch_free(&b);
        }
        for (int s = 0; s < N_SCENES; s++) assert_int_equal(seen[s], 1);
    }
    /* Each epoch has its own order, and neither is the identity. */
    assert_int_not_equal(memcmp(order[0], order[1], sizeof order[0]), 0);
    int in_place = 0;
    for (int s = 0; s < N_SCENES; s++) in_place += order[0][s] == s;
    assert_true(in_place < N_SCENES / 2);

    /* B = 5: 4 batches an epoch, 20 distinct scenes, the last 4 dropped. */
    p.batch = 5;
    int seen[N_SCENES] = {0}, distinct = 0;
    for (int k = 0; k < 4; k++) {
        qmod_train_batch b = make(&p, k);
        for (int i = 0; i < 5; i++) distinct += seen[b.scene[i]]++ == 0;
        qmod_train_batch_free(&b);
    }
    assert_int_equal(distinct, 20);
}

/* Row i of the batch holds what scene b->scene[i] says, prepared exactly as
 * qmod_batch_* prepares that one item alone. */
static void check_rows(const fixture *fx, const qmod_train_batch *b) {
    const qmod_model *m = fx->m;
    const int64_t K = m->cfg.text.k, T = b->text.T;
    for (int64_t i = 0; i < b->B; i++) {
        const qmod_scene *s = &fx->d.scenes[b->scene[i]];
        const char *cap = s->caption[b->text_lang[i]];
        assert_non_null(cap);
        qmod_batch one;
        assert_int_equal(qmod_batch_text(m, &cap, 1, &one), QIAO_OK);
        assert_int_equal(b->text.lengths[i], one.lengths[0]);
        assert_true(one.T <= T);
        assert_memory_equal(b->text.ids + i * T, one.ids, (size_t)one.T * sizeof(int32_t));
        assert_memory_equal(b->text.char_ids + i * T * K, one.char_ids, (size_t)(one.T * K) * sizeof(int32_t));
        assert_memory_equal(b->text.tags + i * T, one.tags, (size_t)one.T);
        assert_memory_equal(b->text.mask + i * T, one.mask, (size_t)one.T);
        for (int64_t t = one.T; t < T; t++) assert_int_equal(b->text.mask[i * T + t], 0);
        qmod_batch_free(&one);

        qiao_image *img = NULL;
        assert_int_equal(qiao_image_decode_file(s->image, NULL, &img), QIAO_OK);
        size_t per = qmod_image_floats(m);
        float *x = malloc(per * sizeof(float));
        assert_non_null(x);
        assert_int_equal(qmod_image_patches(m, img, x), QIAO_OK);
        assert_memory_equal(b->image.patches + (size_t)i * per, x, per * sizeof(float));
        assert_int_equal(b->image.lengths[i], m->cfg.image.tokens);
        free(x);
        qiao_image_free(img);
    }
    const int64_t M = m->cfg.audio.n_mels, Ta = b->audio.T;
    for (int64_t j = 0; j < b->A; j++) {
        assert_true(b->audio_rows[j] >= 0 && b->audio_rows[j] < b->B);
        if (j) assert_true(b->audio_rows[j] > b->audio_rows[j - 1]);
        const char *path = fx->d.scenes[b->scene[b->audio_rows[j]]].speech[b->audio_lang[j]];
        assert_non_null(path);
        qiao_audio *a = NULL;
        assert_int_equal(qiao_audio_decode_file(path, NULL, &a), QIAO_OK);
        qmod_batch one;
        assert_int_equal(qmod_batch_audio(m, (const qiao_audio *const *)&a, 1, &one), QIAO_OK);
        assert_int_equal(b->audio.lengths[j], one.lengths[0]);
        assert_memory_equal(b->audio.mel + j * Ta * M, one.mel, (size_t)(one.T * M) * sizeof(float));
        assert_memory_equal(b->audio.mask + j * Ta, one.mask, (size_t)one.T);
        for (int64_t t = one.T; t < Ta; t++) assert_int_equal(b->audio.mask[j * Ta + t], 0);
        qmod_batch_free(&one);
        qiao_audio_free(a);
    }
}

static void test_batch_content(void **state) {
    fixture *fx = *state;
    qmod_loader_params p = params(fx, 6, 31, true);
    int text_langs[2] = {0}, crossed = 0;
    for (int k = 0; k < 4; k++) {
        qmod_train_batch b = make(&p, k);
        assert_int_equal(b.A, b.B);
        check_rows(fx, &b);
        for (int64_t i = 0; i < b.B; i++) {
            text_langs[b.text_lang[i]]++;
            crossed += b.audio_lang[i] != b.text_lang[i];
        }
        qmod_train_batch_free(&b);
    }
    /* 24 independent draws each way: both languages, and audio-text pairs
     * that cross languages. */
    printf("text zh %d en %d, crossed audio-text pairs %d of 24\n", text_langs[0], text_langs[1], crossed);
    assert_true(text_langs[0] > 0 && text_langs[1] > 0);
    assert_true(crossed > 0 && crossed < 24);

    /* Absent languages fall back to the other; scenes without speech are
     * left out of the audio rows. No scene keeps a Chinese caption; even
     * scenes keep only Chinese speech, scenes 1 mod 4 have none. */
    for (int64_t s = 0; s < fx->d.n; s++) {
        qmod_scene *sc = &fx->d.scenes[s];
        free(sc->caption[QMOD_LANG_ZH]);
        sc->caption[QMOD_LANG_ZH] = NULL;
        if (s % 2 == 0) {
            free(sc->speech[QMOD_LANG_EN]);
            sc->speech[QMOD_LANG_EN] = NULL;
        } else if (s % 4 == 1) {
            for (int l = 0; l < QMOD_N_LANGS; l++) {
                free(sc->speech[l]);
                sc->speech[l] = NULL;
            }
        }
    }
    int64_t total_A = 0;
    for (int k = 0; k < 4; k++) {
        qmod_train_batch b = make(&p, k);
        check_rows(fx, &b);
        int64_t want_A = 0;
        for (int64_t i = 0; i < b.B; i++) {
            assert_int_equal(b.text_lang[i], QMOD_LANG_EN);
            want_A += b.scene[i] % 4 != 1;
        }
        assert_int_equal(b.A, want_A);
        assert_int_equal(b.audio.B, want_A);
        for (int64_t j = 0; j < b.A; j++) {
            int64_t s = b.scene[b.audio_rows[j]];
            assert_true(s % 4 != 1);
            if (s % 2 == 0) assert_int_equal(b.audio_lang[j], QMOD_LANG_ZH);
        }
        total_A += b.A;
        qmod_train_batch_free(&b);
    }
    assert_int_equal(total_A, 18);
}

/* ---- the loader ----------------------------------------------------------- */

/* The loader's batches first..first+n-1 equal the synchronous ones. */
static void run_loader(const fixture *fx, qmod_loader_params p, const qmod_train_batch *ref, int64_t n) {
    qmod_loader *l = NULL;
    qiao_status st = qmod_loader_start(&p, &l);
    if (st != QIAO_OK) fail_msg("qmod_loader_start: %s", qiao_last_error());
    for (int64_t k = p.first_batch; k < n; k++) {
        qmod_train_batch *b = NULL;
        st = qmod_loader_next(l, &b);
        if (st != QIAO_OK) fail_msg("qmod_loader_next: %s", qiao_last_error());
        assert_int_equal(b->index, k);
        if (!same_batch(fx->m, b, &ref[k]))
            fail_msg("threads %d prefetch %d: batch %lld differs", p.threads, p.prefetch, (long long)k);
        qmod_loader_release(l, b);
    }
    qmod_loader_stop(l);
}

static void test_loader_order(void **state) {
    fixture *fx = *state;
    enum { NB = 14 }; /* B = 4: two epochs and a bit */
    qmod_loader_params p = params(fx, 4, 41, true);
    qmod_train_batch ref[NB];
    for (int k = 0; k < NB; k++) ref[k] = make(&p, k);
    p.threads = 1, p.prefetch = 2;
    run_loader(fx, p, ref, NB);
    p.threads = 3, p.prefetch = 3;
    run_loader(fx, p, ref, NB);
    p.threads = 3, p.prefetch = 1;
    run_loader(fx, p, ref, NB);
    /* Resuming at batch 7 (inside the second epoch) sees the same batches. */
    p.threads = 2, p.prefetch = 4, p.first_batch = 7;
    run_loader(fx, p, ref, NB);

    /* Holding batches: with prefetch 2 the consumer may hold one batch while
     * taking the next, but asking for a third while holding two cannot be
     * served and says so instead of hanging. */
    p.threads = 2, p.prefetch = 2, p.first_batch = 0;
    qmod_loader *l = NULL;
    assert_int_equal(qmod_loader_start(&p, &l), QIAO_OK);
    qmod_train_batch *b0 = NULL, *b1 = NULL, *b2 = NULL;
    assert_int_equal(qmod_loader_next(l, &b0), QIAO_OK);
    assert_int_equal(qmod_loader_next(l, &b1), QIAO_OK);
    assert_int_equal(b0->index, 0);
    assert_int_equal(b1->index, 1);
    expect(qmod_loader_next(l, &b2), QIAO_ERR_INVALID_ARGUMENT, "batch 0 is still held");
    assert_null(b2);
    assert_true(same_batch(fx->m, b1, &ref[1]));
    qmod_loader_release(l, b0);
    assert_int_equal(qmod_loader_next(l, &b2), QIAO_OK);
    assert_true(same_batch(fx->m, b2, &ref[2]));
    qmod_loader_release(l, b1);
    qmod_loader_release(l, b2);
    qmod_loader_stop(l);
    qmod_loader_stop(NULL);

    /* Bad parameters. */
    p.threads = 0;
    expect(qmod_loader_start(&p, &l), QIAO_ERR_INVALID_ARGUMENT, "threads 0");
    assert_null(l);
    p.threads = 1, p.prefetch = 0;
    expect(qmod_loader_start(&p, &l), QIAO_ERR_INVALID_ARGUMENT, "prefetch 0");
    for (int k = 0; k < NB; k++) qmod_train_batch_free(&ref[k]);
}

static void test_loader_stop(void **state) {
    fixture *fx = *state;
    qmod_loader_params p = params(fx, 4, 51, true);
    /* Workers blocked on a full ring (nothing consumed): more workers than
     * slots, so some wait for a slot that never frees. */
    p.threads = 3, p.prefetch = 1;
    qmod_loader *l = NULL;
    assert_int_equal(qmod_loader_start(&p, &l), QIAO_OK);
    usleep(500 * 1000);
    double t0 = qc_now();
    qmod_loader_stop(l);
    printf("stop with a full ring: %.3f s\n", qc_now() - t0);

    /* A batch still held by the consumer, others ready. */
    p.threads = 2, p.prefetch = 3;
    assert_int_equal(qmod_loader_start(&p, &l), QIAO_OK);
    qmod_train_batch *b = NULL;
    assert_int_equal(qmod_loader_next(l, &b), QIAO_OK);
    usleep(300 * 1000);
    qmod_loader_stop(l);

    /* Straight after start, workers mid-batch. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(qmod_loader_start(&p, &l), QIAO_OK);
        qmod_loader_stop(l);
    }
}

/* ---- missing files ---------------------------------------------------------- */

static void test_missing_file(void **state) {
    fixture *fx = *state;
    qmod_loader_params p = params(fx, 4, 61, true);
    /* The scene in row 1 of batch 2 loses its image. */
    qmod_train_batch b = make(&p, 2);
    qmod_scene *victim = &fx->d.scenes[b.scene[1]];
    qmod_train_batch_free(&b);
    char gone[1024];
    snprintf(gone, sizeof gone, "%s/images/no-such-image.png", fx->dir);
    char *image = victim->image;
    victim->image = strdup(gone);

    expect(qmod_train_batch_make(&p, 2, &b), QIAO_ERR_IO, gone);
    assert_non_null(strstr(qiao_last_error(), victim->id));
    assert_null(b.scene);
    b = make(&p, 1);
    qmod_train_batch_free(&b);

    /* Through the loader: batches 0 and 1 come, then batch 2's error,
     * raised on this thread with the worker's message, and again after. */
    for (int threads = 1; threads <= 3; threads += 2) {
        p.threads = threads, p.prefetch = 2;
        qmod_loader *l = NULL;
        assert_int_equal(qmod_loader_start(&p, &l), QIAO_OK);
        qmod_train_batch *got = NULL;
        for (int k = 0; k < 2; k++) {
            qiao_status st = qmod_loader_next(l, &got);
            if (st != QIAO_OK) fail_msg("batch %d: %s", k, qiao_last_error());
            assert_int_equal(got->index, k);
            qmod_loader_release(l, got);
        }
        qc_error_clear();
        expect(qmod_loader_next(l, &got), QIAO_ERR_IO, gone);
        assert_null(got);
        expect(qmod_loader_next(l, &got), QIAO_ERR_IO, gone);
        qmod_loader_stop(l);
    }

    /* A missing speech file names the WAV. */
    free(victim->image);
    victim->image = image;
    snprintf(gone, sizeof gone, "%s/speech/no-such-clip.wav", fx->dir);
    for (int l = 0; l < QMOD_N_LANGS; l++) {
        free(victim->speech[l]);
        victim->speech[l] = strdup(gone);
    }
    expect(qmod_train_batch_make(&p, 2, &b), QIAO_ERR_IO, gone);
    p.audio = false; /* without speech the scene is fine */
    b = make(&p, 2);
    qmod_train_batch_free(&b);
}

/* Place groups: scenes with the same objects in different places share
 * batches far more often than a plain shuffle puts them together, every
 * epoch still visits each scene once, and the order is a pure function of
 * (seed, batch index). The data: "a small red circle" in all 9 places plus
 * a second one at the top (10 scenes, one signature twice), "a large blue
 * star" in 6 places, and 48 scenes that share their objects with no other. */
static void test_place_groups(void **state) {
    fixture *fx = *state;
    static const char *const places[9] = {"top-left", "top",         "top-right", "left", "center",
                                          "right",    "bottom-left", "bottom",    "bottom-right"};
    static const char *const colors[8] = {"red", "orange", "yellow", "green", "blue", "purple", "brown", "black"};
    static const char *const shapes[6] = {"square", "triangle", "hexagon", "cross", "diamond", "star"};
    enum { N = 64, B = 8, EPOCHS = 12 };
    char *dir = tmpdir();
    /* every scene shows the fixture's first picture: only the order is under test */
    {
        FILE *in = fopen(fx->d.scenes[0].image, "rb");
        assert_non_null(in);
        char path[1100];
        snprintf(path, sizeof path, "%s/g.png", dir);
        FILE *out = fopen(path, "wb");
        assert_non_null(out);
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, in)) > 0) assert_int_equal(fwrite(buf, 1, n, out), n);
        fclose(in);
        fclose(out);
    }
    char *text = malloc(N * 512), *at = text;
    int key[N];
    for (int i = 0; i < N; i++) {
        char objs[300];
        if (i < 10) {
            key[i] = 1;
            snprintf(objs, sizeof objs, "{\"color\":\"red\",\"size\":\"small\",\"shape\":\"circle\",\"grid\":\"%s\"}",
                     places[i < 9 ? i : 1]);
        } else if (i < 16) {
            key[i] = 2;
            snprintf(objs, sizeof objs, "{\"color\":\"blue\",\"size\":\"large\",\"shape\":\"star\",\"grid\":\"%s\"}",
                     places[i - 10]);
        } else {
            key[i] = 0;
            const int j = i - 16; /* 48 distinct (colour, shape) pairs */
            snprintf(objs, sizeof objs,
                     "{\"color\":\"%s\",\"size\":\"small\",\"shape\":\"%s\",\"grid\":\"top\"},"
                     "{\"color\":\"green\",\"size\":\"large\",\"shape\":\"circle\",\"grid\":\"%s\"}",
                     colors[j % 8], shapes[j / 8], places[j % 9]);
        }
        at += sprintf(at, "{\"id\":\"s%d\",\"image\":\"g.png\",\"captions\":{\"en\":[\"scene %d\"]},\"objects\":[%s]}\n",
                      i, i, objs);
    }
    write_file(dir, "manifest.jsonl", text);
    free(text);
    qmod_dataset d;
    assert_int_equal(qmod_dataset_load(dir, &d), QIAO_OK);
    assert_int_equal(d.n, N);

    long pairs[2] = {0, 0}; /* same-key pairs sharing a batch: shuffle, place groups */
    for (int mode = 0; mode < 2; mode++) {
        qmod_loader_params p = {.model = fx->m, .data = &d, .batch = B, .seed = 5, .threads = 1, .prefetch = 1};
        p.place_groups = mode ? 4 : 0;
        for (int e = 0; e < EPOCHS; e++) {
            int seen[N] = {0};
            for (int k = 0; k < N / B; k++) {
                qmod_train_batch b = make(&p, e * (N / B) + k);
                for (int i = 0; i < B; i++) {
                    seen[b.scene[i]]++;
                    for (int j = 0; j < i; j++) pairs[mode] += key[b.scene[i]] && key[b.scene[i]] == key[b.scene[j]];
                }
                if (mode && k == 1 && e == 0) { /* a pure function of (seed, index) */
                    qmod_train_batch again = make(&p, 1);
                    assert_memory_equal(again.scene, b.scene, B * sizeof(int64_t));
                    qmod_train_batch_free(&again);
                }
                qmod_train_batch_free(&b);
            }
            for (int s = 0; s < N; s++) assert_int_equal(seen[s], 1);
        }
    }
    /* A shuffle expects 28 * (10*9 + 6*5) / (64*63) = 0.83 pairs a batch,
     * 80 in the 96 batches; the groups alone hold 12 + 6 = 18 pairs an
     * epoch before any straddle a batch boundary. */
    printf("  same-key pairs in %d batches: shuffle %ld, place groups %ld\n", EPOCHS * N / B, pairs[0], pairs[1]);
    assert_true(pairs[1] > 2 * pairs[0]);
    qmod_dataset_free(&d);
    qt_rm_rf(dir);
    free(dir);
}

int main(int argc, char **argv) {
#define WITH_FIXTURE(f) cmocka_unit_test_setup_teardown(f, fixture_setup, fixture_teardown)
    const struct CMUnitTest tests[] = {
        WITH_FIXTURE(test_manifest),      cmocka_unit_test(test_malformed),  WITH_FIXTURE(test_batch_determinism),
        WITH_FIXTURE(test_epoch_cover),   WITH_FIXTURE(test_batch_content), WITH_FIXTURE(test_loader_order),
        WITH_FIXTURE(test_loader_stop),   WITH_FIXTURE(test_missing_file), WITH_FIXTURE(test_place_groups),
    };
    if (argc > 1) {
        char filter[128];
        snprintf(filter, sizeof filter, "test_%s", argv[1]);
        cmocka_set_test_filter(filter);
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
