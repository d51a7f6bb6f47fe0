"""Train a text-conditioned GAN on the procedural sets or on a captioned image folder.

    python <pack> train-gan --out runs/flowers --steps 20000            # procedural data
    python <pack> train-gan --data folder:/path/to/images --out runs/mine
    torchrun --nproc_per_node 4 <pack>/__main__.py train-gan ...      # several GPUs (DDP)

Recipe (DF-GAN family): hinge loss with mismatched-text negatives, MA-GP on real pairs (every
--gp-every steps), DiffAugment (translation, cutout) on real and fake, EMA generator with a
ramp-up, Adam betas (0, 0.9). Two terms make the text reach the generator much sooner than the
plain recipe: an L1 between each generated image and the real image its caption describes, both
pooled to 16x16 (colours and layout; the adversarial terms supply the detail), and on labelled
procedural data an auxiliary attribute head on D (AC-GAN). --recon-weight 0 and --aux-weight 0
give the plain DF-GAN recipe.
The run folder holds state.safetensors (full resumable state), model.safetensors (EMA G + D,
the shipping format), samples/ grids and log.jsonl.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from .. import colour_lexicon, colour_words, gan
from ..checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_state_strict,
    remove_stale_temporaries,
    save_checkpoint,
)
from ..cli import add_recipe_flag, add_threads_flag, argv_per_stage, parse_with_recipe
from ..data import procedural
from ..data.captions import SAMPLE_PROMPTS, wording_digest
from ..data.colour_names import (
    add_named_colours_and_style,
    add_named_colours_to_flowers,
    part_targets,
)
from ..data.folder import load_image_folder
from ..data.styles import PIXEL_CELLS, STYLES, add_style_only
from ..data.text_probe import fit_text_head
from ..fast_paths import cpu_has_native_bf16
from ..text_encoder import encode_prompts, load_encoder
from ..text_head import why_no_text_head
from ..threads import intra_op_threads, threads_beside_load
from ..vocabulary import vocabulary_of
from .utils import (
    GracefulStop,
    command_line,
    load_train_state,
    make_progress,
    prepare_run_folder,
    save_image_grid,
    save_train_state,
    set_threads,
)

log = logging.getLogger("PromptGAN")



# ---------------------------------------------------------------------------------------------
# data: images in memory as uint8, every caption pre-encoded once
# ---------------------------------------------------------------------------------------------

class CaptionedImages:
    """images uint8 [N,R,R,3]; captions flattened with per-image offsets; labels [N,H] or None;
    per caption its sentence embedding [C, D] and colour words [C, M, D + 4] (fp16); attrs, the
    procedural attributes per image (None for a folder)."""

    def __init__(self, images: np.ndarray, captions: list[list[str]], embeds: torch.Tensor,
                 labels: np.ndarray | None, encoder_id: str, words: torch.Tensor,
                 attrs: list[dict] | None = None):
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        counts = [len(c) for c in captions]
        self.offsets = torch.tensor(np.concatenate([[0], np.cumsum(counts)[:-1]]), dtype=torch.long)
        self.counts = torch.tensor(counts, dtype=torch.long)
        self.captions = [c for cs in captions for c in cs]
        self.embeds = embeds                                          # [sum(counts), D]
        self.words = words                                            # [sum(counts), M, D+4]
        self.attrs = attrs
        self.parts = None       # [sum(counts), 3, 4] and mask [sum(counts), 3]: attach_parts
        self.parts_mask = None
        self.labels = None if labels is None else torch.from_numpy(labels).long()
        self.encoder_id = encoder_id
        # per image, its index into styles.STYLES (procedural data; None for a folder)
        self.style_index = None if attrs is None else torch.tensor(
            [STYLES.index(a.get("style", "plain")) for a in attrs], dtype=torch.long)

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, n: int, gen: torch.Generator):
        idx = torch.randint(len(self), (n,), generator=gen)
        pick = (torch.rand(n, generator=gen) * self.counts[idx]).long()
        cap = self.offsets[idx] + pick
        x = self.images[idx].permute(0, 3, 1, 2).float().div(127.5).sub(1)   # [n,3,R,R] in [-1,1]
        labels = None if self.labels is None else self.labels[idx]
        parts = None if self.parts is None else (self.parts[cap], self.parts_mask[cap])
        style = None if self.style_index is None else self.style_index[idx]
        return x, self.embeds[cap], labels, self.words[cap].float(), parts, style

    def attach_parts(self) -> None:
        """Per caption, what the colour reader should find (colour_names.part_targets), from
        the images' attributes and domains (labels[:, 0])."""
        domains = [procedural.DOMAINS[int(d)] for d in self.labels[:, 0]]
        rows = [part_targets(d, a, self.captions[int(o) + j])
                for d, a, o, n in zip(domains, self.attrs, self.offsets, self.counts)
                for j in range(int(n))]
        self.parts = torch.from_numpy(np.stack([t for t, _ in rows]))
        self.parts_mask = torch.from_numpy(np.stack([m for _, m in rows]))


