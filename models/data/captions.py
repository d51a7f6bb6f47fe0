"""Caption phrase tables and sentence composer for the procedural domains.

Two disjoint phrasings:
- TRAIN: the templates and synonyms of training captions. Attribute order is random and a few
  minor attributes are sometimes left out (each attribute is mentioned with probability >= 0.9;
  colour, background, time of day and season always).
- HELDOUT: other templates and other synonyms, never used in a training caption, for evaluation
  prompts that test paraphrase generalisation. Held-out captions mention every attribute.

Every held-out synonym of a flower's petal colour and of a landscape's time of day contains a
word that no training phrase or template uses, so a held-out caption can never equal a training
caption.
"""
from __future__ import annotations

import hashlib

import numpy as np

from .styles import STYLE_HELDOUT, STYLE_TRAIN

# ---------------------------------------------------------------- phrase tables

_COUNT_WORDS = {"4": "four", "5": "five", "6": "six", "8": "eight"}

FLOWER_TRAIN = {
    "petal_colour": {
        "red": ("red", "crimson", "scarlet", "bright red", "blood-red", "vermilion", "carmine",
                "brick-red", "deep red", "wine-red", "tomato-red", "strawberry-red", "fiery red"),
        "orange": ("orange", "bright orange", "deep orange", "amber", "apricot", "burnt orange",
                   "carrot-orange", "marigold", "copper-orange", "flame-orange", "peach-orange"),
        "yellow": ("yellow", "golden", "bright yellow", "buttercup-yellow", "sunflower-yellow",
                   "banana-yellow", "butter-yellow", "gold", "sunny yellow", "daffodil-yellow",
                   "honey-yellow"),
        "blue": ("blue", "deep blue", "royal blue", "navy", "azure", "ultramarine",
                 "cornflower-blue", "electric blue", "denim-blue", "periwinkle", "bright blue",
                 "indigo-blue"),
        "purple": ("purple", "violet", "deep purple", "lavender", "lilac", "mauve", "grape-purple",
                   "orchid-purple", "aubergine", "royal purple", "dark violet"),
        "pink": ("pink", "light pink", "hot pink", "rose-pink", "salmon-pink", "fuchsia", "blush",
                 "pastel pink", "bubblegum-pink", "baby pink", "candy-pink", "magenta"),
        "white": ("white", "snow-white", "pure white", "milky white", "bright white",
                  "porcelain-white", "silvery white", "paper-white", "cotton-white", "bone-white"),
    },
    "centre_colour": {
        "yellow": ("yellow", "golden", "gold", "bright yellow", "butter-yellow", "sunny yellow"),
        "brown": ("brown", "dark brown", "chocolate", "cinnamon", "caramel", "walnut", "mahogany",
                  "rust-brown", "tan"),
        "black": ("black", "jet-black", "coal-black", "charcoal", "raven-black", "sooty", "onyx",
                  "dark black"),
        "white": ("white", "pale", "snowy", "milky", "silver", "bright white", "snow-white"),
    },
    # count phrases: "num" goes before "petals", "adj" before the flower noun
    "petal_count": {
        v: {"num": (w, v), "adj": (f"{w}-petaled", f"{w}-petalled", f"{v}-petal")}
        for v, w in _COUNT_WORDS.items()
    },
    "petal_shape": {
        "round": ("round", "rounded", "broad round", "circular", "wide round", "soft round",
                  "curved", "round-ended"),
        "pointed": ("pointed", "pointy", "spiky", "star-like", "needle-like", "narrow pointed",
                    "dagger-shaped", "spear-shaped"),
    },
    "size": {
        "small": ("small", "tiny", "little", "wee", "dainty", "compact", "small-sized"),
        "large": ("large", "big", "huge", "enormous", "massive", "jumbo", "large-sized"),
    },
    "background": {
        "grass": ("on green grass", "against a grassy background", "in a green meadow",
                  "on a lawn", "in a grassy field", "surrounded by green grass",
                  "on a grassy backdrop"),
        "sky": ("against a blue sky", "with the sky behind it", "on a sky-blue background",
                "under an open blue sky", "with blue sky all around", "against the pale blue sky"),
        "black": ("on a black background", "against black", "on a dark background",
                  "in total darkness", "on a coal-black backdrop", "against a jet-black background"),
        "cream": ("on a cream background", "against an off-white background",
                  "on a beige background", "on a pale beige backdrop", "on light tan paper",
                  "against a creamy background"),
        "soil": ("on brown soil", "against dark earth", "on a bed of dirt", "in the dirt",
                 "on dark brown earth", "on a patch of bare soil"),
    },
}
FLOWER_TRAIN_NOUNS = ("flower", "blossom", "bloom", "floret", "flower head", "single flower")
FLOWER_TRAIN_CENTRE_NOUNS = ("centre", "center", "middle", "disc", "hub")

