# Captioning a video through the public API (qiao_caption_video in
# sdk/api/caption_api.c) on a tiny caption model and a two-scene video made
# from two real photos with the ffmpeg CLI at test time: times and ends,
# each caption its frame's, scenes, cancel, every bad input. The `qiao
# caption --video` command line is tested in tests/cli.cmake.
qiao_test(NAME test_caption_video SOURCES unit/test_caption_video.c
  CASES video cancel bad_input
  LABELS api TIMEOUT 300)
