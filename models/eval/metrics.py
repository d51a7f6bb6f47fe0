"""Image metrics the trainers and evaluators share."""
from __future__ import annotations

import torch


def mean_psnr(a: torch.Tensor, b: torch.Tensor, low: float = 0.0, high: float = 1.0) -> float:
    """Mean over the batch of per-image PSNR (dB) of ``a`` against ``b`` [B, C, H, W], both in
    [low, high] (``a`` is clamped to it first); an image MSE floor of 1e-10 of the range."""
    span = high - low
    mse = (((a.clamp(low, high) - b) / span) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1.0 / mse)).mean())
