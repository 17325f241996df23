/* tests/unit/test_audio.c - audio decoding, resampling and log-mel features
 * on real clips (tests/data/audio, see ATTRIBUTION.md). The other formats
 * are made at test time with the ffmpeg and sox command-line tools (a
 * declared test dependency: a missing tool fails the test). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "core/safetensors.h"

#define QT_PI 3.14159265358979323846
#define DATA QIAO_TEST_DATA "/audio/"
#define WAV DATA "fsdd_3_jackson_0.wav"
#define OGG DATA "esc10_1-110389-A.ogg"

/* ---- helpers -------------------------------------------------------------- */

static char g_dir[256];

static void sh(const char *fmt, ...) QC_PRINTF(1, 2);
static void sh(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0) fail_msg("command failed (%d): %s", rc, cmd);
}

static const char *tmpdir(void) {
    if (!g_dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(g_dir, sizeof g_dir, "%s/qiao_audio_XXXXXX", t && *t ? t : "/tmp");
        assert_non_null(mkdtemp(g_dir));
    }
    return g_dir;
}

static void cleanup_tmp(void) {
    if (g_dir[0]) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
        g_dir[0] = '\0';
    }
}

static const char *tpath(const char *name) {
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir(), name);
    return buf[k];
}

#define FF "ffmpeg -nostdin -hide_banner -loglevel error -y "

/* 1.5 s of the ESC dog bark (44.1 kHz mono, all its barks are in the first
 * second) as 16-bit WAV: the source every other format is encoded from. */
static void make_ref(void) {
    if (access(tpath("ref.wav"), F_OK) == 0) return;
    sh(FF "-i '%s' -t 1.5 -c:a pcm_s16le '%s'", OGG, tpath("ref.wav"));
}

static qiao_audio *decode(const char *path) {
    qiao_audio *a = NULL;
    qiao_status st = qiao_audio_decode_file(path, NULL, &a);
    if (st != QIAO_OK) fail_msg("%s: %s: %s", path, qiao_status_str(st), qiao_last_error());
    return a;
}

static void *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc((size_t)len + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return p;
}

