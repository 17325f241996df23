/* modalities/audio/audio.c - the public audio API: sources, format sniffing,
 * the downmix/resample pipe, and qiao_audio_* entry points. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libavutil/channel_layout.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>

#include "modalities/audio/audio.h"
#include "modalities/media/ffmpeg.h"

/* Frames per block handed from decoders to the pipe. */
#define QA_BLOCK 4096
/* The result is reserved up front for at most this many seconds of a
 * claimed length; longer audio grows the buffer as it arrives, so a lying
 * header cannot make us reserve an hour for a 1 KB file. */
#define QA_RESERVE_SECONDS 120

/* ---- sources ------------------------------------------------------------- */

size_t qa_src_read(qa_src *s, void *dst, size_t n) {
    if (s->pos >= s->size) return 0;
    if ((int64_t)n > s->size - s->pos) n = (size_t)(s->size - s->pos);
    size_t got;
    if (s->mem) {
        memcpy(dst, s->mem + s->pos, n);
        got = n;
    } else {
        if (fseeko(s->f, (off_t)s->pos, SEEK_SET) != 0) return 0;
        got = fread(dst, 1, n, s->f);
    }
    s->pos += (int64_t)got;
    return got;
}

int64_t qa_src_seek(qa_src *s, int64_t offset, int whence) {
    int64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? s->pos : s->size;
    if (whence != SEEK_SET && whence != SEEK_CUR && whence != SEEK_END) return -1;
    if ((offset > 0 && base > INT64_MAX - offset) || base + offset < 0) return -1;
    s->pos = base + offset; /* past the end is allowed: reads then return 0 */
    return s->pos;
}

/* ---- params -------------------------------------------------------------- */

QIAO_API qiao_audio_params qiao_audio_default_params(void) {
    qiao_audio_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.target_rate = 16000;
    p.max_seconds = 3600.0;
    p.max_channels = 32;
    return p;
}

static qiao_status read_params(const qiao_audio_params *in, qiao_audio_params *p) {
    *p = qiao_audio_default_params();
    qiao_status st = qc_params_read(p, sizeof *p, in, offsetof(qiao_audio_params, target_rate) + sizeof(int),
                                    "qiao_audio_default_params");
    if (st != QIAO_OK) return st;
    if (p->target_rate != 0 && (p->target_rate < QA_MIN_RATE || p->target_rate > QA_MAX_RATE))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "audio: target_rate %d is outside [%d, %d] (or 0)",
                        p->target_rate, QA_MIN_RATE, QA_MAX_RATE);
    if (!(p->max_seconds > 0.0) || p->max_seconds > 7 * 24 * 3600.0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "audio: max_seconds must be in (0, 1 week]");
    if (p->max_channels < 1 || p->max_channels > 1024)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "audio: max_channels must be in [1, 1024]");
    return QIAO_OK;
}

/* ---- the pipe ------------------------------------------------------------ */

qiao_status qa_pipe_check(const char *name, int rate, int channels, int64_t claimed_frames,
                          const qiao_audio_params *p) {
    if (rate < QA_MIN_RATE || rate > QA_MAX_RATE)
        return qc_error(QIAO_ERR_FORMAT, "%s: sample rate %d Hz is outside [%d, %d]", name, rate, QA_MIN_RATE,
                        QA_MAX_RATE);
    if (channels < 1)
        return qc_error(QIAO_ERR_FORMAT, "%s: %d channels", name, channels);
    if (channels > p->max_channels)
        return qc_error(QIAO_ERR_FORMAT, "%s: %d channels is more than the limit of %d", name, channels,
                        p->max_channels);
    if (claimed_frames > 0 && (double)claimed_frames / rate > p->max_seconds)
        return qc_error(QIAO_ERR_TOO_LARGE, "%s: claims %.1f s of audio, over the limit of %.1f s", name,
                        (double)claimed_frames / rate, p->max_seconds);
    return QIAO_OK;
}

static qiao_status grow_out(qa_pipe *pp, size_t need) {
    if (pp->cap - pp->n >= need) return QIAO_OK;
    size_t want;
    if (!qc_add_size(pp->n, need, &want)) return qc_error(QIAO_ERR_TOO_LARGE, "%s: audio too long", pp->name);
    size_t cap = pp->cap < 4096 ? 4096 : pp->cap + pp->cap / 2;
    if (cap < want) cap = want;
    size_t bytes;
    if (!qc_mul_size(cap, sizeof(float), &bytes)) return qc_error(QIAO_ERR_TOO_LARGE, "%s: audio too long", pp->name);
    float *q = realloc(pp->out, bytes);
    if (!q) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu samples", pp->name, cap);
    pp->out = q;
    pp->cap = cap;
    return QIAO_OK;
}

