"""Helpers shared by the pack's command-line tools (trainers, evaluators, benchmarks): threads,
progress bars, reproducible command lines, atomic JSON and image grids, and the error a user can
fix from the command line."""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm


def add_threads_flag(parser) -> None:
    """``--threads N``, one meaning in every command: torch's intra-op CPU threads, 0 for
    torch's own choice (one per core)."""
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (0: torch's default, one per core)")


def add_recipe_flag(parser) -> None:
    """``--recipe NAME[:STAGE]`` in the command's help (``parse_with_recipe`` reads it)."""
    parser.add_argument("--recipe", metavar="NAME[:STAGE]",
                        help="take the flags of a recipe in models/recipes/ (or a TOML file), "
                             "and of its stage; flags given here win")


def set_threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(int(n))


def make_progress(total: int, initial: int = 0, desc: str = "train"):
    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, smoothing=0.05,
                file=sys.stderr, mininterval=2.0)


class UsageError(ValueError):
    """A command-line mistake the user can fix; the command prints it without a traceback."""


def save_image_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int = 8,
                    captions: list[str] | None = None) -> Path:
    """images [N,3,H,W] in [-1,1] -> PNG grid (captions go to a .txt beside it)."""
    n, _, h, w = images.shape
    ncol = min(nrow, n)
    rows = (n + ncol - 1) // ncol
    grid = np.full((rows * (h + 2), ncol * (w + 2), 3), 255, dtype=np.uint8)
    arr = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte()
    arr = arr.permute(0, 2, 3, 1).cpu().numpy()
    for i in range(n):
        r, c = divmod(i, ncol)
        grid[r * (h + 2) + 1:r * (h + 2) + 1 + h, c * (w + 2) + 1:c * (w + 2) + 1 + w] = arr[i]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(grid).save(tmp)
    os.replace(tmp, path)
    if captions:
        path.with_suffix(".txt").write_text("\n".join(f"{i}: {c}" for i, c in enumerate(captions)))
    return path


def command_line(prog: str, argv: list[str] | None) -> str:
    """The command that reproduces this run, for provenance: ``python3 . <prog> <argv>``, with
    ``prog`` and ``argv`` as the pack's entry point handed them to the command's main()."""
    exe = os.path.basename(sys.executable)
    if argv is None:
        argv = sys.argv[1:]
    return " ".join([exe, ".", prog, shlex.join(argv)]).rstrip()


def dump_json(obj, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    os.replace(tmp, path)


RECIPES_DIR = Path(__file__).parent / "recipes"


def find_recipe(name: str) -> str:
    """A recipe file as given, else ``name`` (".toml" optional) among the bundled recipes."""
    if Path(name).is_file():
        return name
    for candidate in (RECIPES_DIR / name, RECIPES_DIR / f"{name}.toml"):
        if candidate.is_file():
            return str(candidate)
    return name


def read_recipe(name: str) -> dict:
    try:
        import tomllib  # Python 3.11+; on 3.10 only --recipe needs it
    except ModuleNotFoundError:
        raise UsageError("--recipe needs Python 3.11 or newer (tomllib)") from None
    try:
        return tomllib.loads(Path(find_recipe(name)).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"--recipe {name}: {exc}") from None


def _split_recipe(argv: list[str] | None) -> tuple[str | None, list[str]]:
    """(the --recipe value or None, the rest of the command line)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--recipe")
    known, rest = pre.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    return known.recipe, rest


def argv_per_stage(argv: list[str] | None) -> list[list[str]] | None:
    """For ``--recipe NAME`` naming no stage, of a recipe that has stages: the command line once
    per stage, in the recipe's order (``--recipe NAME:STAGE``), so one command runs them all;
    otherwise None."""
    recipe, rest = _split_recipe(argv)
    if recipe is None or ":" in recipe or {"-h", "--help", "--export"} & set(rest):
        return None
    stages = [k for k, v in read_recipe(recipe).items() if isinstance(v, dict)]
    return [["--recipe", f"{recipe}:{stage}"] + rest for stage in stages] or None


def parse_with_recipe(parser, argv: list[str] | None):
    """``parser.parse_args(argv)``, where ``--recipe NAME[:STAGE]`` first sets defaults from a
    TOML recipe (a file, or a name in ``models/recipes/``): its top-level keys, then the table
    ``[STAGE]`` if named, each key a flag name without the dashes (``lr-size = 32``). Flags on
    the command line still win; a key that is not a flag of this command is an error that
    names it."""
    recipe, argv = _split_recipe(argv)
    if recipe is None:
        return parser.parse_args(argv)
    path, _, stage = recipe.partition(":")
    table = read_recipe(path)
    flags = {k: v for k, v in table.items() if not isinstance(v, dict)}
    if stage:
        if not isinstance(table.get(stage), dict):
            stages = [k for k, v in table.items() if isinstance(v, dict)]
            raise UsageError(f"--recipe {recipe}: no stage '{stage}' (stages: {', '.join(stages)})")
        flags.update(table[stage])
    flags.pop("command", None)
    flags.pop("note", None)
    flags.pop("recipe", None)
    dests = {a.dest for a in parser._actions}
    values = {}
    for key, value in flags.items():
        dest = key.replace("-", "_")
        if dest not in dests:
            raise UsageError(f"--recipe {recipe}: '{key}' is not a flag of {parser.prog}")
        values[dest] = value
    parser.set_defaults(**values)
    for action in parser._actions:          # a recipe may give what the command line must
        if action.dest in values:
            action.required = False
    return parser.parse_args(argv)
