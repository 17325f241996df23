/* libFuzzer target for audio decoding: every input is decoded from memory
 * through the public entry point (which sniffs the format) and forced
 * through the FFmpeg decoder; inputs that start like a format qiao sends to
 * libsndfile (RIFF/RIFX/RF64, FORM, fLaC) are also forced through libsndfile,
 * so both decoders see byte soup the sniffer would not send them. Other
 * bytes never reach libsndfile: forcing them there would fuzz libsndfile's
 * Ogg/Vorbis reader, which qiao no longer uses because it leaks on corrupt
 * headers (see modalities/audio/decode_ffmpeg.c). A small max_seconds keeps
 * each run short and exercises the length limits.
 * Whatever decodes also goes through the log-mel computer. Any input must
 * either be refused with a message or yield bounded audio in [-1, 1].
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DQIAO_FUZZ=ON -DQIAO_BUILD_BENCH=OFF
 *        cmake --build build-fuzz --target fuzz_audio
 * Run:   ./build-fuzz/bin/fuzz_audio NEW_CORPUS_DIR tests/fuzz/corpus/audio */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "modalities/audio/audio.h"

#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_audio(const float *x, size_t n, int rate, double max_seconds) {
    CHECK(rate > 0);
    /* The resampler may add a few samples beyond the limit's exact length. */
    CHECK((double)n <= max_seconds * rate + 256);
    for (size_t i = 0; i < n; i++) CHECK(x[i] >= -1.0f && x[i] <= 1.0f);
}

static void mel_of(const qiao_audio *a) {
    float *mel = NULL;
    int64_t frames = 0;
    qiao_mel_params mp = qiao_mel_default_params();
    mp.sample_rate = a->sample_rate;
    if (qiao_mel_compute(a, &mp, &mel, &frames) == QIAO_OK) {
        CHECK(frames == (a->n_samples ? 1 + a->n_samples / mp.hop : 0));
        for (int64_t i = 0; i < frames * mp.n_mels; i++) CHECK(mel[i] == mel[i]);
    }
    qiao_mel_free(mel);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qiao_audio_params p = qiao_audio_default_params();
    p.max_seconds = 2.0;
    p.max_channels = 8;
    qiao_audio *a = NULL;
    qiao_status st = qiao_audio_decode_memory(data, size, &p, &a);
    if (st == QIAO_OK) {
        check_audio(a->samples, (size_t)a->n_samples, a->sample_rate, p.max_seconds);
        mel_of(a);
        qiao_audio_free(a);
    } else {
        CHECK(a == NULL && qiao_last_error()[0] != '\0');
    }
    int sndfile = size >= 4 && (!memcmp(data, "RIFF", 4) || !memcmp(data, "RIFX", 4) || !memcmp(data, "RF64", 4) ||
                                !memcmp(data, "FORM", 4) || !memcmp(data, "fLaC", 4));
    for (int which = sndfile ? 0 : 1; which < 2 && size > 0; which++) {
        qa_src src = {.name = "<fuzz>", .mem = data, .size = (int64_t)size};
        qa_pipe pp;
        memset(&pp, 0, sizeof pp);
        char fmt[32];
        st = which ? qa_decode_ffmpeg(&src, &p, &pp, fmt, sizeof fmt) : qa_decode_sndfile(&src, &p, &pp, fmt, sizeof fmt);
        if (st == QIAO_OK) st = qa_pipe_finish(&pp);
        if (st == QIAO_OK) check_audio(pp.out, pp.n, pp.out_rate, p.max_seconds);
        qa_pipe_free(&pp);
    }
    return 0;
}