static void spit(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* Pearson correlation over the first n samples. */
static double corr(const float *a, const float *b, int64_t n) {
    double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
    for (int64_t i = 0; i < n; i++) {
        sa += a[i];
        sb += b[i];
        saa += (double)a[i] * a[i];
        sbb += (double)b[i] * b[i];
        sab += (double)a[i] * b[i];
    }
    double cov = sab - sa * sb / n, va = saa - sa * sa / n, vb = sbb - sb * sb / n;
    return cov / sqrt(va * vb);
}

/* ---- every format ------------------------------------------------------------ */

typedef struct fmt_case {
    const char *file, *make, *format;  /* make: ffmpeg options between input and output */
    int lossy;
    double tol_ms;                     /* allowed duration difference */
} fmt_case;

static void test_decode_every_format(void **state) {
    make_ref();
    qiao_audio *ref = decode(tpath("ref.wav"));
    assert_int_equal(ref->sample_rate, 16000);
    assert_int_equal(ref->source_rate, 44100);
    assert_string_equal(ref->source_format, "wav");
    assert_true(llabs(ref->n_samples - 24000) <= 1);
    /* Encoder delay and padding are removed by the decoders from the
     * container's metadata (LAME tag, MP4 edit list, Opus pre-skip), so the
     * durations match to a few ms; lossy codecs are compared by correlation.
     * AAC in MP4 keeps its last frame's padding (FFmpeg's muxer writes no
     * end trim), so it may run up to one AAC frame (1024 / 44100 s) long. */
    static const fmt_case cases[] = {
        {"a.flac", "-c:a flac", "flac", 0, 0.2},
        {"a.aiff", "-c:a pcm_s16be -f aiff", "aiff", 0, 0.2},
        {"a.ogg", "-c:a libvorbis -q:a 5", "ogg/vorbis", 1, 1.0},
        {"a.mp3", "-c:a libmp3lame -b:a 128k", "mp3", 1, 5.0},
        {"a.m4a", "-c:a aac -b:a 128k", "mov/aac", 1, 23.3},
        {"a.opus", "-c:a libopus -b:a 64k", "ogg/opus", 1, 5.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const fmt_case *c = &cases[i];
        sh(FF "-i '%s' %s '%s'", tpath("ref.wav"), c->make, tpath(c->file));
        qiao_audio *a = decode(tpath(c->file));
        double dms = 1000.0 * (double)llabs(a->n_samples - ref->n_samples) / 16000.0;
        double r = corr(a->samples, ref->samples, a->n_samples < ref->n_samples ? a->n_samples : ref->n_samples);
        printf("  %-7s %-11s %lld samples (%+.2f ms) corr %.5f\n", c->file, a->source_format,
               (long long)a->n_samples, dms, r);
        assert_string_equal(a->source_format, c->format);
        assert_int_equal(a->sample_rate, 16000);
        assert_true(dms <= c->tol_ms);
        assert_true(r > (c->lossy ? 0.9 : 0.9999));
        for (int64_t k = 0; k < a->n_samples; k++) assert_true(a->samples[k] >= -1.0f && a->samples[k] <= 1.0f);
        qiao_audio_free(a);
    }
    /* A video: the soundtrack is decoded, the picture ignored. */
    sh(FF "-f lavfi -i color=c=blue:s=64x64:r=10 -i '%s' -shortest -c:v mpeg4 -c:a aac -b:a 128k '%s'",
       tpath("ref.wav"), tpath("v.mp4"));
    qiao_audio *v = decode(tpath("v.mp4"));
    double r = corr(v->samples, ref->samples, v->n_samples < ref->n_samples ? v->n_samples : ref->n_samples);
    printf("  v.mp4   %-11s %lld samples corr %.5f\n", v->source_format, (long long)v->n_samples, r);
    assert_string_equal(v->source_format, "mov/aac");
    assert_true(llabs(v->n_samples - ref->n_samples) <= 16 * 110); /* -shortest cuts at a video frame (100 ms) */
    assert_true(r > 0.9);
    qiao_audio_free(v);
    qiao_audio_free(ref);
    cleanup_tmp();
}

static void check_memory_equals_path(const char *path) {
    size_t n;
    void *bytes = slurp(path, &n);
    qiao_audio *a = decode(path), *b = NULL;
    assert_int_equal(qiao_audio_decode_memory(bytes, n, NULL, &b), QIAO_OK);
    assert_int_equal(a->n_samples, b->n_samples);
    assert_int_equal(a->source_rate, b->source_rate);
    assert_string_equal(a->source_format, b->source_format);
    assert_memory_equal(a->samples, b->samples, (size_t)a->n_samples * sizeof(float));
    qiao_audio_free(a);
    qiao_audio_free(b);
    free(bytes);
}

static void test_memory_decode_equals_path(void **state) {
    check_memory_equals_path(WAV);
    check_memory_equals_path(OGG);
    make_ref();
    sh(FF "-i '%s' -c:a libmp3lame '%s'", tpath("ref.wav"), tpath("m.mp3"));
    sh(FF "-i '%s' -c:a aac '%s'", tpath("ref.wav"), tpath("m.m4a"));
    check_memory_equals_path(tpath("m.mp3"));
    check_memory_equals_path(tpath("m.m4a"));
    cleanup_tmp();
}

/* ---- downmix and resampling ---------------------------------------------------- */

static void test_downmix_stereo_is_channel_mean(void **state) {
    /* Left and right carry different tones at 16 kHz (no resampling), so the
     * mono result must be exactly (L + R) / 2 of the separately decoded channels. */
    sh("sox -n -r 16000 -b 16 -c 2 '%s' synth 0.5 sine 440 sine 1234 gain -3", tpath("st.wav"));
    sh("sox '%s' '%s' remix 1", tpath("st.wav"), tpath("l.wav"));
    sh("sox '%s' '%s' remix 2", tpath("st.wav"), tpath("r.wav"));
    qiao_audio *s = decode(tpath("st.wav")), *l = decode(tpath("l.wav")), *r = decode(tpath("r.wav"));
    assert_int_equal(s->source_channels, 2);
    assert_int_equal(l->source_channels, 1);
    assert_int_equal(s->n_samples, 8000);
    assert_int_equal(l->n_samples, 8000);
    double worst = 0, diff = 0;
    for (int64_t i = 0; i < s->n_samples; i++) {
        worst = fmax(worst, fabs(s->samples[i] - 0.5 * (l->samples[i] + r->samples[i])));
        diff = fmax(diff, fabs(l->samples[i] - r->samples[i]));
    }
    assert_true(worst < 1e-6);
    assert_true(diff > 0.5); /* the channels really differ */
    qiao_audio_free(s);
    qiao_audio_free(l);
    qiao_audio_free(r);
    cleanup_tmp();
}

/* Frequency (Hz) of the largest DFT magnitude bin, by a plain O(n^2) DFT. */
static double peak_hz(const float *x, int64_t n, int rate) {
    double best = -1, best_f = 0;
    for (int64_t k = 1; k < n / 2; k++) {
        double re = 0, im = 0;
        for (int64_t i = 0; i < n; i++) {
            re += x[i] * cos(2 * QT_PI * k * i / n);
            im -= x[i] * sin(2 * QT_PI * k * i / n);
        }
        if (re * re + im * im > best) {
            best = re * re + im * im;
            best_f = (double)k * rate / n;
        }
    }
    return best_f;
}

static void test_resample_8k_to_16k_keeps_sine(void **state) {
    const int64_t n = 4000; /* 0.5 s at 8 kHz */
    float *x = qt_alloc(n);
    for (int64_t i = 0; i < n; i++) x[i] = 0.5f * (float)sin(2 * QT_PI * 1000.0 * i / 8000.0);
    qiao_audio *a = NULL;
    assert_int_equal(qiao_audio_from_pcm(x, n, 8000, 1, NULL, &a), QIAO_OK);
    assert_int_equal(a->sample_rate, 16000);
    assert_int_equal(a->source_rate, 8000);
    assert_true(llabs(a->n_samples - 2 * n) <= 2);
    /* 2048 samples from the middle: the peak lands within one bin (7.8 Hz). */
    double f = peak_hz(a->samples + 4000, 2048, 16000);
    assert_true(fabs(f - 1000.0) <= 16000.0 / 2048);
    double peak = 0;
    for (int64_t i = 2000; i < a->n_samples - 2000; i++) peak = fmax(peak, fabs(a->samples[i]));
    assert_true(fabs(peak - 0.5) < 0.01);
    qiao_audio_free(a);
    /* Keeping the source rate (target 0) is an identity. */
    qiao_audio_params p = qiao_audio_default_params();
    p.target_rate = 0;
    assert_int_equal(qiao_audio_from_pcm(x, n, 8000, 1, &p, &a), QIAO_OK);
    assert_int_equal(a->n_samples, n);
    assert_memory_equal(a->samples, x, (size_t)n * sizeof(float));
    qiao_audio_free(a);
    free(x);
}

/* ---- the reference fixture ------------------------------------------------------- */

static const float *fixture_tensor(qc_st_file *f, const char *name, int64_t *rows, int64_t *cols) {
    const qc_st_tensor *t = qc_st_find(f, name);
    if (!t) fail_msg("fixture has no %s", name);
    assert_int_equal(t->dtype, QIAO_DTYPE_F32);
    *rows = t->shape[0];
    *cols = t->ndim > 1 ? t->shape[1] : 1;
    return t->data;
}

/* qiao's decode (libswresample) against torchaudio.functional.resample on
 * the same clip: two different windowed-sinc resamplers, so not equal, but
 * the same length and nearly the same signal. */
static void test_resample_matches_torchaudio(void **state) {
    qc_st_file *f = NULL;
    assert_int_equal(qc_st_open(DATA "mel_fixture.safetensors", &f), QIAO_OK);
    const char *keys[] = {"fsdd", "esc"}, *files[] = {WAV, OGG};
    for (int c = 0; c < 2; c++) {
        char name[64];
        int64_t n, one;
        snprintf(name, sizeof name, "%s.pcm16k", keys[c]);
        const float *ref = fixture_tensor(f, name, &n, &one);
        qiao_audio *a = decode(files[c]);
        double r = corr(a->samples, ref, a->n_samples < n ? a->n_samples : n);
        double err = 0, pow = 0;
        for (int64_t i = 0; i < n && i < a->n_samples; i++) {
            err += (a->samples[i] - ref[i]) * (double)(a->samples[i] - ref[i]);
            pow += (double)ref[i] * ref[i];
        }
        printf("  %s: qiao %lld samples, torchaudio %lld; corr %.6f, SNR %.1f dB\n", keys[c],
               (long long)a->n_samples, (long long)n, r, 10 * log10(pow / err));
        assert_true(llabs(a->n_samples - n) <= 1);
        assert_true(r > 0.999);
        qiao_audio_free(a);
    }
    qc_st_close(f);
}

/* Tolerance: torchaudio's own float32 run lands up to 4e-4 (in log) from
 * the float64 reference on these clips (make_mel_fixture.py prints it);
 * float32 FFT rounding is relative to the frame's energy, so bins far below
 * the frame's peak get large *relative* errors in any float32
 * implementation. Hence |dlog| <= 1e-3 wherever the mel value is within
 * 1e-6 of its frame's maximum (and above 100 * floor), and an absolute
 * error of 1e-5 * frame max (in linear power) everywhere else. (Measured:
 * |dlog| <= 8e-5, relative absolute error <= 1.2e-6.) The ESC clip is
 * silent (digital zero, floored) after its first second. */
static void test_mel_matches_torchaudio(void **state) {
    qc_st_file *f = NULL;
    assert_int_equal(qc_st_open(DATA "mel_fixture.safetensors", &f), QIAO_OK);
    const char *keys[] = {"fsdd", "esc"};
    for (int c = 0; c < 2; c++) {
        char name[64];
        int64_t n, one, frames, nm;
        snprintf(name, sizeof name, "%s.pcm16k", keys[c]);
        const float *pcm = fixture_tensor(f, name, &n, &one);
        snprintf(name, sizeof name, "%s.mel", keys[c]);
        const float *ref = fixture_tensor(f, name, &frames, &nm);
        assert_int_equal(nm, 80);
        qiao_audio *a = NULL;
        qiao_audio_params ap = qiao_audio_default_params();
        assert_int_equal(qiao_audio_from_pcm(pcm, n, 16000, 1, &ap, &a), QIAO_OK);
        float *mel = NULL;
        int64_t got = 0;
        assert_int_equal(qiao_mel_compute(a, NULL, &mel, &got), QIAO_OK);
        assert_int_equal(got, frames);
        double worst_log = 0, worst_lin = 0;
        int64_t checked = 0, above = 0;
        for (int64_t t = 0; t < frames; t++) {
            double fmaxv = 0;
            for (int m = 0; m < 80; m++) fmaxv = fmax(fmaxv, exp(ref[t * 80 + m]));
            for (int m = 0; m < 80; m++) {
                double r = ref[t * 80 + m], q = mel[t * 80 + m];
                double lin = exp(r);
                above += lin > 100 * 1e-10;
                if (lin > 100 * 1e-10 && lin > 1e-6 * fmaxv) {
                    worst_log = fmax(worst_log, fabs(q - r));
                    checked++;
                } else {
                    worst_lin = fmax(worst_lin, fabs(exp(q) - lin) / fmaxv);
                }
            }
        }
        printf("  %s: %lld frames, %lld values checked in log: max |dlog| %.3g; others max |dmel|/frame max %.3g\n",
               keys[c], (long long)frames, (long long)checked, worst_log, worst_lin);
        assert_true(checked >= 3000 && checked >= above * 9 / 10);
        assert_true(worst_log <= 1e-3);
        assert_true(worst_lin <= 1e-5);
        qiao_mel_free(mel);
        qiao_audio_free(a);
    }
    qc_st_close(f);
}

/* ---- streaming ------------------------------------------------------------------- */

static void test_mel_stream_equals_whole(void **state) {
    qiao_audio *a = decode(OGG);
    float *whole = NULL;
    int64_t frames = 0;
    assert_int_equal(qiao_mel_compute(a, NULL, &whole, &frames), QIAO_OK);
    assert_int_equal(frames, 1 + a->n_samples / 160);
    const size_t chunks[] = {1, 7, 159, 160, 161, 200, 401, 4093, 100000};
    qc_rng rng;
    qc_rng_seed(&rng, 7);
    for (size_t c = 0; c <= sizeof chunks / sizeof chunks[0]; c++) {
        qiao_mel_stream *s = NULL;
        assert_int_equal(qiao_mel_stream_new(NULL, &s), QIAO_OK);
        float *got = qt_alloc(frames * 80);
        int64_t done = 0;
        for (int64_t i = 0; i < a->n_samples;) {
            /* the last round uses random chunk sizes in [1, 3000] */
            size_t k = c < sizeof chunks / sizeof chunks[0] ? chunks[c] : 1 + (size_t)qc_rng_below(&rng, 3000);
            if ((int64_t)k > a->n_samples - i) k = (size_t)(a->n_samples - i);
            const float *fr;
            int64_t nf;
            assert_int_equal(qiao_mel_stream_push(s, a->samples + i, k, &fr, &nf), QIAO_OK);
            assert_true(done + nf <= frames);
            if (nf) memcpy(got + done * 80, fr, (size_t)nf * 80 * sizeof(float));
            done += nf;
            i += (int64_t)k;
        }
        const float *fr;
        int64_t nf;
        assert_int_equal(qiao_mel_stream_finish(s, &fr, &nf), QIAO_OK);
        assert_int_equal(done + nf, frames);
        if (nf) memcpy(got + done * 80, fr, (size_t)nf * 80 * sizeof(float));
        assert_memory_equal(got, whole, (size_t)frames * 80 * sizeof(float));
        assert_int_not_equal(qiao_mel_stream_push(s, a->samples, 1, &fr, &nf), QIAO_OK); /* after finish */
        qiao_mel_stream_free(s);
        free(got);
    }
    qiao_mel_free(whole);
    qiao_audio_free(a);
}

/* Short signals (down to one sample, shorter than the n_fft/2 reflect pad)
 * still give 1 + n/hop finite frames; a constant signal has all its energy
 * in the lowest mel band; empty audio gives no frames. */
static void test_mel_short_and_empty(void **state) {
    float x[450];
    for (int i = 0; i < 450; i++) x[i] = 0.25f;
    const int64_t lens[] = {1, 2, 150, 200, 201, 399, 450};
    for (size_t j = 0; j < sizeof lens / sizeof lens[0]; j++) {
        qiao_audio *a = NULL;
        assert_int_equal(qiao_audio_from_pcm(x, lens[j], 16000, 1, NULL, &a), QIAO_OK);
        float *mel = NULL;
        int64_t frames = 0;
        assert_int_equal(qiao_mel_compute(a, NULL, &mel, &frames), QIAO_OK);
        assert_int_equal(frames, 1 + lens[j] / 160);
        for (int64_t i = 0; i < frames * 80; i++) assert_true(isfinite(mel[i]) && mel[i] >= logf(1e-10f) - 1e-3f);
        int best = 0;
        for (int m = 1; m < 80; m++)
            if (mel[m] > mel[best]) best = m;
        assert_int_equal(best, 0);
        qiao_mel_free(mel);
        qiao_audio_free(a);
    }
    qiao_audio *e = NULL;
    assert_int_equal(qiao_audio_from_pcm(NULL, 0, 16000, 1, NULL, &e), QIAO_OK);
    float *mel = (float *)1;
    int64_t frames = -1;
    assert_int_equal(qiao_mel_compute(e, NULL, &mel, &frames), QIAO_OK);
    assert_int_equal(frames, 0);
    assert_null(mel);
    qiao_audio_free(e);
}

static void test_params_validated(void **state) {
    qiao_mel_params p = qiao_mel_default_params();
    qiao_mel_stream *s = NULL;
    p.n_fft = 401;
    assert_int_equal(qiao_mel_stream_new(&p, &s), QIAO_ERR_INVALID_ARGUMENT);
    p = qiao_mel_default_params();
    p.fmax = 9000;
    assert_int_equal(qiao_mel_stream_new(&p, &s), QIAO_ERR_INVALID_ARGUMENT);
    p = qiao_mel_default_params();
    p.struct_size = 4;
    assert_int_equal(qiao_mel_stream_new(&p, &s), QIAO_ERR_INVALID_ARGUMENT);
    assert_null(s);
    /* An older caller's smaller struct: fields it does not know get defaults. */
    p = qiao_mel_default_params();
    p.struct_size = offsetof(qiao_mel_params, n_mels);
    p.n_mels = 12345;
    assert_int_equal(qiao_mel_stream_new(&p, &s), QIAO_OK);
    qiao_mel_stream_free(s);
    /* Audio at another rate than the mel params expect. */
    float x[100] = {0};
    qiao_audio *a = NULL;
    qiao_audio_params ap = qiao_audio_default_params();
    ap.target_rate = 0;
    assert_int_equal(qiao_audio_from_pcm(x, 100, 8000, 1, &ap, &a), QIAO_OK);
    float *mel = NULL;
    int64_t frames;
    assert_int_equal(qiao_mel_compute(a, NULL, &mel, &frames), QIAO_ERR_INVALID_ARGUMENT);
    qiao_audio_free(a);
    ap.max_seconds = -1;
    assert_int_equal(qiao_audio_from_pcm(x, 100, 8000, 1, &ap, &a), QIAO_ERR_INVALID_ARGUMENT);
    assert_int_equal(qiao_audio_from_pcm(x, 100, 8000, 0, NULL, &a), QIAO_ERR_FORMAT);
    assert_int_equal(qiao_audio_from_pcm(x, 100, 10000000, 1, NULL, &a), QIAO_ERR_FORMAT);
    assert_null(a);
    qiao_audio_free(NULL);
    qiao_mel_free(NULL);
    qiao_mel_stream_free(NULL);
}

/* ---- bad input ------------------------------------------------------------------- */

static qiao_status decode_bytes(const void *p, size_t n, const qiao_audio_params *params) {
    qiao_audio *a = NULL;
    qiao_status st = qiao_audio_decode_memory(p, n, params, &a);
    if (st == QIAO_OK) {
        assert_non_null(a);
        qiao_audio_free(a);
    } else {
        assert_null(a);
        assert_true(strlen(qiao_last_error()) > 0);
    }
    return st;
}

static void test_bad_input(void **state) {
    qiao_audio *a = NULL;
    assert_int_equal(qiao_audio_decode_file(DATA "no_such_file.wav", NULL, &a), QIAO_ERR_IO);
    assert_non_null(strstr(qiao_last_error(), "no_such_file.wav"));
    assert_int_equal(qiao_audio_decode_file(DATA, NULL, &a), QIAO_ERR_IO); /* a directory */
    assert_int_equal(decode_bytes("", 0, NULL), QIAO_ERR_FORMAT);
    spit(tpath("empty.wav"), "", 0);
    assert_int_equal(qiao_audio_decode_file(tpath("empty.wav"), NULL, &a), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "empty.wav"));
    /* Random bytes, and random bytes behind each format's magic. */
    unsigned char junk[8192];
    qc_rng r;
    qc_rng_seed(&r, 99);
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)qc_rng_u64(&r);
    assert_int_equal(decode_bytes(junk, sizeof junk, NULL), QIAO_ERR_FORMAT);
    const char *magics[] = {"RIFF\x10\x00\x00\x00WAVE", "FORM\x00\x00\x10\x00" "AIFF", "fLaC", "OggS", "ID3\x03",
                            "\xff\xfb\x90\x00", "\x00\x00\x00\x20" "ftypM4A "};
    for (size_t m = 0; m < sizeof magics / sizeof magics[0]; m++) {
        memcpy(junk, magics[m], strlen(magics[m]) > 4 ? 12 : 4);
        qiao_status st = decode_bytes(junk, sizeof junk, NULL);
        assert_true(st == QIAO_ERR_FORMAT || st == QIAO_OK); /* MP3 resyncs on junk frames */
    }
    /* Truncations: inside the header -> format error; inside the data ->
     * the frames that are there (as players do), never more. */
    size_t n;
    unsigned char *wav = slurp(WAV, &n), *ogg;
    assert_int_equal(decode_bytes(wav, 30, NULL), QIAO_ERR_FORMAT);
    qiao_audio *full = decode(WAV);
    assert_int_equal(qiao_audio_decode_memory(wav, 44 + 2000, NULL, &a), QIAO_OK);
    assert_int_equal(a->source_frames, 1000);
    assert_memory_equal(a->samples + 100, full->samples + 100, 1500 * sizeof(float)); /* before the resampler's tail */
    qiao_audio_free(a);
    size_t no;
    ogg = slurp(OGG, &no);
    assert_int_equal(decode_bytes(ogg, 50, NULL), QIAO_ERR_FORMAT);
    qiao_status st = qiao_audio_decode_memory(ogg, no / 2, NULL, &a);
    assert_true(st == QIAO_OK || st == QIAO_ERR_FORMAT);
    if (st == QIAO_OK) {
        assert_true(a->source_frames < 220544);
        qiao_audio_free(a);
    }
    make_ref();
    sh(FF "-i '%s' -c:a libmp3lame '%s'", tpath("ref.wav"), tpath("t.mp3"));
    size_t nm;
    unsigned char *mp3 = slurp(tpath("t.mp3"), &nm);
    assert_int_equal(decode_bytes(mp3, 20, NULL), QIAO_ERR_FORMAT);
    st = qiao_audio_decode_memory(mp3, nm / 2, NULL, &a);
    assert_true(st == QIAO_OK || st == QIAO_ERR_FORMAT);
    if (st == QIAO_OK) {
        assert_true(a->n_samples < 24000 * 3 / 4);
        qiao_audio_free(a);
    }
    /* A wrong extension: the bytes decide. */
    spit(tpath("really_ogg.wav"), ogg, no);
    qiao_audio *w = decode(tpath("really_ogg.wav"));
    assert_string_equal(w->source_format, "ogg/vorbis");
    qiao_audio_free(w);
    free(mp3);
    free(ogg);
    free(wav);
    qiao_audio_free(full);
    cleanup_tmp();
}

