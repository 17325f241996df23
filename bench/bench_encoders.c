/* bench_encoders: speed of the three encoders (issue 5), qiao beside the
 * PyTorch peer (bench/peer/qiao_peer.py) on the same weights and the same
 * inputs, in the same run: latency at batch 1 and throughput at batch 32 per
 * modality, the share of the GEMM roofline, and memory.
 *
 *   build/bin/bench_encoders [--config models/configs/base.json] [--threads 2] [--batch 32]
 *                            [--rounds 7] [--no-peer] [--no-trim] [--keep] [--profile MODALITY:B]
 *                            [--peer-wait passive|active|inherit] [--ort]
 *
 * Run from the repository root (it reads tests/data and bench/peer).
 *
 * What is timed, per case (modality, batch):
 *   - "qiao": qmod_forward alone (models/embed.h), on a batch prepared
 *     beforehand (tokenized, cut into patches, log-mel), with a workspace
 *     sized to it: the encoder and nothing else;
 *   - "peer": the peer's forward in float32 under torch.inference_mode()
 *     with torch.set_num_threads(N), on the same prepared batch (written to
 *     a .safetensors that the peer process reads), weights read from the
 *     model file qiao saved;
 *   - "sgemm": raw cblas_sgemm on the forward's own linear and conv GEMM
 *     shapes, back to back, single-threaded (the roofline, below);
 *   - "packed": the same qmod_forward on a context whose weights were
 *     packed once (qmod_pack_weights, sdk/backend/cpu/gemm_packed.c: no
 *     per-call packing by OpenBLAS, an AVX-512 kernel for M <= QB_PACK_MAX_M),
 *     as the public API runs it; absent on a CPU without AVX-512F;
 *   - "API": the public path (qiao_embed_texts / _images / _audios on a
 *     session of N threads), which adds tokenization, crop + resize of the
 *     decoded image, or the log-mel, to the same (packed) forward.
 * The machine this runs on is shared, so the four are timed in alternation:
 * each round times each of them once (a loop of calls lasting >= 50 ms,
 * calibrated after warm-up calls; qiao, packed, API, sgemm, peer, with a pause for
 * OpenBLAS's spinning threads after the peer), and a figure is the median
 * over the rounds; the speedup is the median of the per-round ratios. The
 * peer is a child process that times itself when asked
 * (bench/peer/bench_encoders_peer.py), so both sides see the same load. Its
 * embeddings come back at the end and are compared with qiao's (cosine per
 * row; the minimum is printed).
 *
 * The model: the config's architecture with random weights (speed does not
 * depend on training), except that the text vocabulary, character
 * vocabulary and k are set to those of the committed test tokenizer
 * (tests/data/tokenizer/tok-test.safetensors): training a tokenizer of the
 * config's sizes would take minutes, and the piece and character tables are
 * lookups, so their row counts barely move the time.
 *
 * Inputs, realistic sizes:
 *   text   32 long captions of the shapes world (16 scenes of 3-4 objects,
 *          each in Chinese and English, from the generator's val split);
 *          batch 1 is the first one;
 *   image  the three photos in tests/data/image (640x480 JPEG), centre
 *          crop + bicubic resize to the config's image_size, cycled;
 *   audio  10 s clips of speech: the FSDD digit in tests/data/audio tiled,
 *          each clip starting at another offset (1001 log-mel frames).
 *
 * Roofline: the GEMM flops of one forward (2*M*N*K for every linear, conv
 * (as its im2col GEMM) and attention product, counted from the config at
 * the batch's padded shape) over N times the rate single-threaded raw sgemm
 * reaches on this forward's own linear and conv GEMMs (N = threads).
 * "% roofline" is the achieved GEMM GFLOP/s over that: the share of the
 * time spent multiplying as fast as BLAS can at these shapes.
 *
 * On a machine shared with other jobs, run it with OMP_WAIT_POLICY=passive:
 * with the default policy a thread waiting at the end of a parallel region
 * spins, and when its partner has been descheduled by another job every
 * region waits out a time slice; forwards of both sides then ran up to 50x
 * slower at a load average of 7 on 2 cores (docs/benchmarks.md, "Encoders").
 *
 * The peer runs with OMP_WAIT_POLICY=passive whatever qiao's side uses
 * (--peer-wait inherit gives it this process's setting): Debian's torch
 * 1.13 on 2 cores is 6x slower under libgomp's default policy even alone
 * on an idle machine (image batch 1: 32 ms against 5.0 ms; its OpenMP team
 * and the OpenBLAS threads it calls spin against each other), so passive
 * is the peer's own best setting. qiao's side uses what the environment
 * says: the default (spin, then sleep) on an idle machine, passive on a
 * shared one.
 *
 * Memory: the forward's workspace (qmod_work activations) per case; the
 * scratch a public-API session holds after embedding that case alone
 * (qiao_session_memory); the process's resident set (VmRSS, getrusage
 * ru_maxrss) beside the peer process's peak. */
#define _POSIX_C_SOURCE 200809L

#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "backend/cpu/cpu.h"
#include "core/safetensors.h"
#include "models/embed.h"
#include "models/model.h"

#include "bench_util.h"

#define MAX_B 64
#define TOKENIZER "tests/data/tokenizer/tok-test.safetensors"
#define PEER_PYTHON "/usr/bin/python3"
#define PEER_SCRIPT "bench/peer/bench_encoders_peer.py"

/* Long captions (caption 0) of shapes-val-000001, 3, 4, 5, 18, 20, 29, 32,
 * 33, 36, 38, 40, 42, 44, 47, 49 (generator shapes-1.1, seed 1, val split),
 * Chinese then English for each scene. */
