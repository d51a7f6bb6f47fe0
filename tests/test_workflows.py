"""Every shipped workflow validates against the nodes' INPUT_TYPES and API copies match the UI
files (tests/comfyui runs them inside a real ComfyUI)."""
import json
from pathlib import Path

import pytest

from promptgan.nodes import headless

ROOT = Path(__file__).resolve().parents[1]
UI_FILES = sorted((ROOT / "workflows").glob("*.json"))


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
