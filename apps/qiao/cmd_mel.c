/* qiao mel FILE [--n-mels N] [--max-seconds S] -o OUT.npy: the log-mel
 * features the audio encoder reads (16 kHz, 25 ms Hann window, 10 ms hop,
 * Slaney mels, natural log), written as a (frames, n_mels) float32 .npy.
 * qiao mel --info FILE: what the file holds, after decoding it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/npy.h"

static void usage(FILE *f) {
    fprintf(f, "usage: qiao mel FILE [--n-mels N] [--max-seconds S] -o OUT.npy\n"
               "       qiao mel --info FILE\n");
}

int cmd_mel(int argc, char **argv) {
    const char *path = NULL, *out = NULL;
    int info = 0;
    double n_mels = 80, max_seconds = 3600;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--info")) {
            info = 1;
        } else if (!strcmp(a, "--n-mels")) {
            if (!cli_num_arg("mel", a, i + 1 < argc ? argv[++i] : NULL, 1, 512, &n_mels)) return 2;
        } else if (!strcmp(a, "--max-seconds")) {
            if (!cli_num_arg("mel", a, i + 1 < argc ? argv[++i] : NULL, 0.001, 7 * 24 * 3600, &max_seconds)) return 2;
        } else if (!strcmp(a, "-o")) {
            if (i + 1 >= argc) {
                usage(stderr);
                return 2;
            }
            out = argv[++i];
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "qiao mel: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (path) {
            fprintf(stderr, "qiao mel: one file at a time ('%s' and '%s')\n", path, a);
            return 2;
        } else {
            path = a;
        }
    }
    if (!path || (!info && !out)) {
        usage(stderr);
        return 2;
    }
    qiao_audio_params ap = qiao_audio_default_params();
    ap.max_seconds = max_seconds;
    if (info) ap.target_rate = 0; /* report the file as it is */
    qiao_audio *audio = NULL;
    qiao_status st = qiao_audio_decode_file(path, &ap, &audio);
    if (st != QIAO_OK) return cli_fail(st);
    if (info) {
        printf("file: %s\nformat: %s\nsample rate: %d Hz\nchannels: %d\nduration: %.3f s (%lld frames)\n", path,
               audio->source_format, audio->source_rate, audio->source_channels,
               (double)audio->source_frames / audio->source_rate, (long long)audio->source_frames);
        qiao_audio_free(audio);
        return 0;
    }
    qiao_mel_params mp = qiao_mel_default_params();
    mp.n_mels = (int)n_mels;
    float *mel = NULL;
    int64_t frames = 0;
    st = qiao_mel_compute(audio, &mp, &mel, &frames);
    qiao_audio_free(audio);
    if (st != QIAO_OK) return cli_fail(st);
    int64_t shape[2] = {frames, mp.n_mels};
    st = qc_npy_write_f32(out, mel, 2, shape);
    qiao_mel_free(mel);
    if (st != QIAO_OK) return cli_fail(st);
    printf("%s: %lld frames x %d mels -> %s\n", path, (long long)frames, mp.n_mels, out);
    return 0;
}
