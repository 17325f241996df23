# The encoder trunk shared by the text, image and audio encoders.
qiao_test(NAME test_encoder_trunk SOURCES unit/test_encoder_trunk.c
  CASES gradients token_gradients unit_norm_and_threads padding_independent bad_dims max_pool pool_config dirty_scratch
        imported_variants LABELS encoder)
