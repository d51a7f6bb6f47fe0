"""PromptGAN Enhance with an upscaler from ComfyUI's own Load Upscale Model, in a real ComfyUI
(skipped unless COMFYUI_DIR is set; see tests/comfyui/README.md)."""
import os
import struct
import subprocess
from pathlib import Path

import pytest

from .harness import ComfyServer, comfyui_python

COMFYUI_DIR = os.environ.get("COMFYUI_DIR", "")
pytestmark = [pytest.mark.comfyui,
              pytest.mark.skipif(not COMFYUI_DIR, reason="set COMFYUI_DIR to a ComfyUI checkout "
                                                         "(tests/comfyui/README.md)")]

# Run with ComfyUI's python: random-weights Real-ESRGAN compact models (SRVGGNetCompact), x4 and
# x2, saved the way such files are shipped. Exit 3 when spandrel or safetensors is missing.
MAKE_MODEL = """
import sys
try:
    from safetensors.torch import save_file
    try:
        from spandrel.architectures.Compact import Compact as SRVGGNetCompact     # spandrel >= 0.2
    except ImportError:
        from spandrel.architectures.SRVGGNetCompact import SRVGGNetCompact
except ImportError as exc:
    print(exc)
    sys.exit(3)
for scale in (4, 2):
    arch = SRVGGNetCompact(num_in_ch=3, num_out_ch=3, num_feat=16, num_conv=4, upscale=scale)
    save_file({k: v.contiguous() for k, v in arch.state_dict().items()},
              f"{sys.argv[1]}/test_compact_x{scale}.safetensors")
"""


def choices(info: dict, node: str, name: str) -> list:
    """A combo input's options from /object_info (old [list, {...}] or new "COMBO" form)."""
    spec = info[node]["input"]["required"][name]
    return spec[1]["options"] if spec[0] == "COMBO" else spec[0]


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def test_enhance_with_a_connected_upscale_model(tmp_path):
    """EmptyImage 64x64 -> Enhancer Loader (bundled) -> Enhance, with upscale_model from
    UpscaleModelLoader (a random x4 Real-ESRGAN compact file in models/upscale_models): the graph
    validates, runs, and SaveImage writes a 256x256 PNG. The same graph with an x2 file gives
    128x128: the connected model, not the x4 enhancer, sets the scale."""
    models = tmp_path / "work" / "models" / "upscale_models"     # --base-directory's models/
    models.mkdir(parents=True)
    made = subprocess.run([comfyui_python(Path(COMFYUI_DIR)), "-c", MAKE_MODEL, str(models)],
                          capture_output=True, text=True, timeout=300)
    if made.returncode == 3:
        pytest.skip(f"ComfyUI's python cannot build the model: {made.stdout.strip()}")
    assert made.returncode == 0, made.stdout + made.stderr

    with ComfyServer(COMFYUI_DIR, tmp_path / "work") as server:
        info = server.get("/object_info")
        assert "test_compact_x4.safetensors" in choices(info, "UpscaleModelLoader", "model_name")
        assert "enhance_x4 (bundled)" in choices(info, "PromptGAN_EnhancerLoader", "model_name")
        assert "upscale_model" in info["PromptGAN_Enhance"]["input"]["optional"]
        prompt = {
            "1": {"class_type": "EmptyImage",
                  "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x808080}},
            "2": {"class_type": "PromptGAN_EnhancerLoader",
                  "inputs": {"model_name": "enhance_x4 (bundled)"}},
            "3": {"class_type": "UpscaleModelLoader",
                  "inputs": {"model_name": "test_compact_x4.safetensors"}},
            "4": {"class_type": "PromptGAN_Enhance",
                  "inputs": {"image": ["1", 0], "enhancer": ["2", 0],
                             "instruction": "remove the noise", "tile_size": 256,
                             "strength": 1.0, "upscale_model": ["3", 0]}},
            "5": {"class_type": "SaveImage",
                  "inputs": {"images": ["4", 0], "filename_prefix": "upscale_model"}},
        }
        for name, size in (("test_compact_x4.safetensors", 256),
                           ("test_compact_x2.safetensors", 128)):
            prompt["3"]["inputs"]["model_name"] = name
            result = server.run(prompt)
            assert result.ok, result.error + "\n" + server.log()[-3000:]
            assert len(result.files) == 1 and png_size(result.files[0]) == (size, size), name
