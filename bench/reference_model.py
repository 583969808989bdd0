#!/usr/bin/python3
"""Same-run baseline for bench_model and bench_train: the COCOLA network in eager PyTorch (Debian's python3-torch).

What the official code runs, written here from its published structure (efficientnet_pytorch's EfficientNet-B0
without its top: static "same" padding for 224x224 images, BatchNorm eps 1e-3, swish, squeeze-and-excitation,
drop connect 0.2 * block / 16; then dropout, linear 1280 -> 512, LayerNorm, tanh, bilinear similarity), channels
first as eager PyTorch runs it, loading the same .safetensors weights as the C++ side.

  reference_model.py embed   MODEL FEATS.npy OUT.npy          embeddings of features [N, C, 64, T] (parity check)
  reference_model.py model   MODEL --pairs P [--threads T]    prints pairs/s: embed 2P windows + score P pairs
  reference_model.py score   MODEL --pairs-csv CSV [--threads T] prints pairs/s: WAV -> front-end -> model -> score
  reference_model.py train   MODEL --batch K [--steps S] [--threads T]  prints s/step (forward + backward)
"""
import json
import os
import struct
import sys
import time

# One BLAS thread per torch thread, as the C++ side sets it: OpenBLAS's own pool beside torch's would
# oversubscribe the cores (10x slower 1x1 convolutions here) and make the baseline unfairly slow.
_threads = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "1"
os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = _threads

import numpy as np
import torch
import torch.nn.functional as F

IMAGE = 224
# (kernel, stride, expand ratio, in, out) of EfficientNet-B0's 16 MBConv blocks.
BLOCKS = [(3, 1, 1, 32, 16), (3, 2, 6, 16, 24), (3, 1, 6, 24, 24), (5, 2, 6, 24, 40), (5, 1, 6, 40, 40),
          (3, 2, 6, 40, 80), (3, 1, 6, 80, 80), (3, 1, 6, 80, 80), (5, 1, 6, 80, 112), (5, 1, 6, 112, 112),
          (5, 1, 6, 112, 112), (5, 2, 6, 112, 192), (5, 1, 6, 192, 192), (5, 1, 6, 192, 192), (5, 1, 6, 192, 192),
          (3, 1, 6, 192, 320)]


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        body = f.read()
    meta = header.pop("__metadata__", {})
    kinds = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    tensors = {}
    for name, t in header.items():
        a, b = t["data_offsets"]
        arr = np.frombuffer(body[a:b], dtype=kinds[t["dtype"]]).reshape(t["shape"])
        tensors[name] = torch.from_numpy(arr.astype(np.float32) if t["dtype"] == "F16" else arr.copy())
    return tensors, meta


