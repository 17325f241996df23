/* modalities/audio/decode_sndfile.c - WAV, AIFF and FLAC through libsndfile's
 * virtual I/O, so files and memory buffers share one path. libsndfile
 * converts integer PCM to float in [-1, 1] itself. Ogg/Vorbis goes to FFmpeg
 * instead (decode_ffmpeg.c says why). */
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

qiao_status qa_decode_sndfile(qa_src *src, const qiao_audio_params *p, qa_pipe *pp, char *format, size_t cap) {
    SF_VIRTUAL_IO vio = {vio_len, vio_seek, vio_read, vio_write, vio_tell};
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *sf = sf_open_virtual(&vio, SFM_READ, &info, src);
    /* sf_strerror(NULL) reads libsndfile's process-global error state, which
     * other threads may be writing, so the message stays generic. */
    if (!sf) return qc_error(QIAO_ERR_FORMAT, "%s: not a readable WAV/AIFF/FLAC file", src->name);
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
    free(buf);
    sf_close(sf);
    return st;
}
