/* bench_vqa: speed of a question's answer (issue 15), qiao beside the
 * PyTorch peer of the same model (bench/peer/vqa_peer.py) on the same
 * weights and the same prepared inputs, in the same run: latency at batch 1
 * (typed, spoken, both) and throughput at batch 32 (typed, spoken).
 *
 *   build/bin/bench_vqa [--model /tmp/vqa/smoke.safetensors] [--data /tmp/vqa/shapes/val] [--threads 2]
 *                       [--batch 32] [--rounds 7] [--no-peer] [--peer-wait passive|active|inherit]
 *                       [--profile CASE]
 *
 * Run from the repository root (it starts bench/peer/vqa_peer.py). The model
 * is a VQA model (a fusion section, an "answer" head and optionally a "lang"
 * head; qiao train vqa writes one); speed does not depend on how well it is
 * trained. The data is a shapes split made with --speech-questions: scene i
 * gives its picture and question i % (its questions), typed (the text) and
 * spoken (its speech file); batch 1 is scene 0.
 *
 * What is timed, per case:
 *   - "API" (batch 1 only): qiao_vqa_ask on a session of N threads, from the
 *     decoded picture, the question's text and/or its decoded clip: crop and
 *     resize, tokenizing, log-mel, input statistics, the towers, the fuser,
 *     the heads, the softmax and the labelled top 3; what an application
 *     pays per question;
 *   - "forward": qmod_vqa_forward (models/vqa.h) on the batch prepared
 *     beforehand (token ids, char ids, patches, log-mel, masks, presence,
 *     statistics) with the packed weights the API uses: towers, fuser, heads;
 *   - "peer": the PyTorch peer of the same model on exactly those prepared
 *     tensors (written to a .safetensors the peer reads), float32 under
 *     torch.inference_mode() with torch.set_num_threads(N), in a child
 *     process that times itself when asked, so both sides see the same load.
 * Each round times each once (a loop lasting >= 50 ms, calibrated after
 * warm-up calls; API, forward, peer, then a pause for OpenBLAS's spinning
 * threads); a figure is the median over the rounds and a speedup the median
 * of the per-round ratios. Before timing, the peer's answer logits, language
 * logits and modality weights are compared with qiao's forward (max abs
 * difference), and the API's top answer with the forward's.
 *
 * The peer's environment: OMP_NUM_THREADS and OPENBLAS_NUM_THREADS = N,
 * OMP_WAIT_POLICY=passive unless --peer-wait says otherwise (Debian's torch
 * spins its OpenMP team against the OpenBLAS threads it calls under the
 * default policy; docs/benchmarks.md "Packed weights on an idle machine"),
 * and OPENBLAS_CORETYPE = the kernel set qiao's OpenBLAS runs (qiao makes
 * Debian's OpenBLAS 0.3.21 choose SkylakeX on CPUs it does not know,
 * sdk/backend/cpu/blas_core.c; torch multiplies through the same library, so
 * without this the peer would run Prescott's SSE3 kernels) unless the
 * environment already sets it.
 *
 * --profile CASE (typed1, spoken1, both1, typed32, spoken32): only qiao's
 * side of that case: its forward for 3 s under the per-layer profiler
 * (sdk/core/profile.h; the table per call), then 10 s of the API at batch 1
 * or the forward at 32 without it, for perf record. */
#define _POSIX_C_SOURCE 200809L

#include <cblas.h>
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
#include "core/profile.h"
#include "models/vqa.h"

#include "bench_util.h"

#define MAX_B 64
#define PEER_PYTHON "/usr/bin/python3"
#define PEER_SCRIPT "bench/peer/vqa_peer.py"

static int fail(const char *what, qiao_status st) {
    fprintf(stderr, "bench_vqa: %s: %s: %s\n", what, qiao_status_str(st), qiao_last_error());
    return 1;
}

/* ---- the data: pictures, typed and spoken questions of a shapes split ------------ */

typedef struct scene {
    qiao_image *img;
    char *question;   /* typed */
    qiao_audio *clip; /* the same question, spoken, as decoded */
} scene;

/* Reads the first n scenes of DIR/manifest.jsonl: scene i's picture and its
 * question i % (number of questions), text and speech. */
