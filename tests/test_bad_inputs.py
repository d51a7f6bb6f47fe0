"""Bad inputs, as a hostile or unlucky user gives them: every case is a clear error that names the
input and what to do, nothing on disk changes, and the next valid call still works.

Areas: model files (damaged, foreign, tampered metadata, NaN weights), the loaders' dropdown
checks, the five nodes' numbers and tensors, text encoder folders and prompt text, the trainer's
command line and run folder. The safety claims of the README are each backed by a test named
test_safety_*.
"""
import json
import os
import pickle
import subprocess
import sys
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from promptgan.models import gan
from promptgan.models import generate as gen
from promptgan.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from promptgan.models.enhance import tiling
from promptgan.models.enhance.model import EnhancerModel, load_enhancer
from promptgan.models.enhance.network import Enhancer, EnhancerConfig
from promptgan.models.text_encoder import DEFAULT_ENCODER_ID, TextEmbeds, TransformersTextEncoder
from promptgan.nodes import gan_nodes, runtime
from promptgan.nodes.enhance_nodes import PromptGAN_Enhance, PromptGAN_EnhancerLoader
from promptgan.nodes.gan_nodes import PromptGAN_GANGenerate, PromptGAN_ModelLoader
from promptgan.nodes.refine_nodes import PromptGAN_Refine
from promptgan.nodes.text_nodes import DEFAULT_CHOICE, MODEL_CHOICE, PromptGAN_TextEncode

PACK = Path(__file__).resolve().parents[1]
TD = 6      # text dims of the tiny model


# ----------------------------------------------------------------------------- helpers

