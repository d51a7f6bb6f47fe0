"""Headless runner: UI->API conversion, validation messages, execution, core nodes.

Uses small fake node classes only, never the pack's real nodes.
"""
import json
from typing import ClassVar

import numpy as np
import pytest
import torch
from PIL import Image

from promptgan.nodes import headless
from promptgan.nodes.headless import (
    NodeExecutionError,
    WorkflowError,
    main,
    run_workflow,
    to_api,
    validate,
)


class SolidColor:
    COLORS: ClassVar[dict] = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**32 - 1}),
                             "color": (list(cls.COLORS),),
                             "size": ("INT", {"default": 8, "min": 1, "max": 64})},
                "optional": {"brightness": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0}),
                             "model": ("FAKE_MODEL",)}}

    def make(self, seed, color, size, brightness=1.0, model=None):
        rgb = torch.tensor(self.COLORS[color]) * brightness
        return (rgb.expand(1, size, size, 3).clone(),)


class Double:
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "double"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "note": ("STRING", {"default": ""})}}

    @classmethod
    def VALIDATE_INPUTS(cls, note):
        return True if note != "bad" else "note 'bad' is not allowed"

    def double(self, images, note):
        return {"ui": {"text": [note]}, "result": ((images * 2).clamp(0, 1),)}


class SeedSource:
    RETURN_TYPES = ("INT",)
    FUNCTION = "get"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 5})}}

    def get(self, value):
        return (value,)


class Boom:
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "explode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}}

    def explode(self, images):
        raise ValueError("kaboom")


CLASSES = {"SolidColor": SolidColor, "Double": Double, "SeedSource": SeedSource, "Boom": Boom}


def _ui_node(nid, ntype, widgets=(), inputs=(), mode=0):
    return {"id": nid, "type": ntype, "mode": mode, "widgets_values": list(widgets),
            "inputs": [{"name": n, "type": t, "link": link} for n, t, link in inputs],
            "outputs": []}


def _ui_workflow():
    return {
        "nodes": [
            _ui_node(1, "SolidColor", [42, "randomize", "green", 8, 0.5],
                     [("model", "FAKE_MODEL", None)]),
            _ui_node(2, "Reroute", inputs=[("", "*", 1)]),
            _ui_node(3, "Double", ["ok"], [("images", "IMAGE", 2)]),
            _ui_node(4, "SaveImage", ["test"], [("images", "IMAGE", 3)]),
            _ui_node(5, "Note", ["just a note"]),
            _ui_node(6, "SolidColor", [1, "fixed", "red", 8, 1.0], mode=2),
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"],
                  [3, 3, 0, 4, 0, "IMAGE"]],
    }


def _strip_meta(api):
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}


def _api_workflow(**solid):
    inputs = {"seed": 1, "color": "red", "size": 8, "brightness": 0.25, **solid}
    return {"1": {"class_type": "SolidColor", "inputs": inputs},
            "2": {"class_type": "Double", "inputs": {"images": ["1", 0], "note": "x"}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0],
                                                        "filename_prefix": "api"}}}


def test_ui_to_api_skips_seed_control_follows_reroute_and_drops_ui_nodes():
    api = to_api(_ui_workflow(), node_classes=CLASSES)
    assert _strip_meta(api) == {
        "1": {"class_type": "SolidColor",
              "inputs": {"seed": 42, "color": "green", "size": 8, "brightness": 0.5}},
        "3": {"class_type": "Double", "inputs": {"images": ["1", 0], "note": "ok"}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "test"}},
    }


@pytest.mark.parametrize("widgets", [[0, "fixed", "blue", 4], ["blue", 4]])
def test_ui_linked_widget_with_or_without_its_slot(widgets):
    wf = {"nodes": [_ui_node(1, "SeedSource", [9]),
                    _ui_node(2, "SolidColor", widgets, [("seed", "INT", 7)])],
          "links": [[7, 1, 0, 2, 0, "INT"]]}
    inputs = to_api(wf, node_classes=CLASSES)["2"]["inputs"]
    assert inputs == {"seed": ["1", 0], "color": "blue", "size": 4}


