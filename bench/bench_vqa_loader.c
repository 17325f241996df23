/* bench_vqa_loader: questions per second from the VQA loader
 * (models/data/vqa.c) with 1 and 2 worker threads, on a split generated
 * with --speech-questions, for the model's input sizes.
 *
 *   bench_vqa_loader SPLIT_DIR [MODEL.safetensors [BATCH [BATCHES]]]
 *
 * Defaults: models/qiao-base.safetensors, batch 64, 40 batches. Rows:
 *   typed+picture   p_drop_audio 1 (no WAV read): text and pictures only
 *   clean           every question typed and spoken, with its picture
 *   augmented       training's mix: text or speech dropped 20% each, picture
 *                   10%, picture noise and occlusion 50% each, audio noise 50%
 *   babble          as augmented, with babble instead of white noise
 * Each row starts a loader on a shared picture cache that an untimed pass
 * has filled (the first epoch decodes each picture once; later ones do
 * not), takes BATCHES batches and releases each at once, so the figure is
 * the loader's own rate, what a training step that waits for nothing
 * would see. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/data/vqa.h"

static int run(const char *name, const qmod_vqa_loader_params *base, int threads, int64_t batches) {
    qmod_vqa_loader_params p = *base;
    p.threads = threads;
    p.prefetch = 2 * threads;
    qmod_vqa_loader *l = NULL;
    const double t0 = qc_now();
    if (qmod_vqa_loader_start(&p, &l) != QIAO_OK) {
        fprintf(stderr, "%s: %s\n", name, qiao_last_error());
        return 1;
    }
    int64_t rows = 0;
    for (int64_t k = 0; k < batches; k++) {
        qmod_vqa_batch *b = NULL;
        if (qmod_vqa_loader_next(l, &b) != QIAO_OK || !b) {
            fprintf(stderr, "%s: %s\n", name, qiao_last_error());
            qmod_vqa_loader_stop(l);
            return 1;
        }
        rows += b->B;
        qmod_vqa_loader_release(l, b);
    }
    const double dt = qc_now() - t0;
    qmod_vqa_loader_stop(l);
    printf("%-14s %7d %10.0f %10.2f\n", name, threads, (double)rows / dt, 1e3 * dt / (double)batches);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_vqa_loader SPLIT_DIR [MODEL.safetensors [BATCH [BATCHES]]]\n");
        return 2;
    }
    const char *model_path = argc > 2 ? argv[2] : "models/qiao-base.safetensors";
    const int64_t B = argc > 3 ? atoll(argv[3]) : 64, batches = argc > 4 ? atoll(argv[4]) : 40;
    qmod_model *m = NULL;
    qmod_vqa_dataset d;
    qmod_vqa_cache *cache = NULL;
    if (qmod_load(model_path, &m) != QIAO_OK || qmod_vqa_dataset_load(argv[1], &d) != QIAO_OK ||
        qmod_vqa_cache_new(&d, &cache) != QIAO_OK) {
        fprintf(stderr, "bench_vqa_loader: %s\n", qiao_last_error());
        return 1;
    }
    printf("split %s: %lld scenes, %lld questions (%lld spoken); model %s; batch %lld\n", argv[1],
           (long long)d.n_scenes, (long long)d.n_questions, (long long)d.n_spoken, m->cfg.name, (long long)B);
    qmod_vqa_loader_params p = {0};
    p.model = m;
    p.data = &d;
    p.cache = cache;
    p.batch = B;
    p.seed = 1;
    p.vqa = qmod_vqa_default_params();
    /* fill the cache, untimed: typed-only reads no WAV */
    p.eval = true;
    p.vqa.p_drop_audio = 1.0f;
    const double t0 = qc_now();
    qmod_vqa_loader_params warm = p;
    warm.threads = 2;
    warm.prefetch = 4;
    qmod_vqa_loader *l = NULL;
    qmod_vqa_batch *b = NULL;
    int rc = qmod_vqa_loader_start(&warm, &l) != QIAO_OK;
    while (!rc && (rc = qmod_vqa_loader_next(l, &b) != QIAO_OK) == 0 && b)
        qmod_vqa_loader_release(l, b);
    qmod_vqa_loader_stop(l);
    if (rc) {
        fprintf(stderr, "bench_vqa_loader: %s\n", qiao_last_error());
        return 1;
    }
    printf("first pass (decodes every picture, 2 threads): %.2f s, cache %.1f MB\n\n", qc_now() - t0,
           (double)qmod_vqa_cache_bytes(cache) / 1e6);
    p.eval = false;
    printf("%-14s %7s %10s %10s\n", "condition", "threads", "questions/s", "ms/batch");
    for (int threads = 1; threads <= 2 && !rc; threads++) {
        qmod_vqa_loader_params q = p;
        q.vqa.p_drop_audio = 1.0f;
        rc |= run("typed+picture", &q, threads, batches);
        q.vqa = qmod_vqa_default_params();
        rc |= run("clean", &q, threads, batches);
        q.vqa.p_drop_text = q.vqa.p_drop_audio = 0.2f;
        q.vqa.p_drop_image = 0.1f;
        q.vqa.p_image_noise = q.vqa.p_occlude = q.vqa.p_audio_noise = 0.5f;
        rc |= run("augmented", &q, threads, batches);
        q.vqa.audio_noise = QMOD_VQA_NOISE_BABBLE;
        rc |= run("babble", &q, threads, batches);
    }
    qmod_vqa_cache_free(cache);
    qmod_vqa_dataset_free(&d);
    qmod_free(m);
    return rc;
}
