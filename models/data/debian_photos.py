"""Real photographs for training and evaluating Enhance, from Debian's wallpaper packages.

    python3 . prepare-enhance-data --out ~/promptgan-data/photos
    python3 . train-enhance --photos ~/promptgan-data/photos ...
    python3 . evaluate-enhance --photos ~/promptgan-data/photos

``apt-get download`` fetches each package (no root needed, nothing is installed), ``dpkg-deb -x``
unpacks it into a temporary folder, and the files listed in ``PHOTOS`` are copied to
``OUT/train`` or ``OUT/heldout``. ``PHOTOS`` lists only files that were looked at and are
photographs (the packages also hold drawings, renders and gradients). Each file is checked for the
resolution at which it really carries detail: an upscaled picture (or a soft, smooth one) survives
a halving and re-enlargement almost unchanged, a sharp photograph does not (``detail_db``). The
manifest's ``scale`` is the largest of 1, 1/2, 1/4 at which the picture passes ``MAX_DETAIL_DB``;
training and evaluation read the photo at that scale (a file that fails even at 1/4 is refused).
``OUT/manifest.json`` records each file's package, version, path inside the package, SHA-256,
size, licence, detail figure, scale and split; each package's copyright file is
copied to ``OUT/licenses``. The split is fixed by a hash of the name, so it is the same on every
machine: ``HELD_OUT_COUNT`` photos of the wallpaper packages (``SPLIT_PACKAGES``) are held out, the
other packages only train, and training never reads ``OUT/heldout``.

mate-backgrounds and ukui-wallpapers are never used: an independent evaluation uses them.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

# package -> files (paths inside the package) that are photographs
PHOTOS = {
    "plasma-workspace-wallpapers": [
        f"usr/share/wallpapers/{name}/contents/images/{size}"
        for name, size in (
            ("BytheWater", "2560x1440.jpg"), ("ColdRipple", "2560x1440.jpg"),
            ("ColorfulCups", "2560x1600.jpg"), ("DarkestHour", "2560x1440.jpg"),
            ("EveningGlow", "2560x1440.jpg"), ("FallenLeaf", "2560x1440.jpg"),
            ("Grey", "2560x1440.jpg"), ("Kite", "2560x1440.jpg"),
            ("OneStandsOut", "2560x1440.jpg"), ("Path", "2560x1440.jpg"),
            ("Volna", "5120x2880.jpg"), ("summer_1am", "2560x1440.jpg"))],
    "lomiri-wallpapers-16.04": [
        f"usr/share/backgrounds/{name}.jpg" for name in (
            "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace",
            "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi",
            "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi",
            "greentock_by_Peter_Nerlich", "life_by_Aitzol_Berasategi",
            "picosdeeuropa_by_Aitzol_Berasategi", "seeding_by_Clements_Engelhardt",
            "sunset_by_Aitzol_Berasategi")],
    "lomiri-wallpapers-20.04": ["usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg"],
    # training only (below): nature and texture photos, puzzle photos, OpenCV's sample scenes
    "tuxpaint-data": [
        f"usr/share/tuxpaint/templates/{name}.jpg" for name in (
            "burnt_bark", "cliff", "corn_maze", "jellyfish", "lighthouse", "mossy_log",
            "mudstone", "ocean_splash", "ocean_waves", "redwoods_above", "rocks", "sheep",
            "spiders_web", "sun_behind_clouds", "sun_behind_leaves")],
    "palapeli-data": [
        f"usr/share/palapeli/collection/{name}.jpg" for name in (
            "castle-maintenon", "cincinnati-bridge", "citrus-fruits", "european-honey-bee",
            "panther-chameleon-female")],
    "puzzle-jigsaw": ["usr/share/puzzle-jigsaw/samples/cat-animal-cat-portrait-mackerel.jpg",
                      "usr/share/puzzle-jigsaw/samples/pexels-photo-302304.jpeg"],
    "sddm-theme-maldives": ["usr/share/sddm/themes/maldives/background.jpg"],
    "opencv-doc": [
        *(f"usr/share/doc/opencv-doc/examples/data/{name}" for name in (
            "aloeL.jpg", "building.jpg", "ela_original.jpg", "graf1.png")),
        *(f"usr/share/doc/opencv-doc/examples/text/scenetext0{i}.jpg" for i in range(1, 6))],
}
# the packages whose photos are split between training and the held-out set (by name hash);
# the others only ever train, so adding a package never moves a photo into or out of evaluation
SPLIT_PACKAGES = ("plasma-workspace-wallpapers", "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04")
NEVER = ("mate-backgrounds", "ukui-wallpapers")    # the independent evaluation's sources
HELD_OUT_COUNT = 16
MAX_DETAIL_DB = 40.0   # photos here: 25-41 dB; a 4x bicubic upscale of a photo: 41-48 dB
LICENCES = {   # what each package's debian/copyright says about its images
    "plasma-workspace-wallpapers": "LGPL-3.0 / CC-BY-SA (see licenses/plasma-workspace-wallpapers)",
    "lomiri-wallpapers-16.04": "CC-BY-SA-3.0 (see licenses/lomiri-wallpapers-16.04)",
    "lomiri-wallpapers-20.04": "CC-BY-SA-3.0 (see licenses/lomiri-wallpapers-20.04)",
    "tuxpaint-data": "GPL-2+, Bill Kendrick",
    "palapeli-data": "GPL-2+",
    "puzzle-jigsaw": "CC0-1.0 (Pexels)",
    "sddm-theme-maldives": "CC-BY-3.0, Nevit Dilmen",
    "opencv-doc": "Apache-2.0 AND BSD-3-Clause",
}


def photo_name(package: str, path: str) -> str:
    """A readable unique name: the wallpaper's folder for Plasma, the file stem otherwise."""
    parts = Path(path).parts
    stem = parts[3] if package == "plasma-workspace-wallpapers" else Path(path).stem
    prefix = package.split("-")[0] if package in SPLIT_PACKAGES else package
    return f"{prefix}-{stem}"


