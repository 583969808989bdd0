#!/usr/bin/python3
"""Which encoder can learn sub-mix coherence from scratch on a CPU? A quick PyTorch probe.

Trains a contrastive encoder on a `cocola data index` stem cache the way `cocola train` does (K windows of 5 s
from different tracks, two disjoint random stem sets summed per window, noise 1e-3 on the positives, the
reference's symmetric 2K x (2K - 1) cross-entropy, bilinear W, Adam) and prints, every --every steps, the
training loss and accuracy and the K = 2 accuracy on every test-split pair of items from different tracks.

Encoders:
  small   a 6-layer plain CNN (conv 3x3, BatchNorm, ReLU; 4 stride-2 layers), 0.5 M weights
  effnet  EfficientNet-B0 as the reference builds it (MBConv, squeeze-excitation, stochastic depth 0.2)

It exists because training `cocola train` from scratch stayed at chance for thousands of steps (docs/training.md
sections 5 and 6): this probe showed the small CNN learning within 200 steps on the same data, the EfficientNet
not, and the EfficientNet learning once its residual branches start at zero (--zero-init-residual), which
`cocola train` then got as an option. Input: log-mel (torchaudio), one channel, dB relative to the clip's peak.

Needs /usr/bin/python3 with python3-torch, python3-torchaudio and python3-numpy.
  /usr/bin/python3 tools/probe_architectures.py --cache ~/.cache/cocola/demo-XXXX --model small --steps 600
"""
import argparse
import json
import math
import os
import sys
import time

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import torchaudio
except ImportError as e:  # pragma: no cover - environment check
    sys.exit(f"probe_architectures: {e}; install python3-torch python3-torchaudio python3-numpy and run /usr/bin/python3")

WINDOW = 80000  # 5 s at 16 kHz
BLOCK = 1600    # the cache's activity block (0.1 s)


def fail(msg):
    sys.exit(f"probe_architectures: {msg}")


def load_cache(cache):
    """All tracks of a stem cache: int16 stems [S, n] with their scales and per-block mean squares."""
    index_path = os.path.join(cache, "index.json")
    if not os.path.isfile(index_path):
        fail(f"{cache}: not a stem cache (no index.json); make one with `cocola data index`")
    try:
        index = json.load(open(index_path))
    except json.JSONDecodeError as e:
        fail(f"{index_path}: corrupt JSON ({e})")
    if index.get("options", {}).get("format") != "int16" or index["options"].get("block") != BLOCK:
        fail(f"{index_path}: only int16 caches with 0.1 s blocks are read (cocola's default)")
    tracks = []
    for t in index["tracks"]:
        base = os.path.join(cache, "tracks", t["key"])
        S, n = len(t["stems"]), t["length"]
        try:
            pcm = np.fromfile(base + ".pcm", dtype=np.int16)
            act = np.fromfile(base + ".act", dtype=np.float32)
        except OSError as e:
            fail(f"{base}: {e}")
        if pcm.size != S * n or act.size % S:
            fail(f"{base}.pcm/.act: truncated (expected {S} stems of {n} samples)")
        scale = np.array([s["scale"] for s in t["stems"]], dtype=np.float32) / 32767.0
        tracks.append(dict(split=t["split"], id=t["id"], pcm=pcm.reshape(S, n), act=act.reshape(S, -1), scale=scale, n=n))
    return tracks


def active_stems(track, offset):
    """Stems above -50 dB in at least 20 % of the window's blocks (the cache's activity rule)."""
    a = track["act"][:, offset // BLOCK: offset // BLOCK + WINDOW // BLOCK]
    frac = (10 * np.log10(np.maximum(a, 1e-30)) > -50).mean(1)
    return [s for s in range(a.shape[0]) if frac[s] >= 0.2]


def sub_mix_pair(track, offset, rng):
    stems = active_stems(track, offset)
    if len(stems) < 2:
        return None
    stems = list(rng.permutation(stems))
    a = int(rng.integers(1, len(stems)))
    p = int(rng.integers(1, len(stems) - a + 1))
    seg = track["pcm"][:, offset: offset + WINDOW].astype(np.float32) * track["scale"][:, None]
    return seg[stems[:a]].sum(0), seg[stems[a: a + p]].sum(0)


MEL = torchaudio.transforms.MelSpectrogram(16000, n_fft=1024, win_length=400, hop_length=160, n_mels=64,
                                           f_min=60, f_max=7800)


def features(waves):
    """[N, WINDOW] -> [N, 1, 64, 501]: dB relative to each clip's peak, floored 80 dB below it."""
    d = 10 * torch.log10(torch.clamp(MEL(torch.from_numpy(np.stack(waves))), min=1e-10))
    d = d - d.amax(dim=(1, 2), keepdim=True)
    return torch.clamp(d, min=-80).unsqueeze(1)


def bn(c):  # efficientnet_pytorch's BatchNorm settings
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    def __init__(self, cin, cout, expand, kernel, stride, drop, zero_init):
        super().__init__()
        mid = cin * expand
        self.residual = stride == 1 and cin == cout
        self.drop = drop
        self.expand = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), bn(mid), nn.SiLU()) if expand != 1 else nn.Identity()
        self.depthwise = nn.Sequential(nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False), bn(mid), nn.SiLU())
        squeeze = max(1, int(cin * 0.25))
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(mid, squeeze, 1), nn.SiLU(), nn.Conv2d(squeeze, mid, 1), nn.Sigmoid())
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), bn(cout))
        if zero_init and self.residual:
            nn.init.zeros_(self.project[1].weight)

    def forward(self, x):
        h = self.depthwise(self.expand(x))
        h = self.project(h * self.se(h))
        if not self.residual:
            return h
        if self.training and self.drop > 0:
            keep = 1 - self.drop
            h = h * torch.floor(keep + torch.rand(h.shape[0], 1, 1, 1)) / keep
        return h + x


