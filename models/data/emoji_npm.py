"""A captioned image folder from the npm emoji packages, for trying `train-gan` on real drawings.

    npm install --prefix /tmp/emoji emoji-datasource-google@16.0.0 emojibase-data@17.0.0
    python3 . prepare-emoji-data --npm /tmp/emoji/node_modules --out /tmp/emoji/folder
    python3 . train-gan --data folder:/tmp/emoji/folder --out runs/emoji

Each 64 px PNG of emoji-datasource-google (the Noto Emoji drawings, Apache-2.0; the package's
data MIT) gets a caption file: its emojibase label ("sunflower"), "an emoji of ...", "... emoji",
and the label with up to four emojibase keywords ("sunflower, outdoors, plant"). A LICENSES.txt in
the output folder records where the images and captions come from.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

SOURCES = """Images: emoji-datasource-google (npm) img/google/64, the Noto Emoji drawings by Google,
Apache License 2.0 (https://github.com/googlefonts/noto-emoji/blob/main/LICENSE).
Emoji data: emoji-datasource (npm), MIT License, Copyright (c) 2013 Cal Henderson.
Labels and keywords: emojibase-data (npm), MIT License.
"""


def captions(label: str, name: str, tags: list[str]) -> list[str]:
    caps = {label, f"an emoji of {label}", f"{label} emoji"}
    extra = [t for t in tags if t not in label][:4]
    if extra:
        caps.add(f"{label}, {', '.join(extra)}")
    if name and name != label:
        caps.add(name)
    return sorted(caps)


def build(npm: Path, out: Path) -> int:
    data = json.loads((npm / "emoji-datasource-google" / "emoji.json").read_text())
    images = npm / "emoji-datasource-google" / "img" / "google" / "64"
    labels = {e["hexcode"].upper(): e
              for e in json.loads((npm / "emojibase-data" / "en" / "data.json").read_text())}
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for e in data:
        src = images / e["image"]
        if not e.get("has_img_google") or not src.is_file():
            continue
        key = e["unified"].upper()
        base = labels.get(key) or labels.get(key.replace("-FE0F", "")) or {}
        name = (e.get("name") or e["short_name"]).lower()
        stem = Path(e["image"]).stem
        shutil.copy(src, out / f"{stem}.png")
        (out / f"{stem}.txt").write_text("\n".join(captions(base.get("label", name), name,
                                                            base.get("tags", []))) + "\n")
        n += 1
    (out / "LICENSES.txt").write_text(SOURCES)
    return n


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="prepare-emoji-data", description=__doc__.split("\n\n")[0])
    p.add_argument("--npm", required=True, help="node_modules holding the two npm packages")
    p.add_argument("--out", required=True, help="the image folder to write")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    for pkg in ("emoji-datasource-google", "emojibase-data"):
        if not (Path(args.npm) / pkg).is_dir():
            raise ValueError(f"--npm {args.npm}: no {pkg} in it; npm install it first (see --help)")
    print(f"wrote {build(Path(args.npm), Path(args.out))} captioned images to {args.out}")
    return 0
