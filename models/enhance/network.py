"""Text-conditioned compact restoration / super-resolution network.

A plain stack of 3x3 convolutions with PReLU, all at the input (low) resolution, then a
pixel shuffle to the output scale, plus an enlarged copy of the input as a skip (the network
only predicts the residual; ``EnhancerConfig.skip``: nearest-neighbour or bicubic). This is the
shape of Real-ESRGAN's SRVGGNetCompact, which is cheap per pixel and runs well in channels_last
on a CPU.

Text enters through FiLM: a small MLP maps the sentence embedding [B, text_dim] to one
(gamma, beta) pair per body layer, applied as ``h * (1 + gamma) + beta``. The MLP's last layer
starts at zero, so a fresh network ignores the text and behaves as the unconditioned network.
No text (``None``) uses a learned null embedding, meaning "fix whatever is wrong".

Global context: low light and colour casts are properties of the whole picture, which a stack of
3x3 convolutions (receptive field about 30 input pixels) cannot see. A few statistics of the
*whole* input (per-channel mean and spread, luminance quantiles; ``image_stats``) join the text in
the FiLM MLP. Tiled inference computes them once on the full image and hands them to every
tile, so tiles agree on how bright the picture should be. From the same hidden vector a global
tone head predicts per-channel gains g and a gamma, and the input becomes (x / g) ** (1 / gamma)
before the convolutions: low light and colour casts are inverted by a global curve (zero-init:
the identity), and the convolutions keep their capacity for local restoration.

Noise level: the 12th statistic is the standard deviation of white noise in the input, estimated
by Immerkaer's method (``noise_level``), as FFDNet feeds its noise map: without it the
convolutions cannot tell grain from fine texture and denoise timidly. Networks saved with
``context_dim`` 11 read only the first 11 statistics.

Non-local means (``EnhancerConfig.denoise`` "nlm"): before the tone curve the input is blended
with a non-local-means copy of itself, x + a (NLM(x) - x). The noise level above sets the
filter's sigma; the FiLM MLP chooses, per image, the blend a (a sigmoid, starting near 1) and
the filter strength h (a factor of 0.5..2 on the starting 0.8 sigma), so an instruction that
asks to keep the grain, or a clean picture, can switch it off. Files without ``denoise`` load
as "none".
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checkpoint import CheckpointError, build_network
from .nonlocal_means import nl_means
from .nonlocal_means import radius as nlm_radius

CONTEXT_DIM = 12
CONTEXT_DIMS = (0, 11, CONTEXT_DIM)   # 11: the statistics without the noise level (older files)
SKIP_MODES = ("nearest", "bicubic")
DENOISE_MODES = ("none", "nlm")
NLM_H = 0.8          # starting non-local-means strength h, in units of the noise sigma
NLM_GATE_INIT = 3.0  # starting gate logit: a fresh non-local-means head blends in 95 % of it
NLM_SKIP_BELOW = 1e-3  # blends this small are not worth the filter's time: the input is kept
STATS_SIZE = 128   # statistics are taken on an area-downsampled copy at most this big
NOISE_WINDOW = 256  # the noise level is read on a central crop at most this big (full resolution)
NOISE_SCALE = 10.0  # noise sigma 0..0.1 (of the 0..1 range) -> a context entry of 0..1


def noise_level(x: torch.Tensor, window: int | None = NOISE_WINDOW) -> torch.Tensor:
    """[B, C, H, W] in 0..1 -> [B]: standard deviation of white Gaussian noise, estimated by
    Immerkaer's method (the mean absolute response of a Laplacian-difference kernel, which cancels
    smooth image content), averaged over the channels, on a central crop of at most ``window``
    pixels (None: the whole image); 0 for images under 3 px."""
    assert x.dim() == 4, x.shape
    h, w = x.shape[2:]
    if min(h, w) < 3:
        return x.new_zeros(x.shape[0], dtype=torch.float32)
    window = window or max(h, w)
    top, left = max(0, (h - window) // 2), max(0, (w - window) // 2)
    crop = x[:, :, top:top + window, left:left + window].float()
    k = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]], device=x.device)
    r = F.conv2d(crop.flatten(0, 1)[:, None], k[None, None]).abs()      # [B*C, 1, h-2, w-2]
    return (math.sqrt(math.pi / 2) / 6) * r.view(x.shape[0], -1).mean(1)


def image_stats(x: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in 0..1 -> [B, 12]: channel means, channel stds, luminance quantiles, noise
    level (``noise_level`` * NOISE_SCALE, read before any downsampling)."""
    assert x.dim() == 4 and x.shape[1] == 3, x.shape
    x = x.float()
    noise = noise_level(x) * NOISE_SCALE
    h, w = x.shape[2:]
    if max(h, w) > STATS_SIZE:
        f = STATS_SIZE / max(h, w)
        x = F.interpolate(x, size=(max(1, round(h * f)), max(1, round(w * f))), mode="area")
    flat = x.flatten(2)                                         # [B, 3, N]
    mean, std = flat.mean(2), flat.std(2, unbiased=False)
    lum = (0.299 * flat[:, 0] + 0.587 * flat[:, 1] + 0.114 * flat[:, 2])   # [B, N]
    q = torch.quantile(lum, torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=lum.dtype,
                                          device=lum.device), dim=1).t()   # [B, 5]
    return torch.cat([mean, std * 2, q, noise[:, None]], 1)


