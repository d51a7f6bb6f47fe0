"""Colour names people type, with their exact colours: the grounding a sentence encoder lacks.

The shipped table (``lexicon/colour_names.tsv.gz``, rebuilt by ``build-colour-lexicon``) holds
about 32,000 normalised names with an sRGB hex and a source: the basic colour words (the
renderer's own palette), the XKCD survey names, the CSS4 names and the npm color-name-list.
``find_colours`` finds the colour phrases of a prompt (longest match first, hex codes such as
``#8a2be2`` included) with their character spans, so that each token of a phrase can carry the
phrase's CIELAB value into the generator (``token_colours``).

A fixed 15 % of the non-basic names, chosen by a hash of the name (``is_heldout_name``), never
appears in a training caption, so that the evaluation measures colours no caption taught.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TABLE_NAME = "colour_names.tsv.gz"
TABLE_PATH = Path(__file__).resolve().parent / "lexicon" / TABLE_NAME
MAX_PHRASE_WORDS = 5
HELDOUT_PERCENT = 15

# Single words that name a colour in some list but are, in a prompt, almost always something
# else (a thing in the picture, a size, a function word). They still count inside a longer
# name ("sky blue", "forest green") and as basic words.
NOT_A_COLOUR_ALONE = frozenset("""
a an the and or of on in at to with without by for from over under into onto near behind beside
it its is are be this that these those there here some any all no not very much more most less
flower flowers blossom bloom petal petals centre center middle heart core eye stem leaf leaves
background backdrop picture image photo illustration drawing painting render view scene
landscape countryside sky grass soil earth dirt ground field meadow lawn paper mountain
mountains peak peaks lake water river sea ocean forest tree trees wood woods sun moon star
stars night day sunset dusk dawn evening morning noon summer autumn fall winter spring snow
ice rain cloud clouds small large big tiny huge little round pointed one two three four five
six eight many few bright dark light pale deep soft plain simple colour color colours colors
bare calm still end icy jumbo blazing treeless cloudless autumnal midsummer springtime
summertime darkness
""".split())

_WORD = re.compile(r"[0-9A-Za-z\u00C0-\u024F']+")
_HEX = re.compile(r"#(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{3})(?![0-9A-Za-z])")


def _fold(text: str) -> str:
    """Lower case without accents or apostrophes."""
    text = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in text if not unicodedata.combining(ch)).replace("'", "")


def normalise(name: str) -> str:
    """The lexicon key of a name: folded words joined by single spaces ("Brick-Red" -> "brick red")."""
    return " ".join(w for w in (_fold(m.group()) for m in _WORD.finditer(name)) if w)


def parse_hex(text: str) -> tuple[int, int, int] | None:
    """(r, g, b) of "#rrggbb" or "#rgb", or None."""
    text = text.strip().lstrip("#")
    if len(text) == 3:
        text = "".join(c * 2 for c in text)
    if len(text) != 6:
        return None
    try:
        value = int(text, 16)
    except ValueError:
        return None
    return (value >> 16) & 255, (value >> 8) & 255, value & 255


@dataclass(frozen=True)
class ColourSpan:
    start: int          # character span in the prompt
    end: int
    name: str           # normalised name, or the hex code as typed
    rgb: tuple[int, int, int]
    source: str         # basic | xkcd | css4 | color-name-list | hex


@functools.lru_cache(maxsize=1)
def lexicon() -> dict[str, tuple[tuple[int, int, int], str]]:
    """normalised name -> ((r, g, b), source), read once from the shipped table."""
    if not TABLE_PATH.is_file():
        raise FileNotFoundError(f"the colour-name table {TABLE_PATH} is missing; reinstall the "
                                "pack or rebuild it with 'python3 . build-colour-lexicon'")
    table = {}
    with gzip.open(TABLE_PATH, "rt", encoding="utf-8") as f:
        for line in f:
            name, hexv, source = line.rstrip("\n").split("\t")
            table[name] = (parse_hex(hexv), source)
    return table


@functools.lru_cache(maxsize=1)
def table_digest() -> str:
    """A short hash of the shipped table and the matching rules (caches of encoded captions
    depend on both)."""
    rules = " ".join(sorted(NOT_A_COLOUR_ALONE)).encode()
    return hashlib.sha1(TABLE_PATH.read_bytes() + rules).hexdigest()[:12]


def is_heldout_name(name: str) -> bool:
    """True for the fixed 15 % of the lexicon's non-basic names that training captions never
    use (False for anything else: basic words, hex codes, words outside the lexicon)."""
    key = normalise(name)
    if lexicon().get(key, (None, "basic"))[1] == "basic":
        return False
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) % 100 < HELDOUT_PERCENT


def names_a_colour(name: str, source: str) -> bool:
    """Whether a lexicon name counts as a colour in a prompt: basic words always; others unless
    every word of it usually names something else (NOT_A_COLOUR_ALONE) or is a number
    ("sky", "night sky", "the end"; "sky blue" counts)."""
    return source == "basic" or not all(w in NOT_A_COLOUR_ALONE or w.isdigit()
                                        for w in name.split())


def find_colours(prompt: str) -> list[ColourSpan]:
    """The colour phrases of a prompt, left to right, longest match first. A name made only of
    words that name other things ("night sky", "the end") is not a colour."""
    table = lexicon()
    spans = [ColourSpan(m.start(), m.end(), m.group().lower(), parse_hex(m.group()), "hex")
             for m in _HEX.finditer(prompt)]
    taken = [(s.start, s.end) for s in spans]
    words = [(m.start(), m.end(), _fold(m.group())) for m in _WORD.finditer(prompt)
             if not any(a <= m.start() < b for a, b in taken)]
    i = 0
    while i < len(words):
        for n in range(min(MAX_PHRASE_WORDS, len(words) - i), 0, -1):
            key = " ".join(w for _, _, w in words[i:i + n])
            hit = table.get(key)
            if hit is None or not names_a_colour(key, hit[1]):
                continue
            spans.append(ColourSpan(words[i][0], words[i + n - 1][1], key, hit[0], hit[1]))
            i += n
            break
        else:
            i += 1
    return sorted(spans, key=lambda s: s.start)


def phrase_colour(phrase: str) -> tuple[int, int, int] | None:
    """The colour a phrase names: its last colour span's ("silvery white" -> white), or None."""
    spans = find_colours(phrase)
    return spans[-1].rgb if spans else None


