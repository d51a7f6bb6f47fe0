"""What a prompt asks for, read from its sentence embedding: the text side of Refine's critic.

The discriminator's auxiliary head reads attribute labels from an image; ``TextAttributeHead``
reads the same labels from a prompt's embedding. Refine pulls the first towards the second, so
its gradient carries the prompt's attributes, which the matching score alone barely does.

The head is a linear map fitted on captions of the procedural training data (never on held-out
wording) and ships inside the GAN checkpoint under ``text_head.``; ``fit-text-head`` adds it to a
checkpoint that lacks it. It is only as good as the encoder's grasp of the words: the evaluator's
``--text-probe`` is the same fit read on the held-out prompts.
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import torch
import torch.nn as nn


class TextAttributeHead(nn.Module):
    """Sentence embeddings [B, text_dim] (unit norm) -> attribute logits [B, sum(classes)]."""

    def __init__(self, text_dim: int, label_heads: list):
        super().__init__()
        self.text_dim = int(text_dim)
        self.label_heads = [[str(n), int(k)] for n, k in label_heads]
        self.linear = nn.Linear(self.text_dim, sum(k for _, k in self.label_heads))

    @property
    def config(self) -> dict:
        return {"text_dim": self.text_dim, "label_heads": self.label_heads}

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        assert s.dim() == 2 and s.shape[1] == self.text_dim, tuple(s.shape)
        # unit vectors have entries of about 1/sqrt(D); scale them to about 1 for the fit
        return self.linear(s * math.sqrt(self.text_dim))


def training_captions(n: int, seed: int) -> tuple[list[str], torch.Tensor]:
    """``n`` procedural training captions (alternating domains) and their labels [n, heads]."""
    from .data import procedural as P

    rng = np.random.default_rng(seed)
    captions, labels = [], []
    for i in range(n):
        domain = P.DOMAINS[i % len(P.DOMAINS)]
        attrs = P.sample_attributes(domain, rng, "train")
        captions.append(P.make_caption(domain, attrs, rng, "train"))
        labels.append(P.labels_vector(domain, attrs))
    return captions, torch.as_tensor(np.stack(labels))


def fit_text_head(label_heads: list, n_captions: int = 4000, seed: int = 11, steps: int = 1500,
                  weight_decay: float = 0.1, encode=None) -> TextAttributeHead:
    """Fit the head on ``n_captions`` training captions encoded with ``encode`` (prompts ->
    unit sentence embeddings [N, D]; default: the default encoder), deterministic for a seed.
    The label heads must be the procedural data's."""
    from .data import procedural as P
    from .gan import aux_loss
    from .text_encoder import encode_sentences

    expected = [[n, k] for n, k in P.LABEL_HEADS]
    if [[str(n), int(k)] for n, k in label_heads] != expected:
        raise ValueError("a text head reads the procedural data's attribute labels; these label "
                         f"heads differ: {label_heads}")
    captions, labels = training_captions(n_captions, seed)
    x = (encode or encode_sentences)(captions)
    head = TextAttributeHead(x.shape[1], label_heads)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.linear.weight.normal_(0, 0.01, generator=gen)
        head.linear.bias.zero_()
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=weight_decay)
    for _ in range(steps):
        idx = torch.randint(len(x), (256,), generator=gen)
        loss = aux_loss(head(x[idx]), labels[idx], head.label_heads)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head.eval().requires_grad_(False)


def why_no_text_head(model) -> str | None:
    """Why ``model`` (a GANModel) cannot have a text head, or None if it can: the head reads the
    default encoder's embeddings and is paired with the discriminator's auxiliary label head."""
    from .text_encoder import DEFAULT_ENCODER_ID

    d = model.discriminator
    if d is None or not d.cfg.label_heads:
        return ("its discriminator has no auxiliary label head, so Refine has nothing to steer "
                "with a text head; train with labelled data")
    if model.encoder_id != DEFAULT_ENCODER_ID:
        return (f"conditioned on {model.encoder_id}; the text head is fitted on the default "
                f"encoder's embeddings ({DEFAULT_ENCODER_ID})")
    return None


def main(argv=None) -> int:
    from .gan import load_gan, save_gan
    from .train_utils import command_line, set_threads

    p = argparse.ArgumentParser(
        prog="fit-text-head",
        description="Fit the prompt -> attribute head Refine uses and write it into a GAN "
                    "checkpoint (the generator and discriminator are copied unchanged).")
    p.add_argument("--model", required=True, help="GAN .safetensors with a discriminator that "
                   "has an auxiliary label head (trained on the procedural data)")
    p.add_argument("--out", default=None, help="where to write; default: replace --model")
    p.add_argument("--captions", type=int, default=4000)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--threads", type=int, default=0)
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
             text_head=head, dtype=torch.float16 if model.stored_dtype == torch.float16 else None)
    print(f"wrote {out}")
    return 0