static qiao_status load_scenes(const char *dir, scene *sc, int n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/manifest.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return qc_error(QIAO_ERR_IO, "%s: cannot open (make a split with qiao dataset shapes --speech-questions)",
                        path);
    size_t cap = 1 << 20;
    char *line = malloc(cap);
    qiao_status st = line ? QIAO_OK : qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    int i = 0;
    while (st == QIAO_OK && i < n && fgets(line, (int)cap, f)) {
        cJSON *root = cJSON_Parse(line);
        const cJSON *image = cJSON_GetObjectItemCaseSensitive(root, "image");
        const cJSON *qa = cJSON_GetObjectItemCaseSensitive(root, "qa");
        const cJSON *sqa = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "speech"), "qa");
        const int nq = cJSON_GetArraySize(qa);
        const int j = nq > 0 ? (i == 0 ? 1 % nq : i % nq) : 0;
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(qa, j), "question");
        const cJSON *s = cJSON_GetArrayItem(sqa, j);
        if (!cJSON_IsString(image) || !cJSON_IsString(q) || !cJSON_IsString(s)) {
            st = qc_error(QIAO_ERR_FORMAT, "%s: scene %d lacks an image, a question or its speech (--speech-questions)",
                          path, i);
        } else {
            snprintf(path, sizeof path, "%s/%s", dir, image->valuestring);
            st = qiao_image_decode_file(path, NULL, &sc[i].img);
            if (st == QIAO_OK) {
                snprintf(path, sizeof path, "%s/%s", dir, s->valuestring);
                st = qiao_audio_decode_file(path, NULL, &sc[i].clip);
            }
            if (st == QIAO_OK && !(sc[i].question = strdup(q->valuestring)))
                st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
        }
        cJSON_Delete(root);
        i++;
    }
    free(line);
    fclose(f);
    if (st == QIAO_OK && i < n) st = qc_error(QIAO_ERR_FORMAT, "%s/manifest.jsonl: %d scenes, need %d", dir, i, n);
    return st;
}

/* ---- the cases ------------------------------------------------------------------- */

/* T_PREP, T_LABEL (batch 1): the parts of the API call outside the forward */
/* T_TOWER + k: tower k's qmod_forward alone (batch 1) */
enum { T_API = 0, T_FWD = 1, T_PEER = 2, T_PREP = 3, T_LABEL = 4, T_TOWER = 5, NT = 5 + QF_NMOD };

typedef struct bench_case {
    char name[24];    /* typed1, spoken1, both1, typed32, spoken32 */
    const char *what; /* the table's words */
    int64_t B;
    bool typed, spoken;
    qmod_batch b[QF_NMOD]; /* B = 0 when the case lacks the modality */
    float *stats[QF_NMOD]; /* (B, QF_NSTATS) raw; zeros for an absent modality */
    uint8_t *present;      /* (B, QF_NMOD) */
    qmod_vqa_inputs in;
    qmod_vqa_work work;
    qiao_session *session; /* the API (batch 1) */
    const scene *sc;       /* batch 1: its scene */
    qiao_vqa_answer ans;
    float *logits, *lang, *w; /* qiao's forward: (B, K), (B, 2), (B, QF_NMOD) */
    double diff_logits, diff_lang, diff_w, api_pdiff;
    int argmax_agree, api_agree;
    int reps[NT];
    double t[NT][BENCH_MAX_ROUNDS];
    double med[NT];
    double speedup[2]; /* median over rounds of peer / API, peer / forward */
    qiao_status st;
    const qb_exec *ex;
    const qmod_model *m;
    qf_weighting mode;
} bench_case;

/* The case's inputs as qiao_vqa_ask prepares them (sdk/api/vqa_api.c):
 * batches b[] (cleared first) and raw statistics into stats[] (B rows each). */
static qiao_status make_batches(const qmod_model *m, const bench_case *c, const scene *sc, qmod_batch b[QF_NMOD],
                                float *const stats[QF_NMOD]) {
    const int64_t B = c->B;
    const qiao_image *imgs[MAX_B] = {0};
    const char *texts[MAX_B] = {0};
    qiao_audio views[MAX_B], *owned[MAX_B];
    const qiao_audio *clips[MAX_B] = {0};
    memset(owned, 0, sizeof owned);
    memset(b, 0, QF_NMOD * sizeof *b);
    for (int64_t i = 0; i < B; i++)
        imgs[i] = sc[i].img, texts[i] = sc[i].question;
    qiao_status st = qmod_batch_images(m, imgs, (size_t)B, &b[QF_IMAGE]);
    for (int64_t i = 0; i < B && st == QIAO_OK; i++)
        qmod_vqa_image_stats(imgs[i], stats[QF_IMAGE] + i * QF_NSTATS);
    if (st == QIAO_OK && c->typed) {
        st = qmod_batch_text(m, texts, (size_t)B, &b[QF_TEXT]);
        for (int64_t i = 0; i < B && st == QIAO_OK; i++)
            qmod_vqa_text_stats(&b[QF_TEXT], i, stats[QF_TEXT] + i * QF_NSTATS);
    }
    if (st == QIAO_OK && c->spoken) {
        for (int64_t i = 0; i < B && st == QIAO_OK; i++) {
            st = qapi_clip_view(m, sc[i].clip, &views[i], &owned[i]);
            clips[i] = &views[i];
        }
        if (st == QIAO_OK) st = qmod_batch_audio(m, clips, (size_t)B, &b[QF_AUDIO]);
        for (int64_t i = 0; i < B && st == QIAO_OK; i++)
            st = qmod_vqa_audio_stats(m, &b[QF_AUDIO], i, stats[QF_AUDIO] + i * QF_NSTATS);
        for (int64_t i = 0; i < B; i++)
            qiao_audio_free(owned[i]);
    }
    return st;
}

