"""Machinery shared by the trainers: threads, progress, clean stop, resumable state, grids.

Training state (weights, optimiser moments, step, RNG-free extras) is one safetensors file,
written atomically, so a kill at any moment leaves the previous state intact.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import torch

from ..checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_state_strict,
    remove_stale_temporaries,
    save_checkpoint,
)
from ..cli import (  # noqa: F401 - the trainers' helpers, importable from here too
    UsageError,
    command_line,
    dump_json,
    make_progress,
    save_image_grid,
    set_threads,
)

log = logging.getLogger("PromptGAN")


class GracefulStop:
    """Turn SIGINT/SIGTERM into a flag the loop polls, so it can save and exit cleanly.

    A second signal while stopping falls back to the default behaviour (immediate stop).
    """

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handler(self, signum, frame):
        if self.requested:
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            raise KeyboardInterrupt
        self.requested = True
        print(f"\n[stop] signal {signum}: finishing this step, saving, exiting "
              "(send again to stop at once)", file=sys.stderr)

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not in the main thread
                pass
        return self

    def __exit__(self, *exc):
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)
        return False


def _optimizer_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict, dict]:
    """Optimizer state as flat tensors + JSON-able hyperparameters (no pickle)."""
    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for name, value in st.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{prefix}.{pid}.{name}"] = t
    groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups}


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict, info: dict, prefix: str) -> None:
    state: dict = {}
    p = prefix + "."
    for key, t in tensors.items():
        if key.startswith(p):
            pid, name = key[len(p):].split(".", 1)
            state.setdefault(int(pid), {})[name] = t
    opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})


def prepare_run_folder(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Create the run folder, check that it can be written, and clear what a killed save left.

    Raises UsageError naming ``flag`` for a path that is a file, a folder without write
    permission or any other folder that cannot be written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path} is a file; {flag} names the run folder (state, samples, "
                         "model), so give the path of a folder (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except PermissionError:
        raise UsageError(f"{flag} {path}: no permission to write there; choose a folder you can "
                         "write to") from None
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot write there ({exc.strerror or exc}); choose "
                         "another folder or free space") from None
    for stale in remove_stale_temporaries(path):
        log.warning("removed %s, left by a save that was interrupted", stale.name)
    return path


def save_train_state(path: str | os.PathLike, modules: dict[str, torch.nn.Module],
                     optimizers: dict[str, torch.optim.Optimizer], step: int, extra: dict,
                     *, kind: str, config: dict, encoder: str = "") -> Path:
    tensors, opt_info = {}, {}
    for name, m in modules.items():
        for k, v in m.state_dict().items():
            tensors[f"{name}.{k}"] = v
    for name, opt in optimizers.items():
        t, info = _optimizer_tensors(opt, f"opt_{name}")
        tensors.update(t)
        opt_info[name] = info
    provenance = {"step": int(step), "optimizers": opt_info, "extra": extra,
                  "saved": time.strftime("%Y-%m-%d %H:%M:%S")}
    return save_checkpoint(path, tensors, kind=kind + "-train-state", config=config,
                           encoder=encoder, provenance=provenance)


def load_train_state(path: str | os.PathLike, modules: dict[str, torch.nn.Module],
                     optimizers: dict[str, torch.optim.Optimizer], *, kind: str) -> tuple[int, dict]:
    ck = load_checkpoint(path, kind=kind + "-train-state")
    for name, m in modules.items():
        load_state_strict(m, ck.sub(name), source=f"{path} [{name}]")
    infos = ck.provenance.get("optimizers", {})
    for name, opt in optimizers.items():
        if name not in infos:
            raise CheckpointError(f"{path}: no optimiser state for '{name}'")
        _load_optimizer(opt, ck.tensors, infos[name], f"opt_{name}")
    return int(ck.provenance.get("step", 0)), ck.provenance.get("extra", {})
