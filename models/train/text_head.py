"""Add Refine's prompt -> attribute head to a GAN file: ``python3 . fit-text-head --help``."""
from __future__ import annotations

import argparse

import torch

from ..cli import add_threads_flag, command_line, set_threads
from ..data.text_probe import fit_text_head
from ..gan import load_gan, save_gan
from ..text_head import why_no_text_head


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="fit-text-head",
        description="Fit the prompt -> attribute head Refine uses and write it into a GAN "
                    "checkpoint (the generator and discriminator are copied unchanged).")
    p.add_argument("--model", required=True, help="GAN .safetensors with a discriminator that "
                   "has an auxiliary label head (trained on the procedural data)")
    p.add_argument("--out", default=None, help="where to write; default: replace --model")
    p.add_argument("--captions", type=int, default=4000)
    p.add_argument("--seed", type=int, default=11)
    add_threads_flag(p)
    args = p.parse_args(argv)
    set_threads(args.threads)
    model = load_gan(args.model)
    d = model.discriminator
    reason = why_no_text_head(model)
    if reason is not None:
        raise SystemExit(f"{args.model}: {reason}")
    head = fit_text_head(d.cfg.label_heads, n_captions=args.captions, seed=args.seed)
    provenance = dict(model.provenance)
    provenance["text_head"] = {"command": command_line("fit-text-head", argv),
                               "captions": args.captions, "seed": args.seed}
    out = args.out or args.model
    save_gan(out, model.generator, d, encoder_id=model.encoder_id, provenance=provenance,
             text_head=head, dtype=torch.float16 if model.stored_dtype == torch.float16 else None,
             vocabulary=model.vocabulary)
    print(f"wrote {out}")
    return 0