static qiao_status prepare(const qmod_model *m, bench_case *c, const scene *sc) {
    const int64_t B = c->B;
    qiao_status st = QIAO_OK;
    for (int k = 0; k < QF_NMOD && st == QIAO_OK; k++)
        if (!(c->stats[k] = calloc((size_t)(B * QF_NSTATS), sizeof(float))))
            st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == QIAO_OK && !(c->present = calloc((size_t)(B * QF_NMOD), 1)))
        st = qc_error(QIAO_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == QIAO_OK) st = make_batches(m, c, sc, c->b, c->stats);
    if (st != QIAO_OK) return st;
    memset(&c->in, 0, sizeof c->in);
    c->in.B = B;
    for (int64_t i = 0; i < B; i++)
        for (int k = 0; k < QF_NMOD; k++)
            c->present[i * QF_NMOD + k] = c->b[k].B > 0;
    c->in.present = c->present;
    for (int k = 0; k < QF_NMOD; k++) {
        c->in.batch[k] = c->b[k].B ? &c->b[k] : NULL;
        c->in.stats[k] = c->stats[k];
    }
    return qmod_vqa_work_init(&c->work, m, B, false);
}

/* The API's preparation alone: make_batches, then free them. */
static void run_prepare(void *p) {
    bench_case *c = p;
    qmod_batch b[QF_NMOD];
    float s[QF_NMOD][QF_NSTATS];
    float *const stats[QF_NMOD] = {s[0], s[1], s[2]};
    qiao_status st = make_batches(c->m, c, c->sc, b, stats);
    for (int k = 0; k < QF_NMOD; k++)
        qmod_batch_free(&b[k]);
    if (st != QIAO_OK) c->st = st;
}

/* One tower's forward alone, in the case's workspace (batch 1). */
typedef struct tower_ctx {
    bench_case *c;
    int k;
} tower_ctx;

static void run_tower(void *p) {
    tower_ctx *t = p;
    const float *emb;
    qiao_status st = qmod_forward(t->c->ex, t->c->m, &t->c->work.tower[t->k], &t->c->b[t->k], &emb);
    if (st != QIAO_OK) t->c->st = st;
}

/* The API's labels alone: the key and the text of each of the top 3, as
 * qiao_vqa_ask gets them. */
static void run_labels(void *p) {
    bench_case *c = p;
    const int head = qmod_head_find(&c->m->cfg, QMOD_VQA_ANSWER_HEAD);
    const int64_t ks[3] = {0, 1, 2};
    char keys[3][QIAO_VQA_TEXT_MAX], texts[3][QIAO_VQA_TEXT_MAX];
    qmod_head_labels(&c->m->cfg, head, ks, 3, c->ans.lang, keys[0], texts[0], QIAO_VQA_TEXT_MAX);
}

static void run_forward(void *p) {
    bench_case *c = p;
    const float *logits, *lang, *w;
    qiao_status st = qmod_vqa_forward(c->ex, c->m, &c->work, &c->in, c->mode, &logits, &lang, &w);
    if (st != QIAO_OK) c->st = st;
}

static void run_api(void *p) {
    bench_case *c = p;
    qiao_status st = qiao_vqa_ask(c->session, c->sc->img, c->typed ? c->sc->question : NULL,
                                  c->spoken ? c->sc->clip : NULL, NULL, &c->ans);
    if (st != QIAO_OK) c->st = st;
}

