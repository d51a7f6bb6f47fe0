"""The generator's colour-word input: the hidden states of a prompt's colour words, each with
the exact colour the lexicon gives it.

    colour_words(tokens [B, T, D], colours [B, T, 4], mask [B, T]) -> [B, M, D + 4]

Row b holds the first M (``MAX_COLOUR_WORDS``) tokens of prompt b that lie inside a colour
phrase, in prompt order: the token's contextual state (which says what the colour belongs to:
"burgundy petals" or "on burgundy") followed by its colour channel (L/100, a/100, b/100, 1).
Unused rows are zero (their last value 0 marks them empty).

    lab_to_unit_rgb(lab [..., 3]) -> sRGB in 0..1 [..., 3]: the inverse of
    colour_lexicon.srgb_to_lab in torch, so a network can paint a colour channel exactly.
"""
from __future__ import annotations

import torch

MAX_COLOUR_WORDS = 12

# sRGB (D65) from XYZ: the inverse of colour_lexicon._M
_XYZ_TO_LINEAR = torch.tensor([[3.2404542, -1.5371385, -0.4985314],
                               [-0.9692660, 1.8760108, 0.0415560],
                               [0.0556434, -0.2040259, 1.0572252]])
_WHITE = torch.tensor([0.95047, 1.0, 1.08883])


def lab_to_unit_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIELAB [..., 3] (L in 0..100) -> sRGB [..., 3] in 0..1, clipped to the gamut."""
    fy = (lab[..., 0] + 16) / 116
    f = torch.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], dim=-1)
    eps = 6 / 29
    xyz = torch.where(f > eps, f.pow(3), 3 * eps * eps * (f - 4 / 29)) * _WHITE.to(lab)
    lin = (xyz @ _XYZ_TO_LINEAR.to(lab).T).clamp(0, 1)
    return torch.where(lin <= 0.0031308, 12.92 * lin,
                       1.055 * lin.clamp_min(1e-8).pow(1 / 2.4) - 0.055).clamp(0, 1)


def colour_words(tokens: torch.Tensor, colours: torch.Tensor, mask: torch.Tensor,
                 max_words: int = MAX_COLOUR_WORDS) -> torch.Tensor:
    b, t, d = tokens.shape
    present = (colours[..., 3] > 0) & mask                                   # [B, T]
    # stable order: colour tokens first, in prompt order
    order = torch.argsort((~present).to(torch.int8), dim=1, stable=True)[:, :max_words]
    keep = torch.gather(present, 1, order)                                   # [B, M']
    feats = torch.gather(tokens, 1, order.unsqueeze(-1).expand(-1, -1, d))
    cols = torch.gather(colours, 1, order.unsqueeze(-1).expand(-1, -1, colours.shape[-1]))
    words = torch.cat([feats, cols], dim=-1) * keep.unsqueeze(-1)
    if words.shape[1] < max_words:
        words = torch.cat([words, words.new_zeros(b, max_words - words.shape[1], words.shape[2])], 1)
    return words