/* The Ogg page CRC (polynomial 0x04c11db7, not reflected, computed with the
 * CRC field zeroed), so a corrupted header still passes the page check and
 * reaches the Vorbis setup parser. */
static void ogg_fix_crc(unsigned char *page, size_t len) {
    memset(page + 22, 0, 4);
    uint32_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint32_t)page[i] << 24;
        for (int b = 0; b < 8; b++) crc = crc & 0x80000000u ? (crc << 1) ^ 0x04c11db7u : crc << 1;
    }
    for (int b = 0; b < 4; b++) page[22 + b] = (unsigned char)(crc >> (8 * b));
}

static size_t find_bytes(const unsigned char *h, size_t n, const char *needle, size_t k) {
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(h + i, needle, k)) return i;
    fail_msg("pattern not found");
    return 0;
}

/* libsndfile 1.2.0 leaks libvorbis's codec setup (5.8 KB) every time it
 * fails to open a corrupt Ogg/Vorbis file, so Ogg is decoded by FFmpeg. This
 * case feeds corrupt Ogg/Vorbis through the public entry points; under the
 * ASan build (detect_leaks=1) a leak anywhere on that path fails it. */
static void test_corrupt_ogg_no_leak(void **state) {
    size_t n;
    unsigned char *ogg = slurp(OGG, &n);
    unsigned char *bad = malloc(n);
    assert_non_null(bad);
    /* The setup header ("\x05vorbis") and the page that carries it. */
    size_t setup = find_bytes(ogg, n, "\x05vorbis", 7);
    size_t page = setup;
    while (page > 0 && memcmp(ogg + page, "OggS", 4) != 0) page--;
    size_t seg = ogg[page + 26], page_len = 27 + seg;
    for (size_t i = 0; i < seg; i++) page_len += ogg[page + 27 + i];
    assert_true(page + page_len <= n && setup > page);
    qiao_audio *a = NULL;
    /* Truncated inside the identification header, the comment header and
     * the setup header: no audio at all. */
    const size_t cuts[] = {40, setup - 20, setup + 20, setup + 1000};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        assert_int_equal(decode_bytes(ogg, cuts[c], NULL), QIAO_ERR_FORMAT);
        assert_non_null(strstr(qiao_last_error(), "<memory>"));
    }
    spit(tpath("cut.ogg"), ogg, setup + 1000);
    assert_int_equal(qiao_audio_decode_file(tpath("cut.ogg"), NULL, &a), QIAO_ERR_FORMAT);
    assert_non_null(strstr(qiao_last_error(), "cut.ogg"));
    /* Flipped bytes in the setup header (codebook count, a codebook's
     * sync pattern, the middle), with the page CRC recomputed; and once
     * without, so the page is dropped and the header is missing. Whatever
     * FFmpeg makes of these, the result is a clear refusal or bounded audio. */
    const size_t flips[][2] = {{7, 0xff}, {9, 0x5a}, {(page + page_len - setup) / 2, 0xff}};
    for (int fix = 1; fix >= 0; fix--) {
        for (size_t f = 0; f < sizeof flips / sizeof flips[0]; f++) {
            memcpy(bad, ogg, n);
            for (size_t k = 0; k < 4; k++) bad[setup + flips[f][0] + k] ^= (unsigned char)flips[f][1];
            if (fix) ogg_fix_crc(bad + page, page_len);
            qiao_status st = qiao_audio_decode_memory(bad, n, NULL, &a);
            if (st == QIAO_OK) {
                assert_true(a->source_frames <= 220544);
                for (int64_t i = 0; i < a->n_samples; i++) assert_true(fabsf(a->samples[i]) <= 1.0f);
                qiao_audio_free(a);
                a = NULL;
            } else {
                assert_int_equal(st, QIAO_ERR_FORMAT);
                assert_null(a);
                assert_non_null(strstr(qiao_last_error(), "<memory>"));
            }
        }
    }
    /* The intact file still decodes, through FFmpeg's Vorbis decoder. */
    assert_int_equal(qiao_audio_decode_memory(ogg, n, NULL, &a), QIAO_OK);
    assert_string_equal(a->source_format, "ogg/vorbis");
    assert_int_equal(a->source_frames, 220544);
    qiao_audio_free(a);
    free(bad);
    free(ogg);
    cleanup_tmp();
}

