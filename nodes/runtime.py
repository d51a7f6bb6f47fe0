"""The one place that touches ComfyUI: model folders, device, progress, Cancel.

Everything here degrades gracefully outside ComfyUI (plain Python, tests, the headless runner):
the device is picked among cuda/mps/cpu, progress goes to tqdm, interruption is a no-op.
"""
from __future__ import annotations

import functools
import logging
import math
import os
from pathlib import Path

import torch

from ..models.checkpoint import WEIGHTS_DIR, CheckpointError, read_metadata
from ..models.devices import move

log = logging.getLogger("PromptGAN")

PACK_DIR = Path(__file__).resolve().parents[1]
BUNDLED_WEIGHTS_DIR = WEIGHTS_DIR
MODEL_FOLDER = "promptgan"
TEXT_ENCODER_FOLDER = "text_encoders"
WEIGHT_EXTENSIONS = {".safetensors"}

try:  # inside ComfyUI
    import folder_paths  # type: ignore
except ImportError:
    folder_paths = None


def in_comfyui() -> bool:
    return folder_paths is not None


def register_model_folder() -> None:
    """Register models/promptgan with ComfyUI (idempotent)."""
    if folder_paths is None:
        return
    path = os.path.join(folder_paths.models_dir, MODEL_FOLDER)
    if MODEL_FOLDER in folder_paths.folder_names_and_paths:
        paths, exts = folder_paths.folder_names_and_paths[MODEL_FOLDER]
        if path not in paths:
            paths.append(path)
        exts.update(WEIGHT_EXTENSIONS)
    else:
        folder_paths.folder_names_and_paths[MODEL_FOLDER] = ([path], set(WEIGHT_EXTENSIONS))


register_model_folder()


def get_device() -> torch.device:
    if folder_paths is not None:
        import comfy.model_management as mm  # type: ignore

        return mm.get_torch_device()
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def load_models(owner, modules, device: torch.device) -> None:
    """Put ``modules`` (parts of ``owner``, e.g. a GANModel's generator) on ``device`` for a run.

    Inside ComfyUI they go through comfy.model_management as ModelPatchers, as its own models do:
    loaded when a node needs them, counted by its free-memory logic, and offloaded to the CPU when
    another model needs the room (so call this before every use). The patchers live on ``owner``,
    which already holds the modules, so no reference cycle keeps a model alive. Outside ComfyUI
    this is ``module.to(device)``."""
    modules = [m for m in modules if m is not None]
    if folder_paths is None:
        for m in modules:
            move(m, device)
        return
    import comfy.model_management as mm  # type: ignore
    import comfy.model_patcher  # type: ignore

    patchers = owner.__dict__.setdefault("_comfy_patchers", {})
    wanted = []
    for m in modules:
        patcher = patchers.get(id(m))
        if patcher is None or patcher.load_device != device:
            patcher = comfy.model_patcher.ModelPatcher(_Held(m), load_device=device,
                                                       offload_device=mm.unet_offload_device())
            patchers[id(m)] = patcher
        wanted.append(patcher)
    mm.load_models_gpu(wanted, force_full_load=True)


class _Held(torch.nn.Module):
    """What a ModelPatcher holds: it sets ``.device`` on its model, which transformers models
    expose as a read-only property, so it gets this container (moving it moves ``inner``)."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner


def intermediate_device() -> torch.device:
    if folder_paths is not None:
        import comfy.model_management as mm  # type: ignore

        return mm.intermediate_device()
    return torch.device("cpu")


def check_interrupt() -> None:
    """Raise ComfyUI's interrupt exception when the user pressed Cancel (no-op outside)."""
    if folder_paths is not None:
        import comfy.model_management as mm  # type: ignore

        mm.throw_exception_if_processing_interrupted()


