/* modalities/image/preprocess.c - resize, center-crop or letterbox, normalize
 * and cut patches: an image becomes the encoder's float input.
 *
 * Each channel is resized as its own GRAY8 plane: libswscale scales RGB
 * through an internal YUV conversion (with rounding, and chroma subsampling
 * unless asked otherwise), while a gray plane is filtered as is, so a flat
 * color stays exactly that color and channels do not bleed into each other. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <libswscale/swscale.h>

#include "modalities/image/image.h"
#include "modalities/media/ffmpeg.h"

#define MAX_SIZE 8192

qiao_image_preprocess_params qiao_image_preprocess_default_params(void) {
    qiao_image_preprocess_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.size = 224;
    p.fit = QIAO_IMAGE_FIT_CROP;
    p.filter = QIAO_IMAGE_FILTER_BICUBIC;
    p.layout = QIAO_IMAGE_CHW;
    /* round(255 * CLIP mean) */
    p.pad[0] = 123;
    p.pad[1] = 117;
    p.pad[2] = 104;
    /* OpenAI CLIP's constants (close to ImageNet's 0.485/0.456/0.406 and
     * 0.229/0.224/0.225), so pretrained-CLIP-style inputs line up. */
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    const float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    memcpy(p.mean, mean, sizeof mean);
    memcpy(p.std, std, sizeof std);
    return p;
}

static qiao_status resolve(const qiao_image_preprocess_params *params, qiao_image_preprocess_params *p) {
    *p = qiao_image_preprocess_default_params();
    qiao_status st = qc_params_read(p, sizeof *p, params, offsetof(qiao_image_preprocess_params, size) + sizeof p->size,
                                    "qiao_image_preprocess_default_params");
    if (st != QIAO_OK) return st;
    if (p->size < 1 || p->size > MAX_SIZE)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "image preprocess: size %lld not in 1..%d", (long long)p->size,
                        MAX_SIZE);
    if ((unsigned)p->fit > QIAO_IMAGE_FIT_LETTERBOX || (unsigned)p->filter > QIAO_IMAGE_FILTER_AREA ||
        (unsigned)p->layout > QIAO_IMAGE_HWC)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "image preprocess: unknown fit, filter or layout");
    for (int c = 0; c < 3; c++)
        if (!(p->std[c] > 0.0f) || !isfinite(p->std[c]) || !isfinite(p->mean[c]))
            return qc_error(QIAO_ERR_INVALID_ARGUMENT, "image preprocess: std[%d] must be > 0 and finite", c);
    return QIAO_OK;
}

size_t qiao_image_preprocess_len(const qiao_image_preprocess_params *params) {
    qiao_image_preprocess_params p = qiao_image_preprocess_default_params();
    if (params) {
        size_t n = params->struct_size < sizeof p ? params->struct_size : sizeof p;
        if (n < offsetof(qiao_image_preprocess_params, size) + sizeof p.size) return 0;
        memcpy(&p, params, n);
    }
    if (p.size < 1 || p.size > MAX_SIZE) return 0;
    return 3 * (size_t)p.size * (size_t)p.size;
}

static int sws_filter(qiao_image_filter f) {
    switch (f) {
    case QIAO_IMAGE_FILTER_BILINEAR: return SWS_BILINEAR;
    case QIAO_IMAGE_FILTER_AREA: return SWS_AREA;
    default: return SWS_BICUBIC;
    }
}

/* The part of the source image that is resized: all of it, or for a crop
 * of an extreme aspect ratio only what the kept window needs. */
typedef struct src_rect {
    int64_t x, y, w, h;
} src_rect;

/* Resizes one channel of `img`'s rectangle `r` into a (rh, rw) plane. */
static qiao_status resize_plane(const qiao_image *img, const src_rect *r, int c, struct SwsContext *sws,
                                uint8_t *src_plane, uint8_t *dst, int64_t rw) {
    for (int64_t y = 0; y < r->h; y++) {
        const uint8_t *s = img->pixels + (size_t)(r->y + y) * img->stride + 3 * (size_t)r->x + c;
        uint8_t *d = src_plane + (size_t)y * (size_t)r->w;
        for (int64_t x = 0; x < r->w; x++) d[x] = s[3 * x];
    }
    const uint8_t *src[4] = {src_plane, NULL, NULL, NULL};
    int src_stride[4] = {(int)r->w, 0, 0, 0};
    uint8_t *dsts[4] = {dst, NULL, NULL, NULL};
    int dst_stride[4] = {(int)rw, 0, 0, 0};
    if (sws_scale(sws, src, src_stride, 0, (int)r->h, dsts, dst_stride) <= 0)
        return qc_error(QIAO_ERR_INTERNAL, "image preprocess: sws_scale failed");
    return QIAO_OK;
}

/* Distance from v to the nearest integer. */
static double off_grid(double v) { return fabs(v - nearbyint(v)); }