/* A canonical 44-byte WAV header over `data_bytes` of 16-bit PCM. */
static void wav_header(unsigned char *h, uint32_t rate, uint16_t channels, uint32_t data_bytes) {
    uint16_t bits = 16, align = (uint16_t)(channels * 2), fmt = 1;
    uint32_t riff = 36 + data_bytes, fmt_len = 16, byte_rate = rate * align;
    memcpy(h, "RIFF", 4);
    memcpy(h + 4, &riff, 4);
    memcpy(h + 8, "WAVEfmt ", 8);
    memcpy(h + 16, &fmt_len, 4);
    memcpy(h + 20, &fmt, 2);
    memcpy(h + 22, &channels, 2);
    memcpy(h + 24, &rate, 4);
    memcpy(h + 28, &byte_rate, 4);
    memcpy(h + 32, &align, 2);
    memcpy(h + 34, &bits, 2);
    memcpy(h + 36, "data", 4);
    memcpy(h + 40, &data_bytes, 4);
}

static void test_absurd_headers_refused(void **state) {
    static unsigned char f[44 + 16000];
    memset(f + 44, 0, 16000);
    wav_header(f, 10000000, 1, 16000);
    assert_int_equal(decode_bytes(f, sizeof f, NULL), QIAO_ERR_FORMAT); /* 10 MHz */
    wav_header(f, 0, 1, 16000);
    assert_int_equal(decode_bytes(f, sizeof f, NULL), QIAO_ERR_FORMAT);
    wav_header(f, 16000, 1000, 16000);
    assert_int_equal(decode_bytes(f, sizeof f, NULL), QIAO_ERR_FORMAT); /* channels over max_channels */
    /* A data chunk claiming 4 GB over 16 KB of samples: decoded as what is
     * there (libsndfile trusts the file size), nothing reserved for 4 GB. */
    wav_header(f, 16000, 1, 0xFFFFFFF0u);
    qiao_audio *a = NULL;
    assert_int_equal(qiao_audio_decode_memory(f, sizeof f, NULL, &a), QIAO_OK);
    assert_int_equal(a->n_samples, 8000);
    qiao_audio_free(a);
    /* Longer than max_seconds: refused, from the header for PCM, and while
     * decoding for streams without a length (raw MP3 frames). */
    wav_header(f, 16000, 1, 16000);
    qiao_audio_params p = qiao_audio_default_params();
    p.max_seconds = 0.1;
    assert_int_equal(decode_bytes(f, sizeof f, &p), QIAO_ERR_TOO_LARGE);
    make_ref();
    sh(FF "-i '%s' -c:a libmp3lame -write_xing 0 '%s'", tpath("ref.wav"), tpath("nx.mp3"));
    a = NULL;
    assert_int_equal(qiao_audio_decode_file(tpath("nx.mp3"), &p, &a), QIAO_ERR_TOO_LARGE);
    assert_null(a);
    /* An AIFF claiming 2^32-1 frames at 8 kHz (149 hours) over 1 KB. */
    unsigned char aiff[54 + 1024];
    memset(aiff, 0, sizeof aiff);
    memcpy(aiff, "FORM\x00\x00\x04\x2e" "AIFFCOMM\x00\x00\x00\x12\x00\x01\xff\xff\xff\xff\x00\x10"
                 "\x40\x0b\xfa\x00\x00\x00\x00\x00\x00\x00" "SSND\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00", 54);
    qiao_status st = decode_bytes(aiff, sizeof aiff, NULL);
    assert_true(st == QIAO_ERR_TOO_LARGE || st == QIAO_ERR_FORMAT || st == QIAO_OK);
    if (st == QIAO_OK) {
        assert_int_equal(qiao_audio_decode_memory(aiff, sizeof aiff, NULL, &a), QIAO_OK);
        assert_true(a->source_frames <= 512);
        qiao_audio_free(a);
    }
    cleanup_tmp();
}

