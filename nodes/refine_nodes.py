"""Refine node: discriminator-guided refinement and text-guided editing.

Layout: ComfyUI IMAGE is [B, H, W, C] float 0..1 on the CPU; models/refine works on [B, 3, H, W]
in [-1, 1] (``generate.from_comfy_image`` / ``to_comfy_image``). MASK is [B, H, W] (or [H, W]).
ComfyUI runs nodes under torch.inference_mode(); models/refine switches gradients back on for its
own loop and works on copies, so the model's weights and the inputs are never modified and a
Cancel in the middle leaves nothing half-changed.
"""
from __future__ import annotations

import logging

import torch

from ..models.generate import GANLatent, check_embeds, from_comfy_image, model_id, to_comfy_image
from ..models.invert import find_inverter, invert, load_inverter, plain
from ..models.model_cache import ModelCache
from ..models.refine import (
    DEFAULT_PRESERVE,
    DEFAULT_STEP_SIZE,
    broadcast_rows,
    check_mask,
    edit,
    fit_to_model,
    guided_edit_steps,
    refine_image,
)
from . import runtime

log = logging.getLogger("PromptGAN")

MODES = ["refine", "edit"]
IMAGE_REFINE_INVERT_STEPS = 50      # inversion steps before refining an image given without latent

_inverters = ModelCache(1)


def _inverter_for(model):
    """The inverter saved beside the model file (cached), or None."""
    path = find_inverter(model)
    return None if path is None else _inverters.get(path, lambda p: load_inverter(p, model))


def _phase(bar, offset: int, share: int, total: int):
    """A progress(done, n) callback that fills [offset, offset + share] of the node's bar."""
    def report(done, n):
        bar(min(total, offset + round(share * done / max(n, 1))), total)
    return report


def _finite(t: torch.Tensor, what: str) -> None:
    if not torch.isfinite(t).all():
        raise ValueError(f"{what} contains NaN or infinite values; check the node that made it")


def _image_to_model_layout(image: torch.Tensor) -> torch.Tensor:
    """IMAGE [B,H,W,C] (C = 1, 3 or 4) -> [B,3,H,W] in [-1,1]; alpha is ignored."""
    if not torch.is_tensor(image) or image.dim() != 4 or image.shape[-1] not in (1, 3, 4):
        shape = tuple(image.shape) if torch.is_tensor(image) else type(image).__name__
        raise ValueError(f"image must be an IMAGE [B, H, W, 3], got {shape}")
    _finite(image, "image")
    if image.shape[-1] == 1:
        image = image.expand(-1, -1, -1, 3)
    return from_comfy_image(image)


