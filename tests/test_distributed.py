"""Training on several processes with torchrun (gloo on the CPU): the ranks agree on the weights,
only rank 0 writes files, and a resumed run continues where the state file stopped."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from promptgan.models import gan

PACK = Path(__file__).resolve().parents[1]


def torchrun(run: Path, cache: Path, steps: int) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           str(PACK / "__main__.py"), "train-gan", "--out", str(run), "--cache-dir", str(cache),
           "--n-images", "8", "--resolution", "32", "--ngf", "4", "--ndf", "4", "--batch", "2",
           "--captions-per-image", "1", "--steps", str(steps), "--save-every", "2",
           "--sample-every", "2", "--log-every", "1", "--threads", "1"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_torchrun_two_ranks_agree_write_once_and_resume(tmp_path):
    run, cache = tmp_path / "run", tmp_path / "cache"
    first = torchrun(run, cache, 4)
    assert first.returncode == 0, first.stderr[-4000:]
    assert "step 2: 2 ranks agree on the weights" in first.stderr
    assert "step 4: 2 ranks agree on the weights" in first.stderr
    # rank 0 alone writes: one log line per step, one grid per sample step, one model
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    assert sorted(p.name for p in run.iterdir()) == ["log.jsonl", "model.safetensors", "samples",
                                                     "state.safetensors"]
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == [
        "step_000000.png", "step_000002.png", "step_000004.png"]
    assert gan.load_gan(run / "model.safetensors").provenance["step"] == 4

    second = torchrun(run, cache, 6)
    assert second.returncode == 0, second.stderr[-4000:]
    assert "resumed" in second.stderr and "step 6: 2 ranks agree" in second.stderr
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert gan.load_gan(run / "model.safetensors").provenance["step"] == 6
