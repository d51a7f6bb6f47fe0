"""PromptGAN text -> 256 px against Stable Diffusion 1.5, in one real ComfyUI server, interleaved.

    ~/comfy/venv/bin/python tests/comfyui/make_random_sd15.py --comfyui ~/comfy/ComfyUI \
        --out ~/comfy/models/sd15_random.safetensors
    ~/comfy/venv/bin/python tests/comfyui/speed_vs_sd15.py --comfyui ~/comfy/ComfyUI \
        --ckpt ~/comfy/models/sd15_random.safetensors --json /tmp/speed.json \
        [--pause-pid $(pgrep -f train-gan) --budget 540]

One server (harness.ComfyServer: ``main.py --cpu``, the pack linked into a temporary
custom_nodes, the checkpoint linked into its models/checkpoints), everything in float32
(``--fp32-text-enc``, PROMPTGAN_FP32=1). Three graphs, batch 1:

- PromptGAN: workflows/api/text_to_image_hd.json with one prompt and one 256 px SaveImage
  (ModelLoader, TextEncode -> GANGenerate 64 px -> EnhancerLoader, Enhance x4 -> SaveImage);
- PromptGAN, a new prompt text each run, so TextEncode runs again too;
- SD1.5: CheckpointLoaderSimple, CLIPTextEncode x2, EmptyLatentImage 512x512, KSampler
  (euler, normal, cfg 7, --steps), VAEDecode, SaveImage.

Every run has a new seed. The server caches with ``--cache-lru``: with ComfyUI's default cache a
prompt evicts every node the previous prompt did not have, so interleaving would reload the
loaders each time, which one workflow run over and over never does. Each graph runs once to warm
up (SD1.5 with --warmup-steps), then SD1.5 runs --sd-runs times spread among the --runs rounds of
the two PromptGAN graphs. Per run: wall time from POST /prompt to the websocket's last
``executing`` (node None, sent once the history is written), and execution time from the
history's execution_start/execution_success timestamps (ms). Prints a markdown table of medians,
writes --json with every run. aiohttp (ComfyUI's own) is used for the websocket.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from harness import PACK_DIR, ComfyServer, Rejected
from PIL import Image

PROMPTS = ["a red flower with five round petals on green grass",
           "snowy mountains at night with the moon over a lake",
           "a yellow sunflower under a blue sky", "a sandy beach with palm trees at sunset",
           "a pink rose with dew drops", "a green forest in the fog", "a white daisy in a field",
           "a desert with red dunes at noon", "an orange tulip in a garden",
           "a waterfall between dark rocks", "a purple orchid on a black background",
           "a city skyline at dusk"]


def promptgan_graph(text: str, seed: int) -> dict:
    g = json.loads((PACK_DIR / "workflows/api/text_to_image_hd.json").read_text())
    del g["6"]                                          # the 64 px SaveImage
    g["2"]["inputs"]["text"] = text
    g["3"]["inputs"].update(seed=seed, batch_size=1)
    g["7"]["inputs"]["filename_prefix"] = "speed/promptgan"
    return g


def sd15_graph(ckpt: str, seed: int, steps: int, size: int) -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPTS[0], "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage",
              "inputs": {"width": size, "height": size, "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0],
            "seed": seed, "steps": steps, "cfg": 7.0, "sampler_name": "euler",
            "scheduler": "normal", "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0],
                                                    "filename_prefix": "speed/sd15"}},
    }


def loadavg() -> str:
    """/proc/loadavg (1-min load, runnable/all tasks): shows other programs sharing the cores."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:4])
    except OSError:
        return ""


