"""Train the inversion encoder Refine's edit mode starts from: ``python3 . train-inverter --help``."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..cli import add_threads_flag, command_line, make_progress, parse_with_recipe, set_threads
from ..data import procedural
from ..gan import load_gan
from ..invert import (
    Inverter,
    check_inverter,
    grad_enabled,
    inverter_config_for,
    inverter_path_for,
    load_inverter,
    save_inverter,
    work_copy,
)
from ..text_encoder import DEFAULT_ENCODER_ID, load_encoder
from .utils import GracefulStop


def caption_bank(n: int, seed: int = 0) -> list[str]:
    """``n`` procedural training captions, both domains (what the generator was trained on)."""
    rng = np.random.default_rng([seed, 4242])
    out = []
    for i in range(n):
        domain = procedural.DOMAINS[i % len(procedural.DOMAINS)]
        attrs = procedural.sample_attributes(domain, rng, "train")
        out.append(procedural.make_caption(domain, attrs, rng, "train"))
    return out


@grad_enabled
def train_inverter(model, sentences: torch.Tensor, *, steps: int = 3000, batch: int = 32,
                   lr: float = 1e-3, width: int = 32, recon_weight: float = 1.0,
                   sentence_weight: float = 1.0, truncation_min: float = 0.5, seed: int = 0,
                   net: Inverter | None = None, progress=None, stop=None) -> tuple[Inverter, dict]:
    """Fit an Inverter to (G(z, s) -> z, s) with z ~ N(0, I) scaled by a per-sample truncation in
    [truncation_min, 1] and s drawn from ``sentences`` [N, D]. Loss: MSE on z + sentence cosine
    distance + pixel L1 of the redrawn image. -> (net, last losses)."""
    g = work_copy(model.generator)
    torch.manual_seed(seed)
    net = net or Inverter(inverter_config_for(model, width))
    check_inverter(net, model)
    net.train().requires_grad_(True)
    opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(seed)
    bank = F.normalize(sentences.float(), dim=1)
    stats: dict = {}
    for step in range(int(steps)):
        if stop is not None and stop():
            break
        z = torch.randn(batch, g.cfg.nz, generator=gen)
        z = z * (truncation_min + (1 - truncation_min) * torch.rand(batch, 1, generator=gen))
        s = bank[torch.randint(len(bank), (batch,), generator=gen)]
        with torch.no_grad():
            x = g(z, s)
        z_hat, s_hat = net(x)
        loss_z = F.mse_loss(z_hat, z)
        loss_s = (1 - (s_hat * s).sum(1)).mean()
        loss = loss_z + sentence_weight * loss_s
        loss_x = torch.zeros(())
        if recon_weight > 0:
            loss_x = (g(z_hat, s_hat) - x).abs().mean()
            loss = loss + recon_weight * loss_x
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        stats = {"step": step + 1, "loss": round(loss.item(), 4), "z_mse": round(loss_z.item(), 4),
                 "s_cos": round(loss_s.item(), 4), "pixel_l1": round(loss_x.item(), 4)}
        if progress is not None:
            progress(stats)
    net.eval().requires_grad_(False)
    return net, stats


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="train-inverter",
                                description="Train the inversion encoder (image -> noise, sentence) "
                                            "of a PromptGAN model on the model's own samples.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="GAN .safetensors the inverter is for")
    p.add_argument("--out", default=None, help="default: <model stem>_inverter.safetensors beside it")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--recon-weight", type=float, default=1.0)
    p.add_argument("--n-captions", type=int, default=4000, help="procedural captions to draw from")
    p.add_argument("--encoder-dir", default=None,
                   help="Hugging Face folder of the model's text encoder (default: the bundled one)")
    p.add_argument("--init", default=None, help="continue from this inverter file")
    add_threads_flag(p)
    p.add_argument("--seed", type=int, default=0)
    args = parse_with_recipe(p, argv)
    set_threads(args.threads)
    model = load_gan(args.model, with_discriminator=False)
    out = Path(args.out) if args.out else inverter_path_for(args.model)
    if args.encoder_dir:
        enc = load_encoder(args.encoder_dir, model.encoder_id)
    elif model.encoder_id == DEFAULT_ENCODER_ID:
        enc = load_encoder()
    else:
        raise SystemExit(f"model {args.model} was trained with text encoder '{model.encoder_id}'; "
                         "pass its folder with --encoder-dir")
    captions = caption_bank(args.n_captions, args.seed)
    sentences = torch.cat([enc.encode(captions[i:i + 256]).sentence
                           for i in range(0, len(captions), 256)])
    net = load_inverter(args.init, model) if args.init else None
    bar = make_progress(args.steps, desc="train-inverter")

    def report(stats):
        bar.update(1)
        if stats["step"] % 50 == 0:
            bar.set_postfix(loss=stats["loss"], z=stats["z_mse"], px=stats["pixel_l1"])

    t0 = time.time()
    with GracefulStop() as stopper:
        net, stats = train_inverter(model, sentences, steps=args.steps, batch=args.batch, lr=args.lr,
                                    width=args.width, recon_weight=args.recon_weight, seed=args.seed,
                                    net=net, progress=report, stop=lambda: stopper.requested)
    bar.close()
    save_inverter(out, net, encoder_id=model.encoder_id,
                  provenance={"gan": model.name, "gan_step": model.provenance.get("step"),
                              "command": command_line("train-inverter", argv), "final": stats,
                              "seconds": round(time.time() - t0, 1),
                              "date": time.strftime("%Y-%m-%d")})
    print(f"saved {out} ({stats})")
    return 0


# ---------------------------------------------------------------------------------------------
# measuring inversion on images the pack did not generate
# ---------------------------------------------------------------------------------------------