FLOWER_HELDOUT = {
    "petal_colour": {
        "red": ("ruby", "cherry-red"),
        "orange": ("tangerine", "pumpkin-orange"),
        "yellow": ("lemon", "canary-yellow"),
        "blue": ("cobalt", "sapphire"),
        "purple": ("amethyst", "plum-coloured"),
        "pink": ("rosy", "flamingo-pink"),
        "white": ("ivory", "alabaster"),
    },
    "centre_colour": {
        "yellow": ("saffron", "mustard"),
        "brown": ("chestnut", "coffee-coloured"),
        "black": ("ebony", "inky"),
        "white": ("pearl", "chalk-white"),
    },
    "petal_count": {
        v: {"num": (f"exactly {w}", f"precisely {w}", f"{w} separate")}
        for v, w in _COUNT_WORDS.items()
    },
    "petal_shape": {
        "round": ("blunt", "oval"),
        "pointed": ("sharp-tipped", "tapering"),
    },
    "size": {
        "small": ("petite", "miniature"),
        "large": ("giant", "oversized"),
    },
    "background": {
        "grass": ("against verdant turf", "over a field of green blades"),
        "sky": ("against a cerulean backdrop", "with clear heavens behind it"),
        "black": ("against pitch darkness", "on an obsidian backdrop"),
        "cream": ("on parchment-coloured paper", "against an eggshell backdrop"),
        "soil": ("over tilled loam", "against muddy ground"),
    },
}
# a plain background of a named colour ({n}, with its article {a})
# (many wordings teach the colour reader what a background phrase is: a reader fitted alone on
# 8,000 captions bound held-out frames' backgrounds to a median CIEDE2000 of 10.2 with the first
# six, 2.0 with all; tests/tools/reader_wording.py)
NAMED_BACKGROUND_TRAIN = ("on {a} {n} background", "against {a} {n} background", "on {n}",
                          "against {n}", "on a plain {n} background", "on {a} {n} backdrop",
                          "in front of {a} {n} wall", "on {a} {n} sheet",
                          "with {a} {n} backdrop behind it", "against a plain {n} surface",
                          "before {a} {n} curtain", "surrounded by {n}",
                          "on {a} solid {n} backdrop", "against a smooth {n} setting",
                          "on a field of {n}", "with nothing but {n} behind it")
NAMED_BACKGROUND_HELDOUT = ("set against a flat {n} ground", "over an even {n} wash")
# a landscape part in a named colour ({n}, with its article {a}), an item of the scene
NAMED_LANDSCAPE_TRAIN = {
    "sky": ("{a} {n} sky", "a sky of {n}", "{a} {n} sky above", "{n} skies",
            "a sky painted {n}", "{a} {n} sky overhead"),
    "water": ("{a} {n} lake", "a lake of {n} water", "{n} water", "{a} {n} pond",
              "a lake coloured {n}", "{a} {n} lake below"),
    "ground": ("{n} ground", "{n} fields", "{n} earth", "{n} meadows", "{n} grassland",
               "land coloured {n}"),
}
NAMED_LANDSCAPE_HELDOUT = {
    "sky": ("heavens tinted {n}", "{a} {n} firmament"),
    "water": ("a mere of {n}", "{n} waters"),
    "ground": ("earth tinted {n}", "{n} lowlands"),
}
FLOWER_HELDOUT_NOUNS = ("flower", "wildflower")
FLOWER_HELDOUT_CENTRE_NOUNS = ("heart", "core", "eye")

