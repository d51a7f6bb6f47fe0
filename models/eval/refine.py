"""Measure Refine: refinement before/after on held-out prompts, and text edits on generated images.

    python <pack> refine-eval --model models/weights/promptgan_default.safetensors --json r.json

Refinement (default settings of models/refine.py), on the evaluator's held-out prompts: attribute
accuracy, Frechet distance and KID in the attribute classifier's feature space (models/evaluate.py
definitions), the discriminator's mean score, and seconds per image (batch 1 and batched).

Edits, on images generated from held-out-phrased prompts whose attributes are known; the new
prompt is the same caption (same phrasing) with one attribute changed; at ``--preserve`` (the
edge-keeping guided edit, refine.py) and, beside it, the one-pass swap (``swap_strength_1``):
- flower petal colour (with and without a mask over the flower), flower petal count,
  landscape time of day;
- success: the classifier reads the new value on the edited image (also given among the sources
  whose original already read as asked);
- preservation: the other attributes of that domain read the same on the edited image as on the
  original (mean over attributes, and the share of edits that keep all of them);
- SSIM between original and edited: whole image, outside the flower region (a centred disc of
  radius 0.42 R) for flowers, and outside the mask for masked edits;
- optionally (--invert-n) the same colour edit through inversion (the image given without its
  latent): reconstruction PSNR/SSIM and edit success.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from .. import refine as R
from ..checkpoint import WEIGHTS_DIR
from ..cli import add_threads_flag, dump_json, set_threads
from ..data import procedural
from ..gan import load_gan
from ..generate import GANLatent, generate, latent_for_sentences
from ..invert import find_inverter, invert, load_inverter
from ..text_encoder import encode_prompts
from .gan import CLASSIFIER_PATH, evaluate_images, features_of, load_classifier, real_renders
from .invert import reconstruction_psnr

DEFAULT_MODEL = WEIGHTS_DIR / "promptgan_default.safetensors"
EDITS = (("flower", "petal_colour"), ("flower", "petal_count"), ("landscape", "time_of_day"))
FLOWER_RADIUS = 0.42


def _heads(net) -> list[str]:
    return [h for h, _ in net.cfg.label_heads]


def _disc(resolution: int, radius: float) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(resolution), torch.arange(resolution), indexing="ij")
    c = (resolution - 1) / 2
    return (((yy - c) ** 2 + (xx - c) ** 2).float().sqrt() <= radius * resolution).float()


def _encode(prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (sentence embeddings [N,D], colour words [N,M,D+4]) of the prompts."""
    e = encode_prompts(prompts)
    return e.sentence, e.colour_words()


def _latent(model, s: torch.Tensor, words: torch.Tensor, prompts: list[str],
            seeds: list[int]) -> GANLatent:
    """The latent GANGenerate makes: a model with a colour reader draws with the words."""
    return latent_for_sentences(model, s, seeds, words=words, prompts=prompts)


def _timed(fn, *args, **kw):
    """(fn(*args, **kw), seconds it took)."""
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


# ---------------------------------------------------------------------------------------------
# refinement
# ---------------------------------------------------------------------------------------------

def eval_refinement(model, net, n_per_domain: int, seed: int, steps: int, step_size: float,
                    noise: float, attribute_weight: float = R.DEFAULT_ATTRIBUTE_WEIGHT) -> dict:
    prompts = procedural.heldout_prompts(n_per_domain)
    s, w = _encode([p["prompt"] for p in prompts])
    lat = _latent(model, s, w, [p["prompt"] for p in prompts],
                  [seed + i for i in range(len(prompts))])
    before = generate(model, lat)
    kw = dict(steps=steps, step_size=step_size, noise=noise, attribute_weight=attribute_weight,
              seed=seed)
    refined, seconds = _timed(R.refine_latent, model, lat, **kw)
    after = generate(model, refined)
    # batch-1 timing on a few images (the first call warms up)
    R.refine_latent(model, _sub(lat, [0]), steps=1)
    one = [_timed(R.refine_latent, model, _sub(lat, [i]), **kw)[1] for i in range(3)]
    out = {"n_prompts": len(prompts), "steps": steps, "step_size": step_size, "noise": noise,
           "attribute_weight": attribute_weight if model.text_head is not None else None,
           "seconds_per_image_batched": round(seconds / len(prompts), 4),
           "seconds_per_image_batch1": round(float(np.median(one)), 4),
           "resolution": model.resolution,
           "d_score_before": round(R.discriminator_scores(model, before, s).mean().item(), 4),
           "d_score_after": round(R.discriminator_scores(model, after, s).mean().item(), 4),
           "mean_abs_pixel_change": round((after - before).abs().mean().item(), 4),
           "ssim_before_after": round(R.masked_ssim(before, after).mean().item(), 4)}
    if net is not None:
        real = real_renders(prompts, model.resolution, seed + 10_000)
        real_feats = features_of(net, real)
        out["before"] = evaluate_images(before, prompts, net, real_feats)
        out["after"] = evaluate_images(after, prompts, net, real_feats)
        out["classifier_on_real"] = evaluate_images(real, prompts, net)["accuracy"]
    return out


