"""A real ComfyUI server for the pack's integration tests (and for trying the pack by hand).

    COMFYUI_DIR=~/comfy/ComfyUI python3 -m pytest -q tests/comfyui

ComfyUI is not modified: the server runs ``main.py --cpu`` from COMFYUI_DIR on a free loopback
port, with ``--base-directory`` a temporary folder whose custom_nodes/ links to this pack, and an
in-memory database. Its Python is COMFYUI_PYTHON, else COMFYUI_DIR/../venv/bin/python (the layout
tests/comfyui/README.md sets up), else this interpreter. Standard library only.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[2]


class Rejected(RuntimeError):
    """POST /prompt answered 400: the graph failed ComfyUI's validation."""

    def __init__(self, body: dict):
        self.body = body
        super().__init__(json.dumps(body)[:4000])


def comfyui_python(comfyui_dir: Path) -> str:
    if os.environ.get("COMFYUI_PYTHON"):
        return os.environ["COMFYUI_PYTHON"]
    venv = comfyui_dir.parent / "venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    return str(venv) if venv.is_file() else sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """``with ComfyServer(comfyui_dir, workdir) as server: server.run(api_prompt)``."""

    def __init__(self, comfyui_dir: str | Path, workdir: str | Path, *, extra_args=(),
                 start_timeout: float = 240):
        self.comfyui_dir = Path(comfyui_dir).expanduser().resolve()
        self.workdir = Path(workdir)
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / "server.log"
        self.proc = None

    # ------------------------------------------------------------------ life cycle
    def __enter__(self) -> ComfyServer:
        for sub in ("custom_nodes", "output", "input", "temp", "user/default"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        link = self.workdir / "custom_nodes" / PACK_DIR.name
        if not link.exists():
            link.symlink_to(PACK_DIR, target_is_directory=True)
        # no first-run tutorial dialog over the canvas when the frontend opens this folder
        (self.workdir / "user/default/comfy.settings.json").write_text(
            json.dumps({"Comfy.TutorialCompleted": True}))
        cmd = [comfyui_python(self.comfyui_dir), "main.py", "--cpu", "--listen", "127.0.0.1",
               "--port", str(self.port), "--disable-auto-launch", "--base-directory",
               str(self.workdir), "--database-url", "sqlite:///:memory:", *self.extra_args]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=self.comfyui_dir, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        end = time.time() + self.start_timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                self.get("/system_stats")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        self.__exit__()
        raise RuntimeError(f"ComfyUI did not answer within {self.start_timeout} s:\n{self.log()[-4000:]}")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""

    def import_line(self) -> str:
        """The 'Import times for custom nodes' line of this pack ('' if absent)."""
        lines = [ln for ln in self.log().splitlines()
                 if "seconds" in ln and ln.rstrip().endswith("custom_nodes/" + PACK_DIR.name)]
        return lines[-1] if lines else ""

    # ------------------------------------------------------------------ HTTP
    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=60) as r:
            return json.loads(r.read())

    def post(self, path: str, body: dict):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            if e.code == 400:
                raise Rejected(json.loads(e.read())) from None
            raise

    def queue(self, prompt: dict) -> str:
        return self.post("/prompt", {"prompt": prompt, "client_id": uuid.uuid4().hex})["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 600) -> dict:
        end = time.time() + timeout
        while time.time() < end:
            hist = self.get(f"/history/{prompt_id}")
            if prompt_id in hist:
                return hist[prompt_id]
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI died:\n{self.log()[-4000:]}")
            time.sleep(0.25)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s")

    def run(self, prompt: dict, timeout: float = 600) -> Result:
        return Result(self, self.wait(self.queue(prompt), timeout))


class Result:
    """One finished prompt: status, error message, and the files its output nodes wrote."""

    def __init__(self, server: ComfyServer, history: dict):
        self.history = history
        status = history.get("status", {})
        self.ok = status.get("status_str") == "success"
        self.error = ""
        for event, data in status.get("messages", []):
            if event == "execution_error":
                self.error = f"{data.get('exception_type')}: {data.get('exception_message')}"
        roots = {"output": server.workdir / "output", "temp": server.workdir / "temp"}
        self.files = [roots.get(item.get("type", "output"), server.workdir)
                      / item.get("subfolder", "") / item["filename"]
                      for out in history.get("outputs", {}).values()
                      for items in out.values() if isinstance(items, list)
                      for item in items if isinstance(item, dict) and "filename" in item]
