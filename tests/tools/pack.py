"""What every development tool here starts with: the pack folder imported as ``promptgan``
(through its ``__main__.py``, as the command line does). The tools run as scripts
(``.venv/bin/python tests/tools/NAME.py``), so this folder is on their import path."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_pack():
    """Import the pack as ``promptgan`` and return it."""
    spec = importlib.util.spec_from_file_location("promptgan_main", ROOT / "__main__.py")
    main = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(main)
    return main.load_pack()
