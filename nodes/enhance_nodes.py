"""Enhance nodes: text-aware restoration and super-resolution of any IMAGE.

Layout: ComfyUI IMAGE is [B, H, W, C] float 0..1 on the CPU; the network takes [B, C, H, W]
(``movedim(-1, 1)``, which is channels_last in memory, the fast layout for oneDNN).

Channel handling (documented in the tooltips): 3 channels as is; 1 channel (greyscale) is
repeated to RGB and the output is RGB; 4 channels (RGBA) enhance the RGB and resize the alpha
bicubically to the output size, so the output keeps 4 channels. NaN or infinite values are an
error that names the input. Any image size works: tiles bound the memory, a 1x1 image included.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..models.enhance import tiling
from ..models.enhance.model import KIND as ENHANCER_KIND
from ..models.enhance.model import load_enhancer
from ..models.fast_paths import enhance_autocast
from ..models.memory import gib, require_memory
from ..models.model_cache import ModelCache
from ..models.text_encoder import DEFAULT_ENCODER_ID, encode_prompts
from ..models.threads import threads_for_this_call
from . import runtime

if TYPE_CHECKING:
    from ..models.enhance.model import EnhancerModel

log = logging.getLogger("PromptGAN")

BUNDLED_SUFFIX = " (bundled)"
_cache = ModelCache(2)


def bundled_names() -> list[str]:
    d = runtime.BUNDLED_WEIGHTS_DIR
    if not d.is_dir():
        return []
    return [p.stem + BUNDLED_SUFFIX for p in sorted(d.glob("enhance_*.safetensors"))]


def resolve(name: str) -> Path:
    if name.endswith(BUNDLED_SUFFIX):
        stem = name[:-len(BUNDLED_SUFFIX)]
        path = runtime.BUNDLED_WEIGHTS_DIR / f"{stem}.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"bundled enhancer '{stem}' is missing from "
                                    f"{runtime.BUNDLED_WEIGHTS_DIR}; reinstall the pack")
        return path
    return runtime.resolve_model_path(runtime.MODEL_FOLDER, name)


def load_model(name: str):
    """The enhancer a dropdown name points to (models.enhance.model.EnhancerModel), cached."""
    return _cache.get(resolve(name), lambda path: load_enhancer(path, name))


class PromptGAN_EnhancerLoader:
    DESCRIPTION = ("Loads a PromptGAN Enhance network (text-aware restoration and super-resolution) "
                   "from the bundled weights or from ComfyUI's models/promptgan folder.")
    CATEGORY = "PromptGAN/enhance"
    FUNCTION = "load"
    RETURN_TYPES = ("PROMPTGAN_ENHANCER",)
    RETURN_NAMES = ("enhancer",)
    OUTPUT_TOOLTIPS = ("The loaded enhancer: its scale and the text encoder it was trained with "
                       "travel with it.",)

    @classmethod
    def INPUT_TYPES(cls):
        names = bundled_names() + runtime.folder_files(runtime.MODEL_FOLDER, kind=ENHANCER_KIND)
        return {"required": {
            "model_name": (names or ["enhance_x4" + BUNDLED_SUFFIX], {
                "tooltip": "Enhancer weights (.safetensors): the bundled x4 model, or a file you "
                           "trained with `train-enhance` placed in models/promptgan."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, model_name):
        if model_name not in bundled_names() and model_name not in runtime.folder_files(
                runtime.MODEL_FOLDER, kind=ENHANCER_KIND):
            why = runtime.why_not_listed(runtime.MODEL_FOLDER, model_name, ENHANCER_KIND,
                                         "PromptGAN Enhancer Loader")
            return f"model_name: {why}"
        return True

    def load(self, model_name):
        return (load_model(model_name),)


def _encode_instruction(model: EnhancerModel, instruction: str, embeds) -> torch.Tensor | None:
    """Sentence embedding [N, D] for the network, or None for 'fix whatever is wrong'."""
    if embeds is not None:
        if embeds.encoder_id != model.encoder_id:
            raise ValueError(f"PromptGAN Enhance: the embeds come from text encoder "
                             f"'{embeds.encoder_id}', but enhancer '{model.name}' was trained with "
                             f"'{model.encoder_id}'. Encode the instruction with '{model.encoder_id}' "
                             "or leave 'embeds' unconnected and type the instruction.")
        sentence = embeds.sentence.float()
        if sentence.shape[1] != model.net.cfg.text_dim:
            raise ValueError(f"PromptGAN Enhance: embeds have {sentence.shape[1]} dims, the "
                             f"enhancer expects {model.net.cfg.text_dim}")
        return sentence
    text = (instruction or "").strip()
    if not text:
        return None
    if model.encoder_id and model.encoder_id != DEFAULT_ENCODER_ID:
        raise ValueError(f"PromptGAN Enhance: enhancer '{model.name}' was trained with text encoder "
                         f"'{model.encoder_id}', not the bundled '{DEFAULT_ENCODER_ID}'; connect "
                         f"'embeds' from a TextEncode node using '{model.encoder_id}'.")
    return encode_prompts([text]).sentence


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False,
                         antialias=shrink).clamp_(0, 1)


def _require_memory(enhancer: EnhancerModel, b: int, h: int, w: int, channels: int, tile: int,
                    resize_to: tuple[int, int] | None, scale: int | None = None) -> None:
    """Refuse, before anything is allocated, an Enhance whose output, input copy and one tile's
    work do not fit in free memory (``scale``: the enlargement, when another model does it)."""
    s = scale or enhancer.scale
    in_bytes = 4 * b * h * w * 4 * (2 if scale else 1)     # a restored copy before enlarging
    out_bytes = 4 * b * channels * h * s * w * s
    final_bytes = 4 * b * channels * resize_to[0] * resize_to[1] if resize_to else 0
    work = tiling.work_bytes(enhancer.net, b, h, w, tile)
    parts = f"output {gib(out_bytes)}" + (f", resized copy {gib(final_bytes)}" if resize_to else "")
    fixes = ["use a smaller image or batch"]
    if tile <= 0 or tile > 512:
        fixes.append("a smaller tile_size")
    if resize_to:
        fixes.append("target_scale 0")
    require_memory(in_bytes + out_bytes + final_bytes + work,
                   f"PromptGAN Enhance of {b} image(s) of {w}x{h} to {w * s}x{h * s} ({parts}, "
                   f"input {gib(in_bytes)}, tiles {gib(work)})", " or ".join(fixes))


def _upscale_model_scale(model) -> int:
    """The whole-number enlargement of an UPSCALE_MODEL (spandrel's ``scale``), or a clear error."""
    scale = getattr(model, "scale", None)
    if not callable(model) or not isinstance(scale, (int, float)) or scale < 1 or scale != int(scale):
        raise ValueError("PromptGAN Enhance: 'upscale_model' must come from ComfyUI's Load Upscale "
                         f"Model (an image model with a whole-number scale); got "
                         f"{type(model).__name__} with scale {scale!r}")
    return int(scale)


class PromptGAN_Enhance:
    DESCRIPTION = ("Restores and upscales an image with a small text-conditioned network. The "
                   "instruction says what to fix ('remove the noise', 'sharpen this blurry photo', "
                   "'brighten this dark picture', 'clean up the jpeg artifacts', 'fix the colour "
                   "cast'); degradations it does not name are left alone. An empty instruction "
                   "restores blur, noise and JPEG damage and keeps the tone and colour. With an "
                   "upscale model connected, it restores at the input's size and that model "
                   "enlarges. Runs in tiles: memory is the output image plus one tile's work.")
    CATEGORY = "PromptGAN/enhance"
    FUNCTION = "enhance"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("The enhanced image at the model's scale (or at target_scale). RGB for RGB "
                       "and greyscale input; RGBA input keeps its alpha, resized bicubically.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "Image(s) to enhance, 0..1. Greyscale becomes RGB; "
                                               "an alpha channel is kept and resized, not enhanced."}),
                "enhancer": ("PROMPTGAN_ENHANCER", {"tooltip": "From PromptGAN Enhancer Loader."}),
                "instruction": ("STRING", {
                    "default": "", "multiline": False,
                    "tooltip": "What to fix, in words. Empty = restore blur, noise and JPEG "
                               "damage, keeping tone and colour; naming the fix when you know it "
                               "does a little better. Naming only some problems leaves the "
                               "others in place."}),
                "tile_size": ("INT", {
                    "default": 256, "min": 0, "max": 8192, "step": 16,
                    "tooltip": "Tile size in input pixels (0 = whole image at once). Memory is the "
                               "output image plus one tile's work; smaller tiles use less. A "
                               "request that cannot fit is refused before it starts, and the tile "
                               "halves by itself on out-of-memory."}),
                "strength": ("FLOAT", {
                    "default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05,
                    "tooltip": "1 = the network's output; 0 = the input enlarged bicubically; "
                               "in between blends the two."}),
            },
            "optional": {
                "embeds": ("PROMPTGAN_EMBEDS", {
                    "tooltip": "Instruction embeddings from PromptGAN TextEncode; when connected they "
                               "replace the instruction text. Their encoder must be the one the "
                               "enhancer was trained with. One prompt for all images, or one per image."}),
                "target_scale": ("FLOAT", {
                    "default": 0.0, "min": 0.0, "max": 16.0, "step": 0.25,
                    "tooltip": "0 = the model's native scale (x4 for the bundled model; the upscale "
                               "model's when one is connected). Otherwise the output is resized "
                               "to this factor of the input after enhancing."}),
                "upscale_model": ("UPSCALE_MODEL", {
                    "tooltip": "An upscaler from ComfyUI's Load Upscale Model (Real-ESRGAN, "
                               "SwinIR, ...). When connected, PromptGAN restores the image at its "
                               "own size as the instruction says, and this model does the "
                               "enlargement, at its own scale."}),
            },
        }

    def enhance(self, image, enhancer, instruction="", tile_size=256, strength=1.0, embeds=None,
                target_scale=0.0, upscale_model=None):
        tile_size, strength, target_scale = runtime.checked_numbers(
            type(self), tile_size=tile_size, strength=strength, target_scale=target_scale)
        if not isinstance(image, torch.Tensor) or image.dim() != 4:
            raise ValueError(f"PromptGAN Enhance: input 'image' must be an IMAGE [batch, height, "
                             f"width, channels], got {getattr(image, 'shape', type(image))}")
        b, h, w, c = image.shape
        if c not in (1, 3, 4):
            raise ValueError(f"PromptGAN Enhance: input 'image' has {c} channels; expected 1 "
                             "(greyscale), 3 (RGB) or 4 (RGBA)")
        if b == 0 or h == 0 or w == 0:
            raise ValueError(f"PromptGAN Enhance: input 'image' is empty, shape {tuple(image.shape)}")
        s = enhancer.scale
        if upscale_model is not None:
            s = _upscale_model_scale(upscale_model)
        channels = 4 if c == 4 else 3
        resize_to = None
        if target_scale and abs(target_scale - s) > 1e-6:
            resize_to = (max(1, round(h * target_scale)), max(1, round(w * target_scale)))
        _require_memory(enhancer, b, h, w, channels, int(tile_size), resize_to,
                        s if upscale_model is not None else None)
        if not torch.isfinite(image).all():
            raise ValueError("PromptGAN Enhance: input 'image' contains NaN or infinite values; "
                             "check the node that produced it")
        image = image.float().cpu().clamp(0, 1)
        alpha = image[..., 3:4].movedim(-1, 1) if c == 4 else None      # [B, 1, H, W]
        rgb = image[..., :3] if c != 1 else image.expand(-1, -1, -1, 3)
        x = rgb.movedim(-1, 1)                                           # [B, 3, H, W]

        text = _encode_instruction(enhancer, instruction, embeds)
        if text is not None and text.shape[0] not in (1, b):
            raise ValueError(f"PromptGAN Enhance: 'embeds' holds {text.shape[0]} prompts for "
                             f"{b} images; give one prompt, or one per image")

        device = runtime.get_device()
        net = enhancer.on(device)
        runtime.load_models(enhancer, [net], device)
        autocast = enhance_autocast(net, device)
        tile = int(tile_size)
        tile_args = {"tile": tile, "overlap": 32, "check_interrupt": runtime.check_interrupt,
                     "autocast_dtype": autocast}
        # the output is assembled tile by tile inside the IMAGE tensor ComfyUI receives
        result = torch.zeros(b, h * s, w * s, channels)                 # [B, sH, sW, C]
        n = tiling.count_tiles(h, w, tile, 32)
        bar = runtime.progress_bar(n if upscale_model is None else 2 * n)
        with threads_for_this_call(device):
            if upscale_model is None:
                tiling.enhance_image(net, x, text, progress=bar, strength=strength, alpha=alpha,
                                     out=result.movedim(-1, 1), **tile_args)
            else:
                x = tiling.restore_at_input_size(net, x, text, strength=strength,
                                                 progress=lambda i, _t: bar(i, 2 * n), **tile_args)
                moved = hasattr(upscale_model, "to")
                if moved:
                    upscale_model.to(device)
                try:
                    tiling.upscale_with_model(upscale_model, s, x, device=device, alpha=alpha,
                                              out=result.movedim(-1, 1),
                                              progress=lambda i, _t: bar(n + i, 2 * n),
                                              **tile_args)
                finally:
                    if moved and device.type != "cpu":
                        upscale_model.to("cpu")
        if resize_to is not None:
            result = _resize(result.movedim(-1, 1), resize_to).movedim(1, -1).contiguous()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return (result.to(runtime.intermediate_device()),)


NODE_CLASS_MAPPINGS = {
    "PromptGAN_EnhancerLoader": PromptGAN_EnhancerLoader,
    "PromptGAN_Enhance": PromptGAN_Enhance,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "PromptGAN_EnhancerLoader": "PromptGAN Enhancer Loader",
    "PromptGAN_Enhance": "PromptGAN Enhance",
}
