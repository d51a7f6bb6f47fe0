"""Captioned procedural images with known attribute labels; nothing to download.

Two domains, drawn with numpy at twice the asked resolution (soft-edged shapes, then a 2x2 box
filter), so every size from 32 to 256 px and beyond is anti-aliased:

- ``flower``: one flower near the centre, petals arranged radially, on a plain background.
- ``landscape``: sky by time of day, sun or moon, mountains, a lake, trees; the season colours
  the ground and the trees.

Every attribute value is meant to be read back from a 64 px render by a small CNN, so values are
far apart in colour or shape, and nuisance variation (position, rotation, scale, a little colour
jitter, texture) is moderate. ``render`` draws all its random numbers up front in a fixed order
whatever the attributes, so the same generator state with different attributes gives the same
layout (useful for edit tests: only the changed attribute moves).

Held-out rule (``is_heldout_combination``), about 12 % of combinations of each domain:
- flower: (petal_colour, background) in HELDOUT_FLOWER_BACKGROUND or
  (petal_colour, petal_count) in HELDOUT_FLOWER_COUNT;
- landscape: (time_of_day, season, mountains) in HELDOUT_LANDSCAPE.
Every single value still occurs in training; only these combinations are kept out, together with
the held-out caption phrasing of ``captions.py``.
"""
from __future__ import annotations

import functools
import math
import multiprocessing as mp
from typing import NamedTuple

import numpy as np
from PIL import Image

from . import captions as _captions
from . import styles

__all__ = [
    "ATTRIBUTES", "DOMAINS", "HELDOUT_FLOWER_BACKGROUND", "HELDOUT_FLOWER_COUNT",
    "HELDOUT_LANDSCAPE", "LABEL_HEADS", "heldout_prompts", "is_heldout_combination",
    "is_valid_combination", "labels_to_attributes", "labels_vector", "make_caption",
    "make_dataset_arrays", "render", "sample_attributes",
]

DOMAINS: tuple[str, ...] = ("flower", "landscape")

ATTRIBUTES: dict[str, dict[str, tuple[str, ...]]] = {
    "flower": {
        "petal_colour": ("red", "orange", "yellow", "blue", "purple", "pink", "white"),
        "centre_colour": ("yellow", "brown", "black", "white"),
        "petal_count": ("4", "5", "6", "8"),
        "petal_shape": ("round", "pointed"),
        "size": ("small", "large"),
        "background": ("grass", "sky", "black", "cream", "soil"),
    },
    "landscape": {
        "time_of_day": ("day", "sunset", "night"),
        "sky_object": ("sun", "moon", "none"),
        "mountains": ("none", "bare", "snowy"),
        "water": ("none", "lake"),
        "trees": ("none", "few", "forest"),
        "season": ("summer", "autumn", "winter", "spring"),
    },
}

LABEL_HEADS: tuple[tuple[str, int], ...] = (("domain", len(DOMAINS)),) + tuple(
    (f"{domain}.{name}", len(values))
    for domain in DOMAINS for name, values in ATTRIBUTES[domain].items())

# Held-out combinations (never produced by split="train").
HELDOUT_FLOWER_BACKGROUND = frozenset({("yellow", "black"), ("blue", "cream")})
HELDOUT_FLOWER_COUNT = frozenset({("purple", "5"), ("orange", "8")})
HELDOUT_LANDSCAPE = frozenset({
    ("day", "autumn", "snowy"), ("sunset", "winter", "bare"),
    ("night", "spring", "snowy"), ("night", "summer", "none"),
})

SPLITS = ("train", "heldout", "any")


def _check_domain(domain: str) -> None:
    if domain not in ATTRIBUTES:
        raise ValueError(f"unknown domain {domain!r}; expected one of {DOMAINS}")


def _check_attrs(domain: str, attrs: dict) -> None:
    _check_domain(domain)
    for name, values in ATTRIBUTES[domain].items():
        if name not in attrs:
            raise ValueError(f"{domain} attributes lack {name!r}; got {sorted(attrs)}")
        if attrs[name] not in values:
            raise ValueError(f"{domain}.{name} = {attrs[name]!r} is not one of {values}")


def is_valid_combination(domain: str, attrs: dict) -> bool:
    """Physical constraints: in a landscape there is no sun at night. Flowers: all valid."""
    _check_attrs(domain, attrs)
    if domain == "landscape":
        return not (attrs["time_of_day"] == "night" and attrs["sky_object"] == "sun")
    return True


def is_heldout_combination(domain: str, attrs: dict) -> bool:
    """True for the combinations kept out of training (see the module docstring)."""
    _check_attrs(domain, attrs)
    if domain == "flower":
        colour = attrs["petal_colour"]
        return ((colour, attrs["background"]) in HELDOUT_FLOWER_BACKGROUND
                or (colour, attrs["petal_count"]) in HELDOUT_FLOWER_COUNT)
    key = (attrs["time_of_day"], attrs["season"], attrs["mountains"])
    return key in HELDOUT_LANDSCAPE


def sample_attributes(domain: str, rng: np.random.Generator, split: str = "train") -> dict[str, str]:
    """Uniform values per attribute, restricted to valid combinations of the split.

    split "train" never returns a held-out combination, "heldout" only held-out ones, "any" both.
    """
    _check_domain(domain)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    table = ATTRIBUTES[domain]
    for _ in range(10_000):
        attrs = {name: values[int(rng.integers(len(values)))] for name, values in table.items()}
        if not is_valid_combination(domain, attrs):
            continue
        if split == "any" or is_heldout_combination(domain, attrs) == (split == "heldout"):
            return attrs
    raise RuntimeError("attribute sampling did not converge")  # cannot happen with these tables