@dataclass
class EnhancerConfig:
    scale: int = 4            # output size / input size: 1, 2 or 4
    channels: int = 48        # feature channels of every body layer
    n_convs: int = 12         # body conv layers (each 3x3 + PReLU + FiLM)
    text_dim: int = 384       # sentence-embedding size (MiniLM: 384)
    film_hidden: int = 128    # hidden width of the text -> FiLM MLP
    context_dim: int = 12     # global image statistics fed to the FiLM MLP (0 = none; 11 = no
                              # noise level)
    tone: bool = True         # global tone head: per-channel gain + gamma applied to the input
    # what the residual is added to: "nearest" (SRVGGNetCompact; the body must first learn to
    # interpolate) or "bicubic" (the network starts as bicubic and learns only the restoration:
    # on noisy x4 inputs 1.2 dB better than nearest after the same 300 steps, measured)
    skip: str = "nearest"
    # a non-local-means stage in front of the convolutions ("nlm"), blended in by the FiLM MLP
    denoise: str = "none"

    def __post_init__(self):
        if self.scale not in (1, 2, 4):
            raise ValueError(f"EnhancerConfig.scale must be 1, 2 or 4, got {self.scale}")
        if self.context_dim not in CONTEXT_DIMS:
            raise ValueError(f"EnhancerConfig.context_dim must be one of {CONTEXT_DIMS}, got "
                             f"{self.context_dim}")
        if self.skip not in SKIP_MODES:
            raise ValueError(f"EnhancerConfig.skip must be one of {SKIP_MODES}, got {self.skip!r}")
        if self.denoise not in DENOISE_MODES:
            raise ValueError(f"EnhancerConfig.denoise must be one of {DENOISE_MODES}, got "
                             f"{self.denoise!r}")
        if self.channels < 1 or self.n_convs < 1 or self.text_dim < 1 or self.film_hidden < 1:
            raise ValueError(f"EnhancerConfig sizes must be positive: {self}")

    @classmethod
    def from_dict(cls, d: dict) -> EnhancerConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown EnhancerConfig fields {unknown}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


def apply_tone(x: torch.Tensor, tone: torch.Tensor) -> torch.Tensor:
    """x [B, 3, H, W], tone [B, 4] (raw) -> (x / g) ** (1 / gamma), g = exp(1.5 tanh(t[:3])),
    gamma = exp(0.8 tanh(t[3])); zero tone is the identity."""
    log_g = 1.5 * torch.tanh(tone[:, :3].float())
    inv_gamma = torch.exp(-0.8 * torch.tanh(tone[:, 3].float()))
    y = (x.float() * torch.exp(-log_g)[:, :, None, None]).clamp(1e-3, 1.0)
    return (y ** inv_gamma[:, None, None, None]).to(x.dtype)


