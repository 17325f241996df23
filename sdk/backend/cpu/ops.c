/* The CPU backend's op table, its memory functions and the exec context. */
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "backend/cpu/cpu.h"

void *qb_cpu_alloc(const qb_exec *ex, size_t bytes) {
    (void)ex;
    size_t padded = (bytes + 63) & ~(size_t)63;
    if (padded < bytes) return NULL;
    void *p = aligned_alloc(64, padded ? padded : 64);
    if (p) memset(p, 0, padded ? padded : 64);
    return p;
}

void qb_cpu_free(const qb_exec *ex, void *p) {
    (void)ex;
    free(p);
}

void qb_cpu_zero(const qb_exec *ex, void *p, size_t bytes) {
    (void)ex;
    if (bytes) memset(p, 0, bytes);
}

void qb_cpu_copy(const qb_exec *ex, void *dst, const void *src, size_t bytes) {
    (void)ex;
    if (bytes && dst != src) memmove(dst, src, bytes);
}

void qb_exec_cpu(qb_exec *ex, int n_threads) {
    qb_cpu_blas_core_init();
    memset(ex, 0, sizeof *ex);
    ex->ops = &qb_cpu_ops;
    ex->kind = QB_CPU;
    ex->n_threads = n_threads > 0 ? n_threads : qb_cpu_count();
}

const qb_ops qb_cpu_ops = {
    .name = "cpu",
    .alloc = qb_cpu_alloc,
    .free = qb_cpu_free,
    .zero = qb_cpu_zero,
    .to_device = qb_cpu_copy,
    .to_host = qb_cpu_copy,
    .copy = qb_cpu_copy,
    .sync = qb_cpu_sync,
    .gemm = qb_cpu_gemm,
    .gemm_bf16 = qb_cpu_gemm_bf16,
    .bias_forward = qb_cpu_bias_forward,
    .linears_fused = qb_cpu_linears_packed,
    .bias_backward = qb_cpu_bias_backward,
    .add = qb_cpu_add,
    .axpy = qb_cpu_axpy,
    .scale = qb_cpu_scale,
    .dot = qb_cpu_dot,
    .sumsq = qb_cpu_sumsq,
    .gelu_forward = qb_cpu_gelu_forward,
    .gelu_backward = qb_cpu_gelu_backward,
    .gelu_bias_backward = qb_cpu_gelu_bias_backward,
    .quick_gelu_forward = qb_cpu_quick_gelu_forward,
    .quick_gelu_bias_backward = qb_cpu_quick_gelu_bias_backward,
    .dropout_forward = qb_cpu_dropout_forward,
    .dropout_backward = qb_cpu_dropout_backward,
    .layernorm_forward = qb_cpu_layernorm_forward,
    .layernorm_backward = qb_cpu_layernorm_backward,
    .residual_layernorm_forward = qb_cpu_residual_layernorm_forward,
    .residual_layernorm_backward = qb_cpu_residual_layernorm_backward,
    .l2norm_forward = qb_cpu_l2norm_forward,
    .l2norm_backward = qb_cpu_l2norm_backward,
    .softmax_forward = qb_cpu_softmax_forward,
    .softmax_backward = qb_cpu_softmax_backward,
    .attention_forward = qb_cpu_attention_forward,
    .attention_backward = qb_cpu_attention_backward,
    .embedding_forward = qb_cpu_embedding_forward,
    .embedding_backward = qb_cpu_embedding_backward,
    .conv1d_forward = qb_cpu_conv1d_forward,
    .conv1d_backward = qb_cpu_conv1d_backward,
    .pool_mean_forward = qb_cpu_pool_mean_forward,
    .pool_mean_backward = qb_cpu_pool_mean_backward,
    .pool_max_forward = qb_cpu_pool_max_forward,
    .pool_max_backward = qb_cpu_pool_max_backward,
    .pool_last_forward = qb_cpu_pool_last_forward,
    .pool_last_backward = qb_cpu_pool_last_backward,
    .gate_forward = qb_cpu_gate_forward,
    .gate_backward = qb_cpu_gate_backward,
    .cross_entropy_forward = qb_cpu_cross_entropy_forward,
    .cross_entropy_backward = qb_cpu_cross_entropy_backward,
    .adamw_step = qb_cpu_adamw_step,
};
