/* modalities/audio/audio.h - internals of audio decoding (qa_ prefix).
 *
 * Every decoder reads through a qa_src (a file or a memory buffer, so path
 * and memory decoding share one code path) and hands blocks of interleaved
 * float frames at the source rate to a qa_pipe, which downmixes them to mono,
 * resamples them and appends them to the result. The result is the only
 * buffer that grows with the length of the file. */
#ifndef QIAO_AUDIO_INTERNAL_H
#define QIAO_AUDIO_INTERNAL_H

#include <stdio.h>

#include "core/core.h"

/* Accepted source sample rates (Hz): anything outside is a corrupt header. */
#define QA_MIN_RATE 1000
#define QA_MAX_RATE 768000

/* A seekable byte source. Exactly one of f / mem is used. */
typedef struct qa_src {
    const char *name;           /* for messages: the path, or "<memory>" */
    FILE *f;
    const unsigned char *mem;
    int64_t size;               /* total bytes */
    int64_t pos;
} qa_src;

/* Reads up to n bytes at the current position; returns the count (0 at the
 * end or on a read error). */
size_t qa_src_read(qa_src *s, void *dst, size_t n);
/* whence is SEEK_SET/SEEK_CUR/SEEK_END; returns the new position or -1. */
int64_t qa_src_seek(qa_src *s, int64_t offset, int whence);

/* Downmix + resample + collect. */
typedef struct qa_pipe {
    const char *name;
    int in_rate, out_rate, channels;
    int64_t max_in_frames;      /* from params.max_seconds */
    int64_t frames_in;          /* source frames pushed so far */
    struct SwrContext *swr;     /* NULL when in_rate == out_rate */
    float *mono;                /* scratch, mono_cap floats */
    size_t mono_cap;
    float *out;                 /* the result, cap floats */
    size_t n, cap;
} qa_pipe;

/* Validates the source rate and channel count against the limits (FORMAT),
 * and a claimed length in frames (<0 when unknown) against max_seconds
 * (TOO_LARGE), before anything is allocated. */
qiao_status qa_pipe_check(const char *name, int rate, int channels, int64_t claimed_frames,
                          const qiao_audio_params *p);
qiao_status qa_pipe_init(qa_pipe *pp, const char *name, int rate, int channels, int64_t claimed_frames,
                         const qiao_audio_params *p);
/* `frames` frames of `channels` interleaved floats. */
qiao_status qa_pipe_push(qa_pipe *pp, const float *x, size_t frames);
/* Drains the resampler and clamps the result to [-1, 1] (NaN -> 0). */
qiao_status qa_pipe_finish(qa_pipe *pp);
void qa_pipe_free(qa_pipe *pp);

/* Decoders: read the whole source through the pipe (which they initialize).
 * `format` receives a short name ("wav", "mov/aac"...). */
qiao_status qa_decode_sndfile(qa_src *src, const qiao_audio_params *p, qa_pipe *pp, char *format, size_t cap);
qiao_status qa_decode_ffmpeg(qa_src *src, const qiao_audio_params *p, qa_pipe *pp, char *format, size_t cap);

/* The centre frequency (Hz) of each of the p->n_mels bands of
 * qiao_mel_compute (the peak of band m's triangle) into hz (n_mels). `p`
 * NULL means the defaults; invalid parameters are QIAO_ERR_INVALID_ARGUMENT
 * as in qiao_mel_compute. (mel.c) */
qiao_status qa_mel_centers_hz(const qiao_mel_params *p, float *hz);

#endif
