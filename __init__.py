"""PromptGAN: text-conditioned GANs as ComfyUI nodes.

Importing the pack is cheap: torch is imported by ComfyUI anyway, while transformers and all
weights load on first use.
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
