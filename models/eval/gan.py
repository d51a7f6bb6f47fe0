"""Evaluator: an attribute classifier trained on procedural renders reads generated images.

    python <pack> train-classifier --out models/weights/attribute_classifier.safetensors
    python <pack> evaluate --model models/weights/promptgan_default.safetensors --json eval.json

Definitions (the same in the README and the issues):
- attribute accuracy: on held-out prompts (paraphrases and attribute combinations training never
  saw) the classifier reads each asked attribute of the generated image; per attribute, the share
  read as asked. The classifier's own accuracy on held-out real renders is the ceiling.
- Frechet distance and KID between generated images and real renders of the same prompts, in the
  classifier's penultimate feature space.
- diversity: mean pairwise feature distance of same-prompt samples, beside the same for renders.
- text sensitivity: mean absolute pixel change when only the prompt changes, beside the change
  when only the noise changes (range [-1, 1]).
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checkpoint import WEIGHTS_DIR, build_network, load_checkpoint, save_checkpoint
from ..cli import (
    add_threads_flag,
    command_line,
    make_progress,
    parse_with_recipe,
    save_image_grid,
    set_threads,
)
from ..data import captions, procedural
from ..data.captions import SAMPLE_PROMPTS
from ..data.text_probe import fit_text_head
from ..gan import aux_loss, load_gan
from ..generate import generate, latent_for_sentences
from ..text_encoder import encode_prompts, encode_sentences, load_encoder

log = logging.getLogger("PromptGAN")

CLASSIFIER_PATH = WEIGHTS_DIR / "attribute_classifier.safetensors"
CLASSIFIER_KIND = "attribute-classifier"
COLOUR_ATTRIBUTES = ("flower.petal_colour", "flower.centre_colour", "flower.background",
                     "landscape.time_of_day", "landscape.season")


@dataclass
class ClassifierConfig:
    resolution: int = 64
    width: int = 32
    feature_dim: int = 128
    label_heads: list = None


class AttributeClassifier(nn.Module):
    """image [B,3,64,64] in [-1,1] -> (features [B,F], logits [B, sum(classes)])."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width

        def block(a, b):
            return nn.Sequential(nn.Conv2d(a, b, 3, 1, 1), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
                                 nn.Conv2d(b, b, 3, 1, 1), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
                                 nn.MaxPool2d(2))

        self.body = nn.Sequential(block(3, w), block(w, 2 * w), block(2 * w, 4 * w),
                                  block(4 * w, 4 * w))                      # 64 -> 4
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * 16, cfg.feature_dim),
                                nn.ReLU(inplace=True))
        self.head = nn.Linear(cfg.feature_dim, sum(n for _, n in cfg.label_heads))

    def forward(self, x: torch.Tensor):
        r = self.cfg.resolution
        if x.shape[-1] != r or x.shape[-2] != r:
            x = F.interpolate(x, size=(r, r), mode="bilinear", antialias=True, align_corners=False)
        f = self.fc(self.body(x))
        return f, self.head(f)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """-> predicted class index per head [B, H]."""
        return head_argmax(self(x)[1], self.cfg.label_heads)


def head_argmax(logits: torch.Tensor, heads) -> torch.Tensor:
    """Concatenated per-head logits [B, sum(classes)] -> class index per head [B, H]."""
    out, start = [], 0
    for _, n in heads:
        out.append(logits[:, start:start + n].argmax(1))
        start += n
    return torch.stack(out, 1)


def load_classifier(path=CLASSIFIER_PATH, device="cpu") -> AttributeClassifier:
    ck = load_checkpoint(path, kind=CLASSIFIER_KIND)
    net = build_network(lambda: AttributeClassifier(ClassifierConfig(**ck.config)), ck.tensors,
                        source=str(path))
    return net.eval().requires_grad_(False).to(device)


