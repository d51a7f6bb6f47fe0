"""GAN inversion: find the noise and sentence from which the generator redraws a given image.

Images this pack generated never need it (their PROMPTGAN_LATENT is exact); images from
elsewhere (of the model's domain) do, and the result is approximate. Two parts, as in
encoder-then-optimise inversion:

- ``Inverter``: a small CNN image [B,3,R,R] -> (z [B,nz], sentence [B,D] on the unit sphere),
  trained on the generator's own samples, whose (z, sentence) are known:

      python <pack> train-inverter --model models/weights/promptgan_default.safetensors

  It is saved (safetensors, kind "inverter") beside the model as ``<model stem>_inverter.safetensors``,
  where ``find_inverter`` looks for it.
- ``invert``: Adam on z (and on the sentence, kept on the unit sphere) minimising pixel L1 + L2
  plus a distance between the discriminator's features of the two images, starting from the
  best of several seeded random starts and (when there is one) the inverter's guess.

Also here, because refinement needs it too: ``work_copy`` gives a private copy of a network
that autograd can use even when the model was loaded under ``torch.inference_mode()`` (as ComfyUI
and the headless runner run every node), so the original's weights are never touched.
"""
from __future__ import annotations

import functools
import itertools
import logging
import math
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import (
    CheckpointError,
    build_network,
    load_checkpoint,
    save_checkpoint,
)
from .devices import move
from .generate import GANLatent, model_id

log = logging.getLogger("PromptGAN")

INVERTER_KIND = "inverter"
INVERTER_SUFFIX = "_inverter.safetensors"


# ---------------------------------------------------------------------------------------------
# networks usable by autograd whatever mode they were loaded in
# ---------------------------------------------------------------------------------------------

_copies: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _fingerprint(module: nn.Module) -> tuple:
    """Changes when the module's tensors are replaced or (outside inference mode) edited."""
    return tuple((t.data_ptr(), t.device.type, t.dtype, 0 if t.is_inference() else t._version)
                 for t in itertools.chain(module.parameters(), module.buffers()))


def work_copy(module: nn.Module, device=None) -> nn.Module:
    """A private frozen copy of ``module`` for gradient loops (cached per module).

    Why a copy: weights created under ``torch.inference_mode()`` (a model loaded by a node, as
    ComfyUI runs every node in inference mode) are inference tensors, which autograd refuses to
    save for backward, and gradients with respect to the *input* need them saved. The copy holds
    ordinary tensors in channels_last layout (about 1.3x faster convolutions on CPU), never
    shares storage with the original, and has requires_grad off, so nothing a caller does to it
    can reach the model's weights. Call it with inference mode off.
    """
    key = _fingerprint(module)
    entry = _copies.get(module)
    if entry is None or entry[0] != key:
        with torch.inference_mode(False):
            copy = type(module)(module.cfg)
            copy.load_state_dict({k: v.clone() for k, v in module.state_dict().items()})
            copy.eval().requires_grad_(False)
            copy.to(memory_format=torch.channels_last)
        entry = (key, copy)
        _copies[module] = entry
    copy = entry[1]
    if device is not None:
        move(copy, device)
    return copy


