"""kill -9 a training run at random moments, again and again: every checkpoint left behind
loads, the step never goes back, and no temporary file survives the next start."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from promptgan.models import gan
from promptgan.models.checkpoint import load_checkpoint

PACK = Path(__file__).resolve().parents[1]
CYCLES = 6


def _start(run: Path, cache: Path) -> subprocess.Popen:
    args = [sys.executable, str(PACK), "train-gan", "--out", str(run), "--cache-dir", str(cache),
            "--n-images", "8", "--resolution", "32", "--ngf", "4", "--ndf", "4", "--batch", "2",
            "--captions-per-image", "1", "--steps", "100000", "--save-every", "1",
            "--sample-every", "7", "--log-every", "1", "--threads", "1"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _step(run: Path) -> int:
    return int(load_checkpoint(run / "state.safetensors", kind="gan-train-state").provenance["step"])


def _wait_for_a_save(run: Path, proc: subprocess.Popen, after_ns: int, timeout: float = 120) -> None:
    state = run / "state.safetensors"
    end = time.time() + timeout
    while time.time() < end:
        if state.is_file() and state.stat().st_mtime_ns > after_ns:
            return
        if proc.poll() is not None:
            pytest.fail(f"train-gan exited with {proc.returncode} before saving")
        time.sleep(0.05)
    pytest.fail("train-gan did not save within the timeout")


@pytest.mark.slow
def test_kill_minus_nine_and_resume(tmp_path):
    run, cache = tmp_path / "run", tmp_path / "cache"
    rng = random.Random(1234)
    steps, leftovers = [], []
    for cycle in range(CYCLES):
        started = time.time_ns()
        proc = _start(run, cache)
        try:
            _wait_for_a_save(run, proc, started)
            # the start has run: nothing a previous kill left behind is still there
            for stale in leftovers:
                assert not stale.exists(), f"cycle {cycle}: {stale.name} survived the start"
            time.sleep(rng.uniform(0.0, 1.5))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        leftovers = [p for p in run.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".tmp")]
        # tiny saves rarely die half-way: add what a kill inside save_checkpoint leaves (its
        # empty mkstemp file and the hidden file safetensors writes before the rename)
        for name in (f"state.safetensors.k{cycle}x9q.tmp", f".tmpK{cycle}x9Qz"):
            (run / name).write_bytes(b"" if name.endswith(".tmp") else b"\0" * 4096)
            leftovers.append(run / name)
        step = _step(run)                               # the state loads after every kill
        model = gan.load_gan(run / "model.safetensors")
        assert model.provenance["step"] <= step + 1
        assert not steps or step >= steps[-1], f"step went back: {steps} then {step}"
        steps.append(step)
    assert steps[-1] > steps[0], steps
    for p in run.rglob("*.safetensors"):
        load_checkpoint(p)
    assert os.listdir(run / "samples")
