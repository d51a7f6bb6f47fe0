"""What a user's calls cost on one and on all intra-op threads, quiet and beside a competing
process this command starts itself (one thread of fp32 matmuls, at normal priority), and what the
thread policy of ``models/threads.py`` (the count it picks in each condition) gives.

    python3 . benchmark-threads [--json OUT]

Prints one row per job (text to a 256 px image at batch 1 as the text_to_image_hd workflow
makes it, one prompt's encoding, 64 px generation at batch 1 and 16, Enhance of a 64 px and a
256 px input): milliseconds per call for each thread count, quiet and busy, the
counts the policy picks quiet and busy, and how much slower a call is when busy than when quiet
under the policy and under the worst fixed count.
Times depend on the machine; the command reports, it never asserts.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from ..checkpoint import WEIGHTS_DIR
from ..enhance.model import load_enhancer
from ..enhance.network import net_flops_per_input_pixel
from ..enhance.tiling import enhance_image
from ..gan import load_gan
from ..generate import generate, make_latent
from ..text_encoder import load_encoder
from ..threads import threads_for_call
from .benchmark import flops_per_image, matmul_rate

WEIGHTS = WEIGHTS_DIR
COMPETITOR = ("import torch\ntorch.set_num_threads(1)\na = torch.randn(1024, 1024)\n"
              "while True:\n    a @ a\n")


def median_ms(fn, min_time: float) -> float:
    fn()                                          # warm-up
    times, end = [], time.perf_counter() + min_time
    while time.perf_counter() < end or len(times) < 5:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def text_flops(encoder, prompt: str) -> float:
    """Multiply-adds x 2 of the encoder's linear layers over the prompt's tokens (attention's
    own products, a few per cent at this length, left out)."""
    tokens = len(encoder.tokenizer(prompt)["input_ids"])
    weights = sum(m.weight.numel() for m in encoder.model.modules() if isinstance(m, torch.nn.Linear))
    return 2.0 * weights * tokens


def jobs() -> list[tuple[str, float, object]]:
    """(name, FLOPs per call, the call)."""
    enc = load_encoder()
    model = load_gan(WEIGHTS / "promptgan_default.safetensors")
    enh = load_enhancer(WEIGHTS / "enhance_x4.safetensors")
    emb = enc.encode(["a red flower with five round petals on green grass"] * 16)
    one, batch = make_latent(model, emb.select([0]), 0, 1), make_latent(model, emb, 0, 1)
    per_image = flops_per_image(model.generator)
    px = net_flops_per_input_pixel(enh.net.cfg)
    small, large = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 256, 256)
    prompt = ["a pink flower with eight pointed petals on black"]

    def text_to_256():           # what the text_to_image_hd workflow does for one image
        image = generate(model, make_latent(model, enc.encode(prompt), 0, 1))
        return enhance_image(enh.net, ((image + 1) / 2).clamp(0, 1), None, tile=256)

    short = ["a blue flower with pointed petals"]
    return [
        ("text -> 256 px, batch 1", text_flops(enc, prompt[0]) + per_image + 64 * 64 * px,
         text_to_256),
        ("encode 1 prompt", text_flops(enc, short[0]), lambda: enc.encode(short)),
        ("generate 64 px, batch 1", per_image, lambda: generate(model, one)),
        ("generate 64 px, batch 16", 16 * per_image, lambda: generate(model, batch)),
        ("enhance 64 -> 256 px", 64 * 64 * px, lambda: enhance_image(enh.net, small, None, tile=256)),
        ("enhance 256 -> 1024 px", 256 * 256 * px, lambda: enhance_image(enh.net, large, None, tile=256)),
    ]


def measure(min_time: float, counts: list[int]) -> list[dict]:
    named = jobs()
    rows = [{"job": name, "gflop": round(flops / 1e9, 2), "ms": {}, "policy": {}}
            for name, flops, _ in named]
    default = torch.get_num_threads()
    matmul = {}
    for condition in ("quiet", "busy"):
        competitor = None
        if condition == "busy":
            competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR])
            time.sleep(1.0)
        try:
            matmul[condition] = round(matmul_rate(torch.float32), 1)   # GFLOP/s, same run
            for row, (_, _, fn) in zip(rows, named):
                for n in counts:
                    torch.set_num_threads(n)
                    row["ms"][f"{condition}_{n}"] = round(median_ms(fn, min_time), 4)
                torch.set_num_threads(default)
                row["policy"][condition] = n = threads_for_call()
                torch.set_num_threads(n)
                row["ms"][f"{condition}_policy"] = round(median_ms(fn, min_time), 4)
        finally:
            torch.set_num_threads(default)
            if competitor is not None:
                competitor.kill()
                competitor.wait()
    for row, (_, flops, _) in zip(rows, named):
        ms = row["ms"]
        for condition in ("quiet", "busy"):    # the call's FLOP rate against the matmul's
            rate = flops / 1e9 / (ms[f"{condition}_policy"] / 1000)
            row[f"{condition}_percent_of_matmul"] = round(100 * rate / matmul[condition], 1)
        row["policy_busy_over_quiet"] = round(ms["busy_policy"] / ms["quiet_policy"], 2)
        row["worst_fixed_busy_over_quiet"] = round(max(ms[f"busy_{n}"] / ms[f"quiet_{n}"]
                                                       for n in counts), 2)
    return rows, matmul


def markdown(rows: list[dict], counts: list[int]) -> str:
    head = " | ".join(f"{c} {n} thr ms" for c in ("quiet", "busy") for n in counts)
    lines = [f"| job | GFLOP | {head} | policy threads quiet / busy | policy ms quiet / busy | "
             "policy busy/quiet | worst fixed count busy/quiet | % of fp32 matmul quiet / busy |",
             "|" + " --- |" * (7 + 2 * len(counts))]
    for r in rows:
        cells = " | ".join(str(r["ms"][f"{c}_{n}"]) for c in ("quiet", "busy") for n in counts)
        lines.append(f"| {r['job']} | {r['gflop']} | {cells} | {r['policy']['quiet']} / "
                     f"{r['policy']['busy']} | {r['ms']['quiet_policy']} / {r['ms']['busy_policy']} | "
                     f"{r['policy_busy_over_quiet']}x | {r['worst_fixed_busy_over_quiet']}x | "
                     f"{r['quiet_percent_of_matmul']} / {r['busy_percent_of_matmul']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="benchmark-threads", description=__doc__.split("\n\n")[0])
    p.add_argument("--min-time", type=float, default=1.5, help="seconds per measurement")
    p.add_argument("--json", default=None)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    counts = sorted({1, torch.get_num_threads()})
    rows, matmul = measure(args.min_time, counts)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads by default; "
          f"fp32 matmul {matmul['quiet']} GFLOP/s quiet, {matmul['busy']} beside the competitor")
    print(markdown(rows, counts))
    if args.json:
        Path(args.json).write_text(json.dumps({"matmul_gflops": matmul, "jobs": rows}, indent=2))
    return 0
