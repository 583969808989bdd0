#!/usr/bin/python3
"""Convert an official COCOLA checkpoint (PyTorch Lightning .ckpt) to cocola's .safetensors.

    /usr/bin/python3 tools/convert_official_checkpoint.py COCOLA_HP_v1.ckpt -o cocola_hp_v1.safetensors

Needs only torch. The checkpoint's hyper-parameters hold enum objects of the reference package
(`contrastive_model.constants`), which is usually not installed: they are unpickled as placeholders and read
back by value. Tensor names stay exactly the official state_dict() keys; the model config goes into the
header's __metadata__ (input_type, embedding_dim, dropout_p, similarity).
"""
import argparse
import importlib.abc
import importlib.machinery
import inspect
import json
import os
import pickle
import struct
import sys
import tempfile
import types

import torch


class _PlaceholderMeta(type):
    # Python >= 3.11 pickles an enum member as getattr(EnumClass, "MEMBER_NAME").
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        member = cls()
        member.member_name = name
        return member


class _Placeholder(dict, metaclass=_PlaceholderMeta):
    """Stands in for any class of the reference package (enums, configs) or of Lightning (AttributeDict)
    during unpickling. It is a dict so that pickled dict subclasses can be filled in."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.args = args
        self.state = None
        self.member_name = None

    def __setstate__(self, state):
        self.state = state

    def value(self):
        if self.args:
            return self.args[0]
        if isinstance(self.state, dict) and "_value_" in self.state:
            return self.state["_value_"]
        return self.member_name


# Top-level packages whose classes a COCOLA checkpoint may reference; stood in for when not importable.
_STAND_IN_PACKAGES = ("contrastive_model", "feature_extraction", "lightning", "pytorch_lightning", "lightning_fabric")


class _PlaceholderModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        cls = type(name, (_Placeholder,), {"__module__": self.__name__})
        setattr(self, name, cls)
        return cls


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports of the packages above (when they are not installed) yield placeholder modules."""

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] not in _STAND_IN_PACKAGES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec):
        m = _PlaceholderModule(spec.name)
        m.__path__ = []
        return m

    def exec_module(self, module):
        pass


def load_checkpoint(path):
    # torch 1.13 ignores a custom pickle_module, so the stand-ins are provided through the import system,
    # after the real finders (an installed reference package is used as is).
    finder = _StandInFinder()
    sys.meta_path.append(finder)
    try:
        kwargs = {"map_location": "cpu"}
        if "weights_only" in inspect.signature(torch.load).parameters:
            kwargs["weights_only"] = False  # torch >= 2.6 defaults to True, which refuses the enum objects
        return torch.load(path, **kwargs)
    finally:
        sys.meta_path.remove(finder)


def hyper_value(v):
    if isinstance(v, _Placeholder):
        v = v.value()
    if hasattr(v, "value"):  # a real Enum, when the reference package happens to be installed
        v = v.value
    return v


DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64", torch.float16: "F16",
          torch.bfloat16: "BF16", torch.int32: "I32"}


def save_safetensors(path, tensors, metadata):
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    blobs, offset = [], 0
    for name, t in tensors:
        t = t.detach().cpu().contiguous()
        if t.dtype not in DTYPES:
            raise SystemExit(f"{name}: unsupported dtype {t.dtype}")
        data = t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(h)))
            f.write(h)
            for b in blobs:
                f.write(b)
        os.replace(tmp, path)  # atomic: a crash never leaves a half-written model
    except BaseException:
        os.unlink(tmp)
        raise


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="official .ckpt (Lightning) or a plain state_dict .pt")
    ap.add_argument("-o", "--output", required=True, help="output .safetensors")
    args = ap.parse_args()
    try:
        ckpt = load_checkpoint(args.checkpoint)
    except Exception as e:  # noqa: BLE001 - report any unpickling failure with the file name
        raise SystemExit(f"{args.checkpoint}: cannot read checkpoint ({e})")
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not state:
        raise SystemExit(f"{args.checkpoint}: no state_dict found")
    hp = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
    hp = {k: hyper_value(v) for k, v in (hp.items() if isinstance(hp, dict) else [])}
    tensors = [(k, v) for k, v in state.items() if isinstance(v, torch.Tensor)]
    stem = dict(tensors).get("encoder.encoder.model.0._conv_stem.weight")
    if stem is None:
        raise SystemExit(f"{args.checkpoint}: not a COCOLA checkpoint (no encoder.encoder.model.0._conv_stem.weight)")
    input_type = hp.get("input_type") or ("single_channel_mel_spectrogram" if stem.shape[1] == 1
                                          else "double_channel_harmonic_percussive")
    meta = {
        "input_type": str(input_type).lower(),
        "embedding_dim": hp.get("embedding_dim", dict(tensors)["encoder.projection.weight"].shape[0]),
        "dropout_p": hp.get("dropout_p", 0.1),
        "similarity": "bilinear" if "similarity.w" in state else "cosine",
        "format": "converted from " + os.path.basename(args.checkpoint),
    }
    save_safetensors(args.output, tensors, meta)
    print(f"{args.output}: {len(tensors)} tensors, input_type={meta['input_type']}, "
          f"embedding_dim={meta['embedding_dim']}, dropout_p={meta['dropout_p']}")


if __name__ == "__main__":
    main()
