"""Load the pack folder as the package ``promptgan`` (as ComfyUI loads a custom node)."""
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_pack():
    if "promptgan" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "promptgan", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["promptgan"] = module
        spec.loader.exec_module(module)
    return sys.modules["promptgan"]


_load_pack()


@pytest.fixture(scope="session")
def pack_root() -> Path:
    return ROOT
