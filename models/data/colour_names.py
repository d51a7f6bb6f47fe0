"""Colours named from the colour lexicon, for training captions and the evaluation.

``add_named_colours`` gives a flower's petals, centre and (sometimes) background an exact sRGB
colour and the phrase that names it, chosen once per image so that every caption of the image
names the colour it shows:
- a synonym of the attribute's category from the caption tables, drawn in the lexicon's colour
  for that synonym ("crimson" petals are XKCD crimson, not the renderer's red), or
- a name from the lexicon (XKCD, CSS4, color-name-list) or a hex code, drawn in its colour.

The category attribute becomes the nearest palette colour (CIELAB distance), so the held-out
combination rules still apply; the auxiliary label of a slot is kept only where a synonym's
colour is still nearest to its own category (``attrs["unlabelled"]`` lists the others).
Lexicon names come from the training 85 % (``split="train"``) or the held-out 15 %
(``split="heldout"``) of ``colour_lexicon.is_heldout_name``; the held-out pool leaves out the
few held-out names that the caption tables use as synonyms (``caption_table_names``).
"""
from __future__ import annotations

import functools
import re

import numpy as np

from .. import colour_lexicon as lex
from . import captions, procedural, styles

# what a slot's colour is drawn from: (category synonym, lexicon name, hex code)
SLOT_CHOICES = {"petal": (0.45, 0.47, 0.08), "centre": (0.45, 0.47, 0.08),
                "background": (0.55, 0.40, 0.05)}
SOURCE_WEIGHTS = {"xkcd": 0.5, "css4": 0.15, "color-name-list": 0.35}
_PALETTES = {"petal": procedural.PETAL_PALETTE, "centre": procedural.CENTRE_PALETTE,
             "background": procedural.FLOWER_BACKGROUND_PALETTE}
PARTS = ("petal", "centre", "background")
# a landscape's named parts; the colour reader's first three queries take them in this order
LANDSCAPE_PARTS = ("sky", "water", "ground")
LANDSCAPE_NAMED_SHARE = 0.3     # per part: a named colour (else the time of day's or season's)
LANDSCAPE_HEX_SHARE = 0.08      # of the named ones: a hex code
CATEGORY = {"petal": "petal_colour", "centre": "centre_colour", "background": "background"}


@functools.lru_cache(maxsize=1)
def caption_table_names() -> frozenset[str]:
    """Lexicon names inside the caption tables' own phrases ("crimson", "on a beige
    background"): training captions use them whatever their hash says, so the evaluation's
    held-out pool leaves them out."""
    found = set()

    def walk(node):
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, (tuple, list)):
            for v in node:
                walk(v)
        elif isinstance(node, str):
            found.update(span.name for span in lex.find_colours(node))

    walk([captions.FLOWER_TRAIN, captions.LANDSCAPE_TRAIN, captions.NAMED_BACKGROUND_TRAIN,
          captions.NAMED_LANDSCAPE_TRAIN,
          list(captions.FLOWER_TRAIN_NOUNS), list(captions.LANDSCAPE_TRAIN_NOUNS)])
    return frozenset(found)


@functools.lru_cache(maxsize=2)
def names_by_source(split: str) -> dict[str, tuple[tuple[str, tuple[int, int, int]], ...]]:
    """{source: ((name, rgb), ...)} of the split's lexicon names that find_colours finds alone."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    out: dict[str, list] = {s: [] for s in SOURCE_WEIGHTS}
    for name, (rgb, source) in lex.lexicon().items():
        if source not in out or lex.is_heldout_name(name) != (split == "heldout"):
            continue
        if not lex.names_a_colour(name, source):
            continue
        if split == "heldout" and name in caption_table_names():
            continue
        out[source].append((name, rgb))
    return {s: tuple(v) for s, v in out.items()}


@functools.lru_cache(maxsize=4)
def _palette_lab(slot: str) -> tuple[tuple[str, ...], np.ndarray]:
    names = tuple(_PALETTES[slot])
    return names, lex.srgb_to_lab(np.stack([_PALETTES[slot][n].reshape(3) for n in names]))


def nearest_category(slot: str, rgb) -> str:
    names, labs = _palette_lab(slot)
    d = np.linalg.norm(labs - lex.srgb_to_lab(rgb), axis=1)
    return names[int(np.argmin(d))]


def lexicon_name(rng: np.random.Generator, split: str) -> tuple[str, tuple[int, int, int]]:
    table = names_by_source(split)
    sources = [s for s in SOURCE_WEIGHTS if table[s]]
    w = np.array([SOURCE_WEIGHTS[s] for s in sources])
    source = sources[int(rng.choice(len(sources), p=w / w.sum()))]
    return table[source][int(rng.integers(len(table[source])))]


def _synonym(slot: str, category: str, rng: np.random.Generator, split: str):
    """(phrase, rgb) of a caption-table synonym of the category, in the lexicon's colour."""
    table = captions.FLOWER_TRAIN if split == "train" else captions.FLOWER_HELDOUT
    options = table[CATEGORY[slot]][category]
    if split == "train":        # no held-out lexicon name in a training caption
        options = tuple(o for o in options
                        if not any(lex.is_heldout_name(s.name) for s in lex.find_colours(o)))
    phrase = captions.pick(rng, options)
    rgb = lex.phrase_colour(phrase)
    if rgb is None:
        rgb = tuple(int(round(float(v))) for v in _PALETTES[slot][category].reshape(3))
    return phrase, rgb