class Client:
    """POST a graph, wait for its end on the websocket, read its history."""

    def __init__(self, server: ComfyServer, session: aiohttp.ClientSession):
        self.server, self.session, self.client_id = server, session, uuid.uuid4().hex

    async def __aenter__(self) -> Client:
        self.ws = await self.session.ws_connect(f"{self.server.url}/ws?clientId={self.client_id}")
        return self

    async def __aexit__(self, *exc) -> None:
        await self.ws.close()

    async def run(self, graph: dict) -> dict:
        t0 = time.perf_counter()
        async with self.session.post(f"{self.server.url}/prompt",
                                     json={"prompt": graph, "client_id": self.client_id}) as r:
            body = await r.json()
            if r.status == 400:
                raise Rejected(body)
        prompt_id, nodes, steps = body["prompt_id"], {}, []
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:       # binary previews
                continue
            m = json.loads(msg.data)
            data = m.get("data", {})
            if data.get("prompt_id") != prompt_id:
                continue
            if m["type"] == "executing":                 # node None: done, history written
                if data.get("node") is None:
                    break
                nodes[graph[data["node"]]["class_type"]] = time.perf_counter() - t0
            if m["type"] == "progress" and graph[data["node"]]["class_type"] == "KSampler":
                steps.append(time.perf_counter() - t0)
        wall = time.perf_counter() - t0
        history = self.server.get(f"/history/{prompt_id}")[prompt_id]
        status = history["status"]
        ts = {event: data for event, data in status["messages"]}
        if "execution_success" not in ts:
            err = ts.get("execution_error", {})
            raise RuntimeError(f"{err.get('exception_type')}: {err.get('exception_message')}\n"
                               f"{''.join(err.get('traceback', []))}")
        cached = ts.get("execution_cached", {}).get("nodes", [])
        return {"wall_s": wall,
                "exec_s": (ts["execution_success"]["timestamp"]
                           - ts["execution_start"]["timestamp"]) / 1000,
                "cached": sorted(graph[n]["class_type"] for n in cached),
                "node_started_s": nodes, "ksampler_steps_done_s": steps, "loadavg": loadavg(),
                "images": [self.server.workdir / "output" / i["subfolder"] / i["filename"]
                           for out in history["outputs"].values() for i in out.get("images", [])]}


async def measure(server: ComfyServer, ckpt: str, args) -> dict[str, list[dict]]:
    runs = {"promptgan": [], "promptgan_new_text": [], "sd15": []}
    sd_rounds = {round(i * args.runs / args.sd_runs) for i in range(args.sd_runs)}
    async with aiohttp.ClientSession() as session, Client(server, session) as client:
        t0 = time.perf_counter()
        warm = [await client.run(promptgan_graph(PROMPTS[0], 0)),
                await client.run(promptgan_graph(PROMPTS[1], 0)),
                await client.run(sd15_graph(ckpt, 0, args.warmup_steps, args.size))]
        sizes = [Image.open(w["images"][0]).size for w in warm]
        print(f"warm-up: {[round(w['wall_s'], 2) for w in warm]} s, images {sizes}", flush=True)
        for i in range(args.runs):
            seed = 1000 + i
            graphs = [("promptgan", promptgan_graph(PROMPTS[0], seed)),
                      ("promptgan_new_text",
                       promptgan_graph(f"{PROMPTS[2 + i % (len(PROMPTS) - 2)]}, picture {i}", seed))]
            sd_s = max(r["wall_s"] for r in runs["sd15"] or warm)
            if i in sd_rounds and time.perf_counter() - t0 + sd_s > args.budget:
                print(f"round {i}: SD1.5 run skipped, it would end past --budget {args.budget} s")
            elif i in sd_rounds:
                graphs.insert(i % 2 * 2, ("sd15", sd15_graph(ckpt, seed, args.steps, args.size)))
            for name, graph in graphs:
                runs[name].append(await client.run(graph))
                r = runs[name][-1]
                print(f"round {i} {name}: wall {r['wall_s']:.3f} s, exec {r['exec_s']:.3f} s, "
                      f"cached {r['cached']}", flush=True)
        print(f"measured in {time.perf_counter() - t0:.0f} s (warm-up included)")
    return runs


