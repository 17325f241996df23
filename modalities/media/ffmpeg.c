/* modalities/media/ffmpeg.c - FFmpeg plumbing shared by image and audio
 * decoding: the log route, custom-I/O inputs, error messages. */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "modalities/media/ffmpeg.h"

#define QM_IO_BUFFER 65536

static void av_log_to_qiao(void *avcl, int level, const char *fmt, va_list vl) {
    if (level > AV_LOG_WARNING) return;
    char line[1024];
    int print_prefix = 1; /* "[mp3 @ 0x...] message", as FFmpeg's own callback prints */
    av_log_format_line2(avcl, level, fmt, vl, line, sizeof line, &print_prefix);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    if (n) qc_log(QIAO_LOG_DEBUG, "ffmpeg: %s", line);
}

/* The largest block FFmpeg may allocate (av_max_alloc; FFmpeg's default is
 * INT_MAX). Demuxers allocate what a header declares: the WAV reader of a
 * LIST/INFO chunk whose size runs past the file asked for 2 GB, and zeroed
 * it, for a 357-byte input the audio fuzzer found (the AVI reader shares
 * that code). 1 GiB still holds the largest frame qiao decodes at its
 * max_pixels default (64 Mi pixels of 16-bit RGBA: 512 MiB). */
#define QM_MAX_ALLOC ((size_t)1 << 30)

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static void init(void) {
    av_log_set_callback(av_log_to_qiao);
    av_max_alloc(QM_MAX_ALLOC);
}
void qm_ffmpeg_init(void) { pthread_once(&init_once, init); }

qiao_status qm_av_error(qiao_status status, const char *name, const char *what, int averr) {
    char buf[AV_ERROR_MAX_STRING_SIZE];
    av_strerror(averr, buf, sizeof buf);
    /* Any FFmpeg call can fail for memory; that is never the file's fault. */
    if (averr == AVERROR(ENOMEM)) status = QIAO_ERR_OUT_OF_MEMORY;
    return qc_error(status, "%s: %s (%s)", name, what, buf);
}

static int refuse_io_open(struct AVFormatContext *s, AVIOContext **pb, const char *url, int flags,
                          AVDictionary **options) {
    return AVERROR(EPERM);
}

/* FFmpeg may have replaced the buffer it was given: free the current one. */
static void free_io(AVIOContext *pb) {
    if (pb) av_freep(&pb->buffer);
    avio_context_free(&pb);
}

qiao_status qm_input_open(AVFormatContext **out, const char *name, const char *what, void *opaque,
                          int (*read)(void *opaque, uint8_t *buf, int n),
                          int64_t (*seek)(void *opaque, int64_t offset, int whence), const char *whitelist,
                          const AVInputFormat *fmt) {
    qm_ffmpeg_init();
    *out = NULL;
    uint8_t *buf = av_malloc(QM_IO_BUFFER);
    AVIOContext *pb = buf ? avio_alloc_context(buf, QM_IO_BUFFER, 0, opaque, read, NULL, seek) : NULL;
    AVFormatContext *fc = pb ? avformat_alloc_context() : NULL;
    if (!fc || (whitelist && !(fc->format_whitelist = av_strdup(whitelist)))) {
        avformat_free_context(fc);
        if (!pb) av_free(buf);
        free_io(pb);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
    }
    fc->pb = pb;
    fc->flags |= AVFMT_FLAG_CUSTOM_IO; /* so closing fc leaves pb to us */
    fc->io_open = refuse_io_open;
    int ret = avformat_open_input(&fc, NULL, fmt, NULL); /* frees fc on failure */
    if (ret < 0) {
        free_io(pb);
        return qm_av_error(QIAO_ERR_FORMAT, name, what, ret);
    }
    *out = fc;
    return QIAO_OK;
}

void qm_input_close(AVFormatContext **fc) {
    if (!fc || !*fc) return;
    AVIOContext *pb = (*fc)->pb;
    avformat_close_input(fc);
    free_io(pb);
}
