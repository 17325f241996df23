/* modalities/audio/decode_ffmpeg.c - Ogg (Vorbis, Opus), MP3, AAC/M4A and
 * the audio track of video containers through libavformat/libavcodec, over
 * qm_input_open (modalities/media/ffmpeg.h): FFmpeg never opens a path or
 * URL itself, and demuxers that would open further files (playlists,
 * concat) are also kept out by a whitelist.
 *
 * Ogg/Vorbis comes here rather than to libsndfile: libsndfile 1.2.0 leaks
 * libvorbis's codec setup (one calloc in vorbis_info_init, 5.8 KB) each time
 * it fails to open a corrupt Ogg/Vorbis file, so a service decoding untrusted
 * uploads would grow without bound; FFmpeg's own Vorbis decoder does not. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>

#include "modalities/audio/audio.h"
#include "modalities/media/ffmpeg.h"

/* Demuxers we accept (av_match_list matches any name of a demuxer). */
static const char WHITELIST[] =
    "mp3,aac,mov,ogg,matroska,webm,flac,wav,aiff,avi,asf,caf,amr,ac3,eac3,mpegts,mpeg,flv,w64,au,loas,latm";

static int avio_read_cb(void *u, uint8_t *buf, int n) {
    size_t got = n > 0 ? qa_src_read(u, buf, (size_t)n) : 0;
    return got ? (int)got : AVERROR_EOF;
}
static int64_t avio_seek_cb(void *u, int64_t off, int whence) {
    qa_src *s = u;
    if (whence & AVSEEK_SIZE) return s->size;
    return qa_src_seek(s, off, whence & ~AVSEEK_FORCE);
}

/* One sample of any FFmpeg sample format as float. */
static float sample_at(const uint8_t *p, enum AVSampleFormat f, size_t i) {
    switch (f) {
    case AV_SAMPLE_FMT_U8: return ((float)p[i] - 128.0f) / 128.0f;
    case AV_SAMPLE_FMT_S16: { int16_t v; memcpy(&v, p + 2 * i, 2); return (float)v / 32768.0f; }
    case AV_SAMPLE_FMT_S32: { int32_t v; memcpy(&v, p + 4 * i, 4); return (float)((double)v / 2147483648.0); }
    case AV_SAMPLE_FMT_S64: { int64_t v; memcpy(&v, p + 8 * i, 8); return (float)((double)v / 9223372036854775808.0); }
    case AV_SAMPLE_FMT_FLT: { float v; memcpy(&v, p + 4 * i, 4); return v; }
    case AV_SAMPLE_FMT_DBL: { double v; memcpy(&v, p + 8 * i, 8); return (float)v; }
    default: return 0.0f;
    }
}

typedef struct ff_state {
    qa_src *src;
    qa_pipe *pp;
    AVCodecContext *dec;
    float *buf;                 /* interleaved float scratch */
    size_t buf_cap;
    int64_t frames_ok, errors;
} ff_state;

static qiao_status push_frame(ff_state *s, const AVFrame *fr) {
    const int c = s->pp->channels;
    if (fr->ch_layout.nb_channels != c || fr->sample_rate != s->pp->in_rate)
        return qc_error(QIAO_ERR_FORMAT, "%s: the stream changes from %d ch %d Hz to %d ch %d Hz", s->src->name, c,
                        s->pp->in_rate, fr->ch_layout.nb_channels, fr->sample_rate);
    enum AVSampleFormat f = (enum AVSampleFormat)fr->format;
    enum AVSampleFormat packed = av_get_packed_sample_fmt(f);
    if (packed != AV_SAMPLE_FMT_U8 && packed != AV_SAMPLE_FMT_S16 && packed != AV_SAMPLE_FMT_S32 &&
        packed != AV_SAMPLE_FMT_S64 && packed != AV_SAMPLE_FMT_FLT && packed != AV_SAMPLE_FMT_DBL)
        return qc_error(QIAO_ERR_UNSUPPORTED, "%s: sample format %d", s->src->name, fr->format);
    size_t n = fr->nb_samples > 0 ? (size_t)fr->nb_samples : 0;
    if (n == 0) return QIAO_OK;
    size_t need = n * (size_t)c;
    if (s->buf_cap < need) {
        float *q = realloc(s->buf, need * sizeof(float));
        if (!q) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", s->src->name);
        s->buf = q;
        s->buf_cap = need;
    }
    if (av_sample_fmt_is_planar(f)) {
        for (int k = 0; k < c; k++)
            for (size_t i = 0; i < n; i++) s->buf[i * (size_t)c + (size_t)k] = sample_at(fr->extended_data[k], packed, i);
    } else {
        for (size_t i = 0; i < need; i++) s->buf[i] = sample_at(fr->extended_data[0], packed, i);
    }
    s->frames_ok++;
    return qa_pipe_push(s->pp, s->buf, n);
}

