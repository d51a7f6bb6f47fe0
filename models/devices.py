"""Moving networks between devices only when they are elsewhere."""
from __future__ import annotations

import itertools

import torch


def move(module: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """``module.to(device)``, skipped when its first tensor is already there: ``.to`` walks every
    parameter and buffer of every submodule even when nothing moves (about 4 ms a call for the
    text encoder and generator together on a CPU, a tenth of a batch-1 text -> 256 px job)."""
    device = torch.device(device)
    first = next(itertools.chain(module.parameters(), module.buffers()), None)
    if first is not None and first.device.type == device.type and (
            device.index is None or first.device.index == device.index):
        return module
    return module.to(device)
