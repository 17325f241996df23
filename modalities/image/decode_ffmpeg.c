/* modalities/image/decode_ffmpeg.c - WebP, TIFF and other still images, and
 * sampled video frames, through libavformat + libavcodec + libswscale.
 *
 * All input goes through qm_input_open (modalities/media/ffmpeg.h) over a
 * memory buffer or a FILE*, so FFmpeg opens no other file and no network.
 * Decoders run single-threaded (the caller picks the parallelism) with
 * AVCodecContext.max_pixels set, so FFmpeg itself refuses a frame over the
 * limit before allocating it, even when no header told us the size first. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>

#include "modalities/image/image.h"
#include "modalities/media/ffmpeg.h"

/* Bytes handed to the format probe: image headers sit at the start. */
#define PROBE_BYTES 65536
/* A frame at most this far before a sampling target still counts for it
 * (container timestamps are rounded to their time base). */
#define TIME_EPS 1e-3

/* ---- Custom I/O ---------------------------------------------------------- */

typedef struct io_src {
    const uint8_t *data; /* memory source, or NULL */
    size_t size, pos;
    FILE *f;             /* file source */
    int64_t fsize;
} io_src;

static int io_read(void *opaque, uint8_t *buf, int n) {
    io_src *s = opaque;
    if (n <= 0) return 0;
    if (s->f) {
        size_t got = fread(buf, 1, (size_t)n, s->f);
        if (got == 0) return ferror(s->f) ? AVERROR(EIO) : AVERROR_EOF;
        return (int)got;
    }
    if (s->pos >= s->size) return AVERROR_EOF;
    size_t k = s->size - s->pos < (size_t)n ? s->size - s->pos : (size_t)n;
    memcpy(buf, s->data + s->pos, k);
    s->pos += k;
    return (int)k;
}

static int64_t io_seek(void *opaque, int64_t off, int whence) {
    io_src *s = opaque;
    int64_t size = s->f ? s->fsize : (int64_t)s->size;
    whence &= ~AVSEEK_FORCE;
    if (whence == AVSEEK_SIZE) return size;
    int64_t base = whence == SEEK_SET ? 0 : whence == SEEK_END ? size : -1;
    if (whence == SEEK_CUR) base = s->f ? (int64_t)ftello(s->f) : (int64_t)s->pos;
    if (base < 0) return AVERROR(EINVAL);
    int64_t to = base + off;
    if (to < 0 || to > size) return AVERROR(EINVAL);
    if (s->f) {
        if (fseeko(s->f, (off_t)to, SEEK_SET) != 0) return AVERROR(EIO);
    } else {
        s->pos = (size_t)to;
    }
    return to;
}

/* ---- One open input with its video decoder ------------------------------- */

typedef struct ff_in {
    io_src src;
    AVFormatContext *fc;
    AVCodecContext *dec;
    AVStream *st;
    AVPacket *pkt;
    AVFrame *frame;
    const char *name;
    int64_t max_pixels;
    int damaged; /* video: data the demuxer or decoder rejected was skipped, or ended the stream early */
} ff_in;

static void ff_close(ff_in *in) {
    av_frame_free(&in->frame);
    av_packet_free(&in->pkt);
    avcodec_free_context(&in->dec);
    qm_input_close(&in->fc);
    if (in->src.f) fclose(in->src.f);
    in->src.f = NULL;
}

/* Opens the demuxer over in->src (set by the caller) and the decoder of the
 * best video stream. `fmt` forces a demuxer (NULL probes). */
