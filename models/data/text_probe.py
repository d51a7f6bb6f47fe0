"""A linear read-out of attribute labels from caption embeddings, fitted on procedural captions
(never on held-out wording): the text head train-gan ships for Refine, and the evaluator's text
probe (how well the encoder alone separates the attributes)."""
from __future__ import annotations

import numpy as np
import torch

from ..data import procedural
from ..gan import aux_loss
from ..text_encoder import encode_sentences
from ..text_head import TextAttributeHead


def training_captions(n: int, seed: int) -> tuple[list[str], torch.Tensor]:
    """``n`` procedural training captions (alternating domains) and their labels [n, heads]."""
    rng = np.random.default_rng(seed)
    captions, labels = [], []
    for i in range(n):
        domain = procedural.DOMAINS[i % len(procedural.DOMAINS)]
        attrs = procedural.sample_attributes(domain, rng, "train")
        captions.append(procedural.make_caption(domain, attrs, rng, "train"))
        labels.append(procedural.labels_vector(domain, attrs))
    return captions, torch.as_tensor(np.stack(labels))


def fit_text_head(label_heads: list, n_captions: int = 4000, seed: int = 11, steps: int = 1500,
                  weight_decay: float = 0.1, encode=None) -> TextAttributeHead:
    """Fit the head on ``n_captions`` training captions encoded with ``encode`` (prompts ->
    unit sentence embeddings [N, D]; default: the default encoder), deterministic for a seed.
    The label heads must be the procedural data's."""
    expected = [[n, k] for n, k in procedural.LABEL_HEADS]
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