def _encode_all(captions: list[str], device) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Sentence embeddings [C, D] and colour words [C, M, D + 4] (fp16) of every caption."""
    encoder = load_encoder(device=device)
    bar = make_progress(len(captions), desc="encode captions")
    sentences, words = [], []
    for i in range(0, len(captions), 256):
        e = encoder.encode(captions[i:i + 256])
        sentences.append(e.sentence)
        words.append(e.colour_words().half())
        bar.update(len(e))
    bar.close()
    return torch.cat(sentences), torch.cat(words), encoder.encoder_id


DATA_CACHE_KIND = "train-data-cache"
STALE_CACHE_SECONDS = 3600   # a cache temporary this old is a killed write, not one in progress
LOAD_CHECK_EVERY = 20        # --follow-load: steps between two looks at the machine's load


def _read_data_cache(path: Path) -> CaptionedImages | None:
    """The cached procedural data set, or None when there is none or it is unusable (a damaged
    cache is deleted with a warning, so the next run is never blocked by it)."""
    if not path.is_file():
        return None
    try:
        ck = load_checkpoint(path, kind=DATA_CACHE_KIND)
        meta = json.loads(bytes(ck.tensors["captions_json"].tolist()).decode("utf-8"))
        return CaptionedImages(ck.tensors["images"].numpy(), meta["captions"], ck.tensors["embeds"],
                               ck.tensors["labels"].numpy(), meta["encoder_id"],
                               ck.tensors["words"], meta["attrs"])
    except (CheckpointError, KeyError, ValueError, TypeError) as exc:
        log.warning("data cache %s is unusable (%s); deleting it and rendering again", path, exc)
        path.unlink(missing_ok=True)
        return None


def _write_data_cache(path: Path, images: np.ndarray, captions: list[list[str]],
                      embeds: torch.Tensor, labels: np.ndarray, encoder_id: str,
                      words: torch.Tensor, attrs: list[dict]) -> None:
    """One file, written atomically: a kill leaves the old cache or none, never half of one."""
    meta = json.dumps({"captions": captions, "encoder_id": encoder_id,
                       "attrs": attrs}).encode("utf-8")
    try:
        save_checkpoint(path, {"images": torch.from_numpy(images), "embeds": embeds,
                               "labels": torch.from_numpy(labels), "words": words,
                               "captions_json": torch.frombuffer(bytearray(meta), dtype=torch.uint8)},
                        kind=DATA_CACHE_KIND, config={})
    except (OSError, CheckpointError) as exc:  # a cache is an optimisation: training goes on
        log.warning("could not write the data cache %s (%s); the next run renders again", path, exc)


def _extra_attributes(named_colours: bool, styles: bool):
    """The ``make_dataset_arrays`` extra for the data flags (None: the plain renders)."""
    return {(True, False): add_named_colours_to_flowers, (False, True): add_style_only,
            (True, True): add_named_colours_and_style}.get((named_colours, styles))


def load_training_data(spec: str, resolution: int, n_images: int, seed: int, cache_dir: Path,
                       device, captions_per_image: int = 2,
                       named_colours: bool = False, styles: bool = False) -> CaptionedImages:
    """spec: 'procedural', 'flowers', 'landscapes' or 'folder:PATH'. ``named_colours``: flowers
    and landscapes take exact colours named from the colour lexicon (data/colour_names.py:
    petals, centre, background; sky, water, ground); ``styles``: half
    the images are drawn in one of the rendering styles (data/styles.py)."""
    # the colour channel of every caption depends on the colour lexicon and its matching rules
    fingerprint = (f"{spec}|{resolution}|{n_images}|{seed}|{captions_per_image}|v6|"
                   f"{colour_lexicon.table_digest()}|{wording_digest()}"
                   + ("|named+tints" if named_colours else "")
                   + ("|styles" if styles else ""))
    key = hashlib.sha1(fingerprint.encode()).hexdigest()[:12]
    cache = cache_dir / f"data_{key}.safetensors"
    if spec.startswith("folder:"):
        found = load_image_folder(spec[len("folder:"):], resolution)
        images, captions, labels, attrs = found["images"], found["captions"], None, None
        skipped = found.get("skipped", {})
        log.warning("image folder: %d images used, %s", len(images),
                    ", ".join(f"{len(v)} skipped ({k})" for k, v in skipped.items()) or "none skipped")
    else:
        domains = {"procedural": procedural.DOMAINS, "flowers": ("flower",),
                   "landscapes": ("landscape",)}.get(spec)
        if domains is None:
            raise ValueError(f"--data {spec!r}: use procedural, flowers, landscapes or folder:PATH")
        remove_stale_temporaries(cache_dir, older_than=STALE_CACHE_SECONDS)
        data = _read_data_cache(cache)
        if data is not None:
            if named_colours:
                data.attach_parts()
            return data
        arr = procedural.make_dataset_arrays(n_images, resolution, seed, domains=domains,
                                             split="train", captions_per_image=captions_per_image,
                                             workers=max(1, torch.get_num_threads()),
                                             extra=_extra_attributes(named_colours, styles))
        images, captions, labels, attrs = arr["images"], arr["captions"], arr["labels"], arr["attrs"]
    flat = [c for cs in captions for c in cs]
    embeds, words, encoder_id = _encode_all(flat, device)
    embeds = embeds.cpu()
    if not spec.startswith("folder:"):
        _write_data_cache(cache, images, captions, embeds, labels, encoder_id, words, attrs)
    data = CaptionedImages(images, captions, embeds, labels, encoder_id, words, attrs)
    if named_colours:
        data.attach_parts()
    return data


# ---------------------------------------------------------------------------------------------
# DiffAugment: the same random translation and cutout policy on real and fake
# ---------------------------------------------------------------------------------------------

def diff_augment(x: torch.Tensor, gen: torch.Generator, translation: float = 0.125,
                 cutout: float = 0.25) -> torch.Tensor:
    """x [B,3,H,W] -> translated by up to ``translation`` of the size (zero fill), then a
    square of ``cutout`` of the size blanked, per sample. Differentiable in x."""
    b, _, h, w = x.shape
    if translation > 0:
        sh, sw = int(h * translation + 0.5), int(w * translation + 0.5)
        dy = torch.randint(-sh, sh + 1, (b, 1, 1), generator=gen).to(x.device)
        dx = torch.randint(-sw, sw + 1, (b, 1, 1), generator=gen).to(x.device)
        ys = torch.arange(h, device=x.device).view(1, h, 1) - dy           # [b,h,1]
        xs = torch.arange(w, device=x.device).view(1, 1, w) - dx           # [b,1,w]
        valid = ((ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)).unsqueeze(1)
        flat = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)).view(b, 1, h * w)
        x = torch.gather(x.reshape(b, 3, h * w), 2, flat.expand(b, 3, h * w)).view(b, 3, h, w)
        x = x * valid.to(x.dtype)
    if cutout > 0:
        ch, cw = int(h * cutout + 0.5), int(w * cutout + 0.5)
        cy = torch.randint(0, h, (b, 1, 1), generator=gen).to(x.device)
        cx = torch.randint(0, w, (b, 1, 1), generator=gen).to(x.device)
        ys = torch.arange(h, device=x.device).view(1, h, 1)
        xs = torch.arange(w, device=x.device).view(1, 1, w)
        hole = ((ys - cy).abs() <= ch // 2) & ((xs - cx).abs() <= cw // 2)
        x = x * (~hole).unsqueeze(1).to(x.dtype)
    return x


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------

def _add_recipe_terms(terms) -> None:
    """The loss terms and their settings (what a recipe sets)."""
    terms.add_argument("--lr-g", type=float, default=2e-4)
    terms.add_argument("--lr-d", type=float, default=4e-4)
    terms.add_argument("--gp-weight", type=float, default=2.0, help="MA-GP weight (k)")
    terms.add_argument("--gp-power", type=float, default=6.0, help="MA-GP power (p)")
    terms.add_argument("--gp-every", type=int, default=4, help="lazy MA-GP interval (steps)")
    terms.add_argument("--aux-weight", type=float, default=1.0,
                   help="AC-GAN attribute term (procedural data only; 0 = off)")
    terms.add_argument("--recon-weight", type=float, default=10.0,
                   help="L1 between G's image and its caption's real image, both average-pooled "
                        "to --recon-size: a paired signal that teaches colours and layout early "
                        "(0 = off)")
    terms.add_argument("--recon-size", type=int, default=16, help="resolution of the L1 term")
    terms.add_argument("--colour-weight", type=float, default=0.0,
                   help="weight of a layout-free colour term: sliced Wasserstein distance between "
                        "the pixel colours of G's image and of its caption's real image, so petal, "
                        "centre and sky colours are taught wherever they sit in the picture")
    terms.add_argument("--code-weight", type=float, default=0.0,
                   help="on labelled procedural data: weight of a linear read-out of the attribute "
                        "labels from G's text code, so that no attribute fades from the code")
    terms.add_argument("--diversity-weight", type=float, default=0.0,
                   help="mode-seeking term (MSGAN): for a quarter of the batch G also draws the "
                        "same caption from a second noise and is penalised when the two images "
                        "differ less than the noises do, against one layout per prompt (0 = off)")
    terms.add_argument("--angular-weight", type=float, default=0.0,
                   help="weight of a rotation- and translation-free structure term: L1 between the "
                        "angular harmonics of G's image's power spectrum and of its caption's real "
                        "image, which carry N-fold symmetry such as the petal count (0 = off)")
    terms.add_argument("--reader-lr-mult", type=float, default=10.0,
                   help="the colour reader's and palette head's learning rate as a multiple of --lr-g")
    terms.add_argument("--binding-weight", type=float, default=0.0,
                   help="with --named-colours and a colour reader: weight of a term that teaches "
                        "its first three queries to find the petal, centre and background colours "
                        "each caption names (0 = off)")
    terms.add_argument("--background-weight", type=float, default=0.0,
                   help="with --named-colours: weight of L1 between a flower picture's border "
                        "(top, left and right strips, 1/32 of the side; the closest 80%% of its "
                        "pixels, so a petal that reaches the edge does not count) and the "
                        "background colour its caption names (0 = off)")
    terms.add_argument("--centre-weight", type=float, default=0.0,
                   help="with --named-colours: weight of L1 between the middle of a flower picture "
                        "(a disc at the centroid of what differs from its border) and the centre "
                        "colour its caption names (0 = off)")
    terms.add_argument("--pixel-weight", type=float, default=0.0,
                   help="with --styles: weight of L1 between G's pixel-art pictures and their own "
                        "block means (the style's grid of blocks, 1/16 of the side): flat blocks, "
                        "which the 16 px reconstruction term cannot see (0 = off)")
    terms.add_argument("--flat-weight", type=float, default=0.0,
                   help="with --styles: weight of L1 between G's flat-style pictures and "
                        "themselves posterised to 10 colours (k-means, no gradient): flat fills "
                        "without shading, as in the style's renders (0 = off)")
    terms.add_argument("--colour-size", type=int, default=32,
                   help="resolution at which the colour term compares pixels")
    terms.add_argument("--translation", type=float, default=0.125, help="DiffAugment translation")
    terms.add_argument("--cutout", type=float, default=0.25, help="DiffAugment cutout size")
    terms.add_argument("--ema", type=float, default=0.999, help="EMA decay (after ramp-up)")
    terms.add_argument("--seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train-gan", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    run = p.add_argument_group("the run")
    add_recipe_flag(run)
    size = p.add_argument_group("model size, data and hardware")
    terms = p.add_argument_group(
        "recipe terms", "set by a recipe (models/recipes/default.toml); the defaults give the "
        "DF-GAN recipe with the paired L1 and the attribute head")
    ckpt = p.add_argument_group("checkpoints and samples")
    _add_recipe_terms(terms)
    run.add_argument("--out", required=True, help="run folder (state, samples, log, model)")
    run.add_argument("--data", default="procedural",
                   help="procedural | flowers | landscapes | folder:PATH (a.png + a.txt)")
    size.add_argument("--n-images", type=int, default=12000, help="procedural images to render")
    size.add_argument("--captions-per-image", type=int, default=2,
                   help="procedural captions per image (each encoded once, then cached)")
    size.add_argument("--named-colours", action="store_true",
                   help="procedural flowers and landscape skies, lakes and ground take exact "
                        "colours named from the colour lexicon (XKCD, CSS4, color-name-list, hex "
                        "codes), 15%% of names held out")
    size.add_argument("--styles", action="store_true",
                   help="procedural images: half drawn in one of five rendering styles (flat, "
                        "ink, watercolour, pixel art, pencil), named in their captions")
    size.add_argument("--colour-queries", type=int, default=0,
                   help="parts the generator's colour reader binds exact colours to (word-level "
                        "attention over the prompt's colour words; 0 = no reader)")
    size.add_argument("--palette", action="store_true",
                      help="paint the colour reader's colours exactly where the generator puts "
                           "each part (gan.PaletteHead; needs --colour-queries)")
    size.add_argument("--resolution", type=int, default=64, choices=[32, 64, 128, 256])
    size.add_argument("--ngf", type=int, default=32)
    size.add_argument("--ndf", type=int, default=32)
    size.add_argument("--batch", type=int, default=32, help="batch size per process")
    run.add_argument("--steps", type=int, default=20000, help="total steps (resume continues)")
    size.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast for the forward passes (default: on where the hardware "
                        "has fast bf16: CUDA, or a CPU with AVX512-BF16/AMX)")
    add_threads_flag(size)
    size.add_argument("--follow-load", action="store_true",
                      help=f"every {LOAD_CHECK_EVERY} steps on a CPU, use --threads less the cores "
                           "other processes keep busy (two threads beside another job on a "
                           "two-core machine ran 10x slower than one)")
    run.add_argument("--init", default=None,
                   help="warm start from a shipped model (G from its EMA weights, D as shipped)")
    run.add_argument("--fresh-d", action="store_true",
                   help="with --init: take only the generator, start a new discriminator")
    ckpt.add_argument("--save-every", type=int, default=250)
    ckpt.add_argument("--sample-every", type=int, default=1000)
    run.add_argument("--sample-prompts", default=None, metavar="FILE",
                   help="prompts of the sample grids, one per line (default: the built-in "
                        "prompts for procedural data, 16 of the data set's own captions for a "
                        "folder)")
    ckpt.add_argument("--log-every", type=int, default=50)
    size.add_argument("--cache-dir", default=os.path.join(os.path.expanduser("~"), ".cache",
                                                       "promptgan"))
    size.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: best)")
    run.add_argument("--export", default=None, metavar="PATH",
                   help="do not train: write the run's current model (EMA G + D) to PATH in fp16, "
                        "the format the pack ships, and exit")
    return p


def export(run_dir: Path, path: str) -> int:
    """Shipping copy of a run's model: fp16, provenance kept, checked to load back. A model
    trained on the procedural data also gets Refine's text head (``text_head.py``)."""
    model = gan.load_gan(run_dir / "model.safetensors")
    prov = dict(model.provenance, exported_from=str(run_dir / "model.safetensors"))
    d = model.discriminator
    head = None
    if why_no_text_head(model) is None:
        head = fit_text_head(d.cfg.label_heads)
        prov["text_head"] = {"command": "fitted by train-gan --export (fit_text_head defaults)"}
    gan.save_gan(path, model.generator, d, encoder_id=model.encoder_id, provenance=prov,
                 dtype=torch.float16, text_head=head, vocabulary=model.vocabulary)
    gan.load_gan(path)
    print(f"exported step {prov.get('step')} to {path}")
    return 0


