/* bench_caption: speed of caption generation at batch 1 (issue 16 §7),
 * qiao beside the PyTorch peer of the decoder (bench/peer/decoder_peer.py)
 * running the same KV-cached loop on the same weights and the same image
 * context, in the same run; and what beam search (4 beams) costs beside
 * greedy.
 *
 *   build/bin/bench_caption [--model /tmp/cap/run1/cap.safetensors] [--data /tmp/vqa/shapes/val] [--threads 2]
 *                           [--tokens 48] [--rounds 7] [--lang zh|en] [--no-peer]
 *                           [--peer-wait passive|active|inherit]
 *
 * Run from the repository root (it starts bench/peer/decoder_peer.py). The
 * model is a caption model (a "decoder" section; qiao train caption writes
 * one); speed does not depend on how well it is trained. The picture is the
 * first scene of DATA/manifest.jsonl (a shapes split), decoded once.
 *
 * A tokens/s comparison needs both sides to write the same number of tokens
 * from the same context, so the decode loops ignore EOS and run exactly
 * --tokens steps (N): the first step feeds the language token, each later
 * one the previous step's argmax over the tokenizer's pieces (what qiao's
 * search sees; the lowest id on ties, as torch.argmax). The context is the
 * image tower's tokens of the picture as qiao computes them, handed to the
 * peer in a temporary .safetensors; the decoder weights are the model
 * file's own (bf16 in a trained model, widened to float32 on both sides).
 *
 * What is timed (one call each):
 *   - "decode, greedy": qf_decoder_cache_init, qf_decoder_cache_start (the
 *     context's projection and each block's context keys and values) and N
 *     qf_decoder_step calls of one row with the argmax between them, then
 *     qf_decoder_cache_free; on the session's execution context (packed
 *     weights where the CPU has AVX-512F);
 *   - "peer": decoder_peer.py's loop of the same shape (Decoder.start, N
 *     Decoder.step calls, the argmax; its cache is allocated in start as
 *     ours is), float32 under torch.inference_mode() with
 *     torch.set_num_threads(--threads), in a child process that times
 *     itself when asked, so both sides see the same load;
 *   - "decode, beam-shaped": the same loops on 4 copies of the context, each
 *     step after the first reordering the cache rows (parents 0 0 1 2: one
 *     beam forks, one falls off) and row b feeding row parents[b]'s argmax:
 *     the decoder's work in a 4-beam search without the search's
 *     bookkeeping, qiao and the peer (Decoder.reorder);
 *   - "API greedy", "API beam 4": qiao_caption_image on a session of
 *     --threads threads from the decoded picture, max_len N: crop and
 *     resize, the image tower, the cache, the search (models/generate.h)
 *     with its softmax and top-k, the pieces' text. These stop at EOS, so
 *     their tokens/s counts what they wrote (the pieces and the end);
 *   - "image context" (qiao): the picture to the decoder's context alone
 *     (qmod_batch_images, the image tower, qmod_tokens), as qmod_caption
 *     does it: the part of an API call that is not decoding.
 * Each round times each once (a loop lasting >= 50 ms, calibrated after
 * warm-up calls), qiao and peer in alternation with a pause for OpenBLAS's
 * spinning threads after the peer's; a figure is the median over the rounds,
 * a speedup the median of the per-round ratios PyTorch / qiao, and "x
 * greedy" the median of the per-round ratios beam / greedy.
 *
 * Before timing: the peer's greedy tokens against qiao's, the logits of
 * each step with both fed qiao's tokens (max abs difference; a gap beyond
 * 1e-3 of the logits' scale fails the run after the table), the
 * beam-shaped loops' tokens, and the API's greedy caption against the
 * decode loop's tokens up to its first EOS.
 *
 * The peer's environment: OMP_NUM_THREADS and OPENBLAS_NUM_THREADS =
 * --threads, OMP_WAIT_POLICY=passive unless --peer-wait says otherwise
 * (Debian's torch spins its OpenMP team against the OpenBLAS threads it
 * calls under the default policy; docs/benchmarks.md "Packed weights on an
 * idle machine"), and OPENBLAS_CORETYPE = the kernel set qiao's OpenBLAS
 * runs (bench_util.h). */