/* Header faults are named (issue 12: each of these said only "not a
 * readable WAV/AIFF/FLAC file", and a WAV cut off after its header was
 * "invalid argument"). */
static void expect_wav_message(const unsigned char *f, size_t n, qiao_status want, const char *words) {
    qiao_audio *a = NULL;
    qiao_status st = qiao_audio_decode_memory(f, n, NULL, &a);
    assert_null(a);
    if (st != want || !strstr(qiao_last_error(), words))
        fail_msg("%s (want %s with \"%s\"): %s", qiao_status_str(st), qiao_status_str(want), words, qiao_last_error());
}

static void test_wav_header_messages(void **state) {
    (void)state;
    static unsigned char f[44 + 1600];
    memset(f + 44, 0, 1600);
    wav_header(f, 16000, 0, 1600);
    expect_wav_message(f, sizeof f, QIAO_ERR_FORMAT, "0 channels");
    wav_header(f, 0, 1, 1600);
    expect_wav_message(f, sizeof f, QIAO_ERR_FORMAT, "sample rate is 0 Hz");
    wav_header(f, 16000, 65535, 1600);
    expect_wav_message(f, sizeof f, QIAO_ERR_FORMAT, "65535 channels");
    wav_header(f, 16000, 1, 1600);
    f[34] = 0; /* bits per sample */
    expect_wav_message(f, sizeof f, QIAO_ERR_FORMAT, "0 bits per sample");
    /* The header of a 1600-byte recording with none of its samples. */
    wav_header(f, 16000, 1, 1600);
    expect_wav_message(f, 44, QIAO_ERR_FORMAT, "truncated");
    /* A recording of no samples is empty, not damaged: it decodes. */
    wav_header(f, 16000, 1, 0);
    qiao_audio *a = NULL;
    assert_int_equal(qiao_audio_decode_memory(f, 44, NULL, &a), QIAO_OK);
    assert_int_equal(a->n_samples, 0);
    qiao_audio_free(a);
}

