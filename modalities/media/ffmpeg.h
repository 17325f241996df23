/* modalities/media/ffmpeg.h - internal: FFmpeg plumbing shared by image and
 * audio decoding (qm_ prefix).
 *
 * Process-wide effect: the first qm_ffmpeg_init() replaces FFmpeg's log
 * callback (av_log_set_callback) so that its warnings and errors go to
 * qc_log at QIAO_LOG_DEBUG and FFmpeg never prints; an application that
 * configured FFmpeg's logging itself loses that (qiao.h says so under
 * Logging), and caps FFmpeg's largest single allocation at 1 GiB
 * (av_max_alloc; ffmpeg.c says why). Every qiao module calls it before its
 * first FFmpeg call.
 *
 * Inputs are read only through the caller's read/seek pair and io_open is
 * refused, so a crafted file (an HLS playlist, a "concat:" name) cannot make
 * FFmpeg open other files or the network. */
#ifndef QIAO_MODALITIES_MEDIA_FFMPEG_H
#define QIAO_MODALITIES_MEDIA_FFMPEG_H

#include <libavformat/avformat.h>

#include "core/core.h"

/* Routes FFmpeg's log to qc_log, once per process; safe from any thread. */
void qm_ffmpeg_init(void);

/* qc_error(status, "<name>: <what> (<FFmpeg's text for averr>)"), with
 * status QIAO_ERR_OUT_OF_MEMORY instead when averr is AVERROR(ENOMEM). */
qiao_status qm_av_error(qiao_status status, const char *name, const char *what, int averr);

/* Opens a demuxer over read/seek (avio_alloc_context's contract) on
 * `opaque`, which must outlive it. `whitelist` (comma-separated demuxer
 * names, or NULL) limits probing; `fmt` (or NULL to probe) forces a demuxer.
 * *out owns its I/O context: close it with qm_input_close. Fails with
 * QIAO_ERR_FORMAT "<name>: <what> (<reason>)" or OUT_OF_MEMORY, *out NULL. */
qiao_status qm_input_open(AVFormatContext **out, const char *name, const char *what, void *opaque,
                          int (*read)(void *opaque, uint8_t *buf, int n),
                          int64_t (*seek)(void *opaque, int64_t offset, int whence), const char *whitelist,
                          const AVInputFormat *fmt);
/* Closes a demuxer from qm_input_open and its I/O context; sets *fc to NULL.
 * Accepts NULL and *fc == NULL. */
void qm_input_close(AVFormatContext **fc);

#endif