def held_out_names(names: list[str], count: int = HELD_OUT_COUNT) -> set[str]:
    """The ``count`` names first in SHA-1 order: a split no one chose by looking."""
    return set(sorted(names, key=lambda n: hashlib.sha1(n.encode()).hexdigest())[:count])


def detail_db(im) -> float:
    """PSNR (dB) between a PIL picture and itself halved and re-enlarged (bicubic): 25-40 dB for
    sharp photographs, more for upscaled or very smooth pictures (scikit-image's photos 29-34 dB
    as they are; enlarged 4x bicubically, 41-48 dB)."""
    w, h = im.size[0] // 2 * 2, im.size[1] // 2 * 2
    im = im.crop((0, 0, w, h))
    back = im.resize((w // 2, h // 2), Image.BICUBIC).resize((w, h), Image.BICUBIC)
    mse = np.mean((np.asarray(im, np.float64) - np.asarray(back, np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def detail_scale(im) -> tuple[float, float]:
    """(scale, detail_db there): the largest of 1, 1/2, 1/4 at which ``im`` carries detail, or
    (0, figure at 1/4) when it does not even there."""
    for scale in (1.0, 0.5, 0.25):
        x = im if scale == 1 else im.resize((round(im.size[0] * scale), round(im.size[1] * scale)),
                                            Image.BICUBIC, reducing_gap=3.0)
        detail = detail_db(x)
        if detail <= MAX_DETAIL_DB:
            return scale, detail
    return 0.0, detail


def download(package: str, debs: Path) -> Path:
    """The package's .deb in ``debs`` (downloaded with apt-get unless already there)."""
    if package in NEVER:
        raise ValueError(f"{package} is kept for an independent evaluation; it is never used here")
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        run = subprocess.run(["apt-get", "download", package], cwd=debs, capture_output=True,
                             text=True)
        found = sorted(debs.glob(f"{package}_*.deb"))
        if not found:
            raise OSError(f"apt-get download {package} failed: {run.stderr.strip()[-300:]}")
    return found[-1]


def build(out: Path, debs: Path) -> list[dict]:
    for split in ("train", "heldout"):
        (out / split).mkdir(parents=True, exist_ok=True)
    (out / "licenses").mkdir(exist_ok=True)
    records, files = [], {}
    for package, paths in PHOTOS.items():
        deb = download(package, debs)
        version = deb.name.split("_")[1].replace("%3a", ":")
        unpacked = out / "unpacked" / package
        if not unpacked.is_dir():
            with tempfile.TemporaryDirectory(dir=out) as tmp:
                subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
                unpacked.parent.mkdir(exist_ok=True)
                Path(tmp).rename(unpacked)
        copyright_file = unpacked / "usr/share/doc" / package / "copyright"
        if copyright_file.is_file():
            shutil.copy(copyright_file, out / "licenses" / package)
        for path in paths:
            src = unpacked / path
            if not src.is_file():
                print(f"  {package}: {path} is not in version {version}, skipped", file=sys.stderr)
                continue
            with Image.open(src) as im:
                rgb = im.convert("RGB")
            scale, detail = detail_scale(rgb)
            rec = {"name": photo_name(package, path), "package": package, "version": version,
                   "path": path, "sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
                   "width": rgb.size[0], "height": rgb.size[1],
                   "licence": LICENCES.get(package, f"see licenses/{package}"),
                   "detail_db": round(detail, 2), "scale": scale, "split": "refused"}
            if scale == 0:
                print(f"  {rec['name']}: {detail:.1f} dB after halving even at 1/4 size, no real "
                      "detail; refused", file=sys.stderr)
            records.append(rec)
            files[rec["name"]] = src
    usable = [r["name"] for r in records if r["scale"] > 0 and r["package"] in SPLIT_PACKAGES]
    held = held_out_names(usable)
    for rec in records:
        if rec["scale"] > 0:
            rec["split"] = "heldout" if rec["name"] in held else "train"
            src = files[rec["name"]]
            shutil.copy(src, out / rec["split"] / f"{rec['name']}{src.suffix.lower()}")
    (out / "manifest.json").write_text(json.dumps(records, indent=1) + "\n")
    return records


def read_manifest(folder: str | Path, split: str) -> list[tuple[Path, float]]:
    """(file, scale to read it at) for ``split`` ("train" or "heldout")."""
    folder = Path(folder).expanduser()
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        raise ValueError(f"{folder}: no manifest.json; make the folder with prepare-enhance-data")
    out = []
    for rec in json.loads(manifest.read_text()):
        if rec["split"] != split:
            continue
        found = sorted((folder / split).glob(rec["name"] + ".*"))
        if not found:
            raise ValueError(f"{folder}: {rec['name']} is in manifest.json but not in {split}/; "
                             "run prepare-enhance-data again")
        out.append((found[0], float(rec.get("scale", 1.0))))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="prepare-enhance-data", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="the folder to write (train/, heldout/, manifest)")
    p.add_argument("--debs", default="", help="where the .deb files go (default: OUT/debs); "
                                              "files already there are reused")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.out).expanduser()
    debs = Path(args.debs).expanduser() if args.debs else out / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    records = build(out, debs)
    counts = {s: sum(r["split"] == s for r in records) for s in ("train", "heldout", "refused")}
    mp = sum(r["width"] * r["height"] * r["scale"] ** 2 for r in records
             if r["split"] == "train") / 1e6
    print(f"{out}: {counts['train']} training photos ({mp:.0f} MP at their detail scale), "
          f"{counts['heldout']} held out, {counts['refused']} refused")
    return 0
