"""Captioned image folders in the format artists already use for other trainers.

A folder (searched recursively) holds images with a caption file beside each: ``a.png`` +
``a.txt``. A caption file may hold several captions, one per line; blank lines are ignored.
Hidden files and folders (names starting with ".") are not read.

Images are centre-cropped to a square, resized with Lanczos and converted to RGB (transparent
pixels are composited over white, 16-bit and float images are scaled to 8 bits, EXIF rotation is
applied). Images without a usable caption and files that cannot be decoded are skipped with a
warning that names the file, and are listed under "skipped" in the result.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

__all__ = ["CAPTION_EXTENSION", "IMAGE_EXTENSIONS", "find_images", "load_image",
           "load_image_folder", "read_captions"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CAPTION_EXTENSION = ".txt"

_LOG = logging.getLogger("PromptGAN.data")


def find_images(root: Path) -> list[Path]:
    """Image files under root, recursively, in a stable (sorted) order, hidden ones left out."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(Path(dirpath) / name)
    return found


def read_captions(image_path: Path) -> list[str]:
    """The non-blank lines of the caption file beside an image ([] if missing or empty)."""
    path = image_path.with_suffix(CAPTION_EXTENSION)
    if not path.is_file():
        return []
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I") and arr.max() > 255 else 255.0
        if img.mode == "F":
            top = 1.0 if arr.max() <= 1.0 else 255.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def load_image(path, size: int) -> np.ndarray:
    """One image as uint8 [size, size, 3]: centre square crop, Lanczos resize, RGB."""
    with Image.open(path) as img:
        if img.format == "JPEG":
            img.draft(None, (2 * size, 2 * size))  # fast decode at a reduced scale
        img.load()
        try:
            img = ImageOps.exif_transpose(img)
        except Exception:  # noqa: BLE001 - a broken EXIF block: keep the pixels as stored
            img = img.copy()
    img = _to_rgb(img)
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    if side != size:
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.uint8)


def load_image_folder(path, size: int, *, log: logging.Logger = _LOG) -> dict:
    """Load every captioned image under path.

    Returns {"images": uint8 [n,size,size,3], "captions": list of lists of str (one list per
    image), "paths": list of str (relative to path), "skipped": {"missing_caption": [...],
    "unreadable": [...]}}. Raises FileNotFoundError if path does not exist, NotADirectoryError
    if it is a file, ValueError if no image is usable.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"image folder not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"not a folder: {root}")
    size = int(size)
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")

    images, captions, paths = [], [], []
    skipped: dict[str, list[str]] = {"missing_caption": [], "unreadable": []}
    candidates = find_images(root)
    for file in candidates:
        rel = str(file.relative_to(root))
        caps = read_captions(file)
        if not caps:
            log.warning("PromptGAN: skipping %s: no caption file %s (or it is empty)",
                        file, file.with_suffix(CAPTION_EXTENSION).name)
            skipped["missing_caption"].append(rel)
            continue
        try:
            arr = load_image(file, size)
        except Exception as exc:  # noqa: BLE001 - decoders raise many types: all mean unreadable
            log.warning("PromptGAN: skipping %s: cannot read the image (%s)", file, exc)
            skipped["unreadable"].append(rel)
            continue
        images.append(arr)
        captions.append(caps)
        paths.append(rel)

    n_skipped = sum(len(v) for v in skipped.values())
    if n_skipped:
        log.warning("PromptGAN: %s: loaded %d images, skipped %d (%d without a caption, "
                    "%d unreadable)", root, len(images), n_skipped,
                    len(skipped["missing_caption"]), len(skipped["unreadable"]))
    if not images:
        others = sum(1 for p in root.rglob("*") if p.is_file()) - len(candidates)
        raise ValueError(
            f"no usable captioned images in {root}: found {len(candidates)} image files "
            f"({', '.join(IMAGE_EXTENSIONS)}), {len(skipped['missing_caption'])} without a "
            f"caption file, {len(skipped['unreadable'])} unreadable, and {others} other files; "
            f"each image needs a caption file beside it (a.png + a.txt)")
    return {"images": np.stack(images), "captions": captions, "paths": paths, "skipped": skipped}
