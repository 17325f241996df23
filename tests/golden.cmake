# Golden tests: PyTorch computes a model (tests/golden/make_golden.py writes
# the committed fixture under tests/data), the C test recomputes it with
# qiao's layers and compares. Running them needs no Python.
qiao_test(NAME test_golden_block SOURCES golden/test_golden_block.c
  CASES forward gradients adamw_steps LABELS golden)
