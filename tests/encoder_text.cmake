# The text encoder (hybrid char + piece embedding front end + trunk).
qiao_test(NAME test_encoder_text SOURCES unit/test_encoder_text.c
  CASES gradients mix_switch config shipped_configs end_to_end padding_independent threads bad_input
  LABELS encoder)