def _setup_distributed(device_arg):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
            dist.init_process_group("nccl")
        else:
            device = torch.device("cpu")
            dist.init_process_group("gloo")
        return device, rank, world
    if device_arg:
        return torch.device(device_arg), 0, 1
    return torch.device("cuda" if torch.cuda.is_available() else "cpu"), 0, 1


def broadcast_weights(modules: dict[str, nn.Module]) -> None:
    """Every rank starts from rank 0's weights (a fresh start draws them per rank)."""
    with torch.no_grad():
        for m in modules.values():
            for t in m.state_dict().values():
                dist.broadcast(t, 0)


def average_gradients(modules: list[nn.Module], world: int) -> None:
    """Average the gradients of ``modules`` over the ranks, in one all-reduce."""
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p, g in zip(params, grads):
        p.grad = flat[offset:offset + g.numel()].view_as(g)
        offset += g.numel()


def check_ranks_agree(modules: dict[str, nn.Module], step: int) -> None:
    """Every rank of a torchrun job must hold the same weights when rank 0 saves them: compare a
    checksum of each module across ranks (a collective call: every rank calls it)."""
    sums = torch.stack([sum(t.detach().double().sum() for t in m.state_dict().values()
                            if t.is_floating_point()) for m in modules.values()])
    device = next(next(iter(modules.values())).parameters()).device    # NCCL needs CUDA tensors
    sums = sums.to(device)
    gathered = [torch.zeros_like(sums) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, sums)
    if any(not torch.allclose(g, gathered[0], rtol=1e-9, atol=1e-9) for g in gathered):
        raise RuntimeError(f"step {step}: the ranks' weights differ: {[g.tolist() for g in gathered]}")
    if dist.get_rank() == 0:
        log.info("step %d: %d ranks agree on the weights (checksum %.6f)", step, len(gathered),
                 float(sums.sum()))