LANDSCAPE_TRAIN = {
    "time_of_day": {
        "day": ("during the day", "in daylight", "on a bright day", "in the daytime",
                "in broad daylight", "by day", "on a clear day"),
        "sunset": ("at sunset", "at dusk", "in the evening", "at evening time",
                   "under an orange evening sky", "at the end of the day", "as evening falls"),
        "night": ("at night", "at nighttime", "under a night sky", "in the night",
                  "late at night", "under the stars", "on a dark night", "at midnight"),
    },
    "sky_object": {
        "sun": ("the sun", "a bright sun", "the shining sun", "a blazing sun", "a yellow sun"),
        "moon": ("the moon", "a crescent moon", "a pale moon", "a white moon",
                 "a moon in the sky"),
        "none": ("an empty sky", "no sun or moon", "a clear sky", "a cloudless sky",
                 "nothing in the sky"),
    },
    "mountains": {
        "none": ("flat land", "no mountains", "a flat plain", "open flat ground",
                 "no mountains in sight", "flat country"),
        "bare": ("bare mountains", "rocky mountains", "grey mountains", "bare rocky peaks",
                 "brown mountains", "stony mountains", "mountains without snow"),
        "snowy": ("snowy mountains", "snow-capped mountains", "a snowy peak",
                  "white-topped peaks", "mountains topped with snow", "icy peaks"),
    },
    "water": {
        "none": ("no water", "no lake", "dry land", "no lake or river", "a dry valley"),
        "lake": ("a lake", "a calm lake", "a blue lake", "a lake in the foreground",
                 "a small lake", "a shimmering lake", "still water"),
    },
    "trees": {
        "none": ("no trees", "treeless ground", "open fields", "a treeless plain",
                 "no trees at all"),
        "few": ("a few trees", "some trees", "scattered trees", "a couple of trees",
                "two or three trees", "a small group of trees"),
        "forest": ("a forest", "a dense forest", "lots of trees", "a thick forest",
                   "many trees", "a big forest"),
    },
    # season phrases: "adj" before the scene noun, "pp" after it
    "season": {
        "summer": {"adj": ("summer", "summery", "green summer"),
                   "pp": ("in summer", "in summertime", "on a summer day", "in midsummer")},
        "autumn": {"adj": ("autumn", "autumnal", "fall"),
                   "pp": ("in autumn", "in the fall", "in late autumn",
                          "with autumn colours")},
        "winter": {"adj": ("winter", "wintry", "snow-covered"),
                   "pp": ("in winter", "in the snow", "in midwinter", "on a winter day")},
        "spring": {"adj": ("spring", "springtime", "blossoming"),
                   "pp": ("in spring", "in springtime", "in early spring",
                          "on a spring day")},
    },
}
LANDSCAPE_TRAIN_NOUNS = ("landscape", "scene", "view", "countryside")

LANDSCAPE_HELDOUT = {
    "time_of_day": {
        "day": ("at noon", "at midday"),
        "sunset": ("at sundown", "at twilight", "in the golden hour"),
        "night": ("after dark", "in the dead of night"),
    },
    "sky_object": {
        "sun": ("a glowing solar disc", "the radiant sun"),
        "moon": ("a lunar crescent", "a sliver of moon"),
        "none": ("nothing in the heavens", "neither sun nor moon"),
    },
    "mountains": {
        "none": ("level terrain without peaks", "no hills or peaks at all"),
        "bare": ("snowless crags", "naked stony summits"),
        "snowy": ("glacier-crowned summits", "frosted alpine crests"),
    },
    "water": {
        "none": ("not a drop of water", "no pool or pond"),
        "lake": ("a still mere", "a glassy tarn", "a reflecting pool"),
    },
    "trees": {
        "none": ("not a single tree", "ground bare of any tree"),
        "few": ("a handful of lone trees", "several solitary trees"),
        "forest": ("a thick woodland", "dense woods", "a sea of trees"),
    },
    "season": {
        "summer": {"pp": ("in the height of summer", "during the warm months")},
        "autumn": {"pp": ("as the leaves turn orange", "in leaf-fall season")},
        "winter": {"pp": ("in the depths of winter", "under deep snowdrifts")},
        "spring": {"pp": ("in the blossom season", "when everything is budding")},
    },
}
LANDSCAPE_HELDOUT_NOUNS = ("vista", "panorama", "tableau")

# Probability that a training caption leaves an attribute out (0 for the major ones).
TRAIN_OMIT = {
    "flower": {"petal_colour": 0.0, "background": 0.0, "centre_colour": 0.1,
               "petal_count": 0.1, "petal_shape": 0.1, "size": 0.1},
    "landscape": {"time_of_day": 0.0, "season": 0.0, "sky_object": 0.1, "mountains": 0.1,
                  "water": 0.1, "trees": 0.1},
}

