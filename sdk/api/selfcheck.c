/* qiao_selfcheck_train: the built-in 2-layer transformer sequence classifier,
 * trained end to end on a synthetic task. It is the smallest real use of the
 * training runtime: tensor tables and arenas, every transformer layer forward
 * and backward, cross-entropy, and the model file writer, run as an
 * objective of the trainer (models/train/trainer.h: clipping, AdamW with
 * warmup + cosine, cancellation) that `qiao train` runs on too.
 *
 * The task: a sequence of 8..16 symbols holds exactly one MARKER; the class
 * is the symbol right after it. A bag-of-tokens model cannot solve it (every
 * symbol's count says nothing about order), so passing it shows attention
 * and positions work: chance is 1/8. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/safetensors.h"
#include "models/train/trainer.h"
#include "nn/nn.h"

enum {
    SC_PAD = 0,
    SC_MARKER = 1,
    SC_SYMBOLS = 8,             /* symbols are ids 2..9 */
    SC_VOCAB = 2 + SC_SYMBOLS,
    SC_T = 16,                  /* max sequence length */
    SC_MIN_LEN = 8,
    SC_LAYERS = 2,
    SC_C = 64,
    SC_H = 4,
    SC_F = 128,
    SC_CLASSES = SC_SYMBOLS,
    SC_EVAL = 2048              /* held-out sequences */
};

typedef struct sc_params {
    float *tok_emb;                    /* (V, C) */
    float *pos_emb;                    /* (T, C) */
    nn_block_params blocks[SC_LAYERS];
    float *lnf_w, *lnf_b;              /* (C) */
    float *head_w, *head_b;            /* (K, C), (K) */
} sc_params;

typedef struct sc_acts {
    float *x;                          /* (N, C) token + position embeddings */
    nn_block_acts blocks[SC_LAYERS];
    float *lnf, *lnf_mean, *lnf_rstd;  /* (N, C), (N), (N) */
    float *pooled;                     /* (B, C) */
    float *logits, *probs;             /* (B, K) */
    float *losses;                     /* (B) */
    float *flow[2];                    /* (N, C) each: the gradient flowing between blocks
                                          (used in the activation-gradient arena only) */
} sc_acts;

typedef struct sc_model {
    qb_exec ex;
    int64_t B;
    nn_block_dims dims;
    qc_table ptab, atab;
    qc_arena params, acts, dacts;      /* gradients and AdamW moments: the trainer's */
    sc_params p, g;
    sc_acts a, da;
    int32_t *ids, *pos_ids, *targets; /* (N), (N), (B) */
    uint8_t *mask;                    /* (N) */
    float *g_bound;                   /* the gradient arena g points into */
    qc_rng data;                      /* the training batches' stream */
} sc_model;

