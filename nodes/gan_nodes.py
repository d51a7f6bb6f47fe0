"""Model loader and GANGenerate nodes."""
from __future__ import annotations

import logging

from ..models import vocabulary
from ..models.gan import GAN_KIND, load_gan
from ..models.generate import generate_comfy_image, make_latent
from ..models.model_cache import ModelCache
from ..models.threads import threads_for_this_call
from . import runtime

BUNDLED_MODEL = "promptgan_default.safetensors"
BUNDLED_CHOICE = "promptgan_default (bundled)"
log = logging.getLogger("PromptGAN")
_cache = ModelCache(3)


def model_choices() -> list[str]:
    return [BUNDLED_CHOICE] + runtime.folder_files(runtime.MODEL_FOLDER, kind=GAN_KIND)


def resolve_choice(name: str):
    if name == BUNDLED_CHOICE:
        path = runtime.BUNDLED_WEIGHTS_DIR / BUNDLED_MODEL
        if not path.is_file():
            raise FileNotFoundError(f"the bundled model {path} is missing; reinstall the pack "
                                    "(git clone brings it) or pick a file from models/promptgan")
        return path
    return runtime.resolve_model_path(runtime.MODEL_FOLDER, name)


def load_model_cached(name: str):
    return _cache.get(resolve_choice(name), lambda path: load_gan(path, device="cpu"))


class PromptGAN_ModelLoader:
    DESCRIPTION = ("Loads a PromptGAN text-to-image model (EMA generator + discriminator) from "
                   "safetensors: the bundled default or a file in models/promptgan.")
    CATEGORY = "PromptGAN/loaders"
    FUNCTION = "load"
    RETURN_TYPES = ("PROMPTGAN_MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The model; connect it to GANGenerate, Refine and (for 'match the "
                       "model') TextEncode.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model_name": (model_choices(), {
            "default": BUNDLED_CHOICE,
            "tooltip": "The bundled model (64 px flowers and landscapes) or a .safetensors file "
                       "trained with this pack's trainer, placed in ComfyUI/models/promptgan "
                       "(only text-to-image models are listed)."})}}

    @classmethod
    def VALIDATE_INPUTS(cls, model_name):
        if model_name != BUNDLED_CHOICE and model_name not in runtime.folder_files(
                runtime.MODEL_FOLDER, kind=GAN_KIND):
            why = runtime.why_not_listed(runtime.MODEL_FOLDER, model_name, GAN_KIND,
                                         "PromptGAN Model Loader")
            return f"model_name: {why} (or pick '{BUNDLED_CHOICE}')"
        return True

    def load(self, model_name: str):
        return (load_model_cached(model_name),)


def unknown_words_report(model, embeds) -> str:
    """Lines "prompt N: word, word: unknown to this model", also logged to the console."""
    lines = [f"prompt {i + 1}: {line}" for i, line in
             enumerate(vocabulary.report(list(embeds.prompts), model.vocabulary,
                                         model.reads_colour_names)) if line]
    for line in lines:
        log.warning("PromptGAN GANGenerate: %s (model '%s')", line, model.name)
    return "\n".join(lines)


class PromptGAN_GANGenerate:
    DESCRIPTION = ("Text to image in one forward pass of the generator (milliseconds per image). "
                   "Each prompt gives batch_size images; image i uses seed + i, so a seed gives "
                   "the same image whatever the batch size or device.")
    CATEGORY = "PromptGAN/generate"
    FUNCTION = "generate"
    RETURN_TYPES = ("IMAGE", "PROMPTGAN_LATENT", "STRING")
    RETURN_NAMES = ("images", "latent", "unknown_words")
    OUTPUT_TOOLTIPS = ("Images [B, H, W, 3] at the model's resolution (64 px for the default; "
                       "use Enhance to go bigger).",
                       "Noise, embeddings and model identity of each image, for Refine.",
                       "The prompt words this model never saw in training, one line per prompt "
                       "that has any ('glorp: unknown to this model'): the model guesses "
                       "what they mean. A model with a colour reader knows every colour name "
                       "of the lexicon and every hex code. Empty when it knows every word (or "
                       "its file records no vocabulary).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("PROMPTGAN_MODEL", {"tooltip": "From PromptGAN Model Loader."}),
            "embeds": ("PROMPTGAN_EMBEDS", {
                "tooltip": "From PromptGAN Text Encode, made with the model's text encoder."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                             "control_after_generate": True,
                             "tooltip": "Noise seed of the first image; image i uses seed + i."}),
            "batch_size": ("INT", {"default": 4, "min": 1, "max": 1024,
                                   "tooltip": "Images per prompt."}),
            "truncation": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.05,
                                     "tooltip": "Scales the noise: below 1 gives more typical, "
                                                "less varied images; 0 gives one image per "
                                                "prompt."}),
        }}

    def generate(self, model, embeds, seed: int, batch_size: int, truncation: float):
        seed, batch_size, truncation = runtime.checked_numbers(
            type(self), seed=seed, batch_size=batch_size, truncation=truncation)
        latent = make_latent(model, embeds, seed, batch_size, truncation)
        bar = runtime.progress_bar(len(latent))
        device = runtime.get_device()
        runtime.load_models(model, [model.generator], device)
        with threads_for_this_call(device):
            images = generate_comfy_image(model, latent, device, progress=bar,
                                          check_interrupt=runtime.check_interrupt)
        return (images.to(runtime.intermediate_device()), latent,
                unknown_words_report(model, embeds))


NODE_CLASS_MAPPINGS = {
    "PromptGAN_ModelLoader": PromptGAN_ModelLoader,
    "PromptGAN_GANGenerate": PromptGAN_GANGenerate,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "PromptGAN_ModelLoader": "PromptGAN Model Loader",
    "PromptGAN_GANGenerate": "PromptGAN GAN Generate",
}