def fast_bf16(device: torch.device) -> bool:
    """bf16 autocast pays off on CUDA and on CPUs with native bf16; elsewhere it is slower."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


def colour_distance(fake: torch.Tensor, real: torch.Tensor, size: int, gen: torch.Generator,
                    n_dirs: int = 8) -> torch.Tensor:
    """Sliced Wasserstein distance between the pixel colours of paired images, [B,3,R,R] each.

    Each image is pooled to size x size and its pixels are treated as a set of RGB points; both
    sets are projected on the three colour axes and on random unit directions, sorted, and
    compared. Where a colour sits in the picture does not matter, only how much of it there is.
    """
    f = F.adaptive_avg_pool2d(fake, size).flatten(2)                 # [B, 3, P]
    r = F.adaptive_avg_pool2d(real, size).flatten(2).to(f.dtype)
    dirs = torch.randn(n_dirs, 3, generator=gen)
    dirs = torch.cat([torch.eye(3), dirs / dirs.norm(dim=1, keepdim=True)]).to(f)  # [K, 3]
    pf = torch.einsum("kc,bcp->bkp", dirs, f).sort(dim=-1).values
    pr = torch.einsum("kc,bcp->bkp", dirs, r).sort(dim=-1).values
    return (pf - pr).abs().mean()


def angular_spectrum(img: torch.Tensor, n_angles: int = 96, n_harmonics: int = 8) -> torch.Tensor:
    """[B, C, R, R] -> [B, rings, n_harmonics]: how strongly the image repeats every 360/k
    degrees, for the even k = 2, 4, ..., 2 * n_harmonics, on rings of its power spectrum.

    The grey image (Hann-windowed) is Fourier transformed; the power spectrum does not change
    when the picture moves, and rotating the picture rotates it. Each ring of the (log) spectrum
    is then read as a function of angle, and the magnitudes of its angular Fourier harmonics,
    divided by the ring's mean, do not change when the picture rotates either. The spectrum is
    point-symmetric, so only even harmonics carry anything: a four-petal flower shows at k = 4
    (and 8, 12), five petals at k = 10, six at 6 and 12, eight at 8 and 16. The nearest class
    mean of these numbers names the petal count of 96 of 100 procedural renders (tests/test_gan.py);
    the discriminator's attribute head reads about half of them.
    """
    b, _, r, _ = img.shape
    g = img.float().mean(1)
    g = g - g.mean((1, 2), keepdim=True)
    w = torch.hann_window(r, periodic=False, device=img.device)
    power = torch.fft.fftshift(torch.fft.fft2(g * (w[:, None] * w[None, :])).abs().pow(2),
                               dim=(-2, -1))                                   # [B, R, R]
    power = torch.log1p(power / power.mean((1, 2), keepdim=True).clamp_min(1e-12))
    radii = torch.linspace(0.05, 0.35, 10, device=img.device) * r              # frequency bins
    angles = torch.arange(n_angles, device=img.device) * (2 * math.pi / n_angles)
    centre = r // 2
    xs = (centre + radii[:, None] * torch.cos(angles)[None]) / (r - 1) * 2 - 1  # [rings, A]
    ys = (centre + radii[:, None] * torch.sin(angles)[None]) / (r - 1) * 2 - 1
    grid = torch.stack([xs, ys], -1)[None].expand(b, -1, -1, -1)
    rings = F.grid_sample(power[:, None], grid, mode="bilinear", align_corners=True)[:, 0]
    h = torch.fft.rfft(rings, dim=-1).abs()                                    # [B, rings, A/2+1]
    return h[..., 2:2 * n_harmonics + 1:2] / h[..., :1].clamp_min(1e-6)


def mode_seeking_term(fake_a: torch.Tensor, fake_b: torch.Tensor, z_a: torch.Tensor,
                      z_b: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """MSGAN's mode-seeking loss for images [B,3,R,R] drawn from the same captions with noises
    z_a, z_b [B,nz]: the inverse of (mean image difference / mean noise difference), so that
    minimising it makes different noises give different pictures."""
    ratio = (fake_a - fake_b).abs().mean((1, 2, 3)) / (z_a - z_b).abs().mean(1).clamp_min(eps)
    return (1.0 / (ratio + eps)).mean()


def masked_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` weighted by ``weight`` (same shape; 0 where a value does not count),
    0 when nothing counts."""
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def binding_loss(G: gan.Generator, words: torch.Tensor, targets: torch.Tensor,
                 mask: torch.Tensor) -> torch.Tensor:
    """Squared error between the colour reader's first three queries' colours [B,3,4] and the
    petal, centre and background colours the captions name (mask [B,3]: known parts)."""
    pooled = G.colour_reader.pooled(words.float())[:, :3]
    return masked_mean((pooled - targets).pow(2).sum(-1), mask)