def _sub(lat: GANLatent, idx: list[int]) -> GANLatent:
    return GANLatent(lat.z[idx], lat.sentence[idx], [lat.prompts[i] for i in idx],
                     [lat.seeds[i] for i in idx], lat.encoder_id, lat.model_id,
                     None if lat.words is None else lat.words[idx])


# ---------------------------------------------------------------------------------------------
# edits
# ---------------------------------------------------------------------------------------------

def edit_pairs(domain: str, attribute: str, n: int, seed: int, wording: str = "heldout") -> list[dict]:
    """n (source, target) prompt pairs with the same phrasing, one attribute changed; wording
    "heldout" (the evaluation's words) or "train" (the captions' words: the edit method without
    the encoder's grasp of new words)."""
    rng = np.random.default_rng([seed, 77, procedural.DOMAINS.index(domain)])
    values = procedural.ATTRIBUTES[domain][attribute]
    pairs = []
    while len(pairs) < n:
        attrs = procedural.sample_attributes(domain, rng, "any")
        new = dict(attrs)
        choices = [v for v in values if v != attrs[attribute]
                   and procedural.is_valid_combination(domain, {**attrs, attribute: v})]
        if not choices:
            continue
        new[attribute] = choices[int(rng.integers(len(choices)))]
        k = int(rng.integers(2 ** 31))
        pairs.append({"attrs": attrs, "new_attrs": new,
                      "prompt": procedural.make_caption(domain, attrs, np.random.default_rng(k), wording),
                      "new_prompt": procedural.make_caption(domain, new, np.random.default_rng(k), wording),
                      "labels": procedural.labels_vector(domain, attrs),
                      "new_labels": procedural.labels_vector(domain, new)})
    return pairs


def _edit_scores(net, domain: str, attribute: str, pairs, original, edited, region=None) -> dict:
    heads = _heads(net)
    col = heads.index(f"{domain}.{attribute}")
    others = [i for i, h in enumerate(heads) if h.startswith(domain + ".") and i != col]
    with torch.no_grad():
        p0 = torch.cat([net.predict(original[i:i + 256]) for i in range(0, len(original), 256)])
        p1 = torch.cat([net.predict(edited[i:i + 256]) for i in range(0, len(edited), 256)])
    old = torch.as_tensor(np.stack([p["labels"] for p in pairs]))
    new = torch.as_tensor(np.stack([p["new_labels"] for p in pairs]))
    src_ok = p0[:, col] == old[:, col]
    success = p1[:, col] == new[:, col]
    kept = (p1[:, others] == p0[:, others]).float()
    out = {"source_reads_as_asked": round(src_ok.float().mean().item(), 4),
           "success": round(success.float().mean().item(), 4),
           "success_when_source_read": (round(success[src_ok].float().mean().item(), 4)
                                        if src_ok.any() else None),
           "preservation": round(kept.mean().item(), 4),
           "all_preserved": round((kept.min(1).values == 1).float().mean().item(), 4),
           "preservation_by_attribute": {heads[i]: round(kept[:, j].mean().item(), 4)
                                         for j, i in enumerate(others)}}
    return out


