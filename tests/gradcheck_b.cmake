# Gradient checks (plus forward references and 1-vs-2-thread determinism) for
# conv1d, pooling, gated mix, cross-entropy and InfoNCE.
qiao_test(NAME test_gradcheck_b SOURCES unit/test_gradcheck_b.c
  CASES conv1d conv1d_stride2_pad pool_mean pool_max gate cross_entropy
        cross_entropy_smoothing_ignore infonce
  LABELS gradcheck)
