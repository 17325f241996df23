/* modalities/image/decode_stb.c - PNG, GIF, BMP, TGA (and PSD, PNM, HDR)
 * through stb_image; JPEG goes to FFmpeg (below says why).
 *
 * stb's failure reason is no use to us (a terse code, and process-global in
 * builds without thread-locals), so the size is read with stbi_info first and
 * every message is our own. stb takes int sizes: buffers over INT_MAX bytes
 * are refused up front.
 *
 * stb_image is compiled here, static to this file, rather than taken from
 * libstb, for one reason: to see its allocations fail. stb returns NULL alike
 * for a corrupt file and for memory it could not get, and some of its paths
 * (the PNG inflater's first buffer) set no reason at all, so an 8192x8192 PNG
 * under `ulimit -v 400000` read as "corrupt or truncated png data". Its
 * allocator goes through the wrappers below, which note a failure in a
 * thread-local flag that the decoder reads. */
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "modalities/image/image.h"

/* Set when one of stb's allocations failed on this thread; cleared before
 * each stb call. */
static _Thread_local bool tl_stb_oom;

static void *stb_malloc(size_t n) {
    void *p = malloc(n);
    if (!p) tl_stb_oom = true;
    return p;
}

static void *stb_realloc(void *old, size_t n) {
    void *p = realloc(old, n);
    if (!p) tl_stb_oom = true;
    return p;
}

#define STBI_MALLOC(sz) stb_malloc(sz)
#define STBI_REALLOC(p, newsz) stb_realloc(p, newsz)
#define STBI_FREE(p) free(p)
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
/* JPEG goes to FFmpeg: stb 2.27's JPEG decoder (Debian 12's) writes past a
 * Huffman table whose DHT segment declares more than 256 codes, and reads
 * before a table's symbols for a code the table does not hold; fuzz_image
 * found both within minutes once stb was compiled here with UBSan (upstream
 * fixed them in 2.28). FFmpeg's decoder is fuzzed continuously upstream. */
#define STBI_NO_JPEG
/* stb 2.27 declares its *_thread setters static and, with thread-locals,
 * never defines them; the warning is reported at the end of the file, so
 * it stays off for the whole file. */
#pragma GCC diagnostic ignored "-Wunused-function"
#include <stb_image.h>

int qi_stb_recognizes(const uint8_t *data, size_t size) {
    int w, h, comp;
    if (size > INT_MAX) return 0;
    return stbi_info_from_memory(data, (int)size, &w, &h, &comp) == 1;
}

qiao_status qi_stb_decode(const uint8_t *data, size_t size, const char *name, const char *format,
                          const qi_decode_opts *o, qiao_image **out) {
    *out = NULL;
    const char *fmt = format ? format : "image";
    if (size > INT_MAX)
        return qc_error(QIAO_ERR_TOO_LARGE, "%s: %zu bytes, too large for the %s decoder", name, size, fmt);
    int w = 0, h = 0, comp = 0;
    tl_stb_oom = false;
    if (!stbi_info_from_memory(data, (int)size, &w, &h, &comp)) {
        if (tl_stb_oom)
            return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory reading the %s header", name, fmt);
        return qc_error(QIAO_ERR_FORMAT, "%s: corrupt or truncated %s header (%zu bytes)", name, fmt, size);
    }
    if (w < 1 || h < 1)
        return qc_error(QIAO_ERR_FORMAT, "%s: %s claims an empty %dx%d image", name, fmt, w, h);
    if ((int64_t)w * (int64_t)h > o->max_pixels)
        return qc_error(QIAO_ERR_TOO_LARGE, "%s: %s is %dx%d = %lld pixels, over the limit of %lld", name, fmt, w,
                        h, (long long)w * h, (long long)o->max_pixels);
    /* Gray+alpha and RGBA come out as RGBA so alpha can be composited;
     * everything else as RGB (stb expands gray). */
    int alpha = comp == 2 || comp == 4;
    int lw = 0, lh = 0, lc = 0;
    tl_stb_oom = false;
    uint8_t *px = stbi_load_from_memory(data, (int)size, &lw, &lh, &lc, alpha ? 4 : 3);
    if (!px && tl_stb_oom)
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "%s: out of memory decoding the %dx%d %s", name, w, h, fmt);
    if (!px) return qc_error(QIAO_ERR_FORMAT, "%s: corrupt or truncated %s data (%dx%d)", name, fmt, w, h);
    if (lw != w || lh != h) {
        stbi_image_free(px);
        return qc_error(QIAO_ERR_FORMAT, "%s: %s header says %dx%d but the data decodes to %dx%d", name, fmt, w,
                        h, lw, lh);
    }
    qiao_image *img;
    qiao_status st = qi_image_alloc(w, h, fmt, &img);
    if (st != QIAO_OK) {
        stbi_image_free(px);
        return st;
    }
    if (alpha) qi_rgba_to_rgb(img, px, (size_t)w * 4, o->background);
    else memcpy(img->pixels, px, img->stride * (size_t)h);
    stbi_image_free(px);
    *out = img;
    return QIAO_OK;
}
