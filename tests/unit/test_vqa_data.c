/* tests/unit/test_vqa_data.c - the VQA questions reader and loader
 * (models/data/vqa.c, vqa_manifest.c), on a few scenes generated with
 * --speech-questions: the questions against the generator's own scenes,
 * batches as pure functions of (seed, index, params) for any thread count,
 * a resumed loader equal to an uninterrupted one, absent rows flagged and
 * run through the encoders, degradations moving the input statistics the
 * expected way, the evaluation walk covering every question once, and
 * malformed manifests and missing files failing with clear messages. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/data/vqa.h"
#include "shapes/shapes.h"
#include "model_fixture.h"
#include "testfs.h"
#include "testutil.h"

#define N_SCENES 5
#define GEN_SEED 5

static char *tmpdir(void) {
    const char *t = getenv("TMPDIR");
    char buf[512];
    snprintf(buf, sizeof buf, "%s/qiao_vqa_XXXXXX", t && *t ? t : "/tmp");
    char *d = strdup(buf);
    assert_non_null(mkdtemp(d));
    return d;
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

/* ---- the fixture: one generated split for every case ---------------------- */

typedef struct fixture {
    char *dir;
    qmod_vqa_dataset d;
    qmod_model *m;
} fixture;

static void generate(const char *dir, shapes_split split, int64_t n, int speech) {
    shapes_params p = shapes_default_params();
    p.n = n;
    p.seed = GEN_SEED;
    p.split = split;
    p.size = 48;
    p.speech = speech;
    p.langs = 3;
    p.jobs = 2;
    qiao_status st = shapes_generate(&p, dir);
    if (st != QIAO_OK) fail_msg("shapes_generate: %s", qiao_last_error());
}

static int group_setup(void **state) {
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx) return -1;
    *state = fx;
    fx->dir = tmpdir();
    generate(fx->dir, SHAPES_TRAIN, N_SCENES, SHAPES_SPEECH_QUESTIONS);
    qiao_status st = qmod_vqa_dataset_load(fx->dir, &fx->d);
    if (st != QIAO_OK) fail_msg("qmod_vqa_dataset_load: %s", qiao_last_error());
    fx->m = qt_tiny_model(1, true);
    return 0;
}

static int group_teardown(void **state) {
    fixture *fx = *state;
    if (!fx) return 0;
    qmod_vqa_dataset_free(&fx->d);
    qmod_free(fx->m);
    if (fx->dir) qt_rm_rf(fx->dir);
    free(fx->dir);
    free(fx);
    return 0;
}

static qmod_vqa_loader_params params(const fixture *fx, int64_t B, uint64_t seed) {
    qmod_vqa_loader_params p = {0};
    p.model = fx->m;
    p.data = &fx->d;
    p.vqa = qmod_vqa_default_params();
    p.batch = B;
    p.seed = seed;
    p.threads = 1;
    p.prefetch = 2;
    return p;
}

/* Training with everything switched on, so determinism covers every draw. */
static qmod_vqa_params busy(void) {
    qmod_vqa_params v = qmod_vqa_default_params();
    v.p_drop_text = 0.3f;
    v.p_drop_audio = 0.3f;
    v.p_drop_image = 0.2f;
    v.p_image_noise = 0.5f;
    v.p_occlude = 0.5f;
    v.p_audio_noise = 0.5f;
    return v;
}

static qmod_vqa_batch make(const qmod_vqa_loader_params *p, int64_t index) {
    qmod_vqa_batch b;
    qiao_status st = qmod_vqa_batch_make(p, index, &b);
    if (st != QIAO_OK) fail_msg("qmod_vqa_batch_make(%lld): %s", (long long)index, qiao_last_error());
    assert_int_equal(b.index, index);
    return b;
}

/* ---- comparing batches ---------------------------------------------------- */

static bool same_bytes(const void *a, const void *b, size_t n) {
    if (!a || !b) return a == b;
    return n == 0 || memcmp(a, b, n) == 0;
}

static bool same_modality(const qmod_batch *a, const qmod_batch *b, int64_t K, int64_t per_item) {
    if (a->mod != b->mod || a->B != b->B || a->T != b->T) return false;
    const size_t BT = (size_t)(a->B * a->T);
    return same_bytes(a->ids, b->ids, BT * sizeof(int32_t)) &&
           same_bytes(a->char_ids, b->char_ids, BT * (size_t)K * sizeof(int32_t)) && same_bytes(a->tags, b->tags, BT) &&
           same_bytes(a->mask, b->mask, BT) &&
           same_bytes(a->patches, b->patches, (size_t)(a->B * per_item) * sizeof(float)) &&
           same_bytes(a->mel, b->mel, BT * (size_t)per_item * sizeof(float)) &&
           same_bytes(a->lengths, b->lengths, (size_t)a->B * sizeof(int64_t));
}

