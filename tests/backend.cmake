# The CPU backend: GEMM bits independent of the thread count.
qiao_test(NAME test_backend SOURCES unit/test_backend.c CASES gemm_threads LABELS core)
