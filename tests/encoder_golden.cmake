# The three encoders against their PyTorch peer (bench/peer/qiao_peer.py):
# tests/golden/make_encoder_fixture.py writes tests/data/encoder_golden.safetensors
# (parameters, padded inputs, float64 reference embeddings); the test reruns
# qiao's encoders on it. Running it needs no Python.
qiao_test(NAME test_encoder_golden SOURCES golden/test_encoder_golden.c
  CASES text image audio LABELS golden)
