"""The pack inside a real ComfyUI (skipped unless COMFYUI_DIR names a ComfyUI checkout; see
tests/comfyui/README.md): it imports, every shipped workflow runs, bad input is an error the
server survives, extra_model_paths.yaml finds models, and its models go through ComfyUI's
memory manager."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .harness import PACK_DIR, ComfyServer, Rejected, comfyui_python

COMFYUI_DIR = os.environ.get("COMFYUI_DIR", "")
pytestmark = [pytest.mark.comfyui,
              pytest.mark.skipif(not COMFYUI_DIR, reason="set COMFYUI_DIR to a ComfyUI checkout "
                                                         "(tests/comfyui/README.md)")]
API = sorted((PACK_DIR / "workflows" / "api").glob("*.json"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("comfy")
    (work / "input").mkdir()
    for image in (PACK_DIR / "workflows" / "inputs").iterdir():
        shutil.copy(image, work / "input" / image.name)
    with ComfyServer(COMFYUI_DIR, work) as s:
        yield s


def test_pack_imports_with_all_nodes(server):
    line = server.import_line()
    assert line and "IMPORT FAILED" not in line, server.log()[-3000:]
    info = server.get("/object_info")
    ours = sorted(k for k in info if k.startswith("PromptGAN_"))
    assert ours == ["PromptGAN_Enhance", "PromptGAN_EnhancerLoader", "PromptGAN_GANGenerate",
                    "PromptGAN_ModelLoader", "PromptGAN_Refine", "PromptGAN_TextEncode"]


@pytest.mark.parametrize("path", API, ids=lambda p: p.stem)
def test_shipped_workflow_runs(server, path):
    result = server.run(json.loads(path.read_text()))
    assert result.ok, result.error
    assert result.files and all(f.is_file() for f in result.files)


def test_bad_input_is_an_error_and_the_server_goes_on(server):
    prompt = json.loads((PACK_DIR / "workflows" / "api" / "text_to_image.json").read_text())
    prompt["3"]["inputs"]["truncation"] = float("nan")      # ComfyUI's min/max let NaN through
    try:
        result = server.run(prompt)
        assert not result.ok and "input 'truncation' must be a number" in result.error
    except Rejected as exc:                                  # a ComfyUI that checks NaN itself
        assert "truncation" in str(exc)
    prompt["3"]["inputs"]["truncation"] = 1.0
    assert server.run(prompt).ok


def test_extra_model_paths_yaml_finds_a_model(tmp_path):
    """A model in a folder named by extra_model_paths.yaml is listed by the loader and runs."""
    shelf = tmp_path / "shelf" / "promptgan"
    shelf.mkdir(parents=True)
    shutil.copy(PACK_DIR / "models" / "weights" / "promptgan_default.safetensors",
                shelf / "my_model.safetensors")
    config = tmp_path / "extra_model_paths.yaml"
    config.write_text(f"mine:\n    base_path: {tmp_path / 'shelf'}\n    promptgan: promptgan\n")
    with ComfyServer(COMFYUI_DIR, tmp_path / "work",
                     extra_args=["--extra-model-paths-config", str(config)]) as server:
        choices = server.get("/object_info/PromptGAN_ModelLoader")["PromptGAN_ModelLoader"][
            "input"]["required"]["model_name"][0]
        assert "my_model.safetensors" in choices
        prompt = json.loads((PACK_DIR / "workflows" / "api" / "text_to_image.json").read_text())
        prompt["1"]["inputs"]["model_name"] = "my_model.safetensors"
        assert server.run(prompt).ok


def test_models_go_through_comfyui_memory_management():
    out = subprocess.run([comfyui_python(Path(COMFYUI_DIR)), str(Path(__file__).with_name(
        "offload_check.py")), str(Path(COMFYUI_DIR).expanduser()), str(PACK_DIR)],
        capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    assert "OK offloaded" in out.stdout and "OK reloaded" in out.stdout


def test_template_browser_lists_every_workflow_with_its_thumbnail(server):
    """The frontend lists custom-node templates from /workflow_templates and shows
    /api/workflow_templates/<pack>/<name>.jpg beside each."""
    import urllib.request

    listed = server.get("/workflow_templates").get(PACK_DIR.name, [])
    ui = sorted(p.stem for p in (PACK_DIR / "workflows").glob("*.json"))
    assert sorted(listed) == ui
    for name in ui:
        with urllib.request.urlopen(f"{server.url}/api/workflow_templates/{PACK_DIR.name}/"
                                    f"{name}.jpg", timeout=30) as r:
            assert r.status == 200 and r.read(3) == b"\xff\xd8\xff"      # a JPEG
