"""Tiled inference: bounded memory at any image size, tile halving on out-of-memory.

The image is cut into overlapping tiles (in input pixels). Each tile's output is weighted by a
ramp that is zero in the quarter of the overlap nearest an interior tile edge (where the
convolutions saw zero padding instead of the neighbour's pixels) and one past three quarters,
so neighbouring tiles hand over smoothly and seams vanish. Weights are normalised by their sum.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F

log = logging.getLogger("PromptGAN")

MIN_TILE = 16


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


def _starts(size: int, tile: int, step: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, step))
    starts.append(size - tile)
    return sorted(set(starts))


def count_tiles(h: int, w: int, tile: int, overlap: int = 32) -> int:
    """How many tiles ``enhance_image`` will run for an h x w input (before any halving)."""
    if tile <= 0:
        return 1
    overlap = min(overlap, tile // 2)
    step = max(tile - overlap, 1)
    return len(_starts(h, tile, step)) * len(_starts(w, tile, step))


def _ramp(n: int, lo_edge: bool, hi_edge: bool, overlap: int, scale: int) -> torch.Tensor:
    """1-D weights [n] (output pixels) for a tile; *_edge True means that side is interior."""
    w = torch.ones(n)
    if overlap <= 0:
        return w
    o = overlap * scale
    d = torch.arange(n, dtype=torch.float32) + 0.5               # distance from the low side
    ramp = lambda dist: ((dist - o / 4) / (o / 2)).clamp(0, 1)  # noqa: E731
    if lo_edge:
        w = w * ramp(d)
    if hi_edge:
        w = w * ramp(n - d)
    return w


def _run_tiles(net, image, text, tile, overlap, progress, check_interrupt, autocast_dtype):
    from .network import image_stats

    uses_context = bool(getattr(getattr(net, "cfg", None), "context_dim", 0))
    b, _, h, w = image.shape
    s = net.scale
    device = next(net.parameters()).device
    out = torch.zeros(b, 3, h * s, w * s, dtype=torch.float32, device=image.device)
    weight = torch.zeros(1, 1, h * s, w * s, dtype=torch.float32, device=image.device)
    overlap = min(overlap, tile // 2)
    step = max(tile - overlap, 1)
    ys, xs = _starts(h, tile, step), _starts(w, tile, step)
    total = len(ys) * len(xs)
    if text is not None:
        text = text.to(device)
    kwargs = {"context": image_stats(image).to(device)} if uses_context else {}
    done = 0
    for y0 in ys:
        for x0 in xs:
            if check_interrupt is not None:
                check_interrupt()
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            patch = image[:, :, y0:y1, x0:x1].to(device).contiguous(memory_format=torch.channels_last)
            if autocast_dtype is not None:
                with torch.autocast(device_type=device.type, dtype=autocast_dtype):
                    res = net(patch, text, **kwargs)
            else:
                res = net(patch, text, **kwargs)
            res = res.float().clamp_(0, 1).to(image.device)       # [B, 3, s*th, s*tw]
            wy = _ramp(res.shape[2], y0 > 0, y1 < h, overlap, s)
            wx = _ramp(res.shape[3], x0 > 0, x1 < w, overlap, s)
            wt = (wy[:, None] * wx[None, :]).to(image.device)[None, None]
            out[:, :, y0 * s:y1 * s, x0 * s:x1 * s] += res * wt
            weight[:, :, y0 * s:y1 * s, x0 * s:x1 * s] += wt
            del patch, res
            done += 1
            if progress is not None:
                progress(done, total)
    return out.div_(weight.clamp_min_(1e-8))


@torch.no_grad()
def enhance_image(net, image: torch.Tensor, text: torch.Tensor | None = None, *, tile: int = 256,
                  overlap: int = 32, progress: Callable[[int, int], None] | None = None,
                  check_interrupt: Callable[[], None] | None = None,
                  autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """image [B, 3, H, W] in 0..1, text [B, D] / [1, D] / None -> [B, 3, sH, sW] float32 in 0..1.

    ``tile`` and ``overlap`` are in input pixels; tile <= 0 means one pass over the whole image.
    On out-of-memory the tile is halved (down to 16 px) and the image is started again.
    The result lies on ``image``'s device; the network may sit on another one.
    """
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"enhance_image expects [B, 3, H, W], got {tuple(image.shape)}")
    if not torch.isfinite(image).all():
        raise ValueError("enhance_image: the image contains NaN or infinite values")
    image = image.float()
    h, w = image.shape[2:]
    tile = max(h, w) if tile <= 0 else int(tile)
    while True:
        try:
            return _run_tiles(net, image, text, tile, overlap, progress, check_interrupt,
                              autocast_dtype)
        except Exception as exc:  # noqa: BLE001 - only out-of-memory is retried
            if not is_oom(exc):
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            new_tile = min(tile, max(h, w)) // 2
            if new_tile < MIN_TILE:
                raise RuntimeError(f"Enhance ran out of memory even with {tile} px tiles; free "
                                   "memory or use a smaller image") from exc
            log.warning("PromptGAN Enhance: out of memory with %d px tiles, retrying with %d px",
                        tile, new_tile)
            tile = new_tile


def resize(image: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """[B, C, H, W] -> [B, C, *size]; antialiased when shrinking; clamped to 0..1."""
    if tuple(image.shape[2:]) == tuple(size):
        return image
    if mode == "nearest":
        return F.interpolate(image, size=size, mode="nearest")
    return F.interpolate(image, size=size, mode=mode, align_corners=False,
                         antialias=True).clamp_(0, 1)
