"""Run by the ComfyUI interpreter (tests/comfyui/test_real_comfyui.py): the pack's models go
through comfy.model_management like ComfyUI's own, so its free-memory logic can offload them.

    python offload_check.py COMFYUI_DIR PACK_DIR   -> prints OK lines, exits 0
"""
import importlib.util
import sys
from pathlib import Path

comfyui_dir, pack_dir = Path(sys.argv[1]), Path(sys.argv[2])
sys.path.insert(0, str(comfyui_dir))
sys.argv = [sys.argv[0], "--cpu"]

import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
import comfy.model_management as mm  # noqa: E402,F401
import folder_paths  # noqa: E402,F401
import torch  # noqa: E402

spec = importlib.util.spec_from_file_location(pack_dir.name, pack_dir / "__init__.py",
                                              submodule_search_locations=[str(pack_dir)])
pack = importlib.util.module_from_spec(spec)
sys.modules[pack_dir.name] = pack
spec.loader.exec_module(pack)
nodes = pack.NODE_CLASS_MAPPINGS


def registered():
    """The modules model_management holds (each patcher holds the pack's module as .inner)."""
    return [lm.model.model.inner for lm in mm.current_loaded_models if lm.model is not None]


(model,) = nodes["PromptGAN_ModelLoader"]().load("promptgan_default (bundled)")
encode = nodes["PromptGAN_TextEncode"]()
generate = nodes["PromptGAN_GANGenerate"]()
with torch.inference_mode():
    (emb,) = encode.encode("a red flower with five round petals", "match the model", model=model)
    first, _, _ = generate.generate(model, emb, 7, 2, 1.0)
held = registered()
assert any(m is model.generator for m in held), "the generator is not known to model_management"
assert any(type(m).__name__ == "BertModel" for m in held), "the text encoder is not known to it"
print("OK registered:", sorted(type(m).__name__ for m in held))

mm.free_memory(1e30, mm.get_torch_device())          # another model asks for all the memory
assert not any(m is model.generator for m in registered()), "the generator was not offloaded"
print("OK offloaded when another model needed the memory")

with torch.inference_mode():
    again, _, _ = generate.generate(model, emb, 7, 2, 1.0)
assert any(m is model.generator for m in registered()) and torch.equal(first, again)
print("OK reloaded on the next run, same images")