class _Progress:
    def __init__(self, total: int):
        self.total = max(int(total), 1)
        self._bar = None
        if folder_paths is not None:
            import comfy.utils  # type: ignore

            self._bar = comfy.utils.ProgressBar(self.total)

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def __call__(self, done: int, total: int) -> None:
        """Callback form for models/ loops: progress(done, total)."""
        if self._bar is not None:
            self._bar.update_absolute(done, total)


def progress_bar(total: int) -> _Progress:
    return _Progress(total)


# Model folders outside ComfyUI (the headless runner, plain Python): ./models/<folder> of the
# working directory, plus what ``add_model_dir`` adds (the runner's --models-dir).
_standalone_roots: dict[str, list[Path]] = {
    MODEL_FOLDER: [Path("models") / MODEL_FOLDER],
    TEXT_ENCODER_FOLDER: [Path("models") / TEXT_ENCODER_FOLDER],
}


def add_model_dir(folder: str, path: str | os.PathLike) -> None:
    """Search ``path`` for ``folder``'s files outside ComfyUI (ComfyUI has extra_model_paths)."""
    roots = _standalone_roots.setdefault(folder, [])
    if Path(path) not in roots:
        roots.insert(0, Path(path))


def _walk_names(root: Path) -> list[str]:
    """Relative names of the files under ``root``, following symlinks as ComfyUI does."""
    names = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith("."):
                names.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    return names


def folder_files(folder: str, kind: str | None = None) -> list[str]:
    """Names (relative paths) of the files in a model folder (ComfyUI's, or the standalone
    roots outside it).

    With ``kind`` only the pack's files of that kind are listed ("gan", "enhancer"), read from
    the safetensors header alone, so one shared folder gives each loader only what it can load.
    """
    if folder_paths is not None:
        try:
            names = folder_paths.get_filename_list(folder)
        except KeyError:
            return []
    else:
        names = [n for root in folder_roots(folder) if root.is_dir() for n in _walk_names(root)]
    names = sorted(set(n for n in names if Path(n).suffix.lower() in WEIGHT_EXTENSIONS
                       or folder == TEXT_ENCODER_FOLDER))
    if kind is None:
        return names
    return [n for n in names if file_kind(_full_path(folder, n)) == kind]


def _full_path(folder: str, name: str) -> str | None:
    if folder_paths is not None:
        return folder_paths.get_full_path(folder, name)
    try:
        return str(resolve_in(folder_roots(folder), name, folder))
    except (ValueError, FileNotFoundError):
        return None


def file_kind(path) -> str | None:
    """promptgan.kind of a safetensors file, or None (not ours, unreadable, not safetensors).
    The header is read once per file version: dropdowns ask on every /object_info."""
    if not path or Path(path).suffix.lower() != ".safetensors":
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return _header_kind(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=256)
def _header_kind(path: str, mtime_ns: int, size: int) -> str | None:
    try:
        return read_metadata(path).get("promptgan.kind")
    except Exception:  # noqa: BLE001 - any unreadable file is simply not listed
        return None


def why_not_listed(folder: str, name: str, kind: str, loader: str) -> str:
    """Why ``name`` is not among ``folder``'s files of ``kind``: what was searched, and what is
    wrong with the file if there is one."""
    roots = folder_roots(folder) + ([BUNDLED_WEIGHTS_DIR] if folder == MODEL_FOLDER else [])
    where = ", ".join(str(r) for r in roots) or "no model folder"
    try:
        path = resolve_in(roots, name, f"{folder} model")
    except FileNotFoundError:
        return (f"'{name}' was not found in {where}; put the .safetensors file there (or, "
                "outside ComfyUI, pass --models-dir DIR or the file's path) and pick it from the list")
    except ValueError as exc:
        return str(exc)
    try:
        found = read_metadata(path).get("promptgan.kind")
    except CheckpointError as exc:
        return str(exc)
    if found is None:
        return (f"{path} is a safetensors file but not one written by PromptGAN (its metadata "
                "has no promptgan.kind); train one with `train-gan` or `train-enhance`")
    if found != kind:
        hint = {"gan": "PromptGAN Model Loader", "enhancer": "PromptGAN Enhancer Loader"}.get(found)
        return (f"{path} holds a PromptGAN '{found}' file, not a '{kind}' one"
                + (f"; load it with {hint}" if hint else "") + f" ({loader} lists '{kind}' files)")
    return f"{path} could not be listed"


