"""Does every colour a prompt names reach the picture, on the right part?

    python3 . evaluate-colours --model models/weights/promptgan_default.safetensors

Prompts (deterministic): flowers whose petals, centre and background are named from the held-out
15 % of the colour lexicon (names no training caption uses, ``colour_lexicon.is_heldout_name``)
in the held-out sentence frames; a binding test (two colours swapped between petals and
background); the basic colour words in the same new frames; landscapes whose sky and ground
are named from held-out names; and Refine's text edits to held-out names ("... with <name>
petals" from the same picture with other petals).

The reader (``read_flower_colours``) knows nothing of the generator: the background is the
median of the image's top, left and right borders; the flower is what differs from it (opened
once, which drops the thin stem); the petals are the median of its outer ring and the centre the
median of its middle. Run on real renders of the same prompts it gives the reader's ceiling.
Figures per part: median and 90th-percentile CIEDE2000 between the asked and the read colour,
and basic-colour accuracy (both mapped to the nearest of the 11 basic colour terms).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from .. import colour_lexicon as lex
from .. import refine as R
from ..data import colour_names, procedural
from ..data.colour_names import PARTS
from ..gan import load_gan, pooled_lab
from ..generate import generate
from ..text_encoder import encode_prompts
from . import refine as refine_eval
from .gan import CLASSIFIER_PATH, draw, load_classifier

# the 11 basic colour terms (Berlin and Kay), at their XKCD survey colours
BASIC_TERMS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black",
               "white", "grey")
XKCD_BASIC = {"red": (229, 0, 0), "orange": (249, 115, 6), "yellow": (255, 255, 20),
              "green": (21, 176, 26), "blue": (3, 67, 223), "purple": (126, 30, 156),
              "pink": (255, 129, 192), "brown": (101, 55, 0), "black": (0, 0, 0),
              "white": (255, 255, 255), "grey": (146, 149, 145)}


def basic_term_labs() -> np.ndarray:
    return lex.srgb_to_lab(np.array([XKCD_BASIC[t] for t in BASIC_TERMS], dtype=np.float64))


def ciede2000(lab1, lab2) -> np.ndarray:
    from skimage.color import deltaE_ciede2000
    return deltaE_ciede2000(np.asarray(lab1, np.float64), np.asarray(lab2, np.float64))


def basic_term(rgb) -> np.ndarray:
    """Index into BASIC_TERMS of the nearest basic colour (CIEDE2000) of rgb [..., 3]."""
    return basic_term_of_lab(lex.srgb_to_lab(rgb))


def basic_term_of_lab(lab) -> np.ndarray:
    """The same for CIELAB [..., 3]."""
    lab = np.asarray(lab, np.float64)
    terms = basic_term_labs()
    d = np.stack([ciede2000(lab, np.broadcast_to(t, lab.shape)) for t in terms], axis=-1)
    return d.argmin(-1)


# ---------------------------------------------------------------- the reader

_DISC = np.hypot(*np.mgrid[-2:3, -2:3]) <= 2.0    # 5x5 disc: wider than a 64 px stem


def read_flower_colours(image: np.ndarray) -> dict[str, np.ndarray]:
    """uint8 [H, W, 3] flower picture -> {"petal", "centre", "background"}: float RGB [3]."""
    from scipy import ndimage

    img = image.astype(np.float64)
    h, w, _ = img.shape
    b = max(1, h // 32)
    border = np.concatenate([img[:b].reshape(-1, 3), img[:, :b].reshape(-1, 3),
                             img[:, -b:].reshape(-1, 3)])
    bg = np.median(border, axis=0)
    lab = lex.srgb_to_lab(img)
    diff = np.linalg.norm(lab - lex.srgb_to_lab(bg), axis=-1)
    mask = ndimage.binary_opening(diff > 12.0, structure=_DISC)
    labels, n = ndimage.label(mask)
    if n:
        sizes = ndimage.sum(mask, labels, range(1, n + 1))
        mask = labels == 1 + int(np.argmax(sizes))       # the flower, not stray specks
    yy, xx = np.mgrid[0:h, 0:w]
    if mask.sum() < 0.01 * h * w:        # the flower is the background's colour: assume the middle
        cy, cx, radius = h * 0.5, w * 0.5, 0.3 * h
    else:
        filled = ndimage.binary_fill_holes(mask)   # a centre of the background's colour counts
        cy, cx = yy[filled].mean(), xx[filled].mean()
        radius = np.percentile(np.hypot(yy[filled] - cy, xx[filled] - cx), 95)
    r = np.hypot(yy - cy, xx - cx)
    ring = (r > 0.35 * radius) & (r < 0.95 * radius)
    petals = ring & mask if (ring & mask).sum() >= 4 else ring
    # petals are shaded from 0.74 at the base to 1.08 at the tip: the 65-85th percentile of
    # lightness is where the shade is about 1
    light = lab[..., 0][petals]
    lo, hi = np.percentile(light, [65, 85])
    band = (light >= lo) & (light <= hi)
    petal = np.median(img[petals][band] if band.any() else img[petals], axis=0)
    middle = r < max(1.0, 0.1 * radius)
    return {"petal": petal, "centre": np.median(img[middle], axis=0), "background": bg}


# ---------------------------------------------------------------- prompts

def read_landscape_colours(image: np.ndarray) -> dict[str, np.ndarray]:
    """uint8 [H, W, 3] landscape -> {"sky", "ground"}: float RGB [3], the medians of the top
    fifth (above every peak) and of the bottom tenth (below the lake)."""
    img = image.astype(np.float64)
    h = img.shape[0]
    return {"sky": np.median(img[: max(1, h // 5)].reshape(-1, 3), axis=0),
            "ground": np.median(img[h - max(1, h // 10):].reshape(-1, 3), axis=0)}


def landscape_prompts(n: int, seed: int = 4325) -> list[dict]:
    """n landscape prompts whose sky and ground are named from held-out lexicon names, in the
    held-out frames."""
    rng = np.random.default_rng([seed, 20])
    out = []
    for _ in range(n):
        attrs = procedural.sample_attributes("landscape", rng, "any")
        for part in ("sky", "ground"):
            name, rgb = colour_names.lexicon_name(rng, "heldout")
            attrs[f"{part}_rgb"], attrs[f"{part}_phrase"] = tuple(rgb), name
        out.append({"attrs": attrs, "prompt": procedural.make_caption("landscape", attrs, rng,
                                                                      "heldout")})
    return out


def named_prompts(n: int, seed: int = 4321, split: str = "heldout") -> list[dict]:
    """n flower prompts whose three parts are named from the split's lexicon names, in the
    split's wording (held-out sentence frames, or training captions' for "train")."""
    rng = np.random.default_rng([seed, 16])
    out = []
    for _ in range(n):
        attrs = procedural.sample_attributes("flower", rng, "any")
        for part in PARTS:
            name, rgb = colour_names.lexicon_name(rng, split)
            attrs[colour_names.CATEGORY[part]] = colour_names.nearest_category(part, rgb)
            attrs[f"{part}_rgb"], attrs[f"{part}_phrase"] = tuple(rgb), name
        wording = "heldout" if split == "heldout" else "any"
        out.append({"attrs": attrs, "prompt": procedural.make_caption("flower", attrs, rng,
                                                                      wording)})
    return out


def binding_prompts(n: int, seed: int = 4322) -> list[tuple[dict, dict]]:
    """Pairs of prompts with two held-out colours of different basic terms, swapped between the
    petals and the background (the centre named too, the same in both)."""
    rng = np.random.default_rng([seed, 17])
    pairs = []
    while len(pairs) < n:
        (a, rgb_a), (b, rgb_b) = (colour_names.lexicon_name(rng, "heldout") for _ in range(2))
        if basic_term(np.array(rgb_a)) == basic_term(np.array(rgb_b)):
            continue
        base = procedural.sample_attributes("flower", rng, "any")
        centre, rgb_c = colour_names.lexicon_name(rng, "heldout")
        pair = []
        for (p, rp), (g, rg) in (((a, rgb_a), (b, rgb_b)), ((b, rgb_b), (a, rgb_a))):
            attrs = dict(base, petal_rgb=tuple(rp), petal_phrase=p, background_rgb=tuple(rg),
                         background_phrase=g, centre_rgb=tuple(rgb_c), centre_phrase=centre)
            pair.append({"attrs": attrs, "prompt": procedural.make_caption(
                "flower", attrs, np.random.default_rng([seed, len(pairs)]), "heldout")})
        pairs.append(tuple(pair))
    return pairs


def basic_word_prompts(seed: int = 4323, per_pair: int = 2) -> list[dict]:
    """Basic colour words for petals and background (every ordered pair of different terms that
    are not the same basic colour) in the held-out frames."""
    rng = np.random.default_rng([seed, 18])
    table = lex.lexicon()
    out = []
    words = [t for t in BASIC_TERMS if table.get(t, (None, ""))[1] == "basic"]
    for petal in words:
        for bg in words:
            if petal == bg:
                continue
            for _ in range(per_pair):
                attrs = procedural.sample_attributes("flower", rng, "any")
                attrs.update(petal_rgb=table[petal][0], petal_phrase=petal,
                             background_rgb=table[bg][0], background_phrase=bg)
                out.append({"attrs": attrs, "prompt": procedural.make_caption(
                    "flower", attrs, rng, "heldout"), "parts": ("petal", "background")})
    return out


def named_edit_pairs(n: int, seed: int = 4324) -> list[dict]:
    """n (source, target) prompts in the same held-out frame: the target names the petals with a
    held-out lexicon name, the source with a category synonym of another basic colour."""
    rng = np.random.default_rng([seed, 19])
    pairs = []
    while len(pairs) < n:
        attrs = procedural.sample_attributes("flower", rng, "any")
        name, rgb = colour_names.lexicon_name(rng, "heldout")
        category = colour_names.nearest_category("petal", rgb)
        if category == attrs["petal_colour"]:
            continue
        new = dict(attrs, petal_colour=category, petal_rgb=tuple(rgb), petal_phrase=name)
        k = int(rng.integers(2 ** 31))
        pairs.append({"attrs": attrs, "new_attrs": new,
                      "labels": procedural.labels_vector("flower", attrs),
                      "new_labels": procedural.labels_vector("flower", new),
                      "prompt": procedural.make_caption("flower", attrs, np.random.default_rng(k),
                                                        "heldout"),
                      "new_prompt": procedural.make_caption("flower", new,
                                                            np.random.default_rng(k), "heldout")})
    return pairs


# ---------------------------------------------------------------- scoring

def render_real(prompts: list[dict], seed: int, domain: str = "flower") -> np.ndarray:
    return np.stack([procedural.render(domain, p["attrs"], 64, np.random.default_rng([seed, i]))
                     for i, p in enumerate(prompts)])


def generate_images(model, prompts: list[dict], seeds_per_prompt: int, seed: int) -> np.ndarray:
    e = encode_prompts([p["prompt"] for p in prompts])
    rows = [i for i in range(len(prompts)) for _ in range(seeds_per_prompt)]
    images = draw(model, e.sentence[rows], [seed + k for k in range(len(rows))],
                  words=e.colour_words()[rows])
    return to_uint8(images)


def part_errors(images: np.ndarray, prompts: list[dict], per_prompt: int, parts=PARTS,
                reader=read_flower_colours) -> dict:
    """{part: (CIEDE2000 [N], basic right [N])} over every image of the prompts."""
    read = [reader(im) for im in images]
    out = {}
    for part in parts:
        asked = np.array([prompts[i // per_prompt]["attrs"][f"{part}_rgb"]
                          for i in range(len(images))], dtype=np.float64)
        drawn = np.array([r[part] for r in read])
        de = ciede2000(lex.srgb_to_lab(asked), lex.srgb_to_lab(drawn))
        out[part] = (de, basic_term(asked) == basic_term(drawn))
    return out


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def named_edits(model, n: int, seed: int, classifier=CLASSIFIER_PATH) -> dict:
    """Refine's text edit (the node's defaults) from a generated picture to held-out petal names:
    how close the petals come (CIEDE2000, read as above) and, by today's attribute classifier,
    the share of the flower's other attributes that read the same before and after."""
    pairs = named_edit_pairs(n)
    (s_old, w_old), (s_new, w_new) = (refine_eval._encode([p[k] for p in pairs])
                                      for k in ("prompt", "new_prompt"))
    lat = refine_eval._latent(model, s_old, w_old, [p["prompt"] for p in pairs],
                              [seed + 700 + i for i in range(n)])
    original = generate(model, lat)
    edited, _ = R.edit(model, lat, s_new, 1.0, new_words=w_new)
    targets = [{"attrs": p["new_attrs"]} for p in pairs]
    out = summarise(part_errors(to_uint8(edited), targets, 1, ("petal",)))["petal"]
    scores = refine_eval._edit_scores(load_classifier(classifier), "flower", "petal_colour",
                                      pairs, original, edited)
    return dict(out, n=n, preserved=scores["preservation"],
                examples=[[p["prompt"], p["new_prompt"]] for p in pairs[:3]])


