"""Measure inversion of procedural renders, with and without the inversion encoder:
``python3 . invert-eval --help``."""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ..checkpoint import WEIGHTS_DIR
from ..cli import add_threads_flag, set_threads
from ..data import procedural
from ..gan import load_gan
from ..generate import generate
from ..invert import find_inverter, invert, load_inverter
from ..text_encoder import encode_prompts
from .metrics import mean_psnr


def render_batch(n: int, resolution: int, seed: int = 2026, split: str = "heldout"):
    """``n`` procedural renders (alternating domains; attribute combinations of ``split``) as
    [n,3,R,R] in [-1,1], and their captions in training wording."""
    rng = np.random.default_rng(seed)
    images, captions = [], []
    for i in range(n):
        domain = procedural.DOMAINS[i % len(procedural.DOMAINS)]
        attrs = procedural.sample_attributes(domain, rng, split)
        images.append(procedural.render(domain, attrs, resolution, np.random.default_rng(seed + 1000 + i)))
        captions.append(procedural.make_caption(domain, attrs, rng, "train"))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return x, captions


def reconstruction_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean per-image PSNR (dB) of images in [-1,1]."""
    return mean_psnr(a, b, -1.0, 1.0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="invert-eval",
        description="Invert procedural renders (held-out combinations: images the pack did not "
                    "generate) and report the PSNR of their redraws: from the captions, from the "
                    "inversion encoder and captions, and from the inversion encoder alone.")
    p.add_argument("--model", default=str(WEIGHTS_DIR
                                          / "promptgan_default.safetensors"))
    p.add_argument("--inverter", default=None, help="default: the one beside --model")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--steps", type=int, nargs="+", default=[0, 50])
    add_threads_flag(p)
    args = p.parse_args(argv)
    set_threads(args.threads)
    model = load_gan(args.model)
    path = args.inverter or find_inverter(model)
    if path is None:
        raise SystemExit(f"no inverter beside {args.model}; pass --inverter or run train-inverter")
    encoder = load_inverter(path, model)
    x, captions = render_batch(args.n, model.resolution)
    s = encode_prompts(captions).sentence
    for name, enc, start in (("captions", None, s), ("inverter + captions", encoder, s),
                             ("inverter alone", encoder, None)):
        for steps in args.steps:
            t0 = time.time()
            y = generate(model, invert(model, x, start, steps, enc, seed=0))
            print(f"{name:20s} {steps:4d} steps: {reconstruction_psnr(y, x):.2f} dB "
                  f"({(time.time() - t0) / len(x):.3f} s/img)", flush=True)
    return 0
