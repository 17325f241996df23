/* bench_audio: audio seconds processed per wall-clock second, one thread,
 * for decode + resample (to 16 kHz) + log-mel, and for the log-mel alone.
 *
 *   ./build/bin/bench_audio [ESC_CLIP.ogg FSDD_CLIP.wav]
 *
 * Defaults to the committed clips under tests/data/audio (run from the
 * repository root). Each row is the best of 5 timings of a loop that runs at
 * least 0.3 s, so a noisy shared machine shows its quiet moments. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>

#include <qiao.h>
#include <unistd.h>

#include "core/npy.h"

static int fail(const char *what, qiao_status st) {
    fprintf(stderr, "bench_audio: %s: %s: %s\n", what, qiao_status_str(st), qiao_last_error());
    return 1;
}

/* mode 0: decode + resample + mel from the file; mode 1: mel of `pcm` only. */
static int run_once(int mode, const char *path, const qiao_audio *pcm, int64_t *frames) {
    qiao_audio *a = NULL;
    if (mode == 0) {
        qiao_status st = qiao_audio_decode_file(path, NULL, &a);
        if (st != QIAO_OK) return fail(path, st);
        pcm = a;
    }
    float *mel = NULL;
    qiao_status st = qiao_mel_compute(pcm, NULL, &mel, frames);
    qiao_mel_free(mel);
    qiao_audio_free(a);
    return st == QIAO_OK ? 0 : fail("mel", st);
}

static int bench(const char *label, int mode, const char *path, const qiao_audio *pcm, double audio_s) {
    double best = 1e30;
    int64_t frames = 0;
    for (int rep = 0; rep < 5; rep++) {
        int iters = 0;
        double t0 = qc_now(), t;
        do {
            if (run_once(mode, path, pcm, &frames)) return 1;
            iters++;
            t = qc_now() - t0;
        } while (t < 0.3);
        if (t / iters < best) best = t / iters;
    }
    printf("| %-36s | %7.3f | %6lld | %9.3f | %10.0f |\n", label, audio_s, (long long)frames, best * 1e3,
           audio_s / best);
    return 0;
}

/* The peer: torchaudio on the same PCM, in a child process (Python is only
 * a benchmark peer, never a dependency). Prints its row, or why it is absent. */
static void peer_row(const char *label, const qiao_audio *a, double audio_s) {
    char npy[] = "/tmp/qiao-bench-pcm-XXXXXX";
    int fd = mkstemp(npy);
    if (fd < 0) return;
    close(fd);
    int64_t shape[1] = {a->n_samples};
    double ms = 0;
    long long frames = 0;
    int ok = 0;
    if (qc_npy_write_f32(npy, a->samples, 1, shape) == QIAO_OK) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 bench/peer/mel_torchaudio.py %s 2>/dev/null", npy);
        FILE *p = popen(cmd, "r");
        if (p) {
            ok = fscanf(p, "%lf %lld", &ms, &frames) == 2;
            ok = (pclose(p) == 0) && ok;
        }
    }
    unlink(npy);
    if (ok)
        printf("| %-36s | %7.3f | %6lld | %9.3f | %10.0f |\n", label, audio_s, frames, ms, audio_s / (ms * 1e-3));
    else
        printf("| %-36s | peer unavailable: needs python3-torchaudio (scripts/install-deps.sh --peer) |\n", label);
}

int main(int argc, char **argv) {
    const char *clips[2] = {"tests/data/audio/esc10_1-110389-A.ogg", "tests/data/audio/fsdd_3_jackson_0.wav"};
    if (argc == 3) {
        clips[0] = argv[1];
        clips[1] = argv[2];
    } else if (argc != 1) {
        fprintf(stderr, "usage: bench_audio [ESC_CLIP FSDD_CLIP]\n");
        return 2;
    }
    printf("qiao %s, 1 thread; log-mel 16 kHz, n_fft 400, hop 160, 80 mels; peer: torchaudio, 1 thread\n\n",
           qiao_version());
    printf("| %-36s | %7s | %6s | %9s | %10s |\n", "pipeline", "audio s", "frames", "ms / clip", "audio s/s");
    printf("|--------------------------------------|---------|--------|-----------|------------|\n");
    for (int c = 0; c < 2; c++) {
        qiao_audio *a = NULL;
        qiao_status st = qiao_audio_decode_file(clips[c], NULL, &a);
        if (st != QIAO_OK) return fail(clips[c], st);
        double secs = (double)a->n_samples / a->sample_rate;
        char label[80];
        snprintf(label, sizeof label, "decode+resample+mel: %s", c ? "FSDD 8k WAV" : "ESC 44.1k Ogg");
        int rc = bench(label, 0, clips[c], NULL, secs);
        snprintf(label, sizeof label, "mel only: %s", c ? "FSDD 8k WAV" : "ESC 44.1k Ogg");
        if (!rc) rc = bench(label, 1, NULL, a, secs);
        snprintf(label, sizeof label, "mel, torchaudio peer: %s", c ? "FSDD 8k WAV" : "ESC 44.1k Ogg");
        if (!rc) peer_row(label, a, secs);
        qiao_audio_free(a);
        if (rc) return rc;
    }
    return 0;
}
