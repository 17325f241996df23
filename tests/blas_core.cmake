# OpenBLAS's kernel choice on CPUs it does not know (sdk/backend/cpu/blas_core.c).
# Each case in its own process: the choice happens once, on the first context.
qiao_test(NAME test_blas_core SOURCES unit/test_blas_core.c CASES chosen ELSEWHERE kept LABELS backend)
add_test(NAME test_blas_core.kept COMMAND test_blas_core kept)
set_tests_properties(test_blas_core.kept PROPERTIES TIMEOUT 60 LABELS backend
  ENVIRONMENT "OMP_NUM_THREADS=2;OPENBLAS_NUM_THREADS=2;QIAO_OPENBLAS_CORE=keep")
