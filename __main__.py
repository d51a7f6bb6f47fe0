"""Command line of the pack: ``python <pack dir> <command> ...``.

The pack is a ComfyUI custom-node folder, not an installed distribution, so this file loads the
folder as the package ``promptgan`` (the way ComfyUI loads a custom node) and hands over to the
command's ``main``.
"""
import importlib
import importlib.util
import os
import sys
from pathlib import Path

COMMANDS = {   # command: ("module:function", help)
    "setup": ("models.setup_venv:main",
        "make a virtual environment with torch and the pack's requirements, then run a command in "
        "it ('setup test', 'setup run WORKFLOW')"),
    "run": ("nodes.headless:main",
        "run a workflow file (UI or API format) without ComfyUI"),
    "train-gan": ("models.train.gan:main",
        "train a text-to-image GAN"),
    "evaluate": ("models.eval.gan:main",
        "evaluate a generator checkpoint"),
    "evaluate-colours": ("models.eval.colours:main",
        "measure named colours, binding and basic colour words on held-out lexicon names"),
    "evaluate-styles": ("models.eval.styles:main",
        "measure how often each rendering style a prompt asks for is drawn"),
    "train-style-classifier": ("models.eval.styles:train_style_classifier",
        "train the evaluator's style reader"),
    "train-classifier": ("models.eval.gan:train_classifier",
        "train the evaluator's attribute classifier"),
    "train-enhance": ("models.train.enhance:main",
        "train an Enhance restoration network"),
    "evaluate-enhance": ("models.eval.enhance:main",
        "evaluate an Enhance checkpoint"),
    "prepare-emoji-data": ("models.data.emoji_npm:main",
        "a captioned image folder from the npm emoji packages, to try train-gan on"),
    "prepare-enhance-data": ("models.data.debian_photos:main",
        "real photographs from Debian's wallpaper packages, to train and evaluate Enhance"),
    "benchmark": ("models.eval.benchmark:main",
        "measure generation and encoding speed"),
    "refine-eval": ("models.eval.refine:main",
        "measure Refine (refinement and edits) on held-out prompts"),
    "train-inverter": ("models.train.inverter:main",
        "train the inversion encoder used by Refine's edit mode"),
    "invert-eval": ("models.eval.invert:main",
        "measure inversion of procedural renders, with and without the inversion encoder"),
    "benchmark-threads": ("models.eval.benchmark_threads:main",
        "measure one and all threads per job, quiet and beside a competing process"),
    "benchmark-enhance": ("models.eval.benchmark_enhance:main",
        "measure Enhance speed and tiled memory"),
    "build-colour-lexicon": ("models.data.build_colour_lexicon:main",
        "rebuild the shipped colour-name table from XKCD, CSS4 and npm color-name-list"),
    "fit-text-head": ("models.train.text_head:main",
        "add Refine's prompt -> attribute head to a GAN file"),
}


def load_pack(name: str = "promptgan"):
    """Import the folder holding this file as package ``name`` and return it."""
    if name in sys.modules:
        return sys.modules[name]
    root = Path(__file__).resolve().parent
    spec = importlib.util.spec_from_file_location(
        name, root / "__init__.py", submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: python <pack dir> COMMAND [args]\n\ncommands:")
        for cmd, (_, text) in COMMANDS.items():
            print(f"  {cmd:18s} {text}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    if argv[0] == "setup":     # before torch exists: load the stdlib-only module by its path
        spec = importlib.util.spec_from_file_location(
            "promptgan_setup", Path(__file__).resolve().parent / "models" / "setup_venv.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return int(module.main(argv[1:]) or 0)
    load_pack()
    module_name, _, function = COMMANDS[argv[0]][0].partition(":")
    entry = getattr(importlib.import_module(f"promptgan.{module_name}"), function)
    try:
        return int(entry(argv[1:]) or 0)
    except (ValueError, OSError, MemoryError) as exc:
        # what a user can fix (a bad flag or file, a full disk, too little memory): one line,
        # no traceback; CheckpointError and UsageError are ValueErrors
        if os.environ.get("PROMPTGAN_DEBUG"):
            raise
        print(f"{argv[0]}: error: {exc}\n(set PROMPTGAN_DEBUG=1 to see the traceback)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
