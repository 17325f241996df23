"""Peer for bench_audio: torchaudio's log-mel on the same 16 kHz PCM.

Run by build/bin/bench_audio (one line of output: "<ms per clip> <frames>").
Uses Debian's python3-torchaudio (scripts/install-deps.sh --peer), one thread,
the same transform as qiao's defaults: periodic Hann, n_fft 400, hop 160,
80 Slaney mels with Slaney norm, 0..8000 Hz, power 2, center + reflect, then
natural log with a 1e-10 floor. Timing as bench_audio: best of 5 runs, each
looping for at least 0.3 s.
"""
import sys
import time

import numpy as np
import torch
import torchaudio

torch.set_num_threads(1)
pcm = torch.from_numpy(np.load(sys.argv[1]).astype(np.float32))
mel = torchaudio.transforms.MelSpectrogram(
    sample_rate=16000, n_fft=400, win_length=400, hop_length=160, f_min=0.0, f_max=8000.0,
    n_mels=80, window_fn=torch.hann_window, power=2.0, center=True, pad_mode="reflect",
    norm="slaney", mel_scale="slaney")


def once():
    return torch.log(torch.clamp(mel(pcm), min=1e-10))


frames = once().shape[-1]
best = float("inf")
for _ in range(5):
    n, t0 = 0, time.perf_counter()
    while True:
        once()
        n += 1
        t = time.perf_counter() - t0
        if t >= 0.3:
            break
    best = min(best, t / n)
print(f"{best * 1e3:.4f} {frames}")
