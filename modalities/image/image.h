/* modalities/image/image.h - internal: the image object and the decoders
 * behind qiao_image_* (image.c dispatches, decode_stb.c and decode_ffmpeg.c
 * decode, preprocess.c resizes, normalizes and cuts patches).
 *
 * Not a public header. Names crossing files carry the qi_ prefix. */
#ifndef QIAO_MODALITIES_IMAGE_H
#define QIAO_MODALITIES_IMAGE_H

#include <stdint.h>

#include "core/core.h"

/* Packed 8-bit RGB, rows `stride` bytes apart (stride >= 3 * width). */
struct qiao_image {
    int64_t width, height;
    size_t stride;
    uint8_t *pixels;       /* (height, stride) bytes, owned */
    double timestamp;      /* seconds from the stream start (video frames), else 0 */
    char format[24];       /* "png", "jpeg", "webp", "h264"... */
};

/* Which decoder serves a buffer. AUTO sniffs the bytes. */
typedef enum qi_decoder {
    QI_DECODER_AUTO = 0,
    QI_DECODER_STB,
    QI_DECODER_FFMPEG
} qi_decoder;

/* Resolved, validated decode parameters (the caller's struct_size applied). */
typedef struct qi_decode_opts {
    int64_t max_pixels;
    size_t max_file_bytes;
    uint8_t background[3];
} qi_decode_opts;

qiao_status qi_decode_opts_from(const qiao_image_decode_params *params, qi_decode_opts *out);

/* Allocates an image with uninitialized pixels, stride = 3 * width. */
qiao_status qi_image_alloc(int64_t width, int64_t height, const char *format, qiao_image **out);

/* Composites straight (non-premultiplied) RGBA onto `bg`, writing RGB into img. */
void qi_rgba_to_rgb(qiao_image *img, const uint8_t *rgba, size_t rgba_stride, const uint8_t bg[3]);

/* Decodes from memory with a chosen decoder. `name` (the file name, or
 * "<memory>") only appears in messages. */
qiao_status qi_decode_memory(const uint8_t *data, size_t size, const char *name, const qi_decode_opts *o,
                             qi_decoder decoder, qiao_image **out);

/* stb_image: `format` is the sniffed name ("png", "jpeg", ... or NULL). */
qiao_status qi_stb_decode(const uint8_t *data, size_t size, const char *name, const char *format,
                          const qi_decode_opts *o, qiao_image **out);
/* 1 if stb recognizes the buffer (stbi_info succeeds), else 0. */
int qi_stb_recognizes(const uint8_t *data, size_t size);

/* FFmpeg (image pipe demuxers only), from memory through a custom AVIOContext. */
qiao_status qi_ffmpeg_decode(const uint8_t *data, size_t size, const char *name, const qi_decode_opts *o,
                             qiao_image **out);

/* Video frames sampled as qiao_image_decode_video_frames samples them, with
 * its checks and statuses, handed to `fn` one at a time in time order
 * instead of kept: memory stays at one frame whatever the video's length
 * (max_frames still bounds how many are taken). `fn` borrows the frame for
 * the call; a status other than QIAO_OK from it stops the decoding and is
 * returned. On success *info (may be NULL) says how the stream ended. */
typedef struct qi_video_info {
    /* Where the video stream ends, in seconds from its start: with fps
     * sampling the last decoded frame's time plus the gap before it (else
     * one frame at the stream's average rate), so a truncated file ends
     * where its frames do; otherwise, or when neither is known, the
     * container's duration; 0 when that is unknown too. */
    double end;
    /* 1 when the demuxer or the decoder rejected data: bad packets were
     * skipped, or a read error ended the stream before its end (a damaged
     * or truncated file). The frames delivered are those that decoded. */
    int damaged;
} qi_video_info;
typedef qiao_status (*qi_video_frame_fn)(const qiao_image *frame, void *user);
qiao_status qi_video_frames_each(const char *path, const qiao_video_params *params, qi_video_frame_fn fn, void *user,
                                 qi_video_info *info);

#endif