#define _POSIX_C_SOURCE 200809L

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "backend/cpu/cpu.h"
#include "core/safetensors.h"
#include "models/captioning/captioning.h"

#include "bench_util.h"

#define PEER_PYTHON "/usr/bin/python3"
#define PEER_SCRIPT "bench/peer/decoder_peer.py"
#define BEAM 4
/* The beam-shaped loop's reorder at every step after the first. */
static const int64_t k_parents[BEAM] = {0, 0, 1, 2};

static int fail(const char *what, qiao_status st) {
    fprintf(stderr, "bench_caption: %s: %s: %s\n", what, qiao_status_str(st), qiao_last_error());
    return 1;
}

/* ---- the loops ------------------------------------------------------------------- */

/* One picture to the decoder's context (qmod_caption's first half). */
typedef struct context_run {
    const qb_exec *ex;
    const qmod_model *m;
    const qiao_image *img;
    float *y; /* (Ty, ctx_width) when not NULL: the tokens are copied here */
    int64_t Ty;
    qiao_status st;
} context_run;

static void run_context(void *p) {
    context_run *c = p;
    qmod_batch b;
    qmod_work w;
    memset(&b, 0, sizeof b), memset(&w, 0, sizeof w);
    const float *emb;
    qmod_token_seq seq;
    qiao_status st = qmod_batch_images(c->m, &c->img, 1, &b);
    if (st == QIAO_OK) st = qmod_work_init(&w, c->m, QMOD_IMAGE, 1, 0, false);
    if (st == QIAO_OK) st = qmod_forward(c->ex, c->m, &w, &b, &emb);
    if (st == QIAO_OK) st = qmod_tokens(c->m, &w, &b, &seq);
    if (st == QIAO_OK) {
        c->Ty = seq.T;
        if (c->y) memcpy(c->y, seq.x, (size_t)(seq.T * seq.C) * sizeof(float));
    }
    qmod_work_free(&w);
    qmod_batch_free(&b);
    if (st != QIAO_OK) c->st = st;
}

/* The fixed-length decode loop (the file's comment): `rows` copies of the
 * context, N steps. */
typedef struct decode_run {
    const qb_exec *ex;
    const qmod_model *m;
    const float *y; /* (rows, Ty, ctx_width) */
    int64_t rows, Ty, n;
    int32_t bos, pieces;
    int32_t *ids;  /* NULL, or (n, rows): the token step t chose for row b at [t * rows + b] */
    float *logits; /* NULL, or (n, V): row 0's logits at each step */
    qiao_status st;
} decode_run;