def folder_roots(folder: str) -> list[Path]:
    if folder_paths is None:
        return [p.absolute() for p in _standalone_roots.get(folder, [])]
    try:
        return [Path(p) for p in folder_paths.get_folder_paths(folder)]
    except KeyError:
        return []


def resolve_in(roots: list[Path], name: str, what: str) -> Path:
    """Resolve ``name`` inside one of ``roots``; refuse anything that escapes them.

    The name is checked as written (``..`` and absolute paths refused), not after following
    symlinks: a link the user placed inside a model folder is theirs to place, and ComfyUI
    lists it too."""
    if not name or "\x00" in name:
        raise ValueError(f"empty or invalid {what} name {name!r}")
    if Path(name).is_absolute():
        raise ValueError(f"{what} '{name}' is an absolute path; give a name relative to the "
                         f"model folder ({', '.join(map(str, roots)) or 'none registered'})")
    for root in roots:
        root = Path(os.path.abspath(root))
        candidate = Path(os.path.normpath(root / name))
        if root != candidate and root not in candidate.parents:
            raise ValueError(f"{what} '{name}' points outside its model folder {root}; "
                             "put the file inside the folder and pick it from the list")
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{what} '{name}' not found in "
                            f"{', '.join(map(str, roots)) or 'any registered model folder'}")


def resolve_model_path(folder: str, name: str) -> Path:
    """A file of the promptgan folder (or the bundled weights) by its dropdown name."""
    roots = folder_roots(folder)
    if folder == MODEL_FOLDER:
        roots = roots + [BUNDLED_WEIGHTS_DIR]
    return resolve_in(roots, name, f"{folder} model")


def text_encoder_folders() -> list[str]:
    """Hugging Face-format encoder folders (holding config.json) under models/text_encoders."""
    found = []
    for root in folder_roots(TEXT_ENCODER_FOLDER):
        if not root.is_dir():
            continue
        for cfg in sorted(root.glob("*/config.json")):
            found.append(cfg.parent.name)
    return sorted(set(found))


def _widget_spec(node_cls, name: str) -> tuple[str, dict]:
    spec = node_cls.INPUT_TYPES()
    for section in ("required", "optional"):
        if name in spec.get(section, {}):
            typ, *rest = spec[section][name]
            return typ, (rest[0] if rest else {})
    raise KeyError(f"{node_cls.__name__} has no input '{name}'")


def checked_numbers(node_cls, **values):
    """The INT/FLOAT inputs ``values`` of ``node_cls``, checked against the node's own
    INPUT_TYPES (type, finite, min and max), so the bounds a user sees in the UI are the ones
    enforced. ComfyUI's own check lets NaN through (NaN < min is false). Returns the values
    converted (int or float) in the order given."""
    out = []
    for name, value in values.items():
        typ, opts = _widget_spec(node_cls, name)
        lo, hi = opts.get("min"), opts.get("max")
        bounds = f" from {lo} to {hi}" if lo is not None and hi is not None else ""
        what = "a whole number" if typ == "INT" else "a number"
        try:
            number = float(value) if typ == "FLOAT" else value
            if typ == "INT":
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                number = int(value)
            if isinstance(value, bool) or not math.isfinite(number):
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"input '{name}' must be {what}{bounds}, got {value!r}") from None
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            raise ValueError(f"input '{name}' must be {what}{bounds}, got {value!r}")
        out.append(number)
    return out[0] if len(out) == 1 else tuple(out)