static qiao_status ff_open(ff_in *in, const AVInputFormat *fmt) {
    qiao_status st = qm_input_open(&in->fc, in->name, "not a readable image or video", &in->src, io_read, io_seek,
                                   NULL, fmt);
    if (st != QIAO_OK) return st;
    int idx = av_find_best_stream(in->fc, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    if (idx < 0) return qc_error(QIAO_ERR_FORMAT, "%s: no image or video stream", in->name);
    in->st = in->fc->streams[idx];
    const AVCodecParameters *par = in->st->codecpar;
    if ((int64_t)par->width * par->height > in->max_pixels)
        return qc_error(QIAO_ERR_TOO_LARGE, "%s: %dx%d = %lld pixels, over the limit of %lld", in->name,
                        par->width, par->height, (long long)par->width * par->height, (long long)in->max_pixels);
    const AVCodec *codec = avcodec_find_decoder(par->codec_id);
    if (!codec)
        return qc_error(QIAO_ERR_UNSUPPORTED, "%s: no decoder for %s in this FFmpeg", in->name,
                        avcodec_get_name(par->codec_id));
    in->dec = avcodec_alloc_context3(codec);
    in->pkt = av_packet_alloc();
    in->frame = av_frame_alloc();
    if (!in->dec || !in->pkt || !in->frame) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", in->name);
    int ret;
    if ((ret = avcodec_parameters_to_context(in->dec, par)) < 0)
        return qm_av_error(QIAO_ERR_FORMAT, in->name, "bad codec parameters", ret);
    in->dec->thread_count = 1;
    in->dec->max_pixels = in->max_pixels;
    in->dec->pkt_timebase = in->st->time_base;
    if ((ret = avcodec_open2(in->dec, codec, NULL)) < 0)
        return qm_av_error(QIAO_ERR_FORMAT, in->name, "cannot open the decoder", ret);
    return QIAO_OK;
}

/* Called for each decoded frame: returns QIAO_OK to go on, or sets *stop. */
typedef qiao_status (*frame_fn)(ff_in *in, AVFrame *frame, void *user, int *stop);

/* Runs the decoder over the whole stream. Still images (strict) fail on the
 * first bad packet; video skips bad packets, as players do. */
static qiao_status ff_decode(ff_in *in, int strict, frame_fn fn, void *user) {
    int stop = 0, eof = 0, ret;
    while (!stop) {
        if (!eof) {
            ret = av_read_frame(in->fc, in->pkt);
            if (ret == AVERROR_EOF || ret == AVERROR(EIO)) {
                eof = 1;
            } else if (ret < 0) {
                if (strict) return qm_av_error(QIAO_ERR_FORMAT, in->name, "corrupt data", ret);
                in->damaged = 1;
                eof = 1;
            } else if (in->pkt->stream_index != in->st->index) {
                av_packet_unref(in->pkt);
                continue;
            }
        }
        ret = avcodec_send_packet(in->dec, eof ? NULL : in->pkt);
        av_packet_unref(in->pkt);
        if (ret < 0 && ret != AVERROR(EAGAIN) && ret != AVERROR_EOF) {
            if (strict) return qm_av_error(QIAO_ERR_FORMAT, in->name, "corrupt or truncated data", ret);
            in->damaged = 1;
        }
        for (;;) {
            ret = avcodec_receive_frame(in->dec, in->frame);
            if (ret == AVERROR(EAGAIN)) break;
            if (ret == AVERROR_EOF) return QIAO_OK;
            if (ret < 0) {
                if (strict) return qm_av_error(QIAO_ERR_FORMAT, in->name, "corrupt or truncated data", ret);
                in->damaged = 1;
                break;
            }
            qiao_status st = fn(in, in->frame, user, &stop);
            av_frame_unref(in->frame);
            if (st != QIAO_OK) return st;
            if (stop) return QIAO_OK;
        }
        if (eof) return QIAO_OK; /* flushed and drained, or a decoder that never signals EOF */
    }
    return QIAO_OK;
}

static int is_full_range(const AVFrame *f) {
    switch (f->format) {
    case AV_PIX_FMT_YUVJ420P: case AV_PIX_FMT_YUVJ422P: case AV_PIX_FMT_YUVJ444P:
    case AV_PIX_FMT_YUVJ440P: case AV_PIX_FMT_YUVJ411P: return 1;
    default: return f->color_range == AVCOL_RANGE_JPEG;
    }
}

/* Converts a decoded frame to a new RGB image (alpha composited onto bg). */
static qiao_status frame_to_image(const ff_in *in, const AVFrame *f, const uint8_t bg[3], qiao_image **out) {
    *out = NULL;
    if (f->width < 1 || f->height < 1) return qc_error(QIAO_ERR_FORMAT, "%s: empty frame", in->name);
    if ((int64_t)f->width * f->height > in->max_pixels)
        return qc_error(QIAO_ERR_TOO_LARGE, "%s: frame %dx%d over the limit of %lld pixels", in->name, f->width,
                        f->height, (long long)in->max_pixels);
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(f->format);
    if (!desc) return qc_error(QIAO_ERR_FORMAT, "%s: frame without a pixel format", in->name);
    int alpha = (desc->flags & AV_PIX_FMT_FLAG_ALPHA) != 0;
    const char *codec = avcodec_get_name(in->dec->codec_id);
    qiao_image *img;
    qiao_status st = qi_image_alloc(f->width, f->height, codec, &img);
    if (st != QIAO_OK) return st;
    uint8_t *rgba = NULL;
    int rgba_stride = 4 * f->width;
    if (alpha && !(rgba = malloc((size_t)rgba_stride * (size_t)f->height))) {
        qiao_image_free(img);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", in->name);
    }
    /* No resizing here, so the filter only matters for chroma upsampling. */
    struct SwsContext *sws = sws_getContext(f->width, f->height, f->format, f->width, f->height,
                                            alpha ? AV_PIX_FMT_RGBA : AV_PIX_FMT_RGB24,
                                            SWS_BILINEAR | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL, NULL, NULL);
    if (!sws) {
        free(rgba);
        qiao_image_free(img);
        return qc_error(QIAO_ERR_UNSUPPORTED, "%s: cannot convert pixel format %s to RGB", in->name, desc->name);
    }
    if (desc->flags & AV_PIX_FMT_FLAG_RGB || desc->nb_components < 3) {
        /* RGB and gray need no matrix. */
    } else {
        const int *coef = sws_getCoefficients(f->colorspace);
        sws_setColorspaceDetails(sws, coef, is_full_range(f), sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16,
                                 1 << 16);
    }
    uint8_t *dst[4] = {alpha ? rgba : img->pixels, NULL, NULL, NULL};
    int dst_stride[4] = {alpha ? rgba_stride : (int)img->stride, 0, 0, 0};
    int h = sws_scale(sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, dst, dst_stride);
    sws_freeContext(sws);
    if (h != f->height) {
        free(rgba);
        qiao_image_free(img);
        return qc_error(QIAO_ERR_FORMAT, "%s: pixel conversion from %s failed", in->name, desc->name);
    }
    if (alpha) qi_rgba_to_rgb(img, rgba, (size_t)rgba_stride, bg);
    free(rgba);
    *out = img;
    return QIAO_OK;
}

/* ---- Still images from memory -------------------------------------------- */

typedef struct first_frame {
    const uint8_t *bg;
    qiao_image *img;
} first_frame;

static qiao_status take_first(ff_in *in, AVFrame *frame, void *user, int *stop) {
    first_frame *ff = user;
    *stop = 1;
    return frame_to_image(in, frame, ff->bg, &ff->img);
}

qiao_status qi_ffmpeg_decode(const uint8_t *data, size_t size, const char *name, const qi_decode_opts *o,
                             qiao_image **out) {
    *out = NULL;
    qm_ffmpeg_init();
    /* Probe ourselves so only image demuxers ("*_pipe") are used here: a
     * video container is not a still image (see qiao_image_decode_video_frames). */
    size_t pn = size < PROBE_BYTES ? size : PROBE_BYTES;
    uint8_t *pbuf = calloc(1, pn + AVPROBE_PADDING_SIZE);
    if (!pbuf) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
    memcpy(pbuf, data, pn);
    AVProbeData pd = {.filename = "", .buf = pbuf, .buf_size = (int)pn, .mime_type = NULL};
    int score = 0;
    const AVInputFormat *fmt = av_probe_input_format3(&pd, 1, &score);
    free(pbuf);
    size_t ln = fmt ? strlen(fmt->name) : 0;
    if (!fmt || ln < 5 || strcmp(fmt->name + ln - 5, "_pipe") != 0)
        return qc_error(QIAO_ERR_FORMAT,
                        "%s: not a recognized image format (PNG, JPEG, GIF, BMP, TGA, WebP, TIFF...; %zu bytes)",
                        name, size);
    ff_in in = {.src = {.data = data, .size = size}, .name = name, .max_pixels = o->max_pixels};
    qiao_status st = ff_open(&in, fmt);
    first_frame ff = {.bg = o->background, .img = NULL};
    if (st == QIAO_OK) st = ff_decode(&in, 1, take_first, &ff);
    if (st == QIAO_OK && !ff.img) st = qc_error(QIAO_ERR_FORMAT, "%s: truncated (no complete frame)", name);
    ff_close(&in);
    if (st != QIAO_OK) {
        qiao_image_free(ff.img);
        return st;
    }
    *out = ff.img;
    return QIAO_OK;
}

/* ---- Video frames --------------------------------------------------------- */

#define DEFAULT_MAX_FRAMES 1024

qiao_video_params qiao_video_default_params(void) {
    qiao_video_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.fps = 1.0;
    p.count = 0;
    p.max_frames = DEFAULT_MAX_FRAMES;
    p.max_pixels = (int64_t)64 * 1024 * 1024;
    p.background[0] = p.background[1] = p.background[2] = 255;
    return p;
}

typedef struct sampler {
    qiao_video_params p;
    double duration;       /* seconds, or <= 0 when unknown */
    double start;          /* stream start time, seconds */
    int64_t k;             /* next target index */
    double last;           /* timestamp of the last frame taken */
    int64_t seen;          /* frames decoded */
    double seen_t, step;   /* the last decoded frame's time, and the gap before it (0 until two) */
    int damaged;           /* ff_in.damaged at the end */
    qiao_image **frames;   /* NULL when streaming to sink */
    size_t n, cap;         /* n counts the frames taken, kept or streamed */
    qi_video_frame_fn sink;
    void *sink_user;
} sampler;

static double target(const sampler *s, int64_t k) {
    return s->p.fps > 0 ? (double)k / s->p.fps : (double)k * s->duration / (double)s->p.count;
}

/* Moves k past every target at or before t. k is computed, not stepped one
 * by one: at an absurd fps (1e12) stepping would count for hours. */
static void advance(sampler *s, double t) {
    const double rate = s->p.fps > 0 ? s->p.fps : (double)s->p.count / s->duration;
    double k = floor((t + TIME_EPS) * rate) + 1.0;
    if (!(k < 1e18)) k = 1e18; /* past it every later frame is taken, still each at most once */
    const int64_t was = s->k;
    if ((int64_t)k > s->k) s->k = (int64_t)k;
    /* the product and target()'s division may round apart by one */
    for (int i = 0; i < 2 && s->k > was + 1 && target(s, s->k - 1) > t + TIME_EPS; i++) s->k--;
    for (int i = 0; i < 2 && target(s, s->k) <= t + TIME_EPS; i++) s->k++;
}

static qiao_status take_sampled(ff_in *in, AVFrame *frame, void *user, int *stop) {
    sampler *s = user;
    double t;
    int64_t ts = frame->best_effort_timestamp;
    if (ts != AV_NOPTS_VALUE) {
        t = (double)ts * av_q2d(in->st->time_base) - s->start;
    } else {
        AVRational r = in->st->avg_frame_rate;
        t = r.num > 0 && r.den > 0 ? (double)s->seen / av_q2d(r) : s->last + 1e-3;
    }
    if (s->seen > 0 && t > s->seen_t) s->step = t - s->seen_t;
    s->seen_t = t;
    /* a decoder that hid errors (h264 conceals lost macroblocks) still says so */
    if (frame->decode_error_flags || (frame->flags & AV_FRAME_FLAG_CORRUPT)) in->damaged = 1;
    s->seen++;
    if (s->p.count > 0 && s->p.fps <= 0 && s->k >= s->p.count) {
        *stop = 1;
        return QIAO_OK;
    }
    if (t < target(s, s->k) - TIME_EPS || (s->n > 0 && t <= s->last)) return QIAO_OK;
    if ((int64_t)s->n >= s->p.max_frames)
        return qc_error(QIAO_ERR_TOO_LARGE, "%s: more than max_frames = %lld sampled frames", in->name,
                        (long long)s->p.max_frames);
    if (!s->sink && s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 16;
        qiao_image **nf = realloc(s->frames, cap * sizeof *nf);
        if (!nf) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", in->name);
        s->frames = nf;
        s->cap = cap;
    }
    qiao_image *img;
    qiao_status st = frame_to_image(in, frame, s->p.background, &img);
    if (st != QIAO_OK) return st;
    img->timestamp = t;
    if (s->sink) {
        st = s->sink(img, s->sink_user);
        qiao_image_free(img);
        if (st != QIAO_OK) return st;
        s->n++;
    } else {
        s->frames[s->n++] = img;
    }
    s->last = t;
    advance(s, t);
    if (s->p.fps <= 0 && s->k >= s->p.count) *stop = 1;
    return QIAO_OK;
}

void qiao_image_frames_free(qiao_image **frames, size_t n) {
    if (!frames) return;
    for (size_t i = 0; i < n; i++) qiao_image_free(frames[i]);
    free(frames);
}

/* Samples the video at `path` into s (s->sink set: streamed, else kept in
 * s->frames); the caller frees s->frames, also on failure. */
static qiao_status decode_video(const char *path, const qiao_video_params *params, sampler *s) {
    s->p = qiao_video_default_params();
    qiao_status pst = qc_params_read(&s->p, sizeof s->p, params, offsetof(qiao_video_params, count) + sizeof s->p.count,
                                     "qiao_video_default_params");
    if (pst != QIAO_OK) return pst;
    if (!(s->p.fps >= 0) || !isfinite(s->p.fps) || s->p.count < 0 || (s->p.fps == 0 && s->p.count == 0) ||
        s->p.max_frames < 1 || s->p.max_pixels < 1)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "video: need fps > 0, or fps == 0 and count > 0; max_frames, max_pixels >= 1");
    if (s->p.fps == 0 && s->p.count > s->p.max_frames)
        return qc_error(QIAO_ERR_TOO_LARGE, "%s: count %lld is over max_frames %lld", path, (long long)s->p.count,
                        (long long)s->p.max_frames);

    ff_in in = {.name = path, .max_pixels = s->p.max_pixels};
    qiao_status st = qc_fopen_read(path, &in.src.f, &in.src.fsize);
    if (st != QIAO_OK) return st;
    st = in.src.fsize == 0 ? qc_error(QIAO_ERR_FORMAT, "%s: empty (0 bytes), not a video", path) : ff_open(&in, NULL);
    if (st == QIAO_OK) {
        AVRational tb = in.st->time_base;
        s->start = in.st->start_time != AV_NOPTS_VALUE ? (double)in.st->start_time * av_q2d(tb) : 0.0;
        if (in.st->duration != AV_NOPTS_VALUE && in.st->duration > 0)
            s->duration = (double)in.st->duration * av_q2d(tb);
        else if (in.fc->duration != AV_NOPTS_VALUE && in.fc->duration > 0)
            s->duration = (double)in.fc->duration / AV_TIME_BASE;
        if (s->p.fps == 0 && !(s->duration > 0))
            st = qc_error(QIAO_ERR_UNSUPPORTED, "%s: duration unknown, so frames cannot be spread by count (use fps)",
                          path);
        else if (s->p.fps > 0 && s->duration > 0 && ceil(s->duration * s->p.fps) > (double)s->p.max_frames)
            st = qc_error(QIAO_ERR_TOO_LARGE, "%s: %.3f s at %g fps is over max_frames = %lld", path, s->duration,
                          s->p.fps, (long long)s->p.max_frames);
    }
    if (st == QIAO_OK) st = ff_decode(&in, 0, take_sampled, s);
    if (st == QIAO_OK && s->n == 0) st = qc_error(QIAO_ERR_FORMAT, "%s: no decodable video frame", path);
    if (st == QIAO_OK && s->step <= 0) {
        AVRational r = in.st->avg_frame_rate;
        if (r.num > 0 && r.den > 0) s->step = 1.0 / av_q2d(r);
    }
    /* Some demuxers (Matroska) meet the end of a cut file as a plain end of
     * file: frames ending well before the stated duration tell. The margin
     * leaves room for a soundtrack a little longer than the picture. */
    if (st == QIAO_OK && s->p.fps > 0 && s->duration > 0 &&
        s->seen_t + s->step < s->duration - fmax(1.0, 0.02 * s->duration))
        in.damaged = 1;
    s->damaged = in.damaged;
    ff_close(&in);
    return st;
}

