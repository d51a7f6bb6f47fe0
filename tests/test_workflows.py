"""Every shipped workflow validates against the nodes' INPUT_TYPES; API copies match the UI files;
with COMFYUI_DIR set, each API workflow also runs inside a real ComfyUI through the harness."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from promptgan.nodes import headless

ROOT = Path(__file__).resolve().parents[1]
UI_FILES = sorted((ROOT / "workflows").glob("*.json"))
HARNESS = ROOT.parent / "shared" / "tools" / "comfy_harness.sh"


def test_there_are_workflows():
    assert UI_FILES, "workflows/ holds no workflow"


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_workflow_validates(path):
    api = headless.to_api(json.loads(path.read_text()))
    assert headless.validate(api) == []


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_api_copy_matches_ui_file(path):
    """workflows/api/<name>.json is what the frontend would queue for workflows/<name>.json."""
    api_path = ROOT / "workflows" / "api" / path.name
    assert api_path.is_file(), f"missing {api_path}; write it with headless.to_api"
    ui = headless.to_api(json.loads(path.read_text()))
    saved = json.loads(api_path.read_text())
    strip = lambda g: {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in g.items()}
    assert strip(saved) == strip(ui)


@pytest.mark.comfyui
@pytest.mark.skipif(not os.environ.get("COMFYUI_DIR"), reason="set COMFYUI_DIR to a ComfyUI checkout")
@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_workflow_runs_in_real_comfyui(path, tmp_path):
    harness = Path(os.environ.get("COMFY_HARNESS", HARNESS))
    api_path = ROOT / "workflows" / "api" / path.name
    input_dir = tmp_path / "work" / "input"
    input_dir.mkdir(parents=True)
    for image in (ROOT / "workflows" / "inputs").glob("*"):
        (input_dir / image.name).write_bytes(image.read_bytes())
    env = dict(os.environ, HARNESS_WORKDIR=str(tmp_path / "work"))
    out = subprocess.run(["bash", str(harness), str(ROOT), str(api_path)], env=env,
                         capture_output=True, text=True, timeout=900)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert "IMPORT FAILED" not in log
    assert "OUTPUT node=" in log and "exists=True" in log


def test_text_to_image_runs_headless(tmp_path):
    from PIL import Image

    wf = json.loads((ROOT / "workflows" / "text_to_image.json").read_text())
    paths = headless.run_workflow(wf, tmp_path, overrides={"3.batch_size": 2})
    assert len(paths) == 8                                  # 4 prompts x 2 images
    with Image.open(paths[0]) as im:
        assert im.size == (64, 64)
        prompt = json.loads(im.text["prompt"])
        assert prompt["3"]["class_type"] == "PromptGAN_GANGenerate"
        assert "workflow" in im.text