qiao_status qa_pipe_init(qa_pipe *pp, const char *name, int rate, int channels, int64_t claimed_frames,
                         const qiao_audio_params *p) {
    memset(pp, 0, sizeof *pp);
    pp->name = name;
    qiao_status st = qa_pipe_check(name, rate, channels, claimed_frames, p);
    if (st != QIAO_OK) return st;
    pp->in_rate = rate;
    pp->out_rate = p->target_rate ? p->target_rate : rate;
    pp->channels = channels;
    pp->max_in_frames = (int64_t)floor(p->max_seconds * rate);
    if (pp->in_rate != pp->out_rate) {
        /* Mono float to mono float: only the rate changes (the downmix is ours,
         * a plain mean, so it is the same for every decoder). */
        AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
        qm_ffmpeg_init(); /* libswresample logs through FFmpeg's log too */
        if (swr_alloc_set_opts2(&pp->swr, &mono, AV_SAMPLE_FMT_FLT, pp->out_rate, &mono, AV_SAMPLE_FMT_FLT,
                                pp->in_rate, 0, NULL) < 0 ||
            swr_init(pp->swr) < 0) {
            swr_free(&pp->swr);
            return qc_error(QIAO_ERR_BACKEND, "%s: cannot set up resampling %d -> %d Hz", name, pp->in_rate,
                            pp->out_rate);
        }
    }
    if (claimed_frames > 0) {
        double secs = fmin((double)claimed_frames / rate, QA_RESERVE_SECONDS);
        st = grow_out(pp, (size_t)(secs * pp->out_rate) + 64);
        if (st != QIAO_OK) return st;
    }
    return QIAO_OK;
}

qiao_status qa_pipe_push(qa_pipe *pp, const float *x, size_t frames) {
    if (frames == 0) return QIAO_OK;
    if ((int64_t)frames > pp->max_in_frames - pp->frames_in)
        return qc_error(QIAO_ERR_TOO_LARGE, "%s: longer than the limit of %.1f s", pp->name,
                        (double)pp->max_in_frames / pp->in_rate);
    pp->frames_in += (int64_t)frames;
    if (pp->mono_cap < frames) {
        float *q = realloc(pp->mono, frames * sizeof(float));
        if (!q) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", pp->name);
        pp->mono = q;
        pp->mono_cap = frames;
    }
    const int c = pp->channels;
    if (c == 1) {
        memcpy(pp->mono, x, frames * sizeof(float));
    } else {
        const float inv = 1.0f / (float)c;
        for (size_t i = 0; i < frames; i++) {
            float s = 0.0f;
            for (int k = 0; k < c; k++) s += x[i * (size_t)c + (size_t)k];
            pp->mono[i] = s * inv;
        }
    }
    if (!pp->swr) {
        qiao_status st = grow_out(pp, frames);
        if (st != QIAO_OK) return st;
        memcpy(pp->out + pp->n, pp->mono, frames * sizeof(float));
        pp->n += frames;
        return QIAO_OK;
    }
    int room = swr_get_out_samples(pp->swr, (int)frames);
    if (room < 0) return qc_error(QIAO_ERR_BACKEND, "%s: resampler failed", pp->name);
    qiao_status st = grow_out(pp, (size_t)room);
    if (st != QIAO_OK) return st;
    uint8_t *o = (uint8_t *)(pp->out + pp->n);
    const uint8_t *in = (const uint8_t *)pp->mono;
    int got = swr_convert(pp->swr, &o, room, &in, (int)frames);
    if (got < 0) return qc_error(QIAO_ERR_BACKEND, "%s: resampler failed", pp->name);
    pp->n += (size_t)got;
    return QIAO_OK;
}

qiao_status qa_pipe_finish(qa_pipe *pp) {
    if (pp->swr) {
        for (;;) {
            int room = swr_get_out_samples(pp->swr, 0) + 64;
            qiao_status st = grow_out(pp, (size_t)room);
            if (st != QIAO_OK) return st;
            uint8_t *o = (uint8_t *)(pp->out + pp->n);
            int got = swr_convert(pp->swr, &o, room, NULL, 0);
            if (got < 0) return qc_error(QIAO_ERR_BACKEND, "%s: resampler failed", pp->name);
            if (got == 0) break;
            pp->n += (size_t)got;
        }
    }
    for (size_t i = 0; i < pp->n; i++) {
        float v = pp->out[i];
        pp->out[i] = v > 1.0f ? 1.0f : v < -1.0f ? -1.0f : v == v ? v : 0.0f;
    }
    return QIAO_OK;
}

void qa_pipe_free(qa_pipe *pp) {
    if (!pp) return;
    swr_free(&pp->swr);
    free(pp->mono);
    free(pp->out);
    memset(pp, 0, sizeof *pp);
}

/* ---- sniffing ------------------------------------------------------------ */

/* Whether libsndfile should read these bytes: WAV, AIFF and FLAC. Everything
 * else, Ogg included, goes to FFmpeg (see decode_ffmpeg.c for why Ogg/Vorbis
 * is not left to libsndfile). */
