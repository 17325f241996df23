/* qiao quantize: writes a model file whose GEMM weights are stored int8
 * (codes + per-output-channel scales) or bf16, for the low-precision
 * inference path (qiao_session_params.precision; docs/design.md
 * "Precision").
 *
 * int8: each weight row n (an output channel) gets scale = max|W[n]| / 127
 * and codes round(W[n][k] / scale), half away from zero, in [-127, 127]:
 * an I8 tensor "<name>" of the weight's shape and an F32 tensor
 * "<name>.scale" (shape[0]), metadata "qiao.quantized": "int8". This is the
 * rule of the library's qb_lowp_quantize_row (sdk/backend/cpu/gemm_lowp.c),
 * written again here because the command sees only the public API; the
 * loader dequantizes and the int8 path re-quantizes, which gives back
 * these codes whichever rule wrote them (a row's largest code is 127).
 * bf16: those weights as BF16 (round to nearest even), "qiao.quantized":
 * "bf16". Every other tensor (biases, norms, embedding tables, the
 * tokenizer) is copied as it is.
 *
 * The GEMM weights are the ".weight" tensors of two or more dimensions
 * except the "_emb.weight" lookup tables, the rule of models/embed.c
 * (is_gemm_weight). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f, "usage: qiao quantize --model M.safetensors --out OUT.safetensors [--precision int8|bf16]\n"
               "  Stores the encoders' GEMM weights as int8 with per-output-channel scales (default) or\n"
               "  as bf16; sessions on OUT compute at that precision unless they ask for another.\n");
}

static bool is_gemm_weight(const qiao_tensor_info *t) {
    const size_t n = strlen(t->name), suf = strlen(".weight");
    if (t->ndim < 2 || n < suf || strcmp(t->name + n - suf, ".weight") != 0) return false;
    return strstr(t->name, "_emb.weight") == NULL;
}

/* One tensor of the output: borrowed or owned bytes. */
typedef struct out_tensor {
    char *name;
    qiao_dtype dtype;
    int ndim;
    int64_t shape[QIAO_MAX_DIMS];
    const void *data;
    size_t nbytes;
    void *owned;
} out_tensor;

static int64_t numel_of(const qiao_tensor_info *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

static float bf16_to_f32(uint16_t h) {
    const uint32_t b = (uint32_t)h << 16;
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static uint16_t f32_to_bf16(float x) {
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    if ((b & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((b >> 16) | 0x40u);
    return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

/* The weight as floats (F32 or BF16 in the file), or NULL with a message. */
static float *read_floats(const qiao_tensor_info *t, int64_t n) {
    if (t->dtype != QIAO_DTYPE_F32 && t->dtype != QIAO_DTYPE_BF16) {
        fprintf(stderr, "qiao quantize: %s is %s; this command reads F32 and BF16 weights\n", t->name,
                qiao_dtype_str(t->dtype));
        return NULL;
    }
    float *x = malloc((size_t)n * sizeof *x);
    if (!x) {
        fprintf(stderr, "qiao quantize: out of memory\n");
        return NULL;
    }
    if (t->dtype == QIAO_DTYPE_F32) {
        memcpy(x, t->data, (size_t)n * sizeof *x);
    } else {
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, (const char *)t->data + 2 * i, 2);
            x[i] = bf16_to_f32(h);
        }
    }
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) {
            fprintf(stderr, "qiao quantize: %s holds a non-finite value at %lld\n", t->name, (long long)i);
            free(x);
            return NULL;
        }
    return x;
}

/* Codes (rows, cols) and scales (rows) of x. */
static void quantize_rows(int8_t *q, float *scale, const float *x, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        const float *row = x + r * cols;
        float amax = 0.0f;
        for (int64_t k = 0; k < cols; k++) amax = fabsf(row[k]) > amax ? fabsf(row[k]) : amax;
        if (!(amax > 0.0f)) {
            scale[r] = 0.0f;
            memset(q + r * cols, 0, (size_t)cols);
            continue;
        }
        scale[r] = amax / 127.0f;
        const float inv = 127.0f / amax;
        for (int64_t k = 0; k < cols; k++) {
            const float v = row[k] * inv;
            int32_t c = (int32_t)(v + (v >= 0.0f ? 0.5f : -0.5f));
            c = c > 127 ? 127 : c < -127 ? -127 : c;
            q[r * cols + k] = (int8_t)c;
        }
    }
}

static int cmp_size(const void *a, const void *b) {
    const size_t x = qiao_dtype_size(((const out_tensor *)a)->dtype), y = qiao_dtype_size(((const out_tensor *)b)->dtype);
    return x > y ? -1 : x < y; /* largest element first: every tensor stays aligned, no gaps */
}

/* Writes the tensors and metadata as safetensors to path (through a
 * temporary file renamed over it). */
static int write_file(const char *path, out_tensor *t, size_t n, const qiao_model_file *src, const char *quant) {
    qsort(t, n, sizeof *t, cmp_size); /* not stable across equal sizes: offsets are recomputed below */
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject();
    if (!root || !meta) return fprintf(stderr, "qiao quantize: out of memory\n"), 1;
    cJSON_AddItemToObject(root, "__metadata__", meta);
    for (size_t i = 0; i < qiao_model_file_metadata_count(src); i++) {
        const char *k = qiao_model_file_metadata_key(src, i);
        cJSON_AddStringToObject(meta, k, qiao_model_file_metadata(src, k));
    }
    cJSON_AddStringToObject(meta, "qiao.quantized", quant);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        cJSON *e = cJSON_CreateObject(), *shape = cJSON_CreateArray(), *offs = cJSON_CreateArray();
        cJSON_AddStringToObject(e, "dtype", qiao_dtype_str(t[i].dtype));
        for (int d = 0; d < t[i].ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].shape[d]));
        cJSON_AddItemToObject(e, "shape", shape);
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + t[i].nbytes)));
        cJSON_AddItemToObject(e, "data_offsets", offs);
        cJSON_AddItemToObject(root, t[i].name, e);
        off += t[i].nbytes;
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json) return fprintf(stderr, "qiao quantize: out of memory\n"), 1;
    const size_t len = strlen(json), padded = (len + 7) / 8 * 8;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        fprintf(stderr, "qiao quantize: %s: %s\n", tmp, strerror(errno));
        cJSON_free(json);
        return 1;
    }
    uint8_t hl[8];
    for (int i = 0; i < 8; i++) hl[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    bool ok = fwrite(hl, 1, 8, f) == 8 && fwrite(json, 1, len, f) == len;
    for (size_t i = len; i < padded && ok; i++) ok = fputc(' ', f) != EOF;
    for (size_t i = 0; i < n && ok; i++) ok = fwrite(t[i].data, 1, t[i].nbytes, f) == t[i].nbytes;
    cJSON_free(json);
    if (fclose(f) != 0) ok = false;
    if (!ok || rename(tmp, path) != 0) {
        fprintf(stderr, "qiao quantize: writing %s: %s\n", path, strerror(errno));
        remove(tmp);
        return 1;
    }
    return 0;
}

