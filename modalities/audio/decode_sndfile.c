/* modalities/audio/decode_sndfile.c - WAV, AIFF and FLAC through libsndfile's
 * virtual I/O, so files and memory buffers share one path. libsndfile
 * converts integer PCM to float in [-1, 1] itself. Ogg/Vorbis goes to FFmpeg
 * instead (decode_ffmpeg.c says why). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sndfile.h>

#include "modalities/audio/audio.h"

#define SF_BLOCK 4096

static sf_count_t vio_len(void *u) { return ((qa_src *)u)->size; }
static sf_count_t vio_seek(sf_count_t off, int whence, void *u) { return qa_src_seek(u, off, whence); }
static sf_count_t vio_read(void *dst, sf_count_t n, void *u) {
    return n <= 0 ? 0 : (sf_count_t)qa_src_read(u, dst, (size_t)n);
}
static sf_count_t vio_write(const void *p, sf_count_t n, void *u) { return 0; }
static sf_count_t vio_tell(void *u) { return ((qa_src *)u)->pos; }

static const char *major_name(int format) {
    switch (format & SF_FORMAT_TYPEMASK) {
    case SF_FORMAT_WAV: return "wav";
    case SF_FORMAT_RF64: return "rf64";
    case SF_FORMAT_AIFF: return "aiff";
    case SF_FORMAT_FLAC: return "flac";
    default: return "sndfile";
    }
}

/* What a RIFF WAV header says, read from its first 4 KiB: libsndfile names
 * few header faults precisely ("SF_INFO struct incomplete" for a rate of 0),
 * and accepts a header whose data chunk is missing from the file. */
typedef struct wav_header {
    int has_fmt, has_data;
    unsigned channels, rate, bits;
    uint64_t data_size;    /* as declared */
    uint64_t data_avail;   /* bytes of it the file holds */
} wav_header;

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void read_wav_header(qa_src *src, wav_header *h) {
    memset(h, 0, sizeof *h);
    unsigned char b[4096];
    int64_t at = src->pos;
    size_t n = qa_src_read(src, b, sizeof b);
    qa_src_seek(src, at, SEEK_SET);
    if (n < 12 || memcmp(b, "RIFF", 4) != 0 || memcmp(b + 8, "WAVE", 4) != 0) return;
    for (size_t pos = 12; pos + 8 <= n;) {
        uint64_t size = le32(b + pos + 4);
        if (!memcmp(b + pos, "fmt ", 4) && pos + 8 + 16 <= n) {
            const unsigned char *f = b + pos + 8;
            h->has_fmt = 1;
            h->channels = (unsigned)f[2] | (unsigned)f[3] << 8;
            h->rate = le32(f + 4);
            h->bits = (unsigned)f[14] | (unsigned)f[15] << 8;
        } else if (!memcmp(b + pos, "data", 4)) {
            h->has_data = 1;
            h->data_size = size;
            uint64_t after = (uint64_t)pos + 8;
            uint64_t total = src->size > 0 ? (uint64_t)src->size : 0;
            h->data_avail = total > after ? total - after : 0;
            if (h->data_avail > size) h->data_avail = size;
            return;
        }
        pos += 8 + (size_t)(size + (size & 1)); /* chunks are padded to even sizes */
        if (size > n) return;
    }
}

/* sf_open_virtual reports why it failed only through libsndfile's global
 * error state (sf_strerror(NULL)): opening under one lock keeps qiao's own
 * threads from overwriting each other's reason. */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;

qiao_status qa_decode_sndfile(qa_src *src, const qiao_audio_params *p, qa_pipe *pp, char *format, size_t cap) {
    SF_VIRTUAL_IO vio = {vio_len, vio_seek, vio_read, vio_write, vio_tell};
    SF_INFO info;
    memset(&info, 0, sizeof info);
    wav_header h;
    read_wav_header(src, &h);
    char why[256] = "";
    pthread_mutex_lock(&open_lock);
    SNDFILE *sf = sf_open_virtual(&vio, SFM_READ, &info, src);
    if (!sf) snprintf(why, sizeof why, "%s", sf_strerror(NULL));
    pthread_mutex_unlock(&open_lock);
    if (!sf) {
        /* libsndfile's own allocations fail with SFE_MALLOC_FAILED, which is
         * not in its public enum: its message names malloc. */
        if (strstr(why, "malloc"))
            return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory (libsndfile: %s)", src->name, why);
        if (h.has_fmt && h.channels == 0)
            return qc_error(QIAO_ERR_FORMAT, "%s: the WAV header says 0 channels", src->name);
        if (h.has_fmt && h.rate == 0)
            return qc_error(QIAO_ERR_FORMAT, "%s: the WAV header says the sample rate is 0 Hz", src->name);
        if (h.has_fmt && h.bits == 0)
            return qc_error(QIAO_ERR_FORMAT, "%s: the WAV header says 0 bits per sample", src->name);
        if (h.has_fmt && h.channels > 1024)
            return qc_error(QIAO_ERR_FORMAT, "%s: the WAV header says %u channels (libsndfile reads up to 1024)",
                            src->name, h.channels);
        return qc_error(QIAO_ERR_FORMAT, "%s: not a readable WAV/AIFF/FLAC file (libsndfile: %s)", src->name,
                        why[0] ? why : "no reason given");
    }
    snprintf(format, cap, "%s", major_name(info.format));
    /* A header may claim any length; libsndfile clamps PCM lengths to the
     * file size, and anything still over the limit is refused here, before
     * the result buffer is reserved. */
    qiao_status st = qa_pipe_init(pp, src->name, info.samplerate, info.channels,
                                  info.frames == SF_COUNT_MAX ? -1 : info.frames, p);
    float *buf = NULL;
    if (st == QIAO_OK) {
        buf = malloc((size_t)SF_BLOCK * (size_t)info.channels * sizeof(float));
        if (!buf) st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory", src->name);
    }
    while (st == QIAO_OK) {
        sf_count_t got = sf_readf_float(sf, buf, SF_BLOCK);
        if (got <= 0) break;
        st = qa_pipe_push(pp, buf, (size_t)got);
    }
    if (st == QIAO_OK && sf_error(sf) != SF_ERR_NO_ERROR && pp->frames_in == 0)
        st = qc_error(QIAO_ERR_FORMAT, "%s: %s", src->name, sf_strerror(sf));
    /* A recording cut off part-way keeps what it holds; one cut off at its
     * header holds nothing, which is a damaged file, not empty audio. */
    if (st == QIAO_OK && pp->frames_in == 0 && h.has_data && h.data_size > 0 && h.data_avail == 0)
        st = qc_error(QIAO_ERR_FORMAT, "%s: truncated: the header declares %llu bytes of samples, the file holds none",
                      src->name, (unsigned long long)h.data_size);
    free(buf);
    sf_close(sf);
    return st;
}
