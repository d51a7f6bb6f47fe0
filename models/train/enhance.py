"""Train an Enhance network: ``python <pack> train-enhance --out runs/enhance`` (or ``--recipe``).

The per-image PSNR loss (the batch mean of each image's -PSNR) on synthetic degradation pairs,
Adam with a cosine learning-rate decay, an EMA copy of the weights (what gets exported), a fixed
validation batch drawn from the training distribution (never from the held-out evaluation
images), a clean save on Ctrl-C / SIGTERM. The network adds its residual to a bicubic
enlargement of the input.

The run folder ``--out`` holds state.safetensors (full resumable state, every ``--save-every``
steps), model.safetensors (the final fp16 EMA weights with the exact command in their
provenance: the shipping format), best.safetensors (the EMA weights at the best validation
PSNR so far), log.jsonl and summary.json.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from dataclasses import replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checkpoint import load_checkpoint, load_state_strict, save_checkpoint
from ..cli import add_recipe_flag, add_threads_flag, argv_per_stage, parse_with_recipe
from ..data.degrade import DEGRADATION_WEIGHTS
from ..data.enhance_instructions import build_pool
from ..data.enhance_pairs import EnhanceData
from ..enhance.model import KIND
from ..enhance.network import (
    CONTEXT_DIM,
    DENOISE_MODES,
    Enhancer,
    EnhancerConfig,
    count_parameters,
    image_stats,
    upsample_skip,
)
from ..eval.metrics import mean_psnr
from ..text_encoder import DEFAULT_ENCODER_ID, encode_prompts
from .utils import (
    GracefulStop,
    command_line,
    dump_json,
    load_train_state,
    make_progress,
    prepare_run_folder,
    save_train_state,
    set_threads,
)

SKIP = "bicubic"   # what the residual is added to (older files, nearest, still warm-start)
CONTEXT_CHOICES = (0, CONTEXT_DIM)   # --context-dim (the network also reads 11: older files)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="train-enhance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_flag(p)
    p.add_argument("--out", required=True, metavar="DIR",
                   help="run folder (state, log, best and final model.safetensors); an existing "
                        "state there is resumed")
    p.add_argument("--scale", type=int, default=4, choices=(1, 2, 4))
    p.add_argument("--channels", type=int, default=48)
    p.add_argument("--n-convs", type=int, default=12)
    p.add_argument("--film-hidden", type=int, default=128)
    p.add_argument("--context-dim", type=int, default=CONTEXT_DIM, choices=CONTEXT_CHOICES,
                   help="global image statistics the FiLM MLP reads (0: none)")
    p.add_argument("--denoise", default="none", choices=DENOISE_MODES,
                   help="'nlm': a non-local-means stage in front of the convolutions, blended in per "
                        "image by the FiLM MLP (a network warm-started without one gets a fresh one)")
    p.add_argument("--nlm-lr-mult", type=float, default=1.0,
                   help="learning-rate factor for the non-local-means control head (a head added to "
                        "trained weights learns its per-instruction blend slowly at the body's rate)")
    p.add_argument("--nlm-gate-weight", type=float, default=0.0,
                   help="weight of a cross-entropy term that teaches the non-local-means gate when "
                        "the target removes the input's noise (1) and when it keeps it (0)")
    p.add_argument("--no-worse-weight", type=float, default=0.0,
                   help="weight of a hinge on the samples with the empty instruction: how many dB "
                        "the output falls below the bicubic enlargement of its input, plus "
                        "--no-worse-margin (0 = off). The empty instruction must never hurt")
    p.add_argument("--no-worse-margin", type=float, default=0.1,
                   help="dB above bicubic the hinge asks of the empty instruction")
    p.add_argument("--empty-clean-fraction", type=float, default=0.0,
                   help="extra share of samples that are clean crops (downscaled only) with the "
                        "empty instruction")
    p.add_argument("--steps", type=int, default=4000, help="total optimiser steps")
    p.add_argument("--minutes", type=float, default=0.0,
                   help="also stop (and save) after this many minutes of this run; 0 = no limit")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr-size", type=int, default=32, help="input (low-resolution) patch size")
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--val-every", type=int, default=200)
    p.add_argument("--val-size", type=int, default=64)
    add_threads_flag(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-procedural", action="store_true", help="photos only")
    p.add_argument("--photos", default="", metavar="DIR",
                   help="a prepare-enhance-data folder: its training photos join the bundled ones")
    p.add_argument("--photo-fraction", type=float, default=0.6,
                   help="share of photo crops drawn from --photos")
    p.add_argument("--mixed-fraction", type=float, default=0.0,
                   help="share of samples carrying blur, noise and JPEG together")
    p.add_argument("--second-order", type=float, default=0.0,
                   help="share of full-restoration samples degraded in two rounds")
    p.add_argument("--weight", action="append", default=[], metavar="NAME=W",
                   help="how often a degradation is drawn relative to the others (repeatable; "
                        f"defaults {', '.join(f'{k}={v:g}' for k, v in DEGRADATION_WEIGHTS.items())})")
    p.add_argument("--init", default="", help="warm-start the weights from an enhancer .safetensors "
                   "(another run's model.safetensors, or the shipped "
                   "models/weights/enhance_x4.safetensors)")
    p.add_argument("--fresh", action="store_true",
                   help="ignore an existing state in --out instead of resuming from it")
    return parse_with_recipe(p, argv)


def widen_context(tensors: dict, old: int, new: int, source: str) -> dict:
    """Warm-start a network that reads more global statistics than ``source`` did: the new
    inputs of the FiLM MLP's context layer start at zero weight, so it computes what the old
    network computed until training finds a use for them."""
    if not 0 < old < new:
        raise SystemExit(f"--init {source}: context_dim {old} cannot become {new} (only more "
                         "statistics can be added)")
    w = tensors["film.ctx.weight"]                                      # [hidden, old]
    tensors["film.ctx.weight"] = torch.cat([w, w.new_zeros(w.shape[0], new - old)], 1)
    print(f"[enhance] context {old} -> {new} statistics: the new inputs start at zero weight",
          file=sys.stderr)
    return tensors


def change_denoise(tensors: dict, net: torch.nn.Module, old: str, new: str, source: str) -> dict:
    """Warm-start across a change of ``EnhancerConfig.denoise``: a network gaining the
    non-local-means stage gets a fresh control head (``net``'s own initial values); one losing it
    drops the head."""
    tensors = {k: v for k, v in tensors.items() if not k.startswith("film.nlm.")}
    if new == "nlm":
        tensors.update({k: v.detach().clone() for k, v in net.state_dict().items()
                        if k.startswith("film.nlm.")})
    print(f"[enhance] --init {source}: denoise {old} -> {new}, the non-local-means head starts fresh",
          file=sys.stderr)
    return tensors


def widen_channels(tensors: dict, net: torch.nn.Module, old: int, source: str) -> dict:
    """Warm-start a wider network (``net``, freshly initialised) from one with ``old`` feature
    channels, computing exactly what the old one did: the old weights fill the first ``old``
    channels; the new channels start from ``net``'s own random weights, but nothing they compute
    reaches the old channels or the output yet (those weights start at zero), and their FiLM rows
    start at zero as FiLM's always do. Training then finds a use for them (Net2Net-style)."""
    new = net.cfg.channels
    if not 0 < old < new:
        raise SystemExit(f"--init {source}: {old} channels cannot become {new} (only wider)")
    fresh = {k: v.detach().clone() for k, v in net.state_dict().items()}
    out = {}
    for k, v in tensors.items():
        f = fresh[k]
        if k.startswith("film.out."):          # rows [2, L, C(, hidden)] as FiLM views them
            shape = (2, net.cfg.n_convs, -1) + tuple(v.shape[1:])
            w = f.view(shape).clone()
            w[:, :, :old] = v.view(shape)
            out[k] = w.view(f.shape)
        elif k.startswith(("head.", "head_act.", "body.", "acts.", "tail.")) and f.shape != v.shape:
            w = f.clone()
            w[tuple(slice(0, n) for n in v.shape)] = v
            if w.dim() == 4 and w.shape[1] == new:     # a conv reading features: new inputs
                w[:, old:] = 0                         # reach nothing yet
            out[k] = w
        else:
            out[k] = v
    print(f"[enhance] --init {source}: {old} -> {new} channels, the new ones start disconnected",
          file=sys.stderr)
    return out


PSNR_FLOOR_MSE = 1e-5   # per-image MSE floor of the loss (50 dB): a perfect crop adds no pull
LOSS_NAME = "-PSNR per image"   # recorded in the provenance


def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """out, target [B, 3, H, W] -> scalar: the mean of 10 log10(MSE) per image. Its gradient
    weights each image by 1 / its own MSE, as an average of PSNRs does, so every sample counts in
    decibels as the evaluator counts it (plain L1 let dark and badly degraded crops dominate)."""
    mse = ((out.float() - target.float()) ** 2).flatten(1).mean(1)          # [B]
    return (10 / math.log(10)) * torch.log(mse + PSNR_FLOOR_MSE).mean()


def no_worse_loss(out: torch.Tensor, target: torch.Tensor, lr: torch.Tensor, empty: torch.Tensor,
                  margin_db: float) -> torch.Tensor:
    """out, target [B, 3, sH, sW], lr [B, 3, H, W], empty [B] bool -> scalar: the mean over the
    ``empty`` rows of relu(PSNR of bicubic - PSNR of out + margin_db), in dB (0 without such
    rows). Where the input is damaged bicubic is far behind and the hinge is silent; on a clean
    or lightly damaged input it stops the empty instruction from restoring what is not there."""
    if not bool(empty.any()):
        return out.new_zeros(())
    s = target.shape[-1] // lr.shape[-1]
    bic = upsample_skip(lr.float(), s, "bicubic").clamp(0, 1) if s > 1 else lr.float()
    t = target.float()
    db = 10 / math.log(10)
    mse_out = ((out.float() - t) ** 2).flatten(1).mean(1)[empty]
    mse_bic = ((bic - t) ** 2).flatten(1).mean(1)[empty]
    gap = db * (torch.log(mse_out + PSNR_FLOOR_MSE) - torch.log(mse_bic + PSNR_FLOOR_MSE))
    return F.relu(gap + margin_db).mean()


def param_groups(net: torch.nn.Module, nlm_lr_mult: float) -> list[dict]:
    """One Adam group, or two when the non-local-means head learns at its own rate."""
    if nlm_lr_mult == 1.0:
        return [{"params": list(net.parameters())}]
    head = [p for n, p in net.named_parameters() if n.startswith("film.nlm.")]
    rest = [p for n, p in net.named_parameters() if not n.startswith("film.nlm.")]
    return [{"params": rest}, {"params": head, "lr_mult": nlm_lr_mult}]


def gate_loss(net, x: torch.Tensor, text: torch.Tensor, null: torch.Tensor,
              label: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the non-local-means gate against ``Batch.denoise`` (rows labelled
    NaN are left out; 0 when every row is)."""
    keep = ~torch.isnan(label)
    if not bool(keep.any()):
        return x.new_zeros(())
    context = image_stats(x)[:, :net.cfg.context_dim] if net.cfg.context_dim else None
    _, _, _, raw = net.film(text, x.shape[0], null, context)
    return F.binary_cross_entropy_with_logits(raw[keep, 0].float(), label[keep].float())


def lr_at(step: int, args) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    t = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
    return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), net.parameters()):
        e.lerp_(p, 1 - decay)


@torch.no_grad()
def validate(net, val, embeds) -> tuple[float, float]:
    """(PSNR of the network, PSNR of bicubic upsampling) on the fixed validation batch."""
    net.eval()
    outs = []
    for i in range(0, val.lr.shape[0], 16):
        x = val.lr[i:i + 16].contiguous(memory_format=torch.channels_last)
        outs.append(net(x, embeds[val.text_index[i:i + 16]], val.null[i:i + 16]).float())
    net.train()
    out = torch.cat(outs)
    s = out.shape[-1] // val.lr.shape[-1]
    base = upsample_skip(val.lr, s, "bicubic") if s > 1 else val.lr
    return mean_psnr(out, val.target), mean_psnr(base, val.target)


def parse_weights(items: list[str]) -> dict[str, float]:
    """["noise=2", "cast=0"] -> {"noise": 2.0, "cast": 0.0}; a clear error for a bad item."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in DEGRADATION_WEIGHTS:
            raise SystemExit(f"--weight {item!r}: expected NAME=W with NAME one of "
                             f"{', '.join(DEGRADATION_WEIGHTS)}")
        try:
            out[name] = float(value)
        except ValueError:
            raise SystemExit(f"--weight {item!r}: W must be a number") from None
        if out[name] < 0:
            raise SystemExit(f"--weight {item!r}: W must be 0 or more")
    if out and sum({**DEGRADATION_WEIGHTS, **out}.values()) <= 0:
        raise SystemExit("--weight: at least one degradation needs a weight above 0")
    return out


def warm_start(net: Enhancer, cfg: EnhancerConfig, init: str) -> list[str]:
    """Load ``init`` (an enhancer file) into ``net``, adapting across the changes a run may make
    (more context statistics, the non-local-means stage added or dropped, more channels, another
    skip); returns the commands that made those weights, oldest first."""
    ck = load_checkpoint(init, kind=KIND)
    history = list(ck.provenance.get("history", [])) + [
        f"{ck.provenance.get('command', '?')} (to step {ck.provenance.get('step', '?')}), "
        f"then --init {init}"]
    init_cfg = EnhancerConfig.from_dict(ck.config)   # files without `skip` are nearest
    if replace(init_cfg, skip=cfg.skip, context_dim=cfg.context_dim, denoise=cfg.denoise,
               channels=cfg.channels) != cfg:
        raise SystemExit(f"--init {init}: its config {ck.config} differs from this run's "
                         f"{cfg.to_dict()}; pass the same --scale/--n-convs/--film-hidden "
                         "(--channels may only grow)")
    tensors = dict(ck.tensors)
    if init_cfg.context_dim != cfg.context_dim:
        tensors = widen_context(tensors, init_cfg.context_dim, cfg.context_dim, init)
    if init_cfg.denoise != cfg.denoise:
        tensors = change_denoise(tensors, net, init_cfg.denoise, cfg.denoise, init)
    if init_cfg.channels != cfg.channels:
        tensors = widen_channels(tensors, net, init_cfg.channels, init)
    load_state_strict(net, tensors, source=init)
    if init_cfg.skip != cfg.skip:
        # the residual was learned against another skip: keep the features, restart the
        # tail at zero so the network starts as exactly its skip (the tone head is kept)
        nn.init.zeros_(net.tail.weight)
        nn.init.zeros_(net.tail.bias)
        print(f"[enhance] skip {init_cfg.skip} -> {cfg.skip}: tail restarted at zero",
              file=sys.stderr)
    print(f"[enhance] warm start from {init}", file=sys.stderr)
    return history


def train_step(net, opt, b, embeds: torch.Tensor, args, step: int,
               empty_index: int = -1) -> tuple[float, float | None]:
    """One optimiser step on batch ``b`` at the learning rate of ``step``: (image loss, gate
    loss or None). ``empty_index``: the pool row of the empty instruction (for
    --no-worse-weight)."""
    for g in opt.param_groups:
        g["lr"] = lr_at(step, args) * g.get("lr_mult", 1.0)
    x = b.lr.contiguous(memory_format=torch.channels_last)
    out = net(x, embeds[b.text_index], b.null)
    loss = loss_fn(out, b.target)
    total, g_loss = loss, None
    if args.no_worse_weight > 0:
        empty = b.null | (b.text_index == empty_index)
        total = total + args.no_worse_weight * no_worse_loss(out, b.target, b.lr, empty,
                                                             args.no_worse_margin)
    if args.nlm_gate_weight > 0:
        g_loss = gate_loss(net, x, embeds[b.text_index], b.null, b.denoise)
        total = loss + args.nlm_gate_weight * g_loss
    opt.zero_grad(set_to_none=True)
    total.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    return loss.item(), (None if g_loss is None else g_loss.item())


def instruction_embeddings(pool, text_dim: int) -> torch.Tensor:
    """The MiniLM sentence embeddings [N, text_dim] of the instruction pool's texts."""
    t0 = time.time()
    embeds = encode_prompts([t for t, _ in pool]).sentence
    print(f"[enhance] encoded {len(pool)} instructions in {time.time() - t0:.1f} s", file=sys.stderr)
    assert embeds.shape[1] == text_dim, embeds.shape
    return embeds


def make_data(args, pool, step: int):
    """(the training sampler, seeded to continue at ``step``; the fixed validation batch)."""
    mix = {"photos": args.photos, "photo_fraction": args.photo_fraction,
           "mixed_fraction": args.mixed_fraction, "second_order": args.second_order}
    size = args.lr_size * args.scale
    data = EnhanceData(pool, scale=args.scale, hr_size=size, seed=args.seed * 1_000_003 + step,
                       use_procedural=not args.no_procedural,
                       degradation_weights=parse_weights(args.weight),
                       empty_clean_fraction=args.empty_clean_fraction, **mix)
    val = EnhanceData(pool, scale=args.scale, hr_size=size, seed=987_654,
                      use_procedural=not args.no_procedural, **mix).sample(args.val_size)
    return data, val


def log_validation(ema, val, embeds, log_path, bar, *, step: int, loss: float,
                   gate_loss: float | None, seconds: float) -> float:
    """Validate the EMA weights, append the record to ``log_path``, print it; the PSNR (dB)."""
    v, v0 = validate(ema, val, embeds)
    rec = {"step": step, "loss": round(loss, 5), "val_psnr": round(v, 3),
           "val_bicubic_psnr": round(v0, 3), "seconds": round(seconds, 1)}
    if gate_loss is not None:
        rec["gate_loss"] = round(gate_loss, 4)
    with open(log_path, "a") as f:
        f.write(json.dumps(rec) + "\n")
    bar.write(f"[enhance] step {step} loss {loss:.4f} val PSNR {v:.2f} dB (bicubic {v0:.2f})")
    return v


def start_or_resume(net, args, state_path, command: str, history: list[str]):
    """(EMA copy, Adam, step, saved extras, history): fresh, or from ``state_path`` unless
    ``--fresh``; a resume under another command line is recorded in the history."""
    ema = copy.deepcopy(net).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(param_groups(net, args.nlm_lr_mult), lr=args.lr, betas=(0.9, 0.99))
    step, extra = 0, {}
    if state_path.exists() and not args.fresh:
        step, extra = load_train_state(state_path, {"net": net, "ema": ema}, {"adam": opt}, kind=KIND)
        print(f"[enhance] resumed {state_path} at step {step}", file=sys.stderr)
        history = list(extra.get("history", []))
        if extra.get("command") and extra["command"] != command:
            history.append(f"{extra['command']} (to step {step}), then resumed")
    return ema, opt, step, extra, history


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    stages = argv_per_stage(argv)
    if stages is not None:          # --recipe NAME: every stage in order
        return next((rc for rc in map(main, stages) if rc), 0)
    args = parse_args(argv)
    set_threads(args.threads)
    torch.manual_seed(args.seed)
    run_dir = prepare_run_folder(args.out)
    state_path, model_path = run_dir / "state.safetensors", run_dir / "model.safetensors"
    command = command_line("train-enhance", argv)

    cfg = EnhancerConfig(scale=args.scale, channels=args.channels, n_convs=args.n_convs,
                         film_hidden=args.film_hidden, skip=SKIP, context_dim=args.context_dim,
                         denoise=args.denoise)
    if (args.nlm_gate_weight > 0 or args.nlm_lr_mult != 1.0) and cfg.denoise != "nlm":
        raise SystemExit("--nlm-gate-weight and --nlm-lr-mult need --denoise nlm")
    pool = build_pool(seed=0)
    embeds = instruction_embeddings(pool, cfg.text_dim)               # [N, 384]

    net = Enhancer(cfg).to(memory_format=torch.channels_last)
    # the commands that made the starting weights, oldest first
    history: list[str] = warm_start(net, cfg, args.init) if args.init else []
    ema, opt, step, extra, history = start_or_resume(net, args, state_path, command, history)
    best = float(extra.get("best_val_psnr", -1.0))
    elapsed = float(extra.get("seconds", 0.0))

    data, val = make_data(args, pool, step)
    print(f"[enhance] {count_parameters(net) / 1e6:.3f}M params, {data.describe()}", file=sys.stderr)

    def save_state():
        extra_now = {"best_val_psnr": best, "seconds": elapsed, "command": command,
                     "history": history}
        save_train_state(state_path, {"net": net, "ema": ema}, {"adam": opt}, step, extra_now,
                         kind=KIND, config=cfg.to_dict(), encoder=DEFAULT_ENCODER_ID)

    def export(path, module, note):
        save_checkpoint(path, module.state_dict(), kind=KIND, config=cfg.to_dict(),
                        encoder=DEFAULT_ENCODER_ID, dtype=torch.float16,
                        provenance={"command": command, "history": history,
                                    "step": step, "seconds": round(elapsed),
                                    "val_psnr": round(best, 3), "note": note,
                                    "data": data.describe(), "loss": LOSS_NAME,
                                    "date": time.strftime("%Y-%m-%d %H:%M:%S")})

    log_path = run_dir / "log.jsonl"
    bar = make_progress(args.steps, step, desc="train-enhance")
    session_start = time.time()
    running = running_gate = None
    net.train()
    with GracefulStop() as stop:
        while step < args.steps and not stop.requested:
            if args.minutes and time.time() - session_start > args.minutes * 60:
                print("\n[enhance] --minutes reached", file=sys.stderr)
                break
            t_step = time.time()
            loss, g_loss = train_step(net, opt, data.sample(args.batch), embeds, args, step,
                                      data.empty_index)
            if g_loss is not None:
                running_gate = g_loss if running_gate is None else 0.98 * running_gate + 0.02 * g_loss
            step += 1
            ema_update(ema, net, min(args.ema, (1 + step) / (10 + step)))
            elapsed += time.time() - t_step
            running = loss if running is None else 0.98 * running + 0.02 * loss
            bar.update(1)
            bar.set_postfix(loss=f"{running:.4f}", lr=f"{lr_at(step, args):.1e}")
            if step % args.val_every == 0 or step == args.steps:
                v = log_validation(ema, val, embeds, log_path, bar, step=step, loss=running,
                                   gate_loss=running_gate, seconds=elapsed)
                if v > best:
                    best = v
                    export(run_dir / "best.safetensors", ema, "best validation PSNR so far")
            if step % args.save_every == 0:
                save_state()
    bar.close()
    save_state()
    export(model_path, ema, "final EMA weights")
    dump_json({"step": step, "best_val_psnr": best, "seconds": elapsed, "out": str(model_path)},
              run_dir / "summary.json")
    print(f"[enhance] step {step}: state {state_path}, weights {model_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