def to_model_range(images_uint8: np.ndarray) -> torch.Tensor:
    """uint8 [N,H,W,3] -> float [N,3,H,W] in [-1,1]."""
    return torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def augment_renders(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mild robustness: noise, small brightness shifts, occasional blur (GAN outputs are soft)."""
    b = x.shape[0]
    x = x + 0.04 * torch.randn(x.shape, generator=gen) * torch.rand(b, 1, 1, 1, generator=gen)
    x = x + 0.1 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
    blur = torch.rand(b, generator=gen) < 0.3
    if blur.any():
        k = torch.tensor([1.0, 2.0, 1.0])
        k = (k[:, None] * k[None, :] / 16).expand(3, 1, 3, 3)
        x[blur] = F.conv2d(F.pad(x[blur], (1, 1, 1, 1), mode="replicate"), k, groups=3)
    return x.clamp(-1, 1)


def fit_classifier(x: np.ndarray, y: torch.Tensor, heads: list, epochs: int, batch: int,
                   seed: int, desc: str = "train-classifier", augment=augment_renders) -> AttributeClassifier:
    """An AttributeClassifier for ``heads`` fitted on renders x uint8 [N,64,64,3] with labels y
    [N,H] (-1: no label), AdamW with a one-cycle schedule; returned in eval mode.
    ``augment(x [B,3,64,64] in [-1,1], generator) -> x``: what each batch goes through."""
    net = AttributeClassifier(ClassifierConfig(label_heads=heads))
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * (len(x) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    bar = make_progress(steps, desc=desc)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(len(x) // batch):
            idx = perm[i * batch:(i + 1) * batch]
            xb = augment(to_model_range(x[idx.numpy()]), gen)
            loss = aux_loss(net(xb)[1], y[idx], heads)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return net.eval()


def train_classifier(argv=None) -> int:
    p = argparse.ArgumentParser(prog="train-classifier",
                                description="Train the evaluator's attribute classifier on renders.")
    p.add_argument("--out", default=str(CLASSIFIER_PATH))
    p.add_argument("--n-train", type=int, default=24000)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch", type=int, default=64)
    add_threads_flag(p)
    p.add_argument("--seed", type=int, default=7)
    args = parse_with_recipe(p, argv)
    set_threads(args.threads)
    torch.manual_seed(args.seed)
    heads = [list(h) for h in procedural.LABEL_HEADS]
    # the classifier must read every combination, held-out ones included
    train = {"train": procedural.make_dataset_arrays(args.n_train // 2, 64, args.seed, split="train",
                                            captions_per_image=1),
             "heldout": procedural.make_dataset_arrays(args.n_train // 2, 64, args.seed + 1,
                                              split="heldout", captions_per_image=1)}
    x = np.concatenate([train["train"]["images"], train["heldout"]["images"]])
    y = torch.from_numpy(np.concatenate([train["train"]["labels"], train["heldout"]["labels"]]))
    test = procedural.make_dataset_arrays(args.n_test, 64, args.seed + 99, split="heldout",
                                 captions_per_image=1)
    net = fit_classifier(x, y, heads, args.epochs, args.batch, args.seed)
    acc = classifier_accuracy(net, test["images"], test["labels"])
    print(json.dumps(acc, indent=1))
    save_checkpoint(args.out, net.state_dict(), kind=CLASSIFIER_KIND, config=asdict(net.cfg),
                    resolution=64,
                    provenance={"command": command_line("train-classifier", argv),
                                "heldout_accuracy": acc, "date": time.strftime("%Y-%m-%d")})
    print(f"saved {args.out}")
    return 0


@torch.no_grad()
def classifier_accuracy(net, images: np.ndarray, labels: np.ndarray) -> dict:
    pred = torch.cat([net.predict(to_model_range(images[i:i + 256]))
                      for i in range(0, len(images), 256)])
    return per_head_accuracy(pred, torch.as_tensor(labels), net.cfg.label_heads)


def per_head_accuracy(pred: torch.Tensor, labels: torch.Tensor, heads) -> dict:
    out = {}
    for i, (name, _) in enumerate(heads):
        m = labels[:, i] >= 0
        if m.any():
            out[name] = round((pred[m, i] == labels[m, i]).float().mean().item(), 4)
    return out


# ---------------------------------------------------------------------------------------------
# generator evaluation
# ---------------------------------------------------------------------------------------------

def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def kid(a: np.ndarray, b: np.ndarray, subsets: int = 20, size: int = 200, seed: int = 0) -> float:
    """Kernel inception distance (cubic polynomial kernel, unbiased MMD^2), mean over subsets."""
    rng = np.random.default_rng(seed)
    d = a.shape[1]
    size = min(size, len(a), len(b))
    vals = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), size, replace=False)]
        y = b[rng.choice(len(b), size, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        m = size
        vals.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
                    + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())
    return float(np.mean(vals))


def draw(model, sentences: torch.Tensor, seeds: list[int], truncation: float = 1.0,
         words: torch.Tensor | None = None) -> torch.Tensor:
    """-> images [N,3,R,R] in [-1,1] for sentences [N,D] (and their colour words [N,M,D+4]),
    one seed per image, drawn by the nodes' own generation path (``generate.generate``)."""
    return generate(model, latent_for_sentences(model, sentences, seeds, truncation, words),
                    chunk=64)


@torch.no_grad()
def features_of(net, images: torch.Tensor) -> np.ndarray:
    return torch.cat([net(images[i:i + 256])[0] for i in range(0, len(images), 256)]).numpy()


def accuracy_summary(acc: dict) -> dict:
    """Per-head accuracy -> {accuracy, mean_accuracy (attributes, domain left out),
    colour_accuracy}."""
    attrs = {k: v for k, v in acc.items() if k != "domain"}
    colour = [v for k, v in attrs.items() if k in COLOUR_ATTRIBUTES]
    return {"accuracy": acc, "mean_accuracy": round(float(np.mean(list(attrs.values()))), 4),
            "colour_accuracy": round(float(np.mean(colour)), 4)}


def evaluate_images(images: torch.Tensor, prompts: list[dict], net, real_feats=None) -> dict:
    """Attribute accuracy of images [N,3,R,R] against the prompts' labels."""
    pred = torch.cat([net.predict(images[i:i + 256]) for i in range(0, len(images), 256)])
    labels = torch.as_tensor(np.stack([p["labels"] for p in prompts]))
    out = accuracy_summary(per_head_accuracy(pred, labels, net.cfg.label_heads))
    if real_feats is not None:
        fake = features_of(net, images)
        out["frechet"] = round(frechet_distance(fake, real_feats), 3)
        out["kid"] = round(kid(fake, real_feats), 4)
    return out


def real_renders(prompts: list[dict], size: int, seed: int) -> torch.Tensor:
    imgs = [procedural.render(p["domain"], p["attrs"], size, np.random.default_rng([seed, i]))
            for i, p in enumerate(prompts)]
    return to_model_range(np.stack(imgs))


def evaluate_model(model, net, n_per_domain: int = 100, seed: int = 0,
                   truncation: float = 1.0) -> dict:
    prompts = procedural.heldout_prompts(n_per_domain)
    e = encode_prompts([p["prompt"] for p in prompts])
    s, w = e.sentence, e.colour_words()
    images = draw(model, s, [seed + i for i in range(len(prompts))], truncation, w)
    real = real_renders(prompts, 64, seed + 10_000)
    real_feats = features_of(net, real)
    out = {"n_prompts": len(prompts)}
    out.update(evaluate_images(images, prompts, net, real_feats))
    # classifier ceiling on real renders of the same prompts
    out["classifier_on_real"] = evaluate_images(real, prompts, net)["accuracy"]
    # diversity: same prompt, 8 seeds, 16 prompts
    few = list(range(0, len(prompts), max(1, len(prompts) // 16)))[:16]
    rep_rows = [i for i in few for _ in range(8)]
    rep_imgs = draw(model, s[rep_rows], [seed + 50_000 + k for k in range(len(rep_rows))],
                    words=w[rep_rows])
    rep_real = real_renders([prompts[i] for i in few for _ in range(8)], 64, seed + 20_000)
    out["diversity"] = round(_pairwise(features_of(net, rep_imgs), 8), 3)
    out["diversity_real"] = round(_pairwise(features_of(net, rep_real), 8), 3)
    # text sensitivity: only the prompt changes vs only the noise changes
    z_same = [seed + 7] * len(few)
    shifted = few[1:] + few[:1]
    a = draw(model, s[few], z_same, words=w[few])
    b = draw(model, s[shifted], z_same, words=w[shifted])
    c = draw(model, s[few], [seed + 99 + i for i in range(len(few))], words=w[few])
    out["text_sensitivity"] = round((a - b).abs().mean().item(), 4)
    out["noise_sensitivity"] = round((a - c).abs().mean().item(), 4)
    return out


def train_phrasing_accuracy(model, net, n_per_domain: int = 100, seed: int = 0) -> dict:
    """Attribute accuracy on the held-out combinations phrased with training words and templates:
    beside the headline figure it separates new wording from new combinations."""
    rng = np.random.default_rng(seed + 7)
    prompts = [dict(p, prompt=procedural.make_caption(p["domain"], p["attrs"], rng, "any"))
               for p in procedural.heldout_prompts(n_per_domain)]
    e = encode_prompts([p["prompt"] for p in prompts])
    images = draw(model, e.sentence, [seed + i for i in range(len(prompts))],
                  words=e.colour_words())
    return evaluate_images(images, prompts, net)


def text_probe_accuracy(n_captions: int = 4000, n_per_domain: int = 100, seed: int = 0,
                        steps: int = 1500, encode=None) -> dict:
    """How much of each attribute the sentence embedding of a held-out prompt carries.

    A linear probe (embedding -> attribute logits; Refine's text head, ``text_head.py``) is
    fitted on training captions and read on the held-out prompts: an indication of how well the
    embedding carries each attribute across the held-out wording, not a strict bound (a
    generator trained longer on more captions can read an attribute better than this probe does).
    """
    encode = encode or encode_sentences
    heads = [list(h) for h in procedural.LABEL_HEADS]
    probe = fit_text_head(heads, n_captions=n_captions, seed=seed + 11, steps=steps, encode=encode)
    held = procedural.heldout_prompts(n_per_domain)
    hx = encode([p["prompt"] for p in held])
    with torch.no_grad():
        pred = head_argmax(probe(hx), heads)
    labels = torch.as_tensor(np.stack([p["labels"] for p in held]))
    return accuracy_summary(per_head_accuracy(pred, labels, heads))


# the colour-like attributes whose held-out synonyms are single words or short phrases
ANCHOR_ATTRIBUTES = (("flower", "petal_colour"), ("flower", "centre_colour"),
                     ("landscape", "time_of_day"))


def synonym_anchor_accuracy(encode=None) -> dict:
    """Does the encoder place each held-out synonym nearest its own value, word by word?

    For each attribute of ``ANCHOR_ATTRIBUTES`` every value gets an anchor: the normalised mean
    sentence embedding of its training synonyms, each encoded alone ("crimson", "scarlet", ...).
    A held-out synonym ("ruby"), encoded alone, reads as the value of the nearest anchor (cosine).
    No caption context and no training: what the encoder itself knows of the held-out words,
    which bounds any generator conditioned on its embeddings. -> {attribute: {"correct", "total",
    "misread": {synonym: value read}}}.
    """
    encode = encode or encode_sentences
    tables = {"flower": (captions.FLOWER_TRAIN, captions.FLOWER_HELDOUT),
              "landscape": (captions.LANDSCAPE_TRAIN, captions.LANDSCAPE_HELDOUT)}
    out = {}
    for domain, attr in ANCHOR_ATTRIBUTES:
        train, held = (t[attr] for t in tables[domain])
        values = list(train)
        anchors = torch.stack([F.normalize(encode(list(train[v])).mean(0), dim=0)
                               for v in values])                              # [V, D]
        correct, total, misread = 0, 0, {}
        for value, synonyms in held.items():
            e = encode(list(synonyms))                                        # [S, D]
            for word, k in zip(synonyms, (e @ anchors.T).argmax(1).tolist()):
                total += 1
                if values[k] == value:
                    correct += 1
                else:
                    misread[word] = values[k]
        out[f"{domain}.{attr}"] = {"correct": correct, "total": total, "misread": misread}
    return out


def _pairwise(feats: np.ndarray, group: int) -> float:
    ds = []
    for i in range(0, len(feats), group):
        f = feats[i:i + group]
        d = np.sqrt(((f[:, None] - f[None]) ** 2).sum(-1))
        ds.append(d[np.triu_indices(len(f), 1)].mean())
    return float(np.mean(ds))


def write_grid(model, path, seeds: int = 6, prompts: list[str] | None = None, scale: int = 2):
    """Rows of images, one row per prompt, ``seeds`` seeds each (seed k for column k); the
    prompts are written beside the PNG as a .txt."""
    prompts = prompts or SAMPLE_PROMPTS
    e = encode_prompts(prompts)
    rows = draw(model, e.sentence.repeat_interleave(seeds, 0),
                [k for _ in prompts for k in range(seeds)],
                words=e.colour_words().repeat_interleave(seeds, 0))
    if scale > 1:
        rows = F.interpolate(rows, scale_factor=scale, mode="nearest")
    save_image_grid(rows, path, nrow=seeds, captions=prompts)


def probe_report(encoder_folder: str | None, n_per_domain: int, seed: int) -> dict:
    """The text probe and synonym anchors of the default encoder, or of the Hugging Face encoder
    folder ``encoder_folder``: {"encoder", "text_probe", "synonym_anchors"}."""
    enc = load_encoder(encoder_folder)            # None: the default encoder
    encode = partial(encode_sentences, encoder=enc)
    return {"encoder": enc.encoder_id,
            "text_probe": text_probe_accuracy(n_per_domain=n_per_domain, seed=seed, encode=encode),
            "synonym_anchors": synonym_anchor_accuracy(encode)}


def markdown_table(result: dict, name: str = "model") -> str:
    """README table: held-out prompts, plus the optional training-phrasing and text-probe columns."""
    cols = [("generated", result)]
    if "train_phrasing" in result:
        cols.append(("same combinations, training wording", result["train_phrasing"]))
    if "text_probe" in result:
        cols.append(("text probe (linear read-out of the embedding)", result["text_probe"]))
    head = ["attribute"] + [c for c, _ in cols] + ["classifier on real renders"]
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for k in result["accuracy"]:
        vals = [f"{r['accuracy'].get(k, float('nan')):.3f}" for _, r in cols]
        rows.append(f"| {k} | " + " | ".join(vals)
                    + f" | {result['classifier_on_real'].get(k, float('nan')):.3f} |")
    for label, key in (("mean (attributes)", "mean_accuracy"), ("colour attributes", "colour_accuracy")):
        vals = [f"**{r[key]:.3f}**" for _, r in cols]
        rows.append(f"| **{label}** | " + " | ".join(vals) + " | |")
    extra = (f"\nFrechet distance {result['frechet']:.2f}, KID {result['kid']:.4f}, diversity "
             f"{result['diversity']:.2f} (real {result['diversity_real']:.2f}), text sensitivity "
             f"{result['text_sensitivity']:.3f} vs noise sensitivity {result['noise_sensitivity']:.3f}"
             f"; {result['n_prompts']} held-out prompts, {name}.")
    if "synonym_anchors" in result:
        extra += "\nHeld-out synonyms the encoder places nearest their own value, word by word: " + ", ".join(
            f"{k} {v['correct']}/{v['total']}" for k, v in result["synonym_anchors"].items()) + "."
    return "\n".join(rows) + extra


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="evaluate", description="Evaluate a generator checkpoint.")
    p.add_argument("--model", default=None, help="GAN .safetensors (shipped or a run's model); "
                   "may be left out with --text-probe, which then runs alone")
    p.add_argument("--classifier", default=str(CLASSIFIER_PATH))
    p.add_argument("--n-per-domain", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--truncation", type=float, default=1.0)
    p.add_argument("--json", default=None, help="write the result here")
    add_threads_flag(p)
    p.add_argument("--grid", default=None,
                   help="also write a PNG grid: the sample prompts (rows) x --grid-seeds seeds")
    p.add_argument("--grid-seeds", type=int, default=6)
    p.add_argument("--train-phrasing", action="store_true",
                   help="also report accuracy on the same combinations worded as training captions")
    p.add_argument("--text-probe", action="store_true",
                   help="also report a linear probe from the sentence embedding to the "
                        "attributes, fitted on training captions, read on the held-out prompts: "
                        "how well the text side carries each attribute (encodes 4,000 captions); "
                        "and how many held-out colour and time-of-day synonyms, encoded alone, "
                        "lie nearest their own value's training synonyms")
    p.add_argument("--probe-encoder", default=None, metavar="FOLDER",
                   help="read --text-probe with this Hugging Face encoder folder instead of the "
                        "default MiniLM: would another encoder carry the held-out wording better?")
    args = p.parse_args(argv)
    if args.model is None and not args.text_probe:
        p.error("--model is required (it may be left out only with --text-probe)")
    if args.probe_encoder and not args.text_probe:
        p.error("--probe-encoder is read by --text-probe; pass both")
    set_threads(args.threads)
    if args.model is None:
        probe = probe_report(args.probe_encoder, args.n_per_domain, args.seed)
        if args.json:
            Path(args.json).write_text(json.dumps(probe, indent=2))
        print(json.dumps(probe, indent=1))
        return 0
    model = load_gan(args.model, with_discriminator=False)
    if args.grid:
        write_grid(model, args.grid, args.grid_seeds)
        print(f"grid: {args.grid}")
    net = load_classifier(args.classifier)
    result = evaluate_model(model, net, args.n_per_domain, args.seed, args.truncation)
    if args.train_phrasing:
        result["train_phrasing"] = train_phrasing_accuracy(model, net, args.n_per_domain, args.seed)
    if args.text_probe:
        probe = probe_report(args.probe_encoder, args.n_per_domain, args.seed)
        result["text_probe"] = probe["text_probe"]
        result["synonym_anchors"] = probe["synonym_anchors"]
        result["probe_encoder"] = probe["encoder"]
    result["model"] = str(args.model)
    result["step"] = model.provenance.get("step")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=1))
    print(markdown_table(result, f"{Path(args.model).name} step {result['step']}"))
    return 0


main_evaluate = main
