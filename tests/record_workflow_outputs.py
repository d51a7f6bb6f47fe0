"""Record what every bundled workflow produces, run headless, as 16x16 thumbnails per image:
the reference ``test_layout`` compares against (a refactor must not change an output).

    .venv/bin/python tests/record_workflow_outputs.py

Run it when a shipped weights file changes on purpose (the file records their SHA-256, and the
test says which one changed), and once on each kind of CPU the tests run on. The outputs are
kept per CPU kind (torch's ATen capability: AVX2, AVX512, ...): Refine's gradient flow is chaotic
in its input (a relative change of 1e-7 in the noise moves refined pixels by up to 240 levels),
so the float rounding of one vector unit against another's draws a different refined picture.
Recording with the same weights adds this CPU's outputs and keeps the others'; new weights
drop the others'.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def thumbnails(paths) -> list[list]:
    from PIL import Image

    out = []
    for p in sorted(paths):
        with Image.open(p) as im:
            small = im.convert("RGB").resize((16, 16), Image.BOX)
        out.append(np.asarray(small).tolist())
    return out


# float32 (a CPU with native bf16 would otherwise run Enhance under bf16, up to 1.5 levels off)
# and one thread per call (the thread policy gives fewer threads on a busy machine, and Refine's
# gradient flow magnifies the different rounding of another thread count)
PINNED_ENV = {"PROMPTGAN_FP32": "1", "PROMPTGAN_THREADS": "1"}


def run_all() -> dict:
    """Thumbnails of every bundled workflow's images, under PINNED_ENV."""
    return run_workflows(sorted(p.stem for p in (ROOT / "workflows" / "api").glob("*.json")))


def run_workflows(names: list[str]) -> dict:
    """{name: thumbnails} of the bundled workflows ``names``, under PINNED_ENV."""
    import os

    from promptgan.nodes import headless

    previous = {k: os.environ.get(k) for k in PINNED_ENV}
    os.environ.update(PINNED_ENV)
    try:
        result = {}
        for name in names:
            wf = ROOT / "workflows" / "api" / f"{name}.json"
            with tempfile.TemporaryDirectory() as tmp:
                result[name] = thumbnails(headless.run_workflow(json.loads(wf.read_text()), tmp))
        return result
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def weights_digest() -> dict:
    """SHA-256 of each shipped file's tensors (names, dtypes, shapes, bytes), not of its metadata:
    a provenance note or vocabulary added to a file does not change what it draws."""
    from safetensors import safe_open

    digests = {}
    for path in sorted((ROOT / "models" / "weights").glob("*.safetensors")):
        h = hashlib.sha256()
        with safe_open(str(path), "pt") as f:
            for key in sorted(f.keys()):
                t = f.get_tensor(key)
                h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
                h.update(t.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        digests[path.name] = h.hexdigest()
    return digests


def load_pack() -> None:
    """Import the pack folder as the package ``promptgan`` with the command line's own loader
    (``__main__.load_pack``, the way ComfyUI imports a custom node)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("promptgan_main", ROOT / "__main__.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    cli.load_pack()


REFERENCE = ROOT / "tests" / "data" / "workflow_outputs.json"


def cpu_kind() -> str:
    import torch

    return torch.backends.cpu.get_cpu_capability()


def record() -> Path:
    weights = weights_digest()
    try:
        old = json.loads(REFERENCE.read_text())
    except (OSError, ValueError):
        old = {}
    by_cpu = old.get("outputs_by_cpu", {}) if old.get("weights") == weights else {}
    by_cpu[cpu_kind()] = run_all()
    REFERENCE.write_text(json.dumps({"weights": weights, "outputs_by_cpu": by_cpu}) + "\n")
    return REFERENCE


if __name__ == "__main__":
    load_pack()
    print(f"recorded {cpu_kind()} outputs in {record()}")
