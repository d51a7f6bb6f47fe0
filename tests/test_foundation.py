"""Foundation: import cost, checkpoint I/O, text encoding, TextEncode node, model-folder safety."""
import ast
import subprocess
import sys

import pytest
import torch

from promptgan.models import checkpoint as ck
from promptgan.models import text_encoder as te
from promptgan.nodes import runtime
from promptgan.nodes.text_nodes import DEFAULT_CHOICE, MODEL_CHOICE, PromptGAN_TextEncode


def test_import_loads_no_transformers_and_no_weights(pack_root):
    code = (
        "import sys, importlib.util, torch\n"
        f"root = {str(pack_root)!r}\n"
        "spec = importlib.util.spec_from_file_location('pg', root + '/__init__.py',"
        " submodule_search_locations=[root])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['pg'] = m; spec.loader.exec_module(m)\n"
        "print(sorted(m.NODE_CLASS_MAPPINGS))\n"
        "print('transformers' in sys.modules, 'transformers.models' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    names, flags = out.stdout.strip().splitlines()
    assert "PromptGAN_TextEncode" in names
    assert all(n.startswith("PromptGAN_") for n in ast.literal_eval(names))
    assert flags == "False False"   # safetensors may load (1.5 ms); transformers (seconds) not


def _net():
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))


def test_checkpoint_round_trip_keeps_metadata(tmp_path):
    net = _net()
    path = ck.save_checkpoint(tmp_path / "m.safetensors", net.state_dict(), kind="toy",
                              config={"width": 3}, encoder="enc/x", resolution=64,
                              provenance={"command": "train --x", "step": 12}, dtype=torch.float16)
    got = ck.load_checkpoint(path, kind="toy")
    assert (got.config, got.encoder, got.resolution) == ({"width": 3}, "enc/x", 64)
    assert got.provenance == {"command": "train --x", "step": 12}
    assert got.tensors["0.weight"].dtype == torch.float16
    other = _net()
    ck.load_state_strict(other, got.tensors)
    assert torch.allclose(other[0].weight, net[0].weight, atol=1e-3)
    assert not list(tmp_path.glob("*.tmp")), "the atomic write left a temporary file"


def test_strict_loading_names_the_key(tmp_path):
    state = _net().state_dict()
    state["1.weight"] = torch.zeros(5, 5)
    with pytest.raises(ck.CheckpointError, match=r"'1.weight' has shape \(5, 5\), expected \(2, 3\)"):
        ck.load_state_strict(_net(), state, source="m.safetensors")
    del state["1.bias"]
    state["extra"] = torch.zeros(1)
    with pytest.raises(ck.CheckpointError, match=r"missing keys \['1.bias'\].*unexpected keys \['extra'\]"):
        ck.load_state_strict(_net(), state)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt"])
def test_pickle_files_are_refused(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    torch.save({"w": torch.zeros(1)}, path)
    with pytest.raises(ck.CheckpointError, match="refusing to load a pickle-format file"):
        ck.load_checkpoint(path)


def test_corrupt_foreign_and_wrong_kind_files(tmp_path):
    good = ck.save_checkpoint(tmp_path / "g.safetensors", _net().state_dict(), kind="toy", config={})
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(good.read_bytes()[:50])
    with pytest.raises(ck.CheckpointError, match="broken.safetensors: not a readable safetensors"):
        ck.load_checkpoint(broken)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ck.CheckpointError, match="not a PromptGAN checkpoint"):
        ck.load_checkpoint(tmp_path / "foreign.safetensors")
    with pytest.raises(ck.CheckpointError, match="holds a 'toy' network, expected a 'gan'"):
        ck.load_checkpoint(good, kind="gan")
    with pytest.raises(ck.CheckpointError, match="no such checkpoint file"):
        ck.load_checkpoint(tmp_path / "missing.safetensors")


# --- text encoding ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def encoder():
    return te.load_encoder()