static bool same_batch(const qmod_model *m, const qmod_vqa_batch *a, const qmod_vqa_batch *b) {
    const size_t B = (size_t)a->B;
    bool ok = a->index == b->index && a->B == b->B && same_bytes(a->question, b->question, B * sizeof(int64_t)) &&
              same_bytes(a->scene, b->scene, B * sizeof(int64_t)) &&
              same_bytes(a->answer, b->answer, B * sizeof(int32_t)) && same_bytes(a->type, b->type, B) &&
              same_bytes(a->lang, b->lang, B) && same_bytes(a->present, b->present, B * QF_NMOD) &&
              same_bytes(a->image_sigma, b->image_sigma, B * sizeof(float)) &&
              same_bytes(a->occluded, b->occluded, B * sizeof(float)) &&
              same_bytes(a->snr_db, b->snr_db, B * sizeof(float));
    for (int k = 0; k < QF_NMOD; k++)
        ok = ok && same_bytes(a->stats[k], b->stats[k], B * QF_NSTATS * sizeof(float));
    return ok && same_modality(&a->text, &b->text, m->cfg.text.k, 0) &&
           same_modality(&a->image, &b->image, 0, (int64_t)qmod_image_floats(m)) &&
           same_modality(&a->audio, &b->audio, 0, m->cfg.audio.n_mels);
}

/* ---- cases ------------------------------------------------------------------ */

/* Every question of the manifest, with the generator's answer ids, types,
 * languages and texts, and its WAV. A cogent split marks its scenes. */
static void test_manifest(void **state) {
    fixture *fx = *state;
    const qmod_vqa_dataset *d = &fx->d;
    assert_int_equal(d->n_scenes, N_SCENES);
    assert_int_equal(d->n_answers, SHAPES_NANSWERS);
    for (int a = 0; a < SHAPES_NANSWERS; a++)
        assert_string_equal(d->answers[a], shapes_answer_key(a));
    assert_int_equal(d->n_types, SHAPES_NQTYPES);
    for (int t = 0; t < SHAPES_NQTYPES; t++)
        assert_string_equal(d->types[t], shapes_qtype_name(t));
    assert_int_equal(d->n_attr[QMOD_VQA_SHAPE], SHAPES_NSHAPES);
    assert_int_equal(d->n_attr[QMOD_VQA_COLOR], SHAPES_NCOLORS);
    assert_int_equal(d->n_attr[QMOD_VQA_SIZE], SHAPES_NSIZES);
    assert_string_equal(d->attr[QMOD_VQA_COLOR][2], shapes_name(SHAPES_K_COLOR, 2));
    int64_t nq = 0;
    shapes_scene *sc = malloc(sizeof *sc);
    assert_non_null(sc);
    for (int64_t i = 0; i < d->n_scenes; i++) {
        assert_int_equal(shapes_scene_make(GEN_SEED, SHAPES_TRAIN, i, sc), QIAO_OK);
        const qmod_vqa_scene *s = &d->scenes[i];
        assert_int_equal(s->n_objects, sc->n);
        for (int j = 0; j < sc->n; j++) {
            const qmod_vqa_object *ob = &s->objects[j];
            assert_int_equal(ob->attr[QMOD_VQA_SHAPE], sc->obj[j].shape);
            assert_int_equal(ob->attr[QMOD_VQA_COLOR], sc->obj[j].color);
            assert_int_equal(ob->attr[QMOD_VQA_SIZE], sc->obj[j].size);
            /* the manifest writes places to 4 decimals */
            assert_true(fabsf(ob->x - sc->obj[j].x) < 1e-4f && fabsf(ob->y - sc->obj[j].y) < 1e-4f);
            assert_true(fabsf(ob->r - sc->obj[j].r) < 1e-4f);
        }
        assert_false(s->cogent);
        assert_int_equal(s->first_question, nq);
        assert_int_equal(s->n_questions, 2 * sc->nqa);
        assert_non_null(strstr(s->image, "images/"));
        for (int k = 0; k < sc->nqa; k++)
            for (int l = 0; l < 2; l++) {
                const qmod_vqa_question *q = &d->questions[nq++];
                assert_int_equal(q->scene, i);
                assert_int_equal(q->answer, sc->qa[k].answer);
                assert_int_equal(q->type, sc->qa[k].type);
                assert_int_equal(q->lang, l);
                assert_string_equal(q->text, sc->qa[k].text[l]);
                assert_non_null(q->speech);
                assert_int_equal(access(q->speech, R_OK), 0);
            }
    }
    free(sc);
    assert_int_equal(d->n_questions, nq);
    assert_int_equal(d->n_spoken, nq);

    /* cogent scenes, no speech */
    char *dir = tmpdir();
    generate(dir, SHAPES_COGENT, 3, SHAPES_SPEECH_NONE);
    qmod_vqa_dataset c;
    expect(qmod_vqa_dataset_load(dir, &c), QIAO_OK, NULL);
    assert_int_equal(c.n_spoken, 0);
    for (int64_t i = 0; i < c.n_scenes; i++)
        assert_true(c.scenes[i].cogent);
    for (int64_t i = 0; i < c.n_questions; i++)
        assert_null(c.questions[i].speech);
    /* spoken-only needs speech; typed-only on it is fine */
    qmod_vqa_loader_params p = params(fx, 4, 1);
    p.data = &c;
    p.vqa.p_drop_text = 1.0f;
    qmod_vqa_batch b;
    expect(qmod_vqa_batch_make(&p, 0, &b), QIAO_ERR_INVALID_ARGUMENT, "--speech-questions");
    p.vqa.p_drop_text = 0.0f;
    expect(qmod_vqa_batch_make(&p, 0, &b), QIAO_OK, NULL);
    for (int64_t i = 0; i < b.B; i++) {
        assert_int_equal(b.present[i * QF_NMOD + QF_AUDIO], 0);
        assert_int_equal(b.present[i * QF_NMOD + QF_TEXT], 1);
    }
    qmod_vqa_batch_free(&b);
    qmod_vqa_dataset_free(&c);
    qt_rm_rf(dir);
    free(dir);
}