def _ssims(domain: str, original, edited, mask=None) -> dict:
    out = {"ssim": round(R.masked_ssim(original, edited).mean().item(), 4)}
    r = original.shape[-1]
    if domain == "flower":
        outside = (1 - _disc(r, FLOWER_RADIUS))[None].expand(len(original), -1, -1)
        out["ssim_outside_flower"] = round(R.masked_ssim(original, edited, outside).mean().item(), 4)
    if mask is not None:
        # SSIM's window (sigma 1.5 px, radius 5) straddles the mask's edge: score the pixels
        # farther than that from the mask, and give the exact change outside the mask beside it
        grown = torch.nn.functional.max_pool2d(mask[:, None], 11, 1, 5)[:, 0]
        far = (1 - grown).expand(len(original), -1, -1)
        out["ssim_outside_mask"] = round(R.masked_ssim(original, edited, far).mean().item(), 4)
        outside = (mask == 0).expand(len(original), -1, -1)[:, None].expand(-1, 3, -1, -1)
        out["max_abs_change_outside_mask"] = round(
            (edited - original).abs()[outside].max().item(), 6)
    return out


def eval_edits(model, net, n: int, seed: int, strengths: list[float], invert_n: int = 0,
               invert_steps: int = 50, wording: str = "heldout",
               preserve: float = R.DEFAULT_PRESERVE) -> dict:
    results = {}
    for domain, attribute in EDITS:
        pairs = edit_pairs(domain, attribute, n, seed, wording)
        s_old, w_old = _encode([p["prompt"] for p in pairs])
        s_new, w_new = _encode([p["new_prompt"] for p in pairs])
        lat = _latent(model, s_old, w_old, [p["prompt"] for p in pairs],
                      [seed + 500 + i for i in range(n)])
        original = generate(model, lat)
        key = f"{domain}.{attribute}"
        results[key] = {"n": n, "examples": [[p["prompt"], p["new_prompt"]] for p in pairs[:3]]}
        runs = [(f"strength_{t:g}", t, preserve) for t in strengths]
        if preserve > 0:      # the one-pass swap beside it, to show what the guided edit adds
            runs.append(("swap_strength_1", 1.0, 0.0))
        for name, t, keep in runs:
            (edited, _), seconds = _timed(R.edit, model, lat, s_new, t, preserve=keep,
                                          new_words=w_new)
            row = _ssims(domain, original, edited)
            row["seconds_per_image_batched"] = round(seconds / n, 4)
            if net is not None:
                row.update(_edit_scores(net, domain, attribute, pairs, original, edited))
            results[key][name] = row
        if attribute == "petal_colour" and "strength_1" in results[key]:
            # batch 1, as a single image in a workflow
            one = [_timed(R.edit, model, _sub(lat, [i]), s_new[i:i + 1], 1.0, preserve=preserve,
                          new_words=w_new[i:i + 1])[1]
                   for i in range(min(3, n))]
            results[key]["strength_1"]["seconds_per_image_batch1"] = round(float(np.median(one)), 4)
            mask = _disc(model.resolution, FLOWER_RADIUS)[None]
            edited, _ = R.edit(model, lat, s_new, 1.0, mask, preserve=preserve,
                               new_words=w_new)
            row = _ssims(domain, original, edited, mask)
            if net is not None:
                row.update(_edit_scores(net, domain, attribute, pairs, original, edited))
            results[key]["masked_strength_1"] = row
            if invert_n > 0:
                k = min(invert_n, n)
                found = find_inverter(model)
                encoder = load_inverter(found, model) if found is not None else None
                with torch.enable_grad():
                    t0 = time.perf_counter()
                    # what edit() does with an image given without its latent, split in two so
                    # the reconstruction can be scored as well
                    inv_lat = invert(model, original[:k], None if encoder else s_new[:k], invert_steps,
                                     encoder, seed=seed)
                    secs = (time.perf_counter() - t0) / k
                edited, _ = R.edit(model, inv_lat, s_new[:k], 1.0, preserve=preserve,
                                   new_words=w_new[:k])
                recon = generate(model, inv_lat)
                row = {"n": k, "invert_steps": invert_steps, "seconds_per_image": round(secs, 3),
                       "inverter": str(found) if found is not None else None,
                       "reconstruction_psnr": round(reconstruction_psnr(recon, original[:k]), 2),
                       "reconstruction_ssim": round(R.masked_ssim(recon, original[:k]).mean().item(), 4)}
                row.update(_ssims(domain, original[:k], edited))
                if net is not None:
                    row.update(_edit_scores(net, domain, attribute, pairs[:k], original[:k], edited))
                results[key]["through_inversion_strength_1"] = row
    return results


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------

