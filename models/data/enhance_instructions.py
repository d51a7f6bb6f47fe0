"""Instruction phrasings for Enhance, and the pool of (text, degradations-to-fix) pairs.

An instruction names the degradations to remove. An empty instruction or a generic one
("restore this photo") means: fix whatever is wrong. "Upscale 4x" alone only super-resolves.
The evaluator uses the HELD_OUT phrasings, which training never sees.
"""
from __future__ import annotations

import itertools

import numpy as np

from .degrade import DEGRADATIONS

# full sentences, one degradation each
SENTENCES = {
    "blur": [
        "sharpen this blurry photo", "sharpen", "sharpen the image", "remove the blur", "deblur",
        "deblur this picture", "make it sharper", "fix the blurriness", "bring it into focus",
        "the photo is out of focus, fix it", "make the details crisp", "remove the softness",
        "this picture is blurry", "unblur this", "increase the sharpness", "fix the focus",
        "make the edges sharp", "restore the fine detail", "it's a bit soft, sharpen it",
        "reduce the blur", "the image looks fuzzy, make it clear", "make this blurry image clear",
    ],
    "noise": [
        "remove the noise", "denoise", "denoise this photo", "get rid of the grain",
        "reduce the noise", "clean up the noise", "remove the film grain", "this image is noisy",
        "remove the speckles", "smooth out the sensor noise", "the picture is grainy, fix it",
        "eliminate the noise", "less noise please", "it was shot at high ISO, remove the noise",
        "take out the grain", "make it less noisy", "remove the noise from this picture",
        "there is too much noise", "clean the grainy texture", "suppress the noise",
    ],
    "jpeg": [
        "remove the jpeg artifacts", "clean up the jpeg artifacts", "fix the compression artifacts",
        "remove the blocking", "get rid of the blocky compression", "undo the jpeg compression",
        "remove the 8x8 blocks", "fix the compression damage", "remove the ringing around edges",
        "deblock", "this was saved at low quality, clean it", "remove the mosquito noise",
        "the jpeg is badly compressed, repair it", "remove compression artifacts",
        "fix the jpeg blockiness", "clean up this over-compressed image", "reduce the jpeg artefacts",
        "remove the artifacts from compression",
    ],
    "lowlight": [
        "brighten this dark picture", "brighten", "brighten the image", "make it brighter",
        "fix the underexposure", "increase the exposure", "this photo is too dark",
        "lighten the image", "correct the low light", "boost the brightness",
        "it's underexposed, fix it", "lift the shadows", "enhance this low-light photo",
        "the picture is too dim", "make the dark photo bright", "raise the exposure",
        "fix this dark night shot", "more light please",
    ],
    "cast": [
        "fix the colour cast", "fix the color cast", "correct the white balance",
        "remove the color tint", "remove the colour tint", "fix the colors",
        "neutralise the colour cast", "the colours are off, correct them", "white balance this photo",
        "fix the color balance", "correct the tint", "remove the colour shift",
        "make the colours natural", "the white balance is wrong", "correct the colors",
    ],
}

# short imperative phrases for composing several degradations
SHORT = {
    "blur": ["sharpen", "deblur", "remove the blur", "fix the focus", "make it sharper",
             "sharpen it", "remove blur"],
    "noise": ["denoise", "remove the noise", "reduce the noise", "remove the grain",
              "clean up the noise", "get rid of the noise"],
    "jpeg": ["remove the jpeg artifacts", "clean up the jpeg artifacts", "fix the compression",
             "remove compression artifacts", "deblock", "fix the jpeg blocks"],
    "lowlight": ["brighten", "brighten it", "fix the exposure", "make it brighter",
                 "lighten it", "fix the underexposure"],
    "cast": ["fix the colour cast", "correct the white balance", "fix the colors",
             "remove the tint", "fix the color balance"],
}

GENERIC = [
    "restore this photo", "enhance", "enhance this image", "fix this image", "make it look better",
    "improve the quality", "clean up this picture", "fix everything", "restore", "repair this photo",
    "improve this picture", "make it high quality", "fix whatever is wrong", "clean it up",
    "upscale and restore", "upscale 4x and fix everything", "make this photo look good",
]

UPSCALE_ONLY = [
    "upscale", "upscale 4x", "enlarge", "increase the resolution", "make it bigger",
    "super-resolve", "upscale this image", "higher resolution please", "upscale 2x",
    "enlarge this picture",
]

UPSCALE_PREFIX = ["upscale 4x and ", "upscale and ", "enlarge and ", "upscale it, ",
                  "increase the resolution and ", "upscale 2x and "]

# phrasings kept out of training, for the evaluator
HELD_OUT = {
    "blur": "this shot is blurred, please make it crisp",
    "noise": "please clean away the noisy grain",
    "jpeg": "repair the heavy jpeg compression",
    "lowlight": "the photo is much too dark, please lighten it",
    "cast": "balance the colours, there is a tint",
    "mixed": "sharpen it, remove the noise and fix the jpeg blocks",
    "clean": "just make this picture four times larger",
}
# the wrong instruction the evaluator gives for each degradation (another type's request)
WRONG_FOR = {"blur": "lowlight", "noise": "lowlight", "jpeg": "lowlight",
             "lowlight": "noise", "mixed": "lowlight", "cast": "noise", "clean": "lowlight"}


def _join(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def build_pool(seed: int = 0, per_single: int = 40,
               per_combo: int = 10) -> list[tuple[str, frozenset | None]]:
    """All training instructions as (text, fix); fix None means 'fix everything present'."""
    rng = np.random.default_rng(seed)
    pool: list[tuple[str, frozenset | None]] = [("", None)] + [(g, None) for g in GENERIC]
    pool += [(u, frozenset()) for u in UPSCALE_ONLY]
    for name in DEGRADATIONS:
        texts = set(SENTENCES[name])
        for _ in range(per_single * 3):
            if len(texts) >= per_single:
                break
            texts.add(rng.choice(UPSCALE_PREFIX) + rng.choice(SENTENCES[name]))
        pool += [(t, frozenset([name])) for t in sorted(texts)]
    for k in range(2, len(DEGRADATIONS) + 1):
        for combo in itertools.combinations(DEGRADATIONS, k):
            texts = set()
            for _ in range(per_combo * 3):
                if len(texts) >= per_combo:
                    break
                order = list(combo)
                rng.shuffle(order)
                t = _join([str(rng.choice(SHORT[n])) for n in order])
                if rng.random() < 0.25:
                    t = rng.choice(UPSCALE_PREFIX) + t
                texts.add(t)
            pool += [(t, frozenset(combo)) for t in sorted(texts)]
    held = set(HELD_OUT.values())
    return [(t, f) for t, f in pool if t not in held]
