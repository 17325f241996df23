/* tests/fuzz/fuzz_image_preprocess.c - libFuzzer target for preprocessing at
 * the sizes models use (64 to 448), with extreme aspect ratios: the first
 * bytes choose the output size, the fit, filter and layout, and the picture's
 * width and height (1 to 2^19 each, up to 1 M pixels for strips that are
 * cropped, 64 K otherwise); the rest are its
 * pixels, repeated. One flag instead decodes the rest as an image file with
 * the library's real limits (64 M pixels; 4 M for a letterbox, which reads
 * every pixel) and preprocesses that.
 *
 * What must hold: a valid picture with valid parameters always preprocesses
 * (or reports out of memory), every value lies in the normalized range of
 * 0..255, and a picture of one colour gives that colour, to one level in
 * 255, everywhere it is shown (letterbox padding aside).
 *
 * fuzz_image (decoders, small sizes) cannot reach this: a 177-byte 100000x1
 * PNG crashed swscale here at sizes from about 150 up (issue 12). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "modalities/image/image.h"

#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t u24(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16; }

/* A side from 3 bytes, spread log-uniformly over 1..2^19 so both square
 * pictures and long strips come up often. */
static int64_t side(const uint8_t *p) {
    uint32_t v = u24(p);
    int shift = (int)(v >> 19) & 31;         /* 0..31 */
    int64_t s = 1 + (int64_t)(v & 0x7FFFF);  /* 1..2^19 */
    s >>= shift % 20;
    return s < 1 ? 1 : s;
}

static void check_output(const float *x, const qiao_image_preprocess_params *p, int uniform, uint8_t value) {
    const int64_t S = p->size;
    const size_t S2 = (size_t)(S * S);
    for (int c = 0; c < 3; c++) {
        float lo = (0.0f - p->mean[c]) / p->std[c], hi = (1.0f - p->mean[c]) / p->std[c];
        float pad = ((float)p->pad[c] / 255.0f - p->mean[c]) / p->std[c];
        float want = ((float)value / 255.0f - p->mean[c]) / p->std[c];
        for (size_t i = 0; i < S2; i++) {
            float v = p->layout == QIAO_IMAGE_HWC ? x[3 * i + (size_t)c] : x[(size_t)c * S2 + i];
            CHECK(isfinite(v) && v >= lo - 1e-5f && v <= hi + 1e-5f);
            /* Within one level of 255: swscale's fixed-point filters for a
             * downscale past about 64:1 sum to a hair over one, so a flat
             * 223 comes out 224 (4353x14 letterboxed to 64). */
            if (uniform)
                CHECK(fabsf(v - want) <= 1.0001f / 255.0f / p->std[c] ||
                      (p->fit == QIAO_IMAGE_FIT_LETTERBOX && v == pad));
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 10) return 0;
    qiao_image_preprocess_params p = qiao_image_preprocess_default_params();
    p.size = 64 + (int64_t)((data[0] | data[1] << 8) % 385);
    p.fit = (data[2] & 1) ? QIAO_IMAGE_FIT_LETTERBOX : QIAO_IMAGE_FIT_CROP;
    p.filter = (qiao_image_filter)((data[2] >> 1) % 3);
    p.layout = (data[2] & 8) ? QIAO_IMAGE_HWC : QIAO_IMAGE_CHW;
    const int decode = (data[2] & 16) != 0, uniform = (data[2] & 32) != 0;
    const size_t n = 3 * (size_t)(p.size * p.size);
    float *x = malloc(n * sizeof *x);
    if (!x) return 0;
    qiao_image *img = NULL;
    if (decode) {
        qi_decode_opts o;
        /* The library's own limit where a crop reads part of the picture;
         * a letterbox reads all of it, at ~100 ns a pixel instrumented. */
        if (qi_decode_opts_from(NULL, &o) == QIAO_OK && (p.fit == QIAO_IMAGE_FIT_CROP || (o.max_pixels = 1 << 22)) &&
            qi_decode_memory(data + 3, size - 3, "<fuzz>", &o, QI_DECODER_AUTO, &img) == QIAO_OK) {
            qiao_status st = qiao_image_preprocess(img, &p, x, n);
            CHECK(st == QIAO_OK || st == QIAO_ERR_OUT_OF_MEMORY);
            if (st == QIAO_OK) check_output(x, &p, 0, 0);
        }
    } else {
        int64_t w = side(data + 3), h = side(data + 6);
        /* Under coverage instrumentation each source pixel costs ~100 ns,
         * so pictures stay small unless they are strips that a crop only
         * partly reads (the path that needs the size). */
        const int strip = p.fit == QIAO_IMAGE_FIT_CROP && (w > 16 * h || h > 16 * w);
        while (w * h > ((int64_t)1 << (strip ? 20 : 16))) {
            if (w > h) w /= 2;
            else h /= 2;
        }
        const uint8_t *px = data + 9;
        size_t npx = size - 9, total = 3 * (size_t)(w * h);
        uint8_t *rgb = malloc(total);
        if (rgb) {
            if (uniform) memset(rgb, px[0], total);
            else { /* the pixel bytes repeated, by doubling copies */
                size_t have = npx < total ? npx : total;
                memcpy(rgb, px, have);
                while (have < total) {
                    size_t k = have < total - have ? have : total - have;
                    memcpy(rgb + have, rgb, k);
                    have += k;
                }
            }
            if (qiao_image_from_rgb(rgb, w, h, 3 * (size_t)w, &img) == QIAO_OK) {
                qiao_status st = qiao_image_preprocess(img, &p, x, n);
                CHECK(st == QIAO_OK || st == QIAO_ERR_OUT_OF_MEMORY);
                if (st == QIAO_OK) check_output(x, &p, uniform, px[0]);
            }
            free(rgb);
        }
    }
    qiao_image_free(img);
    free(x);
    return 0;
}