def _rows(prompts: list[str], b: int) -> list[str]:
    """Prompts for b images, prompt-major (as GANGenerate orders its batch)."""
    return [prompts[i * len(prompts) // b] for i in range(b)]


def _check_latent_and_embeds(model, mode: str, latent, embeds) -> None:
    """The latent fits the model, the embeds its encoder, and the mode has what it needs."""
    if latent is not None:
        if not isinstance(latent, GANLatent):
            raise ValueError(f"latent must be a PROMPTGAN_LATENT, got {type(latent).__name__}")
        if latent.model_id != model_id(model):
            raise ValueError(f"the latent was made by model '{latent.model_id}' but this Refine "
                             f"has model '{model_id(model)}'; connect the same model to "
                             "GANGenerate and Refine")
        _finite(latent.z, "latent noise")
        _finite(latent.sentence, "latent conditioning")
    if embeds is not None:
        check_embeds(model, embeds)
        _finite(embeds.sentence, "embeds")
    if mode == "edit" and embeds is None:
        raise ValueError("edit mode needs the new prompt: connect a PromptGAN Text Encode "
                         "(e.g. 'a pink flower ...') to 'embeds'")
    if mode == "refine" and model.discriminator is None:
        raise ValueError(f"model '{model.name}' has no discriminator, which refine mode needs; "
                         "load a full PromptGAN model file")


def _checked_batch_size(model, x, latent, embeds, mask) -> int:
    """The batch size, after checking that image, latent, mask and embeds agree on it and the
    mask on the output size (the image's, else the model's resolution)."""
    b = len(latent) if latent is not None else x.shape[0]
    if x is not None and x.shape[0] != b:
        raise ValueError(f"the image batch has {x.shape[0]} images but the latent {b}; give "
                         "the images that came with the latent")
    out_h, out_w = (x.shape[-2:] if x is not None else (model.resolution, model.resolution))
    if mask is not None:
        if not torch.is_tensor(mask):
            raise ValueError(f"mask must be a MASK tensor, got {type(mask).__name__}")
        check_mask(mask, b, out_h, out_w)
    if embeds is not None:
        broadcast_rows(embeds.sentence, b, "embeds")
    return b


def _step_counts(model, mode: str, steps: int, strength: float, preserve: float,
                 has_latent: bool) -> tuple[int, int]:
    """-> (inversion steps, total steps of the node's progress bar, at least 1)."""
    invert_steps = 0
    if not has_latent:
        invert_steps = steps if mode == "edit" else IMAGE_REFINE_INVERT_STEPS
    if mode == "refine":
        return invert_steps, invert_steps + steps or 1
    return invert_steps, invert_steps + guided_edit_steps(model, strength, preserve) or 1


def _invert_to_refine(model, x, sentence, prompts, encoder, steps: int, *, seed: int, device,
                      progress, check_interrupt):
    """refine mode without a latent: the latent of images x [b,3,H,W] (resized to the model),
    starting from ``sentence`` [b,D] and/or the inverter; it carries ``prompts`` when given."""
    if sentence is None and encoder is None:
        raise ValueError(
            "refining an image without its latent needs 'embeds' describing the "
            "image (or an inverter file beside the model); connect a Text Encode")
    latent = invert(model, fit_to_model(x, model.resolution), sentence, steps, encoder,
                    seed=seed, device=device, progress=progress, check_interrupt=check_interrupt)
    if prompts is not None:
        latent.prompts = _rows(prompts, len(latent))
    return latent


class PromptGAN_Refine:
    DESCRIPTION = (
        "Improves or edits images of a PromptGAN model. 'refine': discriminator gradient flow on "
        "the noise makes the image more realistic and closer to its prompt (about 15 steps). "
        "'edit': moves the conditioning towards a new prompt ('a pink flower ...') from the same "
        "noise, keeping the picture's outlines (preserve), optionally only inside a mask. "
        "Exact for images coming with their PROMPTGAN_LATENT from GANGenerate; other images of "
        "the model's domain are inverted first (approximate, slower). The model's weights are never changed.")
    CATEGORY = "PromptGAN/refine"
    FUNCTION = "refine"
    RETURN_TYPES = ("IMAGE", "PROMPTGAN_LATENT")
    RETURN_NAMES = ("image", "latent")
    OUTPUT_TOOLTIPS = (
        "The refined or edited images [B, H, W, 3], at the input image's size (the model's "
        "resolution when only a latent is given).",
        "The new latent (noise and conditioning) for a further Refine, e.g. edit then refine.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("PROMPTGAN_MODEL", {
                    "tooltip": "From PromptGAN Model Loader; the same model that made the latent. "
                               "Refine mode needs its discriminator (saved in every PromptGAN "
                               "model file)."}),
                "mode": (MODES, {
                    "default": "refine",
                    "tooltip": "refine: move the noise along the discriminator's gradient "
                               "(realism, prompt fidelity), keeping the prompt; with the bundled "
                               "model it also pulls the attributes the discriminator sees towards "
                               "those the prompt's words name (the text head in the model file). "
                               "edit: keep the "
                               "noise, move the conditioning towards the prompt in 'embeds'."}),
                "steps": ("INT", {
                    "default": 15, "min": 0, "max": 1000,
                    "tooltip": "refine: gradient-flow steps (10-25 is typical; 0 changes nothing). "
                               "edit: optimisation steps of the inversion of an image given "
                               "without its latent (50-200 for a closer match; unused with a "
                               "latent)."}),
                "strength": ("FLOAT", {
                    "default": 1.0, "min": 0.0, "max": 2.0, "step": 0.05,
                    "tooltip": "refine: multiplies the default step size (0 = no change, 2 = "
                               "bolder). edit: 0 keeps the original prompt, 1 uses the new one, "
                               "in between blends (spherical interpolation), above 1 "
                               "exaggerates."}),
                "seed": ("INT", {
                    "default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                    "tooltip": "Seed of the refinement's small random term and of the inversion's "
                               "random starts: the same seed gives the same result."}),
                "preserve": ("FLOAT", {
                    "default": DEFAULT_PRESERVE, "min": 0.0, "max": 10.0,
                    "step": 0.1,
                    "tooltip": "edit only: how firmly the edit keeps the original's outlines and "
                               "colour boundaries. 0: redraw the same noise with the new prompt "
                               "(one pass; other features such as petal shape may change too). "
                               "1 (default): a 30-step guided transition from the old prompt to "
                               "the new one that keeps the edges (30 generator and discriminator "
                               "passes instead of one; needs the discriminator). Higher values "
                               "change little more."}),
            },
            "optional": {
                "image": ("IMAGE", {
                    "tooltip": "Image to refine or edit. With a latent it is the original the "
                               "masked edit is composited into. Without a latent it is inverted "
                               "into the model (approximate: only images of the model's domain "
                               "work well); another size than the model's is resized with a "
                               "warning and the result resized back."}),
                "latent": ("PROMPTGAN_LATENT", {
                    "tooltip": "GANGenerate's latent output: the exact noise and prompt of its "
                               "images (best results). Must come from the same model."}),
                "embeds": ("PROMPTGAN_EMBEDS", {
                    "tooltip": "From PromptGAN Text Encode with the model's encoder. edit: the new "
                               "prompt (required). refine: optional prompt to refine towards "
                               "(default: the latent's own). One prompt, one per image, or one "
                               "per group of images."}),
                "mask": ("MASK", {
                    "tooltip": "Optional: change only where the mask is 1 (soft edge inside the "
                               "mask); pixels where it is 0 are kept exactly. Same size as the "
                               "output image; 1 layer or one per image."}),
            },
        }

    def refine(self, model, mode: str, steps: int, strength: float, seed: int,
               preserve: float = DEFAULT_PRESERVE, image=None, latent=None, embeds=None,
               mask=None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if image is None and latent is None:
            raise ValueError("Refine needs an image or a latent: connect GANGenerate's latent "
                             "(exact) and/or an image (inverted, approximate)")
        steps, strength, seed, preserve = runtime.checked_numbers(
            type(self), steps=steps, strength=strength, seed=seed, preserve=preserve)
        _check_latent_and_embeds(model, mode, latent, embeds)
        x = _image_to_model_layout(image) if image is not None else None
        b = _checked_batch_size(model, x, latent, embeds, mask)

        device = runtime.get_device()
        encoder = _inverter_for(model) if latent is None else None
        runtime.load_models(model, [model.generator, model.discriminator, model.text_head], device)
        invert_steps, total = _step_counts(model, mode, steps, strength, preserve, latent is not None)
        bar = runtime.progress_bar(total)
        interrupt = runtime.check_interrupt

        with torch.inference_mode(False), torch.enable_grad():
            x = None if x is None else plain(x)
            new_s = None if embeds is None else plain(embeds.sentence).float()
            new_w = None if embeds is None or not model.reads_colour_names \
                else embeds.colour_words()
            m = None if mask is None else plain(mask).float()
            if mode == "edit":
                out, new_latent = edit(
                    model, latent if latent is not None else x, new_s, strength, m,
                    image=x if latent is not None else None, new_prompts=list(embeds.prompts),
                    invert_steps=invert_steps, encoder=encoder, seed=int(seed), preserve=preserve,
                    device=device, progress=_phase(bar, 0, total, total), check_interrupt=interrupt,
                    new_words=new_w)
            else:
                sentence = None if new_s is None else broadcast_rows(new_s, b, "embeds")
                if latent is None:
                    latent = _invert_to_refine(
                        model, x, sentence, None if embeds is None else list(embeds.prompts),
                        encoder, invert_steps, seed=int(seed), device=device,
                        progress=_phase(bar, 0, invert_steps, total), check_interrupt=interrupt)
                out, new_latent = refine_image(
                    model, latent, sentence, x, m, steps, DEFAULT_STEP_SIZE * strength,
                    seed=int(seed), device=device, progress=_phase(bar, invert_steps, steps, total),
                    check_interrupt=interrupt,
                    words=new_w)
        bar(total, total)
        _finite(out, f"Refine's output (model '{model.name}')")
        return (to_comfy_image(out).to(runtime.intermediate_device()), new_latent)


NODE_CLASS_MAPPINGS = {"PromptGAN_Refine": PromptGAN_Refine}
NODE_DISPLAY_NAME_MAPPINGS = {"PromptGAN_Refine": "PromptGAN Refine"}
