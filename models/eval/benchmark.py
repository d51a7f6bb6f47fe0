"""Benchmark: generation speed, text-encoding latency and peak memory on this machine.

    python <pack dir> benchmark [--model PATH] [--resolutions 64 128 256] [--batches 1 16]
        [--dtypes fp32 bf16] [--compile/--no-compile] [--repeat N] [--threads N]
        [--json out.json] [--quick]

What it measures, in order:
1. the fp32 and bf16 matmul rate of this machine (n x n matmul, best of a few), the yardstick;
2. for each resolution x batch x dtype x (eager, torch.compile): images/s, ms/image and the
   achieved GFLOP/s, also as a fraction of the measured fp32 matmul rate. FLOPs per image are
   counted with torch.utils.flop_counter.FlopCounterMode on one forward (convolutions and
   matmuls; elementwise ops are not counted). Model and activations are channels_last; bf16 is
   torch.autocast on the CPU. The model's own resolution uses its weights; other resolutions use
   a generator of the same widths with random weights (time does not depend on weight values).
   torch.compile's warm-up (the first call) is reported separately, never in the rate;
3. peak resident memory per configuration: by default each configuration runs in its own
   process (VmHWM of that process); in-process runs reset the peak before each configuration
   (/proc/self/clear_refs) or, where that is impossible, report the process peak so far;
4. the default text encoder (all-MiniLM-L6-v2): import and load time, 1 prompt, 64 prompts.

A script, not a test: numbers depend on the machine and on what else runs on it.
"""
from __future__ import annotations

import argparse
import copy
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from ..checkpoint import WEIGHTS_DIR
from ..cli import add_threads_flag, command_line, dump_json, set_threads
from ..colour_lexicon import COLOUR_CHANNELS
from ..colour_words import MAX_COLOUR_WORDS
from ..gan import Generator, GeneratorConfig, as_written, config_dict, load_gan, seeded_noise
from ..text_encoder import DEFAULT_ENCODER_ID, TransformersTextEncoder, default_encoder_path

PACK_ROOT = WEIGHTS_DIR.parents[1]
DEFAULT_MODEL = WEIGHTS_DIR / "promptgan_default.safetensors"
RANDOM_NGF = 32
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
RESULT_TAG = "PROMPTGAN_BENCH_RESULT "
RANDOM_NOTE = "random weights (time does not depend on weight values)"


# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------

def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_mb() -> float | None:
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process (VmHWM, else ru_maxrss), MiB."""
    kb = _status_kb("VmHWM")
    if kb is None:
        try:
            import resource

            kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            if sys.platform == "darwin":  # bytes there, KiB on Linux
                kb //= 1024
        except (ImportError, OSError):
            return None
    return kb / 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# Yardstick and FLOPs
# ---------------------------------------------------------------------------------------------

def matmul_size(dtype: torch.dtype = torch.float32, n: int = 2048, reps: int = 3,
                budget_s: float = 2.0) -> int:
    """The matmul size to time: ``n``, halved (not below 256) while ``reps + 1`` calls would take
    longer than ``budget_s``, estimated from one call at 256. A CPU without native bf16 runs a
    2048 bf16 matmul at well under 1 GFLOP/s: minutes at full size."""
    small = min(n, 256)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(small, small, generator=g).to(dtype)
    torch.mm(a, a)
    t0 = time.perf_counter()
    torch.mm(a, a)
    per_flop = (time.perf_counter() - t0) / (2.0 * small ** 3)
    while n > small and (reps + 1) * 2.0 * n ** 3 * per_flop > budget_s:
        n //= 2
    return n


def matmul_rate(dtype: torch.dtype = torch.float32, n: int = 2048, reps: int = 3) -> float:
    """GFLOP/s of an n x n @ n x n matmul in ``dtype``, best of ``reps`` after one warm-up
    (n reduced by ``matmul_size`` where the dtype is too slow to time at full size)."""
    return matmul_rate_and_size(dtype, n, reps)[0]


def matmul_rate_and_size(dtype: torch.dtype = torch.float32, n: int = 2048,
                         reps: int = 3) -> tuple[float, int]:
    """(matmul_rate's GFLOP/s, the size it timed)."""
    n = matmul_size(dtype, n, reps)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dtype)
    b = torch.randn(n, n, generator=g).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(max(1, reps)):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9, n


