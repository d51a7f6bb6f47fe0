"""Text-conditioned GAN networks (DF-GAN family).

Generator: noise z [B, nz] and sentence embedding s [B, text_dim] -> image [B, 3, R, R] in [-1, 1].
  One stage: a linear layer makes a 4x4 map from z, then up-blocks double it to R; every block
  fuses the condition [z, proj(s)] by affine (FiLM) modulation before each convolution.
Discriminator: image [B, 3, R, R] and sentence [B, text_dim] -> score [B] (higher = real and
  matching). Matching-aware: image features are joined with the sentence (DF-GAN), plus a
  projection term <proj(s), pooled features>. An optional auxiliary head reads attribute labels
  from the image features (AC-GAN); it is used for training on labelled procedural data and by
  nothing at inference.
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import CheckpointError, build_network, load_checkpoint, save_checkpoint
from .colour_lexicon import COLOUR_CHANNELS
from .colour_words import lab_to_unit_rgb
from .text_head import TextAttributeHead

# channel multipliers of ngf per resolution, from 4x4 up to the output
_G_MULTS = {32: (8, 8, 4, 2), 64: (8, 8, 4, 2, 1), 128: (8, 8, 8, 4, 2, 1),
            256: (8, 8, 8, 4, 2, 1, 1)}


@dataclass
class GeneratorConfig:
    resolution: int = 64
    nz: int = 100
    text_dim: int = 384
    cond_dim: int = 128
    ngf: int = 32
    # sentence embeddings are multiplied by this before use. MiniLM's are unit vectors over 384
    # dims (about 0.05 per dim) while the noise is N(0, 1) per dim: at 1.0 the noise drowned the
    # text (petal colour ignored after 4,000 steps). The trainer sets sqrt(dim) / mean norm.
    text_scale: float = 1.0
    # parts the colour reader looks for (0: no colour channel, the sentence alone conditions)
    colour_queries: int = 0
    # paint the colour reader's colours exactly (PaletteHead); needs colour_queries
    palette: bool = False

    def __post_init__(self):
        if self.resolution not in _G_MULTS:
            raise ValueError(f"resolution {self.resolution} not supported; use one of "
                             f"{sorted(_G_MULTS)}")
        if self.palette and not self.colour_queries:
            raise ValueError("palette needs a colour reader (colour_queries > 0)")


@dataclass
class DiscriminatorConfig:
    resolution: int = 64
    text_dim: int = 384
    ndf: int = 32
    label_heads: list = field(default_factory=list)  # [[name, n_classes], ...] for the aux head
    text_scale: float = 1.0                            # as GeneratorConfig.text_scale


def config_dict(cfg) -> dict:
    return asdict(cfg)


class Affine(nn.Module):
    """FiLM: x * (1 + gamma(c)) + beta(c), per channel; starts as the identity."""

    def __init__(self, cond_dim: int, channels: int):
        super().__init__()
        self.gamma = nn.Sequential(nn.Linear(cond_dim, channels), nn.ReLU(inplace=True),
                                   nn.Linear(channels, channels))
        self.beta = nn.Sequential(nn.Linear(cond_dim, channels), nn.ReLU(inplace=True),
                                  nn.Linear(channels, channels))
        for head in (self.gamma[-1], self.beta[-1]):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """``inplace``: overwrite ``x`` (when nothing else reads it and no gradient is taken:
        a new tensor as large as x costs the CPU about as much as the arithmetic)."""
        g = self.gamma(c)[:, :, None, None]
        b = self.beta(c)[:, :, None, None]
        if inplace and not torch.is_grad_enabled():
            return x.mul_(1 + g).add_(b)
        return torch.addcmul(b, x, 1 + g)


class FusedBlock(nn.Module):
    """affine -> lrelu. DF-GAN's DFBlock stacks two of these before each convolution; one per
    convolution conditions just as often and halves the memory-bound work at high resolution
    (measured 1.5x faster generator on a 2-core CPU)."""

    def __init__(self, cond_dim: int, channels: int):
        super().__init__()
        self.affine = Affine(cond_dim, channels)

    def forward(self, x, c, inplace: bool = False):
        return F.leaky_relu(self.affine(x, c, inplace), 0.2, inplace=True)


# Nearest-neighbour x2 upsampling followed by a 3x3 convolution is a stride-2 transposed
# convolution with a 4x4 kernel: output row 2i + a sees input rows i - 1 + a and i + a, with taps
# that are sums of the 3x3 kernel's rows. _TRANSPOSED_TAPS[t] maps the three kernel rows onto
# transposed tap t (taps 3 and 1 make the even output rows, 2 and 0 the odd ones).
_TRANSPOSED_TAPS = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0],
                                 [1.0, 0.0, 0.0]])                     # [4 taps, 3 kernel rows]


def _compiling() -> bool:
    """Inside torch.compile's tracing (no cache there: it would be a side effect); False on
    torch builds without torch.compiler.is_compiling."""
    is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(is_compiling and is_compiling())


def transposed_kernel(weight: torch.Tensor) -> torch.Tensor:
    """3x3 conv kernel [O, I, 3, 3] -> the stride-2 transposed conv kernel [I, O, 4, 4] that
    computes conv(nearest_upsample_x2(x))."""
    taps = _TRANSPOSED_TAPS.to(weight.device, weight.dtype)
    return torch.einsum("py,qx,oiyx->iopq", taps, taps, weight)


class UpsampleConv(nn.Conv2d):
    """A 3x3 convolution of the nearest-neighbour x2 upsampled input: [B, I, H, W] ->
    [B, O, 2H, 2W]. Its weights are an ordinary 3x3 conv's and it computes the same function as
    ``conv(interpolate(x, scale_factor=2))``, as one stride-2 transposed convolution: 16 / 36 of
    the multiply-adds and no upsampled copy of the input (the 64 px generator 1.2-1.3x faster on
    a CPU: tests/tools/upsample_conv_ab.py). On the CPU, inference reuses the transposed kernel
    until the weight changes."""

    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, 3, 1, 1)
        self._cached: tuple | None = None
        # True: compute it as written, upsample then conv (how a model's FLOPs are counted,
        # and the reference the fast path is tested against)
        self.reference = False

    def kernel(self) -> torch.Tensor:
        w = self.weight
        if torch.is_grad_enabled() or _compiling() or w.device.type != "cpu":
            return transposed_kernel(w)        # (on a GPU the einsum is cheap and asynchronous)
        # an inference tensor (a model loaded under inference_mode) keeps no version counter:
        # its sum stands in, so an in-place load of new weights is still seen
        version = float(w.sum()) if w.is_inference() else w._version
        key = (version, w.data_ptr(), w.dtype, w.device)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, transposed_kernel(w))
        return self._cached[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reference:
            return super().forward(F.interpolate(x, scale_factor=2, mode="nearest"))
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.conv_transpose2d(x, self.kernel().to(x.dtype), bias, stride=2, padding=1)


@contextmanager
def as_written(net: nn.Module):
    """Within it, every UpsampleConv of ``net`` upsamples and then convolves, as the model is
    defined, instead of its transposed-convolution fast path."""
    convs = [m for m in net.modules() if isinstance(m, UpsampleConv)]
    for m in convs:
        m.reference = True
    try:
        yield net
    finally:
        for m in convs:
            m.reference = False


class GBlock(nn.Module):
    def __init__(self, cond_dim: int, cin: int, cout: int):
        super().__init__()
        self.fuse1 = FusedBlock(cond_dim, cin)
        self.conv1 = UpsampleConv(cin, cout)
        self.fuse2 = FusedBlock(cond_dim, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, c):
        # DF-GAN upsamples first. FiLM, leaky ReLU and the 1x1 shortcut act on each pixel alone,
        # so they commute with nearest-neighbour upsampling: running them at the input size gives
        # the same result with a quarter of their work (1.2x faster generator, measured); conv1
        # does the upsample itself.
        h = self.conv2(self.fuse2(self.conv1(self.fuse1(x, c)), c, inplace=True))  # [B, O, 2H, 2W]
        # + the shortcut upsampled, broadcast over each 2x2 block instead of copied 4 times
        b, o, hh, ww = h.shape
        sc = self.shortcut(x)                                             # [B, O, H, W]
        h.view(b, o, hh // 2, 2, ww // 2, 2).add_(sc.view(b, o, hh // 2, 1, ww // 2, 1))
        return h


class ColourReader(nn.Module):
    """Word-level attention that binds the prompt's exact colours to parts of the picture.

    colour words [B, M, D + 4] (colour_words.py) -> a code [B, cond_dim] added to the sentence's.
    Each of ``queries`` learned queries attends over the colour words, keyed by the words'
    contextual states (so "burgundy petals" and "on burgundy" can go to different queries), or
    over a learned "none" slot; it pools the words' CIELAB channels. The pooled colours [B, Q, 4]
    go through an MLP whose last layer starts at zero, so a warm-started generator draws exactly
    what it drew before it had the reader."""

    def __init__(self, text_dim: int, cond_dim: int, queries: int, key_dim: int = 64,
                 hidden: int = 256):
        super().__init__()
        self.key = nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, key_dim))
        self.queries = nn.Parameter(torch.randn(queries, key_dim) / math.sqrt(key_dim))
        self.none_logit = nn.Parameter(torch.zeros(queries))
        self.out = nn.Sequential(nn.Linear(queries * COLOUR_CHANNELS, hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, cond_dim))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def attention(self, words: torch.Tensor) -> torch.Tensor:
        """[B, M, D + 4] -> weights [B, Q, M] (each query's row sums to 1 minus its "none")."""
        feats, present = words[..., :-COLOUR_CHANNELS], words[..., -1] > 0
        k = self.key(feats)                                              # [B, M, key]
        logits = torch.einsum("qk,bmk->bqm", self.queries, k) / math.sqrt(k.shape[-1])
        logits = logits.masked_fill(~present[:, None, :], float("-inf"))
        none = self.none_logit[None, :, None].expand(logits.shape[0], -1, 1)
        return torch.softmax(torch.cat([none, logits], dim=-1), dim=-1)[..., 1:]

    def pooled(self, words: torch.Tensor) -> torch.Tensor:
        """[B, M, D + 4] -> each query's colour [B, Q, 4] (its last value: how much colour it
        found; 0 where it chose "none")."""
        return self.attention(words) @ words[..., -COLOUR_CHANNELS:]

    def forward(self, words: torch.Tensor) -> torch.Tensor:
        return self.out(self.pooled(words).flatten(1))                   # [B, cond_dim]


def pooled_lab(pooled: torch.Tensor) -> torch.Tensor:
    """ColourReader.pooled's [..., 4] -> the mean CIELAB colour each query found [..., 3] (L in
    0..100; the pooled channels are weighted by how much colour was found, its last value)."""
    found = pooled[..., 3].clamp(0, 1)
    return pooled[..., :3] * 100 / found.clamp_min(1e-4)[..., None]


class PaletteHead(nn.Module):
    """Paints the colours the colour reader found, exactly, where the generator puts each part.

    features [B, C, R, R], image [B, 3, R, R] in [-1, 1], pooled colours [B, Q, 4]
    (ColourReader.pooled) -> image [B, 3, R, R]. Per pixel, a gate per query says how much of
    that query's colour to lay over the image and a shade multiplies it (the renders shade petals
    around their colour):

        out = image + sum_q gate_q * found_q * (rgb_q * (1 + shade) - image)

    The colour comes from the lexicon's CIELAB value, not from what the convolutions learned to
    make of it, so a name the captions never used is drawn as exactly as one they did; the
    network only learns where each part is. Gate and shade start at zero: a warm-started
    generator draws what it drew before."""

    def __init__(self, channels: int, queries: int):
        super().__init__()
        self.gate = nn.Conv2d(channels, queries, 3, 1, 1)
        self.shade = nn.Conv2d(channels, 1, 3, 1, 1)
        for conv in (self.gate, self.shade):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, features: torch.Tensor, image: torch.Tensor,
                pooled: torch.Tensor) -> torch.Tensor:
        found = pooled[..., 3].clamp(0, 1)                                  # [B, Q]
        rgb = lab_to_unit_rgb(pooled_lab(pooled).float()).to(image.dtype)   # [B, Q, 3] in 0..1
        gate = self.gate(features) * found[:, :, None, None]                # [B, Q, R, R]
        lit = rgb[:, :, :, None, None] * (1 + self.shade(features))[:, None]  # [B, Q, 3, R, R]
        paint = torch.einsum("bqhw,bqchw->bchw", gate, lit * 2 - 1 - image[:, None])
        return (image + paint).clamp(-1, 1)


