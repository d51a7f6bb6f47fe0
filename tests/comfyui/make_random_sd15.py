"""A Stable Diffusion 1.5 checkpoint with random weights, built from ComfyUI's own model classes.

    ~/comfy/venv/bin/python tests/comfyui/make_random_sd15.py --comfyui ~/comfy/ComfyUI \
        --out /tmp/sd15_random.safetensors

For speed measurements only (speed_vs_sd15.py): the real weights cannot be downloaded here, and
the time of a sampler step does not depend on the weight values. The UNet is SD15's
(comfy.supported_models.SD15 with the SD1.5 UNet layout of comfy.model_detection), the VAE
comfy's AutoencoderKL with SD's ddconfig, the text model comfy's SD1 CLIP (sd1_clip_config.json,
whose vocabulary is the bundled sd1_tokenizer's). Weights are float32, drawn from a seeded
generator (std 1/sqrt(fan_in), norms 1, biases 0), and saved in one safetensors file with the
keys of an original SD1.5 checkpoint (model.diffusion_model.*, first_stage_model.*,
cond_stage_model.transformer.text_model.*). The file is then loaded back with
comfy.sd.load_checkpoint_guess_config, which must detect SD15, and a prompt is encoded with it.
About 4.3 GB; 1-2 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

# the SD1.5 UNet as comfy.model_detection's table of known UNets describes it
SD15_UNET = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
    "legacy": False, "adm_in_channels": None, "in_channels": 4, "model_channels": 320,
    "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "channel_mult": [1, 2, 4, 4], "transformer_depth_middle": 1, "use_linear_in_transformer": False,
    "context_dim": 768, "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    "use_temporal_attention": False, "use_temporal_resblock": False,
}
SD_VAE = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3,
          "ch": 128, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [],
          "dropout": 0.0}


def import_comfy(comfyui_dir: Path):
    sys.path.insert(0, str(comfyui_dir))
    import comfy.cli_args
    comfy.cli_args.args.cpu = True          # as the server's --cpu: no GPU needed
    import comfy.sd
    import comfy.sd1_clip
    import comfy.supported_models
    from comfy.ldm.models.autoencoder import AutoencoderKL
    return comfy, AutoencoderKL


def randomize(module: torch.nn.Module, gen: torch.Generator) -> None:
    """ComfyUI's layers skip weight init (their tensors are empty): fill every tensor."""
    with torch.no_grad():
        for name, t in [*module.named_parameters(), *module.named_buffers()]:
            if not t.is_floating_point():
                continue
            if t.dim() >= 2:                # linear, conv, embedding
                t.normal_(0.0, 1.0 / math.sqrt(t[0].numel()), generator=gen)
            elif name.endswith("weight"):   # GroupNorm, LayerNorm
                t.fill_(1.0)
            else:
                t.zero_()


def build(comfy, AutoencoderKL, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    model_config = comfy.supported_models.SD15(dict(SD15_UNET))
    unet = model_config.get_model({}).diffusion_model
    vae = AutoencoderKL(ddconfig=dict(SD_VAE), embed_dim=4)
    clip = comfy.sd1_clip.SDClipModel(device="cpu", dtype=torch.float32)
    vocab = len(comfy.sd1_clip.SD1Tokenizer().clip_l.tokenizer.get_vocab())
    assert vocab == clip.transformer.text_model.embeddings.token_embedding.weight.shape[0], vocab
    sd = {}
    for prefix, module in (("model.diffusion_model.", unet), ("first_stage_model.", vae),
                           ("cond_stage_model.transformer.", clip.transformer)):
        module.float()
        randomize(module, gen)
        for k, v in module.state_dict().items():
            if "text_projection" not in k:  # SD1.5 files have none (SD15 drops it on saving)
                sd[prefix + k] = v.contiguous()
    return sd


def check(comfy, path: Path) -> None:
    model, clip, vae, _, = comfy.sd.load_checkpoint_guess_config(
        str(path), embedding_directory=None)[:4]
    kind = type(model.model.model_config).__name__
    assert kind == "SD15", f"ComfyUI detected {kind}, not SD15"
    cond = clip.encode_from_tokens(clip.tokenize("a red flower on green grass"))
    assert cond.shape == (1, 77, 768) and torch.isfinite(cond).all(), cond.shape
    print(f"loaded back: {kind}, unet {model.model.get_dtype()}, vae {vae.vae_dtype}, "
          f"text conditioning {tuple(cond.shape)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--comfyui", required=True, type=Path, help="the ComfyUI checkout")
    ap.add_argument("--out", required=True, type=Path, help="the .safetensors file to write")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    comfy, AutoencoderKL = import_comfy(args.comfyui.expanduser().resolve())
    import safetensors.torch

    t0 = time.time()
    sd = build(comfy, AutoencoderKL, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(sd, str(args.out), metadata={"random_weights": "1",
                                                             "seed": str(args.seed)})
    n = sum(v.numel() for v in sd.values())
    print(f"wrote {args.out}: {len(sd)} tensors, {n / 1e6:.0f} M parameters, "
          f"{args.out.stat().st_size / 1e9:.2f} GB, {time.time() - t0:.0f} s")
    del sd
    check(comfy, args.out)


if __name__ == "__main__":
    main()