class TextFiLM(nn.Module):
    """sentence [B, text_dim] (or None) + context -> FiLM gamma, beta [B, n_layers, C], tone,
    non-local-means controls."""

    def __init__(self, text_dim: int, hidden: int, n_layers: int, channels: int, context_dim: int = 0,
                 tone: bool = False, nlm: bool = False):
        super().__init__()
        self.n_layers, self.channels = n_layers, channels
        self.null = nn.Parameter(torch.zeros(text_dim))
        self.fc1 = nn.Linear(text_dim, hidden)
        self.ctx = nn.Linear(context_dim, hidden) if context_dim else None
        self.fc2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, 2 * n_layers * channels)
        nn.init.zeros_(self.out.weight)   # zero-init: starts as the unconditioned network
        nn.init.zeros_(self.out.bias)
        self.tone = nn.Linear(hidden, 4) if tone else None
        if self.tone is not None:         # zero-init: starts as the identity curve
            nn.init.zeros_(self.tone.weight)
            nn.init.zeros_(self.tone.bias)
        self.nlm = nn.Linear(hidden, 2) if nlm else None
        if self.nlm is not None:          # starts as a fixed blend of NLM_GATE_INIT, h = NLM_H
            nn.init.zeros_(self.nlm.weight)
            with torch.no_grad():
                self.nlm.bias.copy_(torch.tensor([NLM_GATE_INIT, 0.0]))

    def forward(self, text: torch.Tensor | None, batch: int, null_mask: torch.Tensor | None = None,
                context: torch.Tensor | None = None):
        """-> gamma, beta [B, L, C], tone [B, 4] (or None): log channel gains, log gamma, and
        nlm [B, 2] (or None): blend logit, log strength (raw; see ``nlm_controls``).

        ``null_mask`` [B] bool replaces those rows of ``text`` with the null embedding;
        ``context`` [B, context_dim] are the global image statistics."""
        if text is None:
            text = self.null.unsqueeze(0).expand(batch, -1)
        elif null_mask is not None:
            text = torch.where(null_mask[:, None].to(text.device), self.null.to(text.dtype), text)
        assert text.dim() == 2 and text.shape[1] == self.null.shape[0], \
            f"text embedding must be [B, {self.null.shape[0]}], got {tuple(text.shape)}"
        if text.shape[0] == 1 and batch > 1:
            text = text.expand(batch, -1)
        assert text.shape[0] == batch, f"text batch {text.shape[0]} != image batch {batch}"
        h = self.fc1(text.to(self.fc1.weight.dtype))
        if self.ctx is not None:
            assert context is not None and context.shape == (batch, self.ctx.in_features), \
                f"context must be [{batch}, {self.ctx.in_features}], got {getattr(context, 'shape', None)}"
            h = h + self.ctx(context.to(h.dtype))
        h = F.silu(h)
        h = F.silu(self.fc2(h))
        gb = self.out(h).view(batch, 2, self.n_layers, self.channels)
        tone = self.tone(h) if self.tone is not None else None
        nlm = self.nlm(h) if self.nlm is not None else None
        return gb[:, 0], gb[:, 1], tone, nlm


def nlm_controls(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, 2] raw -> blend a [B] in 0..1 (sigmoid) and strength h [B] in units of sigma
    (NLM_H * 2 ** tanh(raw[:, 1]): 0.5x..2x the starting strength)."""
    raw = raw.float()
    return torch.sigmoid(raw[:, 0]), NLM_H * torch.exp2(torch.tanh(raw[:, 1]))


def apply_nlm(x: torch.Tensor, raw: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x [B, 3, H, W], raw [B, 2], sigma [B] -> x + a (NLM(x) - x), the filter run only on the
    images whose blend a is at least NLM_SKIP_BELOW and whose noise sigma is above zero."""
    blend, strength = nlm_controls(raw)
    run = (blend >= NLM_SKIP_BELOW) & (sigma > 0)
    if not bool(run.any()):
        return x
    idx = run.nonzero()[:, 0]
    xr = x[idx]
    mixed = xr.float() + blend[idx, None, None, None] * (nl_means(xr, sigma[idx], strength[idx]) - xr.float())
    return x.index_copy(0, idx, mixed.to(x.dtype))