int cmd_quantize(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *prec = "int8";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            usage(stderr);
            return 2;
        }
        if (!strcmp(argv[i], "--model")) model = argv[++i];
        else if (!strcmp(argv[i], "--out")) out = argv[++i];
        else if (!strcmp(argv[i], "--precision")) prec = argv[++i];
        else {
            usage(stderr);
            return 2;
        }
    }
    if (!model || !out || (strcmp(prec, "int8") != 0 && strcmp(prec, "bf16") != 0)) {
        usage(stderr);
        return 2;
    }
    const bool int8 = !strcmp(prec, "int8");
    qiao_model_file *f = NULL;
    qiao_status st = qiao_model_file_open(model, &f);
    if (st != QIAO_OK) return cli_fail(st);
    int rc = 1;
    if (!qiao_model_file_metadata(f, "qiao.format")) {
        fprintf(stderr, "qiao quantize: %s is not a qiao model (no qiao.format metadata)\n", model);
        qiao_model_file_close(f);
        return 1;
    }
    if (qiao_model_file_metadata(f, "qiao.quantized")) {
        fprintf(stderr, "qiao quantize: %s is already quantized (%s)\n", model,
                qiao_model_file_metadata(f, "qiao.quantized"));
        qiao_model_file_close(f);
        return 1;
    }
    const size_t n_in = qiao_model_file_tensor_count(f);
    out_tensor *t = calloc(2 * n_in + 1, sizeof *t);
    size_t n = 0, n_q = 0;
    int64_t q_params = 0;
    if (!t) goto done;
    for (size_t i = 0; i < n_in; i++) {
        qiao_tensor_info ti;
        if ((st = qiao_model_file_tensor(f, i, &ti)) != QIAO_OK) {
            cli_fail(st);
            goto done;
        }
        out_tensor *o = &t[n++];
        o->name = strdup(ti.name);
        o->dtype = ti.dtype;
        o->ndim = ti.ndim;
        memcpy(o->shape, ti.shape, sizeof o->shape);
        o->data = ti.data;
        o->nbytes = ti.nbytes;
        if (!o->name) goto done;
        if (!is_gemm_weight(&ti)) continue;
        const int64_t numel = numel_of(&ti), rows = ti.shape[0];
        float *x = read_floats(&ti, numel);
        if (!x) goto done;
        n_q++, q_params += numel;
        if (int8) {
            int8_t *q = malloc((size_t)numel);
            float *sc = malloc((size_t)rows * sizeof *sc);
            out_tensor *s = &t[n++];
            s->name = malloc(strlen(ti.name) + 7);
            if (!q || !sc || !s->name) {
                free(x), free(q), free(sc);
                goto done;
            }
            quantize_rows(q, sc, x, rows, numel / rows);
            o->dtype = QIAO_DTYPE_I8, o->data = o->owned = q, o->nbytes = (size_t)numel;
            sprintf(s->name, "%s.scale", ti.name);
            s->dtype = QIAO_DTYPE_F32, s->ndim = 1, s->shape[0] = rows;
            s->data = s->owned = sc, s->nbytes = (size_t)rows * sizeof *sc;
        } else {
            uint16_t *h = malloc((size_t)numel * 2);
            if (!h) {
                free(x);
                goto done;
            }
            for (int64_t k = 0; k < numel; k++) h[k] = f32_to_bf16(x[k]);
            o->dtype = QIAO_DTYPE_BF16, o->data = o->owned = h, o->nbytes = (size_t)numel * 2;
        }
        free(x);
    }
    if (write_file(out, t, n, f, prec) != 0) goto done;
    printf("%s: %zu GEMM weights (%lld parameters) stored %s%s; %zu other tensors copied\n", out, n_q,
           (long long)q_params, prec, int8 ? " with per-output-channel scales" : "", n_in - n_q);
    rc = 0;
done:
    if (rc && !t) fprintf(stderr, "qiao quantize: out of memory\n");
    for (size_t i = 0; t && i < n; i++) free(t[i].name), free(t[i].owned);
    free(t);
    qiao_model_file_close(f);
    return rc;
}