static qiao_status describe(sc_model *m) {
    qc_table *t = &m->ptab, *a = &m->atab;
    const int64_t N = m->B * SC_T, C = SC_C;
    qiao_status st;
#define TRY(x) \
    if ((st = (x)) != QIAO_OK) return st
    TRY(qc_table_add_dims(t, "", "tok_emb.weight", 2, SC_VOCAB, C, 0, QC_INIT_NORMAL, 0.02f, 0,
                          offsetof(sc_params, tok_emb)));
    TRY(qc_table_add_dims(t, "", "pos_emb.weight", 2, SC_T, C, 0, QC_INIT_NORMAL, 0.02f, 0,
                          offsetof(sc_params, pos_emb)));
    for (int l = 0; l < SC_LAYERS; l++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "blocks.%d.", l);
        TRY(nn_block_describe(t, prefix, &m->dims, SC_LAYERS, offsetof(sc_params, blocks) + (size_t)l * sizeof(nn_block_params)));
        TRY(nn_block_describe_acts(a, prefix, &m->dims, offsetof(sc_acts, blocks) + (size_t)l * sizeof(nn_block_acts)));
    }
    TRY(qc_table_add_dims(t, "", "ln_f.weight", 1, C, 0, 0, QC_INIT_ONES, 0, QC_NO_DECAY, offsetof(sc_params, lnf_w)));
    TRY(qc_table_add_dims(t, "", "ln_f.bias", 1, C, 0, 0, QC_INIT_ZEROS, 0, QC_NO_DECAY, offsetof(sc_params, lnf_b)));
    TRY(qc_table_add_dims(t, "", "head.weight", 2, SC_CLASSES, C, 0, QC_INIT_NORMAL, 0.02f, 0,
                          offsetof(sc_params, head_w)));
    TRY(qc_table_add_dims(t, "", "head.bias", 1, SC_CLASSES, 0, 0, QC_INIT_ZEROS, 0, QC_NO_DECAY,
                          offsetof(sc_params, head_b)));

    TRY(qc_table_add_dims(a, "", "x", 2, N, C, 0, QC_INIT_ZEROS, 0, 0, offsetof(sc_acts, x)));
    TRY(qc_table_add_dims(a, "", "lnf", 2, N, C, 0, QC_INIT_ZEROS, 0, 0, offsetof(sc_acts, lnf)));
    TRY(qc_table_add_dims(a, "", "lnf_mean", 1, N, 0, 0, QC_INIT_ZEROS, 0, 0, offsetof(sc_acts, lnf_mean)));
    TRY(qc_table_add_dims(a, "", "lnf_rstd", 1, N, 0, 0, QC_INIT_ZEROS, 0, 0, offsetof(sc_acts, lnf_rstd)));
    TRY(qc_table_add_dims(a, "", "pooled", 2, m->B, C, 0, QC_INIT_ZEROS, 0, 0, offsetof(sc_acts, pooled)));
    TRY(qc_table_add_dims(a, "", "logits", 2, m->B, SC_CLASSES, 0, QC_INIT_ZEROS, 0, 0, offsetof(sc_acts, logits)));
    TRY(qc_table_add_dims(a, "", "probs", 2, m->B, SC_CLASSES, 0, QC_INIT_ZEROS, 0, 0, offsetof(sc_acts, probs)));
    TRY(qc_table_add_dims(a, "", "losses", 1, m->B, 0, 0, QC_INIT_ZEROS, 0, 0, offsetof(sc_acts, losses)));
    TRY(qc_table_add_dims(a, "", "flow0", 2, N, C, 0, QC_INIT_ZEROS, 0, 0, offsetof(sc_acts, flow)));
    TRY(qc_table_add_dims(a, "", "flow1", 2, N, C, 0, QC_INIT_ZEROS, 0, 0, offsetof(sc_acts, flow) + sizeof(float *)));
#undef TRY
    return QIAO_OK;
}

static void model_free(sc_model *m) {
    qc_table_free(&m->ptab);
    qc_table_free(&m->atab);
    qc_arena_free(&m->params);
    qc_arena_free(&m->acts);
    qc_arena_free(&m->dacts);
    free(m->ids);
    free(m->pos_ids);
    free(m->targets);
    free(m->mask);
}

static qiao_status model_init(sc_model *m, int64_t B, int n_threads, uint64_t seed) {
    memset(m, 0, sizeof *m);
    qb_exec_cpu(&m->ex, n_threads);
    m->B = B;
    m->dims = (nn_block_dims){B, SC_T, SC_C, SC_F, SC_H, NN_NORM_PRE, 0.0f, NN_ACT_GELU, false};
    qc_table_init_empty(&m->ptab);
    qc_table_init_empty(&m->atab);
    qiao_status st = describe(m);
    if (st == QIAO_OK) st = qc_arena_alloc(&m->params, m->ptab.total);
    if (st == QIAO_OK) st = qc_arena_alloc(&m->acts, m->atab.total);
    if (st == QIAO_OK) st = qc_arena_alloc(&m->dacts, m->atab.total);
    if (st != QIAO_OK) return st;
    const size_t N = (size_t)(B * SC_T);
    m->ids = calloc(N, sizeof *m->ids);
    m->pos_ids = calloc(N, sizeof *m->pos_ids);
    m->targets = calloc((size_t)B, sizeof *m->targets);
    m->mask = calloc(N, 1);
    if (!m->ids || !m->pos_ids || !m->targets || !m->mask)
        return qc_error(QIAO_ERR_OUT_OF_MEMORY, "selfcheck: out of memory");
    for (size_t i = 0; i < N; i++) m->pos_ids[i] = (int32_t)(i % SC_T);
    qc_table_bind(&m->ptab, m->params.base, &m->p);
    qc_table_bind(&m->atab, m->acts.base, &m->a);
    qc_table_bind(&m->atab, m->dacts.base, &m->da);
    qc_table_init(&m->ptab, m->params.base, seed);
    return QIAO_OK;
}