class Enhancer(nn.Module):
    """image [B, 3, H, W] in 0..1 (+ sentence [B, D] or None) -> [B, 3, sH, sW]."""

    def __init__(self, cfg: EnhancerConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.head_act = nn.PReLU(c)
        self.body = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for _ in range(cfg.n_convs))
        self.acts = nn.ModuleList(nn.PReLU(c) for _ in range(cfg.n_convs))
        self.tail = nn.Conv2d(c, 3 * cfg.scale * cfg.scale, 3, padding=1)
        self.film = TextFiLM(cfg.text_dim, cfg.film_hidden, cfg.n_convs, c, cfg.context_dim, cfg.tone,
                             nlm=cfg.denoise == "nlm")

    @property
    def scale(self) -> int:
        return self.cfg.scale

    @property
    def receptive_radius(self) -> int:
        """Input pixels each output pixel can see on either side (head + body + tail, and the
        bicubic skip's two-pixel support)."""
        return (self.cfg.n_convs + 2 + (2 if self.cfg.skip == "bicubic" else 0)
                + (nlm_radius() if self.cfg.denoise == "nlm" else 0))

    def forward(self, x: torch.Tensor, text: torch.Tensor | None = None,
                null_mask: torch.Tensor | None = None,
                context: torch.Tensor | None = None) -> torch.Tensor:
        """``context``: ``image_stats`` of the whole image when ``x`` is one tile of it."""
        assert x.dim() == 4 and x.shape[1] == 3, f"image must be [B, 3, H, W], got {tuple(x.shape)}"
        b = x.shape[0]
        if self.cfg.context_dim and context is None:
            context = image_stats(x)
        elif context is not None and context.shape[0] == 1 and b > 1:
            context = context.expand(b, -1)
        if context is not None:
            context = context[:, :self.cfg.context_dim]
        gamma, beta, tone, nlm = self.film(text, b, null_mask, context)
        if nlm is not None:
            # the noise sigma of the whole image (context entry 12) when it is known
            sigma = (context[:, CONTEXT_DIM - 1].float() / NOISE_SCALE
                     if self.cfg.context_dim >= CONTEXT_DIM else noise_level(x))
            x = apply_nlm(x, nlm, sigma.to(x.device))
        if tone is not None:
            x = apply_tone(x, tone)             # [B, L, C] each
        gamma = gamma.to(x.dtype)[..., None, None]             # [B, L, C, 1, 1]
        beta = beta.to(x.dtype)[..., None, None]
        h = self.head_act(self.head(x))                        # [B, C, H, W]
        for i, (conv, act) in enumerate(zip(self.body, self.acts)):
            h = act(conv(h))
            h = h * (1 + gamma[:, i]) + beta[:, i]
        out = self.tail(h)                                     # [B, 3*s*s, H, W]
        s = self.cfg.scale
        if s > 1:
            out = F.pixel_shuffle(out, s)                      # [B, 3, sH, sW]
            skip = upsample_skip(x, s, self.cfg.skip)
        else:
            skip = x
        return out + skip


def upsample_skip(x: torch.Tensor, scale: int, mode: str) -> torch.Tensor:
    """[B, 3, H, W] -> [B, 3, sH, sW]: the image the residual is added to."""
    if mode == "nearest":
        return F.interpolate(x, scale_factor=scale, mode="nearest")
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


def net_flops_per_input_pixel(cfg: EnhancerConfig) -> float:
    """Convolution FLOPs per input pixel (3x3 convolutions: in, body, pixel-shuffle out)."""
    c, n, s = cfg.channels, cfg.n_convs, cfg.scale
    return 2.0 * 9 * (3 * c + n * c * c + c * 3 * s * s)


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def build_from_checkpoint(ckpt, device: str | torch.device = "cpu") -> Enhancer:
    """An eval-mode Enhancer from a ``Checkpoint`` whose tensors are one enhancer's (strict
    loading). Files are read by ``models.enhance.model.load_enhancer``, which calls this."""
    try:
        cfg = EnhancerConfig.from_dict(dict(ckpt.config))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{ckpt.path}: its enhancer config is not usable ({exc})") from exc
    net = build_network(lambda: Enhancer(cfg), ckpt.tensors, source=ckpt.path or "checkpoint")
    net.encoder_id = ckpt.encoder
    return net.eval().to(device)