/* Every case's prepared tensors, named "<case>.<modality>.<field>" (the
 * fields of qmod_batch), "<case>.stats.<modality>" and "<case>.present";
 * metadata "bench.cases" lists [case, B]. */
static qiao_status write_inputs(const qmod_model *m, const bench_case *cs, int nc, const char *path) {
    enum { MAX_E = 128 };
    qc_st_entry e[MAX_E];
    char names[MAX_E][64];
    size_t n = 0;
    char cases[512] = "[";
    static const char *const mods[QF_NMOD] = {"text", "image", "audio"};
#define ENTRY(field, dt, nd, d0, d1, d2, ptr)                                                                          \
    do {                                                                                                               \
        snprintf(names[n], 64, "%.24s.%.24s", c->name, field);                                                         \
        e[n] = (qc_st_entry){names[n], dt, nd, {d0, d1, d2}, ptr, false};                                              \
        n++;                                                                                                           \
    } while (0)
    for (int i = 0; i < nc; i++) {
        const bench_case *c = &cs[i];
        const qmod_batch *t = &c->b[QF_TEXT], *im = &c->b[QF_IMAGE], *a = &c->b[QF_AUDIO];
        if (t->B) {
            ENTRY("text.ids", QIAO_DTYPE_I32, 2, t->B, t->T, 0, t->ids);
            ENTRY("text.char_ids", QIAO_DTYPE_I32, 3, t->B, t->T, m->cfg.text.k, t->char_ids);
            ENTRY("text.tags", QIAO_DTYPE_U8, 2, t->B, t->T, 0, t->tags);
            ENTRY("text.mask", QIAO_DTYPE_U8, 2, t->B, t->T, 0, t->mask);
        }
        ENTRY("image.patches", QIAO_DTYPE_F32, 3, im->B, im->T, m->cfg.image.patch_dim, im->patches);
        if (a->B) {
            ENTRY("audio.mel", QIAO_DTYPE_F32, 3, a->B, a->T, m->cfg.audio.n_mels, a->mel);
            ENTRY("audio.mask", QIAO_DTYPE_U8, 2, a->B, a->T, 0, a->mask);
        }
        for (int k = 0; k < QF_NMOD; k++) {
            char f[32];
            snprintf(f, sizeof f, "stats.%s", mods[k]);
            ENTRY(f, QIAO_DTYPE_F32, 2, c->B, QF_NSTATS, 0, c->stats[k]);
        }
        ENTRY("present", QIAO_DTYPE_U8, 2, c->B, QF_NMOD, 0, c->present);
        size_t l = strlen(cases);
        snprintf(cases + l, sizeof cases - l, "%s[\"%.24s\",%lld]", i ? "," : "", c->name, (long long)c->B);
    }
#undef ENTRY
    strcat(cases, "]");
    qc_st_kv meta[2] = {{"bench.cases", cases}, {"bench.weighting", qf_weighting_name(cs[0].mode)}};
    return qc_st_write(path, e, n, meta, 2);
}

/* Max abs difference of `n` floats of tensor `name` in f from `ref`; NAN
 * when it is missing or of another size. Also counts agreeing row argmaxes. */
static double diff_tensor(const qc_st_file *f, const char *name, const float *ref, int64_t rows, int64_t cols,
                          int *agree) {
    const qc_st_tensor *t = qc_st_find(f, name);
    if (!t || t->dtype != QIAO_DTYPE_F32 || t->numel != rows * cols) return NAN;
    double md = 0;
    if (agree) *agree = 0;
    for (int64_t r = 0; r < rows; r++) {
        int64_t a = 0, b = 0;
        float pa = -INFINITY;
        for (int64_t j = 0; j < cols; j++) {
            float v;
            memcpy(&v, (const char *)t->data + (size_t)(r * cols + j) * sizeof(float), sizeof v);
            md = fmax(md, fabs((double)v - ref[r * cols + j]));
            if (v > pa) pa = v, a = j;
            if (ref[r * cols + j] > ref[r * cols + b]) b = j;
        }
        if (agree) *agree += a == b;
    }
    return md;
}

static void usage(void) {
    fprintf(stderr, "usage: bench_vqa [--model FILE] [--data DIR] [--threads N] [--batch B] [--rounds R] [--no-peer]\n"
                    "                 [--peer-wait passive|active|inherit] [--profile CASE]\n");
}