/* The same batch from two calls, and from loaders of 1 and 2 threads. */
static void test_determinism(void **state) {
    fixture *fx = *state;
    qmod_vqa_loader_params p = params(fx, 6, 11);
    p.vqa = busy();
    enum { K = 5 };
    qmod_vqa_batch ref[K];
    for (int k = 0; k < K; k++)
        ref[k] = make(&p, k);
    qmod_vqa_batch again = make(&p, 3);
    assert_true(same_batch(fx->m, &ref[3], &again));
    qmod_vqa_batch_free(&again);
    /* another seed gives other batches */
    qmod_vqa_loader_params q = p;
    q.seed = 12;
    qmod_vqa_batch other = make(&q, 3);
    assert_false(same_batch(fx->m, &ref[3], &other));
    qmod_vqa_batch_free(&other);
    for (int threads = 1; threads <= 2; threads++) {
        qmod_vqa_cache *cache = NULL;
        assert_int_equal(qmod_vqa_cache_new(&fx->d, &cache), QIAO_OK);
        p.threads = threads;
        p.prefetch = 3;
        p.cache = threads == 2 ? cache : NULL; /* shared cache, or the loader's own */
        qmod_vqa_loader *l = NULL;
        expect(qmod_vqa_loader_start(&p, &l), QIAO_OK, NULL);
        for (int k = 0; k < K; k++) {
            qmod_vqa_batch *b = NULL;
            expect(qmod_vqa_loader_next(l, &b), QIAO_OK, NULL);
            assert_non_null(b);
            if (!same_batch(fx->m, &ref[k], b)) fail_msg("threads %d: batch %d differs", threads, k);
            qmod_vqa_loader_release(l, b);
        }
        qmod_vqa_loader_stop(l);
        if (threads == 2) assert_true(qmod_vqa_cache_bytes(cache) >= 48 * 48 * 3);
        qmod_vqa_cache_free(cache);
    }
    for (int k = 0; k < K; k++)
        qmod_vqa_batch_free(&ref[k]);
}

/* A loader started at batch 4 gives what an uninterrupted one gives from
 * there, across the epoch boundary (the fixture has ~40 questions: 6 a batch
 * makes an epoch about 7 batches). */
static void test_resume(void **state) {
    fixture *fx = *state;
    qmod_vqa_loader_params p = params(fx, 6, 21);
    p.vqa = busy();
    p.threads = 2;
    const int64_t bpe = qmod_vqa_epoch_batches(&fx->d, 6, false);
    assert_true(bpe >= 2);
    enum { N = 12 };
    qmod_vqa_batch ref[N];
    qmod_vqa_loader *l = NULL;
    expect(qmod_vqa_loader_start(&p, &l), QIAO_OK, NULL);
    for (int k = 0; k < N; k++) {
        qmod_vqa_batch *b = NULL;
        expect(qmod_vqa_loader_next(l, &b), QIAO_OK, NULL);
        assert_int_equal(b->index, k);
        /* keep a copy: batch_make is the reference for the copy's equality */
        ref[k] = make(&p, k);
        assert_true(same_batch(fx->m, &ref[k], b));
        qmod_vqa_loader_release(l, b);
    }
    qmod_vqa_loader_stop(l);
    /* one epoch visits each question at most once */
    uint8_t *seen = calloc((size_t)fx->d.n_questions, 1);
    assert_non_null(seen);
    for (int64_t k = 0; k < bpe; k++)
        for (int64_t i = 0; i < ref[k].B; i++)
            assert_int_equal(seen[ref[k].question[i]]++, 0);
    free(seen);
    p.first_batch = 4;
    p.threads = 1;
    expect(qmod_vqa_loader_start(&p, &l), QIAO_OK, NULL);
    for (int k = 4; k < N; k++) {
        qmod_vqa_batch *b = NULL;
        expect(qmod_vqa_loader_next(l, &b), QIAO_OK, NULL);
        if (!same_batch(fx->m, &ref[k], b)) fail_msg("resumed batch %d differs", k);
        qmod_vqa_loader_release(l, b);
    }
    qmod_vqa_loader_stop(l);
    for (int k = 0; k < N; k++)
        qmod_vqa_batch_free(&ref[k]);
}

