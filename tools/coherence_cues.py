#!/usr/bin/env python3
"""How far do simple hand-made cues go at telling coherent sub-mix pairs from others?

A yardstick for training runs: a COCOLA model that learnt anything musical should beat these numbers. For each
song folder of stems (WAV, as `cocola synth` writes them) it takes a few aligned 5 s windows, sums two disjoint
random non-empty sets of the active stems into an anchor and a positive (the paper's sub-mix pairs), and scores
every anchor against its own positive and the positives of other songs, K = 2, with three similarities:

  alignment      correlation of the onset envelopes (spectral flux): same beat grid at the same time
  tempo          cosine of the onset envelopes' autocorrelations (lags 0.15-2 s): shift-invariant rhythm
  pitch classes  cosine of 12-bin pitch-class profiles from a fine FFT: shared key and harmony

  tempo + pitch  the sum of the two cosines above

The last three are invariant to where in the window things happen, as a CNN with global pooling is; the first
is not. Needs numpy (Debian: /usr/bin/python3 with python3-numpy).

  /usr/bin/python3 tools/coherence_cues.py data/demo/test data/openmsx/test
"""
import argparse
import glob
import os
import random
import sys

import numpy as np

SR, WINDOW, HOP = 16000, 80000, 160


def read_wav(path):
    """Mono float samples of a 16-bit PCM or 32-bit float WAV (first channel)."""
    b = open(path, "rb").read()
    if b[:4] != b"RIFF" or b[8:12] != b"WAVE":
        sys.exit(f"error: {path}: not a RIFF/WAVE file")
    i, fmt, channels, bits = 12, None, 1, 16
    while i + 8 <= len(b):
        cid, size = b[i:i + 4], int.from_bytes(b[i + 4:i + 8], "little")
        if cid == b"fmt ":
            fmt = int.from_bytes(b[i + 8:i + 10], "little")
            channels = int.from_bytes(b[i + 10:i + 12], "little")
            bits = int.from_bytes(b[i + 22:i + 24], "little")
        elif cid == b"data":
            d = b[i + 8:i + 8 + size]
            if fmt == 3 and bits == 32:
                x = np.frombuffer(d[:len(d) // 4 * 4], np.float32)
            elif fmt == 1 and bits == 16:
                x = np.frombuffer(d[:len(d) // 2 * 2], np.int16).astype(np.float32) / 32768
            else:
                sys.exit(f"error: {path}: only 16-bit PCM and 32-bit float WAV are read (format {fmt}, {bits} bits)")
            return x[::channels].astype(np.float32)
        i += 8 + size + (size & 1)
    sys.exit(f"error: {path}: no data chunk")


def magnitude_frames(x, n=1024):
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(x, n // 2), n)[::HOP] * np.hanning(n)
    return np.abs(np.fft.rfft(frames, axis=1))


def unit(v):
    v = v - v.mean()
    return v / (np.linalg.norm(v) + 1e-9)


def onset_envelope(x):
    s = np.log1p(100 * magnitude_frames(x))
    return unit(np.maximum(0, np.diff(s, axis=0)).sum(1))


def tempo_profile(x):
    o = onset_envelope(x)
    r = np.correlate(o, o, "full")[len(o) - 1:]
    return unit(r[int(0.15 * SR / HOP):int(2.0 * SR / HOP)])


def pitch_classes(x, n=8192):
    blocks = x[:len(x) // n * n].reshape(-1, n) * np.hanning(n)
    spectrum = np.abs(np.fft.rfft(blocks, axis=1)).mean(0)
    f = np.fft.rfftfreq(n, 1 / SR)
    keep = (f > 60) & (f < 4000)
    pc = np.round(12 * np.log2(f[keep] / 440.0)).astype(int) % 12
    return unit(np.bincount(pc, weights=spectrum[keep], minlength=12))


def tempo_and_pitch(x):
    """Both shift-invariant cues at once: the dot product of two of these is the sum of the two cosines."""
    return np.concatenate([tempo_profile(x), pitch_classes(x)])


CUES = {"alignment": onset_envelope, "tempo": tempo_profile, "pitch classes": pitch_classes,
        "tempo + pitch": tempo_and_pitch}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("splits", nargs="+", help="folders of song folders of stem WAVs (e.g. data/demo/test)")
    ap.add_argument("--windows", type=int, default=3, help="windows per song")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    pairs = []
    for split in a.splits:
        songs = sorted(d for d in glob.glob(os.path.join(split, "*")) if os.path.isdir(d))
        if not songs:
            sys.exit(f"error: {split}: no song folders")
        for song in songs:
            stems = [read_wav(f) for f in sorted(glob.glob(os.path.join(song, "*.wav")))]
            if len(stems) < 2:
                continue
            n = min(len(s) for s in stems)
            for _ in range(a.windows):
                off = rng.randint(0, max(0, n - WINDOW))
                seg = [np.pad(s[off:off + WINDOW], (0, max(0, WINDOW - len(s[off:off + WINDOW])))) for s in stems]
                active = [i for i, s in enumerate(seg) if np.sqrt((s ** 2).mean()) > 1e-3]
                if len(active) < 2:
                    continue
                rng.shuffle(active)
                k = rng.randint(1, len(active) - 1)
                m = rng.randint(1, len(active) - k)
                pairs.append((song, sum(seg[i] for i in active[:k]), sum(seg[i] for i in active[k:k + m])))
    print(f"{len(pairs)} pairs from {len(set(p[0] for p in pairs))} songs; K = 2 accuracy of each cue:")
    for name, cue in CUES.items():
        anchors = np.stack([cue(p[1]) for p in pairs])
        positives = np.stack([cue(p[2]) for p in pairs])
        sim = anchors @ positives.T
        songs = np.array([p[0] for p in pairs])
        other = songs[:, None] != songs[None, :]
        wins = (np.diag(sim)[:, None] > sim) & other
        print(f"  {name:14s} {100 * wins.sum() / other.sum():5.1f} %")


if __name__ == "__main__":
    main()
