/* modalities/image/image.c - the image object, decode parameters, and the
 * dispatch of a buffer to stb_image or FFmpeg by sniffing its bytes. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "modalities/image/image.h"

#define DEFAULT_MAX_PIXELS ((int64_t)64 * 1024 * 1024)
#define DEFAULT_MAX_FILE_BYTES ((size_t)256 * 1024 * 1024)

qiao_image_decode_params qiao_image_decode_default_params(void) {
    qiao_image_decode_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.max_pixels = DEFAULT_MAX_PIXELS;
    p.max_file_bytes = DEFAULT_MAX_FILE_BYTES;
    p.background[0] = p.background[1] = p.background[2] = 255;
    return p;
}

qiao_status qi_decode_opts_from(const qiao_image_decode_params *params, qi_decode_opts *out) {
    qiao_image_decode_params p = qiao_image_decode_default_params();
    qiao_status st = qc_params_read(&p, sizeof p, params,
                                    offsetof(qiao_image_decode_params, max_pixels) + sizeof p.max_pixels,
                                    "qiao_image_decode_default_params");
    if (st != QIAO_OK) return st;
    if (p.max_pixels < 1 || p.max_file_bytes < 1)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "image: max_pixels and max_file_bytes must be positive");
    out->max_pixels = p.max_pixels;
    out->max_file_bytes = p.max_file_bytes;
    memcpy(out->background, p.background, 3);
    return QIAO_OK;
}

qiao_status qi_image_alloc(int64_t width, int64_t height, const char *format, qiao_image **out) {
    *out = NULL;
    size_t stride, bytes;
    if (width < 1 || height < 1 || !qc_mul_size((size_t)width, 3, &stride) ||
        !qc_mul_size(stride, (size_t)height, &bytes))
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "image: bad size %lldx%lld", (long long)width,
                        (long long)height);
    qiao_image *img = calloc(1, sizeof *img);
    if (!img) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "image: out of memory");
    img->pixels = malloc(bytes);
    if (!img->pixels) {
        free(img);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "image: out of memory for %lldx%lld pixels", (long long)width,
                        (long long)height);
    }
    img->width = width;
    img->height = height;
    img->stride = stride;
    snprintf(img->format, sizeof img->format, "%s", format ? format : "");
    *out = img;
    return QIAO_OK;
}

void qi_rgba_to_rgb(qiao_image *img, const uint8_t *rgba, size_t rgba_stride, const uint8_t bg[3]) {
    for (int64_t y = 0; y < img->height; y++) {
        const uint8_t *s = rgba + (size_t)y * rgba_stride;
        uint8_t *d = img->pixels + (size_t)y * img->stride;
        for (int64_t x = 0; x < img->width; x++, s += 4, d += 3) {
            unsigned a = s[3];
            for (int c = 0; c < 3; c++)  /* rounded (v*a + bg*(255-a)) / 255 */
                d[c] = (uint8_t)((s[c] * a + bg[c] * (255u - a) + 127u) / 255u);
        }
    }
}

qiao_status qiao_image_from_rgb(const uint8_t *pixels, int64_t width, int64_t height, size_t stride,
                                qiao_image **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_image_from_rgb: out is NULL");
    *out = NULL;
    if (!pixels || width < 1 || height < 1 || (uint64_t)width > SIZE_MAX / 3 || stride < (size_t)width * 3)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "qiao_image_from_rgb: need pixels, width, height >= 1 and stride >= 3 * width "
                        "(got %lldx%lld, stride %zu)", (long long)width, (long long)height, stride);
    qiao_image *img;
    qiao_status st = qi_image_alloc(width, height, "rgb", &img);
    if (st != QIAO_OK) return st;
    for (int64_t y = 0; y < height; y++)
        memcpy(img->pixels + (size_t)y * img->stride, pixels + (size_t)y * stride, img->stride);
    *out = img;
    return QIAO_OK;
}

void qiao_image_free(qiao_image *img) {
    if (!img) return;
    free(img->pixels);
    free(img);
}

int64_t qiao_image_width(const qiao_image *img) { return img ? img->width : 0; }
int64_t qiao_image_height(const qiao_image *img) { return img ? img->height : 0; }
size_t qiao_image_stride(const qiao_image *img) { return img ? img->stride : 0; }
const uint8_t *qiao_image_pixels(const qiao_image *img) { return img ? img->pixels : NULL; }
const char *qiao_image_format(const qiao_image *img) { return img ? img->format : ""; }
double qiao_image_timestamp(const qiao_image *img) { return img ? img->timestamp : 0.0; }