def markdown(report: dict) -> str:
    r = report["refinement"]
    lines = [f"Refine measured on {report['model']} (step {report['step']}), "
             f"{r['n_prompts']} held-out prompts, {r['steps']} steps, step size {r['step_size']}, "
             f"noise {r['noise']}, attribute weight {r.get('attribute_weight')}; edits in "
             f"{report.get('edit_wording', 'heldout')} wording, preserve "
             f"{report.get('preserve', 0)} (swap_strength_1: the one-pass swap).", ""]
    if "before" in r:
        lines += ["| | before | after |", "| --- | --- | --- |"]
        for k in ("mean_accuracy", "colour_accuracy", "frechet", "kid"):
            lines.append(f"| {k.replace('_', ' ')} | {r['before'][k]} | {r['after'][k]} |")
        for k, v in r["before"]["accuracy"].items():
            lines.append(f"| {k} | {v} | {r['after']['accuracy'][k]} |")
    lines.append(f"| discriminator score | {r['d_score_before']} | {r['d_score_after']} |")
    lines += ["", f"Seconds per {r['resolution']} px image: {r['seconds_per_image_batch1']} at batch "
              f"1, {r['seconds_per_image_batched']} batched; SSIM before/after "
              f"{r['ssim_before_after']}.", ""]
    lines += ["| edit | strength | success | success (source read) | preserved | all preserved | "
              "SSIM | SSIM outside flower / mask | s/img batched (batch 1) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key, res in report["edits"].items():
        for name, row in res.items():
            if not isinstance(row, dict):
                continue
            outside = row.get("ssim_outside_mask", row.get("ssim_outside_flower", ""))
            speed = row.get("seconds_per_image_batched", "")
            if "seconds_per_image_batch1" in row:
                speed = f"{speed} ({row['seconds_per_image_batch1']})"
            lines.append(f"| {key} | {name} | {row.get('success', '')} | "
                         f"{row.get('success_when_source_read', '')} | {row.get('preservation', '')} | "
                         f"{row.get('all_preserved', '')} | {row['ssim']} | {outside} | {speed} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="refine-eval", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--classifier", default=str(CLASSIFIER_PATH))
    p.add_argument("--n-per-domain", type=int, default=100, help="held-out prompts per domain")
    p.add_argument("--edit-n", type=int, default=100, help="edits per kind")
    p.add_argument("--strengths", default="0.5,1,1.5")
    p.add_argument("--steps", type=int, default=R.DEFAULT_STEPS)
    p.add_argument("--step-size", type=float, default=R.DEFAULT_STEP_SIZE)
    p.add_argument("--noise", type=float, default=R.DEFAULT_NOISE)
    p.add_argument("--attribute-weight", type=float, default=R.DEFAULT_ATTRIBUTE_WEIGHT,
                   help="weight of the prompt-attribute term (0: the matching score alone)")
    p.add_argument("--edit-wording", choices=("heldout", "train"), default="heldout",
                   help="edit prompts in the held-out words or in the training captions' words")
    p.add_argument("--preserve", type=float, default=R.DEFAULT_PRESERVE,
                   help="edits: weight of the edge-keeping guided transition (0: one-pass swap "
                        "only; above 0 the swap is also reported, as swap_strength_1)")
    p.add_argument("--invert-n", type=int, default=0, help="colour edits through inversion")
    p.add_argument("--invert-steps", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    add_threads_flag(p)
    p.add_argument("--json", default=None)
    p.add_argument("--md", default=None)
    args = p.parse_args(argv)
    set_threads(args.threads)
    model = load_gan(args.model)
    net = load_classifier(args.classifier) if Path(args.classifier).is_file() else None
    report = {"model": str(args.model), "step": model.provenance.get("step"),
              "classifier": str(args.classifier) if net is not None else None}
    report["refinement"] = eval_refinement(model, net, args.n_per_domain, args.seed, args.steps,
                                           args.step_size, args.noise, args.attribute_weight)
    report["edits"] = eval_edits(model, net, args.edit_n, args.seed,
                                 [float(x) for x in args.strengths.split(",")], args.invert_n,
                                 args.invert_steps, args.edit_wording, args.preserve)
    report["edit_wording"] = args.edit_wording
    report["preserve"] = args.preserve
    text = markdown(report)
    if net is None:
        text += "\n\n(no attribute classifier found: accuracy, Frechet distance, KID and edit " \
                "success were not measured)"
    if args.json:
        dump_json(report, args.json)
    if args.md:
        Path(args.md).write_text(text + "\n")
    print(json.dumps(report, indent=1))
    print(text)
    return 0


main_refine_eval = main
