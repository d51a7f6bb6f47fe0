"""Load the pack folder as the package ``promptgan`` (as ComfyUI loads a custom node)."""
import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_pack():
    """The command line's own loader (``__main__.load_pack``) imports the folder."""
    spec = importlib.util.spec_from_file_location("promptgan_main", ROOT / "__main__.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    return cli.load_pack()


_load_pack()
# Tests see float32 on every CPU: on one with native bf16, Enhance would otherwise choose bf16
# autocast (fast_paths), and comparisons between tiled and whole-image runs or against recorded
# outputs would depend on the machine. tests/test_fast_paths.py tests the bf16 path itself.
os.environ["PROMPTGAN_FP32"] = "1"


@pytest.fixture(scope="session")
def pack_root() -> Path:
    return ROOT
