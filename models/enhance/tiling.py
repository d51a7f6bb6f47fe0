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

from .network import image_stats

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


def _weight_sums(size: int, starts: list[int], tile: int, overlap: int, scale: int) -> torch.Tensor:
    """Sum over the tiles of one axis of their ramps [size * scale]. The tiles form a grid, so
    the 2-D weight sum is the outer product of the two axes' sums: no full-size buffer."""
    total = torch.zeros(size * scale)
    for a0 in starts:
        a1 = min(a0 + tile, size)
        total[a0 * scale:a1 * scale] += _ramp((a1 - a0) * scale, a0 > 0, a1 < size, overlap, scale)
    return total.clamp_min_(1e-8)


def _bicubic(x: torch.Tensor, scale: int) -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False).clamp_(0, 1)


class _AtInputSize(torch.nn.Module):
    """The restoration of an enhancer at its input's size: its output shrunk by its own scale
    (area), so another model can do the enlargement."""

    def __init__(self, net):
        super().__init__()
        self.net, self.scale = net, 1
        self.cfg = getattr(net, "cfg", None)

    def forward(self, x, text=None, **kwargs):
        s = int(self.net.scale)
        out = self.net(x, text, **kwargs)
        return F.avg_pool2d(out.float().clamp(0, 1), s) if s > 1 else out


class _Upscaler(torch.nn.Module):
    """Any image-to-image model ``fn([B, 3, h, w]) -> [B, 3, h*scale, w*scale]`` (a spandrel
    descriptor, as ComfyUI's Load Upscale Model gives) in the enhancer's calling convention."""

    def __init__(self, fn, scale: int, device: torch.device):
        super().__init__()
        self.fn, self.scale, self.device, self.cfg = fn, int(scale), torch.device(device), None

    def forward(self, x, text=None, **kwargs):
        return self.fn(x)


