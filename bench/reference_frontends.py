#!/usr/bin/python3
"""Same-run baseline for bench_features: the reference front-ends in Python at 1 thread.

mel : torchaudio MelSpectrogram + AmplitudeToDB exactly as the official extractor configures them.
hpss: the calls librosa 0.10.1 makes (float64 STFT with numpy, scipy.ndimage.median_filter 31 along time and
      frequency, soft masks, Slaney mel, power_to_db), one clip at a time. librosa itself is not packaged in
      Debian; its median filters (the cost) are scipy's, so this is a fair stand-in.
Prints "<mel clips/s> <hpss clips/s>". reference_model.py imports mel_db and hpss from here.
"""
import os, time
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np
import torch, torchaudio
import scipy.ndimage, scipy.signal

mel = torch.nn.Sequential(
    torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=1024, win_length=400, hop_length=160,
                                         f_min=60.0, f_max=7800.0, n_mels=64),
    torchaudio.transforms.AmplitudeToDB())
def mel_db(x):
    with torch.no_grad():
        return mel(torch.from_numpy(np.ascontiguousarray(x, np.float32))[None])  # [1, 64, frames]

window = np.zeros(1024)
window[312:712] = scipy.signal.get_window("hann", 400, fftbins=True)
def slaney_bank():
    def hz2mel(f):
        f = np.asarray(f, float); m = f / (200 / 3)
        return np.where(f >= 1000, 15 + np.log(np.maximum(f, 1e-9) / 1000) / (np.log(6.4) / 27), m)
    def mel2hz(m):
        m = np.asarray(m, float)
        return np.where(m >= 15, 1000 * np.exp((np.log(6.4) / 27) * (m - 15)), m * (200 / 3))
    f = mel2hz(np.linspace(hz2mel(60), hz2mel(7800), 66)); fft = np.linspace(0, 8000, 513)
    ramps = f[:, None] - fft[None]; fd = np.diff(f)
    w = np.maximum(0, np.minimum(-ramps[:-2] / fd[:-1, None], ramps[2:] / fd[1:, None]))
    return (w * (2.0 / (f[2:] - f[:-2]))[:, None]).astype(np.float32)
bank = slaney_bank()
def hpss(x):
    xp = np.pad(x.astype(np.float64), 512)
    frames = np.lib.stride_tricks.sliding_window_view(xp, 1024)[::160] * window
    D = np.fft.rfft(frames, axis=1).T.astype(np.complex64)
    S = np.abs(D)
    H = scipy.ndimage.median_filter(S, size=(1, 31), mode="reflect")
    P = scipy.ndimage.median_filter(S, size=(31, 1), mode="reflect")
    Z = np.maximum(H, P); Z[Z < np.finfo(np.float32).tiny] = 1
    mh = (H / Z) ** 2; mp = (P / Z) ** 2; tot = mh + mp
    out = []
    for m in (mh / tot, mp / tot):
        M = bank @ (S * m) ** 2
        db = 10 * np.log10(np.maximum(1e-10, M)) - 10 * np.log10(max(1e-10, M.max()))
        out.append(np.maximum(db, db.max() - 80))
    return np.stack(out)

if __name__ == "__main__":
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    clips = [(0.3 * np.sin(2 * np.pi * (110 + 20 * c) * np.arange(80000) / 16000) + 0.05 * rng.standard_normal(80000)).astype(np.float32) for c in range(8)]
    t0 = time.perf_counter()
    for c in clips:
        mel_db(c)
    mel_rate = len(clips) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for c in clips[:4]:
        hpss(c)
    hpss_rate = 4 / (time.perf_counter() - t0)
    print(f"{mel_rate:.3f} {hpss_rate:.3f}")
