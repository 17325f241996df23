# The shipped model's embeddings of fixed texts, pictures and recordings
# against a committed fixture: bit-identical on the machine kind that wrote
# it, within 2e-5 elsewhere (the test says why).
qiao_test(NAME test_embed_fixture SOURCES unit/test_embed_fixture.c LABELS model api TIMEOUT 120)
# The same with OpenBLAS's kernels as it chose them at load (qiao leaves a
# Prescott fallback alone: sdk/backend/cpu/blas_core.c), so on the machine
# kind that wrote the fixture the bit-for-bit comparison still runs even
# when qiao would otherwise pick better kernels.
add_test(NAME test_embed_fixture.openblas_as_loaded COMMAND test_embed_fixture)
set_tests_properties(test_embed_fixture.openblas_as_loaded PROPERTIES TIMEOUT 120 LABELS "model;api"
  ENVIRONMENT "OMP_NUM_THREADS=2;OPENBLAS_NUM_THREADS=2;QIAO_OPENBLAS_CORE=keep")
