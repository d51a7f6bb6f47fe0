"""Record what every bundled workflow produces, run headless, as 16x16 thumbnails per image:
the reference ``test_layout`` compares against (a refactor must not change an output).

    .venv/bin/python tests/record_workflow_outputs.py > tests/data/workflow_outputs.json

Run it again only when a shipped weights file changes on purpose (the file records their
SHA-256, and the test says which one changed).
"""
from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def thumbnails(paths) -> list[list]:
    from PIL import Image

    out = []
    for p in sorted(paths):
        with Image.open(p) as im:
            small = im.convert("RGB").resize((16, 16), Image.BOX)
        out.append(np.asarray(small).tolist())
    return out


def run_all() -> dict:
    from promptgan.nodes import headless

    result = {}
    for wf in sorted((ROOT / "workflows" / "api").glob("*.json")):
        with tempfile.TemporaryDirectory() as tmp:
            result[wf.stem] = thumbnails(headless.run_workflow(json.loads(wf.read_text()), tmp))
    return result


def weights_digest() -> dict:
    folder = ROOT / "models" / "weights"
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.glob("*.safetensors"))}


def load_pack() -> None:
    """Import the pack folder as the package ``promptgan``, as ComfyUI and the CLI do."""
    import importlib.util

    if "promptgan" in sys.modules:
        return
    spec = importlib.util.spec_from_file_location("promptgan", ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["promptgan"] = module
    spec.loader.exec_module(module)


if __name__ == "__main__":
    load_pack()
    json.dump({"weights": weights_digest(), "outputs": run_all()}, sys.stdout)
    print()