def grad_enabled(fn):
    """Run ``fn`` with autograd on, even when called under torch.inference_mode()."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.inference_mode(False), torch.enable_grad():
            return fn(*args, **kwargs)
    return wrapper


def plain(t: torch.Tensor) -> torch.Tensor:
    """An ordinary (non-inference) detached copy of ``t``; call under inference_mode(False)."""
    return t.detach().clone()


# ---------------------------------------------------------------------------------------------
# the inversion encoder
# ---------------------------------------------------------------------------------------------

@dataclass
class InverterConfig:
    resolution: int = 64
    nz: int = 100
    text_dim: int = 384
    width: int = 32
    hidden: int = 512


class Inverter(nn.Module):
    """image [B,3,R,R] in [-1,1] -> (z [B,nz], sentence [B,text_dim] with unit norm)."""

    def __init__(self, cfg: InverterConfig):
        super().__init__()
        self.cfg = cfg
        n_down = int(math.log2(cfg.resolution)) - 2                 # down to 4x4
        if 2 ** (n_down + 2) != cfg.resolution or n_down < 1:
            raise ValueError(f"inverter resolution must be a power of two >= 8, got {cfg.resolution}")
        chans = [cfg.width * min(2 ** i, 8) for i in range(n_down + 1)]
        layers: list[nn.Module] = [nn.Conv2d(3, chans[0], 3, 1, 1), nn.LeakyReLU(0.2)]
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(a, b, 4, 2, 1), nn.LeakyReLU(0.2),
                       nn.Conv2d(b, b, 3, 1, 1), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(chans[-1] * 16, cfg.hidden), nn.LeakyReLU(0.2))
        self.to_z = nn.Linear(cfg.hidden, cfg.nz)
        self.to_s = nn.Linear(cfg.hidden, cfg.text_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.cfg.resolution
        assert x.shape[1:] == (3, r, r), f"image must be [B, 3, {r}, {r}], got {tuple(x.shape)}"
        h = self.fc(self.body(x))                                    # [B, hidden]
        return self.to_z(h), F.normalize(self.to_s(h), dim=1)


def inverter_config_for(model, width: int = 32) -> InverterConfig:
    g = model.generator.cfg
    return InverterConfig(resolution=g.resolution, nz=g.nz, text_dim=g.text_dim, width=width)


def check_inverter(net: Inverter, model, source: str = "inverter") -> None:
    """A clear error when an inverter does not fit a model's shapes or text encoder."""
    g = model.generator.cfg
    want = (g.resolution, g.nz, g.text_dim)
    got = (net.cfg.resolution, net.cfg.nz, net.cfg.text_dim)
    if want != got:
        raise CheckpointError(f"{source}: made for (resolution, nz, text_dim) = {got}, model "
                              f"'{model.name}' has {want}")
    enc = getattr(net, "encoder_id", "")
    if enc and enc != model.encoder_id:
        raise CheckpointError(f"{source}: trained with text encoder '{enc}', model '{model.name}' "
                              f"with '{model.encoder_id}'")


def save_inverter(path, net: Inverter, *, encoder_id: str, provenance: dict,
                  dtype: torch.dtype | None = torch.float16) -> Path:
    """Safetensors kind "inverter" (fp16 by default: it only gives a starting point)."""
    return save_checkpoint(path, net.state_dict(), kind=INVERTER_KIND, config=asdict(net.cfg),
                           encoder=encoder_id, resolution=net.cfg.resolution, provenance=provenance,
                           dtype=dtype)


def load_inverter(path, model=None, device="cpu") -> Inverter:
    """Load strictly; with ``model`` also check that it fits (shapes, text encoder)."""
    ck = load_checkpoint(path, kind=INVERTER_KIND)
    try:
        cfg = InverterConfig(**ck.config)
    except TypeError as exc:
        raise CheckpointError(f"{path}: config does not describe an inverter ({exc})") from exc
    net = build_network(lambda: Inverter(cfg), ck.tensors, source=str(path))
    net.encoder_id = ck.encoder
    net.provenance = ck.provenance
    net.eval().requires_grad_(False)
    if model is not None:
        check_inverter(net, model, str(path))
        trained_for = ck.provenance.get("gan", "")
        if trained_for and trained_for != model.name:
            log.warning("PromptGAN: inverter %s was trained for model '%s', used with '%s'; "
                        "its guess may be poor (optimisation still corrects it)",
                        path, trained_for, model.name)
    return net.to(device)


def inverter_path_for(model_path) -> Path:
    p = Path(model_path)
    return p.with_name(p.stem + INVERTER_SUFFIX)


def find_inverter(model) -> Path | None:
    """The inverter saved beside the model file (``<stem>_inverter.safetensors``), if any."""
    if not model.path:
        return None
    p = inverter_path_for(model.path)
    return p if p.is_file() else None


# ---------------------------------------------------------------------------------------------
# optimisation-based inversion
# ---------------------------------------------------------------------------------------------

def _recon_loss(x: torch.Tensor, target: torch.Tensor, d, feat_target, feature_weight: float):
    """Per-image loss [B]: pixel L1 + L2 (+ discriminator-feature MSE)."""
    loss = (x - target).abs().mean((1, 2, 3)) + (x - target).pow(2).mean((1, 2, 3))
    if d is not None and feature_weight > 0:
        loss = loss + feature_weight * (d.features(x) - feat_target).pow(2).mean((1, 2, 3))
    return loss


