"""The CPU's fast paths, chosen at run time: bf16 autocast for Enhance where the CPU computes
bf16 natively (AVX512-BF16 or AMX) and a one-time measurement shows it faster.

Measured against float32 on the shipped weights: Enhance under bf16 autocast stays at 68-70 dB
PSNR (at most 1.5 of 255 levels apart), so it is used where it pays. The generator under bf16
moved pixels by up to 17 levels (40.8 dB on its worst of 32 prompts), so generation stays in
float32. ``PROMPTGAN_FP32=1`` keeps everything in float32 (CUDA's float16 Enhance included).
"""
from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import torch

ENV_FP32 = "PROMPTGAN_FP32"
MIN_SPEEDUP = 1.15           # bf16 must beat float32 by this much to be used
PROBE_SIZE = 64              # px of the square image the one-time measurement runs


def forced_fp32() -> bool:
    return os.environ.get(ENV_FP32, "").strip() not in ("", "0")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """The CPU reports AVX512-BF16 or AMX-BF16 and oneDNN can use it (elsewhere bf16 is
    emulated and slower than float32)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
        supported = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (OSError, AttributeError, RuntimeError):
        return False
    return supported and ("avx512_bf16" in flags or "amx_bf16" in flags)


def best_seconds(fn, reps: int = 3) -> float:
    """The fastest of ``reps`` timed calls of ``fn``, after one untimed warm-up call."""
    fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


_measured: dict = {}


def bf16_pays(net: torch.nn.Module) -> bool:
    """One measurement per network configuration and process: a PROBE_SIZE image through
    ``net`` in float32 and under bf16 autocast; True when bf16 is MIN_SPEEDUP times faster."""
    key = (type(net).__name__, repr(getattr(net, "cfg", None)))
    if key not in _measured:
        x = torch.rand(1, 3, PROBE_SIZE, PROBE_SIZE)

        def run(dtype):
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
                net(x)

        fp32 = best_seconds(lambda: run(None))
        bf16 = best_seconds(lambda: run(torch.bfloat16))
        _measured[key] = fp32 >= MIN_SPEEDUP * bf16
    return _measured[key]


def enhance_autocast(net: torch.nn.Module, device: torch.device) -> torch.dtype | None:
    """The autocast dtype Enhance runs ``net`` under on ``device`` (None: float32)."""
    if forced_fp32():
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_has_native_bf16() and bf16_pays(net):
        return torch.bfloat16
    return None
