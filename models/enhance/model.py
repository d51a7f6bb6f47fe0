"""The loaded enhancer as the nodes pass it around (socket PROMPTGAN_ENHANCER), and its loader."""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from ..checkpoint import META_PREFIX, load_checkpoint, read_metadata
from .network import build_from_checkpoint

KIND = "enhancer"  # promptgan.kind of enhancer checkpoints
TRAIN_STATE_KIND = KIND + "-train-state"   # train-enhance's state.safetensors (net, ema, adam)


class EnhancerModel:
    """The network [B,3,h,w] -> [B,3,h*scale,w*scale] plus what it was trained with."""

    def __init__(self, net, name: str, path: str, encoder_id: str, provenance: dict):
        self.net = net
        self.name = name
        self.path = path
        self.encoder_id = encoder_id
        self.provenance = provenance
        self._device_copies: dict[str, torch.nn.Module] = {}

    @property
    def scale(self) -> int:
        return int(self.net.scale)

    def on(self, device: torch.device):
        """The network on ``device`` (kept, so repeated runs do not copy again)."""
        key = str(device)
        if key == "cpu":
            return self.net
        if key not in self._device_copies:
            self._device_copies = {key: copy.deepcopy(self.net).to(device)}
        return self._device_copies[key]

    def __repr__(self) -> str:
        return f"EnhancerModel({self.name!r}, x{self.scale}, encoder={self.encoder_id!r})"


def load_enhancer(path: str | Path, name: str = "") -> EnhancerModel:
    """Strictly load an enhancer: eval mode, frozen, channels_last, on the CPU.

    ``path`` is an enhancer file (kind 'enhancer': shipped, or a run's model.safetensors) or a
    train-enhance state.safetensors (kind 'enhancer-train-state'), whose EMA weights are taken."""
    state = read_metadata(path).get(META_PREFIX + "kind") == TRAIN_STATE_KIND
    ck = load_checkpoint(path, kind=TRAIN_STATE_KIND if state else KIND)
    if state:
        ck.tensors = ck.sub("ema")
    net = build_from_checkpoint(ck).to(memory_format=torch.channels_last)
    net.requires_grad_(False)
    return EnhancerModel(net, name or Path(path).stem, str(path), ck.encoder, ck.provenance)
