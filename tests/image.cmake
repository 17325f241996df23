# Image decoding and preprocessing (modalities/image). The tests make PNG,
# BMP, GIF, TGA, WebP, TIFF and video files at run time with the ffmpeg CLI.
qiao_test(NAME test_image SOURCES unit/test_image.c LABELS image unit TIMEOUT 120
  CASES jpeg_matches_ffmpeg_decode lossless_formats_decode_exactly gif_first_frame_and_photo
        alpha_composited_gray_expanded memory_equals_file wrong_extension_is_sniffed
        video_frames_by_rate video_frames_by_count truncated_files_fail garbage_and_empty_fail
        over_pixel_limit_refused_early decode_on_four_threads center_crop_geometry letterbox_geometry
        normalization_values patch_layout)
target_link_libraries(test_image PRIVATE pthread)