class Generator(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        mults = _G_MULTS[cfg.resolution]
        chans = [cfg.ngf * m for m in mults]
        cond = cfg.nz + cfg.cond_dim
        self.text_proj = nn.Sequential(nn.Linear(cfg.text_dim, cfg.cond_dim), nn.LeakyReLU(0.2))
        self.fc = nn.Linear(cfg.nz, chans[0] * 16)
        self.blocks = nn.ModuleList(GBlock(cond, a, b) for a, b in zip(chans[:-1], chans[1:]))
        self.to_rgb = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(chans[-1], 3, 3, 1, 1), nn.Tanh())
        self.colour_reader = (ColourReader(cfg.text_dim, cfg.cond_dim, cfg.colour_queries)
                              if cfg.colour_queries else None)
        self.palette = PaletteHead(chans[-1], cfg.colour_queries) if cfg.palette else None

    def forward(self, z: torch.Tensor, s: torch.Tensor,
                words: torch.Tensor | None = None) -> torch.Tensor:
        """z [B, nz], s [B, text_dim], words [B, M, text_dim + 4] or None (colour_words.py;
        read only by a generator with a colour reader) -> images [B, 3, R, R] in [-1, 1]."""
        b = z.shape[0]
        assert z.shape == (b, self.cfg.nz), f"noise must be [B, {self.cfg.nz}], got {tuple(z.shape)}"
        assert s.shape == (b, self.cfg.text_dim), (
            f"sentence embedding must be [B, {self.cfg.text_dim}], got {tuple(s.shape)}")
        c = torch.cat([z, self.text_code(s, words)], dim=1)         # [B, nz + cond_dim]
        # channels_last: oneDNN's CPU convolutions run about 1.5x faster in it (measured)
        x = self.fc(z).view(b, -1, 4, 4).contiguous(memory_format=torch.channels_last)  # [B, C0, 4, 4]
        for block in self.blocks:
            x = block(x, c)                                          # doubles H, W
        image = self.to_rgb(x)                                       # [B, 3, R, R]
        if self.palette is not None and words is not None:
            image = self.palette(x, image, self.colour_reader.pooled(words.to(x.dtype)))
        return image.contiguous()

    def text_code(self, s: torch.Tensor, words: torch.Tensor | None = None) -> torch.Tensor:
        """Sentence [B, text_dim] (and colour words) -> the text part of the condition
        [B, cond_dim]."""
        code = self.text_proj(s * self.cfg.text_scale)
        if self.colour_reader is not None and words is not None:
            assert words.shape[0] == s.shape[0] and words.shape[2] == s.shape[1] + COLOUR_CHANNELS, (
                f"colour words must be [B, M, {s.shape[1] + COLOUR_CHANNELS}], got "
                f"{tuple(words.shape)}")
            code = code + self.colour_reader(words.to(code.dtype))
        return code