def snapshot(folder: Path) -> dict:
    """Every file under folder with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@contextmanager
def unchanged(folder: Path):
    """Assert that the body leaves every file under ``folder`` as it was."""
    before = snapshot(folder)
    yield
    assert snapshot(folder) == before


def tiny_gan():
    torch.manual_seed(0)
    g = gan.Generator(gan.GeneratorConfig(resolution=32, ngf=4, nz=8, text_dim=TD, cond_dim=4))
    d = gan.Discriminator(gan.DiscriminatorConfig(resolution=32, ndf=4, text_dim=TD))
    return g.eval().requires_grad_(False), d.eval().requires_grad_(False)


def tiny_model(path="toy.safetensors"):
    g, d = tiny_gan()
    return gan.GANModel(g, d, "toy-encoder", path)


def embeds(n=1, encoder="toy-encoder", dim=TD):
    s = torch.nn.functional.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(0)), dim=1)
    return TextEmbeds(s, s[:, None], torch.ones(n, 1, dtype=torch.bool), encoder,
                      [f"p{i}" for i in range(n)])


def saved_gan(folder: Path, name="good.safetensors") -> Path:
    g, d = tiny_gan()
    return gan.save_gan(folder / name, g, d, encoder_id="toy-encoder", provenance={"step": 1},
                        dtype=None)


def tampered(src: Path, dst: Path, meta=None, tensors=None) -> Path:
    """A copy of src with metadata fields and tensors replaced."""
    with safe_open(str(src), "pt") as f:
        t = {k: f.get_tensor(k) for k in f.keys()}
        m = dict(f.metadata())
    m.update(meta or {})
    t.update(tensors or {})
    save_file(t, str(dst), metadata=m)
    return dst


def tiny_enhancer():
    net = Enhancer(EnhancerConfig(scale=2, channels=4, n_convs=1, film_hidden=4)).eval()
    return EnhancerModel(net, "tiny", "", DEFAULT_ENCODER_ID, {})


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """A standalone models/promptgan folder (as the headless runner has) holding a valid GAN."""
    folder = tmp_path / "promptgan"
    folder.mkdir()
    saved_gan(folder)
    monkeypatch.setattr(runtime, "_standalone_roots", {runtime.MODEL_FOLDER: [folder],
                                                       runtime.TEXT_ENCODER_FOLDER: []})
    return folder


# ----------------------------------------------------------------------------- damaged model files

def test_zero_byte_file_says_empty(tmp_path):
    (tmp_path / "m.safetensors").write_bytes(b"")
    with unchanged(tmp_path), pytest.raises(CheckpointError, match=r"empty \(0 bytes\)"):
        gan.load_gan(tmp_path / "m.safetensors")


def test_truncated_file_says_where(tmp_path):
    good = saved_gan(tmp_path)
    data = good.read_bytes()
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(data[:len(data) // 2])
    with unchanged(tmp_path), pytest.raises(CheckpointError,
                                            match=rf"truncated at byte {len(data) // 2} of {len(data)}"):
        gan.load_gan(bad)


def test_truncated_header_says_so(tmp_path):
    good = saved_gan(tmp_path)
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(good.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="truncated: its header announces"):
        gan.load_gan(bad)


def test_safety_pickle_renamed_to_safetensors_is_named_and_never_unpickled(tmp_path):
    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    bad = tmp_path / "m.safetensors"
    bad.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(CheckpointError, match="Python pickle renamed to .safetensors"):
        gan.load_gan(bad)
    assert not (tmp_path / "pwned").exists()


def test_torch_zip_renamed_to_safetensors_is_named(tmp_path):
    bad = tmp_path / "m.safetensors"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    with pytest.raises(CheckpointError, match="zip archive"):
        load_enhancer(bad)


def test_text_file_is_not_a_safetensors_file(tmp_path):
    bad = tmp_path / "m.safetensors"
    bad.write_text("this is a readme, not weights\n" * 20)
    with pytest.raises(CheckpointError, match="not a safetensors header"):
        gan.load_gan(bad)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt", ".bin", ".pkl"])
def test_safety_pickle_suffixes_are_refused_before_reading(tmp_path, suffix):
    bad = tmp_path / f"m{suffix}"
    bad.write_bytes(b"anything")
    with pytest.raises(CheckpointError, match="refusing to load a pickle-format file"):
        load_checkpoint(bad)


def test_foreign_safetensors_file_is_named(tmp_path):
    save_file({"w": torch.zeros(2)}, str(tmp_path / "m.safetensors"))
    with pytest.raises(CheckpointError, match="not a PromptGAN checkpoint"):
        gan.load_gan(tmp_path / "m.safetensors")


def test_other_kind_is_named(tmp_path):
    save_checkpoint(tmp_path / "e.safetensors", {"w": torch.zeros(1)}, kind="enhancer", config={})
    with pytest.raises(CheckpointError, match="holds a 'enhancer' network, expected a 'gan'"):
        gan.load_gan(tmp_path / "e.safetensors")


# ----------------------------------------------------------------------------- hostile metadata

def test_safety_deeply_nested_config_is_refused_without_recursion_error(tmp_path):
    bad = tampered(saved_gan(tmp_path), tmp_path / "b.safetensors",
                   meta={"promptgan.config": "[" * 100_000 + "]" * 100_000})
    with pytest.raises(CheckpointError, match="promptgan.config' is not valid JSON"):
        gan.load_gan(bad)


def test_huge_metadata_field_is_refused(tmp_path):
    bad = tampered(saved_gan(tmp_path), tmp_path / "b.safetensors",
                   meta={"promptgan.provenance": json.dumps({"x": "y" * 2_000_000})})
    with pytest.raises(CheckpointError, match="characters long"):
        gan.load_gan(bad)


def test_config_that_is_not_an_object_is_refused(tmp_path):
    bad = tampered(saved_gan(tmp_path), tmp_path / "b.safetensors", meta={"promptgan.config": "[1, 2]"})
    with pytest.raises(CheckpointError, match="must be a JSON object, got list"):
        gan.load_gan(bad)


def test_resolution_that_is_not_a_number_is_named(tmp_path):
    bad = tampered(saved_gan(tmp_path), tmp_path / "b.safetensors", meta={"promptgan.resolution": "abc"})
    with pytest.raises(CheckpointError, match="promptgan.resolution' is 'abc', expected a whole number"):
        gan.load_gan(bad)


def test_safety_config_asking_for_a_huge_network_is_refused_before_allocating(tmp_path):
    good = saved_gan(tmp_path)
    with safe_open(str(good), "pt") as f:
        cfg = json.loads(f.metadata()["promptgan.config"])
    cfg["generator"]["nz"] = 10_000_000            # 80 GB of weights if it were built for real
    bad = tampered(good, tmp_path / "b.safetensors", meta={"promptgan.config": json.dumps(cfg)})
    with pytest.raises(CheckpointError, match=r"does not match the network its config describes.*"
                                              r"shape \(32, 12\), expected \(32, 10000004\).* 10 more keys"):
        gan.load_gan(bad)


def test_config_with_unknown_or_wrong_fields_is_named(tmp_path):
    good = saved_gan(tmp_path)
    with safe_open(str(good), "pt") as f:
        cfg = json.loads(f.metadata()["promptgan.config"])
    cfg["generator"]["colour_magic"] = 1
    bad = tampered(good, tmp_path / "b.safetensors", meta={"promptgan.config": json.dumps(cfg)})
    with pytest.raises(CheckpointError, match="config in the metadata does not describe"):
        gan.load_gan(bad)
    cfg["generator"].pop("colour_magic")
    cfg["generator"]["ngf"] = "wide"
    bad = tampered(good, tmp_path / "c.safetensors", meta={"promptgan.config": json.dumps(cfg)})
    with pytest.raises(CheckpointError, match="does not describe a network this version"):
        gan.load_gan(bad)


def test_enhancer_config_out_of_range_is_named(tmp_path):
    net = tiny_enhancer().net
    path = save_checkpoint(tmp_path / "e.safetensors", net.state_dict(), kind="enhancer",
                           config={**net.cfg.to_dict(), "scale": 3}, encoder=DEFAULT_ENCODER_ID)
    with pytest.raises(CheckpointError, match="scale must be 1, 2 or 4"):
        load_enhancer(path)


def test_nan_generator_weights_are_refused_by_name(tmp_path):
    good = saved_gan(tmp_path)
    with safe_open(str(good), "pt") as f:
        shape = f.get_slice("generator.fc.weight").get_shape()
    bad = tampered(good, tmp_path / "nan.safetensors",
                   tensors={"generator.fc.weight": torch.full(shape, float("nan"))})
    with unchanged(tmp_path), pytest.raises(CheckpointError, match="weight 'fc.weight' holds NaN"):
        gan.load_gan(bad)


def test_inf_enhancer_weights_are_refused(tmp_path):
    net = tiny_enhancer().net
    state = {k: v.clone() for k, v in net.state_dict().items()}
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key].view(-1)[0] = float("inf")
    path = save_checkpoint(tmp_path / "e.safetensors", state, kind="enhancer",
                           config=net.cfg.to_dict(), encoder=DEFAULT_ENCODER_ID)
    with pytest.raises(CheckpointError, match=f"weight '{key}' holds NaN or infinite values"):
        load_enhancer(path)


def test_missing_weights_are_named(tmp_path):
    good = saved_gan(tmp_path)
    with safe_open(str(good), "pt") as f:
        t = {k: f.get_tensor(k) for k in f.keys() if k != "generator.fc.bias"}
        m = f.metadata()
    save_file(t, str(tmp_path / "b.safetensors"), metadata=m)
    with pytest.raises(CheckpointError, match=r"missing keys \['fc.bias'\]"):
        gan.load_gan(tmp_path / "b.safetensors")


# ----------------------------------------------------------------------------- loaders' dropdown checks

def test_loader_names_what_it_searched(models_dir):
    msg = PromptGAN_ModelLoader.VALIDATE_INPUTS("nope.safetensors")
    assert "'nope.safetensors' was not found in" in msg and str(models_dir) in msg
    assert "--models-dir" in msg


def test_safety_loader_refuses_names_outside_the_folder(models_dir):
    with unchanged(models_dir):
        assert "points outside its model folder" in PromptGAN_ModelLoader.VALIDATE_INPUTS(
            "../../etc/passwd.safetensors")
        assert "is an absolute path" in PromptGAN_ModelLoader.VALIDATE_INPUTS(
            str(models_dir / "good.safetensors"))


def test_loader_says_why_a_damaged_file_is_not_listed(models_dir):
    data = (models_dir / "good.safetensors").read_bytes()
    (models_dir / "cut.safetensors").write_bytes(data[:1000])
    (models_dir / "empty.safetensors").write_bytes(b"")
    assert "cut.safetensors" not in gan_nodes.model_choices()
    with unchanged(models_dir):
        assert "cut.safetensors: not a readable safetensors file: it is truncated" in \
            PromptGAN_ModelLoader.VALIDATE_INPUTS("cut.safetensors")
        assert "empty (0 bytes)" in PromptGAN_ModelLoader.VALIDATE_INPUTS("empty.safetensors")


def test_gan_file_in_the_enhancer_loader_points_to_the_right_loader(models_dir):
    msg = PromptGAN_EnhancerLoader.VALIDATE_INPUTS("good.safetensors")
    assert "holds a PromptGAN 'gan' file, not a 'enhancer' one; load it with PromptGAN Model " \
           "Loader" in msg


def test_symlinked_model_is_listed_and_loads(models_dir, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = saved_gan(elsewhere, "linked_target.safetensors")
    (models_dir / "linked.safetensors").symlink_to(target)
    assert "linked.safetensors" in gan_nodes.model_choices()
    assert PromptGAN_ModelLoader.VALIDATE_INPUTS("linked.safetensors") is True
    (model,) = PromptGAN_ModelLoader().load("linked.safetensors")
    assert model.generator.cfg.nz == 8


def test_own_model_in_models_promptgan_is_listed_and_loads(models_dir):
    assert "good.safetensors" in gan_nodes.model_choices()
    assert PromptGAN_ModelLoader.VALIDATE_INPUTS("good.safetensors") is True


# ----------------------------------------------------------------------------- GANGenerate

@pytest.mark.parametrize("name,value,shown", [
    ("truncation", float("nan"), "nan"), ("truncation", float("inf"), "inf"),
    ("truncation", -0.5, "-0.5"), ("truncation", 3.0, "3.0"), ("truncation", "much", "'much'"),
    ("batch_size", 0, "0"), ("batch_size", 1.5, "1.5"), ("batch_size", 5000, "5000"),
    ("seed", -1, "-1"), ("seed", 2 ** 64, str(2 ** 64)), ("seed", float("nan"), "nan"),
    ("seed", True, "True"),
])
def test_generate_numbers_are_checked_by_name(name, value, shown):
    args = {"seed": 0, "batch_size": 1, "truncation": 1.0, name: value}
    with pytest.raises(ValueError, match=rf"input '{name}' must be .*, got {shown}"):
        PromptGAN_GANGenerate().generate(tiny_model(), embeds(), **args)


def test_generate_refuses_nan_embeddings():
    e = embeds()
    e.sentence[0, 0] = float("nan")
    with pytest.raises(ValueError, match="embeddings hold NaN"):
        PromptGAN_GANGenerate().generate(tiny_model(), e, seed=0, batch_size=1, truncation=1.0)


def test_generate_refuses_embeddings_of_another_encoder_or_size():
    with pytest.raises(gen.EncoderMismatchError, match="'other'.*'toy-encoder'"):
        PromptGAN_GANGenerate().generate(tiny_model(), embeds(encoder="other"), 0, 1, 1.0)
    with pytest.raises(gen.EncoderMismatchError, match="have 7 dims"):
        PromptGAN_GANGenerate().generate(tiny_model(), embeds(dim=7), 0, 1, 1.0)


def test_generate_refuses_a_batch_that_cannot_fit(monkeypatch):
    from promptgan.models import memory

    monkeypatch.setattr(memory, "available_memory_bytes", lambda device="cpu": 10 * 2 ** 20)
    with pytest.raises(MemoryError, match=r"1024 images at 32x32 needs about .* GiB but only "
                                          r"0.01 GiB is free .*lower batch_size"):
        PromptGAN_GANGenerate().generate(tiny_model(), embeds(), 0, 1024, 1.0)


def test_no_output_image_is_ever_nan_without_an_error():
    model = tiny_model()
    model.generator.fc.weight.data.fill_(float("nan"))   # what an overflowed export would give
    with pytest.raises(FloatingPointError, match="produced NaN or infinite pixels for images 0..1"):
        PromptGAN_GANGenerate().generate(model, embeds(), seed=0, batch_size=2, truncation=1.0)


def test_generate_writes_one_image_tensor_in_comfyui_layout():
    model = tiny_model()
    lat = gen.make_latent(model, embeds(2), 3, 2)
    image = gen.generate_comfy_image(model, lat, chunk=3)
    assert image.shape == (4, 32, 32, 3) and image.is_contiguous()
    assert torch.equal(image, gen.to_comfy_image(gen.generate(model, lat, chunk=3)))


# ----------------------------------------------------------------------------- TextEncode

def test_lone_surrogate_in_a_prompt_is_named():
    with pytest.raises(ValueError, match=r"input 'text'.*prompt 2 holds an invalid character at "
                                         r"position 2 \('\\ud800'"):
        PromptGAN_TextEncode().encode("a red flower\nab\ud800c", DEFAULT_CHOICE)


def test_text_that_is_not_a_string_is_named():
    with pytest.raises(ValueError, match="input 'text' must be a string, got int"):
        PromptGAN_TextEncode().encode(42, DEFAULT_CHOICE)


def test_match_the_model_without_a_model_says_what_to_connect():
    with pytest.raises(ValueError, match="'match the model' needs the model input connected"):
        PromptGAN_TextEncode().encode("a flower", MODEL_CHOICE)


def test_unknown_encoder_choice_is_named():
    with pytest.raises(ValueError, match="unknown text encoder 'gpt-17'"):
        PromptGAN_TextEncode().encode("a flower", "gpt-17")


def test_encoder_folder_without_config_is_named(tmp_path):
    with pytest.raises(ValueError, match=f"text encoder folder {tmp_path} has no config.json"):
        TransformersTextEncoder(tmp_path, "broken")


def test_encoder_folder_with_empty_config_is_named(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with unchanged(tmp_path), pytest.raises(ValueError, match=f"text encoder folder {tmp_path} could "
                                                              "not be loaded .*Copy the folder again"):
        TransformersTextEncoder(tmp_path, "broken")


def test_encoder_folder_with_truncated_weights_is_named(tmp_path):
    import shutil

    from promptgan.models.text_encoder import default_encoder_path

    src = default_encoder_path()
    for p in src.iterdir():
        if p.is_file():
            shutil.copy(p, tmp_path / p.name)
    weights = next(tmp_path.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(ValueError, match=f"text encoder folder {tmp_path} could not be loaded"):
        TransformersTextEncoder(tmp_path, "broken")


def test_encoder_keeps_working_after_a_bad_prompt():
    node = PromptGAN_TextEncode()
    with pytest.raises(ValueError):
        node.encode("\udfff", DEFAULT_CHOICE)
    (e,) = node.encode("a red flower", DEFAULT_CHOICE)
    assert e.sentence.shape == (1, 384) and torch.isfinite(e.sentence).all()


# ----------------------------------------------------------------------------- Refine

def refine(**kw):
    model = tiny_model()
    args = dict(mode="refine", steps=2, strength=1.0, seed=0,
                latent=gen.make_latent(model, embeds(), 0, 1))
    args.update(kw)
    return PromptGAN_Refine().refine(model, **args)


@pytest.mark.parametrize("name,value", [("steps", -1), ("steps", float("nan")), ("steps", 5000),
                                        ("strength", float("inf")), ("strength", -1.0),
                                        ("preserve", float("nan")), ("seed", -3)])
def test_refine_numbers_are_checked_by_name(name, value):
    with pytest.raises(ValueError, match=rf"input '{name}' must be"):
        refine(**{name: value})


def test_refine_mode_image_latent_and_mask_errors():
    with pytest.raises(ValueError, match="mode must be one of"):
        refine(mode="sharpen")
    with pytest.raises(ValueError, match="needs an image or a latent"):
        refine(latent=None)
    bad = torch.rand(1, 32, 32, 3)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="image contains NaN"):
        refine(image=bad)
    with pytest.raises(ValueError, match=r"image must be an IMAGE \[B, H, W, 3\], got \(32, 32\)"):
        refine(image=torch.rand(32, 32))
    with pytest.raises(ValueError, match="mask"):
        refine(mask=torch.ones(1, 5, 7))


def test_refine_refuses_a_latent_of_another_model():
    other = tiny_model("other.safetensors")
    with pytest.raises(ValueError, match="the latent was made by model 'other.safetensors"):
        refine(latent=gen.make_latent(other, embeds(), 0, 1))


# ----------------------------------------------------------------------------- Enhance

def enhance(image=None, **kw):
    args = dict(instruction="", tile_size=16, strength=1.0)
    args.update(kw)
    image = torch.rand(1, 8, 8, 3) if image is None else image
    return PromptGAN_Enhance().enhance(image, tiny_enhancer(), **args)


@pytest.mark.parametrize("name,value", [("strength", float("nan")), ("strength", 2.0),
                                        ("tile_size", -16), ("tile_size", float("nan")),
                                        ("target_scale", float("nan")), ("target_scale", 100.0)])
def test_enhance_numbers_are_checked_by_name(name, value):
    with pytest.raises(ValueError, match=rf"input '{name}' must be"):
        enhance(**{name: value})


def test_enhance_image_errors():
    with pytest.raises(ValueError, match="'image' has 5 channels"):
        enhance(torch.rand(1, 8, 8, 5))
    with pytest.raises(ValueError, match="'image' is empty"):
        enhance(torch.rand(1, 0, 8, 3))
    with pytest.raises(ValueError, match=r"'image' must be an IMAGE \[batch, height, width"):
        enhance(torch.rand(8, 8, 3))
    inf = torch.rand(1, 8, 8, 3)
    inf[0, 1, 1, 1] = float("inf")
    with pytest.raises(ValueError, match="'image' contains NaN or infinite"):
        enhance(inf)


def test_enhance_embeds_count_must_fit_the_batch():
    e = TextEmbeds(torch.randn(3, 384), torch.randn(3, 1, 384), torch.ones(3, 1, dtype=torch.bool),
                   DEFAULT_ENCODER_ID, ["a", "b", "c"])
    with pytest.raises(ValueError, match="'embeds' holds 3 prompts for 2 images"):
        enhance(torch.rand(2, 8, 8, 3), embeds=e)


def test_enhance_refuses_a_huge_image_before_allocating_naming_both_numbers():
    huge = torch.zeros(1, 1, 1, 3).expand(1, 32768, 32768, 3)   # 12 GB if it were materialised
    with pytest.raises(MemoryError, match=r"to 65536x65536 \(output 48.00 GiB.* needs about "
                                          r".* GiB but only .* GiB is free"):
        PromptGAN_Enhance().enhance(huge, tiny_enhancer(), "", 256, 1.0, target_scale=0.0)


def test_enhance_output_is_assembled_in_the_image_tensor(monkeypatch):
    """Peak memory is bounded by tiles: the node allocates the IMAGE once and the tiles are
    added into it, never into a second full-size buffer."""
    seen = {}
    real = tiling.enhance_image

    def spy(*a, out=None, **kw):
        seen["out"] = out
        return real(*a, out=out, **kw)

    monkeypatch.setattr(tiling, "enhance_image", spy)
    (result,) = PromptGAN_Enhance().enhance(torch.rand(1, 40, 40, 4), tiny_enhancer(), "", 16, 0.5)
    assert result.shape == (1, 80, 80, 4)
    assert seen["out"].data_ptr() == result.data_ptr()


# ----------------------------------------------------------------------------- trainer

TINY = ["--n-images", "8", "--resolution", "32", "--ngf", "4", "--ndf", "4", "--batch", "2",
        "--captions-per-image", "1", "--save-every", "1", "--sample-every", "100"]


def cli(*args, cwd=None):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("PROMPTGAN_DEBUG", None)
    return subprocess.run([sys.executable, str(PACK), *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env=env)


def test_trainer_out_that_is_a_file_is_named(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    with unchanged(tmp_path):
        res = cli("train-gan", "--out", str(f), "--steps", "1")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"--out {f} is a file; --out names the run folder" in res.stderr


def _readonly_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() == 0:       # root writes through permissions: mount a read-only tmpfs
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                          capture_output=True).returncode != 0:
            pytest.skip("cannot mount a read-only tmpfs here")
    else:
        folder.chmod(0o555)
    return folder


def test_trainer_read_only_folder_is_named(tmp_path):
    folder = _readonly_folder(tmp_path)
    try:
        res = cli("train-enhance", "--out", str(folder / "run"), "--steps", "1")
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert f"--out {folder / 'run'}: " in res.stderr
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


def test_full_disk_is_a_clear_error_and_keeps_the_previous_file(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        small = save_checkpoint(disk / "m.safetensors", {"w": torch.zeros(16)}, kind="toy", config={})
        before = small.read_bytes()
        with pytest.raises(CheckpointError, match="the disk is full.*previous file at this path"):
            save_checkpoint(small, {"w": torch.zeros(1_000_000)}, kind="toy", config={})
        assert small.read_bytes() == before
        assert sorted(p.name for p in disk.iterdir()) == ["m.safetensors"]
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_trainer_data_errors_are_named(tmp_path):
    res = cli("train-gan", "--out", str(tmp_path / "r1"), "--data", f"folder:{tmp_path / 'none'}")
    assert res.returncode == 2 and "image folder not found" in res.stderr
    empty = tmp_path / "imgs"
    empty.mkdir()
    (empty / "a.png").write_bytes(b"not a png")
    res = cli("train-gan", "--out", str(tmp_path / "r2"), "--data", f"folder:{empty}")
    assert res.returncode == 2 and "no usable captioned images" in res.stderr
    res = cli("train-gan", "--out", str(tmp_path / "r3"), "--data", "sheep")
    assert res.returncode == 2 and "use procedural, flowers, landscapes or folder:PATH" in res.stderr
    assert "Traceback" not in res.stderr


def test_trainer_init_from_a_damaged_file_is_named(tmp_path):
    bad = tmp_path / "init.safetensors"
    bad.write_bytes(b"")
    res = cli("train-gan", "--out", str(tmp_path / "run"), "--init", str(bad), *TINY,
              "--cache-dir", str(tmp_path / "cache"), "--steps", "1")
    assert res.returncode == 2 and "empty (0 bytes)" in res.stderr and "Traceback" not in res.stderr


def test_sample_prompts_file_without_prompts_is_named(tmp_path):
    from promptgan.models.train.gan import choose_sample_prompts

    f = tmp_path / "p.txt"
    f.write_text("\n  \n")
    with pytest.raises(ValueError, match="holds no prompt"):
        choose_sample_prompts(str(f), "procedural", [])
    caps = [f"caption {i}" for i in range(40)]
    picked = choose_sample_prompts(None, "folder:/x", caps)
    assert len(picked) == 16 and picked[0] == "caption 0" and picked[-1] == "caption 39"


def test_damaged_data_cache_is_rebuilt_not_fatal(tmp_path):
    from promptgan.models.train.gan import load_training_data

    cache = tmp_path / "cache"
    first = load_training_data("flowers", 32, 4, 0, cache, "cpu", 1)
    (path,) = cache.glob("data_*.safetensors")
    path.write_bytes(path.read_bytes()[:3000])           # a kill or a full disk mid-write
    (cache / ".tmpAbC123").write_bytes(b"x" * 10)        # what safetensors leaves when killed ...
    os.utime(cache / ".tmpAbC123", (1, 1))               # ... long ago
    (cache / ".tmpXyZ789").write_bytes(b"x")             # another run's write in progress: kept
    again = load_training_data("flowers", 32, 4, 0, cache, "cpu", 1)
    assert torch.equal(first.images, again.images) and first.captions == again.captions
    assert sorted(p.name for p in cache.iterdir()) == [".tmpXyZ789", path.name]
    assert load_training_data("flowers", 32, 4, 0, cache, "cpu", 1).captions == first.captions


def test_headless_models_dir_and_model_path(tmp_path, monkeypatch, capsys):
    """A model trained with train-gan runs through `run` by path or --models-dir, no renaming."""
    from promptgan.nodes import headless

    monkeypatch.setattr(runtime, "_standalone_roots", {runtime.MODEL_FOLDER: []})
    own = tmp_path / "mine"
    own.mkdir()
    gan.save_gan(own / "mine.safetensors", *tiny_gan(), encoder_id=DEFAULT_ENCODER_ID,
                 provenance={"step": 1}, dtype=None)
    # the tiny model reads 6 dims, MiniLM gives 384: the run gets as far as that check
    wf = str(PACK / "workflows" / "text_to_image.json")
    out = ["--output-dir", str(tmp_path / "out")]
    assert headless.main([wf, "--set", "1.model_name=mine.safetensors", *out]) == 2
    assert "'mine.safetensors' was not found in" in capsys.readouterr().err
    assert headless.main([wf, "--set", f"1.model_name={own / 'mine.safetensors'}", *out]) == 1
    assert "have 384 dims, model 'mine.safetensors'" in capsys.readouterr().err
    monkeypatch.setattr(runtime, "_standalone_roots", {runtime.MODEL_FOLDER: []})
    assert headless.main([wf, "--models-dir", str(own), "--set", "1.model_name=mine.safetensors",
                          *out]) == 1
    assert "have 384 dims, model 'mine.safetensors'" in capsys.readouterr().err
    assert headless.main([wf, "--models-dir", str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.png"))