# Sentence skeletons. Flower slots: {flower} noun phrase, {details} "with ..." clause,
# {bg} background phrase. Landscape: {scene} noun phrase, {time}, {season}, {items}.
_FLOWER_TRAIN_SKELETONS = (
    "{flower} {details} {bg}",
    "{bg}, {flower} {details}",
    "a photo of {flower} {details} {bg}",
    "{flower} {bg}, {details}",
    "close-up of {flower} {details}, {bg}",
    "an illustration of {flower} {details} {bg}",
    "{flower} {details}, photographed {bg}",
    "a picture of {flower} {bg} {details}",
    "a drawing of {flower} {details} {bg}",
    "this image shows {flower} {bg}, {details}",
    "here is {flower} {details}, {bg}",
    "a render of {flower} {bg}, {details}",
)
_FLOWER_HELDOUT_SKELETONS = (
    "Imagine {flower} bearing {petals} around {centre}, {bg}.",
    "{flower} rests {bg}; it has {petals} and {centre}.",
    "Picture this: {flower} with {petals} framing {centre}, {bg}.",
    "A depiction of {flower} {bg}, showing {petals} beside {centre}.",
)
_LANDSCAPE_TRAIN_SKELETONS = (
    "{scene_adj} {time} with {items}",
    "{time}, {scene_adj} with {items}",
    "{scene_pp} {time} with {items}",
    "{items} {time} {season_pp}",
    "a painting of {scene_pp}, {time}, with {items}",
    "{season_pp} {time}: {items}",
    "a photo of {scene_adj} {time}, {items}",
    "a drawing of {scene_pp} {time}, showing {items}",
    "this image shows {scene_adj} {time} with {items}",
    "here is {scene_pp}, {time}; there are {items}",
)
_LANDSCAPE_HELDOUT_SKELETONS = (
    "Envision a {noun} {time} {season}, featuring {items}.",
    "{time}, {season}, the {noun} reveals {items}.",
    "The {noun} holds {items}; it is {season}, {time}.",
    "A {noun} seen {time} {season}: {items}.",
)


def wording_digest() -> str:
    """A digest of every phrase table and sentence skeleton above: the data cache's key holds
    it, so changed wording renders new captions."""
    tables = {k: v for k, v in globals().items()
              if k.lstrip("_")[:1].isupper() and isinstance(v, (tuple, dict))}
    return hashlib.sha1(repr(sorted(tables.items())).encode()).hexdigest()[:12]


# ---------------------------------------------------------------- composing

def pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _article(word: str) -> str:
    w = word.lower()
    return "an" if (w[:1] in "aeiou" or w.startswith("8")) else "a"


def _join(items: list[str], rng: np.random.Generator | None = None) -> str:
    if len(items) <= 1:
        return "".join(items)
    comma = "," if (rng is not None and len(items) > 2 and rng.random() < 0.3) else ""
    return ", ".join(items[:-1]) + f"{comma} and {items[-1]}"


def _tidy(text: str) -> str:
    text = " ".join(text.split())
    for bad, good in ((" ,", ","), (",,", ","), (" :", ":"), (" .", "."), (" ;", ";")):
        text = text.replace(bad, good)
    return text.strip(" ,")


def _finish(text: str, rng: np.random.Generator) -> str:
    text = _tidy(text)
    if rng.random() < 0.35:
        text = text[0].upper() + text[1:]
    if rng.random() < 0.3:
        text += "."
    return text


def _background_phrase(attrs: dict, rng: np.random.Generator, table: dict, named) -> str:
    """The background phrase: the category's, or a template around a named plain colour."""
    bg = pick(rng, table["background"][attrs["background"]])   # drawn either way: same rng use
    if "background_phrase" in attrs:
        name = attrs["background_phrase"]
        return pick(rng, named).format(a=_article(name), n=name)
    return bg


