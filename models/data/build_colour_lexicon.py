"""Rebuild ``models/lexicon/colour_names.tsv.gz``, the colour-name table the pack ships.

Sources, in priority order (a name keeps the colour of the first source that has it):
- ``basic``: the basic colour words with the procedural renderer's own palette colours, so a
  basic word means exactly what the training renders drew for it;
- ``xkcd``: the 949 names of the XKCD colour survey (public domain), as matplotlib ships them;
- ``css4``: the 148 CSS named colours, as matplotlib ships them;
- ``color-name-list``: the npm package color-name-list (MIT, David Aerne), fetched from the npm
  registry with ``npm pack``; its licence is copied beside the table.

Names are stored normalised (``colour_lexicon.normalise``). Run: ``python3 . build-colour-lexicon``
(needs matplotlib and npm; nothing at run time needs either).
"""
from __future__ import annotations

import argparse
import csv
import gzip
import io
import subprocess
import tarfile
import tempfile
from pathlib import Path

from .. import colour_lexicon
from . import procedural

COLOR_NAME_LIST_VERSION = "14.29.0"
OUT_DIR = Path(__file__).resolve().parents[1] / "lexicon"


def basic_entries() -> list[tuple[str, str]]:
    """(name, hex) for the basic colour words, from the renderer's palettes."""
    def hexof(arr) -> str:
        r, g, b = (int(round(float(v))) for v in arr.reshape(3))
        return f"#{r:02x}{g:02x}{b:02x}"
    out = [(name, hexof(rgb)) for name, rgb in procedural.PETAL_PALETTE.items()]
    out += [("brown", hexof(procedural.CENTRE_PALETTE["brown"])),
            ("black", hexof(procedural.CENTRE_PALETTE["black"])),
            ("green", hexof(procedural.FLOWER_BACKGROUND_PALETTE["grass"])),
            ("cream", hexof(procedural.FLOWER_BACKGROUND_PALETTE["cream"])),
            ("grey", "#808080"), ("gray", "#808080")]
    return out


def matplotlib_entries() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    from matplotlib import colors
    xkcd = [(k.split(":", 1)[1], v) for k, v in colors.XKCD_COLORS.items()]
    css4 = sorted(colors.CSS4_COLORS.items())
    return xkcd, css4


def color_name_list_entries(version: str) -> tuple[list[tuple[str, str]], str]:
    """(name, hex) rows of color-name-list's dist/colornames.csv and its licence text."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", f"color-name-list@{version}", "--silent"], cwd=tmp,
                       check=True, capture_output=True)
        tarball = next(Path(tmp).glob("color-name-list-*.tgz"))
        with tarfile.open(tarball) as tar:
            rows = tar.extractfile("package/dist/colornames.csv").read().decode("utf-8")
            licence = tar.extractfile("package/LICENSE").read().decode("utf-8")
    reader = csv.reader(io.StringIO(rows))
    next(reader)  # header: name,hex
    return [(name, hexv) for name, hexv in reader], licence


def build(out_dir: Path = OUT_DIR, version: str = COLOR_NAME_LIST_VERSION) -> dict[str, int]:
    xkcd, css4 = matplotlib_entries()
    cnl, licence = color_name_list_entries(version)
    table: dict[str, tuple[str, str]] = {}
    counts: dict[str, int] = {}
    for source, rows in (("basic", basic_entries()), ("xkcd", xkcd), ("css4", css4),
                         ("color-name-list", cnl)):
        for name, hexv in rows:
            key = colour_lexicon.normalise(name)
            if not key or key in table or colour_lexicon.parse_hex(hexv) is None:
                continue
            table[key] = (hexv.lower(), source)
            counts[source] = counts.get(source, 0) + 1
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"{name}\t{hexv}\t{source}" for name, (hexv, source) in table.items()]
    # mtime 0: the same sources give a byte-identical file
    with open(out_dir / colour_lexicon.TABLE_NAME, "wb") as raw, \
            gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(("\n".join(lines) + "\n").encode("utf-8"))
    (out_dir / "LICENSE-color-name-list.txt").write_text(licence, encoding="utf-8")
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="build-colour-lexicon", description=__doc__.split("\n")[0])
    p.add_argument("--out-dir", default=str(OUT_DIR))
    p.add_argument("--color-name-list-version", default=COLOR_NAME_LIST_VERSION)
    args = p.parse_args(argv)
    counts = build(Path(args.out_dir), args.color_name_list_version)
    print(", ".join(f"{k}: {v}" for k, v in counts.items()), f"-> {args.out_dir}")
    return 0
