"""GAN networks, generation semantics, trainer mechanics (tiny configs, CPU)."""
import pytest
import torch
import torch.nn.functional as F

from promptgan.models import gan
from promptgan.models import generate as gen
from promptgan.models.checkpoint import CheckpointError
from promptgan.models.text_encoder import TextEmbeds
from promptgan.models.train.gan import colour_distance, diff_augment, ema_decay


def tiny(res=32, with_aux=False):
    g = gan.Generator(gan.GeneratorConfig(resolution=res, ngf=4, nz=8, text_dim=6, cond_dim=4))
    heads = [["a", 3], ["b", 2]] if with_aux else []
    d = gan.Discriminator(gan.DiscriminatorConfig(resolution=res, ndf=4, text_dim=6,
                                                  label_heads=heads))
    return g.eval(), d.eval()


def fake_embeds(n, encoder="toy-encoder", dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1)
    mask = torch.ones(n, 1, dtype=torch.bool)
    return TextEmbeds(s, s[:, None], mask, encoder, [f"p{i}" for i in range(n)])


@pytest.mark.parametrize("res", [32, 64, 128])
def test_shapes(res):
    g, d = tiny(res, with_aux=True)
    x = g(torch.randn(2, 8), torch.randn(2, 6))
    assert x.shape == (2, 3, res, res) and x.abs().max() <= 1
    score, mis, aux = d(x, torch.randn(2, 6), torch.randn(2, 6))
    assert score.shape == (2,) and mis.shape == (2,) and aux.shape == (2, 5)
    with pytest.raises(AssertionError, match="sentence embedding must be"):
        g(torch.randn(2, 8), torch.randn(2, 5))


def test_unsupported_resolution_is_a_clear_error():
    with pytest.raises(ValueError, match="resolution 48 not supported"):
        gan.GeneratorConfig(resolution=48)


def test_seed_gives_same_image_whatever_batch_and_position():
    g, d = tiny()
    model = gan.GANModel(g, d, "toy-encoder", "toy.safetensors")
    e = fake_embeds(1)
    one = gen.generate(model, gen.make_latent(model, e, seed=5, per_prompt=1))
    many = gen.generate(model, gen.make_latent(model, e, seed=3, per_prompt=4), chunk=3)
    # image i of a batch uses seed + i; batched kernels may round differently (~1e-7)
    assert torch.allclose(one[0], many[2], atol=1e-5)
    two_prompts = gen.make_latent(model, fake_embeds(2), seed=0, per_prompt=2)
    assert two_prompts.seeds == [0, 1, 2, 3] and two_prompts.prompts == ["p0", "p0", "p1", "p1"]


def test_noise_is_made_on_the_cpu_per_seed():
    a = gan.seeded_noise([7, 8], 16)
    b = gan.seeded_noise([8], 16)
    assert torch.equal(a[1], b[0]) and a.device.type == "cpu"


def test_encoder_mismatch_names_both():
    g, d = tiny()
    model = gan.GANModel(g, d, "toy-encoder", "toy.safetensors")
    with pytest.raises(gen.EncoderMismatchError, match="'other' but model 'toy.safetensors' was "
                                                       "trained with 'toy-encoder'"):
        gen.make_latent(model, fake_embeds(1, encoder="other"), 0, 1)
    with pytest.raises(gen.EncoderMismatchError, match="have 7 dims"):
        gen.make_latent(model, fake_embeds(1, dim=7), 0, 1)


def test_memory_check_refuses_huge_requests():
    with pytest.raises(MemoryError, match="lower batch_size"):
        gen.check_fits(10_000_000, 256, 16, torch.device("cpu"))


def test_gan_checkpoint_round_trip(tmp_path):
    g, d = tiny(with_aux=True)
    path = gan.save_gan(tmp_path / "m.safetensors", g, d, encoder_id="toy-encoder",
                        provenance={"step": 3}, dtype=None)
    m = gan.load_gan(path)
    z, s = torch.randn(2, 8), torch.randn(2, 6)
    assert torch.equal(m.generator(z, s), g(z, s))
    assert m.encoder_id == "toy-encoder" and m.provenance["step"] == 3 and m.resolution == 32
    # a file holding another kind of network is refused with a clear message
    from promptgan.models.checkpoint import save_checkpoint

    other = save_checkpoint(tmp_path / "c.safetensors", {"w": torch.zeros(1)}, kind="classifier",
                            config={})
    with pytest.raises(CheckpointError, match="expected a 'gan' network"):
        gan.load_gan(other)


