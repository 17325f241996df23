# The fused training kernels (GELU + bias backward, residual + LayerNorm,
# the overwriting backwards) against the unfused sequences, to the bit, and
# the optimizer's frozen-tensor skips and clip factor folded into AdamW.
qiao_test(NAME test_fused SOURCES unit/test_fused.c
  CASES gelu_bias_backward residual_layernorm_forward residual_layernorm_backward attention_backward_first linear_backward_first block_scratch optim_frozen clip_folded_into_adamw
  LABELS optim)
