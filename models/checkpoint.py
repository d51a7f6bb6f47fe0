"""Checkpoint I/O: safetensors with JSON metadata, strict loading, no pickle ever.

Every file this pack writes carries in its safetensors metadata (all values are strings):
  promptgan.kind        what the file holds, e.g. "gan", "classifier", "enhancer"
  promptgan.config      JSON of the network's config dataclass
  promptgan.encoder     text-encoder id the network was trained with ("" if none)
  promptgan.resolution  output resolution in pixels ("" if not fixed)
  promptgan.provenance  JSON: training command, step, date, anything else worth keeping
Files are written atomically (temporary file, fsync, rename), so a kill never leaves half a file.
"""
from __future__ import annotations

import errno
import json
import os
import re
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")
META_PREFIX = "promptgan."
MAX_META_CHARS = 1_000_000     # a config or provenance beyond this is not one the trainer wrote
TEMP_SUFFIX = ".tmp"           # save_checkpoint's temporary files: <name>.<random>.tmp
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"   # the weights that ship with the pack


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


@dataclass
class Checkpoint:
    """Tensors plus the metadata fields above, decoded."""

    tensors: dict[str, torch.Tensor]
    kind: str
    config: dict
    encoder: str = ""
    resolution: int | None = None
    provenance: dict = field(default_factory=dict)
    path: str = ""

    def sub(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors under ``prefix.`` with the prefix removed (one network of several)."""
        p = prefix + "."
        return {k[len(p):]: v for k, v in self.tensors.items() if k.startswith(p)}


def refuse_pickle(path: str | os.PathLike) -> None:
    if str(path).lower().endswith(PICKLE_SUFFIXES):
        raise CheckpointError(
            f"{path}: refusing to load a pickle-format file. Pickle files can run arbitrary code "
            "when loaded, so PromptGAN only reads .safetensors. Convert it with safetensors "
            "(safetensors.torch.save_file) in a trusted environment, or use a .safetensors file.")


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, torch.Tensor], *, kind: str,
                    config: dict, encoder: str = "", resolution: int | None = None,
                    provenance: dict | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write ``tensors`` atomically; floating tensors are cast to ``dtype`` when given."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: checkpoints are written as .safetensors only")
    out = {}
    for key, t in tensors.items():
        t = t.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        out[key] = t.contiguous()
    metadata = {
        META_PREFIX + "kind": kind,
        META_PREFIX + "config": json.dumps(config, sort_keys=True),
        META_PREFIX + "encoder": encoder or "",
        META_PREFIX + "resolution": "" if resolution is None else str(int(resolution)),
        META_PREFIX + "provenance": json.dumps(provenance or {}, sort_keys=True),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        _write_or_explain(out, tmp, metadata, path)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)      # mkstemp made it 0600; weights are for everyone
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# what a kill in the middle of save_checkpoint leaves: its own mkstemp file, and the hidden
# file safetensors writes before renaming it over that one
_STALE_TEMPORARY = re.compile(r"(.+\.safetensors\.[A-Za-z0-9_]+\.tmp|\.tmp[A-Za-z0-9]{6}|.+\.tmp\.png)")


def remove_stale_temporaries(folder: str | os.PathLike, older_than: float = 0.0) -> list[Path]:
    """Delete what a killed ``save_checkpoint`` (or sample-grid writer) left in ``folder``.

    In a folder one process owns (a trainer's run folder at start-up) every such file is stale;
    in a shared one (the data cache, which several ranks or runs may write at once) give
    ``older_than`` seconds, so a save in progress elsewhere keeps its temporary file."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    now = time.time()
    removed = [p for p in folder.iterdir() if p.is_file() and _STALE_TEMPORARY.fullmatch(p.name)
               and now - p.stat().st_mtime >= older_than]
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


def describe_damage(path: str | os.PathLike) -> str:
    """Why a file is not a readable safetensors file, read from its bytes (best effort)."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return "the file is empty (0 bytes): the copy or download did not finish"
    with open(path, "rb") as f:
        head = f.read(8)
        if head[:4] == b"PK\x03\x04":
            return ("it is a zip archive (a PyTorch .pt/.ckpt pickle renamed to .safetensors?); "
                    "PromptGAN reads only safetensors")
        if head[:1] == b"\x80":
            return "it is a Python pickle renamed to .safetensors; PromptGAN reads only safetensors"
        if len(head) < 8:
            return f"it is {size} bytes long, too short for a safetensors header"
        (n,) = struct.unpack("<Q", head)
        if f.read(1) != b"{" or n < 2:
            return "its first bytes are not a safetensors header (not a safetensors file)"
        f.seek(8)
        if n > size - 8:
            return (f"it is truncated: its header announces {n} bytes of metadata but the file has "
                    f"{size} bytes")
        try:
            header = json.loads(f.read(n))
            end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
                      default=0)
        except (ValueError, KeyError, TypeError, IndexError, RecursionError):
            return "its first bytes are not a safetensors header (not a safetensors file)"
    if 8 + n + end > size:
        return f"it is truncated at byte {size} of {8 + n + end}: copy or download it again"
    return "its tensor data is damaged: copy or download it again"


def _write_or_explain(tensors: dict, tmp: str, metadata: dict, path: Path) -> None:
    try:
        save_file(tensors, tmp, metadata=metadata)
    except Exception as exc:  # an OSError, or safetensors' own error type with the OS message
        full = getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or any(
            m in str(exc) for m in ("No space left", "Disk quota"))
        if not full:
            raise
        need = sum(t.numel() * t.element_size() for t in tensors.values())
        raise CheckpointError(f"{path}: the disk is full (this file needs about "
                              f"{need / 2**20:.0f} MB); free space and run again. The previous "
                              "file at this path, if any, is intact") from exc


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The raw safetensors metadata, without loading any tensor."""
    path = Path(path)
    refuse_pickle(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises several types for a damaged header
        raise CheckpointError(f"{path}: not a readable safetensors file: {describe_damage(path)} "
                              f"({type(exc).__name__})") from exc


def _json_field(meta: dict, name: str, path) -> dict:
    text = meta.get(META_PREFIX + name, "{}") or "{}"
    if len(text) > MAX_META_CHARS:
        raise CheckpointError(f"{path}: metadata field '{META_PREFIX}{name}' is {len(text):,} "
                              "characters long; the trainer never writes one this big, so the "
                              "file was not written by PromptGAN or was tampered with")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: metadata field '{META_PREFIX}{name}' is not valid JSON "
                              f"({type(exc).__name__}); re-export the file with the trainer") from exc
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: metadata field '{META_PREFIX}{name}' must be a JSON object, "
                              f"got {type(value).__name__}")
    return value


def load_checkpoint(path: str | os.PathLike, *, kind: str | None = None,
                    device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint written by ``save_checkpoint``; ``kind`` checks what it holds."""
    path = Path(path)
    meta = read_metadata(path)
    if META_PREFIX + "kind" not in meta:
        raise CheckpointError(
            f"{path}: not a PromptGAN checkpoint (its metadata has no '{META_PREFIX}kind'). "
            "Only files written by the PromptGAN trainer can be loaded here.")
    found = meta[META_PREFIX + "kind"]
    if kind is not None and found != kind:
        raise CheckpointError(f"{path}: holds a '{found}' network, expected a '{kind}' network")
    config = _json_field(meta, "config", path)
    provenance = _json_field(meta, "provenance", path)
    res = meta.get(META_PREFIX + "resolution", "").strip()
    if res and not (res.isdigit() and 0 < int(res) <= 65536):
        raise CheckpointError(f"{path}: metadata field '{META_PREFIX}resolution' is {res[:40]!r}, "
                              "expected a whole number of pixels")
    try:
        tensors = load_file(str(path), device=str(device))
    except Exception as exc:
        raise CheckpointError(f"{path}: tensor data is unreadable: {describe_damage(path)} "
                              f"({type(exc).__name__})") from exc
    return Checkpoint(tensors=tensors, kind=found, config=config,
                      encoder=meta.get(META_PREFIX + "encoder", ""),
                      resolution=int(res) if res else None, provenance=provenance, path=str(path))


def check_state(module: torch.nn.Module, state: dict[str, torch.Tensor], *,
                source: str = "checkpoint") -> None:
    """Raise CheckpointError unless ``state`` has exactly ``module``'s keys and shapes and every
    floating tensor is finite. ``module`` may live on the meta device (no memory)."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:5]}" + (" ..." if len(missing) > 5 else ""))
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:5]}" + (" ..." if len(unexpected) > 5 else ""))
    wrong = [f"key '{key}' has shape {tuple(state[key].shape)}, expected {tuple(own[key].shape)}"
             for key in sorted(set(own) & set(state)) if own[key].shape != state[key].shape]
    problems += wrong[:3] + ([f"{len(wrong) - 3} more keys of other shapes"] if len(wrong) > 3 else [])
    if problems:
        raise CheckpointError(f"{source}: does not match the network its config describes: "
                              + "; ".join(problems))
    for key, t in state.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(
                f"{source}: weight '{key}' holds NaN or infinite values (a diverged run or an "
                "fp16 export that overflowed); export the model again from a healthy step")


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], *,
                      source: str = "checkpoint") -> None:
    """Copy ``state`` into ``module``: every key present, no extras, every shape as expected,
    every value finite. Floating tensors are cast to the module's dtype (shipped files may be
    fp16)."""
    check_state(module, state, source=source)
    _copy_state(module, state)


def _copy_state(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for key, t in module.state_dict().items():
            t.copy_(state[key].to(t.dtype))


def build_network(factory: Callable[[], torch.nn.Module], state: dict[str, torch.Tensor], *,
                  source: str) -> torch.nn.Module:
    """``factory()`` loaded with ``state``, built only once the file is known to fit it.

    The network is first built on the meta device (no memory), so a config from the metadata
    that describes a huge network (nz = 10^7, say) is refused by the shape check instead of
    allocating what it asks for."""
    try:
        with torch.device("meta"):
            probe = factory()
    except Exception as exc:  # noqa: BLE001 - any config the network rejects
        raise CheckpointError(f"{source}: its config does not describe a network this version "
                              f"of PromptGAN builds ({type(exc).__name__}: {exc})") from exc
    check_state(probe, state, source=source)
    net = factory()
    _copy_state(net, state)      # same keys and shapes as the probe: checked once
    return net
