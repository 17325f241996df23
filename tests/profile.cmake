# The per-layer profiler (sdk/core/profile.c) and the trainer's profile:
# nesting and sums, exact GEMM FLOPs, nothing recorded when off, two
# threads on one profiler, more GEMM shapes than scopes in the report, and
# a profiled run of a tiny transformer.
qiao_test(NAME test_profile SOURCES unit/test_profile.c
  CASES nesting gemm_flops off threads many_shapes trainer LABELS profile TIMEOUT 120)
