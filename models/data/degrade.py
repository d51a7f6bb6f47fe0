"""Synthetic degradations for training and evaluating Enhance.

One clean high-resolution image ``hr`` [3, H, W] (0..1) becomes a low-resolution input and a
target. The pipeline, in order:

  photometric at HR  low light (gain * x ** gamma), colour cast (per-channel gains)
  blur at HR         isotropic or anisotropic Gaussian kernel
  downscale          by ``scale`` (bicubic / bilinear / area, antialiased)
  noise at LR        Gaussian (colour or grey) or Poisson
  JPEG at LR         Pillow, quality 30..95
  8-bit rounding

``sample_second_order`` adds a second round (an intermediate resize by a random kernel, a second
blur and noise, an earlier JPEG) for requests that remove everything present.

The instruction decides which of the present degradations the network should remove (``fix``).
The target is the clean HR image with the *kept* degradations re-applied: photometric and blur at
HR, noise and JPEG as their low-resolution residual, upsampled bicubically. With ``fix`` equal to
everything present, the target is the clean image. Everything random comes from the ``rng``
passed in, so a seed gives the same pair every time.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

DEGRADATIONS = ("blur", "noise", "jpeg", "lowlight", "cast")
# how often each degradation is drawn when a training sample gets degradations
DEGRADATION_WEIGHTS = {"blur": 1.0, "noise": 1.0, "jpeg": 1.0, "lowlight": 0.8, "cast": 0.5}
DOWN_MODES = ("bicubic", "bilinear", "area")


@dataclass
class DegradeParams:
    """Concrete parameters of one degradation draw; ``None`` means absent."""

    blur: tuple[float, float, float] | None = None     # sigma_x, sigma_y (HR px), angle (rad)
    noise: tuple[str, float, bool] | None = None       # ("gauss", sigma 0..1, grey) | ("poisson", peak, grey)
    jpeg: int | None = None                            # quality
    lowlight: tuple[float, float] | None = None        # gamma, gain
    cast: tuple[float, float, float] | None = None     # per-channel gains
    down: str = "bicubic"
    extra: dict = field(default_factory=dict)

    @property
    def present(self) -> set[str]:
        return {name for name in DEGRADATIONS if getattr(self, name) is not None}


# ----------------------------------------------------------------------------- sampling

def sample_params(present: set[str] | list[str], scale: int, rng: np.random.Generator,
                  *, down: str | None = None) -> DegradeParams:
    """Random parameters for the degradations named in ``present``."""
    p = DegradeParams(down=down or str(rng.choice(DOWN_MODES, p=[0.6, 0.2, 0.2])))
    s = max(scale, 1)
    if "blur" in present:
        lo, hi = (0.2 * s, 0.9 * s) if s > 1 else (0.6, 2.5)
        if rng.random() < 0.5:
            sig = float(rng.uniform(lo, hi))
            p.blur = (sig, sig, 0.0)
        else:
            p.blur = (float(rng.uniform(lo, hi)), float(rng.uniform(lo * 0.5, hi)),
                      float(rng.uniform(0, math.pi)))
    if "noise" in present:
        grey = bool(rng.random() < 0.3)
        if rng.random() < 0.7:
            p.noise = ("gauss", float(rng.uniform(3, 30)) / 255.0, grey)
        else:
            p.noise = ("poisson", float(10 ** rng.uniform(1.3, 2.5)), grey)
    if "jpeg" in present:
        p.jpeg = int(rng.integers(30, 96))
    if "lowlight" in present:
        p.lowlight = (float(rng.uniform(1.0, 2.0)), float(rng.uniform(0.25, 0.65)))
    if "cast" in present:
        g = rng.uniform(-0.2, 0.2, size=3)
        g = g - g.mean() + rng.uniform(-0.05, 0.05)
        p.cast = tuple(float(1 + x) for x in g)
    return p


def sample_second_order(p: DegradeParams, scale: int, rng: np.random.Generator) -> DegradeParams:
    """Add a second round (Real-ESRGAN's idea: a picture is resized, compressed and resized again
    before it reaches you): an intermediate size 1-2x the final one reached by a random kernel, a
    second blur, a second, weaker noise and an earlier JPEG, each only for the kinds present."""
    present = p.present
    second = {"mid": float(rng.uniform(1.0, 2.0)) if scale > 1 else 1.0,
              "down1": str(rng.choice(DOWN_MODES))}
    if "blur" in present and rng.random() < 0.8:
        sig = float(rng.uniform(0.2, 0.8))
        second["blur2"] = (sig, sig * float(rng.uniform(0.5, 1.0)), float(rng.uniform(0, math.pi)))
    if "noise" in present and rng.random() < 0.5:
        second["noise2"] = ("gauss", float(rng.uniform(1, 10)) / 255.0, bool(rng.random() < 0.4))
    if "jpeg" in present and rng.random() < 0.5:
        second["jpeg1"] = int(rng.integers(40, 96))
    p.extra["second"] = second
    return p


MIXED = frozenset({"blur", "noise", "jpeg"})   # what a photo from the web usually carries


def sample_present(rng: np.random.Generator, weights: dict[str, float] | None = None,
                   mixed_fraction: float = 0.0) -> set[str]:
    """A random set of degradations: with probability ``mixed_fraction`` blur, noise and JPEG
    together (plus low light one time in six); otherwise none (10%), one (40%), two (30%), three
    or more (20%), each drawn with its weight (default ``DEGRADATION_WEIGHTS``; a name left out
    keeps its default; a set never holds more kinds than have a weight above 0)."""
    if mixed_fraction and rng.random() < mixed_fraction:
        return set(MIXED) | ({"lowlight"} if rng.random() < 1 / 6 else set())
    k = int(rng.choice([0, 1, 2, 3, 4], p=[0.10, 0.40, 0.30, 0.15, 0.05]))
    names = list(DEGRADATIONS)
    weights = {**DEGRADATION_WEIGHTS, **(weights or {})}
    w = np.array([weights[n] for n in names])
    k = min(k, int((w > 0).sum()))       # weights of 0 leave fewer kinds to combine
    return set(rng.choice(names, size=k, replace=False, p=w / w.sum()).tolist()) if k else set()


# ----------------------------------------------------------------------------- operations

def gaussian_kernel(sx: float, sy: float, theta: float, max_size: int = 21) -> torch.Tensor:
    """Normalised anisotropic Gaussian [k, k]."""
    r = min(int(math.ceil(3 * max(sx, sy))), max_size // 2)
    r = max(r, 1)
    ax = torch.arange(-r, r + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    c, s = math.cos(theta), math.sin(theta)
    u, v = c * xx + s * yy, -s * xx + c * yy
    k = torch.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    return (k / k.sum()).float()


def blur(img: torch.Tensor, params: tuple[float, float, float]) -> torch.Tensor:
    """[3, H, W] -> [3, H, W], reflect-padded."""
    k = gaussian_kernel(*params)
    r = k.shape[0] // 2
    x = F.pad(img[None], (r, r, r, r), mode="reflect" if min(img.shape[1:]) > r else "replicate")
    return F.conv2d(x, k[None, None].expand(3, 1, -1, -1).contiguous(), groups=3)[0]


def downscale(img: torch.Tensor, scale: int, mode: str = "bicubic") -> torch.Tensor:
    """[3, H, W] -> [3, H/scale, W/scale]."""
    if scale == 1:
        return img
    return resize_to(img, (img.shape[1] // scale, img.shape[2] // scale), mode)


def resize_to(img: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """[3, H, W] -> [3, h, w] by ``mode`` (antialiased when shrinking)."""
    if tuple(img.shape[1:]) == tuple(size):
        return img
    if mode == "area":
        out = F.interpolate(img[None], size=size, mode="area")
    else:
        out = F.interpolate(img[None], size=size, mode=mode, align_corners=False, antialias=True)
    return out[0].clamp(0, 1)


def upscale(img: torch.Tensor, scale: int, mode: str = "bicubic") -> torch.Tensor:
    """[.., 3, h, w] -> [.., 3, h*scale, w*scale] (no clamping: used for residuals too)."""
    if scale == 1:
        return img
    x = img if img.dim() == 4 else img[None]
    if mode == "nearest":
        out = F.interpolate(x, scale_factor=scale, mode="nearest")
    else:
        out = F.interpolate(x, scale_factor=scale, mode=mode, align_corners=False)
    return out if img.dim() == 4 else out[0]


def add_noise(img: torch.Tensor, params: tuple[str, float, bool], rng: np.random.Generator) -> torch.Tensor:
    kind, amount, grey = params
    shape = (1,) + tuple(img.shape[1:]) if grey else tuple(img.shape)
    if kind == "gauss":
        n = torch.from_numpy(rng.standard_normal(shape).astype(np.float32)) * amount
        return img + n
    peak = amount
    base = img.mean(0, keepdim=True) if grey else img
    lam = np.clip(base.numpy(), 0, 1) * peak
    noisy = torch.from_numpy(rng.poisson(lam).astype(np.float32) / peak)
    return img + (noisy - base)


def jpeg(img: torch.Tensor, quality: int) -> torch.Tensor:
    """[3, H, W] 0..1 -> JPEG-compressed and decoded [3, H, W]."""
    arr = (img.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    out = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(out.copy()).permute(2, 0, 1)


def lowlight(img: torch.Tensor, params: tuple[float, float]) -> torch.Tensor:
    gamma, gain = params
    return gain * img.clamp(0, 1) ** gamma


def cast(img: torch.Tensor, params: tuple[float, float, float]) -> torch.Tensor:
    return (img * torch.tensor(params, dtype=img.dtype)[:, None, None]).clamp(0, 1)


def quantise(img: torch.Tensor) -> torch.Tensor:
    return torch.round(img.clamp(0, 1) * 255.0) / 255.0


# ----------------------------------------------------------------------------- pairs

def photometric(hr: torch.Tensor, p: DegradeParams, keep: set[str]) -> torch.Tensor:
    x = hr
    if p.lowlight is not None and "lowlight" in keep:
        x = lowlight(x, p.lowlight)
    if p.cast is not None and "cast" in keep:
        x = cast(x, p.cast)
    return x


def make_pair(hr: torch.Tensor, p: DegradeParams, scale: int, fix: set[str] | None,
              rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """hr [3, H, W] (H, W divisible by scale) -> (input [3, H/s, W/s], target [3, H, W]).

    ``fix``: the degradations the instruction asks to remove; None means all of them.
    """
    assert hr.dim() == 3 and hr.shape[0] == 3, hr.shape
    assert hr.shape[1] % scale == 0 and hr.shape[2] % scale == 0, (hr.shape, scale)
    present = p.present
    fix = present if fix is None else (set(fix) & present)
    kept = present - fix
    if "second" in p.extra and not kept & {"blur", "noise", "jpeg"}:
        # two rounds are only drawn when the target removes all of them: the target of a
        # partial request re-applies what is kept, which needs the one-round pipeline
        lr = second_order_input(hr, p, scale, rng)
        return lr, photometric(hr, p, kept).clamp(0, 1)
    # the input: everything present
    x = photometric(hr, p, present)
    if p.blur is not None:
        x = blur(x, p.blur)
    lr_ref = downscale(x, scale, p.down)
    lr = lr_ref
    noise_field = None
    if p.noise is not None:
        lr = add_noise(lr, p.noise, rng)
        noise_field = lr - lr_ref
    if p.jpeg is not None:
        lr = jpeg(lr, p.jpeg)
    lr = quantise(lr)
    # the target: the clean image with the kept degradations
    t = photometric(hr, p, kept)
    if p.blur is not None and "blur" in kept:
        t = blur(t, p.blur)
    if "noise" in kept or "jpeg" in kept:
        if kept >= {"noise", "jpeg"} or ("jpeg" not in present and "noise" in kept):
            lr_kept = lr
        elif "noise" in kept:               # jpeg present but fixed: noise only
            lr_kept = lr_ref + noise_field
        else:                               # jpeg kept, noise absent or fixed
            lr_kept = jpeg(lr_ref, p.jpeg)
        residual = lr_kept - lr_ref         # [3, h, w] what the kept LR degradations added
        t = t + upscale(residual, scale, "bicubic")
    return lr, t.clamp(0, 1)


def second_order_input(hr: torch.Tensor, p: DegradeParams, scale: int,
                       rng: np.random.Generator) -> torch.Tensor:
    """hr [3, H, W] -> the two-round degraded input [3, H/s, W/s] (``sample_second_order``)."""
    second = p.extra["second"]
    h, w = hr.shape[1] // scale, hr.shape[2] // scale
    x = photometric(hr, p, p.present)
    if p.blur is not None:
        x = blur(x, p.blur)
    mid = (min(hr.shape[1], round(h * second["mid"])), min(hr.shape[2], round(w * second["mid"])))
    x = resize_to(x, mid, second["down1"])
    if p.noise is not None:
        x = add_noise(x, p.noise, rng)
    if "jpeg1" in second:
        x = jpeg(x, second["jpeg1"])
    if "blur2" in second:
        x = blur(x.clamp(0, 1), second["blur2"])
    x = resize_to(x.clamp(0, 1), (h, w), p.down)
    if "noise2" in second:
        x = add_noise(x, second["noise2"], rng)
    if p.jpeg is not None:
        x = jpeg(x, p.jpeg)
    return quantise(x)


# ----------------------------------------------------------------------------- evaluation presets

EVAL_PRESETS = {
    "blur": DegradeParams(blur=(2.4, 2.4, 0.0)),
    "noise": DegradeParams(noise=("gauss", 15 / 255.0, False)),
    "jpeg": DegradeParams(jpeg=40),
    "lowlight": DegradeParams(lowlight=(1.5, 0.45)),
    "mixed": DegradeParams(blur=(1.6, 1.6, 0.0), noise=("gauss", 10 / 255.0, False), jpeg=60),
    "clean": DegradeParams(),        # downscaling only: what Enhance does to a good picture
}


def eval_params(name: str, scale: int) -> DegradeParams:
    """The fixed degradation of the evaluator; blur sigmas are for x4 and scale with ``scale``."""
    base = EVAL_PRESETS[name]
    p = DegradeParams(blur=base.blur, noise=base.noise, jpeg=base.jpeg, lowlight=base.lowlight,
                      cast=base.cast, down="bicubic")
    if p.blur is not None and scale != 4:
        f = max(scale, 1) / 4 if scale > 1 else 0.6
        p.blur = (p.blur[0] * f, p.blur[1] * f, p.blur[2])
    return p