def table(runs: dict[str, list[dict]], args) -> str:
    med = {name: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "exec_s")}
           for name, rs in runs.items() if rs}
    if "sd15" not in med:
        return "no SD1.5 run finished"
    sd = med["sd15"]
    labels = {"promptgan": "PromptGAN text -> 64 px -> Enhance 256 px (same text, TextEncode cached)",
              "promptgan_new_text": "PromptGAN, new text each run (TextEncode runs)",
              "sd15": f"SD1.5 {args.size}x{args.size}, {args.steps} steps euler cfg 7, VAE decode"}
    lines = ["| graph (batch 1, fp32, CPU) | runs | median wall s | median exec s "
             "| SD1.5 / this (wall) | SD1.5 / this (exec) |", "|---|---|---|---|---|---|"]
    for name, m in med.items():
        lines.append(f"| {labels[name]} | {len(runs[name])} | {m['wall_s']:.3f} | "
                     f"{m['exec_s']:.3f} | {sd['wall_s'] / m['wall_s']:.0f}x | "
                     f"{sd['exec_s'] / m['exec_s']:.0f}x |")
    r = runs["sd15"]
    step = [b - a for x in r for a, b in zip([x["node_started_s"]["KSampler"]]
                                             + x["ksampler_steps_done_s"], x["ksampler_steps_done_s"])]
    decode = [x["wall_s"] - x["node_started_s"]["VAEDecode"] for x in r]
    lines.append(f"\nSD1.5: median {statistics.median(step):.2f} s per KSampler step (cfg: batch 2), "
                 f"{statistics.median(decode):.2f} s VAEDecode + SaveImage")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--comfyui", required=True, type=Path, help="the ComfyUI checkout")
    ap.add_argument("--ckpt", required=True, type=Path, help="an SD1.5 .safetensors checkpoint")
    ap.add_argument("--runs", type=int, default=10, help="runs of each PromptGAN graph")
    ap.add_argument("--sd-runs", type=int, default=3, help="runs of the SD1.5 graph")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup-steps", type=int, default=1)
    ap.add_argument("--size", type=int, default=512, help="SD1.5 width and height")
    ap.add_argument("--budget", type=float, default=1e9,
                    help="seconds for warm-up and runs: skip SD1.5 runs that would end later")
    ap.add_argument("--pause-pid", type=int, help="a process sharing the cores (a trainer): "
                    "SIGSTOP while measuring, SIGCONT after")
    ap.add_argument("--json", type=Path, help="write every run and the medians here")
    args = ap.parse_args()
    os.environ["PROMPTGAN_FP32"] = "1"                  # the server inherits it

    with tempfile.TemporaryDirectory(prefix="speed_vs_sd15_") as tmp:
        work = Path(tmp)
        (work / "models/checkpoints").mkdir(parents=True)
        (work / "models/checkpoints" / args.ckpt.name).symlink_to(args.ckpt.expanduser().resolve())
        with ComfyServer(args.comfyui, work,
                         extra_args=["--cache-lru", "100", "--fp32-text-enc"]) as server:
            line = server.import_line()
            assert line and "IMPORT FAILED" not in line, server.log()[-3000:]
            info = {"system": server.get("/system_stats")["system"], "args": vars(args)}
            if args.pause_pid:
                os.kill(args.pause_pid, signal.SIGSTOP)
            try:
                runs = asyncio.run(measure(server, args.ckpt.name, args))
            finally:
                if args.pause_pid:
                    os.kill(args.pause_pid, signal.SIGCONT)
                log = server.log()
        model_lines = [ln for ln in log.splitlines()
                       if "model_type" in ln or "model weight dtype" in ln or "dtype:" in ln]
    info["server_log"] = model_lines
    print(f"ComfyUI {info['system']['comfyui_version']}, torch {info['system']['pytorch_version']}")
    print("\n".join(model_lines))
    if args.json:
        args.json.write_text(json.dumps({"info": info, "runs": runs}, indent=1, default=str))
        print(f"wrote {args.json}")
    print(table(runs, args))


if __name__ == "__main__":
    main()