/* Absent rows: flagged, never both question modalities, minimal inputs the
 * encoders run on, zero statistics. */
static void test_absent(void **state) {
    fixture *fx = *state;
    qmod_vqa_loader_params p = params(fx, 16, 31);
    p.vqa.p_drop_text = 0.5f;
    p.vqa.p_drop_audio = 0.5f;
    p.vqa.p_drop_image = 0.5f;
    qb_exec ex;
    qb_exec_cpu(&ex, 1);
    int absent[QF_NMOD] = {0}, rows = 0;
    for (int k = 0; k < 3; k++) {
        qmod_vqa_batch b = make(&p, k);
        assert_int_equal(b.text.B, b.B);
        assert_int_equal(b.image.B, b.B);
        assert_int_equal(b.audio.B, b.B);
        for (int64_t i = 0; i < b.B; i++, rows++) {
            const uint8_t *pr = b.present + i * QF_NMOD;
            assert_true(pr[QF_TEXT] || pr[QF_AUDIO]);
            for (int m = 0; m < QF_NMOD; m++) {
                absent[m] += !pr[m];
                bool zero = true;
                for (int s = 0; s < QF_NSTATS; s++)
                    zero = zero && b.stats[m][i * QF_NSTATS + s] == 0.0f;
                if (!pr[m]) assert_true(zero);
                if (pr[m] && m != QF_TEXT) assert_false(zero);
            }
            if (!pr[QF_TEXT]) {
                assert_int_equal(b.text.lengths[i], 0);
                for (int64_t t = 0; t < b.text.T; t++)
                    assert_int_equal(b.text.mask[i * b.text.T + t], 0);
            } else {
                assert_true(b.text.lengths[i] > 0);
                assert_true(b.stats[QF_TEXT][i * QF_NSTATS + 1] == (float)b.text.lengths[i]);
            }
            if (!pr[QF_AUDIO]) {
                assert_int_equal(b.audio.lengths[i], 0);
                for (int64_t t = 0; t < b.audio.T; t++)
                    assert_int_equal(b.audio.mask[i * b.audio.T + t], 0);
            } else {
                assert_true(b.audio.lengths[i] > 10);
            }
            if (!pr[QF_IMAGE]) {
                const size_t per = qmod_image_floats(fx->m);
                for (size_t j = 0; j < per; j++)
                    assert_true(b.image.patches[(size_t)i * per + j] == 0.0f);
            }
        }
        /* the encoders take every row */
        const qmod_batch *mb[3] = {&b.text, &b.image, &b.audio};
        for (int m = 0; m < 3; m++) {
            qmod_work w;
            expect(qmod_work_init(&w, fx->m, mb[m]->mod, b.B, mb[m]->T, false), QIAO_OK, NULL);
            const float *emb = NULL;
            expect(qmod_forward(&ex, fx->m, &w, mb[m], &emb), QIAO_OK, NULL);
            for (int64_t j = 0; j < b.B * fx->m->cfg.embed_dim; j++)
                assert_true(isfinite(emb[j]));
            qmod_work_free(&w);
        }
        qmod_vqa_batch_free(&b);
    }
    for (int m = 0; m < QF_NMOD; m++)
        assert_true(absent[m] > 0 && absent[m] < rows);
    /* typed-only reads no WAV: every audio row absent */
    p.vqa = qmod_vqa_default_params();
    p.vqa.p_drop_audio = 1.0f;
    qmod_vqa_batch b = make(&p, 0);
    for (int64_t i = 0; i < b.B; i++)
        assert_int_equal(b.present[i * QF_NMOD + QF_AUDIO], 0);
    assert_int_equal(b.audio.T, 1);
    qmod_vqa_batch_free(&b);
}

/* Evaluation conditions against the clean one, row by row: picture noise
 * raises the Laplacian, a grey occluder raises the contrast and a
 * mean-coloured one lowers contrast and Laplacian, audio noise (white or
 * babble) narrows the loud/quiet spread; each row's draws come from (seed,
 * question), so the batch size does not matter. */