class InterleavedMatmul:
    """The fp32 matmul yardstick timed between the generator's calls, so that a shared machine's
    slow and fast spells fall on both: each ``time_one`` times one n x n @ n x n matmul;
    ``gflops`` is the median rate."""

    def __init__(self, n: int):
        g = torch.Generator().manual_seed(0)
        self.n = n
        self.a = torch.randn(n, n, generator=g)
        self.b = torch.randn(n, n, generator=g)
        torch.mm(self.a, self.b)                    # warm-up
        self.seconds: list[float] = []

    def time_one(self) -> None:
        t0 = time.perf_counter()
        torch.mm(self.a, self.b)
        self.seconds.append(time.perf_counter() - t0)

    def gflops(self) -> float:
        return 2.0 * self.n ** 3 / statistics.median(self.seconds) / 1e9


def make_inputs(cfg: GeneratorConfig, batch: int, seed: int = 0):
    """Seeded noise [B, nz] (as generation makes it), unit sentence vectors [B, text_dim] and,
    for a generator with a colour reader, colour words [B, MAX_COLOUR_WORDS, text_dim + 4] with
    three colour words per prompt (else None)."""
    gen = torch.Generator().manual_seed(seed)
    z = seeded_noise(list(range(seed, seed + batch)), cfg.nz)
    s = F.normalize(torch.randn(batch, cfg.text_dim, generator=gen), dim=1)
    if not cfg.colour_queries:
        return z, s, None
    words = torch.zeros(batch, MAX_COLOUR_WORDS, cfg.text_dim + COLOUR_CHANNELS)
    words[:, :3, :cfg.text_dim] = torch.randn(batch, 3, cfg.text_dim, generator=gen)
    words[:, :3, cfg.text_dim:] = torch.tensor([0.5, 0.2, -0.3, 1.0])
    return z, s, words


def flops_per_image(g: Generator, executed: bool = False) -> int:
    """FLOPs of one forward at batch 1 (FlopCounterMode: convolutions and matmuls) of the model
    as written (upsample, then convolve), or with ``executed`` of what the fast path runs (the
    transposed convolutions do 16 / 36 of the upsampling convolutions' multiply-adds)."""
    z, s, w = make_inputs(g.cfg, 1)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), (nullcontext() if executed else as_written(g)), counter:
        g(z, s, w)
    return int(counter.get_total_flops())


# ---------------------------------------------------------------------------------------------
# One configuration
# ---------------------------------------------------------------------------------------------