/* Fills row b of the batch with one example of the marker task. */
static void make_example(qc_rng *r, int32_t *ids, uint8_t *mask, int32_t *target) {
    int64_t len = SC_MIN_LEN + (int64_t)qc_rng_below(r, SC_T - SC_MIN_LEN + 1);
    int64_t p = (int64_t)qc_rng_below(r, (uint64_t)(len - 1)); /* marker never last */
    for (int64_t t = 0; t < SC_T; t++) {
        if (t >= len) {
            ids[t] = SC_PAD;
            mask[t] = 0;
            continue;
        }
        ids[t] = t == p ? SC_MARKER : (int32_t)(2 + qc_rng_below(r, SC_SYMBOLS));
        mask[t] = 1;
    }
    *target = ids[p + 1] - 2;
}

static void make_batch(sc_model *m, qc_rng *r) {
    for (int64_t b = 0; b < m->B; b++)
        make_example(r, m->ids + b * SC_T, m->mask + b * SC_T, m->targets + b);
}

static float forward(sc_model *m) {
    const qb_exec *ex = &m->ex;
    const int64_t B = m->B, N = B * SC_T, C = SC_C;
    sc_acts *a = &m->a;
    nn_embedding_forward(ex, a->x, m->ids, m->p.tok_emb, N, SC_VOCAB, C);
    /* Position embeddings go through the lnf buffer as scratch (it is
     * overwritten later in the same pass). */
    nn_embedding_forward(ex, a->lnf, m->pos_ids, m->p.pos_emb, N, SC_T, C);
    nn_residual_forward(ex, a->x, a->x, a->lnf, N * C);
    const float *h = a->x;
    for (int l = 0; l < SC_LAYERS; l++) {
        nn_block_forward(ex, &a->blocks[l], &m->p.blocks[l], h, m->mask, &m->dims);
        h = a->blocks[l].out;
    }
    nn_layernorm_forward(ex, a->lnf, a->lnf_mean, a->lnf_rstd, h, m->p.lnf_w, m->p.lnf_b, N, C);
    nn_pool_mean_forward(ex, a->pooled, a->lnf, m->mask, B, SC_T, C);
    nn_linear_forward(ex, a->logits, a->pooled, m->p.head_w, m->p.head_b, B, C, SC_CLASSES);
    float loss = 0.0f;
    nn_cross_entropy_forward(ex, &loss, a->losses, a->probs, a->logits, m->targets, B, SC_CLASSES, 0.0f, -1);
    return loss;
}

static void backward(sc_model *m) {
    const qb_exec *ex = &m->ex;
    const int64_t B = m->B, N = B * SC_T, C = SC_C;
    sc_acts *a = &m->a, *da = &m->da;
    qc_arena_zero(&m->dacts);
    nn_cross_entropy_backward(ex, da->logits, 1.0f, a->probs, m->targets, B, SC_CLASSES, 0.0f, -1);
    nn_linear_backward(ex, da->pooled, m->g.head_w, m->g.head_b, da->logits, a->pooled, m->p.head_w, B, C,
                       SC_CLASSES);
    nn_pool_mean_backward(ex, da->lnf, da->pooled, m->mask, B, SC_T, C);
    float *dcur = da->flow[0];
    nn_layernorm_backward(ex, dcur, m->g.lnf_w, m->g.lnf_b, da->lnf, a->blocks[SC_LAYERS - 1].out, m->p.lnf_w,
                          a->lnf_mean, a->lnf_rstd, N, C);
    for (int l = SC_LAYERS - 1; l >= 0; l--) {
        const float *in = l ? a->blocks[l - 1].out : a->x;
        float *dnext = l ? da->flow[(SC_LAYERS - l) & 1] : da->x;
        nn_block_backward(ex, dnext, &m->g.blocks[l], &da->blocks[l], dcur, &a->blocks[l], &m->p.blocks[l], in,
                          &m->dims);
        dcur = dnext;
    }
    nn_embedding_backward(ex, m->g.tok_emb, da->x, m->ids, N, SC_VOCAB, C);
    nn_embedding_backward(ex, m->g.pos_emb, da->x, m->pos_ids, N, SC_T, C);
}

