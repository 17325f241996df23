# The inference GEMM on weights packed once (sdk/backend/cpu/gemm_packed.c):
# against a double reference, bits independent of the thread count, OpenBLAS
# for every call it does not match, and the API's embeddings with packing.
qiao_test(NAME test_gemm_packed SOURCES unit/test_gemm_packed.c
  CASES kernel_reference column_range linear_fused linears_shared_input fallback set_errors api_embeddings
  LABELS core api)