def test_ui_workflow_runs_and_embeds_prompt_and_workflow(tmp_path):
    paths = run_workflow(_ui_workflow(), tmp_path, node_classes=CLASSES)
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["test_00001_.png"]
    with Image.open(paths[0]) as img:
        assert img.size == (8, 8)
        assert img.getpixel((0, 0)) == (0, 255, 0)  # green * 0.5, doubled
        prompt, workflow = json.loads(img.text["prompt"]), json.loads(img.text["workflow"])
    assert prompt["1"]["inputs"]["seed"] == 42
    assert workflow["links"] == _ui_workflow()["links"]


def test_api_workflow_runs_with_overrides_and_counter(tmp_path):
    paths = run_workflow(_api_workflow(), tmp_path, node_classes=CLASSES,
                         overrides=["1.color=blue", "1.seed=7"])
    paths += run_workflow(_api_workflow(), tmp_path, node_classes=CLASSES)
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["api_00001_.png", "api_00002_.png"]
    with Image.open(paths[0]) as img:
        assert img.getpixel((0, 0)) == (0, 0, 127)
        prompt = json.loads(img.text["prompt"])
        assert "workflow" not in img.text
    assert prompt["1"]["inputs"]["seed"] == 7 and prompt["1"]["inputs"]["color"] == "blue"