def reader_errors(model, prompts: list[dict], parts=PARTS) -> dict:
    """{part: (CIEDE2000 [N], basic right [N])} between each prompt's asked colours and the
    colours the model's colour reader finds in its words (its first three queries), before any
    drawing: the share of the drawn error that is the reading's. {} for a model without one."""
    reader = model.generator.colour_reader
    if reader is None:
        return {}
    words = encode_prompts([p["prompt"] for p in prompts]).colour_words()
    return reading_errors(reader, words.to(next(reader.parameters())), prompts, parts)


def reading_errors(reader, words: torch.Tensor, prompts: list[dict], parts=PARTS) -> dict:
    """reader_errors for a ColourReader and the colour words [N, M, D + 4] it reads."""
    with torch.no_grad():
        lab = pooled_lab(reader.pooled(words).float()[:, :3]).cpu().numpy()   # [N, 3, 3]
    out = {}
    for k, part in enumerate(parts):
        asked = lex.srgb_to_lab(np.array([p["attrs"][f"{part}_rgb"] for p in prompts], float))
        out[part] = (ciede2000(asked, lab[:, k]),
                     basic_term_of_lab(asked) == basic_term_of_lab(lab[:, k]))
    return out


def summarise(errors: dict) -> dict:
    return {part: {"median_de2000": round(float(np.median(de)), 2),
                   "p90_de2000": round(float(np.percentile(de, 90)), 2),
                   "basic_accuracy": round(float(np.mean(ok)), 4)}
            for part, (de, ok) in errors.items()}


