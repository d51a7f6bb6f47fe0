"""Enhance speed and memory on this machine.

    python3 <pack> benchmark-enhance [--threads N] [--weights FILE] [--json OUT]

Prints, at x4:
- the measured fp32 (and bf16) rate of a 2048x2048 matmul, GFLOP/s;
- output megapixels per second of the network, fp32 and bf16 autocast, and the network's
  achieved GFLOP/s as a fraction of the fp32 matmul rate;
- for a network with the non-local-means stage, that stage's own time on the same input (the
  random test image reads as very noisy, so the stage runs: the worst case);
- Real-ESRGAN's SRVGGNetCompact (built by spandrel, random weights) timed beside the network,
  interleaved, fp32, when spandrel is installed (ComfyUI's own venv has it);
- peak resident memory (VmHWM in a fresh subprocess, reset after loading) of enhancing each
  ``--memory-inputs`` size, whole image at once against tiled, as the node runs it (the output
  assembled inside the IMAGE tensor): the figure beside the output tensor's own size.
Times depend on what else runs on the machine; the script reports, it never asserts.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from ..checkpoint import WEIGHTS_DIR
from ..cli import add_threads_flag, set_threads
from ..enhance.model import load_enhancer
from ..enhance.network import NLM_H, Enhancer, EnhancerConfig, net_flops_per_input_pixel, noise_level
from ..enhance.nonlocal_means import nl_means
from ..enhance.tiling import enhance_image
from ..fast_paths import best_seconds
from .benchmark import matmul_rate

PACK_ROOT = WEIGHTS_DIR.parents[1]
DEFAULT_WEIGHTS = WEIGHTS_DIR / "enhance_x4.safetensors"


def benchmarked_net(weights: str | None) -> tuple[Enhancer, str]:
    """(the network, where it came from): ``weights`` when that file exists, else a network of
    the default config with random weights (the speed is the same)."""
    if weights and Path(weights).is_file():
        return load_enhancer(weights).net, str(weights)
    return Enhancer(EnhancerConfig()).eval().to(memory_format=torch.channels_last), "random weights"


def speed(net, size: int, dtype, reps: int = 3) -> float:
    """Seconds per image for a size x size input (one pass, no tiling)."""
    x = torch.rand(1, 3, size, size)
    return best_seconds(lambda: enhance_image(net, x, None, tile=0, autocast_dtype=dtype), reps)


def compact_peer():
    """Real-ESRGAN's SRVGGNetCompact x4 (64 features, 32 convolutions, PReLU: the layout of
    realesr-general-x4v3) with random weights, built by spandrel as ComfyUI's Load Upscale Model
    builds it; None where spandrel is not installed (it needs torchvision)."""
    try:  # lazy: spandrel is optional (ComfyUI's venv has it), imported only here
        import spandrel
        from spandrel.architectures.Compact import Compact as SRVGGNetCompact
    except ImportError:
        return None
    torch.manual_seed(0)
    arch = SRVGGNetCompact(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=32, upscale=4,
                           act_type="prelu")
    return spandrel.ModelLoader().load_from_state_dict(arch.state_dict()).eval()


def side_by_side(net, peer, size: int, rounds: int = 5) -> dict:
    """Seconds per size x size -> 4x image of the network (as Enhance runs it, whole image) and
    of ``peer``, interleaved round by round so both see the same machine; best of ``rounds``."""
    x = torch.rand(1, 3, size, size)
    ours = lambda: enhance_image(net, x, None, tile=0)  # noqa: E731
    with torch.no_grad():
        theirs = lambda: peer(x)  # noqa: E731
        ours(), theirs()
        best = {"enhance": float("inf"), "compact": float("inf")}
        for _ in range(rounds):
            for name, fn in (("enhance", ours), ("compact", theirs)):
                t = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t)
    return {k: round(v, 3) for k, v in best.items()} | {
        "compact_over_enhance": round(best["compact"] / best["enhance"], 2)}


def nlm_seconds(size: int, reps: int = 3) -> float:
    """Seconds of the non-local-means stage alone on the speed test's input (fp32)."""
    x = torch.rand(1, 3, size, size)
    sigma = noise_level(x)
    return best_seconds(lambda: nl_means(x, sigma, NLM_H), reps)


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def memory_child(size: int, tile: int, weights: str, threads: int) -> dict:
    """Runs in a fresh process: peak RSS growth while enhancing one size x size input.

    On Linux the peak (VmHWM) is reset to the current RSS just before the run (clear_refs 5), so
    the figure is what the run itself added; elsewhere ru_maxrss is the fallback.
    """
    set_threads(threads)
    net, _ = benchmarked_net(weights)
    x = torch.rand(1, 3, size, size)
    s = net.scale
    try:
        Path("/proc/self/clear_refs").write_text("5")
        base, peak_of = _status_kb("VmRSS"), lambda: _status_kb("VmHWM")
    except OSError:
        base, peak_of = None, None
    if base is None or peak_of is None:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak_of = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # noqa: E731
    t = time.perf_counter()
    image = torch.zeros(1, size * s, size * s, 3)           # the IMAGE tensor the node returns
    enhance_image(net, x, None, tile=tile, out=image.movedim(-1, 1))
    sec = time.perf_counter() - t
    peak = peak_of()
    output_mb = image.numel() * 4 / 2**20
    return {"input": size, "tile": tile, "output_mb": round(output_mb, 1),
            "peak_rss_mb": round(peak / 1024, 1), "base_rss_mb": round(base / 1024, 1),
            "extra_mb": round((peak - base) / 1024, 1),
            "beyond_output_mb": round((peak - base) / 1024 - output_mb, 1),
            "seconds": round(sec, 2)}


