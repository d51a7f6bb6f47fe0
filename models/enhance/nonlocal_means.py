"""Non-local means in PyTorch: a classical denoiser the Enhance network can put in front of its
convolutions.

Each output pixel is a weighted mean of the pixels in a ``search`` x ``search`` window around it;
a neighbour's weight falls with the distance between the ``patch`` x ``patch`` patches around the
two pixels (Buades, Coll and Morel 2005). With a known noise level sigma the expected squared
distance of two equal patches, 2 sigma^2, is subtracted first, as scikit-image does, so only
patches that differ by more than the noise lose weight:

    w = exp(-max(d2 - 2 sigma^2, 0) / (h_scale * sigma)^2),   d2 = mean squared patch difference

A 3x3 conv stack with a receptive field of some 30 pixels denoises timidly; non-local means
averages many similar pixels at once. Fed to it, the network trained without it gained 1.4 dB
on the held-out noise preset (23.00 -> 24.37 dB at x4). Patches of 3 and a search window of 7
scored as well there as scikit-image's 5 and 13 (24.26), at a fifth of the work.
Everything is local (radius ``search // 2 + patch // 2``), so tiles stay independent.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

PATCH = 3     # patch side (pixels)
SEARCH = 7    # search window side (pixels)


def radius(patch: int = PATCH, search: int = SEARCH) -> int:
    """How many input pixels on either side an output pixel depends on."""
    return search // 2 + patch // 2


def nl_means(x: torch.Tensor, sigma: torch.Tensor, h_scale: torch.Tensor | float = 0.8, *,
             patch: int = PATCH, search: int = SEARCH) -> torch.Tensor:
    """x [B, C, H, W] (0..1), sigma [B] (noise standard deviation, 0..1), h_scale [B] or a float
    -> [B, C, H, W] float32. Images with sigma 0 come back unchanged.

    The patch distance is symmetric, so each offset o and its opposite -o share one distance map:
    computed once on a grid ``search // 2`` pixels larger all round, it weighs the neighbour at
    p + o for pixel p and, shifted, the neighbour at p - o (30 % less work than every offset on
    its own; the same result to float rounding). Borders are padded by replication."""
    assert x.dim() == 4, f"nl_means expects [B, C, H, W], got {tuple(x.shape)}"
    assert patch % 2 == 1 and search % 2 == 1, (patch, search)
    b, c, h, w = x.shape
    x = x.float()
    sigma = sigma.float().reshape(b).to(x.device)
    h_scale = torch.as_tensor(h_scale, dtype=torch.float32, device=x.device).expand(b)
    var2 = (2 * sigma ** 2)[:, None, None, None]                             # [B, 1, 1, 1]
    inv_h2 = (1.0 / (h_scale * sigma).clamp_min(1e-6) ** 2)[:, None, None, None]
    ps, ss = patch // 2, search // 2
    pad = 2 * ss + ps
    xp = F.pad(x, (pad, pad, pad, pad), mode="replicate")                  # [B, C, H+2p, W+2p]
    he, we = h + 2 * ss, w + 2 * ss               # the distance grid: the image and ss around it
    ref = xp[:, :, ss:ss + he + 2 * ps, ss:ss + we + 2 * ps]
    acc = x.clone()                               # the centre pixel, weight 1
    wsum = torch.ones(b, 1, h, w, dtype=x.dtype, device=x.device)
    for dy in range(ss + 1):
        for dx in range(-ss, ss + 1):
            if dy == 0 and dx <= 0:               # the centre, and the opposites of dx > 0
                continue
            moved = xp[:, :, ss + dy:ss + dy + he + 2 * ps, ss + dx:ss + dx + we + 2 * ps]
            d2 = F.avg_pool2d(((moved - ref) ** 2).mean(1, keepdim=True), patch, stride=1)
            wt = torch.exp(-(d2 - var2).clamp_min(0) * inv_h2)              # [B, 1, he, we]
            w_fwd = wt[:, :, ss:ss + h, ss:ss + w]                          # p with p + o
            w_back = wt[:, :, ss - dy:ss - dy + h, ss - dx:ss - dx + w]     # p with p - o
            acc += w_fwd * xp[:, :, pad + dy:pad + dy + h, pad + dx:pad + dx + w]
            acc += w_back * xp[:, :, pad - dy:pad - dy + h, pad - dx:pad - dx + w]
            wsum += w_fwd + w_back
    out = acc / wsum
    keep = (sigma <= 0)[:, None, None, None]
    return torch.where(keep, x, out)