int main(int argc, char **argv) {
    const char *model_path = "/tmp/vqa/smoke.safetensors", *data = "/tmp/vqa/shapes/val";
    const char *peer_wait = "passive", *profile = NULL;
    int threads = 2, rounds = 7, use_peer = 1;
    int64_t big = 32;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--no-peer"))
            use_peer = 0;
        else if (i + 1 < argc && !strcmp(argv[i], "--model"))
            model_path = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--data"))
            data = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--threads"))
            threads = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--batch"))
            big = atoll(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--rounds"))
            rounds = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--profile"))
            profile = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--peer-wait") &&
                 (!strcmp(argv[i + 1], "passive") || !strcmp(argv[i + 1], "active") || !strcmp(argv[i + 1], "inherit")))
            peer_wait = argv[++i];
        else {
            usage();
            return 2;
        }
    }
    if (threads < 1 || rounds < 1 || rounds > BENCH_MAX_ROUNDS || big < 2 || big > MAX_B) {
        fprintf(stderr, "bench_vqa: need threads >= 1, 1 <= rounds <= %d, 2 <= batch <= %d\n", BENCH_MAX_ROUNDS, MAX_B);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    qiao_model *pm = NULL;
    qiao_status st = qiao_model_load(model_path, &pm);
    if (st != QIAO_OK) return fail(model_path, st);
    const qmod_model *m = pm->m;
    if ((st = qmod_vqa_check(m)) != QIAO_OK) return fail(model_path, st);
    scene sc[MAX_B];
    memset(sc, 0, sizeof sc);
    if ((st = load_scenes(data, sc, (int)big)) != QIAO_OK) return fail(data, st);
    qb_exec ex;
    qb_exec_cpu(&ex, threads); /* as a session's (embed_api.c) */
    ex.packed = pm->packed;
    qiao_session_params sp = qiao_session_default_params();
    sp.n_threads = threads;

    enum { NC = 5 };
    bench_case cs[NC];
    memset(cs, 0, sizeof cs);
    const struct {
        const char *name, *what;
        bool typed, spoken, b1;
    } def[NC] = {{"typed", "typed", true, false, true},
                 {"spoken", "spoken", false, true, true},
                 {"both", "typed + spoken", true, true, true},
                 {"typed", "typed", true, false, false},
                 {"spoken", "spoken", false, true, false}};
    const int head = qmod_head_find(&m->cfg, QMOD_VQA_ANSWER_HEAD);
    const int64_t K = m->cfg.heads[head].mlp.classes;
    for (int i = 0; i < NC; i++) {
        bench_case *c = &cs[i];
        c->B = def[i].b1 ? 1 : big;
        snprintf(c->name, sizeof c->name, "%s%lld", def[i].name, (long long)c->B);
        c->what = def[i].what;
        c->typed = def[i].typed, c->spoken = def[i].spoken;
        c->sc = &sc[0];
        c->ex = &ex, c->m = m, c->mode = m->cfg.fusion.weighting;
        if ((st = prepare(m, c, sc)) != QIAO_OK) return fail(c->name, st);
        if (c->B == 1 && (st = qiao_session_new(pm, &sp, &c->session)) != QIAO_OK) return fail("session", st);
        c->logits = malloc((size_t)(c->B * K) * sizeof(float));
        c->lang = calloc((size_t)(c->B * 2), sizeof(float));
        c->w = malloc((size_t)(c->B * QF_NMOD) * sizeof(float));
        if (!c->logits || !c->lang || !c->w) return fail("outputs", QIAO_ERR_OUT_OF_MEMORY);
        const float *lg, *ll, *w;
        if ((st = qmod_vqa_forward(&ex, m, &c->work, &c->in, c->mode, &lg, &ll, &w)) != QIAO_OK)
            return fail(c->name, st);
        memcpy(c->logits, lg, (size_t)(c->B * K) * sizeof(float));
        if (ll) memcpy(c->lang, ll, (size_t)(c->B * 2) * sizeof(float));
        memcpy(c->w, w, (size_t)(c->B * QF_NMOD) * sizeof(float));
        if (c->session) {
            run_api(c);
            if (c->st != QIAO_OK) return fail("qiao_vqa_ask", c->st);
            /* the API's top answer and its probability against the forward's logits */
            double mx = -INFINITY, sum = 0;
            int64_t best = 0;
            for (int64_t k = 0; k < K; k++) {
                mx = fmax(mx, c->logits[k]);
                if (c->logits[k] > c->logits[best]) best = k;
            }
            for (int64_t k = 0; k < K; k++)
                sum += exp((double)c->logits[k] - mx);
            char key[QIAO_VQA_TEXT_MAX];
            qmod_head_label(&m->cfg, head, best, NULL, key, sizeof key);
            c->api_agree = !strcmp(key, c->ans.best.key);
            c->api_pdiff = fabs(c->ans.best.p - exp((double)c->logits[best] - mx) / sum);
        }
    }

    if (profile) {
        bench_case *c = NULL;
        for (int i = 0; i < NC; i++)
            if (!strcmp(cs[i].name, profile)) c = &cs[i];
        if (!c) {
            usage();
            return 2;
        }
        /* first the forward under the per-layer profiler (sdk/core/profile.h) for 3 s */
        qc_prof *prof = NULL;
        if ((st = qc_prof_create(&prof)) != QIAO_OK || (st = qc_prof_names(prof, &m->tab, m->arena.base)) != QIAO_OK)
            return fail("profiler", st);
        run_forward(c);
        qb_exec pex = ex;
        pex.prof = prof;
        c->ex = &pex;
        int64_t calls = 0;
        double t0 = qc_now();
        while (qc_now() - t0 < 3.0)
            run_forward(c), calls++;
        qc_prof_add_steps(prof, calls, qc_now() - t0);
        c->ex = &ex;
        printf("qmod_vqa_forward under the profiler, %lld calls; per call:\n", (long long)calls);
        qc_prof_write_table(prof, stdout, 30);
        qc_prof_free(prof);
        fflush(stdout);
        bench_fn fn = c->session ? run_api : run_forward;
        calls = 0;
        t0 = qc_now();
        while (qc_now() - t0 < 10.0)
            fn(c), calls++;
        printf("%s: %lld calls of %s, %.3f ms each\n", profile, (long long)calls,
               c->session ? "qiao_vqa_ask" : "qmod_vqa_forward", (qc_now() - t0) / (double)calls * 1e3);
        return c->st == QIAO_OK ? 0 : fail(profile, c->st);
    }

    const char *wait = getenv("OMP_WAIT_POLICY");
    const char *pw = strcmp(peer_wait, "inherit") ? peer_wait : wait ? wait : "(unset)";
    printf("qiao %s, %d threads, OpenBLAS %s (core %s); %ld CPUs online; OMP_WAIT_POLICY=%s (the peer: %s)\n",
           qiao_version(), threads, openblas_get_config(), openblas_get_corename(), sysconf(_SC_NPROCESSORS_ONLN),
           wait ? wait : "(unset)", pw);
    printf("model: %s (%s), %lld parameters, packed weights: %s; weighting %s; answers %lld; data %s\n", m->cfg.name,
           model_path, (long long)qmod_param_count(m, ""), pm->packed ? "yes" : "no (no AVX-512F)",
           qf_weighting_name(m->cfg.fusion.weighting), (long long)K, data);
    printf("batch 1: \"%s\" (%.2f s of speech)\n", sc[0].question,
           (double)sc[0].clip->n_samples / sc[0].clip->sample_rate);
    printf("tokens per row (text / image / audio after the stem):");
    for (int i = 0; i < NC; i++) {
        qmod_token_seq s;
        int64_t T[QF_NMOD] = {0, 0, 0};
        for (int k = 0; k < QF_NMOD; k++)
            if (cs[i].b[k].B && qmod_tokens(m, &cs[i].work.tower[k], &cs[i].b[k], &s) == QIAO_OK) T[k] = s.T;
        printf(" %s %lld/%lld/%lld%s", cs[i].name, (long long)T[0], (long long)T[1], (long long)T[2],
               i + 1 < NC ? ";" : "\n");
    }
    fflush(stdout);

    /* ---- the peer ---- */
    char dir[] = "/tmp/qiao-bench-vqa-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("bench_vqa: mkdtemp");
        return 1;
    }
    char in_path[512], out_path[512];
    snprintf(in_path, sizeof in_path, "%s/inputs.safetensors", dir);
    snprintf(out_path, sizeof out_path, "%s/peer.safetensors", dir);
    if ((st = write_inputs(m, cs, NC, in_path)) != QIAO_OK) return fail(in_path, st);
    peer_proc peer;
    memset(&peer, 0, sizeof peer);
    if (use_peer) {
        const char *args[] = {PEER_PYTHON, PEER_SCRIPT, model_path, in_path, NULL};
        peer_start(&peer, "bench_vqa", args, threads, peer_wait, true);
        if (!peer.ok) fprintf(stderr, "bench_vqa: the peer did not start\n");
    }
    char line[256];
    if (peer.ok && !peer_cmd(&peer, line, sizeof line, "out %s", out_path)) {
        qc_st_file *f = NULL;
        if (qc_st_open(out_path, &f) == QIAO_OK) {
            for (int i = 0; i < NC; i++) {
                bench_case *c = &cs[i];
                char name[64];
                snprintf(name, sizeof name, "%.24s.answer", c->name);
                c->diff_logits = diff_tensor(f, name, c->logits, c->B, K, &c->argmax_agree);
                snprintf(name, sizeof name, "%.24s.lang", c->name);
                c->diff_lang = diff_tensor(f, name, c->lang, c->B, 2, NULL);
                snprintf(name, sizeof name, "%.24s.w", c->name);
                c->diff_w = diff_tensor(f, name, c->w, c->B, QF_NMOD, NULL);
            }
            qc_st_close(f);
        }
        printf("\nagreement, qiao's forward (packed) against the peer, before timing:\n");
        printf("| %-9s | %5s | %16s | %14s | %14s | %12s |\n", "case", "batch", "max |d| answer", "max |d| lang",
               "max |d| w", "same argmax");
        printf("|-----------|-------|------------------|----------------|----------------|--------------|\n");
        for (int i = 0; i < NC; i++)
            printf("| %-9s | %5lld | %16.3g | %14.3g | %14.3g | %5d of %3lld |\n", cs[i].name, (long long)cs[i].B,
                   cs[i].diff_logits, cs[i].diff_lang, cs[i].diff_w, cs[i].argmax_agree, (long long)cs[i].B);
    }
    printf("the API's top answer against the forward's: ");
    for (int i = 0; i < NC; i++)
        if (cs[i].session)
            printf("%s %s (\"%s\", |d p| %.2g)%s", cs[i].name, cs[i].api_agree ? "same" : "DIFFERENT",
                   cs[i].ans.best.key, cs[i].api_pdiff, i + 1 < NC && cs[i + 1].session ? "; " : "\n");
    fflush(stdout);

    /* ---- timing ---- */
    const double load0 = loadavg();
    for (int i = 0; i < NC; i++) {
        bench_case *c = &cs[i];
        c->reps[T_API] = c->session ? calibrate(run_api, c) : 0;
        c->reps[T_PREP] = c->session ? calibrate(run_prepare, c) : 0;
        c->reps[T_LABEL] = c->session ? calibrate(run_labels, c) : 0;
        c->reps[T_FWD] = calibrate(run_forward, c);
        for (int k = 0; k < QF_NMOD; k++)
            c->reps[T_TOWER + k] = c->session && c->b[k].B ? calibrate(run_tower, &(tower_ctx){c, k}) : 0;
        if (!peer_cmd(&peer, line, sizeof line, "calib %s", c->name)) c->reps[T_PEER] = atoi(line + 5);
        pause_blas();
    }
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < NC; i++) {
            bench_case *c = &cs[i];
            if (c->reps[T_API]) c->t[T_API][r] = loop(run_api, c, c->reps[T_API]);
            if (c->reps[T_PREP]) c->t[T_PREP][r] = loop(run_prepare, c, c->reps[T_PREP]);
            if (c->reps[T_LABEL]) c->t[T_LABEL][r] = loop(run_labels, c, c->reps[T_LABEL]);
            c->t[T_FWD][r] = loop(run_forward, c, c->reps[T_FWD]);
            for (int k = 0; k < QF_NMOD; k++)
                if (c->reps[T_TOWER + k])
                    c->t[T_TOWER + k][r] = loop(run_tower, &(tower_ctx){c, k}, c->reps[T_TOWER + k]);
            if (c->reps[T_PEER] > 0 && !peer_cmd(&peer, line, sizeof line, "time %s %d", c->name, c->reps[T_PEER]))
                c->t[T_PEER][r] = atof(line + 2);
            pause_blas();
        }
    const double load1 = loadavg();
    for (int i = 0; i < NC; i++) {
        bench_case *c = &cs[i];
        if (c->st != QIAO_OK) return fail(c->name, c->st);
        for (int j = 0; j < NT; j++)
            c->med[j] = c->reps[j] > 0 && (j != T_PEER || peer.ok) ? median(c->t[j], rounds) : 0;
        for (int s = 0; s < 2; s++) {
            double ratio[BENCH_MAX_ROUNDS];
            const int j = s ? T_FWD : T_API;
            for (int r = 0; r < rounds; r++)
                ratio[r] = c->t[T_PEER][r] / c->t[j][r];
            c->speedup[s] = c->med[j] > 0 && c->med[T_PEER] > 0 ? median(ratio, rounds) : 0;
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
    printf("ms = median per call over %d alternating rounds; q/s = questions per second; speedup = median over the\n"
           "rounds of PyTorch / qiao (API: qiao_vqa_ask from the decoded inputs; forward: qmod_vqa_forward on the\n"
           "prepared tensors the peer reads)\n\n",
           rounds);
    printf("| %-14s | %5s | %11s | %11s | %10s | %9s | %11s | %11s | %10s |\n", "question", "batch", "qiao API ms",
           "qiao fwd ms", "PyTorch ms", "qiao q/s", "PyTorch q/s", "API speedup", "fwd speedup");
    printf("|----------------|-------|-------------|-------------|------------|-----------|-------------|-------------|"
           "------------|\n");
    for (int i = 0; i < NC; i++) {
        const bench_case *c = &cs[i];
        char api[16] = "-", peer_ms[16] = "-", pqs[16] = "-", sa[16] = "-", sf[16] = "-";
        if (c->med[T_API] > 0) snprintf(api, sizeof api, "%.3f", c->med[T_API] * 1e3);
        if (c->med[T_PEER] > 0) {
            snprintf(peer_ms, sizeof peer_ms, "%.3f", c->med[T_PEER] * 1e3);
            snprintf(pqs, sizeof pqs, "%.1f", (double)c->B / c->med[T_PEER]);
            snprintf(sf, sizeof sf, "%.2fx", c->speedup[1]);
            if (c->med[T_API] > 0) snprintf(sa, sizeof sa, "%.2fx", c->speedup[0]);
        }
        const double best = c->med[T_API] > 0 ? c->med[T_API] : c->med[T_FWD];
        printf("| %-14s | %5lld | %11s | %11.3f | %10s | %9.1f | %11s | %11s | %10s |\n", c->what, (long long)c->B, api,
               c->med[T_FWD] * 1e3, peer_ms, (double)c->B / best, pqs, sa, sf);
    }
    printf("\nqiao q/s: through the API at batch 1, the forward at batch %lld.\n", (long long)big);
    printf("\nWhere a batch-1 answer goes (qiao, ms, medians): prepare = crop + resize, tokenizing, log-mel and\n"
           "statistics (make_batches here); text, image, audio = each tower's qmod_forward alone; fuser + heads =\n"
           "forward - towers; labels = the top 3's keys and texts (qmod_head_labels); rest = API - prepare - forward\n"
           "- labels (argument checks, softmax, top-k, workspace checks)\n\n");
    printf("| %-14s | %8s | %8s | %8s | %8s | %8s | %8s | %8s | %8s | %8s |\n", "question", "API", "prepare", "forward",
           "text", "image", "audio", "fuser+hd", "labels", "rest");
    printf("|----------------|----------|----------|----------|----------|----------|----------|----------|----------|"
           "----------|\n");
    for (int i = 0; i < NC; i++) {
        const bench_case *c = &cs[i];
        if (!c->session) continue;
        char tw[QF_NMOD][16];
        double towers = 0;
        for (int k = 0; k < QF_NMOD; k++) {
            snprintf(tw[k], sizeof tw[k], "-");
            if (c->med[T_TOWER + k] > 0) snprintf(tw[k], sizeof tw[k], "%.3f", c->med[T_TOWER + k] * 1e3);
            towers += c->med[T_TOWER + k];
        }
        printf("| %-14s | %8.3f | %8.3f | %8.3f | %8s | %8s | %8s | %8.3f | %8.3f | %8.3f |\n", c->what,
               c->med[T_API] * 1e3, c->med[T_PREP] * 1e3, c->med[T_FWD] * 1e3, tw[0], tw[1], tw[2],
               (c->med[T_FWD] - towers) * 1e3, c->med[T_LABEL] * 1e3,
               (c->med[T_API] - c->med[T_PREP] - c->med[T_FWD] - c->med[T_LABEL]) * 1e3);
    }

    for (int i = 0; i < NC; i++) {
        bench_case *c = &cs[i];
        for (int k = 0; k < QF_NMOD; k++)
            qmod_batch_free(&c->b[k]), free(c->stats[k]);
        free(c->present), free(c->logits), free(c->lang), free(c->w);
        qmod_vqa_work_free(&c->work);
        qiao_session_free(c->session);
    }
    for (int64_t i = 0; i < big; i++) {
        qiao_image_free(sc[i].img);
        qiao_audio_free(sc[i].clip);
        free(sc[i].question);
    }
    qiao_model_free(pm);
    return 0;
}
