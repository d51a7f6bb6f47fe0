"""Refine: discriminator-guided improvement and text-guided editing of generated images.

Refinement (``refine_latent``) is discriminator gradient flow on the noise (DGflow / DDLS):

    z <- z + eta * g(z) + sqrt(2 * eta * gamma) * xi,     then |z| reset to its starting norm

where g is the gradient with respect to z of the matching-aware discriminator's score
D(G(z, s), s) minus ``attribute_weight`` times the cross-entropy between the discriminator's
auxiliary attribute head on the image and the model's text head on the prompt (the attributes
the prompt asks for, ``text_head.py``; skipped for a model without one), scaled to unit RMS per
image (so ``step_size`` eta is in units of the noise's standard
deviation whatever the discriminator's scale, which drifts during training), xi is standard
noise drawn per image from a seeded CPU generator (deterministic, batch-independent), and the
projection back onto the starting norm keeps z on the shell where the generator's training noise
lives (and keeps GANGenerate's truncation). The generator and discriminator are never changed.

Editing (``edit``) keeps the noise and moves the conditioning: sentence = slerp(old, new,
strength) on the unit sphere (strength 0: the original; 1: the new prompt; above 1 extrapolates).
Swapping the sentence alone also redraws what the prompts share (the generator entangles them:
a new petal colour can bring a new petal shape), so by default the edit is a guided transition
(``preserve`` > 0): over ``DEFAULT_EDIT_STEPS`` steps the sentence moves from old to new while
the noise follows the same gradient flow as refinement, with one more term that keeps the
image's edges (``edge_difference`` to the original: horizontal and vertical pixel differences
per channel, so colours inside regions may change but outlines and colour boundaries resist).
The result is a latent like any other: redrawing it gives the edited image exactly.
A latent from GANGenerate is exact; an outside image goes through ``invert.invert`` first and is
only approximately reproduced. With a mask the edited image is composited into the original
inside the mask only (feathered inwards, so pixels outside the mask are kept exactly).

Images are [B,3,H,W] in [-1,1] here; the node converts from and to ComfyUI's [B,H,W,3] in 0..1.
"""
from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

from .generate import GANLatent, generate
from .invert import invert, plain, seed_mix, work_copy

log = logging.getLogger("PromptGAN")

DEFAULT_STEPS = 15
DEFAULT_STEP_SIZE = 0.1       # eta: RMS change of z per step, in noise standard deviations
DEFAULT_NOISE = 0.01          # gamma: temperature of the Langevin noise
DEFAULT_ATTRIBUTE_WEIGHT = 3.0  # weight of the prompt-attribute term against the matching score
DEFAULT_MIN_CONFIDENCE = 0.7  # the term reads an attribute only where the prompt names it clearly
DEFAULT_FEATHER = 1.5         # px (Gaussian sigma) of the mask's inward soft edge
DEFAULT_PRESERVE = 1.0        # edit: weight of the edge-keeping term, in units of EDGE_WEIGHT
EDGE_WEIGHT = 1000.0          # edge_difference is ~1e-3 per pixel; this puts it beside D's score
DEFAULT_EDIT_STEPS = 30       # edit: steps of the guided transition from old to new prompt
DEFAULT_EDIT_STEP_SIZE = 0.07
EDIT_RAMP = 0.8               # the sentence reaches the new prompt at 80% of the steps


class RefineError(ValueError):
    pass


# ---------------------------------------------------------------------------------------------
# conditioning
# ---------------------------------------------------------------------------------------------

