"""Training data for Enhance: bundled photos (and procedural renders), degraded on the fly.

Sources that need no download: the photos shipped inside scikit-image (skimage/data), plus
procedural renders (``models/data/procedural.py``). The evaluation images
(scikit-learn's china.jpg and flower.jpg, matplotlib's grace_hopper.jpg) are never used.
scikit-image is only a training extra: nothing at run time imports this module.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import procedural
from .debian_photos import read_manifest
from .degrade import DEGRADATIONS, make_pair, sample_params, sample_present, sample_second_order

log = logging.getLogger("PromptGAN")

HELD_OUT_FILES = ("china.jpg", "flower.jpg", "grace_hopper.jpg")
# photos (and photo-like scans) from skimage/data; drawings, tiny and motion-blurred files left out
SKIMAGE_FILES = (
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
    "motorcycle_right.png", "hubble_deep_field.jpg", "ihc.png", "retina.jpg", "color.png",
    "camera.png", "brick.png", "grass.png", "gravel.png", "moon.png", "coins.png", "page.png",
    "text.png", "chessboard_RGB.png",
)


def _to_tensor(im: Image.Image) -> torch.Tensor:
    arr = np.asarray(im, dtype=np.float32) / 255.0
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()   # [3, H, W]


def load_photos(files: Iterable[tuple[Path, float, Sequence[float]]], min_side: int, *,
                resample: str, largest_only: bool = False) -> list[tuple[str, torch.Tensor]]:
    """(name@scale, [3, H, W] float 0..1) for each (path, scale, factors) of ``files``: the
    photo at ``scale * f`` of its size for each f of ``factors`` (largest first) where both
    sides come to at least ``min_side``; with ``largest_only``, just the first such per file.
    A factor giving the photo's own size leaves it as it is.

    ``resample`` keeps each caller's pixels and names as they have always been: "torch" is
    torch's antialiased bicubic to the truncated size, named path.name@scale; "pil" is PIL's
    bicubic (reducing gap 3) to the rounded size, named path.stem@scale to 3 digits."""
    if resample not in ("torch", "pil"):
        raise ValueError(f"resample must be 'torch' or 'pil', got {resample!r}")
    out = []
    for path, scale, factors in files:
        with Image.open(path) as im:
            im = im.convert("RGB")
            full = _to_tensor(im) if resample == "torch" else None
            for f in factors:
                w, h = im.size[0] * scale * f, im.size[1] * scale * f
                size = (int(w), int(h)) if resample == "torch" else (round(w), round(h))
                if min(size) < min_side:
                    continue
                if size == im.size:
                    x = full if full is not None else _to_tensor(im)
                elif resample == "torch":
                    x = F.interpolate(full[None], size=size[::-1], mode="bicubic",
                                      antialias=True, align_corners=False)[0].clamp(0, 1)
                else:
                    x = _to_tensor(im.resize(size, Image.BICUBIC, reducing_gap=3.0))
                label = f"{path.name}@{scale * f}" if resample == "torch" \
                    else f"{path.stem}@{scale * f:.3g}"
                out.append((label, x))
                if largest_only:
                    break
    return out


def photo_sources(min_side: int = 128, largest_only: bool = False) -> list[tuple[str, torch.Tensor]]:
    """(name@factor, image [3, H, W]) at full size and at 3/4 and 1/2 size (cleaner, denser
    detail; JPEGs never at full size, where their own artifacts show). ``largest_only``: one
    entry per photo, the largest of those sizes with both sides at least ``min_side``."""
    try:  # lazy: scikit-image is a training extra (requirements-dev), not a run-time dependency
        import skimage.data
    except ImportError as exc:
        raise RuntimeError("training Enhance needs scikit-image for its bundled photos "
                           "(pip install scikit-image)") from exc
    root = Path(os.path.dirname(skimage.data.__file__))
    files = []
    for name in SKIMAGE_FILES:
        assert name not in HELD_OUT_FILES
        path = root / name
        if not path.is_file():
            log.info("Enhance data: %s not bundled with this scikit-image, skipped", name)
            continue
        files.append((path, 1.0, (0.75, 0.5) if name.endswith(".jpg") else (1.0, 0.75, 0.5)))
    out = load_photos(files, min_side, resample="torch", largest_only=largest_only)
    if not out:
        raise RuntimeError(f"no training photos found in {root}")
    return out


def prepared_photos(folder: str | Path, min_side: int = 128) -> list[tuple[str, torch.Tensor]]:
    """The training photos of a prepare-enhance-data folder as (name@factor, [3, H, W]), each at
    the manifest's detail scale times 3/4, 1/2 and 1/3 (the files are JPEGs: at full size their
    own compression shows)."""
    files = [(path, scale, (0.75, 0.5, 0.33)) for path, scale in read_manifest(folder, "train")]
    out = load_photos(files, min_side, resample="pil")
    if not out:
        raise ValueError(f"{folder}: no training photos of at least {min_side} px")
    return out


def procedural_renderer():
    """``fn(rng, size) -> [3, size, size]`` from models/data/procedural.py, or None if it
    fails its smoke test."""
    render, sample = procedural.render, procedural.sample_attributes
    domains = list(procedural.DOMAINS)

    def fn(rng: np.random.Generator, size: int) -> torch.Tensor:
        domain = domains[int(rng.integers(len(domains)))]
        img = render(domain, sample(domain, rng), size, rng)
        if isinstance(img, torch.Tensor):
            t = img.detach().float().cpu()
            if t.dim() == 4:
                t = t[0]
            if t.shape[-1] in (3, 4) and t.shape[0] not in (3, 4):
                t = t.permute(2, 0, 1)
            t = t[:3]
            if t.min() < 0:
                t = (t + 1) / 2
        else:
            arr = np.asarray(img.convert("RGB") if hasattr(img, "convert") else img, dtype=np.float32)
            if arr.max() > 1.5:
                arr = arr / 255.0
            t = torch.from_numpy(arr[..., :3].copy()).permute(2, 0, 1)
        t = t.clamp(0, 1)
        if tuple(t.shape[1:]) != (size, size):
            t = F.interpolate(t[None], size=(size, size), mode="bicubic", antialias=True,
                              align_corners=False)[0].clamp(0, 1)
        return t.contiguous()

    try:  # a smoke test: a broken renderer must not break training
        fn(np.random.default_rng(0), 64)
    except Exception as exc:  # noqa: BLE001
        log.warning("Enhance data: procedural renderer unusable (%s); photos only", exc)
        return None
    return fn


EMPTY_FIXES = frozenset({"blur", "noise", "jpeg"})   # what the empty instruction removes


@dataclass
class Batch:
    lr: torch.Tensor          # [B, 3, h, w] degraded input
    target: torch.Tensor      # [B, 3, h*s, w*s]
    text_index: torch.Tensor  # [B] long: row of the instruction pool
    null: torch.Tensor        # [B] bool: use the network's null embedding instead
    # [B] float: 1 where the input has noise the target removes, 0 where the target keeps it or
    # there is none (what the non-local-means gate should learn: filtering a clean picture only
    # smooths its texture away)
    denoise: torch.Tensor


class EnhanceData:
    """Draws (degraded crop, instruction, target) triples from a seeded generator."""

    def __init__(self, pool: list[tuple[str, frozenset | None]], *, scale: int, hr_size: int,
                 seed: int = 0, procedural_fraction: float = 0.15, use_procedural: bool = True,
                 degradation_weights: dict[str, float] | None = None, photos: str = "",
                 photo_fraction: float = 0.6, mixed_fraction: float = 0.0,
                 second_order: float = 0.0, empty_clean_fraction: float = 0.0):
        """``photos``: a prepare-enhance-data folder whose training photos are drawn with
        probability ``photo_fraction`` (the bundled scikit-image photos otherwise);
        ``mixed_fraction``: how often a sample carries blur, noise and JPEG together;
        ``second_order``: how often such a full-restoration sample gets two rounds;
        ``empty_clean_fraction``: how often a sample is a clean crop (downscaled only) with
        the empty instruction, beyond the few the other draws give (about 1 in 100)."""
        assert hr_size % scale == 0, (hr_size, scale)
        self.degradation_weights = dict(degradation_weights or {})
        self.scale, self.hr_size = scale, hr_size
        self.mixed_fraction, self.second_order = mixed_fraction, second_order
        self.empty_clean_fraction = empty_clean_fraction
        self.rng = np.random.default_rng(seed)
        self.sources = photo_sources(min_side=hr_size)
        self.photos = prepared_photos(photos, min_side=hr_size) if photos else []
        self.photo_fraction = photo_fraction if self.photos else 0.0
        self.render = procedural_renderer() if use_procedural else None
        self.procedural_fraction = procedural_fraction if self.render is not None else 0.0
        self.pool = pool
        self.by_fix: dict[frozenset | None, list[int]] = {}
        for i, (_, fix) in enumerate(pool):
            self.by_fix.setdefault(fix, []).append(i)
        self.empty_index = next(i for i, (t, _) in enumerate(pool) if t == "")
        self.generic = [i for i, (t, f) in enumerate(pool) if f is None and t != ""]
        self.explicit = [i for i, (_, f) in enumerate(pool) if f is not None]

    def describe(self) -> str:
        n = sum(x.shape[1] * x.shape[2] for _, x in self.sources) / 1e6
        proc = "yes" if self.render is not None else "no"
        text = f"{len(self.sources)} scikit-image sources ({n:.1f} MP)"
        if self.photos:
            m = sum(x.shape[1] * x.shape[2] for _, x in self.photos) / 1e6
            text += (f", {len(self.photos)} prepared-photo sources ({m:.1f} MP, drawn "
                     f"{self.photo_fraction:.0%})")
        extra = (f", mixed {self.mixed_fraction:.0%}, two rounds {self.second_order:.0%}"
                 if self.mixed_fraction or self.second_order else "")
        return f"{text}, procedural renders: {proc}, {len(self.pool)} instructions{extra}"

    def crop(self) -> torch.Tensor:
        """A clean HR crop [3, S, S] with flips, rotations and a channel shuffle."""
        rng, s = self.rng, self.hr_size
        if self.procedural_fraction and rng.random() < self.procedural_fraction:
            x = self.render(rng, s)
        else:
            sources = (self.photos if self.photo_fraction and rng.random() < self.photo_fraction
                       else self.sources)
            for _ in range(6):
                _, img = sources[int(rng.integers(len(sources)))]
                y = int(rng.integers(0, img.shape[1] - s + 1))
                x0 = int(rng.integers(0, img.shape[2] - s + 1))
                x = img[:, y:y + s, x0:x0 + s]
                if float(x.std()) > 0.04:   # skip flat crops (sky, black backgrounds)
                    break
        if rng.random() < 0.5:
            x = x.flip(2)
        k = int(rng.integers(4))
        if k:
            x = torch.rot90(x, k, dims=(1, 2))
        if rng.random() < 0.3:
            x = x[torch.from_numpy(rng.permutation(3))]
        return x.contiguous()

    def instruction(self, present: set[str]) -> tuple[int, bool, frozenset | None]:
        """(pool row, use null embedding, fix set or None = everything). The empty instruction
        restores detail (blur, noise, JPEG) but keeps the picture's tone and colour: a dark or
        tinted photo may be meant that way, and brightening it unasked can only hurt."""
        rng = self.rng
        r = rng.random()
        if r < 0.18:
            return self.empty_index, r < 0.12, frozenset(present & EMPTY_FIXES)
        if r < 0.28:
            return int(rng.choice(self.generic)), False, None
        if r < 0.75:
            key = frozenset(present)
            if not present:   # nothing wrong: ask for one thing or just an upscale
                key = frozenset([str(rng.choice(DEGRADATIONS))]) if rng.random() < 0.7 else frozenset()
            rows = self.by_fix.get(key) or self.by_fix[frozenset()]
            return int(rng.choice(rows)), False, key
        i = int(rng.choice(self.explicit))   # a partial or wrong request
        return i, False, self.pool[i][1]

    def sample(self, batch: int) -> Batch:
        lrs, targets, idx, null, denoise = [], [], [], [], []
        for _ in range(batch):
            hr = self.crop()
            empty_clean = self.empty_clean_fraction and self.rng.random() < self.empty_clean_fraction
            present = (set() if empty_clean else
                       sample_present(self.rng, self.degradation_weights, self.mixed_fraction))
            params = sample_params(present, self.scale, self.rng)
            if self.second_order and present and self.rng.random() < self.second_order:
                sample_second_order(params, self.scale, self.rng)
            if empty_clean:
                i, use_null, fix = self.empty_index, self.rng.random() < 2 / 3, frozenset()
            else:
                i, use_null, fix = self.instruction(present)
            lr, target = make_pair(hr, params, self.scale, None if fix is None else set(fix),
                                   self.rng)
            lrs.append(lr)
            targets.append(target)
            idx.append(i)
            null.append(use_null)
            denoise.append(float("noise" in params.present and (fix is None or "noise" in fix)))
        return Batch(torch.stack(lrs), torch.stack(targets), torch.tensor(idx),
                     torch.tensor(null, dtype=torch.bool), torch.tensor(denoise))