def _run_tiles(net, image, text, tile, overlap, progress, check_interrupt, autocast_dtype, out,
               strength, alpha):
    uses_context = bool(getattr(getattr(net, "cfg", None), "context_dim", 0))
    b, _, h, w = image.shape
    s = net.scale
    device = getattr(net, "device", None) or next(net.parameters()).device
    out.zero_()
    overlap = min(overlap, tile // 2)
    step = max(tile - overlap, 1)
    ys, xs = _starts(h, tile, step), _starts(w, tile, step)
    norm_y = _weight_sums(h, ys, tile, overlap, s)
    norm_x = _weight_sums(w, xs, tile, overlap, s)
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
            # not in place: a model run under inference_mode (spandrel's) returns inference tensors
            res = res.float().clamp(0, 1).to(image.device)        # [B, 3, s*th, s*tw]
            if tuple(res.shape[2:]) != ((y1 - y0) * s, (x1 - x0) * s):
                raise ValueError(f"the model gave a {res.shape[3]}x{res.shape[2]} tile for a "
                                 f"{x1 - x0}x{y1 - y0} input; expected x{s}")
            if strength < 1.0:
                res.mul_(strength).add_(_bicubic(image[:, :, y0:y1, x0:x1], s), alpha=1 - strength)
            if alpha is not None:
                res = torch.cat([res, _bicubic(alpha[:, :, y0:y1, x0:x1], s)], 1)
            oy, ox = slice(y0 * s, y1 * s), slice(x0 * s, x1 * s)
            wy = _ramp(res.shape[2], y0 > 0, y1 < h, overlap, s) / norm_y[oy]
            wx = _ramp(res.shape[3], x0 > 0, x1 < w, overlap, s) / norm_x[ox]
            out[:, :, oy, ox] += res * (wy[:, None] * wx[None, :])
            del patch, res
            done += 1
            if progress is not None:
                progress(done, total)
    return out


def work_bytes(net, batch: int, h: int, w: int, tile: int) -> int:
    """Generous estimate of the memory one tile's forward pass needs, on top of the output.

    Per input pixel of a tile (its halo included): about six feature maps of the body's width,
    the non-local-means stage's distance maps, and the tile's output at scale squared a few
    times over (network output, bicubic base, weighted copy)."""
    cfg = getattr(net, "cfg", None)
    channels = getattr(cfg, "channels", 64)
    s = int(net.scale)
    th, tw = (h, w) if tile <= 0 else (min(tile, h), min(tile, w))
    per_pixel = 4 * (6 * channels + 64 + 6 * 4 * s * s)
    return batch * (th + 16) * (tw + 16) * per_pixel


@torch.no_grad()
def enhance_image(net, image: torch.Tensor, text: torch.Tensor | None = None, *, tile: int = 256,
                  overlap: int = 32, progress: Callable[[int, int], None] | None = None,
                  check_interrupt: Callable[[], None] | None = None,
                  autocast_dtype: torch.dtype | None = None, strength: float = 1.0,
                  alpha: torch.Tensor | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """image [B, 3, H, W] in 0..1, text [B, D] / [1, D] / None -> [B, C, sH, sW] float32 in 0..1.

    ``tile`` and ``overlap`` are in input pixels; tile <= 0 means one pass over the whole image.
    ``strength`` < 1 blends each tile with the bicubic enlargement of its input; ``alpha``
    [B, 1, H, W] is enlarged bicubically and returned as a fourth channel (C = 4, else 3).
    The tiles are added into ``out`` when given (any layout, e.g. a [B, C, sH, sW] view of a
    [B, sH, sW, C] tensor), so peak memory is the output plus one tile's work.
    On out-of-memory the tile is halved (down to 16 px) and the image is started again.
    The result lies on ``image``'s device; the network may sit on another one.
    """
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"enhance_image expects [B, 3, H, W], got {tuple(image.shape)}")
    if not torch.isfinite(image).all():
        raise ValueError("enhance_image: the image contains NaN or infinite values")
    image = image.float()
    b, _, h, w = image.shape
    s = int(net.scale)
    shape = (b, 3 + (alpha is not None), h * s, w * s)
    if out is None:
        out = torch.zeros(shape)
    elif tuple(out.shape) != shape:
        raise ValueError(f"enhance_image: 'out' has shape {tuple(out.shape)}, expected {shape}")
    tile = max(h, w) if tile <= 0 else int(tile)
    while True:
        try:
            return _run_tiles(net, image, text, tile, overlap, progress, check_interrupt,
                              autocast_dtype, out, float(strength), alpha)
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


@torch.no_grad()
def restore_at_input_size(net, image: torch.Tensor, text: torch.Tensor | None = None,
                          **tiling) -> torch.Tensor:
    """image [B, 3, H, W] -> [B, 3, H, W]: the enhancer's instruction-aware restoration (its
    output shrunk back by its scale), tiled like ``enhance_image`` (same keyword arguments)."""
    return enhance_image(_AtInputSize(net), image, text, **tiling)


@torch.no_grad()
def upscale_with_model(fn, scale: int, image: torch.Tensor, *, device: torch.device | None = None,
                       **tiling) -> torch.Tensor:
    """image [B, 3, H, W] -> [B, 3, sH, sW] by another upscaler ``fn`` (e.g. a spandrel model
    from ComfyUI's Load Upscale Model), in overlapping tiles with ``enhance_image``'s blending,
    progress, interrupt and out-of-memory halving; ``strength`` and ``alpha`` work as there."""
    if int(scale) < 1:
        raise ValueError(f"upscale model scale {scale} is not a whole number of at least 1")
    return enhance_image(_Upscaler(fn, scale, device or image.device), image, None, **tiling)


def resize(image: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """[B, C, H, W] -> [B, C, *size]; antialiased when shrinking; clamped to 0..1."""
    if tuple(image.shape[2:]) == tuple(size):
        return image
    if mode == "nearest":
        return F.interpolate(image, size=size, mode="nearest")
    return F.interpolate(image, size=size, mode=mode, align_corners=False,
                         antialias=True).clamp_(0, 1)