static void test_degrade(void **state) {
    fixture *fx = *state;
    qmod_vqa_loader_params p = params(fx, 8, 41);
    p.eval = true;
    qmod_vqa_batch clean = make(&p, 0);
    for (int64_t i = 0; i < clean.B; i++) {
        for (int m = 0; m < QF_NMOD; m++)
            assert_int_equal(clean.present[i * QF_NMOD + m], 1);
        assert_true(clean.image_sigma[i] == 0.0f && clean.occluded[i] == 0.0f && isinf(clean.snr_db[i]));
    }
    qmod_vqa_loader_params c = p;
    c.vqa.p_image_noise = 1.0f;
    c.vqa.image_sigma[0] = c.vqa.image_sigma[1] = 20.0f;
    c.vqa.p_audio_noise = 1.0f;
    c.vqa.audio_snr_db[0] = c.vqa.audio_snr_db[1] = 0.0f;
    qmod_vqa_batch noisy = make(&c, 0);
    c = p;
    c.vqa.p_occlude = 1.0f;
    c.vqa.occlude_frac[0] = c.vqa.occlude_frac[1] = 0.4f;
    c.vqa.occlude_fill = QMOD_VQA_FILL_GREY;
    qmod_vqa_batch occl = make(&c, 0);
    c.vqa.occlude_fill = QMOD_VQA_FILL_MEAN;
    qmod_vqa_batch flat = make(&c, 0);
    c.vqa.audio_noise = QMOD_VQA_NOISE_BABBLE;
    c.vqa.p_audio_noise = 1.0f;
    c.vqa.audio_snr_db[0] = c.vqa.audio_snr_db[1] = 0.0f;
    qmod_vqa_batch babble = make(&c, 0);
    for (int64_t i = 0; i < clean.B; i++) {
        const float *ci = clean.stats[QF_IMAGE] + i * QF_NSTATS, *ni = noisy.stats[QF_IMAGE] + i * QF_NSTATS;
        const float *oi = occl.stats[QF_IMAGE] + i * QF_NSTATS, *fi = flat.stats[QF_IMAGE] + i * QF_NSTATS;
        const float *ca = clean.stats[QF_AUDIO] + i * QF_NSTATS, *na = noisy.stats[QF_AUDIO] + i * QF_NSTATS;
        const float *ba = babble.stats[QF_AUDIO] + i * QF_NSTATS;
        printf("  row %lld: image contrast %.1f -> noise %.1f, grey %.1f, mean %.1f; laplacian %.1f -> %.1f, %.1f, "
               "%.1f; audio spread %.1f dB -> white %.1f, babble %.1f; centroid %.0f -> %.0f Hz\n",
               (long long)i, ci[0], ni[0], oi[0], fi[0], ci[1], ni[1], oi[1], fi[1], ca[2], na[2], ba[2], ca[0], na[0]);
        assert_true(ni[1] > ci[1] + 5.0f);
        /* a grey occluder is a dark object on a light ground: more contrast;
         * a mean-coloured one hides: less contrast and less high frequency */
        assert_true(oi[0] > ci[0]);
        assert_true(fi[0] < ci[0] && fi[1] < ci[1]);
        assert_true(na[2] < ca[2] - 3.0f);
        assert_true(ba[2] < ca[2]);
        assert_true(noisy.image_sigma[i] == 20.0f && noisy.snr_db[i] == 0.0f && occl.occluded[i] == 0.4f);
        /* the text is untouched */
        assert_true(memcmp(clean.stats[QF_TEXT] + i * QF_NSTATS, noisy.stats[QF_TEXT] + i * QF_NSTATS,
                           QF_NSTATS * sizeof(float)) == 0);
    }
    /* batch size 3: the same rows (questions 3..5 are batch 1's) */
    c = p;
    c.vqa.p_image_noise = 1.0f;
    c.vqa.image_sigma[0] = c.vqa.image_sigma[1] = 20.0f;
    c.vqa.p_audio_noise = 1.0f;
    c.vqa.audio_snr_db[0] = c.vqa.audio_snr_db[1] = 0.0f;
    c.batch = 3;
    qmod_vqa_batch small = make(&c, 1);
    for (int m = 0; m < QF_NMOD; m++)
        assert_true(memcmp(small.stats[m], noisy.stats[m] + 3 * QF_NSTATS, 3 * QF_NSTATS * sizeof(float)) == 0);
    qmod_vqa_batch_free(&small);
    qmod_vqa_batch_free(&clean);
    qmod_vqa_batch_free(&noisy);
    qmod_vqa_batch_free(&occl);
    qmod_vqa_batch_free(&flat);
    qmod_vqa_batch_free(&babble);
}

/* The evaluation walk: every question once, in order, the last batch short,
 * then NULL. */
