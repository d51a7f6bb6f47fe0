"""Is bf16 autocast faster than float32 for a GAN training step on this CPU?

    .venv/bin/python tests/tools/bf16_train_step_ab.py [MODEL] [--threads N]

Forward and backward of G and D (the shapes of one train-gan step at batch 16) in float32 and
under bf16 autocast, interleaved, 8 rounds after a warm-up each; prints the median ms of each.
"""
import argparse
import statistics
import time

import torch
from pack import ROOT, load_pack  # tests/tools/pack.py


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model", nargs="?",
                   default=str(ROOT / "models/recipes/warm_starts"
                               / "palette_centre_styles_step104109.safetensors"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=16)
    args = p.parse_args()
    load_pack()
    from promptgan.models.gan import load_gan

    torch.set_num_threads(args.threads)
    model = load_gan(args.model)
    g, d = model.generator.train().requires_grad_(True), model.discriminator.train().requires_grad_(True)
    b = args.batch
    z, s = torch.randn(b, g.cfg.nz), torch.randn(b, g.cfg.text_dim) * 0.05
    words = torch.zeros(b, 12, g.cfg.text_dim + 4) if g.colour_reader is not None else None

    def step(bf16: bool) -> float:
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = d(g(z, s, words), s, s.roll(1, 0))[0]
        out.float().mean().backward()
        return time.perf_counter() - t

    times = {False: [], True: []}
    for mode in times:
        step(mode)
    for _ in range(8):
        for mode in times:
            times[mode].append(step(mode))
    for mode, ts in times.items():
        print(f"{'bf16' if mode else 'fp32'}: {1e3 * statistics.median(ts):.1f} ms per step "
              f"(batch {b}, {args.threads} thread(s))")


if __name__ == "__main__":
    main()