/* Narrows one axis of a crop to the source span its window [*off, *off + S)
 * of the resized axis (length *len, scale len / n) reads, plus the filter's
 * reach (bicubic: 2 taps each side, stretched by the downscale factor).
 * The span's ends are moved outwards (by up to 256 pixels) to where they
 * land closest to whole resized pixels, so the narrowed resize keeps the
 * full one's scale and phase to a small fraction of a pixel.
 * *len and *off are updated to the narrowed resize; *s0, *sn get the span. */
static void narrow_axis(int64_t n, int64_t S, int64_t *len, int64_t *off, int64_t *s0, int64_t *sn) {
    const double scale = (double)*len / (double)n;
    const int64_t reach = (int64_t)ceil(2.0 / (scale < 1.0 ? scale : 1.0)) + 2;
    int64_t a0 = (int64_t)floor((double)*off / scale) - reach;
    int64_t b0 = (int64_t)ceil((double)(*off + S) / scale) + reach;
    if (a0 < 0) a0 = 0;
    if (b0 > n) b0 = n;
    int64_t a = a0, b = b0;
    for (int64_t k = a0; k >= 0 && k >= a0 - 256 && off_grid((double)a * scale) > 1e-9; k--)
        if (off_grid((double)k * scale) < off_grid((double)a * scale)) a = k;
    for (int64_t k = b0; k <= n && k <= b0 + 256 && off_grid((double)(b - a) * scale) > 1e-9; k++)
        if (off_grid((double)(k - a) * scale) < off_grid((double)(b - a) * scale)) b = k;
    int64_t len2 = llround((double)(b - a) * scale);
    int64_t off2 = llround((double)*off - (double)a * scale);
    if (len2 < S) return; /* keep the whole axis */
    if (off2 > len2 - S) off2 = len2 - S;
    if (off2 < 0) off2 = 0;
    *s0 = a;
    *sn = b - a;
    *len = len2;
    *off = off2;
}

/* Fills `canvas` (3 planes of S x S bytes) with the fitted image. */
static qiao_status fit_planes(const qiao_image *img, const qiao_image_preprocess_params *p, uint8_t *canvas) {
    const int64_t S = p->size, w = img->width, h = img->height;
    int64_t rw, rh;
    if (p->fit == QIAO_IMAGE_FIT_CROP) {  /* short side -> S */
        if (w <= h) {
            rw = S;
            rh = llround((double)h * (double)S / (double)w);
            if (rh < S) rh = S;
        } else {
            rh = S;
            rw = llround((double)w * (double)S / (double)h);
            if (rw < S) rw = S;
        }
    } else {                                /* long side -> S */
        if (w >= h) {
            rw = S;
            rh = llround((double)h * (double)S / (double)w);
            if (rh < 1) rh = 1;
        } else {
            rh = S;
            rw = llround((double)w * (double)S / (double)h);
            if (rw < 1) rw = 1;
        }
    }
    if (w > INT32_MAX / 4 || h > INT32_MAX / 4)
        return qc_error(QIAO_ERR_TOO_LARGE, "image preprocess: %lldx%lld is too large to resize", (long long)w,
                        (long long)h);
    /* Crop: the window inside the resized image. Letterbox: where the resized
     * image sits on the canvas (the odd pixel of margin goes bottom/right). */
    int64_t cx = 0, cy = 0, ox = 0, oy = 0, cw = S, ch = S;
    src_rect r = {0, 0, w, h};
    if (p->fit == QIAO_IMAGE_FIT_CROP) {
        cx = (rw - S) / 2;
        cy = (rh - S) / 2;
        /* A crop keeps S x S of the resized image. For a long strip (a
         * 100000x1 PNG is 177 bytes) resizing all of it first would make a
         * plane of 22 M x 224 at S = 224, past swscale's int offsets, so
         * only the source span the window reads is resized. Ordinary aspect
         * ratios (up to 4:1) keep the whole-image resize and its exact
         * values. */
        if ((double)rw * (double)rh > 4.0 * (double)S * (double)S) {
            narrow_axis(w, S, &rw, &cx, &r.x, &r.w);
            narrow_axis(h, S, &rh, &cy, &r.y, &r.h);
        }
    } else {
        ox = (S - rw) / 2;
        oy = (S - rh) / 2;
        cw = rw;
        ch = rh;
    }
    if (rw > INT32_MAX / 4 || rh > INT32_MAX / 4)
        return qc_error(QIAO_ERR_TOO_LARGE, "image preprocess: %lldx%lld is too large to resize", (long long)w,
                        (long long)h);
    size_t plane = (size_t)rw * (size_t)rh;
    size_t src_plane = (size_t)r.w * (size_t)r.h;
    /* swscale's SIMD may write a little past a row's end: pad the buffers. */
    uint8_t *resized = malloc(plane + 64);
    uint8_t *gray = malloc(src_plane + 64);
    struct SwsContext *sws = NULL;
    qiao_status st = QIAO_OK;
    if (!resized || !gray) {
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "image preprocess: out of memory for a %lldx%lld plane", (long long)rw,
                      (long long)rh);
        goto done;
    }
    if (rw != r.w || rh != r.h) {
        qm_ffmpeg_init(); /* swscale logs through FFmpeg's log */
        sws = sws_getContext((int)r.w, (int)r.h, AV_PIX_FMT_GRAY8, (int)rw, (int)rh, AV_PIX_FMT_GRAY8,
                             sws_filter(p->filter) | SWS_ACCURATE_RND, NULL, NULL, NULL);
        if (!sws) {
            /* swscale says nothing more; its only allocations are its filter
             * tables, so a failure on valid sizes is memory. */
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY,
                          "image preprocess: cannot make a %lldx%lld -> %lldx%lld scaler (out of memory)",
                          (long long)r.w, (long long)r.h, (long long)rw, (long long)rh);
            goto done;
        }
    }
    for (int c = 0; c < 3; c++) {
        uint8_t *out = canvas + (size_t)c * (size_t)(S * S);
        if (p->fit == QIAO_IMAGE_FIT_LETTERBOX) memset(out, p->pad[c], (size_t)(S * S));
        if (sws) {
            st = resize_plane(img, &r, c, sws, gray, resized, rw);
            if (st != QIAO_OK) goto done;
        } else {
            for (int64_t y = 0; y < r.h; y++)
                for (int64_t x = 0; x < r.w; x++)
                    resized[y * r.w + x] = img->pixels[(size_t)(r.y + y) * img->stride + 3 * (size_t)(r.x + x) + c];
        }
        for (int64_t y = 0; y < ch; y++)
            memcpy(out + (size_t)((oy + y) * S + ox), resized + (size_t)((cy + y) * rw + cx), (size_t)cw);
    }