# ---------------------------------------------------------------- CIELAB

_M = np.array([[0.4124564, 0.3575761, 0.1804375],
               [0.2126729, 0.7151522, 0.0721750],
               [0.0193339, 0.1191920, 0.9503041]])
_WHITE = np.array([0.95047, 1.0, 1.08883])


def srgb_to_lab(rgb) -> np.ndarray:
    """sRGB in 0..255 [..., 3] -> CIELAB (D65) [..., 3]: L in 0..100, a and b about -128..127."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = lin @ _M.T / _WHITE
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


COLOUR_CHANNELS = 4   # L/100, a/100, b/100, 1 (this token names a colour)


def colour_code(rgb) -> np.ndarray:
    """float32 [4]: the colour channel of a token inside a phrase naming ``rgb``."""
    lab = srgb_to_lab(rgb)
    return np.array([lab[0] / 100, lab[1] / 100, lab[2] / 100, 1.0], dtype=np.float32)


def token_colours(prompt: str, offsets) -> np.ndarray:
    """float32 [T, 4]: each token's colour channel, from the tokenizer's character ``offsets``
    [(start, end)] ((0, 0) for special tokens); zeros for tokens outside a colour phrase."""
    out = np.zeros((len(offsets), COLOUR_CHANNELS), dtype=np.float32)
    for span in find_colours(prompt):
        code = colour_code(span.rgb)
        for t, (a, b) in enumerate(offsets):
            if b > a and a < span.end and b > span.start:
                out[t] = code
    return out