static const char *const k_captions[] = {
    "这张图片里一共有四个图形：左下角是一个紫色的小星形，一个大的黄色六边形在中央，一个小的黄色菱形在上边，右下方是一个紫色的大菱形。",
    "There are four shapes: a little yellow diamond at the top, a big yellow hexagon in the middle, a large violet rhombus in the bottom right and a little purple star in the lower left.",
    "这张图里：右上角有一个小的红色六边形，一个小的橙色六边形在下边，一个大的绿色正方形在左边。",
    "In this picture there is a large green square on the left, a small orange hexagon at the bottom edge and a small red hexagon in the upper right.",
    "这张图片里一共有四个图形：右边有一个大的绿色三角形，一个小的黄色六边形在左上角，下边是一个蓝色的大正方形，右下角是一个蓝色的大菱形。",
    "There are four shapes: a big blue diamond in the bottom right, a big green triangle on the right side, a small yellow hexagon in the top left and a large blue square at the bottom.",
    "图中有四个图形：左上方是一个棕色的小三角形，左下方是一个黑色的大五角星，一个小的蓝色六边形在下方，一个大的黄色菱形在上边。",
    "This image contains a big black star in the lower left, a big yellow rhombus at the top, a small brown triangle in the upper left and a small blue hexagon at the bottom edge.",
    "这张图片里一共有四个图形：一个小的黑色十字形在左上角，左下角有一个小的橙色六边形，右上方是一个黄色的大六边形，一个大的橙色星形在上边。",
    "There are four shapes: a big orange star at the top, a little black plus sign in the top left, a small orange hexagon in the lower left and a large yellow hexagon in the top right.",
    "这张图片里一共有三个图形：上边有一个小的棕色十字形，右下方是一个黑色的大正方形，一个小的紫色正方形在右边。",
    "The picture shows three shapes: a large black square in the lower right, a little brown cross at the top edge and a small violet square on the right side.",
    "这张图里：左上方有一个大的褐色方块，右上角是一个褐色的小三角形，右下角是一个红色的大圆形，下方有一个小的蓝色圆形。",
    "In this picture there is a small blue circle at the bottom, a large brown square in the upper left, a large red circle in the bottom right and a little brown triangle in the top right.",
    "这张图里：下边有一个小的黑色五角星，上方有一个大的褐色十字形，左边是一个黑色的小圆，一个大的黑色十字形在右上角。",
    "In this picture there is a big brown cross at the top, a large black plus sign in the upper right, a little black disk on the left side and a little black star at the bottom.",
    "这张图片里一共有四个图形：一个大的橙色圆形在左上方，上方有一个大的蓝色圆，一个小的黑色三角形在中间，左侧是一个黑色的小菱形。",
    "In this picture there is a large blue disk at the top edge, a large orange circle in the upper left, a small black triangle in the center and a little black rhombus on the left.",
    "这张图里：左上方是一个橙色的小十字，一个小的红色十字在右下角，一个小的红色星形在右上方，左下角是一个黄色的大三角形。",
    "This image contains a small orange plus sign in the top left, a little red cross in the lower right, a small red star in the upper right and a big yellow triangle in the lower left.",
    "图中有三个图形：左上方是一个黑色的大六边形，右上角有一个大的橙色菱形，一个小的黄色六边形在左下角。",
    "There are three shapes: a small yellow hexagon in the lower left, a large black hexagon in the upper left and a big orange diamond in the upper right.",
    "这张图片里一共有四个图形：下方是一个黑色的小方块，一个大的橙色十字形在左上角，左下角是一个红色的小圆形，左边是一个橙色的大圆。",
    "The picture shows four shapes: a little red circle in the bottom left, a big orange cross in the top left, a large orange disk on the left and a little black square at the bottom.",
    "图中有四个图形：左侧是一个紫色的大圆形，右侧有一个大的棕色十字形，右上角有一个大的棕色五角星，一个大的红色六边形在中央。",
    "There are four shapes: a big brown plus sign on the right, a big brown star in the top right, a large red hexagon in the middle and a large violet circle on the left side.",
    "这张图里：右下角有一个大的褐色五角星，右侧有一个大的蓝色十字，上方有一个小的橙色圆。",
    "There are three shapes: a big blue plus sign on the right side, a big brown star in the lower right and a little orange circle at the top edge.",
    "图中有四个图形：下边是一个黑色的大十字，右上方有一个大的蓝色三角形，一个小的绿色十字形在左上角，上边是一个黄色的小菱形。",
    "In this picture there is a big blue triangle in the upper right, a little green plus sign in the top left, a big black cross at the bottom and a little yellow rhombus at the top edge.",
    "图中有四个图形：一个大的黄色三角形在左上角，左下方有一个大的蓝色正方形，中间是一个红色的小菱形，右上方有一个大的黑色六边形。",
    "There are four shapes: a big yellow triangle in the upper left, a big blue square in the bottom left, a small red diamond in the center and a large black hexagon in the upper right.",
};
#define N_CAPTIONS (sizeof k_captions / sizeof k_captions[0])

static const char *const k_images[] = {"tests/data/image/000000126107.jpg", "tests/data/image/000000159269.jpg",
                                       "tests/data/image/000000205401.jpg"};
#define N_IMAGES (sizeof k_images / sizeof k_images[0])
#define SPEECH_CLIP "tests/data/audio/fsdd_3_jackson_0.wav"
#define AUDIO_SECONDS 10

static int fail(const char *what, qiao_status st) {
    fprintf(stderr, "bench_encoders: %s: %s: %s\n", what, qiao_status_str(st), qiao_last_error());
    return 1;
}

/* ---- memory ------------------------------------------------------------------ */

static double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* kB on Linux */
}

/* The current resident set (VmRSS), MiB; 0 without /proc. */
static double rss_mib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    double kb = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = atof(line + 6);
    fclose(f);
    return kb / 1024.0;
}

#define MIB(bytes) ((double)(bytes) / (1024.0 * 1024.0))

/* ---- the cases ------------------------------------------------------------------ */

typedef struct gemm_shape {
    int64_t M, N, K; /* out (M, N) = in (M, K) w^T, w (N, K) */
} gemm_shape;

#define MAX_GEMMS 256

typedef struct bench_case {
    qmod_modality mod;
    int64_t B;
    qmod_batch batch;
    int64_t padded_T;          /* text: T as qmod_batch_text gave it, before trim_text */
    qmod_work work;            /* qiao's forward */
    qiao_session *session;     /* the API path, this case only */
    const void *items;         /* raw inputs of the API path */
    float *emb;                /* (B, D) qiao's embeddings */
    float *emb_pk;             /* (B, D) the packed forward's */
    float *emb_lp[2];          /* (B, D) the bf16 and int8 forwards' */
    double lp_cos[2];          /* min cosine of emb_lp[q] rows to emb_pk's */
    double lp_gain[2];         /* median over rounds of packed f32 / bf16, int8 */
    double i8_vs_ort[2];       /* median over rounds of ORT f32 / qiao int8, ORT int8 / qiao int8 */
    float *api_out;            /* (B, D) */
    float *ra, *rw, *ry;       /* raw sgemm operands */
    int reps[9];               /* calls per timed loop, indexed by T_* */
    double t[9][BENCH_MAX_ROUNDS]; /* seconds per call, per round */
    double med[9];             /* medians; 0 = not measured */
    double speedup;            /* median over rounds of peer / qiao */
    double speedup_pk;         /* median over rounds of peer / packed */
    double pk_gain;            /* median over rounds of qiao / packed */
    double pk_cos_min, pk_maxdiff; /* packed vs unpacked forward */
    double flops;              /* GEMM flops of one forward (all of them) */
    double raw_flops;          /* flops of the linear and conv GEMMs in g[] */
    double work_mib, session_mib, cos_min, api_maxdiff;
    gemm_shape g[MAX_GEMMS];   /* the forward's linear and conv GEMMs */
    int ng;
} bench_case;

/* T_BF16, T_INT8: the packed forward in bf16 and int8 (gemm_lowp.c);
 * T_ORT32, T_ORT8: ONNX Runtime on the peer's encoders exported to ONNX, f32
 * and quantize_dynamic int8 (--ort). */
enum { T_FWD = 0, T_RAW = 1, T_API = 2, T_PEER = 3, T_PACK = 4, T_BF16 = 5, T_INT8 = 6, T_ORT32 = 7, T_ORT8 = 8, NT = 9 };

static void add_gemm(bench_case *c, int64_t M, int64_t N, int64_t K) {
    const double f = 2.0 * (double)M * (double)N * (double)K;
    c->flops += f;
    c->raw_flops += f;
    if (c->ng < MAX_GEMMS) c->g[c->ng++] = (gemm_shape){M, N, K};
}