def test_diff_augment_keeps_shape_and_gradient():
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    y = diff_augment(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and (x.grad == 0).any()   # cutout and shifts zero some pixels


def test_colour_distance_ignores_layout_but_not_colour():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 8, 8) * 2 - 1
    shuffled = img.flatten(2)[:, :, torch.randperm(64, generator=g)].view(2, 3, 8, 8)
    assert colour_distance(shuffled, img, 8, g).item() < 1e-6          # same pixels, new places
    recoloured = img.clone()
    recoloured[:, 0] = 0.5 * recoloured[:, 0] + 0.5                      # redder everywhere
    assert colour_distance(recoloured, img, 8, g).item() > 0.1
    fake = img.clone().requires_grad_(True)
    colour_distance(fake + 0.1, img, 8, g).backward()
    assert fake.grad.abs().sum() > 0


def test_text_scale_rescaling_keeps_the_function():
    import copy

    torch.manual_seed(0)
    g = gan.Generator(gan.GeneratorConfig(resolution=32, ngf=4)).eval()
    d = gan.Discriminator(gan.DiscriminatorConfig(resolution=32, ndf=4)).eval()
    z, s = torch.randn(2, 100), torch.nn.functional.normalize(torch.randn(2, 384), dim=1)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    g2, d2 = copy.deepcopy(g), copy.deepcopy(d)
    for net in (g2, d2):
        gan.rescale_text_weights(net, 1.0, 19.6)
        net.cfg.text_scale = 19.6
    assert torch.allclose(g(z, s), g2(z, s), atol=1e-5)
    assert torch.allclose(d.judge(x, s), d2.judge(x, s), atol=1e-4)
    assert not torch.allclose(g.text_proj[0].weight, g2.text_proj[0].weight)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("cin", [6, 4])                 # a 1x1 shortcut, and none
def test_gblock_matches_dfgan_upsample_first_order(layout, cin):
    """GBlock runs FiLM, leaky ReLU and the shortcut before the upsample; with non-trivial FiLM
    weights that must equal DF-GAN's order (upsample, then everything), values and gradients."""
    torch.manual_seed(0)
    block = gan.GBlock(cond_dim=5, cin=cin, cout=4)
    for p in block.parameters():          # FiLM heads start at zero: make them do something
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(3, cin, 8, 8).contiguous(memory_format=layout).requires_grad_()
    c = torch.randn(3, 5)

    def reference(x):
        up = F.interpolate(x, scale_factor=2, mode="nearest")
        h = F.conv2d(block.fuse1(up, c), block.conv1.weight, block.conv1.bias, padding=1)
        return block.shortcut(up) + block.conv2(block.fuse2(h, c))

    out, ref = block(x, c), reference(x)
    assert out.shape == (3, 4, 16, 16)
    assert torch.allclose(out, ref, atol=1e-5)
    with torch.inference_mode():          # FiLM in place on conv1's output
        kept = x.detach().clone()
        assert torch.allclose(block(kept, c), ref, atol=1e-5) and torch.equal(kept, x.detach())
    (gx,) = torch.autograd.grad(out.square().sum(), x)
    (gr,) = torch.autograd.grad(ref.square().sum(), x)
    assert torch.allclose(gx, gr, atol=1e-4)


