/* modalities/media/ffmpeg.h - internal: the FFmpeg plumbing that image and
 * audio decoding share (qm_ prefix). Not a public header.
 *
 * Process-wide effect: the first qm_ffmpeg_init() (every qm_input_open and
 * every module that calls FFmpeg calls it first) replaces FFmpeg's log
 * callback (av_log_set_callback) with one that passes warnings and errors to
 * qc_log at QIAO_LOG_DEBUG, so FFmpeg never prints to stderr. An application
 * that configured FFmpeg logging itself before loses that configuration; one
 * that sets its own callback afterwards keeps it. qiao.h says this once, in
 * its Logging section.
 *
 * Every input is read through a caller-supplied read/seek pair: FFmpeg never
 * opens a path or URL, and io_open is refused, so a crafted file (an HLS
 * playlist, a "concat:" name) cannot make it open other files or the
 * network. */
#ifndef QIAO_MODALITIES_MEDIA_FFMPEG_H
#define QIAO_MODALITIES_MEDIA_FFMPEG_H

#include <stdint.h>

#include <libavformat/avformat.h>

#include "core/core.h"

/* Routes FFmpeg's log to qc_log, once per process; safe from any thread. */
void qm_ffmpeg_init(void);

/* "<name>: <what> (<FFmpeg's text for averr>)" as a qc_error with `status`. */
qiao_status qm_av_error(qiao_status status, const char *name, const char *what, int averr);

/* Callbacks with avio_alloc_context's contract: read returns the byte count
 * or an AVERROR (AVERROR_EOF at the end); seek takes SEEK_SET/CUR/END or
 * AVSEEK_SIZE, possibly or'ed with AVSEEK_FORCE. */
typedef int (*qm_read_fn)(void *opaque, uint8_t *buf, int n);
typedef int64_t (*qm_seek_fn)(void *opaque, int64_t offset, int whence);

/* An opened demuxer over the caller's callbacks. Zero-initialize it; close
 * it with qm_input_close whether or not the open succeeded. */
typedef struct qm_input {
    AVFormatContext *fc;  /* NULL until opened */
    AVIOContext *pb;      /* owned, with its buffer */
} qm_input;

/* Opens `in` over read/seek(opaque), which must outlive it. `whitelist`
 * (a comma list of demuxer names, or NULL for all) limits probing; `fmt`
 * (or NULL to probe) forces a demuxer. Header-level failure gives
 * QIAO_ERR_FORMAT "<name>: <what> (<reason>)"; no memory gives
 * QIAO_ERR_OUT_OF_MEMORY. */
qiao_status qm_input_open(qm_input *in, const char *name, const char *what, void *opaque, qm_read_fn read,
                          qm_seek_fn seek, const char *whitelist, const AVInputFormat *fmt);
/* Closes the demuxer and frees the I/O context. Accepts NULL and a
 * never-opened (zeroed) or failed input. */
void qm_input_close(qm_input *in);

#endif
