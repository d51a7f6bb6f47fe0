"""TextEncode: prompts -> PROMPTGAN_EMBEDS through a transformers language model."""
from __future__ import annotations

import logging

import torch

from ..models import text_encoder
from ..models.threads import threads_for_this_call
from . import runtime

log = logging.getLogger("PromptGAN")

CATEGORY = "PromptGAN/conditioning"
DEFAULT_CHOICE = "all-MiniLM-L6-v2 (bundled)"
MODEL_CHOICE = "match the model"


def encoder_choices() -> list[str]:
    return [DEFAULT_CHOICE, MODEL_CHOICE] + runtime.text_encoder_folders()


def clip_pooled(clip, prompts: list[str]):
    """Pooled outputs [B, D] of a ComfyUI CLIP object, one row per prompt."""
    rows = []
    for p in prompts:
        tokens = clip.tokenize(p)
        out = clip.encode_from_tokens(tokens, return_pooled=True)
        pooled = out[1] if isinstance(out, (tuple, list)) else None
        if pooled is None or not torch.is_tensor(pooled):
            raise ValueError("the CLIP input gave no pooled output; connect a CLIP whose text "
                             "model has a pooled projection (e.g. CLIP-L), or disconnect it to use "
                             "the bundled encoder")
        pooled = pooled.reshape(-1, pooled.shape[-1]) if pooled.dim() > 1 else pooled[None]
        if pooled.shape[0] != 1:
            raise ValueError(f"the CLIP input's pooled output has shape {tuple(out[1].shape)}; "
                             "expected one vector per prompt ([1, dim])")
        rows.append(pooled.float().cpu())
    return torch.cat(rows)


class PromptGAN_TextEncode:
    DESCRIPTION = ("Turns prompts into embeddings with a language model (default: the bundled "
                   "all-MiniLM-L6-v2, fully offline). One prompt per line makes a batch.")
    CATEGORY = CATEGORY
    FUNCTION = "encode"
    RETURN_TYPES = ("PROMPTGAN_EMBEDS",)
    RETURN_NAMES = ("embeds",)
    OUTPUT_TOOLTIPS = ("Sentence embeddings [B, D], token embeddings [B, T, D] with their mask, "
                       "each token's exact colour where it names one (32,000 colour names and "
                       "hex codes such as #8a2be2), the encoder id and the prompts; feed "
                       "GANGenerate, Refine or Enhance.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "text": ("STRING", {
                    "multiline": True, "default": "a red flower with five round petals",
                    "tooltip": "The prompt. Several lines make a batch: one prompt per line, "
                               "one image per prompt. Colours may be any of 32,000 names "
                               "('burgundy petals', 'on dusty rose') or hex codes ('#8a2be2'). "
                               "Text past the encoder's length (512 tokens for MiniLM) is cut "
                               "off with a warning."}),
                "encoder": (encoder_choices(), {
                    "default": DEFAULT_CHOICE,
                    "tooltip": "Language model: the bundled MiniLM, the one the connected model "
                               "was trained with ('match the model'), or a Hugging Face-format "
                               "folder under models/text_encoders."}),
            },
            "optional": {
                "model": ("PROMPTGAN_MODEL", {
                    "tooltip": "Optional: with 'match the model' the encoder this model was "
                               "trained with is used, so the embeddings always fit it."}),
                "clip": ("CLIP", {
                    "tooltip": "Optional ComfyUI CLIP: its pooled output is used instead of the "
                               "language model. Only useful with a model trained on that CLIP."}),
            },
        }

    def encode(self, text: str, encoder: str, model=None, clip=None):
        if not isinstance(text, str):
            raise ValueError(f"input 'text' must be a string, got {type(text).__name__}")
        prompts = text_encoder.split_prompts(text)
        try:
            text_encoder.check_prompts(prompts)
        except ValueError as exc:
            raise ValueError(f"input 'text' (one prompt per line): {exc}") from None
        if clip is not None:
            pooled = clip_pooled(clip, prompts)
            return (text_encoder.embeds_from_pooled(pooled, prompts,
                                                    f"comfyui-clip-pooled-{pooled.shape[1]}"),)
        encoder_id = None
        if encoder == MODEL_CHOICE:
            if model is None:
                raise ValueError("encoder 'match the model' needs the model input connected; "
                                 f"connect a PromptGAN model or pick '{DEFAULT_CHOICE}'")
            encoder_id = model.encoder_id
        enc = load_text_encoder(encoder, encoder_id)
        device = runtime.get_device()
        runtime.load_models(enc, [enc.model], device)
        with threads_for_this_call(device):
            return (enc.to(device).encode(prompts),)


def load_text_encoder(choice: str, encoder_id: str | None = None):
    """The encoder for a dropdown choice, or for a model's recorded encoder id."""
    if encoder_id is not None:
        if encoder_id == text_encoder.DEFAULT_ENCODER_ID:
            return text_encoder.load_encoder(device=None)
        for name in runtime.text_encoder_folders():
            if name == encoder_id or encoder_id.endswith("/" + name):
                path = runtime.resolve_in(runtime.folder_roots(runtime.TEXT_ENCODER_FOLDER),
                                          name, "text encoder")
                return text_encoder.load_encoder(path, encoder_id, device=None)
        raise ValueError(f"the model was trained with text encoder '{encoder_id}', which is not "
                         "installed: put its Hugging Face folder under models/text_encoders")
    if choice == DEFAULT_CHOICE:
        return text_encoder.load_encoder(device=None)
    if choice not in runtime.text_encoder_folders():
        raise ValueError(f"unknown text encoder '{choice}'; choose '{DEFAULT_CHOICE}' or a folder "
                         "under models/text_encoders that holds a config.json")
    path = runtime.resolve_in(runtime.folder_roots(runtime.TEXT_ENCODER_FOLDER), choice,
                              "text encoder")
    return text_encoder.load_encoder(path, choice, device=None)


NODE_CLASS_MAPPINGS = {"PromptGAN_TextEncode": PromptGAN_TextEncode}
NODE_DISPLAY_NAME_MAPPINGS = {"PromptGAN_TextEncode": "PromptGAN Text Encode"}
