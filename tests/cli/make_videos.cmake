# Makes the videos `qiao caption --video` is tested on, with the ffmpeg
# command line (a declared test dependency, as in tests/unit/test_image.c),
# from two real photos, so nothing binary is committed:
#
#   cmake -DDIR=<out> -DPHOTO_A=<jpg> -DPHOTO_B=<jpg> -P make_videos.cmake
#
#   two.mp4     2 s of photo A, then 2 s of photo B, 10 fps, with sensor noise
#               (x264 at CRF 30): one cut, at 2 s
#   moving.mp4  3 s of A zooming in slowly, then 3 s of B panning, with noise:
#               one cut, at 3 s; the camera moves but no frame is a new scene
#   two.mkv     two.mp4 in Matroska; trunc.mkv its first half (a player shows
#               the first scene); trunc.mp4 two.mp4's first half (its index is
#               at the end, so nothing is left to read)
#   zero.avi    a video stream without a single frame
#   empty.mp4   0 bytes
cmake_minimum_required(VERSION 3.25)
file(REMOVE_RECURSE ${DIR})
file(MAKE_DIRECTORY ${DIR})

function(ffmpeg)
  execute_process(COMMAND ffmpeg -nostdin -hide_banner -loglevel error -y ${ARGN}
    RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(NOT rc STREQUAL "0")
    message(FATAL_ERROR "ffmpeg failed (${rc}; the ffmpeg CLI is a required test dependency): ffmpeg ${ARGN}\n${err}")
  endif()
endfunction()

# One shot: `secs` seconds of `photo` through the filters `vf` (which end at
# 160x120, 10 fps), with sensor noise, in H.264.
set(noise "noise=alls=12:allf=t,format=yuv420p")
function(shot photo secs vf out)
  ffmpeg(-loop 1 -framerate 10 -t ${secs} -i ${photo} -vf "${vf},setsar=1,${noise}"
    -c:v libx264 -preset ultrafast -crf 30 ${out})
endfunction()
# Shots joined as they are (the concat demuxer, no re-encoding): a cut at each join.
function(join out)
  set(list "")
  foreach(part ${ARGN})
    string(APPEND list "file '${part}'\n")
  endforeach()
  file(WRITE ${out}.txt "${list}")
  ffmpeg(-f concat -safe 0 -i ${out}.txt -c copy ${out})
  file(REMOVE ${out}.txt ${ARGN})
endfunction()

shot(${PHOTO_A} 2 "scale=160:120" ${DIR}/two-a.mp4)
shot(${PHOTO_B} 2 "scale=160:120" ${DIR}/two-b.mp4)
join(${DIR}/two.mp4 ${DIR}/two-a.mp4 ${DIR}/two-b.mp4)
# zoompan works on a larger picture so that the slow zoom and pan move the
# source by whole pixels from frame to frame
shot(${PHOTO_A} 3
  "scale=640:480,zoompan=z='1+in*0.004':d=1:x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':s=160x120:fps=10"
  ${DIR}/moving-a.mp4)
shot(${PHOTO_B} 3 "scale=640:480,zoompan=z=1.25:d=1:x='in*2':y='ih/2-(ih/zoom/2)':s=160x120:fps=10"
  ${DIR}/moving-b.mp4)
join(${DIR}/moving.mp4 ${DIR}/moving-a.mp4 ${DIR}/moving-b.mp4)
ffmpeg(-i ${DIR}/two.mp4 -c copy ${DIR}/two.mkv)
ffmpeg(-f lavfi -i color=c=red:s=64x64:r=10:d=1 -t 0 -c:v libx264 ${DIR}/zero.avi)
file(WRITE ${DIR}/empty.mp4 "")

# The first half of a file's bytes.
function(first_half from to)
  file(SIZE ${from} n)
  math(EXPR half "${n} / 2")
  execute_process(COMMAND head -c ${half} ${from} OUTPUT_FILE ${to} RESULT_VARIABLE rc)
  file(SIZE ${to} m)
  if(NOT rc STREQUAL "0" OR NOT m EQUAL half)
    message(FATAL_ERROR "could not write the first ${half} bytes of ${from} to ${to} (wrote ${m})")
  endif()
endfunction()
first_half(${DIR}/two.mp4 ${DIR}/trunc.mp4)
first_half(${DIR}/two.mkv ${DIR}/trunc.mkv)
message(STATUS "videos in ${DIR}")