# ---------------------------------------------------------------- labels

def labels_vector(domain: str, attrs: dict) -> np.ndarray:
    """int64 [len(LABEL_HEADS)]: domain index, then each head's value index (-1: other domain,
    or a head in ``attrs["unlabelled"]``)."""
    _check_attrs(domain, attrs)
    out = np.full(len(LABEL_HEADS), -1, dtype=np.int64)
    out[0] = DOMAINS.index(domain)
    for i, (head, _) in enumerate(LABEL_HEADS[1:], start=1):
        head_domain, name = head.split(".", 1)
        if head_domain == domain and name not in attrs.get("unlabelled", ()):
            out[i] = ATTRIBUTES[domain][name].index(attrs[name])
    return out


def labels_to_attributes(labels) -> tuple[str, dict[str, str]]:
    """Inverse of labels_vector: (domain, attrs)."""
    labels = np.asarray(labels).reshape(-1)
    if labels.shape[0] != len(LABEL_HEADS):
        raise ValueError(f"expected {len(LABEL_HEADS)} labels, got {labels.shape[0]}")
    domain = DOMAINS[int(labels[0])]
    attrs = {}
    for value, (head, _) in zip(labels[1:], LABEL_HEADS[1:]):
        head_domain, name = head.split(".", 1)
        if head_domain == domain:
            attrs[name] = ATTRIBUTES[domain][name][int(value)]
    return domain, attrs


# ---------------------------------------------------------------- captions

def make_caption(domain: str, attrs: dict, rng: np.random.Generator, split: str = "train") -> str:
    """A caption for attrs; "heldout" uses phrasing that train captions never use."""
    _check_attrs(domain, attrs)
    return _captions.compose_caption(domain, attrs, rng, split)


def heldout_prompts(n_per_domain: int = 100, seed: int = 1234) -> list[dict]:
    """Deterministic evaluation prompts: held-out combinations with held-out phrasing.

    Returns [{"domain", "attrs", "prompt", "labels"}], the flowers first; each domain has its
    own generator, so a longer list starts with the shorter one.
    """
    out = []
    for d, domain in enumerate(DOMAINS):
        rng = np.random.default_rng([seed, d])
        for _ in range(n_per_domain):
            attrs = sample_attributes(domain, rng, "heldout")
            prompt = make_caption(domain, attrs, rng, "heldout")
            out.append({"domain": domain, "attrs": attrs, "prompt": prompt,
                        "labels": labels_vector(domain, attrs)})
    return out


# ---------------------------------------------------------------- drawing helpers
# The canvas is channel-first (3, n, n) float32 in 0..255 so that painting runs over long rows;
# colours are (3, 1, 1) arrays and broadcast against (h, w) coverage maps.

_SS = 2  # supersampling factor


@functools.lru_cache(maxsize=16)
def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(n, dtype=np.float32) + 0.5) / n
    x, y = c[None, :].copy(), c[:, None].copy()
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y  # (1, n), (n, 1) in 0..1


def _rgb(*values) -> np.ndarray:
    return np.array(values, dtype=np.float32).reshape(3, 1, 1)


class _Canvas:
    """Float RGB planes at _SS times the output size; coordinates are 0..1 of the image."""

    def __init__(self, size: int):
        self.size = size
        self.n = size * _SS
        self.x, self.y = _grid(self.n)
        self.img = np.empty((3, self.n, self.n), dtype=np.float32)

    def cover(self, sdf):
        """Coverage of a shape from its signed distance (positive inside, image units)."""
        return np.clip(sdf * self.n + 0.5, 0.0, 1.0)

    def window(self, x0, y0, x1, y1):
        """(slices, xs, ys) of the part of the canvas inside a box, or None if it is empty."""
        n = self.n
        i0, i1 = max(0, int(y0 * n)), min(n, math.ceil(y1 * n))
        j0, j1 = max(0, int(x0 * n)), min(n, math.ceil(x1 * n))
        if i1 <= i0 or j1 <= j0:
            return None
        return (slice(None), slice(i0, i1), slice(j0, j1)), self.x[:, j0:j1], self.y[i0:i1, :]

    def paint(self, sl, alpha, colour) -> None:
        """Blend colour ((3,1,1) or a (3,h,w) field) over the window with coverage alpha."""
        region = self.img if sl is None else self.img[sl]
        diff = colour - region
        diff *= alpha
        region += diff

    def dots(self, px, py, colour, alpha=1.0) -> None:
        """Output-pixel dots (_SS x _SS blocks) at image coordinates px, py (arrays)."""
        n = self.n
        i = np.clip((np.asarray(py) * n).astype(np.int64), 0, n - _SS)
        j = np.clip((np.asarray(px) * n).astype(np.int64), 0, n - _SS)
        a = np.broadcast_to(np.asarray(alpha, dtype=np.float32), i.shape)
        col = colour.reshape(3, 1)
        for di in range(_SS):
            for dj in range(_SS):
                cur = self.img[:, i + di, j + dj]
                self.img[:, i + di, j + dj] = cur + (col - cur) * a

    def result(self) -> np.ndarray:
        img = self.img
        rows = img[:, 0::2] + img[:, 1::2]
        out = rows[:, :, 0::2] + rows[:, :, 1::2]  # 2x2 box filter (times 4)
        out *= 0.25
        out += 0.5
        np.clip(out, 0, 255, out=out)
        return np.ascontiguousarray(out.transpose(1, 2, 0)).astype(np.uint8)


