# Memory limits (tests/unit/test_limits.c): each modality through the public
# API in a child under RLIMIT_AS, which must end in QIAO_ERR_OUT_OF_MEMORY
# within seconds (the parent kills a child that hangs after 30 s). Skipped
# under AddressSanitizer, whose shadow memory rules out an address-space limit.
qiao_test(NAME test_limits SOURCES unit/test_limits.c
  CASES text_blas_buffer image_png audio_blas_buffer
  LABELS api TIMEOUT 120)