def seed_mix(seed: int, index: int) -> int:
    return (int(seed) * 1_000_003 + int(index) * 7919 + 17) % (2 ** 63)


@torch.no_grad()
def _best_start(g, target, s, starts: int, seed: int, chunk: int, guess=None) -> torch.Tensor:
    """For each image the best, by pixel loss, of ``starts`` seeded noise vectors (and of the
    inverter's ``guess`` [B,nz] when given) -> z [B,nz]."""
    b, nz = target.shape[0], g.cfg.nz
    best = []
    for i in range(b):
        rng = torch.Generator().manual_seed(seed_mix(seed, i))
        cand = torch.randn(starts, nz, generator=rng).to(target.device)    # [K, nz]
        if guess is not None:
            cand = torch.cat([guess[i:i + 1], cand])
        losses = []
        for k in range(0, cand.shape[0], chunk):
            zk = cand[k:k + chunk]
            x = g(zk, s[i:i + 1].expand(zk.shape[0], -1))
            losses.append(_recon_loss(x, target[i:i + 1], None, None, 0.0))
        best.append(cand[torch.cat(losses).argmin()])
    return torch.stack(best)


def _checked_start_sentence(model, image: torch.Tensor, sentence: torch.Tensor | None,
                            encoder: Inverter | None, device: torch.device) -> torch.Tensor | None:
    """Check ``invert``'s image and sentence; -> the sentence as unit rows [B,D] on ``device``
    (or None when the inverter guesses it)."""
    r = model.resolution
    if image.dim() != 4 or image.shape[1:] != (3, r, r):
        raise ValueError(f"invert: image must be [B, 3, {r}, {r}] at the model's resolution, "
                         f"got {tuple(image.shape)}")
    b = image.shape[0]
    text_dim = model.generator.cfg.text_dim
    if sentence is not None:
        if sentence.dim() != 2 or sentence.shape[0] not in (1, b) or sentence.shape[1] != text_dim:
            raise ValueError(f"invert: sentence must be [{b} or 1, {text_dim}], got "
                             f"{tuple(sentence.shape)}")
        sentence = F.normalize(plain(sentence).float(), dim=1).expand(b, -1).to(device)
    if encoder is None and sentence is None:
        raise ValueError("invert: without an inverter a starting sentence is needed (the prompt "
                         "that describes the image)")
    return sentence


@torch.no_grad()
def _chunk_start(g, d, encoder: Inverter | None, target: torch.Tensor,
                 sentence: torch.Tensor | None, starts: int, seed: int, chunk: int,
                 feature_weight: float, device: torch.device):
    """Where one chunk's fit starts -> (z0 [b,nz]: the best of ``starts`` seeded noise vectors
    and the inverter's guess; s0 [b,D]: ``sentence``, else the inverter's guess; the
    discriminator's features of the target, or None when that term is off)."""
    guess = None
    if encoder is not None:
        move(encoder, device)
        guess, s0 = encoder(target)
        if sentence is not None:
            s0 = sentence
    else:
        s0 = sentence
    z0 = _best_start(g, target, s0, starts, seed, chunk, guess)
    feat_target = d.features(target) if d is not None and feature_weight > 0 else None
    return z0, s0, feat_target


@torch.no_grad()
def _keep_better(loss, best_loss, z, u, best_z, best_u) -> torch.Tensor:
    """Copy the rows of (z, u) whose ``loss`` beats ``best_loss`` into (best_z, best_u), in
    place -> the new best loss per image."""
    better = loss < best_loss
    best_z[better] = z.detach()[better]
    best_u[better] = u.detach()[better]
    return torch.where(better, loss, best_loss)