/* The trunk's GEMMs over B sequences of T tokens: per layer q, k, v, proj,
 * fc, fc2 and the two attention products (all heads: 2 * 2*B*T*T*C); then
 * the projection of the pooled rows to the shared space. */
static void count_trunk(bench_case *c, const nn_trunk_dims *d, int64_t B, int64_t T) {
    const int64_t N = B * T, C = d->C, F = d->F;
    for (int64_t l = 0; l < d->L; l++) {
        for (int i = 0; i < 4; i++) add_gemm(c, N, C, C);
        add_gemm(c, N, F, C);
        add_gemm(c, N, C, F);
        c->flops += 2.0 * 2.0 * (double)B * (double)T * (double)T * (double)C;
    }
    add_gemm(c, B, d->D, C);
}

static void count_flops(bench_case *c, const qmod_config *cfg) {
    const int64_t B = c->B, T = c->batch.T;
    c->flops = c->raw_flops = 0;
    c->ng = 0;
    if (c->mod == QMOD_TEXT) {
        const qe_text_config *t = &cfg->text;
        const int64_t N = B * T, C = t->trunk.C;
        if (t->mix == QE_TEXT_MIX_GATE) {
            for (int64_t i = 0; i < t->n_kernels; i++) {
                const int64_t w = t->char_kernels[i];
                add_gemm(c, N * (t->k - w + 1), t->char_channels, t->char_dim * w); /* im2col */
            }
            add_gemm(c, N, C, t->n_kernels * t->char_channels); /* char_proj */
            add_gemm(c, N, C, 2 * C);                            /* gate */
        }
        count_trunk(c, &t->trunk, B, T);
    } else if (c->mod == QMOD_IMAGE) {
        const qe_image_config *im = &cfg->image;
        add_gemm(c, B * im->tokens, im->trunk.C, im->patch_dim);
        count_trunk(c, &im->trunk, B, im->tokens);
    } else {
        const qe_audio_config *a = &cfg->audio;
        int64_t Ti = T, cin = a->n_mels;
        for (int64_t i = 0; i < a->n_stem; i++) {
            const int64_t k = a->stem_kernels[i];
            Ti = nn_conv1d_out_len(Ti, k, a->stem_strides[i], k / 2);
            add_gemm(c, B * Ti, a->trunk.C, cin * k);
            cin = a->trunk.C;
        }
        count_trunk(c, &a->trunk, B, qe_audio_tokens(a, T));
    }
}

/* ---- the timed functions ---------------------------------------------------------- */

typedef struct run_ctx {
    const qb_exec *ex;
    const qmod_model *m;
    bench_case *c;
    int threads;
    qiao_status st;
} run_ctx;

static void run_forward(void *p) {
    run_ctx *r = p;
    const float *emb = NULL;
    qiao_status st = qmod_forward(r->ex, r->m, &r->c->work, &r->c->batch, &emb);
    if (st != QIAO_OK) r->st = st;
}

/* Single-threaded OpenBLAS; the roofline is this rate times the thread
 * count (perfect scaling). OpenBLAS's own threading was the first choice,
 * but on the shared machine its 2-thread rate swung between 43 and 97
 * GFLOP/s from run to run (its threads wait for each other whenever another
 * job holds a core), below qiao's own rate at times, so it bounded nothing. */
static void run_raw(void *p) {
    run_ctx *r = p;
    const bench_case *c = r->c;
    openblas_set_num_threads(1);
    for (int i = 0; i < c->ng; i++) {
        const gemm_shape *g = &c->g[i];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)g->M, (blasint)g->N, (blasint)g->K, 1.0f, c->ra,
                    (blasint)g->K, c->rw, (blasint)g->K, 0.0f, c->ry, (blasint)g->N);
    }
}

static void run_api(void *p) {
    run_ctx *r = p;
    bench_case *c = r->c;
    const size_t n = (size_t)c->B, len = (size_t)(c->B * r->m->cfg.embed_dim);
    qiao_status st;
    if (c->mod == QMOD_TEXT) st = qiao_embed_texts(c->session, c->items, n, c->api_out, len);
    else if (c->mod == QMOD_IMAGE) st = qiao_embed_images(c->session, c->items, n, c->api_out, len);
    else st = qiao_embed_audios(c->session, c->items, n, c->api_out, len);
    if (st != QIAO_OK) r->st = st;
}

static float *rand_buf(size_t n, uint64_t seed) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) return NULL;
    qc_rng r;
    qc_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) p[i] = 0.1f * qc_rng_normal(&r);
    return p;
}

static qiao_status alloc_raw(bench_case *c) {
    size_t ma = 1, mw = 1, my = 1;
    for (int i = 0; i < c->ng; i++) {
        const gemm_shape *g = &c->g[i];
        if ((size_t)(g->M * g->K) > ma) ma = (size_t)(g->M * g->K);
        if ((size_t)(g->N * g->K) > mw) mw = (size_t)(g->N * g->K);
        if ((size_t)(g->M * g->N) > my) my = (size_t)(g->M * g->N);
    }
    c->ra = rand_buf(ma, 1), c->rw = rand_buf(mw, 2), c->ry = rand_buf(my, 3);
    return c->ra && c->rw && c->ry ? QIAO_OK : qc_error(QIAO_ERR_OUT_OF_MEMORY, "raw sgemm buffers");
}

/* The ONNX Runtime peer runs under ORT_PYTHON (scripts/install-deps.sh
 * --peer makes that virtual environment). */
#define ORT_PYTHON ".venv-peer/bin/python3"

/* ---- inputs ------------------------------------------------------------------------ */

/* The config file with the text section's vocab, char_vocab and k set to
 * the tokenizer's; old[] gets the config's own values. */
