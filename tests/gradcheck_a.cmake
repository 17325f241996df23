# Gradient checks (plus forward references and 1-vs-2-thread determinism) for
# linear, norms, activations, dropout, residual, attention and embedding.
qiao_test(NAME test_gradcheck_a SOURCES unit/test_gradcheck_a.c
  CASES linear linear_nobias layernorm l2norm gelu softmax dropout residual
        attention_self_padmask attention_causal attention_cross attention_key_bias embedding
  LABELS gradcheck)