/* Drains decoded frames. Corrupt packets are skipped, as players do; the
 * file fails only if nothing at all decodes. */
static qiao_status drain(ff_state *s, AVFrame *fr) {
    for (;;) {
        int r = avcodec_receive_frame(s->dec, fr);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return QIAO_OK;
        if (r == AVERROR(ENOMEM)) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", s->src->name);
        if (r < 0) {
            s->errors++;
            return QIAO_OK;
        }
        qiao_status st = push_frame(s, fr);
        av_frame_unref(fr);
        if (st != QIAO_OK) return st;
    }
}

qiao_status qa_decode_ffmpeg(qa_src *src, const qiao_audio_params *p, qa_pipe *pp, char *format, size_t cap) {
    ff_state s = {.src = src, .pp = pp};
    AVFormatContext *fmt = NULL;
    AVPacket *pkt = NULL;
    AVFrame *fr = NULL;
    qiao_status st = qm_input_open(&fmt, src->name, "not a recognised audio format", src, avio_read_cb, avio_seek_cb,
                                   WHITELIST, NULL);
    if (st != QIAO_OK) goto done;
    int r = avformat_find_stream_info(fmt, NULL);
    if (r < 0) {
        st = qm_av_error(QIAO_ERR_FORMAT, src->name, "cannot read the stream layout", r);
        goto done;
    }
    const AVCodec *codec = NULL;
    int idx = av_find_best_stream(fmt, AVMEDIA_TYPE_AUDIO, -1, -1, &codec, 0);
    if (idx < 0 || !codec) {
        st = qc_error(idx == AVERROR_DECODER_NOT_FOUND ? QIAO_ERR_UNSUPPORTED : QIAO_ERR_FORMAT,
                      "%s: no decodable audio stream", src->name);
        goto done;
    }
    AVStream *stream = fmt->streams[idx];
    {
        char first[16];
        snprintf(first, sizeof first, "%s", fmt->iformat->name);
        first[strcspn(first, ",")] = '\0';
        const char *cname = avcodec_get_name(codec->id); /* "mp3", not the decoder's "mp3float" */
        if (!strcmp(first, cname)) snprintf(format, cap, "%s", first);
        else snprintf(format, cap, "%s/%s", first, cname);
    }
    s.dec = avcodec_alloc_context3(codec);
    if (!s.dec || avcodec_parameters_to_context(s.dec, stream->codecpar) < 0) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", src->name);
        goto done;
    }
    s.dec->thread_count = 1; /* the caller decides about threads */
    if ((r = avcodec_open2(s.dec, codec, NULL)) < 0) {
        st = r == AVERROR(ENOMEM) ? qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", src->name)
                                  : qc_error(QIAO_ERR_FORMAT, "%s: cannot open the %s decoder", src->name, codec->name);
        goto done;
    }
    int rate = s.dec->sample_rate, channels = s.dec->ch_layout.nb_channels;
    /* The claimed duration (container header, or estimated from the bit rate)
     * is checked against the limit before anything is reserved. */
    int64_t claimed = -1;
    if (stream->duration > 0 && stream->time_base.num > 0 && stream->time_base.den > 0 && rate > 0)
        claimed = av_rescale_q(stream->duration, stream->time_base, (AVRational){1, rate});
    else if (fmt->duration > 0 && rate > 0)
        claimed = av_rescale_q(fmt->duration, AV_TIME_BASE_Q, (AVRational){1, rate});
    st = qa_pipe_init(pp, src->name, rate, channels, claimed, p);
    if (st != QIAO_OK) goto done;
    pkt = av_packet_alloc();
    fr = av_frame_alloc();
    if (!pkt || !fr) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", src->name);
        goto done;
    }
    /* A corrupt packet is skipped and a corrupt tail ends the clip, but
     * memory that runs out is an error, never a shorter clip. */
    while (st == QIAO_OK) {
        r = av_read_frame(fmt, pkt);
        if (r == AVERROR(ENOMEM)) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", src->name);
        if (r < 0) break; /* end of file, or a truncated/corrupt tail: keep what decoded */
        if (pkt->stream_index == idx) {
            r = avcodec_send_packet(s.dec, pkt);
            if (r == AVERROR(ENOMEM)) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", src->name);
            else if (r < 0) s.errors++;
            else st = drain(&s, fr);
        }
        av_packet_unref(pkt);
    }
    if (st == QIAO_OK && avcodec_send_packet(s.dec, NULL) >= 0) st = drain(&s, fr);
    if (st == QIAO_OK && s.frames_ok == 0)
        st = qc_error(QIAO_ERR_FORMAT, "%s: no audio could be decoded (%lld corrupt packets)", src->name,
                      (long long)s.errors);
done:
    av_frame_free(&fr);
    av_packet_free(&pkt);
    avcodec_free_context(&s.dec);
    qm_input_close(&fmt);
    free(s.buf);
    return st;
}