def test_default_encoder_embeds(encoder):
    e = encoder.encode(["a red flower", "a red flower", "snowy mountains at night"])
    assert e.sentence.shape == (3, 384) and e.encoder_id == te.DEFAULT_ENCODER_ID
    assert torch.allclose(e.sentence.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.equal(e.sentence[0], e.sentence[1])
    assert e.tokens.shape[:2] == e.mask.shape and e.tokens.shape[2] == 384
    # related prompts are closer than unrelated ones: the language model matters
    e2 = encoder.encode(["a crimson blossom"]).sentence[0]
    assert e2 @ e.sentence[0] > e2 @ e.sentence[2]


def test_empty_long_and_non_english_prompts(encoder, caplog):
    empty = encoder.encode([""])
    assert torch.isfinite(empty.sentence).all() and empty.mask.sum() == 2   # [CLS] [SEP]
    with caplog.at_level("WARNING", logger="PromptGAN"):
        long = encoder.encode(["flower " * 700])
    assert long.tokens.shape[1] == encoder.max_length
    assert "the rest is cut off" in caplog.text
    other = encoder.encode(["une fleur rouge", "红色的花"])
    assert torch.isfinite(other.sentence).all() and other.sentence.shape == (2, 384)
    assert not torch.allclose(other.sentence[0], other.sentence[1])


def test_encoder_is_cached(encoder):
    assert te.load_encoder() is encoder


def test_split_prompts():
    assert te.split_prompts("a\n\n  b  \n") == ["a", "b"]
    assert te.split_prompts("   ") == [""]


# --- TextEncode node ---------------------------------------------------------------------------

def test_text_encode_node_batches_lines():
    (e,) = PromptGAN_TextEncode().encode("a red flower\na blue flower", DEFAULT_CHOICE)
    assert len(e) == 2 and e.prompts == ["a red flower", "a blue flower"]


def test_text_encode_node_tooltips():
    spec = PromptGAN_TextEncode.INPUT_TYPES()
    for group in spec.values():
        for name, (_, opts) in group.items():
            assert opts.get("tooltip"), f"input {name} has no tooltip"
    assert len(PromptGAN_TextEncode.OUTPUT_TOOLTIPS) == len(PromptGAN_TextEncode.RETURN_TYPES)


def test_text_encode_node_errors():
    node = PromptGAN_TextEncode()
    with pytest.raises(ValueError, match="unknown text encoder 'nope'"):
        node.encode("x", "nope")
    with pytest.raises(ValueError, match="needs the model input connected"):
        node.encode("x", MODEL_CHOICE)


class _ClipLike:
    """Stands in for ComfyUI's CLIP object (tokenize / encode_from_tokens) in plain Python."""

    def __init__(self, pooled):
        self.pooled = pooled

    def tokenize(self, text):
        return {"l": [[(1, 1.0)]]}

    def encode_from_tokens(self, tokens, return_pooled=False):
        return torch.zeros(1, 77, 768), self.pooled


def test_text_encode_clip_input():
    (e,) = PromptGAN_TextEncode().encode("a\nb", DEFAULT_CHOICE, clip=_ClipLike(torch.ones(1, 768)))
    assert e.sentence.shape == (2, 768) and e.encoder_id == "comfyui-clip-pooled-768"
    with pytest.raises(ValueError, match=r"pooled output has shape \(3, 768\)"):
        PromptGAN_TextEncode().encode("a", DEFAULT_CHOICE, clip=_ClipLike(torch.ones(3, 768)))
    with pytest.raises(ValueError, match="gave no pooled output"):
        PromptGAN_TextEncode().encode("a", DEFAULT_CHOICE, clip=_ClipLike(None))


# --- model folders -----------------------------------------------------------------------------

def test_names_resolve_only_inside_their_folder(tmp_path):
    root = tmp_path / "promptgan"
    root.mkdir()
    (root / "ok.safetensors").write_bytes(b"x")
    (tmp_path / "secret.safetensors").write_bytes(b"x")
    assert runtime.resolve_in([root], "ok.safetensors", "model") == (root / "ok.safetensors").resolve()
    with pytest.raises(ValueError, match="points outside its model folder"):
        runtime.resolve_in([root], "../secret.safetensors", "model")
    with pytest.raises(ValueError, match="is an absolute path"):
        runtime.resolve_in([root], str(tmp_path / "secret.safetensors"), "model")
    with pytest.raises(FileNotFoundError, match="'nope.safetensors' not found"):
        runtime.resolve_in([root], "nope.safetensors", "model")


def test_loader_dropdowns_list_only_their_kind(tmp_path, monkeypatch):
    """One shared models/promptgan folder: each loader lists only the files it can load."""
    import types

    from safetensors.torch import save_file

    from promptgan.models.checkpoint import save_checkpoint
    from promptgan.nodes import enhance_nodes, gan_nodes

    t = {"w": torch.zeros(2)}
    save_checkpoint(tmp_path / "mine_gan.safetensors", t, kind="gan", config={})
    save_checkpoint(tmp_path / "mine_x4.safetensors", t, kind="enhancer", config={})
    save_file(t, str(tmp_path / "foreign.safetensors"))
    (tmp_path / "broken.safetensors").write_bytes(b"\x01\x02not a header")
    (tmp_path / "old.ckpt").write_bytes(b"x")
    names = sorted(p.name for p in tmp_path.iterdir())
    fake = types.SimpleNamespace(get_filename_list=lambda folder: names,
                                 get_full_path=lambda folder, name: str(tmp_path / name),
                                 get_folder_paths=lambda folder: [str(tmp_path)])
    monkeypatch.setattr(runtime, "folder_paths", fake)
    assert gan_nodes.model_choices() == [gan_nodes.BUNDLED_CHOICE, "mine_gan.safetensors"]
    enh = enhance_nodes.PromptGAN_EnhancerLoader.INPUT_TYPES()["required"]["model_name"][0]
    assert [n for n in enh if not n.endswith(enhance_nodes.BUNDLED_SUFFIX)] == ["mine_x4.safetensors"]
    validate = gan_nodes.PromptGAN_ModelLoader.VALIDATE_INPUTS
    assert "holds a PromptGAN 'enhancer' file, not a 'gan' one; load it with PromptGAN Enhancer " \
        "Loader" in validate("mine_x4.safetensors")
    assert "not a safetensors header" in validate("broken.safetensors")
    assert "not one written by PromptGAN" in validate("foreign.safetensors")
    from promptgan.models import gan
    from promptgan.models.enhance import model as enhance_model

    assert (gan_nodes.GAN_KIND, enhance_nodes.ENHANCER_KIND) == (gan.GAN_KIND, enhance_model.KIND)


def test_pyproject_registry_fields(pack_root):
    import tomllib

    meta = tomllib.loads((pack_root / "pyproject.toml").read_text())
    comfy, project = meta["tool"]["comfy"], meta["project"]
    assert comfy["PublisherId"] and comfy["DisplayName"]
    icon = comfy["Icon"].split("/main/", 1)[1]           # served from the repository itself
    assert (pack_root / icon).is_file()
    assert {"Repository", "Bug Tracker", "Documentation"} <= set(project["urls"])
    assert project["requires-comfyui"] and project["classifiers"]
    version = project["version"]
    assert version.count(".") == 2 and all(p.isdigit() for p in version.split("."))
    assert f"## {version}" in (pack_root / "CHANGELOG.md").read_text()  # every release logged
    # ComfyUI brings torch: neither the pack's requirements nor its metadata may replace it
    reqs = (pack_root / "requirements.txt").read_text().splitlines()
    assert not [r for r in reqs + project["dependencies"] if r.strip().startswith("torch")]