def _flower_train(attrs: dict, rng: np.random.Generator, mentioned: set) -> str:
    table, omit = FLOWER_TRAIN, TRAIN_OMIT["flower"]
    say = {k: rng.random() >= p for k, p in omit.items()}
    mentioned.update(k for k, v in say.items() if v)
    colour = pick(rng, table["petal_colour"][attrs["petal_colour"]])
    colour = attrs.get("petal_phrase", colour)
    colour_on_flower = rng.random() < 0.5
    count_forms = table["petal_count"][attrs["petal_count"]]
    count_adj = say["petal_count"] and rng.random() < 0.4
    front = []  # words before the flower noun
    if say["size"]:
        front.append(pick(rng, table["size"][attrs["size"]]))
    if colour_on_flower:
        front.append(colour)
    if count_adj:
        front.append(pick(rng, count_forms["adj"]))
    front.append(pick(rng, FLOWER_TRAIN_NOUNS))
    flower = f"{_article(front[0])} {' '.join(front)}"
    petal_words = []
    if say["petal_count"] and not count_adj:
        petal_words.append(pick(rng, count_forms["num"]))
    if say["petal_shape"]:
        petal_words.append(pick(rng, table["petal_shape"][attrs["petal_shape"]]))
    if not colour_on_flower:
        petal_words.append(colour)
    parts = []
    if petal_words:
        parts.append(" ".join(petal_words) + " petals")
    if say["centre_colour"]:
        c = pick(rng, table["centre_colour"][attrs["centre_colour"]])
        c = attrs.get("centre_phrase", c)
        parts.append(f"{_article(c)} {c} {pick(rng, FLOWER_TRAIN_CENTRE_NOUNS)}")
    rng.shuffle(parts)
    details = ("with " + " and ".join(parts)) if parts else ""
    bg = _background_phrase(attrs, rng, table, NAMED_BACKGROUND_TRAIN)
    return pick(rng, _FLOWER_TRAIN_SKELETONS).format(flower=flower, details=details, bg=bg)


def _flower_heldout(attrs: dict, rng: np.random.Generator) -> str:
    table = FLOWER_HELDOUT
    colour = pick(rng, table["petal_colour"][attrs["petal_colour"]])
    colour = attrs.get("petal_phrase", colour)
    size = pick(rng, table["size"][attrs["size"]])
    noun = pick(rng, FLOWER_HELDOUT_NOUNS)
    colour_on_flower = rng.random() < 0.5
    front = [size, colour, noun] if colour_on_flower else [size, noun]
    flower = f"{_article(size)} {' '.join(front)}"
    petal_words = [pick(rng, table["petal_count"][attrs["petal_count"]]["num"]),
                   pick(rng, table["petal_shape"][attrs["petal_shape"]])]
    if not colour_on_flower:
        petal_words.append(colour)
    petals = " ".join(petal_words) + " petals"
    c = pick(rng, table["centre_colour"][attrs["centre_colour"]])
    c = attrs.get("centre_phrase", c)
    centre = f"{_article(c)} {c} {pick(rng, FLOWER_HELDOUT_CENTRE_NOUNS)}"
    bg = _background_phrase(attrs, rng, table, NAMED_BACKGROUND_HELDOUT)
    text = pick(rng, _FLOWER_HELDOUT_SKELETONS).format(
        flower=flower, petals=petals, centre=centre, bg=bg)
    return text[0].upper() + text[1:]


def _named_landscape_items(attrs: dict, rng: np.random.Generator, items: list[str],
                           table: dict) -> list[str]:
    """The scene's items with its named sky, water and ground colours (``{part}_phrase``): the
    water's phrase replaces the lake's, sky and ground are added. No rng draw for a landscape
    without named colours, so its captions stay as they were."""
    water = attrs.get("water_phrase")
    if water is not None:
        lake = table["water"]
        items = [i for i in items if i not in LANDSCAPE_TRAIN["water"]["lake"]
                 and i not in LANDSCAPE_HELDOUT["water"]["lake"]]
        items.append(pick(rng, lake).format(a=_article(water), n=water))
    for part in ("sky", "ground"):
        name = attrs.get(f"{part}_phrase")
        if name is not None:
            items.append(pick(rng, table[part]).format(a=_article(name), n=name))
    return items