def broadcast_rows(t: torch.Tensor, b: int, what: str = "embeddings") -> torch.Tensor:
    """[n, D] -> [b, D] for n == b, n == 1, or n dividing b (prompt-major, as GANGenerate orders
    its batch: each prompt's images are consecutive)."""
    n = t.shape[0]
    if n == b:
        return t
    if n >= 1 and b % n == 0:
        return t.repeat_interleave(b // n, dim=0)
    raise RefineError(f"{what} hold {n} prompts but there are {b} images; give 1 prompt, one per "
                      f"image, or one per group of images (batch {b} = prompts x images per prompt)")


def mix_sentences(old: torch.Tensor, new: torch.Tensor, strength: float) -> torch.Tensor:
    """Spherical interpolation of sentence embeddings [B,D] (strength 0 -> old, 1 -> new, >1
    goes further along the same great circle). Norms are interpolated linearly; nearly parallel
    pairs fall back to linear interpolation."""
    t = float(strength)
    if t == 0.0:
        return old.clone()
    if t == 1.0:
        return new.clone()
    na, nb = old.norm(dim=1, keepdim=True), new.norm(dim=1, keepdim=True)
    a, b = old / na.clamp_min(1e-12), new / nb.clamp_min(1e-12)
    cos = (a * b).sum(1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7)
    omega = torch.acos(cos)
    so = torch.sin(omega)
    slerp = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / so.clamp_min(1e-12)
    lerp = F.normalize((1 - t) * a + t * b, dim=1)
    direction = torch.where(so > 1e-4, slerp, lerp)
    return direction * ((1 - t) * na + t * nb)


# ---------------------------------------------------------------------------------------------
# image helpers: resolution, mask, SSIM
# ---------------------------------------------------------------------------------------------

def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[B,C,H,W] -> [B,C,*size], bilinear with antialiasing when shrinking."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    shrink = size[0] < images.shape[-2] or size[1] < images.shape[-1]
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def fit_to_model(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Images of another size are resized to the model's square resolution, with a warning."""
    h, w = images.shape[-2:]
    if (h, w) == (resolution, resolution):
        return images
    log.warning("PromptGAN Refine: the image is %dx%d but the model works at %dx%d; it is resized "
                "to %dx%d for the model%s and the result is resized back to %dx%d",
                w, h, resolution, resolution, resolution, resolution,
                " (aspect ratio distorted)" if h != w else "", w, h)
    return resize(images, (resolution, resolution))


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [B,C,H,W] with replicate padding."""
    k = _gaussian_kernel(sigma).to(x)
    r = k.numel() // 2
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1),
                 groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1),
                    groups=c)


def check_mask(mask: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
    """ComfyUI MASK [B,H,W] or [H,W] -> [b,1,h,w] float in 0..1; clear error if it does not fit."""
    if mask.dim() == 2:
        mask = mask[None]
    if mask.dim() != 3:
        raise RefineError(f"mask must be [B, H, W], got shape {tuple(mask.shape)}")
    if tuple(mask.shape[1:]) != (h, w):
        raise RefineError(f"mask is {mask.shape[2]}x{mask.shape[1]} but the image is {w}x{h}; "
                          "make the mask at the image's size")
    if mask.shape[0] not in (1, b):
        raise RefineError(f"mask has {mask.shape[0]} layers for {b} images; give 1 or {b}")
    if not torch.isfinite(mask).all():
        raise RefineError("mask contains NaN or infinite values")
    return mask.float().clamp(0, 1).expand(b, -1, -1)[:, None]


def composite(original: torch.Tensor, edited: torch.Tensor, mask: torch.Tensor,
              feather: float = DEFAULT_FEATHER) -> torch.Tensor:
    """original and edited [B,3,H,W]; mask [B,1,H,W] in 0..1 (1 = take the edit). The edge is
    softened inwards only (mask * blur(mask)), so where the mask is 0 the original is kept
    exactly."""
    m = mask
    if feather > 0:
        m = mask * _blur(mask, feather)
    return original * (1 - m) + edited * m


def ssim_map(a: torch.Tensor, b: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM [B,H,W] of images [B,3,H,W] in [-1,1] (Gaussian window, channel mean)."""
    a, b = (a.float() + 1) / 2, (b.float() + 1) / 2
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_a, mu_b = _blur(a, sigma), _blur(b, sigma)
    va = _blur(a * a, sigma) - mu_a ** 2
    vb = _blur(b * b, sigma) - mu_b ** 2
    cov = _blur(a * b, sigma) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))
    return s.mean(1)