def evaluate(model, n: int = 100, seeds: int = 4, seed: int = 0) -> dict:
    named = named_prompts(n)
    out = {"n_prompts": n, "seeds": seeds,
           "reader_ceiling": summarise(part_errors(render_real(named, seed), named, 1)),
           "heldout_names": summarise(part_errors(generate_images(model, named, seeds, seed),
                                                  named, seeds))}
    if model.generator.colour_reader is not None:
        out["heldout_names_read"] = summarise(reader_errors(model, named))
    taught = named_prompts(n, seed + 1, split="train")
    out["training_names"] = summarise(part_errors(generate_images(model, taught, seeds, seed),
                                                  taught, seeds))
    pairs = binding_prompts(n // 2)
    flat = [p for pair in pairs for p in pair]
    err = part_errors(generate_images(model, flat, seeds, seed), flat, seeds,
                      ("petal", "background"))
    both = (err["petal"][1] & err["background"][1]).reshape(len(pairs), 2, seeds)
    out["binding"] = {"n_pairs": len(pairs), "both_right": round(float(both.all(1).mean()), 4),
                      "per_prompt_both_right": round(float(both.mean()), 4)}
    basic = basic_word_prompts()
    err = part_errors(generate_images(model, basic, seeds, seed), basic, seeds,
                      ("petal", "background"))
    out["basic_words"] = dict(summarise(err), n_prompts=len(basic))
    land = landscape_prompts(n // 2)
    parts = dict(parts=("sky", "ground"), reader=read_landscape_colours)
    out["landscape_ceiling"] = summarise(part_errors(render_real(land, seed, "landscape"), land,
                                                     1, **parts))
    out["landscape_heldout_names"] = summarise(part_errors(
        generate_images(model, land, seeds, seed), land, seeds, **parts))
    if model.discriminator is not None:
        out["edits_to_heldout_names"] = named_edits(model, n, seed)
    return out


def format_report(r: dict) -> str:
    lines = ["| prompts | part | median CIEDE2000 | 90th pct | basic colour right |",
             "| --- | --- | --- | --- | --- |"]
    for key, label in (("reader_ceiling", "real renders (reader's ceiling)"),
                       ("heldout_names", "held-out lexicon names"),
                       ("heldout_names_read", "held-out lexicon names, the colour reader's "
                                              "own reading (nothing drawn)"),
                       ("training_names", "training names, training wording"),
                       ("basic_words", "basic colour words, new frames"),
                       ("landscape_ceiling", "landscapes, real renders (reader's ceiling)"),
                       ("landscape_heldout_names", "landscapes, held-out lexicon names")):
        for part, v in r.get(key, {}).items():
            if isinstance(v, dict):
                lines.append(f"| {label} | {part} | {v['median_de2000']} | {v['p90_de2000']} | "
                             f"{v['basic_accuracy']} |")
    b = r["binding"]
    lines.append(f"\nbinding ({b['n_pairs']} swapped pairs x {r['seeds']} seeds): both prompts "
                 f"right {b['both_right']}, each prompt {b['per_prompt_both_right']}")
    e = r.get("edits_to_heldout_names")
    if e:
        lines.append(f"Refine edits to held-out petal names ({e['n']}): median CIEDE2000 "
                     f"{e['median_de2000']}, 90th pct {e['p90_de2000']}, basic colour right "
                     f"{e['basic_accuracy']}; other flower attributes kept {e['preserved']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="evaluate-colours", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(Path(__file__).resolve().parents[1] / "weights"
                                          / "promptgan_default.safetensors"))
    p.add_argument("--n", type=int, default=100, help="held-out named prompts")
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    result = evaluate(load_gan(args.model), args.n, args.seeds)
    result["model"] = args.model
    print(format_report(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0
