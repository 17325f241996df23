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

#define IN_RATE 22050
#define OUT_RATE 16000
/* 16000 / 22050 = 320 / 441: output sample m sits at input position
 * m * 441 / 320, whose fraction takes only 320 values (the phases). */
#define PHASES 320
#define STEP 441
#define HALF_TAPS 16
/* Longest espeak output accepted (bytes): ~9 minutes at 22050 Hz. */
#define MAX_WAV_BYTES (24u << 20)

size_t shapes_resample_len(size_t n) { return n ? (n - 1) * PHASES / STEP + 1 : 0; }

/* Windowed-sinc low-pass at 0.9 x the output Nyquist (7.2 kHz), Hann window
 * over 2 x 16 input samples, each phase normalized to unit DC gain. */
void shapes_resample_22050_16000(float *out, const float *in, size_t n) {
    const double pi = 3.14159265358979323846;
    const double fc = 0.5 * (double)OUT_RATE / IN_RATE * 0.9; /* cycles per input sample */
    static const int T = 2 * HALF_TAPS;
    float *h = malloc(sizeof(float) * PHASES * (size_t)T);
    size_t nout = shapes_resample_len(n);
    if (!h) { /* no memory for the table: linear interpolation */
        for (size_t m = 0; m < nout; m++) {
            size_t i0 = m * STEP / PHASES;
            float f = (float)(m * STEP % PHASES) / PHASES;
            out[m] = in[i0] * (1 - f) + (i0 + 1 < n ? in[i0 + 1] * f : 0.0f);
        }
        return;
    }
    for (int p = 0; p < PHASES; p++) {
        double sum = 0;
        for (int j = 0; j < T; j++) { /* tap j is input i0 - HALF_TAPS + 1 + j */
            double d = (double)(HALF_TAPS - 1 - j) + (double)p / PHASES;
            double x = 2 * fc * d;
            double sinc = fabs(x) < 1e-12 ? 1.0 : sin(pi * x) / (pi * x);
            double w = fabs(d) < HALF_TAPS ? 0.5 * (1 + cos(pi * d / HALF_TAPS)) : 0.0;
            h[p * T + j] = (float)(sinc * w);
            sum += sinc * w;
        }
        for (int j = 0; j < T; j++) h[p * T + j] = (float)(h[p * T + j] / sum);
    }
    for (size_t m = 0; m < nout; m++) {
        size_t i0 = m * STEP / PHASES;
        const float *hp = h + (m * STEP % PHASES) * (size_t)T;
        float acc = 0;
        for (int j = 0; j < T; j++) {
            int64_t k = (int64_t)i0 - HALF_TAPS + 1 + j;
            if (k >= 0 && (size_t)k < n) acc += hp[j] * in[k];
        }
        out[m] = acc;
    }
    free(h);
}

static uint32_t rd32(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

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

/* The PCM samples of espeak's 16-bit mono WAV, checking it is 22050 Hz. The
 * data chunk's size may be a placeholder (espeak writes to a pipe), so the
 * samples are whatever follows the chunk header. */
static qiao_status parse_wav(const unsigned char *b, size_t n, const int16_t **pcm, size_t *ns) {
    if (n < 12 || memcmp(b, "RIFF", 4) || memcmp(b + 8, "WAVE", 4)) return qc_error(QIAO_ERR_FORMAT, "espeak-ng: output is not a WAV");
    size_t p = 12;
    int fmt_ok = 0;
    while (p + 8 <= n) {
        uint32_t sz = rd32(b + p + 4);
        if (!memcmp(b + p, "fmt ", 4)) {
            if (sz < 16 || p + 8 + 16 > n) break;
            fmt_ok = rd16(b + p + 8) == 1 && rd16(b + p + 10) == 1 && rd32(b + p + 12) == IN_RATE && rd16(b + p + 22) == 16;
        } else if (!memcmp(b + p, "data", 4)) {
            if (!fmt_ok) return qc_error(QIAO_ERR_FORMAT, "espeak-ng: expected 16-bit mono PCM at %d Hz", IN_RATE);
            size_t avail = (n - p - 8) / 2;
            *pcm = (const int16_t *)(const void *)(b + p + 8);
            *ns = sz / 2 < avail ? sz / 2 : avail;
            return QIAO_OK;
        }
        if (sz > n - p - 8) break;
        p += 8 + sz + (sz & 1);
    }
    return qc_error(QIAO_ERR_FORMAT, "espeak-ng: WAV output without a data chunk");
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
    int rate = (lang == SHAPES_ZH ? 130 : 140) + (int)qc_rng_below(&r, 51); /* words per minute */
    int pitch = 30 + (int)qc_rng_below(&r, 41);                            /* espeak's 0..99 */
    float noise = 60.0f + 140.0f * qc_rng_uniform(&r); /* std, of 32768: about -55..-44 dBFS */

    unsigned char *wav = NULL;
    size_t len = 0;
    qiao_status st = run_espeak(voice, rate, pitch, text, &wav, &len);
    if (st != QIAO_OK) return st;
    const int16_t *pcm = NULL;
    size_t n = 0;
    st = parse_wav(wav, len, &pcm, &n);
    if (st == QIAO_OK && n == 0) st = qc_error(QIAO_ERR_FORMAT, "espeak-ng -v %s: no samples for \"%.60s\"", voice, text);
    if (st != QIAO_OK) {
        free(wav);
        return st;
    }
    size_t nout = shapes_resample_len(n);
    float *in = malloc(sizeof(float) * n), *out = malloc(sizeof(float) * nout);
    int16_t *s16 = malloc(sizeof(int16_t) * nout);
    if (!in || !out || !s16) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: %zu samples", path, n);
    } else {
        for (size_t i = 0; i < n; i++) {
            const unsigned char *p = (const unsigned char *)(pcm + i);
            in[i] = (float)(int16_t)rd16(p);
        }
        shapes_resample_22050_16000(out, in, n);
        for (size_t i = 0; i < nout; i++) {
            float v = roundf(out[i] + noise * qc_rng_normal(&r));
            s16[i] = (int16_t)(v > 32767.0f ? 32767 : v < -32768.0f ? -32768 : v);
        }
        st = write_wav(path, s16, nout);
    }
    free(in);
    free(out);
    free(s16);
    free(wav);
    return st;
}
