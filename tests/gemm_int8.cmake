# int8 and bf16 inference GEMMs (sdk/backend/cpu/gemm_lowp.c): every kernel
# path this CPU has (forced) against exact references and each other, and
# the public API's int8/bf16 embeddings against f32.
qiao_test(NAME test_gemm_int8 SOURCES unit/test_gemm_int8.c
  CASES int8_paths_exact int8_close_to_f32 bf16_all_paths force_switch api_embeddings
  LABELS core api model)