def same_padding(image, kernel, stride):
    out = (image + stride - 1) // stride
    total = max((out - 1) * stride + kernel - image, 0)
    return (total // 2, total - total // 2, total // 2, total - total // 2)


class Conv(torch.nn.Conv2d):
    """A convolution with a fixed zero border computed for the network's nominal image size."""

    def __init__(self, cin, cout, k, stride=1, groups=1, bias=False, image=None):
        super().__init__(cin, cout, k, stride=stride, groups=groups, bias=bias)
        self.border = same_padding(image, k, stride) if image is not None and k > 1 else None

    def forward(self, x):
        if self.border is not None:
            x = F.pad(x, self.border)
        return super().forward(x)


def bn(c):
    return torch.nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


def swish(x):
    return x * torch.sigmoid(x)


class MBConv(torch.nn.Module):
    def __init__(self, k, stride, expand, cin, cout, image, drop):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv, self._bn0 = Conv(cin, mid, 1), bn(mid)
        self._depthwise_conv = Conv(mid, mid, k, stride, groups=mid, image=image)
        self._bn1 = bn(mid)
        se = max(1, int(cin * 0.25))
        self._se_reduce, self._se_expand = Conv(mid, se, 1, bias=True), Conv(se, mid, 1, bias=True)
        self._project_conv, self._bn2 = Conv(mid, cout, 1), bn(cout)
        self.residual = stride == 1 and cin == cout
        self.drop = drop

    def forward(self, inputs):
        x = inputs
        if self.expand:
            x = swish(self._bn0(self._expand_conv(x)))
        x = swish(self._bn1(self._depthwise_conv(x)))
        s = self._se_expand(swish(self._se_reduce(F.adaptive_avg_pool2d(x, 1))))
        x = torch.sigmoid(s) * x
        x = self._bn2(self._project_conv(x))
        if self.residual:
            if self.training and self.drop > 0:
                keep = 1 - self.drop
                x = x / keep * torch.floor(keep + torch.rand(x.shape[0], 1, 1, 1))
            x = x + inputs
        return x


class EfficientNetB0(torch.nn.Module):
    def __init__(self, cin):
        super().__init__()
        self._conv_stem, self._bn0 = Conv(cin, 32, 3, 2, image=IMAGE), bn(32)
        image = (IMAGE + 1) // 2
        blocks = []
        for i, (k, s, e, a, b) in enumerate(BLOCKS):
            blocks.append(MBConv(k, s, e, a, b, image, 0.2 * i / len(BLOCKS)))
            image = (image + s - 1) // s
        self._blocks = torch.nn.ModuleList(blocks)
        self._conv_head, self._bn1 = Conv(320, 1280, 1), bn(1280)

    def forward(self, x):
        x = swish(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        x = swish(self._bn1(self._conv_head(x)))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


class Cocola(torch.nn.Module):
    def __init__(self, cin, dim=512, dropout=0.1):
        super().__init__()
        self.effnet = EfficientNetB0(cin)
        self.projection = torch.nn.Linear(1280, dim)
        self.layer_norm = torch.nn.LayerNorm(dim)
        self.w = torch.nn.Parameter(torch.zeros(dim, dim))
        self.dropout = dropout

    def embed(self, x):
        x = F.dropout(self.effnet(x), self.dropout, self.training)
        return torch.tanh(self.layer_norm(self.projection(x)))

    def similarity(self, a, b):
        return a @ self.w @ b.t()


def load_model(path):
    tensors, meta = load_safetensors(path)
    cin = tensors["encoder.encoder.model.0._conv_stem.weight"].shape[1]
    dim = tensors["encoder.projection.weight"].shape[0]
    m = Cocola(cin, dim)
    state = {}
    for name, t in tensors.items():
        if name.startswith("encoder.encoder.model.0."):
            state["effnet." + name[len("encoder.encoder.model.0."):]] = t
        elif name.startswith("encoder.projection."):
            state["projection." + name[len("encoder.projection."):]] = t
        elif name == "similarity.w":
            state["w"] = t
        else:
            state[name] = t
    if "w" not in state:  # a cosine model: the benchmark's bilinear product then uses the identity
        state["w"] = torch.eye(dim)
    m.load_state_dict(state)
    return m.eval()


def load_npy(path):
    return torch.from_numpy(np.load(path).astype(np.float32))


def read_wav_mono(path):
    import scipy.io.wavfile
    rate, x = scipy.io.wavfile.read(path)
    if rate != 16000:
        raise SystemExit(f"{path}: the reference reads 16 kHz WAVs only")
    if x.dtype == np.int16:
        x = x.astype(np.float32) / 32768.0
    x = x.astype(np.float32)
    return x.mean(1) if x.ndim == 2 else x


def main():
    args = sys.argv[1:]
    opt = {}
    pos = []
    i = 0
    while i < len(args):
        if args[i].startswith("--"):
            opt[args[i][2:]] = args[i + 1]
            i += 2
        else:
            pos.append(args[i])
            i += 1
    torch.set_num_threads(int(opt.get("threads", 1)))
    torch.manual_seed(0)
    mode, model_path = pos[0], pos[1]
    m = load_model(model_path)
    cin = m.effnet._conv_stem.in_channels
    if mode == "embed":
        with torch.no_grad():
            e = m.embed(load_npy(pos[2]))
        np.save(pos[3], e.numpy().astype(np.float32))
    elif mode == "model":
        P = int(opt.get("pairs", 4))
        feats = torch.randn(2 * P, cin, 64, 501) * 10 - 40
        best = 0.0
        for rep in range(3):  # the first is the warm-up
            t0 = time.perf_counter()
            with torch.no_grad():
                # In chunks of 4 windows, as the C++ side embeds on the CPU: eager PyTorch is also 2-3x faster
                # per window in small batches than in one batch of 32 (cache), so this is its fair best.
                e = torch.cat([m.embed(feats[i:i + 4]) for i in range(0, 2 * P, 4)])
                m.similarity(e[:P], e[P:]).diagonal()
            if rep:
                best = max(best, P / (time.perf_counter() - t0))
        print(f"{best:.4f}")
    elif mode == "score":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import reference_frontends as rf
        rows = [l.strip().split(",") for l in open(opt["pairs-csv"]) if l.strip()]
        frontend = rf.mel_db if cin == 1 else rf.hpss
        def run():
            scores = []
            for a, b in rows:
                fa = torch.as_tensor(np.asarray(frontend(read_wav_mono(a)[:80000]), np.float32))
                fb = torch.as_tensor(np.asarray(frontend(read_wav_mono(b)[:80000]), np.float32))
                if fa.dim() == 2:
                    fa, fb = fa[None], fb[None]
                with torch.no_grad():
                    e = m.embed(torch.stack([fa, fb]))
                    scores.append(float(m.similarity(e[:1], e[1:])))
            return scores
        run()  # warm-up
        t0 = time.perf_counter()
        run()
        print(f"{len(rows) / (time.perf_counter() - t0):.4f}")
    elif mode == "train":
        K, steps = int(opt.get("batch", 32)), int(opt.get("steps", 2))
        feats = torch.randn(2 * K, cin, 64, 501) * 10 - 40
        m.train()
        def step():
            e = m.embed(feats)
            loss = F.cross_entropy(m.similarity(e[:K], e[K:]), torch.arange(K))
            m.zero_grad(set_to_none=False)
            loss.backward()
        step()  # warm-up
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        print(f"{(time.perf_counter() - t0) / steps:.4f}")
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
