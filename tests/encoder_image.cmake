# The image encoder (modalities/image/encoder.c): gradcheck, thread
# determinism, config validation, the shipped configs, real photos end to end,
# the clip arch's class token.
qiao_test(NAME test_encoder_image SOURCES unit/test_encoder_image.c
  CASES gradcheck threads_bit_identical config_validation shipped_configs photos_end_to_end clip_class_token
  LABELS encoder TIMEOUT 120)
