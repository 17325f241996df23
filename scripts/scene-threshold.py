#!/usr/bin/env python3
"""Measure the scene-change measure of `qiao caption --video --scenes` on
clips made from real photos, to choose and check its default threshold.

usage: scripts/scene-threshold.py QIAO CAPTION_MODEL PHOTO_DIR [--out DIR] [--seconds S]

For each kind of camera work (a still camera, a zoom, a pan, a shaking hand,
flickering light) the photos are shuffled and each is made into a clip of S
seconds (default 6) at 25 fps, 640x480, with sensor noise, encoded with
x264 at CRF 30; the clips are joined into one video, so every S seconds is a
cut between two unrelated photos and everything else is one shot. qiao
samples it at 1 fps and reports each frame's change from the previous one
(`--json`, without --scenes): the script prints the quantiles of the change
within shots and at cuts. Then `--scenes` at several thresholds: the share
of cuts that start a caption and the captions started inside a shot per
minute. Any caption model works (the captions are not read): the tiny one
`test_caption_api --write-fixture DIR` writes is enough. Needs ffmpeg.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

KINDS = {
    "still": "scale=640:480,setsar=1,fps=25",
    "zoom": "scale=1280:960,zoompan=z='1+in*0.004':d=1:x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':s=640x480:fps=25",
    "pan": "scale=1280:960,zoompan=z=1.4:d=1:x='on*2':y='ih/2-(ih/zoom/2)':s=640x480:fps=25",
    "shake": "scale=704:528,setsar=1,fps=25,crop=640:480:x='32+24*sin(n*1.3)+20*sin(n*0.37)':y='24+20*cos(n*1.1)'",
    "flicker": "scale=640:480,setsar=1,fps=25,eq=brightness='0.06*sin(t*2.1)':eval=frame",
}
THRESHOLDS = (0.1, 0.125, 0.15, 0.2, 0.25)


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def make_video(kind, photos, seconds, out, tmp):
    parts = []
    for i, p in enumerate(photos):
        part = os.path.join(tmp, f"{kind}-{i:03d}.mp4")
        ffmpeg("-loop", "1", "-framerate", "25", "-i", p, "-t", str(seconds), "-vf",
               KINDS[kind] + ",noise=alls=12:allf=t,format=yuv420p", "-c:v", "libx264", "-preset", "ultrafast",
               "-crf", "30", part)
        parts.append(part)
    listing = os.path.join(tmp, f"{kind}.txt")
    with open(listing, "w") as f:
        f.writelines(f"file '{p}'\n" for p in parts)
    ffmpeg("-f", "concat", "-safe", "0", "-i", listing, "-c", "copy", out)
    for p in parts:
        os.remove(p)


def captions(qiao, model, video, *extra):
    r = subprocess.run([qiao, "caption", "--model", model, "--video", video, "--max-frames", "100000", "--json",
                        *extra], check=True, capture_output=True, text=True)
    return json.loads(r.stdout)["captions"]


def quantiles(v):
    v = sorted(v)
    return " ".join(f"{v[min(len(v) - 1, int(p * len(v)))]:.3f}" for p in (0, 0.01, 0.05, 0.5, 0.95, 0.99, 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("qiao")
    ap.add_argument("model")
    ap.add_argument("photos")
    ap.add_argument("--out", help="keep the videos here (default: a temporary folder)")
    ap.add_argument("--seconds", type=int, default=6)
    a = ap.parse_args()
    photos = sorted(os.path.join(a.photos, f) for f in os.listdir(a.photos) if f.lower().endswith((".jpg", ".png")))
    if len(photos) < 2:
        sys.exit(f"{a.photos}: need at least two photos")
    tmp = tempfile.mkdtemp(prefix="qiao-scenes-")
    out = a.out or tmp
    os.makedirs(out, exist_ok=True)
    print(f"{len(photos)} photos, {a.seconds} s each; change quantiles: min p1 p5 p50 p95 p99 max")
    rng = random.Random(7)
    for kind in KINDS:
        order = photos[:]
        rng.shuffle(order)
        video = os.path.join(out, f"{kind}.mp4")
        make_video(kind, order, a.seconds, video, tmp)
        every = captions(a.qiao, a.model, video)
        cut = [c["change"] for c in every if c["time"] > 0 and round(c["time"]) % a.seconds == 0]
        shot = [c["change"] for c in every if round(c["time"]) % a.seconds != 0]
        print(f"{kind:8s} within a shot, 1 s apart: {quantiles(shot)}")
        print(f"{kind:8s} at a cut:                 {quantiles(cut)}")
        n_cuts, minutes = len(photos) - 1, len(photos) * a.seconds / 60
        for t in THRESHOLDS:
            kept = captions(a.qiao, a.model, video, "--scenes", "--scene-threshold", str(t))
            at_cut = sum(1 for c in kept if c["time"] > 0 and round(c["time"]) % a.seconds == 0)
            inside = sum(1 for c in kept if round(c["time"]) % a.seconds != 0)
            print(f"{kind:8s} --scene-threshold {t:<5}: {at_cut}/{n_cuts} cuts kept, "
                  f"{inside / minutes:.2f} captions a minute inside shots")
    if not a.out:
        subprocess.run(["rm", "-rf", tmp], check=True)


if __name__ == "__main__":
    main()