/* The magic numbers of the formats that have one. TGA has none: stb
 * recognizes it by plausible header fields, so it is tried after these. */
static const char *sniff(const uint8_t *d, size_t n, qi_decoder *decoder) {
    *decoder = QI_DECODER_STB;
    if (n >= 8 && !memcmp(d, "\x89PNG\r\n\x1a\n", 8)) return "png";
    if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) {
        *decoder = QI_DECODER_FFMPEG; /* decode_stb.c says why not stb */
        return "jpeg";
    }
    if (n >= 6 && (!memcmp(d, "GIF87a", 6) || !memcmp(d, "GIF89a", 6))) return "gif";
    if (n >= 2 && d[0] == 'B' && d[1] == 'M') return "bmp";
    if (n >= 4 && !memcmp(d, "8BPS", 4)) return "psd";
    if (n >= 2 && d[0] == 'P' && (d[1] == '5' || d[1] == '6')) return "pnm";
    if (n >= 2 && d[0] == '#' && d[1] == '?') return "hdr";
    *decoder = QI_DECODER_FFMPEG;
    if (n >= 12 && !memcmp(d, "RIFF", 4) && !memcmp(d + 8, "WEBP", 4)) return "webp";
    if (n >= 4 && (!memcmp(d, "II*\0", 4) || !memcmp(d, "MM\0*", 4))) return "tiff";
    *decoder = QI_DECODER_AUTO;
    return NULL;
}

static uint32_t be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static uint32_t le16(const uint8_t *p) { return (uint32_t)p[1] << 8 | p[0]; }
static uint32_t le32(const uint8_t *p) { return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]; }

/* The dimensions a header claims, read here rather than by the decoders:
 * stb's own check refuses huge images as a plain failure, and the limit
 * deserves its own status. Returns 0 when the header is not readable (the
 * decoder then reports the format error). */
static int header_size(const uint8_t *d, size_t n, const char *format, int64_t *w, int64_t *h) {
    if (!format) return 0;
    if (!strcmp(format, "png")) {
        if (n < 24 || memcmp(d + 12, "IHDR", 4)) return 0;
        *w = be32(d + 16);
        *h = be32(d + 20);
        return 1;
    }
    if (!strcmp(format, "gif")) {
        if (n < 10) return 0;
        *w = le16(d + 6);
        *h = le16(d + 8);
        return 1;
    }
    if (!strcmp(format, "bmp")) {
        if (n < 26 || le32(d + 14) < 12) return 0;
        if (le32(d + 14) == 12) {   /* OS/2 BITMAPCOREHEADER: 16-bit sizes */
            *w = le16(d + 18);
            *h = le16(d + 20);
        } else {
            *w = (int32_t)le32(d + 18);
            *h = (int32_t)le32(d + 22);
            if (*h < 0) *h = -*h;   /* top-down rows */
        }
        return 1;
    }
    if (!strcmp(format, "jpeg")) {  /* walk the marker segments to the first SOFn */
        size_t i = 2;
        while (i + 4 <= n) {
            if (d[i] != 0xFF) return 0;
            uint8_t m = d[i + 1];
            if (m == 0xFF) { i++; continue; }
            if (m == 0xD8 || (m >= 0xD0 && m <= 0xD7) || m == 0x01) { i += 2; continue; }
            uint32_t len = be16(d + i + 2);
            if (len < 2) return 0;
            if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
                if (i + 9 > n) return 0;
                *h = be16(d + i + 5);
                *w = be16(d + i + 7);
                return 1;
            }
            if (m == 0xDA || m == 0xD9) return 0;
            i += 2 + (size_t)len;
        }
        return 0;
    }
    if (!strcmp(format, "webp")) {   /* VP8X, VP8L or VP8 (lossy) bitstream header */
        if (n < 30) return 0;
        if (!memcmp(d + 12, "VP8X", 4)) {
            *w = 1 + (int64_t)(d[24] | d[25] << 8 | (uint32_t)d[26] << 16);
            *h = 1 + (int64_t)(d[27] | d[28] << 8 | (uint32_t)d[29] << 16);
            return 1;
        }
        if (!memcmp(d + 12, "VP8L", 4) && d[20] == 0x2f) {
            uint32_t b = le32(d + 21);
            *w = 1 + (b & 0x3fff);
            *h = 1 + ((b >> 14) & 0x3fff);
            return 1;
        }
        if (!memcmp(d + 12, "VP8 ", 4) && d[23] == 0x9d && d[24] == 0x01 && d[25] == 0x2a) {
            *w = le16(d + 26) & 0x3fff;
            *h = le16(d + 28) & 0x3fff;
            return 1;
        }
    }
    return 0;
}

