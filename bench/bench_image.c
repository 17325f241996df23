/* bench/bench_image.c - images per second for decoding a 640x480 JPEG and
 * preprocessing it to a 224x224 center crop (bicubic, CLIP normalization),
 * on 1 and 2 threads, with libavcodec's mjpeg decoder (what qiao uses for
 * JPEG since stb 2.27's JPEG decoder proved unsafe; decode_stb.c says why).
 * The roofline peer is the decode alone.
 *
 *   build/bin/bench_image [photo.jpg] [seconds per row]
 *
 * Each row decodes from memory (the file is read once), so disk speed does
 * not enter. */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modalities/image/image.h"

typedef struct job {
    const uint8_t *data;
    size_t size;
    qi_decoder decoder;
    int preprocess;
    double seconds;
    int64_t done;
    int failed;
} job;

static void *work(void *arg) {
    job *j = arg;
    qi_decode_opts o;
    if (qi_decode_opts_from(NULL, &o) != QIAO_OK) {
        j->failed = 1;
        return NULL;
    }
    size_t n = qiao_image_preprocess_len(NULL);
    float *x = malloc(n * sizeof *x);
    double t0 = qc_now();
    while (x && qc_now() - t0 < j->seconds) {
        qiao_image *img = NULL;
        if (qi_decode_memory(j->data, j->size, "bench", &o, j->decoder, &img) != QIAO_OK ||
            (j->preprocess && qiao_image_preprocess(img, NULL, x, n) != QIAO_OK)) {
            j->failed = 1;
            qiao_image_free(img);
            break;
        }
        qiao_image_free(img);
        j->done++;
    }
    free(x);
    return NULL;
}

static double run(const uint8_t *data, size_t size, qi_decoder decoder, int preprocess, int threads, double sec) {
    pthread_t th[2];
    job jobs[2];
    double t0 = qc_now();
    for (int t = 0; t < threads; t++) {
        jobs[t] = (job){data, size, decoder, preprocess, sec, 0, 0};
        if (pthread_create(&th[t], NULL, work, &jobs[t]) != 0) return -1;
    }
    int64_t total = 0;
    int failed = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        total += jobs[t].done;
        failed |= jobs[t].failed;
    }
    double el = qc_now() - t0;
    if (failed) {
        fprintf(stderr, "bench_image: decode failed: %s\n", qiao_last_error());
        return -1;
    }
    return (double)total / el;
}

int main(int argc, char **argv) {
    char def[1024];
    snprintf(def, sizeof def, "%s", __FILE__);
    char *slash = strrchr(def, '/');
    if (slash) snprintf(slash, sizeof def - (size_t)(slash - def), "/../tests/data/image/000000126107.jpg");
    const char *path = argc > 1 ? argv[1] : def;
    double sec = argc > 2 ? atof(argv[2]) : 2.0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bench_image: cannot open %s\n", path);
        return 1;
    }
    static uint8_t buf[8 << 20];
    size_t size = fread(buf, 1, sizeof buf, f);
    fclose(f);
    qi_decode_opts o;
    qiao_image *img = NULL;
    if (qi_decode_opts_from(NULL, &o) != QIAO_OK || qi_decode_memory(buf, size, path, &o, QI_DECODER_AUTO, &img)) {
        fprintf(stderr, "bench_image: %s\n", qiao_last_error());
        return 1;
    }
    printf("bench_image: %s, %lldx%lld %s, %zu bytes; %.1f s per row\n\n", path, (long long)qiao_image_width(img),
           (long long)qiao_image_height(img), qiao_image_format(img), size, sec);
    qiao_image_free(img);
    printf("%-44s %8s %12s\n", "work", "threads", "images/s");
    struct { const char *name; qi_decoder b; int pre, threads; } rows[] = {
        {"decode, libavcodec mjpeg (qiao)", QI_DECODER_FFMPEG, 0, 1},
        {"decode + 224 crop, libavcodec mjpeg (qiao)", QI_DECODER_FFMPEG, 1, 1},
        {"decode + 224 crop, libavcodec mjpeg (qiao)", QI_DECODER_FFMPEG, 1, 2},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        double r = run(buf, size, rows[i].b, rows[i].pre, rows[i].threads, sec);
        if (r < 0) return 1;
        printf("%-44s %8d %12.1f\n", rows[i].name, rows[i].threads, r);
    }
    return 0;
}
