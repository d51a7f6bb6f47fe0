"""Load the pack folder as the package ``promptgan`` (as ComfyUI loads a custom node)."""
import importlib.util
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


@pytest.fixture(scope="session")
def pack_root() -> Path:
    return ROOT