qiao_status qiao_image_decode_video_frames(const char *path, const qiao_video_params *params,
                                           qiao_image ***frames, size_t *n) {
    if (!frames || !n) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_image_decode_video_frames: NULL output");
    *frames = NULL;
    *n = 0;
    if (!path) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_image_decode_video_frames: path is NULL");
    sampler s;
    memset(&s, 0, sizeof s);
    qiao_status st = decode_video(path, params, &s);
    if (st != QIAO_OK) {
        qiao_image_frames_free(s.frames, s.n);
        return st;
    }
    *frames = s.frames;
    *n = s.n;
    return QIAO_OK;
}

qiao_status qi_video_frames_each(const char *path, const qiao_video_params *params, qi_video_frame_fn fn, void *user,
                                 qi_video_info *info) {
    if (info) memset(info, 0, sizeof *info);
    if (!path || !fn) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "video frames: path and callback are required");
    sampler s;
    memset(&s, 0, sizeof s);
    s.sink = fn;
    s.sink_user = user;
    qiao_status st = decode_video(path, params, &s);
    if (st == QIAO_OK && info) {
        info->end = s.p.fps > 0 && s.step > 0 ? s.seen_t + s.step : s.duration > 0 ? s.duration : 0.0;
        info->damaged = s.damaged;
    }
    return st;
}