@pytest.mark.parametrize("size", [1, 4, 7, 8, 32])
def test_upsample_conv_is_upsample_then_conv(size):
    """The transposed-convolution fast path computes nearest x2 upsampling then the 3x3 conv:
    values (contiguous and channels_last input, odd sizes included) and gradients of input,
    weight and bias."""
    import torch.nn.functional as F

    torch.manual_seed(size)
    conv = gan.UpsampleConv(6, 5)
    x = torch.randn(2, 6, size, size + 1, requires_grad=True)

    def reference(x):
        return F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), conv.weight, conv.bias,
                        padding=1)

    out, ref = conv(x), reference(x)
    assert out.shape == ref.shape == (2, 5, 2 * size, 2 * size + 2)
    assert torch.allclose(out, ref, atol=1e-5)
    with torch.no_grad():
        cl = conv(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(cl, ref, atol=1e-5)
    grads = torch.autograd.grad(out.square().sum(), [x, conv.weight, conv.bias])
    refs = torch.autograd.grad(ref.square().sum(), [x, conv.weight, conv.bias])
    for g, r in zip(grads, refs):        # float32 sums of thousands of products, in other orders
        assert (g - r).abs().max() <= 1e-5 * r.abs().max(), (g - r).abs().max() / r.abs().max()
    with gan.as_written(conv):
        assert torch.equal(conv(x), ref)


def test_upsample_conv_inference_kernel_follows_weight_changes():
    """Inference caches the transposed kernel; a changed weight (an optimizer step, a loaded
    state dict) must not be served from the cache."""
    conv = gan.UpsampleConv(3, 2)
    x = torch.randn(1, 3, 8, 8)
    with torch.inference_mode():
        before = conv(x)
    with torch.no_grad():
        conv.weight.mul_(2)
        conv.bias.zero_()
    with torch.inference_mode():
        after = conv(x)
    with gan.as_written(conv), torch.no_grad():
        assert torch.allclose(after, conv(x), atol=1e-5)
    assert not torch.allclose(before, after)

    with torch.inference_mode():          # weights made there keep no version counter
        conv = gan.UpsampleConv(3, 2)
        before = conv(x)
        conv.weight.mul_(2)
        after = conv(x)
        with gan.as_written(conv):
            assert torch.allclose(after, conv(x), atol=1e-5)
    assert conv.weight.is_inference() and not torch.allclose(before, after)


def test_shipped_generator_images_unchanged_by_the_fast_path():
    """The shipped model's pictures (fixed seeds, fp32) with the transposed-convolution fast path
    against the model as written: within 1e-4 of the [-1, 1] range (0.013 of one 8-bit level)."""
    from promptgan.models.checkpoint import WEIGHTS_DIR
    from promptgan.models.eval.benchmark import make_inputs

    model = gan.load_gan(WEIGHTS_DIR / "promptgan_default.safetensors",
                         with_discriminator=False)
    g = model.generator.eval()
    z, s, w = make_inputs(g.cfg, 8, seed=3)
    with torch.inference_mode():
        fast = g(z, s, w)
        with gan.as_written(g):
            written = g(z, s, w)
    assert (fast - written).abs().max() < 1e-4


def test_generator_output_is_plain_contiguous():
    g, _ = tiny(32)
    x = g(torch.randn(2, 8), torch.randn(2, 6))
    assert x.is_contiguous()
    x.view(2, -1)                         # callers flatten and convert to numpy


def test_ema_ramps_up():
    assert ema_decay(0, 0.999) == pytest.approx(0.1)
    assert ema_decay(10**6, 0.999) == 0.999


def test_mode_seeking_term_rewards_different_images_for_different_noise():
    from promptgan.models.train.gan import mode_seeking_term

    g = torch.Generator().manual_seed(0)
    za, zb = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    a = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1
    same = mode_seeking_term(a, a + 0.01, za, zb)
    apart = mode_seeking_term(a, -a, za, zb)
    assert apart < same
    b = (a + 0.01).requires_grad_(True)
    mode_seeking_term(a, b, za, zb).backward()
    assert b.grad.abs().sum() > 0


def _petals(n: int, phase: float = 0.0, cx: float = 32.0, cy: float = 32.0) -> torch.Tensor:
    """[1, 3, 64, 64] a white n-petal rosette (radius 14 px) at (cx, cy) on black, -1..1."""
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    r, t = torch.hypot(xx - cx, yy - cy), torch.atan2(yy - cy, xx - cx)
    edge = 14 * (0.35 + 0.65 * torch.cos(n * (t - phase)).clamp_min(0))
    petal = torch.sigmoid((edge - r) / 0.7)                         # anti-aliased edge
    return (petal * 2 - 1)[None, None].expand(1, 3, -1, -1)


def test_angular_spectrum_sees_petal_count_not_position_or_turn():
    from promptgan.models.train.gan import angular_spectrum

    def peak(img):   # which even harmonic k is strongest, summed over the rings
        return 2 * (1 + int(angular_spectrum(img)[0].sum(0).argmax()))

    assert peak(_petals(4)) == 4 and peak(_petals(6)) == 6 and peak(_petals(8)) == 8
    assert peak(_petals(5)) == 10            # the spectrum is point-symmetric: 5-fold shows at 10
    base = angular_spectrum(_petals(5))
    moved = angular_spectrum(_petals(5, phase=0.3, cx=27.0, cy=35.0))
    other = angular_spectrum(_petals(6))
    assert (moved - base).abs().mean() < 0.5 * (other - base).abs().mean()
    fake = _petals(4).clone().requires_grad_(True)
    F.l1_loss(angular_spectrum(fake), base).backward()
    assert fake.grad.abs().sum() > 0


def test_angular_spectrum_tells_rendered_petal_counts_apart():
    """On the procedural flowers (any colour, size, place and turn), the descriptor alone names
    the petal count: nearest class mean, standardised, 300 renders to fit and 100 to test."""
    import numpy as np

    from promptgan.models.data import procedural as P
    from promptgan.models.eval import gan as ev
    from promptgan.models.train.gan import angular_spectrum

    rng = np.random.default_rng(0)
    attrs = [P.sample_attributes("flower", rng, "train") for _ in range(400)]
    d = angular_spectrum(ev.real_renders([{"domain": "flower", "attrs": a} for a in attrs], 64, 3))
    d = d.flatten(1)
    d = (d - d[:300].mean(0)) / d[:300].std(0)
    y = np.array([a["petal_count"] for a in attrs])
    counts = sorted(set(y))
    centres = torch.stack([d[:300][torch.from_numpy(y[:300] == c)].mean(0) for c in counts])
    pred = np.array(counts)[torch.cdist(d[300:], centres).argmin(1).numpy()]
    assert (pred == y[300:]).mean() >= 0.9      # 0.96 measured; chance is 0.25


def test_trainer_runs_resumes_and_exports(tmp_path):
    from promptgan.models.train.gan import main

    args = ["--out", str(tmp_path / "run"), "--n-images", "16", "--resolution", "32", "--ngf", "4",
            "--ndf", "4", "--batch", "4", "--steps", "3", "--save-every", "2", "--sample-every", "2",
            "--cache-dir", str(tmp_path / "cache"), "--gp-every", "2", "--captions-per-image", "1",
            "--colour-weight", "1", "--code-weight", "1", "--diversity-weight", "0.1",
            "--angular-weight", "1"]
    assert main(args) == 0
    run = tmp_path / "run"
    assert (run / "state.safetensors").is_file() and (run / "samples" / "step_000002.png").is_file()
    m = gan.load_gan(run / "model.safetensors")
    assert m.provenance["step"] == 3 and m.discriminator.aux is not None
    assert "+colourSWD@32px+code-readout+mode-seeking" in m.provenance["recipe"]
    threads = torch.get_num_threads()
    assert main(args[:-16] + ["--steps", "5", "--follow-load"] + args[-14:]) == 0  # 3 -> 5
    assert torch.get_num_threads() == threads
    m = gan.load_gan(run / "model.safetensors")
    assert m.provenance["step"] == 5
    from safetensors import safe_open

    with safe_open(str(run / "state.safetensors"), "pt") as f:        # the read-out resumes ...
        assert "code_head.weight" in f.keys()
    with safe_open(str(run / "model.safetensors"), "pt") as f:        # ... and never ships
        assert not [k for k in f.keys() if "code_head" in k]
    # warm start with a new discriminator
    assert main(["--out", str(tmp_path / "warm"), "--init", str(run / "model.safetensors"),
                 "--fresh-d"] + args[2:-16] + ["--steps", "6"] + args[-14:]) == 0
    assert gan.load_gan(tmp_path / "warm" / "model.safetensors").provenance["step"] == 6


def test_trainer_on_a_folder_samples_its_own_captions(tmp_path):
    """train-gan --data folder: grids show the data set's own first captions, from step 0."""
    from PIL import Image

    from promptgan.models.train.gan import main

    data = tmp_path / "imgs"
    data.mkdir()
    for i in range(5):
        Image.new("RGB", (40, 40), (i * 40, 100, 200)).save(data / f"im{i}.png")
        (data / f"im{i}.txt").write_text(f"a blue square number {i}\nsecond caption {i}\n")
    assert main(["--data", f"folder:{data}", "--out", str(tmp_path / "run"), "--resolution", "32",
                 "--ngf", "4", "--ndf", "4", "--batch", "2", "--steps", "2", "--sample-every", "2"]) == 0
    samples = tmp_path / "run" / "samples"
    assert sorted(p.name for p in samples.glob("*.png")) == ["step_000000.png", "step_000002.png"]
    assert (samples / "step_000002.txt").read_text().splitlines() == [
        f"{i}: a blue square number {i}" for i in range(5)]
