# int8 and bf16 inference GEMMs (sdk/backend/cpu/gemm_lowp.c): every kernel
# path this CPU has (forced) against exact references and each other, the
# public API's int8/bf16 embeddings against f32, and a `qiao quantize` file
# (written by the fixture test qiao_quantize.base) read back.
set(QIAO_INT8_FILE ${CMAKE_CURRENT_BINARY_DIR}/qiao-base-int8.safetensors)
qiao_test(NAME test_gemm_int8 SOURCES unit/test_gemm_int8.c
  CASES int8_paths_exact int8_close_to_f32 bf16_all_paths force_switch api_embeddings quantized_file
  LABELS core api model)
target_compile_definitions(test_gemm_int8 PRIVATE QIAO_INT8_FILE="${QIAO_INT8_FILE}")
add_test(NAME qiao_quantize.base COMMAND $<TARGET_FILE:qiao_cli> quantize
  --model ${PROJECT_SOURCE_DIR}/models/qiao-base.safetensors --out ${QIAO_INT8_FILE})
set_tests_properties(qiao_quantize.base PROPERTIES FIXTURES_SETUP qiao_base_int8 LABELS "model;cli" TIMEOUT 120)
set_tests_properties(test_gemm_int8.quantized_file PROPERTIES FIXTURES_REQUIRED qiao_base_int8)
