"""Generation with a loaded GANModel: seeds -> noise on the CPU -> images, in bounded chunks."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .devices import move
from .gan import GANModel, seeded_noise
from .memory import require_memory
from .text_encoder import TextEmbeds

BYTES_PER_OUTPUT_PIXEL = 4 * 3          # float32 RGB


class EncoderMismatchError(ValueError):
    pass


@dataclass
class GANLatent:
    """What GANGenerate hands to Refine (socket PROMPTGAN_LATENT).

    z [B, nz] noise (after truncation), sentence [B, D] the conditioning it was drawn with,
    seeds [B], the identity of the model that made it, and words [B, M, D + 4] the prompts'
    colour words (colour_words.py; None: no colour words, as for a model without a colour
    reader or an inverted image).
    """

    z: torch.Tensor
    sentence: torch.Tensor
    prompts: list[str]
    seeds: list[int]
    encoder_id: str
    model_id: str
    words: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.z.shape[0]


def model_id(model: GANModel) -> str:
    """Identity of a model: file name and step (a latent is only meaningful for its model)."""
    return f"{model.name}@{model.provenance.get('step', '?')}"


def check_embeds(model: GANModel, embeds: TextEmbeds) -> None:
    if embeds.encoder_id != model.encoder_id:
        raise EncoderMismatchError(
            f"the embeddings come from text encoder '{embeds.encoder_id}' but model "
            f"'{model.name}' was trained with '{model.encoder_id}'; set TextEncode's encoder to "
            "'match the model' (and connect the model to it) or load a model trained with that "
            "encoder")
    if embeds.dim != model.generator.cfg.text_dim:
        raise EncoderMismatchError(f"embeddings have {embeds.dim} dims, model '{model.name}' "
                                   f"expects {model.generator.cfg.text_dim}")
    if not torch.isfinite(embeds.sentence).all():
        raise ValueError("the embeddings hold NaN or infinite values; check the node that made "
                         "them (TextEncode gives finite ones)")


def check_fits(n_images: int, resolution: int, chunk: int, device: torch.device) -> None:
    """Refuse a request whose output (plus one chunk's activations) cannot fit in memory."""
    out_bytes = n_images * resolution * resolution * BYTES_PER_OUTPUT_PIXEL
    # activations of one chunk: about 64 float maps of the output size per image (measured
    # order of magnitude for ngf=32; generous on purpose)
    work = min(chunk, n_images) * resolution * resolution * 4 * 64 * 4
    fix = "lower batch_size or the number of prompts"
    require_memory(out_bytes + work, f"{n_images} images at {resolution}x{resolution}", fix)
    if device.type == "cuda":
        require_memory(work, f"one chunk of {chunk} images at {resolution} px", fix, device)


def _chunks(model: GANModel, latent: GANLatent, device: torch.device, chunk: int, progress,
            check_interrupt):
    """(start, images [n,3,R,R] in [-1,1] float32 on the CPU) for each chunk of the latent."""
    g = move(model.generator, device)
    b = len(latent)
    for start in range(0, b, chunk):
        if check_interrupt is not None:
            check_interrupt()
        z = latent.z[start:start + chunk].to(device)
        s = latent.sentence[start:start + chunk].to(device)
        w = None if latent.words is None else latent.words[start:start + chunk].to(device)
        images = g(z, s, w).float().cpu()
        if not torch.isfinite(images).all():
            raise FloatingPointError(
                f"model '{model.name}' produced NaN or infinite pixels for images {start}.."
                f"{start + len(images) - 1} (seeds {latent.seeds[start]}..): its weights or the "
                "device's arithmetic overflowed; run it in float32 on the CPU or re-export the model")
        yield start, images
        if progress is not None:
            progress(min(start + chunk, b), b)


@torch.no_grad()
def generate(model: GANModel, latent: GANLatent, device: torch.device | str = "cpu",
             chunk: int = 16, progress=None, check_interrupt=None) -> torch.Tensor:
    """latent (z [B,nz], sentence [B,D]) -> images [B,3,R,R] in [-1,1] on the CPU.

    Runs in chunks written into one preallocated tensor, so memory stays at the output plus one
    chunk; progress(done, total) and check_interrupt() are called between chunks."""
    r = model.resolution
    return _fill(model, latent, device, chunk, progress, check_interrupt, (3, r, r), lambda x: x)


@torch.no_grad()
def generate_comfy_image(model: GANModel, latent: GANLatent, device: torch.device | str = "cpu",
                         chunk: int = 16, progress=None, check_interrupt=None) -> torch.Tensor:
    """Like ``generate``, straight into ComfyUI's IMAGE layout [B,R,R,3] float32 in [0,1]."""
    r = model.resolution
    return _fill(model, latent, device, chunk, progress, check_interrupt, (r, r, 3), to_comfy_image)


def _fill(model, latent, device, chunk, progress, check_interrupt, shape, convert) -> torch.Tensor:
    device = torch.device(device)
    check_fits(len(latent), model.resolution, chunk, device)
    out = torch.empty(len(latent), *shape)
    for start, images in _chunks(model, latent, device, chunk, progress, check_interrupt):
        out[start:start + len(images)] = convert(images)
    return out


def make_latent(model: GANModel, embeds: TextEmbeds, seed: int, per_prompt: int,
                truncation: float = 1.0) -> GANLatent:
    """B prompts x per_prompt images; image i (prompt-major order) uses seed + i.

    Truncation scales the noise (values below 1 trade diversity for typical images)."""
    check_embeds(model, embeds)
    truncation = float(truncation)
    if not math.isfinite(truncation) or truncation < 0:
        raise ValueError(f"truncation must be a finite number >= 0 (1 = the trained noise, 0 = one "
                         f"image per prompt), got {truncation}")
    if int(per_prompt) < 1:
        raise ValueError(f"batch_size must be at least 1, got {per_prompt}")
    index = [j for j in range(len(embeds)) for _ in range(per_prompt)]
    seeds = [seed + i for i in range(len(index))]
    z = seeded_noise(seeds, model.generator.cfg.nz) * float(truncation)
    rows = torch.as_tensor(index, dtype=torch.long)
    sentence = embeds.sentence[rows]                        # token states not copied
    words = embeds.colour_words()[rows] if model.reads_colour_names else None
    return GANLatent(z, sentence, [embeds.prompts[i] for i in index], seeds, embeds.encoder_id,
                     model_id(model), words)


def latent_for_sentences(model: GANModel, sentences: torch.Tensor, seeds: list[int],
                         truncation: float = 1.0, words: torch.Tensor | None = None,
                         prompts: list[str] | None = None) -> GANLatent:
    """One image per sentence embedding [N, D] (and colour words [N, M, D + 4]), image i drawn
    from noise seed ``seeds[i]`` (for code that holds sentence embeddings rather than
    TextEmbeds: evaluators and tests). ``prompts``, when given, are recorded in the latent."""
    if sentences.shape[0] != len(seeds):
        raise ValueError(f"{sentences.shape[0]} sentence embeddings for {len(seeds)} seeds")
    z = seeded_noise(list(seeds), model.generator.cfg.nz) * float(truncation)
    prompts = list(prompts) if prompts is not None else [""] * len(seeds)
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts for {len(seeds)} seeds")
    return GANLatent(z, sentences, prompts, list(seeds), model.encoder_id, model_id(model),
                     words if model.reads_colour_names else None)


def to_comfy_image(images: torch.Tensor) -> torch.Tensor:
    """[B,3,H,W] in [-1,1] -> ComfyUI IMAGE [B,H,W,3] float32 in [0,1]."""
    return ((images.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).contiguous()


def from_comfy_image(image: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE [B,H,W,C] in [0,1] -> [B,3,H,W] in [-1,1]."""
    return image[..., :3].permute(0, 3, 1, 2).float() * 2 - 1