def _smooth_noise(small: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear upsampling of a small noise grid to (h, w)."""
    im = Image.fromarray(np.ascontiguousarray(small, dtype=np.float32))
    return np.asarray(im.resize((w, h), Image.Resampling.BILINEAR))


def _ellipse_sdf(dx, dy, a, b):
    """Approximate signed distance to an axis-aligned ellipse (first order, exact on the edge)."""
    f = (dx / a) ** 2 + (dy / b) ** 2 - 1.0
    g = 2.0 * np.sqrt((dx / (a * a)) ** 2 + (dy / (b * b)) ** 2) + 1e-6
    return -f / g


def _jitter(colour: np.ndarray, z: np.ndarray, amount: float = 7.0) -> np.ndarray:
    """A colour moved by a few levels per channel (z: 3 standard normals)."""
    return np.clip(colour + amount * z.reshape(3, 1, 1), 0, 255).astype(np.float32)


# ---------------------------------------------------------------- flower

PETAL_PALETTE = {
    "red": _rgb(215, 28, 35), "orange": _rgb(250, 135, 15), "yellow": _rgb(250, 218, 40),
    "blue": _rgb(40, 85, 225), "purple": _rgb(128, 42, 178), "pink": _rgb(250, 132, 192),
    "white": _rgb(246, 246, 243),
}
CENTRE_PALETTE = {
    "yellow": _rgb(242, 192, 18), "brown": _rgb(108, 62, 26), "black": _rgb(22, 18, 18),
    "white": _rgb(250, 250, 248),
}
FLOWER_BACKGROUND_PALETTE = {
    "grass": _rgb(70, 140, 50), "sky": _rgb(120, 182, 236), "black": _rgb(15, 15, 18),
    "cream": _rgb(232, 214, 172), "soil": _rgb(112, 74, 44),
}
_STEM_RGB = _rgb(48, 118, 40)


NAMED_JITTER = 2.0   # levels per channel around a named colour (a palette colour moves more)


def _slot_colour(attrs: dict, slot: str, palette_colour, z, amount: float) -> np.ndarray:
    """The colour of a part: ``attrs[slot + "_rgb"]`` when named exactly (see colour_names.py),
    else its category's palette colour; jittered by z."""
    rgb = attrs.get(f"{slot}_rgb")
    if rgb is not None:
        return _jitter(_rgb(*rgb), z, NAMED_JITTER)
    return _jitter(palette_colour, z, amount)


def _flower_background(cv: _Canvas, name: str, base: np.ndarray, noise_lo, noise_hi) -> None:
    n = cv.n
    y = cv.y
    if name == "grass":  # vertical blades: noise fast along x, slow along y
        tex = 1.0 + 0.13 * _smooth_noise(noise_hi, n, n) + 0.05 * _smooth_noise(noise_lo, n, n)
        cv.img[:] = base * (tex * (1.05 - 0.2 * y))
    elif name == "sky":  # gradient, lighter towards the bottom, faint clouds
        top, bottom = base * 0.88, np.minimum(base * 1.18 + 12, 255)
        cv.img[:] = top + (bottom - top) * y
        clouds = np.clip(_smooth_noise(noise_lo, n, n) - 0.6, 0, 1) * 0.35
        cv.paint(None, clouds, _rgb(245, 248, 252))
    elif name == "black":  # faint vignette
        d2 = (cv.x - 0.5) ** 2 + (y - 0.5) ** 2
        cv.img[:] = base * (1.5 - 1.5 * d2)
    elif name in ("cream", "plain"):  # paper grain (plain: any named colour)
        cv.img[:] = base * (1.0 + 0.025 * _smooth_noise(noise_lo, n, n))
    else:  # soil: speckled earth
        tex = 1.0 + 0.12 * _smooth_noise(noise_hi.T[:8, :8] * 1.5, n, n) \
            + 0.08 * _smooth_noise(noise_lo, n, n)
        cv.img[:] = base * tex


def _render_flower(attrs: dict, size: int, rng: np.random.Generator) -> np.ndarray:
    # Nuisance, drawn in a fixed order whatever the attributes.
    u = rng.random(10).tolist()  # python floats keep the float32 arrays float32
    z = rng.standard_normal((4, 3))
    noise_lo = rng.standard_normal((5, 5)).astype(np.float32)
    noise_hi = rng.standard_normal((4, 26)).astype(np.float32)

    cv = _Canvas(size)
    petal = _slot_colour(attrs, "petal", PETAL_PALETTE[attrs["petal_colour"]], z[0], 7.0)
    centre = _slot_colour(attrs, "centre", CENTRE_PALETTE[attrs["centre_colour"]], z[1], 7.0)
    bg_name = "plain" if "background_rgb" in attrs else attrs["background"]
    bg = _slot_colour(attrs, "background", FLOWER_BACKGROUND_PALETTE.get(bg_name), z[2],
                      2.0 if bg_name == "black" else 5.0)
    _flower_background(cv, bg_name, bg, noise_lo, noise_hi)

    large = attrs["size"] == "large"
    radius = (0.42 if large else 0.25) * (1.0 + 0.07 * (2 * u[0] - 1))
    amp = 0.04 if large else 0.14
    cx = 0.5 + amp * (2 * u[1] - 1)
    cy = 0.5 + amp * (2 * u[2] - 1) - (0.0 if large else 0.03)
    lw = 0.9 / size  # outline width: about one output pixel

    _flower_stem(cv, cx, cy, u[4], u[5], float(z[3, 0]), lw)
    sl, dx, dy, r = _flower_petals(cv, attrs["petal_shape"], int(attrs["petal_count"]),
                                   cx, cy, radius, u[3], petal, lw)
    _flower_centre(cv, sl, dx, dy, r, radius, petal, centre, lw)

    cv.img *= 1.0 + 0.05 * (2 * u[6] - 1)
    return cv.result()


def _flower_stem(cv: _Canvas, cx, cy, u_lean, u_width, z_shade, lw) -> None:
    """The stem, from the centre (cx, cy) down past the bottom edge."""
    lean = 0.18 * (2 * u_lean - 1)
    sw = 0.022 + 0.006 * u_width
    x0, y0, x1, y1 = cx, cy, cx + lean, 1.05
    win = cv.window(min(x0, x1) - sw, y0 - sw, max(x0, x1) + sw, 1.0)
    if win is None:
        return
    sl, xs, ys = win
    ddx, ddy = x1 - x0, y1 - y0
    t = np.clip(((xs - x0) * ddx + (ys - y0) * ddy) / (ddx * ddx + ddy * ddy), 0, 1)
    ex, ey = xs - x0 - t * ddx, ys - y0 - t * ddy
    dist = np.sqrt(ex * ex + ey * ey)
    cv.paint(sl, cv.cover(sw - dist), _STEM_RGB * 0.55)
    cv.paint(sl, cv.cover(sw - lw - dist), _STEM_RGB * (1.0 + 0.1 * z_shade))


def _petal_sdf(shape: str, pu, pv, radius, n_petals: int):
    """(signed distance to the petal, position t along it in 0..1) from petal coordinates:
    pu along the petal's axis, pv across it."""
    base = 0.12 * radius
    length = radius - base
    half = math.tan(math.pi / n_petals)
    t = np.clip((pu - base) / length, 1e-3, 1.0)
    if shape == "round":
        a = 0.5 * length
        uc = base + a
        b = min(0.31 * length, 0.8 * uc * half)
        return _ellipse_sdf(pu - uc, pv, a, b), t
    # pointed: widest at 38 % of the length, tapering to a sharp tip
    p = 0.716  # 0.38 ** p == 0.5
    uw = base + 0.38 * length
    b = min(0.30 * length, 0.85 * uw * half)
    tp = t ** p
    w = b * np.sin(np.pi * tp)
    dw = b * np.cos(np.pi * tp) * np.pi * p * tp / t / length
    sdf = (w - pv) / np.sqrt(1.0 + dw * dw)
    return np.minimum(sdf, np.minimum(pu - base, radius - pu)), t


def _flower_petals(cv: _Canvas, shape: str, n_petals: int, cx, cy, radius, u_rot, petal, lw):
    """The petals, in one pass over the flower's box where each pixel is measured against its
    nearest petal axis. Returns the box (slices) and its offsets dx, dy and radius r from the
    centre, for the centre disc."""
    period = 2.0 * math.pi / n_petals
    rot = u_rot * period
    m = 2.0 / cv.size
    sl, xs, ys = cv.window(cx - radius - m, cy - radius - m, cx + radius + m, cy + radius + m)
    dx, dy = xs - cx, ys - cy
    r = np.sqrt(dx * dx + dy * dy)
    theta = np.arctan2(dy, dx) - rot
    da = theta - period * np.round(theta / period)
    pu = r * np.cos(da)  # along the petal axis
    pv = np.abs(r * np.sin(da))  # across it
    sdf, t = _petal_sdf(shape, pu, pv, radius, n_petals)
    inner = cv.cover(sdf - lw)
    cv.paint(sl, cv.cover(sdf), petal * 0.5)
    # lighter towards the tip, with a faint darker vein along the axis
    vein = np.clip(1.0 - pv * (cv.size * 1.2), 0, 1) * ((t > 0.08) & (t < 0.8))
    shade = (0.74 + 0.34 * t) * (1.0 - 0.16 * vein)
    cv.paint(sl, inner, np.minimum(petal * shade, 255))
    return sl, dx, dy, r


def _flower_centre(cv: _Canvas, sl, dx, dy, r, radius, petal, centre, lw) -> None:
    """The centre disc with a dark rim and a dotted texture."""
    rc = 0.25 * radius
    sdf_c = rc - r
    cv.paint(sl, cv.cover(sdf_c), np.minimum(petal, centre) * 0.45)
    k = 2.0 * math.pi / (0.36 * rc)
    dots = 0.9 + 0.1 * np.sin(dx * k) * np.sin(dy * k)
    light = 1.08 - 0.25 * np.clip((dx + dy) / (2.0 * rc), -1, 1)
    cv.paint(sl, cv.cover(sdf_c - lw), np.minimum(centre * (dots * light), 255))


# ---------------------------------------------------------------- landscape

_SKY = {  # (top, middle, horizon)
    "day": (_rgb(58, 118, 212), _rgb(110, 165, 230), _rgb(180, 215, 242)),
    "sunset": (_rgb(62, 46, 120), _rgb(215, 100, 105), _rgb(255, 176, 82)),
    "night": (_rgb(6, 8, 28), _rgb(14, 20, 52), _rgb(34, 44, 88)),
}
_LIGHT = {"day": _rgb(1.0, 1.0, 1.0), "sunset": _rgb(1.0, 0.8, 0.68),
          "night": _rgb(0.42, 0.46, 0.64)}
_WATER = {"day": _rgb(62, 122, 205), "sunset": _rgb(112, 82, 150), "night": _rgb(30, 42, 92)}
_GROUND = {"summer": _rgb(62, 140, 45), "autumn": _rgb(168, 112, 48),
           "winter": _rgb(236, 240, 247), "spring": _rgb(152, 214, 96)}
_SPECKLE = {"summer": _rgb(38, 100, 30), "autumn": _rgb(205, 72, 25),
            "winter": _rgb(200, 210, 228), "spring": _rgb(246, 140, 196)}
_CROWN = {"summer": (_rgb(30, 96, 34), _rgb(44, 120, 40)),
          "autumn": (_rgb(222, 92, 24), _rgb(200, 140, 30)),
          "winter": (_rgb(30, 72, 50), _rgb(38, 84, 58)),
          "spring": (_rgb(246, 164, 202), _rgb(140, 205, 96))}
_TRUNK = _rgb(92, 62, 38)
_SNOW = _rgb(246, 248, 252)


def _sky_object(cv, attrs, horizon, u) -> tuple[float, float] | None:
    obj, tod = attrs["sky_object"], attrs["time_of_day"]
    if obj == "none":
        return None
    ox = 0.15 + 0.7 * u[0]
    if obj == "sun":  # a disc with a glow: yellow by day, orange-red at sunset
        rad = 0.065 if tod == "day" else 0.085
        oy = (0.10 + 0.1 * u[1]) if tod == "day" else horizon - 0.36 - 0.04 * u[1]
        core = _rgb(255, 232, 90) if tod == "day" else _rgb(255, 118, 44)
        glow = _rgb(255, 236, 140) if tod == "day" else _rgb(255, 150, 72)
        sl, xs, ys = cv.window(ox - 4 * rad, oy - 4 * rad, ox + 4 * rad, oy + 4 * rad)
        d = np.sqrt((xs - ox) ** 2 + (ys - oy) ** 2)
        cv.paint(sl, 0.55 * np.exp(-((d / (2.3 * rad)) ** 2)), glow)
        cv.paint(sl, cv.cover(rad - d), core)
    else:  # moon: a fat crescent, pale grey with a darker sea
        rad = 0.075
        oy = 0.11 + 0.11 * u[1]
        ang = 2 * math.pi * u[2]
        off = 0.5 * rad
        sl, xs, ys = cv.window(ox - 3 * rad, oy - 3 * rad, ox + 3 * rad, oy + 3 * rad)
        d = np.sqrt((xs - ox) ** 2 + (ys - oy) ** 2)
        d2 = np.sqrt((xs - ox - off * math.cos(ang)) ** 2 + (ys - oy - off * math.sin(ang)) ** 2)
        body = cv.cover(np.minimum(rad - d, d2 - 0.85 * rad))
        if tod == "night":
            cv.paint(sl, 0.22 * np.exp(-((d / (2.0 * rad)) ** 2)), _rgb(200, 210, 235))
            colour = _rgb(242, 240, 222)
        else:
            colour = _rgb(236, 238, 244)
        seas = np.exp(-(((xs - ox + 0.3 * rad) ** 2 + (ys - oy - 0.2 * rad) ** 2)
                        / (0.3 * rad) ** 2))
        cv.paint(sl, body, colour * (1.0 - 0.12 * seas))
    return ox, oy


class _Scene(NamedTuple):
    """What every part of a landscape reads: time of day, season, horizon height, light."""
    tod: str
    season: str
    horizon: float
    light: np.ndarray  # (3, 1, 1) multiplier of the time of day


def _render_landscape(attrs: dict, size: int, rng: np.random.Generator) -> np.ndarray:
    # Nuisance, drawn in a fixed order whatever the attributes.
    u = rng.random(16).tolist()
    z = rng.standard_normal((4, 3))
    peaks = rng.random((3, 4)).astype(np.float32)
    few = rng.random((4, 4)).tolist()
    forest = rng.random((16, 3)).astype(np.float32)
    stars = rng.random((50, 3))
    speckle = rng.random((60, 2))
    noise = rng.standard_normal((6, 6)).astype(np.float32)

    cv = _Canvas(size)
    tod = attrs["time_of_day"]
    sc = _Scene(tod, attrs["season"], 0.56 + 0.06 * u[3], _LIGHT[tod])

    haze = _landscape_sky(cv, sc, stars, attrs.get("sky_rgb"))
    obj_pos = _sky_object(cv, attrs, sc.horizon, u[0:3])
    if attrs["mountains"] != "none":
        _mountains(cv, sc, attrs["mountains"] == "snowy", peaks, z[1], u[4])
    # a named ground or water colour is drawn as named: not relit by the time of day
    ground_rgb = attrs.get("ground_rgb")
    gcol = _slot_colour(attrs, "ground", _GROUND[sc.season], z[2], 5.0)
    _ground(cv, sc, gcol, haze, noise, speckle, u[5], relight=ground_rgb is None)
    if attrs["trees"] == "forest":
        _forest(cv, sc, forest)
    lake = None
    if attrs["water"] == "lake":
        lake = _lake(cv, sc, u[6:10], z[3], gcol, obj_pos, attrs.get("water_rgb"))
    if attrs["trees"] == "few":
        _few_trees(cv, sc, few, u[10], lake)

    cv.img *= 1.0 + 0.04 * (2 * u[11] - 1)
    return cv.result()


def _landscape_sky(cv: _Canvas, sc: _Scene, stars, named=None) -> np.ndarray:
    """The sky, a three-stop vertical gradient, with stars at night. A named sky colour (sRGB)
    is the gradient's middle stop, a little darker above and paler at the horizon. Returns
    the colour at the horizon (the haze over the distant ground)."""
    if named is None:
        top, mid, low = _SKY[sc.tod]
    else:
        mid = _rgb(*named)
        top, low = mid * 0.85, mid + (255.0 - mid) * 0.3
    t = np.clip(cv.y[:, 0] / sc.horizon, 0.0, 1.0)[None, :, None]  # (1, n, 1)
    cv.img[:] = np.where(t < 0.55, top + (mid - top) * (t / 0.55),
                         mid + (low - mid) * ((t - 0.55) / 0.45))
    if sc.tod == "night":
        keep = stars[:, 2] > 0.25
        cv.dots(stars[keep, 0], stars[keep, 1] * (sc.horizon - 0.05), _rgb(250, 250, 235),
                alpha=0.45 + 0.55 * stars[keep, 2])
    return low


def _mountains(cv: _Canvas, sc: _Scene, snowy: bool, peaks, z_rock, u_snow) -> None:
    """A ridge of three peaks; snow above a wavy line on the snowy kind."""
    horizon, light = sc.horizon, sc.light
    xr = cv.x[0]
    px = (np.arange(3, dtype=np.float32) + 0.5) / 3 + 0.2 * (peaks[:, 0] - 0.5)
    ph = 0.16 + 0.15 * peaks[:, 1]
    slope = 0.9 + 0.7 * peaks[:, 2]
    heights = ph[:, None] - slope[:, None] * np.abs(xr[None, :] - px[:, None])  # (3, n)
    heights += 0.006 * np.sin(xr[None, :] * 55.0 + 6.0 * peaks[:, 3:4])
    k = np.argmax(heights, axis=0)
    ridge = horizon - np.maximum(heights[k, np.arange(cv.n)], 0.0)  # (n,)
    sl, xs, ys = cv.window(0, float(ridge.min()) - 0.01, 1, horizon + 0.02)
    cover = cv.cover(ys - ridge[None, :])
    lit_side = (xr < px[k])[None, None, :]  # light from the left
    rock = _jitter(_rgb(128, 112, 98), z_rock, 5.0)
    colour = np.where(lit_side, rock * 1.08, rock * 0.74) * light
    if snowy:
        line = ph[k] * (0.56 + 0.07 * np.sin(xr * 70.0 + 9 * u_snow))
        snow = cv.cover((horizon - ys) - line[None, :])
        snow_col = np.where(lit_side, _SNOW, _rgb(196, 206, 228)) * light
        colour = colour + (snow_col - colour) * snow
    cv.paint(sl, cover, colour)


def _ground(cv: _Canvas, sc: _Scene, gcol, haze, noise, speckle, u_wave,
            relight: bool = True) -> None:
    """The ground, lighter and hazier towards the horizon, with a little texture and speckles
    (``relight``: shaded by the time of day's light)."""
    horizon = sc.horizon
    light = sc.light if relight else _rgb(1.0, 1.0, 1.0)
    ground_top = horizon + 0.004 * np.sin(cv.x * 9.0 + 7 * u_wave)
    sl, xs, ys = cv.window(0, horizon - 0.01, 1, 1)
    depth = np.clip((ys - horizon) / (1.0 - horizon), 0, 1)
    tex = 1.0 + 0.06 * _smooth_noise(noise, ys.shape[0], cv.n)
    gfield = gcol * ((1.06 - 0.2 * depth) * tex)
    if sc.tod != "night":
        gfield = gfield + (haze - gfield) * (0.25 * (1.0 - depth) ** 3)
    cv.paint(sl, cv.cover(ys - ground_top), np.minimum(gfield * light, 255))
    sy = horizon + 0.03 + (1.0 - horizon - 0.04) * speckle[:, 1] ** 0.8
    cv.dots(speckle[:, 0], sy, _SPECKLE[sc.season] * light, alpha=0.9)


def _forest(cv: _Canvas, sc: _Scene, forest) -> None:
    """A continuous band of crowns along the horizon (conifers in winter)."""
    horizon, season = sc.horizon, sc.season
    dark, alt = _CROWN[season]
    xr = cv.x[0]
    m = forest.shape[0]
    fx = (np.arange(m, dtype=np.float32) + 0.5) / m + (forest[:, 0] - 0.5) / m
    if season == "winter":  # conifers
        apex = horizon - 0.07 - 0.07 * forest[:, 1]
        tops = apex[:, None] + 2.6 * np.abs(xr[None, :] - fx[:, None])
    else:
        rad = 0.05 + 0.025 * forest[:, 1]
        cyc = horizon - 0.015 - 0.035 * forest[:, 2]
        d2 = rad[:, None] ** 2 - (xr[None, :] - fx[:, None]) ** 2
        tops = np.where(d2 > 0, cyc[:, None] - np.sqrt(np.maximum(d2, 0)), 9.0)
    k = np.argmin(tops, axis=0)
    top_line = tops[k, np.arange(cv.n)]
    bottom = horizon + 0.05
    sl, xs, ys = cv.window(0, float(top_line.min()) - 0.01, 1, bottom + 0.01)
    cover = cv.cover(np.minimum(ys - top_line[None, :], bottom - ys))
    if season in ("autumn", "spring"):
        base_col = np.where((forest[k, 2] > 0.55)[None, None, :], alt, dark)
    else:
        base_col = dark
    depth = np.clip((ys - top_line[None, :]) / 0.08, 0, 1)
    colour = base_col * ((1.1 - 0.35 * depth) * (0.9 + 0.2 * forest[k, 0])[None, :])
    if season == "spring":  # blossoms dotted through the green crowns
        spots = np.sin(xs * 260.0) * np.sin(ys * 230.0) > 0.35
        colour = np.where(spots, _CROWN["spring"][0] * 1.05, colour)
    elif season == "winter":  # snow on the branches
        bands = np.sin((ys - top_line[None, :]) * 170.0) > 0.55
        colour = np.where(bands, _SNOW * 0.95, colour)
    cv.paint(sl, cover, np.minimum(colour * sc.light, 255))


def _lake(cv: _Canvas, sc: _Scene, u, z_water, gcol, obj_pos,
          named=None) -> tuple[float, float, float, float]:
    """An ellipse below the horizon, reflecting the sky, with ripples and a dark shore; u: 4
    uniforms; ``named``: the water's sRGB colour instead of the time of day's. Returns
    (centre x, centre y, radius x, radius y)."""
    ry = 0.065 + 0.025 * u[0]
    rx = 0.3 + 0.12 * u[1]
    lx = 0.5 + 0.2 * (u[2] - 0.5)
    ly = sc.horizon + 0.055 + ry + 0.06 * u[3]
    sl, xs, ys = cv.window(lx - rx - 0.01, ly - ry - 0.01, lx + rx + 0.01, ly + ry + 0.01)
    sdf = _ellipse_sdf(xs - lx, ys - ly, rx, ry)
    water = (_jitter(_WATER[sc.tod], z_water, 5.0) if named is None
             else _jitter(_rgb(*named), z_water, NAMED_JITTER))
    ripple = 1.0 + 0.1 * np.sin(2 * np.pi * (ys * 36.0 + 0.25 * np.sin(xs * 11.0)))
    far = 1.12 - 0.24 * np.clip((ys - (ly - ry)) / (2 * ry), 0, 1)
    colour = water * (ripple * far)
    if obj_pos is not None:  # the reflection of the sun or moon
        glint = np.exp(-(((xs - obj_pos[0]) / 0.025) ** 2)) * (ripple > 1.0)
        colour = colour + (_rgb(250, 240, 210) - colour) * (0.45 * glint)
    cv.paint(sl, cv.cover(sdf), gcol * 0.55 * (sc.light if named is None else 1.0))
    cv.paint(sl, cv.cover(sdf - 1.2 / cv.size), np.minimum(colour, 255))
    return lx, ly, rx, ry


def _few_trees(cv: _Canvas, sc: _Scene, few, u_count, lake) -> None:
    """Two to four trees standing in front, moved below the lake where they would stand in it."""
    horizon = sc.horizon
    count = 2 + int(u_count * 2.999)
    for i in range(count):
        tx = 0.08 + 0.84 * (i + 0.5 + 0.55 * (few[i][0] - 0.5)) / count
        by = horizon + 0.07 + 0.3 * few[i][1]
        if lake is not None and abs(tx - lake[0]) < lake[2] + 0.02 \
                and abs(by - lake[1]) < lake[3] + 0.05:
            by = min(lake[1] + lake[3] + 0.05, 0.985)
        scale = 0.85 + 0.5 * (by - horizon) / 0.4
        h = (0.17 + 0.08 * few[i][2]) * scale
        _tree(cv, tx, by, h, sc.season, sc.light, few[i][3], cv.size)


def _tree(cv, tx, by, h, season, light, v, size) -> None:
    lw = 0.9 / size
    dark, alt = _CROWN[season]
    if season == "winter":  # snowy conifer
        hw = 0.3 * h
        sl, xs, ys = cv.window(tx - hw - 0.01, by - h - 0.01, tx + hw + 0.01, by + 0.01)
        trunk = np.minimum(0.012 * h / 0.2 - np.abs(xs - tx),
                           np.minimum(by - ys, ys - by + 0.2 * h))
        cv.paint(sl, cv.cover(trunk), _TRUNK * light)
        apex, base = by - h, by - 0.12 * h
        s = hw / (base - apex)
        side = ((ys - apex) * s - np.abs(xs - tx)) / math.sqrt(1 + s * s)
        sdf = np.minimum(side, base - ys)
        bands = np.sin((ys - apex) / h * 26.0) > 0.45
        colour = np.where(bands, _SNOW * 0.97, dark * (0.9 + 0.2 * v))
        cv.paint(sl, cv.cover(sdf), dark * 0.6 * light)
        cv.paint(sl, cv.cover(sdf - lw), np.minimum(colour * light, 255))
        return
    rad = 0.3 * h
    ccx, ccy = tx, by - h + rad
    sl, xs, ys = cv.window(tx - rad - 0.01, by - h - 0.01, tx + rad + 0.01, by + 0.01)
    trunk = np.minimum(0.014 * h / 0.2 - np.abs(xs - tx), np.minimum(by - ys, ys - ccy))
    cv.paint(sl, cv.cover(trunk), _TRUNK * light)
    d = np.sqrt((xs - ccx) ** 2 + ((ys - ccy) * 1.05) ** 2)
    main = dark
    if season == "autumn" and v > 0.5:
        main = alt
    hl = np.clip(1.0 - np.sqrt((xs - ccx + 0.35 * rad) ** 2 + (ys - ccy + 0.35 * rad) ** 2) / rad,
                 0, 1)
    colour = main * (0.86 + 0.35 * hl)
    if season == "spring":  # light-green leaves between the blossoms
        leaves = np.sin(xs * 240.0 + 3 * v) * np.sin(ys * 250.0) > 0.3
        colour = np.where(leaves, alt, colour)
    cv.paint(sl, cv.cover(rad - d), main * 0.55 * light)
    cv.paint(sl, cv.cover(rad - lw - d), np.minimum(colour * light, 255))


# ---------------------------------------------------------------- public rendering

def render(domain: str, attrs: dict, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [size, size, 3] image of attrs. Same rng state + other attrs = same layout.

    Optional keys: ``{petal,centre,background}_rgb`` for flowers and ``{sky,water,ground}_rgb``
    for landscapes (exact colours, colour_names.py) and ``style`` (one of styles.STYLES;
    "plain" when absent)."""
    _check_attrs(domain, attrs)
    size = int(size)
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    image = (_render_flower if domain == "flower" else _render_landscape)(attrs, size, rng)
    style = attrs.get("style", "plain")
    if style != "plain":        # after the layout's draws: a styled image keeps its layout
        image = styles.apply_style(image, style, np.random.default_rng(rng.integers(2 ** 32)))
    return image


def _make_item(domain, i, size, seed, split, captions_per_image, extra=None):
    rng = np.random.default_rng([seed, i])
    attrs = sample_attributes(domain, rng, split)
    if extra is not None:    # its own stream: the layout and captions' rng stay as without it
        attrs = extra(domain, attrs, np.random.default_rng([seed, i, 1]), split)
    image = render(domain, attrs, size, rng)
    caps = [make_caption(domain, attrs, rng, split) for _ in range(captions_per_image)]
    return image, attrs, caps


def _make_chunk(args):
    start, stop, size, seed, domains, split, captions_per_image, extra = args
    images = np.empty((stop - start, size, size, 3), dtype=np.uint8)
    attrs_list, caps_list = [], []
    for j, i in enumerate(range(start, stop)):
        image, attrs, caps = _make_item(domains[i % len(domains)], i, size, seed, split,
                                        captions_per_image, extra)
        images[j] = image
        attrs_list.append(attrs)
        caps_list.append(caps)
    return images, attrs_list, caps_list


def make_dataset_arrays(n: int, size: int, seed: int, domains=DOMAINS, split: str = "train",
                        captions_per_image: int = 4, workers: int = 1, extra=None) -> dict:
    """Pre-render n captioned images; image i uses domains[i % len(domains)] and seed (seed, i).

    ``extra(domain, attrs, rng, split) -> attrs`` (picklable; for example
    ``colour_names.add_named_colours_to_flowers``) may add exact colours to each image's
    attributes, from its own random stream (seed, i, 1).

    Returns {"images": uint8 [n,size,size,3], "labels": int64 [n,len(LABEL_HEADS)],
    "domain": int64 [n] (index into DOMAINS), "captions": list of captions_per_image strings
    per image, "attrs": list of dicts}. The result does not depend on workers.
    """
    domains = tuple(domains)
    if not domains:
        raise ValueError("domains is empty")
    for domain in domains:
        _check_domain(domain)
    n, size = int(n), int(size)
    workers = max(1, int(workers))
    chunk = max(1, -(-n // (workers * 4)))
    jobs = [(s, min(n, s + chunk), size, seed, domains, split, captions_per_image, extra)
            for s in range(0, n, chunk)]
    if workers > 1 and len(jobs) > 1:
        # fork: the children inherit the loaded package (it is not importable by name)
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        if ctx is None:
            parts = [_make_chunk(job) for job in jobs]
        else:
            with ctx.Pool(min(workers, len(jobs))) as pool:
                parts = pool.map(_make_chunk, jobs)
    else:
        parts = [_make_chunk(job) for job in jobs]
    images = (np.concatenate([p[0] for p in parts]) if parts
              else np.empty((0, size, size, 3), dtype=np.uint8))
    attrs = [a for p in parts for a in p[1]]
    caps = [c for p in parts for c in p[2]]
    dom = np.array([DOMAINS.index(domains[i % len(domains)]) for i in range(n)], dtype=np.int64)
    labels = (np.stack([labels_vector(DOMAINS[d], a) for d, a in zip(dom, attrs)]) if n
              else np.empty((0, len(LABEL_HEADS)), dtype=np.int64))
    return {"images": images, "labels": labels, "domain": dom, "captions": caps, "attrs": attrs}