def masked_ssim(a: torch.Tensor, b: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
    """Mean SSIM [B] over ``region`` [B,H,W] (weights in 0..1; None: the whole image)."""
    s = ssim_map(a, b)
    if region is None:
        return s.mean((1, 2))
    w = region.float()
    return (s * w).sum((1, 2)) / w.sum((1, 2)).clamp_min(1e-6)


# ---------------------------------------------------------------------------------------------
# refinement
# ---------------------------------------------------------------------------------------------

def edge_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per image [B]: mean squared difference between the horizontal and vertical pixel
    differences of images a and b [B,3,H,W] (each channel on its own). Zero for identical
    images and for a constant offset; large where outlines or colour boundaries moved."""
    def grads(x):
        return torch.cat([x[..., 1:, :-1] - x[..., :-1, :-1], x[..., :-1, 1:] - x[..., :-1, :-1]], 1)
    return (grads(a) - grads(b)).pow(2).mean((1, 2, 3))


def langevin_noise(seeds: list[int], seed: int, steps: int, nz: int) -> torch.Tensor:
    """[B, steps, nz] standard noise, one CPU generator per image (seed mixed with the image's own
    seed): the same image gets the same noise whatever the batch or device."""
    rows = [torch.randn(steps, nz, generator=torch.Generator().manual_seed(seed_mix(seed, s)))
            for s in seeds]
    return torch.stack(rows) if rows else torch.zeros(0, steps, nz)


def refine_latent(model, latent: GANLatent, sentence: torch.Tensor | None = None,
                  steps: int = DEFAULT_STEPS, step_size: float = DEFAULT_STEP_SIZE,
                  noise: float = DEFAULT_NOISE, *, attribute_weight: float = DEFAULT_ATTRIBUTE_WEIGHT,
                  seed: int = 0, device="cpu", chunk: int = 16, progress=None,
                  check_interrupt=None, start_sentence: torch.Tensor | None = None,
                  anchor: torch.Tensor | None = None, anchor_weight: float = 0.0,
                  words: torch.Tensor | None = None) -> GANLatent:
    """Discriminator gradient flow on the latent's noise (see the module docstring).

    ``words`` [B,M,D+4] (or broadcastable): the colour words the generator draws with (a model
    with a colour reader); default the latent's own.

    ``sentence`` [B,D] (or broadcastable, see ``broadcast_rows``): the prompt the discriminator
    judges against and the generator draws with; default the latent's own. Returns a new latent
    (the input is not modified). progress(done, total) and check_interrupt() are called every
    step. Works under torch.inference_mode(): gradients are switched on here, on copies.

    Editing uses two more inputs. ``start_sentence`` [B,D]: the conditioning starts there and
    reaches ``sentence`` at ``EDIT_RAMP`` of the steps (slerp). ``anchor`` [B,3,R,R] in [-1,1]:
    images whose edges are kept, with ``anchor_weight`` times ``edge_difference`` subtracted
    from the objective.
    """
    if model.discriminator is None:
        raise RefineError(f"model '{model.name}' was loaded without its discriminator; refine mode "
                          "needs it (load the full checkpoint)")
    b = len(latent)
    with torch.inference_mode(False), torch.enable_grad():
        device = torch.device(device)
        g = work_copy(model.generator, device)
        d = work_copy(model.discriminator, device)
        use_head = attribute_weight > 0 and model.text_head is not None and d.aux is not None
        head = model.text_head if use_head else None    # read once per chunk, no gradient
        nz = g.cfg.nz
        s_all = broadcast_rows(plain(latent.sentence if sentence is None else sentence).float(), b)
        s0_all = None if start_sentence is None else broadcast_rows(plain(start_sentence).float(), b)
        w_all = latent.words if words is None else words
        w_all = None if w_all is None else broadcast_rows(plain(w_all).float(), b, "colour words")
        x0_all = None if anchor is None or anchor_weight <= 0 else plain(anchor).float()
        z_all = plain(latent.z).float()
        steps = max(int(steps), 0)
        xi_all = langevin_noise(latent.seeds, seed, steps, nz)                   # [B, steps, nz]
        eta, gamma = float(step_size), float(noise)
        noise_scale = math.sqrt(max(2 * eta * gamma, 0.0))
        n_chunks = max(1, math.ceil(b / chunk))
        total, done, out = steps * n_chunks, 0, []
        for start in range(0, b, chunk):
            z = z_all[start:start + chunk].to(device)
            s = s_all[start:start + chunk].to(device)
            xi = xi_all[start:start + chunk].to(device)
            s0 = None if s0_all is None else s0_all[start:start + chunk].to(device)
            w = None if w_all is None else w_all[start:start + chunk].to(device)
            x0 = None if x0_all is None else x0_all[start:start + chunk].to(device)
            radius = z.norm(dim=1, keepdim=True)
            asked = None
            for t in range(steps):
                if check_interrupt is not None:
                    check_interrupt()
                s_t = s if s0 is None else mix_sentences(
                    s0, s, min(1.0, (t + 1) / (EDIT_RAMP * steps)))
                if head is not None and (asked is None or s0 is not None):
                    with torch.no_grad():
                        head_device = head.linear.weight.device
                        asked = plain(head(s_t.to(head_device))).to(device)      # [b, labels]
                z = z.detach().requires_grad_(True)
                x = g(z, s_t, w)
                h = d.features(x)
                objective = d.score(h, s_t)                                      # [b]
                if asked is not None:
                    objective = objective - attribute_weight * prompt_attribute_ce(
                        d.aux_logits(h), asked, head.label_heads)
                if x0 is not None:
                    objective = objective - anchor_weight * edge_difference(x, x0)
                (grad,) = torch.autograd.grad(objective.sum(), z)
                with torch.no_grad():
                    rms = grad.pow(2).mean(1, keepdim=True).sqrt()
                    grad = torch.where(rms > 0, grad / rms.clamp_min(1e-20), torch.zeros_like(grad))
                    z = z + eta * grad + noise_scale * xi[:, t]
                    z = z * (radius / z.norm(dim=1, keepdim=True).clamp_min(1e-12))
                done += 1
                if progress is not None:
                    progress(done, total)
            out.append(z.detach().cpu())
        z_new = torch.cat(out) if out else z_all
        return GANLatent(z_new, s_all.cpu(), list(latent.prompts), list(latent.seeds),
                         latent.encoder_id, latent.model_id, w_all)


def domain_names(label_heads: list) -> list[str]:
    """The domain classes of a "domain"-first label layout, in the order their heads follow it
    (["domain", 2], ["flower.petal_colour", 9], ..., ["landscape.time", 4] -> flower, landscape)."""
    names = list(dict.fromkeys(name.split(".")[0] for name, _ in label_heads[1:]))
    if not label_heads or list(label_heads[0]) != ["domain", len(names)]:
        raise ValueError(f"label heads {label_heads[:1]} do not start with a 'domain' head over "
                         f"the {len(names)} domains their names give")
    return names


def prompt_attribute_ce(image_logits: torch.Tensor, prompt_logits: torch.Tensor,
                        label_heads: list, min_confidence: float = DEFAULT_MIN_CONFIDENCE
                        ) -> torch.Tensor:
    """Per image [B]: cross-entropy of the image's attribute logits against the prompt's
    predicted distribution, summed over the attribute heads; a domain's heads
    ("flower.petal_colour") are weighted by the prompt's probability of that domain (the
    procedural data's layout: "domain" first, its classes in the order their heads follow), and a head
    counts only where the prompt's most likely value has at least ``min_confidence`` (a word the
    text head does not know leaves that attribute to the generator; measured: +1.2 points over
    no threshold on 200 held-out prompts outside refine-eval's). The domain itself is not a
    term: the generator never gets it wrong, D's head misreads it on a quarter of generated
    images, and leaving it out measured +0.2 and +1.4 points on two such sets."""
    assert image_logits.shape == prompt_logits.shape, (image_logits.shape, prompt_logits.shape)
    names = domain_names(label_heads)
    domains = prompt_logits[:, :len(names)].softmax(1)                          # [B, domains]
    total, start = image_logits.new_zeros(image_logits.shape[0]), 0
    for name, n in label_heads:
        if name != "domain":
            q = prompt_logits[:, start:start + n].softmax(1)
            ce = -(q * image_logits[:, start:start + n].log_softmax(1)).sum(1)
            weight = domains[:, names.index(name.split(".")[0])]
            total = total + weight * (q.max(1).values >= min_confidence) * ce
        start += n
    return total


def refine_image(model, latent, sentence, original, mask, steps: int, step_size: float, *,
                 seed: int, device, progress, check_interrupt, words=None):
    """Refine mode end to end: the refined latent, drawn at the original's size (when there is
    one, [b,3,H,W] in [-1,1]) and composited into it inside ``mask`` (the latent drawn again
    when only a latent is given). -> (images [b,3,H,W] in [-1,1], new latent)."""
    new_latent = refine_latent(model, latent, sentence, steps, step_size, seed=seed,
                               device=device, progress=progress, check_interrupt=check_interrupt,
                               words=words)
    out = generate(model, new_latent, device)
    if original is None and mask is not None:
        original = generate(model, latent, device)
    if original is not None:
        out = resize(out, tuple(original.shape[-2:]))
    if mask is not None:
        b, (h, w) = len(latent), out.shape[-2:]
        out = composite(original, out, check_mask(mask, b, h, w))
    return out, new_latent


@torch.no_grad()
def discriminator_scores(model, images: torch.Tensor, sentence: torch.Tensor, chunk: int = 64):
    d = model.discriminator
    dev = next(d.parameters()).device
    return torch.cat([d.judge(images[i:i + chunk].to(dev), sentence[i:i + chunk].to(dev)).float().cpu()
                      for i in range(0, len(images), chunk)])


# ---------------------------------------------------------------------------------------------
# editing
# ---------------------------------------------------------------------------------------------

def guided_edit_steps(model, strength: float, preserve: float,
                      edit_steps: int = DEFAULT_EDIT_STEPS) -> int:
    """How many guided-transition steps ``edit`` runs: 0 for the one-pass swap (preserve 0, no
    steps, strength 0, or a model without its discriminator)."""
    guided = (float(preserve) > 0 and int(edit_steps) > 0 and float(strength) != 0.0
              and model.discriminator is not None)
    return int(edit_steps) if guided else 0


def edit(model, source, new_sentence: torch.Tensor, strength: float = 1.0,
         mask: torch.Tensor | None = None, *, image: torch.Tensor | None = None,
         new_prompts: list[str] | None = None, invert_steps: int = 50, encoder=None, seed: int = 0,
         feather: float = DEFAULT_FEATHER, preserve: float = DEFAULT_PRESERVE,
         edit_steps: int = DEFAULT_EDIT_STEPS, device="cpu", progress=None,
         check_interrupt=None, new_words: torch.Tensor | None = None) -> tuple[torch.Tensor, GANLatent]:
    """Redraw with the conditioning moved towards ``new_sentence``, starting from the same noise.

    source: a GANLatent (exact) or images [B,3,H,W] in [-1,1] (inverted first: approximate;
      another size than the model's is resized with a warning and the result resized back).
    new_sentence: [B,D] or broadcastable (1 or one per prompt group).
    strength: 0 keeps the original conditioning, 1 uses the new prompt, in between blends.
    mask: [B,H,W] or [H,W] at the output size; edits only inside it (outside kept exactly).
    image: with a latent source, the original to composite into (default: the latent redrawn).
    preserve: weight of the edge-keeping guided transition (module docstring; needs the
      discriminator); 0 swaps the sentence on the same noise (one generator pass).
    edit_steps: steps of that transition.
    new_words: the new prompt's colour words [B,M,D+4] or broadcastable (a model with a colour
      reader draws the edit with them from the first step; the sentence still moves gradually).
    progress(done, total): over the inversion's steps and then the transition's.
    -> (images [B,3,H,W] in [-1,1] at the source's size, the edited latent).
    """
    r = model.resolution
    from_image = not isinstance(source, GANLatent)
    n_guided = guided_edit_steps(model, strength, preserve, edit_steps)
    n_invert = int(invert_steps) if from_image else 0
    total = n_invert + n_guided

    def phase(offset, share):      # a callback filling [offset, offset + share] of total
        if progress is None:
            return None
        return lambda done, n: progress(offset + round(share * done / max(n, 1)), total)

    with torch.inference_mode(False), torch.enable_grad():
        if not from_image:
            latent = GANLatent(plain(source.z).float(), plain(source.sentence).float(),
                               list(source.prompts), list(source.seeds), source.encoder_id,
                               source.model_id, source.words)
            original = None if image is None else plain(image).float()
        else:
            original = plain(source).float()
            if original.dim() != 4 or original.shape[1] != 3:
                raise RefineError(f"edit: image must be [B, 3, H, W], got {tuple(original.shape)}")
            b = original.shape[0]
            # the image's own sentence is unknown: the inverter guesses it, else the fit starts
            # from the new prompt (it describes the same kind of picture) and moves away from it
            start = None if encoder is not None else broadcast_rows(
                plain(new_sentence).float(), b, "new embeddings")
            latent = invert(model, fit_to_model(original, r), start, invert_steps, encoder,
                            fit_sentence=True, seed=seed, device=device, progress=phase(0, n_invert),
                            check_interrupt=check_interrupt)
        b = len(latent)
        new = broadcast_rows(plain(new_sentence).float(), b, "new embeddings")
        mixed = mix_sentences(latent.sentence, new, strength)
        prompts = list(new_prompts) if new_prompts is not None else list(latent.prompts)
        if len(prompts) != b:
            prompts = [prompts[i * len(prompts) // b] for i in range(b)] if prompts else [""] * b
        words = latent.words
        if new_words is not None and model.reads_colour_names:
            words = broadcast_rows(plain(new_words).float(), b, "new colour words")
        edited_latent = GANLatent(latent.z, mixed, prompts, list(latent.seeds), latent.encoder_id,
                                  latent.model_id, words)
        if n_guided:
            # the edges to keep: the image itself when one was given, else the latent's drawing
            anchor = fit_to_model(original, r) if from_image else generate(model, latent, device)
            moved = refine_latent(model, edited_latent, None, n_guided, DEFAULT_EDIT_STEP_SIZE,
                                  0.0, seed=seed, device=device, progress=phase(n_invert, n_guided),
                                  check_interrupt=check_interrupt, start_sentence=latent.sentence,
                                  anchor=anchor, anchor_weight=float(preserve) * EDGE_WEIGHT)
            edited_latent = GANLatent(moved.z, mixed, prompts, list(latent.seeds),
                                      latent.encoder_id, latent.model_id, words)
        edited = generate(model, edited_latent, device)
        if original is None:
            original = generate(model, latent, device) if mask is not None else None
        if original is not None:
            if original.shape[0] != b:
                raise RefineError(f"the image has {original.shape[0]} pictures, the latent {b}")
            edited = resize(edited, tuple(original.shape[-2:]))
        if mask is not None:
            h, w = original.shape[-2:]
            edited = composite(original, edited, check_mask(plain(mask), b, h, w), feather)
        return edited, edited_latent