static int is_sndfile_format(const unsigned char *h, size_t n) {
    if (n >= 12 && (!memcmp(h, "RIFF", 4) || !memcmp(h, "RIFX", 4) || !memcmp(h, "RF64", 4)) &&
        !memcmp(h + 8, "WAVE", 4))
        return 1;
    if (n >= 12 && !memcmp(h, "FORM", 4) && (!memcmp(h + 8, "AIFF", 4) || !memcmp(h + 8, "AIFC", 4))) return 1;
    if (n >= 4 && !memcmp(h, "fLaC", 4)) return 1;
    return 0;
}

static qiao_status decode_src(qa_src *src, const qiao_audio_params *in, qiao_audio **out) {
    qiao_audio_params p;
    qiao_status st = read_params(in, &p);
    if (st != QIAO_OK) return st;
    if (src->size == 0) return qc_error(QIAO_ERR_FORMAT, "%s: empty file", src->name);
    unsigned char head[128];
    size_t nh = qa_src_read(src, head, sizeof head);
    if (nh == 0) return qc_error(QIAO_ERR_IO, "%s: cannot read", src->name);
    src->pos = 0;
    qiao_audio *a = calloc(1, sizeof *a);
    if (!a) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", src->name);
    qa_pipe pp;
    memset(&pp, 0, sizeof pp);
    if (is_sndfile_format(head, nh))
        st = qa_decode_sndfile(src, &p, &pp, a->source_format, sizeof a->source_format);
    else
        st = qa_decode_ffmpeg(src, &p, &pp, a->source_format, sizeof a->source_format);
    if (st == QIAO_OK) st = qa_pipe_finish(&pp);
    if (st != QIAO_OK) {
        qa_pipe_free(&pp);
        free(a);
        return st;
    }
    a->samples = pp.out; /* the caller owns it now */
    pp.out = NULL;
    a->n_samples = (int64_t)pp.n;
    a->sample_rate = pp.out_rate;
    a->source_rate = pp.in_rate;
    a->source_channels = pp.channels;
    a->source_frames = pp.frames_in;
    qa_pipe_free(&pp);
    *out = a;
    return QIAO_OK;
}

QIAO_API qiao_status qiao_audio_decode_file(const char *path, const qiao_audio_params *params, qiao_audio **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "audio: out is NULL");
    *out = NULL;
    if (!path) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "audio: path is NULL");
    FILE *f;
    int64_t fsize;
    qiao_status st = qc_fopen_read(path, &f, &fsize);
    if (st != QIAO_OK) return st;
    qa_src src = {.name = path, .f = f, .size = fsize};
    st = decode_src(&src, params, out);
    fclose(f);
    return st;
}

QIAO_API qiao_status qiao_audio_decode_memory(const void *data, size_t size, const qiao_audio_params *params,
                                              qiao_audio **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "audio: out is NULL");
    *out = NULL;
    if (!data && size) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "audio: data is NULL");
    if (size > (size_t)INT64_MAX) return qc_error(QIAO_ERR_TOO_LARGE, "<memory>: buffer too large");
    static const unsigned char none[1] = {0};
    qa_src src = {.name = "<memory>", .mem = data ? data : none, .size = (int64_t)size};
    return decode_src(&src, params, out);
}

QIAO_API qiao_status qiao_audio_from_pcm(const float *samples, int64_t n_frames, int sample_rate, int channels,
                                         const qiao_audio_params *params, qiao_audio **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "audio: out is NULL");
    *out = NULL;
    if (n_frames < 0 || (n_frames > 0 && !samples))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "pcm: need samples and n_frames >= 0");
    qiao_audio_params p;
    qiao_status st = read_params(params, &p);
    if (st != QIAO_OK) return st;
    size_t total;
    if (channels > 0 && !qc_mul_size((size_t)n_frames, (size_t)channels, &total))
        return qc_error(QIAO_ERR_TOO_LARGE, "pcm: %lld frames x %d channels overflows", (long long)n_frames, channels);
    qa_pipe pp;
    st = qa_pipe_init(&pp, "pcm", sample_rate, channels, n_frames, &p);
    for (int64_t i = 0; st == QIAO_OK && i < n_frames; i += QA_BLOCK) {
        int64_t k = n_frames - i < QA_BLOCK ? n_frames - i : QA_BLOCK;
        st = qa_pipe_push(&pp, samples + (size_t)i * (size_t)channels, (size_t)k);
    }
    if (st == QIAO_OK) st = qa_pipe_finish(&pp);
    qiao_audio *a = st == QIAO_OK ? calloc(1, sizeof *a) : NULL;
    if (st == QIAO_OK && !a) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "pcm: out of memory");
    if (st != QIAO_OK) {
        qa_pipe_free(&pp);
        return st;
    }
    a->samples = pp.out;
    pp.out = NULL;
    a->n_samples = (int64_t)pp.n;
    a->sample_rate = pp.out_rate;
    a->source_rate = pp.in_rate;
    a->source_channels = pp.channels;
    a->source_frames = pp.frames_in;
    snprintf(a->source_format, sizeof a->source_format, "pcm");
    qa_pipe_free(&pp);
    *out = a;
    return QIAO_OK;
}

QIAO_API void qiao_audio_free(qiao_audio *audio) {
    if (!audio) return;
    free(audio->samples);
    free(audio);
}
