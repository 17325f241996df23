# Heads (fusion/head.c, models/head.c): gradients, a text model with a
# whole-input and a per-token head checked end to end, bad configs.
qiao_test(NAME test_heads SOURCES unit/test_heads.c
  CASES mlp_gradients model_heads head_config_errors LABELS model)