done:
    sws_freeContext(sws);
    free(resized);
    free(gray);
    return st;
}

/* Preprocesses into CHW floats (always), or HWC when hwc is set. */
static qiao_status run(const qiao_image *img, const qiao_image_preprocess_params *p, float *out, int hwc) {
    const size_t S2 = (size_t)p->size * (size_t)p->size;
    uint8_t *canvas = malloc(3 * S2);
    if (!canvas) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "image preprocess: out of memory");
    qiao_status st = fit_planes(img, p, canvas);
    if (st == QIAO_OK) {
        float lut[3][256];
        for (int c = 0; c < 3; c++)
            for (int v = 0; v < 256; v++) lut[c][v] = ((float)v / 255.0f - p->mean[c]) / p->std[c];
        for (int c = 0; c < 3; c++)
            for (size_t i = 0; i < S2; i++) {
                float v = lut[c][canvas[(size_t)c * S2 + i]];
                if (hwc) out[3 * i + (size_t)c] = v;
                else out[(size_t)c * S2 + i] = v;
            }
    }
    free(canvas);
    return st;
}

qiao_status qiao_image_preprocess(const qiao_image *img, const qiao_image_preprocess_params *params, float *out,
                                  size_t out_len) {
    if (!img || !out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_image_preprocess: NULL image or output");
    qiao_image_preprocess_params p;
    qiao_status st = resolve(params, &p);
    if (st != QIAO_OK) return st;
    size_t need = 3 * (size_t)p.size * (size_t)p.size;
    if (out_len < need)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_image_preprocess: out holds %zu floats, need %zu", out_len,
                        need);
    return run(img, &p, out, p.layout == QIAO_IMAGE_HWC);
}

size_t qiao_image_patches_len(const qiao_image_preprocess_params *params, int64_t patch) {
    size_t n = qiao_image_preprocess_len(params);
    if (n == 0 || patch < 1) return 0;
    int64_t S = params ? params->size : 224;
    if (S % patch != 0) return 0;
    return n; /* the patches hold exactly the image's values */
}

qiao_status qiao_image_patches(const qiao_image *img, const qiao_image_preprocess_params *params, int64_t patch,
                               float *out, size_t out_len) {
    if (!img || !out) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_image_patches: NULL image or output");
    qiao_image_preprocess_params p;
    qiao_status st = resolve(params, &p);
    if (st != QIAO_OK) return st;
    const int64_t S = p.size, P = patch;
    if (P < 1 || S % P != 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_image_patches: patch %lld does not divide size %lld",
                        (long long)P, (long long)S);
    const size_t S2 = (size_t)S * (size_t)S;
    if (out_len < 3 * S2)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "qiao_image_patches: out holds %zu floats, need %zu", out_len,
                        3 * S2);
    float *chw = malloc(3 * S2 * sizeof *chw);
    if (!chw) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "qiao_image_patches: out of memory");
    st = run(img, &p, chw, 0);
    if (st == QIAO_OK) {
        const int64_t g = S / P;
        float *o = out;
        for (int64_t k = 0; k < g * g; k++) {
            const int64_t y0 = (k / g) * P, x0 = (k % g) * P;
            for (int c = 0; c < 3; c++)
                for (int64_t py = 0; py < P; py++) {
                    memcpy(o, chw + (size_t)c * S2 + (size_t)((y0 + py) * S + x0), (size_t)P * sizeof *o);
                    o += P;
                }
        }
    }
    free(chw);
    return st;
}
