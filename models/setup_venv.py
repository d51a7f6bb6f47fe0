"""Set up a virtual environment for the pack and run a command in it. Standard library only: it
runs before torch or anything else is installed.

    python3 . setup run workflows/text_to_image.json    # set up, then make pictures
    python3 . setup test                                # set up with the test tools, then test
    python3 . setup                                     # set up only

The environment is ``.venv`` in the pack folder (``--venv`` to move it). PyTorch comes first: the
CPU build where the machine has no NVIDIA GPU (PyTorch's CPU index; several GB smaller than the
CUDA build pip takes by default), the regular build where it has one; ``--torch SPEC`` overrides
both. Inside ComfyUI none of this is needed: ComfyUI brings torch, and ``requirements.txt`` does not
list it, so installing the pack never replaces the user's torch.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[1]
TORCH_VERSION = "2.13.0"          # the release the tests run on
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
STAMP = ".promptgan-setup"


class SetupError(RuntimeError):
    """Setup cannot go on; the message says what to install or change."""


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def has_nvidia_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None or Path("/proc/driver/nvidia/gpus").is_dir()


def create_venv(venv: Path) -> Path:
    py = venv_python(venv)
    if py.is_file():
        return py
    res = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True)
    if res.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)     # never leave half an environment behind
        text = res.stdout + res.stderr
        if "ensurepip" in text or "No module named venv" in text:
            raise SetupError(
                f"{sys.executable} cannot create virtual environments: its venv module or ensurepip "
                "is missing. On Debian or Ubuntu: sudo apt install python3-venv (then run this "
                "again); elsewhere install Python from python.org, which includes it.")
        raise SetupError(f"python -m venv {venv} failed:\n{text.strip()}")
    return py


def pip_install(py: Path, *args: str) -> None:
    cmd = [str(py), "-m", "pip", "install", "--disable-pip-version-check", *args]
    print("+", " ".join(cmd), flush=True)
    if subprocess.run(cmd).returncode != 0:
        raise SetupError(f"pip could not install {' '.join(a for a in args if not a.startswith('-'))}; "
                         "see pip's message above")


def install_torch(py: Path, spec: str) -> None:
    if subprocess.run([str(py), "-c", "import torch"], capture_output=True).returncode == 0:
        return
    if spec != "auto":
        pip_install(py, spec)
    elif has_nvidia_gpu():
        pip_install(py, f"torch=={TORCH_VERSION}")
    else:
        # one retry: where that index is unreachable, pip goes on with the other sources it knows
        pip_install(py, f"torch=={TORCH_VERSION}", "--index-url", CPU_INDEX, "--retries", "1")


def setup(venv: Path, torch_spec: str, dev: bool) -> Path:
    """The environment's python, with torch and the pack's requirements (plus the test tools
    with ``dev``); a second call with the same requirement files installs nothing."""
    py = create_venv(venv)
    files = [PACK_DIR / "requirements.txt"] + ([PACK_DIR / "requirements-dev.txt"] if dev else [])
    digest = hashlib.sha256(torch_spec.encode()
                            + b"".join(f.read_bytes() for f in files)).hexdigest()
    stamp = venv / STAMP
    if stamp.is_file() and digest in stamp.read_text().split():
        return py
    install_torch(py, torch_spec)
    for f in files:
        pip_install(py, "-r", str(f))
    with open(stamp, "a") as f:
        f.write(digest + "\n")
    return py


def run_tests(py: Path) -> int:
    for cmd in ([str(py), "-m", "ruff", "check", "."], [str(py), "-m", "pytest", "-q", "tests"]):
        print("+", " ".join(cmd), flush=True)
        code = subprocess.run(cmd, cwd=PACK_DIR).returncode
        if code != 0:
            return code
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="setup", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--venv", default=str(PACK_DIR / ".venv"), help="where the environment goes")
    p.add_argument("--torch", default="auto",
                   help=f"pip requirement for PyTorch (auto: torch=={TORCH_VERSION}, the CPU build "
                        "when there is no NVIDIA GPU)")
    p.add_argument("then", nargs=argparse.REMAINDER,
                   help="'test', or a pack command and its arguments (e.g. run WORKFLOW.json)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    test = args.then[:1] == ["test"]
    try:
        py = setup(Path(args.venv), args.torch, dev=test)
    except SetupError as exc:
        print(f"setup: error: {exc}", file=sys.stderr)
        return 2
    if test:
        return run_tests(py)
    if args.then:
        return subprocess.run([str(py), str(PACK_DIR), *args.then]).returncode
    print(f"ready: {py} {PACK_DIR} COMMAND ... (or python3 . setup COMMAND ...)")
    return 0
