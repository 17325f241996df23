/* datasets/shapes/speech.c - speaks captions and questions with espeak-ng.
 *
 * The espeak-ng command runs once per utterance in its own process: the
 * espeak-ng library keeps global state (and calls rand()), so in one process
 * an utterance's samples depend on the utterances synthesized before it, and
 * the bytes would depend on thread order. A fresh process gives the same
 * bytes every time (checked by the determinism test) and runs in parallel. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shapes.h"

extern char **environ;

#define OUT_RATE 16000
/* Longest espeak output accepted (bytes): ~9 minutes at 22050 Hz. */
#define MAX_WAV_BYTES (24u << 20)

/* Runs espeak-ng and returns its WAV output (malloc'd) in *buf. */
static qiao_status run_espeak(const char *voice, int rate, int pitch, const char *text, unsigned char **buf,
                              size_t *len) {
    char rs[16], ps[16];
    snprintf(rs, sizeof rs, "%d", rate);
    snprintf(ps, sizeof ps, "%d", pitch);
    char *argv[] = {"espeak-ng", "-b", "1", "-v", (char *)voice, "-s", rs, "-p", ps, "--stdout", (char *)text, NULL};
    int fd[2];
    /* close-on-exec, so children spawned by other threads do not keep our
     * write end open */
    if (pipe2(fd, O_CLOEXEC) != 0) return qc_error(QIAO_ERR_IO, "espeak-ng: pipe: %s", strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int e = posix_spawnp(&pid, "espeak-ng", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fd[1]);
    if (e != 0) {
        close(fd[0]);
        return qc_error(QIAO_ERR_UNSUPPORTED, "espeak-ng: cannot run the espeak-ng command: %s", strerror(e));
    }
    size_t cap = 1 << 16, n = 0;
    unsigned char *b = malloc(cap);
    qiao_status st = b ? QIAO_OK : qc_error(QIAO_ERR_OUT_OF_MEMORY, "espeak-ng: output buffer");
    for (;;) {
        if (st == QIAO_OK && n == cap) {
            unsigned char *nb = cap < MAX_WAV_BYTES ? realloc(b, cap * 2) : NULL;
            if (!nb) st = qc_error(QIAO_ERR_TOO_LARGE, "espeak-ng: output over %u bytes for \"%.40s\"", MAX_WAV_BYTES, text);
            else b = nb, cap *= 2;
        }
        unsigned char sink[4096];
        ssize_t k = st == QIAO_OK ? read(fd[0], b + n, cap - n) : read(fd[0], sink, sizeof sink);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        if (st == QIAO_OK) n += (size_t)k;
    }
    close(fd[0]);
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    if (st == QIAO_OK && !(WIFEXITED(ws) && WEXITSTATUS(ws) == 0))
        st = qc_error(QIAO_ERR_IO, "espeak-ng -v %s failed (status %d) on \"%.60s\"", voice, ws, text);
    if (st != QIAO_OK) {
        free(b);
        return st;
    }
    *buf = b;
    *len = n;
    return QIAO_OK;
}

static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put16(unsigned char *p, uint16_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static qiao_status write_wav(const char *path, const int16_t *s, size_t n) {
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "%s: path too long", path);
    unsigned char h[44];
    memcpy(h, "RIFF", 4);
    put32(h + 4, (uint32_t)(36 + 2 * n));
    memcpy(h + 8, "WAVEfmt ", 8);
    put32(h + 16, 16);
    put16(h + 20, 1);
    put16(h + 22, 1);
    put32(h + 24, OUT_RATE);
    put32(h + 28, OUT_RATE * 2);
    put16(h + 32, 2);
    put16(h + 34, 16);
    memcpy(h + 36, "data", 4);
    put32(h + 40, (uint32_t)(2 * n));
    FILE *f = fopen(tmp, "wb");
    if (!f) return qc_error(QIAO_ERR_IO, "%s: %s", tmp, strerror(errno));
    unsigned char le[2 * 1024];
    int ok = fwrite(h, 1, 44, f) == 44;
    for (size_t i = 0; ok && i < n; i += 1024) {
        size_t k = n - i < 1024 ? n - i : 1024;
        for (size_t j = 0; j < k; j++) put16(le + 2 * j, (uint16_t)s[i + j]);
        ok = fwrite(le, 2, k, f) == k;
    }
    ok = (fclose(f) == 0) && ok;
    if (!ok) {
        remove(tmp);
        return qc_error(QIAO_ERR_IO, "%s: write failed", tmp);
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return qc_error(QIAO_ERR_IO, "%s: rename: %s", path, strerror(e));
    }
    return QIAO_OK;
}

qiao_status shapes_speak_wav(const char *text, shapes_lang lang, uint64_t seed, const char *path) {
    static const char *const EN_VOICE[3] = {"en", "en-us", "en-gb-x-rp"};
    static const char *const VARIANT[10] = {"m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4"};
    if (!text || !path || !text[0] || text[0] == '-')
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "shapes_speak_wav: empty text or text starting with '-'");
    qc_rng r;
    qc_rng_seed(&r, seed);
    char voice[64];
    snprintf(voice, sizeof voice, "%s+%s", lang == SHAPES_ZH ? "cmn" : EN_VOICE[qc_rng_below(&r, 3)],
             VARIANT[qc_rng_below(&r, 10)]);
    /* espeak's rate is words per minute, and cmn counts every character
     * (syllable) as a word: 240..290 is 4-5 syllables a second, a natural
     * Mandarin pace (1.0 used 130..180, under half that, which made a long
     * caption 25-45 s of speech). English 140..190 wpm is conversational. */
    int rate = (lang == SHAPES_ZH ? 240 : 140) + (int)qc_rng_below(&r, 51);
    int pitch = 30 + (int)qc_rng_below(&r, 41);                            /* espeak's 0..99 */
    float noise = 60.0f + 140.0f * qc_rng_uniform(&r); /* std, of 32768: about -55..-44 dBFS */

    unsigned char *wav = NULL;
    size_t len = 0;
    qiao_status st = run_espeak(voice, rate, pitch, text, &wav, &len);
    if (st != QIAO_OK) return st;
    /* espeak writes 22050 Hz 16-bit WAV (its data size may be a placeholder,
     * as it writes to a pipe); the SDK's decoder reads it and libswresample
     * takes it to 16 kHz. */
    qiao_audio_params ap = qiao_audio_default_params();
    ap.target_rate = OUT_RATE;
    qiao_audio *au = NULL;
    st = qiao_audio_decode_memory(wav, len, &ap, &au);
    free(wav);
    if (st != QIAO_OK) return qc_error(st, "espeak-ng -v %s: %s", voice, qiao_last_error());
    if (au->n_samples == 0) {
        qiao_audio_free(au);
        return qc_error(QIAO_ERR_FORMAT, "espeak-ng -v %s: no samples for \"%.60s\"", voice, text);
    }
    size_t nout = (size_t)au->n_samples;
    int16_t *s16 = malloc(sizeof(int16_t) * nout);
    if (!s16) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: %zu samples", path, nout);
    } else {
        for (size_t i = 0; i < nout; i++) {
            float v = roundf(32768.0f * au->samples[i] + noise * qc_rng_normal(&r));
            s16[i] = (int16_t)(v > 32767.0f ? 32767 : v < -32768.0f ? -32768 : v);
        }
        st = write_wav(path, s16, nout);
    }
    qiao_audio_free(au);
    free(s16);
    return st;
}