def test_preview_image_goes_to_preview_folder(tmp_path):
    wf = {"1": {"class_type": "SolidColor", "inputs": {"seed": 0, "color": "red", "size": 2}},
          "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    paths = run_workflow(wf, tmp_path, node_classes=CLASSES)
    assert paths == [str(tmp_path / "preview" / "PromptGAN_preview_00001_.png")]


def test_validation_reports_every_problem_with_node_id():
    wf = {
        "1": {"class_type": "SolidColor",
              "inputs": {"seed": -3, "color": "purple", "size": "abc", "brightness": 2.0}},
        "2": {"class_type": "Double", "inputs": {"images": ["99", 0], "note": ""}},
        "3": {"class_type": "Double", "inputs": {"images": ["1", 5], "note": ""}},
        "4": {"class_type": "SolidColor",
              "inputs": {"color": "red", "size": 70, "model": ["1", 0]}},
        "5": {"class_type": "Nope", "inputs": {}},
        "6": {"class_type": "Double", "inputs": {"images": ["4", 0], "note": "bad"}},
        "7": {"class_type": "Double", "inputs": {"images": ["1", 0], "note": ["x"]}},
    }
    for i, src in enumerate(["2", "3", "6", "7"], start=10):
        wf[str(i)] = {"class_type": "SaveImage", "inputs": {"images": [src, 0]}}
    problems = validate(wf, node_classes=CLASSES)
    text = "\n".join(problems)
    expected = [
        "node 1 (SolidColor): input 'seed' = -3 is below min 0",
        "node 1 (SolidColor): input 'color' = 'purple' is not one of ['red', 'green', 'blue']",
        "node 1 (SolidColor): input 'size' = 'abc' is not a valid INT",
        "node 1 (SolidColor): input 'brightness' = 2.0 is above max 1.0",
        "node 2 (Double): input 'images' is linked to node 99, which does not exist",
        "node 3 (Double): input 'images' is linked to output 5 of node 1 (SolidColor)",
        "node 4 (SolidColor): missing required input 'seed'",
        "node 4 (SolidColor): input 'size' = 70 is above max 64",
        ("node 4 (SolidColor): input 'model' expects FAKE_MODEL but output 0 of node 1 "
         "(SolidColor) is IMAGE"),
        "node 5 (Nope): unknown node type",
        "node 6 (Double): note 'bad' is not allowed",
        "node 7 (Double): input 'note' = ['x'] is not a link",
    ]
    for item in expected:
        assert item in text, f"{item!r} not in\n{text}"
    for i in range(10, 14):
        assert f"node {i} (SaveImage): missing required input 'filename_prefix'" in text
    with pytest.raises(WorkflowError) as info:
        run_workflow(wf, "unused", node_classes=CLASSES)
    assert len(info.value.problems) == len(problems)


def test_no_output_node_and_bad_override():
    wf = {"1": {"class_type": "SolidColor", "inputs": {"seed": 0, "color": "red", "size": 2}}}
    assert any("no output node" in p for p in validate(wf, node_classes=CLASSES))
    with pytest.raises(WorkflowError) as info:
        run_workflow(_api_workflow(), "unused", node_classes=CLASSES,
                     overrides=["9.seed=1", "1.nothing=2", "1seed"])
    text = "\n".join(info.value.problems)
    assert "no node 9" in text and "has no input 'nothing'" in text and "NODE_ID.INPUT" in text


def test_cycle_is_reported():
    wf = {"1": {"class_type": "Double", "inputs": {"images": ["2", 0], "note": ""}},
          "2": {"class_type": "Double", "inputs": {"images": ["1", 0], "note": ""}},
          "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "c"}}}
    problems = validate(wf, node_classes=CLASSES)
    assert any(p.startswith("dependency cycle: node 2 (Double) <- node 1 (Double)")
               for p in problems), problems


def test_bypassed_dependency_is_reported():
    wf = _ui_workflow()
    wf["nodes"][0]["mode"] = 4
    with pytest.raises(WorkflowError) as info:
        run_workflow(wf, "unused", node_classes=CLASSES)
    assert "node 3 (Double): input 'images' comes from node 1 (SolidColor), which is bypassed" \
        in "\n".join(info.value.problems)


def test_node_exception_names_the_node(tmp_path):
    wf = _api_workflow()
    wf["2"]["class_type"] = "Boom"
    with pytest.raises(NodeExecutionError) as info:
        run_workflow(wf, tmp_path, node_classes=CLASSES)
    assert str(info.value) == "node 2 (Boom): ValueError: kaboom"


def test_load_image_mask_is_inverted_alpha(tmp_path):
    rgba = np.zeros((4, 6, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[:, 3:, 3] = 255  # left half transparent, right half opaque
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    Image.fromarray(rgba[..., :3], "RGB").save(tmp_path / "b.png")
    loader = headless._node_classes({}, tmp_path, tmp_path)["LoadImage"]
    assert loader.INPUT_TYPES()["required"]["image"][0] == ["a.png", "b.png"]
    image, mask = loader().load_image("a.png")
    assert image.shape == (1, 4, 6, 3) and image.dtype == torch.float32
    assert torch.allclose(image[0, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert mask.shape == (1, 4, 6)
    assert mask[0, :, :3].eq(1).all() and mask[0, :, 3:].eq(0).all()
    assert loader().load_image("b.png")[1].shape == (1, 64, 64)
    assert loader.VALIDATE_INPUTS("missing.png") is not True
    assert loader.VALIDATE_INPUTS("../a.png") is not True


def test_ui_load_image_skips_upload_value(tmp_path):
    Image.new("RGBA", (3, 2), (0, 0, 255, 0)).save(tmp_path / "in.png")
    wf = {"nodes": [_ui_node(1, "LoadImage", ["in.png", "image"]),
                    _ui_node(2, "SaveImage", ["loaded"], [("images", "IMAGE", 1)])],
          "links": [[1, 1, 0, 2, 0, "IMAGE"]]}
    assert to_api(wf, node_classes={})["1"]["inputs"] == {"image": "in.png"}
    paths = run_workflow(wf, tmp_path / "out", input_dir=tmp_path, node_classes={})
    with Image.open(paths[0]) as img:
        assert img.size == (3, 2) and img.getpixel((0, 0)) == (0, 0, 255)


def test_main_exit_codes(tmp_path, capsys):
    good, bad, boom = tmp_path / "good.json", tmp_path / "bad.json", tmp_path / "boom.json"
    good.write_text(json.dumps(_api_workflow()))
    bad.write_text(json.dumps(_api_workflow(seed=-1, color="pink")))
    wf = _api_workflow()
    wf["2"]["class_type"] = "Boom"
    boom.write_text(json.dumps(wf))
    out = str(tmp_path / "out")
    assert main(["run", str(good), "--output-dir", out, "--set", "1.size=3"],
                node_classes=CLASSES) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"OUTPUT {tmp_path / 'out' / 'api_00001_.png'}"]
    assert main([str(bad), "--output-dir", out], node_classes=CLASSES) == 2
    err = capsys.readouterr().err
    assert "2 problem(s)" in err and "node 1 (SolidColor): input 'seed' = -1" in err
    assert main([str(boom), "--output-dir", out], node_classes=CLASSES) == 1
    assert "node 2 (Boom): ValueError: kaboom" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.json")], node_classes=CLASSES) == 2
