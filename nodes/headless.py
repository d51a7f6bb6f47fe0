"""Headless runner: execute a workflow file (UI or API format) without ComfyUI.

A convenience for machines without ComfyUI, not a second ComfyUI: it converts a UI-format
workflow to the API format the way the frontend does, validates the graph the way the server
does (every problem, each naming its node), and runs the nodes needed by the output nodes in
dependency order under ``torch.inference_mode()``, as ComfyUI does. Besides this pack's nodes
it knows three core nodes: SaveImage, PreviewImage and LoadImage (core_nodes.py).

    python <pack dir> run WORKFLOW.json [--output-dir DIR] [--input-dir DIR] [--set 5.seed=7]
                                        [--models-dir DIR] [--set 4.model_name=path/mine.safetensors]

Model files are looked for in ./models/promptgan, in every --models-dir and in the bundled
weights; a --set value that is the path of a .safetensors file adds its folder to the search
and picks the file by name.

Exit codes: 0 ok, 1 a node failed while running, 2 the workflow is invalid.
Not supported: bypassed nodes, subgraphs, lists (INPUT_IS_LIST / OUTPUT_IS_LIST), lazy inputs.
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import sys
import traceback
from pathlib import Path

import torch
from PIL import Image

from . import NODE_CLASS_MAPPINGS, runtime
from .core_nodes import EXAMPLE_INPUTS, LoadImage, PreviewImage, SaveImage

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
CONTROL_MODES = ("fixed", "randomize", "increment", "decrement")
UI_ONLY_TYPES = ("Note", "MarkdownNote", "Reroute", "PrimitiveNode")


class WorkflowError(Exception):
    """The workflow cannot run; ``problems`` lists every reason, one string each."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class NodeExecutionError(RuntimeError):
    """A node raised while running: ``node N (Class): ExceptionType: message``."""

    def __init__(self, node_id, class_type, exc, written=()):
        self.node_id, self.class_type, self.written = node_id, class_type, list(written)
        self.traceback_text = "".join(traceback.format_exception(exc))
        super().__init__(f"node {node_id} ({class_type}): {type(exc).__name__}: {exc}")


def _node_classes(node_classes=None, output_dir="output", input_dir=EXAMPLE_INPUTS):
    """Core nodes bound to the folders, plus ``node_classes`` (default: this pack's nodes)."""
    classes = {
        "SaveImage": type("SaveImage", (SaveImage,), {"output_dir": str(output_dir)}),
        "PreviewImage": type("PreviewImage", (PreviewImage,), {"output_dir": str(output_dir)}),
        "LoadImage": type("LoadImage", (LoadImage,), {"input_dir": str(input_dir)}),
    }
    if node_classes is None:
        node_classes = NODE_CLASS_MAPPINGS
    classes.update(node_classes)
    return classes


# ----------------------------------------------------------------------------- helpers

def _input_specs(cls):
    """{name: (category, type, options)} in declaration order, required then optional."""
    declared = cls.INPUT_TYPES()
    specs = {}
    for category in ("required", "optional"):
        for name, decl in (declared.get(category) or {}).items():
            decl = tuple(decl) if isinstance(decl, (tuple, list)) else (decl,)
            typ = decl[0]
            opts = decl[1] if len(decl) > 1 and isinstance(decl[1], dict) else {}
            if typ == "COMBO" and "options" in opts:
                typ = list(opts["options"])
            specs[name] = (category, typ, opts)
    return specs


def _is_widget(typ, opts):
    return isinstance(typ, (list, tuple)) or (typ in WIDGET_TYPES and not opts.get("forceInput"))


def _type_name(typ):
    return "COMBO" if isinstance(typ, (list, tuple)) else str(typ)


def _types_match(received, expected):
    received, expected = _type_name(received), _type_name(expected)
    if "*" in (received, expected) or received == expected:
        return True
    return bool(set(received.split(",")) & set(expected.split(",")))