static void test_eval_cover(void **state) {
    fixture *fx = *state;
    const int64_t n = fx->d.n_questions, B = 7;
    assert_true(n % B != 0);
    for (int threads = 1; threads <= 2; threads++) {
        qmod_vqa_loader_params p = params(fx, B, 51);
        p.eval = true;
        p.threads = threads;
        p.vqa.p_drop_audio = 1.0f; /* typed-only: fast */
        qmod_vqa_loader *l = NULL;
        expect(qmod_vqa_loader_start(&p, &l), QIAO_OK, NULL);
        int64_t next = 0, batches = 0;
        for (;;) {
            qmod_vqa_batch *b = NULL;
            expect(qmod_vqa_loader_next(l, &b), QIAO_OK, NULL);
            if (!b) break;
            assert_int_equal(b->index, batches++);
            assert_int_equal(b->B, n - next < B ? n - next : B);
            for (int64_t i = 0; i < b->B; i++) {
                assert_int_equal(b->question[i], next);
                assert_int_equal(b->answer[i], fx->d.questions[next].answer);
                next++;
            }
            qmod_vqa_loader_release(l, b);
        }
        assert_int_equal(next, n);
        assert_int_equal(batches, qmod_vqa_epoch_batches(&fx->d, B, true));
        qmod_vqa_batch *b = (qmod_vqa_batch *)1;
        expect(qmod_vqa_loader_next(l, &b), QIAO_OK, NULL); /* still the end */
        assert_null(b);
        qmod_vqa_loader_stop(l);
    }
}

/* Malformed dataset.json and manifest lines name the file and line; a
 * missing WAV or picture fails its batch naming the path; bad params. */
/* The cell labels of the dense object loss: the object covering a cell
 * labels it, the larger share wins, empty cells are 0, an unknown
 * attribute or an object without a place gives no target (-1). */
static void test_cells(void **state) {
    (void)state;
    static const char desc[] = "{\"answers\": [{\"id\": \"yes\"}], \"question_types\": [\"exist\"], "
                               "\"shapes\": [\"circle\", \"star\"], \"colors\": [\"red\", \"blue\", \"green\"], "
                               "\"sizes\": [\"small\", \"large\"]}";
    /* grid 8: cell (row 4, col 4) spans [0.5, 0.625]^2, centre 0.5625 */
    static const char man[] =
        "{\"id\": \"a\", \"image\": \"a.png\", \"objects\": ["
        "{\"shape\": \"star\", \"color\": \"green\", \"size\": \"huge\", \"x\": 0.5625, \"y\": 0.5625, \"r\": 0.1},"
        "{\"shape\": \"circle\", \"color\": \"red\", \"size\": \"large\", \"x\": 0.0625, \"y\": 0.9375, \"r\": 0.2}], "
        "\"qa\": [{\"lang\": \"en\", \"question\": \"q\", \"answer_id\": \"yes\", \"type\": \"exist\"}]}\n"
        "{\"id\": \"b\", \"image\": \"b.png\", \"objects\": [{\"shape\": \"star\", \"color\": \"red\"}], "
        "\"qa\": [{\"lang\": \"en\", \"question\": \"q\", \"answer_id\": \"yes\", \"type\": \"exist\"}]}\n";
    qmod_vqa_dataset d;
    expect(qmod_vqa_dataset_parse("/x", "m.jsonl", desc, man, strlen(man), &d), QIAO_OK, NULL);
    const qmod_vqa_object *ob = &d.scenes[0].objects[0];
    assert_int_equal(ob->attr[QMOD_VQA_SHAPE], 1);
    assert_int_equal(ob->attr[QMOD_VQA_COLOR], 2);
    assert_int_equal(ob->attr[QMOD_VQA_SIZE], -1); /* "huge" is not in the list */
    int32_t lab[64 * QMOD_VQA_NATTR];
    qmod_vqa_cell_labels(&d, 0, 8, lab);
    const int32_t *c44 = lab + (4 * 8 + 4) * QMOD_VQA_NATTR;
    assert_int_equal(c44[QMOD_VQA_SHAPE], 2);
    assert_int_equal(c44[QMOD_VQA_COLOR], 3);
    assert_int_equal(c44[QMOD_VQA_SIZE], -1);
    /* a neighbour the disc of 0.8 r only grazes, and a far corner: empty */
    assert_int_equal(lab[(4 * 8 + 5) * QMOD_VQA_NATTR + QMOD_VQA_SHAPE], 0);
    assert_int_equal(lab[(0 * 8 + 7) * QMOD_VQA_NATTR + QMOD_VQA_COLOR], 0);
    assert_int_equal(lab[(0 * 8 + 7) * QMOD_VQA_NATTR + QMOD_VQA_SIZE], 0);
    /* the large red circle at the bottom-left corner */
    const int32_t *c70 = lab + (7 * 8 + 0) * QMOD_VQA_NATTR;
    assert_int_equal(c70[QMOD_VQA_SHAPE], 1);
    assert_int_equal(c70[QMOD_VQA_COLOR], 1);
    assert_int_equal(c70[QMOD_VQA_SIZE], 2);
    int64_t covered = 0;
    for (int i = 0; i < 64; i++) covered += lab[i * QMOD_VQA_NATTR + QMOD_VQA_SHAPE] > 0;
    assert_true(covered >= 5 && covered <= 12);
    /* scene b: no places, so no targets at all; a scene out of range neither */
    qmod_vqa_cell_labels(&d, 1, 8, lab);
    for (int i = 0; i < 64 * QMOD_VQA_NATTR; i++) assert_int_equal(lab[i], -1);
    qmod_vqa_cell_labels(&d, 2, 8, lab);
    for (int i = 0; i < 64 * QMOD_VQA_NATTR; i++) assert_int_equal(lab[i], -1);
    qmod_vqa_dataset_free(&d);
    /* malformed attribute lists */
    static const char *const bad[] = {
        "{\"answers\": [{\"id\": \"yes\"}], \"question_types\": [\"exist\"], \"shapes\": \"star\"}",
        "{\"answers\": [{\"id\": \"yes\"}], \"question_types\": [\"exist\"], \"colors\": [\"red\", 3]}",
        "{\"answers\": [{\"id\": \"yes\"}], \"question_types\": [\"exist\"], \"sizes\": [\"big\", \"big\"]}"};
    static const char *const needle[] = {"\"shapes\" must be an array", "colors[1] is not a string",
                                         "sizes \"big\" listed twice"};
    for (int i = 0; i < 3; i++) {
        expect(qmod_vqa_dataset_parse("/x", "m.jsonl", bad[i], man, strlen(man), &d), QIAO_ERR_FORMAT, needle[i]);
        assert_null(d.scenes);
    }
}