def measure_memory(size: int, tile: int, weights: str, threads: int) -> dict:
    """memory_child in a fresh interpreter (through the pack's own command line)."""
    job = json.dumps({"size": size, "tile": tile, "weights": weights, "threads": threads})
    res = subprocess.run([sys.executable, str(PACK_ROOT), "benchmark-enhance", "--memory-child", job],
                         capture_output=True, text=True, timeout=3600)
    for line in res.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"memory probe ({size} px, tile {tile}) failed: {res.stderr[-2000:]}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="enhance-benchmark", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    add_threads_flag(p)
    p.add_argument("--size", type=int, default=256, help="input size for the speed test (x4 output)")
    p.add_argument("--tiles", default="0,256,128", help="tile sizes for the memory test (0 = none)")
    p.add_argument("--memory-inputs", default="512",
                   help="input sizes of the memory test, comma-separated (x4: 512 -> 2048 px)")
    p.add_argument("--json", default="")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.memory_child:
        print("RESULT", json.dumps(memory_child(**json.loads(args.memory_child))))
        return 0
    set_threads(args.threads)
    net, source = benchmarked_net(args.weights)
    report = {"threads": torch.get_num_threads(), "weights": source, "input": args.size,
              "output": args.size * net.scale}
    report["matmul_fp32_gflops"] = round(matmul_rate(torch.float32), 1)
    report["matmul_bf16_gflops"] = round(matmul_rate(torch.bfloat16), 1)
    flops = net_flops_per_input_pixel(net.cfg) * args.size ** 2
    out_mp = (args.size * net.scale) ** 2 / 1e6
    for name, dt in (("fp32", None), ("bf16", torch.bfloat16)):
        sec = speed(net, args.size, dt)
        report[name] = {"seconds": round(sec, 3), "output_mp_per_s": round(out_mp / sec, 3),
                        "gflops": round(flops / sec / 1e9, 1),
                        "fraction_of_fp32_matmul": round(flops / sec / 1e9 / report["matmul_fp32_gflops"], 3)}
    if net.cfg.denoise == "nlm":
        report["nlm_seconds"] = round(nlm_seconds(args.size), 3)
    peer = compact_peer()
    report["compact_peer"] = (side_by_side(net, peer, args.size) if peer is not None
                              else "spandrel not installed: run this where ComfyUI's venv is")
    report["memory"] = [measure_memory(int(n), int(t), args.weights, args.threads)
                        for n in args.memory_inputs.split(",") if n.strip()
                        for t in args.tiles.split(",") if t.strip()]
    print(f"Enhance x{net.scale} ({source}), {torch.get_num_threads()} thread(s)")
    print(f"matmul (up to 2048^2): fp32 {report['matmul_fp32_gflops']} GFLOP/s, "
          f"bf16 {report['matmul_bf16_gflops']} GFLOP/s")
    for name in ("fp32", "bf16"):
        r = report[name]
        print(f"{name}: {args.size}->{args.size * net.scale} in {r['seconds']} s = {r['output_mp_per_s']} "
              f"output MP/s, {r['gflops']} GFLOP/s = {r['fraction_of_fp32_matmul']:.0%} of fp32 matmul")
    if "nlm_seconds" in report:
        print(f"of which non-local means (fp32): {report['nlm_seconds']} s")
    c = report["compact_peer"]
    if isinstance(c, dict):
        print(f"side by side, fp32, {args.size}->{args.size * 4}: Enhance {c['enhance']} s, "
              f"Real-ESRGAN SRVGGNetCompact (spandrel, random weights) {c['compact']} s: "
              f"Compact takes {c['compact_over_enhance']}x Enhance's time")
    else:
        print(f"SRVGGNetCompact peer: {c}")
    for m in report["memory"]:
        label = "whole image" if m["tile"] == 0 else f"tile {m['tile']}"
        out_px = m["input"] * net.scale
        print(f"{m['input']}^2 -> {out_px}^2, {label}: +{m['extra_mb']} MB over "
              f"{m['base_rss_mb']} MB after load = output tensor {m['output_mb']} MB + "
              f"{m['beyond_output_mb']} MB of work, {m['seconds']} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
