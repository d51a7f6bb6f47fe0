"""Enhance on real photographs: the prepared-photo folder, two-round degradations, the empty
instruction's tone rule, the evaluator's cleanliness measures, and Enhance in front of another
upscaler (ComfyUI's UPSCALE_MODEL). CPU, tiny networks, no downloads."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from promptgan.models.data import debian_photos, degrade
from promptgan.models.data.enhance_instructions import build_pool
from promptgan.models.data.enhance_pairs import EMPTY_FIXES, EnhanceData
from promptgan.models.enhance.model import EnhancerModel, load_enhancer
from promptgan.models.enhance.network import Enhancer, EnhancerConfig
from promptgan.models.enhance.tiling import enhance_image, restore_at_input_size, upscale_with_model
from promptgan.models.eval.enhance import blockiness, check_targets, evaluate, held_out_photos
from promptgan.models.text_encoder import DEFAULT_ENCODER_ID
from promptgan.nodes.enhance_nodes import PromptGAN_Enhance

torch.set_num_threads(1)


def tiny_enhancer(seed=0) -> Enhancer:
    torch.manual_seed(seed)
    net = Enhancer(EnhancerConfig(scale=4, channels=8, n_convs=3, film_hidden=16,
                                  skip="bicubic")).eval()
    with torch.no_grad():
        net.film.out.weight.normal_(0, 0.05)
        net.tail.weight.normal_(0, 0.05)
    return net


class PixelShuffleUpscaler(nn.Module):
    """A small real x``scale`` super-resolution network (the SRVGGNetCompact layout: convs, then
    pixel shuffle, plus a nearest-neighbour skip) with random weights, exposing ``scale`` the way
    spandrel's descriptors do."""

    def __init__(self, scale=2, feat=8, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.scale = scale
        self.body = nn.Sequential(nn.Conv2d(3, feat, 3, padding=1), nn.PReLU(feat),
                                  nn.Conv2d(feat, 3 * scale * scale, 3, padding=1))

    def forward(self, x):
        base = F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return base + 0.1 * F.pixel_shuffle(self.body(x), self.scale)


def photo_like(size=96, seed=0) -> torch.Tensor:
    """[3, size, size]: smooth shapes plus fine texture, 0..1."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    base = torch.stack([0.5 + 0.3 * torch.sin(6 * xx), 0.4 + 0.3 * yy, 0.3 + 0.2 * torch.cos(5 * yy)])
    return (base + 0.08 * torch.rand(3, size, size, generator=g)).clamp(0, 1)


# ----------------------------------------------------------------------------- prepared photos

def test_the_held_out_split_is_fixed_by_the_names_alone():
    names = [f"photo-{i}" for i in range(30)]
    held = debian_photos.held_out_names(names, 16)
    assert len(held) == 16 and held <= set(names)
    assert debian_photos.held_out_names(list(reversed(names)), 16) == held
    # a name's fate does not depend on the others (beyond the count)
    assert debian_photos.held_out_names(names + ["extra"], 16) - {"extra"} <= held | {"extra"}


def test_the_independent_evaluation_packages_are_refused(tmp_path):
    for package in ("mate-backgrounds", "ukui-wallpapers"):
        with pytest.raises(ValueError, match="independent evaluation"):
            debian_photos.download(package, tmp_path)
    listed = set(debian_photos.PHOTOS)
    assert not listed & set(debian_photos.NEVER)


def test_detail_check_finds_the_resolution_a_picture_really_has():
    import skimage.data  # lazy: scikit-image is a training extra (requirements-dev)

    for name in ("astronaut", "coffee", "rocket"):
        photo = Image.fromarray(getattr(skimage.data, name)())
        assert debian_photos.detail_scale(photo)[0] == 1.0, name
        # the same photo enlarged 4x carries its detail only at a half or a quarter of the size
        upscaled = photo.resize((photo.size[0] * 4, photo.size[1] * 4), Image.BICUBIC)
        assert debian_photos.detail_scale(upscaled)[0] in (0.5, 0.25), name
    flat = Image.new("RGB", (256, 256), (40, 40, 40))
    assert debian_photos.detail_scale(flat)[0] == 0.0


def test_read_manifest_returns_each_split_with_its_scale_and_names_what_is_missing(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "heldout").mkdir()
    (tmp_path / "train" / "a.jpg").write_bytes(b"x")
    records = [{"name": "a", "split": "train", "scale": 0.5},
               {"name": "b", "split": "heldout", "scale": 1.0},
               {"name": "c", "split": "refused", "scale": 0.0}]
    (tmp_path / "manifest.json").write_text(json.dumps(records))
    assert debian_photos.read_manifest(tmp_path, "train") == [(tmp_path / "train" / "a.jpg", 0.5)]
    with pytest.raises(ValueError, match="b is in manifest.json but not in heldout"):
        debian_photos.read_manifest(tmp_path, "heldout")
    with pytest.raises(ValueError, match="prepare-enhance-data"):
        debian_photos.read_manifest(tmp_path / "nowhere", "train")


# ----------------------------------------------------------------------------- degradations

def test_two_rounds_are_deterministic_and_only_for_full_restoration():
    hr = photo_like(96)
    rng = np.random.default_rng(3)
    p = degrade.sample_second_order(degrade.sample_params({"blur", "noise", "jpeg"}, 4, rng), 4, rng)
    assert "second" in p.extra
    a = degrade.make_pair(hr, p, 4, None, np.random.default_rng(1))
    b = degrade.make_pair(hr, p, 4, None, np.random.default_rng(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape == (3, 24, 24) and torch.equal(a[1], hr)      # target: the clean picture
    one_round = degrade.make_pair(hr, degrade.DegradeParams(
        blur=p.blur, noise=p.noise, jpeg=p.jpeg, down=p.down), 4, None, np.random.default_rng(1))
    assert not torch.equal(a[0], one_round[0])
    # a request that keeps the noise needs the one-round target (clean + the kept noise)
    lr, target = degrade.make_pair(hr, p, 4, {"blur", "jpeg"}, np.random.default_rng(1))
    assert not torch.equal(target, hr)


def test_mixed_fraction_puts_blur_noise_and_jpeg_together_at_the_centre():
    rng = np.random.default_rng(0)
    draws = [degrade.sample_present(rng, None, 0.5) for _ in range(2000)]
    share = np.mean([degrade.MIXED <= d for d in draws])
    assert 0.5 <= share <= 0.6, share
    rng = np.random.default_rng(0)
    assert np.mean([degrade.MIXED <= degrade.sample_present(rng) for _ in range(2000)]) < 0.15


def test_the_empty_instruction_restores_detail_but_keeps_tone_and_colour(tmp_path):
    data = EnhanceData(build_pool(seed=0), scale=4, hr_size=32, seed=0, use_procedural=False)
    empty = data.empty_index
    seen = 0
    for _ in range(400):
        row, _null, fix = data.instruction({"lowlight", "cast", "noise", "jpeg"})
        if row == empty:
            seen += 1
            assert fix == frozenset({"noise", "jpeg"})
    assert seen > 30
    assert EMPTY_FIXES == {"blur", "noise", "jpeg"}


def test_training_reads_the_prepared_photos_and_never_the_held_out_ones(tmp_path):
    for split in ("train", "heldout"):
        (tmp_path / split).mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((300, 400, 3)) * 255).astype(np.uint8)).save(tmp_path / "train" / "t.jpg")
    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(tmp_path / "heldout" / "h.jpg")
    (tmp_path / "manifest.json").write_text(json.dumps([
        {"name": "t", "split": "train", "scale": 1.0}, {"name": "h", "split": "heldout", "scale": 1.0}]))
    data = EnhanceData(build_pool(seed=0), scale=4, hr_size=64, seed=0, use_procedural=False,
                       photos=str(tmp_path), photo_fraction=1.0, mixed_fraction=0.5,
                       second_order=0.5)
    assert [name.split("@")[0] for name, _ in data.photos] == ["t", "t", "t"]
    assert "prepared-photo" in data.describe()
    batch = data.sample(4)
    assert batch.lr.shape == (4, 3, 16, 16) and batch.target.shape == (4, 3, 64, 64)
    assert float(batch.target.std()) > 0.03         # crops of the random training photo, never
    assert float(batch.target.amax((1, 2, 3)).min()) > 0.3      # the black held-out one


# ----------------------------------------------------------------------------- evaluation

def test_blockiness_sees_jpeg_blocks_and_not_natural_pictures():
    hr = photo_like(128, seed=1)
    assert 0.8 < blockiness(hr, 8) < 1.2
    blocky = degrade.jpeg(hr, 10)
    assert blockiness(blocky, 8) > 1.3 * blockiness(hr, 8)


def test_held_out_photos_are_square_crops_of_the_held_out_split(tmp_path):
    for split in ("train", "heldout"):
        (tmp_path / split).mkdir()
    Image.fromarray(np.full((600, 900, 3), 100, np.uint8)).save(tmp_path / "heldout" / "h.png")
    (tmp_path / "manifest.json").write_text(json.dumps([{"name": "h", "split": "heldout", "scale": 1.0}]))
    [(name, img)] = held_out_photos(tmp_path)
    assert name == "h" and img.shape == (3, 256, 256)
    # the per-image rule: one photo below bicubic by more than 0.1 dB fails it
    row = {"psnr": 30.0, "ssim": 0.9, "noise": 1.0, "blockiness": 1.0}
    summary = {"clean": {"bicubic": {**row, "psnr_per_image": [30.0, 30.0]},
                         "net": {**row, "psnr_per_image": [31.0, 29.8]},
                         "net+right": row, "net+wrong": row}}
    assert not check_targets(summary)["empty_vs_bicubic_worst_image_db"]["pass"]


@pytest.mark.skipif(not os.environ.get("PROMPTGAN_PHOTOS"),
                    reason="set PROMPTGAN_PHOTOS to a prepare-enhance-data folder")
def test_shipped_weights_empty_instruction_never_hurts_a_held_out_photo(pack_root):
    """Every held-out photo and degradation: the empty instruction no worse than bicubic by more
    than 0.1 dB (runs where the prepared photos are; CI has no copy of them)."""
    net = load_enhancer(pack_root / "models" / "weights" / "enhance_x4.safetensors").net
    report = evaluate(net, images=held_out_photos(os.environ["PROMPTGAN_PHOTOS"]))
    worst = report["targets"]["empty_vs_bicubic_worst_image_db"]
    assert worst["pass"], worst


# ----------------------------------------------------------------------------- another upscaler

def test_restoration_at_input_size_is_the_enhancer_output_shrunk_back():
    net, x = tiny_enhancer(), photo_like(40)[None]
    full = enhance_image(net, x, None, tile=0)
    small = restore_at_input_size(net, x, None, tile=0)
    assert small.shape == x.shape
    assert torch.allclose(small, F.avg_pool2d(full, 4), atol=1e-6)
    tiled = restore_at_input_size(net, x, None, tile=24, overlap=8)
    assert (tiled - small).abs().max() < 0.02


def test_another_upscaler_runs_in_tiles_like_it_runs_whole():
    up, x = PixelShuffleUpscaler(scale=2), photo_like(48)[None]
    whole = upscale_with_model(up, 2, x, tile=0)
    with torch.no_grad():
        assert torch.allclose(whole, up(x).clamp(0, 1), atol=1e-6)
    tiled = upscale_with_model(up, 2, x, tile=24, overlap=8)
    assert tiled.shape == (1, 3, 96, 96)
    assert (tiled - whole).abs().max() < 1e-5      # receptive field 2 px < the blended margin


def node(image, upscale_model=None, **kw):
    model = EnhancerModel(tiny_enhancer(), "tiny", "", DEFAULT_ENCODER_ID, {})
    kw.setdefault("instruction", "")
    kw.setdefault("tile_size", 32)
    kw.setdefault("strength", 1.0)
    return PromptGAN_Enhance().enhance(image, model, upscale_model=upscale_model, **kw)[0]


def test_enhance_node_hands_the_enlargement_to_a_connected_upscale_model():
    image = photo_like(40).permute(1, 2, 0)[None].repeat(2, 1, 1, 1)       # [2, 40, 40, 3]
    up = PixelShuffleUpscaler(scale=2)
    out = node(image, up)
    assert out.shape == (2, 80, 80, 3)
    restored = restore_at_input_size(tiny_enhancer(), image.movedim(-1, 1), None, tile=32)
    with torch.no_grad():
        expected = up(restored).clamp(0, 1).movedim(1, -1)
    assert (out - expected).abs().max() < 0.02
    rgba = torch.cat([image, torch.ones(2, 40, 40, 1)], -1)
    assert node(rgba, up).shape == (2, 80, 80, 4)
    assert node(image, up, target_scale=3.0).shape == (2, 120, 120, 3)
    assert node(image).shape == (2, 160, 160, 3)                       # without: the x4 network


def test_enhance_node_names_a_bad_upscale_model():
    image = torch.rand(1, 16, 16, 3)
    with pytest.raises(ValueError, match="upscale_model.*Load Upscale Model"):
        node(image, upscale_model="RealESRGAN_x4plus.pth")
    bad = PixelShuffleUpscaler(scale=2)
    bad.scale = 1.5
    with pytest.raises(ValueError, match="scale 1.5"):
        node(image, upscale_model=bad)


def test_spandrel_compact_upscaler_from_comfyui_loader_works_when_spandrel_is_installed():
    """The architecture users load most (SRVGGNetCompact, Real-ESRGAN's compact models), built by
    spandrel with random weights, the way ComfyUI's Load Upscale Model returns it. spandrel needs
    torchvision (a 5 GB CUDA build here), so this runs where ComfyUI's venv is, not in CI."""
    spandrel = pytest.importorskip("spandrel")
    from spandrel.architectures.Compact import Compact as SRVGGNetCompact

    arch = SRVGGNetCompact(num_in_ch=3, num_out_ch=3, num_feat=16, num_conv=4, upscale=4)
    descriptor = spandrel.ModelLoader().load_from_state_dict(arch.state_dict()).eval()
    out = node(torch.rand(1, 24, 24, 3), descriptor)
    assert out.shape == (1, 96, 96, 3) and torch.isfinite(out).all()


def test_pack_root_fixture_points_at_the_pack(pack_root):
    assert (Path(pack_root) / "nodes" / "enhance_nodes.py").is_file()