/* Accuracy over SC_EVAL held-out sequences drawn from their own seed stream. */
static float evaluate(sc_model *m, uint64_t seed) {
    qc_rng r;
    qc_rng_seed(&r, seed ^ 0xE7A1F00Dull);
    int64_t correct = 0, total = 0;
    while (total < SC_EVAL) {
        make_batch(m, &r);
        forward(m);
        for (int64_t b = 0; b < m->B && total < SC_EVAL; b++, total++) {
            const float *lg = m->a.logits + b * SC_CLASSES;
            int best = 0;
            for (int k = 1; k < SC_CLASSES; k++)
                if (lg[k] > lg[best]) best = k;
            correct += best == m->targets[b];
        }
    }
    return (float)correct / (float)total;
}

static qiao_status save(const sc_model *m, const char *path, const qiao_selfcheck_result *res) {
    char config[512], acc[32];
    snprintf(config, sizeof config,
             "{\"model\":\"selfcheck-classifier\",\"vocab\":%d,\"max_len\":%d,\"layers\":%d,"
             "\"width\":%d,\"heads\":%d,\"mlp\":%d,\"classes\":%d}",
             SC_VOCAB, SC_T, SC_LAYERS, SC_C, SC_H, SC_F, SC_CLASSES);
    snprintf(acc, sizeof acc, "%.4f", res->accuracy);
    const qc_st_kv meta[] = {
        {"qiao.config", config}, {"qiao.version", qiao_version()}, {"qiao.heldout_accuracy", acc}};
    return qc_st_write_table(path, &m->ptab, m->params.base, meta, sizeof meta / sizeof meta[0]);
}

/* ---- the objective on the trainer ------------------------------------------------- */

static qiao_status sc_next_batch(void *user, int64_t step) {
    (void)step; /* batches come from one stream, in step order */
    sc_model *m = user;
    make_batch(m, &m->data);
    return QIAO_OK;
}

static qiao_status sc_step(void *user, const qtr_step_ctx *c, float *loss, float *metrics) {
    sc_model *m = user;
    if (m->g_bound != c->grads) {
        qc_table_bind(&m->ptab, c->grads, &m->g);
        m->g_bound = c->grads;
    }
    *loss = forward(m);
    qiao_status st;
    if (!isfinite(*loss) && (st = m->ex.ops->sync(&m->ex)) != QIAO_OK) return st; /* unfinished, not diverged */
    if (!isfinite(*loss))
        return qc_error(QIAO_ERR_INTERNAL, "selfcheck: loss is not finite at step %lld", (long long)c->step);
    backward(m);
    /* the batch's accuracy before the update, for the log */
    int64_t correct = 0;
    for (int64_t b = 0; b < m->B; b++) {
        const float *lg = m->a.logits + b * SC_CLASSES;
        int best = 0;
        for (int k = 1; k < SC_CLASSES; k++)
            if (lg[k] > lg[best]) best = k;
        correct += best == m->targets[b];
    }
    metrics[0] = (float)correct / (float)m->B;
    return QIAO_OK;
}

typedef struct sc_run {
    const qiao_selfcheck_params *p;
    int64_t tail_from;  /* steps from here on count in final_loss */
    double tail_loss;
    int64_t tail_n;
} sc_run;

static int sc_on_step(const qtr_log *l, void *user) {
    sc_run *r = user;
    if (l->step - 1 >= r->tail_from) {
        r->tail_loss += l->loss;
        r->tail_n++;
    }
    if (r->p->progress && (l->step % 10 == 0 || l->step == l->steps))
        r->p->progress("train", l->step, l->steps, r->p->progress_user_data);
    return 0;
}

