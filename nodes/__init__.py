"""ComfyUI glue: every node module adds its classes here.

Each module is imported on its own so that one that fails (a missing optional dependency, say)
is reported by name while the others still load.
"""
import importlib
import logging

_NODE_MODULES = ("text_nodes", "gan_nodes", "refine_nodes", "enhance_nodes")

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}

for _name in _NODE_MODULES:
    try:
        _module = importlib.import_module(f".{_name}", __name__)
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{_name}":
            continue  # that part of the pack is not there (yet)
        logging.getLogger("PromptGAN").exception("PromptGAN: nodes/%s.py failed to import", _name)
        continue
    except Exception:
        logging.getLogger("PromptGAN").exception("PromptGAN: nodes/%s.py failed to import", _name)
        continue
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)