def _fit_chunk(g, d, target: torch.Tensor, feat_target, z0: torch.Tensor, s0: torch.Tensor,
               steps: int, *, fit_sentence: bool, lr: float, sentence_lr: float,
               feature_weight: float, prior_weight: float, progress=None, check_interrupt=None):
    """``steps`` Adam steps on one chunk from (z0, s0) -> the best iterate per image (z [b,nz],
    sentence [b,D] with unit rows). progress(k) after step k; check_interrupt() before each."""
    z = z0.detach().clone().requires_grad_(True)
    u = s0.detach().clone().requires_grad_(fit_sentence)
    groups = [{"params": [z], "lr": lr}]
    if fit_sentence:
        groups.append({"params": [u], "lr": sentence_lr})
    opt = torch.optim.Adam(groups, betas=(0.9, 0.999))
    params = [z, u] if fit_sentence else [z]

    def recon():                                                         # [b]
        return _recon_loss(g(z, F.normalize(u, dim=1)), target, d, feat_target, feature_weight)

    with torch.no_grad():
        best_loss = recon()
    best_z, best_u = z.detach().clone(), u.detach().clone()
    for k in range(steps):
        if check_interrupt is not None:
            check_interrupt()
        per = recon()
        shell = (z.pow(2).mean(1).sqrt() - 1).pow(2)                       # [b]
        grads = torch.autograd.grad((per + prior_weight * shell).sum(), params)
        best_loss = _keep_better(per, best_loss, z, u, best_z, best_u)
        for p, gr in zip(params, grads):
            p.grad = gr
        opt.step()
        if progress is not None:
            progress(k + 1)
    with torch.no_grad():                                               # the last iterate too
        _keep_better(recon(), best_loss, z, u, best_z, best_u)
    return best_z, F.normalize(best_u, dim=1)


@grad_enabled
def invert(model, image: torch.Tensor, sentence: torch.Tensor | None = None, steps: int = 50,
           encoder: Inverter | None = None, *, fit_sentence: bool = True, starts: int = 8,
           seed: int = 0, lr: float = 0.05, sentence_lr: float = 0.01, feature_weight: float = 0.1,
           prior_weight: float = 0.05, device="cpu", chunk: int = 8, progress=None,
           check_interrupt=None):
    """image [B,3,R,R] in [-1,1] at the model's resolution -> GANLatent (z [B,nz], sentence [B,D]).

    Start: for each image the best (pixel loss) of ``starts`` seeded random noise vectors and,
    with an inverter (``encoder``), its guess; the sentence starts at the inverter's guess or
    ``sentence``. ``sentence`` [B,D] (or [1,D]) also
    replaces the inverter's sentence guess when given. Then ``steps`` Adam steps on z (and on the
    sentence when ``fit_sentence``, which stays on the unit sphere) minimising pixel L1 + L2, a
    discriminator-feature distance (when the model has a discriminator) and a weak pull of |z|
    towards the noise shell. The best iterate per image is returned. Deterministic for a seed.
    Model weights are never changed (the loop runs on ``work_copy`` networks).
    """
    device = torch.device(device)
    sentence = _checked_start_sentence(model, image, sentence, encoder, device)
    g = work_copy(model.generator, device)
    d = work_copy(model.discriminator, device) if model.discriminator is not None else None
    target = plain(image).float().to(device)
    b, steps = image.shape[0], int(steps)
    total = max(steps, 0) * math.ceil(b / chunk)
    zs, ss = [], []
    for n, start in enumerate(range(0, b, chunk)):
        x_t = target[start:start + chunk]
        s_t = None if sentence is None else sentence[start:start + chunk]
        z0, s0, feat_t = _chunk_start(g, d, encoder, x_t, s_t, starts, seed_mix(seed, start), chunk,
                                      feature_weight, device)
        done = n * max(steps, 0)                    # steps of the chunks before this one
        report = None if progress is None else (lambda k, done=done: progress(done + k, total))
        z, s = _fit_chunk(g, d, x_t, feat_t, z0, s0, steps, fit_sentence=fit_sentence, lr=lr,
                          sentence_lr=sentence_lr, feature_weight=feature_weight,
                          prior_weight=prior_weight, progress=report,
                          check_interrupt=check_interrupt)
        zs.append(z.cpu())
        ss.append(s.cpu())
    return GANLatent(torch.cat(zs), torch.cat(ss), [f"(inverted image {i})" for i in range(b)],
                     [seed_mix(seed, i) for i in range(b)], model.encoder_id, model_id(model))


# ---------------------------------------------------------------------------------------------
# training the inverter on the generator's own samples
# ---------------------------------------------------------------------------------------------