def _landscape_train(attrs: dict, rng: np.random.Generator, mentioned: set) -> str:
    table, omit = LANDSCAPE_TRAIN, TRAIN_OMIT["landscape"]
    say = {k: rng.random() >= p for k, p in omit.items()}
    mentioned.update(k for k, v in say.items() if v)
    time = pick(rng, table["time_of_day"][attrs["time_of_day"]])
    season = table["season"][attrs["season"]]
    noun = pick(rng, LANDSCAPE_TRAIN_NOUNS)
    adj = pick(rng, season["adj"])
    scene_adj = f"{_article(adj)} {adj} {noun}"
    season_pp = pick(rng, season["pp"])
    scene_pp = f"{_article(noun)} {noun} {season_pp}"
    say["water"] = say["water"] or "water_phrase" in attrs
    items = [pick(rng, table[k][attrs[k]]) for k in ("sky_object", "mountains", "water", "trees")
             if say[k]]
    items = _named_landscape_items(attrs, rng, items, NAMED_LANDSCAPE_TRAIN)
    rng.shuffle(items)
    skeleton = pick(rng, _LANDSCAPE_TRAIN_SKELETONS)
    if not items:
        skeleton = pick(rng, ("{scene_adj} {time}", "{time}, {scene_pp}"))
    return skeleton.format(scene_adj=scene_adj, scene_pp=scene_pp, season_pp=season_pp,
                           time=time, items=_join(items, rng))


def _landscape_heldout(attrs: dict, rng: np.random.Generator) -> str:
    table = LANDSCAPE_HELDOUT
    time = pick(rng, table["time_of_day"][attrs["time_of_day"]])
    season = pick(rng, table["season"][attrs["season"]]["pp"])
    items = [pick(rng, table[k][attrs[k]]) for k in ("sky_object", "mountains", "water", "trees")]
    items = _named_landscape_items(attrs, rng, items, NAMED_LANDSCAPE_HELDOUT)
    rng.shuffle(items)
    text = pick(rng, _LANDSCAPE_HELDOUT_SKELETONS).format(
        noun=pick(rng, LANDSCAPE_HELDOUT_NOUNS), time=time, season=season, items=_join(items))
    return text[0].upper() + text[1:]


def compose_caption(domain: str, attrs: dict, rng: np.random.Generator, split: str = "train",
                    mentioned: set | None = None) -> str:
    """One caption. split "train" or "heldout"; mentioned (a set) receives the attribute names
    a train caption mentions (held-out captions mention all)."""
    if mentioned is None:
        mentioned = set()
    if split == "heldout":
        mentioned.update(TRAIN_OMIT[domain])
        text = (_flower_heldout if domain == "flower" else _landscape_heldout)(attrs, rng)
        return _tidy(_with_style(text, attrs, rng, split))
    if split not in ("train", "any"):
        raise ValueError(f"unknown caption split {split!r}; expected 'train' or 'heldout'")
    text = (_flower_train if domain == "flower" else _landscape_train)(attrs, rng, mentioned)
    return _finish(_with_style(text, attrs, rng, split), rng)


_STYLE_FORMS = {"train": ("{text}, {style}", "{style}: {text}", "{style} of {text}"),
                "heldout": ("{text}, rendered as {style}", "{style} depicting {text}")}


def _with_style(text: str, attrs: dict, rng: np.random.Generator, split: str) -> str:
    """The caption with its style phrase (none for the plain style: no draw from rng)."""
    style = attrs.get("style", "plain")
    if style == "plain":
        return text
    table = STYLE_HELDOUT if split == "heldout" else STYLE_TRAIN
    forms = _STYLE_FORMS["heldout" if split == "heldout" else "train"]
    phrase = pick(rng, table[style])
    if split == "heldout":
        text = text.rstrip(".")
        text = text[0].lower() + text[1:]
    return pick(rng, forms).format(text=text, style=phrase)


# the fixed prompts of the training grids and the evaluator's sample sheet
SAMPLE_PROMPTS = [
    "a red flower with five round petals on green grass",
    "a blue flower with pointed petals and a yellow centre, black background",
    "a small yellow flower on a cream background",
    "a large purple flower with eight petals, sky blue background",
    "a pink flower with a brown centre on brown soil",
    "a white flower with six pointed petals on a black background",
    "an orange flower with four petals on green grass",
    "a yellow flower with a black centre on cream paper",
    "a mountain landscape at sunset with a lake",
    "snowy mountains at night under the moon",
    "a sunny summer day with a forest and no mountains",
    "an autumn landscape with a few trees and a lake at day",
    "a winter landscape with snowy mountains and the sun",
    "a spring meadow with blossoming trees at sunset",
    "a night sky over a lake, no mountains",
    "bare mountains on a summer day with the sun",
]
