# AdamW vs a double-precision torch.optim.AdamW transcription, gradient-norm
# clipping, the warmup + cosine schedule, and gradient accumulation.
qiao_test(NAME test_optim SOURCES unit/test_optim.c
  CASES adamw_reference clip_grad_norm lr_schedule grad_accumulation
  LABELS optim)