def border_pixels(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, R, R] -> [B, 3, N]: the top, left and right strips (R // 32 wide, at least 1) where
    a flower picture shows its background (the stem may reach the bottom)."""
    w = max(1, images.shape[-1] // 32)
    return torch.cat([images[:, :, :w].flatten(2), images[:, :, w:, :w].flatten(2),
                      images[:, :, w:, -w:].flatten(2)], dim=2)


def background_loss(fake: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                    flower: torch.Tensor, keep: float = 0.8) -> torch.Tensor:
    """L1 between the border of G's flower pictures [B,3,R,R] and the background colour their
    captions name (targets [B,3,4] as part_targets gives them, slot 2; mask [B,3]; flower [B]
    bool), over the closest ``keep`` of the border's pixels. The colour reader's reading is not
    involved: the target is the lexicon's value, so this teaches the drawing, not the reading."""
    named = mask[:, 2] * flower.float() * (targets[:, 2, 3] > 0).float()            # [B]
    want = colour_words.lab_to_unit_rgb(gan.pooled_lab(targets[:, 2].float())) * 2 - 1  # [B, 3]
    dist = (border_pixels(fake) - want[:, :, None]).abs().mean(1)                  # [B, N]
    k = max(1, int(keep * dist.shape[1]))
    per_image = dist.topk(k, dim=1, largest=False).values.mean(1)                  # [B]
    return masked_mean(per_image, named)


def flower_middle(images: torch.Tensor, differ: float = 0.2, frac: float = 0.2) -> torch.Tensor:
    """[B, 3, R, R] in [-1, 1] -> [B, R, R] bool, without gradient: a disc at the middle of each
    flower picture, found much as the evaluator's reader finds it: the centroid of the pixels that
    differ from the border's median colour by more than ``differ`` (mean over channels; the stem
    opened away), with a
    radius of ``frac`` of the flower's (the radius of a disc of its area; at least 1.5 px). The
    renders' centre disc is a quarter of the flower's radius, so the disc stays inside it. A
    picture with almost nothing but background gets the middle of the picture."""
    with torch.no_grad():
        b, _, h, w = images.shape
        # the background row by row (a sky is a vertical gradient): the median of the left and
        # right strips' pixels in each row, smoothed over a few rows
        s = max(1, w // 32)
        sides = torch.cat([images[..., :s], images[..., -s:]], dim=-1).float()      # [B,3,H,2s]
        bg = sides.median(dim=-1, keepdim=True).values                              # [B,3,H,1]
        bg = F.avg_pool2d(bg, (5, 1), 1, (2, 0), count_include_pad=False)
        fg = ((images.float() - bg).abs().mean(1) > differ).float()                 # [B, H, W]
        # an opening (erode, dilate) by a square about R / 13 wide drops the thin stem, which
        # would pull the centroid of a small flower down
        k = 2 * max(1, round(h / 26)) + 1
        fg = -F.max_pool2d(-fg[:, None], k, 1, k // 2)
        fg = F.max_pool2d(fg, k, 1, k // 2)[:, 0]
        yy = torch.arange(h, device=images.device, dtype=torch.float32)[None, :, None]
        xx = torch.arange(w, device=images.device, dtype=torch.float32)[None, None, :]
        area = fg.sum((1, 2))                                                    # [B]
        found = area >= 0.01 * h * w
        cy = torch.where(found, (fg * yy).sum((1, 2)) / area.clamp_min(1), torch.full_like(area, (h - 1) / 2))
        cx = torch.where(found, (fg * xx).sum((1, 2)) / area.clamp_min(1), torch.full_like(area, (w - 1) / 2))
        radius = torch.where(found, (area / math.pi).sqrt(), torch.full_like(area, 0.3 * h))
        r = (frac * radius).clamp_min(1.5)
        return (yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2 <= r[:, None, None] ** 2


def centre_loss(fake: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                flower: torch.Tensor) -> torch.Tensor:
    """L1 between the middle of G's flower pictures [B,3,R,R] (``flower_middle``) and the centre
    colour their captions name (targets [B,3,4] as part_targets gives them, slot 1; mask [B,3];
    flower [B] bool). Like background_loss the target is the lexicon's value, not the reader's:
    a term for the drawing of centres, a few pixels across at 64 px."""
    named = mask[:, 1] * flower.float() * (targets[:, 1, 3] > 0).float()            # [B]
    want = colour_words.lab_to_unit_rgb(gan.pooled_lab(targets[:, 1].float())) * 2 - 1  # [B, 3]
    disc = flower_middle(fake).float()                                              # [B, R, R]
    dist = (fake.float() - want[:, :, None, None]).abs().mean(1)                   # [B, R, R]
    per_image = (dist * disc).sum((1, 2)) / disc.sum((1, 2)).clamp_min(1.0)         # [B]
    return masked_mean(per_image, named)


def pixel_art_loss(fake: torch.Tensor, is_pixel: torch.Tensor,
                   cells: int = PIXEL_CELLS) -> torch.Tensor:
    """L1 between G's pictures [B,3,R,R] and their own means over the pixel-art style's blocks
    (``cells`` blocks a side), over the images whose style is pixel art (is_pixel [B] bool):
    zero exactly when each block is one flat colour, as in the style's renders."""
    block = max(1, fake.shape[2] // cells)
    means = F.avg_pool2d(fake, block)                                          # [B,3,cells,cells]
    blocky = F.interpolate(means, scale_factor=block, mode="nearest")          # [B,3,R,R]
    return masked_mean((fake - blocky).abs().mean((1, 2, 3)), is_pixel.float())


def flat_fill_loss(fake: torch.Tensor, is_flat: torch.Tensor, colours: int = 10,
                   iters: int = 6) -> torch.Tensor:
    """L1 between G's pictures [B,3,R,R] and themselves posterised to ``colours`` colours (a
    few rounds of k-means over each picture's pixels, without gradient), over the images whose
    style is flat (is_flat [B] bool): the flat style's renders are posterised to 8-12 colours,
    so their shading and texture are gone and this is near zero on them."""
    picked = fake[is_flat]                                                     # [n,3,R,R]
    if picked.shape[0] == 0:
        return fake.new_zeros(())
    n, c, h, w = picked.shape
    with torch.no_grad():
        px = picked.flatten(2).transpose(1, 2)                                 # [n,P,3]
        order = px.sum(2).argsort(1)                   # start: pixels at evenly spaced ranks of
        ranks = ((torch.arange(colours, device=px.device) + 0.5) * px.shape[1] / colours).long()
        centres = px.gather(1, order[:, ranks, None].expand(-1, -1, c))          # [n,K,3]
        for _ in range(iters):
            nearest = torch.cdist(px, centres).argmin(2)                       # [n,P]
            sums = torch.zeros_like(centres).scatter_add_(1, nearest[..., None].expand(-1, -1, c), px)
            counts = torch.zeros(n, colours, 1, device=px.device).scatter_add_(
                1, nearest[..., None], torch.ones_like(px[..., :1]))
            centres = torch.where(counts > 0, sums / counts.clamp_min(1), centres)
        nearest = torch.cdist(px, centres).argmin(2)
        flat = centres.gather(1, nearest[..., None].expand(-1, -1, c))          # [n,P,3]
        flat = flat.transpose(1, 2).reshape(n, c, h, w)
    return (picked - flat).abs().mean()


def ema_decay(step: int, target: float) -> float:
    """Ramp-up: early on the EMA follows G closely, later it averages over ~1/(1-target)."""
    return min(target, (1 + step) / (10 + step))


@dataclass
class Nets:
    """What a training step updates: G, D, the EMA copy of G that ships, and (with
    --code-weight) a linear read-out of the labels from G's text code, trained with G and never
    shipped."""
    G: gan.Generator
    D: gan.Discriminator
    G_ema: gan.Generator
    code_head: nn.Linear | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    heads: list                      # [[name, classes], ...] of the labelled data, else []
    use_aux: bool                    # AC-GAN attribute term on D

    @property
    def modules(self) -> dict[str, nn.Module]:
        found = {"G": self.G, "D": self.D, "G_ema": self.G_ema}
        if self.code_head is not None:
            found["code_head"] = self.code_head
        return found

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.opt_g, "D": self.opt_d}


def text_scale_for(embeds: torch.Tensor) -> float:
    """Unit RMS per dimension, like the noise: sqrt(dim) / the mean norm of the embeddings."""
    return round(math.sqrt(embeds.shape[1]) / embeds.norm(dim=1).mean().clamp_min(1e-8).item(), 4)


def build_nets(args, data: CaptionedImages, device: torch.device) -> Nets:
    heads = [list(h) for h in procedural.LABEL_HEADS] if data.labels is not None else []
    use_aux = bool(heads) and args.aux_weight > 0
    text_dim, text_scale = data.embeds.shape[1], text_scale_for(data.embeds)
    gcfg = gan.GeneratorConfig(resolution=args.resolution, ngf=args.ngf, text_dim=text_dim,
                               text_scale=text_scale, colour_queries=args.colour_queries,
                               palette=args.palette)
    dcfg = gan.DiscriminatorConfig(resolution=args.resolution, ndf=args.ndf, text_dim=text_dim,
                                   label_heads=heads if use_aux else [], text_scale=text_scale)
    G, D = gan.Generator(gcfg).to(device), gan.Discriminator(dcfg).to(device)
    G_ema = gan.Generator(gcfg).to(device)
    G_ema.load_state_dict(G.state_dict())
    G_ema.requires_grad_(False)
    if device.type == "cpu":
        G, D, G_ema = (m.to(memory_format=torch.channels_last) for m in (G, D, G_ema))
    use_code = bool(heads) and args.code_weight > 0
    code_head = nn.Linear(gcfg.cond_dim, sum(n for _, n in heads)).to(device) if use_code else None
    # the colour reader's attention logits move by lr / sqrt(key_dim) per step, and the palette
    # head's zero-initialised gates learned about 0.001 per weight in 2,000 steps at lr_g: both
    # take the reader's faster rate
    fast = [p for m in (G.colour_reader, G.palette) if m is not None for p in m.parameters()]
    g_params = [{"params": [p for p in G.parameters() if all(p is not q for q in fast)]}]
    if use_code:  # a probe, not a generator: it may learn ten times faster
        g_params.append({"params": list(code_head.parameters()), "lr": 10 * args.lr_g})
    if fast:
        g_params.append({"params": fast, "lr": args.reader_lr_mult * args.lr_g})
    opt_g = torch.optim.Adam(g_params, lr=args.lr_g, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(D.parameters(), lr=args.lr_d, betas=(0.0, 0.9))
    return Nets(G, D, G_ema, code_head, opt_g, opt_d, heads, use_aux)


def warm_start(nets: Nets, init_path: str, fresh_d: bool, device: torch.device) -> tuple[int, dict]:
    """G (and G_ema) from a shipped file's EMA weights, D as shipped unless ``fresh_d``; text
    weights rescaled so each network computes what it did at the new text scale."""
    init = gan.load_gan(init_path, device=device)
    new_scale = nets.G.cfg.text_scale
    weights = init.generator.state_dict()
    if nets.G.colour_reader is not None and init.generator.colour_reader is None:
        # a new colour reader keeps its fresh weights; its output layer is zero, so G still
        # draws what the shipped file drew
        log.info("--init: %s has no colour reader; a new one starts at zero", init_path)
        weights.update({k: v for k, v in nets.G.state_dict().items()
                        if k.startswith("colour_reader.")})
    if nets.G.palette is not None and init.generator.palette is None:
        log.info("--init: %s has no palette head; a new one starts at zero", init_path)
        weights.update({k: v for k, v in nets.G.state_dict().items() if k.startswith("palette.")})
    for net in (nets.G, nets.G_ema):
        load_state_strict(net, weights, source=f"{init_path} [generator]")
        gan.rescale_text_weights(net, init.generator.cfg.text_scale, new_scale)
    if fresh_d:
        log.info("--fresh-d: the discriminator starts from scratch")
    else:
        load_state_strict(nets.D, init.discriminator.state_dict(),
                          source=f"{init_path} [discriminator]")
        gan.rescale_text_weights(nets.D, init.discriminator.cfg.text_scale, new_scale)
    step = int(init.provenance.get("step", 0))
    log.info("warm start from %s (step %d)", init_path, step)
    return step, {"commands": init.provenance.get("commands", []), "init": str(init_path)}


def start_or_resume(args, nets: Nets, state_path: Path, device: torch.device,
                    argv) -> tuple[int, dict]:
    """(step, history): resumed from the run's state, warm-started from --init, or fresh; the
    history lists every command that trained this model, this one included."""
    step, history = 0, {"commands": []}
    if state_path.is_file():
        step, history = load_train_state(state_path, nets.modules, nets.optimizers, kind="gan")
        log.info("resumed %s at step %d", state_path, step)
    elif args.init:
        step, history = warm_start(nets, args.init, args.fresh_d, device)
    history.setdefault("commands", []).append({"command": command_line("train-gan", argv),
                                               "from_step": step})
    return step, history


def recipe_name(args, nets: Nets) -> str:
    """The loss terms a model trained with, as its provenance records them."""
    return ("hinge+MA-GP+DiffAugment+EMA" + ("+AC" if nets.use_aux else "")
            + (f"+L1@{args.recon_size}px" if args.recon_weight > 0 else "")
            + (f"+colourSWD@{args.colour_size}px" if args.colour_weight > 0 else "")
            + ("+code-readout" if nets.code_head is not None else "")
            + ("+mode-seeking" if args.diversity_weight > 0 else "")
            + ("+angular" if args.angular_weight > 0 else "")
            + (f"+colour-reader{nets.G.cfg.colour_queries}" if nets.G.colour_reader else "")
            + ("+palette" if nets.G.palette is not None else "")
            + ("+binding" if args.binding_weight > 0 else "")
            + ("+background" if args.background_weight > 0 else "")
            + ("+centre" if args.centre_weight > 0 else "")
            + ("+pixel" if args.pixel_weight > 0 else "")
            + ("+flat" if args.flat_weight > 0 else "")
            + ("+named-colours" if args.named_colours else "")
            + ("+styles" if args.styles else ""))


def magp_penalty(D: gan.Discriminator, x: torch.Tensor, s: torch.Tensor, weight: float,
                 power: float) -> torch.Tensor:
    """MA-GP: penalise D's gradient with respect to both the real image and its sentence."""
    xr = x.detach().requires_grad_(True)
    sr = s.detach().requires_grad_(True)
    gx, gs = torch.autograd.grad(D(xr, sr)[0].sum(), (xr, sr), create_graph=True)
    gs = gs / D.cfg.text_scale  # the gradient w.r.t. the sentence D actually reads
    norm = torch.cat([gx.flatten(1), gs.flatten(1)], 1).norm(2, dim=1)
    return weight * (norm ** power).mean()


class Batch(NamedTuple):
    x: torch.Tensor                  # real images [B,3,R,R] in [-1,1]
    s: torch.Tensor                  # their captions' sentence embeddings [B,D]
    labels: torch.Tensor | None      # attribute labels [B,H] (procedural data)
    z: torch.Tensor                  # noise [B,nz]
    w: torch.Tensor                  # their captions' colour words [B,M,D+4]
    parts: tuple | None              # what the colour reader should find ([B,3,4], mask [B,3])
    style: torch.Tensor | None       # index into styles.STYLES [B] (procedural data)


class GANTraining:
    """One run: the networks, the data, the run folder and the step loop."""

    def __init__(self, args, argv, nets: Nets, data: CaptionedImages, out: Path,
                 device: torch.device, rank: int, world: int):
        self.args, self.nets, self.data, self.out = args, nets, data, out
        self.device, self.rank, self.world = device, rank, world
        self.is_main = rank == 0
        self.state_path, self.model_path = out / "state.safetensors", out / "model.safetensors"
        self.config = {"generator": gan.config_dict(nets.G.cfg),
                       "discriminator": gan.config_dict(nets.D.cfg), "args": vars(args)}
        self.step, self.history = start_or_resume(args, nets, self.state_path, device, argv)
        # Several ranks (torchrun): every rank runs the same steps on its own batches and the
        # gradients are averaged after each backward. Not DDP: a GAN step runs D several times
        # per backward (real, fake, the gradient penalty's double backward), which DDP does
        # not allow.
        if world > 1:
            broadcast_weights(nets.modules)
        self.gen = torch.Generator().manual_seed(args.seed * 1000 + rank + self.step)
        if args.bf16 is None:
            args.bf16 = fast_bf16(device)
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
        self.sample_prompts = choose_sample_prompts(
            args.sample_prompts, args.data, [data.captions[int(o)] for o in data.offsets])
        sample = encode_prompts(self.sample_prompts)
        self.sample_s = sample.sentence.to(device)
        self.sample_w = sample.colour_words().to(device)
        self.sample_z = gan.seeded_noise(list(range(len(self.sample_s))), nets.G.cfg.nz).to(device)
        self.stats: dict[str, float] = {}
        self.vocabulary = vocabulary_of(data.captions)

    def aug(self, images: torch.Tensor) -> torch.Tensor:
        return diff_augment(images, self.gen, self.args.translation, self.args.cutout)

    def next_batch(self) -> Batch:
        x, s, labels, w, parts, style = self.data.batch(self.args.batch, self.gen)
        x, s, w = x.to(self.device), s.to(self.device), w.to(self.device)
        parts = None if parts is None else tuple(t.to(self.device) for t in parts)
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        labels = None if labels is None else labels.to(self.device)
        z = torch.randn(self.args.batch, self.nets.G.cfg.nz, generator=self.gen).to(self.device)
        style = None if style is None else style.to(self.device)
        return Batch(x, s, labels, z, w, parts, style)

    def discriminator_step(self, b: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Hinge loss on real, mismatched-text and fake pairs (+ AC-GAN term, + lazy MA-GP)."""
        args, n, stats = self.args, self.nets, self.stats
        with self.autocast:
            with torch.no_grad():
                fake = n.G(b.z, b.s, b.w)
            real_out, mis_out, aux_logits = n.D(self.aug(b.x), b.s, b.s.roll(1, 0))
            fake_out = n.D(self.aug(fake), b.s)[0]
        real_out, mis_out, fake_out = real_out.float(), mis_out.float(), fake_out.float()
        loss_d = F.relu(1 - real_out).mean() + 0.5 * (F.relu(1 + fake_out).mean()
                                                      + F.relu(1 + mis_out).mean())
        if n.use_aux:
            aux_real = gan.aux_loss(aux_logits, b.labels, n.heads)
            loss_d = loss_d + args.aux_weight * aux_real
            stats["aux_real"] = aux_real.item()
        if args.gp_every and self.step % args.gp_every == 0:
            gp = magp_penalty(n.D, b.x, b.s, args.gp_weight, args.gp_power)
            loss_d = loss_d + args.gp_every * gp
            stats["gp"] = gp.item()
        n.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        if self.world > 1:
            average_gradients([n.D], self.world)
        n.opt_d.step()
        return loss_d, {"real": real_out.mean().item(), "fake": fake_out.mean().item(),
                        "mis": mis_out.mean().item()}

    def generator_loss(self, b: Batch) -> torch.Tensor:
        """D's verdict on G's images plus the paired terms that carry the caption to G."""
        args, n, stats = self.args, self.nets, self.stats
        with self.autocast:
            fake = n.G(b.z, b.s, b.w)
            g_out, _, aux_logits = n.D(self.aug(fake), b.s)
            loss_g = -g_out.float().mean()
            if n.use_aux:
                aux_fake = gan.aux_loss(aux_logits, b.labels, n.heads)
                loss_g = loss_g + args.aux_weight * aux_fake
                stats["aux_fake"] = aux_fake.item()
        terms = []
        if args.recon_weight > 0:
            terms.append(("recon", args.recon_weight, F.l1_loss(
                F.adaptive_avg_pool2d(fake.float(), args.recon_size),
                F.adaptive_avg_pool2d(b.x, args.recon_size))))
        if n.code_head is not None:
            terms.append(("code", args.code_weight,
                          gan.aux_loss(n.code_head(n.G.text_code(b.s, b.w)), b.labels, n.heads)))
        if args.diversity_weight > 0:
            k = max(1, args.batch // 4)     # a batch of 1 still has one pair
            z2 = torch.randn(k, n.G.cfg.nz, generator=self.gen).to(self.device)
            with self.autocast:
                fake2 = n.G(z2, b.s[:k], b.w[:k])
            terms.append(("diversity", args.diversity_weight,
                          mode_seeking_term(fake[:k].float(), fake2.float(), b.z[:k], z2)))
        if args.colour_weight > 0:
            terms.append(("colour", args.colour_weight,
                          colour_distance(fake.float(), b.x, args.colour_size, self.gen)))
        if args.binding_weight > 0 and n.G.colour_reader is not None and b.parts is not None:
            terms.append(("binding", args.binding_weight, binding_loss(n.G, b.w, *b.parts)))
        if args.background_weight > 0 and b.parts is not None and b.labels is not None:
            flower = b.labels[:, 0] == procedural.DOMAINS.index("flower")
            terms.append(("background", args.background_weight,
                          background_loss(fake.float(), *b.parts, flower)))
        if args.centre_weight > 0 and b.parts is not None and b.labels is not None:
            flower = b.labels[:, 0] == procedural.DOMAINS.index("flower")
            terms.append(("centre", args.centre_weight,
                          centre_loss(fake.float(), *b.parts, flower)))
        if args.pixel_weight > 0 and b.style is not None:
            terms.append(("pixel", args.pixel_weight,
                          pixel_art_loss(fake.float(), b.style == STYLES.index("pixel"))))
        if args.flat_weight > 0 and b.style is not None:
            terms.append(("flat", args.flat_weight,
                          flat_fill_loss(fake.float(), b.style == STYLES.index("flat"))))
        if args.angular_weight > 0:
            terms.append(("angular", args.angular_weight,
                          F.l1_loss(angular_spectrum(fake.float()), angular_spectrum(b.x))))
        for name, weight, value in terms:
            loss_g = loss_g + weight * value
            stats[name] = value.item()
        return loss_g

    def generator_step(self, b: Batch) -> torch.Tensor:
        n = self.nets
        n.D.requires_grad_(False)
        loss_g = self.generator_loss(b)
        n.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        if self.world > 1:
            average_gradients([n.G] + ([n.code_head] if n.code_head is not None else []), self.world)
        n.opt_g.step()
        n.D.requires_grad_(True)
        return loss_g

    @torch.no_grad()
    def update_ema(self) -> None:
        beta = ema_decay(self.step, self.args.ema)
        for pe, p in zip(self.nets.G_ema.parameters(), self.nets.G.parameters()):
            pe.lerp_(p, 1 - beta)
        for be, b in zip(self.nets.G_ema.buffers(), self.nets.G.buffers()):
            be.copy_(b)

    def save(self) -> None:
        """Resumable state and the run's model; on every rank (the rank check is collective)."""
        if self.world > 1:
            check_ranks_agree(self.nets.modules, self.step)
        if not self.is_main:
            return
        save_train_state(self.state_path, self.nets.modules, self.nets.optimizers, self.step,
                         dict(self.history, step=self.step), kind="gan", config=self.config,
                         encoder=self.data.encoder_id)
        prov = {"step": self.step, "commands": self.history["commands"], "data": self.args.data,
                "recipe": recipe_name(self.args, self.nets),
                "saved": time.strftime("%Y-%m-%d %H:%M:%S")}
        gan.save_gan(self.model_path, self.nets.G_ema, self.nets.D, encoder_id=self.data.encoder_id,
                     provenance=prov, dtype=torch.float32, vocabulary=self.vocabulary)

    def sample_grid(self) -> None:
        with torch.no_grad():
            grid = self.nets.G_ema(self.sample_z, self.sample_s, self.sample_w)
        save_image_grid(grid, self.out / "samples" / f"step_{self.step:06d}.png", nrow=8,
                        captions=self.sample_prompts)

    def run(self) -> None:
        args = self.args
        logf = open(self.out / "log.jsonl", "a") if self.is_main else None
        bar = make_progress(args.steps, self.step, desc="train-gan") if self.is_main else None
        t0 = time.time()
        if self.is_main and not (self.out / "samples" / f"step_{self.step:06d}.png").is_file():
            self.sample_grid()  # where the run starts, to compare later grids with
        # --follow-load changes torch's thread count; it is restored after the run
        with GracefulStop() as stop, intra_op_threads(torch.get_num_threads()):
            while self.step < args.steps and not stop.requested:
                if (args.follow_load and self.device.type == "cpu"
                        and self.step % LOAD_CHECK_EVERY == 0):
                    n = threads_beside_load(args.threads)
                    if n != torch.get_num_threads():
                        torch.set_num_threads(n)
                b = self.next_batch()
                loss_d, scores = self.discriminator_step(b)
                loss_g = self.generator_step(b)
                self.update_ema()
                self.step += 1
                if not torch.isfinite(loss_d) or not torch.isfinite(loss_g):
                    raise FloatingPointError(
                        f"step {self.step}: loss is not finite (D {loss_d.item()}, G "
                        f"{loss_g.item()}); resume from the last checkpoint with a lower learning "
                        "rate or a larger --gp-weight")
                if self.step % args.save_every == 0:
                    self.save()
                if not self.is_main:
                    continue
                self.stats.update(d=loss_d.item(), g=loss_g.item(), **scores)
                bar.update(1)
                if self.step % args.log_every == 0:
                    bar.set_postfix({k: f"{v:.3f}" for k, v in self.stats.items()})
                    logf.write(json.dumps({"step": self.step, "time": round(time.time() - t0, 1),
                                           **{k: round(v, 4) for k, v in self.stats.items()}}) + "\n")
                    logf.flush()
                if self.step % args.sample_every == 0:
                    self.sample_grid()
            self.save()
        if bar is not None:
            bar.close()
            logf.close()
            print(f"saved {self.model_path} at step {self.step}")


def main(argv=None) -> int:
    stages = argv_per_stage(argv)
    if stages is not None:          # --recipe NAME: every stage in order, each resuming the last
        return next((rc for rc in map(main, stages) if rc), 0)
    args = parse_with_recipe(build_parser(), argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.export:
        return export(Path(args.out), args.export)
    set_threads(args.threads)
    device, rank, world = _setup_distributed(args.device)
    torch.manual_seed(args.seed + rank)
    out = prepare_run_folder(args.out) if rank == 0 else Path(args.out)
    data = load_training_data(args.data, args.resolution, args.n_images, args.seed,
                              Path(args.cache_dir), device, args.captions_per_image,
                              args.named_colours, args.styles)
    nets = build_nets(args, data, device)
    GANTraining(args, argv, nets, data, out, device, rank, world).run()
    return 0


def choose_sample_prompts(path: str | None, data_spec: str, captions: list[str],
                          n: int = 16) -> list[str]:
    """Prompts of the sample grids: the lines of ``path``; else the built-in prompts for the
    procedural data; else ``n`` of ``captions`` (one per image: each image's first caption)
    spread evenly over the data set."""
    if path:
        lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()]
        lines = [ln for ln in lines if ln]
        if not lines:
            raise ValueError(f"--sample-prompts {path}: the file holds no prompt (one per line)")
        return lines[:64]
    if not data_spec.startswith("folder:"):
        return list(SAMPLE_PROMPTS)
    picks = sorted({round(i * (len(captions) - 1) / max(n - 1, 1)) for i in range(n)})
    return [captions[i] for i in picks]


if __name__ == "__main__":
    raise SystemExit(main())