/* stb decodes a JPEG cut short without complaint (the missing data reads as
 * zeros), so a JPEG counts as complete only if its end-of-image marker
 * follows the first scan. Entropy-coded data stuffs every 0xFF as FF 00, so
 * FF D9 there can only be the real marker. */
static int jpeg_complete(const uint8_t *d, size_t n) {
    size_t i = 2;
    while (i + 4 <= n) {              /* to the first SOS, skipping segments (EXIF thumbnails hold FF D9) */
        if (d[i] != 0xFF) return 0;
        uint8_t m = d[i + 1];
        if (m == 0xFF) { i++; continue; }
        if (m == 0xD8 || (m >= 0xD0 && m <= 0xD7) || m == 0x01) { i += 2; continue; }
        if (m == 0xDA) break;
        i += 2 + (size_t)be16(d + i + 2);
    }
    for (; i + 1 < n; i++)
        if (d[i] == 0xFF && d[i + 1] == 0xD9) return 1;
    return 0;
}

qiao_status qi_decode_memory(const uint8_t *data, size_t size, const char *name, const qi_decode_opts *o,
                             qi_decoder decoder, qiao_image **out) {
    *out = NULL;
    if (size == 0) return qc_error(QIAO_ERR_FORMAT, "%s: empty (0 bytes), not an image", name);
    if (size > o->max_file_bytes)
        return qc_error(QIAO_ERR_TOO_LARGE, "%s: %zu bytes, over the limit of %zu", name, size, o->max_file_bytes);
    qi_decoder sniffed;
    const char *format = sniff(data, size, &sniffed);
    int64_t w = 0, h = 0;
    /* In double: two 32-bit header fields can overflow an int64_t product. */
    if (header_size(data, size, format, &w, &h) && (double)w * (double)h > (double)o->max_pixels)
        return qc_error(QIAO_ERR_TOO_LARGE, "%s: %s header claims %lldx%lld = %.0f pixels, over the limit of %lld",
                        name, format, (long long)w, (long long)h, (double)w * (double)h, (long long)o->max_pixels);
    if (format && !strcmp(format, "jpeg") && !jpeg_complete(data, size))
        return qc_error(QIAO_ERR_FORMAT, "%s: truncated jpeg (no end-of-image marker after the scan data)", name);
    if (decoder == QI_DECODER_AUTO) {
        decoder = sniffed;
        if (decoder == QI_DECODER_AUTO) {
            if (qi_stb_recognizes(data, size)) {
                decoder = QI_DECODER_STB;
                format = "tga";
            } else {
                decoder = QI_DECODER_FFMPEG;
            }
        }
    }
    if (decoder == QI_DECODER_STB) return qi_stb_decode(data, size, name, format, o, out);
    qiao_status st = qi_ffmpeg_decode(data, size, name, o, out);
    /* The format is the file's ("jpeg"), not FFmpeg's decoder's ("mjpeg"). */
    if (st == QIAO_OK && format) snprintf((*out)->format, sizeof (*out)->format, "%s", format);
    return st;
}

qiao_status qiao_image_decode_memory(const void *data, size_t size, const qiao_image_decode_params *params,
                                     qiao_image **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_image_decode_memory: out is NULL");
    *out = NULL;
    if (!data && size) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_image_decode_memory: data is NULL");
    qi_decode_opts o;
    qiao_status st = qi_decode_opts_from(params, &o);
    if (st != QIAO_OK) return st;
    return qi_decode_memory(data, size, "<memory>", &o, QI_DECODER_AUTO, out);
}

qiao_status qiao_image_decode_file(const char *path, const qiao_image_decode_params *params, qiao_image **out) {
    if (!out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_image_decode_file: out is NULL");
    *out = NULL;
    if (!path) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_image_decode_file: path is NULL");
    qi_decode_opts o;
    qiao_status st = qi_decode_opts_from(params, &o);
    if (st != QIAO_OK) return st;
    uint8_t *data;
    size_t size;
    st = qc_read_file(path, o.max_file_bytes, &data, &size);
    if (st != QIAO_OK) return st;
    st = qi_decode_memory(data, size, path, &o, QI_DECODER_AUTO, out);
    free(data);
    return st;
}