static void test_errors(void **state) {
    fixture *fx = *state;
    static const char desc[] = "{\"answers\": [{\"id\": \"yes\"}, {\"id\": \"no\"}], \"question_types\": [\"exist\"], "
                               "\"cogent_pairs\": [{\"color\": \"red\", \"shape\": \"triangle\"}]}";
    static const char good[] =
        "{\"id\": \"s0\", \"image\": \"a.png\", \"objects\": [{\"color\": \"red\", \"shape\": \"triangle\"}], "
        "\"qa\": [{\"lang\": \"en\", \"question\": \"Is there a red triangle?\", \"answer_id\": \"yes\", \"type\": "
        "\"exist\"}], \"speech\": {\"qa\": [\"q.wav\"]}}\n";
    qmod_vqa_dataset d;
    expect(qmod_vqa_dataset_parse("/x", "m.jsonl", desc, good, strlen(good), &d), QIAO_OK, NULL);
    assert_true(d.n_scenes == 1 && d.n_questions == 1 && d.scenes[0].cogent && d.questions[0].answer == 0);
    assert_string_equal(d.questions[0].speech, "/x/q.wav");
    assert_string_equal(d.scenes[0].image, "/x/a.png");
    qmod_vqa_dataset_free(&d);
    static const struct {
        const char *line, *needle;
    } bad[] = {
        {"{\"id\": \"s\"", "m.jsonl:2: not valid JSON"},
        {"[1]", "m.jsonl:2: not a JSON object"},
        {"{\"image\": \"a.png\", \"objects\": [], \"qa\": []}", "m.jsonl:2: \"id\" missing"},
        {"{\"id\": \"s\", \"objects\": [], \"qa\": []}", "\"image\" missing"},
        {"{\"id\": \"s\", \"image\": \"a.png\", \"qa\": []}", "\"objects\" missing"},
        {"{\"id\": \"s\", \"image\": \"a.png\", \"objects\": [{\"color\": 1}], \"qa\": []}", "objects[0] needs"},
        {"{\"id\": \"s\", \"image\": \"a.png\", \"objects\": []}", "\"qa\" missing"},
        {"{\"id\": \"s\", \"image\": \"a.png\", \"objects\": [], \"qa\": [{\"lang\": \"fr\", \"question\": \"q\", "
         "\"answer_id\": \"yes\", \"type\": \"exist\"}]}",
         "qa[0] needs"},
        {"{\"id\": \"s\", \"image\": \"a.png\", \"objects\": [], \"qa\": [{\"lang\": \"en\", \"question\": \"q\", "
         "\"answer_id\": \"maybe\", \"type\": \"exist\"}]}",
         "qa[0] needs"},
        {"{\"id\": \"s\", \"image\": \"a.png\", \"objects\": [], \"qa\": [{\"lang\": \"en\", \"question\": \"q\", "
         "\"answer_id\": \"yes\", \"type\": \"exist\"}], \"speech\": {\"qa\": []}}",
         "parallel"},
        {"{\"id\": \"s\", \"image\": \"a.png\", \"objects\": [], \"qa\": [{\"lang\": \"en\", \"question\": \"q\", "
         "\"answer_id\": \"yes\", \"type\": \"exist\"}], \"speech\": {\"qa\": [7]}}",
         "speech.qa[0] is not a path"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[2048];
        snprintf(text, sizeof text, "%s%s\n", good, bad[i].line);
        expect(qmod_vqa_dataset_parse("/x", "m.jsonl", desc, text, strlen(text), &d), QIAO_ERR_FORMAT, bad[i].needle);
        assert_null(d.scenes);
    }
    expect(qmod_vqa_dataset_parse("/x", "m.jsonl", "{\"answers\": []}", good, strlen(good), &d), QIAO_ERR_FORMAT,
           "not a shapes-world split");
    expect(qmod_vqa_dataset_parse("/x", "m.jsonl", "nope", good, strlen(good), &d), QIAO_ERR_FORMAT,
           "dataset.json: not a JSON object");
    expect(qmod_vqa_dataset_parse("/x", "m.jsonl", desc, "\n\n", 2, &d), QIAO_ERR_FORMAT, "no scenes");
    expect(qmod_vqa_dataset_parse("/x", "m.jsonl", desc, "a\0b", 3, &d), QIAO_ERR_FORMAT, "NUL");

    /* files: no dataset.json, then a missing WAV and a missing picture */
    char *dir = tmpdir();
    expect(qmod_vqa_dataset_load(dir, &d), QIAO_ERR_IO, "dataset.json");
    write_file(dir, "dataset.json", desc);
    expect(qmod_vqa_dataset_load(dir, &d), QIAO_ERR_IO, "manifest.jsonl");
    qmod_vqa_dataset_free(&d);
    qt_rm_rf(dir);
    free(dir);

    qmod_vqa_dataset copy;
    expect(qmod_vqa_dataset_load(fx->dir, &copy), QIAO_OK, NULL);
    free(copy.questions[2].speech);
    copy.questions[2].speech = strdup("/nonexistent/q2.wav");
    qmod_vqa_loader_params p = params(fx, 4, 1);
    p.data = &copy;
    p.eval = true;
    p.threads = 2;
    qmod_vqa_loader *l = NULL;
    expect(qmod_vqa_loader_start(&p, &l), QIAO_OK, NULL);
    qmod_vqa_batch *b = NULL;
    expect(qmod_vqa_loader_next(l, &b), QIAO_ERR_IO, "/nonexistent/q2.wav");
    assert_non_null(strstr(qiao_last_error(), copy.scenes[0].id));
    qmod_vqa_loader_stop(l);
    free(copy.scenes[1].image);
    copy.scenes[1].image = strdup("/nonexistent/p1.png");
    p.vqa.p_drop_audio = 1.0f;
    qmod_vqa_batch tmp;
    expect(qmod_vqa_batch_make(&p, qmod_vqa_epoch_batches(&copy, 4, true) - 1, &tmp), QIAO_OK, NULL);
    qmod_vqa_batch_free(&tmp);
    const int64_t b1 = copy.scenes[1].first_question / 4;
    expect(qmod_vqa_batch_make(&p, b1, &tmp), QIAO_ERR_IO, "/nonexistent/p1.png");
    qmod_vqa_dataset_free(&copy);

    /* params */
    p = params(fx, 4, 1);
    p.vqa.p_drop_text = 0.6f;
    p.vqa.p_drop_audio = 0.6f;
    expect(qmod_vqa_batch_make(&p, 0, &tmp), QIAO_ERR_INVALID_ARGUMENT, "p_drop_text + p_drop_audio");
    p.vqa = qmod_vqa_default_params();
    p.vqa.image_sigma[0] = 50.0f;
    expect(qmod_vqa_batch_make(&p, 0, &tmp), QIAO_ERR_INVALID_ARGUMENT, "lo <= hi");
    p.vqa = qmod_vqa_default_params();
    p.vqa.struct_size = 8;
    expect(qmod_vqa_batch_make(&p, 0, &tmp), QIAO_ERR_INVALID_ARGUMENT, "struct_size");
    p.vqa = qmod_vqa_default_params();
    p.batch = fx->d.n_questions + 1;
    expect(qmod_vqa_batch_make(&p, 0, &tmp), QIAO_ERR_INVALID_ARGUMENT, "larger than");
    p.eval = true;
    expect(qmod_vqa_batch_make(&p, 1, &tmp), QIAO_ERR_INVALID_ARGUMENT, "out of range");
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_manifest), cmocka_unit_test(test_determinism), cmocka_unit_test(test_resume),
        cmocka_unit_test(test_absent),   cmocka_unit_test(test_degrade),     cmocka_unit_test(test_eval_cover),
        cmocka_unit_test(test_errors),   cmocka_unit_test(test_cells),
    };
    if (argc > 1) {
        char filter[128];
        snprintf(filter, sizeof filter, "test_%s", argv[1]);
        cmocka_set_test_filter(filter);
    }
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