def time_generator(g: Generator, batch: int, dtype: str = "fp32", compiled: bool = False,
                   repeat: int | None = None, min_time: float = 1.0,
                   channels_last: bool = True, matmul_n: int = 0) -> dict:
    """Time forwards of ``g`` at ``batch``: warm-up calls first, then ``repeat`` timed calls
    (or, with repeat None, at least 3 and until ``min_time`` seconds have been spent). With
    ``matmul_n``, an fp32 matmul of that size is timed after every fourth call (at least
    three times: the missing ones right after the last call), and its median rate is reported
    as ``matmul_fp32_interleaved_gflops``."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} not supported; use one of {sorted(DTYPES)}")
    g = g.eval()
    if channels_last:
        g = g.to(memory_format=torch.channels_last)
    z, s, w = make_inputs(g.cfg, batch)
    fn = g
    if compiled:
        # a cold compile per configuration, and no fallback to eager at the recompile limit
        importlib.import_module("torch._dynamo").reset()
        fn = torch.compile(g, dynamic=False)

    def call():
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()
        with torch.inference_mode(), ctx:
            return fn(z, s, w)

    t0 = time.perf_counter()
    out = call()
    first = time.perf_counter() - t0
    call()                              # second warm-up (allocator, oneDNN primitive caches)
    yardstick = InterleavedMatmul(matmul_n) if matmul_n else None
    times: list[float] = []
    while True:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
        if yardstick is not None and len(times) % 4 == 1:
            yardstick.time_one()
        if repeat is not None:
            if len(times) >= max(1, repeat):
                break
        elif (len(times) >= 3 and sum(times) >= min_time) or len(times) >= 500:
            break
    while yardstick is not None and len(yardstick.seconds) < 3:
        yardstick.time_one()
    med, best = statistics.median(times), min(times)
    return {
        "resolution": g.cfg.resolution, "batch": batch, "dtype": dtype,
        "mode": "compiled" if compiled else "eager", "channels_last": channels_last,
        "reps": len(times), "ms_per_batch_median": med * 1e3, "ms_per_batch_best": best * 1e3,
        "ms_per_image": med / batch * 1e3, "images_per_s": batch / med,
        "images_per_s_best": batch / best, "first_call_s": first,
        "compile_warmup_s": first if compiled else None,
        "output_shape": list(out.shape), "output_dtype": str(out.dtype).replace("torch.", ""),
        "matmul_fp32_interleaved_gflops": yardstick.gflops() if yardstick else None,
    }


def generator_for(spec: dict, base: Generator | None = None) -> tuple[Generator, str]:
    """The generator a configuration runs, and what its weights are.

    spec: base_config (GeneratorConfig dict), model_path (or None), resolution."""
    base_cfg = GeneratorConfig(**spec["base_config"])
    res = int(spec["resolution"])
    path = spec.get("model_path")
    if res == base_cfg.resolution:
        if base is not None:
            return base, (f"weights of {Path(path).name}" if path else RANDOM_NOTE)
        if path:
            return load_gan(path, with_discriminator=False).generator, f"weights of {Path(path).name}"
    torch.manual_seed(int(spec.get("seed", 0)))
    g = Generator(replace(base_cfg, resolution=res)).eval().requires_grad_(False)
    return g, RANDOM_NOTE


def run_one(spec: dict, base: Generator | None = None, fp32_rate: float | None = None,
            bf16_rate: float | None = None, isolated: bool = False) -> dict:
    """Build the configuration's generator, count its FLOPs, time it, read its peak memory."""
    if spec.get("threads"):
        set_threads(spec["threads"])
    g, weights = generator_for(spec, base)
    if g is base:
        g = copy.deepcopy(base)         # channels_last conversion must not touch the caller's
    flops, executed = flops_per_image(g), flops_per_image(g, executed=True)
    before = rss_mb()
    reset = reset_peak_rss()
    r = time_generator(g, int(spec["batch"]), spec["dtype"], bool(spec["compiled"]),
                       spec.get("repeat"), float(spec.get("min_time", 1.0)),
                       bool(spec.get("channels_last", True)), int(spec.get("matmul_n", 0)))
    r["peak_rss_mb"] = peak_rss_mb()
    r["rss_before_mb"] = before
    r["peak_scope"] = ("own process" if isolated else
                       "this process, peak reset before the configuration" if reset else
                       "this process, peak so far (could not reset)")
    r["weights"] = weights
    r["params"] = sum(p.numel() for p in g.parameters())
    r["threads"] = torch.get_num_threads()
    r["gflop_per_image"] = flops / 1e9
    r["executed_gflop_per_image"] = executed / 1e9
    r["gflops"] = flops * r["images_per_s"] / 1e9
    r["executed_gflops"] = executed * r["images_per_s"] / 1e9
    if r["matmul_fp32_interleaved_gflops"]:
        r["fraction_of_interleaved_fp32_matmul"] = r["gflops"] / r["matmul_fp32_interleaved_gflops"]
    if fp32_rate:
        r["fraction_of_fp32_matmul"] = r["gflops"] / fp32_rate
    if bf16_rate:
        r["fraction_of_bf16_matmul"] = r["gflops"] / bf16_rate
    return r