class DBlock(nn.Module):
    """Residual down-block: two convs, stride-2, learned shortcut with average pooling.

    The residual branch is scaled by a learned gamma. DF-GAN starts it at 0; measured here, it
    then stayed near 0.05 for 4,000 steps, which leaves D almost a linear function of 16x16
    block averages: it read background and time of day but petal colour only at chance. Starting
    at 1 gives D its non-linear branch from the first step."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 4, 2, 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.shortcut = nn.Conv2d(cin, cout, 1)
        self.gamma = nn.Parameter(torch.ones(1))

    def forward(self, x):
        h = self.conv2(F.leaky_relu(self.conv1(x), 0.2, inplace=True))
        h = F.leaky_relu(h, 0.2, inplace=True)
        return self.shortcut(F.avg_pool2d(x, 2)) + self.gamma * h


class Discriminator(nn.Module):
    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        self.cfg = cfg
        n_down = int(math.log2(cfg.resolution)) - 2                 # down to 4x4
        mults = [1, 2, 4, 8, 8, 8, 8][: n_down + 1]
        chans = [cfg.ndf * m for m in mults]
        self.from_rgb = nn.Conv2d(3, chans[0], 3, 1, 1)
        self.blocks = nn.Sequential(*(DBlock(a, b) for a, b in zip(chans[:-1], chans[1:])))
        feat = chans[-1]
        self.joint = nn.Sequential(nn.Conv2d(feat + cfg.text_dim, feat, 3, 1, 1),
                                   nn.LeakyReLU(0.2), nn.Conv2d(feat, 1, 4, 1, 0))
        self.text_proj = nn.Linear(cfg.text_dim, feat)
        n_labels = sum(n for _, n in cfg.label_heads)
        self.aux = nn.Linear(feat, n_labels) if n_labels else None

    @property
    def feature_dim(self) -> int:
        return self.text_proj.out_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        r = self.cfg.resolution
        assert x.shape[1:] == (3, r, r), f"image must be [B, 3, {r}, {r}], got {tuple(x.shape)}"
        x = x.contiguous(memory_format=torch.channels_last)          # faster oneDNN convs
        return self.blocks(self.from_rgb(x)).contiguous()            # [B, F, 4, 4]

    def score(self, h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Features [B, F, 4, 4] and sentences [B, text_dim] -> matching score [B]."""
        b = h.shape[0]
        assert s.shape == (b, self.cfg.text_dim), tuple(s.shape)
        s = s * self.cfg.text_scale
        tiled = s[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])
        joint = self.joint(torch.cat([h, tiled.to(h.dtype)], 1)).view(b)
        pooled = F.leaky_relu(h, 0.2).sum(dim=(2, 3))                # [B, F]
        proj = (self.text_proj(s.to(h.dtype)) * pooled).sum(1) / math.sqrt(pooled.shape[1])
        return joint + proj

    def aux_logits(self, h: torch.Tensor) -> torch.Tensor:
        assert self.aux is not None, "this discriminator has no auxiliary label head"
        return self.aux(F.leaky_relu(h, 0.2).mean(dim=(2, 3)))        # [B, sum(classes)]

    def forward(self, x: torch.Tensor, s: torch.Tensor, s_mismatch: torch.Tensor | None = None):
        """-> (score [B], score with s_mismatch [B] or None, aux logits or None).

        One forward for everything training needs, so DDP sees a single call."""
        h = self.features(x)
        mis = None if s_mismatch is None else self.score(h, s_mismatch)
        aux = self.aux_logits(h) if self.aux is not None else None
        return self.score(h, s), mis, aux

    def judge(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Matching score [B] of images [B,3,R,R] with sentences [B,text_dim]."""
        return self.score(self.features(x), s)


@torch.no_grad()
def rescale_text_weights(net: Generator | Discriminator, old_scale: float, new_scale: float) -> None:
    """Divide the weights that read the sentence by new_scale / old_scale, so that the network
    computes the same function after its cfg.text_scale changes from old_scale to new_scale (the
    caller sets the config). Used when warm-starting a model trained at another scale."""
    ratio = old_scale / new_scale
    if isinstance(net, Generator):
        net.text_proj[0].weight.mul_(ratio)
    else:
        feat = net.text_proj.out_features
        net.joint[0].weight[:, feat:].mul_(ratio)
        net.text_proj.weight.mul_(ratio)


def aux_loss(logits: torch.Tensor, labels: torch.Tensor, heads: list) -> torch.Tensor:
    """Mean cross-entropy over label heads; a label of -1 is ignored (other domain)."""
    total, count, start = logits.new_zeros(()), 0, 0
    for i, (_, n) in enumerate(heads):
        y = labels[:, i]
        if (y >= 0).any():
            total = total + F.cross_entropy(logits[:, start:start + n].float(), y, ignore_index=-1)
            count += 1
        start += n
    return total / max(count, 1)


def seeded_noise(seeds: list[int], nz: int) -> torch.Tensor:
    """Noise [B, nz] made on the CPU, one generator per image: same seed, same noise, whatever
    the batch size, the position in the batch or the device that runs the generator."""
    rows = [torch.randn(nz, generator=torch.Generator().manual_seed(int(s) % (2 ** 63)))
            for s in seeds]
    return torch.stack(rows)


# ---------------------------------------------------------------------------------------------
# The shipped model: EMA generator + discriminator in one safetensors file
# ---------------------------------------------------------------------------------------------

GAN_KIND = "gan"


@dataclass
class GANModel:
    """What the loader node outputs (socket PROMPTGAN_MODEL)."""

    generator: Generator
    discriminator: Discriminator | None
    encoder_id: str
    path: str = ""
    provenance: dict = field(default_factory=dict)
    text_head: nn.Module | None = None      # text_head.TextAttributeHead, for Refine (optional)
    stored_dtype: torch.dtype = torch.float32   # of the generator's weights in the file
    vocabulary: list[str] | None = None     # the words of its training captions, when recorded

    @property
    def resolution(self) -> int:
        return self.generator.cfg.resolution

    @property
    def name(self) -> str:
        return os.path.basename(self.path) or "in-memory"

    @property
    def reads_colour_names(self) -> bool:
        """True when the generator has a colour reader (exact colours from the lexicon)."""
        return self.generator.colour_reader is not None

    def to(self, device) -> GANModel:
        self.generator.to(device)
        if self.discriminator is not None:
            self.discriminator.to(device)
        if self.text_head is not None:
            self.text_head.to(device)
        return self


def save_gan(path, generator: Generator, discriminator: Discriminator | None, *, encoder_id: str,
             provenance: dict, dtype: torch.dtype | None = torch.float16, text_head=None,
             vocabulary: list[str] | None = None):
    tensors = {f"generator.{k}": v for k, v in generator.state_dict().items()}
    config = {"generator": config_dict(generator.cfg)}
    if vocabulary is not None:
        config["vocabulary"] = sorted(vocabulary)
    if discriminator is not None:
        tensors.update({f"discriminator.{k}": v for k, v in discriminator.state_dict().items()})
        config["discriminator"] = config_dict(discriminator.cfg)
    if text_head is not None:
        tensors.update({f"text_head.{k}": v for k, v in text_head.state_dict().items()})
        config["text_head"] = text_head.config
    return save_checkpoint(path, tensors, kind=GAN_KIND, config=config, encoder=encoder_id,
                           resolution=generator.cfg.resolution, provenance=provenance, dtype=dtype)


def load_gan(path, device="cpu", with_discriminator: bool = True) -> GANModel:
    """Load a shipped or trained model strictly; float32 in memory whatever the file holds."""
    ck = load_checkpoint(path, kind=GAN_KIND)
    try:
        gcfg = GeneratorConfig(**ck.config["generator"])
        dcfg = DiscriminatorConfig(**ck.config["discriminator"]) if "discriminator" in ck.config \
            else None
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: config in the metadata does not describe a PromptGAN "
                              f"generator/discriminator ({exc})") from exc
    g = build_network(lambda: Generator(gcfg), ck.sub("generator"), source=f"{path} [generator]")
    d = None
    if dcfg is not None and with_discriminator:
        d = build_network(lambda: Discriminator(dcfg), ck.sub("discriminator"),
                          source=f"{path} [discriminator]")
        d.eval().requires_grad_(False)
    head = None
    if d is not None and "text_head" in ck.config:
        head_cfg = ck.config["text_head"]
        if not isinstance(head_cfg, dict):
            raise CheckpointError(f"{path}: text_head config in the metadata is not an object")
        head = build_network(lambda: TextAttributeHead(**head_cfg), ck.sub("text_head"),
                             source=f"{path} [text_head]")
        if head.label_heads != [[str(n), int(k)] for n, k in dcfg.label_heads]:
            raise CheckpointError(f"{path}: the text head reads other attributes than the "
                                  "discriminator's auxiliary head; re-fit it with fit-text-head")
        head.eval().requires_grad_(False)
    g.eval().requires_grad_(False)
    stored = next(v.dtype for k, v in ck.tensors.items() if k.startswith("generator."))
    vocabulary = ck.config.get("vocabulary")
    if vocabulary is not None and not (isinstance(vocabulary, list)
                                       and all(isinstance(w, str) for w in vocabulary)):
        raise CheckpointError(f"{path}: the vocabulary in the metadata is not a list of words")
    model = GANModel(g, d, ck.encoder, str(path), ck.provenance, head, stored, vocabulary)
    return model.to(device)