static qiao_status load_config(const char *path, const qiao_tokenizer *tok, qmod_config *cfg, int64_t old[3]) {
    FILE *f = fopen(path, "rb");
    if (!f) return qc_error(QIAO_ERR_IO, "%s: cannot open", path);
    char *text = malloc(1 << 20);
    size_t n = text ? fread(text, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (!text) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    text[n] = 0;
    cJSON *root = cJSON_Parse(text);
    free(text);
    cJSON *sec = root ? cJSON_GetObjectItemCaseSensitive(root, "text") : NULL;
    if (!cJSON_IsObject(sec)) {
        cJSON_Delete(root);
        return qc_error(QIAO_ERR_FORMAT, "%s: not a model config with a \"text\" section", path);
    }
    const char *keys[3] = {"vocab", "char_vocab", "k"};
    const double vals[3] = {(double)qiao_tokenizer_vocab_size(tok), (double)qiao_tokenizer_char_vocab_size(tok),
                            (double)qiao_tokenizer_k(tok)};
    for (int i = 0; i < 3; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(sec, keys[i]);
        old[i] = cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
        cJSON_ReplaceItemInObjectCaseSensitive(sec, keys[i], cJSON_CreateNumber(vals[i]));
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json) return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    qiao_status st = qmod_config_from_string(json, path, cfg);
    free(json);
    return st;
}

/* n clips of AUDIO_SECONDS at 16 kHz: the speech clip tiled, clip i
 * starting i * 997 samples into it so no two clips are equal. */
static qiao_status make_clips(qiao_audio **clips, int n) {
    qiao_audio *src = NULL;
    qiao_status st = qiao_audio_decode_file(SPEECH_CLIP, NULL, &src);
    if (st != QIAO_OK) return st;
    const int64_t len = (int64_t)AUDIO_SECONDS * src->sample_rate;
    float *pcm = malloc((size_t)len * sizeof(float));
    if (!pcm) {
        qiao_audio_free(src);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (int i = 0; i < n && st == QIAO_OK; i++) {
        for (int64_t j = 0; j < len; j++) pcm[j] = src->samples[(j + (int64_t)i * 997) % src->n_samples];
        st = qiao_audio_from_pcm(pcm, len, src->sample_rate, 1, NULL, &clips[i]);
    }
    free(pcm);
    qiao_audio_free(src);
    return st;
}

static int g_trim = 1; /* --no-trim clears it */

/* Cuts a text batch to its longest text (in place); returns the old T.
 * qmod_batch_text pads every batch to max_tokens (it passes max_tokens as
 * qiao_tokenize_batch's max_len, which pads to max_len), although the
 * encoder needs only the longest text: what max_len 0 with
 * params.max_tokens set would give. A no-op once the batch comes padded to
 * its longest text. */
static int64_t trim_text(qmod_batch *b, int64_t K) {
    const int64_t T = b->T;
    int64_t Tn = 1;
    for (int64_t i = 0; i < b->B; i++)
        if (b->lengths[i] > Tn) Tn = b->lengths[i];
    if (Tn >= T) return T;
    for (int64_t i = 0; i < b->B; i++) {
        memmove(b->ids + i * Tn, b->ids + i * T, (size_t)Tn * sizeof(int32_t));
        memmove(b->char_ids + i * Tn * K, b->char_ids + i * T * K, (size_t)(Tn * K) * sizeof(int32_t));
        memmove(b->tags + i * Tn, b->tags + i * T, (size_t)Tn);
        memmove(b->mask + i * Tn, b->mask + i * T, (size_t)Tn);
    }
    b->T = Tn;
    return T;
}

static qiao_status prepare(const qmod_model *m, bench_case *c, const qiao_image *const *imgs,
                           const qiao_audio *const *clips) {
    qiao_status st;
    if (c->mod == QMOD_TEXT) {
        c->items = k_captions;
        st = qmod_batch_text(m, k_captions, (size_t)c->B, &c->batch);
        if (st == QIAO_OK) c->padded_T = g_trim ? trim_text(&c->batch, m->cfg.text.k) : c->batch.T;
    } else if (c->mod == QMOD_IMAGE) {
        c->items = imgs;
        st = qmod_batch_images(m, imgs, (size_t)c->B, &c->batch);
    } else {
        c->items = clips;
        st = qmod_batch_audio(m, clips, (size_t)c->B, &c->batch);
    }
    if (st == QIAO_OK) count_flops(c, &m->cfg);
    return st;
}

/* Appends the case's batch to the peer's input entries (names in `names`,
 * 64 bytes each); returns the number appended. */
static size_t case_entries(const qmod_model *m, const bench_case *c, qc_st_entry *e, char (*names)[64]) {
    const qmod_batch *b = &c->batch;
    const char *mod = qmod_modality_name(c->mod);
    size_t n = 0;
#define ENTRY(field, dt, nd, d0, d1, d2, ptr)                                                              \
    do {                                                                                                   \
        snprintf(names[n], 64, "%s.b%lld.%s", mod, (long long)c->B, field);                               \
        e[n] = (qc_st_entry){names[n], dt, nd, {d0, d1, d2}, ptr, false};                                  \
        n++;                                                                                               \
    } while (0)
    if (c->mod == QMOD_TEXT) {
        ENTRY("ids", QIAO_DTYPE_I32, 2, b->B, b->T, 0, b->ids);
        ENTRY("char_ids", QIAO_DTYPE_I32, 3, b->B, b->T, m->cfg.text.k, b->char_ids);
        ENTRY("tags", QIAO_DTYPE_U8, 2, b->B, b->T, 0, b->tags);
        ENTRY("mask", QIAO_DTYPE_U8, 2, b->B, b->T, 0, b->mask);
    } else if (c->mod == QMOD_IMAGE) {
        ENTRY("patches", QIAO_DTYPE_F32, 3, b->B, b->T, m->cfg.image.patch_dim, b->patches);
    } else {
        ENTRY("mel", QIAO_DTYPE_F32, 3, b->B, b->T, m->cfg.audio.n_mels, b->mel);
        ENTRY("mask", QIAO_DTYPE_U8, 2, b->B, b->T, 0, b->mask);
    }
#undef ENTRY
    return n;
}

static qiao_status write_inputs(const qmod_model *m, const bench_case *cs, int nc, const char *path) {
    qc_st_entry e[32];
    char names[32][64];
    size_t ne = 0;
    char cases[512] = "[";
    for (int i = 0; i < nc; i++) {
        ne += case_entries(m, &cs[i], e + ne, names + ne);
        size_t l = strlen(cases);
        snprintf(cases + l, sizeof cases - l, "%s[\"%s\",%lld]", i ? "," : "", qmod_modality_name(cs[i].mod),
                 (long long)cs[i].B);
    }
    strcat(cases, "]");
    qc_st_kv meta[1] = {{"bench.cases", cases}};
    return qc_st_write(path, e, ne, meta, 1);
}

/* The peer's embeddings against qiao's: cos_min per case (NaN if missing). */
static void compare_peer(const qmod_model *m, bench_case *cs, int nc, const char *path) {
    for (int i = 0; i < nc; i++) cs[i].cos_min = NAN;
    qc_st_file *f = NULL;
    if (qc_st_open(path, &f) != QIAO_OK) return;
    const int64_t D = m->cfg.embed_dim;
    float *row = malloc((size_t)D * sizeof(float));
    for (int i = 0; i < nc && row; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s.b%lld.emb", qmod_modality_name(cs[i].mod), (long long)cs[i].B);
        const qc_st_tensor *t = qc_st_find(f, name);
        if (!t || t->dtype != QIAO_DTYPE_F32 || t->numel != cs[i].B * D) continue;
        double mn = 2;
        for (int64_t b = 0; b < cs[i].B; b++) {
            /* tensor data need not be aligned: copy the row out */
            memcpy(row, (const char *)t->data + (size_t)(b * D) * sizeof(float), (size_t)D * sizeof(float));
            double c = qiao_cosine(cs[i].emb + b * D, row, (size_t)D);
            if (c < mn) mn = c;
        }
        cs[i].cos_min = mn;
    }
    free(row);
    qc_st_close(f);
}

static void usage(void) {
    fprintf(stderr, "usage: bench_encoders [--config FILE] [--threads N] [--batch B] [--rounds R] [--no-peer] "
                    "[--no-trim] [--keep] [--profile MODALITY:B]\n"
                    "                      [--peer-wait passive|active|inherit] [--ort]\n");
}

int main(int argc, char **argv) {
    const char *config_path = "models/configs/base.json";
    int threads = 2, rounds = 7, use_peer = 1, keep = 0, use_ort = 0;
    int64_t big = 32;
    const char *profile = NULL; /* "MODALITY:B": only loop that forward for 10 s (for perf record) */
    const char *peer_wait = "passive"; /* the peer's OMP_WAIT_POLICY; see the top of this file */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--no-peer")) use_peer = 0;
        else if (!strcmp(argv[i], "--ort")) use_ort = 1;
        else if (!strcmp(argv[i], "--no-trim")) g_trim = 0;
        else if (!strcmp(argv[i], "--keep")) keep = 1;
        else if (i + 1 < argc && !strcmp(argv[i], "--config")) config_path = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--threads")) threads = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--batch")) big = atoll(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--rounds")) rounds = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--profile")) profile = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--peer-wait") &&
                 (!strcmp(argv[i + 1], "passive") || !strcmp(argv[i + 1], "active") ||
                  !strcmp(argv[i + 1], "inherit")))
            peer_wait = argv[++i];
        else {
            usage();
            return 2;
        }
    }
    if (threads < 1 || rounds < 1 || rounds > BENCH_MAX_ROUNDS || big < 2 || big > (int64_t)N_CAPTIONS) {
        fprintf(stderr, "bench_encoders: need threads >= 1, 1 <= rounds <= %d, 2 <= batch <= %d\n", BENCH_MAX_ROUNDS,
                (int)N_CAPTIONS);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* a dead peer is reported, not fatal */

    /* ---- model ---- */
    qiao_tokenizer *tok = NULL;
    qiao_status st = qiao_tokenizer_load(TOKENIZER, &tok);
    if (st != QIAO_OK) return fail(TOKENIZER, st);
    qmod_config cfg;
    int64_t old[3];
    st = load_config(config_path, tok, &cfg, old);
    qiao_tokenizer_free(tok);
    if (st != QIAO_OK) return fail(config_path, st);
    qmod_model *m = NULL;
    if ((st = qmod_create(&cfg, 1, &m)) != QIAO_OK) return fail("qmod_create", st);
    if ((st = qmod_set_tokenizer(m, TOKENIZER)) != QIAO_OK) return fail(TOKENIZER, st);
    char dir[] = "/tmp/qiao-bench-enc-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("bench_encoders: mkdtemp");
        return 1;
    }
    char model_path[512], in_path[512], peer_path[512];
    snprintf(model_path, sizeof model_path, "%s/model.safetensors", dir);
    snprintf(in_path, sizeof in_path, "%s/inputs.safetensors", dir);
    snprintf(peer_path, sizeof peer_path, "%s/peer.safetensors", dir);
    if ((st = qmod_save(m, model_path, QIAO_DTYPE_F32)) != QIAO_OK) return fail(model_path, st);

    /* ---- inputs ---- */
    qiao_image *dec[N_IMAGES] = {0};
    const qiao_image *imgs[MAX_B];
    for (size_t i = 0; i < N_IMAGES; i++)
        if ((st = qiao_image_decode_file(k_images[i], NULL, &dec[i])) != QIAO_OK) return fail(k_images[i], st);
    for (int64_t i = 0; i < big; i++) imgs[i] = dec[i % N_IMAGES];
    qiao_audio *clips[MAX_B] = {0};
    if ((st = make_clips(clips, (int)big)) != QIAO_OK) return fail(SPEECH_CLIP, st);

    qb_exec ex, ex_pk;
    qb_exec_cpu(&ex, threads);
    qb_exec_cpu(&ex_pk, threads);
    qb_packed_set *packed = NULL;
    if ((st = qmod_pack_weights(m, &packed)) != QIAO_OK) return fail("qmod_pack_weights", st);
    ex_pk.packed = packed;
    /* bf16 and int8 sets, as a session with that precision uses. */
    qb_exec ex_lp[2];
    qb_packed_set *lowp[2] = {NULL, NULL};
    for (int q = 0; q < 2; q++) {
        qb_exec_cpu(&ex_lp[q], threads);
        if ((st = qmod_pack_weights_prec(m, q ? QB_PREC_INT8 : QB_PREC_BF16, &lowp[q])) != QIAO_OK)
            return fail("qmod_pack_weights_prec", st);
        ex_lp[q].packed = lowp[q];
    }
    const int64_t D = cfg.embed_dim;

    if (profile) {
        /* Only qiao's forward of one case, with the packed weights the API
         * uses, in a loop: what perf record sees. */
        bench_case c;
        memset(&c, 0, sizeof c);
        char name[16] = "";
        long long B = 0;
        if (sscanf(profile, "%15[a-z]:%lld", name, &B) != 2 || B < 1 || B > big) {
            usage();
            return 2;
        }
        c.mod = !strcmp(name, "text") ? QMOD_TEXT : !strcmp(name, "image") ? QMOD_IMAGE : QMOD_AUDIO;
        c.B = B;
        if ((st = prepare(m, &c, imgs, (const qiao_audio *const *)clips)) != QIAO_OK ||
            (st = qmod_work_init(&c.work, m, c.mod, c.B, c.batch.T, false)) != QIAO_OK)
            return fail(profile, st);
        run_ctx r = {&ex_pk, m, &c, threads, QIAO_OK};
        int64_t calls = 0;
        double t0 = qc_now();
        while (qc_now() - t0 < 10.0) run_forward(&r), calls++;
        printf("%s: %lld calls of qmod_forward (T = %lld), %.3f ms each\n", profile, (long long)calls,
               (long long)c.batch.T, (qc_now() - t0) / (double)calls * 1e3);
        unlink(model_path);
        rmdir(dir);
        qb_packed_set_free(packed);
        for (int q = 0; q < 2; q++) qb_packed_set_free(lowp[q]);
        return r.st == QIAO_OK ? 0 : fail(profile, r.st);
    }

    const char *wait = getenv("OMP_WAIT_POLICY");
    const char *pw = strcmp(peer_wait, "inherit") ? peer_wait : wait ? wait : "(unset)";
    printf("qiao %s, %d threads, OpenBLAS %s; %ld CPUs online; OMP_WAIT_POLICY=%s (the peer: %s)\n", qiao_version(),
           threads, openblas_get_config(), sysconf(_SC_NPROCESSORS_ONLN), wait ? wait : "(unset)", pw);
    printf("model: %s (%s), random init; parameters: text %lld, image %lld, audio %lld (f32)\n", cfg.name,
           config_path, (long long)qmod_param_count(m, "text."), (long long)qmod_param_count(m, "image."),
           (long long)qmod_param_count(m, "audio."));
    printf("text vocab %lld, char_vocab %lld, k %lld set from %s (config: %lld, %lld, %lld);\n"
           "the piece and character tables are lookups, so their sizes barely change the speed\n",
           (long long)cfg.text.vocab, (long long)cfg.text.char_vocab, (long long)cfg.text.k, TOKENIZER,
           (long long)old[0], (long long)old[1], (long long)old[2]);
    fflush(stdout);

    /* ---- every case's batch, and the peer on them ---- */
    const qmod_modality mods[3] = {QMOD_TEXT, QMOD_IMAGE, QMOD_AUDIO};
    enum { NC = 6 };
    bench_case *cs = calloc(NC, sizeof *cs);
    if (!cs) return fail("cases", QIAO_ERR_OUT_OF_MEMORY);
    for (int i = 0; i < NC; i++) {
        cs[i].mod = mods[i / 2];
        cs[i].B = i % 2 ? big : 1;
        if ((st = prepare(m, &cs[i], imgs, (const qiao_audio *const *)clips)) != QIAO_OK)
            return fail(qmod_modality_name(cs[i].mod), st);
    }
    if ((st = write_inputs(m, cs, NC, in_path)) != QIAO_OK) return fail(in_path, st);
    peer_proc peer;
    memset(&peer, 0, sizeof peer);
    const char *peer_args[] = {PEER_PYTHON, PEER_SCRIPT, model_path, in_path, NULL};
    if (use_peer) peer_start(&peer, "bench_encoders", peer_args, threads, peer_wait, false);
    peer_proc ort[2];
    memset(ort, 0, sizeof ort);
    for (int q = 0; q < 2 && use_ort; q++) {
        const char *ort_args[] = {ORT_PYTHON, PEER_SCRIPT, model_path, in_path, "--engine", q ? "ort-int8" : "ort-f32",
                                  NULL};
        peer_start(&ort[q], "bench_encoders", ort_args, threads, peer_wait, false);
        if (!ort[q].ok) fprintf(stderr, "bench_encoders: the ONNX Runtime peer (%s) did not start\n", q ? "int8" : "f32");
    }
    qiao_model *pm = NULL;
    if ((st = qiao_model_load(model_path, &pm)) != QIAO_OK) return fail(model_path, st);
    qiao_session_params sp = qiao_session_default_params();
    sp.n_threads = threads;
    const double rss_setup = rss_mib();
    double rss_mod[3] = {0, 0, 0}, load_mod[3] = {0, 0, 0};

    /* ---- one modality at a time: set up both cases, then alternate ---- */
    for (int mi = 0; mi < 3; mi++) {
        bench_case *pair = cs + 2 * mi;
        run_ctx rc[2], rp[2], rl[2][2];
        for (int k = 0; k < 2; k++) {
            bench_case *c = &pair[k];
            rc[k] = (run_ctx){&ex, m, c, threads, QIAO_OK};
            rp[k] = (run_ctx){&ex_pk, m, c, threads, QIAO_OK};
            for (int q = 0; q < 2; q++) rl[q][k] = (run_ctx){&ex_lp[q], m, c, threads, QIAO_OK};
            if ((st = qmod_work_init(&c->work, m, c->mod, c->B, c->batch.T, false)) != QIAO_OK ||
                (st = qiao_session_new(pm, &sp, &c->session)) != QIAO_OK || (st = alloc_raw(c)) != QIAO_OK)
                return fail(qmod_modality_name(c->mod), st);
            c->emb = malloc((size_t)(c->B * D) * sizeof(float));
            c->api_out = malloc((size_t)(c->B * D) * sizeof(float));
            c->emb_pk = malloc((size_t)(c->B * D) * sizeof(float));
            if (!c->emb || !c->api_out || !c->emb_pk) return fail("embeddings", QIAO_ERR_OUT_OF_MEMORY);
            const float *emb = NULL;
            if ((st = qmod_forward(&ex, m, &c->work, &c->batch, &emb)) != QIAO_OK) return fail("qmod_forward", st);
            memcpy(c->emb, emb, (size_t)(c->B * D) * sizeof(float));
            if ((st = qmod_forward(&ex_pk, m, &c->work, &c->batch, &emb)) != QIAO_OK)
                return fail("qmod_forward (packed)", st);
            memcpy(c->emb_pk, emb, (size_t)(c->B * D) * sizeof(float));
            for (int q = 0; q < 2; q++) {
                c->emb_lp[q] = malloc((size_t)(c->B * D) * sizeof(float));
                if (!c->emb_lp[q]) return fail("embeddings", QIAO_ERR_OUT_OF_MEMORY);
                if ((st = qmod_forward(&ex_lp[q], m, &c->work, &c->batch, &emb)) != QIAO_OK)
                    return fail("qmod_forward (bf16/int8)", st);
                memcpy(c->emb_lp[q], emb, (size_t)(c->B * D) * sizeof(float));
                c->lp_cos[q] = 1.0;
                for (int64_t b = 0; b < c->B; b++)
                    c->lp_cos[q] = fmin(c->lp_cos[q], qiao_cosine(c->emb_pk + b * D, c->emb_lp[q] + b * D, (size_t)D));
            }
            run_api(&rc[k]);
            if (rc[k].st != QIAO_OK) return fail("public API", rc[k].st);
            /* The API runs the packed forward: compare it with that one. */
            double md = 0, mp = 0;
            for (int64_t j = 0; j < c->B * D; j++) {
                md = fmax(md, fabs((double)c->api_out[j] - c->emb_pk[j]));
                mp = fmax(mp, fabs((double)c->emb_pk[j] - c->emb[j]));
            }
            c->api_maxdiff = md;
            c->pk_maxdiff = mp;
            c->pk_cos_min = 1.0;
            for (int64_t b = 0; b < c->B; b++)
                c->pk_cos_min = fmin(c->pk_cos_min, qiao_cosine(c->emb + b * D, c->emb_pk + b * D, (size_t)D));
            c->work_mib = MIB((c->work.acts.n + c->work.dacts.n) * sizeof(float));
            c->session_mib = MIB(qiao_session_memory(c->session));
            c->reps[T_FWD] = calibrate(run_forward, &rc[k]);
            c->reps[T_PACK] = packed ? calibrate(run_forward, &rp[k]) : 0;
            c->reps[T_BF16] = calibrate(run_forward, &rl[0][k]);
            c->reps[T_INT8] = calibrate(run_forward, &rl[1][k]);
            for (int q = 0; q < 2; q++) {
                char oline[256];
                if (!peer_cmd(&ort[q], oline, sizeof oline, "calib %s %lld", qmod_modality_name(c->mod),
                              (long long)c->B))
                    c->reps[T_ORT32 + q] = atoi(oline + 5);
            }
            c->reps[T_API] = calibrate(run_api, &rc[k]);
            c->reps[T_RAW] = calibrate(run_raw, &rc[k]);
            char line[256];
            if (!peer_cmd(&peer, line, sizeof line, "calib %s %lld", qmod_modality_name(c->mod), (long long)c->B))
                c->reps[T_PEER] = atoi(line + 5);
            pause_blas();
        }
        load_mod[mi] = loadavg();
        for (int r = 0; r < rounds; r++)
            for (int k = 0; k < 2; k++) {
                bench_case *c = &pair[k];
                c->t[T_FWD][r] = loop(run_forward, &rc[k], c->reps[T_FWD]);
                if (packed) c->t[T_PACK][r] = loop(run_forward, &rp[k], c->reps[T_PACK]);
                c->t[T_BF16][r] = loop(run_forward, &rl[0][k], c->reps[T_BF16]);
                c->t[T_INT8][r] = loop(run_forward, &rl[1][k], c->reps[T_INT8]);
                for (int q = 0; q < 2; q++) {
                    char oline[256];
                    if (c->reps[T_ORT32 + q] > 0 &&
                        !peer_cmd(&ort[q], oline, sizeof oline, "time %s %lld %d", qmod_modality_name(c->mod),
                                  (long long)c->B, c->reps[T_ORT32 + q]))
                        c->t[T_ORT32 + q][r] = atof(oline + 2);
                }
                c->t[T_API][r] = loop(run_api, &rc[k], c->reps[T_API]);
                c->t[T_RAW][r] = loop(run_raw, &rc[k], c->reps[T_RAW]);
                char line[256];
                if (c->reps[T_PEER] > 0 && !peer_cmd(&peer, line, sizeof line, "time %s %lld %d",
                                                     qmod_modality_name(c->mod), (long long)c->B, c->reps[T_PEER]))
                    c->t[T_PEER][r] = atof(line + 2);
                pause_blas();
            }
        load_mod[mi] = 0.5 * (load_mod[mi] + loadavg());
        rss_mod[mi] = rss_mib();
        for (int k = 0; k < 2; k++) {
            bench_case *c = &pair[k];
            if (rc[k].st != QIAO_OK) return fail(qmod_modality_name(c->mod), rc[k].st);
            if (rp[k].st != QIAO_OK) return fail(qmod_modality_name(c->mod), rp[k].st);
            for (int q = 0; q < 2; q++)
                if (rl[q][k].st != QIAO_OK) return fail(qmod_modality_name(c->mod), rl[q][k].st);
            for (int j = 0; j < NT; j++)
                c->med[j] = (j == T_PEER && !peer.ok) || (j == T_PACK && !packed) ||
                                    (j >= T_ORT32 && (!ort[j - T_ORT32].ok || c->reps[j] == 0))
                                ? 0
                                : median(c->t[j], rounds);
            /* The speedup pairs the two sides within each round (timed
             * back to back, so under the same load) before the median. */
            double ratio[BENCH_MAX_ROUNDS];
            for (int r = 0; r < rounds; r++) ratio[r] = c->t[T_PEER][r] / c->t[T_FWD][r];
            c->speedup = median(ratio, rounds);
            if (packed) {
                for (int r = 0; r < rounds; r++) ratio[r] = c->t[T_PEER][r] / c->t[T_PACK][r];
                c->speedup_pk = median(ratio, rounds);
                for (int r = 0; r < rounds; r++) ratio[r] = c->t[T_FWD][r] / c->t[T_PACK][r];
                c->pk_gain = median(ratio, rounds);
                for (int q = 0; q < 2; q++) {
                    for (int r = 0; r < rounds; r++) ratio[r] = c->t[T_PACK][r] / c->t[T_BF16 + q][r];
                    c->lp_gain[q] = median(ratio, rounds);
                }
            }
            for (int q = 0; q < 2; q++) {
                for (int r = 0; r < rounds; r++) ratio[r] = c->t[T_ORT32 + q][r] / c->t[T_INT8][r];
                c->i8_vs_ort[q] = c->med[T_ORT32 + q] > 0 ? median(ratio, rounds) : 0;
            }
            qmod_work_free(&c->work);
            qiao_session_free(c->session);
            c->session = NULL;
            free(c->ra), free(c->rw), free(c->ry);
            c->ra = c->rw = c->ry = NULL;
        }
    }
    const double rss_peak = peak_rss_mib();
    char line[256];
    if (!peer_cmd(&peer, line, sizeof line, "emb %s", peer_path)) compare_peer(m, cs, NC, peer_path);
    const int have_peer = peer.ok;
    char peer_version[128];
    snprintf(peer_version, sizeof peer_version, "%s", peer.version);
    const double peer_rss = peer_stop(&peer);
    char ort_version[128] = "";
    snprintf(ort_version, sizeof ort_version, "%s", ort[1].ok ? ort[1].version : ort[0].version);
    const int have_ort = ort[0].ok || ort[1].ok;
    for (int q = 0; q < 2; q++) peer_stop(&ort[q]);

    /* ---- report ---- */
    printf("peer: %s\n", have_peer  ? peer_version
                         : use_peer ? "unavailable (needs /usr/bin/python3 with torch and numpy)"
                                    : "not run (--no-peer)");
    printf("load average during the runs (1 min): text %.1f, image %.1f, audio %.1f\n\n", load_mod[0], load_mod[1],
           load_mod[2]);
    printf("Encoder forward only (prepared batch); ms = median per call over %d alternating rounds;\n"
           "speedup = median over the rounds of peer / qiao; GFLOP/s = the forward's GEMM flops / qiao's time;\n"
           "sgemm GF = %d x the rate of raw single-threaded cblas_sgemm on the forward's own linear and conv\n"
           "GEMMs; roofline = GFLOP/s / sgemm GF\n\n",
           rounds, threads);
    printf("| %-8s | %5s | %6s | %9s | %9s | %7s | %8s | %7s | %8s | %8s | %8s | %9s |\n", "modality", "batch",
           "tokens", "qiao ms", "peer ms", "speedup", "items/s", "GFLOP/s", "sgemm GF", "roofline", "work MiB",
           "cos min");
    printf("|----------|-------|--------|-----------|-----------|---------|----------|---------|----------|----------|"
           "----------|-----------|\n");
    for (int i = 0; i < NC; i++) {
        const bench_case *c = &cs[i];
        const int64_t tokens = c->mod == QMOD_AUDIO ? qe_audio_tokens(&cfg.audio, c->batch.T) : c->batch.T;
        const double gf = c->flops / c->med[T_FWD] * 1e-9, sg = threads * c->raw_flops / c->med[T_RAW] * 1e-9;
        char peer_ms[16] = "-", speed[16] = "-", cosv[16] = "-";
        if (have_peer && c->med[T_PEER] > 0) {
            snprintf(peer_ms, sizeof peer_ms, "%.3f", c->med[T_PEER] * 1e3);
            snprintf(speed, sizeof speed, "%.2fx", c->speedup);
            snprintf(cosv, sizeof cosv, "%.7f", c->cos_min);
        }
        printf("| %-8s | %5lld | %6lld | %9.3f | %9s | %7s | %8.1f | %7.1f | %8.1f | %7.0f%% | %8.1f | %9s |\n",
               qmod_modality_name(c->mod), (long long)c->B, (long long)tokens, c->med[T_FWD] * 1e3, peer_ms, speed,
               (double)c->B / c->med[T_FWD], gf, sg, 100.0 * gf / sg, c->work_mib, cosv);
    }
    {
        const bench_case *t = &cs[1];
        int64_t lo = t->batch.lengths[0], hi = lo, sum = 0;
        for (int64_t i = 0; i < t->B; i++) {
            const int64_t l = t->batch.lengths[i];
            lo = l < lo ? l : lo, hi = l > hi ? l : hi, sum += l;
        }
        printf("\ntokens: per item after padding (text: pieces; image: patches; audio: after the stem, from %lld "
               "mel frames).\n",
               (long long)cs[4].batch.T);
        printf("text: %lld..%lld real tokens per caption (mean %.1f); qmod_batch_text padded each batch to %lld "
               "tokens%s.\n",
               (long long)lo, (long long)hi, (double)sum / (double)t->B, (long long)t->padded_T,
               t->padded_T > t->batch.T ? ", cut here to the longest text (trim_text; --no-trim keeps them)" : "");
    }
    printf("memory: qiao RSS %.0f MiB after setup (parameters %.1f MiB, inputs, the API's model copy); "
           "%.0f / %.0f / %.0f MiB\nwith the text / image / audio cases' workspaces and sessions alive; peak %.0f "
           "MiB. Peer process peak %.0f MiB.\n\n",
           rss_setup, MIB((double)m->arena.n * sizeof(float)), rss_mod[0], rss_mod[1], rss_mod[2], rss_peak,
           peer_rss);

    printf("Public API (qiao_embed_texts / _images / _audios, a session of %d threads per case): adds tokenizing,\n"
           "crop + resize of the decoded photo, or the log-mel of the 10 s clip, to the forward%s\n\n",
           threads, cs[1].padded_T > cs[1].batch.T ? " (text at the library's padding)" : "");
    printf("| %-8s | %5s | %9s | %9s | %9s | %11s | %10s |\n", "modality", "batch", "API ms", "items/s", "extra ms",
           "session MiB", "max |diff|");
    printf("|----------|-------|-----------|-----------|-----------|-------------|------------|\n");
    for (int i = 0; i < NC; i++) {
        const bench_case *c = &cs[i];
        printf("| %-8s | %5lld | %9.3f | %9.1f | %9.3f | %11.1f | %10.3g |\n", qmod_modality_name(c->mod),
               (long long)c->B, c->med[T_API] * 1e3, (double)c->B / c->med[T_API],
               (c->med[T_API] - c->med[T_FWD]) * 1e3, c->session_mib, c->api_maxdiff);
    }
    printf("\nextra ms = API ms - qiao ms (the forward above); max |diff| = API embeddings vs the packed forward's on\n"
           "the prepared batch (0 when the padding is the same; the API packs its weights when the CPU has AVX-512F).\n");

    if (packed) {
        printf("\nPacked weights (qmod_pack_weights: %.1f MiB, packed once; the public API's forward): the same\n"
               "forward as \"qiao ms\" above, timed in the same rounds; gain = median over rounds of qiao / packed,\n"
               "speedup = of peer / packed; max |diff| and cos min: packed vs unpacked embeddings\n\n",
               MIB(qb_packed_set_bytes(packed)));
        printf("| %-8s | %5s | %9s | %9s | %9s | %6s | %7s | %9s | %9s |\n", "modality", "batch", "qiao ms",
               "packed ms", "peer ms", "gain", "speedup", "max |diff|", "cos min");
        printf("|----------|-------|-----------|-----------|-----------|--------|---------|-----------|-----------|\n");
        for (int i = 0; i < NC; i++) {
            const bench_case *c = &cs[i];
            char peer_ms[16] = "-", speed[16] = "-";
            if (have_peer && c->med[T_PEER] > 0) {
                snprintf(peer_ms, sizeof peer_ms, "%.3f", c->med[T_PEER] * 1e3);
                snprintf(speed, sizeof speed, "%.2fx", c->speedup_pk);
            }
            printf("| %-8s | %5lld | %9.3f | %9.3f | %9s | %5.2fx | %7s | %9.3g | %9.7f |\n", qmod_modality_name(c->mod),
                   (long long)c->B, c->med[T_FWD] * 1e3, c->med[T_PACK] * 1e3, peer_ms, c->pk_gain, speed,
                   c->pk_maxdiff, c->pk_cos_min);
        }
    } else {
        printf("\nPacked weights: not timed (no AVX-512F on this CPU; the API uses OpenBLAS as above).\n");
    }

    printf("\nPrecision (qiao_session_params.precision; sdk/backend/cpu/gemm_lowp.c, paths: bf16 %s, int8 %s): the\n"
           "packed forward in f32, bf16 and int8, timed in the same rounds; gain = median over rounds of f32 packed\n"
           "/ bf16 or int8; cos = min cosine of a row to the f32 packed row. ORT: %s, %d intra-op threads,\n"
           "the peer's encoders exported to ONNX, f32 and quantize_dynamic int8; vs ORT = median of ORT / qiao int8\n\n",
           qb_cpu_isa_name(qb_cpu_isa_selected(QB_PREC_BF16)), qb_cpu_isa_name(qb_cpu_isa_selected(QB_PREC_INT8)),
           have_ort ? ort_version : use_ort ? "unavailable (.venv-peer: scripts/install-deps.sh --peer)" : "not run (--ort)",
           threads);
    printf("| %-8s | %5s | %8s | %8s | %8s | %6s | %6s | %9s | %9s | %8s | %8s | %9s | %9s |\n", "modality", "batch",
           "f32 ms", "bf16 ms", "int8 ms", "bf16 x", "int8 x", "bf16 cos", "int8 cos", "ORT f32", "ORT int8",
           "vs ORT32", "vs ORT8");
    printf("|----------|-------|----------|----------|----------|--------|--------|-----------|-----------|----------|"
           "----------|-----------|-----------|\n");
    for (int i = 0; i < NC; i++) {
        const bench_case *c = &cs[i];
        char o32[16] = "-", o8[16] = "-", v32[16] = "-", v8[16] = "-";
        if (c->med[T_ORT32] > 0) {
            snprintf(o32, sizeof o32, "%.3f", c->med[T_ORT32] * 1e3);
            snprintf(v32, sizeof v32, "%.2fx", c->i8_vs_ort[0]);
        }
        if (c->med[T_ORT8] > 0) {
            snprintf(o8, sizeof o8, "%.3f", c->med[T_ORT8] * 1e3);
            snprintf(v8, sizeof v8, "%.2fx", c->i8_vs_ort[1]);
        }
        printf("| %-8s | %5lld | %8.3f | %8.3f | %8.3f | %5.2fx | %5.2fx | %9.6f | %9.6f | %8s | %8s | %9s | %9s |\n",
               qmod_modality_name(c->mod), (long long)c->B, c->med[T_PACK] * 1e3, c->med[T_BF16] * 1e3,
               c->med[T_INT8] * 1e3, c->lp_gain[0], c->lp_gain[1], c->lp_cos[0], c->lp_cos[1], o32, o8, v32, v8);
    }

    qiao_model_free(pm);
    for (int q = 0; q < 2; q++) qb_packed_set_free(lowp[q]);
    qb_packed_set_free(packed);
    for (int i = 0; i < NC; i++) {
        qmod_batch_free(&cs[i].batch);
        free(cs[i].emb);
        free(cs[i].api_out);
        free(cs[i].emb_pk);
        free(cs[i].emb_lp[0]), free(cs[i].emb_lp[1]);
    }
    free(cs);
    for (int64_t i = 0; i < big; i++) qiao_audio_free(clips[i]);
    for (size_t i = 0; i < N_IMAGES; i++) qiao_image_free(dec[i]);
    if (!keep) {
        unlink(model_path), unlink(in_path), unlink(peer_path);
        rmdir(dir);
    } else {
        printf("kept %s\n", dir);
    }
    qmod_free(m);
    qmod_config_free(&cfg);
    return 0;
}
