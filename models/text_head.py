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

import math

import torch
import torch.nn as nn

from .text_encoder import DEFAULT_ENCODER_ID


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


def why_no_text_head(model) -> str | None:
    """Why ``model`` (a GANModel) cannot have a text head, or None if it can: the head reads the
    default encoder's embeddings and is paired with the discriminator's auxiliary label head."""
    d = model.discriminator
    if d is None or not d.cfg.label_heads:
        return ("its discriminator has no auxiliary label head, so Refine has nothing to steer "
                "with a text head; train with labelled data")
    if model.encoder_id != DEFAULT_ENCODER_ID:
        return (f"conditioned on {model.encoder_id}; the text head is fitted on the default "
                f"encoder's embeddings ({DEFAULT_ENCODER_ID})")
    return None
