# The audio encoder (modalities/audio/encoder.c): gradcheck through the masked
# conv stem, thread determinism, config validation, the shipped configs, real
# clips (FSDD WAV, ESC Ogg) decoded and log-mel'd end to end, alone vs padded.
qiao_test(NAME test_encoder_audio SOURCES unit/test_encoder_audio.c
  CASES gradcheck threads_bit_identical config_validation shipped_configs clips_end_to_end
  LABELS encoder TIMEOUT 120)
