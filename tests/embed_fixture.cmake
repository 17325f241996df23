# The shipped model's embeddings of fixed texts, pictures and recordings
# against a committed fixture: bit-identical on the machine kind that wrote
# it, within 2e-5 elsewhere (the test says why).
qiao_test(NAME test_embed_fixture SOURCES unit/test_embed_fixture.c LABELS model api TIMEOUT 120)
