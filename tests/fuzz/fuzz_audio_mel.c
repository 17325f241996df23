/* tests/fuzz/fuzz_audio_mel.c - libFuzzer target for the audio front end
 * with odd rates and channel counts: the first bytes choose the source rate
 * (1 Hz to 768 kHz), the channel count (1 to 40, over the default limit of
 * 32 too), the target rate, and the mel parameters (window, hop, bands, band
 * edges); the rest are 16-bit samples. They go through qiao_audio_from_pcm
 * (downmix, clamp, resample) and then both log-mel computers, whole and
 * streaming in chunks whose sizes the input also picks.
 *
 * What must hold: every call either succeeds or is refused with a message;
 * decoded audio is within [-1, 1] and about as long as the input; the mel
 * has the documented frame count, is finite, and the streaming frames are
 * bit-identical to the whole computation. fuzz_audio covers the decoders
 * with the default front end only. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "modalities/audio/audio.h"

#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 16) return 0;
    static const int rates[8] = {8000, 11025, 16000, 22050, 44100, 48000, 96000, 192000};
    int src_rate = (data[0] & 0x80) ? rates[data[0] & 7] : 1 + (int)(u32(data + 1) % 768000);
    int channels = 1 + data[5] % 40;
    qiao_audio_params ap = qiao_audio_default_params();
    ap.max_seconds = 2.0;
    switch (data[6] % 4) {
    case 0: ap.target_rate = 16000; break;
    case 1: ap.target_rate = 0; break; /* keep the source rate */
    case 2: ap.target_rate = rates[data[6] >> 5]; break;
    default: ap.target_rate = 1 + (int)((data[7] | data[8] << 8) * 3) % 200000; break;
    }
    const uint8_t *pcm = data + 16;
    size_t n_frames = (size - 16) / 2 / (size_t)channels;
    float *x = malloc((n_frames * (size_t)channels + 1) * sizeof *x);
    if (!x) return 0;
    for (size_t i = 0; i < n_frames * (size_t)channels; i++)
        x[i] = (float)(int16_t)(pcm[2 * i] | pcm[2 * i + 1] << 8) / 16384.0f; /* up to 2: clamped */
    qiao_audio *a = NULL;
    qiao_status st = qiao_audio_from_pcm(x, (int64_t)n_frames, src_rate, channels, &ap, &a);
    free(x);
    if (st != QIAO_OK) {
        CHECK(a == NULL && qiao_last_error()[0] != '\0');
        return 0;
    }
    CHECK(a->sample_rate > 0);
    for (int64_t i = 0; i < a->n_samples; i++) CHECK(a->samples[i] >= -1.0f && a->samples[i] <= 1.0f);
    double secs = (double)n_frames / src_rate;
    CHECK((double)a->n_samples <= secs * a->sample_rate + 256);

    qiao_mel_params mp = qiao_mel_default_params();
    mp.sample_rate = a->sample_rate;
    mp.n_fft = 16 + 2 * (int)((data[9] | data[10] << 8) % 1017); /* 16..2048, even */
    /* Hops down to n_fft / 32: a hop of 1 on a long window spent the
     * fuzzer's time in FFTs (14 executions a second) without new paths. */
    mp.hop = mp.n_fft / 32 + 1 + (int)(data[11] | data[12] << 8) % (mp.n_fft - mp.n_fft / 32);
    mp.n_mels = 1 + data[13] % 128;
    mp.fmin = (float)(data[14] % 64) * 10.0f;
    mp.fmax = (data[15] & 1) ? 0.0f : (float)a->sample_rate / 2.0f * (float)(data[15] >> 1) / 127.0f;
    float *mel = NULL;
    int64_t frames = 0;
    st = qiao_mel_compute(a, &mp, &mel, &frames);
    if (st == QIAO_OK) {
        CHECK(frames == (a->n_samples ? 1 + a->n_samples / mp.hop : 0));
        for (int64_t i = 0; i < frames * mp.n_mels; i++) CHECK(isfinite(mel[i]));
        /* The stream, in chunks of 1..256 samples chosen by the input. */
        qiao_mel_stream *ms = NULL;
        CHECK(qiao_mel_stream_new(&mp, &ms) == QIAO_OK);
        int64_t got = 0;
        for (int64_t i = 0, k = 0; i < a->n_samples; k++) {
            int64_t chunk = 1 + data[k % 16] % 256;
            if (chunk > a->n_samples - i) chunk = a->n_samples - i;
            const float *fr = NULL;
            int64_t nf = 0;
            CHECK(qiao_mel_stream_push(ms, a->samples + i, (size_t)chunk, &fr, &nf) == QIAO_OK);
            CHECK(got + nf <= frames);
            if (nf) CHECK(memcmp(fr, mel + got * mp.n_mels, (size_t)(nf * mp.n_mels) * sizeof *fr) == 0);
            got += nf;
            i += chunk;
        }
        const float *fr = NULL;
        int64_t nf = 0;
        CHECK(qiao_mel_stream_finish(ms, &fr, &nf) == QIAO_OK);
        CHECK(got + nf == frames);
        if (nf) CHECK(memcmp(fr, mel + got * mp.n_mels, (size_t)(nf * mp.n_mels) * sizeof *fr) == 0);
        qiao_mel_stream_free(ms);
    } else {
        CHECK(mel == NULL && qiao_last_error()[0] != '\0');
    }
    qiao_mel_free(mel);
    qiao_audio_free(a);
    return 0;
}