static int sc_cancel(void *user) {
    const qiao_selfcheck_params *p = user;
    return p->cancel && p->cancel(p->cancel_user_data);
}

QIAO_API qiao_selfcheck_params qiao_selfcheck_default_params(void) {
    qiao_selfcheck_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.n_threads = 0;
    p.seed = 1234;
    p.steps = 600;
    p.batch_size = 64;
    p.learning_rate = 3e-3f;
    return p;
}

QIAO_API qiao_status qiao_selfcheck_train(const qiao_selfcheck_params *params, qiao_selfcheck_result *result) {
    if (!params || !result) return qc_error(QIAO_ERR_INVALID_ARGUMENT, "selfcheck: params and result are required");
    /* Read only the fields the caller's header knew about. */
    qiao_selfcheck_params p = qiao_selfcheck_default_params();
    qiao_status pst = qc_params_read(&p, sizeof p, params, offsetof(qiao_selfcheck_params, n_threads) + sizeof(int),
                                     "qiao_selfcheck_default_params");
    if (pst != QIAO_OK) return pst;
    if (p.steps < 1 || p.steps > 10000000 || p.batch_size < 1 || p.batch_size > 4096 || !(p.learning_rate > 0.0f) ||
        p.learning_rate > 1.0f || p.n_threads < 0)
        return qc_error(QIAO_ERR_INVALID_ARGUMENT,
                        "selfcheck: need 1 <= steps <= 1e7, 1 <= batch_size <= 4096, 0 < learning_rate <= 1, "
                        "n_threads >= 0");
    memset(result, 0, sizeof *result);

    sc_model m;
    qiao_status st = model_init(&m, p.batch_size, p.n_threads, p.seed);
    if (st != QIAO_OK) {
        model_free(&m);
        return st;
    }
    double t0 = qc_now();
    qc_rng_seed(&m.data, p.seed);
    sc_run run = {&p, p.steps - (p.steps / 10 > 0 ? p.steps / 10 : 1), 0.0, 0};
    static const char *const metric_names[1] = {"train_accuracy"};
    const qtr_objective obj = {.name = "selfcheck",
                               .tab = &m.ptab,
                               .params = m.params.base,
                               .n_metrics = 1,
                               .metric_names = metric_names,
                               .samples_per_step = m.B,
                               .user = &m,
                               .next_batch = sc_next_batch,
                               .step = sc_step};
    qtr_params tp;
    memset(&tp, 0, sizeof tp);
    tp.hp = qtr_hparams_default();
    tp.hp.steps = p.steps;
    tp.hp.warmup = p.steps / 10 > 0 ? p.steps / 10 : 1;
    tp.hp.lr = p.learning_rate;
    tp.hp.lr_min = p.learning_rate * 0.1f;
    tp.hp.weight_decay = 0.01f;
    tp.hp.clip = 1.0f;
    tp.hp.eval_every = 0;
    tp.hp.ckpt_every = 0;
    tp.ex = &m.ex;
    tp.on_step = sc_on_step;
    tp.user = &run;
    tp.cancel = sc_cancel;
    tp.cancel_user = &p;
    qtr_result tr;
    st = qtr_run(&obj, &tp, &tr);
    if (st == QIAO_ERR_CANCELLED) st = qc_error(QIAO_ERR_CANCELLED, "selfcheck: cancelled at step %lld", (long long)tr.step);
    if (st != QIAO_OK) {
        model_free(&m);
        return st;
    }
    result->final_loss = (float)(run.tail_loss / (double)(run.tail_n ? run.tail_n : 1));
    result->steps = p.steps;
    result->accuracy = evaluate(&m, p.seed);
    if ((st = m.ex.ops->sync(&m.ex)) != QIAO_OK) {
        model_free(&m);
        return st;
    }
    result->chance_accuracy = 1.0f / SC_CLASSES;
    result->seconds = qc_now() - t0;
    if (p.out_path) st = save(&m, p.out_path, result);
    model_free(&m);
    return st;
}
