# Caption metrics (models/captioning/metrics.c): BLEU-1..4 and CIDEr-D
# against pycocoevalcap on the committed fixture tests/data/caption_metrics.json
# (tests/golden/make_caption_metrics_fixture.py writes it; running the test
# needs no Python), the caption tokenization in both languages, bad input.
qiao_test(NAME test_caption_metrics SOURCES golden/test_caption_metrics.c
  CASES bleu_cider tokenize bad_input LABELS golden TIMEOUT 60)

# The caption objective (models/captioning/train.c): teacher forcing's
# layout, a tiny decoder that learns a generated split's captions and
# resumes from its checkpoint, bad recipes and models.
qiao_test(NAME test_caption_train SOURCES unit/test_caption_train.c
  CASES teacher learns_and_resumes errors generate generate_places places grows graft LABELS train TIMEOUT 300)
target_link_libraries(test_caption_train PRIVATE qiao_datasets)