def add_named_colours(attrs: dict, rng: np.random.Generator, split: str = "train",
                      slots=PARTS) -> dict:
    """A copy of flower attrs with ``{slot}_rgb`` and ``{slot}_phrase`` for some slots."""
    attrs = dict(attrs)
    unlabelled = []
    names = "heldout" if split == "heldout" else "train"     # "any": training names
    for slot in slots:
        kind = int(rng.choice(3, p=SLOT_CHOICES[slot]))
        category = attrs[CATEGORY[slot]]
        if kind == 0:
            phrase, rgb = _synonym(slot, category, rng, names)
        elif kind == 1:
            phrase, rgb = lexicon_name(rng, names)
        else:
            rgb = tuple(int(v) for v in rng.integers(0, 256, 3))
            phrase = "#{:02x}{:02x}{:02x}".format(*rgb)
        nearest = nearest_category(slot, rgb)
        if kind != 0 and split == "train" and procedural.is_heldout_combination(
                "flower", {**attrs, CATEGORY[slot]: nearest}):
            kind = 0            # a held-out combination stays out of training: name the category
            phrase, rgb = _synonym(slot, category, rng, names)
            nearest = nearest_category(slot, rgb)
        if slot == "background" and kind == 0:
            continue            # a textured background of its category, named per caption
        if kind != 0 or nearest != category:
            unlabelled.append(CATEGORY[slot])
        attrs[CATEGORY[slot]] = category if kind == 0 else nearest
        attrs[f"{slot}_rgb"], attrs[f"{slot}_phrase"] = tuple(int(v) for v in rgb), phrase
    if unlabelled:
        attrs["unlabelled"] = tuple(unlabelled)
    return attrs


def add_named_tints(attrs: dict, rng: np.random.Generator, split: str = "train") -> dict:
    """A copy of landscape attrs with ``{part}_rgb`` and ``{part}_phrase`` for some of its sky,
    water (only a lake) and ground: a lexicon name of the split or a hex code."""
    attrs = dict(attrs)
    names = "heldout" if split == "heldout" else "train"
    for part in LANDSCAPE_PARTS:
        draw = rng.random(2)            # drawn for every part: the same rng use whatever is named
        if draw[0] >= LANDSCAPE_NAMED_SHARE or (part == "water" and attrs["water"] != "lake"):
            continue
        if draw[1] < LANDSCAPE_HEX_SHARE:
            rgb = tuple(int(v) for v in rng.integers(0, 256, 3))
            phrase = "#{:02x}{:02x}{:02x}".format(*rgb)
        else:
            phrase, rgb = lexicon_name(rng, names)
        attrs[f"{part}_rgb"], attrs[f"{part}_phrase"] = tuple(int(v) for v in rgb), phrase
    return attrs


def add_named_colours_to_flowers(domain: str, attrs: dict, rng: np.random.Generator,
                                 split: str = "train") -> dict:
    """``make_dataset_arrays``'s ``extra``: named colours for flowers' petals, centres and
    backgrounds and for landscapes' sky, water and ground."""
    return (add_named_colours if domain == "flower" else add_named_tints)(attrs, rng, split)


def add_named_colours_and_style(domain: str, attrs: dict, rng: np.random.Generator,
                                split: str = "train") -> dict:
    """``make_dataset_arrays``'s ``extra`` for --named-colours with --styles: both."""
    attrs = add_named_colours_to_flowers(domain, attrs, rng, split)
    return styles.add_style(domain, attrs, rng, split)


def part_targets(domain: str, attrs: dict, caption: str) -> tuple[np.ndarray, np.ndarray]:
    """What the colour reader's first three queries should find in ``caption``: float32 [3, 4]
    colour channels (colour_lexicon.colour_code) of the petals, centre and background (a
    landscape: its sky, water and ground), and a float32 [3] mask of the parts whose answer is
    known. A part named exactly in the caption wants its colour; a flower's petals or centre
    that the caption leaves out want "none" (zeros); a textured background and a landscape
    part in its usual colours are unknown (mask 0)."""
    targets = np.zeros((3, lex.COLOUR_CHANNELS), dtype=np.float32)
    mask = np.zeros(3, dtype=np.float32)
    text = caption.lower()
    for k, part in enumerate(PARTS if domain == "flower" else LANDSCAPE_PARTS):
        phrase = attrs.get(f"{part}_phrase")
        if phrase is not None and re.search(
                rf"(?<![a-z0-9]){re.escape(phrase.lower())}(?![a-z0-9])", text):
            targets[k], mask[k] = lex.colour_code(attrs[f"{part}_rgb"]), 1.0
        elif part in ("petal", "centre"):
            mask[k] = 1.0       # not said: nothing for this part (the category's colour)
    return targets, mask
