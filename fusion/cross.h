/* fusion/cross.h - the cross-modal block: one modality's tokens attend to
 * themselves and then to another modality's, pre-norm, as in ViLBERT's
 * co-attention streams and the decoder blocks of "Attention Is All You
 * Need":
 *
 *   h1  = x  + proj(attention(q(ln1 x), k(ln1 x), v(ln1 x); x_mask, x_bias))
 *   h2  = h1 + cproj(attention(cq(ln2 h1), ck(lnc y), cv(lnc y); y_mask, y_bias))
 *   out = h2 + fc2(gelu(fc(ln3 h2)))
 *
 * x (B, Tx, C) is the stream, y (B, Ty, C) the context it reads. Masks
 * (B, Tx) / (B, Ty) hide padding and absent modalities (a row whose keys
 * are all masked reads zeros); biases (B, Tx) / (B, Ty) are added to the
 * attention scores of each key (dynamic modality weighting passes log w of
 * the key's modality). Every mask and bias may be NULL. Setting causal
 * makes the self-attention causal (a caption decoder's block).
 *
 * Conventions of sdk/nn (nn.h): backward accumulates (+=) into parameter
 * gradients and into dx, dy (both required) and dx_bias, dy_bias (each may
 * be NULL when not wanted); the activation-gradient buffer must be zero on
 * entry.
 *
 * Not a public header: prefix qf_. */
#ifndef QIAO_FUSION_CROSS_H
#define QIAO_FUSION_CROSS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"
#include "nn/nn.h"

typedef struct qf_xblock_dims {
    int64_t B, Tx, Ty, C, F, H; /* batch, stream and context tokens, width, MLP width, heads */
    bool causal;                /* causal self-attention (Tx tokens in order) */
} qf_xblock_dims;

typedef struct qf_xblock_params {
    float *ln1_w, *ln1_b;     /* (C) */
    float *q_w, *q_b;         /* (C, C), (C) */
    float *k_w, *k_b;         /* (C, C), (C) */
    float *v_w, *v_b;         /* (C, C), (C) */
    float *proj_w, *proj_b;   /* (C, C), (C) */
    float *ln2_w, *ln2_b;     /* (C) the stream's norm before cross-attention */
    float *lnc_w, *lnc_b;     /* (C) the context's norm */
    float *cq_w, *cq_b;       /* (C, C), (C) */
    float *ck_w, *ck_b;       /* (C, C), (C) */
    float *cv_w, *cv_b;       /* (C, C), (C) */
    float *cproj_w, *cproj_b; /* (C, C), (C) */
    float *ln3_w, *ln3_b;     /* (C) */
    float *fc_w, *fc_b;       /* (F, C), (F) */
    float *fc2_w, *fc2_b;     /* (C, F), (C) */
} qf_xblock_params;

typedef struct qf_xblock_acts {
    float *ln1, *ln1_mean, *ln1_rstd; /* (Nx, C), (Nx), (Nx); Nx = B*Tx */
    float *q, *k, *v;                 /* (Nx, C) */
    float *att;                       /* (B, H, Tx, Tx) */
    float *atty;                      /* (Nx, C) */
    float *h1;                        /* (Nx, C) */
    float *ln2, *ln2_mean, *ln2_rstd; /* (Nx, C), (Nx), (Nx) */
    float *lnc, *lnc_mean, *lnc_rstd; /* (Ny, C), (Ny), (Ny); Ny = B*Ty */
    float *cq;                        /* (Nx, C) */
    float *ck, *cv;                   /* (Ny, C) */
    float *catt;                      /* (B, H, Tx, Ty) */
    float *catty;                     /* (Nx, C) */
    float *h2;                        /* (Nx, C) */
    float *ln3, *ln3_mean, *ln3_rstd; /* (Nx, C), (Nx), (Nx) */
    float *fc, *fc_gelu;              /* (Nx, F) */
    float *out;                       /* (Nx, C) */
} qf_xblock_acts;

/* QIAO_ERR_INVALID_ARGUMENT unless every dimension is >= 1, C % H == 0 and
 * causal implies nothing more (Tx is the sequence). */
qiao_status qf_xblock_check(const qf_xblock_dims *d);
/* Parameters "<prefix>ln1.weight", "<prefix>attn.q.weight", …,
 * "<prefix>ln2.*", "<prefix>ln_ctx.*", "<prefix>xattn.q.weight", …,
 * "<prefix>ln3.*", "<prefix>mlp.fc.*", "<prefix>mlp.fc2.*", bound at
 * field_base + offsetof(qf_xblock_params, …). Init as nn_block_describe:
 * N(0, 0.02), the two attention outputs and fc2 scaled by
 * 1 / sqrt(2 n_layers), norms 1, biases 0 (QC_NO_DECAY). */
qiao_status qf_xblock_describe(qc_table *tab, const char *prefix, const qf_xblock_dims *d, int64_t n_layers,
                               size_t field_base);
qiao_status qf_xblock_describe_acts(qc_table *tab, const char *prefix, const qf_xblock_dims *d, size_t field_base);

/* x (B, Tx, C), y (B, Ty, C) -> a->out (B, Tx, C). */
void qf_xblock_forward(const qb_exec *ex, qf_xblock_acts *a, const qf_xblock_params *p, const float *x,
                       const uint8_t *x_mask, const float *x_bias, const float *y, const uint8_t *y_mask,
                       const float *y_bias, const qf_xblock_dims *d);
/* dout (B, Tx, C) -> dx (B, Tx, C), dy (B, Ty, C), dx_bias (B, Tx), dy_bias
 * (B, Ty) and g accumulate; da zero on entry (scratch afterwards). */
void qf_xblock_backward(const qb_exec *ex, float *dx, float *dy, float *dx_bias, float *dy_bias,
                        qf_xblock_params *g, qf_xblock_acts *da, const float *dout, const qf_xblock_acts *a,
                        const qf_xblock_params *p, const float *x, const float *y, const qf_xblock_dims *d);

#endif /* QIAO_FUSION_CROSS_H */
