#!/usr/bin/python3
"""Writes the log-mel reference fixture for tests/unit/test_audio.c.

Regenerate (needs Debian's python3-torch/torchaudio, so the system interpreter):

    /usr/bin/python3 tests/golden/make_mel_fixture.py tests/data/audio/mel_fixture.safetensors

For each clip (an 8 kHz FSDD WAV and a 44.1 kHz ESC-10 Ogg Vorbis clip, both
in tests/data/audio/):
    <clip>.pcm16k  (n,)          the clip decoded by torchaudio (sox_io) and
                                 resampled to 16 kHz by
                                 torchaudio.functional.resample (float64,
                                 default sinc_interp_hann, width 6, rolloff
                                 0.99), stored as float32
    <clip>.mel     (frames, 80)  log(clamp(MelSpectrogram(pcm16k), min=1e-10))

The mel is computed from exactly the stored float32 PCM, in float64, with
    torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=400,
        win_length=400, hop_length=160, f_min=0, f_max=8000, n_mels=80,
        window_fn=torch.hann_window (periodic), power=2.0, center=True,
        pad_mode='reflect', norm='slaney', mel_scale='slaney')
so the C test, which feeds the same PCM to qiao_mel_compute, checks the mel
alone. Resampling is checked separately: the C test decodes the clip file
with qiao and compares its 16 kHz PCM with pcm16k (a different resampler,
libswresample, so a correlation, not equality). The script also prints how
far a float32 torchaudio run lands from the float64 reference, the error an
f32 implementation is expected to show.

The file is safetensors, written by hand (8-byte little-endian header length,
JSON header padded with spaces to a multiple of 8, raw little-endian data).
"""
import json
import os
import struct
import sys

import numpy as np
import torch
import torchaudio

FORMAT_VERSION = "1"
HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data", "audio")
CLIPS = [("fsdd", "fsdd_3_jackson_0.wav"), ("esc", "esc10_1-110389-A.ogg")]
MEL = dict(sample_rate=16000, n_fft=400, win_length=400, hop_length=160, f_min=0.0, f_max=8000.0,
           n_mels=80, window_fn=torch.hann_window, power=2.0, center=True, pad_mode="reflect",
           norm="slaney", mel_scale="slaney")
FLOOR = 1e-10


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    blobs, off = [], 0
    for name, arr in tensors:
        arr = np.ascontiguousarray(arr, dtype="<f4")
        b = arr.tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(DATA, "mel_fixture.safetensors")
    mel64 = torchaudio.transforms.MelSpectrogram(**MEL).to(torch.float64)
    mel32 = torchaudio.transforms.MelSpectrogram(**MEL)
    tensors, meta = [], {"format_version": FORMAT_VERSION, "floor": repr(FLOOR),
                         "params": json.dumps({k: v for k, v in MEL.items() if k != "window_fn"})}
    for key, name in CLIPS:
        wav, sr = torchaudio.load(os.path.join(DATA, name))
        x = wav.mean(0).to(torch.float64)
        pcm = torchaudio.functional.resample(x, sr, 16000).to(torch.float32)
        ref = torch.log(torch.clamp(mel64(pcm.to(torch.float64)), min=FLOOR)).T  # (frames, 80)
        f32 = torch.log(torch.clamp(mel32(pcm), min=FLOOR)).T.to(torch.float64)
        lin = torch.exp(ref)
        sel = lin > FLOOR * 100
        print(f"{key}: {name} {sr} Hz, {x.numel()} -> {pcm.numel()} samples, mel {tuple(ref.shape)}; "
              f"torchaudio f32 vs f64 max |dlog| where mel > 100*floor: "
              f"{(f32 - ref)[sel].abs().max().item():.3g}, min mel {lin.min().item():.3g}")
        meta[key + ".file"] = name
        meta[key + ".source_rate"] = str(sr)
        tensors.append((key + ".pcm16k", pcm.numpy()))
        tensors.append((key + ".mel", ref.to(torch.float32).numpy()))
    write_safetensors(out, tensors, meta)
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
