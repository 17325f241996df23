# The public embedding API (sdk/api/embed_api.c): a tiny model with the test
# tokenizer, written at test time, used for text, images and audio from
# paths, memory and raw buffers, from four threads at once, and with bad
# arguments and bad inputs.
qiao_test(NAME test_embed_api SOURCES unit/test_embed_api.c
  CASES load_path_and_memory bad_models texts_zh_en images_all_inputs audio_all_inputs long_audio bad_input
        session_memory threads_deterministic cosine model_params
  LABELS api TIMEOUT 120)
