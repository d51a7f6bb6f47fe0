"""Rendering styles, the seed's third control: the same picture drawn another way.

``apply_style(image, style, rng)`` turns a procedural render (uint8 [H, W, 3]) into one of
STYLES; "plain" is the renderer's own look and the default when a caption names no style.
Each style changes what a viewer reads as technique, and keeps the attributes readable:

- ``flat``: flat fills (the render posterised and mode-filtered: no shading, no texture);
- ``ink``: flat fills with dark ink outlines along every colour edge;
- ``watercolour``: a soft, pale wash on paper, pigment pooled at the edges;
- ``pixel``: pixel art, blocks of 1/16 of the picture in a 16-colour palette;
- ``pencil``: a graphite sketch, grey strokes on white paper, no colour.

Captions name a style with the phrases of STYLE_TRAIN (training) or STYLE_HELDOUT (evaluation,
never in a training caption). Everything is drawn from ``rng`` after the render, so a styled
image has the layout of its plain one.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

STYLES = ("plain", "flat", "ink", "watercolour", "pixel", "pencil")

STYLE_TRAIN = {
    "flat": ("flat colours", "a flat illustration", "flat vector art", "flat-shaded",
             "in a flat graphic style", "flat design"),
    "ink": ("ink drawing", "outlined in black ink", "line art with ink outlines",
            "comic-style inking", "bold ink outlines", "inked illustration"),
    "watercolour": ("watercolour", "watercolor painting", "a soft watercolour wash",
                    "painted in watercolours", "watercolour on paper", "loose watercolor"),
    "pixel": ("pixel art", "8-bit pixel art", "pixelated", "retro pixel style",
              "pixel-art sprite", "low-res pixel art"),
    "pencil": ("pencil sketch", "graphite drawing", "sketched in pencil", "a pencil drawing",
               "pencil on paper", "rough graphite sketch"),
}
STYLE_HELDOUT = {
    "flat": ("minimalist two-dimensional design", "poster-like solid fills"),
    "ink": ("pen-and-ink artwork", "drawn with a fineliner"),
    "watercolour": ("aquarelle", "wet-on-wet painting"),
    "pixel": ("sixteen-bit sprite", "blocky retro game graphics"),
    "pencil": ("charcoal-grey graphite study", "hatched draughtsman's study"),
}


def _flat(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    # smooth first, so texture does not become colour regions; octree keeps small, distinct
    # colours (a petal) that median cut merges into the large background
    soft = img.filter(ImageFilter.MedianFilter(size=5))
    flat = soft.quantize(colors=int(rng.integers(8, 13)), method=Image.Quantize.FASTOCTREE,
                         kmeans=2)
    return flat.convert("RGB").filter(ImageFilter.ModeFilter(size=5))


def _edges(img: Image.Image) -> np.ndarray:
    """[H, W] edge strength in 0..1 (colour differences to the right and below)."""
    a = np.asarray(img, dtype=np.float32)
    dx = np.abs(np.diff(a, axis=1, append=a[:, -1:])).sum(-1)
    dy = np.abs(np.diff(a, axis=0, append=a[-1:])).sum(-1)
    return np.clip((dx + dy) / 60.0, 0, 1)


def _ink(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    flat = _flat(img, rng)
    edge = (_edges(flat) > 0.5).astype(np.float32)
    edge = np.maximum(edge, np.roll(edge, 1, axis=0))       # about two pixels wide at 64 px
    edge = np.maximum(edge, np.roll(edge, 1, axis=1))
    ink = np.array([24, 20, 28], dtype=np.float32) * (0.9 + 0.2 * rng.random())
    out = np.asarray(flat, dtype=np.float32) * (1 - edge[..., None]) + ink * edge[..., None]
    return Image.fromarray(out.clip(0, 255).astype(np.uint8))


def _paper(h: int, w: int, rng: np.random.Generator, amount: float) -> np.ndarray:
    grain = rng.standard_normal((h // 4 + 1, w // 4 + 1)).astype(np.float32)
    up = np.asarray(Image.fromarray(grain).resize((w, h), Image.Resampling.BILINEAR))
    return 1.0 + amount * up


def _watercolour(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    h, w = img.height, img.width
    soft = img.filter(ImageFilter.GaussianBlur(radius=max(1.0, w / 48)))
    a = np.asarray(soft, dtype=np.float32)
    wash = 255 - (255 - a) * (0.62 + 0.1 * rng.random())   # pale: the paper shows through
    edge = _edges(Image.fromarray(a.astype(np.uint8)))
    wash = wash * (1 - 0.35 * edge[..., None])               # pigment pooled at the edges
    wash = wash * _paper(h, w, rng, 0.035)[..., None]
    return Image.fromarray(wash.clip(0, 255).astype(np.uint8))


PIXEL_CELLS = 16      # pixel art: blocks a side


def _pixel(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    cells = PIXEL_CELLS
    small = img.resize((cells, cells), Image.Resampling.BOX)
    small = small.quantize(colors=16, method=Image.Quantize.MEDIANCUT).convert("RGB")
    return small.resize((img.width, img.height), Image.Resampling.NEAREST)


def _pencil(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    h, w = img.height, img.width
    grey = np.asarray(img.convert("L"), dtype=np.float32)
    edge = _edges(img.filter(ImageFilter.MedianFilter(size=5)))
    # strokes: the edges, plus diagonal hatching where the picture is dark
    yy, xx = np.mgrid[0:h, 0:w]
    hatch = (np.sin((xx + yy) * (2 * np.pi / max(3.0, w / 16))) > 0.4) * (grey < 110)
    strokes = np.clip(0.85 * edge + 0.35 * hatch, 0, 1)
    paper = 246 * _paper(h, w, rng, 0.02)
    lead = 70 + 30 * rng.random()
    out = paper * (1 - strokes) + lead * strokes
    return Image.fromarray(np.repeat(out.clip(0, 255)[..., None], 3, -1).astype(np.uint8))


_APPLY = {"flat": _flat, "ink": _ink, "watercolour": _watercolour, "pixel": _pixel,
          "pencil": _pencil}


def apply_style(image: np.ndarray, style: str, rng: np.random.Generator) -> np.ndarray:
    """uint8 [H, W, 3] -> the same picture in ``style`` (one of STYLES), uint8 [H, W, 3]."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
    if style == "plain":
        return image
    return np.asarray(_APPLY[style](Image.fromarray(image), rng), dtype=np.uint8)


def add_style(domain: str, attrs: dict, rng: np.random.Generator, split: str = "train",
              fraction: float = 0.5) -> dict:
    """A copy of attrs with a ``style`` other than plain for ``fraction`` of the images."""
    attrs = dict(attrs)
    if rng.random() < fraction:
        attrs["style"] = STYLES[1 + int(rng.integers(len(STYLES) - 1))]
    return attrs


def add_style_only(domain: str, attrs: dict, rng: np.random.Generator, split: str = "train") -> dict:
    """``make_dataset_arrays``'s ``extra`` for --styles alone."""
    return add_style(domain, attrs, rng, split)
