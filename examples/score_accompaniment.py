"""Which accompaniment fits a mix best? A notebook-style walk through the cocola Python module.

Run from the repository root after building (scripts/setup.sh):
    PYTHONPATH=build/python /usr/bin/python3 examples/score_accompaniment.py
Each "cell" below can be pasted into a notebook as is.
"""
# %% Setup: the shipped default model (the released COCOLA_HP_v1 architecture, hpss input)
import os
from pathlib import Path

import numpy as np

import cocola

audio_dir = Path(os.environ.get("COCOLA_EXAMPLE_AUDIO", Path(__file__).resolve().parents[1] / "tests/data/golden/inputs"))
model = cocola.Model()
print(model)

# %% A conditioning (a piano triad) and candidate accompaniments, as numpy arrays at 16 kHz
triad, sr = cocola.load_audio(audio_dir / "00_triad.wav")
candidates = {name: cocola.load_audio(audio_dir / f"{name}.wav")[0]
              for name in ["01_drums", "02_bass", "04_white_noise_m20dbfs", "07_log_chirp"]}

# %% The COCOLA score of each candidate against the conditioning: higher is more coherent
scores = {name: model.score(triad, x, sr) for name, x in candidates.items()}
for name, s in sorted(scores.items(), key=lambda kv: -kv[1]):
    print(f"{s:10.3f}  {name}")
print("best accompaniment:", max(scores, key=scores.get))

# %% Any rate and channel count: a stereo 44.1 kHz C major chord and a bass line on its root, as [channels, samples]
t = np.arange(6 * 44100) / 44100
chord = np.stack([0.2 * np.sin(2 * np.pi * 261.6 * t) + 0.2 * np.sin(2 * np.pi * 329.6 * t),
                  0.2 * np.sin(2 * np.pi * 392.0 * t) + 0.2 * np.sin(2 * np.pi * 261.6 * t)]).astype(np.float32)
bass = np.stack([0.4 * np.sin(2 * np.pi * 65.4 * t)] * 2).astype(np.float32)
score, per_window = model.score(chord, bass, 44100, per_window=True)  # resampled to 16 kHz as the CLI does
print(f"stereo 44.1 kHz chord + bass: {score:.3f} (windows: {np.round(per_window, 3).tolist()})")

# %% All at once: conditionings x candidates
matrix = model.score_matrix([triad], list(candidates.values()), sr)
print("score matrix:", np.round(matrix, 3).tolist())

# %% Embeddings and features, for your own analysis
emb = model.embed(triad, sr)                     # [windows, 512]
feats = cocola.features(triad, sr, "hpss")       # [2, 64, T]: harmonic and percussive log-mel
print("embedding", emb.shape, "features", feats.shape)