def efficientnet_b0(zero_init):
    # (expand, kernel, stride, in, out, repeats) of B0's seven stages
    stages = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
              (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]
    total = sum(s[5] for s in stages)
    layers = [nn.Sequential(nn.Conv2d(1, 32, 3, 2, 1, bias=False), bn(32), nn.SiLU())]
    i = 0
    for e, k, s, cin, cout, reps in stages:
        for r in range(reps):
            layers.append(MBConv(cin if r == 0 else cout, cout, e, k, s if r == 0 else 1, 0.2 * i / total, zero_init))
            i += 1
    layers.append(nn.Sequential(nn.Conv2d(320, 1280, 1, bias=False), bn(1280), nn.SiLU()))
    return nn.Sequential(*layers), 1280


def small_cnn():
    def layer(cin, cout, stride):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())
    return nn.Sequential(layer(1, 16, 2), layer(16, 32, 2), layer(32, 64, 2), layer(64, 128, 2),
                         layer(128, 128, 1), layer(128, 256, 1)), 256


class Encoder(nn.Module):
    """CNN -> global average pool -> dropout 0.1 -> linear -> LayerNorm -> tanh, and a bilinear W."""
    def __init__(self, kind, zero_init, w_std):
        super().__init__()
        self.cnn, width = efficientnet_b0(zero_init) if kind == "effnet" else small_cnn()
        self.projection = nn.Linear(width, 512)
        self.norm = nn.LayerNorm(512)
        self.w = nn.Parameter(torch.randn(512, 512) * w_std)

    def embed(self, x):
        h = F.dropout(self.cnn(x).mean(dim=(2, 3)), 0.1, self.training)
        return torch.tanh(self.norm(self.projection(h)))

    def similarity(self, a, b):
        return a @ self.w @ b.t()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", action="append", required=True, help="stem cache folder (repeat to mix several)")
    ap.add_argument("--model", choices=["small", "effnet"], default="small")
    ap.add_argument("--zero-init-residual", action="store_true", help="effnet: residual branches start at zero")
    ap.add_argument("--batch", type=int, default=16, help="K windows a step")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--w-std", type=float, default=0.01, help="std of the initial bilinear W")
    ap.add_argument("--every", type=int, default=50, help="steps between reports")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    if args.batch < 2 or args.steps < 1 or args.every < 1:
        fail("--batch must be at least 2, --steps and --every at least 1")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)

    tracks = [t for c in args.cache for t in load_cache(c) if t["n"] >= WINDOW]
    train = [t for t in tracks if t["split"] == "train"]
    test = [t for t in tracks if t["split"] == "test"]
    if len(train) < 2 * args.batch or not test:
        fail(f"{len(train)} training and {len(test)} test tracks of 5 s or more: too few for K = {args.batch}")

    # Test items: one pair per whole window of every test track (a fixed seed, whatever --seed is).
    test_rng = np.random.default_rng(1234)
    anchors, positives, owner = [], [], []
    for ti, t in enumerate(test):
        for off in range(0, t["n"] - WINDOW + 1, WINDOW):
            pair = sub_mix_pair(t, off, test_rng)
            if pair:
                anchors.append(pair[0]); positives.append(pair[1]); owner.append(ti)
    owner = np.array(owner)
    test_a, test_p = features(anchors), features(positives)
    print(f"{len(train)} training tracks, {len(owner)} test items from {len(test)} tracks", flush=True)

    net = Encoder(args.model, args.zero_init_residual, args.w_std)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)

    def k2_accuracy():
        # No dropout or stochastic depth, but BatchNorm on batch statistics: its running averages (momentum
        # 0.01) lag far behind the weights early on (cocola train measures them anew instead).
        net.eval()
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.train()
        with torch.no_grad():
            ea = torch.cat([net.embed(test_a[i:i + 32]) for i in range(0, len(owner), 32)])
            ep = torch.cat([net.embed(test_p[i:i + 32]) for i in range(0, len(owner), 32)])
            S = net.similarity(ea, ep).numpy()
        net.train()
        other = owner[:, None] != owner[None, :]
        return float(((np.diag(S)[:, None] > S) & other).sum() / other.sum())

    K, t0, window = args.batch, time.time(), []
    labels = torch.cat([torch.arange(K - 1, 2 * K - 1), torch.arange(K)])
    keep = ~torch.eye(2 * K, dtype=torch.bool)
    for step in range(1, args.steps + 1):
        A, P = [], []
        for i in rng.permutation(len(train)):
            t = train[i]
            pair = sub_mix_pair(t, int(rng.integers(0, (t["n"] - WINDOW) // BLOCK + 1)) * BLOCK, rng)
            if pair:
                A.append(pair[0]); P.append(pair[1] + rng.normal(0, 1e-3, WINDOW).astype(np.float32))
            if len(A) == K:
                break
        if len(A) < K:
            fail("too few training windows with 2 or more active stems")
        e = net.embed(torch.cat([features(A), features(P)]))
        S = net.similarity(e, e)[keep].reshape(2 * K, 2 * K - 1)
        loss = F.cross_entropy(S, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        window.append((loss.item(), (S.argmax(1) == labels).float().mean().item()))
        if step % args.every == 0:
            l, a = np.mean(window, 0)
            window = []
            print(f"step {step} loss {l:.3f} (chance {math.log(2 * K - 1):.3f}) acc {a:.3f} "
                  f"test K=2 {k2_accuracy():.3f} {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
