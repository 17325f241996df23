# Mixed-precision training's bf16 GEMM (sdk/backend/cpu/gemm_bf16.c): every
# path this CPU has against the exact sum of the bf16-rounded operands and
# each other, for every transpose and several thread counts; the linear
# layer's forward and backward in bf16 against f32 within the stated bound;
# the trainer refusing bf16 where the path is capped below AVX512-BF16.
qiao_test(NAME test_gemm_bf16 SOURCES unit/test_gemm_bf16.c
  CASES paths_exact linear_mixed trainer_refuses LABELS core train)