static int32_t argmax(const float *x, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static void run_decode(void *p) {
    decode_run *d = p;
    const qf_decoder_config *dc = &d->m->cfg.decoder;
    const int64_t R = d->rows, V = dc->vocab;
    qf_decoder_cache cache;
    int32_t feed[BEAM], next[BEAM];
    qiao_status st = qf_decoder_cache_init(&cache, dc, R, d->n, d->Ty);
    if (st == QIAO_OK) qf_decoder_cache_start(d->ex, &cache, &d->m->p.decoder, d->y, NULL, dc);
    for (int64_t r = 0; r < R; r++) feed[r] = d->bos;
    for (int64_t t = 0; t < d->n && st == QIAO_OK; t++) {
        const float *lg;
        st = qf_decoder_step(d->ex, &cache, &d->m->p.decoder, feed, t > 0 && R > 1 ? k_parents : NULL, dc, &lg);
        if (st != QIAO_OK) break;
        for (int64_t r = 0; r < R; r++) next[r] = argmax(lg + r * V, d->pieces);
        /* row b continues row parents[b] at the next step, with that row's token */
        for (int64_t r = 0; r < R; r++) feed[r] = R > 1 ? next[k_parents[r]] : next[r];
        if (d->ids) memcpy(d->ids + t * R, R > 1 ? feed : next, (size_t)R * sizeof(int32_t));
        if (d->logits) memcpy(d->logits + t * V, lg, (size_t)V * sizeof(float));
    }
    qf_decoder_cache_free(&cache);
    if (st != QIAO_OK) d->st = st;
}

/* qiao_caption_image end to end; the search's steps are counted through the
 * cancel callback, which it polls once before each step. */
typedef struct api_run {
    qiao_session *s;
    const qiao_image *img;
    qiao_caption_params cp;
    int steps;
    size_t tokens; /* the pieces and the end, as written */
    qiao_caption_result first;
    qiao_status st;
} api_run;

static int count_step(void *user) {
    ((api_run *)user)->steps++;
    return 0;
}

static void run_api(void *p) {
    api_run *a = p;
    qiao_caption_result r;
    a->steps = 0;
    a->cp.cancel = count_step, a->cp.cancel_user_data = a;
    qiao_status st = qiao_caption_image(a->s, a->img, &a->cp, &r);
    if (st != QIAO_OK) {
        a->st = st;
        return;
    }
    a->tokens = r.n_pieces + (size_t)r.ended;
    if (!a->first.text)
        a->first = r; /* kept for the report */
    else
        qiao_caption_result_free(&r);
}

/* ---- the peer's inputs and answers ------------------------------------------------- */

/* "ctx" (1, Ty, ctx_width) and "ids" (n) with what the peer needs to build
 * and run the same decoder (decoder_peer.py's BENCH_USAGE). */
static qiao_status write_inputs(const char *path, const qmod_model *m, const float *y, int64_t Ty, const int32_t *ids,
                                int64_t n, int32_t bos) {
    const qf_decoder_config *dc = &m->cfg.decoder;
    char dec[512], sbos[24], spieces[24], stokens[24], sparents[64] = "[";
    snprintf(dec, sizeof dec,
             "{\"vocab\":%lld,\"width\":%lld,\"layers\":%lld,\"heads\":%lld,\"mlp\":%lld,\"max_len\":%lld,"
             "\"ctx_width\":%lld,\"tied\":%s,\"ctx_positions\":%lld}",
             (long long)dc->vocab, (long long)dc->width, (long long)dc->layers, (long long)dc->heads,
             (long long)dc->mlp, (long long)dc->max_len, (long long)dc->ctx_width, dc->tied ? "true" : "false",
             (long long)dc->ctx_positions);
    snprintf(sbos, sizeof sbos, "%d", bos);
    snprintf(spieces, sizeof spieces, "%lld", (long long)m->cfg.text.vocab);
    snprintf(stokens, sizeof stokens, "%lld", (long long)n);
    for (int r = 0; r < BEAM; r++) {
        size_t l = strlen(sparents);
        snprintf(sparents + l, sizeof sparents - l, "%s%lld", r ? "," : "", (long long)k_parents[r]);
    }
    strcat(sparents, "]");
    const qc_st_entry e[2] = {{"ctx", QIAO_DTYPE_F32, 3, {1, Ty, dc->ctx_width}, y, false},
                              {"ids", QIAO_DTYPE_I32, 1, {n}, ids, false}};
    const qc_st_kv meta[5] = {{"bench.decoder", dec},
                              {"bench.bos", sbos},
                              {"bench.pieces", spieces},
                              {"bench.tokens", stokens},
                              {"bench.parents", sparents}};
    return qc_st_write(path, e, 2, meta, 5);
}

/* Tensor `name` of f as `count` 4-byte values of `dtype`, read in place,
 * or NULL when it is missing, of another type or size, or misaligned (the
 * peer writes only 4-byte tensors after a header padded to 8 bytes, so
 * each is aligned). */
static const void *peer_tensor(const qc_st_file *f, const char *name, qiao_dtype dtype, int64_t count) {
    const qc_st_tensor *t = qc_st_find(f, name);
    return t && t->dtype == dtype && t->numel == count && (uintptr_t)t->data % 4 == 0 ? t->data : NULL;
}

/* Agreement with the peer, before timing. */
typedef struct agreement {
    int have;
    int64_t greedy_same, first_diff; /* greedy tokens alike; the first step that differs (-1: none) */
    int32_t qiao_tok, peer_tok;      /* at first_diff */
    double margin;                   /* qiao's logit of its token minus that of the peer's, at first_diff */
    double d_first, d_all, scale;    /* max |d logits| at step 0, over all steps; max |logit| */
    int64_t argmax_same;             /* steps where the peer's argmax over the pieces is qiao's token */
    int64_t beam_same;               /* beam-shaped tokens alike, of BEAM * n */
} agreement;

/* The peer's answers in `path` against qiao's loops: g_ids (n) and g_logits
 * (n, V) of the greedy one, b_ids (n, BEAM) of the beam-shaped one. */
static void compare_peer(const char *path, int64_t n, int64_t V, int32_t pieces, const int32_t *g_ids,
                         const float *g_logits, const int32_t *b_ids, agreement *a) {
    memset(a, 0, sizeof *a);
    a->first_diff = -1;
    qc_st_file *f = NULL;
    if (qc_st_open(path, &f) != QIAO_OK) return;
    const int32_t *pg = peer_tensor(f, "greedy.ids", QIAO_DTYPE_I32, n);
    const int32_t *pb = peer_tensor(f, "beam.ids", QIAO_DTYPE_I32, BEAM * n);
    const float *pl = peer_tensor(f, "forced.logits", QIAO_DTYPE_F32, n * V);
    a->have = pg && pb && pl;
    for (int64_t t = 0; a->have && t < n; t++) {
        const float *q = g_logits + t * V, *pt = pl + t * V;
        if (pg[t] == g_ids[t])
            a->greedy_same++;
        else if (a->first_diff < 0)
            a->first_diff = t, a->qiao_tok = g_ids[t], a->peer_tok = pg[t], a->margin = q[g_ids[t]] - q[pg[t]];
        double d = 0;
        for (int64_t v = 0; v < V; v++) {
            d = fmax(d, fabs((double)pt[v] - q[v]));
            a->scale = fmax(a->scale, fabs((double)q[v]));
        }
        if (t == 0) a->d_first = d;
        a->d_all = fmax(a->d_all, d);
        a->argmax_same += argmax(pt, pieces) == g_ids[t];
    }
    /* the peer writes (BEAM, n), qiao (n, BEAM) */
    for (int64_t r = 0; a->have && r < BEAM; r++)
        for (int64_t t = 0; t < n; t++) a->beam_same += pb[r * n + t] == b_ids[t * BEAM + r];
    qc_st_close(f);
}

/* ---- the rows of the table --------------------------------------------------------- */

enum { R_GREEDY, R_BEAM, R_API, R_API_BEAM, R_CONTEXT, NR };

typedef struct row {
    const char *what;
    int rows;
    double tokens;       /* per call */
    int reps, peer_reps; /* calls per timed loop; 0: not timed */
    double t[BENCH_MAX_ROUNDS], tp[BENCH_MAX_ROUNDS];
    double med, med_peer; /* seconds per call */
    double speedup, xgreedy;
} row;

static void usage(void) {
    fprintf(stderr, "usage: bench_caption [--model FILE] [--data DIR] [--threads N] [--tokens N] [--rounds R]\n"
                    "                     [--lang zh|en] [--no-peer] [--peer-wait passive|active|inherit]\n");
}

/* The first scene's picture of DIR/manifest.jsonl; its path into `path`. */
static qiao_status load_picture(const char *dir, char *path, size_t n, qiao_image **img) {
    snprintf(path, n, "%s/manifest.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f) return qc_error(QIAO_ERR_IO, "%s: cannot open (a shapes split: qiao dataset shapes)", path);
    size_t cap = 1 << 20;
    char *line = malloc(cap);
    qiao_status st = line ? QIAO_OK : qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == QIAO_OK && !fgets(line, (int)cap, f)) st = qc_error(QIAO_ERR_FORMAT, "%s: empty", path);
    fclose(f);
    cJSON *root = st == QIAO_OK ? cJSON_Parse(line) : NULL;
    const cJSON *image = cJSON_GetObjectItemCaseSensitive(root, "image");
    if (st == QIAO_OK && !cJSON_IsString(image))
        st = qc_error(QIAO_ERR_FORMAT, "%s: the first scene names no image", path);
    if (st == QIAO_OK) {
        snprintf(path, n, "%s/%s", dir, image->valuestring);
        st = qiao_image_decode_file(path, NULL, img);
    }
    cJSON_Delete(root);
    free(line);
    return st;
}

int main(int argc, char **argv) {
    const char *model_path = "/tmp/cap/run1/cap.safetensors", *data = "/tmp/vqa/shapes/val";
    const char *peer_wait = "passive", *lang = "zh";
    int threads = 2, rounds = 7, use_peer = 1;
    int64_t n = 48;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--no-peer"))
            use_peer = 0;
        else if (i + 1 < argc && !strcmp(argv[i], "--model"))
            model_path = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--data"))
            data = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--threads"))
            threads = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--tokens"))
            n = atoll(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--rounds"))
            rounds = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--lang") &&
                 (!strcmp(argv[i + 1], "zh") || !strcmp(argv[i + 1], "en")))
            lang = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--peer-wait") &&
                 (!strcmp(argv[i + 1], "passive") || !strcmp(argv[i + 1], "active") || !strcmp(argv[i + 1], "inherit")))
            peer_wait = argv[++i];
        else {
            usage();
            return 2;
        }
    }
    if (threads < 1 || rounds < 1 || rounds > BENCH_MAX_ROUNDS || n < 1) {
        fprintf(stderr, "bench_caption: need threads >= 1, 1 <= rounds <= %d, tokens >= 1\n", BENCH_MAX_ROUNDS);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    qiao_model *pm = NULL;
    qiao_status st = qiao_model_load(model_path, &pm);
    if (st != QIAO_OK) return fail(model_path, st);
    if (!qiao_model_can_caption(pm)) {
        fprintf(stderr, "bench_caption: %s writes no captions (no decoder or no tokenizer)\n", model_path);
        return 1;
    }
    const qmod_model *m = pm->m;
    const qf_decoder_config *dc = &m->cfg.decoder;
    if (n > dc->max_len) {
        fprintf(stderr, "bench_caption: --tokens %lld is beyond the decoder's %lld positions\n", (long long)n,
                (long long)dc->max_len);
        return 2;
    }
    char pic_path[1024];
    qiao_image *img = NULL;
    if ((st = load_picture(data, pic_path, sizeof pic_path, &img)) != QIAO_OK) return fail(data, st);
    qb_exec ex;
    qb_exec_cpu(&ex, threads); /* as a session's (embed_api.c) */
    ex.packed = pm->packed;
    qiao_session_params sp = qiao_session_default_params();
    sp.n_threads = threads;
    qiao_session *session = NULL;
    if ((st = qiao_session_new(pm, &sp, &session)) != QIAO_OK) return fail("session", st);

    /* the context, once, for the decode loops and the peer */
    context_run ctx = {&ex, m, img, NULL, 0, QIAO_OK};
    run_context(&ctx);
    if (ctx.st != QIAO_OK) return fail("image context", ctx.st);
    const int64_t Ty = ctx.Ty, per = Ty * dc->ctx_width, V = dc->vocab;
    float *y = malloc((size_t)(BEAM * per) * sizeof(float));
    int32_t *g_ids = malloc((size_t)n * sizeof(int32_t)), *b_ids = malloc((size_t)(BEAM * n) * sizeof(int32_t));
    float *g_logits = malloc((size_t)(n * V) * sizeof(float));
    if (!y || !g_ids || !b_ids || !g_logits) return fail("buffers", QIAO_ERR_OUT_OF_MEMORY);
    ctx.y = y;
    run_context(&ctx);
    for (int r = 1; r < BEAM; r++) memcpy(y + r * per, y, (size_t)per * sizeof(float));
    ctx.y = NULL;

    const int32_t bos = qmod_dec_bos(&m->cfg, strcmp(lang, "zh") ? QMOD_LANG_EN : QMOD_LANG_ZH);
    const int32_t pieces = (int32_t)m->cfg.text.vocab;
    decode_run greedy = {&ex, m, y, 1, Ty, n, bos, pieces, g_ids, g_logits, QIAO_OK};
    decode_run beam = {&ex, m, y, BEAM, Ty, n, bos, pieces, b_ids, NULL, QIAO_OK};
    run_decode(&greedy), run_decode(&beam);
    if (greedy.st != QIAO_OK || beam.st != QIAO_OK) return fail("decode", greedy.st ? greedy.st : beam.st);
    greedy.ids = NULL, greedy.logits = NULL, beam.ids = NULL; /* the timed calls write nothing */

    api_run api = {session, img, qiao_caption_default_params(), 0, 0, {0}, QIAO_OK};
    api.cp.lang = lang;
    api.cp.max_len = (int)n;
    api_run api_beam = api;
    api_beam.cp.strategy = QIAO_CAPTION_BEAM;
    api_beam.cp.beam_size = BEAM;
    run_api(&api), run_api(&api_beam);
    if (api.st != QIAO_OK || api_beam.st != QIAO_OK) return fail("qiao_caption_image", api.st ? api.st : api_beam.st);
    /* greedy through the API is the decode loop up to its first EOS */
    int64_t upto = 0;
    while (upto < n && g_ids[upto] != qmod_dec_eos(&m->cfg)) upto++;
    bool api_same = api.first.n_pieces == (size_t)upto && api.first.ended == (upto < n);
    for (size_t i = 0; api_same && i < api.first.n_pieces; i++) api_same = api.first.pieces[i] == g_ids[i];

    char cpu[256];
    cpu_model_name(cpu, sizeof cpu);
    const char *wait = getenv("OMP_WAIT_POLICY");
    const char *pw = strcmp(peer_wait, "inherit") ? peer_wait : wait ? wait : "(unset)";
    printf("qiao %s, %d threads, OpenBLAS %s (core %s)\nCPU: %s, %ld online; OMP_WAIT_POLICY=%s (the peer: %s)\n",
           qiao_version(), threads, openblas_get_config(), openblas_get_corename(), cpu, sysconf(_SC_NPROCESSORS_ONLN),
           wait ? wait : "(unset)", pw);
    printf("model: %s (%s), packed weights: %s; decoder width %lld, %lld layers, %lld heads, MLP %lld, vocabulary "
           "%lld (%d pieces + %d language tokens), %lld positions, %s output\n",
           m->cfg.name, model_path, pm->packed ? "yes" : "no (no AVX-512F)", (long long)dc->width,
           (long long)dc->layers, (long long)dc->heads, (long long)dc->mlp, (long long)V, pieces, QMOD_DEC_SPECIALS,
           (long long)dc->max_len, dc->tied ? "tied" : "untied");
    printf("picture: %s (%lld x %lld); context %lld tokens of width %lld; language %s; decode loops of %lld steps, "
           "EOS ignored\n",
           pic_path, (long long)qiao_image_width(img), (long long)qiao_image_height(img), (long long)Ty,
           (long long)dc->ctx_width, lang, (long long)n);
    printf("API greedy: \"%s\" (%zu pieces%s, %d steps)\nAPI beam %d: \"%s\" (%zu pieces%s, %d steps)\n",
           api.first.text, api.first.n_pieces, api.first.ended ? " and the end" : ", cut at max_len", api.steps, BEAM,
           api_beam.first.text, api_beam.first.n_pieces, api_beam.first.ended ? " and the end" : ", cut at max_len",
           api_beam.steps);
    fflush(stdout);

    /* ---- the peer ---- */
    char dir[] = "/tmp/qiao-bench-caption-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("bench_caption: mkdtemp");
        return 1;
    }
    char in_path[512], out_path[512];
    snprintf(in_path, sizeof in_path, "%s/inputs.safetensors", dir);
    snprintf(out_path, sizeof out_path, "%s/peer.safetensors", dir);
    if ((st = write_inputs(in_path, m, y, Ty, g_ids, n, bos)) != QIAO_OK) return fail(in_path, st);
    peer_proc peer;
    memset(&peer, 0, sizeof peer);
    if (use_peer) {
        const char *args[] = {PEER_PYTHON, PEER_SCRIPT, model_path, in_path, NULL};
        peer_start(&peer, "bench_caption", args, threads, peer_wait, true);
        if (!peer.ok) fprintf(stderr, "bench_caption: the peer did not start\n");
    }
    char line[256];
    agreement ag;
    memset(&ag, 0, sizeof ag);
    if (peer.ok && !peer_cmd(&peer, line, sizeof line, "out %s", out_path))
        compare_peer(out_path, n, V, pieces, g_ids, g_logits, b_ids, &ag);
    const bool logits_ok = !ag.have || ag.d_all <= 1e-3 * fmax(1.0, ag.scale);
    printf("\nagreement before timing:\n");
    if (ag.have) {
        printf("  greedy tokens, the peer's loop against qiao's: %lld of %lld the same", (long long)ag.greedy_same,
               (long long)n);
        if (ag.first_diff >= 0)
            printf(" (first difference at step %lld: qiao %d, peer %d; qiao's logits %.3g apart there)",
                   (long long)ag.first_diff, ag.qiao_tok, ag.peer_tok, ag.margin);
        printf(
            "\n  logits, both fed qiao's tokens: max |d| %.3g at the first step, %.3g over all %lld steps (logits up "
            "to %.3g)%s; the peer's argmax is qiao's token at %lld of %lld steps\n",
            ag.d_first, ag.d_all, (long long)n, ag.scale, logits_ok ? "" : " MISMATCH", (long long)ag.argmax_same,
            (long long)n);
        printf("  beam-shaped loop (%d rows), tokens: %lld of %lld the same\n", BEAM, (long long)ag.beam_same,
               (long long)(BEAM * n));
    } else {
        printf("  the peer: %s\n", use_peer ? "no answer (needs /usr/bin/python3 with torch and numpy)" : "not run");
    }
    printf("  the API's greedy caption against the decode loop's tokens up to its first EOS (%lld): %s\n",
           (long long)upto, api_same ? "the same" : "DIFFERENT");
    fflush(stdout);

    /* ---- timing ---- */
    row rw[NR];
    memset(rw, 0, sizeof rw);
    const char *peer_loop[NR] = {"greedy", "beam", NULL, NULL, NULL};
    rw[R_GREEDY] = (row){.what = "decode, greedy", .rows = 1, .tokens = (double)n};
    rw[R_BEAM] = (row){.what = "decode, beam-shaped", .rows = BEAM, .tokens = (double)n};
    rw[R_API] = (row){.what = "API greedy", .rows = 1, .tokens = (double)api.tokens};
    rw[R_API_BEAM] = (row){.what = "API beam 4", .rows = BEAM, .tokens = (double)api_beam.tokens};
    rw[R_CONTEXT] = (row){.what = "image context", .rows = 1, .tokens = 0};
    bench_fn fns[NR] = {run_decode, run_decode, run_api, run_api, run_context};
    void *args[NR] = {&greedy, &beam, &api, &api_beam, &ctx};
    const double load0 = loadavg();
    for (int i = 0; i < NR; i++) {
        rw[i].reps = calibrate(fns[i], args[i]);
        if (peer_loop[i] && !peer_cmd(&peer, line, sizeof line, "calib %s", peer_loop[i]))
            rw[i].peer_reps = atoi(line + 5);
        pause_blas();
    }
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < NR; i++) {
            rw[i].t[r] = loop(fns[i], args[i], rw[i].reps);
            if (rw[i].peer_reps > 0 &&
                !peer_cmd(&peer, line, sizeof line, "time %s %d", peer_loop[i], rw[i].peer_reps)) {
                rw[i].tp[r] = atof(line + 2);
                pause_blas();
            }
        }
    const double load1 = loadavg();
    const qiao_status sts[NR] = {greedy.st, beam.st, api.st, api_beam.st, ctx.st};
    for (int i = 0; i < NR; i++)
        if (sts[i] != QIAO_OK) return fail(rw[i].what, sts[i]);
    for (int i = 0; i < NR; i++) {
        row *w = &rw[i];
        double ratio[BENCH_MAX_ROUNDS];
        w->med = median(w->t, rounds);
        if (w->peer_reps > 0 && peer.ok) {
            w->med_peer = median(w->tp, rounds);
            for (int r = 0; r < rounds; r++) ratio[r] = w->tp[r] / w->t[r];
            w->speedup = median(ratio, rounds);
        }
        const row *g = i == R_BEAM ? &rw[R_GREEDY] : i == R_API_BEAM ? &rw[R_API] : NULL;
        if (g) {
            for (int r = 0; r < rounds; r++) ratio[r] = w->t[r] / g->t[r];
            w->xgreedy = median(ratio, rounds);
        }
    }
    char peer_version[128];
    snprintf(peer_version, sizeof peer_version, "%s", peer.ok ? peer.version : "");
    const int have_peer = peer.ok;
    peer_stop(&peer);
    unlink(in_path), unlink(out_path);
    rmdir(dir);

    /* ---- report ---- */
    printf("\npeer: %s; load average (1 min) %.1f before the rounds, %.1f after\n",
           have_peer  ? peer_version
           : use_peer ? "unavailable (needs /usr/bin/python3 with torch and numpy)"
                      : "not run (--no-peer)",
           load0, load1);
    printf(
        "ms = median per call over %d alternating rounds; tokens = per row and call (decode: the fixed steps; API:\n"
        "the pieces and the end it wrote); tok/s = tokens / ms; speedup = median over the rounds of PyTorch / qiao;\n"
        "x greedy = median over the rounds of this row's ms / the greedy row's\n\n",
        rounds);
    printf("| %-19s | %4s | %6s | %9s | %10s | %10s | %11s | %7s | %8s |\n", "loop", "rows", "tokens", "qiao ms",
           "qiao tok/s", "PyTorch ms", "PyTorch t/s", "speedup", "x greedy");
    printf("|---------------------|------|--------|-----------|------------|------------|-------------|---------|"
           "----------|\n");
    for (int i = 0; i < NR; i++) {
        const row *w = &rw[i];
        char toks[16] = "-", qts[16] = "-", pms[16] = "-", pts[16] = "-", sp_[16] = "-", xg[16] = "-";
        if (w->tokens > 0) {
            snprintf(toks, sizeof toks, "%.0f", w->tokens);
            snprintf(qts, sizeof qts, "%.1f", w->tokens / w->med);
        }
        if (w->med_peer > 0) {
            snprintf(pms, sizeof pms, "%.3f", w->med_peer * 1e3);
            snprintf(pts, sizeof pts, "%.1f", w->tokens / w->med_peer);
            snprintf(sp_, sizeof sp_, "%.2fx", w->speedup);
        }
        if (w->xgreedy > 0) snprintf(xg, sizeof xg, "%.2f", w->xgreedy);
        printf("| %-19s | %4d | %6s | %9.3f | %10s | %10s | %11s | %7s | %8s |\n", w->what, w->rows, toks, w->med * 1e3,
               qts, pms, pts, sp_, xg);
    }
    printf("\nper decode step (ms): greedy %.3f, beam-shaped %.3f (the cache set-up included, spread over %lld "
           "steps)\n",
           rw[R_GREEDY].med * 1e3 / (double)n, rw[R_BEAM].med * 1e3 / (double)n, (long long)n);

    qiao_caption_result_free(&api.first);
    qiao_caption_result_free(&api_beam.first);
    free(y), free(g_ids), free(b_ids), free(g_logits);
    qiao_session_free(session);
    qiao_image_free(img);
    qiao_model_free(pm);
    return logits_ok ? 0 : 1;
}