def run_isolated(spec: dict, timeout: float | None = None) -> dict:
    """run_one in a fresh Python process, so its peak memory is this configuration's own."""
    cmd = [sys.executable, str(PACK_ROOT), "benchmark", "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    raise RuntimeError(f"worker exited with {proc.returncode}: " + " | ".join(tail))


# ---------------------------------------------------------------------------------------------
# Text encoding
# ---------------------------------------------------------------------------------------------

def benchmark_prompts(n: int = 64) -> list[str]:
    colours = ["red", "yellow", "blue", "white", "purple", "orange", "pink", "golden"]
    things = ["a flower with {c} petals", "a {c} sky over snowy mountains",
              "a small {c} blossom on a dark background", "a lake at dusk under a {c} moon"]
    return [things[i % len(things)].format(c=colours[(i // len(things)) % len(colours)])
            for i in range(n)]


def bench_text(reps: int = 3) -> dict:
    """Default encoder: import and fresh load time, latency of 1 and of 64 prompts (median)."""
    already = "transformers" in sys.modules
    t0 = time.perf_counter()
    import transformers  # noqa: F401  (the import is part of a cold start)

    import_s = time.perf_counter() - t0
    before = rss_mb()
    t0 = time.perf_counter()
    enc = TransformersTextEncoder(default_encoder_path(), DEFAULT_ENCODER_ID)
    load_s = time.perf_counter() - t0
    after = rss_mb()
    prompts = benchmark_prompts(64)
    enc.encode(prompts[:1])
    enc.encode(prompts)

    def median_ms(batch):
        ts = []
        for _ in range(max(1, reps)):
            t0 = time.perf_counter()
            enc.encode(batch)
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts) * 1e3

    one, many = median_ms(prompts[:1]), median_ms(prompts)
    return {"encoder": DEFAULT_ENCODER_ID, "dim": enc.dim, "reps": max(1, reps),
            "import_transformers_s": import_s, "transformers_already_imported": already,
            "load_s": load_s, "one_prompt_ms": one, "prompts_64_ms": many,
            "per_prompt_ms_at_64": many / 64,
            "rss_added_by_load_mb": None if before is None or after is None else after - before}


# ---------------------------------------------------------------------------------------------
# The whole benchmark
# ---------------------------------------------------------------------------------------------

def machine_info() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "mkldnn": torch.backends.mkldnn.is_available()}


def _benchmark_model(base: Generator | None, model_path: str | None) -> tuple[Generator, str]:
    """The generator to measure and a note saying where it came from."""
    if base is None and model_path:
        base = load_gan(model_path, with_discriminator=False).generator
        return base, (f"{model_path} (ngf={base.cfg.ngf}; its weights used at "
                      f"{base.cfg.resolution} px)")
    if base is None:
        base = Generator(GeneratorConfig(resolution=64, ngf=RANDOM_NGF)).eval().requires_grad_(False)
        return base, f"no model file: random ngf={RANDOM_NGF} generator config ({RANDOM_NOTE})"
    return base, ((f"{model_path}" if model_path else "in-memory generator")
                  + f" (ngf={base.cfg.ngf}, {base.cfg.resolution} px)")


def _benchmark_notes(channels_last: bool) -> list[str]:
    """What the figures of a benchmark result mean (stored with them)."""
    return [
        "FLOPs per image: torch.utils.flop_counter on one batch-1 forward "
        "(convolutions and matmuls; elementwise ops not counted) of the model as "
        "written (nearest upsample, then 3x3 conv); GFLOP/s and % of matmul are "
        "those FLOPs per second, the rate a direct implementation would need for "
        "the same images. The generator runs each upsample + conv as one "
        "stride-2 transposed conv, with fewer FLOPs: 'executed' counts those",
        "other resolutions than the model's use a generator of the same ngf with "
        f"{RANDOM_NOTE}",
        "bf16 = torch.autocast('cpu', bfloat16); channels_last model on the CPU"
        if channels_last else "bf16 = torch.autocast('cpu', bfloat16); "
        "contiguous (NCHW) model",
        "rates use the median of the timed calls; compile warm-up (first call) is "
        "reported apart and not in the rate",
        "% of fp32 matmul: against the matmul rate measured once at the start "
        "(best of its calls); 'interleaved': against the median of fp32 matmuls "
        "timed between the configuration's own calls, which a shared machine's "
        "changing speed affects as it affects the generator"]


def run_benchmark(base: Generator | None = None, model_path: str | None = None, *,
                  resolutions=(64, 128, 256), batches=(1, 16), dtypes=("fp32", "bf16"),
                  compile_modes=(False, True), repeat: int | None = None, min_time: float = 1.0,
                  threads: int = 0, channels_last: bool = True, isolate: bool = False,
                  matmul_n: int = 2048, matmul_reps: int = 3, text: bool = True,
                  text_reps: int = 3, command: str = "", log=print) -> dict:
    """Run every configuration and return one JSON-able dict (see the module docstring).

    base: the generator whose widths (and, at its resolution, weights) are measured; when None,
    it is loaded from model_path, else a random ngf=32 64 px generator is used."""
    set_threads(threads)
    base, model_note = _benchmark_model(base, model_path)
    result: dict = {"command": command or "(called from Python)", "machine": machine_info(),
                    "model": {"source": model_note, "path": model_path,
                              "config": config_dict(base.cfg), "random": model_path is None},
                    "notes": _benchmark_notes(channels_last)}

    log(f"matmul {matmul_n}x{matmul_n}: measuring fp32 and bf16 ...")
    fp32 = matmul_rate(torch.float32, matmul_n, matmul_reps)
    bf16, bf16_n = matmul_rate_and_size(torch.bfloat16, matmul_n, matmul_reps)
    result["matmul"] = {"n": matmul_n, "reps": matmul_reps, "fp32_gflops": fp32,
                        "bf16_gflops": bf16, "bf16_n": bf16_n}
    log(f"  fp32 {fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s")

    rows = []
    for res in resolutions:
        for batch in batches:
            for dtype in dtypes:
                for compiled in compile_modes:
                    spec = {"base_config": config_dict(base.cfg), "model_path": model_path,
                            "resolution": int(res), "batch": int(batch), "dtype": dtype,
                            "compiled": bool(compiled), "repeat": repeat, "min_time": min_time,
                            "channels_last": channels_last, "matmul_n": matmul_n,
                            "threads": threads or torch.get_num_threads()}
                    name = f"{res}px b{batch} {dtype} {'compiled' if compiled else 'eager'}"
                    log(f"{name} ...")
                    try:
                        if isolate:
                            r = run_isolated(spec)
                            r["fraction_of_fp32_matmul"] = r["gflops"] / fp32
                            r["fraction_of_bf16_matmul"] = r["gflops"] / bf16
                        else:
                            r = run_one(spec, base, fp32, bf16)
                    except Exception as exc:  # one failing configuration must not end the run
                        r = {"resolution": int(res), "batch": int(batch), "dtype": dtype,
                             "mode": "compiled" if compiled else "eager",
                             "error": f"{type(exc).__name__}: {exc}"}
                        log(f"  failed: {r['error']}")
                    else:
                        inter = r.get("fraction_of_interleaved_fp32_matmul")
                        log(f"  {r['images_per_s']:.1f} img/s, {r['gflops']:.0f} GFLOP/s "
                            f"({100 * r['fraction_of_fp32_matmul']:.0f}% of fp32 matmul"
                            + ("" if inter is None else f", {100 * inter:.0f}% interleaved") + ")")
                    rows.append(r)
    result["generation"] = rows

    if text:
        log("text encoder ...")
        try:
            result["text_encoding"] = bench_text(text_reps)
        except Exception as exc:
            result["text_encoding"] = {"error": f"{type(exc).__name__}: {exc}"}
    return result


def _fmt(v, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def _percent(fraction: float | None) -> float | None:
    return None if fraction is None else 100 * fraction


def markdown(result: dict) -> str:
    m = result["matmul"]
    lines = [f"Machine: {result['machine']['cpu']}, {result['machine']['torch_threads']} threads, "
             f"torch {result['machine']['torch']}",
             f"Matmul {m['n']}x{m['n']}: fp32 {m['fp32_gflops']:.0f} GFLOP/s, "
             f"bf16 {m['bf16_gflops']:.0f} GFLOP/s (best of {m['reps']})",
             f"Model: {result['model']['source']}", "",
             "| res | batch | dtype | mode | weights | img/s | ms/img | GFLOP/img | GFLOP/s "
             "| % fp32 matmul | % interleaved fp32 matmul | executed GFLOP/img | executed GFLOP/s "
             "| executed % fp32 matmul | compile warm-up s | peak RSS MiB |",
             "|---:|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["generation"]:
        head = f"| {r['resolution']} | {r['batch']} | {r['dtype']} | {r['mode']} "
        if "error" in r:
            lines.append(head + f"| failed: {r['error'][:80]} | | | | | | | | | | | |")
            continue
        weights = "random" if r["weights"].startswith("random") else "model"
        frac = r.get("fraction_of_fp32_matmul")
        executed_frac = None if frac is None else frac * r["executed_gflops"] / r["gflops"]
        lines.append(head + f"| {weights} | {r['images_per_s']:.1f} | {r['ms_per_image']:.2f} "
                     f"| {r['gflop_per_image']:.2f} | {r['gflops']:.0f} "
                     f"| {_fmt(None if frac is None else 100 * frac, '.0f')} "
                     f"| {_fmt(_percent(r.get('fraction_of_interleaved_fp32_matmul')), '.0f')} "
                     f"| {r['executed_gflop_per_image']:.2f} | {r['executed_gflops']:.0f} "
                     f"| {_fmt(None if executed_frac is None else 100 * executed_frac, '.0f')} "
                     f"| {_fmt(r['compile_warmup_s'])} | {_fmt(r['peak_rss_mb'], '.0f')} |")
    scopes = sorted({r["peak_scope"] for r in result["generation"] if "peak_scope" in r})
    if scopes:
        lines.append(f"\nPeak RSS: {'; '.join(scopes)}.")
    t = result.get("text_encoding")
    if t:
        lines.append("")
        if "error" in t:
            lines.append(f"Text encoder: failed: {t['error']}")
        else:
            lines.append(f"Text encoder {t['encoder']}: import transformers "
                         f"{t['import_transformers_s']:.2f} s"
                         f"{' (already imported)' if t['transformers_already_imported'] else ''}, "
                         f"load {t['load_s']:.2f} s, 1 prompt {t['one_prompt_ms']:.1f} ms, "
                         f"64 prompts {t['prompts_64_ms']:.0f} ms "
                         f"({t['per_prompt_ms_at_64']:.2f} ms/prompt)")
    lines += [""] + [f"- {n}" for n in result["notes"]]
    lines.append(f"\nCommand: `{result['command']}`")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="benchmark", description="Measure generation speed (images/s "
                                "and fraction of the machine's matmul rate), text-encoding "
                                "latency and peak memory on this machine.")
    p.add_argument("--model", default=None, help=f"GAN .safetensors (default {DEFAULT_MODEL} if "
                   f"present, else a random ngf={RANDOM_NGF} generator)")
    p.add_argument("--resolutions", type=int, nargs="+", default=None, help="default 64 128 256")
    p.add_argument("--batches", type=int, nargs="+", default=None, help="default 1 16")
    p.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=None,
                   help="default fp32 bf16")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="also time torch.compile (default on; its warm-up takes 15-60 s each)")
    p.add_argument("--repeat", type=int, default=None,
                   help="timed calls per configuration (default: at least 3 and --min-time s)")
    p.add_argument("--min-time", type=float, default=2.0)
    add_threads_flag(p)
    p.add_argument("--json", default=None, help="write the result here")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 64 px, batch 1 and 16, fp32, eager, few repetitions")
    p.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                   help="each configuration in its own process, for per-configuration peak "
                   "memory (default on, off with --quick)")
    p.add_argument("--text", action=argparse.BooleanOptionalAction, default=True,
                   help="time the default text encoder")
    p.add_argument("--contiguous", action="store_true", help="NCHW instead of channels_last")
    p.add_argument("--matmul-size", type=int, default=2048)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker is not None:
        r = run_one(json.loads(args.worker), isolated=True)
        print(RESULT_TAG + json.dumps(r), flush=True)
        return 0

    q = args.quick
    model = args.model
    if model is None and DEFAULT_MODEL.is_file():
        model = str(DEFAULT_MODEL)
    if model is not None and not Path(model).is_file():
        p.error(f"--model {model}: no such file")
    res = args.resolutions or ([64] if q else [64, 128, 256])
    batches = args.batches or [1, 16]
    dtypes = args.dtypes or (["fp32"] if q else ["fp32", "bf16"])
    use_compile = args.compile if args.compile is not None else not q
    repeat = args.repeat if args.repeat is not None else (3 if q else None)
    isolate = args.isolate if args.isolate is not None else not q

    result = run_benchmark(
        model_path=model, resolutions=res, batches=batches, dtypes=dtypes,
        compile_modes=(False, True) if use_compile else (False,), repeat=repeat,
        min_time=args.min_time, threads=args.threads, channels_last=not args.contiguous,
        isolate=isolate, matmul_n=args.matmul_size, matmul_reps=2 if q else 5, text=args.text,
        text_reps=2 if q else 5, command=command_line("benchmark", argv),
        log=lambda s: print(s, file=sys.stderr, flush=True))
    print(markdown(result))
    if args.json:
        dump_json(result, args.json)
        print(f"\nwrote {args.json}")
    failed = [r for r in result["generation"] if "error" in r]
    return 1 if failed and len(failed) == len(result["generation"]) else 0


if __name__ == "__main__":
    sys.exit(main())