def _id_key(node_id):
    return (0, int(node_id), "") if str(node_id).isdigit() else (1, 0, str(node_id))


def _convert_value(val, typ):
    """``val`` as a value of widget type ``typ``; raises TypeError/ValueError if it is not one."""
    number = isinstance(val, (int, float)) and not isinstance(val, bool)
    if typ == "INT" and (isinstance(val, str) or (number and float(val).is_integer())):
        return int(val)
    if typ in ("FLOAT", "STRING") and (isinstance(val, str) or number):
        return float(val) if typ == "FLOAT" else str(val)
    if typ == "BOOLEAN" and (isinstance(val, bool) or str(val).lower() in ("true", "false")):
        return val if isinstance(val, bool) else str(val).lower() == "true"
    if typ in ("INT", "FLOAT", "STRING", "BOOLEAN"):
        raise TypeError(f"not a valid {typ}")
    return val


def _fits(val, typ):
    if isinstance(typ, (list, tuple)):
        return val in typ
    try:
        _convert_value(val, typ)
    except (TypeError, ValueError):
        return False
    return True


def _validate_fn(cls):
    """(VALIDATE_INPUTS callable or None, its parameter names, whether it takes **kwargs)."""
    fn = getattr(cls, "VALIDATE_INPUTS", None)  # a classmethod or staticmethod, as in ComfyUI
    if fn is None:
        return None, set(), False
    params = inspect.signature(fn).parameters
    names = {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return fn, names, any(p.kind == p.VAR_KEYWORD for p in params.values())


def _as_link(val):
    """``[str(node_id), slot]`` for a link-shaped value, else the value unchanged."""
    if isinstance(val, list) and len(val) == 2 and isinstance(val[0], (int, str)):
        return [str(val[0]), val[1]]
    return val


def _output_nodes(prompt, classes):
    return [n for n in sorted(prompt, key=_id_key) if isinstance(prompt[n], dict) and getattr(
        classes.get(prompt[n].get("class_type")), "OUTPUT_NODE", False) is True]


def _deps(node):
    if not isinstance(node, dict):
        return []
    return [str(v[0]) for v in (node.get("inputs") or {}).values()
            if isinstance(v, list) and len(v) == 2]


def _order(prompt, outputs):
    """(dependency order of the nodes the outputs need, list of cycles found)."""
    order, state, cycles = [], {}, []

    def visit(nid, path):
        if state.get(nid) == 2:
            return
        if state.get(nid) == 1:
            cycles.append(path[path.index(nid):] + [nid])
            return
        state[nid] = 1
        for dep in _deps(prompt[nid]):
            if dep in prompt:
                visit(dep, path + [nid])
        state[nid] = 2
        order.append(nid)

    for out in outputs:
        visit(out, [])
    return order, cycles


# ----------------------------------------------------------------------------- UI -> API

def _assign_widgets(cls, values, linked):
    """Map a UI node's widgets_values onto its widget inputs, skipping frontend-only extras."""
    if isinstance(values, dict):  # some nodes save {name: value}
        return {k: v for k, v in values.items() if k not in linked}
    values = list(values or [])
    widgets = [(n, t, o) for n, (_, t, o) in _input_specs(cls).items() if _is_widget(t, o)]

    def walk(include_linked):
        out, i = {}, 0
        for name, typ, opts in widgets:
            if name in linked and not include_linked:
                continue
            if i >= len(values):
                break
            out[name], i = values[i], i + 1
            control = opts.get("control_after_generate") or (
                typ == "INT" and name in ("seed", "noise_seed"))
            if control and i < len(values) and values[i] in CONTROL_MODES:
                i += 1
            uploads = [k[:-7] for k, v in opts.items() if k.endswith("_upload") and v]
            if uploads and i < len(values) and values[i] in uploads:
                i += 1
        return out, i

    def score(include_linked):
        assigned, used = walk(include_linked)
        types = {n: t for n, t, _ in widgets}
        misfits = sum(not _fits(v, types[n]) for n, v in assigned.items() if n not in linked)
        return used != len(values), misfits, {k: v for k, v in assigned.items() if k not in linked}

    # The frontend keeps a slot for a widget even when a link feeds it; hand-written files
    # sometimes leave it out. Take the reading that uses every value and fits the types.
    best = score(True)
    return min(best, score(False), key=lambda r: r[:2])[2] if linked else best[2]


def _convert(workflow, classes):
    """(API prompt, {node id: (mode word, type)} of muted/bypassed nodes)."""
    nodes = {str(n["id"]): n for n in workflow.get("nodes", [])}
    links = {}
    for link in workflow.get("links") or []:
        if isinstance(link, dict):
            links[link["id"]] = (str(link["origin_id"]), link["origin_slot"])
        else:
            links[link[0]] = (str(link[1]), link[2])

    def source(link_id, seen=()):
        if link_id not in links:
            return None
        src, slot = links[link_id]
        node = nodes.get(src, {})
        if node.get("type") == "Reroute":
            inner = next((i["link"] for i in node.get("inputs") or [] if i.get("link") is not None),
                         None)
            return None if inner is None or src in seen else source(inner, seen + (src,))
        if node.get("type") == "PrimitiveNode":
            return None  # its value is already in the target's widgets_values
        return [src, slot]

    api, skipped = {}, {}
    for nid, node in nodes.items():
        ntype = node.get("type")
        if ntype in UI_ONLY_TYPES:
            continue
        if node.get("mode", 0) in (2, 4):
            skipped[nid] = ("muted" if node["mode"] == 2 else "bypassed", ntype)
            continue
        linked = {}
        for inp in node.get("inputs") or []:
            name = (inp.get("widget") or {}).get("name") or inp.get("name")
            if inp.get("link") is not None and (src := source(inp["link"])) is not None:
                linked[name] = src
        cls = classes.get(ntype)
        inputs = _assign_widgets(cls, node.get("widgets_values"), linked) if cls else {}
        inputs.update(linked)
        api[nid] = {"class_type": ntype, "inputs": inputs,
                    "_meta": {"title": node.get("title") or ntype}}
    return api, skipped


def to_api(workflow, node_classes=None):
    """Convert a UI-format workflow to an API prompt ``{id: {class_type, inputs}}``."""
    return _convert(workflow, _node_classes(node_classes))[0]


# ----------------------------------------------------------------------------- validation

def _check_node(nid, prompt, classes, specs, skipped):
    node, cls, spec = prompt[nid], classes[prompt[nid]["class_type"]], specs[nid]
    inputs = node.setdefault("inputs", {})
    vfn, vparams, vkwargs = _validate_fn(cls)
    errors, received = [], {}
    for name, (category, typ, opts) in spec.items():
        if name not in inputs:
            if category == "required":
                errors.append(f"missing required input '{name}'")
            continue
        val = inputs[name]
        if isinstance(val, list):
            if len(val) != 2 or not isinstance(val[1], int) or isinstance(val[1], bool):
                errors.append(f"input '{name}' = {val!r} is not a link [node_id, output_slot]")
                continue
            src, slot = str(val[0]), val[1]
            if src not in prompt:
                if src in skipped:
                    errors.append(f"input '{name}' comes from node {src} ({skipped[src][1]}), "
                                  f"which is {skipped[src][0]}; the headless runner does not "
                                  "support running with muted or bypassed nodes")
                else:
                    errors.append(f"input '{name}' is linked to node {src}, which does not exist")
                continue
            src_cls = isinstance(prompt[src], dict) and classes.get(prompt[src].get("class_type"))
            if not src_cls:
                continue  # reported as an unknown node type
            src_label = f"node {src} ({prompt[src]['class_type']})"
            returns = tuple(getattr(src_cls, "RETURN_TYPES", ()))
            if not 0 <= slot < len(returns):
                errors.append(f"input '{name}' is linked to output {slot} of {src_label}, "
                              f"which has {len(returns)} output(s)")
                continue
            received[name] = returns[slot]
            if "input_types" not in vparams and not _types_match(returns[slot], typ):
                errors.append(f"input '{name}' expects {_type_name(typ)} but output {slot} of "
                              f"{src_label} is {_type_name(returns[slot])}")
            continue
        if isinstance(val, dict) and "__value__" in val:
            val = val["__value__"]
        shown = f"input '{name}' = {val!r}"
        if not isinstance(typ, (list, tuple)) and typ not in WIDGET_TYPES and typ != "*":
            errors.append(f"{shown}: a {typ} input must be linked to a node output")
            continue
        try:
            val = inputs[name] = _convert_value(val, typ)
        except (TypeError, ValueError):
            errors.append(f"{shown} is not a valid {typ}")
            continue
        if name in vparams or vkwargs:
            continue  # ComfyUI leaves these to VALIDATE_INPUTS
        if isinstance(typ, (list, tuple)) and val not in typ:
            listed = list(typ) if len(typ) <= 20 else f"a list of {len(typ)} options"
            errors.append(f"{shown} is not one of {listed}")
        elif "min" in opts and typ in ("INT", "FLOAT") and val < opts["min"]:
            errors.append(f"{shown} is below min {opts['min']}")
        elif "max" in opts and typ in ("INT", "FLOAT") and val > opts["max"]:
            errors.append(f"{shown} is above max {opts['max']}")
    if vfn is not None and not errors:
        args = {n: (None if isinstance(v, list) else v) for n, v in inputs.items()
                if n in spec and (n in vparams or vkwargs)}
        args.update({n: None for n in vparams - set(args) - {"input_types"}})
        if "input_types" in vparams:
            args["input_types"] = received
        try:
            ret = vfn(**args)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            errors.append(f"VALIDATE_INPUTS raised {type(exc).__name__}: {exc}")
        else:
            if ret is not True:
                errors.append(ret if isinstance(ret, str) else f"VALIDATE_INPUTS returned {ret!r}")
    return [f"node {nid} ({node['class_type']}): {e}" for e in errors]


def _validate(prompt, classes, skipped=None):
    skipped, problems, specs = skipped or {}, [], {}
    for nid in sorted(prompt, key=_id_key):
        node = prompt[nid]
        if not isinstance(node, dict) or "class_type" not in node:
            problems.append(f"node {nid}: no class_type")
            continue
        cls = classes.get(node["class_type"])
        if cls is None:
            problems.append(f"node {nid} ({node['class_type']}): unknown node type")
            continue
        try:
            specs[nid] = _input_specs(cls)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            problems.append(f"node {nid} ({node['class_type']}): INPUT_TYPES() raised "
                            f"{type(exc).__name__}: {exc}")
    outputs = _output_nodes(prompt, classes)
    if not outputs:
        problems.append("the workflow has no output node (SaveImage, PreviewImage, ...)")
    order, cycles = _order(prompt, outputs)
    for nid in sorted(order, key=_id_key):
        if nid in specs:
            problems += _check_node(nid, prompt, classes, specs, skipped)
    for cycle in cycles:
        chain = " <- ".join(f"node {n} ({prompt[n].get('class_type')})" for n in cycle)
        problems.append(f"dependency cycle: {chain}")
    return problems


def _normalise(prompt):
    """Private copy of an API prompt with string node ids and string link sources."""
    if not isinstance(prompt, dict):
        raise WorkflowError(["not a workflow: expected a JSON object"])
    prompt = json.loads(json.dumps(prompt))  # also turns int keys into strings
    for node in prompt.values():
        if isinstance(node, dict) and isinstance(node.get("inputs"), dict):
            node["inputs"] = {k: _as_link(v) for k, v in node["inputs"].items()}
    return prompt


def validate(api_prompt, node_classes=None):
    """Every problem of an API prompt, one string each; converts widget values in place."""
    return _validate(api_prompt, _node_classes(node_classes))


# ----------------------------------------------------------------------------- running

def _parse_value(text, typ):
    if typ == "STRING" or (isinstance(typ, (list, tuple)) and text in typ):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _apply_overrides(prompt, overrides, classes):
    items = overrides.items() if isinstance(overrides, dict) else [
        tuple(o.split("=", 1)) if "=" in o else (o, None) for o in overrides]
    problems = []
    for key, value in items:
        nid, _, name = str(key).partition(".")
        if not name or (value is None and not isinstance(overrides, dict)):
            problems.append(f"--set {key}: expected NODE_ID.INPUT=VALUE")
            continue
        node = prompt.get(nid)
        if not isinstance(node, dict):
            problems.append(f"--set {key}: there is no node {nid}")
            continue
        cls, spec = classes.get(node.get("class_type")), {}
        if cls is not None:
            with contextlib.suppress(Exception):  # validation reports it
                spec = _input_specs(cls)
            if spec and name not in spec:
                problems.append(f"--set {key}: node {nid} ({node['class_type']}) has no "
                                f"input '{name}'")
                continue
        if isinstance(value, str):
            value = _parse_value(value, spec[name][1] if name in spec else None)
        node.setdefault("inputs", {})[name] = _as_link(value)
    return problems


def _execute(prompt, classes, extra_pnginfo, output_dir):
    order, _ = _order(prompt, _output_nodes(prompt, classes))
    results, written = {}, []
    hidden_values = {"PROMPT": prompt, "EXTRA_PNGINFO": extra_pnginfo}
    with torch.inference_mode():
        for nid in order:
            class_type = prompt[nid]["class_type"]
            cls = classes[class_type]
            try:
                declared = cls.INPUT_TYPES()
                spec = _input_specs(cls)
                kwargs = {}
                for name, val in prompt[nid]["inputs"].items():
                    if name in spec:
                        kwargs[name] = (results[str(val[0])][val[1]] if isinstance(val, list)
                                        else val)
                for name, what in (declared.get("hidden") or {}).items():
                    kwargs[name] = nid if what == "UNIQUE_ID" else hidden_values.get(what)
                out = getattr(cls(), cls.FUNCTION)(**kwargs)
                ui, result = None, out
                if isinstance(out, dict):
                    ui, result = out.get("ui"), out.get("result", ())
                if result is None:
                    result = ()
                if not isinstance(result, (tuple, list)):
                    raise TypeError(f"{cls.FUNCTION}() returned {type(result).__name__}, "
                                    "expected a tuple")
                if len(result) < len(getattr(cls, "RETURN_TYPES", ())):
                    raise ValueError(f"{cls.FUNCTION}() returned {len(result)} value(s) but "
                                     f"RETURN_TYPES declares {len(cls.RETURN_TYPES)}")
            except Exception as exc:
                raise NodeExecutionError(nid, class_type, exc, written) from exc
            results[nid] = tuple(result)
            for image in (ui or {}).get("images", []) if isinstance(ui, dict) else []:
                path = Path(output_dir, image.get("subfolder", ""), image.get("filename", ""))
                if path.is_file():
                    written.append(str(path))
    return written


def run_workflow(workflow, output_dir, input_dir=None, overrides=None, node_classes=None):
    """Validate and run a UI- or API-format workflow; return the paths of the written PNGs.

    ``overrides``: {"NODE_ID.INPUT": value} or ["NODE_ID.INPUT=VALUE", ...] (strings are
    read as JSON unless the input is a STRING). ``node_classes`` replaces this pack's mapping
    (the core SaveImage/PreviewImage/LoadImage stay). Raises WorkflowError or
    NodeExecutionError.
    """
    output_dir = Path(output_dir)
    classes = _node_classes(node_classes, output_dir,
                            EXAMPLE_INPUTS if input_dir is None else input_dir)
    if isinstance(workflow, dict) and isinstance(workflow.get("nodes"), list):
        ui = json.loads(json.dumps(workflow))
        prompt, skipped = _convert(ui, classes)
        extra = {"workflow": ui}
    else:
        prompt, skipped, extra = _normalise(workflow), {}, None
    problems = _apply_overrides(prompt, overrides or {}, classes)
    problems += _validate(prompt, classes, skipped)
    if problems:
        raise WorkflowError(problems)
    output_dir.mkdir(parents=True, exist_ok=True)
    return _execute(prompt, classes, extra, output_dir)


def _model_path_override(override: str) -> str:
    """``N.input=path/to/file.safetensors`` -> ``N.input=file.safetensors``, with the file's
    folder added to the model search (a path typed on the command line is the user's own)."""
    key, sep, value = override.partition("=")
    path = Path(value)
    if sep and path.suffix.lower() == ".safetensors" and path.is_file() and len(path.parts) > 1:
        runtime.add_model_dir(runtime.MODEL_FOLDER, path.parent)
        return f"{key}={path.name}"
    return override


def main(argv=None, *, node_classes=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"] and len(argv) > 1:
        argv = argv[1:]
    parser = argparse.ArgumentParser(
        prog="python <pack dir> run",
        description="Run a ComfyUI workflow (UI or API format) without ComfyUI.")
    parser.add_argument("workflow", help="workflow JSON file")
    parser.add_argument("--output-dir", default="output", help="where PNGs go (./output)")
    parser.add_argument("--input-dir", default=str(EXAMPLE_INPUTS),
                        help="LoadImage's folder (default: the pack's workflows/inputs, which "
                             "holds the example images the shipped workflows load)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="NODE_ID.INPUT=VALUE", help="override an input (repeatable)")
    parser.add_argument("--models-dir", action="append", default=[], metavar="DIR",
                        help="another folder of model files (repeatable; ./models/promptgan is "
                             "always searched)")
    parser.add_argument("--thumbnail", default=None, metavar="FILE.jpg",
                        help="also write a 512 px contact sheet of the last (up to four) images, "
                             "as the thumbnail ComfyUI's template browser shows beside a workflow")
    parser.add_argument("-v", "--verbose", action="store_true", help="print tracebacks")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    for folder in args.models_dir:
        if not Path(folder).is_dir():
            print(f"error: --models-dir {folder} is not a folder", file=sys.stderr)
            return 2
        runtime.add_model_dir(runtime.MODEL_FOLDER, folder)
    args.overrides = [_model_path_override(o) for o in args.overrides]
    try:
        workflow = json.loads(Path(args.workflow).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"error: cannot read workflow {args.workflow}: {exc}", file=sys.stderr)
        return 2
    try:
        paths = run_workflow(workflow, args.output_dir, args.input_dir, args.overrides,
                             node_classes)
    except WorkflowError as exc:
        print(f"invalid workflow, {len(exc.problems)} problem(s):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except NodeExecutionError as exc:
        for path in exc.written:
            print(f"OUTPUT {path}")
        print(f"execution error: {exc}", file=sys.stderr)
        if args.verbose:
            print(exc.traceback_text, file=sys.stderr)
        return 1
    for path in paths:
        print(f"OUTPUT {path}")
    if args.thumbnail and paths:
        write_thumbnail(paths[-4:], args.thumbnail)
        print(f"THUMBNAIL {args.thumbnail}")
    return 0


def write_thumbnail(images: list[str], path: str, size: int = 512) -> None:
    """Up to four images side by side (2x2 for four), each scaled to fill its cell, as JPEG."""
    n = len(images)
    cols = 1 if n == 1 else 2
    rows = (n + cols - 1) // cols
    cell_w, cell_h = size // cols, size // rows if n > 2 else size // cols
    sheet = Image.new("RGB", (cell_w * cols, cell_h * rows), "white")
    for i, image in enumerate(images):
        with Image.open(image) as im:
            tile = im.convert("RGB").resize((cell_w, cell_h), Image.Resampling.LANCZOS)
        sheet.paste(tile, ((i % cols) * cell_w, (i // cols) * cell_h))
    sheet.save(path, quality=90)
