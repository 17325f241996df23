# Golden tests: PyTorch computes a model (tests/golden/make_golden.py writes
# the committed fixture under tests/data), the C test recomputes it with
# qiao's layers and compares. Running them needs no Python.
qiao_test(NAME test_golden_block SOURCES golden/test_golden_block.c
  CASES forward gradients adamw_steps LABELS golden)
# The cross-modal fuser (fusion/) against its PyTorch peer
# (bench/peer/fusion_peer.py): tests/golden/make_fusion_fixture.py writes
# tests/data/fusion_golden.safetensors (z, w and every gradient in each
# weighting mode, float64 reference).
qiao_test(NAME test_fusion_golden SOURCES golden/test_fusion_golden.c
  CASES learned heuristic equal LABELS golden)
# The caption decoder (fusion/decoder.c) against its PyTorch peer
# (bench/peer/decoder_peer.py): tests/golden/make_decoder_fixture.py writes
# tests/data/decoder_golden.safetensors (logits and every gradient, tied and
# untied output, float64 reference); the cache cases step the KV cache over
# the same ids.
qiao_test(NAME test_decoder_golden SOURCES golden/test_decoder_golden.c
  CASES forward_tied forward_untied cache_tied cache_untied LABELS golden)
# The post-norm encoder trunk against transformers' own BertModel and
# XLMRobertaModel (issue 17): tests/golden/make_bert_fixture.py writes
# tests/data/bert_golden.safetensors with scripts/qiao_hf.py's name mapping.
qiao_test(NAME test_bert_golden SOURCES golden/test_bert_golden.c
  CASES bert xlmr bert_text xlmr_text LABELS golden)
# Converted Hugging Face models end to end (issue 17): scripts/convert-hf.py's
# files of a tiny random XLMRobertaModel and BertModel through qiao_model_load
# and qiao_embed_texts against transformers
# (tests/golden/make_hf_model_fixture.py writes tests/data/hf/).
qiao_test(NAME test_hf_models SOURCES golden/test_hf_models.c CASES xlmr bert clip cnclip LABELS golden)

# The converted CLIP fine-tuned by the generic trainer, text-image only
# (tests/cli/clip_finetune.cmake says what it checks), on 64 shapes scenes.
set(QIAO_CLIP_TUNE ${CMAKE_CURRENT_BINARY_DIR}/clip-tune)
add_test(NAME clip_finetune.data
  COMMAND qiao_cli dataset shapes --n 64 --seed 5 --langs en --out ${QIAO_CLIP_TUNE}/data)
set_tests_properties(clip_finetune.data PROPERTIES FIXTURES_SETUP clip_tune_data LABELS "golden;train" TIMEOUT 120)
add_test(NAME clip_finetune
  COMMAND ${CMAKE_COMMAND} -DPROG=$<TARGET_FILE:qiao_cli> -DMODEL=${CMAKE_CURRENT_SOURCE_DIR}/data/hf/clip/model.safetensors
          -DDATA=${QIAO_CLIP_TUNE}/data -DOUT=${QIAO_CLIP_TUNE}/out -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/clip_finetune.cmake)
set_tests_properties(clip_finetune PROPERTIES FIXTURES_REQUIRED clip_tune_data LABELS "golden;train" TIMEOUT 300)