/* ---- threads --------------------------------------------------------------------- */

typedef struct job {
    const char *path;
    float *mel;
    int64_t frames;
    qiao_status st;
} job;

static void *worker(void *u) {
    job *j = u;
    for (int rep = 0; rep < 2; rep++) {
        qiao_audio *a = NULL;
        j->st = qiao_audio_decode_file(j->path, NULL, &a);
        if (j->st != QIAO_OK) return NULL;
        qiao_mel_free(j->mel);
        j->mel = NULL;
        j->st = qiao_mel_compute(a, NULL, &j->mel, &j->frames);
        qiao_audio_free(a);
        if (j->st != QIAO_OK) return NULL;
    }
    return NULL;
}

static void test_threads_decode_and_mel(void **state) {
    make_ref();
    sh(FF "-i '%s' -c:a libmp3lame '%s'", tpath("ref.wav"), tpath("th.mp3"));
    const char *paths[4] = {OGG, WAV, tpath("th.mp3"), OGG};
    job serial[4], par[4];
    memset(serial, 0, sizeof serial);
    memset(par, 0, sizeof par);
    for (int i = 0; i < 4; i++) {
        serial[i].path = par[i].path = paths[i];
        worker(&serial[i]);
        assert_int_equal(serial[i].st, QIAO_OK);
    }
    pthread_t th[4];
    for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&th[i], NULL, worker, &par[i]), 0);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(par[i].st, QIAO_OK);
        assert_int_equal(par[i].frames, serial[i].frames);
        assert_memory_equal(par[i].mel, serial[i].mel, (size_t)par[i].frames * 80 * sizeof(float));
        qiao_mel_free(par[i].mel);
        qiao_mel_free(serial[i].mel);
    }
    cleanup_tmp();
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_every_format),
        cmocka_unit_test(test_memory_decode_equals_path),
        cmocka_unit_test(test_downmix_stereo_is_channel_mean),
        cmocka_unit_test(test_resample_8k_to_16k_keeps_sine),
        cmocka_unit_test(test_resample_matches_torchaudio),
        cmocka_unit_test(test_mel_matches_torchaudio),
        cmocka_unit_test(test_mel_stream_equals_whole),
        cmocka_unit_test(test_mel_short_and_empty),
        cmocka_unit_test(test_params_validated),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_corrupt_ogg_no_leak),
        cmocka_unit_test(test_absurd_headers_refused), cmocka_unit_test(test_wav_header_messages),
        cmocka_unit_test(test_threads_decode_and_mel),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    cleanup_tmp();
    return rc;
}
