"""The generator's upsampling convolutions against the model as written, interleaved.

    .venv/bin/python tests/tools/upsample_conv_ab.py [--threads 2] [--batch 16] [--rounds 30]

Times the shipped 64 px generator (channels_last, inference mode) with its stride-2 transposed
convolutions and inside ``gan.as_written`` (nearest upsample, then the 3x3 conv), alternating
the two every few calls so that a shared machine's slow spells fall on both; prints the median
milliseconds per batch of each and their ratio, and the largest output difference.
"""
import argparse
import statistics
import sys
import time
from contextlib import nullcontext

import torch
from pack import load_pack  # tests/tools/pack.py


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--calls", type=int, default=3, help="timed calls per variant and round")
    args = p.parse_args(argv)
    load_pack()
    from promptgan.models import gan
    from promptgan.models.checkpoint import WEIGHTS_DIR
    from promptgan.models.eval.benchmark import make_inputs

    torch.set_num_threads(args.threads)
    g = gan.load_gan(WEIGHTS_DIR / "promptgan_default.safetensors", with_discriminator=False)
    g = g.generator.eval().to(memory_format=torch.channels_last)
    z, s, w = make_inputs(g.cfg, args.batch)
    variants = {"transposed conv": nullcontext, "as written": lambda: gan.as_written(g)}
    times: dict[str, list[float]] = {k: [] for k in variants}
    outs = {}
    with torch.inference_mode():
        for _ in range(args.rounds):
            for name, ctx in variants.items():
                with ctx():
                    outs[name] = g(z, s, w)                    # untimed: the layer caches warm
                    for _ in range(args.calls):
                        t0 = time.perf_counter()
                        g(z, s, w)
                        times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    for k, v in med.items():
        print(f"{k}: {v:.2f} ms per batch of {args.batch} ({args.batch / v * 1e3:.0f} img/s)")
    diff = (outs["transposed conv"] - outs["as written"]).abs().max().item()
    print(f"as written / transposed: {med['as written'] / med['transposed conv']:.2f}x; "
          f"largest output difference {diff:.2e} ({args.threads} threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
