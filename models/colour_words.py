"""The generator's colour-word input: the hidden states of a prompt's colour words, each with
the exact colour the lexicon gives it.

    colour_words(tokens [B, T, D], colours [B, T, 4], mask [B, T]) -> [B, M, D + 4]

Row b holds the first M (``MAX_COLOUR_WORDS``) tokens of prompt b that lie inside a colour
phrase, in prompt order: the token's contextual state (which says what the colour belongs to:
"burgundy petals" or "on burgundy") followed by its colour channel (L/100, a/100, b/100, 1).
Unused rows are zero (their last value 0 marks them empty).
"""
from __future__ import annotations

import torch

MAX_COLOUR_WORDS = 12


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
