# Core: seeded RNG, f16/bf16 conversion, tensor table and arenas.
qiao_test(NAME test_core SOURCES unit/test_core.c
  CASES rng_determinism half_f16 half_bf16 tensor_table init_sincos
  LABELS core)
