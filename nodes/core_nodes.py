"""The three core ComfyUI nodes the headless runner provides: SaveImage, PreviewImage and
LoadImage. They behave like ComfyUI's own (file naming, PNG metadata with the prompt and the
workflow, EXIF rotation, the alpha channel as an inverted mask) so workflows run unchanged."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo


def _to_uint8_batch(images):
    """IMAGE [B,H,W,C] (or [H,W,C]) -> uint8 arrays, made one image at a time as they are
    iterated (a batch of thousands never needs a second full-size copy). The shape is checked
    at once, before anything is written."""
    t = images.detach()
    if t.dim() == 3:
        t = t[None]
    if t.dim() != 4 or t.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an IMAGE tensor [B,H,W,3], got shape {tuple(t.shape)}")

    def arrays():
        for image in t:   # truncation to uint8, as ComfyUI does
            a = np.clip(255.0 * image.float().cpu().numpy(), 0, 255).astype(np.uint8)
            yield a[..., 0] if a.shape[-1] == 1 else a

    return arrays()


class SaveImage:
    """Write IMAGE as ``{prefix}_{counter:05}_.png`` with the prompt (and workflow) embedded."""

    output_dir = "output"
    subfolder = ""
    kind = "output"
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "image"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",),
                             "filename_prefix": ("STRING", {"default": "ComfyUI"})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def save_images(self, images, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        out_root = Path(self.output_dir).resolve()
        root = (out_root / self.subfolder).resolve()
        folder = (root / filename_prefix).parent.resolve()
        name = Path(filename_prefix).name
        if folder != root and root not in folder.parents:
            raise ValueError(f"filename_prefix {filename_prefix!r} leaves the output folder")
        arrays = _to_uint8_batch(images)
        folder.mkdir(parents=True, exist_ok=True)
        pattern = re.compile(re.escape(name) + r"_(\d+)_\.png$")
        used = [int(m.group(1)) for p in folder.iterdir() if (m := pattern.match(p.name))]
        counter = max(used, default=0) + 1
        info = PngInfo()
        if prompt is not None:
            info.add_text("prompt", json.dumps(prompt))
        for key, value in (extra_pnginfo or {}).items():
            info.add_text(key, json.dumps(value))
        results = []
        for array in arrays:
            filename = f"{name}_{counter:05}_.png"
            Image.fromarray(array).save(folder / filename, pnginfo=info, compress_level=4)
            sub = folder.relative_to(out_root).as_posix()
            results.append({"filename": filename, "type": self.kind,
                            "subfolder": "" if sub == "." else sub})
            counter += 1
        return {"ui": {"images": results}}


class PreviewImage(SaveImage):
    """Like SaveImage, into the output folder's ``preview`` subfolder."""

    subfolder = "preview"
    kind = "temp"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def save_images(self, images, prompt=None, extra_pnginfo=None):
        return super().save_images(images, "PromptGAN_preview", prompt, extra_pnginfo)


EXAMPLE_INPUTS = Path(__file__).resolve().parents[1] / "workflows" / "inputs"


class LoadImage:
    """Load an image from the input folder: IMAGE [1,H,W,3] and MASK [1,H,W] = 1 - alpha."""

    input_dir = str(EXAMPLE_INPUTS)
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"
    CATEGORY = "image"

    @classmethod
    def INPUT_TYPES(cls):
        folder = Path(cls.input_dir)
        files = sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
        return {"required": {"image": (files, {"image_upload": True})}}

    @classmethod
    def _path(cls, image):
        base = Path(cls.input_dir).resolve()
        path = (base / str(image).removesuffix(" [input]")).resolve()
        return path if base in path.parents and path.is_file() else None

    @classmethod
    def VALIDATE_INPUTS(cls, image):
        if cls._path(image) is None:
            return f"image {image!r} is not a file in the input folder {cls.input_dir}"
        return True

    def load_image(self, image):
        with Image.open(self._path(image)) as img:  # first frame only
            frame = ImageOps.exif_transpose(img)
        if frame.mode == "I":
            frame = frame.point(lambda v: v * (1 / 255))
        rgb = np.asarray(frame.convert("RGB"), dtype=np.float32) / 255.0
        alpha = None
        if "A" in frame.getbands():
            alpha = frame.getchannel("A")
        elif frame.mode == "P" and "transparency" in frame.info:
            alpha = frame.convert("RGBA").getchannel("A")
        if alpha is None:
            mask = torch.zeros((1, 64, 64), dtype=torch.float32)
        else:
            mask = 1.0 - torch.from_numpy(np.asarray(alpha, dtype=np.float32) / 255.0)[None]
        return torch.from_numpy(rgb)[None], mask
