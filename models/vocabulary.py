"""The words a model was trained on, and the words of a prompt it never saw.

A GAN file records the vocabulary of its training captions (``vocabulary_of``), and GANGenerate
names the content words of each prompt outside it (``unknown_words``): the model draws those
words from whatever its text encoder makes of them, which for a colour or a style it never saw
is an arbitrary guess, so the user is told instead of silently ignored. A model with a colour
reader draws every colour phrase the colour lexicon knows from its exact colour, so those count
as known.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

from .colour_lexicon import find_colours

WORD = re.compile(r"[a-z]+(?:['-][a-z]+)*")
MAX_WORDS = 50_000          # a vocabulary this size fits the checkpoint's metadata bounds
# words that carry no content of their own: never reported, whatever the captions held
FUNCTION_WORDS = frozenset("""
a an the this that these those some any each every one two three four five six seven eight nine
ten of on in at by for from to into onto over under above below behind beside between near with
without and or but nor so than then as is are was were be been being it its it's there here
very quite rather really just also too more most less least much many few lot lots
i me my we our you your he she they them his her their please make draw show paint picture
image photo
""".split())


def words_of(text: str) -> list[str]:
    """Lower-case words of ``text`` in order ("Snowy mountains, at night!" -> snowy, mountains,
    at, night)."""
    return WORD.findall(text.lower())


def vocabulary_of(captions: Iterable[str]) -> list[str]:
    """The sorted distinct words of ``captions`` (at most MAX_WORDS, the most frequent kept)."""
    counts: dict[str, int] = {}
    for caption in captions:
        for w in words_of(caption):
            counts[w] = counts.get(w, 0) + 1
    if len(counts) > MAX_WORDS:
        counts = dict(sorted(counts.items(), key=lambda kv: -kv[1])[:MAX_WORDS])
    return sorted(counts)


def unknown_words(prompt: str, vocabulary: Iterable[str]) -> list[str]:
    """Content words of ``prompt`` that are not in ``vocabulary``, in order, each once."""
    known = vocabulary if isinstance(vocabulary, (set, frozenset)) else set(vocabulary)
    found: list[str] = []
    for w in words_of(prompt):
        parts = w.split("-")          # "pale-blue" is known when "pale" and "blue" are
        compound_known = len(parts) > 1 and all(p in known or p in FUNCTION_WORDS for p in parts)
        if w not in known and w not in FUNCTION_WORDS and w not in found and not compound_known:
            found.append(w)
    return found


def without_colour_names(prompt: str) -> str:
    """The prompt with every colour phrase the colour lexicon knows blanked out."""
    for span in reversed(find_colours(prompt)):
        prompt = prompt[:span.start] + " " + prompt[span.end:]
    return prompt


def report(prompts: list[str], vocabulary: Iterable[str] | None,
           reads_colour_names: bool = False) -> list[str]:
    """One line per prompt: "" when every content word is known (or the model records no
    vocabulary), else "cerulean, teal: unknown to this model". ``reads_colour_names``: the model
    has a colour reader, so the lexicon's colour phrases count as known."""
    if vocabulary is None:
        return ["" for _ in prompts]
    known = set(vocabulary)
    lines = []
    for p in prompts:
        words = unknown_words(without_colour_names(p) if reads_colour_names else p, known)
        lines.append(f"{', '.join(words)}: unknown to this model" if words else "")
    return lines
