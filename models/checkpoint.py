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

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")
META_PREFIX = "promptgan."


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
    from safetensors.torch import save_file

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
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(out, tmp, metadata=metadata)
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


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The raw safetensors metadata, without loading any tensor."""
    from safetensors import safe_open

    path = Path(path)
    refuse_pickle(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises several types for a damaged header
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc}); "
                              "the file may be truncated or corrupt, download or copy it again") from exc


def load_checkpoint(path: str | os.PathLike, *, kind: str | None = None,
                    device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint written by ``save_checkpoint``; ``kind`` checks what it holds."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_metadata(path)
    if META_PREFIX + "kind" not in meta:
        raise CheckpointError(
            f"{path}: not a PromptGAN checkpoint (its metadata has no '{META_PREFIX}kind'). "
            "Only files written by the PromptGAN trainer can be loaded here.")
    found = meta[META_PREFIX + "kind"]
    if kind is not None and found != kind:
        raise CheckpointError(f"{path}: holds a '{found}' network, expected a '{kind}' network")
    try:
        config = json.loads(meta.get(META_PREFIX + "config", "{}"))
        provenance = json.loads(meta.get(META_PREFIX + "provenance", "{}"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: metadata is not valid JSON ({exc})") from exc
    try:
        tensors = load_file(str(path), device=str(device))
    except Exception as exc:
        raise CheckpointError(f"{path}: tensor data is unreadable ({exc}); the file may be "
                              "truncated or corrupt") from exc
    res = meta.get(META_PREFIX + "resolution", "")
    return Checkpoint(tensors=tensors, kind=found, config=config,
                      encoder=meta.get(META_PREFIX + "encoder", ""),
                      resolution=int(res) if res else None, provenance=provenance, path=str(path))


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], *,
                      source: str = "checkpoint") -> None:
    """Copy ``state`` into ``module``: every key present, no extras, every shape as expected.

    Floating tensors are cast to the module's dtype (shipped files may be fp16).
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:5]}" + (" ..." if len(missing) > 5 else ""))
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:5]}" + (" ..." if len(unexpected) > 5 else ""))
    for key in sorted(set(own) & set(state)):
        if own[key].shape != state[key].shape:
            problems.append(f"key '{key}' has shape {tuple(state[key].shape)}, "
                            f"expected {tuple(own[key].shape)}")
    if problems:
        raise CheckpointError(f"{source}: does not match the network its config describes: "
                              + "; ".join(problems))
    with torch.no_grad():
        for key, t in own.items():
            t.copy_(state[key].to(t.dtype))
