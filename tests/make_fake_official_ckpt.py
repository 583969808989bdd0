#!/usr/bin/python3
"""Test helper: fabricate a Lightning-style .ckpt with the structure of the official COCOLA checkpoint.

Usage: make_fake_official_ckpt.py GOLDEN.safetensors OUT.ckpt WORKDIR
Builds a throw-away `contrastive_model.constants` package in WORKDIR (with the enums the reference pickles),
so that the converter must unpickle the result *without* that package.
"""
import json, os, struct, sys
import numpy as np
import torch

src, out, work = sys.argv[1:4]
pkg = os.path.join(work, "contrastive_model")
os.makedirs(pkg, exist_ok=True)
open(os.path.join(pkg, "__init__.py"), "w").close()
with open(os.path.join(pkg, "constants.py"), "w") as f:
    f.write("import enum\n"
            "class ModelInputType(enum.Enum):\n"
            "    SINGLE_CHANNEL_MEL_SPECTROGRAM = 'single_channel_mel_spectrogram'\n"
            "    DOUBLE_CHANNEL_HARMONIC_PERCUSSIVE = 'double_channel_harmonic_percussive'\n"
            "class EmbeddingMode(enum.Enum):\n"
            "    BOTH = 'both'\n    HARMONIC = 'harmonic'\n    PERCUSSIVE = 'percussive'\n    RANDOM = 'random'\n")
sys.path.insert(0, work)
from contrastive_model.constants import ModelInputType, EmbeddingMode  # noqa: E402

with open(src, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    data = f.read()
state = {}
for k, v in header.items():
    if k == "__metadata__":
        continue
    a, b = v["data_offsets"]
    dt = {"F32": np.float32, "I64": np.int64}[v["dtype"]]
    state[k] = torch.from_numpy(np.frombuffer(data[a:b], dtype=dt).reshape(v["shape"]).copy())
it = ModelInputType(header["__metadata__"]["input_type"])
ckpt = {"epoch": 3, "global_step": 1000, "pytorch-lightning_version": "2.2.2", "state_dict": state,
        "hyper_parameters": {"embedding_dim": 512, "input_type": it, "embedding_mode": EmbeddingMode.RANDOM,
                             "dropout_p": 0.1, "learning_rate": 0.001},
        "optimizer_states": [], "lr_schedulers": []}
torch.save(ckpt, out)
print("ok")
